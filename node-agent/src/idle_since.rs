//! Which pods' GPUs sit idle, and since when: the evidence the scheduler's "idle GPU notebooks
//! give way" rule reads from the Node ([`GPU_IDLE_PODS_ANNOTATION`], read back by
//! [`gantry_api::node::idle_pods`]).
//!
//! At every pass [`IdleSince::observe`] is shown each GPU and the pod holding it. A pod is idle
//! at a pass when every GPU it holds reported 0 % utilization at that pass; a GPU whose
//! utilization NVML does not report (an unsupported field, a lost GPU, a MIG slice, a device the
//! kubelet assigned but this pass did not sample) makes its pod busy for that pass, because idle
//! evidence is used to stop work and is never guessed.
//!
//! The idle-since time of an idle pod is the time of the **first pass at which it was seen idle**
//! after being busy (or after it was first seen holding GPUs), not the time of the last busy
//! pass: the GPU may have gone quiet anywhere between the two, and the later time never makes a
//! pod look idle for longer than it was. It stays fixed while the pod stays idle, so the
//! annotation changes only on transitions (a pod becomes idle, becomes busy, or goes away).
//!
//! What resets the evidence, always toward "idle for less time":
//! - a pod that no longer holds GPUs is forgotten (a pod of the same name later starts over);
//! - an agent restart starts over: pods are idle since the first pass after the restart, since the
//!   tracker lives only in memory (the Node's old annotation is replaced at the first publish);
//! - a pass at which the agent could not learn who holds the GPUs (pod-resources failed) forgets
//!   everything, as a restart does ([`IdleSince::forget`]): across the gap it cannot tell that the
//!   same pod held the GPUs, nor that they stayed idle.

use crate::agent::GpuUse;
use gantry_api::keys::GPU_IDLE_PODS_ANNOTATION;
use gantry_api::node::MAX_IDLE_PODS;
use std::collections::BTreeMap;

/// Per pod holding GPUs, `namespace/pod` → the start of its current idle stretch (`None`: busy
/// at the last pass).
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct IdleSince {
    pods: BTreeMap<String, Option<i64>>,
}

impl IdleSince {
    pub fn new() -> IdleSince {
        IdleSince::default()
    }

    /// Takes in the pass at `now` (unix seconds): `gpus` are all the devices the node's pods hold
    /// (GPUs no pod holds are ignored). Returns whether the idle pods or their times changed,
    /// i.e. whether [`IdleSince::annotation`] differs from the previous pass.
    pub fn observe(&mut self, now: i64, gpus: &[GpuUse]) -> bool {
        // Per holder: idle at this pass only if every GPU it holds is known to be at 0 %.
        let mut idle_now: BTreeMap<String, bool> = BTreeMap::new();
        for g in gpus {
            let (Some(namespace), Some(pod)) = (&g.namespace, &g.pod) else { continue };
            let idle = g.utilization_percent == Some(0);
            *idle_now.entry(format!("{namespace}/{pod}")).or_insert(true) &= idle;
        }
        let before = self.idle();
        // Pods that no longer hold GPUs are forgotten.
        self.pods.retain(|k, _| idle_now.contains_key(k));
        for (key, idle) in idle_now {
            let since = self.pods.entry(key).or_insert(None);
            *since = match (idle, *since) {
                (false, _) => None,
                // Still idle: the stretch keeps its start.
                (true, Some(t)) => Some(t),
                // Busy (or first seen) at the last pass, idle now: the stretch starts at this pass.
                (true, None) => Some(now),
            };
        }
        self.idle() != before
    }

    /// Forgets every pod, as a restart would: the next pass starts every idle stretch anew.
    /// Returns whether any pod was idle (the annotation changes).
    pub fn forget(&mut self) -> bool {
        let had = !self.idle().is_empty();
        self.pods.clear();
        had
    }

    /// The idle pods, `namespace/pod` → idle since (unix seconds).
    pub fn idle(&self) -> BTreeMap<String, i64> {
        self.pods.iter().filter_map(|(k, t)| Some((k.clone(), (*t)?))).collect()
    }

