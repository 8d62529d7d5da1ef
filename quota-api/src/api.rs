//! The REST API (`/api/v1`, JSON; the OpenAPI document at `/openapi.json`, checked in as
//! `quota-api/openapi.json` and tested against [`ROUTES`]).
//!
//! Every `/api/v1` call needs `Authorization: Bearer TOKEN`: without a valid one the answer is
//! 401; asking for a tenant the caller may not see is 403; lists hold only what the caller may
//! see; a workload of a tenant the caller may not see is 404, as a missing one (its owner is not
//! told). Times are unix seconds or RFC 3339, between 1970 and 2200; use is in unit-hours
//! (GPU-hours for GPU flavors), money in the tenancy's currency.
//!
//! **Writers** (`/internal/v1/*`) are authenticated from the `Authorization` header before a byte
//! of the body is read: an unknown caller gets 401 and costs nothing but the header. The
//! scheduler's leader sends accruals and the view; node agents send idle time, each of its own
//! node only ([`crate::auth::Caller`]).
//!
//! **Ledger work never runs on the async workers**: each request's reads or writes run on a
//! blocking thread ([`tokio::task::spawn_blocking`]), taking turns first come, first served, and a
//! batch of accruals is written in chunks of [`crate::import::BATCH`] with other requests'
//! turns in between; every record is bounded ([`crate::ledger`]: times, spans, money), so no
//! turn is long. `/healthz` touches no ledger and answers throughout.
//!
//! **`/metrics`** shows per-tenant series (cost, use, budgets, the queue) only to a token that
//! may read every tenant (a platform admin's). Without a token, or with one that may read only
//! some tenants, it shows aggregates: cost and use per flavor and kind over all tenants
//! (`gantry_cost_total`, `gantry_usage_hours_total`) and the writers' feed
//! (`gantry_quota_api_*`), which is what the chart's alerts read; no tenant's name or cost. A
//! Prometheus that should chart per-tenant cost scrapes with a bearer token of an account bound
//! to the `gantry-quota-admin` ClusterRole.

use crate::auth::{Authenticator, Caller, Refused, Scope};
use crate::import::ImportError;
use crate::ledger::{
    Bucket, Group, Ledger, LedgerError, NotebookStopRecord, Record, Rollup, StopQuery, Stops, Sums, EARLIEST,
    LATEST,
};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use gantry_api::view::View;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Every route, as the OpenAPI document must list it.
pub const ROUTES: [&str; 16] = [
    "/api/v1/tenants",
    "/api/v1/tenants/{tenant}",
    "/api/v1/usage",
    "/api/v1/cost",
    "/api/v1/cost.csv",
    "/api/v1/budgets",
    "/api/v1/queue",
    "/api/v1/workloads/{id}",
    "/api/v1/notebook-stops",
    "/openapi.json",
    "/healthz",
    "/metrics",
    "/internal/v1/accruals",
    "/internal/v1/view",
    "/internal/v1/idle",
    "/internal/v1/notebook-stops",
];

/// The largest accrual batch or view accepted.
pub const INGEST_LIMIT: usize = 16 << 20;

/// The OpenAPI document, as checked in.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The API's state: the latest view of the queue, the ledger, and who may see what.
pub struct Api {
    /// Requests take turns on the ledger in the order they came (tokio's mutex is fair).
    turn: tokio::sync::Mutex<()>,
    /// The view in force, and its tenants' names (what the authenticator checks access to).
    view: RwLock<(Arc<View>, Arc<[String]>)>,
    ledger: Mutex<Ledger>,
    auth: Box<dyn Authenticator>,
    /// Also export the queue's metrics (when no scheduler does: `gantry simulate --serve`).
    queue_metrics: AtomicBool,
    /// What the writers sent, for `/metrics`.
    ingest: Mutex<crate::metrics::Ingest>,
    /// Writers' bodies read and handled at once ([`BODIES`]): memory stays bounded whatever a
    /// compromised writer sends (BENCHMARKS.md, memory).
    bodies: tokio::sync::Semaphore,
}

