//! The queue controller's decisions, without Kubernetes I/O: pods held by Gantry's scheduling
//! gate are grouped into workloads, the core's queue admits whole workloads, and the controller
//! says what to do to the API server as [`Action`]s. The Kubernetes adapter (watchers, patches,
//! evictions, events, leader election) carries the actions out; tests check them directly.
//!
//! 1. `pod_gated`: a gated pod joins its workload (see [`gantry_api::identity`]); when all its members
//!    are there (the `gantry.dev/gang-size` annotation, 1 by default), the workload is queued;
//! 2. `reconcile`: one admission cycle; admitted workloads get [`Action::Ungate`] per pod with the
//!    planned node, preempted ones [`Action::Evict`] per pod, and waiting ones
//!    [`Action::Pending`] with the core's explanation;
//! 3. `pod_gone`: a pod ended; its workload's quota is released when its last pod ends.
//!
//! After a restart, [`Controller::rebuild`] takes running workloads back from their pods'
//! placement records, so no quota leaks and nothing is admitted twice.
//!
//! An evicted workload is withdrawn: its framework recreates the pods, gated, as a new workload
//! (which queues with a new submission time).

use gantry_api::identity::identify;
use gantry_api::node::parse_node;
use gantry_api::keys::PLACEMENT_ANNOTATION;
use gantry_api::placement::Planned;
use gantry_api::pod::{annotated_gang_size, annotation, gated, parse_pod, planned, pod_finished};
use gantry_core::model::Placement;
use gantry_core::queue::{PodSet, Queue, Workload, WorkloadId};
use gantry_core::tenancy::Seconds;
use serde_json::Value;
use std::collections::HashMap;


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
    /// Record the planned node on the pod and remove the scheduling gate.
    Ungate { pod: PodRef, node: String, gpus: Vec<u32> },
    /// Evict the pod (Eviction API) to make room; `message` says for whom.
    Evict { pod: PodRef, message: String },
    /// Set the pod's condition and a deduplicated Event: why its workload waits.
    Pending { pod: PodRef, message: String },
    /// The pod can never run as asked: say why (the webhook should have refused it).
    Refused { pod: PodRef, message: String },
}

struct Gang {
    id: WorkloadId,
    size: u32,
    pods: Vec<(PodRef, Value)>,
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
    /// PodGroup gang key (`namespace/pod-group/name`) → `minMember`.
    pod_groups: HashMap<String, u32>,
}

