//! Scenario tests of the multi-tenant admission queue: each builds a small tenancy and cluster by
//! hand, drives submissions, finishes and cycles on a clock, and checks exact outcomes (who
//! runs, who is preempted by whom, quota numbers, reasons and messages).
//!
//! All GPU quantities in the tenancies are whole GPUs; queue amounts are milli-GPU (`g(n)`).

mod common;

use common::*;
use gantry_core::model::{ModelSet, PodRequest};
use gantry_core::queue::{Mode, Preemption, Reason, Refusal};
use gantry_core::tenancy::{Kind, PreemptionPolicy, ReclaimWithinCohort, Seconds, WhenExhausted};

const A100: usize = 0;

fn reclaim(victim: u64, by: u64) -> Preemption {
    Preemption { victim, by, reclaim: true }
}
fn priority(victim: u64, by: u64) -> Preemption {
    Preemption { victim, by, reclaim: false }
}

// ---------------------------------------------------------------------------------------------
// Quota: nominal, borrowing, lending, strict mode
// ---------------------------------------------------------------------------------------------

#[test]
fn a_tenant_in_no_cohort_never_exceeds_its_nominal_quota() {
    let t = TenancyBuilder::new(&["A100"]).tenant("alpha", None, &[Q::n(2)]).build();
    let mut q = queue(t, a100s(1, 8), NOV1);
    for id in 1..=3 {
        submit(&mut q, WB::new(id, 0).gpus(1, 1).at(NOV1).build(), NOV1);
    }
    let out = q.cycle(NOV1);
    assert_eq!(admitted_ids(&out), vec![1, 2]);
    assert_eq!(q.quota().usage(0, A100), g(2));
    assert_eq!(q.quota().available(0, A100), 0);
    assert_eq!(q.quota().ceiling(0, A100), gi(2));
    assert_eq!(
        q.reason(3),
        Some(&Reason::Quota {
            flavor: "A100".into(),
            requested: g(1),
            used: g(2),
            nominal: g(2),
            available: 0,
            borrowing_limit: None
        })
    );
    // Six GPUs stay idle: no one to borrow from, and nothing changes after a long wait.
    assert!(q.cycle(NOV1 + 86_400).admitted.is_empty());
    assert_eq!(q.cluster().gpu_allocated(), g(2));
    assert_consistent(&q);
}

#[test]
fn a_tenant_borrows_idle_quota_of_its_cohort() {
    let t = TenancyBuilder::new(&["A100"])
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(4)])
        .tenant("b", Some("pool"), &[Q::n(4)])
        .build();
    let mut q = queue(t, a100s(2, 4), NOV1);
    submit(&mut q, WB::new(1, 0).gpus(2, 3).build(), NOV1);
    let out = q.cycle(NOV1);
    assert_eq!(admitted_ids(&out), vec![1]);
    assert_eq!(out.admitted[0].members, 2);
    assert_eq!(q.quota().usage(0, A100), g(6));
    assert_eq!(q.quota().borrowed(0, A100), g(2));
    assert_eq!(q.quota().available(0, A100), gi(2));
    assert_eq!(q.quota().available(1, A100), gi(2), "b's idle 4 are half lent out");
    assert_eq!(q.quota().ceiling(0, A100), gi(8));
    assert_eq!(q.borrowed_share(0), 0.25);
    assert_eq!(q.borrowed_share(1), 0.0);
    // A second job of 3 GPUs does not fit what the cohort can still lend.
    submit(&mut q, WB::new(2, 0).gpus(1, 3).at(NOV1 + 1).build(), NOV1 + 1);
    assert!(q.cycle(NOV1 + 1).admitted.is_empty());
    assert_eq!(
        q.reason(2),
        Some(&Reason::Quota {
            flavor: "A100".into(),
            requested: g(3),
            used: g(6),
            nominal: g(4),
            available: g(2),
            borrowing_limit: None
        })
    );
    let e = q.explain(2, NOV1 + 1).unwrap();
    assert_eq!(
        e.message,
        "waiting for quota: needs 3 A100 GPUs; a uses 6 of its 4 nominal and cohort pool can lend 2 more; position 1 of 1 in a's queue"
    );
    assert_consistent(&q);
}

#[test]
fn a_borrowing_limit_caps_what_a_tenant_takes_above_nominal() {
    let t = TenancyBuilder::new(&["A100"])
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(4).borrow(1)])
        .tenant("b", Some("pool"), &[Q::n(4)])
        .build();
    let mut q = queue(t, a100s(2, 4), NOV1);
    assert_eq!(q.quota().ceiling(0, A100), gi(5));
    submit(&mut q, WB::new(1, 0).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(2, 0).gpus(1, 2).at(NOV1 + 1).build(), NOV1);
    submit(&mut q, WB::new(3, 0).gpus(1, 1).at(NOV1 + 2).build(), NOV1);
    let out = q.cycle(NOV1);
    assert_eq!(admitted_ids(&out), vec![1, 3], "the 2-GPU job would borrow 2, above the limit of 1");
    assert_eq!(q.quota().usage(0, A100), g(5));
    assert_eq!(
        q.reason(2),
        Some(&Reason::Quota {
            flavor: "A100".into(),
            requested: g(2),
            used: g(5),
            nominal: g(4),
            available: 0,
            borrowing_limit: Some(g(1))
        })
    );
    let msg = q.explain(2, NOV1).unwrap().message;
    assert!(msg.starts_with("waiting for quota: needs 2 A100 GPUs; a uses 5 of its 4 nominal (borrowing limit 1) and cohort pool can lend 0 more"), "{msg}");
    // Refused at submission: 6 GPUs are above nominal plus borrowing limit.
    let err = q.submit(WB::new(4, 0).name("big").gpus(2, 3).build(), NOV1).unwrap_err();
    assert_eq!(
        err,
        Refusal::OverCeiling("workload big needs 6 but tenant a can hold at most 5 A100 GPUs (nominal quota plus borrowing); ask for less or for a larger quota".into())
    );
    assert_consistent(&q);
}

#[test]
fn strict_mode_caps_every_tenant_at_its_nominal_quota() {
    let t = TenancyBuilder::new(&["A100"])
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(4)])
        .tenant("b", Some("pool"), &[Q::n(4)])
        .build()
        .strict();
    assert!(t.tenants.iter().all(|t| t.quotas[0].borrowing_limit == Some(0)));
    let mut q = queue(t, a100s(2, 4), NOV1);
    assert_eq!(q.quota().ceiling(0, A100), gi(4));
    submit(&mut q, WB::new(1, 0).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(2, 0).gpus(1, 1).at(NOV1 + 1).build(), NOV1);
    let out = q.cycle(NOV1);
    assert_eq!(admitted_ids(&out), vec![1]);
    assert!(
        matches!(q.reason(2), Some(Reason::Quota { available: 0, used: 4000, nominal: 4000, .. })),
        "{:?}",
        q.reason(2)
    );
    assert_eq!(q.cluster().gpu_allocated(), g(4), "b's 4 GPUs stay idle");
    let err = q.submit(WB::new(3, 0).name("five").gpus(5, 1).build(), NOV1).unwrap_err();
    assert!(err.to_string().contains("tenant a can hold at most 4 A100 GPUs"), "{err}");
    assert_consistent(&q);
}

#[test]
fn a_lender_keeps_its_nominal_minus_lending_limit() {
    // a lends at most 2 of its 8: b (nominal 2) can reach 4, and a always keeps 6 for itself.
    let t = TenancyBuilder::new(&["A100"])
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(8).lend(2)])
        .tenant("b", Some("pool"), &[Q::n(2)])
        .build();
    let mut q = queue(t, a100s(2, 8), NOV1);
    assert_eq!(q.quota().ceiling(1, A100), gi(4));
    assert_eq!(q.quota().ceiling(0, A100), gi(10));
    for id in 1..=5 {
        submit(&mut q, WB::new(id, 1).gpus(1, 1).at(NOV1 + id as i64).build(), NOV1);
    }
    let out = q.cycle(NOV1);
    assert_eq!(admitted_ids(&out), vec![1, 2, 3, 4]);
    assert_eq!(q.quota().borrowed(1, A100), g(2));
    assert!(matches!(q.reason(5), Some(Reason::Quota { available: 0, .. })));
    // a's kept 6 are free for it at once, with no reclaim needed.
    assert_eq!(q.quota().available(0, A100), gi(6));
    submit(&mut q, WB::new(10, 0).gpus(1, 6).at(NOV1 + 10).build(), NOV1 + 10);
    let out = q.cycle(NOV1 + 10);
    assert_eq!(admitted_ids(&out), vec![10]);
    assert!(out.preempted.is_empty());
    let err = q.submit(WB::new(11, 1).name("b5").gpus(1, 5).build(), NOV1 + 10).unwrap_err();
    assert_eq!(
        err.to_string(),
        "workload b5 needs 5 but tenant b can hold at most 4 A100 GPUs (nominal quota plus borrowing); ask for less or for a larger quota"
    );
    assert_consistent(&q);
}

