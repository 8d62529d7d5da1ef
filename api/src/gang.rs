//! A gang's size, from the object that creates its pods. The frameworks already say how many
//! pods a distributed job has; Gantry reads it there, so that no manifest needs a PodGroup or an
//! annotation to start whole.
//!
//! Each framework's rule is the function named after it below, and the table in
//! `docs/gangs.md` (which a test holds to [`FRAMEWORKS`]).
//!
//! Pods beyond `min` that the queue could not start with the rest start one by one as room
//! appears, as with a PodGroup's `minMember`; so do pods that join a gang already running (a
//! restarted worker, an elastic scale-up, an MPIJob launcher created once its workers run).
//!
//! A count that is not a whole number from 0 to [`MAX_GANG`], or a gang of no pods, is refused
//! with a message naming the object and the field: the gang never starts partly.

use serde_json::Value;

/// The largest gang Gantry accepts.
pub const MAX_GANG: u32 = 10_000;

/// A gang's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Pods the owner creates together.
    pub total: u32,
    /// The fewest that may start together; `total` for a strict gang.
    pub min: u32,
}

/// A framework's object that creates gangs, and how to read their size.
#[derive(Debug)]
pub struct Framework {
    pub group: &'static str,
    /// Versions to read, most preferred first (the API server may serve several).
    pub versions: &'static [&'static str],
    pub kind: &'static str,
    pub plural: &'static str,
    /// The key segment of its gangs (`team-a/<key_kind>/<name>`).
    pub key_kind: &'static str,
    /// Values of `training.kubeflow.org/operator-name` its operator puts on pods.
    pub operator_names: &'static [&'static str],
    /// Its rule: the size, or what is wrong, naming the field from the object's root.
    pub(crate) rule: fn(&Value) -> Result<Size, String>,
}

impl PartialEq for Framework {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.kind) == (other.group, other.kind)
    }
}

impl Eq for Framework {}

const fn training(
    kind: &'static str,
    key_kind: &'static str,
    operator_names: &'static [&'static str],
    rule: fn(&Value) -> Result<Size, String>,
) -> Framework {
    Framework { group: "kubeflow.org", versions: &["v1"], kind, plural: "", key_kind, operator_names, rule }
}

pub static PYTORCH_JOB: Framework = Framework {
    plural: "pytorchjobs",
    ..training("PyTorchJob", "pytorchjob", &["pytorchjob-controller"], pytorch_job)
};
pub static TF_JOB: Framework = Framework {
    plural: "tfjobs",
    ..training("TFJob", "tfjob", &["tfjob-controller"], |o| replica_specs(o, "tfReplicaSpecs", None))
};
pub static XGBOOST_JOB: Framework = Framework {
    plural: "xgboostjobs",
    ..training("XGBoostJob", "xgboostjob", &["xgboostjob-controller"], |o| {
        replica_specs(o, "xgbReplicaSpecs", None)
    })
};
pub static PADDLE_JOB: Framework = Framework {
    plural: "paddlejobs",
    ..training("PaddleJob", "paddlejob", &["paddlejob-controller"], |o| {
        replica_specs(o, "paddleReplicaSpecs", None)
    })
};
pub static JAX_JOB: Framework = Framework {
    plural: "jaxjobs",
    ..training("JAXJob", "jaxjob", &["jaxjob-controller"], |o| replica_specs(o, "jaxReplicaSpecs", None))
};
pub static MPI_JOB: Framework = Framework {
    versions: &["v2beta1"],
    plural: "mpijobs",
    ..training("MPIJob", "mpijob", &["mpi-operator", "mpijob-controller"], mpi_job)
};

/// The training operators' job kinds.
pub static TRAINING: [&Framework; 6] = [&PYTORCH_JOB, &TF_JOB, &XGBOOST_JOB, &PADDLE_JOB, &JAX_JOB, &MPI_JOB];

