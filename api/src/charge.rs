//! What a pod's cost is charged to below its tenant: the Kubeflow Pipelines run it is a step of,
//! with the run's pipeline and experiment where the pod names them. The queue controller reads
//! it into the workload ([`gantry_core::queue::Charge`]); the core's ledger splits the tenant's
//! use by it, and the quota API sums cost per run, pipeline and experiment.
//!
//! What is on a KFP run's pods, as upstream creates them (the fixture
//! `scheduler/tests/fixtures/kfp/` stores one, with its sources):
//!
//! - the run: label [`KFP_RUN_ID_LABEL`] (`pipeline/runid`), the run's UUID, which KFP's API
//!   server puts on every pod of the run through the Workflow's `podMetadata` (v1 and v2, and the
//!   runs of recurring runs);
//! - the pipeline: KFP v2 pods (label [`KFP_V2_COMPONENT_LABEL`]) run the user's command through
//!   KFP's launcher, whose command in the container `main` names the compiled pipeline after
//!   [`KFP_PIPELINE_NAME_FLAG`] (`pipelineInfo.name`, the name MLMD's pipeline context has);
//! - the experiment: not on the pod nor on the Workflow (KFP keeps it in its database), so only
//!   Gantry's label [`EXPERIMENT_LABEL`], where the pipeline's author adds it to the tasks.
//!
//! Nothing here is fetched: the pod alone says it, so a step is charged the moment it is seen
//! and after any restart alike. The values are the tenant's own to set (they split only its own
//! cost), but each must be a plain name (see [`name`]): a value that is not is left out, never
//! refused, since the pod runs the same either way.

use crate::keys::{EXPERIMENT_LABEL, KFP_PIPELINE_NAME_FLAG, KFP_RUN_ID_LABEL, KFP_V2_COMPONENT_LABEL};
use crate::pod::label;
use gantry_core::queue::Charge;
use serde_json::Value;

/// The longest run, experiment or pipeline name charged: KFP's pipeline names are at most 128
/// characters (the SDK's rule), label values at most 63.
pub const MAX_NAME: usize = 128;

/// `v` when it is a plain name: 1 to [`MAX_NAME`] ASCII letters, digits, `-`, `_` and `.` (what
/// a label value and a KFP pipeline name may hold). Anything else could not be told apart in the
/// ledger's keys or would need escaping in every report, so it is not charged.
pub fn name(v: &str) -> Option<&str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    (!v.is_empty() && v.len() <= MAX_NAME && v.chars().all(plain)).then_some(v)
}

/// What `pod`'s cost is charged to below its tenant: `None` for a pod of no pipeline run.
pub fn charge_of(pod: &Value) -> Option<Charge> {
    let run = label(pod, KFP_RUN_ID_LABEL).and_then(name)?;
    let pipeline = if label(pod, KFP_V2_COMPONENT_LABEL).is_some() { pipeline_of(pod) } else { None };
    Some(Charge {
        run: run.to_string(),
        experiment: label(pod, EXPERIMENT_LABEL).and_then(name).map(str::to_string),
        pipeline: pipeline.map(str::to_string),
    })
}

/// The pipeline name after [`KFP_PIPELINE_NAME_FLAG`] in the command (then the arguments) of
/// the container `main` (Argo's name for the step's own container).
fn pipeline_of(pod: &Value) -> Option<&str> {
    let main = pod["spec"]["containers"].as_array()?.iter().find(|c| c["name"].as_str() == Some("main"))?;
    ["command", "args"].iter().find_map(|field| {
        let words = main[*field].as_array()?;
        let at = words.iter().position(|w| w.as_str() == Some(KFP_PIPELINE_NAME_FLAG))?;
        words.get(at + 1)?.as_str().and_then(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value, command: Value) -> Value {
        json!({
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "wait"}, {"name": "main", "command": command}]}
        })
    }

    #[test]
    fn a_v2_step_is_charged_to_its_run_and_pipeline() {
        let p = pod(
            json!({"pipeline/runid": "r-1", "pipelines.kubeflow.org/v2_component": "true"}),
            json!(["/kfp-launcher/launch", "--pipeline_name", "my-pipeline", "--run_id", "r-1", "--"]),
        );
        assert_eq!(
            charge_of(&p),
            Some(Charge { run: "r-1".into(), experiment: None, pipeline: Some("my-pipeline".into()) })
        );
    }

    #[test]
    fn table() {
        let v2 = |extra: Value| {
            let mut l = json!({"pipeline/runid": "r-1", "pipelines.kubeflow.org/v2_component": "true"});
            if let (Some(l), Some(e)) = (l.as_object_mut(), extra.as_object()) {
                l.extend(e.clone());
            }
            l
        };
        let launcher = json!(["/kfp-launcher/launch", "--pipeline_name", "p"]);
        let cases = [
            // No run label: the tenant only, whatever else it has.
            (pod(json!({"workflows.argoproj.io/workflow": "wf"}), launcher.clone()), None),
            // An empty or odd run id is not charged.
            (pod(json!({"pipeline/runid": ""}), launcher.clone()), None),
            (pod(json!({"pipeline/runid": "a/b"}), launcher.clone()), None),
            // A v1 step: the run, no pipeline (its main container is the user's own command).
            (pod(json!({"pipeline/runid": "r-1"}), launcher.clone()), Some(("r-1", None, None))),
            // The experiment label, when a plain name.
            (
                pod(v2(json!({"gantry.dev/experiment": "e-1"})), launcher.clone()),
                Some(("r-1", Some("e-1"), Some("p"))),
            ),
            (
                pod(v2(json!({"gantry.dev/experiment": "x y"})), launcher.clone()),
                Some(("r-1", None, Some("p"))),
            ),
            // No flag, the flag last, or a value that is not a name: no pipeline.
            (pod(v2(json!({})), json!(["python", "train.py"])), Some(("r-1", None, None))),
            (pod(v2(json!({})), json!(["launch", "--pipeline_name"])), Some(("r-1", None, None))),
            (pod(v2(json!({})), json!(["launch", "--pipeline_name", "=cmd()"])), Some(("r-1", None, None))),
            (
                pod(v2(json!({})), json!(["launch", "--pipeline_name", "a".repeat(129)])),
                Some(("r-1", None, None)),
            ),
        ];
        for (p, want) in cases {
            let want = want.map(|(r, e, pl): (&str, Option<&str>, Option<&str>)| Charge {
                run: r.into(),
                experiment: e.map(Into::into),
                pipeline: pl.map(Into::into),
            });
            assert_eq!(charge_of(&p), want, "{p}");
        }
        // The flag in the arguments when the command does not have it.
        let p = json!({"metadata": {"labels": v2(json!({}))}, "spec": {"containers": [{"name": "main", "args": ["--pipeline_name", "q"]}]}});
        assert_eq!(charge_of(&p).and_then(|c| c.pipeline), Some("q".into()));
    }
}
