//! Tenants, cohorts, quotas, priorities, prices and budgets: who may use what.
//!
//! A [`Tenancy`] is the validated form of a tenants file (see `tenancy::file`) or, in a cluster,
//! of Gantry's tenant resources plus the cluster-wide [`Settings`]; both forms are validated and
//! built by one builder, `tenancy::build`. Everything here is plain data indexed by small
//! integers so the admission cycle can look things up without hashing:
//!
//! - a **flavor** is a kind of quota: the GPUs of one model (amounts in milli-GPU), or `cpu` for
//!   pods without GPUs (amounts in milli-CPU);
//! - a **tenant** owns namespaces and has, per flavor, a nominal quota plus how much of it may be
//!   lent and how much more may be borrowed inside its cohort;
//! - a **cohort** pools the lendable quota of its members; cohorts nest, so a parent cohort lends
//!   between its child cohorts as Kueue's hierarchical cohorts do.

pub mod build;
pub mod file;

use crate::model::{ModelCatalog, ModelId, GPU_MILLI};
use serde::Serialize;
use std::fmt;

/// Milli-units of a flavor: milli-GPU for GPU flavors, milli-CPU for `cpu`.
pub type Milli = u64;

/// Seconds on the caller's clock (Unix time in a cluster, virtual time in the simulator).
pub type Seconds = i64;

/// Index of a flavor in [`Tenancy::flavors`].
pub type FlavorId = usize;
/// Index of a tenant in [`Tenancy::tenants`].
pub type TenantId = usize;
/// Index of a cohort in [`Tenancy::cohorts`].
pub type CohortId = usize;

/// The name of the flavor for pods that request no GPU.
pub const CPU_FLAVOR: &str = "cpu";

/// Milli-GPU-seconds in one GPU-hour.
pub const MILLI_GPU_SECONDS_PER_GPU_HOUR: u64 = GPU_MILLI as u64 * 3600;

/// A quota flavor: GPUs of one model, or CPU.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flavor {
    pub name: String,
    /// Price per GPU-hour (per CPU-core-hour for `cpu`) in micro-units of the currency, unless a
    /// tenant sets its own.
    pub price_micros: u64,
    /// Whether pods may share one GPU of this flavor (`gantry.dev/gpu-milli`): granted by the
    /// platform for GPUs set up for it (time-slicing or MPS, whose models GPU Feature Discovery
    /// names with a `-SHARED` suffix), never by a pod. On other flavors a pod is charged and placed
    /// as a whole GPU.
    pub sharing: bool,
}

impl Flavor {
    pub fn is_cpu(&self) -> bool {
        self.name == CPU_FLAVOR
    }
}

/// One tenant's quota of one flavor, in milli-units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlavorQuota {
    /// Guaranteed: always available to the tenant, reclaimed from borrowers when it asks.
    pub nominal: Milli,
    /// At most this much above nominal, borrowed from the cohort; `None`: no limit.
    pub borrowing_limit: Option<Milli>,
    /// At most this much of the nominal quota is lent to the cohort; `None`: all of it.
    pub lending_limit: Option<Milli>,
}

/// Workload kinds; each has a default priority class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Training,
    PipelineStep,
    Notebook,
    Serving,
    Batch,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::Training, Kind::PipelineStep, Kind::Notebook, Kind::Serving, Kind::Batch];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Training => "training",
            Kind::PipelineStep => "pipeline-step",
            Kind::Notebook => "notebook",
            Kind::Serving => "serving",
            Kind::Batch => "batch",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Built-in default priority values by kind: serving and interactive notebooks first, then
    /// pipeline steps (short, and a whole run waits on each), training, and batch last.
    pub fn default_priority(self) -> i32 {
        match self {
            Kind::Serving => 1000,
            Kind::Notebook => 800,
            Kind::PipelineStep => 500,
            Kind::Training => 300,
            Kind::Batch => 100,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A named priority; higher values are admitted first and may preempt lower ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PriorityClass {
    pub name: String,
    pub value: i32,
}

/// What happens to a tenant's new work once its monthly GPU-hour budget is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenExhausted {
    /// Admit only as reclaimable work: it never preempts, and it is the first victim of any
    /// workload within its tenant's nominal quota (of any tenant) that needs the room.
    IdleOnly,
    /// Refuse new workloads until the next month.
    Refuse,
}

/// A monthly GPU-hour budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// GPU-hours per calendar month (UTC), over all GPU flavors, in milli-GPU-seconds.
    pub milli_gpu_seconds: u64,
    pub when_exhausted: WhenExhausted,
}

