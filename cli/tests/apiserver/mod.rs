//! An API-server-shaped test server: enough of the Kubernetes API, over real HTTP on loopback,
//! for the real `gantry scheduler` to run against in cluster mode (kube-rs client, kube-runtime
//! watchers and event recorder, leader election over a coordination.k8s.io Lease), with a record
//! of every request it made.
//!
//! - **Store**: objects by (group/version/resource, namespace, name), with a global
//!   `resourceVersion` counter, `uid` and `creationTimestamp` set on create.
//! - **Reads**: get, list (a `…List` with `metadata.resourceVersion`), watch (a chunked stream of
//!   JSON lines `{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": …}` from the given
//!   `resourceVersion`, ending after `timeoutSeconds`, with bookmarks when asked for).
//!   [`ApiServer::expire_watches`] ends every open watch with the `410 Expired` ERROR event a
//!   compacted etcd causes and refuses watches from older versions, so clients relist.
//! - **Writes**: create (409 AlreadyExists), replace (409 Conflict on a stale
//!   `metadata.resourceVersion`), merge, strategic-merge, JSON and apply patches (see [`patch`];
//!   apply keeps field owners and answers 409 Conflict like the real one), status subresources
//!   (writes to the object leave its status alone and the other way round), delete, and the
//!   Eviction subresource of pods (which deletes the pod, unless a PodDisruptionBudget that
//!   selects it by `matchLabels` allows no disruption: 429, as the API server answers).
//! - **Pods**: scheduling gates may be removed but never added, the rest of a pod's spec never
//!   changes (422 Invalid, as the API server says); a pod with gates is never bound. A fake
//!   kube-scheduler and kubelet ([`ApiServer::binds`]) binds each ungated pod to the node of its
//!   `gantry.dev/placement` annotation and marks it Running.
//! - **Authentication and RBAC**: one bearer token, the scheduler's service account, allowed
//!   exactly what `deploy/scheduler/rbac.yaml` grants it ([`rbac`]); 401 and 403 otherwise.
//! - **Discovery**: `/api`, `/apis`, `/api/v1`, `/apis/GROUP/VERSION` for what is served (404 for
//!   the rest), and `/version`.
//!
//! The harness itself changes objects directly ([`ApiServer::create`], [`ApiServer::update`],
//! [`ApiServer::delete`]): those are not requests and are not recorded.
#![allow(dead_code)]

pub mod patch;
pub mod rbac;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use patch::Owners;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The scheduler's bearer token: this, `.`, and the name of the client (each replica gets its
/// own, so the record says which replica made each request), as the kubeconfig
/// [`ApiServer::write_kubeconfig`] writes it.
pub const TOKEN: &str = "gantry-scheduler-service-account-token";
/// Who that token is.
pub const SCHEDULER_USER: &str = "system:serviceaccount:gantry-system:gantry-scheduler";

/// A kind of object the server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Whether it has a `status` subresource.
    pub status: bool,
}

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
) -> ResourceType {
    ResourceType { group, version, plural, kind, namespaced, status }
}

pub const NODES: ResourceType = rt("", "v1", "nodes", "Node", false, true);
pub const PODS: ResourceType = rt("", "v1", "pods", "Pod", true, true);
pub const NAMESPACES: ResourceType = rt("", "v1", "namespaces", "Namespace", false, true);
pub const EVENTS: ResourceType = rt("events.k8s.io", "v1", "events", "Event", true, false);
pub const LEASES: ResourceType = rt("coordination.k8s.io", "v1", "leases", "Lease", true, false);
pub const TENANTS: ResourceType = rt("gantry.dev", "v1alpha1", "tenants", "Tenant", false, true);
pub const COHORTS: ResourceType = rt("gantry.dev", "v1alpha1", "cohorts", "Cohort", false, false);
pub const GPU_FLAVORS: ResourceType = rt("gantry.dev", "v1alpha1", "gpuflavors", "GpuFlavor", false, false);
/// PodDisruptionBudgets (served only when asked for): an eviction of a pod one of them selects is
/// refused while its `status.disruptionsAllowed` is 0.
pub const PDBS: ResourceType = rt("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, true);
/// The Kubeflow training operator's PyTorchJob (served only when asked for: [`Options::serve`]).
pub const PYTORCH_JOBS: ResourceType = rt("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob", true, true);

const BUILT_IN: [ResourceType; 6] = [NODES, PODS, NAMESPACES, EVENTS, LEASES, PDBS];

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, `leases.coordination.k8s.io`: how the API server names it in messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn key(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.plural)
    }

    /// Custom resources' list items carry `apiVersion` and `kind`; built-in types' list items do
    /// not (the API server drops the type of each item of a typed list).
    fn custom(&self) -> bool {
        !BUILT_IN.contains(self)
    }
}

