//! What Gantry counts of a pod is what the kubelet will allocate, for any pod shape Kubernetes
//! accepts: generated pods (app containers, init containers, sidecars — init containers with
//! `restartPolicy: Always` —, pod overhead, requests and limits in either or both) are counted by
//! `parse_pod` and by an independent model of the pod's life: its init containers run one after
//! the other, each beside the sidecars started before it, then the app containers run beside all
//! the sidecars; what must be allocated is the peak over that timeline, plus the overhead.

use gantry_api::pod::{effective_requests, parse_pod};
use gantry_core::model::ModelCatalog;
use proptest::prelude::*;
use serde_json::{json, Value};

/// One container's resources: (cpu milli, GPUs) and where they are written.
#[derive(Clone, Debug)]
struct Res {
    cpu_milli: u64,
    gpus: u64,
    /// 0: requests only; 1: limits only; 2: both (equal).
    form: u8,
}

fn res() -> impl Strategy<Value = Res> {
    (0u64..4000, 0u64..9, 0u8..3).prop_map(|(cpu_milli, gpus, form)| Res { cpu_milli, gpus, form })
}

fn resources(r: &Res) -> Value {
    let values = json!({"cpu": format!("{}m", r.cpu_milli), "nvidia.com/gpu": r.gpus.to_string()});
    match r.form {
        0 => json!({"requests": values}),
        1 => json!({"limits": values}),
        _ => json!({"requests": values, "limits": values}),
    }
}

/// The peak of (cpu, GPUs) over the pod's life, plus the overhead.
fn timeline_peak(apps: &[Res], inits: &[(Res, bool)], overhead: &Res) -> (u64, u64) {
    let mut running: Vec<&Res> = Vec::new();
    let mut peak = (0u64, 0u64);
    let mut note = |now: &[&Res], extra: Option<&Res>| {
        let cpu: u64 = now.iter().map(|r| r.cpu_milli).sum::<u64>() + extra.map_or(0, |r| r.cpu_milli);
        let gpus: u64 = now.iter().map(|r| r.gpus).sum::<u64>() + extra.map_or(0, |r| r.gpus);
        peak = (peak.0.max(cpu), peak.1.max(gpus));
    };
    for (r, sidecar) in inits {
        if *sidecar {
            running.push(r);
            note(&running, None);
        } else {
            // Runs to completion beside the sidecars started so far.
            note(&running, Some(r));
        }
    }
    let mut all = running.clone();
    all.extend(apps.iter());
    note(&all, None);
    (peak.0 + overhead.cpu_milli, peak.1 + overhead.gpus)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn gantry_counts_what_the_kubelet_allocates(
        apps in prop::collection::vec(res(), 1..4),
        inits in prop::collection::vec((res(), any::<bool>()), 0..5),
        overhead in res(),
        with_overhead in any::<bool>(),
        node in prop::option::of("[a-z]{1,8}"),
    ) {
        let overhead = if with_overhead { Res { gpus: 0, ..overhead } } else { Res { cpu_milli: 0, gpus: 0, form: 0 } };
        let containers: Vec<Value> = apps.iter().enumerate().map(|(i, r)| json!({"name": format!("c{i}"), "resources": resources(r)})).collect();
        let init: Vec<Value> = inits.iter().enumerate().map(|(i, (r, sidecar))| {
            let mut c = json!({"name": format!("i{i}"), "resources": resources(r)});
            if *sidecar {
                c["restartPolicy"] = json!("Always");
            }
            c
        }).collect();
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {"containers": containers, "initContainers": init}});
        if with_overhead {
            pod["spec"]["overhead"] = json!({"cpu": format!("{}m", overhead.cpu_milli)});
        }
        if let Some(n) = node {
            pod["spec"]["nodeName"] = json!(n);
        }
        let (cpu, gpus) = timeline_peak(&apps, &inits, &overhead);
        let counted = effective_requests(&pod).unwrap();
        prop_assert_eq!((counted.cpu_milli, counted.gpus_milli), (cpu, gpus * 1000));
        let view = parse_pod(&pod, &ModelCatalog::default()).unwrap();
        prop_assert!(u64::from(view.request.cpu_milli) >= cpu);
        prop_assert!(u64::from(view.request.gpu_count) * u64::from(view.request.gpu_milli) >= gpus * 1000, "{:?}", view.request);
    }
}

#[test]
fn a_sidecar_asking_for_gpus_is_counted() {
    let pod = json!({"metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "side", "restartPolicy": "Always", "resources": {"limits": {"nvidia.com/gpu": "64"}}}],
        "containers": [{"name": "main", "resources": {"requests": {"cpu": "1"}}}]}});
    assert_eq!(parse_pod(&pod, &ModelCatalog::default()).unwrap().request.gpu_count, 64);
    let init = json!({"metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "warm", "resources": {"limits": {"nvidia.com/gpu": "8"}}}],
        "containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}});
    assert_eq!(
        parse_pod(&init, &ModelCatalog::default()).unwrap().request.gpu_count,
        8,
        "an init container's GPUs are held while it runs"
    );
}
