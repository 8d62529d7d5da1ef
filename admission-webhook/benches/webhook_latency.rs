//! Latency of the webhook over loopback with TLS, at a fixed open-loop rate.
//!
//! ```sh
//! cargo bench -p gantry-admission-webhook --bench webhook_latency
//! # shorter or other rates: WEBHOOK_BENCH_SECS=5 WEBHOOK_BENCH_RATE=2000 WEBHOOK_BENCH_CONNS=4
//! # WEBHOOK_BENCH_PIN=1 pins the server and the client to one CPU each
//! ```
//!
//! The real router ([`gantry_admission_webhook::router`], the test tenancy of
//! `tests/fixtures/tenants.yaml`) is served over HTTPS by [`gantry_serve::serve`] on 127.0.0.1,
//! next to `POST /allow`: a trivial handler that reads the body, parses nothing and returns a
//! fixed allow review, the baseline of TLS, HTTP and the client measured in the same run. Each
//! case posts the real GKE Pod CREATE review (`kube-rs.AdmissionReview-v1.pod-create.json`,
//! namespace `colin-coder` of tenant `coder`, so the mutate path classifies and patches it).
//!
//! Load is open loop, as the API server's is: a pacing thread releases request `i` at
//! `t0 + i / rate` whatever the server does, onto a queue that a few keep-alive HTTP/1.1 TLS
//! connections take from (an idle connection takes the next request, as a client pool does).
//! Each latency runs from the request's *intended* send time to the end of its reply, so a
//! stalled server shows up as the queueing it causes (no coordinated omission). Each case has
//! a 1 s warm-up that is not recorded; then the cases run in turn in 0.5 s slices until each has
//! run its time, so that the shared machine's bursts of load fall on every case alike. Client
//! and server share the machine's cores (`WEBHOOK_BENCH_PIN=1`: the server on CPU 0, the client
//! on CPU 1). Last, each handler is timed alone, in process, with no HTTP or TLS.

// getrusage(2) for the process's CPU time: the one unsafe call, allowed here only.
#![allow(unsafe_code)]

use axum::body::Body;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use gantry_admission_webhook::{router, AdmissionPolicy, Path, Webhook};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Mutex};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const FIXTURE: &str = include_str!("../tests/fixtures/kube-rs.AdmissionReview-v1.pod-create.json");
const TENANTS: &str = include_str!("../tests/fixtures/tenants.yaml");
/// Each case runs in slices of this length, in turn, until it has run its time.
const SLICE: Duration = Duration::from_millis(500);
/// The baseline's fixed reply (the fixture's uid).
const ALLOW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"0c9a8d74-9cb7-44dd-b98e-09fd62def2f4","allowed":true}}"#;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; a filter argument selects cases by path.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let secs: f64 = env_or("WEBHOOK_BENCH_SECS", 10.0);
    let rate: f64 = env_or("WEBHOOK_BENCH_RATE", 1000.0);
    let conns: usize = env_or("WEBHOOK_BENCH_CONNS", 4);

    // WEBHOOK_BENCH_PIN=1: the server on CPU 0 (one worker), the client and pacer on CPU 1, as
    // in a cluster where the API server does not share the webhook pod's cores.
    let pinned = env_or("WEBHOOK_BENCH_PIN", 0) == 1;

    // The server: its own runtime, as `gantry webhook` runs it (a multi-thread runtime).
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if pinned {
        builder.worker_threads(1).on_thread_start(|| pin(0));
    }
    let server_rt = builder.enable_all().build()?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let dir = tempfile::tempdir()?;
    let files = gantry_serve::TlsFiles::new(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&files.cert, cert.cert.pem())?;
    std::fs::write(&files.key, cert.signing_key.serialize_pem())?;
    let tenancy = gantry_core::tenancy::file::parse("tenants.yaml", TENANTS).map_err(|e| format!("{e:?}"))?;
    let webhook = Arc::new(Webhook::new(AdmissionPolicy::new(tenancy, Some("gantry".into()))?)?);
    let app: Router = router(webhook.clone()).route("/allow", post(allow_all));
    let listener = server_rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = server_rt.spawn(gantry_serve::serve(listener, app, Some(files), async {
        let _ = stop_rx.await;
    }));

    // The client: one thread, its own runtime (the pacer it starts inherits its CPU).
    if pinned {
        pin(1);
    }
    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let tls = tls_client(cert.cert.der().clone())?;
    let body = Bytes::from_static(FIXTURE.as_bytes());

    println!(
        "webhook latency over loopback TLS (HTTP/1.1, {conns} keep-alive connections), open loop at {rate} req/s, {secs} s per case, {} CPUs{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if pinned { " (server pinned to CPU 0, client to CPU 1)" } else { "" }
    );
    println!();
    println!("| case | requests | errors | achieved req/s | p50 | p90 | p99 | p99.9 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let cases: Vec<(&str, &str)> =
        [("allow-all (baseline)", "/allow"), ("mutate", "/mutate"), ("validate", "/validate")]
            .into_iter()
            .filter(|(case, path)| {
                filter.is_empty()
                    || filter.iter().any(|f| path.contains(f.as_str()) || case.contains(f.as_str()))
            })
            .collect();
    for (_, path) in &cases {
        client_rt.block_on(check(addr, &tls, path, body.clone()))?;
        client_rt.block_on(run(addr, &tls, path, body.clone(), rate, Duration::from_secs(1), conns))?;
    }
    // Interleaved slices, so that the machine's bursts of load fall on every case alike.
    let rounds = (secs / SLICE.as_secs_f64()).ceil().max(1.0) as usize;
    let mut outcomes: Vec<Outcome> = cases.iter().map(|_| Outcome::default()).collect();
    for _ in 0..rounds {
        for ((_, path), total) in cases.iter().zip(&mut outcomes) {
            let r = client_rt.block_on(run(addr, &tls, path, body.clone(), rate, SLICE, conns))?;
            total.samples.extend(r.samples);
            total.errors += r.errors;
            total.elapsed += r.elapsed;
        }
    }
    for ((case, _), mut r) in cases.iter().zip(outcomes) {
        r.samples.sort_unstable();
        println!(
            "| {case} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.samples.len(),
            r.errors,
            r.samples.len() as f64 / r.elapsed.as_secs_f64().max(1e-9),
            ms(r.quantile(0.50)),
            ms(r.quantile(0.90)),
            ms(r.quantile(0.99)),
            ms(r.quantile(0.999)),
            ms(r.quantile(1.0)),
        );
    }
    // The handlers alone, in process: what the webhook itself adds to the transport.
    println!();
    println!("| decide only (no HTTP, no TLS) | calls | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (case, path) in [("mutate", Path::Mutate), ("validate", Path::Validate)] {
        let mut r = Outcome::default();
        for _ in 0..20_000 {
            let start = Instant::now();
            std::hint::black_box(webhook.review(path, FIXTURE.as_bytes()));
            r.samples.push(start.elapsed());
        }
        r.samples.sort_unstable();
        println!(
            "| {case} | {} | {} | {} | {} |",
            r.samples.len(),
            ms(r.quantile(0.5)),
            ms(r.quantile(0.99)),
            ms(r.quantile(1.0))
        );
    }
    let _ = stop_tx.send(());
    server_rt.block_on(server)??;
    Ok(())
}

