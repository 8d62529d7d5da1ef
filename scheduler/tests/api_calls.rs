//! The exact API calls the adapter makes, against a mocked API server (tower-test): one scenario
//! per action.

use gantry_api::keys::PLACEMENT_ANNOTATION;
use gantry_scheduler::adapter::Adapter;
use gantry_scheduler::controller::{Action, PodRef};
use http::{Method, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn setup() -> (Adapter, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Adapter::new(Client::new(service, "default"), Some("gantry-0".into())), handle)
}

fn pod_ref(name: &str) -> PodRef {
    PodRef { namespace: "team-a".into(), name: name.into(), uid: format!("uid-{name}") }
}

fn pod_json(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}")}})
}

/// Answers the next request after checking it; returns its body as JSON.
async fn expect(handle: &mut Handle, method: Method, path: &str, reply: Value) -> Value {
    let (request, send) = handle.next_request().await.expect("the adapter called the API server");
    assert_eq!(request.method(), method);
    assert_eq!(request.uri().path(), path);
    let content_type = request.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    if method == Method::PATCH {
        assert_eq!(content_type.as_deref(), Some("application/strategic-merge-patch+json"));
    }
    send.send_response(Response::builder().body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap());
    body
}

#[tokio::test]
async fn ungating_records_the_placement_and_deletes_only_gantrys_gate() {
    let (adapter, mut handle) = setup();
    let server = tokio::spawn(async move {
        let mut bodies = Vec::new();
        let mut conditions = Vec::new();
        for name in ["w-0", "w-1"] {
            bodies.push(
                expect(
                    &mut handle,
                    Method::PATCH,
                    &format!("/api/v1/namespaces/team-a/pods/{name}"),
                    pod_json(name),
                )
                .await,
            );
            conditions.push(
                expect(
                    &mut handle,
                    Method::PATCH,
                    &format!("/api/v1/namespaces/team-a/pods/{name}/status"),
                    pod_json(name),
                )
                .await,
            );
        }
        (bodies, conditions)
    });
    for (name, node) in [("w-0", "gpu-0"), ("w-1", "gpu-1")] {
        adapter
            .apply(&Action::Ungate {
                pod: pod_ref(name),
                node: node.into(),
                gpus: vec![0, 1, 2, 3],
                at: 1_793_491_200,
            })
            .await
            .unwrap();
    }
    let (bodies, conditions) = server.await.unwrap();
    let condition = &conditions[0]["status"]["conditions"][0];
    assert_eq!(
        (&condition["type"], &condition["status"], &condition["reason"]),
        (&json!("gantry.dev/admitted"), &json!("True"), &json!("Admitted"))
    );
    assert_eq!(condition["message"], "admitted by Gantry's queue; planned for node gpu-0");
    assert!(condition["lastTransitionTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        bodies[0],
        json!({"metadata": {"annotations": {PLACEMENT_ANNOTATION: "gpu-0:0,1,2,3@1793491200"}},
               "spec": {"schedulingGates": [{"$patch": "delete", "name": "gantry.dev/admission"}]}})
    );
    assert_eq!(bodies[1]["metadata"]["annotations"][PLACEMENT_ANNOTATION], "gpu-1:0,1,2,3@1793491200");
}

#[tokio::test]
async fn preemption_evicts_through_the_eviction_api_and_says_why() {
    let (adapter, mut handle) = setup();
    let server = tokio::spawn(async move {
        let eviction = expect(
            &mut handle,
            Method::POST,
            "/api/v1/namespaces/team-b/pods/b-1/eviction",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        )
        .await;
        let event =
            expect(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/team-b/events", json!({}))
                .await;
        (eviction, event)
    });
    let victim = PodRef { namespace: "team-b".into(), name: "b-1".into(), uid: "uid-b-1".into() };
    adapter
        .apply(&Action::Evict {
            pod: victim,
            message: "preempted by Gantry to reclaim borrowed capacity for team-a/pod/a-0".into(),
        })
        .await
        .unwrap();
    let (eviction, event) = server.await.unwrap();
    assert_eq!(eviction["metadata"]["name"], "b-1");
    assert_eq!(event["reason"], "GantryPreempted");
    assert_eq!(event["regarding"]["name"], "b-1");
    assert_eq!(event["reportingController"], "gantry-scheduler");
    assert!(event["note"].as_str().unwrap().contains("reclaim borrowed capacity"));
}

#[tokio::test]
async fn a_waiting_workload_gets_a_condition_and_an_event_with_the_explanation() {
    let (adapter, mut handle) = setup();
    let server = tokio::spawn(async move {
        let condition =
            expect(&mut handle, Method::PATCH, "/api/v1/namespaces/team-a/pods/a-1/status", pod_json("a-1"))
                .await;
        (
            condition,
            expect(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/team-a/events", json!({}))
                .await,
        )
    });
    let message = "waiting for quota: needs 8 A100 GPUs; team-a uses 8 of its 8 nominal and cohort pool can lend 0 more; position 1 of 1 in team-a's queue";
    adapter.apply(&Action::Pending { pod: pod_ref("a-1"), message: message.into() }).await.unwrap();
    let (condition, event) = server.await.unwrap();
    let c = &condition["status"]["conditions"][0];
    assert_eq!(
        (&c["type"], &c["status"], &c["reason"], &c["message"]),
        (&json!("gantry.dev/admitted"), &json!("False"), &json!("Waiting"), &json!(message))
    );
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["reason"], "GantryWaiting");
    assert_eq!(event["note"], message);
    assert_eq!(event["regarding"]["uid"], "uid-a-1");
}

#[tokio::test]
async fn api_errors_name_the_pod_and_the_call() {
    let (adapter, mut handle) = setup();
    let server = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "pods \"gone\" not found", "reason": "NotFound", "code": 404});
        send.send_response(
            Response::builder().status(404).body(Body::from(serde_json::to_vec(&status).unwrap())).unwrap(),
        );
    });
    let err = adapter
        .apply(&Action::Ungate {
            pod: pod_ref("gone"),
            node: "gpu-0".into(),
            gpus: vec![],
            at: 1_793_491_200,
        })
        .await
        .unwrap_err();
    server.await.unwrap();
    let text = err.to_string();
    assert!(text.contains("cannot ungate pod team-a/gone") && text.contains("not found"), "{text}");
}

#[tokio::test]
async fn a_condition_keeps_its_transition_time_while_its_status_stays() {
    let (adapter, mut handle) = setup();
    let server = tokio::spawn(async move {
        // The condition, then the Event (created, then its count patched for the repeat).
        let mut conditions = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().path().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let reply = if path.ends_with("/status") {
                conditions.push(body);
                pod_json("w-0")
            } else {
                json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "team-a"}, "eventTime": null})
            };
            send.send_response(
                Response::builder().body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap(),
            );
        }
        conditions
    });
    let waiting = Action::Pending { pod: pod_ref("w-0"), message: "waiting for quota".into() };
    // Already waiting (False): the time stays; it was admitted (True): the time moves.
    adapter.apply_to(&waiting, Some("False")).await.unwrap();
    adapter.apply_to(&waiting, Some("True")).await.unwrap();
    drop(adapter);
    let conditions = server.await.unwrap();
    let first = &conditions[0]["status"]["conditions"][0];
    assert_eq!((&first["status"], first.get("lastTransitionTime")), (&json!("False"), None), "{first}");
    assert!(conditions[1]["status"]["conditions"][0]["lastTransitionTime"].as_str().is_some());
}
