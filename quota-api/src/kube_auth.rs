//! Bearer tokens in a cluster: a TokenReview says who the token belongs to, and
//! SubjectAccessReviews say what that user may see, from the cluster's own RBAC:
//!
//! - a platform admin may `list` `tenants.gantry.dev`: every tenant;
//! - a tenant's user may `get` the Tenant object of their tenant (a Role or ClusterRole rule
//!   with `resourceNames: [team-a]`): that tenant;
//! - the scheduler's leader may `create` `accruals.gantry.dev` (accruals and the view), a node
//!   agent `create` `idlereports.gantry.dev` (idle time), resources that exist only in RBAC
//!   rules, for this check; each writer **also** sends a token bound to the audience
//!   [`AUDIENCE`] (a projected service account token), and the TokenReview must say so in
//!   `status.audiences` (an API server that ignored the audience would say nothing). Writers call
//!   over the pod network, where a token might be seen; one for this audience is good for nothing
//!   else, as the API server refuses it. Readers may send any token the API server accepts.
//! - a node agent sends idle time only for the node its pod-bound token names (TokenReview's
//!   `status.user.extra["authentication.kubernetes.io/node-name"]`, Kubernetes 1.32+).
//!
//! Answers, refusals included, are kept for a minute per token (hashed, never stored), at most
//! [`CACHE_MAX`] of them, so a dashboard polling every few seconds costs the API server a
//! handful of reviews a minute. Tokens not in the cache are reviewed at most [`REVIEW_BURST`] at
//! once and [`REVIEWS_PER_SECOND`] a second after that; beyond, callers are told to try again
//! (429), so a flood of made-up tokens costs the API server a bounded number of reviews. The
//! quota API's account needs `create` on `tokenreviews` and `subjectaccessreviews` (the built-in
//! `system:auth-delegator`).

use crate::auth::{Authenticator, Caller, Identified, Refused, Scope};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use kube::Client;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is kept.
pub const CACHE_FOR: Duration = Duration::from_secs(60);

/// The most answers kept; beyond, the oldest go first.
pub const CACHE_MAX: usize = 10_000;

/// Tokens not in the cache reviewed at once, before [`REVIEWS_PER_SECOND`] applies.
pub const REVIEW_BURST: u32 = 100;

/// Tokens not in the cache reviewed per second, after the burst (a 1,000-node cluster's agents
/// need about 17: one token each per [`CACHE_FOR`]).
pub const REVIEWS_PER_SECOND: u32 = 50;

/// The audience of the tokens writers send (projected into their pods by the chart).
pub const AUDIENCE: &str = "gantry-quota-api";

/// Where a pod-bound service account token names its pod's node (Kubernetes 1.32+).
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// A token's answer (a refusal too) and when it was given.
type Cached = (Result<Caller, Refused>, Instant);

pub struct KubeAuth {
    client: Client,
    hasher: RandomState,
    /// Hashed token → the answer and when it expires.
    cache: Mutex<HashMap<u64, Cached>>,
    /// Reviews of tokens not in the cache: (tokens left, when last refilled).
    bucket: Mutex<(f64, Instant)>,
}

/// Who a TokenReview says the token is.
struct User {
    name: String,
    uid: Option<String>,
    groups: Option<Vec<String>>,
    extra: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

impl KubeAuth {
    pub fn new(client: Client) -> KubeAuth {
        KubeAuth {
            client,
            hasher: RandomState::new(),
            cache: Mutex::new(HashMap::new()),
            bucket: Mutex::new((f64::from(REVIEW_BURST), Instant::now())),
        }
    }

    /// How many answers are kept now.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Takes one review from the bucket, if any is left.
    fn may_review(&self, now: Instant) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let refill = now.saturating_duration_since(b.1).as_secs_f64() * f64::from(REVIEWS_PER_SECOND);
        *b = ((b.0 + refill).min(f64::from(REVIEW_BURST)), now);
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Who `token` is, if it is valid for one of `audiences` (`None`: the API server's own).
    async fn review(&self, token: &str, audiences: Option<Vec<String>>) -> Option<User> {
        let asked = audiences.clone();
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_string(), audiences },
            ..Default::default()
        };
        let answer =
            Api::<TokenReview>::all(self.client.clone()).create(&PostParams::default(), &review).await;
        let status = match answer {
            Ok(r) => r.status?,
            Err(e) => {
                tracing::warn!("TokenReview failed ({e}); the token is refused");
                return None;
            }
        };
        // An audience-aware API server says which of the audiences asked for the token is good
        // for; one that says none ignored them, and the token may be for anything.
        if let Some(asked) = asked {
            let good = status.audiences.as_ref().is_some_and(|got| got.iter().any(|a| asked.contains(a)));
            if !good {
                return None;
            }
        }
        let user = status.user.filter(|_| status.authenticated == Some(true))?;
        Some(User { name: user.username?, uid: user.uid, groups: user.groups, extra: user.extra })
    }

    /// Whether `user` may `verb` `RESOURCE.gantry.dev` (named `name`, if given).
    async fn may(&self, user: &User, verb: &str, resource: &str, name: Option<&str>) -> bool {
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: user.uid.clone(),
                groups: user.groups.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("gantry.dev".into()),
                    resource: Some(resource.into()),
                    verb: Some(verb.into()),
                    name: name.map(str::to_string),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match Api::<SubjectAccessReview>::all(self.client.clone()).create(&PostParams::default(), &sar).await
        {
            Ok(r) => r.status.is_some_and(|s| s.allowed),
            Err(e) => {
                tracing::warn!("SubjectAccessReview failed ({e}); access is refused");
                false
            }
        }
    }

    async fn caller(&self, token: &str, tenants: &[String]) -> Option<Caller> {
        // A token for Gantry's audience first (the writers'), then any the API server takes.
        let (user, bound) = match self.review(token, Some(vec![AUDIENCE.to_string()])).await {
            Some(user) => (user, true),
            None => (self.review(token, None).await?, false),
        };
        let writer = bound && self.may(&user, "create", "accruals", None).await;
        let idle_writer = bound && self.may(&user, "create", "idlereports", None).await;
        let node = user
            .extra
            .as_ref()
            .and_then(|e| e.get(NODE_NAME_EXTRA))
            .and_then(|v| v.first())
            .filter(|n| !n.is_empty())
            .cloned();
        if self.may(&user, "list", "tenants", None).await {
            return Some(Caller { user: user.name, scope: Scope::Admin, writer, idle_writer, node });
        }
        let mut visible = Vec::new();
        for t in tenants {
            if self.may(&user, "get", "tenants", Some(t)).await {
                visible.push(t.clone());
            }
        }
        Some(Caller { user: user.name, scope: Scope::Tenants(visible), writer, idle_writer, node })
    }
}

impl Authenticator for KubeAuth {
    fn identify<'a>(&'a self, token: &'a str, tenants: &'a [String]) -> Identified<'a> {
        Box::pin(async move {
            let key = self.hasher.hash_one(token);
            let now = Instant::now();
            {
                let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((answer, _)) = cache.get(&key).filter(|(_, until)| *until > now) {
                    return answer.clone();
                }
            }
            if !self.may_review(now) {
                return Err(Refused::Busy);
            }
            let answer = self.caller(token, tenants).await.ok_or(Refused::Invalid);
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, (_, until)| *until > now);
            }
            while cache.len() >= CACHE_MAX {
                // Still full of live answers: the one expiring first goes.
                let Some(oldest) = cache.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| *k) else {
                    break;
                };
                cache.remove(&oldest);
            }
            cache.insert(key, (answer.clone(), now + CACHE_FOR));
            answer
        })
    }
}
