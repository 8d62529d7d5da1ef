//! Load benchmark of the extender over loopback: `cargo bench -p gantry-scheduler --bench extender_load`.
//!
//! For clusters of 1,000, 5,000 and 20,000 nodes (8 GPUs each, half A100, half V100M32, a quarter
//! of the GPUs in use), `CONCURRENCY` clients each send filter then prioritize with
//! `nodeCacheCapable: true` (the request names every node, as kube-scheduler does when all nodes
//! are feasible), back to back on keep-alive connections, for `SECONDS`, for each pod shape users
//! send (see [`Shape`]): 1 GPU, 8 GPUs (fails most nodes of the cluster), half a shared GPU, one
//! GPU pinned to a model, and one GPU with a node selector. Reported: pairs per second and the
//! latency of one pair (p50, p99, max) from all samples. Two baselines run in the same
//! invocation: **pass-through** parses the request and encodes the reply as Gantry does,
//! returning every node and zero scores (what HTTP and JSON alone cost); **fixed-reply** reads the
//! body and returns a reply built once (what HTTP and the bytes alone cost). An extra case at
//! 5,000 nodes names 500 per request, as kube-scheduler does by default
//! (`percentageOfNodesToScore`), each pod the next 500.
//!
//! Arguments: `micro` times each stage of a pair in-process at 5,000 nodes instead (`micro 8gpu`:
//! one shape); other words select the cases
//! whose line holds them all (`-- 5000 8gpu gantry`).

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::extender::Extender;
use gantry_scheduler::server::router;
use gantry_scheduler::wire::{priorities_json, ExtenderArgs, ExtenderFilterResult, HostPriority};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONCURRENCY: usize = 4;
const SECONDS: u64 = 5;

fn cluster(nodes: usize) -> Cluster {
    let mut models = ModelCatalog::default();
    let a = models.intern("A100").unwrap();
    let v = models.intern("V100M32").unwrap();
    let list = (0..nodes)
        .map(|i| Node::new(format!("node-{i:05}"), 96000, 786432, 8, Some(if i % 2 == 0 { a } else { v })))
        .collect();
    let mut c = Cluster::new(models, list);
    // A quarter of the GPUs in use: 2 of 8 on every node.
    for i in 0..nodes {
        let pod = PodRequest::whole_gpus(16000, 131072, 2);
        c.allocate(
            i as u64 + 1,
            &pod,
            gantry_core::model::Placement { node: i, gpus: vec![(0, 1000), (1, 1000)] },
        )
        .unwrap();
    }
    c
}

fn gantry_app(nodes: usize) -> Router {
    let c = cluster(nodes);
    let expected = [
        PodRequest::whole_gpus(8000, 65536, 1),
        PodRequest::whole_gpus(64000, 524288, 8),
        PodRequest::shared_gpu(4000, 32768, 500),
    ];
    let s = Scheduler::new(PolicyKind::Gantry.build(&c, &expected));
    router(Extender::new(c, s), "/scheduler").unwrap()
}

/// The pod shapes of the cases, as the pod spec kube-scheduler sends.
#[derive(Clone, Copy)]
enum Shape {
    OneGpu,
    EightGpus,
    SharedGpu,
    PinnedModel,
    NodeSelector,
}

impl Shape {
    const ALL: [Shape; 5] =
        [Shape::OneGpu, Shape::EightGpus, Shape::SharedGpu, Shape::PinnedModel, Shape::NodeSelector];

    fn name(self) -> &'static str {
        match self {
            Shape::OneGpu => "1gpu",
            Shape::EightGpus => "8gpu",
            Shape::SharedGpu => "shared",
            Shape::PinnedModel => "pinned",
            Shape::NodeSelector => "selector",
        }
    }

    fn pod(self, uid: &str) -> serde_json::Value {
        use serde_json::json;
        let gpus = if matches!(self, Shape::EightGpus) { 8 } else { 1 };
        let cpu = if matches!(self, Shape::EightGpus) { "64" } else { "8" };
        let mut pod = json!({"metadata": {"name": uid, "namespace": "bench", "uid": uid},
            "spec": {"containers": [{"resources": {"requests": {"cpu": cpu, "memory": "32Gi"}, "limits": {"nvidia.com/gpu": gpus}}}]}});
        match self {
            Shape::SharedGpu => pod["metadata"]["annotations"] = json!({"gantry.dev/gpu-milli": "500"}),
            Shape::PinnedModel => pod["spec"]["nodeSelector"] = json!({"nvidia.com/gpu.product": "A100"}),
            Shape::NodeSelector => {
                pod["spec"]["nodeSelector"] = json!({"topology.kubernetes.io/zone": "zone-a"})
            }
            Shape::OneGpu | Shape::EightGpus => {}
        }
        pod
    }
}

