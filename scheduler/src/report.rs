//! The leader's report to the quota API (`--quota-api URL`): after each admission cycle, the
//! usage records the queue closed go to `POST /internal/v1/accruals` and the view of the queue to
//! `PUT /internal/v1/view`, with the pod's service account token (the quota API lets writers
//! that may `create accruals.gantry.dev`).
//!
//! Records that could not be sent are kept and sent again with the next ones; the quota API skips
//! those it already has, so a retry after a lost answer counts nothing twice. A new leader starts
//! its meters when it rebuilds the queue, so use is recorded from then on.

use gantry_quota_api::ledger::Record;
use gantry_quota_api::view::View;
use gantry_serve::client::Caller;
use std::path::PathBuf;

/// Records kept while the quota API cannot be reached (a few days of a large cluster); beyond
/// that the oldest are dropped and the loss is logged.
const MAX_PENDING: usize = 1_000_000;

pub struct QuotaReport {
    caller: Caller,
    pending: Vec<Record>,
}

impl QuotaReport {
    /// `url`: the quota API's base, e.g. `http://gantry-quota-api.gantry-system.svc`.
    pub fn new(url: &str, token: PathBuf) -> QuotaReport {
        QuotaReport { caller: Caller::new(url, token), pending: Vec::new() }
    }

    /// Records waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sends what is pending plus `records`, then `view`. On failure the records stay pending.
    pub async fn send(&mut self, view: &View, records: Vec<Record>) -> Result<(), String> {
        self.pending.extend(records);
        if self.pending.len() > MAX_PENDING {
            let dropped = self.pending.len() - MAX_PENDING;
            self.pending.drain(..dropped);
            eprintln!("gantry scheduler: the quota API has been unreachable too long; {dropped} usage records dropped");
        }
        if !self.pending.is_empty() {
            let mut lines = String::with_capacity(self.pending.len() * 160);
            for r in &self.pending {
                lines.push_str(&serde_json::to_string(r).map_err(|e| e.to_string())?);
                lines.push('\n');
            }
            self.caller.call("POST", "/internal/v1/accruals", "application/x-ndjson", lines).await?;
            self.pending.clear();
        }
        let body = serde_json::to_string(view).map_err(|e| e.to_string())?;
        self.caller.call("PUT", "/internal/v1/view", "application/json", body).await
    }
}
