//! AdmissionReview v1 on the wire (`k8s.io/api/admission/v1`, the types the API server sends): reading a request
//! leniently but safely, and writing the reply exactly as the API server requires.
//!
//! Requests are read as a `serde_json::Value` (serde_json refuses nesting deeper than 128, so a
//! hostile body cannot overflow the stack); only the fields Gantry uses are looked at, and unknown
//! ones are ignored. Replies are built by hand rather than through a typed model so that the
//! rules the API server enforces (`VerifyAdmissionResponse`) are visible here:
//!
//! - top level `apiVersion: admission.k8s.io/v1` and `kind: AdmissionReview`;
//! - `response.uid` equal to the request's;
//! - a mutating reply carries `patch` (base64 of an RFC 6902 JSON Patch) and `patchType:
//!   JSONPatch` together or neither; a validating reply never carries them;
//! - a denial carries `status` `{code: 403, reason: Forbidden, message}`; the message is what the
//!   user reads after `admission webhook "<name>" denied the request: `.

use base64::Engine;
use serde_json::{json, Map, Value};

/// The only AdmissionReview version Gantry speaks (`admissionReviewVersions: [v1]`).
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// The parts of an AdmissionReview request Gantry reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub uid: String,
    /// `request.kind.kind`, e.g. `Pod`.
    pub kind: String,
    /// `request.subResource`; empty for the object itself.
    pub sub_resource: String,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    /// `request.namespace` (authoritative: `object.metadata.namespace` may be absent on CREATE).
    pub namespace: String,
    /// `request.object`, or `Null` when absent.
    pub object: Value,
    /// `request.oldObject` (UPDATE), or `Null` when absent.
    pub old_object: Value,
    /// `request.userInfo.username`: who makes the change.
    pub user: String,
}

impl Request {
    /// Whether this is the creation of a Pod: the only request Gantry acts on.
    pub fn is_pod_create(&self) -> bool {
        self.is_pod("CREATE")
    }

    /// Whether this is a change to a Pod object itself (not its status or another subresource).
    pub fn is_pod_update(&self) -> bool {
        self.is_pod("UPDATE")
    }

    fn is_pod(&self, operation: &str) -> bool {
        self.kind == "Pod" && self.operation == operation && self.sub_resource.is_empty()
    }
}

/// Why a body is not an AdmissionReview Gantry can answer. With a readable uid the answer is an
/// AdmissionReview denial; without one it is an HTTP 400 whose text is [`DecodeError::message`].
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub uid: Option<String>,
    pub message: String,
}

/// Reads an AdmissionReview v1 request body.
pub fn decode(body: &[u8]) -> Result<Request, DecodeError> {
    let fail = |uid: Option<String>, message: String| DecodeError { uid, message };
    let mut review: Value = serde_json::from_slice(body).map_err(|e| {
        fail(None, format!("the body is not JSON ({e}); send an AdmissionReview ({API_VERSION})"))
    })?;
    let Some(request) = review.get("request").filter(|r| r.is_object()) else {
        return Err(fail(
            None,
            format!("the body has no \"request\" object; send an AdmissionReview ({API_VERSION})"),
        ));
    };
    let Some(uid) = request.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty()) else {
        return Err(fail(None, "request.uid is missing or empty; the API server always sends one".into()));
    };
    let uid = uid.to_string();
    // Lenient: a missing apiVersion is accepted, another version is not (its reply would differ).
    if let Some(v) = review.get("apiVersion") {
        if v.as_str() != Some(API_VERSION) {
            return Err(fail(Some(uid), format!("apiVersion {v} is not supported; set admissionReviewVersions: [v1] in the webhook configuration")));
        }
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    // Take the object out rather than copy it: it is most of the body.
    let mut take = |field: &str| {
        review.get_mut("request").and_then(|r| r.get_mut(field)).map(Value::take).unwrap_or(Value::Null)
    };
    let object = take("object");
    let old_object = take("oldObject");
    let request = review.get("request").unwrap_or(&Value::Null);
    let namespace = match text(request.get("namespace")) {
        ns if !ns.is_empty() => ns,
        _ => text(object.get("metadata").and_then(|m| m.get("namespace"))),
    };
    Ok(Request {
        uid,
        kind: text(request.get("kind").and_then(|k| k.get("kind"))),
        sub_resource: text(request.get("subResource")),
        operation: text(request.get("operation")),
        namespace,
        object,
        old_object,
        user: text(request.get("userInfo").and_then(|u| u.get("username"))),
    })
}

/// One decision, before it is written as an AdmissionReview.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// `None`: allowed; `Some(message)`: denied with that message.
    pub denial: Option<String>,
    /// HTTP-like code of a denial: 403 (policy) or 400 (an unreadable object).
    pub code: u16,
    /// JSON Patch operations (mutating only); empty: no patch.
    pub patch: Vec<Value>,
    pub warnings: Vec<String>,
}

impl Decision {
    pub fn allow() -> Decision {
        Decision { code: 200, ..Decision::default() }
    }
    pub fn deny(message: impl Into<String>) -> Decision {
        Decision { denial: Some(message.into()), code: 403, ..Decision::default() }
    }
    /// A denial of an object that cannot be read (HTTP 400, reason BadRequest).
    pub fn bad_request(message: impl Into<String>) -> Decision {
        Decision { denial: Some(message.into()), code: 400, ..Decision::default() }
    }
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }
}

/// A denial message longer than this is cut: it may quote hostile input.
const MAX_MESSAGE: usize = 4096;
/// Warnings reach the client as HTTP `Warning` headers, which may be cut beyond 256 characters.
const MAX_WARNING: usize = 256;

/// Writes the AdmissionReview reply for request `uid`. `mutating` says whether patch fields may
/// appear at all: a validating reply never has them, even if the decision carries operations.
pub fn reply(uid: &str, decision: &Decision, mutating: bool) -> Value {
    let mut response = Map::new();
    response.insert("uid".into(), json!(uid));
    response.insert("allowed".into(), json!(decision.allowed()));
    if let Some(message) = &decision.denial {
        let reason = if decision.code == 400 { "BadRequest" } else { "Forbidden" };
        let message = truncate(message, MAX_MESSAGE);
        response
            .insert("status".into(), json!({"code": decision.code, "reason": reason, "message": message}));
    }
    if mutating && decision.allowed() && !decision.patch.is_empty() {
        let bytes = serde_json::to_vec(&decision.patch).unwrap_or_default();
        response.insert("patchType".into(), json!("JSONPatch"));
        response.insert("patch".into(), json!(base64::engine::general_purpose::STANDARD.encode(bytes)));
    }
    if !decision.warnings.is_empty() {
        let warnings: Vec<String> = decision.warnings.iter().map(|w| truncate(w, MAX_WARNING)).collect();
        response.insert("warnings".into(), json!(warnings));
    }
    json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response})
}

/// `s` cut to at most `max` bytes on a character boundary, marked with "…" when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validating_replies_never_carry_a_patch() {
        let d = Decision { patch: vec![json!({"op": "add", "path": "/x", "value": 1})], ..Decision::allow() };
        let r = reply("u", &d, false);
        assert!(r["response"].get("patch").is_none() && r["response"].get("patchType").is_none());
        let r = reply("u", &d, true);
        assert_eq!(r["response"]["patchType"], "JSONPatch");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 5), "abc");
        let t = truncate(&"é".repeat(200), 256);
        assert!(t.len() <= 256 && t.ends_with('…'));
    }
}
