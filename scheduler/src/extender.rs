//! The extender's decisions over its node cache.
//!
//! - **filter**: a node passes when the pod fits it now (the core's filter: CPU, memory, GPU
//!   model and per-GPU free milli); a node that could never hold the pod, or that Gantry does not
//!   know, is *unresolvable*, so kube-scheduler does not try to preempt there;
//! - **prioritize**: the placement policy's scores, mapped linearly onto 0..10;
//! - **bind**: allocates the pod (choosing its GPUs) in the cache; a second bind for the last free
//!   GPU fails with an error, so racing pods never share it;
//! - **preempt**: only victims on a pod's planned node that Gantry's queue is evicting for its
//!   plan; none for a pod the queue has not admitted (see [`Extender::preempt`]).
//!
//! Pods that ask for no GPU pass through untouched: every node passes, every score is 0. Pods
//! the queue controller admitted carry their planned node (`gantry.dev/placement`) and pass only
//! there: every other node is unresolvable, so kube-scheduler never preempts there for them.
//!
//! How the two preemptions divide the work: Gantry's queue chooses victims for the workloads it
//! admits (whole gangs, by tenant guarantees and priority) and evicts them itself through the
//! Eviction API; kube-scheduler's preemption, which knows neither gangs nor tenants, may only
//! finish that work on the planned node (a victim still terminating when the pod is scheduled).

use crate::wire::*;
use gantry_api::node::{parse_node, NodeError};
use gantry_api::placement::{PlacementError, Planned};
use gantry_api::pod::{parse_pod, planned, PodError, PodView};
use gantry_api::record::AsRecord;
use gantry_core::model::{could_ever_fit, fits, Cluster, ModelError, NodeId, Placement, PodRequest};
use gantry_core::policy::ScoreCx;
use gantry_core::Scheduler;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// Why the extender could not take an object into its cache, or answer a request: the text is
/// what kube-scheduler reports (the wire's `Error` field) or what the scheduler logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtenderError {
    /// A pod that cannot be read; the message names the field and the fix.
    #[error(transparent)]
    Pod(#[from] PodError),
    /// A node that cannot be read.
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error("a pod has no metadata.uid")]
    NoUid,
    #[error("a node in Nodes.items has no metadata.name")]
    NoNodeName,
    #[error("a victim on node {0} has no metadata.uid")]
    VictimWithoutUid(String),
    #[error("{who} runs on node {node}, which Gantry has not seen; it is counted once the node is")]
    UnseenNode { who: String, node: String },
    /// The cache's books refused the change (`what` names the pod or node).
    #[error("{what}: {source}")]
    Books {
        what: String,
        #[source]
        source: ModelError,
    },
}

/// The node cache and what Gantry has bound on it.
///
/// Filter and prioritize only read the cache (`&self`), so the server runs them side by side
/// under a shared lock; what they keep for later (the pod's request for bind, resolved candidate
/// lists, cached scores) sits behind small locks of its own. Binds and the watchers' updates take
/// the cache exclusively, and are short.
pub struct Extender {
    cluster: Cluster,
    /// Behind a lock for its score cache: prioritize calls score one at a time, while filters
    /// and the JSON work of other calls go on.
    scheduler: Mutex<Scheduler>,
    /// Looked up once per candidate per call, so with a fast hash (seeded per process).
    by_name: HashMap<String, NodeId, foldhash::fast::RandomState>,
    /// The last candidate lists, resolved to node ids.
    resolved: Resolved,
    /// Requests of pods seen by filter or prioritize, by UID (bind carries no pod spec).
    seen: Mutex<HashMap<String, PodRequest>>,
    /// Bound pods: UID → cluster pod id.
    bound: HashMap<String, u64>,
    /// Pods the queue controller is evicting (see [`Extender::preempt`]).
    evicting: std::collections::HashSet<String>,
    next_pod: u64,
}

