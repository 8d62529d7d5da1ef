//! Multi-tenant simulation over time: workloads arrive and leave on a virtual clock and the same
//! admission queue the scheduler runs decides what starts, what waits and what is preempted.
//!
//! - [`openb`]: the openb trace's pods as single-pod workloads, each given to a tenant by a seeded
//!   rule;
//! - [`generate`]: a seeded generator of multi-tenant workloads (training gangs, pipeline steps,
//!   notebooks, serving, batch);
//! - [`timeline`]: the event loop and what it measures;
//! - [`summary`]: per-tenant and overall figures, and their table and JSON forms.

pub mod generate;
pub mod openb;
pub mod summary;
pub mod timeline;

use gantry_core::queue::Workload;
use gantry_core::tenancy::Seconds;

/// A workload and how long it runs once started (a preempted workload starts over).
#[derive(Clone, Debug, PartialEq)]
pub struct SimWorkload {
    pub workload: Workload,
    pub duration: Seconds,
}

use gantry_core::model::{ModelCatalog, Node};
use gantry_core::tenancy::Tenancy;
use gantry_core::PolicyKind;
use rayon::prelude::*;
use summary::{MultiReport, SetupSummary};
use timeline::{Setup, TimelineSpec};

/// 2026-11-01T00:00:00Z, where simulated time starts unless told otherwise.
pub const DEFAULT_START: Seconds = 1_793_491_200;

/// What a multi-tenant invocation compares.
#[derive(Clone, Debug)]
pub struct MultiSpec {
    /// Describes the workload source and the input files in the report.
    pub workload: String,
    pub tenants_file: String,
    pub nodes_file: String,
    pub policy: PolicyKind,
    /// Gantry first, then the baselines.
    pub setups: Vec<Setup>,
    pub start: Seconds,
    pub end: Seconds,
    pub sample_every: Seconds,
}

/// Runs every setup over the same workloads (in parallel) and summarizes them.
pub fn simulate_tenants(
    tenancy: &Tenancy,
    models: &ModelCatalog,
    nodes: &[Node],
    workloads: &[SimWorkload],
    spec: &MultiSpec,
) -> Result<MultiReport, String> {
    tenancy.bind(models)?;
    let outcomes: Vec<Result<timeline::Outcome, String>> = spec
        .setups
        .par_iter()
        .map(|&setup| {
            let t = TimelineSpec {
                setup,
                policy: spec.policy,
                start: spec.start,
                end: spec.end,
                sample_every: spec.sample_every,
            };
            timeline::run(tenancy, models, nodes, workloads, &t)
        })
        .collect();
    let span = spec.end - spec.start;
    let setups =
        outcomes.into_iter().map(|o| o.map(|o| SetupSummary::of(o, span))).collect::<Result<Vec<_>, _>>()?;
    Ok(MultiReport {
        workload: spec.workload.clone(),
        tenants_file: spec.tenants_file.clone(),
        nodes: spec.nodes_file.clone(),
        gpus: nodes.iter().map(|n| n.gpu_count() as u64).sum(),
        days: span as f64 / 86400.0,
        currency: tenancy.currency.clone(),
        reclaim_window: tenancy.timing.reclaim_window,
        min_runtime: tenancy.timing.min_runtime,
        setups,
    })
}
