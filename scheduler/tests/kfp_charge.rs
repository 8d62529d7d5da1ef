//! Kubeflow Pipelines step pods, as upstream creates them (`fixtures/kfp/`), through the queue
//! controller and the core's ledger: their workloads are charged to the run (and its pipeline,
//! and its experiment where the pod names one), the tenant's use is split into one record per
//! run and one for the rest, and those add up to the tenant's use exactly.

use gantry_api::quota::{records_of, Record};
use gantry_core::model::{Cluster, ModelCatalog, Node, PodRequest};
use gantry_core::queue::{Charge, Mode, Queue};
use gantry_core::tenancy::file;
use gantry_core::{PolicyKind, Scheduler};
use gantry_scheduler::controller::{Action, Controller};
use serde_json::{json, Value};

const T0: i64 = 1_793_491_200;
const RUN: &str = "3f0b7a52-8c1e-4d7f-9a61-2b5c4e8d9f10";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/kfp/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn controller() -> Controller {
    let tenancy = file::parse("tenants.yaml", include_str!("fixtures/two-teams.yaml")).unwrap();
    let mut models = ModelCatalog::default();
    let a100 = models.intern("A100").unwrap();
    let nodes = (0..2).map(|i| Node::new(format!("gpu-{i}"), 128000, 1 << 20, 8, Some(a100))).collect();
    let cluster = Cluster::new(models, nodes);
    let scheduler =
        Scheduler::new(PolicyKind::Gantry.build(&cluster, &[PodRequest::whole_gpus(8000, 65536, 1)]));
    Controller::new(Queue::new(tenancy, cluster, scheduler, Mode::Quota, T0).unwrap())
}

/// A gated pod of team-a asking for one GPU, of no pipeline.
fn plain_pod() -> Value {
    json!({"metadata": {"name": "notebook", "namespace": "team-a", "uid": "plain", "labels": {}, "annotations": {}},
           "spec": {"schedulingGates": [{"name": "gantry.dev/admission"}],
                    "containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}})
}

fn ungated(actions: &[Action]) -> Vec<String> {
    let mut v: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Ungate { pod, .. } => Some(pod.name.clone()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn charge(experiment: Option<&str>) -> Charge {
    Charge {
        run: RUN.into(),
        experiment: experiment.map(Into::into),
        pipeline: Some("train-pipeline".into()),
    }
}

/// (run, experiment, pipeline, start, guaranteed) of a record.
type Figures<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, i64, u64);

/// Each record's figures, sorted.
fn figures(records: &[Record]) -> Vec<Figures<'_>> {
    let mut v: Vec<_> = records
        .iter()
        .map(|r| (r.run.as_deref(), r.experiment.as_deref(), r.pipeline.as_deref(), r.start, r.guaranteed))
        .collect();
    v.sort();
    v
}

#[test]
fn kfp_step_pods_are_charged_to_their_run_pipeline_and_experiment() {
    let (step, with_experiment) = (fixture("executor-pod.json"), fixture("executor-pod-experiment.json"));
    assert_eq!(gantry_api::charge::charge_of(&step), Some(charge(None)));
    assert_eq!(gantry_api::charge::charge_of(&with_experiment), Some(charge(Some("resnet-sweep"))));

    let mut c = controller();
    for p in [&step, &with_experiment, &plain_pod()] {
        c.pod_gated(p, T0);
    }
    assert_eq!(ungated(&c.reconcile(T0)).len(), 3);
    // The two steps end after an hour; the plain pod runs another hour.
    c.pod_gone("9f1c1e55-31a9-4a5e-9a2b-6a0f0c1d2e3f", T0 + 3600);
    c.pod_gone("0a1b2c3d-0000-4000-8000-000000000002", T0 + 3600);
    c.reconcile(T0 + 3600);
    c.close_accruals(T0 + 7200);
    let accruals = c.drain_accruals();
    let records = records_of(&c.queue().tenancy, &accruals);

    let pipeline = Some("train-pipeline");
    assert_eq!(
        figures(&records),
        vec![
            (None, None, None, T0, 1000 * 3600),
            (None, None, None, T0 + 3600, 1000 * 3600),
            (Some(RUN), None, pipeline, T0, 2000 * 3600),
            (Some(RUN), Some("resnet-sweep"), pipeline, T0, 2000 * 3600),
        ]
    );
    // The tenant's use is what it would be without runs: 5 GPUs for an hour, then 1.
    let total: u64 = records.iter().map(|r| r.guaranteed + r.borrowed).sum();
    assert_eq!(total, 5000 * 3600 + 1000 * 3600);
    // Every part has its own key, and a tenant's own record keeps the key it always had.
    let keys: std::collections::HashSet<String> = records.iter().map(Record::key).collect();
    assert_eq!(keys.len(), records.len());
    assert!(keys.contains(&format!("team-a/A100/{T0}/{}", T0 + 3600)));
    assert!(keys.contains(&format!("team-a/A100/{T0}/{}/run@{RUN}/pipeline@train-pipeline", T0 + 3600)));
    // As JSON the run's fields are camelCase and absent when not set.
    let line = serde_json::to_value(records.iter().find(|r| r.experiment.is_some()).unwrap()).unwrap();
    assert_eq!(line["run"], RUN);
    assert_eq!(line["experiment"], "resnet-sweep");
    let own = serde_json::to_value(records.iter().find(|r| r.run.is_none()).unwrap()).unwrap();
    assert!(own.get("run").is_none() && own.get("pipeline").is_none(), "{own}");
}

/// After a restart the running step is read back from its pod, with its charge.
#[test]
fn a_restarted_controller_charges_running_steps_to_their_run() {
    let step = fixture("executor-pod.json");
    let mut before = controller();
    before.pod_gated(&step, T0);
    let actions = before.reconcile(T0);
    let Some(Action::Ungate { node, gpus, .. }) = actions.iter().find(|a| matches!(a, Action::Ungate { .. }))
    else {
        panic!("the step starts: {actions:?}");
    };
    let mut running = step.clone();
    running["spec"]["schedulingGates"] = json!([]);
    running["metadata"]["annotations"]["gantry.dev/placement"] =
        json!(gantry_api::placement::Planned::value(node, gpus, T0));

    let mut after = controller();
    after.rebuild(&[running], T0 + 60);
    after.close_accruals(T0 + 3660);
    let accruals = after.drain_accruals();
    let records = records_of(&after.queue().tenancy, &accruals);
    assert_eq!(figures(&records), vec![(Some(RUN), None, Some("train-pipeline"), T0 + 60, 2000 * 3600)]);
}
