//! A live cluster under the queue: nodes that come, change and go, GPU models that appear, and
//! room taken by pods the queue does not manage.
//!
//! The queue derives per-flavor indexes from the nodes (which nodes each flavor has, its capacity,
//! what it has free, how many idle GPUs its nodes have). Each node's contribution to them is
//! recorded in a [`NodeIndex`], so that a changed node is taken out of them exactly and put back
//! as it is now; [`Queue::new`] builds them the same way, node by node. Node ids are the
//! cluster's and never change (see [`Cluster`]): a removed node just contributes nothing.
//!
//! Pods the queue does not manage (CPU pods, pods of namespaces no tenant owns, daemon pods) are
//! placed with [`Queue::place_external`] under the caller's ids, with [`EXTERNAL_POD_BIT`] set in
//! the cluster's pod id; the queue's own pods never have that bit (see
//! [`super::workload::MAX_WORKLOAD_ID`]). They take room but no quota.

use super::{pod_id, Queue, State, WorkloadId, EXTERNAL_POD_BIT};
use crate::model::{Cluster, ModelError, ModelId, Node, NodeId, Placement, PodRequest};
use crate::schedule::Scheduler;
use crate::tenancy::{FlavorId, Milli, Seconds, Tenancy};
use std::collections::BTreeSet;

/// What one node adds to the queue's per-flavor indexes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct NodeIndex {
    /// Counted at all: the node was in service when indexed. The rest is zero otherwise.
    listed: bool,
    /// The flavor of its GPU model, if a flavor names it.
    pub(super) gpu_flavor: Option<FlavorId>,
    /// Added to `capacity` of its GPU flavor and of `cpu`.
    gpu_capacity: Milli,
    cpu_capacity: Milli,
    /// Its idle GPUs: the bucket of `idle_hist` of its GPU flavor it is counted in.
    idle: u32,
    /// Added to `room` of its GPU flavor (free milli-GPU) and of `cpu` (free milli-CPU).
    free_gpu: Milli,
    free_cpu: Milli,
}

impl Queue {
    /// A queue for a live cluster, whose nodes come and go (`cluster` may well be empty). Like
    /// [`Queue::new`], except that a GPU flavor whose model the cluster's catalog does not know
    /// yet is not an error: it stays unbound, taking no workloads, until [`Queue::intern_model`]
    /// names its model, and has capacity once nodes of that model are upserted.
    pub fn new_live(
        tenancy: Tenancy,
        cluster: Cluster,
        scheduler: Scheduler,
        mode: super::Mode,
        now: Seconds,
    ) -> Queue {
        let flavors = tenancy.bind_partial(&cluster.models);
        Queue::build(tenancy, flavors, cluster, scheduler, mode, now)
    }

    /// The id of GPU model `name` in the cluster's catalog, adding it if new, for the `model` of
    /// nodes handed to [`Queue::upsert_node`]. A new model is bound to the tenancy's flavors
    /// (with [`Tenancy::bind_partial`]), so a flavor that names it, and had no nodes so far,
    /// starts taking workloads once nodes of the model appear. Fails once the catalog holds
    /// [`crate::model::MAX_GPU_MODELS`] names.
    pub fn intern_model(&mut self, name: &str) -> Result<ModelId, LiveError> {
        let known = self.cluster.models.len();
        let id = self.cluster.models.intern(name)?;
        if self.cluster.models.len() != known {
            self.rebind();
        }
        Ok(id)
    }

    /// Adds a node, or updates the node of that name (capacities, GPUs, model), as
    /// [`Cluster::upsert_node`] does: pods placed on it stay placed and accounted, and a node
    /// that shrank under them is overcommitted and takes nothing until they leave. Its `model`
    /// must come from this queue's catalog (see [`Queue::intern_model`]).
    ///
    /// Every index derived from the node follows (the flavor's nodes, capacity and free room, the
    /// idle-GPU counts), shapes that found no room on its flavor try again, and the next cycle
    /// runs. Fails, changing nothing, when the cluster refuses the node.
    pub fn upsert_node(&mut self, node: Node) -> Result<NodeId, LiveError> {
        let id = self.cluster.upsert_node(node)?;
        if self.flavors.by_model.len() < self.cluster.models.len() {
            self.rebind();
        }
        self.reindex(id);
        let flavor = self.node_index.get(id).and_then(|n| n.gpu_flavor);
        self.forget_node_failures(flavor);
        self.dirty = true;
        Ok(id)
    }

