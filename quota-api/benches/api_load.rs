//! The usage and cost endpoints under load: 100 tenants with a year of hourly accruals on two
//! flavors (1.75 million records, in a SQLite file built once and reused), served over loopback
//! HTTP/1.1, open loop at `API_BENCH_RATE` requests per second (default 500) for `API_BENCH_SECS`
//! (default 10) per case after a 1 s warm-up, over 8 keep-alive connections. Cases run in turn
//! in 0.5 s slices so the shared machine's bursts of load fall on all of them alike. Baseline in
//! the same run: `GET /healthz` through the same server and client.
//!
//! ```sh
//! cargo bench -p gantry-quota-api --bench api_load
//! ```
//! Latency runs from each request's intended send time (no coordinated omission).

use gantry_api::view::{TenantView, View};
use gantry_quota_api::api::{router, Api};
use gantry_quota_api::auth::StaticTokens;
use gantry_quota_api::ledger::{Ledger, Record};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const TENANTS: usize = 100;
const HOURS: i64 = 365 * 24;
const END: i64 = 1_796_083_200; // 2026-12-01T00:00:00Z
const START: i64 = END - HOURS * 3600;
const TOKEN: &str = "bench-admin-token";

fn tenant(i: usize) -> String {
    format!("team-{i:03}")
}

/// The ledger file: built once (a few minutes), then reused while its count is right.
fn ledger() -> Result<Ledger, BoxError> {
    let path = std::env::temp_dir().join("gantry-api-load-v1.db");
    let expected = TENANTS * HOURS as usize * 2;
    if let Ok(l) = Ledger::open(&path) {
        if l.totals()?.0 == expected {
            return Ok(l);
        }
    }
    let _ = std::fs::remove_file(&path);
    let mut l = Ledger::open(&path)?;
    eprintln!("building {expected} accruals in {} ...", path.display());
    let started = Instant::now();
    for h in 0..HOURS {
        let s = START + h * 3600;
        let batch: Vec<Record> = (0..TENANTS)
            .flat_map(|t| {
                let used = 1000 * 3600 * (1 + (t as u64 + h as u64) % 16);
                [("A100", 2_400_000u64), ("H100", 4_100_000)].map(|(flavor, price)| Record {
                    tenant: tenant(t),
                    flavor: flavor.into(),
                    start: s,
                    end: s + 3600,
                    guaranteed: used * 3 / 4,
                    borrowed: used / 4,
                    idle: used / 10,
                    price_micros: price,
                    node: None,
                    run: None,
                    experiment: None,
                    pipeline: None,
                })
            })
            .collect();
        l.append(&batch)?;
    }
    eprintln!("built in {:.0} s", started.elapsed().as_secs_f64());
    Ok(l)
}

fn view() -> View {
    let tenants = (0..TENANTS)
        .map(|t| TenantView {
            name: tenant(t),
            cohort: None,
            namespaces: vec![tenant(t)],
            quotas: vec![],
            pending: 0,
            running: 0,
            budget: None,
        })
        .collect();
    View { at: END, currency: "USD".into(), flavors: vec![], tenants, queue: vec![], running: vec![] }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Result<Sender, BoxError> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One case: the paths it cycles through, and what it measured.
struct Case {
    name: &'static str,
    paths: Vec<String>,
    samples: Vec<Duration>,
    errors: usize,
}

impl Case {
    fn new(name: &'static str, paths: Vec<String>) -> Case {
        Case { name, paths, samples: Vec::new(), errors: 0 }
    }
}

async fn get(sender: &mut Sender, path: &str) -> bool {
    let Ok(req) = hyper::Request::get(path)
        .header("host", "x")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::new())
    else {
        return false;
    };
    match sender.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status() == 200;
            resp.into_body().collect().await.is_ok() && ok
        }
        Err(_) => false,
    }
}

