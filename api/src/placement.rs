//! The placement record: where the queue controller planned an admitted pod, written on the pod
//! as the annotation [`PLACEMENT_ANNOTATION`] when its gate is removed. The extender reads it to
//! send the pod only there; after a restart the controller reads it to take running workloads
//! back at their places. One format, one writer ([`Planned::value`]), one reader
//! ([`Planned::parse`]).
//!
//! Format: `node` or `node:gpu,gpu` (GPU indexes on that node).

use crate::keys::PLACEMENT_ANNOTATION;

/// A planned placement: the node and the GPU indexes on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub node: String,
    pub gpus: Vec<u32>,
}

impl Planned {
    /// The annotation's value.
    pub fn value(node: &str, gpus: &[u32]) -> String {
        if gpus.is_empty() {
            node.to_string()
        } else {
            format!("{node}:{}", gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
        }
    }

    /// Reads the annotation's value back. Errors name the annotation and what is wrong.
    pub fn parse(value: &str) -> Result<Planned, String> {
        let (node, gpus) = value.split_once(':').unwrap_or((value, ""));
        if node.is_empty() {
            return Err(format!("{PLACEMENT_ANNOTATION} {value:?} names no node"));
        }
        let gpus = gpus
            .split(',')
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{PLACEMENT_ANNOTATION} {value:?}: GPU index {g:?} is not a number"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Planned { node: node.to_string(), gpus })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_reads_back_as_written() {
        for (node, gpus) in [("n1", vec![]), ("gpu-node-7", vec![0, 3, 5])] {
            let v = Planned::value(node, &gpus);
            assert_eq!(Planned::parse(&v), Ok(Planned { node: node.into(), gpus }));
        }
    }

    #[test]
    fn a_bad_placement_names_the_problem() {
        assert!(Planned::parse("").unwrap_err().contains("names no node"));
        assert!(Planned::parse(":1").unwrap_err().contains("names no node"));
        assert!(Planned::parse("n1:1,x").unwrap_err().contains("\"x\" is not a number"));
    }
}
