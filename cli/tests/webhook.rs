//! `gantry webhook`, run as a user would: over a tenants file with no API server, answering the
//! real GKE Pod CREATE review over plain HTTP; the clear error of a wrong start; the deploy
//! example's arguments.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A running `gantry webhook`, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["webhook", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gantry binary runs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().expect("a start line").unwrap();
    let addr = line.split("http://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

fn call(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn serves_the_gke_review_over_http() {
    let tenants = repo("admission-webhook/tests/fixtures/tenants.yaml");
    let server = start(&["--tenants", tenants.to_str().unwrap(), "--scheduler-name", "gantry-scheduler"]);
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
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["webhook", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the Kubernetes API server") && err.contains("--tenants FILE"), "{err}");
}

/// `deploy/webhook/webhook.yaml`'s arguments are ones `gantry` accepts.
#[test]
fn the_deployment_arguments_are_accepted() {
    let text = std::fs::read_to_string(repo("deploy/webhook/webhook.yaml")).unwrap();
    let line = text.lines().find(|l| l.trim_start().starts_with("args:")).expect("an args line");
    let args: Vec<String> = serde_json::from_str(line.split_once(':').unwrap().1.trim()).expect("args as a JSON-style list");
    let out = Command::new(env!("CARGO_BIN_EXE_gantry")).args(&args).arg("--help").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
