//! Gantry's custom resources (`gantry.dev/v1alpha1`, cluster-scoped): the in-cluster form of the
//! tenants file. The scheduler and the admission webhook watch them; `gantry crd` prints their
//! definitions, and the chart ships that output (a test fails when the committed copy differs).
//!
//! - [`Tenant`]: a team's namespaces (listed, or selected by label: [`select`]), cohort, fair-share weight, priority classes, quotas per GPU
//!   flavor, prices and budget;
//! - [`Cohort`]: a pool for lending between its members, optionally under a parent cohort;
//! - [`GpuFlavor`]: a GPU model (or `cpu`) that quotas are given in, with its list price.
//!
//! Quantities are Kubernetes-style strings ("8", "2.5", "2500m"), as in the tenants file.
//!
//! [`tenancy_from`] builds the scheduler's `Tenancy` from these objects (with the validation and
//! defaults of the tenants file); [`tenancy_to_objects`] and [`objects_yaml`] turn a tenants file
//! into objects for `kubectl apply -f`.

mod convert;
pub mod select;

pub use convert::{
    flavor_object_name, objects_yaml, tenancy_from, tenancy_to_objects, CrdError, NoObjectName,
    TenancyObjects,
};
pub use select::{match_namespaces, Matched};

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One tenant's quota of one flavor.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlavorQuota {
    /// Guaranteed GPUs (cores for `cpu`); borrowed capacity is reclaimed for it.
    pub nominal: String,
    /// At most this much above nominal, borrowed from the cohort; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowing_limit: Option<String>,
    /// At most this much of nominal is lent to the cohort; absent: all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lending_limit: Option<String>,
}

/// A monthly GPU-hour budget.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    pub gpu_hours_per_month: String,
    /// `idle-only` (default): run only as reclaimable work; `refuse`: refuse new work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_exhausted: Option<String>,
}

/// A team: its namespaces and what it may use.
///
/// Namespaces are listed (`namespaces`), selected by their labels (`namespaceSelector`, e.g. the
/// namespaces Kubeflow's profile controller makes for Profiles), or both; a tenant needs at least
/// one of the two. A namespace two tenants claim belongs to neither (`status.conflicts`).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "Tenant",
    status = "TenantStatus",
    shortname = "tn",
    printcolumn = r#"{"name":"Cohort","type":"string","jsonPath":".spec.cohort"}"#,
    printcolumn = r#"{"name":"GPUs used","type":"string","jsonPath":".status.gpusUsed"}"#,
    printcolumn = r#"{"name":"GPUs nominal","type":"string","jsonPath":".status.gpusNominal"}"#,
    printcolumn = r#"{"name":"Borrowed","type":"string","jsonPath":".status.gpusBorrowed"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","jsonPath":".status.pendingWorkloads"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".status.namespaces"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Namespaces by name (they need not exist yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces by their labels, as a Deployment selects pods: `matchLabels` and
    /// `matchExpressions` (In, NotIn, Exists, DoesNotExist). The empty selector is refused (it
    /// would take every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// Fair-share weight, > 0; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Priority classes the tenant may use; absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_classes: Option<Vec<String>>,
    /// Class per workload kind (training, pipeline-step, notebook, serving, batch).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kind_priorities: BTreeMap<String, String>,
    /// Quota per flavor name.
    #[serde(default)]
    pub quotas: BTreeMap<String, FlavorQuota>,
    /// Price per GPU-hour per flavor, overriding the flavor's list price.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Which work this tenant's workloads may stop to start; absent: Gantry's rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemption: Option<TenantPreemption>,
    /// When the tenant's idle GPU notebooks are stopped; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_notebooks: Option<IdleNotebooksSpec>,
}

/// Stop a notebook whose GPUs have all been idle for `stopAfter` (a duration: `90s`, `30m`,
/// `2h`, `1d`; at least a minute) when work that could use them waits (`when: work-waits`, the
/// default) or at once (`when: always`). Gantry sets `kubeflow-resource-stopped` on the Notebook,
/// as the Kubeflow UI's stop button does; the user starts it again there.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdleNotebooksSpec {
    pub stop_after: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// A tenant's preemption policy, as Kueue's ClusterQueue `preemption` and
/// `flavorFungibility.whenCanPreempt` (with a tenant for a ClusterQueue).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantPreemption {
    /// `Never`, `LowerPriority` (default) or `LowerOrNewerEqualPriority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_tenant: Option<String>,
    /// `Never`, `LowerPriority` or `Any` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_within_cohort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrow_within_cohort: Option<BorrowWithinCohort>,
    /// `TryNextFlavor` (default) or `Preempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_can_preempt: Option<String>,
}

/// Whether a workload may stop other tenants' borrowed work when it would then borrow itself.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BorrowWithinCohort {
    /// `Never` (default) or `LowerPriority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The highest priority such a victim may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority_threshold: Option<i32>,
}

/// What the scheduler reports about a tenant (the printer columns).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_used: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_nominal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_borrowed: Option<String>,
    #[serde(default)]
    pub pending_workloads: i64,
    /// The same per GPU model the tenant has quota of or uses (`kubectl gantry tenants`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelStatus>,
    /// The namespaces that are the tenant's now: those listed and those its selector matches,
    /// less any another tenant claims too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces this tenant and another both claim: they belong to neither until one of them
    /// stops claiming it (remove it from a list, or change a selector or the namespace's labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<NamespaceConflict>,
}

/// A namespace claimed by more than one tenant.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceConflict {
    pub namespace: String,
    /// Every tenant that claims it, by name.
    pub tenants: Vec<String>,
}

impl std::fmt::Display for NamespaceConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "namespace `{}` is claimed by tenants {}; it belongs to neither until all but one stop claiming it \
             (remove it from a `namespaces` list, or change a `namespaceSelector` or the namespace's labels)",
            self.namespace,
            self.tenants.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(" and ")
        )
    }
}

/// A tenant's GPUs of one model (flavor): used, nominal and borrowed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    pub name: String,
    pub used: String,
    pub nominal: String,
    pub borrowed: String,
}

/// A pool of lendable quota.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "Cohort",
    printcolumn = r#"{"name":"Parent","type":"string","jsonPath":".spec.parent"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CohortSpec {
    /// The parent cohort, which lends between its children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// A kind of quota: the GPUs of one model (the node label `nvidia.com/gpu.product`), or `cpu`.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "GpuFlavor",
    shortname = "gf",
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.model"}"#,
    printcolumn = r#"{"name":"Price","type":"string","jsonPath":".spec.price"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GpuFlavorSpec {
    /// The GPU model as nodes report it, or `cpu` for pods without GPUs.
    pub model: String,
    /// List price per GPU-hour (per core-hour for `cpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// Whether pods may share one GPU (`gantry.dev/gpu-milli`): for GPUs the device plugin shares
    /// (time-slicing, MPS). Absent: false, each pod is charged and placed as whole GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<bool>,
}

/// Every definition, as one multi-document YAML stream (what `gantry crd` prints).
pub fn definitions_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    let mut out = String::from("# Generated by `gantry crd` from api/src/crds.rs; do not edit.\n");
    for crd in [Tenant::crd(), Cohort::crd(), GpuFlavor::crd()] {
        push_document(&mut out, &crd)?;
    }
    Ok(out)
}

/// Appends `doc` to a YAML stream: a `---` line, then the document in block style.
pub(crate) fn push_document<T: Serialize>(out: &mut String, doc: &T) -> Result<(), serde_yaml_ng::Error> {
    out.push_str("---\n");
    out.push_str(&serde_yaml_ng::to_string(doc)?);
    Ok(())
}
