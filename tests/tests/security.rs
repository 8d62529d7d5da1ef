//! The security review's findings on what is counted (issue "No way around quota or cost"),
//! one test per finding, each through the parts a pod really passes: the admission webhook and
//! the queue controller. (The quota API's findings are in `quota-api/tests/security.rs`.)

use gantry_admission_webhook::{AdmissionPolicy, Path, Webhook};
use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::queue::{Mode, Queue};
use gantry_core::tenancy::file;
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::controller::{Action, Controller};
use serde_json::{json, Value};

const T0: i64 = 1_793_491_200;
/// team-a may hold 8 A100 (no sharing); V100-SHARED is time-sliced.
const TENANTS: &str = "flavors:\n  - name: A100\n  - {name: V100-SHARED, sharing: true}\ntenants:\n  - name: team-a\n    namespaces: [team-a]\n    quotas: {A100: {nominal: 8}, V100-SHARED: {nominal: 1}}\n";

fn webhook() -> Webhook {
    Webhook::new(AdmissionPolicy::new(file::parse("t.yaml", TENANTS).unwrap(), None).unwrap()).unwrap()
}

fn controller() -> Controller {
    let mut models = ModelCatalog::default();
    let (a100, v100) = (models.intern("A100").unwrap(), models.intern("V100-SHARED").unwrap());
    let nodes =
        vec![Node::new("a", 64_000, 1 << 20, 8, Some(a100)), Node::new("v", 64_000, 1 << 20, 1, Some(v100))];
    let cluster = Cluster::new(models, nodes);
    let s = Scheduler::new(PolicyKind::Gantry.build(&cluster, &[PodRequest::whole_gpus(1000, 1024, 1)]));
    Controller::new(Queue::new(file::parse("t.yaml", TENANTS).unwrap(), cluster, s, Mode::Quota, T0).unwrap())
}

/// A GPU pod of team-a as the mutating webhook leaves it (gated), with `spec` merged in.
fn pod(name: &str, annotations: Value, spec: Value) -> Value {
    let mut p = json!({"metadata": {"name": name, "namespace": "team-a", "uid": name, "annotations": annotations},
        "spec": {"schedulingGates": [{"name": "gantry.dev/admission"}], "containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}});
    for (k, v) in spec.as_object().unwrap() {
        p["spec"][k] = v.clone();
    }
    p
}

/// The validating webhook's answer: the denial message, "" when allowed.
fn validate(w: &Webhook, pod: &Value) -> String {
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "r",
        "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "team-a", "operation": "CREATE", "object": pod}});
    let (_, text, _) = w.review(Path::Validate, body.to_string().as_bytes());
    let reply: Value = serde_json::from_str(&text).unwrap();
    reply["response"]["status"]["message"].as_str().unwrap_or_default().to_string()
}

fn started(actions: &[Action]) -> usize {
    actions.iter().filter(|a| matches!(a, Action::Ungate { .. } | Action::Release { .. })).count()
}

#[test]
fn finding_1_a_gpu_pod_created_bound_to_a_node_is_refused() {
    let mut p = pod("bound", json!({}), json!({"nodeName": "a"}));
    p["spec"].as_object_mut().unwrap().remove("schedulingGates");
    assert!(validate(&webhook(), &p).contains("spec.nodeName is \"a\""), "{}", validate(&webhook(), &p));
}

#[test]
fn finding_2_gpus_of_init_containers_and_sidecars_are_counted() {
    let sidecar = pod(
        "side",
        json!({}),
        json!({"initContainers": [{"name": "s", "restartPolicy": "Always", "resources": {"limits": {"nvidia.com/gpu": "64"}}}]}),
    );
    assert!(
        validate(&webhook(), &sidecar).contains("asks for 65 nvidia.com/gpu"),
        "{}",
        validate(&webhook(), &sidecar)
    );
    // The controller counts it too (the webhook may not have run): never started.
    let mut c = controller();
    let mut actions = c.pod_gated(&sidecar, T0);
    actions.extend(c.reconcile(T0));
    assert_eq!(started(&actions), 0, "{actions:?}");
    assert!(actions.iter().any(|a| matches!(a, Action::Refused { .. })), "{actions:?}");
}

#[test]
fn finding_3_a_gpu_pod_the_mutating_webhook_never_saw_is_refused() {
    let mut p = pod("ungated", json!({}), json!({}));
    p["spec"].as_object_mut().unwrap().remove("schedulingGates");
    assert!(validate(&webhook(), &p).contains("lacks Gantry's gate"), "{}", validate(&webhook(), &p));
}

#[test]
fn finding_4_a_share_of_a_gpu_is_granted_by_the_platform_not_by_the_pod() {
    let w = webhook();
    let on_a100 =
        pod("share", json!({"gantry.dev/gpu-milli": "1", "gantry.dev/gpu-models": "A100"}), json!({}));
    assert!(validate(&w, &on_a100).contains("GPUs of A100 are not shared"), "{}", validate(&w, &on_a100));
    assert_eq!(
        validate(
            &w,
            &pod(
                "ok",
                json!({"gantry.dev/gpu-milli": "250", "gantry.dev/gpu-models": "V100-SHARED"}),
                json!({})
            )
        ),
        ""
    );
    // In the controller: twenty 1-milli pods asking for A100 are refused, none placed.
    let mut c = controller();
    let mut actions = Vec::new();
    for i in 0..20 {
        actions.extend(c.pod_gated(
            &pod(
                &format!("p{i}"),
                json!({"gantry.dev/gpu-milli": "1", "gantry.dev/gpu-models": "A100"}),
                json!({}),
            ),
            T0,
        ));
    }
    actions.extend(c.reconcile(T0));
    assert_eq!(started(&actions), 0, "{actions:?}");
    // Without naming a model, a share goes only to a flavor with sharing: 4 quarter-GPU pods fit
    // the one shared V100 and team-a's nominal 1 there; a fifth waits.
    let mut c = controller();
    let mut actions = Vec::new();
    for i in 0..5 {
        actions.extend(
            c.pod_gated(&pod(&format!("q{i}"), json!({"gantry.dev/gpu-milli": "250"}), json!({})), T0),
        );
    }
    actions.extend(c.reconcile(T0));
    let nodes: Vec<&str> = actions
        .iter()
        .filter_map(|a| if let Action::Ungate { node, .. } = a { Some(node.as_str()) } else { None })
        .collect();
    assert_eq!(nodes, ["v"; 4], "{actions:?}");
}

#[test]
fn finding_5_a_review_of_millions_of_tiny_values_is_refused_unparsed() {
    let mut body = String::from("[");
    body.push_str(&"[],".repeat(2_000_000));
    body.push_str("[]]");
    let (status, text, _) = webhook().review(Path::Validate, body.as_bytes());
    assert_eq!(status.as_u16(), 413, "{text}");
}

#[test]
fn gpu_resources_gantry_does_not_count_are_refused_in_tenant_namespaces() {
    let mig = pod(
        "mig",
        json!({}),
        json!({"containers": [{"name": "m", "resources": {"limits": {"nvidia.com/mig-3g.40gb": "1"}}}]}),
    );
    assert!(
        validate(&webhook(), &mig).contains("MIG slices are not counted"),
        "{}",
        validate(&webhook(), &mig)
    );
}
