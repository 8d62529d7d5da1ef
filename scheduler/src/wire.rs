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
    pub fn parse(body: &'a [u8]) -> Result<Self, RequestError> {
        too_many_values(body, "ExtenderArgs")?;
        // One UTF-8 check of the whole body is cheaper than one per node name.
        let text = std::str::from_utf8(body)
            .map_err(|source| RequestError::NotUtf8 { what: "ExtenderArgs", source })?;
        if let Some(args) = Self::parse_plain(text) {
            return Ok(args);
        }
        Self::parse_serde(text)
    }

    /// The whole request read by serde: any JSON, and the errors.
    fn parse_serde(text: &'a str) -> Result<Self, RequestError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let args = ExtenderArgs::deserialize(&mut de).and_then(|a| de.end().map(|()| a));
        args.map_err(|source| match source.classify() {
            serde_json::error::Category::Data => RequestError::Malformed { what: "ExtenderArgs", source },
            _ => RequestError::NotJson { what: "ExtenderArgs", source },
        })
    }

    /// The usual request read with the node names split by hand, which costs a fraction of
    /// serde's reading of thousands of names: `None` unless the text is an object whose
    /// `NodeNames` is `null` or an array of strings without escapes, and whose keys have none
    /// either. Every other value goes through serde whole (which checks it) and the structure
    /// between them is checked here, so what this accepts is valid JSON and reads as
    /// [`Self::parse_serde`] reads it.
    fn parse_plain(text: &'a str) -> Option<Self> {
        let b = text.as_bytes();
        let mut args = ExtenderArgs::default();
        let mut i = skip_ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                let (key, end) = plain_string(text, i)?;
                i = skip_ws(b, end);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                i = skip_ws(b, i + 1);
                if key.eq_ignore_ascii_case("NodeNames") {
                    let (names, end) = plain_names(text, i)?;
                    args.node_names = names;
                    i = end;
                } else {
                    // One value, and where it ends.
                    fn value<'a, T: Deserialize<'a>>(text: &'a str, i: &mut usize) -> Option<T> {
                        let mut values = serde_json::Deserializer::from_str(&text[*i..]).into_iter::<T>();
                        let v = values.next()?.ok()?;
                        *i += values.byte_offset();
                        Some(v)
                    }
                    if key.eq_ignore_ascii_case("Pod") {
                        args.pod = value(text, &mut i)?;
                    } else if key.eq_ignore_ascii_case("Nodes") {
                        args.nodes = value(text, &mut i)?;
                    } else {
                        value::<de::IgnoredAny>(text, &mut i)?;
                    }
                }
                i = skip_ws(b, i);
                match b.get(i) {
                    Some(b',') => i = skip_ws(b, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        (skip_ws(b, i) == b.len()).then_some(args)
    }
}

/// The first index from `i` on that is not JSON whitespace.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\t' | b'\r')) {
        i += 1;
    }
    i
}

/// The index of the first byte from `i` on that cannot stand in a JSON string as it is: a
/// quote, a backslash or a control character; `b.len()` if none.
#[inline]
fn special(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // Eight bytes at a time: a byte below n sets its high bit in (v - n) & !v (and no byte
    // below the first such one does), a byte equal to c is a zero byte of v ^ c.
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * n as u64) & !v & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let v = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let found = below(v, 0x20) | below(v ^ (ONES * b'"' as u64), 1) | below(v ^ (ONES * b'\\' as u64), 1);
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] >= 0x20 && b[i] != b'"' && b[i] != b'\\' {
        i += 1;
    }
    i
}

/// The string starting at `i` (at its opening quote) and the index after it; `None` unless it
/// is there and holds no escape (nor a control character, which JSON forbids).
#[inline]
fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let end = special(b, i + 1);
    // A quote is ASCII, so `end` is a character boundary.
    (b.get(end) == Some(&b'"')).then(|| (&text[i + 1..end], end + 1))
}

