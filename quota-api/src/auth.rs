//! Who is asking, and what they may see. A bearer token names a user; an admin sees every
//! tenant, a tenant's user only their own tenants. Missing or unknown tokens get 401, a known
//! user asking for a tenant not theirs gets 403 (404 for a workload, so that its owner is not
//! told), each with a body that says what to do.
//!
//! Writers each have their own endpoint: the scheduler's leader ([`Identity::writer`]) sends
//! accruals and the view; a node agent ([`Identity::idle_writer`]) sends idle time, of its own
//! node only ([`Identity::node`]).
//!
//! In development the tokens come from a file ([`StaticTokens`]); in a cluster they are checked
//! with TokenReview and SubjectAccessReview ([`crate::kube_auth::KubeAuth`]).

use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// What a caller may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Platform admins: every tenant.
    Admin,
    /// A tenant's users: these tenants only.
    Tenants(Vec<String>),
}

impl Scope {
    pub fn sees(&self, tenant: &str) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Tenants(t) => t.iter().any(|x| x == tenant),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub scope: Scope,
    /// May write accruals and the view (the scheduler's leader).
    pub writer: bool,
    /// May send idle time (a node agent): only for [`Identity::node`].
    pub idle_writer: bool,
    /// The node the token was issued to (a node agent's pod-bound token), the one node whose
    /// idle time it may send.
    pub node: Option<String>,
}

/// Why a token got no identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a valid token (401).
    Invalid,
    /// Too many new tokens to check right now (429): the caller should try again shortly.
    Busy,
}

/// What [`Authenticator::identify`] returns.
pub type Identified<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Identity, Refused>> + Send + 'a>>;

/// Checks bearer tokens.
pub trait Authenticator: Send + Sync {
    /// The identity behind `token` and what it may see of `tenants`, or why there is none.
    fn identify<'a>(&'a self, token: &'a str, tenants: &'a [String]) -> Identified<'a>;
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenEntry {
    token: String,
    user: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    tenants: Vec<String>,
    /// May write accruals and the view (the scheduler).
    #[serde(default)]
    writer: bool,
    /// A node agent's token: may send idle time of this node only.
    #[serde(default)]
    node: Option<String>,
}

/// Tokens from a file, for development:
///
/// ```yaml
/// tokens:
///   - {token: "s3cr3t-admin", user: "alice", admin: true}
///   - {token: "s3cr3t-team-a", user: "bob", tenants: [team-a]}
///   - {token: "s3cr3t-scheduler", user: "scheduler", writer: true}
///   - {token: "s3cr3t-agent-gpu-1", user: "node-agent", node: gpu-1}
/// ```
pub struct StaticTokens {
    by_token: HashMap<String, Identity>,
}

impl StaticTokens {
    pub fn parse(name: &str, text: &str) -> Result<StaticTokens, String> {
        let file: TokenFile = marked_yaml::from_yaml(0, text).map_err(|e| {
            format!("{name}: not a token file ({e}); expected tokens: [{{token, user, admin or tenants}}]")
        })?;
        let mut by_token = HashMap::new();
        for (i, t) in file.tokens.into_iter().enumerate() {
            if t.token.len() < 8 {
                return Err(format!(
                    "{name}: tokens[{i}] ({}) is shorter than 8 characters; use a long random token",
                    t.user
                ));
            }
            if !t.admin && !t.writer && t.node.is_none() && t.tenants.is_empty() {
                return Err(format!("{name}: tokens[{i}] ({}) may do nothing; give it tenants: [...], admin: true, writer: true or node: NODE", t.user));
            }
            if t.node.as_deref() == Some("") {
                return Err(format!("{name}: tokens[{i}] ({}) has an empty node; name the node whose idle time the token sends", t.user));
            }
            let scope = if t.admin { Scope::Admin } else { Scope::Tenants(t.tenants) };
            let id = Identity {
                user: t.user.clone(),
                scope,
                writer: t.writer,
                idle_writer: t.node.is_some(),
                node: t.node,
            };
            if by_token.insert(t.token, id).is_some() {
                return Err(format!("{name}: tokens[{i}] ({}) repeats another entry's token", t.user));
            }
        }
        Ok(StaticTokens { by_token })
    }

    pub fn load(path: &Path) -> Result<StaticTokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the token file: {e}", path.display()))?;
        StaticTokens::parse(&path.display().to_string(), &text)
    }
}

impl Authenticator for StaticTokens {
    fn identify<'a>(&'a self, token: &'a str, _tenants: &'a [String]) -> Identified<'a> {
        let found = self.by_token.get(token).cloned().ok_or(Refused::Invalid);
        Box::pin(std::future::ready(found))
    }
}
