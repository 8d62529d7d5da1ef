//! The cluster model: nodes with CPU, memory and GPUs, pod requests, and exact per-GPU accounting.
//!
//! Units are integers throughout so that allocation followed by release restores the exact state:
//! CPU in milli-cores, memory in MiB, GPU in milli-GPU (one whole GPU = [`GPU_MILLI`]).

use std::collections::HashMap;
use std::fmt;

/// Milli-GPU in one whole GPU.
pub const GPU_MILLI: u32 = 1000;

/// The most GPU models one cluster may name (they are kept as bits of a `u64`).
pub const MAX_GPU_MODELS: usize = 64;

/// Index of a GPU model in the cluster's [`ModelCatalog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ModelId(pub u8);

/// A set of GPU models, as bits over [`ModelId`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ModelSet(pub u64);

impl ModelSet {
    pub fn contains(self, m: ModelId) -> bool {
        self.0 & (1u64 << m.0) != 0
    }
    pub fn insert(&mut self, m: ModelId) {
        self.0 |= 1u64 << m.0;
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<ModelId> for ModelSet {
    fn from_iter<I: IntoIterator<Item = ModelId>>(iter: I) -> Self {
        let mut s = ModelSet::default();
        for m in iter {
            s.insert(m);
        }
        s
    }
}

/// The GPU model names a cluster knows, interned to small ids.
#[derive(Clone, Debug, Default)]
pub struct ModelCatalog {
    names: Vec<String>,
    ids: HashMap<String, ModelId>,
}

impl ModelCatalog {
    /// The id of `name`, adding it if new. Fails once [`MAX_GPU_MODELS`] distinct names exist.
    pub fn intern(&mut self, name: &str) -> Result<ModelId, ModelError> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        if self.names.len() >= MAX_GPU_MODELS {
            return Err(ModelError::TooManyModels { name: name.to_string() });
        }
        let id = ModelId(self.names.len() as u8);
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        Ok(id)
    }
    pub fn get(&self, name: &str) -> Option<ModelId> {
        self.ids.get(name).copied()
    }
    pub fn name(&self, id: ModelId) -> &str {
        &self.names[id.0 as usize]
    }
    /// Every known name, in id order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// How many names are known (ids `0..len`).
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What a pod asks for. GPU needs are `gpu_count` GPUs with `gpu_milli` milli-GPU on each:
/// `gpu_count == 0` is a CPU-only pod, `gpu_count == 1 && gpu_milli < 1000` a pod that shares one
/// GPU, and `gpu_milli == 1000` whole GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PodRequest {
    pub cpu_milli: u32,
    pub memory_mib: u64,
    pub gpu_count: u32,
    pub gpu_milli: u32,
    /// GPU models the pod may run on; `None` means any model.
    pub allowed_models: Option<ModelSet>,
}

impl PodRequest {
    pub fn cpu_only(cpu_milli: u32, memory_mib: u64) -> Self {
        PodRequest { cpu_milli, memory_mib, gpu_count: 0, gpu_milli: 0, allowed_models: None }
    }
    pub fn whole_gpus(cpu_milli: u32, memory_mib: u64, count: u32) -> Self {
        PodRequest { cpu_milli, memory_mib, gpu_count: count, gpu_milli: GPU_MILLI, allowed_models: None }
    }
    pub fn shared_gpu(cpu_milli: u32, memory_mib: u64, milli: u32) -> Self {
        PodRequest { cpu_milli, memory_mib, gpu_count: 1, gpu_milli: milli, allowed_models: None }
    }
    pub fn with_models(mut self, models: ModelSet) -> Self {
        self.allowed_models = Some(models);
        self
    }
    /// Total GPU request in milli-GPU.
    pub fn gpu_total(&self) -> u64 {
        self.gpu_count as u64 * self.gpu_milli as u64
    }
    pub fn wants_gpu(&self) -> bool {
        self.gpu_count > 0 && self.gpu_milli > 0
    }
    /// A pod that takes a fraction of one GPU.
    pub fn is_sharing(&self) -> bool {
        self.gpu_count == 1 && self.gpu_milli > 0 && self.gpu_milli < GPU_MILLI
    }
    /// The pod's kind for [`Node::gpu_pod_kinds`]: 0 for a shared GPU, k for k whole GPUs, `None`
    /// for a CPU-only pod.
    pub fn kind_tag(&self) -> Option<u32> {
        if !self.wants_gpu() {
            None
        } else if self.is_sharing() {
            Some(0)
        } else {
            Some(self.gpu_count)
        }
    }

