//! What the API shows of the queue at one moment: tenants with their quotas and use, the waiting
//! workloads with position, reason and estimated start, and the running ones. Built from the
//! core's [`Queue`] by a pure function of the queue and the time, so `gantry simulate --serve`
//! and the scheduler's leader show the same thing for the same state. In a cluster the leader
//! sends it to the quota API (`PUT /internal/v1/view`) as JSON.

use gantry_core::queue::Queue;
use gantry_core::queue::{Explanation, Reason};
use gantry_core::tenancy::{Milli, Seconds, WhenExhausted};
use serde::{Deserialize, Serialize};

/// Milli-units as units (GPUs, cores), as JSON shows them.
fn units(m: Milli) -> f64 {
    m as f64 / 1000.0
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct View {
    /// Unix seconds of the snapshot.
    pub at: Seconds,
    pub currency: String,
    pub flavors: Vec<FlavorView>,
    pub tenants: Vec<TenantView>,
    pub queue: Vec<Waiting>,
    pub running: Vec<RunningView>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlavorView {
    pub name: String,
    /// Units on the cluster now.
    pub capacity: f64,
    /// Price per unit-hour, in the currency.
    pub price: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    pub name: String,
    pub cohort: Option<String>,
    pub namespaces: Vec<String>,
    pub quotas: Vec<QuotaView>,
    pub pending: usize,
    pub running: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetView>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuotaView {
    pub flavor: String,
    pub nominal: f64,
    pub borrowing_limit: Option<f64>,
    /// In use now, and how much of that is borrowed.
    pub used: f64,
    pub borrowed: f64,
    /// The most it could hold with nothing else running.
    pub ceiling: f64,
    /// The tenant's price per unit-hour of this flavor in micro-units (the flavor's own price
    /// unless the tenant has another): what its idle time is charged at.
    #[serde(default)]
    pub price_micros: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetView {
    pub gpu_hours_per_month: f64,
    pub used_gpu_hours: f64,
    /// `refuse` or `idle-only`.
    pub when_exhausted: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    pub id: u64,
    pub name: String,
    pub tenant: String,
    pub kind: String,
    pub submitted: Seconds,
    pub position: usize,
    pub queue_length: usize,
    /// The structured reason (quantities in milli-units).
    pub reason: Reason,
    pub message: String,
    pub estimated_start: Option<Seconds>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunningView {
    pub id: u64,
    pub name: String,
    pub tenant: String,
    pub kind: String,
    pub flavor: String,
    pub units: f64,
    pub since: Seconds,
    /// A notebook's: since when all its GPUs sat idle, as the node agents saw them (the
    /// scheduler fills it from their evidence; the core does not know it, so [`View::of`] leaves
    /// it out). Absent when not idle, not a notebook, or not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<Seconds>,
}

impl View {
    /// A view of nothing yet at `at`: what a service shows before its first snapshot.
    pub fn empty(at: Seconds, currency: &str) -> View {
        View {
            at,
            currency: currency.to_string(),
            flavors: vec![],
            tenants: vec![],
            queue: vec![],
            running: vec![],
        }
    }

    /// The snapshot of `q` at `now`.
    pub fn of(q: &Queue, now: Seconds) -> View {
        let t = &q.tenancy;
        let tree = q.quota();
        let flavors = t
            .flavors
            .iter()
            .enumerate()
            .map(|(f, fl)| FlavorView {
                name: fl.name.clone(),
                capacity: units(q.capacity(f)),
                price: fl.price_micros as f64 / 1e6,
            })
            .collect();
        let mut running_of = vec![0usize; t.tenants.len()];
        let mut running: Vec<RunningView> = q
            .running_workloads()
            .map(|(w, r)| {
                running_of[w.tenant] += 1;
                RunningView {
                    id: w.id,
                    name: w.name.clone(),
                    tenant: t.tenants[w.tenant].name.clone(),
                    kind: w.kind.name().to_string(),
                    flavor: t.flavors.get(r.flavor).map_or(String::new(), |f| f.name.clone()),
                    units: units(r.demand),
                    since: r.at,
                    idle_since: None,
                }
            })
            .collect();
        running.sort_by(|a, b| (&a.tenant, a.since, a.id).cmp(&(&b.tenant, b.since, b.id)));
        let tenants = t
            .tenants
            .iter()
            .enumerate()
            .map(|(ti, tn)| TenantView {
                name: tn.name.clone(),
                cohort: tn.cohort.and_then(|c| t.cohorts.get(c)).map(|c| c.name.clone()),
                namespaces: tn.namespaces.clone(),
                quotas: (0..t.flavors.len())
                    .filter(|&f| {
                        tn.quotas
                            .get(f)
                            .is_some_and(|q| q.nominal > 0 || q.borrowing_limit.is_some_and(|b| b > 0))
                            || tree.usage(ti, f) > 0
                    })
                    .map(|f| QuotaView {
                        flavor: t.flavors[f].name.clone(),
                        nominal: units(tree.nominal(ti, f)),
                        borrowing_limit: tn.quotas.get(f).and_then(|q| q.borrowing_limit).map(units),
                        used: units(tree.usage(ti, f)),
                        borrowed: units(tree.borrowed(ti, f)),
                        ceiling: units(tree.ceiling(ti, f).max(0) as Milli),
                        price_micros: tn.prices_micros.get(f).copied().unwrap_or(t.flavors[f].price_micros),
                    })
                    .collect(),
                pending: q.pending_of(ti),
                running: running_of[ti],
                budget: tn.budget.map(|b| BudgetView {
                    gpu_hours_per_month: b.milli_gpu_seconds as f64 / 3.6e6,
                    used_gpu_hours: q.ledger().month_gpu_use(ti, now) as f64 / 3.6e6,
                    when_exhausted: match b.when_exhausted {
                        WhenExhausted::Refuse => "refuse",
                        WhenExhausted::IdleOnly => "idle-only",
                    }
                    .to_string(),
                }),
            })
            .collect();
        let mut queue: Vec<Waiting> = q
            .pending_ids()
            .filter_map(|id| {
                let Explanation { tenant, reason, position, queue_length, estimated_start, message, .. } =
                    q.explain(id, now)?;
                let w = q.workload(id)?;
                Some(Waiting {
                    id,
                    name: w.name.clone(),
                    tenant,
                    kind: w.kind.name().to_string(),
                    submitted: w.submitted,
                    position,
                    queue_length,
                    reason,
                    message,
                    estimated_start,
                })
            })
            .collect();
        queue.sort_by(|a, b| (&a.tenant, a.position).cmp(&(&b.tenant, b.position)));
        View { at: now, currency: t.currency.clone(), flavors, tenants, queue, running }
    }

    /// The waiting workload `id`, if any.
    pub fn waiting(&self, id: u64) -> Option<&Waiting> {
        self.queue.iter().find(|w| w.id == id)
    }
}