/// `null` or an array of plain strings at `i`, and the index after it.
fn plain_names(text: &str, i: usize) -> Option<(Option<Vec<Cow<'_, str>>>, usize)> {
    let b = text.as_bytes();
    if b[i..].starts_with(b"null") {
        return Some((None, i + 4));
    }
    if b.get(i) != Some(&b'[') {
        return None;
    }
    // Room for names of a dozen bytes; the Vec grows for shorter ones.
    let mut out = Vec::with_capacity((b.len() - i) / 16);
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some((Some(out), i + 1));
    }
    loop {
        let (name, end) = plain_string(text, i)?;
        out.push(Cow::Borrowed(name));
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Some((Some(out), i + 1)),
            _ => return None,
        }
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
        self.items
            .iter()
            .map(|raw| serde_json::from_str::<Meta>(raw.get()).ok().map(|m| m.metadata.name))
            .collect()
    }
}

/// Filter reply. Every field is always present, as Go emits it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderFilterResult<'a> {
    #[serde(borrow)]
    pub nodes: Option<NodeList<'a>>,
    pub node_names: Option<Vec<Cow<'a, str>>>,
    pub failed_nodes: Option<FailedNodes<'a>>,
    /// Left out when `None`, as in upstream's golden JSON; Gantry always fills it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failed_and_unresolvable_nodes: Option<FailedNodes<'a>>,
    pub error: String,
}

/// A failed-nodes map (upstream's `FailedNodesMap`, node name → reason) as a filter builds it:
/// node names borrowed from the request, each with the index of its reason, shared by runs.
/// An 8-GPU pod fails most nodes of a busy cluster for one or two reasons; an owned string pair
/// in a sorted map per node was most of such a filter's cost. Written in the order the nodes
/// were added (a JSON object's order carries no meaning; decoding keeps the document's order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailedNodes<'a> {
    reasons: Vec<Cow<'a, str>>,
    nodes: Vec<(Cow<'a, str>, u32)>,
}

impl<'a> FailedNodes<'a> {
    /// Adds `node` with `reason`, stored once for a run of nodes that share it. Only the last
    /// reason is compared, so each push is constant time whatever the reasons (every node of a
    /// cold cache has its own); a reason that comes back after another is stored again, a
    /// borrowed one costing a pointer.
    pub fn push(&mut self, node: Cow<'a, str>, reason: Cow<'a, str>) {
        if self.reasons.last() != Some(&reason) {
            self.reasons.push(reason);
        }
        self.nodes.push((node, (self.reasons.len() - 1) as u32));
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// (node, reason) in the order written.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.nodes.iter().map(|(n, r)| (n.as_ref(), self.reasons[*r as usize].as_ref()))
    }

    /// The reason given for `node`, if it failed.
    pub fn get(&self, node: &str) -> Option<&str> {
        self.iter().find(|&(n, _)| n == node).map(|(_, r)| r)
    }
}

