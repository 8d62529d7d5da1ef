//! `gantry scheduler`: the extender service.

use clap::Args;
use gantry_core::model::PodRequest;
use gantry_core::{PolicyKind, Scale, Scheduler};
use gantry_scheduler::extender::Extender;
use gantry_scheduler::server::router;
use gantry_sim::trace::{parse_nodes, parse_pods};
use std::path::PathBuf;

#[derive(Args)]
pub struct SchedulerArgs {
    /// Run without an API server: nodes from --nodes, binds kept in memory. Required today (the
    /// in-cluster mode, with watchers and the queue controller, is not built yet).
    #[arg(long)]
    standalone: bool,
    /// Node list CSV (sn,cpu_milli,memory_mib,gpu,model), as for `gantry simulate`.
    #[arg(long, value_name = "FILE")]
    nodes: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8888")]
    listen: String,
    /// Path prefix of the verbs: the extender's urlPrefix path in KubeSchedulerConfiguration.
    #[arg(long, value_name = "PATH", default_value = "/scheduler")]
    prefix: String,
    /// Placement policy for prioritize and GPU choice.
    #[arg(long, value_name = "POLICY", default_value = "gantry")]
    policy: PolicyKind,
    /// Pod list CSV of the expected workload, which fragmentation-aware policies measure against.
    /// Default: a mix of 1-, 2-, 4- and 8-GPU pods and half-GPU pods at 8 cores per GPU.
    #[arg(long, value_name = "FILE")]
    pods: Option<PathBuf>,
}

/// The workload assumed when none is given.
fn default_expected() -> Vec<PodRequest> {
    let mut v: Vec<PodRequest> = [1, 2, 4, 8].iter().map(|&g| PodRequest::whole_gpus(8000 * g, 65536 * g as u64, g)).collect();
    v.push(PodRequest::shared_gpu(4000, 32768, 500));
    v
}

pub fn run(args: SchedulerArgs) -> Result<(), String> {
    let SchedulerArgs { standalone, nodes, listen, prefix, policy, pods } = args;
    if !standalone {
        return Err("only --standalone is available today: add --standalone (nodes from --nodes, binds kept in memory)".into());
    }
    let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()));
    let (models, node_list) = parse_nodes(&nodes.display().to_string(), &read(&nodes)?).map_err(|e| e.to_string())?;
    let expected = match &pods {
        Some(p) => parse_pods(&p.display().to_string(), &read(p)?, &models).map_err(|e| e.to_string())?.into_iter().map(|p| p.request).collect(),
        None => default_expected(),
    };
    let cluster = gantry_core::model::Cluster::new(models, node_list);
    let scheduler = Scheduler::new(policy.build(Scale::of(&cluster), &expected));
    let count = cluster.nodes.len();
    let app = router(Extender::new(cluster, scheduler), &prefix)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!("gantry scheduler: {count} nodes; extender at http://{addr}{prefix}/{{filter,prioritize,bind,preempt}}; metrics at http://{addr}/metrics");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| format!("server error: {e}"))
    })
}
