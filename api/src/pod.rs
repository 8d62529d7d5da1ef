//! What the extender needs from a `v1.Pod`: who it is and what it requests.
//!
//! GPU requests: `nvidia.com/gpu` (whole GPUs, summed over containers, as the device plugin
//! counts them); a pod that shares one GPU asks for `nvidia.com/gpu: 1` and annotates its share
//! with `gantry.dev/gpu-milli` (1-999). The GPU models a pod accepts come from the annotation
//! `gantry.dev/gpu-models` (comma-separated) or the node selector `nvidia.com/gpu.product`.

use gantry_core::model::{ModelCatalog, ModelSet, PodRequest, GPU_MILLI};
use serde_json::Value;

use crate::keys::{
    GANG_SIZE_ANNOTATION, GPU_MILLI_ANNOTATION, GPU_MODELS_ANNOTATION, GPU_PRODUCT_LABEL, GPU_RESOURCE,
    PLACEMENT_ANNOTATION, SCHEDULING_GATE,
};
use crate::placement::{PlacementError, Planned};

/// A pod as the extender sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub request: PodRequest,
    /// `metadata.creationTimestamp` in Unix seconds, when set: when the pod started waiting.
    pub created: Option<i64>,
}

impl PodView {
    /// Whether Gantry places this pod (it asks for a GPU); other pods pass through untouched.
    pub fn managed(&self) -> bool {
        self.request.wants_gpu()
    }
}

/// Why a pod cannot be read. Each message names the pod (`who`: `pod <namespace>/<name>`), the
/// field and the fix: the webhook refuses the pod with it, the queue marks it with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    #[error("Pod is missing or not an object")]
    NotAnObject,
    #[error("{who}: {source}")]
    Resources {
        who: String,
        #[source]
        source: FieldError,
    },
    #[error(
        "{who}: {GPU_RESOURCE} must be a whole number; to share a GPU ask for 1 and set the annotation {GPU_MILLI_ANNOTATION}"
    )]
    FractionalGpus { who: String },
    #[error("{who}: {GPU_MILLI_ANNOTATION} shares one GPU, but the pod asks for {gpus}; ask for {GPU_RESOURCE}: 1")]
    ShareOfMany { who: String, gpus: u64 },
    #[error("{who}: {GPU_MILLI_ANNOTATION} is {value:?}; give milli-GPU from 1 to 999")]
    BadShare { who: String, value: String },
    #[error("{who}: {gpus} GPUs is not a request any node can hold")]
    TooManyGpus { who: String, gpus: u64 },
    #[error("{who}: the cpu request is too large")]
    CpuTooLarge { who: String },
    /// `known`: the models the cluster's nodes have, comma-separated.
    #[error("{who} asks for GPU model {model:?}, which no node has (models: {known}); fix the name")]
    UnknownModel { who: String, model: String, known: String },
}

/// A resource value in a container's (or the overhead's) `requests` or `limits` that is not a
/// quantity: `field` is the path to the `resources` (or `spec.overhead`), `resource` the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}[{resource}] {source}")]
pub struct FieldError {
    pub field: String,
    pub resource: String,
    #[source]
    pub source: QuantityError,
}

/// A value that is not a Kubernetes quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Neither a string nor a number (the value as JSON).
    #[error("{0} is not a quantity")]
    NotAQuantity(String),
    #[error("{0:?} is not a quantity like \"500m\", \"2\" or \"16Gi\"")]
    Malformed(String),
    #[error("{0:?} is negative or not finite")]
    Negative(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Whether Gantry's scheduling gate holds the pod.
pub fn gated(pod: &Value) -> bool {
    pod.get("spec")
        .and_then(|s| s.get("schedulingGates"))
        .and_then(Value::as_array)
        .is_some_and(|g| g.iter().any(|g| g.get("name").and_then(Value::as_str) == Some(SCHEDULING_GATE)))
}

/// Where the queue planned the pod ([`PLACEMENT_ANNOTATION`]): `None` when it carries no plan,
/// an error when the annotation cannot be read.
pub fn planned(pod: &Value) -> Result<Option<Planned>, PlacementError> {
    annotation(pod, PLACEMENT_ANNOTATION).map(Planned::parse).transpose()
}

/// The gang size the pod's [`GANG_SIZE_ANNOTATION`] declares, when it is a count above zero.
pub fn annotated_gang_size(pod: &Value) -> Option<u32> {
    annotation(pod, GANG_SIZE_ANNOTATION).and_then(|s| s.parse::<u32>().ok()).filter(|&n| n > 0)
}

/// Whether the pod has ended (`Succeeded` or `Failed`): it holds no room any more.
pub fn pod_finished(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// `metadata.{map}[key]` as a string, exactly as set (an empty value is `Some("")`).
pub fn meta<'a>(obj: &'a Value, map: &str, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(map)?.get(key)?.as_str()
}

/// `metadata.{field}` as a string, when set and not empty.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str().filter(|s| !s.is_empty())
}

