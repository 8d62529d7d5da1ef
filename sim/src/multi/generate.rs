//! Synthetic multi-tenant GPU workloads: a seeded generator of training gangs, pipeline steps,
//! batch jobs, notebooks and serving deployments for the teams of a tenants file.
//!
//! Real multi-tenant traces rarely come with tenants, quotas and gang sizes together, so this
//! module makes a workload with the features that quota borrowing, fair share, reclaim and gang
//! admission exist for. Every number below is an assumption chosen to be plausible for a shared
//! deep-learning cluster, not a fit to any trace. Each is a constant in this file, so changing one
//! is a one-line edit.
//!
//! # Tenants and arrivals
//!
//! - **Who submits.** The `workloads` (N) are divided between tenants in proportion to their
//!   nominal GPU quota, summed over GPU flavors (largest-remainder rounding, so the counts add up
//!   to N exactly). A tenant with no GPU quota submits only CPU-only pipeline steps, as many as one
//!   GPU of quota earns per 8 cores of its `cpu` nominal quota (8 cores is what a one-GPU pod
//!   asks for); without a `cpu` flavor, or with no quota at all, it submits nothing.
//! - **When.** Each tenant alternates *active* and *quiet* periods whose lengths are exponential
//!   with means 2 days and 1 day. It starts in a random phase (active with probability 2/3, the
//!   long-run share), so tenants are out of step. Arrivals are 10 times as frequent in an active
//!   period as in a quiet one; given its count, a tenant's submit times are drawn independently
//!   from that on/off density over `[start, start + days × 86400)` (the conditional form of a
//!   Poisson process with that rate). At any time some teams are idle while others want more than
//!   their quota: the situation borrowing and reclaim are for. There is no daily or weekly cycle.
//!
//! # Kinds
//!
//! Each workload of a tenant with GPU quota is, independently, one of these kinds. Run times are
//! log-normal, `median × e^(σ·Z)` with `Z` standard normal, clipped to the range given, and then
//! scaled for the load (see below).
//!
//! | kind          | share | pods and GPUs                                        | median | σ   | clipped to      |
//! |---------------|------:|------------------------------------------------------|--------|-----|-----------------|
//! | pipeline-step |  35 % | 1 pod: one GPU 50 %, shared GPU 30 %, CPU-only 20 %  | 20 min | 0.8 | 1 min – 6 h     |
//! | training      |  25 % | 1 pod of 1, 2, 4 or 8 GPUs 40 %, a gang 60 %         | 4 h    | 1.0 | 10 min – 3 days |
//! | batch         |  20 % | 1 pod of 1 or 2 GPUs                                 | 1 h    | 1.0 | 2 min – 1 day   |
//! | notebook      |  12 % | 1 pod: one GPU 60 %, shared GPU 40 %                 | 3 h    | 0.7 | 15 min – 12 h   |
//! | serving       |   8 % | 1 pod: one GPU 70 %, shared GPU 30 %                 | 2 days | 0.5 | 6 h – 14 days   |
//!
//! A notebook's user works in it in **sessions**: from its start, a session (log-normal, median
//! 30 min, σ 0.7, 5 min – 2 h), then an idle gap (median 3 h, σ 0.8, 15 min – 1 day), and so on
//! until its run ends; in the gaps its GPUs are allocated and idle (what a tenant's
//! `idleNotebooks` rule acts on). Sessions come from a stream of their own, so the other draws
//! are as they were before sessions existed.
//!
//! Choices listed together ("1, 2, 4 or 8") are equally likely. A shared GPU is 500 milli-GPU,
//! except for pipeline steps: 250 or 500, even odds. Without a `cpu` flavor the CPU-only pipeline
//! steps take one whole GPU instead.
//!
//! - **Distributed training** is a strict gang (`min_members` = its pod count: all pods start
//!   together or none does) of 2, 4, 8, 16 or 32 pods with weights 35, 30, 20, 10 and 5 %. Gangs
//!   of 4 or more pods have 8 GPUs per pod; 2-pod gangs have 1, 2, 4 or 8 per pod.
//! - **Every job fits its tenant's own quota.** A workload's whole GPUs are capped at the
//!   tenant's nominal GPUs of the model it accepts (see below): the pod count is halved until the
//!   total fits (a gang may so end as a single pod), then, if one pod is still too big, its GPUs
//!   are halved, down to one GPU. A tenant with less than one GPU of a model still gets one.
//!   With the Venus quotas below (at most 100 GPUs of one model) no gang has more than 8 pods.
//!
//! # Pod sizes
//!
//! Per whole GPU a pod asks for 8 cores and 64 GiB; a shared GPU asks for that fraction of it,
//! but at least 2 cores and 8 GiB (250 milli: 2 cores, 16 GiB; 500 milli: 4 cores, 32 GiB); a
//! CPU-only step asks for 4 cores and 16 GiB. The largest pod, 8 GPUs, needs 64 cores and
//! 512 GiB, which fits the 8-GPU nodes of `examples/clusters/venus-968.csv` (A100: 128 cores,
//! 1 TiB; V100M32: 96 cores, 768 GiB), and CPU-only steps fit its CPU nodes (64 cores, 256 GiB).
//!
//! # GPU models
//!
//! 70 % of a tenant's GPU workloads accept only one model: that of one of the GPU flavors the
//! tenant has quota in, chosen with probability proportional to its nominal quota of each
//! (`models: Some({model})`). The other 30 % accept any model (`models: None`); their cap is the
//! tenant's largest nominal quota of any one model. A tenant with only A100 quota thus never
//! submits work that needs a V100.
//!
//! # Load
//!
//! `load` sets the offered work: after all workloads are drawn, every run time is multiplied by
//! one factor and then raised back to its kind's lower clip where it fell below it (the upper clip
//! is not re-applied), with the factor chosen so that
//!
//! `Σ over GPU workloads (GPUs × run time) = load × cluster GPUs × days × 86400`.
//!
//! So `load = 1.0` offers exactly as many GPU-seconds as the cluster has in the arrival window
//! (shared GPUs count as their fraction; CPU-only steps count nothing). Work submitted near the
//! end runs past it; queueing, fragmentation and gangs that wait for room mean a cluster cannot
//! run all of it in the window. The factor is returned by [`generate_with_scale`]: it is 1 when
//! `days` suits `workloads`, below 1 when the window is too short for that many workloads (run
//! times are squeezed), above 1 when it is too long. With the 18 Venus tenants of
//! `examples/tenants/venus.yaml` (968 GPUs) the drawn workloads average about 27 GPU-hours each, so
//! `days ≈ N × 27 / (load × 968 × 24)` keeps the drawn run times: about 23 days for 20,000
//! workloads at load 1.0. Training offers about 82 % of those GPU-seconds and serving about 14 %;
//! pipeline steps, batch jobs and notebooks, though two thirds of the arrivals, offer under 4 %.
//! If the lower clips alone offer more than the target, every run time is its lower clip and the
//! offered load is above `load`.
//!
//! Each workload's `expected_runtime` is its exact final run time, as if users declared run
//! times perfectly; start estimates built on it are therefore better than users' guesses would be.
//!
//! # Output and determinism
//!
//! Workloads come sorted by submit time (ties in draw order), with ids 1..=N in that order and
//! names `t{tenant index}-{kind}-{id:06}`, for example `t3-training-000123`. Their
//! `priority_class` is `None` (the tenant's class for the kind). The same tenancy, flavor map,
//! capacity and [`GenSpec`] always give the same workloads. Each tenant draws from its own
//! ChaCha8 stream of the seed, so its workloads do not depend on the other tenants' draws, only
//! on its own count (and, through the load factor, on everyone's run times). Generation takes
//! O(N log N) time.

