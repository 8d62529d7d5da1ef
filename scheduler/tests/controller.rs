//! The queue controller's actions for gated pods: whole gangs are ungated with their planned
//! nodes, waiting pods are told why, reclaiming evicts whole gangs, and quota comes back when a
//! workload's pods are gone.

use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::queue::{Mode, Queue};
use gantry_core::tenancy::file;
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::controller::{Action, Controller, PodRef};
use serde_json::{json, Value};

const T0: i64 = 1_793_491_200;

/// Two teams of 8 A100 each in one cohort.
const TENANTS: &str = include_str!("fixtures/two-teams.yaml");

/// Two nodes of 8 A100.
fn controller() -> Controller {
    let tenancy = file::parse("tenants.yaml", TENANTS).unwrap();
    let mut models = ModelCatalog::default();
    let a100 = models.intern("A100").unwrap();
    let nodes = (0..2).map(|i| Node::new(format!("gpu-{i}"), 128000, 1 << 20, 8, Some(a100))).collect();
    let cluster = Cluster::new(models, nodes);
    let expected = [PodRequest::whole_gpus(8000, 65536, 1)];
    let scheduler = Scheduler::new(PolicyKind::Gantry.build(&cluster, &expected));
    Controller::new(Queue::new(tenancy, cluster, scheduler, Mode::Quota, T0).unwrap())
}

fn pod(ns: &str, name: &str, gpus: u32, gang: Option<(&str, u32)>) -> Value {
    let mut labels = json!({});
    let mut annotations = json!({});
    if let Some((group, size)) = gang {
        labels = json!({"scheduling.x-k8s.io/pod-group": group});
        annotations = json!({"gantry.dev/gang-size": size.to_string()});
    }
    json!({"metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"), "labels": labels, "annotations": annotations},
           "spec": {"schedulingGates": [{"name": "gantry.dev/admission"}],
                    "containers": [{"resources": {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"nvidia.com/gpu": gpus}}}]}})
}

