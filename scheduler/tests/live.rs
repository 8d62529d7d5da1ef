//! The in-cluster state fed by watch events: v1.Node and v1.Pod objects as the API server sends
//! them update the extender's cache and the queue controller; the same event twice changes
//! nothing; a controller rebuilt from the reflector stores alone (a restart, a new leader, a
//! relist) admits nothing twice and leaks no quota.

use gantry_core::model::{Cluster, PodRequest};
use gantry_core::queue::{Mode, Queue};
use gantry_core::tenancy::file;
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::controller::{Action, Controller};
use gantry_scheduler::extender::{Extender, ExtenderError};
use gantry_scheduler::runner::{Live, RunConfig, Stores, Tenants};
use gantry_scheduler::server::AppState;
use gantry_scheduler::wire::ExtenderArgs;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::{json, Value};
use std::time::Duration;

const T0: i64 = 1_793_491_200;

/// Two teams of 8 A100 each in one cohort.
const TENANTS: &str = include_str!("fixtures/two-teams.yaml");

fn node(name: &str, gpus: u32) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "A100"}},
           "status": {"allocatable": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": gpus.to_string()}}})
}

/// A pod as the API server has it: `gated` carries Gantry's gate; `on` is its node.
fn pod(ns: &str, name: &str, gpus: u32, gated: bool, on: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}")},
        "spec": {"containers": [{"name": "main", "resources": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"nvidia.com/gpu": gpus.to_string()}}}]},
        "status": {"phase": "Pending"}});
    if gated {
        p["spec"]["schedulingGates"] = json!([{"name": "gantry.dev/admission"}]);
    }
    if let Some(n) = on {
        p["spec"]["nodeName"] = json!(n);
        p["status"]["phase"] = json!("Running");
    }
    p
}

fn scheduler(cluster: &Cluster) -> Scheduler {
    Scheduler::new(PolicyKind::Gantry.build(cluster, &[PodRequest::whole_gpus(8000, 65536, 1)]))
}

/// Filter a 1-GPU pod over `names`: the passing names.
fn passing(ext: &mut Extender, names: &[&str], gpus: u32) -> Vec<String> {
    let body =
        serde_json::to_vec(&json!({"Pod": pod("team-a", "probe", gpus, false, None), "NodeNames": names}))
            .unwrap();
    let args = ExtenderArgs::parse(&body).unwrap();
    let r = ext.filter(&args);
    assert_eq!(r.error, "");
    r.node_names.unwrap().into_iter().map(|n| n.into_owned()).collect()
}

