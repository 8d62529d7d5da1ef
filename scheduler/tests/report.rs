//! The leader's report to the quota API, against the real quota API service on loopback: usage
//! records and the view arrive with the service account token; when the quota API cannot be
//! reached the records wait and go with the next report, counted once; a token the quota API
//! refuses is an error that says so; records it refuses for good are dropped, not retried forever.

use gantry_api::view::View;
use gantry_quota_api::api::{router, Api};
use gantry_quota_api::auth::StaticTokens;
use gantry_quota_api::ledger::{Ledger, Record};
use gantry_scheduler::report::{QuotaReport, ReportError};
use std::sync::Arc;

fn view(at: i64) -> View {
    View::empty(at, "EUR")
}

fn record(start: i64) -> Record {
    Record {
        tenant: "team-a".into(),
        flavor: "A100".into(),
        start,
        end: start + 60,
        guaranteed: 60_000,
        borrowed: 0,
        idle: 0,
        price_micros: 2_000_000,
        node: None,
        run: None,
        experiment: None,
        pipeline: None,
    }
}

async fn quota_api() -> (Arc<Api>, String) {
    let tokens = StaticTokens::parse(
        "tokens",
        "tokens:\n  - {token: scheduler-token-1, user: scheduler, writer: true}\n",
    )
    .unwrap();
    let api = Api::new(view(0), Ledger::in_memory().unwrap(), Box::new(tokens));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(gantry_serve::serve(listener, router(api.clone()), None, std::future::pending()));
    (api, url)
}

#[tokio::test]
async fn records_and_the_view_reach_the_quota_api_once() {
    let dir = std::env::temp_dir().join(format!("gantry-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "scheduler-token-1\n").unwrap();
    let (api, url) = quota_api().await;

    // The quota API is not there yet: the records wait.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut away = QuotaReport::new(&format!("http://{closed}"), token.clone());
    let err = away.send(&view(1), vec![record(0)]).await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("cannot reach http://{closed}/internal/v1/accruals")), "{err}");
    assert_eq!(away.pending(), 1);

    let mut report = QuotaReport::new(&url, token.clone());
    report.send(&view(2), vec![record(0), record(60)]).await.unwrap();
    assert_eq!(report.pending(), 0);
    assert_eq!(api.view().at, 2);
    // A retry of records already there (an answer lost on the way) counts nothing twice.
    report.send(&view(3), vec![record(60), record(120)]).await.unwrap();
    assert_eq!(api.ledger().totals().unwrap().0, 3);
    assert_eq!(api.view().at, 3);

    // A token the quota API does not accept.
    std::fs::write(&token, "stolen-token\n").unwrap();
    let err = report.send(&view(4), vec![record(180)]).await.unwrap_err().to_string();
    assert!(
        err.contains("/internal/v1/accruals answered 401 Unauthorized") && err.contains("not valid"),
        "{err}"
    );
    assert_eq!(report.pending(), 1, "kept for the next try");

    // A record the ledger holds with other figures is refused for good: dropped with an error
    // that says so, while the good record sent with it lands, and nothing waits behind it.
    std::fs::write(&token, "scheduler-token-1\n").unwrap();
    let conflicting = Record { guaranteed: 1, ..record(0) };
    let err = report.send(&view(5), vec![conflicting]).await.unwrap_err();
    assert!(matches!(err, ReportError::Refused { count: 1, what: "usage records", .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.starts_with("the quota API refused 1 usage records, dropped:") && err.contains("409"),
        "{err}"
    );
    assert_eq!(report.pending(), 0);
    assert_eq!(api.ledger().totals().unwrap().0, 4, "record(180) landed");
    report.send(&view(6), vec![record(240)]).await.unwrap();
    assert_eq!(api.ledger().totals().unwrap().0, 5);
    let _ = std::fs::remove_dir_all(&dir);
}
