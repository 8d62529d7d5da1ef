//! Leader election on a `coordination.k8s.io/v1` Lease: one replica runs the queue.
//!
//! The rule ([`decide`], pure): no Lease → create it holding it; held by this replica → renew
//! it; held by nobody, or not renewed within its duration → take it; otherwise wait. Every write
//! carries the `resourceVersion` that was read (optimistic locking): of two replicas taking the
//! same Lease, one write fails with a conflict and that replica waits.
//!
//! The leader renews every [`RENEW_EVERY`] a Lease of [`DURATION`]; the others look every
//! [`POLL_EVERY`], so a Lease released by a leader that stops cleanly (SIGTERM) is taken within
//! about that; a leader that dies is replaced once its Lease expires. A leader that cannot renew
//! for the Lease's duration stops leading on its own, before another can take over.
//!
//! (kube-lease-manager, used before, lets a follower sleep until the expiry it last read, so a
//! clean hand-over took the whole duration.)

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a Lease holds without renewal.
pub const DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often the others look.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// What the Lease says, in what [`decide`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub holder: Option<String>,
    /// When the holder last renewed, Unix milliseconds.
    pub renewed_ms: Option<i64>,
    pub duration_s: i64,
}

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Create,
    Renew,
    Take,
    Wait,
}

/// The election rule (see the module docs).
pub fn decide(lease: Option<&Held>, me: &str, now_ms: i64) -> Step {
    let Some(l) = lease else { return Step::Create };
    match l.holder.as_deref().filter(|h| !h.is_empty()) {
        Some(h) if h == me => Step::Renew,
        None => Step::Take,
        Some(_) => match l.renewed_ms {
            Some(r) if now_ms <= r + l.duration_s * 1000 => Step::Wait,
            _ => Step::Take,
        },
    }
}

fn held(lease: &Lease) -> Held {
    let spec = lease.spec.as_ref();
    Held {
        holder: spec.and_then(|s| s.holder_identity.clone()),
        renewed_ms: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0.as_millisecond()),
        duration_s: spec.and_then(|s| s.lease_duration_seconds).map_or(DURATION.as_secs() as i64, i64::from),
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// One replica's candidacy for a Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str) -> Elector {
        Elector { api, name: name.to_string(), identity: identity.to_string() }
    }

    /// One look at the Lease and the write it calls for; whether this replica holds it after.
    async fn step(&self) -> Result<bool, kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let now = jiff::Timestamp::now();
        let time = MicroTime(now);
        match decide(lease.as_ref().map(held).as_ref(), &self.identity, now.as_millisecond()) {
            Step::Wait => Ok(false),
            Step::Create => {
                let mut l = Lease::default();
                l.metadata.name = Some(self.name.clone());
                l.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    acquire_time: Some(time.clone()),
                    renew_time: Some(time),
                    lease_duration_seconds: Some(DURATION.as_secs() as i32),
                    lease_transitions: Some(0),
                    ..Default::default()
                });
                match self.api.create(&PostParams::default(), &l).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            step @ (Step::Renew | Step::Take) => {
                let lease = lease.unwrap_or_default();
                let mut spec = json!({"holderIdentity": self.identity, "renewTime": time, "leaseDurationSeconds": DURATION.as_secs()});
                if step == Step::Take {
                    let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
                    spec["acquireTime"] = json!(time);
                    spec["leaseTransitions"] = json!(transitions + 1);
                }
                let patch =
                    json!({"metadata": {"resourceVersion": lease.metadata.resource_version}, "spec": spec});
                match self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Gives the Lease up if this replica holds it (the holder cleared, so the others take it
    /// at their next look).
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
        if held(&lease).holder.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let patch = json!({"metadata": {"resourceVersion": lease.metadata.resource_version}, "spec": {"holderIdentity": null}});
        self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
    }

    /// Runs the candidacy until `stop` turns true; then releases the Lease if held. The receiver
    /// says whether this replica leads now.
    pub fn spawn(
        self,
        mut stop: watch::Receiver<bool>,
    ) -> (watch::Receiver<bool>, JoinHandle<Result<(), kube::Error>>) {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut last_renewal: Option<i64> = None;
            loop {
                let leads = match self.step().await {
                    Ok(true) => {
                        last_renewal = Some(now_ms());
                        true
                    }
                    Ok(false) => false,
                    Err(e) => {
                        tracing::warn!("Lease {}: {e}; retrying", self.name);
                        // Still the leader until the Lease could have expired (less a margin).
                        last_renewal
                            .is_some_and(|t| now_ms() < t + (DURATION - RENEW_EVERY).as_millis() as i64)
                    }
                };
                if !leads {
                    last_renewal = None;
                }
                tx.send_if_modified(|l| std::mem::replace(l, leads) != leads);
                let wait = if leads { RENEW_EVERY } else { POLL_EVERY };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            tx.send_replace(false);
            self.release().await
        });
        (rx, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_ms: Option<i64>) -> Held {
        Held { holder: holder.map(str::to_string), renewed_ms, duration_s: 15 }
    }

    #[test]
    fn the_election_rule() {
        let now = 1_000_000;
        let cases = [
            (None, Step::Create),
            (Some(lease(Some("me"), Some(now - 60_000))), Step::Renew),
            (Some(lease(None, Some(now))), Step::Take),
            (Some(lease(Some(""), Some(now))), Step::Take),
            (Some(lease(Some("other"), Some(now - 1_000))), Step::Wait),
            (Some(lease(Some("other"), Some(now - 15_000))), Step::Wait),
            (Some(lease(Some("other"), Some(now - 15_001))), Step::Take),
            (Some(lease(Some("other"), None)), Step::Take),
        ];
        for (l, want) in cases {
            assert_eq!(decide(l.as_ref(), "me", now), want, "{l:?}");
        }
    }
}