/// Returns replies built once (every node passing, zero scores), after reading the body: no JSON
/// work at all.
fn fixed_reply_app(nodes: usize) -> Router {
    let names: Vec<std::borrow::Cow<str>> = (0..nodes).map(|i| format!("node-{i:05}").into()).collect();
    let filter = Bytes::from(
        ExtenderFilterResult {
            node_names: Some(names.clone()),
            failed_nodes: Some(Default::default()),
            ..Default::default()
        }
        .to_json(),
    );
    let prioritize = Bytes::from(priorities_json(
        &names.into_iter().map(|host| HostPriority { host, score: 0 }).collect::<Vec<_>>(),
    ));
    let reply =
        |body: Bytes| async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() };
    Router::new()
        .route("/scheduler/filter", post(move |_: Bytes| reply(filter.clone())))
        .route("/scheduler/prioritize", post(move |_: Bytes| reply(prioritize.clone())))
}

/// Parses the request and encodes the reply like the real handler, passing every node with
/// score 0.
fn passthrough_app() -> Router {
    fn json(body: Vec<u8>) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
    async fn filter(body: Bytes) -> Response {
        let args = ExtenderArgs::parse(&body).unwrap_or_default();
        json(
            ExtenderFilterResult {
                node_names: args.node_names,
                failed_nodes: Some(Default::default()),
                ..Default::default()
            }
            .to_json(),
        )
    }
    async fn prioritize(body: Bytes) -> Response {
        let args = ExtenderArgs::parse(&body).unwrap_or_default();
        json(priorities_json(
            &args
                .node_names
                .unwrap_or_default()
                .into_iter()
                .map(|host| HostPriority { host, score: 0 })
                .collect::<Vec<_>>(),
        ))
    }
    Router::new().route("/scheduler/filter", post(filter)).route("/scheduler/prioritize", post(prioritize))
}

/// One keep-alive HTTP/1.1 connection that posts JSON and reads a Content-Length reply.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A whole request (head and body), built once so that the client's own work stays out of the
/// measurement (kube-scheduler serializes each request once, too).
fn request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

impl Conn {
    /// Sends one request and reads the whole reply, checking that it is a 200 with a body of
    /// its Content-Length; returns that length.
    async fn post(&mut self, request: &[u8]) -> usize {
        self.stream.write_all(request).await.unwrap();
        self.buf.clear();
        let mut scanned = 0;
        let end = loop {
            self.fill().await;
            // Only the new bytes (and the 3 before them) can complete the blank line.
            if let Some(at) = self.buf[scanned..].windows(4).position(|w| w == b"\r\n\r\n") {
                break scanned + at;
            }
            scanned = self.buf.len().saturating_sub(3);
        };
        let head = &self.buf[..end];
        assert!(head.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(head));
        let len = head
            .split(|&b| b == b'\n')
            .find_map(|l| {
                let (name, value) = l.split_at_checked(15)?;
                name.eq_ignore_ascii_case(b"content-length:")
                    .then(|| std::str::from_utf8(value).ok()?.trim().parse::<usize>().ok())?
            })
            .expect("content-length");
        while self.buf.len() < end + 4 + len {
            self.fill().await;
        }
        assert_eq!(self.buf.len(), end + 4 + len, "bytes after the reply");
        len
    }

    /// Reads what has arrived, straight into the buffer.
    async fn fill(&mut self) {
        if self.buf.capacity() - self.buf.len() < 16384 {
            self.buf.reserve(65536);
        }
        let n = self.stream.read_buf(&mut self.buf).await.unwrap();
        assert!(n > 0, "server closed the connection");
    }
}

