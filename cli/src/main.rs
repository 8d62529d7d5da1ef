//! The `gantry` command line.

mod check;
mod kubectl;
mod ledger;
mod multi;
mod node_agent;
mod quota_api;
mod scheduler;
mod serve_sim;
mod webhook;

use clap::{Parser, Subcommand, ValueEnum};
use gantry_core::PolicyKind;
use gantry_sim::{bundled, plot, replay, simulate, trace::Trace};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "gantry", version, about = "Gantry: GPU cluster scheduling for Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How the services' log lines are written: `text` (one line each) or `json` (one object
    /// each, for log pipelines). Which lines: the `RUST_LOG` filter (default `info`; e.g.
    /// `RUST_LOG=gantry_scheduler=debug,kube=info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The one `tracing` subscriber of the process: every component's events (and kube-runtime's),
/// filtered by `RUST_LOG`, to standard error.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[derive(Subcommand)]
enum Command {
    /// Replay a GPU-cluster trace through Gantry's placement core, as the FGD paper's simulator
    /// does, and report the GPU each policy leaves unallocated. With no options: the bundled
    /// openb default trace, Gantry's policy, seeds 42-51.
    ///
    /// With --tenants: a multi-tenant simulation over time (quotas, borrowing, fair share, gangs,
    /// preemption, cost), compared with baselines in the same run.
    Simulate(SimulateArgs),
    /// Serve the kube-scheduler extender API (filter, prioritize, bind, preempt) plus /healthz,
    /// /readyz and /metrics, and run the queue controller.
    ///
    /// In a cluster (the default): nodes and pods are watched through the API server, one replica
    /// (a Lease) admits workloads and evicts for preemption, every replica serves the extender.
    /// With --standalone: no API server; nodes come from a node list file and binds are kept in
    /// memory, for local trials, demos and load tests.
    Scheduler(scheduler::SchedulerArgs),
    /// Print Gantry's CustomResourceDefinitions (Tenant, Cohort, GpuFlavor) as YAML.
    ///
    /// With --from-tenants FILE: print instead that tenants file's flavors, cohorts and tenants as
    /// GpuFlavor, Cohort and Tenant objects, for `kubectl apply -f`.
    Crd(CrdArgs),
    /// Serve the admission webhook: POST /mutate (classify pods, record tenant, kind and gang,
    /// gate GPU pods for the queue) and POST /validate (refuse what can never run or is not
    /// allowed, with the fix), plus /healthz, /readyz and /metrics. Plain HTTP unless certificate
    /// files are given; no API server needed.
    Webhook(webhook::WebhookArgs),
    /// Run the node agent: read the GPUs through NVML (or replay a capture), judge their health,
    /// publish the node's GPU inventory for the scheduler, and serve Prometheus metrics and
    /// per-pod GPU utilization.
    NodeAgent(node_agent::NodeAgentArgs),
    /// The cost ledger file: import accruals (JSON lines, idempotent), print totals.
    Ledger(ledger::LedgerArgs),
    /// Check a tenants file: every error at once, and quotas the cluster's GPUs cannot hold.
    Check(check::CheckArgs),
    /// What is queued and why, against a cluster (also `kubectl gantry` when this binary is on
    /// the PATH as `kubectl-gantry`).
    Kubectl(kubectl::KubectlArgs),
    /// Serve the quota API and dashboard over a ledger file: usage, cost, queue and budgets per
    /// tenant; the scheduler's leader sends accruals and the view of the queue.
    QuotaApi(quota_api::QuotaApiArgs),
}

#[derive(clap::Args)]
struct CrdArgs {
    /// A tenants file (see examples/tenants/) to print as objects. Its currency, timing,
    /// priorityClasses and kindPriorities have no object: keep them in the cluster's settings file.
    #[arg(long, value_name = "FILE")]
    from_tenants: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Node list CSV (sn,cpu_milli,memory_mib,gpu,model). Default: the bundled openb GPU nodes.
    #[arg(long, value_name = "FILE")]
    nodes: Option<PathBuf>,
    /// Pod list CSV (name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec]). Default: the bundled
    /// openb default pod list.
    #[arg(long, value_name = "FILE")]
    pods: Option<PathBuf>,
    /// Comma-separated policies: random, dot-product, clustering, packing, best-fit, fgd, gantry;
    /// or all.
    #[arg(long, value_name = "LIST", default_value = "gantry")]
    policies: String,
    /// Seeds: a range like 42-51, a list like 42,45, or one seed.
    #[arg(long, value_name = "SEEDS", default_value = "42-51")]
    seeds: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also draw the unallocated-vs-arrived curve per policy to this SVG file.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Inflate the workload to this multiple of cluster GPU capacity (the paper uses 1.3).
    #[arg(long, value_name = "RATIO", default_value_t = 1.3)]
    inflate: f64,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    multi: MultiArgs,
}

