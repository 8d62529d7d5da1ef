//! Every distributed-training framework's job, end to end: its pods exactly as the upstream
//! controllers create them (see `frameworks/`) pass through the admission webhook's mutation and
//! validation, the queue controller (reading the gang's size from the framework's own object),
//! the adapter against a mocked API server (the exact calls are asserted) and the extender's
//! filter and bind. A gang with quota for all its pods starts whole, in one cycle; with quota for
//! one pod less, nothing starts and every pod says why; a gang whose object is not read yet, or
//! whose counts make no sense, never starts partly.

mod frameworks;

use frameworks::{Job, NS};
use gantry_admission_webhook::{AdmissionPolicy, Path, Webhook};
use gantry_api::gang;
use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::queue::{Mode, Queue};
use gantry_core::tenancy::{file, Tenancy};
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::adapter::Adapter;
use gantry_scheduler::controller::{Action, Controller};
use gantry_scheduler::extender::Extender;
use gantry_scheduler::wire::{ExtenderArgs, ExtenderBindingArgs};
use http::{Method, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

const T0: i64 = 1_793_491_200;
const NODES: [&str; 5] = ["gpu-0", "gpu-1", "gpu-2", "gpu-3", "cpu-0"];

fn tenancy(nominal_gpus: u64) -> Tenancy {
    let text = format!("flavors:\n  - name: A100\ntenants:\n  - name: team-a\n    namespaces: [{NS}]\n    quotas: {{A100: {{nominal: {nominal_gpus}}}}}\n");
    file::parse("tenants.yaml", &text).expect("the test tenancy")
}

/// Four nodes of 8 A100 and a CPU node.
fn cluster() -> Cluster {
    let mut models = ModelCatalog::default();
    let a100 = models.intern("A100").unwrap();
    let mut nodes: Vec<Node> =
        (0..4).map(|i| Node::new(format!("gpu-{i}"), 64_000, 512 * 1024, 8, Some(a100))).collect();
    nodes.push(Node::new("cpu-0", 32_000, 128 * 1024, 0, None));
    Cluster::new(models, nodes)
}

fn scheduler(cluster: &Cluster) -> Scheduler {
    Scheduler::new(PolicyKind::Gantry.build(cluster, &[PodRequest::whole_gpus(8000, 65536, 4)]))
}

fn controller(t: Tenancy) -> Controller {
    let cluster = cluster();
    let scheduler = scheduler(&cluster);
    Controller::new(Queue::new(t, cluster, scheduler, Mode::Quota, T0).expect("a queue"))
}

fn review(operation: &str, pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "r-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": NS, "operation": operation, "userInfo": {"username": "system:serviceaccount:kubeflow:training-operator"}, "object": pod}}))
    .unwrap()
}

/// Creates `pod` as the API server would: the mutating webhook's patch applied, then the name
/// generated and the UID given, then the validating webhook asked.
fn create(w: &Webhook, pod: &Value, n: usize) -> Value {
    let (status, text, _) = w.review(Path::Mutate, &review("CREATE", pod));
    assert_eq!(status.as_u16(), 200, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["response"]["allowed"], true, "{reply}");
    let mut out = pod.clone();
    if let Some(b64) = reply["response"]["patch"].as_str() {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut out, &patch).expect("the webhook's patch applies");
    }
    if out["metadata"]["name"].is_null() {
        let prefix = out["metadata"]["generateName"].as_str().expect("a name or generateName").to_string();
        out["metadata"]["name"] = json!(format!("{prefix}x{n:04}"));
    }
    out["metadata"]["uid"] = json!(format!("uid-{}", out["metadata"]["name"].as_str().unwrap()));
    let (_, text, _) = w.review(Path::Validate, &review("CREATE", &out));
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["response"]["allowed"], true, "validation refused {}: {reply}", out["metadata"]["name"]);
    out
}

