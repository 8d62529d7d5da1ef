//! The distributed jobs of each framework, with their pods exactly as the upstream controllers
//! create them: names (or `generateName`), labels, annotations and owner references are taken
//! from the controllers' pod-creation code, cited per builder. Read in June 2026:
//! training-operator v1.9.0, mpi-operator v0.8.2, JobSet v0.13, Kubeflow Trainer (master),
//! Volcano v1.16, KubeRay v1.7, LeaderWorkerSet v0.10, Kubernetes' Job controller.

use gantry_api::gang::{self, Framework};
use serde_json::{json, Value};

pub const NS: &str = "team-a";

/// A distributed job: the object Gantry reads the gang's size from, and its pods as created
/// (before admission: no `metadata.uid`, maybe no `metadata.name` yet).
pub struct Job {
    pub name: &'static str,
    pub framework: &'static Framework,
    pub owner: Value,
    pub pods: Vec<Value>,
}

impl Job {
    /// GPUs the whole gang asks for.
    pub fn gpus(&self) -> u64 {
        self.pods.iter().map(gpus_of).sum()
    }

    /// GPUs of its largest member.
    pub fn largest_member(&self) -> u64 {
        self.pods.iter().map(gpus_of).max().unwrap_or(0)
    }
}

pub fn gpus_of(pod: &Value) -> u64 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["resources"]["limits"]["nvidia.com/gpu"].as_str()?.parse::<u64>().ok())
        .sum()
}

fn container(gpus: u32) -> Value {
    let mut limits = json!({"cpu": "4", "memory": "16Gi"});
    if gpus > 0 {
        limits["nvidia.com/gpu"] = json!(gpus.to_string());
    }
    json!({"name": "main", "image": "ghcr.io/example/train:1", "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": limits}})
}

fn controller_ref(api_version: &str, kind: &str, name: &str) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": format!("uid-{kind}-{name}").to_lowercase(), "controller": true, "blockOwnerDeletion": true}])
}

fn pod(
    name: Option<&str>,
    generate_name: Option<&str>,
    labels: Value,
    annotations: Value,
    owners: Value,
    gpus: u32,
) -> Value {
    let mut meta =
        json!({"namespace": NS, "labels": labels, "annotations": annotations, "ownerReferences": owners});
    if let Some(n) = name {
        meta["name"] = json!(n);
    }
    if let Some(g) = generate_name {
        meta["generateName"] = json!(g);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
           "spec": {"containers": [container(gpus)], "restartPolicy": "Never", "schedulerName": "default-scheduler"}})
}

fn object(api_version: &str, kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"namespace": NS, "name": name, "uid": format!("uid-{kind}-{name}").to_lowercase()}, "spec": spec})
}

/// Training operator v1 (`pkg/controller.v1/common/pod.go` `createNewPod`; labels from
/// `common/job_controller.go` `GenLabels`; name `GenGeneralName`): pods named
/// `<job>-<replica type, lowercased>-<index>`, owned by the job, labelled with the operator,
/// the job name, the replica type and index, and `job-role: master` on the master.
fn training(
    kind: &str,
    operator: &str,
    field: &str,
    name: &'static str,
    f: &'static Framework,
    replicas: &[(&str, u32, u32)],
) -> Job {
    let mut specs = serde_json::Map::new();
    let mut pods = Vec::new();
    for &(rtype, count, gpus) in replicas {
        specs.insert(rtype.into(), json!({"replicas": count, "restartPolicy": "OnFailure", "template": {"spec": {"containers": [container(gpus)]}}}));
        let rt = rtype.to_lowercase();
        for i in 0..count {
            let mut labels = json!({"training.kubeflow.org/operator-name": operator, "training.kubeflow.org/job-name": name,
                                    "training.kubeflow.org/replica-type": rt, "training.kubeflow.org/replica-index": i.to_string()});
            if rtype == "Master" || rtype == "Chief" {
                labels["training.kubeflow.org/job-role"] = json!("master");
            }
            pods.push(pod(
                Some(&format!("{name}-{rt}-{i}")),
                None,
                labels,
                json!({}),
                controller_ref("kubeflow.org/v1", kind, name),
                gpus,
            ));
        }
    }
    let owner =
        object("kubeflow.org/v1", kind, name, json!({field: specs, "runPolicy": {"cleanPodPolicy": "None"}}));
    Job { name, framework: f, owner, pods }
}

