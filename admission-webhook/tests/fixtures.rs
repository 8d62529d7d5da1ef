//! The real GKE Pod CREATE request (`tests/fixtures/`, see its README): classified and patched as
//! intended, answered with every field the API server requires, in the shapes of the upstream
//! reply fixtures, and idempotent.

mod common;
use common::*;
use gantry_admission_webhook::Path;
use serde_json::{json, Value};

fn gke() -> Value {
    serde_json::from_str(&fixture("kube-rs.AdmissionReview-v1.pod-create.json")).unwrap()
}

/// The GKE review with its pod replaced by `f(pod)`, a second pass's input for example.
fn with_pod(f: impl FnOnce(&mut Value)) -> (Value, String) {
    let mut review = gke();
    f(&mut review["request"]["object"]);
    (review["request"]["object"].clone(), review.to_string())
}

/// Every key of `golden` (recursively, objects only) that `reply` must also carry, placeholders
/// aside: checks the reply's keys are spelled as upstream spells them.
fn keys_within(reply: &Value, golden: &Value, at: &str) {
    let (Some(r), Some(g)) = (reply.as_object(), golden.as_object()) else { return };
    for (k, v) in r {
        assert!(g.contains_key(k), "{at}.{k} is not an AdmissionReview field");
        keys_within(v, &g[k], &format!("{at}.{k}"));
    }
}

#[test]
fn the_gke_pod_is_classified_and_patched() {
    let w = webhook(Some("gantry-scheduler"));
    let review = gke();
    let (status, reply) = call(&w, Path::Mutate, &review.to_string());
    assert_eq!(status, 200);
    assert_eq!(reply["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(reply["kind"], "AdmissionReview");
    assert_eq!(reply["response"]["uid"], "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4");
    assert_eq!(reply["response"]["allowed"], true);
    assert_eq!(reply["response"]["patchType"], "JSONPatch");
    // A bare pod without GPUs: batch, its own workload, the tenant's batch class, no gate.
    assert_eq!(
        patch_of(&reply),
        vec![
            json!({"op": "add", "path": "/metadata/labels/gantry.dev~1kind", "value": "batch"}),
            json!({"op": "add", "path": "/metadata/labels/gantry.dev~1tenant", "value": "coder"}),
            json!({"op": "add", "path": "/metadata/annotations/gantry.dev~1workload", "value": "colin-coder/pod"}),
            json!({"op": "add", "path": "/metadata/annotations/gantry.dev~1priority-class", "value": "batch"}),
        ]
    );
    let pod = &review["request"]["object"];
    let patched = apply(pod, &reply);
    let mut want = pod.clone();
    want["metadata"]["labels"] =
        json!({"app": "echo-server", "gantry.dev/kind": "batch", "gantry.dev/tenant": "coder"});
    want["metadata"]["annotations"]["gantry.dev/workload"] = json!("colin-coder/pod");
    want["metadata"]["annotations"]["gantry.dev/priority-class"] = json!("batch");
    assert_eq!(patched, want);

    // A second pass over the patched pod changes nothing, and the final pod is valid.
    let (_, again) = with_pod(|p| *p = patched.clone());
    let (_, reply) = call(&w, Path::Mutate, &again);
    assert_eq!(reply["response"], json!({"uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4", "allowed": true}));
    let (_, reply) = call(&w, Path::Validate, &again);
    assert_eq!(reply["response"], json!({"uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4", "allowed": true}));
}

#[test]
fn the_gke_pod_asking_for_gpus_is_gated_and_sent_to_gantrys_scheduler() {
    let w = webhook(Some("gantry-scheduler"));
    let (pod, body) =
        with_pod(|p| p["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "2"}}));
    let (_, reply) = call(&w, Path::Mutate, &body);
    let ops = patch_of(&reply);
    assert_eq!(
        ops[4],
        json!({"op": "add", "path": "/spec/schedulingGates", "value": [{"name": "gantry.dev/admission"}]})
    );
    assert_eq!(ops[5], json!({"op": "replace", "path": "/spec/schedulerName", "value": "gantry-scheduler"}));
    assert_eq!(ops.len(), 6);
    let patched = apply(&pod, &reply);
    assert_eq!(patched["spec"]["schedulingGates"], json!([{"name": "gantry.dev/admission"}]));
    assert_eq!(patched["spec"]["schedulerName"], "gantry-scheduler");
    let (_, again) = with_pod(|p| *p = patched);
    let (_, reply) = call(&w, Path::Mutate, &again);
    assert!(reply["response"].get("patch").is_none(), "idempotent: {reply}");
    // 2 GPUs is within coder's nominal 4 A100: no warning.
    let (_, reply) = call(&w, Path::Validate, &again);
    assert_eq!(reply["response"], json!({"uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4", "allowed": true}));
}

#[test]
fn replies_have_the_fields_and_shapes_the_api_server_reads() {
    let golden: Value =
        serde_json::from_str(&fixture("k8s-api-testdata.admission.k8s.io.v1.AdmissionReview.json")).unwrap();
    let grafana_patch: Value =
        serde_json::from_str(&fixture("grafana-app-sdk.response.jsonpatch.json")).unwrap();
    let grafana_reject: Value =
        serde_json::from_str(&fixture("grafana-app-sdk.response.reject-409.json")).unwrap();
    let allow: Value = serde_json::from_str(&fixture("controller-runtime.response.allow-v1.json")).unwrap();
    let w = webhook(None);

    let (_, patched) = call(&w, Path::Mutate, &gke().to_string());
    let (_, denied) = with_pod(|p| p["metadata"]["labels"]["gantry.dev/tenant"] = json!("search"));
    let (_, denied) = call(&w, Path::Validate, &denied);
    let mut other = gke();
    other["request"]["namespace"] = json!("elsewhere");
    let (_, allowed) = call(&w, Path::Validate, &other.to_string());

    for reply in [&patched, &denied, &allowed] {
        keys_within(reply, &golden, "");
        assert_eq!(
            (reply["apiVersion"].as_str(), reply["kind"].as_str()),
            (allow["apiVersion"].as_str(), allow["kind"].as_str())
        );
        assert_eq!(reply["response"]["uid"], gke()["request"]["uid"], "the uid is echoed");
        assert!(reply["response"]["allowed"].is_boolean());
    }
    // The patch reply: as grafana's, a base64 string and patchType JSONPatch.
    assert_eq!(patched["response"]["patchType"], grafana_patch["response"]["patchType"]);
    assert!(patched["response"]["patch"].is_string() && grafana_patch["response"]["patch"].is_string());
    // The denial: status with code, reason and message, as grafana's (which uses 409).
    let status = &denied["response"]["status"];
    assert_eq!(denied["response"]["allowed"], false);
    assert_eq!((status["code"].as_i64(), status["reason"].as_str()), (Some(403), Some("Forbidden")));
    for key in ["code", "reason", "message"] {
        assert!(
            grafana_reject["response"]["status"].get(key).is_some() && status.get(key).is_some(),
            "{key}"
        );
    }
    // Validating replies never carry patch fields; an unmanaged namespace's pod is untouched.
    for reply in [&denied, &allowed] {
        assert!(reply["response"].get("patch").is_none() && reply["response"].get("patchType").is_none());
    }
    let (_, untouched) = call(&w, Path::Mutate, &other.to_string());
    assert_eq!(
        untouched["response"],
        json!({"uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4", "allowed": true})
    );
}
