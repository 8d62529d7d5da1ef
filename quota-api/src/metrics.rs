//! `/metrics` (Prometheus text format 0.0.4) of the quota API: accrued cost per tenant, flavor
//! and kind from the ledger, and budgets. Quota, use, borrowing and queue lengths are the
//! scheduler leader's metrics in a cluster; with `with_queue` (no scheduler: `gantry simulate
//! --serve`) they are written here under the scheduler's very names, so the same Grafana
//! dashboard (`charts/gantry/dashboards/gantry-tenants.json`) works on both. Per-tenant series
//! are written only for a caller who may read every tenant; others get aggregates
//! (`crate::api`'s documentation).

use crate::idle::Skipped;
use crate::ledger::Sums;
use gantry_api::view::{QuotaView, View};
use std::collections::BTreeMap;
use std::fmt::Write;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Renders the metrics: `cost` is the all-time sums per (tenant, flavor) from the ledger. Without
/// `per_tenant` (a caller who may not read every tenant) only aggregates over all tenants are
/// written: no tenant's name, cost, use, budget or queue.
pub fn render(view: &View, cost: &[(String, String, Sums)], with_queue: bool, per_tenant: bool) -> String {
    let mut out = String::with_capacity(4096);
    let mut by_flavor: BTreeMap<&str, Sums> = BTreeMap::new();
    for (_, f, s) in cost {
        by_flavor.entry(f).or_default().add(s);
    }
    family(&mut out, "gantry_cost_total", "counter", &format!("Money accrued over all tenants per flavor and kind (guaranteed, borrowed; idle is the allocated-but-idle part of them), in {}.", view.currency));
    for (f, s) in &by_flavor {
        for (kind, micros) in
            [("guaranteed", s.guaranteed_cost), ("borrowed", s.borrowed_cost), ("idle", s.idle_cost)]
        {
            let _ = writeln!(
                out,
                "gantry_cost_total{{flavor=\"{}\",kind=\"{kind}\"}} {}",
                escape(f),
                micros as f64 / 1e6
            );
        }
    }
    family(
        &mut out,
        "gantry_usage_hours_total",
        "counter",
        "Unit-hours accrued over all tenants per flavor and kind (GPU-hours; core-hours for cpu).",
    );
    for (f, s) in &by_flavor {
        for (kind, ms) in [("guaranteed", s.guaranteed), ("borrowed", s.borrowed), ("idle", s.idle)] {
            let _ = writeln!(
                out,
                "gantry_usage_hours_total{{flavor=\"{}\",kind=\"{kind}\"}} {}",
                escape(f),
                ms as f64 / 3.6e6
            );
        }
    }
    if !per_tenant {
        return out;
    }
    family(&mut out, "gantry_tenant_cost_total", "counter", &format!("Money accrued per tenant, flavor and kind (guaranteed, borrowed; idle is the allocated-but-idle part of them), in {}.", view.currency));
    for (t, f, s) in cost {
        for (kind, micros) in
            [("guaranteed", s.guaranteed_cost), ("borrowed", s.borrowed_cost), ("idle", s.idle_cost)]
        {
            let _ = writeln!(
                out,
                "gantry_tenant_cost_total{{tenant=\"{}\",flavor=\"{}\",kind=\"{kind}\"}} {}",
                escape(t),
                escape(f),
                micros as f64 / 1e6
            );
        }
    }
    family(
        &mut out,
        "gantry_tenant_usage_hours_total",
        "counter",
        "Unit-hours accrued per tenant, flavor and kind (GPU-hours; core-hours for cpu).",
    );
    for (t, f, s) in cost {
        for (kind, ms) in [("guaranteed", s.guaranteed), ("borrowed", s.borrowed), ("idle", s.idle)] {
            let _ = writeln!(
                out,
                "gantry_tenant_usage_hours_total{{tenant=\"{}\",flavor=\"{}\",kind=\"{kind}\"}} {}",
                escape(t),
                escape(f),
                ms as f64 / 3.6e6
            );
        }
    }
    family(&mut out, "gantry_tenant_budget_gpu_hours", "gauge", "Monthly GPU-hour budget per tenant.");
    family(
        &mut out,
        "gantry_tenant_budget_used_gpu_hours",
        "gauge",
        "GPU-hours used this month (UTC) per tenant with a budget.",
    );
    for t in &view.tenants {
        if let Some(b) = &t.budget {
            let _ = writeln!(
                out,
                "gantry_tenant_budget_gpu_hours{{tenant=\"{}\"}} {}",
                escape(&t.name),
                b.gpu_hours_per_month
            );
            let _ = writeln!(
                out,
                "gantry_tenant_budget_used_gpu_hours{{tenant=\"{}\"}} {}",
                escape(&t.name),
                b.used_gpu_hours
            );
        }
    }
    if with_queue {
        queue(&mut out, view);
    }
    out
}

