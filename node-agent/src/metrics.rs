//! `/metrics` in the Prometheus text format (0.0.4), rendered from the latest pass.
//!
//! Gantry's own families are `gantry_gpu_*` with the unit in the name (bytes, watts, joules,
//! hertz, celsius, ratios 0-1), labelled `gpu` (index), `uuid`, `model` and, when a pod holds
//! the GPU, `namespace`, `pod`, `container`. Behind `--dcgm-compat` the agent also writes
//! dcgm-exporter's names, units and labels for the same NVML fields, so existing Grafana
//! dashboards work: on
//! clusters that already run dcgm-exporter leave it off, or every panel doubles.
//!
//! Rendering is by hand from a snapshot: GPUs that disappear vanish from the next scrape, with
//! no registry state to clean up, and one pass costs one string.

use crate::health::{HealthState, Tracker};
use crate::sample::{Frame, GpuSample};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// Who holds a GPU: (namespace, pod, container), by GPU UUID.
pub type Owners = HashMap<String, (String, String, String)>;

/// How the metrics are labelled and which families are written.
#[derive(Clone, Debug)]
pub struct Options {
    /// The node's name (label `Hostname` on DCGM families, `node` on Gantry's).
    pub node: String,
    /// Write dcgm-exporter-compatible families too.
    pub dcgm: bool,
    /// The key of the host label on DCGM families: released dcgm-exporter 4.x writes `Hostname`.
    pub dcgm_hostname_label: String,
}

/// Everything a scrape shows.
pub struct Snapshot<'a> {
    pub frame: &'a Frame,
    pub health: &'a Tracker,
    /// XID events seen since start, by (uuid, xid).
    pub xids: &'a BTreeMap<(String, u64), u64>,
    /// The last XID seen per GPU (dcgm-exporter's `DCGM_FI_DEV_XID_ERRORS` is that value).
    pub last_xid: &'a HashMap<String, u64>,
    pub owners: &'a Owners,
    pub driver_version: Option<&'a str>,
    /// Unix seconds of the pass.
    pub taken_at: i64,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Label values escaped as the text format requires (`\`, `"`, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape(v));
    }
    s.push('}');
    s
}

/// One family: HELP and TYPE, then one line per GPU that has a value.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn line(&mut self, name: &str, labels: &str, value: f64) {
        let _ = writeln!(self.out, "{name}{labels} {value}");
    }
}

type Getter = fn(&GpuSample) -> Option<f64>;

