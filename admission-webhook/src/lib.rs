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
//! keys come from `gantry-api`, which the queue controller reads with too, so that the webhook
//! tags pods exactly as the controller reads them.
//!
//! Errors at the crate's boundary are typed, one enum per module ([`server::WebhookError`],
//! [`policy::PolicyError`], [`inspect::ScreenError`], [`live::FollowError`],
//! [`selfcert::KeeperError`] and its parts), so that a caller can tell the cases apart and reach
//! the underlying error through `source()`; their messages are the ones the webhook shows and
//! logs.

pub mod inspect;
pub mod live;
pub mod mutate;
pub mod patch;
pub mod policy;
pub mod review;
pub mod selfcert;
pub mod server;
pub mod validate;

pub use policy::AdmissionPolicy;
pub use server::{router, Path, Webhook};