/// How the server behaves.
pub struct Options {
    /// Kinds served besides the built-in ones and Gantry's (e.g. [`PYTORCH_JOBS`]).
    pub serve: Vec<ResourceType>,
    /// How often an open watch that asked for bookmarks gets one.
    pub bookmark_every: Duration,
    /// The fake kube-scheduler and kubelet bind ungated pods.
    pub kubelet: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { serve: Vec::new(), bookmark_every: Duration::from_secs(2), kubelet: true }
    }
}

/// One request as received, and the answer's status code.
#[derive(Clone, Debug)]
pub struct Request {
    /// Since the server started.
    pub at: Duration,
    pub user: String,
    /// Which client (the name in its token).
    pub client: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    /// The body as JSON (`Null` when empty, a string when not JSON).
    pub body: Value,
    /// The RBAC verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`), or empty
    /// for discovery.
    pub verb: String,
    pub status: u16,
}

impl Request {
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = if self.query.is_empty() { String::new() } else { format!("?{}", self.query) };
        write!(
            f,
            "{:>7.3}s [{}] {} {}{} -> {}",
            self.at.as_secs_f64(),
            self.client,
            self.method,
            self.path,
            q,
            self.status
        )?;
        if !self.body.is_null() {
            write!(f, " {}", self.body)?;
        }
        Ok(())
    }
}

/// A change, as watches send it.
#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub resource: String,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
}

/// A pod the fake kube-scheduler bound.
#[derive(Clone, Debug)]
pub struct Bind {
    pub at: Duration,
    pub namespace: String,
    pub name: String,
    pub node: String,
}

type Key = (String, String, String);

/// The server's state.
pub struct Inner {
    types: Vec<ResourceType>,
    objects: BTreeMap<Key, Value>,
    owners: HashMap<Key, Owners>,
    rv: u64,
    history: Vec<Change>,
    /// Watches from a version older than this are answered 410 Expired.
    compacted: u64,
    /// Bumped by [`ApiServer::expire_watches`]: open watches end with 410.
    expirations: u64,
    next_uid: u64,
    pub requests: Vec<Request>,
    pub binds: Vec<Bind>,
}

