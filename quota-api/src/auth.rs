//! Who is asking, and what they may see. A bearer token names a user; an admin sees every
//! tenant, a tenant's user only their own tenants. Missing or unknown tokens get 401, a known
//! user asking for a tenant not theirs gets 403 (404 for a workload, so that its owner is not
//! told), each with a body that says what to do.
//!
//! Writers each have their own endpoint: the scheduler's leader ([`Caller::writer`]) sends
//! accruals and the view; a node agent ([`Caller::idle_writer`]) sends idle time, of its own
//! node only ([`Caller::node`]).
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

/// A caller authenticated by its bearer token, and what it may do. (Not to be confused with
/// `gantry_api::identity::Identity`, the workload a pod belongs to.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub scope: Scope,
    /// May write accruals and the view (the scheduler's leader).
    pub writer: bool,
    /// May send idle time (a node agent): only for [`Caller::node`].
    pub idle_writer: bool,
    /// The node the token was issued to (a node agent's pod-bound token), the one node whose
    /// idle time it may send.
    pub node: Option<String>,
}

/// Why a token names no caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a valid token (401).
    Invalid,
    /// Too many new tokens to check right now (429): the caller should try again shortly.
    Busy,
}

/// What [`Authenticator::identify`] returns.
pub type Identified<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Caller, Refused>> + Send + 'a>>;

/// Checks bearer tokens.
pub trait Authenticator: Send + Sync {
    /// The caller behind `token` and what it may see of `tenants`, or why there is none.
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
    by_token: HashMap<String, Caller>,
}

/// Why a token file was refused, naming the file (`name`) and, for an entry, its index and user,
/// so the fix is plain. A server with a bad token file does not start: a half-read file would
/// let the wrong callers in, or keep the right ones out.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file could not be read.
    #[error("{name}: cannot read the token file: {source}")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML of the expected shape.
    #[error("{name}: not a token file ({source}); expected tokens: [{{token, user, admin or tenants}}]")]
    Format {
        name: String,
        #[source]
        source: marked_yaml::FromYamlError,
    },
    /// A token so short it could be guessed.
    #[error("{name}: tokens[{index}] ({user}) is shorter than 8 characters; use a long random token")]
    Short { name: String, index: usize, user: String },
    /// An entry that grants nothing, most likely a forgotten field.
    #[error(
        "{name}: tokens[{index}] ({user}) may do nothing; give it tenants: [...], admin: true, writer: true or node: NODE"
    )]
    NoRights { name: String, index: usize, user: String },
    /// A node agent's entry without its node's name.
    #[error(
        "{name}: tokens[{index}] ({user}) has an empty node; name the node whose idle time the token sends"
    )]
    EmptyNode { name: String, index: usize, user: String },
    /// Two entries with the same token: which caller it names would be a guess.
    #[error("{name}: tokens[{index}] ({user}) repeats another entry's token")]
    Repeated { name: String, index: usize, user: String },
}

impl StaticTokens {
    /// Reads the token file's `text`; `name` (the file's path, or what stands for it) starts every
    /// message.
    pub fn parse(name: &str, text: &str) -> Result<StaticTokens, TokensError> {
        let file: TokenFile = marked_yaml::from_yaml(0, text)
            .map_err(|source| TokensError::Format { name: name.to_string(), source })?;
        let mut by_token = HashMap::new();
        for (index, t) in file.tokens.into_iter().enumerate() {
            let named = || name.to_string();
            if t.token.len() < 8 {
                return Err(TokensError::Short { name: named(), index, user: t.user });
            }
            if !t.admin && !t.writer && t.node.is_none() && t.tenants.is_empty() {
                return Err(TokensError::NoRights { name: named(), index, user: t.user });
            }
            if t.node.as_deref() == Some("") {
                return Err(TokensError::EmptyNode { name: named(), index, user: t.user });
            }
            let scope = if t.admin { Scope::Admin } else { Scope::Tenants(t.tenants) };
            let caller = Caller {
                user: t.user.clone(),
                scope,
                writer: t.writer,
                idle_writer: t.node.is_some(),
                node: t.node,
            };
            if by_token.insert(t.token, caller).is_some() {
                return Err(TokensError::Repeated { name: named(), index, user: t.user });
            }
        }
        Ok(StaticTokens { by_token })
    }

    /// Reads the token file at `path`.
    pub fn load(path: &Path) -> Result<StaticTokens, TokensError> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => StaticTokens::parse(&name, &text),
            Err(source) => Err(TokensError::Read { name, source }),
        }
    }
}

impl Authenticator for StaticTokens {
    fn identify<'a>(&'a self, token: &'a str, _tenants: &'a [String]) -> Identified<'a> {
        let found = self.by_token.get(token).cloned().ok_or(Refused::Invalid);
        Box::pin(std::future::ready(found))
    }
}
