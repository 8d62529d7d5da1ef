//! The frameworks' objects followed live, against a mocked API server (tower-test): discovery
//! finds which kinds are served, the served ones are listed and watched, and a PyTorchJob's
//! size gates its gang; a second PyTorchJob whose counts make no sense is refused, naming it.
//! Kinds the API server does not serve are never listed.

mod common;

use gantry_core::model::PodRequest;
use gantry_core::tenancy::file;
use gantry_scheduler::controller::Action;
use gantry_scheduler::runner;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TENANTS: &str = "
flavors:
  - name: A100
tenants:
  - name: team-a
    namespaces: [team-a]
    quotas: {A100: {nominal: 16}}
";

fn node(name: &str) -> Value {
    json!({"metadata": {"name": name, "resourceVersion": "1", "labels": {"nvidia.com/gpu.product": "A100"}},
           "status": {"allocatable": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"}}})
}

/// A gated pod of PyTorchJob `job`, as the training operator names and labels it.
fn pod(job: &str, rtype: &str, i: u32) -> Value {
    let name = format!("{job}-{rtype}-{i}");
    json!({"metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}"), "resourceVersion": "1",
                        "labels": {"training.kubeflow.org/operator-name": "pytorchjob-controller", "training.kubeflow.org/job-name": job,
                                   "training.kubeflow.org/replica-type": rtype, "training.kubeflow.org/replica-index": i.to_string()},
                        "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": job, "uid": format!("uid-{job}"), "controller": true}]},
           "spec": {"schedulingGates": [{"name": "gantry.dev/admission"}],
                    "containers": [{"name": "pytorch", "resources": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"nvidia.com/gpu": "4"}}}]},
           "status": {"phase": "Pending"}})
}

fn pytorch_job(name: &str, workers: Value) -> Value {
    json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}"), "resourceVersion": "1"},
           "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1}, "Worker": {"replicas": workers}}}})
}

fn list(api_version: &str, kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

#[tokio::test]
async fn served_frameworks_are_discovered_and_followed_and_their_sizes_gate_the_gangs() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = asked.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let (method, path, query) = (
                request.method().clone(),
                request.uri().path().to_string(),
                request.uri().query().unwrap_or("").to_string(),
            );
            let reply = |status: StatusCode, body: Value| {
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap()
            };
            if method == Method::GET && query.contains("watch=true") {
                open.push(send);
                continue;
            }
            seen.lock().unwrap().push(path.clone());
            let pods = vec![
                pod("bert", "master", 0),
                pod("bert", "worker", 0),
                pod("bert", "worker", 1),
                pod("bad", "master", 0),
            ];
            match path.as_str() {
                "/api/v1/nodes" => send.send_response(reply(StatusCode::OK, list("v1", "NodeList", vec![node("gpu-0"), node("gpu-1")]))),
                "/api/v1/pods" => send.send_response(reply(StatusCode::OK, list("v1", "PodList", pods))),
                "/apis/kubeflow.org/v1" => send.send_response(reply(StatusCode::OK, json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "kubeflow.org/v1",
                    "resources": [{"name": "pytorchjobs", "singularName": "pytorchjob", "namespaced": true, "kind": "PyTorchJob", "verbs": ["list", "watch"]}]}))),
                "/apis/kubeflow.org/v1/pytorchjobs" => send.send_response(reply(StatusCode::OK,
                    list("kubeflow.org/v1", "PyTorchJobList", vec![pytorch_job("bert", json!(2)), pytorch_job("bad", json!(-3))]))),
                _ => send.send_response(reply(StatusCode::NOT_FOUND, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}))),
            }
        }
    });

    let config = common::config(
        file::parse("tenants.yaml", TENANTS).unwrap(),
        vec![PodRequest::whole_gpus(4000, 32768, 4)],
    );
    let (_, live) = common::replica(&config);
    let stores = runner::watch(&client, &live, false);
    tokio::time::timeout(Duration::from_secs(10), async {
        stores.nodes.wait_until_ready().await.unwrap();
        stores.pods.wait_until_ready().await.unwrap();
        // The PyTorchJobs are listed once discovery has found them.
        while !asked.lock().unwrap().iter().any(|p| p == "/apis/kubeflow.org/v1/pytorchjobs") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await
    .expect("the watchers list within 10 s");

    live.rebuild_cache(&stores, config.policy, &config.expected);
    live.rebuild_controller(&stores, &config, runner::now(), "start").unwrap();
    let actions = live.cycle(runner::now());
    let mut started: Vec<&str> = actions
        .iter()
        .filter_map(|a| if let Action::Ungate { pod, .. } = a { Some(pod.name.as_str()) } else { None })
        .collect();
    started.sort_unstable();
    assert_eq!(
        started,
        ["bert-master-0", "bert-worker-0", "bert-worker-1"],
        "bert's gang of 3 starts whole: {actions:?}"
    );
    let refused: Vec<&Action> = actions.iter().filter(|a| matches!(a, Action::Refused { pod, message } if pod.name == "bad-master-0" && message.contains("PyTorchJob team-a/bad") && message.contains("-3"))).collect();
    assert_eq!(refused.len(), 1, "bad's pod is told its job's counts make no sense: {actions:?}");

    // Only served kinds are listed: the other frameworks were asked for by discovery alone.
    let paths = asked.lock().unwrap().clone();
    let listed: Vec<&String> =
        paths.iter().filter(|p| p.starts_with("/apis/") && p.matches('/').count() > 3).collect();
    assert_eq!(listed, [&"/apis/kubeflow.org/v1/pytorchjobs".to_string()], "{paths:?}");
}