#[test]
fn watch_events_keep_the_extender_cache() {
    let mut ext = Extender::new(Cluster::default(), scheduler(&Cluster::default()));
    for _ in 0..2 {
        ext.node_applied(&node("gpu-0", 8)).unwrap();
        ext.node_applied(&node("gpu-1", 8)).unwrap();
    }
    assert_eq!(ext.cluster().nodes.len(), 2, "the same node twice is one node");
    assert_eq!(passing(&mut ext, &["gpu-0", "gpu-1"], 8), ["gpu-0", "gpu-1"]);

    // A running pod takes its room, once however often it is seen; a pending one takes none.
    ext.pod_applied(&pod("team-b", "pending", 4, false, None)).unwrap();
    for _ in 0..2 {
        ext.pod_applied(&pod("team-b", "big", 4, false, Some("gpu-0"))).unwrap();
    }
    assert_eq!(ext.bound_pods(), 1);
    assert_eq!(passing(&mut ext, &["gpu-0", "gpu-1"], 8), ["gpu-1"]);
    assert_eq!(passing(&mut ext, &["gpu-0", "gpu-1"], 4), ["gpu-0", "gpu-1"]);

    // A pod Gantry placed takes the GPUs it was planned on.
    let mut planned = pod("team-a", "planned", 2, false, Some("gpu-1"));
    planned["metadata"]["annotations"] = json!({"gantry.dev/placement": "gpu-1:6,7"});
    ext.pod_applied(&planned).unwrap();
    let gpu1 = &ext.cluster().nodes[1];
    assert_eq!((gpu1.gpu_free[6], gpu1.gpu_free[7], gpu1.gpu_free_total), (0, 0, 6000));

    // It ends: the room comes back. Then the node loses two GPUs (the device plugin's count).
    let mut done = pod("team-b", "big", 4, false, Some("gpu-0"));
    done["status"]["phase"] = json!("Succeeded");
    ext.pod_applied(&done).unwrap();
    assert_eq!(passing(&mut ext, &["gpu-0"], 8), ["gpu-0"]);
    ext.node_applied(&node("gpu-0", 6)).unwrap();
    assert!(passing(&mut ext, &["gpu-0"], 8).is_empty());

    // A deleted node passes nothing and is named as such.
    ext.node_deleted("gpu-1");
    assert!(passing(&mut ext, &["gpu-1"], 1).is_empty());
    ext.pod_deleted("team-a-planned");
    assert_eq!(ext.bound_pods(), 0);

    // A pod on a node not seen yet is reported, not counted.
    let err = ext.pod_applied(&pod("team-a", "early", 1, false, Some("gpu-9"))).unwrap_err();
    assert!(matches!(&err, ExtenderError::UnseenNode { node, .. } if node == "gpu-9"), "{err}");
    assert!(err.to_string().contains("node gpu-9, which Gantry has not seen"), "{err}");
}

fn controller() -> Controller {
    let tenancy = file::parse("tenants.yaml", TENANTS).unwrap();
    Controller::new(Queue::new_live(
        tenancy,
        Cluster::default(),
        scheduler(&Cluster::default()),
        Mode::Quota,
        T0,
    ))
}

