//! The queue controller's decisions, without Kubernetes I/O: pods held by Gantry's scheduling
//! gate are grouped into workloads, the core's queue admits whole workloads, and the controller
//! says what to do to the API server as [`Action`]s. The Kubernetes adapter (watchers, patches,
//! evictions, events, leader election) carries the actions out; tests check them directly.
//!
//! Pods arrive as [`PodRecord`]s, read once where their watch events came in (tests hand over
//! objects, read on the spot): a rebuild reads no object again.
//!
//! 1. `pod_gated`: a gated pod (its requests resolved against the GPU models known now) joins its
//!    workload ([`gantry_api::identity`]). How many pods a gang has comes from, in order: the
//!    pod's `gantry.dev/gang-size` annotation (set by users, or copied from Kueue's count by the
//!    webhook); the object that created it ([`Controller::owner_applied`], each framework's rule
//!    in [`gantry_api::gang`]); otherwise the pod is a workload of its own. A gang whose object
//!    has not been read yet waits whole, and its pods say so. When all its pods are there the
//!    workload is queued, with the fewest that may start together as its `min_members`;
//! 2. `reconcile`: one admission cycle; admitted workloads get [`Action::Ungate`] per pod with the
//!    planned node, preempted ones [`Action::Evict`] per pod, and waiting ones
//!    [`Action::Pending`] with the core's explanation (or why the gang is not complete);
//! 3. `pod_gone`: a pod ended; its workload's quota is released when its last pod ends.
//!
//! Members of a gang may differ in shape (an MPIJob's CPU-only launcher and 8-GPU workers, a Ray
//! head without GPUs): each is charged and placed by its own request. A gang none of whose pods
//! asks for a GPU is not Gantry's to queue: its pods are released at once ([`Action::Release`]).
//!
//! Pods that arrive for a gang already queued or running (a restarted worker, an elastic
//! scale-up, an MPIJob launcher created once its workers run), and members left out when only
//! `min_members` could start, are workloads of their own, as with a PodGroup's `minMember`.
//!
//! After a restart, [`Controller::rebuild`] takes running workloads back from their pods'
//! placement records, so no quota leaks and nothing is admitted twice.
//!
//! A workload any of whose waiting pods carries `gantry.dev/hold` (`kubectl gantry hold`) is
//! held: it leaves the queue (or never joins it), its pods stay gated and say why, and it
//! queues again when the mark is gone, at its old place (its submission time counts from its
//! first pod's creation). A running workload is not stopped by a hold.
//!
//! An evicted workload is withdrawn: its framework recreates the pods, gated, as a new workload
//! (which queues with a new submission time).

use gantry_api::gang::{GangError, GangSpec, Size};
use gantry_api::identity::{admission_key, notebook_of, GangOwner, Identity};
use gantry_api::keys::{GPU_MILLI_ANNOTATION, GPU_MODELS_ANNOTATION, HOLD_ANNOTATION, PLACEMENT_ANNOTATION};
use gantry_api::node::{idle_pods, parse_node, IdleOnNode, NodeError, NodeView};
use gantry_api::placement::Planned;
use gantry_api::pod::PodView;
use gantry_api::quota::NotebookStopRecord;
use gantry_api::record::{AsRecord, PodRecord};
use gantry_core::model::{ModelSet, Placement, GPU_MILLI};
use gantry_core::queue::{Charge, LiveError, PodSet, Queue, Restructure, Workload, WorkloadId};
use gantry_core::tenancy::{Kind, Seconds, Tenancy};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// A pod the controller acts on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What the adapter must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Record the planned node on the pod, with the admission time, and remove the scheduling gate.
    Ungate { pod: PodRef, node: String, gpus: Vec<u32>, at: Seconds },
    /// Remove the scheduling gate with no plan: the pod is not Gantry's to queue (`message`
    /// says why).
    Release { pod: PodRef, message: String },
    /// Evict the pod (Eviction API) to make room; `message` says for whom.
    Evict { pod: PodRef, message: String },
    /// Set the pod's condition and a deduplicated Event: why its workload waits.
    Pending { pod: PodRef, message: String },
    /// The pod can never run as asked: say why (the webhook should have refused it).
    Refused { pod: PodRef, message: String },
    /// Stop the Kubeflow Notebook `namespace/name` (whose pod is `pod`) the Kubeflow way: its
    /// GPUs sat idle past its tenant's limit (`stop` says how long, the GPU-time and why).
    StopNotebook { pod: PodRef, name: String, stop: NotebookStop },
}

