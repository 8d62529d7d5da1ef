//! The dashboard in a real browser: `gantry simulate --serve` runs a small, crowded simulation;
//! headless Chromium (Debian's package, installed here when missing) loads the page and signs in
//! through its form with the printed token (a same-origin proxy in the test adds a script that
//! types the token and submits the form, as a person would, and may then drive the page; the page
//! never takes a token from its address, which the test checks too). The rendered page shows the
//! tenants with quota bars carrying the API's figures, the queue with each waiting workload's
//! reason, and a cost chart whose time axis is labelled with dates inside the API's period, whose
//! legend is the API's tenants and whose bars add up to the API's cost, and the notebooks the idle
//! rule stopped with the API's costs. The view named in the
//! address (a tenant's page, the period, the sort) is restored on load and on going back. The
//! queue is above the fold at 1024×768. Screenshots at 1440×900 and 1024×768 (and a tenant's page)
//! are test artifacts in `target/tmp/`; with `GANTRY_UPDATE_SCREENSHOTS=1` they are also written
//! to `docs/dashboard-*.png`, which the README shows.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Debian's Chromium, installed through the machine's package manager when missing.
fn chromium() -> PathBuf {
    let path = Path::new("/usr/bin/chromium");
    if !path.exists() {
        let install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium";
        let ok = Command::new("sh").args(["-c", install]).status().is_ok_and(|s| s.success());
        assert!(ok && path.exists(), "the dashboard test needs Chromium and could not install Debian's chromium package (`{install}` needs root and the package registry)");
    }
    path.to_path_buf()
}

/// Runs headless Chromium on `url` in a `width`×`height` window with `extra` arguments; its
/// standard output.
fn browse(extra: &[&str], (width, height): (u32, u32), url: &str) -> String {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let profile = std::env::temp_dir().join(format!("gantry-chromium-{}-{n}", std::process::id()));
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--virtual-time-budget=10000")
        .arg(format!("--window-size={width},{height}"))
        .args(extra)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A crowded two-day simulation of the Venus tenants, every tenant stopping GPU notebooks idle
/// for an hour while work waits; served; returns once the run has ended.
fn simulate() -> Served {
    Served::start(&["--workloads", "600", "--days", "2", "--load", "3", "--idle-notebooks", "1h"])
}

fn api(sim: &Served, path: &str) -> Value {
    sim.api(path)
}

/// Every tag (with the text after it, up to the next tag) of elements carrying `marker` in the
/// dumped DOM.
fn attributes(dom: &str, marker: &str) -> Vec<String> {
    dom.split('<').filter(|tag| tag.contains(marker)).map(|t| t.to_string()).collect()
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(tag[start..].split('"').next()?.to_string())
}

fn number(tag: &str, name: &str) -> f64 {
    attr(tag, name).unwrap_or_else(|| panic!("{name} in {tag}")).parse().unwrap()
}

/// The text after a tag.
fn text(tag: &str) -> &str {
    tag.split_once('>').map(|(_, t)| t).unwrap_or("")
}

/// The `<body …>` tag's attribute `name`.
fn body(dom: &str, name: &str) -> Option<String> {
    attr(dom.split('<').find(|t| t.starts_with("body "))?, name)
}

/// The test's script: types `token` into the sign-in form and submits it, then runs the
/// proxy's `extra` script.
const SIGN_IN: &str = "/test-sign-in.js";

/// Waits in the page until `cond` (a JavaScript expression) holds.
const UNTIL: &str = "const until = (cond) => new Promise((done) => { const t = setInterval(() => { if (cond()) { clearInterval(t); done(); } }, 50); });\n";

/// Where the test's script sends what it measured (`GET /test-report?…`).
const REPORT: &str = "/test-report?";

struct Proxy {
    addr: String,
    /// The query strings sent to [`REPORT`], in order.
    reports: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// A proxy on another port of loopback (its own origin) in front of `upstream`: every request is
/// passed on as it is, except that the page gets the [`SIGN_IN`] script (signing in, then
/// `extra`) after its own, served from the same origin (the page's Content-Security-Policy allows
/// only that), and [`REPORT`]s are kept.
fn sign_in_proxy(upstream: &str, token: &str, extra: &str) -> Proxy {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = reports.clone();
    let upstream = upstream.to_string();
    let script = format!(
        "document.getElementById(\"token-input\").value = {};\ndocument.getElementById(\"signin\").requestSubmit();\n{UNTIL}{extra}",
        serde_json::to_string(token).unwrap()
    );
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let (upstream, script, kept) = (upstream.clone(), script.clone(), kept.clone());
            std::thread::spawn(move || {
                // The browser only GETs: the request is its head.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                if let Some(report) = path.strip_prefix(REPORT) {
                    kept.lock().unwrap().push(report.to_string());
                    let _ = write!(client, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
                    return;
                }
                if path == SIGN_IN {
                    let _ = write!(client, "HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{script}", script.len());
                    return;
                }
                let auth = head
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    .map(|l| format!("{l}\r\n"))
                    .unwrap_or_default();
                let mut up = std::net::TcpStream::connect(&upstream).unwrap();
                write!(up, "GET {path} HTTP/1.1\r\nHost: {upstream}\r\n{auth}Connection: close\r\n\r\n")
                    .unwrap();
                let mut answer = Vec::new();
                up.read_to_end(&mut answer).unwrap();
                if path == "/" {
                    let text = String::from_utf8(answer).unwrap();
                    let (head, body) = text.split_once("\r\n\r\n").unwrap();
                    let body =
                        body.replace("</body>", &format!("<script src=\"{SIGN_IN}\"></script>\n</body>"));
                    let head: Vec<&str> = head
                        .lines()
                        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
                        .collect();
                    answer = format!("{}\r\ncontent-length: {}\r\n\r\n{body}", head.join("\r\n"), body.len())
                        .into_bytes();
                }
                let _ = client.write_all(&answer);
            });
        }
    });
    Proxy { addr, reports }
}

