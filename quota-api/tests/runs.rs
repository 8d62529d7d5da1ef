//! Cost per Kubeflow Pipelines run, pipeline and experiment: known records (a tenant's own use
//! and the parts charged to runs, as the scheduler splits them) through the ledger, the API
//! (`/api/v1/cost?group=`) and `cost.csv?group=`, with exact sums; a tenant's user sees only its
//! own tenant's runs; a ledger written before runs were charged opens, upgrades and replays as
//! before.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use common::{queue, SCHEMA_3_TABLES, T0, TWO_TEAMS};
use gantry_api::view::View;
use gantry_quota_api::api::Api;
use gantry_quota_api::auth::StaticTokens;
use gantry_quota_api::ledger::{Group, Ledger, Record, Rollup};
use serde_json::{json, Value};

const DAY: i64 = 86_400;

const TOKENS: &str = "
tokens:
  - {token: admin-token-1, user: alice, admin: true}
  - {token: team-a-token-1, user: bob, tenants: [team-a]}
";

fn record(tenant: &str, s: i64, gpus: (u64, u64), run: Option<(&str, Option<&str>, Option<&str>)>) -> Record {
    Record {
        tenant: tenant.into(),
        flavor: "A100".into(),
        start: s,
        end: s + 3600,
        guaranteed: gpus.0 * 3_600_000,
        borrowed: gpus.1 * 3_600_000,
        idle: 0,
        price_micros: 2_000_000,
        node: None,
        run: run.map(|r| r.0.into()),
        experiment: run.and_then(|r| r.1.map(Into::into)),
        pipeline: run.and_then(|r| r.2.map(Into::into)),
    }
}

/// The day before T0, every hour: team-a 1 GPU of its own, run r1 (experiment e1, pipeline p1)
/// 2 GPUs, run r2 (pipeline p1, no experiment) 1 GPU borrowed; team-b run r3 (pipeline p2) 2 GPUs.
fn records() -> Vec<Record> {
    (0..24)
        .flat_map(|h| {
            let s = T0 - DAY + h * 3600;
            [
                record("team-a", s, (1, 0), None),
                record("team-a", s, (2, 0), Some(("r1", Some("e1"), Some("p1")))),
                record("team-a", s, (0, 1), Some(("r2", None, Some("p1")))),
                record("team-b", s, (2, 0), Some(("r3", None, Some("p2")))),
            ]
        })
        .collect()
}

fn api() -> std::sync::Arc<Api> {
    let q = queue(TWO_TEAMS);
    let mut ledger = Ledger::in_memory().unwrap();
    assert_eq!(ledger.append(&records()).unwrap(), 96);
    assert_eq!(ledger.append(&records()).unwrap(), 0, "a replay adds nothing");
    Api::new(View::of(&q, T0 + 60), ledger, Box::new(StaticTokens::parse("tokens.yaml", TOKENS).unwrap()))
}

async fn get(api: &std::sync::Arc<Api>, path: &str, token: &str) -> (StatusCode, Value, String) {
    let (status, value, text, _) = common::call(api, "GET", path, Some(token), Body::empty()).await;
    (status, value, text)
}

const ADMIN: &str = "admin-token-1";
const TEAM_A: &str = "team-a-token-1";

/// (run, experiment, pipeline, guaranteedHours, borrowedHours, totalCost) of each line.
fn lines(v: &Value) -> Vec<(Value, Value, Value, f64, f64, f64)> {
    v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let f = |k: &str| l[k].as_f64().unwrap();
            (
                l["run"].clone(),
                l["experiment"].clone(),
                l["pipeline"].clone(),
                f("guaranteedHours"),
                f("borrowedHours"),
                f("totalCost"),
            )
        })
        .collect()
}

