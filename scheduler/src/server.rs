//! The extender's HTTP service: `POST {prefix}/filter|prioritize|bind|preempt`, plus `GET /healthz`,
//! `/readyz` and `/metrics` (Prometheus text format).
//!
//! Bodies are parsed by hand so that malformed input gets a 400 whose text names the request
//! type and the problem; well-formed requests that Gantry cannot honour get the protocol's own
//! `Error` field. Bodies above [`BODY_LIMIT`] are refused with 413 before they are read whole.

use crate::controller::Action;
use crate::extender::{Extender, ExtenderError};
use crate::wire::*;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use gantry_core::queue::Queue;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

/// The largest request body accepted: a full `NodeList` of 5,000 nodes is about 25 MiB.
pub const BODY_LIMIT: usize = 64 << 20;
/// Requests with a body above 1 MiB handled at once (a 20,000-node filter by name is ~0.6 MiB).
pub const LARGE_BODIES: usize = 1;

/// The scheduler's metrics: extender calls, the node cache, and (on the leader) the queue.
pub struct Metrics {
    registry: Registry,
    duration: HistogramVec,
    requests: IntCounterVec,
    nodes: IntGauge,
    gpus: IntGauge,
    gpus_allocated: IntGauge,
    /// 1 while this replica holds the Lease and runs the queue.
    pub leader: IntGauge,
    pending: IntGaugeVec,
    running: IntGaugeVec,
    usage: IntGaugeVec,
    nominal: IntGaugeVec,
    borrowed: IntGaugeVec,
    admitted: IntCounterVec,
    evicted: IntCounterVec,
    /// Queue rebuilds from the API server's state, by cause (`start`, `leader`, `relist`,
    /// `tenants`, `eviction`): a rebuild is needed only when state was lost (an eviction refused
    /// leaves a pod running that the queue let go) or which workloads there are changed.
    pub rebuilds: IntCounterVec,
    /// Tenancy changes taken in place (quotas, weights, cohorts, prices): no rebuild.
    pub tenancy_updates: prometheus::IntCounter,
}

