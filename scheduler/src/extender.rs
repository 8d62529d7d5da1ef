//! The extender's decisions over its node cache.
//!
//! - **filter**: a node passes when the pod fits it now (the core's filter: CPU, memory, GPU
//!   model and per-GPU free milli); a node that could never hold the pod, or that Gantry does not
//!   know, is *unresolvable*, so kube-scheduler does not try to preempt there;
//! - **prioritize**: the placement policy's scores, mapped linearly onto 0..10;
//! - **bind**: allocates the pod (choosing its GPUs) in the cache; a second bind for the last free
//!   GPU fails with an error, so racing pods never share it;
//! - **preempt**: Gantry agrees with kube-scheduler's victims and returns them as UIDs.
//!
//! Pods that ask for no GPU pass through untouched: every node passes, every score is 0. Pods
//! the queue controller admitted carry their planned node (`gantry.dev/placement`) and pass only
//! there.

use crate::pod::{parse_pod, PodView};
use crate::wire::*;
use gantry_core::model::{could_ever_fit, fits, Cluster, NodeId, Placement, PodRequest};
use gantry_core::policy::ScoreCx;
use gantry_core::Scheduler;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The node cache and what Gantry has bound on it.
pub struct Extender {
    cluster: Cluster,
    scheduler: Scheduler,
    by_name: HashMap<String, NodeId>,
    /// Requests of pods seen by filter or prioritize, by UID (bind carries no pod spec).
    seen: HashMap<String, PodRequest>,
    /// Bound pods: UID → cluster pod id.
    bound: HashMap<String, u64>,
    next_pod: u64,
}

