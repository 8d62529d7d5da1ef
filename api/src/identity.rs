//! Which workload a pod belongs to, and what kind of work it is, from the keys the ML frameworks
//! put on their pods. Pods of one workload form one gang that the queue admits whole. The
//! admission webhook writes [`Identity::key`] on the pod (`gantry.dev/workload`) and the queue
//! controller groups pods by the same function, so the two always agree.
//!
//! Order: explicit gang keys (scheduler-plugins PodGroup, Volcano group, Kueue pod group); then
//! framework labels (Kubeflow training operator and MPI operator, JobSet and so Trainer v2
//! TrainJob, KubeRay, LeaderWorkerSet, KServe, Kubeflow Notebook, Argo / Kubeflow Pipelines);
//! then the pod's controller owner; a pod with none is a workload of its own.
//!
//! Two rules keep keys stable:
//!
//! - a key never contains the pod's own name: at mutating admission a pod created with
//!   `generateName` has no name yet, and two such pods would share the key. A pod that is a
//!   workload of its own is told apart by its UID, which the queue controller appends
//!   ([`admission_key`]);
//! - the pods of one gang get one key whichever object created them: an MPIJob's launcher (owned
//!   by the batch Job `<name>-launcher`) and its workers (owned by the MPIJob) are both
//!   `<ns>/mpijob/<name>`.
//!
//! Pods whose gang size an owner object gives carry [`Identity::owner`]: the object to read
//! (see [`crate::gang`] for each framework's rule).

use crate::gang::{self, Framework};
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
    Ray,
    LeaderWorkerSet,
    KServe,
    Notebook,
    /// An Argo workflow step; with `pipelines.kubeflow.org/v2_component`, a Kubeflow Pipelines step.
    PipelineStep,
    /// A batch Job with `completionMode: Indexed` whose pods opt in with [`GANG_OPT_IN_LABEL`].
    IndexedJob,
    Owner,
    Pod,
}

/// The object whose spec says how many pods a gang has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GangOwner {
    pub framework: &'static Framework,
    pub namespace: String,
    pub name: String,
}

impl GangOwner {
    /// The key its gang size is kept under: [`gang::owner_key`] of the object.
    pub fn key(&self) -> String {
        gang::owner_key(self.framework, &self.namespace, &self.name)
    }

    /// As a user names it: `PyTorchJob team-a/bert`.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.framework.kind, self.namespace, self.name)
    }
}

