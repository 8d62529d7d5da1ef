//! Workloads: gangs of pod sets that are admitted whole.

use super::Refusal;
use crate::model::{ModelSet, PodRequest};
use crate::tenancy::{Kind, Milli, Seconds, TenantId};
use serde::Serialize;

/// Identifies a workload; pods of workload `w` get ids `(w << 16) | member` (see [`pod_id`]).
pub type WorkloadId = u64;

/// The most members one workload may have (pod ids keep 16 bits for the member index).
pub const MAX_MEMBERS: u32 = 1 << 16;

/// The pod ids of the queue's cluster are split in two by their top bit:
///
/// - bit 63 clear: a member of one of the queue's workloads, `(workload << 16) | member`
///   ([`pod_id`]); workload ids are at most [`MAX_WORKLOAD_ID`] (47 bits) so that these never
///   reach bit 63 and no two workloads share a pod id;
/// - bit 63 set: a pod the queue does not manage (CPU pods, pods of unmanaged namespaces, daemon
///   pods), placed with `Queue::place_external` under the caller's id with this bit added.
pub const EXTERNAL_POD_BIT: u64 = 1 << 63;

/// The largest workload id: 64 bits less 16 for the member index and 1 for [`EXTERNAL_POD_BIT`].
pub const MAX_WORKLOAD_ID: WorkloadId = (1 << 47) - 1;

/// The cluster pod id of member `member` of workload `w`.
pub fn pod_id(w: WorkloadId, member: u64) -> u64 {
    (w << 16) | member
}

/// `count` pods with the same request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PodSet {
    pub name: String,
    pub count: u32,
    /// Per pod; its `allowed_models` is ignored (the workload's `models` applies to all pods).
    pub request: PodRequest,
}

/// A unit of admission: all its pods start together or none does.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    pub id: WorkloadId,
    pub name: String,
    pub tenant: TenantId,
    pub kind: Kind,
    /// Index of its priority class; `None`: the tenant's class for its kind.
    pub priority_class: Option<usize>,
    pub pod_sets: Vec<PodSet>,
    /// The gang may start with this many members (the first ones, pod set by pod set) when all of
    /// them do not fit; equal to the member count for a strict gang.
    pub min_members: u32,
    pub submitted: Seconds,
    /// GPU models it accepts; `None`: any model a flavor names.
    pub models: Option<ModelSet>,
    /// What the user declared as its expected run time, used for start estimates only.
    pub expected_runtime: Option<Seconds>,
    /// Whom its cost is charged to below its tenant (a pipeline run); `None`: the tenant only.
    pub charge: Option<Charge>,
}

/// What a workload's cost is charged to below its tenant: the Kubeflow Pipelines run its pods
/// belong to, with the run's experiment and pipeline where the pods name them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Charge {
    pub run: String,
    pub experiment: Option<String>,
    pub pipeline: Option<String>,
}

impl Workload {
    pub fn members(&self) -> u32 {
        self.pod_sets.iter().map(|s| s.count).sum()
    }

    /// Whether it needs GPUs (then it takes a GPU flavor; otherwise the `cpu` flavor).
    pub fn wants_gpu(&self) -> bool {
        self.pod_sets.iter().any(|s| s.count > 0 && s.request.wants_gpu())
    }

    /// The first `n` member requests in pod-set order, largest first for placement.
    pub fn member_requests(&self, n: u32) -> Vec<PodRequest> {
        let mut out: Vec<PodRequest> = self
            .pod_sets
            .iter()
            .flat_map(|s| std::iter::repeat_n(s.request, s.count as usize))
            .take(n as usize)
            .map(|mut r| {
                r.allowed_models = None;
                r
            })
            .collect();
        out.sort_by(|a, b| b.gpu_total().cmp(&a.gpu_total()).then(b.cpu_milli.cmp(&a.cpu_milli)));
        out
    }

    /// Quota taken by `n` members: milli-GPU for a GPU workload, milli-CPU for a CPU-only one.
    pub fn demand(&self, n: u32) -> Milli {
        let gpu = self.wants_gpu();
        // The same members as `member_requests(n)`, summed in pod-set order: no list to build
        // (this runs for every workload looked at in every cycle).
        let mut left = n as u64;
        let mut sum: Milli = 0;
        for s in &self.pod_sets {
            let take = (s.count as u64).min(left);
            left -= take;
            sum += take * if gpu { s.request.gpu_total() } else { s.request.cpu_milli as u64 };
        }
        sum
    }

    /// Checks the shape; the message says what to fix.
    pub fn validate(&self) -> Result<(), Refusal> {
        if self.id > MAX_WORKLOAD_ID {
            return Err(Refusal::Invalid(format!(
                "workload {} has id {}; ids must be at most {MAX_WORKLOAD_ID}",
                self.name, self.id
            )));
        }
        let members = self.members();
        if members == 0 {
            return Err(Refusal::Invalid(format!(
                "workload {} has no pods; give at least one pod set a count above 0",
                self.name
            )));
        }
        if members >= MAX_MEMBERS {
            return Err(Refusal::Invalid(format!(
                "workload {} has {members} pods; at most {} are supported",
                self.name,
                MAX_MEMBERS - 1
            )));
        }
        if self.min_members == 0 || self.min_members > members {
            return Err(Refusal::Invalid(format!(
                "workload {} has min_members {} but {members} pods; set it between 1 and {members}",
                self.name, self.min_members
            )));
        }
        for s in &self.pod_sets {
            s.request
                .validate()
                .map_err(|e| Refusal::Invalid(format!("workload {} pod set {}: {e}", self.name, s.name)))?;
        }
        Ok(())
    }
}
