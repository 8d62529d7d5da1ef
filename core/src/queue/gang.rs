//! Placing a whole gang, or nothing.
//!
//! Members are placed largest first. Each member first tries the nodes the gang already uses, so
//! a gang spreads over as few nodes as it must; otherwise the placement policy chooses among all
//! nodes of the gang's flavor. If any member fits nowhere, every member placed so far is released:
//! the cluster is left exactly as it was.

use crate::model::{Cluster, NodeId, Placement, PodRequest};
use crate::schedule::{Scheduler, Unschedulable};

/// Why a gang did not fit: the first member that found no node, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct GangMisfit {
    pub member: usize,
    pub placed: usize,
    pub why: Unschedulable,
}

/// Places `members` (already ordered largest first) with pod ids `ids`, all or nothing.
pub fn place_gang(
    cluster: &mut Cluster,
    scheduler: &mut Scheduler,
    nodes: &[NodeId],
    members: &[PodRequest],
    ids: &[u64],
    salt: u64,
) -> Result<Vec<Placement>, GangMisfit> {
    let mut used: Vec<NodeId> = Vec::new();
    let mut placed: Vec<Placement> = Vec::with_capacity(members.len());
    for (i, pod) in members.iter().enumerate() {
        let salt = salt.wrapping_add(i as u64);
        let mut choice = Err(Unschedulable::default());
        if !used.is_empty() {
            choice = scheduler.decide_among(cluster, pod, salt, used.iter().copied());
        }
        if choice.is_err() {
            choice = scheduler.decide_among(cluster, pod, salt, nodes.iter().copied());
        }
        let allocated = choice.and_then(|p| {
            cluster.allocate(ids[i], pod, p.clone()).map(|()| p).map_err(|_| Unschedulable::default())
        });
        match allocated {
            Ok(p) => {
                if !used.contains(&p.node) {
                    used.push(p.node);
                }
                placed.push(p);
            }
            Err(why) => {
                for &id in &ids[..i] {
                    // Placed a moment ago by this function, so release cannot fail.
                    let _ = cluster.release(id);
                }
                return Err(GangMisfit { member: i, placed: i, why });
            }
        }
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelCatalog, Node};
    use crate::policy::PolicyKind;

    fn cluster(gpus: &[u32]) -> Cluster {
        let mut models = ModelCatalog::default();
        let a100 = models.intern("A100").unwrap();
        let nodes = gpus
            .iter()
            .enumerate()
            .map(|(i, &g)| Node::new(format!("n{i}"), 64000, 512 * 1024, g, Some(a100)))
            .collect();
        Cluster::new(models, nodes)
    }

    #[test]
    fn a_gang_that_does_not_fit_leaves_the_cluster_unchanged() {
        let mut c = cluster(&[8, 8, 4]);
        let before: Vec<u32> = c.nodes.iter().map(|n| n.gpu_free_total).collect();
        let mut s = Scheduler::new(PolicyKind::BestFit.build(&c, &[]));
        let pod = PodRequest::whole_gpus(8000, 1024, 8);
        let err = place_gang(&mut c, &mut s, &[0, 1, 2], &[pod; 3], &[1, 2, 3], 0).unwrap_err();
        assert_eq!(err.member, 2);
        assert_eq!(c.nodes.iter().map(|n| n.gpu_free_total).collect::<Vec<_>>(), before);
        assert_eq!(c.placed_pods(), 0);
    }

    #[test]
    fn small_members_share_the_nodes_the_gang_already_uses() {
        let mut c = cluster(&[8, 8, 8, 8]);
        let mut s = Scheduler::new(PolicyKind::Fgd.build(&c, &[]));
        let pod = PodRequest::whole_gpus(4000, 1024, 2);
        let placed = place_gang(&mut c, &mut s, &[0, 1, 2, 3], &[pod; 4], &[1, 2, 3, 4], 7).unwrap();
        let mut nodes: Vec<_> = placed.iter().map(|p| p.node).collect();
        nodes.dedup();
        assert_eq!(nodes.len(), 1, "four 2-GPU members fit on one 8-GPU node: {placed:?}");
    }
}
