//! The agent: a sampling thread, the state it feeds, and the HTTP service over that state.
//!
//! 1. **Sample**: one thread owns the GPU source (NVML handles are not `Send`) and takes a pass
//!    every interval, handing each frame to the async side.
//! 2. **Judge**: [`State::take`] updates health, XID counts and the latest frame.
//! 3. **Attribute**: who holds each GPU, from the kubelet's pod-resources socket (when present).
//! 4. **Publish**: the Node inventory and which pods' GPUs sit idle since when
//!    ([`crate::idle_since`], confirmed every minute while any pod is idle), patched only on
//!    change ([`crate::inventory::Publisher`]).
//! 5. **Serve**: `/metrics`, `/v1/gpus` (inventory and health), `/v1/utilization` (per-pod GPU
//!    use for the quota API's idle-but-allocated cost), `/healthz`, `/readyz` (after the first pass).

use crate::health::{Tracker, Transition};
use crate::idle_since::IdleSince;
use crate::inventory::{desired, Desired};
use crate::metrics::{render, Options, Owners, Snapshot};
use crate::sample::Frame;
use crate::source::{GpuSource, OpenError, SampleError};
use axum::extract::State as Axum;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the agent knows, as of the last pass.
#[derive(Default)]
pub struct State {
    pub frame: Frame,
    pub health: Tracker,
    /// XID events since start, by (uuid, xid).
    pub xids: BTreeMap<(String, u64), u64>,
    pub last_xid: HashMap<String, u64>,
    pub owners: Owners,
    pub driver_version: Option<String>,
    /// Unix seconds of the last pass; 0 before the first.
    pub taken_at: i64,
    pub passes: u64,
    /// Which pods' GPUs have been idle since when (`gantry.dev/gpu-idle-pods`).
    pub idle_since: IdleSince,
}

impl State {
    /// Takes in one pass at `now` (unix seconds); returns the health changes.
    pub fn take(&mut self, frame: Frame, now: i64) -> Vec<Transition> {
        for x in &frame.xids {
            *self.xids.entry((x.uuid.clone(), x.xid)).or_default() += 1;
            self.last_xid.insert(x.uuid.clone(), x.xid);
        }
        let changes = self.health.observe(&frame, now);
        self.frame = frame;
        self.taken_at = now;
        self.passes += 1;
        changes
    }

    pub fn metrics(&self, options: &Options) -> String {
        let snapshot = Snapshot {
            frame: &self.frame,
            health: &self.health,
            xids: &self.xids,
            last_xid: &self.last_xid,
            owners: &self.owners,
            driver_version: self.driver_version.as_deref(),
            taken_at: self.taken_at,
        };
        render(&snapshot, options)
    }

    pub fn inventory(&self) -> Desired {
        desired(&self.frame, &self.health)
    }

    /// Everything the agent writes on its Node: the inventory and the idle pods.
    pub fn node_desired(&self) -> Desired {
        let mut d = self.inventory();
        d.annotations.extend(self.idle_since.desired());
        d
    }

    /// Feeds the pass at `now` to the idle tracker, after [`State::take`] and the owners' update.
    /// `attributed`: whether `owners` is known for this pass (false when pod-resources failed:
    /// the tracker then forgets everything, see [`crate::idle_since`]). Returns whether the idle
    /// pods changed.
    pub fn observe_idle(&mut self, now: i64, attributed: bool) -> bool {
        if !attributed {
            return self.idle_since.forget();
        }
        let held = self.held_gpus();
        self.idle_since.observe(now, &held)
    }

    /// Every device a pod holds, with its utilization at this pass: the sampled GPUs, plus
    /// devices the kubelet assigned that this pass has no utilization for (a MIG slice, a GPU
    /// gone from the frame), with `None`, so that their pods are never taken for idle.
    pub fn held_gpus(&self) -> Vec<GpuUse> {
        let mut gpus: Vec<GpuUse> =
            self.utilization("").gpus.into_iter().filter(|g| g.pod.is_some()).collect();
        let mut unsampled: Vec<(&String, &(String, String, String))> = self
            .owners
            .iter()
            .filter(|(uuid, _)| !self.frame.gpus.iter().any(|g| &g.uuid == *uuid))
            .collect();
        unsampled.sort();
        for (uuid, (namespace, pod, container)) in unsampled {
            gpus.push(GpuUse {
                index: u32::MAX,
                uuid: uuid.clone(),
                model: String::new(),
                namespace: Some(namespace.clone()),
                pod: Some(pod.clone()),
                container: Some(container.clone()),
                utilization_percent: None,
                memory_used_bytes: None,
                memory_total_bytes: None,
            });
        }
        gpus
    }

