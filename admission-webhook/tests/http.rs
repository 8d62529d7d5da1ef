//! The HTTP service: routes, the 8 MiB body limit, health and the Prometheus metrics.

mod common;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use gantry_admission_webhook::router;
use http_body_util::BodyExt;
use serde_json::json;
use std::sync::Arc;
use tower::ServiceExt;

async fn send(app: &axum::Router, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn serves_reviews_health_and_metrics() {
    let app = router(Arc::new(webhook(None)));
    let body =
        review("colin-coder", pod(json!({}), json!({}), json!({"nvidia.com/gpu": "0.5"}))).into_bytes();
    let (status, reply) = send(&app, "POST", "/mutate", body.clone()).await;
    assert_eq!(status, 200);
    assert!(reply.contains("\"patchType\":\"JSONPatch\""), "{reply}");
    let (_, reply) = send(&app, "POST", "/validate", body).await;
    assert!(reply.contains("\"allowed\":false"), "{reply}");
    assert_eq!(send(&app, "GET", "/healthz", vec![]).await.0, 200);
    assert_eq!(send(&app, "GET", "/readyz", vec![]).await.0, 200);
    let (status, text) = send(&app, "POST", "/mutate", b"nope".to_vec()).await;
    assert_eq!(status, 400);
    assert!(text.starts_with("the body is not JSON"), "{text}");

    let (status, metrics) = send(&app, "GET", "/metrics", vec![]).await;
    assert_eq!(status, 200);
    for line in [
        "gantry_webhook_decisions_total{decision=\"patched\",path=\"mutate\"} 1",
        "gantry_webhook_decisions_total{decision=\"denied\",path=\"validate\"} 1",
        "gantry_webhook_decisions_total{decision=\"bad_request\",path=\"mutate\"} 1",
        "gantry_webhook_request_duration_seconds_count{path=\"mutate\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn bodies_over_8_mib_are_refused_before_they_are_read_whole() {
    let app = router(Arc::new(webhook(None)));
    let (status, text) = send(&app, "POST", "/validate", vec![b' '; (8 << 20) + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text, "the body is larger than 8388608 bytes or could not be read\n");
    // Just under the limit, a real review (decided on the blocking pool) still gets its answer.
    let mut p = pod(json!({}), json!({}), json!({"nvidia.com/gpu": 1}));
    p["spec"]["schedulingGates"] = json!([{"name": "gantry.dev/admission"}]);
    p["spec"]["containers"][0]["env"] = json!([{"name": "PAD", "value": "z".repeat(7 << 20)}]);
    let (status, reply) = send(&app, "POST", "/validate", review("colin-coder", p).into_bytes()).await;
    assert_eq!(status, 200);
    assert!(reply.contains("\"allowed\":true"), "{reply:.300}");
}