#[test]
fn a_parent_cohort_lends_between_its_child_cohorts() {
    // org { ml { a: 2, a2: 2 }, web { b: 4 } } on 8 GPUs.
    let t = TenancyBuilder::new(&["A100"])
        .timing(300, 600)
        .cohort("org", None)
        .cohort("ml", Some("org"))
        .cohort("web", Some("org"))
        .tenant("a", Some("ml"), &[Q::n(2)])
        .tenant("a2", Some("ml"), &[Q::n(2)])
        .tenant("b", Some("web"), &[Q::n(4)])
        .build();
    let mut q = queue(t, a100s(2, 4), NOV1);
    assert_eq!(q.quota().ceiling(0, A100), gi(8));
    submit(&mut q, WB::new(1, 0).gpus(2, 4).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1]);
    assert_eq!(q.quota().borrowed(0, A100), g(6), "2 from a2 in ml, 4 from web through org");
    assert_eq!(q.quota().available(1, A100), 0);
    assert_eq!(q.quota().available(2, A100), 0);
    // b claims its nominal: after the reclaim window (and the gang's minimum runtime) it gets it.
    let t1 = NOV1 + 1000;
    submit(&mut q, WB::new(2, 2).gpus(1, 4).at(t1).build(), t1);
    assert!(q.cycle(t1).preempted.is_empty());
    assert_eq!(q.next_wakeup(), Some(t1 + 300));
    let out = q.cycle(t1 + 300);
    assert_eq!(out.preempted, vec![reclaim(1, 2)]);
    assert_eq!(admitted_ids(&out), vec![2]);
    assert_eq!(q.reason(1), Some(&Reason::Preempted));
    // The gang (8) now waits: ml can only reach its own 4.
    assert!(q.cycle(t1 + 301).admitted.is_empty());
    assert!(
        matches!(q.reason(1), Some(Reason::Quota { requested: 8000, available: 4000, .. })),
        "{:?}",
        q.reason(1)
    );
    assert_consistent(&q);
}

// ---------------------------------------------------------------------------------------------
// Gangs
// ---------------------------------------------------------------------------------------------

#[test]
fn gangs_start_whole_or_not_at_all() {
    let t = TenancyBuilder::new(&["A100"]).tenant("t", None, &[Q::n(16)]).build();
    let mut q = queue(t, a100s(2, 4), NOV1);
    submit(&mut q, WB::new(1, 0).gpus(1, 4).build(), NOV1);
    let out = q.cycle(NOV1);
    assert_eq!(admitted_ids(&out), vec![1]);
    let free = |q: &gantry_core::queue::Queue| {
        q.cluster().nodes.iter().map(|n| (n.gpu_free_total, n.cpu_free, n.memory_free)).collect::<Vec<_>>()
    };
    let free_before = free(&q);

    // Two members of 2 GPUs and 300 GiB each: 4 GPUs are free (on one node), the first member
    // fits there, the second does not (memory). Nothing of the gang may stay placed.
    let big_memory = PodRequest::whole_gpus(2000, 300 * 1024, 2);
    submit(&mut q, WB::new(2, 0).pods(2, big_memory).at(NOV1 + 1).build(), NOV1 + 1);
    let out = q.cycle(NOV1 + 1);
    assert!(out.admitted.is_empty());
    assert_eq!(q.cluster().placed_pods(), 1, "no member of the gang was left placed");
    assert_eq!(free(&q), free_before, "GPUs, CPU and memory as before");
    match q.reason(2) {
        Some(Reason::NoFit { flavor, pods, detail }) => {
            assert_eq!((flavor.as_str(), *pods), ("A100", 2));
            assert!(detail.starts_with("pod 2 of 2 fits nowhere"), "{detail}");
        }
        r => panic!("expected NoFit, got {r:?}"),
    }

    // An elastic gang: 4 members of 2 GPUs, may start with 2. Only 4 GPUs are free.
    submit(&mut q, WB::new(3, 0).gpus(4, 2).min(2).at(NOV1 + 2).build(), NOV1 + 2);
    let out = q.cycle(NOV1 + 2);
    assert_eq!(admitted_ids(&out), vec![3]);
    assert_eq!(out.admitted[0].members, 2);
    assert_eq!(out.admitted[0].pods.len(), 2);
    let r = q.running(3).unwrap();
    assert_eq!((r.demand, r.pods.len()), (g(4), 2));
    assert_eq!(q.cluster().gpu_allocated(), g(8));
    assert_eq!(q.cluster().placed_pods(), 3);
    assert_consistent(&q);

    // With the 4-GPU job gone, the big-memory gang still has only one node with room.
    q.finish(1, NOV1 + 10);
    assert!(q.cycle(NOV1 + 10).admitted.is_empty());
    assert_eq!(q.cluster().placed_pods(), 2);
    // With the elastic gang gone too, it starts whole: one member per node.
    q.finish(3, NOV1 + 20);
    let out = q.cycle(NOV1 + 20);
    assert_eq!(admitted_ids(&out), vec![2]);
    assert_eq!(out.admitted[0].members, 2);
    let mut nodes: Vec<usize> = out.admitted[0].pods.iter().map(|(_, p)| p.node).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, vec![0, 1]);
    assert_consistent(&q);
}

// ---------------------------------------------------------------------------------------------
// Fair share and queue order
// ---------------------------------------------------------------------------------------------

/// a borrows 4 of 16 GPUs, b borrows 2, c lends; both then want two more 1-GPU jobs and only two
/// GPUs are free. Returns the order the four new jobs were admitted in.
fn fair_share_run(weight_a: f64) -> (Vec<u64>, f64, f64) {
    let t = TenancyBuilder::new(&["A100"])
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(2)])
        .tenant("b", Some("pool"), &[Q::n(2)])
        .tenant("c", Some("pool"), &[Q::n(12)])
        .weight("a", weight_a)
        .build();
    let mut q = queue(t, a100s(2, 8), NOV1);
    submit(&mut q, WB::new(1, 0).gpus(1, 6).build(), NOV1);
    submit(&mut q, WB::new(2, 1).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(3, 2).gpus(1, 4).build(), NOV1);
    assert_eq!(q.cycle(NOV1).admitted.len(), 3);
    let shares = (q.borrowed_share(0), q.borrowed_share(1));
    let t1 = NOV1 + 10;
    for (id, tenant) in [(11, 0), (12, 0), (21, 1), (22, 1)] {
        submit(&mut q, WB::new(id, tenant).gpus(1, 1).at(t1).build(), t1);
    }
    let out = q.cycle(t1);
    assert!(out.preempted.is_empty());
    assert_consistent(&q);
    (admitted_ids(&out), shares.0, shares.1)
}

#[test]
fn the_tenant_with_the_lowest_weighted_borrowed_share_goes_first() {
    let (order, share_a, share_b) = fair_share_run(1.0);
    assert_eq!((share_a, share_b), (0.25, 0.125));
    assert_eq!(order, vec![21, 22], "b borrows less, so b takes both free GPUs");
    let (order, share_a, share_b) = fair_share_run(4.0);
    assert_eq!((share_a, share_b), (0.0625, 0.125));
    assert_eq!(order, vec![11, 12], "with weight 4, a's weighted share is lower");
}

#[test]
fn a_tenants_queue_is_ordered_by_priority_then_submission_time() {
    let t = TenancyBuilder::new(&["A100"]).tenant("t", None, &[Q::n(8)]).build();
    let mut q = queue(t, a100s(1, 8), NOV1);
    submit(&mut q, WB::new(1, 0).kind(Kind::Batch).gpus(1, 1).at(NOV1).build(), NOV1);
    submit(&mut q, WB::new(2, 0).kind(Kind::Training).gpus(1, 1).at(NOV1 + 1).build(), NOV1 + 1);
    submit(&mut q, WB::new(3, 0).kind(Kind::Training).gpus(1, 1).at(NOV1 + 2).build(), NOV1 + 2);
    submit(&mut q, WB::new(4, 0).kind(Kind::Serving).gpus(1, 1).at(NOV1 + 3).build(), NOV1 + 3);
    submit(&mut q, WB::new(5, 0).kind(Kind::Notebook).gpus(1, 1).at(NOV1 + 4).build(), NOV1 + 4);
    // An older training job submitted last (its submission time, not its arrival, orders it).
    submit(&mut q, WB::new(6, 0).kind(Kind::Training).gpus(1, 1).at(NOV1 - 5).build(), NOV1 + 5);
    let out = q.cycle(NOV1 + 5);
    assert_eq!(admitted_ids(&out), vec![4, 5, 6, 2, 3, 1]);
    assert_consistent(&q);
}

