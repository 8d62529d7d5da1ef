//! The deploy manifests (`deploy/scheduler/`, the chart's defaults rendered) agrees with the code: the KubeSchedulerConfiguration
//! calls verbs the extender serves, at the prefix it serves them under, for the resource it reads;
//! and the RBAC is least privilege (no wildcards, no Secrets).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gantry_api::keys::GPU_RESOURCE;
use gantry_core::model::{Cluster, ModelCatalog};
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::extender::Extender;
use gantry_scheduler::server::router;
use marked_yaml::Node;
use tower::ServiceExt;

fn read(name: &str) -> String {
    let path = format!("{}/../deploy/scheduler/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn docs(name: &str) -> Vec<Node> {
    read(name)
        .split("\n---\n")
        .map(|d| marked_yaml::parse_yaml(0, d).unwrap_or_else(|e| panic!("{name}: {e}")))
        .filter(|d| d.as_mapping().is_some())
        .collect()
}

/// The KubeSchedulerConfiguration, from the second kube-scheduler's ConfigMap.
fn scheduler_config() -> Node {
    let all = docs("kube-scheduler.yaml");
    let cm = all.iter().find(|d| text(get(d, "kind")) == "ConfigMap").expect("the kube-scheduler ConfigMap");
    marked_yaml::parse_yaml(0, text(get(get(cm, "data"), "config.yaml"))).expect("config.yaml")
}

fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
    n.as_mapping().and_then(|m| m.get_node(key)).unwrap_or_else(|| panic!("no {key} in {n:?}"))
}

fn text(n: &Node) -> String {
    n.as_scalar().map(|s| s.as_str().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn the_scheduler_configuration_calls_what_the_extender_serves() {
    let cfg = &scheduler_config();
    assert_eq!(text(get(cfg, "apiVersion")), "kubescheduler.config.k8s.io/v1");
    let extenders = get(cfg, "extenders").as_sequence().expect("a list");
    assert_eq!(extenders.len(), 1);
    let ext = &extenders[0];
    let url = text(get(ext, "urlPrefix"));
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).expect("a path in urlPrefix");
    assert_eq!(path, "/scheduler", "the default --prefix of gantry scheduler");
    assert!(url.contains(":8888/"), "the default port of gantry scheduler: {url}");
    assert_eq!(text(get(ext, "nodeCacheCapable")), "true");
    assert_eq!(text(get(ext, "ignorable")), "false");
    assert_eq!(
        text(get(ext, "httpTimeout")),
        "1s",
        "explicit and short: a stalled extender must not hold kube-scheduler"
    );
    let managed = get(ext, "managedResources").as_sequence().unwrap();
    assert_eq!(text(get(&managed[0], "name")), GPU_RESOURCE);
    assert!(ext.as_mapping().unwrap().get_node("bindVerb").is_none(), "Gantry does not post bindings yet");

    let cluster = Cluster::new(ModelCatalog::default(), vec![]);
    let scheduler = Scheduler::new(PolicyKind::BestFit.build(&cluster, &[]));
    let app = router(Extender::new(cluster, scheduler), &path).unwrap();
    for key in ["filterVerb", "prioritizeVerb", "preemptVerb"] {
        let verb = text(get(ext, key));
        let req = Request::builder()
            .method("POST")
            .uri(format!("{path}/{verb}"))
            .body(Body::from("{\"Pod\": {}}"))
            .unwrap();
        let status = app.clone().oneshot(req).await.unwrap().status();
        assert_ne!(status, StatusCode::NOT_FOUND, "{key}: {verb}");
    }
}

#[test]
fn rbac_is_least_privilege() {
    let text_all = read("rbac.yaml");
    assert!(!text_all.contains("\"*\""), "no wildcards");
    assert!(!text_all.contains("secrets"), "no Secrets");
    // Exactly the calls the code makes (each rule in rbac.yaml names where): a new call needs a
    // rule here and there; a rule nothing uses fails this test.
    let needed: &[(&str, &str, &[&str])] = &[
        ("", "nodes", &["list", "watch"]),
        ("", "pods", &["list", "watch", "patch"]),
        ("", "pods/status", &["patch"]),
        ("", "pods/eviction", &["create"]),
        ("", "namespaces", &["list", "watch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
        ("kubeflow.org", "notebooks", &["patch"]),
        ("gantry.dev", "tenants", &["list", "watch"]),
        ("gantry.dev", "cohorts", &["list", "watch"]),
        ("gantry.dev", "gpuflavors", &["list", "watch"]),
        ("gantry.dev", "tenants/status", &["patch"]),
        ("gantry.dev", "accruals", &["create"]),
        ("coordination.k8s.io", "leases", &["get", "create", "patch"]),
    ];
    let mut granted = Vec::new();
    for doc in docs("rbac.yaml") {
        let kind = text(get(&doc, "kind"));
        if kind == "ClusterRole" || kind == "Role" {
            for rule in get(&doc, "rules").as_sequence().unwrap().iter() {
                let list =
                    |k: &str| get(rule, k).as_sequence().unwrap().iter().map(text).collect::<Vec<String>>();
                let verbs = list("verbs");
                assert_eq!(
                    list("apiGroups").len(),
                    1,
                    "one API group per rule, so each can be traced to its code"
                );
                for resource in list("resources") {
                    granted.push((list("apiGroups")[0].clone(), resource, verbs.clone()));
                }
            }
        }
    }
    granted.sort();
    let mut expected: Vec<(String, String, Vec<String>)> = needed
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect();
    // Every framework whose objects give gang sizes is read (list and watch), and nothing else.
    let read = || vec!["list".to_string(), "watch".to_string()];
    expected.extend(
        gantry_api::gang::FRAMEWORKS.iter().map(|f| (f.group.to_string(), f.plural.to_string(), read())),
    );
    expected.sort();
    assert_eq!(granted, expected);
}

#[test]
fn the_deployment_serves_where_kube_scheduler_calls_as_the_account_rbac_grants() {
    let cfg = &scheduler_config();
    let url = text(get(&get(cfg, "extenders").as_sequence().unwrap()[0], "urlPrefix"));
    let all = docs("deployment.yaml");
    let deployment = all.iter().find(|d| text(get(d, "kind")) == "Deployment").unwrap();
    let service = all.iter().find(|d| text(get(d, "kind")) == "Service").unwrap();
    let (name, ns) =
        (text(get(get(service, "metadata"), "name")), text(get(get(service, "metadata"), "namespace")));
    let port = text(get(&get(get(service, "spec"), "ports").as_sequence().unwrap()[0], "port"));
    assert!(
        url.starts_with(&format!("http://{name}.{ns}.svc:{port}/")),
        "{url} vs the Service {ns}/{name}:{port}"
    );
    let pod = get(get(get(deployment, "spec"), "template"), "spec");
    let rbac = docs("rbac.yaml");
    let account = rbac.iter().find(|d| text(get(d, "kind")) == "ServiceAccount").unwrap();
    assert_eq!(text(get(pod, "serviceAccountName")), text(get(get(account, "metadata"), "name")));
    let container = &get(pod, "containers").as_sequence().unwrap()[0];
    let args: Vec<String> = get(container, "args").as_sequence().unwrap().iter().map(text).collect();
    assert!(args.windows(2).any(|w| w[0] == "--listen" && w[1].ends_with(&format!(":{port}"))), "{args:?}");
    let env: Vec<String> =
        get(container, "env").as_sequence().unwrap().iter().map(|e| text(get(e, "name"))).collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE"], "the Lease identity and namespace");
    assert!(text(get(get(deployment, "spec"), "replicas")).parse::<u32>().unwrap() >= 2);
}
