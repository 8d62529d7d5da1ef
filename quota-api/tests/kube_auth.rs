//! Tokens in a cluster against a mocked API server (tower-test): TokenReview says who, a
//! SubjectAccessReview for `list tenants.gantry.dev` makes an admin, one `get` per named Tenant
//! makes a tenant's user, `create accruals.gantry.dev` a writer when its token is bound to Gantry's
//! audience; invalid tokens are refused; answers are cached per token.

use gantry_quota_api::auth::{Authenticator, Refused, Scope};
use gantry_quota_api::kube_auth::{KubeAuth, AUDIENCE};
use http::{Method, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn reviews_decide_who_sees_what_and_are_cached() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let seen = calls.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            assert_eq!(request.method(), Method::POST);
            let path = request.uri().path().to_string();
            let body: Value =
                serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
            seen.lock().unwrap().push((path.clone(), body.clone()));
            let reply = if path == "/apis/authentication.k8s.io/v1/tokenreviews" {
                // As the API server does: a token is valid only for the audiences it was made for.
                let gantry_audience = body["spec"]["audiences"] == json!([AUDIENCE]);
                let user = match (body["spec"]["token"].as_str().unwrap(), gantry_audience) {
                    ("alice-token", false) => {
                        json!({"authenticated": true, "user": {"username": "alice", "groups": ["platform"]}})
                    }
                    ("bob-token", false) => {
                        json!({"authenticated": true, "user": {"username": "bob", "groups": ["team-a"]}})
                    }
                    ("scheduler-token", true) => {
                        json!({"authenticated": true, "user": {"username": "scheduler"}, "audiences": [AUDIENCE]})
                    }
                    // The scheduler's account with a token for the API server, as one sniffed or
                    // taken from its default mount would be: may read what its RBAC allows, never write.
                    ("scheduler-default-token", false) => {
                        json!({"authenticated": true, "user": {"username": "scheduler"}})
                    }
                    _ => json!({"authenticated": false, "error": "invalid bearer token"}),
                };
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": body["spec"], "status": user})
            } else {
                assert_eq!(path, "/apis/authorization.k8s.io/v1/subjectaccessreviews");
                let s = &body["spec"];
                let a = &s["resourceAttributes"];
                assert_eq!(a["group"].as_str(), Some("gantry.dev"));
                let allowed = matches!(
                    (
                        s["user"].as_str().unwrap(),
                        a["verb"].as_str().unwrap(),
                        a["resource"].as_str().unwrap(),
                        a["name"].as_str()
                    ),
                    ("alice", "list", "tenants", None)
                        | ("bob", "get", "tenants", Some("team-a"))
                        | ("scheduler", "create", "accruals", None)
                );
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": s, "status": {"allowed": allowed}})
            };
            send.send_response(
                Response::builder()
                    .status(201)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    let auth = KubeAuth::new(Client::new(service, "default"));
    let tenants = ["team-a".to_string(), "team-b".to_string()];

    let alice = auth.identify("alice-token", &tenants).await.unwrap();
    assert_eq!((alice.user.as_str(), alice.scope, alice.writer), ("alice", Scope::Admin, false));
    let bob = auth.identify("bob-token", &tenants).await.unwrap();
    assert_eq!(
        (bob.user.as_str(), bob.scope, bob.writer),
        ("bob", Scope::Tenants(vec!["team-a".into()]), false)
    );
    let scheduler = auth.identify("scheduler-token", &tenants).await.unwrap();
    assert_eq!(
        (scheduler.scope, scheduler.writer, scheduler.idle_writer),
        (Scope::Tenants(vec![]), true, false)
    );
    let unbound = auth.identify("scheduler-default-token", &tenants).await.unwrap();
    assert_eq!(
        (unbound.user.as_str(), unbound.writer),
        ("scheduler", false),
        "writing needs a token for Gantry's audience"
    );
    assert_eq!(auth.identify("stolen", &tenants).await, Err(Refused::Invalid));
    let made = calls.lock().unwrap().len();
    // alice: 2 reviews (Gantry's audience, then the API server's) + list; bob: 2 reviews + list +
    // 2 gets; the scheduler: 1 review + 2 creates (accruals, idlereports) + list + 2 gets; its
    // default token: 2 reviews + list + 2 gets (no create: it could not write anyway); stolen: 2
    // reviews.
    assert_eq!(made, 3 + 5 + 6 + 5 + 2);
    // The SubjectAccessReviews carry the user's groups as the TokenReview gave them.
    assert_eq!(calls.lock().unwrap()[5].1["spec"]["groups"], json!(["team-a"]));

    // Within a minute, nothing is asked again.
    assert_eq!(
        auth.identify("bob-token", &tenants).await.unwrap().scope,
        Scope::Tenants(vec!["team-a".into()])
    );
    assert_eq!(auth.identify("stolen", &tenants).await, Err(Refused::Invalid));
    assert_eq!(calls.lock().unwrap().len(), made);
}
