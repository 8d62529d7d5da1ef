//! Hand-computed cases for every policy's score (formulas: FGD-POLICIES.md in the shared
//! benchmarks), the fragment measure, typical pods, and the scheduler's tie-break and errors.
//!
//! Scores use the paper's scale: largest node 128 cores and 8 GPUs.

use gantry_core::frag::{fragment, unusable_for, PodMix, TypicalPod};
use gantry_core::model::{Cluster, ModelCatalog, ModelId, ModelSet, Node, PodRequest};
use gantry_core::policy::{BestFit, DotProduct, Fgd, GpuClustering, GpuPacking, Policy, RandomFit, ScoreCx};
use gantry_core::{PlaceError, PolicyKind, Scale, Scheduler};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

const SCALE: Scale = Scale { max_cpu: 128_000.0, max_gpu_milli: 8_000.0 };
const CX: ScoreCx = ScoreCx { node: 0, salt: 0 };
const M0: ModelId = ModelId(0);

/// A node with `cpu_free` of 128 cores free and the given free milli per GPU.
fn node(cpu_free: u32, gpu_free: &[u32]) -> Node {
    let mut n = Node::new("n", 128_000, 1 << 20, gpu_free.len() as u32, Some(M0));
    n.cpu_free = cpu_free;
    n.gpu_free = gpu_free.to_vec();
    n.gpu_free_total = gpu_free.iter().sum();
    n
}

fn with_kinds(mut n: Node, kinds: &[(u32, u32)]) -> Node {
    n.gpu_pod_kinds = kinds.to_vec();
    n
}

fn cpu_only(cpu: u32) -> PodRequest {
    PodRequest::cpu_only(cpu, 0)
}
fn share(cpu: u32, milli: u32) -> PodRequest {
    PodRequest::shared_gpu(cpu, 0, milli)
}
fn whole(cpu: u32, count: u32) -> PodRequest {
    PodRequest::whole_gpus(cpu, 0, count)
}

fn typical(cpu: u32, count: u32, milli: u32, weight: f64) -> TypicalPod {
    TypicalPod { cpu_milli: cpu, gpu_count: count, gpu_milli: milli, allowed_models: None, weight }
}

fn check_scores(policy: &dyn Policy, cases: &[(&str, Node, PodRequest, f64)]) {
    for (what, n, p, want) in cases {
        assert_eq!(policy.score(n, p, CX), *want, "{}: {what}", policy.name());
    }
}

#[test]
fn dot_product_scores() {
    // trunc(100 × (1 − (cpuFree/128000 · cpu/128000 + gpuFree/8000 · gpu/8000) / 2))
    check_scores(
        &DotProduct { scale: SCALE },
        &[
            // 0.5·0.125 + 1·0.25 = 0.3125 → 84.375
            ("2 GPUs on an idle 8-GPU node", node(64_000, &[1000; 8]), whole(16_000, 2), 84.0),
            // 1·(100/128000): a pod asking no CPU counts as 100m → 99.96
            ("CPU-only pod with cpu 0", node(128_000, &[0; 8]), cpu_only(0), 99.0),
            // 0.25·0.25 + 0.5·(500/8000)=0.03125 → 0.09375 → 95.3125
            ("sharing pod", node(32_000, &[1000, 1000, 1000, 1000, 0, 0, 0, 0]), share(32_000, 500), 95.0),
            ("cpu free below the request scores 0", node(8_000, &[1000; 8]), whole(16_000, 1), 0.0),
            ("cpu 0 counts as 100m against 50m free", node(50, &[1000; 8]), cpu_only(0), 0.0),
        ],
    );
}

