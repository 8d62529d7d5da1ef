//! Multi-tenant admission: per-tenant queues, quota with cohort borrowing, fair share, whole-gang
//! admission, preemption, usage accrual and explanations.
//!
//! [`Queue`] owns the cluster model and everything admitted on it. Drivers call
//! [`Queue::submit`] and [`Queue::finish`] as workloads come and go and then [`Queue::cycle`]
//! with their clock; the cycle decides what starts and what is preempted. The simulator drives it
//! on a virtual clock, the scheduler service on the wall clock; the code is the same.

pub mod explain;
mod gang;
pub mod ledger;
mod live;
mod preempt;
pub mod quota;
mod workload;

pub use explain::{Explanation, Reason};
pub use gang::{place_gang, GangMisfit};
pub use ledger::{cost_micros, Accrual, Accruals, ChargeId, Charged, Ledger};
pub use live::{LiveError, Restructure};
pub use preempt::RoomCheck;
pub use quota::QuotaTree;
pub use workload::{
    pod_id, Charge, PodSet, Workload, WorkloadId, EXTERNAL_POD_BIT, MAX_MEMBERS, MAX_WORKLOAD_ID,
};

use crate::model::{could_ever_fit, Cluster, Inconsistent, NodeId, Placement, PodRequest};
use crate::schedule::Scheduler;
use crate::tenancy::{FlavorId, FlavorMap, Milli, Seconds, Tenancy, TenantId, UnboundFlavor, WhenExhausted};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// How the queue orders and limits work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Quotas, borrowing as the tenancy allows, fair share and preemption.
    Quota,
    /// One queue in submission order, no quotas, no priorities, no preemption: the baseline. A
    /// workload that does not fit lets the next ones (up to [`SCAN_DEPTH`]) try, as Kueue's
    /// BestEffortFIFO does.
    Fifo,
}

/// Queue key: priority (highest first), then submission time, then id.
type Key = (Reverse<i32>, Seconds, WorkloadId);

/// A workload admitted on the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Running {
    pub at: Seconds,
    /// Admission order over the whole queue (several workloads may start at the same second).
    pub seq: u64,
    pub flavor: FlavorId,
    pub demand: Milli,
    /// Its priority class's value (what same-tenant preemption compares).
    pub priority: i32,
    /// Admitted under an exhausted `idle-only` budget: the first victim for any workload owed
    /// quota, and never a preemptor.
    pub opportunistic: bool,
    /// Admitted by reclaiming other tenants' work: within its tenant's nominal quota, and never
    /// taken by reclaim during this run (see the `preempt` module: no loops).
    pub reclaimer: bool,
    pub pods: Vec<(u64, PodRequest)>,
}

#[derive(Clone, Debug)]
enum State {
    Pending { reason: Reason },
    Running(Running),
}

#[derive(Clone, Debug)]
struct Entry {
    w: Workload,
    priority: i32,
    /// Hash of the member requests: the gang's shape, for per-cycle memos.
    shape: u64,
    state: State,
}

/// Hash of a gang's member requests.
fn shape_of(w: &Workload) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    w.member_requests(w.members()).hash(&mut h);
    h.finish()
}

/// A workload that started, and where its pods run.
#[derive(Clone, Debug, PartialEq)]
pub struct Admission {
    pub workload: WorkloadId,
    pub flavor: FlavorId,
    pub pods: Vec<(u64, Placement)>,
    /// Members started (below the member count when only `min_members` fit).
    pub members: u32,
}

/// A running workload stopped to make room, and the workload it made room for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preemption {
    pub victim: WorkloadId,
    pub by: WorkloadId,
    /// `true`: borrowed capacity reclaimed for a tenant within its nominal quota; `false`: a
    /// higher-priority workload of the same tenant.
    pub reclaim: bool,
}

/// What one cycle decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CycleOutcome {
    pub admitted: Vec<Admission>,
    /// Victims are back in their tenant's queue, with their original submission time.
    pub preempted: Vec<Preemption>,
}

/// Why a workload was refused at submission (or could not be taken back at its placements):
/// it can never run as asked. Each message says what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The workload's shape makes no sense ([`Workload::validate`]).
    #[error("{0}")]
    Invalid(String),
    #[error("workload {workload} names tenant #{tenant}, which does not exist")]
    NoTenant { workload: String, tenant: TenantId },
    #[error("workload id {0} is already queued or running")]
    Duplicate(WorkloadId),
    #[error(
        "tenant {tenant} may not use priority class {class}; use one of its classes or ask a platform admin to allow it"
    )]
    ClassNotAllowed { tenant: String, class: String },
    /// The tenant's monthly budget is spent and its rule is to refuse (the message gives the
    /// figures).
    #[error("{0}")]
    BudgetSpent(String),
    /// No node of any flavor the workload accepts could ever hold it.
    #[error("{0}")]
    NeverFits(String),
    /// More than the tenant may ever hold (nominal quota plus borrowing).
    #[error("{0}")]
    OverCeiling(String),
    /// A running workload cannot be taken back at the placements given ([`Queue::restore`]).
    #[error("{0}")]
    Unrestorable(String),
}

/// How many workloads of one tenant a cycle looks at past the last admission.
pub const SCAN_DEPTH: usize = 32;
/// How many of those, from the head, may preempt by priority (the most urgent and oldest work of
/// the tenant); any of them that has waited the reclaim window may reclaim.
pub const PREEMPT_DEPTH: usize = 4;

/// A running workload's place in its tenant's stack, bottom first: reclaimers (admitted within
/// nominal by reclaim, so that together they never exceed it), then by priority, highest first,
/// then in admission order. The top of the stack, above nominal, is the tenant's borrowed work:
/// its lowest-priority, most recent work, never a reclaimer. So reclaim never takes a
/// borrower's higher-priority work while its lower-priority work runs beyond its quota.
type StackKey = (bool, Reverse<i32>, u64, WorkloadId);

