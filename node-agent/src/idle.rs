//! Idle-but-allocated GPU time: what the node's pods reserved and did not use, for the quota
//! API's cost lines (`quota-api/src/idle.rs`).
//!
//! NVML's utilization is the share of its last sample period in which a kernel ran on the GPU;
//! the rest of the time the GPU was idle. At every pass the meter charges the time since the
//! previous pass to the pod holding each GPU: `(100 - utilization) %` of it as idle, summed per
//! namespace and GPU model over fixed windows (one minute by default). A window is closed once
//! a pass at or after its end has been taken, and its lines go to the quota API, which keeps
//! them under a key naming this node, so a window sent twice counts once.
//!
//! What is not charged: GPUs no pod holds (nothing was reserved), GPUs whose utilization NVML
//! does not report (never guessed as zero), and, after a stall, more than `max_gap` seconds.
//! A restarted agent starts a new meter: the window it was in when it stopped is lost.

use crate::agent::GpuUse;
use crate::inventory::product_label;
use gantry_api::quota::{IdleLine, IdleReport};
use gantry_serve::client::{BearerClient, CallError};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// Sums idle time per window, namespace and model between the passes it is shown.
pub struct IdleMeter {
    window: i64,
    max_gap: i64,
    last: Option<i64>,
    /// (window start, namespace, model) → milli-GPU-seconds idle.
    open: BTreeMap<(i64, String, String), u64>,
}

impl IdleMeter {
    /// Windows of `window` seconds (aligned to the epoch, so every node's agree); at most
    /// `max_gap` seconds are charged between two passes.
    pub fn new(window: i64, max_gap: i64) -> IdleMeter {
        IdleMeter { window: window.max(1), max_gap: max_gap.max(1), last: None, open: BTreeMap::new() }
    }

    /// Charges the time since the previous pass to the holders of `gpus`, as seen at the pass
    /// taken at `now` (unix seconds). The first pass only starts the clock; a clock that went
    /// back charges nothing.
    pub fn observe(&mut self, now: i64, gpus: &[GpuUse]) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        if now <= last {
            return;
        }
        self.last = Some(now);
        let from = last.max(now - self.max_gap);
        for g in gpus {
            let (Some(namespace), Some(util)) = (&g.namespace, g.utilization_percent) else { continue };
            // Milli-GPU-seconds idle per second of the period.
            let rate = 10 * u64::from(100 - util.min(100));
            if rate == 0 {
                continue;
            }
            let model = product_label(&g.model);
            let mut t = from;
            while t < now {
                let start = t.div_euclid(self.window) * self.window;
                let end = (start + self.window).min(now);
                *self.open.entry((start, namespace.clone(), model.clone())).or_default() +=
                    (end - t) as u64 * rate;
                t = end;
            }
        }
    }

    /// The lines of the windows that ended at or before `now`, taken out of the meter.
    pub fn close(&mut self, now: i64) -> Vec<IdleLine> {
        let keep = self.open.split_off(&(now - self.window + 1, String::new(), String::new()));
        let done = std::mem::replace(&mut self.open, keep);
        done.into_iter()
            .map(|((start, namespace, model), idle)| IdleLine {
                start,
                end: start + self.window,
                namespace,
                model,
                idle,
            })
            .collect()
    }
}

/// Lines kept while the quota API cannot be reached (about a week of a busy 8-GPU node at one
/// window a minute); beyond that the oldest are dropped and the loss is logged.
const MAX_PENDING: usize = 100_000;

/// How often the agent tries again to send lines that could not be sent, when no new ones arrive.
pub const RETRY: Duration = Duration::from_secs(30);

/// Sends the closed windows arriving on `lines` to the quota API as `node`'s reports, keeping
/// what could not be sent and trying again every `retry` (and with the next lines); returns when
/// the channel closes or on `shutdown`, after a last try.
pub async fn send(
    caller: BearerClient,
    node: String,
    mut lines: mpsc::Receiver<Vec<IdleLine>>,
    retry: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut pending: Vec<IdleLine> = Vec::new();
    let mut said = String::new();
    let mut retry = tokio::time::interval(retry);
    let mut last_try = false;
    while !last_try {
        tokio::select! {
            got = lines.recv() => match got {
                Some(l) => pending.extend(l),
                None => last_try = true,
            },
            _ = retry.tick() => {}
            () = &mut shutdown => last_try = true,
        }
        if pending.len() > MAX_PENDING {
            let dropped = pending.len() - MAX_PENDING;
            pending.drain(..dropped);
            tracing::warn!("the quota API has been unreachable too long; {dropped} idle-time lines dropped");
        }
        if pending.is_empty() {
            continue;
        }
        let (lines, result) = post(&caller, &node, std::mem::take(&mut pending)).await;
        match result {
            Ok(()) => said.clear(),
            // Refused for good (e.g. a window resent after a lost answer, with figures changed
            // since): each window alone, so that only the refused ones are dropped and no window
            // waits behind them.
            Err(e) if e.refused() => {
                let mut windows: BTreeMap<(i64, i64), Vec<IdleLine>> = BTreeMap::new();
                for l in lines {
                    windows.entry((l.start, l.end)).or_default().push(l);
                }
                let mut dropped = 0;
                for (_, window) in windows {
                    let (window, result) = post(&caller, &node, window).await;
                    match result {
                        Ok(()) => {}
                        Err(e) if e.refused() => {
                            dropped += window.len();
                            tracing::warn!("the quota API refused a window of idle time, dropped: {e}");
                        }
                        Err(_) => pending.extend(window),
                    }
                }
                if dropped == 0 {
                    tracing::warn!("the quota API refused a report but took each window alone: {e}");
                }
            }
            Err(e) => {
                pending = lines;
                if e.message != said {
                    tracing::warn!("idle time not sent yet ({} lines kept): {e}", pending.len());
                    said = e.message;
                }
            }
        }
    }
}

