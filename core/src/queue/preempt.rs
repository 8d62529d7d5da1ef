//! Choosing whole gangs to stop so that a blocked workload can start.
//!
//! Two rules, and nothing else, allow a preemption, each within what the waiting workload's
//! tenant's [`PreemptionPolicy`](crate::tenancy::PreemptionPolicy) permits (Kueue's ClusterQueue
//! `preemption`, with a tenant for a ClusterQueue):
//!
//! - **priority**: a workload may stop its own tenant's lower-priority work (`withinTenant:
//!   LowerPriority`, the default; `Never`; or `LowerOrNewerEqualPriority`: equal-priority work
//!   submitted after it too);
//! - **reclaim**: once a workload that fits in its tenant's nominal quota has waited the reclaim
//!   window, it may stop other tenants' *borrowed* work (`reclaimWithinCohort: Any`, the
//!   default, since nominal quota is a promise whatever the priorities; `LowerPriority`;
//!   `Never`). A tenant's running workloads are stacked from the most to the least protected
//!   (workloads it admitted by reclaim at the bottom, then by priority, highest first, then in
//!   admission order) and those that reach above its nominal quota are the borrowed ones (plus
//!   any admitted under an exhausted `idle-only` budget): reclaim takes a borrower's
//!   lowest-priority work, never its higher-priority work while lower-priority work of it runs
//!   beyond its quota.
//!
//! **Both together, below nominal.** A tenant below its nominal quota whose workload fits that
//! quota only once the tenant's own lower-priority work stops may also reclaim (after the
//! window, as its policy allows): its own victims are needed for quota whatever else stops, and
//! other tenants' borrowed work stops besides only where they leave no place (a third pass,
//! [`Pass::Combined`], after its own work alone). Not at or above nominal: such a tenant is owed
//! nothing, and letting its urgent work reclaim whenever its own (borrowed) lower-priority work
//! could make quota room set off chains of preemptions in busy months.
//!
//! **Preemption leaves the workload within its nominal quota.** Stopping work so that a workload
//! runs on borrowed quota, which may itself be reclaimed at any time, loses work for nothing
//! guaranteed; so every preemption must leave the preemptor within its tenant's nominal quota,
//! unless the tenant's policy has `borrowWithinCohort` with a priority threshold: then it may
//! also stop other tenants' borrowed work of priority at most the threshold and below its own,
//! without waiting for the reclaim window, and run borrowed.
//!
//! **Which flavor.** A workload that fits nowhere without stopping work tries, with
//! `whenCanPreempt: TryNextFlavor` (the default), every flavor with other tenants' borrowed work
//! alone before any flavor with its own tenant's work too: stopping one's own work is the last
//! resort. With `Preempt`, the first flavor where any allowed victims make room.
//!
//! Work younger than the minimum runtime is never stopped, nor work the cluster refused to stop
//! (a PodDisruptionBudget), until the time given with [`Queue::shield`]. Victims are taken in
//! two groups: first other tenants' borrowed work, then the tenant's own; within each, lowest
//! priority first, then smallest (fewest GPUs lost), then newest (least progress lost); GPU
//! victims are grouped by node, nodes that can hold the largest member once cleared first. They
//! are taken until the workload fits both quota and a concrete placement; then the set is made
//! minimal (each victim put back if the workload still fits without it, and the workload placed
//! on what the needed victims alone free). A set made empty so is no preemption: above nominal
//! it would be a plain borrowing admission, which the admission rules refused (the flavor may be
//! held for owed work), so it does not count as landing. A victim is not started again in the cycle that
//! stopped it, and work started in a cycle is no victim in it.
//!
//! **No preemption loop.** A workload admitted by reclaim fits in its tenant's nominal quota at
//! admission, with everything its tenant runs; so the tenant's reclaimers together never exceed
//! its nominal quota, and at the bottom of its stack they never become borrowed during their
//! run: a reclaimer can never be a reclaim victim; only strictly higher-priority work of its own tenant (or, with
//! `LowerOrNewerEqualPriority`, work submitted before it) can stop it, and that work could not
//! have been stopped by it. So no workload stops, during its run, the workload whose stop began
//! that run. With `borrowWithinCohort` one reversal is possible: a workload that stopped
//! lower-priority borrowed work runs borrowed, and its victim, once owed, may reclaim it; but
//! that victim lands within its nominal quota and is never taken again.