fn stack_key(r: &Running, id: WorkloadId) -> StackKey {
    (!r.reclaimer, Reverse(r.priority), r.seq, id)
}

/// Per (tenant, flavor), indexed `t * flavors + f`: the most the tenant could ever hold, its
/// nominal quota, and its price per GPU-hour in micro-units.
fn limits(tenancy: &Tenancy, quota: &QuotaTree) -> (Vec<i64>, Vec<Milli>, Vec<u64>) {
    let nf = tenancy.flavors.len();
    let pairs = || (0..tenancy.tenants.len()).flat_map(move |t| (0..nf).map(move |f| (t, f)));
    let ceilings = pairs().map(|(t, f)| quota.ceiling(t, f)).collect();
    let nominal = pairs().map(|(t, f)| quota.nominal(t, f)).collect();
    let prices = tenancy.tenants.iter().flat_map(|t| t.prices_micros.iter().copied()).collect();
    (ceilings, nominal, prices)
}

/// The multi-tenant admission state over one cluster.
pub struct Queue {
    pub tenancy: Tenancy,
    pub flavors: FlavorMap,
    mode: Mode,
    cluster: Cluster,
    scheduler: Scheduler,
    quota: QuotaTree,
    ledger: Ledger,
    entries: HashMap<WorkloadId, Entry>,
    /// Pending workloads per tenant (in FIFO mode, all in queue 0).
    queues: Vec<BTreeSet<Key>>,
    /// The same, oldest first, so that work past its reclaim window is looked at even when much
    /// more urgent work is queued ahead of it.
    by_age: Vec<BTreeSet<(Seconds, WorkloadId)>>,
    /// Running workloads per (tenant, flavor), from the most to the least protected (see
    /// [`StackKey`]): those that reach above nominal are the borrowed ones.
    stacks: Vec<BTreeSet<StackKey>>,
    /// Next admission sequence number.
    seq: u64,
    /// Nodes in service per flavor, in id order (GPU flavors: nodes of that model; `cpu`: all
    /// nodes).
    flavor_nodes: Vec<Vec<NodeId>>,
    /// Per flavor: capacity of its nodes in service, in milli-units.
    capacity: Vec<Milli>,
    /// Per flavor: what its nodes in service have free (milli-GPU, milli-CPU for `cpu`), exact,
    /// for a quick fit bound that stays right when nodes change under running work.
    room: Vec<Milli>,
    /// Per node: what it adds to `flavor_nodes`, `capacity`, `room` and `idle_hist` (see
    /// [`live::NodeIndex`]), so that a node can be taken out of them exactly when it changes.
    node_index: Vec<live::NodeIndex>,
    /// Per GPU flavor, its nodes in service by free GPU milli: the nodes a GPU pod could fit
    /// on are those with at least its GPUs free, so a placement looks at those only (on a busy
    /// cluster, a small part of the flavor's nodes).
    by_free: Vec<BTreeSet<(Milli, NodeId)>>,
    /// Per flavor, how many of its nodes have each count of idle (wholly free) GPUs: a quick
    /// necessary check before searching placements for whole-GPU gangs. Grows when a node with
    /// more GPUs than any before appears.
    idle_hist: Vec<Vec<u32>>,
    /// Cluster pod ids (with [`EXTERNAL_POD_BIT`]) of the pods placed that the queue does not
    /// manage.
    external: HashSet<u64>,
    /// Shapes (flavor, members) that found no placement since the flavor last freed capacity.
    failed: HashSet<(FlavorId, Vec<PodRequest>)>,
    /// (flavor, workload): flavors held for overdue owed workloads that found no room; borrowing
    /// on them waits (see `hold_for`).
    held: Vec<(FlavorId, WorkloadId)>,
    /// Placement attempts left for preemption in this cycle.
    preempt_budget: usize,
    /// (tenant, priority, flavor, members, which work may stop) for which preemption found no
    /// room this cycle.
    no_room: HashSet<(TenantId, i32, FlavorId, u64, preempt::Pass)>,
    /// Workloads stopped in this cycle: they are not started again in it (a victim restarted at
    /// once elsewhere would lose its progress for nothing).
    stopped: HashSet<WorkloadId>,
    /// Workloads started in this cycle: they are no victim in it (started and stopped at once,
    /// they would hold the room for nothing).
    started: HashSet<WorkloadId>,
    /// Running workloads that are no victim until the time given: the cluster refused to stop
    /// them (see [`Queue::shield`]).
    shielded: HashMap<WorkloadId, Seconds>,
    /// Running workloads per (tenant, flavor) by priority: how many, and their demand. Tells
    /// cheaply how much a tenant's higher-priority work could free by preempting.
    running_priorities: Vec<std::collections::BTreeMap<i32, (u32, Milli)>>,
    /// The most each tenant could ever hold of each flavor.
    ceilings: Vec<i64>,
    /// Something changed since the last cycle (a submission, a release, a clock deadline).
    dirty: bool,
    /// Earliest time a time-based rule (reclaim window, minimum runtime, new month) may change a
    /// decision.
    wake: Option<Seconds>,
    now: Seconds,
}

impl Queue {
    /// A queue over `cluster` (usually empty) with the given tenancy, placement and mode. `now`
    /// starts the ledger's meters. Fails when a GPU flavor names a model the cluster does not
    /// know (see [`Tenancy::bind`]); for a live cluster whose nodes of some model may come later,
    /// see [`Queue::new_live`].
    pub fn new(
        tenancy: Tenancy,
        cluster: Cluster,
        scheduler: Scheduler,
        mode: Mode,
        now: Seconds,
    ) -> Result<Queue, UnboundFlavor> {
        let flavors = tenancy.bind(&cluster.models)?;
        Ok(Queue::build(tenancy, flavors, cluster, scheduler, mode, now))
    }