impl Inner {
    /// The name of a PodDisruptionBudget of `namespace` that selects pod `name` (by
    /// `spec.selector.matchLabels`) and allows no disruption now.
    fn blocking_budget(&self, namespace: &str, name: &str) -> Option<String> {
        let labels = self.object(&PODS, namespace, name)?["metadata"]["labels"].clone();
        self.objects(&PDBS)
            .filter(|b| b["metadata"]["namespace"] == namespace)
            .filter(|b| b["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) == 0)
            .find(|b| {
                b["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| m.iter().all(|(k, v)| labels[k] == *v))
            })
            .map(|b| b["metadata"]["name"].as_str().unwrap_or_default().to_string())
    }

    fn type_of(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.types.iter().copied().find(|t| t.api_version() == api_version && t.kind == kind)
    }

    /// Stores `object` (or deletes it with `None`) under a new resourceVersion and tells watches.
    fn commit(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        object: Option<Value>,
    ) -> Option<Value> {
        self.rv += 1;
        let key = (t.key(), namespace.to_string(), name.to_string());
        let (kind, object) = match object {
            Some(mut o) => {
                o["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                let kind = if self.objects.insert(key, o.clone()).is_some() { "MODIFIED" } else { "ADDED" };
                (kind, o)
            }
            None => {
                let mut o = self.objects.remove(&key)?;
                self.owners.remove(&key);
                o["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                ("DELETED", o)
            }
        };
        self.history.push(Change {
            rv: self.rv,
            resource: t.key(),
            namespace: namespace.to_string(),
            kind,
            object: object.clone(),
        });
        Some(object)
    }

    /// A new object's server-set metadata.
    fn stamp(&mut self, t: &ResourceType, namespace: &str, object: &mut Value) {
        self.next_uid += 1;
        let meta = &mut object["metadata"];
        if t.namespaced {
            meta["namespace"] = json!(namespace);
        }
        meta["uid"] = json!(format!("{:08x}-0000-4000-8000-{:012x}", self.next_uid, self.next_uid));
        if meta.get("creationTimestamp").and_then(Value::as_str).is_none() {
            meta["creationTimestamp"] = json!(now_rfc3339());
        }
        meta["generation"] = json!(1);
        object["apiVersion"] = json!(t.api_version());
        object["kind"] = json!(t.kind);
    }

    pub fn object(&self, t: &ResourceType, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(t.key(), namespace.to_string(), name.to_string()))
    }

    pub fn objects(&self, t: &ResourceType) -> impl Iterator<Item = &Value> {
        let key = t.key();
        self.objects.iter().filter(move |((r, _, _), _)| *r == key).map(|(_, v)| v)
    }

    pub fn writes(&self) -> impl Iterator<Item = &Request> {
        self.requests.iter().filter(|r| r.is_write())
    }
}

/// Unix time as the API server writes timestamps (seconds).
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Second).unwrap_or(now).to_string()
}

pub struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
    options: Options,
    rbac: rbac::Rbac,
    started: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running server; stops when dropped.
pub struct ApiServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl ApiServer {
    /// Starts the server on 127.0.0.1 (a free port), with RBAC from the chart's rendering.
    pub fn start(options: Options) -> ApiServer {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/scheduler/rbac.yaml");
        let text =
            std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let rbac = rbac::Rbac::from_manifests(&text, "gantry-system", "gantry-scheduler")
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let mut types = vec![NODES, PODS, NAMESPACES, EVENTS, LEASES, TENANTS, COHORTS, GPU_FLAVORS];
        types.extend(options.serve.iter().copied());
        let inner = Inner {
            types,
            objects: BTreeMap::new(),
            owners: HashMap::new(),
            rv: 1000,
            history: Vec::new(),
            compacted: 0,
            expirations: 0,
            next_uid: 0,
            requests: Vec::new(),
            binds: Vec::new(),
        };
        let kubelet = options.kubelet;
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            changed: Notify::new(),
            options,
            rbac,
            started: Instant::now(),
        });
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        if kubelet {
            runtime.spawn(run_kubelet(shared.clone()));
        }
        ApiServer { addr, shared, runtime: Some(runtime) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for the scheduler's service account, with a token naming `client`; the path.
    pub fn write_kubeconfig(&self, dir: &Path, client: &str) -> PathBuf {
        let path = dir.join(format!("kubeconfig-{client}"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\nusers:\n- name: gantry-scheduler\n  user:\n    token: {TOKEN}.{client}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: gantry-scheduler\n    namespace: gantry-system\ncurrent-context: test\n",
            self.url()
        );
        std::fs::write(&path, text).expect("kubeconfig written");
        path
    }

    /// Reads the state under the lock.
    pub fn with<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        f(&self.shared.lock())
    }

    fn type_of(&self, object: &Value) -> ResourceType {
        let (api_version, kind) =
            (object["apiVersion"].as_str().unwrap_or_default(), object["kind"].as_str().unwrap_or_default());
        self.shared
            .lock()
            .type_of(api_version, kind)
            .unwrap_or_else(|| panic!("the test server does not serve {api_version} {kind}"))
    }

    /// Creates an object as a user or controller would (kind and apiVersion say what it is);
    /// a `creationTimestamp` given is kept (tests order pods with it). Returns it as stored.
    pub fn create(&self, mut object: Value) -> Value {
        let t = self.type_of(&object);
        let name = object["metadata"]["name"].as_str().expect("metadata.name").to_string();
        let namespace = if t.namespaced {
            object["metadata"]["namespace"].as_str().unwrap_or("default").to_string()
        } else {
            String::new()
        };
        if t == PODS {
            assert!(
                !(gates(&object).next().is_some() && object["spec"]["nodeName"].is_string()),
                "a pod with scheduling gates cannot be created bound to a node"
            );
        }
        let mut inner = self.shared.lock();
        assert!(
            inner.object(&t, &namespace, &name).is_none(),
            "{} {namespace}/{name} already exists",
            t.kind
        );
        inner.stamp(&t, &namespace, &mut object);
        let stored = inner.commit(&t, &namespace, &name, Some(object)).expect("stored");
        drop(inner);
        self.shared.changed.notify_waiters();
        stored
    }

    /// Changes an object in place (as another controller would); `None` when it is not there.
    pub fn update(
        &self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let mut inner = self.shared.lock();
        let mut object = inner.object(t, namespace, name)?.clone();
        f(&mut object);
        let stored = inner.commit(t, namespace, name, Some(object));
        drop(inner);
        self.shared.changed.notify_waiters();
        stored
    }

    /// Deletes an object (a DELETED event); what it was.
    pub fn delete(&self, t: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        let gone = self.shared.lock().commit(t, namespace, name, None);
        self.shared.changed.notify_waiters();
        gone
    }

    pub fn get(&self, t: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        self.with(|i| i.object(t, namespace, name).cloned())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.with(|i| i.requests.clone())
    }

    pub fn writes(&self) -> Vec<Request> {
        self.with(|i| i.writes().cloned().collect())
    }

    pub fn binds(&self) -> Vec<Bind> {
        self.with(|i| i.binds.clone())
    }

    /// Since the server started (the clock of [`Request::at`]).
    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// As if etcd compacted: every open watch ends with a 410 Expired ERROR event and watches
    /// from any version seen so far are refused the same way, so clients must relist.
    pub fn expire_watches(&self) {
        let mut inner = self.shared.lock();
        inner.expirations += 1;
        // A watch from the current version (a fresh list's) is fine; anything older is gone.
        inner.compacted = inner.rv;
        drop(inner);
        self.shared.changed.notify_waiters();
    }

    /// Polls `f` until it gives a value, for at most `timeout`; panics naming `what` (and the
    /// requests so far) otherwise. `f` runs without the server's lock (it may call the server).
    pub fn wait_for<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let log: Vec<String> =
                    self.requests().iter().filter(|r| r.verb != "watch").map(|r| r.to_string()).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; requests so far:\n{}",
                    log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The names of a pod's scheduling gates.
pub fn gates(pod: &Value) -> impl Iterator<Item = &str> {
    pod["spec"]["schedulingGates"].as_array().into_iter().flatten().filter_map(|g| g["name"].as_str())
}

// --- HTTP -----------------------------------------------------------------------------------

fn json_response(code: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).expect("JSON")));
    *r.status_mut() = StatusCode::from_u16(code).expect("a status code");
    r.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("a header"));
    r
}

