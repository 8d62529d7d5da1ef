//! A live cluster: nodes that are added, changed, shrunk under running pods, removed and added
//! again; GPU models that appear after the queue starts; room taken by pods the queue does not
//! manage. Scenario tests first (table-driven where the cases share a shape), then property tests
//! over random interleavings, then the equivalence of a queue fed its nodes one by one with one
//! built with them.

mod common;

use common::*;
use gantry_core::model::{
    best_fit_gpus, fits, Cluster, ModelCatalog, ModelError, ModelSet, Node, NodeId, Placement, PodRequest,
    GPU_MILLI,
};
use gantry_core::queue::{
    pod_id, CycleOutcome, Mode, Queue, Workload, WorkloadId, EXTERNAL_POD_BIT, MAX_WORKLOAD_ID,
};
use gantry_core::tenancy::{Kind, Seconds, Tenancy};
use gantry_core::{PolicyKind, Scheduler};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};
use std::collections::{BTreeMap, HashMap};

const CORES: u32 = 64_000;
const MEM: u64 = 512 * 1024;

fn catalog(names: &[&str]) -> ModelCatalog {
    let mut m = ModelCatalog::default();
    for n in names {
        m.intern(n).unwrap();
    }
    m
}

fn whole(count: u32) -> PodRequest {
    PodRequest::whole_gpus(1000 * count, 1024, count)
}

fn on(node: NodeId, gpus: &[u32]) -> Placement {
    Placement { node, gpus: gpus.iter().map(|&g| (g, GPU_MILLI)).collect() }
}

/// `(cpu_free, memory_free, gpu_free)` of a node.
fn free(n: &Node) -> (u32, u64, Vec<u32>) {
    (n.cpu_free, n.memory_free, n.gpu_free.clone())
}

/// The queue's invariants, and the cluster holds exactly the running pods and the external ones.
fn consistent(q: &Queue) {
    if let Err(e) = q.check_invariants() {
        panic!("invariant broken: {e}");
    }
    let pods: usize = q.running_workloads().map(|(_, r)| r.pods.len()).sum();
    assert_eq!(q.cluster().placed_pods(), pods + q.external_pods());
}

