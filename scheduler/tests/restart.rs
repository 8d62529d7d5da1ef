//! A restart against a mocked API server (tower-test): the watchers list nodes and pods, the new
//! controller is rebuilt from what the API server returned alone, and the only calls it then
//! makes are for the workload that was waiting: the one admitted before the restart is not
//! admitted again, and nobody is evicted.

mod common;

use gantry_core::model::PodRequest;
use gantry_core::tenancy::file;
use gantry_scheduler::adapter::Adapter;
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
    quotas: {A100: {nominal: 8}}
  - name: team-b
    namespaces: [team-b]
    quotas: {A100: {nominal: 8}}
";

fn node(name: &str) -> Value {
    json!({"metadata": {"name": name, "resourceVersion": "1", "labels": {"nvidia.com/gpu.product": "A100"},
                        "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
           "status": {"allocatable": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"}}})
}

fn pod(ns: &str, name: &str, gated: bool, placement: Option<&str>) -> Value {
    let mut p = json!({"metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"), "resourceVersion": "1"},
        "spec": {"containers": [{"name": "main", "command": ["python", "train.py"], "env": [{"name": "SECRET_LOOKING", "value": "x"}],
                                 "resources": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"nvidia.com/gpu": "8"}}}]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}});
    if gated {
        p["spec"]["schedulingGates"] = json!([{"name": "gantry.dev/admission"}]);
    }
    if let Some(at) = placement {
        p["metadata"]["annotations"] = json!({"gantry.dev/placement": at});
        p["spec"]["nodeName"] = json!(at.split(':').next().unwrap());
        p["status"]["phase"] = json!("Running");
    }
    p
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

#[tokio::test]
async fn a_restart_lists_rebuilds_and_admits_only_what_waited() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    // The API server: lists answer at once; watches stay open with nothing to say; no framework
    // (PodGroups, training jobs, ...) is installed, which discovery is told; anything else is
    // recorded (method, path, body) and answered with the pod.
    let calls: Arc<Mutex<Vec<(Method, String, Value)>>> = Arc::default();
    let discovered: Arc<Mutex<Vec<String>>> = Arc::default();
    let (recorded, asked) = (calls.clone(), discovered.clone());
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
            match (method.clone(), path.as_str()) {
                (Method::GET, "/api/v1/nodes") => send.send_response(reply(
                    StatusCode::OK,
                    list("NodeList", vec![node("gpu-0"), node("gpu-1")]),
                )),
                (Method::GET, "/api/v1/pods") => send.send_response(reply(
                    StatusCode::OK,
                    list(
                        "PodList",
                        vec![
                            pod("team-a", "before", false, Some("gpu-0:0,1,2,3,4,5,6,7")),
                            pod("team-b", "waiting", true, None),
                        ],
                    ),
                )),
                (Method::GET, p) if p.starts_with("/apis/") && p.matches('/').count() == 3 => {
                    asked.lock().unwrap().push(p.to_string());
                    send.send_response(reply(
                    StatusCode::NOT_FOUND,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"}),
                ))
                }
                _ => {
                    let bytes = request.into_body().collect_bytes().await.unwrap();
                    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    recorded.lock().unwrap().push((method, path, body));
                    send.send_response(reply(StatusCode::OK, pod("team-b", "waiting", false, None)));
                }
            }
        }
    });

    let config = common::config(
        file::parse("tenants.yaml", TENANTS).unwrap(),
        vec![PodRequest::whole_gpus(8000, 65536, 1)],
    );
    let (state, live) = common::replica(&config);
    let stores = runner::watch(&client, &live, false);
    tokio::time::timeout(Duration::from_secs(10), async {
        stores.nodes.wait_until_ready().await.unwrap();
        stores.pods.wait_until_ready().await.unwrap();
    })
    .await
    .expect("the watchers list within 10 s");
    // What the stores keep is stripped of what Gantry never reads.
    let kept =
        stores.pods.state().into_iter().find(|p| p.metadata.name.as_deref() == Some("waiting")).unwrap();
    let container = &kept.spec.as_ref().unwrap().containers[0];
    assert!(container.command.is_none() && container.env.is_none());
    assert_eq!(kept.status.as_ref().unwrap().conditions, None);
    assert!(stores.nodes.state().iter().all(|n| n
        .metadata
        .managed_fields
        .as_ref()
        .is_none_or(Vec::is_empty)));

    live.rebuild_cache(&stores, config.policy, &config.expected);
    live.rebuild_controller(&stores, &config, runner::now(), "start").unwrap();
    let actions = live.cycle(runner::now());
    let adapter = Adapter::new(client.clone(), Some("gantry-1".into()));
    for a in &actions {
        adapter.apply(a).await.unwrap();
    }

    let calls = calls.lock().unwrap().clone();
    let writes: Vec<(Method, String)> = calls.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(
        writes,
        [
            (Method::PATCH, "/api/v1/namespaces/team-b/pods/waiting".to_string()),
            (Method::PATCH, "/api/v1/namespaces/team-b/pods/waiting/status".to_string()),
        ],
        "only the waiting pod is ungated, on the free node: {actions:?}"
    );
    let placed = gantry_api::placement::Planned::parse(
        calls[0].2["metadata"]["annotations"]["gantry.dev/placement"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!((placed.node.as_str(), placed.gpus.as_slice()), ("gpu-1", &[0, 1, 2, 3, 4, 5, 6, 7][..]));
    assert!(
        placed.at.is_some_and(|at| (at - runner::now()).abs() < 60),
        "the admission time is recorded: {placed:?}"
    );
    assert!(actions.iter().all(|a| !matches!(a, Action::Evict { .. })));
    assert_eq!(
        state.extender().bound_pods(),
        1,
        "the pod admitted before the restart holds its room in the cache"
    );
    // Discovery asked once for each framework's group and version, and read nothing it lacks.
    let mut asked = discovered.lock().unwrap().clone();
    let n = asked.len();
    asked.sort();
    asked.dedup();
    assert_eq!(n, asked.len(), "each group and version asked once: {asked:?}");
    for f in gantry_api::gang::FRAMEWORKS {
        assert!(
            asked.contains(&format!("/apis/{}/{}", f.group, f.versions[0])),
            "{} not looked for: {asked:?}",
            f.kind
        );
    }
}
