//! kube-scheduler extender v1 wire types (`k8s.io/kube-scheduler/extender/v1`).
//!
//! The Go structs have no json tags, so the keys are the Go field names in PascalCase and nil
//! maps and slices are `null`. Replies are emitted in exactly that casing. Go's decoder matches keys
//! case-insensitively, so requests are accepted in any casing of the top-level keys. Pods and
//! nodes stay raw JSON: a filter reply returns the passing nodes exactly as they came in.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The highest score an extender may give (`MaxExtenderPriority`).
pub const MAX_PRIORITY: i64 = 10;

/// Filter and prioritize request.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderArgs {
    /// `null` when missing; the reply's `Error` then says so.
    #[serde(default)]
    pub pod: Value,
    /// Full nodes when the extender is not `nodeCacheCapable`: `{"metadata":{},"items":[...]}`.
    pub nodes: Option<NodeList>,
    /// Node names when it is.
    pub node_names: Option<Vec<String>>,
}

/// A `v1.NodeList` as kube-scheduler sends it (no kind or apiVersion).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct NodeList {
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub items: Vec<Value>,
}

/// Filter reply. Every field is always present, as Go emits it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderFilterResult {
    pub nodes: Option<NodeList>,
    pub node_names: Option<Vec<String>>,
    pub failed_nodes: Option<BTreeMap<String, String>>,
    /// Left out when `None`, as in upstream's golden JSON; Gantry always fills it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failed_and_unresolvable_nodes: Option<BTreeMap<String, String>>,
    pub error: String,
}

/// One node's score; the prioritize reply is a bare array of these.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HostPriority {
    pub host: String,
    pub score: i64,
}

/// Bind request.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderBindingArgs {
    pub pod_name: String,
    pub pod_namespace: String,
    #[serde(rename = "PodUID")]
    pub pod_uid: String,
    pub node: String,
}

/// Bind reply.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderBindingResult {
    pub error: String,
}

/// Preempt request: full victims without a node cache, UIDs with one.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderPreemptionArgs {
    #[serde(default)]
    pub pod: Value,
    pub node_name_to_victims: Option<BTreeMap<String, Victims>>,
    pub node_name_to_meta_victims: Option<BTreeMap<String, MetaVictims>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Victims {
    pub pods: Vec<Value>,
    #[serde(rename = "NumPDBViolations")]
    pub num_pdb_violations: i64,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct MetaVictims {
    pub pods: Vec<MetaPod>,
    #[serde(rename = "NumPDBViolations")]
    pub num_pdb_violations: i64,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct MetaPod {
    #[serde(rename = "UID")]
    pub uid: String,
}

/// Preempt reply: always UIDs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderPreemptionResult {
    pub node_name_to_meta_victims: BTreeMap<String, MetaVictims>,
}

/// Parses a request body, matching top-level keys case-insensitively as Go does. The error names
/// the request type and what is wrong.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8], canonical: &[&str], what: &str) -> Result<T, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON for {what}: {e}"))?;
    let Value::Object(map) = value else {
        return Err(format!("{what} must be a JSON object"));
    };
    let mut fixed = Map::new();
    for (k, v) in map {
        let key = canonical.iter().find(|c| c.eq_ignore_ascii_case(&k)).map_or(k, |c| c.to_string());
        fixed.insert(key, v);
    }
    serde_json::from_value(Value::Object(fixed)).map_err(|e| format!("{what} is malformed: {e}"))
}

/// The top-level keys of each request type.
pub const ARGS_KEYS: &[&str] = &["Pod", "Nodes", "NodeNames"];
pub const BINDING_KEYS: &[&str] = &["PodName", "PodNamespace", "PodUID", "Node"];
pub const PREEMPTION_KEYS: &[&str] = &["Pod", "NodeNameToVictims", "NodeNameToMetaVictims"];
