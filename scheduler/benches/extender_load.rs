//! Load benchmark of the extender over loopback: `cargo bench -p gantry-scheduler --bench extender_load`.
//!
//! For clusters of 1,000 and 5,000 nodes (8 GPUs each, half A100, half V100M32, a quarter of the
//! GPUs in use), `CONCURRENCY` clients each send filter then prioritize for a 1-GPU pod with
//! `nodeCacheCapable: true` (the request names every node, as kube-scheduler does when all nodes
//! are feasible), back to back on keep-alive connections, for `SECONDS`. Reported: pairs per
//! second and the latency of one pair (p50, p99, max) from all samples. The same load is sent to
//! a trivial pass-through handler (parses the request, returns every node and zero scores) in the
//! same run, as the baseline of what HTTP and JSON alone cost.

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::{PolicyKind, Scale, Scheduler};
use gantry_scheduler::extender::Extender;
use gantry_scheduler::server::router;
use gantry_scheduler::wire::{ExtenderArgs, ExtenderFilterResult, HostPriority};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONCURRENCY: usize = 4;
const SECONDS: u64 = 5;

fn cluster(nodes: usize) -> Cluster {
    let mut models = ModelCatalog::default();
    let a = models.intern("A100").unwrap();
    let v = models.intern("V100M32").unwrap();
    let list = (0..nodes).map(|i| Node::new(format!("node-{i:05}"), 96000, 786432, 8, Some(if i % 2 == 0 { a } else { v }))).collect();
    let mut c = Cluster::new(models, list);
    // A quarter of the GPUs in use: 2 of 8 on every node.
    for i in 0..nodes {
        let pod = PodRequest::whole_gpus(16000, 131072, 2);
        c.allocate(i as u64 + 1, &pod, gantry_core::model::Placement { node: i, gpus: vec![(0, 1000), (1, 1000)] }).unwrap();
    }
    c
}

fn gantry_app(nodes: usize) -> Router {
    let c = cluster(nodes);
    let expected = [PodRequest::whole_gpus(8000, 65536, 1), PodRequest::whole_gpus(64000, 524288, 8), PodRequest::shared_gpu(4000, 32768, 500)];
    let s = Scheduler::new(PolicyKind::Gantry.build(Scale::of(&c), &expected));
    router(Extender::new(c, s), "/scheduler").unwrap()
}

/// Parses the request like the real handler, then passes every node with score 0.
fn passthrough_app() -> Router {
    fn json(r: &impl serde::Serialize) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(r).unwrap()).into_response()
    }
    async fn filter(body: Bytes) -> Response {
        let args = ExtenderArgs::parse(&body).unwrap_or_default();
        json(&ExtenderFilterResult { node_names: args.node_names, failed_nodes: Some(Default::default()), ..Default::default() })
    }
    async fn prioritize(body: Bytes) -> Response {
        let args = ExtenderArgs::parse(&body).unwrap_or_default();
        json(&args.node_names.unwrap_or_default().into_iter().map(|host| HostPriority { host, score: 0 }).collect::<Vec<_>>())
    }
    Router::new().route("/scheduler/filter", post(filter)).route("/scheduler/prioritize", post(prioritize))
}

/// One keep-alive HTTP/1.1 connection that posts JSON and reads a Content-Length reply.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn post(&mut self, path: &str, body: &[u8]) -> usize {
        let head = format!("POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
        self.stream.write_all(head.as_bytes()).await.unwrap();
        self.stream.write_all(body).await.unwrap();
        self.buf.clear();
        let mut chunk = [0u8; 65536];
        loop {
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse().unwrap()).expect("content-length");
            while self.buf.len() < end + 4 + len {
                let n = self.stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "server closed the connection");
                self.buf.extend_from_slice(&chunk[..n]);
            }
            return len;
        }
    }
}

struct Figures {
    pairs_per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn load(app: Router, nodes: usize) -> Figures {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let names: Vec<String> = (0..nodes).map(|i| format!("node-{i:05}")).collect();
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let clients = (0..CONCURRENCY).map(|c| {
        let names = names.clone();
        tokio::spawn(async move {
            let mut conn = Conn { stream: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() };
            conn.stream.set_nodelay(true).unwrap();
            // The body is built once per client so that the client's own JSON work stays out of
            // the measurement (kube-scheduler serializes each request once, too).
            let uid = format!("c{c}");
            let pod = serde_json::json!({"metadata": {"name": uid, "namespace": "bench", "uid": uid},
                "spec": {"containers": [{"resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"nvidia.com/gpu": 1}}}]}});
            let body = serde_json::to_vec(&serde_json::json!({"Pod": pod, "Nodes": null, "NodeNames": names})).unwrap();
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                conn.post("/scheduler/filter", &body).await;
                conn.post("/scheduler/prioritize", &body).await;
                samples.push(t.elapsed());
            }
            samples
        })
    });
    let started = Instant::now();
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.abort();
    all.sort();
    let at = |q: f64| all[((q * all.len() as f64).ceil() as usize).clamp(1, all.len()) - 1];
    Figures { pairs_per_second: all.len() as f64 / elapsed, p50: at(0.5), p99: at(0.99), max: *all.last().unwrap() }
}

fn main() {
    // `cargo bench` passes --bench; a filter argument selects nothing here.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("extender load: {CONCURRENCY} clients, {SECONDS} s per case, filter+prioritize pairs, nodeCacheCapable");
    println!("{:<8} {:<12} {:>10} {:>10} {:>10} {:>10}", "nodes", "handler", "pairs/s", "p50 ms", "p99 ms", "max ms");
    for nodes in [1000, 5000] {
        for (name, app) in [("pass-through", passthrough_app()), ("gantry", gantry_app(nodes))] {
            let f = rt.block_on(load(app, nodes));
            println!(
                "{nodes:<8} {name:<12} {:>10.0} {:>10.2} {:>10.2} {:>10.2}",
                f.pairs_per_second,
                f.p50.as_secs_f64() * 1e3,
                f.p99.as_secs_f64() * 1e3,
                f.max.as_secs_f64() * 1e3
            );
        }
    }
}