use super::SimWorkload;
use gantry_core::model::{ModelId, ModelSet, PodRequest, GPU_MILLI};
use gantry_core::queue::{PodSet, Workload};
use gantry_core::tenancy::{FlavorMap, Kind, Seconds, Tenancy, TenantId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenSpec {
    pub seed: u64,
    /// How many workloads in all.
    pub workloads: usize,
    /// The earliest submit time (Unix seconds).
    pub start: Seconds,
    /// Length of the arrival window in days: submit times fall in `[start, start + days × 86400)`.
    pub days: f64,
    /// Offered GPU-seconds as a fraction of the cluster's GPU capacity over the arrival window.
    pub load: f64,
}

impl GenSpec {
    /// A spec with `load` 1.0.
    pub fn new(seed: u64, workloads: usize, start: Seconds, days: f64) -> Self {
        GenSpec { seed, workloads, start, days, load: 1.0 }
    }

    /// Checks the numbers; the message says what to fix.
    pub fn validate(&self) -> Result<(), GenSpecError> {
        if !(self.days.is_finite() && self.days * DAY >= 1.0) {
            return Err(GenSpecError::Days { days: self.days });
        }
        if !(self.load.is_finite() && self.load > 0.0) {
            return Err(GenSpecError::Load { load: self.load });
        }
        Ok(())
    }
}

/// A [`GenSpec`] the generator cannot honour: there is no window to spread arrivals over, or no
/// load to scale run times to.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum GenSpecError {
    /// The arrival window is shorter than a second, or not a number.
    #[error("days is {days}; give an arrival window of at least one second")]
    Days { days: f64 },
    /// The offered load is not a positive number.
    #[error("load is {load}; give a positive fraction of the cluster's GPU capacity")]
    Load { load: f64 },
}

/// Share of arrivals by kind, in percent (for tenants with GPU quota).
pub const KIND_MIX: [(Kind, u32); 5] = [
    (Kind::PipelineStep, 35),
    (Kind::Training, 25),
    (Kind::Batch, 20),
    (Kind::Notebook, 12),
    (Kind::Serving, 8),
];

/// Mean length of a tenant's active period, in days.
pub const MEAN_ACTIVE_DAYS: f64 = 2.0;
/// Mean length of a tenant's quiet period, in days.
pub const MEAN_QUIET_DAYS: f64 = 1.0;
/// Arrival rate in an active period relative to a quiet one.
pub const ACTIVE_RATE_FACTOR: f64 = 10.0;
/// Share of GPU workloads that accept one GPU model only.
pub const ONE_MODEL_SHARE: f64 = 0.7;

/// CPU per whole GPU of a pod, in milli-cores.
pub const CPU_MILLI_PER_GPU: u32 = 8000;
/// Memory per whole GPU of a pod, in MiB.
pub const MEMORY_MIB_PER_GPU: u64 = 64 * 1024;
/// The least CPU of a pod that shares a GPU, in milli-cores.
pub const SHARED_MIN_CPU_MILLI: u32 = 2000;
/// The least memory of a pod that shares a GPU, in MiB.
pub const SHARED_MIN_MEMORY_MIB: u64 = 8 * 1024;
/// CPU of a CPU-only pipeline step, in milli-cores.
pub const CPU_STEP_CPU_MILLI: u32 = 4000;
/// Memory of a CPU-only pipeline step, in MiB.
pub const CPU_STEP_MEMORY_MIB: u64 = 16 * 1024;