/// A tenant: a team that owns namespaces and quota.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tenant {
    pub name: String,
    pub namespaces: Vec<String>,
    pub cohort: Option<CohortId>,
    /// Per flavor, indexed by [`FlavorId`].
    pub quotas: Vec<FlavorQuota>,
    /// Fair-share weight (> 0): shares of borrowed capacity are divided in proportion to it.
    pub weight: f64,
    /// Priority classes this tenant may use (indexes into [`Tenancy::priority_classes`]).
    pub allowed_classes: Vec<usize>,
    /// Priority class per [`Kind`] for workloads that name none.
    pub kind_classes: [usize; 5],
    /// Price per GPU-hour per flavor in micro-units (the flavor's price unless overridden).
    pub prices_micros: Vec<u64>,
    pub budget: Option<Budget>,
    pub preemption: PreemptionPolicy,
    /// When its idle GPU notebooks are stopped; `None`: never.
    pub idle_notebooks: Option<IdleNotebooks>,
}

/// A tenant's rule for GPU notebooks whose GPUs sit idle (see the queue's `idle` module): once
/// every GPU of a running notebook has been idle for `stop_after`, and (unless `always`) work
/// that could use those GPUs waits, the notebook is stopped; its user starts it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IdleNotebooks {
    pub stop_after: Seconds,
    /// Stop even when nothing waits (gives GPUs back to the cluster, and to the tenant's budget).
    pub always: bool,
}

/// Which work a tenant's waiting workload may stop to start, and how it picks a flavor when it
/// must stop some: Kueue's ClusterQueue `preemption` and `flavorFungibility.whenCanPreempt`,
/// with a tenant for a ClusterQueue. The defaults are Gantry's rules (see the queue's
/// `preempt` module): the tenant's own lower-priority work, other tenants' borrowed work once
/// the reclaim window is over, never while the workload would then borrow itself, and reclaim on
/// any flavor before priority preemption on any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PreemptionPolicy {
    pub within_tenant: WithinTenant,
    pub reclaim_within_cohort: ReclaimWithinCohort,
    /// `Some(p)`: the workload may stop other tenants' borrowed work of priority at most `p` (and
    /// lower than its own) even when it would then borrow itself, without waiting for the
    /// reclaim window. `None` (Kueue's `Never`): every preemption must leave the workload within
    /// its tenant's nominal quota.
    pub borrow_within_cohort: Option<i32>,
    pub when_can_preempt: WhenCanPreempt,
}

/// Which of the tenant's own running work a waiting workload may stop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum WithinTenant {
    Never,
    /// Work of lower priority.
    #[default]
    LowerPriority,
    /// Work of lower priority, and work of equal priority submitted after the workload.
    LowerOrNewerEqualPriority,
}

/// Which borrowed work of other tenants a waiting workload within its nominal quota may stop
/// once it has waited the reclaim window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum ReclaimWithinCohort {
    Never,
    /// Borrowed work of lower priority only.
    LowerPriority,
    /// Any borrowed work: nominal quota is a promise whatever the priorities.
    #[default]
    Any,
}

/// When a workload can start only by stopping work: which flavor it stops work on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum WhenCanPreempt {
    /// Every flavor is tried with other tenants' borrowed work alone first; only then with the
    /// tenant's own lower-priority work too (stopping one's own work is the last resort).
    #[default]
    TryNextFlavor,
    /// The first flavor (in order) where any allowed victims make room.
    Preempt,
}

/// A cohort: a pool for lending between its members (tenants and child cohorts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cohort {
    pub name: String,
    pub parent: Option<CohortId>,
}

