//! Choosing whole gangs to stop so that a blocked workload can start.
//!
//! Two rules, and nothing else, allow a preemption:
//!
//! - **priority**: a workload may stop lower-priority work of its own tenant;
//! - **reclaim**: once a workload that fits in its tenant's nominal quota has waited the reclaim
//!   window, it may stop other tenants' *borrowed* work. A tenant's running workloads are stacked
//!   in admission order and those that reach above its nominal quota are the borrowed ones (plus
//!   any admitted under an exhausted `idle-only` budget).
//!
//! Work younger than the minimum runtime is never stopped. Victims are taken lowest priority
//! first, then smallest, then newest, until the workload fits both quota and a concrete
//! placement; then every victim that can be put back without disturbing it is restored.
//!
//! **No preemption loop.** A workload admitted by reclaim fits in its tenant's nominal quota at
//! admission, so it sits below nominal in its tenant's stack; later admissions stack above it and
//! releases only move it down. It therefore never becomes borrowed, and can never be a reclaim
//! victim; only strictly higher-priority work of its own tenant can stop it, and that work could
//! not have been stopped by it. So no two workloads can take turns preempting each other.

use super::{Queue, State, Workload, WorkloadId};
use crate::model::Placement;
use crate::tenancy::{FlavorId, Milli, Seconds};

/// A victim taken off the cluster and out of quota, restorable exactly.
struct Suspended {
    id: WorkloadId,
    reclaim: bool,
    placements: Vec<(u64, Placement)>,
}

type Room = (FlavorId, Vec<(u64, Placement)>, Vec<(WorkloadId, bool)>);

/// The most victims considered for one workload.
const MAX_CANDIDATES: usize = 256;

/// Finds victims that let `w` (all members) start on some flavor, stops them, places `w` and
/// returns where, with the victims and whether each was a reclaim. `None`: nothing may be stopped
/// to make room; the cluster and quotas are unchanged.
pub(super) fn make_room(q: &mut Queue, w: &Workload, priority: i32, now: Seconds) -> Option<Room> {
    let members = w.member_requests(w.members());
    let demand = w.demand(w.members());
    for f in q.candidate_flavors(w) {
        let candidates = candidates(q, w, f, priority, demand, now);
        if candidates.is_empty() {
            continue;
        }
        let mut removed: Vec<Suspended> = Vec::new();
        for (id, reclaim) in candidates {
            removed.push(suspend(q, id, reclaim));
            if (q.quota.available(w.tenant, f) as i128) < demand as i128 || free(q, f) < demand {
                continue;
            }
            if let Ok(pods) = q.place(w, f, &members, false) {
                keep_only_needed(q, w, f, demand, &mut removed);
                let victims = removed.iter().map(|s| (s.id, s.reclaim)).collect();
                for s in removed {
                    requeue(q, s.id, now);
                }
                return Some((f, pods, victims));
            }
        }
        for s in removed.into_iter().rev() {
            restore(q, &s);
        }
    }
    None
}

/// Running workloads that may be stopped for `w` on flavor `f`, in the order to try them.
fn candidates(q: &mut Queue, w: &Workload, f: FlavorId, priority: i32, demand: Milli, now: Seconds) -> Vec<(WorkloadId, bool)> {
    let timing = q.tenancy.timing;
    let owed = q.quota.usage(w.tenant, f) + demand <= q.quota.nominal(w.tenant, f);
    let window_over = now >= w.submitted + timing.reclaim_window;
    if owed && !window_over {
        q.wake_at(w.submitted + timing.reclaim_window);
    }
    let mut out: Vec<(i32, Milli, std::cmp::Reverse<Seconds>, WorkloadId, bool)> = Vec::new();
    let mut protected_until: Option<Seconds> = None;
    for t in 0..q.tenancy.tenants.len() {
        let same = t == w.tenant;
        if !same && !(owed && window_over) {
            continue;
        }
        let nominal = q.quota.nominal(t, f);
        let mut prefix: Milli = 0;
        for id in q.stack(t, f).collect::<Vec<_>>() {
            let r = q.running(id).expect("stacked workloads run");
            prefix += r.demand;
            let eligible = if same { r.priority < priority } else { r.opportunistic || prefix > nominal };
            if !eligible {
                continue;
            }
            if now < r.at + timing.min_runtime {
                let until = r.at + timing.min_runtime;
                protected_until = Some(protected_until.map_or(until, |p: Seconds| p.min(until)));
                continue;
            }
            out.push((r.priority, r.demand, std::cmp::Reverse(r.at), id, !same));
        }
    }
    if let Some(t) = protected_until {
        q.wake_at(t);
    }
    out.sort();
    out.truncate(MAX_CANDIDATES);
    out.into_iter().map(|(_, _, _, id, reclaim)| (id, reclaim)).collect()
}

