//! Carries the queue controller's [`Action`]s out against the API server: the thin Kubernetes
//! layer around the pure decisions.
//!
//! - `Ungate`: one strategic-merge patch per pod that records the planned node and GPUs in the
//!   `gantry.dev/placement` annotation and deletes Gantry's scheduling gate (gates merge by name);
//! - `Release`: the same patch without a placement record, for pods that are not Gantry's to
//!   queue (a gang with no GPU pod), and the condition True saying so;
//! - `Evict`: the Eviction API, so PodDisruptionBudgets are honoured, then an Event saying why;
//! - `Pending`: the pod condition `gantry.dev/admitted` = False with the core's explanation (on
//!   the `pods/status` subresource; conditions merge by type), and an Event through kube-runtime's
//!   recorder, which folds repeats into a count. `kubectl describe pod` shows both. On admission
//!   the condition turns True;
//! - `Refused`: the condition `gantry.dev/admitted` = False (reason `Refused`) and a Warning
//!   Event, both saying why the pod can never run as asked.
//!
//! - `StopNotebook`: a merge patch setting `kubeflow-resource-stopped` (the time, RFC 3339) on
//!   the Kubeflow Notebook (`kubeflow.org/v1`), as the Kubeflow UI's stop button and Kubeflow's
//!   culler do (the notebook controller scales its StatefulSet to zero; the user starts it again
//!   from the UI, which removes the annotation), then an Event on the Notebook saying why.
//!
//! The run loop calls `apply` only when a pod's message changes, so a waiting pod costs no API
//! calls per cycle.

use crate::controller::{Action, PodRef};
use gantry_api::keys::{
    ADMITTED_CONDITION, NOTEBOOK_STOPPED_ANNOTATION, PLACEMENT_ANNOTATION, SCHEDULING_GATE,
};
use gantry_api::placement::Planned;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, ApiResource, DynamicObject, EvictParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use serde_json::json;

/// Kubeflow's Notebook (kubeflow/kubeflow, components/notebook-controller/api/v1/
/// notebook_types.go).
fn notebook_resource() -> ApiResource {
    ApiResource {
        group: "kubeflow.org".into(),
        version: "v1".into(),
        api_version: "kubeflow.org/v1".into(),
        kind: "Notebook".into(),
        plural: "notebooks".into(),
    }
}

/// The controller's name in Events and field managers.
pub const MANAGER: &str = "gantry-scheduler";

/// What failed when carrying out an action.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("cannot ungate pod {ns}/{name}: {source}")]
    Ungate { ns: String, name: String, source: kube::Error },
    #[error("cannot evict pod {ns}/{name}: {source}")]
    Evict { ns: String, name: String, source: kube::Error },
    #[error("cannot set the {ADMITTED_CONDITION} condition of pod {ns}/{name}: {source}")]
    Condition { ns: String, name: String, source: kube::Error },
    #[error("cannot record an event on pod {ns}/{name}: {source}")]
    Event { ns: String, name: String, source: kube::Error },
    #[error("cannot stop Notebook {ns}/{name}: {source}")]
    StopNotebook { ns: String, name: String, source: kube::Error },
}

impl AdapterError {
    /// An eviction the API server refused (a PodDisruptionBudget's 429, a permission, ...): the
    /// pod still runs. A pod already gone (404) was not refused.
    pub fn eviction_refused(&self) -> bool {
        match self {
            AdapterError::Evict { source: kube::Error::Api(e), .. } => e.code != 404,
            AdapterError::Evict { .. } => true,
            _ => false,
        }
    }
}