/// A label's value.
pub fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta(obj, "labels", key)
}

/// An annotation's value.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta(obj, "annotations", key)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str)
}

/// A pod's effective requests of the resources Gantry counts, as the kubelet and kube-scheduler
/// compute them (`resource.PodRequests` in `k8s.io/component-helpers`, KEP-753 sidecars):
///
/// ```text
/// effective = max( Σ containers + Σ sidecars,
///                  max over init containers i (not sidecars): request(i) + Σ sidecars before i )
///             + spec.overhead
/// ```
///
/// A sidecar is an init container with `restartPolicy: Always`: it keeps running beside the app
/// containers. A container's request of a resource is its `requests` value, else its `limits`
/// value (Kubernetes defaults one to the other; extended resources must have them equal).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub cpu_milli: u64,
    pub memory_bytes: u64,
    pub gpus_milli: u64,
}

impl Requests {
    fn add(self, o: Requests) -> Requests {
        Requests {
            cpu_milli: self.cpu_milli.saturating_add(o.cpu_milli),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
            gpus_milli: self.gpus_milli.saturating_add(o.gpus_milli),
        }
    }

    fn max(self, o: Requests) -> Requests {
        Requests {
            cpu_milli: self.cpu_milli.max(o.cpu_milli),
            memory_bytes: self.memory_bytes.max(o.memory_bytes),
            gpus_milli: self.gpus_milli.max(o.gpus_milli),
        }
    }
}

/// One container's (or the overhead's) requests: `requests`, else `limits`, per resource.
fn container_requests(
    requests: Option<&Value>,
    limits: Option<&Value>,
    field: &str,
) -> Result<Requests, FieldError> {
    let get = |k: &str| requests.and_then(|r| r.get(k)).or_else(|| limits.and_then(|l| l.get(k)));
    let q = |k: &str, scale: u64| {
        get(k).map_or(Ok(0), |v| {
            quantity(v, scale).map_err(|source| FieldError {
                field: field.to_string(),
                resource: k.to_string(),
                source,
            })
        })
    };
    Ok(Requests {
        cpu_milli: q("cpu", 1000)?,
        memory_bytes: q("memory", 1)?,
        gpus_milli: q(GPU_RESOURCE, 1000)?,
    })
}

/// The pod's effective requests (see [`Requests`]). Errors name the field.
pub fn effective_requests(pod: &Value) -> Result<Requests, FieldError> {
    let spec = pod.get("spec");
    let list = |k: &str| spec.and_then(|s| s.get(k)).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let of = |c: &Value, field: String| {
        let r = c.get("resources");
        container_requests(r.and_then(|r| r.get("requests")), r.and_then(|r| r.get("limits")), &field)
    };
    let mut apps = Requests::default();
    for (i, c) in list("containers").iter().enumerate() {
        apps = apps.add(of(c, format!("spec.containers[{i}].resources"))?);
    }
    let mut sidecars = Requests::default();
    let mut init_peak = Requests::default();
    for (i, c) in list("initContainers").iter().enumerate() {
        let r = of(c, format!("spec.initContainers[{i}].resources"))?;
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            sidecars = sidecars.add(r);
            // A sidecar starts before the init containers after it, and stays.
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(r.add(sidecars));
        }
    }
    let overhead = container_requests(spec.and_then(|s| s.get("overhead")), None, "spec.overhead")?;
    Ok(apps.add(sidecars).max(init_peak).add(overhead))
}

/// Reads a pod. Errors name the field and the fix.
pub fn parse_pod(pod: &Value, models: &ModelCatalog) -> Result<PodView, PodError> {
    if !pod.is_object() {
        return Err(PodError::NotAnObject);
    }
    let (namespace, name, uid) = names(pod);
    let who = format!("pod {namespace}/{name}");
    let request = read_demand(pod, &who)?.resolve(models, &who)?;
    Ok(PodView { namespace, name, uid, request, created: created(pod) })
}