pub static JOBSET: Framework = Framework {
    group: "jobset.x-k8s.io",
    versions: &["v1alpha2"],
    kind: "JobSet",
    plural: "jobsets",
    key_kind: "jobset",
    operator_names: &[],
    rule: jobset,
};
pub static VOLCANO_POD_GROUP: Framework = Framework {
    group: "scheduling.volcano.sh",
    versions: &["v1beta1"],
    kind: "PodGroup",
    plural: "podgroups",
    key_kind: "volcano-group",
    operator_names: &[],
    rule: min_member,
};
pub static POD_GROUP: Framework = Framework {
    group: "scheduling.x-k8s.io",
    versions: &["v1alpha1"],
    kind: "PodGroup",
    plural: "podgroups",
    key_kind: "pod-group",
    operator_names: &[],
    rule: min_member,
};
pub static RAY_CLUSTER: Framework = Framework {
    group: "ray.io",
    versions: &["v1"],
    kind: "RayCluster",
    plural: "rayclusters",
    key_kind: "raycluster",
    operator_names: &[],
    rule: ray_cluster,
};
pub static LEADER_WORKER_SET: Framework = Framework {
    group: "leaderworkerset.x-k8s.io",
    versions: &["v1"],
    kind: "LeaderWorkerSet",
    plural: "leaderworkersets",
    key_kind: "leaderworkerset",
    operator_names: &[],
    rule: leader_worker_set,
};
pub static INDEXED_JOB: Framework = Framework {
    group: "batch",
    versions: &["v1"],
    kind: "Job",
    plural: "jobs",
    key_kind: "job",
    operator_names: &[],
    rule: indexed_job,
};

/// Every framework whose objects give gang sizes.
pub static FRAMEWORKS: [&Framework; 12] = [
    &PYTORCH_JOB,
    &TF_JOB,
    &XGBOOST_JOB,
    &PADDLE_JOB,
    &JAX_JOB,
    &MPI_JOB,
    &JOBSET,
    &VOLCANO_POD_GROUP,
    &POD_GROUP,
    &RAY_CLUSTER,
    &LEADER_WORKER_SET,
    &INDEXED_JOB,
];

/// A KServe multi-node predictor's pod count, from the pod itself: KServe writes the number of
/// nodes, head and workers, as `RAY_NODE_COUNT` on both the head's `kserve-container` and the
/// workers' `worker-container`, with the pipeline- and tensor-parallel sizes, and makes one head
/// pod and `RAY_NODE_COUNT - 1` worker pods (kserve/kserve,
/// pkg/controller/v1beta1/inferenceservice/components/predictor.go `multiNodeProcess`;
/// reconcilers/deployment/deployment_reconciler.go `createRawDeployment`). The head waits for its
/// workers to join its Ray cluster, so the pods are one gang: the webhook copies the count into
/// `gantry.dev/gang-size`.
///
/// `None`: not such a pod (no InferenceService label or no generation label, which KServe puts
/// on both Deployments' pods and which keys the gang; or the three variables are not all set as
/// values on the right container, as on a single-node predictor), a count that is not a whole
/// number from 2 to [`MAX_GANG`] (one node is no gang).
pub fn kserve_multi_node(pod: &Value) -> Option<u32> {
    use crate::keys::{
        KSERVE_GENERATION_LABEL, KSERVE_HEAD_CONTAINER, KSERVE_ISVC_LABEL, KSERVE_NODE_COUNT_ENV,
        KSERVE_PIPELINE_PARALLEL_ENV, KSERVE_TENSOR_PARALLEL_ENV, KSERVE_WORKER_CONTAINER,
    };
    crate::pod::label(pod, KSERVE_ISVC_LABEL).filter(|s| !s.is_empty())?;
    crate::pod::label(pod, KSERVE_GENERATION_LABEL).filter(|s| !s.is_empty())?;
    let containers = pod.get("spec")?.get("containers")?.as_array()?;
    let container = containers.iter().find(|c| {
        matches!(c.get("name").and_then(Value::as_str), Some(KSERVE_HEAD_CONTAINER | KSERVE_WORKER_CONTAINER))
    })?;
    let env = container.get("env")?.as_array()?;
    let value = |name: &str| {
        env.iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|e| e.get("value")?.as_str())
    };
    value(KSERVE_PIPELINE_PARALLEL_ENV)?;
    value(KSERVE_TENSOR_PARALLEL_ENV)?;
    let nodes = value(KSERVE_NODE_COUNT_ENV)?.trim().parse::<u32>().ok()?;
    (2..=MAX_GANG).contains(&nodes).then_some(nodes)
}

