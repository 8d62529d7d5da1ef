//! What both handlers read from a pod, and the screening that refuses hostile pods before any
//! policy runs (see `docs/security.md`): too many containers, oversized labels or annotations,
//! and GPU quantities that are not quantities (`1e100`, `-9.5Gi`). Every check is O(size of the
//! pod) and bounded, so a hostile pod gets a fast, clear denial.
//!
//! The keys Gantry writes on pods (all under `gantry.dev/`):
//!
//! | key | where | value |
//! |---|---|---|
//! | `gantry.dev/tenant` | label | the tenant owning the namespace (the tenant is the queue) |
//! | `gantry.dev/kind` | label | `training`, `pipeline-step`, `notebook`, `serving` or `batch` |
//! | `gantry.dev/workload` | annotation | the workload (gang) key, e.g. `team-a/pod-group/pg1` |
//! | `gantry.dev/priority-class` | annotation | Gantry's priority class of the workload |
//! | `gantry.dev/gang-size` | annotation | pods in the gang, when the framework says it |
//! | `gantry.dev/admission` | scheduling gate | held until the queue admits the workload |

use crate::policy::AdmissionPolicy;
use crate::review::{Decision, Request};
use gantry_api::identity::Source;
use gantry_api::keys::{
    GPU_MILLI_ANNOTATION, GPU_MODELS_ANNOTATION, GPU_PRODUCT_LABEL, GPU_RESOURCE, MIG_RESOURCE_PREFIX,
    MIRROR_ANNOTATION,
};
use gantry_api::pod::{annotation, quantity, QuantityError};
use gantry_core::tenancy::TenantId;
use serde_json::Value;

/// More containers than any real pod has; beyond it a pod is refused.
pub const MAX_CONTAINERS: usize = 256;
/// Kubernetes' limit on a label value.
pub const MAX_LABEL_VALUE: usize = 63;
/// Kubernetes' limit on all annotations of an object together, in bytes.
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;
/// The largest gang Gantry accepts.
pub const MAX_GANG: u32 = 10_000;

pub fn spec_str<'a>(pod: &'a Value, field: &str) -> Option<&'a str> {
    pod.get("spec")?.get(field)?.as_str().filter(|s| !s.is_empty())
}

pub fn is_mirror(pod: &Value) -> bool {
    annotation(pod, MIRROR_ANNOTATION).is_some()
}

/// The tenant whose pod `request` creates, when both handlers act on it; otherwise the answer to
/// give: allow untouched (other requests, other namespaces, mirror pods), deny a GPU pod in a
/// namespace two tenants claim ([`contested`]), or deny a pod that fails [`screen`].
pub fn created_pod(policy: &AdmissionPolicy, request: &Request) -> Result<TenantId, Decision> {
    if !request.is_pod_create() {
        return Err(Decision::allow());
    }
    let Some(tenant) = policy.tenant_of(&request.namespace) else {
        return Err(contested(policy, request).map_or_else(Decision::allow, Decision::deny));
    };
    screen(&request.object).map_err(|e| Decision::bad_request(e.to_string()))?;
    if is_mirror(&request.object) {
        return Err(Decision::allow());
    }
    Ok(tenant)
}

/// The refusal of a pod created in a namespace two or more tenants claim, when it asks for a GPU
/// ([`asks_for_gpu`]): such a namespace belongs to no tenant, so the pod would run outside every
/// queue, quota and cost; refusing it (fail closed) keeps a misconfigured tenancy from being a way
/// around quota. CPU-only pods and mirror pods there are let through, as in any namespace
/// without a tenant: Gantry has nothing to charge for them. Pods already running are not touched
/// (updates are not checked here).
pub fn contested(policy: &AdmissionPolicy, request: &Request) -> Option<String> {
    let tenants = policy.claimants(&request.namespace)?;
    let pod = &request.object;
    if is_mirror(pod) || !asks_for_gpu(pod) {
        return None;
    }
    let namespace = &request.namespace;
    Some(format!(
        "namespace {namespace} is claimed by tenants {}, so it belongs to no tenant and no quota would count this GPU pod; \
         GPU pods are refused there until one tenant has it: remove {namespace} from all but one tenant's namespaces or \
         namespaceSelector (the Tenants' status.conflicts show the conflict)",
        tenants.join(", ")
    ))
}