fn check(c: &Cluster) {
    if let Err(e) = c.check() {
        panic!("cluster accounting: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster: upsert and remove
// ---------------------------------------------------------------------------------------------

/// One node `n0` (8 A100s, 64 cores, 512 GiB) runs `pods` (request, GPUs), then is upserted as
/// `after`: its free resources, whether it is overcommitted, whether a 1-GPU pod fits it, and
/// its free resources once every pod is released.
struct UpsertCase {
    name: &'static str,
    pods: Vec<(PodRequest, Vec<u32>)>,
    after: Node,
    free: (u32, u64, Vec<u32>),
    overcommitted: bool,
    fits_one_gpu: bool,
    free_when_empty: (u32, u64, Vec<u32>),
}

#[test]
fn upserting_a_node_under_running_pods() {
    let a100 = Some(gantry_core::ModelId(0));
    let node = |cpu: u32, mem: u64, gpus: u32| Node::new("n0", cpu, mem, gpus, a100);
    let mut failed_gpu = node(CORES, MEM, 8);
    failed_gpu.gpu_free[7] = 0;
    failed_gpu.gpu_free_total -= GPU_MILLI;
    let cases = vec![
        UpsertCase {
            name: "unchanged",
            pods: vec![(whole(2), vec![0, 1])],
            after: node(CORES, MEM, 8),
            free: (CORES - 2000, MEM - 1024, vec![0, 0, 1000, 1000, 1000, 1000, 1000, 1000]),
            overcommitted: false,
            fits_one_gpu: true,
            free_when_empty: (CORES, MEM, vec![1000; 8]),
        },
        UpsertCase {
            name: "grows",
            pods: vec![(whole(2), vec![0, 1])],
            after: node(2 * CORES, 2 * MEM, 10),
            free: (2 * CORES - 2000, 2 * MEM - 1024, [vec![0, 0], vec![1000; 8]].concat()),
            overcommitted: false,
            fits_one_gpu: true,
            free_when_empty: (2 * CORES, 2 * MEM, vec![1000; 10]),
        },
        UpsertCase {
            name: "shrinks, still above what runs",
            pods: vec![(whole(2), vec![0, 1])],
            after: node(4000, 4096, 4),
            free: (2000, 3072, vec![0, 0, 1000, 1000]),
            overcommitted: false,
            fits_one_gpu: true,
            free_when_empty: (4000, 4096, vec![1000; 4]),
        },
        UpsertCase {
            name: "shrinks to exactly what runs",
            pods: vec![(whole(2), vec![0, 1])],
            after: node(2000, 1024, 2),
            free: (0, 0, vec![0, 0]),
            overcommitted: false,
            fits_one_gpu: false,
            free_when_empty: (2000, 1024, vec![1000; 2]),
        },
        UpsertCase {
            name: "CPU below what runs",
            pods: vec![(whole(2), vec![0, 1])],
            after: node(1000, MEM, 8),
            free: (0, 0, vec![0; 8]),
            overcommitted: true,
            fits_one_gpu: false,
            free_when_empty: (1000, MEM, vec![1000; 8]),
        },
        UpsertCase {
            name: "memory below what runs",
            pods: vec![(whole(1), vec![3]), (whole(1), vec![4])],
            after: node(CORES, 1500, 8),
            free: (0, 0, vec![0; 8]),
            overcommitted: true,
            fits_one_gpu: false,
            free_when_empty: (CORES, 1500, vec![1000; 8]),
        },
        UpsertCase {
            name: "loses the GPU a pod runs on",
            pods: vec![(whole(1), vec![6])],
            after: node(CORES, MEM, 4),
            free: (0, 0, vec![0; 4]),
            overcommitted: true,
            fits_one_gpu: false,
            free_when_empty: (CORES, MEM, vec![1000; 4]),
        },
        UpsertCase {
            name: "a GPU fails under its pod",
            pods: vec![(whole(1), vec![7])],
            after: failed_gpu.clone(),
            free: (0, 0, vec![0; 8]),
            overcommitted: true,
            fits_one_gpu: false,
            free_when_empty: (CORES, MEM, [vec![1000; 7], vec![0]].concat()),
        },
        UpsertCase {
            name: "a free GPU fails",
            pods: vec![(whole(1), vec![0])],
            after: failed_gpu,
            free: (CORES - 1000, MEM - 1024, [vec![0], vec![1000; 6], vec![0]].concat()),
            overcommitted: false,
            fits_one_gpu: true,
            free_when_empty: (CORES, MEM, [vec![1000; 7], vec![0]].concat()),
        },
        UpsertCase {
            name: "loses all its GPUs",
            pods: vec![(PodRequest::cpu_only(1000, 1024), vec![])],
            after: node(CORES, MEM, 0),
            free: (CORES - 1000, MEM - 1024, vec![]),
            overcommitted: false,
            fits_one_gpu: false,
            free_when_empty: (CORES, MEM, vec![]),
        },
    ];
    for case in cases {
        let mut c = Cluster::new(catalog(&["A100"]), vec![node(CORES, MEM, 8)]);
        for (i, (pod, gpus)) in case.pods.iter().enumerate() {
            c.allocate(i as u64, pod, on(0, gpus)).unwrap();
        }
        let generation = c.nodes[0].generation;
        assert_eq!(c.upsert_node(case.after.clone()), Ok(0), "{}", case.name);
        check(&c);
        let n = &c.nodes[0];
        assert_eq!(free(n), case.free, "{}: free after the upsert", case.name);
        assert!(n.generation > generation, "{}: generation moves on", case.name);
        assert_eq!(n.cpu_capacity, case.after.cpu_capacity, "{}", case.name);
        assert_eq!(n.gpu_count(), case.after.gpu_count(), "{}", case.name);
        assert_eq!(c.is_overcommitted(0), case.overcommitted, "{}", case.name);
        assert_eq!(c.is_open(0), !case.overcommitted, "{}", case.name);
        assert_eq!(fits(n, &whole(1)).is_ok(), case.fits_one_gpu, "{}", case.name);
        assert_eq!(c.placed_pods(), case.pods.len(), "{}: pods stay placed", case.name);
        let kinds = n.gpu_pod_kinds.clone();
        for i in 0..case.pods.len() {
            c.release(i as u64).unwrap();
            check(&c);
        }
        assert!(c.is_open(0), "{}: open once its pods left", case.name);
        assert_eq!(free(&c.nodes[0]), case.free_when_empty, "{}: free when empty", case.name);
        assert!(c.nodes[0].gpu_pod_kinds.is_empty(), "{}: pod kinds {kinds:?} counted out", case.name);
    }
}

#[test]
fn an_overcommitted_node_takes_nothing_until_enough_pods_leave() {
    let a100 = Some(gantry_core::ModelId(0));
    let mut c = Cluster::new(catalog(&["A100"]), vec![Node::new("n0", CORES, MEM, 8, a100)]);
    for i in 0..4u32 {
        c.allocate(i as u64, &whole(2), on(0, &[2 * i, 2 * i + 1])).unwrap();
    }
    // 8 GPUs run; the node now has 4.
    c.upsert_node(Node::new("n0", CORES, MEM, 4, a100)).unwrap();
    assert!(c.is_overcommitted(0));
    assert_eq!(c.closed_nodes(), 1);
    let err = c.allocate(9, &whole(1), on(0, &[0])).unwrap_err();
    assert!(matches!(err, ModelError::DoesNotFit { .. }), "{err}");
    // Pods on GPUs 4-7 leave: the remaining two pods hold GPUs 0-3, exactly the node.
    c.release(2).unwrap();
    assert!(c.is_overcommitted(0), "GPU 6 and 7 are still held");
    c.release(3).unwrap();
    check(&c);
    assert!(c.is_open(0));
    assert_eq!(c.closed_nodes(), 0);
    assert_eq!(c.nodes[0].gpu_free, vec![0; 4]);
    c.release(0).unwrap();
    assert_eq!(c.nodes[0].gpu_free, vec![1000, 1000, 0, 0]);
    c.allocate(9, &whole(2), on(0, &[0, 1])).unwrap();
    check(&c);
}

#[test]
fn removing_and_adding_a_node_back() {
    let mut models = catalog(&["A100", "H100"]);
    let (a100, h100) = (models.get("A100"), models.get("H100"));
    let nodes = vec![Node::new("n0", CORES, MEM, 8, a100), Node::new("n1", CORES, MEM, 8, a100)];
    let mut c = Cluster::new(models.clone(), nodes);
    c.allocate(1, &whole(4), on(0, &[0, 1, 2, 3])).unwrap();
    assert_eq!(c.gpu_capacity(), 16_000);
    assert_eq!(c.gpu_allocated(), 4000);

    assert_eq!(c.remove_node("n0"), Some(0));
    check(&c);
    assert_eq!(c.remove_node("n0"), None, "already removed");
    assert_eq!(c.remove_node("nope"), None);
    assert!(!c.in_service(0) && !c.is_open(0));
    assert_eq!(c.node_id("n0"), Some(0), "ids outlive removal");
    assert_eq!(c.gpu_capacity(), 8000, "a removed node is left out of capacity");
    assert_eq!(c.gpu_allocated(), 0);
    assert_eq!(c.placement(1).map(|p| p.node), Some(0), "its pods stay placed");
    assert_eq!(
        c.allocate(2, &PodRequest::cpu_only(0, 0), on(0, &[])),
        Err(ModelError::NodeRemoved("n0".into())),
        "even a pod that asks for nothing"
    );
    // The scheduler skips it, and does not count it.
    let mut s = Scheduler::new(PolicyKind::BestFit.build(&c, &[]));
    let big = PodRequest::whole_gpus(1000, 1024, 8);
    assert_eq!(s.decide(&c, &big, 0).map(|p| p.node), Ok(1));
    c.allocate(3, &big, on(1, &[0, 1, 2, 3, 4, 5, 6, 7])).unwrap();
    let why = s.decide(&c, &whole(1), 0).unwrap_err();
    assert_eq!(why.nodes, 1, "{why}");
    let scores = s.scores(&c, &PodRequest::cpu_only(0, 0), &[Some(0), Some(1), Some(7), None]);
    assert!(
        scores[0].is_none() && scores[1].is_some() && scores[2].is_none() && scores[3].is_none(),
        "{scores:?}"
    );

    // Back, as an H100 node with 4 GPUs, while pod 1 (4 GPUs) still runs there.
    let generation = c.nodes[0].generation;
    assert_eq!(c.upsert_node(Node::new("n0", CORES, MEM, 4, h100)), Ok(0));
    check(&c);
    assert!(c.nodes[0].generation > generation);
    assert!(c.in_service(0) && c.is_open(0));
    assert_eq!(c.nodes[0].model, h100);
    assert_eq!(c.nodes[0].gpu_free, vec![0; 4]);
    assert_eq!(c.nodes[0].cpu_free, CORES - 4000);
    c.release(1).unwrap();
    assert_eq!(c.nodes[0].gpu_free, vec![1000; 4]);
    // A node of a new name gets the next id; a new model must be in the catalog first.
    let b200 = Node::new("n2", CORES, MEM, 8, Some(gantry_core::ModelId(2)));
    assert!(matches!(c.upsert_node(b200), Err(ModelError::BadNode { .. })));
    assert_eq!(c.nodes.len(), 2, "a refused node changes nothing");
    let b200 = models.intern("B200").unwrap();
    c.models = models;
    assert_eq!(c.upsert_node(Node::new("n2", CORES, MEM, 8, Some(b200))), Ok(2));
    assert_eq!(c.node_id("n2"), Some(2));
    check(&c);
}

#[test]
fn inconsistent_nodes_are_refused() {
    let a100 = Some(gantry_core::ModelId(0));
    let base = Node::new("n0", CORES, MEM, 2, a100);
    let mut too_much_gpu = base.clone();
    too_much_gpu.gpu_free[0] = 1500;
    too_much_gpu.gpu_free_total = 2500;
    let mut wrong_total = base.clone();
    wrong_total.gpu_free_total = 1000;
    let mut cpu_over = base.clone();
    cpu_over.cpu_free = CORES + 1;
    let mut mem_over = base.clone();
    mem_over.memory_free = MEM + 1;
    let unknown_model = Node::new("n0", CORES, MEM, 2, Some(gantry_core::ModelId(5)));
    for (name, node) in [
        ("a GPU over 1000 milli", too_much_gpu),
        ("gpu_free_total out of step", wrong_total),
        ("CPU free above capacity", cpu_over),
        ("memory free above capacity", mem_over),
        ("a model not in the catalog", unknown_model),
    ] {
        let mut c = Cluster::new(catalog(&["A100"]), vec![base.clone()]);
        c.allocate(1, &whole(1), on(0, &[0])).unwrap();
        let before = c.nodes.clone();
        assert!(matches!(c.upsert_node(node), Err(ModelError::BadNode { .. })), "{name}");
        assert_eq!(c.nodes, before, "{name}: nothing changed");
        check(&c);
    }
    // A node without GPUs has no model, whatever it says.
    let mut c = Cluster::new(catalog(&["A100"]), vec![]);
    let mut cpu = Node::new("c0", CORES, MEM, 0, None);
    cpu.model = a100;
    assert_eq!(c.upsert_node(cpu), Ok(0));
    assert_eq!(c.nodes[0].model, None);
}

#[test]
fn cluster_new_keeps_nodes_as_given() {
    let a100 = Some(gantry_core::ModelId(0));
    let mut used = Node::new("n1", CORES, MEM, 4, a100);
    used.gpu_free[0] = 0;
    used.gpu_free_total = 3000;
    used.cpu_free = 1000;
    let nodes = vec![Node::new("n0", CORES, MEM, 8, a100), used];
    let c = Cluster::new(catalog(&["A100"]), nodes.clone());
    assert_eq!(c.nodes, nodes);
    check(&c);
    assert_eq!(c.closed_nodes(), 0);
    assert_eq!((c.node_id("n0"), c.node_id("n1"), c.node_id("n2")), (Some(0), Some(1), None));
    // A node pushed directly is adopted as it is.
    let mut c = c;
    c.nodes.push(Node::new("n2", CORES, MEM, 2, a100));
    assert_eq!(c.node_id("n2"), Some(2));
    c.allocate(1, &whole(2), on(2, &[0, 1])).unwrap();
    check(&c);
}

// ---------------------------------------------------------------------------------------------
// Scheduler: a growing cluster
// ---------------------------------------------------------------------------------------------

#[test]
fn the_score_cache_follows_a_growing_cluster() {
    let a100 = Some(gantry_core::ModelId(0));
    let c = Cluster::new(catalog(&["A100"]), vec![Node::new("n0", CORES, MEM, 8, a100)]);
    for kind in [PolicyKind::BestFit, PolicyKind::Fgd, PolicyKind::Gantry, PolicyKind::Packing] {
        let mut s = Scheduler::new(kind.build(&c, &[whole(1), whole(2)]));
        for pod in [whole(1), whole(2), PodRequest::shared_gpu(500, 512, 300)] {
            s.decide(&c, &pod, 1).unwrap();
        }
        let mut c = c.clone();
        // Nodes come one at a time, each tighter than the last; best-fit must find the newest.
        for i in 1..20u32 {
            let name = format!("n{i}");
            c.upsert_node(Node::new(&name, CORES, MEM, 8, a100)).unwrap();
            c.allocate(u64::from(i), &whole(7), on(i as usize, &[0, 1, 2, 3, 4, 5, 6])).unwrap();
            let p = s.decide(&c, &whole(1), 2).unwrap();
            assert!(c.in_service(p.node), "{kind}");
            let scores = s.scores(&c, &whole(1), &[Some(0), Some(i as usize)]);
            assert!(scores.iter().all(Option::is_some), "{kind}: {scores:?}");
        }
        let best = s.decide(&c, &whole(1), 3).unwrap();
        if kind == PolicyKind::BestFit {
            assert_ne!(best.node, 0, "an almost full node beats the empty one");
        }
        // A node that shrinks to what runs on it is scored afresh (its generation moved on)
        // and is no choice any more.
        let target = best.node;
        let name = c.nodes[target].name.clone();
        let used = c.nodes[target].gpu_free.iter().filter(|&&f| f < GPU_MILLI).count() as u32;
        c.upsert_node(Node::new(&name, CORES, MEM, used, a100)).unwrap();
        check(&c);
        let again = s.decide(&c, &whole(1), 3).unwrap();
        assert_ne!(again.node, target, "{kind}: the full node is no choice");
    }
}

// ---------------------------------------------------------------------------------------------
// Queue: nodes, models and external pods
// ---------------------------------------------------------------------------------------------

fn one_tenant(flavors: &[&str], gpus: u64) -> Tenancy {
    let quotas: Vec<Q> = flavors.iter().map(|_| Q::n(gpus)).collect();
    TenancyBuilder::new(flavors).tenant("alpha", None, &quotas).build()
}

fn live_queue(tenancy: Tenancy, models: &[&str]) -> Queue {
    let cluster = Cluster::new(catalog(models), vec![]);
    let scheduler = Scheduler::new(PolicyKind::BestFit.build(&cluster, &[]));
    Queue::new_live(tenancy, cluster, scheduler, Mode::Quota, NOV1)
}

fn node_of(q: &Queue, id: WorkloadId) -> Vec<String> {
    let r = q.running(id).expect("running");
    r.pods
        .iter()
        .map(|(pod, _)| {
            let p = q.cluster().placement(*pod).expect("placed");
            q.cluster().nodes[p.node].name.clone()
        })
        .collect()
}

#[test]
fn a_flavor_starts_working_when_a_node_of_its_model_appears() {
    let t = one_tenant(&["A100", "H100"], 16);
    // Built strictly, the queue refuses a flavor whose model no node has.
    let cluster = Cluster::new(catalog(&["A100"]), vec![]);
    let s = Scheduler::new(PolicyKind::BestFit.build(&cluster, &[]));
    assert!(Queue::new(t.clone(), cluster, s, Mode::Quota, NOV1).is_err());

    let mut q = live_queue(t, &["A100"]);
    let a100 = q.intern_model("A100").unwrap();
    q.upsert_node(Node::new("a0", CORES, MEM, 8, Some(a100))).unwrap();
    consistent(&q);
    // Only A100 nodes: the H100 flavor is unbound, and GPU work goes to A100.
    assert_eq!(q.flavors.model_of(1), None);
    submit(&mut q, WB::new(1, 0).gpus(1, 8).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1]);

    // The H100 model is named: its flavor is bound but has no nodes, so H100 work can never run.
    let h100 = q.intern_model("H100").unwrap();
    assert_eq!(q.intern_model("H100"), Ok(h100), "interning is idempotent");
    assert_eq!(q.flavors.model_of(1), Some(h100));
    consistent(&q);
    let pinned = ModelSet::from_iter([h100]);
    let early = WB::new(2, 0).gpus(2, 8).models(pinned).build();
    assert!(q.submit(early, NOV1).is_err());

    // H100 nodes appear: the same work is taken, and runs there.
    for i in 0..2 {
        q.upsert_node(Node::new(format!("h{i}"), CORES, MEM, 8, Some(h100))).unwrap();
    }
    consistent(&q);
    let pinned = ModelSet::from_iter([h100]);
    submit(&mut q, WB::new(3, 0).gpus(2, 8).models(pinned).build(), NOV1 + 1);
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 1)), vec![3]);
    assert_eq!(node_of(&q, 3), vec!["h0", "h1"]);
    assert_eq!(q.capacity(1), g(16));
    consistent(&q);
}