    fn build(
        tenancy: Tenancy,
        flavors: FlavorMap,
        cluster: Cluster,
        scheduler: Scheduler,
        mode: Mode,
        now: Seconds,
    ) -> Queue {
        let nf = tenancy.flavors.len();
        let nt = tenancy.tenants.len();
        let quota = QuotaTree::new(&tenancy);
        let (ceilings, nominal, prices) = limits(&tenancy, &quota);
        let gpu_flavor = tenancy.flavors.iter().map(|f| !f.is_cpu()).collect();
        let queues = vec![BTreeSet::new(); nt.max(1)];
        let by_age = vec![BTreeSet::new(); nt.max(1)];
        let mut q = Queue {
            ledger: Ledger::new(nf, nominal, prices, gpu_flavor, now),
            flavors,
            mode,
            cluster,
            scheduler,
            quota,
            entries: HashMap::new(),
            queues,
            by_age,
            stacks: vec![BTreeSet::new(); nt * nf],
            seq: 0,
            flavor_nodes: vec![Vec::new(); nf],
            capacity: vec![0; nf],
            room: vec![0; nf],
            node_index: Vec::new(),
            idle_hist: vec![Vec::new(); nf],
            by_free: vec![BTreeSet::new(); nf],
            external: HashSet::new(),
            failed: HashSet::new(),
            no_room: HashSet::new(),
            stopped: HashSet::new(),
            shielded: HashMap::new(),
            started: HashSet::new(),
            running_priorities: vec![Default::default(); nt * nf],
            preempt_budget: 0,
            held: Vec::new(),
            ceilings,
            dirty: false,
            wake: None,
            now,
            tenancy,
        };
        // The per-flavor indexes are derived node by node, exactly as upserts keep them.
        for id in 0..q.cluster.nodes.len() {
            q.reindex(id);
        }
        q
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
    pub fn quota(&self) -> &QuotaTree {
        &self.quota
    }
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// Capacity of a flavor in milli-units.
    pub fn capacity(&self, f: FlavorId) -> Milli {
        self.capacity[f]
    }
    pub fn workload(&self, id: WorkloadId) -> Option<&Workload> {
        self.entries.get(&id).map(|e| &e.w)
    }
    pub fn running(&self, id: WorkloadId) -> Option<&Running> {
        match &self.entries.get(&id)?.state {
            State::Running(r) => Some(r),
            State::Pending { .. } => None,
        }
    }
    pub fn pending_count(&self) -> usize {
        self.queues.iter().map(BTreeSet::len).sum()
    }
    pub fn pending_of(&self, t: TenantId) -> usize {
        match self.mode {
            Mode::Quota => self.queues[t].len(),
            Mode::Fifo => self.queues[0].iter().filter(|k| self.entries[&k.2].w.tenant == t).count(),
        }
    }
    /// Ids of all pending workloads, in no particular order.
    pub fn pending_ids(&self) -> impl Iterator<Item = WorkloadId> + '_ {
        self.queues.iter().flat_map(|q| q.iter().map(|k| k.2))
    }
    /// When the driver should run a cycle even if nothing else happens.
    pub fn next_wakeup(&self) -> Option<Seconds> {
        self.wake
    }

    /// The priority value a workload runs at.
    fn priority_of(&self, w: &Workload) -> i32 {
        let tenant = &self.tenancy.tenants[w.tenant];
        let class = w.priority_class.unwrap_or(tenant.kind_classes[w.kind.index()]);
        self.tenancy.priority_classes.get(class).map_or(w.kind.default_priority(), |c| c.value)
    }

    /// Flavors the workload may take, in the tenancy's order.
    fn candidate_flavors(&self, w: &Workload) -> Vec<FlavorId> {
        if !w.wants_gpu() {
            return self.flavors.cpu.into_iter().collect();
        }
        (0..self.tenancy.flavors.len())
            .filter(|&f| match self.flavors.model_of(f) {
                Some(m) => w.models.is_none_or(|set| set.contains(m)),
                None => false,
            })
            .collect()
    }

    /// Adds a workload to its tenant's queue, or refuses it when it could never run as asked.
    pub fn submit(&mut self, w: Workload, now: Seconds) -> Result<(), Refusal> {
        self.now = now;
        w.validate()?;
        if w.tenant >= self.tenancy.tenants.len() {
            return Err(Refusal::NoTenant { workload: w.name.clone(), tenant: w.tenant });
        }
        if self.entries.contains_key(&w.id) {
            return Err(Refusal::Duplicate(w.id));
        }
        let tenant = &self.tenancy.tenants[w.tenant];
        if let Some(class) = w.priority_class {
            if !tenant.allowed_classes.is_empty() && !tenant.allowed_classes.contains(&class) {
                let name = self.tenancy.priority_classes.get(class).map_or("?", |c| c.name.as_str());
                return Err(Refusal::ClassNotAllowed {
                    tenant: tenant.name.clone(),
                    class: name.to_string(),
                });
            }
        }
        if self.mode == Mode::Quota {
            self.refuse_if_never(&w)?;
            if let Some(b) = tenant.budget {
                if b.when_exhausted == WhenExhausted::Refuse
                    && self.ledger.month_gpu_use(w.tenant, now) >= b.milli_gpu_seconds
                    && w.wants_gpu()
                {
                    return Err(Refusal::BudgetSpent(explain::budget_message(self, w.tenant, now)));
                }
            }
        } else {
            self.refuse_if_no_node(&w)?;
        }
        let priority = if self.mode == Mode::Fifo { 0 } else { self.priority_of(&w) };
        let q = if self.mode == Mode::Fifo { 0 } else { w.tenant };
        self.queues[q].insert((Reverse(priority), w.submitted, w.id));
        self.by_age[q].insert((w.submitted, w.id));
        let reason = Reason::Queued;
        let shape = shape_of(&w);
        self.entries.insert(w.id, Entry { w, priority, shape, state: State::Pending { reason } });
        self.dirty = true;
        Ok(())
    }

