//! Why a workload waits, in a structure for programs and one line for people.
//!
//! Each reason names the limit that blocks the workload: which quota and how much of it is used
//! and what the cohort could lend; or the gang shape that fits nowhere now; or the budget. The
//! explanation adds the workload's position in its tenant's queue and, when the run times users
//! declared allow it, an estimated start.

use super::{GangMisfit, Mode, Queue, State, Workload, WorkloadId};
use crate::tenancy::{
    civil_month, next_month_start, FlavorId, Milli, Seconds, TenantId, MILLI_GPU_SECONDS_PER_GPU_HOUR,
};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;

/// The structured reason a workload is not running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// Not looked at yet: other workloads of its tenant are ahead of it.
    Queued,
    /// Stopped to make room for other work; waiting to start again.
    Preempted,
    /// Its tenant's quota of the flavor does not cover it now.
    Quota {
        flavor: String,
        /// Milli-units the workload needs, the tenant uses, its nominal quota, and how much more
        /// it can take now (its unused nominal plus what its cohort can lend).
        requested: Milli,
        used: Milli,
        nominal: Milli,
        available: Milli,
        borrowing_limit: Option<Milli>,
    },
    /// Quota covers it but its pods do not all fit on the free nodes of the flavor now.
    NoFit { flavor: String, pods: usize, detail: String },
    /// It would borrow a flavor whose freed capacity is held for a workload owed its tenant's
    /// nominal quota that has waited past the reclaim window.
    Held { flavor: String, for_tenant: String },
    /// Its tenant's monthly GPU-hour budget is spent and the budget refuses new work.
    Budget { used_gpu_hours: f64, budget_gpu_hours: f64, month: String, resets_at: Seconds },
}

/// Everything a user needs to know about a waiting workload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub workload: WorkloadId,
    pub tenant: String,
    pub reason: Reason,
    /// 1-based position in its tenant's queue.
    pub position: usize,
    pub queue_length: usize,
    /// When it should start, if the declared run times of the work ahead allow an estimate.
    pub estimated_start: Option<Seconds>,
    pub message: String,
}

/// The parts of a waiting workload's message (see `Queue::explain`), read back by tools that
/// only see the pod's condition (`kubectl gantry queue`): the message is written and read here,
/// in one place, so that the two cannot drift apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place<'a> {
    /// Why it waits, the message's first part.
    pub why: &'a str,
    pub position: usize,
    pub queue_length: usize,
    /// "2h 5m", as written.
    pub estimated_start_in: Option<&'a str>,
}

const POSITION: &str = "; position ";
const ESTIMATE: &str = "; estimated start in ";

impl<'a> Place<'a> {
    /// The message with its position and estimate, as the queue writes it.
    fn message(why: &str, position: usize, len: usize, tenant: &str, estimate: Option<String>) -> String {
        let eta = estimate.map_or(String::new(), |e| format!("{ESTIMATE}{e}"));
        format!("{why}{POSITION}{position} of {len} in {tenant}'s queue{eta}")
    }

