//! In-cluster mode: the API server feeds every replica's caches, and the leader runs the queue.
//!
//! 1. **Watchers** with reflector stores for Nodes and Pods (and Gantry's Tenant, Cohort and
//!    GpuFlavor objects, and Namespaces' names and labels for tenants that select namespaces, when
//!    tenants come from the cluster), plus scheduler-plugins PodGroups for
//!    gang sizes, stripped of what Gantry does not
//!    read (managed fields, pod status beyond the phase, container commands, env and volumes) to
//!    keep memory small on large clusters.
//! 2. **Every event** is read once into a [`PodRecord`] (kept per `resourceVersion`, so rebuilds
//!    read no pod again) and updates this replica's extender cache, and the queue controller when this
//!    replica leads. Applying an event twice changes nothing, so a controller built from the
//!    stores while events flow misses nothing and counts nothing twice.
//! 3. **One leader** holds a Lease (see [`crate::lease`]). On becoming leader, whenever the tenants
//!    change, and after a watch had to relist, the controller is rebuilt from the stores alone:
//!    the restart path (admitted = ungated pods carrying Gantry's placement record).
//! 4. **Each cycle** (soon after a change, and at least every `cycle_every`) the leader runs one
//!    admission cycle and carries its actions out: ungates, evictions, and for waiting pods a
//!    condition and an Event only when what they say changed. Failed calls are retried.

use crate::adapter::{Adapter, MANAGER};
use crate::controller::{Action, Controller};
use crate::extender::Extender;
use crate::report::QuotaReport;
use crate::server::AppState;
use futures::StreamExt;
use gantry_api::crds::{ModelStatus, Tenant, TenantStatus};
use gantry_api::gang::{self, GangSpec};
use gantry_api::keys::ADMITTED_CONDITION;
use gantry_api::record::{AsRecord, PodRecord};
use gantry_api::tenants::{InvalidTenants, TenantObjects};
use gantry_api::watch::{follow, Change};
use gantry_core::model::{Cluster, PodRequest};
use gantry_core::queue::{Mode, Queue};
use gantry_core::tenancy::{Seconds, Settings, Tenancy};
use gantry_core::{PolicyKind, Scheduler};
use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a stopping leader waits for the API server to confirm the Lease's release.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// The shortest time between two reports to the quota API.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How long a pod whose eviction was refused (a PodDisruptionBudget allows no disruption now)
/// is no victim: the queue looks for other room meanwhile, then may ask again.
pub const EVICTION_BACKOFF: Seconds = 30;
use tokio::sync::Notify;

/// Where the tenants come from.
pub enum Tenants {
    /// A tenants file (development, or clusters that keep tenants in Git).
    File(Tenancy),
    /// The Tenant, Cohort and GpuFlavor objects, with cluster-wide settings from a file.
    Cluster(Settings),
}

/// How the in-cluster scheduler runs.
pub struct RunConfig {
    pub lease_namespace: String,
    pub lease_name: String,
    /// This replica's name in the Lease and in Events (the pod name).
    pub identity: String,
    pub tenants: Tenants,
    pub policy: PolicyKind,
    pub expected: Vec<PodRequest>,
    /// The longest time between admission cycles (time-based rules need cycles with no events).
    pub cycle_every: Duration,
    /// The quota API to send accruals and the view to (the leader only), if any, and the file
    /// holding the bearer token to send.
    pub quota_api: Option<(String, std::path::PathBuf)>,
}

/// What the leader reports to the quota API after a cycle ([`Live::report`]).
pub struct LeaderReport {
    pub view: gantry_api::view::View,
    pub records: Vec<gantry_api::quota::Record>,
    pub notebook_stops: Vec<gantry_api::quota::NotebookStopRecord>,
}

/// The reflector stores: what the API server has, as last seen.
#[derive(Clone)]
pub struct Stores {
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
    pub tenants: Option<TenantObjects>,
}

