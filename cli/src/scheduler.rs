//! `gantry scheduler`: the extender service and, in a cluster, the queue controller.

use clap::Args;
use gantry_core::model::{Cluster, PodRequest};
use gantry_core::queue::{Mode, Queue};
use gantry_core::tenancy::file;
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::extender::Extender;
use gantry_scheduler::runner::{self, Live, RunConfig, Tenants};
use gantry_scheduler::server::{router_for, AppState};
use gantry_serve::TlsFiles;
use gantry_sim::trace::{parse_nodes, parse_pods};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct SchedulerArgs {
    /// Run without an API server: nodes from --nodes, binds kept in memory.
    #[arg(long)]
    standalone: bool,
    /// Nodes (--standalone): a node list CSV (sn,cpu_milli,memory_mib,gpu,model) as for
    /// `gantry simulate`, or Kubernetes Node objects in YAML or JSON (`kubectl get nodes -o yaml`),
    /// read by the same node inventory contract as in a cluster.
    #[arg(long, value_name = "FILE", required_if_eq("standalone", "true"))]
    nodes: Option<PathBuf>,
    /// Tenants file. In a cluster it replaces the Tenant, Cohort and GpuFlavor objects; with
    /// --standalone it is checked against the nodes and its quotas are exported as metrics.
    #[arg(long, value_name = "FILE")]
    tenants: Option<PathBuf>,
    /// Cluster-wide settings (currency, timing, priority classes) when tenants come from the
    /// cluster's objects: a tenants file with only those sections. Default: the built-in ones.
    #[arg(long, value_name = "FILE", conflicts_with = "tenants")]
    settings: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8888")]
    listen: String,
    /// Path prefix of the verbs: the extender's urlPrefix path in KubeSchedulerConfiguration.
    #[arg(long, value_name = "PATH", default_value = "/scheduler")]
    prefix: String,
    /// Serve HTTPS with this certificate (PEM, chain allowed); reloaded when the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Placement policy for prioritize and GPU choice.
    #[arg(long, value_name = "POLICY", default_value = "gantry")]
    policy: PolicyKind,
    /// Pod list CSV of the expected workload, which fragmentation-aware policies measure against.
    /// Default: a mix of 1-, 2-, 4- and 8-GPU pods and half-GPU pods at 8 cores per GPU.
    #[arg(long, value_name = "FILE")]
    pods: Option<PathBuf>,
    /// Namespace of the leader-election Lease. Default: $POD_NAMESPACE, else gantry-system.
    #[arg(long, value_name = "NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, value_name = "NAME", default_value = "gantry-scheduler")]
    lease_name: String,
    /// This replica's identity in the Lease. Default: $POD_NAME, else the host name.
    #[arg(long, value_name = "NAME")]
    identity: Option<String>,
    /// The quota API the leader sends usage records and the view of the queue to, e.g.
    /// http://gantry-quota-api.gantry-system.svc.
    #[arg(long, value_name = "URL")]
    quota_api: Option<String>,
    /// The bearer token for --quota-api, read at every send: a service account token for the
    /// audience gantry-quota-api (the chart projects it here).
    #[arg(long, value_name = "FILE", default_value = gantry_serve::client::QUOTA_API_TOKEN_FILE)]
    quota_api_token: PathBuf,
    /// Longest time between admission cycles, in seconds (cycles also follow every change).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    cycle_every: u64,
}

/// The workload assumed when none is given.
fn default_expected() -> Vec<PodRequest> {
    let mut v: Vec<PodRequest> =
        [1, 2, 4, 8].iter().map(|&g| PodRequest::whole_gpus(8000 * g, 65536 * g as u64, g)).collect();
    v.push(PodRequest::shared_gpu(4000, 32768, 500));
    v
}

fn read(p: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))
}

pub fn run(args: SchedulerArgs) -> Result<(), String> {
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        if args.standalone {
            standalone(args).await
        } else {
            in_cluster(args).await
        }
    })
}

fn expected(
    args: &SchedulerArgs,
    models: &gantry_core::model::ModelCatalog,
) -> Result<Vec<PodRequest>, String> {
    match &args.pods {
        Some(p) => Ok(parse_pods(&p.display().to_string(), &read(p)?, models)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|p| p.request)
            .collect()),
        None => Ok(default_expected()),
    }
}

fn tls(args: &SchedulerArgs) -> Option<TlsFiles> {
    Some(TlsFiles::new(args.tls_cert.clone()?, args.tls_key.clone()?))
}

