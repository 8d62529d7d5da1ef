//! The webhook's HTTP service: `POST /mutate` and `POST /validate` (AdmissionReview v1), plus
//! `GET /healthz`, `/readyz` and `/metrics` (Prometheus text format).
//!
//! Safety first: a body above [`BODY_LIMIT`] is refused with 413 before it is read whole; reading
//! the body and deciding share a time budget ([`Webhook::budget`], far under the
//! `timeoutSeconds` of the configurations); a call that runs out of it gets a 503, which the API
//! server handles by `failurePolicy` (mutating: ignore, validating: fail). Deciding runs on the
//! blocking pool for large bodies so that one huge request does not stall the others.
//!
//! Memory is bounded whatever arrives, at any concurrency (the validating webhook fails closed,
//! so an out-of-memory kill would stop pod creation in every tenant namespace):
//!
//! - at most [`LARGE_BODIES`] bodies above [`INLINE_LIMIT`] are read and decided at once, the
//!   permit taken from `Content-Length` *before* the body is read (a body without it counts as
//!   large); the others wait in their sockets within the time budget, then get a 503;
//! - before a body is parsed, one pass without allocating counts its JSON values: more than
//!   [`MAX_VALUES`] (a real 3 MiB pod has a few hundred thousand at most) is refused with 413,
//!   so `[[],[],…]` can never be inflated into a tree tens of times its size.
//!
//! Worst case: `LARGE_BODIES × (BODY_LIMIT + the tree of MAX_VALUES values)` plus the small
//! reviews, measured in BENCHMARKS.md (§ memory).

use crate::inspect::set_namespace;
use crate::policy::AdmissionPolicy;
use crate::review::{decode, reply, Decision};
use crate::{mutate, validate};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The largest body accepted: the API server caps requests at 3 MiB, and an UPDATE review carries
/// the object twice (RELIABILITY.md §0).
pub const BODY_LIMIT: usize = 8 << 20;
/// Bodies above this are decided on the blocking pool, [`LARGE_BODIES`] at a time.
pub const INLINE_LIMIT: usize = 64 << 10;
/// Large bodies read and decided at once.
pub const LARGE_BODIES: usize = 1;
/// The most JSON values (objects, arrays, scalars) a review may hold: etcd stores objects of at
/// most 1.5 MiB, and an UPDATE review carries two; a pod that large holds ~150,000 values.
pub const MAX_VALUES: usize = 400_000;

/// The webhook: its policy, time budget and metrics.
pub struct Webhook {
    /// The policy in force; `None` until the tenant objects have been read (not ready).
    policy: RwLock<Option<Arc<AdmissionPolicy>>>,
    /// Time to read the body and decide; default 1 s (the configurations time out at 2-3 s).
    pub budget: Duration,
    metrics: Metrics,
    /// Permits to read and decide a large body (see the module docs).
    large: tokio::sync::Semaphore,
}

struct Metrics {
    registry: Registry,
    duration: HistogramVec,
    decisions: IntCounterVec,
}

impl Metrics {
    fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gantry_webhook_request_duration_seconds",
                "Time to answer one admission review, by path.",
            )
            .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0]),
            &["path"],
        )?;
        let decisions = IntCounterVec::new(
            Opts::new(
                "gantry_webhook_decisions_total",
                "Admission reviews by path and decision: allowed, patched, denied, bad_request, error.",
            ),
            &["path", "decision"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        Ok(Metrics { registry, duration, decisions })
    }
}

/// Why a [`Webhook`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The Prometheus metrics could not be registered (a name or label set the registry refuses).
    #[error("cannot register the metrics: {source}")]
    Metrics {
        #[source]
        source: prometheus::Error,
    },
}

/// Which handler a review goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Path {
    Mutate,
    Validate,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Mutate => "mutate",
            Path::Validate => "validate",
        }
    }
}

impl Webhook {
    /// A webhook ready with `policy`.
    pub fn new(policy: AdmissionPolicy) -> Result<Webhook, WebhookError> {
        let webhook = Webhook::unready()?;
        webhook.set_policy(policy);
        Ok(webhook)
    }

    /// A webhook with no policy yet: it answers 503 (and `/readyz` fails) until
    /// [`Webhook::set_policy`], so the API server applies the configurations' `failurePolicy`.
    pub fn unready() -> Result<Webhook, WebhookError> {
        let metrics = Metrics::new().map_err(|source| WebhookError::Metrics { source })?;
        Ok(Webhook {
            policy: RwLock::new(None),
            budget: Duration::from_secs(1),
            metrics,
            large: tokio::sync::Semaphore::new(LARGE_BODIES),
        })
    }

