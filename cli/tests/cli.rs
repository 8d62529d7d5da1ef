//! The `gantry` binary, run as a user would, on small trace files written for each test.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NODES: &str = "sn,cpu_milli,memory_mib,gpu,model
n1,64000,262144,8,V100
n2,64000,262144,8,V100
n3,32000,131072,4,T4
n4,32000,131072,4,T4
n5,16000,65536,2,T4
n6,16000,65536,1,V100
";

const PODS_HEADER: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n";

/// A mix of CPU-only, sharing, whole-GPU and model-restricted pods, about 60 % of the GPUs.
fn pods_csv() -> String {
    let shapes = [
        "4000,8192,0,0,",
        "6000,12288,1,460,",
        "8000,16384,1,1000,",
        "2000,4096,1,250,T4",
        "16000,65536,2,1000,V100",
    ];
    let mut s = String::from(PODS_HEADER);
    for i in 0..30 {
        s += &format!("pod-{i:03},{}\n", shapes[i % shapes.len()]);
    }
    s
}

/// A fresh directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gantry-cli-tests-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the node list and `pods` into `dir`; returns their paths.
fn write_trace(dir: &Path, pods: &str) -> (PathBuf, PathBuf) {
    let (n, p) = (dir.join("nodes.csv"), dir.join("openb_pod_list_tiny.csv"));
    std::fs::write(&n, NODES).unwrap();
    std::fs::write(&p, pods).unwrap();
    (n, p)
}

fn gantry_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the gantry binary runs")
}

/// `gantry simulate --nodes .. --pods ..` plus `args`, on the small trace.
fn simulate(test: &str, pods: &str, args: &[&str]) -> (Output, PathBuf) {
    let dir = scratch(test);
    let (n, p) = write_trace(&dir, pods);
    let mut all = vec!["simulate", "--nodes", n.to_str().unwrap(), "--pods", p.to_str().unwrap()];
    all.extend_from_slice(args);
    (gantry_in(&dir, &all), dir)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "exit {:?}\nstderr: {}", out.status, text(&out.stderr));
}

/// Asserts exit code 2, nothing on stdout, and every one of `words` in the error.
fn assert_fails(out: &Output, words: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    for w in words {
        assert!(err.contains(w), "stderr does not mention {w:?}: {err}");
    }
}

#[test]
fn json_output_parses() {
    let (out, _) =
        simulate("json", &pods_csv(), &["--policies", "fgd,best-fit", "--seeds", "42", "--format", "json"]);
    assert_ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["trace"]["name"], "tiny");
    assert_eq!(v["trace"]["nodes"], 6);
    assert_eq!(v["trace"]["gpus"], 27);
    assert_eq!(v["trace"]["pods"], 30);
    assert_eq!(v["seeds"], serde_json::json!([42]));
    let results = v["results"].as_array().unwrap();
    let names: Vec<&str> = results.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(names, ["fgd", "best-fit"]);
    for r in results {
        let at100 = r["unallocated_gpu_pct"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["arrived"] == 100)
            .expect("a value at 100 %");
        let mean = at100["mean"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&mean), "{r}");
    }
}

#[test]
fn csv_output_has_a_header_and_a_row_per_point() {
    let (out, _) =
        simulate("csv", &pods_csv(), &["--policies", "fgd,best-fit", "--seeds", "42,43", "--format", "csv"]);
    assert_ok(&out);
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("trace,policy,seeds,arrived_pct,unallocated_gpu_pct_mean,unallocated_gpu_pct_sd,unallocated_gpu_pct_median,fragmentation_pct_at_100_mean,failed_pods_mean,wall_seconds_per_run")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty());
    for row in &rows {
        assert!(row.starts_with("tiny,fgd,2,") || row.starts_with("tiny,best-fit,2,"), "{row}");
        assert_eq!(row.split(',').count(), 10, "{row}");
    }
    assert!(
        rows.iter().any(|r| r.starts_with("tiny,fgd,2,100,"))
            && rows.iter().any(|r| r.starts_with("tiny,best-fit,2,100,"))
    );
}

