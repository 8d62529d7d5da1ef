"""A Kubeflow Pipelines run whose GPU step Gantry queues in its tenant's quota and charges to the
run, its pipeline and its experiment.

    pip install 'kfp>=2.7' 'kfp-kubernetes>=1.2'
    python examples/kubernetes/kfp-pipeline-run.py --host https://kubeflow.example.com/pipeline \\
        --namespace team-a

What Gantry reads from the step pods KFP creates (docs/quota-api.md, "Cost per Kubeflow Pipelines
run"): the run from the label `pipeline/runid` that KFP's API server puts on every pod of the run,
the pipeline from the launcher's `--pipeline_name` (this file's `name=`), and the experiment from
the label `gantry.dev/experiment` the pipeline adds to its GPU task below (KFP itself keeps the
experiment only in its database). Then:

    kubectl gantry cost --tenant team-a --since 1d          # the tenant's cost
    curl -H "Authorization: Bearer $TOKEN" \\
        "$QUOTA_API/api/v1/cost?tenant=team-a&group=run"    # per run (or group=pipeline|experiment)
"""

import argparse

from kfp import client, dsl, kubernetes

EXPERIMENT = "bert-finetune"


@dsl.component(base_image="python:3.11")
def prepare(rows: int) -> str:
    return f"prepared {rows} rows"


@dsl.component(base_image="pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime")
def train(note: str) -> str:
    import torch

    return f"{note}; trained on {torch.cuda.get_device_name(0)}"


@dsl.pipeline(name="bert-finetune-pipeline")
def pipeline(rows: int = 10_000):
    data = prepare(rows=rows)  # CPU only: Gantry lets it through without queueing it
    step = train(note=data.output)
    # One GPU: the pod is gated by Gantry's webhook and admitted within team-a's quota.
    step.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    step.set_cpu_request("4").set_memory_request("16G")
    # The experiment, for Gantry's per-experiment cost (kfp-kubernetes adds it to the pod).
    kubernetes.add_pod_label(step, label_key="gantry.dev/experiment", label_value=EXPERIMENT)


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--host", required=True, help="the KFP API, e.g. https://kubeflow.example.com/pipeline")
    args.add_argument("--namespace", default="team-a", help="the Profile namespace to run in")
    opts = args.parse_args()
    run = client.Client(host=opts.host, namespace=opts.namespace).create_run_from_pipeline_func(
        pipeline, arguments={"rows": 10_000}, experiment_name=EXPERIMENT, namespace=opts.namespace
    )
    print(f"run {run.run_id}: its GPU step is charged to run {run.run_id}, pipeline "
          f"bert-finetune-pipeline and experiment {EXPERIMENT}")