#[test]
fn clustering_scores_each_affinity_case() {
    // base = floor(25 × (8000 − gpuFree) / 8000): 6000 free → floor(6.25) = 6.
    let used2 = [1000, 1000, 1000, 1000, 1000, 1000, 0, 0];
    check_scores(
        &GpuClustering { scale: SCALE },
        &[
            ("CPU-only pod", with_kinds(node(1000, &used2), &[(0, 1)]), cpu_only(1000), 0.0),
            ("only this kind", with_kinds(node(1000, &used2), &[(0, 3)]), share(1000, 300), 81.0),
            (
                "this kind among others",
                with_kinds(node(1000, &used2), &[(2, 1), (0, 1)]),
                share(1000, 300),
                56.0,
            ),
            ("no GPU pod, idle 8 GPUs: base 0", node(1000, &[1000; 8]), share(1000, 300), 25.0),
            // An idle 2-GPU node: floor(25 × 6000 / 8000) = 18, so small nodes score higher.
            ("no GPU pod, idle 2 GPUs", node(1000, &[1000; 2]), share(1000, 300), 43.0),
            ("only other kinds", with_kinds(node(1000, &used2), &[(2, 1)]), share(1000, 300), 6.0),
            ("2-GPU pod, 2-GPU pods only", with_kinds(node(1000, &used2), &[(2, 1)]), whole(1000, 2), 81.0),
            (
                "1-GPU pod is not a sharing pod",
                with_kinds(node(1000, &used2), &[(0, 2)]),
                whole(1000, 1),
                6.0,
            ),
            // 4700 free → floor(25 × 3300 / 8000) = floor(10.3125) = 10
            (
                "base rounds down",
                with_kinds(node(1000, &[1000, 1000, 1000, 1000, 700, 0, 0, 0]), &[(1, 3), (0, 1)]),
                whole(1000, 1),
                60.0,
            ),
        ],
    );
}

#[test]
fn packing_scores_each_tier() {
    let many = {
        let mut g = vec![1000; 20];
        g[0] = 0;
        g
    };
    check_scores(
        &GpuPacking,
        &[
            ("CPU-only pod", node(1000, &[1000, 500]), cpu_only(1000), 0.0),
            // Tier 1, all GPUs idle: max(33 − n, n), CPU use does not matter.
            ("idle 8-GPU node", node(1000, &[1000; 8]), share(1000, 100), 25.0),
            ("idle 4-GPU node", node(128_000, &[1000; 4]), whole(1000, 2), 29.0),
            ("idle 1-GPU node", node(5_000, &[1000]), whole(1000, 1), 32.0),
            // Tier 2: the pod takes u idle GPUs on a used node: max(50 − u, 33).
            ("share pod only fits an idle GPU", node(1000, &[200, 1000, 1000, 1000]), share(1000, 500), 49.0),
            ("2 GPUs on a used node", node(1000, &[0, 1000, 1000, 500]), whole(1000, 2), 48.0),
            ("18 idle GPUs: floor of 33", node(1000, &many), whole(1000, 18), 33.0),
            // Tier 3: share pod into the used GPU with the least free that fits:
            // 100 − floor(floor(L·100/1000)/10).
            ("L = 350", node(1000, &[1000, 350, 600, 1000]), share(1000, 300), 97.0),
            ("L = 700 (100 is too small)", node(1000, &[100, 700, 1000]), share(1000, 500), 93.0),
            ("L = 999", node(1000, &[999, 1000]), share(1000, 1), 91.0),
            ("L = 50, exact fit", node(1000, &[50, 1000]), share(1000, 50), 100.0),
        ],
    );
}

#[test]
fn best_fit_scores() {
    // trunc(100 × (1 − [0.5·(cpuFree − cpu)/128000 + 0.5·(gpuFree − gpu)/8000]))
    check_scores(
        &BestFit { scale: SCALE },
        &[
            // 0.5·0.375 + 0.5·0.75 = 0.5625 → 43.75
            ("2 GPUs", node(64_000, &[1000; 8]), whole(16_000, 2), 43.0),
            // 0.5·28000/128000 + 0.5·1000/8000 = 0.171875 → 82.8125
            ("sharing pod", node(32_000, &[1000, 500]), share(4_000, 500), 82.0),
            // cpu 0 counts as 100m: nothing left anywhere → 100
            ("CPU-only pod fills the node", node(100, &[0; 8]), cpu_only(0), 100.0),
            // A CPU-only pod still prefers nodes with little free GPU: 0.5·0 + 0.5·1 → 50
            ("CPU-only pod on idle GPUs", node(1_000, &[1000; 8]), cpu_only(1_000), 50.0),
        ],
    );
}

// --- FGD ----------------------------------------------------------------------------------------

/// Typical pods: a 500-milli share pod and a 1-GPU pod needing 8 cores, half each.
fn fgd_share_and_whole() -> Fgd {
    Fgd::new(PodMix { typical: vec![typical(1_000, 1, 500, 0.5), typical(8_000, 1, 1000, 0.5)] })
}