/// A pod's workload: a key unique in the cluster, its kind and where both came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `namespace/source/name`, e.g. `team-a/pytorchjob/bert` or `team-a/pod-group/pg1`; for a
    /// pod that is a workload of its own, the group it was made by (`team-a/replicaset/web-5d8`,
    /// `team-a/pod`).
    pub key: String,
    pub kind: Kind,
    pub source: Source,
    /// The object that gives the gang's size, for pods of frameworks that define gangs.
    pub owner: Option<GangOwner>,
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
    let ns = pod::meta_str(pod, "namespace").unwrap_or("default");
    let id = |what: &str, value: &str, kind: Kind, source: Source| Identity {
        key: format!("{ns}/{what}/{value}"),
        kind,
        source,
        owner: None,
    };
    let owned = |mut i: Identity, framework: &'static Framework, name: &str| {
        i.owner = Some(GangOwner { framework, namespace: ns.to_string(), name: name.to_string() });
        i
    };
    // 1. explicit gang keys
    if let Some(g) = label(pod, POD_GROUP_LABEL) {
        return owned(id("pod-group", g, Kind::Training, Source::PodGroup), &gang::POD_GROUP, g);
    }
    if let Some(g) =
        annotation(pod, VOLCANO_GROUP_ANNOTATION).or_else(|| annotation(pod, VOLCANO_GROUP_ANNOTATION_OLD))
    {
        return owned(
            id("volcano-group", g, Kind::Training, Source::VolcanoGroup),
            &gang::VOLCANO_POD_GROUP,
            g,
        );
    }
    if let Some(g) = label(pod, KUEUE_POD_GROUP_LABEL) {
        return id("kueue-pod-group", g, Kind::Training, Source::KueuePodGroup);
    }
    // 2. framework labels
    if let Some(job) = label(pod, TRAINING_JOB_NAME_LABEL) {
        return match training_framework(pod) {
            Some(f) => {
                owned(id(&f.kind.to_ascii_lowercase(), job, Kind::Training, Source::KubeflowTraining), f, job)
            }
            // An operator Gantry does not know: the job is named, its size is not.
            None => id("trainingjob", job, Kind::Training, Source::KubeflowTraining),
        };
    }
    if let Some(js) = label(pod, JOBSET_NAME_LABEL) {
        return owned(id("jobset", js, Kind::Training, Source::JobSet), &gang::JOBSET, js);
    }
    if let Some(rc) = label(pod, RAY_CLUSTER_LABEL) {
        return owned(id("raycluster", rc, Kind::Training, Source::Ray), &gang::RAY_CLUSTER, rc);
    }
    if let Some(lws) = label(pod, LWS_NAME_LABEL) {
        // One gang per group of a LeaderWorkerSet, named by its leader pod: workers carry the
        // leader's name; the leader (worker index 0) is named by its StatefulSet, `<lws>-<group>`,
        // at creation (the group-index label comes later, from LWS's own webhook).
        let leader = annotation(pod, LWS_LEADER_NAME_ANNOTATION)
            .or_else(|| {
                (label(pod, LWS_WORKER_INDEX_LABEL) == Some("0"))
                    .then(|| pod::meta_str(pod, "name"))
                    .flatten()
            })
            .unwrap_or(lws);
        return owned(
            id("leaderworkerset", &format!("{lws}/{leader}"), Kind::Serving, Source::LeaderWorkerSet),
            &gang::LEADER_WORKER_SET,
            lws,
        );
    }
    if let Some(isvc) = label(pod, KSERVE_ISVC_LABEL).or_else(|| label(pod, KFSERVING_ISVC_LABEL)) {
        // A multi-node predictor's head and workers are one gang per generation: a new spec
        // rolls out a new gang beside the one still serving.
        if gang::kserve_multi_node(pod).is_some() {
            if let Some(generation) = label(pod, KSERVE_GENERATION_LABEL) {
                return id(
                    "inferenceservice",
                    &format!("{isvc}/{generation}"),
                    Kind::Serving,
                    Source::KServe,
                );
            }
        }
        return id("inferenceservice", isvc, Kind::Serving, Source::KServe);
    }
    if let Some(nb) = label(pod, NOTEBOOK_NAME_LABEL) {
        return id("notebook", nb, Kind::Notebook, Source::Notebook);
    }
    if let Some(wf) = label(pod, ARGO_WORKFLOW_LABEL) {
        // Each step is admitted on its own (the controller adds the pod's UID).
        return id("workflow", wf, Kind::PipelineStep, Source::PipelineStep);
    }
    // 3. the controller owner
    if let Some((kind, owner_name)) = owner(pod) {
        if kind == "Job" && label(pod, GANG_OPT_IN_LABEL) == Some("true") {
            return owned(
                id("job", owner_name, Kind::Training, Source::IndexedJob),
                &gang::INDEXED_JOB,
                owner_name,
            );
        }
        let work = match kind {
            "Job" | "CronJob" => Kind::Batch,
            "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => Kind::Serving,
            _ => Kind::Batch,
        };
        return id(&kind.to_ascii_lowercase(), owner_name, work, Source::Owner);
    }
    Identity { key: format!("{ns}/pod"), kind: Kind::Batch, source: Source::Pod, owner: None }
}

/// The key of the unit the queue admits: the gang's key when the pod is one of a gang
/// (`gang` true), else the key and the pod's UID, so that each such pod is a workload of its own.
pub fn admission_key(identity: &Identity, gang: bool, uid: &str) -> String {
    if gang {
        identity.key.clone()
    } else {
        format!("{}/{uid}", identity.key)
    }
}

