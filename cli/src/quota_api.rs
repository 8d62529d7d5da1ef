//! `gantry quota-api`: the quota API and dashboard over a ledger file. The scheduler's leader
//! sends it accruals and the view of the queue; readers are checked with a token file, or in a
//! cluster with TokenReview and SubjectAccessReview.

use clap::Args;
use gantry_api::view::View;
use gantry_quota_api::api::{router, Api};
use gantry_quota_api::auth::{Authenticator, StaticTokens};
use gantry_quota_api::kube_auth::KubeAuth;
use gantry_quota_api::ledger::Ledger;
use gantry_serve::TlsFiles;
use std::path::PathBuf;

#[derive(Args)]
pub struct QuotaApiArgs {
    /// The ledger file (SQLite; created if missing). Keep it on a persistent volume.
    #[arg(long, value_name = "FILE")]
    ledger: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Bearer tokens from this file (see quota-api/src/auth.rs). Without it, tokens are checked
    /// with the API server (TokenReview, SubjectAccessReview).
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Drop raw accruals older than this many days, at start and daily (the hourly and daily
    /// rollups, which every answer reads, are kept). Default: keep everything.
    #[arg(long, value_name = "DAYS")]
    keep_days: Option<u32>,
    /// Serve HTTPS with this certificate (PEM); reloaded when the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub fn run(args: QuotaApiArgs) -> Result<(), String> {
    let ledger = Ledger::open(&args.ledger).map_err(|e| e.to_string())?;
    let (records, _) = ledger.totals().map_err(|e| e.to_string())?;
    let file_tokens =
        args.tokens.as_ref().map(|p| StaticTokens::load(p)).transpose().map_err(|e| e.to_string())?;
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let (auth, how): (Box<dyn Authenticator>, String) = match file_tokens {
            Some(t) => (Box::new(t), format!("tokens from {}", args.tokens.as_ref().map_or(String::new(), |p| p.display().to_string()))),
            None => {
                let client = kube::Client::try_default()
                    .await
                    .map_err(|e| format!("cannot reach the Kubernetes API server to check tokens ({e}); run in a pod with a service account, set KUBECONFIG, or pass --tokens FILE"))?;
                (Box::new(KubeAuth::new(client)), "tokens checked with the API server".to_string())
            }
        };
        // Nothing to show of the queue until the scheduler's leader sends its view.
        let empty = View::empty(jiff::Timestamp::now().as_second(), "");
        let api = Api::new(empty, ledger, auth);
        if let Some(days) = args.keep_days {
            let api = api.clone();
            tokio::spawn(async move {
                loop {
                    let before = jiff::Timestamp::now().as_second() - i64::from(days) * 86_400;
                    // Ledger work blocks: off the async workers, so requests keep being answered.
                    let held = api.clone();
                    match tokio::task::spawn_blocking(move || held.ledger().retain(before)).await {
                        Ok(Ok(n)) if n > 0 => eprintln!("gantry quota-api: retention dropped {n} raw accruals older than {days} days"),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => eprintln!("gantry quota-api: {e}"),
                        Err(e) => eprintln!("gantry quota-api: retention failed: {e}"),
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
                }
            });
        }
        let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
        // Installed before the address is announced (see `stop_signal`).
        let stop = gantry_serve::stop_signal();
        eprintln!("gantry quota-api: ledger {} ({records} accruals), {how}; API at {scheme}://{addr}/api/v1, dashboard at {scheme}://{addr}/", args.ledger.display());
        let tls = args.tls_cert.clone().zip(args.tls_key.clone()).map(|(c, k)| TlsFiles::new(c, k));
        gantry_serve::serve(listener, router(api), tls, stop).await.map_err(|e| e.to_string())
    })
}
