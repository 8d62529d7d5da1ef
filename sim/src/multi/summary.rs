//! Figures of multi-tenant simulations, as a table for people and JSON for scripts.

use super::timeline::{Outcome, Sample, Setup};
use gantry_core::queue::explain::duration;
use gantry_core::tenancy::{Kind, Seconds, MILLI_GPU_SECONDS_PER_GPU_HOUR};
use serde::Serialize;
use std::fmt::Write;

/// Queueing delay percentiles of one group of workloads, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Delays {
    pub count: usize,
    pub p50: Seconds,
    pub p95: Seconds,
    pub p99: Seconds,
}

impl Delays {
    /// Nearest-rank percentiles.
    pub fn of(mut v: Vec<Seconds>) -> Delays {
        if v.is_empty() {
            return Delays::default();
        }
        v.sort_unstable();
        let at = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Delays { count: v.len(), p50: at(50.0), p95: at(95.0), p99: at(99.0) }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TenantSummary {
    pub name: String,
    /// The tenant's weight as % of all weights, and its time-averaged share of GPU capacity.
    pub weight_pct: f64,
    pub gpu_pct: f64,
    pub guaranteed_gpu_hours: f64,
    pub borrowed_gpu_hours: f64,
    pub cost: f64,
    /// Per calendar month: cost and GPU-hours (what budgets count).
    pub months: Vec<(String, f64, f64)>,
    pub budget_gpu_hours: Option<f64>,
    /// The largest share of its monthly budget used in any month, %.
    pub budget_used_pct: Option<f64>,
    pub preempted: usize,
    pub refused: usize,
    pub waiting_at_end: usize,
    /// % of the run during which the tenant had work waiting.
    pub unmet_demand_pct: f64,
    pub delays: Vec<(Kind, Delays)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SetupSummary {
    pub setup: Setup,
    pub mean_allocated_pct: f64,
    pub delays: Delays,
    pub delays_by_kind: Vec<(Kind, Delays)>,
    pub submitted: usize,
    pub admitted: usize,
    pub finished: usize,
    pub waiting_at_end: usize,
    pub running_at_end: usize,
    pub refused: usize,
    pub preemptions: usize,
    pub reclaims: usize,
    pub owed: usize,
    pub violations: usize,
    pub worst_owed_wait: Seconds,
    pub owed_without_room: usize,
    pub worst_without_room: Seconds,
    pub jain: Option<f64>,
    /// Whether the ledger's accrued milli-GPU-seconds equal the loop's integral of allocation.
    pub ledger_exact: bool,
    pub accrued_milli_gpu_seconds: u128,
    pub cycles: usize,
    pub wall_seconds: f64,
    pub tenants: Vec<TenantSummary>,
    pub first_refusals: Vec<String>,
    pub waiting_examples: Vec<String>,
    pub violation_examples: Vec<String>,
    pub samples: Vec<Sample>,
    pub notebooks: NotebookSummary,
}

/// Idle notebook GPU time and what the tenants' `idleNotebooks` rules did about it.
#[derive(Clone, Debug, Serialize)]
pub struct NotebookSummary {
    /// GPU-hours notebooks held allocated and idle.
    pub idle_held_gpu_hours: f64,
    pub stopped: usize,
    /// Stopped workloads that were not notebooks (serving, training, ...): always 0 by the rule.
    pub stopped_not_notebook: usize,
    /// GPU-hours the stopped notebooks would still have held until their planned end.
    pub given_back_gpu_hours: f64,
    pub restarted: usize,
    /// How long restarted notebooks waited to start again.
    pub restart_wait: Delays,
}

/// All setups of one invocation.
#[derive(Clone, Debug, Serialize)]
pub struct MultiReport {
    pub workload: String,
    pub tenants_file: String,
    pub nodes: String,
    pub gpus: u64,
    pub days: f64,
    pub currency: String,
    pub reclaim_window: Seconds,
    pub min_runtime: Seconds,
    pub setups: Vec<SetupSummary>,
}

fn hours(milli_seconds: u128) -> f64 {
    milli_seconds as f64 / MILLI_GPU_SECONDS_PER_GPU_HOUR as f64
}

impl SetupSummary {
    pub fn of(o: Outcome, span: Seconds) -> SetupSummary {
        let total_weight: f64 = o.tenants.iter().map(|t| t.weight).sum::<f64>().max(f64::MIN_POSITIVE);
        let capacity = o.gpu_capacity.max(1) as f64;
        let mut all: Vec<Seconds> = Vec::new();
        let mut by_kind: Vec<(Kind, Vec<Seconds>)> = Kind::ALL.iter().map(|&k| (k, Vec::new())).collect();
        let tenants = o
            .tenants
            .iter()
            .map(|t| {
                let mut delays = Vec::new();
                for &k in &Kind::ALL {
                    if let Some(d) = t.delays.get(&k) {
                        all.extend(d);
                        by_kind[k.index()].1.extend(d);
                        delays.push((k, Delays::of(d.clone())));
                    }
                }
                TenantSummary {
                    name: t.name.clone(),
                    weight_pct: 100.0 * t.weight / total_weight,
                    gpu_pct: 100.0 * t.mean_gpu / capacity,
                    guaranteed_gpu_hours: hours(t.guaranteed),
                    borrowed_gpu_hours: hours(t.borrowed),
                    cost: t.cost_micros as f64 / 1e6,
                    months: t
                        .months
                        .iter()
                        .map(|(m, u)| (m.clone(), u.cost_micros as f64 / 1e6, hours(u.gpu_milli_seconds)))
                        .collect(),
                    budget_gpu_hours: t.budget_gpu_hours,
                    budget_used_pct: t.budget_gpu_hours.filter(|&b| b > 0.0).map(|b| {
                        t.months.values().map(|u| 100.0 * hours(u.gpu_milli_seconds) / b).fold(0.0, f64::max)
                    }),
                    preempted: t.preempted,
                    refused: t.refused,
                    waiting_at_end: t.waiting_at_end,
                    unmet_demand_pct: 100.0 * t.seconds_with_unmet_demand as f64 / span.max(1) as f64,
                    delays,
                }
            })
            .collect();
        SetupSummary {
            setup: o.setup,
            mean_allocated_pct: o.mean_allocated_pct,
            delays: Delays::of(all),
            delays_by_kind: by_kind
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k, Delays::of(v)))
                .collect(),
            submitted: o.submitted,
            admitted: o.admitted,
            finished: o.finished,
            waiting_at_end: o.waiting_at_end,
            running_at_end: o.running_at_end,
            refused: o.refused,
            preemptions: o.preemptions,
            reclaims: o.reclaims,
            owed: o.owed,
            violations: o.violations,
            worst_owed_wait: o.worst_owed_wait,
            owed_without_room: o.owed_without_room,
            worst_without_room: o.worst_without_room,
            jain: o.jain,
            ledger_exact: o.accrued == o.integral,
            accrued_milli_gpu_seconds: o.accrued,
            cycles: o.cycles,
            wall_seconds: o.wall_seconds,
            tenants,
            first_refusals: o.first_refusals,
            waiting_examples: o.waiting_examples,
            violation_examples: o.violation_examples,
            samples: o.samples,
            notebooks: NotebookSummary {
                idle_held_gpu_hours: hours(o.notebooks.idle_held),
                stopped: o.notebooks.stopped,
                stopped_not_notebook: o.notebooks.stopped_not_notebook,
                given_back_gpu_hours: hours(o.notebooks.given_back),
                restarted: o.notebooks.restarted,
                restart_wait: Delays::of(o.notebooks.restart_delays),
            },
        }
    }
}

impl MultiReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Multi-tenant simulation: {}\n  tenants {}, nodes {} ({} GPUs), {:.1} days; reclaim window {}, minimum runtime {}\n",
            self.workload,
            self.tenants_file,
            self.nodes,
            self.gpus,
            self.days,
            duration(self.reclaim_window),
            duration(self.min_runtime)
        );
        let _ = writeln!(
            s,
            "{:<13} {:>6} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>8} {:>7} {:>6} {:>10} {:>10} {:>7} {:>6}",
            "setup",
            "alloc%",
            "wait p50",
            "wait p95",
            "wait p99",
            "started",
            "waiting",
            "refused",
            "preempt",
            "reclaim",
            "owed",
            "violations",
            "worst owed",
            "no room",
            "jain"
        );
        for x in &self.setups {
            let _ = writeln!(
                s,
                "{:<13} {:>6.1} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>8} {:>7} {:>6} {:>10} {:>10} {:>7} {:>6}",
                x.setup.name(),
                x.mean_allocated_pct,
                duration(x.delays.p50),
                duration(x.delays.p95),
                duration(x.delays.p99),
                x.admitted,
                x.waiting_at_end,
                x.refused,
                x.preemptions,
                x.reclaims,
                x.owed,
                x.violations,
                duration(x.worst_owed_wait),
                x.owed_without_room,
                x.jain.map_or("-".into(), |j| format!("{j:.3}"))
            );
        }
        for x in &self.setups {
            s.push('\n');
            self.setup_detail(&mut s, x);
        }
        s.push_str(
            "\nalloc%: time-averaged allocated GPU as % of capacity. wait: queueing delay (first start - submission) of workloads that started.\n\
             owed: workloads within their tenant's nominal quota when submitted; violations: owed workloads that waited longer than the\n\
             reclaim window plus the minimum runtime although room existed with all reclaimable work stopped; no room: owed workloads\n\
             that waited longer but found no room even then (other tenants' guaranteed work held the nodes). jain: Jain index of GPU\n\
             held / weight over tenants with work waiting (1 = fair).\n",
        );
        s
    }

    fn setup_detail(&self, s: &mut String, x: &SetupSummary) {
        let _ = writeln!(s, "{} - wait p95 by kind: {}", x.setup.name(), kinds(&x.delays_by_kind));
        let nb = &x.notebooks;
        let _ = writeln!(
            s,
            "  notebooks: {:.0} GPU-h held idle; idle rule stopped {} ({} not notebooks), gave back {:.0} GPU-h, {} restarted (wait p50 {}, p95 {})",
            nb.idle_held_gpu_hours,
            nb.stopped,
            nb.stopped_not_notebook,
            nb.given_back_gpu_hours,
            nb.restarted,
            duration(nb.restart_wait.p50),
            duration(nb.restart_wait.p95),
        );
        let _ =
            writeln!(s, "  alloc% over time ({}): {}", over_time_label(&x.samples), over_time(&x.samples));
        let _ = writeln!(
            s,
            "{:<16} {:>7} {:>6} {:>7} {:>11} {:>11} {:>12} {:>8} {:>8} {:>6}  wait p95 by kind",
            "tenant",
            "weight%",
            "gpu%",
            "unmet%",
            "guar GPU-h",
            "borr GPU-h",
            format!("cost {}", self.currency),
            "preempt",
            "waiting",
            "refused"
        );
        for t in &x.tenants {
            let _ = writeln!(
                s,
                "{:<16} {:>7.1} {:>6.1} {:>7.1} {:>11.0} {:>11.0} {:>12.0} {:>8} {:>8} {:>6}  {}",
                t.name,
                t.weight_pct,
                t.gpu_pct,
                t.unmet_demand_pct,
                t.guaranteed_gpu_hours,
                t.borrowed_gpu_hours,
                t.cost,
                t.preempted,
                t.waiting_at_end,
                t.refused,
                kinds(&t.delays)
            );
        }
        for t in x.tenants.iter().filter(|t| t.budget_gpu_hours.is_some()) {
            let _ = writeln!(
                s,
                "budget: {} used {:.0}% of its {:.0} GPU-hours a month at most",
                t.name,
                t.budget_used_pct.unwrap_or(0.0),
                t.budget_gpu_hours.unwrap_or(0.0)
            );
        }
        let _ = writeln!(
            s,
            "ledger: {:.0} GPU-hours accrued, {} the integral of allocation; {} cycles in {:.2} s",
            hours(x.accrued_milli_gpu_seconds),
            if x.ledger_exact { "exactly" } else { "NOT equal to" },
            x.cycles,
            x.wall_seconds
        );
        for r in &x.first_refusals {
            let _ = writeln!(s, "refused: {r}");
        }
        for w in &x.waiting_examples {
            let _ = writeln!(s, "waiting: {w}");
        }
        for v in &x.violation_examples {
            let _ = writeln!(s, "owed and late: {v}");
        }
    }
}

/// Samples per bucket of the allocation-over-time line (ten buckets).
fn bucket(samples: &[Sample]) -> usize {
    samples.len().div_ceil(10).max(1)
}

fn over_time_label(samples: &[Sample]) -> String {
    let span = bucket(samples) as Seconds * samples.get(1).map_or(3600, |b| b.t - samples[0].t);
    format!("means over {}", duration(span))
}

/// The allocation series as up to ten bucket means.
fn over_time(samples: &[Sample]) -> String {
    samples
        .chunks(bucket(samples))
        .map(|c| format!("{:.0}", c.iter().map(|s| s.allocated_pct).sum::<f64>() / c.len() as f64))
        .collect::<Vec<_>>()
        .join(" ")
}

fn kinds(d: &[(Kind, Delays)]) -> String {
    d.iter().map(|(k, d)| format!("{k} {}", duration(d.p95))).collect::<Vec<_>>().join(", ")
}