/// Reports, once the page has loaded, the window's size, where the queue starts and where each of
/// its rows in sight ends (rows scrolled out of the queue's own box are not in sight).
const FOLD: &str = r##"until(() => document.body.dataset.loaded === "true").then(() => {
  const box = document.querySelector("#queue-panel .scroll").getBoundingClientRect();
  const ends = [...document.querySelectorAll("#queue tbody tr")].map((r) => Math.round(r.getBoundingClientRect().bottom));
  const top = Math.round(document.getElementById("queue-panel").getBoundingClientRect().top);
  fetch("/test-report?" + new URLSearchParams({ window: innerWidth + "x" + innerHeight, top, ends: ends.filter((b) => b <= box.bottom).join(" ") }));
});
"##;

/// From the view the address named: choose all tenants and another period with the page's own
/// controls (two new history entries), then go back twice, and record what the controls show.
const BACK: &str = r##"const shows = (tenant, period) => () => document.body.dataset.loadedFor === "/" + "#" + new URLSearchParams({ tenant, period, sort: "cost" }).toString().replace("tenant=&", "");
const choose = (id, value) => { const s = document.getElementById(id); s.value = value; s.dispatchEvent(new Event("change")); };
(async () => {
  await until(shows("vc-c", "30"));
  const controls = () => ["tenant", "period", "sort"].map((id) => document.getElementById(id).value).join(" ");
  document.body.dataset.onLoad = controls();
  choose("tenant", "");
  await until(shows("", "30"));
  choose("period", "1");
  await until(shows("", "1"));
  document.body.dataset.moved = location.hash + " " + controls();
  history.back();
  await until(shows("", "30"));
  history.back();
  await until(shows("vc-c", "30"));
  document.body.dataset.back = controls();
})();
"##;

/// Unix seconds as a UTC date, `2026-11-01`.
fn date(t: i64) -> String {
    jiff::Timestamp::from_second(t).unwrap().strftime("%Y-%m-%d").to_string()
}

/// The cost chart's period (`data-from`, `data-to`) and its time axis: each tick's time and label.
fn chart_axis(dom: &str) -> (i64, i64, String, Vec<(i64, String)>) {
    let chart = &attributes(dom, "id=\"cost-chart\"")[0];
    let (from, to) = (number(chart, "data-from") as i64, number(chart, "data-to") as i64);
    let ticks: Vec<(i64, String)> = attributes(dom, "li data-at=")
        .iter()
        .map(|t| (number(t, "data-at") as i64, text(t).trim().to_string()))
        .collect();
    (from, to, attr(chart, "data-unit").expect("the chart names its unit"), ticks)
}

