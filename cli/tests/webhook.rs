//! `gantry webhook`, run as a user would: over a tenants file with no API server, answering the
//! real GKE Pod CREATE review over plain HTTP; the clear error of a wrong start; the deploy
//! example's arguments.

mod common;
use common::*;
use std::process::Command;

#[test]
fn serves_the_gke_review_over_http() {
    let tenants = repo("admission-webhook/tests/fixtures/tenants.yaml");
    let mut server = start("webhook", &["--tenants", tenants.to_str().unwrap(), "--scheduler-name", "gantry-scheduler"]);
    assert_eq!(call(&server.addr, "GET", "/readyz", "").0, 200);
    let review = std::fs::read_to_string(repo("admission-webhook/tests/fixtures/kube-rs.AdmissionReview-v1.pod-create.json")).unwrap();

    let (status, reply) = call(&server.addr, "POST", "/mutate", &review);
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(reply["response"]["uid"], "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4");
    assert_eq!(reply["response"]["patchType"], "JSONPatch");

    // The same pod claiming another tenant's queue is refused with the fix.
    let spoof = review.replace(r#""labels":{"app":"echo-server"}"#, r#""labels":{"app":"echo-server","gantry.dev/tenant":"search"}"#);
    let (status, reply) = call(&server.addr, "POST", "/validate", &spoof);
    assert_eq!(status, 200);
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["response"]["allowed"], false);
    assert_eq!(
        reply["response"]["status"]["message"],
        "metadata.labels[gantry.dev/tenant] is \"search\", but namespace colin-coder belongs to tenant coder; remove the label: a pod always runs in the queue of its namespace's tenant"
    );

    let (_, metrics) = call(&server.addr, "GET", "/metrics", "");
    assert!(metrics.contains("gantry_webhook_decisions_total{decision=\"denied\",path=\"validate\"} 1"), "{metrics}");
    assert!(server.terminate().is_some_and(|s| s.success()), "a clean exit on SIGTERM");
}

#[test]
fn a_missing_tenants_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_gantry")).args(["webhook", "--tenants", "/nonexistent/tenants.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/tenants.yaml: cannot read the tenants file"), "{err}");
}

#[test]
fn without_a_tenants_file_it_needs_a_cluster_and_says_so() {
    let err = fails_without_cluster(&["webhook", "--listen", "127.0.0.1:0"]);
    assert!(err.contains("cannot reach the Kubernetes API server") && err.contains("--tenants FILE"), "{err}");
}

/// `deploy/webhook/webhook.yaml`'s arguments are ones `gantry` accepts.
#[test]
fn the_deployment_arguments_are_accepted() {
    assert_accepted(&deployment_args("deploy/webhook/webhook.yaml"));
}
