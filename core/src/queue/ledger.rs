//! Usage accrual: what each tenant held of each flavor, for how long, guaranteed or borrowed.
//!
//! Usage is piecewise constant between admissions and releases, so every change closes an
//! interval and emits one [`Accrual`] with integer milli-unit-seconds. Intervals are also cut at
//! calendar month starts, so monthly budgets and invoices add up records without pro-rating.
//! Money is derived from the integer totals at the end ([`cost_micros`]), so sums never drift.
//!
//! A tenant's use may be split below it by [`Charge`] (the pipeline run its workloads belong to):
//! the meter keeps the part of its usage each charge holds, and a closing interval emits one
//! accrual per part, the tenant's guaranteed and borrowed time apportioned to the parts by their
//! usage ([`apportion`]), so the parts add up exactly to the one accrual the tenant would have
//! had without charges. An accrual stays a small `Copy` value: it names its charge by an index
//! into the table of the records closed since the last drain ([`Ledger::drain_charged`]).

use super::workload::Charge;
use crate::tenancy::{next_month_start, FlavorId, Milli, Seconds, TenantId};
use serde::Serialize;
use std::sync::Arc;

/// One closed interval of a tenant's use of a flavor (or of the part of it one charge held).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Accrual {
    pub tenant: TenantId,
    pub flavor: FlavorId,
    pub start: Seconds,
    pub end: Seconds,
    /// Milli-unit-seconds within the tenant's nominal quota.
    pub guaranteed: u64,
    /// Milli-unit-seconds above it (borrowed from the cohort).
    pub borrowed: u64,
    /// Price per unit-hour in micro-units of the currency, at the time of use.
    pub price_micros: u64,
    /// What this part was charged to below the tenant, as an index into the charges of the batch
    /// it was drained with ([`Accruals::charge`]); `None`: the tenant only.
    pub charge: Option<ChargeId>,
}

/// Index of an accrual's [`Charge`] in the batch it was drained with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ChargeId(pub u32);

/// Accruals taken from the ledger with the charges they name.
#[derive(Clone, Debug, Default)]
pub struct Accruals {
    pub records: Vec<Accrual>,
    charges: Vec<Arc<Charge>>,
}

impl Accruals {
    /// What `a` (one of these records) is charged to below its tenant.
    pub fn charge(&self, a: &Accrual) -> Option<&Charge> {
        a.charge.and_then(|c| self.charges.get(c.0 as usize)).map(|c| c.as_ref())
    }
}

impl std::ops::Deref for Accruals {
    type Target = [Accrual];
    fn deref(&self) -> &[Accrual] {
        &self.records
    }
}

/// Accruals with a way to name their charges: [`Accruals`], or bare records (from
/// [`Ledger::drain`]) whose charges are not known.
pub trait Charged {
    fn accruals(&self) -> &[Accrual];
    /// What `a` is charged to below its tenant, when known.
    fn charge_of(&self, a: &Accrual) -> Option<&Charge>;
}

impl Charged for Accruals {
    fn accruals(&self) -> &[Accrual] {
        &self.records
    }
    fn charge_of(&self, a: &Accrual) -> Option<&Charge> {
        self.charge(a)
    }
}

impl Charged for [Accrual] {
    fn accruals(&self) -> &[Accrual] {
        self
    }
    fn charge_of(&self, _: &Accrual) -> Option<&Charge> {
        None
    }
}

impl Charged for Vec<Accrual> {
    fn accruals(&self) -> &[Accrual] {
        self
    }
    fn charge_of(&self, _: &Accrual) -> Option<&Charge> {
        None
    }
}

impl Accrual {
    pub fn total(&self) -> u64 {
        self.guaranteed + self.borrowed
    }
}

/// Cost in micro-units of `milli_seconds` at `price_micros` per unit-hour, rounded down.
pub fn cost_micros(milli_seconds: u128, price_micros: u64) -> u128 {
    milli_seconds * price_micros as u128 / (1000 * 3600)
}

/// `total` split in proportion to `weights`, rounded down, with the units left over given one
/// each to the largest remainders (ties: the earlier weight): the parts add up to `total`
/// exactly. All zero weights: everything to the first part.
pub fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        let mut out = vec![0; weights.len()];
        if let Some(first) = out.first_mut() {
            *first = total;
        }
        return out;
    }
    let mut out = Vec::with_capacity(weights.len());
    let mut rems = Vec::with_capacity(weights.len());
    let mut given: u64 = 0;
    for (i, &w) in weights.iter().enumerate() {
        let exact = u128::from(total) * u128::from(w);
        // Each part is at most `total`, so it fits.
        let part = (exact / sum) as u64;
        given += part;
        out.push(part);
        rems.push((exact % sum, i));
    }
    // Largest remainder first, then the earlier part: deterministic whatever the figures.
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rems.iter().take((total - given) as usize) {
        out[i] += 1;
    }
    out
}

