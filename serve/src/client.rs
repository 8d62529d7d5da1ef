//! Calls from one Gantry component to another's internal API (the scheduler's leader and the node
//! agents to the quota API) with a bearer token read again at every call, because the kubelet
//! rotates it.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::PathBuf;
use std::time::Duration;

/// Where Gantry's pods find the token they send to the quota API: a projected service account
/// token for the audience `gantry-quota-api` (charts/gantry mounts it), which the API server
/// refuses for anything else, so one seen on the pod network opens nothing but the quota API.
pub const QUOTA_API_TOKEN_FILE: &str = "/var/run/secrets/gantry/quota-api/token";

/// How long one call may take before it counts as failed (and is retried by the caller).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// The answer's status, when there was an answer.
    pub status: Option<u16>,
    pub message: String,
}

impl CallError {
    /// The other side understood the request and will never take it (400 malformed, 409 conflict
    /// with what it holds, 413 too large, 422 unprocessable): sending it again cannot help, so the
    /// caller should drop it, say so, and go on. Anything else (no answer, 401/403 while RBAC is
    /// being fixed, 5xx, 503 not ready) may pass later.
    pub fn refused(&self) -> bool {
        matches!(self.status, Some(400 | 409 | 413 | 422))
    }
}

/// A plain-HTTP client for one base URL, sending `Authorization: Bearer` from a token file (or
/// a token given once, for a person at a terminal).
pub struct BearerClient {
    base: String,
    token: Token,
    client: Client<HttpConnector, Full<Bytes>>,
}

enum Token {
    File(PathBuf),
    Given(String),
}

impl BearerClient {
    /// `base`: e.g. `http://gantry-quota-api.gantry-system.svc`; `token`: the file holding the
    /// bearer token ([`QUOTA_API_TOKEN_FILE`] in Gantry's pods).
    pub fn new(base: &str, token: PathBuf) -> BearerClient {
        BearerClient::with(base, Token::File(token))
    }

    /// A caller that sends `token` itself.
    pub fn with_token(base: &str, token: &str) -> BearerClient {
        BearerClient::with(base, Token::Given(token.to_string()))
    }

    fn with(base: &str, token: Token) -> BearerClient {
        BearerClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// GETs `path`; the body of a 2xx answer, else an error carrying the status and body.
    pub async fn get(&self, path: &str) -> Result<Bytes, CallError> {
        self.send("GET", path, "application/json", String::new()).await
    }

    /// Sends `body` to `path`; a non-2xx answer is an error carrying the status and body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<(), CallError> {
        self.send(method, path, content_type, body).await.map(|_| ())
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<Bytes, CallError> {
        let url = format!("{}{path}", self.base);
        let failed = |message: String| CallError { status: None, message };
        let token = match &self.token {
            Token::File(file) => std::fs::read_to_string(file)
                .map_err(|e| failed(format!("cannot read the bearer token {}: {e}", file.display())))?,
            Token::Given(token) => token.clone(),
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", token.trim()))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| failed(format!("cannot build the request to {url}: {e}")))?;
        let response = tokio::time::timeout(CALL_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| failed(format!("{url}: no answer within {} s", CALL_TIMEOUT.as_secs())))?
            .map_err(|e| failed(format!("cannot reach {url}: {e}")))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(CallError {
            status: Some(status.as_u16()),
            message: format!("{url} answered {status}: {}", String::from_utf8_lossy(&bytes).trim()),
        })
    }
}
