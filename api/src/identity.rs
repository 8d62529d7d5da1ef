//! Which workload a pod belongs to, and what kind of work it is, from the keys the ML frameworks
//! put on their pods (`shared/reference/PROTOCOLS.md` §3). Pods of one workload form one gang
//! that the queue admits whole.
//!
//! Order: explicit gang keys (scheduler-plugins PodGroup, Volcano group, Kueue pod group); then
//! framework labels (Kubeflow training, JobSet, KServe, Kubeflow Notebook, Argo / Kubeflow
//! Pipelines); then the pod's controller owner; a pod with none is a workload of its own.
//! The admission webhook uses the same rules to tag pods.

use crate::keys::*;
use crate::pod;
use gantry_core::tenancy::Kind;
use serde_json::Value;

/// Where a pod's workload identity came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    PodGroup,
    VolcanoGroup,
    KueuePodGroup,
    KubeflowTraining,
    JobSet,
    KServe,
    Notebook,
    /// An Argo workflow step; with `pipelines.kubeflow.org/v2_component`, a Kubeflow Pipelines step.
    PipelineStep,
    Owner,
    Pod,
}

/// A pod's workload: a key unique in the cluster, its kind and where both came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `namespace/source/name`, e.g. `team-a/pytorchjob/bert` or `team-a/pod-group/pg1`.
    pub key: String,
    pub kind: Kind,
    pub source: Source,
}

/// A label's value when set and not empty: an empty value is no key.
fn label<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod::label(pod, key).filter(|s| !s.is_empty())
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod::annotation(pod, key).filter(|s| !s.is_empty())
}

/// Identifies a pod's workload. Never fails: a pod with no known keys is its own workload.
pub fn identify(pod: &Value) -> Identity {
    let ns = pod.get("metadata").and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or("default");
    let name = pod.get("metadata").and_then(|m| m.get("name").or_else(|| m.get("generateName"))).and_then(Value::as_str).unwrap_or("");
    let id = |what: &str, value: &str, kind: Kind, source: Source| Identity { key: format!("{ns}/{what}/{value}"), kind, source };
    // 1. explicit gang keys
    if let Some(g) = label(pod, POD_GROUP_LABEL) {
        return id("pod-group", g, Kind::Training, Source::PodGroup);
    }
    if let Some(g) = annotation(pod, VOLCANO_GROUP_ANNOTATION).or_else(|| annotation(pod, VOLCANO_GROUP_ANNOTATION_OLD)) {
        return id("volcano-group", g, Kind::Training, Source::VolcanoGroup);
    }
    if let Some(g) = label(pod, KUEUE_POD_GROUP_LABEL) {
        return id("kueue-pod-group", g, Kind::Training, Source::KueuePodGroup);
    }
    // 2. framework labels
    if let Some(job) = label(pod, TRAINING_JOB_NAME_LABEL) {
        let kind = owner(pod).map_or("trainingjob".to_string(), |(k, _)| k.to_ascii_lowercase());
        return id(&kind, job, Kind::Training, Source::KubeflowTraining);
    }
    if let Some(js) = label(pod, JOBSET_NAME_LABEL) {
        return id("jobset", js, Kind::Training, Source::JobSet);
    }
    if let Some(isvc) = label(pod, KSERVE_ISVC_LABEL).or_else(|| label(pod, KFSERVING_ISVC_LABEL)) {
        return id("inferenceservice", isvc, Kind::Serving, Source::KServe);
    }
    if let Some(nb) = label(pod, NOTEBOOK_NAME_LABEL) {
        return id("notebook", nb, Kind::Notebook, Source::Notebook);
    }
    if let Some(wf) = label(pod, ARGO_WORKFLOW_LABEL) {
        // Each step is admitted on its own: the workflow names the run, the pod the step.
        return id(&format!("workflow/{wf}"), name, Kind::PipelineStep, Source::PipelineStep);
    }
    // 3. the controller owner
    if let Some((kind, owner_name)) = owner(pod) {
        let work = match kind {
            "Job" | "CronJob" => Kind::Batch,
            "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => Kind::Serving,
            _ => Kind::Batch,
        };
        return id(&kind.to_ascii_lowercase(), owner_name, work, Source::Owner);
    }
    id("pod", name, Kind::Batch, Source::Pod)
}