/// The key a framework object's gang size is kept under.
pub fn owner_key(f: &Framework, namespace: &str, name: &str) -> String {
    format!("{namespace}/{}/{name}", f.key_kind)
}

/// A gang size read from an object, under its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GangSpec {
    pub key: String,
    /// As a user names it: `PyTorchJob team-a/bert`.
    pub owner: String,
    pub size: Size,
}

/// Why an object's gang size cannot be read: the gang never starts partly, so its pods are
/// refused with this message. Each names the object (`owner`, as a user names it), the field
/// and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GangError {
    /// A count or field of the object makes no sense.
    #[error("{owner}: {problem}")]
    Field { owner: String, problem: String },
    #[error("{owner}: the gang has no pods; give its replicas a count of at least 1")]
    Empty { owner: String },
    #[error("{owner}: the gang has {pods} pods; Gantry admits gangs of at most {MAX_GANG}")]
    TooLarge { owner: String, pods: u32 },
    /// The object as the API server sent it could not be turned into JSON to read.
    #[error("{owner}: cannot be read: {problem}")]
    Unreadable { owner: String, problem: String },
}

/// Reads `obj`, an object of `f`'s kind, into its gang size. The error names the object, the field
/// and the fix.
pub fn read(f: &Framework, obj: &Value) -> Result<GangSpec, GangError> {
    let meta =
        |k: &str| obj.get("metadata").and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or_default();
    let (ns, name) = (meta("namespace"), meta("name"));
    let owner = format!("{} {ns}/{name}", f.kind);
    let size = match (f.rule)(obj) {
        Ok(size) => size,
        Err(problem) => return Err(GangError::Field { owner, problem }),
    };
    if size.total == 0 || size.min == 0 {
        return Err(GangError::Empty { owner });
    }
    if size.total > MAX_GANG {
        return Err(GangError::TooLarge { owner, pods: size.total });
    }
    Ok(GangSpec {
        key: owner_key(f, ns, name),
        owner,
        size: Size { total: size.total, min: size.min.min(size.total) },
    })
}

/// A count at `path` under `v`: absent gives `default`; a value that is not a whole number from 0
/// to [`MAX_GANG`] is an error naming the field.
fn count(v: &Value, path: &[&str], default: u32) -> Result<u32, String> {
    let Some(x) = path.iter().try_fold(v, |v, k| v.get(k)) else { return Ok(default) };
    if x.is_null() {
        return Ok(default);
    }
    match x.as_i64() {
        Some(n) if (0..=i64::from(MAX_GANG)).contains(&n) => Ok(n as u32),
        _ => Err(format!("{} is {x}; give a whole number from 0 to {MAX_GANG}", path.join("."))),
    }
}

fn sum(parts: impl IntoIterator<Item = Result<u32, String>>) -> Result<u32, String> {
    parts.into_iter().try_fold(0u32, |acc, n| {
        let total = acc.saturating_add(n?);
        if total > MAX_GANG {
            return Err(format!(
                "the gang has more than {MAX_GANG} pods; Gantry admits gangs of at most {MAX_GANG}"
            ));
        }
        Ok(total)
    })
}

/// `spec.runPolicy.schedulingPolicy.minAvailable`, if set.
fn min_available(obj: &Value) -> Result<Option<u32>, String> {
    let path = ["spec", "runPolicy", "schedulingPolicy", "minAvailable"];
    let set = path.iter().try_fold(obj, |v, k| v.get(k)).is_some_and(|v| !v.is_null());
    set.then(|| count(obj, &path, 0)).transpose()
}

