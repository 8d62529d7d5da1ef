//! Table tests: every classification key, every denial and every warning, each with the exact
//! text a user reads.

mod common;
use common::*;
use gantry_admission_webhook::Path;
use serde_json::{json, Value};

fn owner(kind: &str, name: &str) -> Value {
    json!([{"apiVersion": "x/v1", "kind": kind, "name": name, "uid": "u", "controller": true}])
}

#[test]
fn every_classification_key_is_recorded_on_the_pod() {
    let w = webhook(None);
    let none = json!({});
    let cases = [
        // (labels, annotations, owners, kind, workload, priority class)
        (
            json!({"scheduling.x-k8s.io/pod-group": "pg1"}),
            none.clone(),
            json!([]),
            "training",
            "colin-coder/pod-group/pg1",
            "training",
        ),
        (
            none.clone(),
            json!({"scheduling.k8s.io/group-name": "podgroup-x"}),
            json!([]),
            "training",
            "colin-coder/volcano-group/podgroup-x",
            "training",
        ),
        (
            json!({"kueue.x-k8s.io/pod-group-name": "g"}),
            none.clone(),
            json!([]),
            "training",
            "colin-coder/kueue-pod-group/g",
            "training",
        ),
        (
            json!({"training.kubeflow.org/job-name": "bert"}),
            none.clone(),
            owner("PyTorchJob", "bert"),
            "training",
            "colin-coder/pytorchjob/bert",
            "training",
        ),
        (
            json!({"jobset.sigs.k8s.io/jobset-name": "llm"}),
            none.clone(),
            owner("Job", "llm-node-0"),
            "training",
            "colin-coder/jobset/llm",
            "training",
        ),
        (
            json!({"serving.kserve.io/inferenceservice": "sk"}),
            none.clone(),
            owner("ReplicaSet", "sk-1"),
            "serving",
            "colin-coder/inferenceservice/sk",
            "serving",
        ),
        (
            json!({"notebook-name": "nb"}),
            none.clone(),
            owner("StatefulSet", "nb"),
            "notebook",
            "colin-coder/notebook/nb",
            "notebook",
        ),
        (
            json!({"workflows.argoproj.io/workflow": "run-1", "pipelines.kubeflow.org/v2_component": "true"}),
            none.clone(),
            owner("Workflow", "run-1"),
            "pipeline-step",
            "colin-coder/workflow/run-1",
            "pipeline-step",
        ),
        (none.clone(), none.clone(), owner("Job", "etl"), "batch", "colin-coder/job/etl", "batch"),
        (
            none.clone(),
            none.clone(),
            owner("ReplicaSet", "web-5d8"),
            "serving",
            "colin-coder/replicaset/web-5d8",
            "serving",
        ),
        (none.clone(), none.clone(), json!([]), "batch", "colin-coder/pod", "batch"),
    ];
    for (labels, annotations, owners, kind, workload, class) in cases {
        let mut p = pod(labels.clone(), annotations, json!({"nvidia.com/gpu": 1}));
        p["metadata"]["ownerReferences"] = owners;
        let (_, reply) = call(&w, Path::Mutate, &review("colin-coder", p.clone()));
        let out = apply(&p, &reply);
        let m = &out["metadata"];
        assert_eq!(m["labels"]["gantry.dev/kind"], kind, "{labels}");
        assert_eq!(m["labels"]["gantry.dev/tenant"], "coder", "{labels}");
        assert_eq!(m["annotations"]["gantry.dev/workload"], workload, "{labels}");
        assert_eq!(m["annotations"]["gantry.dev/priority-class"], class, "{labels}");
        assert_eq!(out["spec"]["schedulingGates"], json!([{"name": "gantry.dev/admission"}]), "{labels}");
        let (_, again) = call(&w, Path::Mutate, &review("colin-coder", out.clone()));
        assert!(again["response"].get("patch").is_none(), "idempotent: {labels}: {again}");
        let (_, valid) = call(&w, Path::Validate, &review("colin-coder", out));
        assert_eq!(valid["response"]["allowed"], true, "{labels}: {valid}");
    }
}