#[test]
fn explain_gives_the_position_in_the_tenants_queue() {
    let t = TenancyBuilder::new(&["A100"]).tenant("alpha", None, &[Q::n(4)]).build();
    let mut q = queue(t, a100s(1, 8), NOV1);
    submit(&mut q, WB::new(1, 0).gpus(1, 4).runtime(3600).build(), NOV1);
    q.cycle(NOV1);
    for id in 2..=4 {
        submit(&mut q, WB::new(id, 0).gpus(1, 2).at(NOV1 + id as i64).build(), NOV1 + 10);
    }
    // Not looked at yet: queued.
    let e = q.explain(3, NOV1 + 10).unwrap();
    assert_eq!((e.reason.clone(), e.position, e.queue_length), (Reason::Queued, 2, 3));
    assert_eq!(e.tenant, "alpha");
    assert!(
        e.message.starts_with("queued behind 1 other workloads of alpha; position 2 of 3 in alpha's queue"),
        "{}",
        e.message
    );
    q.cycle(NOV1 + 600);
    let e = q.explain(2, NOV1 + 600).unwrap();
    assert_eq!((e.position, e.queue_length), (1, 3));
    assert_eq!(e.estimated_start, Some(NOV1 + 3600), "job 1 declared one hour and frees the 4 GPUs");
    assert_eq!(
        e.message,
        "waiting for quota: needs 2 A100 GPUs; alpha uses 4 of its 4 nominal and it has no cohort to borrow from, so 0 more; position 1 of 3 in alpha's queue; estimated start in 50m"
    );
    assert!(q.explain(1, NOV1 + 600).is_none(), "running workloads have no explanation");
    assert!(q.explain(99, NOV1 + 600).is_none());
}

// ---------------------------------------------------------------------------------------------
// Preemption: reclaim and priority
// ---------------------------------------------------------------------------------------------

#[test]
fn reclaim_waits_for_the_window_and_the_victims_minimum_runtime() {
    let t = TenancyBuilder::new(&["A100"])
        .timing(300, 600)
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(4)])
        .tenant("b", Some("pool"), &[Q::n(4)])
        .build();
    let mut q = queue(t, a100s(2, 4), NOV1);
    submit(&mut q, WB::new(1, 1).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(2, 1).gpus(1, 4).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1, 2]);
    assert_eq!(q.quota().borrowed(1, A100), g(4));

    let t1 = NOV1 + 100;
    submit(&mut q, WB::new(3, 0).gpus(1, 4).at(t1).build(), t1);
    let out = q.cycle(t1);
    assert!(out.admitted.is_empty() && out.preempted.is_empty());
    assert_eq!(q.next_wakeup(), Some(t1 + 300), "the reclaim window ends");
    assert_eq!(
        q.reason(3),
        Some(&Reason::Quota {
            flavor: "A100".into(),
            requested: g(4),
            used: 0,
            nominal: g(4),
            available: 0,
            borrowing_limit: None
        })
    );
    // Before the window ends nothing happens, also when other work arrives and the queue cycles.
    submit(&mut q, WB::new(9, 1).kind(Kind::Batch).gpus(1, 1).at(t1 + 100).build(), t1 + 100);
    assert!(q.cycle(t1 + 299).preempted.is_empty());
    q.finish(9, t1 + 299);
    assert_eq!(q.pending_of(1), 0, "a pending workload can be withdrawn");
    // Window over, but job 2 started at NOV1 and is protected until NOV1 + 600.
    let out = q.cycle(t1 + 300);
    assert!(out.preempted.is_empty());
    assert_eq!(q.next_wakeup(), Some(NOV1 + 600));
    let out = q.cycle(NOV1 + 600);
    assert_eq!(out.preempted, vec![reclaim(2, 3)], "b's borrowed job, not its nominal one");
    assert_eq!(admitted_ids(&out), vec![3]);
    assert_eq!(q.running(3).unwrap().at, NOV1 + 600);
    assert!(q.running(1).is_some());
    // The victim waits again with its original submission time, first in b's queue.
    assert_eq!(q.reason(2), Some(&Reason::Preempted));
    assert_eq!(q.workload(2).unwrap().submitted, NOV1);
    let e = q.explain(2, NOV1 + 600).unwrap();
    assert_eq!(e.position, 1);
    assert!(
        e.message.starts_with("preempted to make room for other work; waiting to start again"),
        "{}",
        e.message
    );
    assert_consistent(&q);
}

#[test]
fn reclaim_stops_only_the_victims_it_needs() {
    // 3 nodes of 4 GPUs; a and b have 6 each. b fills the cluster: 3 + 3 within nominal (one per
    // node), then a 4-GPU job on the third node and two 1-GPU jobs on the remaining single GPUs.
    let t = TenancyBuilder::new(&["A100"])
        .timing(0, 0)
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(6)])
        .tenant("b", Some("pool"), &[Q::n(6)])
        .build();
    let mut q = queue(t, a100s(3, 4), NOV1);
    submit(&mut q, WB::new(1, 1).gpus(1, 3).build(), NOV1);
    submit(&mut q, WB::new(2, 1).gpus(1, 3).build(), NOV1);
    submit(&mut q, WB::new(3, 1).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(4, 1).gpus(1, 1).build(), NOV1);
    submit(&mut q, WB::new(5, 1).gpus(1, 1).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1, 2, 3, 4, 5]);
    assert_eq!(q.cluster().gpu_allocated(), g(12));
    let node_of = |q: &gantry_core::queue::Queue, id: u64| q.cluster().placement(id << 16).unwrap().node;
    assert_ne!(node_of(&q, 4), node_of(&q, 3));
    assert_ne!(node_of(&q, 5), node_of(&q, 3));

    // a wants one 4-GPU pod. Only freeing the 4-GPU node makes room: the 1-GPU jobs, though
    // smaller and as new, must keep running (if tried as victims, they are put back).
    submit(&mut q, WB::new(10, 0).gpus(1, 4).at(NOV1 + 10).build(), NOV1 + 10);
    let out = q.cycle(NOV1 + 10);
    assert_eq!(out.preempted, vec![reclaim(3, 10)]);
    assert_eq!(admitted_ids(&out), vec![10]);
    assert_eq!(running_ids(&q), vec![1, 2, 4, 5, 10]);
    assert_eq!(q.running(4).unwrap().at, NOV1, "restored victims keep running undisturbed");
    assert_eq!(q.quota().usage(1, A100), g(8));
    assert_consistent(&q);
}

#[test]
fn reclaim_finds_a_node_to_clear_behind_hundreds_of_smaller_borrowed_jobs() {
    // 300 nodes of 8 GPUs; a has 1,000 nominal GPUs, b 1,400. b runs a 7-GPU job on each of 299
    // nodes (the last 99 or so above its nominal quota), two 4-GPU jobs on the 300th node, and a
    // 1-GPU job in each 7-GPU node's last GPU: 299 borrowed 1-GPU jobs, one per node, which the
    // victim order (smallest first) puts ahead of everything else. a asks for one whole node.
    // Stopping any number of the 1-GPU jobs alone frees no node; clearing a node takes its
    // 1-GPU job and its borrowed 7-GPU job, or the two 4-GPU jobs. The victims are looked for
    // node by node, however many smaller ones come first in the global order.
    let t = TenancyBuilder::new(&["A100"])
        .timing(0, 0)
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(1000)])
        .tenant("b", Some("pool"), &[Q::n(1400)])
        .build();
    let mut q = queue(t, a100s(300, 8), NOV1);
    let mut id = 0;
    let mut batch = |q: &mut gantry_core::queue::Queue, count: u32, gpus: u32, at: Seconds| {
        for _ in 0..count {
            id += 1;
            submit(q, WB::new(id, 1).gpus(1, gpus).at(at).build(), at);
        }
        assert_eq!(q.cycle(at).admitted.len(), count as usize);
    };
    batch(&mut q, 299, 7, NOV1);
    batch(&mut q, 2, 4, NOV1 + 10);
    batch(&mut q, 299, 1, NOV1 + 20);
    assert_eq!(q.cluster().gpu_allocated(), g(2400));
    assert_eq!(q.quota().borrowed(1, A100), g(1000));

    submit(&mut q, WB::new(10_000, 0).gpus(1, 8).at(NOV1 + 30).build(), NOV1 + 30);
    let out = q.cycle(NOV1 + 30);
    assert_eq!(admitted_ids(&out), vec![10_000]);
    assert_eq!(out.preempted.len(), 2, "two victims clear one node: {:?}", out.preempted);
    let freed: u64 = out.preempted.iter().map(|p| q.workload(p.victim).unwrap().demand(1)).sum();
    assert_eq!(freed, g(8), "exactly one node's worth is stopped");
    assert_consistent(&q);
}

