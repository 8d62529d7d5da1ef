//! Gantry's Tenant, Cohort and GpuFlavor objects from the API server, kept in reflector stores
//! and turned into the core's tenancy by the same validation as the tenants file. The queue
//! controller and the admission webhook both read tenants this way, so they never disagree on
//! what a tenant may hold.
//!
//! Namespaces are watched too (names and labels only), for tenants that select their namespaces
//! by label: a namespace created or relabelled (a new Kubeflow Profile, say) is a change like any
//! other, and the next tenancy built has it.

use crate::crds::{Cohort, GpuFlavor, Matched, Tenant};
use crate::watch::follow;
use futures::StreamExt;
use gantry_core::tenancy::{Settings, Tenancy};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{self, store::WriterDropped, Store};
use kube::{Client, Resource, ResourceExt};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

/// The tenant objects as last seen.
#[derive(Clone)]
pub struct TenantObjects {
    pub tenants: Store<Tenant>,
    pub cohorts: Store<Cohort>,
    pub flavors: Store<GpuFlavor>,
    /// Every namespace, with its name and labels only ([`strip_namespace`]).
    pub namespaces: Store<Namespace>,
}

/// Keeps of a namespace only what selectors read: its name and labels (a cluster may have
/// thousands, each with annotations and managed fields).
pub fn strip_namespace(ns: &mut Namespace) {
    let metadata = ObjectMeta {
        name: ns.metadata.name.take(),
        labels: ns.metadata.labels.take(),
        resource_version: ns.metadata.resource_version.take(),
        ..ObjectMeta::default()
    };
    *ns = Namespace { metadata, ..Namespace::default() };
}

fn all<K>(store: &Store<K>) -> Vec<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}

/// The tenant objects define no valid tenancy: every problem, each naming its object and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the tenant objects are not valid; the last good tenants stay in force until they are fixed:\n  {}",
    one_per_line(.0)
)]
pub struct InvalidTenants(pub Vec<crate::crds::CrdError>);

fn one_per_line(errors: &[crate::crds::CrdError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
}

impl TenantObjects {
    /// Starts one watcher per kind; `changed` runs after every event of any of them.
    pub fn watch(client: &Client, changed: impl Fn() + Clone + Send + 'static) -> TenantObjects {
        fn objects<K>(client: &Client, strip: fn(&mut K), changed: impl Fn() + Send + 'static) -> Store<K>
        where
            K: Resource<Scope = kube::core::ClusterResourceScope>
                + Clone
                + Debug
                + serde::de::DeserializeOwned
                + Send
                + Sync
                + 'static,
            K::DynamicType: Default + Eq + Hash + Clone,
        {
            let (store, writer) = reflector::store::<K>();
            tokio::spawn(follow(Api::<K>::all(client.clone()), writer, strip).for_each(move |_| {
                changed();
                std::future::ready(())
            }));
            store
        }
        TenantObjects {
            tenants: objects(client, |o| o.managed_fields_mut().clear(), changed.clone()),
            cohorts: objects(client, |o| o.managed_fields_mut().clear(), changed.clone()),
            flavors: objects(client, |o| o.managed_fields_mut().clear(), changed.clone()),
            namespaces: objects(client, strip_namespace, changed),
        }
    }

    /// Waits until each kind has been listed once.
    pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        self.tenants.wait_until_ready().await?;
        self.cohorts.wait_until_ready().await?;
        self.flavors.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await
    }

    /// The tenancy the objects define now, or every problem with them, one per line.
    pub fn tenancy(&self, settings: &Settings) -> Result<Tenancy, InvalidTenants> {
        crate::crds::tenancy_from(
            settings,
            &all(&self.flavors),
            &all(&self.cohorts),
            &all(&self.tenants),
            &all(&self.namespaces),
        )
        .map_err(InvalidTenants)
    }

    /// Each Tenant's namespaces and conflicts now, by tenant name (selectors that are refused
    /// match nothing here; [`TenantObjects::tenancy`] names them).
    pub fn matched(&self) -> BTreeMap<String, Matched> {
        crate::crds::match_namespaces(&all(&self.tenants), &all(&self.namespaces)).0
    }

    /// The namespaces two or more Tenants claim now, each with every claiming tenant's name (in
    /// name order). They belong to no tenant; the admission webhook refuses GPU pods there.
    pub fn contested(&self) -> BTreeMap<String, Vec<String>> {
        contested(&self.matched())
    }
}

/// The contested namespaces of `matched` ([`TenantObjects::matched`]): namespace -> the tenants
/// claiming it, by name.
pub fn contested(matched: &BTreeMap<String, Matched>) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for m in matched.values() {
        for c in &m.conflicts {
            out.entry(c.namespace.clone()).or_insert_with(|| c.tenants.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crds::NamespaceConflict;

    #[test]
    fn contested_namespaces_name_every_claimant_once() {
        let conflict = |ns: &str, tenants: &[&str]| NamespaceConflict {
            namespace: ns.into(),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
        };
        let matched: BTreeMap<String, Matched> = [
            ("alice", vec![conflict("alice", &["alice", "vision"])]),
            ("vision", vec![conflict("alice", &["alice", "vision"])]),
            ("bob", vec![]),
        ]
        .into_iter()
        .map(|(t, conflicts)| (t.to_string(), Matched { conflicts, ..Matched::default() }))
        .collect();
        let got = contested(&matched);
        assert_eq!(got.len(), 1);
        assert_eq!(got["alice"], vec!["alice".to_string(), "vision".to_string()]);
    }
}
