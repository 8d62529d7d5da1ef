//! The guarantee as a property: **a workload owed its tenant's nominal quota never waits past the
//! reclaim window while work that the preemption rules let it stop (borrowed work past its
//! minimum runtime, its tenant's own lower-priority work) holds room it could use.**
//!
//! Random worlds: one GPU model on 2-6 nodes of 4 or 8 GPUs; 2-4 tenants in one cohort whose
//! nominal quotas split the cluster's GPUs (as a platform team sets them, and as the scale
//! months do); each tenant with Gantry's default preemption policy or a random one; random
//! streams of gangs of 1-3 pods of 1-8 GPUs of any kind, finishes and clock steps. After every
//! cycle, each pending workload that is owed (see `Queue::owed`: within nominal once its own
//! stoppable work stops) and has waited past the window must have no room even with everything
//! it may stop now stopped (`Queue::room_after_reclaim` with `RoomCheck::Now`) once one more
//! cycle has run (room freed after it was looked at is taken in the next cycle), unless it was
//! stopped in that very cycle (a victim is not started again in the cycle that stopped it).
//!
//! Seeded like `queue_props`: set `PROPTEST_RNG_SEED` and `PROPTEST_CASES` to explore further.

mod common;

use common::*;
use gantry_core::queue::RoomCheck;
use gantry_core::tenancy::{
    Kind, PreemptionPolicy, ReclaimWithinCohort, Seconds, Tenancy, WhenCanPreempt, WithinTenant,
};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};

#[derive(Clone, Debug)]
struct World {
    /// GPUs per node.
    nodes: Vec<u32>,
    /// Each tenant's share of the cluster's GPUs (weights; the last tenant takes the rest).
    shares: Vec<u32>,
    policies: Vec<Option<PreemptionPolicy>>,
    reclaim_window: Seconds,
    min_runtime: Seconds,
}

#[derive(Clone, Debug)]
enum Op {
    Submit { tenant: usize, kind: usize, members: u32, gpus: u32 },
    Finish(usize),
    Tick(Seconds),
}

fn policy() -> impl Strategy<Value = PreemptionPolicy> {
    (0..3u8, 0..3u8, any::<bool>()).prop_map(|(w, r, next)| PreemptionPolicy {
        within_tenant: [
            WithinTenant::Never,
            WithinTenant::LowerPriority,
            WithinTenant::LowerOrNewerEqualPriority,
        ][w as usize],
        reclaim_within_cohort: [
            ReclaimWithinCohort::Never,
            ReclaimWithinCohort::LowerPriority,
            ReclaimWithinCohort::Any,
        ][r as usize],
        borrow_within_cohort: None,
        when_can_preempt: if next { WhenCanPreempt::TryNextFlavor } else { WhenCanPreempt::Preempt },
    })
}

fn world() -> impl Strategy<Value = World> {
    (2..=4usize).prop_flat_map(|tenants| {
        (
            prop::collection::vec(prop_oneof![Just(4u32), Just(8u32)], 2..=6),
            prop::collection::vec(1..4u32, tenants),
            prop::collection::vec(prop::option::of(policy()), tenants),
            prop_oneof![Just(0i64), Just(60), Just(300)],
            prop_oneof![Just(0i64), Just(120)],
        )
            .prop_map(|(nodes, shares, policies, reclaim_window, min_runtime)| World {
                nodes,
                shares,
                policies,
                reclaim_window,
                min_runtime,
            })
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..5usize, 1..=3u32, prop_oneof![Just(1u32), Just(2), Just(4), Just(8)])
            .prop_map(|(tenant, kind, members, gpus)| Op::Submit { tenant, kind, members, gpus }),
        2 => any::<usize>().prop_map(Op::Finish),
        3 => (1..400i64).prop_map(Op::Tick),
    ]
}