pub fn pytorch_job() -> Job {
    training(
        "PyTorchJob",
        "pytorchjob-controller",
        "pytorchReplicaSpecs",
        "bert",
        &gang::PYTORCH_JOB,
        &[("Master", 1, 4), ("Worker", 3, 4)],
    )
}

/// A TFJob with a CPU-only parameter server: a mixed gang.
pub fn tf_job() -> Job {
    training(
        "TFJob",
        "tfjob-controller",
        "tfReplicaSpecs",
        "resnet",
        &gang::TF_JOB,
        &[("Chief", 1, 2), ("PS", 1, 0), ("Worker", 2, 4)],
    )
}

pub fn xgboost_job() -> Job {
    training(
        "XGBoostJob",
        "xgboostjob-controller",
        "xgbReplicaSpecs",
        "boost",
        &gang::XGBOOST_JOB,
        &[("Master", 1, 1), ("Worker", 2, 1)],
    )
}

pub fn paddle_job() -> Job {
    training(
        "PaddleJob",
        "paddlejob-controller",
        "paddleReplicaSpecs",
        "ernie",
        &gang::PADDLE_JOB,
        &[("Worker", 2, 8)],
    )
}

pub fn jax_job() -> Job {
    training("JAXJob", "jaxjob-controller", "jaxReplicaSpecs", "gemma", &gang::JAX_JOB, &[("Worker", 4, 2)])
}

/// MPI operator v2beta1 (`pkg/controller/mpi_job_controller.go`): workers `newWorker`, named
/// `<job>-worker-<i>` and owned by the MPIJob; the launcher is the batch Job `<job>-launcher`
/// (`newLauncherJob`), whose pod the Job controller creates with `generateName
/// <job>-launcher-`, owned by that Job. Labels: operator `mpi-operator`, job name, `job-role`
/// (no replica type). The launcher asks for no GPU.
pub fn mpi_job() -> Job {
    let name = "pi";
    let labels = |role: &str| json!({"training.kubeflow.org/operator-name": "mpi-operator", "training.kubeflow.org/job-name": name, "training.kubeflow.org/job-role": role});
    let mut pods: Vec<Value> = (0..2)
        .map(|i| {
            let mut l = labels("worker");
            l["training.kubeflow.org/replica-index"] = json!(i.to_string());
            pod(
                Some(&format!("{name}-worker-{i}")),
                None,
                l,
                json!({}),
                controller_ref("kubeflow.org/v2beta1", "MPIJob", name),
                8,
            )
        })
        .collect();
    let mut launcher = labels("launcher");
    launcher["batch.kubernetes.io/job-name"] = json!(format!("{name}-launcher"));
    launcher["job-name"] = json!(format!("{name}-launcher"));
    launcher["batch.kubernetes.io/controller-uid"] = json!("uid-job-pi-launcher");
    pods.insert(
        0,
        pod(
            None,
            Some(&format!("{name}-launcher-")),
            launcher,
            json!({}),
            controller_ref("batch/v1", "Job", &format!("{name}-launcher")),
            0,
        ),
    );
    let spec = json!({"slotsPerWorker": 8, "launcherCreationPolicy": "AtStartup", "runPolicy": {"cleanPodPolicy": "Running"},
                      "mpiReplicaSpecs": {"Launcher": {"replicas": 1, "template": {"spec": {"containers": [container(0)]}}},
                                          "Worker": {"replicas": 2, "template": {"spec": {"containers": [container(8)]}}}}});
    Job { name, framework: &gang::MPI_JOB, owner: object("kubeflow.org/v2beta1", "MPIJob", name, spec), pods }
}