fn ungated(actions: &[Action]) -> Vec<(String, String)> {
    let mut v: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Ungate { pod, node, .. } => Some((pod.name.clone(), node.clone())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_gang_is_ungated_only_when_whole() {
    let mut c = controller();
    // Two of a three-pod gang: nothing is queued yet.
    assert!(c.pod_gated(&pod("team-a", "w-0", 4, Some(("bert", 3))), T0).is_empty());
    assert!(c.pod_gated(&pod("team-a", "w-1", 4, Some(("bert", 3))), T0).is_empty());
    assert!(ungated(&c.reconcile(T0)).is_empty(), "nothing holds a partial gang");
    c.pod_gated(&pod("team-a", "w-2", 4, Some(("bert", 3))), T0);
    let actions = c.reconcile(T0);
    let placed = ungated(&actions);
    assert_eq!(placed.len(), 3, "{actions:?}");
    let nodes: std::collections::BTreeSet<_> = placed.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(nodes.len(), 2, "12 GPUs need both nodes: {placed:?}");
    // Ungating names distinct GPUs on each node.
    let mut used: Vec<(String, u32)> = actions
        .iter()
        .flat_map(|a| match a {
            Action::Ungate { node, gpus, .. } => gpus.iter().map(|&g| (node.clone(), g)).collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    let n = used.len();
    used.sort();
    used.dedup();
    assert_eq!((n, used.len()), (12, 12));
}

#[test]
fn waiting_pods_are_told_why_and_reclaim_evicts_whole_gangs() {
    let mut c = controller();
    // team-b borrows the whole cluster with two 8-GPU pods.
    c.pod_gated(&pod("team-b", "b-0", 8, None), T0);
    c.pod_gated(&pod("team-b", "b-1", 8, None), T0);
    assert_eq!(ungated(&c.reconcile(T0)).len(), 2);
    // team-a asks for its nominal 8: it waits, and is told so.
    c.pod_gated(&pod("team-a", "a-0", 8, None), T0 + 60);
    let actions = c.reconcile(T0 + 60);
    let pending: Vec<&String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Pending { pod, message } if pod.name == "a-0" => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(pending.len(), 1, "{actions:?}");
    assert!(pending[0].contains("team-a") && pending[0].contains("A100"), "{}", pending[0]);
    // After the reclaim window and team-b's minimum runtime, one of team-b's pods is evicted
    // and a-0 gets its node.
    let actions = c.reconcile(T0 + 600);
    let evicted: Vec<&PodRef> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Evict { pod, message } => {
                assert!(message.contains("reclaim"), "{message}");
                Some(pod)
            }
            _ => None,
        })
        .collect();
    assert_eq!(evicted.len(), 1, "{actions:?}");
    assert_eq!(evicted[0].namespace, "team-b");
    assert_eq!(ungated(&actions).len(), 1);
    assert_eq!(ungated(&actions)[0].0, "a-0");
    // The victim is withdrawn: only the other team-b pod and a-0 hold quota.
    assert_eq!((c.queue().quota().usage(0, 0), c.queue().quota().usage(1, 0)), (8000, 8000));
    assert_eq!(c.queue().pending_count(), 0);
}

#[test]
fn quota_returns_when_the_last_pod_of_a_workload_is_gone() {
    let mut c = controller();
    c.pod_gated(&pod("team-a", "g-0", 8, Some(("pg", 2))), T0);
    c.pod_gated(&pod("team-a", "g-1", 8, Some(("pg", 2))), T0);
    assert_eq!(ungated(&c.reconcile(T0)).len(), 2);
    assert_eq!(c.queue().quota().usage(0, 0), 16000);
    c.pod_gone("team-a-g-0", T0 + 100);
    assert_eq!(c.queue().quota().usage(0, 0), 16000, "the gang still runs");
    c.pod_gone("team-a-g-1", T0 + 200);
    assert_eq!(c.queue().quota().usage(0, 0), 0);
}

#[test]
fn pods_that_can_never_run_are_refused_with_the_reason() {
    let mut c = controller();
    let actions = c.pod_gated(&pod("nobody", "x", 1, None), T0);
    assert!(
        matches!(&actions[..], [Action::Refused { message, .. }] if message.contains("belongs to no tenant")),
        "{actions:?}"
    );
    let actions = c.pod_gated(&pod("team-a", "huge", 16, None), T0);
    assert!(matches!(&actions[..], [Action::Refused { .. }]), "{actions:?}");
}

/// The pod as the API server shows it after the adapter carried out `Ungate`.
fn after_ungate(pod: &Value, actions: &[Action]) -> Value {
    let name = pod["metadata"]["name"].as_str().unwrap();
    let Some((node, gpus)) = actions.iter().find_map(|a| match a {
        Action::Ungate { pod, node, gpus, .. } if pod.name == name => Some((node.clone(), gpus.clone())),
        _ => None,
    }) else {
        return pod.clone();
    };
    let mut p = pod.clone();
    p["spec"]["schedulingGates"] = json!([]);
    p["metadata"]["annotations"]["gantry.dev/placement"] =
        json!(gantry_api::placement::Planned::value(&node, &gpus, T0));
    p
}

#[test]
fn a_restart_rebuilds_usage_from_the_pods_and_admits_nothing_twice() {
    let mut before = controller();
    let pods = [
        pod("team-a", "g-0", 4, Some(("pg", 2))),
        pod("team-a", "g-1", 4, Some(("pg", 2))),
        pod("team-b", "b-0", 8, None),
        pod("team-b", "b-1", 8, None),
    ];
    for p in &pods {
        before.pod_gated(p, T0);
    }
    let actions = before.reconcile(T0);
    assert_eq!(ungated(&actions).len(), 3, "b-1 waits: only 16 GPUs");
    let visible: Vec<Value> = pods.iter().map(|p| after_ungate(p, &actions)).collect();

    let mut after = controller();
    let refused: Vec<_> = after
        .rebuild(&visible, T0 + 3600)
        .into_iter()
        .filter(|a| matches!(a, Action::Refused { .. }))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    for (t, f) in [(0, 0), (1, 0)] {
        assert_eq!(
            after.queue().quota().usage(t, f),
            before.queue().quota().usage(t, f),
            "tenant {t}: no quota leaks"
        );
    }
    assert_eq!(after.queue().cluster().gpu_allocated(), before.queue().cluster().gpu_allocated());
    let again = after.reconcile(T0 + 3600);
    assert!(ungated(&again).is_empty(), "nothing is admitted twice: {again:?}");
    assert!(again.iter().any(|a| matches!(a, Action::Pending { pod, .. } if pod.name == "b-1")), "{again:?}");
    // When the gang's pods end, its GPUs come back and b-1 starts.
    after.pod_gone("team-a-g-0", T0 + 3700);
    after.pod_gone("team-a-g-1", T0 + 3700);
    assert_eq!(
        ungated(&after.reconcile(T0 + 3700)),
        [("b-1".to_string(), ungated(&actions).iter().find(|(n, _)| n == "g-0").unwrap().1.clone())]
    );
}

#[test]
fn two_gangs_competing_for_the_same_nodes_never_both_start_partially() {
    let mut c = controller();
    // Each gang needs 12 of the 16 GPUs; their pods arrive interleaved.
    for i in 0..3 {
        c.pod_gated(&pod("team-a", &format!("a-{i}"), 4, Some(("ga", 3))), T0);
        c.pod_gated(&pod("team-b", &format!("b-{i}"), 4, Some(("gb", 3))), T0);
    }
    let actions = c.reconcile(T0);
    let started = ungated(&actions);
    let of = |prefix: &str| started.iter().filter(|(n, _)| n.starts_with(prefix)).count();
    assert!(
        matches!((of("a-"), of("b-")), (3, 0) | (0, 3)),
        "one gang whole, the other not at all: {started:?}"
    );
    let waiting = actions.iter().filter(|a| matches!(a, Action::Pending { .. })).count();
    assert_eq!(waiting, 3, "the other gang's three pods are told why they wait");
}

/// `pod` created at `minute` past T0, held with `hold` when given.
fn dated(ns: &str, name: &str, minute: i64, hold: Option<&str>) -> Value {
    let mut p = pod(ns, name, 8, None);
    let at = jiff::Timestamp::from_second(T0 + minute * 60).unwrap().to_string();
    p["metadata"]["creationTimestamp"] = json!(at);
    if let Some(why) = hold {
        p["metadata"]["annotations"]["gantry.dev/hold"] = json!(why);
    }
    p
}

/// The message each waiting pod is given, by pod name.
fn pending(actions: &[Action]) -> std::collections::BTreeMap<String, String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Pending { pod, message } => Some((pod.name.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_held_workload_waits_out_of_the_queue_and_keeps_its_place_when_released() {
    let mut c = controller();
    // team-b runs 8 GPUs; team-a's first workload is held, its second runs in team-a's quota.
    c.pod_gated(&dated("team-b", "b-run", 0, None), T0);
    c.pod_gated(&dated("team-a", "first", 1, Some("alice: checking the data first")), T0);
    c.pod_gated(&dated("team-a", "second", 2, None), T0);
    let actions = c.reconcile(T0);
    assert_eq!(ungated(&actions).iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["b-run", "second"]);
    let why = &pending(&actions)["first"];
    assert!(why.starts_with("held (gantry.dev/hold: alice: checking the data first)"), "{why}");
    assert!(why.contains("kubectl gantry release"), "{why}");

    // A third workload queues behind nothing: the held one is not in the queue.
    c.pod_gated(&dated("team-a", "third", 3, None), T0 + 60);
    let why = &pending(&c.reconcile(T0 + 60))["third"];
    assert!(why.contains("position 1 of 1 in team-a's queue"), "{why}");

    // Released: it queues again at its old place, ahead of the third (created earlier).
    c.pod_gated(&dated("team-a", "first", 1, None), T0 + 120);
    let waiting = pending(&c.reconcile(T0 + 120));
    assert!(waiting["first"].contains("position 1 of 2 in team-a's queue"), "{waiting:?}");
    assert!(waiting["third"].contains("position 2 of 2 in team-a's queue"), "{waiting:?}");

    // Held while waiting in the queue: it leaves it, and the third moves up.
    c.pod_gated(&dated("team-a", "first", 1, Some("bob")), T0 + 180);
    let waiting = pending(&c.reconcile(T0 + 180));
    assert!(waiting["first"].starts_with("held (gantry.dev/hold: bob)"), "{waiting:?}");
    assert!(waiting["third"].contains("position 1 of 1 in team-a's queue"), "{waiting:?}");
    assert_eq!(c.queue().pending_ids().count(), 1);
}