    fn refuse_if_no_node(&self, w: &Workload) -> Result<(), Refusal> {
        let flavors = self.candidate_flavors(w);
        let members = w.member_requests(w.min_members);
        let fits_somewhere = |f: FlavorId| {
            members
                .iter()
                .all(|p| self.flavor_nodes[f].iter().any(|&n| could_ever_fit(&self.cluster.nodes[n], p)))
        };
        if flavors.iter().any(|&f| fits_somewhere(f)) {
            return Ok(());
        }
        Err(Refusal::NeverFits(explain::never_fits_message(self, w, &flavors)))
    }

    fn refuse_if_never(&self, w: &Workload) -> Result<(), Refusal> {
        self.refuse_if_no_node(w)?;
        let nf = self.tenancy.flavors.len();
        let demand = w.demand(w.min_members) as i64;
        let flavors = self.candidate_flavors(w);
        if flavors.iter().any(|&f| self.ceilings[w.tenant * nf + f] >= demand) {
            return Ok(());
        }
        Err(Refusal::OverCeiling(explain::over_ceiling_message(self, w, &flavors)))
    }

    /// A running workload ended, or a pending one was withdrawn. Unknown ids are ignored (the
    /// workload was refused or has already finished).
    pub fn finish(&mut self, id: WorkloadId, now: Seconds) -> Option<Workload> {
        self.now = now;
        let entry = self.entries.remove(&id)?;
        self.held.retain(|&(_, by)| by != id);
        self.shielded.remove(&id);
        match &entry.state {
            State::Pending { .. } => {
                let q = if self.mode == Mode::Fifo { 0 } else { entry.w.tenant };
                self.queues[q].remove(&(Reverse(entry.priority), entry.w.submitted, id));
                self.by_age[q].remove(&(entry.w.submitted, id));
            }
            State::Running(r) => self.release(&entry.w, r, now),
        }
        self.dirty = true;
        Some(entry.w)
    }

    /// Frees a running workload's pods and quota.
    fn release(&mut self, w: &Workload, r: &Running, now: Seconds) {
        for (pod, _) in &r.pods {
            // Pods of a running entry are placed; a failure would mean corrupted state, which
            // the property tests rule out.
            if let Ok(p) = self.cluster.release(*pod) {
                self.touch(p.node);
            }
        }
        let nf = self.tenancy.flavors.len();
        self.stacks[w.tenant * nf + r.flavor].remove(&stack_key(r, w.id));
        self.count_priority(w.tenant, r.flavor, r.priority, r.demand, false);
        self.charge(w.tenant, r.flavor, -(r.demand as i64), w.charge.as_ref(), now);
        self.forget_failures(r.flavor);
    }

    /// Changes a tenant's usage of a flavor in the quota tree and the ledger; `part`: what the
    /// workload's cost is charged to below the tenant, whose share of the meter changes alike.
    fn charge(&mut self, t: TenantId, f: FlavorId, delta: i64, part: Option<&Charge>, now: Seconds) {
        self.quota.add(t, f, delta);
        let usage = self.quota.usage(t, f);
        self.ledger.set_charged(t, f, usage, part.map(|c| (c, delta)), now);
    }

    /// Weighted dominant share of what the tenant borrows: the largest borrowed fraction of any
    /// flavor's capacity, divided by the tenant's weight. Tenants within their quotas have 0.
    pub fn borrowed_share(&self, t: TenantId) -> f64 {
        let weight = self.tenancy.tenants[t].weight;
        (0..self.tenancy.flavors.len())
            .filter(|&f| self.capacity[f] > 0)
            .map(|f| self.quota.borrowed(t, f) as f64 / self.capacity[f] as f64)
            .fold(0.0, f64::max)
            / weight
    }

    /// One admission cycle at `now`.
    ///
    /// 1. Heads: every tenant with pending work, lowest weighted borrowed share first (ties:
    ///    the more urgent head, then the older head).
    /// 2. For the first tenant, look at its queue in order (priority, then age), at most
    ///    [`SCAN_DEPTH`] workloads past the last admission, plus its [`PREEMPT_DEPTH`] oldest
    ///    workloads past the reclaim window (the first [`PREEMPT_DEPTH`] by priority, and any
    ///    past the reclaim window, may preempt):
    ///    a. budget: an exhausted `refuse` budget holds the tenant's work until next month;
    ///    b. quota: the first flavor the workload accepts whose quota (nominal, then what the
    ///    cohort can lend) covers it;
    ///    c. placement: every member on a node of that flavor, or nothing;
    ///    d. preemption when allowed: lower-priority work of the same tenant, or, after the
    ///    reclaim window, borrowed work of other tenants for a tenant within its nominal quota;
    ///    e. admitted: the tenant goes back among the heads with its new share (one admission
    ///    per turn interleaves tenants fairly); not admitted: the reason is recorded.
    /// 3. Requeue preempted victims; report admissions and preemptions.
    pub fn cycle(&mut self, now: Seconds) -> CycleOutcome {
        self.now = now;
        let mut out = CycleOutcome::default();
        if !self.dirty && self.wake.is_none_or(|w| w > now) {
            return out;
        }
        self.dirty = false;
        self.wake = None;
        self.no_room.clear();
        self.stopped.clear();
        self.started.clear();
        self.preempt_budget = preempt::CYCLE_BUDGET;
        // 1. heads
        let mut turns: BTreeSet<(u64, Key, usize)> = BTreeSet::new();
        for (q, queue) in self.queues.iter().enumerate() {
            if let Some(head) = queue.first() {
                turns.insert((self.share_key(q), *head, q));
            }
        }
        // 2. turns
        while let Some(turn) = turns.pop_first() {
            let q = turn.2;
            if let Some(admitted) = self.turn(q, now, &mut out) {
                out.admitted.push(admitted);
                if let Some(head) = self.queues[q].first() {
                    turns.insert((self.share_key(q), *head, q));
                }
            }
        }
        out
    }

