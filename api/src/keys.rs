//! Every label, annotation, scheduling gate, condition and resource name Gantry reads or writes
//! on Kubernetes objects, defined once. A test (`tests/keys.rs`) fails when a key is defined
//! anywhere else in the workspace.
//!
//! Gantry's own keys are under `gantry.dev/`; the others are the names other projects chose
//! (NVIDIA's device plugin and GPU Feature Discovery, the ML frameworks' controllers, Kubernetes
//! itself), spelled exactly as their controllers write them.

// --- Gantry's own keys on pods ---------------------------------------------------------------

/// Scheduling gate the admission webhook puts on GPU pods of managed namespaces; the queue
/// controller removes it when the pod's workload is admitted.
pub const SCHEDULING_GATE: &str = "gantry.dev/admission";
/// Label: the tenant owning the pod's namespace (the tenant is the queue).
pub const TENANT_LABEL: &str = "gantry.dev/tenant";
/// Label: the kind of work (`training`, `pipeline-step`, `notebook`, `serving`, `batch`).
pub const KIND_LABEL: &str = "gantry.dev/kind";
/// Annotation: the workload (gang) key, e.g. `team-a/pod-group/pg1`.
pub const WORKLOAD_ANNOTATION: &str = "gantry.dev/workload";
/// Annotation: Gantry's priority class of the workload.
pub const PRIORITY_CLASS_ANNOTATION: &str = "gantry.dev/priority-class";
/// Annotation: how many pods the gang has, when the framework says it.
pub const GANG_SIZE_ANNOTATION: &str = "gantry.dev/gang-size";
/// Pod label: `"true"` makes the pods of a batch Job with `completionMode: Indexed` one gang.
pub const GANG_OPT_IN_LABEL: &str = "gantry.dev/gang";
/// Annotation: a pod's share of one GPU in milli-GPU (1-999).
pub const GPU_MILLI_ANNOTATION: &str = "gantry.dev/gpu-milli";
/// Annotation: the GPU models a pod accepts, comma-separated.
pub const GPU_MODELS_ANNOTATION: &str = "gantry.dev/gpu-models";
/// Annotation: where the queue planned the pod, `node` or `node:gpu,gpu` (see
/// [`crate::placement`]).
pub const PLACEMENT_ANNOTATION: &str = "gantry.dev/placement";
/// Pod condition: whether Gantry's queue has admitted the pod, and why not yet.
pub const ADMITTED_CONDITION: &str = "gantry.dev/admitted";
/// Pod annotation: the workload is held out of the queue (`kubectl gantry hold`); its value says
/// who held it and why. Only waiting workloads are held; a running one goes on.
pub const HOLD_ANNOTATION: &str = "gantry.dev/hold";

// --- Gantry's own keys on nodes --------------------------------------------------------------

/// Annotation: comma-separated indexes of the GPUs the node agent found failed.
pub const GPU_UNHEALTHY_ANNOTATION: &str = "gantry.dev/gpu-unhealthy";
/// Annotation: the node agent's GPU inventory (JSON).
pub const GPU_INVENTORY_ANNOTATION: &str = "gantry.dev/gpu-inventory";
/// Annotation: the pods on the node whose GPUs have all been idle (no kernel ran, NVML
/// utilization 0 %), and since when: a JSON object `{"<namespace>/<pod>": <unix seconds>}`
/// (see [`crate::node::idle_pods`]).
pub const GPU_IDLE_PODS_ANNOTATION: &str = "gantry.dev/gpu-idle-pods";
/// Annotation: the unix second at which the node agent last confirmed the idle pods it wrote in
/// [`GPU_IDLE_PODS_ANNOTATION`]; evidence not confirmed recently is not used (see
/// [`crate::node::IdleOnNode`]).
pub const GPU_IDLE_CHECKED_AT_ANNOTATION: &str = "gantry.dev/gpu-idle-checked-at";

// --- Gantry's own keys on other objects ------------------------------------------------------

/// Annotation on the Secret the webhook keeps its own certificate in: who made it.
pub const GENERATED_BY_ANNOTATION: &str = "gantry.dev/generated-by";

// --- NVIDIA ----------------------------------------------------------------------------------

/// The device plugin's extended resource: whole GPUs.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The device plugin's MIG slices under the `mixed` strategy: `nvidia.com/mig-1g.10gb`, ...
pub const MIG_RESOURCE_PREFIX: &str = "nvidia.com/mig-";
/// GPU Feature Discovery's node label naming the GPU model.
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";

// --- Kubernetes ------------------------------------------------------------------------------

/// Static pods' mirrors carry this; Gantry never touches them.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

// --- Workload identity: the keys the frameworks put on their pods -----------------------------

