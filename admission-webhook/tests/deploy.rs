//! The webhook's deploy files (`deploy/webhook/`): the configurations have the properties
//! RELIABILITY.md §0 asks for and call paths the webhook serves, through the Service the
//! Deployment backs, as the account the RBAC grants exactly what the code uses.

mod common;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use gantry_admission_webhook::policy::QUEUE_CONTROLLER;
use gantry_admission_webhook::router;
use marked_yaml::Node;
use std::sync::Arc;
use tower::ServiceExt;

fn docs() -> Vec<Node> {
    file_docs("webhook/webhook-configurations.yaml")
}

fn file_docs(name: &str) -> Vec<Node> {
    let path = format!("{}/../deploy/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.split("\n---\n")
        .map(|d| marked_yaml::parse_yaml(0, d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|d| d.as_mapping().is_some())
        .collect()
}

fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
    n.as_mapping().and_then(|m| m.get_node(key)).unwrap_or_else(|| panic!("no {key} in {n:?}"))
}

fn text(n: &Node) -> String {
    n.as_scalar().map(|s| s.as_str().to_string()).unwrap_or_default()
}

fn texts(n: &Node) -> Vec<String> {
    n.as_sequence().map(|s| s.iter().map(text).collect()).unwrap_or_default()
}

fn webhooks(doc: &Node) -> Vec<Node> {
    get(doc, "webhooks").as_sequence().expect("a list").iter().cloned().collect()
}

#[tokio::test]
async fn configurations_fail_safe_and_call_what_is_served() {
    let docs = docs();
    let kinds: Vec<String> = docs.iter().map(|d| text(get(d, "kind"))).collect();
    assert_eq!(kinds, ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]);
    let app = router(Arc::new(common::webhook(None)));
    let mut seen = Vec::new();
    for doc in &docs {
        assert_eq!(text(get(doc, "apiVersion")), "admissionregistration.k8s.io/v1");
        let mutating = text(get(doc, "kind")).starts_with("Mutating");
        for h in webhooks(doc) {
            let name = text(get(&h, "name"));
            assert_eq!(texts(get(&h, "admissionReviewVersions")), ["v1"]);
            assert_eq!(text(get(&h, "sideEffects")), "None");
            let timeout: u32 = text(get(&h, "timeoutSeconds")).parse().unwrap();
            assert!((2..=3).contains(&timeout), "{name}: timeoutSeconds {timeout}");
            assert_eq!(text(get(&h, "failurePolicy")), if mutating { "Ignore" } else { "Fail" });
            let reinvocation = h.as_mapping().unwrap().get_node("reinvocationPolicy").map(text);
            assert_eq!(reinvocation.as_deref(), if mutating { Some("IfNeeded") } else { None });
            let exprs = get(get(&h, "namespaceSelector"), "matchExpressions").as_sequence().unwrap();
            assert_eq!(exprs.len(), 1);
            assert_eq!(text(get(&exprs[0], "key")), "kubernetes.io/metadata.name");
            assert_eq!(text(get(&exprs[0], "operator")), "NotIn");
            assert_eq!(texts(get(&exprs[0], "values")), ["kube-system", "gantry-system"]);
            let rules = get(&h, "rules").as_sequence().unwrap();
            assert_eq!(rules.len(), 1);
            let operations = texts(get(&rules[0], "operations"));
            assert_eq!(texts(get(&rules[0], "apiGroups")), [""]);
            assert_eq!(
                texts(get(&rules[0], "resources")),
                ["pods"],
                "{name}: pods only, never their subresources"
            );
            // Updates fail closed, so the control plane and the queue controller must skip them.
            let conditions = h.as_mapping().unwrap().get_node("matchConditions");
            if operations == ["UPDATE"] {
                let cel = text(get(
                    &conditions.expect("matchConditions on updates").as_sequence().unwrap()[0],
                    "expression",
                ));
                for user in [
                    "'system:serviceaccount:kube-system:'",
                    "'system:node:'",
                    &format!("'{QUEUE_CONTROLLER}'"),
                ] {
                    assert!(cel.contains(user), "{name}: {user} must skip the update webhook: {cel}");
                }
            } else {
                assert!(conditions.is_none(), "{name}");
            }
            let service = get(get(&h, "clientConfig"), "service");
            assert_eq!(
                (text(get(service, "namespace")), text(get(service, "name")), text(get(service, "port"))),
                ("gantry-system".into(), "gantry-webhook".into(), "443".into())
            );
            let path = text(get(service, "path"));
            assert_eq!(path, if mutating { "/mutate" } else { "/validate" });
            let req = Request::builder().method("POST").uri(&path).body(Body::from("{}")).unwrap();
            assert_ne!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::NOT_FOUND, "{path}");
            seen.push((name, operations));
        }
    }
    let expected = [
        ("mutate.gantry.dev", "CREATE"),
        ("validate.gantry.dev", "CREATE"),
        ("validate-update.gantry.dev", "UPDATE"),
    ];
    assert_eq!(seen, expected.map(|(n, o)| (n.to_string(), vec![o.to_string()])));
}