    /// Checks the request is internally consistent.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.gpu_milli > GPU_MILLI {
            return Err(ModelError::BadRequest(format!(
                "gpu_milli {} is more than one GPU ({GPU_MILLI}); ask for whole GPUs with gpu_count instead",
                self.gpu_milli
            )));
        }
        if self.gpu_count > 0 && self.gpu_milli == 0 {
            return Err(ModelError::BadRequest(format!(
                "gpu_count {} with gpu_milli 0 asks for nothing; set gpu_milli to 1000 for whole GPUs",
                self.gpu_count
            )));
        }
        if self.gpu_count > 1 && self.gpu_milli < GPU_MILLI {
            return Err(ModelError::BadRequest(format!(
                "a fraction ({} milli) of {} GPUs: only a single GPU can be shared",
                self.gpu_milli, self.gpu_count
            )));
        }
        Ok(())
    }
}

/// A node and its free resources. GPUs are identified by their index on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The model of all of this node's GPUs; `None` for a node without GPUs.
    pub model: Option<ModelId>,
    pub cpu_capacity: u32,
    pub memory_capacity: u64,
    pub cpu_free: u32,
    pub memory_free: u64,
    /// Free milli-GPU of each GPU, by device index.
    pub gpu_free: Vec<u32>,
    /// Sum of `gpu_free`, kept in step with it.
    pub gpu_free_total: u32,
    /// How many GPU pods of each kind run here, as `(kind, count)` with kind 0 for pods that share
    /// a GPU and k for pods with k whole GPUs. CPU-only pods are not counted. GPU clustering uses it.
    pub gpu_pod_kinds: Vec<(u32, u32)>,
    /// Bumped on every change, so that callers can cache anything derived from the node.
    pub generation: u64,
}

impl Node {
    pub fn new(
        name: impl Into<String>,
        cpu_milli: u32,
        memory_mib: u64,
        gpus: u32,
        model: Option<ModelId>,
    ) -> Self {
        Node {
            name: name.into(),
            model: if gpus > 0 { model } else { None },
            cpu_capacity: cpu_milli,
            memory_capacity: memory_mib,
            cpu_free: cpu_milli,
            memory_free: memory_mib,
            gpu_free: vec![GPU_MILLI; gpus as usize],
            gpu_free_total: gpus * GPU_MILLI,
            gpu_pod_kinds: Vec::new(),
            generation: 0,
        }
    }
    pub fn gpu_count(&self) -> u32 {
        self.gpu_free.len() as u32
    }
    pub fn gpu_capacity(&self) -> u32 {
        self.gpu_count() * GPU_MILLI
    }
    fn count_kind(&mut self, pod: &PodRequest, add: bool) {
        let Some(kind) = pod.kind_tag() else { return };
        match self.gpu_pod_kinds.iter().position(|&(k, _)| k == kind) {
            Some(i) if add => self.gpu_pod_kinds[i].1 += 1,
            Some(i) => {
                self.gpu_pod_kinds[i].1 -= 1;
                if self.gpu_pod_kinds[i].1 == 0 {
                    self.gpu_pod_kinds.swap_remove(i);
                }
            }
            None if add => self.gpu_pod_kinds.push((kind, 1)),
            None => {}
        }
    }

    /// Number of GPUs with nothing on them.
    pub fn idle_gpus(&self) -> u32 {
        self.gpu_free.iter().filter(|&&f| f == GPU_MILLI).count() as u32
    }
}

/// Index of a node in a [`Cluster`].
pub type NodeId = usize;

/// Where a pod runs: its node, and the milli-GPU taken from each GPU on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub node: NodeId,
    /// `(gpu index, milli-GPU taken)`, one entry per GPU used.
    pub gpus: Vec<(u32, u32)>,
}

/// Books that disagree with themselves ([`Cluster::check`], `Queue::check_invariants`): a bug
/// in Gantry, never the user's input. The message says which record is wrong and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Inconsistent(pub String);

/// Errors of the model: requests that make no sense, or allocations that do not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("GPU model {name:?} would be model number {n}; a cluster may name at most {MAX_GPU_MODELS}", n = MAX_GPU_MODELS + 1)]
    TooManyModels { name: String },
    #[error("bad pod request: {0}")]
    BadRequest(String),
    #[error("pod {pod} is already placed on node {node}")]
    AlreadyPlaced { pod: u64, node: String },
    #[error("pod {0} is not placed, so it cannot be released")]
    NotPlaced(u64),
    #[error("node index {0} does not exist")]
    NoSuchNode(NodeId),
    #[error("placement does not fit node {node}: {why}")]
    DoesNotFit { node: String, why: String },
    #[error("node {0} has been removed from the cluster; it takes no pods until it is added again")]
    NodeRemoved(String),
    #[error("node {node} cannot be added: {why}")]
    BadNode { node: String, why: String },
}

