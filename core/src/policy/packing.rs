//! GPU packing: fill partly used GPUs first, then partly used nodes, and open idle nodes last.

use super::{Policy, ScoreCx};
use crate::model::{Node, PodRequest, GPU_MILLI};

/// The simulator's three tiers: a share pod into a used GPU scores 91..100 (fuller is better), a
/// pod on a partly used node `max(50 − idle GPUs it takes, 33)`, and a fully idle node
/// `max(33 − n, n)` for n GPUs. CPU-only pods score 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuPacking;

impl Policy for GpuPacking {
    fn name(&self) -> &'static str {
        "packing"
    }

    fn score(&self, node: &Node, pod: &PodRequest, _cx: ScoreCx) -> f64 {
        if !pod.wants_gpu() {
            return 0.0;
        }
        let idle = node.idle_gpus() as i64;
        if idle == node.gpu_count() as i64 {
            return (33 - idle).max(idle) as f64;
        }
        // The first `gpu_count` fitting GPUs in ascending order of free milli (stable by index).
        let mut order: Vec<u32> = (0..node.gpu_count()).collect();
        order.sort_by_key(|&g| node.gpu_free[g as usize]);
        let picked: Vec<u32> = order
            .into_iter()
            .map(|g| node.gpu_free[g as usize])
            .filter(|&f| f >= pod.gpu_milli)
            .take(pod.gpu_count as usize)
            .collect();
        let fresh = picked.iter().filter(|&&f| f == GPU_MILLI).count() as i64;
        if fresh > 0 {
            (50 - fresh).max(33) as f64
        } else {
            let left = picked.first().copied().unwrap_or(0) as i64;
            (100 - (left * 100 / GPU_MILLI as i64) / 10).max(50) as f64
        }
    }
}
