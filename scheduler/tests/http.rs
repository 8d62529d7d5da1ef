//! The extender service in-process: each test sends real HTTP requests through the router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::extender::Extender;
use gantry_scheduler::server::{router, router_for, AppState, BODY_LIMIT};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// n0, n1: 8 A100 each; n2: 1 A100; c0: no GPUs.
fn app() -> Router {
    app_evicting(&[])
}

/// The same, with the queue controller evicting the pods `evicting` (by UID).
fn app_evicting(evicting: &[&str]) -> Router {
    router(extender(evicting), "/scheduler").unwrap()
}

fn extender(evicting: &[&str]) -> Extender {
    let mut models = ModelCatalog::default();
    let a100 = models.intern("A100").unwrap();
    let nodes = vec![
        Node::new("n0", 64000, 512 * 1024, 8, Some(a100)),
        Node::new("n1", 64000, 512 * 1024, 8, Some(a100)),
        Node::new("n2", 16000, 64 * 1024, 1, Some(a100)),
        Node::new("c0", 32000, 128 * 1024, 0, None),
    ];
    let cluster = Cluster::new(models, nodes);
    let expected = [
        PodRequest::whole_gpus(8000, 65536, 1),
        PodRequest::whole_gpus(16000, 131072, 2),
        PodRequest::shared_gpu(4000, 16384, 500),
    ];
    let scheduler = Scheduler::new(PolicyKind::Gantry.build(&cluster, &expected));
    let mut extender = Extender::new(cluster, scheduler);
    for uid in evicting {
        extender.note_evicting(uid);
    }
    extender
}

fn gpu_pod(uid: &str, gpus: u32) -> Value {
    pod_with_cpu(uid, gpus, "4")
}

fn pod_with_cpu(uid: &str, gpus: u32, cpu: &str) -> Value {
    json!({"metadata": {"name": uid, "namespace": "team-a", "uid": uid},
           "spec": {"containers": [{"resources": {"requests": {"cpu": cpu, "memory": "8Gi"}, "limits": {"nvidia.com/gpu": gpus}}}]}})
}

async fn call(app: &Router, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    (status, res.into_body().collect().await.unwrap().to_bytes().to_vec())
}

async fn post(app: &Router, verb: &str, body: Value) -> (StatusCode, Value) {
    let (status, bytes) =
        call(app, "POST", &format!("/scheduler/{verb}"), serde_json::to_vec(&body).unwrap()).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into())))
}