    /// Takes the node named `name` out of service, as [`Cluster::remove_node`] does, and out of
    /// every flavor's nodes, capacity and room; returns its id, or `None` when no node of that
    /// name is in service. The queue's pods on it stay placed, and their workloads keep running
    /// and keep their quota, until the driver finishes them (it learns that their pods are gone);
    /// they are never preemption victims meanwhile, since stopping them frees no room.
    pub fn remove_node(&mut self, name: &str) -> Option<NodeId> {
        let id = self.cluster.remove_node(name)?;
        self.reindex(id);
        self.dirty = true;
        Some(id)
    }

    /// Records pod `id`, which the queue does not manage, as running at `placement`, so that the
    /// room it takes is not offered to workloads. `id` is the caller's and must be below
    /// [`EXTERNAL_POD_BIT`] (2^63); it never collides with the queue's own pods. The pod's
    /// `allowed_models` are ignored (it runs where it runs). Fails, changing nothing, when the id
    /// is out of range or already placed, or the placement does not fit the node as the queue
    /// sees it (a removed node, or room the queue has given to a workload): the caller's view and
    /// the queue's disagree, and the pod is not counted.
    ///
    /// No cycle is due for it: taking room never lets a workload start.
    pub fn place_external(
        &mut self,
        id: u64,
        pod: &PodRequest,
        placement: Placement,
    ) -> Result<(), LiveError> {
        let key = external_key(id)?;
        let mut pod = *pod;
        pod.allowed_models = None;
        let node = placement.node;
        self.cluster.allocate(key, &pod, placement).map_err(|source| LiveError::External { id, source })?;
        self.external.insert(key);
        self.touch(node);
        Ok(())
    }

    /// Frees the room of external pod `id` (see [`Queue::place_external`]). Shapes that found no
    /// room on its node's flavor try again, and the next cycle runs. Fails, changing nothing,
    /// when no external pod of that id is placed.
    pub fn release_external(&mut self, id: u64) -> Result<(), LiveError> {
        let key = external_key(id)?;
        if !self.external.contains(&key) {
            return Err(LiveError::NotPlaced(id));
        }
        let placement = self.cluster.release(key).map_err(|source| LiveError::External { id, source })?;
        self.external.remove(&key);
        self.touch(placement.node);
        let flavor = self.node_index.get(placement.node).and_then(|n| n.gpu_flavor);
        self.forget_node_failures(flavor);
        self.dirty = true;
        Ok(())
    }

    /// How many external pods are placed.
    pub fn external_pods(&self) -> usize {
        self.external.len()
    }

    /// Binds the tenancy's flavors to the catalog as it is now, and re-indexes any node whose
    /// flavor that changes.
    fn rebind(&mut self) {
        self.flavors = self.tenancy.bind_partial(&self.cluster.models);
        for id in 0..self.node_index.len() {
            if self.node_index[id] != self.measure(id) {
                self.reindex(id);
            }
        }
        self.dirty = true;
    }

    /// What node `id` adds to the per-flavor indexes, as it is now.
    fn measure(&self, id: NodeId) -> NodeIndex {
        let Some(node) = self.cluster.nodes.get(id).filter(|_| self.cluster.in_service(id)) else {
            return NodeIndex::default();
        };
        NodeIndex {
            listed: true,
            gpu_flavor: node.model.and_then(|m| self.flavors.of_model(m)),
            gpu_capacity: node.gpu_capacity() as Milli,
            cpu_capacity: node.cpu_capacity as Milli,
            idle: node.idle_gpus(),
            free_gpu: node.gpu_free_total as Milli,
            free_cpu: node.cpu_free as Milli,
        }
    }

    /// Takes node `id` out of the per-flavor indexes as it was recorded, and puts it back as it
    /// is now.
    pub(super) fn reindex(&mut self, id: NodeId) {
        if self.node_index.len() <= id {
            self.node_index.resize(id + 1, NodeIndex::default());
        }
        let before = std::mem::take(&mut self.node_index[id]);
        self.count(id, &before, false);
        let now = self.measure(id);
        self.count(id, &now, true);
        self.node_index[id] = now;
    }