/// a, b and c have 4 GPUs each on 3 nodes of 4; reclaim may stop at once (window and minimum
/// runtime 0).
fn three_tenants_of_4() -> gantry_core::tenancy::Tenancy {
    TenancyBuilder::new(&["A100"])
        .timing(0, 0)
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(4)])
        .tenant("b", Some("pool"), &[Q::n(4)])
        .tenant("c", Some("pool"), &[Q::n(4)])
        .build()
}

#[test]
fn reclaim_prefers_the_newest_of_equal_borrowed_jobs() {
    // b runs three 4-GPU jobs, one per node, started 10 s apart; the last two are borrowed.
    let mut q = queue(three_tenants_of_4(), a100s(3, 4), NOV1);
    for (id, at) in [(1, NOV1), (2, NOV1 + 10), (3, NOV1 + 20)] {
        submit(&mut q, WB::new(id, 1).gpus(1, 4).at(at).build(), at);
        assert_eq!(admitted_ids(&q.cycle(at)), vec![id]);
    }
    submit(&mut q, WB::new(10, 0).gpus(1, 4).at(NOV1 + 30).build(), NOV1 + 30);
    let out = q.cycle(NOV1 + 30);
    assert_eq!(
        out.preempted,
        vec![reclaim(3, 10)],
        "job 3 is the newest borrowed job; job 2 started 10 s earlier"
    );
    assert_consistent(&q);
}

#[test]
fn reclaim_prefers_the_smallest_sufficient_borrowed_job() {
    // b: 4 GPUs within nominal, then two 2-GPU jobs and, newest, a 4-GPU job, all borrowed. a
    // needs 2 GPUs: one 2-GPU job goes, though the 4-GPU job is newer.
    let mut q = queue(three_tenants_of_4(), a100s(3, 4), NOV1);
    submit(&mut q, WB::new(1, 1).gpus(1, 4).build(), NOV1);
    q.cycle(NOV1);
    submit(&mut q, WB::new(2, 1).gpus(1, 2).at(NOV1 + 10).build(), NOV1 + 10);
    submit(&mut q, WB::new(3, 1).gpus(1, 2).at(NOV1 + 10).build(), NOV1 + 10);
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 10)), vec![2, 3]);
    submit(&mut q, WB::new(4, 1).gpus(1, 4).at(NOV1 + 20).build(), NOV1 + 20);
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 20)), vec![4]);
    submit(&mut q, WB::new(10, 0).gpus(1, 2).at(NOV1 + 30).build(), NOV1 + 30);
    let out = q.cycle(NOV1 + 30);
    assert_eq!(out.preempted, vec![reclaim(2, 10)]);
    assert_eq!(running_ids(&q), vec![1, 3, 4, 10]);
    assert_consistent(&q);
}

/// 16 GPUs; a and b each borrow 4 from c: a runs a batch job (1) and a serving job (2), b two
/// batch jobs (3, 4). Then a's serving job 5 arrives, with a over its nominal quota. Returns the
/// queue at that point.
fn a_and_b_borrow_and_a_serving_job_arrives(policy: PreemptionPolicy) -> gantry_core::queue::Queue {
    let mut t = TenancyBuilder::new(&["A100"])
        .timing(300, 600)
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(4)])
        .tenant("b", Some("pool"), &[Q::n(4)])
        .tenant("c", Some("pool"), &[Q::n(8)])
        .build();
    t.tenants[0].preemption = policy;
    let mut q = queue(t, a100s(4, 4), NOV1);
    submit(&mut q, WB::new(1, 0).kind(Kind::Batch).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(2, 0).kind(Kind::Serving).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(3, 1).kind(Kind::Batch).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(4, 1).kind(Kind::Batch).gpus(1, 4).build(), NOV1);
    assert_eq!(q.cycle(NOV1).admitted.len(), 4);
    assert_eq!((q.quota().borrowed(0, A100), q.quota().borrowed(1, A100)), (g(4), g(4)));
    let t1 = NOV1 + 100;
    submit(&mut q, WB::new(5, 0).kind(Kind::Serving).gpus(1, 4).at(t1).build(), t1);
    q
}

#[test]
fn priority_preemption_never_leaves_the_preemptor_borrowing_by_default() {
    // Stopping a's batch job would let job 5 run only on borrowed quota, which c could reclaim
    // at any time: work would be stopped for work that is not guaranteed. So nothing is
    // stopped; job 5 waits for quota.
    let mut q = a_and_b_borrow_and_a_serving_job_arrives(PreemptionPolicy::default());
    for now in [NOV1 + 100, NOV1 + 600, NOV1 + 86_400] {
        let out = q.cycle(now);
        assert!(out.preempted.is_empty() && out.admitted.is_empty(), "at {now}: {out:?}");
    }
    assert!(matches!(q.reason(5), Some(Reason::Quota { .. })), "{:?}", q.reason(5));
    assert_eq!(running_ids(&q), vec![1, 2, 3, 4]);
    assert_consistent(&q);
}

#[test]
fn with_borrowing_while_preempting_allowed_work_stops_only_below_the_threshold() {
    // a may borrow while preempting, stopping other tenants' work only up to priority 50: a's
    // own batch job may go (lower than serving), b's batch jobs (priority 100) may not.
    let policy = PreemptionPolicy { borrow_within_cohort: Some(50), ..PreemptionPolicy::default() };
    let mut q = a_and_b_borrow_and_a_serving_job_arrives(policy);
    let out = q.cycle(NOV1 + 100);
    assert!(out.preempted.is_empty(), "job 1 has not run its minimum runtime");
    assert_eq!(q.next_wakeup(), Some(NOV1 + 600));
    let out = q.cycle(NOV1 + 600);
    assert_eq!(out.preempted, vec![priority(1, 5)]);
    assert_eq!(admitted_ids(&out), vec![5]);
    assert_eq!(running_ids(&q), vec![2, 3, 4, 5]);

    // Another serving job of a: nothing of a is lower, and b's batch work is above the threshold.
    submit(&mut q, WB::new(6, 0).kind(Kind::Serving).gpus(1, 4).at(NOV1 + 700).build(), NOV1 + 700);
    for now in [NOV1 + 700, NOV1 + 5000, NOV1 + 86_400] {
        let out = q.cycle(now);
        assert!(out.preempted.is_empty() && out.admitted.is_empty(), "at {now}: {out:?}");
    }
    assert!(matches!(q.reason(6), Some(Reason::Quota { .. })), "{:?}", q.reason(6));
    assert!(matches!(q.reason(1), Some(Reason::Quota { .. })), "{:?}", q.reason(1));
    assert_consistent(&q);
}

#[test]
fn with_borrowing_while_preempting_allowed_other_tenants_lower_work_goes_first() {
    // Threshold 100: b's batch jobs qualify; other tenants' borrowed work is taken before a's
    // own, newest first, and no reclaim window is waited for (it is priority, not reclaim).
    let policy = PreemptionPolicy { borrow_within_cohort: Some(100), ..PreemptionPolicy::default() };
    let mut q = a_and_b_borrow_and_a_serving_job_arrives(policy);
    let out = q.cycle(NOV1 + 600);
    assert_eq!(out.preempted.iter().map(|p| p.victim).collect::<Vec<_>>(), vec![4]);
    assert_eq!(admitted_ids(&out), vec![5]);
    assert_consistent(&q);
}

