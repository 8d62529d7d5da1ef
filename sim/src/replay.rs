//! One simulation run, replaying the FGD paper's method (see `FGD.md` in the shared benchmarks):
//!
//! 1. sort the pods by name and shuffle them with the run's seed;
//! 2. inflate: append copies of pods drawn uniformly with replacement until the GPU request
//!    reaches the target share of cluster capacity (130 %), or remove random pods when above it;
//! 3. give the nodes a random tie-break order;
//! 4. place the pods one at a time, scoring every node; a pod that fits nowhere is dropped;
//! 5. after every pod, record arrived and allocated GPU as % of capacity, bucketed by arrived %.

use crate::trace::Trace;
use gantry_core::frag::PodMix;
use gantry_core::model::{could_ever_fit, Cluster, PodRequest};
use gantry_core::policy::{Fgd, PolicyKind};
use gantry_core::Scheduler;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// The arrived percentages reports show.
pub const REPORT_POINTS: [u32; 8] = [75, 80, 90, 95, 100, 110, 120, 130];

/// The highest arrived percentage bucket kept.
pub const MAX_BUCKET: usize = 200;

/// What one run replays.
#[derive(Clone, Copy, Debug)]
pub struct RunSpec {
    pub policy: PolicyKind,
    pub seed: u64,
    /// Target total GPU request as a multiple of capacity (the paper's "tune", 1.3).
    pub inflate_to: f64,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub policy: PolicyKind,
    pub seed: u64,
    /// Mean allocated GPU % per arrived-% bucket (0..=MAX_BUCKET), as the paper's analysis
    /// script buckets it; `None` where no pod landed in the bucket or its neighbours.
    pub allocated_by_arrived: Vec<Option<f64>>,
    pub pods: usize,
    pub failed_pods: usize,
    pub failed_gpu_milli: u64,
    /// Pods that no node could hold even when empty.
    pub never_fit_pods: usize,
    /// FGD fragment of the cluster as % of GPU capacity when arrivals first reach 100 %, and at the end.
    pub fragmentation_at_100: Option<f64>,
    pub fragmentation_end: f64,
    pub wall_seconds: f64,
}

impl RunResult {
    /// Unallocated GPU % at `arrived` %, or `None` if the run has no value there.
    pub fn unallocated_at(&self, arrived: u32) -> Option<f64> {
        self.allocated_by_arrived.get(arrived as usize).copied().flatten().map(|a| 100.0 - a)
    }
}

/// The pods of one run in arrival order: shuffled originals, then the inflation copies.
pub fn arrival_order(
    pods: &[PodRequest],
    names: &[&str],
    capacity: u64,
    inflate_to: f64,
    rng: &mut impl Rng,
) -> Vec<PodRequest> {
    let mut by_name: Vec<usize> = (0..pods.len()).collect();
    by_name.sort_by(|&a, &b| names[a].cmp(names[b]));
    let mut order: Vec<PodRequest> = by_name.iter().map(|&i| pods[i]).collect();
    order.shuffle(rng);
    let target = inflate_to * capacity as f64;
    let mut total: u64 = pods.iter().map(|p| p.gpu_total()).sum();
    // Only GPU requests grow the total, so a trace without any cannot be inflated.
    let grows = pods.iter().any(|p| p.gpu_total() > 0);
    if (total as f64) < target && grows {
        loop {
            let clone = pods[by_name[rng.gen_range(0..pods.len())]];
            // The paper's simulator compares with the per-GPU milli but adds the whole request.
            if (total + clone.gpu_milli as u64) as f64 > target {
                break;
            }
            total += clone.gpu_total();
            order.push(clone);
        }
    } else if (total as f64) > target {
        while total as f64 > target && !order.is_empty() {
            let gone = order.remove(rng.gen_range(0..order.len()));
            total -= gone.gpu_total();
        }
    }
    order
}

