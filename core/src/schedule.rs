//! The placement cycle for one pod: filter, score, select, pick GPUs.

use crate::model::{fits, Cluster, Misfit, Node, NodeId, Placement, PodRequest};
use crate::policy::{Policy, ScoreCx};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Why no node could take a pod: how many nodes failed each check.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Unschedulable {
    pub nodes: usize,
    pub misfits: BTreeMap<Misfit, usize>,
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes can hold the pod", self.nodes)?;
        let mut sep = ": ";
        let mut by_count: Vec<_> = self.misfits.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (m, n) in by_count {
            write!(f, "{sep}{n} {m}")?;
            sep = ", ";
        }
        Ok(())
    }
}

/// A placement policy plus what the cycle keeps between decisions: the tie-break order of the
/// nodes and a cache of scores.
///
/// Scores of cacheable policies are kept per (node, pod shape) and reused until the node's
/// generation changes, so a decision costs one lookup for every node that did not change since
/// the last time a pod of that shape was scored. The cache follows a cluster whose nodes come and
/// go: node ids are stable (see [`Cluster`]), every change to a node moves its generation on, and
/// the cache widens when nodes are added. Nodes taken out of service are skipped.
pub struct Scheduler {
    policy: Box<dyn Policy>,
    /// Lower rank wins ties; by default the node's index.
    rank: Vec<u32>,
    shapes: HashMap<PodRequest, usize>,
    /// `(node generation + 1, score)` per shape × node, at `shape * cache_nodes + node`;
    /// generation 0 marks an empty slot.
    cache: Vec<(u64, f64)>,
    /// The node count the cache is laid out for.
    cache_nodes: usize,
}

impl Scheduler {
    pub fn new(policy: Box<dyn Policy>) -> Self {
        Scheduler { policy, rank: Vec::new(), shapes: HashMap::new(), cache: Vec::new(), cache_nodes: 0 }
    }

    /// Sets the tie-break order: `rank[node]`, lowest first. The FGD paper's simulator breaks ties
    /// by node name after prefixing every name with a random permutation index.
    pub fn with_tie_break(mut self, rank: Vec<u32>) -> Self {
        self.rank = rank;
        self
    }

    pub fn policy(&self) -> &dyn Policy {
        self.policy.as_ref()
    }

    /// Forgets cached scores.
    pub fn reset(&mut self) {
        self.shapes.clear();
        self.cache.clear();
        self.cache_nodes = 0;
    }

    /// Chooses where `pod` goes, without changing the cluster. `salt` feeds policies that choose
    /// at random; pass a fresh random value per decision.
    ///
    /// 1. filter: every node that can hold the pod now;
    /// 2. score: the policy scores each of them (cached while the node is unchanged);
    /// 3. select: the highest score, ties to the lowest rank;
    /// 4. pick GPUs on the winner.
    pub fn decide(
        &mut self,
        cluster: &Cluster,
        pod: &PodRequest,
        salt: u64,
    ) -> Result<Placement, Unschedulable> {
        self.decide_among(cluster, pod, salt, 0..cluster.nodes.len())
    }

    /// [`Scheduler::decide`] over some of the nodes only (the nodes of one GPU model, or the nodes
    /// a gang already uses).
    pub fn decide_among(
        &mut self,
        cluster: &Cluster,
        pod: &PodRequest,
        salt: u64,
        candidates: impl IntoIterator<Item = NodeId>,
    ) -> Result<Placement, Unschedulable> {
        let n = cluster.nodes.len();
        let (cacheable, shape) = self.shape_slot(cluster, pod);
        let mut best: Option<(f64, u32, NodeId)> = None;
        // Misfit counts in a plain array: this loop runs for every node of every decision.
        let mut misfits = [0usize; Misfit::ALL.len()];
        let mut seen = 0;
        for i in candidates {
            // Removed nodes are no longer nodes of the cluster: not counted, never chosen.
            let Some(node) = cluster.nodes.get(i).filter(|_| cluster.in_service(i)) else { continue };
            seen += 1;
            // 1. filter
            if let Err(m) = fits(node, pod) {
                misfits[m as usize] += 1;
                continue;
            }
            // 2. score
            let cx = ScoreCx { node: i, salt };
            let slot = cacheable.then_some(shape * n + i);
            let score = cached_score(self.policy.as_ref(), &mut self.cache, slot, node, pod, cx);
            // 3. select
            let rank = self.rank.get(i).copied().unwrap_or(i as u32);
            let better = match best {
                None => true,
                Some((bs, br, _)) => score > bs || (score == bs && rank < br),
            };
            if better {
                best = Some((score, rank, i));
            }
        }
        let mut why = Unschedulable { nodes: seen, misfits: BTreeMap::new() };
        for (m, &n) in Misfit::ALL.iter().zip(&misfits) {
            if n > 0 {
                why.misfits.insert(*m, n);
            }
        }
        let Some((_, _, node)) = best else { return Err(why) };
        // 4. pick GPUs
        let cx = ScoreCx { node, salt };
        let picked = cluster.nodes.get(node).and_then(|n| self.policy.pick_gpus(n, pod, cx));
        match picked {
            Some(gpus) => Ok(Placement { node, gpus }),
            None => {
                *why.misfits.entry(Misfit::GpuCapacity).or_default() += 1;
                Err(why)
            }
        }
    }

