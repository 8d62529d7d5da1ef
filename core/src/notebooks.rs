//! Idle GPU notebooks give way: which running notebooks to stop, from the evidence that their
//! GPUs sit idle.
//!
//! A data scientist's notebook holds its GPUs for as long as it runs, used or not. The node agent
//! measures, per pod, since when none of its GPUs has run a kernel (NVML utilization 0 %); the
//! caller turns that into one [`IdleEvidence`] per running notebook workload (idle since the
//! latest of its pods' idle starts, so every GPU has been idle since then).
//!
//! The rule, per tenant ([`IdleNotebooks`]), for a running workload `w`:
//!
//! 1. `w` is a notebook (`Kind::Notebook`). Nothing else is ever stopped this way: serving,
//!    training and pipeline steps are idle between requests or steps by design;
//! 2. its tenant has an `idleNotebooks` rule and `now − idle_since ≥ stop_after`;
//! 3. unless the rule says `always`, a workload waits that could use those GPUs: it is pending,
//!    wants GPUs and accepts the model of the flavor `w` runs on, and what holds it back is
//!    something the stop can change: not a spent budget, and not its own tenant's quota unless
//!    it is `w`'s tenant or in `w`'s tenant's cohort (where the freed quota can go). The first
//!    such in submission order is named as the one `w` gives way to. Gantry does not try to
//!    prove the freed GPUs are enough for it: an idle GPU given back never hurts the cluster, and
//!    the notebook's user loses only a restart (the notebook's volume keeps the work).
//!
//! The returned [`Stop`]s say why, with the idle milli-GPU-seconds the notebook was charged for
//! since its GPUs went idle (`demand × (now − idle_since)`): the figure the ledger line and the
//! notebook's Event carry. The caller carries them out (the live scheduler sets Kubeflow's
//! `kubeflow-resource-stopped` annotation on the Notebook; the simulator ends the run) and must
//! not ask again for a workload it already stopped.

use crate::queue::explain::{duration, Reason};
use crate::queue::{Queue, WorkloadId};
use crate::tenancy::{FlavorId, Kind, Milli, Seconds, TenantId};

/// Since when every GPU of a running workload has been idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleEvidence {
    pub workload: WorkloadId,
    pub idle_since: Seconds,
}

/// A notebook to stop, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stop {
    pub workload: WorkloadId,
    pub tenant: TenantId,
    pub flavor: FlavorId,
    /// Milli-GPU it holds.
    pub demand: Milli,
    pub idle_since: Seconds,
    /// Milli-GPU-seconds allocated and idle since `idle_since`.
    pub idle_milli_gpu_seconds: u64,
    /// The waiting workload it gives way to; `None` under an `always` rule with nothing waiting.
    pub gives_way_to: Option<WorkloadId>,
    /// One sentence for the Event and the ledger line.
    pub message: String,
}

/// The notebooks to stop at `now` (see the module doc for the rule), in workload id order.
pub fn to_stop(q: &Queue, evidence: &[IdleEvidence], now: Seconds) -> Vec<Stop> {
    let mut out: Vec<Stop> = evidence.iter().filter_map(|e| stop(q, e, now)).collect();
    out.sort_by_key(|s| s.workload);
    out.dedup_by_key(|s| s.workload);
    out
}

fn stop(q: &Queue, e: &IdleEvidence, now: Seconds) -> Option<Stop> {
    let w = q.workload(e.workload)?;
    let running = q.running(e.workload)?;
    if w.kind != Kind::Notebook {
        return None;
    }
    let rule = q.tenancy.tenants.get(w.tenant)?.idle_notebooks?;
    let idle_for = now - e.idle_since;
    if idle_for < rule.stop_after {
        return None;
    }
    let waiting = waiting_for(q, w.tenant, running.flavor);
    if waiting.is_none() && !rule.always {
        return None;
    }
    let gpus = running.demand as f64 / 1000.0;
    let model = q.tenancy.flavors.get(running.flavor).map_or("?", |f| f.name.as_str());
    let mut message = format!(
        "stopped by Gantry: its {gpus} {model} GPU(s) were idle for {} (over the tenant's {})",
        duration(idle_for),
        duration(rule.stop_after)
    );
    match waiting.and_then(|id| q.workload(id)) {
        Some(next) => message.push_str(&format!("; {} waits for {model} GPUs", next.name)),
        None => message.push_str("; the tenant stops idle notebooks even when nothing waits"),
    }
    message.push_str("; start it again from the Kubeflow notebooks page");
    Some(Stop {
        workload: e.workload,
        tenant: w.tenant,
        flavor: running.flavor,
        demand: running.demand,
        idle_since: e.idle_since,
        idle_milli_gpu_seconds: running.demand * idle_for.max(0) as u64,
        gives_way_to: waiting,
        message,
    })
}

/// The first pending workload in submission order that wants GPUs, accepts `flavor`'s model and
/// waits for something that stopping `tenant`'s notebook on `flavor` can change.
fn waiting_for(q: &Queue, tenant: TenantId, flavor: FlavorId) -> Option<WorkloadId> {
    let model = q.flavors.model_of(flavor)?;
    let cohort = |t: TenantId| q.tenancy.tenants.get(t).and_then(|x| x.cohort);
    let helped = |w: &crate::queue::Workload| match q.reason(w.id) {
        Some(Reason::Budget { .. }) => false,
        Some(Reason::Quota { .. }) => {
            w.tenant == tenant || (cohort(tenant).is_some() && cohort(w.tenant) == cohort(tenant))
        }
        _ => true,
    };
    q.pending_ids()
        .filter_map(|id| q.workload(id))
        .filter(|w| w.wants_gpu() && w.models.is_none_or(|m| m.contains(model)) && helped(w))
        .min_by_key(|w| (w.submitted, w.id))
        .map(|w| w.id)
}