const MINUTE: f64 = 60.0;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86400.0;

/// The run-time distribution of a kind: log-normal with this median (seconds) and σ of the
/// logarithm, clipped to `[min, max]` seconds before load scaling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Runtime {
    pub median: f64,
    pub sigma: f64,
    pub min: f64,
    pub max: f64,
}

/// Median and σ of a notebook session (a stretch of work in it), clipped to 5 min – 2 h.
pub const SESSION: Runtime =
    Runtime { median: 30.0 * MINUTE, sigma: 0.7, min: 5.0 * MINUTE, max: 2.0 * HOUR };
/// Median and σ of the gap between two sessions, clipped to 15 min – 1 day.
pub const SESSION_GAP: Runtime = Runtime { median: 3.0 * HOUR, sigma: 0.8, min: 15.0 * MINUTE, max: DAY };

/// When a notebook's user works in it over its run of `duration` seconds (see the module
/// documentation): sessions from its start, alternating with idle gaps. Drawn from a stream of
/// its own (the seed and the workload id), so adding sessions changed no other draw.
pub fn sessions(seed: u64, id: u64, duration: Seconds) -> Vec<(Seconds, Seconds)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e6f_7465_626f_6f6b);
    rng.set_stream(id);
    let mut draw =
        |rt: Runtime| (rt.median * (rt.sigma * standard_normal(&mut rng)).exp()).clamp(rt.min, rt.max);
    let mut out = Vec::new();
    let mut t = 0.0;
    while (t as Seconds) < duration {
        let end = (t + draw(SESSION)).min(duration as f64);
        out.push((t.round() as Seconds, end.round() as Seconds));
        t = end + draw(SESSION_GAP);
    }
    out
}

/// The run-time distribution of each kind (see the module documentation).
pub fn runtime(kind: Kind) -> Runtime {
    let (median, sigma, min, max) = match kind {
        Kind::Training => (4.0 * HOUR, 1.0, 10.0 * MINUTE, 3.0 * DAY),
        Kind::PipelineStep => (20.0 * MINUTE, 0.8, MINUTE, 6.0 * HOUR),
        Kind::Batch => (HOUR, 1.0, 2.0 * MINUTE, DAY),
        Kind::Notebook => (3.0 * HOUR, 0.7, 15.0 * MINUTE, 12.0 * HOUR),
        Kind::Serving => (2.0 * DAY, 0.5, 6.0 * HOUR, 14.0 * DAY),
    };
    Runtime { median, sigma, min, max }
}

/// Generates `spec.workloads` workloads for the tenants of `tenancy` on a cluster with
/// `gpu_capacity_milli` milli-GPU; see the module documentation for the model. A spec that
/// [`GenSpec::validate`] refuses is refused here too, before anything is drawn.
pub fn generate(
    tenancy: &Tenancy,
    flavors: &FlavorMap,
    gpu_capacity_milli: u64,
    spec: &GenSpec,
) -> Result<Vec<SimWorkload>, GenSpecError> {
    generate_with_scale(tenancy, flavors, gpu_capacity_milli, spec).map(|(w, _)| w)
}

/// [`generate`], also returning the factor the drawn run times were multiplied by to meet
/// `spec.load` (1.0 when there is no GPU work to scale).
pub fn generate_with_scale(
    tenancy: &Tenancy,
    flavors: &FlavorMap,
    gpu_capacity_milli: u64,
    spec: &GenSpec,
) -> Result<(Vec<SimWorkload>, f64), GenSpecError> {
    spec.validate()?;
    let horizon = (spec.days * DAY).round() as Seconds;
    let plans = plan_tenants(tenancy, flavors);
    let counts = apportion(spec.workloads, &plans.iter().map(|p| p.weight).collect::<Vec<_>>());
    let mut drafts = Vec::with_capacity(spec.workloads);
    for (plan, &n) in plans.iter().zip(&counts) {
        if n == 0 {
            continue;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(plan.tenant as u64);
        let schedule = Schedule::draw(&mut rng, horizon);
        for _ in 0..n {
            let at = schedule.sample(&mut rng);
            drafts.push(draw_workload(&mut rng, plan, flavors.cpu.is_some(), at));
        }
    }
    let target = spec.load * gpu_capacity_milli as f64 * horizon as f64;
    let scale = scale_factor(&drafts, target);
    drafts.sort_by_key(|d| d.at); // stable: ties stay in draw order
    let out = drafts
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let id = i as u64 + 1;
            let duration = (d.raw * scale).max(d.min).round().max(1.0) as Seconds;
            let min_members = d.pod_sets.iter().map(|s| s.count).sum();
            SimWorkload {
                workload: Workload {
                    id,
                    name: format!("t{}-{}-{id:06}", d.tenant, d.kind.name()),
                    tenant: d.tenant,
                    kind: d.kind,
                    priority_class: None,
                    pod_sets: d.pod_sets,
                    min_members,
                    submitted: spec.start + d.at,
                    models: d.models,
                    expected_runtime: Some(duration),
                    charge: None,
                },
                duration,
                active: if d.kind == Kind::Notebook { sessions(spec.seed, id, duration) } else { Vec::new() },
            }
        })
        .collect();
    Ok((out, scale))
}