/// Every tick of the time axis is inside the API's period and every date on it is its tick's
/// date; some labels are dates.
fn assert_dates_on_the_axis(ticks: &[(i64, String)], from: i64, to: i64) {
    assert!(ticks.len() >= 2, "the time axis has ticks: {ticks:?}");
    let mut dates = 0;
    for (at, label) in ticks {
        assert!((from..=to).contains(at), "tick {label} ({at}) outside the period {from}..{to}");
        for word in label.split_whitespace().filter(|w| w.len() == 10 && w.as_bytes()[4] == b'-') {
            let day: jiff::civil::Date = word.parse().unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(day.to_string(), date(*at), "the label {label} is its tick's date");
            assert!(date(from) <= date(*at) && date(*at) <= date(to), "{label} within the period");
            dates += 1;
        }
    }
    assert!(dates >= 1, "the time axis shows dates: {ticks:?}");
}

/// The legend: series names, their totals and what the chart drew for each, and their colours.
fn legend(dom: &str) -> Vec<(String, f64, f64, String)> {
    attributes(dom, "data-series=")
        .iter()
        .map(|l| {
            (
                attr(l, "data-series").unwrap(),
                number(l, "data-total"),
                number(l, "data-drawn"),
                attr(l, "data-colour").unwrap(),
            )
        })
        .collect()
}

/// A screenshot of `url` at `size`, checked, kept in `target/tmp/` and, with
/// `GANTRY_UPDATE_SCREENSHOTS=1`, written to `docs/NAME`.
fn screenshot(url: &str, size: (u32, u32), name: &str) {
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&shot);
    browse(&[&format!("--screenshot={}", shot.display())], size, url);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{name}: {} bytes", png.len());
    let dim = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), size, "{name}: the window's size");
    if std::env::var("GANTRY_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(repo("docs").join(name), &png).unwrap();
    }
}