/// Training operator v1: replica specs by type, `replicas` absent meaning 1. `skip` leaves one
/// replica type out of the gang.
fn replica_specs(obj: &Value, field: &str, skip: Option<&str>) -> Result<Size, String> {
    let specs = obj
        .get("spec")
        .and_then(|s| s.get(field))
        .and_then(Value::as_object)
        .ok_or_else(|| format!("spec.{field} is missing"))?;
    let total = sum(specs
        .iter()
        .filter(|(t, _)| Some(t.as_str()) != skip)
        .map(|(t, s)| count(s, &["replicas"], 1).map_err(|e| format!("spec.{field}.{t}.{e}"))))?;
    let min = min_available(obj)?.unwrap_or(total);
    Ok(Size { total, min })
}

fn pytorch_job(obj: &Value) -> Result<Size, String> {
    let mut size = replica_specs(obj, "pytorchReplicaSpecs", None)?;
    let elastic_min = ["spec", "elasticPolicy", "minReplicas"];
    if elastic_min.iter().try_fold(obj, |v, k| v.get(k)).is_some_and(|v| !v.is_null())
        && min_available(obj)?.is_none()
    {
        // Elastic training scales the workers between minReplicas and maxReplicas.
        let workers = count(obj, &["spec", "pytorchReplicaSpecs", "Worker", "replicas"], 1)?;
        let min_workers = count(obj, &elastic_min, 1)?.min(workers);
        size.min = size.total - workers + min_workers;
    }
    Ok(size)
}

fn mpi_job(obj: &Value) -> Result<Size, String> {
    let specs = ["spec", "mpiReplicaSpecs"];
    if specs.iter().try_fold(obj, |v, k| v.get(k)).and_then(Value::as_object).is_none() {
        return Err("spec.mpiReplicaSpecs is missing".into());
    }
    // The operator defaults workers to 0 and makes one launcher. With WaitForWorkersReady the
    // launcher is created once the workers run: it cannot be waited for, and joins the running gang.
    let workers = count(obj, &["spec", "mpiReplicaSpecs", "Worker", "replicas"], 0)?;
    let waits = obj.get("spec").and_then(|s| s.get("launcherCreationPolicy")).and_then(Value::as_str)
        == Some("WaitForWorkersReady");
    let total = workers + u32::from(!waits);
    let min = min_available(obj)?.unwrap_or(total);
    Ok(Size { total, min })
}

fn jobset(obj: &Value) -> Result<Size, String> {
    let jobs = obj
        .get("spec")
        .and_then(|s| s.get("replicatedJobs"))
        .and_then(Value::as_array)
        .ok_or("spec.replicatedJobs is missing")?;
    let in_order = obj["spec"]["startupPolicy"]["startupPolicyOrder"].as_str() == Some("InOrder");
    // Jobs created later (in order, or once the jobs they depend on are ready or done) cannot be
    // waited for: they join the running gang.
    let at_start = jobs.iter().enumerate().filter(|(i, j)| {
        if in_order {
            *i == 0
        } else {
            j.get("dependsOn").and_then(Value::as_array).is_none_or(Vec::is_empty)
        }
    });
    let total = sum(at_start.map(|(i, j)| {
        let at = |e: String| format!("spec.replicatedJobs[{i}].{e}");
        let replicas = count(j, &["replicas"], 1).map_err(at)?;
        let spec = j.get("template").and_then(|t| t.get("spec")).unwrap_or(&Value::Null);
        let parallelism = count(spec, &["parallelism"], 1).map_err(|e| at(format!("template.spec.{e}")))?;
        let completions =
            count(spec, &["completions"], parallelism).map_err(|e| at(format!("template.spec.{e}")))?;
        replicas
            .checked_mul(parallelism.min(completions))
            .filter(|&n| n <= MAX_GANG)
            .ok_or_else(|| at(format!("replicas × parallelism is above {MAX_GANG}")))
    }))?;
    Ok(Size { total, min: total })
}