/// A `metav1.Status` failure, as the API server answers errors.
fn failure(code: u16, reason: &str, message: impl Into<String>, details: Value) -> (u16, Value) {
    let mut status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message.into(), "reason": reason, "code": code});
    if !details.is_null() {
        status["details"] = details;
    }
    (code, status)
}

fn not_found(t: &ResourceType, name: &str) -> (u16, Value) {
    failure(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", t.qualified()),
        json!({"name": name, "group": t.group, "kind": t.plural}),
    )
}

/// What a request is about.
enum Target {
    /// Discovery and version documents (no RBAC).
    Document(Value),
    Resource {
        t: ResourceType,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
    Missing,
}

fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceType> =
        types.iter().filter(|t| t.group == group && t.version == version).collect();
    if served.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in served {
        let verbs =
            json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]);
        resources.push(json!({"name": t.plural, "singularName": t.kind.to_lowercase(), "namespaced": t.namespaced, "kind": t.kind, "verbs": verbs}));
        if t.status {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
        if *t == PODS {
            resources.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn target(types: &[ResourceType], path: &str) -> Target {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => {
            return Target::Document(
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}),
            )
        }
        ["api"] => {
            return Target::Document(
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            )
        }
        ["apis"] => {
            let mut groups: Vec<(&str, &str)> =
                types.iter().filter(|t| !t.group.is_empty()).map(|t| (t.group, t.version)).collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|(g, v)| {
                    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                    json!({"name": g, "versions": [gv], "preferredVersion": gv})
                })
                .collect();
            return Target::Document(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Target::Missing,
    };
    if rest.is_empty() {
        return resource_list(types, group, version).map_or(Target::Missing, Target::Document);
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let Some(t) =
        types.iter().copied().find(|t| t.group == group && t.version == version && t.plural == rest[0])
    else {
        return Target::Missing;
    };
    if namespace.is_some() && !t.namespaced || rest.len() > 3 {
        return Target::Missing;
    }
    Target::Resource {
        t,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    }
}

fn query_map(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            // Apply patches are YAML (kube-rs sends JSON, which is YAML too).
            marked_yaml::from_yaml(0, &text).unwrap_or(Value::String(text))
        })
    };
    let client = client_of(&parts.headers);
    let user = client.as_ref().map(|_| SCHEDULER_USER.to_string());
    let params = query_map(&query);
    let types = shared.lock().types.clone();
    let target = target(&types, &path);
    let verb = match (&target, &parts.method) {
        (Target::Resource { name: Some(_), .. }, &Method::GET) => "get",
        (Target::Resource { .. }, &Method::GET)
            if params.get("watch").is_some_and(|w| w == "true" || w == "1") =>
        {
            "watch"
        }
        (Target::Resource { .. }, &Method::GET) => "list",
        (Target::Resource { .. }, &Method::POST) => "create",
        (Target::Resource { .. }, &Method::PUT) => "update",
        (Target::Resource { .. }, &Method::PATCH) => "patch",
        (Target::Resource { name: Some(_), .. }, &Method::DELETE) => "delete",
        (Target::Resource { .. }, &Method::DELETE) => "deletecollection",
        _ => "",
    };
    let record = |status: u16| Request {
        at: shared.started.elapsed(),
        user: user.clone().unwrap_or_default(),
        client: client.clone().unwrap_or_default(),
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: body.clone(),
        verb: verb.to_string(),
        status,
    };
    let (code, answer) = match (&user, &target) {
        (None, _) => failure(401, "Unauthorized", "Unauthorized", Value::Null),
        (Some(_), Target::Missing) => {
            failure(404, "NotFound", "the server could not find the requested resource", Value::Null)
        }
        (Some(_), Target::Document(doc)) => {
            if parts.method == Method::GET {
                (200, doc.clone())
            } else {
                failure(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                    Value::Null,
                )
            }
        }
        (Some(user), Target::Resource { t, namespace, name, sub }) => {
            let resource = match sub {
                Some(s) => format!("{}/{s}", t.plural),
                None => t.plural.to_string(),
            };
            if !shared.rbac.allows(t.group, &resource, verb, namespace.as_deref()) {
                let scope = namespace
                    .as_ref()
                    .map_or("at the cluster scope".to_string(), |ns| format!("in the namespace \"{ns}\""));
                let message = format!("{} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}", t.qualified(), t.group);
                failure(
                    403,
                    "Forbidden",
                    message,
                    json!({"name": name.clone().unwrap_or_default(), "group": t.group, "kind": t.plural}),
                )
            } else if verb == "watch" {
                shared.lock().requests.push(record(200));
                return watch(shared.clone(), *t, namespace.clone(), &params);
            } else {
                let (code, answer) = resource_call(
                    &shared,
                    verb,
                    t,
                    namespace.as_deref().unwrap_or_default(),
                    name.as_deref(),
                    sub.as_deref(),
                    &params,
                    &content_type,
                    &body,
                );
                if code < 300 && verb != "get" && verb != "list" {
                    shared.changed.notify_waiters();
                }
                (code, answer)
            }
        }
    };
    shared.lock().requests.push(record(code));
    json_response(code, &answer)
}