#[test]
fn the_dashboard_shows_the_simulated_tenants_queue_and_cost() {
    let sim = simulate();
    // A token in the address is never taken: the page asks to sign in, and loads nothing.
    let dom = browse(&["--dump-dom"], (1440, 900), &format!("http://{}/#token={}", sim.addr, sim.token));
    assert!(!dom.contains("data-loaded=\"true\""), "the page took a token from its address");
    assert!(
        dom.contains("id=\"signin\"") && !dom.contains("id=\"signin\" class=\"signin\" hidden"),
        "the sign-in form is shown: {}",
        &dom[..dom.len().min(2000)]
    );
    // Signed in through the form.
    let proxy = sign_in_proxy(&sim.addr, &sim.token, FOLD);
    let url = format!("http://{}/", proxy.addr);
    let dom = browse(&["--dump-dom"], (1440, 900), &url);
    assert_eq!(body(&dom, "data-loaded").as_deref(), Some("true"), "{}", &dom[..dom.len().min(2000)]);
    assert!(!dom.contains(&sim.token), "the token is nowhere in the page");
    assert_eq!(body(&dom, "data-view").as_deref(), Some("overview"));

    // Tenants and their quota bars, with the API's figures. Rows without any quota or use of a
    // flavor have no bar, and a flavor nobody uses (cpu here) has no column, only a note.
    let tenants = api(&sim, "/api/v1/tenants");
    let bars = attributes(&dom, "class=\"quota\" data-tenant=");
    let mut drawn = 0;
    for t in tenants["tenants"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        assert!(dom.contains(&format!(">{name}<")), "tenant {name} is shown");
        for q in t["quotas"].as_array().unwrap() {
            let flavor = q["flavor"].as_str().unwrap();
            let in_use = tenants["tenants"].as_array().unwrap().iter().any(|t| {
                t["quotas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|q| q["flavor"] == flavor && q["used"].as_f64() > Some(0.0))
            });
            let bar = bars.iter().find(|b| {
                attr(b, "data-tenant").as_deref() == Some(name)
                    && attr(b, "data-flavor").as_deref() == Some(flavor)
            });
            let (used, nominal) = (q["used"].as_f64().unwrap(), q["nominal"].as_f64().unwrap());
            if (flavor == "cpu" && !in_use) || (used == 0.0 && nominal == 0.0) {
                assert!(bar.is_none(), "no bar for {name} {flavor}");
                continue;
            }
            let bar = bar.unwrap_or_else(|| panic!("a quota bar for {name} {flavor}"));
            assert_eq!(
                (number(bar, "data-used"), number(bar, "data-nominal")),
                (used, nominal),
                "{name} {flavor}"
            );
            drawn += 1;
        }
    }
    assert_eq!(drawn, bars.len(), "every bar is one of the API's quotas");
    assert!(drawn >= 36, "{drawn} quota bars: A100 and V100M32 for 18 tenants");
    let unused = attributes(&dom, "id=\"unused\"");
    assert!(text(&unused[0]).contains("cpu"), "the unused cpu quota is named: {unused:?}");
    for b in api(&sim, "/api/v1/budgets")["budgets"].as_array().unwrap() {
        let cell = attributes(&dom, &format!("data-budget=\"{}\"", b["tenant"].as_str().unwrap()));
        assert!((number(&cell[0], "data-burn") - b["burn"].as_f64().unwrap()).abs() < 1e-3, "{b}");
    }

    // The queue: every waiting workload with its reason, above the fold.
    let queue = api(&sim, "/api/v1/queue");
    let waiting = queue["waiting"].as_array().unwrap();
    assert!(!waiting.is_empty(), "the crowded run leaves work waiting");
    let rows = attributes(&dom, "data-workload=");
    assert_eq!(rows.len(), waiting.len());
    for w in waiting {
        let row = rows
            .iter()
            .find(|r| attr(r, "data-workload") == Some(w["id"].to_string()))
            .unwrap_or_else(|| panic!("row for {}", w["id"]));
        assert_eq!(attr(row, "data-reason").as_deref(), w["reason"]["reason"].as_str());
        let message = w["message"].as_str().unwrap();
        assert!(
            dom.contains(&message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")),
            "the message is shown: {message}"
        );
    }

    // The cost chart: dates on its time axis, within the API's period; the currency in its unit;
    // the legend is the API's tenants, each with the API's cost, and the bars add up to it.
    let (from, to, unit, ticks) = chart_axis(&dom);
    let usage = api(&sim, &format!("/api/v1/usage?step=hour&from={from}&to={to}"));
    let cost = api(&sim, &format!("/api/v1/cost?from={from}&to={to}"));
    assert_eq!((usage["from"].as_i64(), usage["to"].as_i64()), (Some(from), Some(to)));
    assert!((6 * 86_400..=7 * 86_400 + 3600).contains(&(to - from)), "the default period is 7 days");
    assert_dates_on_the_axis(&ticks, from, to);
    assert_eq!(unit, format!("{} per hour", cost["currency"].as_str().unwrap()));
    let mut by_tenant: BTreeMap<String, f64> = Default::default();
    for l in cost["lines"].as_array().unwrap() {
        *by_tenant.entry(l["tenant"].as_str().unwrap().to_string()).or_default() +=
            l["totalCost"].as_f64().unwrap();
    }
    let entries = legend(&dom);
    let names: Vec<&str> =
        tenants["tenants"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        entries.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        names,
        "the legend is the API's tenants"
    );
    for (tenant, total, drawn, _) in &entries {
        let api_total = by_tenant.get(tenant).copied().unwrap_or(0.0);
        assert!((total - api_total).abs() <= 0.01, "{tenant}: legend {total} vs API {api_total}");
        assert!(
            (drawn - api_total).abs() <= 0.03 + 1e-6 * api_total,
            "{tenant}: chart {drawn} vs API {api_total}"
        );
    }
    let colours: std::collections::BTreeSet<&str> = entries.iter().map(|e| e.3.as_str()).collect();
    assert_eq!(colours.len(), entries.len(), "every tenant has its own colour");

    // The notebooks the idle rule stopped in the page's period: the API's, each with its tenant
    // and cost, and the period's count and totals in the panel's note.
    let stops = api(&sim, &format!("/api/v1/notebook-stops?from={from}&to={to}"));
    let listed = stops["stops"].as_array().unwrap();
    assert!(!listed.is_empty(), "the idle rule stopped notebooks in the crowded run");
    let rows = attributes(&dom, "data-stop=");
    assert_eq!(rows.len(), listed.len(), "one row per stop");
    for x in listed {
        let key =
            format!("{}/{}/{}", x["namespace"].as_str().unwrap(), x["notebook"].as_str().unwrap(), x["at"]);
        let row = rows
            .iter()
            .find(|r| attr(r, "data-stop").as_deref() == Some(key.as_str()))
            .unwrap_or_else(|| panic!("a row for the stop {key}"));
        assert_eq!(attr(row, "data-tenant").as_deref(), x["tenant"].as_str(), "{key}");
        assert_eq!(number(row, "data-cost"), (x["cost"].as_f64().unwrap() * 100.0).round() / 100.0, "{key}");
    }
    let note = attributes(&dom, "id=\"stops-note\"");
    assert!(text(&note[0]).starts_with(&format!("{} this period", stops["count"])), "{note:?}");

    // Screenshots for people, at 1440x900 and at 1024x768, where the panels reflow with the queue
    // first: in both, the queue starts near the top and shows rows above the fold. (Chromium lays
    // the page out in a shorter window until it takes the screenshot, and the queue's box is a
    // share of the window's height: the rows counted are at most those the screenshot shows.)
    for ((width, height), rows) in [((1440, 900), 8), ((1024, 768), 5)] {
        proxy.reports.lock().unwrap().clear();
        screenshot(&url, (width, height), &format!("dashboard-{width}.png"));
        let report = proxy.reports.lock().unwrap().last().cloned().expect("the page reported its layout");
        let field = |k: &str| {
            let v = report.split('&').find_map(|kv| kv.strip_prefix(&format!("{k}="))).unwrap_or("");
            v.replace('+', " ")
        };
        assert!(field("window").starts_with(&format!("{width}x")), "{report}");
        let top: i64 = field("top").parse().unwrap();
        let seen = field("ends")
            .split_whitespace()
            .filter(|e| e.parse::<i64>().unwrap() <= i64::from(height))
            .count();
        assert!(
            top < 150 && seen >= rows.min(waiting.len()),
            "{width}x{height}: the queue at {top} px, {seen} rows above the fold ({report})"
        );
    }

    // The view in the address (a tenant's page, a period, a sort) is what loads, and what going
    // back returns to.
    let view = format!(
        "http://{}/#tenant=vc-c&period=30&sort=cost",
        sign_in_proxy(&sim.addr, &sim.token, BACK).addr
    );
    let dom = browse(&["--dump-dom"], (1440, 900), &view);
    assert_eq!(
        body(&dom, "data-on-load").as_deref(),
        Some("vc-c 30 cost"),
        "the controls show the view loaded"
    );
    assert_eq!(
        body(&dom, "data-moved").as_deref(),
        Some("#period=1&amp;sort=cost  1 cost"),
        "the address follows the controls"
    );
    assert_eq!(body(&dom, "data-back").as_deref(), Some("vc-c 30 cost"), "back restores the view");
    assert_eq!(
        ["data-view", "data-tenant", "data-period", "data-sort"].map(|a| body(&dom, a).unwrap_or_default()),
        ["tenant", "vc-c", "30", "cost"].map(String::from)
    );
    let theirs = api(&sim, "/api/v1/queue?tenant=vc-c");
    let ids: Vec<String> =
        theirs["waiting"].as_array().unwrap().iter().map(|w| w["id"].to_string()).collect();
    let shown: Vec<String> =
        attributes(&dom, "data-workload=").iter().map(|r| attr(r, "data-workload").unwrap()).collect();
    assert_eq!(shown, ids, "the tenant's page shows its own queue");
    let (from, to, unit, ticks) = chart_axis(&dom);
    assert!((30 * 86_400..=31 * 86_400).contains(&(to - from)), "30 days: {from}..{to}");
    assert_eq!(unit, format!("{} per day", cost["currency"].as_str().unwrap()));
    assert_dates_on_the_axis(&ticks, from, to);
    assert!(ticks.iter().all(|(_, l)| l.len() == 10), "daily buckets, dates only: {ticks:?}");
    let cost = api(&sim, &format!("/api/v1/cost?tenant=vc-c&from={from}&to={to}"));
    let mut by_flavor: BTreeMap<String, f64> = Default::default();
    for l in cost["lines"].as_array().unwrap() {
        *by_flavor.entry(l["flavor"].as_str().unwrap().to_string()).or_default() +=
            l["totalCost"].as_f64().unwrap();
    }
    let entries = legend(&dom);
    assert!(entries.iter().any(|e| e.0 == "A100"), "the legend is the tenant's flavors: {entries:?}");
    for (flavor, total, drawn, _) in &entries {
        let api_total = by_flavor.get(flavor).copied().unwrap_or(0.0);
        assert!(
            (total - api_total).abs() <= 0.01 && (drawn - api_total).abs() <= 0.03,
            "{flavor}: {total} {drawn} vs {api_total}"
        );
    }

    // And a tenant's page, as its users see it.
    let page = format!("http://{}/#tenant=vc-d", sign_in_proxy(&sim.addr, &sim.token, "").addr);
    screenshot(&page, (1440, 900), "dashboard-tenant.png");
}
