//! Placement policies: each scores a node that passed the filter for one pod, and picks the GPUs
//! on the node that wins. The six baselines follow the FGD paper's simulator exactly, integer
//! truncation included, because their ties decide where many pods go; Gantry's own policy
//! ([`gantry::GantryPolicy`]) scores in full precision.

mod best_fit;
mod clustering;
mod dot_product;
mod fgd;
mod gantry;
mod packing;
mod random;

pub use best_fit::BestFit;
pub use clustering::GpuClustering;
pub use dot_product::DotProduct;
pub use fgd::Fgd;
pub use gantry::GantryPolicy;
pub use packing::GpuPacking;
pub use random::RandomFit;

use crate::frag::PodMix;
use crate::model::{best_fit_gpus, Cluster, Node, NodeId, PodRequest, GPU_MILLI};
use std::fmt;
use std::str::FromStr;

/// What a policy may know about the decision besides the node and the pod.
#[derive(Clone, Copy, Debug)]
pub struct ScoreCx {
    /// The node's index in the cluster.
    pub node: NodeId,
    /// A random value drawn once per decision, for policies that choose at random.
    pub salt: u64,
}

/// One placement policy.
pub trait Policy: Send + Sync {
    /// The name used on the command line and in reports.
    fn name(&self) -> &'static str;

    /// The score of putting `pod` on `node` (which passed the filter); higher is better. Ties go
    /// to the node that comes first in the scheduler's tie-break order.
    fn score(&self, node: &Node, pod: &PodRequest, cx: ScoreCx) -> f64;

    /// The GPUs to use on the winning node, as `(index, milli)`.
    fn pick_gpus(&self, node: &Node, pod: &PodRequest, _cx: ScoreCx) -> Option<Vec<(u32, u32)>> {
        best_fit_gpus(node, pod)
    }

    /// True when `score` depends only on the node's state and the pod, so the scheduler may cache
    /// it until the node changes.
    fn cacheable(&self) -> bool {
        true
    }
}

/// Facts about the cluster that scores are normalised by: the largest node's CPU and GPU capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub max_cpu: f64,
    pub max_gpu_milli: f64,
}

impl Scale {
    pub fn of(cluster: &Cluster) -> Scale {
        let max_cpu = cluster.nodes.iter().map(|n| n.cpu_capacity).max().unwrap_or(1).max(1);
        let max_gpu =
            cluster.nodes.iter().map(|n| n.gpu_capacity()).max().unwrap_or(GPU_MILLI).max(GPU_MILLI);
        Scale { max_cpu: max_cpu as f64, max_gpu_milli: max_gpu as f64 }
    }
}

/// The policies Gantry ships, by command-line name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    Random,
    DotProduct,
    Clustering,
    Packing,
    BestFit,
    Fgd,
    Gantry,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 7] = [
        PolicyKind::Random,
        PolicyKind::DotProduct,
        PolicyKind::Clustering,
        PolicyKind::Packing,
        PolicyKind::BestFit,
        PolicyKind::Fgd,
        PolicyKind::Gantry,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Random => "random",
            PolicyKind::DotProduct => "dot-product",
            PolicyKind::Clustering => "clustering",
            PolicyKind::Packing => "packing",
            PolicyKind::BestFit => "best-fit",
            PolicyKind::Fgd => "fgd",
            PolicyKind::Gantry => "gantry",
        }
    }

    /// Builds the policy for a cluster. `expected` is a sample of the workload the cluster expects
    /// (the trace, or recent pods); the fragmentation-aware policies derive their typical pods
    /// from it.
    pub fn build(self, cluster: &Cluster, expected: &[PodRequest]) -> Box<dyn Policy> {
        let scale = Scale::of(cluster);
        match self {
            PolicyKind::Random => Box::new(RandomFit),
            PolicyKind::DotProduct => Box::new(DotProduct { scale }),
            PolicyKind::Clustering => Box::new(GpuClustering { scale }),
            PolicyKind::Packing => Box::new(GpuPacking),
            PolicyKind::BestFit => Box::new(BestFit { scale }),
            PolicyKind::Fgd => Box::new(Fgd::new(PodMix::typical(expected, Fgd::COVERAGE))),
            PolicyKind::Gantry => Box::new(GantryPolicy::new(expected, &cluster.nodes)),
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy name that is none of [`PolicyKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy {name:?}; choose from {} or all", PolicyKind::ALL.map(PolicyKind::name).join(", "))]
pub struct UnknownPolicy {
    pub name: String,
}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, UnknownPolicy> {
        let s = s.trim();
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPolicy { name: s.to_string() })
    }
}

/// The CPU request as the paper's scorers see it: kube-scheduler's non-zero default of 100m for a
/// pod that asks for no CPU.
pub(crate) fn scoring_cpu(pod: &PodRequest) -> u32 {
    if pod.cpu_milli == 0 {
        100
    } else {
        pod.cpu_milli
    }
}
