//! The cost of ONE placement decision ([`Scheduler::decide`] for one pod, without allocating it),
//! per policy, on GPU clusters at about 50 % GPU load.
//!
//! # Clusters
//!
//! - `openb-1213`: the real 1213-node openb cluster (`traces/openb/openb_node_list_gpu_node.csv`),
//!   filled to ~50 % of its GPU capacity by placing shuffled pods of
//!   `traces/openb/openb_pod_list_default.csv` (fixed seed) **with the policy being measured**, so
//!   each policy is timed on the cluster state it would itself have produced.
//! - `synthetic-<n>`: `n` nodes made by cycling through the openb node rows (renamed), filled to
//!   ~50 % with **best-fit** (cheap, so 20,000 nodes fill in seconds; the trace is cycled when one
//!   pass is not enough) and then shared by every policy. `synthetic-1213` is the openb node list
//!   itself filled this way: the like-for-like baseline for the 5,000 and 20,000 node scaling.
//!
//! The pods decided on rotate through the most frequent pod shapes of the trace ([`PROBES`] of
//! them, CPU-only shapes included, as the trace has them).
//!
//! # Variants
//!
//! - `cold`: a fresh [`Scheduler`] per decision, so every feasible node is filtered **and scored**.
//!   This is the true cost of scoring a cluster, e.g. the first pod of a shape, or after every node
//!   changed. Building the scheduler (for FGD and Gantry that derives the typical pods from the
//!   8,152 trace pods) is setup and is not timed; for cacheable policies, sizing the fresh score
//!   cache (16 bytes per node) on the first decision is part of the decision and is timed.
//! - `warm`: one scheduler whose score cache was primed with every probe shape, deciding again on
//!   an unchanged cluster: each feasible node costs the filter plus one cache lookup. This is what
//!   the simulator mostly sees (between two decisions only the node that got the last pod changed),
//!   not the cost of scoring. `random` is not cacheable, so its `warm` still scores every node.
//!
//! Run with (a separate target dir keeps it from blocking other builds):
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-bench cargo bench -p gantry-core --bench placement
//! ```
//!
//! Append a criterion filter (`-- openb-1213/cold`) to run a subset; clusters are only built and
//! filled for benchmarks the filter selects.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use gantry_core::model::fits;
use gantry_core::{Cluster, ModelCatalog, ModelSet, Node, PodRequest, PolicyKind, Scheduler};
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Seed of every shuffle (pod order, tie-break order).
const SEED: u64 = 42;
/// Share of the cluster's GPU capacity allocated before measuring.
const TARGET_LOAD: f64 = 0.5;
/// How many of the most frequent pod shapes the measured decisions rotate through.
const PROBES: usize = 8;
/// Node counts of the synthetic clusters (1213 = the openb node list itself).
const SYNTHETIC_SIZES: [usize; 3] = [1_213, 5_000, 20_000];

// ---------------------------------------------------------------------------------------------
// The trace: a tiny CSV reader for the two openb files (plain comma-separated, no quoting).

struct Trace {
    models: ModelCatalog,
    nodes: Vec<Node>,
    pods: Vec<PodRequest>,
}

fn trace_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces/openb").join(file)
}

/// A CSV file as a header and rows of fields.
struct Csv {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

impl Csv {
    fn read(path: PathBuf) -> Csv {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("cannot read trace file {}: {e} (the bench reads the openb trace)", path.display())
        });
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().unwrap_or_else(|| panic!("{} is empty", path.display()));
        let header = header.split(',').map(|s| s.trim().to_string()).collect();
        let rows =
            lines.map(|(i, l)| (i + 1, l.split(',').map(|s| s.trim().to_string()).collect())).collect();
        Csv { path, header, rows }
    }

    fn column(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap_or_else(|| {
            panic!("{} has no column {name:?} (header: {})", self.path.display(), self.header.join(","))
        })
    }

    fn field<'a>(&self, line: usize, row: &'a [String], col: usize) -> &'a str {
        row.get(col)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{}:{line}: missing column {}", self.path.display(), self.header[col]))
    }

    fn number<T: std::str::FromStr>(&self, line: usize, row: &[String], col: usize) -> T
    where
        T::Err: std::fmt::Display,
    {
        let text = self.field(line, row, col);
        text.parse().unwrap_or_else(|e| {
            panic!("{}:{line}: {} is {text:?}: {e}", self.path.display(), self.header[col])
        })
    }
}