/// Why one node cannot take a pod. The order is the order the filter checks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Misfit {
    /// The pod wants a GPU and the node has none.
    NoGpus,
    /// The node's GPU model is not one the pod allows.
    GpuModel,
    Cpu,
    Memory,
    /// Not enough GPUs with enough free milli-GPU each.
    GpuCapacity,
}

impl Misfit {
    pub const ALL: [Misfit; 5] =
        [Misfit::NoGpus, Misfit::GpuModel, Misfit::Cpu, Misfit::Memory, Misfit::GpuCapacity];
}

impl Misfit {
    /// What kube-scheduler shows for a node that failed for this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Misfit::NoGpus => "node has no GPUs",
            Misfit::GpuModel => "GPU model not allowed",
            Misfit::Cpu => "insufficient CPU",
            Misfit::Memory => "insufficient memory",
            Misfit::GpuCapacity => "insufficient free GPU",
        }
    }

    /// The same, for a node that would fail even with nothing on it.
    pub fn even_when_empty(self) -> &'static str {
        match self {
            Misfit::NoGpus => "node has no GPUs, even when empty",
            Misfit::GpuModel => "GPU model not allowed, even when empty",
            Misfit::Cpu => "insufficient CPU, even when empty",
            Misfit::Memory => "insufficient memory, even when empty",
            Misfit::GpuCapacity => "insufficient free GPU, even when empty",
        }
    }
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks whether `node` can hold `pod` now. Mirrors kube-scheduler's resource fit plus the GPU
/// share filter: CPU and memory within what is free, an allowed model, and `gpu_count` GPUs that
/// each have `gpu_milli` free.
pub fn fits(node: &Node, pod: &PodRequest) -> Result<(), Misfit> {
    if pod.wants_gpu() {
        let Some(model) = node.model else { return Err(Misfit::NoGpus) };
        if let Some(allowed) = pod.allowed_models {
            if !allowed.contains(model) {
                return Err(Misfit::GpuModel);
            }
        }
    }
    if pod.cpu_milli > node.cpu_free {
        return Err(Misfit::Cpu);
    }
    if pod.memory_mib > node.memory_free {
        return Err(Misfit::Memory);
    }
    if pod.wants_gpu() {
        // Most nodes of a busy cluster fail here; the total settles them without a scan.
        if u64::from(node.gpu_free_total) < pod.gpu_total() {
            return Err(Misfit::GpuCapacity);
        }
        let usable = node.gpu_free.iter().filter(|&&f| f >= pod.gpu_milli).count() as u32;
        if usable < pod.gpu_count {
            return Err(Misfit::GpuCapacity);
        }
    }
    Ok(())
}

/// Could `node`, empty, ever hold `pod`? Used to tell "cluster is full" from "never fits".
///
/// The checks of [`fits`] against an empty node (every GPU wholly free), without building one:
/// the extender asks this for every node a large pod fails.
pub fn could_ever_fit(node: &Node, pod: &PodRequest) -> bool {
    if pod.wants_gpu() {
        let Some(model) = node.model else { return false };
        if pod.allowed_models.is_some_and(|allowed| !allowed.contains(model)) {
            return false;
        }
    }
    if pod.cpu_milli > node.cpu_capacity || pod.memory_mib > node.memory_capacity {
        return false;
    }
    if pod.wants_gpu() {
        let gpus = node.gpu_count();
        let usable = if pod.gpu_milli <= GPU_MILLI { gpus } else { 0 };
        if u64::from(gpus * GPU_MILLI) < pod.gpu_total() || usable < pod.gpu_count {
            return false;
        }
    }
    true
}

/// GPUs picked the way kube-scheduler GPU-share plugins do by default: whole GPUs take the
/// lowest-index idle GPUs; a shared GPU takes the GPU with the least free milli that still fits
/// (lowest index on ties). Returns `None` when the pod does not fit the node's GPUs.
pub fn best_fit_gpus(node: &Node, pod: &PodRequest) -> Option<Vec<(u32, u32)>> {
    if !pod.wants_gpu() {
        return Some(Vec::new());
    }
    if pod.is_sharing() {
        let mut best: Option<(u32, u32)> = None;
        for (i, &f) in node.gpu_free.iter().enumerate() {
            if f >= pod.gpu_milli && best.is_none_or(|(_, bf)| f < bf) {
                best = Some((i as u32, f));
            }
        }
        return best.map(|(i, _)| vec![(i, pod.gpu_milli)]);
    }
    lowest_index_gpus(node, pod)
}

