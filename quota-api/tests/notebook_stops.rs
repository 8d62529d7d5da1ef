//! Notebooks stopped for idle GPUs: the scheduler's lines through `POST
//! /internal/v1/notebook-stops` (accepted, idempotent, a conflicting line refused naming its
//! key, an invalid one naming the field, only the scheduler may send) and back through `GET
//! /api/v1/notebook-stops` (scoped to the caller's tenants, newest first, bounded, exact totals);
//! a ledger of schema 4 upgrades in place and keeps what it held.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use common::{queue, SCHEMA_3_TABLES, T0, TWO_TEAMS};
use gantry_api::view::View;
use gantry_quota_api::api::Api;
use gantry_quota_api::auth::StaticTokens;
use gantry_quota_api::ledger::{Ledger, NotebookStopRecord, Record, Rollup, StopQuery};
use serde_json::{json, Value};

const HOUR: i64 = 3600;

const TOKENS: &str = "
tokens:
  - {token: admin-token-1, user: alice, admin: true}
  - {token: team-a-token-1, user: bob, tenants: [team-a]}
  - {token: scheduler-token-1, user: system:serviceaccount:gantry-system:gantry-scheduler, writer: true}
  - {token: agent-gpu-1-token, user: system:serviceaccount:gantry-system:gantry-node-agent, node: gpu-1}
";

const ADMIN: &str = "admin-token-1";
const TEAM_A: &str = "team-a-token-1";
const SCHEDULER: &str = "scheduler-token-1";

/// A stop of `notebook` in `tenant`'s namespace at `at`, idle `hours` on `gpus` GPUs before.
fn stop(tenant: &str, notebook: &str, at: i64, hours: i64, gpus: u64) -> NotebookStopRecord {
    NotebookStopRecord {
        tenant: tenant.into(),
        namespace: tenant.into(),
        notebook: notebook.into(),
        flavor: "A100".into(),
        idle_since: at - hours * HOUR,
        at,
        idle: gpus * 1000 * (hours * HOUR) as u64,
        price_micros: 2_000_000,
        message: format!("stopped {notebook}: its GPUs sat idle for {hours}h <b>past</b> the limit"),
    }
}

fn ndjson(stops: &[NotebookStopRecord]) -> String {
    stops.iter().map(|s| serde_json::to_string(s).unwrap() + "\n").collect()
}

fn api() -> std::sync::Arc<Api> {
    let q = queue(TWO_TEAMS);
    let ledger = Ledger::in_memory().unwrap();
    Api::new(View::of(&q, T0 + 60), ledger, Box::new(StaticTokens::parse("tokens.yaml", TOKENS).unwrap()))
}

async fn call(
    api: &std::sync::Arc<Api>,
    method: &str,
    path: &str,
    token: &str,
    body: String,
) -> (StatusCode, Value) {
    let (status, value, _, _) = common::call(api, method, path, Some(token), Body::from(body)).await;
    (status, value)
}

async fn post(api: &std::sync::Arc<Api>, token: &str, body: String) -> (StatusCode, Value) {
    call(api, "POST", "/internal/v1/notebook-stops", token, body).await
}

async fn get(api: &std::sync::Arc<Api>, path: &str, token: &str) -> (StatusCode, Value) {
    call(api, "GET", path, token, String::new()).await
}

/// (namespace/notebook, at) of each stop listed.
fn listed(v: &Value) -> Vec<(String, i64)> {
    v["stops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                format!("{}/{}", s["namespace"].as_str().unwrap(), s["notebook"].as_str().unwrap()),
                s["at"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn stops_are_kept_once_and_conflicts_are_refused_naming_the_key() {
    let api = api();
    let batch = [stop("team-a", "nb-1", T0 - 2 * HOUR, 2, 1), stop("team-b", "nb-2", T0 - HOUR, 3, 2)];
    let (s, v) = post(&api, SCHEDULER, ndjson(&batch)).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"read": 2, "new": 2})));
    let (s, v) = post(&api, SCHEDULER, ndjson(&batch)).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"read": 2, "new": 0})), "a resent batch counts once");
    // The same line twice in one batch counts once too.
    let again = stop("team-a", "nb-3", T0 - HOUR, 1, 1);
    let (s, v) = post(&api, SCHEDULER, ndjson(&[again.clone(), again.clone()])).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"read": 2, "new": 1})));

    // The same notebook and second with other figures: refused whole, naming the key.
    let mut other = batch[0].clone();
    other.idle += 1;
    let fresh = stop("team-a", "nb-9", T0 - HOUR, 1, 1);
    let (s, v) = post(&api, SCHEDULER, ndjson(&[fresh.clone(), other.clone()])).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains(&format!("notebook stop {}", other.key())), "{error}");
    let mut moved = batch[0].clone();
    moved.message = "another reason".into();
    assert_eq!(
        post(&api, SCHEDULER, ndjson(&[moved])).await.0,
        StatusCode::CONFLICT,
        "the message is part of the line"
    );

    let (_, v) = get(&api, &format!("/api/v1/notebook-stops?from={}&to={}", T0 - 86_400, T0), ADMIN).await;
    assert_eq!(v["count"], 3, "nothing of the refused batch was kept: {v}");
    let l = api.ledger();
    let all = l.stops(&StopQuery { tenant: None, from: 0, to: i64::MAX, limit: 10 }).unwrap();
    assert!(!all.stops.iter().any(|s| s.notebook == "nb-9"));
    // Exact totals: 2 + 6 + 1 idle GPU-hours at 2 EUR.
    assert_eq!((all.count, all.idle, all.cost_micros), (3, 9 * 3_600_000, 18_000_000));
}

