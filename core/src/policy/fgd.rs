//! FGD (fragmentation gradient descent, Weng et al., USENIX ATC '23): place the pod where it grows
//! the cluster's fragmentation the least.

use super::{scoring_cpu, Policy, ScoreCx};
use crate::frag::{fragment, take_ascending, PodMix};
use crate::model::{lowest_index_gpus, Node, PodRequest};

/// Score `trunc(100 × sigmoid((F_before − F_after) / 1000))` with F the node's fragment in
/// milli-GPU. A sharing pod tries every GPU it fits and keeps the best (first by index on ties,
/// compared after truncation, as the paper's simulator does); other pods take the GPUs with the
/// least free milli that fit.
#[derive(Clone, Debug)]
pub struct Fgd {
    workload: PodMix,
}

impl Fgd {
    /// The share of pods the typical pods cover, as in the paper.
    pub const COVERAGE: f64 = 0.95;

    pub fn new(workload: PodMix) -> Self {
        Fgd { workload }
    }

    /// The best truncated score and the GPU that reaches it first.
    fn best(&self, node: &Node, pod: &PodRequest) -> (f64, Option<u32>) {
        let model = node.model.map(|m| m.0);
        descend(node, pod, |cpu, _mem, free| fragment(&self.workload.typical, model, cpu, free))
    }
}

/// The fragmentation gradient step shared by FGD and Gantry: with `frag(cpu, memory, per-GPU
/// free)` a node's fragment, scores `trunc(100 × sigmoid((F_before − F_after) / 1000))`. A
/// sharing pod tries each GPU it fits and keeps the best (the first by index on ties, compared
/// after truncation); other pods take the fitting GPUs with the least free milli. Returns the
/// score and, for a sharing pod, the chosen GPU.
pub(crate) fn descend(
    node: &Node,
    pod: &PodRequest,
    frag: impl Fn(u32, u64, &[u32]) -> f64,
) -> (f64, Option<u32>) {
    let before = frag(node.cpu_free, node.memory_free, &node.gpu_free);
    let cpu = node.cpu_free.saturating_sub(scoring_cpu(pod));
    let mem = node.memory_free.saturating_sub(pod.memory_mib);
    let score = |after: f64| (100.0 * sigmoid((before - after) / 1000.0)).trunc();
    if !pod.is_sharing() {
        return match take_ascending(&node.gpu_free, pod.gpu_count, pod.gpu_milli) {
            Some(free) => (score(frag(cpu, mem, &free)), None),
            None => (0.0, None),
        };
    }
    let mut best: (f64, Option<u32>) = (f64::NEG_INFINITY, None);
    let mut seen: Vec<(u32, f64)> = Vec::with_capacity(4);
    let mut free = node.gpu_free.clone();
    for g in 0..free.len() {
        let f = node.gpu_free[g];
        if f < pod.gpu_milli {
            continue;
        }
        // The fragment does not depend on which GPU holds which amount, so GPUs with the same
        // free milli score the same.
        let s = match seen.iter().find(|(v, _)| *v == f) {
            Some(&(_, s)) => s,
            None => {
                free[g] = f - pod.gpu_milli;
                let s = score(frag(cpu, mem, &free));
                free[g] = f;
                seen.push((f, s));
                s
            }
        };
        if s > best.0 {
            best = (s, Some(g as u32));
        }
    }
    best
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Policy for Fgd {
    fn name(&self) -> &'static str {
        "fgd"
    }

    fn score(&self, node: &Node, pod: &PodRequest, _cx: ScoreCx) -> f64 {
        self.best(node, pod).0
    }

    fn pick_gpus(&self, node: &Node, pod: &PodRequest, _cx: ScoreCx) -> Option<Vec<(u32, u32)>> {
        if pod.is_sharing() {
            self.best(node, pod).1.map(|g| vec![(g, pod.gpu_milli)])
        } else {
            lowest_index_gpus(node, pod)
        }
    }
}