/// Writers' bodies (up to [`INGEST_LIMIT`] each) read and handled at once; the others wait up to
/// [`BODY_WAIT`], then get 503 and send again (the scheduler and the node agents keep what was
/// not taken).
pub const BODIES: usize = 2;
const BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Api {
    pub fn new(view: View, ledger: Ledger, auth: Box<dyn Authenticator>) -> Arc<Api> {
        Arc::new(Api {
            turn: tokio::sync::Mutex::new(()),
            view: RwLock::new(current(view)),
            ledger: Mutex::new(ledger),
            auth,
            queue_metrics: AtomicBool::new(false),
            ingest: Mutex::default(),
            bodies: tokio::sync::Semaphore::new(BODIES),
        })
    }

    /// Whether `/metrics` also carries quota, use, borrowing and queue lengths (the scheduler's
    /// families), for when no scheduler exports them.
    pub fn export_queue_metrics(&self, on: bool) {
        self.queue_metrics.store(on, Ordering::Relaxed);
    }

    /// Puts a newer view in force.
    pub fn set_view(&self, view: View) {
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = current(view);
    }

    pub fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    fn tenant_names(&self) -> Arc<[String]> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    /// What the writers sent so far.
    fn ingest(&self) -> std::sync::MutexGuard<'_, crate::metrics::Ingest> {
        self.ingest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a write accepted from `source` that added `new` records, now.
    fn wrote(&self, source: &'static str, new: usize) {
        self.ingest().wrote(source, new, jiff::Timestamp::now().as_second());
    }

    /// The ledger, for writers (the accrual feed) and readers alike. It blocks while another
    /// holds it: from async code, use it inside [`tokio::task::spawn_blocking`].
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the ledger on a blocking thread when this request's turn comes, never on the
    /// async workers.
    async fn with_ledger<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Ledger) -> T + Send + 'static,
    ) -> Answer<T> {
        let _turn = self.turn.lock().await;
        let api = self.clone();
        tokio::task::spawn_blocking(move || f(&mut api.ledger()))
            .await
            .map_err(|e| ApiError::Internal(format!("the ledger task failed: {e}")))
    }

    /// Appends `records` in chunks of [`crate::import::BATCH`], each in its own turn; how many
    /// were new.
    async fn append(self: &Arc<Self>, records: Vec<Record>) -> Answer<usize> {
        let mut new = 0;
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<Record> = records.by_ref().take(crate::import::BATCH).collect();
            new += self.with_ledger(move |l| l.append(&chunk)).await?.map_err(ledger_error)?;
        }
        Ok(new)
    }
}

/// A view with its tenants' names, computed once per view rather than per request.
fn current(view: View) -> (Arc<View>, Arc<[String]>) {
    let names: Arc<[String]> = view.tenants.iter().map(|t| t.name.clone()).collect();
    (Arc::new(view), names)
}

/// An answer that is not a success, with a JSON body `{"error": message}`.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized(String),
    Forbidden(String),
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    /// The body is larger than [`INGEST_LIMIT`].
    TooLarge(String),
    /// Too many new tokens to check right now; try again in a second.
    TooMany(String),
    /// Not yet able to answer; the caller should try again later.
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        let body = axum::Json(json!({"error": message, "status": status.as_u16()}));
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer realm=\"gantry\"")], body).into_response()
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            (status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

type Answer<T> = Result<T, ApiError>;

/// The caller, from the bearer token.
async fn who(api: &Api, headers: &HeaderMap) -> Answer<Caller> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(token) = value.and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty())
    else {
        return Err(ApiError::Unauthorized("no bearer token; send Authorization: Bearer TOKEN (a service account token, or one from the token file)".into()));
    };
    let tenants = api.tenant_names();
    api.auth.identify(token, &tenants).await.map_err(|r| match r {
        Refused::Invalid => {
            ApiError::Unauthorized("the bearer token is not valid or has expired; get a new one".into())
        }
        Refused::Busy => ApiError::TooMany(
            "too many new bearer tokens to check at once; send the request again in a second".into(),
        ),
    })
}

/// Tenants the caller asked for (`tenant=`, or all they may see), checked.
fn tenants_asked(view: &View, id: &Caller, asked: Option<&String>) -> Answer<Vec<String>> {
    match asked {
        Some(t) if !id.scope.sees(t) => Err(ApiError::Forbidden(format!(
            "{} may not read tenant {t}; ask a platform admin for access",
            id.user
        ))),
        Some(t) if !view.tenants.iter().any(|x| &x.name == t) => {
            Err(ApiError::NotFound(format!("no tenant {t}")))
        }
        Some(t) => Ok(vec![t.clone()]),
        None => Ok(view.tenants.iter().filter(|t| id.scope.sees(&t.name)).map(|t| t.name.clone()).collect()),
    }
}

