//! Kubeflow Profiles as tenants, through the webhook in a cluster (mocked API server,
//! tower-test): the Tenants of `examples/kubernetes/profile-tenants.yaml` and Namespaces shaped
//! as Kubeflow's profile controller makes them (`api/tests/fixtures/kubeflow-profiles/`). The
//! webhook lists and watches exactly Tenants, Cohorts, GpuFlavors and Namespaces (GET only); a
//! GPU pod in a Profile namespace is held for its tenant's queue; a new Profile's namespace is
//! its tenant's as soon as its watch event arrives.

mod common;
use common::*;
use gantry_admission_webhook::live::follow;
use gantry_admission_webhook::{AdmissionPolicy, Path, Webhook};
use gantry_core::tenancy::Settings;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

const EXAMPLE: &str = include_str!("../../examples/kubernetes/profile-tenants.yaml");

fn namespace(name: &str) -> Value {
    let path = format!(
        "{}/../api/tests/fixtures/kubeflow-profiles/{name}.namespace.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn of_kind(kind: &str) -> Vec<Value> {
    EXAMPLE
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_yaml_ng::from_str::<Value>(d).expect("YAML"))
        .filter(|d| d["kind"] == kind)
        .map(|mut d| {
            d["metadata"]["resourceVersion"] = json!("1");
            d
        })
        .collect()
}

fn list(api_version: &str, kind: &str, items: Vec<Value>) -> Response<Body> {
    let body = json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items});
    Response::builder().status(StatusCode::OK).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
}

/// Whether a GPU pod created in `namespace` is held by Gantry's gate (it is a tenant's).
fn held_in(w: &Webhook, namespace: &str) -> bool {
    let (_, reply) =
        call(w, Path::Mutate, &review(namespace, pod(json!({}), json!({}), json!({"nvidia.com/gpu": 1}))));
    patch_of(&reply)
        .iter()
        .any(|op| op["path"].as_str().is_some_and(|p| p.starts_with("/spec/schedulingGates")))
}

fn tenant_of(w: &Webhook, namespace: &str) -> Option<String> {
    let policy = w.policy()?;
    policy.tenant_of(namespace).map(|t| policy.tenancy.tenants[t].name.clone())
}

async fn until(w: &Webhook, what: &str, check: impl Fn(&Webhook) -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !check(w) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within 10 s"));
}

#[tokio::test]
async fn profile_namespaces_are_their_tenants_and_a_new_one_joins_on_its_watch_event() {
    let (events, mut next_event) = mpsc::unbounded_channel::<Value>();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    // Every call: (method, path, watch).
    let calls: Arc<Mutex<Vec<(Method, String, bool)>>> = Arc::default();
    let record = calls.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        let mut namespace_watch = None;
        loop {
            tokio::select! {
                next = handle.next_request() => {
                    let Some((request, send)) = next else { break };
                    let path = request.uri().path().to_string();
                    let watching = request.uri().query().unwrap_or("").contains("watch=true");
                    record.lock().unwrap().push((request.method().clone(), path.clone(), watching));
                    match (path.as_str(), watching) {
                        ("/api/v1/namespaces", true) if namespace_watch.is_none() => namespace_watch = Some(send),
                        (_, true) => open.push(send),
                        ("/apis/gantry.dev/v1alpha1/tenants", false) => send.send_response(list("gantry.dev/v1alpha1", "TenantList", of_kind("Tenant"))),
                        ("/apis/gantry.dev/v1alpha1/cohorts", false) => send.send_response(list("gantry.dev/v1alpha1", "CohortList", of_kind("Cohort"))),
                        ("/apis/gantry.dev/v1alpha1/gpuflavors", false) => send.send_response(list("gantry.dev/v1alpha1", "GpuFlavorList", of_kind("GpuFlavor"))),
                        // alice's Profile, carol's (labelled for vision) and Kubeflow's own; bob's comes later.
                        ("/api/v1/namespaces", false) => send.send_response(list("v1", "NamespaceList", vec![namespace("alice"), namespace("carol-vision"), namespace("kubeflow")])),
                        (other, _) => panic!("unexpected call {other}"),
                    }
                }
                Some(event) = next_event.recv() => {
                    if let Some(send) = namespace_watch.take() {
                        let line = serde_json::to_vec(&event).unwrap();
                        send.send_response(Response::builder().status(200).body(Body::from(line)).unwrap());
                    }
                }
            }
        }
    });

    let webhook = Arc::new(Webhook::unready().unwrap());
    tokio::spawn(follow(client, Settings::default(), |t| AdmissionPolicy::new(t, None), webhook.clone()));
    until(&webhook, "the policy is read from the objects", |w| w.policy().is_some()).await;

    assert_eq!(tenant_of(&webhook, "alice").as_deref(), Some("alice"));
    assert_eq!(tenant_of(&webhook, "carol").as_deref(), Some("vision"));
    assert_eq!(tenant_of(&webhook, "kubeflow"), None);
    assert!(held_in(&webhook, "alice") && held_in(&webhook, "carol"));
    assert!(!held_in(&webhook, "kubeflow"), "a namespace no tenant has is not Gantry's");
    // bob's Tenant selects a namespace that does not exist yet.
    assert_eq!(tenant_of(&webhook, "bob"), None);
    assert!(!held_in(&webhook, "bob"));

    // The profile controller creates bob's namespace: one watch event, and it is bob's.
    events.send(json!({"type": "ADDED", "object": namespace("bob")})).unwrap();
    until(&webhook, "bob's namespace is bob's", |w| tenant_of(w, "bob").as_deref() == Some("bob")).await;
    assert!(held_in(&webhook, "bob"));

    // Exactly: one list and watches of each kind, all reads.
    let calls = calls.lock().unwrap().clone();
    assert!(calls.iter().all(|(m, _, _)| m == Method::GET), "the webhook only reads: {calls:?}");
    let paths = |watch: bool| -> BTreeSet<String> {
        calls.iter().filter(|(_, _, w)| *w == watch).map(|(_, p, _)| p.clone()).collect()
    };
    let expected: BTreeSet<String> = [
        "/api/v1/namespaces",
        "/apis/gantry.dev/v1alpha1/cohorts",
        "/apis/gantry.dev/v1alpha1/gpuflavors",
        "/apis/gantry.dev/v1alpha1/tenants",
    ]
    .map(String::from)
    .into();
    assert_eq!(paths(false), expected, "{calls:?}");
    assert_eq!(paths(true), expected, "{calls:?}");
    assert_eq!(calls.iter().filter(|(_, _, w)| !w).count(), 4, "one list each: {calls:?}");
}

