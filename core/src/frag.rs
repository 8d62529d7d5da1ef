//! GPU fragmentation, as the FGD paper measures it: the GPU capacity on a node that the expected
//! workload could not use.
//!
//! The expected workload is a set of *typical pods*: the most frequent pod shapes, taken in
//! decreasing frequency until they cover a share (95 % in the paper) of all pods, each weighted by
//! its frequency. A node's fragment is the weighted sum, over typical pods, of the free GPU milli
//! that pod could not use there.

use crate::model::{ModelSet, Node, PodRequest};
use std::collections::HashMap;

/// One pod shape of the expected workload and its weight (the weights of a workload sum to 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TypicalPod {
    pub cpu_milli: u32,
    pub gpu_count: u32,
    pub gpu_milli: u32,
    pub allowed_models: Option<ModelSet>,
    pub weight: f64,
}

impl TypicalPod {
    fn key(p: &PodRequest) -> (u32, u32, u32, u64) {
        (p.cpu_milli, p.gpu_milli, p.gpu_count, p.allowed_models.map_or(0, |m| m.0))
    }
}

/// The mix of pod shapes a cluster expects (the FGD paper's "target workload"), as typical pods.
/// Not to be confused with [`crate::queue::Workload`], the unit the queue admits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodMix {
    pub typical: Vec<TypicalPod>,
}

impl PodMix {
    /// Groups `pods` by shape (CPU, GPU milli, GPU count, allowed models; memory is not part of the
    /// shape), sorts the groups by count (ties: larger CPU, milli, count, model set first) and keeps
    /// the shortest prefix covering `coverage` (0..=1) of the pods. `coverage = 1` keeps every shape.
    pub fn typical(pods: &[PodRequest], coverage: f64) -> PodMix {
        let groups = shapes(pods);
        let need = coverage * pods.len() as f64;
        let kept = prefix(&groups, need, |(count, _)| *count as f64);
        PodMix::weighted(groups.into_iter().zip(kept).filter_map(|(g, k)| k.then_some(g)))
    }

    /// Like [`PodMix::typical`], but also keeps the shapes that together ask for `coverage` of
    /// the pods' GPU (the largest askers first), still weighted by count. A multi-GPU pod is rare
    /// by count (44 8-GPU pods among openb's 8,152) yet asks for a large share of the GPU (6 %),
    /// and only the fragment of the pods it stands for sees a whole node being broken.
    pub fn typical_by_pods_and_gpu(pods: &[PodRequest], coverage: f64) -> PodMix {
        let groups = shapes(pods);
        let by_count = prefix(&groups, coverage * pods.len() as f64, |(count, _)| *count as f64);
        let gpu = |(count, p): &(usize, PodRequest)| *count as f64 * p.gpu_total() as f64;
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by(|&a, &b| gpu(&groups[b]).total_cmp(&gpu(&groups[a])).then(a.cmp(&b)));
        let by_gpu_sorted: Vec<_> = order.iter().map(|&i| groups[i]).collect();
        let all_gpu: f64 = groups.iter().map(gpu).sum();
        let mut keep = by_count;
        for (&i, k) in order.iter().zip(prefix(&by_gpu_sorted, coverage * all_gpu, gpu)) {
            keep[i] |= k && gpu(&groups[i]) > 0.0;
        }
        PodMix::weighted(groups.into_iter().zip(keep).filter_map(|(g, k)| k.then_some(g)))
    }

    /// Typical pods from `(count, shape)` groups, weighted by count.
    fn weighted(kept: impl Iterator<Item = (usize, PodRequest)>) -> PodMix {
        let kept: Vec<_> = kept.collect();
        let total = kept.iter().map(|(count, _)| count).sum::<usize>().max(1) as f64;
        let typical = kept
            .into_iter()
            .map(|(count, p)| TypicalPod {
                cpu_milli: p.cpu_milli,
                gpu_count: p.gpu_count,
                gpu_milli: p.gpu_milli,
                allowed_models: p.allowed_models,
                weight: count as f64 / total,
            })
            .collect();
        PodMix { typical }
    }

    /// The node's fragment in milli-GPU (see [`fragment`]).
    pub fn fragment(&self, node: &Node) -> f64 {
        fragment(&self.typical, node.model.map(|m| m.0), node.cpu_free, &node.gpu_free)
    }
}

/// The pods' shapes with their counts, most frequent first (ties: larger CPU, milli, count, model
/// set first).
fn shapes(pods: &[PodRequest]) -> Vec<(usize, PodRequest)> {
    let mut counts: HashMap<(u32, u32, u32, u64), (usize, PodRequest)> = HashMap::new();
    for p in pods {
        counts.entry(TypicalPod::key(p)).or_insert((0, *p)).0 += 1;
    }
    let mut groups: Vec<_> = counts.into_iter().collect();
    groups.sort_by(|(ka, (ca, _)), (kb, (cb, _))| cb.cmp(ca).then(kb.cmp(ka)));
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Which of `groups`, in order, form the shortest prefix whose `size` reaches `need` (at least one).
fn prefix<T>(groups: &[T], need: f64, size: impl Fn(&T) -> f64) -> Vec<bool> {
    let mut covered = 0.0;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let take = i == 0 || covered < need;
            if take {
                covered += size(g);
            }
            take
        })
        .collect()
}

/// The free GPU milli that `t` could not use on a node with `cpu_free` and per-GPU `gpu_free`:
/// all of it when `t` cannot be placed there at all (or is CPU-only), else the GPUs too small for it.
#[inline]
pub fn unusable_for(t: &TypicalPod, model: Option<u8>, cpu_free: u32, gpu_free: &[u32]) -> u32 {
    let total: u32 = gpu_free.iter().sum();
    if t.gpu_milli == 0 || t.gpu_count == 0 {
        return total;
    }
    if let Some(allowed) = t.allowed_models {
        match model {
            Some(m) if allowed.0 & (1 << m) != 0 => {}
            _ => return total,
        }
    }
    if cpu_free < t.cpu_milli {
        return total;
    }
    let mut usable = 0;
    let mut small = 0;
    for &f in gpu_free {
        if f >= t.gpu_milli {
            usable += 1;
        } else {
            small += f;
        }
    }
    if usable < t.gpu_count {
        total
    } else {
        small
    }
}

/// FGD's node fragment: Σ over typical pods of weight × [`unusable_for`].
pub fn fragment(typical: &[TypicalPod], model: Option<u8>, cpu_free: u32, gpu_free: &[u32]) -> f64 {
    typical.iter().map(|t| t.weight * unusable_for(t, model, cpu_free, gpu_free) as f64).sum()
}

/// Free milli-GPU after taking `milli` from the first `count` GPUs in ascending order of free
/// milli (lowest index first among equals) that have at least `milli` free: the GPUs FGD assumes
/// a non-sharing pod takes. Returns `None` when they are not there.
pub fn take_ascending(gpu_free: &[u32], count: u32, milli: u32) -> Option<Vec<u32>> {
    let mut after = gpu_free.to_vec();
    if count == 0 || milli == 0 {
        return Some(after);
    }
    let mut order: Vec<usize> = (0..gpu_free.len()).filter(|&g| gpu_free[g] >= milli).collect();
    if order.len() < count as usize {
        return None;
    }
    order.sort_by_key(|&g| gpu_free[g]);
    for &g in order.iter().take(count as usize) {
        after[g] -= milli;
    }
    Some(after)
}
