//! The event loop of a multi-tenant simulation, and what it measures.
//!
//! Events are arrivals (a workload is submitted), completions (a running workload ends) and the
//! queue's own wake-ups (a reclaim window or minimum runtime ends, a month starts). At each event
//! time the loop applies every event, runs one admission cycle, and schedules the completions of
//! what started. Between events nothing changes, so time-weighted figures are exact sums over the
//! intervals between events.
//!
//! The loop keeps its own account of allocation (from admissions and completions) so that the
//! core's ledger can be checked against it: accrued milli-GPU-seconds must equal the integral of
//! allocation exactly.

use super::{MultiError, SimWorkload};
use gantry_core::model::{Cluster, ModelCatalog, Node};
use gantry_core::queue::{cost_micros, Accrual, Mode, Queue, WorkloadId};
use gantry_core::tenancy::{
    civil_month, FlavorId, Kind, Milli, Seconds, Tenancy, MILLI_GPU_SECONDS_PER_GPU_HOUR,
};
use gantry_core::{PolicyKind, Scheduler};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// What runs the queue: Gantry's rules, or one of the baselines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setup {
    /// Quotas with borrowing in cohorts, fair share, reclaim and priority preemption.
    Gantry,
    /// The same, with borrowing switched off: every tenant keeps to its nominal quota.
    StrictQuota,
    /// One queue in submission order, no quotas, no priorities, no preemption.
    Fifo,
}

impl Setup {
    pub fn name(self) -> &'static str {
        match self {
            Setup::Gantry => "gantry",
            Setup::StrictQuota => "strict-quota",
            Setup::Fifo => "fifo",
        }
    }
    /// The setup a name stands for (`gantry --compare` takes these; `strict` is short for
    /// `strict-quota`).
    pub fn parse(s: &str) -> Result<Setup, UnknownSetup> {
        match s {
            "gantry" => Ok(Setup::Gantry),
            "strict-quota" | "strict" => Ok(Setup::StrictQuota),
            "fifo" => Ok(Setup::Fifo),
            _ => Err(UnknownSetup { name: s.to_string() }),
        }
    }
}

/// A name [`Setup::parse`] does not know, kept so the message can quote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown baseline {name:?}; use strict-quota or fifo")]
pub struct UnknownSetup {
    pub name: String,
}

/// One simulation's settings.
#[derive(Clone, Debug)]
pub struct TimelineSpec {
    pub setup: Setup,
    pub policy: PolicyKind,
    pub start: Seconds,
    /// The simulation stops here; work still running or waiting is reported as such.
    pub end: Seconds,
    /// Spacing of the allocation-over-time samples.
    pub sample_every: Seconds,
}

/// Per-tenant measurements.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TenantOutcome {
    pub name: String,
    pub weight: f64,
    /// Nominal GPU quota over all GPU flavors, milli-GPU.
    pub nominal_gpu: Milli,
    /// Milli-GPU-seconds within nominal quota and borrowed, from the ledger.
    pub guaranteed: u128,
    pub borrowed: u128,
    pub cost_micros: u128,
    /// Per calendar month ("2026-11"): cost in micro-units and GPU milli-seconds (what budgets
    /// count).
    pub months: std::collections::BTreeMap<String, MonthUse>,
    /// The monthly GPU-hour budget, if any.
    pub budget_gpu_hours: Option<f64>,
    /// Queueing delay (first start − submission) of every workload that started, by kind.
    pub delays: HashMap<Kind, Vec<Seconds>>,
    pub preempted: usize,
    pub refused: usize,
    pub waiting_at_end: usize,
    /// Time-weighted mean GPU held, milli-GPU.
    pub mean_gpu: f64,
    /// Seconds this tenant had work waiting.
    pub seconds_with_unmet_demand: Seconds,
}

/// One tenant's use in one calendar month.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MonthUse {
    pub cost_micros: u128,
    pub gpu_milli_seconds: u128,
}

/// A point of the allocation-over-time series.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Sample {
    pub t: Seconds,
    pub allocated_pct: f64,
    pub running: usize,
    pub waiting: usize,
}