/// Runs one policy with one seed over the trace. `on_pod` is called after every pod (progress).
pub fn run(trace: &Trace, spec: RunSpec, mut on_pod: impl FnMut()) -> RunResult {
    let start = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let requests: Vec<PodRequest> = trace.pods.iter().map(|p| p.request).collect();
    let names: Vec<&str> = trace.pods.iter().map(|p| p.name.as_str()).collect();
    let capacity = trace.gpu_capacity().max(1);

    // 1-2. order and inflate
    let order = arrival_order(&requests, &names, capacity, spec.inflate_to, &mut rng);
    // 3. tie-break order of the nodes
    let mut rank: Vec<u32> = (0..trace.nodes.len() as u32).collect();
    rank.shuffle(&mut rng);

    let mut cluster = Cluster::new(trace.models.clone(), trace.nodes.clone());
    let mut scheduler = Scheduler::new(spec.policy.build(&cluster, &requests)).with_tie_break(rank);
    let measure = PodMix::typical(&requests, Fgd::COVERAGE);
    let fragmentation =
        |c: &Cluster| c.nodes.iter().map(|n| measure.fragment(n)).sum::<f64>() * 100.0 / capacity as f64;

    let mut never_fits: std::collections::HashMap<PodRequest, bool> = Default::default();
    let mut sums = vec![(0.0f64, 0u32); MAX_BUCKET + 2];
    let (mut arrived, mut allocated) = (0u64, 0u64);
    let (mut failed, mut failed_gpu, mut never) = (0, 0, 0);
    let mut frag_at_100 = None;
    // 4. place one pod at a time
    for (i, pod) in order.iter().enumerate() {
        let salt = rng.next_u64();
        match scheduler.place(&mut cluster, i as u64, pod, salt) {
            Ok(_) => allocated += pod.gpu_total(),
            Err(_) => {
                failed += 1;
                failed_gpu += pod.gpu_total();
                let hopeless = *never_fits
                    .entry(*pod)
                    .or_insert_with(|| !cluster.nodes.iter().any(|n| could_ever_fit(n, pod)));
                never += usize::from(hopeless);
            }
        }
        arrived += pod.gpu_total();
        // 5. record, bucketed as the paper's scripts do
        let arrived_pct = arrived as f64 * 100.0 / capacity as f64;
        let bucket = arrived_pct.round_ties_even() as usize;
        let alloc_pct = (allocated as f64 * 100.0 / capacity as f64 * 100.0).round() / 100.0;
        if bucket <= MAX_BUCKET {
            sums[bucket].0 += alloc_pct;
            sums[bucket].1 += 1;
        }
        if frag_at_100.is_none() && arrived_pct >= 100.0 {
            frag_at_100 = Some(fragmentation(&cluster));
        }
        on_pod();
    }
    let mean = |(s, n): (f64, u32)| (n > 0).then(|| s / n as f64);
    let allocated_by_arrived = (0..=MAX_BUCKET)
        .map(|a| {
            mean(sums[a]).or_else(|| {
                let lo = a.saturating_sub(1);
                let (s, n) = sums[lo..=a + 1].iter().fold((0.0, 0), |(s, n), &(s2, n2)| (s + s2, n + n2));
                mean((s, n))
            })
        })
        .collect();
    RunResult {
        policy: spec.policy,
        seed: spec.seed,
        allocated_by_arrived,
        pods: order.len(),
        failed_pods: failed,
        failed_gpu_milli: failed_gpu,
        never_fit_pods: never,
        fragmentation_at_100: frag_at_100,
        fragmentation_end: fragmentation(&cluster),
        wall_seconds: start.elapsed().as_secs_f64(),
    }
}

/// Pods that could run on no node of the trace even with the cluster empty, with their names.
pub fn never_fitting(trace: &Trace) -> Vec<&str> {
    trace
        .pods
        .iter()
        .filter(|p| !trace.nodes.iter().any(|n| could_ever_fit(n, &p.request)))
        .map(|p| p.name.as_str())
        .collect()
}

/// How many pods one run of `trace` replays with `inflate_to` (for progress bars): the same for
/// every seed up to the random inflation, so this is an estimate.
pub fn estimated_pods(trace: &Trace, inflate_to: f64) -> u64 {
    let total: u64 = trace.pods.iter().map(|p| p.request.gpu_total()).sum();
    let per_pod = total as f64 / trace.pods.len().max(1) as f64;
    let target = inflate_to * trace.gpu_capacity() as f64;
    if per_pod <= 0.0 {
        return trace.pods.len() as u64;
    }
    (trace.pods.len() as f64 + (target - total as f64) / per_pod).max(1.0) as u64
}
