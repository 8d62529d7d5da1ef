//! Where samples come from: NVML on a GPU node (the product, [`crate::nvml`]), or a recorded
//! capture replayed frame by frame (tests and demos, [`Replay`]).

use crate::sample::{Capture, Frame};
use std::path::Path;

/// A source of sampling passes.
pub trait GpuSource: Send {
    /// One pass: every GPU as it is now, and the XID events since the last pass. An error is
    /// for the whole pass (the library went away); a field a GPU does not support is `None`.
    fn sample(&mut self) -> Result<Frame, String>;

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
    pub fn new(capture: Capture) -> Result<Replay, String> {
        if capture.frames.is_empty() {
            return Err("the capture has no frames; record one with scripts/gpu-check.sh".into());
        }
        Ok(Replay { capture, next: 0 })
    }

    /// Reads a capture file (JSON, as [`Capture`]).
    pub fn load(path: &Path) -> Result<Replay, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the capture: {e}", path.display()))?;
        let capture: Capture = serde_json::from_str(&text).map_err(|e| {
            format!("{}: not a GPU capture ({e}); expected {{\"frames\": [{{\"gpus\": [...]}}]}} as scripts/gpu-check.sh records", path.display())
        })?;
        Replay::new(capture).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl GpuSource for Replay {
    fn sample(&mut self) -> Result<Frame, String> {
        let last = self.capture.frames.len() - 1;
        let i = self.next.min(last);
        self.next = self.next.saturating_add(1);
        let mut frame = self.capture.frames[i].clone();
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
