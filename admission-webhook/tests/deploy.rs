//! The webhook configurations (`deploy/webhook/`) have the properties RELIABILITY.md §0 asks for,
//! and call paths the webhook serves.

mod common;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use gantry_admission_webhook::router;
use marked_yaml::Node;
use std::sync::Arc;
use tower::ServiceExt;

fn docs() -> Vec<Node> {
    let path = format!("{}/../deploy/webhook/webhook-configurations.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.split("\n---\n").map(|d| marked_yaml::parse_yaml(0, d).unwrap_or_else(|e| panic!("{path}: {e}"))).collect()
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

#[tokio::test]
async fn configurations_fail_safe_and_call_what_is_served() {
    let docs = docs();
    let kinds: Vec<String> = docs.iter().map(|d| text(get(d, "kind"))).collect();
    assert_eq!(kinds, ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]);
    let app = router(Arc::new(common::webhook(None)));
    for doc in &docs {
        assert_eq!(text(get(doc, "apiVersion")), "admissionregistration.k8s.io/v1");
        let mutating = text(get(doc, "kind")).starts_with("Mutating");
        let hooks = get(doc, "webhooks").as_sequence().expect("a list");
        assert_eq!(hooks.len(), 1);
        let h = &hooks[0];
        assert_eq!(texts(get(h, "admissionReviewVersions")), ["v1"]);
        assert_eq!(text(get(h, "sideEffects")), "None");
        let timeout: u32 = text(get(h, "timeoutSeconds")).parse().unwrap();
        assert!((2..=3).contains(&timeout), "timeoutSeconds {timeout}");
        assert_eq!(text(get(h, "failurePolicy")), if mutating { "Ignore" } else { "Fail" });
        let reinvocation = h.as_mapping().unwrap().get_node("reinvocationPolicy").map(text);
        assert_eq!(reinvocation.as_deref(), if mutating { Some("IfNeeded") } else { None });
        let exprs = get(get(h, "namespaceSelector"), "matchExpressions").as_sequence().unwrap();
        assert_eq!(exprs.len(), 1);
        assert_eq!(text(get(&exprs[0], "key")), "kubernetes.io/metadata.name");
        assert_eq!(text(get(&exprs[0], "operator")), "NotIn");
        assert_eq!(texts(get(&exprs[0], "values")), ["kube-system", "gantry-system"]);
        let rules = get(h, "rules").as_sequence().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(texts(get(&rules[0], "operations")), ["CREATE"]);
        assert_eq!(texts(get(&rules[0], "apiGroups")), [""]);
        assert_eq!(texts(get(&rules[0], "resources")), ["pods"]);
        let path = text(get(get(get(h, "clientConfig"), "service"), "path"));
        assert_eq!(path, if mutating { "/mutate" } else { "/validate" });
        let req = Request::builder().method("POST").uri(&path).body(Body::from("{}")).unwrap();
        assert_ne!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::NOT_FOUND, "{path}");
    }
}
