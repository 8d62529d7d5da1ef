//! `gantry webhook`: the admission webhook (mutate and validate). With `--tenants FILE` it needs
//! no API server (plain HTTP for local trials); without it the policy follows the cluster's
//! Tenant, Cohort and GpuFlavor objects. HTTPS when certificate files are given (reloaded from
//! disk when they change), or with `--self-signed-tls` a certificate the webhook makes and
//! renews itself, kept in a Secret its replicas share (see `gantry_admission_webhook::selfcert`).

use clap::Args;
use gantry_admission_webhook::live::follow;
use gantry_admission_webhook::policy::PolicyError;
use gantry_admission_webhook::selfcert::{self, ConfigRef, SelfSigned, ServiceIdentity};
use gantry_admission_webhook::{router, AdmissionPolicy, Webhook};
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
    /// Serve HTTPS with a certificate the webhook makes itself (when cert-manager is not used): a
    /// CA and serving certificate kept in the Secret --tls-secret of namespace $POD_NAMESPACE,
    /// shared by the replicas, put into the caBundle of the --ca-bundle-for configurations, and
    /// renewed before they expire. Needs a cluster.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    self_signed_tls: bool,
    /// With --self-signed-tls: the Secret (in $POD_NAMESPACE) that holds the CA and certificate.
    #[arg(long, value_name = "NAME", default_value = "gantry-webhook-tls", requires = "self_signed_tls")]
    tls_secret: String,
    /// With --self-signed-tls: the folder the certificate is written to and served from (an
    /// emptyDir volume).
    #[arg(long, value_name = "DIR", default_value = "/run/gantry/tls", requires = "self_signed_tls")]
    tls_dir: PathBuf,
    /// With --self-signed-tls: the Service the API server calls the webhook through; the
    /// certificate is for NAME, NAME.NS, NAME.NS.svc and NAME.NS.svc.cluster.local.
    #[arg(long, value_name = "NAME", default_value = "gantry-webhook", requires = "self_signed_tls")]
    service: String,
    /// With --self-signed-tls: a webhook configuration whose caBundle the webhook sets (on its
    /// webhooks that call --service), `mutating:NAME` or `validating:NAME`. Repeat for several.
    #[arg(long, value_name = "KIND:NAME", requires = "self_signed_tls")]
    ca_bundle_for: Vec<ConfigRef>,
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
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok {
            return Err(format!("--scheduler-name {name:?} is not a valid scheduler name; use lower-case letters, digits, '-' and '.'"));
        }
    }
    // Checked before anything starts, so that a wrong start fails at once.
    let self_signed = match args.self_signed_tls {
        false => None,
        true => {
            let namespace = std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty()).ok_or(
                "--self-signed-tls needs the webhook's namespace in $POD_NAMESPACE; set it in the pod spec (env POD_NAMESPACE from fieldRef metadata.namespace), or pass --tls-cert and --tls-key",
            )?;
            if !selfcert::is_dns_label(&args.service) {
                return Err(format!("--service {:?} is not a valid Service name; use lower-case letters, digits and '-', starting with a letter", args.service));
            }
            if !selfcert::is_dns_subdomain(&args.tls_secret) {
                return Err(format!("--tls-secret {:?} is not a valid Secret name; use lower-case letters, digits, '-' and '.'", args.tls_secret));
            }
            Some(selfcert::Config {
                identity: ServiceIdentity::new(args.service.clone(), namespace),
                secret: args.tls_secret.clone(),
                dir: args.tls_dir.clone(),
                configs: args.ca_bundle_for.clone(),
                every: selfcert::CHECK_EVERY,
            })
        }
    };
    let controllers = match args.queue_controller.is_empty() {
        false => args.queue_controller.clone(),
        true => {
            let namespace = std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "gantry-system".into());
            vec![format!("system:serviceaccount:{namespace}:gantry-scheduler")]
        }
    };
    let scheduler_name = args.scheduler_name.clone();
    let policy = move |tenancy| {
        let mut p = AdmissionPolicy::new(tenancy, scheduler_name.clone())?;
        p.queue_controllers = controllers.clone();
        Ok::<AdmissionPolicy, PolicyError>(p)
    };
    // Read the files before anything starts, so that a bad one stops the process at once.
    let from_file = match &args.tenants {
        Some(p) => Some(policy(file::load(p).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?),
        None => None,
    };
    let settings = args
        .settings
        .as_ref()
        .map(|p| file::load_settings(p).map_err(|e| e.to_string()))
        .transpose()?
        .unwrap_or_default();
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let client = match from_file.is_none() || self_signed.is_some() {
            true => Some(kube::Client::try_default().await.map_err(|e| {
                let without = if from_file.is_none() { ", or pass --tenants FILE" } else { ", or pass --tls-cert and --tls-key instead of --self-signed-tls" };
                format!("cannot reach the Kubernetes API server ({e}); run in a pod with a service account, set KUBECONFIG{without}")
            })?),
            false => None,
        };
        let (webhook, source) = match (from_file, &client) {
            (Some(policy), _) => {
                let what = format!("{} tenants from {}", policy.tenancy.tenants.len(), args.tenants.as_ref().map_or(String::new(), |p| p.display().to_string()));
                (Arc::new(Webhook::new(policy).map_err(|e| e.to_string())?), Source::File(what))
            }
            (None, Some(client)) => {
                (Arc::new(Webhook::unready().map_err(|e| e.to_string())?), Source::Cluster(client.clone()))
            }
            (None, None) => return Err("no tenants file and no cluster".to_string()),
        };
        let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shutdown = gantry_serve::stop_signal();
        tokio::pin!(shutdown);
        // With --self-signed-tls, a certificate is in the folder before serving starts.
        let keeper = match (self_signed, &client) {
            (Some(config), Some(client)) => {
                let mut keeper = SelfSigned::new(client.clone(), config);
                tokio::select! {
                    r = keeper.start() => r.map_err(|e| e.to_string())?,
                    () = &mut shutdown => return Ok(()),
                }
                Some(keeper)
            }
            _ => None,
        };
        let scheme = if args.tls_cert.is_some() || keeper.is_some() { "https" } else { "http" };
        let what = match &source {
            Source::File(what) => what.as_str(),
            Source::Cluster(_) => "tenants from the cluster's objects",
        };
        eprintln!("gantry webhook: {what}; mutate at {scheme}://{addr}/mutate, validate at {scheme}://{addr}/validate, metrics at {scheme}://{addr}/metrics");
        let tls = match &keeper {
            // Renewals are written there and picked up by the reloading certificate resolver.
            Some(keeper) => Some(TlsFiles::in_secret_dir(&keeper.config().dir)),
            None => args.tls_cert.clone().zip(args.tls_key.clone()).map(|(c, k)| TlsFiles::new(c, k)),
        };
        let server = gantry_serve::serve(listener, router(webhook.clone()), tls, shutdown);
        let maintain = async move {
            match keeper {
                Some(keeper) => keeper.maintain().await,
                None => std::future::pending().await,
            }
        };
        // Any ending ends the process.
        match source {
            Source::File(_) => tokio::select! {
                r = server => r.map_err(|e| e.to_string()),
                () = maintain => Err("the certificate keeper stopped".to_string()),
            },
            Source::Cluster(client) => tokio::select! {
                r = server => r.map_err(|e| e.to_string()),
                r = follow(client, settings, policy, webhook) => r.map_err(|e| e.to_string()),
                () = maintain => Err("the certificate keeper stopped".to_string()),
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
