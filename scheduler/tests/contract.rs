//! Contract tests on real extender payloads (`tests/fixtures/extender`, see its README): requests
//! decode, in any key casing as Go's decoder allows, and Gantry's reply types encode upstream's
//! golden JSON byte for byte.

use gantry_scheduler::wire::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/extender/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Decodes a reply fixture into Gantry's type and encodes it again: the bytes must not change.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) {
    let text = fixture(name);
    let value: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(serde_json::to_string(&value).unwrap(), text.trim_end(), "{name}");
}

#[test]
fn replies_encode_upstream_golden_json_byte_for_byte() {
    round_trip::<ExtenderFilterResult>("k8s-types-test.ExtenderFilterResult.json");
    round_trip::<HostPriority>("k8s-types-test.HostPriority.json");
    round_trip::<Vec<HostPriority>>("simulator.HostPriorityList.json");
    round_trip::<ExtenderBindingResult>("k8s-types-test.ExtenderBindingResult.json");
    round_trip::<ExtenderPreemptionResult>("k8s-types-test.ExtenderPreemptionResult.json");
}

#[test]
fn a_recorded_filter_reply_decodes() {
    let r: ExtenderFilterResult = serde_json::from_str(&fixture("simulator.ExtenderFilterResult.node-cache-off.json")).unwrap();
    assert_eq!(r.node_names, None);
    assert_eq!(r.error, "");
    let nodes = r.nodes.expect("nodeCacheCapable false returns full nodes");
    assert!(!nodes.items.is_empty());
    assert!(nodes.items.iter().all(|n| n["metadata"]["name"].is_string()));
}

#[test]
fn requests_decode_in_any_key_casing() {
    for lower in [false, true] {
        let mut text = fixture("k8s-types-test.ExtenderArgs.json");
        if lower {
            text = text.replace("\"Pod\"", "\"pod\"").replace("\"Nodes\"", "\"nodes\"").replace("\"NodeNames\"", "\"nodenames\"");
        }
        let a: ExtenderArgs = parse(text.as_bytes(), ARGS_KEYS, "ExtenderArgs").unwrap();
        assert_eq!(a.pod["metadata"]["name"], "podname");
        assert_eq!(a.node_names, Some(vec!["node1".to_string()]));
        assert_eq!(a.nodes.unwrap().items[0]["metadata"]["name"], "nodename");
    }
    let b: ExtenderBindingArgs = parse(fixture("k8s-types-test.ExtenderBindingArgs.json").as_bytes(), BINDING_KEYS, "ExtenderBindingArgs").unwrap();
    assert_eq!(
        b,
        ExtenderBindingArgs { pod_name: "mypodname".into(), pod_namespace: "mypodnamespace".into(), pod_uid: "mypoduid".into(), node: "mynode".into() }
    );
    let p: ExtenderPreemptionArgs =
        parse(fixture("k8s-types-test.ExtenderPreemptionArgs.json").as_bytes(), PREEMPTION_KEYS, "ExtenderPreemptionArgs").unwrap();
    assert_eq!(p.node_name_to_meta_victims.unwrap()["foo"].pods[0].uid, "myuid");
    assert_eq!(p.node_name_to_victims.unwrap()["foo"].num_pdb_violations, 1);
}

#[test]
fn malformed_requests_name_the_type_and_the_problem() {
    let e = parse::<ExtenderArgs>(b"{\"Pod\": ", ARGS_KEYS, "ExtenderArgs").unwrap_err();
    assert!(e.contains("ExtenderArgs") && e.contains("not valid JSON"), "{e}");
    let e = parse::<ExtenderArgs>(b"[1, 2]", ARGS_KEYS, "ExtenderArgs").unwrap_err();
    assert!(e.contains("must be a JSON object"), "{e}");
    let e = parse::<ExtenderBindingArgs>(b"{\"PodName\": 7}", BINDING_KEYS, "ExtenderBindingArgs").unwrap_err();
    assert!(e.contains("ExtenderBindingArgs is malformed"), "{e}");
}