#[test]
fn mutation_details() {
    let w = webhook(Some("gantry-scheduler"));
    let mutate = |p: &Value, ns: &str| {
        let (_, reply) = call(&w, Path::Mutate, &review(ns, p.clone()));
        apply(p, &reply)
    };
    // The tenant's class per kind: search's serving pods get urgent.
    let serving =
        pod(json!({"serving.kserve.io/inferenceservice": "sk"}), json!({}), json!({"nvidia.com/gpu": 1}));
    let mut in_search = serving.clone();
    in_search["metadata"]["namespace"] = json!("search");
    assert_eq!(
        mutate(&in_search, "search")["metadata"]["annotations"]["gantry.dev/priority-class"],
        "urgent"
    );
    // A Gantry class in spec.priorityClassName is recorded; a user's annotation is kept.
    let mut named = serving.clone();
    named["spec"]["priorityClassName"] = json!("batch");
    assert_eq!(
        mutate(&named, "colin-coder")["metadata"]["annotations"]["gantry.dev/priority-class"],
        "batch"
    );
    // Kueue's group size becomes the gang size; an absent namespace in the object is filled in.
    let mut kueue = pod(
        json!({"kueue.x-k8s.io/pod-group-name": "g"}),
        json!({"kueue.x-k8s.io/pod-group-total-count": "4"}),
        json!({}),
    );
    kueue["metadata"].as_object_mut().unwrap().remove("namespace");
    let out = mutate(&kueue, "colin-coder");
    assert_eq!(out["metadata"]["annotations"]["gantry.dev/gang-size"], "4");
    assert_eq!(out["metadata"]["annotations"]["gantry.dev/workload"], "colin-coder/kueue-pod-group/g");
    // A CPU pod of a gang is held with it (it must not start before the GPU members).
    assert_eq!(out["spec"]["schedulingGates"], json!([{"name": "gantry.dev/admission"}]));
    assert_eq!(out["spec"]["schedulerName"], "gantry-scheduler");
    // A CPU pod of a framework gang too: an MPIJob's launcher, with no GPU.
    let mut launcher = pod(
        json!({"training.kubeflow.org/job-name": "pi", "training.kubeflow.org/job-role": "launcher", "training.kubeflow.org/operator-name": "mpi-operator"}),
        json!({}),
        json!({}),
    );
    launcher["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "pi-launcher", "uid": "j", "controller": true}]);
    let out = mutate(&launcher, "colin-coder");
    assert_eq!(out["metadata"]["annotations"]["gantry.dev/workload"], "colin-coder/mpijob/pi");
    assert_eq!(out["spec"]["schedulingGates"], json!([{"name": "gantry.dev/admission"}]));
    // CPU pods that are no gang's: tagged, not gated, scheduler unchanged.
    let cpu = mutate(&pod(json!({}), json!({}), json!({})), "colin-coder");
    assert!(cpu["spec"].get("schedulingGates").is_none());
    assert_eq!(cpu["spec"]["schedulerName"], "default-scheduler");
    // No labels or annotations at all: the maps are created.
    let mut bare = pod(json!({}), json!({}), json!({"nvidia.com/gpu": "1"}));
    let meta = bare["metadata"].as_object_mut().unwrap();
    meta.remove("labels");
    meta.remove("annotations");
    let out = mutate(&bare, "colin-coder");
    assert_eq!(out["metadata"]["labels"], json!({"gantry.dev/kind": "batch", "gantry.dev/tenant": "coder"}));
    assert_eq!(out["spec"]["schedulerName"], "gantry-scheduler");
    // Another gate is kept and ours appended; another scheduler's pod keeps its scheduler; a bound pod is not gated.
    let mut gated = bare.clone();
    gated["spec"]["schedulingGates"] = json!([{"name": "other"}]);
    gated["spec"]["schedulerName"] = json!("volcano");
    let out = mutate(&gated, "colin-coder");
    assert_eq!(out["spec"]["schedulingGates"], json!([{"name": "other"}, {"name": "gantry.dev/admission"}]));
    assert_eq!(out["spec"]["schedulerName"], "volcano");
    let mut bound = bare.clone();
    bound["spec"]["nodeName"] = json!("n1");
    assert!(mutate(&bound, "colin-coder")["spec"].get("schedulingGates").is_none());
    // Mirror pods and other namespaces, operations or kinds are untouched.
    let mut mirror = bare.clone();
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
    assert_eq!(mutate(&mirror, "colin-coder"), mirror);
    assert_eq!(mutate(&bare, "kube-system"), bare);
    let mut update: Value = serde_json::from_str(&review("colin-coder", bare.clone())).unwrap();
    update["request"]["operation"] = json!("UPDATE");
    let (_, reply) = call(&w, Path::Mutate, &update.to_string());
    assert_eq!(reply["response"], json!({"uid": "uid-1", "allowed": true}));
}

/// Denials: (pod, the exact message).
#[test]
fn every_denial_says_which_field_and_what_to_do() {
    let w = webhook(None);
    let gpu = |n: Value| json!({"nvidia.com/gpu": n});
    let with = |mut p: Value, path: &[&str], v: Value| {
        let mut at = &mut p;
        for k in path {
            at = &mut at[*k];
        }
        *at = v;
        p
    };
    let cases: Vec<(Value, &str)> = vec![
        (pod(json!({"gantry.dev/tenant": "search"}), json!({}), json!({})),
         "metadata.labels[gantry.dev/tenant] is \"search\", but namespace colin-coder belongs to tenant coder; remove the label: a pod always runs in the queue of its namespace's tenant"),
        (pod(json!({"gantry.dev/kind": "serving", "scheduling.x-k8s.io/pod-group": "pg"}), json!({}), json!({})),
         "metadata.labels[gantry.dev/kind] is \"serving\", but the pod is a training workload (from label scheduling.x-k8s.io/pod-group); remove the label: Gantry sets it"),
        (pod(json!({}), json!({"gantry.dev/priority-class": "urgent"}), json!({})),
         "metadata.annotations[gantry.dev/priority-class]: tenant coder may not use priority class urgent; use one of serving, notebook, pipeline-step, training, batch, or ask a platform admin to allow it"),
        (with(pod(json!({}), json!({}), json!({})), &["spec", "priorityClassName"], json!("urgent")),
         "spec.priorityClassName: tenant coder may not use priority class urgent; use one of serving, notebook, pipeline-step, training, batch, or ask a platform admin to allow it"),
        (pod(json!({}), json!({"gantry.dev/priority-class": "gold"}), json!({})),
         "metadata.annotations[gantry.dev/priority-class]: priority class \"gold\" does not exist; use one of serving, notebook, pipeline-step, training, batch, urgent, or remove it to get the default"),
        (with(pod(json!({}), json!({"gantry.dev/priority-class": "batch"}), json!({})), &["spec", "priorityClassName"], json!("training")),
         "metadata.annotations[gantry.dev/priority-class] is \"batch\" but spec.priorityClassName is \"training\"; remove the annotation or make them equal"),
        (pod(json!({}), json!({}), gpu(json!("0.5"))),
         "spec.containers[0].resources.limits[nvidia.com/gpu] is \"0.5\": nvidia.com/gpu counts whole GPUs; to share one GPU ask for 1 and set the annotation gantry.dev/gpu-milli (e.g. \"500\")"),
        (with(pod(json!({}), json!({}), gpu(json!(1))), &["spec", "nodeSelector"], json!({"nvidia.com/gpu.product": "H100"})),
         "spec.nodeSelector[nvidia.com/gpu.product]: GPU model \"H100\" is not in this cluster (models: A100, V100); name one of them"),
        (pod(json!({}), json!({"gantry.dev/gpu-models": "A100,B200"}), gpu(json!(1))),
         "metadata.annotations[gantry.dev/gpu-models]: GPU model \"B200\" is not in this cluster (models: A100, V100); name one of them"),
        (pod(json!({}), json!({}), gpu(json!("16"))),
         "spec.containers: the pod asks for 16 nvidia.com/gpu, but tenant coder can never hold more than 8 of the models it accepts (nominal plus borrowing: A100 8, V100 4); ask for at most 8, or ask a platform admin to raise the quota"),
        (pod(json!({}), json!({"gantry.dev/gpu-models": "V100"}), gpu(json!(5))),
         "spec.containers: the pod asks for 5 nvidia.com/gpu, but tenant coder can never hold more than 4 of the models it accepts (nominal plus borrowing: V100 4); ask for at most 4, or ask a platform admin to raise the quota"),
        (pod(json!({}), json!({"gantry.dev/gpu-milli": "1500", "gantry.dev/gpu-models": "V100"}), gpu(json!(1))),
         "pod colin-coder/: gantry.dev/gpu-milli is \"1500\"; give milli-GPU from 1 to 999"),
        (pod(json!({"scheduling.x-k8s.io/pod-group": "pg"}), json!({"gantry.dev/gang-size": "lots"}), json!({})),
         "metadata.annotations[gantry.dev/gang-size] is \"lots\"; give the number of pods in the gang, a whole number from 1 to 10000"),
        (pod(json!({"kueue.x-k8s.io/pod-group-name": "g"}), json!({"gantry.dev/gang-size": "2", "kueue.x-k8s.io/pod-group-total-count": "4"}), json!({})),
         "metadata.annotations[gantry.dev/gang-size] is 2 but kueue.x-k8s.io/pod-group-total-count is \"4\"; remove gantry.dev/gang-size: Gantry copies Kueue's count"),
        (pod(json!({}), json!({"gantry.dev/gang-size": "4"}), json!({})),
         "metadata.annotations[gantry.dev/gang-size] is 4, but the pod names no workload for the other 3 to join; label the pods scheduling.x-k8s.io/pod-group, create them from a Job or framework, or remove the annotation"),
        (pod(json!({"jobset.sigs.k8s.io/jobset-name": "llm", "jobset.sigs.k8s.io/job-global-index": "4"}), json!({"gantry.dev/gang-size": "4"}), json!({})),
         "metadata.annotations[gantry.dev/gang-size] is 4, but the pod's jobset.sigs.k8s.io/job-global-index is 4, so the gang has more members; set gantry.dev/gang-size to the gang's pod count"),
    ];
    for (p, message) in cases {
        let (status, reply) = call(&w, Path::Validate, &review("colin-coder", held(p.clone())));
        assert_eq!(status, 200);
        assert_eq!(reply["response"]["allowed"], false, "{p}");
        assert_eq!(reply["response"]["status"]["code"], 403, "{p}");
        assert_eq!(denial(&reply), message, "{p}");
    }
    // Several problems: all of them, one per line.
    let both = pod(json!({"gantry.dev/tenant": "search"}), json!({}), gpu(json!("0.5")));
    let (_, reply) = call(&w, Path::Validate, &review("colin-coder", held(both)));
    assert_eq!(denial(&reply).lines().count(), 2, "{reply}");
    // GPU pods outside Gantry's queue: bound to a node, or never seen by the mutating webhook.
    let bound = with(held(pod(json!({}), json!({}), gpu(json!(1)))), &["spec", "nodeName"], json!("gpu-7"));
    let ungated = pod(json!({}), json!({}), gpu(json!(1)));
    let shared_a100 = held(pod(
        json!({}),
        json!({"gantry.dev/gpu-milli": "1", "gantry.dev/gpu-models": "A100"}),
        gpu(json!(1)),
    ));
    let sidecar = held(with(
        pod(json!({}), json!({}), json!({})),
        &["spec", "initContainers"],
        json!([{"name": "side", "restartPolicy": "Always", "resources": {"limits": {"nvidia.com/gpu": "64"}}}]),
    ));
    let mig = held(pod(json!({}), json!({}), json!({"nvidia.com/mig-1g.10gb": 7})));
    let claims = held(with(
        pod(json!({}), json!({}), json!({})),
        &["spec", "resourceClaims"],
        json!([{"name": "gpu", "resourceClaimTemplateName": "a100"}]),
    ));
    for (p, message) in [
        (mig, "spec.containers[0].resources.limits[nvidia.com/mig-1g.10gb]: MIG slices are not counted by Gantry's quota in tenant namespaces; ask for nvidia.com/gpu (a MIG slice as a flavor of its own is not supported yet)"),
        (claims, "spec.resourceClaims: devices from resource claims (DRA) are not counted by Gantry's quota in tenant namespaces; ask for nvidia.com/gpu instead"),
        (bound, "spec.nodeName is \"gpu-7\": GPU pods of tenant coder are placed by Gantry's queue, within the tenant's quota; remove spec.nodeName (use a node selector or affinity to choose nodes)"),
        (ungated, "spec.schedulingGates: this GPU pod lacks Gantry's gate gantry.dev/admission, so Gantry's mutating webhook did not see it (it may have been unavailable); create the pod again"),
        (shared_a100, "metadata.annotations[gantry.dev/gpu-milli] is \"1\", but GPUs of A100 are not shared (the device plugin gives the pod a whole GPU); remove the annotation, or name only flavors with sharing in gantry.dev/gpu-models (V100)"),
        (sidecar, "spec.containers: the pod asks for 64 nvidia.com/gpu, but tenant coder can never hold more than 8 of the models it accepts (nominal plus borrowing: A100 8, V100 4); ask for at most 8, or ask a platform admin to raise the quota"),
    ] {
        let (_, reply) = call(&w, Path::Validate, &review("colin-coder", p.clone()));
        assert_eq!(denial(&reply), message, "{p}");
    }
}

#[test]
fn near_quota_is_a_warning_not_a_denial() {
    let w = webhook(None);
    let cases = [
        (pod(json!({}), json!({}), json!({"nvidia.com/gpu": 6})), "asks 6 GPUs, above tenant coder's nominal 4: runs only on borrowed capacity, may wait or be preempted"),
        (pod(json!({"scheduling.x-k8s.io/pod-group": "pg"}), json!({"gantry.dev/gang-size": "4"}), json!({"nvidia.com/gpu": 4})),
         "if all 4 gang members ask 4 GPUs like this one, the gang needs 16, above tenant coder's ceiling 8"),
    ];
    for (p, warning) in cases {
        let (_, reply) = call(&w, Path::Validate, &review("colin-coder", held(p.clone())));
        assert_eq!(reply["response"]["allowed"], true, "{reply}");
        assert_eq!(reply["response"]["warnings"], json!([warning]), "{p}");
    }
    // Within nominal, a shared GPU, and a pod of an unmanaged namespace: no warning.
    for (ns, p) in [
        ("colin-coder", held(pod(json!({}), json!({}), json!({"nvidia.com/gpu": 4})))),
        (
            "colin-coder",
            held(pod(
                json!({}),
                json!({"gantry.dev/gpu-milli": "250", "gantry.dev/gpu-models": "V100"}),
                json!({"nvidia.com/gpu": 1}),
            )),
        ),
        (
            "elsewhere",
            pod(json!({"gantry.dev/tenant": "search"}), json!({}), json!({"nvidia.com/gpu": "0.5"})),
        ),
    ] {
        let (_, reply) = call(&w, Path::Validate, &review(ns, p));
        assert_eq!(reply["response"], json!({"uid": "uid-1", "allowed": true}));
    }
}

#[test]
fn updates_cannot_start_work_past_the_queue_or_change_what_the_queue_read() {
    let w = webhook(None);
    let user = "alice@example.com";
    let controller = gantry_admission_webhook::policy::QUEUE_CONTROLLER;
    // A gated training pod as the mutating webhook left it.
    let created =
        pod(json!({"training.kubeflow.org/job-name": "bert"}), json!({}), json!({"nvidia.com/gpu": 2}));
    let (_, reply) = call(&w, Path::Mutate, &review("colin-coder", created.clone()));
    let gated = apply(&created, &reply);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut p = gated.clone();
        f(&mut p);
        p
    };
    let ungated = edit(&|p| p["spec"]["schedulingGates"] = json!([]));
    let placed = edit(&|p| {
        p["spec"]["schedulingGates"] = json!([]);
        p["metadata"]["annotations"]["gantry.dev/placement"] = json!("gpu-0:0,1");
    });
    let cases: Vec<(&str, &str, Value, Value, &str)> = vec![
        // (namespace, user, old, new, denial or "" for allowed)
        ("colin-coder", user, gated.clone(), edit(&|p| p["metadata"]["labels"]["team"] = json!("nlp")), ""),
        ("colin-coder", user, gated.clone(), edit(&|p| p["metadata"]["finalizers"] = json!([])), ""),
        ("colin-coder", controller, gated.clone(), placed.clone(), ""),
        ("default", user, gated.clone(), ungated.clone(), ""),
        ("colin-coder", user, gated.clone(), ungated.clone(),
         "spec.schedulingGates: only Gantry's queue controller removes gantry.dev/admission; the pod starts when its workload is admitted (`kubectl describe pod` says why it waits)"),
        ("colin-coder", user, gated.clone(), edit(&|p| p["metadata"]["annotations"]["gantry.dev/priority-class"] = json!("serving")),
         "metadata.annotations[gantry.dev/priority-class] cannot change after the pod is created (was \"training\", now \"serving\"); restore it, or create a new pod"),
        ("colin-coder", user, gated.clone(), edit(&|p| p["metadata"]["labels"]["gantry.dev/tenant"] = json!("search")),
         "metadata.labels[gantry.dev/tenant] cannot change after the pod is created (was \"coder\", now \"search\"); restore it, or create a new pod"),
        ("colin-coder", user, gated.clone(), edit(&|p| p["metadata"]["annotations"]["gantry.dev/gang-size"] = json!("1")),
         "metadata.annotations[gantry.dev/gang-size] cannot change after the pod is created (was absent, now \"1\"); restore it, or create a new pod"),
        ("colin-coder", user, gated.clone(), edit(&|p| p["metadata"]["labels"]["training.kubeflow.org/job-name"] = json!("other")),
         "metadata: this change moves the pod from workload colin-coder/trainingjob/bert to colin-coder/trainingjob/other; restore its workload labels and owner: a pod cannot move to another workload"),
        ("colin-coder", user, gated.clone(), placed.clone(),
         "spec.schedulingGates: only Gantry's queue controller removes gantry.dev/admission; the pod starts when its workload is admitted (`kubectl describe pod` says why it waits)\n\
          metadata.annotations[gantry.dev/placement] cannot change after the pod is created (was absent, now \"gpu-0:0,1\"); restore it, or create a new pod"),
    ];
    for (namespace, who, old, new, message) in cases {
        let (status, reply) = call(&w, Path::Validate, &update_review(namespace, who, old, new.clone()));
        assert_eq!(status, 200);
        assert_eq!(reply["response"]["uid"], "uid-2");
        assert_eq!(denial(&reply), message, "{namespace} {who}: {new}");
        assert_eq!(reply["response"]["allowed"], message.is_empty());
        // Updates are not mutated.
        let (_, mutated) = call(&w, Path::Mutate, &update_review(namespace, who, gated.clone(), new));
        assert!(mutated["response"].get("patch").is_none() && mutated["response"]["allowed"] == true);
    }
}

