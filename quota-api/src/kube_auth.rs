//! Bearer tokens in a cluster: a TokenReview says who the token belongs to, and
//! SubjectAccessReviews say what that user may see, from the cluster's own RBAC:
//!
//! - a platform admin may `list` `tenants.gantry.dev`: every tenant;
//! - a tenant's user may `get` the Tenant object of their tenant (a Role or ClusterRole rule
//!   with `resourceNames: [team-a]`): that tenant;
//! - a writer (the scheduler's leader, the node agents) may `create` `accruals.gantry.dev`, a
//!   resource that exists only in RBAC rules, for this check, **and** sends a token bound to the
//!   audience [`AUDIENCE`] (a projected service account token). Writers call over the pod
//!   network, where a token might be seen; one for this audience is good for nothing else, as the
//!   API server refuses it. Readers may send any token the API server accepts.
//!
//! Answers are kept for a minute per token (hashed, never stored), so a dashboard polling every
//! few seconds costs the API server a handful of reviews a minute. The quota API's account needs
//! `create` on `tokenreviews` and `subjectaccessreviews` (the built-in `system:auth-delegator`).

use crate::auth::{Authenticator, Identified, Identity, Scope};
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

/// The audience of the tokens writers send (projected into their pods by the chart).
pub const AUDIENCE: &str = "gantry-quota-api";

pub struct KubeAuth {
    client: Client,
    hasher: RandomState,
    /// Hashed token → the answer and when it expires (`None`: not a valid token).
    cache: Mutex<HashMap<u64, (Option<Identity>, Instant)>>,
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
        KubeAuth { client, hasher: RandomState::new(), cache: Mutex::new(HashMap::new()) }
    }

    /// Who `token` is, if it is valid for one of `audiences` (`None`: the API server's own).
    async fn review(&self, token: &str, audiences: Option<Vec<String>>) -> Option<User> {
        let review = TokenReview { spec: TokenReviewSpec { token: token.to_string(), audiences }, ..Default::default() };
        let answer = Api::<TokenReview>::all(self.client.clone()).create(&PostParams::default(), &review).await;
        let status = match answer {
            Ok(r) => r.status?,
            Err(e) => {
                eprintln!("gantry quota API: TokenReview failed ({e}); the token is refused");
                return None;
            }
        };
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
        match Api::<SubjectAccessReview>::all(self.client.clone()).create(&PostParams::default(), &sar).await {
            Ok(r) => r.status.is_some_and(|s| s.allowed),
            Err(e) => {
                eprintln!("gantry quota API: SubjectAccessReview failed ({e}); access is refused");
                false
            }
        }
    }

    async fn identity(&self, token: &str, tenants: &[String]) -> Option<Identity> {
        // A token for Gantry's audience first (the writers'), then any the API server takes.
        let (user, bound) = match self.review(token, Some(vec![AUDIENCE.to_string()])).await {
            Some(user) => (user, true),
            None => (self.review(token, None).await?, false),
        };
        let writer = bound && self.may(&user, "create", "accruals", None).await;
        if self.may(&user, "list", "tenants", None).await {
            return Some(Identity { user: user.name, scope: Scope::Admin, writer });
        }
        let mut visible = Vec::new();
        for t in tenants {
            if self.may(&user, "get", "tenants", Some(t)).await {
                visible.push(t.clone());
            }
        }
        Some(Identity { user: user.name, scope: Scope::Tenants(visible), writer })
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
            let answer = self.identity(token, tenants).await;
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.retain(|_, (_, until)| *until > now);
            cache.insert(key, (answer.clone(), now + CACHE_FOR));
            answer
        })
    }
}
