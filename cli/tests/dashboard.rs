//! The dashboard in a real browser: `gantry simulate --serve` runs a small, crowded simulation;
//! headless Chromium (Debian's package, installed here when missing) loads the page and signs in
//! through its form with the printed token (a same-origin proxy in the test adds a script that
//! types the token and submits the form, as a person would; the page never takes a token from its
//! address, which the test checks too); the rendered page shows the tenants, quota bars with the API's figures, the
//! queue with each waiting workload's reason, and a cost chart whose bars add up to the API's
//! cost. A screenshot is saved as a test artifact (`target/tmp/dashboard.png`).

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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

/// Runs headless Chromium on `url` with `extra` arguments; its standard output.
fn browse(extra: &[&str], url: &str) -> String {
    let profile =
        std::env::temp_dir().join(format!("gantry-chromium-{}-{}", std::process::id(), extra.len()));
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
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=8000", "--window-size=1400,1700"])
        .args(extra)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Sim {
    child: Child,
    addr: String,
    token: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A crowded two-day simulation of the Venus tenants, served; returns once the run has ended.
fn simulate() -> Sim {
    let tenants = repo("examples/tenants/venus.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "simulate",
            "--tenants",
            tenants.to_str().unwrap(),
            "--workloads",
            "600",
            "--days",
            "2",
            "--load",
            "3",
            "--serve",
            "127.0.0.1:0",
            "--speed",
            "0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut addr, mut token) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("dashboard at http://").nth(1) {
            addr = rest.split('/').next().unwrap().trim().to_string();
        }
        if let Some(rest) = line.split("(Authorization: Bearer ").nth(1) {
            token = rest.split(')').next().unwrap().trim().to_string();
        }
        if line.contains(": done in ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(!addr.is_empty() && !token.is_empty(), "the address and token lines");
    Sim { child, addr, token }
}

fn api(sim: &Sim, path: &str) -> Value {
    let mut s = std::net::TcpStream::connect(&sim.addr).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        sim.token
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Every `name="value"` of elements carrying `marker` in the dumped DOM.
fn attributes(dom: &str, marker: &str) -> Vec<String> {
    dom.split('<').filter(|tag| tag.contains(marker)).map(|t| t.to_string()).collect()
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(tag[start..].split('"').next()?.to_string())
}

/// The test's script: types `token` into the sign-in form and submits it.
const SIGN_IN: &str = "/test-sign-in.js";

/// A proxy on another port of loopback (its own origin) in front of `upstream`: every request is
/// passed on as it is, except that the page gets the [`SIGN_IN`] script after its own, served
/// from the same origin (the page's Content-Security-Policy allows only that). Returns its address.
fn sign_in_proxy(upstream: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (upstream, token) = (upstream.to_string(), token.to_string());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let (upstream, token) = (upstream.clone(), token.clone());
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
                if path == SIGN_IN {
                    let script = format!(
                        "document.getElementById(\"token-input\").value = {};\ndocument.getElementById(\"signin\").requestSubmit();\n",
                        serde_json::to_string(&token).unwrap()
                    );
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
    addr
}

#[test]
fn the_dashboard_shows_the_simulated_tenants_queue_and_cost() {
    let sim = simulate();
    // A token in the address is never taken: the page asks to sign in, and loads nothing.
    let dom = browse(&["--dump-dom"], &format!("http://{}/#token={}", sim.addr, sim.token));
    assert!(!dom.contains("data-loaded=\"true\""), "the page took a token from its address");
    assert!(
        dom.contains("id=\"signin\"") && !dom.contains("id=\"signin\" class=\"signin\" hidden"),
        "the sign-in form is shown: {}",
        &dom[..dom.len().min(2000)]
    );
    // Signed in through the form.
    let url = format!("http://{}/", sign_in_proxy(&sim.addr, &sim.token));
    let dom = browse(&["--dump-dom"], &url);
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page loaded its data: {}",
        &dom[..dom.len().min(2000)]
    );
    assert!(!dom.contains(&sim.token), "the token is nowhere in the page");

    // Tenants and their quota bars, with the API's figures.
    let tenants = api(&sim, "/api/v1/tenants");
    let bars = attributes(&dom, "class=\"quota\" data-tenant=");
    let mut checked = 0;
    for t in tenants["tenants"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        assert!(dom.contains(&format!(">{name}<")), "tenant {name} is shown");
        for q in t["quotas"].as_array().unwrap() {
            let flavor = q["flavor"].as_str().unwrap();
            let bar = bars.iter().find(|b| {
                attr(b, "data-tenant").as_deref() == Some(name)
                    && attr(b, "data-flavor").as_deref() == Some(flavor)
            });
            let bar = bar.unwrap_or_else(|| panic!("a quota bar for {name} {flavor}"));
            let used: f64 = attr(bar, "data-used").unwrap().parse().unwrap();
            let nominal: f64 = attr(bar, "data-nominal").unwrap().parse().unwrap();
            assert_eq!(
                (used, nominal),
                (q["used"].as_f64().unwrap(), q["nominal"].as_f64().unwrap()),
                "{name} {flavor}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 18, "{checked} quota bars");

    // The queue: every waiting workload with its reason.
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

    // The cost chart: its bars add up, per tenant, to the API's cost over the same period.
    let at = tenants["at"].as_i64().unwrap();
    let cost = api(&sim, &format!("/api/v1/cost?from={}&to={}", at - 7 * 86_400, at + 1));
    let rects = attributes(&dom, "data-cost=");
    assert!(!rects.is_empty(), "the cost chart has bars");
    let mut by_tenant: std::collections::BTreeMap<String, f64> = Default::default();
    for l in cost["lines"].as_array().unwrap() {
        *by_tenant.entry(l["tenant"].as_str().unwrap().to_string()).or_default() +=
            l["totalCost"].as_f64().unwrap();
    }
    for (tenant, total) in by_tenant.iter().filter(|(_, c)| **c > 0.0) {
        let drawn: f64 = rects
            .iter()
            .filter(|r| attr(r, "data-tenant").as_deref() == Some(tenant))
            .map(|r| attr(r, "data-cost").unwrap().parse::<f64>().unwrap())
            .sum();
        assert!((drawn - total).abs() <= 0.01 * 3.0 + 1e-6 * total, "{tenant}: chart {drawn} vs API {total}");
    }

    // A screenshot for people, as a test artifact.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browse(&[&format!("--screenshot={}", shot.display())], &url);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
}
