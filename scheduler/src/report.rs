//! The leader's report to the quota API (`--quota-api URL`): after each admission cycle, the
//! usage records the queue closed go to `POST /internal/v1/accruals` and the view of the queue to
//! `PUT /internal/v1/view`, with the pod's service account token (the quota API lets writers
//! that may `create accruals.gantry.dev`).
//!
//! Records that could not be sent are kept and sent again with the next ones; the quota API skips
//! those it already has, so a retry after a lost answer counts nothing twice. A new leader starts
//! its meters when it rebuilds the queue, so use is recorded from then on.

use gantry_api::quota::{NotebookStopRecord, Record};
use gantry_api::view::View;
use gantry_serve::client::{BearerClient, CallError};
use std::path::PathBuf;

/// Records kept while the quota API cannot be reached (a few days of a large cluster); beyond
/// that the oldest are dropped and the loss is logged.
const MAX_PENDING: usize = 1_000_000;

/// Why a report did not (all) arrive. What was not sent stays pending unless the message says
/// it was dropped.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The call failed (the quota API is unreachable, or answered an error).
    #[error("{}", .0.message)]
    Call(#[source] CallError),
    /// The quota API refused records for good; they were dropped (`what`: usage records or
    /// notebook stops).
    #[error("the quota API refused {count} {what}, dropped: {why}")]
    Refused { count: usize, what: &'static str, why: String },
    #[error("cannot write {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

pub struct QuotaReport {
    caller: BearerClient,
    pending: Vec<Record>,
    /// Notebook stops not yet sent (a handful a day: kept until sent, bounded like records).
    stops: Vec<NotebookStopRecord>,
}

impl QuotaReport {
    /// `url`: the quota API's base, e.g. `http://gantry-quota-api.gantry-system.svc`.
    pub fn new(url: &str, token: PathBuf) -> QuotaReport {
        QuotaReport { caller: BearerClient::new(url, token), pending: Vec::new(), stops: Vec::new() }
    }

    /// Records waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sends what is pending plus `records`, then `view`. On failure the records stay pending.
    /// When the quota API refuses the batch for good (a record the ledger holds with other
    /// figures, a malformed one), the records are sent one by one and only those refused are
    /// dropped, with an error that says how many: one bad record must neither block every later
    /// one nor take the others with it.
    pub async fn send(&mut self, view: &View, records: Vec<Record>) -> Result<(), ReportError> {
        self.pending.extend(records);
        if self.pending.len() > MAX_PENDING {
            let dropped = self.pending.len() - MAX_PENDING;
            self.pending.drain(..dropped);
            tracing::warn!("the quota API has been unreachable too long; {dropped} usage records dropped");
        }
        if !self.pending.is_empty() {
            match self.post(&self.pending).await {
                Ok(()) => self.pending.clear(),
                Err(e) if e.refused() => self.one_by_one().await?,
                Err(e) => return Err(ReportError::Call(e)),
            }
        }
        let body =
            serde_json::to_string(view).map_err(|source| ReportError::Encode { what: "the view", source })?;
        self.caller
            .call("PUT", "/internal/v1/view", "application/json", body)
            .await
            .map_err(ReportError::Call)
    }

    /// Sends the notebook stops pending plus `stops` to `POST /internal/v1/notebook-stops`; on
    /// failure they stay pending (the quota API keeps one line per notebook and second, so a
    /// retry after a lost answer adds nothing). A batch refused for good is dropped and said.
    pub async fn send_notebook_stops(&mut self, stops: Vec<NotebookStopRecord>) -> Result<(), ReportError> {
        self.stops.extend(stops);
        if self.stops.len() > MAX_PENDING {
            let dropped = self.stops.len() - MAX_PENDING;
            self.stops.drain(..dropped);
        }
        if self.stops.is_empty() {
            return Ok(());
        }
        let mut lines = String::new();
        for s in &self.stops {
            lines.push_str(
                &serde_json::to_string(s)
                    .map_err(|source| ReportError::Encode { what: "a notebook stop", source })?,
            );
            lines.push('\n');
        }
        match self.caller.call("POST", "/internal/v1/notebook-stops", "application/x-ndjson", lines).await {
            Ok(()) => {
                self.stops.clear();
                Ok(())
            }
            Err(e) if e.refused() => {
                let count = std::mem::take(&mut self.stops).len();
                Err(ReportError::Refused { count, what: "notebook stops", why: e.message })
            }
            Err(e) => Err(ReportError::Call(e)),
        }
    }

    async fn post(&self, records: &[Record]) -> Result<(), CallError> {
        let mut lines = String::with_capacity(records.len() * 160);
        for r in records {
            let line = serde_json::to_string(r).map_err(|e| CallError {
                status: None,
                message: format!("cannot write a usage record: {e}"),
            })?;
            lines.push_str(&line);
            lines.push('\n');
        }
        self.caller.call("POST", "/internal/v1/accruals", "application/x-ndjson", lines).await
    }

    /// The pending records one at a time after a refused batch; those refused are dropped.
    async fn one_by_one(&mut self) -> Result<(), ReportError> {
        let batch = std::mem::take(&mut self.pending);
        let (mut refused, mut why) = (0usize, String::new());
        for (i, r) in batch.iter().enumerate() {
            match self.post(std::slice::from_ref(r)).await {
                Ok(()) => {}
                Err(e) if e.refused() => {
                    refused += 1;
                    if why.is_empty() {
                        why = e.message;
                    }
                }
                Err(e) => {
                    self.pending = batch[i..].to_vec();
                    return Err(ReportError::Call(e));
                }
            }
        }
        match refused {
            0 => Ok(()),
            count => Err(ReportError::Refused { count, what: "usage records", why }),
        }
    }
}