    /// Makes sure the cache has a row for `pod`'s shape; returns whether the policy is cacheable
    /// and the row.
    ///
    /// When nodes were added since the cache was laid out, every row is widened to the new node
    /// count, keeping the scores cached for the nodes there were (ids are stable, and a node that
    /// changed has a new generation anyway). Fewer nodes than before means `nodes` was rebuilt
    /// rather than changed through the cluster's methods: everything is forgotten.
    fn shape_slot(&mut self, cluster: &Cluster, pod: &PodRequest) -> (bool, usize) {
        let n = cluster.nodes.len();
        if self.cache_nodes < n && !self.cache.is_empty() {
            let old = self.cache_nodes;
            let rows = self.shapes.len();
            let mut wider = vec![(0, 0.0); rows * n];
            for (row, chunk) in self.cache.chunks(old.max(1)).enumerate().take(rows) {
                wider[row * n..row * n + chunk.len()].copy_from_slice(chunk);
            }
            self.cache = wider;
            self.cache_nodes = n;
        } else if self.cache_nodes != n {
            self.reset();
            self.cache_nodes = n;
        }
        if !self.policy.cacheable() {
            return (false, 0);
        }
        let next = self.shapes.len();
        let s = *self.shapes.entry(*pod).or_insert(next);
        if s == next {
            self.cache.resize((s + 1) * n, (0, 0.0));
        }
        (true, s)
    }

    /// The policy's score of each node that can hold the pod now (`None` for the others and for
    /// `None` entries), from the same cache as [`Scheduler::decide`]: what an extender's
    /// prioritize needs.
    pub fn scores(
        &mut self,
        cluster: &Cluster,
        pod: &PodRequest,
        nodes: &[Option<NodeId>],
    ) -> Vec<Option<f64>> {
        let n = cluster.nodes.len();
        let (cacheable, shape) = self.shape_slot(cluster, pod);
        nodes
            .iter()
            .map(|&i| {
                let i = i?;
                let node = cluster.nodes.get(i).filter(|_| cluster.in_service(i))?;
                fits(node, pod).ok()?;
                let cx = ScoreCx { node: i, salt: 0 };
                let slot = cacheable.then_some(shape * n + i);
                Some(cached_score(self.policy.as_ref(), &mut self.cache, slot, node, pod, cx))
            })
            .collect()
    }

    /// [`Scheduler::decide`], then allocates the pod as `id` on the cluster.
    pub fn place(
        &mut self,
        cluster: &mut Cluster,
        id: u64,
        pod: &PodRequest,
        salt: u64,
    ) -> Result<Placement, PlaceError> {
        let placement = self.decide(cluster, pod, salt).map_err(PlaceError::Unschedulable)?;
        cluster.allocate(id, pod, placement.clone()).map_err(PlaceError::Model)?;
        Ok(placement)
    }
}

/// The policy's score of `node`, kept in `cache[slot]` and reused while the node's generation
/// is unchanged; scored afresh without a slot (a policy that is not cacheable).
fn cached_score(
    policy: &dyn Policy,
    cache: &mut [(u64, f64)],
    slot: Option<usize>,
    node: &Node,
    pod: &PodRequest,
    cx: ScoreCx,
) -> f64 {
    let Some(slot) = slot.and_then(|s| cache.get_mut(s)) else { return policy.score(node, pod, cx) };
    let key = node.generation.wrapping_add(1);
    if slot.0 != key {
        *slot = (key, policy.score(node, pod, cx));
    }
    slot.1
}

/// Why [`Scheduler::place`] did not place a pod.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlaceError {
    #[error("{0}")]
    Unschedulable(Unschedulable),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}