/// Applies actions with one client.
pub struct Adapter {
    client: Client,
    /// For evictions: by default the same client (see [`Adapter::with_eviction_client`]).
    evictions: Client,
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

impl Adapter {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter { controller: MANAGER.into(), instance });
        Adapter { evictions: client.clone(), client, recorder }
    }

    /// Evictions through `client`: one that does not retry 429, for a PodDisruptionBudget's
    /// refusal is an answer, which a retrying client would keep asking for minutes, holding up
    /// every other action of the cycle.
    pub fn with_eviction_client(mut self, client: Client) -> Self {
        self.evictions = client;
        self
    }

    async fn event(
        &self,
        pod: &PodRef,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), AdapterError> {
        self.event_on(&reference(pod), type_, reason, note).await
    }

    async fn event_on(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), AdapterError> {
        // Event notes are limited to 1 kB.
        let note: String = note.chars().take(1000).collect();
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Admission".into(),
            secondary: None,
        };
        self.recorder.publish(&ev, object).await.map_err(|source| AdapterError::Event {
            ns: object.namespace.clone().unwrap_or_default(),
            name: object.name.clone().unwrap_or_default(),
            source,
        })
    }

    /// Sets the `gantry.dev/admitted` condition (status "True" or "False"). `was` is its status
    /// now, if known: `lastTransitionTime` is written only when the status changes (conditions
    /// merge by type, so the time already there stays).
    async fn condition(
        &self,
        pod: &PodRef,
        status: &str,
        reason: &str,
        message: &str,
        was: Option<&str>,
    ) -> Result<(), AdapterError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let mut condition = json!({"type": ADMITTED_CONDITION, "status": status, "reason": reason, "message": message.chars().take(1000).collect::<String>()});
        if was != Some(status) {
            let now =
                jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now());
            condition["lastTransitionTime"] = json!(now.to_string());
        }
        let patch = json!({"status": {"conditions": [condition]}});
        api.patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map(|_| ())
            .map_err(|source| AdapterError::Condition {
                ns: pod.namespace.clone(),
                name: pod.name.clone(),
                source,
            })
    }

    /// Carries `action` out, not knowing the pod's condition (its transition time is set anew).
    pub async fn apply(&self, action: &Action) -> Result<(), AdapterError> {
        self.apply_to(action, None).await
    }

    /// Carries `action` out on a pod whose `gantry.dev/admitted` condition has status `was`.
    pub async fn apply_to(&self, action: &Action, was: Option<&str>) -> Result<(), AdapterError> {
        match action {
            Action::Ungate { pod, node, gpus, at } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                let patch = json!({
                    "metadata": {"annotations": {PLACEMENT_ANNOTATION: Planned::value(node, gpus, *at)}},
                    "spec": {"schedulingGates": [{"$patch": "delete", "name": SCHEDULING_GATE}]},
                });
                api.patch(&pod.name, &PatchParams::default(), &Patch::Strategic(patch)).await.map_err(
                    |source| AdapterError::Ungate {
                        ns: pod.namespace.clone(),
                        name: pod.name.clone(),
                        source,
                    },
                )?;
                self.condition(
                    pod,
                    "True",
                    "Admitted",
                    &format!("admitted by Gantry's queue; planned for node {node}"),
                    was,
                )
                .await
            }
            Action::Release { pod, message } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                let patch =
                    json!({"spec": {"schedulingGates": [{"$patch": "delete", "name": SCHEDULING_GATE}]}});
                api.patch(&pod.name, &PatchParams::default(), &Patch::Strategic(patch)).await.map_err(
                    |source| AdapterError::Ungate {
                        ns: pod.namespace.clone(),
                        name: pod.name.clone(),
                        source,
                    },
                )?;
                self.condition(pod, "True", "Released", message, was).await
            }
            Action::Evict { pod, message } => {
                let api: Api<Pod> = Api::namespaced(self.evictions.clone(), &pod.namespace);
                api.evict(&pod.name, &EvictParams::default()).await.map_err(|source| {
                    AdapterError::Evict { ns: pod.namespace.clone(), name: pod.name.clone(), source }
                })?;
                self.event(pod, EventType::Normal, "GantryPreempted", message).await
            }
            Action::Pending { pod, message } => {
                self.condition(pod, "False", "Waiting", message, was).await?;
                self.event(pod, EventType::Normal, "GantryWaiting", message).await
            }
            Action::Refused { pod, message } => {
                self.condition(pod, "False", "Refused", message, was).await?;
                self.event(pod, EventType::Warning, "GantryRefused", message).await
            }
            Action::StopNotebook { pod, name, stop } => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &pod.namespace, &notebook_resource());
                let at = jiff::Timestamp::from_second(stop.at).unwrap_or_else(|_| jiff::Timestamp::now());
                let patch =
                    json!({"metadata": {"annotations": {NOTEBOOK_STOPPED_ANNOTATION: at.to_string()}}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.map_err(|source| {
                    AdapterError::StopNotebook { ns: pod.namespace.clone(), name: name.clone(), source }
                })?;
                let notebook = ObjectReference {
                    api_version: Some("kubeflow.org/v1".into()),
                    kind: Some("Notebook".into()),
                    namespace: Some(pod.namespace.clone()),
                    name: Some(name.clone()),
                    ..Default::default()
                };
                self.event_on(&notebook, EventType::Normal, "GantryIdleStopped", &stop.message).await
            }
        }
    }
}