/// A time parameter: unix seconds or RFC 3339.
fn time(params: &HashMap<String, String>, key: &str, default: i64) -> Answer<i64> {
    let Some(v) = params.get(key) else { return Ok(default) };
    let t = match v.parse::<i64>() {
        Ok(s) => s,
        Err(_) => v.parse::<jiff::Timestamp>().map(|t| t.as_second()).map_err(|_| {
            ApiError::BadRequest(format!(
                "{key}={v:?} is not a time; give unix seconds or RFC 3339 (2026-11-01T00:00:00Z)"
            ))
        })?,
    };
    if !(EARLIEST..=LATEST).contains(&t) {
        return Err(ApiError::BadRequest(format!("{key}={v:?} is out of range; give a time between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z (unix seconds {EARLIEST} to {LATEST})")));
    }
    Ok(t)
}

/// `from`, `to` (default: the 7 days before the view's time) and `step`.
fn period(view: &View, params: &HashMap<String, String>) -> Answer<(i64, i64, Rollup)> {
    let to = time(params, "to", view.at)?;
    let from = time(params, "from", to - 7 * 86_400)?;
    if from >= to {
        return Err(ApiError::BadRequest(format!("from ({from}) must be before to ({to})")));
    }
    let step = match params.get("step").map(String::as_str) {
        None | Some("hour") => Rollup::Hour,
        Some("day") => Rollup::Day,
        Some(other) => {
            return Err(ApiError::BadRequest(format!("step={other:?} is not a step; use hour or day")))
        }
    };
    Ok((from, to, step))
}

fn hours(milli_seconds: u64) -> f64 {
    milli_seconds as f64 / 3.6e6
}

fn money(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// The rollup rows of `tenants` in `[from, to)`.
fn buckets(ledger: &Ledger, step: Rollup, tenants: &[String], from: i64, to: i64) -> Answer<Vec<Bucket>> {
    let mut out = Vec::new();
    for t in tenants {
        out.extend(
            ledger
                .buckets(step, Some(t), from.div_euclid(step.seconds()) * step.seconds(), to)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        );
    }
    Ok(out)
}

/// Sums per tenant and flavor over `[from, to)` (to the hour): whole days from the daily
/// rollup, the hours before the first and after the last whole day from the hourly one, summed
/// by SQLite. A year of one tenant reads about 400 rows; every tenant is one query per range.
/// `all`: the tenants are every tenant (an admin asking for all), read by time once per range.
fn covering(
    ledger: &Ledger,
    all: bool,
    tenants: &[String],
    from: i64,
    to: i64,
) -> Answer<BTreeMap<(String, String), Sums>> {
    const DAY: i64 = 86_400;
    let from = from.div_euclid(3600) * 3600;
    let (first_day, last_day) = ((from + DAY - 1).div_euclid(DAY) * DAY, to.div_euclid(DAY) * DAY);
    let ranges = if first_day >= last_day {
        vec![(Rollup::Hour, from, to)]
    } else {
        vec![
            (Rollup::Hour, from, first_day),
            (Rollup::Day, first_day, last_day),
            (Rollup::Hour, last_day, to),
        ]
    };
    let mut out: BTreeMap<(String, String), Sums> = BTreeMap::new();
    for (step, a, b) in ranges.into_iter().filter(|(_, a, b)| a < b) {
        let one = |t: Option<&str>| ledger.sums(step, t, a, b).map_err(|e| ApiError::Internal(e.to_string()));
        let rows = if all {
            one(None)?
        } else {
            tenants.iter().map(|t| one(Some(t))).collect::<Answer<Vec<_>>>()?.concat()
        };
        for (tenant, flavor, s) in rows {
            out.entry((tenant, flavor)).or_default().add(&s);
        }
    }
    Ok(out)
}

/// The service's routes over `api`.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/api/v1/tenants", get(tenants))
        .route("/api/v1/tenants/{tenant}", get(tenant))
        .route("/api/v1/usage", get(usage))
        .route("/api/v1/cost", get(cost))
        .route("/api/v1/cost.csv", get(cost_csv))
        .route("/api/v1/budgets", get(budgets))
        .route("/api/v1/queue", get(queue))
        .route("/api/v1/workloads/{id}", get(workload))
        .route("/api/v1/notebook-stops", get(notebook_stops))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/internal/v1/accruals", post(accruals))
        .route("/internal/v1/view", put(put_view))
        .route("/internal/v1/idle", post(idle))
        .route("/internal/v1/notebook-stops", post(post_notebook_stops))
        .merge(crate::dashboard::routes())
        .with_state(api)
}

type Params = Query<HashMap<String, String>>;

async fn tenants(State(api): State<Arc<Api>>, headers: HeaderMap) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    let view = api.view();
    let list: Vec<_> = view.tenants.iter().filter(|t| id.scope.sees(&t.name)).collect();
    Ok(axum::Json(json!({"at": view.at, "flavors": view.flavors, "tenants": list})).into_response())
}

