//! Idle GPU notebooks give way, live: the controller reads the node agents' idle evidence from
//! the Node objects and asks to stop a Kubeflow notebook pod (shaped as the notebook controller
//! makes it, `fixtures/kubeflow/`) whose GPUs sat idle past its tenant's limit while work
//! waits; the adapter stops the Notebook the Kubeflow way (exact calls against a mocked API
//! server).

use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::queue::{Mode, Queue};
use gantry_core::tenancy::{file, IdleNotebooks};
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::adapter::Adapter;
use gantry_scheduler::controller::{Action, Controller, NotebookStop, PodRef};
use http::{Method, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

const T0: i64 = 1_793_491_200;
const HOUR: i64 = 3600;
const NOTEBOOK_POD: &str = include_str!("fixtures/kubeflow/notebook-pod.json");

/// Two teams of 8 A100 on two 8-GPU nodes; team-a stops notebooks idle for 2 h when work waits.
fn controller() -> Controller {
    let mut tenancy = file::parse("tenants.yaml", include_str!("fixtures/two-teams.yaml")).unwrap();
    tenancy.tenants[0].idle_notebooks = Some(IdleNotebooks { stop_after: 2 * HOUR, always: false });
    let mut models = ModelCatalog::default();
    let a100 = models.intern("A100").unwrap();
    let nodes = (0..2).map(|i| Node::new(format!("gpu-{i}"), 128000, 1 << 20, 8, Some(a100))).collect();
    let cluster = Cluster::new(models, nodes);
    let scheduler =
        Scheduler::new(PolicyKind::Gantry.build(&cluster, &[PodRequest::whole_gpus(8000, 65536, 1)]));
    Controller::new(Queue::new(tenancy, cluster, scheduler, Mode::Quota, T0).unwrap())
}

fn gpu_pod(ns: &str, name: &str, gpus: u32, labels: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"), "labels": labels},
           "spec": {"schedulingGates": [{"name": "gantry.dev/admission"}],
                    "containers": [{"resources": {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"nvidia.com/gpu": gpus}}}]}})
}

/// The Node `name` as the node agent leaves it at `checked_at`, naming `idle` pods
/// (namespace/pod, since).
fn node(name: &str, idle: &[(&str, i64)], checked_at: i64) -> Value {
    let idle: serde_json::Map<String, Value> = idle.iter().map(|(k, t)| (k.to_string(), json!(t))).collect();
    json!({"metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "A100"},
                        "annotations": {"gantry.dev/gpu-idle-pods": Value::Object(idle).to_string(),
                                        "gantry.dev/gpu-idle-checked-at": checked_at.to_string()}},
           "status": {"allocatable": {"cpu": "128", "memory": "1Ti", "nvidia.com/gpu": "8"}}})
}

/// The node agent on `at` confirms its idle pods at `now` (as it does every minute while any
/// pod is idle), and the controller reconciles at `now`.
fn confirmed(c: &mut Controller, at: &str, idle: &[(&str, i64)], now: i64) -> Vec<Action> {
    c.node_applied(&node(at, idle, now), now).unwrap();
    c.reconcile(now)
}

fn stops(actions: &[Action]) -> Vec<(&PodRef, &String, &NotebookStop)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StopNotebook { pod, name, stop } => Some((pod, name, stop)),
            _ => None,
        })
        .collect()
}

/// The notebook pod runs (with a 1-GPU serving pod of team-a); returns the notebook's node.
fn notebook_running(c: &mut Controller) -> String {
    let nb: Value = serde_json::from_str(NOTEBOOK_POD).unwrap();
    c.pod_gated(&nb, T0);
    let serving = json!({"app": "web"});
    let mut web = gpu_pod("team-a", "web-0", 1, serving);
    web["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8", "uid": "rs", "controller": true}]);
    c.pod_gated(&web, T0);
    let actions = c.reconcile(T0);
    let node = actions.iter().find_map(|a| match a {
        Action::Ungate { pod, node, .. } if pod.name == "nb-0" => Some(node.clone()),
        _ => None,
    });
    node.expect("the notebook starts")
}

/// team-b asks for 16 A100: it waits, since team-a holds 2.
fn team_b_waits(c: &mut Controller, at: i64) {
    for i in 0..2 {
        c.pod_gated(&gpu_pod("team-b", &format!("train-{i}"), 8, json!({})), at);
    }
    let actions = c.reconcile(at);
    assert!(actions.iter().any(|a| matches!(a, Action::Ungate { pod, .. } if pod.name == "train-0")));
    assert_eq!(c.queue().pending_count(), 1, "one 8-GPU pod of team-b waits");
}

