//! The inventory on the Node through a mocked API server (tower-test): the agent reads its Node
//! once, patches only what differs, sends nothing when nothing changed, and backs off after a
//! failed call instead of retrying every pass; the idle pods are patched on transitions only.

use gantry_api::keys::{
    GPU_IDLE_CHECKED_AT_ANNOTATION, GPU_IDLE_PODS_ANNOTATION, GPU_INVENTORY_ANNOTATION, GPU_PRODUCT_LABEL,
    GPU_UNHEALTHY_ANNOTATION,
};
use gantry_node_agent::agent::State;
use gantry_node_agent::inventory::{PublishError, Publisher};
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
    assert_eq!(publisher.publish(&state.inventory()).await.map_err(|e| e.to_string()), Ok(true));
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
    assert_eq!(publisher.publish(&state.inventory()).await.map_err(|e| e.to_string()), Ok(false));
    assert_eq!(calls.lock().unwrap().len(), 2);

    // GPU 2 fails: one patch, with only what changed.
    let mut failing = frame.clone();
    failing.xids = vec![XidEvent { uuid: frame.gpus[2].uuid.clone(), xid: 48 }];
    state.take(failing, 3);
    assert_eq!(publisher.publish(&state.inventory()).await.map_err(|e| e.to_string()), Ok(true));
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
    assert!(matches!(err, PublishError::WriteNode { source: kube::Error::Api(_), .. }), "{err:?}");
    let err = err.to_string();
    assert!(
        err.contains("cannot write the GPU inventory on Node gpu-node-1")
            && err.contains("etcdserver: request timed out"),
        "{err}"
    );
    let before = calls.lock().unwrap().len();
    assert_eq!(publisher.publish(&state.inventory()).await.map_err(|e| e.to_string()), Ok(false));
    assert_eq!(calls.lock().unwrap().len(), before, "backing off");
    // After the backoff it reads the Node again (it may have changed meanwhile) and patches.
    *fail.lock().unwrap() = false;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(publisher.publish(&state.inventory()).await.map_err(|e| e.to_string()), Ok(true));
    let c = calls.lock().unwrap();
    assert_eq!(c[before].0, Method::GET);
    assert_eq!(c[before + 1].3["metadata"]["annotations"][GPU_UNHEALTHY_ANNOTATION], "2,3");
}

/// One pass of the a100x4 capture at `at` with GPU i at `util[i]` percent and the given holders
/// (GPU index → namespace, pod), fed to the state as the agent's loop does.
fn pass(state: &mut State, frame: &Frame, at: i64, util: [Option<u32>; 4], holders: &[(usize, &str, &str)]) {
    let mut frame = frame.clone();
    for (g, u) in frame.gpus.iter_mut().zip(util) {
        g.gpu_utilization_percent = u;
    }
    state.owners = holders
        .iter()
        .map(|(i, ns, pod)| {
            (frame.gpus[*i].uuid.clone(), (ns.to_string(), pod.to_string(), "main".to_string()))
        })
        .collect();
    state.take(frame, at);
    state.observe_idle(at, true);
}

