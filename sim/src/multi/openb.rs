//! The openb trace as multi-tenant workloads.
//!
//! The trace has no tenant column, so each pod is given to a tenant by a documented, seeded rule:
//! pods in name order draw one number each from a ChaCha8 stream seeded with the run's seed, and
//! the tenant is chosen with probability proportional to its weight. Each pod is one workload:
//! submitted at `start + creation_time`, running for `deletion_time − creation_time` (pods without
//! a deletion time run to the end of the simulation). The `qos` column gives the kind: `LS`
//! (latency-sensitive) is serving, `BE` (best effort) is batch, `Burstable` and `Guaranteed` are
//! training. `gpu_spec` gives the GPU models the pod accepts.

use super::SimWorkload;
use crate::trace::Trace;
use gantry_core::queue::{PodSet, Workload};
use gantry_core::tenancy::{Kind, Seconds, Tenancy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How long a pod without a deletion time runs: longer than any simulation.
pub const FOREVER: Seconds = 100 * 365 * 86400;

/// The kind of a pod from its `qos` column.
pub fn kind_of_qos(qos: &str) -> Kind {
    match qos {
        "LS" => Kind::Serving,
        "BE" => Kind::Batch,
        _ => Kind::Training,
    }
}

/// The tenancy gives the trace's pods to no one: it has no tenant, or its weights add up to
/// nothing (the draw is proportional to weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the tenants file has no tenant with a positive weight to give the trace's pods to")]
pub struct NoWeightedTenant;

/// The trace's pods as workloads of the tenancy's tenants, sorted by submission time.
pub fn workloads(
    trace: &Trace,
    tenancy: &Tenancy,
    seed: u64,
    start: Seconds,
) -> Result<Vec<SimWorkload>, NoWeightedTenant> {
    let total: f64 = tenancy.tenants.iter().map(|t| t.weight).sum();
    if tenancy.tenants.is_empty() || total.is_nan() || total <= 0.0 {
        return Err(NoWeightedTenant);
    }
    let mut order: Vec<usize> = (0..trace.pods.len()).collect();
    order.sort_by(|&a, &b| trace.pods[a].name.cmp(&trace.pods[b].name));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(order.len());
    for i in order {
        let pod = &trace.pods[i];
        let mut u = rng.gen::<f64>() * total;
        let tenant = tenancy.tenants.iter().position(|t| {
            u -= t.weight;
            u < 0.0
        });
        let tenant = tenant.unwrap_or(tenancy.tenants.len() - 1);
        let created = pod.created.unwrap_or(0) as Seconds;
        let duration = pod.deleted.map_or(FOREVER, |d| (d as Seconds - created).max(1));
        let mut request = pod.request;
        let models = request.allowed_models.take();
        out.push(SimWorkload {
            workload: Workload {
                id: 0,
                name: pod.name.clone(),
                tenant,
                kind: kind_of_qos(&pod.qos),
                priority_class: None,
                pod_sets: vec![PodSet { name: "main".into(), count: 1, request }],
                min_members: 1,
                submitted: start + created,
                models,
                expected_runtime: pod.deleted.map(|_| duration),
                charge: None,
            },
            duration,
            active: Vec::new(),
        });
    }
    out.sort_by(|a, b| {
        a.workload.submitted.cmp(&b.workload.submitted).then(a.workload.name.cmp(&b.workload.name))
    });
    for (i, w) in out.iter_mut().enumerate() {
        w.workload.id = i as u64 + 1;
    }
    Ok(out)
}
