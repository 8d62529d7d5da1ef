//! Gantry's contract: what the services agree on, in one crate that depends only on
//! `gantry-core`. No service crate depends on another; they all depend on this.
//!
//! - [`keys`]: every label, annotation, gate, condition and resource name, defined once;
//! - [`crds`]: the Tenant, Cohort and GpuFlavor custom resources and their tenancy;
//! - [`pod`]: a `v1.Pod` read once into a typed [`pod::PodView`] (requests, identity, gate,
//!   placement), with the errors that name the field and the fix;
//! - [`record`]: a pod read once where it arrives into everything the scheduler uses from it,
//!   so that rebuilding the queue reads no object again;
//! - [`identity`]: which workload (gang) a pod belongs to, from the frameworks' keys: one function
//!   that the webhook's annotation and the queue controller's key both come from;
//! - [`gang`]: each framework's gang size, read from the object that creates the pods;
//! - [`charge`]: what a pod's cost is charged to below its tenant (a Kubeflow Pipelines run);
//! - [`node`]: the node GPU inventory contract (what the node agent publishes on a `v1.Node`);
//! - [`placement`]: the record of where the queue planned a pod;
//! - [`watch`] and [`tenants`]: following objects from the API server, and the tenant objects as
//!   the tenancy (the queue controller and the webhook read tenants the same way);
//! - [`quota`] and [`view`]: the quota API's wire types, written by the scheduler and the node
//!   agents.

pub mod charge;
pub mod crds;
pub mod gang;
pub mod identity;
pub mod keys;
pub mod node;
pub mod placement;
pub mod pod;
pub mod quota;
pub mod record;
pub mod tenants;
pub mod view;
pub mod watch;