/// Renders the scrape.
pub fn render(s: &Snapshot, o: &Options) -> String {
    let mut out = String::with_capacity(4096 + 2048 * s.frame.gpus.len());
    let gpus: Vec<(&GpuSample, String, String)> = s
        .frame
        .gpus
        .iter()
        .map(|g| {
            let index = g.index.to_string();
            let mut l = vec![("gpu", index.as_str()), ("uuid", g.uuid.as_str()), ("model", g.model.as_str())];
            let owner = s.owners.get(&g.uuid);
            if let Some((ns, pod, c)) = owner {
                l.extend([("namespace", ns.as_str()), ("pod", pod.as_str()), ("container", c.as_str())]);
            }
            let gantry = labels(&l);
            let device = format!("nvidia{}", g.index);
            let mut d = vec![
                ("gpu", index.as_str()),
                ("UUID", g.uuid.as_str()),
                ("pci_bus_id", g.pci_bus_id.as_deref().unwrap_or("")),
                ("device", device.as_str()),
                ("modelName", g.model.as_str()),
                (o.dcgm_hostname_label.as_str(), o.node.as_str()),
            ];
            if let Some(v) = s.driver_version {
                d.push(("DCGM_FI_DRIVER_VERSION", v));
            }
            if let Some((ns, pod, c)) = owner {
                d.extend([("namespace", ns.as_str()), ("pod", pod.as_str()), ("container", c.as_str())]);
            }
            (g, gantry, labels(&d))
        })
        .collect();
    let mut f = Family { out: &mut out };

    let gauges: [(&str, &str, &str, Getter); 10] = [
        (
            "gantry_gpu_utilization_ratio",
            "gauge",
            "Fraction of the last sample period a kernel ran on the GPU.",
            |g| g.gpu_utilization_percent.map(|p| f64::from(p) / 100.0),
        ),
        (
            "gantry_gpu_memory_utilization_ratio",
            "gauge",
            "Fraction of the last sample period GPU memory was read or written.",
            |g| g.memory_utilization_percent.map(|p| f64::from(p) / 100.0),
        ),
        ("gantry_gpu_memory_used_bytes", "gauge", "GPU memory in use.", |g| {
            g.memory_used_bytes.map(|b| b as f64)
        }),
        ("gantry_gpu_memory_total_bytes", "gauge", "GPU memory in all.", |g| {
            g.memory_total_bytes.map(|b| b as f64)
        }),
        ("gantry_gpu_temperature_celsius", "gauge", "GPU die temperature.", |g| {
            g.temperature_celsius.map(f64::from)
        }),
        ("gantry_gpu_power_watts", "gauge", "GPU power draw (NVML reports milliwatts).", |g| {
            g.power_milliwatts.map(|mw| f64::from(mw) / 1000.0)
        }),
        (
            "gantry_gpu_energy_joules_total",
            "counter",
            "GPU energy since the driver loaded (NVML reports millijoules).",
            |g| g.energy_millijoules.map(|mj| mj as f64 / 1000.0),
        ),
        ("gantry_gpu_sm_clock_hertz", "gauge", "SM clock.", |g| g.sm_clock_mhz.map(|m| f64::from(m) * 1e6)),
        ("gantry_gpu_memory_clock_hertz", "gauge", "Memory clock.", |g| {
            g.memory_clock_mhz.map(|m| f64::from(m) * 1e6)
        }),
        ("gantry_gpu_pcie_replays_total", "counter", "PCIe replays since the driver loaded.", |g| {
            g.pcie_replays.map(|r| r as f64)
        }),
    ];
    for (name, kind, help, get) in gauges {
        f.header(name, kind, help);
        for (g, l, _) in &gpus {
            if let Some(v) = get(g) {
                f.line(name, l, v);
            }
        }
    }
    f.header(
        "gantry_gpu_ecc_errors_total",
        "counter",
        "ECC errors over the GPU's life, by type (corrected: single-bit; uncorrected: double-bit).",
    );
    for (g, l, _) in &gpus {
        if let Some(e) = g.ecc {
            for (kind, v) in [("corrected", e.corrected_aggregate), ("uncorrected", e.uncorrected_aggregate)]
            {
                f.line("gantry_gpu_ecc_errors_total", &with(l, &[("type", kind)]), v as f64);
            }
        }
    }
    f.header(
        "gantry_gpu_remapped_rows",
        "gauge",
        "Memory rows remapped, by cause (correctable or uncorrectable errors).",
    );
    for (g, l, _) in &gpus {
        if let Some(r) = g.remapped_rows {
            for (cause, v) in [("correctable", r.correctable), ("uncorrectable", r.uncorrectable)] {
                f.line("gantry_gpu_remapped_rows", &with(l, &[("cause", cause)]), f64::from(v));
            }
        }
    }
    f.header("gantry_gpu_mig_enabled", "gauge", "1 when MIG mode is on.");
    for (g, l, _) in &gpus {
        if let Some(m) = g.mig_enabled {
            f.line("gantry_gpu_mig_enabled", l, f64::from(u8::from(m)));
        }
    }
    f.header(
        "gantry_gpu_health",
        "gauge",
        "1 for the GPU's health state (healthy, degraded, failed), 0 for the others.",
    );
    for (g, l, _) in &gpus {
        let state = s.health.of(&g.uuid).map_or(HealthState::Healthy, |h| h.state);
        for st in [HealthState::Healthy, HealthState::Degraded, HealthState::Failed] {
            f.line("gantry_gpu_health", &with(l, &[("state", st.name())]), f64::from(u8::from(st == state)));
        }
    }
    f.header(
        "gantry_gpu_xid_errors_total",
        "counter",
        "XID errors NVML reported since the agent started, by XID.",
    );
    for ((uuid, xid), n) in s.xids {
        if let Some((_, l, _)) = gpus.iter().find(|(g, _, _)| g.uuid == *uuid) {
            f.line("gantry_gpu_xid_errors_total", &with(l, &[("xid", &xid.to_string())]), *n as f64);
        }
    }
    f.header("gantry_gpu_process_memory_used_bytes", "gauge", "GPU memory used by one compute process.");
    for (g, l, _) in &gpus {
        for p in &g.processes {
            if let Some(b) = p.used_memory_bytes {
                f.line(
                    "gantry_gpu_process_memory_used_bytes",
                    &with(l, &[("pid", &p.pid.to_string())]),
                    b as f64,
                );
            }
        }
    }
    f.header(
        "gantry_gpu_last_sample_timestamp_seconds",
        "gauge",
        "When the agent last read the GPUs (unix seconds).",
    );
    let _ = writeln!(f.out, "gantry_gpu_last_sample_timestamp_seconds {}", s.taken_at);

    if o.dcgm {
        dcgm(&mut f, &gpus, s);
    }
    out
}