/// The first `gpu_count` GPUs by index with at least `gpu_milli` free.
pub fn lowest_index_gpus(node: &Node, pod: &PodRequest) -> Option<Vec<(u32, u32)>> {
    let picked: Vec<(u32, u32)> = node
        .gpu_free
        .iter()
        .enumerate()
        .filter(|(_, &f)| f >= pod.gpu_milli)
        .take(pod.gpu_count as usize)
        .map(|(i, _)| (i as u32, pod.gpu_milli))
        .collect();
    (picked.len() == pod.gpu_count as usize).then_some(picked)
}

/// What the cluster keeps beside each [`Node`] so that the node can change, or go, under the
/// pods placed on it without the accounting drifting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct NodeBook {
    /// `false` once the node is removed, until a node of the same name is upserted again.
    in_service: bool,
    /// What the node offers with nothing placed on it: the free values it was given, at
    /// construction or at its last upsert. A GPU given with less than a whole GPU free (a failed
    /// GPU its reader took out of service, say) offers only that.
    base_cpu: u32,
    base_memory: u64,
    base_gpu: Vec<u32>,
    /// What the pods placed on the node hold. Per GPU by index; after the node lost GPUs under
    /// running pods, `held_gpu` is longer than `base_gpu`.
    held_cpu: u64,
    held_memory: u64,
    held_gpu: Vec<u32>,
    /// In service, but placed pods hold more than the node offers (it shrank under them): the
    /// node offers nothing until enough of them leave.
    overcommitted: bool,
}

impl NodeBook {
    /// The book of a node with nothing placed on it, offering what it has free now.
    fn of(node: &Node) -> Self {
        NodeBook {
            in_service: true,
            base_cpu: node.cpu_free,
            base_memory: node.memory_free,
            base_gpu: node.gpu_free.clone(),
            ..NodeBook::default()
        }
    }

    /// Takes the node's free values as what it offers with nothing placed on it.
    fn set_base(&mut self, node: &Node) {
        self.base_cpu = node.cpu_free;
        self.base_memory = node.memory_free;
        self.base_gpu.clone_from(&node.gpu_free);
    }

    fn closed(&self) -> bool {
        !self.in_service || self.overcommitted
    }

    /// Whether the placed pods hold more than the node offers, in any resource or on any GPU.
    fn over(&self) -> bool {
        self.held_cpu > u64::from(self.base_cpu)
            || self.held_memory > self.base_memory
            || self.held_gpu.iter().enumerate().any(|(g, &h)| h > self.base_gpu.get(g).copied().unwrap_or(0))
    }

    /// Adds (or takes away) what `pod` holds at `placement`. Saturates rather than wraps, though
    /// a release only ever takes away what an allocation added.
    fn hold(&mut self, pod: &PodRequest, placement: &Placement, add: bool) {
        let cpu = u64::from(pod.cpu_milli);
        if add {
            self.held_cpu = self.held_cpu.saturating_add(cpu);
            self.held_memory = self.held_memory.saturating_add(pod.memory_mib);
        } else {
            self.held_cpu = self.held_cpu.saturating_sub(cpu);
            self.held_memory = self.held_memory.saturating_sub(pod.memory_mib);
        }
        for &(g, m) in &placement.gpus {
            let g = g as usize;
            if self.held_gpu.len() <= g {
                self.held_gpu.resize(g + 1, 0);
            }
            let h = &mut self.held_gpu[g];
            *h = if add { h.saturating_add(m) } else { h.saturating_sub(m) };
        }
    }

    /// Sets `node`'s free resources from the book: what the node offers less what its pods hold,
    /// or nothing at all when it is out of service or overcommitted.
    fn refresh(&mut self, node: &mut Node) {
        self.overcommitted = self.in_service && self.over();
        if self.closed() {
            node.cpu_free = 0;
            node.memory_free = 0;
            node.gpu_free.iter_mut().for_each(|f| *f = 0);
            node.gpu_free_total = 0;
            return;
        }
        // Not over: every held amount is at most what is offered, so nothing here saturates.
        node.cpu_free = self.base_cpu.saturating_sub(u32::try_from(self.held_cpu).unwrap_or(u32::MAX));
        node.memory_free = self.base_memory.saturating_sub(self.held_memory);
        let mut total = 0u32;
        for (g, f) in node.gpu_free.iter_mut().enumerate() {
            let base = self.base_gpu.get(g).copied().unwrap_or(0);
            *f = base.saturating_sub(self.held_gpu.get(g).copied().unwrap_or(0));
            total = total.saturating_add(*f);
        }
        node.gpu_free_total = total;
    }
}

