//! Random-fit: a uniformly random feasible node, then a uniformly random GPU that fits.

use super::{Policy, ScoreCx};
use crate::model::{lowest_index_gpus, Node, PodRequest};

/// Every feasible node gets an independent pseudo-random score from the decision's salt, so the
/// highest is a uniform draw over the feasible nodes.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomFit;

/// SplitMix64 finaliser: a well-mixed 64-bit hash.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Policy for RandomFit {
    fn name(&self) -> &'static str {
        "random"
    }

    fn score(&self, _node: &Node, _pod: &PodRequest, cx: ScoreCx) -> f64 {
        (mix(cx.salt ^ mix(cx.node as u64)) >> 11) as f64
    }

    fn pick_gpus(&self, node: &Node, pod: &PodRequest, cx: ScoreCx) -> Option<Vec<(u32, u32)>> {
        if !pod.is_sharing() {
            return lowest_index_gpus(node, pod);
        }
        let fitting: Vec<u32> =
            (0..node.gpu_count()).filter(|&g| node.gpu_free[g as usize] >= pod.gpu_milli).collect();
        if fitting.is_empty() {
            return None;
        }
        let i = mix(cx.salt.rotate_left(17) ^ cx.node as u64) % fitting.len() as u64;
        Some(vec![(fitting[i as usize], pod.gpu_milli)])
    }

    fn cacheable(&self) -> bool {
        false
    }
}