#[test]
fn a_pending_workload_starts_when_a_node_is_added_or_grows() {
    let t = one_tenant(&["A100"], 64);
    let mut q = live_queue(t, &["A100"]);
    let a100 = Some(q.intern_model("A100").unwrap());
    q.upsert_node(Node::new("n0", CORES, MEM, 8, a100)).unwrap();
    q.upsert_node(Node::new("n1", CORES, MEM, 4, a100)).unwrap();
    submit(&mut q, WB::new(1, 0).gpus(1, 8).build(), NOV1);
    submit(&mut q, WB::new(2, 0).gpus(1, 8).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1]);
    // The shape failed; nothing changes, nothing starts.
    assert!(q.cycle(NOV1 + 10).admitted.is_empty());
    // n1 grows to 8 GPUs: the failed shape is tried again, at once.
    q.upsert_node(Node::new("n1", CORES, MEM, 8, a100)).unwrap();
    consistent(&q);
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 11)), vec![2]);
    assert_eq!(node_of(&q, 2), vec!["n1"]);
    // A third waits for a new node.
    submit(&mut q, WB::new(3, 0).gpus(1, 8).build(), NOV1 + 12);
    assert!(q.cycle(NOV1 + 12).admitted.is_empty());
    q.upsert_node(Node::new("n2", CORES, MEM, 8, a100)).unwrap();
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 13)), vec![3]);
    assert_eq!(node_of(&q, 3), vec!["n2"]);
    consistent(&q);
}