    /// Sort key of a queue's share (order-preserving bits of the non-negative f64).
    fn share_key(&self, q: usize) -> u64 {
        match self.mode {
            Mode::Quota => self.borrowed_share(q).to_bits(),
            Mode::Fifo => 0,
        }
    }

    /// Looks at up to [`SCAN_DEPTH`] workloads of queue `q` and admits the first that can start.
    fn turn(&mut self, q: usize, now: Seconds, out: &mut CycleOutcome) -> Option<Admission> {
        let window = self.tenancy.timing.reclaim_window;
        let mut keys: Vec<Key> = self.queues[q].iter().take(SCAN_DEPTH).copied().collect();
        if self.queues[q].len() > SCAN_DEPTH {
            // The oldest work past its reclaim window, wherever it is in priority order.
            let overdue = self.by_age[q].iter().take_while(|&&(t, _)| now >= t + window).take(PREEMPT_DEPTH);
            let extra: Vec<Key> = overdue
                .map(|&(t, id)| (Reverse(self.entries[&id].priority), t, id))
                .filter(|k| !keys.contains(k))
                .collect();
            keys.extend(extra);
        }
        for (i, key) in keys.into_iter().enumerate() {
            let id = key.2;
            // The head may preempt by priority; anything past the reclaim window may reclaim.
            let may_preempt = i < PREEMPT_DEPTH || now >= key.1 + window;
            match self.try_admit(id, now, may_preempt, out) {
                Ok(a) => return Some(a),
                Err(reason) => {
                    let blocks = matches!(reason, Reason::Budget { .. });
                    if let Some(Entry { state: State::Pending { reason: r }, .. }) = self.entries.get_mut(&id)
                    {
                        *r = reason;
                    }
                    // Not allowed to preempt yet, it set no wakeup of its own: an owed workload
                    // must be looked at again when its window ends, even if nothing else happens.
                    if !may_preempt && self.owed(id) {
                        self.wake_at(key.1 + window);
                    }
                    if blocks {
                        break;
                    }
                }
            }
        }
        None
    }

    /// Budget, quota, placement and preemption for one workload (steps 2a-2d).
    fn try_admit(
        &mut self,
        id: WorkloadId,
        now: Seconds,
        may_preempt: bool,
        out: &mut CycleOutcome,
    ) -> Result<Admission, Reason> {
        if self.stopped.contains(&id) {
            return Err(Reason::Preempted);
        }
        let w = self.entries[&id].w.clone();
        let priority = self.entries[&id].priority;
        // a. budget
        let mut opportunistic = false;
        if self.mode == Mode::Quota && w.wants_gpu() {
            if let Some(b) = self.tenancy.tenants[w.tenant].budget {
                if self.ledger.month_gpu_use(w.tenant, now) >= b.milli_gpu_seconds {
                    self.wake_at(crate::tenancy::next_month_start(now));
                    match b.when_exhausted {
                        WhenExhausted::Refuse => return Err(explain::budget_reason(self, w.tenant, now)),
                        WhenExhausted::IdleOnly => opportunistic = true,
                    }
                }
            }
        }
        // All members; else (a gang that may start partly) the largest count from its minimum
        // up that fits, found by halving (fewer members always fit where more do).
        let mut first_reason = None;
        if let Some((f, pods)) = self.fit_members(&w, w.members(), opportunistic, &mut first_reason) {
            return Ok(self.admit(
                &w,
                f,
                w.members(),
                w.demand(w.members()),
                priority,
                opportunistic,
                false,
                pods,
                now,
            ));
        }
        let (mut lo, mut hi) = (w.min_members, w.members() - 1);
        let mut best = None;
        while lo <= hi && lo >= 1 {
            let n = lo + (hi - lo) / 2;
            match self.fit_members(&w, n, opportunistic, &mut first_reason) {
                Some((_, pods)) => {
                    // A probe: taken back, so that larger counts are tried on the same room.
                    self.unplace(pods);
                    best = Some(n);
                    lo = n + 1;
                }
                None => hi = n - 1,
            }
        }
        if let Some(n) = best {
            if let Some((f, pods)) = self.fit_members(&w, n, opportunistic, &mut first_reason) {
                return Ok(self.admit(&w, f, n, w.demand(n), priority, opportunistic, false, pods, now));
            }
        }
        // d. preemption (work on an exhausted budget never preempts)
        if self.mode == Mode::Quota && !opportunistic && may_preempt {
            if let Some((f, pods, victims)) = preempt::make_room(self, &w, priority, now) {
                let n = w.members();
                let demand = w.demand(n);
                for &(victim, reclaim) in &victims {
                    out.preempted.push(Preemption { victim, by: id, reclaim });
                }
                // Protected as a reclaimer only within nominal (borrowing while preempting, it is
                // borrowed work like any other).
                let reclaimer = victims.iter().any(|&(_, reclaim)| reclaim)
                    && self.quota.usage(w.tenant, f) + demand <= self.quota.nominal(w.tenant, f);
                return Ok(self.admit(&w, f, n, demand, priority, opportunistic, reclaimer, pods, now));
            }
            self.hold_for(&w, now);
        }
        Err(first_reason.unwrap_or(Reason::Queued))
    }

    /// A workload past its reclaim window, within its tenant's nominal quota of some flavors
    /// (once its tenant's lower-priority work it may stop is stopped), found no room even by
    /// preemption: hold those flavors, so that no other tenant's borrowing takes the room that
    /// frees up next, until it starts (or no longer fits its nominal quota).
    fn hold_for(&mut self, w: &Workload, now: Seconds) {
        self.held.retain(|&(_, id)| id != w.id);
        if now < w.submitted + self.tenancy.timing.reclaim_window {
            return;
        }
        let demand = w.demand(w.members());
        let priority = self.entries[&w.id].priority;
        for f in self.candidate_flavors(w) {
            if preempt::owed(self, w, f, priority, demand, preempt::Pass::Combined) {
                self.held.push((f, w.id));
            }
        }
    }