/// The client named in a valid bearer token.
fn client_of(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (token, client) = auth.strip_prefix("Bearer ")?.split_once('.')?;
    (token == TOKEN && !client.is_empty()).then(|| client.to_string())
}

/// Everything but watch, under the lock.
#[allow(clippy::too_many_arguments)]
fn resource_call(
    shared: &Shared,
    verb: &str,
    t: &ResourceType,
    namespace: &str,
    name: Option<&str>,
    sub: Option<&str>,
    params: &HashMap<String, String>,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let mut inner = shared.lock();
    let inner = &mut *inner;
    let with_type = |mut o: Value| {
        o["apiVersion"] = json!(t.api_version());
        o["kind"] = json!(t.kind);
        o
    };
    match (verb, name, sub) {
        ("get", Some(name), None | Some("status")) => match inner.object(t, namespace, name) {
            Some(o) => (200, with_type(o.clone())),
            None => not_found(t, name),
        },
        ("list", None, None) => {
            let key = t.key();
            let items: Vec<Value> = inner
                .objects
                .iter()
                .filter(|((r, ns, _), _)| *r == key && (namespace.is_empty() || ns == namespace))
                .map(|(_, o)| {
                    let mut o = o.clone();
                    if !t.custom() {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("apiVersion");
                            m.remove("kind");
                        }
                    }
                    o
                })
                .collect();
            (
                200,
                json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(), "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}),
            )
        }
        ("create", None, None) => {
            let mut object = body.clone();
            if !object.is_object() {
                return failure(
                    400,
                    "BadRequest",
                    "the body of the request was in an unknown format",
                    Value::Null,
                );
            }
            if object["apiVersion"].as_str().is_some_and(|v| v != t.api_version())
                || object["kind"].as_str().is_some_and(|k| k != t.kind)
            {
                return failure(
                    400,
                    "BadRequest",
                    format!(
                        "the API version in the data ({}) does not match the expected API version ({})",
                        object["apiVersion"],
                        t.api_version()
                    ),
                    Value::Null,
                );
            }
            if t.namespaced && object["metadata"]["namespace"].as_str().is_some_and(|ns| ns != namespace) {
                return failure(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                    Value::Null,
                );
            }
            let name =
                match (object["metadata"]["name"].as_str(), object["metadata"]["generateName"].as_str()) {
                    (Some(n), _) if !n.is_empty() => n.to_string(),
                    (_, Some(prefix)) => format!("{prefix}{:05x}", inner.rv % 0xfffff),
                    _ => {
                        return failure(
                            422,
                            "Invalid",
                            format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        t.kind
                    ),
                            Value::Null,
                        )
                    }
                };
            object["metadata"]["name"] = json!(name);
            if inner.object(t, namespace, &name).is_some() {
                return failure(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", t.qualified()),
                    json!({"name": name, "group": t.group, "kind": t.plural}),
                );
            }
            // The server sets these; what a client sends is ignored.
            if let Some(m) = object["metadata"].as_object_mut() {
                for k in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"] {
                    m.remove(k);
                }
            }
            inner.stamp(t, namespace, &mut object);
            let manager = params.get("fieldManager").cloned().unwrap_or_else(|| "unknown".into());
            let mut owners = Owners::default();
            owners.updated(&manager, &json!({}), &object);
            inner.owners.insert((t.key(), namespace.to_string(), name.clone()), owners);
            (201, inner.commit(t, namespace, &name, Some(object)).expect("stored"))
        }
        ("create", Some(name), Some("eviction")) if *t == PODS => {
            if inner.object(t, namespace, name).is_none() {
                return not_found(t, name);
            }
            // The API server defaults a body's missing kind and apiVersion to the endpoint's
            // (kube-rs sends neither), but refuses another kind or another pod's name.
            let kind_ok = body["kind"].is_null() || body["kind"] == "Eviction";
            if !kind_ok || body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
                return failure(400, "BadRequest", "an Eviction naming the pod is expected", Value::Null);
            }
            if let Some(pdb) = inner.blocking_budget(namespace, name) {
                // The API server's answer when a budget allows no disruption.
                return failure(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    json!({"causes": [{"reason": "DisruptionBudget", "message": format!("The disruption budget {pdb} needs more healthy pods")}]}),
                );
            }
            inner.commit(t, namespace, name, None);
            (
                201,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            )
        }
        ("update" | "patch", Some(name), None | Some("status")) => {
            if sub == Some("status") && !t.status {
                return failure(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    Value::Null,
                );
            }
            let key = (t.key(), namespace.to_string(), name.to_string());
            let apply = content_type.starts_with("application/apply-patch");
            let manager = params.get("fieldManager").cloned();
            if apply && manager.is_none() {
                return failure(400, "BadRequest", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch", Value::Null);
            }
            let manager = manager.unwrap_or_else(|| "unknown".into());
            let existing = inner.objects.get(&key).cloned();
            let old = match existing {
                Some(o) => o,
                // Server-side apply creates.
                None if apply => {
                    let mut object = json!({"metadata": {"name": name}});
                    inner.stamp(t, namespace, &mut object);
                    object
                }
                None => return not_found(t, name),
            };
            let current_rv = old["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
            if let Some(rv) = body["metadata"]["resourceVersion"].as_str() {
                if rv != current_rv && !current_rv.is_empty() {
                    return failure(
                        409,
                        "Conflict",
                        format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", t.qualified()),
                        json!({"name": name, "group": t.group, "kind": t.plural}),
                    );
                }
            }
            let mut new = old.clone();
            let patched = if verb == "update" {
                new = body.clone();
                Ok(())
            } else if apply {
                let conflicts =
                    inner.owners.get(&key).map(|o| o.conflicts(&manager, &old, body)).unwrap_or_default();
                if !conflicts.is_empty() && params.get("force").map(String::as_str) != Some("true") {
                    let list: Vec<String> = conflicts
                        .iter()
                        .map(|(owner, path)| format!("conflict with \"{owner}\": {path}"))
                        .collect();
                    let causes: Vec<Value> = conflicts.iter().map(|(owner, path)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{owner}\""), "field": path})).collect();
                    return failure(
                        409,
                        "Conflict",
                        format!(
                            "Apply failed with {} conflict{}: {}",
                            list.len(),
                            if list.len() == 1 { "" } else { "s" },
                            list.join(", ")
                        ),
                        json!({"causes": causes}),
                    );
                }
                patch::strategic(&mut new, body)
            } else if content_type.starts_with("application/strategic-merge-patch+json") {
                patch::strategic(&mut new, body)
            } else if content_type.starts_with("application/merge-patch+json") {
                patch::merge(&mut new, body);
                Ok(())
            } else if content_type.starts_with("application/json-patch+json") {
                patch::json_patch(&mut new, body)
            } else {
                return failure(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"), Value::Null);
            };
            if let Err(e) = patched {
                return failure(
                    422,
                    "Invalid",
                    format!("{} \"{name}\" is invalid: {e}", t.kind),
                    Value::Null,
                );
            }
            let new = match admit_update(t, sub, name, &old, new) {
                Ok(v) => v,
                Err(e) => return e,
            };
            let mut same = new.clone();
            same["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if same == old && inner.objects.contains_key(&key) {
                // A write that changes nothing stores nothing (no new version, no event).
                return (200, with_type(old));
            }
            inner.owners.entry(key).or_default().updated(&manager, &old, &new);
            (200, inner.commit(t, namespace, name, Some(new)).expect("stored"))
        }
        ("delete", Some(name), None) => match inner.commit(t, namespace, name, None) {
            Some(o) => (200, o),
            None => not_found(t, name),
        },
        _ => failure(
            405,
            "MethodNotAllowed",
            format!("{verb} is not supported on {}", t.qualified()),
            Value::Null,
        ),
    }
}