fn kind<'a>(docs: &'a [Node], kind: &str) -> &'a Node {
    docs.iter().find(|d| text(get(d, "kind")) == kind).unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_deployment_serves_the_service_as_the_account_rbac_grants_what_the_code_uses() {
    let docs = file_docs("webhook/webhook.yaml");
    // Exactly what live.rs watches (read-only) and what selfcert.rs lists; anything more must be
    // added to those tables on purpose. Compared as (group, resource, verb) triples, since the
    // chart splits the Secret rules by whether resourceNames can limit them.
    let mut granted: Vec<(String, String, String)> = Vec::new();
    for role in docs.iter().filter(|d| ["ClusterRole", "Role"].contains(&text(get(d, "kind")).as_str())) {
        for r in get(role, "rules").as_sequence().unwrap().iter() {
            for g in texts(get(r, "apiGroups")) {
                for res in texts(get(r, "resources")) {
                    for v in texts(get(r, "verbs")) {
                        granted.push((g.clone(), res.clone(), v));
                    }
                }
            }
        }
    }
    let mut needed: Vec<(String, String, String)> = Vec::new();
    for res in ["tenants", "cohorts", "gpuflavors"] {
        for v in ["list", "watch"] {
            needed.push(("gantry.dev".into(), res.into(), v.into()));
        }
    }
    // Namespaces' labels, for tenants that select namespaces (tenants.rs).
    for v in ["list", "watch"] {
        needed.push(("".into(), "namespaces".into(), v.into()));
    }
    for (g, res, verbs) in gantry_admission_webhook::selfcert::RBAC {
        needed.extend(verbs.iter().map(|v| (g.to_string(), res.to_string(), v.to_string())));
    }
    granted.sort();
    needed.sort();
    assert_eq!(granted, needed);
    let account = text(get(get(kind(&docs, "ServiceAccount"), "metadata"), "name"));
    let binding = kind(&docs, "ClusterRoleBinding");
    assert_eq!(text(get(&get(binding, "subjects").as_sequence().unwrap()[0], "name")), account);

    let pod = get(get(get(kind(&docs, "Deployment"), "spec"), "template"), "spec");
    assert_eq!(text(get(pod, "serviceAccountName")), account);
    let container = &get(pod, "containers").as_sequence().unwrap()[0];
    let args = texts(get(container, "args"));
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
    };
    assert_eq!(args[0], "webhook");
    assert!(!args.contains(&"--tenants".to_string()), "in a cluster the policy follows the tenant objects");
    let port = arg("--listen").rsplit(':').next().unwrap().to_string();
    let ports = get(container, "ports").as_sequence().unwrap();
    assert_eq!(text(get(&ports[0], "containerPort")), port);
    let port_name = text(get(&ports[0], "name"));
    // The Service the configurations call sends 443 to that port.
    let service = kind(&docs, "Service");
    assert_eq!(text(get(get(service, "metadata"), "name")), "gantry-webhook");
    let sp = &get(get(service, "spec"), "ports").as_sequence().unwrap()[0];
    assert_eq!((text(get(sp, "port")), text(get(sp, "targetPort"))), ("443".to_string(), port_name));
    // The certificate the webhook makes is written where its in-memory volume is mounted.
    let mount = text(get(&get(container, "volumeMounts").as_sequence().unwrap()[0], "mountPath"));
    assert!(args.contains(&"--self-signed-tls".to_string()));
    assert_eq!(arg("--tls-dir"), mount);
    assert_eq!(arg("--service"), "gantry-webhook");
    // GPU pods go to the kube-scheduler profile that calls the extender.
    let profile = std::fs::read_to_string(format!(
        "{}/../deploy/scheduler/kube-scheduler.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(
        profile.contains(&format!("- schedulerName: {}\n", arg("--scheduler-name"))),
        "--scheduler-name must be a profile of the kube-scheduler configuration"
    );
    // The queue controller the webhook trusts is the scheduler's account.
    let scheduler_rbac =
        std::fs::read_to_string(format!("{}/../deploy/scheduler/rbac.yaml", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    assert!(scheduler_rbac
        .contains("kind: ServiceAccount\nmetadata:\n  name: gantry-scheduler\n  namespace: gantry-system\n"));
    assert_eq!(QUEUE_CONTROLLER, "system:serviceaccount:gantry-system:gantry-scheduler");
    assert_eq!(text(get(get(kind(&docs, "PodDisruptionBudget"), "spec"), "minAvailable")), "1");
}