#[test]
fn a_node_that_gains_room_retries_shapes_that_failed_on_it() {
    let t = one_tenant(&["A100"], 64);
    let mut q = live_queue(t, &["A100"]);
    let a100 = Some(q.intern_model("A100").unwrap());
    q.upsert_node(Node::new("n0", CORES, MEM, 8, a100)).unwrap();
    // A pod of another namespace takes most of the CPU: the GPUs are idle, yet an 8-GPU pod
    // with 8 cores fits nowhere, and its shape is remembered as failed.
    q.place_external(1, &PodRequest::cpu_only(CORES - 4000, 0), on(0, &[])).unwrap();
    submit(&mut q, WB::new(1, 0).gpus(1, 8).build(), NOV1);
    assert!(q.cycle(NOV1).admitted.is_empty());
    assert!(q.cycle(NOV1 + 60).admitted.is_empty());
    // The node gets more cores: the shape is tried again.
    q.upsert_node(Node::new("n0", 2 * CORES, MEM, 8, a100)).unwrap();
    consistent(&q);
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 61)), vec![1]);
    consistent(&q);
}

#[test]
fn a_shrunken_node_takes_nothing_until_its_work_ends() {
    let t = one_tenant(&["A100"], 64);
    let mut q = live_queue(t, &["A100"]);
    let a100 = Some(q.intern_model("A100").unwrap());
    q.upsert_node(Node::new("n0", CORES, MEM, 8, a100)).unwrap();
    submit(&mut q, WB::new(1, 0).gpus(1, 8).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1]);
    // Two GPUs are gone from under workload 1: the node is overcommitted.
    q.upsert_node(Node::new("n0", CORES, MEM, 6, a100)).unwrap();
    assert!(q.cluster().is_overcommitted(0));
    consistent(&q);
    assert_eq!(q.capacity(0), g(6));
    submit(&mut q, WB::new(2, 0).gpus(1, 1).build(), NOV1 + 1);
    assert!(q.cycle(NOV1 + 1).admitted.is_empty());
    assert!(q.running(1).is_some(), "the work that runs keeps running");
    q.finish(1, NOV1 + 2);
    consistent(&q);
    assert!(q.cluster().is_open(0));
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 2)), vec![2]);
    consistent(&q);
}

/// Two tenants of 8 A100s each in one cohort, on nodes n0 and n1 (8 GPUs each); beta borrows
/// all 16 GPUs with workload 1 (on n0, within its quota) and workload 2 (on n1, borrowed).
fn beta_borrows_everything() -> Queue {
    let t = TenancyBuilder::new(&["A100"])
        .timing(0, 0)
        .cohort("all", None)
        .tenant("alpha", Some("all"), &[Q::n(8)])
        .tenant("beta", Some("all"), &[Q::n(8)])
        .build();
    let mut q = live_queue(t, &["A100"]);
    let a100 = Some(q.intern_model("A100").unwrap());
    q.upsert_node(Node::new("n0", CORES, MEM, 8, a100)).unwrap();
    q.upsert_node(Node::new("n1", CORES, MEM, 8, a100)).unwrap();
    submit(&mut q, WB::new(1, 1).gpus(1, 8).build(), NOV1);
    submit(&mut q, WB::new(2, 1).gpus(1, 8).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1, 2]);
    assert_eq!((node_of(&q, 1), node_of(&q, 2)), (vec!["n0".into()], vec!["n1".into()]));
    q
}

#[test]
fn work_on_a_removed_node_is_no_preemption_victim() {
    let mut q = beta_borrows_everything();
    // n1 goes, with the borrowed workload on it.
    assert_eq!(q.remove_node("n1"), Some(1));
    assert_eq!(q.remove_node("n1"), None);
    consistent(&q);
    assert_eq!(q.capacity(0), g(8));
    // alpha is owed 8 GPUs, past its reclaim window at once. Stopping workload 2 would free
    // quota but no room (and its pods could not be put back), so nothing is stopped.
    submit(&mut q, WB::new(3, 0).gpus(1, 8).build(), NOV1 + 1);
    let out = q.cycle(NOV1 + 1);
    assert!(out.admitted.is_empty() && out.preempted.is_empty(), "{out:?}");
    consistent(&q);
    // The driver learns workload 2's pods are gone; n1 comes back, and alpha starts there.
    q.finish(2, NOV1 + 2);
    consistent(&q);
    assert!(q.cycle(NOV1 + 2).admitted.is_empty());
    q.upsert_node(Node::new("n1", CORES, MEM, 8, Some(gantry_core::ModelId(0)))).unwrap();
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 3)), vec![3]);
    assert_eq!(node_of(&q, 3), vec!["n1"]);
    consistent(&q);
}

#[test]
fn reclaim_takes_work_on_the_nodes_in_service() {
    let mut q = beta_borrows_everything();
    // n0 goes, with beta's workload within its quota; the borrowed one on n1 is reclaimed.
    assert_eq!(q.remove_node("n0"), Some(0));
    submit(&mut q, WB::new(3, 0).gpus(1, 8).build(), NOV1 + 1);
    let out = q.cycle(NOV1 + 1);
    assert_eq!(admitted_ids(&out), vec![3]);
    assert_eq!(out.preempted.iter().map(|p| p.victim).collect::<Vec<_>>(), vec![2]);
    assert_eq!(node_of(&q, 3), vec!["n1"]);
    consistent(&q);
    // Workload 1's pods are gone; n0 comes back and the preempted workload starts there.
    q.finish(1, NOV1 + 2);
    q.upsert_node(Node::new("n0", CORES, MEM, 8, Some(gantry_core::ModelId(0)))).unwrap();
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 3)), vec![2]);
    assert_eq!(node_of(&q, 2), vec!["n0"]);
    consistent(&q);
}

#[test]
fn quota_charged_on_a_removed_node_does_not_hide_free_room() {
    let t = one_tenant(&["A100"], 64);
    let mut q = live_queue(t, &["A100"]);
    let a100 = Some(q.intern_model("A100").unwrap());
    q.upsert_node(Node::new("n0", CORES, MEM, 8, a100)).unwrap();
    q.upsert_node(Node::new("n1", CORES, MEM, 8, a100)).unwrap();
    submit(&mut q, WB::new(1, 0).gpus(1, 8).build(), NOV1);
    q.cycle(NOV1);
    let gone = &node_of(&q, 1)[0];
    q.remove_node(&gone.clone());
    // Capacity 8, usage 8, yet the other node is wholly free.
    submit(&mut q, WB::new(2, 0).gpus(1, 8).build(), NOV1 + 1);
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 1)), vec![2]);
    assert_ne!(&node_of(&q, 2)[0], gone);
    consistent(&q);
}