/// One tenant `a` (nominal 8) on one 8-GPU node runs a batch job (1, 4 GPUs, submitted at
/// NOV1) and a training job (2, 4 GPUs, submitted at NOV1 + 10); reclaim and minimum runtime
/// are immediate. With `policy`, which of them does a 4-GPU job of `kind` stop, submitted at
/// `at` (before NOV1: as a job that waited long, or was requeued) and looked at at NOV1 + 20?
fn own_victims(policy: PreemptionPolicy, kind: Kind, at: Seconds) -> Vec<u64> {
    let mut t = TenancyBuilder::new(&["A100"]).timing(0, 0).tenant("a", None, &[Q::n(8)]).build();
    t.tenants[0].preemption = policy;
    let mut q = queue(t, a100s(1, 8), NOV1);
    submit(&mut q, WB::new(1, 0).kind(Kind::Batch).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(2, 0).kind(Kind::Training).gpus(1, 4).at(NOV1 + 10).build(), NOV1 + 10);
    assert_eq!(q.cycle(NOV1 + 10).admitted.len(), 2);
    submit(&mut q, WB::new(3, 0).kind(kind).gpus(1, 4).at(at).build(), NOV1 + 20);
    let out = q.cycle(NOV1 + 20);
    assert_consistent(&q);
    out.preempted.iter().map(|p| p.victim).collect()
}

#[test]
fn within_tenant_policy_says_which_of_its_own_jobs_a_job_may_stop() {
    use gantry_core::tenancy::WithinTenant::*;
    let policy = |within_tenant| PreemptionPolicy { within_tenant, ..PreemptionPolicy::default() };
    // (policy, kind of the new job, submitted at, victims)
    let cases = [
        // Lower priority only: training (300) stops the batch job (100), never the training job.
        (LowerPriority, Kind::Training, NOV1 + 20, vec![1]),
        // Serving (1000) stops the lowest first: the batch job is enough.
        (LowerPriority, Kind::Serving, NOV1 + 20, vec![1]),
        (Never, Kind::Serving, NOV1 + 20, vec![]),
        // Batch (100) at equal priority: nothing lower; with LowerOrNewerEqualPriority, the batch
        // job submitted after it could go, but job 1 was submitted before: it stays.
        (LowerOrNewerEqualPriority, Kind::Batch, NOV1 + 20, vec![]),
        // A batch job submitted (say, requeued) before job 1 may stop the newer job 1.
        (LowerOrNewerEqualPriority, Kind::Batch, NOV1 - 60, vec![1]),
        (LowerPriority, Kind::Batch, NOV1 - 60, vec![]),
    ];
    for (within, kind, at, expected) in cases {
        assert_eq!(own_victims(policy(within), kind, at), expected, "{within:?}, {kind:?} at {at}");
    }
}

/// a (nominal 8, with `policy`) and b (nominal 0) in one cohort; reclaim window 60 s, no
/// minimum runtime.
fn a_owed_b_borrows(policy: PreemptionPolicy) -> gantry_core::tenancy::Tenancy {
    let mut t = TenancyBuilder::new(&["A100"])
        .timing(60, 0)
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(8)])
        .tenant("b", Some("pool"), &[Q::n(0)])
        .build();
    t.tenants[0].preemption = policy;
    t
}

/// a (nominal 8) is owed; b (nominal 0) borrows the whole 8-GPU node with a batch job (1) and a
/// serving job (2), 4 GPUs each. a's training job (3, `gpus` GPUs) waits the reclaim window
/// (60 s); what does it stop?
fn reclaim_victims(reclaim_within_cohort: ReclaimWithinCohort, gpus: u32) -> Vec<u64> {
    let t = a_owed_b_borrows(PreemptionPolicy { reclaim_within_cohort, ..PreemptionPolicy::default() });
    let mut q = queue(t, a100s(1, 8), NOV1);
    submit(&mut q, WB::new(1, 1).kind(Kind::Batch).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(2, 1).kind(Kind::Serving).gpus(1, 4).build(), NOV1);
    assert_eq!(q.cycle(NOV1).admitted.len(), 2);
    submit(&mut q, WB::new(3, 0).kind(Kind::Training).gpus(1, gpus).at(NOV1 + 1).build(), NOV1 + 1);
    assert!(q.cycle(NOV1 + 1).preempted.is_empty(), "not before the reclaim window");
    let out = q.cycle(NOV1 + 61);
    assert_consistent(&q);
    let mut victims: Vec<u64> = out.preempted.iter().map(|p| p.victim).collect();
    victims.sort_unstable();
    victims
}

#[test]
fn reclaim_within_cohort_policy_says_which_borrowed_work_an_owed_job_may_stop() {
    use gantry_core::tenancy::ReclaimWithinCohort::*;
    // Any: nominal quota is a promise, so for 8 GPUs both borrowed jobs go, the serving one
    // too; for 4, the lowest priority first. LowerPriority: only the batch job is below
    // training: enough for 4 GPUs, not for 8 (a waits). Never: a waits.
    let none = Vec::<u64>::new();
    let cases = [
        (Any, 8, vec![1, 2]),
        (Any, 4, vec![1]),
        (LowerPriority, 4, vec![1]),
        (LowerPriority, 8, none.clone()),
        (Never, 4, none),
    ];
    for (policy, gpus, expected) in cases {
        assert_eq!(reclaim_victims(policy, gpus), expected, "{policy:?}, {gpus} GPUs");
    }
}

#[test]
fn reclaim_takes_a_borrowers_lower_priority_work_before_its_newer_higher_priority_work() {
    // One 8-GPU node. b (nominal 4) first runs a batch job of 4, then a serving job of 4 on
    // borrowed quota. a (nominal 4) is owed 4: the batch job goes, not the serving job, although
    // the serving job was admitted last (b's borrowed part is its lowest-priority work).
    let t = TenancyBuilder::new(&["A100"])
        .timing(0, 0)
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(4)])
        .tenant("b", Some("pool"), &[Q::n(4)])
        .build();
    let mut q = queue(t, a100s(1, 8), NOV1);
    submit(&mut q, WB::new(1, 1).kind(Kind::Batch).gpus(1, 4).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1]);
    submit(&mut q, WB::new(2, 1).kind(Kind::Serving).gpus(1, 4).at(NOV1 + 10).build(), NOV1 + 10);
    assert_eq!(admitted_ids(&q.cycle(NOV1 + 10)), vec![2]);
    submit(&mut q, WB::new(3, 0).kind(Kind::Training).gpus(1, 4).at(NOV1 + 20).build(), NOV1 + 20);
    let out = q.cycle(NOV1 + 20);
    assert_eq!(out.preempted, vec![reclaim(1, 3)]);
    assert_eq!(running_ids(&q), vec![2, 3]);
    assert_consistent(&q);

    // The batch job, requeued, waits: b is at its nominal quota with the serving job, and a's
    // job, admitted by reclaim, is never taken back by reclaim in its run.
    for now in [NOV1 + 30, NOV1 + 3600] {
        let out = q.cycle(now);
        assert!(out.preempted.is_empty() && out.admitted.is_empty(), "{out:?}");
    }
    assert_consistent(&q);
}

#[test]
fn when_can_preempt_says_whether_reclaim_elsewhere_comes_before_stopping_own_work() {
    use gantry_core::tenancy::WhenCanPreempt::*;
    // Two models, one 8-GPU node each. a has 8 of each; b none. On A100 a runs a batch job of
    // 8; on H100 b borrows all 8. a's serving job (8 GPUs, any model) has waited the window: it
    // can start on A100 by stopping a's own batch job, or on H100 by reclaiming b's job.
    let run = |when_can_preempt| {
        let mut t = TenancyBuilder::new(&["A100", "H100"])
            .timing(0, 0)
            .cohort("pool", None)
            .tenant("a", Some("pool"), &[Q::n(8), Q::n(8)])
            .tenant("b", Some("pool"), &[Q::n(0), Q::n(0)])
            .build();
        t.tenants[0].preemption = PreemptionPolicy { when_can_preempt, ..PreemptionPolicy::default() };
        let mut q = queue(t, cluster(&[("A100", 8), ("H100", 8)]), NOV1);
        let a100 = ModelSet::from_iter([gantry_core::ModelId(0)]);
        let h100 = ModelSet::from_iter([gantry_core::ModelId(1)]);
        submit(&mut q, WB::new(1, 0).kind(Kind::Batch).gpus(1, 8).models(a100).build(), NOV1);
        submit(&mut q, WB::new(2, 1).kind(Kind::Batch).gpus(1, 8).models(h100).build(), NOV1);
        assert_eq!(q.cycle(NOV1).admitted.len(), 2);
        submit(&mut q, WB::new(3, 0).kind(Kind::Serving).gpus(1, 8).at(NOV1 + 1).build(), NOV1 + 1);
        let out = q.cycle(NOV1 + 1);
        assert_consistent(&q);
        out.preempted
    };
    assert_eq!(run(TryNextFlavor), vec![reclaim(2, 3)], "reclaim on H100 before own work on A100");
    assert_eq!(run(Preempt), vec![priority(1, 3)], "the first flavor where anything allowed works");
}