/// JobSet (`pkg/controllers/jobset_controller.go` `constructJob`, `labelAndAnnotateObject`): one
/// batch Job `<js>-<rjob>-<index>` per replica, owning its pods; pods carry the JobSet keys as
/// labels and annotations, and the Job controller's; Indexed Jobs name pods with
/// `generateName <job>-<pod index>-`.
fn jobset_pods(js: &str, rjobs: &[(&str, u32, u32, u32)]) -> Vec<Value> {
    let mut pods = Vec::new();
    let global: u32 = rjobs.iter().map(|r| r.1).sum();
    let mut global_index = 0;
    for &(rjob, replicas, parallelism, gpus) in rjobs {
        for j in 0..replicas {
            let job = format!("{js}-{rjob}-{j}");
            for p in 0..parallelism {
                let keys = json!({"jobset.sigs.k8s.io/jobset-name": js, "jobset.sigs.k8s.io/jobset-uid": format!("uid-jobset-{js}"),
                    "jobset.sigs.k8s.io/replicatedjob-name": rjob, "jobset.sigs.k8s.io/replicatedjob-replicas": replicas.to_string(),
                    "jobset.sigs.k8s.io/global-replicas": global.to_string(), "jobset.sigs.k8s.io/job-index": j.to_string(),
                    "jobset.sigs.k8s.io/job-global-index": global_index.to_string(), "jobset.sigs.k8s.io/restart-attempt": "0"});
                let mut labels = keys.clone();
                labels["batch.kubernetes.io/job-name"] = json!(job);
                labels["job-name"] = json!(job);
                labels["batch.kubernetes.io/job-completion-index"] = json!(p.to_string());
                let mut annotations = keys;
                annotations["batch.kubernetes.io/job-completion-index"] = json!(p.to_string());
                pods.push(pod(
                    None,
                    Some(&format!("{job}-{p}-")),
                    labels,
                    annotations,
                    controller_ref("batch/v1", "Job", &job),
                    gpus,
                ));
            }
            global_index += 1;
        }
    }
    pods
}

fn jobset_spec(rjobs: &[(&str, u32, u32, u32)]) -> Value {
    let jobs: Vec<Value> = rjobs
        .iter()
        .map(|&(rjob, replicas, parallelism, gpus)| json!({"name": rjob, "replicas": replicas,
            "template": {"spec": {"completionMode": "Indexed", "parallelism": parallelism, "completions": parallelism,
                                  "template": {"spec": {"containers": [container(gpus)]}}}}}))
        .collect();
    json!({"replicatedJobs": jobs, "startupPolicy": {"startupPolicyOrder": "AnyOrder"}})
}

pub fn jobset() -> Job {
    let rjobs = [("driver", 1, 1, 0), ("workers", 2, 2, 4)];
    Job {
        name: "llm",
        framework: &gang::JOBSET,
        owner: object("jobset.x-k8s.io/v1alpha2", "JobSet", "llm", jobset_spec(&rjobs)),
        pods: jobset_pods("llm", &rjobs),
    }
}

/// Kubeflow Trainer v2: a TrainJob's runtime builds a JobSet with the TrainJob's own name,
/// owned by it (`pkg/runtime/framework/plugins/jobset/jobset.go`); the trainer's node count is
/// written into parallelism and completions. Its pods are that JobSet's.
pub fn train_job() -> Job {
    let rjobs = [("node", 1, 3, 8)];
    let mut owner = object("jobset.x-k8s.io/v1alpha2", "JobSet", "tune", jobset_spec(&rjobs));
    owner["metadata"]["ownerReferences"] =
        controller_ref("trainer.kubeflow.org/v1alpha1", "TrainJob", "tune");
    Job { name: "tune", framework: &gang::JOBSET, owner, pods: jobset_pods("tune", &rjobs) }
}

