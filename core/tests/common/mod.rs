//! Builders shared by the admission-queue tests: tenancies, clusters, queues and workloads, all
//! built by hand (no tenants-file parser), with quantities in whole GPUs unless named `milli`.

#![allow(dead_code)]

use gantry_core::model::{Cluster, ModelCatalog, ModelSet, Node, PodRequest};
use gantry_core::queue::{Mode, PodSet, Queue, Workload, WorkloadId};
use gantry_core::tenancy::{
    Budget, Cohort, Flavor, FlavorQuota, Kind, Milli, Seconds, Tenancy, Tenant, TenantId, Timing,
    WhenExhausted, MILLI_GPU_SECONDS_PER_GPU_HOUR,
};
use gantry_core::{PolicyKind, Scheduler};

/// 2026-11-01T00:00:00Z.
pub const NOV1: Seconds = 1_793_491_200;
/// 2026-12-01T00:00:00Z.
pub const DEC1: Seconds = NOV1 + 30 * 86_400;
/// 2027-01-01T00:00:00Z.
pub const JAN1: Seconds = DEC1 + 31 * 86_400;

/// Whole GPUs (or cores) in milli-units.
pub const fn g(n: u64) -> Milli {
    n * 1000
}

/// Whole GPUs in signed milli-units, as `QuotaTree::available` and `ceiling` return them.
pub const fn gi(n: i64) -> i64 {
    n * 1000
}

/// One tenant's quota of one flavor, in whole GPUs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Q {
    pub nominal: u64,
    pub borrow: Option<u64>,
    pub lend: Option<u64>,
}

impl Q {
    pub fn n(nominal: u64) -> Q {
        Q { nominal, borrow: None, lend: None }
    }
    pub fn borrow(mut self, limit: u64) -> Q {
        self.borrow = Some(limit);
        self
    }
    pub fn lend(mut self, limit: u64) -> Q {
        self.lend = Some(limit);
        self
    }
    pub fn milli(self) -> FlavorQuota {
        FlavorQuota {
            nominal: g(self.nominal),
            borrowing_limit: self.borrow.map(g),
            lending_limit: self.lend.map(g),
        }
    }
}

/// A fluent tenancy builder. Flavors are GPU models named like the cluster's nodes; there are no
/// priority classes, so every workload runs at its kind's built-in priority (serving 1000,
/// notebook 800, pipeline-step 500, training 300, batch 100) and the lowest priority is 0.
#[derive(Clone, Debug)]
pub struct TenancyBuilder {
    t: Tenancy,
}

impl TenancyBuilder {
    pub fn new(flavors: &[&str]) -> Self {
        TenancyBuilder {
            t: Tenancy {
                flavors: flavors
                    .iter()
                    .map(|n| Flavor { name: n.to_string(), price_micros: 1_000_000, sharing: false })
                    .collect(),
                cohorts: Vec::new(),
                tenants: Vec::new(),
                priority_classes: Vec::new(),
                timing: Timing::default(),
                currency: "USD".into(),
            },
        }
    }

    pub fn timing(mut self, reclaim_window: Seconds, min_runtime: Seconds) -> Self {
        self.t.timing = Timing { reclaim_window, min_runtime };
        self
    }

    /// A cohort, optionally under an already declared parent.
    pub fn cohort(mut self, name: &str, parent: Option<&str>) -> Self {
        let parent = parent.map(|p| self.cohort_id(p));
        self.t.cohorts.push(Cohort { name: name.into(), parent });
        self
    }

    /// A tenant with one quota per flavor (in flavor order), optionally in a declared cohort.
    pub fn tenant(mut self, name: &str, cohort: Option<&str>, quotas: &[Q]) -> Self {
        assert_eq!(quotas.len(), self.t.flavors.len(), "one quota per flavor for tenant {name}");
        let cohort = cohort.map(|c| self.cohort_id(c));
        self.t.tenants.push(Tenant {
            name: name.into(),
            namespaces: vec![name.into()],
            cohort,
            quotas: quotas.iter().map(|q| q.milli()).collect(),
            weight: 1.0,
            allowed_classes: Vec::new(),
            kind_classes: [0; 5],
            prices_micros: self.t.flavors.iter().map(|f| f.price_micros).collect(),
            budget: None,
            preemption: Default::default(),
            idle_notebooks: None,
        });
        self
    }

    pub fn weight(mut self, tenant: &str, weight: f64) -> Self {
        let t = self.tenant_id(tenant);
        self.t.tenants[t].weight = weight;
        self
    }

    pub fn budget(mut self, tenant: &str, gpu_hours: u64, when_exhausted: WhenExhausted) -> Self {
        let t = self.tenant_id(tenant);
        self.t.tenants[t].budget =
            Some(Budget { milli_gpu_seconds: gpu_hours * MILLI_GPU_SECONDS_PER_GPU_HOUR, when_exhausted });
        self
    }

    pub fn build(self) -> Tenancy {
        self.t
    }

