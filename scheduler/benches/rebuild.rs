//! What rebuilding the queue controller costs (on becoming leader, when the tenancy changes,
//! after a relist): `cargo bench -p gantry-scheduler --bench rebuild`.
//!
//! A cluster of 1,250 nodes with 8 A100 each and 20 tenants; its pods, shaped as the API server
//! sends them (labels, owner references, annotations, several containers with requests and
//! limits, tolerations): 1,000 running 8-GPU workers with placement records, 2,000 running 1-GPU
//! pods with placement records, 2,500 CPU daemons, and 2,000 gated 1-GPU pods waiting. Two ways,
//! in the same run, on a fresh controller each time (nodes and tenancy given first, not timed):
//!
//! - **objects**: every stored pod turned into JSON and read, then the rebuild (what each
//!   rebuild cost while the controller read `serde_json::Value`s);
//! - **records**: the rebuild from the pods as read once when their events came
//!   (`api::record::PodRecord`), as the runner does now.
//!
//! Reported: the median of `REPS` runs of each, and their ratio.

use gantry_api::record::PodRecord;
use gantry_core::model::{Cluster, PodRequest};
use gantry_core::queue::{Mode, Queue};
use gantry_core::tenancy::file;
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::controller::Controller;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const NODES: usize = 1_250;
const TENANTS: usize = 20;
const REPS: usize = 7;
const T0: i64 = 1_793_491_200;

fn tenancy_yaml() -> String {
    let mut y = String::from("flavors:\n  - name: A100\ntenants:\n");
    for t in 0..TENANTS {
        y.push_str(&format!(
            "  - name: t{t}\n    namespaces: [ns-{t}]\n    quotas: {{A100: {{nominal: 600}}}}\n"
        ));
    }
    y
}

fn node(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("gpu-{i:05}"), "labels": {"nvidia.com/gpu.product": "A100"}},
        "status": {"allocatable": {"cpu": "96", "memory": "1536Gi", "nvidia.com/gpu": "8"},
                   "capacity": {"cpu": "96", "memory": "1536Gi", "nvidia.com/gpu": "8"}}})
}

/// A pod as a training operator makes it: owner, labels, a sidecar, requests and limits.
fn pod(ns: &str, name: &str, gpus: u32, node: Option<(usize, &[u32])>, gated: bool) -> Pod {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"),
            "resourceVersion": "1", "creationTimestamp": "2026-11-01T00:00:00Z",
            "labels": {"training.kubeflow.org/job-name": name, "training.kubeflow.org/operator-name": "pytorchjob-controller",
                       "training.kubeflow.org/replica-type": "worker", "gantry.dev/tenant": ns},
            "annotations": {"gantry.dev/workload": format!("{ns}/pod/{name}")},
            "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": name,
                                 "uid": format!("{name}-job"), "controller": true}]},
        "spec": {"containers": [
                {"name": "pytorch", "image": "pytorch:2.5",
                 "resources": {"requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": gpus.to_string()},
                               "limits": {"memory": "64Gi", "nvidia.com/gpu": gpus.to_string()}}},
                {"name": "metrics", "image": "exporter:1", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "gantry-batch"},
        "status": {"phase": "Pending"}});
    if gated {
        p["spec"]["schedulingGates"] = json!([{"name": "gantry.dev/admission"}]);
    }
    if let Some((n, gs)) = node {
        p["spec"]["nodeName"] = json!(format!("gpu-{n:05}"));
        p["status"]["phase"] = json!("Running");
        let list: Vec<String> = gs.iter().map(u32::to_string).collect();
        p["metadata"]["annotations"]["gantry.dev/placement"] =
            json!(format!("gpu-{n:05}:{}@{}", list.join(","), T0 - 3600));
    }
    if gpus == 0 {
        // A node's CPU daemon: no owner of a framework, no placement.
        p["metadata"]["labels"] = json!({"app": "node-exporter"});
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "exporter", "uid": "ds", "controller": true}]);
        p["spec"]["containers"] =
            json!([{"name": "exporter", "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}}}]);
    }
    serde_json::from_value(p).expect("a pod")
}

fn pods() -> Vec<Pod> {
    let mut out = Vec::new();
    let ns = |i: usize| format!("ns-{}", i % TENANTS);
    for n in 0..1_000 {
        out.push(pod(&ns(n), &format!("w8-{n}"), 8, Some((n, &[0, 1, 2, 3, 4, 5, 6, 7])), false));
    }
    for k in 0..2_000 {
        let n = 1_000 + k / 8;
        out.push(pod(&ns(k), &format!("w1-{k}"), 1, Some((n, &[(k % 8) as u32])), false));
    }
    for n in 0..NODES {
        for d in 0..2 {
            out.push(pod("kube-system", &format!("daemon-{n}-{d}"), 0, Some((n, &[])), false));
        }
    }
    for k in 0..2_000 {
        out.push(pod(&ns(k), &format!("waiting-{k}"), 1, None, true));
    }
    out
}

fn controller(tenancy: &gantry_core::tenancy::Tenancy, nodes: &[Value]) -> Controller {
    let scheduler = Scheduler::new(
        PolicyKind::Gantry.build(&Cluster::default(), &[PodRequest::whole_gpus(8000, 65536, 1)]),
    );
    let mut c =
        Controller::new(Queue::new_live(tenancy.clone(), Cluster::default(), scheduler, Mode::Quota, T0));
    for n in nodes {
        c.node_applied(n, T0).expect("a node");
    }
    c
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let tenancy = file::parse("bench.yaml", &tenancy_yaml()).expect("the bench tenancy");
    let nodes: Vec<Value> = (0..NODES).map(node).collect();
    let stored = pods();
    let records: Vec<PodRecord> =
        stored.iter().map(|p| PodRecord::read(&serde_json::to_value(p).expect("json"))).collect();
    let (mut objects, mut read_once) = (Vec::new(), Vec::new());
    let mut actions = (0, 0);
    for _ in 0..REPS {
        let mut c = controller(&tenancy, &nodes);
        let t = Instant::now();
        let values: Vec<Value> = stored.iter().map(|p| serde_json::to_value(p).expect("json")).collect();
        actions.0 = c.rebuild(&values, T0).len();
        objects.push(t.elapsed());

        let mut c = controller(&tenancy, &nodes);
        let t = Instant::now();
        actions.1 = c.rebuild(&records, T0).len();
        read_once.push(t.elapsed());
    }
    assert_eq!(actions.0, actions.1, "both ways rebuild the same controller");
    let (a, b) = (median(objects), median(read_once));
    println!("rebuild of {} pods on {NODES} nodes, median of {REPS}:", stored.len());
    println!("  objects (to JSON, read, rebuild): {:>8.1} ms", a.as_secs_f64() * 1e3);
    println!("  records (rebuild only):           {:>8.1} ms", b.as_secs_f64() * 1e3);
    println!("  ratio objects / records:          {:>8.2}", a.as_secs_f64() / b.as_secs_f64());
}
