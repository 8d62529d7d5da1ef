//! What the agent costs per pass and per scrape, for 8 GPUs with 100 processes among them:
//!
//! - `pass`: taking one sampling pass in (health, XID counts) and computing the Node inventory,
//!   against the baseline `clone`, copying the frame (the least any pass does);
//! - `render`: `/metrics` with Gantry's and dcgm-exporter's families and pod labels, against
//!   the baseline `json`, serializing the same frame with serde_json;
//! - `idle`: metering idle-but-allocated time for the quota API, against the baseline
//!   `utilization`, building the per-GPU holders and use the meter reads.
//!
//! ```sh
//! cargo bench -p gantry-node-agent --bench agent_cost
//! ```
//! NVML's own calls are not included (no GPU here); `scripts/gpu-check.sh` times real passes.

use criterion::{criterion_group, criterion_main, Criterion};
use gantry_node_agent::agent::State;
use gantry_node_agent::metrics::Options;
use gantry_node_agent::sample::{EccCounts, Frame, GpuProcess, GpuSample, NvLink, RemappedRows};
use std::hint::black_box;

/// An 8 x H100 node with 100 processes among its GPUs, every field present.
pub fn node() -> Frame {
    let bus = |i: u32| format!("00000000:{:02X}:00.0", 0x18 + i * 0x10);
    let gpus = (0..8u32)
        .map(|i| GpuSample {
            index: i,
            uuid: format!("GPU-{i:08x}-1111-2222-3333-444455556666"),
            model: "NVIDIA H100 80GB HBM3".into(),
            pci_bus_id: Some(bus(i)),
            lost: false,
            memory_total_bytes: Some(81559 << 20),
            memory_used_bytes: Some(60000 << 20),
            gpu_utilization_percent: Some(90 + i),
            memory_utilization_percent: Some(40),
            temperature_celsius: Some(60),
            power_milliwatts: Some(650_000),
            energy_millijoules: Some(123_456_789_000),
            sm_clock_mhz: Some(1980),
            memory_clock_mhz: Some(2619),
            ecc: Some(EccCounts::default()),
            remapped_rows: Some(RemappedRows::default()),
            pcie_replays: Some(0),
            mig_enabled: Some(false),
            nvlinks: (0..18)
                .map(|l| NvLink { link: l, remote_pci_bus_id: format!("00000000:{:02X}:00.0", 0xA0 + l % 4) })
                .collect(),
            processes: (0..100u32)
                .filter(|p| p % 8 == i)
                .map(|p| GpuProcess { pid: 10_000 + p, used_memory_bytes: Some(600 << 20) })
                .collect(),
        })
        .collect();
    Frame { gpus, xids: Vec::new() }
}

fn costs(c: &mut Criterion) {
    let frame = node();
    let mut state = State::default();
    state.take(frame.clone(), 1);
    for g in &frame.gpus {
        state
            .owners
            .insert(g.uuid.clone(), ("team-a".into(), format!("train-worker-{}", g.index), "pytorch".into()));
    }
    let options = Options { node: "gpu-node-1".into(), dcgm: true, dcgm_hostname_label: "Hostname".into() };
    let mut g = c.benchmark_group("agent");
    g.bench_function("pass/baseline-clone", |b| b.iter(|| black_box(frame.clone())));
    g.bench_function("pass", |b| {
        let mut t = 2;
        b.iter(|| {
            t += 1;
            state.take(frame.clone(), t);
            black_box(state.inventory())
        })
    });
    g.bench_function("render/baseline-json", |b| b.iter(|| black_box(serde_json::to_string(&frame))));
    g.bench_function("render", |b| b.iter(|| black_box(state.metrics(&options))));
    // Idle-but-allocated metering per pass (--quota-api): the GPUs' holders and use, then the
    // meter's share of it; a window closes every 60 passes.
    g.bench_function("idle/baseline-utilization", |b| b.iter(|| black_box(state.utilization("gpu-node-1"))));
    g.bench_function("idle", |b| {
        let mut meter = gantry_node_agent::idle::IdleMeter::new(60, 5);
        let mut t = 1_800_000_000;
        b.iter(|| {
            t += 1;
            meter.observe(t, &state.utilization("gpu-node-1").gpus);
            black_box(meter.close(t))
        })
    });
    g.finish();
}

criterion_group!(benches, costs);
criterion_main!(benches);
