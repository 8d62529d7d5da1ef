//! Gantry's scheduling core.
//!
//! Pure code: no Kubernetes, network, async runtime or clock. The simulator (`gantry simulate`)
//! and the live services drive the same types:
//!
//! - [`model`]: nodes, GPUs, pod requests and exact allocation accounting, over a fixed set of
//!   nodes or a live one (nodes added, changed and removed under running pods);
//! - [`frag`]: the FGD paper's measure of GPU fragmentation against an expected workload;
//! - [`policy`]: placement policies behind one trait;
//! - [`schedule`]: the placement cycle (filter, score, select, pick GPUs);
//! - [`tenancy`]: tenants, cohorts, GPU flavors, priority classes and their quotas, from the
//!   tenants file or the custom resources (validated the same way);
//! - [`queue`]: the admission queue over time: quota tree, whole-gang admission, fair share,
//!   preemption and reclaim, the usage ledger and the explanation of every wait;
//! - [`notebooks`]: which idle GPU notebooks give their GPUs back.

pub mod frag;
pub mod model;
pub mod notebooks;
pub mod policy;
pub mod queue;
pub mod schedule;
pub mod tenancy;

pub use frag::{PodMix, TypicalPod};
pub use model::{Cluster, ModelCatalog, ModelId, ModelSet, Node, NodeId, Placement, PodRequest, GPU_MILLI};
pub use policy::{Policy, PolicyKind, Scale, UnknownPolicy};
pub use schedule::{PlaceError, Scheduler, Unschedulable};