    /// Reads a message the queue wrote; `None` for other messages (a gang still forming).
    pub fn parse(message: &'a str) -> Option<Place<'a>> {
        let at = message.rfind(POSITION)?;
        let (why, rest) = (&message[..at], &message[at + POSITION.len()..]);
        let (place, estimated_start_in) = match rest.split_once(ESTIMATE) {
            Some((place, eta)) => (place, Some(eta)),
            None => (rest, None),
        };
        let (position, rest) = place.split_once(" of ")?;
        let (len, _) = rest.split_once(" in ")?;
        Some(Place {
            why,
            position: position.parse().ok()?,
            queue_length: len.parse().ok()?,
            estimated_start_in,
        })
    }
}

/// Quantity of a flavor for people: GPUs (or cores) with up to three decimals.
pub fn units(milli: Milli) -> String {
    if milli.is_multiple_of(1000) {
        format!("{}", milli / 1000)
    } else {
        let s = format!("{:.3}", milli as f64 / 1000.0);
        s.trim_end_matches('0').to_string()
    }
}

fn unit_name(q: &Queue, f: FlavorId) -> String {
    let flavor = &q.tenancy.flavors[f];
    if flavor.is_cpu() {
        "CPU cores".into()
    } else {
        format!("{} GPUs", flavor.name)
    }
}

pub(super) fn quota_reason(q: &Queue, w: &Workload, f: FlavorId, demand: Milli) -> Reason {
    let tenant = &q.tenancy.tenants[w.tenant];
    Reason::Quota {
        flavor: q.tenancy.flavors[f].name.clone(),
        requested: demand,
        used: q.quota.usage(w.tenant, f),
        nominal: q.quota.nominal(w.tenant, f),
        available: q.quota.available(w.tenant, f).max(0) as Milli,
        borrowing_limit: tenant.quotas[f].borrowing_limit,
    }
}

/// Why a gang found no placement.
pub(super) enum NoFit<'a> {
    /// The flavor's free GPUs (in total, or as idle GPUs per node) are too few for it.
    TooFewFree,
    /// The same shape found no room earlier and nothing has been freed since.
    SameShapeFailed,
    /// The placement search failed at this member.
    Misfit(&'a GangMisfit),
}

pub(super) fn no_fit_reason(q: &Queue, f: FlavorId, pods: usize, why: NoFit) -> Reason {
    let name = &q.tenancy.flavors[f].name;
    let detail = match why {
        NoFit::Misfit(m) => format!("pod {} of {pods} fits nowhere: {}", m.member + 1, m.why),
        NoFit::TooFewFree => format!("too few {name} GPUs are free, in total or together on nodes"),
        NoFit::SameShapeFailed => "the same shape found no room and nothing has been freed since".into(),
    };
    Reason::NoFit { flavor: q.tenancy.flavors[f].name.clone(), pods, detail }
}

pub(super) fn held_reason(q: &Queue, f: FlavorId) -> Reason {
    let by = q.held.iter().find(|&&(g, _)| g == f).and_then(|&(_, id)| q.entries.get(&id));
    Reason::Held {
        flavor: q.tenancy.flavors[f].name.clone(),
        for_tenant: by.map_or_else(String::new, |e| q.tenancy.tenants[e.w.tenant].name.clone()),
    }
}

pub(super) fn budget_reason(q: &Queue, t: TenantId, now: Seconds) -> Reason {
    let budget = q.tenancy.tenants[t].budget.map_or(0, |b| b.milli_gpu_seconds);
    let (y, m) = civil_month(now);
    Reason::Budget {
        used_gpu_hours: q.ledger.month_gpu_use(t, now) as f64 / MILLI_GPU_SECONDS_PER_GPU_HOUR as f64,
        budget_gpu_hours: budget as f64 / MILLI_GPU_SECONDS_PER_GPU_HOUR as f64,
        month: format!("{y}-{m:02}"),
        resets_at: next_month_start(now),
    }
}

pub(super) fn budget_message(q: &Queue, t: TenantId, now: Seconds) -> String {
    let tenant = &q.tenancy.tenants[t].name;
    match budget_reason(q, t, now) {
        Reason::Budget { used_gpu_hours, budget_gpu_hours, month, .. } => format!(
            "tenant {tenant} has used {used_gpu_hours:.1} of its {budget_gpu_hours:.0} GPU-hour budget for {month} and its budget refuses new work until the month ends; ask a platform admin to raise the budget"
        ),
        _ => unreachable!("budget_reason returns Reason::Budget"),
    }
}

pub(super) fn never_fits_message(q: &Queue, w: &Workload, flavors: &[FlavorId]) -> String {
    let names: Vec<&str> = flavors.iter().map(|&f| q.tenancy.flavors[f].name.as_str()).collect();
    if names.is_empty() {
        return format!(
            "workload {} accepts no GPU model that a flavor of this cluster names (flavors: {}); accept one of them",
            w.name,
            q.tenancy.flavors.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    format!(
        "workload {}: some of its pods are larger than any node of {} could hold even when empty; make the pods smaller or accept another GPU model",
        w.name,
        names.join(", ")
    )
}

pub(super) fn over_ceiling_message(q: &Queue, w: &Workload, flavors: &[FlavorId]) -> String {
    let nf = q.tenancy.flavors.len();
    let demand = w.demand(w.min_members);
    let limits: Vec<String> = flavors
        .iter()
        .map(|&f| format!("{} {}", units(q.ceilings[w.tenant * nf + f].max(0) as Milli), unit_name(q, f)))
        .collect();
    format!(
        "workload {} needs {} but tenant {} can hold at most {} (nominal quota plus borrowing); ask for less or for a larger quota",
        w.name,
        units(demand),
        q.tenancy.tenants[w.tenant].name,
        limits.join(" or ")
    )
}

impl Queue {
    /// Explains a pending workload; `None` if it is not pending.
    pub fn explain(&self, id: WorkloadId, now: Seconds) -> Option<Explanation> {
        let entry = self.entries.get(&id)?;
        let State::Pending { reason } = &entry.state else { return None };
        let w = &entry.w;
        let qi = if self.mode == Mode::Fifo { 0 } else { w.tenant };
        let key = (Reverse(entry.priority), w.submitted, id);
        let position = self.queues[qi].range(..key).count() + 1;
        let queue_length = self.queues[qi].len();
        let estimated_start = self.estimate_start(w, reason, now);
        let tenant = self.tenancy.tenants[w.tenant].name.clone();
        let message = self.message(w, reason, position, queue_length, estimated_start, now);
        Some(Explanation {
            workload: id,
            tenant,
            reason: reason.clone(),
            position,
            queue_length,
            estimated_start,
            message,
        })
    }

    fn message(
        &self,
        w: &Workload,
        reason: &Reason,
        position: usize,
        len: usize,
        eta: Option<Seconds>,
        now: Seconds,
    ) -> String {
        let tenant = &self.tenancy.tenants[w.tenant].name;
        let head = match reason {
            Reason::Queued => format!("queued behind {} other workloads of {tenant}", position - 1),
            Reason::Preempted => "preempted to make room for other work; waiting to start again".into(),
            Reason::Quota { flavor, requested, used, nominal, available, borrowing_limit } => {
                let f = self.tenancy.flavor(flavor).unwrap_or(0);
                let unit = unit_name(self, f);
                let cohort = match self.tenancy.tenants[w.tenant].cohort {
                    Some(c) => format!("cohort {} can lend", self.tenancy.cohorts[c].name),
                    None => "it has no cohort to borrow from, so".into(),
                };
                let limit = borrowing_limit.map_or(String::new(), |b| format!(" (borrowing limit {})", units(b)));
                format!(
                    "waiting for quota: needs {} {unit}; {tenant} uses {} of its {} nominal{limit} and {cohort} {} more",
                    units(*requested),
                    units(*used),
                    units(*nominal),
                    units(available.saturating_sub(nominal.saturating_sub(*used)))
                )
            }
            Reason::NoFit { flavor, pods, detail } => {
                format!("quota is available but its {pods} pods do not all fit on free {flavor} nodes now ({detail})")
            }
            Reason::Held { flavor, for_tenant } => format!(
                "waiting: it would borrow {flavor} GPUs, and freed {flavor} capacity is held for {for_tenant}, whose work within its nominal quota has waited past the reclaim window"
            ),
            Reason::Budget { used_gpu_hours, budget_gpu_hours, month, resets_at } => format!(
                "held: {tenant} has used {used_gpu_hours:.1} of its {budget_gpu_hours:.0} GPU-hour budget for {month}; waits until the budget resets in {}",
                duration(resets_at - now)
            ),
        };
        Place::message(&head, position, len, tenant, eta.map(|t| duration(t - now)))
    }

    /// When a pending workload should start: walk the declared ends of the running work that
    /// frees what it needs (its quota for quota reasons, the flavor's capacity otherwise),
    /// counting the demand of the work ahead of it. Workloads within their nominal quota also
    /// get the reclaim bound: reclaim window plus minimum runtime after submission.
    fn estimate_start(&self, w: &Workload, reason: &Reason, now: Seconds) -> Option<Seconds> {
        let (flavor, needed_now) = match reason {
            Reason::Budget { resets_at, .. } => return Some(*resets_at),
            Reason::Quota { flavor, requested, available, .. } => {
                (self.tenancy.flavor(flavor)?, requested.saturating_sub(*available))
            }
            Reason::NoFit { flavor, pods: _, .. } => {
                let f = self.tenancy.flavor(flavor)?;
                (f, w.demand(w.members()))
            }
            Reason::Held { flavor, .. } => (self.tenancy.flavor(flavor)?, w.demand(w.members())),
            Reason::Queued | Reason::Preempted => {
                (*self.candidate_flavors(w).first()?, w.demand(w.members()))
            }
        };
        let ahead: Milli = self.queues[if self.mode == Mode::Fifo { 0 } else { w.tenant }]
            .iter()
            .take_while(|k| k.2 != w.id)
            .filter_map(|k| self.entries.get(&k.2))
            .map(|e| e.w.demand(e.w.members()))
            .sum();
        let needed = needed_now + ahead;
        let mut ends: Vec<(Seconds, Milli)> = Vec::new();
        for (other, r) in self.running_workloads() {
            if r.flavor != flavor {
                continue;
            }
            // Work without a declared run time gives no end to count on.
            let Some(runtime) = other.expected_runtime else { continue };
            let end = r.at + runtime;
            ends.push((end.max(now), r.demand));
        }
        ends.sort();
        let mut freed: Milli = 0;
        let mut eta = if needed == 0 { Some(now) } else { None };
        for (end, d) in ends {
            if eta.is_some() {
                break;
            }
            freed += d;
            if freed >= needed {
                eta = Some(end);
            }
        }
        let owed = self.quota.usage(w.tenant, flavor) + w.demand(w.members())
            <= self.quota.nominal(w.tenant, flavor);
        if owed && self.mode == Mode::Quota {
            let t = self.tenancy.timing;
            let bound = (w.submitted + t.reclaim_window).max(now) + t.min_runtime;
            eta = Some(eta.map_or(bound, |e| e.min(bound)));
        }
        eta
    }
}

/// A duration for people: "45s", "12m", "3h 5m", "2d 4h".
pub fn duration(s: Seconds) -> String {
    let s = s.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod place_tests {
    use super::Place;

    #[test]
    fn a_message_reads_back_as_its_parts() {
        let cases = [
            ("queued behind 2 other workloads of team-a", 3, 7, Some("2h 5m".to_string())),
            ("waiting for quota: needs 8 GPUs; team-a uses 4 of its 8 nominal", 1, 1, None),
        ];
        for (why, position, len, eta) in cases {
            let message = Place::message(why, position, len, "team-a", eta.clone());
            let place = Place::parse(&message).unwrap();
            assert_eq!(
                place,
                Place { why, position, queue_length: len, estimated_start_in: eta.as_deref() },
                "{message}"
            );
        }
        assert_eq!(Place::parse("waiting for the rest of gang g: 2 of its 4 pods exist"), None);
    }
}