/// scheduler-plugins coscheduling: the PodGroup a pod belongs to.
pub const POD_GROUP_LABEL: &str = "scheduling.x-k8s.io/pod-group";
/// Volcano's group annotation, as Volcano writes it today and as it wrote it before.
pub const VOLCANO_GROUP_ANNOTATION: &str = "scheduling.k8s.io/group-name";
pub const VOLCANO_GROUP_ANNOTATION_OLD: &str = "scheduling.volcano.sh/group-name";
/// Kueue's plain-pod group and its size (copied into [`GANG_SIZE_ANNOTATION`]).
pub const KUEUE_POD_GROUP_LABEL: &str = "kueue.x-k8s.io/pod-group-name";
pub const KUEUE_TOTAL_COUNT_ANNOTATION: &str = "kueue.x-k8s.io/pod-group-total-count";
/// Kubeflow training operator v1 and the MPI operator: the job a pod belongs to, the operator
/// that made it (`pytorchjob-controller`, `mpi-operator`, ...) and the pod's index in its
/// replica type.
pub const TRAINING_JOB_NAME_LABEL: &str = "training.kubeflow.org/job-name";
pub const TRAINING_OPERATOR_NAME_LABEL: &str = "training.kubeflow.org/operator-name";
pub const TRAINING_REPLICA_INDEX_LABEL: &str = "training.kubeflow.org/replica-index";
/// JobSet: the JobSet a pod belongs to.
pub const JOBSET_NAME_LABEL: &str = "jobset.sigs.k8s.io/jobset-name";
/// JobSet: the pod's Job's index over the whole JobSet.
pub const JOBSET_GLOBAL_INDEX_LABEL: &str = "jobset.sigs.k8s.io/job-global-index";
/// KubeRay: the RayCluster a pod belongs to (RayJob and RayService pods too, through theirs).
pub const RAY_CLUSTER_LABEL: &str = "ray.io/cluster";
/// LeaderWorkerSet: the set a pod belongs to, its index in its group (0: the leader), and on
/// workers the name of their group's leader pod.
pub const LWS_NAME_LABEL: &str = "leaderworkerset.sigs.k8s.io/name";
pub const LWS_WORKER_INDEX_LABEL: &str = "leaderworkerset.sigs.k8s.io/worker-index";
pub const LWS_LEADER_NAME_ANNOTATION: &str = "leaderworkerset.sigs.k8s.io/leader-name";
/// KServe: the InferenceService, and the same label of KFServing before the rename.
pub const KSERVE_ISVC_LABEL: &str = "serving.kserve.io/inferenceservice";
pub const KFSERVING_ISVC_LABEL: &str = "serving.kubeflow.org/inferenceservice";
/// KServe: the InferenceService's generation its pods were made for (both Deployments of a
/// multi-node predictor carry it, and a new spec makes a new generation of pods).
pub const KSERVE_GENERATION_LABEL: &str = "isvc.generation";
/// KServe multi-node (`spec.predictor.workerSpec`): the containers of the head and worker pods,
/// and the env KServe writes on both with the node count (head and workers) and the parallel
/// sizes (kserve/kserve, pkg/constants/constants.go `InferenceServiceContainerName`,
/// `WorkerContainerName`, `RayNodeCountEnvName`, `PipelineParallelSizeEnvName`,
/// `TensorParallelSizeEnvName`).
pub const KSERVE_HEAD_CONTAINER: &str = "kserve-container";
pub const KSERVE_WORKER_CONTAINER: &str = "worker-container";
pub const KSERVE_NODE_COUNT_ENV: &str = "RAY_NODE_COUNT";
pub const KSERVE_PIPELINE_PARALLEL_ENV: &str = "PIPELINE_PARALLEL_SIZE";
pub const KSERVE_TENSOR_PARALLEL_ENV: &str = "TENSOR_PARALLEL_SIZE";
/// Kubeflow's notebook controller: the Notebook a pod belongs to.
pub const NOTEBOOK_NAME_LABEL: &str = "notebook-name";
/// Annotation on a Notebook (`kubeflow.org/v1`): present, the notebook controller scales it to
/// zero; its value is the RFC 3339 time it was stopped. The Kubeflow UI's stop button and
/// Kubeflow's own culler set it (kubeflow/kubeflow, components/notebook-controller/pkg/culler/
/// culler.go, `STOP_ANNOTATION`); starting the notebook again in the UI removes it.
pub const NOTEBOOK_STOPPED_ANNOTATION: &str = "kubeflow-resource-stopped";
/// Argo Workflows (and so Kubeflow Pipelines): the workflow a step pod belongs to.
pub const ARGO_WORKFLOW_LABEL: &str = "workflows.argoproj.io/workflow";

// --- Kubeflow Pipelines: what a run's cost is charged to (crate::charge) ----------------------

/// Label KFP's API server puts on every pod of a run (through the Workflow's `podMetadata`):
/// the run's UUID. kubeflow/pipelines backend/src/common/util/consts.go `LabelKeyWorkflowRunId`,
/// set in backend/src/apiserver/template/v2_template.go (`SetPodMetadataLabels`).
pub const KFP_RUN_ID_LABEL: &str = "pipeline/runid";
/// Label and annotation KFP's v2 compiler puts on every pod of a v2 run.
/// kubeflow/pipelines backend/src/v2/compiler/argocompiler/argo.go (`PodMetadata`).
pub const KFP_V2_COMPONENT_LABEL: &str = "pipelines.kubeflow.org/v2_component";
/// The flag of KFP's launcher naming the compiled pipeline (`pipelineInfo.name`), in the command
/// of the step pod's `main` container. kubeflow/pipelines backend/src/v2/driver/driver.go
/// (`launcherCmd`).
pub const KFP_PIPELINE_NAME_FLAG: &str = "--pipeline_name";
/// Pod label (Gantry's own): the experiment a pipeline run's cost is charged to. KFP keeps a
/// run's experiment in its database only, so the pipeline's author adds this label to the
/// pipeline's tasks (kfp-kubernetes `add_pod_label`) where cost per experiment is wanted.
pub const EXPERIMENT_LABEL: &str = "gantry.dev/experiment";