#[test]
fn fgd_sharing_pod_takes_the_gpu_that_grows_fragment_least() {
    // Before: share-500 can't use the 300 GPU (300); 1-GPU can't use 600 + 300 (900). F = 600.
    // GPU 0 → [600, 600, 1000, 300]: 300 and 1500, F = 900, Δ = −300 → trunc(100·σ(−0.3)) = 42.
    // GPU 1 → [1000, 200, 1000, 300]: 500 and 500, F = 500, Δ = +100 → trunc(100·σ(0.1)) = 52.
    // GPU 2 is like GPU 0; GPU 3 (300) does not fit.
    let fgd = fgd_share_and_whole();
    let n = node(32_000, &[1000, 600, 1000, 300]);
    let pod = share(2_000, 400);
    assert_eq!(fgd.score(&n, &pod, CX), 52.0);
    assert_eq!(fgd.pick_gpus(&n, &pod, CX), Some(vec![(1, 400)]));
}

#[test]
fn fgd_sharing_pod_ties_after_truncation_go_to_the_lowest_index() {
    // One typical pod, share-500. GPU 0 (520) leaves 30: Δ = −30 → 49.25 → 49.
    // GPU 1 (500) leaves 10: Δ = −10 → 49.75 → 49. Equal after truncation: GPU 0 wins,
    // although GPU 1 is better before truncation.
    let fgd = Fgd::new(PodMix { typical: vec![typical(0, 1, 500, 1.0)] });
    let n = node(32_000, &[520, 500]);
    let pod = share(1_000, 490);
    assert_eq!(fgd.score(&n, &pod, CX), 49.0);
    assert_eq!(fgd.pick_gpus(&n, &pod, CX), Some(vec![(0, 490)]));
}

#[test]
fn fgd_whole_gpu_pod() {
    // Before (cpu 10000, GPUs [1000, 1000, 300, 1000]): both typical pods fit; each can't use the
    // 300 GPU. F = 300. The pod takes GPUs 0 and 1 and 4 cores: 6000 cpu left is below the
    // 1-GPU typical pod's 8000, so it now loses all 1300 free. F = 150 + 650 = 800,
    // Δ = −500 → trunc(100·σ(−0.5)) = 37.
    let fgd = fgd_share_and_whole();
    let n = node(10_000, &[1000, 1000, 300, 1000]);
    let pod = whole(4_000, 2);
    assert_eq!(fgd.score(&n, &pod, CX), 37.0);
    assert_eq!(fgd.pick_gpus(&n, &pod, CX), Some(vec![(0, 1000), (1, 1000)]));
}

#[test]
fn fgd_cpu_only_pod() {
    // Same node; a CPU-only pod of 4 cores changes only the CPU: F_after = 150 + 0.5·3300 = 1800,
    // Δ = −1500 → trunc(100·σ(−1.5)) = 18. No GPUs are picked.
    let fgd = fgd_share_and_whole();
    let n = node(10_000, &[1000, 1000, 300, 1000]);
    assert_eq!(fgd.score(&n, &cpu_only(4_000), CX), 18.0);
    assert_eq!(fgd.pick_gpus(&n, &cpu_only(4_000), CX), Some(vec![]));
    // With plenty of CPU, nothing changes: σ(0) = 0.5 → 50.
    assert_eq!(fgd.score(&node(64_000, &[1000, 1000, 300, 1000]), &cpu_only(4_000), CX), 50.0);
}

