//! The placement record: where the queue controller planned an admitted pod, written on the pod
//! as the annotation [`PLACEMENT_ANNOTATION`] when its gate is removed. The extender reads it to
//! send the pod only there; after a restart the controller reads it to take running workloads
//! back at their places. One format, one writer ([`Planned::value`]), one reader
//! ([`Planned::parse`]).
//!
//! Format: `node` or `node:gpu,gpu` (GPU indexes on that node), then `@` and the Unix second the
//! queue admitted the pod: `gpu-3:0,1,2,3@1793491200`. The time is what a restarted controller or
//! a new leader counts the workload's minimum runtime from; records written without it (by an
//! older Gantry) are read as admitted at the restart.

use crate::keys::PLACEMENT_ANNOTATION;

/// A planned placement: the node, the GPU indexes on it, and when it was admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub node: String,
    pub gpus: Vec<u32>,
    /// Unix seconds; `None` in records without a time.
    pub at: Option<i64>,
}

/// A placement record that cannot be read (see the module documentation for the format).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("{PLACEMENT_ANNOTATION} {value:?}: the time {at:?} is not Unix seconds")]
    BadTime { value: String, at: String },
    #[error("{PLACEMENT_ANNOTATION} {value:?} names no node")]
    NoNode { value: String },
    #[error("{PLACEMENT_ANNOTATION} {value:?}: GPU index {gpu:?} is not a number")]
    BadGpu { value: String, gpu: String },
}

impl Planned {
    /// The annotation's value.
    pub fn value(node: &str, gpus: &[u32], at: i64) -> String {
        if gpus.is_empty() {
            format!("{node}@{at}")
        } else {
            format!("{node}:{}@{at}", gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
        }
    }

    /// Reads the annotation's value back. Errors name the annotation and what is wrong.
    pub fn parse(value: &str) -> Result<Planned, PlacementError> {
        let (place, at) = match value.rsplit_once('@') {
            Some((place, at)) => {
                let at = at
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| PlacementError::BadTime { value: value.to_string(), at: at.to_string() })?;
                (place, Some(at))
            }
            None => (value, None),
        };
        let (node, gpus) = place.split_once(':').unwrap_or((place, ""));
        if node.is_empty() {
            return Err(PlacementError::NoNode { value: value.to_string() });
        }
        let gpus = gpus
            .split(',')
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.trim()
                    .parse::<u32>()
                    .map_err(|_| PlacementError::BadGpu { value: value.to_string(), gpu: g.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Planned { node: node.to_string(), gpus, at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_reads_back_as_written() {
        for (node, gpus) in [("n1", vec![]), ("gpu-node-7", vec![0, 3, 5])] {
            let v = Planned::value(node, &gpus, 1_793_491_200);
            assert_eq!(Planned::parse(&v), Ok(Planned { node: node.into(), gpus, at: Some(1_793_491_200) }));
        }
        // Written by a Gantry that recorded no time.
        assert_eq!(Planned::parse("n1:2,3"), Ok(Planned { node: "n1".into(), gpus: vec![2, 3], at: None }));
    }

    #[test]
    fn a_bad_placement_names_the_problem() {
        assert!(Planned::parse("").unwrap_err().to_string().contains("names no node"));
        assert!(Planned::parse(":1").unwrap_err().to_string().contains("names no node"));
        assert!(Planned::parse("n1:1,x").unwrap_err().to_string().contains("\"x\" is not a number"));
        assert!(Planned::parse("n1:1@soon").unwrap_err().to_string().contains("not Unix seconds"));
    }
}
