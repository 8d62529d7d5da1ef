//! Gantry's quota API: quotas, usage, queues, pending reasons and cost per tenant, from a durable
//! ledger.
//!
//! - [`ledger`]: the SQLite cost ledger (WAL, full sync, idempotent accruals, hourly and daily
//!   rollups, retention, versioned migrations);
//! - [`import`]: accruals as JSON lines into the ledger, acknowledged only once on disk;
//! - [`idle`]: the node agents' idle-but-allocated GPU time, charged to tenants;
//! - the view of the queue it serves is `gantry_api::view` (the scheduler sends it);
//! - [`auth`]: bearer tokens and what each caller may see; [`kube_auth`]: the same from
//!   TokenReview and SubjectAccessReview in a cluster;
//! - [`api`]: the REST API and its OpenAPI document;
//! - [`dashboard`]: the web page for platform teams, embedded in the binary;
//! - [`metrics`]: Prometheus metrics of cost and budgets (and of the queue without a scheduler).

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod idle;
pub mod import;
pub mod kube_auth;
pub mod ledger;
pub mod metrics;
