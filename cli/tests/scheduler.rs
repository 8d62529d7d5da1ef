//! `gantry scheduler`, run as a user would: standalone over the bundled Venus cluster and tenants,
//! answering over HTTP; and the clear errors of a wrong start.

mod common;
use common::*;

#[test]
fn standalone_with_tenants_serves_the_extender_and_the_quotas() {
    let nodes = repo("examples/clusters/venus-968.csv");
    let tenants = repo("examples/tenants/venus.yaml");
    let server = start(
        "scheduler",
        &["--standalone", "--nodes", nodes.to_str().unwrap(), "--tenants", tenants.to_str().unwrap()],
    );
    assert_eq!(call(&server.addr, "GET", "/readyz", "").0, 200);

    let (status, metrics) = call(&server.addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(metrics.contains("gantry_nodes 129"), "{metrics}");
    // vc-a's nominal quotas (100 A100, 60 V100M32, 320 cores in the file), in milli-units.
    for (flavor, milli) in [("A100", 100_000), ("V100M32", 60_000), ("cpu", 320_000)] {
        let line = format!("gantry_tenant_nominal_milli{{flavor=\"{flavor}\",tenant=\"vc-a\"}} {milli}\n");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }

    // A 4-GPU pod: an 8-GPU node passes, a CPU-only node is unresolvable.
    let pod = r#"{"metadata": {"name": "p", "namespace": "team", "uid": "u1"}, "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}"#;
    let body = format!(r#"{{"Pod": {pod}, "NodeNames": ["venus-node-0000", "venus-node-0121"]}}"#);
    let (status, reply) = call(&server.addr, "POST", "/scheduler/filter", &body);
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["NodeNames"], serde_json::json!(["venus-node-0000"]), "{reply}");
    assert!(reply["FailedAndUnresolvableNodes"]["venus-node-0121"].is_string(), "{reply}");
}

#[test]
fn standalone_reads_node_objects_as_kubectl_prints_them() {
    let dir = std::env::temp_dir().join(format!("gantry-scheduler-nodes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nodes = dir.join("nodes.yaml");
    std::fs::write(
        &nodes,
        "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: h100-0
    labels: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
    annotations: {gantry.dev/gpu-unhealthy: \"7\"}
  status:
    allocatable: {cpu: \"192\", memory: 2Ti, nvidia.com/gpu: \"8\", pods: \"110\"}
- apiVersion: v1
  kind: Node
  metadata: {name: cpu-0}
  status:
    allocatable: {cpu: 64, memory: 256Gi}
",
    )
    .unwrap();
    let server = start("scheduler", &["--standalone", "--nodes", nodes.to_str().unwrap()]);
    let (_, metrics) = call(&server.addr, "GET", "/metrics", "");
    assert!(metrics.contains("gantry_nodes 2\n"), "{metrics}");
    assert!(metrics.contains("gantry_gpus 8\n"), "{metrics}");
    // GPU 7 failed: a pod asking for all 8 does not fit there.
    let pod = r#"{"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}"#;
    let (_, reply) = call(
        &server.addr,
        "POST",
        "/scheduler/filter",
        &format!(r#"{{"Pod": {pod}, "NodeNames": ["h100-0"]}}"#),
    );
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["NodeNames"], serde_json::json!([]), "{reply}");
    assert_eq!(reply["FailedNodes"]["h100-0"], "insufficient free GPU", "{reply}");
    let seven = pod.replace("\"8\"", "\"7\"");
    let (_, reply) = call(
        &server.addr,
        "POST",
        "/scheduler/filter",
        &format!(r#"{{"Pod": {seven}, "NodeNames": ["h100-0"]}}"#),
    );
    assert!(reply.contains(r#""NodeNames":["h100-0"]"#), "{reply}");
}

#[test]
fn a_wrong_start_says_what_to_fix() {
    let run = |args: &[&str]| fails_without_cluster(&[&["scheduler"], args].concat());
    let nodes = repo("examples/clusters/venus-968.csv");
    let nodes = nodes.to_str().unwrap();
    let err = run(&["--standalone"]);
    assert!(err.contains("--nodes"), "{err}");
    let err = run(&["--standalone", "--nodes", nodes, "--tls-cert", "/nonexistent/tls.crt"]);
    assert!(err.contains("--tls-key"), "{err}");
    let err = run(&[
        "--standalone",
        "--nodes",
        nodes,
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        "/nonexistent/tls.crt",
        "--tls-key",
        "/nonexistent/tls.key",
    ]);
    assert!(err.contains("/nonexistent/tls.crt"), "{err}");
    // Tenants whose GPU models the node list lacks.
    let dir = std::env::temp_dir().join(format!("gantry-scheduler-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tenants = dir.join("tenants.yaml");
    std::fs::write(&tenants, "flavors:\n  - name: H100\ntenants:\n  - name: t\n    namespaces: [t]\n    quotas: {H100: {nominal: 8}}\n").unwrap();
    let err = run(&["--standalone", "--nodes", nodes, "--tenants", tenants.to_str().unwrap()]);
    assert!(err.contains("H100") && err.contains("tenants.yaml"), "{err}");
    let bad = dir.join("nodes.yaml");
    std::fs::write(
        &bad,
        "kind: List\nitems:\n- metadata: {name: g}\n  status: {allocatable: {nvidia.com/gpu: \"4\"}}\n",
    )
    .unwrap();
    let err = run(&["--standalone", "--nodes", bad.to_str().unwrap()]);
    assert!(
        err.contains("nodes.yaml: item 0: node g has 4 nvidia.com/gpu but no nvidia.com/gpu.product label"),
        "{err}"
    );
    // In a cluster, without one.
    let err = run(&[]);
    assert!(err.contains("cannot reach the Kubernetes API server") && err.contains("--standalone"), "{err}");
}

/// The deploy example's arguments are ones `gantry` accepts.
#[test]
fn the_deployment_arguments_are_accepted() {
    assert_accepted(&deployment_args("deploy/scheduler/deployment.yaml"));
}