/// What the watchers and the control loop share.
pub struct Live {
    pub state: Arc<AppState>,
    /// The queue controller, while this replica leads.
    controller: Mutex<Option<Controller>>,
    /// Actions produced outside a cycle (a pod refused on arrival), for the next cycle.
    queued: Mutex<Vec<Action>>,
    /// Gang sizes from the frameworks' objects, by owner key (see [`gantry_api::gang`]).
    owners: Mutex<HashMap<String, Result<GangSpec, gang::GangError>>>,
    /// A watch relisted (deletions may have been missed): rebuild from the stores.
    relisted: AtomicBool,
    /// A Tenant, Cohort, GpuFlavor or Namespace event: rebuild only if the tenancy they define
    /// changed (the leader's own status writes change nothing it reads; a new namespace a
    /// tenant's selector matches does).
    tenants_changed: AtomicBool,
    /// The node and pod stores have listed and the cache was built from them: events before
    /// that are in the stores and need no handling of their own (nor error lines about nodes
    /// not seen yet).
    synced: AtomicBool,
    /// Usage records of a controller that was replaced, not yet sent.
    carried: Mutex<Vec<gantry_api::quota::Record>>,
    /// Pods whose eviction the API server refused, by uid: no victim before the time given.
    shields: Mutex<HashMap<String, Seconds>>,
    /// Pods as read once ([`PodRecord`]), by uid, with the `resourceVersion` they were read at:
    /// rebuilds take them from here rather than reading every stored pod again.
    records: Mutex<HashMap<String, (String, Arc<PodRecord>)>>,
    wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state is only changed through methods that leave it consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unix seconds: the queue's clock.
pub fn now() -> Seconds {
    jiff::Timestamp::now().as_second()
}

impl Live {
    pub fn new(state: Arc<AppState>) -> Arc<Live> {
        Arc::new(Live {
            state,
            controller: Mutex::new(None),
            queued: Mutex::new(Vec::new()),
            owners: Mutex::new(HashMap::new()),
            relisted: AtomicBool::new(false),
            tenants_changed: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            carried: Mutex::new(Vec::new()),
            shields: Mutex::new(HashMap::new()),
            records: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    /// Whether this replica runs the queue now.
    pub fn leading(&self) -> bool {
        lock(&self.controller).is_some()
    }

    /// A node was added or changed.
    pub fn node_applied(&self, node: &Value) {
        if !self.synced.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.state.extender().node_applied(node) {
            tracing::warn!("{e}");
        }
        if let Some(c) = lock(&self.controller).as_mut() {
            match c.node_applied(node, now()) {
                Ok(actions) => lock(&self.queued).extend(actions),
                Err(e) => tracing::warn!("queue: {e}"),
            }
        }
    }

    pub fn node_deleted(&self, name: &str) {
        if !self.synced.load(Ordering::SeqCst) {
            return;
        }
        self.state.extender().node_deleted(name);
        if let Some(c) = lock(&self.controller).as_mut() {
            c.node_deleted(name);
        }
    }

    /// `pod` as read once: the record read at its `resourceVersion`, else read now and kept.
    /// `None` (logged) for an object that cannot be turned into JSON, which never happens to
    /// one the API server sent.
    pub fn record(&self, pod: &Pod) -> Option<Arc<PodRecord>> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let version = pod.metadata.resource_version.clone().unwrap_or_default();
        if let Some((v, r)) = lock(&self.records).get(&uid) {
            if *v == version && !version.is_empty() {
                return Some(r.clone());
            }
        }
        let record = match to_value(pod) {
            Ok(v) => Arc::new(PodRecord::read(&v)),
            Err(e) => {
                tracing::warn!("{e}");
                return None;
            }
        };
        lock(&self.records).insert(uid, (version, record.clone()));
        Some(record)
    }

    /// The stored pods as records (see [`Live::record`]); records of pods the store no longer
    /// has (a relist can miss deletions) are dropped.
    fn records_of(&self, stores: &Stores) -> Vec<Arc<PodRecord>> {
        let records: Vec<Arc<PodRecord>> =
            stores.pods.state().iter().filter_map(|p| self.record(p)).collect();
        let kept: std::collections::HashSet<&str> = records.iter().map(|r| r.uid.as_str()).collect();
        lock(&self.records).retain(|uid, _| kept.contains(uid.as_str()));
        records
    }

    /// A pod was added or changed.
    pub fn pod_applied(&self, pod: &impl AsRecord, now: Seconds) {
        let pod = &*pod.record();
        if !self.synced.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.state.extender().pod_applied(pod) {
            tracing::warn!("{e}");
        }
        if let Some(c) = lock(&self.controller).as_mut() {
            let actions = c.pod_applied(pod, now);
            lock(&self.queued).extend(actions);
        }
    }

    pub fn pod_deleted(&self, uid: &str, now: Seconds) {
        lock(&self.records).remove(uid);
        if !self.synced.load(Ordering::SeqCst) {
            return;
        }
        self.state.extender().pod_deleted(uid);
        if let Some(c) = lock(&self.controller).as_mut() {
            c.pod_deleted(uid, now);
        }
    }

    /// A framework's object that sizes gangs was added or changed (`Some`) or deleted (`None`).
    /// An object whose counts make no sense is logged, naming it, and its gangs are refused.
    pub fn owner(&self, key: &str, spec: Option<Result<GangSpec, gang::GangError>>) {
        match &spec {
            Some(Err(e)) if lock(&self.owners).get(key) != spec.as_ref() => {
                tracing::warn!("{e}")
            }
            _ => {}
        }
        match spec.clone() {
            Some(s) => lock(&self.owners).insert(key.to_string(), s),
            None => lock(&self.owners).remove(key),
        };
        if let Some(c) = lock(&self.controller).as_mut() {
            match spec {
                Some(s) => {
                    let actions = c.owner_applied(key, s, now());
                    lock(&self.queued).extend(actions);
                }
                None => c.owner_deleted(key),
            }
        }
    }

    /// Builds this replica's extender cache from the stores (at start, and after a relist).
    /// The cache stays locked throughout, so an event that arrives meanwhile waits and is then
    /// applied to the new cache (applying one the snapshot already holds changes nothing).
    pub fn rebuild_cache(&self, stores: &Stores, policy: PolicyKind, expected: &[PodRequest]) {
        let mut guard = self.state.extender();
        let mut fresh =
            Extender::new(Cluster::default(), Scheduler::new(policy.build(&Cluster::default(), expected)));
        for node in stores.nodes.state() {
            match to_value(&*node).map(|v| fresh.node_applied(&v)) {
                Err(e) => tracing::warn!("{e}"),
                Ok(Err(e)) => tracing::warn!("{e}"),
                Ok(Ok(())) => {}
            }
        }
        // Fragmentation-aware scores are normalised by the largest node.
        fresh.set_scheduler(Scheduler::new(policy.build(fresh.cluster(), expected)));
        for pod in self.records_of(stores) {
            if let Err(e) = fresh.pod_applied(&pod) {
                tracing::warn!("{e}");
            }
        }
        *guard = fresh;
        self.synced.store(true, Ordering::SeqCst);
    }

    /// Builds the queue controller from the stores alone: the tenants as they are now, every
    /// node, then every pod (admitted workloads are taken back at their recorded placements).
    /// Like [`Live::rebuild_cache`], under the lock, so that no event falls between the stores'
    /// snapshot and the new controller.
    pub fn rebuild_controller(
        &self,
        stores: &Stores,
        config: &RunConfig,
        now: Seconds,
        cause: &str,
    ) -> Result<(), TenancyUnavailable> {
        let mut guard = lock(&self.controller);
        let tenancy = tenancy_now(stores, &config.tenants)?;
        self.state.metrics.rebuilds.with_label_values(&[cause]).inc();
        // What the replaced controller metered is closed and kept for the quota API.
        if let Some(old) = guard.as_mut() {
            old.close_accruals(now);
            let accruals = old.drain_accruals();
            let records = gantry_api::quota::records_of(&old.queue().tenancy, &accruals);
            lock(&self.carried).extend(records);
        }
        let scheduler =
            Scheduler::new(config.policy.build(self.state.extender().cluster(), &config.expected));
        let mut c =
            Controller::new(Queue::new_live(tenancy, Cluster::default(), scheduler, Mode::Quota, now));
        for node in stores.nodes.state() {
            // No gang is known yet, so adding nodes refuses nothing.
            match to_value(&*node).map(|v| c.node_applied(&v, now)) {
                Err(e) => tracing::warn!("queue: {e}"),
                Ok(Err(e)) => tracing::warn!("queue: {e}"),
                Ok(Ok(_)) => {}
            }
        }
        for (key, spec) in lock(&self.owners).iter() {
            c.owner_applied(key, spec.clone(), now);
        }
        let actions = c.rebuild(&self.records_of(stores), now);
        let mut shields = lock(&self.shields);
        shields.retain(|_, until| *until > now);
        for (uid, until) in shields.iter() {
            c.shield_pod(uid, *until);
        }
        drop(shields);
        *lock(&self.queued) = actions;
        *guard = Some(c);
        Ok(())
    }

    /// Evictions the API server refused at `now`: those pods stay, so kube-scheduler may not
    /// take them, and the queue (rebuilt by the caller, which takes them back as running) does
    /// not choose them again for [`EVICTION_BACKOFF`].
    pub fn evictions_refused(&self, uids: &[String], now: Seconds) {
        let mut extender = self.state.extender();
        let mut shields = lock(&self.shields);
        for uid in uids {
            extender.eviction_refused(uid);
            shields.insert(uid.clone(), now + EVICTION_BACKOFF);
        }
    }

    /// Stops running the queue (leadership lost).
    pub fn step_down(&self) {
        *lock(&self.controller) = None;
        lock(&self.queued).clear();
    }

    /// One admission cycle, when leading: the actions to carry out, and the metrics updated.
    pub fn cycle(&self, now: Seconds) -> Vec<Action> {
        let _span = tracing::debug_span!("admission_cycle", now).entered();
        let mut guard = lock(&self.controller);
        let Some(c) = guard.as_mut() else { return Vec::new() };
        let mut actions = std::mem::take(&mut *lock(&self.queued));
        actions.extend(c.reconcile(now));
        // The extender lets kube-scheduler take only the victims the queue itself evicts.
        let evicting: Vec<&str> = actions
            .iter()
            .filter_map(|a| if let Action::Evict { pod, .. } = a { Some(pod.uid.as_str()) } else { None })
            .collect();
        if !evicting.is_empty() {
            let mut extender = self.state.extender();
            for uid in evicting {
                extender.note_evicting(uid);
            }
        }
        self.state.metrics.record_cycle(c.queue(), &actions);
        actions
    }

    /// When leading: the view of the queue (running notebooks with their idle evidence), the
    /// usage records closed and the notebooks stopped since the last call, for the quota API. The
    /// records are taken even when nobody sends them.
    pub fn report(&self, now: Seconds) -> Option<LeaderReport> {
        let mut guard = lock(&self.controller);
        let c = guard.as_mut()?;
        let accruals = c.drain_accruals();
        let mut records = std::mem::take(&mut *lock(&self.carried));
        records.extend(gantry_api::quota::records_of(&c.queue().tenancy, &accruals));
        let mut view = gantry_api::view::View::of(c.queue(), now);
        for r in &mut view.running {
            r.idle_since = c.notebook_idle_since(r.id, now);
        }
        Some(LeaderReport { view, records, notebook_stops: c.drain_notebook_stops() })
    }

    /// A Tenant, Cohort, GpuFlavor or Namespace event arrived (any: the next cycle looks at what
    /// changed).
    pub fn tenant_objects_changed(&self) {
        self.tenants_changed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Takes a change of the tenant objects (a spec change, not a status write) into the
    /// running queue: in place when only quotas, limits, cohorts, weights, prices or timing
    /// changed; otherwise (tenants, namespaces, flavors or priority classes) `true`: the caller
    /// rebuilds. Clears the mark either way.
    pub fn take_tenancy_change(&self, stores: &Stores, tenants: &Tenants, now: Seconds) -> bool {
        if !self.tenants_changed.swap(false, Ordering::SeqCst) {
            return false;
        }
        let mut guard = lock(&self.controller);
        let Some(c) = guard.as_mut() else { return false };
        let tenancy = match tenancy_now(stores, tenants) {
            Ok(t) if t == c.queue().tenancy => return false,
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("{e}");
                return false;
            }
        };
        match c.update_tenancy(tenancy, now) {
            Ok(()) => {
                self.state.metrics.tenancy_updates.inc();
                tracing::info!("tenancy updated in place");
                false
            }
            Err(why) => {
                tracing::info!("{why}: the queue is rebuilt");
                true
            }
        }
    }

    /// Drops the closed usage records when there is no quota API to keep them.
    pub fn discard_accruals(&self) {
        lock(&self.carried).clear();
        if let Some(c) = lock(&self.controller).as_mut() {
            c.drain_accruals();
        }
    }

    /// Each tenant's status as `kubectl get tenants` shows it, when leading.
    pub fn tenant_statuses(&self) -> Vec<(String, TenantStatus)> {
        lock(&self.controller).as_ref().map_or_else(Vec::new, |c| tenant_statuses(c.queue()))
    }
}

/// GPUs (over every GPU flavor, and per flavor) used, nominal and borrowed, pending workloads,
/// and the namespaces in force, per tenant (conflicts come from the objects: [`with_conflicts`]).
pub fn tenant_statuses(queue: &Queue) -> Vec<(String, TenantStatus)> {
    let tenancy = &queue.tenancy;
    let gpus = |milli: i64| {
        let text = format!("{}.{:03}", milli / 1000, milli % 1000);
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    tenancy
        .tenants
        .iter()
        .enumerate()
        .map(|(t, tenant)| {
            let sum = |f: &dyn Fn(usize) -> i64| {
                (0..tenancy.flavors.len()).filter(|&f| !tenancy.flavors[f].is_cpu()).map(f).sum::<i64>()
            };
            let q = queue.quota();
            let models = (0..tenancy.flavors.len())
                .filter(|&f| !tenancy.flavors[f].is_cpu() && (q.nominal(t, f) > 0 || q.usage(t, f) > 0))
                .map(|f| ModelStatus {
                    name: tenancy.flavors[f].name.clone(),
                    used: gpus(q.usage(t, f) as i64),
                    nominal: gpus(q.nominal(t, f) as i64),
                    borrowed: gpus(q.borrowed(t, f) as i64),
                })
                .collect();
            let status = TenantStatus {
                gpus_used: Some(gpus(sum(&|f| q.usage(t, f) as i64))),
                gpus_nominal: Some(gpus(sum(&|f| q.nominal(t, f) as i64))),
                gpus_borrowed: Some(gpus(sum(&|f| q.borrowed(t, f) as i64))),
                pending_workloads: queue.pending_of(t) as i64,
                models,
                namespaces: tenant.namespaces.clone(),
                conflicts: Vec::new(),
            };
            (tenant.name.clone(), status)
        })
        .collect()
}

/// `statuses` with each tenant's namespace conflicts as the objects define them now (`matched`,
/// by tenant name): a conflict shows at once, even while the objects are otherwise invalid and
/// the last good tenancy stays in force.
pub fn with_conflicts(
    mut statuses: Vec<(String, TenantStatus)>,
    matched: &std::collections::BTreeMap<String, gantry_api::crds::Matched>,
) -> Vec<(String, TenantStatus)> {
    for (name, status) in &mut statuses {
        if let Some(m) = matched.get(name) {
            status.conflicts = m.conflicts.clone();
        }
    }
    statuses
}

/// An object from the API server that cannot be turned into JSON to read (never seen: kube-rs
/// decoded it from JSON).
#[derive(Debug, thiserror::Error)]
#[error("cannot read an object from the API server: {0}")]
pub struct Unreadable(#[source] serde_json::Error);

fn to_value<T: serde::Serialize>(o: &T) -> Result<Value, Unreadable> {
    serde_json::to_value(o).map_err(Unreadable)
}

/// Why the tenancy cannot be had now: the queue keeps the last good one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenancyUnavailable {
    #[error(transparent)]
    Invalid(#[from] InvalidTenants),
    #[error("tenants come from the cluster but their objects are not watched")]
    NotWatched,
}

/// Why the in-cluster scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("a watcher stopped before listing: {0}")]
    WatcherStopped(#[source] reflector::store::WriterDropped),
    #[error("leader election stopped; exiting so that another replica takes over")]
    ElectionStopped,
}

/// The tenancy from its source as it is now.
fn tenancy_now(stores: &Stores, tenants: &Tenants) -> Result<Tenancy, TenancyUnavailable> {
    match (tenants, &stores.tenants) {
        (Tenants::File(t), _) => Ok(t.clone()),
        (Tenants::Cluster(settings), Some(objects)) => Ok(objects.tenancy(settings)?),
        (Tenants::Cluster(_), None) => Err(TenancyUnavailable::NotWatched),
    }
}

/// Drops what Gantry never reads from a pod, so that the store stays small.
fn strip_pod(pod: &mut Pod) {
    pod.managed_fields_mut().clear();
    if let Some(status) = pod.status.take() {
        // Gantry's own condition stays: its transition time is kept when the status is the same.
        let ours = status
            .conditions
            .map(|c| c.into_iter().filter(|c| c.type_ == ADMITTED_CONDITION).collect::<Vec<_>>())
            .filter(|c| !c.is_empty());
        pod.status = Some(PodStatus { phase: status.phase, conditions: ours, ..Default::default() });
    }
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            c.command = None;
            c.args = None;
            c.env = None;
            c.env_from = None;
            c.volume_mounts = None;
            c.liveness_probe = None;
            c.readiness_probe = None;
            c.startup_probe = None;
        }
    }
}

/// Follows `api` into `writer`'s store and hands each applied (`Ok`) or deleted (`Err`) object
/// to `apply`; a relist marks the state for a rebuild (deletions may have been missed). Every
/// change wakes the control loop.
fn spawn_follow<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    strip: fn(&mut K),
    live: &Arc<Live>,
    apply: fn(&Live, Result<K, K>),
) where
    K: Resource + Clone + Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let l = live.clone();
    tokio::spawn(follow(api, writer, strip).for_each(move |change| {
        match change {
            Change::Applied(o) => apply(&l, Ok(o)),
            Change::Deleted(o) => apply(&l, Err(o)),
            Change::Listed(relist) => {
                if relist {
                    l.relisted.store(true, Ordering::SeqCst);
                }
            }
        }
        l.wake.notify_one();
        std::future::ready(())
    }));
}

/// Starts the watchers; returns the stores (ready once each has listed).
pub fn watch(client: &Client, live: &Arc<Live>, from_cluster: bool) -> Stores {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    spawn_follow(
        Api::<Node>::all(client.clone()),
        node_writer,
        |n| n.managed_fields_mut().clear(),
        live,
        |l, n| match n {
            Ok(n) => {
                if let Ok(v) = to_value(&n) {
                    l.node_applied(&v);
                }
            }
            Err(n) => l.node_deleted(&n.name_any()),
        },
    );
    spawn_follow(Api::<Pod>::all(client.clone()), pod_writer, strip_pod, live, |l, p| match p {
        Ok(p) => {
            if let Some(r) = l.record(&p) {
                l.pod_applied(&r, now());
            }
        }
        Err(p) => l.pod_deleted(&p.uid().unwrap_or_default(), now()),
    });
    // Gang sizes from the frameworks' objects, for the kinds the API server serves.
    tokio::spawn(follow_frameworks(client.clone(), live.clone()));
    let l = live.clone();
    let tenants = from_cluster.then(|| {
        // A change to a tenant, cohort, flavor or namespace is looked at in the next cycle: the
        // queue is rebuilt only if the tenancy they define changed.
        TenantObjects::watch(client, move || l.tenant_objects_changed())
    });
    Stores { nodes, pods, tenants }
}

/// How often the API server is asked again for frameworks it did not serve (a CRD installed
/// after Gantry started is followed from then on).
const DISCOVER_EVERY: Duration = Duration::from_secs(60);

/// Follows the objects of every framework in [`gang::FRAMEWORKS`] that the API server serves,
/// found by discovery and looked for again every [`DISCOVER_EVERY`]: each object's gang size goes
/// to [`Live::owner`]. Only the size is kept, never the object.
async fn follow_frameworks(client: Client, live: Arc<Live>) {
    let mut followed: Vec<&'static gang::Framework> = Vec::new();
    loop {
        // Resources per group and version, asked once a round.
        let mut served: HashMap<String, Vec<String>> = HashMap::new();
        for &f in gang::FRAMEWORKS.iter() {
            if followed.contains(&f) {
                continue;
            }
            if let Some(version) = served_version(&client, f, &mut served).await {
                followed.push(f);
                tokio::spawn(follow_framework(client.clone(), live.clone(), f, version));
            }
        }
        if followed.len() == gang::FRAMEWORKS.len() {
            return;
        }
        tokio::time::sleep(DISCOVER_EVERY).await;
    }
}

/// The first of `f`'s versions whose resource the API server serves (`served` keeps what each
/// group and version was found to serve, so each is asked once).
async fn served_version(
    client: &Client,
    f: &gang::Framework,
    served: &mut HashMap<String, Vec<String>>,
) -> Option<&'static str> {
    for &version in f.versions {
        let gv = format!("{}/{version}", f.group);
        if !served.contains_key(&gv) {
            let names = match client.list_api_group_resources(&gv).await {
                Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
                Err(_) => Vec::new(),
            };
            served.insert(gv.clone(), names);
        }
        if served[&gv].iter().any(|r| r == f.plural) {
            return Some(version);
        }
    }
    None
}