impl Controller {
    pub fn new(queue: Queue) -> Self {
        Controller { queue, gangs: HashMap::new(), by_id: HashMap::new(), by_uid: HashMap::new(), next_id: 1, external: HashMap::new(), next_external: 0, pod_groups: HashMap::new() }
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Takes the usage records the queue closed since the last call (for the quota API's
    /// ledger; taken even when nobody keeps them, so they never pile up).
    pub fn drain_accruals(&mut self) -> Vec<gantry_core::queue::Accrual> {
        self.queue.ledger_mut().drain()
    }

    /// A pod carrying Gantry's scheduling gate was seen (added or updated).
    pub fn pod_gated(&mut self, pod: &Value, now: Seconds) -> Vec<Action> {
        let view = match parse_pod(pod, &self.queue.cluster().models) {
            Ok(v) => v,
            Err(message) => return vec![Action::Refused { pod: pod_ref(pod), message }],
        };
        let r = PodRef { namespace: view.namespace.clone(), name: view.name.clone(), uid: view.uid.clone() };
        let size = self.gang_size(pod);
        let key = self.gang_key(pod);
        let next_id = &mut self.next_id;
        let gang = self.gangs.entry(key.clone()).or_insert_with(|| {
            let id = *next_id;
            *next_id += 1;
            Gang { id, size, pods: Vec::new(), queued: false }
        });
        if gang.pods.iter().any(|(p, _)| p.uid == r.uid) || gang.queued {
            return Vec::new();
        }
        gang.pods.push((r.clone(), pod.clone()));
        self.by_uid.insert(r.uid.clone(), key.clone());
        self.by_id.insert(gang.id, key.clone());
        if (gang.pods.len() as u32) < gang.size {
            return Vec::new();
        }
        self.submit_gang(&key, now)
    }

    /// Queues a whole gang, or says why it can never run as asked. A refused gang stays known,
    /// unqueued, and is submitted again when nodes change (room that did not exist may appear).
    fn submit_gang(&mut self, key: &str, now: Seconds) -> Vec<Action> {
        let Some(gang) = self.gangs.get_mut(key) else { return Vec::new() };
        let Some(r) = gang.pods.first().map(|(p, _)| p.clone()) else { return Vec::new() };
        let Some(tenant) = self.queue.tenancy.tenant_of_namespace(&r.namespace) else {
            let message = format!("namespace {} belongs to no tenant; ask a platform admin to add it to one", r.namespace);
            return gang.pods.iter().map(|(p, _)| Action::Refused { pod: p.clone(), message: message.clone() }).collect();
        };
        let requests: Vec<_> = gang.pods.iter().filter_map(|(_, v)| parse_pod(v, &self.queue.cluster().models).ok()).collect();
        let models = requests.first().and_then(|p| p.request.allowed_models);
        let workload = Workload {
            id: gang.id,
            name: key.to_string(),
            tenant,
            kind: identify(&gang.pods[0].1).kind,
            priority_class: None,
            pod_sets: requests.iter().map(|p| PodSet { name: p.name.clone(), count: 1, request: p.request }).collect(),
            min_members: gang.size,
            submitted: now,
            models,
            expected_runtime: None,
        };
        match self.queue.submit(workload, now) {
            Ok(()) => {
                gang.queued = true;
                Vec::new()
            }
            Err(refusal) => gang.pods.iter().map(|(p, _)| Action::Refused { pod: p.clone(), message: refusal.0.clone() }).collect(),
        }
    }

    /// Rebuilds the state after a restart from the pods the API server has: pods without Gantry's
    /// gate that carry its placement annotation are running workloads, taken back at their
    /// placements (so their quota is counted and nothing is admitted twice); gated pods queue
    /// again; other pods running on nodes take their room. Their minimum runtime counts from the
    /// restart. Nodes must have been given first ([`Controller::node_applied`]).
    pub fn rebuild(&mut self, pods: &[Value], now: Seconds) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut admitted: Vec<(String, Vec<&Value>)> = Vec::new();
        for pod in pods {
            if gated(pod) {
                continue;
            }
            if annotation(pod, PLACEMENT_ANNOTATION).is_none() {
                continue;
            }
            let key = self.gang_key(pod);
            match admitted.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(pod),
                None => admitted.push((key, vec![pod])),
            }
        }
        for (key, members) in admitted {
            if let Err(message) = self.restore(&key, &members, now) {
                actions.extend(members.iter().map(|p| Action::Refused { pod: pod_ref(p), message: message.clone() }));
            }
        }
        for pod in pods.iter().filter(|p| gated(p)) {
            actions.extend(self.pod_gated(pod, now));
        }
        // Everything else running on a node takes room, not quota.
        for pod in pods.iter().filter(|p| !gated(p)) {
            actions.extend(self.pod_applied(pod, now));
        }
        actions
    }

    /// A pod's gang size: Gantry's annotation (set by the admission webhook), else the
    /// `minMember` of its scheduler-plugins PodGroup. A pod of a PodGroup not seen yet gets
    /// [`UNKNOWN_SIZE`]: its gang waits, whole or not, until the PodGroup arrives.
    fn gang_size(&self, pod: &Value) -> u32 {
        if let Some(n) = annotated_gang_size(pod) {
            return n;
        }
        let identity = identify(pod);
        if identity.source == gantry_api::identity::Source::PodGroup {
            return self.pod_groups.get(&identity.key).copied().unwrap_or(UNKNOWN_SIZE);
        }
        1
    }

