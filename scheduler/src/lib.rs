//! Gantry's kube-scheduler extender: filter, prioritize, bind and preempt over the extender v1
//! HTTP protocol, driving `gantry_core`'s placement cycle (the same code `gantry simulate`
//! measures).
//!
//! - [`wire`]: the extender v1 JSON types, exactly as kube-scheduler sends and reads them;
//! - [`controller`]: the queue controller's decisions as actions (ungate, evict, pending);
//! - [`adapter`]: carrying those actions out against the API server;
//! - [`extender`]: the decisions, over an in-memory node cache;
//! - [`server`]: the HTTP service with health, readiness and Prometheus metrics;
//! - [`lease`]: leader election on a Lease, released on a clean stop;
//! - [`runner`]: in a cluster, watchers feeding the caches, leader election, admission cycles;
//! - [`report`]: the leader's accruals and view of the queue, sent to the quota API;
//!
//! Pods, nodes, workload identity, the keys and the tenant objects are read through the contract
//! crate `gantry_api`, as the admission webhook reads them.
//!
//! Without a cluster (`gantry scheduler --standalone`) the node cache comes from a node list file.

pub mod adapter;
pub mod controller;
pub mod extender;
pub mod lease;
pub mod report;
pub mod runner;
pub mod server;
pub mod wire;