/// Free milli-units of a flavor: capacity less every tenant's usage.
fn free(q: &Queue, f: FlavorId) -> Milli {
    let used: Milli = (0..q.tenancy.tenants.len()).map(|t| q.quota.usage(t, f)).sum();
    q.capacity(f).saturating_sub(used)
}

/// Takes a running workload off the cluster and out of quota, keeping its entry as running.
fn suspend(q: &mut Queue, id: WorkloadId, reclaim: bool) -> Suspended {
    let (tenant, r) = {
        let e = &q.entries[&id];
        let State::Running(r) = &e.state else { unreachable!("candidates are running") };
        (e.w.tenant, r.clone())
    };
    let placements = r.pods.iter().filter_map(|(pod, _)| q.cluster.release(*pod).ok().map(|p| (*pod, p))).collect();
    q.quota.add(tenant, r.flavor, -(r.demand as i64));
    Suspended { id, reclaim, placements }
}

/// Puts a suspended workload back exactly where it was. Fails (changing nothing) when its room
/// or quota has been taken.
fn try_restore(q: &mut Queue, s: &Suspended) -> bool {
    let (tenant, r) = {
        let e = &q.entries[&s.id];
        let State::Running(r) = &e.state else { unreachable!("suspended workloads stay running") };
        (e.w.tenant, r.clone())
    };
    if (q.quota.available(tenant, r.flavor) as i128) < r.demand as i128 {
        return false;
    }
    for (i, (pod, placement)) in s.placements.iter().enumerate() {
        let request = r.pods[i].1;
        if q.cluster.allocate(*pod, &request, placement.clone()).is_err() {
            for (undo, _) in &s.placements[..i] {
                let _ = q.cluster.release(*undo);
            }
            return false;
        }
    }
    q.quota.add(tenant, r.flavor, r.demand as i64);
    true
}

fn restore(q: &mut Queue, s: &Suspended) {
    // Restoring in reverse order of suspension onto an unchanged cluster always succeeds.
    let ok = try_restore(q, s);
    debug_assert!(ok, "restoring victim {} onto an unchanged cluster failed", s.id);
}

/// With `w` placed, restores every victim (latest first) that still fits beside it.
fn keep_only_needed(q: &mut Queue, w: &Workload, f: FlavorId, demand: Milli, removed: &mut Vec<Suspended>) {
    q.quota.add(w.tenant, f, demand as i64);
    let mut i = removed.len();
    while i > 0 {
        i -= 1;
        if try_restore(q, &removed[i]) {
            removed.remove(i);
        }
    }
    q.quota.add(w.tenant, f, -(demand as i64));
}

/// Finishes stopping a suspended victim: its ledger meter, its place in the stacks, and back to
/// its queue with its original submission time.
fn requeue(q: &mut Queue, id: WorkloadId, now: Seconds) {
    let (tenant, r) = {
        let e = &q.entries[&id];
        let State::Running(r) = &e.state else { return };
        (e.w.tenant, r.clone())
    };
    // Re-add then release through the normal path so stacks, ledger and shape memo stay in step.
    q.quota.add(tenant, r.flavor, r.demand as i64);
    let nf = q.tenancy.flavors.len();
    q.stacks[tenant * nf + r.flavor].remove(&(r.at, id));
    q.charge(tenant, r.flavor, -(r.demand as i64), now);
    q.failed.retain(|(fl, _)| *fl != r.flavor);
    q.set_pending(id, super::Reason::Preempted);
}