/// The no-loop argument of `queue/preempt.rs` says a workload admitted by reclaim sits below
/// its tenant's nominal in the stack forever after, so its victim can never reclaim it back.
///
/// Here tenant a (nominal 6, running 4) has y (3 GPUs, borrowing, submitted first) and x
/// (2 GPUs, within nominal, submitted later) waiting. x reclaims b's borrowed gang w; in the
/// same cycle y borrows the rest. Both start at the same second, so the stack orders them by id
/// and puts x (the larger id) above y: x now counts as a's borrowed work. When b's nominal job
/// ends, w (now within b's nominal) reclaims x, the workload that preempted it.
#[test]
fn a_reclaimer_is_never_reclaimed_by_its_victim() {
    let t = TenancyBuilder::new(&["A100"])
        .timing(300, 600)
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(6)])
        .tenant("b", Some("pool"), &[Q::n(8)])
        .tenant("c", Some("pool"), &[Q::n(2)])
        .build();
    let mut q = queue(t, a100s(4, 4), NOV1);
    let (a0, bn, w, y, x) = (1, 2, 3, 4, 5);
    submit(&mut q, WB::new(a0, 0).kind(Kind::Serving).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(bn, 1).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(w, 1).gpus(2, 4).build(), NOV1);
    assert_eq!(q.cycle(NOV1).admitted.len(), 3);
    assert_eq!(q.quota().borrowed(1, A100), g(4));

    submit(&mut q, WB::new(y, 0).gpus(1, 3).at(NOV1 + 1).build(), NOV1 + 1);
    assert!(q.cycle(NOV1 + 1).admitted.is_empty());
    submit(&mut q, WB::new(x, 0).gpus(1, 2).at(NOV1 + 700).build(), NOV1 + 700);
    assert!(q.cycle(NOV1 + 700).preempted.is_empty());
    assert_eq!(q.next_wakeup(), Some(NOV1 + 1000));

    let t2 = NOV1 + 1000;
    let out = q.cycle(t2);
    assert_eq!(out.preempted, vec![reclaim(w, x)], "x, within a's nominal, reclaims b's borrowed gang");
    assert_eq!(admitted_ids(&out), vec![x, y], "x first, then y borrows what is left");
    assert_eq!(q.quota().usage(0, A100), g(9));

    // b's nominal job ends: w now fits b's nominal and, after the window, reclaims a's borrowed
    // work. a's borrowed work is y (admitted after x, above a's nominal of 6), not x.
    q.finish(bn, t2 + 100);
    let out = q.cycle(t2 + 100);
    assert!(out.preempted.is_empty(), "a's jobs have not run their minimum runtime");
    let out = q.cycle(t2 + 600);
    assert!(
        !out.preempted.contains(&reclaim(x, w)),
        "w reclaimed x, which had reclaimed w: a preemption loop"
    );
    assert_eq!(out.preempted, vec![reclaim(y, w)]);
    assert_consistent(&q);
}

/// Two 4-GPU nodes. a (nominal 8) runs a serving job (1, 4 GPUs) on one node and a batch job
/// (2, `batch` GPUs) on the other; b (nominal 0) borrows the rest of that node with a batch job
/// (3). a's serving job (4, 4 GPUs) arrives: as a's use stands (4 + `batch`) it does not fit a's
/// nominal quota; once a's batch job stops it does. Reclaim window 60 s, no minimum runtime.
/// Returns the preemptions at the window's end (sorted by victim) and what then runs.
fn own_and_borrowed(policy: PreemptionPolicy, batch: u32) -> (Vec<Preemption>, Vec<u64>) {
    let t = a_owed_b_borrows(policy);
    let mut q = queue(t, a100s(2, 4), NOV1);
    submit(&mut q, WB::new(1, 0).kind(Kind::Serving).gpus(1, 4).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1]);
    submit(&mut q, WB::new(2, 0).kind(Kind::Batch).gpus(1, batch).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![2]);
    if batch < 4 {
        submit(&mut q, WB::new(3, 1).kind(Kind::Batch).gpus(1, 4 - batch).build(), NOV1);
        assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![3]);
    }
    submit(&mut q, WB::new(4, 0).kind(Kind::Serving).gpus(1, 4).at(NOV1 + 1).build(), NOV1 + 1);
    let mut preempted = q.cycle(NOV1 + 1).preempted;
    if batch < 4 {
        assert_eq!(preempted, vec![], "reclaim waits for the window");
    }
    preempted.extend(q.cycle(NOV1 + 61).preempted);
    assert_consistent(&q);
    preempted.sort_by_key(|p| p.victim);
    (preempted, running_ids(&q))
}

#[test]
fn a_tenant_below_nominal_stops_its_own_lower_work_and_reclaims_borrowed_work_together() {
    // a's batch job (2 GPUs) must stop for quota (4 + 2 + 4 > 8), but frees only 2 GPUs; b's
    // borrowed 2 GPUs beside it make the node whole. Neither alone lets the serving job start.
    let (preempted, running) = own_and_borrowed(PreemptionPolicy::default(), 2);
    assert_eq!(preempted, vec![priority(2, 4), reclaim(3, 4)]);
    assert_eq!(running, vec![1, 4]);
}

#[test]
fn combining_own_and_reclaimed_work_follows_the_tenants_policy() {
    use gantry_core::tenancy::ReclaimWithinCohort as R;
    use gantry_core::tenancy::WithinTenant as W;
    let policy = |within_tenant, reclaim_within_cohort| PreemptionPolicy {
        within_tenant,
        reclaim_within_cohort,
        ..PreemptionPolicy::default()
    };
    // (withinTenant, reclaimWithinCohort, victims): both kinds of stop must be allowed; b's job
    // (batch) is below serving, so LowerPriority reclaim allows it.
    let cases = [
        (W::LowerPriority, R::Any, vec![priority(2, 4), reclaim(3, 4)]),
        (W::LowerPriority, R::LowerPriority, vec![priority(2, 4), reclaim(3, 4)]),
        (W::LowerPriority, R::Never, vec![]),
        (W::Never, R::Any, vec![]),
    ];
    for (within, reclaim_policy, expected) in cases {
        let (preempted, _) = own_and_borrowed(policy(within, reclaim_policy), 2);
        assert_eq!(preempted, expected, "{within:?}, {reclaim_policy:?}");
    }
}

#[test]
fn borrowed_work_is_left_alone_when_stopping_the_tenants_own_work_makes_room() {
    // a's batch job takes the whole second node: stopping it is needed for quota and frees the
    // room, so nothing of another tenant is stopped (a minimal victim set).
    let (preempted, running) = own_and_borrowed(PreemptionPolicy::default(), 4);
    assert_eq!(preempted, vec![priority(2, 4)]);
    assert_eq!(running, vec![1, 4]);
}

// ---------------------------------------------------------------------------------------------
// Budgets
// ---------------------------------------------------------------------------------------------

