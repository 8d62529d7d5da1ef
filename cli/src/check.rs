//! `gantry check tenants FILE`: every problem of a tenants file in one run, and, given the
//! cluster's nodes (`--nodes FILE` or `--cluster`), the quotas it cannot hold.
//!
//! Errors are what `simulate`, the scheduler and the webhook would refuse (the same parser, made
//! to go on past each problem; see `gantry_core::tenancy::file::check`). Warnings are legal but
//! probably wrong: a flavor no node provides, nominal quotas of a flavor that add up to more than
//! the cluster has of it (guarantees that cannot all be met at once), one tenant's nominal quota
//! above the whole cluster's.

use clap::{Args, Subcommand};
use gantry_core::model::Cluster;
use gantry_core::tenancy::{file, Tenancy};
use std::path::PathBuf;

#[derive(Args)]
pub struct CheckArgs {
    #[command(subcommand)]
    what: CheckWhat,
}

#[derive(Subcommand)]
enum CheckWhat {
    /// Check a tenants file (see examples/tenants/): prints every error at once, with file, line,
    /// field and fix, then warnings about quotas the cluster cannot hold. Exits 2 when there are
    /// errors.
    Tenants {
        /// The tenants file.
        file: PathBuf,
        /// The cluster's nodes: a node list CSV, or Node objects in YAML or JSON
        /// (`kubectl get nodes -o yaml`).
        #[arg(long, value_name = "FILE", conflicts_with = "cluster")]
        nodes: Option<PathBuf>,
        /// Read the nodes from the cluster of the current kubeconfig context.
        #[arg(long)]
        cluster: bool,
        /// With --cluster: the kubeconfig context to use.
        #[arg(long, value_name = "NAME", requires = "cluster")]
        context: Option<String>,
    },
}

pub fn run(args: CheckArgs) -> Result<(), String> {
    let CheckWhat::Tenants { file: path, nodes, cluster, context } = args.what;
    let name = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let (parsed, errors) = file::check(&name, &text);
    for e in &errors {
        println!("{e}");
    }
    let cluster = match (nodes, cluster) {
        (Some(nodes), _) => Some(crate::scheduler::load_nodes(&nodes)?),
        (None, true) => Some(cluster_nodes(context)?),
        (None, false) => None,
    };
    let warnings = match (&parsed, &cluster) {
        (Some((tenancy, _)), Some(cluster)) => capacity_warnings(tenancy, cluster),
        _ => Vec::new(),
    };
    for w in &warnings {
        println!("{name}: warning: {w}");
    }
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let summary = format!("{}, {}", plural(errors.len(), "error"), plural(warnings.len(), "warning"));
    if !errors.is_empty() {
        return Err(format!("{name}: {summary}"));
    }
    match (&parsed, &cluster) {
        (Some((tenancy, _)), None) => eprintln!(
            "{name}: ok ({} flavors, {} cohorts, {} tenants); give --nodes FILE or --cluster to check the \
             quotas against the cluster's GPUs",
            tenancy.flavors.len(),
            tenancy.cohorts.len(),
            tenancy.tenants.len()
        ),
        _ => eprintln!("{name}: {summary}"),
    }
    Ok(())
}

/// What the cluster cannot hold (see the module documentation). Amounts in whole units.
pub fn capacity_warnings(tenancy: &Tenancy, cluster: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for (f, flavor) in tenancy.flavors.iter().enumerate() {
        let (capacity, unit, nodes_of) = if flavor.is_cpu() {
            let cores: u64 = cluster.nodes.iter().map(|n| n.cpu_capacity as u64).sum();
            (cores as f64 / 1000.0, "cores", "nodes".to_string())
        } else {
            let gpus: u32 = cluster
                .nodes
                .iter()
                .filter(|n| n.model.is_some_and(|m| cluster.models.name(m) == flavor.name))
                .map(|n| n.gpu_count())
                .sum();
            (gpus as f64, "GPUs", format!("{} nodes", flavor.name))
        };
        let nominal: Vec<(&str, f64)> = tenancy
            .tenants
            .iter()
            .filter_map(|t| t.quotas.get(f).map(|q| (t.name.as_str(), q.nominal as f64 / 1000.0)))
            .filter(|(_, n)| *n > 0.0)
            .collect();
        if capacity == 0.0 {
            if !flavor.is_cpu() {
                let models = cluster.models.names().join(", ");
                out.push(format!(
                    "flavor {}: no node has this GPU model (the nodes have: {models}); its quotas can never \
                     be used: rename the flavor to the model the nodes report, or add {nodes_of}",
                    flavor.name
                ));
            }
            continue;
        }
        for (tenant, n) in &nominal {
            if *n > capacity {
                out.push(format!(
                    "tenant {tenant}: nominal quota of {} is {n} {unit}, more than the cluster's {capacity} \
                     {unit} of it: lower it to at most {capacity}, or add {nodes_of}",
                    flavor.name
                ));
            }
        }
        let total: f64 = nominal.iter().map(|(_, n)| n).sum();
        if total > capacity {
            let who: Vec<String> = nominal.iter().map(|(t, n)| format!("{t} {n}")).collect();
            out.push(format!(
                "flavor {}: nominal quotas add up to {total} {unit} ({}) but the cluster has {capacity}: \
                 the guarantees cannot all be met at once; lower them or add {nodes_of}",
                flavor.name,
                who.join(", ")
            ));
        }
    }
    out
}

/// The nodes of the cluster of the kubeconfig's current (or given) context.
fn cluster_nodes(context: Option<String>) -> Result<Cluster, String> {
    use k8s_openapi::api::core::v1::Node;
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let options = kube::config::KubeConfigOptions { context, ..Default::default() };
        let config = match kube::Config::from_kubeconfig(&options).await {
            Ok(c) => c,
            Err(_) if options.context.is_none() => kube::Config::infer()
                .await
                .map_err(|e| format!("cannot find a kubeconfig or in-cluster config: {e}"))?,
            Err(e) => return Err(format!("cannot use the kubeconfig: {e}")),
        };
        let client = kube::Client::try_from(config).map_err(|e| format!("cannot make a client: {e}"))?;
        let list = kube::Api::<Node>::all(client)
            .list(&Default::default())
            .await
            .map_err(|e| format!("cannot list the cluster's nodes: {e}"))?;
        let mut cluster = Cluster::default();
        for node in &list.items {
            let value = serde_json::to_value(node).map_err(|e| e.to_string())?;
            let view =
                gantry_api::node::parse_node(&value, &mut cluster.models).map_err(|e| e.to_string())?;
            cluster.upsert_node(view.node).map_err(|e| e.to_string())?;
        }
        Ok(cluster)
    })
}