impl Metrics {
    fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gantry_extender_request_duration_seconds",
                "Time to answer one extender call, by verb.",
            )
            .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            &["verb"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new("gantry_extender_requests_total", "Extender calls by verb and result."),
            &["verb", "result"],
        )?;
        let nodes = IntGauge::new("gantry_nodes", "Nodes in Gantry's node cache.")?;
        let gpus = IntGauge::new("gantry_gpus", "GPUs in Gantry's node cache.")?;
        let gpus_allocated =
            IntGauge::new("gantry_gpus_allocated_milli", "Milli-GPUs held by pods in Gantry's node cache.")?;
        let leader =
            IntGauge::new("gantry_leader", "1 while this replica holds the Lease and runs the queue.")?;
        let tenant = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["tenant"]);
        let flavor = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["tenant", "flavor"]);
        let pending = tenant(
            "gantry_queue_pending_workloads",
            "Workloads waiting in each tenant's queue (leader only).",
        )?;
        let running =
            tenant("gantry_queue_running_workloads", "Admitted workloads per tenant (leader only).")?;
        let usage = flavor(
            "gantry_tenant_usage_milli",
            "Quota in use per tenant and flavor, in milli-GPU (milli-CPU for cpu).",
        )?;
        let nominal = flavor(
            "gantry_tenant_nominal_milli",
            "Nominal quota per tenant and flavor, in milli-GPU (milli-CPU for cpu).",
        )?;
        let borrowed =
            flavor("gantry_tenant_borrowed_milli", "Quota in use above nominal, borrowed from the cohort.")?;
        let admitted = IntCounterVec::new(
            Opts::new("gantry_admitted_pods_total", "Pods the queue admitted (ungated), per tenant."),
            &["tenant"],
        )?;
        let evicted = IntCounterVec::new(
            Opts::new("gantry_preempted_pods_total", "Pods the queue evicted to make room, per tenant."),
            &["tenant"],
        )?;
        let rebuilds = IntCounterVec::new(
            Opts::new("gantry_queue_rebuilds_total", "Times the queue was rebuilt from the API server's state, by cause (start, leader, relist, tenants, eviction)."),
            &["cause"],
        )?;
        let tenancy_updates = prometheus::IntCounter::new(
            "gantry_tenancy_updates_total",
            "Tenancy changes (quotas, limits, cohorts, weights, prices) taken into the running queue in place.",
        )?;
        let all: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(rebuilds.clone()),
            Box::new(tenancy_updates.clone()),
            Box::new(duration.clone()),
            Box::new(requests.clone()),
            Box::new(nodes.clone()),
            Box::new(gpus.clone()),
            Box::new(gpus_allocated.clone()),
            Box::new(leader.clone()),
            Box::new(pending.clone()),
            Box::new(running.clone()),
            Box::new(usage.clone()),
            Box::new(nominal.clone()),
            Box::new(borrowed.clone()),
            Box::new(admitted.clone()),
            Box::new(evicted.clone()),
        ];
        for c in all {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            duration,
            requests,
            nodes,
            gpus,
            gpus_allocated,
            leader,
            pending,
            running,
            usage,
            nominal,
            borrowed,
            admitted,
            evicted,
            rebuilds,
            tenancy_updates,
        })
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(buf)
    }

    /// After an admission cycle: the queue's state per tenant, and the actions taken.
    pub fn record_cycle(&self, queue: &Queue, actions: &[Action]) {
        let tenancy = &queue.tenancy;
        let mut running = vec![0i64; tenancy.tenants.len()];
        for (w, _) in queue.running_workloads() {
            if let Some(r) = running.get_mut(w.tenant) {
                *r += 1;
            }
        }
        for (t, tenant) in tenancy.tenants.iter().enumerate() {
            self.pending.with_label_values(&[&tenant.name]).set(queue.pending_of(t) as i64);
            self.running.with_label_values(&[&tenant.name]).set(running[t]);
            for (f, flavor) in tenancy.flavors.iter().enumerate() {
                let labels = [tenant.name.as_str(), flavor.name.as_str()];
                self.usage.with_label_values(&labels).set(queue.quota().usage(t, f) as i64);
                self.nominal.with_label_values(&labels).set(queue.quota().nominal(t, f) as i64);
                self.borrowed.with_label_values(&labels).set(queue.quota().borrowed(t, f) as i64);
            }
        }
        for a in actions {
            let (counter, pod) = match a {
                Action::Ungate { pod, .. } => (&self.admitted, pod),
                Action::Evict { pod, .. } => (&self.evicted, pod),
                _ => continue,
            };
            let tenant =
                tenancy.tenant_of_namespace(&pod.namespace).map_or("", |t| tenancy.tenants[t].name.as_str());
            counter.with_label_values(&[tenant]).inc();
        }
    }

    fn observe(&self, verb: &str, started: Instant, ok: bool) {
        self.duration.with_label_values(&[verb]).observe(started.elapsed().as_secs_f64());
        self.requests.with_label_values(&[verb, if ok { "ok" } else { "error" }]).inc();
    }
}

/// What the handlers share.
pub struct AppState {
    /// Shared by filter, prioritize, preempt and metrics; held exclusively by bind and the
    /// watchers' updates (see [`Extender`]).
    pub extender: RwLock<Extender>,
    pub metrics: Metrics,
    /// False until the node cache has been filled (in a cluster: the watchers have listed).
    ready: AtomicBool,
}