    /// A scheduler-plugins PodGroup (`scheduling.x-k8s.io/v1alpha1`) was added or changed: its
    /// `minMember` is the size of the gang of its pods. A gang that was waiting for it is queued
    /// once it has that many pods.
    pub fn pod_group_applied(&mut self, namespace: &str, name: &str, min_member: u32, now: Seconds) -> Vec<Action> {
        let key = format!("{namespace}/pod-group/{name}");
        self.pod_groups.insert(key.clone(), min_member.max(1));
        let Some(gang) = self.gangs.get_mut(&key) else { return Vec::new() };
        if gang.queued {
            return Vec::new();
        }
        gang.size = min_member.max(1);
        if (gang.pods.len() as u32) < gang.size {
            return Vec::new();
        }
        self.submit_gang(&key, now)
    }

    /// A PodGroup was deleted.
    pub fn pod_group_deleted(&mut self, namespace: &str, name: &str) {
        self.pod_groups.remove(&format!("{namespace}/pod-group/{name}"));
    }

    fn gang_key(&self, pod: &Value) -> String {
        let identity = identify(pod);
        let size = self.gang_size(pod);
        if size == 1 {
            format!("{}/{}", identity.key, pod_ref(pod).uid)
        } else {
            identity.key
        }
    }

    fn restore(&mut self, key: &str, members: &[&Value], now: Seconds) -> Result<(), String> {
        let models = &self.queue.cluster().models;
        let views = members.iter().map(|p| parse_pod(p, models)).collect::<Result<Vec<_>, _>>()?;
        let ns = &views[0].namespace;
        let tenant = self.queue.tenancy.tenant_of_namespace(ns).ok_or_else(|| format!("namespace {ns} belongs to no tenant"))?;
        let mut placements = Vec::new();
        for (pod, view) in members.iter().zip(&views) {
            let Planned { node: node_name, gpus } = planned(pod)?.ok_or_else(|| format!("pod {}/{} has no {PLACEMENT_ANNOTATION}", view.namespace, view.name))?;
            let node = self.queue.cluster().node_id(&node_name).ok_or_else(|| format!("pod {}/{} is placed on unknown node {node_name}", view.namespace, view.name))?;
            placements.push(Placement { node, gpus: gpus.into_iter().map(|g| (g, view.request.gpu_milli)).collect() });
        }
        let id = self.next_id;
        let workload = Workload {
            id,
            name: key.to_string(),
            tenant,
            kind: identify(members[0]).kind,
            priority_class: None,
            pod_sets: views.iter().map(|v| PodSet { name: v.name.clone(), count: 1, request: v.request }).collect(),
            min_members: views.len() as u32,
            submitted: now,
            models: None,
            expected_runtime: None,
        };
        self.queue.restore(workload, placements, now, now).map_err(|r| r.0)?;
        self.next_id += 1;
        let pods: Vec<(PodRef, Value)> =
            members.iter().zip(&views).map(|(p, v)| (PodRef { namespace: v.namespace.clone(), name: v.name.clone(), uid: v.uid.clone() }, (*p).clone())).collect();
        for (p, _) in &pods {
            self.by_uid.insert(p.uid.clone(), key.to_string());
        }
        self.gangs.insert(key.to_string(), Gang { id, size: views.len() as u32, pods, queued: true });
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
            for (pod, _) in &gang.pods {
                actions.push(Action::Evict { pod: pod.clone(), message: format!("preempted by Gantry {why} {by}") });
            }
        }
        // Evicted pods are deleted and their framework recreates them, gated again, as a new
        // workload; the core's copy of a victim is withdrawn (even if this very cycle found it
        // another place, since its pods are still running where they were).
        let victims: std::collections::HashSet<WorkloadId> = out.preempted.iter().map(|p| p.victim).collect();
        for a in &out.admitted {
            if victims.contains(&a.workload) {
                continue;
            }
            let Some(gang) = self.by_id.get(&a.workload).and_then(|k| self.gangs.get(k)) else { continue };
            // Members were placed in the order of the workload's member requests (largest
            // first); pods are matched to placements by request size the same way.
            let mut pods: Vec<&(PodRef, Value)> = gang.pods.iter().collect();
            let size = |v: &Value| parse_pod(v, &self.queue.cluster().models).map(|p| (p.request.gpu_total(), p.request.cpu_milli)).unwrap_or_default();
            pods.sort_by_key(|(_, v)| std::cmp::Reverse(size(v)));
            for ((pod, _), (_, placement)) in pods.into_iter().zip(&a.pods) {
                let Placement { node, gpus } = placement;
                actions.push(Action::Ungate {
                    pod: pod.clone(),
                    node: self.queue.cluster().nodes[*node].name.clone(),
                    gpus: gpus.iter().map(|&(g, _)| g).collect(),
                });
            }
        }
        for id in victims {
            self.queue.finish(id, now);
            if let Some(key) = self.by_id.remove(&id) {
                if let Some(gang) = self.gangs.remove(&key) {
                    for (p, _) in gang.pods {
                        self.by_uid.remove(&p.uid);
                    }
                }
            }
        }
        let mut waiting: Vec<WorkloadId> = self.queue.pending_ids().collect();
        waiting.sort_unstable();
        for id in waiting {
            let (Some(e), Some(gang)) = (self.queue.explain(id, now), self.by_id.get(&id).and_then(|k| self.gangs.get(k))) else { continue };
            for (pod, _) in &gang.pods {
                actions.push(Action::Pending { pod: pod.clone(), message: e.message.clone() });
            }
        }
        actions
    }

    /// A node was added or changed in the API server. Its GPU model is taken into the queue's
    /// catalog by name, so a flavor of a model that had no nodes yet starts working.
    /// Gangs refused for want of a place are submitted again (the actions say what became of them).
    pub fn node_applied(&mut self, node: &Value, now: Seconds) -> Result<Vec<Action>, String> {
        let mut models = gantry_core::model::ModelCatalog::default();
        let mut view = parse_node(node, &mut models)?;
        view.node.model = view.node.model.map(|m| self.queue.intern_model(models.name(m))).transpose()?;
        self.queue.upsert_node(view.node)?;
        let refused: Vec<String> = self.gangs.iter().filter(|(_, g)| !g.queued && g.pods.len() as u32 >= g.size).map(|(k, _)| k.clone()).collect();
        Ok(refused.iter().flat_map(|k| self.submit_gang(k, now)).collect())
    }

    /// A node was deleted.
    pub fn node_deleted(&mut self, name: &str) {
        self.queue.remove_node(name);
    }

    /// Any pod was added or changed: gated pods join their workloads; ended pods release what
    /// they held; pods the queue does not manage that run on a node take room there (not quota).
    pub fn pod_applied(&mut self, pod: &Value, now: Seconds) -> Vec<Action> {
        let uid = pod_ref(pod).uid;
        if pod_finished(pod) {
            self.pod_deleted(&uid, now);
            return Vec::new();
        }
        if gated(pod) {
            return self.pod_gated(pod, now);
        }
        if self.by_uid.contains_key(&uid) || self.external.contains_key(&uid) {
            return Vec::new();
        }
        let Some(node_name) = pod["spec"]["nodeName"].as_str() else { return Vec::new() };
        let Some(node) = self.queue.cluster().node_id(node_name) else { return Vec::new() };
        let Ok(view) = parse_pod(pod, &self.queue.cluster().models) else { return Vec::new() };
        // The GPUs are not known (the device plugin picks them); any free ones stand in.
        let mut request = view.request;
        request.allowed_models = None;
        let gpus = gantry_core::model::lowest_index_gpus(&self.queue.cluster().nodes[node], &request).unwrap_or_default();
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
        gang.pods.retain(|(p, _)| p.uid != uid);
        if gang.pods.is_empty() {
            let id = gang.id;
            self.gangs.remove(&key);
            self.by_id.remove(&id);
            self.queue.finish(id, now);
        }
    }
}

/// The size of a gang whose PodGroup has not been seen: never complete.
const UNKNOWN_SIZE: u32 = u32::MAX;

fn pod_ref(pod: &Value) -> PodRef {
    let s = |k: &str| pod.get("metadata").and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or_default().to_string();
    PodRef { namespace: s("namespace"), name: s("name"), uid: s("uid") }
}
