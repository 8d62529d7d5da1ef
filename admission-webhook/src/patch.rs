//! Building the RFC 6902 JSON Patch of a mutation, against the object as the API server sent it.
//!
//! Only `add` and `replace` are used. Every operation is computed from the original object, so
//! an operation is emitted only when it changes something: a second pass over the patched object
//! yields no operations (the webhook is idempotent, as `reinvocationPolicy: IfNeeded` needs).

use serde_json::{json, Map, Value};

/// Escapes one JSON Pointer reference token (RFC 6901): `~` → `~0`, `/` → `~1`, so that
/// `gantry.dev/tenant` becomes `gantry.dev~1tenant`.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The operations of one mutation.
#[derive(Debug, Default)]
pub struct Patch {
    ops: Vec<Value>,
}

impl Patch {
    pub fn into_ops(self) -> Vec<Value> {
        self.ops
    }

    /// Sets `entries` in the string map at `/metadata/{map}` (`labels` or `annotations`) of `pod`:
    /// adds the whole map when the pod has none, otherwise adds missing keys and replaces
    /// different values. Keys already equal are left alone.
    pub fn set_metadata(&mut self, pod: &Value, map: &str, entries: &[(&str, String)]) {
        if entries.is_empty() {
            return;
        }
        let Some(existing) = pod.get("metadata").and_then(|m| m.get(map)).and_then(Value::as_object) else {
            let all: Map<String, Value> = entries.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect();
            self.ops.push(json!({"op": "add", "path": format!("/metadata/{map}"), "value": all}));
            return;
        };
        for (key, value) in entries {
            let path = format!("/metadata/{map}/{}", escape(key));
            match existing.get(*key) {
                Some(v) if v.as_str() == Some(value.as_str()) => {}
                Some(_) => self.ops.push(json!({"op": "replace", "path": path, "value": value})),
                None => self.ops.push(json!({"op": "add", "path": path, "value": value})),
            }
        }
    }

    /// Adds the scheduling gate `name` to `/spec/schedulingGates` unless the pod has it.
    pub fn add_scheduling_gate(&mut self, pod: &Value, name: &str) {
        match pod.get("spec").and_then(|s| s.get("schedulingGates")).and_then(Value::as_array) {
            Some(gates) if gates.iter().any(|g| g.get("name").and_then(Value::as_str) == Some(name)) => {}
            Some(_) => self
                .ops
                .push(json!({"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": name}})),
            None => self
                .ops
                .push(json!({"op": "add", "path": "/spec/schedulingGates", "value": [{"name": name}]})),
        }
    }

    /// Sets the string field `/spec/{field}` to `value` unless it already is.
    pub fn set_spec_string(&mut self, pod: &Value, field: &str, value: &str) {
        let path = format!("/spec/{}", escape(field));
        match pod.get("spec").and_then(|s| s.get(field)) {
            Some(v) if v.as_str() == Some(value) => {}
            Some(_) => self.ops.push(json!({"op": "replace", "path": path, "value": value})),
            None => self.ops.push(json!({"op": "add", "path": path, "value": value})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(escape("gantry.dev/tenant"), "gantry.dev~1tenant");
        assert_eq!(escape("a~b/c"), "a~0b~1c");
    }

    #[test]
    fn maps_are_created_added_to_or_left_alone() {
        let mut p = Patch::default();
        p.set_metadata(&json!({"metadata": {}}), "labels", &[("gantry.dev/kind", "batch".into())]);
        let pod = json!({"metadata": {"labels": {"gantry.dev/kind": "batch", "gantry.dev/tenant": "x"}}});
        p.set_metadata(
            &pod,
            "labels",
            &[("gantry.dev/kind", "batch".into()), ("gantry.dev/tenant", "y".into()), ("a/b", "c".into())],
        );
        assert_eq!(
            p.into_ops(),
            vec![
                json!({"op": "add", "path": "/metadata/labels", "value": {"gantry.dev/kind": "batch"}}),
                json!({"op": "replace", "path": "/metadata/labels/gantry.dev~1tenant", "value": "y"}),
                json!({"op": "add", "path": "/metadata/labels/a~1b", "value": "c"}),
            ]
        );
    }
}