/// Everything one simulation measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    pub setup: Setup,
    pub tenants: Vec<TenantOutcome>,
    pub samples: Vec<Sample>,
    pub submitted: usize,
    pub admitted: usize,
    pub finished: usize,
    pub refused: usize,
    pub waiting_at_end: usize,
    pub running_at_end: usize,
    pub preemptions: usize,
    pub reclaims: usize,
    /// Workloads that fitted in their tenant's nominal quota when submitted (counting the
    /// tenant's work already waiting), and how many of them waited longer than the reclaim
    /// window plus the minimum runtime although room existed (with every workload the rules let
    /// them stop stopped) at some check while they waited.
    pub owed: usize,
    pub violations: usize,
    /// The longest wait of an owed workload, excluding those counted in `owed_without_room`.
    pub worst_owed_wait: Seconds,
    /// Owed workloads that waited past the bound but for which, whenever checked, no room
    /// existed even with every reclaimable workload stopped (other tenants' guaranteed work held
    /// the nodes they needed), and the longest such wait.
    pub owed_without_room: usize,
    pub worst_without_room: Seconds,
    /// Time-weighted mean of allocated GPU as % of GPU capacity.
    pub mean_allocated_pct: f64,
    /// Time-weighted mean Jain index of (GPU held / weight) over tenants with work waiting,
    /// over the intervals where at least two tenants had work waiting.
    pub jain: Option<f64>,
    pub gpu_capacity: Milli,
    /// Milli-GPU-seconds accrued by the ledger and the loop's own integral of allocation.
    pub accrued: u128,
    pub integral: u128,
    pub first_refusals: Vec<String>,
    pub waiting_examples: Vec<String>,
    /// The first owed workloads that waited too long.
    pub violation_examples: Vec<String>,
    pub cycles: usize,
    pub wall_seconds: f64,
    pub notebooks: NotebookOutcome,
}

/// What the tenants' `idleNotebooks` rules did, and the idle notebook GPU time they act on.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NotebookOutcome {
    /// Milli-GPU-seconds notebooks held while their user was not working in them (allocated and
    /// idle), up to their end, stop or preemption, or the end of the simulation.
    pub idle_held: u128,
    /// Notebooks stopped by the rule, and how many of the stopped were not notebooks (measured,
    /// so that a bug stopping serving or training would show).
    pub stopped: usize,
    pub stopped_not_notebook: usize,
    /// Milli-GPU-seconds the stopped notebooks would still have held until their planned end.
    pub given_back: u128,
    /// Stopped notebooks whose user came back (a later session) and started them again, and how
    /// long each waited to start.
    pub restarted: usize,
    pub restart_delays: Vec<Seconds>,
}

/// Runs one simulation.
pub fn run(
    tenancy: &Tenancy,
    models: &ModelCatalog,
    nodes: &[Node],
    workloads: &[SimWorkload],
    spec: &TimelineSpec,
) -> Result<Outcome, MultiError> {
    run_observed(tenancy, models, nodes, workloads, spec, &mut |_, _, _, _| {})
}

/// What an observer of the simulation sees after each step: the queue, the virtual time, the
/// usage records closed and the notebooks the idle rule stopped since the previous step
/// (`gantry simulate --serve` feeds its API and ledger from them).
pub type Observer<'o> = dyn FnMut(&Queue, Seconds, &[Accrual], &[StoppedNotebook]) + 'o;

/// What a notebook's workload is named after its user starts it again once stopped.
const RESTARTED: &str = " (restarted)";

/// A notebook the idle rule stopped: the rule's decision and the Notebook's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoppedNotebook {
    pub name: String,
    pub stop: gantry_core::notebooks::Stop,
}