#[tokio::test]
async fn an_invalid_line_is_refused_naming_the_line_and_field() {
    let api = api();
    let good = stop("team-a", "nb-1", T0 - HOUR, 1, 1);
    let cases: Vec<(NotebookStopRecord, &str)> = vec![
        (NotebookStopRecord { idle_since: good.at + 1, ..good.clone() }, "idleSince"),
        (NotebookStopRecord { tenant: String::new(), ..good.clone() }, "tenant must be named"),
        (NotebookStopRecord { flavor: String::new(), ..good.clone() }, "flavor must be named"),
        (NotebookStopRecord { namespace: "Team_A".into(), ..good.clone() }, "namespace \"Team_A\""),
        (NotebookStopRecord { notebook: "a/b".into(), ..good.clone() }, "notebook \"a/b\""),
        (NotebookStopRecord { at: 8_000_000_000, ..good.clone() }, "at (8000000000)"),
        (NotebookStopRecord { idle: u64::MAX, ..good.clone() }, "idle ("),
        (NotebookStopRecord { price_micros: u64::MAX / 2, idle: 100_000_000, ..good.clone() }, "priceMicros"),
        (NotebookStopRecord { message: "x".repeat(5000), ..good.clone() }, "message is 5000 bytes"),
    ];
    for (bad, field) in cases {
        let (s, v) = post(&api, SCHEDULER, ndjson(&[good.clone(), bad])).await;
        let error = v["error"].as_str().unwrap_or_default();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(error.starts_with("line 2: ") && error.contains(field), "{field}: {error}");
    }
    let (s, v) =
        post(&api, SCHEDULER, format!("{}{{\"tenant\": \"team-a\"}}\n", ndjson(std::slice::from_ref(&good))))
            .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().starts_with("line 2: not a notebook stop (missing field"), "{v}");
    let (s, v) = post(&api, SCHEDULER, "{\"tenant\": \"team-a\", \"extra\": 1}\n".into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("unknown field `extra`"), "{v}");
    // Nothing of any refused body was kept.
    let (_, v) = get(&api, &format!("/api/v1/notebook-stops?from={}&to={}", T0 - 86_400, T0), ADMIN).await;
    assert_eq!(v["count"], 0);
    // An idle stretch of no length is a stop too (idleSince == at), with no idle time.
    let now = NotebookStopRecord { idle_since: good.at, idle: 0, ..good };
    assert_eq!(post(&api, SCHEDULER, ndjson(&[now])).await, (StatusCode::OK, json!({"read": 1, "new": 1})));
}

#[tokio::test]
async fn only_the_scheduler_may_send_stops() {
    let api = api();
    let body = ndjson(&[stop("team-a", "nb-1", T0 - HOUR, 1, 1)]);
    for (token, status) in [
        (ADMIN, StatusCode::FORBIDDEN),
        (TEAM_A, StatusCode::FORBIDDEN),
        ("agent-gpu-1-token", StatusCode::FORBIDDEN),
        ("no-such-token", StatusCode::UNAUTHORIZED),
    ] {
        let (s, v) = post(&api, token, body.clone()).await;
        assert_eq!(s, status, "{token}: {v}");
    }
    let (_, v) = post(&api, ADMIN, body.clone()).await;
    assert_eq!(
        v["error"],
        "alice may not send notebook stops; only Gantry's scheduler does (create accruals.gantry.dev, with a token for the audience gantry-quota-api)"
    );
    let (_, v) = get(&api, &format!("/api/v1/notebook-stops?from={}&to={}", T0 - 86_400, T0), ADMIN).await;
    assert_eq!(v["count"], 0);
    assert_eq!(post(&api, SCHEDULER, body).await.0, StatusCode::OK);
}

