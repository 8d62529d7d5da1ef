//! KServe in both modes and plain Knative Services under Gantry's admission: serving pods exactly
//! as the upstream controllers create them (`fixtures/kserve/`, see its SOURCE.md) pass through
//! the admission webhook's mutation and validation and the queue controller, and the adapter's
//! calls are asserted against a mocked API server. A multi-node predictor's head and workers are
//! one gang; each replica of a revision is admitted on its own, at once when its tenant's quota
//! holds it; a scale-up past the quota waits (or borrows what the cohort lends); a serving
//! replica goes ahead of a queue of training gangs of its own tenant; and the wait Knative's
//! progress deadline allows is measured against Gantry's timing.

use gantry_admission_webhook::{AdmissionPolicy, Path, Webhook};
use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::queue::{Mode, Queue};
use gantry_core::tenancy::{file, Tenancy};
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::adapter::Adapter;
use gantry_scheduler::controller::{Action, Controller};
use http::{Method, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const T0: i64 = 1_793_491_200;
const NS: &str = "team-b";
const L4: &str = "NVIDIA-L4";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/kserve/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `secs` since the epoch as the API server writes `creationTimestamp` (UTC, whole seconds);
/// the civil date from days as in Howard Hinnant's `civil_from_days`.
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[test]
fn creation_times_are_written_as_the_api_server_writes_them() {
    assert_eq!(rfc3339(T0), "2026-11-01T00:00:00Z");
    assert_eq!(rfc3339(T0 - 3600 + 59), "2026-10-31T23:00:59Z");
}

fn serverless() -> Value {
    fixture("serverless-predictor.pod.json")
}
fn raw() -> Value {
    fixture("raw-predictor.pod.json")
}
fn knative() -> Value {
    fixture("knative-revision.pod.json")
}
/// A multi-node predictor (`workerSpec`, tensor-parallel 4 x pipeline-parallel 3): the head and
/// one of its two workers, 4 L4 each.
fn multinode_head() -> Value {
    fixture("multinode-head.pod.json")
}
fn multinode_worker() -> Value {
    fixture("multinode-worker.pod.json")
}

/// team-b (the fixtures' namespace) with `nominal` L4 GPUs; team-a, in the same cohort, with
/// `lend` L4 GPUs it does not use. No priority classes are declared: the built-in ones by kind
/// apply (serving 1000, training 300). `timing` is the file's timing line, if any.
fn tenancy(nominal: u32, lend: u32, timing: &str) -> Tenancy {
    let text = format!(
        "{timing}\nflavors:\n  - name: {L4}\ncohorts:\n  - name: ml\ntenants:\n  - name: team-a\n    namespaces: [team-a]\n    cohort: ml\n    quotas: {{{L4}: {{nominal: {lend}}}}}\n  - name: team-b\n    namespaces: [{NS}]\n    cohort: ml\n    quotas: {{{L4}: {{nominal: {nominal}}}}}\n"
    );
    file::parse("tenants.yaml", &text).expect("the test tenancy")
}

/// `n` nodes of 4 L4 each.
fn controller(t: Tenancy, n: usize) -> Controller {
    let mut models = ModelCatalog::default();
    let l4 = models.intern(L4).expect("a model");
    let nodes = (0..n).map(|i| Node::new(format!("l4-{i}"), 64_000, 256 * 1024, 4, Some(l4))).collect();
    let cluster = Cluster::new(models, nodes);
    let scheduler =
        Scheduler::new(PolicyKind::Gantry.build(&cluster, &[PodRequest::whole_gpus(4000, 24 * 1024, 1)]));
    Controller::new(Queue::new(t, cluster, scheduler, Mode::Quota, T0).expect("a queue"))
}

fn webhook(t: &Tenancy) -> Webhook {
    Webhook::new(AdmissionPolicy::new(t.clone(), Some("gantry-scheduler".into())).expect("a policy"))
        .expect("a webhook")
}

/// The Pod CREATE review the ReplicaSet controller's request makes.
fn review(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "r-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": NS, "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"}, "object": pod}}))
    .expect("a review")
}

fn patch_of(reply: &Value) -> Vec<Value> {
    use base64::Engine;
    reply["response"]["patch"].as_str().map_or_else(Vec::new, |b64| {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
        serde_json::from_slice(&bytes).expect("a JSON patch")
    })
}