#[test]
fn external_pods_take_room_and_give_it_back() {
    let t = TenancyBuilder::new(&["A100", "cpu"]).tenant("alpha", None, &[Q::n(64), Q::n(256)]).build();
    let mut q = live_queue(t, &["A100"]);
    let a100 = Some(q.intern_model("A100").unwrap());
    q.upsert_node(Node::new("n0", CORES, MEM, 8, a100)).unwrap();
    let cpu_flavor = 1;
    assert_eq!(q.capacity(cpu_flavor), u64::from(CORES));

    // Pods of another namespace take 6 GPUs; one of them has the very number of the first pod
    // of workload 1, and the two never collide.
    let same = pod_id(1, 0);
    let two = PodRequest::whole_gpus(2000, 2048, 2);
    let four = PodRequest::whole_gpus(2000, 2048, 4);
    q.place_external(same, &two, on(0, &[6, 7])).unwrap();
    q.place_external(2, &four, on(0, &[0, 1, 2, 3])).unwrap();
    assert_eq!(q.external_pods(), 2);
    consistent(&q);
    submit(&mut q, WB::new(1, 0).gpus(1, 4).build(), NOV1);
    assert!(q.cycle(NOV1).admitted.is_empty());
    // Wrong uses fail and change nothing.
    let gpu5 = on(0, &[5]);
    assert!(q.place_external(same, &whole(1), gpu5.clone()).is_err(), "id in use");
    assert!(q.place_external(EXTERNAL_POD_BIT | 3, &whole(1), gpu5.clone()).is_err(), "id too large");
    assert!(q.place_external(3, &whole(1), on(0, &[6])).is_err(), "GPU taken");
    assert!(q.place_external(3, &whole(1), on(5, &[0])).is_err(), "no such node");
    assert!(q.release_external(99).is_err(), "never placed");
    assert!(q.release_external(EXTERNAL_POD_BIT).is_err());
    assert_eq!(q.external_pods(), 2);
    consistent(&q);

    q.release_external(2).unwrap();
    consistent(&q);
    let out = q.cycle(NOV1 + 1);
    assert_eq!(admitted_ids(&out), vec![1]);
    assert_eq!(out.admitted[0].pods[0].0, same, "the queue's own pod id");
    assert_eq!(q.cluster().placement(same).map(|p| p.gpus.len()), Some(4));
    assert_eq!(q.cluster().placement(same | EXTERNAL_POD_BIT).map(|p| p.gpus.len()), Some(2));
    assert!(q.release_external(2).is_err(), "released already");
    consistent(&q);

    // A CPU pod that takes every core left blocks GPU work too, until it goes.
    let left = q.cluster().nodes[0].cpu_free;
    q.place_external(7, &PodRequest::cpu_only(left, 0), on(0, &[])).unwrap();
    submit(&mut q, WB::new(2, 0).gpus(1, 1).build(), NOV1 + 2);
    assert!(q.cycle(NOV1 + 2).admitted.is_empty());
    assert!(q.cycle(NOV1 + 3).admitted.is_empty());
    q.release_external(7).unwrap();
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 4)), vec![2]);
    // No external pod on a removed node; releasing one there works.
    q.remove_node("n0");
    assert!(q.place_external(8, &PodRequest::cpu_only(1, 0), on(0, &[])).is_err());
    q.release_external(same).unwrap();
    assert_eq!(q.external_pods(), 0);
    consistent(&q);
}

#[test]
fn workload_ids_leave_the_top_bit_to_external_pods() {
    let t = one_tenant(&["A100"], 8);
    let mut q = queue(t, a100s(1, 8), NOV1);
    let max = WB::new(MAX_WORKLOAD_ID, 0).gpus(1, 1).build();
    submit(&mut q, max, NOV1);
    assert!(q.submit(WB::new(MAX_WORKLOAD_ID + 1, 0).gpus(1, 1).build(), NOV1).is_err());
    let out = q.cycle(NOV1);
    let pod = out.admitted[0].pods[0].0;
    assert_eq!(pod & EXTERNAL_POD_BIT, 0);
    assert_eq!(pod, pod_id(MAX_WORKLOAD_ID, 0));
}

// ---------------------------------------------------------------------------------------------
// Property: random interleavings
// ---------------------------------------------------------------------------------------------

const MODELS: [&str; 2] = ["A100", "H100"];
const NAMES: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    /// Add or change node `name` (an index into the six names).
    Upsert {
        name: usize,
        model: usize,
        gpus: u32,
        cores: u32,
        failed_gpu: bool,
    },
    Remove(usize),
    /// An external pod on the node at this index (modulo the node count).
    External {
        node: usize,
        cores: u32,
        gpus: u32,
        shared: bool,
    },
    /// Release the external pod at this index (modulo the number placed).
    ReleaseExternal(usize),
    Submit {
        tenant: usize,
        kind: usize,
        members: u32,
        gpus: u32,
        pin: Option<usize>,
    },
    /// Finish the workload at this index (modulo the number known, by id).
    Finish(usize),
    Tick(Seconds),
}

fn op() -> impl Strategy<Value = Op> {
    let upsert = (
        0..NAMES,
        0..MODELS.len(),
        prop::sample::select(vec![0u32, 2, 4, 8]),
        prop::sample::select(vec![4_000u32, 16_000, 64_000]),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(name, model, gpus, cores, failed_gpu)| Op::Upsert {
            name,
            model,
            gpus,
            cores,
            failed_gpu,
        });
    let external = (any::<usize>(), 0u32..=8_000, 0u32..=2, any::<bool>())
        .prop_map(|(node, cores, gpus, shared)| Op::External { node, cores, gpus, shared });
    let submit = (0usize..2, 0usize..5, 1u32..=3, 0u32..=4, prop::option::weighted(0.3, 0..MODELS.len()))
        .prop_map(|(tenant, kind, members, gpus, pin)| Op::Submit { tenant, kind, members, gpus, pin });
    prop_oneof![
        3 => upsert,
        1 => (0..NAMES).prop_map(Op::Remove),
        2 => external,
        2 => any::<usize>().prop_map(Op::ReleaseExternal),
        5 => submit,
        3 => any::<usize>().prop_map(Op::Finish),
        4 => (1i64..=900).prop_map(Op::Tick),
    ]
}

/// What the pods placed on a node hold: CPU, memory, and milli-GPU per GPU index.
#[derive(Clone, Debug, Default, PartialEq)]
struct Held {
    cpu: u64,
    memory: u64,
    gpu: BTreeMap<u32, u32>,
}

impl Held {
    /// Whether this is within `other` in every resource and on every GPU.
    fn within(&self, other: &Held) -> bool {
        self.cpu <= other.cpu
            && self.memory <= other.memory
            && self.gpu.iter().all(|(g, &m)| m <= other.gpu.get(g).copied().unwrap_or(0))
    }
}

fn held(q: &Queue) -> HashMap<NodeId, Held> {
    let mut out: HashMap<NodeId, Held> = HashMap::new();
    for (_, pod, p) in q.cluster().placements() {
        let h = out.entry(p.node).or_default();
        h.cpu += u64::from(pod.cpu_milli);
        h.memory += pod.memory_mib;
        for &(g, m) in &p.gpus {
            *h.gpu.entry(g).or_default() += m;
        }
    }
    out
}