/// GPU-seconds the workloads ask for in all: Σ GPUs × duration over every pod (a shared GPU counts
/// as its fraction).
pub fn offered_gpu_seconds(workloads: &[SimWorkload]) -> f64 {
    workloads.iter().map(|w| gpu_milli(&w.workload.pod_sets) as f64 * w.duration as f64).sum::<f64>()
        / GPU_MILLI as f64
}

fn gpu_milli(pod_sets: &[PodSet]) -> u64 {
    pod_sets.iter().map(|s| s.count as u64 * s.request.gpu_total()).sum()
}

/// What a tenant submits and at what relative rate.
struct Plan {
    tenant: TenantId,
    /// Nominal milli-GPU per GPU model the tenant has quota of (all above 0).
    models: Vec<(ModelId, u64)>,
    /// Share of arrivals (GPUs of nominal quota, or GPU-equivalents of cpu quota).
    weight: f64,
    /// No GPU quota: CPU-only pipeline steps only.
    cpu_only: bool,
}

fn plan_tenants(tenancy: &Tenancy, flavors: &FlavorMap) -> Vec<Plan> {
    tenancy
        .tenants
        .iter()
        .enumerate()
        .map(|(tenant, t)| {
            let models: Vec<(ModelId, u64)> = t
                .quotas
                .iter()
                .enumerate()
                .filter(|&(f, q)| q.nominal > 0 && !tenancy.flavors.get(f).is_some_and(|fl| fl.is_cpu()))
                .filter_map(|(f, q)| flavors.model_of(f).map(|m| (m, q.nominal)))
                .collect();
            let gpu: u64 = models.iter().map(|&(_, n)| n).sum();
            let (weight, cpu_only) = if gpu > 0 {
                (gpu as f64 / GPU_MILLI as f64, false)
            } else {
                let cpu = flavors.cpu.and_then(|c| t.quotas.get(c)).map_or(0, |q| q.nominal);
                (cpu as f64 / CPU_MILLI_PER_GPU as f64, true)
            };
            Plan { tenant, models, weight, cpu_only }
        })
        .collect()
}

/// Splits `n` in proportion to `weights`, largest remainder first (ties to the earlier weight).
fn apportion(n: usize, weights: &[f64]) -> Vec<usize> {
    let total: f64 = weights.iter().filter(|w| w.is_finite() && **w > 0.0).sum();
    if total <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> =
        weights.iter().map(|&w| if w.is_finite() && w > 0.0 { n as f64 * w / total } else { 0.0 }).collect();
    let mut counts: Vec<usize> = exact.iter().map(|&e| e.floor() as usize).collect();
    let given: usize = counts.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| exact[i] > 0.0).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b))
    });
    for &i in order.iter().cycle().take(n.saturating_sub(given)) {
        counts[i] += 1;
    }
    counts
}

/// A tenant's on/off arrival density over `[0, horizon)`: segments with their relative rate.
struct Schedule {
    /// `(start, end, rate)` in seconds from the window's start.
    segments: Vec<(f64, f64, f64)>,
    /// Cumulative rate × length at the end of each segment.
    mass: Vec<f64>,
    horizon: Seconds,
}

impl Schedule {
    fn draw(rng: &mut ChaCha8Rng, horizon: Seconds) -> Schedule {
        let end = horizon as f64;
        let active_share = MEAN_ACTIVE_DAYS / (MEAN_ACTIVE_DAYS + MEAN_QUIET_DAYS);
        let mut active = rng.gen::<f64>() < active_share;
        let (mut t, mut total) = (0.0, 0.0);
        let (mut segments, mut mass) = (Vec::new(), Vec::new());
        while t < end {
            let (mean, rate) =
                if active { (MEAN_ACTIVE_DAYS, ACTIVE_RATE_FACTOR) } else { (MEAN_QUIET_DAYS, 1.0) };
            let next = (t + exponential(rng, mean * DAY)).min(end);
            total += (next - t) * rate;
            segments.push((t, next, rate));
            mass.push(total);
            t = next;
            active = !active;
        }
        Schedule { segments, mass, horizon }
    }

    /// A submit offset in `[0, horizon)` seconds, drawn from the density.
    fn sample(&self, rng: &mut ChaCha8Rng) -> Seconds {
        let Some(&total) = self.mass.last() else { return 0 };
        let u = rng.gen::<f64>() * total;
        let i = self.mass.partition_point(|&m| m <= u).min(self.segments.len() - 1);
        let (start, end, rate) = self.segments[i];
        let before = if i == 0 { 0.0 } else { self.mass[i - 1] };
        let t = (start + (u - before) / rate).clamp(start, end);
        (t.floor() as Seconds).clamp(0, self.horizon - 1)
    }
}

/// Exponential with this mean.
fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

/// Standard normal (Box–Muller, cosine branch).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// One of `choices` with probability proportional to its weight.
fn weighted<T: Copy>(rng: &mut ChaCha8Rng, choices: &[(T, u32)]) -> T {
    let total: u64 = choices.iter().map(|c| c.1 as u64).sum();
    let mut u = rng.gen_range(0..total);
    for &(c, w) in choices {
        if u < w as u64 {
            return c;
        }
        u -= w as u64;
    }
    choices[choices.len() - 1].0
}

