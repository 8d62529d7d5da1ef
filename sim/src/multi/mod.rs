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
    /// For a notebook: when its user works in it, as `[from, to)` seconds after it starts, in
    /// order; between them (and after the last) its GPUs sit idle. Empty: always busy.
    pub active: Vec<(Seconds, Seconds)>,
}

impl SimWorkload {
    /// Since when (seconds after start) its GPUs have been idle at `offset` seconds after its
    /// start; `None` while its user works in it or for work that is always busy.
    pub fn idle_since(&self, offset: Seconds) -> Option<Seconds> {
        if self.active.is_empty() {
            return None;
        }
        let mut since = 0;
        for &(from, to) in &self.active {
            if offset < from {
                break;
            }
            if offset < to {
                return None;
            }
            since = to;
        }
        Some(since)
    }

    /// When (seconds after start) its user next starts working in it after `offset`.
    pub fn next_session(&self, offset: Seconds) -> Option<Seconds> {
        self.active.iter().map(|&(from, _)| from).find(|&from| from > offset && from < self.duration)
    }
}

use gantry_core::model::{ModelCatalog, Node};
use gantry_core::tenancy::{Tenancy, UnboundFlavor};
use gantry_core::PolicyKind;
use rayon::prelude::*;
use summary::{MultiReport, SetupSummary};
use timeline::{Setup, TimelineSpec};

/// Why a multi-tenant simulation could not run. Each cause is the core's own error, kept whole so
/// a caller can tell them apart; the message is the cause's, word for word.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultiError {
    /// The tenants file names a GPU flavor that no node of the cluster has: its quota could never
    /// be used, so the queue refuses the tenancy.
    #[error(transparent)]
    UnboundFlavor(#[from] UnboundFlavor),
}

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
) -> Result<MultiReport, MultiError> {
    tenancy.bind(models)?;
    let outcomes: Vec<Result<timeline::Outcome, MultiError>> = spec
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi::generate::sessions;

    fn notebook(active: Vec<(Seconds, Seconds)>, duration: Seconds) -> SimWorkload {
        let workload = Workload {
            id: 1,
            name: "nb".into(),
            tenant: 0,
            kind: gantry_core::tenancy::Kind::Notebook,
            priority_class: None,
            pod_sets: Vec::new(),
            min_members: 1,
            submitted: 0,
            models: None,
            expected_runtime: None,
            charge: None,
        };
        SimWorkload { workload, duration, active }
    }

    #[test]
    fn a_notebook_is_idle_between_sessions_since_the_last_one_ended() {
        let w = notebook(vec![(0, 600), (3600, 4200)], 10_000);
        assert_eq!(w.idle_since(300), None, "in the first session");
        assert_eq!(w.idle_since(600), Some(600), "a session's end is idle");
        assert_eq!(w.idle_since(3000), Some(600));
        assert_eq!(w.idle_since(4000), None);
        assert_eq!(w.idle_since(9000), Some(4200), "after the last session");
        assert_eq!(w.next_session(700), Some(3600));
        assert_eq!(w.next_session(3600), None);
        assert_eq!(notebook(Vec::new(), 100).idle_since(50), None, "work that is always busy");
    }

    #[test]
    fn sessions_start_at_once_stay_inside_the_run_and_are_reproducible() {
        for id in 1..200 {
            let s = sessions(7, id, 12 * 3600);
            assert_eq!(s[0].0, 0, "the user works in a notebook when it starts");
            assert!(s.windows(2).all(|p| p[0].1 <= p[1].0), "sessions in order, apart");
            assert!(s.iter().all(|&(a, b)| a < b && b <= 12 * 3600));
            assert_eq!(s, sessions(7, id, 12 * 3600));
        }
    }
}
