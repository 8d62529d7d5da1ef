//! Usage accrual: what each tenant held of each flavor, for how long, guaranteed or borrowed.
//!
//! Usage is piecewise constant between admissions and releases, so every change closes an
//! interval and emits one [`Accrual`] with integer milli-unit-seconds. Intervals are also cut at
//! calendar month starts, so monthly budgets and invoices add up records without pro-rating.
//! Money is derived from the integer totals at the end ([`cost_micros`]), so sums never drift.

use crate::tenancy::{next_month_start, FlavorId, Milli, Seconds, TenantId};
use serde::Serialize;

/// One closed interval of a tenant's use of a flavor.
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

#[derive(Clone, Copy, Debug, Default)]
struct Meter {
    usage: Milli,
    nominal: Milli,
    since: Seconds,
}

/// Open meters per (tenant, flavor) and the records closed so far.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    meters: Vec<Meter>,
    flavors: usize,
    prices: Vec<u64>,
    records: Vec<Accrual>,
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
        let meters = nominal.iter().map(|&n| Meter { usage: 0, nominal: n, since: now }).collect();
        let tenants = nominal.len() / flavors.max(1);
        let month_end = next_month_start(now);
        Ledger {
            meters,
            flavors,
            prices,
            records: Vec::new(),
            month_gpu: vec![0; tenants],
            month_start: now,
            month_end,
            gpu_flavor,
        }
    }

    /// Sets the usage of a (tenant, flavor) from `now` on, closing the interval before it.
    pub fn set(&mut self, tenant: TenantId, f: FlavorId, usage: Milli, now: Seconds) {
        self.close(tenant, f, now);
        self.meters[tenant * self.flavors + f].usage = usage;
    }

    fn close(&mut self, tenant: TenantId, f: FlavorId, now: Seconds) {
        let i = tenant * self.flavors + f;
        let m = self.meters[i];
        let mut start = m.since;
        while start < now {
            let end = now.min(next_month_start(start));
            self.emit(tenant, f, m, start, end);
            start = end;
        }
        self.meters[i].since = now.max(m.since);
    }

    fn emit(&mut self, tenant: TenantId, f: FlavorId, m: Meter, start: Seconds, end: Seconds) {
        if m.usage == 0 {
            return;
        }
        if start >= self.month_end {
            self.month_start = month_floor(start);
            self.month_end = next_month_start(start);
            self.month_gpu.iter_mut().for_each(|u| *u = 0);
        }
        let dt = (end - start) as u64;
        let g = m.usage.min(m.nominal);
        let rec = Accrual {
            tenant,
            flavor: f,
            start,
            end,
            guaranteed: g * dt,
            borrowed: (m.usage - g) * dt,
            price_micros: self.prices[tenant * self.flavors + f],
        };
        if self.gpu_flavor[f] && start >= self.month_start {
            self.month_gpu[tenant] += rec.total();
        }
        self.records.push(rec);
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
                let m = self.meters[tenant * self.flavors + f];
                m.usage * (now - m.since.max(this_month)).max(0) as u64
            })
            .sum();
        closed + open
    }

    /// Takes the records closed so far (a live service writes them to its durable ledger).
    pub fn drain(&mut self) -> Vec<Accrual> {
        std::mem::take(&mut self.records)
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
}