/// A cluster that answers lists with the example's objects, `extra` Tenants added, and Namespaces
/// `namespaces`; watches stay open with no events.
fn static_cluster(extra: Vec<Value>, namespaces: Vec<Value>) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            if request.uri().query().unwrap_or("").contains("watch=true") {
                open.push(send);
                continue;
            }
            let response = match request.uri().path() {
                "/apis/gantry.dev/v1alpha1/tenants" => list(
                    "gantry.dev/v1alpha1",
                    "TenantList",
                    of_kind("Tenant").into_iter().chain(extra.clone()).collect(),
                ),
                "/apis/gantry.dev/v1alpha1/cohorts" => {
                    list("gantry.dev/v1alpha1", "CohortList", of_kind("Cohort"))
                }
                "/apis/gantry.dev/v1alpha1/gpuflavors" => {
                    list("gantry.dev/v1alpha1", "GpuFlavorList", of_kind("GpuFlavor"))
                }
                "/api/v1/namespaces" => list("v1", "NamespaceList", namespaces.clone()),
                other => panic!("unexpected call {other}"),
            };
            send.send_response(response);
        }
    });
    Client::new(service, "default")
}

#[tokio::test]
async fn gpu_pods_are_refused_in_a_profile_namespace_two_tenants_claim() {
    let intruder = json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "intruder", "resourceVersion": "1"},
        "spec": {"namespaces": ["alice"], "cohort": "research", "quotas": {"nvidia-a100-sxm4-80gb": {"nominal": "1"}}}});
    let client = static_cluster(vec![intruder], vec![namespace("alice"), namespace("carol-vision")]);
    let webhook = Arc::new(Webhook::unready().unwrap());
    tokio::spawn(follow(client, Settings::default(), |t| AdmissionPolicy::new(t, None), webhook.clone()));
    until(&webhook, "the policy is read from the objects", |w| w.policy().is_some()).await;

    // alice's namespace is neither tenant's; the rest of the tenancy stands.
    assert_eq!(tenant_of(&webhook, "alice"), None);
    assert_eq!(tenant_of(&webhook, "carol").as_deref(), Some("vision"));
    assert!(held_in(&webhook, "carol"));
    let policy = webhook.policy().unwrap();
    assert_eq!(policy.claimants("alice"), Some(&["alice".to_string(), "intruder".to_string()][..]));
    assert_eq!(policy.claimants("carol"), None);

    // A GPU pod there is refused, naming the namespace, the tenants and the fix; a CPU pod runs.
    for path in [Path::Mutate, Path::Validate] {
        let gpu = pod(json!({}), json!({}), json!({"nvidia.com/gpu": 1}));
        let (_, reply) = call(&webhook, path, &review("alice", gpu));
        assert_eq!(reply["response"]["allowed"], false, "{reply}");
        let message = denial(&reply);
        assert!(message.starts_with("namespace alice is claimed by tenants alice, intruder"), "{message}");
        assert!(
            message.contains("remove alice from all but one tenant's namespaces or namespaceSelector"),
            "{message}"
        );
        let cpu = pod(json!({}), json!({}), json!({"cpu": "1"}));
        let (_, reply) = call(&webhook, path, &review("alice", cpu));
        assert_eq!(reply["response"], json!({"uid": "uid-1", "allowed": true}));
    }
}