/// `metadata.namespace` (`default` when unset), `name` and `uid`.
pub(crate) fn names(pod: &Value) -> (String, String, String) {
    let name = str_at(pod, &["metadata", "name"]).unwrap_or_default().to_string();
    let namespace = str_at(pod, &["metadata", "namespace"]).unwrap_or("default").to_string();
    let uid = str_at(pod, &["metadata", "uid"]).unwrap_or_default().to_string();
    (namespace, name, uid)
}

/// `metadata.creationTimestamp` in Unix seconds, when set and readable.
pub(crate) fn created(pod: &Value) -> Option<i64> {
    str_at(pod, &["metadata", "creationTimestamp"])
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second())
}

/// What a pod asks for, before the GPU model names it accepts are looked up in a cluster's
/// catalog (which grows as nodes of new models appear, so a pod read once is resolved again
/// against the catalog of the moment: [`Demand::resolve`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Demand {
    /// The request, with no `allowed_models` yet.
    pub request: PodRequest,
    /// The models the pod names ([`GPU_MODELS_ANNOTATION`], else the node selector
    /// [`GPU_PRODUCT_LABEL`]), as written; only a GPU pod's are kept.
    pub models: Option<String>,
}

impl Demand {
    /// The request with the models it accepts from `models`; an error names a model no node
    /// has. `who` names the pod in the message.
    pub fn resolve(&self, models: &ModelCatalog, who: &str) -> Result<PodRequest, PodError> {
        let mut request = self.request;
        if let Some(list) = &self.models {
            let mut set = ModelSet::default();
            for m in list.split([',', '|']).map(str::trim).filter(|m| !m.is_empty()) {
                match models.get(m) {
                    Some(id) => set.insert(id),
                    None => {
                        return Err(PodError::UnknownModel {
                            who: who.to_string(),
                            model: m.to_string(),
                            known: models.names().join(", "),
                        })
                    }
                }
            }
            request.allowed_models = (!set.is_empty()).then_some(set);
        }
        Ok(request)
    }
}

/// Reads what a pod asks for (see [`Demand`]). Errors start with `who` and name the field.
pub fn read_demand(pod: &Value, who: &str) -> Result<Demand, PodError> {
    let who = || who.to_string();
    let effective = effective_requests(pod).map_err(|source| PodError::Resources { who: who(), source })?;
    let (cpu, mem) = (effective.cpu_milli, effective.memory_bytes.div_ceil(1 << 20));
    if effective.gpus_milli % 1000 != 0 {
        return Err(PodError::FractionalGpus { who: who() });
    }
    let gpus = effective.gpus_milli / 1000;
    let annotations = pod.get("metadata").and_then(|m| m.get("annotations"));
    let share = annotations.and_then(|a| a.get(GPU_MILLI_ANNOTATION)).and_then(Value::as_str);
    let gpu_milli = match share {
        None => GPU_MILLI,
        Some(s) => match s.trim().parse::<u32>() {
            Ok(m) if (1..GPU_MILLI).contains(&m) && gpus == 1 => m,
            Ok(m) if (1..GPU_MILLI).contains(&m) => return Err(PodError::ShareOfMany { who: who(), gpus }),
            _ => return Err(PodError::BadShare { who: who(), value: s.to_string() }),
        },
    };
    let gpu_count = u32::try_from(gpus).map_err(|_| PodError::TooManyGpus { who: who(), gpus })?;
    let request = PodRequest {
        cpu_milli: u32::try_from(cpu).map_err(|_| PodError::CpuTooLarge { who: who() })?,
        memory_mib: mem,
        gpu_count,
        gpu_milli: if gpu_count == 0 { 0 } else { gpu_milli },
        allowed_models: None,
    };
    let models = annotations
        .and_then(|a| a.get(GPU_MODELS_ANNOTATION))
        .and_then(Value::as_str)
        .or_else(|| str_at(pod, &["spec", "nodeSelector", GPU_PRODUCT_LABEL]))
        .filter(|_| gpu_count > 0)
        .map(str::to_string);
    Ok(Demand { request, models })
}