/// One report of `lines`; the lines come back with the answer.
async fn post(
    caller: &BearerClient,
    node: &str,
    lines: Vec<IdleLine>,
) -> (Vec<IdleLine>, Result<(), CallError>) {
    let report = IdleReport { node: node.to_string(), lines };
    let result = match serde_json::to_string(&report) {
        Ok(body) => caller.call("POST", "/internal/v1/idle", "application/json", body).await,
        Err(e) => Err(CallError { status: None, message: format!("cannot write the idle report: {e}") }),
    };
    (report.lines, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, holder: Option<&str>, util: Option<u32>) -> GpuUse {
        GpuUse {
            index,
            uuid: format!("GPU-{index}"),
            model: "NVIDIA A100-SXM4-80GB".into(),
            namespace: holder.map(|_| "team-a".to_string()),
            pod: holder.map(str::to_string),
            container: holder.map(|_| "main".to_string()),
            utilization_percent: util,
            memory_used_bytes: None,
            memory_total_bytes: None,
        }
    }

    fn line(start: i64, idle: u64) -> IdleLine {
        IdleLine {
            start,
            end: start + 60,
            namespace: "team-a".into(),
            model: "NVIDIA-A100-SXM4-80GB".into(),
            idle,
        }
    }

    /// Two passes 10 s apart over one GPU: what each case charges.
    #[test]
    fn what_a_pass_charges() {
        let cases: [(&str, Vec<GpuUse>, u64); 6] = [
            ("idle GPU: the whole period", vec![gpu(0, Some("p"), Some(0))], 10_000),
            ("busy GPU: nothing", vec![gpu(0, Some("p"), Some(100))], 0),
            ("a quarter busy: three quarters", vec![gpu(0, Some("p"), Some(25))], 7_500),
            ("no holder: nothing reserved", vec![gpu(0, None, Some(0))], 0),
            ("utilization unknown: never guessed", vec![gpu(0, Some("p"), None)], 0),
            (
                "two idle GPUs of one namespace add up",
                vec![gpu(0, Some("p"), Some(0)), gpu(1, Some("q"), Some(50))],
                15_000,
            ),
        ];
        for (what, gpus, idle) in cases {
            let mut m = IdleMeter::new(60, 30);
            m.observe(1_000_000_020, &gpus);
            m.observe(1_000_000_030, &gpus);
            let lines = m.close(1_000_000_080);
            let got: u64 = lines.iter().map(|l| l.idle).sum();
            assert_eq!(got, idle, "{what}");
            assert!(m.close(i64::MAX).is_empty(), "{what}: everything was closed");
        }
    }

    #[test]
    fn windows_are_split_exactly_and_close_only_when_over() {
        let g = [gpu(0, Some("p"), Some(0))];
        let mut m = IdleMeter::new(60, 120);
        m.observe(1_000_000_000, &g); // window start 999_999_960
        m.observe(1_000_000_030, &g); // 30 s: 20 in the first window, 10 in the next
        assert_eq!(m.close(1_000_000_030), vec![line(999_999_960, 20_000)]);
        assert!(m.close(1_000_000_030).is_empty(), "a closed window is taken once");
        m.observe(1_000_000_075, &g); // 45 s more: the second window is now full
        assert!(m.close(1_000_000_075).is_empty(), "the second window ends at 1_000_000_080");
        m.observe(1_000_000_080, &g);
        assert_eq!(m.close(1_000_000_080), vec![line(1_000_000_020, 60_000)]);
    }

    #[test]
    fn a_stall_or_a_clock_going_back_charges_at_most_the_gap() {
        let g = [gpu(0, Some("p"), Some(0))];
        let mut m = IdleMeter::new(60, 30);
        m.observe(1_000_000_000, &g);
        m.observe(999_999_990, &g); // back: nothing
        m.observe(1_000_000_200, &g); // 200 s stall: 30 s charged, the last 30
        assert_eq!(m.close(i64::MAX), vec![line(1_000_000_140, 30_000)]);
    }
}
