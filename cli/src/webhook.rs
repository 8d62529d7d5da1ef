//! `gantry webhook`: the admission webhook (mutate and validate). With `--tenants FILE` it needs
//! no API server (plain HTTP for local trials); without it the policy follows the cluster's
//! Tenant, Cohort and GpuFlavor objects. HTTPS when certificate files are given (reloaded from
//! disk when they change).

use clap::Args;
use gantry_admission_webhook::live::follow;
use gantry_admission_webhook::{router, Policy, Webhook};
use gantry_core::tenancy::file;
use gantry_serve::TlsFiles;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct WebhookArgs {
    /// Tenants file (see examples/tenants/): which namespaces are managed, quotas, priorities.
    /// Without it the tenants are the cluster's Tenant, Cohort and GpuFlavor objects.
    #[arg(long, value_name = "FILE")]
    tenants: Option<PathBuf>,
    /// Cluster-wide settings (priority classes) when tenants come from the cluster's objects: a
    /// tenants file with only those sections, as for `gantry scheduler`. Default: the built-in ones.
    #[arg(long, value_name = "FILE", conflicts_with = "tenants")]
    settings: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: String,
    /// Serve HTTPS with this certificate (PEM, chain allowed); reloaded when the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Set spec.schedulerName to this on GPU pods that use the default scheduler.
    #[arg(long, value_name = "NAME")]
    scheduler_name: Option<String>,
    /// The user (service account) of Gantry's queue controller: the only one allowed to lift
    /// Gantry's scheduling gate and write placements on pods. Repeat for several.
    /// Default: system:serviceaccount:$POD_NAMESPACE:gantry-scheduler ($POD_NAMESPACE else gantry-system).
    #[arg(long, value_name = "USER")]
    queue_controller: Vec<String>,
}

pub fn run(args: WebhookArgs) -> Result<(), String> {
    if let Some(name) = &args.scheduler_name {
        let ok = !name.is_empty() && name.len() <= 253 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok {
            return Err(format!("--scheduler-name {name:?} is not a valid scheduler name; use lower-case letters, digits, '-' and '.'"));
        }
    }
    let controllers = match args.queue_controller.is_empty() {
        false => args.queue_controller.clone(),
        true => {
            let namespace = std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| "gantry-system".into());
            vec![format!("system:serviceaccount:{namespace}:gantry-scheduler")]
        }
    };
    let scheduler_name = args.scheduler_name.clone();
    let policy = move |tenancy| {
        let mut p = Policy::new(tenancy, scheduler_name.clone())?;
        p.queue_controllers = controllers.clone();
        Ok::<Policy, String>(p)
    };
    // Read the files before anything starts, so that a bad one stops the process at once.
    let from_file = match &args.tenants {
        Some(p) => Some(policy(file::load(p).map_err(|e| e.to_string())?)?),
        None => None,
    };
    let settings = args.settings.as_ref().map(|p| file::load_settings(p).map_err(|e| e.to_string())).transpose()?.unwrap_or_default();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let (webhook, source) = match from_file {
            Some(policy) => {
                let what = format!("{} tenants from {}", policy.tenancy.tenants.len(), args.tenants.as_ref().map_or(String::new(), |p| p.display().to_string()));
                (Arc::new(Webhook::new(policy)?), Source::File(what))
            }
            None => {
                let client = kube::Client::try_default()
                    .await
                    .map_err(|e| format!("cannot reach the Kubernetes API server ({e}); run in a pod with a service account, set KUBECONFIG, or pass --tenants FILE"))?;
                (Arc::new(Webhook::unready()?), Source::Cluster(client))
            }
        };
        let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
        let what = match &source {
            Source::File(what) => what.as_str(),
            Source::Cluster(_) => "tenants from the cluster's objects",
        };
        eprintln!("gantry webhook: {what}; mutate at {scheme}://{addr}/mutate, validate at {scheme}://{addr}/validate, metrics at {scheme}://{addr}/metrics");
        let tls = args.tls_cert.clone().zip(args.tls_key.clone()).map(|(c, k)| TlsFiles::new(c, k));
        let shutdown = gantry_serve::stop_signal();
        let server = gantry_serve::serve(listener, router(webhook.clone()), tls, shutdown);
        match source {
            Source::File(_) => server.await.map_err(|e| e.to_string()),
            // Either ending ends the process.
            Source::Cluster(client) => tokio::select! {
                r = server => r.map_err(|e| e.to_string()),
                r = follow(client, settings, policy, webhook) => r,
            },
        }
    })
}

/// Where the policy comes from.
enum Source {
    /// A tenants file; the text says which, for the start-up line.
    File(String),
    Cluster(kube::Client),
}
