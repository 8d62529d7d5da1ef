//! GPU clustering: keep pods of the same GPU kind together.

use super::{Policy, Scale, ScoreCx};
use crate::model::{Node, PodRequest};

/// Base `floor(25 × used GPU milli / largest node)` plus 75 when the node hosts only pods of this
/// pod's kind, 50 when it hosts this kind among others, 25 when it hosts no GPU pod and 0 when it
/// hosts only other kinds. CPU-only pods score 0 everywhere.
#[derive(Clone, Copy, Debug)]
pub struct GpuClustering {
    pub scale: Scale,
}

impl Policy for GpuClustering {
    fn name(&self) -> &'static str {
        "clustering"
    }

    fn score(&self, node: &Node, pod: &PodRequest, _cx: ScoreCx) -> f64 {
        let Some(kind) = pod.kind_tag() else { return 0.0 };
        let max = self.scale.max_gpu_milli as i64;
        let base = (25 * (max - node.gpu_free_total as i64)).div_euclid(max);
        let kinds = &node.gpu_pod_kinds;
        let has = kinds.iter().any(|&(k, _)| k == kind);
        let bonus = match (has, kinds.len()) {
            (true, 1) => 75,
            (true, _) => 50,
            (false, 0) => 25,
            (false, _) => 0,
        };
        (bonus + base) as f64
    }
}