#[test]
fn table_is_the_default_format() {
    let (out, _) = simulate("table", &pods_csv(), &["--policies", "random,packing", "--seeds", "1-3"]);
    assert_ok(&out);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Trace tiny: 6 nodes, 27 GPUs, 30 pods") && stdout.contains("3 seeds (1-3)"),
        "{stdout}"
    );
    assert!(stdout.contains("random") && stdout.contains("packing"), "{stdout}");
}

#[test]
fn bad_csv_names_file_and_line() {
    let pods = format!("{}{}", pods_csv(), "pod-bad,abc,1024,1,500,\n");
    let (out, dir) = simulate("bad-csv", &pods, &["--seeds", "42"]);
    let file = dir.join("openb_pod_list_tiny.csv");
    // The header is line 1 and 30 good pods follow: the bad pod is line 32.
    assert_fails(&out, &[&format!("{}:32: cpu_milli is \"abc\"", file.display())]);
    assert!(out.stdout.is_empty());

    let pods = format!("{PODS_HEADER}p1,1000,1024,1,500,H100\n");
    let (out, dir) = simulate("bad-model", &pods, &["--seeds", "42"]);
    assert_fails(&out, &[&format!("{}:2:", dir.join("openb_pod_list_tiny.csv").display()), "\"H100\""]);

    let dir = scratch("bad-nodes");
    let (n, p) = write_trace(&dir, &pods_csv());
    std::fs::write(&n, "sn,cpu_milli,memory_mib,gpu,model\nn1,64000,262144,2,\n").unwrap();
    let out = gantry_in(&dir, &["simulate", "--nodes", n.to_str().unwrap(), "--pods", p.to_str().unwrap()]);
    assert_fails(&out, &[&format!("{}:2: node n1 has 2 GPUs but no model", n.display())]);

    let missing = dir.join("nope.csv");
    let out =
        gantry_in(&dir, &["simulate", "--nodes", missing.to_str().unwrap(), "--pods", p.to_str().unwrap()]);
    assert_fails(&out, &[&missing.display().to_string(), "cannot read"]);
}

#[test]
fn bad_arguments_exit_2_with_a_reason() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("unknown policy", &["--policies", "fgd,magic"], &["unknown policy \"magic\"", "best-fit"]),
        ("empty policy list", &["--policies", ","], &["--policies is empty"]),
        ("backwards seeds", &["--seeds", "51-42"], &["--seeds \"51-42\"", "runs backwards"]),
        ("non-numeric seed", &["--seeds", "forty"], &["--seeds \"forty\"", "not a number"]),
        ("too many seeds", &["--seeds", "0-20000"], &["more than 10000 seeds"]),
        ("inflate out of range", &["--inflate", "0"], &["--inflate 0", "out of range"]),
        ("unknown format (clap)", &["--format", "xml"], &["xml"]),
    ];
    for (case, args, words) in cases {
        let (out, _) = simulate(&format!("args-{}", case.replace(' ', "-")), &pods_csv(), args);
        assert_eq!(out.status.code(), Some(2), "{case}: {}", text(&out.stderr));
        assert_fails(&out, words);
        assert!(out.stdout.is_empty(), "{case}: {}", text(&out.stdout));
    }
}

#[test]
fn plot_writes_svg() {
    let (out, dir) = simulate(
        "plot-svg",
        &pods_csv(),
        &["--policies", "fgd,best-fit", "--seeds", "42", "--plot", "out.svg"],
    );
    assert_ok(&out);
    let svg = std::fs::read_to_string(dir.join("out.svg")).expect("out.svg is written");
    assert!(svg.trim_start().starts_with("<svg") || svg.contains("<svg "), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("fgd") && svg.contains("best-fit"), "the legend names the policies");
    assert!(text(&out.stderr).contains("plot written to out.svg"));
}

#[test]
fn plot_refuses_png() {
    let (out, dir) = simulate("plot-png", &pods_csv(), &["--seeds", "42", "--plot", "out.png"]);
    assert_fails(&out, &["out.png", "only SVG output is supported"]);
    assert!(!dir.join("out.png").exists());
}