fn load_trace() -> Trace {
    let csv = Csv::read(trace_path("openb_node_list_gpu_node.csv"));
    let (c_name, c_cpu, c_mem, c_gpu, c_model) = (
        csv.column("sn"),
        csv.column("cpu_milli"),
        csv.column("memory_mib"),
        csv.column("gpu"),
        csv.column("model"),
    );
    let mut models = ModelCatalog::default();
    let mut nodes = Vec::with_capacity(csv.rows.len());
    for (line, row) in &csv.rows {
        let gpus: u32 = csv.number(*line, row, c_gpu);
        let model_name = csv.field(*line, row, c_model);
        let model = (gpus > 0 && !model_name.is_empty())
            .then(|| models.intern(model_name).expect("the openb trace names fewer than 64 GPU models"));
        nodes.push(Node::new(
            csv.field(*line, row, c_name),
            csv.number(*line, row, c_cpu),
            csv.number(*line, row, c_mem),
            gpus,
            model,
        ));
    }

    let csv = Csv::read(trace_path("openb_pod_list_default.csv"));
    let (c_cpu, c_mem, c_num, c_milli) =
        (csv.column("cpu_milli"), csv.column("memory_mib"), csv.column("num_gpu"), csv.column("gpu_milli"));
    let c_spec = csv.header.iter().position(|h| h == "gpu_spec");
    let mut pods = Vec::with_capacity(csv.rows.len());
    for (line, row) in &csv.rows {
        let gpu_count: u32 = csv.number(*line, row, c_num);
        let gpu_milli: u32 = csv.number(*line, row, c_milli);
        let spec = c_spec.map_or("", |c| csv.field(*line, row, c));
        let allowed_models = (gpu_count > 0 && !spec.is_empty()).then(|| {
            spec.split('|')
                .map(|m| {
                    models
                        .get(m.trim())
                        .unwrap_or_else(|| panic!("{}:{line}: unknown GPU model {m:?}", csv.path.display()))
                })
                .collect::<ModelSet>()
        });
        let pod = PodRequest {
            cpu_milli: csv.number(*line, row, c_cpu),
            memory_mib: csv.number(*line, row, c_mem),
            gpu_count,
            gpu_milli,
            allowed_models,
        };
        pod.validate().unwrap_or_else(|e| panic!("{}:{line}: {e}", csv.path.display()));
        pods.push(pod);
    }
    Trace { models, nodes, pods }
}

/// The `k` most frequent pod requests of the trace (ties broken by the request, for determinism).
fn probe_pods(pods: &[PodRequest], k: usize) -> Vec<PodRequest> {
    let mut counts: HashMap<PodRequest, usize> = HashMap::new();
    for p in pods {
        *counts.entry(*p).or_default() += 1;
    }
    let mut by_count: Vec<(PodRequest, usize)> = counts.into_iter().collect();
    let key = |p: &PodRequest| {
        (p.cpu_milli, p.memory_mib, p.gpu_count, p.gpu_milli, p.allowed_models.map_or(0, |m| m.0))
    };
    by_count.sort_by(|(pa, ca), (pb, cb)| cb.cmp(ca).then_with(|| key(pa).cmp(&key(pb))));
    by_count.into_iter().take(k).map(|(p, _)| p).collect()
}

// ---------------------------------------------------------------------------------------------
// Filling a cluster.

/// A cluster at the target load and the tie-break order its scheduler uses.
struct Loaded {
    cluster: Cluster,
    rank: Vec<u32>,
}

/// Places trace pods in shuffled order (reshuffled on each further pass through the trace) with
/// `kind` until [`TARGET_LOAD`] of the GPU capacity is allocated. Pods that do not fit are skipped.
/// Checks that every probe pod still fits somewhere, so that the benchmarks time real placements.
fn fill(
    label: &str,
    models: &ModelCatalog,
    nodes: Vec<Node>,
    pods: &[PodRequest],
    probes: &[PodRequest],
    kind: PolicyKind,
) -> Loaded {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut cluster = Cluster::new(models.clone(), nodes);
    let mut rank: Vec<u32> = (0..cluster.nodes.len() as u32).collect();
    rank.shuffle(&mut rng);
    let mut scheduler = Scheduler::new(kind.build(&cluster, pods)).with_tie_break(rank.clone());

    let target = (TARGET_LOAD * cluster.gpu_capacity() as f64) as u64;
    let mut allocated = cluster.gpu_allocated();
    let (mut placed, mut failed) = (0u64, 0u64);
    let mut order = pods.to_vec();
    'passes: loop {
        order.shuffle(&mut rng);
        let placed_before = placed;
        for pod in &order {
            if allocated >= target {
                break 'passes;
            }
            let salt = rng.next_u64();
            match scheduler.place(&mut cluster, placed + failed, pod, salt) {
                Ok(_) => {
                    placed += 1;
                    allocated += pod.gpu_total();
                }
                Err(_) => failed += 1,
            }
        }
        assert!(
            placed > placed_before,
            "{label}: a whole pass through the trace placed no pod before reaching the target load"
        );
    }
    eprintln!(
        "{label}: filled with {kind}: {placed} pods placed, {failed} did not fit, {:.1} % of {} GPUs allocated",
        allocated as f64 * 100.0 / cluster.gpu_capacity() as f64,
        cluster.gpu_capacity() / 1000,
    );
    for probe in probes {
        assert!(
            cluster.nodes.iter().any(|n| fits(n, probe).is_ok()),
            "{label}: probe pod {probe:?} fits no node at this load, so deciding it would time a failure"
        );
    }
    Loaded { cluster, rank }
}

