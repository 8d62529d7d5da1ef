//! `gantry webhook`, run as a user would: over a tenants file with no API server, answering the
//! real GKE Pod CREATE review over plain HTTP; the clear error of a wrong start; the deploy
//! example's arguments.

mod common;
use common::*;
use std::process::Command;

#[test]
fn serves_the_gke_review_over_http() {
    let tenants = repo("admission-webhook/tests/fixtures/tenants.yaml");
    let mut server =
        start("webhook", &["--tenants", tenants.to_str().unwrap(), "--scheduler-name", "gantry-scheduler"]);
    assert_eq!(call(&server.addr, "GET", "/readyz", "").0, 200);
    let review = std::fs::read_to_string(repo(
        "admission-webhook/tests/fixtures/kube-rs.AdmissionReview-v1.pod-create.json",
    ))
    .unwrap();

    let (status, reply) = call(&server.addr, "POST", "/mutate", &review);
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(reply["response"]["uid"], "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4");
    assert_eq!(reply["response"]["patchType"], "JSONPatch");

    // The same pod claiming another tenant's queue is refused with the fix.
    let spoof = review.replace(
        r#""labels":{"app":"echo-server"}"#,
        r#""labels":{"app":"echo-server","gantry.dev/tenant":"search"}"#,
    );
    let (status, reply) = call(&server.addr, "POST", "/validate", &spoof);
    assert_eq!(status, 200);
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["response"]["allowed"], false);
    assert_eq!(
        reply["response"]["status"]["message"],
        "metadata.labels[gantry.dev/tenant] is \"search\", but namespace colin-coder belongs to tenant coder; remove the label: a pod always runs in the queue of its namespace's tenant"
    );

    let (_, metrics) = call(&server.addr, "GET", "/metrics", "");
    assert!(
        metrics.contains("gantry_webhook_decisions_total{decision=\"denied\",path=\"validate\"} 1"),
        "{metrics}"
    );
    assert!(server.terminate().is_some_and(|s| s.success()), "a clean exit on SIGTERM");
}

#[test]
fn a_missing_tenants_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["webhook", "--tenants", "/nonexistent/tenants.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/tenants.yaml: cannot read the tenants file"), "{err}");
}

#[test]
fn without_a_tenants_file_it_needs_a_cluster_and_says_so() {
    let err = fails_without_cluster(&["webhook", "--listen", "127.0.0.1:0"]);
    assert!(
        err.contains("cannot reach the Kubernetes API server") && err.contains("--tenants FILE"),
        "{err}"
    );
}

/// `deploy/webhook/webhook.yaml`'s arguments are ones `gantry` accepts.
#[test]
fn the_deployment_arguments_are_accepted() {
    assert_accepted(&deployment_args("deploy/webhook/webhook.yaml"));
}

/// `--self-signed-tls` needs the namespace (for its Secret and certificate names) and no
/// certificate files; each wrong start says what to fix before anything is contacted.
#[test]
fn self_signed_tls_wrong_starts_are_clear_errors() {
    let gantry = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gantry"));
        c.env_remove("POD_NAMESPACE")
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", "/nonexistent");
        c
    };
    let stderr = |c: &mut Command| {
        let out = c.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let err = stderr(gantry().args(["webhook", "--listen", "127.0.0.1:0", "--self-signed-tls"]));
    assert!(
        err.contains("--self-signed-tls needs the webhook's namespace in $POD_NAMESPACE")
            && err.contains("fieldRef metadata.namespace"),
        "{err}"
    );

    let err =
        stderr(gantry().args(["webhook", "--self-signed-tls", "--tls-cert", "a.crt", "--tls-key", "a.key"]));
    assert!(err.contains("the argument '--self-signed-tls' cannot be used with"), "{err}");

    let err = stderr(gantry().args(["webhook", "--ca-bundle-for", "mutating:gantry-webhook"]));
    assert!(
        err.contains("required arguments were not provided") && err.contains("--self-signed-tls"),
        "{err}"
    );

    let err = stderr(gantry().env("POD_NAMESPACE", "gantry-system").args([
        "webhook",
        "--self-signed-tls",
        "--ca-bundle-for",
        "gantry-webhook",
    ]));
    assert!(err.contains("write mutating:NAME or validating:NAME"), "{err}");

    let err = stderr(gantry().env("POD_NAMESPACE", "gantry-system").args([
        "webhook",
        "--self-signed-tls",
        "--service",
        "Gantry_Webhook",
    ]));
    assert!(err.contains("--service \"Gantry_Webhook\" is not a valid Service name"), "{err}");

    // Even with a tenants file, the certificate lives in the cluster.
    let tenants = repo("admission-webhook/tests/fixtures/tenants.yaml");
    let err = stderr(gantry().env("POD_NAMESPACE", "gantry-system").args([
        "webhook",
        "--listen",
        "127.0.0.1:0",
        "--self-signed-tls",
        "--tenants",
        tenants.to_str().unwrap(),
    ]));
    assert!(
        err.contains("cannot reach the Kubernetes API server")
            && err.contains("--tls-cert and --tls-key instead of --self-signed-tls"),
        "{err}"
    );
}

/// The flags the Helm chart passes are accepted.
#[test]
fn the_self_signed_tls_flags_are_accepted() {
    let args = "webhook --self-signed-tls --tls-secret gantry-webhook-tls --tls-dir /run/gantry/tls --service gantry-webhook --ca-bundle-for mutating:gantry-webhook --ca-bundle-for validating:gantry-webhook";
    assert_accepted(&args.split(' ').map(str::to_string).collect::<Vec<_>>());
}