/// The job's pods created through the webhook, all of them gated, all with one workload key.
fn created(job: &Job, t: &Tenancy) -> Vec<Value> {
    let w = Webhook::new(AdmissionPolicy::new(t.clone(), Some("gantry-scheduler".into())).unwrap()).unwrap();
    let pods: Vec<Value> = job.pods.iter().enumerate().map(|(i, p)| create(&w, p, i)).collect();
    let keys: BTreeSet<&str> =
        pods.iter().map(|p| p["metadata"]["annotations"]["gantry.dev/workload"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 1, "{}: one workload key for the whole gang, got {keys:?}", job.name);
    for p in &pods {
        assert_eq!(
            p["spec"]["schedulingGates"],
            json!([{"name": "gantry.dev/admission"}]),
            "{}: every member is held",
            p["metadata"]["name"]
        );
    }
    pods
}

fn read_owner(job: &Job) -> (String, Result<gang::GangSpec, gang::GangError>) {
    let spec = gang::read(job.framework, &job.owner);
    let key = gang::owner_key(job.framework, NS, job.owner["metadata"]["name"].as_str().unwrap());
    (key, spec)
}

fn ungates(actions: &[Action]) -> Vec<(String, String, Vec<u32>)> {
    let mut v: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Ungate { pod, node, gpus, .. } => Some((pod.name.clone(), node.clone(), gpus.clone())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Each pod's last Pending or Refused message.
fn told(actions: &[Action]) -> std::collections::BTreeMap<String, String> {
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

/// Carries `actions` out against a mocked API server that answers every call; the calls made,
/// as (method, path, body).
async fn carry_out(actions: &[Action]) -> Vec<(Method, String, Value)> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls: Arc<Mutex<Vec<(Method, String, Value)>>> = Arc::default();
    let recorded = calls.clone();
    let server = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (method, path) = (request.method().clone(), request.uri().path().to_string());
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            recorded.lock().unwrap().push((method, path, body.clone()));
            // Events and pods are echoed back: kube's client reads an object of the kind it wrote.
            let reply = if body.is_null() {
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})
            } else {
                body
            };
            send.send_response(
                Response::builder().body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap(),
            );
        }
    });
    let adapter = Adapter::new(Client::new(service, "default"), Some("gantry-0".into()));
    for a in actions {
        adapter.apply(a).await.unwrap_or_else(|e| panic!("{a:?}: {e}"));
    }
    drop(adapter);
    let _ = server.await;
    let out = calls.lock().unwrap().clone();
    out
}

#[tokio::test]
async fn every_framework_starts_whole_when_its_quota_holds_the_gang_and_not_before_its_object_is_read() {
    for (framework, job) in frameworks::all() {
        let t = tenancy(job.gpus());
        let pods = created(&job, &t);
        let mut c = controller(t);
        // The pods arrive first (in reverse order): nothing starts, and every pod says what it
        // waits for.
        for p in pods.iter().rev() {
            assert!(ungates(&c.pod_gated(p, T0)).is_empty(), "{framework}");
        }
        let actions = c.reconcile(T0);
        assert!(
            ungates(&actions).is_empty(),
            "{framework}: nothing starts before the gang's size is known: {actions:?}"
        );
        let said = told(&actions);
        let owner =
            format!("{} {NS}/{}", job.framework.kind, job.owner["metadata"]["name"].as_str().unwrap());
        assert_eq!(said.len(), pods.len(), "{framework}: every pod is told: {said:?}");
        assert!(
            said.values().all(|m| m.contains(&format!("waiting for {owner} to be read"))),
            "{framework}: {said:?}"
        );

        // Its object is read: the whole gang starts in one cycle.
        let (key, spec) = read_owner(&job);
        assert!(ungates(&c.owner_applied(&key, spec, T0)).is_empty());
        let actions = c.reconcile(T0 + 1);
        let started = ungates(&actions);
        assert_eq!(started.len(), pods.len(), "{framework}: the whole gang starts at once: {actions:?}");
        c.queue().check_invariants().unwrap();

        // The adapter's calls: per pod, the placement and gate patch, then the condition.
        let calls = carry_out(&actions).await;
        let mut want: Vec<(Method, String)> = Vec::new();
        for (name, _, _) in &started {
            want.push((Method::PATCH, format!("/api/v1/namespaces/{NS}/pods/{name}")));
            want.push((Method::PATCH, format!("/api/v1/namespaces/{NS}/pods/{name}/status")));
        }
        let mut got: Vec<(Method, String)> = calls.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
        got.sort_by(|a, b| a.1.cmp(&b.1));
        want.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(got, want, "{framework}");
        for (_, path, body) in calls.iter().filter(|(_, p, _)| !p.ends_with("/status")) {
            assert_eq!(
                body["spec"]["schedulingGates"],
                json!([{"$patch": "delete", "name": "gantry.dev/admission"}]),
                "{path}"
            );
            assert!(body["metadata"]["annotations"]["gantry.dev/placement"].is_string(), "{path}: {body}");
        }

        // The extender sends each pod to its planned node only, and binds it there.
        let cl = cluster();
        let s = scheduler(&cl);
        let mut ext = Extender::new(cl, s);
        for (name, node, gpus) in &started {
            let mut p = pods.iter().find(|p| p["metadata"]["name"] == json!(name)).unwrap().clone();
            p["metadata"]["annotations"]["gantry.dev/placement"] =
                json!(gantry_api::placement::Planned::value(node, gpus, T0));
            p["spec"].as_object_mut().unwrap().remove("schedulingGates");
            let body = serde_json::to_vec(&json!({"Pod": p, "NodeNames": NODES})).unwrap();
            let args = ExtenderArgs::parse(&body).unwrap();
            let r = ext.filter(&args);
            assert_eq!(r.error, "", "{framework} {name}");
            assert_eq!(
                r.node_names.unwrap().iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                std::slice::from_ref(node),
                "{framework} {name}"
            );
            let unresolvable = r.failed_and_unresolvable_nodes.unwrap();
            assert_eq!(
                unresolvable.len(),
                NODES.len() - 1,
                "{framework} {name}: every other node is unresolvable"
            );
            if frameworks::gpus_of(&p) > 0 {
                let bound = ext.bind(&ExtenderBindingArgs {
                    pod_name: name.clone(),
                    pod_namespace: NS.into(),
                    pod_uid: format!("uid-{name}"),
                    node: node.clone(),
                });
                assert_eq!(bound.error, "", "{framework} {name}");
            }
        }
    }
}