    /// Each GPU's use and who holds it: what the quota API charges as idle-but-allocated.
    pub fn utilization(&self, node: &str) -> Utilization {
        let gpus = self
            .frame
            .gpus
            .iter()
            .map(|g| {
                let owner = self.owners.get(&g.uuid);
                GpuUse {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    model: g.model.clone(),
                    namespace: owner.map(|o| o.0.clone()),
                    pod: owner.map(|o| o.1.clone()),
                    container: owner.map(|o| o.2.clone()),
                    utilization_percent: g.gpu_utilization_percent,
                    memory_used_bytes: g.memory_used_bytes,
                    memory_total_bytes: g.memory_total_bytes,
                }
            })
            .collect();
        Utilization { node: node.to_string(), taken_at: self.taken_at, gpus }
    }
}

/// `GET /v1/utilization`.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Utilization {
    pub node: String,
    pub taken_at: i64,
    pub gpus: Vec<GpuUse>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GpuUse {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    /// The pod holding the GPU (from pod-resources); absent when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub utilization_percent: Option<u32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
}

/// The shared state and how it is shown.
pub struct Shared {
    pub state: Mutex<State>,
    pub options: Options,
}

impl Shared {
    pub fn new(options: Options) -> Arc<Shared> {
        Arc::new(Shared { state: Mutex::new(State::default()), options })
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state leaves it consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sampling passes as they arrive.
pub type Frames = mpsc::Receiver<Sampled>;

/// One sampling pass: when it was taken and what it found (a pass's error is for that pass only).
/// The time is the pass's own, not when the agent got to it: passes wait in the channel while the
/// agent is busy (a slow API server), and idle evidence must never look more recent than it is.
#[derive(Debug)]
pub struct Sampled {
    /// Unix seconds at the end of the pass.
    pub at: i64,
    pub frame: Result<Frame, SampleError>,
}

/// Why [`start_sampler`] could not start sampling: the agent stops with it before serving.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// The source could not be opened (NVML cannot load, the capture cannot be read).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The operating system would not start the thread.
    #[error("cannot start the sampling thread: {source}")]
    Spawn {
        #[source]
        source: std::io::Error,
    },
    /// The thread ended before saying whether its source opened (it panicked).
    #[error("the sampling thread stopped before starting")]
    Stopped,
}

/// Starts the sampling thread. `make` builds the source on that thread (NVML handles must stay on
/// the thread that made them); its error (NVML cannot load) is returned here, before anything is
/// served. Frames (or a pass's error) arrive on the channel every `interval`; the thread ends when
/// the receiver is dropped.
pub fn start_sampler<F>(make: F, interval: Duration) -> Result<(Frames, Option<String>), SamplerError>
where
    F: FnOnce() -> Result<Box<dyn GpuSource>, OpenError> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("gpu-sampler".into())
        .spawn(move || {
            let mut source = match make() {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(source.driver_version()));
            let mut next = std::time::Instant::now();
            loop {
                let frame = source.sample();
                if tx.blocking_send(Sampled { at: now(), frame }).is_err() {
                    return;
                }
                next += interval;
                let now = std::time::Instant::now();
                match next.checked_duration_since(now) {
                    Some(wait) => std::thread::sleep(wait),
                    // A pass took longer than the interval: start the next one now, without a burst.
                    None => next = now,
                }
            }
        })
        .map_err(|source| SamplerError::Spawn { source })?;
    let driver = ready_rx.recv().map_err(|_| SamplerError::Stopped)??;
    Ok((rx, driver))
}

/// The HTTP routes over `shared`; `node` names the node in `/v1/utilization`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/gpus", get(gpus))
        .route("/v1/utilization", get(utilization))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(shared)
}

async fn metrics(Axum(shared): Axum<Arc<Shared>>) -> Response {
    let text = shared.lock().metrics(&shared.options);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write JSON: {e}\n")).into_response(),
    }
}

