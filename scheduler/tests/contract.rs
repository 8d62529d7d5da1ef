//! Contract tests on real extender payloads (`tests/fixtures/extender`, see its README): requests
//! decode, in any key casing as Go's decoder allows, and Gantry's reply types encode upstream's
//! golden JSON byte for byte.

use gantry_scheduler::wire::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/extender/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Decodes a reply fixture into Gantry's type and encodes it again: the bytes must not change.
fn round_trip<T: for<'a> Deserialize<'a> + Serialize>(name: &str) {
    let text = fixture(name);
    let value: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(serde_json::to_string(&value).unwrap(), text.trim_end(), "{name}");
}

/// The same for the reply types that borrow from what they decode.
/// The hot replies are written by hand; their writers must agree with serde byte for byte.
macro_rules! round_trip_borrowed {
    ($t:ty, $name:expr, $write:expr) => {{
        let text = fixture($name);
        let value: $t = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", $name));
        assert_eq!(serde_json::to_string(&value).unwrap(), text.trim_end(), "{}", $name);
        assert_eq!(String::from_utf8($write(&value)).unwrap(), text.trim_end(), "{}", $name);
    }};
}

#[test]
fn replies_encode_upstream_golden_json_byte_for_byte() {
    round_trip_borrowed!(
        ExtenderFilterResult,
        "k8s-types-test.ExtenderFilterResult.json",
        ExtenderFilterResult::to_json
    );
    round_trip_borrowed!(Vec<HostPriority>, "simulator.HostPriorityList.json", |v: &Vec<HostPriority>| {
        priorities_json(v)
    });
    round_trip::<HostPriority>("k8s-types-test.HostPriority.json");
    round_trip::<ExtenderBindingResult>("k8s-types-test.ExtenderBindingResult.json");
    round_trip::<ExtenderPreemptionResult>("k8s-types-test.ExtenderPreemptionResult.json");
}

#[test]
fn a_recorded_filter_reply_decodes() {
    let text = fixture("simulator.ExtenderFilterResult.node-cache-off.json");
    let r: ExtenderFilterResult = serde_json::from_str(&text).unwrap();
    assert_eq!(r.node_names, None);
    assert_eq!(r.error, "");
    let nodes = r.nodes.expect("nodeCacheCapable false returns full nodes");
    assert!(!nodes.items.is_empty());
    assert_eq!(nodes.names().map(|n| n.len()), Some(nodes.items.len()));
    let first: Value = serde_json::from_str(nodes.items[0].get()).unwrap();
    assert!(first["metadata"]["name"].is_string());
}

#[test]
fn requests_decode_in_any_key_casing() {
    for lower in [false, true] {
        let mut text = fixture("k8s-types-test.ExtenderArgs.json");
        if lower {
            text = text
                .replace("\"Pod\"", "\"pod\"")
                .replace("\"Nodes\"", "\"nodes\"")
                .replace("\"NodeNames\"", "\"nodenames\"");
        }
        let a = ExtenderArgs::parse(text.as_bytes()).unwrap();
        assert_eq!(a.pod["metadata"]["name"], "podname");
        assert_eq!(a.node_names, Some(vec!["node1".into()]));
        assert_eq!(a.nodes.unwrap().names(), Some(vec!["nodename".into()]));
    }
    let b: ExtenderBindingArgs = parse(
        fixture("k8s-types-test.ExtenderBindingArgs.json").as_bytes(),
        BINDING_KEYS,
        "ExtenderBindingArgs",
    )
    .unwrap();
    assert_eq!(
        b,
        ExtenderBindingArgs {
            pod_name: "mypodname".into(),
            pod_namespace: "mypodnamespace".into(),
            pod_uid: "mypoduid".into(),
            node: "mynode".into()
        }
    );
    let p: ExtenderPreemptionArgs = parse(
        fixture("k8s-types-test.ExtenderPreemptionArgs.json").as_bytes(),
        PREEMPTION_KEYS,
        "ExtenderPreemptionArgs",
    )
    .unwrap();
    assert_eq!(p.node_name_to_meta_victims.unwrap()["foo"].pods[0].uid, "myuid");
    assert_eq!(p.node_name_to_victims.unwrap()["foo"].num_pdb_violations, 1);
}

