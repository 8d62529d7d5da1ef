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
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::PathBuf;
use std::time::Duration;

/// Where a pod finds its service account token (rotated by the kubelet; read at each send).
pub const TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Records kept while the quota API cannot be reached (a few days of a large cluster); beyond
/// that the oldest are dropped and the loss is logged.
const MAX_PENDING: usize = 1_000_000;

pub struct QuotaReport {
    url: String,
    token: PathBuf,
    pending: Vec<Record>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl QuotaReport {
    /// `url`: the quota API's base, e.g. `http://gantry-quota-api.gantry-system.svc`.
    pub fn new(url: &str, token: PathBuf) -> QuotaReport {
        QuotaReport { url: url.trim_end_matches('/').to_string(), token, pending: Vec::new(), client: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// Records waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    async fn call(&self, method: &str, path: &str, content_type: &str, body: String) -> Result<(), String> {
        let token = std::fs::read_to_string(&self.token).map_err(|e| format!("cannot read the service account token {}: {e}", self.token.display()))?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {}", token.trim()))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request to {}{path}: {e}", self.url))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .map_err(|_| format!("{}{path}: no answer within 10 s", self.url))?
            .map_err(|e| format!("cannot reach the quota API at {}{path}: {e}", self.url))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        Err(format!("{}{path} answered {status}: {}", self.url, String::from_utf8_lossy(&bytes).trim()))
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
            self.call("POST", "/internal/v1/accruals", "application/x-ndjson", lines).await?;
            self.pending.clear();
        }
        let body = serde_json::to_string(view).map_err(|e| e.to_string())?;
        self.call("PUT", "/internal/v1/view", "application/json", body).await
    }
}
