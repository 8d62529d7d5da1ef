//! kube-scheduler extender v1 wire types (`k8s.io/kube-scheduler/extender/v1`).
//!
//! The Go structs have no json tags, so the keys are the Go field names in PascalCase and nil
//! maps and slices are `null`. Replies are emitted in exactly that casing. Go's decoder matches keys
//! case-insensitively, so requests are accepted in any casing of the top-level keys.
//!
//! Filter and prioritize are the hot path (kube-scheduler calls both for every GPU pod, naming up
//! to every node), so their types borrow from the request body: node names are slices of it, and
//! full nodes stay raw JSON that a filter reply returns byte for byte as they came in. Nothing is
//! copied per node unless a name holds a JSON escape.

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// The highest score an extender may give (`MaxExtenderPriority`).
pub const MAX_PRIORITY: i64 = 10;

/// Filter and prioritize request, borrowing from the body it was parsed from.
#[derive(Clone, Debug, Default)]
pub struct ExtenderArgs<'a> {
    /// `null` when missing; the reply's `Error` then says so. Pods are small; they are read whole.
    pub pod: Value,
    /// Full nodes when the extender is not `nodeCacheCapable`: `{"metadata":{},"items":[...]}`.
    pub nodes: Option<NodeList<'a>>,
    /// Node names when it is.
    pub node_names: Option<Vec<Cow<'a, str>>>,
}

impl<'a> ExtenderArgs<'a> {
    /// Parses a filter or prioritize body. The error names the request type and the problem.
    pub fn parse(body: &'a [u8]) -> Result<Self, String> {
        // One UTF-8 check of the whole body is cheaper than one per node name.
        let text = std::str::from_utf8(body).map_err(|e| format!("the body is not valid JSON for ExtenderArgs: it is not UTF-8 ({e})"))?;
        let mut de = serde_json::Deserializer::from_str(text);
        let args = ExtenderArgs::deserialize(&mut de).and_then(|a| de.end().map(|()| a));
        args.map_err(|e| match e.classify() {
            serde_json::error::Category::Data => format!("ExtenderArgs is malformed: {e}"),
            _ => format!("the body is not valid JSON for ExtenderArgs: {e}"),
        })
    }
}

/// One node name; borrowed from the body unless it holds an escape.
struct Name<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a node name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// `NodeNames`: `null` or an array of names.
struct Names<'a>(Option<Vec<Cow<'a, str>>>);

impl<'de: 'a, 'a> Deserialize<'de> for Names<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("null or an array of node names")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Names<'de>, E> {
                Ok(Names(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Names<'de>, E> {
                Ok(Names(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Names<'de>, D::Error> {
                d.deserialize_seq(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names<'de>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(Name(n)) = seq.next_element()? {
                    out.push(n);
                }
                Ok(Names(Some(out)))
            }
        }
        d.deserialize_option(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ExtenderArgs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtenderArgs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an ExtenderArgs object (Pod, Nodes, NodeNames)")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<ExtenderArgs<'de>, M::Error> {
                let mut args = ExtenderArgs::default();
                // Go's decoder matches keys case-insensitively and ignores unknown ones.
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key.eq_ignore_ascii_case("Pod") {
                        args.pod = map.next_value()?;
                    } else if key.eq_ignore_ascii_case("Nodes") {
                        args.nodes = map.next_value()?;
                    } else if key.eq_ignore_ascii_case("NodeNames") {
                        args.node_names = map.next_value::<Names>()?.0;
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                Ok(args)
            }
        }
        d.deserialize_map(V)
    }
}

/// A `v1.NodeList` as kube-scheduler sends it (no kind or apiVersion), nodes kept as raw JSON.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NodeList<'a> {
    #[serde(borrow, default)]
    pub metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub items: Vec<&'a RawValue>,
}

