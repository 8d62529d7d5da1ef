//! The committed definitions (`charts/gantry/crds/gantry-crds.yaml`, what the chart ships) are exactly
//! what the Rust types generate, and have the shape the API server needs.

use serde_json::Value;

const COMMITTED: &str = include_str!("../../charts/gantry/crds/gantry-crds.yaml");

#[test]
fn committed_definitions_match_the_types() {
    let generated = gantry_api::crds::definitions_yaml().unwrap();
    assert!(
        generated == COMMITTED,
        "charts/gantry/crds/gantry-crds.yaml is out of date; regenerate it with\n  cargo run -p gantry -- crd > charts/gantry/crds/gantry-crds.yaml"
    );
}

#[test]
fn definitions_are_cluster_scoped_with_schemas_and_printer_columns() {
    let docs: Vec<Value> = COMMITTED
        .split("---\n")
        .skip(1)
        .map(|d| serde_yaml_ng::from_str(d).expect("each document is YAML"))
        .collect();
    let names: Vec<&str> = docs.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tenants.gantry.dev", "cohorts.gantry.dev", "gpuflavors.gantry.dev"]);
    for d in &docs {
        assert_eq!(d["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(d["spec"]["scope"], "Cluster");
        let v = &d["spec"]["versions"][0];
        assert_eq!(v["name"], "v1alpha1");
        assert_eq!(v["served"], true);
        assert_eq!(v["storage"], true);
        assert_eq!(v["schema"]["openAPIV3Schema"]["type"], "object");
    }
    let tenant = &docs[0]["spec"]["versions"][0];
    let columns: Vec<&str> = tenant["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Cohort", "GPUs used", "GPUs nominal", "Borrowed", "Pending", "Namespaces", "Age"]);
    assert!(tenant["subresources"]["status"].is_object(), "status is a subresource");
    let spec = &tenant["schema"]["openAPIV3Schema"]["properties"]["spec"];
    // `namespaces` or `namespaceSelector`: Gantry checks that a tenant has one of them.
    assert!(spec["required"].is_null(), "{}", spec["required"]);
    assert_eq!(spec["properties"]["namespaceSelector"]["properties"]["matchLabels"]["type"], "object");
}