#[derive(Clone, Debug, Default)]
struct Meter {
    usage: Milli,
    nominal: Milli,
    since: Seconds,
    /// The usage each charge holds, by charge (the rest of `usage` is charged to the tenant
    /// only); a charge leaves when its usage is back to 0, so the meter holds only what runs.
    parts: Vec<(Arc<Charge>, Milli)>,
}

/// Open meters per (tenant, flavor) and the records closed so far.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    meters: Vec<Meter>,
    flavors: usize,
    prices: Vec<u64>,
    records: Vec<Accrual>,
    /// The charges the undrained records name, by [`ChargeId`].
    charges: Vec<Arc<Charge>>,
    /// Milli-GPU-seconds of GPU flavors per tenant in the current month, closed intervals only.
    month_gpu: Vec<u64>,
    month_start: Seconds,
    month_end: Seconds,
    gpu_flavor: Vec<bool>,
}

impl Ledger {
    /// `prices[t * flavors + f]`; `nominal` likewise; `gpu_flavor[f]` is false for `cpu`.
    pub fn new(
        flavors: usize,
        nominal: Vec<Milli>,
        prices: Vec<u64>,
        gpu_flavor: Vec<bool>,
        now: Seconds,
    ) -> Self {
        let meters =
            nominal.iter().map(|&n| Meter { usage: 0, nominal: n, since: now, parts: Vec::new() }).collect();
        let tenants = nominal.len() / flavors.max(1);
        let month_end = next_month_start(now);
        Ledger {
            meters,
            flavors,
            prices,
            records: Vec::new(),
            charges: Vec::new(),
            month_gpu: vec![0; tenants],
            month_start: now,
            month_end,
            gpu_flavor,
        }
    }

    /// Sets the usage of a (tenant, flavor) from `now` on, closing the interval before it.
    pub fn set(&mut self, tenant: TenantId, f: FlavorId, usage: Milli, now: Seconds) {
        self.set_charged(tenant, f, usage, None, now);
    }

    /// As [`Ledger::set`], and the part of `usage` that `part`'s charge holds changes by its
    /// delta (a workload of that charge starting or stopping). The tenant's figures are what
    /// `set` gives; charges only split them.
    pub fn set_charged(
        &mut self,
        tenant: TenantId,
        f: FlavorId,
        usage: Milli,
        part: Option<(&Charge, i64)>,
        now: Seconds,
    ) {
        self.close(tenant, f, now);
        let m = &mut self.meters[tenant * self.flavors + f];
        m.usage = usage;
        let Some((charge, delta)) = part else { return };
        match m.parts.binary_search_by(|(c, _)| c.as_ref().cmp(charge)) {
            Ok(i) => {
                let held = m.parts[i].1.saturating_add_signed(delta);
                if held == 0 {
                    m.parts.remove(i);
                } else {
                    m.parts[i].1 = held;
                }
            }
            Err(i) if delta > 0 => m.parts.insert(i, (Arc::new(charge.clone()), delta as Milli)),
            Err(_) => {}
        }
    }

    fn close(&mut self, tenant: TenantId, f: FlavorId, now: Seconds) {
        let i = tenant * self.flavors + f;
        let (usage, nominal, since) = (self.meters[i].usage, self.meters[i].nominal, self.meters[i].since);
        let mut start = since;
        if start < now && usage > 0 {
            // Taken out while the records are pushed, and put back: no copy of the parts.
            let parts = std::mem::take(&mut self.meters[i].parts);
            while start < now {
                let end = now.min(next_month_start(start));
                self.emit(tenant, f, usage, nominal, &parts, start, end);
                start = end;
            }
            self.meters[i].parts = parts;
        }
        self.meters[i].since = now.max(since);
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        tenant: TenantId,
        f: FlavorId,
        usage: Milli,
        nominal: Milli,
        parts: &[(Arc<Charge>, Milli)],
        start: Seconds,
        end: Seconds,
    ) {
        if start >= self.month_end {
            self.month_start = month_floor(start);
            self.month_end = next_month_start(start);
            self.month_gpu.iter_mut().for_each(|u| *u = 0);
        }
        let dt = (end - start) as u64;
        let g = usage.min(nominal);
        let rec = Accrual {
            tenant,
            flavor: f,
            start,
            end,
            guaranteed: g * dt,
            borrowed: (usage - g) * dt,
            price_micros: self.prices[tenant * self.flavors + f],
            charge: None,
        };
        if self.gpu_flavor[f] && start >= self.month_start {
            self.month_gpu[tenant] += rec.total();
        }
        if parts.is_empty() {
            self.records.push(rec);
            return;
        }
        // The tenant only first, then the charges in their order: weights are usages.
        let charged: Milli = parts.iter().map(|(_, u)| *u).sum();
        let mut weights = vec![usage.saturating_sub(charged)];
        weights.extend(parts.iter().map(|(_, u)| *u));
        let gs = apportion(rec.guaranteed, &weights);
        let bs = apportion(rec.borrowed, &weights);
        let charges = std::iter::once(None).chain(parts.iter().map(|(c, _)| Some(c)));
        for ((charge, guaranteed), borrowed) in charges.zip(gs).zip(bs) {
            if guaranteed == 0 && borrowed == 0 {
                continue;
            }
            let charge = charge.map(|c| {
                // The same charge closed twice in a row (a month start) is named once.
                if !self.charges.last().is_some_and(|l| Arc::ptr_eq(l, c)) {
                    self.charges.push(c.clone());
                }
                ChargeId(self.charges.len() as u32 - 1)
            });
            self.records.push(Accrual { guaranteed, borrowed, charge, ..rec });
        }
    }