#[tokio::test]
async fn reading_stops_is_scoped_ordered_and_bounded() {
    let api = api();
    let stops = [
        stop("team-a", "old", T0 - 20 * HOUR, 2, 1),
        stop("team-a", "nb-b", T0 - 2 * HOUR, 1, 2),
        stop("team-a", "nb-a", T0 - 2 * HOUR, 1, 1),
        stop("team-b", "theirs", T0 - HOUR, 4, 1),
        stop("team-a", "outside", T0 - 3 * 86_400, 1, 1),
    ];
    assert_eq!(post(&api, SCHEDULER, ndjson(&stops)).await.1["new"], 5);
    let day = |extra: &str| format!("/api/v1/notebook-stops?from={}&to={}{extra}", T0 - 86_400, T0);

    // An admin sees every tenant's, newest first (ties by namespace and notebook).
    let (s, v) = get(&api, &day(""), ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        listed(&v),
        vec![
            ("team-b/theirs".into(), T0 - HOUR),
            ("team-a/nb-a".into(), T0 - 2 * HOUR),
            ("team-a/nb-b".into(), T0 - 2 * HOUR),
            ("team-a/old".into(), T0 - 20 * HOUR),
        ]
    );
    assert_eq!(
        (v["count"].clone(), v["currency"].clone(), v["truncated"].clone()),
        (json!(4), json!("EUR"), json!(false))
    );
    // 2 + 2 + 1 + 4 idle GPU-hours at 2 EUR.
    assert_eq!((v["idleGpuHours"].as_f64().unwrap(), v["cost"].as_f64().unwrap()), (9.0, 18.0));
    let first = &v["stops"][0];
    assert_eq!(
        (
            first["tenant"].clone(),
            first["flavor"].clone(),
            first["idleSince"].clone(),
            first["idleSeconds"].clone()
        ),
        (json!("team-b"), json!("A100"), json!(T0 - 5 * HOUR), json!(4 * HOUR))
    );
    assert_eq!((first["idleGpuHours"].as_f64().unwrap(), first["cost"].as_f64().unwrap()), (4.0, 8.0));

    // A tenant's user sees only its own, with or without asking for it; another tenant is 403.
    let (_, mine) = get(&api, &day(""), TEAM_A).await;
    let (_, asked) = get(&api, &day("&tenant=team-a"), TEAM_A).await;
    assert_eq!(mine, asked);
    assert_eq!(
        listed(&mine),
        vec![
            ("team-a/nb-a".into(), T0 - 2 * HOUR),
            ("team-a/nb-b".into(), T0 - 2 * HOUR),
            ("team-a/old".into(), T0 - 20 * HOUR)
        ]
    );
    assert_eq!(mine["cost"].as_f64().unwrap(), 10.0);
    let (s, v) = get(&api, &day("&tenant=team-b"), TEAM_A).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(get(&api, &day("&tenant=nobody"), ADMIN).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&api, &day(""), "no-such-token").await.0, StatusCode::UNAUTHORIZED);

    // The limit cuts the list, not the count and totals; it is bounded.
    let (_, v) = get(&api, &day("&limit=2"), ADMIN).await;
    assert_eq!((listed(&v).len(), v["count"].clone(), v["truncated"].clone()), (2, json!(4), json!(true)));
    assert_eq!(v["cost"].as_f64().unwrap(), 18.0);
    for bad in ["&limit=0", "&limit=1001", "&limit=x", "&from=yesterday"] {
        let (s, v) = get(&api, &day(bad), ADMIN).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    // RFC 3339 as the cost endpoints take it; the period's end is exclusive.
    let (_, v) =
        get(&api, "/api/v1/notebook-stops?from=2026-11-30T00:00:00Z&to=2026-11-30T22:00:01Z", ADMIN).await;
    assert_eq!(
        listed(&v),
        vec![
            ("team-a/nb-a".into(), T0 - 2 * HOUR),
            ("team-a/nb-b".into(), T0 - 2 * HOUR),
            ("team-a/old".into(), T0 - 20 * HOUR)
        ]
    );
    // The default period is the 7 days before the view's time.
    let (_, v) = get(&api, "/api/v1/notebook-stops", ADMIN).await;
    assert_eq!(v["count"], 5);
    // The message is kept as sent (the dashboard escapes it).
    assert!(v["stops"][0]["message"].as_str().unwrap().contains("<b>past</b>"));
}