/// [`run`], calling `observer` after every step.
pub fn run_observed(
    tenancy: &Tenancy,
    models: &ModelCatalog,
    nodes: &[Node],
    workloads: &[SimWorkload],
    spec: &TimelineSpec,
    observer: &mut Observer,
) -> Result<Outcome, MultiError> {
    let started = Instant::now();
    let cluster = Cluster::new(models.clone(), nodes.to_vec());
    let expected: Vec<_> =
        workloads.iter().flat_map(|w| w.workload.pod_sets.iter().map(|s| s.request)).collect();
    let scheduler = Scheduler::new(spec.policy.build(&cluster, &expected));
    let (rules, mode) = match spec.setup {
        Setup::Gantry => (tenancy.clone(), Mode::Quota),
        Setup::StrictQuota => (tenancy.strict(), Mode::Quota),
        Setup::Fifo => (tenancy.clone(), Mode::Fifo),
    };
    let mut q = Queue::new(rules, cluster, scheduler, mode, spec.start)?;
    let mut sim = Loop::new(&q, tenancy, workloads, spec);
    sim.run(&mut q, observer);
    let outcome = sim.finish(q, started);
    Ok(outcome)
}

/// The loop's state and running measurements.
struct Loop<'a> {
    spec: &'a TimelineSpec,
    tenancy: &'a Tenancy,
    workloads: &'a [SimWorkload],
    by_id: HashMap<WorkloadId, usize>,
    completions: BinaryHeap<Reverse<(Seconds, WorkloadId, u32)>>,
    generation: HashMap<WorkloadId, u32>,
    /// Running workloads: flavor, demand and when they started.
    running: HashMap<WorkloadId, (FlavorId, Milli, Seconds)>,
    first_start: HashMap<WorkloadId, Seconds>,
    /// Owed workloads not yet started: id → submission time.
    owed_waiting: HashMap<WorkloadId, Seconds>,
    /// Overdue owed workloads for which room existed (with every reclaimable workload stopped)
    /// while they waited: true misses of the guarantee.
    room_existed: std::collections::HashSet<WorkloadId>,
    /// Overdue owed workloads already checked at this many seconds past their submission.
    checked_at: HashMap<WorkloadId, Seconds>,
    /// Demand of waiting workloads per (tenant, flavor) they accept.
    waiting_demand: Vec<Milli>,
    waiting: Vec<usize>,
    held_gpu: Vec<Milli>,
    allocated: Milli,
    out: Outcome,
    jain_weighted: f64,
    jain_time: f64,
    alloc_integral: f64,
    ledger_ms: Vec<u128>,
    /// Milli-unit-seconds per (tenant, flavor, month).
    month_ms: HashMap<(usize, FlavorId, (i64, u32)), u128>,
    now: Seconds,
    next_sample: Seconds,
    gpu_flavor: Vec<bool>,
    /// Usage records closed since the observer last looked.
    fresh: Vec<Accrual>,
    /// Notebooks stopped since the last observation.
    fresh_stops: Vec<StoppedNotebook>,
    /// Notebooks started again by their users after the idle rule stopped them (ids after the
    /// given workloads'), and when each is submitted.
    restarts: Vec<SimWorkload>,
    restart_due: BinaryHeap<Reverse<(Seconds, usize)>>,
    /// When a running notebook's idle gap reaches its tenant's `stopAfter`: (time, id, generation).
    idle_due: BinaryHeap<Reverse<(Seconds, WorkloadId, u32)>>,
    /// Running notebooks idle past their tenant's limit: looked at after every cycle.
    idle_overdue: std::collections::BTreeSet<WorkloadId>,
    next_id: WorkloadId,
}