    /// Puts `policy` in force for the next request (requests already deciding keep theirs).
    pub fn set_policy(&self, policy: AdmissionPolicy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(policy));
    }

    /// The policy in force, if any.
    pub fn policy(&self) -> Option<Arc<AdmissionPolicy>> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Answers one review body: the HTTP status, the body to send and the decision (the metrics'
    /// label: allowed, patched, denied or bad_request). Never panics on any input.
    pub fn review(&self, path: Path, body: &[u8]) -> (StatusCode, String, &'static str) {
        let _span =
            tracing::debug_span!("admission_review", path = path.name(), bytes = body.len()).entered();
        let Some(policy) = self.policy() else {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook has not read the tenant objects yet; retry shortly".to_string(),
                "error",
            );
        };
        if let Err(n) = gantry_serve::bodies::count_json_values(body, MAX_VALUES) {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body holds more than {n} JSON values; a review of a real pod holds far fewer"),
                "bad_request",
            );
        }
        let mut request = match decode(body) {
            Ok(r) => r,
            Err(e) => {
                return match e.uid {
                    Some(uid) => (
                        StatusCode::OK,
                        reply(&uid, &Decision::bad_request(e.message), false).to_string(),
                        "bad_request",
                    ),
                    None => (StatusCode::BAD_REQUEST, e.message, "bad_request"),
                };
            }
        };
        set_namespace(&mut request.object, &request.namespace);
        let decision = match path {
            Path::Mutate => mutate::mutate(&policy, &request),
            Path::Validate => validate::validate(&policy, &request),
        };
        let label = match (&decision.denial, decision.code) {
            (None, _) if path == Path::Mutate && !decision.patch.is_empty() => "patched",
            (None, _) => "allowed",
            (Some(_), 400) => "bad_request",
            (Some(_), _) => "denied",
        };
        (StatusCode::OK, reply(&request.uid, &decision, path == Path::Mutate).to_string(), label)
    }

    fn count(&self, path: Path, decision: &str) {
        self.metrics.decisions.with_label_values(&[path.name(), decision]).inc();
    }
}

/// The service's routes over a shared [`Webhook`].
pub fn router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(|s: State<Arc<Webhook>>, h: axum::http::HeaderMap, b: Body| handle(s, Path::Mutate, h, b)),
        )
        .route(
            "/validate",
            post(|s: State<Arc<Webhook>>, h: axum::http::HeaderMap, b: Body| handle(s, Path::Validate, h, b)),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(webhook)
}

async fn handle(
    State(webhook): State<Arc<Webhook>>,
    path: Path,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let deadline = start + webhook.budget;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // A large body (or one of unknown size) waits for a permit before it is read.
    let _permit = match length {
        Some(n) if n <= INLINE_LIMIT => None,
        Some(n) if n > BODY_LIMIT => {
            webhook.count(path, "bad_request");
            let text = format!("the body is larger than {BODY_LIMIT} bytes or could not be read\n");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                text,
            )
                .into_response();
        }
        _ => match tokio::time::timeout_at(deadline.into(), webhook.large.acquire()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => {
                webhook.count(path, "error");
                let text = "the webhook is busy with other large reviews; retry\n";
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    text,
                )
                    .into_response();
            }
        },
    };
    let (status, text, decision) =
        match tokio::time::timeout_at(deadline.into(), axum::body::to_bytes(body, BODY_LIMIT)).await {
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the request body did not arrive within the time budget".to_string(),
                "error",
            ),
            Ok(Err(_)) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {BODY_LIMIT} bytes or could not be read"),
                "bad_request",
            ),
            Ok(Ok(bytes)) if bytes.len() <= INLINE_LIMIT => webhook.review(path, &bytes),
            Ok(Ok(bytes)) => {
                let w = webhook.clone();
                let job = tokio::task::spawn_blocking(move || w.review(path, &bytes));
                match tokio::time::timeout_at(deadline.into(), job).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_)) => {
                        (StatusCode::INTERNAL_SERVER_ERROR, "the review failed".to_string(), "error")
                    }
                    Err(_) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the review did not finish within the time budget".to_string(),
                        "error",
                    ),
                }
            }
        };
    webhook.metrics.duration.with_label_values(&[path.name()]).observe(start.elapsed().as_secs_f64());
    webhook.count(path, decision);
    if status == StatusCode::OK {
        ([(header::CONTENT_TYPE, "application/json")], text).into_response()
    } else {
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text + "\n").into_response()
    }
}

async fn readyz(State(webhook): State<Arc<Webhook>>) -> Response {
    match webhook.policy() {
        Some(_) => "ok\n".into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "waiting for the tenant objects\n").into_response(),
    }
}

async fn metrics(State(webhook): State<Arc<Webhook>>) -> Response {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&webhook.metrics.registry.gather(), &mut buf) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render the metrics: {e}\n")).into_response()
        }
    }
}
