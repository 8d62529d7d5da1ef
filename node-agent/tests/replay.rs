//! The agent on the replay source: every field and unit conversion as metrics (read back with an
//! independent Prometheus text-format parser), unsupported fields as missing samples, health for
//! each critical XID and the other causes, a GPU that disappears mid-run, and the inventory.

use gantry_api::keys::{GPU_INVENTORY_ANNOTATION, GPU_PRODUCT_LABEL, GPU_UNHEALTHY_ANNOTATION};
use gantry_node_agent::agent::State;
use gantry_node_agent::health::{xid_effect, HealthState as H, Tracker};
use gantry_node_agent::inventory::diff;
use gantry_node_agent::metrics::Options;
use gantry_node_agent::sample::{EccCounts, Frame, GpuSample, RemappedRows, XidEvent};
use gantry_node_agent::source::{GpuSource, Replay};
use prometheus_parse::{Scrape, Value as PValue};
use serde_json::{json, Value};

const T0: i64 = 1_796_000_000;

fn capture() -> Replay {
    Replay::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node-agent/a100x4.json"))
        .expect("the bundled capture loads")
}

fn options(dcgm: bool) -> Options {
    Options { node: "gpu-node-1".into(), dcgm, dcgm_hostname_label: "Hostname".into() }
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text format")
}