impl<'a> Loop<'a> {
    fn new(q: &Queue, tenancy: &'a Tenancy, workloads: &'a [SimWorkload], spec: &'a TimelineSpec) -> Self {
        let nt = tenancy.tenants.len();
        let nf = tenancy.flavors.len();
        let gpu_flavor: Vec<bool> = tenancy.flavors.iter().map(|f| !f.is_cpu()).collect();
        let tenants = tenancy
            .tenants
            .iter()
            .map(|t| TenantOutcome {
                name: t.name.clone(),
                weight: t.weight,
                nominal_gpu: t
                    .quotas
                    .iter()
                    .zip(&gpu_flavor)
                    .filter(|(_, g)| **g)
                    .map(|(q, _)| q.nominal)
                    .sum(),
                ..TenantOutcome::default()
            })
            .collect();
        Loop {
            spec,
            tenancy,
            workloads,
            by_id: workloads.iter().enumerate().map(|(i, w)| (w.workload.id, i)).collect(),
            completions: BinaryHeap::new(),
            generation: HashMap::new(),
            running: HashMap::new(),
            first_start: HashMap::new(),
            owed_waiting: HashMap::new(),
            room_existed: std::collections::HashSet::new(),
            checked_at: HashMap::new(),
            waiting_demand: vec![0; nt * nf],
            waiting: vec![0; nt],
            held_gpu: vec![0; nt],
            allocated: 0,
            out: Outcome {
                setup: spec.setup,
                tenants,
                samples: Vec::new(),
                submitted: 0,
                admitted: 0,
                finished: 0,
                refused: 0,
                waiting_at_end: 0,
                running_at_end: 0,
                preemptions: 0,
                reclaims: 0,
                owed: 0,
                violations: 0,
                worst_owed_wait: 0,
                owed_without_room: 0,
                worst_without_room: 0,
                mean_allocated_pct: 0.0,
                jain: None,
                gpu_capacity: q.cluster().gpu_capacity(),
                accrued: 0,
                integral: 0,
                first_refusals: Vec::new(),
                waiting_examples: Vec::new(),
                violation_examples: Vec::new(),
                cycles: 0,
                wall_seconds: 0.0,
                notebooks: NotebookOutcome::default(),
            },
            jain_weighted: 0.0,
            jain_time: 0.0,
            alloc_integral: 0.0,
            ledger_ms: vec![0; nt * nf],
            fresh: Vec::new(),
            fresh_stops: Vec::new(),
            restarts: Vec::new(),
            restart_due: BinaryHeap::new(),
            idle_due: BinaryHeap::new(),
            idle_overdue: std::collections::BTreeSet::new(),
            next_id: workloads.iter().map(|w| w.workload.id).max().unwrap_or(0) + 1,
            month_ms: HashMap::new(),
            now: spec.start,
            next_sample: spec.start,
            gpu_flavor,
        }
    }

    fn run(&mut self, q: &mut Queue, observer: &mut Observer) {
        let mut next_arrival = 0;
        loop {
            let arrival = self.workloads.get(next_arrival).map(|w| w.workload.submitted.max(self.spec.start));
            let completion = self.completions.peek().map(|Reverse((t, _, _))| *t);
            let wake = q.next_wakeup().filter(|&t| t > self.now);
            let restart = self.restart_due.peek().map(|Reverse((t, _))| *t);
            let idle = self.idle_due.peek().map(|Reverse((t, _, _))| *t);
            let Some(next) = [arrival, completion, wake, restart, idle].into_iter().flatten().min() else {
                break;
            };
            if next > self.spec.end {
                break;
            }
            self.advance(q, next);
            // 1. completions due now
            while let Some(&Reverse((t, id, generation))) = self.completions.peek() {
                if t > next {
                    break;
                }
                self.completions.pop();
                if self.generation.get(&id) == Some(&generation) {
                    self.complete(q, id);
                }
            }
            // 2. arrivals due now
            while let Some(w) = self.workloads.get(next_arrival) {
                if w.workload.submitted.max(self.spec.start) > next {
                    break;
                }
                next_arrival += 1;
                self.submit(q, w);
            }
            while let Some(&Reverse((t, i))) = self.restart_due.peek() {
                if t > next {
                    break;
                }
                self.restart_due.pop();
                let w = self.restarts[i].clone();
                self.submit(q, &w);
            }
            // 3. one admission cycle, then the idle-notebook rule (and a cycle for what it freed)
            self.cycle(q);
            if self.stop_idle_notebooks(q) {
                self.cycle(q);
            }
            self.check_overdue(q);
            observer(q, self.now, &std::mem::take(&mut self.fresh), &std::mem::take(&mut self.fresh_stops));
        }
        self.advance(q, self.spec.end);
        // Close every meter at the end, so the last observation carries all the use.
        q.ledger_mut().close_all(self.spec.end);
        self.drain_ledger(q);
        observer(q, self.now, &std::mem::take(&mut self.fresh), &std::mem::take(&mut self.fresh_stops));
    }

