//! Regression tests for the adversarial review of the quota API (`gantry quota-api`), one per
//! finding, named after it: each failed on the code the review read and passes now.
//!
//! 6 bounded records and ledger work off the async workers; 7 the token before the body; 8
//! bounded token reviews; 9 each writer its own endpoint, a node agent its own node; 10 the
//! TokenReview's audiences; 11 cost overflow; 12 CSV injection; 13 workload ids of other
//! tenants; 14 one writer per ledger file; 15 the dashboard's sign-in form; and the decision on
//! `/metrics` (per-tenant series only for a token that may read every tenant).

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use common::{queue, workload, T0};
use gantry_api::view::View;
use gantry_quota_api::api::Api;
use gantry_quota_api::auth::{Authenticator, Refused, StaticTokens};
use gantry_quota_api::kube_auth::{KubeAuth, AUDIENCE, CACHE_MAX, REVIEWS_PER_SECOND, REVIEW_BURST};
use gantry_quota_api::ledger::{Ledger, Record};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
  - name: team-b
    namespaces: [team-b]
    cohort: all
    quotas: {A100: {nominal: 4}}
";

const TOKENS: &str = "
tokens:
  - {token: admin-token-1, user: alice, admin: true}
  - {token: team-a-token-1, user: bob, tenants: [team-a]}
  - {token: scheduler-token-1, user: scheduler, writer: true}
  - {token: agent-gpu-1-token, user: agent-on-gpu-1, node: gpu-1}
";

const ADMIN: Option<&str> = Some("admin-token-1");
const TEAM_A: Option<&str> = Some("team-a-token-1");
const SCHEDULER: Option<&str> = Some("scheduler-token-1");
const AGENT: Option<&str> = Some("agent-gpu-1-token");

/// team-a runs workload 1 (6 GPUs, 2 borrowed) and waits with 3; team-b waits with 2.
fn view() -> View {
    let mut q = queue(TENANTS);
    q.submit(workload(1, 0, 6, T0), T0).unwrap();
    q.submit(workload(2, 1, 4, T0 + 1), T0 + 1).unwrap();
    q.submit(workload(3, 0, 4, T0 + 2), T0 + 2).unwrap();
    q.cycle(T0 + 10);
    View::of(&q, T0 + 60)
}

fn record(tenant: &str, start: i64, end: i64, guaranteed: u64, price_micros: u64) -> Record {
    Record {
        tenant: tenant.into(),
        flavor: "A100".into(),
        start,
        end,
        guaranteed,
        borrowed: 0,
        idle: 0,
        price_micros,
        node: None,
        run: None,
        experiment: None,
        pipeline: None,
    }
}

/// The API over the view above, an hour of each tenant at 2 GPUs, and the token file.
fn api() -> Arc<Api> {
    let mut ledger = Ledger::in_memory().unwrap();
    ledger
        .append(&[
            record("team-a", T0 - 3600, T0, 7_200_000, 2_000_000),
            record("team-b", T0 - 3600, T0, 7_200_000, 2_000_000),
        ])
        .unwrap();
    Api::new(view(), ledger, Box::new(StaticTokens::parse("tokens.yaml", TOKENS).unwrap()))
}

/// Sends a request; the status, the body as JSON (null if not JSON), the body as text and the
/// headers.
async fn call(
    api: &Arc<Api>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Body,
) -> (StatusCode, Value, String, axum::http::HeaderMap) {
    common::call(api, method, path, token, body).await
}

async fn get(api: &Arc<Api>, path: &str, token: Option<&str>) -> (StatusCode, Value, String) {
    let (s, v, t, _) = call(api, "GET", path, token, Body::empty()).await;
    (s, v, t)
}

async fn send(
    api: &Arc<Api>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: String,
) -> (StatusCode, Value) {
    let (s, v, _, _) = call(api, method, path, token, Body::from(body)).await;
    (s, v)
}

fn accrual(start: i64, end: i64, guaranteed: u64, price_micros: u64) -> String {
    json!({"tenant": "team-a", "flavor": "A100", "start": start, "end": end, "guaranteed": guaranteed, "borrowed": 0, "priceMicros": price_micros}).to_string()
}

