//! Fuzzes the webhook's whole answer to one request body, [`Webhook::review`]: the
//! AdmissionReview decoder, the hostile-pod screening, the policy lookups and both handlers.
//! Every input is sent to `/mutate` and to `/validate`.
//!
//! Beyond "no panic", each answer must be what the API server accepts:
//! - HTTP 200 answers are an AdmissionReview v1 whose `response.uid` is the request's;
//! - HTTP 400 answers are plain text (the body had no readable uid);
//! - a validating reply never carries `patch`/`patchType`; a mutating one carries both or
//!   neither, and its patch is base64 of an RFC 6902 patch that applies to the request's object.

#![no_main]

use base64::Engine;
use gantry_admission_webhook::inspect::set_namespace;
use gantry_admission_webhook::{AdmissionPolicy, Path, Webhook};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::LazyLock;

static WEBHOOK: LazyLock<Webhook> = LazyLock::new(|| {
    let tenancy = gantry_core::tenancy::file::parse("tenants.yaml", include_str!("../../tests/fixtures/tenants.yaml"))
        .expect("the test tenancy loads");
    Webhook::new(AdmissionPolicy::new(tenancy, Some("gantry".into())).expect("a policy")).expect("a webhook")
});

fuzz_target!(|data: &[u8]| {
    for path in [Path::Mutate, Path::Validate] {
        check(path, data);
    }
});

fn check(path: Path, data: &[u8]) {
    let (status, text, _decision) = WEBHOOK.review(path, data);
    match status.as_u16() {
        200 => {}
        400 => {
            assert!(serde_json::from_str::<Value>(&text).map_or(true, |v| !v.is_object()), "a 400 answer is text: {text}");
            return;
        }
        other => panic!("unexpected status {other}: {text}"),
    }
    let reply: Value = serde_json::from_str(&text).expect("a 200 answer is JSON");
    assert_eq!(reply["apiVersion"], "admission.k8s.io/v1", "{text}");
    assert_eq!(reply["kind"], "AdmissionReview", "{text}");
    let response = &reply["response"];
    // The decoder found a uid, so the body is JSON with request.uid a non-empty string.
    let request: Value = serde_json::from_slice(data).expect("a body answered with 200 is JSON");
    assert_eq!(response["uid"], request["request"]["uid"], "the uid is echoed");
    assert!(response["allowed"].is_boolean(), "{text}");
    let patch = response.get("patch");
    assert_eq!(patch.is_some(), response.get("patchType").is_some(), "patch and patchType go together: {text}");
    if path == Path::Validate {
        assert!(patch.is_none(), "a validating reply never patches: {text}");
        return;
    }
    let Some(patch) = patch else { return };
    assert_eq!(response["patchType"], "JSONPatch");
    assert_eq!(response["allowed"], true, "only an allowed pod is patched: {text}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(patch.as_str().expect("base64 text")).expect("valid base64");
    let ops: json_patch::Patch = serde_json::from_slice(&bytes).expect("an RFC 6902 patch");
    // Apply it as the API server would: to the object, with the request's namespace when it has none.
    let mut object = request["request"]["object"].clone();
    set_namespace(&mut object, request["request"]["namespace"].as_str().unwrap_or_default());
    if let Err(e) = json_patch::patch(&mut object, &ops) {
        panic!("the patch does not apply to the object: {e}\npatch: {}", String::from_utf8_lossy(&bytes));
    }
}