    /// New nominal quotas and prices (indexed as in [`Ledger::new`]) from `now` on; the open
    /// intervals are closed at the old ones.
    pub fn retarget(&mut self, nominal: Vec<Milli>, prices: Vec<u64>, now: Seconds) {
        self.close_all(now);
        for (m, n) in self.meters.iter_mut().zip(nominal) {
            m.nominal = n;
        }
        self.prices = prices;
    }

    /// Closes every open meter at `now` (call before reading totals).
    pub fn close_all(&mut self, now: Seconds) {
        for i in 0..self.meters.len() {
            self.close(i / self.flavors, i % self.flavors, now);
        }
    }

    /// GPU milli-seconds the tenant has used this month up to `now`, open intervals included.
    pub fn month_gpu_use(&self, tenant: TenantId, now: Seconds) -> u64 {
        let closed = if now >= self.month_end { 0 } else { self.month_gpu[tenant] };
        let this_month = month_floor(now);
        let open: u64 = (0..self.flavors)
            .filter(|&f| self.gpu_flavor[f])
            .map(|f| {
                let m = &self.meters[tenant * self.flavors + f];
                m.usage * (now - m.since.max(this_month)).max(0) as u64
            })
            .sum();
        closed + open
    }

    /// Takes the records closed so far, without their charges' names (the simulator's totals).
    pub fn drain(&mut self) -> Vec<Accrual> {
        self.charges.clear();
        std::mem::take(&mut self.records)
    }

    /// Takes the records closed so far with the charges they name (a live service writes them
    /// to its durable ledger).
    pub fn drain_charged(&mut self) -> Accruals {
        Accruals { records: std::mem::take(&mut self.records), charges: std::mem::take(&mut self.charges) }
    }

    /// What a record not yet drained is charged to below its tenant.
    pub fn charge(&self, a: &Accrual) -> Option<&Charge> {
        a.charge.and_then(|c| self.charges.get(c.0 as usize)).map(|c| c.as_ref())
    }
    pub fn records(&self) -> &[Accrual] {
        &self.records
    }
}

