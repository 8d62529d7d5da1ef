//! Dot-product: prefer the node whose free (CPU, GPU) vector is least aligned with the pod's.

use super::{scoring_cpu, Policy, Scale, ScoreCx};
use crate::model::{Node, PodRequest};

/// `trunc(100 × (1 − a·b / 2))` with a = the node's free (CPU, GPU) and b = the pod's request,
/// each normalised by the largest node. The paper's `-dimext merge -norm max` variant.
#[derive(Clone, Copy, Debug)]
pub struct DotProduct {
    pub scale: Scale,
}

impl Policy for DotProduct {
    fn name(&self) -> &'static str {
        "dot-product"
    }

    fn score(&self, node: &Node, pod: &PodRequest, _cx: ScoreCx) -> f64 {
        let cpu = scoring_cpu(pod);
        if node.cpu_free < cpu {
            return 0.0;
        }
        let s = self.scale;
        let dot = (node.cpu_free as f64 / s.max_cpu) * (cpu as f64 / s.max_cpu)
            + (node.gpu_free_total as f64 / s.max_gpu_milli) * (pod.gpu_total() as f64 / s.max_gpu_milli);
        (100.0 * (1.0 - dot / 2.0)).trunc()
    }
}