/// A workload before load scaling and numbering.
struct Draft {
    tenant: TenantId,
    kind: Kind,
    /// Seconds after the window's start.
    at: Seconds,
    pod_sets: Vec<PodSet>,
    models: Option<ModelSet>,
    /// Drawn run time, seconds, clipped.
    raw: f64,
    /// The kind's lower clip.
    min: f64,
    gpu_milli: u64,
}

fn whole(gpus: u32) -> PodRequest {
    PodRequest::whole_gpus(CPU_MILLI_PER_GPU * gpus, MEMORY_MIB_PER_GPU * gpus as u64, gpus)
}

fn shared(milli: u32) -> PodRequest {
    let cpu = (CPU_MILLI_PER_GPU as u64 * milli as u64 / GPU_MILLI as u64) as u32;
    let memory = MEMORY_MIB_PER_GPU * milli as u64 / GPU_MILLI as u64;
    PodRequest::shared_gpu(cpu.max(SHARED_MIN_CPU_MILLI), memory.max(SHARED_MIN_MEMORY_MIB), milli)
}

fn cpu_step() -> PodRequest {
    PodRequest::cpu_only(CPU_STEP_CPU_MILLI, CPU_STEP_MEMORY_MIB)
}

/// Halves the pod count, then the GPUs per pod, until `pods × gpus ≤ cap` (or both are 1).
fn fit_cap(mut pods: u32, mut gpus: u32, cap: u32) -> (u32, u32) {
    while pods > 1 && pods * gpus > cap {
        pods /= 2;
    }
    while gpus > 1 && pods * gpus > cap {
        gpus /= 2;
    }
    (pods, gpus)
}

fn draw_workload(rng: &mut ChaCha8Rng, plan: &Plan, has_cpu_flavor: bool, at: Seconds) -> Draft {
    let kind = if plan.cpu_only { Kind::PipelineStep } else { weighted(rng, &KIND_MIX) };
    let (models, cap_milli) = if plan.cpu_only {
        (None, 0)
    } else if rng.gen::<f64>() < ONE_MODEL_SHARE {
        let weights: Vec<(usize, u32)> =
            plan.models.iter().enumerate().map(|(i, &(_, n))| (i, n.min(u32::MAX as u64) as u32)).collect();
        let (m, nominal) = plan.models[weighted(rng, &weights)];
        (Some(ModelSet::from_iter([m])), nominal)
    } else {
        (None, plan.models.iter().map(|&(_, n)| n).max().unwrap_or(0))
    };
    let cap = ((cap_milli / GPU_MILLI as u64).max(1)).min(u32::MAX as u64) as u32;
    let single = |request: PodRequest| vec![PodSet { name: "main".into(), count: 1, request }];
    let (pod_sets, gpu_work) = match kind {
        _ if plan.cpu_only => (single(cpu_step()), false),
        Kind::Training => {
            let (pods, gpus) = if rng.gen::<f64>() < 0.4 {
                (1, weighted(rng, &[(1, 1), (2, 1), (4, 1), (8, 1)]))
            } else {
                let pods = weighted(rng, &[(2, 35), (4, 30), (8, 20), (16, 10), (32, 5)]);
                let gpus = if pods >= 4 { 8 } else { weighted(rng, &[(1, 1), (2, 1), (4, 1), (8, 1)]) };
                (pods, gpus)
            };
            let (pods, gpus) = fit_cap(pods, gpus, cap);
            let name = if pods > 1 { "worker" } else { "main" };
            (vec![PodSet { name: name.into(), count: pods, request: whole(gpus) }], true)
        }
        Kind::PipelineStep => {
            let u = rng.gen::<f64>();
            if u < 0.5 {
                (single(whole(1)), true)
            } else if u < 0.8 {
                (single(shared(weighted(rng, &[(250, 1), (500, 1)]))), true)
            } else if has_cpu_flavor {
                (single(cpu_step()), false)
            } else {
                (single(whole(1)), true)
            }
        }
        Kind::Batch => (single(whole(fit_cap(1, weighted(rng, &[(1, 1), (2, 1)]), cap).1)), true),
        Kind::Notebook => (single(if rng.gen::<f64>() < 0.6 { whole(1) } else { shared(500) }), true),
        Kind::Serving => (single(if rng.gen::<f64>() < 0.7 { whole(1) } else { shared(500) }), true),
    };
    let rt = runtime(kind);
    let raw = (rt.median * (rt.sigma * standard_normal(rng)).exp()).clamp(rt.min, rt.max);
    let gpu_milli = gpu_milli(&pod_sets);
    Draft {
        tenant: plan.tenant,
        kind,
        at,
        pod_sets,
        models: if gpu_work { models } else { None },
        raw,
        min: rt.min,
        gpu_milli,
    }
}

