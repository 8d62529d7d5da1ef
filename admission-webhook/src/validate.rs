//! `POST /validate`: refuse, with a message naming the field and the fix, what can never run or is
//! not allowed; warn about what will merely wait. It checks the final pod (after every mutating
//! webhook), so it also catches what the fail-open mutating webhook missed.
//!
//! Denials, for pods created in a namespace some tenant owns:
//!
//! - hostile or broken pods (see [`crate::inspect::screen`]);
//! - `gantry.dev/tenant` naming another tenant than the namespace's (tenants cannot pick a queue);
//! - `gantry.dev/kind` disagreeing with the pod's workload keys;
//! - a priority class (annotation `gantry.dev/priority-class`, or `spec.priorityClassName` when
//!   it names one of Gantry's classes) that does not exist, that the tenant may not use, or two
//!   that disagree;
//! - a fractional `nvidia.com/gpu`;
//! - a GPU model (annotation `gantry.dev/gpu-models` or node selector `nvidia.com/gpu.product`)
//!   that is none of the tenancy's GPU flavors;
//! - a GPU request above what the tenant could ever hold (nominal plus borrowing) of every model
//!   the pod accepts;
//! - gang sizes, as far as one pod shows them: `gantry.dev/gang-size` must be a whole number from
//!   1 to 10000, must equal Kueue's `kueue.x-k8s.io/pod-group-total-count` when both are set,
//!   needs a workload for the other members to join (any workload key or a controller owner)
//!   when above 1, and must exceed the pod's own member index (`training.kubeflow.org/replica-index`,
//!   `jobset.sigs.k8s.io/job-global-index`).
//!
//! In a namespace two or more tenants claim (it is no tenant's), GPU pods are denied, naming the
//! tenants and the fix (see [`crate::inspect::contested`]); other pods there are allowed.
//!
//! Warnings: a request above the tenant's nominal quota (it runs only on borrowed capacity), and a
//! gang that could not be held whole if every member asked as much as this pod.
//!
//! Updates of pods in a tenant's namespace (see [`update`]): only the queue controller may lift
//! Gantry's gate or write the placement record, and nobody may change Gantry's keys or move a pod
//! to another workload after creation; so a tenant cannot start work past the queue, join
//! another gang or raise its own priority by editing a pod.

use crate::inspect::*;
use crate::policy::{gpus, AdmissionPolicy};
use crate::review::{Decision, Request};
use gantry_api::identity::{identify, Identity, Source};
use gantry_api::keys::*;
use gantry_api::pod::{annotation, gated, label, meta, parse_pod, quantity};
use gantry_core::tenancy::{FlavorId, Milli, TenantId};
use serde_json::Value;

/// Decides one validating review. `request.object` should already carry its namespace.
pub fn validate(policy: &AdmissionPolicy, request: &Request) -> Decision {
    if request.is_pod_update() {
        return update(policy, request);
    }
    let tenant = match created_pod(policy, request) {
        Ok(tenant) => tenant,
        Err(answer) => return answer,
    };
    let pod = &request.object;
    let identity = identify(pod);
    let mut check = Check { policy, tenant, pod, denials: Vec::new(), warnings: Vec::new() };
    check.tenant_label(&request.namespace);
    check.kind_label(&identity);
    check.priority_class();
    check.held();
    check.other_accelerators();
    let demand = check.gpus();
    check.sharing();
    check.gang(&identity, demand);
    match check.denials.is_empty() {
        true => Decision { warnings: check.warnings, ..Decision::allow() },
        false => Decision { warnings: check.warnings, ..Decision::deny(check.denials.join("\n")) },
    }
}

/// The keys nobody but the queue controller may change after a pod is created: what the mutating
/// webhook wrote, what the queue reads, and the placement record.
const FIXED: [(&str, &str); 8] = [
    ("labels", TENANT_LABEL),
    ("labels", KIND_LABEL),
    ("annotations", WORKLOAD_ANNOTATION),
    ("annotations", PRIORITY_CLASS_ANNOTATION),
    ("annotations", GANG_SIZE_ANNOTATION),
    ("annotations", GPU_MODELS_ANNOTATION),
    ("annotations", GPU_MILLI_ANNOTATION),
    ("annotations", PLACEMENT_ANNOTATION),
];