/// Creates replica `n` of `pod` as the API server would: the mutating webhook's patch applied,
/// the name generated from `generateName`, the UID given and `creationTimestamp` set to `at`,
/// then the validating webhook asked. The patch is returned too.
fn create(w: &Webhook, pod: &Value, n: usize, at: i64) -> (Value, Vec<Value>) {
    let (status, text, _) = w.review(Path::Mutate, &review(pod));
    assert_eq!(status.as_u16(), 200, "{text}");
    let reply: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(reply["response"]["allowed"], true, "{reply}");
    let ops = patch_of(&reply);
    let mut out = pod.clone();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.clone())).expect("RFC 6902");
    json_patch::patch(&mut out, &patch).expect("the webhook's patch applies");
    let prefix = out["metadata"]["generateName"].as_str().expect("generateName").to_string();
    out["metadata"]["name"] = json!(format!("{prefix}r{n:03}"));
    out["metadata"]["uid"] = json!(format!("uid-{prefix}r{n:03}"));
    out["metadata"]["creationTimestamp"] = json!(rfc3339(at));
    let (_, text, _) = w.review(Path::Validate, &review(&out));
    let reply: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(reply["response"]["allowed"], true, "validation refused {}: {reply}", out["metadata"]["name"]);
    (out, ops)
}

fn ungated(actions: &[Action]) -> Vec<String> {
    let mut v: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Ungate { pod, .. } => Some(pod.name.clone()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn evicted(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Evict { pod, .. } => Some(pod.name.clone()),
            _ => None,
        })
        .collect()
}

/// Each pod's Pending or Refused message.
fn told(actions: &[Action]) -> BTreeMap<String, String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Pending { pod, message } | Action::Refused { pod, message } => {
                Some((pod.name.clone(), message.clone()))
            }
            _ => None,
        })
        .collect()
}

fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().expect("a name").to_string()
}

/// Carries `actions` out against a mocked API server that answers every call; the calls made,
/// as (method, path, body).
async fn carry_out(actions: &[Action]) -> Vec<(Method, String, Value)> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls: Arc<Mutex<Vec<(Method, String, Value)>>> = Arc::default();
    let recorded = calls.clone();
    let server = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (method, path) = (request.method().clone(), request.uri().path().to_string());
            let bytes = request.into_body().collect_bytes().await.expect("a body");
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            recorded.lock().expect("the lock").push((method, path, body.clone()));
            // Kube's client reads back an object of the kind it wrote: echo it.
            let reply = if body.is_null() {
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})
            } else {
                body
            };
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&reply).expect("JSON")))
                    .expect("a reply"),
            );
        }
    });
    let adapter = Adapter::new(Client::new(service, "default"), Some("gantry-0".into()));
    for a in actions {
        adapter.apply(a).await.unwrap_or_else(|e| panic!("{a:?}: {e}"));
    }
    drop(adapter);
    let _ = server.await;
    let out = calls.lock().expect("the lock").clone();
    out
}

