//! The node's GPUs as the scheduler reads them (`docs/node-inventory.md`), written on the agent's
//! own Node object:
//!
//! - label `nvidia.com/gpu.product`: the model as GPU Feature Discovery spells it (spaces become
//!   `-`), so the two agree where both run;
//! - annotation `gantry.dev/gpu-unhealthy`: the indexes of failed GPUs (absent when none), which
//!   the scheduler never offers to new work;
//! - annotation `gantry.dev/gpu-inventory`: every GPU's index, UUID, model, memory, NVLink peers
//!   and health with its reason and time, as JSON, for people and tools.
//!
//! [`Publisher`] patches only when what it would write differs from what the Node has, and backs
//! off (1 s doubling to 60 s) after a failed call, so a flapping API server is not hammered.

use crate::health::{HealthState, Tracker};
use crate::sample::Frame;
use gantry_api::keys::{GPU_INVENTORY_ANNOTATION, GPU_PRODUCT_LABEL, GPU_UNHEALTHY_ANNOTATION};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Why [`Publisher::publish`] could not bring the Node in line. The API server's error is kept as
/// the `source`; the message names the Node.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The Node's metadata could not be read.
    #[error("cannot read Node {node}: {source}")]
    ReadNode {
        node: String,
        #[source]
        source: kube::Error,
    },
    /// The merge patch of the inventory was refused or failed.
    #[error("cannot write the GPU inventory on Node {node}: {source}")]
    WriteNode {
        node: String,
        #[source]
        source: kube::Error,
    },
    /// The Node's metadata could not be turned into JSON to compare with (not expected of a
    /// metadata object the client itself decoded).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// What the agent wants on its Node: each key's value, `None` to remove it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Desired {
    pub labels: BTreeMap<String, Option<String>>,
    pub annotations: BTreeMap<String, Option<String>>,
}

/// The model as GPU Feature Discovery writes it in `nvidia.com/gpu.product`.
pub fn product_label(model: &str) -> String {
    model.trim().replace(' ', "-")
}

/// The inventory of the latest pass.
pub fn desired(frame: &Frame, health: &Tracker) -> Desired {
    let mut gpus: Vec<_> = frame.gpus.iter().collect();
    gpus.sort_by_key(|g| g.index);
    let mut d = Desired::default();
    // The model of the lowest index, as GPU Feature Discovery does; a node with no GPU listed
    // keeps whatever label it has.
    if let Some(first) = gpus.first().filter(|g| !g.model.is_empty()) {
        d.labels.insert(GPU_PRODUCT_LABEL.into(), Some(product_label(&first.model)));
    }
    let mut failed: Vec<u32> =
        health.health().filter(|(_, _, h)| h.state == HealthState::Failed).map(|(_, i, _)| i).collect();
    failed.sort_unstable();
    failed.dedup();
    let list: Vec<String> = failed.iter().map(u32::to_string).collect();
    d.annotations.insert(GPU_UNHEALTHY_ANNOTATION.into(), (!list.is_empty()).then(|| list.join(",")));

    let by_bus: BTreeMap<&str, u32> =
        gpus.iter().filter_map(|g| Some((g.pci_bus_id.as_deref()?, g.index))).collect();
    let mut items: Vec<Value> = gpus
        .iter()
        .map(|g| {
            let mut peers: Vec<u32> =
                g.nvlinks.iter().filter_map(|l| by_bus.get(l.remote_pci_bus_id.as_str()).copied()).collect();
            peers.sort_unstable();
            peers.dedup();
            let h = health.of(&g.uuid);
            let mut o = Map::new();
            o.insert("index".into(), json!(g.index));
            o.insert("uuid".into(), json!(g.uuid));
            o.insert("model".into(), json!(g.model));
            if let Some(b) = g.memory_total_bytes {
                o.insert("memoryMiB".into(), json!(b / (1024 * 1024)));
            }
            o.insert("nvlinks".into(), json!(g.nvlinks.len()));
            o.insert("nvlinkPeers".into(), json!(peers));
            o.insert("health".into(), json!(h.map_or("healthy", |h| h.state.name())));
            if let Some(h) = h.filter(|h| h.state != HealthState::Healthy) {
                o.insert("reason".into(), json!(h.reason));
                o.insert("since".into(), json!(h.since));
            }
            Value::Object(o)
        })
        .collect();
    // GPUs that vanished stay listed, failed, so the record says what happened to them.
    for (uuid, index, h) in health.health().filter(|(u, _, _)| !gpus.iter().any(|g| g.uuid == *u)) {
        items.push(json!({"index": index, "uuid": uuid, "health": h.state.name(), "reason": h.reason, "since": h.since}));
    }
    d.annotations.insert(GPU_INVENTORY_ANNOTATION.into(), Some(json!({"gpus": items}).to_string()));
    d
}

/// What of `desired` differs from the Node's metadata: the merge patch to send, or `None`.
pub fn diff(node: &Value, desired: &Desired) -> Option<Value> {
    let mut patch = Map::new();
    for (map, wanted) in [("labels", &desired.labels), ("annotations", &desired.annotations)] {
        let have = node.get("metadata").and_then(|m| m.get(map));
        let mut changes = Map::new();
        for (k, v) in wanted {
            let current = have.and_then(|h| h.get(k)).and_then(Value::as_str);
            if current != v.as_deref() {
                changes.insert(k.clone(), v.as_ref().map_or(Value::Null, |v| json!(v)));
            }
        }
        if !changes.is_empty() {
            patch.insert(map.into(), Value::Object(changes));
        }
    }
    (!patch.is_empty()).then(|| json!({"metadata": patch}))
}

/// Writes the inventory on the agent's own Node.
pub struct Publisher {
    api: Api<Node>,
    node: String,
    /// The Node's metadata as last read or written (`None`: read it first).
    known: Option<Value>,
    backoff: Duration,
    not_before: Option<Instant>,
}

/// The field manager of the agent's writes.
pub const MANAGER: &str = "gantry-node-agent";

impl Publisher {
    pub fn new(client: Client, node: impl Into<String>) -> Publisher {
        Publisher {
            api: Api::all(client),
            node: node.into(),
            known: None,
            backoff: Duration::from_secs(1),
            not_before: None,
        }
    }

    /// Brings the Node in line with `desired`: reads it once, then patches only what differs.
    /// Returns whether a patch was sent. While backing off after a failure it does nothing.
    pub async fn publish(&mut self, desired: &Desired) -> Result<bool, PublishError> {
        if self.not_before.is_some_and(|t| Instant::now() < t) {
            return Ok(false);
        }
        let result = self.try_publish(desired).await;
        match &result {
            Ok(_) => {
                self.backoff = Duration::from_secs(1);
                self.not_before = None;
            }
            Err(_) => {
                self.known = None;
                self.not_before = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
            }
        }
        result
    }

    async fn try_publish(&mut self, desired: &Desired) -> Result<bool, PublishError> {
        let known = match self.known.take() {
            Some(k) => k,
            None => {
                let node = self
                    .api
                    .get_metadata(&self.node)
                    .await
                    .map_err(|source| PublishError::ReadNode { node: self.node.clone(), source })?;
                serde_json::to_value(&node)?
            }
        };
        let Some(patch) = diff(&known, desired) else {
            self.known = Some(known);
            return Ok(false);
        };
        let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
        let node = self
            .api
            .patch_metadata(&self.node, &params, &Patch::Merge(&patch))
            .await
            .map_err(|source| PublishError::WriteNode { node: self.node.clone(), source })?;
        self.known = Some(serde_json::to_value(&node)?);
        Ok(true)
    }
}