#[test]
fn unusable_for_each_case() {
    // Node of model 0 with 8 cores free and GPUs [1000, 600, 200, 0]: 1800 free in all.
    let free = [1000, 600, 200, 0];
    let only = |m: u64| ModelSet(m);
    let cases: &[(&str, TypicalPod, Option<u8>, u32)] = &[
        ("CPU-only typical pod: all of it", typical(1_000, 0, 0, 1.0), Some(0), 1800),
        ("share-500: the GPUs below 500", typical(1_000, 1, 500, 1.0), Some(0), 200),
        ("share-600: 600 is enough (≥)", typical(1_000, 1, 600, 1.0), Some(0), 200),
        ("share-700: 600 is too small", typical(1_000, 1, 700, 1.0), Some(0), 800),
        ("not enough CPU: all of it", typical(9_000, 1, 500, 1.0), Some(0), 1800),
        ("1 GPU: the used GPUs", typical(1_000, 1, 1000, 1.0), Some(0), 800),
        ("2 GPUs: only 1 idle, all of it", typical(1_000, 2, 1000, 1.0), Some(0), 1800),
        (
            "model allowed",
            TypicalPod { allowed_models: Some(only(0b01)), ..typical(1_000, 1, 500, 1.0) },
            Some(0),
            200,
        ),
        (
            "model not allowed",
            TypicalPod { allowed_models: Some(only(0b10)), ..typical(1_000, 1, 500, 1.0) },
            Some(0),
            1800,
        ),
        (
            "node without model",
            TypicalPod { allowed_models: Some(only(0b01)), ..typical(1_000, 1, 500, 1.0) },
            None,
            1800,
        ),
    ];
    for (what, t, model, want) in cases {
        assert_eq!(unusable_for(t, *model, 8_000, &free), *want, "{what}");
    }
    // The fragment is the weighted sum.
    let ts = [typical(1_000, 0, 0, 0.25), typical(1_000, 1, 500, 0.5), typical(1_000, 1, 1000, 0.25)];
    assert_eq!(fragment(&ts, Some(0), 8_000, &free), 0.25 * 1800.0 + 0.5 * 200.0 + 0.25 * 800.0);
    let n = node(8_000, &free);
    assert_eq!(PodMix { typical: ts.to_vec() }.fragment(&n), 750.0);
}

// --- typical pods -------------------------------------------------------------------------------

fn pods(groups: &[(usize, PodRequest)]) -> Vec<PodRequest> {
    groups.iter().flat_map(|&(n, p)| std::iter::repeat_n(p, n)).collect()
}

/// (cpu, count, milli, weight) of each typical pod, in order.
fn shapes(w: &PodMix) -> Vec<(u32, u32, u32, f64)> {
    w.typical.iter().map(|t| (t.cpu_milli, t.gpu_count, t.gpu_milli, t.weight)).collect()
}