    /// Adds (or takes away) one node's record to (from) the per-flavor indexes. Never wraps:
    /// a record is only ever taken away after it was added.
    fn count(&mut self, id: NodeId, rec: &NodeIndex, add: bool) {
        if !rec.listed {
            return;
        }
        let change =
            |x: &mut Milli, by: Milli| *x = if add { x.saturating_add(by) } else { x.saturating_sub(by) };
        if let Some(f) = rec.gpu_flavor {
            list(&mut self.flavor_nodes[f], id, add);
            change(&mut self.capacity[f], rec.gpu_capacity);
            change(&mut self.room[f], rec.free_gpu);
            bump(&mut self.idle_hist[f], rec.idle, add);
            if add {
                self.by_free[f].insert((rec.free_gpu, id));
            } else {
                self.by_free[f].remove(&(rec.free_gpu, id));
            }
        }
        if let Some(c) = self.flavors.cpu {
            list(&mut self.flavor_nodes[c], id, add);
            change(&mut self.capacity[c], rec.cpu_capacity);
            change(&mut self.room[c], rec.free_cpu);
        }
    }

    /// Updates the free room and the idle-GPU counts after pods were placed on node `id` or
    /// released from it.
    pub(super) fn touch(&mut self, id: NodeId) {
        let Some(&before) = self.node_index.get(id) else { return };
        if !before.listed {
            return;
        }
        let Some(node) = self.cluster.nodes.get(id) else { return };
        let now = NodeIndex {
            idle: node.idle_gpus(),
            free_gpu: node.gpu_free_total as Milli,
            free_cpu: node.cpu_free as Milli,
            ..before
        };
        if let Some(f) = before.gpu_flavor {
            bump(&mut self.idle_hist[f], before.idle, false);
            bump(&mut self.idle_hist[f], now.idle, true);
            self.room[f] = self.room[f].saturating_sub(before.free_gpu).saturating_add(now.free_gpu);
            if before.free_gpu != now.free_gpu {
                self.by_free[f].remove(&(before.free_gpu, id));
                self.by_free[f].insert((now.free_gpu, id));
            }
        }
        if let Some(c) = self.flavors.cpu {
            self.room[c] = self.room[c].saturating_sub(before.free_cpu).saturating_add(now.free_cpu);
        }
        self.node_index[id] = now;
    }

    /// Free room of flavor `f` (milli-GPU, milli-CPU for `cpu`) on its nodes in service.
    pub(super) fn room(&self, f: FlavorId) -> Milli {
        self.room.get(f).copied().unwrap_or(0)
    }

    /// A node of GPU flavor `flavor` (or none) gained room: shapes that found no room on that
    /// flavor, or on `cpu`, which spans every node, may fit now.
    fn forget_node_failures(&mut self, flavor: Option<FlavorId>) {
        let cpu = self.flavors.cpu;
        self.failed.retain(|(g, _)| Some(*g) != flavor && Some(*g) != cpu);
    }

    /// Whether any pod of running workload `id` is on a node that is removed or overcommitted.
    /// Such a workload is no preemption victim: stopping it frees no room anyone could use, and
    /// its pods could not be put back exactly if the preemption is abandoned.
    pub(super) fn on_closed_node(&self, id: super::WorkloadId) -> bool {
        if self.cluster.closed_nodes() == 0 {
            return false;
        }
        let Some(r) = self.running(id) else { return false };
        r.pods
            .iter()
            .any(|(pod, _)| self.cluster.placement(*pod).is_some_and(|p| !self.cluster.is_open(p.node)))
    }