use super::{Queue, State, Workload, WorkloadId};
use crate::model::{Placement, PodRequest};
use crate::tenancy::{FlavorId, Milli, ReclaimWithinCohort, Seconds, WhenCanPreempt, WithinTenant};

/// A victim taken off the cluster and out of quota, restorable exactly.
struct Suspended {
    id: WorkloadId,
    reclaim: bool,
    placements: Vec<(u64, Placement)>,
}

type Room = (FlavorId, Vec<(u64, Placement)>, Vec<(WorkloadId, bool)>);

/// Which work one search for room may stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Pass {
    /// Other tenants' work only: reclaim, or borrowing while preempting.
    Others,
    /// The tenant's own lower-priority work too, with reclaim only for a workload that fits in
    /// its tenant's nominal quota as the tenant's use stands.
    Own,
    /// Both, for a workload that fits in its nominal quota only once its tenant's own
    /// lower-priority work is stopped: that work must stop (for quota), and other tenants'
    /// borrowed work may stop besides (for room). Tried after [`Pass::Own`], so that borrowed
    /// work is stopped only where the tenant's own stopped work leaves no place: the own
    /// victims are needed whatever else stops, and a minimal set adds only what they lack.
    Combined,
}

/// The most victims considered for one workload.
const MAX_CANDIDATES: usize = 256;
/// The most placement attempts while choosing victims for one workload.
const MAX_ATTEMPTS: usize = 12;
/// The most placement attempts for preemption in one cycle; the rest wait for the next cycle.
pub(super) const CYCLE_BUDGET: usize = 64;

/// Finds victims that let `w` (all members) start on some flavor, stops them, places `w` and
/// returns where, with the victims and whether each was a reclaim. `None`: nothing may be stopped
/// to make room; the cluster and quotas are unchanged.
pub(super) fn make_room(q: &mut Queue, w: &Workload, priority: i32, now: Seconds) -> Option<Room> {
    let policy = q.tenancy.tenants[w.tenant].preemption;
    let flavors = q.candidate_flavors(w);
    match policy.when_can_preempt {
        // Reclaim alone on every flavor before stopping the tenant's own work on any (Kueue's
        // `whenCanPreempt: TryNextFlavor`).
        WhenCanPreempt::TryNextFlavor => [Pass::Others, Pass::Own, Pass::Combined]
            .into_iter()
            .find_map(|pass| flavors.iter().find_map(|&f| make_room_on(q, w, priority, f, pass, now))),
        // Any allowed victims, flavor by flavor.
        WhenCanPreempt::Preempt => flavors.iter().find_map(|&f| {
            [Pass::Own, Pass::Combined]
                .into_iter()
                .find_map(|pass| make_room_on(q, w, priority, f, pass, now))
        }),
    }
}

/// Demand of the tenant's running work on `f` that `w` may stop by priority (with
/// `LowerOrNewerEqualPriority`, an upper bound: only the newer of the equal-priority work
/// qualifies).
fn own_freeable(q: &Queue, w: &Workload, f: FlavorId, priority: i32) -> Milli {
    match q.tenancy.tenants[w.tenant].preemption.within_tenant {
        WithinTenant::Never => 0,
        WithinTenant::LowerPriority => q.running_below(w.tenant, f, priority),
        WithinTenant::LowerOrNewerEqualPriority => q.running_below(w.tenant, f, priority.saturating_add(1)),
    }
}