/// The multi-tenant simulation over time.
#[derive(clap::Args)]
struct MultiArgs {
    /// Tenants file (YAML; see examples/tenants/). Switches to the multi-tenant simulation.
    #[arg(long, value_name = "FILE")]
    tenants: Option<PathBuf>,
    /// Workloads: generated (the seeded multi-tenant generator; default) or openb (the pod list's
    /// pods with their creation and deletion times, given to tenants by a seeded rule).
    #[arg(long, value_enum, value_name = "SOURCE")]
    workload: Option<WorkloadSource>,
    /// Baselines to run beside Gantry in the same invocation: strict-quota, fifo, or none.
    /// Default: strict-quota,fifo.
    #[arg(long, value_name = "LIST")]
    compare: Option<String>,
    /// Generated workloads: how many (default 20000).
    #[arg(long, value_name = "N")]
    workloads: Option<usize>,
    /// Simulated days (default: 30 for generated workloads, the whole trace for openb).
    #[arg(long, value_name = "DAYS")]
    days: Option<f64>,
    /// Generated workloads: offered GPU time as a fraction of capacity (default 1.0).
    #[arg(long, value_name = "RATIO")]
    load: Option<f64>,
    /// Serve the quota API and dashboard at ADDR over Gantry's run as the virtual clock runs
    /// (prints the address with an admin token), and keep serving after it ends.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
    /// With --serve: simulated seconds per real second (default 21600: a day in 4 s); 0 runs
    /// as fast as it can.
    #[arg(long, value_name = "N", requires = "serve")]
    speed: Option<f64>,
    /// Stop idle GPU notebooks of every tenant without its own `idleNotebooks` rule: after
    /// DURATION idle when work waits for their GPUs (`2h`), or even when nothing waits
    /// (`2h,always`).
    #[arg(long, value_name = "DURATION[,always]")]
    idle_notebooks: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WorkloadSource {
    Generated,
    Openb,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(plugin_args(std::env::args_os()));
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Simulate(args) => run_simulate(args),
        Command::Scheduler(args) => scheduler::run(args),
        Command::Crd(args) => run_crd(args),
        Command::Webhook(args) => webhook::run(args),
        Command::NodeAgent(args) => node_agent::run(args),
        Command::Ledger(args) => ledger::run(args),
        Command::Check(args) => check::run(args),
        Command::Kubectl(args) => kubectl::run(args),
        Command::QuotaApi(args) => quota_api::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_crd(args: CrdArgs) -> Result<(), String> {
    let Some(file) = args.from_tenants else {
        let yaml = gantry_api::crds::definitions_yaml()
            .map_err(|e| format!("cannot render the definitions: {e}"))?;
        print!("{yaml}");
        return Ok(());
    };
    let (tenancy, settings) =
        gantry_core::tenancy::file::load_with_settings(&file).map_err(|e| e.to_string())?;
    let (flavors, cohorts, tenants) = gantry_api::crds::tenancy_to_objects(&tenancy, &settings)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let yaml = gantry_api::crds::objects_yaml(&flavors, &cohorts, &tenants)
        .map_err(|e| format!("cannot render the objects: {e}"))?;
    print!("{yaml}");
    eprintln!(
        "note: {} GpuFlavors, {} Cohorts, {} Tenants; the file's currency, timing, priorityClasses and \
         kindPriorities are not objects: keep them in the cluster's settings file",
        flavors.len(),
        cohorts.len(),
        tenants.len()
    );
    Ok(())
}

fn run_simulate(args: SimulateArgs) -> Result<(), String> {
    let SimulateArgs { nodes, pods, policies, seeds, format, plot: plot_file, inflate, jobs, multi } = args;
    let policies = parse_policies(&policies)?;
    let seeds = parse_seeds(&seeds)?;
    if let Some(j) = jobs {
        rayon::ThreadPoolBuilder::new().num_threads(j.max(1)).build_global().map_err(|e| e.to_string())?;
    }
    if let Some(tenants) = multi.tenants.clone() {
        if plot_file.is_some() {
            return Err("--plot draws the placement replay; leave it out with --tenants (use --format json for the allocation series)".into());
        }
        return multi::run(tenants, multi, nodes, pods, policies, seeds[0], format);
    }
    if let Some(flag) = multi.stray_flag() {
        return Err(format!(
            "{flag} needs --tenants FILE (the multi-tenant simulation); see examples/tenants/"
        ));
    }
    if !(inflate.is_finite() && inflate > 0.0 && inflate <= 10.0) {
        return Err(format!("--inflate {inflate} is out of range; give a ratio in (0, 10], e.g. 1.3"));
    }
    if let Some(file) = &plot_file {
        plot::check_target(file).map_err(|e| e.to_string())?;
    }
    let trace = match (nodes, pods) {
        (None, None) => bundled::default_trace(),
        (Some(n), Some(p)) => Trace::load(&n, &p),
        (Some(n), None) => {
            let nodes =
                std::fs::read_to_string(&n).map_err(|e| format!("{}: cannot read: {e}", n.display()))?;
            Trace::parse(&n.display().to_string(), &nodes, bundled::PODS_NAME, bundled::PODS)
        }
        (None, Some(p)) => {
            let pods =
                std::fs::read_to_string(&p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
            Trace::parse(bundled::NODES_NAME, bundled::NODES, &p.display().to_string(), &pods)
        }
    }
    .map_err(|e| e.to_string())?;
    let never = replay::never_fitting(&trace);
    if !never.is_empty() {
        eprintln!(
            "note: {} pods fit no node even on an empty cluster (first: {}); they count as failed",
            never.len(),
            never.iter().take(3).copied().collect::<Vec<_>>().join(", ")
        );
    }

    let total = replay::estimated_pods(&trace, inflate) * (policies.len() * seeds.len()) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} simulating [{bar:40}] {percent:>3}% {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let report = simulate(&trace, &policies, &seeds, inflate, &|| bar.inc(1));
    bar.finish_and_clear();

    let text = match format {
        Format::Table => report.to_table(),
        Format::Json => report.to_json(),
        Format::Csv => report.to_csv(),
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    if let Some(file) = plot_file {
        plot::draw_svg(&report, &file).map_err(|e| e.to_string())?;
        eprintln!("plot written to {}", file.display());
    }
    Ok(())
}

fn parse_policies(list: &str) -> Result<Vec<PolicyKind>, String> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if part.eq_ignore_ascii_case("all") {
            out.extend(PolicyKind::ALL);
        } else {
            out.push(part.parse().map_err(|e: gantry_core::UnknownPolicy| e.to_string())?);
        }
    }
    out.dedup();
    let mut seen = std::collections::HashSet::new();
    out.retain(|k| seen.insert(*k));
    if out.is_empty() {
        return Err("--policies is empty; name at least one policy, or all".into());
    }
    Ok(out)
}

fn parse_seeds(spec: &str) -> Result<Vec<u64>, String> {
    let bad = |why: &str| format!("--seeds {spec:?}: {why}; write a range like 42-51 or a list like 42,43");
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u64 = a.trim().parse().map_err(|_| bad("not a number"))?;
                let b: u64 = b.trim().parse().map_err(|_| bad("not a number"))?;
                if b < a {
                    return Err(bad("the range runs backwards"));
                }
                if b - a >= 10_000 {
                    return Err(bad("more than 10000 seeds"));
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad("not a number"))?),
        }
    }
    if out.is_empty() {
        return Err(bad("no seeds"));
    }
    Ok(out)
}

/// Run as `kubectl-gantry` (kubectl's plugin name for `kubectl gantry`): `gantry kubectl ...`.
fn plugin_args(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<_> = args.collect();
    let plugin =
        args.first().and_then(|a| std::path::Path::new(a).file_stem()).is_some_and(|n| n == "kubectl-gantry");
    if plugin {
        args.insert(1, "kubectl".into());
    }
    args
}
