//! Kubeflow Profiles as tenants in the queue controller: the Tenants of
//! `examples/kubernetes/profile-tenants.yaml` over Namespaces shaped as Kubeflow's profile
//! controller makes them (`api/tests/fixtures/kubeflow-profiles/`). A gated pod in a Profile
//! namespace that no tenant has yet waits unadmitted; the namespace's watch event is one tenancy
//! change (a rebuild), after which the pod is admitted and the tenant's status lists the
//! namespace. A namespace two tenants claim shows on both statuses, and the others keep working.

use gantry_api::crds::{NamespaceConflict, Tenant, TenantStatus};
use gantry_api::tenants::{strip_namespace, TenantObjects};
use gantry_core::model::{Cluster, PodRequest};
use gantry_core::tenancy::Settings;
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::controller::Action;
use gantry_scheduler::extender::Extender;
use gantry_scheduler::runner::{with_conflicts, Live, RunConfig, Stores, Tenants};
use gantry_scheduler::server::AppState;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use serde_json::{json, Value};
use std::time::Duration;

const T0: i64 = 1_793_491_200;
const EXAMPLE: &str = include_str!("../../examples/kubernetes/profile-tenants.yaml");
const MODEL: &str = "NVIDIA-A100-SXM4-80GB";

fn namespace(name: &str) -> Namespace {
    let path = format!(
        "{}/../api/tests/fixtures/kubeflow-profiles/{name}.namespace.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut ns: Namespace = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    // As the watcher keeps it.
    strip_namespace(&mut ns);
    ns
}

fn of_kind<K: serde::de::DeserializeOwned>(kind: &str) -> Vec<K> {
    EXAMPLE
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_yaml_ng::from_str::<Value>(d).expect("YAML"))
        .filter(|d| d["kind"] == kind)
        .map(|d| serde_json::from_value(d).expect("the kind's shape"))
        .collect()
}

fn node(name: &str) -> Node {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": MODEL}},
        "status": {"allocatable": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"}}}))
    .expect("a node")
}

/// A gated 1-GPU pod, as the webhook holds it.
fn gated(ns: &str, name: &str) -> Pod {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"),
                     "creationTimestamp": jiff::Timestamp::from_second(T0 - 10).expect("a time").to_string()},
        "spec": {"schedulingGates": [{"name": "gantry.dev/admission"}],
                 "containers": [{"name": "main", "resources": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"nvidia.com/gpu": "1"}}}]},
        "status": {"phase": "Pending"}}))
    .expect("a pod")
}

struct Cluster1 {
    stores: Stores,
    tenants: Writer<Tenant>,
    namespaces: Writer<Namespace>,
}

/// One 8-GPU node, `pods`, the example's objects and the namespaces `names`.
fn cluster(pods: &[Pod], names: &[&str]) -> Cluster1 {
    let (nodes, mut node_writer) = reflector::store::<Node>();
    node_writer.apply_watcher_event(&Event::Apply(node("gpu-0")));
    let (pod_store, mut pod_writer) = reflector::store::<Pod>();
    for p in pods {
        pod_writer.apply_watcher_event(&Event::Apply(p.clone()));
    }
    let (tenant_store, mut tenants) = reflector::store();
    for t in of_kind::<Tenant>("Tenant") {
        tenants.apply_watcher_event(&Event::Apply(t));
    }
    let (cohorts, mut cohort_writer) = reflector::store();
    for c in of_kind("Cohort") {
        cohort_writer.apply_watcher_event(&Event::Apply(c));
    }
    let (flavors, mut flavor_writer) = reflector::store();
    for f in of_kind("GpuFlavor") {
        flavor_writer.apply_watcher_event(&Event::Apply(f));
    }
    let (namespace_store, mut namespaces) = reflector::store();
    for n in names {
        namespaces.apply_watcher_event(&Event::Apply(namespace(n)));
    }
    let objects = TenantObjects { tenants: tenant_store, cohorts, flavors, namespaces: namespace_store };
    Cluster1 { stores: Stores { nodes, pods: pod_store, tenants: Some(objects) }, tenants, namespaces }
}

fn config() -> RunConfig {
    RunConfig {
        lease_namespace: "gantry-system".into(),
        lease_name: "gantry-scheduler".into(),
        identity: "gantry-0".into(),
        tenants: Tenants::Cluster(Settings::default()),
        policy: PolicyKind::Gantry,
        expected: vec![PodRequest::whole_gpus(8000, 65536, 1)],
        cycle_every: Duration::from_secs(10),
        quota_api: None,
    }
}

