//! Quota accounting over the cohort tree, per flavor.
//!
//! Tenants are the leaves and cohorts the inner nodes. The rules follow Kueue's hierarchical
//! cohorts, so platform teams who know Kueue get the numbers they expect:
//!
//! - a node's *subtree quota* is its own nominal quota (cohorts have none) plus what each child
//!   puts into the pool: the child's subtree quota minus what the child keeps for itself;
//! - a child keeps (*guarantees* itself) `subtree quota − lending limit` when it has a lending
//!   limit, and nothing otherwise;
//! - a node's usage in its parent is the part of its usage above what it keeps;
//! - what a tenant can still take is what it keeps and does not use, plus what its parent can
//!   give, capped by its borrowing limit.
//!
//! Amounts are signed milli-units so that intermediate differences never wrap.

use crate::tenancy::{FlavorId, Milli, Tenancy, TenantId};

#[derive(Clone, Debug)]
struct QNode {
    parent: Option<usize>,
    /// Per flavor.
    nominal: Vec<i64>,
    borrowing_limit: Vec<Option<i64>>,
    lending_limit: Vec<Option<i64>>,
    subtree: Vec<i64>,
    usage: Vec<i64>,
}

impl QNode {
    fn guaranteed(&self, f: FlavorId) -> i64 {
        self.lending_limit[f].map_or(0, |l| (self.subtree[f] - l).max(0))
    }
    fn in_parent(&self, f: FlavorId) -> i64 {
        (self.usage[f] - self.guaranteed(f)).max(0)
    }
}

/// Usage and limits of every tenant and cohort. Tenants are nodes `0..tenants`, cohorts follow.
#[derive(Clone, Debug)]
pub struct QuotaTree {
    nodes: Vec<QNode>,
    tenants: usize,
    /// Usage of all tenants together, per flavor.
    total: Vec<i64>,
}

impl QuotaTree {
    pub fn new(t: &Tenancy) -> Self {
        let nf = t.flavors.len();
        let nt = t.tenants.len();
        let mut nodes: Vec<QNode> = t
            .tenants
            .iter()
            .map(|tenant| QNode {
                parent: tenant.cohort.map(|c| nt + c),
                nominal: tenant.quotas.iter().map(|q| q.nominal as i64).collect(),
                borrowing_limit: tenant.quotas.iter().map(|q| q.borrowing_limit.map(|x| x as i64)).collect(),
                lending_limit: tenant.quotas.iter().map(|q| q.lending_limit.map(|x| x as i64)).collect(),
                subtree: vec![0; nf],
                usage: vec![0; nf],
            })
            .collect();
        nodes.extend(t.cohorts.iter().map(|c| QNode {
            parent: c.parent.map(|p| nt + p),
            nominal: vec![0; nf],
            borrowing_limit: vec![None; nf],
            lending_limit: vec![None; nf],
            subtree: vec![0; nf],
            usage: vec![0; nf],
        }));
        let mut tree = QuotaTree { nodes, tenants: nt, total: vec![0; nf] };
        tree.compute_subtree();
        tree
    }

    /// Subtree quotas, children before parents. The file loader has refused cohort cycles, so
    /// every chain ends; the depth bound only protects against a hand-built bad tenancy.
    fn compute_subtree(&mut self) {
        let n = self.nodes.len();
        let depth = |mut i: usize| {
            let mut d = 0;
            while let Some(p) = self.nodes[i].parent {
                i = p;
                d += 1;
                if d > n {
                    break;
                }
            }
            d
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(depth(i)));
        for &i in &order {
            let own = self.nodes[i].nominal.clone();
            self.nodes[i].subtree = own;
        }
        for &i in &order {
            if let Some(p) = self.nodes[i].parent {
                for f in 0..self.nodes[i].subtree.len() {
                    let give = self.nodes[i].subtree[f] - self.nodes[i].guaranteed(f);
                    self.nodes[p].subtree[f] += give;
                }
            }
        }
    }

    /// Adds `delta` (may be negative) to a tenant's usage of a flavor and to every cohort above.
    pub fn add(&mut self, tenant: TenantId, f: FlavorId, delta: i64) {
        self.total[f] += delta;
        let mut i = tenant;
        let mut delta = delta;
        loop {
            let before = self.nodes[i].in_parent(f);
            self.nodes[i].usage[f] += delta;
            let Some(p) = self.nodes[i].parent else { break };
            delta = self.nodes[i].in_parent(f) - before;
            if delta == 0 {
                break;
            }
            i = p;
        }
    }

    /// How much more of flavor `f` the tenant can take now.
    pub fn available(&self, tenant: TenantId, f: FlavorId) -> i64 {
        self.available_at(tenant, f)
    }

    fn available_at(&self, i: usize, f: FlavorId) -> i64 {
        let n = &self.nodes[i];
        let Some(p) = n.parent else { return n.subtree[f] - n.usage[f] };
        let local = (n.guaranteed(f) - n.usage[f]).max(0);
        let mut from_parent = self.available_at(p, f);
        if let Some(bl) = n.borrowing_limit[f] {
            let stored = n.subtree[f] - n.guaranteed(f);
            let used = n.in_parent(f);
            from_parent = from_parent.min(stored - used + bl);
        }
        local + from_parent.max(0)
    }