    /// Whether flavor `f` is held for an owed workload other than `id`.
    fn is_held(&self, f: FlavorId, id: WorkloadId) -> bool {
        self.held.iter().any(|&(g, by)| g == f && by != id)
    }

    /// Places the members on flavor `f`. With `memo` (an admission), shapes that did not fit are
    /// remembered until the flavor frees capacity (admissions only take capacity, so they would
    /// fail again), and a failure says why for every node. Without (a preemption probe, whose
    /// reason nobody reads), a failure among the nodes with enough GPUs free is final: scanning
    /// the rest for a reason was most of an overloaded month's time.
    fn place(
        &mut self,
        w: &Workload,
        f: FlavorId,
        members: &[PodRequest],
        memo: bool,
    ) -> Result<Vec<(u64, Placement)>, Reason> {
        let key = (f, members.to_vec());
        if memo && self.failed.contains(&key) {
            return Err(explain::no_fit_reason(self, f, members.len(), explain::NoFit::SameShapeFailed));
        }
        let ids: Vec<u64> = (0..members.len() as u64).map(|i| pod_id(w.id, i)).collect();
        let salt = w.id.wrapping_mul(0x9E37_79B9);
        // GPU pods first on the nodes with enough GPUs free for the smallest member, in id order:
        // a node with less can take no member (placing members only takes room), so the
        // placement is the one all nodes would give. Only a failure looks at all of them, so
        // that the reason counts every node.
        let need = members.iter().map(PodRequest::gpu_total).min().unwrap_or(0);
        let mut placed = None;
        if need > 0 && members.iter().all(PodRequest::wants_gpu) && !self.tenancy.flavors[f].is_cpu() {
            let mut nodes: Vec<NodeId> = self.by_free[f].range((need, 0)..).map(|&(_, id)| id).collect();
            nodes.sort_unstable();
            let p = place_gang(&mut self.cluster, &mut self.scheduler, &nodes, members, &ids, salt);
            if p.is_err() && !memo {
                return Err(explain::no_fit_reason(self, f, members.len(), explain::NoFit::TooFewFree));
            }
            placed = p.is_ok().then_some(p);
        }
        let placed = placed.unwrap_or_else(|| {
            let nodes = std::mem::take(&mut self.flavor_nodes[f]);
            let p = place_gang(&mut self.cluster, &mut self.scheduler, &nodes, members, &ids, salt);
            self.flavor_nodes[f] = nodes;
            p
        });
        match placed {
            Ok(p) => {
                for placement in &p {
                    self.touch(placement.node);
                }
                Ok(ids.into_iter().zip(p).collect())
            }
            Err(misfit) => {
                if memo {
                    self.failed.insert(key);
                }
                Err(explain::no_fit_reason(self, f, members.len(), explain::NoFit::Misfit(&misfit)))
            }
        }
    }

    /// Takes back a workload that is already running at known placements (one per member, in
    /// the order of its pod sets), as after a restart: its pods are allocated exactly there and
    /// its quota is charged as it is, even above limits, since the pods run whatever the rules
    /// say. Fails, changing nothing, when a placement names no node or does not fit.
    pub fn restore(
        &mut self,
        w: Workload,
        placements: Vec<Placement>,
        at: Seconds,
        now: Seconds,
    ) -> Result<(), Refusal> {
        w.validate()?;
        if self.entries.contains_key(&w.id) || w.tenant >= self.tenancy.tenants.len() {
            return Err(Refusal::Unrestorable(format!(
                "workload {} is already known or names no tenant",
                w.name
            )));
        }
        let requests: Vec<PodRequest> =
            w.pod_sets.iter().flat_map(|s| std::iter::repeat_n(s.request, s.count as usize)).collect();
        if requests.len() != placements.len() {
            return Err(Refusal::Unrestorable(format!(
                "workload {}: {} pods but {} placements",
                w.name,
                requests.len(),
                placements.len()
            )));
        }
        let flavor = if w.wants_gpu() {
            placements.iter().find_map(|p| {
                self.cluster.nodes.get(p.node).and_then(|n| n.model).and_then(|m| self.flavors.of_model(m))
            })
        } else {
            self.flavors.cpu
        };
        let Some(f) = flavor else {
            return Err(Refusal::Unrestorable(format!(
                "workload {} runs on nodes whose GPU model no flavor names",
                w.name
            )));
        };
        let ids: Vec<u64> = (0..requests.len() as u64).map(|i| pod_id(w.id, i)).collect();
        for (i, (r, p)) in requests.iter().zip(&placements).enumerate() {
            let mut r = *r;
            r.allowed_models = None;
            if let Err(e) = self.cluster.allocate(ids[i], &r, p.clone()) {
                for &id in &ids[..i] {
                    let _ = self.cluster.release(id);
                }
                return Err(Refusal::Unrestorable(format!("workload {}: {e}", w.name)));
            }
        }
        for p in &placements {
            self.touch(p.node);
        }
        let priority = if self.mode == Mode::Fifo { 0 } else { self.priority_of(&w) };
        let demand = w.demand(w.members());
        let shape = shape_of(&w);
        let id = w.id;
        let tenant = w.tenant;
        self.seq += 1;
        let pods = ids.into_iter().zip(requests).collect();
        // Whether it was admitted by reclaim is not known after a restart: it is taken back as
        // ordinary work.
        let running = Running {
            at,
            seq: self.seq,
            flavor: f,
            demand,
            priority,
            opportunistic: false,
            reclaimer: false,
            pods,
        };
        let key = stack_key(&running, id);
        let part = w.charge.clone();
        self.entries.insert(id, Entry { w, priority, shape, state: State::Running(running) });
        let nf = self.tenancy.flavors.len();
        self.stacks[tenant * nf + f].insert(key);
        self.count_priority(tenant, f, priority, demand, true);
        self.charge(tenant, f, demand as i64, part.as_ref(), now);
        self.dirty = true;
        Ok(())
    }

