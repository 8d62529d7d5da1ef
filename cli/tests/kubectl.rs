//! `kubectl gantry` against an API-server-shaped test server: the exact calls it makes and what
//! it prints for a crowded queue, as a user sees it.

mod apiserver;
mod common;

use apiserver::{ApiServer, Options};
use common::Served;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gantry-kubectl-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `kubectl gantry ARGS`: the binary run under kubectl's plugin name, as kubectl runs it.
fn kubectl_gantry(api: &ApiServer, dir: &Path, args: &[&str]) -> Output {
    let plugin = dir.join("kubectl-gantry");
    if !plugin.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_gantry"), &plugin).unwrap();
    }
    let kubeconfig = api.write_kubeconfig(dir, "kubectl");
    Command::new(&plugin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .expect("the plugin runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A GPU pod as Gantry's webhook and queue controller leave it: gated, labelled with its tenant
/// and kind, and with the controller's condition when it has one.
fn pod(ns: &str, name: &str, tenant: &str, workload: Option<&str>, condition: Option<(&str, &str)>) -> Value {
    let mut annotations = json!({});
    if let Some(w) = workload {
        annotations = json!({"gantry.dev/workload": w, "gantry.dev/gang-size": "2"});
    }
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-12-01T10:00:00Z",
                     "labels": {"gantry.dev/tenant": tenant, "gantry.dev/kind": "training"}, "annotations": annotations},
        "spec": {"schedulingGates": [{"name": "gantry.dev/admission"}],
                 "containers": [{"name": "main", "image": "trainer", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
        "status": {"phase": "Pending"},
    });
    if let Some((reason, message)) = condition {
        pod["status"]["conditions"] =
            json!([{"type": "gantry.dev/admitted", "status": "False", "reason": reason, "message": message}]);
    }
    pod
}

/// team-a's crowded queue: a gang of two at position 1, a single pod at 2 with an estimate, a
/// refused pod, a gated pod the controller has not seen, and a running pod (not listed).
fn crowded(api: &ApiServer) {
    let first = "waiting for quota: needs 16 GPUs; team-a uses 8 of its 8 nominal and cohort research can lend 4 more; position 1 of 2 in team-a's queue";
    let second = "queued behind 1 other workloads of team-a; position 2 of 2 in team-a's queue; estimated start in 3h 20m";
    let refused = "asks for 64 GPUs of model H100, more than the cluster has (16)";
    api.create(pod("team-a", "llm-worker-0", "team-a", Some("pytorchjob/llm"), Some(("Waiting", first))));
    api.create(pod("team-a", "llm-worker-1", "team-a", Some("pytorchjob/llm"), Some(("Waiting", first))));
    api.create(pod("team-a", "sweep-7", "team-a", None, Some(("Waiting", second))));
    api.create(pod("team-a", "huge", "team-a", None, Some(("Refused", refused))));
    api.create(pod("team-a", "fresh", "team-a", None, None));
    let mut running = pod("team-a", "done", "team-a", None, Some(("Released", "admitted")));
    running["spec"].as_object_mut().unwrap().remove("schedulingGates");
    running["status"]["conditions"][0]["status"] = json!("True");
    api.create(running);
    api.create(pod("team-b", "other", "team-b", None, None));
}

/// Every request the plugin made, as method, path and query.
fn reads(api: &ApiServer) -> Vec<String> {
    api.requests()
        .into_iter()
        .map(|r| {
            if r.query.is_empty() {
                format!("{} {}", r.method, r.path)
            } else {
                format!("{} {}?{}", r.method, r.path, r.query)
            }
        })
        .collect()
}

#[test]
fn queue_lists_a_crowded_namespace_in_queue_order_with_one_call() {
    let api = ApiServer::start(Options { kubelet: false, ..Options::default() });
    crowded(&api);
    let dir = scratch("queue");
    let out = kubectl_gantry(&api, &dir, &["queue", "-n", "team-a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let cells = |l: &str| {
        l.split("   ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(cells(lines[0]), ["WORKLOAD", "TENANT", "POSITION", "ESTIMATED START", "STATE", "REASON"]);
    assert_eq!(lines.len(), 5, "{stdout}");
    assert_eq!(cells(lines[1])[..5], ["pytorchjob/llm", "team-a", "1/2", "-", "Waiting"], "{stdout}");
    assert!(
        lines[1].ends_with("team-a uses 8 of its 8 nominal and cohort research can lend 4 more"),
        "{stdout}"
    );
    assert_eq!(cells(lines[2])[..5], ["sweep-7", "team-a", "2/2", "in 3h 20m", "Waiting"], "{stdout}");
    assert_eq!(cells(lines[3])[..5], ["fresh", "team-a", "-", "-", "Gated"], "{stdout}");
    assert_eq!(cells(lines[4])[..5], ["huge", "team-a", "-", "-", "Refused"], "{stdout}");
    assert_eq!(reads(&api), ["GET /api/v1/namespaces/team-a/pods"]);

    // -o json: the same rows, as data; the gang counts its two pods.
    let out = kubectl_gantry(&api, &dir, &["queue", "-n", "team-a", "-o", "json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["workload"], "pytorchjob/llm");
    assert_eq!(rows[0]["pods"], 2);
    assert_eq!(rows[1]["estimatedStartIn"], "3h 20m");
}

#[test]
fn queue_of_a_tenant_reads_pods_by_its_label_across_namespaces() {
    let api = ApiServer::start(Options { kubelet: false, ..Options::default() });
    crowded(&api);
    let dir = scratch("tenant");
    let out = kubectl_gantry(&api, &dir, &["queue", "--tenant", "team-b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.lines().next().unwrap().starts_with("NAMESPACE"), "{stdout}");
    let row: Vec<&str> = stdout.lines().nth(1).unwrap().split_whitespace().take(3).collect();
    assert_eq!(row, ["team-b", "other", "team-b"], "{stdout}");
    assert_eq!(reads(&api), ["GET /api/v1/pods?&labelSelector=gantry.dev%2Ftenant%3Dteam-b"]);
}

#[test]
fn explain_says_what_the_pod_waits_for_in_the_conditions_words() {
    let api = ApiServer::start(Options { kubelet: false, ..Options::default() });
    crowded(&api);
    let dir = scratch("explain");
    let out = kubectl_gantry(&api, &dir, &["explain", "sweep-7", "-n", "team-a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in [
        "Pod:            team-a/sweep-7",
        "Tenant:         team-a",
        "State:          Waiting",
        "Message:        queued behind 1 other workloads of team-a; position 2 of 2 in team-a's queue; estimated start in 3h 20m",
        "Position:       2 of 2",
        "Estimated start:in 3h 20m",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} missing from\n{stdout}");
    }
    assert_eq!(reads(&api), ["GET /api/v1/namespaces/team-a/pods?&fieldSelector=metadata.name%3Dsweep-7"]);
    let missing = kubectl_gantry(&api, &dir, &["explain", "nope", "-n", "team-a"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("pod nope not found in namespace team-a"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn tenants_shows_each_tenants_status() {
    let api = ApiServer::start(Options { kubelet: false, ..Options::default() });
    api.create(json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "team-a"},
        "spec": {"namespaces": ["team-a", "team-a-dev"], "cohort": "research", "quotas": {"A100": {"nominal": "8"}}},
        "status": {"gpusUsed": "12", "gpusNominal": "12", "gpusBorrowed": "4", "pendingWorkloads": 3,
                   "models": [{"name": "A100", "used": "12", "nominal": "8", "borrowed": "4"},
                              {"name": "H100", "used": "0", "nominal": "4", "borrowed": "0"}]},
    }));
    let dir = scratch("tenants");
    let out = kubectl_gantry(&api, &dir, &["tenants"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows[0],
        ["NAME", "COHORT", "GPUS", "USED", "NOMINAL", "BORROWED", "PENDING", "BY", "MODEL", "NAMESPACES"]
    );
    assert_eq!(
        rows[1],
        ["team-a", "research", "12", "12", "4", "3", "A100", "12/8+4,H100", "0/4", "team-a,team-a-dev"]
    );
    assert_eq!(reads(&api), ["GET /apis/gantry.dev/v1alpha1/tenants"]);
}

#[test]
fn tenants_shows_the_namespaces_selectors_matched_and_conflicts() {
    let api = ApiServer::start(Options { kubelet: false, ..Options::default() });
    // As the scheduler writes them for the Tenants of examples/kubernetes/profile-tenants.yaml
    // when vision also lists alice's namespace.
    let selector = json!({"matchLabels": {"app.kubernetes.io/part-of": "kubeflow-profile", "example.com/team": "vision"}});
    let conflict = json!([{"namespace": "alice", "tenants": ["alice", "vision"]}]);
    api.create(json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "vision"},
        "spec": {"namespaces": ["alice"], "namespaceSelector": selector},
        "status": {"gpusUsed": "1", "pendingWorkloads": 0, "namespaces": ["carol", "dan"], "conflicts": conflict},
    }));
    api.create(json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "alice"},
        "spec": {"namespaces": ["alice"]},
        "status": {"gpusUsed": "0", "pendingWorkloads": 0, "conflicts": conflict},
    }));
    let dir = scratch("tenants-selected");
    let out = kubectl_gantry(&api, &dir, &["tenants"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string)
    };
    assert_eq!(last("vision").as_deref(), Some("carol,dan,alice!(alice,vision)"), "{stdout}");
    assert_eq!(last("alice").as_deref(), Some("alice!(alice,vision)"), "{stdout}");
    let out = kubectl_gantry(&api, &dir, &["tenants", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let vision = rows.as_array().and_then(|r| r.iter().find(|t| t["name"] == "vision")).expect("vision");
    assert_eq!(vision["namespaces"], json!(["carol", "dan"]));
    assert_eq!(vision["conflicts"], conflict);
}

#[test]
fn cost_sums_the_quota_apis_lines_for_the_period() {
    let served = Served::start(&["--workloads", "300", "--days", "1", "--load", "3"]);
    let at = served.api("/api/v1/tenants")["at"].as_i64().unwrap();
    let api = served.api(&format!("/api/v1/cost?from={}&to={at}", at - 86_400));
    let lines = api["lines"].as_array().unwrap();
    assert!(!lines.is_empty(), "the crowded day cost something: {api}");
    let url = format!("http://{}", served.addr);
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["kubectl", "cost", "--quota-api", &url, "--token", &served.token])
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, stdout, stderr) = run(&["--since", "1d"]);
    assert_eq!(code, Some(0), "{stderr}");
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["TENANT", "MODEL", "GPU-HOURS", "BORROWED", "IDLE", "COST", "(USD)"], "{stdout}");
    assert_eq!(rows.len(), lines.len() + 2, "a row per line and a total: {stdout}");
    let total: f64 = lines.iter().map(|l| l["totalCost"].as_f64().unwrap()).sum();
    assert_eq!(rows.last().unwrap(), &["total", &format!("{total:.2}")][..], "{stdout}");
    // One tenant's, as the API gives it.
    let tenant = lines[0]["tenant"].as_str().unwrap();
    let (_, stdout, _) = run(&["--since", "1d", "--tenant", tenant, "-o", "json"]);
    let mine: Value = serde_json::from_str(&stdout).unwrap();
    assert!(mine["lines"].as_array().unwrap().iter().all(|l| l["tenant"] == tenant), "{stdout}");
    // A duration that is not one.
    let (code, _, stderr) = run(&["--since", "a week"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--since \"a week\" is not a duration"), "{stderr}");
}

#[test]
fn hold_and_release_mark_every_waiting_pod_of_the_workload() {
    let api = ApiServer::start(Options { kubelet: false, ..Options::default() });
    crowded(&api);
    let dir = scratch("hold");
    // By the name of one of its pods: the whole gang is held.
    let out = kubectl_gantry(
        &api,
        &dir,
        &["hold", "llm-worker-1", "-n", "team-a", "--reason", "alice: data check"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "workload pytorchjob/llm held (2 pods)\n");
    let hold = |name: &str| {
        api.get(&apiserver::PODS, "team-a", name).unwrap()["metadata"]["annotations"]["gantry.dev/hold"]
            .clone()
    };
    assert_eq!(
        (hold("llm-worker-0"), hold("llm-worker-1")),
        (json!("alice: data check"), json!("alice: data check"))
    );
    assert_eq!(hold("sweep-7"), Value::Null, "other workloads are untouched");
    let calls = reads(&api);
    assert_eq!(calls[0], "GET /api/v1/namespaces/team-a/pods");
    assert_eq!(
        calls[1..],
        [
            "PATCH /api/v1/namespaces/team-a/pods/llm-worker-0",
            "PATCH /api/v1/namespaces/team-a/pods/llm-worker-1"
        ]
    );
    // Released by the workload's name: the mark is gone.
    let out = kubectl_gantry(&api, &dir, &["release", "pytorchjob/llm", "-n", "team-a"]);
    assert_eq!(text(&out.stdout), "workload pytorchjob/llm released (2 pods)\n", "{}", text(&out.stderr));
    assert_eq!((hold("llm-worker-0"), hold("llm-worker-1")), (Value::Null, Value::Null));
    // What is not waiting, or not there, is said so.
    let out = kubectl_gantry(&api, &dir, &["hold", "done", "-n", "team-a"]);
    assert!(text(&out.stderr).contains("workload done is not waiting"), "{}", text(&out.stderr));
    let out = kubectl_gantry(&api, &dir, &["hold", "nope", "-n", "team-a"]);
    assert!(
        text(&out.stderr).contains("no workload or pod nope in namespace team-a"),
        "{}",
        text(&out.stderr)
    );
}

/// `kubectl gantry explain nb-0` on a running notebook whose node carries `annotations`; the
/// `GPUs:` line and the reads made.
fn explain_notebook(annotations: Value) -> (String, Vec<String>) {
    let api = ApiServer::start(Options { kubelet: false, ..Options::default() });
    api.create(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-0",
            "labels": {"nvidia.com/gpu.product": "A100"}, "annotations": annotations},
        "status": {"allocatable": {"cpu": "128", "memory": "1Ti", "nvidia.com/gpu": "8"}},
    }));
    api.create(json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "team-a"},
        "spec": {"namespaces": ["team-a"], "quotas": {"A100": {"nominal": "8"}}, "idleNotebooks": {"stopAfter": "2h"}},
    }));
    api.create(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nb-0", "namespace": "team-a", "uid": "u-nb",
                     "labels": {"notebook-name": "nb", "gantry.dev/tenant": "team-a", "gantry.dev/kind": "notebook"},
                     "annotations": {"gantry.dev/workload": "team-a/notebook/nb"}},
        "spec": {"nodeName": "gpu-0", "containers": [{"name": "nb", "image": "jupyter"}]},
        "status": {"phase": "Running", "conditions": [{"type": "gantry.dev/admitted", "status": "True", "reason": "Admitted",
                   "message": "admitted by Gantry's queue; planned for node gpu-0"}]},
    }));
    // A folder per call: the tests that call this run at the same time.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = scratch(&format!("explain-notebook-{n}"));
    let out = kubectl_gantry(&api, &dir, &["explain", "nb-0", "-n", "team-a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("GPUs:"))
        .unwrap_or_else(|| panic!("no GPUs line in\n{stdout}"))
        .to_string();
    (line, reads(&api))
}

#[test]
fn explain_shows_a_running_notebooks_idle_evidence_and_its_tenants_rule() {
    let now = jiff::Timestamp::now().as_second();
    let since = now - 5400;
    let (line, reads) = explain_notebook(json!({
        "gantry.dev/gpu-idle-pods": format!("{{\"team-a/nb-0\": {since}}}"),
        "gantry.dev/gpu-idle-checked-at": (now - 30).to_string(),
    }));
    assert!(line.contains("idle for 1h 30m") || line.contains("idle for 1h 31m"), "{line}");
    assert!(
        line.contains("tenant team-a stops notebooks idle for 2h when work waits for their GPUs"),
        "{line}"
    );
    assert_eq!(
        reads,
        [
            "GET /api/v1/namespaces/team-a/pods?&fieldSelector=metadata.name%3Dnb-0",
            "GET /api/v1/nodes?&fieldSelector=metadata.name%3Dgpu-0",
            // This account may not `get` Tenants (a tenant's users may, their own): then a list
            // narrowed to the name.
            "GET /apis/gantry.dev/v1alpha1/tenants/team-a",
            "GET /apis/gantry.dev/v1alpha1/tenants?&fieldSelector=metadata.name%3Dteam-a",
        ]
    );
}

/// Evidence the node agent stopped confirming, or never confirmed, is not used by the queue
/// controller; explain says so, and what to check, instead of showing it as current.
#[test]
fn explain_says_when_the_idle_evidence_is_too_old_to_be_used() {
    let now = jiff::Timestamp::now().as_second();
    let idle = format!("{{\"team-a/nb-0\": {}}}", now - 5400);
    let (line, _) = explain_notebook(json!({
        "gantry.dev/gpu-idle-pods": idle,
        "gantry.dev/gpu-idle-checked-at": (now - 3600).to_string(),
    }));
    assert!(
        line.contains("unknown: the node agent on gpu-0 last confirmed its idle evidence 1h 0m ago"),
        "{line}"
    );
    assert!(
        line.contains("is Gantry's node agent running on gpu-0?")
            && !line.contains("no kernel on its GPUs since"),
        "{line}"
    );
    let (line, _) = explain_notebook(json!({
        "gantry.dev/gpu-idle-pods": idle,
        "gantry.dev/gpu-idle-checked-at": (now + 7200).to_string(),
    }));
    assert!(
        line.contains("2h 0m ahead of this clock") && line.contains("check the clock of node gpu-0"),
        "{line}"
    );
    let (line, _) = explain_notebook(json!({"gantry.dev/gpu-idle-pods": idle}));
    assert!(
        line.contains("without gantry.dev/gpu-idle-checked-at") && line.contains("upgrade the node agent"),
        "{line}"
    );
}
