//! In a cluster the policy follows Gantry's tenant objects (mocked API server, tower-test): the
//! webhook is not ready and answers 503 until the objects are listed, then decides from them,
//! and a watch event that changes a tenant's quota changes the next decision. A change that
//! makes the objects invalid keeps the last good policy.

mod common;
use axum::body::Body as AxumBody;
use common::*;
use gantry_admission_webhook::live::follow;
use gantry_admission_webhook::{router, AdmissionPolicy, Path, Webhook};
use gantry_core::tenancy::file;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tower::ServiceExt;

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "gantry.dev/v1alpha1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder().status(status).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap()
}

/// Waits until `check` holds of the webhook, or fails after 10 s.
async fn until(w: &Webhook, what: &str, check: impl Fn(&Webhook) -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !check(w) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within 10 s"));
}

fn denial_of(w: &Webhook, gpus: u32) -> String {
    let (_, reply) = call(
        w,
        Path::Validate,
        &review(
            "colin-coder",
            held(pod(json!({}), json!({"gantry.dev/gpu-models": "A100"}), json!({"nvidia.com/gpu": gpus}))),
        ),
    );
    denial(&reply)
}

#[tokio::test]
async fn the_policy_follows_the_tenant_objects() {
    let (tenancy, settings) = file::parse_with_settings("tenants.yaml", &fixture("tenants.yaml")).unwrap();
    // The objects `gantry crd --from-tenants` writes for the test tenancy.
    let (flavors, cohorts, tenants) = gantry_api::crds::tenancy_to_objects(&tenancy, &settings).unwrap();
    let yaml = gantry_api::crds::objects_yaml(&flavors, &cohorts, &tenants).unwrap();
    let objects: Vec<Value> =
        yaml.split("---\n").skip(1).map(|d| serde_yaml_ng::from_str(d).unwrap()).collect();
    let of_kind = |kind: &str| -> Vec<Value> {
        let mut v: Vec<Value> = objects.iter().filter(|o| o["kind"] == kind).cloned().collect();
        v.iter_mut().for_each(|o| o["metadata"]["resourceVersion"] = json!("1"));
        v
    };
    let (flavors, cohorts, tenants) = (of_kind("GpuFlavor"), of_kind("Cohort"), of_kind("Tenant"));
    assert_eq!((flavors.len(), cohorts.len(), tenants.len()), (3, 1, 2));

    // Watch events to send on the tenants watch, one per message on `events`.
    let (events, mut next_event) = mpsc::unbounded_channel::<Value>();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let served = (flavors.clone(), cohorts.clone(), tenants.clone());
    tokio::spawn(async move {
        let mut open = Vec::new();
        let mut tenant_watch = None;
        loop {
            tokio::select! {
                next = handle.next_request() => {
                    let Some((request, send)) = next else { break };
                    assert_eq!(request.method(), Method::GET, "the webhook only reads");
                    let path = request.uri().path().to_string();
                    let watching = request.uri().query().unwrap_or("").contains("watch=true");
                    match (path.as_str(), watching) {
                        ("/apis/gantry.dev/v1alpha1/tenants", true) if tenant_watch.is_none() => tenant_watch = Some(send),
                        (_, true) => open.push(send),
                        ("/apis/gantry.dev/v1alpha1/tenants", false) => send.send_response(reply(StatusCode::OK, &list("TenantList", served.2.clone()))),
                        ("/apis/gantry.dev/v1alpha1/cohorts", false) => send.send_response(reply(StatusCode::OK, &list("CohortList", served.1.clone()))),
                        ("/apis/gantry.dev/v1alpha1/gpuflavors", false) => send.send_response(reply(StatusCode::OK, &list("GpuFlavorList", served.0.clone()))),
                        // No namespaces: these tenants list theirs (tests/profiles.rs selects them).
                        ("/api/v1/namespaces", false) => send.send_response(reply(StatusCode::OK, &json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "1"}, "items": []}))),
                        (other, _) => panic!("unexpected call {other}"),
                    }
                }
                Some(event) = next_event.recv() => {
                    // One event, then the watch ends (the watcher opens a new one).
                    if let Some(send) = tenant_watch.take() {
                        let line = serde_json::to_vec(&event).unwrap();
                        send.send_response(Response::builder().status(200).body(Body::from(line)).unwrap());
                    }
                }
            }
        }
    });

    let webhook = Arc::new(Webhook::unready().unwrap());
    let app = router(webhook.clone());
    let get = |path: &'static str| {
        let app = app.clone();
        async move {
            app.oneshot(http::Request::get(path).body(AxumBody::empty()).unwrap()).await.unwrap().status()
        }
    };
    // Before the objects are read: not ready, and reviews are refused with 503 (failurePolicy).
    assert_eq!(get("/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get("/healthz").await, StatusCode::OK);
    assert_eq!(
        call(&webhook, Path::Validate, &review("colin-coder", pod(json!({}), json!({}), json!({})))).0,
        503
    );

    tokio::spawn(follow(client, settings, |t| AdmissionPolicy::new(t, None), webhook.clone()));
    until(&webhook, "the policy is read from the objects", |w| w.policy().is_some()).await;
    assert_eq!(get("/readyz").await, StatusCode::OK);
    // The same decisions as from the file: coder holds at most 8 A100.
    assert_eq!(denial_of(&webhook, 8), "");
    assert!(
        denial_of(&webhook, 12).contains("can never hold more than 8 of the models it accepts"),
        "{}",
        denial_of(&webhook, 12)
    );

    // A platform admin raises coder's A100 quota: the next review sees it.
    let mut coder = tenants.iter().find(|t| t["metadata"]["name"] == "coder").unwrap().clone();
    coder["spec"]["quotas"]["a100"]["nominal"] = json!("12");
    coder["metadata"]["resourceVersion"] = json!("2");
    events.send(json!({"type": "MODIFIED", "object": coder})).unwrap();
    until(&webhook, "the raised quota is in force", |w| denial_of(w, 12).is_empty()).await;

    // A broken change (a quota on a flavor that does not exist) keeps the last good policy.
    let mut broken = coder.clone();
    broken["spec"]["quotas"]["h100"] = json!({"nominal": "1"});
    broken["metadata"]["resourceVersion"] = json!("3");
    events.send(json!({"type": "MODIFIED", "object": broken})).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(denial_of(&webhook, 12), "", "the last good policy stays");
    assert_eq!(get("/readyz").await, StatusCode::OK);
}
