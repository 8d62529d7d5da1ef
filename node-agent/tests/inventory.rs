//! The inventory on the Node through a mocked API server (tower-test): the agent reads its Node
//! once, patches only what differs, sends nothing when nothing changed, and backs off after a
//! failed call instead of retrying every pass.

use gantry_api::keys::{GPU_INVENTORY_ANNOTATION, GPU_PRODUCT_LABEL, GPU_UNHEALTHY_ANNOTATION};
use gantry_node_agent::agent::State;
use gantry_node_agent::inventory::Publisher;
use gantry_node_agent::sample::{Frame, XidEvent};
use gantry_node_agent::source::{GpuSource, Replay};
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

type Calls = Arc<Mutex<Vec<(Method, String, String, Value)>>>;

/// A mocked API server holding one Node's metadata: answers GET and merge PATCH as the API server
/// would, or 500 while `fail` is set; records every call (method, path, content type, body).
fn api(calls: Calls, fail: Arc<Mutex<bool>>) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        let mut node = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                              "metadata": {"name": "gpu-node-1", "resourceVersion": "7", "labels": {"kubernetes.io/hostname": "gpu-node-1"}}});
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let kind = request
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            calls.lock().unwrap().push((method.clone(), path, kind, body.clone()));
            if *fail.lock().unwrap() {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcdserver: request timed out", "code": 500});
                send.send_response(
                    Response::builder()
                        .status(StatusCode::INTERNAL_SERVER_ERROR)
                        .body(Body::from(status.to_string().into_bytes()))
                        .unwrap(),
                );
                continue;
            }
            if method == Method::PATCH {
                for map in ["labels", "annotations"] {
                    for (k, v) in body["metadata"][map].as_object().cloned().unwrap_or_default() {
                        if v.is_null() {
                            node["metadata"][map].as_object_mut().map(|m| m.remove(&k));
                        } else {
                            node["metadata"][map][&k] = v;
                        }
                    }
                }
            }
            send.send_response(
                Response::builder().status(200).body(Body::from(node.to_string().into_bytes())).unwrap(),
            );
        }
    });
    Client::new(service, "default")
}

#[tokio::test]
async fn patches_only_what_changed_and_backs_off_after_a_failure() {
    let calls: Calls = Arc::default();
    let fail = Arc::new(Mutex::new(false));
    let mut publisher = Publisher::new(api(calls.clone(), fail.clone()), "gpu-node-1");
    let mut replay = Replay::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node-agent/a100x4.json"),
    )
    .unwrap();
    let mut state = State::default();
    let frame = replay.sample().unwrap();
    state.take(frame.clone(), 1);

    // First pass: read the Node, then one merge patch with the label and the inventory.
    assert_eq!(publisher.publish(&state.inventory()).await, Ok(true));
    {
        let c = calls.lock().unwrap();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!((&c[0].0, c[0].1.as_str()), (&Method::GET, "/api/v1/nodes/gpu-node-1"));
        assert_eq!(
            (&c[1].0, c[1].1.as_str(), c[1].2.as_str()),
            (&Method::PATCH, "/api/v1/nodes/gpu-node-1", "application/merge-patch+json")
        );
        let patch = &c[1].3["metadata"];
        assert_eq!(patch["labels"], json!({GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB"}));
        let inventory: Value =
            serde_json::from_str(patch["annotations"][GPU_INVENTORY_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(inventory["gpus"].as_array().unwrap().len(), 4);
        assert!(patch["annotations"].get(GPU_UNHEALTHY_ANNOTATION).is_none());
    }
    // The same inventory again (utilization changed, the inventory did not): no call at all.
    state.take(replay.sample().unwrap(), 2);
    assert_eq!(publisher.publish(&state.inventory()).await, Ok(false));
    assert_eq!(calls.lock().unwrap().len(), 2);

    // GPU 2 fails: one patch, with only what changed.
    let mut failing = frame.clone();
    failing.xids = vec![XidEvent { uuid: frame.gpus[2].uuid.clone(), xid: 48 }];
    state.take(failing, 3);
    assert_eq!(publisher.publish(&state.inventory()).await, Ok(true));
    {
        let c = calls.lock().unwrap();
        assert_eq!(c.len(), 3);
        let annotations = c[2].3["metadata"]["annotations"].as_object().unwrap();
        assert_eq!(annotations[GPU_UNHEALTHY_ANNOTATION], "2");
        assert!(annotations[GPU_INVENTORY_ANNOTATION]
            .as_str()
            .unwrap()
            .contains("XID 48: double-bit ECC error"));
        assert!(c[2].3["metadata"].get("labels").is_none(), "the label did not change");
    }

    // The API server fails: an error that says what, then no call until the backoff ends.
    *fail.lock().unwrap() = true;
    state.take(Frame { gpus: frame.gpus[..2].to_vec(), xids: vec![] }, 4);
    let err = publisher.publish(&state.inventory()).await.unwrap_err();
    assert!(
        err.contains("cannot write the GPU inventory on Node gpu-node-1")
            && err.contains("etcdserver: request timed out"),
        "{err}"
    );
    let before = calls.lock().unwrap().len();
    assert_eq!(publisher.publish(&state.inventory()).await, Ok(false));
    assert_eq!(calls.lock().unwrap().len(), before, "backing off");
    // After the backoff it reads the Node again (it may have changed meanwhile) and patches.
    *fail.lock().unwrap() = false;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(publisher.publish(&state.inventory()).await, Ok(true));
    let c = calls.lock().unwrap();
    assert_eq!(c[before].0, Method::GET);
    assert_eq!(c[before + 1].3["metadata"]["annotations"][GPU_UNHEALTHY_ANNOTATION], "2,3");
}
