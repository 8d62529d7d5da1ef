//! `gantry node-agent`, run as a user would: replaying the bundled capture with no GPU and no API
//! server (metrics, inventory, readiness), recording a capture, NVML on this machine (a clear
//! error where there is no driver), and wrong starts.

mod common;
use common::*;
use std::process::Command;

fn capture() -> String {
    repo("examples/node-agent/a100x4.json").to_str().unwrap().to_string()
}

#[test]
fn replays_a_capture_and_serves_metrics_inventory_and_utilization() {
    let source = format!("replay:{}", capture());
    let server = start(
        "node-agent",
        &["--source", &source, "--interval", "0.1", "--pod-resources-socket", "none", "--dcgm-compat"],
    );
    // Ready after the first pass.
    let mut ready = 0;
    for _ in 0..50 {
        ready = call(&server.addr, "GET", "/readyz", "").0;
        if ready == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(ready, 200);
    let (status, metrics) = call(&server.addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(metrics.contains("gantry_gpu_power_watts{gpu=\"0\",uuid=\"GPU-2f6a1c3e-8b1d-4e5f-9a0b-7c1d2e3f4a50\",model=\"NVIDIA A100-SXM4-40GB\"} 312.45"), "{metrics}");
    assert!(metrics.contains("DCGM_FI_DEV_FB_USED{gpu=\"0\""), "{metrics}");
    // After the frames ran out GPU 3 is gone and failed.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let (_, gpus) = call(&server.addr, "GET", "/v1/gpus", "");
    let gpus: serde_json::Value = serde_json::from_str(&gpus).unwrap();
    assert_eq!(gpus["gpus"][3]["health"], "failed", "{gpus}");
    let (_, u) = call(&server.addr, "GET", "/v1/utilization", "");
    let u: serde_json::Value = serde_json::from_str(&u).unwrap();
    assert_eq!(u["gpus"].as_array().unwrap().len(), 3, "{u}");
    // SIGTERM, as the kubelet stops a pod: a clean exit.
    let mut server = server;
    assert!(server.terminate().is_some_and(|s| s.success()), "a clean exit on SIGTERM");
}

#[test]
fn records_a_capture_that_replays_the_same() {
    let dir = std::env::temp_dir().join(format!("gantry-node-agent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("capture.json");
    let run = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "node-agent",
            "--source",
            &format!("replay:{}", capture()),
            "--record",
            out.to_str().unwrap(),
            "--passes",
            "2",
            "--interval",
            "0.05",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let recorded: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(capture()).unwrap()).unwrap();
    assert_eq!(recorded["frames"].as_array().unwrap()[..], original["frames"].as_array().unwrap()[..2]);
    assert_eq!(recorded["driverVersion"], "550.90.07");
}

/// On this machine NVML either loads (a GPU node: a capture with its GPUs) or the agent stops at
/// once with a message that says what to do.
#[test]
fn nvml_loads_or_says_why_not() {
    let out = std::env::temp_dir().join(format!("gantry-nvml-{}.json", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["node-agent", "--record", out.to_str().unwrap(), "--passes", "1"])
        .output()
        .unwrap();
    if run.status.success() {
        let c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert!(
            c["frames"][0]["gpus"].as_array().is_some_and(|g| g
                .iter()
                .all(|g| g["uuid"].as_str().is_some_and(|u| u.starts_with("GPU-") || u.starts_with("MIG-")))),
            "{c}"
        );
    } else {
        assert_eq!(run.status.code(), Some(2));
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            err.contains("NVML") && (err.contains("--source replay:FILE") || err.contains("driver")),
            "{err}"
        );
    }
}

#[test]
fn wrong_starts_say_what_to_fix() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gantry")).arg("node-agent").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--source", "gpu"]).contains("use nvml, or replay:FILE"));
    assert!(run(&["--source", "replay:/nonexistent/c.json"])
        .contains("/nonexistent/c.json: cannot read the capture"));
    assert!(run(&["--interval", "0"]).contains("--interval 0 is too short"));
    assert!(run(&["--interval", "90", "--node", "gpu-0"]).contains("--interval 90 is longer than the 60 s"));
    let capture = capture();
    let replay = format!("replay:{capture}");
    assert!(run(&[
        "--source",
        &replay,
        "--pod-resources-socket",
        "none",
        "--quota-api",
        "http://127.0.0.1:1"
    ])
    .contains("--quota-api needs the pod-resources socket"));
    let bad = std::env::temp_dir().join(format!("gantry-bad-capture-{}.json", std::process::id()));
    std::fs::write(&bad, "{\"frames\": []}").unwrap();
    assert!(run(&["--source", &format!("replay:{}", bad.display())]).contains("the capture has no frames"));
}

/// `deploy/node-agent/daemonset.yaml`'s arguments are ones `gantry` accepts.
#[test]
fn the_daemonset_arguments_are_accepted() {
    assert_accepted(&deployment_args("deploy/node-agent/daemonset.yaml"));
}