impl Extender {
    pub fn new(cluster: Cluster, scheduler: Scheduler) -> Self {
        let by_name = cluster.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        Extender {
            cluster,
            scheduler: Mutex::new(scheduler),
            by_name,
            resolved: Resolved::default(),
            seen: Mutex::default(),
            bound: HashMap::new(),
            evicting: Default::default(),
            next_pod: 1,
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Replaces the placement policy (in a cluster, once the nodes are known: scores are
    /// normalised by the largest node).
    pub fn set_scheduler(&mut self, scheduler: Scheduler) {
        *self.scheduler.get_mut().unwrap_or_else(|p| p.into_inner()) = scheduler;
    }

    /// A node was added or changed in the API server (see [`gantry_api::node`] for what is read).
    pub fn node_applied(&mut self, node: &Value) -> Result<(), ExtenderError> {
        let view = parse_node(node, &mut self.cluster.models)?;
        let name = view.node.name.clone();
        let id = self
            .cluster
            .upsert_node(view.node)
            .map_err(|source| ExtenderError::Books { what: format!("node {name}"), source })?;
        self.by_name.insert(name, id);
        Ok(())
    }

    /// A node was deleted: nothing is placed there any more. Its pods' room is freed as their
    /// own deletions arrive.
    pub fn node_deleted(&mut self, name: &str) {
        self.cluster.remove_node(name);
    }

    /// A pod was added or changed. A pod assigned to a node takes its room there (any pod: CPU
    /// and memory count too) until it ends; its GPUs are the ones Gantry planned, or the ones the
    /// placement policy would pick. Pods that have not been assigned take nothing.
    pub fn pod_applied(&mut self, pod: &impl AsRecord) -> Result<(), ExtenderError> {
        let pod = pod.record();
        let uid = pod.uid.as_str();
        if uid.is_empty() {
            return Err(ExtenderError::NoUid);
        }
        if pod.finished {
            self.pod_deleted(uid);
            return Ok(());
        }
        let Some(node_name) = pod.node_name.as_deref() else { return Ok(()) };
        if self.bound.contains_key(uid) {
            return Ok(());
        }
        let view = pod.view(&self.cluster.models)?;
        let who = format!("pod {}/{}", view.namespace, view.name);
        let Some(&id) = self.by_name.get(node_name) else {
            return Err(ExtenderError::UnseenNode { who, node: node_name.to_string() });
        };
        let request = view.request;
        let gpus = match pod.planned.clone()? {
            Some(Planned { node, gpus, .. })
                if node == node_name && gpus.len() == request.gpu_count as usize && request.wants_gpu() =>
            {
                gpus.into_iter().map(|g| (g, request.gpu_milli)).collect()
            }
            _ => exclusive(&mut self.scheduler)
                .policy()
                .pick_gpus(&self.cluster.nodes[id], &request, ScoreCx { node: id, salt: 0 })
                .unwrap_or_default(),
        };
        let pod_id = self.next_pod;
        self.cluster
            .allocate(pod_id, &request, Placement { node: id, gpus })
            .map_err(|source| ExtenderError::Books { what: format!("{who} on {node_name}"), source })?;
        self.next_pod += 1;
        self.bound.insert(uid.to_string(), pod_id);
        exclusive(&mut self.seen).remove(uid);
        Ok(())
    }

    /// A pod was deleted (or ended): its room is free again.
    pub fn pod_deleted(&mut self, uid: &str) {
        self.evicting.remove(uid);
        if let Some(id) = self.bound.remove(uid) {
            // Bound pods are always placed; a miss would only mean there is nothing to free.
            let _ = self.cluster.release(id);
        }
    }

    /// Pods holding room in the cache.
    pub fn bound_pods(&self) -> usize {
        self.bound.len()
    }

    fn pod(&self, pod: &Value) -> Result<PodView, ExtenderError> {
        let view = parse_pod(pod, &self.cluster.models)?;
        if view.managed() && !view.uid.is_empty() {
            let mut seen = shared(&self.seen);
            if seen.len() > 100_000 {
                seen.clear();
            }
            seen.insert(view.uid.clone(), view.request);
        }
        Ok(view)
    }

    /// The candidate node names of a request, borrowed from it.
    fn candidates<'a>(args: &'a ExtenderArgs<'_>) -> Result<Cow<'a, [Cow<'a, str>]>, ExtenderError> {
        match (&args.node_names, &args.nodes) {
            (Some(names), _) => Ok(Cow::Borrowed(names)),
            (None, Some(list)) => list.names().map(Cow::Owned).ok_or(ExtenderError::NoNodeName),
            (None, None) => Ok(Cow::Borrowed(&[])),
        }
    }

    /// Nodes that can take the pod now. The reply names them as the request did: by name with a
    /// node cache, as the same raw node objects without one.
    pub fn filter<'a>(&self, args: &'a ExtenderArgs<'_>) -> ExtenderFilterResult<'a> {
        let failure =
            |error: ExtenderError| ExtenderFilterResult { error: error.to_string(), ..Default::default() };
        let pod = match self.pod(&args.pod) {
            Ok(p) => p,
            Err(e) => return failure(e),
        };
        let names = match Self::candidates(args) {
            Ok(c) => c,
            Err(e) => return failure(e),
        };
        let mut passing = Vec::with_capacity(names.len());
        // Borrowed names and a few shared reasons (see `FailedNodes`): a large pod fails most
        // nodes of a busy cluster, for one or two reasons.
        let mut failed = FailedNodes::default();
        let mut unresolvable = FailedNodes::default();
        // A pod of an admitted workload goes where the queue controller planned it: its room was
        // reserved with the whole gang's.
        let plan = match planned(&args.pod) {
            Ok(p) => p,
            Err(e) => return failure(e.into()),
        };
        if let Some(Planned { node, .. }) = &plan {
            let why: Cow<str> = Cow::Owned(format!("Gantry planned this pod for node {node}"));
            for (i, name) in names.iter().enumerate() {
                if node == name {
                    passing.push(i);
                } else {
                    // Unresolvable: preempting pods there would never let this pod in.
                    unresolvable.push(name.clone(), why.clone());
                }
            }
        } else if !pod.managed() {
            passing.extend(0..names.len());
        } else {
            let resolved = self.resolved.ids(&self.by_name, &names);
            for (i, (name, &id)) in names.iter().zip(&resolved.ids).enumerate() {
                let Some(id) = id else {
                    // Rare (a node newer than the cache): worth its own message.
                    let why = format!("node {name} is not in Gantry's node cache");
                    unresolvable.push(name.clone(), Cow::Owned(why));
                    continue;
                };
                let node = &self.cluster.nodes[id];
                match fits(node, &pod.request) {
                    Ok(()) => passing.push(i),
                    Err(m) if !could_ever_fit(node, &pod.request) => {
                        unresolvable.push(name.clone(), Cow::Borrowed(m.even_when_empty()));
                    }
                    Err(m) => failed.push(name.clone(), Cow::Borrowed(m.as_str())),
                }
            }
        }
        let mut out = ExtenderFilterResult {
            failed_nodes: Some(failed),
            failed_and_unresolvable_nodes: Some(unresolvable),
            ..Default::default()
        };
        match (&args.node_names, &args.nodes) {
            (None, Some(list)) => {
                out.nodes = Some(NodeList {
                    metadata: list.metadata,
                    items: passing.iter().map(|&i| list.items[i]).collect(),
                })
            }
            // Names borrowed from the request are copied as references.
            _ => out.node_names = Some(passing.iter().map(|&i| names[i].clone()).collect()),
        }
        out
    }

    /// Scores 0..10 per candidate node; an error for requests that make no sense.
    pub fn prioritize<'a>(&self, args: &'a ExtenderArgs<'_>) -> Result<Vec<HostPriority<'a>>, ExtenderError> {
        let pod = self.pod(&args.pod)?;
        let names = Self::candidates(args)?;
        if !pod.managed() {
            return Ok(names.iter().map(|host| HostPriority { host: host.clone(), score: 0 }).collect());
        }
        let resolved = self.resolved.ids(&self.by_name, &names);
        let raw = shared(&self.scheduler).scores(&self.cluster, &pod.request, &resolved.ids);
        let (lo, hi) = raw
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        Ok(names
            .iter()
            .zip(raw)
            .map(|(host, s)| {
                let score = match s {
                    Some(s) if hi > lo => ((s - lo) / (hi - lo) * MAX_PRIORITY as f64).round() as i64,
                    Some(_) => MAX_PRIORITY,
                    None => 0,
                };
                HostPriority { host: host.clone(), score: score.clamp(0, MAX_PRIORITY) }
            })
            .collect())
    }

    /// Records the pod on its node, choosing its GPUs. Fails, changing nothing, when the node is
    /// unknown, the pod was never filtered, or the room has been taken.
    pub fn bind(&mut self, args: &ExtenderBindingArgs) -> ExtenderBindingResult {
        let err = |e: String| ExtenderBindingResult { error: e };
        let who = format!("pod {}/{}", args.pod_namespace, args.pod_name);
        if self.bound.contains_key(&args.pod_uid) {
            return err(format!("{who} (uid {}) is already bound", args.pod_uid));
        }
        let Some(&id) = self.by_name.get(&args.node) else {
            return err(format!("cannot bind {who}: node {} is not in Gantry's node cache", args.node));
        };
        let Some(&request) = exclusive(&mut self.seen).get(&args.pod_uid) else {
            return err(format!(
                "cannot bind {who}: Gantry has not filtered a pod with uid {:?}; retry scheduling",
                args.pod_uid
            ));
        };
        let node = &self.cluster.nodes[id];
        if let Err(m) = fits(node, &request) {
            return err(format!(
                "cannot bind {who} to {}: {m} (taken since filtering); retry scheduling",
                args.node
            ));
        }
        let gpus = exclusive(&mut self.scheduler)
            .policy()
            .pick_gpus(node, &request, ScoreCx { node: id, salt: 0 })
            .unwrap_or_default();
        let pod_id = self.next_pod;
        if let Err(e) = self.cluster.allocate(pod_id, &request, Placement { node: id, gpus }) {
            return err(format!("cannot bind {who}: {e}"));
        }
        self.next_pod += 1;
        self.bound.insert(args.pod_uid.clone(), pod_id);
        exclusive(&mut self.seen).remove(&args.pod_uid);
        ExtenderBindingResult::default()
    }

    /// Victims kube-scheduler may evict for the pod: only those on its planned node that
    /// Gantry's queue is itself evicting for its plan. A pod the queue has not admitted (no plan)
    /// gets none: the queue decides preemption for the workloads it governs, whole gangs at a
    /// time, and kube-scheduler's dry run ignores extender filters, so its own candidates could be
    /// pods on nodes the pod may never use.
    pub fn preempt(&self, args: &ExtenderPreemptionArgs) -> Result<ExtenderPreemptionResult, ExtenderError> {
        let Some(plan) = planned(&args.pod)? else { return Ok(ExtenderPreemptionResult::default()) };
        let mut out = BTreeMap::new();
        let mut keep = |node: &str, uids: Vec<String>, num_pdb_violations: i64| {
            let pods: Vec<MetaPod> =
                uids.into_iter().filter(|u| self.evicting.contains(u)).map(|uid| MetaPod { uid }).collect();
            if node == plan.node && !pods.is_empty() {
                out.insert(node.to_string(), MetaVictims { pods, num_pdb_violations });
            }
        };
        if let Some(meta) = &args.node_name_to_meta_victims {
            for (node, v) in meta {
                keep(node, v.pods.iter().map(|p| p.uid.clone()).collect(), v.num_pdb_violations);
            }
        } else {
            for (node, v) in args.node_name_to_victims.iter().flatten() {
                let uids = v
                    .pods
                    .iter()
                    .map(|p| {
                        let uid = p.get("metadata").and_then(|m| m.get("uid")).and_then(Value::as_str);
                        uid.map(str::to_string).ok_or_else(|| ExtenderError::VictimWithoutUid(node.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                keep(node, uids, v.num_pdb_violations);
            }
        }
        Ok(ExtenderPreemptionResult { node_name_to_meta_victims: out })
    }

    /// Pods the queue controller is evicting to make room for its plans (until they are gone):
    /// the only victims [`Extender::preempt`] lets kube-scheduler take.
    pub fn note_evicting(&mut self, uid: &str) {
        if self.evicting.len() > 100_000 {
            self.evicting.clear();
        }
        self.evicting.insert(uid.to_string());
    }

    /// The queue's eviction of a pod was refused: it stays, and is no victim for kube-scheduler.
    pub fn eviction_refused(&mut self, uid: &str) {
        self.evicting.remove(uid);
    }
}

/// A lock shared by concurrent readers. Whoever panicked while holding it left what it guards
/// consistent (every change is a single insert or replace), so keep serving.
fn shared<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The same, with the cache held exclusively: no locking.
fn exclusive<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|p| p.into_inner())
}

/// Candidate lists resolved to node ids. kube-scheduler sends prioritize the list that filter
/// passed, and every pod the same list while all nodes are feasible, so most calls find their
/// list here: comparing the names costs less than looking each one up. The lists are shared
/// (`Arc`), so that a call compares and uses one without holding the lock.
#[derive(Default)]
struct Resolved {
    /// Two lists, for filter's and prioritize's when filter failed some nodes, and the slot
    /// replaced last.
    slots: Mutex<([Arc<ResolvedList>; 2], usize)>,
}

#[derive(Default)]
struct ResolvedList {
    /// `by_name.len()` when resolved. Names only ever join `by_name`, and a name keeps its id
    /// (node ids are stable), so a list stays right until a node is added.
    known: usize,
    /// The names, one after the other, and where each ends.
    text: Vec<u8>,
    ends: Vec<usize>,
    ids: Vec<Option<NodeId>>,
}

impl ResolvedList {
    fn holds(&self, names: &[Cow<'_, str>], known: usize) -> bool {
        if self.known != known || self.ids.len() != names.len() {
            return false;
        }
        let mut start = 0;
        names.iter().zip(&self.ends).all(|(n, &end)| {
            let same = self.text.get(start..end).is_some_and(|t| same_bytes(t, n.as_bytes()));
            start = end;
            same
        })
    }
}

/// `a == b`, without a call to `memcmp` for names of 8 to 16 bytes (two overlapping words).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if !(8..=16).contains(&n) {
        return a == b;
    }
    let word =
        |s: &[u8], i: usize| s.get(i..i + 8).map(|w| u64::from_ne_bytes(w.try_into().unwrap_or_default()));
    word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
}

impl Resolved {
    /// The id of each name (`None` for unknown ones).
    fn ids<S: std::hash::BuildHasher>(
        &self,
        by_name: &HashMap<String, NodeId, S>,
        names: &[Cow<'_, str>],
    ) -> Arc<ResolvedList> {
        let known = by_name.len();
        let slots = shared(&self.slots).0.clone();
        if let Some(hit) = slots.into_iter().find(|s| s.holds(names, known)) {
            return hit;
        }
        let mut list = ResolvedList { known, ..Default::default() };
        for n in names {
            list.text.extend_from_slice(n.as_bytes());
            list.ends.push(list.text.len());
            list.ids.push(by_name.get(n.as_ref()).copied());
        }
        let list = Arc::new(list);
        let mut slots = shared(&self.slots);
        slots.1 = 1 - slots.1;
        let last = slots.1;
        slots.0[last] = list.clone();
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_lists_follow_the_names_and_new_nodes() {
        let mut by_name: HashMap<String, NodeId, foldhash::fast::RandomState> = HashMap::default();
        by_name.insert("node-a".into(), 0);
        by_name.insert("node-bbbbbbbbb".into(), 1);
        let r = Resolved::default();
        let list = |names: &[&'static str]| names.iter().map(|&n| Cow::Borrowed(n)).collect::<Vec<_>>();
        let ab = list(&["node-a", "node-bbbbbbbbb", "node-c"]);
        let first = r.ids(&by_name, &ab);
        assert_eq!(first.ids, [Some(0), Some(1), None]);
        assert!(
            Arc::ptr_eq(&first, &r.ids(&by_name, &ab)),
            "a list asked again is found, not resolved again"
        );
        // Same lengths, other bytes; a shorter list; names split differently.
        assert_eq!(
            r.ids(&by_name, &list(&["node-a", "node-bbbbbbbbc", "node-c"])).ids,
            [Some(0), None, None]
        );
        assert_eq!(r.ids(&by_name, &list(&["node-a", "node-bbbbbbbbb"])).ids, [Some(0), Some(1)]);
        assert_eq!(r.ids(&by_name, &list(&["node-anode-bbbbbbbbb", ""])).ids, [None, None]);
        // A node added is found in a list resolved before.
        by_name.insert("node-c".into(), 2);
        assert_eq!(r.ids(&by_name, &ab).ids, [Some(0), Some(1), Some(2)]);
        for (a, b) in [
            ("", ""),
            ("12345678", "12345678"),
            ("1234567890abcdef", "1234567890abcdeF"),
            ("123456789", "023456789"),
            ("x", "y"),
        ] {
            assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
        }
    }
}
