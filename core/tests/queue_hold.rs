//! While a workload owed its tenant's nominal quota has waited past the reclaim window and still
//! finds no room (its victims are younger than the minimum runtime), capacity freed on its flavor
//! is held against other tenants' borrowing, so the room it needs is not given away again.

mod common;

use common::*;
use gantry_core::queue::{Preemption, Reason};

#[test]
fn freed_capacity_is_held_for_an_overdue_owed_workload() {
    // 2 nodes × 8 A100; a is owed 12, b 4. Best-fit fills node 0 with B1, B2, node 1 with B3, B4;
    // all of b's work but B1 is borrowed.
    let t = TenancyBuilder::new(&["A100"])
        .timing(300, 600)
        .cohort("pool", None)
        .tenant("a", Some("pool"), &[Q::n(12)])
        .tenant("b", Some("pool"), &[Q::n(4)])
        .build();
    let mut q = queue(t, a100s(2, 8), NOV1);
    submit(&mut q, WB::new(1, 1).gpus(1, 4).build(), NOV1);
    submit(&mut q, WB::new(2, 1).gpus(1, 4).build(), NOV1);
    assert_eq!(admitted_ids(&q.cycle(NOV1)), vec![1, 2]);
    let t1 = NOV1 + 200;
    submit(&mut q, WB::new(3, 1).gpus(1, 4).at(t1).build(), t1);
    submit(&mut q, WB::new(4, 1).gpus(1, 4).at(t1).build(), t1);
    assert_eq!(admitted_ids(&q.cycle(t1)), vec![3, 4]);

    // A1 needs a whole node and is within a's nominal quota.
    let t2 = NOV1 + 250;
    submit(&mut q, WB::new(10, 0).gpus(1, 8).at(t2).build(), t2);
    assert!(q.cycle(t2).admitted.is_empty());
    // Past its window (t2 + 300) every borrowed workload of b (B2, B3, B4) is still protected:
    // no room. B2's minimum runtime ends first.
    let out = q.cycle(t2 + 300);
    assert!(out.admitted.is_empty() && out.preempted.is_empty());
    assert_eq!(q.next_wakeup(), Some(NOV1 + 600), "B2's minimum runtime ends");

    // B1 ends and b submits more work, which would borrow the freed half of node 0.
    let t3 = NOV1 + 590;
    q.finish(1, t3);
    submit(&mut q, WB::new(5, 1).gpus(1, 4).at(t3).build(), t3);
    assert!(q.cycle(t3).admitted.is_empty(), "the freed GPUs are held for a's overdue workload");
    assert_eq!(q.reason(5), Some(&Reason::Held { flavor: "A100".into(), for_tenant: "a".into() }));
    let message = q.explain(5, t3).expect("B5 waits").message;
    assert!(message.contains("held for a") && message.contains("reclaim window"), "{message}");

    // With B1 gone, B2 slides below b's nominal quota: only B3 and B4 are borrowed, and they
    // are protected until t1 + 600. Then A1 takes node 1; the hold ends, and node 0's free half
    // goes to b's waiting work that was not stopped in this very cycle: B5 (B3 and B4, back in
    // the queue with their submission times, are not restarted in the cycle that stopped them).
    assert!(q.cycle(NOV1 + 600).admitted.is_empty());
    let out = q.cycle(t1 + 600);
    assert_eq!(
        out.preempted,
        vec![
            Preemption { victim: 3, by: 10, reclaim: true },
            Preemption { victim: 4, by: 10, reclaim: true }
        ]
    );
    assert_eq!(admitted_ids(&out), vec![10, 5]);
    assert!(q.running(3).is_none() && q.running(4).is_none());
    assert_consistent(&q);
}
