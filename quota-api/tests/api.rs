//! Every endpoint over a small queue (two tenants on one 8-GPU node, one workload running and
//! two waiting, a day of accruals), the tenant isolation (a tenant's token cannot read another
//! tenant; no or a wrong token is 401, another tenant is 403 (404 for its workloads), with
//! bodies that say what to do),
//! and the OpenAPI document matching the routes.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{queue, workload, T0};
use gantry_api::view::View;
use gantry_quota_api::api::{router, Api, ROUTES};
use gantry_quota_api::auth::StaticTokens;
use gantry_quota_api::ledger::{Ledger, Record};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const TENANTS: &str = "
currency: EUR
flavors:
  - {name: A100, price: 2.00}
cohorts:
  - name: all
tenants:
  - name: team-a
    namespaces: [team-a]
    cohort: all
    quotas: {A100: {nominal: 4}}
    budget: {gpuHoursPerMonth: 1000}
  - name: team-b
    namespaces: [team-b]
    cohort: all
    quotas: {A100: {nominal: 4}}
";

const TOKENS: &str = "
tokens:
  - {token: admin-token-1, user: alice, admin: true}
  - {token: team-a-token-1, user: bob, tenants: [team-a]}
  - {token: scheduler-token-1, user: system:serviceaccount:gantry-system:gantry-scheduler, writer: true}
  - {token: agent-gpu-1-token, user: system:serviceaccount:gantry-system:gantry-node-agent, node: gpu-1}
  - {token: agent-gpu-2-token, user: system:serviceaccount:gantry-system:gantry-node-agent, node: gpu-2}
";

fn api() -> std::sync::Arc<Api> {
    let mut q = queue(TENANTS);
    q.submit(workload(1, 0, 6, T0), T0).unwrap(); // team-a borrows 2
    q.submit(workload(2, 1, 4, T0 + 1), T0 + 1).unwrap(); // waits for team-b's quota back
    q.submit(workload(3, 0, 4, T0 + 2), T0 + 2).unwrap(); // team-a would exceed what the node has
    q.cycle(T0 + 10);
    let mut ledger = Ledger::in_memory().unwrap();
    // A day of team-a at 6 GPUs (4 guaranteed, 2 borrowed, 1 of them idle) and team-b at 2.
    let day: Vec<Record> = (0..24)
        .flat_map(|h| {
            let (s, e) = (T0 - 86_400 + h * 3600, T0 - 86_400 + (h + 1) * 3600);
            [
                Record {
                    tenant: "team-a".into(),
                    flavor: "A100".into(),
                    start: s,
                    end: e,
                    guaranteed: 4 * 3_600_000,
                    borrowed: 2 * 3_600_000,
                    idle: 3_600_000,
                    price_micros: 2_000_000,
                    node: None,
                    run: None,
                    experiment: None,
                    pipeline: None,
                },
                Record {
                    tenant: "team-b".into(),
                    flavor: "A100".into(),
                    start: s,
                    end: e,
                    guaranteed: 2 * 3_600_000,
                    borrowed: 0,
                    idle: 0,
                    price_micros: 2_000_000,
                    node: None,
                    run: None,
                    experiment: None,
                    pipeline: None,
                },
            ]
        })
        .collect();
    ledger.append(&day).unwrap();
    Api::new(View::of(&q, T0 + 60), ledger, Box::new(StaticTokens::parse("tokens.yaml", TOKENS).unwrap()))
}

async fn get(api: &std::sync::Arc<Api>, path: &str, token: Option<&str>) -> (StatusCode, Value, String) {
    let (status, value, text, _) = common::call(api, "GET", path, token, Body::empty()).await;
    (status, value, text)
}

const ADMIN: Option<&str> = Some("admin-token-1");
const TEAM_A: Option<&str> = Some("team-a-token-1");