struct Figures {
    pairs_per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// `named` of the `nodes` in each request (all of them, or kube-scheduler's default share).
async fn load(app: Router, nodes: usize, named: usize, shape: Shape) -> Figures {
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
            let pod = shape.pod(&format!("c{c}"));
            // One list per pod in turn: kube-scheduler names `named` nodes from where the last
            // pod's search stopped.
            let pairs: Vec<_> = (0..nodes / named)
                .map(|k| {
                    let list = &names[k * named..(k + 1) * named];
                    let body = serde_json::to_vec(
                        &serde_json::json!({"Pod": pod, "Nodes": null, "NodeNames": list}),
                    )
                    .unwrap();
                    (request("/scheduler/filter", &body), request("/scheduler/prioritize", &body))
                })
                .collect();
            let mut samples = Vec::new();
            for (filter, prioritize) in pairs.iter().cycle().skip(c) {
                if Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                conn.post(filter).await;
                conn.post(prioritize).await;
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
    Figures {
        pairs_per_second: all.len() as f64 / elapsed,
        p50: at(0.5),
        p99: at(0.99),
        max: *all.last().unwrap(),
    }
}

/// Time of each stage of one pair in-process, without HTTP (`-- micro`).
fn micro(nodes: usize, shape: Shape) {
    use std::sync::Mutex;
    let c = cluster(nodes);
    let expected = [
        PodRequest::whole_gpus(8000, 65536, 1),
        PodRequest::whole_gpus(64000, 524288, 8),
        PodRequest::shared_gpu(4000, 32768, 500),
    ];
    let s = Scheduler::new(PolicyKind::Gantry.build(&c, &expected));
    let ext = Mutex::new(Extender::new(c, s));
    let names: Vec<String> = (0..nodes).map(|i| format!("node-{i:05}")).collect();
    let pod = shape.pod("p");
    let body =
        serde_json::to_vec(&serde_json::json!({"Pod": pod, "Nodes": null, "NodeNames": names})).unwrap();
    // The best of 10 rounds: the machine is shared.
    let n = 200;
    let time = |what: &str, f: &mut dyn FnMut()| {
        f();
        let best = (0..10)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..n {
                    f();
                }
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            })
            .fold(f64::INFINITY, f64::min);
        println!("{nodes:<6} {:<9} {what:<22} {best:>8.1} us", shape.name());
    };
    time("parse", &mut || drop(std::hint::black_box(ExtenderArgs::parse(&body).unwrap())));
    let args = ExtenderArgs::parse(&body).unwrap();
    time("filter", &mut || drop(std::hint::black_box(ext.lock().unwrap().filter(&args))));
    let f = ext.lock().unwrap().filter(&args);
    time("filter to_json", &mut || drop(std::hint::black_box(f.to_json())));
    time("prioritize", &mut || drop(std::hint::black_box(ext.lock().unwrap().prioritize(&args).unwrap())));
    let p = ext.lock().unwrap().prioritize(&args).unwrap();
    time("priorities_json", &mut || drop(std::hint::black_box(priorities_json(&p))));
    println!(
        "{nodes:<6} bodies: request {} B, filter reply {} B, prioritize reply {} B",
        body.len(),
        f.to_json().len(),
        priorities_json(&p).len()
    );
}

fn main() {
    // `cargo bench` passes --bench.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if args.iter().any(|a| a == "micro") {
        // `-- micro 8gpu`: one shape; else each.
        let shapes: Vec<Shape> =
            Shape::ALL.into_iter().filter(|s| args.iter().all(|a| a == "micro" || a == s.name())).collect();
        for shape in shapes {
            micro(5000, shape);
        }
        return;
    }
    // Server and clients share the machine's 2 cores as 2 workers: better than the clients on a
    // thread of their own beside 2 or 1 server workers (measured).
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("extender load: {CONCURRENCY} clients, {SECONDS} s per case, filter+prioritize pairs, nodeCacheCapable");
    println!(
        "{:<8} {:<8} {:<9} {:<12} {:>10} {:>10} {:>10} {:>10}",
        "nodes", "named", "pod", "handler", "pairs/s", "p50 ms", "p99 ms", "max ms"
    );
    // Every node named, as when all nodes are feasible; and at 5,000 nodes the 500 that
    // kube-scheduler's default percentageOfNodesToScore stops at (max(100, n * (50 - n/125) / 100)).
    let cases = [(1000, 1000), (5000, 5000), (5000, 500), (20000, 20000)];
    for ((nodes, named), shape) in cases.into_iter().flat_map(|c| Shape::ALL.map(move |s| (c, s))) {
        for name in ["fixed-reply", "pass-through", "gantry"] {
            let case = format!("{nodes} {named} {} {name}", shape.name());
            if !args.iter().all(|a| case.split(' ').any(|w| w == a)) {
                continue;
            }
            let app = match name {
                "gantry" => gantry_app(nodes),
                "pass-through" => passthrough_app(),
                _ => fixed_reply_app(nodes),
            };
            let f = rt.block_on(load(app, nodes, named, shape));
            println!(
                "{nodes:<8} {named:<8} {:<9} {name:<12} {:>10.0} {:>10.2} {:>10.2} {:>10.2}",
                shape.name(),
                f.pairs_per_second,
                f.p50.as_secs_f64() * 1e3,
                f.p99.as_secs_f64() * 1e3,
                f.max.as_secs_f64() * 1e3
            );
        }
    }
}