#[test]
fn the_webhook_gates_every_serving_shape_labels_it_serving_and_keys_it_sensibly() {
    let t = tenancy(4, 0, "");
    let w = webhook(&t);
    for (pod, workload) in [
        (serverless(), "team-b/inferenceservice/llama-serverless"),
        (raw(), "team-b/inferenceservice/llama-chat"),
        // A plain Knative revision: its ReplicaSet (one per revision, `<revision>-deployment-<hash>`).
        (knative(), "team-b/replicaset/hello-gpu-00001-deployment-58c9d7b6f4"),
    ] {
        let (created, ops) = create(&w, &pod, 0, T0);
        assert_eq!(
            ops,
            vec![
                json!({"op": "add", "path": "/metadata/labels/gantry.dev~1kind", "value": "serving"}),
                json!({"op": "add", "path": "/metadata/labels/gantry.dev~1tenant", "value": "team-b"}),
                json!({"op": "add", "path": "/metadata/annotations/gantry.dev~1workload", "value": workload}),
                json!({"op": "add", "path": "/metadata/annotations/gantry.dev~1priority-class", "value": "serving"}),
                json!({"op": "add", "path": "/spec/schedulingGates", "value": [{"name": "gantry.dev/admission"}]}),
                json!({"op": "replace", "path": "/spec/schedulerName", "value": "gantry-scheduler"}),
            ],
            "{workload}"
        );
        // Nothing of the upstream pod is changed but Gantry's keys, the gate and the scheduler.
        let mut back = created.clone();
        for k in ["name", "uid", "creationTimestamp"] {
            back["metadata"].as_object_mut().expect("metadata").remove(k);
        }
        back["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .retain(|k, _| !k.starts_with("gantry.dev/"));
        back["metadata"]["annotations"]
            .as_object_mut()
            .expect("annotations")
            .retain(|k, _| !k.starts_with("gantry.dev/"));
        back["spec"].as_object_mut().expect("spec").remove("schedulingGates");
        back["spec"]["schedulerName"] = json!("default-scheduler");
        assert_eq!(back, pod, "{workload}");
        // A second pass over the created pod changes nothing.
        let (_, text, _) = w.review(Path::Mutate, &review(&created));
        let reply: Value = serde_json::from_str(&text).expect("JSON");
        assert!(reply["response"].get("patch").is_none(), "idempotent: {reply}");
    }
}

#[test]
fn the_queue_proxy_sidecar_counts_as_the_kubelet_counts_it_and_a_replica_is_one_gpu() {
    use gantry_api::pod::effective_requests;
    // kserve-container 4 CPU, 24Gi, 1 GPU; queue-proxy requests 25m CPU and no memory (Knative's
    // defaults); both are app containers, so they add up.
    let r = effective_requests(&serverless()).expect("requests");
    assert_eq!((r.cpu_milli, r.memory_bytes, r.gpus_milli), (4025, 24 << 30, 1000));
    let r = effective_requests(&raw()).expect("requests");
    assert_eq!((r.cpu_milli, r.memory_bytes, r.gpus_milli), (4000, 24 << 30, 1000));
    // user-container: the GPU only in limits (its request defaults to it), 1 CPU, 4Gi.
    let r = effective_requests(&knative()).expect("requests");
    assert_eq!((r.cpu_milli, r.memory_bytes, r.gpus_milli), (1025, 4 << 30, 1000));
    // A platform that turns on Knative's queue-proxy resource defaults (requests 25m, 400Mi):
    // the memory is counted too.
    let mut p = serverless();
    p["spec"]["containers"][1]["resources"] =
        json!({"requests": {"cpu": "25m", "memory": "400Mi"}, "limits": {"cpu": "1", "memory": "800Mi"}});
    let r = effective_requests(&p).expect("requests");
    assert_eq!((r.cpu_milli, r.memory_bytes), (4025, (24 << 30) + (400 << 20)));
}

#[tokio::test]
async fn replicas_start_one_by_one_in_the_cycle_they_arrive_and_a_scale_up_past_quota_waits() {
    // team-b holds 2 L4; nobody lends.
    let t = tenancy(2, 0, "");
    let w = webhook(&t);
    let mut c = controller(t, 2);
    // Scale from zero: the activator's request makes the autoscaler ask for one replica.
    let (first, _) = create(&w, &serverless(), 0, T0);
    assert!(c.pod_gated(&first, T0).is_empty());
    let actions = c.reconcile(T0);
    assert_eq!(ungated(&actions), [name(&first)], "the first replica starts in the same cycle: {actions:?}");
    // Its own workload, keyed by the InferenceService and the pod's UID: no gang to wait for.
    let running: Vec<String> = c.queue().running_workloads().map(|(w, _)| w.name.clone()).collect();
    assert_eq!(running, [format!("team-b/inferenceservice/llama-serverless/uid-{}", name(&first))]);
    let calls = carry_out(&actions).await;
    let got: Vec<(Method, String)> = calls.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(
        got,
        [
            (Method::PATCH, format!("/api/v1/namespaces/{NS}/pods/{}", name(&first))),
            (Method::PATCH, format!("/api/v1/namespaces/{NS}/pods/{}/status", name(&first))),
        ]
    );
    assert_eq!(
        calls[0].2["spec"]["schedulingGates"],
        json!([{"$patch": "delete", "name": "gantry.dev/admission"}])
    );
    assert!(calls[0].2["metadata"]["annotations"]["gantry.dev/placement"]
        .as_str()
        .is_some_and(|p| p.starts_with("l4-")));
    assert_eq!(calls[1].2["status"]["conditions"][0]["reason"], "Admitted");

    // Load grows: the autoscaler asks for two more. One fits the quota, the third waits.
    let (second, _) = create(&w, &serverless(), 1, T0 + 30);
    let (third, _) = create(&w, &serverless(), 2, T0 + 31);
    c.pod_gated(&second, T0 + 31);
    c.pod_gated(&third, T0 + 31);
    let actions = c.reconcile(T0 + 31);
    assert_eq!(ungated(&actions), [name(&second)], "{actions:?}");
    let why = &told(&actions)[&name(&third)];
    assert!(
        why.starts_with("waiting for quota: needs 1 NVIDIA-L4 GPUs; team-b uses 2 of its 2 nominal"),
        "{why}"
    );
    let calls = carry_out(&actions).await;
    let got: Vec<(Method, String)> = calls.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(
        got,
        [
            (Method::PATCH, format!("/api/v1/namespaces/{NS}/pods/{}", name(&second))),
            (Method::PATCH, format!("/api/v1/namespaces/{NS}/pods/{}/status", name(&second))),
            (Method::PATCH, format!("/api/v1/namespaces/{NS}/pods/{}/status", name(&third))),
            (Method::POST, format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")),
        ]
    );
    assert_eq!(calls[2].2["status"]["conditions"][0]["reason"], "Waiting");
    assert_eq!(calls[3].2["reason"], "GantryWaiting");

    // Load falls: the autoscaler removes a replica; the waiting one takes its GPU at once.
    c.pod_gone(&format!("uid-{}", name(&first)), T0 + 90);
    assert_eq!(ungated(&c.reconcile(T0 + 90)), [name(&third)]);
    c.queue().check_invariants().expect("invariants");
}

#[test]
fn a_scale_up_past_the_nominal_quota_borrows_what_the_cohort_lends_in_either_mode() {
    // team-b holds 1 L4; team-a lends its unused 4.
    for pod in [serverless(), raw(), knative()] {
        let t = tenancy(1, 4, "");
        let w = webhook(&t);
        let mut c = controller(t, 2);
        let replicas: Vec<Value> = (0..3).map(|i| create(&w, &pod, i, T0).0).collect();
        for p in &replicas {
            c.pod_gated(p, T0);
        }
        let started = ungated(&c.reconcile(T0));
        assert_eq!(started.len(), 3, "{started:?}");
        let (used, borrowed) = (c.queue().quota().usage(1, 0), c.queue().quota().borrowed(1, 0));
        assert_eq!((used, borrowed), (3000, 2000), "1 GPU in quota, 2 borrowed");
    }
}

/// A training pod of team-b's PyTorchJob `name` (training operator labels, one pod per job so
/// that the gang size annotation of 1 stands for the job's object), asking for `gpus` L4.
fn training(name: &str, gpus: u32, at: i64) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-master-0"), "namespace": NS, "uid": format!("uid-{name}"),
                     "creationTimestamp": rfc3339(at),
                     "labels": {"training.kubeflow.org/job-name": name, "training.kubeflow.org/operator-name": "pytorchjob-controller",
                                "gantry.dev/kind": "training", "gantry.dev/tenant": "team-b"},
                     "annotations": {"gantry.dev/gang-size": "1"},
                     "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": name, "uid": format!("uid-job-{name}"), "controller": true}]},
        "spec": {"schedulingGates": [{"name": "gantry.dev/admission"}], "nodeSelector": {"nvidia.com/gpu.product": L4},
                 "containers": [{"name": "pytorch", "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"nvidia.com/gpu": gpus.to_string()}}}]}})
}

#[tokio::test]
async fn a_serving_replica_goes_ahead_of_a_long_queue_of_its_tenants_training() {
    // team-b holds 4 L4 and runs two 2-GPU training jobs; 60 more wait, submitted over the hour
    // before (more than the 32 the queue looks at per turn), each of them would fit.
    let t = tenancy(4, 0, "");
    let w = webhook(&t);
    let mut c = controller(t, 2);
    for i in 0..2 {
        c.pod_gated(&training(&format!("run-{i}"), 2, T0 - 7200), T0 - 7200);
    }
    assert_eq!(ungated(&c.reconcile(T0 - 7200)).len(), 2);
    for i in 0..60 {
        c.pod_gated(&training(&format!("queued-{i}"), 1, T0 - 3600 + i * 60), T0 - 3600 + i * 60);
    }
    assert!(ungated(&c.reconcile(T0 - 1)).is_empty());
    // One running job finishes at T0, and a serving replica arrives in the same second: it takes
    // one of the two freed GPUs; the oldest training job takes the other.
    c.pod_gone("uid-run-0", T0);
    let (replica, _) = create(&w, &serverless(), 0, T0);
    c.pod_gated(&replica, T0);
    let started = ungated(&c.reconcile(T0));
    assert_eq!(started, [name(&replica), "queued-0-master-0".to_string()], "serving first");

    // Quota full again (run-1's 2, the replica, queued-0). A second replica: team-b's running
    // training is older than the minimum runtime, so the replica stops team-b's own
    // lower-priority training (the default `withinTenant: LowerPriority`) and starts in the same
    // cycle, on the GPUs the victim frees, ahead of the 59 older training jobs; the victim's
    // other GPU goes to the oldest of those.
    let (second, _) = create(&w, &serverless(), 1, T0 + 5);
    c.pod_gated(&second, T0 + 5);
    let actions = c.reconcile(T0 + 5);
    assert_eq!(evicted(&actions), ["run-1-master-0"], "{actions:?}");
    assert_eq!(ungated(&actions), [name(&second), "queued-1-master-0".to_string()], "{actions:?}");
    let why = &told(&actions)["queued-2-master-0"];
    assert!(why.contains("position 1 of 58 in team-b's queue"), "{why}");
    // The adapter evicts first (through the Eviction API, so PodDisruptionBudgets hold), then
    // lets the replica in.
    let mine: Vec<Action> = actions
        .iter()
        .filter(|a| match a {
            Action::Evict { .. } => true,
            Action::Ungate { pod, .. } => pod.name == name(&second),
            _ => false,
        })
        .cloned()
        .collect();
    assert!(matches!(mine[..], [Action::Evict { .. }, Action::Ungate { .. }]), "{mine:?}");
    let calls = carry_out(&mine).await;
    let got: Vec<(Method, String)> = calls.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(
        got,
        [
            (Method::POST, format!("/api/v1/namespaces/{NS}/pods/run-1-master-0/eviction")),
            (Method::POST, format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")),
            (Method::PATCH, format!("/api/v1/namespaces/{NS}/pods/{}", name(&second))),
            (Method::PATCH, format!("/api/v1/namespaces/{NS}/pods/{}/status", name(&second))),
        ]
    );
    assert_eq!(calls[1].2["reason"], "GantryPreempted");
    assert!(calls[1].2["note"]
        .as_str()
        .is_some_and(|n| n.contains("for higher-priority work team-b/inferenceservice/llama-serverless/")));
    c.queue().check_invariants().expect("invariants");
}

#[test]
fn how_long_a_replica_owed_quota_waits_for_borrowed_training_against_knatives_progress_deadline() {
    // team-b (4 L4 nominal) runs nothing; team-a (4 nominal) runs training on all 8 L4, 4 of them
    // borrowed from team-b, started just now. A serving replica of team-b arrives. Knative fails the revision if its
    // Deployment makes no progress for `progressDeadlineSeconds` (600 s by default).
    let deadline = 600;
    let mut measured = Vec::new();
    for (timing, want) in [
        // Gantry's defaults: reclaim window 5 min, minimum runtime 10 min. The victim is shielded
        // until it has run 600 s: the replica is admitted exactly at Knative's deadline.
        ("", 600),
        // A platform serving from shared capacity: a 1-minute window and a 2-minute minimum.
        ("timing: {reclaimWindow: 1m, minRuntime: 2m}", 120),
    ] {
        let t = tenancy(4, 4, timing);
        let w = webhook(&t);
        let mut c = controller(t, 2);
        for i in 0..2 {
            let mut p = training(&format!("borrow-{i}"), 4, T0);
            p["metadata"]["namespace"] = json!("team-a");
            p["metadata"]["labels"]["gantry.dev/tenant"] = json!("team-a");
            c.pod_gated(&p, T0);
        }
        assert_eq!(ungated(&c.reconcile(T0)).len(), 2);
        let (replica, _) = create(&w, &serverless(), 0, T0);
        c.pod_gated(&replica, T0);
        let mut admitted_at = None;
        for now in T0..=T0 + 900 {
            let actions = c.reconcile(now);
            let victims = evicted(&actions);
            if !victims.is_empty() {
                for v in victims {
                    let uid = v.trim_end_matches("-master-0");
                    c.pod_gone(&format!("uid-{uid}"), now);
                }
            }
            if ungated(&actions).contains(&name(&replica)) {
                admitted_at = Some(now - T0);
                break;
            }
        }
        let waited = admitted_at.expect("the replica is admitted by reclaim");
        measured.push(waited);
        assert_eq!(waited, want, "{timing:?}");
    }
    assert!(measured[0] >= deadline, "with the defaults the wait reaches Knative's deadline: {measured:?}");
    assert!(measured[1] < deadline);
}

/// KServe's multi-node predictor: a head and `RAY_NODE_COUNT - 1` workers, the head waiting for
/// the workers to join its Ray cluster. Gantry admits them as one gang, taking the size from the
/// pods themselves; a new generation is a gang of its own; a single-node predictor is unchanged.
#[tokio::test]
async fn a_multi_node_predictors_head_and_workers_start_together_or_not_at_all() {
    let head = multinode_head();
    let worker = multinode_worker();
    assert_eq!(gantry_api::gang::kserve_multi_node(&head), Some(3));
    assert_eq!(gantry_api::gang::kserve_multi_node(&worker), Some(3));
    assert_eq!(gantry_api::gang::kserve_multi_node(&raw()), None, "a single-node predictor");

    // Quota for the whole gang (12 L4) on four 4-GPU nodes.
    let t = tenancy(12, 0, "");
    let w = webhook(&t);
    let (head_pod, ops) = create(&w, &head, 0, T0);
    assert!(
        ops.contains(
            &json!({"op": "add", "path": "/metadata/annotations/gantry.dev~1gang-size", "value": "3"})
        ),
        "{ops:?}"
    );
    let workers: Vec<Value> = (1..3).map(|n| create(&w, &worker, n, T0).0).collect();
    let pods: Vec<&Value> = std::iter::once(&head_pod).chain(&workers).collect();
    for p in &pods {
        assert_eq!(
            p["metadata"]["annotations"]["gantry.dev/workload"],
            "team-b/inferenceservice/llama-70b/1"
        );
        assert_eq!(p["spec"]["schedulingGates"], json!([{"name": "gantry.dev/admission"}]));
    }

    let mut c = controller(t.clone(), 4);
    // The head arrives first (the Deployments are made together; their pods in any order):
    // nothing starts, and it says how many of its gang exist.
    c.pod_gated(&head_pod, T0);
    let actions = c.reconcile(T0);
    assert!(ungated(&actions).is_empty(), "{actions:?}");
    let said = told(&actions);
    assert!(said[&name(&head_pod)].contains("1 of its 3 pods"), "{said:?}");
    c.pod_gated(&workers[0], T0 + 1);
    assert!(ungated(&c.reconcile(T0 + 1)).is_empty());
    // The last worker: all three start in one cycle, each on a node of its own (4 GPUs each).
    c.pod_gated(&workers[1], T0 + 2);
    let actions = c.reconcile(T0 + 2);
    let mut all: Vec<String> = pods.iter().map(|p| name(p)).collect();
    all.sort();
    assert_eq!(ungated(&actions), all, "{actions:?}");
    let nodes: std::collections::BTreeSet<&String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Ungate { node, .. } => Some(node),
            _ => None,
        })
        .collect();
    assert_eq!(nodes.len(), 3, "{actions:?}");
    c.queue().check_invariants().unwrap();
    let calls = carry_out(&actions).await;
    assert_eq!(calls.len(), 6, "a placement-and-gate patch and a condition per pod: {calls:?}");

    // Quota for one node less: no pod of the gang starts, each says why.
    let t = tenancy(8, 0, "");
    let mut c = controller(t, 4);
    let mut actions = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        actions.extend(c.pod_gated(*p, T0 + i as i64));
    }
    actions.extend(c.reconcile(T0 + 3));
    assert!(ungated(&actions).is_empty(), "{actions:?}");
    let said = told(&actions);
    assert_eq!(said.len(), 3, "{actions:?}");
    assert!(said.values().all(|m| m.contains("quota")), "{said:?}");

    // A new spec (generation 2): its pods are a gang of their own beside the serving one.
    let mut next = worker.clone();
    next["metadata"]["labels"]["isvc.generation"] = json!("2");
    let (next, _) = create(&w, &next, 9, T0 + 10);
    assert_eq!(next["metadata"]["annotations"]["gantry.dev/workload"], "team-b/inferenceservice/llama-70b/2");
}
