//! One admission cycle on a full cluster with many pending workloads.
//!
//! The cluster (half A100, half V100M32 nodes of 8 GPUs) is filled by the queue itself, then
//! `pending` more workloads are queued behind it (100 tenants of `examples/tenants/scale-100.yaml`,
//! a mix of 1-GPU, 8-GPU, 4×8-GPU gang and half-GPU workloads). Each measured iteration is what a
//! live scheduler does when a workload ends: release it, run one cycle (which admits what now
//! fits and records reasons for the rest), and queue as many new workloads as were admitted so
//! the pending count stays put.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::queue::{Mode, PodSet, Queue, Workload, WorkloadId};
use gantry_core::tenancy::{file, Kind, Seconds};
use gantry_core::{PolicyKind, Scheduler};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TENANTS: &str = include_str!("../../examples/tenants/scale-100.yaml");
const START: Seconds = 1_793_491_200;

fn workload(rng: &mut ChaCha8Rng, id: WorkloadId, now: Seconds) -> Workload {
    let (kind, count, request) = match rng.gen_range(0..10) {
        0..=3 => (Kind::PipelineStep, 1, PodRequest::whole_gpus(8000, 65536, 1)),
        4..=5 => (Kind::Training, 1, PodRequest::whole_gpus(64000, 524288, 8)),
        6 => (Kind::Training, 4, PodRequest::whole_gpus(64000, 524288, 8)),
        7 => (Kind::Notebook, 1, PodRequest::shared_gpu(4000, 16384, 500)),
        _ => (Kind::Batch, 1, PodRequest::whole_gpus(16000, 131072, 2)),
    };
    Workload {
        id,
        name: format!("w{id}"),
        tenant: rng.gen_range(0..100),
        kind,
        priority_class: None,
        pod_sets: vec![PodSet { name: "main".into(), count, request }],
        min_members: count,
        submitted: now,
        models: None,
        expected_runtime: Some(3600),
        charge: None,
    }
}

struct Bench {
    q: Queue,
    rng: ChaCha8Rng,
    next_id: WorkloadId,
    running: Vec<WorkloadId>,
    now: Seconds,
}

fn setup(nodes: usize, pending: usize) -> Bench {
    let tenancy = file::parse("scale-100.yaml", TENANTS).expect("the example tenants file parses");
    let mut models = ModelCatalog::default();
    let a100 = models.intern("A100").expect("two models");
    let v100 = models.intern("V100M32").expect("two models");
    let list = (0..nodes)
        .map(|i| Node::new(format!("n{i}"), 96000, 786432, 8, Some(if i % 2 == 0 { a100 } else { v100 })))
        .collect();
    let cluster = Cluster::new(models, list);
    let scheduler = Scheduler::new(PolicyKind::Gantry.build(&cluster, &[]));
    let q = Queue::new(tenancy, cluster, scheduler, Mode::Quota, START).expect("flavors match the nodes");
    let mut b = Bench { q, rng: ChaCha8Rng::seed_from_u64(7), next_id: 1, running: Vec::new(), now: START };
    // Fill the cluster, then queue `pending` more.
    let capacity = b.q.cluster().gpu_capacity();
    while b.q.cluster().gpu_allocated() < capacity * 97 / 100 {
        b.submit(64);
        let _ = b.cycle();
        if b.q.pending_count() > pending {
            break;
        }
    }
    while b.q.pending_count() < pending {
        b.submit(pending - b.q.pending_count());
        let _ = b.cycle();
    }
    b
}

impl Bench {
    fn submit(&mut self, n: usize) {
        for _ in 0..n {
            let w = workload(&mut self.rng, self.next_id, self.now);
            self.next_id += 1;
            let _ = self.q.submit(w, self.now);
        }
    }
    fn cycle(&mut self) -> usize {
        let out = self.q.cycle(self.now);
        self.running.extend(out.admitted.iter().map(|a| a.workload));
        out.admitted.len()
    }
    /// One workload ends; one cycle; refill the queue.
    fn step(&mut self) {
        self.now += 60;
        if !self.running.is_empty() {
            let i = self.rng.gen_range(0..self.running.len());
            let id = self.running.swap_remove(i);
            self.q.finish(id, self.now);
        }
        let admitted = self.cycle();
        self.submit(admitted);
    }
}

fn admission(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission-cycle");
    g.sample_size(20);
    for &(nodes, pending) in &[(1000, 10_000), (5000, 10_000), (20_000, 10_000), (5000, 1000), (5000, 50_000)]
    {
        let mut b = setup(nodes, pending);
        g.bench_function(BenchmarkId::new(format!("nodes-{nodes}"), format!("pending-{pending}")), |bench| {
            bench.iter(|| b.step())
        });
    }
    g.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
