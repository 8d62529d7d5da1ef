//! Scenario tests of the idle-notebook rule (`gantry_core::notebooks`): which running notebooks
//! are stopped, and why, from the evidence that their GPUs sit idle.

mod common;

use common::*;
use gantry_core::model::ModelSet;
use gantry_core::notebooks::{to_stop, IdleEvidence};
use gantry_core::queue::Queue;
use gantry_core::tenancy::{IdleNotebooks, Kind, Seconds, Tenancy};

const HOUR: Seconds = 3600;

/// Two tenants on one 8-GPU A100 node and one 8-GPU V100 node; `alpha` stops notebooks idle for
/// 2 h when `rule` says so.
fn tenancy(rule: Option<IdleNotebooks>) -> Tenancy {
    let mut t = TenancyBuilder::new(&["A100", "V100"])
        .tenant("alpha", None, &[Q::n(4), Q::n(4)])
        .tenant("beta", None, &[Q::n(8), Q::n(8)])
        .build();
    t.tenants[0].idle_notebooks = rule;
    t
}

fn rule(always: bool) -> Option<IdleNotebooks> {
    Some(IdleNotebooks { stop_after: 2 * HOUR, always })
}

/// `alpha` runs a 1-GPU A100 notebook (id 1), a 1-GPU A100 serving pod (id 2) and a 1-GPU
/// training pod (id 3), all started at NOV1.
fn running(rule: Option<IdleNotebooks>) -> Queue {
    let mut q = queue(tenancy(rule), cluster(&[("A100", 8), ("V100", 8)]), NOV1);
    let a100 = only(&q, "A100");
    let nb = WB::new(1, 0).kind(Kind::Notebook).gpus(1, 1).models(a100).at(NOV1).build();
    let serving = WB::new(2, 0).kind(Kind::Serving).gpus(1, 1).models(a100).at(NOV1).build();
    let training = WB::new(3, 0).kind(Kind::Training).gpus(1, 1).models(a100).at(NOV1).build();
    for w in [nb, serving, training] {
        submit(&mut q, w, NOV1);
    }
    q.cycle(NOV1);
    assert_eq!(running_ids(&q), vec![1, 2, 3]);
    q
}

fn only(q: &Queue, name: &str) -> ModelSet {
    let mut set = ModelSet::default();
    set.insert(q.cluster().models.get(name).expect("model in the cluster"));
    set
}

fn idle_since(ids: &[u64], t: Seconds) -> Vec<IdleEvidence> {
    ids.iter().map(|&workload| IdleEvidence { workload, idle_since: t }).collect()
}

/// `beta` submits a workload wanting 8 A100 GPUs (id 10): it waits, as the A100 node is busy.
fn beta_waits_for(q: &mut Queue, model: &str, at: Seconds) {
    let m = only(q, model);
    submit(q, WB::new(10, 1).kind(Kind::Training).gpus(1, 8).models(m).at(at).build(), at);
    q.cycle(at);
    assert!(q.pending_ids().any(|id| id == 10), "the 8-GPU workload waits");
}

#[test]
fn a_notebook_idle_past_its_tenants_limit_is_stopped_when_work_waits_for_its_gpus() {
    let mut q = running(rule(false));
    let now = NOV1 + 3 * HOUR;
    beta_waits_for(&mut q, "A100", now);
    let stops = to_stop(&q, &idle_since(&[1, 2, 3], NOV1 + 30 * 60), now);
    assert_eq!(stops.len(), 1, "only the notebook, never serving or training");
    let s = &stops[0];
    assert_eq!((s.workload, s.tenant, s.demand, s.gives_way_to), (1, 0, 1000, Some(10)));
    // 1 GPU idle for 2 h 30 m.
    assert_eq!(s.idle_milli_gpu_seconds, 1000 * (2 * HOUR + 30 * 60) as u64);
    assert!(s.message.contains("idle for 2h 30m"), "{}", s.message);
    assert!(s.message.contains("waits for A100 GPUs"), "{}", s.message);
}

#[test]
fn a_notebook_idle_for_less_than_the_limit_keeps_running() {
    let mut q = running(rule(false));
    let now = NOV1 + 3 * HOUR;
    beta_waits_for(&mut q, "A100", now);
    assert!(to_stop(&q, &idle_since(&[1], now - 2 * HOUR + 1), now).is_empty());
    assert_eq!(to_stop(&q, &idle_since(&[1], now - 2 * HOUR), now).len(), 1, "the limit is inclusive");
}