/// A Kubernetes quantity (`"500m"`, `"2"`, `"1.5"`, `"16Gi"`, `"1e3"`) times `scale`, rounded up:
/// scale 1000 gives milli-units, 1 gives units.
pub fn quantity(q: &Value, scale: u64) -> Result<u64, QuantityError> {
    let s = match q {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err(QuantityError::NotAQuantity(q.to_string())),
    };
    let bad = || QuantityError::Malformed(s.clone());
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-' || c == 'e' || c == 'E'))
        .unwrap_or(s.len());
    // "1e3" is a number with an exponent; "1E" would be exa. Only treat e/E as part of the number
    // when digits follow.
    let (num, suffix) = {
        let (n, sfx) = s.split_at(split);
        match n.rfind(['e', 'E']) {
            Some(i) if i + 1 == n.len() => (&n[..i], &s[i..]),
            _ => (n, sfx),
        }
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    if value < 0.0 || !value.is_finite() {
        return Err(QuantityError::Negative(s));
    }
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return Err(bad()),
    };
    let scaled = value * factor * scale as f64;
    if scaled > u64::MAX as f64 / 2.0 {
        return Err(QuantityError::TooLarge(s));
    }
    // Round up, tolerating binary floating-point error (0.1 * 1000 = 100.00000000000001).
    Ok((scaled - 1e-6).ceil().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        for (q, scale, want) in [
            (json!("500m"), 1000, 500),
            (json!("2"), 1000, 2000),
            (json!("1.5"), 1000, 1500),
            (json!(4), 1000, 4000),
            (json!("16Gi"), 1, 16 << 30),
            (json!("512Mi"), 1, 512 << 20),
            (json!("1G"), 1, 1_000_000_000),
            (json!("1e3"), 1, 1000),
            (json!("0.1"), 1000, 100),
        ] {
            assert_eq!(quantity(&q, scale), Ok(want), "{q}");
        }
        for q in [json!("lots"), json!("-1"), json!("5Qi"), json!(true)] {
            assert!(quantity(&q, 1000).is_err(), "{q}");
        }
    }

    fn models() -> ModelCatalog {
        let mut m = ModelCatalog::default();
        m.intern("A100").unwrap();
        m.intern("V100M32").unwrap();
        m
    }

    #[test]
    fn gpu_pods_whole_shared_and_with_models() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1",
            "annotations": {"gantry.dev/gpu-models": "A100"}},
            "spec": {"containers": [
                {"resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"nvidia.com/gpu": "2"}}},
                {"resources": {"requests": {"cpu": "500m"}}}]}});
        let v = parse_pod(&pod, &models()).unwrap();
        assert_eq!((v.namespace.as_str(), v.name.as_str(), v.uid.as_str()), ("ns", "p", "u1"));
        assert_eq!(
            (v.request.cpu_milli, v.request.memory_mib, v.request.gpu_count, v.request.gpu_milli),
            (4500, 16384, 2, 1000)
        );
        assert_eq!(
            v.request.allowed_models,
            Some([ModelCatalog::get(&models(), "A100").unwrap()].into_iter().collect())
        );
        let shared = json!({"metadata": {"name": "s", "annotations": {"gantry.dev/gpu-milli": "250"}},
            "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": 1}}}]}});
        let v = parse_pod(&shared, &models()).unwrap();
        assert_eq!((v.request.gpu_count, v.request.gpu_milli, v.namespace.as_str()), (1, 250, "default"));
        assert!(v.managed());
    }

    #[test]
    fn bad_pods_are_refused_with_the_fix() {
        let m = models();
        let frac = json!({"metadata": {"name": "f"}, "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "0.5"}}}]}});
        assert!(parse_pod(&frac, &m).unwrap_err().to_string().contains("gantry.dev/gpu-milli"));
        let model = json!({"metadata": {"name": "h"}, "spec": {"nodeSelector": {"nvidia.com/gpu.product": "H100"},
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": 1}}}]}});
        assert!(
            matches!(parse_pod(&model, &m), Err(PodError::UnknownModel { model, .. }) if model == "H100")
        );
        assert!(parse_pod(&json!(null), &m).is_err());
        let cpu = json!({"metadata": {"name": "c"}, "spec": {"containers": null}});
        assert!(!parse_pod(&cpu, &m).unwrap().managed(), "a pod without requests is not Gantry's");
    }
}
