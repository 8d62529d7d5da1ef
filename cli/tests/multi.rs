//! `gantry simulate --tenants`, run as a user would.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn gantry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .current_dir(repo())
        .args(args)
        .output()
        .expect("the gantry binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fails_with(out: &Output, words: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    for w in words {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
}

const SMALL: &[&str] =
    &["simulate", "--tenants", "examples/tenants/venus.yaml", "--workloads", "1500", "--days", "2"];

#[test]
fn json_report_compares_gantry_with_both_baselines() {
    let mut args = SMALL.to_vec();
    args.extend(["--format", "json"]);
    let out = gantry(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let setups = v["setups"].as_array().expect("setups");
    let names: Vec<&str> = setups.iter().map(|s| s["setup"].as_str().unwrap()).collect();
    assert_eq!(names, ["gantry", "strict-quota", "fifo"]);
    for s in setups {
        assert_eq!(s["ledger_exact"], Value::Bool(true), "{}", s["setup"]);
        assert_eq!(s["tenants"].as_array().unwrap().len(), 18);
        assert!(s["samples"].as_array().unwrap().len() >= 48, "hourly samples over two days");
        let n = |k: &str| s[k].as_u64().unwrap();
        assert_eq!(
            n("submitted"),
            n("finished") + n("running_at_end") + n("waiting_at_end") + n("refused"),
            "every workload ends in exactly one state"
        );
        assert!(n("admitted") <= n("submitted") - n("refused"));
    }
    let alloc = |i: usize| setups[i]["mean_allocated_pct"].as_f64().unwrap();
    assert!(
        alloc(0) > alloc(1),
        "borrowing uses more of the cluster than strict quotas: {} vs {}",
        alloc(0),
        alloc(1)
    );
    assert_eq!(setups[2]["preemptions"].as_u64(), Some(0), "FIFO never preempts");
}

#[test]
fn table_names_each_setup_and_tenant() {
    let mut args = SMALL.to_vec();
    args.extend(["--compare", "strict-quota"]);
    let out = gantry(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    for w in ["gantry", "strict-quota", "vc-a", "vc-r", "violations", "jain", "exactly the integral"] {
        assert!(t.contains(w), "{w:?} missing from the table:\n{t}");
    }
    assert!(!t.contains("\nfifo "), "fifo was not asked for");
}

#[test]
fn openb_workload_runs_with_the_openb_tenants() {
    let out = gantry(&[
        "simulate",
        "--tenants",
        "examples/tenants/openb.yaml",
        "--workload",
        "openb",
        "--days",
        "20",
        "--compare",
        "none",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["setups"].as_array().unwrap().len(), 1);
    assert!(v["workload"].as_str().unwrap().contains("8152 pods"));
    // The trace asks for far less than the cluster holds, and the user is told why every wait is 0.
    let note = text(&out.stderr);
    assert!(note.contains("% of the cluster's GPU-time") && note.contains("nothing waits"), "{note}");
}

#[test]
fn a_trace_that_fills_the_cluster_gets_no_light_load_note() {
    // The openb pods on one node of each of its models: they contend, so there is nothing to
    // explain.
    let dir = std::env::temp_dir().join(format!("gantry-multi-nodes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let all = std::fs::read_to_string(repo().join("traces/openb/openb_node_list_gpu_node.csv")).unwrap();
    let mut seen = std::collections::HashSet::new();
    let few: String = all
        .lines()
        .enumerate()
        .filter(|(i, l)| *i == 0 || seen.insert(l.rsplit(',').next().unwrap_or("").to_string()))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let nodes = dir.join("nodes.csv");
    std::fs::write(&nodes, few).unwrap();
    let out = gantry(&[
        "simulate",
        "--tenants",
        "examples/tenants/openb.yaml",
        "--workload",
        "openb",
        "--nodes",
        nodes.to_str().unwrap(),
        "--compare",
        "none",
        "--format",
        "json",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("nothing waits"), "{}", text(&out.stderr));
}

#[test]
fn bad_multi_tenant_arguments_say_what_to_fix() {
    fails_with(&gantry(&["simulate", "--compare", "fifo"]), &["--compare needs --tenants"]);
    fails_with(
        &gantry(&["simulate", "--tenants", "examples/tenants/venus.yaml", "--compare", "lottery"]),
        &["lottery", "strict-quota or fifo"],
    );
    fails_with(
        &gantry(&["simulate", "--tenants", "examples/tenants/venus.yaml", "--format", "csv"]),
        &["table or json"],
    );
    fails_with(
        &gantry(&["simulate", "--tenants", "examples/tenants/venus.yaml", "--load", "0"]),
        &["--load"],
    );
    fails_with(
        &gantry(&["simulate", "--tenants", "examples/tenants/venus.yaml", "--days", "0"]),
        &["--days"],
    );
    fails_with(&gantry(&["simulate", "--tenants", "no/such.yaml"]), &["no/such.yaml", "cannot read"]);
    // The openb tenants name GPU models the Venus cluster does not have.
    fails_with(
        &gantry(&["simulate", "--tenants", "examples/tenants/openb.yaml"]),
        &["openb.yaml", "flavor", "not the GPU model of any node"],
    );
}

#[test]
fn a_bad_tenants_file_names_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("gantry-multi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tenants.yaml");
    std::fs::write(&file, "flavors:\n  - name: A100\ntenants:\n  - name: a\n    namespaces: [a]\n    quotas:\n      H100: {nominal: 8}\n").unwrap();
    let out = gantry(&["simulate", "--tenants", file.to_str().unwrap()]);
    fails_with(&out, &["tenants.yaml:7", "H100"]);
}

/// `simulate --serve` on a month paced to last hours, stopped by `signal` once it serves: the
/// process ends at once (exit 0), mid-run, and says nothing of an error.
fn serve_stops_on(signal: &str) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let tenants = repo().join("examples/tenants/venus.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["simulate", "--tenants", tenants.to_str().unwrap(), "--workloads", "2000"])
        .args(["--serve", "127.0.0.1:0", "--speed", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let serving = lines.by_ref().map_while(Result::ok).any(|l| l.contains("dashboard at http://"));
    assert!(serving, "the dashboard line");
    let said = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let sent = Instant::now();
    let kill = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    // Polled rather than waited on, so that a process that never stops fails the test instead
    // of hanging it.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("simulate --serve still running 30 s after {signal}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = sent.elapsed();
    let said = said.join().unwrap();
    assert!(status.success(), "{signal}: {status}; stderr: {said}");
    assert!(!said.contains("error") && !said.contains("done in"), "stopped mid-run, quietly: {said}");
    // The run is paced to last hours; a loaded CI machine still ends it within seconds.
    assert!(took < Duration::from_secs(3), "{signal}: exited {took:?} after the signal");
}

#[test]
fn serve_stops_at_once_on_sigterm() {
    serve_stops_on("-TERM");
}

#[test]
fn serve_stops_at_once_on_sigint() {
    serve_stops_on("-INT");
}
