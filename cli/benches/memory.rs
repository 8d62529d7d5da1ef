//! Peak memory of each Gantry server under 64 concurrent maximum-size bodies: the `gantry`
//! binary is started as a user would, 64 clients send at once, and the server's peak resident
//! set (`VmHWM` in /proc) is read after. The figure is compared with half of the chart's memory
//! limit for that component (values.yaml), the budget the security issue set.
//!
//! `cargo bench -p gantry --bench memory` (Linux only: it reads /proc).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 64;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(command: &str, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([command, "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gantry binary runs");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().expect("a start line").expect("text");
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

/// Peak resident set of `pid`, in MiB.
fn peak_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Sends `body` from CLIENTS threads at once; the statuses seen, by count (0: no connection,
/// 1: the server closed it before the body was sent, 2: no readable status).
fn storm(addr: &str, path: &str, body: Arc<Vec<u8>>) -> Vec<(u16, usize)> {
    storm_with(addr, path, body, "")
}

fn storm_with(addr: &str, path: &str, body: Arc<Vec<u8>>, headers: &str) -> Vec<(u16, usize)> {
    let barrier = Arc::new(std::sync::Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, path, body, barrier, headers) = (addr.to_string(), path.to_string(), body.clone(), barrier.clone(), headers.to_string());
            std::thread::spawn(move || -> u16 {
                let Ok(mut s) = TcpStream::connect(&addr) else { return 0 };
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                barrier.wait();
                let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                if s.write_all(head.as_bytes()).and_then(|_| s.write_all(&body)).is_err() {
                    return 1;
                }
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                reply.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(2)
            })
        })
        .collect();
    let mut counts: Vec<(u16, usize)> = Vec::new();
    for t in threads {
        let code = t.join().unwrap_or(3);
        match counts.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => counts.push((code, 1)),
        }
    }
    counts.sort();
    counts
}

/// `[[],[],…]`: the most JSON values per byte.
fn nested_arrays(bytes: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes);
    v.push(b'[');
    while v.len() + 4 < bytes {
        v.extend_from_slice(b"[],");
    }
    v.extend_from_slice(b"[]]");
    v
}

fn review(pod: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "colin-coder", "operation": "CREATE", "object": pod}}))
    .unwrap()
}

fn gpu_pod(env: usize) -> serde_json::Value {
    let env: Vec<serde_json::Value> =
        (0..env).map(|i| serde_json::json!({"name": format!("V{i}"), "value": "x"})).collect();
    serde_json::json!({"metadata": {"generateName": "w-", "namespace": "colin-coder"},
        "spec": {"schedulingGates": [{"name": "gantry.dev/admission"}],
                 "containers": [{"name": "main", "env": env, "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})
}

fn main() {
    let mut rows = Vec::new();
    // The admission webhook: limit 512 MiB, 8 MiB bodies.
    {
        let tenants = repo("admission-webhook/tests/fixtures/tenants.yaml");
        let server = start("webhook", &["--tenants", tenants.to_str().unwrap()]);
        let pid = server.child.id();
        let idle = peak_mib(pid);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("[[],[],…] just under 8 MiB", nested_arrays((8 << 20) - 64)),
            ("a pod with 120,000 env vars (~360,000 values, just under the cap)", review(gpu_pod(120_000))),
        ];
        for (what, body) in cases {
            let size = body.len() as f64 / (1 << 20) as f64;
            let started = Instant::now();
            let statuses = storm(&server.addr, "/validate", Arc::new(body));
            rows.push((
                "webhook",
                what.to_string(),
                size,
                idle,
                peak_mib(pid),
                256.0,
                statuses,
                started.elapsed(),
            ));
        }
    }
    // The scheduler's extender: limit 2 GiB, 64 MiB bodies.
    {
        let nodes = repo("examples/clusters/venus-968.csv");
        let server = start("scheduler", &["--standalone", "--nodes", nodes.to_str().unwrap()]);
        let pid = server.child.id();
        let idle = peak_mib(pid);
        let mut names = Vec::with_capacity(64 << 20);
        names.extend_from_slice(br#"{"Pod": {"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}, "NodeNames": ["#);
        while names.len() + 16 < (64 << 20) - 16 {
            names.extend_from_slice(br#""n","#);
        }
        names.extend_from_slice(br#""n"]}"#);
        let size = names.len() as f64 / (1 << 20) as f64;
        let started = Instant::now();
        let statuses = storm(&server.addr, "/scheduler/filter", Arc::new(names));
        rows.push((
            "scheduler extender",
            "filter naming ~16.7 M nodes, just under 64 MiB".to_string(),
            size,
            idle,
            peak_mib(pid),
            1024.0,
            statuses,
            started.elapsed(),
        ));
    }
    // The quota API: limit 1 GiB, 16 MiB ingest bodies; a token is checked before any is read.
    {
        let dir = std::env::temp_dir().join(format!("gantry-memory-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tokens = dir.join("tokens.yaml");
        std::fs::write(&tokens, "tokens:\n  - {token: scheduler-token-1, user: scheduler, writer: true}\n")
            .unwrap();
        let ledger = dir.join("ledger.db");
        let server =
            start("quota-api", &["--ledger", ledger.to_str().unwrap(), "--tokens", tokens.to_str().unwrap()]);
        let pid = server.child.id();
        let idle = peak_mib(pid);
        let mut lines = Vec::with_capacity(16 << 20);
        let mut i = 0u64;
        while lines.len() + 200 < (16 << 20) - 64 {
            let line = format!("{{\"tenant\":\"t\",\"flavor\":\"A100\",\"start\":{},\"end\":{},\"guaranteed\":1,\"borrowed\":0,\"priceMicros\":1}}\n", 1_700_000_000 + i * 60, 1_700_000_060 + i * 60);
            lines.extend_from_slice(line.as_bytes());
            i += 1;
        }
        let body = Arc::new(lines);
        let size = body.len() as f64 / (1 << 20) as f64;
        let started = Instant::now();
        let statuses = storm(&server.addr, "/internal/v1/accruals", body.clone());
        rows.push((
            "quota API",
            "accrual lines, no token".to_string(),
            size,
            idle,
            peak_mib(pid),
            512.0,
            statuses,
            started.elapsed(),
        ));
        let started = Instant::now();
        let statuses = storm_with(
            &server.addr,
            "/internal/v1/accruals",
            body,
            "Authorization: Bearer scheduler-token-1\r\n",
        );
        rows.push((
            "quota API",
            "accrual lines, the writer's token".to_string(),
            size,
            idle,
            peak_mib(pid),
            512.0,
            statuses,
            started.elapsed(),
        ));
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("| server | 64 concurrent bodies of | MiB each | idle RSS MiB | peak RSS MiB | budget MiB (half the limit) | answers | time |");
    println!("|---|---|---|---|---|---|---|---|");
    for (server, what, size, idle, peak, budget, statuses, took) in rows {
        let answers: Vec<String> = statuses.iter().map(|(c, n)| format!("{n}× {c}")).collect();
        let verdict = if peak < budget { "" } else { " **over**" };
        println!(
            "| {server} | {what} | {size:.1} | {idle:.0} | {peak:.0}{verdict} | {budget:.0} | {} | {:.1} s |",
            answers.join(", "),
            took.as_secs_f64()
        );
    }
}