    /// Accumulates the time-weighted figures from `self.now` to `t`.
    fn advance(&mut self, q: &mut Queue, t: Seconds) {
        while self.next_sample <= t {
            let capacity = self.out.gpu_capacity.max(1) as f64;
            self.out.samples.push(Sample {
                t: self.next_sample,
                allocated_pct: 100.0 * self.allocated as f64 / capacity,
                running: self.running.len(),
                waiting: self.waiting.iter().sum(),
            });
            self.next_sample += self.spec.sample_every.max(1);
        }
        let dt = t - self.now;
        if dt <= 0 {
            return;
        }
        self.alloc_integral += self.allocated as f64 * dt as f64;
        self.out.integral += self.allocated as u128 * dt as u128;
        let mut shares = Vec::new();
        for (i, tenant) in self.out.tenants.iter_mut().enumerate() {
            tenant.mean_gpu += self.held_gpu[i] as f64 * dt as f64;
            if self.waiting[i] > 0 {
                tenant.seconds_with_unmet_demand += dt;
                shares.push(self.held_gpu[i] as f64 / tenant.weight);
            }
        }
        if shares.len() >= 2 {
            self.jain_weighted += jain(&shares) * dt as f64;
            self.jain_time += dt as f64;
        }
        self.now = t;
        self.drain_ledger(q);
    }

    fn drain_ledger(&mut self, q: &mut Queue) {
        let nf = self.tenancy.flavors.len();
        for a in q.ledger_mut().drain() {
            self.fresh.push(a);
            self.ledger_ms[a.tenant * nf + a.flavor] += a.total() as u128;
            // The ledger cuts intervals at month starts, so each record is in one month.
            *self.month_ms.entry((a.tenant, a.flavor, civil_month(a.start))).or_default() +=
                a.total() as u128;
            if self.gpu_flavor[a.flavor] {
                let t = &mut self.out.tenants[a.tenant];
                t.guaranteed += a.guaranteed as u128;
                t.borrowed += a.borrowed as u128;
                self.out.accrued += a.total() as u128;
            }
        }
    }

    /// Flavors a workload may take and its demand of each (same demand on every flavor).
    fn flavors_of(&self, q: &Queue, w: &SimWorkload) -> Vec<FlavorId> {
        let wl = &w.workload;
        if !wl.wants_gpu() {
            return q.flavors.cpu.into_iter().collect();
        }
        (0..self.tenancy.flavors.len())
            .filter(|&f| q.flavors.model_of(f).is_some_and(|m| wl.models.is_none_or(|s| s.contains(m))))
            .collect()
    }

    fn submit(&mut self, q: &mut Queue, w: &SimWorkload) {
        let wl = &w.workload;
        let t = wl.tenant;
        self.out.submitted += 1;
        let nf = self.tenancy.flavors.len();
        let demand = wl.demand(wl.members());
        let flavors = self.flavors_of(q, w);
        let owed = flavors.iter().any(|&f| {
            q.quota().usage(t, f) + self.waiting_demand[t * nf + f] + demand
                <= self.tenancy.tenants[t].quotas[f].nominal
        });
        if let Err(refusal) = q.submit(wl.clone(), self.now) {
            self.out.refused += 1;
            self.out.tenants[t].refused += 1;
            if self.out.first_refusals.len() < 5 {
                self.out.first_refusals.push(format!("{}: {refusal}", wl.name));
            }
            return;
        }
        if owed {
            self.out.owed += 1;
            self.owed_waiting.insert(wl.id, wl.submitted);
        }
        self.waiting_changed(t, &flavors, demand, true);
    }

    fn waiting_changed(&mut self, t: usize, flavors: &[FlavorId], demand: Milli, added: bool) {
        let nf = self.tenancy.flavors.len();
        for &f in flavors {
            let slot = &mut self.waiting_demand[t * nf + f];
            *slot = if added { *slot + demand } else { slot.saturating_sub(demand) };
        }
        if added {
            self.waiting[t] += 1;
        } else {
            self.waiting[t] -= 1;
        }
    }

    fn complete(&mut self, q: &mut Queue, id: WorkloadId) {
        self.stop(id);
        q.finish(id, self.now);
        self.out.finished += 1;
    }