/// Whether `w` is owed room on `f` in `pass`: it fits in its tenant's nominal quota as the
/// tenant's use stands, or, in [`Pass::Combined`], the tenant is below its nominal quota and `w`
/// fits in it once the tenant's own work that it may stop is stopped.
pub(super) fn owed(q: &Queue, w: &Workload, f: FlavorId, priority: i32, demand: Milli, pass: Pass) -> bool {
    let (usage, nominal) = (q.quota.usage(w.tenant, f), q.quota.nominal(w.tenant, f));
    if pass == Pass::Combined {
        // Only a tenant below its nominal quota: one at or above it is not owed anything, and
        // letting it reclaim for its urgent work whenever its own lower-priority work (itself
        // borrowed) could make quota room set off chains of preemptions in busy months.
        usage < nominal && usage.saturating_sub(own_freeable(q, w, f, priority)) + demand <= nominal
    } else {
        usage + demand <= nominal
    }
}

/// [`make_room`] on flavor `f`, with the victims `pass` allows.
fn make_room_on(
    q: &mut Queue,
    w: &Workload,
    priority: i32,
    f: FlavorId,
    pass: Pass,
    now: Seconds,
) -> Option<Room> {
    let demand = w.demand(w.members());
    let policy = q.tenancy.tenants[w.tenant].preemption;
    let memo = (w.tenant, priority, f, q.entries[&w.id].shape, pass);
    if q.no_room.contains(&memo) {
        return None;
    }
    let own = pass != Pass::Others;
    let usage = q.quota.usage(w.tenant, f);
    let nominal = q.quota.nominal(w.tenant, f);
    let lower = if own { own_freeable(q, w, f, priority) } else { 0 };
    let reclaim_allowed = policy.reclaim_within_cohort != ReclaimWithinCohort::Never;
    let window_over = now >= w.submitted + q.tenancy.timing.reclaim_window;
    if pass == Pass::Combined {
        // Only what `Own` did not already try: owed once its own work stops, not before, and
        // only with reclaim allowed and room to gain (the tenant's own stoppable work, the free
        // GPUs and all borrowed work together at least the demand). Quota needs no test: the
        // workload then lands within its nominal quota.
        let borrowed: Milli = (0..q.tenancy.tenants.len()).map(|t| q.quota.borrowed(t, f)).sum();
        if !reclaim_allowed
            || lower == 0
            || usage + demand <= nominal
            || !owed(q, w, f, priority, demand, pass)
            || free(q, f) + lower + borrowed < demand
        {
            q.no_room.insert(memo);
            return None;
        }
        if !window_over {
            q.wake_at(w.submitted + q.tenancy.timing.reclaim_window);
            q.no_room.insert(memo);
            return None;
        }
    }
    // Cheap test first: with no other tenant's work to take, stopping all of the tenant's
    // lower-priority work must free enough quota and GPUs, and leave the workload within its
    // nominal quota unless the tenant may borrow while preempting.
    let is_owed = owed(q, w, f, priority, demand, pass);
    let may_reclaim = is_owed && reclaim_allowed && window_over;
    let others = may_reclaim || policy.borrow_within_cohort.is_some();
    if !others {
        let quota_after = q.quota.available(w.tenant, f) as i128 + lower as i128;
        let within = usage.saturating_sub(lower) + demand <= nominal || policy.borrow_within_cohort.is_some();
        if lower == 0 || free(q, f) + lower < demand || quota_after < demand as i128 || !within {
            if is_owed && reclaim_allowed {
                q.wake_at(w.submitted + q.tenancy.timing.reclaim_window);
            }
            q.no_room.insert(memo);
            return None;
        }
    }
    let members = w.member_requests(w.members());
    let candidates = candidates(q, w, f, priority, &members, pass, now, None);
    if candidates.is_empty() {
        q.no_room.insert(memo);
        return None;
    }
    let mut removed: Vec<Suspended> = Vec::new();
    let mut attempts = 0;
    let last = candidates.len() - 1;
    for (i, (id, reclaim, node_done)) in candidates.into_iter().enumerate() {
        removed.push(suspend(q, id, reclaim));
        // Try to place at node boundaries and doubling counts, a bounded number of times.
        let due = i == last || (attempts < MAX_ATTEMPTS && (node_done || (i + 1).is_power_of_two()));
        if !due
            || (q.quota.available(w.tenant, f) as i128) < demand as i128
            || !lands(q, w, f, demand, removed.iter())
            || free(q, f) < demand
            || !q.idle_gpus_suffice(f, &members)
        {
            continue;
        }
        if q.preempt_budget == 0 {
            break;
        }
        q.preempt_budget -= 1;
        attempts += 1;
        if let Ok(mut pods) = q.place(w, f, &members, false) {
            if removed.len() > 1 && removed.len() <= MINIMIZE_UP_TO {
                pods = minimal_victims(q, w, f, demand, &members, &mut removed, pods);
            } else {
                keep_only_needed(q, w, f, demand, &mut removed);
            }
            debug_assert!(
                every_victim_needed(q, w, f, demand, &mut removed),
                "workload {} stopped a victim it did not need",
                w.id
            );
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
    q.no_room.insert(memo);
    None
}

/// Which victims [`room_after_reclaim`] supposes stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomCheck {
    /// Everything the preemption rules could ever let the workload stop: the reclaim window and
    /// minimum runtimes ignored. Tells a wait caused by the rules' timing apart from one where
    /// the room does not exist without stopping other tenants' guaranteed work.
    Ever,
    /// What they let it stop now, its reclaim window taken as over: victims keep their minimum
    /// runtime and shields. Room here is room the queue should have taken.
    Now,
}

/// Whether `w` (all members) would fit, within its tenant's nominal quota, if everything `check`
/// supposes were stopped. Changes nothing.
pub(super) fn room_after_reclaim(
    q: &mut Queue,
    w: &Workload,
    priority: i32,
    now: Seconds,
    check: RoomCheck,
) -> bool {
    let members = w.member_requests(w.members());
    let demand = w.demand(w.members());
    let wake = q.wake;
    for f in q.candidate_flavors(w) {
        let victims = candidates(q, w, f, priority, &members, Pass::Combined, now, Some(check));
        let removed: Vec<Suspended> =
            victims.into_iter().map(|(id, reclaim, _)| suspend(q, id, reclaim)).collect();
        let mut fits = false;
        // Room for the guarantee: within the tenant's nominal quota once the victims stop (room
        // only by borrowing is no promise, and may rightly be held for other owed work).
        let quota = q.quota.available(w.tenant, f) as i128 >= demand as i128
            && q.quota.usage(w.tenant, f) + demand <= q.quota.nominal(w.tenant, f);
        if quota || q.mode == super::Mode::Fifo {
            if let Ok(pods) = q.place(w, f, &members, false) {
                fits = true;
                for (pod, _) in pods {
                    if let Ok(p) = q.cluster.release(pod) {
                        q.touch(p.node);
                    }
                }
            }
        }
        for s in removed.iter().rev() {
            restore(q, s);
        }
        if fits {
            q.wake = wake;
            return true;
        }
    }
    q.wake = wake;
    false
}

/// Running workloads that may be stopped for `w` on flavor `f`, in the order to try them, each
/// with whether it is the last victim on its node in that order.
///
/// Victims are grouped by node so that removals concentrate where the gang can land: nodes that
/// could hold the largest member once their eligible victims are gone come first, then nodes
/// whose victims have the lowest priority, then the nodes that would have the most room. Within a
/// node: lowest priority, then smallest, then newest. Empty when even stopping every candidate
/// could not make enough room.
///
/// With a what-if ([`RoomCheck`]), nothing is truncated: everything the rules could let `w` stop
/// ever (the reclaim window and minimum runtimes ignored) or now that its window is over.
#[allow(clippy::too_many_arguments)]
fn candidates(
    q: &mut Queue,
    w: &Workload,
    f: FlavorId,
    priority: i32,
    members: &[PodRequest],
    pass: Pass,
    now: Seconds,
    what_if: Option<RoomCheck>,
) -> Vec<(WorkloadId, bool, bool)> {
    let demand: Milli =
        members.iter().map(|m| if w.wants_gpu() { m.gpu_total() } else { m.cpu_milli as Milli }).sum();
    let timing = q.tenancy.timing;
    let policy = q.tenancy.tenants[w.tenant].preemption;
    let own = pass != Pass::Others;
    let owed = owed(q, w, f, priority, demand, pass);
    let window_over = what_if.is_some() || now >= w.submitted + timing.reclaim_window;
    let timed = what_if != Some(RoomCheck::Ever);
    let reclaims = owed && policy.reclaim_within_cohort != ReclaimWithinCohort::Never;
    if reclaims && !window_over {
        q.wake_at(w.submitted + timing.reclaim_window);
    }
    let reclaiming = reclaims && window_over;
    // Which other tenant's borrowed work of priority `p` the workload may stop.
    let other_ok = |p: i32| {
        let by_reclaim =
            reclaiming && (policy.reclaim_within_cohort == ReclaimWithinCohort::Any || p < priority);
        let by_borrowing = policy.borrow_within_cohort.is_some_and(|max| p <= max && p < priority);
        by_reclaim || by_borrowing
    };
    let mut eligible: Vec<Eligible> = Vec::new();
    let mut protected_until: Option<Seconds> = None;
    for t in 0..q.tenancy.tenants.len() {
        let same = t == w.tenant;
        let skip = if same {
            !own || policy.within_tenant == WithinTenant::Never
        } else {
            !reclaiming && policy.borrow_within_cohort.is_none()
        };
        if skip {
            continue;
        }
        let nominal = q.quota.nominal(t, f);
        let usage = q.quota.usage(t, f);
        // Only tenants above nominal (or with a budget, whose work may be opportunistic) can
        // have reclaimable work; in a tenant's stack, the newest work is the borrowed part.
        let may_be_opportunistic = q.tenancy.tenants[t].budget.is_some();
        if !same && usage <= nominal && !may_be_opportunistic {
            continue;
        }
        // The top of a tenant's stack, above nominal, is the borrowed part (see `StackKey`);
        // reclaimers sit below it, which keeps the no-loop argument above (taking a borrower's
        // reclaimers too would let two workloads take turns; the property test finds such
        // loops).
        let stack: Vec<WorkloadId> = q.stack(t, f).collect();
        let mut above: Milli = 0; // demand of the workloads after this one in the stack
        for &id in stack.iter().rev() {
            let Some(r) = q.running(id) else { continue };
            let borrowed = usage - above > nominal;
            above += r.demand;
            if q.on_closed_node(id) || q.started.contains(&id) {
                continue;
            }
            // Within a tenant only priority (and, if allowed, age at equal priority) counts, so
            // no pair can take turns; opportunistic work is reclaimable by other tenants' owed
            // work.
            let ok = if same {
                r.priority < priority
                    || policy.within_tenant == WithinTenant::LowerOrNewerEqualPriority
                        && r.priority == priority
                        && q.entries[&id].w.submitted > w.submitted
            } else {
                (r.opportunistic || borrowed) && other_ok(r.priority)
            };
            if !ok {
                if !same && !borrowed && !may_be_opportunistic {
                    break;
                }
                continue;
            }
            let shield = q.shielded.get(&id).copied().unwrap_or(Seconds::MIN);
            if timed && (now < r.at + timing.min_runtime || now < shield) {
                let until = (r.at + timing.min_runtime).max(shield);
                protected_until = Some(protected_until.map_or(until, |p: Seconds| p.min(until)));
                continue;
            }
            eligible.push((same, !r.opportunistic, r.priority, r.demand, std::cmp::Reverse(r.at), id, !same));
        }
    }
    if let Some(t) = protected_until {
        q.wake_at(t);
    }
    let freeable: Milli = eligible.iter().map(|e| e.3).sum();
    if free(q, f) + freeable < demand {
        return Vec::new();
    }
    eligible.sort();
    if !w.wants_gpu() {
        if what_if.is_none() {
            eligible.truncate(MAX_CANDIDATES);
        }
        let n = eligible.len();
        return eligible.into_iter().enumerate().map(|(i, e)| (e.5, e.6, i + 1 == n)).collect();
    }
    // GPU victims are cut to size only once grouped by node, at a node boundary: cut before,
    // the first few hundred victims in the global order (the smallest) are scattered one per
    // node on a large cluster, and clearing none of those nodes makes room for a whole-node
    // member, although the nodes the order puts first would.
    let mut out = by_node(q, eligible, members);
    if what_if.is_none() && out.len() > MAX_CANDIDATES {
        let end =
            out.iter().skip(MAX_CANDIDATES - 1).position(|c| c.2).map_or(out.len(), |i| i + MAX_CANDIDATES);
        out.truncate(end);
    }
    out
}

/// A possible victim: (own tenant's, not opportunistic, priority, demand, newest first, id,
/// reclaim). Sorting puts other tenants' borrowed work first (opportunistic work first among it),
/// then the tenant's own; within each, lowest priority, smallest, newest.
type Eligible = (bool, bool, i32, Milli, std::cmp::Reverse<Seconds>, WorkloadId, bool);

/// Per node: victims' GPU milli on it, the most protected victim (own tenant's, not
/// opportunistic, priority), the newest victim's start, and the victims (indexes into the
/// eligible list) in order.
type NodeVictims = (Milli, (bool, bool, i32), Seconds, Vec<usize>);
/// Sort key of a node: cannot hold the largest member even when cleared, most protected victim,
/// GPUs to free, newest first, node.
type NodeOrder = (bool, (bool, bool, i32), Milli, std::cmp::Reverse<Seconds>, usize);

/// Orders GPU victims node by node (see [`candidates`]).
fn by_node(q: &Queue, eligible: Vec<Eligible>, members: &[PodRequest]) -> Vec<(WorkloadId, bool, bool)> {
    use foldhash::{HashMap, HashMapExt};
    let largest = members.iter().map(PodRequest::gpu_total).max().unwrap_or(0);
    let mut nodes: HashMap<usize, NodeVictims> = HashMap::new();
    for (i, e) in eligible.iter().enumerate() {
        let Some(r) = q.running(e.5) else { continue };
        for (pod, req) in &r.pods {
            if let Some(p) = q.cluster.placement(*pod) {
                let slot =
                    nodes.entry(p.node).or_insert((0, (false, false, i32::MIN), Seconds::MIN, Vec::new()));
                slot.0 += req.gpu_total();
                slot.1 = slot.1.max((e.0, e.1, e.2));
                slot.2 = slot.2.max(r.at);
                if slot.3.last() != Some(&i) {
                    slot.3.push(i);
                }
            }
        }
    }
    // Nodes that can hold the largest member once cleared, then with the least protected
    // victims, then where the fewest GPUs must be freed for the largest member (taking victims
    // smallest first), then with the newest work (least work lost).
    let mut order: Vec<NodeOrder> = nodes
        .iter()
        .map(|(&n, (gpu, prot, newest, victims))| {
            let free = q.cluster.nodes[n].gpu_free_total as Milli;
            let room = free + gpu;
            let mut cost: Milli = 0;
            for &i in victims {
                if free + cost >= largest {
                    break;
                }
                cost += eligible[i].3;
            }
            (room < largest, *prot, cost, std::cmp::Reverse(*newest), n)
        })
        .collect();
    order.sort();
    let mut seen = vec![false; eligible.len()];
    let mut out = Vec::with_capacity(eligible.len());
    for (_, _, _, _, n) in order {
        let victims = &nodes[&n].3;
        for &i in victims {
            if !seen[i] {
                seen[i] = true;
                out.push((eligible[i].5, eligible[i].6, false));
            }
        }
        if let Some(last) = out.last_mut() {
            last.2 = true;
        }
    }
    out
}

/// An upper bound on the free milli-units of a flavor: capacity less every tenant's usage, or
/// the free room its nodes in service have, whichever is more. On a cluster whose nodes never
/// changed the first is never less (it ignores unusable GPUs and the CPU of GPU pods) and the
/// bound is as it always was; the second keeps it an upper bound when quota is still charged
/// for work on removed or shrunken nodes, which would otherwise block admissions that fit.
pub(super) fn free(q: &Queue, f: FlavorId) -> Milli {
    q.capacity(f).saturating_sub(q.quota.total_usage(f)).max(q.room(f))
}

/// Takes a running workload off the cluster and out of quota, keeping its entry as running.
fn suspend(q: &mut Queue, id: WorkloadId, reclaim: bool) -> Suspended {
    let (tenant, r) = {
        let e = &q.entries[&id];
        let State::Running(r) = &e.state else { unreachable!("candidates are running") };
        (e.w.tenant, r.clone())
    };
    let placements: Vec<(u64, Placement)> =
        r.pods.iter().filter_map(|(pod, _)| q.cluster.release(*pod).ok().map(|p| (*pod, p))).collect();
    for (_, p) in &placements {
        q.touch(p.node);
    }
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
    // FIFO mode keeps usage but enforces no quota.
    if q.mode == super::Mode::Quota && (q.quota.available(tenant, r.flavor) as i128) < r.demand as i128 {
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
    for (_, p) in &s.placements {
        q.touch(p.node);
    }
    q.quota.add(tenant, r.flavor, r.demand as i64);
    true
}

fn restore(q: &mut Queue, s: &Suspended) {
    // Restoring in reverse order of suspension onto an unchanged cluster always succeeds; were
    // it ever to fail, the victim goes back to its queue rather than run without its pods.
    let ok = try_restore(q, s);
    debug_assert!(ok, "restoring victim {} onto an unchanged cluster failed", s.id);
    if !ok {
        requeue(q, s.id, q.now);
    }
}

/// Whether `w`, with `victims` stopped, may start: within its tenant's nominal quota (its own
/// lower-priority work stopped as needed), or, if the tenant's policy lets it borrow while
/// preempting, with every other tenant's victim within the policy's priority threshold. Above
/// nominal it is borrowed work itself, which its victims could otherwise reclaim in turn (a
/// loop); the threshold keeps its victims strictly below its priority, so they cannot.
fn lands<'a>(
    q: &Queue,
    w: &Workload,
    f: FlavorId,
    demand: Milli,
    mut victims: impl Iterator<Item = &'a Suspended>,
) -> bool {
    if q.quota.usage(w.tenant, f) + demand <= q.quota.nominal(w.tenant, f) {
        return true;
    }
    let max = q.tenancy.tenants[w.tenant].preemption.borrow_within_cohort;
    let priority = q.entries.get(&w.id).map_or(i32::MIN, |e| e.priority);
    let mut any = false;
    // Every other tenant's victim below both the threshold and the workload's own priority, so
    // that none of them could ever take the room back by priority (a victim taken by reclaim
    // may be of any priority, but then the workload must land within its nominal quota).
    let all_below = victims.all(|s| {
        any = true;
        !s.reclaim
            || max.is_some_and(|m| q.running(s.id).is_some_and(|r| r.priority <= m && r.priority < priority))
    });
    // With no victim left it is no preemption: above nominal, it would be a plain admission
    // that borrows, which the admission rules already refused (the flavor may be held for owed
    // work); so it does not land.
    any && max.is_some() && all_below
}

/// Victim sets up to this size are made minimal (see [`minimal_victims`]); larger ones keep only
/// what still fits beside the placed workload.
const MINIMIZE_UP_TO: usize = 16;

/// Makes the victim set minimal: with `w` taken off again, each victim (latest first) is put back
/// and stays back if `w` still fits without it. `w` is then placed on what the needed victims
/// alone free, so it never lands on the GPUs of a victim it did not need (which would then have
/// to stop for nothing). Returns `w`'s pods.
fn minimal_victims(
    q: &mut Queue,
    w: &Workload,
    f: FlavorId,
    demand: Milli,
    members: &[PodRequest],
    removed: &mut Vec<Suspended>,
    pods: Vec<(u64, Placement)>,
) -> Vec<(u64, Placement)> {
    q.unplace(pods);
    let mut kept: Vec<(WorkloadId, bool)> = Vec::new();
    let mut i = removed.len();
    while i > 0 {
        i -= 1;
        if !try_restore(q, &removed[i]) {
            continue;
        }
        let others = removed.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, s)| s);
        let fits = lands(q, w, f, demand, others)
            && (q.quota.available(w.tenant, f) as i128) >= demand as i128
            && free(q, f) >= demand;
        match fits.then(|| q.place(w, f, members, false)) {
            Some(Ok(probe)) => {
                q.unplace(probe);
                let s = removed.remove(i);
                kept.push((s.id, s.reclaim));
            }
            _ => {
                let s = suspend(q, removed[i].id, removed[i].reclaim);
                removed[i] = s;
            }
        }
    }
    // Placement is deterministic, so this is the placement the last probe found; should it ever
    // differ, the victims put back are stopped again, which is where `w` was first placed.
    if let Ok(pods) = q.place(w, f, members, false) {
        return pods;
    }
    for (id, reclaim) in kept {
        removed.push(suspend(q, id, reclaim));
    }
    q.place(w, f, members, false).unwrap_or_default()
}

