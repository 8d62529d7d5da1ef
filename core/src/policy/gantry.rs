//! Gantry's default placement policy. See the module docs of [`GantryPolicy`].

use super::fgd::sigmoid;
use super::{scoring_cpu, Policy, ScoreCx};
use crate::frag::{fragment, take_ascending, TypicalPod, Workload};
use crate::model::{lowest_index_gpus, Node, PodRequest};

/// Gantry's default policy (work in progress: FGD in full precision).
#[derive(Clone, Debug)]
pub struct GantryPolicy {
    typical: Vec<TypicalPod>,
}

impl GantryPolicy {
    pub fn new(expected: &[PodRequest]) -> Self {
        GantryPolicy { typical: Workload::typical(expected, 0.95).typical }
    }

    fn best(&self, node: &Node, pod: &PodRequest) -> (f64, Option<u32>) {
        let model = node.model.map(|m| m.0);
        let before = fragment(&self.typical, model, node.cpu_free, &node.gpu_free);
        let cpu_after = node.cpu_free.saturating_sub(scoring_cpu(pod));
        let score = |after: f64| sigmoid((before - after) / 1000.0);
        if !pod.is_sharing() {
            let Some(free_after) = take_ascending(&node.gpu_free, pod.gpu_count, pod.gpu_milli) else {
                return (f64::NEG_INFINITY, None);
            };
            return (score(fragment(&self.typical, model, cpu_after, &free_after)), None);
        }
        let mut best = (f64::NEG_INFINITY, None);
        let mut free = node.gpu_free.clone();
        for g in 0..free.len() {
            let f = node.gpu_free[g];
            if f < pod.gpu_milli {
                continue;
            }
            free[g] = f - pod.gpu_milli;
            let s = score(fragment(&self.typical, model, cpu_after, &free));
            free[g] = f;
            if s > best.0 {
                best = (s, Some(g as u32));
            }
        }
        best
    }
}

impl Policy for GantryPolicy {
    fn name(&self) -> &'static str {
        "gantry"
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