    /// The live-cluster part of [`Queue::check_invariants`]: the cluster's own accounting, the
    /// external pods, the flavor binding, and every per-node record and per-flavor index against
    /// the nodes as they are now.
    pub(super) fn check_live(&self) -> Result<(), String> {
        self.cluster.audit()?;
        for &key in &self.external {
            if key & EXTERNAL_POD_BIT == 0 {
                return Err(format!("external pod id {key:#x} lacks the external bit"));
            }
            if self.cluster.placement(key).is_none() {
                return Err(format!("external pod {} is not placed", key & !EXTERNAL_POD_BIT));
            }
        }
        for (w, r) in self.running_workloads() {
            for (i, (pod, _)) in r.pods.iter().enumerate() {
                if *pod != pod_id(w.id, i as u64) || pod & EXTERNAL_POD_BIT != 0 {
                    return Err(format!("workload {} member {i} has pod id {pod:#x}", w.id));
                }
            }
        }
        if self.flavors != self.tenancy.bind_partial(&self.cluster.models) {
            return Err("the flavor binding is stale: the catalog has models it does not map".into());
        }
        if self.node_index.len() != self.cluster.nodes.len() {
            return Err(format!(
                "{} node records for {} nodes",
                self.node_index.len(),
                self.cluster.nodes.len()
            ));
        }
        let nf = self.tenancy.flavors.len();
        let mut expect = Queue::empty_indexes(nf);
        for id in 0..self.cluster.nodes.len() {
            let rec = self.measure(id);
            if rec != self.node_index[id] {
                return Err(format!("node {id}: recorded {:?} but it is {rec:?}", self.node_index[id]));
            }
            expect.add(id, &rec, self.flavors.cpu);
        }
        let trim = |h: &[u32]| h[..h.iter().rposition(|&n| n > 0).map_or(0, |p| p + 1)].to_vec();
        for f in 0..nf {
            let name = &self.tenancy.flavors[f].name;
            if self.flavor_nodes[f] != expect.flavor_nodes[f] {
                return Err(format!(
                    "flavor {name}: nodes {:?}, expected {:?}",
                    self.flavor_nodes[f], expect.flavor_nodes[f]
                ));
            }
            if self.capacity[f] != expect.capacity[f] || self.room[f] != expect.room[f] {
                return Err(format!(
                    "flavor {name}: capacity {} room {}, expected {} and {}",
                    self.capacity[f], self.room[f], expect.capacity[f], expect.room[f]
                ));
            }
            if trim(&self.idle_hist[f]) != trim(&expect.idle_hist[f]) {
                return Err(format!(
                    "flavor {name}: idle-GPU counts {:?}, expected {:?}",
                    self.idle_hist[f], expect.idle_hist[f]
                ));
            }
            let by_free: BTreeSet<(Milli, NodeId)> = (0..self.node_index.len())
                .filter(|&id| self.node_index[id].listed && self.node_index[id].gpu_flavor == Some(f))
                .map(|id| (self.node_index[id].free_gpu, id))
                .collect();
            if self.by_free[f] != by_free {
                return Err(format!(
                    "flavor {name}: nodes by free GPU {:?}, expected {by_free:?}",
                    self.by_free[f]
                ));
            }
        }
        for (key, _, _) in self.cluster.placements().filter(|(k, _, _)| k & EXTERNAL_POD_BIT == 0) {
            let w = key >> 16;
            if !matches!(self.entries.get(&w).map(|e| &e.state), Some(State::Running(_))) {
                return Err(format!("pod {key:#x} is placed but workload {w} is not running"));
            }
        }
        Ok(())
    }

    fn empty_indexes(nf: usize) -> Indexes {
        Indexes {
            flavor_nodes: vec![Vec::new(); nf],
            capacity: vec![0; nf],
            room: vec![0; nf],
            idle_hist: vec![Vec::new(); nf],
        }
    }
}

/// Per-flavor indexes recomputed from scratch, for [`Queue::check_live`].
struct Indexes {
    flavor_nodes: Vec<Vec<NodeId>>,
    capacity: Vec<Milli>,
    room: Vec<Milli>,
    idle_hist: Vec<Vec<u32>>,
}

impl Indexes {
    fn add(&mut self, id: NodeId, rec: &NodeIndex, cpu: Option<FlavorId>) {
        if !rec.listed {
            return;
        }
        if let Some(f) = rec.gpu_flavor {
            self.flavor_nodes[f].push(id);
            self.capacity[f] += rec.gpu_capacity;
            self.room[f] += rec.free_gpu;
            bump(&mut self.idle_hist[f], rec.idle, true);
        }
        if let Some(c) = cpu {
            self.flavor_nodes[c].push(id);
            self.capacity[c] += rec.cpu_capacity;
            self.room[c] += rec.free_cpu;
        }
    }
}

/// The cluster pod id of external pod `id`.
fn external_key(id: u64) -> Result<u64, LiveError> {
    if id & EXTERNAL_POD_BIT != 0 {
        return Err(LiveError::IdTooLarge(id));
    }
    Ok(id | EXTERNAL_POD_BIT)
}

/// Adds `id` to (or removes it from) a list of node ids kept in ascending order.
fn list(nodes: &mut Vec<NodeId>, id: NodeId, add: bool) {
    match (nodes.binary_search(&id), add) {
        (Err(at), true) => nodes.insert(at, id),
        (Ok(at), false) => {
            nodes.remove(at);
        }
        _ => {}
    }
}