    /// The most of flavor `f` the tenant could ever hold: what it could take with nothing else
    /// running.
    pub fn ceiling(&self, tenant: TenantId, f: FlavorId) -> i64 {
        let mut empty = self.clone();
        for n in &mut empty.nodes {
            n.usage.iter_mut().for_each(|u| *u = 0);
        }
        empty.available(tenant, f)
    }

    pub fn usage(&self, tenant: TenantId, f: FlavorId) -> Milli {
        self.nodes[tenant].usage[f].max(0) as Milli
    }
    pub fn nominal(&self, tenant: TenantId, f: FlavorId) -> Milli {
        self.nodes[tenant].nominal[f] as Milli
    }
    /// Usage above nominal: what the tenant borrows.
    pub fn borrowed(&self, tenant: TenantId, f: FlavorId) -> Milli {
        (self.nodes[tenant].usage[f] - self.nodes[tenant].nominal[f]).max(0) as Milli
    }
    /// Usage of all tenants together.
    pub fn total_usage(&self, f: FlavorId) -> Milli {
        self.total[f].max(0) as Milli
    }
    pub fn tenants(&self) -> usize {
        self.tenants
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::{Cohort, Flavor, FlavorQuota, Tenant, Timing};

    /// (nominal, borrowing limit, lending limit, cohort) per tenant.
    type TenantQuota = (u64, Option<u64>, Option<u64>, Option<usize>);

    fn tenancy(quotas: &[TenantQuota], cohorts: &[Option<usize>]) -> Tenancy {
        Tenancy {
            flavors: vec![Flavor { name: "A100".into(), price_micros: 0, sharing: false }],
            cohorts: cohorts
                .iter()
                .enumerate()
                .map(|(i, &parent)| Cohort { name: format!("c{i}"), parent })
                .collect(),
            tenants: quotas
                .iter()
                .enumerate()
                .map(|(i, &(nominal, borrowing_limit, lending_limit, cohort))| Tenant {
                    name: format!("t{i}"),
                    namespaces: vec![format!("t{i}")],
                    cohort,
                    quotas: vec![FlavorQuota { nominal, borrowing_limit, lending_limit }],
                    weight: 1.0,
                    allowed_classes: vec![],
                    kind_classes: [0; 5],
                    prices_micros: vec![0],
                    budget: None,
                    preemption: Default::default(),
                    idle_notebooks: None,
                })
                .collect(),
            priority_classes: vec![],
            timing: Timing::default(),
            currency: "USD".into(),
        }
    }

    #[test]
    fn a_tenant_alone_has_its_nominal_quota() {
        let mut q = QuotaTree::new(&tenancy(&[(8000, None, None, None)], &[]));
        assert_eq!(q.available(0, 0), 8000);
        q.add(0, 0, 3000);
        assert_eq!(q.available(0, 0), 5000);
        assert_eq!(q.ceiling(0, 0), 8000);
    }

    #[test]
    fn borrowing_and_lending_limits_in_a_cohort() {
        // t0 lends at most 2 of its 8; t1 may borrow at most 1 above its 4.
        let t = tenancy(
            &[
                (8000, None, Some(2000), Some(0)),
                (4000, Some(1000), None, Some(0)),
                (4000, None, None, Some(0)),
            ],
            &[None],
        );
        let mut q = QuotaTree::new(&t);
        // Pool: 2 from t0, 4 from t1, 4 from t2.
        assert_eq!(q.available(0, 0), 6000 + 10000);
        assert_eq!(q.available(1, 0), 5000);
        assert_eq!(q.available(2, 0), 10000);
        // t2 borrows everything it can reach: its 4, t1's 4 and t0's lendable 2.
        q.add(2, 0, 10000);
        assert_eq!(q.available(0, 0), 6000, "t0 keeps the 6 it does not lend");
        assert_eq!(q.available(1, 0), 0, "t1's quota is lent out until reclaimed");
        assert_eq!(q.borrowed(2, 0), 6000);
        q.add(2, 0, -10000);
        assert_eq!(q.available(1, 0), 5000);
    }

    #[test]
    fn a_parent_cohort_lends_between_child_cohorts() {
        // root c0 with children c1 {t0} and c2 {t1}.
        let t =
            tenancy(&[(4000, None, None, Some(1)), (4000, None, None, Some(2))], &[None, Some(0), Some(0)]);
        let mut q = QuotaTree::new(&t);
        assert_eq!(q.available(0, 0), 8000);
        q.add(1, 0, 6000);
        assert_eq!(q.available(0, 0), 2000);
        assert_eq!(q.borrowed(1, 0), 2000);
    }

    #[test]
    fn strict_quota_caps_at_nominal() {
        let t = tenancy(&[(4000, None, None, Some(0)), (4000, None, None, Some(0))], &[None]).strict();
        let q = QuotaTree::new(&t);
        assert_eq!(q.available(0, 0), 4000);
        assert_eq!(q.ceiling(1, 0), 4000);
    }
}
