//! What the in-cluster tests share: a replica's state with an empty cache, and its run
//! configuration.
#![allow(dead_code)]

use gantry_core::model::{Cluster, PodRequest};
use gantry_core::tenancy::Tenancy;
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::extender::Extender;
use gantry_scheduler::runner::{Live, RunConfig, Tenants};
use gantry_scheduler::server::AppState;
use std::sync::Arc;
use std::time::Duration;

/// A replica named `gantry-1` with tenants from `tenancy`, expecting pods like `expected`.
pub fn config(tenancy: Tenancy, expected: Vec<PodRequest>) -> RunConfig {
    RunConfig {
        lease_namespace: "gantry-system".into(),
        lease_name: "gantry-scheduler".into(),
        identity: "gantry-1".into(),
        tenants: Tenants::File(tenancy),
        policy: PolicyKind::Gantry,
        expected,
        cycle_every: Duration::from_secs(10),
        quota_api: None,
    }
}

/// A replica's shared state before its caches are filled.
pub fn replica(config: &RunConfig) -> (Arc<AppState>, Arc<Live>) {
    let empty = Cluster::default();
    let scheduler = Scheduler::new(config.policy.build(&empty, &config.expected));
    let state = AppState::new(Extender::new(Cluster::default(), scheduler)).expect("the metrics register");
    let live = Live::new(state.clone());
    (state, live)
}