#[test]
fn with_work_waits_a_notebook_is_kept_while_nothing_waits_for_its_model() {
    let mut q = running(rule(false));
    let now = NOV1 + 3 * HOUR;
    assert!(to_stop(&q, &idle_since(&[1], NOV1), now).is_empty(), "nothing waits");
    // Work waiting for V100s does not need the notebook's A100.
    for id in 20..=21 {
        let m = only(&q, "V100");
        submit(&mut q, WB::new(id, 1).gpus(1, 8).models(m).at(now).build(), now);
    }
    q.cycle(now);
    assert!(q.pending_ids().count() == 1, "one V100 workload waits");
    assert!(to_stop(&q, &idle_since(&[1], NOV1), now).is_empty());
}

#[test]
fn with_always_a_notebook_is_stopped_even_when_nothing_waits() {
    let q = running(rule(true));
    let stops = to_stop(&q, &idle_since(&[1], NOV1), NOV1 + 2 * HOUR);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].gives_way_to, None);
    assert!(stops[0].message.contains("even when nothing waits"), "{}", stops[0].message);
}

#[test]
fn a_tenant_without_the_rule_never_has_notebooks_stopped() {
    let mut q = running(None);
    let now = NOV1 + 30 * HOUR;
    beta_waits_for(&mut q, "A100", now);
    assert!(to_stop(&q, &idle_since(&[1, 2, 3], NOV1), now).is_empty());
}

#[test]
fn serving_is_never_stopped_for_idleness_even_under_always() {
    let q = running(rule(true));
    assert!(to_stop(&q, &idle_since(&[2, 3], NOV1), NOV1 + 30 * HOUR).is_empty());
}

#[test]
fn evidence_for_a_workload_that_is_not_running_is_ignored() {
    let mut q = running(rule(true));
    q.finish(1, NOV1 + HOUR);
    assert!(to_stop(&q, &idle_since(&[1, 99], NOV1), NOV1 + 30 * HOUR).is_empty());
}

#[test]
fn work_that_waits_for_its_own_tenants_quota_elsewhere_does_not_stop_a_notebook() {
    // beta may hold 1 A100 and runs one; its second waits for its own quota, which alpha's
    // notebook does not hold (no cohort): stopping the notebook would not start it.
    let mut t = TenancyBuilder::new(&["A100", "V100"])
        .tenant("alpha", None, &[Q::n(4), Q::n(4)])
        .tenant("beta", None, &[Q::n(1), Q::n(8)])
        .build();
    t.tenants[0].idle_notebooks = rule(false);
    let mut q = queue(t, cluster(&[("A100", 8), ("V100", 8)]), NOV1);
    let a100 = only(&q, "A100");
    submit(&mut q, WB::new(1, 0).kind(Kind::Notebook).gpus(1, 1).models(a100).at(NOV1).build(), NOV1);
    for id in [10, 11] {
        submit(&mut q, WB::new(id, 1).gpus(1, 1).models(a100).at(NOV1 + id as i64).build(), NOV1 + id as i64);
    }
    q.cycle(NOV1 + 20);
    assert_eq!(q.pending_ids().collect::<Vec<_>>(), vec![11], "beta's second waits");
    assert!(matches!(q.reason(11), Some(gantry_core::queue::Reason::Quota { .. })), "{:?}", q.reason(11));
    assert!(to_stop(&q, &idle_since(&[1], NOV1), NOV1 + 5 * HOUR).is_empty());
    // The same wait in alpha itself: the stop frees alpha's own quota.
    submit(&mut q, WB::new(20, 0).gpus(1, 4).models(a100).at(NOV1 + 5 * HOUR).build(), NOV1 + 5 * HOUR);
    q.cycle(NOV1 + 5 * HOUR);
    assert!(matches!(q.reason(20), Some(gantry_core::queue::Reason::Quota { .. })), "{:?}", q.reason(20));
    let stops = to_stop(&q, &idle_since(&[1], NOV1), NOV1 + 5 * HOUR);
    assert_eq!(stops.iter().map(|s| s.gives_way_to).collect::<Vec<_>>(), vec![Some(20)]);
}