/// With `w` placed, restores every victim (latest first) that still fits beside it, and with
/// which `w` still [`lands`].
fn keep_only_needed(q: &mut Queue, w: &Workload, f: FlavorId, demand: Milli, removed: &mut Vec<Suspended>) {
    // Charged meanwhile, so that victims put back find only the quota `w` leaves.
    q.quota.add(w.tenant, f, demand as i64);
    let mut i = removed.len();
    while i > 0 {
        i -= 1;
        if !try_restore(q, &removed[i]) {
            continue;
        }
        let others = removed.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, s)| s);
        if lands(q, w, f, 0, others) {
            removed.remove(i);
        } else {
            let s = suspend(q, removed[i].id, removed[i].reclaim);
            removed[i] = s;
        }
    }
    q.quota.add(w.tenant, f, -(demand as i64));
}

/// With `w` placed, whether it lands (see [`lands`]) and every victim is needed: none could go
/// back where it was beside `w` with `w` still landing. The property tests check this on every
/// preemption of their random runs (debug builds); the cluster and quotas are left as they were.
fn every_victim_needed(
    q: &mut Queue,
    w: &Workload,
    f: FlavorId,
    demand: Milli,
    removed: &mut [Suspended],
) -> bool {
    q.quota.add(w.tenant, f, demand as i64);
    let mut needed = lands(q, w, f, 0, removed.iter());
    for i in 0..removed.len() {
        if try_restore(q, &removed[i]) {
            let others = removed.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, s)| s);
            needed &= !lands(q, w, f, 0, others);
            removed[i] = suspend(q, removed[i].id, removed[i].reclaim);
        }
    }
    q.quota.add(w.tenant, f, -(demand as i64));
    needed
}

/// Finishes stopping a suspended victim: its ledger meter, its place in the stacks, and back to
/// its queue with its original submission time.
fn requeue(q: &mut Queue, id: WorkloadId, now: Seconds) {
    let (tenant, r, part) = {
        let e = &q.entries[&id];
        let State::Running(r) = &e.state else { return };
        (e.w.tenant, r.clone(), e.w.charge.clone())
    };
    // Re-add then release through the normal path so stacks, ledger and shape memo stay in step.
    q.quota.add(tenant, r.flavor, r.demand as i64);
    let nf = q.tenancy.flavors.len();
    q.stacks[tenant * nf + r.flavor].remove(&super::stack_key(&r, id));
    q.count_priority(tenant, r.flavor, r.priority, r.demand, false);
    q.charge(tenant, r.flavor, -(r.demand as i64), part.as_ref(), now);
    q.forget_failures(r.flavor);
    q.stopped.insert(id);
    q.set_pending(id, super::Reason::Preempted);
}