async fn tenant(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    let view = api.view();
    tenants_asked(&view, &id, Some(&name))?;
    let t = view
        .tenants
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {name}")))?;
    Ok(axum::Json(t).into_response())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsagePoint<'a> {
    tenant: &'a str,
    flavor: &'a str,
    at: i64,
    guaranteed_hours: f64,
    borrowed_hours: f64,
    idle_hours: f64,
    /// Money for the guaranteed and borrowed time (idle time is part of them).
    cost: f64,
}

async fn usage(State(api): State<Arc<Api>>, headers: HeaderMap, Query(params): Params) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    let view = api.view();
    let (from, to, step) = period(&view, &params)?;
    let asked = tenants_asked(&view, &id, params.get("tenant"))?;
    let rows = api.with_ledger(move |l| buckets(l, step, &asked, from, to)).await??;
    let points: Vec<UsagePoint> = rows
        .iter()
        .map(|b| UsagePoint {
            tenant: &b.tenant,
            flavor: &b.flavor,
            at: b.at,
            guaranteed_hours: hours(b.sums.guaranteed),
            borrowed_hours: hours(b.sums.borrowed),
            idle_hours: hours(b.sums.idle),
            cost: money(b.sums.guaranteed_cost.saturating_add(b.sums.borrowed_cost)),
        })
        .collect();
    let step = if step == Rollup::Hour { "hour" } else { "day" };
    Ok(axum::Json(json!({"from": from, "to": to, "step": step, "points": points})).into_response())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CostLine {
    tenant: String,
    flavor: String,
    /// With `group`: the run, experiment or pipeline of the line (a run's line names its
    /// experiment and pipeline too); all absent on the line of what no run (or no named one)
    /// was charged.
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    experiment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pipeline: Option<String>,
    guaranteed_hours: f64,
    borrowed_hours: f64,
    idle_hours: f64,
    guaranteed_cost: f64,
    borrowed_cost: f64,
    idle_cost: f64,
    /// Guaranteed plus borrowed: idle time is part of them, shown apart for efficiency.
    total_cost: f64,
}

/// The `group` parameter: how a tenant's cost is split by pipeline run, if at all.
fn group(params: &HashMap<String, String>) -> Answer<Option<Group>> {
    params
        .get("group")
        .map(|g| {
            Group::parse(g).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "group={g:?} is not a grouping; use run, pipeline or experiment"
                ))
            })
        })
        .transpose()
}

/// Sums per tenant, flavor and (with a group) run, pipeline or experiment, sorted; a tenant's
/// use not charged to any run (or to none naming the group) is its line with no name, so each
/// tenant's and flavor's lines add up exactly to its line without a group.
type Split = Vec<(String, String, Option<ChargeNames>, Sums)>;

/// A grouped line's run, experiment and pipeline.
type ChargeNames = (Option<String>, Option<String>, Option<String>);

fn split(
    ledger: &Ledger,
    all: bool,
    tenants: &[String],
    from: i64,
    to: i64,
    group: Option<Group>,
) -> Answer<Split> {
    let totals = covering(ledger, all, tenants, from, to)?;
    let Some(group) = group else {
        return Ok(totals.into_iter().map(|((t, f), s)| (t, f, None, s)).collect());
    };
    // The same hours as `covering`: those starting from the hour of `from` up to `to`.
    let from = from.div_euclid(3600) * 3600;
    let mut charged: BTreeMap<(String, String), Vec<(ChargeNames, Sums)>> = BTreeMap::new();
    // The tenants with use in the period (with `all`, also those no longer in the view).
    let with_use: std::collections::BTreeSet<&String> = totals.keys().map(|(t, _)| t).collect();
    for t in with_use {
        for c in ledger.charged_sums(t, group, from, to).map_err(|e| ApiError::Internal(e.to_string()))? {
            charged
                .entry((t.clone(), c.flavor))
                .or_default()
                .push(((c.run, c.experiment, c.pipeline), c.sums));
        }
    }
    let mut out = Vec::new();
    for ((tenant, flavor), total) in totals {
        let parts = charged.remove(&(tenant.clone(), flavor.clone())).unwrap_or_default();
        let mut rest = total;
        for (_, s) in &parts {
            rest = minus(&rest, s);
        }
        for (names, s) in parts {
            out.push((tenant.clone(), flavor.clone(), Some(names), s));
        }
        if rest != Sums::default() {
            out.push((tenant, flavor, Some((None, None, None)), rest));
        }
    }
    Ok(out)
}

