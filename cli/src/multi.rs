//! `gantry simulate --tenants FILE`: the multi-tenant simulation over time.

use crate::{Format, MultiArgs, WorkloadSource};
use gantry_core::model::Node;
use gantry_core::tenancy::build::{parse_duration, DURATION_HOW};
use gantry_core::tenancy::{file, IdleNotebooks};
use gantry_core::PolicyKind;
use gantry_sim::bundled;
use gantry_sim::multi::generate::{generate, GenSpec};
use gantry_sim::multi::timeline::{Setup, TimelineSpec};
use gantry_sim::multi::{openb, simulate_tenants, MultiSpec, SimWorkload, DEFAULT_START};
use gantry_sim::trace::{parse_nodes, parse_pods, Trace};
use std::path::{Path, PathBuf};

impl MultiArgs {
    /// The first multi-tenant option given without `--tenants`, if any.
    pub fn stray_flag(&self) -> Option<&'static str> {
        let MultiArgs {
            tenants: _,
            workload,
            compare,
            workloads,
            days,
            load,
            serve,
            speed: _,
            idle_notebooks,
        } = self;
        [
            (idle_notebooks.is_some(), "--idle-notebooks"),
            (serve.is_some(), "--serve"),
            (workload.is_some(), "--workload"),
            (compare.is_some(), "--compare"),
            (workloads.is_some(), "--workloads"),
            (days.is_some(), "--days"),
            (load.is_some(), "--load"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

/// `--idle-notebooks 2h` or `2h,always`.
fn idle_rule(text: &str) -> Result<IdleNotebooks, String> {
    let (after, always) = match text.split_once(',') {
        Some((after, "always")) => (after, true),
        Some((_, other)) => {
            return Err(format!(
                "--idle-notebooks {text}: unknown condition `{other}`; write `2h` or `2h,always`"
            ))
        }
        None => (text, false),
    };
    match parse_duration(after.trim()) {
        Some(stop_after) if stop_after >= 60 => Ok(IdleNotebooks { stop_after, always }),
        Some(_) => Err(format!(
            "--idle-notebooks {text}: under a minute; the node agent measures idle time per minute"
        )),
        None => Err(format!("--idle-notebooks {text}: {after:?} is not a duration; {DURATION_HOW}")),
    }
}

fn parse_compare(list: &str) -> Result<Vec<Setup>, String> {
    let mut setups = vec![Setup::Gantry];
    for part in list.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none") {
        let s = Setup::parse(part).map_err(|e| format!("--compare: {e}"))?;
        if !setups.contains(&s) {
            setups.push(s);
        }
    }
    Ok(setups)
}

pub fn run(
    tenants: PathBuf,
    args: MultiArgs,
    nodes: Option<PathBuf>,
    pods: Option<PathBuf>,
    policies: Vec<PolicyKind>,
    seed: u64,
    format: Format,
) -> Result<(), String> {
    if format == Format::Csv {
        return Err("--format csv is for the placement replay; use table or json with --tenants".into());
    }
    let mut tenancy = file::load(&tenants).map_err(|e| e.to_string())?;
    if let Some(rule) = &args.idle_notebooks {
        let rule = idle_rule(rule)?;
        for t in tenancy.tenants.iter_mut().filter(|t| t.idle_notebooks.is_none()) {
            t.idle_notebooks = Some(rule);
        }
    }
    let setups = parse_compare(args.compare.as_deref().unwrap_or("strict-quota,fifo"))?;
    let source = args.workload.unwrap_or(WorkloadSource::Generated);
    if source == WorkloadSource::Openb && (args.workloads.is_some() || args.load.is_some()) {
        return Err(
            "--workloads and --load shape generated workloads; leave them out with --workload openb".into()
        );
    }
    if source == WorkloadSource::Generated && pods.is_some() {
        return Err("--pods gives openb-style pods; add --workload openb to replay them".into());
    }
    if let Some(d) = args.days {
        if !(d.is_finite() && d > 0.0 && d <= 3660.0) {
            return Err(format!("--days {d} is out of range; give a number of days in (0, 3660]"));
        }
    }
    let (nodes_name, nodes_text) = match (&nodes, source) {
        (Some(p), _) => (p.display().to_string(), read(p)?),
        (None, WorkloadSource::Generated) => {
            (bundled::VENUS_NODES_NAME.to_string(), bundled::VENUS_NODES.to_string())
        }
        (None, WorkloadSource::Openb) => (bundled::NODES_NAME.to_string(), bundled::NODES.to_string()),
    };
    let (models, node_list) = parse_nodes(&nodes_name, &nodes_text).map_err(|e| e.to_string())?;
    tenancy.bind(&models).map_err(|e| format!("{}: {e} (nodes from {nodes_name})", tenants.display()))?;
    let start = DEFAULT_START;
    let (workloads, describe, end) = match source {
        WorkloadSource::Generated => {
            let n = args.workloads.unwrap_or(20_000);
            let days = args.days.unwrap_or(30.0);
            let load = args.load.unwrap_or(1.0);
            if !(load.is_finite() && load > 0.0 && load <= 10.0) {
                return Err(format!("--load {load} is out of range; give a ratio in (0, 10], e.g. 1.0"));
            }
            if n == 0 || n > 10_000_000 {
                return Err(format!("--workloads {n} is out of range; give 1 to 10000000"));
            }
            let gpu_capacity: u64 = node_list.iter().map(|n| n.gpu_capacity() as u64).sum();
            let flavors = tenancy.bind(&models).map_err(|e| e.to_string())?;
            let spec = GenSpec { seed, workloads: n, start, days, load };
            let w = generate(&tenancy, &flavors, gpu_capacity, &spec).map_err(|e| e.to_string())?;
            let describe = format!("{n} generated workloads (seed {seed}, load {load})");
            (w, describe, start + (days * 86400.0).round() as i64)
        }
        WorkloadSource::Openb => {
            let (pods_name, pods_text) = match &pods {
                Some(p) => (p.display().to_string(), read(p)?),
                None => (bundled::PODS_NAME.to_string(), bundled::PODS.to_string()),
            };
            let pod_list = parse_pods(&pods_name, &pods_text, &models).map_err(|e| e.to_string())?;
            let trace = Trace {
                name: pods_name.clone(),
                nodes_source: nodes_name.clone(),
                pods_source: pods_name.clone(),
                models: models.clone(),
                nodes: node_list.clone(),
                pods: pod_list,
            };
            let w = openb::workloads(&trace, &tenancy, seed, start).map_err(|e| e.to_string())?;
            let last = trace.pods.iter().filter_map(|p| p.deleted.or(p.created)).max().unwrap_or(0) as i64;
            let end = match args.days {
                Some(d) => start + (d * 86400.0).round() as i64,
                None => start + last.max(1),
            };
            explain_light_load(&w, &node_list, start, end);
            (w, format!("{} pods of {pods_name} (tenants drawn with seed {seed})", trace.pods.len()), end)
        }
    };
    if let Some(addr) = &args.serve {
        let timeline =
            TimelineSpec { setup: Setup::Gantry, policy: policies[0], start, end, sample_every: 3600 };
        return crate::serve_sim::run(
            tenancy,
            models,
            node_list,
            workloads,
            timeline,
            addr,
            args.speed.unwrap_or(21_600.0),
        );
    }
    let spec = MultiSpec {
        workload: describe,
        tenants_file: tenants.display().to_string(),
        nodes_file: nodes_name,
        policy: policies[0],
        setups,
        start,
        end,
        sample_every: 3600,
    };
    eprintln!("simulating {} setups ...", spec.setups.len());
    let report =
        simulate_tenants(&tenancy, &models, &node_list, &workloads, &spec).map_err(|e| e.to_string())?;
    let text = match format {
        Format::Json => report.to_json(),
        _ => report.to_table(),
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// Below this share of the cluster's GPU-time asked for, nothing contends and every setup's
/// table reads the same.
const LIGHT_LOAD: f64 = 0.2;

/// Says so when a replayed trace asks for too little of the cluster for quotas to matter: the
/// openb pod list's pods have creation and deletion times spread over months, so on its own
/// 6,212-GPU cluster they hold a fraction of a percent of the GPUs and every wait is zero.
fn explain_light_load(workloads: &[SimWorkload], nodes: &[Node], start: i64, end: i64) {
    let capacity: u64 = nodes.iter().map(|n| n.gpu_capacity() as u64).sum();
    let span = end - start;
    // GPU-time asked within [start, end): what ran past the end or arrived after it is not run.
    let asked: f64 = workloads
        .iter()
        .filter(|w| w.workload.submitted < end)
        .map(|w| {
            let w_gpu: u64 = w.workload.pod_sets.iter().map(|s| s.request.gpu_total() * s.count as u64).sum();
            let runs = w.duration.min(end - w.workload.submitted.max(start)).max(0);
            w_gpu as f64 * runs as f64
        })
        .sum();
    let offered = asked / (capacity as f64 * span.max(1) as f64);
    if offered < LIGHT_LOAD {
        eprintln!(
            "note: these pods ask for {:.1} % of the cluster's GPU-time over the {:.0} days simulated, so \
             nothing waits and the setups cannot differ: the tables show how usage is charged, not how \
             quotas contend. For contention, replay them on fewer nodes (--nodes with a shorter node \
             list) or use generated workloads (leave out --workload; --load sets how full the cluster \
             is).",
            offered * 100.0,
            span as f64 / 86_400.0
        );
    }
}