/// Volcano Job (`pkg/controllers/job/job_controller_util.go` `createJobPod`): pods
/// `<job>-<task>-<i>` owned by the Job, annotated `scheduling.k8s.io/group-name:
/// <job>-<job uid>`, the PodGroup the controller creates (`createOrUpdatePodGroup`) with
/// `minMember` = the Job's `minAvailable`.
pub fn volcano_job() -> Job {
    let (name, uid) = ("mnist", "0f6c1d2e");
    let group = format!("{name}-{uid}");
    let pods = (0..3)
        .map(|i| {
            let labels = json!({"volcano.sh/job-name": name, "volcano.sh/task-spec": "worker", "volcano.sh/task-index": i.to_string(),
                                "volcano.sh/job-namespace": NS, "volcano.sh/queue-name": "default"});
            let annotations = json!({"scheduling.k8s.io/group-name": group, "volcano.sh/job-name": name, "volcano.sh/task-spec": "worker",
                                     "volcano.sh/task-index": i.to_string(), "volcano.sh/job-version": "0", "volcano.sh/template-uid": format!("{name}-worker")});
            pod(Some(&format!("{name}-worker-{i}")), None, labels, annotations, controller_ref("batch.volcano.sh/v1alpha1", "Job", name), 2)
        })
        .collect();
    let mut owner = object(
        "scheduling.volcano.sh/v1beta1",
        "PodGroup",
        &group,
        json!({"minMember": 3, "queue": "default"}),
    );
    owner["metadata"]["ownerReferences"] = controller_ref("batch.volcano.sh/v1alpha1", "Job", name);
    Job { name: "mnist", framework: &gang::VOLCANO_POD_GROUP, owner, pods }
}