/// (case, pods, coverage, expected typical pods as (cpu, GPUs, milli, share)).
type TypicalCase = (&'static str, Vec<PodRequest>, f64, Vec<(u32, u32, u32, f64)>);

#[test]
fn typical_pods_by_count_with_95_percent_cutoff() {
    let (a, b, c) = (share(1_000, 500), whole(2_000, 1), cpu_only(4_000));
    let cases: &[TypicalCase] = &[
        (
            "everything at coverage 1",
            pods(&[(2, c), (5, a), (3, b)]),
            1.0,
            vec![(1_000, 1, 500, 0.5), (2_000, 1, 1000, 0.3), (4_000, 0, 0, 0.2)],
        ),
        // 10 + 9 = 19 = 95 % of 20 exactly: the third shape is not needed.
        (
            "cutoff reached exactly",
            pods(&[(10, a), (9, b), (1, c)]),
            0.95,
            vec![(1_000, 1, 500, 10.0 / 19.0), (2_000, 1, 1000, 9.0 / 19.0)],
        ),
        (
            "18 of 20 is short of 95 %",
            pods(&[(10, a), (8, b), (2, c)]),
            0.95,
            vec![(1_000, 1, 500, 0.5), (2_000, 1, 1000, 0.4), (4_000, 0, 0, 0.1)],
        ),
        ("shortest prefix", pods(&[(5, a), (3, b), (2, c)]), 0.5, vec![(1_000, 1, 500, 1.0)]),
        ("coverage 0 keeps the top shape", pods(&[(5, a), (3, b)]), 0.0, vec![(1_000, 1, 500, 1.0)]),
        ("no pods", vec![], 0.95, vec![]),
    ];
    for (what, ps, cov, want) in cases {
        assert_eq!(shapes(&PodMix::typical(ps, *cov)), *want, "{what}");
    }
}

#[test]
fn typical_pods_tie_order_and_grouping() {
    // Equal counts sort by larger CPU, then milli, then GPU count, then model set.
    let with = |p: PodRequest, m: u64| p.with_models(ModelSet(m));
    let ps = pods(&[
        (2, share(1_000, 500)),
        (2, share(2_000, 100)),
        (2, whole(2_000, 1)),
        (2, share(2_000, 300)),
        (2, whole(2_000, 2)),
        (2, with(share(1_000, 500), 0b100)),
    ]);
    let got: Vec<_> = PodMix::typical(&ps, 1.0)
        .typical
        .iter()
        .map(|t| (t.cpu_milli, t.gpu_milli, t.gpu_count, t.allowed_models))
        .collect();
    assert_eq!(
        got,
        vec![
            (2_000, 1000, 2, None),
            (2_000, 1000, 1, None),
            (2_000, 300, 1, None),
            (2_000, 100, 1, None),
            (1_000, 500, 1, Some(ModelSet(0b100))),
            (1_000, 500, 1, None),
        ]
    );
    // Memory is not part of the shape.
    let w =
        PodMix::typical(&[PodRequest::shared_gpu(1_000, 1, 500), PodRequest::shared_gpu(1_000, 2, 500)], 1.0);
    assert_eq!(shapes(&w), vec![(1_000, 1, 500, 1.0)]);
}

// --- the scheduler ------------------------------------------------------------------------------

fn cluster(nodes: Vec<Node>) -> Cluster {
    let mut models = ModelCatalog::default();
    models.intern("V100").unwrap();
    models.intern("T4").unwrap();
    Cluster::new(models, nodes)
}

fn plain(name: &str, cpu: u32, gpus: u32) -> Node {
    Node::new(name, cpu, 1 << 20, gpus, Some(M0))
}

#[test]
fn decide_breaks_ties_by_rank() {
    let c = cluster(vec![plain("a", 32_000, 4), plain("b", 32_000, 4), plain("c", 32_000, 4)]);
    let expected = [cpu_only(1_000)];
    // Packing scores every node 0 for a CPU-only pod: the tie goes to the lowest rank.
    let cases: &[(Option<Vec<u32>>, usize)] =
        &[(None, 0), (Some(vec![2, 0, 1]), 1), (Some(vec![1, 2, 0]), 2), (Some(vec![0, 2, 1]), 0)];
    for (rank, want) in cases {
        for kind in [PolicyKind::Packing, PolicyKind::Clustering, PolicyKind::BestFit, PolicyKind::Fgd] {
            let mut s = Scheduler::new(kind.build(&c, &expected));
            if let Some(r) = rank {
                s = s.with_tie_break(r.clone());
            }
            assert_eq!(s.decide(&c, &cpu_only(1_000), 7).unwrap().node, *want, "{kind} with rank {rank:?}");
        }
    }
    // A strictly higher score beats a lower rank: best-fit prefers the node with less CPU free.
    let mut c2 = c.clone();
    c2.allocate(99, &cpu_only(16_000), gantry_core::Placement { node: 2, gpus: vec![] }).unwrap();
    let mut s = Scheduler::new(PolicyKind::BestFit.build(&c2, &expected)).with_tie_break(vec![0, 1, 2]);
    assert_eq!(s.decide(&c2, &cpu_only(1_000), 7).unwrap().node, 2);
}

#[test]
fn unschedulable_lists_misfit_counts() {
    let t4 = ModelId(1);
    let mut full = plain("full", 64_000, 2);
    full.gpu_free = vec![0, 300];
    full.gpu_free_total = 300;
    let c = cluster(vec![
        Node::new("cpu-only", 64_000, 1 << 20, 0, None),
        Node::new("t4", 64_000, 1 << 20, 2, Some(t4)),
        plain("small-1", 4_000, 2),
        plain("small-2", 4_000, 2),
        Node::new("no-memory", 64_000, 100, 2, Some(M0)),
        full,
    ]);
    let pod = PodRequest { memory_mib: 1_000, ..share(8_000, 500).with_models(ModelSet(0b01)) };
    let mut s = Scheduler::new(PolicyKind::Fgd.build(&c, &[pod]));
    let why = s.decide(&c, &pod, 0).unwrap_err();
    use gantry_core::model::Misfit::*;
    assert_eq!(why.nodes, 6);
    assert_eq!(
        why.misfits,
        BTreeMap::from([(NoGpus, 1), (GpuModel, 1), (Cpu, 2), (Memory, 1), (GpuCapacity, 1)])
    );
    let text =
        "0/6 nodes can hold the pod: 2 insufficient CPU, 1 node has no GPUs, 1 GPU model not allowed, \
                1 insufficient memory, 1 insufficient free GPU";
    assert_eq!(why.to_string(), text);
    let mut c = c;
    match s.place(&mut c, 1, &pod, 0) {
        Err(e @ PlaceError::Unschedulable(_)) => assert_eq!(e.to_string(), text),
        other => panic!("expected Unschedulable, got {other:?}"),
    }
    assert_eq!(c.placed_pods(), 0);
    // An empty cluster has nothing to list.
    let empty = cluster(vec![]);
    assert_eq!(s.decide(&empty, &pod, 0).unwrap_err().to_string(), "0/0 nodes can hold the pod");
}

// --- random-fit and gantry: properties only -----------------------------------------------------

#[test]
fn random_fit_is_feasible_and_roughly_uniform() {
    // Four feasible nodes, two that cannot hold the pod (no GPU; too little CPU).
    let c = cluster(vec![
        plain("a", 32_000, 2),
        Node::new("none", 32_000, 1 << 20, 0, None),
        plain("b", 32_000, 4),
        plain("tiny", 1_000, 4),
        plain("c", 32_000, 1),
        plain("d", 32_000, 8),
    ]);
    let pod = share(2_000, 300);
    let mut s = Scheduler::new(Box::new(RandomFit));
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut hits = [0u32; 6];
    let draws = 4_000;
    for _ in 0..draws {
        let p = s.decide(&c, &pod, rng.next_u64()).unwrap();
        hits[p.node] += 1;
        let n = &c.nodes[p.node];
        assert!(p.gpus.len() == 1 && n.gpu_free[p.gpus[0].0 as usize] >= 300);
    }
    assert_eq!((hits[1], hits[3]), (0, 0), "infeasible nodes chosen: {hits:?}");
    for i in [0, 2, 4, 5] {
        // Expect 1000 each; the standard deviation is about 27.
        assert!((850..=1150).contains(&hits[i]), "node {i} chosen {} times of {draws}: {hits:?}", hits[i]);
    }
    // The GPU of a sharing pod is uniform over the GPUs that fit.
    let mut n = plain("g", 32_000, 4);
    n.gpu_free = vec![1000, 200, 1000, 300];
    n.gpu_free_total = 2500;
    let mut per_gpu = [0u32; 4];
    for _ in 0..draws {
        let cx = ScoreCx { node: 0, salt: rng.next_u64() };
        per_gpu[RandomFit.pick_gpus(&n, &pod, cx).unwrap()[0].0 as usize] += 1;
    }
    assert_eq!(per_gpu[1], 0, "{per_gpu:?}");
    for g in [0, 2, 3] {
        assert!((1_150..=1_520).contains(&per_gpu[g]), "GPU {g}: {per_gpu:?}");
    }
}

#[test]
fn gantry_picks_a_feasible_node_deterministically() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut nodes = Vec::new();
    for i in 0..12 {
        let gpus = [1, 2, 4, 8][i % 4];
        let mut n = Node::new(
            format!("n{i}"),
            rng.gen_range(4..=64) * 1000,
            1 << 20,
            gpus,
            Some(ModelId((i % 2) as u8)),
        );
        for f in n.gpu_free.iter_mut() {
            *f = [1000, 1000, 500, 0, 250][rng.gen_range(0..5)];
        }
        n.gpu_free_total = n.gpu_free.iter().sum();
        nodes.push(n);
    }
    let c = cluster(nodes);
    let mix = [
        cpu_only(2_000),
        share(4_000, 250),
        share(8_000, 500),
        share(1_000, 900).with_models(ModelSet(0b10)),
        whole(8_000, 1),
        whole(16_000, 2),
        whole(4_000, 4),
    ];
    let expected: Vec<PodRequest> = mix.iter().cycle().take(40).copied().collect();
    let decide_all = || {
        let mut s = Scheduler::new(PolicyKind::Gantry.build(&c, &expected));
        mix.iter().map(|p| s.decide(&c, p, 5)).collect::<Vec<_>>()
    };
    let first = decide_all();
    assert_eq!(first, decide_all(), "same inputs, different decisions");
    for (pod, got) in mix.iter().zip(&first) {
        let feasible = c.nodes.iter().any(|n| gantry_core::model::fits(n, pod).is_ok());
        match got {
            Ok(p) => {
                assert_eq!(gantry_core::model::fits(&c.nodes[p.node], pod), Ok(()), "{pod:?}");
                c.clone().allocate(0, pod, p.clone()).unwrap();
            }
            Err(_) => assert!(!feasible, "gantry found no node for {pod:?}, but one fits"),
        }
    }
    assert!(first.iter().filter(|r| r.is_ok()).count() >= 4, "the case should place most pods: {first:?}");
}

