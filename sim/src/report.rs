//! Summaries over seeds and the three output formats (table, JSON, CSV).

use crate::replay::{RunResult, REPORT_POINTS};
use crate::trace::Trace;
use gantry_core::PolicyKind;
use serde::Serialize;
use std::fmt::Write as _;

/// Mean, sample standard deviation and median of some values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub mean: f64,
    pub sd: f64,
    pub median: f64,
    pub n: usize,
}

impl Stats {
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let var =
            if n > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Some(Stats { mean, sd: var.sqrt(), median, n })
    }
}

/// One point of the unallocated-vs-arrived curve.
#[derive(Clone, Debug, Serialize)]
pub struct CurvePoint {
    pub arrived: u32,
    #[serde(flatten)]
    pub stats: Stats,
}

/// Where the trace came from.
#[derive(Clone, Debug, Serialize)]
pub struct TraceInfo {
    pub name: String,
    pub nodes_file: String,
    pub pods_file: String,
    pub nodes: usize,
    pub gpus: u64,
    pub pods: usize,
    /// Pods in the trace that no node could hold even when empty.
    pub never_fit_pods: usize,
}

impl TraceInfo {
    pub fn of(trace: &Trace) -> TraceInfo {
        TraceInfo {
            name: trace.name.clone(),
            nodes_file: trace.nodes_source.clone(),
            pods_file: trace.pods_source.clone(),
            nodes: trace.nodes.len(),
            gpus: trace.gpu_capacity() / 1000,
            pods: trace.pods.len(),
            never_fit_pods: crate::replay::never_fitting(trace).len(),
        }
    }
}

/// One policy's results over all seeds.
#[derive(Clone, Debug, Serialize)]
pub struct PolicySummary {
    pub policy: String,
    pub trace: String,
    pub seeds: Vec<u64>,
    /// Unallocated GPU % of capacity at each reported arrived %: mean, sd, median over seeds.
    pub unallocated_gpu_pct: Vec<CurvePoint>,
    /// FGD fragmentation as % of GPU capacity when arrivals reach 100 %.
    pub fragmentation_pct_at_100: Option<Stats>,
    pub fragmentation_pct_end: Option<Stats>,
    /// Pods that fitted nowhere and were dropped, per run.
    pub failed_pods: Option<Stats>,
    pub failed_pods_per_seed: Vec<usize>,
    /// Of those, pods no node could hold even when empty.
    pub never_fit_pods_per_seed: Vec<usize>,
    pub pods_per_run: Option<Stats>,
    /// Summed wall time of this policy's runs, and the mean per run.
    pub wall_seconds_total: f64,
    pub wall_seconds_per_run: f64,
    /// The full curve (medians over seeds) from 75 % to 130 % arrived, one point per percent.
    pub median_curve: Vec<(u32, f64)>,
}

impl PolicySummary {
    pub fn of(trace: &str, policy: PolicyKind, runs: &[&RunResult]) -> PolicySummary {
        let at = |a: u32| runs.iter().filter_map(|r| r.unallocated_at(a)).collect::<Vec<_>>();
        let stats = |f: &dyn Fn(&RunResult) -> Option<f64>| {
            Stats::of(&runs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
        };
        let wall: f64 = runs.iter().map(|r| r.wall_seconds).sum();
        PolicySummary {
            policy: policy.name().to_string(),
            trace: trace.to_string(),
            seeds: runs.iter().map(|r| r.seed).collect(),
            unallocated_gpu_pct: REPORT_POINTS
                .iter()
                .filter_map(|&a| Stats::of(&at(a)).map(|stats| CurvePoint { arrived: a, stats }))
                .collect(),
            fragmentation_pct_at_100: stats(&|r| r.fragmentation_at_100),
            fragmentation_pct_end: stats(&|r| Some(r.fragmentation_end)),
            failed_pods: stats(&|r| Some(r.failed_pods as f64)),
            failed_pods_per_seed: runs.iter().map(|r| r.failed_pods).collect(),
            never_fit_pods_per_seed: runs.iter().map(|r| r.never_fit_pods).collect(),
            pods_per_run: stats(&|r| Some(r.pods as f64)),
            wall_seconds_total: wall,
            wall_seconds_per_run: wall / runs.len().max(1) as f64,
            median_curve: (75..=130).filter_map(|a| Stats::of(&at(a)).map(|s| (a, s.median))).collect(),
        }
    }

    pub fn unallocated(&self, arrived: u32) -> Option<Stats> {
        self.unallocated_gpu_pct.iter().find(|p| p.arrived == arrived).map(|p| p.stats)
    }
}

/// The whole result of `gantry simulate`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub trace: TraceInfo,
    pub seeds: Vec<u64>,
    pub inflate_to: f64,
    pub results: Vec<PolicySummary>,
    pub wall_seconds: f64,
}