async fn gpus(Axum(shared): Axum<Arc<Shared>>) -> Response {
    let inventory = shared.lock().inventory();
    let text = inventory
        .annotations
        .get(gantry_api::keys::GPU_INVENTORY_ANNOTATION)
        .cloned()
        .flatten()
        .unwrap_or_else(|| "{\"gpus\":[]}".into());
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn utilization(Axum(shared): Axum<Arc<Shared>>) -> Response {
    let u = shared.lock().utilization(&shared.options.node);
    json(&u)
}

async fn readyz(Axum(shared): Axum<Arc<Shared>>) -> Response {
    match shared.lock().passes {
        0 => (StatusCode::SERVICE_UNAVAILABLE, "no sampling pass yet\n").into_response(),
        _ => "ok\n".into_response(),
    }
}

/// Where the agent's outputs go besides HTTP.
pub struct Outputs {
    /// Writes the inventory on the Node (in a cluster).
    pub publisher: Option<crate::inventory::Publisher>,
    /// The kubelet's pod-resources socket, for attribution.
    pub pod_resources: Option<std::path::PathBuf>,
    /// Print the inventory to stdout when it changes (no cluster needed).
    pub print_inventory: bool,
    /// Meter idle-but-allocated time and hand each closed window's lines to the sender
    /// ([`crate::idle::send`]).
    pub idle: Option<(crate::idle::IdleMeter, mpsc::Sender<Vec<gantry_api::quota::IdleLine>>)>,
}

/// Unix seconds now.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Takes frames in until the sampler stops or `shutdown` resolves: steps 2-4 of the cycle.
pub async fn run(
    shared: Arc<Shared>,
    mut frames: Frames,
    mut out: Outputs,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut printed: Option<Desired> = None;
    let mut said = String::new();
    loop {
        let Sampled { at, frame } = tokio::select! {
            () = &mut shutdown => return,
            f = frames.recv() => match f {
                Some(f) => f,
                None => return,
            },
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("sampling failed: {e}");
                continue;
            }
        };
        let owners = match &out.pod_resources {
            Some(socket) => match crate::podresources::list(socket, Duration::from_secs(1)).await {
                Ok(a) => Some(crate::podresources::gpu_owners(&a)),
                Err(e) => {
                    // Said once per distinct problem, not every second.
                    let text = e.to_string();
                    if text != said {
                        tracing::warn!("no pod attribution: {text}");
                        said = text;
                    }
                    None
                }
            },
            None => None,
        };
        let on_node = {
            let mut state = shared.lock();
            for t in state.take(frame, at) {
                tracing::info!(
                    "GPU {} ({}): {} -> {}: {}",
                    t.index,
                    t.uuid,
                    t.from.name(),
                    t.to.name(),
                    t.reason
                );
            }
            // Without the socket configured the agent attributes no GPU to any pod, so no pod is
            // idle; a failed call leaves this pass's holders unknown, which forgets the idle pods.
            let attributed = owners.is_some() || out.pod_resources.is_none();
            if let Some(o) = owners {
                state.owners = o;
            }
            if state.observe_idle(at, attributed) {
                tracing::debug!("idle GPU pods now: {:?}", state.idle_since.idle());
            }
            if let Some((meter, tx)) = out.idle.as_mut() {
                meter.observe(at, &state.utilization(&shared.options.node).gpus);
                let lines = meter.close(at);
                if !lines.is_empty() && tx.try_send(lines).is_err() {
                    tracing::warn!("the idle-time sender is stuck; a window's lines were dropped");
                }
            }
            state.node_desired()
        };
        // Printed when the inventory itself changed, not on every idle transition.
        let inventory = out.print_inventory.then(|| {
            let mut d = on_node.clone();
            d.annotations.remove(gantry_api::keys::GPU_IDLE_PODS_ANNOTATION);
            d.annotations.remove(gantry_api::keys::GPU_IDLE_CHECKED_AT_ANNOTATION);
            d
        });
        if let Some(inventory) = inventory.filter(|i| printed.as_ref() != Some(i)) {
            if let Some(Some(text)) = inventory.annotations.get(gantry_api::keys::GPU_INVENTORY_ANNOTATION) {
                println!("{text}");
            }
            printed = Some(inventory);
        }
        if let Some(p) = out.publisher.as_mut() {
            if let Err(e) = p.publish(&on_node).await {
                tracing::warn!("{e}; retrying with backoff");
            }
        }
    }
}