#[test]
fn policy_names_round_trip() {
    for kind in PolicyKind::ALL {
        assert_eq!(kind.name().parse::<PolicyKind>(), Ok(kind));
        assert_eq!(kind.build(&Cluster::default(), &[]).name(), kind.name());
    }
    assert!("FGD".parse::<PolicyKind>().is_ok());
    let err = "magic".parse::<PolicyKind>().unwrap_err().to_string();
    assert!(err.contains("unknown policy \"magic\"") && err.contains("best-fit"), "{err}");
}

// --- gantry: the resource-balance fragment, by hand ---------------------------------------------

/// Expected workload: one 1-GPU pod with 12 cores and 40 GiB, and one CPU-only pod with 12 cores
/// and 8 GiB. Per milli-GPU that asks 24 milli-CPU and 48 MiB (24 000 / 1000, 48 GiB / 1000).
fn balance_workload() -> Vec<PodRequest> {
    vec![
        PodRequest { memory_mib: 40 * 1024, ..whole(12_000, 1) },
        PodRequest { memory_mib: 8 * 1024, ..cpu_only(12_000) },
    ]
}

#[test]
fn gantry_balance_is_the_gpu_the_workload_cannot_reach() {
    let g = gantry_core::policy::GantryPolicy::new(&balance_workload(), &[]);
    // (cpu free, memory free, GPU free, expected balance in milli-GPU)
    let cases = [
        ("CPU and memory reach every GPU", 96_000, 400_000, 4000, 0.0),
        ("CPU reaches 2000 of 8000", 48_000, 1_000_000, 8000, 6000.0),
        ("memory reaches 1000 of 2000", 96_000, 48 * 1024, 2000, 1000.0),
        ("no GPU left", 0, 0, 0, 0.0),
    ];
    for (case, cpu, mem, gpu, want) in cases {
        let got = g.balance(cpu, mem, gpu);
        assert!((got - want).abs() < 1e-9, "{case}: balance {got}, want {want}");
    }
}