#[test]
fn malformed_requests_name_the_type_and_the_problem() {
    assert!(matches!(
        ExtenderArgs::parse(b"{\"Pod\": "),
        Err(RequestError::NotJson { what: "ExtenderArgs", .. })
    ));
    let e = ExtenderArgs::parse(b"{\"Pod\": ").unwrap_err().to_string();
    assert!(e.contains("ExtenderArgs") && e.contains("not valid JSON"), "{e}");
    let e = ExtenderArgs::parse(b"[1, 2]").unwrap_err().to_string();
    assert!(e.contains("ExtenderArgs is malformed") && e.contains("expected an ExtenderArgs object"), "{e}");
    let e = ExtenderArgs::parse(b"{\"NodeNames\": [1]}").unwrap_err().to_string();
    assert!(e.contains("ExtenderArgs is malformed") && e.contains("expected a node name"), "{e}");
    let e = ExtenderArgs::parse(b"{\"Nodes\": null} trailing").unwrap_err().to_string();
    assert!(e.contains("not valid JSON"), "{e}");
    // Escaped names are decoded, not borrowed, and answered unescaped.
    let a = ExtenderArgs::parse(br#"{"nodenames": ["a\u002db", "plain"]}"#).unwrap();
    assert_eq!(a.node_names, Some(vec!["a-b".into(), "plain".into()]));
    let e = parse::<ExtenderBindingArgs>(b"{\"PodName\": 7}", BINDING_KEYS, "ExtenderBindingArgs")
        .unwrap_err()
        .to_string();
    assert!(e.contains("ExtenderBindingArgs is malformed"), "{e}");
}

/// The hand-written replies equal serde's encoding for awkward content too: escapes, unicode,
/// full node lists, absent and empty fields, large scores.
#[test]
fn hand_written_replies_equal_serde() {
    use gantry_scheduler::wire::FailedNodes;
    let body = r#"{"Nodes": {"metadata": {"resourceVersion": "7"}, "items": [{"metadata": {"name": "n\"1"}}, {"metadata":{"name":"ü"}}]}}"#;
    let args = ExtenderArgs::parse(body.as_bytes()).unwrap();
    let names = ["plain", "quo\"te", "back\\slash", "tab\t", "\u{1}ctl", "ünï", ""];
    let maps: [Option<FailedNodes>; 4] = [
        None,
        Some(FailedNodes::default()),
        Some(names.iter().map(|n| (n.to_string(), format!("why {n}"))).collect()),
        // Shared reasons, as a filter has them: each written out for every node.
        Some(
            names
                .iter()
                .enumerate()
                .map(|(i, &n)| (n, ["insufficient free GPU", "why \"x\""][i % 2]))
                .collect(),
        ),
    ];
    for (i, map) in maps.iter().enumerate() {
        let cases = [
            ExtenderFilterResult {
                node_names: Some(names.iter().map(|&n| n.into()).collect()),
                failed_nodes: map.clone(),
                ..Default::default()
            },
            ExtenderFilterResult {
                nodes: args.nodes.clone(),
                failed_and_unresolvable_nodes: map.clone(),
                error: "oops \"x\"".into(),
                ..Default::default()
            },
            ExtenderFilterResult {
                node_names: Some(vec![]),
                failed_nodes: map.clone(),
                failed_and_unresolvable_nodes: map.clone(),
                ..Default::default()
            },
        ];
        for (j, r) in cases.iter().enumerate() {
            assert_eq!(r.to_json(), serde_json::to_vec(r).unwrap(), "map {i}, case {j}");
        }
    }
    let scores: Vec<HostPriority> = names
        .iter()
        .zip([0, 9, 10, -1, 1234567, i64::MIN, 5])
        .map(|(&h, score)| HostPriority { host: h.into(), score })
        .collect();
    assert_eq!(priorities_json(&scores), serde_json::to_vec(&scores).unwrap());
    assert_eq!(priorities_json(&[]), b"[]");
}
