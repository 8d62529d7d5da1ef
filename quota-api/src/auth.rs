//! Who is asking, and what they may see. A bearer token names a user; an admin sees every
//! tenant, a tenant's user only their own tenants. Missing or unknown tokens get 401, a known
//! user asking for a tenant not theirs gets 403, each with a body that says what to do.
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
}

/// What [`Authenticator::identify`] returns.
pub type Identified<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Identity>> + Send + 'a>>;

/// Checks bearer tokens.
pub trait Authenticator: Send + Sync {
    /// The identity behind `token` and what it may see of `tenants`, or `None` when the token is
    /// not valid.
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
}

/// Tokens from a file, for development:
///
/// ```yaml
/// tokens:
///   - {token: "s3cr3t-admin", user: "alice", admin: true}
///   - {token: "s3cr3t-team-a", user: "bob", tenants: [team-a]}
///   - {token: "s3cr3t-scheduler", user: "scheduler", writer: true}
/// ```
pub struct StaticTokens {
    by_token: HashMap<String, Identity>,
}

impl StaticTokens {
    pub fn parse(name: &str, text: &str) -> Result<StaticTokens, String> {
        let file: TokenFile = marked_yaml::from_yaml(0, text).map_err(|e| format!("{name}: not a token file ({e}); expected tokens: [{{token, user, admin or tenants}}]"))?;
        let mut by_token = HashMap::new();
        for (i, t) in file.tokens.into_iter().enumerate() {
            if t.token.len() < 8 {
                return Err(format!("{name}: tokens[{i}] ({}) is shorter than 8 characters; use a long random token", t.user));
            }
            if !t.admin && !t.writer && t.tenants.is_empty() {
                return Err(format!("{name}: tokens[{i}] ({}) may do nothing; give it tenants: [...], admin: true or writer: true", t.user));
            }
            let scope = if t.admin { Scope::Admin } else { Scope::Tenants(t.tenants) };
            if by_token.insert(t.token, Identity { user: t.user.clone(), scope, writer: t.writer }).is_some() {
                return Err(format!("{name}: tokens[{i}] ({}) repeats another entry's token", t.user));
            }
        }
        Ok(StaticTokens { by_token })
    }

    pub fn load(path: &Path) -> Result<StaticTokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read the token file: {e}", path.display()))?;
        StaticTokens::parse(&path.display().to_string(), &text)
    }
}

impl Authenticator for StaticTokens {
    fn identify<'a>(&'a self, token: &'a str, _tenants: &'a [String]) -> Identified<'a> {
        let found = self.by_token.get(token).cloned();
        Box::pin(std::future::ready(found))
    }
}