/// Decides an update of a pod: the queue controller may do anything; others may not lift the
/// gate, change a key in [`FIXED`] or change the workload keys the gang is read from.
pub fn update(policy: &AdmissionPolicy, request: &Request) -> Decision {
    let (old, new) = (&request.old_object, &request.object);
    if policy.tenant_of(&request.namespace).is_none()
        || is_mirror(old)
        || policy.queue_controllers.contains(&request.user)
    {
        return Decision::allow();
    }
    let mut denials = Vec::new();
    if gated(old) && !gated(new) {
        denials.push(format!(
            "spec.schedulingGates: only Gantry's queue controller removes {SCHEDULING_GATE}; the pod starts when its workload \
             is admitted (`kubectl describe pod` says why it waits)"
        ));
    }
    for (map, key) in FIXED {
        let (was, now) = (meta(old, map, key), meta(new, map, key));
        if was != now {
            let shown = |v: Option<&str>| v.map_or("absent".to_string(), |v| format!("{v:?}"));
            denials.push(format!(
                "metadata.{map}[{key}] cannot change after the pod is created (was {}, now {}); restore it, or create a new pod",
                shown(was),
                shown(now)
            ));
        }
    }
    let (was, now) = (identify(old).key, identify(new).key);
    if was != now {
        denials.push(format!(
            "metadata: this change moves the pod from workload {was} to {now}; restore its workload labels and owner: a pod cannot move to another workload"
        ));
    }
    match denials.is_empty() {
        true => Decision::allow(),
        false => Decision::deny(denials.join("\n")),
    }
}

struct Check<'a> {
    policy: &'a AdmissionPolicy,
    tenant: TenantId,
    pod: &'a Value,
    denials: Vec<String>,
    warnings: Vec<String>,
}

