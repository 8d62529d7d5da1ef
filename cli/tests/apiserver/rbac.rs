//! RBAC for the scheduler's token, taken from the chart's rendered manifests
//! (`deploy/scheduler/rbac.yaml`): the rules of every ClusterRole bound to the service account by
//! a ClusterRoleBinding (everywhere), and of every Role bound by a RoleBinding (in the Role's
//! namespace). Anything else is answered 403, as the API server's authorizer would.

use serde_json::Value;

/// One allowed (API group, resource[/subresource], verb), in a namespace or everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub group: String,
    pub resource: String,
    pub verb: String,
    /// `None`: cluster-wide (a ClusterRole); `Some(ns)`: only there (a Role).
    pub namespace: Option<String>,
}

/// What the service account `namespace/name` may do.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    pub grants: Vec<Grant>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
}

impl Rbac {
    /// Reads a multi-document manifest (`---` separated) with marked-yaml.
    pub fn from_manifests(text: &str, sa_namespace: &str, sa_name: &str) -> Result<Rbac, String> {
        let mut docs = Vec::new();
        let mut current = String::new();
        for line in text.lines().chain(std::iter::once("---")) {
            if line.trim_end() == "---" {
                if current.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
                    let doc: Value =
                        marked_yaml::from_yaml(0, &current).map_err(|e| format!("RBAC manifest: {e}"))?;
                    docs.push(doc);
                }
                current.clear();
            } else {
                current.push_str(line);
                current.push('\n');
            }
        }
        let kind = |d: &Value| d["kind"].as_str().unwrap_or_default().to_string();
        let binds_sa = |d: &Value| {
            d["subjects"].as_array().is_some_and(|s| {
                s.iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == sa_name
                        && s["namespace"]
                            .as_str()
                            .unwrap_or(d["metadata"]["namespace"].as_str().unwrap_or_default())
                            == sa_namespace
                })
            })
        };
        let mut grants = Vec::new();
        for binding in docs
            .iter()
            .filter(|d| matches!(kind(d).as_str(), "ClusterRoleBinding" | "RoleBinding") && binds_sa(d))
        {
            let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
            let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
            let binding_ns = binding["metadata"]["namespace"].as_str().map(str::to_string);
            let Some(role) = docs.iter().find(|d| {
                kind(d) == role_kind
                    && d["metadata"]["name"] == role_name
                    && (role_kind == "ClusterRole"
                        || d["metadata"]["namespace"].as_str() == binding_ns.as_deref())
            }) else {
                return Err(format!(
                    "RBAC manifest: {} binds {role_kind} {role_name}, which is not there",
                    binding["metadata"]["name"]
                ));
            };
            // A ClusterRoleBinding grants everywhere; a RoleBinding only in its namespace.
            let namespace = if kind(binding) == "ClusterRoleBinding" { None } else { binding_ns.clone() };
            for rule in role["rules"].as_array().into_iter().flatten() {
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        for verb in strings(&rule["verbs"]) {
                            grants.push(Grant {
                                group: group.clone(),
                                resource: resource.clone(),
                                verb,
                                namespace: namespace.clone(),
                            });
                        }
                    }
                }
            }
        }
        if grants.is_empty() {
            return Err(format!("RBAC manifest: nothing is granted to {sa_namespace}/{sa_name}"));
        }
        Ok(Rbac { grants })
    }

    /// Whether `verb` on `group`/`resource` (with `/subresource`) in `namespace` is allowed.
    pub fn allows(&self, group: &str, resource: &str, verb: &str, namespace: Option<&str>) -> bool {
        self.grants.iter().any(|g| {
            (g.group == group || g.group == "*")
                && (g.resource == resource || g.resource == "*")
                && (g.verb == verb || g.verb == "*")
                && g.namespace.as_deref().is_none_or(|ns| Some(ns) == namespace)
        })
    }
}