/// `a - b`, each figure at least 0 (the runs' rollup is a part of the tenant's, so it never
/// is more).
fn minus(a: &Sums, b: &Sums) -> Sums {
    Sums {
        guaranteed: a.guaranteed.saturating_sub(b.guaranteed),
        borrowed: a.borrowed.saturating_sub(b.borrowed),
        idle: a.idle.saturating_sub(b.idle),
        guaranteed_cost: a.guaranteed_cost.saturating_sub(b.guaranteed_cost),
        borrowed_cost: a.borrowed_cost.saturating_sub(b.borrowed_cost),
        idle_cost: a.idle_cost.saturating_sub(b.idle_cost),
    }
}

/// Cost lines per tenant and flavor over the period, split by `group=` when asked.
async fn cost_lines(
    api: &Arc<Api>,
    id: &Caller,
    params: &HashMap<String, String>,
) -> Answer<(i64, i64, Option<Group>, Vec<CostLine>)> {
    let view = api.view();
    let (from, to, _) = period(&view, params)?;
    let group = group(params)?;
    let asked = tenants_asked(&view, id, params.get("tenant"))?;
    let all = id.scope == Scope::Admin && asked.len() == view.tenants.len();
    let lines = api
        .with_ledger(move |l| split(l, all, &asked, from, to, group))
        .await??
        .into_iter()
        .map(|(tenant, flavor, names, s)| {
            let (run, experiment, pipeline) = names.unwrap_or_default();
            CostLine {
                tenant,
                flavor,
                run,
                experiment,
                pipeline,
                guaranteed_hours: hours(s.guaranteed),
                borrowed_hours: hours(s.borrowed),
                idle_hours: hours(s.idle),
                guaranteed_cost: money(s.guaranteed_cost),
                borrowed_cost: money(s.borrowed_cost),
                idle_cost: money(s.idle_cost),
                total_cost: money(s.guaranteed_cost.saturating_add(s.borrowed_cost)),
            }
        })
        .collect();
    Ok((from, to, group, lines))
}

async fn cost(State(api): State<Arc<Api>>, headers: HeaderMap, Query(params): Params) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    let (from, to, group, lines) = cost_lines(&api, &id, &params).await?;
    let mut body = json!({"from": from, "to": to, "currency": api.view().currency, "lines": lines});
    if let Some(g) = group {
        body["group"] = json!(g.name());
    }
    Ok(axum::Json(body).into_response())
}

async fn cost_csv(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    let (from, to, group, lines) = cost_lines(&api, &id, &params).await?;
    // The period as RFC 3339 in UTC (`2026-11-30T00:00:00Z`), which spreadsheets and people read;
    // the API's bounds keep both within jiff's range.
    let (from, to) = (rfc3339(from)?, rfc3339(to)?);
    let currency = csv_field(&api.view().currency);
    // With a group, the run's columns follow the flavor (empty where not grouped by, or on the
    // line of what no run was charged); without, the columns are as they always were.
    let mut csv = String::from(if group.is_some() {
        "from,to,tenant,flavor,run,experiment,pipeline,guaranteed_hours,borrowed_hours,idle_hours,guaranteed_cost,borrowed_cost,idle_cost,total_cost,currency\n"
    } else {
        "from,to,tenant,flavor,guaranteed_hours,borrowed_hours,idle_hours,guaranteed_cost,borrowed_cost,idle_cost,total_cost,currency\n"
    });
    for l in lines {
        let names = match group {
            Some(_) => {
                let f = |v: &Option<String>| csv_field(v.as_deref().unwrap_or_default());
                format!("{},{},{},", f(&l.run), f(&l.experiment), f(&l.pipeline))
            }
            None => String::new(),
        };
        csv.push_str(&format!(
            "{from},{to},{},{},{names}{:.3},{:.3},{:.3},{:.2},{:.2},{:.2},{:.2},{currency}\n",
            csv_field(&l.tenant),
            csv_field(&l.flavor),
            l.guaranteed_hours,
            l.borrowed_hours,
            l.idle_hours,
            l.guaranteed_cost,
            l.borrowed_cost,
            l.idle_cost,
            l.total_cost
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"gantry-cost.csv\""),
        ],
        csv,
    )
        .into_response())
}

/// Unix seconds as RFC 3339 in UTC.
fn rfc3339(t: i64) -> Answer<String> {
    jiff::Timestamp::from_second(t)
        .map(|t| t.to_string())
        .map_err(|e| ApiError::Internal(format!("time {t} cannot be written: {e}")))
}

