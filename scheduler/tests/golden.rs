//! The extender's decisions, held still across speed work: a recorded sequence of pods of every
//! shape users send goes through filter, prioritize and bind on a mixed cluster, and every reply
//! (as JSON values, so a map's key order does not count, as it does not for kube-scheduler) must
//! equal `golden/extender-sequence.json`. That file was written by the extender before the
//! failed-nodes rework and re-recorded once since, when the Gantry policy gained model pressure
//! (six prioritize scores moved; no filter or bind reply did); set `GANTRY_UPDATE_GOLDEN=1` to rewrite it after a change that is meant to
//! change decisions, and say why in the commit.

use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::extender::Extender;
use gantry_scheduler::wire::{priorities_json, ExtenderArgs, ExtenderBindingArgs};
use serde_json::{json, Value};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/extender-sequence.json");

/// 16 nodes: A100 and V100M32 of 8 GPUs, a few A100 of 4, two without GPUs.
fn extender() -> (Extender, Vec<String>) {
    let mut models = ModelCatalog::default();
    let a = models.intern("A100").unwrap();
    let v = models.intern("V100M32").unwrap();
    let mut nodes = Vec::new();
    for i in 0..16 {
        let node = match i % 8 {
            0..=3 => Node::new(format!("a{i:02}"), 96000, 786432, 8, Some(a)),
            4 | 5 => Node::new(format!("v{i:02}"), 96000, 786432, 8, Some(v)),
            6 => Node::new(format!("s{i:02}"), 32000, 262144, 4, Some(a)),
            _ => Node::new(format!("c{i:02}"), 64000, 262144, 0, None),
        };
        nodes.push(node);
    }
    let names = nodes.iter().map(|n| n.name.clone()).collect();
    let cluster = Cluster::new(models, nodes);
    let expected = [
        PodRequest::whole_gpus(8000, 65536, 1),
        PodRequest::whole_gpus(64000, 524288, 8),
        PodRequest::shared_gpu(4000, 32768, 500),
    ];
    let scheduler = Scheduler::new(PolicyKind::Gantry.build(&cluster, &expected));
    (Extender::new(cluster, scheduler), names)
}

/// The `i`-th pod of the sequence: shapes in turn, sizes varying.
fn pod(i: usize) -> Value {
    let uid = format!("p{i:03}");
    let (gpus, cpu) = match i % 6 {
        0 => (1, "8"),
        1 => (8, "64"),
        2 => (1, "4"),
        3 => (1, "8"),
        4 => (2 + (i % 3) as u32, "16"),
        _ => (0, "2"),
    };
    let mut p = json!({"metadata": {"name": uid, "namespace": "team-a", "uid": uid},
        "spec": {"containers": [{"resources": {"requests": {"cpu": cpu, "memory": "16Gi"}, "limits": {"nvidia.com/gpu": gpus}}}]}});
    match i % 6 {
        2 => p["metadata"]["annotations"] = json!({"gantry.dev/gpu-milli": "500"}),
        3 => p["spec"]["nodeSelector"] = json!({"nvidia.com/gpu.product": "V100M32"}),
        _ => {}
    }
    p
}

/// Filter (every node and one the cache does not know), prioritize (the nodes that passed) and
/// bind (to the best score, first by name on ties) for each pod; the replies in order.
fn run() -> Vec<Value> {
    let (mut ext, mut names) = extender();
    names.push("ghost".into());
    let mut out = Vec::new();
    for i in 0..60 {
        let pod = pod(i);
        let body = serde_json::to_vec(&json!({"Pod": pod, "Nodes": null, "NodeNames": names})).unwrap();
        let args = ExtenderArgs::parse(&body).unwrap();
        let filtered: Value = serde_json::from_slice(&ext.filter(&args).to_json()).unwrap();
        let passing: Vec<String> = serde_json::from_value(filtered["NodeNames"].clone()).unwrap_or_default();
        let body = serde_json::to_vec(&json!({"Pod": pod, "Nodes": null, "NodeNames": passing})).unwrap();
        let args = ExtenderArgs::parse(&body).unwrap();
        let scores: Value =
            serde_json::from_slice(&priorities_json(&ext.prioritize(&args).unwrap())).unwrap();
        let best = scores
            .as_array()
            .unwrap()
            .iter()
            .max_by(|a, b| {
                a["Score"]
                    .as_i64()
                    .cmp(&b["Score"].as_i64())
                    .then(b["Host"].as_str().cmp(&a["Host"].as_str()))
            })
            .map(|s| s["Host"].as_str().unwrap().to_string());
        let bound = best.map(|node| {
            let r = ext.bind(&ExtenderBindingArgs {
                pod_name: format!("p{i:03}"),
                pod_namespace: "team-a".into(),
                pod_uid: format!("p{i:03}"),
                node,
            });
            serde_json::to_value(&r).unwrap()
        });
        out.push(json!({"pod": i, "filter": filtered, "prioritize": scores, "bind": bound}));
    }
    out
}

#[test]
fn the_extenders_replies_for_a_recorded_sequence_of_pods_do_not_change() {
    let replies = Value::Array(run());
    if std::env::var_os("GANTRY_UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, serde_json::to_string_pretty(&replies).unwrap() + "\n").unwrap();
    }
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(GOLDEN).unwrap()).unwrap();
    let (got, want) = (replies.as_array().unwrap(), golden.as_array().unwrap());
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "pod {} replied differently", w["pod"]);
    }
    // The sequence exercises what it is meant to: failed, unresolvable and bound pods.
    let count = |f: &dyn Fn(&Value) -> bool| want.iter().filter(|r| f(r)).count();
    assert!(count(&|r| r["filter"]["FailedNodes"].as_object().is_some_and(|m| !m.is_empty())) > 5);
    assert!(
        count(&|r| r["filter"]["FailedAndUnresolvableNodes"].as_object().is_some_and(|m| m.len() > 1)) > 5
    );
    assert!(count(&|r| r["bind"]["Error"] == "") > 20);
}