#[tokio::test]
async fn with_quota_for_one_pod_less_no_pod_of_any_framework_starts_and_every_pod_says_why() {
    for (framework, job) in frameworks::all() {
        let t = tenancy(job.gpus() - job.largest_member());
        let pods = created(&job, &t);
        let mut c = controller(t);
        let (key, spec) = read_owner(&job);
        c.owner_applied(&key, spec, T0);
        let mut actions = Vec::new();
        for p in &pods {
            actions.extend(c.pod_gated(p, T0));
        }
        actions.extend(c.reconcile(T0));
        actions.extend(c.reconcile(T0 + 60));
        assert!(ungates(&actions).is_empty(), "{framework}: 0 partial starts: {actions:?}");
        let said = told(&actions);
        assert_eq!(said.len(), pods.len(), "{framework}: every pod is told why: {said:?}");
        assert!(
            said.values().all(|m| m.contains("quota")),
            "{framework}: the reason names the quota: {said:?}"
        );
        // Each pod gets an Event saying why (and a waiting one its condition); no pod is
        // patched to start.
        let calls = carry_out(&actions).await;
        assert!(
            calls.iter().all(|(m, p, _)| (*m == Method::PATCH && p.ends_with("/status"))
                || (*m == Method::POST && p.contains("/events"))),
            "{framework}: {calls:?}"
        );
        for p in &pods {
            let name = p["metadata"]["name"].as_str().unwrap();
            let event = calls.iter().any(|(m, _, body)| {
                *m == Method::POST
                    && body["regarding"]["name"] == json!(name)
                    && body["note"].as_str().is_some_and(|n| n.contains("quota"))
            });
            assert!(event, "{framework} {name}: an Event says why: {calls:?}");
        }
    }
}