#[test]
fn an_idle_notebook_is_stopped_once_when_work_waits_and_its_nodes_agent_says_so() {
    let mut c = controller();
    let at = notebook_running(&mut c);
    team_b_waits(&mut c, T0 + 60);
    let idle_since = T0 + 600;
    let idle = [("team-a/nb-0", idle_since), ("team-a/web-0", idle_since)];
    c.node_applied(&node(&at, &idle, T0 + 700), T0 + 700).unwrap();
    // The evidence the dashboard and the view show: the notebook's, not the serving pod's.
    let ids: Vec<(u64, gantry_core::tenancy::Kind)> =
        c.queue().running_workloads().map(|(w, _)| (w.id, w.kind)).collect();
    for (id, kind) in ids {
        let expected = (kind == gantry_core::tenancy::Kind::Notebook).then_some(idle_since);
        assert_eq!(c.notebook_idle_since(id, T0 + 700), expected, "{kind:?}");
    }
    assert!(stops(&confirmed(&mut c, &at, &idle, idle_since + 2 * HOUR - 1)).is_empty(), "not yet 2 h");
    let actions = confirmed(&mut c, &at, &idle, idle_since + 2 * HOUR);
    let s = stops(&actions);
    assert_eq!(s.len(), 1, "the notebook only, never the serving pod: {actions:?}");
    let (pod, name, stop) = s[0];
    assert_eq!((pod.namespace.as_str(), pod.name.as_str(), name.as_str()), ("team-a", "nb-0", "nb"));
    assert_eq!((stop.tenant.as_str(), stop.flavor.as_str()), ("team-a", "A100"));
    assert_eq!((stop.idle_since, stop.at), (idle_since, idle_since + 2 * HOUR));
    assert_eq!(stop.idle_milli_gpu_seconds, 1000 * 2 * HOUR as u64);
    assert!(
        stop.message.contains("idle for 2h 0m") && stop.message.contains("waits for A100"),
        "{}",
        stop.message
    );
    // The ledger's line: who, since when, the idle GPU-time and its price, why.
    let lines = c.drain_notebook_stops();
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!((l.tenant.as_str(), l.namespace.as_str(), l.notebook.as_str()), ("team-a", "team-a", "nb"));
    assert_eq!((l.idle_since, l.at, l.idle), (idle_since, idle_since + 2 * HOUR, 7_200_000));
    assert_eq!(l.message, stop.message);
    assert!(c.drain_notebook_stops().is_empty(), "taken once");
    assert!(stops(&confirmed(&mut c, &at, &idle, idle_since + 3 * HOUR)).is_empty(), "asked once");
    // The notebook controller scales the Notebook to zero: its pod goes, its GPU is free.
    c.pod_deleted("3c5f7e2a-9d41-4b8e-a0f1-6e2d9c4b7a10", idle_since + 3 * HOUR);
    assert_eq!(c.queue().quota().usage(0, 0), 1000, "team-a holds only its serving GPU");
}

#[test]
fn evidence_from_another_node_or_a_busy_notebook_stops_nothing() {
    let mut c = controller();
    let at = notebook_running(&mut c);
    team_b_waits(&mut c, T0 + 60);
    let other = if at == "gpu-0" { "gpu-1" } else { "gpu-0" };
    // Another node's agent cannot speak for the notebook's pod.
    assert!(stops(&confirmed(&mut c, other, &[("team-a/nb-0", T0)], T0 + 10 * HOUR)).is_empty());
    // Its own node's agent saw it busy again: no evidence, no stop.
    c.node_applied(&node(&at, &[("team-a/nb-0", T0)], T0), T0).unwrap();
    assert!(stops(&confirmed(&mut c, &at, &[], T0 + 10 * HOUR)).is_empty());
    // A broken annotation is no evidence either.
    let mut broken = node(&at, &[], T0 + 10 * HOUR);
    broken["metadata"]["annotations"]["gantry.dev/gpu-idle-pods"] = json!("all of them");
    c.node_applied(&broken, T0 + 10 * HOUR).unwrap();
    assert!(stops(&c.reconcile(T0 + 10 * HOUR)).is_empty());
}

#[test]
fn without_waiting_work_an_idle_notebook_keeps_running() {
    let mut c = controller();
    let at = notebook_running(&mut c);
    assert!(stops(&confirmed(&mut c, &at, &[("team-a/nb-0", T0)], T0 + 10 * HOUR)).is_empty());
}

/// The node agent writes its idle pods on transitions only; if it stops (crashed, evicted, its
/// DaemonSet removed), its last word stays on the Node while the notebook may have become busy.
/// Its evidence counts only while it keeps confirming it.
#[test]
fn a_node_agent_that_stops_confirming_no_longer_speaks_for_its_pods() {
    use gantry_api::node::IDLE_MAX_AGE_SECONDS;
    let mut c = controller();
    let at = notebook_running(&mut c);
    team_b_waits(&mut c, T0 + 60);
    let idle_since = T0 + 600;
    let idle = [("team-a/nb-0", idle_since)];
    // Last confirmed 10 minutes after the notebook went idle; then the agent goes silent.
    let last_word = idle_since + 600;
    c.node_applied(&node(&at, &idle, last_word), last_word).unwrap();
    let notebook =
        c.queue().running_workloads().find(|(w, _)| w.kind == gantry_core::tenancy::Kind::Notebook);
    let id = notebook.map(|(w, _)| w.id).unwrap();
    assert_eq!(c.notebook_idle_since(id, last_word + IDLE_MAX_AGE_SECONDS), Some(idle_since));
    assert_eq!(c.notebook_idle_since(id, last_word + IDLE_MAX_AGE_SECONDS + 1), None, "stale evidence");
    assert!(stops(&c.reconcile(idle_since + 2 * HOUR)).is_empty(), "silent for over 1 h: nothing stopped");
    assert!(stops(&c.reconcile(idle_since + 10 * HOUR)).is_empty());
    // The agent is back and still sees the notebook idle (a restarted agent starts its stretch
    // over, so since its first pass): it is stopped once that stretch is long enough.
    let back = idle_since + 10 * HOUR;
    assert!(stops(&confirmed(&mut c, &at, &[("team-a/nb-0", back)], back + HOUR)).is_empty());
    assert_eq!(stops(&confirmed(&mut c, &at, &[("team-a/nb-0", back)], back + 2 * HOUR)).len(), 1);
}

