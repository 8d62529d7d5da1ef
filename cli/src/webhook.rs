//! `gantry webhook`: the admission webhook (mutate and validate) over a tenants file, with no API
//! server needed: plain HTTP for local trials, HTTPS (certificate reloaded from disk) in a cluster.

use clap::Args;
use gantry_admission_webhook::{router, Policy, Webhook};
use gantry_serve::TlsFiles;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct WebhookArgs {
    /// Tenants file (see examples/tenants/): which namespaces are managed, quotas, priorities.
    #[arg(long, value_name = "FILE")]
    tenants: PathBuf,
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
}

pub fn run(args: WebhookArgs) -> Result<(), String> {
    let tenancy = gantry_core::tenancy::file::load(&args.tenants).map_err(|e| e.to_string())?;
    if let Some(name) = &args.scheduler_name {
        let ok = !name.is_empty() && name.len() <= 253 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok {
            return Err(format!("--scheduler-name {name:?} is not a valid scheduler name; use lower-case letters, digits, '-' and '.'"));
        }
    }
    let tenants = tenancy.tenants.len();
    let webhook = Webhook::new(Policy::new(tenancy, args.scheduler_name.clone())?)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
        eprintln!(
            "gantry webhook: {tenants} tenants from {}; mutate at {scheme}://{addr}/mutate, validate at {scheme}://{addr}/validate, metrics at {scheme}://{addr}/metrics",
            args.tenants.display()
        );
        let tls = args.tls_cert.clone().zip(args.tls_key.clone()).map(|(c, k)| TlsFiles::new(c, k));
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        gantry_serve::serve(listener, router(Arc::new(webhook)), tls, shutdown).await.map_err(|e| e.to_string())
    })
}