/// Timing rules of the admission cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// How long a workload within its tenant's nominal quota waits for free capacity before
    /// borrowed capacity is reclaimed for it by preemption.
    pub reclaim_window: Seconds,
    /// Workloads that have run less than this are not preempted.
    pub min_runtime: Seconds,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { reclaim_window: 300, min_runtime: 600 }
    }
}

/// The cluster-wide settings: what no tenant, cohort or flavor carries. In a tenants file they are
/// its top-level `currency`, `timing`, `priorityClasses` and `kindPriorities`; in a cluster they
/// come from a settings file with only those sections (see `file::parse_settings`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Settings {
    pub currency: String,
    pub timing: Timing,
    pub priority_classes: Vec<PriorityClass>,
    /// Priority class per [`Kind`] (indexes into `priority_classes`) for tenants that set none.
    pub kind_classes: [usize; 5],
}

impl Default for Settings {
    /// USD, the default timing and the built-in classes, one per kind.
    fn default() -> Self {
        let priority_classes = build::builtin_classes();
        Settings {
            currency: "USD".to_string(),
            timing: Timing::default(),
            kind_classes: build::default_kind_classes(&priority_classes),
            priority_classes,
        }
    }
}

/// The validated set of tenants, cohorts, flavors and priority classes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tenancy {
    pub flavors: Vec<Flavor>,
    pub cohorts: Vec<Cohort>,
    pub tenants: Vec<Tenant>,
    pub priority_classes: Vec<PriorityClass>,
    pub timing: Timing,
    /// ISO 4217 code or any label, used only when printing money.
    pub currency: String,
}

/// A GPU flavor no node is of ([`Tenancy::bind`]): its quota could never be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "flavor {flavor:?} is not the GPU model of any node (node models: {models}); rename the flavor to one of them or remove it"
)]
pub struct UnboundFlavor {
    pub flavor: String,
    /// The models the nodes have, comma-separated.
    pub models: String,
}

impl Tenancy {
    pub fn flavor(&self, name: &str) -> Option<FlavorId> {
        self.flavors.iter().position(|f| f.name == name)
    }
    pub fn tenant(&self, name: &str) -> Option<TenantId> {
        self.tenants.iter().position(|t| t.name == name)
    }
    pub fn cpu_flavor(&self) -> Option<FlavorId> {
        self.flavors.iter().position(Flavor::is_cpu)
    }
    /// The tenant that owns `namespace`.
    pub fn tenant_of_namespace(&self, namespace: &str) -> Option<TenantId> {
        self.tenants.iter().position(|t| t.namespaces.iter().any(|n| n == namespace))
    }
    pub fn class(&self, name: &str) -> Option<usize> {
        self.priority_classes.iter().position(|c| c.name == name)
    }
    /// Maps the cluster's GPU models to flavors. Fails, naming the flavor, when a GPU flavor is
    /// not a model of any node: its quota could never be used.
    pub fn bind(&self, models: &ModelCatalog) -> Result<FlavorMap, UnboundFlavor> {
        if let Some(flavor) = self.flavors.iter().find(|f| !f.is_cpu() && models.get(&f.name).is_none()) {
            return Err(UnboundFlavor { flavor: flavor.name.clone(), models: models.names().join(", ") });
        }
        Ok(self.bind_partial(models))
    }

    /// Maps the GPU models `models` knows to flavors, leaving GPU flavors whose model it does not
    /// know yet unbound (no node is of their model, so no workload can take them). For a live
    /// cluster, where nodes of a model may appear later: bind again once the catalog has grown.
    pub fn bind_partial(&self, models: &ModelCatalog) -> FlavorMap {
        let mut by_model = vec![None; models.len()];
        for (f, flavor) in self.flavors.iter().enumerate() {
            if flavor.is_cpu() {
                continue;
            }
            if let Some(slot) = models.get(&flavor.name).and_then(|m| by_model.get_mut(m.0 as usize)) {
                *slot = Some(f);
            }
        }
        FlavorMap { by_model, cpu: self.cpu_flavor() }
    }

