//! The NVML source (the product): `libnvidia-ml.so.1` loaded at run time through
//! `nvml-wrapper`, so the agent builds and its tests run on machines with no GPU, and says
//! clearly why it cannot start where the driver is missing.
//!
//! Each pass reads every field of every GPU separately: `NotSupported` (or any error) on one
//! field is a missing sample (`None`), `GpuIsLost` marks the GPU lost; only a failure to list the
//! GPUs fails the pass. XID errors come from an NVML event set registered for critical XIDs on
//! every GPU that supports events, drained without waiting at each pass.
//!
//! NVML handles borrow the library and are not `Send`, so the source lives on the one thread
//! that samples (see [`crate::agent`]); the library is leaked once for the life of the process.

use crate::sample::{EccCounts, Frame, GpuProcess, GpuSample, NvLink as Link, RemappedRows, XidEvent};
use crate::source::{GpuSource, SampleError};
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::{
    NVML_FI_DEV_REMAPPED_COR, NVML_FI_DEV_REMAPPED_FAILURE, NVML_FI_DEV_REMAPPED_PENDING,
    NVML_FI_DEV_REMAPPED_UNC,
};
use nvml_wrapper::{Device, EventSet, Nvml};

/// NVLinks per GPU that NVML may report (NVML_NVLINK_MAX_LINKS).
const MAX_LINKS: u32 = 18;

pub struct NvmlSource {
    nvml: &'static Nvml,
    events: Option<EventSet<'static>>,
    driver: Option<String>,
}

/// Why [`NvmlSource::new`] could not start. The messages say what to do on the node, because the
/// agent stops with them before it serves anything.
#[derive(Debug, thiserror::Error)]
pub enum NvmlStartError {
    /// NVML could not be loaded or initialised; the message is [`explain`]'s.
    #[error("{}", explain(.source))]
    Init {
        #[source]
        source: NvmlError,
    },
    /// NVML started but could not list the GPUs.
    #[error("NVML cannot count the GPUs: {source}")]
    CountGpus {
        #[source]
        source: NvmlError,
    },
}

/// Why NVML could not start, in words that say what to do.
pub fn explain(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(_) | NvmlError::FailedToLoadSymbol(_) => format!(
            "cannot load NVML (libnvidia-ml.so.1: {e}); run the agent on a node with the NVIDIA driver, with the NVIDIA container \
             runtime (or the driver's libraries mounted), or use --source replay:FILE"
        ),
        NvmlError::DriverNotLoaded => "NVML is installed but the NVIDIA driver is not loaded on this node; load it (nvidia-smi must work)".into(),
        NvmlError::NoPermission => "NVML refused access (no permission); the agent needs the /dev/nvidia* devices (the NVIDIA container runtime gives them)".into(),
        other => format!("cannot start NVML: {other}"),
    }
}

impl NvmlSource {
    /// Loads NVML and registers for critical XID events.
    pub fn new() -> Result<NvmlSource, NvmlStartError> {
        let nvml = Nvml::init().map_err(|source| NvmlStartError::Init { source })?;
        let nvml: &'static Nvml = Box::leak(Box::new(nvml));
        let count = nvml.device_count().map_err(|source| NvmlStartError::CountGpus { source })?;
        let mut events = nvml.create_event_set().ok();
        for i in 0..count {
            let (Some(set), Ok(device)) = (events.take(), nvml.device_by_index(i)) else { continue };
            // GPUs without event support keep the set as it was; a set NVML released is gone.
            events = match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                Ok(set) => Some(set),
                Err(e) => {
                    tracing::warn!(
                        "GPU {i}: no XID events ({}); health follows ECC and row remapping only",
                        e.error
                    );
                    nvml.create_event_set().ok()
                }
            };
        }
        let driver = nvml.sys_driver_version().ok();
        Ok(NvmlSource { nvml, events, driver })
    }

    fn xids(&self) -> Vec<XidEvent> {
        let mut out = Vec::new();
        let Some(set) = &self.events else { return out };
        // Drain what arrived since the last pass; stop at the first timeout (or error).
        for _ in 0..1024 {
            match set.wait(0) {
                Ok(e) => {
                    let xid = match e.event_data {
                        Some(XidError::Value(x)) => x,
                        Some(XidError::Unknown) | None => 999,
                    };
                    if let Ok(uuid) = e.device.uuid() {
                        out.push(XidEvent { uuid, xid });
                    }
                }
                Err(_) => break,
            }
        }
        out
    }
}

/// One field: `Some` when read, `None` for any error; `lost` is set when the GPU is gone.
fn field<T>(lost: &mut bool, r: Result<T, NvmlError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(NvmlError::GpuLost) => {
            *lost = true;
            None
        }
        Err(_) => None,
    }
}

