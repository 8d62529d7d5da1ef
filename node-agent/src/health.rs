//! Each GPU's health from what a pass shows: healthy, degraded (usable, but a reset is due or
//! errors are rising) or failed (never offered to new work). The reason and the time of the last
//! change are kept, for the inventory and for people.
//!
//! | cause | state |
//! |---|---|
//! | XID 48 (double-bit ECC), 64 (row remapping failed), 74 (NVLink error), 79 (fell off the bus), 95 (uncontained ECC error) | failed |
//! | XID 63 (row remapping recorded, reset pending), 92 (high single-bit ECC rate), 94 (contained ECC error) | degraded |
//! | uncorrected (double-bit) ECC errors rising since the last pass | failed |
//! | row remapping failure | failed |
//! | row remapping pending | degraded while pending |
//! | "GPU is lost", or the GPU missing from NVML's list | failed |
//!
//! Failures and XID-caused degradations stick until the agent restarts (after the GPU has been
//! reset or replaced, which restarts the driver and the agent with it); a pending remapping
//! clears itself when the reset applies it. Other XIDs (application errors such as 13, 31, 43)
//! are counted in the metrics but do not change health.

use crate::sample::{Frame, GpuSample};
use std::collections::BTreeMap;

/// A GPU's health, worst last (the agent's `State` is what it knows of the whole node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthState {
    Healthy,
    Degraded,
    Failed,
}

impl HealthState {
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Failed => "failed",
        }
    }
}

/// What a critical XID means, from NVIDIA's XID catalog; `None` for XIDs that do not change health.
pub fn xid_effect(xid: u64) -> Option<(HealthState, &'static str)> {
    Some(match xid {
        48 => (HealthState::Failed, "double-bit ECC error"),
        64 => (HealthState::Failed, "row remapping failed"),
        74 => (HealthState::Failed, "NVLink error"),
        79 => (HealthState::Failed, "GPU has fallen off the bus"),
        95 => (HealthState::Failed, "uncontained ECC error"),
        63 => (HealthState::Degraded, "row remapping recorded; a GPU reset is pending"),
        92 => (HealthState::Degraded, "high single-bit ECC error rate"),
        94 => (HealthState::Degraded, "contained ECC error"),
        _ => return None,
    })
}

/// One GPU's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub state: HealthState,
    /// Why, in words; empty when healthy.
    pub reason: String,
    /// Unix seconds of the last change of state.
    pub since: i64,
}

/// A change of one GPU's health, for the log and the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub uuid: String,
    pub index: u32,
    pub from: HealthState,
    pub to: HealthState,
    pub reason: String,
}

#[derive(Clone, Debug)]
struct Gpu {
    index: u32,
    health: Health,
    /// The worst state that sticks (failures, XID degradations) and its reason.
    sticky: Option<(HealthState, String)>,
    uncorrected: Option<u64>,
}

/// Health of every GPU the agent has seen, by UUID.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    gpus: BTreeMap<String, Gpu>,
}

impl Tracker {
    /// Takes one pass in at time `now` (unix seconds); returns the changes.
    pub fn observe(&mut self, frame: &Frame, now: i64) -> Vec<Transition> {
        let mut changes = Vec::new();
        for sample in &frame.gpus {
            let gpu = self.gpus.entry(sample.uuid.clone()).or_insert_with(|| Gpu {
                index: sample.index,
                health: Health { state: HealthState::Healthy, reason: String::new(), since: now },
                sticky: None,
                uncorrected: None,
            });
            gpu.index = sample.index;
            let mut stick = |state: HealthState, reason: String| {
                if gpu.sticky.as_ref().is_none_or(|(s, _)| state > *s) {
                    gpu.sticky = Some((state, reason));
                }
            };
            if sample.lost {
                stick(HealthState::Failed, "GPU is lost (NVML)".into());
            }
            for x in frame.xids.iter().filter(|x| x.uuid == sample.uuid) {
                if let Some((state, what)) = xid_effect(x.xid) {
                    stick(state, format!("XID {}: {what}", x.xid));
                }
            }
            if let Some(ecc) = sample.ecc {
                if gpu.uncorrected.is_some_and(|before| ecc.uncorrected_volatile > before) {
                    stick(
                        HealthState::Failed,
                        format!("uncorrected ECC errors rose to {}", ecc.uncorrected_volatile),
                    );
                }
                gpu.uncorrected = Some(ecc.uncorrected_volatile);
            }
            if sample.remapped_rows.is_some_and(|r| r.failure) {
                stick(
                    HealthState::Failed,
                    "row remapping failure: the memory can no longer be repaired".into(),
                );
            }
            let (state, reason) = now_state(gpu.sticky.as_ref(), sample);
            update(gpu, &sample.uuid, state, reason, now, &mut changes);
        }
        // A GPU NVML no longer lists has fallen off the bus.
        let present: Vec<&str> = frame.gpus.iter().map(|g| g.uuid.as_str()).collect();
        for (uuid, gpu) in self.gpus.iter_mut().filter(|(u, _)| !present.contains(&u.as_str())) {
            // The first cause stays (an XID 79 just before is the better reason).
            if gpu.sticky.as_ref().is_none_or(|(s, _)| *s < HealthState::Failed) {
                gpu.sticky = Some((HealthState::Failed, "GPU is lost: NVML no longer lists it".into()));
            }
            let reason = gpu.sticky.as_ref().map_or(String::new(), |(_, r)| r.clone());
            update(gpu, uuid, HealthState::Failed, reason, now, &mut changes);
        }
        changes
    }

    /// Every GPU seen, by UUID: its index and health.
    pub fn health(&self) -> impl Iterator<Item = (&str, u32, &Health)> {
        self.gpus.iter().map(|(u, g)| (u.as_str(), g.index, &g.health))
    }

    pub fn of(&self, uuid: &str) -> Option<&Health> {
        self.gpus.get(uuid).map(|g| &g.health)
    }
}

/// The state a GPU is in now: the sticky one, or a pending remapping, whichever is worse.
fn now_state(sticky: Option<&(HealthState, String)>, sample: &GpuSample) -> (HealthState, String) {
    let pending = sample.remapped_rows.is_some_and(|r| r.pending && !r.failure);
    match sticky {
        Some((s, r)) => (*s, r.clone()),
        None if pending => (HealthState::Degraded, "row remapping pending: reset the GPU to apply it".into()),
        None => (HealthState::Healthy, String::new()),
    }
}

fn update(
    gpu: &mut Gpu,
    uuid: &str,
    state: HealthState,
    reason: String,
    now: i64,
    changes: &mut Vec<Transition>,
) {
    if gpu.health.state != state || gpu.health.reason != reason {
        if gpu.health.state != state {
            changes.push(Transition {
                uuid: uuid.to_string(),
                index: gpu.index,
                from: gpu.health.state,
                to: state,
                reason: reason.clone(),
            });
            gpu.health.since = now;
        }
        gpu.health.state = state;
        gpu.health.reason = reason;
    }
}