/// What the writers sent since start: is the ledger still fed? (`gantry_quota_api_*`)
#[derive(Default)]
pub struct Ingest {
    /// Per source (`scheduler`: accruals, `view`: the queue's view, `node-agent`: idle time,
    /// `notebook-stops`: notebooks stopped for idle GPUs, rare by nature, so no feed to alert on):
    /// accepted writes, new records, unix seconds of the last write.
    sources: BTreeMap<&'static str, (u64, u64, i64)>,
    /// Idle lines charged to nobody, per reason.
    skipped: BTreeMap<&'static str, u64>,
}

impl Ingest {
    pub fn wrote(&mut self, source: &'static str, new: usize, now: i64) {
        let e = self.sources.entry(source).or_default();
        e.0 += 1;
        e.1 += new as u64;
        e.2 = now;
    }

    pub fn skipped(&mut self, lines: &[Skipped]) {
        for s in lines {
            *self.skipped.entry(s.reason).or_default() += 1;
        }
    }

    pub fn render(&self, out: &mut String) {
        type Read = fn(&(u64, u64, i64)) -> f64;
        let per_source: [(&str, &str, &str, Read); 3] = [
            (
                "gantry_quota_api_writes_total",
                "counter",
                "Writes accepted per source (scheduler: accruals; view: the queue; node-agent: idle time; notebook-stops: notebooks stopped for idle GPUs).",
                |s| s.0 as f64,
            ),
            (
                "gantry_quota_api_records_written_total",
                "counter",
                "New ledger records per source (retries of records already there are not counted).",
                |s| s.1 as f64,
            ),
            (
                "gantry_quota_api_last_write_timestamp_seconds",
                "gauge",
                "When each source last wrote (unix seconds); alert when it stops.",
                |s| s.2 as f64,
            ),
        ];
        for (name, kind, help, get) in per_source {
            family(out, name, kind, help);
            for (source, s) in &self.sources {
                let _ = writeln!(out, "{name}{{source=\"{source}\"}} {}", get(s));
            }
        }
        family(out, "gantry_quota_api_idle_lines_skipped_total", "counter", "Idle-time lines charged to nobody: no-tenant (a namespace no tenant owns) or no-flavor (a GPU model no flavor names).");
        for (reason, n) in &self.skipped {
            let _ = writeln!(out, "gantry_quota_api_idle_lines_skipped_total{{reason=\"{reason}\"}} {n}");
        }
    }
}

/// The scheduler leader's queue families, from the view (milli-units, as it writes them).
fn queue(out: &mut String, view: &View) {
    let milli = |x: f64| (x * 1000.0).round() as i64;
    type Read = fn(&QuotaView) -> f64;
    let per_flavor: [(&str, &str, Read); 3] = [
        (
            "gantry_tenant_usage_milli",
            "Quota in use per tenant and flavor, in milli-GPU (milli-CPU for cpu).",
            |q| q.used,
        ),
        (
            "gantry_tenant_nominal_milli",
            "Nominal quota per tenant and flavor, in milli-GPU (milli-CPU for cpu).",
            |q| q.nominal,
        ),
        ("gantry_tenant_borrowed_milli", "Quota in use above nominal, borrowed from the cohort.", |q| {
            q.borrowed
        }),
    ];
    for (name, help, get) in per_flavor {
        family(out, name, "gauge", help);
        for t in &view.tenants {
            for q in &t.quotas {
                let _ = writeln!(
                    out,
                    "{name}{{tenant=\"{}\",flavor=\"{}\"}} {}",
                    escape(&t.name),
                    escape(&q.flavor),
                    milli(get(q))
                );
            }
        }
    }
    family(out, "gantry_queue_pending_workloads", "gauge", "Workloads waiting in each tenant's queue.");
    for t in &view.tenants {
        let _ =
            writeln!(out, "gantry_queue_pending_workloads{{tenant=\"{}\"}} {}", escape(&t.name), t.pending);
    }
    family(out, "gantry_queue_running_workloads", "gauge", "Admitted workloads per tenant.");
    for t in &view.tenants {
        let _ =
            writeln!(out, "gantry_queue_running_workloads{{tenant=\"{}\"}} {}", escape(&t.name), t.running);
    }
}
