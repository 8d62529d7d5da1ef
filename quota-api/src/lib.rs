//! Gantry's quota API: quotas, usage, queues, pending reasons and cost per tenant, from a durable
//! ledger.
//!
//! - [`ledger`]: the SQLite cost ledger (WAL, full sync, idempotent accruals, hourly and daily
//!   rollups, retention, versioned migrations);
//! - [`import`]: accruals as JSON lines into the ledger, acknowledged only once on disk.
//!
//! Not built yet: the REST API, access control, the dashboard and metrics (issue 7).

pub mod import;
pub mod ledger;