/// Whether the pod asks for GPUs in any form Gantry counts or refuses in a tenant's namespace: a
/// non-zero `nvidia.com/gpu` ([`wants_gpu`], which a share `gantry.dev/gpu-milli` needs too), a
/// MIG slice (`nvidia.com/mig-*`), the annotation `gantry.dev/gpu-milli` itself, or resource
/// claims (DRA): a claim may well be for a GPU, and Gantry does not count claims, so in doubt the
/// pod is treated as one that does.
pub fn asks_for_gpu(pod: &Value) -> bool {
    if wants_gpu(pod) || annotation(pod, GPU_MILLI_ANNOTATION).is_some() {
        return true;
    }
    let claims = pod.get("spec").and_then(|s| s.get("resourceClaims")).and_then(Value::as_array);
    if claims.is_some_and(|c| !c.is_empty()) {
        return true;
    }
    ["containers", "initContainers"].iter().any(|list| {
        let containers = pod.get("spec").and_then(|s| s.get(*list)).and_then(Value::as_array);
        containers.into_iter().flatten().take(MAX_CONTAINERS).any(|c| {
            ["requests", "limits"].iter().any(|part| {
                let map = c.get("resources").and_then(|r| r.get(*part)).and_then(Value::as_object);
                map.is_some_and(|m| {
                    m.iter().any(|(k, v)| k.starts_with(MIG_RESOURCE_PREFIX) && quantity(v, 1000) != Ok(0))
                })
            })
        })
    })
}

/// Puts `namespace` into the pod's metadata when absent (on CREATE only `request.namespace` is
/// sure to have it), so that identity keys name the right namespace.
pub fn set_namespace(pod: &mut Value, namespace: &str) {
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        if meta.get("namespace").and_then(Value::as_str).is_none_or(str::is_empty) {
            meta.insert("namespace".into(), Value::String(namespace.to_string()));
        }
    }
}

/// Every `nvidia.com/gpu` value of the pod's containers and init containers, in requests and in
/// limits, with the field a user would edit (`spec.containers[0].resources.limits[nvidia.com/gpu]`).
pub fn gpu_fields(pod: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for list in ["containers", "initContainers"] {
        let containers = pod.get("spec").and_then(|s| s.get(list)).and_then(Value::as_array);
        for (i, c) in containers.into_iter().flatten().enumerate().take(MAX_CONTAINERS) {
            for part in ["requests", "limits"] {
                if let Some(v) =
                    c.get("resources").and_then(|r| r.get(part)).and_then(|r| r.get(GPU_RESOURCE))
                {
                    out.push((format!("spec.{list}[{i}].resources.{part}[{GPU_RESOURCE}]"), v));
                }
            }
        }
    }
    out
}

/// Whether the pod asks for GPUs: any `nvidia.com/gpu` value other than zero. A value that is not
/// a quantity counts as asking (screening refuses it anyway).
pub fn wants_gpu(pod: &Value) -> bool {
    gpu_fields(pod).iter().any(|(_, v)| quantity(v, 1000) != Ok(0))
}

/// The GPU models the pod names and the field they are in: the annotation
/// `gantry.dev/gpu-models` (comma-separated), else the node selector `nvidia.com/gpu.product`.
pub fn gpu_models(pod: &Value) -> Option<(String, Vec<&str>)> {
    let (field, list) = match annotation(pod, GPU_MODELS_ANNOTATION) {
        Some(list) => (format!("metadata.annotations[{GPU_MODELS_ANNOTATION}]"), list),
        None => {
            let list = pod.get("spec")?.get("nodeSelector")?.get(GPU_PRODUCT_LABEL)?.as_str()?;
            (format!("spec.nodeSelector[{GPU_PRODUCT_LABEL}]"), list)
        }
    };
    let models: Vec<&str> = list.split([',', '|']).map(str::trim).filter(|m| !m.is_empty()).collect();
    (!models.is_empty()).then_some((field, models))
}