/// `labels` with `extra` pairs added before the closing brace.
fn with(labels: &str, extra: &[(&str, &str)]) -> String {
    let mut s = labels.trim_end_matches('}').to_string();
    for (k, v) in extra {
        let _ = write!(s, ",{k}=\"{}\"", escape(v));
    }
    s.push('}');
    s
}

/// dcgm-exporter's default families that NVML can fill, in its units: MiB, W, mJ, MHz, %.
fn dcgm(f: &mut Family, gpus: &[(&GpuSample, String, String)], s: &Snapshot) {
    let families: [(&str, &str, &str, Getter); 12] = [
        ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", |g| g.sm_clock_mhz.map(f64::from)),
        ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", |g| {
            g.memory_clock_mhz.map(f64::from)
        }),
        ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", |g| {
            g.temperature_celsius.map(f64::from)
        }),
        ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", |g| {
            g.power_milliwatts.map(|mw| f64::from(mw) / 1000.0)
        }),
        (
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            "counter",
            "Total energy consumption since boot (in mJ).",
            |g| g.energy_millijoules.map(|v| v as f64),
        ),
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.", |g| {
            g.pcie_replays.map(|v| v as f64)
        }),
        ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", |g| {
            g.gpu_utilization_percent.map(f64::from)
        }),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", |g| {
            g.memory_utilization_percent.map(f64::from)
        }),
        ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", |g| {
            Some(g.memory_total_bytes?.saturating_sub(g.memory_used_bytes?) as f64 / MIB)
        }),
        ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", |g| {
            g.memory_used_bytes.map(|b| b as f64 / MIB)
        }),
        (
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
            "counter",
            "Number of remapped rows for uncorrectable errors",
            |g| g.remapped_rows.map(|r| f64::from(r.uncorrectable)),
        ),
        (
            "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
            "counter",
            "Number of remapped rows for correctable errors",
            |g| g.remapped_rows.map(|r| f64::from(r.correctable)),
        ),
    ];
    for (name, kind, help, get) in families {
        f.header(name, kind, help);
        for (g, _, l) in gpus {
            if let Some(v) = get(g) {
                f.line(name, l, v);
            }
        }
    }
    f.header("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.");
    for (g, _, l) in gpus {
        f.line("DCGM_FI_DEV_XID_ERRORS", l, s.last_xid.get(&g.uuid).map_or(0.0, |&x| x as f64));
    }
}
