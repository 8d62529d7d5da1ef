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
    pub fn new(name: impl Into<String>, cpu_milli: u32, memory_mib: u64, gpus: u32, model: Option<ModelId>) -> Self {
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
    pub const ALL: [Misfit; 5] = [Misfit::NoGpus, Misfit::GpuModel, Misfit::Cpu, Misfit::Memory, Misfit::GpuCapacity];
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Misfit::NoGpus => "node has no GPUs",
            Misfit::GpuModel => "GPU model not allowed",
            Misfit::Cpu => "insufficient CPU",
            Misfit::Memory => "insufficient memory",
            Misfit::GpuCapacity => "insufficient free GPU",
        })
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
        let usable = node.gpu_free.iter().filter(|&&f| f >= pod.gpu_milli).count() as u32;
        if usable < pod.gpu_count {
            return Err(Misfit::GpuCapacity);
        }
    }
    Ok(())
}

/// Could `node`, empty, ever hold `pod`? Used to tell "cluster is full" from "never fits".
pub fn could_ever_fit(node: &Node, pod: &PodRequest) -> bool {
    let empty = Node::new(String::new(), node.cpu_capacity, node.memory_capacity, node.gpu_count(), node.model);
    fits(&empty, pod).is_ok()
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

/// Nodes, their free resources, and the placement of every pod on them.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub models: ModelCatalog,
    pub nodes: Vec<Node>,
    placed: HashMap<u64, (PodRequest, Placement)>,
}

impl Cluster {
    pub fn new(models: ModelCatalog, nodes: Vec<Node>) -> Self {
        Cluster { models, nodes, placed: HashMap::new() }
    }

    /// Total GPU capacity in milli-GPU.
    pub fn gpu_capacity(&self) -> u64 {
        self.nodes.iter().map(|n| n.gpu_capacity() as u64).sum()
    }

    /// GPU milli-GPU in use.
    pub fn gpu_allocated(&self) -> u64 {
        self.nodes.iter().map(|n| (n.gpu_capacity() - n.gpu_free_total) as u64).sum()
    }

    pub fn placement(&self, pod: u64) -> Option<&Placement> {
        self.placed.get(&pod).map(|(_, p)| p)
    }

    pub fn placed_pods(&self) -> usize {
        self.placed.len()
    }

    /// Places pod `id` as `placement` says, after checking that every part fits. On error nothing
    /// changes.
    pub fn allocate(&mut self, id: u64, pod: &PodRequest, placement: Placement) -> Result<(), ModelError> {
        pod.validate()?;
        if let Some((_, p)) = self.placed.get(&id) {
            return Err(ModelError::AlreadyPlaced { pod: id, node: self.nodes[p.node].name.clone() });
        }
        let node = self.nodes.get_mut(placement.node).ok_or(ModelError::NoSuchNode(placement.node))?;
        let misfit = |why: String| ModelError::DoesNotFit { node: node.name.clone(), why };
        if let Err(m) = fits(node, pod) {
            return Err(misfit(m.to_string()));
        }
        if placement.gpus.len() != pod.gpu_count as usize * usize::from(pod.wants_gpu()) {
            return Err(misfit(format!("pod wants {} GPUs, placement names {}", pod.gpu_count, placement.gpus.len())));
        }
        for (i, &(g, m)) in placement.gpus.iter().enumerate() {
            let free = *node.gpu_free.get(g as usize).ok_or_else(|| misfit(format!("no GPU {g}")))?;
            if placement.gpus[..i].iter().any(|&(h, _)| h == g) {
                return Err(misfit(format!("GPU {g} is named twice")));
            }
            if m != pod.gpu_milli || free < m {
                return Err(misfit(format!("GPU {g} has {free} milli free; the pod needs {} on it", pod.gpu_milli)));
            }
        }
        node.cpu_free -= pod.cpu_milli;
        node.memory_free -= pod.memory_mib;
        for &(g, m) in &placement.gpus {
            node.gpu_free[g as usize] -= m;
            node.gpu_free_total -= m;
        }
        node.count_kind(pod, true);
        node.generation += 1;
        self.placed.insert(id, (*pod, placement));
        Ok(())
    }

    /// Frees everything pod `id` holds and returns where it was.
    pub fn release(&mut self, id: u64) -> Result<Placement, ModelError> {
        let (pod, placement) = self.placed.remove(&id).ok_or(ModelError::NotPlaced(id))?;
        let node = &mut self.nodes[placement.node];
        node.cpu_free += pod.cpu_milli;
        node.memory_free += pod.memory_mib;
        for &(g, m) in &placement.gpus {
            node.gpu_free[g as usize] += m;
            node.gpu_free_total += m;
        }
        node.count_kind(&pod, false);
        node.generation += 1;
        Ok(placement)
    }
}