#[test]
fn gpu_pods_are_refused_in_a_namespace_two_tenants_claim() {
    let mut policy = policy(None);
    policy.contested.insert("shared".into(), vec!["coder".into(), "search".into()]);
    let w = gantry_admission_webhook::Webhook::new(policy).expect("a webhook");
    let message = "namespace shared is claimed by tenants coder, search, so it belongs to no tenant and no quota would count \
                   this GPU pod; GPU pods are refused there until one tenant has it: remove shared from all but one tenant's \
                   namespaces or namespaceSelector (the Tenants' status.conflicts show the conflict)";
    let gpu = pod(json!({}), json!({}), json!({"nvidia.com/gpu": 1}));
    let shared = pod(json!({}), json!({"gantry.dev/gpu-milli": "250"}), json!({}));
    let mig = pod(json!({}), json!({}), json!({"nvidia.com/mig-1g.10gb": 1}));
    let sidecar = {
        let mut p = pod(json!({}), json!({}), json!({}));
        p["spec"]["initContainers"] = json!([{"name": "side", "restartPolicy": "Always", "resources": {"requests": {"nvidia.com/gpu": "2"}}}]);
        p
    };
    // A resource claim (DRA) may be for a GPU; Gantry does not count claims: refused too.
    let claim = {
        let mut p = pod(json!({}), json!({}), json!({}));
        p["spec"]["resourceClaims"] = json!([{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]);
        p
    };
    for p in [gpu.clone(), shared, mig, sidecar, claim] {
        for path in [Path::Mutate, Path::Validate] {
            let (status, reply) = call(&w, path, &review("shared", p.clone()));
            assert_eq!(status, 200);
            assert_eq!(reply["response"]["allowed"], false, "{p}");
            assert_eq!(reply["response"]["status"]["code"], 403, "{p}");
            assert_eq!(denial(&reply), message, "{p}");
        }
    }
    // CPU-only pods (and zero GPUs) are let through untouched, as in any namespace without a
    // tenant: there is nothing to charge. So are mirror pods, whatever they ask.
    let cpu = pod(json!({}), json!({}), json!({"cpu": "2"}));
    let zero = pod(json!({}), json!({}), json!({"nvidia.com/gpu": 0, "nvidia.com/mig-1g.10gb": "0"}));
    let mirror = pod(json!({}), json!({"kubernetes.io/config.mirror": "x"}), json!({"nvidia.com/gpu": 1}));
    for p in [cpu, zero, mirror] {
        for path in [Path::Mutate, Path::Validate] {
            let (_, reply) = call(&w, path, &review("shared", p.clone()));
            assert_eq!(reply["response"], json!({"uid": "uid-1", "allowed": true}), "{p}");
        }
    }
    // Pods already there are not touched: updates are allowed as in any unmanaged namespace.
    let (_, reply) = call(
        &w,
        Path::Validate,
        &update_review("shared", "alice@example.com", held(gpu.clone()), gpu.clone()),
    );
    assert_eq!(reply["response"]["allowed"], true, "{reply}");
    // Other namespaces are unchanged: a tenant's GPU pod is held, an unmanaged one let through.
    let (_, reply) = call(&w, Path::Mutate, &review("colin-coder", gpu.clone()));
    assert!(patch_of(&reply).iter().any(|op| op["path"] == "/spec/schedulingGates"), "{reply}");
    let (_, reply) = call(&w, Path::Validate, &review("elsewhere", gpu));
    assert_eq!(reply["response"], json!({"uid": "uid-1", "allowed": true}));
}