#[tokio::test]
async fn tenants_queue_and_workloads() {
    let api = api();
    let (s, v, _) = get(&api, "/api/v1/tenants", ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["tenants"].as_array().unwrap().len(), 2);
    let a = &v["tenants"][0];
    assert_eq!((a["name"].clone(), a["cohort"].clone()), (json!("team-a"), json!("all")));
    assert_eq!(
        a["quotas"][0],
        json!({"flavor": "A100", "nominal": 4.0, "borrowingLimit": null, "used": 6.0, "borrowed": 2.0, "ceiling": 8.0, "priceMicros": 2_000_000})
    );
    assert_eq!((a["running"].clone(), a["pending"].clone()), (json!(1), json!(1)));
    assert_eq!(v["flavors"][0], json!({"name": "A100", "capacity": 8.0, "price": 2.0}));
    // The queue: each waiting workload with position, reason, message and estimated start.
    let (_, v, _) = get(&api, "/api/v1/queue", ADMIN).await;
    let waiting = v["waiting"].as_array().unwrap();
    assert_eq!(waiting.iter().map(|w| w["id"].as_u64().unwrap()).collect::<Vec<_>>(), [3, 2]);
    let b = &waiting[1];
    assert_eq!(
        (b["tenant"].clone(), b["position"].clone(), b["queueLength"].clone()),
        (json!("team-b"), json!(1), json!(1))
    );
    assert!(b["reason"]["reason"].is_string() && !b["message"].as_str().unwrap().is_empty(), "{b}");
    let (s, v, _) = get(&api, "/api/v1/workloads/2", ADMIN).await;
    assert_eq!(
        (s, v["state"].clone(), v["workload"]["name"].clone()),
        (StatusCode::OK, json!("waiting"), json!("job-2"))
    );
    let (_, v, _) = get(&api, "/api/v1/workloads/1", ADMIN).await;
    assert_eq!((v["state"].clone(), v["workload"]["units"].clone()), (json!("running"), json!(6.0)));
    let (s, v, _) = get(&api, "/api/v1/workloads/99", ADMIN).await;
    assert_eq!((s, v["error"].clone()), (StatusCode::NOT_FOUND, json!("no waiting or running workload 99")));
    let (s, v, _) = get(&api, "/api/v1/workloads/x", ADMIN).await;
    assert_eq!(
        (s, v["error"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("\"x\" is not a workload id; ids are whole numbers (see /api/v1/queue)")
        )
    );
    let (_, v, _) = get(&api, "/api/v1/tenants/team-b", ADMIN).await;
    assert_eq!(v["name"], "team-b");
    let (s, _, _) = get(&api, "/api/v1/tenants/team-z", ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn usage_cost_csv_and_budgets() {
    let api = api();
    let (s, v, _) =
        get(&api, &format!("/api/v1/usage?tenant=team-a&from={}&to={T0}&step=day", T0 - 86_400), ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["points"],
        json!([{"tenant": "team-a", "flavor": "A100", "at": T0 - 86_400, "guaranteedHours": 96.0, "borrowedHours": 48.0, "idleHours": 24.0, "cost": 288.0}])
    );
    let (_, v, _) = get(&api, &format!("/api/v1/usage?from={}&to={}", T0 - 3600, T0), ADMIN).await;
    assert_eq!(v["points"].as_array().unwrap().len(), 2, "one hour, two tenants: {v}");
    // Cost: 2.00 EUR per GPU-hour.
    let (_, v, _) = get(&api, &format!("/api/v1/cost?from=2026-11-30T00:00:00Z&to={T0}"), ADMIN).await;
    assert_eq!(v["currency"], "EUR");
    assert_eq!(
        v["lines"][0],
        json!({"tenant": "team-a", "flavor": "A100", "guaranteedHours": 96.0, "borrowedHours": 48.0, "idleHours": 24.0,
               "guaranteedCost": 192.0, "borrowedCost": 96.0, "idleCost": 48.0, "totalCost": 288.0})
    );
    assert_eq!(v["lines"][1]["totalCost"], 96.0);
    // The CSV's period is RFC 3339 in UTC, whether the query gave unix seconds or RFC 3339.
    let header = "from,to,tenant,flavor,guaranteed_hours,borrowed_hours,idle_hours,guaranteed_cost,borrowed_cost,idle_cost,total_cost,currency";
    let line =
        "2026-11-30T00:00:00Z,2026-12-01T00:00:00Z,team-b,A100,48.000,0.000,0.000,96.00,0.00,0.00,96.00,EUR";
    for query in
        [format!("from={}&to={T0}", T0 - 86_400), "from=2026-11-30T00:00:00Z&to=2026-12-01T00:00:00Z".into()]
    {
        let (s, _, csv) = get(&api, &format!("/api/v1/cost.csv?tenant=team-b&{query}"), ADMIN).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(csv, format!("{header}\n{line}\n"), "{query}");
    }
    // Times that are not whole hours are written as given, to the second.
    let (_, _, csv) =
        get(&api, &format!("/api/v1/cost.csv?tenant=team-b&from={}&to={}", T0 - 86_399, T0 + 61), ADMIN)
            .await;
    assert!(
        csv.lines().nth(1).unwrap().starts_with("2026-11-30T00:00:01Z,2026-12-01T00:01:01Z,team-b,"),
        "{csv}"
    );
    let (_, v, _) = get(&api, "/api/v1/budgets", ADMIN).await;
    assert_eq!(v["budgets"].as_array().unwrap().len(), 1);
    assert_eq!(
        (v["budgets"][0]["tenant"].clone(), v["budgets"][0]["gpuHoursPerMonth"].clone()),
        (json!("team-a"), json!(1000.0))
    );
    // Bad parameters say what to fix.
    for (q, message) in [
        ("step=week", "step=\"week\" is not a step; use hour or day"),
        (
            "from=yesterday",
            "from=\"yesterday\" is not a time; give unix seconds or RFC 3339 (2026-11-01T00:00:00Z)",
        ),
        ("from=10&to=5", "from (10) must be before to (5)"),
    ] {
        let (s, v, _) = get(&api, &format!("/api/v1/usage?{q}"), ADMIN).await;
        assert_eq!((s, v["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, message));
    }
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_and_strangers_see_nothing() {
    let api = api();
    for path in [
        "/api/v1/tenants",
        "/api/v1/queue",
        "/api/v1/usage",
        "/api/v1/cost",
        "/api/v1/cost.csv",
        "/api/v1/budgets",
        "/api/v1/workloads/1",
        "/api/v1/tenants/team-a",
    ] {
        let (s, v, _) = get(&api, path, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(v["error"], "no bearer token; send Authorization: Bearer TOKEN (a service account token, or one from the token file)");
        let (s, v, _) = get(&api, path, Some("not-a-token")).await;
        assert_eq!(
            (s, v["error"].as_str().unwrap()),
            (StatusCode::UNAUTHORIZED, "the bearer token is not valid or has expired; get a new one"),
            "{path}"
        );
    }
    let (_, v, _) = get(&api, "/api/v1/tenants", TEAM_A).await;
    assert_eq!(
        v["tenants"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect::<Vec<_>>(),
        [json!("team-a")]
    );
    let (_, v, _) = get(&api, "/api/v1/queue", TEAM_A).await;
    assert!(v["waiting"].as_array().unwrap().iter().all(|w| w["tenant"] == "team-a"));
    let (_, v, _) = get(&api, &format!("/api/v1/cost?from={}&to={T0}", T0 - 86_400), TEAM_A).await;
    assert_eq!(v["lines"].as_array().unwrap().len(), 1);
    for path in [
        "/api/v1/tenants/team-b",
        "/api/v1/queue?tenant=team-b",
        "/api/v1/usage?tenant=team-b",
        "/api/v1/cost?tenant=team-b",
        "/api/v1/cost.csv?tenant=team-b",
    ] {
        let (s, v, _) = get(&api, path, TEAM_A).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        assert!(v["error"].as_str().unwrap().starts_with("bob may not read tenant team-b"), "{path}: {v}");
    }
    // Another tenant's workload is as missing (security.rs).
    assert_eq!(get(&api, "/api/v1/workloads/2", TEAM_A).await.0, StatusCode::NOT_FOUND);
    // A tenant that does not exist is not revealed to a tenant's user either.
    assert_eq!(get(&api, "/api/v1/usage?tenant=team-z", TEAM_A).await.0, StatusCode::FORBIDDEN);
}

/// The dashboard's page, script, style and the vendored uPlot are served from the binary, each with
/// the policy that lets the page load only this origin's script and style; the page names no
/// other origin (no CDN).
#[tokio::test]
async fn the_dashboard_and_its_chart_library_are_served_embedded() {
    let api = api();
    let vendor = |f: &str| {
        std::fs::read_to_string(format!("{}/assets/vendor/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    for (path, kind, body) in [
        ("/", "text/html", None),
        ("/dashboard.js", "text/javascript", None),
        ("/dashboard.css", "text/css", None),
        ("/vendor/uPlot.iife.min.js", "text/javascript", Some(vendor("uPlot.iife.min.js"))),
        ("/vendor/uPlot.min.css", "text/css", Some(vendor("uPlot.min.css"))),
    ] {
        let resp =
            router(api.clone()).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let header = |h: &str| resp.headers()[h].to_str().unwrap().to_string();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(header("content-security-policy").contains("script-src 'self'; style-src 'self'"), "{path}");
        let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        if let Some(body) = body {
            assert_eq!(text, body, "{path} is the vendored file");
        }
        if path == "/" {
            assert!(text.contains("src=\"/vendor/uPlot.iife.min.js\"") && !text.contains("//cdn"), "{text}");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "the page loads only its own origin"
            );
        }
    }
    assert!(vendor("uPlot.iife.min.js").starts_with("/*! https://github.com/leeoniya/uPlot (v1.6.32) */"));
    assert!(vendor("uPlot.LICENSE").starts_with("The MIT License (MIT)"));
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes() {
    let api = api();
    let (s, doc, _) = get(&api, "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut routes = ROUTES.to_vec();
    paths.sort_unstable();
    routes.sort_unstable();
    assert_eq!(paths, routes);
    // Every route is served with the method documented (the scheduler's writes are tested below).
    for route in ROUTES {
        let (method, op) = doc["paths"][route].as_object().unwrap().iter().next().unwrap();
        assert!(op["responses"]["200"].is_object(), "{route} documents its answer");
        if route.starts_with("/api/") || route.starts_with("/internal/") {
            assert!(
                op["responses"]["401"].is_object() && op.get("security").is_none(),
                "{route} documents that it needs a token"
            );
        }
        if route.starts_with("/internal/") {
            assert_eq!(method, if route.ends_with("/view") { "put" } else { "post" });
            continue;
        }
        assert_eq!(method, "get");
        let path = route.replace("{tenant}", "team-a").replace("{id}", "1");
        let (s, _, _) = get(&api, &path, ADMIN).await;
        assert_eq!(s, StatusCode::OK, "{route}");
    }
}

#[tokio::test]
async fn cost_over_any_period_equals_the_hours_in_it() {
    // Periods that start and end inside a day, span whole days, or fall within one day: the
    // answer (whole days from the daily rollup, edges from the hourly one) is the hourly sum.
    let api = api();
    for (from, to) in [
        (T0 - 86_400, T0),
        (T0 - 86_400 + 5 * 3600, T0),
        (T0 - 86_400 + 3600, T0 - 3600),
        (T0 - 2 * 86_400, T0 + 86_400),
        (T0 - 50_000, T0 - 40_000),
    ] {
        let (_, v, _) = get(&api, &format!("/api/v1/cost?tenant=team-a&from={from}&to={to}"), ADMIN).await;
        let first = from.div_euclid(3600) * 3600;
        let hours = (first.max(T0 - 86_400)..to.min(T0)).step_by(3600).count() as f64;
        assert_eq!(v["lines"][0]["guaranteedHours"].as_f64().unwrap_or(0.0), 4.0 * hours, "{from}..{to}");
        assert_eq!(v["lines"][0]["totalCost"].as_f64().unwrap_or(0.0), 12.0 * hours, "{from}..{to}");
    }
}

#[tokio::test]
async fn metrics_carry_cost_budgets_and_the_queue_and_feed_the_grafana_dashboard() {
    let api = api();
    // Per-tenant series for a token that may read every tenant (see security.rs for the rest).
    let (s, _, text) = get(&api, "/metrics", ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text format");
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    // A day of team-a: 96 guaranteed and 48 borrowed GPU-hours at 2.00, 24 of them idle.
    assert_eq!(
        value("gantry_tenant_cost_total", &[("tenant", "team-a"), ("kind", "guaranteed")]),
        Some(192.0)
    );
    assert_eq!(value("gantry_tenant_cost_total", &[("tenant", "team-a"), ("kind", "borrowed")]), Some(96.0));
    assert_eq!(
        value("gantry_tenant_usage_hours_total", &[("tenant", "team-a"), ("kind", "idle")]),
        Some(24.0)
    );
    assert_eq!(value("gantry_tenant_budget_gpu_hours", &[("tenant", "team-a")]), Some(1000.0));
    // The queue's families are the scheduler's, written here only when no scheduler runs.
    assert_eq!(value("gantry_tenant_usage_milli", &[("tenant", "team-a")]), None);
    api.export_queue_metrics(true);
    let (_, _, text) = get(&api, "/metrics", ADMIN).await;
    assert!(text.contains("gantry_tenant_usage_milli{tenant=\"team-a\",flavor=\"A100\"} 6000\n"), "{text}");
    assert!(text.contains("gantry_queue_pending_workloads{tenant=\"team-b\"} 1\n"));
    // Every metric the Grafana dashboard queries is one Gantry writes.
    let path = format!("{}/../charts/gantry/dashboards/gantry-tenants.json", env!("CARGO_MANIFEST_DIR"));
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queried = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            queried.extend(
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("gantry_"))
                    .map(str::to_string),
            );
        }
    }
    assert!(queried.len() >= 6);
    for name in queried {
        assert!(
            text.contains(&format!("\n# TYPE {name} ")),
            "the dashboard queries {name}, which nothing writes"
        );
    }
}

async fn send(
    api: &std::sync::Arc<Api>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: String,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router(api.clone()).oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_scheduler_writes_accruals_and_the_view_and_nobody_else_does() {
    let api = api();
    const SCHEDULER: Option<&str> = Some("scheduler-token-1");
    let line = |start: i64, g: u64| {
        json!({"tenant": "team-b", "flavor": "A100", "start": start, "end": start + 3600, "guaranteed": g, "borrowed": 0, "priceMicros": 2_000_000}).to_string()
    };
    let batch = format!("{}\n{}\n", line(T0, 3_600_000), line(T0 + 3600, 7_200_000));
    let (s, v) = send(&api, "POST", "/internal/v1/accruals", SCHEDULER, batch.clone()).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"read": 2, "new": 2})));
    let (s, v) = send(&api, "POST", "/internal/v1/accruals", SCHEDULER, batch).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"read": 2, "new": 0})), "a retry changes nothing");
    let (_, cost, _) =
        get(&api, &format!("/api/v1/cost?tenant=team-b&from={T0}&to={}", T0 + 7200), ADMIN).await;
    assert_eq!(cost["lines"][0]["guaranteedHours"], 3.0);
    // Other figures for a recorded interval, and a line that is no accrual.
    let (s, v) = send(&api, "POST", "/internal/v1/accruals", SCHEDULER, line(T0, 1)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) =
        send(&api, "POST", "/internal/v1/accruals", SCHEDULER, format!("{}\nnot json\n", line(T0 + 7200, 1)))
            .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().starts_with("line 2: not an accrual"), "{v}");
    // Readers, even admins, may not write; nobody without a token.
    let (s, v) = send(&api, "POST", "/internal/v1/accruals", ADMIN, line(T0 + 9000, 1)).await;
    assert_eq!((s, v["error"].as_str().unwrap()), (StatusCode::FORBIDDEN, "alice may not write accruals or the view; only Gantry's scheduler does (create accruals.gantry.dev, with a token for the audience gantry-quota-api)"));
    // Nor may a node agent: it sends idle time only.
    assert_eq!(
        send(&api, "POST", "/internal/v1/accruals", Some("agent-gpu-1-token"), line(T0 + 9000, 1)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&api, "PUT", "/internal/v1/view", Some("agent-gpu-1-token"), "{}".into()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(send(&api, "PUT", "/internal/v1/view", None, "{}".into()).await.0, StatusCode::UNAUTHORIZED);
    // A new view from the scheduler is what readers see next.
    let mut view = serde_json::to_value(api.view().as_ref()).unwrap();
    view["at"] = json!(T0 + 999);
    let (s, _) = send(&api, "PUT", "/internal/v1/view", SCHEDULER, view.to_string()).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v, _) = get(&api, "/api/v1/queue", ADMIN).await;
    assert_eq!(
        (v["at"].clone(), v["waiting"].as_array().unwrap().len()),
        (json!(T0 + 999), 2),
        "the view round-trips through JSON"
    );
    let (s, v) = send(&api, "PUT", "/internal/v1/view", SCHEDULER, "{\"at\": 1}".into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn node_agents_add_idle_time_once_per_window_and_node() {
    let api = api();
    const AGENT: Option<&str> = Some("agent-gpu-1-token");
    let report = |node: &str, idle: u64| {
        json!({"node": node, "lines": [
            {"start": T0, "end": T0 + 60, "namespace": "team-b", "model": "A100", "idle": idle},
            {"start": T0, "end": T0 + 60, "namespace": "kube-system", "model": "A100", "idle": 60_000},
            {"start": T0, "end": T0 + 60, "namespace": "team-b", "model": "T4", "idle": 60_000},
        ]})
        .to_string()
    };
    let (s, v) = send(&api, "POST", "/internal/v1/idle", AGENT, report("gpu-1", 90_000)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["read"].clone(), v["records"].clone(), v["new"].clone()), (json!(3), json!(1), json!(1)));
    let why: Vec<&str> =
        v["skipped"].as_array().unwrap().iter().map(|s| s["why"].as_str().unwrap()).collect();
    assert_eq!(
        why,
        [
            "no tenant owns namespace kube-system; its idle time is not charged",
            "no flavor is GPU model T4; add a GpuFlavor named after it to charge it"
        ]
    );
    // The same window again (a retry after a lost answer) changes nothing; another node's adds.
    let (s, v) = send(&api, "POST", "/internal/v1/idle", AGENT, report("gpu-1", 90_000)).await;
    assert_eq!((s, v["new"].clone()), (StatusCode::OK, json!(0)));
    let (s, v) =
        send(&api, "POST", "/internal/v1/idle", Some("agent-gpu-2-token"), report("gpu-2", 90_000)).await;
    assert_eq!((s, v["new"].clone()), (StatusCode::OK, json!(1)));
    // The same window and node with other figures is refused.
    let (s, v) = send(&api, "POST", "/internal/v1/idle", AGENT, report("gpu-1", 1)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // 3 idle minutes at team-b's price: 0.05 GPU-hours, 0.10 EUR, within (not on top of) the total.
    let (_, cost, _) =
        get(&api, &format!("/api/v1/cost?tenant=team-b&from={T0}&to={}", T0 + 3600), ADMIN).await;
    assert_eq!(cost["lines"].as_array().unwrap().len(), 1, "{cost}");
    let line = &cost["lines"][0];
    assert_eq!(
        (line["idleHours"].clone(), line["idleCost"].clone(), line["totalCost"].clone()),
        (json!(0.05), json!(0.1), json!(0.0))
    );
    // Only node agents (not the scheduler), and a body that says what it is.
    assert_eq!(
        send(&api, "POST", "/internal/v1/idle", Some("team-a-token-1"), report("gpu-3", 1)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&api, "POST", "/internal/v1/idle", Some("scheduler-token-1"), report("gpu-1", 1)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&api, "POST", "/internal/v1/idle", None, report("gpu-3", 1)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, v) = send(&api, "POST", "/internal/v1/idle", AGENT, "{\"lines\": []}".into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().starts_with("the body is not an idle report"), "{v}");
    let (s, v) = send(&api, "POST", "/internal/v1/idle", AGENT, json!({"node": "gpu-1", "lines": [{"start": T0, "end": T0, "namespace": "team-b", "model": "A100", "idle": 1}]}).to_string()).await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "line team-b/A100 [1796083200, 1796083200): end must be after start")
    );
    // Operators see the feed: accepted writes, new records and skipped lines (the refused ones
    // are not counted).
    let (_, _, text) = get(&api, "/metrics", None).await;
    for line in [
        "gantry_quota_api_writes_total{source=\"node-agent\"} 3\n",
        "gantry_quota_api_records_written_total{source=\"node-agent\"} 2\n",
        "gantry_quota_api_idle_lines_skipped_total{reason=\"no-tenant\"} 3\n",
        "gantry_quota_api_idle_lines_skipped_total{reason=\"no-flavor\"} 3\n",
    ] {
        assert!(text.contains(line), "{line} not in {text}");
    }
    assert!(
        text.contains("gantry_quota_api_last_write_timestamp_seconds{source=\"node-agent\"} 1"),
        "{text}"
    );
    // Before the scheduler has said which tenants exist, the agent is told to come back.
    let mut view = (*api.view()).clone();
    view.tenants.clear();
    api.set_view(view);
    let (s, v) = send(&api, "POST", "/internal/v1/idle", AGENT, report("gpu-1", 1)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
}
