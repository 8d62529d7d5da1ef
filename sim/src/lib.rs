//! `gantry simulate`: replays a GPU-cluster trace through Gantry's scheduling core, the way the
//! FGD paper's simulator does, and reports how much GPU each policy leaves unallocated.
//!
//! - [`trace`]: reading node and pod lists, with errors that name file, line and fix;
//! - [`replay`]: one run (one policy, one seed);
//! - [`report`]: statistics over seeds and the table, JSON and CSV outputs;
//! - [`plot`]: the unallocated-vs-arrived figure.

pub mod multi;
pub mod plot;
pub mod replay;
pub mod report;
pub mod trace;

use gantry_core::PolicyKind;
use rayon::prelude::*;
use replay::{RunResult, RunSpec};
use report::{PolicySummary, Report, TraceInfo};
use std::time::Instant;
use trace::Trace;

/// The openb trace bundled in the binary: 1213 GPU nodes and the 8152-pod default pod list.
pub mod bundled {
    pub const NODES_NAME: &str = "traces/openb/openb_node_list_gpu_node.csv";
    pub const PODS_NAME: &str = "traces/openb/openb_pod_list_default.csv";
    pub const NODES: &str = include_str!("../../traces/openb/openb_node_list_gpu_node.csv");
    pub const PODS: &str = include_str!("../../traces/openb/openb_pod_list_default.csv");
    /// A 968-GPU cluster sized like Helios Venus (77 nodes of 8 A100, 44 of 8 V100M32, 8 CPU-only),
    /// the default cluster for generated multi-tenant workloads.
    pub const VENUS_NODES_NAME: &str = "examples/clusters/venus-968.csv";
    pub const VENUS_NODES: &str = include_str!("../../examples/clusters/venus-968.csv");

    /// The bundled default trace.
    pub fn default_trace() -> Result<super::Trace, super::trace::TraceError> {
        super::Trace::parse(NODES_NAME, NODES, PODS_NAME, PODS)
    }
}

/// Runs every policy with every seed, in parallel over the rayon pool, and summarises.
/// `on_pod` is called after every placed or dropped pod of every run (for progress bars).
pub fn simulate(
    trace: &Trace,
    policies: &[PolicyKind],
    seeds: &[u64],
    inflate_to: f64,
    on_pod: &(dyn Fn() + Sync),
) -> Report {
    let start = Instant::now();
    let specs: Vec<RunSpec> = policies
        .iter()
        .flat_map(|&policy| seeds.iter().map(move |&seed| RunSpec { policy, seed, inflate_to }))
        .collect();
    let runs: Vec<RunResult> = specs.par_iter().map(|&spec| replay::run(trace, spec, on_pod)).collect();
    let results = policies
        .iter()
        .map(|&p| {
            let mine: Vec<&RunResult> = runs.iter().filter(|r| r.policy == p).collect();
            PolicySummary::of(&trace.name, p, &mine)
        })
        .collect();
    Report {
        trace: TraceInfo::of(trace),
        seeds: seeds.to_vec(),
        inflate_to,
        results,
        wall_seconds: start.elapsed().as_secs_f64(),
    }
}