/// The key a workload identity was read from, as a user would look for it on the pod.
pub fn source_key(source: Source) -> &'static str {
    match source {
        Source::PodGroup => "label scheduling.x-k8s.io/pod-group",
        Source::VolcanoGroup => "annotation scheduling.k8s.io/group-name",
        Source::KueuePodGroup => "label kueue.x-k8s.io/pod-group-name",
        Source::KubeflowTraining => "label training.kubeflow.org/job-name",
        Source::JobSet => "label jobset.sigs.k8s.io/jobset-name",
        Source::Ray => "label ray.io/cluster",
        Source::LeaderWorkerSet => "label leaderworkerset.sigs.k8s.io/name",
        Source::IndexedJob => "the pod's Job, with label gantry.dev/gang",
        Source::KServe => "label serving.kserve.io/inferenceservice",
        Source::Notebook => "label notebook-name",
        Source::PipelineStep => "label workflows.argoproj.io/workflow",
        Source::Owner => "the pod's controller owner",
        Source::Pod => "no workload keys",
    }
}

/// Why [`screen`] refuses a pod. Each message names the field and the fix, because it goes back
/// to the user as the admission denial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScreenError {
    /// `request.object` is not a JSON object.
    #[error("request.object is not a Pod object; the API server sends the pod being created")]
    NotAnObject,
    /// The pod has no `metadata` object.
    #[error("metadata is missing; a pod always has metadata")]
    NoMetadata,
    /// More containers and init containers than [`MAX_CONTAINERS`].
    #[error(
        "spec.containers: the pod has {containers} containers and init containers; Gantry accepts at most {MAX_CONTAINERS}"
    )]
    TooManyContainers { containers: usize },
    /// A label value longer than Kubernetes allows; `key` is cut to 64 characters for the message.
    #[error("metadata.labels[{key}] is {len} characters long; label values are at most {MAX_LABEL_VALUE}")]
    LabelTooLong { key: String, len: usize },
    /// The annotations together are larger than Kubernetes allows.
    #[error("metadata.annotations: {bytes} bytes in all; Kubernetes allows at most {MAX_ANNOTATION_BYTES}")]
    AnnotationsTooLarge { bytes: usize },
    /// An `nvidia.com/gpu` value that is not a quantity.
    #[error("{field}: {source}; give a whole number of GPUs, e.g. \"1\"")]
    GpuQuantity {
        field: String,
        #[source]
        source: QuantityError,
    },
}

/// Refuses pods no policy should read further. The message names the field and the fix.
pub fn screen(pod: &Value) -> Result<(), ScreenError> {
    if !pod.is_object() {
        return Err(ScreenError::NotAnObject);
    }
    let Some(metadata) = pod.get("metadata").filter(|m| m.is_object()) else {
        return Err(ScreenError::NoMetadata);
    };
    let count =
        |list: &str| pod.get("spec").and_then(|s| s.get(list)).and_then(Value::as_array).map_or(0, Vec::len);
    let containers = count("containers") + count("initContainers");
    if containers > MAX_CONTAINERS {
        return Err(ScreenError::TooManyContainers { containers });
    }
    if let Some(labels) = metadata.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let len = v.as_str().map_or(0, str::len);
            if len > MAX_LABEL_VALUE {
                let key = crate::review::truncate(k, 64);
                return Err(ScreenError::LabelTooLong { key, len });
            }
        }
    }
    if let Some(annotations) = metadata.get("annotations").and_then(Value::as_object) {
        let bytes: usize = annotations.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
        if bytes > MAX_ANNOTATION_BYTES {
            return Err(ScreenError::AnnotationsTooLarge { bytes });
        }
    }
    for (field, v) in gpu_fields(pod) {
        if let Err(e) = quantity(v, 1000) {
            return Err(ScreenError::GpuQuantity { field, source: e });
        }
    }
    Ok(())
}
