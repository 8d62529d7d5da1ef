//! Reading a `v1.Node` into the core's node model: the node GPU inventory contract.
//!
//! The contract between the node agent (which publishes) and the scheduler (which reads), on the
//! Node object itself so that one watch carries everything:
//!
//! - GPU count: `status.allocatable["nvidia.com/gpu"]` (the device plugin's count);
//! - GPU model: the label `nvidia.com/gpu.product` (set by NVIDIA GPU Feature Discovery, or by
//!   Gantry's node agent where GFD does not run);
//! - CPU and memory: `status.allocatable.cpu` and `.memory`;
//! - GPU health: the annotation `gantry.dev/gpu-unhealthy`, a comma-separated list of GPU indexes
//!   the node agent has found failed (XID, double-bit ECC, lost). Those GPUs are never offered.
//!   The node's GPUs are `status.capacity` (falling back to allocatable); when the device plugin
//!   allocates fewer, the highest healthy GPUs are held back too, so a GPU both name is counted
//!   out once and no more is offered than can be allocated.
//!
//! Documented for users in `docs/node-inventory.md`.

use std::collections::BTreeMap;

use crate::keys::{
    GPU_IDLE_CHECKED_AT_ANNOTATION, GPU_IDLE_PODS_ANNOTATION, GPU_PRODUCT_LABEL, GPU_RESOURCE,
    GPU_UNHEALTHY_ANNOTATION,
};
use crate::pod::{quantity, QuantityError};
use gantry_core::model::{ModelCatalog, ModelError, Node};
use serde_json::Value;

/// Why a node cannot be read. Each message names the node, the field and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("a node has no metadata.name")]
    NoName,
    /// `field`: the path of the value, such as `status.allocatable.cpu`.
    #[error("node {node}: {field} {source}")]
    Quantity {
        node: String,
        field: String,
        #[source]
        source: QuantityError,
    },
    #[error("node {node}: allocatable cpu is too large")]
    CpuTooLarge { node: String },
    #[error("node {node}: {gpus} GPUs is not a plausible count")]
    GpuCount { node: String, gpus: u64 },
    #[error("node {node}: {source}")]
    Model {
        node: String,
        #[source]
        source: ModelError,
    },
    #[error(
        "node {node} has {gpus} {GPU_RESOURCE} but no {GPU_PRODUCT_LABEL} label; run GPU Feature Discovery or Gantry's node agent on it"
    )]
    NoModelLabel { node: String, gpus: u32 },
    #[error("node {node}: {GPU_UNHEALTHY_ANNOTATION} names GPU {gpu:?}; give indexes from 0 to {last}")]
    BadUnhealthy { node: String, gpu: String, last: u32 },
}

/// The node agent's idle evidence on a node cannot be read ([`idle_pods`]); `why` says what is
/// wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "node {node}: {GPU_IDLE_PODS_ANNOTATION} {why}; it must be a JSON object of at most {MAX_IDLE_PODS} \
     \"namespace/pod\": unix seconds, as Gantry's node agent writes it"
)]
pub struct IdleEvidenceError {
    pub node: String,
    pub why: String,
}

/// A node read from the API, with the GPUs Gantry must not offer.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    pub node: Node,
    pub unhealthy: Vec<u32>,
}

