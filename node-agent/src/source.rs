//! Where samples come from: NVML on a GPU node (the product, [`crate::nvml`]), or a recorded
//! capture replayed frame by frame (tests and demos, [`Replay`]).

use crate::sample::{Capture, Frame};
use nvml_wrapper::error::NvmlError;
use std::path::{Path, PathBuf};

/// Why a whole sampling pass failed. One type for every source, so that the sampler can hold any
/// of them behind `dyn GpuSource`; a field a GPU does not support is not an error (it is `None`).
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// NVML could not list the GPUs: the library or the driver went away under the agent.
    #[error("NVML cannot count the GPUs: {source}")]
    NvmlCount {
        #[source]
        source: NvmlError,
    },
}

/// Why a capture could not be replayed ([`Replay::new`], [`Replay::load`]). The messages say how
/// to record a good one.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The capture holds no frame, so there is nothing to replay.
    #[error("the capture has no frames; record one with scripts/gpu-check.sh")]
    NoFrames,
    /// The capture file holds no frame.
    #[error("{}: the capture has no frames; record one with scripts/gpu-check.sh", .path.display())]
    NoFramesIn { path: PathBuf },
    /// The capture file could not be read.
    #[error("{}: cannot read the capture: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON in the capture's shape.
    #[error(
        "{}: not a GPU capture ({source}); expected {{\"frames\": [{{\"gpus\": [...]}}]}} as scripts/gpu-check.sh records",
        .path.display()
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Why a GPU source could not be opened: what a source's constructor may return to
/// [`crate::agent::start_sampler`], which builds the source on the sampling thread.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// NVML could not start ([`crate::nvml::NvmlSource::new`]).
    #[error(transparent)]
    Nvml(#[from] crate::nvml::NvmlStartError),
    /// The capture could not be replayed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// A source of sampling passes.
pub trait GpuSource: Send {
    /// One pass: every GPU as it is now, and the XID events since the last pass. An error is
    /// for the whole pass (the library went away); a field a GPU does not support is `None`.
    fn sample(&mut self) -> Result<Frame, SampleError>;

    /// The driver version, when known (a label on the metrics).
    fn driver_version(&self) -> Option<String> {
        None
    }
}

/// A capture replayed one frame per pass; after the last frame the last one repeats, as a node
/// at rest would read.
pub struct Replay {
    capture: Capture,
    next: usize,
}

impl Replay {
    /// Replays `capture`, which must hold at least one frame (the last one repeats).
    pub fn new(capture: Capture) -> Result<Replay, ReplayError> {
        if capture.frames.is_empty() {
            return Err(ReplayError::NoFrames);
        }
        Ok(Replay { capture, next: 0 })
    }

    /// Reads a capture file (JSON, as [`Capture`]).
    pub fn load(path: &Path) -> Result<Replay, ReplayError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ReplayError::Read { path: path.to_path_buf(), source })?;
        let capture: Capture = serde_json::from_str(&text)
            .map_err(|source| ReplayError::Parse { path: path.to_path_buf(), source })?;
        Replay::new(capture).map_err(|_| ReplayError::NoFramesIn { path: path.to_path_buf() })
    }
}

impl GpuSource for Replay {
    fn sample(&mut self) -> Result<Frame, SampleError> {
        // `new` refuses a capture without frames, so `last` is a frame's index.
        let last = self.capture.frames.len().saturating_sub(1);
        let i = self.next.min(last);
        self.next = self.next.saturating_add(1);
        let mut frame = self.capture.frames.get(i).cloned().unwrap_or_default();
        if i == last && self.next > last + 1 {
            // A repeated frame's events already happened.
            frame.xids.clear();
        }
        Ok(frame)
    }

    fn driver_version(&self) -> Option<String> {
        self.capture.driver_version.clone()
    }
}