/// `n` nodes cycling through the openb node rows, renamed.
fn synthetic_nodes(trace: &Trace, n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let src = &trace.nodes[i % trace.nodes.len()];
            Node::new(
                format!("synthetic-node-{i:05}"),
                src.cpu_capacity,
                src.memory_capacity,
                src.gpu_count(),
                src.model,
            )
        })
        .collect()
}

/// A well-mixed salt per decision, for `random`.
fn salt(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

// ---------------------------------------------------------------------------------------------
// The measurements.

/// One decision with a scheduler that has never scored this cluster.
fn bench_cold(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    kind: PolicyKind,
    trace: &Trace,
    probes: &[PodRequest],
    loaded: &OnceCell<Loaded>,
    init: impl Fn() -> Loaded,
) {
    c.bench_function(BenchmarkId::new("cold", kind.name()), |b| {
        let l = loaded.get_or_init(&init);
        let mut i = 0usize;
        b.iter_batched_ref(
            || Scheduler::new(kind.build(&l.cluster, &trace.pods)).with_tie_break(l.rank.clone()),
            |scheduler| {
                i += 1;
                let pod = &probes[i % probes.len()];
                scheduler.decide(&l.cluster, black_box(pod), salt(i))
            },
            BatchSize::SmallInput,
        );
    });
}

/// One decision with a scheduler whose cache already holds every node's score for every probe.
fn bench_warm(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    kind: PolicyKind,
    trace: &Trace,
    probes: &[PodRequest],
    loaded: &OnceCell<Loaded>,
    init: impl Fn() -> Loaded,
) {
    let mut warm: Option<Scheduler> = None;
    c.bench_function(BenchmarkId::new("warm", kind.name()), |b| {
        let l = loaded.get_or_init(&init);
        let scheduler = warm.get_or_insert_with(|| {
            let mut s = Scheduler::new(kind.build(&l.cluster, &trace.pods)).with_tie_break(l.rank.clone());
            for (i, pod) in probes.iter().enumerate() {
                s.decide(&l.cluster, pod, salt(i))
                    .expect("every probe pod fits somewhere (checked when the cluster was filled)");
            }
            s
        });
        let mut i = 0usize;
        b.iter(|| {
            i += 1;
            let pod = &probes[i % probes.len()];
            scheduler.decide(&l.cluster, black_box(pod), salt(i))
        });
    });
}

fn placement(c: &mut Criterion) {
    let trace = load_trace();
    let probes = probe_pods(&trace.pods, PROBES);

    // 1. The real cluster, filled by each policy itself: cold and warm.
    let mut group = c.benchmark_group("openb-1213");
    for kind in PolicyKind::ALL {
        let loaded = OnceCell::new();
        let init = || fill("openb-1213", &trace.models, trace.nodes.clone(), &trace.pods, &probes, kind);
        bench_cold(&mut group, kind, &trace, &probes, &loaded, init);
        bench_warm(&mut group, kind, &trace, &probes, &loaded, init);
    }
    group.finish();

    // 2. Synthetic clusters of repeated openb nodes, filled once with best-fit: cold.
    for n in SYNTHETIC_SIZES {
        let label = format!("synthetic-{n}");
        let mut group = c.benchmark_group(&label);
        let loaded = OnceCell::new();
        let init = || {
            fill(&label, &trace.models, synthetic_nodes(&trace, n), &trace.pods, &probes, PolicyKind::BestFit)
        };
        for kind in PolicyKind::ALL {
            bench_cold(&mut group, kind, &trace, &probes, &loaded, init);
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // Two cores and many benchmarks: short runs. Criterion's command-line flags still override.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = placement
}
criterion_main!(benches);