/// A text field of `cost.csv`: quoted per RFC 4180 when it holds a comma, a quote or a line
/// break, and one that a spreadsheet would take for a formula (starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return) is prefixed with a single quote, and quoted.
pub fn csv_field(v: &str) -> String {
    let formula = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let v = if formula { format!("'{v}") } else { v.to_string() };
    if formula || v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

async fn budgets(State(api): State<Arc<Api>>, headers: HeaderMap) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    let view = api.view();
    let list: Vec<_> = view
        .tenants
        .iter()
        .filter(|t| id.scope.sees(&t.name))
        .filter_map(|t| {
            let b = t.budget.as_ref()?;
            let burn = if b.gpu_hours_per_month > 0.0 { b.used_gpu_hours / b.gpu_hours_per_month } else { 0.0 };
            Some(json!({"tenant": t.name, "gpuHoursPerMonth": b.gpu_hours_per_month, "usedGpuHours": b.used_gpu_hours, "burn": burn, "whenExhausted": b.when_exhausted}))
        })
        .collect();
    Ok(axum::Json(json!({"at": view.at, "budgets": list})).into_response())
}

async fn queue(State(api): State<Arc<Api>>, headers: HeaderMap, Query(params): Params) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    let view = api.view();
    let asked = tenants_asked(&view, &id, params.get("tenant"))?;
    let waiting: Vec<_> = view.queue.iter().filter(|w| asked.contains(&w.tenant)).collect();
    let mut body = json!({"at": view.at, "waiting": waiting});
    // The running workloads only when asked (`running=true`): a tenant's page shows its running
    // notebooks, the overview refreshing every tenant's queue has no use for them.
    match params.get("running").map(String::as_str) {
        None | Some("false") => {}
        Some("true") => {
            let running: Vec<_> = view.running.iter().filter(|r| asked.contains(&r.tenant)).collect();
            body["running"] = json!(running);
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!("running={other:?} is not a choice; use true or false")))
        }
    }
    Ok(axum::Json(body).into_response())
}

async fn workload(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(wid): Path<String>,
) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    let view = api.view();
    let n: u64 = wid.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "{wid:?} is not a workload id; ids are whole numbers (see /api/v1/queue)"
        ))
    })?;
    let (tenant, body) = if let Some(w) = view.waiting(n) {
        (w.tenant.clone(), json!({"state": "waiting", "workload": w}))
    } else if let Some(r) = view.running.iter().find(|r| r.id == n) {
        (r.tenant.clone(), json!({"state": "running", "workload": r}))
    } else {
        return Err(ApiError::NotFound(format!("no waiting or running workload {n}")));
    };
    if !id.scope.sees(&tenant) {
        // As for a missing id: the answer must not tell who owns it.
        return Err(ApiError::NotFound(format!("no waiting or running workload {n}")));
    }
    Ok(axum::Json(body).into_response())
}