#[test]
fn a_refuse_budget_holds_work_and_refuses_submissions_until_next_month() {
    let t = TenancyBuilder::new(&["A100"])
        .tenant("alpha", None, &[Q::n(8)])
        .budget("alpha", 2, WhenExhausted::Refuse)
        .build();
    let mut q = queue(t, a100s(1, 8), NOV1);
    submit(&mut q, WB::new(1, 0).gpus(1, 2).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1]);
    submit(&mut q, WB::new(2, 0).gpus(1, 8).at(NOV1 + 10).build(), NOV1 + 10);
    q.cycle(NOV1 + 10);
    assert!(matches!(q.reason(2), Some(Reason::Quota { .. })));

    // Two GPUs for an hour: the 2 GPU-hour budget is spent.
    let t1 = NOV1 + 3600;
    q.finish(1, t1);
    assert_eq!(q.ledger().month_gpu_use(0, t1), 2 * 3_600_000);
    assert!(q.cycle(t1).admitted.is_empty());
    assert_eq!(
        q.reason(2),
        Some(&Reason::Budget {
            used_gpu_hours: 2.0,
            budget_gpu_hours: 2.0,
            month: "2026-11".into(),
            resets_at: DEC1
        })
    );
    assert_eq!(q.next_wakeup(), Some(DEC1));
    let e = q.explain(2, t1).unwrap();
    assert_eq!(e.estimated_start, Some(DEC1));
    assert_eq!(
        e.message,
        "held: alpha has used 2.0 of its 2 GPU-hour budget for 2026-11; waits until the budget resets in 29d 23h; position 1 of 1 in alpha's queue; estimated start in 29d 23h"
    );
    let err = q.submit(WB::new(3, 0).gpus(1, 1).at(t1).build(), t1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tenant alpha has used 2.0 of its 2 GPU-hour budget for 2026-11 and its budget refuses new work until the month ends; ask a platform admin to raise the budget"
    );
    // Nothing changes before the month ends.
    assert!(q.cycle(DEC1 - 1).admitted.is_empty());
    // New month: the held job starts and submissions are accepted again.
    let out = q.cycle(DEC1);
    assert_eq!(admitted_ids(&out), vec![2]);
    submit(&mut q, WB::new(3, 0).gpus(1, 1).at(DEC1).build(), DEC1);
    assert_consistent(&q);
}

#[test]
fn an_idle_only_budget_admits_at_the_lowest_priority_and_such_work_is_reclaimable() {
    let t = TenancyBuilder::new(&["A100"])
        .timing(300, 600)
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(2)])
        .tenant("b", Some("pool"), &[Q::n(2)])
        .budget("a", 1, WhenExhausted::IdleOnly)
        .build();
    let mut q = queue(t, a100s(1, 4), NOV1);
    submit(&mut q, WB::new(1, 0).gpus(1, 1).build(), NOV1);
    q.cycle(NOV1);
    assert!(!q.running(1).unwrap().opportunistic);
    let t1 = NOV1 + 3600;
    q.finish(1, t1);
    assert_eq!(q.ledger().month_gpu_use(0, t1), 3_600_000, "one GPU-hour: spent");

    // Accepted (not refused) and admitted, flagged opportunistic (reclaimable by others).
    submit(&mut q, WB::new(2, 0).gpus(1, 1).at(t1).build(), t1);
    submit(&mut q, WB::new(3, 0).gpus(1, 3).at(t1).build(), t1);
    let out = q.cycle(t1);
    assert_eq!(admitted_ids(&out), vec![2, 3]);
    for id in [2, 3] {
        let r = q.running(id).unwrap();
        assert!(r.opportunistic, "job {id}");
    }
    assert_eq!(q.next_wakeup(), Some(DEC1), "the budget resets at the month start");

    // b claims one GPU of its nominal. Job 2 is within a's nominal (1 of 2), but it runs on an
    // exhausted budget, so it is reclaimable; it is the smallest sufficient victim.
    submit(&mut q, WB::new(10, 1).gpus(1, 1).at(t1 + 100).build(), t1 + 100);
    assert!(q.cycle(t1 + 100).preempted.is_empty());
    assert_eq!(q.next_wakeup(), Some(t1 + 400));
    assert!(q.cycle(t1 + 400).preempted.is_empty());
    assert_eq!(q.next_wakeup(), Some(t1 + 600));
    let out = q.cycle(t1 + 600);
    assert_eq!(out.preempted, vec![reclaim(2, 10)]);

    // Work on an exhausted budget never preempts, not even a's own lowest-priority work.
    submit(&mut q, WB::new(4, 0).kind(Kind::Serving).gpus(1, 1).at(t1 + 700).build(), t1 + 700);
    for now in [t1 + 700, t1 + 5000] {
        assert!(q.cycle(now).preempted.is_empty());
    }
    assert!(q.running(3).is_some());
    assert_consistent(&q);
}

/// Work admitted under an exhausted idle-only budget runs at the lowest priority (0) and keeps
/// that priority after the budget resets, while its queue entry keeps its class priority. So
/// when the month turns, a lower-priority job of the same tenant stops it (300 > 0), and once
/// requeued it stops that job back (500 > 300): two workloads taking turns preempting each other,
/// which the no-loop argument of `queue/preempt.rs` rules out.
#[test]
fn work_admitted_on_an_exhausted_budget_is_not_caught_in_a_preemption_loop_after_the_reset() {
    let t = TenancyBuilder::new(&["A100"])
        .timing(0, 600)
        .tenant("a", None, &[Q::n(4)])
        .budget("a", 1, WhenExhausted::IdleOnly)
        .build();
    let mut q = queue(t, a100s(1, 4), NOV1);
    submit(&mut q, WB::new(1, 0).gpus(1, 1).build(), NOV1);
    q.cycle(NOV1);
    let t1 = NOV1 + 3600;
    q.finish(1, t1);
    let (hi, lo) = (2, 3);
    submit(&mut q, WB::new(hi, 0).kind(Kind::PipelineStep).gpus(1, 4).at(t1).build(), t1);
    assert_eq!(admitted_ids(&q.cycle(t1)), vec![hi]);
    assert!(q.running(hi).unwrap().opportunistic);
    submit(&mut q, WB::new(lo, 0).kind(Kind::Training).gpus(1, 4).at(t1 + 1).build(), t1 + 1);
    assert!(q.cycle(t1 + 1).preempted.is_empty(), "work on an exhausted budget never preempts");
    let mut preempted = Vec::new();
    for now in [DEC1, DEC1 + 600, DEC1 + 1200, DEC1 + 1800] {
        preempted.extend(q.cycle(now).preempted);
        assert_consistent(&q);
    }
    let looped = preempted.contains(&priority(hi, lo)) && preempted.contains(&priority(lo, hi));
    assert!(!looped, "hi and lo took turns preempting each other: {preempted:?}");
}

/// The monthly GPU use must count every interval of the month, also one that a meter opened in
/// the previous month and closed after another tenant's first record of the new month.
#[test]
fn monthly_gpu_use_counts_a_meter_that_crossed_the_month_start() {
    let t = TenancyBuilder::new(&["A100"])
        .tenant("a", None, &[Q::n(8)])
        .tenant("b", None, &[Q::n(8)])
        .budget("a", 10, WhenExhausted::Refuse)
        .build();
    let mut q = queue(t, a100s(2, 8), NOV1);
    let nov20 = NOV1 + 19 * 86_400;
    submit(&mut q, WB::new(1, 0).gpus(1, 1).at(nov20).build(), nov20);
    assert_eq!(admitted_ids(&q.cycle(nov20)), vec![1]);
    // b is idle across the month start, then runs a job from Dec 3 to Dec 4.
    let (dec3, dec4, dec5) = (DEC1 + 2 * 86_400, DEC1 + 3 * 86_400, DEC1 + 4 * 86_400);
    submit(&mut q, WB::new(2, 1).gpus(1, 1).at(dec3).build(), dec3);
    assert_eq!(admitted_ids(&q.cycle(dec3)), vec![2]);
    q.finish(2, dec4);
    assert_eq!(q.ledger().month_gpu_use(1, dec4), 86_400_000);
    // a's job (running since Nov 20) used 4 GPU-days in December by Dec 5.
    assert_eq!(q.ledger().month_gpu_use(0, dec5), 4 * 86_400_000);
    q.finish(1, dec5);
    assert_eq!(
        q.ledger().month_gpu_use(0, dec5),
        4 * 86_400_000,
        "closing the meter must not lose December's use"
    );
    // 96 GPU-hours used against a budget of 10: refused.
    assert!(q.submit(WB::new(3, 0).gpus(1, 1).at(dec5).build(), dec5).is_err());
}

// ---------------------------------------------------------------------------------------------
// Explanations and refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn a_gang_that_fits_quota_but_no_nodes_is_explained_as_no_fit() {
    let t = TenancyBuilder::new(&["A100"]).tenant("t", None, &[Q::n(8)]).build();
    let mut q = queue(t, a100s(2, 4), NOV1);
    submit(&mut q, WB::new(1, 0).gpus(2, 3).runtime(3600).build(), NOV1);
    q.cycle(NOV1);
    submit(&mut q, WB::new(2, 0).gpus(1, 2).at(NOV1 + 10).build(), NOV1 + 10);
    q.cycle(NOV1 + 10);
    // Two GPUs are free, one on each node: quota covers the 2-GPU pod, no node holds it. (The
    // detail's wording depends on which check finds it; both name the flavor.)
    let detail = match q.reason(2) {
        Some(Reason::NoFit { flavor, pods, detail }) => {
            assert_eq!((flavor.as_str(), *pods), ("A100", 1));
            assert!(detail.contains("fits nowhere") || detail.contains("A100"), "{detail}");
            detail.clone()
        }
        r => panic!("expected NoFit, got {r:?}"),
    };
    let e = q.explain(2, NOV1 + 10).unwrap();
    assert_eq!((e.position, e.queue_length, e.tenant.as_str()), (1, 1, "t"));
    assert!(
        e.message.starts_with(&format!(
            "quota is available but its 1 pods do not all fit on free A100 nodes now ({detail}); position 1 of 1 in t's queue"
        )),
        "{}",
        e.message
    );
}