    /// Quota and a placement for the first `n` members of `w` on some flavor (steps 2b-2c): the
    /// flavor and the pods placed (allocated), or `None` with the first reason noted.
    fn fit_members(
        &mut self,
        w: &Workload,
        n: u32,
        opportunistic: bool,
        first_reason: &mut Option<Reason>,
    ) -> Option<(FlavorId, Vec<(u64, Placement)>)> {
        // Built only for a flavor that passes quota: most workloads looked at in a busy cycle
        // stop there.
        let mut members: Option<Vec<PodRequest>> = None;
        let demand = w.demand(n);
        for f in self.candidate_flavors(w) {
            // b. quota, and no borrowing where capacity is held for overdue owed work
            if self.mode == Mode::Quota && (self.quota.available(w.tenant, f) as i128) < demand as i128 {
                first_reason.get_or_insert_with(|| explain::quota_reason(self, w, f, demand));
                continue;
            }
            let borrows =
                opportunistic || self.quota.usage(w.tenant, f) + demand > self.quota.nominal(w.tenant, f);
            if self.mode == Mode::Quota && borrows && self.is_held(f, w.id) {
                first_reason.get_or_insert_with(|| explain::held_reason(self, f));
                continue;
            }
            // c. placement (not even tried when the flavor lacks the free GPUs)
            let members = members.get_or_insert_with(|| w.member_requests(n));
            if preempt::free(self, f) < demand || !self.idle_gpus_suffice(f, members) {
                first_reason.get_or_insert_with(|| {
                    explain::no_fit_reason(self, f, members.len(), explain::NoFit::TooFewFree)
                });
                continue;
            }
            match self.place(w, f, members, true) {
                Ok(pods) => return Some((f, pods)),
                Err(reason) => {
                    first_reason.get_or_insert(reason);
                }
            }
        }
        None
    }