    /// The value of [`GPU_IDLE_PODS_ANNOTATION`]: a JSON object of at most [`MAX_IDLE_PODS`]
    /// idle pods (the longest idle kept if there were more, which a node's few dozen GPUs cannot
    /// produce), keys sorted so that the same pods and times give the same text; `None` (remove
    /// the annotation) when no pod is idle.
    pub fn annotation(&self) -> Option<String> {
        let mut idle: Vec<(String, i64)> = self.idle().into_iter().collect();
        if idle.is_empty() {
            return None;
        }
        if idle.len() > MAX_IDLE_PODS {
            idle.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            idle.truncate(MAX_IDLE_PODS);
        }
        let map: serde_json::Map<String, serde_json::Value> =
            idle.into_iter().map(|(k, t)| (k, serde_json::Value::from(t))).collect();
        Some(serde_json::Value::Object(map).to_string())
    }

    /// The annotation as the inventory's [`crate::inventory::Desired`] entry.
    pub fn desired(&self) -> (String, Option<String>) {
        (GPU_IDLE_PODS_ANNOTATION.to_string(), self.annotation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_796_000_000;

    fn gpu(index: u32, holder: Option<(&str, &str)>, util: Option<u32>) -> GpuUse {
        GpuUse {
            index,
            uuid: format!("GPU-{index}"),
            model: "NVIDIA A100-SXM4-80GB".into(),
            namespace: holder.map(|h| h.0.to_string()),
            pod: holder.map(|h| h.1.to_string()),
            container: holder.map(|_| "main".to_string()),
            utilization_percent: util,
            memory_used_bytes: None,
            memory_total_bytes: None,
        }
    }

    const NB: Option<(&str, &str)> = Some(("team-a", "nb-0"));
    const TRAIN: Option<(&str, &str)> = Some(("team-b", "train-0"));

    fn idle(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, t)| (k.to_string(), *t)).collect()
    }