fn min_member(obj: &Value) -> Result<Size, String> {
    let n = count(obj, &["spec", "minMember"], 1)?;
    Ok(Size { total: n, min: n })
}

fn ray_cluster(obj: &Value) -> Result<Size, String> {
    let groups = obj
        .get("spec")
        .and_then(|s| s.get("workerGroupSpecs"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut total = Ok(1);
    let mut min = Ok(1);
    for (i, g) in groups.iter().enumerate() {
        let at = |e: String| format!("spec.workerGroupSpecs[{i}].{e}");
        // The operator's defaults: replicas 0, minReplicas 0, maxReplicas unbounded, numOfHosts 1
        // (below 1 read as 1); the desired count is replicas kept within min and max.
        let least = count(g, &["minReplicas"], 0).map_err(at)?;
        let most = count(g, &["maxReplicas"], MAX_GANG).unwrap_or(MAX_GANG);
        let replicas = count(g, &["replicas"], 0).map_err(at)?.min(most).max(least);
        let hosts = count(g, &["numOfHosts"], 1).map_err(at)?.max(1);
        let pods = |n: u32| {
            n.checked_mul(hosts)
                .filter(|&p| p <= MAX_GANG)
                .ok_or_else(|| at(format!("replicas × numOfHosts is above {MAX_GANG}")))
        };
        total = sum([total, pods(replicas)]);
        min = sum([min, pods(least)]);
    }
    Ok(Size { total: total?, min: min? })
}

fn leader_worker_set(obj: &Value) -> Result<Size, String> {
    let size = count(obj, &["spec", "leaderWorkerTemplate", "size"], 1)?;
    // LeaderReady creates the workers once the leader is ready: the leader starts alone.
    let n = if obj["spec"]["startupPolicy"].as_str() == Some("LeaderReady") { size.min(1) } else { size };
    Ok(Size { total: n, min: n })
}

fn indexed_job(obj: &Value) -> Result<Size, String> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if spec.get("completionMode").and_then(Value::as_str) != Some("Indexed") {
        return Err(
            "its pods opt in to a gang (label gantry.dev/gang), but spec.completionMode is not Indexed; \
                    set completionMode: Indexed, or remove the label"
                .into(),
        );
    }
    let parallelism = count(spec, &["parallelism"], 1).map_err(|e| format!("spec.{e}"))?;
    let completions = count(spec, &["completions"], parallelism).map_err(|e| format!("spec.{e}"))?;
    let succeeded = count(obj, &["status", "succeeded"], 0).unwrap_or(0);
    let n = parallelism.min(completions.saturating_sub(succeeded));
    Ok(Size { total: n, min: n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(spec: Value) -> Value {
        json!({"metadata": {"namespace": "team-a", "name": "x"}, "spec": spec})
    }

    /// A pod of InferenceService `llm` with one container `container` carrying `env`.
    fn kserve_pod(isvc: Option<&str>, container: &str, env: &[(&str, &str)]) -> Value {
        let env: Vec<Value> = env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
        let labels = isvc
            .map_or(json!({}), |i| json!({"serving.kserve.io/inferenceservice": i, "isvc.generation": "1"}));
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": container, "env": env}]}})
    }

    #[test]
    fn a_kserve_multi_node_pod_says_its_gang_size_and_no_other_pod_does() {
        let sizes = [("PIPELINE_PARALLEL_SIZE", "3"), ("TENSOR_PARALLEL_SIZE", "4")];
        let with = |count: &'static str| {
            let mut env = sizes.to_vec();
            env.push(("RAY_NODE_COUNT", count));
            env
        };
        let three = with("3");
        let cases: Vec<(&str, Value, Option<u32>)> = vec![
            ("the head", kserve_pod(Some("llm"), "kserve-container", &three), Some(3)),
            ("a worker", kserve_pod(Some("llm"), "worker-container", &three), Some(3)),
            ("one node: no gang", kserve_pod(Some("llm"), "kserve-container", &with("1")), None),
            ("not a count", kserve_pod(Some("llm"), "kserve-container", &with("three")), None),
            ("too many", kserve_pod(Some("llm"), "kserve-container", &with("10001")), None),
            ("no InferenceService label", kserve_pod(None, "kserve-container", &three), None),
            (
                "no generation label",
                {
                    let mut p = kserve_pod(Some("llm"), "kserve-container", &three);
                    p["metadata"]["labels"].as_object_mut().unwrap().remove("isvc.generation");
                    p
                },
                None,
            ),
            ("another container", kserve_pod(Some("llm"), "main", &three), None),
            (
                "the count alone (a single-node predictor's own env)",
                kserve_pod(Some("llm"), "kserve-container", &[("RAY_NODE_COUNT", "3")]),
                None,
            ),
            ("a single-node predictor", kserve_pod(Some("llm"), "kserve-container", &[]), None),
        ];
        for (what, pod, want) in cases {
            assert_eq!(kserve_multi_node(&pod), want, "{what}");
        }
        // The count from a reference (valueFrom) is not a value: no gang.
        let mut pod = kserve_pod(Some("llm"), "kserve-container", &sizes);
        pod["spec"]["containers"][0]["env"].as_array_mut().unwrap().push(
            json!({"name": "RAY_NODE_COUNT", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "n"}}}),
        );
        assert_eq!(kserve_multi_node(&pod), None);
    }

    #[test]
    fn each_framework_reads_its_gang_size() {
        let cases: [(&Framework, Value, u32, u32); 19] = [
            (
                &PYTORCH_JOB,
                json!({"pytorchReplicaSpecs": {"Master": {"replicas": 1}, "Worker": {"replicas": 3}}}),
                4,
                4,
            ),
            (
                &PYTORCH_JOB,
                json!({"pytorchReplicaSpecs": {"Master": {}, "Worker": {"replicas": 3}}, "runPolicy": {"schedulingPolicy": {"minAvailable": 2}}}),
                4,
                2,
            ),
            (
                &PYTORCH_JOB,
                json!({"pytorchReplicaSpecs": {"Worker": {"replicas": 4}}, "elasticPolicy": {"minReplicas": 2, "maxReplicas": 4}}),
                4,
                2,
            ),
            (
                &TF_JOB,
                json!({"tfReplicaSpecs": {"Chief": {"replicas": 1}, "PS": {"replicas": 2}, "Worker": {"replicas": 4}}}),
                7,
                7,
            ),
            (
                &XGBOOST_JOB,
                json!({"xgbReplicaSpecs": {"Master": {"replicas": 1}, "Worker": {"replicas": 2}}}),
                3,
                3,
            ),
            (&PADDLE_JOB, json!({"paddleReplicaSpecs": {"Worker": {"replicas": 2}}}), 2, 2),
            (&JAX_JOB, json!({"jaxReplicaSpecs": {"Worker": {"replicas": 8}}}), 8, 8),
            (
                &MPI_JOB,
                json!({"mpiReplicaSpecs": {"Launcher": {"replicas": 1}, "Worker": {"replicas": 2}}}),
                3,
                3,
            ),
            (&MPI_JOB, json!({"mpiReplicaSpecs": {"Launcher": {}}}), 1, 1),
            (
                &MPI_JOB,
                json!({"launcherCreationPolicy": "WaitForWorkersReady", "mpiReplicaSpecs": {"Launcher": {"replicas": 1}, "Worker": {"replicas": 2}}}),
                2,
                2,
            ),
            (
                &JOBSET,
                json!({"replicatedJobs": [{"replicas": 2, "template": {"spec": {"parallelism": 4, "completions": 4}}}, {"template": {"spec": {}}}]}),
                9,
                9,
            ),
            (
                &JOBSET,
                json!({"replicatedJobs": [{"name": "init", "template": {"spec": {}}}, {"name": "node", "replicas": 4, "dependsOn": [{"name": "init", "status": "Complete"}], "template": {"spec": {}}}]}),
                1,
                1,
            ),
            (
                &JOBSET,
                json!({"startupPolicy": {"startupPolicyOrder": "InOrder"}, "replicatedJobs": [{"replicas": 2, "template": {"spec": {}}}, {"replicas": 4, "template": {"spec": {}}}]}),
                2,
                2,
            ),
            (&VOLCANO_POD_GROUP, json!({"minMember": 3}), 3, 3),
            (
                &RAY_CLUSTER,
                json!({"headGroupSpec": {}, "workerGroupSpecs": [{"replicas": 2, "minReplicas": 1}, {"replicas": 1, "minReplicas": 1, "numOfHosts": 4}]}),
                7,
                6,
            ),
            (
                &RAY_CLUSTER,
                json!({"headGroupSpec": {}, "workerGroupSpecs": [{"replicas": 9, "maxReplicas": 3}, {"minReplicas": 2, "numOfHosts": 0}]}),
                6,
                3,
            ),
            (&LEADER_WORKER_SET, json!({"replicas": 3, "leaderWorkerTemplate": {"size": 4}}), 4, 4),
            (
                &LEADER_WORKER_SET,
                json!({"startupPolicy": "LeaderReady", "leaderWorkerTemplate": {"size": 4}}),
                1,
                1,
            ),
            (&INDEXED_JOB, json!({"completionMode": "Indexed", "parallelism": 4, "completions": 8}), 4, 4),
        ];
        for (f, spec, total, min) in cases {
            let got = read(f, &obj(spec.clone())).unwrap_or_else(|e| panic!("{}: {e}", f.kind));
            assert_eq!(got.size, Size { total, min }, "{} {spec}", f.kind);
            assert_eq!(got.key, format!("team-a/{}/x", f.key_kind));
        }
    }

    #[test]
    fn nonsense_counts_are_refused_naming_the_object_and_field() {
        let cases = [
            (
                &PYTORCH_JOB,
                json!({"pytorchReplicaSpecs": {"Worker": {"replicas": -1}}}),
                "PyTorchJob team-a/x: spec.pytorchReplicaSpecs.Worker.replicas is -1",
            ),
            (
                &PYTORCH_JOB,
                json!({"pytorchReplicaSpecs": {"Worker": {"replicas": 0}}}),
                "the gang has no pods",
            ),
            (
                &PYTORCH_JOB,
                json!({"pytorchReplicaSpecs": {"Worker": {"replicas": 4_000_000_000u64}}}),
                "from 0 to 10000",
            ),
            (&PYTORCH_JOB, json!({"pytorchReplicaSpecs": {"Worker": {"replicas": "3"}}}), "is \"3\""),
            (&PYTORCH_JOB, json!({}), "spec.pytorchReplicaSpecs is missing"),
            (
                &TF_JOB,
                json!({"tfReplicaSpecs": {"A": {"replicas": 6000}, "B": {"replicas": 6000}}}),
                "more than 10000 pods",
            ),
            (
                &JOBSET,
                json!({"replicatedJobs": [{"replicas": 10000, "template": {"spec": {"parallelism": 10000}}}]}),
                "replicas × parallelism is above",
            ),
            (&VOLCANO_POD_GROUP, json!({"minMember": 0}), "the gang has no pods"),
            (
                &RAY_CLUSTER,
                json!({"workerGroupSpecs": [{"replicas": 1.5}]}),
                "spec.workerGroupSpecs[0].replicas is 1.5",
            ),
            (&INDEXED_JOB, json!({"parallelism": 4}), "completionMode is not Indexed"),
        ];
        for (f, spec, want) in cases {
            let err = read(f, &obj(spec.clone())).expect_err(&spec.to_string()).to_string();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
    }

    #[test]
    fn a_minimum_above_the_total_is_the_total() {
        let spec = json!({"pytorchReplicaSpecs": {"Worker": {"replicas": 2}}, "runPolicy": {"schedulingPolicy": {"minAvailable": 5}}});
        assert_eq!(read(&PYTORCH_JOB, &obj(spec)).unwrap().size, Size { total: 2, min: 2 });
    }
}