/// The help promises the bundled default pod list when only `--nodes` is given; that must not
/// depend on the directory gantry runs in.
#[test]
fn nodes_only_uses_the_bundled_pods_from_any_directory() {
    let dir = scratch("nodes-only");
    let nodes =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../traces/openb/openb_node_list_gpu_node.csv");
    let args = [
        "simulate",
        "--nodes",
        nodes.to_str().unwrap(),
        "--policies",
        "random",
        "--seeds",
        "42",
        "--inflate",
        "0.1",
        "--format",
        "json",
    ];
    let out = gantry_in(&dir, &args);
    assert_ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["trace"]["nodes"].as_u64(), v["trace"]["pods"].as_u64()), (Some(1213), Some(8152)));
}

#[test]
fn pods_only_uses_the_bundled_nodes() {
    let dir = scratch("pods-only");
    let (_, p) = write_trace(&dir, &pods_csv().replace(",V100\n", ",V100M16\n"));
    let args = [
        "simulate",
        "--pods",
        p.to_str().unwrap(),
        "--policies",
        "best-fit",
        "--seeds",
        "42",
        "--inflate",
        "0.01",
        "--format",
        "json",
    ];
    let out = gantry_in(&dir, &args);
    assert_ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["trace"]["nodes"].as_u64(), v["trace"]["pods"].as_u64()), (Some(1213), Some(30)));
}

/// A pod list of CPU-only pods asks for no GPU, so inflating it to 130 % of GPU capacity can
/// never succeed; the simulation must still finish. The child runs under a 1 GiB address-space
/// limit and a time limit, so a run that loops (and grows memory) fails this test rather than
/// hanging or exhausting the machine.
#[test]
fn cpu_only_pod_list_finishes() {
    let dir = scratch("cpu-only");
    let pods: String =
        PODS_HEADER.to_string() + &(0..10).map(|i| format!("c{i},1000,1024,0,0,\n")).collect::<String>();
    let (n, p) = write_trace(&dir, &pods);
    let script = r#"ulimit -v 1048576; exec "$0" "$@""#;
    let mut child = Command::new("sh")
        .args([
            "-c",
            script,
            env!("CARGO_BIN_EXE_gantry"),
            "simulate",
            "--nodes",
            n.to_str().unwrap(),
            "--pods",
            p.to_str().unwrap(),
        ])
        .args(["--policies", "best-fit", "--seeds", "42", "--format", "json"])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let status = status.unwrap_or_else(|| panic!("gantry did not finish in 60 s on a CPU-only pod list"));
    assert!(status.success(), "gantry failed on a CPU-only pod list ({status}): {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["trace"]["pods"], 10);
}

#[test]
fn crd_prints_yaml_documents_that_read_back_as_the_objects() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venus = repo.join("examples/tenants/venus.yaml");
    for (args, kinds) in [
        (vec!["crd"], vec!["CustomResourceDefinition"; 3]),
        (vec!["crd", "--from-tenants", venus.to_str().unwrap()], vec![]),
    ] {
        let out = gantry_in(&repo, &args);
        assert_ok(&out);
        let stdout = text(&out.stdout);
        let docs: Vec<Value> = stdout
            .split("---\n")
            .skip(1)
            .map(|d| {
                assert!(!d.trim_start().starts_with('{'), "{args:?}: a YAML document, not JSON: {d}");
                serde_yaml_ng::from_str(d).unwrap_or_else(|e| panic!("{args:?}: {e}\n{d}"))
            })
            .collect();
        assert!(docs.iter().all(|d| d["metadata"]["name"].is_string()), "{args:?}");
        if kinds.is_empty() {
            let tenants = docs.iter().filter(|d| d["kind"] == "Tenant").count();
            assert_eq!(tenants, 18, "the Venus file's 18 tenants");
        } else {
            assert_eq!(docs.iter().map(|d| d["kind"].as_str().unwrap()).collect::<Vec<_>>(), kinds);
        }
    }
}
