//! The extender's HTTP service: `POST {prefix}/filter|prioritize|bind|preempt`, plus `GET /healthz`,
//! `/readyz` and `/metrics` (Prometheus text format).
//!
//! Bodies are parsed by hand so that malformed input gets a 400 whose text names the request
//! type and the problem; well-formed requests that Gantry cannot honour get the protocol's own
//! `Error` field. Bodies above [`BODY_LIMIT`] are refused with 413 before they are read whole.

use crate::extender::Extender;
use crate::wire::*;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The largest request body accepted: a full `NodeList` of 5,000 nodes is about 25 MiB.
pub const BODY_LIMIT: usize = 64 << 20;

/// Request metrics of the extender.
pub struct Metrics {
    registry: Registry,
    duration: HistogramVec,
    requests: IntCounterVec,
    nodes: IntGauge,
    gpus: IntGauge,
    gpus_allocated: IntGauge,
}

impl Metrics {
    fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let duration = HistogramVec::new(
            HistogramOpts::new("gantry_extender_request_duration_seconds", "Time to answer one extender call, by verb.")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            &["verb"],
        )?;
        let requests = IntCounterVec::new(Opts::new("gantry_extender_requests_total", "Extender calls by verb and result."), &["verb", "result"])?;
        let nodes = IntGauge::new("gantry_nodes", "Nodes in Gantry's node cache.")?;
        let gpus = IntGauge::new("gantry_gpus", "GPUs in Gantry's node cache.")?;
        let gpus_allocated = IntGauge::new("gantry_gpus_allocated_milli", "Milli-GPUs allocated to pods Gantry bound.")?;
        for c in [Box::new(duration.clone()) as Box<dyn prometheus::core::Collector>, Box::new(requests.clone()), Box::new(nodes.clone()), Box::new(gpus.clone()), Box::new(gpus_allocated.clone())] {
            registry.register(c)?;
        }
        Ok(Metrics { registry, duration, requests, nodes, gpus, gpus_allocated })
    }

    fn observe(&self, verb: &str, started: Instant, ok: bool) {
        self.duration.with_label_values(&[verb]).observe(started.elapsed().as_secs_f64());
        self.requests.with_label_values(&[verb, if ok { "ok" } else { "error" }]).inc();
    }
}

/// What the handlers share.
pub struct AppState {
    pub extender: Mutex<Extender>,
    pub metrics: Metrics,
}

impl AppState {
    fn extender(&self) -> MutexGuard<'_, Extender> {
        // A handler that panicked mid-update would poison the lock; the state it guards is only
        // changed through methods that leave it consistent, so keep serving.
        self.extender.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The service, with the verbs under `prefix` (e.g. `/scheduler`, or empty).
pub fn router(extender: Extender, prefix: &str) -> Result<Router, String> {
    let metrics = Metrics::new().map_err(|e| format!("cannot set up metrics: {e}"))?;
    let state = Arc::new(AppState { extender: Mutex::new(extender), metrics });
    let verbs = Router::new()
        .route("/filter", post(filter))
        .route("/prioritize", post(prioritize))
        .route("/bind", post(bind))
        .route("/preempt", post(preempt));
    let prefix = prefix.trim_end_matches('/');
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text));
    let app = if prefix.is_empty() { app.merge(verbs) } else { app.nest(prefix, verbs) };
    Ok(app.layer(DefaultBodyLimit::max(BODY_LIMIT)).with_state(state))
}

/// One verb: parse the body (400 naming the problem if it is malformed), decide under the lock,
/// count and time the call, reply with JSON. `Err` from the decision is also a 400; decisions
/// that belong in the protocol's `Error` field put it there and report failure through `ok`.
fn answer<A, R: serde::Serialize>(
    s: &AppState,
    verb: &str,
    body: &[u8],
    keys: &[&str],
    what: &str,
    decide: impl FnOnce(&mut Extender, &A) -> Result<R, String>,
    ok: impl FnOnce(&R) -> bool,
) -> Response
where
    A: serde::de::DeserializeOwned,
{
    let started = Instant::now();
    let result = parse::<A>(body, keys, what).and_then(|a| decide(&mut s.extender(), &a));
    s.metrics.observe(verb, started, result.as_ref().is_ok_and(ok));
    match result {
        Ok(r) => Json(r).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn filter(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(&s, "filter", &body, ARGS_KEYS, "ExtenderArgs", |e, a: &ExtenderArgs| Ok(e.filter(a)), |r| r.error.is_empty())
}

async fn prioritize(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(&s, "prioritize", &body, ARGS_KEYS, "ExtenderArgs", |e, a: &ExtenderArgs| e.prioritize(a), |_| true)
}

async fn bind(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(&s, "bind", &body, BINDING_KEYS, "ExtenderBindingArgs", |e, a: &ExtenderBindingArgs| Ok(e.bind(a)), |r| r.error.is_empty())
}

async fn preempt(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(&s, "preempt", &body, PREEMPTION_KEYS, "ExtenderPreemptionArgs", |e, a: &ExtenderPreemptionArgs| e.preempt(a), |_| true)
}

async fn metrics_text(State(s): State<Arc<AppState>>) -> Response {
    {
        let ext = s.extender();
        let c = ext.cluster();
        s.metrics.nodes.set(c.nodes.len() as i64);
        s.metrics.gpus.set(c.nodes.iter().map(|n| n.gpu_count() as i64).sum());
        s.metrics.gpus_allocated.set(c.gpu_allocated() as i64);
    }
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&s.metrics.registry.gather(), &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}")).into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response()
}