#[test]
fn gantry_sends_cpu_only_pods_to_the_node_with_cpu_to_spare() {
    // Two nodes with 2 idle GPUs each: one has exactly the CPU its GPUs need (2 × 24 000), the
    // other 128 cores. FGD sees no difference for a CPU-only pod (both score 50 and the tie
    // goes to node 0); Gantry's balance fragment grows only on the CPU-tight node.
    let expected = balance_workload();
    let mut tight = node(48_000, &[1000, 1000]);
    tight.memory_free = 1 << 30;
    let mut rich = node(128_000, &[1000, 1000]);
    rich.memory_free = 1 << 30;
    let c = cluster(vec![tight, rich]);
    let pod = cpu_only(12_000);
    let mut fgd = Scheduler::new(PolicyKind::Fgd.build(&c, &expected));
    assert_eq!(fgd.decide(&c, &pod, 0).map(|p| p.node), Ok(0));
    let mut gantry = Scheduler::new(PolicyKind::Gantry.build(&c, &expected));
    assert_eq!(gantry.decide(&c, &pod, 0).map(|p| p.node), Ok(1));
}

// --- gantry: the reservation term ---------------------------------------------------------------

fn t4_node(name: &str) -> Node {
    Node::new(name, 64_000, 1 << 20, 4, Some(ModelId(1)))
}

#[test]
fn gantry_pressure_is_the_pinned_demand_scaled_to_the_cluster_over_the_gpus_it_may_use() {
    // One V100 and one T4 node of 4 GPUs (8 000 milli). Expected: one 1-GPU pod pinned to T4
    // and two that may go anywhere, 3 000 milli asked, so k = 8 000 / 3 000. The pinned shape
    // may use the T4's 4 000: pressure(T4) = k · 1 000 / 4 000 = 2/3. The free shapes fit the
    // whole cluster and press on nothing.
    let c = cluster(vec![plain("v", 64_000, 4), t4_node("t")]);
    let pinned = whole(1_000, 1).with_models(ModelSet(0b10));
    let g = gantry_core::policy::GantryPolicy::new(&[pinned, whole(1_000, 1), whole(1_000, 1)], &c.nodes);
    assert_eq!(g.pressure(&c.nodes[0]), 0.0);
    assert!((g.pressure(&c.nodes[1]) - 2.0 / 3.0).abs() < 1e-12, "{}", g.pressure(&c.nodes[1]));
    // Twice as much pinned demand as the T4 holds is capped at 1.
    let heavy = [pinned, pinned, pinned, whole(1_000, 1)];
    let g = gantry_core::policy::GantryPolicy::new(&heavy, &c.nodes);
    assert_eq!(g.pressure(&c.nodes[1]), 1.0);
}