    /// A workload given or restarted, by id.
    fn sim(&self, id: WorkloadId) -> &SimWorkload {
        let i = self.by_id[&id];
        self.workloads.get(i).unwrap_or_else(|| &self.restarts[i - self.workloads.len()])
    }

    /// Takes a running workload out of the loop's own accounts.
    fn stop(&mut self, id: WorkloadId) {
        let Some((f, demand, started)) = self.running.remove(&id) else { return };
        let w = self.sim(id);
        let t = w.workload.tenant;
        let idle = idle_seconds(w, self.now - started);
        if self.gpu_flavor[f] {
            self.allocated -= demand;
            self.held_gpu[t] -= demand;
            self.out.notebooks.idle_held += demand as u128 * idle as u128;
        }
        *self.generation.entry(id).or_default() += 1;
    }

    /// Applies the tenants' `idleNotebooks` rules after a cycle (the core decides; see
    /// `gantry_core::notebooks`): notebooks whose idle gap reached the limit are looked at
    /// until they are stopped or their user is back. A stopped notebook whose user has a later
    /// session is submitted again then, for the rest of its run. Returns whether any stopped.
    fn stop_idle_notebooks(&mut self, q: &mut Queue) -> bool {
        while let Some(&Reverse((t, id, generation))) = self.idle_due.peek() {
            if t > self.now {
                break;
            }
            self.idle_due.pop();
            if self.generation.get(&id) == Some(&generation) {
                self.idle_overdue.insert(id);
            }
        }
        let mut evidence = Vec::new();
        for &id in &self.idle_overdue {
            let Some(&(_, _, started)) = self.running.get(&id) else { continue };
            if let Some(since) = self.sim(id).idle_since(self.now - started) {
                evidence
                    .push(gantry_core::notebooks::IdleEvidence { workload: id, idle_since: started + since });
            }
        }
        // Overdue notebooks no longer running or idle are looked at again at their next gap.
        let keep: std::collections::BTreeSet<WorkloadId> = evidence.iter().map(|e| e.workload).collect();
        self.idle_overdue = keep;
        let stops = gantry_core::notebooks::to_stop(q, &evidence, self.now);
        for s in &stops {
            let Some(&(_, _, started)) = self.running.get(&s.workload) else { continue };
            let w = self.sim(s.workload).clone();
            self.stop(s.workload);
            q.finish(s.workload, self.now);
            self.idle_overdue.remove(&s.workload);
            let nb = &mut self.out.notebooks;
            nb.stopped += 1;
            nb.stopped_not_notebook += usize::from(w.workload.kind != Kind::Notebook);
            let planned_end = started.saturating_add(w.duration);
            nb.given_back += s.demand as u128 * (planned_end - self.now).max(0) as u128;
            // The Notebook is the same object however often its user started it again.
            let notebook = w.workload.name.trim_end_matches(RESTARTED).to_string();
            self.fresh_stops.push(StoppedNotebook { name: notebook, stop: s.clone() });
            if let Some(next) = w.next_session(self.now - started) {
                self.restart(w, started + next, next);
            }
        }
        !stops.is_empty()
    }

    /// Submits `w` again at `at`, for the rest of its run after `offset` seconds.
    fn restart(&mut self, w: SimWorkload, at: Seconds, offset: Seconds) {
        let id = self.next_id;
        self.next_id += 1;
        let duration = w.duration - offset;
        let active = w
            .active
            .iter()
            .filter(|&&(_, to)| to > offset)
            .map(|&(from, to)| (from.max(offset) - offset, to - offset))
            .collect();
        let mut workload = w.workload;
        workload.name = format!("{}{RESTARTED}", workload.name);
        workload.id = id;
        workload.submitted = at;
        workload.expected_runtime = Some(duration);
        self.by_id.insert(id, self.workloads.len() + self.restarts.len());
        self.restart_due.push(Reverse((at, self.restarts.len())));
        self.restarts.push(SimWorkload { workload, duration, active });
    }