impl Extender {
    pub fn new(cluster: Cluster, scheduler: Scheduler) -> Self {
        let by_name = cluster.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        Extender { cluster, scheduler, by_name, seen: HashMap::new(), bound: HashMap::new(), next_pod: 1 }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn pod(&mut self, pod: &Value) -> Result<PodView, String> {
        let view = parse_pod(pod, &self.cluster.models)?;
        if view.managed() && !view.uid.is_empty() {
            if self.seen.len() > 100_000 {
                self.seen.clear();
            }
            self.seen.insert(view.uid.clone(), view.request);
        }
        Ok(view)
    }

    /// The candidate node names of a request, and the raw node objects when they came in full.
    fn candidates(args: &ExtenderArgs) -> Result<(Vec<String>, Option<&NodeList>), String> {
        match (&args.node_names, &args.nodes) {
            (Some(names), _) => Ok((names.clone(), None)),
            (None, Some(list)) => {
                let names = list
                    .items
                    .iter()
                    .map(|n| n.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("a node in Nodes.items has no metadata.name")?;
                Ok((names, Some(list)))
            }
            (None, None) => Ok((Vec::new(), None)),
        }
    }

    pub fn filter(&mut self, args: &ExtenderArgs) -> ExtenderFilterResult {
        let failure = |error: String| ExtenderFilterResult { error, ..Default::default() };
        let pod = match self.pod(&args.pod) {
            Ok(p) => p,
            Err(e) => return failure(e),
        };
        let (names, full) = match Self::candidates(args) {
            Ok(c) => c,
            Err(e) => return failure(e),
        };
        let mut passing = Vec::new();
        let mut failed = BTreeMap::new();
        let mut unresolvable = BTreeMap::new();
        // A pod of an admitted workload goes where the queue controller planned it: its room was
        // reserved with the whole gang's.
        let planned = args.pod["metadata"]["annotations"][crate::adapter::PLACEMENT_ANNOTATION].as_str().map(|v| v.split(':').next().unwrap_or(v).to_string());
        for (i, name) in names.iter().enumerate() {
            if let Some(node) = &planned {
                if node == name {
                    passing.push(i);
                } else {
                    failed.insert(name.clone(), format!("Gantry planned this pod for node {node}"));
                }
                continue;
            }
            if !pod.managed() {
                passing.push(i);
                continue;
            }
            let Some(&id) = self.by_name.get(name) else {
                unresolvable.insert(name.clone(), format!("node {name} is not in Gantry's node cache"));
                continue;
            };
            let node = &self.cluster.nodes[id];
            match fits(node, &pod.request) {
                Ok(()) => passing.push(i),
                Err(m) if !could_ever_fit(node, &pod.request) => {
                    unresolvable.insert(name.clone(), format!("{m}, even when empty"));
                }
                Err(m) => {
                    failed.insert(name.clone(), m.to_string());
                }
            }
        }
        let mut out = ExtenderFilterResult {
            failed_nodes: Some(failed),
            failed_and_unresolvable_nodes: Some(unresolvable),
            ..Default::default()
        };
        match full {
            Some(list) => {
                out.nodes = Some(NodeList { metadata: list.metadata.clone(), items: passing.iter().map(|&i| list.items[i].clone()).collect() })
            }
            None => out.node_names = Some(passing.iter().map(|&i| names[i].clone()).collect()),
        }
        out
    }

    /// Scores 0..10 per candidate node; an error for requests that make no sense.
    pub fn prioritize(&mut self, args: &ExtenderArgs) -> Result<Vec<HostPriority>, String> {
        let pod = self.pod(&args.pod)?;
        let (names, _) = Self::candidates(args)?;
        if !pod.managed() {
            return Ok(names.into_iter().map(|host| HostPriority { host, score: 0 }).collect());
        }
        let ids: Vec<Option<NodeId>> = names.iter().map(|n| self.by_name.get(n).copied()).collect();
        let raw = self.scheduler.scores(&self.cluster, &pod.request, &ids);
        let (lo, hi) = raw.iter().flatten().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        Ok(names
            .into_iter()
            .zip(raw)
            .map(|(host, s)| {
                let score = match s {
                    Some(s) if hi > lo => ((s - lo) / (hi - lo) * MAX_PRIORITY as f64).round() as i64,
                    Some(_) => MAX_PRIORITY,
                    None => 0,
                };
                HostPriority { host, score: score.clamp(0, MAX_PRIORITY) }
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
        let Some(&request) = self.seen.get(&args.pod_uid) else {
            return err(format!("cannot bind {who}: Gantry has not filtered a pod with uid {:?}; retry scheduling", args.pod_uid));
        };
        let node = &self.cluster.nodes[id];
        if let Err(m) = fits(node, &request) {
            return err(format!("cannot bind {who} to {}: {m} (taken since filtering); retry scheduling", args.node));
        }
        let gpus = self.scheduler.policy().pick_gpus(node, &request, ScoreCx { node: id, salt: 0 }).unwrap_or_default();
        let pod_id = self.next_pod;
        if let Err(e) = self.cluster.allocate(pod_id, &request, Placement { node: id, gpus }) {
            return err(format!("cannot bind {who}: {e}"));
        }
        self.next_pod += 1;
        self.bound.insert(args.pod_uid.clone(), pod_id);
        self.seen.remove(&args.pod_uid);
        ExtenderBindingResult::default()
    }

    pub fn preempt(&mut self, args: &ExtenderPreemptionArgs) -> Result<ExtenderPreemptionResult, String> {
        if let Some(meta) = &args.node_name_to_meta_victims {
            return Ok(ExtenderPreemptionResult { node_name_to_meta_victims: meta.clone() });
        }
        let mut out = BTreeMap::new();
        for (node, v) in args.node_name_to_victims.iter().flatten() {
            let pods = v
                .pods
                .iter()
                .map(|p| {
                    let uid = p.get("metadata").and_then(|m| m.get("uid")).and_then(Value::as_str);
                    uid.map(|u| MetaPod { uid: u.to_string() }).ok_or_else(|| format!("a victim on node {node} has no metadata.uid"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.insert(node.clone(), MetaVictims { pods, num_pdb_violations: v.num_pdb_violations });
        }
        Ok(ExtenderPreemptionResult { node_name_to_meta_victims: out })
    }
}