impl Check<'_> {
    fn tenant_name(&self) -> &str {
        self.policy.tenant_name(self.tenant)
    }

    fn tenant_label(&mut self, namespace: &str) {
        let owner = self.tenant_name().to_string();
        if let Some(named) = label(self.pod, TENANT_LABEL).filter(|n| *n != owner) {
            self.denials.push(format!(
                "metadata.labels[{TENANT_LABEL}] is {named:?}, but namespace {namespace} belongs to tenant {owner}; \
                 remove the label: a pod always runs in the queue of its namespace's tenant"
            ));
        }
    }

    fn kind_label(&mut self, identity: &Identity) {
        let kind = identity.kind.name();
        if let Some(named) = label(self.pod, KIND_LABEL).filter(|k| *k != kind) {
            self.denials.push(format!(
                "metadata.labels[{KIND_LABEL}] is {named:?}, but the pod is a {kind} workload (from {}); remove the label: Gantry sets it",
                source_key(identity.source)
            ));
        }
    }

    fn priority_class(&mut self) {
        let annotated = annotation(self.pod, PRIORITY_CLASS_ANNOTATION);
        let spec = spec_str(self.pod, "priorityClassName").filter(|c| self.policy.is_class(c));
        let annotation_field = format!("metadata.annotations[{PRIORITY_CLASS_ANNOTATION}]");
        let (field, class) = match (annotated, spec) {
            (Some(a), Some(s)) if a != s => {
                self.denials.push(format!(
                    "{annotation_field} is {a:?} but spec.priorityClassName is {s:?}; remove the annotation or make them equal"
                ));
                return;
            }
            (_, Some(s)) => ("spec.priorityClassName".to_string(), s),
            (Some(a), None) => (annotation_field, a),
            (None, None) => return,
        };
        let usable = self.policy.usable_classes(self.tenant).join(", ");
        if !self.policy.is_class(class) {
            let all = self.policy.class_names().join(", ");
            self.denials.push(format!("{field}: priority class {class:?} does not exist; use one of {all}, or remove it to get the default"));
        } else if !self.policy.may_use(self.tenant, class) {
            self.denials.push(format!(
                "{field}: tenant {} may not use priority class {class}; use one of {usable}, or ask a platform admin to allow it",
                self.tenant_name()
            ));
        }
    }

    /// A GPU pod in a tenant's namespace runs only through Gantry's queue: it must carry the gate
    /// (the mutating webhook puts it there; it fails open, so a pod it never saw comes here
    /// without it) and must not name its node (Kubernetes refuses gates with `spec.nodeName`,
    /// and a bound pod would hold GPUs outside its tenant's quota and cost).
    fn held(&mut self) {
        if !wants_gpu(self.pod) {
            return;
        }
        if let Some(node) = spec_str(self.pod, "nodeName") {
            self.denials.push(format!(
                "spec.nodeName is {node:?}: GPU pods of tenant {} are placed by Gantry's queue, within the tenant's quota; \
                 remove spec.nodeName (use a node selector or affinity to choose nodes)",
                self.tenant_name()
            ));
        } else if !gated(self.pod) {
            self.denials.push(format!(
                "spec.schedulingGates: this GPU pod lacks Gantry's gate {SCHEDULING_GATE}, so Gantry's mutating webhook did not see \
                 it (it may have been unavailable); create the pod again"
            ));
        }
    }

    /// GPUs asked for in a form Gantry does not count (MIG slices `nvidia.com/mig-*`, dynamic
    /// resource claims) would run outside the tenant's quota and cost: refused in a tenant's
    /// namespace, naming the field and what to ask for instead.
    fn other_accelerators(&mut self) {
        let spec = self.pod.get("spec");
        if spec.and_then(|s| s.get("resourceClaims")).and_then(Value::as_array).is_some_and(|c| !c.is_empty())
        {
            self.denials.push(format!(
                "spec.resourceClaims: devices from resource claims (DRA) are not counted by Gantry's quota in tenant namespaces; \
                 ask for {GPU_RESOURCE} instead"
            ));
        }
        for list in ["containers", "initContainers"] {
            let containers =
                spec.and_then(|s| s.get(list)).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            for (i, c) in containers.iter().enumerate().take(MAX_CONTAINERS) {
                for part in ["requests", "limits"] {
                    let Some(map) = c.get("resources").and_then(|r| r.get(part)).and_then(Value::as_object)
                    else {
                        continue;
                    };
                    if let Some(key) = map.keys().find(|k| k.starts_with(MIG_RESOURCE_PREFIX)) {
                        self.denials.push(format!(
                            "spec.{list}[{i}].resources.{part}[{key}]: MIG slices are not counted by Gantry's quota in tenant namespaces; \
                             ask for {GPU_RESOURCE} (a MIG slice as a flavor of its own is not supported yet)"
                        ));
                    }
                }
            }
        }
    }

    /// A share of a GPU (`gantry.dev/gpu-milli`) is granted by the platform, per flavor: every
    /// GPU model the pod accepts must be a flavor with `sharing: true`.
    fn sharing(&mut self) {
        let Some(share) = annotation(self.pod, GPU_MILLI_ANNOTATION) else { return };
        let accepted: Vec<FlavorId> = match gpu_models(self.pod) {
            Some((_, models)) => models.iter().filter_map(|m| self.policy.gpu_flavor(m)).collect(),
            None => self.policy.gpu_flavors().to_vec(),
        };
        let flavors = &self.policy.tenancy.flavors;
        let unshared: Vec<&str> =
            accepted.iter().filter(|&&f| !flavors[f].sharing).map(|&f| flavors[f].name.as_str()).collect();
        if !unshared.is_empty() {
            let shared: Vec<&str> = flavors.iter().filter(|f| f.sharing).map(|f| f.name.as_str()).collect();
            self.denials.push(format!(
                "metadata.annotations[{GPU_MILLI_ANNOTATION}] is {share:?}, but GPUs of {} are not shared (the device plugin gives the pod \
                 a whole GPU); remove the annotation, or name only flavors with sharing in {GPU_MODELS_ANNOTATION} ({})",
                unshared.join(", "),
                if shared.is_empty() { "this cluster has none".to_string() } else { shared.join(", ") }
            ));
        }
    }

    /// GPU checks; returns the pod's demand and the tenant's ceiling (milli-GPU) when readable.
    fn gpus(&mut self) -> Option<(Milli, Milli)> {
        let before = self.denials.len();
        for (field, v) in gpu_fields(self.pod) {
            if quantity(v, 1000).is_ok_and(|m| m % 1000 != 0) {
                self.denials.push(format!(
                    "{field} is {v}: {GPU_RESOURCE} counts whole GPUs; to share one GPU ask for 1 and set the annotation {GPU_MILLI_ANNOTATION} (e.g. \"500\")"
                ));
            }
        }
        if !wants_gpu(self.pod) {
            return None;
        }
        let mut flavors = self.policy.gpu_flavors().to_vec();
        if let Some((field, models)) = gpu_models(self.pod) {
            flavors.clear();
            for m in models {
                match self.policy.gpu_flavor(m) {
                    Some(f) => flavors.push(f),
                    None => {
                        let known: Vec<&str> =
                            self.policy.gpu_flavors().iter().map(|&f| self.policy.flavor_name(f)).collect();
                        self.denials.push(format!(
                            "{field}: GPU model {m:?} is not in this cluster (models: {}); name one of them",
                            known.join(", ")
                        ));
                    }
                }
            }
        }
        if self.denials.len() > before {
            return None;
        }
        // The scheduler's own reading decides what the queue will see.
        let view = match parse_pod(self.pod, &self.policy.models) {
            Ok(v) => v,
            Err(e) => {
                self.denials.push(e.to_string());
                return None;
            }
        };
        let demand = Milli::from(view.request.gpu_count) * Milli::from(view.request.gpu_milli);
        let per_flavor = |of: &dyn Fn(usize) -> Milli| -> (Milli, String) {
            let best = flavors.iter().map(|&f| of(f)).max().unwrap_or(0);
            let list: Vec<String> =
                flavors.iter().map(|&f| format!("{} {}", self.policy.flavor_name(f), gpus(of(f)))).collect();
            (best, list.join(", "))
        };
        let (ceiling, ceilings) = per_flavor(&|f| self.policy.ceiling(self.tenant, f));
        let (nominal, _) = per_flavor(&|f| self.policy.nominal(self.tenant, f));
        if demand > ceiling {
            self.denials.push(format!(
                "spec.containers: the pod asks for {} {GPU_RESOURCE}, but tenant {} can never hold more than {} of the models it accepts \
                 (nominal plus borrowing: {ceilings}); ask for at most {}, or ask a platform admin to raise the quota",
                gpus(demand),
                self.tenant_name(),
                gpus(ceiling),
                gpus(ceiling)
            ));
        } else if demand > nominal {
            self.warnings.push(format!(
                "asks {} GPUs, above tenant {}'s nominal {}: runs only on borrowed capacity, may wait or be preempted",
                gpus(demand),
                self.tenant_name(),
                gpus(nominal)
            ));
        }
        Some((demand, ceiling))
    }

    /// Gang checks for what one pod shows; `gpu` is (this pod's demand, the tenant's ceiling).
    fn gang(&mut self, identity: &Identity, gpu: Option<(Milli, Milli)>) {
        let field = format!("metadata.annotations[{GANG_SIZE_ANNOTATION}]");
        let Some(text) = annotation(self.pod, GANG_SIZE_ANNOTATION) else { return };
        let size = match text.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_GANG).contains(&n) => n,
            _ => {
                self.denials.push(format!("{field} is {text:?}; give the number of pods in the gang, a whole number from 1 to {MAX_GANG}"));
                return;
            }
        };
        if let Some(kueue) = annotation(self.pod, KUEUE_TOTAL_COUNT_ANNOTATION)
            .filter(|k| k.trim().parse::<u32>().ok() != Some(size))
        {
            self.denials.push(format!(
                "{field} is {size} but {KUEUE_TOTAL_COUNT_ANNOTATION} is {kueue:?}; remove {GANG_SIZE_ANNOTATION}: Gantry copies Kueue's count"
            ));
        }
        if size > 1 && identity.source == Source::Pod {
            self.denials.push(format!(
                "{field} is {size}, but the pod names no workload for the other {} to join; label the pods \
                 scheduling.x-k8s.io/pod-group, create them from a Job or framework, or remove the annotation",
                size - 1
            ));
        }
        for key in [TRAINING_REPLICA_INDEX_LABEL, JOBSET_GLOBAL_INDEX_LABEL] {
            if let Some(index) = label(self.pod, key)
                .and_then(|i| i.trim().parse::<u64>().ok())
                .filter(|&i| i >= u64::from(size))
            {
                self.denials.push(format!(
                    "{field} is {size}, but the pod's {key} is {index}, so the gang has more members; set {GANG_SIZE_ANNOTATION} to the gang's pod count"
                ));
            }
        }
        if let Some((demand, ceiling)) = gpu.filter(|_| size > 1) {
            let whole = demand.saturating_mul(Milli::from(size));
            if whole > ceiling {
                self.warnings.push(format!(
                    "if all {size} gang members ask {} GPUs like this one, the gang needs {}, above tenant {}'s ceiling {}",
                    gpus(demand),
                    gpus(whole),
                    self.tenant_name(),
                    gpus(ceiling)
                ));
            }
        }
    }
}