/// scheduler-plugins coscheduling: pods labelled `scheduling.x-k8s.io/pod-group`, sized by the
/// PodGroup's `minMember` (here as the training operator makes them with its gang scheduler set:
/// `SchedulerPluginsControl.DecoratePodTemplateSpec`).
pub fn coscheduling() -> Job {
    let mut job = training(
        "PyTorchJob",
        "pytorchjob-controller",
        "pytorchReplicaSpecs",
        "gpt",
        &gang::POD_GROUP,
        &[("Master", 1, 2), ("Worker", 1, 2)],
    );
    for p in &mut job.pods {
        p["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] = json!("gpt");
    }
    let mut owner = object(
        "scheduling.x-k8s.io/v1alpha1",
        "PodGroup",
        "gpt",
        json!({"minMember": 2, "scheduleTimeoutSeconds": 0}),
    );
    owner["metadata"]["ownerReferences"] = controller_ref("kubeflow.org/v1", "PyTorchJob", "gpt");
    job.owner = owner;
    job
}

/// KubeRay (`raycluster_controller.go` `buildHeadPod` / `buildWorkerPod`, `common/pod.go`
/// `labelPod`): pods owned by the RayCluster, `generateName <cluster>-head-` and
/// `<cluster>-<group>-worker-`, labelled `ray.io/cluster`, `ray.io/node-type`, `ray.io/group`.
/// The head asks for no GPU. `rayjob` names the RayJob that created the cluster, if any
/// (`<rayjob>-<5 random>`, owned by it).
fn ray(cluster: &'static str, rayjob: Option<&str>) -> Job {
    let labels = |node_type: &str, group: &str| {
        json!({"ray.io/cluster": cluster, "ray.io/node-type": node_type, "ray.io/group": group,
        "ray.io/is-ray-node": "yes", "ray.io/identifier": format!("{cluster}-{node_type}"), "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator"})
    };
    let owners = controller_ref("ray.io/v1", "RayCluster", cluster);
    let mut pods = vec![pod(
        None,
        Some(&format!("{cluster}-head-")),
        labels("head", "headgroup"),
        json!({}),
        owners.clone(),
        0,
    )];
    for _ in 0..2 {
        pods.push(pod(
            None,
            Some(&format!("{cluster}-gpu-group-worker-")),
            labels("worker", "gpu-group"),
            json!({}),
            owners.clone(),
            4,
        ));
    }
    let spec = json!({"rayVersion": "2.40.0", "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container(0)]}}},
        "workerGroupSpecs": [{"groupName": "gpu-group", "replicas": 2, "minReplicas": 2, "maxReplicas": 4, "rayStartParams": {},
                              "template": {"spec": {"containers": [container(4)]}}}]});
    let mut owner = object("ray.io/v1", "RayCluster", cluster, spec);
    if let Some(job) = rayjob {
        owner["metadata"]["ownerReferences"] = controller_ref("ray.io/v1", "RayJob", job);
        owner["metadata"]["labels"] =
            json!({"ray.io/originated-from-cr-name": job, "ray.io/originated-from-crd": "RayJob"});
    }
    Job { name: cluster, framework: &gang::RAY_CLUSTER, owner, pods }
}

pub fn ray_cluster() -> Job {
    ray("rc", None)
}

pub fn ray_job() -> Job {
    ray("sweep-x7k2q", Some("sweep"))
}

/// LeaderWorkerSet (`pkg/controllers/leaderworkerset_controller.go`, `pod_controller.go`): the
/// leader `<lws>-<group>` is a pod of the StatefulSet `<lws>`; its workers `<lws>-<group>-<w>`
/// are pods of the StatefulSet `<lws>-<group>`, annotated with the leader's name.
pub fn leader_worker_set() -> Job {
    let name = "vllm";
    let leader = format!("{name}-0");
    let mut pods = vec![pod(
        Some(&leader),
        None,
        json!({"leaderworkerset.sigs.k8s.io/name": name, "leaderworkerset.sigs.k8s.io/worker-index": "0",
        "leaderworkerset.sigs.k8s.io/template-revision-hash": "5d8f"}),
        json!({"leaderworkerset.sigs.k8s.io/size": "3"}),
        controller_ref("apps/v1", "StatefulSet", name),
        4,
    )];
    for w in 1..3 {
        pods.push(pod(Some(&format!("{leader}-{w}")), None, json!({"leaderworkerset.sigs.k8s.io/name": name, "leaderworkerset.sigs.k8s.io/group-index": "0",
            "leaderworkerset.sigs.k8s.io/template-revision-hash": "5d8f"}),
            json!({"leaderworkerset.sigs.k8s.io/size": "3", "leaderworkerset.sigs.k8s.io/leader-name": leader}),
            controller_ref("apps/v1", "StatefulSet", &leader), 4));
    }
    let spec = json!({"replicas": 1, "startupPolicy": "LeaderCreated", "leaderWorkerTemplate": {"size": 3, "workerTemplate": {"spec": {"containers": [container(4)]}}}});
    Job {
        name,
        framework: &gang::LEADER_WORKER_SET,
        owner: object("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", name, spec),
        pods,
    }
}

/// A batch Job with `completionMode: Indexed` whose pod template opts in with `gantry.dev/gang`
/// (Kubernetes' Job controller, `pkg/controller/job/indexed_job_utils.go`: `generateName
/// <job>-<index>-`, the completion index as label and annotation; the selector labels from the
/// API server's Job strategy).
pub fn indexed_job() -> Job {
    let name = "shards";
    let pods = (0..3)
        .map(|i| {
            let labels = json!({"gantry.dev/gang": "true", "batch.kubernetes.io/job-name": name, "job-name": name,
                "batch.kubernetes.io/controller-uid": "uid-job-shards", "controller-uid": "uid-job-shards", "batch.kubernetes.io/job-completion-index": i.to_string()});
            pod(None, Some(&format!("{name}-{i}-")), labels, json!({"batch.kubernetes.io/job-completion-index": i.to_string()}),
                controller_ref("batch/v1", "Job", name), 2)
        })
        .collect();
    let spec = json!({"completionMode": "Indexed", "parallelism": 3, "completions": 3, "backoffLimit": 0,
                      "template": {"metadata": {"labels": {"gantry.dev/gang": "true"}}, "spec": {"containers": [container(2)], "restartPolicy": "Never"}}});
    Job { name, framework: &gang::INDEXED_JOB, owner: object("batch/v1", "Job", name, spec), pods }
}

/// Every framework's job, by name.
pub fn all() -> Vec<(&'static str, Job)> {
    vec![
        ("PyTorchJob", pytorch_job()),
        ("TFJob", tf_job()),
        ("XGBoostJob", xgboost_job()),
        ("PaddleJob", paddle_job()),
        ("JAXJob", jax_job()),
        ("MPIJob", mpi_job()),
        ("JobSet", jobset()),
        ("TrainJob", train_job()),
        ("Volcano Job", volcano_job()),
        ("PodGroup", coscheduling()),
        ("RayCluster", ray_cluster()),
        ("RayJob", ray_job()),
        ("LeaderWorkerSet", leader_worker_set()),
        ("Indexed Job", indexed_job()),
    ]
}
