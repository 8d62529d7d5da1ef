//! In a cluster, the policy follows Gantry's Tenant, Cohort and GpuFlavor objects, and the
//! Namespaces tenants select by label, through a watch (the same reading as the queue
//! controller's, `gantry_api::tenants`), so a request never waits on the API server: it reads the
//! policy last built. A namespace two tenants claim is neither's here too (the scheduler writes
//! the conflict on both Tenants' status), and the policy carries it so that GPU pods there are
//! refused rather than run outside every quota ([`crate::inspect::contested`]).
//!
//! Until the objects have been listed the webhook is not ready (`/readyz` fails, reviews get 503
//! and the API server applies `failurePolicy`). A change that makes the objects invalid is
//! logged and the last good policy stays in force.

use crate::{AdmissionPolicy, Webhook};
use gantry_api::tenants::TenantObjects;
use gantry_core::tenancy::{Settings, Tenancy};
use kube::runtime::reflector::store::WriterDropped;
use kube::Client;
use std::fmt::Display;
use std::sync::Arc;
use tokio::sync::Notify;

/// Why [`follow`] returned: it runs for as long as the watches do, so any return is an error.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// A watch of the Tenant, Cohort, GpuFlavor or Namespace objects ended before its first list,
    /// so the webhook never had a policy to serve with.
    #[error("a tenant watcher stopped before listing: {source}")]
    WatcherStopped {
        #[source]
        source: WriterDropped,
    },
}

/// Keeps `webhook`'s policy equal to the cluster's tenant objects. `settings` are the
/// cluster-wide settings (priority classes) the objects refer to; `policy` makes the policy of a
/// tenancy (adding the webhook's own options); its error is only logged, and the last good policy
/// stays in force, so any error type that can be shown will do. Returns only if the watchers stop
/// before listing.
pub async fn follow<E: Display>(
    client: Client,
    settings: Settings,
    policy: impl Fn(Tenancy) -> Result<AdmissionPolicy, E>,
    webhook: Arc<Webhook>,
) -> Result<(), FollowError> {
    let changed = Arc::new(Notify::new());
    let notify = changed.clone();
    let objects = TenantObjects::watch(&client, move || notify.notify_one());
    objects.wait_until_ready().await.map_err(|source| FollowError::WatcherStopped { source })?;
    loop {
        let contested = objects.contested();
        match objects.tenancy(&settings) {
            // Events that change nothing the policy reads (a status update) change nothing.
            Ok(t) if webhook.policy().is_some_and(|p| p.tenancy == t && p.contested == contested) => {}
            Ok(t) => match policy(t) {
                Ok(mut p) => {
                    let tenants = p.tenancy.tenants.len();
                    for (namespace, by) in &contested {
                        tracing::warn!(
                            "namespace {namespace} is claimed by tenants {}: GPU pods there are refused until all but one stop claiming it",
                            by.join(", ")
                        );
                    }
                    p.contested = contested;
                    webhook.set_policy(p);
                    tracing::info!("policy from the cluster's objects: {tenants} tenants");
                }
                Err(e) => tracing::warn!("{e}"),
            },
            Err(e) => tracing::warn!("{e}"),
        }
        // Events that arrive together wake this once.
        changed.notified().await;
    }
}
