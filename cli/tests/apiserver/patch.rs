//! The patch formats the API server accepts, as far as Gantry and its libraries send them:
//!
//! - JSON merge patch (RFC 7386, `application/merge-patch+json`): maps merge, `null` deletes,
//!   lists are replaced;
//! - strategic merge patch (`application/strategic-merge-patch+json`): maps merge recursively,
//!   `null` deletes, lists that Kubernetes declares with a merge key merge element by element
//!   (an element `{"$patch": "delete", KEY: VALUE}` removes the element with that key), lists of
//!   scalars declared `patchStrategy: merge` (finalizers) are unions, every other list is replaced;
//! - JSON patch (RFC 6902, `application/json-patch+json`), by the `json-patch` crate;
//! - server-side apply (`application/apply-patch+yaml`): merged like a strategic merge patch, with
//!   field ownership per leaf and the 409 Conflict a real API server answers when another manager
//!   owns a field the applied configuration sets to another value (see [`Owners`]).

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The merge key of the lists Kubernetes merges by key (`patchMergeKey` in the OpenAPI schema),
/// by field name: only the lists Gantry and its libraries patch, plus the common pod ones.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "schedulingGates"
        | "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "volumeMounts"
        | "imagePullSecrets" => "name",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "ports" => "containerPort",
        _ => return None,
    })
}

