//! The rules the webhook applies, computed once from the tenant definitions the scheduler uses
//! (the tenants file in development), so that a request never waits on anything.
//!
//! The most a tenant could ever hold of each flavor (its nominal quota plus what it may borrow in
//! its cohort, with nothing else running) comes from the core's quota tree, as the queue computes
//! it when it refuses a workload that could never run.

use gantry_core::model::{ModelCatalog, ModelError};
use gantry_core::queue::quota::QuotaTree;
use gantry_core::tenancy::{FlavorId, Kind, Milli, Tenancy, TenantId};
use std::collections::BTreeMap;

/// The webhook's admission policy: tenants, their ceilings and the configured scheduler. Named
/// apart from the core's placement `Policy` (which scores nodes for a pod), since this one decides
/// only what a pod may ask for and how it is tagged.
#[derive(Debug, Clone)]
pub struct AdmissionPolicy {
    pub tenancy: Tenancy,
    /// `[tenant][flavor]`: the most the tenant could ever hold, in milli-units.
    ceilings: Vec<Vec<Milli>>,
    /// The GPU flavors (every flavor but `cpu`), in file order.
    gpu_flavors: Vec<FlavorId>,
    /// The GPU flavors' names as the scheduler's model catalog, for `parse_pod`.
    pub models: ModelCatalog,
    /// `spec.schedulerName` to set on GPU pods (`--scheduler-name`), if any.
    pub scheduler_name: Option<String>,
    /// The users allowed to lift Gantry's gate and write the placement record on pods: the queue
    /// controller's service account (`--queue-controller`).
    pub queue_controllers: Vec<String>,
    /// Namespaces two or more tenants claim (they belong to none), each with the claiming
    /// tenants' names: GPU pods there are refused ([`crate::inspect::created_pod`]). Set by the
    /// live webhook from the cluster's objects; a tenants file has none (its parser refuses a
    /// namespace listed twice).
    pub contested: BTreeMap<String, Vec<String>>,
}

/// Why [`AdmissionPolicy::new`] could not build a policy from a tenancy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A GPU flavor's name could not be added to the model catalog the webhook reads pods with
    /// (the tenancy names more GPU models than the catalog can hold). The flavor is named so the
    /// tenants file or GpuFlavor object to change is clear.
    #[error("flavor {flavor}: {source}")]
    Flavor {
        flavor: String,
        #[source]
        source: ModelError,
    },
}

/// The queue controller's user as `deploy/scheduler/rbac.yaml` and the chart install it.
pub const QUEUE_CONTROLLER: &str = "system:serviceaccount:gantry-system:gantry-scheduler";

impl AdmissionPolicy {
    /// Builds the policy. Fails only when the tenancy names more GPU models than the scheduler's
    /// catalog can hold.
    pub fn new(tenancy: Tenancy, scheduler_name: Option<String>) -> Result<AdmissionPolicy, PolicyError> {
        let tree = QuotaTree::new(&tenancy);
        let ceilings = (0..tenancy.tenants.len())
            .map(|t| (0..tenancy.flavors.len()).map(|f| tree.ceiling(t, f).max(0) as Milli).collect())
            .collect();
        let gpu_flavors: Vec<FlavorId> =
            (0..tenancy.flavors.len()).filter(|&f| !tenancy.flavors[f].is_cpu()).collect();
        let mut models = ModelCatalog::default();
        for &f in &gpu_flavors {
            let flavor = &tenancy.flavors[f].name;
            models.intern(flavor).map_err(|source| PolicyError::Flavor { flavor: flavor.clone(), source })?;
        }
        Ok(AdmissionPolicy {
            tenancy,
            ceilings,
            gpu_flavors,
            models,
            scheduler_name,
            queue_controllers: vec![QUEUE_CONTROLLER.to_string()],
            contested: BTreeMap::new(),
        })
    }

    /// The tenant that owns `namespace`: pods of other namespaces are not Gantry's.
    pub fn tenant_of(&self, namespace: &str) -> Option<TenantId> {
        self.tenancy.tenant_of_namespace(namespace)
    }

    /// The tenants claiming `namespace`, when two or more do (it is then no tenant's).
    pub fn claimants(&self, namespace: &str) -> Option<&[String]> {
        self.contested.get(namespace).map(Vec::as_slice)
    }

    pub fn tenant_name(&self, t: TenantId) -> &str {
        self.tenancy.tenants.get(t).map_or("", |x| x.name.as_str())
    }

    pub fn gpu_flavors(&self) -> &[FlavorId] {
        &self.gpu_flavors
    }

    pub fn flavor_name(&self, f: FlavorId) -> &str {
        self.tenancy.flavors.get(f).map_or("", |x| x.name.as_str())
    }

    /// The GPU flavor named `model`, if the tenancy has it.
    pub fn gpu_flavor(&self, model: &str) -> Option<FlavorId> {
        self.tenancy.flavor(model).filter(|f| self.gpu_flavors.contains(f))
    }

    /// The most of flavor `f` tenant `t` could ever hold, in milli-units.
    pub fn ceiling(&self, t: TenantId, f: FlavorId) -> Milli {
        self.ceilings.get(t).and_then(|c| c.get(f)).copied().unwrap_or(0)
    }

    /// Tenant `t`'s guaranteed quota of flavor `f`, in milli-units.
    pub fn nominal(&self, t: TenantId, f: FlavorId) -> Milli {
        self.tenancy.tenants.get(t).and_then(|x| x.quotas.get(f)).map_or(0, |q| q.nominal)
    }

    /// The priority class tenant `t`'s workloads of `kind` get when they name none.
    pub fn default_class(&self, t: TenantId, kind: Kind) -> &str {
        let class = self.tenancy.tenants.get(t).map(|x| x.kind_classes[kind.index()]);
        class.and_then(|c| self.tenancy.priority_classes.get(c)).map_or("", |c| c.name.as_str())
    }

    /// Whether `class` is one of Gantry's priority classes.
    pub fn is_class(&self, class: &str) -> bool {
        self.tenancy.class(class).is_some()
    }

    /// Whether tenant `t` may use priority class `class` (an empty allow list allows all).
    pub fn may_use(&self, t: TenantId, class: &str) -> bool {
        let Some(c) = self.tenancy.class(class) else { return false };
        self.tenancy
            .tenants
            .get(t)
            .is_some_and(|x| x.allowed_classes.is_empty() || x.allowed_classes.contains(&c))
    }

    /// The classes tenant `t` may use, by name.
    pub fn usable_classes(&self, t: TenantId) -> Vec<&str> {
        self.tenancy
            .priority_classes
            .iter()
            .filter(|c| self.may_use(t, &c.name))
            .map(|c| c.name.as_str())
            .collect()
    }

    /// All of Gantry's priority classes, by name.
    pub fn class_names(&self) -> Vec<&str> {
        self.tenancy.priority_classes.iter().map(|c| c.name.as_str()).collect()
    }
}

/// Milli-GPU as a user writes GPUs: `8`, `0.25`.
pub fn gpus(milli: Milli) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        let s = format!("{}.{:03}", milli / 1000, milli % 1000);
        s.trim_end_matches('0').to_string()
    }
}