/// Checks a node handed to [`Cluster::upsert_node`]: free within capacity, per-GPU free within
/// one GPU, the total in step, and a GPU model the catalog knows.
fn check_node(node: &Node, models: &ModelCatalog) -> Result<(), ModelError> {
    let bad = |why: String| Err(ModelError::BadNode { node: node.name.clone(), why });
    if node.gpu_free.len() as u64 > u64::from(u32::MAX / GPU_MILLI) {
        return bad(format!("{} GPUs is not a plausible count", node.gpu_free.len()));
    }
    if let Some(f) = node.gpu_free.iter().find(|&&f| f > GPU_MILLI) {
        return bad(format!("a GPU has {f} milli free, more than one GPU ({GPU_MILLI})"));
    }
    let sum: u64 = node.gpu_free.iter().map(|&f| u64::from(f)).sum();
    if sum != u64::from(node.gpu_free_total) {
        return bad(format!("gpu_free_total is {} but the GPUs have {sum} milli free", node.gpu_free_total));
    }
    if node.cpu_free > node.cpu_capacity || node.memory_free > node.memory_capacity {
        return bad("more CPU or memory free than its capacity".into());
    }
    if let Some(m) = node.model.filter(|_| !node.gpu_free.is_empty()) {
        if usize::from(m.0) >= models.len() {
            return bad(format!(
                "GPU model #{} is not in the cluster's model catalog; intern its name first",
                m.0
            ));
        }
    }
    Ok(())
}

/// Nodes, their free resources, and the placement of every pod on them.
///
/// The set of nodes may change while pods run, as in a live cluster: [`Cluster::upsert_node`]
/// adds a node or changes one, and [`Cluster::remove_node`] takes one out of service. A
/// [`NodeId`] is an index into `nodes` and stays valid for the cluster's life: a removed node
/// keeps its slot (with no capacity, so that nothing fits it and capacity totals leave it out),
/// and a node upserted again under the same name gets its slot back.
///
/// Change nodes through these methods, not by writing to `nodes`: the cluster keeps, per node,
/// what the node offers and what its pods hold, so that a node can shrink or go under running
/// pods and come back exactly. (A node pushed onto `nodes` directly is adopted as it is, with
/// nothing placed on it, the next time the cluster changes.)
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub models: ModelCatalog,
    pub nodes: Vec<Node>,
    placed: HashMap<u64, (PodRequest, Placement)>,
    /// Per node, in step with `nodes` (see [`Cluster::sync`]).
    books: Vec<NodeBook>,
    /// Node name → id; with duplicate names, the first node of the name.
    by_name: HashMap<String, NodeId>,
    /// How many nodes are out of service or overcommitted.
    closed: usize,
}

impl Cluster {
    /// A cluster of `nodes`, each in service and offering what it has free, with nothing placed.
    pub fn new(models: ModelCatalog, nodes: Vec<Node>) -> Self {
        let mut c = Cluster { models, nodes, ..Cluster::default() };
        c.sync();
        c
    }

    /// Adopts nodes pushed onto (or dropped from) `nodes` directly, so that the books and the
    /// name index cover exactly the nodes there are.
    fn sync(&mut self) {
        if self.books.len() > self.nodes.len() {
            let n = self.nodes.len();
            self.books.truncate(n);
            self.by_name.retain(|_, id| *id < n);
            self.closed = self.books.iter().filter(|b| b.closed()).count();
        }
        while self.books.len() < self.nodes.len() {
            let id = self.books.len();
            let node = &self.nodes[id];
            self.books.push(NodeBook::of(node));
            self.by_name.entry(node.name.clone()).or_insert(id);
        }
    }