fn idle_report(node: &str, start: i64, end: i64) -> String {
    json!({"node": node, "lines": [{"start": start, "end": end, "namespace": "team-a", "model": "A100", "idle": 1000}]}).to_string()
}

/// The requests a mocked API server saw: (path, body).
type Recorded = Arc<Mutex<Vec<(String, Value)>>>;

/// A mocked API server (tower-test): `reply(path, body)` answers each call; every call is kept.
fn mock_api_server(reply: impl Fn(&str, &Value) -> Value + Send + 'static) -> (kube::Client, Recorded) {
    use kube::client::Body as KubeBody;
    let (service, mut handle) = tower_test::mock::pair::<http::Request<KubeBody>, http::Response<KubeBody>>();
    let calls: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let seen = calls.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().path().to_string();
            let body: Value =
                serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
            let answer = reply(&path, &body);
            seen.lock().unwrap().push((path, body));
            send.send_response(
                http::Response::builder()
                    .status(201)
                    .body(KubeBody::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
    });
    (kube::Client::new(service, "default"), calls)
}

fn token_review(spec: &Value, status: Value) -> Value {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec, "status": status})
}

fn access_review(spec: &Value, allowed: bool) -> Value {
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec, "status": {"allowed": allowed}})
}

fn reviews(calls: &Mutex<Vec<(String, Value)>>) -> usize {
    calls.lock().unwrap().iter().filter(|(p, _)| p.ends_with("/tokenreviews")).count()
}

