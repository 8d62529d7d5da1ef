//! `gantry check tenants`, run as a platform engineer would: every mistake of a file in one run,
//! and warnings about quotas the cluster cannot hold, from a node list or from the cluster.

mod apiserver;

use apiserver::{ApiServer, Options};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gantry-check-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gantry(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gantry"));
    c.args(args).current_dir(dir).env("HOME", dir);
    c.env_remove("KUBERNETES_SERVICE_HOST").env_remove("KUBERNETES_SERVICE_PORT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the gantry binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Five mistakes, one per line marked: a price that is no number, an unknown parent cohort, an
/// unknown key, a quota of an undeclared flavor, a tenant without namespaces.
const FIVE_MISTAKES: &str = "\
currency: EUR
flavors:
  - {name: A100, price: 2.5}
  - {name: T4, price: cheap}        # 4
cohorts:
  - {name: research, parent: lab}   # 6
tenants:
  - name: team-a
    namespaces: [team-a]
    cohort: research
    quotas:
      A100: {nominal: 8}
    colour: blue                    # 13
  - name: team-b
    namespaces: [team-b]
    quotas:
      H100: {nominal: 4}            # 17
  - name: team-c                    # 18
    quotas:
      A100: {nominal: 2}
";

#[test]
fn a_file_with_five_mistakes_gets_five_errors_in_one_run() {
    let dir = scratch("five");
    std::fs::write(dir.join("tenants.yaml"), FIVE_MISTAKES).unwrap();
    let out = gantry(&dir, &["check", "tenants", "tenants.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let errors: Vec<&str> = stdout.lines().collect();
    let want = [
        ("tenants.yaml:4: flavors[1].price:", "not a number"),
        ("tenants.yaml:6: cohorts[0].parent:", "unknown cohort `lab`"),
        ("tenants.yaml:13: tenants[0].colour:", "unknown key `colour`"),
        ("tenants.yaml:17: tenants[1].quotas.H100:", "unknown flavor `H100`"),
        ("tenants.yaml:18: tenants[2].namespaces:", "missing required key `namespaces`"),
    ];
    assert_eq!(errors.len(), want.len(), "{stdout}");
    for (line, (at, what)) in errors.iter().zip(want) {
        assert!(line.starts_with(at) && line.contains(what), "{line:?} should be {at} ... {what}");
    }
    assert!(text(&out.stderr).contains("5 errors, 0 warnings"), "{}", text(&out.stderr));
}

#[test]
fn the_error_simulate_stops_at_is_among_them() {
    // The same parser, going on where `simulate` stops: the same words for the same mistake.
    let dir = scratch("same");
    std::fs::write(dir.join("tenants.yaml"), FIVE_MISTAKES).unwrap();
    let check = text(&gantry(&dir, &["check", "tenants", "tenants.yaml"], &[]).stdout);
    let simulate = text(&gantry(&dir, &["simulate", "--tenants", "tenants.yaml"], &[]).stderr);
    let stopped_at = simulate.trim().strip_prefix("error: ").unwrap();
    assert!(check.lines().any(|l| l == stopped_at), "{stopped_at:?} not in\n{check}");
}

const TENANTS: &str = "\
flavors: [{name: A100}, {name: H100}]
tenants:
  - {name: team-a, namespaces: [team-a], quotas: {A100: {nominal: 12}}}
  - {name: team-b, namespaces: [team-b], quotas: {A100: {nominal: 8}, H100: {nominal: 4}}}
";

/// What two 8-GPU A100 nodes and no H100 node make of [`TENANTS`].
fn assert_capacity_warnings(out: &Output) {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let warnings: Vec<&str> = stdout.lines().collect();
    assert_eq!(warnings.len(), 2, "{stdout}");
    assert!(
        warnings[0]
            .contains("A100: nominal quotas add up to 20 GPUs (team-a 12, team-b 8) but the cluster has 16"),
        "{stdout}"
    );
    assert!(
        warnings[1].contains("flavor H100: no node has this GPU model (the nodes have: A100)"),
        "{stdout}"
    );
}

#[test]
fn quotas_the_nodes_cannot_hold_are_warned_about() {
    let dir = scratch("nodes");
    std::fs::write(dir.join("tenants.yaml"), TENANTS).unwrap();
    std::fs::write(
        dir.join("nodes.csv"),
        "sn,cpu_milli,memory_mib,gpu,model\na,64000,524288,8,A100\nb,64000,524288,8,A100\n",
    )
    .unwrap();
    let out = gantry(&dir, &["check", "tenants", "tenants.yaml", "--nodes", "nodes.csv"], &[]);
    assert_capacity_warnings(&out);
    // Without nodes: no warnings, and a word on how to get them.
    let out = gantry(&dir, &["check", "tenants", "tenants.yaml"], &[]);
    assert!(out.status.success() && out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("give --nodes FILE or --cluster"), "{}", text(&out.stderr));
}

/// A GPU node as the kubelet, the device plugin and GPU Feature Discovery publish it.
fn node(name: &str) -> Value {
    let resources = json!({"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8", "pods": "110"});
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "A100", "nvidia.com/gpu.count": "8"}},
        "status": {"capacity": resources, "allocatable": resources},
    })
}

#[test]
fn with_cluster_the_nodes_come_from_one_list_call() {
    let api = ApiServer::start(Options { kubelet: false, ..Options::default() });
    api.create(node("a"));
    api.create(node("b"));
    let dir = scratch("cluster");
    std::fs::write(dir.join("tenants.yaml"), TENANTS).unwrap();
    let kubeconfig = api.write_kubeconfig(&dir, "check");
    let out =
        gantry(&dir, &["check", "tenants", "tenants.yaml", "--cluster"], &[("KUBECONFIG", &kubeconfig)]);
    assert_capacity_warnings(&out);
    let calls: Vec<(String, String)> =
        api.requests().into_iter().map(|r| (r.method, r.path)).filter(|(_, p)| p != "/version").collect();
    assert_eq!(calls, [("GET".to_string(), "/api/v1/nodes".to_string())]);
}