async fn serve(
    args: &SchedulerArgs,
    state: std::sync::Arc<AppState>,
    what: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
    eprintln!("gantry scheduler: {what}; extender at {scheme}://{addr}{}/{{filter,prioritize,bind,preempt}}; metrics at {scheme}://{addr}/metrics", args.prefix);
    gantry_serve::serve(listener, router_for(state, &args.prefix), tls(args), shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// Nodes from a CSV node list, or from Node objects (a `List`/`NodeList`, or one Node) in YAML or
/// JSON, which go through the same reading as nodes from the API server.
pub(crate) fn load_nodes(path: &PathBuf) -> Result<Cluster, String> {
    let name = path.display().to_string();
    let text = read(path)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if !matches!(ext.as_str(), "yaml" | "yml" | "json") {
        let (models, nodes) = parse_nodes(&name, &text).map_err(|e| e.to_string())?;
        return Ok(Cluster::new(models, nodes));
    }
    let doc: serde_json::Value = if ext == "json" {
        serde_json::from_str(&text).map_err(|e| format!("{name}: not valid JSON: {e}"))?
    } else {
        marked_yaml::from_yaml(0, &text).map_err(|e| format!("{name}: not valid YAML: {e}"))?
    };
    let items: Vec<serde_json::Value> = match doc.get("items").and_then(|i| i.as_array()) {
        Some(items) => items.clone(),
        None if doc.get("kind").and_then(|k| k.as_str()) == Some("Node") => vec![doc],
        None => return Err(format!("{name}: expected Node objects: a List or NodeList with items (kubectl get nodes -o yaml), or one Node")),
    };
    let mut cluster = Cluster::default();
    for (i, item) in items.iter().enumerate() {
        let view = gantry_api::node::parse_node(item, &mut cluster.models)
            .map_err(|e| format!("{name}: item {i}: {e}"))?;
        cluster.upsert_node(view.node).map_err(|e| format!("{name}: item {i}: {e}"))?;
    }
    if cluster.nodes.is_empty() {
        return Err(format!("{name}: no nodes"));
    }
    Ok(cluster)
}

async fn standalone(args: SchedulerArgs) -> Result<(), String> {
    let nodes = args
        .nodes
        .as_ref()
        .ok_or("--standalone needs --nodes FILE (a node list CSV, or Node objects in YAML or JSON)")?;
    let cluster = load_nodes(nodes)?;
    let expected = expected(&args, &cluster.models)?;
    let scheduler = || Scheduler::new(args.policy.build(&cluster, &expected));
    let count = cluster.nodes.len();
    let tenancy = args.tenants.as_ref().map(|p| file::load(p).map_err(|e| e.to_string())).transpose()?;
    let state = AppState::new(Extender::new(cluster.clone(), scheduler())).map_err(|e| e.to_string())?;
    let mut what = format!("standalone, {count} nodes");
    if let Some(t) = tenancy {
        let tenants = t.tenants.len();
        // The same check the queue makes: every flavor's model must exist among the nodes.
        let queue = Queue::new(t, cluster.clone(), scheduler(), Mode::Quota, runner::now()).map_err(|e| {
            format!("{}: {e}", args.tenants.as_ref().map_or(String::new(), |p| p.display().to_string()))
        })?;
        state.metrics.record_cycle(&queue, &[]);
        what.push_str(&format!(", {tenants} tenants"));
    }
    serve(&args, state, &what, gantry_serve::stop_signal()).await
}

async fn in_cluster(args: SchedulerArgs) -> Result<(), String> {
    let clients = runner::Clients::infer()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API server ({e}); run in a pod with a service account, set KUBECONFIG, or use --standalone"))?;
    let tenants = match (&args.tenants, &args.settings) {
        (Some(p), _) => Tenants::File(file::load(p).map_err(|e| e.to_string())?),
        (None, Some(p)) => Tenants::Cluster(file::load_settings(p).map_err(|e| e.to_string())?),
        (None, None) => Tenants::Cluster(Default::default()),
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let identity = args
        .identity
        .clone()
        .or_else(|| env("POD_NAME"))
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| "gantry-scheduler".into());
    let config = RunConfig {
        lease_namespace: args
            .lease_namespace
            .clone()
            .or_else(|| env("POD_NAMESPACE"))
            .unwrap_or_else(|| "gantry-system".into()),
        lease_name: args.lease_name.clone(),
        identity,
        tenants,
        policy: args.policy,
        expected: expected(&args, &Default::default())?,
        cycle_every: Duration::from_secs(args.cycle_every.max(1)),
        quota_api: args.quota_api.clone().map(|url| (url, args.quota_api_token.clone())),
    };
    let state = AppState::new(Extender::new(
        Cluster::default(),
        Scheduler::new(args.policy.build(&Cluster::default(), &config.expected)),
    ))
    .map_err(|e| e.to_string())?;
    state.set_ready(false);
    let live = Live::new(state.clone());
    let what = format!("in cluster as {}", config.identity);
    // On SIGTERM the controller stops first (no more admissions, the Lease released and its
    // release confirmed), then the HTTP server drains: kube-scheduler keeps its extender until
    // the end, and the next replica takes over at once.
    let (stop_server, server_stops) = tokio::sync::oneshot::channel::<()>();
    let server = serve(&args, state, &what, async {
        let _ = server_stops.await;
    });
    let mut server = std::pin::pin!(server);
    let controller = runner::run(clients, live, config, gantry_serve::stop_signal());
    let stopped = tokio::select! {
        // The server ended on its own (it could not listen): nothing to hand over.
        r = &mut server => return r.and(Err("the HTTP server stopped".into())),
        r = controller => r.map_err(|e| e.to_string()),
    };
    let _ = stop_server.send(());
    let served = server.await;
    eprintln!("gantry scheduler: HTTP server drained; exiting");
    stopped.and(served)
}