/// The factor `f` with `Σ milli-GPU × max(f × raw, min) = target`; 0 when the lower clips alone
/// reach the target, 1 when there is no GPU work.
fn scale_factor(drafts: &[Draft], target: f64) -> f64 {
    let offered = |f: f64| drafts.iter().map(|d| d.gpu_milli as f64 * (f * d.raw).max(d.min)).sum::<f64>();
    let unscaled: f64 = drafts.iter().map(|d| d.gpu_milli as f64 * d.raw).sum();
    if unscaled <= 0.0 {
        return 1.0;
    }
    let f0 = target / unscaled;
    if f0 >= 1.0 {
        return f0; // raw ≥ min for every draft, so no lower clip applies
    }
    if offered(0.0) >= target {
        return 0.0;
    }
    // offered(lo) < target ≤ offered(hi); offered is continuous and non-decreasing.
    let (mut lo, mut hi) = (0.0, f0.max(f64::MIN_POSITIVE));
    while offered(hi) < target {
        hi = (hi * 2.0).min(1.0);
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if offered(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::model::{could_ever_fit, Node};
    use gantry_core::tenancy::{Flavor, FlavorQuota, Tenant, Timing};
    use std::collections::HashMap;

    const A100: ModelId = ModelId(0);
    const V100: ModelId = ModelId(1);
    const START: Seconds = 1_767_225_600; // 2026-01-01

    /// The 18 Venus tenants of examples/tenants/venus.yaml: (A100, V100M32, cpu cores).
    const VENUS: [(u64, u64, u64); 18] = [
        (100, 60, 320),
        (51, 29, 160),
        (46, 26, 144),
        (46, 26, 144),
        (41, 23, 128),
        (41, 23, 128),
        (41, 23, 128),
        (41, 23, 128),
        (41, 23, 128),
        (36, 20, 112),
        (31, 17, 96),
        (31, 17, 96),
        (20, 12, 64),
        (20, 12, 64),
        (10, 6, 32),
        (10, 6, 32),
        (5, 3, 16),
        (5, 3, 16),
    ];
    const VENUS_GPU_MILLI: u64 = 968_000;

    /// Flavors A100, V100M32 (models 0 and 1) and, if `cpu`, cpu; quotas in GPUs and cores.
    fn tenancy(quotas: &[(u64, u64, u64)], cpu: bool) -> (Tenancy, FlavorMap) {
        let mut flavors = vec![
            Flavor { name: "A100".into(), price_micros: 0, sharing: true },
            Flavor { name: "V100M32".into(), price_micros: 0, sharing: true },
        ];
        if cpu {
            flavors.push(Flavor { name: "cpu".into(), price_micros: 0, sharing: false });
        }
        let nf = flavors.len();
        let tenants = quotas
            .iter()
            .enumerate()
            .map(|(i, &(a, v, c))| {
                let nominal = [a * 1000, v * 1000, c * 1000];
                Tenant {
                    name: format!("t{i}"),
                    namespaces: vec![format!("t{i}")],
                    cohort: None,
                    quotas: nominal[..nf]
                        .iter()
                        .map(|&nominal| FlavorQuota { nominal, ..Default::default() })
                        .collect(),
                    weight: 1.0,
                    allowed_classes: vec![],
                    kind_classes: [0; 5],
                    prices_micros: vec![0; nf],
                    budget: None,
                    preemption: Default::default(),
                    idle_notebooks: None,
                }
            })
            .collect();
        let t = Tenancy {
            flavors,
            cohorts: vec![],
            tenants,
            priority_classes: vec![],
            timing: Timing::default(),
            currency: "USD".into(),
        };
        let map = FlavorMap { by_model: vec![Some(0), Some(1)], cpu: cpu.then_some(2) };
        (t, map)
    }

    fn venus() -> (Tenancy, FlavorMap) {
        tenancy(&VENUS, true)
    }

    fn spec(seed: u64, n: usize, days: f64) -> GenSpec {
        GenSpec::new(seed, n, START, days)
    }

    /// The cap a workload's whole GPUs must keep to, in GPUs.
    fn cap(t: &Tenancy, w: &Workload) -> u64 {
        let q = &t.tenants[w.tenant].quotas;
        let nominal = match w.models {
            Some(s) if s == ModelSet::from_iter([A100]) => q[0].nominal,
            Some(s) if s == ModelSet::from_iter([V100]) => q[1].nominal,
            Some(s) => panic!("{} accepts an unexpected model set {s:?}", w.name),
            None => q[0].nominal.max(q[1].nominal),
        };
        (nominal / 1000).max(1)
    }

    #[test]
    fn deterministic_for_a_seed() {
        let (t, f) = venus();
        let a = generate(&t, &f, VENUS_GPU_MILLI, &spec(7, 3000, 10.0)).unwrap();
        let b = generate(&t, &f, VENUS_GPU_MILLI, &spec(7, 3000, 10.0)).unwrap();
        let c = generate(&t, &f, VENUS_GPU_MILLI, &spec(8, 3000, 10.0)).unwrap();
        assert_eq!(a.len(), 3000);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn kind_mix_by_count() {
        let (t, f) = venus();
        let n = 20_000;
        let ws = generate(&t, &f, VENUS_GPU_MILLI, &spec(1, n, 23.0)).unwrap();
        let mut counts: HashMap<Kind, usize> = HashMap::new();
        for w in &ws {
            *counts.entry(w.workload.kind).or_default() += 1;
        }
        for (kind, pct) in KIND_MIX {
            let share = counts[&kind] as f64 / n as f64 * 100.0;
            assert!((share - pct as f64).abs() < 1.5, "{kind}: {share:.2} % of arrivals, want {pct} %");
        }
    }

    #[test]
    fn shapes_gangs_caps_and_node_fit() {
        let (t, f) = venus();
        let ws = generate(&t, &f, VENUS_GPU_MILLI, &spec(2, 20_000, 23.0)).unwrap();
        let nodes = [
            Node::new("a100", 128_000, 1_048_576, 8, Some(A100)),
            Node::new("v100", 96_000, 786_432, 8, Some(V100)),
            Node::new("cpu", 64_000, 262_144, 0, None),
        ];
        let mut gangs = 0;
        let mut sizes = std::collections::BTreeSet::new();
        for sw in &ws {
            let w = &sw.workload;
            w.validate().unwrap();
            assert_eq!(w.pod_sets.len(), 1);
            assert_eq!(w.min_members, w.members(), "{}: strict gang", w.name);
            assert_eq!(w.expected_runtime, Some(sw.duration));
            assert!(sw.duration >= runtime(w.kind).min as Seconds, "{}: {} s", w.name, sw.duration);
            let whole_gpus = w
                .pod_sets
                .iter()
                .filter(|s| !s.request.is_sharing())
                .map(|s| s.count as u64 * s.request.gpu_count as u64)
                .sum::<u64>();
            assert!(whole_gpus <= cap(&t, w), "{}: {whole_gpus} GPUs over its cap {}", w.name, cap(&t, w));
            if w.members() > 1 {
                assert_eq!(w.kind, Kind::Training, "{}", w.name);
                assert!((2..=32).contains(&w.members()) && w.members().is_power_of_two(), "{}", w.name);
                gangs += 1;
                sizes.insert(w.members());
            }
            if !w.wants_gpu() {
                assert_eq!(w.kind, Kind::PipelineStep);
                assert_eq!(w.models, None);
            }
            for s in &w.pod_sets {
                let mut r = s.request;
                r.allowed_models = w.models;
                let fits: Vec<bool> = nodes.iter().map(|n| could_ever_fit(n, &r)).collect();
                if r.wants_gpu() {
                    let accepts = |m: ModelId| w.models.is_none_or(|s| s.contains(m));
                    assert_eq!(fits[0], accepts(A100), "{}: {r:?}", w.name);
                    assert_eq!(fits[1], accepts(V100), "{}: {r:?}", w.name);
                } else {
                    assert!(fits[2], "{}: {r:?}", w.name);
                }
            }
        }
        assert!(gangs > 1000, "{gangs} gangs");
        assert!(sizes.contains(&2) && sizes.contains(&4) && sizes.contains(&8), "gang sizes {sizes:?}");
    }

    #[test]
    fn big_gangs_where_quota_allows() {
        // One tenant with 512 A100s and 128 V100s: 32-pod gangs of 8 GPUs fit its A100 quota.
        let (t, f) = tenancy(&[(512, 128, 1024)], true);
        let ws = generate(&t, &f, 640_000, &spec(3, 5000, 10.0)).unwrap();
        let max = ws.iter().map(|w| w.workload.members()).max().unwrap();
        assert_eq!(max, 32);
        for w in ws.iter().filter(|w| w.workload.members() == 32) {
            assert_ne!(
                w.workload.models,
                Some(ModelSet::from_iter([V100])),
                "256 GPUs do not fit the V100 quota"
            );
        }
    }

    #[test]
    fn offered_load_meets_target() {
        let (t, f) = venus();
        for (n, days, load) in
            [(20_000, 23.0, 1.0), (20_000, 10.0, 1.0), (5_000, 60.0, 0.7), (2_000, 3.0, 1.5)]
        {
            let s = GenSpec { load, ..spec(4, n, days) };
            let (ws, scale) = generate_with_scale(&t, &f, VENUS_GPU_MILLI, &s).unwrap();
            let target = load * 968.0 * days * DAY;
            let offered = offered_gpu_seconds(&ws);
            assert!(
                (offered / target - 1.0).abs() < 0.01,
                "n {n} days {days} load {load}: offered {offered:.0} target {target:.0} (scale {scale})"
            );
        }
    }

    #[test]
    fn arrivals_in_window_sorted_and_numbered() {
        let (t, f) = venus();
        let days = 9.5;
        let ws = generate(&t, &f, VENUS_GPU_MILLI, &spec(5, 20_000, days)).unwrap();
        let end = START + (days * DAY) as Seconds;
        for (i, w) in ws.iter().enumerate() {
            let w = &w.workload;
            assert_eq!(w.id, i as u64 + 1);
            assert!(w.submitted >= START && w.submitted < end, "{} at {}", w.name, w.submitted);
            assert_eq!(w.name, format!("t{}-{}-{:06}", w.tenant, w.kind.name(), w.id));
            assert_eq!(w.priority_class, None);
        }
        assert!(ws.windows(2).all(|p| p[0].workload.submitted <= p[1].workload.submitted));
        // Both ends of the window are used.
        assert!(ws[0].workload.submitted < START + 3600);
        assert!(ws.last().unwrap().workload.submitted >= end - 3600);
    }

    #[test]
    fn arrivals_follow_quota() {
        let (t, f) = venus();
        let n = 20_000;
        let ws = generate(&t, &f, VENUS_GPU_MILLI, &spec(6, n, 23.0)).unwrap();
        let mut counts = vec![0usize; t.tenants.len()];
        for w in &ws {
            counts[w.workload.tenant] += 1;
        }
        for (i, &(a, v, _)) in VENUS.iter().enumerate() {
            let want = n as f64 * (a + v) as f64 / 968.0;
            assert!(
                (counts[i] as f64 - want).abs() <= 1.0,
                "tenant {i}: {} arrivals, want {want:.1}",
                counts[i]
            );
        }
    }

    #[test]
    fn arrivals_are_bursty() {
        // Daily counts of one tenant vary far more than a steady Poisson stream's would.
        let (t, f) = venus();
        let days = 60;
        let ws = generate(&t, &f, VENUS_GPU_MILLI, &spec(9, 20_000, days as f64)).unwrap();
        let mut daily = vec![0f64; days];
        for w in ws.iter().filter(|w| w.workload.tenant == 0) {
            daily[((w.workload.submitted - START) / 86400) as usize] += 1.0;
        }
        let mean = daily.iter().sum::<f64>() / days as f64;
        let var = daily.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (days - 1) as f64;
        assert!(var / mean > 5.0, "index of dispersion {:.1} (mean {mean:.1} a day)", var / mean);
    }

    #[test]
    fn models_follow_quota() {
        // t0 has only A100 quota, t1 only V100M32, t2 both.
        let (t, f) = tenancy(&[(40, 0, 80), (0, 24, 48), (16, 16, 64)], true);
        let ws = generate(&t, &f, 96_000, &spec(10, 6000, 20.0)).unwrap();
        let a100 = Some(ModelSet::from_iter([A100]));
        let v100 = Some(ModelSet::from_iter([V100]));
        let mut by_tenant: HashMap<(usize, Option<ModelSet>), usize> = HashMap::new();
        for w in ws.iter().filter(|w| w.workload.wants_gpu()) {
            *by_tenant.entry((w.workload.tenant, w.workload.models)).or_default() += 1;
        }
        assert_eq!(by_tenant.get(&(0, v100)), None, "an A100-only tenant never needs a V100");
        assert_eq!(by_tenant.get(&(1, a100)), None);
        for tenant in 0..3 {
            let pinned =
                by_tenant.get(&(tenant, a100)).unwrap_or(&0) + by_tenant.get(&(tenant, v100)).unwrap_or(&0);
            let any = by_tenant[&(tenant, None)];
            let share = pinned as f64 / (pinned + any) as f64;
            assert!((share - ONE_MODEL_SHARE).abs() < 0.04, "tenant {tenant}: {share:.3} pinned");
        }
        // t2 pins each model about equally often.
        let (a, v) = (by_tenant[&(2, a100)] as f64, by_tenant[&(2, v100)] as f64);
        assert!((a / (a + v) - 0.5).abs() < 0.06, "{a} A100, {v} V100");
    }

    #[test]
    fn tenants_without_gpu_quota() {
        // t1 has only cpu quota (16 cores: two GPU-equivalents); t2 has none at all.
        let (t, f) = tenancy(&[(6, 0, 16), (0, 0, 16), (0, 0, 0)], true);
        let ws = generate(&t, &f, 8000, &spec(11, 4000, 10.0)).unwrap();
        let count = |i| ws.iter().filter(|w| w.workload.tenant == i).count();
        assert_eq!((count(0), count(1), count(2)), (3000, 1000, 0));
        for w in ws.iter().filter(|w| w.workload.tenant == 1) {
            assert_eq!(w.workload.kind, Kind::PipelineStep);
            assert!(!w.workload.wants_gpu());
        }
        // Without a cpu flavor: no CPU-only work, and t1 (no GPU quota) gets nothing.
        let (t, f) = tenancy(&[(6, 0, 0), (0, 0, 0)], false);
        let ws = generate(&t, &f, 8000, &spec(11, 4000, 10.0)).unwrap();
        assert!(ws.iter().all(|w| w.workload.tenant == 0 && w.workload.wants_gpu()));
        assert_eq!(ws.len(), 4000);
    }

    #[test]
    fn edge_cases() {
        let (t, f) = venus();
        assert!(generate(&t, &f, VENUS_GPU_MILLI, &spec(1, 0, 1.0)).unwrap().is_empty());
        let (t0, f0) = tenancy(&[(0, 0, 0)], true);
        assert!(generate(&t0, &f0, 0, &spec(1, 100, 1.0)).unwrap().is_empty());
        assert_eq!(
            spec(1, 10, 0.0).validate().unwrap_err().to_string(),
            "days is 0; give an arrival window of at least one second"
        );
        assert_eq!(
            GenSpec { load: 0.0, ..spec(1, 10, 1.0) }.validate().unwrap_err().to_string(),
            "load is 0; give a positive fraction of the cluster's GPU capacity"
        );
        assert!(GenSpec { load: f64::NAN, ..spec(1, 10, 1.0) }.validate().is_err());
        // The generator refuses what validate refuses, rather than panic.
        assert_eq!(
            generate(&t, &f, VENUS_GPU_MILLI, &spec(1, 10, f64::INFINITY)),
            Err(GenSpecError::Days { days: f64::INFINITY })
        );
        // A tiny load leaves every run time at its lower clip.
        let (ws, scale) =
            generate_with_scale(&t, &f, VENUS_GPU_MILLI, &GenSpec { load: 1e-6, ..spec(1, 500, 5.0) })
                .unwrap();
        assert_eq!(scale, 0.0);
        assert!(ws.iter().all(|w| w.duration == runtime(w.workload.kind).min as Seconds));
    }

    #[test]
    fn apportion_adds_up() {
        assert_eq!(apportion(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        assert_eq!(apportion(7, &[0.0, 2.0, 5.0]), vec![0, 2, 5]);
        assert_eq!(apportion(5, &[0.0, 0.0]), vec![0, 0]);
        assert_eq!(apportion(1000, &[160.0, 8.0, 8.0]).iter().sum::<usize>(), 1000);
    }

    #[test]
    fn samplers() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let n = 200_000;
        let z: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "mean {mean}, var {var}");
        let e = (0..n).map(|_| exponential(&mut rng, 2.0)).sum::<f64>() / n as f64;
        assert!((e - 2.0).abs() < 0.02, "mean {e}");
    }
}