#[tokio::test]
async fn running_workloads_are_listed_with_the_queue_when_asked() {
    let api = api();
    let (s, v) = get(&api, "/api/v1/queue?tenant=team-a&running=true", TEAM_A).await;
    assert_eq!((s, v["running"].clone()), (StatusCode::OK, json!([])));
    let (_, v) = get(&api, "/api/v1/queue?tenant=team-a", TEAM_A).await;
    assert!(v.get("running").is_none(), "{v}");
    assert_eq!(get(&api, "/api/v1/queue?running=yes", TEAM_A).await.0, StatusCode::BAD_REQUEST);
    // idleSince is read from the scheduler's view and shown as sent.
    let mut view = api.view().as_ref().clone();
    let running = |tenant: &str, id: u64, idle_since: Option<i64>| gantry_api::view::RunningView {
        id,
        name: format!("nb-{id}"),
        tenant: tenant.into(),
        kind: "notebook".into(),
        flavor: "A100".into(),
        units: 1.0,
        since: T0 - 3 * HOUR,
        idle_since,
    };
    view.running = vec![
        running("team-a", 1, Some(T0 - HOUR)),
        running("team-a", 2, None),
        running("team-b", 3, Some(T0)),
    ];
    let sent = serde_json::to_value(&view).unwrap();
    assert!(sent["running"][1].get("idleSince").is_none(), "absent when not known");
    let back: View = serde_json::from_value(sent).unwrap();
    assert_eq!(back, view, "the view round-trips");
    api.set_view(back);
    let (_, v) = get(&api, "/api/v1/queue?running=true", TEAM_A).await;
    let ids: Vec<(i64, Value)> = v["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["idleSince"].clone()))
        .collect();
    assert_eq!(ids, vec![(1, json!(T0 - HOUR)), (2, Value::Null)], "only the caller's tenants");
}

/// A ledger file of schema 4 (before notebook stops) opens, upgrades to 5, keeps its accruals
/// and their keys, and keeps notebook stops from then on.
#[test]
fn a_ledger_from_before_notebook_stops_upgrades_in_place() {
    let dir = std::env::temp_dir().join(format!("gantry-ledger-stops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.db");
    let _ = std::fs::remove_file(&path);
    let old = Record {
        tenant: "team-a".into(),
        flavor: "A100".into(),
        start: T0,
        end: T0 + HOUR,
        guaranteed: 3_600_000,
        borrowed: 0,
        idle: 0,
        price_micros: 2_000_000,
        node: None,
        run: None,
        experiment: None,
        pipeline: None,
    };
    {
        // Schema 4 as Gantry wrote it, with one record and its rollups.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "{SCHEMA_3_TABLES}
             ALTER TABLE accruals ADD COLUMN run TEXT;
             ALTER TABLE accruals ADD COLUMN experiment TEXT;
             ALTER TABLE accruals ADD COLUMN pipeline TEXT;
             CREATE TABLE run_hourly (
                 tenant TEXT NOT NULL, at INTEGER NOT NULL,
                 run TEXT NOT NULL, experiment TEXT NOT NULL, pipeline TEXT NOT NULL, flavor TEXT NOT NULL,
                 guaranteed INTEGER NOT NULL, borrowed INTEGER NOT NULL, idle INTEGER NOT NULL,
                 guaranteed_cost INTEGER NOT NULL, borrowed_cost INTEGER NOT NULL, idle_cost INTEGER NOT NULL,
                 PRIMARY KEY (tenant, at, run, experiment, pipeline, flavor)) WITHOUT ROWID;
             PRAGMA user_version = 4;"
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO accruals VALUES (?1, 'team-a', 'A100', ?2, ?3, 3600000, 0, 0, 2000000, NULL, NULL, NULL)",
            rusqlite::params![old.key(), T0, T0 + HOUR],
        )
        .unwrap();
        for table in ["hourly", "daily"] {
            conn.execute(
                &format!("INSERT INTO {table} VALUES ('team-a', 'A100', ?1, 3600000, 0, 0, 2000000, 0, 0)"),
                rusqlite::params![if table == "hourly" { T0 } else { T0 - T0 % 86_400 }],
            )
            .unwrap();
        }
    }
    let s = stop("team-a", "nb-1", T0 + HOUR, 1, 1);
    {
        let mut l = Ledger::open(&path).unwrap();
        assert_eq!(l.version().unwrap(), 5);
        assert_eq!(l.append(std::slice::from_ref(&old)).unwrap(), 0, "the old record's key is unchanged");
        assert_eq!(
            l.sums(Rollup::Hour, Some("team-a"), T0, T0 + HOUR).unwrap()[0].2.guaranteed_cost,
            2_000_000
        );
        assert_eq!(l.append_stops(std::slice::from_ref(&s)).unwrap(), 1);
    }
    // Kept on disk: opened again (no migration runs), the stop is there and counts once.
    let mut l = Ledger::open(&path).unwrap();
    assert_eq!(l.version().unwrap(), 5);
    assert_eq!(l.append_stops(std::slice::from_ref(&s)).unwrap(), 0);
    let read = l.stops(&StopQuery { tenant: Some("team-a"), from: T0, to: T0 + 2 * HOUR, limit: 5 }).unwrap();
    assert_eq!((read.stops, read.count, read.cost_micros), (vec![s], 1, 2_000_000));
    drop(l);
    let _ = std::fs::remove_dir_all(&dir);
}