/// Why a notebook is stopped, for its Event and the ledger's line.
#[derive(Clone, Debug, PartialEq)]
pub struct NotebookStop {
    pub tenant: String,
    pub flavor: String,
    /// Unix seconds.
    pub idle_since: Seconds,
    pub at: Seconds,
    /// Milli-GPU-seconds allocated and idle since `idle_since`.
    pub idle_milli_gpu_seconds: u64,
    /// The tenant's price of the flavor per GPU-hour, micro-units.
    pub price_micros: u64,
    pub message: String,
}

/// Why a node was not taken into the queue's cluster (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeRefused {
    /// The node object cannot be read; the message names the field.
    #[error(transparent)]
    Unreadable(#[from] NodeError),
    #[error(transparent)]
    Queue(#[from] LiveError),
}

/// A gated pod, read once.
struct Member {
    pod: PodRef,
    view: PodView,
    /// The pod's hold mark, when it has one (see the module documentation).
    held: Option<String>,
    /// The pipeline run its cost is charged to ([`gantry_api::charge`]).
    charge: Option<Charge>,
}

/// How many pods a gang has, as far as is known.
#[derive(Clone, Debug, PartialEq)]
enum GangSize {
    Known(Size),
    /// Its object has not been read: the gang waits whole.
    Unread(String),
    /// Its object cannot be read into a size: the gang never starts (the message says why).
    Refused(String),
}

struct Gang {
    id: WorkloadId,
    kind: Kind,
    /// The object giving its size, when it has one.
    owner: Option<GangOwner>,
    /// The size its pods' annotation declares, when they do.
    annotated: Option<u32>,
    pods: Vec<Member>,
    queued: bool,
}

/// Gated pods grouped into workloads, over the core's queue.
pub struct Controller {
    queue: Queue,
    gangs: HashMap<String, Gang>,
    by_id: HashMap<WorkloadId, String>,
    /// Pod UID → its gang's key, so that a pod's end finds its gang without a scan.
    by_uid: HashMap<String, String>,
    next_id: WorkloadId,
    /// Pods the queue does not manage that hold room on a node: UID → the queue's external id.
    external: HashMap<String, u64>,
    next_external: u64,
    /// Gang sizes read from the frameworks' objects, by owner key ([`GangOwner::key`]).
    owners: HashMap<String, Result<GangSpec, GangError>>,
    /// The node agents' idle evidence per node, used only while current (see [`IdleOnNode`]).
    idle: HashMap<String, IdleOnNode>,
    /// Each node as last read into the queue (with the models of its own reading), so that an
    /// event that changes nothing the queue reads is not applied again.
    node_reads: HashMap<String, (NodeView, Vec<String>)>,
    /// Notebooks already asked to stop: never asked twice (their pods leave when the notebook
    /// controller scales them to zero).
    stopping: HashSet<WorkloadId>,
    /// The ledger's lines for the notebooks stopped since the last [`Controller::drain_notebook_stops`].
    stopped: Vec<NotebookStopRecord>,
}

impl Controller {
    pub fn new(queue: Queue) -> Self {
        Controller {
            queue,
            gangs: HashMap::new(),
            by_id: HashMap::new(),
            by_uid: HashMap::new(),
            next_id: 1,
            external: HashMap::new(),
            next_external: 0,
            owners: HashMap::new(),
            idle: HashMap::new(),
            node_reads: HashMap::new(),
            stopping: HashSet::new(),
            stopped: Vec::new(),
        }
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// A changed tenancy, in place when it can be (see [`Queue::update_tenancy`]).
    pub fn update_tenancy(&mut self, tenancy: Tenancy, now: Seconds) -> Result<(), Restructure> {
        self.queue.update_tenancy(tenancy, now)
    }

    /// The pod's eviction was refused: its workload (taken back as running by a rebuild) is no
    /// victim before `until`.
    pub fn shield_pod(&mut self, uid: &str, until: Seconds) {
        if let Some(gang) = self.by_uid.get(uid).and_then(|k| self.gangs.get(k)) {
            self.queue.shield(gang.id, until);
        }
    }

    /// Closes every open usage meter at `now` (before this controller is replaced), so that what
    /// it metered is in the next [`Controller::drain_accruals`].
    pub fn close_accruals(&mut self, now: Seconds) {
        self.queue.ledger_mut().close_all(now);
    }

    /// Takes the usage records the queue closed since the last call (for the quota API's
    /// ledger; taken even when nobody keeps them, so they never pile up).
    /// Since when every GPU of running notebook `id` has been idle, by the node agents' evidence:
    /// the latest idle start of its pods, each read from the node the queue placed it on (an
    /// agent speaks only for its own node's pods), never before the workload started (a pod
    /// recreated under the same name, a StatefulSet's `nb-0`, must not inherit its
    /// predecessor's idle time). Evidence its agent has not confirmed recently at `now` is no
    /// evidence ([`IdleOnNode::current`]). `None`: some pod is busy or unreported, or `id` is no
    /// running notebook.
    pub fn notebook_idle_since(&self, id: WorkloadId, now: Seconds) -> Option<Seconds> {
        let (w, running) = (self.queue.workload(id)?, self.queue.running(id)?);
        if w.kind != Kind::Notebook {
            return None;
        }
        let gang = self.by_id.get(&id).and_then(|k| self.gangs.get(k)).filter(|g| !g.pods.is_empty())?;
        let cluster = self.queue.cluster();
        let nodes: HashSet<&str> = running
            .pods
            .iter()
            .filter_map(|(pod, _)| cluster.placement(*pod))
            .map(|p| cluster.nodes[p.node].name.as_str())
            .collect();
        gang.pods.iter().try_fold(running.at, |latest, m| {
            let key = format!("{}/{}", m.pod.namespace, m.pod.name);
            let at = nodes.iter().find_map(|n| self.idle.get(*n).and_then(|i| i.idle_since(&key, now)))?;
            Some(latest.max(at))
        })
    }

    /// The ledger's lines for the notebooks stopped since the last call (for the quota API).
    pub fn drain_notebook_stops(&mut self) -> Vec<NotebookStopRecord> {
        std::mem::take(&mut self.stopped)
    }

    pub fn drain_accruals(&mut self) -> gantry_core::queue::Accruals {
        self.queue.ledger_mut().drain_charged()
    }

    fn size_of(&self, gang: &Gang) -> GangSize {
        if let Some(n) = gang.annotated {
            return GangSize::Known(Size { total: n, min: n });
        }
        match &gang.owner {
            None => GangSize::Known(Size { total: 1, min: 1 }),
            Some(owner) => match self.owners.get(&owner.key()) {
                Some(Ok(spec)) => GangSize::Known(spec.size),
                Some(Err(e)) => GangSize::Refused(e.to_string()),
                None => GangSize::Unread(owner.describe()),
            },
        }
    }

    /// Whether a pod with this identity is one of a gang (else a workload of its own).
    fn is_gang(identity: &Identity, annotated: Option<u32>) -> bool {
        annotated.map_or(identity.owner.is_some(), |n| n > 1)
    }

    /// A pod carrying Gantry's scheduling gate was seen (added or updated).
    pub fn pod_gated(&mut self, pod: &impl AsRecord, now: Seconds) -> Vec<Action> {
        let pod = pod.record();
        let view = match pod.view(&self.queue.cluster().models) {
            Ok(v) => v,
            Err(e) => return vec![Action::Refused { pod: pod_ref(&pod), message: e.to_string() }],
        };
        let r = pod_ref(&pod);
        let held = pod.hold.clone();
        if self.by_uid.contains_key(&r.uid) {
            return self.hold_changed(&r.uid, held, now);
        }
        let identity = &pod.identity;
        let annotated = pod.gang_size;
        let mut gang = Self::is_gang(identity, annotated);
        let mut key = admission_key(identity, gang, &r.uid);
        if self.gangs.get(&key).is_some_and(|g| g.queued) {
            // A gang already queued or running: this pod starts on its own.
            gang = false;
            key = admission_key(identity, false, &r.uid);
        }
        let fresh = !self.gangs.contains_key(&key);
        let next_id = &mut self.next_id;
        let g = self.gangs.entry(key.clone()).or_insert_with(|| {
            let id = *next_id;
            *next_id += 1;
            let owner = if gang { identity.owner.clone() } else { None };
            Gang {
                id,
                kind: identity.kind,
                owner,
                annotated: annotated.filter(|_| gang),
                pods: Vec::new(),
                queued: false,
            }
        });
        g.pods.push(Member { pod: r.clone(), view, held, charge: pod.charge.clone() });
        let id = g.id;
        if fresh {
            self.by_id.insert(id, key.clone());
        }
        self.by_uid.insert(r.uid, key.clone());
        self.try_submit(&key, now)
    }

    /// A known gated pod changed: when its hold mark came or went, its workload leaves the
    /// queue (if it is still waiting there) or joins it again.
    fn hold_changed(&mut self, uid: &str, held: Option<String>, now: Seconds) -> Vec<Action> {
        let Some(key) = self.by_uid.get(uid).cloned() else { return Vec::new() };
        let Some(gang) = self.gangs.get_mut(&key) else { return Vec::new() };
        let Some(member) = gang.pods.iter_mut().find(|m| m.pod.uid == uid) else { return Vec::new() };
        if member.held == held {
            return Vec::new();
        }
        member.held = held;
        let (id, queued) = (gang.id, gang.queued);
        match (hold_of(gang).is_some(), queued) {
            (true, true) if self.queue.pending_ids().any(|p| p == id) => {
                self.queue.finish(id, now);
                if let Some(gang) = self.gangs.get_mut(&key) {
                    gang.queued = false;
                }
                Vec::new()
            }
            (false, false) => self.try_submit(&key, now),
            _ => Vec::new(),
        }
    }

    /// Queues a gang when all its pods are there; refuses it when it can never run as asked.
    /// A held gang waits out of the queue.
    fn try_submit(&mut self, key: &str, now: Seconds) -> Vec<Action> {
        let Some(gang) = self.gangs.get(key) else { return Vec::new() };
        if gang.queued || hold_of(gang).is_some() {
            return Vec::new();
        }
        match self.size_of(gang) {
            GangSize::Known(size) if gang.pods.len() as u32 >= size.total => self.submit_gang(key, size, now),
            GangSize::Refused(message) => gang
                .pods
                .iter()
                .map(|m| Action::Refused { pod: m.pod.clone(), message: message.clone() })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Queues a whole gang, or says why it can never run as asked. A refused gang stays known,
    /// unqueued, and is submitted again when nodes change (room that did not exist may appear).
    fn submit_gang(&mut self, key: &str, size: Size, now: Seconds) -> Vec<Action> {
        let Some(gang) = self.gangs.get_mut(key) else { return Vec::new() };
        let Some(first) = gang.pods.first() else { return Vec::new() };
        let namespace = first.pod.namespace.clone();
        if !gang.pods.iter().any(|m| m.view.request.wants_gpu()) {
            // Only GPU pods are Gantry's to queue; a gang with none starts as Kubernetes places it.
            gang.queued = true;
            let message = "released by Gantry's queue: no pod of this workload asks for a GPU".to_string();
            return gang
                .pods
                .iter()
                .map(|m| Action::Release { pod: m.pod.clone(), message: message.clone() })
                .collect();
        }
        let Some(tenant) = self.queue.tenancy.tenant_of_namespace(&namespace) else {
            let message =
                format!("namespace {namespace} belongs to no tenant; ask a platform admin to add it to one");
            return gang
                .pods
                .iter()
                .map(|m| Action::Refused { pod: m.pod.clone(), message: message.clone() })
                .collect();
        };
        let mut models = models_of(&gang.pods);
        if gang.pods.iter().any(|m| m.view.request.gpu_count > 0 && m.view.request.gpu_milli < GPU_MILLI) {
            // A share of a GPU is the platform's to grant: only on flavors with sharing.
            let (shared, names) = sharing_models(&self.queue);
            let allowed = ModelSet(models.map_or(shared.0, |m| m.0 & shared.0));
            if allowed.is_empty() {
                let message = format!(
                    "{GPU_MILLI_ANNOTATION} asks for a share of a GPU, but no GPU model this pod accepts is a flavor with sharing \
                     (flavors with sharing: {}); ask for whole GPUs, or for a model of such a flavor in {GPU_MODELS_ANNOTATION}",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                );
                return gang
                    .pods
                    .iter()
                    .map(|m| Action::Refused { pod: m.pod.clone(), message: message.clone() })
                    .collect();
            }
            models = Some(allowed);
        }
        let workload = Workload {
            id: gang.id,
            name: key.to_string(),
            tenant,
            kind: gang.kind,
            priority_class: None,
            pod_sets: gang
                .pods
                .iter()
                .map(|m| PodSet { name: m.view.name.clone(), count: 1, request: m.view.request })
                .collect(),
            min_members: size.min.min(gang.pods.len() as u32),
            submitted: submitted_at(&gang.pods.iter().map(|m| m.view.clone()).collect::<Vec<_>>(), now),
            models,
            expected_runtime: None,
            // A gang's pods are of one run; the first that names one charges the workload.
            charge: gang.pods.iter().find_map(|m| m.charge.clone()),
        };
        match self.queue.submit(workload, now) {
            Ok(()) => {
                gang.queued = true;
                Vec::new()
            }
            Err(refusal) => gang
                .pods
                .iter()
                .map(|m| Action::Refused { pod: m.pod.clone(), message: refusal.to_string() })
                .collect(),
        }
    }

    /// Rebuilds the state after a restart from the pods the API server has: pods without Gantry's
    /// gate that carry its placement annotation are running workloads, taken back at their
    /// placements (so their quota is counted and nothing is admitted twice); gated pods queue
    /// again; other pods running on nodes take their room. Their minimum runtime counts from the
    /// restart. Nodes and owner objects must have been given first ([`Controller::node_applied`],
    /// [`Controller::owner_applied`]).
    pub fn rebuild(&mut self, pods: &[impl AsRecord], now: Seconds) -> Vec<Action> {
        let records: Vec<_> = pods.iter().map(AsRecord::record).collect();
        let pods: Vec<&PodRecord> = records.iter().map(|r| &**r).collect();
        let mut actions = Vec::new();
        let mut admitted: Vec<(String, Vec<&PodRecord>)> = Vec::new();
        for &pod in &pods {
            // A placement record that cannot be read is one: the pod was admitted.
            if pod.gated || matches!(pod.planned, Ok(None)) || pod.finished {
                continue;
            }
            let identity = &pod.identity;
            let key = admission_key(identity, Self::is_gang(identity, pod.gang_size), &pod.uid);
            match admitted.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(pod),
                None => admitted.push((key, vec![pod])),
            }
        }
        // Restored in the order they were admitted (the time in their placement records, then
        // their key), so that each tenant's stack, whose newest work is its borrowed part, is the
        // same at every rebuild.
        admitted.sort_by_cached_key(|(key, members)| {
            let at = members
                .iter()
                .filter_map(|p| p.planned.as_ref().ok().and_then(|p| p.as_ref()?.at))
                .min()
                .unwrap_or(now);
            (at, key.clone())
        });
        for (key, members) in admitted {
            if let Err(message) = self.restore(&key, &members, now) {
                actions.extend(
                    members.iter().map(|p| Action::Refused { pod: pod_ref(p), message: message.clone() }),
                );
            }
        }
        // Waiting pods join in the order they were created (then by name), so that workload ids,
        // which break ties between equal submission times, come out the same at every rebuild.
        let mut waiting: Vec<&PodRecord> = pods.iter().copied().filter(|p| p.gated).collect();
        waiting.sort_by_cached_key(|p| (p.created, pod_ref(p)));
        for pod in waiting {
            actions.extend(self.pod_gated(pod, now));
        }
        // Everything else running on a node takes room, not quota.
        for pod in pods.into_iter().filter(|p| !p.gated) {
            actions.extend(self.pod_applied(pod, now));
        }
        actions
    }

    /// A framework's object that gives gang sizes was added or changed (read with
    /// [`gantry_api::gang::read`]; `Err` when its counts make no sense, under its key). Gangs that
    /// were waiting for it are queued once they have all their pods, or refused.
    pub fn owner_applied(
        &mut self,
        key: &str,
        spec: Result<GangSpec, GangError>,
        now: Seconds,
    ) -> Vec<Action> {
        if self.owners.get(key) == Some(&spec) {
            return Vec::new();
        }
        self.owners.insert(key.to_string(), spec);
        let waiting: Vec<String> = self
            .gangs
            .iter()
            .filter(|(_, g)| !g.queued && g.owner.as_ref().is_some_and(|o| o.key() == key))
            .map(|(k, _)| k.clone())
            .collect();
        waiting.iter().flat_map(|k| self.try_submit(k, now)).collect()
    }

    /// A framework's object was deleted: gangs of it that still wait, wait for it again.
    pub fn owner_deleted(&mut self, key: &str) {
        self.owners.remove(key);
    }

    fn restore(&mut self, key: &str, members: &[&PodRecord], now: Seconds) -> Result<(), String> {
        let models = &self.queue.cluster().models;
        let views = members
            .iter()
            .map(|p| p.view(models))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let ns = &views[0].namespace;
        let tenant = self
            .queue
            .tenancy
            .tenant_of_namespace(ns)
            .ok_or_else(|| format!("namespace {ns} belongs to no tenant"))?;
        let mut placements = Vec::new();
        // When it was admitted (the earliest time its records give), so that its minimum runtime
        // does not start again at a restart.
        let mut admitted = now;
        for (pod, view) in members.iter().zip(&views) {
            let Planned { node: node_name, gpus, at } =
                pod.planned.clone().map_err(|e| e.to_string())?.ok_or_else(|| {
                    format!("pod {}/{} has no {PLACEMENT_ANNOTATION}", view.namespace, view.name)
                })?;
            let node = self.queue.cluster().node_id(&node_name).ok_or_else(|| {
                format!("pod {}/{} is placed on unknown node {node_name}", view.namespace, view.name)
            })?;
            placements.push(Placement {
                node,
                gpus: gpus.into_iter().map(|g| (g, view.request.gpu_milli)).collect(),
            });
            admitted = admitted.min(at.unwrap_or(now));
        }
        let identity = members[0].identity.clone();
        let id = self.next_id;
        let workload = Workload {
            id,
            name: key.to_string(),
            tenant,
            kind: identity.kind,
            priority_class: None,
            pod_sets: views
                .iter()
                .map(|v| PodSet { name: v.name.clone(), count: 1, request: v.request })
                .collect(),
            min_members: views.len() as u32,
            submitted: submitted_at(&views, admitted),
            models: None,
            expected_runtime: None,
            charge: members.iter().find_map(|p| p.charge.clone()),
        };
        self.queue.restore(workload, placements, admitted, now).map_err(|r| r.to_string())?;
        self.next_id += 1;
        let pods: Vec<Member> = views
            .into_iter()
            .zip(members)
            .map(|(v, p)| Member {
                pod: PodRef { namespace: v.namespace.clone(), name: v.name.clone(), uid: v.uid.clone() },
                view: v,
                held: None,
                charge: p.charge.clone(),
            })
            .collect();
        for m in &pods {
            self.by_uid.insert(m.pod.uid.clone(), key.to_string());
        }
        let annotated = members[0].gang_size;
        self.gangs.insert(
            key.to_string(),
            Gang { id, kind: identity.kind, owner: identity.owner, annotated, pods, queued: true },
        );
        self.by_id.insert(id, key.to_string());
        Ok(())
    }

    /// One admission cycle, as actions.
    pub fn reconcile(&mut self, now: Seconds) -> Vec<Action> {
        let out = self.queue.cycle(now);
        let mut actions = Vec::new();
        for p in &out.preempted {
            let Some(gang) = self.by_id.get(&p.victim).and_then(|k| self.gangs.get(k)) else { continue };
            let by = self.by_id.get(&p.by).cloned().unwrap_or_default();
            let why = if p.reclaim { "to reclaim borrowed capacity for" } else { "for higher-priority work" };
            for m in &gang.pods {
                actions.push(Action::Evict {
                    pod: m.pod.clone(),
                    message: format!("preempted by Gantry {why} {by}"),
                });
            }
        }
        // Evicted pods are deleted and their framework recreates them, gated again, as a new
        // workload; the core's copy of a victim is withdrawn (even if this very cycle found it
        // another place, since its pods are still running where they were).
        let victims: HashSet<WorkloadId> = out.preempted.iter().map(|p| p.victim).collect();
        let mut left_out = Vec::new();
        for a in &out.admitted {
            if victims.contains(&a.workload) {
                continue;
            }
            let Some(key) = self.by_id.get(&a.workload) else { continue };
            let Some(gang) = self.gangs.get(key) else { continue };
            // The core starts the first `members` in pod-set order and places them largest
            // first (a stable sort); the same pods, sorted the same way, take the placements.
            let started = (a.members as usize).min(gang.pods.len());
            let mut pods: Vec<&Member> = gang.pods[..started].iter().collect();
            pods.sort_by_key(|m| std::cmp::Reverse((m.view.request.gpu_total(), m.view.request.cpu_milli)));
            for (m, (_, placement)) in pods.into_iter().zip(&a.pods) {
                let Placement { node, gpus } = placement;
                actions.push(Action::Ungate {
                    pod: m.pod.clone(),
                    node: self.queue.cluster().nodes[*node].name.clone(),
                    gpus: gpus.iter().map(|&(g, _)| g).collect(),
                    at: now,
                });
            }
            if started < gang.pods.len() {
                left_out.push((key.clone(), started));
            }
        }
        // Members left out of a partial start become workloads of their own.
        for (key, started) in left_out {
            let Some(gang) = self.gangs.get_mut(&key) else { continue };
            let (kind, rest) = (gang.kind, gang.pods.split_off(started));
            for m in rest {
                let single = format!("{key}/{}", m.pod.uid);
                let id = self.next_id;
                self.next_id += 1;
                self.by_uid.insert(m.pod.uid.clone(), single.clone());
                self.by_id.insert(id, single.clone());
                self.gangs.insert(
                    single.clone(),
                    Gang { id, kind, owner: None, annotated: None, pods: vec![m], queued: false },
                );
                actions.extend(self.try_submit(&single, now));
            }
        }
        for id in victims {
            self.queue.finish(id, now);
            if let Some(key) = self.by_id.remove(&id) {
                if let Some(gang) = self.gangs.remove(&key) {
                    for m in gang.pods {
                        self.by_uid.remove(&m.pod.uid);
                    }
                }
            }
        }
        let mut waiting: Vec<WorkloadId> = self.queue.pending_ids().collect();
        waiting.sort_unstable();
        for id in waiting {
            let (Some(e), Some(gang)) =
                (self.queue.explain(id, now), self.by_id.get(&id).and_then(|k| self.gangs.get(k)))
            else {
                continue;
            };
            for m in &gang.pods {
                actions.push(Action::Pending { pod: m.pod.clone(), message: e.message.clone() });
            }
        }
        actions.extend(self.incomplete());
        actions.extend(self.stop_idle_notebooks(now));
        actions
    }

    /// The tenants' idle-notebook rule (`gantry_core::notebooks`) over the node agents' evidence:
    /// a running notebook is idle since the latest idle start of its pods, each read from the
    /// node the queue placed it on (an agent speaks only for its own node's pods); a pod with
    /// no evidence there is busy.
    fn stop_idle_notebooks(&mut self, now: Seconds) -> Vec<Action> {
        let evidence: Vec<_> = self
            .queue
            .running_workloads()
            .filter(|(w, _)| w.kind == Kind::Notebook && !self.stopping.contains(&w.id))
            .filter_map(|(w, _)| {
                let idle_since = self.notebook_idle_since(w.id, now)?;
                Some(gantry_core::notebooks::IdleEvidence { workload: w.id, idle_since })
            })
            .collect();
        let mut actions = Vec::new();
        for s in gantry_core::notebooks::to_stop(&self.queue, &evidence, now) {
            let Some(key) = self.by_id.get(&s.workload) else { continue };
            let Some((namespace, name)) = notebook_of(key) else { continue };
            let Some(gang) = self.gangs.get(key) else { continue };
            let Some(m) = gang.pods.first().filter(|m| m.pod.namespace == namespace) else { continue };
            let record = NotebookStopRecord::of(&self.queue.tenancy, &s, namespace, name, now);
            let stop = NotebookStop {
                tenant: record.tenant.clone(),
                flavor: record.flavor.clone(),
                idle_since: record.idle_since,
                at: now,
                idle_milli_gpu_seconds: record.idle,
                price_micros: record.price_micros,
                message: record.message.clone(),
            };
            self.stopped.push(record);
            actions.push(Action::StopNotebook { pod: m.pod.clone(), name: name.to_string(), stop });
            self.stopping.insert(s.workload);
        }
        actions
    }

    /// Why gangs not yet queued wait: their object is unread, or pods are missing.
    fn incomplete(&self) -> Vec<Action> {
        let mut out = Vec::new();
        let mut keys: Vec<&String> = self.gangs.iter().filter(|(_, g)| !g.queued).map(|(k, _)| k).collect();
        keys.sort_unstable();
        for key in keys {
            let gang = &self.gangs[key];
            if let Some(why) = hold_of(gang) {
                let message = format!(
                    "held ({HOLD_ANNOTATION}: {why}): it does not queue until released (`kubectl gantry release`); \
                     it keeps its place, which counts from its first pod's creation"
                );
                out.extend(
                    gang.pods
                        .iter()
                        .map(|m| Action::Pending { pod: m.pod.clone(), message: message.clone() }),
                );
                continue;
            }
            let message = match self.size_of(gang) {
                GangSize::Unread(owner) => format!(
                    "waiting for {owner} to be read: Gantry takes the gang's size from it, and starts the gang whole ({} pods here so far)",
                    gang.pods.len()
                ),
                GangSize::Known(size) if (gang.pods.len() as u32) < size.total => format!(
                    "waiting for the rest of gang {key}: {} of its {} pods exist; it starts whole once all are created",
                    gang.pods.len(),
                    size.total
                ),
                _ => continue,
            };
            out.extend(
                gang.pods.iter().map(|m| Action::Pending { pod: m.pod.clone(), message: message.clone() }),
            );
        }
        out
    }

    /// A node was added or changed in the API server. Its GPU model is taken into the queue's
    /// catalog by name, so a flavor of a model that had no nodes yet starts working.
    /// Gangs refused for want of a place are submitted again (the actions say what became of them).
    ///
    /// Most Node events change nothing the queue reads (the kubelet's status reports, the node
    /// agent confirming its idle evidence every minute): when the node reads as it did at its
    /// last event, only its idle evidence is taken and nothing is planned again.
    pub fn node_applied(&mut self, node: &Value, now: Seconds) -> Result<Vec<Action>, NodeRefused> {
        let mut models = gantry_core::model::ModelCatalog::default();
        let mut view = parse_node(node, &mut models)?;
        let name = view.node.name.clone();
        // Broken evidence is no evidence: the node's pods count as busy.
        self.idle.insert(name.clone(), idle_pods(node).unwrap_or_default());
        // Read with a catalog of its own, so the same node reads the same whatever came before.
        let read = (view.clone(), models.names().to_vec());
        if self.node_reads.get(&name) == Some(&read) {
            return Ok(Vec::new());
        }
        view.node.model = view.node.model.map(|m| self.queue.intern_model(models.name(m))).transpose()?;
        self.queue.upsert_node(view.node)?;
        self.node_reads.insert(name, read);
        let refused: Vec<String> = self
            .gangs
            .iter()
            .filter(|(_, g)| {
                !g.queued && matches!(self.size_of(g), GangSize::Known(s) if g.pods.len() as u32 >= s.total)
            })
            .map(|(k, _)| k.clone())
            .collect();
        Ok(refused.iter().flat_map(|k| self.try_submit(k, now)).collect())
    }

    /// A node was deleted.
    pub fn node_deleted(&mut self, name: &str) {
        self.idle.remove(name);
        self.node_reads.remove(name);
        self.queue.remove_node(name);
    }

    /// Any pod was added or changed: gated pods join their workloads; ended pods release what
    /// they held; pods the queue does not manage that run on a node take room there (not quota).
    pub fn pod_applied(&mut self, pod: &impl AsRecord, now: Seconds) -> Vec<Action> {
        let pod = pod.record();
        let uid = pod.uid.clone();
        if pod.finished {
            self.pod_deleted(&uid, now);
            return Vec::new();
        }
        if pod.gated {
            return self.pod_gated(&*pod, now);
        }
        if self.by_uid.contains_key(&uid) || self.external.contains_key(&uid) {
            return Vec::new();
        }
        let Some(node_name) = pod.node_name.as_deref() else { return Vec::new() };
        let Some(node) = self.queue.cluster().node_id(node_name) else { return Vec::new() };
        let Ok(view) = pod.view(&self.queue.cluster().models) else { return Vec::new() };
        // The GPUs are not known (the device plugin picks them); any free ones stand in. A share
        // of a GPU counts as a whole one unless the node's model is a flavor with sharing.
        let mut request = view.request;
        request.allowed_models = None;
        let model = self.queue.cluster().nodes[node].model;
        if request.gpu_count > 0 && !model.is_some_and(|m| sharing_models(&self.queue).0.contains(m)) {
            request.gpu_milli = GPU_MILLI;
        }
        let gpus = gantry_core::model::lowest_index_gpus(&self.queue.cluster().nodes[node], &request)
            .unwrap_or_default();
        let id = self.next_external;
        if self.queue.place_external(id, &request, Placement { node, gpus }).is_ok() {
            self.next_external += 1;
            self.external.insert(uid, id);
        }
        Vec::new()
    }

    /// Any pod was deleted.
    pub fn pod_deleted(&mut self, uid: &str, now: Seconds) {
        if let Some(id) = self.external.remove(uid) {
            let _ = self.queue.release_external(id);
        }
        self.pod_gone(uid, now);
    }

    /// A pod ended or was deleted. When its workload has no pods left, its quota is released.
    pub fn pod_gone(&mut self, uid: &str, now: Seconds) {
        let Some(key) = self.by_uid.remove(uid) else { return };
        let Some(gang) = self.gangs.get_mut(&key) else { return };
        gang.pods.retain(|m| m.pod.uid != uid);
        if gang.pods.is_empty() {
            let id = gang.id;
            self.gangs.remove(&key);
            self.by_id.remove(&id);
            self.stopping.remove(&id);
            self.queue.finish(id, now);
        }
    }
}

/// The hold mark of a gang's first held pod.
fn hold_of(gang: &Gang) -> Option<&str> {
    gang.pods.iter().find_map(|m| m.held.as_deref())
}

/// When a workload was submitted: its earliest pod's creation, never after `now` (a clock
/// ahead of the API server's must not put it behind later work). Its queue position and its
/// reclaim window count from there, across restarts and new leaders.
fn submitted_at(views: &[PodView], now: Seconds) -> Seconds {
    views.iter().filter_map(|v| v.created).min().map_or(now, |c| c.min(now))
}

/// The models of the flavors that allow GPU sharing (those with nodes), and the flavors' names.
fn sharing_models(queue: &Queue) -> (ModelSet, Vec<String>) {
    let mut set = ModelSet::default();
    let mut names = Vec::new();
    for f in queue.tenancy.flavors.iter().filter(|f| f.sharing) {
        names.push(f.name.clone());
        if let Some(m) = queue.cluster().models.get(&f.name) {
            set.insert(m);
        }
    }
    (set, names)
}

/// The GPU models every member accepts (members that name none accept any).
fn models_of(pods: &[Member]) -> Option<ModelSet> {
    pods.iter().filter_map(|m| m.view.request.allowed_models).reduce(|a, b| ModelSet(a.0 & b.0))
}

fn pod_ref(pod: &PodRecord) -> PodRef {
    PodRef { namespace: pod.namespace.clone(), name: pod.name.clone(), uid: pod.uid.clone() }
}
