//! Helpers shared by the quota API's tests: a queue over one 8-GPU A100 node, a workload of it,
//! and one request through the router.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::queue::{Mode, PodSet, Queue, Workload};
use gantry_core::tenancy::{file, Kind};
use gantry_core::{PolicyKind, Scheduler};
use gantry_quota_api::api::{router, Api};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

/// 2026-12-01T00:00:00Z.
pub const T0: i64 = 1_796_083_200;

/// Two teams in one cohort, 3 and 4 A100 of quota, priced 2.00 EUR per GPU-hour.
pub const TWO_TEAMS: &str = "
currency: EUR
flavors:
  - {name: A100, price: 2.00}
cohorts:
  - name: all
tenants:
  - name: team-a
    namespaces: [team-a]
    cohort: all
    quotas: {A100: {nominal: 3}}
  - name: team-b
    namespaces: [team-b]
    cohort: all
    quotas: {A100: {nominal: 4}}
";

/// The queue of the tenants file `tenants` over one node `n0` of 8 A100, at `T0`.
pub fn queue(tenants: &str) -> Queue {
    let tenancy = file::parse("tenants.yaml", tenants).expect("tenancy");
    let mut models = ModelCatalog::default();
    let m = models.intern("A100").expect("a model");
    let cluster = Cluster::new(models, vec![Node::new("n0", 64_000, 512 * 1024, 8, Some(m))]);
    let scheduler = Scheduler::new(PolicyKind::BestFit.build(&cluster, &[]));
    Queue::new(tenancy, cluster, scheduler, Mode::Quota, T0).expect("a queue")
}

/// A training workload of one pod with `gpus` GPUs (and a CPU per GPU), submitted at `at`,
/// expected to run an hour.
pub fn workload(id: u64, tenant: usize, gpus: u32, at: i64) -> Workload {
    Workload {
        id,
        name: format!("job-{id}"),
        tenant,
        kind: Kind::Training,
        priority_class: None,
        pod_sets: vec![PodSet {
            name: "worker".into(),
            count: 1,
            request: PodRequest::whole_gpus(1000 * gpus, 1024, gpus),
        }],
        min_members: 1,
        submitted: at,
        models: None,
        expected_runtime: Some(3600),
        charge: None,
    }
}

/// Sends one request (with `Authorization: Bearer token` when given): the status, the body as
/// JSON (null if not JSON), the body as text and the headers.
pub async fn call(
    api: &Arc<Api>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Body,
) -> (StatusCode, Value, String, HeaderMap) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router(api.clone()).oneshot(req.body(body).expect("a request")).await.expect("an answer");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
    let text = String::from_utf8(bytes.to_vec()).expect("a UTF-8 body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text, headers)
}

/// The ledger's tables as Gantry wrote them at schema 3 (before runs were charged), without the
/// `user_version` pragma: tests of later upgrades build older ledgers from it.
pub const SCHEMA_3_TABLES: &str = "CREATE TABLE accruals (key TEXT PRIMARY KEY, tenant TEXT NOT NULL, flavor TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
        guaranteed INTEGER NOT NULL, borrowed INTEGER NOT NULL, idle INTEGER NOT NULL, price_micros INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX accruals_by_time ON accruals (start);
    CREATE TABLE hourly (tenant TEXT NOT NULL, flavor TEXT NOT NULL, at INTEGER NOT NULL,
        guaranteed INTEGER NOT NULL, borrowed INTEGER NOT NULL, idle INTEGER NOT NULL,
        guaranteed_cost INTEGER NOT NULL, borrowed_cost INTEGER NOT NULL, idle_cost INTEGER NOT NULL,
        PRIMARY KEY (tenant, at, flavor)) WITHOUT ROWID;
    CREATE TABLE daily (tenant TEXT NOT NULL, flavor TEXT NOT NULL, at INTEGER NOT NULL,
        guaranteed INTEGER NOT NULL, borrowed INTEGER NOT NULL, idle INTEGER NOT NULL,
        guaranteed_cost INTEGER NOT NULL, borrowed_cost INTEGER NOT NULL, idle_cost INTEGER NOT NULL,
        PRIMARY KEY (tenant, at, flavor)) WITHOUT ROWID;
    CREATE INDEX hourly_by_time ON hourly (at);
    CREATE TABLE retention (dropped_before INTEGER NOT NULL);
    INSERT INTO retention VALUES (-9223372036854775808);";