/// The controller owner reference: (kind, name).
fn owner(pod: &Value) -> Option<(&str, &str)> {
    let refs = pod.get("metadata")?.get("ownerReferences")?.as_array()?;
    let r = refs.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
    Some((r.get("kind")?.as_str()?, r.get("name")?.as_str()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value, annotations: Value, owners: Value) -> Value {
        json!({"metadata": {"name": "p-0", "namespace": "team-a", "labels": labels, "annotations": annotations, "ownerReferences": owners}})
    }

    #[test]
    fn identification_follows_the_documented_order() {
        let owner = |kind: &str, name: &str| json!([{"apiVersion": "x/v1", "kind": kind, "name": name, "uid": "u", "controller": true}]);
        let none = json!({});
        let cases = [
            // (labels, annotations, owners, key, kind, source)
            (json!({"scheduling.x-k8s.io/pod-group": "pg1", "training.kubeflow.org/job-name": "bert"}), none.clone(), json!([]),
             "team-a/pod-group/pg1", Kind::Training, Source::PodGroup),
            (none.clone(), json!({"scheduling.k8s.io/group-name": "podgroup-x"}), json!([]), "team-a/volcano-group/podgroup-x", Kind::Training, Source::VolcanoGroup),
            (json!({"kueue.x-k8s.io/pod-group-name": "g"}), none.clone(), json!([]), "team-a/kueue-pod-group/g", Kind::Training, Source::KueuePodGroup),
            (json!({"training.kubeflow.org/job-name": "bert", "training.kubeflow.org/replica-type": "worker"}), none.clone(), owner("PyTorchJob", "bert"),
             "team-a/pytorchjob/bert", Kind::Training, Source::KubeflowTraining),
            (json!({"jobset.sigs.k8s.io/jobset-name": "llm"}), none.clone(), owner("Job", "llm-node-0"), "team-a/jobset/llm", Kind::Training, Source::JobSet),
            (json!({"serving.kserve.io/inferenceservice": "sk", "component": "predictor"}), none.clone(), owner("ReplicaSet", "sk-predictor-1"),
             "team-a/inferenceservice/sk", Kind::Serving, Source::KServe),
            (json!({"notebook-name": "nb", "statefulset": "nb"}), none.clone(), owner("StatefulSet", "nb"), "team-a/notebook/nb", Kind::Notebook, Source::Notebook),
            (json!({"workflows.argoproj.io/workflow": "run-1", "pipelines.kubeflow.org/v2_component": "true"}), none.clone(), owner("Workflow", "run-1"),
             "team-a/workflow/run-1/p-0", Kind::PipelineStep, Source::PipelineStep),
            (none.clone(), none.clone(), owner("Job", "etl"), "team-a/job/etl", Kind::Batch, Source::Owner),
            (none.clone(), none.clone(), owner("ReplicaSet", "web-5d8"), "team-a/replicaset/web-5d8", Kind::Serving, Source::Owner),
            (none.clone(), none.clone(), json!([]), "team-a/pod/p-0", Kind::Batch, Source::Pod),
        ];
        for (labels, annotations, owners, key, kind, source) in cases {
            let got = identify(&pod(labels.clone(), annotations, owners));
            assert_eq!(got, Identity { key: key.into(), kind, source }, "{labels}");
        }
    }

    #[test]
    fn odd_pods_still_get_an_identity() {
        assert_eq!(identify(&json!({})).key, "default/pod/");
        let not_controller = json!({"metadata": {"name": "x", "ownerReferences": [{"kind": "Job", "name": "j", "controller": false}]}});
        assert_eq!(identify(&not_controller).source, Source::Pod);
        let empty_label = json!({"metadata": {"name": "x", "labels": {"scheduling.x-k8s.io/pod-group": ""}}});
        assert_eq!(identify(&empty_label).source, Source::Pod, "an empty value is no key");
    }
}