/// Start of the calendar month containing `t`.
fn month_floor(t: Seconds) -> Seconds {
    let (y, m) = crate::tenancy::civil_month(t);
    crate::tenancy::days_from_civil(y, m, 1) * 86400
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::days_from_civil;

    #[test]
    fn intervals_split_into_guaranteed_and_borrowed_and_at_month_starts() {
        let dec1 = days_from_civil(2026, 12, 1) * 86400;
        let mut l = Ledger::new(1, vec![2000], vec![2_000_000], vec![true], dec1 - 3600);
        l.set(0, 0, 3000, dec1 - 3600);
        l.set(0, 0, 1000, dec1 + 7200);
        l.close_all(dec1 + 10800);
        let r = l.drain();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].guaranteed, r[0].borrowed), (2000 * 3600, 1000 * 3600));
        assert_eq!((r[1].start, r[1].end), (dec1, dec1 + 7200));
        assert_eq!(r[2].guaranteed, 1000 * 3600);
        let total: u64 = r.iter().map(Accrual::total).sum();
        assert_eq!(total, 3000 * 3 * 3600 + 1000 * 3600);
        // 3 GPUs for 3 hours and 1 GPU for 1 hour: 10 GPU-hours at 2.00.
        let cost: u128 = r.iter().map(|a| cost_micros(a.total() as u128, a.price_micros)).sum();
        assert_eq!(cost, 20_000_000);
        assert_eq!(l.month_gpu_use(0, dec1 + 10800), 3000 * 7200 + 1000 * 3600);
    }

    fn run(name: &str) -> Charge {
        Charge { run: name.into(), experiment: None, pipeline: Some("train".into()) }
    }

    #[test]
    fn apportion_adds_up_and_breaks_ties_in_order() {
        assert_eq!(apportion(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(apportion(10, &[0, 0]), vec![10, 0]);
        assert_eq!(apportion(7, &[0, 2, 5]), vec![0, 2, 5]);
        assert_eq!(
            apportion(u64::MAX, &[u64::MAX, 1]).iter().map(|&v| v as u128).sum::<u128>(),
            u64::MAX as u128
        );
        assert_eq!(apportion(0, &[]), Vec::<u64>::new());
    }

    #[test]
    fn a_tenants_interval_is_split_by_charge_in_proportion_to_usage() {
        // Quota 2 GPUs; run a holds 1, run b holds 2, 1 more is the tenant's own: 4 in use, 2
        // guaranteed and 2 borrowed, for an hour.
        let mut l = Ledger::new(1, vec![2000], vec![3_000_000], vec![true], 0);
        let (a, b) = (run("a"), run("b"));
        l.set_charged(0, 0, 1000, Some((&a, 1000)), 0);
        l.set_charged(0, 0, 3000, Some((&b, 2000)), 0);
        l.set(0, 0, 4000, 0);
        l.set_charged(0, 0, 2000, Some((&b, -2000)), 3600);
        l.close_all(7200);
        let r = l.drain_charged();
        let figures: Vec<_> = r
            .iter()
            .map(|x| (r.charge(x).map(|c| c.run.as_str()), x.start, x.guaranteed, x.borrowed))
            .collect();
        assert_eq!(
            figures,
            vec![
                (None, 0, 500 * 3600, 500 * 3600),
                (Some("a"), 0, 500 * 3600, 500 * 3600),
                (Some("b"), 0, 1000 * 3600, 1000 * 3600),
                // b has left: the rest is split between the tenant and a, all within quota.
                (None, 3600, 1000 * 3600, 0),
                (Some("a"), 3600, 1000 * 3600, 0),
            ]
        );
        // b's part is gone from the meter once it holds nothing.
        assert!(l.meters[0].parts.iter().all(|(c, _)| c.run == "a"));
    }

    proptest::proptest! {
        /// Whatever the charges, each tenant's records of an interval add up exactly to the one
        /// record the same usage gives without charges, and the month's GPU use is the same.
        #[test]
        fn charges_never_change_a_tenants_figures(
            ops in proptest::collection::vec((0usize..2, 0usize..2, 0usize..4, 1u64..5000, proptest::bool::ANY, 0i64..5000), 1..60),
            nominal in proptest::collection::vec(0u64..6000, 4),
        ) {
            let charges = [None, Some(run("a")), Some(run("b")), Some(Charge { run: "c".into(), experiment: Some("e".into()), pipeline: None })];
            let start = crate::tenancy::days_from_civil(2026, 11, 30) * 86400;
            let prices = vec![1_000_000, 2_000_000, 3_000_000, 4_000_000];
            let gpu = vec![true, false];
            let mut split = Ledger::new(2, nominal.clone(), prices.clone(), gpu.clone(), start);
            let mut whole = Ledger::new(2, nominal, prices, gpu, start);
            // What each (tenant, flavor, charge) holds, so that releases never go below zero.
            let mut held = std::collections::HashMap::new();
            let mut usage = [0u64; 4];
            let mut now = start;
            for (t, f, c, amount, add, dt) in ops {
                now += dt * 37;
                let h: &mut u64 = held.entry((t, f, c)).or_default();
                let delta = if add { amount as i64 } else { -(amount.min(*h) as i64) };
                *h = h.saturating_add_signed(delta);
                let u = &mut usage[t * 2 + f];
                *u = u.saturating_add_signed(delta);
                split.set_charged(t, f, *u, charges[c].as_ref().map(|c| (c, delta)), now);
                whole.set(t, f, *u, now);
            }
            now += 86_400 * 3;
            split.close_all(now);
            whole.close_all(now);
            proptest::prop_assert_eq!(split.month_gpu_use(0, now), whole.month_gpu_use(0, now));
            proptest::prop_assert_eq!(split.month_gpu_use(1, now), whole.month_gpu_use(1, now));
            let mut sums = std::collections::BTreeMap::new();
            for r in split.drain() {
                let e: &mut (u64, u64) = sums.entry((r.tenant, r.flavor, r.start, r.end)).or_default();
                e.0 += r.guaranteed;
                e.1 += r.borrowed;
            }
            let expected: std::collections::BTreeMap<_, _> = whole
                .drain()
                .into_iter()
                .map(|r| ((r.tenant, r.flavor, r.start, r.end), (r.guaranteed, r.borrowed)))
                .collect();
            proptest::prop_assert_eq!(sums, expected);
        }
    }
}
