//! Best-fit: the node with the least CPU and GPU left over after placement.

use super::{scoring_cpu, Policy, Scale, ScoreCx};
use crate::model::{Node, PodRequest};

/// `trunc(100 × (1 − ½·cpu left after / largest CPU − ½·GPU left after / largest GPU))`. Only
/// the node's total free GPU counts, not how it is spread over GPUs. (The simulator's min-max
/// normalisation over nodes keeps order and ties, so it is left out.)
#[derive(Clone, Copy, Debug)]
pub struct BestFit {
    pub scale: Scale,
}

impl Policy for BestFit {
    fn name(&self) -> &'static str {
        "best-fit"
    }

    fn score(&self, node: &Node, pod: &PodRequest, _cx: ScoreCx) -> f64 {
        let cpu_left = node.cpu_free as f64 - scoring_cpu(pod) as f64;
        let gpu_left = node.gpu_free_total as f64 - pod.gpu_total() as f64;
        let s = self.scale;
        (100.0 * (1.0 - (0.5 * cpu_left / s.max_cpu + 0.5 * gpu_left / s.max_gpu_milli))).trunc()
    }
}