#[tokio::test]
async fn cost_per_run_pipeline_and_experiment_adds_up_to_the_tenant() {
    let api = api();
    let period = format!("from={}&to={T0}", T0 - DAY);
    let n = Value::Null;
    let (s, v, _) = get(&api, &format!("/api/v1/cost?tenant=team-a&{period}&group=run"), ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["group"], "run");
    assert_eq!(
        lines(&v),
        vec![
            (json!("r1"), json!("e1"), json!("p1"), 48.0, 0.0, 96.0),
            (json!("r2"), n.clone(), json!("p1"), 0.0, 24.0, 48.0),
            // What no run was charged.
            (n.clone(), n.clone(), n.clone(), 24.0, 0.0, 48.0),
        ]
    );
    let (_, v, _) = get(&api, &format!("/api/v1/cost?tenant=team-a&{period}&group=pipeline"), ADMIN).await;
    assert_eq!(
        lines(&v),
        vec![
            (n.clone(), n.clone(), json!("p1"), 48.0, 24.0, 144.0),
            (n.clone(), n.clone(), n.clone(), 24.0, 0.0, 48.0)
        ]
    );
    let (_, v, _) = get(&api, &format!("/api/v1/cost?tenant=team-a&{period}&group=experiment"), ADMIN).await;
    assert_eq!(
        lines(&v),
        vec![
            (n.clone(), json!("e1"), n.clone(), 48.0, 0.0, 96.0),
            (n.clone(), n.clone(), n.clone(), 24.0, 24.0, 96.0)
        ]
    );
    // Without a group, the lines are as they always were: no run fields.
    let (_, v, _) = get(&api, &format!("/api/v1/cost?tenant=team-a&{period}"), ADMIN).await;
    assert_eq!(lines(&v), vec![(n.clone(), n.clone(), n.clone(), 72.0, 24.0, 192.0)]);
    assert!(v.get("group").is_none());
}

