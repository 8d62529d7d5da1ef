//! Property tests of the placement cycle: random clusters, random pods, random
//! allocate/release sequences, run through every shipped policy.
//!
//! The properties:
//! (a) the accounting never drifts: free ≤ capacity everywhere, `gpu_free_total` is the sum of
//!     `gpu_free`, and capacity − free is exactly what the placed pods hold;
//! (b) allocate then release restores the node exactly; releasing everything restores the cluster;
//! (c) a pod that names GPU models only lands on nodes of those models;
//! (d) what `Scheduler::decide` returns always passes `Cluster::allocate`.

use gantry_core::model::{
    fits, Cluster, Misfit, ModelCatalog, ModelId, ModelSet, Node, Placement, PodRequest,
};
use gantry_core::{PlaceError, PolicyKind, Scheduler, GPU_MILLI};
use proptest::prelude::*;
use std::collections::BTreeMap;

const MODELS: [&str; 3] = ["A", "B", "C"];

#[derive(Clone, Debug)]
struct NodeSpec {
    cpu: u32,
    mem: u64,
    gpus: u32,
    model: u8,
}

#[derive(Clone, Debug)]
enum Op {
    Place {
        pod: PodRequest,
        salt: u64,
    },
    /// Release the placed pod at this index (modulo the number placed).
    Release(usize),
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (1u32..=64, 1u64..=64, prop::sample::select(vec![0u32, 1, 2, 4, 8]), 0u8..3)
        .prop_map(|(c, m, gpus, model)| NodeSpec { cpu: c * 1000, mem: m * 1024, gpus, model })
}

/// A non-empty subset of the three models.
fn model_set() -> impl Strategy<Value = ModelSet> {
    (1u64..8).prop_map(ModelSet)
}

fn pod_with(models: impl Strategy<Value = Option<ModelSet>>) -> impl Strategy<Value = PodRequest> {
    let cpu = prop_oneof![Just(0u32), 1u32..=24_000];
    let mem = 0u64..=20_000;
    let gpu = prop_oneof![
        Just((0u32, 0u32)),                                                     // CPU-only
        (1u32..GPU_MILLI).prop_map(|m| (1, m)),                                 // sharing one GPU
        prop_oneof![4 => 1u32..=2, 1 => 3u32..=8].prop_map(|k| (k, GPU_MILLI)), // whole GPUs
    ];
    (cpu, mem, gpu, models).prop_map(|(cpu_milli, memory_mib, (gpu_count, gpu_milli), allowed_models)| {
        PodRequest { cpu_milli, memory_mib, gpu_count, gpu_milli, allowed_models }
    })
}

fn pod() -> impl Strategy<Value = PodRequest> {
    pod_with(prop::option::of(model_set()))
}

fn ops(pods: impl Strategy<Value = PodRequest>) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (pods, any::<u64>()).prop_map(|(pod, salt)| Op::Place { pod, salt }),
        1 => any::<usize>().prop_map(Op::Release),
    ];
    prop::collection::vec(op, 1..40)
}

fn cluster_of(specs: &[NodeSpec]) -> Cluster {
    let mut models = ModelCatalog::default();
    let ids: Vec<ModelId> = MODELS.iter().map(|m| models.intern(m).unwrap()).collect();
    let nodes = specs
        .iter()
        .enumerate()
        .map(|(i, s)| Node::new(format!("node-{i}"), s.cpu, s.mem, s.gpus, Some(ids[s.model as usize])))
        .collect();
    Cluster::new(models, nodes)
}

fn scheduler_for(kind: PolicyKind, cluster: &Cluster, ops: &[Op], rank: &[u32]) -> Scheduler {
    let expected: Vec<PodRequest> =
        ops.iter().filter_map(|op| if let Op::Place { pod, .. } = op { Some(*pod) } else { None }).collect();
    let rank: Vec<u32> = rank.iter().copied().take(cluster.nodes.len()).collect();
    Scheduler::new(kind.build(cluster, &expected)).with_tie_break(rank)
}

/// Equal in everything but `generation`.
fn same_state(a: &Node, b: &Node) -> bool {
    let mut a = a.clone();
    a.generation = b.generation;
    a == *b
}