impl AppState {
    pub fn new(extender: Extender) -> Result<Arc<AppState>, MetricsError> {
        let metrics = Metrics::new().map_err(MetricsError)?;
        Ok(Arc::new(AppState { extender: RwLock::new(extender), metrics, ready: AtomicBool::new(true) }))
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// The extender, to change it.
    pub fn extender(&self) -> RwLockWriteGuard<'_, Extender> {
        // A handler that panicked mid-update would poison the lock; the state it guards is only
        // changed through methods that leave it consistent, so keep serving.
        self.extender.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The extender, to read it alongside other readers.
    pub fn reader(&self) -> RwLockReadGuard<'_, Extender> {
        self.extender.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The metrics registry could not be set up (a metric registered twice: a bug).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up metrics: {0}")]
pub struct MetricsError(#[source] pub prometheus::Error);

/// The service, with the verbs under `prefix` (e.g. `/scheduler`, or empty).
pub fn router(extender: Extender, prefix: &str) -> Result<Router, MetricsError> {
    Ok(router_for(AppState::new(extender)?, prefix))
}

/// The service over shared state (in a cluster, the watchers feed the same state).
pub fn router_for(state: Arc<AppState>, prefix: &str) -> Router {
    let verbs = Router::new()
        .route("/filter", post(filter))
        .route("/prioritize", post(prioritize))
        .route("/bind", post(bind))
        .route("/preempt", post(preempt));
    let prefix = prefix.trim_end_matches('/');
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text));
    let app = if prefix.is_empty() { app.merge(verbs) } else { app.nest(prefix, verbs) };
    // At most LARGE_BODIES bodies above 1 MiB at once: with BODY_LIMIT each, memory stays
    // bounded at any concurrency (BENCHMARKS.md, memory).
    app.layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(gantry_serve::bodies::LargeBodies::new(
            LARGE_BODIES,
            1 << 20,
            std::time::Duration::from_secs(1),
        ))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the node cache is not filled yet").into_response()
    }
}

/// One verb: parse the body (400 naming the problem if it is malformed), decide (under the lock
/// `decide` takes),
/// count and time the call, reply with JSON. `Err` from the decision is also a 400; decisions
/// that belong in the protocol's `Error` field put it there and report failure through `ok`.
/// The reply may borrow from the parsed request (node names are slices of the body).
fn answer<'a, A, R, E: std::fmt::Display>(
    s: &AppState,
    verb: &str,
    parsed: &'a Result<A, RequestError>,
    decide: impl FnOnce(&'a A) -> Result<R, E>,
    encode: impl FnOnce(&R) -> Result<Vec<u8>, serde_json::Error>,
    ok: impl FnOnce(&R) -> bool,
) -> Response {
    let _span = tracing::debug_span!("extender_request", verb).entered();
    let started = Instant::now();
    let args = match parsed {
        Ok(a) => a,
        Err(e) => {
            s.metrics.observe(verb, started, false);
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    let result = decide(args);
    let response = match &result {
        Ok(r) => match encode(r) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the {verb} reply: {e}"))
                .into_response(),
        },
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    s.metrics.observe(verb, started, result.as_ref().is_ok_and(ok));
    response
}

async fn filter(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(
        &s,
        "filter",
        &ExtenderArgs::parse(&body),
        |a| Ok::<_, ExtenderError>(s.reader().filter(a)),
        |r| Ok(r.to_json()),
        |r| r.error.is_empty(),
    )
}

async fn prioritize(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(
        &s,
        "prioritize",
        &ExtenderArgs::parse(&body),
        |a| s.reader().prioritize(a),
        |r| Ok(priorities_json(r)),
        |_| true,
    )
}

async fn bind(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(
        &s,
        "bind",
        &parse(&body, BINDING_KEYS, "ExtenderBindingArgs"),
        |a: &ExtenderBindingArgs| Ok::<_, ExtenderError>(s.extender().bind(a)),
        serde_json::to_vec,
        |r| r.error.is_empty(),
    )
}

async fn preempt(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(
        &s,
        "preempt",
        &parse(&body, PREEMPTION_KEYS, "ExtenderPreemptionArgs"),
        |a: &ExtenderPreemptionArgs| s.reader().preempt(a),
        serde_json::to_vec,
        |_| true,
    )
}

async fn metrics_text(State(s): State<Arc<AppState>>) -> Response {
    {
        let ext = s.reader();
        let c = ext.cluster();
        s.metrics.nodes.set(c.nodes.iter().enumerate().filter(|&(i, _)| c.in_service(i)).count() as i64);
        s.metrics.gpus.set(c.nodes.iter().map(|n| n.gpu_count() as i64).sum());
        s.metrics.gpus_allocated.set(c.gpu_allocated() as i64);
    }
    match s.metrics.render() {
        Ok(buf) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}")).into_response(),
    }
}
