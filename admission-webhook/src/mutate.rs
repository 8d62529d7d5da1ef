//! `POST /mutate`: tag pods of managed namespaces with what they are and whose they are, and
//! hold GPU pods for Gantry's queue.
//!
//! For a pod created in a namespace some tenant owns (other pods, mirror pods and other requests
//! are allowed untouched):
//!
//! - labels `gantry.dev/tenant` (only when absent: a different value is a spoof the validating
//!   webhook refuses, so it is left for it to see) and `gantry.dev/kind` (from the workload
//!   identity, PROTOCOLS.md §3);
//! - annotations `gantry.dev/workload` (the gang key), `gantry.dev/priority-class` (when absent:
//!   the pod's `spec.priorityClassName` if it names one of Gantry's classes, else the tenant's
//!   class for the kind) and `gantry.dev/gang-size` (when absent, from Kueue's
//!   `kueue.x-k8s.io/pod-group-total-count`, or the node count KServe writes on a multi-node
//!   predictor's head and workers, `gantry_api::gang::kserve_multi_node`; the other frameworks'
//!   replica counts are not on the pod: the scheduler reads them from the objects that create
//!   the pods, `gantry_api::gang`);
//! - for pods that ask for `nvidia.com/gpu`, and for every member of a gang (a pod whose
//!   framework defines gangs, or with a gang size above 1: an MPIJob's CPU-only launcher must
//!   start with its GPU workers, never before them), when not already bound (`spec.nodeName`):
//!   the scheduling gate `gantry.dev/admission`, and `spec.schedulerName` when
//!   `--scheduler-name` is set and the pod uses the default scheduler (a pod that chose another
//!   scheduler keeps it). A gang none of whose pods asks for a GPU is released by the queue as
//!   soon as it is whole.
//!
//! The spec's priority is not changed: the API server resolved `priorityClassName` before
//! mutating webhooks run, so Gantry's class is recorded as an annotation the queue reads.
//!
//! Pods that fail screening (see [`crate::inspect::screen`]), and GPU pods in a namespace two
//! tenants claim (see [`crate::inspect::contested`]), are denied here already: the validating
//! webhook would refuse them, and the mutation should not read them further.

use crate::inspect::*;
use crate::patch::Patch;
use crate::policy::AdmissionPolicy;
use crate::review::{Decision, Request};
use gantry_api::identity::identify;
use gantry_api::keys::*;
use gantry_api::pod::{annotation, label};

/// The scheduler the API server fills in when a pod names none.
const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// Decides one mutating review. `request.object` should already carry its namespace (see
/// [`crate::inspect::set_namespace`]).
pub fn mutate(policy: &AdmissionPolicy, request: &Request) -> Decision {
    let tenant = match created_pod(policy, request) {
        Ok(tenant) => tenant,
        Err(answer) => return answer,
    };
    let pod = &request.object;
    let identity = identify(pod);
    let mut labels = vec![(KIND_LABEL, identity.kind.name().to_string())];
    if label(pod, TENANT_LABEL).is_none() {
        labels.push((TENANT_LABEL, policy.tenant_name(tenant).to_string()));
    }
    let mut annotations = vec![(WORKLOAD_ANNOTATION, identity.key.clone())];
    if annotation(pod, PRIORITY_CLASS_ANNOTATION).is_none() {
        let class = match spec_str(pod, "priorityClassName") {
            Some(c) if policy.is_class(c) => c,
            _ => policy.default_class(tenant, identity.kind),
        };
        if !class.is_empty() {
            annotations.push((PRIORITY_CLASS_ANNOTATION, class.to_string()));
        }
    }
    if annotation(pod, GANG_SIZE_ANNOTATION).is_none() {
        let kueue = annotation(pod, KUEUE_TOTAL_COUNT_ANNOTATION).and_then(|n| n.trim().parse::<u32>().ok());
        let declared = kueue.filter(|n| (1..=MAX_GANG).contains(n));
        if let Some(n) = declared.or_else(|| gantry_api::gang::kserve_multi_node(pod)) {
            annotations.push((GANG_SIZE_ANNOTATION, n.to_string()));
        }
    }
    let mut patch = Patch::default();
    patch.set_metadata(pod, "labels", &labels);
    patch.set_metadata(pod, "annotations", &annotations);
    let gang_member = identity.owner.is_some() || gang_size(pod, &annotations).is_some_and(|n| n > 1);
    if (wants_gpu(pod) || gang_member) && spec_str(pod, "nodeName").is_none() {
        patch.add_scheduling_gate(pod, SCHEDULING_GATE);
        if let Some(name) = &policy.scheduler_name {
            if spec_str(pod, "schedulerName").is_none_or(|s| s == DEFAULT_SCHEDULER) {
                patch.set_spec_string(pod, "schedulerName", name);
            }
        }
    }
    Decision { patch: patch.into_ops(), ..Decision::allow() }
}

/// The gang size the pod will carry: its own annotation, or the one this mutation adds.
fn gang_size(pod: &serde_json::Value, adding: &[(&str, String)]) -> Option<u32> {
    let added = adding.iter().find(|(k, _)| *k == GANG_SIZE_ANNOTATION).map(|(_, v)| v.as_str());
    annotation(pod, GANG_SIZE_ANNOTATION).or(added).and_then(|n| n.trim().parse().ok())
}