/// What node `n` offers with nothing on it, as the test last upserted it.
fn offer(n: &Node, failed_gpu: bool) -> Held {
    Held {
        cpu: u64::from(n.cpu_capacity),
        memory: n.memory_capacity,
        gpu: (0..n.gpu_count()).map(|g| (g, if failed_gpu && g == 0 { 0 } else { GPU_MILLI })).collect(),
    }
}

struct Live {
    q: Queue,
    now: Seconds,
    next_id: WorkloadId,
    next_external: u64,
    externals: Vec<u64>,
    /// Per node id: whether its GPU 0 was given as failed at its last upsert.
    failed: HashMap<NodeId, bool>,
    /// Nodes whose last upsert left their pods holding more than they offer, with what the pods
    /// held then: they may stay above their offer, never above that.
    shrunk: HashMap<NodeId, Held>,
}

fn tenancy() -> Tenancy {
    TenancyBuilder::new(&["A100", "H100", "cpu"])
        .timing(120, 60)
        .cohort("all", None)
        .tenant("alpha", Some("all"), &[Q::n(8), Q::n(4), Q::n(32)])
        .tenant("beta", Some("all"), &[Q::n(4), Q::n(8), Q::n(32)])
        .build()
}

impl Live {
    fn new() -> Live {
        let cluster = Cluster::new(ModelCatalog::default(), vec![]);
        let scheduler = Scheduler::new(PolicyKind::Gantry.build(&cluster, &[whole(1), whole(2)]));
        Live {
            q: Queue::new_live(tenancy(), cluster, scheduler, Mode::Quota, NOV1),
            now: NOV1,
            next_id: 1,
            next_external: 1,
            externals: Vec::new(),
            failed: HashMap::new(),
            shrunk: HashMap::new(),
        }
    }