fn ungated(actions: &[Action]) -> Vec<String> {
    let mut v: Vec<String> = actions
        .iter()
        .filter_map(|a| {
            if let Action::Ungate { pod, node, .. } = a {
                Some(format!("{}@{node}", pod.name))
            } else {
                None
            }
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_queue_follows_nodes_and_pods_it_does_not_manage() {
    let mut c = controller();
    // No nodes yet: nothing could ever hold the workload, and the pod is told so.
    let refused = c.pod_applied(&pod("team-a", "train", 8, true, None), T0);
    assert!(matches!(&refused[..], [Action::Refused { pod, .. }] if pod.name == "train"), "{refused:?}");
    assert!(ungated(&c.reconcile(T0)).is_empty());
    // A node arrives: the workload is submitted again. A pod of an unmanaged namespace already
    // holds half of the node, though.
    c.pod_applied(&pod("kube-system", "daemon", 4, false, Some("gpu-0")), T0);
    assert!(c.node_applied(&node("gpu-0", 8), T0).unwrap().is_empty(), "now it can run some day");
    for _ in 0..2 {
        c.pod_applied(&pod("kube-system", "daemon", 4, false, Some("gpu-0")), T0);
    }
    let actions = c.reconcile(T0 + 1);
    assert!(ungated(&actions).is_empty(), "{actions:?}");
    assert!(actions.iter().any(|a| matches!(a, Action::Pending { pod, .. } if pod.name == "train")));
    // It ends: now there is room.
    c.pod_deleted("kube-system-daemon", T0 + 2);
    assert_eq!(ungated(&c.reconcile(T0 + 2)), ["train@gpu-0"]);
    c.queue().check_invariants().unwrap();
    // The admitted pod, seen again ungated, bound and running, changes nothing.
    let mut running = pod("team-a", "train", 8, false, Some("gpu-0"));
    running["metadata"]["annotations"] = json!({"gantry.dev/placement": "gpu-0:0,1,2,3,4,5,6,7"});
    c.pod_applied(&running, T0 + 3);
    assert_eq!(c.queue().quota().usage(0, 0), 8000);
    // It finishes: its quota comes back.
    running["status"]["phase"] = json!("Succeeded");
    c.pod_applied(&running, T0 + 4);
    assert_eq!(c.queue().quota().usage(0, 0), 0);
    c.queue().check_invariants().unwrap();
}

/// Reflector stores filled as the watchers would fill them.
fn stores(nodes: &[Value], pods: &[Value]) -> Stores {
    let (node_store, mut node_writer) = reflector::store::<Node>();
    let (pod_store, mut pod_writer) = reflector::store::<Pod>();
    for n in nodes {
        node_writer.apply_watcher_event(&Event::Apply(serde_json::from_value(n.clone()).unwrap()));
    }
    for p in pods {
        pod_writer.apply_watcher_event(&Event::Apply(serde_json::from_value(p.clone()).unwrap()));
    }
    Stores { nodes: node_store, pods: pod_store, tenants: None }
}

fn config() -> RunConfig {
    RunConfig {
        lease_namespace: "gantry-system".into(),
        lease_name: "gantry-scheduler".into(),
        identity: "gantry-0".into(),
        tenants: Tenants::File(file::parse("tenants.yaml", TENANTS).unwrap()),
        policy: PolicyKind::Gantry,
        expected: vec![PodRequest::whole_gpus(8000, 65536, 1)],
        cycle_every: Duration::from_secs(10),
        quota_api: None,
    }
}

#[test]
fn a_new_leader_rebuilds_from_the_stores_and_admits_nothing_twice() {
    // team-a runs 8 GPUs on gpu-0 (admitted before the restart); team-b waits for 8; a pod of
    // an unmanaged namespace holds 4 GPUs of gpu-1.
    let mut admitted = pod("team-a", "run", 8, false, Some("gpu-0"));
    admitted["metadata"]["annotations"] = json!({"gantry.dev/placement": "gpu-0:0,1,2,3,4,5,6,7"});
    let waiting = pod("team-b", "wait", 8, true, None);
    let foreign = pod("monitoring", "exporter", 4, false, Some("gpu-1"));
    let s = stores(&[node("gpu-0", 8), node("gpu-1", 8), node("gpu-2", 8)], &[admitted, waiting, foreign]);

    let state = AppState::new(Extender::new(Cluster::default(), scheduler(&Cluster::default()))).unwrap();
    let live = Live::new(state.clone());
    let cfg = config();
    live.rebuild_cache(&s, cfg.policy, &cfg.expected);
    assert_eq!(state.extender().bound_pods(), 2, "the cache counts both running pods");
    assert!(!live.leading());
    live.rebuild_controller(&s, &cfg, T0, "start").unwrap();
    assert!(live.leading());

    // team-a's workload is not admitted again; team-b's goes to the one empty node.
    let actions = live.cycle(T0);
    assert_eq!(ungated(&actions), ["wait@gpu-2"], "{actions:?}");
    // Rebuilding again (a relist, a second new leader) changes nothing: no second admission.
    live.rebuild_controller(&s, &cfg, T0 + 1, "leader").unwrap();
    let again = live.cycle(T0 + 1);
    assert_eq!(
        ungated(&again),
        ["wait@gpu-2"],
        "still gated in the store: admitted once more at the same place, never elsewhere"
    );

    // What `kubectl get tenants` shows.
    let statuses = live.tenant_statuses();
    let a = &statuses.iter().find(|(n, _)| n == "team-a").unwrap().1;
    assert_eq!(
        (a.gpus_used.as_deref(), a.gpus_nominal.as_deref(), a.gpus_borrowed.as_deref(), a.pending_workloads),
        (Some("8"), Some("8"), Some("0"), 0)
    );
    let models: Vec<_> =
        a.models.iter().map(|m| (m.name.as_str(), m.used.as_str(), m.nominal.as_str())).collect();
    assert_eq!(models, [("A100", "8", "8")], "per model: the one it has quota of");

    // The queue's metrics are published.
    let text = String::from_utf8(state.metrics.render().unwrap()).unwrap();
    assert!(text.contains("gantry_tenant_usage_milli{flavor=\"A100\",tenant=\"team-a\"} 8000"), "{text}");
    assert!(text.contains("gantry_admitted_pods_total{tenant=\"team-b\"}"), "{text}");

    // team-a's workload ends: its use is a usage record for the quota API, taken once, with the
    // view of the queue.
    live.pod_deleted("team-a-run", T0 + 3600);
    let gantry_scheduler::runner::LeaderReport { view, records, notebook_stops } =
        live.report(T0 + 3600).expect("the leader reports");
    assert!(notebook_stops.is_empty(), "no notebook here");
    // The first controller's meter, closed when it was replaced, and the second's: the whole
    // hour, once, with no gap.
    let a: Vec<_> = records.iter().filter(|r| r.tenant == "team-a").collect();
    assert_eq!((a[0].start, a[a.len() - 1].end), (T0, T0 + 3600), "{a:?}");
    assert!(a.windows(2).all(|w| w[0].end == w[1].start), "{a:?}");
    assert_eq!(
        (a.iter().map(|r| r.guaranteed).sum::<u64>(), a.iter().map(|r| r.borrowed).sum::<u64>()),
        (8000 * 3600, 0)
    );
    assert_eq!(view.at, T0 + 3600);
    assert!(view.tenants.iter().any(|t| t.name == "team-b" && t.running == 1));
    assert!(live.report(T0 + 3600).unwrap().records.is_empty(), "taken once");

    // Losing the lease stops admissions at once.
    live.step_down();
    assert!(live.cycle(T0 + 2).is_empty());
    assert!(live.report(T0 + 3601).is_none(), "only the leader reports");
}

#[test]
fn a_pod_group_sizes_its_gang_and_nothing_starts_before_it_is_known() {
    let mut c = controller();
    c.node_applied(&node("gpu-0", 8), T0).unwrap();
    c.node_applied(&node("gpu-1", 8), T0).unwrap();
    let member = |i: u32| {
        let mut p = pod("team-a", &format!("w-{i}"), 4, true, None);
        p["metadata"]["labels"] = json!({"scheduling.x-k8s.io/pod-group": "bert"});
        p
    };
    // Three members arrive before their PodGroup: none starts, not even one by one.
    for i in 0..3 {
        assert!(c.pod_applied(&member(i), T0).is_empty());
    }
    assert!(ungated(&c.reconcile(T0)).is_empty());
    // The PodGroup says four: still waiting for the fourth member.
    let group = json!({"metadata": {"namespace": "team-a", "name": "bert"}, "spec": {"minMember": 4}});
    let spec = gantry_api::gang::read(&gantry_api::gang::POD_GROUP, &group);
    assert!(c.owner_applied("team-a/pod-group/bert", spec, T0).is_empty());
    assert!(ungated(&c.reconcile(T0)).is_empty());
    c.pod_applied(&member(3), T0);
    assert_eq!(ungated(&c.reconcile(T0)).len(), 4, "the whole gang starts at once");
    c.queue().check_invariants().unwrap();
}

/// A pod created `ago` seconds before T0.
fn created(mut p: Value, ago: i64) -> Value {
    p["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::from_second(T0 - ago).unwrap().to_string());
    p
}

#[test]
fn a_rebuild_keeps_the_queue_order_submission_times_and_running_clocks() {
    // gpu-0 is full with team-a's workload admitted 100 s before T0; three team-a workloads wait,
    // created 50, 40 and 30 s before T0, and the store lists them in another order.
    let mut running = created(pod("team-a", "run", 8, false, Some("gpu-0")), 120);
    running["metadata"]["annotations"] =
        json!({"gantry.dev/placement": format!("gpu-0:0,1,2,3,4,5,6,7@{}", T0 - 100)});
    let waiting = [("late", 30), ("early", 50), ("mid", 40)]
        .map(|(name, ago)| created(pod("team-a", name, 8, true, None), ago));
    let mut all = vec![running];
    all.extend(waiting);
    let s = stores(&[node("gpu-0", 8)], &all);
    let state = AppState::new(Extender::new(Cluster::default(), scheduler(&Cluster::default()))).unwrap();
    let live = Live::new(state.clone());
    let cfg = config();
    live.rebuild_cache(&s, cfg.policy, &cfg.expected);
    let snapshot = |now: i64| {
        live.cycle(now);
        let view = live.report(now).unwrap().view;
        let mut queue: Vec<(String, i64, usize)> =
            view.queue.iter().map(|w| (w.name.clone(), w.submitted, w.position)).collect();
        queue.sort_by_key(|q| q.2);
        let running: Vec<(String, i64)> = view.running.iter().map(|r| (r.name.clone(), r.since)).collect();
        (queue, running)
    };
    live.rebuild_controller(&s, &cfg, T0, "start").unwrap();
    let first = snapshot(T0);
    let names: Vec<&str> = first.0.iter().map(|q| q.0.rsplit('/').next().unwrap()).collect();
    assert_eq!(
        names,
        ["team-a-early", "team-a-mid", "team-a-late"],
        "first created, first in line: {first:?}"
    );
    assert_eq!(
        first.0.iter().map(|q| q.1).collect::<Vec<_>>(),
        [T0 - 50, T0 - 40, T0 - 30],
        "submitted when created"
    );
    assert_eq!(
        first.1.iter().map(|r| r.1).collect::<Vec<_>>(),
        [T0 - 100],
        "running since its recorded admission"
    );
    // A new leader, ten minutes later: the same order, the same times, the same clocks.
    live.step_down();
    live.rebuild_controller(&s, &cfg, T0 + 600, "leader").unwrap();
    assert_eq!(snapshot(T0 + 600), first);
    let text = String::from_utf8(state.metrics.render().unwrap()).unwrap();
    for cause in ["start", "leader"] {
        assert!(text.contains(&format!("gantry_queue_rebuilds_total{{cause=\"{cause}\"}} 1")), "{text}");
    }
}

/// Stores whose tenant objects are those of the tenants file `TENANTS`; the writer of the Tenant
/// store, to change them.
fn stores_with_tenant_objects(
    nodes: &[Value],
    pods: &[Value],
) -> (Stores, reflector::store::Writer<gantry_api::crds::Tenant>) {
    let settings = gantry_core::tenancy::Settings::default();
    let tenancy = file::parse("tenants.yaml", TENANTS).unwrap();
    let (flavors, cohorts, tenants) = gantry_api::crds::tenancy_to_objects(&tenancy, &settings).unwrap();
    let (tenant_store, mut tenant_writer) = reflector::store::<gantry_api::crds::Tenant>();
    let (cohort_store, mut cohort_writer) = reflector::store::<gantry_api::crds::Cohort>();
    let (flavor_store, mut flavor_writer) = reflector::store::<gantry_api::crds::GpuFlavor>();
    for t in tenants {
        tenant_writer.apply_watcher_event(&Event::Apply(t));
    }
    for c in cohorts {
        cohort_writer.apply_watcher_event(&Event::Apply(c));
    }
    for f in flavors {
        flavor_writer.apply_watcher_event(&Event::Apply(f));
    }
    let mut s = stores(nodes, pods);
    s.tenants = Some(gantry_api::tenants::TenantObjects {
        tenants: tenant_store,
        cohorts: cohort_store,
        flavors: flavor_store,
        namespaces: reflector::store::<k8s_openapi::api::core::v1::Namespace>().0,
    });
    (s, tenant_writer)
}

/// A Tenant status write, as the leader's `Executor::publish` makes it.
fn write_status(
    s: &Stores,
    tenants: &mut reflector::store::Writer<gantry_api::crds::Tenant>,
    name: &str,
    pending: i64,
) {
    let mut t = tenant(s, name);
    t.status = Some(gantry_api::crds::TenantStatus { pending_workloads: pending, ..Default::default() });
    tenants.apply_watcher_event(&Event::Apply(t));
}

/// The Tenant object `name` as the store has it.
fn tenant(s: &Stores, name: &str) -> gantry_api::crds::Tenant {
    let store = &s.tenants.as_ref().expect("tenant objects").tenants;
    store
        .state()
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(name))
        .expect("the tenant")
        .as_ref()
        .clone()
}

#[test]
fn the_leaders_own_status_writes_change_nothing_a_quota_change_is_taken_in_place_and_a_namespace_change_rebuilds(
) {
    let waiting =
        [("early", 50), ("late", 30)].map(|(name, ago)| created(pod("team-a", name, 8, true, None), ago));
    let blocker = pod("team-b", "run", 8, false, Some("gpu-0"));
    let mut all = vec![blocker];
    all.extend(waiting);
    let (s, mut tenants) = stores_with_tenant_objects(&[node("gpu-0", 8)], &all);
    let state = AppState::new(Extender::new(Cluster::default(), scheduler(&Cluster::default()))).unwrap();
    let live = Live::new(state.clone());
    let mut cfg = config();
    cfg.tenants = Tenants::Cluster(gantry_core::tenancy::Settings::default());
    live.rebuild_cache(&s, cfg.policy, &cfg.expected);
    live.rebuild_controller(&s, &cfg, T0, "start").unwrap();
    // 100 status writes (as the leader's Executor::publish makes): no rebuild.
    for i in 0..100 {
        write_status(&s, &mut tenants, "team-a", i);
        live.tenant_objects_changed();
        assert!(!live.take_tenancy_change(&s, &cfg.tenants, T0), "status write {i}");
    }
    let updates = || state.metrics.tenancy_updates.get();
    assert_eq!(updates(), 0, "status writes change no tenancy");
    // A change to team-a's quota is taken in place: no rebuild, the queue's quota is the new one.
    let mut t = tenant(&s, "team-a");
    t.spec.quotas.values_mut().next().expect("a quota").nominal = "16".into();
    tenants.apply_watcher_event(&Event::Apply(t));
    live.tenant_objects_changed();
    assert!(!live.take_tenancy_change(&s, &cfg.tenants, T0 + 1), "a quota change needs no rebuild");
    assert_eq!(updates(), 1);
    let nominal = |live: &Live| {
        live.tenant_statuses().into_iter().find(|(n, _)| n == "team-a").and_then(|(_, st)| st.gpus_nominal)
    };
    assert_eq!(nominal(&live).as_deref(), Some("16"));
    assert!(!live.take_tenancy_change(&s, &cfg.tenants, T0 + 2), "seen once");
    // A namespace that moves to team-a changes which tenant pods belong to: a rebuild.
    let mut t = tenant(&s, "team-a");
    t.spec.namespaces.push("team-c".into());
    tenants.apply_watcher_event(&Event::Apply(t));
    live.tenant_objects_changed();
    assert!(live.take_tenancy_change(&s, &cfg.tenants, T0 + 3), "a namespace change rebuilds");
    assert_eq!(updates(), 1);
}

#[test]
fn reclaim_happens_within_the_window_while_tenants_and_pods_churn() {
    // team-b borrows all of gpu-1 (8 beyond its nominal 8 on gpu-0); team-a (owed 8) waits. Every
    // 1.5 s team-b's CPU pods come and go and the leader writes Tenant statuses, as in a live
    // cluster: none of it restarts the reclaim window (5 min in the fixture).
    let mut b0 = created(pod("team-b", "b0", 8, false, Some("gpu-0")), 900);
    b0["metadata"]["annotations"] =
        json!({"gantry.dev/placement": format!("gpu-0:0,1,2,3,4,5,6,7@{}", T0 - 900)});
    let mut b1 = created(pod("team-b", "b1", 8, false, Some("gpu-1")), 900);
    b1["metadata"]["annotations"] =
        json!({"gantry.dev/placement": format!("gpu-1:0,1,2,3,4,5,6,7@{}", T0 - 800)});
    let owed = created(pod("team-a", "owed", 8, true, None), 0);
    let (s, mut tenants) = stores_with_tenant_objects(&[node("gpu-0", 8), node("gpu-1", 8)], &[b0, b1, owed]);
    let state = AppState::new(Extender::new(Cluster::default(), scheduler(&Cluster::default()))).unwrap();
    let live = Live::new(state.clone());
    let mut cfg = config();
    cfg.tenants = Tenants::Cluster(gantry_core::tenancy::Settings::default());
    live.rebuild_cache(&s, cfg.policy, &cfg.expected);
    live.rebuild_controller(&s, &cfg, T0, "start").unwrap();
    let window = 300;
    let mut evicted_at = None;
    let mut t = T0;
    let mut i = 0;
    while t <= T0 + window + 30 && evicted_at.is_none() {
        // Churn: a CPU pod of team-b comes and goes; the leader writes a Tenant status.
        let cpu = pod("team-b", &format!("etl-{i}"), 0, false, Some("gpu-0"));
        live.pod_applied(&cpu, t);
        live.pod_deleted(&format!("team-b-etl-{i}"), t);
        write_status(&s, &mut tenants, "team-b", i);
        live.tenant_objects_changed();
        assert!(!live.take_tenancy_change(&s, &cfg.tenants, t), "a status write is no tenancy change");
        let actions = live.cycle(t);
        if actions.iter().any(|a| matches!(a, Action::Evict { pod, .. } if pod.namespace == "team-b")) {
            evicted_at = Some(t);
        }
        t += 1;
        i += 1;
        // 1.5 s apart, in whole seconds: alternate 1 and 2.
        t += i % 2;
    }
    let at = evicted_at.unwrap_or_else(|| {
        panic!(
            "team-b's borrowed workload is reclaimed: {:?}",
            live.report(t).map(|r| (r.view.queue, r.view.running))
        )
    });
    assert!(at <= T0 + window + 2, "reclaimed at +{} s: within the window plus one cycle", at - T0);
    let text = String::from_utf8(state.metrics.render().unwrap()).unwrap();
    assert!(!text.contains("gantry_queue_rebuilds_total{cause=\"tenants\"}"), "{text}");
}

#[test]
fn a_pod_is_read_once_per_version_and_rebuilds_read_no_pod_again() {
    // Rebuilds take pods as read when their events came, not by reading every stored object again:
    // the record of a pod is the same allocation until its resourceVersion changes, and a pod the
    // store no longer has is forgotten at the next rebuild.
    let versioned = |name: &str, version: &str| -> Pod {
        let mut p = pod("team-a", name, 1, true, None);
        p["metadata"]["resourceVersion"] = json!(version);
        serde_json::from_value(p).unwrap()
    };
    let (s, _) = stores_with_tenant_objects(&[node("gpu-0", 8)], &[]);
    let state = AppState::new(Extender::new(Cluster::default(), scheduler(&Cluster::default()))).unwrap();
    let live = Live::new(state);
    let first = live.record(&versioned("w", "1")).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &live.record(&versioned("w", "1")).unwrap()),
        "same version: no new read"
    );
    let changed = live.record(&versioned("w", "2")).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &changed), "a new version is read again");
    assert_eq!(changed.uid, first.uid);
    // The store does not have the pod: a rebuild drops its record, so the next one reads it anew.
    let cfg = config();
    live.rebuild_cache(&s, cfg.policy, &cfg.expected);
    assert!(!std::sync::Arc::ptr_eq(&changed, &live.record(&versioned("w", "2")).unwrap()));
}