fn leader(c: &Cluster1, cfg: &RunConfig) -> Live1 {
    let empty = Cluster::default();
    let state =
        AppState::new(Extender::new(empty.clone(), Scheduler::new(cfg.policy.build(&empty, &cfg.expected))))
            .expect("metrics");
    let live = Live::new(state);
    live.rebuild_cache(&c.stores, cfg.policy, &cfg.expected);
    live.rebuild_controller(&c.stores, cfg, T0, "start").expect("a valid tenancy");
    live
}
type Live1 = std::sync::Arc<Live>;

fn ungated(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Ungate { pod, .. } => Some(format!("{}/{}", pod.namespace, pod.name)),
            _ => None,
        })
        .collect()
}

fn status(c: &Cluster1, live: &Live, tenant: &str) -> TenantStatus {
    let matched = c.stores.tenants.as_ref().expect("objects").matched();
    with_conflicts(live.tenant_statuses(), &matched)
        .into_iter()
        .find(|(n, _)| n == tenant)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no status for {tenant}"))
}

#[test]
fn a_new_profiles_namespace_is_its_tenants_within_one_change() {
    let cfg = config();
    // bob's pod exists before the controller has seen bob's namespace (the webhook's watch was
    // faster, say).
    let mut c = cluster(&[gated("bob", "train")], &["alice", "carol-vision", "kubeflow"]);
    let live = leader(&c, &cfg);
    assert!(ungated(&live.cycle(T0)).is_empty(), "bob's namespace is nobody's yet");
    assert!(status(&c, &live, "bob").namespaces.is_empty());
    assert_eq!(status(&c, &live, "vision").namespaces, ["carol"]);

    // The profile controller creates bob's namespace: one event, one rebuild, the pod admitted.
    c.namespaces.apply_watcher_event(&Event::Apply(namespace("bob")));
    live.tenant_objects_changed();
    assert!(live.take_tenancy_change(&c.stores, &cfg.tenants, T0 + 1), "a namespace joined: rebuild");
    live.rebuild_controller(&c.stores, &cfg, T0 + 1, "tenants").expect("valid");
    assert_eq!(ungated(&live.cycle(T0 + 1)), ["bob/train"]);
    assert_eq!(status(&c, &live, "bob").namespaces, ["bob"]);

    // A label nobody selects on (istio's, say) changes no tenancy: no rebuild.
    let mut relabelled = namespace("alice");
    relabelled.metadata.labels.as_mut().expect("labels").insert("istio-injection".into(), "disabled".into());
    c.namespaces.apply_watcher_event(&Event::Apply(relabelled));
    live.tenant_objects_changed();
    assert!(!live.take_tenancy_change(&c.stores, &cfg.tenants, T0 + 2));
}

#[test]
fn a_namespace_two_tenants_claim_shows_on_both_statuses_and_the_others_keep_working() {
    let cfg = config();
    let pods = [gated("alice", "a"), gated("carol", "c")];
    let mut c = cluster(&pods, &["alice", "bob", "carol-vision", "kubeflow"]);
    let live = leader(&c, &cfg);
    // A platform admin gives vision alice's namespace too, by list.
    let mut vision =
        of_kind::<Tenant>("Tenant").into_iter().find(|t| t.metadata.name.as_deref() == Some("vision"));
    let vision = vision.as_mut().expect("vision");
    vision.spec.namespaces.push("alice".into());
    c.tenants.apply_watcher_event(&Event::Apply(vision.clone()));
    live.tenant_objects_changed();
    assert!(live.take_tenancy_change(&c.stores, &cfg.tenants, T0), "alice's namespace left its tenant");
    live.rebuild_controller(&c.stores, &cfg, T0, "tenants")
        .expect("one bad namespace leaves the tenancy valid");

    // carol's pod (vision's) is admitted; alice's waits: its namespace is nobody's.
    assert_eq!(ungated(&live.cycle(T0)), ["carol/c"]);
    let both =
        NamespaceConflict { namespace: "alice".into(), tenants: vec!["alice".into(), "vision".into()] };
    let alice = status(&c, &live, "alice");
    assert!(alice.namespaces.is_empty());
    assert_eq!(alice.conflicts, std::slice::from_ref(&both));
    let vision_status = status(&c, &live, "vision");
    assert_eq!(vision_status.namespaces, ["carol"]);
    assert_eq!(vision_status.conflicts, [both]);
    assert!(status(&c, &live, "bob").conflicts.is_empty());
    assert_eq!(status(&c, &live, "bob").namespaces, ["bob"]);
}
