//! Carries the queue controller's [`Action`]s out against the API server: the thin Kubernetes
//! layer around the pure decisions.
//!
//! - `Ungate`: one strategic-merge patch per pod that records the planned node and GPUs in the
//!   `gantry.dev/placement` annotation and deletes Gantry's scheduling gate (gates merge by name);
//! - `Evict`: the Eviction API, so PodDisruptionBudgets are honoured, then an Event saying why;
//! - `Pending` and `Refused`: an Event on the pod through kube-runtime's recorder, which
//!   deduplicates repeats into a count instead of a new Event each cycle.

use crate::controller::{Action, PodRef, SCHEDULING_GATE};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, EvictParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use serde_json::json;

/// Where the planned placement is recorded: `node` or `node:gpu,gpu`.
pub const PLACEMENT_ANNOTATION: &str = "gantry.dev/placement";

/// The controller's name in Events and field managers.
pub const MANAGER: &str = "gantry-scheduler";

/// What failed when carrying out an action.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("cannot ungate pod {ns}/{name}: {source}")]
    Ungate { ns: String, name: String, source: kube::Error },
    #[error("cannot evict pod {ns}/{name}: {source}")]
    Evict { ns: String, name: String, source: kube::Error },
    #[error("cannot record an event on pod {ns}/{name}: {source}")]
    Event { ns: String, name: String, source: kube::Error },
}

/// Applies actions with one client.
pub struct Adapter {
    client: Client,
    recorder: Recorder,
}

fn reference(pod: &PodRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        uid: Some(pod.uid.clone()),
        ..Default::default()
    }
}

/// The placement annotation's value.
pub fn placement_value(node: &str, gpus: &[u32]) -> String {
    if gpus.is_empty() {
        node.to_string()
    } else {
        format!("{node}:{}", gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
    }
}

impl Adapter {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter { controller: MANAGER.into(), instance });
        Adapter { client, recorder }
    }

    async fn event(&self, pod: &PodRef, type_: EventType, reason: &str, note: &str) -> Result<(), AdapterError> {
        // Event notes are limited to 1 kB.
        let note: String = note.chars().take(1000).collect();
        let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Admission".into(), secondary: None };
        self.recorder.publish(&ev, &reference(pod)).await.map_err(|source| AdapterError::Event { ns: pod.namespace.clone(), name: pod.name.clone(), source })
    }

    pub async fn apply(&self, action: &Action) -> Result<(), AdapterError> {
        match action {
            Action::Ungate { pod, node, gpus } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                let patch = json!({
                    "metadata": {"annotations": {PLACEMENT_ANNOTATION: placement_value(node, gpus)}},
                    "spec": {"schedulingGates": [{"$patch": "delete", "name": SCHEDULING_GATE}]},
                });
                api.patch(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                    .map(|_| ())
                    .map_err(|source| AdapterError::Ungate { ns: pod.namespace.clone(), name: pod.name.clone(), source })
            }
            Action::Evict { pod, message } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                api.evict(&pod.name, &EvictParams::default())
                    .await
                    .map_err(|source| AdapterError::Evict { ns: pod.namespace.clone(), name: pod.name.clone(), source })?;
                self.event(pod, EventType::Normal, "GantryPreempted", message).await
            }
            Action::Pending { pod, message } => self.event(pod, EventType::Normal, "GantryWaiting", message).await,
            Action::Refused { pod, message } => self.event(pod, EventType::Warning, "GantryRefused", message).await,
        }
    }
}