fn read(device: &Device, index: u32) -> GpuSample {
    let mut lost = false;
    let l = &mut lost;
    let uuid = field(l, device.uuid()).unwrap_or_else(|| format!("GPU-index-{index}"));
    let model = field(l, device.name()).unwrap_or_default();
    let memory = field(l, device.memory_info());
    let util = field(l, device.utilization_rates());
    let ecc_on = field(l, device.is_ecc_enabled()).is_some_and(|m| m.currently_enabled);
    let ecc = |l: &mut bool, e: MemoryError, c: EccCounter| field(l, device.total_ecc_errors(e, c));
    let ecc = if ecc_on {
        (|| {
            Some(EccCounts {
                corrected_volatile: ecc(l, MemoryError::Corrected, EccCounter::Volatile)?,
                uncorrected_volatile: ecc(l, MemoryError::Uncorrected, EccCounter::Volatile)?,
                corrected_aggregate: ecc(l, MemoryError::Corrected, EccCounter::Aggregate)?,
                uncorrected_aggregate: ecc(l, MemoryError::Uncorrected, EccCounter::Aggregate)?,
            })
        })()
    } else {
        None
    };
    let ids = [
        NVML_FI_DEV_REMAPPED_COR,
        NVML_FI_DEV_REMAPPED_UNC,
        NVML_FI_DEV_REMAPPED_PENDING,
        NVML_FI_DEV_REMAPPED_FAILURE,
    ]
    .map(FieldId);
    let remapped_rows = field(l, device.field_values_for(&ids)).and_then(|values| {
        let v: Vec<u64> = values
            .into_iter()
            .map(|r| match r.ok()?.value.ok()? {
                SampleValue::U32(x) => Some(u64::from(x)),
                SampleValue::U64(x) => Some(x),
                SampleValue::I64(x) => u64::try_from(x).ok(),
                SampleValue::F64(_) => None,
            })
            .collect::<Option<_>>()?;
        let [cor, unc, pending, failure] = v[..] else { return None };
        Some(RemappedRows {
            correctable: cor as u32,
            uncorrectable: unc as u32,
            pending: pending != 0,
            failure: failure != 0,
        })
    });
    let nvlinks = (0..MAX_LINKS)
        .filter_map(|link| {
            let w = device.link_wrapper_for(link);
            if !w.is_active().ok()? {
                return None;
            }
            Some(Link { link, remote_pci_bus_id: w.remote_pci_info().ok()?.bus_id })
        })
        .collect();
    let processes = field(l, device.running_compute_processes())
        .unwrap_or_default()
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            used_memory_bytes: match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b),
                UsedGpuMemory::Unavailable => None,
            },
        })
        .collect();
    GpuSample {
        index,
        uuid,
        model,
        pci_bus_id: field(l, device.pci_info()).map(|p| p.bus_id),
        memory_total_bytes: memory.as_ref().map(|m| m.total),
        memory_used_bytes: memory.as_ref().map(|m| m.used),
        gpu_utilization_percent: util.as_ref().map(|u| u.gpu),
        memory_utilization_percent: util.as_ref().map(|u| u.memory),
        temperature_celsius: field(l, device.temperature(TemperatureSensor::Gpu)),
        power_milliwatts: field(l, device.power_usage()),
        energy_millijoules: field(l, device.total_energy_consumption()),
        sm_clock_mhz: field(l, device.clock_info(Clock::SM)),
        memory_clock_mhz: field(l, device.clock_info(Clock::Memory)),
        ecc,
        remapped_rows,
        pcie_replays: field(l, device.pcie_replay_counter()).map(u64::from),
        mig_enabled: field(l, device.mig_mode()).map(|m| m.current != 0),
        nvlinks,
        processes,
        lost,
    }
}

impl GpuSource for NvmlSource {
    fn sample(&mut self) -> Result<Frame, SampleError> {
        let count = self.nvml.device_count().map_err(|source| SampleError::NvmlCount { source })?;
        let mut gpus = Vec::with_capacity(count as usize);
        for index in 0..count {
            match self.nvml.device_by_index(index) {
                Ok(device) => gpus.push(read(&device, index)),
                // A GPU that fell off the bus can no longer be opened: report it lost.
                Err(NvmlError::GpuLost) => gpus.push(GpuSample {
                    index,
                    uuid: format!("GPU-index-{index}"),
                    lost: true,
                    ..Default::default()
                }),
                Err(_) => {}
            }
        }
        Ok(Frame { gpus, xids: self.xids() })
    }

    fn driver_version(&self) -> Option<String> {
        self.driver.clone()
    }
}
