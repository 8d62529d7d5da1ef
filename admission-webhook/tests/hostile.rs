//! Hostile input (`docs/security.md`) gets a fast, clear answer, never a panic:
//! bodies that are not reviews, huge bodies, thousands of containers, quantities like `1e100` and
//! `-9.5Gi`, huge labels. Screening refuses such pods on both paths.

mod common;
use common::*;
use gantry_admission_webhook::Path;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Both paths answer within `limit` and, for a readable review, deny with exactly `message`.
fn denied_fast(body: &str, message: &str, limit: Duration) {
    let w = webhook(None);
    for path in [Path::Mutate, Path::Validate] {
        let start = Instant::now();
        let (status, reply) = call(&w, path, body);
        assert!(start.elapsed() < limit, "{path:?} took {:?}", start.elapsed());
        assert_eq!(status, 200);
        assert_eq!(reply["response"]["allowed"], false);
        assert_eq!(reply["response"]["status"]["code"], 400);
        assert_eq!(reply["response"]["status"]["reason"], "BadRequest");
        assert_eq!(denial(&reply), message, "{path:?}");
    }
}

fn gpu_pod(q: Value) -> String {
    review("colin-coder", pod(json!({}), json!({}), json!({"nvidia.com/gpu": q})))
}

#[test]
fn quantities_that_are_not_gpu_counts() {
    let field = "spec.containers[0].resources.limits[nvidia.com/gpu]";
    let second = Duration::from_secs(1);
    for (q, why) in [
        (json!("1e100"), "\"1e100\" is too large"),
        (json!(1e100), "\"1e+100\" is too large"),
        (json!("-9.5Gi"), "\"-9.5Gi\" is negative or not finite"),
        (json!("2E6024865272343"), "\"2E6024865272343\" is negative or not finite"),
        (json!("9223372036854775808"), "\"9223372036854775808\" is too large"),
        (json!("100E"), "\"100E\" is too large"),
        (json!("lots"), "\"lots\" is not a quantity like \"500m\", \"2\" or \"16Gi\""),
        (json!(true), "true is not a quantity"),
    ] {
        denied_fast(
            &gpu_pod(q.clone()),
            &format!("{field}: {why}; give a whole number of GPUs, e.g. \"1\""),
            second,
        );
    }
}

#[test]
fn thousands_of_containers() {
    let mut p = pod(json!({}), json!({}), json!({"nvidia.com/gpu": 1}));
    let c = p["spec"]["containers"][0].clone();
    p["spec"]["containers"] = Value::Array(vec![c; 5000]);
    denied_fast(
        &review("colin-coder", p),
        "spec.containers: the pod has 5000 containers and init containers; Gantry accepts at most 256",
        Duration::from_secs(1),
    );
}

#[test]
fn huge_labels_and_annotations() {
    let p = pod(json!({"scheduling.x-k8s.io/pod-group": "x".repeat(1 << 20)}), json!({}), json!({}));
    denied_fast(&review("colin-coder", p), "metadata.labels[scheduling.x-k8s.io/pod-group] is 1048576 characters long; label values are at most 63", Duration::from_secs(1));
    let p = pod(json!({}), json!({"a": "y".repeat(300 << 10)}), json!({}));
    denied_fast(
        &review("colin-coder", p),
        "metadata.annotations: 307201 bytes in all; Kubernetes allows at most 262144",
        Duration::from_secs(1),
    );
    // A denial never echoes megabytes: the message is cut.
    let w = webhook(None);
    let (_, reply) = call(&w, Path::Validate, &gpu_pod(json!("9".repeat(1 << 20))));
    assert!(denial(&reply).len() <= 4096 && denial(&reply).ends_with('…'), "{}", denial(&reply).len());
}

#[test]
fn bodies_that_are_not_reviews() {
    let w = webhook(None);
    let deep = "[".repeat(100_000);
    for (body, status, text) in [
        ("", 400, "the body is not JSON (EOF while parsing a value at line 1 column 0); send an AdmissionReview (admission.k8s.io/v1)"),
        (deep.as_str(), 400, "the body is not JSON (recursion limit exceeded at line 1 column 128); send an AdmissionReview (admission.k8s.io/v1)"),
        ("{}", 400, "the body has no \"request\" object; send an AdmissionReview (admission.k8s.io/v1)"),
        (r#"{"request": {"uid": ""}}"#, 400, "request.uid is missing or empty; the API server always sends one"),
    ] {
        for path in [Path::Mutate, Path::Validate] {
            assert_eq!(call(&w, path, body), (status, Value::String(text.into())), "{body:.40}");
        }
    }
    // A readable uid: the answer is a review that denies, naming the problem.
    let (status, reply) =
        call(&w, Path::Validate, r#"{"apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "u"}}"#);
    assert_eq!(status, 200);
    assert_eq!(denial(&reply), "apiVersion \"admission.k8s.io/v1beta1\" is not supported; set admissionReviewVersions: [v1] in the webhook configuration");
    for object in [json!(null), json!("pod"), json!({"spec": {}})] {
        let mut r: Value = serde_json::from_str(&review("colin-coder", json!({}))).unwrap();
        r["request"]["object"] = object.clone();
        let (_, reply) = call(&w, Path::Mutate, &r.to_string());
        assert_eq!(reply["response"]["allowed"], false, "{object}");
        assert_eq!(reply["response"]["status"]["code"], 400, "{object}");
    }
}

/// Finding 5 of the security review: `[[],[],…]` inflates into a tree tens of times its size.
/// A body with more JSON values than any pod review is refused before it is parsed.
#[test]
fn a_body_of_millions_of_tiny_values_is_refused_before_it_is_parsed() {
    let w = webhook(None);
    let mut body = String::from("[");
    body.push_str(&"[],".repeat(1_200_000));
    body.push_str("[]]");
    for path in [Path::Mutate, Path::Validate] {
        let (status, text) = call(&w, path, &body);
        assert_eq!(status, 413, "{text}");
        assert!(text.as_str().unwrap().contains("more than 400000 JSON values"), "{text}");
    }
    // Brackets and commas inside strings are not values; a real review passes the count.
    let review = review(
        "colin-coder",
        held(pod(json!({"a": "[,{"}), json!({"b": "\\\"],,"}), json!({"nvidia.com/gpu": 1}))),
    );
    assert_eq!(
        gantry_serve::bodies::count_json_values(review.as_bytes(), 1_000_000).map(|n| n < 100),
        Ok(true)
    );
    assert_eq!(call(&w, Path::Validate, &review).0, 200);
}