/// The idle pods through the same publisher: one merge patch per transition with exactly the
/// two annotations (the idle pods and their confirmation), `null` when none is idle; while pods
/// stay idle, nothing but the confirmation once a minute; and a restarted agent replacing what
/// the old one wrote with later times.
#[tokio::test]
async fn idle_pods_are_patched_on_transitions_only() {
    const T0: i64 = 1_796_000_000;
    let calls: Calls = Arc::default();
    let client = api(calls.clone(), Arc::new(Mutex::new(false)));
    let mut publisher = Publisher::new(client.clone(), "gpu-node-1");
    let mut replay = Replay::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node-agent/a100x4.json"),
    )
    .unwrap();
    let frame = replay.sample().unwrap();
    let nb = (0, "team-a", "nb-0");
    let nb1 = (1, "team-a", "nb-0");
    let train = (2, "team-b", "train-0");
    let mut state = State::default();
    let last_patch = |calls: &Calls| calls.lock().unwrap().last().map(|c| (c.0.clone(), c.3.clone()));
    // The idle pods and the pass that confirmed them (both removed when none is idle).
    let idle_patch = |text: Value, at: Option<i64>| {
        let stamp = at.map_or(Value::Null, |t| json!(t.to_string()));
        json!({"metadata": {"annotations": {GPU_IDLE_PODS_ANNOTATION: text, GPU_IDLE_CHECKED_AT_ANNOTATION: stamp}}})
    };

    // nb-0 holds GPUs 0 and 1, GPU 1 busy; train-0 busy; GPU 3 idle but no pod's: none idle,
    // and the first patch (the inventory) does not name the absent annotation.
    pass(&mut state, &frame, T0, [Some(0), Some(30), Some(80), Some(0)], &[nb, nb1, train]);
    assert_eq!(publisher.publish(&state.node_desired()).await.map_err(|e| e.to_string()), Ok(true));
    let first = last_patch(&calls).unwrap().1;
    assert!(first["metadata"]["annotations"].get(GPU_IDLE_PODS_ANNOTATION).is_none(), "{first}");
    assert_eq!(calls.lock().unwrap().len(), 2);

    // Each pass: the GPUs, and the exact patch expected (None: no call).
    type Step<'a> = (&'a str, [Option<u32>; 4], Vec<(usize, &'a str, &'a str)>, Option<Value>);
    let steps: Vec<Step> = vec![
        (
            "both of nb-0's GPUs idle",
            [Some(0), Some(0), Some(80), Some(0)],
            vec![nb, nb1, train],
            Some(idle_patch(json!(format!(r#"{{"team-a/nb-0":{}}}"#, T0 + 1)), Some(T0 + 1))),
        ),
        ("nothing changed", [Some(0), Some(0), Some(80), Some(0)], vec![nb, nb1, train], None),
        (
            "train-0's utilization unknown: still not idle",
            [Some(0), Some(0), None, Some(0)],
            vec![nb, nb1, train],
            None,
        ),
        (
            "train-0 idle too",
            [Some(0), Some(0), Some(0), Some(0)],
            vec![nb, nb1, train],
            Some(idle_patch(
                json!(format!(r#"{{"team-a/nb-0":{},"team-b/train-0":{}}}"#, T0 + 1, T0 + 4)),
                Some(T0 + 4),
            )),
        ),
        (
            "nb-0 busy again on one GPU",
            [Some(0), Some(12), Some(0), Some(0)],
            vec![nb, nb1, train],
            Some(idle_patch(json!(format!(r#"{{"team-b/train-0":{}}}"#, T0 + 4)), Some(T0 + 5))),
        ),
        (
            "train-0 leaves: none idle",
            [Some(0), Some(12), Some(0), Some(0)],
            vec![nb, nb1],
            Some(idle_patch(Value::Null, None)),
        ),
        ("still none idle", [Some(0), Some(12), Some(0), Some(0)], vec![nb, nb1], None),
        (
            "nb-0 idle again: a new stretch",
            [Some(0), Some(0), Some(0), Some(0)],
            vec![nb, nb1],
            Some(idle_patch(json!(format!(r#"{{"team-a/nb-0":{}}}"#, T0 + 8)), Some(T0 + 8))),
        ),
    ];
    for (i, (what, util, holders, want)) in steps.into_iter().enumerate() {
        let before = calls.lock().unwrap().len();
        pass(&mut state, &frame, T0 + 1 + i as i64, util, &holders);
        assert_eq!(
            publisher.publish(&state.node_desired()).await.map_err(|e| e.to_string()),
            Ok(want.is_some()),
            "{what}"
        );
        let c = calls.lock().unwrap();
        match want {
            None => assert_eq!(c.len(), before, "{what}: no call"),
            Some(body) => {
                assert_eq!(c.len(), before + 1, "{what}: one call");
                let (method, path, kind, sent) = &c[before];
                assert_eq!(
                    (method, path.as_str(), kind.as_str()),
                    (&Method::PATCH, "/api/v1/nodes/gpu-node-1", "application/merge-patch+json"),
                    "{what}"
                );
                assert_eq!(sent, &body, "{what}");
            }
        }
    }

    // Nothing changes for a minute: the agent confirms the same evidence, and only that.
    for (at, want) in [
        (T0 + 67, None),
        (
            T0 + 68,
            Some(
                json!({"metadata": {"annotations": {GPU_IDLE_CHECKED_AT_ANNOTATION: (T0 + 68).to_string()}}}),
            ),
        ),
        (T0 + 69, None),
    ] {
        let before = calls.lock().unwrap().len();
        pass(&mut state, &frame, at, [Some(0), Some(0), Some(0), Some(0)], &[nb, nb1]);
        let sent = publisher.publish(&state.node_desired()).await.map_err(|e| e.to_string());
        assert_eq!(sent, Ok(want.is_some()), "at {at}");
        let c = calls.lock().unwrap();
        assert_eq!(c.len() - before, usize::from(want.is_some()), "at {at}");
        if let Some(body) = want {
            assert_eq!(c[before].3, body, "at {at}");
        }
    }

    // The agent restarts at T0 + 100: a new state and publisher read the Node, which still says
    // nb-0 has been idle since T0 + 8, and replace it with the first pass after the restart.
    let mut state = State::default();
    let mut publisher = Publisher::new(client, "gpu-node-1");
    let before = calls.lock().unwrap().len();
    pass(&mut state, &frame, T0 + 100, [Some(0), Some(0), Some(0), Some(0)], &[nb, nb1]);
    assert_eq!(publisher.publish(&state.node_desired()).await.map_err(|e| e.to_string()), Ok(true));
    let c = calls.lock().unwrap();
    assert_eq!(c.len(), before + 2, "read, then one patch");
    assert_eq!(c[before].0, Method::GET);
    assert_eq!(
        c[before + 1].3,
        idle_patch(json!(format!(r#"{{"team-a/nb-0":{}}}"#, T0 + 100)), Some(T0 + 100))
    );
    // What the Node now holds reads back as the tracker's map, confirmed at the restart.
    let node = json!({"metadata": {"name": "gpu-node-1", "annotations": c[before + 1].3["metadata"]["annotations"]}});
    let read = gantry_api::node::idle_pods(&node).unwrap();
    assert_eq!((read.pods, read.checked_at), (state.idle_since.idle(), Some(T0 + 100)));
}

/// Pods whose devices the pass has no utilization for (a MIG slice, a GPU gone from the frame)
/// are never idle, and a pass without attribution forgets every idle pod.
#[test]
fn unsampled_devices_and_lost_attribution_are_never_idle() {
    let mut replay = Replay::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node-agent/a100x4.json"),
    )
    .unwrap();
    let mut frame = replay.sample().unwrap();
    for g in &mut frame.gpus {
        g.gpu_utilization_percent = Some(0);
    }
    let owners = [
        (frame.gpus[0].uuid.clone(), ("team-a".to_string(), "nb-0".to_string(), "main".to_string())),
        (
            "MIG-4f1c2d2e-0000-5000-8000-000000000001".to_string(),
            ("team-a".into(), "nb-0".into(), "main".into()),
        ),
        (frame.gpus[1].uuid.clone(), ("team-a".to_string(), "nb-1".to_string(), "main".to_string())),
    ]
    .into_iter()
    .collect();
    let mut state = State { owners, ..State::default() };
    state.take(frame.clone(), 10);
    assert!(state.observe_idle(10, true));
    let idle: Vec<String> = state.idle_since.idle().into_keys().collect();
    assert_eq!(idle, ["team-a/nb-1"], "nb-0's MIG slice has no utilization: not idle");

    // Pod-resources failed at this pass: nobody is idle until the holders are known again, and
    // then only since that pass.
    state.take(frame.clone(), 11);
    assert!(state.observe_idle(11, false));
    assert_eq!(
        state.node_desired().annotations.get(GPU_IDLE_PODS_ANNOTATION),
        Some(&None),
        "removed from the Node"
    );
    state.take(frame, 12);
    assert!(state.observe_idle(12, true));
    assert_eq!(state.idle_since.idle().into_iter().collect::<Vec<_>>(), [("team-a/nb-1".to_string(), 12)]);
}
