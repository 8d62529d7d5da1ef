//! `deploy/node-agent/daemonset.yaml`: GPU nodes only, the pod-resources socket mounted
//! read-only where the agent looks for it, RBAC that is exactly the calls the agent makes, and
//! a policy that keeps each agent to its own Node.

use serde_json::{json, Value};

/// The documents, every scalar a string (as marked-yaml reads them).
fn docs() -> Vec<Value> {
    let path = format!("{}/../deploy/node-agent/daemonset.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.split("\n---\n")
        .map(|d| marked_yaml::from_yaml(0, d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_daemonset_runs_on_gpu_nodes_with_least_privilege() {
    let docs = docs();
    let account = kind(&docs, "ServiceAccount")["metadata"]["name"].as_str().unwrap().to_string();
    let user = format!("system:serviceaccount:gantry-system:{account}");
    // RBAC: exactly what inventory.rs does (get its Node, patch it), and the check the quota API
    // makes before taking idle time (idle.rs): idlereports, never the scheduler's accruals.
    assert_eq!(
        kind(&docs, "ClusterRole")["rules"],
        json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}, {"apiGroups": ["gantry.dev"], "resources": ["idlereports"], "verbs": ["create"]}])
    );
    assert_eq!(kind(&docs, "ClusterRoleBinding")["subjects"][0]["name"], account);
    // The admission policy binds to this account and compares the token's node with the Node.
    let policy = kind(&docs, "ValidatingAdmissionPolicy");
    assert!(policy["spec"]["matchConditions"][0]["expression"].as_str().unwrap().contains(&user));
    assert!(policy["spec"]["validations"][0]["expression"]
        .as_str()
        .unwrap()
        .contains("authentication.kubernetes.io/node-name"));
    assert_eq!(
        kind(&docs, "ValidatingAdmissionPolicyBinding")["spec"]["policyName"],
        policy["metadata"]["name"]
    );

    let pod = &kind(&docs, "DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account);
    assert_eq!(pod["nodeSelector"]["nvidia.com/gpu.present"], "true");
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1))
            .copied()
            .unwrap_or_else(|| panic!("no {flag}"))
    };
    assert_eq!(args[0], "node-agent");
    assert_eq!(arg("--listen").rsplit(':').next(), Some("9400"));
    assert_eq!(c["ports"][0]["containerPort"], "9400");
    // The socket the agent reads is inside a read-only mount of the kubelet's directory.
    let mount = &c["volumeMounts"][0];
    assert_eq!(mount["readOnly"], "true");
    assert!(arg("--pod-resources-socket").starts_with(mount["mountPath"].as_str().unwrap()));
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
    assert_eq!(volume["hostPath"]["path"], "/var/lib/kubelet/pod-resources");
    // Idle time goes to the quota API's Service.
    assert_eq!(arg("--quota-api"), "http://gantry-quota-api.gantry-system.svc:80");
    // The inventory goes on this pod's node.
    let env = c["env"].as_array().unwrap().iter().find(|e| e["name"] == "NODE_NAME").unwrap();
    assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    let sc = &c["securityContext"];
    assert_eq!(
        (sc["allowPrivilegeEscalation"].clone(), sc["readOnlyRootFilesystem"].clone()),
        (json!("false"), json!("true"))
    );
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
}