/// Watches one framework's objects. After each (re)list, objects no longer there are forgotten.
async fn follow_framework(
    client: Client,
    live: Arc<Live>,
    f: &'static gang::Framework,
    version: &'static str,
) {
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(f.group, version, f.kind),
        f.plural,
    );
    let api = Api::<kube::api::DynamicObject>::all_with(client, &resource);
    let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut listing: std::collections::HashSet<String> = std::collections::HashSet::new();
    let key_of =
        |o: &kube::api::DynamicObject| gang::owner_key(f, &o.namespace().unwrap_or_default(), &o.name_any());
    let read = |o: &kube::api::DynamicObject| match serde_json::to_value(o) {
        Ok(v) => gang::read(f, &v),
        Err(e) => Err(gang::GangError::Unreadable {
            owner: format!("{} {}/{}", f.kind, o.namespace().unwrap_or_default(), o.name_any()),
            problem: e.to_string(),
        }),
    };
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(o)) => {
                listing.insert(key_of(&o));
                live.owner(&key_of(&o), Some(read(&o)));
            }
            Ok(watcher::Event::InitDone) => {
                for gone in known.difference(&listing) {
                    live.owner(gone, None);
                }
                known = std::mem::take(&mut listing);
            }
            Ok(watcher::Event::Apply(o)) => {
                known.insert(key_of(&o));
                live.owner(&key_of(&o), Some(read(&o)));
            }
            Ok(watcher::Event::Delete(o)) => {
                known.remove(&key_of(&o));
                live.owner(&key_of(&o), None);
            }
            Err(e) => {
                tracing::warn!("watching {} ({}/{version}): {e}; retrying", f.kind, f.group)
            }
        }
        live.wake.notify_one();
    }
}

