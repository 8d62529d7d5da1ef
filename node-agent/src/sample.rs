//! What one sampling pass reads from each GPU, in NVML's own units (the conversions happen on
//! export, where the unit is in the name). Every field NVML may not support on a GPU is an
//! `Option`: `None` is a missing sample, never a zero, and never an error for the whole GPU.
//!
//! The same types are the replay capture format (JSON, camelCase), so a capture recorded from
//! real NVML by `scripts/gpu-check.sh` replays through exactly the code the product runs.

use serde::{Deserialize, Serialize};

/// One GPU at one moment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuSample {
    /// NVML's index (`nvidia-smi`'s GPU number, the device plugin's order).
    pub index: u32,
    /// `GPU-…`: the device plugin's device ID, and what pod-resources reports.
    pub uuid: String,
    /// NVML's product name, e.g. `NVIDIA A100-SXM4-80GB`.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// NVML returned "GPU is lost" (fell off the bus): nothing else about it can be read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    /// Percent of the last sample period a kernel ran (0-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_utilization_percent: Option<u32>,
    /// Percent of the last sample period memory was read or written (0-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_utilization_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<u32>,
    /// NVML reports milliwatts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_milliwatts: Option<u32>,
    /// Energy since the driver loaded, millijoules (Volta and newer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_millijoules: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_clock_mhz: Option<u32>,
    /// ECC error counts; `None` where ECC is off or unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecc: Option<EccCounts>,
    /// Row remapping (Ampere and newer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remapped_rows: Option<RemappedRows>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie_replays: Option<u64>,
    /// MIG mode currently enabled; `None` on GPUs without MIG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig_enabled: Option<bool>,
    /// Active NVLinks and the PCI bus ID at their far end (another GPU, or an NVSwitch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nvlinks: Vec<NvLink>,
    /// Compute processes running on the GPU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<GpuProcess>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EccCounts {
    /// Single-bit, corrected, since the last driver load.
    pub corrected_volatile: u64,
    /// Double-bit, uncorrected, since the last driver load.
    pub uncorrected_volatile: u64,
    /// Over the GPU's life.
    pub corrected_aggregate: u64,
    pub uncorrected_aggregate: u64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemappedRows {
    pub correctable: u32,
    pub uncorrectable: u32,
    /// A remapping waits for a GPU reset.
    pub pending: bool,
    /// A remapping failed at some point: the memory can no longer be repaired.
    pub failure: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NvLink {
    pub link: u32,
    pub remote_pci_bus_id: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuProcess {
    pub pid: u32,
    /// `None` where the driver cannot say (e.g. under some virtualization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_memory_bytes: Option<u64>,
}

/// An XID error NVML reported through its event set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct XidEvent {
    pub uuid: String,
    pub xid: u64,
}

/// One sampling pass over the node: every GPU NVML still lists, and the XID events since the
/// last pass.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Frame {
    pub gpus: Vec<GpuSample>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xids: Vec<XidEvent>,
}

/// A recorded capture: what `scripts/gpu-check.sh` writes and `--source replay:FILE` reads.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capture {
    /// Where it came from, for people: machine, driver, date.
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    pub frames: Vec<Frame>,
}