/// Reads a node; new GPU models are added to `models`. Errors name the node, field and fix.
pub fn parse_node(v: &Value, models: &mut ModelCatalog) -> Result<NodeView, NodeError> {
    let name =
        v.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).ok_or(NodeError::NoName)?;
    let node = || name.to_string();
    let quantity_at = |field: String, q: &Value, scale: u64| {
        quantity(q, scale).map_err(|source| NodeError::Quantity { node: node(), field, source })
    };
    let allocatable = v.get("status").and_then(|s| s.get("allocatable"));
    let get = |k: &str| allocatable.and_then(|a| a.get(k));
    let field = |k: &str, scale: u64| {
        get(k).map_or(Ok(0), |q| quantity_at(format!("status.allocatable.{k}"), q, scale))
    };
    let cpu = u32::try_from(field("cpu", 1000)?).map_err(|_| NodeError::CpuTooLarge { node: node() })?;
    let memory = field("memory", 1)?.div_ceil(1 << 20);
    let count = |gpus: u64| u32::try_from(gpus).map_err(|_| NodeError::GpuCount { node: node(), gpus });
    let allocatable_gpus = count(field(GPU_RESOURCE, 1)?)?;
    // The GPUs the node has (capacity); the device plugin withholds the ones it found unhealthy
    // from allocatable, and those must not be counted out twice.
    let capacity = v.get("status").and_then(|s| s.get("capacity")).and_then(|c| c.get(GPU_RESOURCE));
    let capacity_gpus = match capacity {
        Some(q) => count(quantity_at(format!("status.capacity.{GPU_RESOURCE}"), q, 1)?)?,
        None => allocatable_gpus,
    };
    let gpus = capacity_gpus.max(allocatable_gpus);
    let label = v
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.get(GPU_PRODUCT_LABEL))
        .and_then(Value::as_str);
    let model = match (gpus, label) {
        (0, _) => None,
        (_, Some(product)) => {
            Some(models.intern(product).map_err(|source| NodeError::Model { node: node(), source })?)
        }
        (_, None) => return Err(NodeError::NoModelLabel { node: node(), gpus }),
    };
    let mut unhealthy = Vec::new();
    let annotation = v
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(GPU_UNHEALTHY_ANNOTATION))
        .and_then(Value::as_str);
    for part in annotation.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u32>() {
            Ok(i) if i < gpus => unhealthy.push(i),
            _ => {
                return Err(NodeError::BadUnhealthy {
                    node: node(),
                    gpu: part.to_string(),
                    last: gpus.saturating_sub(1),
                })
            }
        }
    }
    let mut node = Node::new(name, cpu, memory, gpus, model);
    // A failed GPU is taken out of what can be offered: it is never free.
    let mut withhold = |i: usize| {
        let free = std::mem::take(&mut node.gpu_free[i]);
        node.gpu_free_total -= free;
    };
    for &i in &unhealthy {
        withhold(i as usize);
    }
    // Never offer more than the device plugin allocates: withhold the highest healthy GPUs too
    // when it has excluded some the node agent has not named (it may judge health sooner).
    let mut offered = gpus as usize - unhealthy.len();
    for i in (0..gpus as usize).rev() {
        if offered <= allocatable_gpus as usize {
            break;
        }
        if !unhealthy.contains(&(i as u32)) {
            withhold(i);
            offered -= 1;
        }
    }
    Ok(NodeView { node, unhealthy })
}

/// The most pods one node's idle annotation may name (a node has a few dozen GPUs at most, so
/// this bounds what a broken or hostile writer can make the scheduler hold).
pub const MAX_IDLE_PODS: usize = 256;

/// How often, at least, the node agent confirms the idle pods it has written on its Node while
/// it names any ([`GPU_IDLE_CHECKED_AT_ANNOTATION`]), in seconds. Only nodes with idle pods are
/// written this often; the others are written on changes alone.
pub const IDLE_REFRESH_SECONDS: i64 = 60;

/// How old, at most, the node agent's last confirmation may be for its idle evidence to be used:
/// five refreshes, so that a slow or briefly failing API server does not drop it, while an agent
/// that stopped (crashed, evicted, its DaemonSet removed) stops speaking for its pods within
/// minutes instead of leaving them idle forever.
pub const IDLE_MAX_AGE_SECONDS: i64 = 5 * IDLE_REFRESH_SECONDS;

/// The node agent's idle evidence on one node, as read by [`idle_pods`].
///
/// The evidence is used only while it is **current**: the agent confirmed it within
/// [`IDLE_MAX_AGE_SECONDS`] of `now`, either way (the two clocks are different machines', so a
/// stamp slightly ahead is no reason to distrust it, and one far ahead is). The idle pods alone
/// change only on transitions, so without the stamp an agent that stopped would leave its last
/// word on the Node and a notebook that became busy since would still look idle, and be stopped.
/// Evidence without a stamp (an agent older than the stamp) is never current.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdleOnNode {
    /// `namespace/pod` → unix seconds since which every GPU the pod holds has been idle.
    pub pods: BTreeMap<String, i64>,
    /// When the agent last confirmed `pods` (unix seconds); `None`: it did not say.
    pub checked_at: Option<i64>,
}

impl IdleOnNode {
    /// Whether the evidence may be used at `now` (see the type's docs).
    pub fn current(&self, now: i64) -> bool {
        self.checked_at.is_some_and(|t| now.abs_diff(t) <= IDLE_MAX_AGE_SECONDS.unsigned_abs())
    }

    /// Since when `namespace/pod`'s GPUs have all been idle, by evidence current at `now`;
    /// `None`: busy, not on this node, or the evidence is not current.
    pub fn idle_since(&self, pod: &str, now: i64) -> Option<i64> {
        self.pods.get(pod).copied().filter(|_| self.current(now))
    }
}