/// `/metrics`: per-tenant series for a token that may read every tenant, aggregates otherwise
/// (see the module's documentation).
async fn metrics(State(api): State<Arc<Api>>, headers: HeaderMap) -> Answer<Response> {
    let per_tenant = if headers.contains_key(header::AUTHORIZATION) {
        who(&api, &headers).await?.scope == Scope::Admin
    } else {
        false
    };
    let cost = api
        .with_ledger(|l| l.sums(Rollup::Day, None, i64::MIN, i64::MAX))
        .await?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut text =
        crate::metrics::render(&api.view(), &cost, api.queue_metrics.load(Ordering::Relaxed), per_tenant);
    api.ingest().render(&mut text);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

/// The caller, who must be the scheduler's leader (accruals and the view).
async fn writer(api: &Api, headers: &HeaderMap) -> Answer<Caller> {
    let id = who(api, headers).await?;
    if !id.writer {
        return Err(ApiError::Forbidden(format!("{} may not write accruals or the view; only Gantry's scheduler does (create accruals.gantry.dev, with a token for the audience gantry-quota-api)", id.user)));
    }
    Ok(id)
}

/// The body of a writer's request, read only once the caller is known, up to [`INGEST_LIMIT`],
/// with one of the [`BODIES`] permits, held while the body is handled.
async fn body_of(
    api: &Api,
    body: axum::body::Body,
) -> Answer<(tokio::sync::SemaphorePermit<'_>, axum::body::Bytes)> {
    let permit = match tokio::time::timeout(BODY_WAIT, api.bodies.acquire()).await {
        Ok(Ok(p)) => p,
        _ => {
            return Err(ApiError::Unavailable("busy with other writers' batches; send again shortly".into()))
        }
    };
    let bytes = axum::body::to_bytes(body, INGEST_LIMIT).await.map_err(|e| {
        ApiError::TooLarge(format!(
            "the body could not be read within the limit of {} MiB ({e}); send smaller batches",
            INGEST_LIMIT >> 20
        ))
    })?;
    Ok((permit, bytes))
}

/// How a ledger refusal is answered.
fn ledger_error(e: LedgerError) -> ApiError {
    match e {
        e @ (LedgerError::Conflict { .. } | LedgerError::StopConflict { .. }) => {
            ApiError::Conflict(e.to_string())
        }
        e @ (LedgerError::Invalid { .. }
        | LedgerError::CostTooLarge { .. }
        | LedgerError::InvalidStop { .. }
        | LedgerError::StopCostTooLarge { .. }) => ApiError::BadRequest(e.to_string()),
        e => ApiError::Internal(e.to_string()),
    }
}

/// `POST /internal/v1/accruals`: JSON lines of accruals, appended durably before the answer;
/// records already present are skipped, so the sender retries safely.
async fn accruals(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer<Response> {
    writer(&api, &headers).await?;
    let (_permit, body) = body_of(&api, body).await?;
    let records = crate::import::records(body.as_ref()).map_err(|e| match e {
        ImportError::Ledger(e) => ledger_error(e),
        ImportError::Input(m) => ApiError::BadRequest(m),
    })?;
    let read = records.len();
    let new = api.append(records).await?;
    api.wrote("scheduler", new);
    Ok(axum::Json(json!({"read": read, "new": new})).into_response())
}

/// `PUT /internal/v1/view`: the queue as the scheduler's leader sees it now.
async fn put_view(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer<Response> {
    writer(&api, &headers).await?;
    let (_permit, body) = body_of(&api, body).await?;
    let view: View = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("the body is not a view ({e}); send the JSON the scheduler's View has"))
    })?;
    let at = view.at;
    if !(EARLIEST..LATEST).contains(&at) {
        return Err(ApiError::BadRequest(format!("the view's at ({at}) is out of range; send the scheduler's time, between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z")));
    }
    api.set_view(view);
    api.wrote("view", 0);
    Ok(axum::Json(json!({"at": at})).into_response())
}

/// `POST /internal/v1/idle`: a node agent's closed windows of idle-but-allocated time
/// ([`crate::idle`]), charged to tenants with the view in force and appended durably before the
/// answer. Until the scheduler has sent a view with tenants the answer is 503, and the agent
/// keeps the windows and sends them again.
async fn idle(State(api): State<Arc<Api>>, headers: HeaderMap, body: axum::body::Body) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    if !id.idle_writer {
        return Err(ApiError::Forbidden(format!("{} may not send idle time; only Gantry's node agents do (create idlereports.gantry.dev, with a token for the audience gantry-quota-api)", id.user)));
    }
    let Some(own) = id.node.clone() else {
        return Err(ApiError::Forbidden(format!(
            "{}'s token names no node, so it may send no node's idle time; node agents need a pod-bound service account token, which names the node from Kubernetes 1.32",
            id.user
        )));
    };
    let (_permit, body) = body_of(&api, body).await?;
    let report: gantry_api::quota::IdleReport =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("the body is not an idle report ({e}); send {{\"node\": NAME, \"lines\": [...]}} as the node agent does")))?;
    if report.node != own {
        return Err(ApiError::Forbidden(format!(
            "{} may send idle time only for node {own}, the node its token was issued to, not for node {}",
            id.user, report.node
        )));
    }
    let view = api.view();
    if view.tenants.is_empty() {
        return Err(ApiError::Unavailable(
            "no tenants known yet: the scheduler has not sent its view; send the report again later".into(),
        ));
    }
    let (records, skipped) =
        crate::idle::records(&view, &report).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let count = records.len();
    let new = api.append(records).await?;
    api.wrote("node-agent", new);
    api.ingest().skipped(&skipped);
    Ok(axum::Json(json!({"read": report.lines.len(), "records": count, "new": new, "skipped": skipped}))
        .into_response())
}

/// The most notebook stops one `GET /api/v1/notebook-stops` lists (`limit`, default
/// [`STOPS_DEFAULT`]); the count and totals cover every stop of the period whatever the limit.
pub const STOPS_MAX: usize = 1000;
pub const STOPS_DEFAULT: usize = 200;

