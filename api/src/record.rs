//! A pod read once, where it arrives (a watch event), into everything the extender's cache and
//! the queue controller use from it: its names, gate, phase, node, hold mark, declared gang
//! size, workload identity, pipeline charge, placement record and requests.
//!
//! Why: the scheduler keeps pods in its stores and rebuilds the queue controller from them (on
//! becoming leader, when the tenancy changes, after a relist). Reading a record costs one walk
//! of the object; rebuilding from records costs none, where rebuilding from the objects would
//! serialise and walk every pod again each time.
//!
//! What depends on the cluster is left for later: the GPU model names a pod accepts are kept as
//! written and looked up in the catalog of the moment ([`PodRecord::view`]), since models join
//! the catalog as nodes of them appear. Errors are kept too, as the messages the reading would
//! have given, so a pod that cannot be read is refused with the same words whenever it is used.

use crate::charge::charge_of;
use crate::identity::{identify, Identity};
use crate::keys::HOLD_ANNOTATION;
use crate::placement::{PlacementError, Planned};
use crate::pod::{
    annotated_gang_size, annotation, created, gated, names, planned, pod_finished, read_demand, Demand,
    PodError, PodView,
};
use gantry_core::model::ModelCatalog;
use gantry_core::queue::Charge;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// A pod as read once (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct PodRecord {
    /// `metadata.namespace`, `default` when unset.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `metadata.creationTimestamp` in Unix seconds.
    pub created: Option<i64>,
    /// Whether Gantry's scheduling gate holds it.
    pub gated: bool,
    /// Whether it ended (`Succeeded` or `Failed`).
    pub finished: bool,
    /// `spec.nodeName`, once assigned.
    pub node_name: Option<String>,
    /// Its `gantry.dev/hold` mark, exactly as set.
    pub hold: Option<String>,
    /// The gang size its annotation declares ([`annotated_gang_size`]).
    pub gang_size: Option<u32>,
    pub identity: Identity,
    /// The pipeline run its cost is charged to.
    pub charge: Option<Charge>,
    /// Where the queue planned it, when it carries a record; `Err` when the record is unreadable.
    pub planned: Result<Option<Planned>, PlacementError>,
    demand: Result<Demand, PodError>,
}

impl PodRecord {
    /// Reads `pod`. Never fails: what cannot be read is kept as its error.
    pub fn read(pod: &Value) -> PodRecord {
        let (namespace, name, uid) = names(pod);
        let demand = if pod.is_object() {
            read_demand(pod, &format!("pod {namespace}/{name}"))
        } else {
            Err(PodError::NotAnObject)
        };
        PodRecord {
            created: created(pod),
            gated: gated(pod),
            finished: pod_finished(pod),
            node_name: pod
                .get("spec")
                .and_then(|s| s.get("nodeName"))
                .and_then(Value::as_str)
                .map(str::to_string),
            hold: annotation(pod, HOLD_ANNOTATION).map(str::to_string),
            gang_size: annotated_gang_size(pod),
            identity: identify(pod),
            charge: charge_of(pod),
            planned: planned(pod),
            demand,
            namespace,
            name,
            uid,
        }
    }

    /// The pod as the extender and the queue see it, its GPU models looked up in `models`; the
    /// same result, and the same error, as [`crate::pod::parse_pod`] on the object.
    pub fn view(&self, models: &ModelCatalog) -> Result<PodView, PodError> {
        let demand = self.demand.as_ref().map_err(Clone::clone)?;
        let request = demand.resolve(models, &format!("pod {}/{}", self.namespace, self.name))?;
        Ok(PodView {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            request,
            created: self.created,
        })
    }
}

/// What the scheduler's pod handlers take: a record read once, or an object (tests, tools),
/// read when handed over.
pub trait AsRecord {
    fn record(&self) -> Cow<'_, PodRecord>;
}

impl AsRecord for PodRecord {
    fn record(&self) -> Cow<'_, PodRecord> {
        Cow::Borrowed(self)
    }
}

impl AsRecord for Arc<PodRecord> {
    fn record(&self) -> Cow<'_, PodRecord> {
        Cow::Borrowed(self)
    }
}

impl AsRecord for Value {
    fn record(&self) -> Cow<'_, PodRecord> {
        Cow::Owned(PodRecord::read(self))
    }
}

impl<T: AsRecord + ?Sized> AsRecord for &T {
    fn record(&self) -> Cow<'_, PodRecord> {
        (**self).record()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog(names: &[&str]) -> ModelCatalog {
        let mut m = ModelCatalog::default();
        for n in names {
            m.intern(n).unwrap();
        }
        m
    }

    #[test]
    fn a_record_views_the_pod_as_parse_pod_does_against_the_catalog_of_the_moment() {
        let pod = json!({"metadata": {"name": "w-0", "namespace": "team-a", "uid": "u1",
                "creationTimestamp": "2026-11-01T00:00:00Z",
                "labels": {"training.kubeflow.org/job-name": "bert", "pipeline/runid": "run-1"},
                "annotations": {"gantry.dev/gpu-models": "H100", "gantry.dev/hold": "",
                    "gantry.dev/placement": "gpu-0:0,1@1793491200"}},
            "spec": {"nodeName": "gpu-0", "schedulingGates": [{"name": "gantry.dev/queue"}],
                "containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}]},
            "status": {"phase": "Running"}});
        let r = PodRecord::read(&pod);
        assert_eq!((r.namespace.as_str(), r.name.as_str(), r.uid.as_str()), ("team-a", "w-0", "u1"));
        assert_eq!((r.node_name.as_deref(), r.hold.as_deref(), r.finished), (Some("gpu-0"), Some(""), false));
        assert_eq!(
            r.planned,
            Ok(Some(Planned { node: "gpu-0".into(), gpus: vec![0, 1], at: Some(1793491200) }))
        );
        assert_eq!(r.identity, identify(&pod));
        assert_eq!(r.charge.as_ref().map(|c| c.run.as_str()), Some("run-1"));
        // H100 is not in the catalog yet: the same refusal as reading the object.
        let before = catalog(&["A100"]);
        assert_eq!(r.view(&before), crate::pod::parse_pod(&pod, &before));
        assert!(r.view(&before).is_err());
        // Once a node of the model is seen, the record read earlier resolves it.
        let after = catalog(&["A100", "H100"]);
        assert_eq!(r.view(&after), crate::pod::parse_pod(&pod, &after));
        assert_eq!(r.view(&after).map(|v| v.request.gpu_count), Ok(2));
    }

    #[test]
    fn unreadable_pods_keep_the_error_they_would_have_given() {
        let models = catalog(&["A100"]);
        for pod in [
            json!(null),
            json!({"metadata": {"name": "p", "namespace": "ns"},
                "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "lots"}}}]}}),
            json!({"metadata": {"name": "p", "annotations": {"gantry.dev/gpu-milli": "2000"}},
                "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}),
        ] {
            let r = PodRecord::read(&pod);
            assert_eq!(r.view(&models), crate::pod::parse_pod(&pod, &models), "{pod}");
            assert!(r.view(&models).is_err(), "{pod}");
        }
    }
}