    fn cycle(&mut self) -> Result<CycleOutcome, TestCaseError> {
        let out = self.q.cycle(self.now);
        for a in &out.admitted {
            for (_, p) in &a.pods {
                prop_assert!(
                    self.q.cluster().in_service(p.node),
                    "workload {} placed on removed node {}",
                    a.workload,
                    p.node
                );
                prop_assert!(
                    !self.q.cluster().is_overcommitted(p.node),
                    "workload {} placed on overcommitted node {}",
                    a.workload,
                    p.node
                );
            }
        }
        Ok(out)
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Upsert { name, model, gpus, cores, failed_gpu } => {
                let m = self.q.intern_model(MODELS[model]).unwrap();
                let mut node = Node::new(format!("n{name}"), cores, 256 * 1024, gpus, Some(m));
                let failed_gpu = failed_gpu && gpus > 0;
                if failed_gpu {
                    node.gpu_free[0] = 0;
                    node.gpu_free_total -= GPU_MILLI;
                }
                let id = self.q.upsert_node(node).map_err(|e| TestCaseError::fail(e.to_string()))?;
                self.failed.insert(id, failed_gpu);
                let n = &self.q.cluster().nodes[id];
                let h = held(&self.q).remove(&id).unwrap_or_default();
                if h.within(&offer(n, failed_gpu)) {
                    self.shrunk.remove(&id);
                } else {
                    prop_assert!(self.q.cluster().is_overcommitted(id));
                    self.shrunk.insert(id, h);
                }
            }
            Op::Remove(name) => {
                let was = self.q.cluster().node_id(&format!("n{name}"));
                let removed = self.q.remove_node(&format!("n{name}"));
                if let Some(id) = removed {
                    prop_assert_eq!(Some(id), was);
                    self.shrunk.remove(&id);
                }
            }
            Op::External { node, cores, gpus, shared } => {
                let count = self.q.cluster().nodes.len();
                if count == 0 {
                    return Ok(());
                }
                let node = node % count;
                let pod = match (gpus, shared) {
                    (0, _) => PodRequest::cpu_only(cores, 512),
                    (_, true) => PodRequest::shared_gpu(cores, 512, 400),
                    (k, false) => PodRequest::whole_gpus(cores, 512, k),
                };
                let n = &self.q.cluster().nodes[node];
                let gpus = best_fit_gpus(n, &pod).unwrap_or_default();
                let fits_now = fits(n, &pod).is_ok() && self.q.cluster().in_service(node);
                let before = self.q.cluster().placed_pods();
                let id = self.next_external;
                self.next_external += 1;
                match self.q.place_external(id, &pod, Placement { node, gpus }) {
                    Ok(()) => {
                        prop_assert!(fits_now, "an external pod was placed where it does not fit");
                        self.externals.push(id);
                    }
                    Err(_) => {
                        prop_assert!(!fits_now, "an external pod that fits was refused");
                        prop_assert_eq!(self.q.cluster().placed_pods(), before);
                    }
                }
            }
            Op::ReleaseExternal(i) => {
                if !self.externals.is_empty() {
                    let id = self.externals.swap_remove(i % self.externals.len());
                    self.q.release_external(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert!(self.q.release_external(id).is_err());
                }
            }
            Op::Submit { tenant, kind, members, gpus, pin } => {
                let id = self.next_id;
                self.next_id += 1;
                let mut wb = WB::new(id, tenant).kind(Kind::ALL[kind]).at(self.now);
                wb = if gpus == 0 {
                    wb.pods(members, PodRequest::cpu_only(2000, 1024))
                } else {
                    wb.gpus(members, gpus)
                };
                if let Some(model) = pin.and_then(|m| self.q.cluster().models.get(MODELS[m])) {
                    wb = wb.models(ModelSet::from_iter([model]));
                }
                // Refusals (nothing of the kind in service yet) are fine.
                let _ = self.q.submit(wb.build(), self.now);
            }
            Op::Finish(i) => {
                if self.next_id > 1 {
                    let id = 1 + (i as u64 % (self.next_id - 1));
                    self.q.finish(id, self.now);
                }
            }
            Op::Tick(dt) => {
                self.now += dt;
                self.cycle()?;
            }
        }
        self.check()
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        if let Err(e) = self.q.check_invariants() {
            return Err(TestCaseError::fail(e.to_string()));
        }
        let held = held(&self.q);
        let c = self.q.cluster();
        for (id, n) in c.nodes.iter().enumerate() {
            if !c.in_service(id) {
                prop_assert!(n.gpu_capacity() == 0 && n.cpu_capacity == 0);
                continue;
            }
            let h = held.get(&id).cloned().unwrap_or_default();
            let failed = self.failed.get(&id).copied().unwrap_or(false);
            if h.within(&offer(n, failed)) {
                self.shrunk.remove(&id);
                prop_assert!(!c.is_overcommitted(id));
            } else {
                prop_assert!(c.is_overcommitted(id), "node {} is over but not flagged", n.name);
                let at_shrink = self.shrunk.get(&id);
                prop_assert!(
                    at_shrink.is_some_and(|s| h.within(s)),
                    "node {} holds {:?}, more than it offers, and more than when it shrank ({:?})",
                    n.name,
                    h,
                    at_shrink
                );
            }
        }
        Ok(())
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 2000,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x6c69_7665),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// Any interleaving of node changes, external pods, submissions, finishes and cycles keeps
    /// the invariants, places nothing on a removed or overcommitted node, and lets a node hold
    /// more than it offers only after it shrank under its pods, and never more than then.
    #[test]
    fn random_interleavings_keep_the_cluster_and_queue_consistent(
        start in prop::collection::vec(op(), 0..6),
        ops in prop::collection::vec(op(), 20..160),
    ) {
        let mut live = Live::new();
        // Start with a couple of nodes so that the first submissions have somewhere to go.
        for (name, model) in [(0, 0), (1, 1)] {
            live.step(&Op::Upsert { name, model, gpus: 8, cores: 64_000, failed_gpu: false })?;
        }
        for op in start.iter().chain(&ops) {
            live.step(op)?;
        }
        // Everything ends: the cluster holds only the external pods, then nothing.
        for id in 1..live.next_id {
            live.q.finish(id, live.now);
        }
        live.check()?;
        prop_assert_eq!(live.q.cluster().placed_pods(), live.externals.len());
        for id in std::mem::take(&mut live.externals) {
            live.q.release_external(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        live.check()?;
        prop_assert_eq!(live.q.cluster().placed_pods(), 0);
        for (id, n) in live.q.cluster().nodes.iter().enumerate() {
            prop_assert!(live.q.cluster().is_open(id) || !live.q.cluster().in_service(id));
            prop_assert_eq!(n.cpu_free, n.cpu_capacity);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Equivalence: nodes by upsert, or from the start
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Submit { tenant: usize, members: u32, gpus: u32, pin: Option<usize> },
    Finish(usize),
    Tick(Seconds),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..2, 1u32..=4, 0u32..=8, prop::option::weighted(0.3, 0usize..2))
            .prop_map(|(tenant, members, gpus, pin)| Step::Submit { tenant, members, gpus, pin }),
        2 => any::<usize>().prop_map(Step::Finish),
        3 => (1i64..=900).prop_map(Step::Tick),
    ]
}

/// One admission: the workload, its flavor, and per pod its node's name and GPUs.
type Decision = (WorkloadId, usize, Vec<(String, Vec<(u32, u32)>)>);

/// What a queue decided, with nodes by name.
fn decisions(q: &Queue, out: &CycleOutcome) -> Vec<Decision> {
    out.admitted
        .iter()
        .map(|a| {
            let pods = a
                .pods
                .iter()
                .map(|(_, p)| (q.cluster().nodes[p.node].name.clone(), p.gpus.clone()))
                .collect();
            (a.workload, a.flavor, pods)
        })
        .collect()
}

fn workload(id: WorkloadId, s: &Step, now: Seconds, models: &ModelCatalog) -> Option<Workload> {
    let Step::Submit { tenant, members, gpus, pin } = *s else {
        return None;
    };
    let mut wb = WB::new(id, tenant).at(now);
    wb = if gpus == 0 { wb.pods(members, PodRequest::cpu_only(4000, 1024)) } else { wb.gpus(members, gpus) };
    if let Some(m) = pin.and_then(|m| models.get(MODELS[m])) {
        wb = wb.models(ModelSet::from_iter([m]));
    }
    Some(wb.build())
}

/// Runs `steps` on two queues over the nodes `nodes` (model, GPUs) and compares every decision:
/// one built with the nodes (strictly with [`Queue::new`] when `strict`), one started empty that
/// gets them by upsert, after a detour: each node first comes smaller (half the CPU and memory,
/// one GPU), an extra node comes, every node is then upserted as it really is, and the extra
/// node is removed.
fn equivalent(
    nodes: &[(usize, u32)],
    steps: &[Step],
    kind: PolicyKind,
    strict: bool,
) -> Result<(), TestCaseError> {
    let spec: Vec<(&str, u32)> = nodes.iter().map(|&(m, g)| (MODELS[m], g)).collect();
    let full = cluster(&spec);
    let expected = [whole(1), whole(4)];
    let scheduler = || Scheduler::new(kind.build(&full, &expected));
    let t = tenancy();
    let mut a = if strict {
        Queue::new(t.clone(), full.clone(), scheduler(), Mode::Quota, NOV1)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
    } else {
        Queue::new_live(t.clone(), full.clone(), scheduler(), Mode::Quota, NOV1)
    };
    let empty = Cluster::new(ModelCatalog::default(), vec![]);
    let mut b = Queue::new_live(t, empty, scheduler(), Mode::Quota, NOV1);
    let model_of = |b: &mut Queue, n: &Node| {
        let name = n.model.map(|m| full.models.name(m).to_string()).unwrap_or_default();
        b.intern_model(&name).map_err(|e| TestCaseError::fail(e.to_string()))
    };
    for n in &full.nodes {
        let m = model_of(&mut b, n)?;
        let small = Node::new(n.name.clone(), n.cpu_capacity / 2, n.memory_capacity / 2, 1, Some(m));
        b.upsert_node(small).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    let m = model_of(&mut b, &full.nodes[0])?;
    b.upsert_node(Node::new("extra", 64_000, 1 << 20, 8, Some(m)))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    b.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
    for n in &full.nodes {
        let m = model_of(&mut b, n)?;
        let real = Node::new(n.name.clone(), n.cpu_capacity, n.memory_capacity, n.gpu_count(), Some(m));
        prop_assert_eq!(b.upsert_node(real), Ok(a.cluster().node_id(&n.name).unwrap()));
    }
    prop_assert_eq!(b.remove_node("extra"), Some(full.nodes.len()));
    let same_nodes = a.cluster().nodes.iter().zip(&b.cluster().nodes).all(|(x, y)| {
        let mut y = y.clone();
        y.generation = x.generation;
        *x == y
    });
    prop_assert!(same_nodes);
    for f in 0..3 {
        prop_assert_eq!(a.capacity(f), b.capacity(f));
    }
    a.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
    b.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut now = NOV1;
    let mut next = 1;
    for s in steps {
        match s {
            Step::Submit { .. } => {
                let w = workload(next, s, now, &a.cluster().models);
                next += 1;
                if let Some(w) = w {
                    prop_assert_eq!(a.submit(w.clone(), now), b.submit(w, now));
                }
            }
            Step::Finish(i) => {
                if next > 1 {
                    let id = 1 + (*i as u64 % (next - 1));
                    prop_assert_eq!(a.finish(id, now), b.finish(id, now));
                }
            }
            Step::Tick(dt) => {
                now += dt;
                let (oa, ob) = (a.cycle(now), b.cycle(now));
                prop_assert_eq!(decisions(&a, &oa), decisions(&b, &ob));
                prop_assert_eq!(&oa.preempted, &ob.preempted);
            }
        }
        prop_assert_eq!(running_ids(&a), running_ids(&b));
    }
    a.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
    b.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

proptest! {
    #![proptest_config(config(48))]

    /// A queue that starts with no nodes and gets them by upsert admits exactly what a queue
    /// built with them from the start admits, for the same submissions, under several policies.
    #[test]
    fn nodes_by_upsert_admit_the_same_as_nodes_from_the_start(
        nodes in prop::collection::vec((0usize..2, prop::sample::select(vec![2u32, 4, 8])), 1..=8),
        steps in prop::collection::vec(step(), 10..80),
        kind in prop::sample::select(vec![PolicyKind::BestFit, PolicyKind::Fgd, PolicyKind::Gantry, PolicyKind::Packing]),
    ) {
        equivalent(&nodes, &steps, kind, false)?;
    }
}

#[test]
fn nodes_by_upsert_admit_the_same_as_a_queue_built_strictly() {
    let nodes = [(0, 8), (1, 8), (0, 4), (1, 2), (0, 8)];
    let steps: Vec<Step> = (0..60)
        .map(|i| match i % 4 {
            0 | 1 => Step::Submit {
                tenant: i % 2,
                members: 1 + (i as u32 % 3),
                gpus: [1, 2, 4, 0, 8][i % 5],
                pin: (i % 3 == 0).then_some(i % 2),
            },
            2 => Step::Tick(120),
            _ => Step::Finish(i * 7),
        })
        .collect();
    for kind in [PolicyKind::BestFit, PolicyKind::Gantry] {
        if let Err(e) = equivalent(&nodes, &steps, kind, true) {
            panic!("{kind}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Queue: a tenancy that changes while it runs
// ---------------------------------------------------------------------------------------------

/// alpha (nominal 8, no cohort) on two 8-GPU nodes runs workload 1 (8 GPUs); workloads 2 then 3
/// (8 GPUs each) wait for quota.
fn alpha_waits_for_quota() -> Queue {
    let mut q = live_queue(one_tenant(&["A100"], 8), &["A100"]);
    let a100 = Some(q.intern_model("A100").unwrap());
    q.upsert_node(Node::new("n0", CORES, MEM, 8, a100)).unwrap();
    q.upsert_node(Node::new("n1", CORES, MEM, 8, a100)).unwrap();
    submit(&mut q, WB::new(1, 0).gpus(1, 8).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1]);
    submit(&mut q, WB::new(2, 0).gpus(1, 8).build(), NOV1 + 1);
    submit(&mut q, WB::new(3, 0).gpus(1, 8).build(), NOV1 + 2);
    assert!(q.cycle(NOV1 + 3).admitted.is_empty());
    q
}

#[test]
fn a_quota_raised_in_place_admits_the_oldest_waiting_and_keeps_the_running_clocks() {
    let mut q = alpha_waits_for_quota();
    let started = q.running(1).unwrap().clone();
    q.update_tenancy(one_tenant(&["A100"], 16), NOV1 + 100).expect("a quota change is taken in place");
    consistent(&q);
    assert_eq!(q.quota().nominal(0, 0), g(16));
    // The next cycle admits the older of the two waiting workloads, and only it.
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 101)), vec![2]);
    assert_eq!(q.running(1), Some(&started), "the running workload is untouched");
    assert_eq!(q.pending_ids().collect::<Vec<_>>(), vec![3]);
    // The ledger metered alpha's first 100 s at the old nominal quota: all 8 GPUs guaranteed.
    q.ledger_mut().close_all(NOV1 + 200);
    let records = q.ledger_mut().drain();
    let before: u64 = records.iter().filter(|r| r.end <= NOV1 + 100).map(|r| r.guaranteed).sum();
    assert_eq!(before, g(8) * 100);
    let after: u64 = records.iter().filter(|r| r.start >= NOV1 + 101).map(|r| r.guaranteed).sum();
    assert_eq!(after, g(16) * 99, "16 GPUs within the new nominal quota from the admission on");
    assert!(records.iter().all(|r| r.borrowed == 0), "{records:?}");
    consistent(&q);
}

#[test]
fn a_price_changed_in_place_applies_from_the_change_on() {
    let mut q = alpha_waits_for_quota();
    let mut t = one_tenant(&["A100"], 8);
    t.tenants[0].prices_micros = vec![3_000_000];
    q.update_tenancy(t, NOV1 + 50).unwrap();
    q.ledger_mut().close_all(NOV1 + 80);
    let prices: Vec<(Seconds, Seconds, u64)> =
        q.ledger_mut().drain().iter().map(|r| (r.start, r.end, r.price_micros)).collect();
    assert_eq!(prices, vec![(NOV1, NOV1 + 50, 1_000_000), (NOV1 + 50, NOV1 + 80, 3_000_000)]);
}

#[test]
fn a_quota_lowered_in_place_leaves_running_work_which_becomes_reclaimable() {
    let mut q = beta_borrows_everything();
    // beta's nominal quota goes to alpha: both of beta's workloads now run on borrowed quota.
    let t = TenancyBuilder::new(&["A100"])
        .timing(0, 0)
        .cohort("all", None)
        .tenant("alpha", Some("all"), &[Q::n(16)])
        .tenant("beta", Some("all"), &[Q::n(0)])
        .build();
    q.update_tenancy(t, NOV1 + 1).unwrap();
    consistent(&q);
    assert_eq!(running_ids(&q), vec![1, 2], "nothing is stopped by the change itself");
    assert_eq!(q.quota().borrowed(1, 0), g(16));
    // alpha, owed its quota, reclaims one of beta's workloads: exactly the one it needs.
    submit(&mut q, WB::new(3, 0).gpus(1, 8).build(), NOV1 + 2);
    let out = q.cycle(NOV1 + 2);
    assert_eq!(admitted_ids(&out), vec![3]);
    assert_eq!(out.preempted.len(), 1, "{out:?}");
    consistent(&q);
}

#[test]
fn a_change_to_what_workloads_are_is_refused_and_changes_nothing() {
    use gantry_core::queue::Restructure;
    use gantry_core::tenancy::PriorityClass;
    let base = || one_tenant(&["A100"], 8);
    let cases: Vec<(&str, Tenancy, Restructure)> = vec![
        ("another flavor", one_tenant(&["A100", "H100"], 8), Restructure::Flavors),
        (
            "a tenant added",
            {
                let mut t = base();
                let mut b = t.tenants[0].clone();
                b.name = "beta".into();
                b.namespaces = vec!["beta".into()];
                t.tenants.push(b);
                t
            },
            Restructure::Tenants,
        ),
        (
            "a namespace moved",
            {
                let mut t = base();
                t.tenants[0].namespaces.push("gamma".into());
                t
            },
            Restructure::Tenants,
        ),
        (
            "a priority class added",
            {
                let mut t = base();
                t.priority_classes.push(PriorityClass { name: "urgent".into(), value: 5000 });
                t
            },
            Restructure::Priorities,
        ),
    ];
    for (name, tenancy, why) in cases {
        let mut q = alpha_waits_for_quota();
        let before = q.tenancy.clone();
        assert_eq!(q.update_tenancy(tenancy, NOV1 + 10), Err(why), "{name}");
        assert_eq!(q.tenancy, before, "{name}: unchanged");
        assert!(q.cycle(NOV1 + 11).admitted.is_empty(), "{name}");
        consistent(&q);
    }
}

#[test]
fn work_the_cluster_refused_to_stop_is_no_victim_until_its_shield_ends() {
    let mut q = beta_borrows_everything();
    // Stopping beta's borrowed workload 2 was refused (a PodDisruptionBudget): shielded 60 s.
    q.shield(2, NOV1 + 60);
    submit(&mut q, WB::new(3, 0).gpus(1, 8).build(), NOV1 + 1);
    let out = q.cycle(NOV1 + 1);
    assert!(out.admitted.is_empty() && out.preempted.is_empty(), "{out:?}");
    assert_eq!(q.next_wakeup(), Some(NOV1 + 60), "the queue wakes when the shield ends");
    assert!(q.cycle(NOV1 + 59).preempted.is_empty());
    let out = q.cycle(NOV1 + 60);
    assert_eq!(admitted_ids(&out), vec![3]);
    assert_eq!(out.preempted.iter().map(|p| p.victim).collect::<Vec<_>>(), vec![2]);
    consistent(&q);
    // An unknown workload is ignored; the next wake-up is not moved by it.
    q.shield(99, NOV1 + 1000);
    assert_ne!(q.next_wakeup(), Some(NOV1 + 1000));
    consistent(&q);
}