/// What the pods in `ledger` hold, recomputed from scratch, against what the cluster says is free.
fn check_accounting(cluster: &Cluster, ledger: &[(u64, PodRequest, Placement)]) -> Result<(), TestCaseError> {
    prop_assert_eq!(cluster.placed_pods(), ledger.len());
    for (i, node) in cluster.nodes.iter().enumerate() {
        prop_assert!(
            node.cpu_free <= node.cpu_capacity,
            "{}: cpu_free {} > capacity",
            node.name,
            node.cpu_free
        );
        prop_assert!(node.memory_free <= node.memory_capacity, "{}: memory_free > capacity", node.name);
        for &f in &node.gpu_free {
            prop_assert!(f <= GPU_MILLI, "{}: a GPU has {} milli free", node.name, f);
        }
        prop_assert_eq!(node.gpu_free_total, node.gpu_free.iter().sum::<u32>());

        let mine: Vec<_> = ledger.iter().filter(|(_, _, p)| p.node == i).collect();
        let cpu: u32 = mine.iter().map(|(_, r, _)| r.cpu_milli).sum();
        let mem: u64 = mine.iter().map(|(_, r, _)| r.memory_mib).sum();
        prop_assert_eq!(node.cpu_capacity - node.cpu_free, cpu);
        prop_assert_eq!(node.memory_capacity - node.memory_free, mem);
        let mut used = vec![0u32; node.gpu_free.len()];
        for (_, _, p) in &mine {
            for &(g, m) in &p.gpus {
                used[g as usize] += m;
            }
        }
        for (g, &u) in used.iter().enumerate() {
            prop_assert_eq!(GPU_MILLI - node.gpu_free[g], u, "{} GPU {}", node.name, g);
        }
        let mut kinds: BTreeMap<u32, u32> = BTreeMap::new();
        for (_, r, _) in &mine {
            if let Some(k) = r.kind_tag() {
                *kinds.entry(k).or_default() += 1;
            }
        }
        let mut have = node.gpu_pod_kinds.clone();
        have.sort();
        prop_assert_eq!(have, kinds.into_iter().collect::<Vec<_>>(), "gpu_pod_kinds of {}", &node.name);
    }
    prop_assert_eq!(
        cluster.gpu_allocated(),
        cluster.nodes.iter().map(|n| (n.gpu_capacity() - n.gpu_free_total) as u64).sum::<u64>()
    );
    Ok(())
}

/// A failed decision must mean that no node passes the filter, and the counts must say why.
fn check_unschedulable(
    cluster: &Cluster,
    pod: &PodRequest,
    why: &gantry_core::Unschedulable,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(why.nodes, cluster.nodes.len());
    let mut expect: BTreeMap<Misfit, usize> = BTreeMap::new();
    for node in &cluster.nodes {
        match fits(node, pod) {
            Ok(()) => prop_assert!(false, "pod {:?} fits {} but was reported unschedulable", pod, node.name),
            Err(m) => *expect.entry(m).or_default() += 1,
        }
    }
    prop_assert_eq!(&why.misfits, &expect);
    Ok(())
}