    /// When a notebook just started reaches its tenant's idle limit in each of its gaps.
    fn schedule_idle_checks(&mut self, id: WorkloadId, generation: u32) {
        let w = self.sim(id);
        let Some(rule) = self.tenancy.tenants[w.workload.tenant].idle_notebooks else { return };
        if w.workload.kind != Kind::Notebook {
            return;
        }
        let mut due = Vec::new();
        for (i, &(_, to)) in w.active.iter().enumerate() {
            let gap_end = w.active.get(i + 1).map_or(w.duration, |&(from, _)| from.min(w.duration));
            if gap_end - to > rule.stop_after {
                due.push(self.now + to + rule.stop_after);
            }
        }
        for t in due {
            self.idle_due.push(Reverse((t, id, generation)));
        }
    }

    fn cycle(&mut self, q: &mut Queue) {
        let outcome = q.cycle(self.now);
        self.out.cycles += 1;
        for p in &outcome.preempted {
            let t = self.sim(p.victim).workload.tenant;
            let was_running = self.running.contains_key(&p.victim);
            self.stop(p.victim);
            self.out.preemptions += 1;
            self.out.reclaims += usize::from(p.reclaim);
            self.out.tenants[t].preempted += 1;
            if was_running {
                let w = self.sim(p.victim);
                let (flavors, demand) = (self.flavors_of(q, w), w.workload.demand(w.workload.members()));
                self.waiting_changed(t, &flavors, demand, true);
            }
        }
        for a in &outcome.admitted {
            let w = self.sim(a.workload).clone();
            let w = &w;
            let t = w.workload.tenant;
            // A workload admitted and then preempted within one cycle (possible only with a zero
            // minimum runtime) never ran.
            let Some(r) = q.running(a.workload) else { continue };
            if self.gpu_flavor[r.flavor] {
                self.allocated += r.demand;
                self.held_gpu[t] += r.demand;
            }
            let flavors = self.flavors_of(q, w);
            self.waiting_changed(t, &flavors, w.workload.demand(w.workload.members()), false);
            self.running.insert(a.workload, (r.flavor, r.demand, self.now));
            let generation = *self.generation.entry(a.workload).or_default();
            self.completions.push(Reverse((self.now.saturating_add(w.duration), a.workload, generation)));
            self.schedule_idle_checks(a.workload, generation);
            if let std::collections::hash_map::Entry::Vacant(e) = self.first_start.entry(a.workload) {
                e.insert(self.now);
                self.out.admitted += 1;
                let delay = self.now - w.workload.submitted;
                self.out.tenants[t].delays.entry(w.workload.kind).or_default().push(delay);
                if self.by_id[&a.workload] >= self.workloads.len() {
                    self.out.notebooks.restarted += 1;
                    self.out.notebooks.restart_delays.push(delay);
                }
                if let Some(submitted) = self.owed_waiting.remove(&a.workload) {
                    self.owed_wait(a.workload, &w.workload.name, self.now - submitted);
                }
            }
        }
    }

    /// The longest an owed workload may wait: the reclaim window plus its victims' minimum
    /// runtime.
    fn bound(&self) -> Seconds {
        self.tenancy.timing.reclaim_window + self.tenancy.timing.min_runtime
    }

    /// After a cycle: every owed workload waiting past the bound is checked (at most once per
    /// reclaim window) for whether room existed if every reclaimable workload were stopped.
    fn check_overdue(&mut self, q: &mut Queue) {
        let bound = self.bound();
        let every = self.tenancy.timing.reclaim_window.max(60);
        let mut due: Vec<WorkloadId> = self
            .owed_waiting
            .iter()
            .filter(|&(id, &sub)| {
                self.now - sub > bound
                    && !self.room_existed.contains(id)
                    && self.checked_at.get(id).is_none_or(|&c| self.now >= c + every)
            })
            .map(|(&id, _)| id)
            .collect();
        due.sort_unstable();
        for id in due {
            self.checked_at.insert(id, self.now);
            if q.room_after_reclaim(id, self.now, gantry_core::queue::RoomCheck::Ever) {
                self.room_existed.insert(id);
            }
        }
    }