    fn cohort_id(&self, name: &str) -> usize {
        self.t
            .cohorts
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("declare cohort {name} first"))
    }
    fn tenant_id(&self, name: &str) -> TenantId {
        self.t.tenant(name).unwrap_or_else(|| panic!("declare tenant {name} first"))
    }
}

/// Nodes with 64 cores, 512 GiB and `gpus` GPUs of `model`, in the order given. Models are
/// interned in order of first appearance, so list flavors in the same order.
pub fn cluster(nodes: &[(&str, u32)]) -> Cluster {
    let mut models = ModelCatalog::default();
    let nodes = nodes
        .iter()
        .enumerate()
        .map(|(i, &(model, gpus))| {
            let m = models.intern(model).expect("few models");
            Node::new(format!("n{i}"), 64_000, 512 * 1024, gpus, Some(m))
        })
        .collect();
    Cluster::new(models, nodes)
}

/// `count` nodes of `gpus` A100 GPUs each.
pub fn a100s(count: usize, gpus: u32) -> Cluster {
    cluster(&vec![("A100", gpus); count])
}

/// A queue placing with best-fit.
pub fn queue_with(tenancy: Tenancy, cluster: Cluster, mode: Mode, now: Seconds) -> Queue {
    let scheduler = Scheduler::new(PolicyKind::BestFit.build(&cluster, &[]));
    Queue::new(tenancy, cluster, scheduler, mode, now).expect("flavors name the cluster's models")
}

pub fn queue(tenancy: Tenancy, cluster: Cluster, now: Seconds) -> Queue {
    queue_with(tenancy, cluster, Mode::Quota, now)
}

/// A fluent workload builder; defaults: kind training, submitted at `NOV1`, strict gang.
#[derive(Clone, Debug)]
pub struct WB {
    w: Workload,
    min: Option<u32>,
}

impl WB {
    pub fn new(id: WorkloadId, tenant: TenantId) -> Self {
        WB {
            w: Workload {
                id,
                name: format!("w{id}"),
                tenant,
                kind: Kind::Training,
                priority_class: None,
                pod_sets: Vec::new(),
                min_members: 0,
                submitted: NOV1,
                models: None,
                expected_runtime: None,
                charge: None,
            },
            min: None,
        }
    }
    pub fn name(mut self, name: &str) -> Self {
        self.w.name = name.into();
        self
    }
    pub fn kind(mut self, kind: Kind) -> Self {
        self.w.kind = kind;
        self
    }
    pub fn at(mut self, submitted: Seconds) -> Self {
        self.w.submitted = submitted;
        self
    }
    /// `count` pods with `gpus` whole GPUs each (1 core per GPU, 1 GiB).
    pub fn gpus(self, count: u32, gpus: u32) -> Self {
        self.pods(count, PodRequest::whole_gpus(1000 * gpus, 1024, gpus))
    }
    /// `count` pods sharing `milli` of one GPU each.
    pub fn shared(self, count: u32, milli: u32) -> Self {
        self.pods(count, PodRequest::shared_gpu(500, 1024, milli))
    }
    pub fn pods(mut self, count: u32, request: PodRequest) -> Self {
        let name = format!("set{}", self.w.pod_sets.len());
        self.w.pod_sets.push(PodSet { name, count, request });
        self
    }
    pub fn min(mut self, min_members: u32) -> Self {
        self.min = Some(min_members);
        self
    }
    pub fn models(mut self, models: ModelSet) -> Self {
        self.w.models = Some(models);
        self
    }
    pub fn runtime(mut self, expected: Seconds) -> Self {
        self.w.expected_runtime = Some(expected);
        self
    }
    pub fn build(mut self) -> Workload {
        self.w.min_members = self.min.unwrap_or_else(|| self.w.members());
        self.w
    }
}

/// Ids of the admissions of a cycle, in order.
pub fn admitted_ids(out: &gantry_core::queue::CycleOutcome) -> Vec<WorkloadId> {
    out.admitted.iter().map(|a| a.workload).collect()
}

/// Ids of the running workloads, sorted.
pub fn running_ids(q: &Queue) -> Vec<WorkloadId> {
    let mut ids: Vec<WorkloadId> = q.running_workloads().map(|(w, _)| w.id).collect();
    ids.sort_unstable();
    ids
}

/// Submits, panicking with the refusal.
pub fn submit(q: &mut Queue, w: Workload, now: Seconds) {
    let id = w.id;
    if let Err(e) = q.submit(w, now) {
        panic!("workload {id} refused: {e}");
    }
}

/// Checks the queue's invariants plus the cluster/running-pod agreement, panicking with context.
pub fn assert_consistent(q: &Queue) {
    if let Err(e) = q.check_invariants() {
        panic!("invariant broken: {e}");
    }
    let pods: usize = q.running_workloads().map(|(_, r)| r.pods.len()).sum();
    assert_eq!(q.cluster().placed_pods(), pods, "placed pods vs running pods");
}