/// Replays `ops` with one policy, checking (a), (b) and (c) after every step, then releases
/// everything and checks the cluster is back to where it started.
fn replay(kind: PolicyKind, specs: &[NodeSpec], ops: &[Op], rank: &[u32]) -> Result<(), TestCaseError> {
    let mut cluster = cluster_of(specs);
    let initial = cluster.nodes.clone();
    let mut sched = scheduler_for(kind, &cluster, ops, rank);
    let mut ledger: Vec<(u64, PodRequest, Placement)> = Vec::new();
    for (id, op) in ops.iter().enumerate() {
        let id = id as u64;
        match *op {
            Op::Place { pod, salt } => {
                let before = cluster.nodes.clone();
                match sched.place(&mut cluster, id, &pod, salt) {
                    Ok(p) => {
                        let node = &cluster.nodes[p.node];
                        // (c)
                        if let (true, Some(allowed)) = (pod.wants_gpu(), pod.allowed_models) {
                            prop_assert!(
                                node.model.is_some_and(|m| allowed.contains(m)),
                                "{kind}: {pod:?} on {node:?}"
                            );
                        }
                        // Only the chosen node changed, and its generation moved on (score caches depend on it).
                        for (i, (a, b)) in before.iter().zip(&cluster.nodes).enumerate() {
                            if i == p.node {
                                prop_assert!(b.generation > a.generation);
                            } else {
                                prop_assert_eq!(a, b);
                            }
                        }
                        // (b) releasing right away restores the node exactly.
                        let mut undo = cluster.clone();
                        prop_assert_eq!(undo.release(id).unwrap(), p.clone());
                        for (a, b) in undo.nodes.iter().zip(&before) {
                            prop_assert!(
                                same_state(a, b),
                                "{kind}: release did not restore {a:?}, was {b:?}"
                            );
                        }
                        ledger.push((id, pod, p));
                    }
                    Err(PlaceError::Unschedulable(why)) => check_unschedulable(&cluster, &pod, &why)?,
                    Err(PlaceError::Model(e)) => {
                        prop_assert!(false, "{kind}: decide gave a placement allocate refused: {e}")
                    }
                }
            }
            Op::Release(i) if !ledger.is_empty() => {
                let (id, _, p) = ledger.remove(i % ledger.len());
                prop_assert_eq!(cluster.release(id).unwrap(), p);
            }
            Op::Release(_) => {}
        }
        check_accounting(&cluster, &ledger)?;
    }
    // (b) releasing everything, in an order unrelated to placement, restores the initial cluster.
    let n = ledger.len();
    let order = (0..n).filter(|i| i % 2 == 1).chain((0..n).filter(|i| i % 2 == 0).rev());
    for k in order {
        prop_assert_eq!(cluster.release(ledger[k].0), Ok(ledger[k].2.clone()));
    }
    prop_assert_eq!(cluster.placed_pods(), 0);
    prop_assert_eq!(cluster.gpu_allocated(), 0);
    for (a, b) in cluster.nodes.iter().zip(&initial) {
        prop_assert!(same_state(a, b), "{kind}: after releasing all, {a:?} != initial {b:?}");
    }
    if let Some(&(id, _, _)) = ledger.first() {
        prop_assert!(cluster.release(id).is_err(), "a pod was released twice");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// (a) + (b) for every policy, with any mix of pods.
    #[test]
    fn accounting_holds_and_release_restores(
        specs in prop::collection::vec(node_spec(), 1..7),
        ops in ops(pod()),
        rank in Just((0u32..8).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        for kind in PolicyKind::ALL {
            replay(kind, &specs, &ops, &rank)?;
        }
    }

    /// (c): every GPU pod names models; it lands only on those, and fails only when no node of
    /// those models can take it.
    #[test]
    fn pods_land_only_on_allowed_models(
        specs in prop::collection::vec(node_spec(), 1..7),
        ops in ops(pod_with(model_set().prop_map(Some))),
    ) {
        for kind in PolicyKind::ALL {
            replay(kind, &specs, &ops, &[])?;
        }
    }

    /// (d): `decide` names a node that passes the filter and GPUs that hold the pod, and
    /// `Cluster::allocate` accepts it. `decide` itself changes nothing.
    #[test]
    fn decide_always_passes_allocate(
        specs in prop::collection::vec(node_spec(), 1..7),
        pods in prop::collection::vec((pod(), any::<u64>()), 1..30),
    ) {
        for kind in PolicyKind::ALL {
            let mut cluster = cluster_of(&specs);
            let expected: Vec<PodRequest> = pods.iter().map(|(p, _)| *p).collect();
            let mut sched = Scheduler::new(kind.build(&cluster, &expected));
            for (id, (pod, salt)) in pods.iter().enumerate() {
                let before = cluster.nodes.clone();
                let Ok(p) = sched.decide(&cluster, pod, *salt) else { continue };
                prop_assert_eq!(&before, &cluster.nodes);
                let node = &cluster.nodes[p.node];
                prop_assert_eq!(fits(node, pod), Ok(()));
                let want = if pod.wants_gpu() { pod.gpu_count as usize } else { 0 };
                prop_assert_eq!(p.gpus.len(), want, "{}: GPUs for {:?}", kind, pod);
                for (i, &(g, m)) in p.gpus.iter().enumerate() {
                    prop_assert_eq!(m, pod.gpu_milli);
                    prop_assert!(node.gpu_free[g as usize] >= m);
                    prop_assert!(p.gpus[..i].iter().all(|&(h, _)| h != g), "GPU {} named twice", g);
                }
                // Deciding again on the same state gives the same answer (score caches are sound).
                prop_assert_eq!(sched.decide(&cluster, pod, *salt), Ok(p.clone()));
                if let Err(e) = cluster.allocate(id as u64, pod, p) {
                    prop_assert!(false, "{}: allocate refused what decide chose: {}", kind, e);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// `could_ever_fit` (computed without building a node) says what `fits` says of the same node
    /// emptied, for any node, any pod, and any use of the node.
    #[test]
    fn could_ever_fit_is_fits_on_the_empty_node(
        specs in prop::collection::vec(node_spec(), 1..2),
        ops in ops(pod()),
        pod in pod(),
    ) {
        let mut cluster = cluster_of(&specs);
        // Some use of the node, which must not matter.
        for op in &ops {
            if let Op::Place { pod: p, .. } = op {
                let _ = Scheduler::new(PolicyKind::BestFit.build(&cluster, &[])).decide(&cluster, p, 0)
                    .map(|placement| cluster.allocate(cluster.nodes.len() as u64 + 1000, p, placement));
                break;
            }
        }
        let node = &cluster.nodes[0];
        let empty = Node::new(String::new(), node.cpu_capacity, node.memory_capacity, node.gpu_count(), node.model);
        prop_assert_eq!(gantry_core::model::could_ever_fit(node, &pod), fits(&empty, &pod).is_ok());
    }
}