/// The Notebook `(namespace, name)` a notebook workload's key names (`<ns>/notebook/<name>`,
/// with the pod's UID appended by [`admission_key`]); `None` for other keys.
pub fn notebook_of(key: &str) -> Option<(&str, &str)> {
    let mut parts = key.splitn(4, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some("notebook"), Some(name)) if !ns.is_empty() && !name.is_empty() => Some((ns, name)),
        _ => None,
    }
}

/// Which training operator made a pod labelled with [`TRAINING_JOB_NAME_LABEL`]: its controller
/// owner when that is a job kind; else the operator's name label; else, for a pod owned by a
/// batch Job, the MPI operator (whose launcher runs in the Job `<name>-launcher`).
fn training_framework(pod: &Value) -> Option<&'static Framework> {
    let owner_kind = owner(pod).map(|(k, _)| k);
    if let Some(f) = owner_kind.and_then(|k| gang::TRAINING.iter().copied().find(|f| f.kind == k)) {
        return Some(f);
    }
    if let Some(op) = label(pod, TRAINING_OPERATOR_NAME_LABEL) {
        if let Some(f) = gang::TRAINING.iter().copied().find(|f| f.operator_names.contains(&op)) {
            return Some(f);
        }
    }
    (owner_kind == Some("Job")).then_some(&gang::MPI_JOB)
}