/// The node agent's idle evidence on a node ([`GPU_IDLE_PODS_ANNOTATION`]: `namespace/pod` →
/// unix seconds since which every GPU the pod holds has been idle, and
/// [`GPU_IDLE_CHECKED_AT_ANNOTATION`]: when the agent last confirmed it). Absent: none. A value
/// that is not such an object, names more than [`MAX_IDLE_PODS`] pods, or a stamp that is not unix
/// seconds, is an error naming the node and the fix; the caller then treats the node as having no
/// idle pods (never as all idle).
pub fn idle_pods(v: &Value) -> Result<IdleOnNode, IdleEvidenceError> {
    let name = v.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("?");
    let annotation = |key: &str| {
        v.get("metadata").and_then(|m| m.get("annotations")).and_then(|a| a.get(key)).and_then(Value::as_str)
    };
    let Some(text) = annotation(GPU_IDLE_PODS_ANNOTATION) else {
        return Ok(IdleOnNode::default());
    };
    let bad = |why: String| IdleEvidenceError { node: name.to_string(), why };
    let pods: BTreeMap<String, i64> =
        serde_json::from_str(text).map_err(|e| bad(format!("is not readable ({e})")))?;
    if pods.len() > MAX_IDLE_PODS {
        return Err(bad(format!("names {} pods", pods.len())));
    }
    if let Some(k) =
        pods.keys().find(|k| k.split_once('/').is_none_or(|(ns, pod)| ns.is_empty() || pod.is_empty()))
    {
        return Err(bad(format!("has the key {k:?}, not namespace/pod")));
    }
    let checked_at = annotation(GPU_IDLE_CHECKED_AT_ANNOTATION)
        .map(|t| {
            t.trim().parse::<i64>().map_err(|_| {
                bad(format!("is confirmed by {GPU_IDLE_CHECKED_AT_ANNOTATION} {t:?}, not unix seconds"))
            })
        })
        .transpose()?;
    Ok(IdleOnNode { pods, checked_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: Value, annotations: Value, gpus: &str) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels, "annotations": annotations},
               "status": {"allocatable": {"cpu": "95500m", "memory": "768Gi", "nvidia.com/gpu": gpus}}})
    }

    #[test]
    fn gpu_nodes_cpu_nodes_and_failed_gpus() {
        let mut models = ModelCatalog::default();
        let v = parse_node(
            &node(json!({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}), json!({}), "8"),
            &mut models,
        )
        .unwrap();
        assert_eq!((v.node.cpu_capacity, v.node.memory_capacity, v.node.gpu_count()), (95500, 768 * 1024, 8));
        assert_eq!(models.name(v.node.model.unwrap()), "NVIDIA-A100-SXM4-80GB");
        let v = parse_node(
            &node(
                json!({"nvidia.com/gpu.product": "A100"}),
                json!({"gantry.dev/gpu-unhealthy": "3, 5"}),
                "8",
            ),
            &mut models,
        )
        .unwrap();
        assert_eq!(v.unhealthy, [3, 5]);
        assert_eq!((v.node.gpu_free[3], v.node.gpu_free[5], v.node.gpu_free_total), (0, 0, 6000));
        let cpu =
            json!({"metadata": {"name": "c"}, "status": {"allocatable": {"cpu": "16", "memory": "64Gi"}}});
        assert_eq!(parse_node(&cpu, &mut models).unwrap().node.model, None);
    }

    #[test]
    fn gpus_the_device_plugin_withholds_are_not_counted_out_twice() {
        let with = |unhealthy: &str, capacity: &str, allocatable: &str| {
            let mut n = node(
                json!({"nvidia.com/gpu.product": "A100"}),
                json!({"gantry.dev/gpu-unhealthy": unhealthy}),
                allocatable,
            );
            n["status"]["capacity"] = json!({"nvidia.com/gpu": capacity});
            parse_node(&n, &mut ModelCatalog::default()).map(|v| {
                (v.node.gpu_count(), v.node.gpu_free.iter().map(|&f| u8::from(f > 0)).collect::<Vec<_>>())
            })
        };
        // GPU 3 fell off the bus: the agent names it, the device plugin no longer allocates it.
        assert_eq!(with("3", "4", "3"), Ok((4, vec![1, 1, 1, 0])));
        assert_eq!(with("1", "4", "3"), Ok((4, vec![1, 0, 1, 1])), "the same GPU, not one more");
        // The device plugin saw it first: the highest GPU is held back until the agent says which.
        assert_eq!(with("", "4", "3"), Ok((4, vec![1, 1, 1, 0])));
        assert_eq!(with("0", "4", "2"), Ok((4, vec![0, 1, 1, 0])));
        assert_eq!(with("", "4", "4"), Ok((4, vec![1, 1, 1, 1])));
        assert!(with("4", "4", "3").unwrap_err().to_string().contains("from 0 to 3"));
    }

    #[test]
    fn bad_nodes_name_the_fix() {
        let mut m = ModelCatalog::default();
        assert!(parse_node(&node(json!({}), json!({}), "8"), &mut m)
            .unwrap_err()
            .to_string()
            .contains("GPU Feature Discovery"));
        let bad = parse_node(
            &node(json!({"nvidia.com/gpu.product": "A100"}), json!({"gantry.dev/gpu-unhealthy": "9"}), "8"),
            &mut m,
        );
        assert!(matches!(bad, Err(NodeError::BadUnhealthy { last: 7, .. })));
        assert!(bad.unwrap_err().to_string().contains("from 0 to 7"));
        assert_eq!(parse_node(&json!({"status": {}}), &mut m).unwrap_err(), NodeError::NoName);
        assert!(parse_node(&json!({"status": {}}), &mut m)
            .unwrap_err()
            .to_string()
            .contains("metadata.name"));
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_793_500_000;

    fn node(annotation: Option<&str>, checked_at: Option<&str>) -> Value {
        let mut annotations = json!({});
        if let Some(a) = annotation {
            annotations["gantry.dev/gpu-idle-pods"] = json!(a);
        }
        if let Some(t) = checked_at {
            annotations["gantry.dev/gpu-idle-checked-at"] = json!(t);
        }
        json!({"metadata": {"name": "n1", "annotations": annotations}})
    }

    #[test]
    fn idle_pods_are_read_from_the_node_agents_annotation() {
        assert_eq!(idle_pods(&node(None, None)).unwrap(), IdleOnNode::default());
        let stamp = NOW.to_string();
        let read = idle_pods(&node(
            Some(r#"{"team-a/nb-0": 1793491200, "team-b/x-1": 1793494800}"#),
            Some(stamp.as_str()),
        ))
        .unwrap();
        assert_eq!(read.pods.get("team-a/nb-0"), Some(&1_793_491_200));
        assert_eq!((read.pods.len(), read.checked_at), (2, Some(NOW)));
        assert_eq!(read.idle_since("team-a/nb-0", NOW + 10), Some(1_793_491_200));
        assert_eq!(read.idle_since("team-c/other", NOW + 10), None);
    }

    /// Each case: when the agent last confirmed (`None`: it did not say) and whether its
    /// evidence is used at `NOW`.
    #[test]
    fn idle_evidence_is_used_only_while_the_agent_keeps_confirming_it() {
        let cases: [(&str, Option<i64>, bool); 7] = [
            ("confirmed this second", Some(NOW), true),
            ("confirmed a refresh ago", Some(NOW - IDLE_REFRESH_SECONDS), true),
            ("confirmed at the oldest allowed", Some(NOW - IDLE_MAX_AGE_SECONDS), true),
            ("the agent stopped confirming", Some(NOW - IDLE_MAX_AGE_SECONDS - 1), false),
            ("the agent's clock a little ahead", Some(NOW + 30), true),
            ("a stamp far in the future", Some(NOW + IDLE_MAX_AGE_SECONDS + 1), false),
            ("written by an agent that does not confirm", None, false),
        ];
        for (case, checked_at, used) in cases {
            let stamp = checked_at.map(|t| t.to_string());
            let read = idle_pods(&node(Some(r#"{"team-a/nb-0": 1793491200}"#), stamp.as_deref())).unwrap();
            assert_eq!(read.current(NOW), used, "{case}");
            assert_eq!(read.idle_since("team-a/nb-0", NOW).is_some(), used, "{case}");
        }
    }

    #[test]
    fn a_broken_idle_annotation_is_an_error_that_names_the_node_and_the_form() {
        let too_many: BTreeMap<String, i64> = (0..=MAX_IDLE_PODS).map(|i| (format!("ns/p{i}"), 1)).collect();
        let too_many = serde_json::to_string(&too_many).unwrap();
        let stamp = NOW.to_string();
        for (text, checked_at, words) in [
            ("[1, 2]", stamp.as_str(), "is not readable"),
            (r#"{"nb-0": 1}"#, stamp.as_str(), "not namespace/pod"),
            (r#"{"team-a/nb": "soon"}"#, stamp.as_str(), "is not readable"),
            (too_many.as_str(), stamp.as_str(), "names 257 pods"),
            (
                r#"{"team-a/nb": 1}"#,
                "yesterday",
                "gantry.dev/gpu-idle-checked-at \"yesterday\", not unix seconds",
            ),
        ] {
            let e = idle_pods(&node(Some(text), Some(checked_at))).unwrap_err().to_string();
            assert!(e.starts_with("node n1: gantry.dev/gpu-idle-pods"), "{e}");
            assert!(e.contains(words) && e.contains("namespace/pod"), "{e}");
        }
    }
}