#[tokio::test]
async fn stopping_a_notebook_sets_kubeflows_annotation_and_records_an_event_on_it() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let adapter = Adapter::new(Client::new(service, "default"), Some("gantry-0".into()));
    let server = tokio::spawn(async move {
        let mut calls = Vec::new();
        for reply in [
            json!({"apiVersion": "kubeflow.org/v1", "kind": "Notebook", "metadata": {"name": "nb", "namespace": "team-a"}}),
            json!({}),
        ] {
            let (request, send) = handle.next_request().await.expect("a call");
            let content_type = request.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
            let (method, path) = (request.method().clone(), request.uri().path().to_string());
            let body: Value =
                serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
            calls.push((method, path, content_type, body));
            send.send_response(
                Response::builder().body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap(),
            );
        }
        calls
    });
    let stop = NotebookStop {
        tenant: "team-a".into(),
        flavor: "A100".into(),
        idle_since: T0,
        at: T0 + 2 * HOUR,
        idle_milli_gpu_seconds: 7_200_000,
        price_micros: 2_500_000,
        message: "stopped by Gantry: its 1 A100 GPU(s) were idle for 2h 0m".into(),
    };
    let pod = PodRef { namespace: "team-a".into(), name: "nb-0".into(), uid: "u".into() };
    adapter.apply(&Action::StopNotebook { pod, name: "nb".into(), stop }).await.unwrap();
    let calls = server.await.unwrap();
    let (method, path, content_type, body) = &calls[0];
    assert_eq!(
        (method, path.as_str()),
        (&Method::PATCH, "/apis/kubeflow.org/v1/namespaces/team-a/notebooks/nb")
    );
    assert_eq!(content_type.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(
        body,
        &json!({"metadata": {"annotations": {"kubeflow-resource-stopped": "2026-11-01T02:00:00Z"}}})
    );
    let (method, path, _, event) = &calls[1];
    assert_eq!((method, path.as_str()), (&Method::POST, "/apis/events.k8s.io/v1/namespaces/team-a/events"));
    assert_eq!(event["reason"], "GantryIdleStopped");
    assert_eq!(
        event["regarding"],
        json!({"apiVersion": "kubeflow.org/v1", "kind": "Notebook", "namespace": "team-a", "name": "nb"})
    );
    assert!(event["note"].as_str().unwrap().contains("idle for 2h 0m"));
}

/// The node agent's minute confirmations (and the kubelet's status reports) change nothing the
/// queue reads: only the idle evidence is taken. A change the queue reads is applied.
#[test]
fn a_node_event_that_changes_only_idle_evidence_plans_nothing_again() {
    let mut c = controller();
    let at = notebook_running(&mut c);
    let idle = [("team-a/nb-0", T0 + 600)];
    // A pod no node can hold is refused; a node that changes is a reason to try it again.
    let huge = c.pod_gated(&gpu_pod("team-b", "huge-0", 9, json!({})), T0);
    assert!(
        huge.iter().any(|a| matches!(a, Action::Refused { pod, .. } if pod.name == "huge-0")),
        "{huge:?}"
    );
    c.node_applied(&node(&at, &idle, T0 + 600), T0 + 600).unwrap();
    for minute in 1..=3 {
        let now = T0 + 600 + 60 * minute;
        assert_eq!(c.node_applied(&node(&at, &idle, now), now).unwrap(), vec![], "minute {minute}");
    }
    let notebook =
        c.queue().running_workloads().find(|(w, _)| w.kind == gantry_core::tenancy::Kind::Notebook);
    let id = notebook.map(|(w, _)| w.id).unwrap();
    let later = T0 + 600 + 180 + gantry_api::node::IDLE_MAX_AGE_SECONDS;
    assert_eq!(c.notebook_idle_since(id, later), Some(T0 + 600), "the last confirmation was taken");
    // GPU 7 fails: the queue no longer offers it.
    let mut failed = node(&at, &idle, later);
    failed["metadata"]["annotations"]["gantry.dev/gpu-unhealthy"] = json!("7");
    let tried = c.node_applied(&failed, later).unwrap();
    assert!(
        tried.iter().any(|a| matches!(a, Action::Refused { pod, .. } if pod.name == "huge-0")),
        "{tried:?}"
    );
    let n = c.queue().cluster().node_id(&at).unwrap();
    assert_eq!(c.queue().cluster().nodes[n].gpu_free[7], 0);
}