/// Carries actions out, saying each waiting pod's message once, and retrying failed calls.
struct Executor {
    adapter: Adapter,
    /// Pod UID → the last message said to it.
    said: HashMap<String, String>,
    /// Calls that failed, with the attempts left.
    retry: Vec<(Action, u32)>,
    /// Tenant objects' status as last written (only when tenants come from the cluster).
    statuses: Option<(Api<Tenant>, HashMap<String, TenantStatus>)>,
}

impl Executor {
    /// Writes each Tenant's status subresource when it changed (merge patch; the printer
    /// columns of `kubectl get tenants` read it). A namespace conflict is logged when it first
    /// shows.
    async fn publish(&mut self, statuses: Vec<(String, TenantStatus)>) {
        let Some((api, last)) = self.statuses.as_mut() else { return };
        for (name, status) in statuses {
            if last.get(&name) == Some(&status) {
                continue;
            }
            let before = last.get(&name).map(|s| s.conflicts.as_slice()).unwrap_or_default();
            for c in status.conflicts.iter().filter(|c| !before.contains(c)) {
                tracing::warn!("Tenant {name}: {c}");
            }
            let patch = status_patch(&status);
            match api
                .patch_status(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    last.insert(name, status);
                }
                Err(e) => tracing::warn!("cannot write the status of Tenant {name}: {e}"),
            }
        }
    }

    /// Carries out one cycle's actions (and those to retry); the uids of pods whose eviction
    /// the API server refused.
    async fn run(&mut self, actions: Vec<Action>, pods: &Store<Pod>) -> Vec<String> {
        let mut todo: Vec<(Action, u32)> = std::mem::take(&mut self.retry);
        for a in actions {
            match &a {
                Action::Pending { pod, message } | Action::Refused { pod, message } => {
                    if self.said.get(&pod.uid) == Some(message) {
                        continue;
                    }
                    self.said.insert(pod.uid.clone(), message.clone());
                }
                Action::Ungate { pod, .. }
                | Action::Release { pod, .. }
                | Action::Evict { pod, .. }
                | Action::StopNotebook { pod, .. } => {
                    self.said.remove(&pod.uid);
                }
            }
            todo.push((a, 5));
        }
        // A pod the API server no longer has needs nothing more; the others' condition status, so
        // that its transition time moves only when the status does.
        let present: HashMap<String, Option<String>> = pods
            .state()
            .iter()
            .filter_map(|p| {
                let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
                let status = conditions
                    .and_then(|c| c.iter().find(|c| c.type_ == ADMITTED_CONDITION))
                    .map(|c| c.status.clone());
                Some((p.uid()?, status))
            })
            .collect();
        todo.retain(|(a, _)| present.contains_key(&pod_of(a).uid));
        self.said.retain(|uid, _| present.contains_key(uid));
        // Evictions first: the work they make room for is let in only once they are done. An
        // eviction refused (a PodDisruptionBudget, say) leaves its pod running while the queue
        // counts it gone, so that cycle's admissions are held back and the caller rebuilds the
        // queue from the API server, where the pod still runs and the other work still waits.
        let (evictions, rest): (Vec<_>, Vec<_>) =
            todo.into_iter().partition(|(a, _)| matches!(a, Action::Evict { .. }));
        let mut refused = Vec::new();
        for (result, action, _) in self.apply(evictions, &present).await {
            match result {
                Err(e) if e.eviction_refused() => {
                    tracing::warn!(
                        "{e}; the queue is rebuilt from the API server, and what it was evicted for waits"
                    );
                    refused.push(pod_of(&action).uid.clone());
                }
                // The pod is gone, or only its Event was not written.
                Err(e) => tracing::warn!("{e}"),
                Ok(()) => {}
            }
        }
        let rest = rest
            .into_iter()
            .filter(|(a, _)| refused.is_empty() || !matches!(a, Action::Ungate { .. }))
            .collect();
        for (result, action, left) in self.apply(rest, &present).await {
            if let Err(e) = result {
                tracing::warn!("{e}");
                if left > 1 {
                    self.retry.push((action, left - 1));
                } else if let Action::Pending { pod, .. } | Action::Refused { pod, .. } = &action {
                    // Say it again next time.
                    self.said.remove(&pod.uid);
                }
            }
        }
        refused
    }

    /// Carries out actions, 16 at a time; each with its result and its tries left.
    async fn apply(
        &self,
        todo: Vec<(Action, u32)>,
        present: &HashMap<String, Option<String>>,
    ) -> Vec<(Result<(), crate::adapter::AdapterError>, Action, u32)> {
        let adapter = &self.adapter;
        futures::stream::iter(todo)
            .map(|(a, left)| async move {
                let was = present.get(&pod_of(&a).uid).cloned().flatten();
                (adapter.apply_to(&a, was.as_deref()).await, a, left)
            })
            .buffer_unordered(16)
            .collect()
            .await
    }
}

