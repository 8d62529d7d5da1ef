//! A Kubeflow notebook end to end: its pod as the notebook controller's StatefulSet creates it
//! (`scheduler/tests/fixtures/kubeflow/`) passes the admission webhook (gated, kind notebook,
//! keyed by its Notebook), is admitted by the queue controller, and once the node agent's
//! evidence on its node says its GPU sat idle past its tenant's `idleNotebooks` limit while other
//! work waits, the controller asks to stop that Notebook, once.

use gantry_admission_webhook::{AdmissionPolicy, Path, Webhook};
use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::queue::{Mode, Queue};
use gantry_core::tenancy::{file, Tenancy};
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::controller::{Action, Controller};
use serde_json::{json, Value};

const T0: i64 = 1_793_491_200;
const HOUR: i64 = 3600;

const TENANTS: &str = "
timing: {reclaimWindow: 5m, minRuntime: 10m}
flavors: [{name: A100}]
tenants:
  - name: team-a
    namespaces: [team-a]
    quotas: {A100: {nominal: 8}}
    idleNotebooks: {stopAfter: 2h}
  - name: team-b
    namespaces: [team-b]
    quotas: {A100: {nominal: 8}}
";

/// The notebook pod as the StatefulSet controller sends it to admission: no gate, no name or UID
/// of Gantry's making yet (the fixture is the pod after admission).
fn created_by_the_statefulset() -> Value {
    let text = include_str!("../../scheduler/tests/fixtures/kubeflow/notebook-pod.json");
    let mut pod: Value = serde_json::from_str(text).expect("the fixture is JSON");
    pod["spec"].as_object_mut().expect("spec").remove("schedulingGates");
    pod["metadata"].as_object_mut().expect("metadata").remove("uid");
    pod
}

fn review(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "r-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "team-a", "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:statefulset-controller"}, "object": pod}}))
    .expect("a review")
}

fn tenancy() -> Tenancy {
    file::parse("tenants.yaml", TENANTS).expect("the tenants parse")
}

fn controller(t: Tenancy) -> Controller {
    let mut models = ModelCatalog::default();
    let a100 = models.intern("A100").expect("a model");
    let nodes = vec![Node::new("gpu-0", 128_000, 1 << 20, 8, Some(a100))];
    let cluster = Cluster::new(models, nodes);
    let scheduler =
        Scheduler::new(PolicyKind::Gantry.build(&cluster, &[PodRequest::whole_gpus(8000, 65536, 1)]));
    Controller::new(Queue::new(t, cluster, scheduler, Mode::Quota, T0).expect("a queue"))
}

#[test]
fn a_notebook_pod_is_gated_as_a_notebook_and_stopped_the_kubeflow_way_when_idle_while_work_waits() {
    use base64::Engine;
    let t = tenancy();
    let w = Webhook::new(AdmissionPolicy::new(t.clone(), None).expect("a policy")).expect("a webhook");
    let pod = created_by_the_statefulset();
    let (status, text, _) = w.review(Path::Mutate, &review(&pod));
    assert_eq!(status.as_u16(), 200, "{text}");
    let reply: Value = serde_json::from_str(&text).expect("JSON");
    let b64 = reply["response"]["patch"].as_str().expect("a patch");
    let ops: Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64).expect("b64"))
            .expect("JSON patch");
    let mut admitted = pod.clone();
    let patch: json_patch::Patch = serde_json::from_value(ops.clone()).expect("RFC 6902");
    json_patch::patch(&mut admitted, &patch).expect("the webhook's patch applies");
    assert_eq!(admitted["metadata"]["labels"]["gantry.dev/kind"], "notebook", "{ops}");
    assert_eq!(admitted["metadata"]["labels"]["gantry.dev/tenant"], "team-a");
    assert_eq!(admitted["metadata"]["annotations"]["gantry.dev/workload"], "team-a/notebook/nb");
    assert_eq!(admitted["spec"]["schedulingGates"], json!([{"name": "gantry.dev/admission"}]));
    admitted["metadata"]["uid"] = json!("uid-nb-0");

    let mut c = controller(t);
    c.pod_gated(&admitted, T0);
    let started = c.reconcile(T0);
    assert!(started
        .iter()
        .any(|a| matches!(a, Action::Ungate { pod, node, .. } if pod.name == "nb-0" && node == "gpu-0")));
    // team-b wants the whole node: it waits behind the notebook's GPU.
    let train = json!({"metadata": {"name": "train-0", "namespace": "team-b", "uid": "uid-train-0"},
        "spec": {"schedulingGates": [{"name": "gantry.dev/admission"}],
                 "containers": [{"resources": {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"nvidia.com/gpu": 8}}}]}});
    c.pod_gated(&train, T0 + 60);
    c.reconcile(T0 + 60);
    assert_eq!(c.queue().pending_count(), 1);
    // The node agent on gpu-0: the notebook's GPU idle since T0 + 10 min, as it last confirmed
    // it a minute ago.
    let now = T0 + 600 + 2 * HOUR;
    let node = json!({"metadata": {"name": "gpu-0", "labels": {"nvidia.com/gpu.product": "A100"},
                                   "annotations": {"gantry.dev/gpu-idle-pods": format!("{{\"team-a/nb-0\": {}}}", T0 + 600),
                                                   "gantry.dev/gpu-idle-checked-at": (now - 60).to_string()}},
                      "status": {"allocatable": {"cpu": "128", "memory": "1Ti", "nvidia.com/gpu": "8"}}});
    c.node_applied(&node, now - 60).expect("the node reads");
    let actions = c.reconcile(now);
    let stopped: Vec<&String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::StopNotebook { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(stopped, vec!["nb"], "{actions:?}");
    // Its pod leaves when the notebook controller scales the Notebook to zero; team-b starts.
    c.pod_deleted("uid-nb-0", T0 + 600 + 2 * HOUR + 5);
    let next = c.reconcile(T0 + 600 + 2 * HOUR + 5);
    assert!(
        next.iter().any(|a| matches!(a, Action::Ungate { pod, .. } if pod.name == "train-0")),
        "{next:?}"
    );
}