impl Serialize for FailedNodes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for FailedNodes<'_> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = FailedNodes<'static>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of node names to reasons")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = FailedNodes::default();
                while let Some((node, reason)) = map.next_entry::<String, String>()? {
                    out.push(Cow::Owned(node), Cow::Owned(reason));
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

impl<'a, N: Into<Cow<'a, str>>, R: Into<Cow<'a, str>>> FromIterator<(N, R)> for FailedNodes<'a> {
    fn from_iter<I: IntoIterator<Item = (N, R)>>(iter: I) -> Self {
        let mut out = FailedNodes::default();
        for (n, r) in iter {
            out.push(n.into(), r.into());
        }
        out
    }
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

/// Why a request body cannot be read; `what` is the request type kube-scheduler sent. The reply
/// is a 400 with this text.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the body holds more than {MAX_VALUES} JSON values, more than any {what} kube-scheduler sends")]
    TooManyValues { what: &'static str },
    #[error("the body is not valid JSON for {what}: it is not UTF-8 ({source})")]
    NotUtf8 {
        what: &'static str,
        #[source]
        source: std::str::Utf8Error,
    },
    #[error("the body is not valid JSON for {what}: {source}")]
    NotJson {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} must be a JSON object")]
    NotObject { what: &'static str },
    #[error("{what} is malformed: {source}")]
    Malformed {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The most JSON values a request may hold: a filter naming 100,000 nodes, or full objects of a
/// few thousand. Counted (without parsing) only in bodies above 1 MiB, which smaller ones cannot
/// exceed by much; a body of tiny values would otherwise become a tree tens of times its size.
pub const MAX_VALUES: usize = 2_000_000;

fn too_many_values(body: &[u8], what: &'static str) -> Result<(), RequestError> {
    if body.len() > 1 << 20 && gantry_serve::bodies::count_json_values(body, MAX_VALUES).is_err() {
        return Err(RequestError::TooManyValues { what });
    }
    Ok(())
}

/// Parses a request body, matching top-level keys case-insensitively as Go does. The error names
/// the request type and what is wrong.
pub fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    canonical: &[&str],
    what: &'static str,
) -> Result<T, RequestError> {
    too_many_values(body, what)?;
    let value: Value =
        serde_json::from_slice(body).map_err(|source| RequestError::NotJson { what, source })?;
    let Value::Object(map) = value else {
        return Err(RequestError::NotObject { what });
    };
    let mut fixed = Map::new();
    for (k, v) in map {
        let key = canonical.iter().find(|c| c.eq_ignore_ascii_case(&k)).map_or(k, |c| c.to_string());
        fixed.insert(key, v);
    }
    serde_json::from_value(Value::Object(fixed)).map_err(|source| RequestError::Malformed { what, source })
}

/// The top-level keys of the small request types, read with [`parse`].
pub const BINDING_KEYS: &[&str] = &["PodName", "PodNamespace", "PodUID", "Node"];
pub const PREEMPTION_KEYS: &[&str] = &["Pod", "NodeNameToVictims", "NodeNameToMetaVictims"];

/// Writes a JSON string. Names and messages rarely need escapes, so the common case is one scan
/// and one copy; anything else goes through serde_json's escaping.
#[inline]
fn push_str(out: &mut Vec<u8>, s: &str) {
    if special(s.as_bytes(), 0) == s.len() {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        push_escaped(out, s);
    }
}

#[cold]
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_map(out: &mut Vec<u8>, map: Option<&FailedNodes>) {
    let Some(map) = map else {
        out.extend_from_slice(b"null");
        return;
    };
    // Each reason encoded once, however many nodes share it.
    let reasons: Vec<Vec<u8>> = map
        .reasons
        .iter()
        .map(|r| {
            let mut v = Vec::with_capacity(r.len() + 2);
            push_str(&mut v, r);
            v
        })
        .collect();
    out.push(b'{');
    for (i, (k, r)) in map.nodes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, k);
        out.push(b':');
        out.extend_from_slice(&reasons[*r as usize]);
    }
    out.push(b'}');
}

impl ExtenderFilterResult<'_> {
    /// The reply's JSON, byte for byte what `serde_json` makes of it (tests hold the two equal),
    /// written directly because filter replies can name thousands of nodes.
    pub fn to_json(&self) -> Vec<u8> {
        let names = self.node_names.as_ref().map_or(0, |n| n.iter().map(|s| s.len() + 3).sum());
        let failed: usize = [&self.failed_nodes, &self.failed_and_unresolvable_nodes]
            .iter()
            .filter_map(|m| m.as_ref())
            .flat_map(|m| m.iter())
            .map(|(n, r)| n.len() + r.len() + 6)
            .sum();
        let raw = self.nodes.as_ref().map_or(0, |l| l.items.iter().map(|r| r.get().len() + 1).sum());
        let mut out = Vec::with_capacity(names + raw + failed + 128);
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
    for h in list {
        out.extend_from_slice(b"{\"Host\":");
        push_str(&mut out, &h.host);
        match h.score {
            // Scores are 0..=10 but for a misbehaving caller.
            d @ 0..=9 => out.extend_from_slice(&[
                b',',
                b'"',
                b'S',
                b'c',
                b'o',
                b'r',
                b'e',
                b'"',
                b':',
                b'0' + d as u8,
                b'}',
                b',',
            ]),
            10 => out.extend_from_slice(b",\"Score\":10},"),
            s => {
                use std::io::Write;
                // Writing into a Vec cannot fail.
                let _ = write!(out, ",\"Score\":{s}}},");
            }
        }
    }
    // The last comma closes the array instead.
    match out.last_mut() {
        Some(last @ b',') => *last = b']',
        _ => out.push(b']'),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-split reading takes only what it reads as serde does, and leaves the rest to it.
    #[test]
    fn plain_reading_equals_serde() {
        let taken = [
            r#"{"Pod": {"metadata": {"name": "p"}}, "Nodes": null, "NodeNames": ["a", "b-1", "ünï", ""]}"#,
            " \n{ \"nodenames\" :\t[ \"a\" ,\r\"b\" ] , \"POD\":1 }\n ",
            r#"{"NodeNames": [], "Extra": {"x": [1, "]", {"y": "}"}]}, "Nodes": {"metadata": {}, "items": [{"metadata": {"name": "n"}}]}}"#,
            r#"{"NodeNames": null}"#,
            r#"{"NodeNames": ["a"], "NodeNames": ["b", "c"]}"#,
            r#"{"Pod": 1e5, "Other": -0.5, "More": true}"#,
            r#"{}"#,
            "{\"NodeNames\": [\"abcdefghijklmnop\", \"0123456789abcdefghij\", \"x\"]}",
        ];
        let left = [
            r#"{"NodeNames": ["a\u002db", "plain"]}"#,
            r#"{"Node\u004eames": ["a"]}"#,
            "{\"NodeNames\": [\"tab\tin it\"]}",
            "{\"NodeNames\": [\"a long name with a tab\there\"]}",
            r#"{"NodeNames": [1]}"#,
            r#"{"NodeNames": ["a",]}"#,
            r#"{"NodeNames": ["a" "b"]}"#,
            r#"{"NodeNames": nul}"#,
            r#"{"NodeNames": nullx}"#,
            r#"{"Pod": {}, }"#,
            r#"{"Pod": {}} trailing"#,
            r#"{"Pod": {"a": }}"#,
            r#"{"Pod": 01}"#,
            r#"{"Pod": {}"#,
            r#"["NodeNames"]"#,
            r#"{"NodeNames": ["a"]"#,
            r#"{"NodeNames": ["a"}"#,
            r#"{"NodeNames": ["unterminated]}"#,
            "",
        ];
        for text in taken {
            let plain = ExtenderArgs::parse_plain(text).unwrap_or_else(|| panic!("not taken: {text}"));
            let serde = ExtenderArgs::parse_serde(text).unwrap();
            assert_eq!(format!("{plain:?}"), format!("{serde:?}"), "{text}");
            for n in plain.node_names.iter().flatten() {
                assert!(matches!(n, Cow::Borrowed(_)), "{text}");
            }
        }
        for text in left {
            assert!(ExtenderArgs::parse_plain(text).is_none(), "taken: {text}");
            // What serde makes of it is what parse answers.
            assert_eq!(
                format!("{:?}", ExtenderArgs::parse(text.as_bytes())),
                format!("{:?}", ExtenderArgs::parse_serde(text)),
                "{text}"
            );
        }
    }

    #[test]
    fn special_finds_the_first_byte_that_needs_an_escape() {
        for len in 0..20 {
            for at in 0..=len {
                for c in [b'"', b'\\', 0, 0x1f] {
                    let mut b = vec![b'a'; len];
                    // Bytes that must not count: high (UTF-8) and just above the controls.
                    for (k, x) in b.iter_mut().enumerate() {
                        *x = [b'a', 0xc3, 0x20, 0x7f, b'#', b']'][k % 6];
                    }
                    if at < len {
                        b[at] = c;
                    }
                    assert_eq!(special(&b, 0), at, "{b:?}");
                }
            }
        }
    }
}