/// What the API server keeps of an update: the object's identity never changes; a write to the
/// object keeps its status and a write to `status` keeps the rest; pods' rules.
fn admit_update(
    t: &ResourceType,
    sub: Option<&str>,
    name: &str,
    old: &Value,
    mut new: Value,
) -> Result<Value, (u16, Value)> {
    if !new.is_object() {
        return Err(failure(
            400,
            "BadRequest",
            "the body of the request was in an unknown format",
            Value::Null,
        ));
    }
    if t.status {
        if sub == Some("status") {
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    new.as_object_mut().expect("an object").remove("status");
                }
            }
        } else {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut().expect("an object").remove("status");
                }
            }
        }
    }
    for k in ["name", "namespace", "uid", "creationTimestamp", "generation"] {
        match old["metadata"].get(k) {
            Some(v) => new["metadata"][k] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    new["apiVersion"] = json!(t.api_version());
    new["kind"] = json!(t.kind);
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    if *t == PODS && sub.is_none() {
        let old_gates: Vec<&str> = gates(old).collect();
        if let Some(added) = gates(&new).find(|g| !old_gates.contains(g)) {
            return Err(failure(
                422,
                "Invalid",
                format!("Pod \"{name}\" is invalid: spec.schedulingGates: Forbidden: only deletion is allowed, but found new scheduling gate '{added}'"),
                json!({"name": name, "kind": "Pod", "causes": [{"reason": "FieldValueForbidden", "field": "spec.schedulingGates"}]}),
            ));
        }
        // An emptied list is not kept (omitempty).
        if new["spec"]["schedulingGates"].as_array().is_some_and(Vec::is_empty) {
            new["spec"].as_object_mut().expect("a spec").remove("schedulingGates");
        }
        let without_gates = |p: &Value| {
            let mut s = p["spec"].clone();
            if let Some(m) = s.as_object_mut() {
                m.remove("schedulingGates");
            }
            s
        };
        if without_gates(old) != without_gates(&new) {
            return Err(failure(
                422,
                "Invalid",
                format!("Pod \"{name}\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative) or `spec.schedulingGates` (only deletion)"),
                json!({"name": name, "kind": "Pod"}),
            ));
        }
    }
    Ok(new)
}

/// A watch: a chunked stream of JSON lines.
fn watch(
    shared: Arc<Shared>,
    t: ResourceType,
    namespace: Option<String>,
    params: &HashMap<String, String>,
) -> Response {
    let from: Option<u64> =
        params.get("resourceVersion").filter(|v| !v.is_empty() && *v != "0").and_then(|v| v.parse().ok());
    let timeout = params.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).unwrap_or(1800);
    let bookmarks = params.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let key = t.key();
        let line = |kind: &str, object: &Value| {
            let mut text = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON");
            text.push(b'\n');
            Bytes::from(text)
        };
        let expired = || {
            let (_, status) = failure(410, "Expired", "too old resource version", Value::Null);
            line("ERROR", &status)
        };
        // Where in the history this watch is, the version it has seen up to, and what it sends
        // first (decided under the lock, sent after).
        let start = {
            let inner = shared.lock();
            match from {
                Some(rv) if rv < inner.compacted || rv > inner.rv => None,
                Some(rv) => {
                    Some((inner.history.partition_point(|c| c.rv <= rv), rv, inner.expirations, Vec::new()))
                }
                None => {
                    // No version: the current objects as ADDED, then what follows.
                    let initial: Vec<Bytes> = inner
                        .objects
                        .iter()
                        .filter(|((r, ns, _), _)| *r == key && namespace.as_ref().is_none_or(|n| n == ns))
                        .map(|(_, o)| line("ADDED", o))
                        .collect();
                    Some((inner.history.len(), inner.rv, inner.expirations, initial))
                }
            }
        };
        let Some((mut pos, mut seen, expirations, initial)) = start else {
            let _ = tx.send(expired()).await;
            return;
        };
        for l in initial {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        let mut next_bookmark = tokio::time::Instant::now() + shared.options.bookmark_every;
        loop {
            let notified = shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (lines, gone) = {
                let inner = shared.lock();
                if inner.expirations != expirations {
                    (Vec::new(), true)
                } else {
                    let lines: Vec<Bytes> = inner.history[pos..]
                        .iter()
                        .filter(|c| c.resource == key && namespace.as_ref().is_none_or(|n| *n == c.namespace))
                        .map(|c| line(c.kind, &c.object))
                        .collect();
                    pos = inner.history.len();
                    seen = inner.rv;
                    (lines, false)
                }
            };
            if gone {
                let _ = tx.send(expired()).await;
                return;
            }
            for l in lines {
                if tx.send(l).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(next_bookmark) => {
                    next_bookmark = tokio::time::Instant::now() + shared.options.bookmark_every;
                    if bookmarks {
                        let object = json!({"kind": t.kind, "apiVersion": t.api_version(), "metadata": {"resourceVersion": seen.to_string()}});
                        if tx.send(line("BOOKMARK", &object)).await.is_err() {
                            return;
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<_, std::convert::Infallible>))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("a header"));
    r.into_response()
}

// --- The fake kube-scheduler and kubelet ----------------------------------------------------

/// Binds every pod that has no scheduling gate and no node: to the node its
/// `gantry.dev/placement` annotation names (else the first node), Running at once.
async fn run_kubelet(shared: Arc<Shared>) {
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let bound = {
            let mut inner = shared.lock();
            let first_node =
                inner.objects(&NODES).next().and_then(|n| n["metadata"]["name"].as_str()).map(str::to_string);
            let waiting: Vec<Value> = inner
                .objects(&PODS)
                .filter(|p| {
                    gates(p).next().is_none()
                        && !p["spec"]["nodeName"].is_string()
                        && p["metadata"]["deletionTimestamp"].is_null()
                })
                .cloned()
                .collect();
            let mut bound = false;
            for mut pod in waiting {
                let placement = pod["metadata"]["annotations"]["gantry.dev/placement"].as_str();
                let node = match placement {
                    Some(p) => Some(p.split(['@', ':']).next().unwrap_or_default().to_string()),
                    None => first_node.clone(),
                };
                let Some(node) = node.filter(|n| inner.object(&NODES, "", n).is_some()) else { continue };
                let (ns, name) = (
                    pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
                    pod["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                );
                pod["spec"]["nodeName"] = json!(node);
                let now = now_rfc3339();
                pod["status"]["phase"] = json!("Running");
                pod["status"]["startTime"] = json!(now);
                let _ = patch::strategic(
                    &mut pod["status"],
                    &json!({"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}, {"type": "Ready", "status": "True", "lastTransitionTime": now}]}),
                );
                inner.commit(&PODS, &ns, &name, Some(pod));
                let at = shared.started.elapsed();
                inner.binds.push(Bind { at, namespace: ns, name, node });
                bound = true;
            }
            bound
        };
        if bound {
            shared.changed.notify_waiters();
        }
        notified.await;
    }
}
