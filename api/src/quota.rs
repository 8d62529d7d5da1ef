//! The quota API's wire types, shared by its writers (the scheduler's leader and the node
//! agents) and the quota API itself: ledger [`Record`]s (`POST /internal/v1/accruals`, and the
//! lines of `gantry ledger import`), the node agents' [`IdleReport`]s (`POST
//! /internal/v1/idle`), and the view of the queue (`PUT /internal/v1/view`, [`crate::view`]).
//! Writers link these types, not the ledger (SQLite stays inside `gantry-quota-api`).

use serde::{Deserialize, Serialize};

/// One accrual: a tenant's use of a flavor over `[start, end)`, split by kind. As JSON (one per
/// line for `gantry ledger import`): camelCase keys, `idle` and `node` optional.
///
/// Two sources write accruals: the scheduler's leader (guaranteed and borrowed time, no `node`)
/// and, through the quota API, each node agent (idle-but-allocated time only, with its `node`,
/// which is part of the key so the two never collide).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    pub tenant: String,
    pub flavor: String,
    /// Unix seconds.
    pub start: i64,
    pub end: i64,
    /// Milli-unit-seconds within the tenant's nominal quota.
    pub guaranteed: u64,
    /// Milli-unit-seconds borrowed from the cohort.
    pub borrowed: u64,
    /// Milli-unit-seconds allocated but idle (the node agent's per-pod utilization).
    #[serde(default)]
    pub idle: u64,
    /// Price per unit-hour in micro-units of the currency, at the time of use.
    pub price_micros: u64,
    /// The node whose agent measured this idle time; absent on the scheduler's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The Kubeflow Pipelines run this part of the tenant's use was charged to
    /// ([`crate::charge`]); absent: the tenant only. The scheduler splits a tenant's interval
    /// into one record per run (and one for the rest), which add up to the tenant's figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The run's experiment and pipeline, where its pods name them (only with `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
}

impl Record {
    /// The idempotency key: tenant, flavor and interval; a node's idle time adds the node, a
    /// run's part adds the run and, when named, its experiment and pipeline (one run's pods
    /// may name different ones, and each is its own part). A record of the tenant only keeps
    /// the key it always had, so ledgers written before runs were charged replay as before.
    pub fn key(&self) -> String {
        let mut key = format!("{}/{}/{}/{}", self.tenant, self.flavor, self.start, self.end);
        if let Some(node) = &self.node {
            key.push_str(&format!("/idle@{node}"));
        }
        if let Some(run) = &self.run {
            key.push_str(&format!("/run@{run}"));
            if let Some(e) = &self.experiment {
                key.push_str(&format!("/experiment@{e}"));
            }
            if let Some(p) = &self.pipeline {
                key.push_str(&format!("/pipeline@{p}"));
            }
        }
        key
    }

    /// Money in micro-units for `milli_seconds` at this record's price, rounded down.
    pub fn cost(&self, milli_seconds: u64) -> u64 {
        cost_micros(milli_seconds, self.price_micros)
    }
}

/// The ledger's records of the core's accruals: names instead of indexes, empty intervals left
/// out. Idle time is not the core's to know (the node agent measures it): 0 here.
/// `accruals`: [`gantry_core::queue::Accruals`] (with the runs they are charged to), or bare
/// records (charged to their tenants only).
pub fn records_of<A: gantry_core::queue::Charged + ?Sized>(
    tenancy: &gantry_core::tenancy::Tenancy,
    accruals: &A,
) -> Vec<Record> {
    accruals
        .accruals()
        .iter()
        .filter(|a| a.end > a.start)
        .filter_map(|a| {
            let charge = accruals.charge_of(a);
            Some(Record {
                tenant: tenancy.tenants.get(a.tenant)?.name.clone(),
                flavor: tenancy.flavors.get(a.flavor)?.name.clone(),
                start: a.start,
                end: a.end,
                guaranteed: a.guaranteed,
                borrowed: a.borrowed,
                idle: 0,
                price_micros: a.price_micros,
                node: None,
                run: charge.map(|c| c.run.clone()),
                experiment: charge.and_then(|c| c.experiment.clone()),
                pipeline: charge.and_then(|c| c.pipeline.clone()),
            })
        })
        .collect()
}

/// Money in micro-units for `milli_seconds` of use at `price_micros` per unit-hour, rounded down.
pub fn cost_micros(milli_seconds: u64, price_micros: u64) -> u64 {
    (u128::from(milli_seconds) * u128::from(price_micros) / 3_600_000) as u64
}

/// One node's closed windows.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdleReport {
    pub node: String,
    pub lines: Vec<IdleLine>,
}

/// Idle time of one namespace's pods on one GPU model over `[start, end)`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdleLine {
    /// Unix seconds.
    pub start: i64,
    pub end: i64,
    pub namespace: String,
    /// As the node's `nvidia.com/gpu.product` label spells it.
    pub model: String,
    /// Milli-GPU-seconds allocated to the namespace's pods and idle.
    pub idle: u64,
}

/// A notebook the scheduler stopped because its GPUs sat idle (a tenant's `idleNotebooks`
/// rule): the ledger's line for it (`POST /internal/v1/notebook-stops`, one JSON object per
/// line). The idle GPU time it names was charged to the tenant already, in the accruals; this
/// line says why the notebook stopped and what its idle stretch cost, once.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotebookStopRecord {
    pub tenant: String,
    pub namespace: String,
    /// The Notebook's name.
    pub notebook: String,
    pub flavor: String,
    /// Unix seconds: since when its GPUs were idle, and when Gantry stopped it.
    pub idle_since: i64,
    pub at: i64,
    /// Milli-GPU-seconds allocated and idle from `idle_since` to `at`.
    pub idle: u64,
    /// The tenant's price per GPU-hour of the flavor, micro-units.
    pub price_micros: u64,
    pub message: String,
}

impl NotebookStopRecord {
    /// The line for `stop`, the idle rule's decision at `at` on the Notebook `namespace/notebook`:
    /// tenant and flavor by name, and the tenant's price of the flavor (0 where it has none).
    pub fn of(
        tenancy: &gantry_core::tenancy::Tenancy,
        stop: &gantry_core::notebooks::Stop,
        namespace: &str,
        notebook: &str,
        at: i64,
    ) -> NotebookStopRecord {
        let tenant = tenancy.tenants.get(stop.tenant);
        NotebookStopRecord {
            tenant: tenant.map(|t| t.name.clone()).unwrap_or_default(),
            namespace: namespace.to_string(),
            notebook: notebook.to_string(),
            flavor: tenancy.flavors.get(stop.flavor).map(|f| f.name.clone()).unwrap_or_default(),
            idle_since: stop.idle_since,
            at,
            idle: stop.idle_milli_gpu_seconds,
            price_micros: tenant.and_then(|t| t.prices_micros.get(stop.flavor)).copied().unwrap_or(0),
            message: stop.message.clone(),
        }
    }

    /// The idempotency key: a notebook is stopped at most once a second.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.notebook, self.at)
    }

    /// What its idle stretch cost, micro-units.
    pub fn cost_micros(&self) -> u64 {
        cost_micros(self.idle, self.price_micros)
    }
}
