//! Idle-but-allocated GPU time, as the node agents measure it (`POST /internal/v1/idle`).
//!
//! Each node agent meters, per pass, how long each GPU held by a pod ran no kernel, sums that per
//! namespace and GPU model over fixed windows, and sends each closed window here. The quota API
//! turns those lines into ledger records with the view the scheduler last sent: the namespace's
//! tenant, the model's flavor (a GPU flavor is named after its model) and the tenant's price.
//! The node is part of each record's key, so a window sent twice is counted once, and the
//! agents' records never collide with the scheduler's.
//!
//! Idle time is part of the guaranteed and borrowed time the scheduler records; the API shows it
//! apart (hours and money) so platform teams see what reserved GPUs did nothing.

use gantry_api::quota::{IdleReport, Record};
use gantry_api::view::View;
use serde::Serialize;
use std::collections::BTreeMap;

/// A line not charged, and why.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub namespace: String,
    pub model: String,
    /// `no-tenant` or `no-flavor` (the label of `gantry_quota_api_idle_lines_skipped_total`).
    pub reason: &'static str,
    pub why: String,
}

/// Why a report from a node agent is refused as a whole (answered 400): nothing in it is charged,
/// so the agent must fix it before sending again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdleError {
    /// The report does not say which node sent it, and the node is part of every record's key.
    #[error("the report names no node; send the node agent's node name")]
    NoNode,
    /// A line's window is out of bounds (see [`crate::ledger::window_error`]).
    #[error("line {namespace}/{model} [{start}, {end}): {why}")]
    Window { namespace: String, model: String, start: i64, end: i64, why: String },
}

/// The ledger records of `report` under `view`, one per tenant, flavor and window (a tenant's
/// namespaces are summed), and the lines no tenant or flavor owns. Lines with no idle time make
/// no record.
pub fn records(view: &View, report: &IdleReport) -> Result<(Vec<Record>, Vec<Skipped>), IdleError> {
    if report.node.is_empty() {
        return Err(IdleError::NoNode);
    }
    let mut sums: BTreeMap<(&str, &str, i64, i64), (u64, u64)> = BTreeMap::new();
    let mut skipped = Vec::new();
    for l in &report.lines {
        if let Some(why) = crate::ledger::window_error(l.start, l.end, true) {
            return Err(IdleError::Window {
                namespace: l.namespace.clone(),
                model: l.model.clone(),
                start: l.start,
                end: l.end,
                why,
            });
        }
        let skip = |reason, why: String| Skipped {
            namespace: l.namespace.clone(),
            model: l.model.clone(),
            reason,
            why,
        };
        let Some(tenant) = view.tenants.iter().find(|t| t.namespaces.contains(&l.namespace)) else {
            skipped.push(skip(
                "no-tenant",
                format!("no tenant owns namespace {}; its idle time is not charged", l.namespace),
            ));
            continue;
        };
        let Some(flavor) = view.flavors.iter().find(|f| f.name == l.model) else {
            skipped.push(skip(
                "no-flavor",
                format!("no flavor is GPU model {}; add a GpuFlavor named after it to charge it", l.model),
            ));
            continue;
        };
        let price = tenant
            .quotas
            .iter()
            .find(|q| q.flavor == flavor.name)
            .map_or((flavor.price * 1e6).round() as u64, |q| q.price_micros);
        let e = sums.entry((&tenant.name, &flavor.name, l.start, l.end)).or_insert((0, price));
        e.0 = e.0.saturating_add(l.idle);
    }
    let records = sums
        .into_iter()
        .filter(|(_, (idle, _))| *idle > 0)
        .map(|((tenant, flavor, start, end), (idle, price_micros))| Record {
            tenant: tenant.to_string(),
            flavor: flavor.to_string(),
            start,
            end,
            guaranteed: 0,
            borrowed: 0,
            idle,
            price_micros,
            node: Some(report.node.clone()),
            run: None,
            experiment: None,
            pipeline: None,
        })
        .collect();
    Ok((records, skipped))
}
