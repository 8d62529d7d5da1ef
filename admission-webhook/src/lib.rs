//! Gantry's admission webhook (AdmissionReview v1): workload classification, Gantry's scheduling
//! gate on GPU pods, tenant quotas and priorities, and rejections a user can act on.
//!
//! - [`review`]: the AdmissionReview v1 wire format, read leniently and answered exactly;
//! - [`patch`]: the RFC 6902 JSON Patch of a mutation, idempotent by construction;
//! - [`policy`]: tenants, their ceilings and priority classes, computed once from the tenancy;
//! - [`inspect`]: what the handlers read from a pod, the keys Gantry writes, and the screening
//!   of hostile pods;
//! - [`mutate`] and [`validate`]: the two handlers, pure functions of the policy and the request;
//! - [`server`]: the HTTP service (body limit, time budget, health and Prometheus metrics);
//! - [`live`]: in a cluster, the policy kept equal to the Tenant, Cohort and GpuFlavor objects;
//! - [`selfcert`]: without cert-manager, the webhook's own CA and serving certificate, shared by
//!   its replicas through a Secret, put into the webhook configurations' `caBundle` and renewed.
//!
//! Workload identity (`identify`), pod reading (`parse_pod`, `quantity`) and the gate and gang
//! keys come from `gantry-scheduler`, so that the webhook tags pods exactly as the queue
//! controller reads them; they could move to a shared crate that both depend on.

pub mod inspect;
pub mod live;
pub mod mutate;
pub mod patch;
pub mod policy;
pub mod review;
pub mod selfcert;
pub mod server;
pub mod validate;

pub use policy::Policy;
pub use server::{router, Path, Webhook};