/// The controller owner reference: (kind, name).
pub fn owner(pod: &Value) -> Option<(&str, &str)> {
    let refs = pod.get("metadata")?.get("ownerReferences")?.as_array()?;
    let r = refs.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
    Some((r.get("kind")?.as_str()?, r.get("name")?.as_str()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value, annotations: Value, owners: Value) -> Value {
        json!({"metadata": {"generateName": "p-", "namespace": "team-a", "labels": labels, "annotations": annotations, "ownerReferences": owners}})
    }

    fn owner(kind: &str, name: &str) -> Value {
        json!([{"apiVersion": "x/v1", "kind": kind, "name": name, "uid": "u", "controller": true}])
    }

    #[test]
    fn a_kserve_multi_node_predictors_pods_are_keyed_by_its_generation() {
        let env = json!([{"name": "PIPELINE_PARALLEL_SIZE", "value": "2"}, {"name": "TENSOR_PARALLEL_SIZE", "value": "8"},
                         {"name": "RAY_NODE_COUNT", "value": "2"}]);
        let labels = json!({"serving.kserve.io/inferenceservice": "llm", "isvc.generation": "4"});
        let mut head = pod(labels.clone(), json!({}), owner("ReplicaSet", "llm-predictor-6f8d"));
        head["spec"] = json!({"containers": [{"name": "kserve-container", "env": env}]});
        let mut worker = pod(labels, json!({}), owner("ReplicaSet", "llm-predictor-worker-5c7d"));
        worker["spec"] = json!({"containers": [{"name": "worker-container", "env": env}]});
        for p in [&head, &worker] {
            let i = identify(p);
            assert_eq!(
                (i.key.as_str(), i.kind, i.source),
                ("team-a/inferenceservice/llm/4", Kind::Serving, Source::KServe)
            );
        }
        // Without the generation label, or without the multi-node env: the InferenceService's key.
        head["metadata"]["labels"].as_object_mut().unwrap().remove("isvc.generation");
        assert_eq!(identify(&head).key, "team-a/inferenceservice/llm");
        worker["spec"]["containers"][0]["env"] = json!([]);
        assert_eq!(identify(&worker).key, "team-a/inferenceservice/llm");
    }

    #[test]
    fn identification_follows_the_documented_order() {
        let none = json!({});
        let cases = [
            // (labels, annotations, owners, key, kind, source, owner kind)
            (
                json!({"scheduling.x-k8s.io/pod-group": "pg1", "training.kubeflow.org/job-name": "bert"}),
                none.clone(),
                json!([]),
                "team-a/pod-group/pg1",
                Kind::Training,
                Source::PodGroup,
                Some("PodGroup"),
            ),
            (
                none.clone(),
                json!({"scheduling.k8s.io/group-name": "job-1-0a1b"}),
                owner("Job", "job-1"),
                "team-a/volcano-group/job-1-0a1b",
                Kind::Training,
                Source::VolcanoGroup,
                Some("PodGroup"),
            ),
            (
                json!({"kueue.x-k8s.io/pod-group-name": "g"}),
                none.clone(),
                json!([]),
                "team-a/kueue-pod-group/g",
                Kind::Training,
                Source::KueuePodGroup,
                None,
            ),
            (
                json!({"training.kubeflow.org/job-name": "bert", "training.kubeflow.org/replica-type": "worker", "training.kubeflow.org/operator-name": "pytorchjob-controller"}),
                none.clone(),
                owner("PyTorchJob", "bert"),
                "team-a/pytorchjob/bert",
                Kind::Training,
                Source::KubeflowTraining,
                Some("PyTorchJob"),
            ),
            (
                json!({"training.kubeflow.org/job-name": "bert", "training.kubeflow.org/job-role": "worker", "training.kubeflow.org/operator-name": "mpi-operator"}),
                none.clone(),
                owner("MPIJob", "bert"),
                "team-a/mpijob/bert",
                Kind::Training,
                Source::KubeflowTraining,
                Some("MPIJob"),
            ),
            // The MPI operator's launcher runs in the batch Job <name>-launcher: same gang as its workers.
            (
                json!({"training.kubeflow.org/job-name": "bert", "training.kubeflow.org/job-role": "launcher", "training.kubeflow.org/operator-name": "mpi-operator"}),
                none.clone(),
                owner("Job", "bert-launcher"),
                "team-a/mpijob/bert",
                Kind::Training,
                Source::KubeflowTraining,
                Some("MPIJob"),
            ),
            (
                json!({"training.kubeflow.org/job-name": "bert"}),
                none.clone(),
                owner("Job", "bert-launcher"),
                "team-a/mpijob/bert",
                Kind::Training,
                Source::KubeflowTraining,
                Some("MPIJob"),
            ),
            (
                json!({"training.kubeflow.org/job-name": "x"}),
                none.clone(),
                json!([]),
                "team-a/trainingjob/x",
                Kind::Training,
                Source::KubeflowTraining,
                None,
            ),
            (
                json!({"jobset.sigs.k8s.io/jobset-name": "llm"}),
                none.clone(),
                owner("Job", "llm-node-0"),
                "team-a/jobset/llm",
                Kind::Training,
                Source::JobSet,
                Some("JobSet"),
            ),
            (
                json!({"ray.io/cluster": "rc", "ray.io/node-type": "head"}),
                none.clone(),
                owner("RayCluster", "rc"),
                "team-a/raycluster/rc",
                Kind::Training,
                Source::Ray,
                Some("RayCluster"),
            ),
            (
                json!({"leaderworkerset.sigs.k8s.io/name": "vllm", "leaderworkerset.sigs.k8s.io/worker-index": "0"}),
                none.clone(),
                owner("StatefulSet", "vllm"),
                "team-a/leaderworkerset/vllm/p",
                Kind::Serving,
                Source::LeaderWorkerSet,
                Some("LeaderWorkerSet"),
            ),
            (
                json!({"leaderworkerset.sigs.k8s.io/name": "vllm"}),
                json!({"leaderworkerset.sigs.k8s.io/leader-name": "vllm-1"}),
                owner("StatefulSet", "vllm-1"),
                "team-a/leaderworkerset/vllm/vllm-1",
                Kind::Serving,
                Source::LeaderWorkerSet,
                Some("LeaderWorkerSet"),
            ),
            (
                json!({"serving.kserve.io/inferenceservice": "sk", "component": "predictor"}),
                none.clone(),
                owner("ReplicaSet", "sk-predictor-1"),
                "team-a/inferenceservice/sk",
                Kind::Serving,
                Source::KServe,
                None,
            ),
            (
                json!({"notebook-name": "nb", "statefulset": "nb"}),
                none.clone(),
                owner("StatefulSet", "nb"),
                "team-a/notebook/nb",
                Kind::Notebook,
                Source::Notebook,
                None,
            ),
            (
                json!({"workflows.argoproj.io/workflow": "run-1", "pipelines.kubeflow.org/v2_component": "true"}),
                none.clone(),
                owner("Workflow", "run-1"),
                "team-a/workflow/run-1",
                Kind::PipelineStep,
                Source::PipelineStep,
                None,
            ),
            (
                json!({"gantry.dev/gang": "true", "batch.kubernetes.io/job-name": "sweep"}),
                none.clone(),
                owner("Job", "sweep"),
                "team-a/job/sweep",
                Kind::Training,
                Source::IndexedJob,
                Some("Job"),
            ),
            (
                none.clone(),
                none.clone(),
                owner("Job", "etl"),
                "team-a/job/etl",
                Kind::Batch,
                Source::Owner,
                None,
            ),
            (
                none.clone(),
                none.clone(),
                owner("ReplicaSet", "web-5d8"),
                "team-a/replicaset/web-5d8",
                Kind::Serving,
                Source::Owner,
                None,
            ),
            (none.clone(), none.clone(), json!([]), "team-a/pod", Kind::Batch, Source::Pod, None),
        ];
        for (labels, annotations, owners, key, kind, source, owner_kind) in cases {
            let mut p = pod(labels.clone(), annotations, owners);
            if labels.get("leaderworkerset.sigs.k8s.io/worker-index").is_some() {
                p["metadata"]["name"] = json!("p");
            }
            let got = identify(&p);
            assert_eq!((got.key.as_str(), got.kind, got.source), (key, kind, source), "{labels}");
            assert_eq!(got.owner.as_ref().map(|o| o.framework.kind), owner_kind, "{labels}");
        }
    }

    #[test]
    fn the_owner_key_is_the_key_its_object_is_read_under() {
        let p =
            pod(json!({"training.kubeflow.org/job-name": "bert"}), json!({}), owner("PyTorchJob", "bert"));
        let owner = identify(&p).owner.expect("a gang owner");
        let object = json!({"metadata": {"namespace": "team-a", "name": "bert"}, "spec": {"pytorchReplicaSpecs": {"Worker": {"replicas": 2}}}});
        assert_eq!(owner.key(), gang::read(owner.framework, &object).unwrap().key);
        assert_eq!(owner.describe(), "PyTorchJob team-a/bert");
    }

    #[test]
    fn keys_never_hold_a_name_not_yet_given() {
        // Two ownerless pods with one generateName: the same group, told apart by UID.
        let (a, b) = (pod(json!({}), json!({}), json!([])), pod(json!({}), json!({}), json!([])));
        let (ia, ib) = (identify(&a), identify(&b));
        assert!(!ia.key.contains("p-"), "{}", ia.key);
        assert_ne!(admission_key(&ia, false, "uid-a"), admission_key(&ib, false, "uid-b"));
        // The same pod with its name given (as the controller sees it) has the same key.
        let mut named = a.clone();
        named["metadata"]["name"] = json!("p-x7k2q");
        assert_eq!(identify(&named).key, ia.key);
    }

    #[test]
    fn odd_pods_still_get_an_identity() {
        assert_eq!(identify(&json!({})).key, "default/pod");
        let not_controller = json!({"metadata": {"name": "x", "ownerReferences": [{"kind": "Job", "name": "j", "controller": false}]}});
        assert_eq!(identify(&not_controller).source, Source::Pod);
        let empty_label = json!({"metadata": {"name": "x", "labels": {"scheduling.x-k8s.io/pod-group": ""}}});
        assert_eq!(identify(&empty_label).source, Source::Pod, "an empty value is no key");
    }
}

#[cfg(test)]
mod notebook_tests {
    use super::*;

    #[test]
    fn a_notebooks_key_names_its_notebook_and_no_other_key_does() {
        assert_eq!(notebook_of("team-a/notebook/nb/3c5f-uid"), Some(("team-a", "nb")));
        assert_eq!(notebook_of("team-a/notebook/nb"), Some(("team-a", "nb")));
        for other in ["team-a/statefulset/nb/u", "team-a/pod/u", "team-a/notebook/", "/notebook/nb/u", "x"] {
            assert_eq!(notebook_of(other), None, "{other}");
        }
    }
}