#[test]
fn gantry_pressure_is_zero_when_every_shape_fits_every_node() {
    let c = cluster(vec![plain("a", 64_000, 4), plain("b", 64_000, 4), t4_node("t")]);
    let expected = [whole(1_000, 1), whole(8_000, 4), share(2_000, 500), cpu_only(4_000)];
    let g = gantry_core::policy::GantryPolicy::new(&expected, &c.nodes);
    for n in &c.nodes {
        assert_eq!(g.pressure(n), 0.0, "{}", n.name);
    }
}

#[test]
fn gantry_sends_a_pod_that_may_go_anywhere_to_the_model_nobody_else_needs() {
    // One expected pod in 40 is a 4-GPU pod pinned to T4: too rare by count for FGD's typical
    // pods (95 % of the pods by count), but it needs the whole T4 node. The tie-break order puts
    // the T4 first and FGD takes it for a 1-GPU pod that may go anywhere; Gantry's pressure on
    // the T4 class (k · 4 000 / 4 000 with k = 8 000 / 43 000) sends that pod to the V100.
    let c = cluster(vec![t4_node("t"), plain("v", 64_000, 4)]);
    let pinned = whole(4_000, 4).with_models(ModelSet(0b10));
    let expected = pods(&[(39, whole(4_000, 1)), (1, pinned)]);
    let pod = whole(4_000, 1);
    let mut fgd = Scheduler::new(PolicyKind::Fgd.build(&c, &expected)).with_tie_break(vec![0, 1]);
    assert_eq!(fgd.decide(&c, &pod, 0).map(|p| p.node), Ok(0));
    let mut gantry = Scheduler::new(PolicyKind::Gantry.build(&c, &expected)).with_tie_break(vec![0, 1]);
    assert_eq!(gantry.decide(&c, &pod, 0).map(|p| p.node), Ok(1));
    // The pinned pod still goes where it must.
    assert_eq!(gantry.decide(&c, &pinned, 0).map(|p| p.node), Ok(0));
}

#[test]
fn gantry_keeps_the_only_nodes_that_hold_a_large_pod_for_it() {
    // 8-GPU pods asking 120 cores fit only the 128-core node; a 1-GPU pod that fits both goes to
    // the 64-core one, although the tie-break order offers the 128-core node first.
    let c = cluster(vec![plain("big", 128_000, 8), plain("small", 64_000, 8)]);
    let large = whole(120_000, 8);
    let expected: Vec<PodRequest> = std::iter::once(large).chain([whole(4_000, 1); 8]).collect();
    let g = gantry_core::policy::GantryPolicy::new(&expected, &c.nodes);
    assert!(g.pressure(&c.nodes[0]) > 0.0 && g.pressure(&c.nodes[1]) == 0.0);
    let mut gantry = Scheduler::new(PolicyKind::Gantry.build(&c, &expected)).with_tie_break(vec![0, 1]);
    assert_eq!(gantry.decide(&c, &whole(4_000, 1), 0).map(|p| p.node), Ok(1));
    assert_eq!(gantry.decide(&c, &large, 0).map(|p| p.node), Ok(0));
}

#[test]
fn gantry_typical_pods_keep_a_rare_shape_that_asks_much_of_the_gpu() {
    // 100 half-GPU pods and 2 pods of 8 GPUs: by count the 8-GPU shape is 2 % and FGD's 95 %
    // drops it; by GPU asked it is 16 000 of 66 000, so Gantry keeps it, weighted by count.
    let ps = pods(&[(100, share(1_000, 500)), (2, whole(8_000, 8))]);
    assert_eq!(shapes(&PodMix::typical(&ps, 0.95)), vec![(1_000, 1, 500, 1.0)]);
    let got = shapes(&PodMix::typical_by_pods_and_gpu(&ps, 0.95));
    assert_eq!(got, vec![(1_000, 1, 500, 100.0 / 102.0), (8_000, 8, 1000, 2.0 / 102.0)]);
}
