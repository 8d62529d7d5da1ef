//! The full loop: the real `gantry scheduler` binary, in cluster mode, against an
//! API-server-shaped test server (`tests/apiserver/`) started by each test on loopback. The
//! scheduler lists and watches nodes, pods, framework objects and tenants, takes the Lease, and
//! writes ungates, conditions, Events, evictions and Tenant status over HTTP; the tests assert the
//! exact writes it made.
//!
//! What the test server does **not** reproduce (a scenario that depends on one of these needs a
//! real cluster, e.g. kind):
//! - admission: no mutating or validating webhooks (Gantry's own webhook never runs, so the tests
//!   create pods already gated and labelled), no ValidatingAdmissionPolicies, no defaulting of
//!   pod fields; behind the Eviction API only PodDisruptionBudgets that select by `matchLabels`
//!   with a `status.disruptionsAllowed` the test sets (no disruption controller computes it),
//!   and an eviction allowed deletes the pod at once (no graceful termination, no
//!   `deletionTimestamp`);
//! - validation beyond the pod rules Gantry depends on (gates only removed, the rest of a pod's
//!   spec immutable, `status` only through the subresource): objects are not checked against
//!   their OpenAPI schemas or CRD schemas;
//! - real scheduling: a fake kube-scheduler and kubelet bind an ungated pod at once to the node of
//!   its placement annotation, whatever its resources, and mark it Running; the scheduler
//!   extender (`/scheduler/filter` …) is never called; no preemption by kube-scheduler;
//! - finalizers, owner-reference garbage collection, graceful deletion, namespaces' lifecycle
//!   (namespaces need not exist);
//! - label and field selectors, `limit`/`continue` pagination (every list is one page), watch
//!   caches, `sendInitialEvents` streaming lists, resource-version semantics of lists
//!   (`resourceVersionMatch`), `dryRun`, protobuf, HTTP/2, TLS, audit;
//! - server-side apply in full: field ownership is kept per leaf field and conflicts are detected
//!   (what leader election with kube-lease-manager needed), but not list ownership, `managedFields` on objects, or the
//!   removal of fields a manager stops applying;
//! - optimistic locking is by `metadata.resourceVersion` in PUT bodies and in patches (what the
//!   scheduler's own leader election, scheduler/src/lease.rs, relies on);
//! - strategic merge patch is implemented for the lists Gantry and its libraries patch
//!   (scheduling gates by name, conditions by type, and a few pod lists), not from the OpenAPI
//!   schema's patch strategies;
//! - authentication other than one bearer token, and any authorizer other than the RBAC rules of
//!   `deploy/scheduler/rbac.yaml` (no aggregation, no impersonation);
//! - built-in list items carry no `kind`/`apiVersion` (as the API server sends them); custom
//!   resources' list items do.

mod apiserver;

use apiserver::{ApiServer, Options, EVENTS, LEASES, PDBS, PODS, PYTORCH_JOBS, TENANTS};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gantry_api::keys::{
    ADMITTED_CONDITION as ADMITTED, PLACEMENT_ANNOTATION as PLACEMENT, SCHEDULING_GATE as GATE,
};
/// The Lease's duration.
const LEASE_SECONDS: u64 = gantry_scheduler::lease::DURATION.as_secs();

// --- The scheduler process ------------------------------------------------------------------

/// A running `gantry scheduler` in cluster mode, killed when dropped.
struct Scheduler {
    child: Child,
    identity: String,
    /// The extender and metrics address.
    addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory for one test: the kubeconfig and the tenants file.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gantry-full-loop-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

impl Scheduler {
    /// Starts `gantry scheduler` against `api`, with tenants from `tenants` (a file) or, when
    /// `None`, from the Tenant objects; waits for its start line.
    fn start(api: &ApiServer, dir: &Path, identity: &str, tenants: Option<&Path>) -> Scheduler {
        match tenants {
            Some(t) => Scheduler::start_with(api, dir, identity, &["--tenants".as_ref(), t.as_os_str()]),
            None => Scheduler::start_with(api, dir, identity, &[]),
        }
    }