/// `POST /internal/v1/notebook-stops`: JSON lines of [`NotebookStopRecord`]s from the scheduler's
/// leader, appended durably before the answer, in chunks of [`crate::import::BATCH`] with other
/// requests' turns between. Every line is read and checked before any is written, so a refused
/// body (400 naming the line or field, 409 naming the key) leaves nothing behind; the scheduler
/// drops a refused batch and resends one that failed otherwise, which adds nothing twice.
async fn post_notebook_stops(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    if !id.writer {
        return Err(ApiError::Forbidden(format!("{} may not send notebook stops; only Gantry's scheduler does (create accruals.gantry.dev, with a token for the audience gantry-quota-api)", id.user)));
    }
    let (_permit, body) = body_of(&api, body).await?;
    let mut stops = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let stop: NotebookStopRecord = serde_json::from_slice(line).map_err(|e| {
            ApiError::BadRequest(format!("line {}: not a notebook stop ({e}); expected {{\"tenant\", \"namespace\", \"notebook\", \"flavor\", \"idleSince\", \"at\", \"idle\", \"priceMicros\", \"message\"}}", n + 1))
        })?;
        crate::ledger::check_stop(&stop).map_err(|e| ApiError::BadRequest(format!("line {}: {e}", n + 1)))?;
        stops.push(stop);
    }
    let read = stops.len();
    let mut new = 0;
    let mut stops = stops.into_iter().peekable();
    while stops.peek().is_some() {
        let chunk: Vec<NotebookStopRecord> = stops.by_ref().take(crate::import::BATCH).collect();
        new += api.with_ledger(move |l| l.append_stops(&chunk)).await?.map_err(ledger_error)?;
    }
    api.wrote("notebook-stops", new);
    Ok(axum::Json(json!({"read": read, "new": new})).into_response())
}

/// One notebook stop as `GET /api/v1/notebook-stops` shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StopLine {
    tenant: String,
    namespace: String,
    notebook: String,
    flavor: String,
    idle_since: i64,
    at: i64,
    /// `at - idleSince`.
    idle_seconds: i64,
    idle_gpu_hours: f64,
    /// In the currency: the idle stretch at the tenant's price when it was stopped.
    cost: f64,
    message: String,
}

/// `GET /api/v1/notebook-stops`: the notebooks stopped for idle GPUs in the period, of the
/// tenants asked for (scoped as `/api/v1/cost`), the newest first.
async fn notebook_stops(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Answer<Response> {
    let id = who(&api, &headers).await?;
    let view = api.view();
    let (from, to, _) = period(&view, &params)?;
    let limit = match params.get("limit") {
        None => STOPS_DEFAULT,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=STOPS_MAX).contains(n)).ok_or_else(|| {
            ApiError::BadRequest(format!("limit={v:?} is not a limit; give 1 to {STOPS_MAX}"))
        })?,
    };
    let asked = tenants_asked(&view, &id, params.get("tenant"))?;
    let all = id.scope == Scope::Admin && asked.len() == view.tenants.len();
    let found = api
        .with_ledger(move |l| -> Result<Stops, LedgerError> {
            let one = |tenant: Option<&str>| l.stops(&StopQuery { tenant, from, to, limit });
            if all {
                return one(None);
            }
            // Each tenant's newest `limit`, merged: the newest `limit` of them all.
            let mut out = Stops::default();
            for t in &asked {
                let s = one(Some(t))?;
                out.stops.extend(s.stops);
                out.count = out.count.saturating_add(s.count);
                out.idle = out.idle.saturating_add(s.idle);
                out.cost_micros = out.cost_micros.saturating_add(s.cost_micros);
            }
            out.stops
                .sort_by(|a, b| (b.at, &a.namespace, &a.notebook).cmp(&(a.at, &b.namespace, &b.notebook)));
            out.stops.truncate(limit);
            Ok(out)
        })
        .await?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let stops: Vec<StopLine> = found
        .stops
        .into_iter()
        .map(|s| StopLine {
            idle_seconds: s.at - s.idle_since,
            idle_gpu_hours: hours(s.idle),
            cost: money(s.cost_micros()),
            tenant: s.tenant,
            namespace: s.namespace,
            notebook: s.notebook,
            flavor: s.flavor,
            idle_since: s.idle_since,
            at: s.at,
            message: s.message,
        })
        .collect();
    Ok(axum::Json(json!({
        "from": from,
        "to": to,
        "currency": view.currency,
        "count": found.count,
        "idleGpuHours": hours(found.idle),
        "cost": money(found.cost_micros),
        "truncated": (stops.len() as u64) < found.count,
        "stops": stops,
    }))
    .into_response())
}