/// Lists of scalars that merge as sets (`patchStrategy: merge` without a key).
fn set_list(field: &str) -> bool {
    field == "finalizers"
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// A strategic merge patch of `target` by `patch`. Errors are what the API server says about a
/// malformed patch (422/400 material).
pub fn strategic(target: &mut Value, patch: &Value) -> Result<(), String> {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => merge_map(t, p),
        (t, p) => {
            *t = p.clone();
            Ok(())
        }
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = patch
                .iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some(other) => return Err(format!("unknown patch directive $patch: {other:?}")),
        None => {}
    }
    for (key, value) in patch {
        // Ordering directives ($setElementOrder/...), $retainKeys: no effect on content here.
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(p) => match target.get_mut(key) {
                Some(Value::Object(t)) => merge_map(t, p)?,
                _ => {
                    let mut fresh = Map::new();
                    merge_map(&mut fresh, p)?;
                    target.insert(key.clone(), Value::Object(fresh));
                }
            },
            Value::Array(items) => {
                let existing = match target.remove(key) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                let merged = merge_list(key, existing, items)?;
                target.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(field: &str, mut existing: Vec<Value>, patch: &[Value]) -> Result<Vec<Value>, String> {
    if let Some(k) = merge_key(field) {
        for item in patch {
            let Some(obj) = item.as_object() else {
                return Err(format!(
                    "{field}: an element of a list merged by {k:?} is not an object: {item}"
                ));
            };
            let Some(id) = obj.get(k) else {
                return Err(format!("{field}: an element has no merge key {k:?}: {item}"));
            };
            let at = existing.iter().position(|e| e.get(k) == Some(id));
            match obj.get("$patch").and_then(Value::as_str) {
                Some("delete") => {
                    if let Some(i) = at {
                        existing.remove(i);
                    }
                }
                Some(other) => return Err(format!("{field}: unknown patch directive $patch: {other:?}")),
                None => match at {
                    Some(i) => strategic(&mut existing[i], item)?,
                    None => {
                        let mut fresh = Value::Object(Map::new());
                        strategic(&mut fresh, item)?;
                        existing.push(fresh);
                    }
                },
            }
        }
        Ok(existing)
    } else if set_list(field) {
        for item in patch {
            if !existing.contains(item) {
                existing.push(item.clone());
            }
        }
        Ok(existing)
    } else {
        if patch.iter().any(|i| i.get("$patch").is_some()) {
            return Err(format!("{field}: $patch directives in a list Kubernetes does not merge"));
        }
        Ok(patch.to_vec())
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("not a JSON patch: {e}"))?;
    json_patch::patch(target, &ops).map_err(|e| e.to_string())
}

/// Every leaf of an object (scalars, lists, nulls) by its path, `.spec.holderIdentity`, leaving
/// out what identifies the object (server-side apply never conflicts there).
pub fn leaves(value: &Value) -> BTreeMap<String, Value> {
    fn walk(v: &Value, path: String, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    walk(v, format!("{path}.{k}"), out);
                }
            }
            other => {
                out.insert(path, other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value, String::new(), &mut out);
    for fixed in [
        ".apiVersion",
        ".kind",
        ".metadata.name",
        ".metadata.namespace",
        ".metadata.resourceVersion",
        ".metadata.uid",
        ".metadata.creationTimestamp",
        ".metadata.generation",
    ] {
        out.remove(fixed);
    }
    out
}

/// Field ownership of one object (server-side apply's managedFields, kept here rather than on
/// the object): leaf path → the manager that set it last.
#[derive(Clone, Debug, Default)]
pub struct Owners(pub BTreeMap<String, String>);

impl Owners {
    /// After a non-apply write by `manager` turned `old` into `new`: the leaves it changed are
    /// now its own, the leaves it removed are nobody's.
    pub fn updated(&mut self, manager: &str, old: &Value, new: &Value) {
        let (old, new) = (leaves(old), leaves(new));
        for (path, v) in &new {
            if old.get(path) != Some(v) {
                self.0.insert(path.clone(), manager.to_string());
            }
        }
        for path in old.keys() {
            if !new.contains_key(path) {
                self.0.remove(path);
            }
        }
        // Leaves under a path that became a scalar or vanished.
        self.0.retain(|p, _| new.contains_key(p));
    }

    /// The conflicts of applying `config` as `manager` to `current`: leaves the configuration
    /// sets to another value than they have, owned by another manager.
    pub fn conflicts(&self, manager: &str, current: &Value, config: &Value) -> Vec<(String, String)> {
        let now = leaves(current);
        leaves(config)
            .into_iter()
            .filter_map(|(path, v)| {
                let owner = self.0.get(&path)?;
                (owner != manager && now.get(&path).is_some_and(|c| *c != v)).then(|| (owner.clone(), path))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_deletes_a_gate_by_name_and_merges_conditions_by_type() {
        let mut pod = json!({
            "metadata": {"annotations": {"a": "1"}},
            "spec": {"schedulingGates": [{"name": "other"}, {"name": "gantry.dev/admission"}], "tolerations": [{"key": "x"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "gantry.dev/admitted", "status": "False", "lastTransitionTime": "t0"}]},
        });
        strategic(&mut pod, &json!({
            "metadata": {"annotations": {"b": "2"}},
            "spec": {"schedulingGates": [{"$patch": "delete", "name": "gantry.dev/admission"}], "tolerations": [{"key": "y"}]},
            "status": {"conditions": [{"type": "gantry.dev/admitted", "status": "True"}]},
        }))
        .unwrap();
        assert_eq!(pod["metadata"]["annotations"], json!({"a": "1", "b": "2"}));
        assert_eq!(pod["spec"]["schedulingGates"], json!([{"name": "other"}]));
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([{"key": "y"}]),
            "lists without a merge key are replaced"
        );
        assert_eq!(
            pod["status"]["conditions"][1],
            json!({"type": "gantry.dev/admitted", "status": "True", "lastTransitionTime": "t0"})
        );
        assert_eq!(pod["status"]["conditions"][0]["type"], "Ready");
    }

    #[test]
    fn apply_conflicts_only_with_another_managers_different_value() {
        let mut owners = Owners::default();
        let empty = json!({"spec": {}});
        let held = json!({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
        owners.updated("m-a", &empty, &held);
        assert_eq!(
            owners.conflicts("m-b", &held, &json!({"spec": {"holderIdentity": "b"}})),
            vec![("m-a".to_string(), ".spec.holderIdentity".to_string())]
        );
        assert!(owners.conflicts("m-b", &held, &json!({"spec": {"leaseDurationSeconds": 15}})).is_empty());
        assert!(owners.conflicts("m-a", &held, &json!({"spec": {"holderIdentity": "z"}})).is_empty());
        // A release (nulls) by anyone frees the fields.
        owners.updated("m-b", &held, &empty);
        assert!(owners.conflicts("m-b", &empty, &json!({"spec": {"holderIdentity": "b"}})).is_empty());
    }
}