    /// Starts `gantry scheduler` against `api` with more arguments (`--tenants FILE`,
    /// `--settings FILE`); waits for its start line.
    fn start_with(api: &ApiServer, dir: &Path, identity: &str, args: &[&std::ffi::OsStr]) -> Scheduler {
        let kubeconfig = api.write_kubeconfig(dir, identity);
        let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
        command.args([
            "scheduler",
            "--listen",
            "127.0.0.1:0",
            "--identity",
            identity,
            "--lease-namespace",
            "gantry-system",
            "--cycle-every",
            "1",
        ]);
        command.args(args);
        let mut child = command
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gantry binary runs");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let keep = stderr.clone();
        let who = identity.to_string();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if std::env::var_os("FULL_LOOP_VERBOSE").is_some() {
                    eprintln!("[{who}] {line}");
                }
                if let Some(addr) = line.split("metrics at http://").nth(1) {
                    let _ = tx.send(addr.split('/').next().unwrap_or_default().to_string());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => panic!(
                "{identity} printed no start line in 20 s; stderr:\n{}",
                stderr.lock().unwrap().join("\n")
            ),
        };
        Scheduler { child, identity: identity.to_string(), addr, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_line(&self, needle: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return Instant::now();
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not print {needle:?} within {timeout:?}; stderr:\n{}",
                    self.identity,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {}", self.identity);
    }

    /// Sends SIGTERM and waits for the exit; the exit status.
    fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal("-TERM");
        self.wait_exit(timeout)
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                return status;
            }
            if Instant::now() > deadline {
                panic!("{} did not exit within {timeout:?}; stderr:\n{}", self.identity, self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /metrics`.
    fn metrics(&self) -> String {
        let mut s = TcpStream::connect(&self.addr).expect("the scheduler listens");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("sent");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("a reply");
        assert!(out.starts_with("HTTP/1.1 200"), "GET /metrics: {out}");
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
    }
}

/// `name{labels} value` from a Prometheus text page (0 when absent).
fn metric(page: &str, series: &str) -> f64 {
    page.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

// --- Objects --------------------------------------------------------------------------------

fn tenants_file(dir: &Path, nominal: u32) -> PathBuf {
    let path = dir.join("tenants.yaml");
    let text = format!("flavors:\n  - name: A100\ntenants:\n  - name: team-a\n    namespaces: [team-a]\n    quotas: {{A100: {{nominal: {nominal}}}}}\n  - name: team-b\n    namespaces: [team-b]\n    quotas: {{A100: {{nominal: 8}}}}\n");
    std::fs::write(&path, text).expect("tenants file");
    path
}

/// A GPU node as the kubelet, the device plugin and GPU Feature Discovery publish it.
fn node(name: &str, gpus: u32) -> Value {
    let resources = json!({"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": gpus.to_string(), "pods": "110", "ephemeral-storage": "1Ti"});
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "A100", "nvidia.com/gpu.count": gpus.to_string()}},
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": apiserver::now_rfc3339(), "lastTransitionTime": apiserver::now_rfc3339()}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "containerRuntimeVersion": "containerd://2.0.0", "architecture": "amd64", "operatingSystem": "linux"},
        },
    })
}

/// A pod as Gantry's webhook leaves it: gated, asking for `gpus` GPUs; created at `created`
/// (RFC 3339) when given, so that tests fix the queue's order.
fn gated_pod(ns: &str, name: &str, gpus: u32, created: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "schedulingGates": [{"name": GATE}],
            "containers": [{"name": "main", "image": "pytorch/pytorch:2.5", "command": ["python", "train.py"],
                            "resources": {"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": gpus.to_string()}, "limits": {"nvidia.com/gpu": gpus.to_string()}}}],
            "restartPolicy": "Never", "schedulerName": "default-scheduler", "serviceAccountName": "default",
        },
        "status": {"phase": "Pending", "qosClass": "Burstable",
                   "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated", "message": "Scheduling is blocked due to non-empty scheduling gates"}]},
    });
    if let Some(c) = created {
        pod["metadata"]["creationTimestamp"] = json!(c);
    }
    pod
}

/// RFC 3339 `seconds` ago.
fn ago(seconds: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds);
    t.round(jiff::Unit::Second).unwrap().to_string()
}

/// One of a PyTorchJob's pods, as the training operator makes them.
fn pytorch_pod(ns: &str, job: &str, job_uid: &str, index: u32) -> Value {
    let (replica, i) = if index == 0 { ("master", 0) } else { ("worker", index - 1) };
    let mut pod = gated_pod(ns, &format!("{job}-{replica}-{i}"), 1, None);
    pod["metadata"]["labels"] = json!({
        "training.kubeflow.org/job-name": job,
        "training.kubeflow.org/operator-name": "pytorchjob-controller",
        "training.kubeflow.org/replica-type": replica,
        "training.kubeflow.org/replica-index": i.to_string(),
    });
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": job, "uid": job_uid, "controller": true, "blockOwnerDeletion": true}]);
    pod
}

fn pytorch_job(ns: &str, name: &str, workers: u32) -> Value {
    let template = json!({"spec": {"containers": [{"name": "pytorch", "image": "pytorch/pytorch:2.5", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}});
    json!({
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"pytorchReplicaSpecs": {
            "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template},
            "Worker": {"replicas": workers, "restartPolicy": "OnFailure", "template": template},
        }},
    })
}

// --- What the scheduler wrote ---------------------------------------------------------------

/// Every successful ungate: (namespace, name, placement, when).
fn ungates(api: &ApiServer) -> Vec<(String, String, String, Duration)> {
    api.writes()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.status == 200
                && r.path.starts_with("/api/v1/namespaces/")
                && !r.path.ends_with("/status")
                && r.body["spec"]["schedulingGates"].is_array()
        })
        .map(|r| {
            let parts: Vec<&str> = r.path.split('/').collect();
            (
                parts[4].to_string(),
                parts[6].to_string(),
                r.body["metadata"]["annotations"][PLACEMENT].as_str().unwrap_or_default().to_string(),
                r.at,
            )
        })
        .collect()
}

/// The admitted condition a pod carries now.
fn condition(api: &ApiServer, ns: &str, name: &str) -> Option<Value> {
    let pod = api.get(&PODS, ns, name)?;
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == ADMITTED).cloned()
}

fn still_gated(api: &ApiServer, ns: &str, name: &str) -> bool {
    api.get(&PODS, ns, name).is_some_and(|p| apiserver::gates(&p).any(|g| g == GATE))
}

/// No request was refused for want of a permission, and none hit something the server lacks.
fn assert_no_refusals(api: &ApiServer) {
    let refused: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| matches!(r.status, 401 | 403 | 405 | 415 | 422))
        .map(|r| r.to_string())
        .collect();
    assert!(
        refused.is_empty(),
        "requests refused by the API server (RBAC, method or validation):\n{}",
        refused.join("\n")
    );
}

fn lease_holder(api: &ApiServer) -> Option<String> {
    api.get(&LEASES, "gantry-system", "gantry-scheduler")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// The stderr lines that report a problem (everything but the expected progress lines).
fn error_lines(s: &Scheduler) -> Vec<String> {
    let fine = [
        "extender at",
        "caches ready",
        "leads; queue rebuilt",
        "released the lease",
        "stopped",
        "HTTP server drained",
        "lost the lease",
    ];
    s.stderr.lock().unwrap().iter().filter(|l| !fine.iter().any(|f| l.contains(f))).cloned().collect()
}

// --- Scenarios ------------------------------------------------------------------------------

/// 1. Start-up: the scheduler lists, leads, and ungates one waiting single-GPU pod exactly once,
///    with a placement on a real node; it says nothing is wrong with nodes or models.
#[test]
fn start_up_admits_a_gated_pod_once() {
    let dir = scratch("start-up");
    let api = ApiServer::start(Options::default());
    api.create(node("gpu-0", 8));
    api.create(node("gpu-1", 8));
    api.create(gated_pod("team-a", "train-0", 1, None));
    let tenants = tenants_file(&dir, 8);
    let s = Scheduler::start(&api, &dir, "gantry-0", Some(&tenants));

    api.wait_for("train-0 bound to a node", Duration::from_secs(20), || {
        api.with(|i| i.binds.iter().find(|b| b.name == "train-0").cloned())
    });
    let pod = api.get(&PODS, "team-a", "train-0").unwrap();
    let placement =
        pod["metadata"]["annotations"][PLACEMENT].as_str().expect("a placement annotation").to_string();
    let (node, rest) = placement.split_once(':').expect("node:gpus@time");
    assert!(["gpu-0", "gpu-1"].contains(&node), "placement {placement} names a node that exists");
    assert_eq!(rest.split('@').next().unwrap().split(',').count(), 1, "one GPU in {placement}");
    assert_eq!(pod["spec"]["nodeName"], node, "bound where planned");

    // Two more cycles: nothing more is written for the running pod.
    observe(Duration::from_millis(2500));
    let ours: Vec<(String, String, String, Duration)> =
        ungates(&api).into_iter().filter(|u| u.1 == "train-0").collect();
    assert_eq!(ours.len(), 1, "ungated exactly once: {ours:?}");
    let cond = condition(&api, "team-a", "train-0").expect("the admitted condition");
    assert_eq!(cond["status"], "True", "{cond}");
    assert_eq!(cond["reason"], "Admitted", "{cond}");
    assert!(cond["lastTransitionTime"].is_string(), "{cond}");
    // The Lease is held by the one replica.
    assert_eq!(lease_holder(&api).as_deref(), Some("gantry-0"));
    assert_no_refusals(&api);
    let errors: Vec<String> =
        error_lines(&s).into_iter().filter(|l| l.contains("node") || l.contains("model")).collect();
    assert!(
        errors.is_empty(),
        "error lines about nodes or models:\n{}\nall stderr:\n{}",
        errors.join("\n"),
        s.stderr()
    );
    dump(&api);
    // The only pod writes: the ungate patch (strategic merge) and the condition (status).
    for w in api.writes().iter().filter(|w| w.path.contains("/pods/")) {
        assert!(w.content_type.starts_with("application/strategic-merge-patch+json"), "{w}");
    }
}

/// With FULL_LOOP_VERBOSE set: every request the server got (watches included).
fn dump(api: &ApiServer) {
    if std::env::var_os("FULL_LOOP_VERBOSE").is_some() {
        for r in api.requests() {
            eprintln!("{r}");
        }
    }
}

/// Watches for `d` more: what must NOT happen can only be seen not to happen over some time.
/// 2.5 s spans at least two admission cycles (`--cycle-every 1`, and one after every event).
fn observe(d: Duration) {
    std::thread::sleep(d);
}

/// The GPUs of a placement `node:0,1@time`, with its node and time.
fn parse_placement(p: &str) -> (String, Vec<u32>, String) {
    let (place, at) = p.rsplit_once('@').unwrap_or_else(|| panic!("placement {p:?} has no time"));
    let (node, gpus) = place.split_once(':').unwrap_or((place, ""));
    (
        node.to_string(),
        gpus.split(',').filter(|g| !g.is_empty()).map(|g| g.parse().unwrap()).collect(),
        at.to_string(),
    )
}

/// 2. A gang: a PyTorchJob's four pods (its size read from the PyTorchJob, found by discovery)
///    are admitted together, never some of them: with three of the four created nothing is
///    ungated; the fourth brings all four in one cycle.
#[test]
fn a_pytorchjob_gang_is_admitted_whole() {
    let dir = scratch("gang");
    let api = ApiServer::start(Options { serve: vec![PYTORCH_JOBS], ..Options::default() });
    api.create(node("gpu-0", 8));
    api.create(node("gpu-1", 8));
    let job = api.create(pytorch_job("team-a", "bert", 3));
    let job_uid = job["metadata"]["uid"].as_str().unwrap().to_string();
    for i in 0..3 {
        api.create(pytorch_pod("team-a", "bert", &job_uid, i));
    }
    let tenants = tenants_file(&dir, 8);
    let s = Scheduler::start(&api, &dir, "gantry-0", Some(&tenants));

    // The three wait, whole, and say why.
    let names = ["bert-master-0", "bert-worker-0", "bert-worker-1", "bert-worker-2"];
    api.wait_for("the three pods to say they wait for the rest of the gang", Duration::from_secs(20), || {
        names[..3]
            .iter()
            .all(|n| {
                condition(&api, "team-a", n).is_some_and(|c| {
                    c["status"] == "False"
                        && c["message"].as_str().unwrap_or_default().contains("3 of its 4 pods")
                })
            })
            .then_some(())
    });
    observe(Duration::from_millis(1500));
    assert!(ungates(&api).is_empty(), "a subset of the gang was ungated: {:?}", ungates(&api));

    api.create(pytorch_pod("team-a", "bert", &job_uid, 3));
    api.wait_for("all four pods bound", Duration::from_secs(20), || {
        api.with(|i| (i.binds.len() == 4).then_some(()))
    });
    let admitted = ungates(&api);
    assert_eq!(admitted.len(), 4, "each pod ungated once: {admitted:?}");
    let mut got: Vec<&str> = admitted.iter().map(|u| u.1.as_str()).collect();
    got.sort_unstable();
    assert_eq!(got, names, "the gang's four pods");
    // One admission: the same admission time, within one burst of writes, on distinct GPUs.
    let placements: Vec<(String, Vec<u32>, String)> =
        admitted.iter().map(|u| parse_placement(&u.2)).collect();
    assert!(placements.iter().all(|p| p.2 == placements[0].2), "one admission time: {placements:?}");
    let spread = admitted.iter().map(|u| u.3).max().unwrap() - admitted.iter().map(|u| u.3).min().unwrap();
    // Within one timed cycle (`--cycle-every 1`), with room for a loaded 2-core machine; the
    // shared admission time above is what says they were admitted together.
    assert!(spread < Duration::from_millis(900), "the four ungates are one cycle's writes, {spread:?} apart");
    let mut used: Vec<(String, u32)> =
        placements.iter().flat_map(|(n, g, _)| g.iter().map(move |g| (n.clone(), *g))).collect();
    used.sort_unstable();
    used.dedup();
    assert_eq!(used.len(), 4, "four distinct GPUs: {placements:?}");
    // The size came from the PyTorchJob, found by discovery and listed and watched.
    let requests = api.requests();
    assert!(
        requests.iter().any(|r| r.path == "/apis/kubeflow.org/v1" && r.status == 200),
        "discovery of kubeflow.org/v1"
    );
    assert!(
        requests.iter().any(|r| r.path == "/apis/kubeflow.org/v1/pytorchjobs" && r.verb == "watch"),
        "a watch of pytorchjobs"
    );
    assert_no_refusals(&api);
    dump(&api);
    drop(s);
}

/// 3. Quota edge: team-a's nominal quota (no cohort to borrow from) is one GPU short of the gang:
///    nothing is ungated, and every pod gets a Warning Event (GantryRefused) saying the gang can
///    never fit the tenant's quota; it is said once, not every cycle.
#[test]
fn a_gang_one_gpu_over_quota_is_refused_whole_and_says_why() {
    let dir = scratch("quota-edge");
    let api = ApiServer::start(Options { serve: vec![PYTORCH_JOBS], ..Options::default() });
    api.create(node("gpu-0", 8));
    let job = api.create(pytorch_job("team-a", "llm", 3));
    let job_uid = job["metadata"]["uid"].as_str().unwrap().to_string();
    let names = ["llm-master-0", "llm-worker-0", "llm-worker-1", "llm-worker-2"];
    for i in 0..4 {
        api.create(pytorch_pod("team-a", "llm", &job_uid, i));
    }
    let tenants = tenants_file(&dir, 3);
    let s = Scheduler::start(&api, &dir, "gantry-0", Some(&tenants));
    let refused = |n: &str, events: &[Value]| {
        events.iter().any(|e| {
            e["regarding"]["name"] == n
                && e["regarding"]["kind"] == "Pod"
                && e["type"] == "Warning"
                && e["reason"] == "GantryRefused"
        })
    };
    api.wait_for("a Warning Event on every pod", Duration::from_secs(20), || {
        let events: Vec<Value> = api.with(|i| i.objects(&EVENTS).cloned().collect());
        names.iter().all(|n| refused(n, &events)).then_some(())
    });
    observe(Duration::from_millis(2500));
    assert!(ungates(&api).is_empty(), "nothing may be ungated: {:?}", ungates(&api));
    assert!(api.binds().is_empty());
    // Before the PyTorchJob is read the pods may first be told they wait for it (a Normal Event
    // and the condition False, Waiting); once it is, the gang is refused whole.
    let events: Vec<Value> = api.with(|i| i.objects(&EVENTS).cloned().collect());
    let warnings: Vec<&Value> = events.iter().filter(|e| e["type"] == "Warning").collect();
    assert_eq!(warnings.len(), 4, "one Warning Event per pod: {warnings:?}");
    let note = warnings[0]["note"].as_str().unwrap_or_default().to_string();
    assert!(note.contains("at most 3") && note.contains("team-a"), "the Event names the quota: {note}");
    eprintln!("the refused gang's Event: {note}");
    for e in events.iter().filter(|e| e["type"] != "Warning") {
        let said = e["note"].as_str().unwrap_or_default();
        assert!(
            said.contains("to be read"),
            "the only other thing said is that the job is being read: {said}"
        );
    }
    let writes = api.writes();
    for w in writes.iter().filter(|w| w.path.contains("/events")) {
        assert_eq!(w.path.as_str(), "/apis/events.k8s.io/v1/namespaces/team-a/events", "{w}");
    }
    // Every pod ends with the condition False, Refused; no pod is started or changed otherwise.
    for name in &names {
        let ours = condition(&api, "team-a", name).expect("Gantry's condition");
        assert_eq!(
            (&ours["status"], &ours["reason"]),
            (&json!("False"), &json!("Refused")),
            "{name}: {ours}"
        );
    }
    assert!(
        writes.iter().all(|w| !w.path.contains("/pods/") || w.path.ends_with("/status")),
        "no pod is started or changed otherwise"
    );
    assert_no_refusals(&api);
    dump(&api);
    drop(s);
}

/// 4. Restart: a new scheduler after the old one stopped admits nothing twice (no ungate for a
///    running pod, not even after a forced relist), keeps the waiting pods' conditions, and
///    admits the waiting pods in their order when room frees.
#[test]
fn a_restart_admits_nothing_twice_and_keeps_the_order() {
    let dir = scratch("restart");
    let api = ApiServer::start(Options::default());
    api.create(node("gpu-0", 8));
    // team-a may hold one GPU: a-0 runs, a-1 then a-2 wait.
    for (name, created) in [("a-0", 30), ("a-1", 20), ("a-2", 10)] {
        api.create(gated_pod("team-a", name, 1, Some(&ago(created))));
    }
    let tenants = tenants_file(&dir, 1);
    let mut first = Scheduler::start(&api, &dir, "gantry-0", Some(&tenants));
    api.wait_for("a-0 bound, a-1 and a-2 waiting", Duration::from_secs(20), || {
        let waiting = ["a-1", "a-2"]
            .iter()
            .all(|n| condition(&api, "team-a", n).is_some_and(|c| c["status"] == "False"));
        (api.binds().iter().any(|b| b.name == "a-0") && waiting).then_some(())
    });
    let before = condition(&api, "team-a", "a-1").unwrap();
    let status = first.terminate(Duration::from_secs(10));
    assert!(status.success(), "a clean stop: {status}; stderr:\n{}", first.stderr());
    assert_eq!(lease_holder(&api), None, "the stopping leader released the Lease");

    let restarted = api.elapsed();
    let second = Scheduler::start(&api, &dir, "gantry-1", Some(&tenants));
    second.wait_line("gantry-1 leads", Duration::from_secs(10));
    observe(Duration::from_millis(2500));
    // A relist (the watch expired) rebuilds the queue again, from the same pods.
    api.expire_watches();
    api.wait_for("a relist rebuild", Duration::from_secs(15), || {
        (metric(&second.metrics(), "gantry_queue_rebuilds_total{cause=\"relist\"}") >= 1.0).then_some(())
    });
    observe(Duration::from_millis(1500));
    let after: Vec<_> = ungates(&api).into_iter().filter(|u| u.3 > restarted).collect();
    assert!(after.is_empty(), "the new scheduler ungated again: {after:?}");
    assert!(still_gated(&api, "team-a", "a-1") && still_gated(&api, "team-a", "a-2"));
    let kept = condition(&api, "team-a", "a-1").unwrap();
    assert_eq!(
        kept["lastTransitionTime"], before["lastTransitionTime"],
        "a waiting pod's condition keeps its transition time: {before} then {kept}"
    );

    // a-0 ends: a-1, the older, goes next; a-2 still waits.
    api.delete(&PODS, "team-a", "a-0");
    api.wait_for("a-1 bound", Duration::from_secs(15), || {
        api.with(|i| i.binds.iter().any(|b| b.name == "a-1").then_some(()))
    });
    observe(Duration::from_millis(1500));
    let after: Vec<String> = ungates(&api).into_iter().filter(|u| u.3 > restarted).map(|u| u.1).collect();
    assert_eq!(after, ["a-1"], "only a-1 admitted after the restart");
    assert!(still_gated(&api, "team-a", "a-2"));
    assert_no_refusals(&api);
    dump(&api);
}

/// 5. Two replicas: one leads (holds the Lease, only it writes pods); killed with SIGKILL, the
///    other takes over once the Lease expires; stopped with SIGTERM, it releases the Lease.
#[test]
fn two_replicas_one_leads_and_the_other_takes_over() {
    let dir = scratch("replicas");
    let api = ApiServer::start(Options::default());
    api.create(node("gpu-0", 8));
    let tenants = tenants_file(&dir, 8);
    let a = Scheduler::start(&api, &dir, "gantry-a", Some(&tenants));
    let b = Scheduler::start(&api, &dir, "gantry-b", Some(&tenants));
    let leader = api.wait_for("a Lease holder", Duration::from_secs(20), || lease_holder(&api));
    let (mut leader, follower) = if leader == "gantry-a" { (a, b) } else { (b, a) };
    leader.wait_line("leads", Duration::from_secs(10));
    api.wait_for("both report who leads", Duration::from_secs(10), || {
        (metric(&leader.metrics(), "gantry_leader") == 1.0
            && metric(&follower.metrics(), "gantry_leader") == 0.0)
            .then_some(())
    });
    api.create(gated_pod("team-a", "p-0", 1, None));
    api.wait_for("p-0 bound", Duration::from_secs(15), || {
        api.with(|i| i.binds.iter().any(|b| b.name == "p-0").then_some(()))
    });

    // SIGKILL: no release; the follower takes over at the Lease's expiry.
    leader.signal("-KILL");
    let killed = Instant::now();
    leader.wait_exit(Duration::from_secs(5));
    api.wait_for("the follower holds the Lease", Duration::from_secs(LEASE_SECONDS + 10), || {
        (lease_holder(&api).as_deref() == Some(follower.identity.as_str())).then_some(())
    });
    follower.wait_line(&format!("{} leads", follower.identity), Duration::from_secs(5));
    let takeover = killed.elapsed();
    eprintln!("takeover after SIGKILL: {takeover:?}");
    assert!(takeover <= Duration::from_secs(LEASE_SECONDS + 3), "takeover after SIGKILL took {takeover:?}");
    api.create(gated_pod("team-a", "p-1", 1, None));
    api.wait_for("p-1 bound", Duration::from_secs(15), || {
        api.with(|i| i.binds.iter().any(|b| b.name == "p-1").then_some(()))
    });
    // Only leaders wrote pods, and the new one did not ungate p-0 again.
    let pod_writers: Vec<(String, String)> =
        api.writes().into_iter().filter(|w| w.path.contains("/pods/")).map(|w| (w.client, w.path)).collect();
    for (client, path) in &pod_writers {
        let expected = if path.contains("p-0") { &leader.identity } else { &follower.identity };
        assert_eq!(client, expected, "{path} written by {client}");
    }
    assert_eq!(ungates(&api).len(), 2, "{:?}", ungates(&api));

    // SIGTERM: the Lease is released at once (holder cleared), before the process exits.
    let mut follower = follower;
    let status = follower.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert_eq!(lease_holder(&api), None, "released on SIGTERM");
    assert_no_refusals(&api);
    dump(&api);
    drop(leader);
}

/// Time from SIGTERM of the leader until the other replica holds the Lease, for a few handovers.
fn sigterm_handovers(rounds: usize, limit: Duration) -> Vec<Duration> {
    let dir = scratch("handover");
    let api = ApiServer::start(Options::default());
    api.create(node("gpu-0", 8));
    let tenants = tenants_file(&dir, 8);
    let mut replicas = vec![Scheduler::start(&api, &dir, "gantry-h0", Some(&tenants))];
    api.wait_for("gantry-h0 leads", Duration::from_secs(20), || {
        (lease_holder(&api).as_deref() == Some("gantry-h0")).then_some(())
    });
    let mut times = Vec::new();
    for round in 1..=rounds {
        let next = Scheduler::start(&api, &dir, &format!("gantry-h{round}"), Some(&tenants));
        next.wait_line("caches ready", Duration::from_secs(10));
        // Let the follower settle into waiting for the Lease.
        observe(Duration::from_millis(500));
        let mut leader = replicas.pop().unwrap();
        let stopped = Instant::now();
        leader.signal("-TERM");
        let deadline = stopped + limit;
        while lease_holder(&api).as_deref() != Some(next.identity.as_str()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let took = stopped.elapsed();
        times.push(took);
        eprintln!("SIGTERM handover {round}: {took:?}");
        assert!(leader.wait_exit(Duration::from_secs(10)).success());
        if took >= Duration::from_secs(LEASE_SECONDS) / 2 {
            // Over the bound: one measurement says it (each takes up to a Lease duration).
            break;
        }
        replicas.push(next);
    }
    times
}

/// 5b. SIGTERM handover, 30 times: the next replica leads well before the Lease could have
/// expired, so it took over because the stopping leader released it. (The bound here is half the
/// Lease's duration, not a timing target: tests are not benchmarks. The measured times, about
/// 0.5 s each, are in BENCHMARKS.md §10. With kube-lease-manager, before scheduler/src/lease.rs,
/// every handover took ~14.5 s: its follower slept until the expiry it last read.)
#[test]
fn a_sigterm_handover_does_not_wait_for_the_lease_to_expire() {
    let bound = Duration::from_secs(LEASE_SECONDS) / 2;
    let times = sigterm_handovers(30, Duration::from_secs(LEASE_SECONDS + 5));
    eprintln!("SIGTERM handovers: {times:?}");
    assert_eq!(times.len(), 30, "every handover measured: {times:?}");
    assert!(times.iter().all(|t| *t < bound), "handover times after SIGTERM: {times:?} (bound {bound:?})");
}

fn flavor(name: &str, model: &str) -> Value {
    json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "GpuFlavor", "metadata": {"name": name}, "spec": {"model": model, "price": "2.4"}})
}

fn cohort(name: &str) -> Value {
    json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "Cohort", "metadata": {"name": name}, "spec": {}})
}

fn tenant(name: &str, nominal: &str) -> Value {
    json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
           "spec": {"namespaces": [name], "quotas": {"a100": {"nominal": nominal}}}})
}

/// 6. Tenants from Tenant objects: the leader writes each Tenant's status (merge patch of the
///    status subresource); status writes are not tenant changes; a weight change is taken in
///    place, a namespace change rebuilds once; through all of it the older of two waiting pods
///    is admitted first.
#[test]
fn fifo_holds_across_tenant_status_writes_and_changes() {
    let dir = scratch("tenant-objects");
    let api = ApiServer::start(Options::default());
    api.create(node("gpu-0", 8));
    api.create(flavor("a100", "A100"));
    api.create(tenant("team-a", "1"));
    api.create(tenant("team-b", "4"));
    api.create(gated_pod("team-a", "r", 1, Some(&ago(30))));
    api.create(gated_pod("team-a", "old", 1, Some(&ago(20))));
    api.create(gated_pod("team-a", "new", 1, Some(&ago(10))));
    let s = Scheduler::start(&api, &dir, "gantry-0", None);
    api.wait_for("r running, team-a's status written", Duration::from_secs(20), || {
        let status = api.get(&TENANTS, "", "team-a")?["status"].clone();
        (api.binds().iter().any(|b| b.name == "r")
            && status["gpusUsed"] == "1"
            && status["pendingWorkloads"] == 2)
            .then_some(())
    });
    let status_write = api
        .writes()
        .into_iter()
        .find(|w| w.path == "/apis/gantry.dev/v1alpha1/tenants/team-a/status")
        .expect("a status write");
    assert!(status_write.content_type.starts_with("application/merge-patch+json"), "{status_write}");
    assert_eq!(status_write.body["status"]["gpusNominal"], "1", "{status_write}");

    // 100 status writes (another writer's, or this scheduler's own): no tenancy change.
    for i in 0..100 {
        let t = if i % 2 == 0 { "team-a" } else { "team-b" };
        api.update(&TENANTS, "", t, |o| o["status"]["observedWrites"] = json!(i)).unwrap();
    }
    observe(Duration::from_millis(2000));
    let page = s.metrics();
    assert_eq!(
        metric(&page, "gantry_queue_rebuilds_total{cause=\"tenants\"}"),
        0.0,
        "status writes rebuilt the queue:\n{page}"
    );
    assert_eq!(metric(&page, "gantry_queue_rebuilds_total{cause=\"start\"}"), 1.0, "{page}");
    assert!(still_gated(&api, "team-a", "old") && still_gated(&api, "team-a", "new"));

    // A weight change is taken into the queue in place; a namespace added to team-b changes
    // which tenant pods belong to, so the queue is rebuilt once. The order holds through both.
    api.update(&TENANTS, "", "team-b", |o| o["spec"]["weight"] = json!(2.0)).unwrap();
    api.wait_for("the weight taken in place", Duration::from_secs(10), || {
        (metric(&s.metrics(), "gantry_tenancy_updates_total") == 1.0).then_some(())
    });
    api.update(&TENANTS, "", "team-b", |o| o["spec"]["namespaces"] = json!(["team-b", "team-b-dev"]))
        .unwrap();
    api.wait_for("one tenants rebuild", Duration::from_secs(10), || {
        (metric(&s.metrics(), "gantry_queue_rebuilds_total{cause=\"tenants\"}") == 1.0).then_some(())
    });
    api.delete(&PODS, "team-a", "r");
    api.wait_for("old bound", Duration::from_secs(15), || {
        api.with(|i| i.binds.iter().any(|b| b.name == "old").then_some(()))
    });
    observe(Duration::from_millis(1500));
    let order: Vec<String> = ungates(&api).into_iter().map(|u| u.1).collect();
    assert_eq!(order, ["r", "old"], "the older waiting pod first, the newer still waiting");
    assert!(still_gated(&api, "team-a", "new"));
    let page = s.metrics();
    assert_eq!(metric(&page, "gantry_queue_rebuilds_total{cause=\"tenants\"}"), 1.0, "{page}");
    assert_eq!(metric(&page, "gantry_tenancy_updates_total"), 1.0, "{page}");
    assert_no_refusals(&api);
    dump(&api);
}

/// A pod already running where an earlier leader put it: ungated, bound to `node`, Running, its
/// placement (GPUs 0.. of `node`) recorded `placed` seconds ago.
fn running_pod(ns: &str, name: &str, gpus: u32, node: &str, placed: i64) -> Value {
    let mut pod = gated_pod(ns, name, gpus, Some(&ago(placed + 5)));
    pod["spec"].as_object_mut().unwrap().remove("schedulingGates");
    pod["spec"]["nodeName"] = json!(node);
    let devices: Vec<String> = (0..gpus).map(|g| g.to_string()).collect();
    let at = jiff::Timestamp::now().as_second() - placed;
    pod["metadata"]["annotations"] = json!({PLACEMENT: format!("{node}:{}@{at}", devices.join(","))});
    pod["status"] = json!({"phase": "Running", "qosClass": "Burstable",
                           "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]});
    pod
}

/// Every eviction the scheduler made: (namespace, pod, when).
fn evictions(api: &ApiServer) -> Vec<(String, String, Duration)> {
    api.writes()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/eviction") && r.status == 201)
        .map(|r| {
            let parts: Vec<&str> = r.path.split('/').collect();
            (parts[4].to_string(), parts[6].to_string(), r.at)
        })
        .collect()
}

/// The notes of the Events about pod `ns/name` with `reason`.
fn events_about(api: &ApiServer, ns: &str, name: &str, reason: &str) -> Vec<String> {
    api.with(|i| {
        i.objects(&EVENTS)
            .filter(|e| {
                e["regarding"]["namespace"] == ns && e["regarding"]["name"] == name && e["reason"] == reason
            })
            .map(|e| e["note"].as_str().unwrap_or_default().to_string())
            .collect()
    })
}

/// 7. Reclaim under churn: team-b borrows gpu-1 (8 GPUs beyond its nominal 8, from the cohort);
///    team-a, owed 8 GPUs of its nominal quota, gets them back once its pod has waited the
///    reclaim window (5 s here), although all along team-b's CPU pods come and go, another
///    writer writes Tenant statuses, and team-c's weight changes (a tenancy change taken in
///    place). None of it restarts the window: the borrowed workload, and only it, is evicted
///    within the window plus one cycle, and team-a's pod runs in its place.
#[test]
fn reclaim_under_churn_comes_within_the_window_plus_one_cycle() {
    let dir = scratch("reclaim-churn");
    let api = ApiServer::start(Options::default());
    api.create(node("gpu-0", 8));
    api.create(node("gpu-1", 8));
    api.create(flavor("a100", "A100"));
    api.create(cohort("pool"));
    for (name, nominal) in [("team-a", "8"), ("team-b", "8"), ("team-c", "0")] {
        let mut t = tenant(name, nominal);
        t["spec"]["cohort"] = json!("pool");
        api.create(t);
    }
    api.create(running_pod("team-b", "b-0", 8, "gpu-0", 900));
    api.create(running_pod("team-b", "b-1", 8, "gpu-1", 800));
    let settings = dir.join("settings.yaml");
    std::fs::write(&settings, "timing:\n  reclaimWindow: 5s\n  minRuntime: 0s\n").expect("settings file");
    let s = Scheduler::start_with(&api, &dir, "gantry-0", &["--settings".as_ref(), settings.as_os_str()]);
    api.wait_for("team-b's status: 8 borrowed", Duration::from_secs(20), || {
        (api.get(&TENANTS, "", "team-b")?["status"]["gpusBorrowed"] == "8").then_some(())
    });

    let window = Duration::from_secs(5);
    let cycle = Duration::from_secs(1);
    let created = api.elapsed();
    api.create(gated_pod("team-a", "owed", 8, None));
    let mut churn = 0;
    let evicted = loop {
        if let Some(e) = evictions(&api).into_iter().next() {
            break e;
        }
        assert!(
            api.elapsed() < created + window + Duration::from_secs(15),
            "no reclaim {:?} after team-a's pod was created; stderr:\n{}",
            api.elapsed() - created,
            s.stderr()
        );
        let etl = format!("etl-{churn}");
        let mut cpu = gated_pod("team-b", &etl, 0, None);
        cpu["spec"].as_object_mut().unwrap().remove("schedulingGates");
        cpu["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "2", "memory": "4Gi"}});
        api.create(cpu);
        api.update(&TENANTS, "", "team-b", |o| o["status"]["observedWrites"] = json!(churn)).unwrap();
        if churn % 3 == 0 {
            let weight = 1.0 + f64::from(churn) / 10.0;
            api.update(&TENANTS, "", "team-c", |o| o["spec"]["weight"] = json!(weight)).unwrap();
        }
        observe(Duration::from_millis(300));
        api.delete(&PODS, "team-b", &etl);
        churn += 1;
    };
    let took = evicted.2 - created;
    eprintln!("reclaimed {took:?} after team-a's pod was created, through {churn} rounds of churn");
    // Creation times are whole seconds (rounded), so the window may look up to a second shorter;
    // the bound allows one cycle, and a second for the processes and HTTP in between.
    assert!(took + Duration::from_secs(1) >= window, "reclaimed before the window: {took:?}");
    assert!(took <= window + cycle + Duration::from_secs(1), "reclaimed only after {took:?}");
    assert_eq!((evicted.0.as_str(), evicted.1.as_str()), ("team-b", "b-1"), "the borrowed workload");
    api.wait_for("owed bound", Duration::from_secs(10), || {
        api.binds().into_iter().find(|b| b.name == "owed").map(|b| b.node)
    });
    observe(Duration::from_millis(1500));
    let all = evictions(&api);
    assert_eq!(all.len(), 1, "one eviction, where one was enough: {all:?}");
    let why = events_about(&api, "team-b", "b-1", "GantryPreempted");
    assert!(
        why.len() == 1 && why[0].contains("reclaim borrowed capacity") && why[0].contains("team-a"),
        "the victim is told why: {why:?}"
    );
    assert_eq!(ungates(&api).into_iter().map(|u| u.1).collect::<Vec<_>>(), ["owed"]);
    let page = s.metrics();
    assert_eq!(metric(&page, "gantry_queue_rebuilds_total{cause=\"start\"}"), 1.0, "{page}");
    for cause in ["leader", "relist", "tenants"] {
        let series = format!("gantry_queue_rebuilds_total{{cause=\"{cause}\"}}");
        assert_eq!(metric(&page, &series), 0.0, "{series}:\n{page}");
    }
    assert!(metric(&page, "gantry_tenancy_updates_total") >= 1.0, "team-c's weight changes: {page}");
    assert_no_refusals(&api);
    dump(&api);
}

/// 8. Preemption by priority within a tenant: team-a's batch pod holds all of gpu-0, team-a's
///    whole quota; a notebook of team-a (priority 800 over batch's 100) asks for the 8 GPUs. The
///    batch pod is evicted through the Eviction API and told why in an Event; the notebook's
///    pod is ungated onto gpu-0; nothing else is written to pods.
#[test]
fn a_notebook_preempts_its_tenants_batch_work_through_the_eviction_api() {
    let dir = scratch("preemption");
    let api = ApiServer::start(Options::default());
    api.create(node("gpu-0", 8));
    api.create(running_pod("team-a", "etl", 8, "gpu-0", 3600));
    let tenants = tenants_file(&dir, 8);
    let s = Scheduler::start(&api, &dir, "gantry-0", Some(&tenants));
    s.wait_line("gantry-0 leads", Duration::from_secs(20));
    observe(Duration::from_millis(1500));
    assert!(evictions(&api).is_empty(), "nothing to preempt for yet");

    api.create(notebook_pod("team-a", "lab", 8));
    api.wait_for("lab-0 bound", Duration::from_secs(15), || {
        api.binds().into_iter().find(|b| b.name == "lab-0").map(|b| b.node)
    });
    observe(Duration::from_millis(1500));
    let evicted = evictions(&api);
    assert_eq!(
        evicted.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect::<Vec<_>>(),
        [("team-a", "etl")],
        "the batch pod, once"
    );
    let ungated = ungates(&api);
    assert_eq!(ungated.iter().map(|u| u.1.as_str()).collect::<Vec<_>>(), ["lab-0"]);
    assert!(ungated[0].3 >= evicted[0].2, "the victim is evicted before the notebook is let in");
    assert_eq!(parse_placement(&ungated[0].2).0, "gpu-0");
    let why = events_about(&api, "team-a", "etl", "GantryPreempted");
    assert!(
        why.len() == 1 && why[0].contains("higher-priority work") && why[0].contains("lab"),
        "the victim is told why: {why:?}"
    );
    // Pod writes: the eviction, the notebook's ungate and the conditions (status), nothing more.
    for w in api.writes().iter().filter(|w| w.path.contains("/pods/")) {
        let ok = w.path.ends_with("/pods/etl/eviction")
            || w.path.ends_with("/pods/lab-0")
            || w.path.ends_with("/status");
        assert!(ok, "unexpected pod write {w}");
    }
    assert_no_refusals(&api);
    dump(&api);
}

/// 9. Tenants that cannot be read at start (a Tenant names a Cohort nobody created): the
///    scheduler admits nothing, says why once (not every cycle), and leads as soon as the
///    Cohort is created.
#[test]
fn tenants_that_cannot_be_read_are_said_once_and_fixing_them_starts_the_queue() {
    let dir = scratch("bad-tenants");
    let api = ApiServer::start(Options::default());
    api.create(node("gpu-0", 8));
    api.create(flavor("a100", "A100"));
    let mut t = tenant("team-a", "8");
    t["spec"]["cohort"] = json!("pool");
    api.create(t);
    api.create(gated_pod("team-a", "p-0", 1, None));
    let s = Scheduler::start(&api, &dir, "gantry-0", None);
    s.wait_line("unknown cohort `pool`", Duration::from_secs(20));
    observe(Duration::from_millis(3000));
    let said = s.stderr.lock().unwrap().iter().filter(|l| l.contains("unknown cohort `pool`")).count();
    assert_eq!(said, 1, "said once over three cycles:\n{}", s.stderr());
    assert!(ungates(&api).is_empty());

    api.create(cohort("pool"));
    s.wait_line("gantry-0 leads", Duration::from_secs(10));
    api.wait_for("p-0 bound", Duration::from_secs(10), || {
        api.binds().into_iter().find(|b| b.name == "p-0").map(|b| b.node)
    });
    assert_no_refusals(&api);
}

/// A notebook pod as the notebook controller makes it: its StatefulSet's pod `NAME-0`, with
/// the `notebook-name` label, asking for `gpus` GPUs, gated by Gantry's webhook.
fn notebook_pod(ns: &str, name: &str, gpus: u32) -> Value {
    let mut pod = gated_pod(ns, &format!("{name}-0"), gpus, None);
    pod["metadata"]["labels"] = json!({"notebook-name": name, "statefulset": name, "app": name});
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "uid": "4f3c2a1e-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true}]);
    pod
}

/// 10. An eviction a PodDisruptionBudget refuses (429): the victim keeps running and stays
///     counted (the queue is rebuilt from the API server once), the notebook it was to make
///     room for is not let in and waits, and the queue does not ask again at once (the victim is
///     no victim for a while); when the victim ends, the notebook starts.
#[test]
fn an_eviction_a_disruption_budget_refuses_leaves_the_victim_counted_and_the_notebook_waiting() {
    let dir = scratch("pdb");
    let api = ApiServer::start(Options { serve: vec![PDBS], ..Options::default() });
    api.create(node("gpu-0", 8));
    api.create(running_pod("team-a", "etl", 8, "gpu-0", 3600));
    api.create(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "etl", "namespace": "team-a"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "etl"}}},
        "status": {"currentHealthy": 1, "desiredHealthy": 1, "disruptionsAllowed": 0, "expectedPods": 1, "observedGeneration": 1},
    }));
    let tenants = tenants_file(&dir, 8);
    let s = Scheduler::start(&api, &dir, "gantry-0", Some(&tenants));
    s.wait_line("gantry-0 leads", Duration::from_secs(20));
    api.create(notebook_pod("team-a", "lab", 8));
    api.wait_for("an eviction refused", Duration::from_secs(15), || {
        api.requests().into_iter().find(|r| r.path.ends_with("/pods/etl/eviction") && r.status == 429)
    });
    api.wait_for("a rebuild for the refused eviction", Duration::from_secs(10), || {
        (metric(&s.metrics(), "gantry_queue_rebuilds_total{cause=\"eviction\"}") == 1.0).then_some(())
    });
    observe(Duration::from_millis(3000));
    let tries = api.requests().into_iter().filter(|r| r.path.ends_with("/eviction")).count();
    assert_eq!(tries, 1, "asked once, not every cycle");
    assert_eq!(metric(&s.metrics(), "gantry_queue_rebuilds_total{cause=\"eviction\"}"), 1.0);
    assert!(api.get(&PODS, "team-a", "etl").is_some(), "the victim still runs");
    assert!(ungates(&api).is_empty(), "the notebook was not let in: {:?}", ungates(&api));
    assert!(still_gated(&api, "team-a", "lab-0"));
    let page = s.metrics();
    assert_eq!(
        metric(&page, "gantry_tenant_usage_milli{flavor=\"A100\",tenant=\"team-a\"}"),
        8000.0,
        "the victim's 8 GPUs are counted, not the waiting notebook's:\n{page}"
    );
    assert!(events_about(&api, "team-a", "etl", "GantryPreempted").is_empty(), "no preemption was done");

    // The batch job ends: the notebook starts in its place.
    api.delete(&PODS, "team-a", "etl");
    api.wait_for("lab-0 bound", Duration::from_secs(15), || {
        api.binds().into_iter().find(|b| b.name == "lab-0").map(|b| b.node)
    });
    assert_eq!(ungates(&api).len(), 1);
    assert_no_refusals(&api);
    dump(&api);
}