/// The merge patch that makes a Tenant's status `status`: a list now empty is sent as null, so
/// that the API server drops the old one (a merge patch keeps what it does not name).
fn status_patch(status: &TenantStatus) -> Value {
    let mut patch = serde_json::json!({"status": status});
    if let Some(fields) = patch["status"].as_object_mut() {
        for key in ["models", "namespaces", "conflicts"] {
            fields.entry(key).or_insert(Value::Null);
        }
    }
    patch
}

fn pod_of(a: &Action) -> &crate::controller::PodRef {
    match a {
        Action::Ungate { pod, .. }
        | Action::Release { pod, .. }
        | Action::Evict { pod, .. }
        | Action::Pending { pod, .. }
        | Action::Refused { pod, .. }
        | Action::StopNotebook { pod, .. } => pod,
    }
}

/// Runs the in-cluster scheduler until `shutdown`: watchers, leader election, admission cycles.
/// The extender is served separately from the same [`AppState`].
/// The API clients of a scheduler in cluster mode.
pub struct Clients {
    /// Lists, watches, the Lease, patches and Events; kube-rs retries 429, 503 and 504 for them.
    pub main: Client,
    /// Evictions alone, without retries (see [`Adapter::with_eviction_client`]).
    pub evictions: Client,
}

impl Clients {
    /// Both from the environment (in-cluster service account, or `KUBECONFIG`).
    pub async fn infer() -> Result<Clients, kube::Error> {
        let config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
        let main = Client::try_from(config.clone())?;
        let mut once = config;
        once.default_retry = false;
        let evictions = Client::try_from(once)?;
        Ok(Clients { main, evictions })
    }
}

