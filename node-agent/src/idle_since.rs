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
//! pod look idle for longer than it was. It stays fixed while the pod stays idle, so the idle
//! pods change only on transitions (a pod becomes idle, becomes busy, or goes away); only their
//! confirmation (below) is renewed while they stay idle.
//!
//! What resets the evidence, always toward "idle for less time":
//! - a pod that no longer holds GPUs is forgotten (a pod of the same name later starts over);
//! - an agent restart starts over: pods are idle since the first pass after the restart, since the
//!   tracker lives only in memory (the Node's old annotation is replaced at the first publish);
//! - a pass at which the agent could not learn who holds the GPUs (pod-resources failed) forgets
//!   everything, as a restart does ([`IdleSince::forget`]): across the gap it cannot tell that the
//!   same pod held the GPUs, nor that they stayed idle.
//!
//! Confirmation: since the idle pods change only on transitions, an agent that stopped would
//! leave its last word on the Node for good. So while any pod is idle the agent also writes
//! when it last confirmed them ([`GPU_IDLE_CHECKED_AT_ANNOTATION`]): the pass at which they last
//! changed, renewed at the first pass [`IDLE_REFRESH_SECONDS`] or more after that (one Node write
//! a minute, on nodes with idle pods only). The scheduler uses the evidence only while that stamp
//! is at most [`gantry_api::node::IDLE_MAX_AGE_SECONDS`] old ([`gantry_api::node::IdleOnNode`]).

use crate::agent::GpuUse;
use gantry_api::keys::{GPU_IDLE_CHECKED_AT_ANNOTATION, GPU_IDLE_PODS_ANNOTATION};
use gantry_api::node::{IDLE_REFRESH_SECONDS, MAX_IDLE_PODS};
use std::collections::BTreeMap;

/// Per pod holding GPUs, `namespace/pod` → the start of its current idle stretch (`None`: busy
/// at the last pass), and when the idle pods were last confirmed.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct IdleSince {
    pods: BTreeMap<String, Option<i64>>,
    /// The pass that last confirmed the idle pods; `None` while none is idle.
    checked_at: Option<i64>,
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
        let changed = self.idle() != before;
        self.confirm(now, changed);
        changed
    }

    /// Stamps the pass at `now` as the confirmation when the idle pods changed, or when the last
    /// stamp is [`IDLE_REFRESH_SECONDS`] old (or ahead of `now`: the clock was set back).
    fn confirm(&mut self, now: i64, changed: bool) {
        let any_idle = self.pods.values().any(Option::is_some);
        self.checked_at = match self.checked_at {
            _ if !any_idle => None,
            Some(t) if !changed && (t..t + IDLE_REFRESH_SECONDS).contains(&now) => Some(t),
            _ => Some(now),
        };
    }

    /// Forgets every pod, as a restart would: the next pass starts every idle stretch anew.
    /// Returns whether any pod was idle (the annotation changes).
    pub fn forget(&mut self) -> bool {
        let had = !self.idle().is_empty();
        self.pods.clear();
        self.checked_at = None;
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

    /// When the idle pods were last confirmed (unix seconds); `None` while none is idle.
    pub fn checked_at(&self) -> Option<i64> {
        self.checked_at
    }

    /// The idle pods and their confirmation as the inventory's [`crate::inventory::Desired`]
    /// entries (both removed when no pod is idle).
    pub fn desired(&self) -> [(String, Option<String>); 2] {
        [
            (GPU_IDLE_PODS_ANNOTATION.to_string(), self.annotation()),
            (GPU_IDLE_CHECKED_AT_ANNOTATION.to_string(), self.checked_at.map(|t| t.to_string())),
        ]
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
        let stamp = (T0 + 30).to_string();
        let annotations: serde_json::Map<String, serde_json::Value> =
            t.desired().into_iter().map(|(k, v)| (k, json!(v))).collect();
        assert_eq!(
            serde_json::Value::Object(annotations.clone()),
            json!({GPU_IDLE_PODS_ANNOTATION: text, GPU_IDLE_CHECKED_AT_ANNOTATION: stamp})
        );
        let node = json!({"metadata": {"name": "gpu-node-1", "annotations": annotations}});
        let read = gantry_api::node::idle_pods(&node).unwrap();
        assert_eq!((read.pods, read.checked_at), (t.idle(), Some(T0 + 30)));
    }

    /// Passes every `step` seconds from T0 with the notebook idle throughout: when the agent
    /// confirms (stamps) its evidence.
    #[test]
    fn idle_evidence_is_confirmed_on_changes_and_at_least_every_refresh() {
        let idle_gpu = [gpu(0, NB, Some(0))];
        for step in [1, 10, 25, 60, 90] {
            let mut t = IdleSince::new();
            let mut stamps = Vec::new();
            for i in 0..=20 {
                let now = T0 + i * step;
                t.observe(now, &idle_gpu);
                if stamps.last() != t.checked_at().as_ref() {
                    stamps.push(t.checked_at().unwrap());
                }
                let age = now - t.checked_at().unwrap();
                assert!(age < IDLE_REFRESH_SECONDS, "step {step}: at {now} the stamp is {age} s old");
            }
            assert_eq!(stamps[0], T0, "step {step}: stamped when the pod became idle");
            for pair in stamps.windows(2) {
                assert!(pair[1] - pair[0] >= IDLE_REFRESH_SECONDS.min(step), "step {step}: {stamps:?}");
            }
        }
        // A change stamps at once; no idle pod, no stamp; a clock set back stamps anew.
        let mut t = IdleSince::new();
        t.observe(T0, &[gpu(0, NB, Some(0)), gpu(1, TRAIN, Some(50))]);
        t.observe(T0 + 5, &[gpu(0, NB, Some(0)), gpu(1, TRAIN, Some(0))]);
        assert_eq!(t.checked_at(), Some(T0 + 5), "train-0 became idle");
        t.observe(T0 + 6, &[gpu(0, NB, Some(7)), gpu(1, TRAIN, Some(9))]);
        assert_eq!((t.checked_at(), t.desired()[1].1.clone()), (None, None), "nothing idle");
        t.observe(T0 + 7, &idle_gpu);
        t.observe(T0 - 100, &idle_gpu);
        assert_eq!(t.checked_at(), Some(T0 - 100));
        assert!(t.forget());
        assert_eq!(t.checked_at(), None, "forgetting forgets the stamp");
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
        let read = gantry_api::node::idle_pods(&node).unwrap().pods;
        assert_eq!(read.len(), MAX_IDLE_PODS);
        for dropped in ["ns/p000", "ns/p001", "ns/p002"] {
            assert!(!read.contains_key(dropped), "{dropped} was idle the shortest");
        }
        assert_eq!(read["ns/p003"], T0 + (n - 4) as i64);
        assert_eq!(read[&format!("ns/p{:03}", n - 1)], T0);
    }
}