    /// Takes back pods placed by [`Queue::fit_members`] that will not start.
    fn unplace(&mut self, pods: Vec<(u64, Placement)>) {
        for (pod, _) in pods {
            if let Ok(p) = self.cluster.release(pod) {
                self.touch(p.node);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        w: &Workload,
        f: FlavorId,
        members: u32,
        demand: Milli,
        priority: i32,
        opportunistic: bool,
        reclaimer: bool,
        pods: Vec<(u64, Placement)>,
        now: Seconds,
    ) -> Admission {
        let q = if self.mode == Mode::Fifo { 0 } else { w.tenant };
        self.held.retain(|&(_, id)| id != w.id);
        let entry = self.entries.get_mut(&w.id).expect("admitting a queued workload");
        self.queues[q].remove(&(Reverse(entry.priority), w.submitted, w.id));
        self.by_age[q].remove(&(w.submitted, w.id));
        let requests = w.member_requests(members);
        self.seq += 1;
        let running = Running {
            at: now,
            seq: self.seq,
            flavor: f,
            demand,
            priority,
            opportunistic,
            reclaimer,
            pods: pods.iter().map(|(id, _)| *id).zip(requests).collect(),
        };
        let key = stack_key(&running, w.id);
        entry.state = State::Running(running);
        self.started.insert(w.id);
        let nf = self.tenancy.flavors.len();
        self.stacks[w.tenant * nf + f].insert(key);
        self.count_priority(w.tenant, f, priority, demand, true);
        self.charge(w.tenant, f, demand as i64, w.charge.as_ref(), now);
        Admission { workload: w.id, flavor: f, pods, members }
    }

    /// Marks a workload (just released) as pending again and puts it back in its queue with its
    /// original submission time.
    fn set_pending(&mut self, id: WorkloadId, reason: Reason) {
        let Some(entry) = self.entries.get_mut(&id) else { return };
        entry.state = State::Pending { reason };
        let q = if self.mode == Mode::Fifo { 0 } else { entry.w.tenant };
        self.queues[q].insert((Reverse(entry.priority), entry.w.submitted, id));
        self.by_age[q].insert((entry.w.submitted, id));
        self.dirty = true;
    }

    fn count_priority(&mut self, t: TenantId, f: FlavorId, priority: i32, demand: Milli, add: bool) {
        let counts = &mut self.running_priorities[t * self.tenancy.flavors.len() + f];
        let (n, d) = counts.entry(priority).or_insert((0, 0));
        if add {
            *n += 1;
            *d += demand;
        } else {
            *n = n.saturating_sub(1);
            *d = d.saturating_sub(demand);
            if *n == 0 {
                counts.remove(&priority);
            }
        }
    }

    /// Demand of the tenant's running work on a flavor with priority below `priority`.
    fn running_below(&self, t: TenantId, f: FlavorId, priority: i32) -> Milli {
        self.running_priorities[t * self.tenancy.flavors.len() + f]
            .range(..priority)
            .map(|(_, &(_, d))| d)
            .sum()
    }

    /// Capacity of flavor `f` was freed: shapes that failed on its nodes may fit now. The `cpu`
    /// flavor spans every node, so freeing it (or freeing a GPU node's CPU) touches all of them.
    fn forget_failures(&mut self, f: FlavorId) {
        let cpu = self.flavors.cpu;
        if Some(f) == cpu {
            self.failed.clear();
        } else {
            self.failed.retain(|(g, _)| *g != f && Some(*g) != cpu);
        }
    }

    /// A necessary condition for whole-GPU members to fit on flavor `f`: for every size `k`
    /// among them, the flavor's nodes hold at least as many blocks of `k` idle GPUs as there are
    /// members of `k` GPUs or more. Always true for members that share a GPU or need none.
    fn idle_gpus_suffice(&self, f: FlavorId, members: &[PodRequest]) -> bool {
        if self.tenancy.flavors[f].is_cpu() || members.iter().any(|m| m.gpu_milli < crate::GPU_MILLI) {
            return true;
        }
        let Some(hist) = self.idle_hist.get(f) else { return true };
        let mut sizes: Vec<u32> = members.iter().map(|m| m.gpu_count).collect();
        sizes.dedup();
        sizes.iter().all(|&k| {
            let blocks: u64 = hist.iter().enumerate().map(|(j, &n)| n as u64 * (j as u64 / k as u64)).sum();
            blocks >= members.iter().filter(|m| m.gpu_count >= k).count() as u64
        })
    }

    /// Asks for a cycle at `t` at the latest.
    fn wake_at(&mut self, t: Seconds) {
        self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
    }

    /// Running workloads of a tenant on a flavor, most protected first (see [`StackKey`]).
    fn stack(&self, t: TenantId, f: FlavorId) -> impl Iterator<Item = WorkloadId> + '_ {
        self.stacks[t * self.tenancy.flavors.len() + f].iter().map(|&(_, _, _, id)| id)
    }

    /// Every running workload with its state.
    pub fn running_workloads(&self) -> impl Iterator<Item = (&Workload, &Running)> {
        self.entries.values().filter_map(|e| match &e.state {
            State::Running(r) => Some((&e.w, r)),
            State::Pending { .. } => None,
        })
    }

    /// Whether a pending workload would fit now if what the preemption rules let it stop
    /// (ever, or now: see [`RoomCheck`]) were stopped. Changes nothing. `false` for unknown or
    /// running workloads.
    pub fn room_after_reclaim(&mut self, id: WorkloadId, now: Seconds, check: RoomCheck) -> bool {
        let Some(e) = self.entries.get(&id) else { return false };
        if !matches!(e.state, State::Pending { .. }) {
            return false;
        }
        let (w, priority) = (e.w.clone(), e.priority);
        preempt::room_after_reclaim(self, &w, priority, now, check)
    }

    /// Whether a pending workload is owed room: on some flavor it may take, it fits in its
    /// tenant's nominal quota as the tenant's use stands, or, with the tenant below that quota,
    /// once the tenant's own lower-priority work that its policy lets it stop is stopped. `false`
    /// for unknown or running workloads.
    pub fn owed(&self, id: WorkloadId) -> bool {
        let Some(e) = self.entries.get(&id) else { return false };
        if !matches!(e.state, State::Pending { .. }) {
            return false;
        }
        let demand = e.w.demand(e.w.members());
        let pass = preempt::Pass::Combined;
        self.candidate_flavors(&e.w)
            .into_iter()
            .any(|f| preempt::owed(self, &e.w, f, e.priority, demand, pass))
    }

    /// The recorded reason of a pending workload.
    pub fn reason(&self, id: WorkloadId) -> Option<&Reason> {
        match &self.entries.get(&id)?.state {
            State::Pending { reason } => Some(reason),
            State::Running(_) => None,
        }
    }

    /// Checks internal invariants: usage equals the sum of running demands, the cluster holds
    /// exactly the running pods and the external ones, no tenant exceeds what it may hold, the
    /// cluster's accounting is exact ([`Cluster::check`]), and every index derived from the
    /// nodes (flavor nodes, capacity, free room, idle GPUs, flavor binding) matches the nodes as
    /// they are now. Used by tests.
    pub fn check_invariants(&self) -> Result<(), Inconsistent> {
        self.audit().map_err(Inconsistent)
    }

    fn audit(&self) -> Result<(), String> {
        let nf = self.tenancy.flavors.len();
        let mut usage = vec![0u64; self.tenancy.tenants.len() * nf];
        let mut priorities: Vec<std::collections::BTreeMap<i32, (u32, Milli)>> =
            vec![Default::default(); self.tenancy.tenants.len() * nf];
        let mut pods = 0;
        for (w, r) in self.running_workloads() {
            usage[w.tenant * nf + r.flavor] += r.demand;
            let (n, d) = priorities[w.tenant * nf + r.flavor].entry(r.priority).or_insert((0, 0));
            *n += 1;
            *d += r.demand;
            pods += r.pods.len();
            for (id, _) in &r.pods {
                if self.cluster.placement(*id).is_none() {
                    return Err(format!("pod {id} of running workload {} is not placed", w.id));
                }
            }
        }
        if pods + self.external.len() != self.cluster.placed_pods() {
            return Err(format!(
                "{} pods placed but running workloads have {pods} and {} external pods are placed",
                self.cluster.placed_pods(),
                self.external.len()
            ));
        }
        self.check_live()?;
        if priorities != self.running_priorities {
            return Err(format!(
                "running work by priority {:?}, but the running workloads make {priorities:?}",
                self.running_priorities
            ));
        }
        for t in 0..self.tenancy.tenants.len() {
            for f in 0..nf {
                if usage[t * nf + f] != self.quota.usage(t, f) {
                    return Err(format!(
                        "tenant {t} flavor {f}: usage {} but running demand {}",
                        self.quota.usage(t, f),
                        usage[t * nf + f]
                    ));
                }
                if self.mode == Mode::Quota && usage[t * nf + f] as i64 > self.ceilings[t * nf + f] {
                    return Err(format!(
                        "tenant {t} flavor {f}: usage {} above its ceiling {}",
                        usage[t * nf + f],
                        self.ceilings[t * nf + f]
                    ));
                }
                if self.mode == Mode::Quota && self.quota.available(t, f) < 0 {
                    return Err(format!(
                        "tenant {t} flavor {f}: negative available quota {}",
                        self.quota.available(t, f)
                    ));
                }
            }
        }
        Ok(())
    }
}