    /// The id of the node named `name`, whether in service or removed (ids outlive removal).
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied().or_else(|| {
            // Nodes pushed directly and not adopted yet.
            let from = self.books.len().min(self.nodes.len());
            self.nodes[from..].iter().position(|n| n.name == name).map(|i| from + i)
        })
    }

    /// Whether node `id` exists and has not been removed.
    pub fn in_service(&self, id: NodeId) -> bool {
        id < self.nodes.len() && self.books.get(id).is_none_or(|b| b.in_service)
    }

    /// Whether node `id` is in service but its pods hold more than it offers, after it shrank
    /// under them: it offers nothing until enough of them leave.
    pub fn is_overcommitted(&self, id: NodeId) -> bool {
        self.books.get(id).is_some_and(|b| b.overcommitted)
    }

    /// Whether node `id` takes new pods: in service and not overcommitted.
    pub fn is_open(&self, id: NodeId) -> bool {
        self.in_service(id) && !self.is_overcommitted(id)
    }

    /// How many nodes are removed or overcommitted; 0 for a cluster whose nodes never changed.
    pub fn closed_nodes(&self) -> usize {
        self.closed
    }

    /// Re-derives node `id`'s free resources from its book, keeping the closed count; `was` is
    /// whether the node was closed before the change that calls for this.
    fn refresh(&mut self, id: NodeId, was: bool) {
        if let (Some(node), Some(book)) = (self.nodes.get_mut(id), self.books.get_mut(id)) {
            book.refresh(node);
            match (was, book.closed()) {
                (false, true) => self.closed += 1,
                (true, false) => self.closed = self.closed.saturating_sub(1),
                _ => {}
            }
        }
    }

    /// Adds `node`, or, when a node of that name exists (in service or removed), updates it to
    /// `node`'s capacities, GPUs and model and puts it (back) in service. Returns its id, which
    /// for an update is the id it always had.
    ///
    /// `node`'s free values are taken as what it offers with nothing placed on it (as
    /// [`Node::new`] builds it: everything; a reader may have zeroed failed GPUs). The pods
    /// placed on an updated node stay placed and stay accounted: its free resources become that
    /// offer less what they hold. If they hold more than the node now offers (it shrank under
    /// them, or lost a GPU one of them uses), the node is *overcommitted*: it offers nothing at
    /// all until enough of them are released, and no count ever underflows. Its
    /// [`Node::generation`] moves past both the old node's and `node`'s, so that anything cached
    /// about the old node is stale.
    ///
    /// Fails, changing nothing, when `node` is inconsistent (more free than capacity, a GPU with
    /// more than [`GPU_MILLI`] free, a wrong `gpu_free_total`) or names a GPU model that is not in
    /// [`Cluster::models`].
    pub fn upsert_node(&mut self, mut node: Node) -> Result<NodeId, ModelError> {
        self.sync();
        check_node(&node, &self.models)?;
        if node.gpu_free.is_empty() {
            node.model = None;
        }
        let existing = self.by_name.get(&node.name).copied().filter(|&id| id < self.nodes.len());
        let Some(id) = existing else {
            // A new node: nothing is placed on it yet.
            node.gpu_pod_kinds.clear();
            let id = self.nodes.len();
            self.books.push(NodeBook::of(&node));
            self.by_name.insert(node.name.clone(), id);
            self.nodes.push(node);
            return Ok(id);
        };
        let old = &mut self.nodes[id];
        node.gpu_pod_kinds = std::mem::take(&mut old.gpu_pod_kinds);
        node.generation = old.generation.max(node.generation).wrapping_add(1);
        let book = &mut self.books[id];
        let was = book.closed();
        book.set_base(&node);
        book.in_service = true;
        self.nodes[id] = node;
        self.refresh(id, was);
        Ok(id)
    }

    /// Takes the node named `name` out of service and returns its id; `None` when no node of
    /// that name is in service.
    ///
    /// The node keeps its id and name but has no capacity and no GPU model any more, so nothing
    /// fits it, the scheduler skips it, and [`Cluster::gpu_capacity`] and
    /// [`Cluster::gpu_allocated`] leave it out. Pods placed on it stay placed and accounted
    /// until they are released (a driver releases them when it learns they are gone). Upserting
    /// a node of the same name brings the slot back.
    pub fn remove_node(&mut self, name: &str) -> Option<NodeId> {
        self.sync();
        let id = self.by_name.get(name).copied()?;
        let (node, book) = (self.nodes.get_mut(id)?, self.books.get_mut(id)?);
        if !book.in_service {
            return None;
        }
        let was = book.closed();
        book.in_service = false;
        book.base_cpu = 0;
        book.base_memory = 0;
        book.base_gpu.clear();
        node.model = None;
        node.cpu_capacity = 0;
        node.memory_capacity = 0;
        node.gpu_free.clear();
        node.generation = node.generation.wrapping_add(1);
        self.refresh(id, was);
        Some(id)
    }

    /// Total GPU capacity in milli-GPU (removed nodes have none).
    pub fn gpu_capacity(&self) -> u64 {
        self.nodes.iter().map(|n| n.gpu_capacity() as u64).sum()
    }

    /// GPU milli-GPU in use: capacity less free, over the nodes in service (an overcommitted
    /// node offers nothing, so all of its GPUs count as in use).
    pub fn gpu_allocated(&self) -> u64 {
        self.nodes.iter().map(|n| n.gpu_capacity().saturating_sub(n.gpu_free_total) as u64).sum()
    }

    pub fn placement(&self, pod: u64) -> Option<&Placement> {
        self.placed.get(&pod).map(|(_, p)| p)
    }

    pub fn placed_pods(&self) -> usize {
        self.placed.len()
    }

    /// Every placed pod with its request and placement, in no particular order.
    pub fn placements(&self) -> impl Iterator<Item = (u64, &PodRequest, &Placement)> + '_ {
        self.placed.iter().map(|(&id, (pod, p))| (id, pod, p))
    }

    /// Places pod `id` as `placement` says, after checking that every part fits. On error nothing
    /// changes. A removed node takes nothing; an overcommitted one has nothing free, so only a
    /// pod that asks for nothing fits it.
    pub fn allocate(&mut self, id: u64, pod: &PodRequest, placement: Placement) -> Result<(), ModelError> {
        pod.validate()?;
        self.sync();
        if let Some((_, p)) = self.placed.get(&id) {
            let node = self.nodes.get(p.node).map_or_else(|| format!("#{}", p.node), |n| n.name.clone());
            return Err(ModelError::AlreadyPlaced { pod: id, node });
        }
        let node = self.nodes.get_mut(placement.node).ok_or(ModelError::NoSuchNode(placement.node))?;
        let book = self.books.get_mut(placement.node).ok_or(ModelError::NoSuchNode(placement.node))?;
        if !book.in_service {
            return Err(ModelError::NodeRemoved(node.name.clone()));
        }
        let misfit = |why: String| ModelError::DoesNotFit { node: node.name.clone(), why };
        if let Err(m) = fits(node, pod) {
            return Err(misfit(m.to_string()));
        }
        if placement.gpus.len() != pod.gpu_count as usize * usize::from(pod.wants_gpu()) {
            return Err(misfit(format!(
                "pod wants {} GPUs, placement names {}",
                pod.gpu_count,
                placement.gpus.len()
            )));
        }
        for (i, &(g, m)) in placement.gpus.iter().enumerate() {
            let free = *node.gpu_free.get(g as usize).ok_or_else(|| misfit(format!("no GPU {g}")))?;
            if placement.gpus[..i].iter().any(|&(h, _)| h == g) {
                return Err(misfit(format!("GPU {g} is named twice")));
            }
            if m != pod.gpu_milli || free < m {
                return Err(misfit(format!(
                    "GPU {g} has {free} milli free; the pod needs {} on it",
                    pod.gpu_milli
                )));
            }
        }
        node.cpu_free -= pod.cpu_milli;
        node.memory_free -= pod.memory_mib;
        for &(g, m) in &placement.gpus {
            node.gpu_free[g as usize] -= m;
            node.gpu_free_total -= m;
        }
        node.count_kind(pod, true);
        node.generation = node.generation.wrapping_add(1);
        book.hold(pod, &placement, true);
        self.placed.insert(id, (*pod, placement));
        Ok(())
    }

    /// Frees everything pod `id` holds and returns where it was. On a node that was removed or
    /// is overcommitted, the pod's share is taken off what the node's pods hold; an overcommitted
    /// node opens again once they hold no more than it offers.
    pub fn release(&mut self, id: u64) -> Result<Placement, ModelError> {
        self.sync();
        let (pod, placement) = self.placed.remove(&id).ok_or(ModelError::NotPlaced(id))?;
        let n = placement.node;
        let (Some(node), Some(book)) = (self.nodes.get_mut(n), self.books.get_mut(n)) else {
            return Ok(placement);
        };
        book.hold(&pod, &placement, false);
        let open = !book.closed();
        if open {
            // The common case, incrementally: free is exactly offer less held here.
            node.cpu_free = node.cpu_free.saturating_add(pod.cpu_milli);
            node.memory_free = node.memory_free.saturating_add(pod.memory_mib);
            for &(g, m) in &placement.gpus {
                if let Some(f) = node.gpu_free.get_mut(g as usize) {
                    *f += m;
                    node.gpu_free_total += m;
                }
            }
        }
        node.count_kind(&pod, false);
        node.generation = node.generation.wrapping_add(1);
        if !open {
            self.refresh(n, true);
        }
        Ok(placement)
    }

    /// Checks the cluster's accounting from scratch: per node, free within capacity and
    /// `gpu_free_total` in step; what the placed pods hold equals what the books say; an open
    /// node's free is exactly its offer less that; an overcommitted node holds more than it
    /// offers and offers nothing; a removed node has no capacity; the name index and the closed
    /// count agree. Used by tests and by `Queue::check_invariants`.
    pub fn check(&self) -> Result<(), Inconsistent> {
        self.audit().map_err(Inconsistent)
    }

    /// [`Cluster::check`], saying what is wrong.
    pub(crate) fn audit(&self) -> Result<(), String> {
        if self.books.len() != self.nodes.len() {
            // Nodes pushed directly: adopted with nothing placed on the next change.
            if self.books.len() > self.nodes.len()
                || self.placed.values().any(|(_, p)| p.node >= self.books.len())
            {
                return Err(format!("{} node books for {} nodes", self.books.len(), self.nodes.len()));
            }
        }
        let mut held = vec![NodeBook::default(); self.books.len()];
        for (id, (pod, p)) in &self.placed {
            let Some(h) = held.get_mut(p.node) else {
                return Err(format!("pod {id} is placed on node #{}, which does not exist", p.node));
            };
            h.hold(pod, p, true);
        }
        let mut closed = 0;
        for (i, (node, book)) in self.nodes.iter().zip(&self.books).enumerate() {
            let name = &node.name;
            if node.gpu_free_total as u64 != node.gpu_free.iter().map(|&f| f as u64).sum::<u64>() {
                return Err(format!(
                    "node {name}: gpu_free_total {} is not the sum of gpu_free {:?}",
                    node.gpu_free_total, node.gpu_free
                ));
            }
            if node.cpu_free > node.cpu_capacity
                || node.memory_free > node.memory_capacity
                || node.gpu_free.iter().any(|&f| f > GPU_MILLI)
            {
                return Err(format!("node {name}: more free than its capacity"));
            }
            let h = &held[i];
            let trimmed = |v: &[u32]| v.iter().rposition(|&x| x > 0).map_or(0, |p| p + 1);
            if h.held_cpu != book.held_cpu
                || h.held_memory != book.held_memory
                || h.held_gpu[..trimmed(&h.held_gpu)] != book.held_gpu[..trimmed(&book.held_gpu)]
            {
                return Err(format!(
                    "node {name}: placed pods hold cpu {} mem {} gpus {:?}, the book says cpu {} mem {} gpus {:?}",
                    h.held_cpu, h.held_memory, h.held_gpu, book.held_cpu, book.held_memory, book.held_gpu
                ));
            }
            if book.overcommitted != (book.in_service && book.over()) {
                return Err(format!("node {name}: overcommitted flag {} is wrong", book.overcommitted));
            }
            let mut expect = node.clone();
            let mut b = book.clone();
            b.refresh(&mut expect);
            if (expect.cpu_free, expect.memory_free, &expect.gpu_free)
                != (node.cpu_free, node.memory_free, &node.gpu_free)
            {
                return Err(format!(
                    "node {name}: free cpu {} mem {} gpus {:?}, but offer less held is cpu {} mem {} gpus {:?}",
                    node.cpu_free, node.memory_free, node.gpu_free, expect.cpu_free, expect.memory_free, expect.gpu_free
                ));
            }
            if book.in_service {
                if book.base_cpu > node.cpu_capacity
                    || book.base_memory > node.memory_capacity
                    || book.base_gpu.len() != node.gpu_free.len()
                {
                    return Err(format!("node {name}: its offer exceeds its capacity"));
                }
            } else if node.cpu_capacity != 0
                || node.memory_capacity != 0
                || !node.gpu_free.is_empty()
                || node.model.is_some()
            {
                return Err(format!("node {name} is removed but still has capacity"));
            }
            closed += usize::from(book.closed());
            if !self.by_name.get(name).is_some_and(|&id| id <= i && self.nodes[id].name == *name) {
                return Err(format!("node {name} (#{i}) is missing from the name index"));
            }
        }
        if closed != self.closed {
            return Err(format!("{closed} nodes are closed but the count says {}", self.closed));
        }
        Ok(())
    }
}