/// The FGD paper's published mean unallocated GPU % at 100 % arrived (FGD.md), for the openb
/// traces it reports: used to put Gantry's numbers next to the paper's in the table.
pub fn paper_value(trace: &str, policy: PolicyKind) -> Option<f64> {
    let row: [f64; 6] = match trace {
        "default" => [13.70, 9.38, 8.35, 8.22, 7.14, 4.77],
        "gpushare40" => [15.14, 10.70, 10.24, 10.23, 8.56, 6.04],
        "multigpu20" => [13.08, 8.15, 6.66, 6.50, 6.27, 4.47],
        "gpuspec10" => [13.74, 9.83, 8.04, 7.76, 6.90, 5.34],
        _ => return None,
    };
    let i = PolicyKind::ALL.iter().position(|&k| k == policy)?;
    row.get(i).copied()
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}"))
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// One row per policy and reported arrived %.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "trace,policy,seeds,arrived_pct,unallocated_gpu_pct_mean,unallocated_gpu_pct_sd,unallocated_gpu_pct_median,fragmentation_pct_at_100_mean,failed_pods_mean,wall_seconds_per_run\n",
        );
        for r in &self.results {
            for p in &r.unallocated_gpu_pct {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{:.4},{:.4},{:.4},{},{},{:.4}",
                    self.trace.name,
                    r.policy,
                    r.seeds.len(),
                    p.arrived,
                    p.stats.mean,
                    p.stats.sd,
                    p.stats.median,
                    fmt_opt(r.fragmentation_pct_at_100.map(|s| s.mean), 4),
                    fmt_opt(r.failed_pods.map(|s| s.mean), 1),
                    r.wall_seconds_per_run
                );
            }
        }
        out
    }

    /// A readable report for a terminal.
    pub fn to_table(&self) -> String {
        let t = &self.trace;
        let mut out = String::new();
        let seeds = match (self.seeds.first(), self.seeds.last()) {
            (Some(a), Some(b)) if self.seeds.len() > 1 => format!("{} seeds ({a}-{b})", self.seeds.len()),
            (Some(a), _) => format!("seed {a}"),
            _ => "no seeds".into(),
        };
        let _ = writeln!(
            out,
            "Trace {}: {} nodes, {} GPUs, {} pods; inflated to {:.0} % of GPU capacity; {seeds}.",
            t.name,
            t.nodes,
            t.gpus,
            t.pods,
            self.inflate_to * 100.0
        );
        if t.never_fit_pods > 0 {
            let _ = writeln!(
                out,
                "{} pods of the trace fit no node even when the cluster is empty.",
                t.never_fit_pods
            );
        }
        let _ = writeln!(
            out,
            "\nUnallocated GPU % (lower is better), mean ± sd over seeds, by % of capacity arrived:"
        );
        let _ = write!(out, "{:<12}", "policy");
        for a in [80, 90, 95, 100, 110, 130] {
            let _ = write!(out, "{:>14}", format!("{a} %"));
        }
        let _ = writeln!(out, "{:>10}{:>8}{:>8}{:>9}", "paper@100", "frag %", "failed", "s/run");
        for r in &self.results {
            let _ = write!(out, "{:<12}", r.policy);
            for a in [80, 90, 95, 100, 110, 130] {
                let cell = r.unallocated(a).map_or("-".into(), |s| format!("{:.2} ± {:.2}", s.mean, s.sd));
                let _ = write!(out, "{cell:>14}");
            }
            let paper = r.policy.parse::<PolicyKind>().ok().and_then(|k| paper_value(&t.name, k));
            let _ = writeln!(
                out,
                "{:>10}{:>8}{:>8}{:>9.3}",
                fmt_opt(paper, 2),
                fmt_opt(r.fragmentation_pct_at_100.map(|s| s.mean), 2),
                fmt_opt(r.failed_pods.map(|s| s.mean), 0),
                r.wall_seconds_per_run
            );
        }
        if paper_value(&t.name, PolicyKind::Fgd).is_some() {
            let _ = writeln!(
                out,
                "\npaper@100: the FGD paper's published mean at 100 % arrived for this trace (USENIX ATC '23)."
            );
        }
        let _ = writeln!(
            out,
            "frag %: FGD fragmentation at 100 % arrived; failed: pods that fitted nowhere, per run; {:.2} s wall in all.",
            self.wall_seconds
        );
        out
    }
}