    /// Each case: passes 10 s apart (the GPUs at that pass), and after each pass the idle pods
    /// and whether the annotation changed.
    #[test]
    fn idle_stretches_across_passes() {
        type Pass = (Vec<GpuUse>, Vec<(&'static str, i64)>, bool);
        let cases: Vec<(&str, Vec<Pass>)> = vec![
            (
                "busy, idle, idle, busy, idle: each stretch starts at its first idle pass",
                vec![
                    (vec![gpu(0, NB, Some(40))], vec![], false),
                    (vec![gpu(0, NB, Some(0))], vec![("team-a/nb-0", T0 + 10)], true),
                    (vec![gpu(0, NB, Some(0))], vec![("team-a/nb-0", T0 + 10)], false),
                    (vec![gpu(0, NB, Some(1))], vec![], true),
                    (vec![gpu(0, NB, Some(0))], vec![("team-a/nb-0", T0 + 40)], true),
                ],
            ),
            (
                "idle when first seen: idle since that pass",
                vec![
                    (vec![gpu(0, NB, Some(0))], vec![("team-a/nb-0", T0)], true),
                    (vec![gpu(0, NB, Some(0))], vec![("team-a/nb-0", T0)], false),
                ],
            ),
            (
                "two GPUs, one busy: not idle until both are",
                vec![
                    (vec![gpu(0, NB, Some(0)), gpu(1, NB, Some(70))], vec![], false),
                    (vec![gpu(0, NB, Some(0)), gpu(1, NB, Some(0))], vec![("team-a/nb-0", T0 + 10)], true),
                    (vec![gpu(0, NB, Some(3)), gpu(1, NB, Some(0))], vec![], true),
                ],
            ),
            (
                "a GPU whose utilization is unknown: never idle, and ends a stretch",
                vec![
                    (vec![gpu(0, NB, None)], vec![], false),
                    (vec![gpu(0, NB, Some(0)), gpu(1, NB, None)], vec![], false),
                    (vec![gpu(0, NB, Some(0)), gpu(1, NB, Some(0))], vec![("team-a/nb-0", T0 + 20)], true),
                    (vec![gpu(0, NB, Some(0)), gpu(1, NB, None)], vec![], true),
                    (vec![gpu(0, NB, Some(0)), gpu(1, NB, Some(0))], vec![("team-a/nb-0", T0 + 40)], true),
                ],
            ),
            (
                "a pod leaving is forgotten; the same name coming back starts over",
                vec![
                    (
                        vec![gpu(0, NB, Some(0)), gpu(1, TRAIN, Some(0))],
                        vec![("team-a/nb-0", T0), ("team-b/train-0", T0)],
                        true,
                    ),
                    (vec![gpu(0, None, Some(0)), gpu(1, TRAIN, Some(0))], vec![("team-b/train-0", T0)], true),
                    (
                        vec![gpu(0, NB, Some(0)), gpu(1, TRAIN, Some(0))],
                        vec![("team-a/nb-0", T0 + 20), ("team-b/train-0", T0)],
                        true,
                    ),
                ],
            ),
            (
                "GPUs no pod holds are never idle pods",
                vec![(vec![gpu(0, None, Some(0)), gpu(1, None, None)], vec![], false)],
            ),
            (
                "pods are tracked apart: one busy, one idle",
                vec![
                    (vec![gpu(0, NB, Some(0)), gpu(1, TRAIN, Some(99))], vec![("team-a/nb-0", T0)], true),
                    (
                        vec![gpu(0, NB, Some(0)), gpu(1, TRAIN, Some(0))],
                        vec![("team-a/nb-0", T0), ("team-b/train-0", T0 + 10)],
                        true,
                    ),
                    (vec![gpu(0, NB, Some(0)), gpu(1, TRAIN, Some(99))], vec![("team-a/nb-0", T0)], true),
                ],
            ),
        ];
        for (what, passes) in cases {
            let mut t = IdleSince::new();
            for (i, (gpus, want, changed)) in passes.into_iter().enumerate() {
                let got = t.observe(T0 + 10 * i as i64, &gpus);
                assert_eq!(t.idle(), idle(&want), "{what}: pass {i}");
                assert_eq!(got, changed, "{what}: pass {i} changed");
            }
        }
    }

    #[test]
    fn a_restart_or_lost_attribution_starts_over_never_longer() {
        let gpus = [gpu(0, NB, Some(0))];
        let mut before = IdleSince::new();
        before.observe(T0, &gpus);
        before.observe(T0 + 600, &gpus);
        assert_eq!(before.idle(), idle(&[("team-a/nb-0", T0)]));

        // A restarted agent has a new tracker: idle since its first pass.
        let mut after = IdleSince::new();
        assert!(after.observe(T0 + 700, &gpus));
        assert_eq!(after.idle(), idle(&[("team-a/nb-0", T0 + 700)]));

        // Lost attribution is the same as a restart.
        assert!(before.forget());
        assert_eq!(before.annotation(), None);
        assert!(!before.forget(), "nothing was idle any more");
        assert!(before.observe(T0 + 700, &gpus));
        assert_eq!(before, after);
    }

    #[test]
    fn the_annotation_reads_back_as_the_same_map() {
        let mut t = IdleSince::new();
        assert_eq!(t.annotation(), None, "no pod idle: the annotation is removed");
        t.observe(T0, &[gpu(0, NB, Some(0)), gpu(1, TRAIN, Some(5))]);
        t.observe(T0 + 30, &[gpu(0, NB, Some(0)), gpu(1, TRAIN, Some(0))]);
        let text = t.annotation().unwrap();
        assert_eq!(text, format!(r#"{{"team-a/nb-0":{T0},"team-b/train-0":{}}}"#, T0 + 30));
        let node =
            json!({"metadata": {"name": "gpu-node-1", "annotations": {GPU_IDLE_PODS_ANNOTATION: text}}});
        assert_eq!(gantry_api::node::idle_pods(&node).unwrap(), t.idle());
        assert_eq!(t.desired(), (GPU_IDLE_PODS_ANNOTATION.to_string(), Some(text)));
    }

    #[test]
    fn at_most_the_bound_the_longest_idle_kept() {
        let mut t = IdleSince::new();
        let n = MAX_IDLE_PODS + 3;
        // Pod i idle from the pass at T0 + (n - 1 - i) on: the first three pods are the shortest
        // idle.
        for step in 0..n {
            let gpus: Vec<GpuUse> = (0..n)
                .map(|i| {
                    let pod = format!("p{i:03}");
                    let holder = Some(("ns", pod.as_str()));
                    gpu(i as u32, holder, Some(if i + step + 1 >= n { 0 } else { 50 }))
                })
                .collect();
            t.observe(T0 + step as i64, &gpus);
        }
        assert_eq!(t.idle().len(), n);
        let text = t.annotation().unwrap();
        let node =
            json!({"metadata": {"name": "gpu-node-1", "annotations": {GPU_IDLE_PODS_ANNOTATION: text}}});
        let read = gantry_api::node::idle_pods(&node).unwrap();
        assert_eq!(read.len(), MAX_IDLE_PODS);
        for dropped in ["ns/p000", "ns/p001", "ns/p002"] {
            assert!(!read.contains_key(dropped), "{dropped} was idle the shortest");
        }
        assert_eq!(read["ns/p003"], T0 + (n - 4) as i64);
        assert_eq!(read[&format!("ns/p{:03}", n - 1)], T0);
    }
}