/// Finding 6: an idle window of 1,000 years or an accrual spanning the i64 range was accepted,
/// and the rollup inserted a row per hour holding the ledger's lock on a tokio worker, so
/// `/healthz` stopped answering. Now every time and span is bounded (400 naming the record) and
/// ledger work runs off the async workers: on a single-threaded runtime, with the ledger busy,
/// health and reads that need no ledger answer at once.
#[tokio::test(flavor = "current_thread")]
async fn finding_6_unbounded_windows_hang_the_api() {
    let api = api();
    let day = 86_400;
    // Out of bounds, each cheap enough for the old code to accept quickly.
    for (what, body, key) in [
        (
            "an accrual of 40 days",
            accrual(T0, T0 + 40 * day, 1000, 2_000_000),
            format!("team-a/A100/{T0}/{}", T0 + 40 * day),
        ),
        (
            "an accrual before 1970",
            accrual(-7200, -3600, 1000, 2_000_000),
            "team-a/A100/-7200/-3600".to_string(),
        ),
        (
            "an accrual after 2200",
            accrual(7_258_118_400, 7_258_122_000, 1000, 2_000_000),
            "team-a/A100/7258118400/7258122000".to_string(),
        ),
    ] {
        let (s, v) = send(&api, "POST", "/internal/v1/accruals", SCHEDULER, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {v}");
        let error = v["error"].as_str().unwrap();
        assert!(
            error.contains(&key)
                && (error.contains("at most 32 days")
                    || error.contains("between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z")),
            "{what}: {error}"
        );
    }
    let (s, v) = send(&api, "POST", "/internal/v1/idle", AGENT, idle_report("gpu-1", T0, T0 + 2 * day)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("an idle window may span at most 1 day"), "{v}");
    let (s, v) =
        send(&api, "POST", "/internal/v1/idle", AGENT, idle_report("gpu-1", i64::MIN, i64::MAX)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the i64 range: {v}");
    // Times asked for are bounded too, and the view's.
    assert_eq!(
        get(&api, &format!("/api/v1/cost?from={}&to={T0}", i64::MIN), ADMIN).await.0,
        StatusCode::BAD_REQUEST
    );
    let mut bad_view = serde_json::to_value(api.view().as_ref()).unwrap();
    bad_view["at"] = json!(i64::MIN);
    assert_eq!(
        send(&api, "PUT", "/internal/v1/view", SCHEDULER, bad_view.to_string()).await.0,
        StatusCode::BAD_REQUEST
    );
    // The most the bounds allow is taken: a 31-day accrual (a month).
    let (s, v) =
        send(&api, "POST", "/internal/v1/accruals", SCHEDULER, accrual(T0, T0 + 31 * day, 1000, 2_000_000))
            .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // A long write holds the ledger (another thread, as a big batch would).
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = {
        let api = api.clone();
        std::thread::spawn(move || {
            let _ledger = api.ledger();
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(3000));
        })
    };
    held_rx.recv().unwrap();
    let started = Instant::now();
    // A writer arrives and waits for the ledger...
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            send(
                &api,
                "POST",
                "/internal/v1/accruals",
                SCHEDULER,
                accrual(T0 + 40 * day, T0 + 40 * day + 3600, 1000, 2_000_000),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ... while health and the queue are answered at once, on this runtime's only thread.
    assert_eq!(get(&api, "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(get(&api, "/api/v1/queue", ADMIN).await.0, StatusCode::OK);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(2500),
        "health and reads waited {waited:?} for the ledger's writer"
    );
    let (s, v) = writer.await.unwrap();
    assert_eq!(s, StatusCode::OK, "the writer's turn came: {v}");
    holder.join().unwrap();
}

/// Finding 7: the quota API read unauthenticated bodies (up to 16 MiB) before checking the token.
/// Now the Authorization header is checked first, and a caller refused is refused without a byte
/// of its body read.
#[tokio::test]
async fn finding_7_bodies_are_read_before_the_token_is_checked() {
    let api = api();
    for (method, path) in
        [("POST", "/internal/v1/accruals"), ("PUT", "/internal/v1/view"), ("POST", "/internal/v1/idle")]
    {
        for (token, status) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("not-a-token"), StatusCode::UNAUTHORIZED),
            (TEAM_A, StatusCode::FORBIDDEN),
        ] {
            let read = Arc::new(AtomicBool::new(false));
            let flag = read.clone();
            let body = http_body_util::Full::new(axum::body::Bytes::from(accrual(T0, T0 + 60, 1, 1)))
                .map_frame(move |f| {
                    flag.store(true, Ordering::SeqCst);
                    f
                });
            let (s, v, _, _) = call(&api, method, path, token, Body::new(body)).await;
            assert_eq!(s, status, "{method} {path} {token:?}: {v}");
            assert!(
                !read.load(Ordering::SeqCst),
                "{method} {path} with {token:?}: the body was read before the caller was refused"
            );
        }
    }
    // A writer's body is read, up to the limit.
    let big = "x".repeat(gantry_quota_api::api::INGEST_LIMIT + 1);
    let (s, v) = send(&api, "POST", "/internal/v1/accruals", SCHEDULER, big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("send smaller batches"), "{v}");
}

/// Finding 8: in a cluster every request with a new random token cost TokenReviews, with no
/// limit, and the cache grew per token. Now reviews of tokens not in the cache are rate-limited
/// (429 with Retry-After beyond), refusals are cached too, and the cache is capped.
#[tokio::test]
async fn finding_8_random_tokens_cost_unbounded_token_reviews() {
    let (client, calls) = mock_api_server(|path, body| {
        assert!(path.ends_with("/tokenreviews"), "only tokens are reviewed: {path}");
        token_review(&body["spec"], json!({"authenticated": false, "error": "invalid bearer token"}))
    });
    let api = Api::new(view(), Ledger::in_memory().unwrap(), Box::new(KubeAuth::new(client)));
    let started = Instant::now();
    let (mut unauthorized, mut busy) = (0, 0);
    for i in 0..(REVIEW_BURST as usize * 3) {
        let (s, v, _, headers) =
            call(&api, "GET", "/api/v1/tenants", Some(&format!("random-token-{i}")), Body::empty()).await;
        match s {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                busy += 1;
                assert_eq!(headers.get("retry-after").map(|h| h.to_str().unwrap()), Some("1"));
                assert!(
                    v["error"].as_str().unwrap().contains("try again")
                        || v["error"].as_str().unwrap().contains("again in a second"),
                    "{v}"
                );
            }
            other => panic!("{other}: {v}"),
        }
    }
    let allowed = REVIEW_BURST as f64 + f64::from(REVIEWS_PER_SECOND) * started.elapsed().as_secs_f64() + 1.0;
    let made = reviews(&calls);
    assert!(unauthorized as f64 <= allowed && busy > 0, "{unauthorized} reviewed, {busy} told to wait");
    // Two reviews per token at most (Gantry's audience, then the API server's).
    assert!(made as f64 <= 2.0 * allowed, "{made} TokenReviews for {unauthorized} tokens reviewed");
    // A refused token is remembered: asking again costs no review.
    assert_eq!(
        call(&api, "GET", "/api/v1/tenants", Some("random-token-0"), Body::empty()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(reviews(&calls), made, "a refusal is cached");

    // The cache itself is bounded, whatever the rate.
    let (client, _) = mock_api_server(|_, body| token_review(&body["spec"], json!({"authenticated": false})));
    let auth = KubeAuth::new(client);
    for i in 0..(REVIEW_BURST as usize * 2) {
        let _ = auth.identify(&format!("t{i}"), &[]).await;
    }
    assert!(auth.cached() <= (REVIEW_BURST as usize + 10).min(CACHE_MAX), "{} answers cached", auth.cached());
}

/// Finding 9: node agents held the scheduler's writer permission (`create accruals.gantry.dev`),
/// so any node's agent could replace the queue's view and forge any tenant's cost. Now the
/// scheduler alone sends accruals and the view; a node agent (`create idlereports.gantry.dev`)
/// sends idle time, and only for the node its pod-bound token names.
#[tokio::test]
async fn finding_9_node_agents_hold_the_schedulers_writer_permission() {
    let api = api();
    // With a token file: the agent of gpu-1 sends gpu-1's idle time, nothing else.
    let (s, v) = send(&api, "POST", "/internal/v1/idle", AGENT, idle_report("gpu-1", T0, T0 + 60)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = send(&api, "POST", "/internal/v1/idle", AGENT, idle_report("gpu-2", T0, T0 + 60)).await;
    assert_eq!((s, v["error"].as_str().unwrap()), (StatusCode::FORBIDDEN, "agent-on-gpu-1 may send idle time only for node gpu-1, the node its token was issued to, not for node gpu-2"));
    let (s, v) = send(&api, "POST", "/internal/v1/accruals", AGENT, accrual(T0, T0 + 60, 1, 1)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let forged = serde_json::to_value(api.view().as_ref()).unwrap();
    assert_eq!(
        send(&api, "PUT", "/internal/v1/view", AGENT, forged.to_string()).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, v) =
        send(&api, "POST", "/internal/v1/idle", SCHEDULER, idle_report("gpu-1", T0 + 60, T0 + 120)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the scheduler sends no idle time: {v}");
    assert!(v["error"].as_str().unwrap().contains("create idlereports.gantry.dev"), "{v}");

    // In a cluster: the agent's permission is idlereports, and its node comes from the token.
    let (client, _) = mock_api_server(|path, body| {
        if path.ends_with("/tokenreviews") {
            let bound = body["spec"]["audiences"] == json!([AUDIENCE]);
            let status = match (body["spec"]["token"].as_str().unwrap(), bound) {
                ("agent-on-gpu-1", true) => {
                    json!({"authenticated": true, "audiences": [AUDIENCE], "user": {"username": "system:serviceaccount:gantry-system:gantry-node-agent",
                    "extra": {"authentication.kubernetes.io/node-name": ["gpu-1"], "authentication.kubernetes.io/pod-name": ["gantry-node-agent-x"]}}})
                }
                // An older cluster: the token names no node.
                ("agent-no-node", true) => {
                    json!({"authenticated": true, "audiences": [AUDIENCE], "user": {"username": "system:serviceaccount:gantry-system:gantry-node-agent"}})
                }
                _ => json!({"authenticated": false}),
            };
            token_review(&body["spec"], status)
        } else {
            let a = &body["spec"]["resourceAttributes"];
            let allowed = body["spec"]["user"] == "system:serviceaccount:gantry-system:gantry-node-agent"
                && a["verb"] == "create"
                && a["resource"] == "idlereports";
            access_review(&body["spec"], allowed)
        }
    });
    let auth = KubeAuth::new(client);
    let agent = auth.identify("agent-on-gpu-1", &[]).await.unwrap();
    assert_eq!((agent.writer, agent.idle_writer, agent.node.as_deref()), (false, true, Some("gpu-1")));
    let api = Api::new(view(), Ledger::in_memory().unwrap(), Box::new(auth));
    assert_eq!(
        send(&api, "POST", "/internal/v1/idle", Some("agent-on-gpu-1"), idle_report("gpu-1", T0, T0 + 60))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(&api, "POST", "/internal/v1/idle", Some("agent-on-gpu-1"), idle_report("gpu-7", T0, T0 + 60))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&api, "POST", "/internal/v1/accruals", Some("agent-on-gpu-1"), accrual(T0, T0 + 60, 1, 1))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (s, v) =
        send(&api, "POST", "/internal/v1/idle", Some("agent-no-node"), idle_report("gpu-1", T0, T0 + 60))
            .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("names no node"), "{v}");

    // The chart's rendering: idlereports for the agent, accruals for the scheduler alone.
    let read =
        |path: &str| std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let agent = read("deploy/node-agent/daemonset.yaml");
    let scheduler = read("deploy/scheduler/rbac.yaml");
    assert!(
        agent.contains("resources: [\"idlereports\"]") && !agent.contains("resources: [\"accruals\"]"),
        "the node agent's ClusterRole"
    );
    assert!(
        scheduler.contains("resources: [\"accruals\"]")
            && !scheduler.contains("resources: [\"idlereports\"]"),
        "the scheduler's ClusterRole"
    );
}

/// Finding 10: `status.audiences` of the TokenReview was not checked. An API server that ignores
/// the audience asked for (and so says none) must not make a token a writer.
#[tokio::test]
async fn finding_10_token_review_audiences_are_not_checked() {
    let (client, _) = mock_api_server(|path, body| {
        if path.ends_with("/tokenreviews") {
            // Authenticated for whatever audience was asked, and no audiences in the answer.
            token_review(&body["spec"], json!({"authenticated": true, "user": {"username": "scheduler"}}))
        } else {
            let a = &body["spec"]["resourceAttributes"];
            access_review(&body["spec"], a["verb"] == "create")
        }
    });
    let auth = KubeAuth::new(client);
    let id = auth.identify("a-token-for-anything", &[]).await.unwrap();
    assert_eq!((id.writer, id.idle_writer), (false, false), "the review did not confirm Gantry's audience");
    // The same server saying the audience is the token's: a writer.
    let (client, _) = mock_api_server(|path, body| {
        if path.ends_with("/tokenreviews") {
            let audiences = body["spec"]["audiences"].clone();
            token_review(
                &body["spec"],
                json!({"authenticated": true, "audiences": audiences, "user": {"username": "scheduler"}}),
            )
        } else {
            let a = &body["spec"]["resourceAttributes"];
            access_review(&body["spec"], a["verb"] == "create" && a["resource"] == "accruals")
        }
    });
    assert!(KubeAuth::new(client).identify("bound", &[]).await.unwrap().writer);
}

/// Finding 11: cost overflow was stored silently (`priceMicros` = i64::MAX gave a truncated
/// number). Now a record whose cost, or whose tenant's totals, would not fit is refused.
#[tokio::test]
async fn finding_11_cost_overflow_is_stored_silently() {
    let api = api();
    let max = i64::MAX as u64;
    // 2 GPU-hours at i64::MAX: twice what fits; 10 hours: more than u64 holds.
    for hours in [2u64, 10] {
        let (s, v) = send(
            &api,
            "POST",
            "/internal/v1/accruals",
            SCHEDULER,
            accrual(T0, T0 + 3600, hours * 3_600_000, max),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{hours} h: {v}");
        assert!(v["error"].as_str().unwrap().contains("does not fit a 64-bit signed integer"), "{v}");
    }
    // Each record fits, their sum would not: the third at that price is refused.
    for (i, ok) in [true, true, false].into_iter().enumerate() {
        let start = T0 + 3600 * (i as i64 + 1);
        let (s, v) = send(
            &api,
            "POST",
            "/internal/v1/accruals",
            SCHEDULER,
            accrual(start, start + 3600, 1_700_000, max),
        )
        .await;
        assert_eq!(s == StatusCode::OK, ok, "record {i}: {s} {v}");
        if !ok {
            assert!(
                v["error"].as_str().unwrap().contains("totals of flavor A100 would no longer fit"),
                "{v}"
            );
        }
    }
    // What was taken reads back exactly, never wrapped.
    let (_, v, _) =
        get(&api, &format!("/api/v1/cost?tenant=team-a&from={T0}&to={}", T0 + 4 * 3600), ADMIN).await;
    let cost = v["lines"][0]["guaranteedCost"].as_f64().unwrap();
    let each = (1_700_000u128 * u128::from(max) / 3_600_000) as f64;
    assert!((cost - 2.0 * each / 1e6).abs() < 1e6 && cost > 0.0, "{cost}");
}

/// Finding 12: `cost.csv` wrote tenant and flavor names unquoted: `=HYPERLINK(…)` became a
/// formula cell, and names with commas or line breaks broke the columns. Now fields are quoted
/// per RFC 4180 and a leading `= + - @` is neutralised with a single quote.
#[tokio::test]
async fn finding_12_cost_csv_is_open_to_formula_injection() {
    let api = api();
    let evil = "=HYPERLINK(\"http://evil.example/\",\"click\")";
    let broken = "a,b\n\"c\"";
    let mut view = serde_json::to_value(api.view().as_ref()).unwrap();
    view["tenants"][0]["name"] = json!(evil);
    view["tenants"][1]["name"] = json!(broken);
    api.set_view(serde_json::from_value(view).unwrap());
    let with_flavor = |tenant: &str, flavor: &str| Record {
        flavor: flavor.into(),
        ..record(tenant, T0, T0 + 3600, 3_600_000, 2_000_000)
    };
    api.ledger().append(&[with_flavor(evil, "@SUM(A1)"), with_flavor(broken, "+A100")]).unwrap();
    let (s, _, text) = get(&api, &format!("/api/v1/cost.csv?from={T0}&to={}", T0 + 3600), ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in &rows {
        assert_eq!(row.len(), 12, "{row:?} in {text}");
        for field in row.iter() {
            assert!(!field.starts_with(['=', '+', '-', '@']), "a formula cell: {field:?} in {text}");
        }
    }
    assert_eq!((&rows[0][2], &rows[0][3]), (format!("'{evil}").as_str(), "'@SUM(A1)"));
    assert_eq!((&rows[1][2], &rows[1][3], &rows[1][4]), (broken, "'+A100", "1.000"));
    assert_eq!(gantry_quota_api::api::csv_field("team-a"), "team-a", "plain names stay as they were");
}

/// Finding 13: a tenant's user asking for another tenant's workload id learned the owner's name
/// from the 403. Now the answer is the 404 of a missing id.
#[tokio::test]
async fn finding_13_workload_ids_reveal_their_owner() {
    let api = api();
    assert_eq!(get(&api, "/api/v1/workloads/2", ADMIN).await.0, StatusCode::OK, "workload 2 is team-b's");
    let (s, v, text) = get(&api, "/api/v1/workloads/2", TEAM_A).await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "no waiting or running workload 2")
    );
    assert!(!text.contains("team-b"), "{text}");
    let (s, missing, _) = get(&api, "/api/v1/workloads/99", TEAM_A).await;
    assert_eq!(
        (s, missing["error"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "no waiting or running workload 99")
    );
}

/// Finding 14: two quota-api processes on one ledger file both accepted writes and served
/// diverging totals. Now opening a ledger takes an exclusive lock on `FILE.lock` for as long as
/// it is open; a second writer is refused with a message naming the file.
#[test]
fn finding_14_two_writers_share_one_ledger_file() {
    let dir = std::env::temp_dir().join(format!("gantry-security-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.db");
    let first = Ledger::open(&path).expect("the first writer");
    let err = Ledger::open(&path).err().expect("a second writer is refused").to_string();
    assert!(
        err.contains(&path.display().to_string())
            && err.contains("is in use")
            && err.contains("only one quota API"),
        "{err}"
    );
    drop(first);
    let mut again = Ledger::open(&path).expect("once the first has gone, another may write");
    again.append(&[record("team-a", T0, T0 + 60, 60_000, 2_000_000)]).unwrap();
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Finding 15: the dashboard's token, given as `/#token=…`, stayed in the browser's history. Now
/// the page signs in with a form and keeps the token in sessionStorage only; nothing tells users
/// to put tokens in addresses (the browser itself is driven in cli/tests/dashboard.rs).
#[tokio::test]
async fn finding_15_dashboard_tokens_in_urls_stay_in_history() {
    let api = api();
    let (s, _, page) = get(&api, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("<form id=\"signin\"")
            && page.contains("type=\"password\"")
            && page.contains("autocomplete=\"off\""),
        "{page}"
    );
    let (_, _, script) = get(&api, "/dashboard.js", None).await;
    assert!(
        script.contains("sessionStorage.setItem(\"gantry-token\""),
        "the token is kept in sessionStorage"
    );
    assert!(
        !script.contains("token=")
            && !script.contains("localStorage")
            && !script.contains("decodeURIComponent"),
        "the script reads no token from the address"
    );
    let read =
        |path: &str| std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert!(!read("README.md").contains("/#token=TOKEN"), "README.md");
    assert!(!read("charts/gantry/templates/NOTES.txt").contains("#token="), "NOTES.txt");
}

/// `/metrics` showed every tenant's cost to anyone. Decision (api.rs module documentation):
/// per-tenant series only for a token that may read every tenant; without a token, or with a
/// tenant's, aggregates over all tenants and the writers' feed; a bad token is 401.
#[tokio::test]
async fn metrics_show_tenants_cost_only_to_a_token_that_reads_every_tenant() {
    let api = api();
    api.export_queue_metrics(true);
    let requests = Arc::new(AtomicUsize::new(0));
    for token in [None, TEAM_A] {
        requests.fetch_add(1, Ordering::SeqCst);
        let (s, _, text) = get(&api, "/metrics", token).await;
        assert_eq!(s, StatusCode::OK, "{token:?}");
        assert!(
            !text.contains("team-a") && !text.contains("team-b") && !text.contains("tenant="),
            "{token:?}: {text}"
        );
        // Both tenants' hour at 2 GPUs and 2.00 EUR: 8.00 EUR and 4 GPU-hours, all tenants together.
        assert!(text.contains("gantry_cost_total{flavor=\"A100\",kind=\"guaranteed\"} 8\n"), "{text}");
        assert!(text.contains("gantry_usage_hours_total{flavor=\"A100\",kind=\"guaranteed\"} 4\n"), "{text}");
    }
    let (_, _, text) = get(&api, "/metrics", ADMIN).await;
    assert!(
        text.contains("gantry_tenant_cost_total{tenant=\"team-b\",flavor=\"A100\",kind=\"guaranteed\"} 4\n"),
        "{text}"
    );
    assert!(text.contains("gantry_queue_pending_workloads{tenant=\"team-b\"} 1\n"), "{text}");
    assert_eq!(get(&api, "/metrics", Some("not-a-token")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

/// The trait's refusal kinds, as the API answers them (401 and 429).
#[tokio::test]
async fn a_refused_token_says_why() {
    let tokens = StaticTokens::parse("t", TOKENS).unwrap();
    assert_eq!(tokens.identify("nope", &[]).await, Err(Refused::Invalid));
    let err =
        StaticTokens::parse("t", "tokens:\n  - {token: agent-token-1, user: a, node: ''}\n").err().unwrap();
    assert_eq!(
        err.to_string(),
        "t: tokens[0] (a) has an empty node; name the node whose idle time the token sends"
    );
    // A file that is not a token file names the file and keeps the YAML error as its source.
    let err = StaticTokens::parse("t", "tokens: 3\n").err().unwrap();
    let text = err.to_string();
    assert!(
        text.starts_with("t: not a token file (")
            && text.ends_with("); expected tokens: [{token, user, admin or tenants}]"),
        "{text}"
    );
    assert!(std::error::Error::source(&err).is_some());
    let missing = std::env::temp_dir().join(format!("gantry-no-tokens-{}", std::process::id()));
    let err = StaticTokens::load(&missing).err().unwrap();
    assert!(
        err.to_string().starts_with(&format!("{}: cannot read the token file: ", missing.display())),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>()));
}