pub async fn run(
    clients: Clients,
    live: Arc<Live>,
    config: RunConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let client = clients.main;
    let stores = watch(&client, &live, matches!(config.tenants, Tenants::Cluster(_)));
    let ready = async {
        stores.nodes.wait_until_ready().await?;
        stores.pods.wait_until_ready().await?;
        if let Some(objects) = &stores.tenants {
            objects.wait_until_ready().await?;
        }
        Ok::<(), reflector::store::WriterDropped>(())
    };
    tokio::pin!(shutdown);
    tokio::select! {
        r = ready => r.map_err(RunError::WatcherStopped)?,
        () = &mut shutdown => return Ok(()),
    }
    live.rebuild_cache(&stores, config.policy, &config.expected);
    live.state.set_ready(true);
    tracing::info!("caches ready: {} nodes, {} pods", stores.nodes.state().len(), stores.pods.state().len());

    let elector = crate::lease::Elector::new(
        Api::namespaced(client.clone(), &config.lease_namespace),
        &config.lease_name,
        &config.identity,
    );
    let (stop_election, election_stops) = tokio::sync::watch::channel(false);
    let (mut leader, lease_task) = elector.spawn(election_stops);
    let statuses = matches!(config.tenants, Tenants::Cluster(_))
        .then(|| (Api::<Tenant>::all(client.clone()), HashMap::new()));
    let mut executor = Executor {
        adapter: Adapter::new(client, Some(config.identity.clone())).with_eviction_client(clients.evictions),
        said: HashMap::new(),
        retry: Vec::new(),
        statuses,
    };
    // Whether this replica has led before (a rebuild then is for a new leadership, not the start).
    let mut started = false;
    // The last reason the tenants could not be read.
    let mut invalid = None;
    // An eviction was refused: the queue's state is not the cluster's.
    let mut resync = false;
    let mut quota = config
        .quota_api
        .as_ref()
        .map(|(url, token)| (QuotaReport::new(url, token.clone()), String::new(), Instant::now()));
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            changed = leader.changed() => {
                if changed.is_err() {
                    return Err(RunError::ElectionStopped);
                }
            }
            () = live.wake.notified() => {}
            () = tokio::time::sleep(config.cycle_every) => {}
        }
        let leads = *leader.borrow();
        live.state.metrics.leader.set(i64::from(leads));
        let relisted = live.relisted.swap(false, Ordering::SeqCst);
        if relisted {
            live.rebuild_cache(&stores, config.policy, &config.expected);
        }
        if !leads {
            if live.leading() {
                tracing::warn!("{} lost the lease; no longer admitting", config.identity);
                live.step_down();
            }
            continue;
        }
        let cause = if !live.leading() {
            Some(if started { "leader" } else { "start" })
        } else if relisted {
            Some("relist")
        } else if std::mem::take(&mut resync) {
            Some("eviction")
        } else if live.take_tenancy_change(&stores, &config.tenants, now()) {
            Some("tenants")
        } else {
            None
        };
        if let Some(cause) = cause {
            started = true;
            match live.rebuild_controller(&stores, &config, now(), cause) {
                Ok(()) => {
                    invalid = None;
                    tracing::info!("{} leads; queue rebuilt from the API server ({cause})", config.identity)
                }
                Err(e) => {
                    // Said once, not every cycle, until it changes.
                    if invalid.as_ref() != Some(&e) {
                        tracing::warn!("{e}");
                        invalid = Some(e);
                    }
                    if !live.leading() {
                        continue;
                    }
                }
            }
        }
        let actions = live.cycle(now());
        let refused = executor.run(actions, &stores.pods).await;
        if !refused.is_empty() {
            live.evictions_refused(&refused, now());
            resync = true;
        }
        let statuses = match &stores.tenants {
            Some(objects) => with_conflicts(live.tenant_statuses(), &objects.matched()),
            None => live.tenant_statuses(),
        };
        executor.publish(statuses).await;
        // The quota API hears from the leader at most every few seconds.
        match quota.as_mut() {
            Some((report, said, last)) if last.elapsed() >= REPORT_EVERY => {
                *last = Instant::now();
                if let Some(LeaderReport { view, records, notebook_stops }) = live.report(now()) {
                    match report.send(&view, records).await {
                        Ok(()) => said.clear(),
                        Err(e) if e.to_string() != *said => {
                            tracing::warn!("{e}; {} usage records kept for the next try", report.pending());
                            *said = e.to_string();
                        }
                        Err(_) => {}
                    }
                    if let Err(e) = report.send_notebook_stops(notebook_stops).await {
                        tracing::warn!("{e}");
                    }
                }
            }
            Some(_) => {}
            None => live.discard_accruals(),
        }
        // Let events gather a little before the next cycle.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stop admitting, then release the Lease and wait for the API server's answer, so another
    // replica takes over at once rather than at expiry.
    live.step_down();
    let _ = stop_election.send(true);
    match tokio::time::timeout(RELEASE_WAIT, lease_task).await {
        Ok(Ok(Ok(()))) => tracing::info!("{} released the lease", config.identity),
        Ok(Ok(Err(e))) => {
            tracing::warn!("cannot release the lease ({e}); another replica takes over at its expiry")
        }
        Ok(Err(_)) | Err(_) => tracing::warn!(
            "the lease release got no answer in {RELEASE_WAIT:?}; another replica takes over at its expiry"
        ),
    }
    tracing::info!("{MANAGER} stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_patch_clears_lists_now_empty() {
        let status = TenantStatus {
            namespaces: vec!["alice".into()],
            conflicts: Vec::new(),
            pending_workloads: 2,
            ..TenantStatus::default()
        };
        assert_eq!(
            status_patch(&status),
            serde_json::json!({"status": {"pendingWorkloads": 2, "namespaces": ["alice"], "models": null, "conflicts": null}})
        );
    }
}