    fn owed_wait(&mut self, id: WorkloadId, name: &str, wait: Seconds) {
        self.checked_at.remove(&id);
        if wait <= self.bound() {
            self.out.worst_owed_wait = self.out.worst_owed_wait.max(wait);
            return;
        }
        let what = if self.room_existed.remove(&id) {
            self.out.worst_owed_wait = self.out.worst_owed_wait.max(wait);
            self.out.violations += 1;
            "missed the guarantee"
        } else {
            self.out.owed_without_room += 1;
            self.out.worst_without_room = self.out.worst_without_room.max(wait);
            "waited with no room even after reclaiming all borrowed work"
        };
        if self.out.violation_examples.len() < 5 {
            self.out
                .violation_examples
                .push(format!("{name} {what}: waited {}", gantry_core::queue::explain::duration(wait)));
        }
    }

    fn finish(mut self, mut q: Queue, started: Instant) -> Outcome {
        q.ledger_mut().close_all(self.spec.end);
        self.drain_ledger(&mut q);
        let end = self.spec.end;
        // Notebooks still running held their idle GPUs up to the end.
        for (&id, &(f, demand, since)) in &self.running {
            if self.gpu_flavor[f] {
                let idle = idle_seconds(self.sim(id), end - since);
                self.out.notebooks.idle_held += demand as u128 * idle as u128;
            }
        }
        let mut still: Vec<(WorkloadId, Seconds)> =
            std::mem::take(&mut self.owed_waiting).into_iter().collect();
        still.sort();
        for (id, submitted) in still {
            let name = self.sim(id).workload.name.clone();
            self.owed_wait(id, &format!("{name} (still waiting)"), end - submitted);
        }
        let span = (end - self.spec.start).max(1) as f64;
        let nf = self.tenancy.flavors.len();
        for (i, t) in self.out.tenants.iter_mut().enumerate() {
            t.mean_gpu /= span;
            t.waiting_at_end = self.waiting[i];
            t.cost_micros = (0..nf)
                .map(|f| cost_micros(self.ledger_ms[i * nf + f], self.tenancy.tenants[i].prices_micros[f]))
                .sum();
            t.budget_gpu_hours = self.tenancy.tenants[i]
                .budget
                .map(|b| b.milli_gpu_seconds as f64 / MILLI_GPU_SECONDS_PER_GPU_HOUR as f64);
        }
        for (&(t, f, (y, m)), &ms) in &self.month_ms {
            let month = self.out.tenants[t].months.entry(format!("{y}-{m:02}")).or_default();
            month.cost_micros += cost_micros(ms, self.tenancy.tenants[t].prices_micros[f]);
            if self.gpu_flavor[f] {
                month.gpu_milli_seconds += ms;
            }
        }
        self.out.mean_allocated_pct =
            100.0 * self.alloc_integral / span / self.out.gpu_capacity.max(1) as f64;
        self.out.jain = (self.jain_time > 0.0).then(|| self.jain_weighted / self.jain_time);
        self.out.waiting_at_end = q.pending_count();
        self.out.running_at_end = self.running.len();
        let mut waiting: Vec<WorkloadId> = q.pending_ids().collect();
        waiting.sort();
        self.out.waiting_examples = waiting
            .iter()
            .take(5)
            .filter_map(|&id| q.explain(id, end))
            .map(|e| format!("{}: {}", q.workload(e.workload).map_or("?", |w| w.name.as_str()), e.message))
            .collect();
        self.out.wall_seconds = started.elapsed().as_secs_f64();
        self.out
    }
}

/// Seconds a workload's GPUs sat idle in its first `ran` seconds (0 for work always busy).
fn idle_seconds(w: &SimWorkload, ran: Seconds) -> Seconds {
    if w.active.is_empty() {
        return 0;
    }
    let busy: Seconds = w.active.iter().map(|&(from, to)| (to.min(ran) - from).max(0)).sum();
    (ran - busy).max(0)
}

/// Jain's fairness index of non-negative values: 1 when all are equal, 1/n when one has all.
pub fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    if sq == 0.0 {
        1.0
    } else {
        sum * sum / (x.len() as f64 * sq)
    }
}