/// Over any period, even one cutting hours and days, each tenant's grouped lines add up to its
/// line without a group, to the micro-unit.
#[tokio::test]
async fn grouped_lines_add_up_over_any_period() {
    let api = api();
    let micros = |x: f64| (x * 1e6).round() as i64;
    for (from, to) in
        [(T0 - DAY, T0), (T0 - DAY + 1799, T0 - 7201), (T0 - 2 * DAY, T0 + DAY), (T0 - 3600, T0 - 1)]
    {
        let (_, whole, _) = get(&api, &format!("/api/v1/cost?from={from}&to={to}"), ADMIN).await;
        for group in ["run", "pipeline", "experiment"] {
            let (s, v, _) =
                get(&api, &format!("/api/v1/cost?from={from}&to={to}&group={group}"), ADMIN).await;
            assert_eq!(s, StatusCode::OK);
            for w in whole["lines"].as_array().unwrap() {
                let parts: Vec<&Value> =
                    v["lines"].as_array().unwrap().iter().filter(|l| l["tenant"] == w["tenant"]).collect();
                for k in ["guaranteedCost", "borrowedCost", "totalCost", "guaranteedHours", "borrowedHours"] {
                    let sum: i64 = parts.iter().map(|l| micros(l[k].as_f64().unwrap())).sum();
                    assert_eq!(sum, micros(w[k].as_f64().unwrap()), "{group} {k} {from}..{to}: {v}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_tenants_user_sees_only_its_own_runs() {
    let api = api();
    let period = format!("from={}&to={T0}", T0 - DAY);
    let (s, v, _) = get(&api, &format!("/api/v1/cost?{period}&group=run"), TEAM_A).await;
    assert_eq!(s, StatusCode::OK);
    let runs: Vec<&str> = v["lines"].as_array().unwrap().iter().filter_map(|l| l["run"].as_str()).collect();
    assert_eq!(runs, ["r1", "r2"]);
    assert!(v["lines"].as_array().unwrap().iter().all(|l| l["tenant"] == "team-a"));
    let (s, _, _) = get(&api, &format!("/api/v1/cost?tenant=team-b&{period}&group=run"), TEAM_A).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = get(&api, &format!("/api/v1/cost.csv?tenant=team-b&{period}&group=run"), TEAM_A).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The admin sees both tenants' runs.
    let (_, v, _) = get(&api, &format!("/api/v1/cost?{period}&group=run"), ADMIN).await;
    let runs: Vec<&str> = v["lines"].as_array().unwrap().iter().filter_map(|l| l["run"].as_str()).collect();
    assert_eq!(runs, ["r1", "r2", "r3"]);
    // A grouping that is not one says what to use.
    let (s, v, _) = get(&api, &format!("/api/v1/cost?{period}&group=user"), ADMIN).await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "group=\"user\" is not a grouping; use run, pipeline or experiment")
    );
}

#[tokio::test]
async fn cost_csv_groups_by_run_and_pipeline() {
    let api = api();
    let period = format!("from={}&to={T0}", T0 - DAY);
    let header = "from,to,tenant,flavor,run,experiment,pipeline,guaranteed_hours,borrowed_hours,idle_hours,guaranteed_cost,borrowed_cost,idle_cost,total_cost,currency";
    let p = "2026-11-30T00:00:00Z,2026-12-01T00:00:00Z";
    let (s, _, csv) = get(&api, &format!("/api/v1/cost.csv?tenant=team-a&{period}&group=run"), ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        csv,
        format!(
            "{header}\n\
             {p},team-a,A100,r1,e1,p1,48.000,0.000,0.000,96.00,0.00,0.00,96.00,EUR\n\
             {p},team-a,A100,r2,,p1,0.000,24.000,0.000,0.00,48.00,0.00,48.00,EUR\n\
             {p},team-a,A100,,,,24.000,0.000,0.000,48.00,0.00,0.00,48.00,EUR\n"
        )
    );
    let (_, _, csv) = get(&api, &format!("/api/v1/cost.csv?{period}&group=pipeline"), ADMIN).await;
    assert_eq!(
        csv,
        format!(
            "{header}\n\
             {p},team-a,A100,,,p1,48.000,24.000,0.000,96.00,48.00,0.00,144.00,EUR\n\
             {p},team-a,A100,,,,24.000,0.000,0.000,48.00,0.00,0.00,48.00,EUR\n\
             {p},team-b,A100,,,p2,48.000,0.000,0.000,96.00,0.00,0.00,96.00,EUR\n"
        )
    );
    // Without a group the columns are as they always were.
    let (_, _, csv) = get(&api, &format!("/api/v1/cost.csv?tenant=team-b&{period}"), ADMIN).await;
    assert!(csv.starts_with("from,to,tenant,flavor,guaranteed_hours,"), "{csv}");
}

#[test]
fn the_ledger_refuses_run_fields_that_cannot_be_keys() {
    let mut l = Ledger::in_memory().unwrap();
    let base = record("team-a", T0, (1, 0), Some(("r1", None, None)));
    for (bad, why) in [
        (Record { run: Some("a/b".into()), ..base.clone() }, "run, when given, must be 1 to 128 letters"),
        (Record { pipeline: Some(String::new()), ..base.clone() }, "pipeline, when given, must be"),
        (
            Record { run: None, experiment: Some("e".into()), ..base.clone() },
            "experiment and pipeline are a run's",
        ),
        (
            Record { node: Some("n".into()), guaranteed: 0, idle: 5, ..base.clone() },
            "a node's idle time is the tenant's",
        ),
    ] {
        let err = l.append(&[bad]).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
    }
    assert_eq!(l.append(std::slice::from_ref(&base)).unwrap(), 1);
    assert_eq!(l.charged_sums("team-a", Group::Run, T0, T0 + 3600).unwrap()[0].run.as_deref(), Some("r1"));
}

/// A ledger file of schema 3 (before runs were charged) opens, upgrades (through 4), keeps its records
/// and their keys (a replay adds nothing), and takes runs' records from then on.
#[test]
fn a_ledger_from_before_runs_upgrades_and_replays_as_before() {
    let dir = std::env::temp_dir().join(format!("gantry-ledger-runs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.db");
    let _ = std::fs::remove_file(&path);
    let old = record("team-a", T0, (1, 0), None);
    {
        // Schema 3 as Gantry wrote it, with one record and its rollups.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!("{SCHEMA_3_TABLES} PRAGMA user_version = 3;")).unwrap();
        conn.execute(
            "INSERT INTO accruals VALUES (?1, 'team-a', 'A100', ?2, ?3, 3600000, 0, 0, 2000000)",
            rusqlite::params![old.key(), T0, T0 + 3600],
        )
        .unwrap();
        for table in ["hourly", "daily"] {
            conn.execute(
                &format!("INSERT INTO {table} VALUES ('team-a', 'A100', ?1, 3600000, 0, 0, 2000000, 0, 0)"),
                rusqlite::params![if table == "hourly" { T0 } else { T0 - T0 % DAY }],
            )
            .unwrap();
        }
    }
    let mut l = Ledger::open(&path).unwrap();
    assert_eq!(l.version().unwrap(), 5, "upgraded through 4 (runs) to the newest");
    assert_eq!(l.append(std::slice::from_ref(&old)).unwrap(), 0, "the old record's key is unchanged");
    let run = record("team-a", T0, (2, 0), Some(("r1", None, Some("p1"))));
    assert_eq!(l.append(std::slice::from_ref(&run)).unwrap(), 1);
    assert_eq!(l.sums(Rollup::Hour, Some("team-a"), T0, T0 + 3600).unwrap()[0].2.guaranteed, 3 * 3_600_000);
    let runs = l.charged_sums("team-a", Group::Pipeline, T0, T0 + 3600).unwrap();
    assert_eq!(
        (runs.len(), runs[0].pipeline.as_deref(), runs[0].sums.guaranteed_cost),
        (1, Some("p1"), 4_000_000)
    );
    drop(l);
    let _ = std::fs::remove_dir_all(&dir);
}