#[test]
fn submissions_that_could_never_run_are_refused_with_the_fix() {
    let t = TenancyBuilder::new(&["A100", "H100"])
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(4).borrow(2), Q::n(2).borrow(0)])
        .tenant("b", Some("pool"), &[Q::n(8), Q::n(8)])
        .build();
    let c = cluster(&[("A100", 8), ("A100", 8), ("H100", 4), ("H100", 4)]);
    let mut q = queue(t, c, NOV1);
    let err = q.submit(WB::new(1, 0).name("big").gpus(7, 1).build(), NOV1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "workload big needs 7 but tenant a can hold at most 6 A100 GPUs or 2 H100 GPUs (nominal quota plus borrowing); ask for less or for a larger quota"
    );
    let err = q.submit(WB::new(2, 1).name("huge").gpus(1, 16).build(), NOV1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "workload huge: some of its pods are larger than any node of A100, H100 could hold even when empty; make the pods smaller or accept another GPU model"
    );
    // Limited to H100 (4-GPU nodes), an 8-GPU pod fits nowhere even though A100 nodes could hold it.
    let h100 = ModelSet::from_iter([q.cluster().models.get("H100").unwrap()]);
    let err = q.submit(WB::new(3, 1).name("h8").gpus(1, 8).models(h100).build(), NOV1).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("workload h8: some of its pods are larger than any node of H100 could hold"),
        "{err}"
    );
    // Badly shaped requests are refused with what to change.
    let bad = WB::new(4, 1).name("bad").gpus(2, 1).min(3).build();
    assert!(q.submit(bad, NOV1).unwrap_err().to_string().contains("set it between 1 and 2"));
    let frac = WB::new(5, 1)
        .pods(1, PodRequest { gpu_count: 2, gpu_milli: 500, ..PodRequest::cpu_only(100, 1) })
        .build();
    assert!(q.submit(frac, NOV1).unwrap_err().to_string().contains("only a single GPU can be shared"));
    // A duplicate id is refused; a refused workload was never queued.
    submit(&mut q, WB::new(6, 1).gpus(1, 1).build(), NOV1);
    assert!(q
        .submit(WB::new(6, 1).gpus(1, 1).build(), NOV1)
        .unwrap_err()
        .to_string()
        .contains("already queued or running"));
    assert_eq!(q.pending_count(), 1);
    // Within a's A100 ceiling of 6 (4 nominal + 2 borrowed): accepted.
    submit(&mut q, WB::new(7, 0).gpus(6, 1).build(), NOV1);
    assert_eq!(q.pending_count(), 2);
}

// ---------------------------------------------------------------------------------------------
// FIFO baseline
// ---------------------------------------------------------------------------------------------

#[test]
fn fifo_mode_ignores_quota_priority_and_preemption() {
    let t = TenancyBuilder::new(&["A100"])
        .timing(0, 0)
        .tenant("a", None, &[Q::n(1)])
        .tenant("b", None, &[Q::n(1)])
        .build();
    let mut q = queue_with(t, a100s(1, 8), Mode::Fifo, NOV1);
    assert_eq!(q.mode(), Mode::Fifo);
    // 8 GPUs on a nominal of 1: accepted and run.
    submit(&mut q, WB::new(1, 0).gpus(1, 8).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1]);
    assert_eq!(q.quota().usage(0, A100), g(8));
    assert_consistent(&q);
    // Submission order, not priority: the batch job submitted first starts first, and the serving
    // job never preempts it.
    submit(&mut q, WB::new(2, 1).kind(Kind::Batch).gpus(1, 8).at(NOV1 + 1).build(), NOV1 + 1);
    submit(&mut q, WB::new(3, 0).kind(Kind::Serving).gpus(1, 8).at(NOV1 + 2).build(), NOV1 + 2);
    assert!(q.cycle(NOV1 + 2).admitted.is_empty());
    let e = q.explain(3, NOV1 + 2).unwrap();
    assert_eq!((e.position, e.queue_length), (2, 2), "one queue for all tenants");
    q.finish(1, NOV1 + 10);
    let out = q.cycle(NOV1 + 10);
    assert_eq!(admitted_ids(&out), vec![2]);
    for now in [NOV1 + 20, NOV1 + 86_400] {
        let out = q.cycle(now);
        assert!(out.preempted.is_empty() && out.admitted.is_empty());
    }
    // Pods larger than any node are still refused.
    assert!(q.submit(WB::new(4, 0).gpus(1, 9).build(), NOV1).is_err());
    assert_consistent(&q);
}

// ---------------------------------------------------------------------------------------------
// Placement memo and CPU work
// ---------------------------------------------------------------------------------------------

/// A GPU workload that found no room because CPU-only work held the node's CPUs must start once
/// that work ends: releasing CPU on a node frees room for every flavor whose nodes include it.
#[test]
fn a_gpu_job_blocked_by_cpu_work_starts_when_the_cpu_work_ends() {
    let t = TenancyBuilder::new(&["A100", "cpu"]).tenant("t", None, &[Q::n(8), Q::n(64)]).build();
    let mut q = queue(t, a100s(1, 8), NOV1);
    submit(&mut q, WB::new(1, 0).pods(1, PodRequest::cpu_only(64_000, 1024)).build(), NOV1);
    let out = q.cycle(NOV1);
    assert_eq!(admitted_ids(&out), vec![1]);
    assert_eq!(out.admitted[0].flavor, 1, "CPU-only work takes the cpu flavor");
    submit(&mut q, WB::new(2, 0).gpus(1, 1).at(NOV1 + 1).build(), NOV1 + 1);
    assert!(q.cycle(NOV1 + 1).admitted.is_empty());
    assert!(matches!(q.reason(2), Some(Reason::NoFit { .. })), "{:?}", q.reason(2));
    q.finish(1, NOV1 + 2);
    let out = q.cycle(NOV1 + 2);
    assert_eq!(admitted_ids(&out), vec![2], "the node is empty now; reason: {:?}", q.reason(2));
}

#[test]
fn a_gang_that_may_start_partly_starts_with_as_many_members_as_fit() {
    // 3 nodes of 8; 2 are taken. A gang of 6 × 4 GPUs that may start with 2 starts with 4 (all
    // that fit), not with its minimum of 2.
    let t = TenancyBuilder::new(&["A100"])
        .timing(0, 0)
        .tenant("a", None, &[Q::n(24)])
        .tenant("b", None, &[Q::n(24)])
        .build();
    let mut q = queue(t, a100s(3, 8), NOV1);
    submit(&mut q, WB::new(1, 1).gpus(1, 8).build(), NOV1);
    submit(&mut q, WB::new(2, 1).gpus(1, 8).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)).len(), 2);
    submit(&mut q, WB::new(10, 0).gpus(6, 4).min(2).at(NOV1 + 1).build(), NOV1 + 1);
    let out = q.cycle(NOV1 + 1);
    assert_eq!(
        out.admitted.iter().map(|a| (a.workload, a.members)).collect::<Vec<_>>(),
        vec![(10, 2)],
        "8 free GPUs hold 2 of 4 GPUs each"
    );
    // With 16 free it would have been 4.
    let t = TenancyBuilder::new(&["A100"])
        .timing(0, 0)
        .tenant("a", None, &[Q::n(24)])
        .tenant("b", None, &[Q::n(24)])
        .build();
    let mut q = queue(t, a100s(3, 8), NOV1);
    submit(&mut q, WB::new(1, 1).gpus(1, 8).build(), NOV1);
    q.cycle(NOV1);
    submit(&mut q, WB::new(10, 0).gpus(6, 4).min(2).at(NOV1 + 1).build(), NOV1 + 1);
    let out = q.cycle(NOV1 + 1);
    assert_eq!(out.admitted.iter().map(|a| (a.workload, a.members)).collect::<Vec<_>>(), vec![(10, 4)]);
    assert_consistent(&q);
}