/// The value of `name` for GPU `gpu` (label `gpu`), with `extra` labels matching.
fn value(s: &Scrape, name: &str, gpu: &str, extra: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| {
            x.metric == name
                && x.labels.get("gpu") == Some(gpu)
                && extra.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
        })
        .map(|x| match x.value {
            PValue::Gauge(v) | PValue::Counter(v) | PValue::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn first_pass() -> State {
    let mut r = capture();
    let mut state = State { driver_version: r.driver_version(), ..State::default() };
    state.take(r.sample().unwrap(), T0);
    state
}

#[test]
fn every_field_is_exported_in_its_unit() {
    let state = first_pass();
    let s = parse(&state.metrics(&options(false)));
    let g = |name: &str| value(&s, name, "0", &[]);
    assert_eq!(g("gantry_gpu_utilization_ratio"), Some(0.97));
    assert_eq!(g("gantry_gpu_memory_utilization_ratio"), Some(0.48));
    assert_eq!(g("gantry_gpu_memory_used_bytes"), Some(31244.0 * 1048576.0));
    assert_eq!(g("gantry_gpu_memory_total_bytes"), Some(42949672960.0));
    assert_eq!(g("gantry_gpu_temperature_celsius"), Some(67.0));
    assert_eq!(g("gantry_gpu_power_watts"), Some(312.45), "NVML's milliwatts in watts");
    assert_eq!(g("gantry_gpu_energy_joules_total"), Some(9_871_234.0), "NVML's millijoules in joules");
    assert_eq!(g("gantry_gpu_sm_clock_hertz"), Some(1.41e9));
    assert_eq!(g("gantry_gpu_memory_clock_hertz"), Some(1.215e9));
    assert_eq!(g("gantry_gpu_pcie_replays_total"), Some(0.0));
    assert_eq!(g("gantry_gpu_mig_enabled"), Some(0.0));
    assert_eq!(value(&s, "gantry_gpu_ecc_errors_total", "1", &[("type", "corrected")]), Some(3.0));
    assert_eq!(value(&s, "gantry_gpu_ecc_errors_total", "1", &[("type", "uncorrected")]), Some(0.0));
    assert_eq!(value(&s, "gantry_gpu_remapped_rows", "0", &[("cause", "uncorrectable")]), Some(0.0));
    assert_eq!(value(&s, "gantry_gpu_health", "0", &[("state", "healthy")]), Some(1.0));
    assert_eq!(value(&s, "gantry_gpu_health", "0", &[("state", "failed")]), Some(0.0));
    assert_eq!(
        value(&s, "gantry_gpu_process_memory_used_bytes", "0", &[("pid", "48211")]),
        Some(31206.0 * 1048576.0)
    );
    let labels = &s.samples.iter().find(|x| x.metric == "gantry_gpu_power_watts").unwrap().labels;
    assert_eq!(labels.get("uuid"), Some("GPU-2f6a1c3e-8b1d-4e5f-9a0b-7c1d2e3f4a50"));
    assert_eq!(labels.get("model"), Some("NVIDIA A100-SXM4-40GB"));
    // Four GPUs, one line each.
    assert_eq!(s.samples.iter().filter(|x| x.metric == "gantry_gpu_power_watts").count(), 4);
}

#[test]
fn dcgm_compatible_names_units_and_labels() {
    let mut state = first_pass();
    state.owners.insert(
        "GPU-2f6a1c3e-8b1d-4e5f-9a0b-7c1d2e3f4a50".into(),
        ("team-a".into(), "bert-worker-0".into(), "pytorch".into()),
    );
    assert!(
        !state.metrics(&options(false)).contains("DCGM_FI_"),
        "off unless asked: dcgm-exporter may already run"
    );
    let s = parse(&state.metrics(&options(true)));
    let d = |name: &str| value(&s, name, "0", &[]);
    assert_eq!(d("DCGM_FI_DEV_GPU_UTIL"), Some(97.0), "percent");
    assert_eq!(d("DCGM_FI_DEV_MEM_COPY_UTIL"), Some(48.0));
    assert_eq!(d("DCGM_FI_DEV_FB_USED"), Some(31244.0), "MiB");
    assert_eq!(d("DCGM_FI_DEV_FB_FREE"), Some(40960.0 - 31244.0));
    assert_eq!(d("DCGM_FI_DEV_POWER_USAGE"), Some(312.45), "W");
    assert_eq!(d("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"), Some(9_871_234_000.0), "mJ, as NVML reports");
    assert_eq!(d("DCGM_FI_DEV_SM_CLOCK"), Some(1410.0), "MHz");
    assert_eq!(d("DCGM_FI_DEV_MEM_CLOCK"), Some(1215.0));
    assert_eq!(d("DCGM_FI_DEV_GPU_TEMP"), Some(67.0));
    assert_eq!(d("DCGM_FI_DEV_PCIE_REPLAY_COUNTER"), Some(0.0));
    assert_eq!(d("DCGM_FI_DEV_XID_ERRORS"), Some(0.0));
    assert_eq!(d("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"), Some(0.0));
    let x = s
        .samples
        .iter()
        .find(|x| x.metric == "DCGM_FI_DEV_GPU_UTIL" && x.labels.get("gpu") == Some("0"))
        .unwrap();
    for (k, v) in [
        ("UUID", "GPU-2f6a1c3e-8b1d-4e5f-9a0b-7c1d2e3f4a50"),
        ("pci_bus_id", "00000000:07:00.0"),
        ("device", "nvidia0"),
        ("modelName", "NVIDIA A100-SXM4-40GB"),
        ("Hostname", "gpu-node-1"),
        ("DCGM_FI_DRIVER_VERSION", "550.90.07"),
        ("namespace", "team-a"),
        ("pod", "bert-worker-0"),
        ("container", "pytorch"),
    ] {
        assert_eq!(x.labels.get(k), Some(v), "label {k}");
    }
    // The host label's key is configurable (dcgm-exporter's main renamed it to `hostname`).
    let lower = Options { dcgm_hostname_label: "hostname".into(), ..options(true) };
    assert!(state.metrics(&lower).contains("hostname=\"gpu-node-1\""));
    // Types as dcgm-exporter declares them.
    let text = state.metrics(&options(true));
    assert!(text.contains("# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter"));
    assert!(text.contains("# TYPE DCGM_FI_DEV_FB_USED gauge"));
}

#[test]
fn unsupported_fields_are_missing_samples_not_zeros() {
    // A Tesla T4 as NVML reads it: no row remapping (Ampere and newer), no MIG, no NVLink, ECC off.
    let t4 = GpuSample {
        index: 0,
        uuid: "GPU-t4".into(),
        model: "Tesla T4".into(),
        memory_total_bytes: Some(15360 * 1048576),
        memory_used_bytes: Some(0),
        power_milliwatts: Some(27_981),
        ..GpuSample::default()
    };
    let mut state = State::default();
    state.take(Frame { gpus: vec![t4], xids: vec![] }, T0);
    let s = parse(&state.metrics(&options(true)));
    for missing in [
        "gantry_gpu_remapped_rows",
        "gantry_gpu_mig_enabled",
        "gantry_gpu_ecc_errors_total",
        "gantry_gpu_utilization_ratio",
        "gantry_gpu_temperature_celsius",
        "gantry_gpu_energy_joules_total",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    ] {
        assert!(s.samples.iter().all(|x| x.metric != missing), "{missing} must be absent, not 0");
    }
    assert_eq!(value(&s, "gantry_gpu_power_watts", "0", &[]), Some(27.981));
    assert_eq!(
        value(&s, "gantry_gpu_health", "0", &[("state", "healthy")]),
        Some(1.0),
        "a missing field is not a fault"
    );
}

fn healthy(uuid: &str) -> GpuSample {
    GpuSample {
        index: 0,
        uuid: uuid.into(),
        model: "NVIDIA H100 80GB HBM3".into(),
        ecc: Some(EccCounts::default()),
        remapped_rows: Some(RemappedRows::default()),
        ..GpuSample::default()
    }
}

#[test]
fn each_critical_xid_changes_health_as_nvidia_documents() {
    let cases: [(u64, H, &str); 9] = [
        (48, H::Failed, "XID 48: double-bit ECC error"),
        (64, H::Failed, "XID 64: row remapping failed"),
        (74, H::Failed, "XID 74: NVLink error"),
        (79, H::Failed, "XID 79: GPU has fallen off the bus"),
        (95, H::Failed, "XID 95: uncontained ECC error"),
        (63, H::Degraded, "XID 63: row remapping recorded; a GPU reset is pending"),
        (92, H::Degraded, "XID 92: high single-bit ECC error rate"),
        (94, H::Degraded, "XID 94: contained ECC error"),
        (13, H::Healthy, ""),
    ];
    for (xid, state, reason) in cases {
        let mut t = Tracker::default();
        t.observe(&Frame { gpus: vec![healthy("GPU-a")], xids: vec![] }, T0);
        let changes = t.observe(
            &Frame { gpus: vec![healthy("GPU-a")], xids: vec![XidEvent { uuid: "GPU-a".into(), xid }] },
            T0 + 5,
        );
        let h = t.of("GPU-a").unwrap();
        assert_eq!((h.state, h.reason.as_str()), (state, reason), "XID {xid}");
        assert_eq!(changes.len(), usize::from(state != H::Healthy), "XID {xid}");
        assert_eq!(xid_effect(xid).map(|e| e.0), (state != H::Healthy).then_some(state));
        // It sticks: the next clean pass does not clear it.
        t.observe(&Frame { gpus: vec![healthy("GPU-a")], xids: vec![] }, T0 + 10);
        assert_eq!(t.of("GPU-a").unwrap().state, state, "XID {xid} sticks");
        assert_eq!(t.of("GPU-a").unwrap().since, if state == H::Healthy { T0 } else { T0 + 5 });
    }
}

#[test]
fn ecc_remapping_and_lost_gpus() {
    let mut t = Tracker::default();
    let mut g = healthy("GPU-a");
    g.ecc = Some(EccCounts { uncorrected_volatile: 2, ..EccCounts::default() });
    t.observe(&Frame { gpus: vec![g.clone()], xids: vec![] }, T0);
    assert_eq!(
        t.of("GPU-a").unwrap().state,
        H::Healthy,
        "errors from before the agent started are a baseline"
    );
    g.ecc = Some(EccCounts { uncorrected_volatile: 3, ..EccCounts::default() });
    t.observe(&Frame { gpus: vec![g], xids: vec![] }, T0 + 1);
    assert_eq!(t.of("GPU-a").unwrap().reason, "uncorrected ECC errors rose to 3");
    assert_eq!(t.of("GPU-a").unwrap().state, H::Failed);

    // A pending remapping degrades until a reset applies it.
    let mut t = Tracker::default();
    let mut g = healthy("GPU-b");
    g.remapped_rows = Some(RemappedRows { correctable: 1, pending: true, ..RemappedRows::default() });
    t.observe(&Frame { gpus: vec![g.clone()], xids: vec![] }, T0);
    assert_eq!(t.of("GPU-b").unwrap().state, H::Degraded);
    g.remapped_rows = Some(RemappedRows { correctable: 1, ..RemappedRows::default() });
    let changes = t.observe(&Frame { gpus: vec![g.clone()], xids: vec![] }, T0 + 60);
    assert_eq!((changes[0].from, changes[0].to), (H::Degraded, H::Healthy));
    g.remapped_rows = Some(RemappedRows { failure: true, ..RemappedRows::default() });
    t.observe(&Frame { gpus: vec![g], xids: vec![] }, T0 + 61);
    assert_eq!(t.of("GPU-b").unwrap().state, H::Failed);

    // "GPU is lost" from NVML.
    let mut t = Tracker::default();
    t.observe(&Frame { gpus: vec![GpuSample { lost: true, ..healthy("GPU-c") }], xids: vec![] }, T0);
    assert_eq!(t.of("GPU-c").unwrap().reason, "GPU is lost (NVML)");
}

#[test]
fn a_gpu_that_falls_off_the_bus_is_failed_and_never_offered() {
    let mut r = capture();
    let mut state = State::default();
    let mut transitions = Vec::new();
    for pass in 0..5 {
        transitions.extend(state.take(r.sample().unwrap(), T0 + pass));
    }
    // Pass 3 reported XID 79 on GPU 3; pass 4 no longer listed it; the last frame repeats.
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    assert_eq!((transitions[0].index, transitions[0].to), (3, H::Failed));
    let inventory = state.inventory();
    assert_eq!(inventory.annotations[GPU_UNHEALTHY_ANNOTATION].as_deref(), Some("3"));
    assert_eq!(inventory.labels[GPU_PRODUCT_LABEL].as_deref(), Some("NVIDIA-A100-SXM4-40GB"));
    let gpus: Value =
        serde_json::from_str(inventory.annotations[GPU_INVENTORY_ANNOTATION].as_deref().unwrap()).unwrap();
    assert_eq!(gpus["gpus"][0]["nvlinkPeers"], json!([1, 2]), "GPU 3's links are gone with it");
    assert_eq!(gpus["gpus"][0]["memoryMiB"], 40960);
    assert_eq!(
        gpus["gpus"][3],
        json!({"index": 3, "uuid": "GPU-d1e4f6a8-3c5e-4d7f-a0b1-2c3d4e5f6a83", "health": "failed",
                                       "reason": "XID 79: GPU has fallen off the bus", "since": T0 + 2})
    );
    // The metrics no longer list it; its XID was counted once, though the last frame repeats.
    let s = parse(&state.metrics(&options(true)));
    assert!(value(&s, "gantry_gpu_power_watts", "3", &[]).is_none());
    assert_eq!(
        s.samples.iter().filter(|x| x.metric == "gantry_gpu_xid_errors_total").count(),
        0,
        "a GPU no longer listed has no series"
    );
    assert_eq!(state.xids.values().sum::<u64>(), 1);
}

#[test]
fn the_inventory_diff_names_only_what_changed() {
    let state = first_pass();
    let want = state.inventory();
    let empty = json!({"metadata": {"name": "gpu-node-1"}});
    let patch = diff(&empty, &want).unwrap();
    assert_eq!(patch["metadata"]["labels"][GPU_PRODUCT_LABEL], "NVIDIA-A100-SXM4-40GB");
    assert!(
        patch["metadata"]["annotations"].get(GPU_UNHEALTHY_ANNOTATION).is_none(),
        "nothing to remove on a node that never had it"
    );
    let applied = json!({"metadata": {"labels": patch["metadata"]["labels"], "annotations": patch["metadata"]["annotations"]}});
    assert_eq!(diff(&applied, &want), None);
    let stale = json!({"metadata": {"labels": patch["metadata"]["labels"], "annotations": {GPU_INVENTORY_ANNOTATION: want.annotations[GPU_INVENTORY_ANNOTATION], GPU_UNHEALTHY_ANNOTATION: "2"}}});
    assert_eq!(
        diff(&stale, &want),
        Some(json!({"metadata": {"annotations": {GPU_UNHEALTHY_ANNOTATION: null}}})),
        "a healed GPU's entry is removed"
    );
}

#[test]
fn per_pod_utilization_for_the_quota_api() {
    let mut state = first_pass();
    state.owners.insert(
        "GPU-2f6a1c3e-8b1d-4e5f-9a0b-7c1d2e3f4a50".into(),
        ("team-a".into(), "bert-worker-0".into(), "pytorch".into()),
    );
    let u = serde_json::to_value(state.utilization("gpu-node-1")).unwrap();
    assert_eq!(u["node"], "gpu-node-1");
    assert_eq!(u["takenAt"], T0);
    assert_eq!(u["gpus"][0]["pod"], "bert-worker-0");
    assert_eq!(u["gpus"][0]["utilizationPercent"], 97);
    assert_eq!(u["gpus"][2].get("pod"), None, "an idle GPU nobody holds");
    assert_eq!(u["gpus"][2]["utilizationPercent"], 0);
}

#[test]
fn a_capture_that_cannot_be_replayed_says_why_and_keeps_the_cause() {
    use gantry_node_agent::sample::Capture;
    use gantry_node_agent::source::ReplayError;
    use std::error::Error;

    let empty = Capture { description: String::new(), driver_version: None, frames: vec![] };
    let err = Replay::new(empty).err().expect("no frames");
    assert_eq!(err.to_string(), "the capture has no frames; record one with scripts/gpu-check.sh");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("empty.json");
    std::fs::write(&file, r#"{"frames": []}"#).expect("write");
    let err = Replay::load(&file).err().expect("no frames");
    assert_eq!(
        err.to_string(),
        format!("{}: the capture has no frames; record one with scripts/gpu-check.sh", file.display())
    );

    let missing = dir.path().join("missing.json");
    let err = Replay::load(&missing).err().expect("no file");
    assert!(matches!(err, ReplayError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!("{}: cannot read the capture: ", missing.display())),
        "{err}"
    );
    let io = err.source().and_then(|e| e.downcast_ref::<std::io::Error>()).expect("the I/O error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);

    std::fs::write(&file, "[]").expect("write");
    let err = Replay::load(&file).err().expect("not a capture");
    assert!(err.source().is_some_and(|e| e.is::<serde_json::Error>()), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with(&format!("{}: not a GPU capture (", file.display())), "{text}");
    assert!(
        text.ends_with(r#"); expected {"frames": [{"gpus": [...]}]} as scripts/gpu-check.sh records"#),
        "{text}"
    );
}