/// One cohort; nominal quotas split the cluster's GPUs by the shares, summing to all of them.
fn tenancy_of(w: &World) -> Tenancy {
    let total: u32 = w.nodes.iter().sum();
    let weights: u32 = w.shares.iter().sum();
    let mut left = total;
    let mut b = TenancyBuilder::new(&["A100"]).timing(w.reclaim_window, w.min_runtime).cohort("pool", None);
    let names: Vec<String> = (0..w.shares.len()).map(|i| format!("t{i}")).collect();
    for (i, share) in w.shares.iter().enumerate() {
        let nominal = if i + 1 == w.shares.len() { left } else { total * share / weights };
        left -= nominal;
        b = b.tenant(&names[i], Some("pool"), &[Q::n(nominal as u64)]);
    }
    let mut t = b.build();
    for (i, p) in w.policies.iter().enumerate() {
        if let Some(p) = p {
            t.tenants[i].preemption = *p;
        }
    }
    t
}

fn run(w: &World, ops: &[Op]) -> Result<(), TestCaseError> {
    let nodes: Vec<(&str, u32)> = w.nodes.iter().map(|&g| ("A100", g)).collect();
    let mut q = queue(tenancy_of(w), cluster(&nodes), NOV1);
    let (mut now, mut next_id) = (NOV1, 1);
    for op in ops {
        match *op {
            Op::Submit { tenant, kind, members, gpus } => {
                let wl = WB::new(next_id, tenant % w.shares.len())
                    .kind(Kind::ALL[kind % 5])
                    .at(now)
                    .gpus(members, gpus)
                    .build();
                next_id += 1;
                let _ = q.submit(wl, now);
            }
            Op::Finish(i) => {
                let ids = running_ids(&q);
                if !ids.is_empty() {
                    q.finish(ids[i % ids.len()], now);
                }
            }
            Op::Tick(dt) => {
                now += dt;
                let out = q.cycle(now);
                let mut overdue = overdue_with_room(&mut q, w, now, &out);
                if !overdue.is_empty() {
                    // Room can appear after the workload was looked at in a cycle (a later
                    // preemption or reclaim freed more than its victim needed): the next cycle,
                    // a second later in a cluster, must take it.
                    let out = q.cycle(now);
                    overdue = overdue_with_room(&mut q, w, now, &out);
                }
                if let Some(&id) = overdue.first() {
                    let wl = q.workload(id).cloned().expect("pending workloads are known");
                    let running: Vec<String> = q
                        .running_workloads()
                        .map(|(x, r)| {
                            format!("{} (t{} {:?} {} at +{})", x.id, x.tenant, x.kind, r.demand, r.at - NOV1)
                        })
                        .collect();
                    prop_assert!(
                        false,
                        "workload {} (t{} {:?} {}), owed and waiting {} s (window {} s), has room once what it may stop now is stopped, two cycles on: {:?}; running: {}",
                        id,
                        wl.tenant,
                        wl.kind,
                        wl.demand(wl.members()),
                        now - wl.submitted,
                        w.reclaim_window,
                        q.reason(id),
                        running.join(", ")
                    );
                }
            }
        }
        if let Err(e) = q.check_invariants() {
            return Err(TestCaseError::fail(format!("invariant: {e}")));
        }
    }
    Ok(())
}

/// Pending workloads, owed and past their reclaim window and not stopped in the cycle just run
/// (`out`), for which room exists with what they may stop now stopped.
fn overdue_with_room(
    q: &mut gantry_core::queue::Queue,
    w: &World,
    now: Seconds,
    out: &gantry_core::queue::CycleOutcome,
) -> Vec<u64> {
    let mut pending: Vec<_> = q.pending_ids().collect();
    pending.sort_unstable();
    pending
        .into_iter()
        .filter(|&id| {
            let submitted = q.workload(id).map_or(now, |wl| wl.submitted);
            now - submitted > w.reclaim_window
                && !out.preempted.iter().any(|p| p.victim == id)
                && q.owed(id)
                && q.room_after_reclaim(id, now, RoomCheck::Now)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        max_shrink_iters: 2000,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x6f77_6564),
        ..ProptestConfig::default()
    })]

    #[test]
    fn owed_work_never_waits_past_the_window_while_what_it_may_stop_holds_room(
        w in world(),
        ops in prop::collection::vec(op(), 20..150),
    ) {
        run(&w, &ops)?;
    }
}