impl NodeList<'_> {
    /// The name of each node, in order; `None` when one has no `metadata.name`.
    pub fn names(&self) -> Option<Vec<Cow<'_, str>>> {
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(borrow)]
            metadata: NameOnly<'a>,
        }
        #[derive(Deserialize)]
        struct NameOnly<'a> {
            #[serde(borrow)]
            name: Cow<'a, str>,
        }
        self.items.iter().map(|raw| serde_json::from_str::<Meta>(raw.get()).ok().map(|m| m.metadata.name)).collect()
    }
}

/// Filter reply. Every field is always present, as Go emits it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderFilterResult<'a> {
    #[serde(borrow)]
    pub nodes: Option<NodeList<'a>>,
    pub node_names: Option<Vec<Cow<'a, str>>>,
    pub failed_nodes: Option<BTreeMap<String, String>>,
    /// Left out when `None`, as in upstream's golden JSON; Gantry always fills it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failed_and_unresolvable_nodes: Option<BTreeMap<String, String>>,
    pub error: String,
}

/// One node's score; the prioritize reply is a bare array of these.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HostPriority<'a> {
    pub host: Cow<'a, str>,
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

/// The top-level keys of the small request types, read with [`parse`].
pub const BINDING_KEYS: &[&str] = &["PodName", "PodNamespace", "PodUID", "Node"];
pub const PREEMPTION_KEYS: &[&str] = &["Pod", "NodeNameToVictims", "NodeNameToMetaVictims"];

/// Writes a JSON string. Names and messages rarely need escapes, so the common case is one scan
/// and one copy; anything else goes through serde_json's escaping.
fn push_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn push_map(out: &mut Vec<u8>, map: Option<&BTreeMap<String, String>>) {
    let Some(map) = map else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, k);
        out.push(b':');
        push_str(out, v);
    }
    out.push(b'}');
}

impl ExtenderFilterResult<'_> {
    /// The reply's JSON, byte for byte what `serde_json` makes of it (tests hold the two equal),
    /// written directly because filter replies can name thousands of nodes.
    pub fn to_json(&self) -> Vec<u8> {
        let names = self.node_names.as_ref().map_or(0, |n| n.iter().map(|s| s.len() + 3).sum());
        let raw = self.nodes.as_ref().map_or(0, |l| l.items.iter().map(|r| r.get().len() + 1).sum());
        let mut out = Vec::with_capacity(names + raw + 128);
        out.extend_from_slice(b"{\"Nodes\":");
        match &self.nodes {
            None => out.extend_from_slice(b"null"),
            Some(list) => {
                out.extend_from_slice(b"{\"metadata\":");
                out.extend_from_slice(list.metadata.map_or("null", |m| m.get()).as_bytes());
                out.extend_from_slice(b",\"items\":[");
                for (i, item) in list.items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(item.get().as_bytes());
                }
                out.extend_from_slice(b"]}");
            }
        }
        out.extend_from_slice(b",\"NodeNames\":");
        match &self.node_names {
            None => out.extend_from_slice(b"null"),
            Some(names) => {
                out.push(b'[');
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_str(&mut out, n);
                }
                out.push(b']');
            }
        }
        out.extend_from_slice(b",\"FailedNodes\":");
        push_map(&mut out, self.failed_nodes.as_ref());
        if let Some(unresolvable) = &self.failed_and_unresolvable_nodes {
            out.extend_from_slice(b",\"FailedAndUnresolvableNodes\":");
            push_map(&mut out, Some(unresolvable));
        }
        out.extend_from_slice(b",\"Error\":");
        push_str(&mut out, &self.error);
        out.push(b'}');
        out
    }
}

/// The prioritize reply (a bare array), written directly like [`ExtenderFilterResult::to_json`].
pub fn priorities_json(list: &[HostPriority<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list.iter().map(|h| h.host.len() + 24).sum::<usize>() + 2);
    out.push(b'[');
    for (i, h) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Host\":");
        push_str(&mut out, &h.host);
        out.extend_from_slice(b",\"Score\":");
        match u8::try_from(h.score) {
            Ok(d @ 0..=9) => out.push(b'0' + d),
            _ => out.extend_from_slice(h.score.to_string().as_bytes()),
        }
        out.push(b'}');
    }
    out.push(b']');
    out
}