/// Sends `paths` in turn at `rate` for `length`, open loop, over `conns` connections.
async fn run(
    addr: std::net::SocketAddr,
    paths: &[String],
    rate: f64,
    length: Duration,
    conns: usize,
) -> Result<(Vec<Duration>, usize), BoxError> {
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, usize)>();
    let queue = Arc::new(Mutex::new(rx));
    let total = (rate * length.as_secs_f64()).round() as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now() + Duration::from_millis(20);
    let mut workers = Vec::new();
    for _ in 0..conns {
        let mut sender = connect(addr).await?;
        let queue = queue.clone();
        let paths: Vec<String> = paths.to_vec();
        workers.push(tokio::spawn(async move {
            let (mut samples, mut errors) = (Vec::new(), 0);
            loop {
                let Some((intended, i)) = queue.lock().await.recv().await else { break };
                if get(&mut sender, &paths[i % paths.len()]).await {
                    samples.push(intended.elapsed());
                } else {
                    errors += 1;
                }
            }
            (samples, errors)
        }));
    }
    // The pacer: a thread that sleeps to each intended send time and releases the request.
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let intended = t0 + period.mul_f64(i as f64);
            if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if tx.send((intended, i)).is_err() {
                break;
            }
        }
    });
    let (mut samples, mut errors) = (Vec::with_capacity(total), 0);
    for w in workers {
        let (s, e) = w.await?;
        samples.extend(s);
        errors += e;
    }
    pacer.join().map_err(|_| "the pacer panicked")?;
    Ok((samples, errors))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() -> Result<(), BoxError> {
    let rate: f64 = std::env::var("API_BENCH_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(500.0);
    let secs: f64 = std::env::var("API_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10.0);
    let ledger = ledger()?;
    let tokens = StaticTokens::parse(
        "bench",
        &format!("tokens:\n  - {{token: {TOKEN}, user: bench, admin: true}}\n"),
    )?;
    let api = Api::new(view(), ledger, Box::new(tokens));
    let server_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    server_rt.spawn(gantry_serve::serve(listener, router(api), None, std::future::pending()));
    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    let day = 86_400;
    // Tenants in a scattered order, so consecutive requests do not hit the same rows.
    let each =
        |f: &dyn Fn(String) -> String| (0..TENANTS).map(|i| f(tenant(i * 37 % TENANTS))).collect::<Vec<_>>();
    let mut cases = vec![
        Case::new("baseline: /healthz", vec!["/healthz".into()]),
        Case::new(
            "usage, one tenant, 7 days by hour",
            each(&|t| format!("/api/v1/usage?tenant={t}&from={}&to={END}&step=hour", END - 7 * day)),
        ),
        Case::new(
            "usage, one tenant, 30 days by day",
            each(&|t| format!("/api/v1/usage?tenant={t}&from={}&to={END}&step=day", END - 30 * day)),
        ),
        Case::new(
            "cost, one tenant, a year",
            each(&|t| format!("/api/v1/cost?tenant={t}&from={START}&to={END}")),
        ),
        Case::new(
            "cost, one tenant, 30 days, mid-day edges",
            each(&|t| {
                format!("/api/v1/cost?tenant={t}&from={}&to={}", END - 30 * day - 5 * 3600, END - 7 * 3600)
            }),
        ),
        Case::new(
            "cost, all 100 tenants, 30 whole days",
            (1..=10)
                .map(|k| format!("/api/v1/cost?from={}&to={}", END - (30 + k) * day, END - k * day))
                .collect(),
        ),
        Case::new(
            "cost, all 100 tenants, 30 days, mid-day edges",
            (1..=10)
                .map(|k| {
                    format!(
                        "/api/v1/cost?from={}&to={}",
                        END - (30 + k) * day - 5 * 3600,
                        END - k * day - 7 * 3600
                    )
                })
                .collect(),
        ),
    ];
    println!("quota API over loopback HTTP/1.1, 8 connections, open loop at {rate} req/s, {secs} s per case; {TENANTS} tenants x a year of hourly accruals x 2 flavors");
    for c in &cases {
        let (_, errors) = client_rt.block_on(run(addr, &c.paths, rate, Duration::from_secs(1), 8))?;
        if errors > 0 {
            return Err(format!("{}: {errors} requests failed in the warm-up", c.name).into());
        }
    }
    let slice = Duration::from_millis(500);
    for _ in 0..(secs / slice.as_secs_f64()).ceil() as usize {
        for c in cases.iter_mut() {
            let (s, e) = client_rt.block_on(run(addr, &c.paths, rate, slice, 8))?;
            c.samples.extend(s);
            c.errors += e;
        }
    }
    println!("\n| case | requests | errors | p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|");
    for c in cases.iter_mut() {
        c.samples.sort_unstable();
        let n = c.samples.len();
        let q = |p: f64| {
            if n == 0 {
                Duration::ZERO
            } else {
                c.samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1]
            }
        };
        println!("| {} | {} | {} | {} | {} | {} |", c.name, n, c.errors, ms(q(0.5)), ms(q(0.99)), ms(q(1.0)));
    }
    Ok(())
}