    /// A copy with flavors, cohorts and tenants each in order of name (byte order), every index
    /// that refers to them renumbered; priority classes keep their order. Two tenancies that
    /// differ only in the order things were declared are equal once sorted.
    pub fn sorted_by_name(&self) -> Tenancy {
        /// The indexes of `names` in sorted order, and for each old index its new one.
        fn order<'a>(names: impl Iterator<Item = &'a str>) -> (Vec<usize>, Vec<usize>) {
            let names: Vec<&str> = names.collect();
            let mut sorted: Vec<usize> = (0..names.len()).collect();
            sorted.sort_by_key(|&i| names.get(i).copied());
            let mut new = vec![0; names.len()];
            for (to, &from) in sorted.iter().enumerate() {
                if let Some(slot) = new.get_mut(from) {
                    *slot = to;
                }
            }
            (sorted, new)
        }
        fn pick<T: Clone>(items: &[T], sorted: &[usize]) -> Vec<T> {
            sorted.iter().filter_map(|&i| items.get(i).cloned()).collect()
        }
        let (flavor_order, _) = order(self.flavors.iter().map(|f| f.name.as_str()));
        let (cohort_order, cohort_new) = order(self.cohorts.iter().map(|c| c.name.as_str()));
        let (tenant_order, _) = order(self.tenants.iter().map(|t| t.name.as_str()));
        let renumber = |c: Option<CohortId>| c.and_then(|c| cohort_new.get(c).copied());
        let cohorts = pick(&self.cohorts, &cohort_order)
            .into_iter()
            .map(|c| Cohort { parent: renumber(c.parent), ..c })
            .collect();
        let tenants = pick(&self.tenants, &tenant_order)
            .into_iter()
            .map(|t| Tenant {
                cohort: renumber(t.cohort),
                quotas: pick(&t.quotas, &flavor_order),
                prices_micros: pick(&t.prices_micros, &flavor_order),
                ..t
            })
            .collect();
        Tenancy {
            flavors: pick(&self.flavors, &flavor_order),
            cohorts,
            tenants,
            priority_classes: self.priority_classes.clone(),
            timing: self.timing,
            currency: self.currency.clone(),
        }
    }

    /// A copy with borrowing switched off: every tenant keeps to its nominal quota (the
    /// strict-quota baseline).
    pub fn strict(&self) -> Tenancy {
        let mut t = self.clone();
        for tenant in &mut t.tenants {
            for q in &mut tenant.quotas {
                q.borrowing_limit = Some(0);
            }
        }
        t
    }
}

/// Which flavor a node's GPUs belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlavorMap {
    /// Per [`ModelId`]: its flavor, `None` for a model no flavor names (no tenant may use it).
    pub by_model: Vec<Option<FlavorId>>,
    pub cpu: Option<FlavorId>,
}

impl FlavorMap {
    pub fn of_model(&self, m: ModelId) -> Option<FlavorId> {
        self.by_model.get(m.0 as usize).copied().flatten()
    }
    pub fn model_of(&self, f: FlavorId) -> Option<ModelId> {
        self.by_model.iter().position(|&x| x == Some(f)).map(|m| ModelId(m as u8))
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian), after Howard Hinnant's
/// `days_from_civil`.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `(year, month)` of a Unix time, UTC.
pub fn civil_month(t: Seconds) -> (i64, u32) {
    let z = t.div_euclid(86400) + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

/// Unix time at which the month after the one containing `t` starts.
pub fn next_month_start(t: Seconds) -> Seconds {
    let (y, m) = civil_month(t);
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1) * 86400
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_months() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 11, 1) * 86400, 1_793_491_200);
        assert_eq!(civil_month(1_793_491_200), (2026, 11));
        assert_eq!(civil_month(1_793_491_199), (2026, 10));
        assert_eq!(next_month_start(1_793_491_200), days_from_civil(2026, 12, 1) * 86400);
        assert_eq!(
            next_month_start(days_from_civil(2024, 12, 31) * 86400),
            days_from_civil(2025, 1, 1) * 86400
        );
        assert_eq!(civil_month(days_from_civil(2024, 2, 29) * 86400 + 86399), (2024, 2));
    }
}