#[tokio::test]
async fn filter_with_a_node_cache_returns_names_and_reasons() {
    let app = app();
    let (status, r) = post(
        &app,
        "filter",
        json!({"Pod": gpu_pod("p1", 2), "Nodes": null, "NodeNames": ["n0", "n2", "c0", "ghost"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["NodeNames"], json!(["n0"]));
    assert_eq!(r["Nodes"], Value::Null);
    assert_eq!(r["Error"], "");
    let unresolvable = &r["FailedAndUnresolvableNodes"];
    assert_eq!(unresolvable["ghost"], "node ghost is not in Gantry's node cache");
    assert!(unresolvable["c0"].as_str().unwrap().contains("no GPUs"), "{r}");
    assert!(
        unresolvable["n2"].as_str().unwrap().contains("even when empty"),
        "a 1-GPU node can never hold 2 GPUs: {r}"
    );
    assert_eq!(r["FailedNodes"], json!({}));
}

#[tokio::test]
async fn filter_without_a_node_cache_returns_the_passing_nodes_as_sent() {
    let app = app();
    let node = |name: &str| json!({"metadata": {"name": name, "labels": {"zone": "a"}}, "status": {"capacity": {"nvidia.com/gpu": "8"}}});
    let args = json!({"Pod": gpu_pod("p1", 8), "Nodes": {"metadata": {}, "items": [node("n0"), node("n2")]}, "NodeNames": null});
    let (_, r) = post(&app, "filter", args).await;
    assert_eq!(r["Nodes"], json!({"metadata": {}, "items": [node("n0")]}));
    assert_eq!(r["NodeNames"], Value::Null);
}

#[tokio::test]
async fn pods_without_gpus_pass_through_untouched() {
    let app = app();
    let pod = json!({"metadata": {"name": "web", "uid": "w"}, "spec": {"containers": [{"resources": {"requests": {"cpu": "100m"}}}]}});
    let (_, r) = post(&app, "filter", json!({"Pod": pod, "NodeNames": ["n0", "c0", "ghost"]})).await;
    assert_eq!(r["NodeNames"], json!(["n0", "c0", "ghost"]));
    let (_, scores) = post(&app, "prioritize", json!({"Pod": pod, "NodeNames": ["n0", "c0"]})).await;
    assert_eq!(scores, json!([{"Host": "n0", "Score": 0}, {"Host": "c0", "Score": 0}]));
}

#[tokio::test]
async fn prioritize_returns_a_bare_array_of_scores_from_0_to_10() {
    let app = app();
    // A CPU-heavy pod takes 6 GPUs and 60 of n1's 64 cores: its last 2 GPUs are stranded for
    // the expected workload (8 cores per GPU), and a 2-GPU pod with few cores should use them.
    post(&app, "filter", json!({"Pod": pod_with_cpu("big", 6, "60"), "NodeNames": ["n1"]})).await;
    let (_, b) = post(
        &app,
        "bind",
        json!({"PodName": "big", "PodNamespace": "team-a", "PodUID": "big", "Node": "n1"}),
    )
    .await;
    assert_eq!(b, json!({"Error": ""}));
    let (status, scores) =
        post(&app, "prioritize", json!({"Pod": gpu_pod("p2", 2), "NodeNames": ["n0", "n1", "c0"]})).await;
    assert_eq!(status, StatusCode::OK);
    let list = scores.as_array().expect("a bare JSON array");
    assert_eq!(list.len(), 3);
    for s in list {
        let score = s["Score"].as_i64().unwrap();
        assert!((0..=10).contains(&score), "{s}");
    }
    let score = |host: &str| list.iter().find(|s| s["Host"] == host).unwrap()["Score"].as_i64().unwrap();
    assert_eq!(score("c0"), 0, "a node the pod does not fit scores 0");
    assert!(score("n1") > score("n0"), "the stranded GPUs of n1 are the better choice: {scores}");
}

#[tokio::test]
async fn the_last_free_gpu_goes_to_exactly_one_of_many_racing_pods() {
    let app = app();
    // n2 has one GPU; 32 pods filter (all pass), then bind concurrently.
    for i in 0..32 {
        let (_, r) =
            post(&app, "filter", json!({"Pod": gpu_pod(&format!("r{i}"), 1), "NodeNames": ["n2"]})).await;
        assert_eq!(r["NodeNames"], json!(["n2"]));
    }
    let binds = (0..32).map(|i| {
        let app = app.clone();
        tokio::spawn(async move { post(&app, "bind", json!({"PodName": format!("r{i}"), "PodNamespace": "team-a", "PodUID": format!("r{i}"), "Node": "n2"})).await })
    });
    let mut ok = 0;
    for b in binds {
        let (status, r) = b.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        if r["Error"] == "" {
            ok += 1;
        } else {
            assert!(r["Error"].as_str().unwrap().contains("taken since filtering"), "{r}");
        }
    }
    assert_eq!(ok, 1);
    let (_, r) = post(&app, "filter", json!({"Pod": gpu_pod("late", 1), "NodeNames": ["n2"]})).await;
    assert_eq!(r["NodeNames"], json!([]), "the passing list is explicit even when empty");
    assert_eq!(r["FailedNodes"]["n2"], "insufficient free GPU");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_binds_racing_for_the_last_gpu_agree_on_one_winner() {
    // Binds change the cache while filters and prioritizes read it side by side: every filter
    // sees n2 either free or taken, never half-bound, and exactly one bind wins.
    let app = app();
    for i in 0..16 {
        post(&app, "filter", json!({"Pod": gpu_pod(&format!("r{i}"), 1), "NodeNames": ["n2"]})).await;
    }
    let tasks = (0..16).flat_map(|i| {
        let bind = json!({"PodName": format!("r{i}"), "PodNamespace": "team-a", "PodUID": format!("r{i}"), "Node": "n2"});
        let look = json!({"Pod": gpu_pod(&format!("look{i}"), 1), "NodeNames": ["n2", "n0"]});
        [("bind", bind), ("filter", look.clone()), ("prioritize", look)].map(|(verb, body)| {
            let app = app.clone();
            tokio::spawn(async move { (verb, post(&app, verb, body).await) })
        })
    });
    let mut won = 0;
    for t in tasks.collect::<Vec<_>>() {
        let (verb, (status, r)) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{verb}: {r}");
        match verb {
            "bind" => won += usize::from(r["Error"] == ""),
            "filter" => {
                let passed = r["NodeNames"].as_array().unwrap();
                let n2_passed = passed.contains(&json!("n2"));
                let n2_failed = r["FailedNodes"]["n2"] == "insufficient free GPU";
                assert!(n2_passed != n2_failed && passed.contains(&json!("n0")), "{r}");
            }
            _ => assert_eq!(r.as_array().map(Vec::len), Some(2), "{r}"),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock, reason = "holding the read lock across the calls is the point")]
async fn reads_are_answered_while_another_reader_holds_the_cache() {
    // With one lock for every verb, this filter would wait for the held read forever.
    let state = AppState::new(extender(&[])).unwrap();
    let app = router_for(state.clone(), "/scheduler");
    let held = state.reader();
    let body = json!({"Pod": gpu_pod("p1", 1), "NodeNames": ["n0", "n2"]});
    for verb in ["filter", "prioritize"] {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(30), post(&app, verb, body.clone()));
        let (status, r) = answer.await.unwrap_or_else(|_| panic!("{verb} waited behind a reader"));
        assert_eq!(status, StatusCode::OK, "{verb}: {r}");
    }
    drop(held);
}

#[tokio::test]
async fn bind_errors_name_the_problem() {
    let app = app();
    let (_, r) = post(
        &app,
        "bind",
        json!({"PodName": "x", "PodNamespace": "ns", "PodUID": "never-seen", "Node": "n0"}),
    )
    .await;
    assert!(r["Error"].as_str().unwrap().contains("has not filtered a pod"), "{r}");
    post(&app, "filter", json!({"Pod": gpu_pod("p", 1), "NodeNames": ["n0"]})).await;
    let (_, r) =
        post(&app, "bind", json!({"PodName": "p", "PodNamespace": "team-a", "PodUID": "p", "Node": "ghost"}))
            .await;
    assert!(r["Error"].as_str().unwrap().contains("node ghost is not in Gantry's node cache"), "{r}");
}

/// kube-scheduler's extender semantics (`pkg/scheduler/framework/extender.go`,
/// `ProcessPreemption`): the nodes of the reply are the only candidates left, each with the
/// victims the extender accepts, as UIDs.
#[tokio::test]
async fn preempt_lets_kube_scheduler_take_only_the_victims_the_queue_evicts_on_the_planned_node() {
    // The queue evicts uid-v (on n0) for a pod it planned on n0.
    let app = app_evicting(&["uid-v"]);
    let victim = |uid: &str| json!({"metadata": {"name": uid, "uid": uid}});
    let proposed = json!({"n0": {"Pods": [victim("uid-v"), victim("uid-bystander")], "NumPDBViolations": 1}, "n1": {"Pods": [victim("uid-v2")], "NumPDBViolations": 0}});
    let mut planned = gpu_pod("p", 8);
    planned["metadata"]["annotations"] = json!({"gantry.dev/placement": "n0:0,1,2,3,4,5,6,7"});
    let cases = [
        // (pod, victims as sent, expected reply)
        (
            "a planned pod: its node, the queue's victim only",
            planned.clone(),
            json!({"NodeNameToVictims": proposed}),
            json!({"n0": {"Pods": [{"UID": "uid-v"}], "NumPDBViolations": 1}}),
        ),
        (
            "the same with a node cache (UIDs)",
            planned.clone(),
            json!({"NodeNameToMetaVictims": {"n0": {"Pods": [{"UID": "uid-v"}, {"UID": "x"}], "NumPDBViolations": 0}, "n1": {"Pods": [{"UID": "uid-v"}], "NumPDBViolations": 0}}}),
            json!({"n0": {"Pods": [{"UID": "uid-v"}], "NumPDBViolations": 0}}),
        ),
        (
            "a planned pod whose node has no victim of the queue's: no candidate",
            planned.clone(),
            json!({"NodeNameToVictims": {"n0": {"Pods": [victim("uid-bystander")], "NumPDBViolations": 0}}}),
            json!({}),
        ),
        (
            "a pod the queue has not admitted: none",
            gpu_pod("q", 1),
            json!({"NodeNameToVictims": proposed}),
            json!({}),
        ),
    ];
    for (what, pod, victims, want) in cases {
        let mut args = victims.clone();
        args["Pod"] = pod;
        let (status, r) = post(&app, "preempt", args).await;
        assert_eq!(status, StatusCode::OK, "{what}");
        assert_eq!(r, json!({"NodeNameToMetaVictims": want}), "{what}");
    }
}

#[tokio::test]
async fn bad_input_gets_a_400_or_an_error_never_a_panic() {
    let app = app();
    let (status, body) = call(&app, "POST", "/scheduler/filter", b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("ExtenderArgs"));
    let (status, _) = call(&app, "POST", "/scheduler/prioritize", b"[]".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, r) = post(&app, "filter", json!({"NodeNames": ["n0"]})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(r["Error"].as_str().unwrap().contains("Pod is missing"), "{r}");
    let frac = json!({"metadata": {"name": "f"}, "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "0.5"}}}]}});
    let (_, r) = post(&app, "filter", json!({"Pod": frac, "NodeNames": ["n0"]})).await;
    assert!(r["Error"].as_str().unwrap().contains("whole number"), "{r}");
    let (status, _) = call(&app, "POST", "/scheduler/filter", vec![b' '; BODY_LIMIT + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = call(&app, "GET", "/scheduler/filter", Vec::new()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn health_and_prometheus_metrics() {
    let app = app();
    assert_eq!(call(&app, "GET", "/healthz", Vec::new()).await.0, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/readyz", Vec::new()).await.0, StatusCode::OK);
    post(&app, "filter", json!({"Pod": gpu_pod("p", 1), "NodeNames": ["n0"]})).await;
    call(&app, "POST", "/scheduler/filter", b"{".to_vec()).await;
    let (status, body) = call(&app, "GET", "/metrics", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for line in [
        "# TYPE gantry_extender_request_duration_seconds histogram",
        "gantry_extender_requests_total{result=\"ok\",verb=\"filter\"} 1",
        "gantry_extender_requests_total{result=\"error\",verb=\"filter\"} 1",
        "gantry_nodes 4",
        "gantry_gpus 17",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

#[tokio::test]
async fn admitted_pods_pass_only_on_their_planned_node() {
    let app = app();
    let mut p = gpu_pod("m-0", 8);
    p["metadata"]["annotations"] = json!({"gantry.dev/placement": "n1:0,1,2,3,4,5,6,7"});
    let (_, r) = post(&app, "filter", json!({"Pod": p, "NodeNames": ["n0", "n1"]})).await;
    assert_eq!(r["NodeNames"], json!(["n1"]));
    // Unresolvable, so that kube-scheduler never tries preemption there for it.
    assert_eq!(r["FailedAndUnresolvableNodes"]["n0"], "Gantry planned this pod for node n1");
    assert_eq!(r["FailedNodes"], json!({}));
}
