//! Gantry's kube-scheduler extender: filter, prioritize, bind and preempt over the extender v1
//! HTTP protocol, driving `gantry_core`'s placement cycle (the same code `gantry simulate`
//! measures).
//!
//! - [`wire`]: the extender v1 JSON types, exactly as kube-scheduler sends and reads them;
//! - [`pod`]: what Gantry needs from a `v1.Pod`: identity and resource requests;
//! - [`identity`]: which workload (gang) a pod belongs to, from the frameworks' keys;
//! - [`node`]: the node GPU inventory contract (what the node agent publishes on a `v1.Node`);
//! - [`controller`]: the queue controller's decisions as actions (ungate, evict, pending);
//! - [`adapter`]: carrying those actions out against the API server;
//! - [`extender`]: the decisions, over an in-memory node cache;
//! - [`server`]: the HTTP service with health, readiness and Prometheus metrics;
//! - [`runner`]: in a cluster, watchers feeding the caches, leader election, admission cycles;
//! - [`report`]: the leader's accruals and view of the queue, sent to the quota API;
//! - [`tenants`]: Gantry's Tenant, Cohort and GpuFlavor objects as the tenancy (shared with the webhook).
//!
//! Without a cluster (`gantry scheduler --standalone`) the node cache comes from a node list file.

pub mod adapter;
pub mod controller;
pub mod extender;
pub mod identity;
pub mod node;
pub mod pod;
pub mod report;
pub mod runner;
pub mod server;
pub mod tenants;
pub mod wire;