/// Counts one node more (or less) with `idle` idle GPUs, growing the histogram as needed.
fn bump(hist: &mut Vec<u32>, idle: u32, add: bool) {
    let i = idle as usize;
    if hist.len() <= i {
        hist.resize(i + 1, 0);
    }
    hist[i] = if add { hist[i].saturating_add(1) } else { hist[i].saturating_sub(1) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_stay_sorted_and_unique() {
        let mut v = Vec::new();
        for id in [3, 1, 2, 3, 0] {
            list(&mut v, id, true);
        }
        assert_eq!(v, vec![0, 1, 2, 3]);
        list(&mut v, 2, false);
        list(&mut v, 7, false);
        assert_eq!(v, vec![0, 1, 3]);
    }

    #[test]
    fn external_ids_keep_below_the_top_bit() {
        assert_eq!(external_key(5), Ok(5 | EXTERNAL_POD_BIT));
        assert!(external_key(EXTERNAL_POD_BIT).is_err());
    }
}

impl Queue {
    /// Running workload `id` is no preemption victim before `until`: the cluster refused to stop
    /// it (an eviction a PodDisruptionBudget blocked), and asking again at once would only be
    /// refused again. Like the minimum runtime, the shield is a time the queue wakes up at.
    pub fn shield(&mut self, id: WorkloadId, until: Seconds) {
        if self.running(id).is_some() {
            self.shielded.insert(id, until);
            self.dirty = true;
        }
    }
}

/// Why a live cluster's change was refused (nothing changed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// The cluster refused the node or the model name.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("external pod id {0} is too large; ids must be below 2^63")]
    IdTooLarge(u64),
    #[error("external pod {0} is not placed")]
    NotPlaced(u64),
    /// The external pod's placement does not fit, or its release failed.
    #[error("external pod {id}: {source}")]
    External {
        id: u64,
        #[source]
        source: ModelError,
    },
}

/// Why a new tenancy cannot replace the queue's in place (the caller rebuilds the queue instead).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Restructure {
    #[error("the flavors changed")]
    Flavors,
    #[error("the tenants, or their namespaces, changed")]
    Tenants,
    #[error("the priority classes, or which a tenant may use, changed")]
    Priorities,
}

impl Queue {
    /// Takes a changed tenancy in place: new quotas, limits, cohorts, weights, budgets, prices,
    /// timing or currency apply from `now`, while every waiting workload keeps its place and
    /// every running one its placement, start time and clocks. Nothing is preempted here; a
    /// tenant whose quota fell below what it runs is simply over it, so its work is what the
    /// next cycles may reclaim, as with any borrower.
    ///
    /// The workloads' identities depend on the rest (a workload's tenant comes from its
    /// namespace, its priority from the classes and each tenant's defaults, its flavor from the
    /// flavors), so a change there is refused, changing nothing, and the caller rebuilds.
    pub fn update_tenancy(&mut self, tenancy: Tenancy, now: Seconds) -> Result<(), Restructure> {
        let old = &self.tenancy;
        if tenancy.flavors != old.flavors {
            return Err(Restructure::Flavors);
        }
        let same_tenants = tenancy.tenants.len() == old.tenants.len()
            && tenancy
                .tenants
                .iter()
                .zip(&old.tenants)
                .all(|(a, b)| a.name == b.name && a.namespaces == b.namespaces);
        if !same_tenants {
            return Err(Restructure::Tenants);
        }
        let same_priorities = tenancy.priority_classes == old.priority_classes
            && tenancy
                .tenants
                .iter()
                .zip(&old.tenants)
                .all(|(a, b)| a.allowed_classes == b.allowed_classes && a.kind_classes == b.kind_classes);
        if !same_priorities {
            return Err(Restructure::Priorities);
        }
        let nf = tenancy.flavors.len();
        let nt = tenancy.tenants.len();
        let mut quota = super::QuotaTree::new(&tenancy);
        for t in 0..nt {
            for f in 0..nf {
                quota.add(t, f, self.quota.usage(t, f) as i64);
            }
        }
        let (ceilings, nominal, prices) = super::limits(&tenancy, &quota);
        self.ceilings = ceilings;
        // What ran so far is metered at the old nominal quotas and prices.
        self.ledger.retarget(nominal, prices, now);
        self.quota = quota;
        self.tenancy = tenancy;
        // Memos that depend on quotas are void; placement memos (`failed`) are not.
        self.held.clear();
        self.no_room.clear();
        self.dirty = true;
        Ok(())
    }
}