#[test]
fn an_owner_with_nonsense_counts_is_refused_naming_it_and_no_pod_starts() {
    for (replicas, why) in [
        (json!(-1), "is -1"),
        (json!(0), "no pods"),
        (json!(1_000_000), "from 0 to 10000"),
        (json!("4"), "is \"4\""),
    ] {
        let mut job = frameworks::pytorch_job();
        job.owner["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = replicas.clone();
        if replicas == json!(0) {
            job.owner["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = json!(0);
        }
        let t = tenancy(64);
        let pods = created(&job, &t);
        let mut c = controller(t);
        let (key, spec) = read_owner(&job);
        assert!(spec.is_err(), "{replicas}");
        let mut actions = c.owner_applied(&key, spec, T0);
        for p in &pods {
            actions.extend(c.pod_gated(p, T0));
        }
        actions.extend(c.reconcile(T0));
        assert!(ungates(&actions).is_empty(), "{replicas}: {actions:?}");
        let refused: BTreeSet<String> = actions
            .iter()
            .filter_map(|a| {
                if let Action::Refused { pod, message } = a {
                    assert!(message.contains("PyTorchJob team-a/bert") && message.contains(why), "{message}");
                    Some(pod.name.clone())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(refused.len(), pods.len(), "{replicas}: every pod is told: {actions:?}");
        // Fixed: the gang starts whole.
        let (key, spec) = read_owner(&frameworks::pytorch_job());
        c.owner_applied(&key, spec, T0 + 1);
        assert_eq!(ungates(&c.reconcile(T0 + 1)).len(), pods.len(), "{replicas}");
    }
}

#[test]
fn an_mpijob_launcher_created_once_its_workers_run_starts_after_them() {
    let mut job = frameworks::mpi_job();
    job.owner["spec"]["launcherCreationPolicy"] = json!("WaitForWorkersReady");
    let t = tenancy(job.gpus());
    let pods = created(&job, &t);
    let mut c = controller(t);
    let (key, spec) = read_owner(&job);
    c.owner_applied(&key, spec, T0);
    let (launcher, workers): (Vec<&Value>, Vec<&Value>) =
        pods.iter().partition(|p| frameworks::gpus_of(p) == 0);
    for w in &workers {
        c.pod_gated(w, T0);
    }
    assert_eq!(
        ungates(&c.reconcile(T0)).len(),
        2,
        "the workers start without waiting for a launcher not yet created"
    );
    let mut actions = c.pod_gated(launcher[0], T0 + 30);
    actions.extend(c.reconcile(T0 + 30));
    let released: Vec<&Action> =
        actions.iter().filter(|a| matches!(a, Action::Release { .. } | Action::Ungate { .. })).collect();
    assert_eq!(released.len(), 1, "the CPU launcher joins the running gang: {actions:?}");
}

/// The shipped examples are gangs of the sizes their comments promise.
#[test]
fn the_examples_are_the_gangs_their_comments_say() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/kubernetes");
    for (file, framework, pods, gpus_each) in [
        ("pytorchjob.yaml", &gang::PYTORCH_JOB, 4, 1),
        ("mpijob.yaml", &gang::MPI_JOB, 3, 8),
        ("jobset.yaml", &gang::JOBSET, 4, 4),
    ] {
        let text = std::fs::read_to_string(format!("{examples}/{file}")).unwrap();
        let mut object =
            json_of(&marked_yaml::parse_yaml(0, &text).unwrap_or_else(|e| panic!("{file}: {e}")));
        object["metadata"]["namespace"] = json!(NS);
        let spec = gang::read(framework, &object).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((spec.size.total, spec.size.min), (pods, pods), "{file}");
        let text_gpus = format!("nvidia.com/gpu: \"{gpus_each}\"");
        assert!(text.contains(&text_gpus), "{file}: {gpus_each} GPUs per GPU pod");
    }
}

/// A YAML node as the API server would store it: plain integers as numbers.
fn json_of(node: &marked_yaml::Node) -> Value {
    match node {
        marked_yaml::Node::Scalar(s) => {
            s.as_str().parse::<i64>().map_or_else(|_| json!(s.as_str()), |n| json!(n))
        }
        marked_yaml::Node::Sequence(items) => Value::Array(items.iter().map(json_of).collect()),
        marked_yaml::Node::Mapping(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.as_str().to_string(), json_of(v))).collect())
        }
    }
}

/// An elastic job whose size changes: while it waits, its gang takes the new size; once it runs,
/// a worker added by a scale-up starts on its own, and the gang's running pods stay.
#[test]
fn a_job_that_changes_size_is_planned_again() {
    let job = frameworks::pytorch_job();
    let t = tenancy(64);
    let pods = created(&job, &t);
    let mut c = controller(t);
    let (key, spec) = read_owner(&job);
    c.owner_applied(&key, spec, T0);
    // Three of four pods exist when the job is scaled to 1 master + 2 workers.
    for p in &pods[..3] {
        c.pod_gated(p, T0);
    }
    assert!(ungates(&c.reconcile(T0)).is_empty(), "3 of 4: waits whole");
    let mut smaller = job.owner.clone();
    smaller["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = json!(2);
    c.owner_applied(&key, gang::read(job.framework, &smaller), T0 + 1);
    assert_eq!(ungates(&c.reconcile(T0 + 1)).len(), 3, "the gang of 3 starts whole");
    // Scaled up again: the new worker starts on its own; nothing running is touched.
    c.owner_applied(&key, gang::read(job.framework, &job.owner), T0 + 2);
    let actions = c.pod_gated(&pods[3], T0 + 2).into_iter().chain(c.reconcile(T0 + 2)).collect::<Vec<_>>();
    assert_eq!(
        ungates(&actions).iter().map(|u| u.0.as_str()).collect::<Vec<_>>(),
        [pods[3]["metadata"]["name"].as_str().unwrap()],
        "{actions:?}"
    );
    assert!(actions.iter().all(|a| !matches!(a, Action::Evict { .. })));
    c.queue().check_invariants().unwrap();
}
