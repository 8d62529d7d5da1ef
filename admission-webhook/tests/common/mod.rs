//! Helpers shared by the webhook's tests: the test tenancy, review bodies and decoded replies.
#![allow(dead_code)]

use base64::Engine;
use gantry_admission_webhook::{AdmissionPolicy, Path, Webhook};
use serde_json::{json, Value};

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn policy(scheduler_name: Option<&str>) -> AdmissionPolicy {
    let tenancy = gantry_core::tenancy::file::parse("tenants.yaml", &fixture("tenants.yaml"))
        .expect("the test tenancy loads");
    AdmissionPolicy::new(tenancy, scheduler_name.map(str::to_string)).expect("a policy")
}

pub fn webhook(scheduler_name: Option<&str>) -> Webhook {
    Webhook::new(policy(scheduler_name)).expect("a webhook")
}

/// A Pod CREATE review of `pod` in `namespace`.
pub fn review(namespace: &str, pod: Value) -> String {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "uid-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace, "operation": "CREATE", "object": pod}})
    .to_string()
}

/// A Pod UPDATE review from `old` to `new` in `namespace`, made by `user`.
pub fn update_review(namespace: &str, user: &str, old: Value, new: Value) -> String {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "uid-2", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace, "operation": "UPDATE", "userInfo": {"username": user},
        "object": new, "oldObject": old}})
    .to_string()
}

/// A pod in `colin-coder` with `labels`, `annotations`, owners and one container's limits.
pub fn pod(labels: Value, annotations: Value, limits: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "w-", "namespace": "colin-coder", "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": "x", "resources": {"limits": limits}}], "schedulerName": "default-scheduler"}})
}

/// `pod` as the mutating webhook leaves a GPU pod: held by Gantry's gate (what `/validate` sees).
pub fn held(mut pod: Value) -> Value {
    pod["spec"]["schedulingGates"] = json!([{"name": "gantry.dev/admission"}]);
    pod
}

/// Posts `body` to `path`; the HTTP status and the reply as JSON (a string for non-JSON replies).
pub fn call(w: &Webhook, path: Path, body: &str) -> (u16, Value) {
    let (status, text, _) = w.review(path, body.as_bytes());
    (status.as_u16(), serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The decoded JSON Patch of a reply (empty without one).
pub fn patch_of(reply: &Value) -> Vec<Value> {
    match reply["response"]["patch"].as_str() {
        None => Vec::new(),
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
            serde_json::from_slice(&bytes).expect("a JSON array")
        }
    }
}

/// Applies a reply's patch to `pod` as the API server would.
pub fn apply(pod: &Value, reply: &Value) -> Value {
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(patch_of(reply))).expect("an RFC 6902 patch");
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).expect("the patch applies");
    out
}

/// The denial message of a reply, or "" when allowed.
pub fn denial(reply: &Value) -> String {
    reply["response"]["status"]["message"].as_str().unwrap_or_default().to_string()
}