/// Pins the calling thread (and threads it starts later) to CPU `cpu`.
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it; the call only
    // reads it. A failure leaves the thread unpinned, which the printed header does not hide.
    #[cfg(target_os = "linux")]
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The baseline: reads the body (so the connection stays usable), parses nothing.
async fn allow_all(body: Body) -> impl IntoResponse {
    let _ = axum::body::to_bytes(body, usize::MAX).await;
    ([(header::CONTENT_TYPE, "application/json")], ALLOW)
}

fn tls_client(ca: CertificateDer<'static>) -> Result<tokio_rustls::TlsConnector, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive HTTP/1.1 connection over TLS.
async fn connect(addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> Result<Sender, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream = tls.connect(ServerName::try_from("localhost")?, tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(path: &str, body: Bytes) -> Result<hyper::Request<Full<Bytes>>, BoxError> {
    Ok(hyper::Request::post(path)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?)
}

/// Sends one request and reads the whole reply: its status and body.
async fn exchange(sender: &mut Sender, path: &str, body: Bytes) -> Result<(u16, Bytes), BoxError> {
    sender.ready().await?;
    let response = sender.send_request(request(path, body)?).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

/// Makes sure each path answers what it should before timing it.
async fn check(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    path: &str,
    body: Bytes,
) -> Result<(), BoxError> {
    let mut sender = connect(addr, tls).await?;
    let (status, reply) = exchange(&mut sender, path, body).await?;
    let reply: serde_json::Value = serde_json::from_slice(&reply)?;
    let response = &reply["response"];
    let ok = status == 200
        && response["allowed"] == true
        && match path {
            "/mutate" => response["patchType"] == "JSONPatch",
            _ => response.get("patch").is_none(),
        };
    if !ok {
        return Err(format!("{path} answered {status} {reply}").into());
    }
    Ok(())
}

#[derive(Default)]
struct Outcome {
    /// Latencies from the intended send time (sorted before quantiles are read).
    samples: Vec<Duration>,
    errors: usize,
    /// From the first intended send to the last reply.
    elapsed: Duration,
}

impl Outcome {
    fn quantile(&self, q: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.samples.len() as f64).ceil() as usize).clamp(1, self.samples.len());
        self.samples[rank - 1]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Posts `body` to `path` at `rate` per second for `length`, open loop, over `conns`
/// connections taking from one queue.
async fn run(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    path: &str,
    body: Bytes,
    rate: f64,
    length: Duration,
    conns: usize,
) -> Result<Outcome, BoxError> {
    let mut senders = Vec::new();
    for _ in 0..conns {
        senders.push(connect(addr, tls).await?);
    }
    let (tx, rx) = mpsc::unbounded_channel::<Instant>();
    let queue = Arc::new(Mutex::new(rx));
    let total = (rate * length.as_secs_f64()).round() as u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    // Start a little later so that the pacer's first deadline is not already behind.
    let t0 = Instant::now() + Duration::from_millis(20);
    let mut workers = Vec::new();
    for mut sender in senders {
        let queue = queue.clone();
        let body = body.clone();
        let path = path.to_string();
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0;
            let mut last = t0;
            loop {
                let Some(intended) = queue.lock().await.recv().await else { break };
                match exchange(&mut sender, &path, body.clone()).await {
                    Ok((200, _)) => {
                        last = Instant::now();
                        samples.push(last - intended);
                    }
                    _ => errors += 1,
                }
            }
            (samples, errors, last)
        }));
    }
    // The pacer: a thread that sleeps to each intended send time (thread sleeps are accurate
    // to tens of microseconds, tokio's timer to a millisecond) and releases the request.
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let intended = t0 + period.mul_f64(i as f64);
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            if tx.send(intended).is_err() {
                break;
            }
        }
    });
    let mut outcome = Outcome { samples: Vec::with_capacity(total as usize), ..Outcome::default() };
    let mut end = t0;
    for worker in workers {
        let (samples, errors, last) = worker.await?;
        outcome.samples.extend(samples);
        outcome.errors += errors;
        end = end.max(last);
    }
    pacer.join().map_err(|_| "the pacer panicked")?;
    outcome.elapsed = end - t0;
    Ok(outcome)
}
