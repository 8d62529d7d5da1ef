//! Kubeflow Profiles as tenants: the Tenants of `examples/kubernetes/profile-tenants.yaml` over
//! Namespace objects shaped as Kubeflow's profile controller makes them
//! (`fixtures/kubeflow-profiles/`, sources in its SOURCE.md). Both mappings (one tenant per
//! Profile; tenants grouping Profiles by a label the platform team sets), a namespace two tenants
//! claim (it belongs to neither, both statuses say so, the rest stands), and a new Profile's
//! namespace joining its tenant.

use gantry_api::crds::{match_namespaces, tenancy_from, Cohort, GpuFlavor, NamespaceConflict, Tenant};
use gantry_api::tenants::strip_namespace;
use gantry_core::tenancy::{Settings, Tenancy};
use k8s_openapi::api::core::v1::Namespace;
use serde_json::Value;

const EXAMPLE: &str = include_str!("../../examples/kubernetes/profile-tenants.yaml");

fn fixture(name: &str) -> Namespace {
    let path =
        format!("{}/tests/fixtures/kubeflow-profiles/{name}.namespace.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// alice, bob (one tenant each), carol and dan (labelled for the vision team), and Kubeflow's own.
fn cluster_namespaces() -> Vec<Namespace> {
    ["alice", "bob", "carol-vision", "dan-vision", "kubeflow"].map(fixture).to_vec()
}

/// The example's objects of `kind`, as `kubectl apply` sends them.
fn example<K: serde::de::DeserializeOwned>(kind: &str) -> Vec<K> {
    EXAMPLE
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_yaml_ng::from_str::<Value>(d).expect("YAML"))
        .filter(|d| d["kind"] == kind)
        .map(|d| serde_json::from_value(d).expect("the kind's shape"))
        .collect()
}

fn tenancy(tenants: &[Tenant], namespaces: &[Namespace]) -> Tenancy {
    let flavors: Vec<GpuFlavor> = example("GpuFlavor");
    let cohorts: Vec<Cohort> = example("Cohort");
    tenancy_from(&Settings::default(), &flavors, &cohorts, tenants, namespaces)
        .unwrap_or_else(|e| panic!("{e:#?}"))
}

fn namespaces_of(t: &Tenancy, tenant: &str) -> Vec<String> {
    t.tenants.iter().find(|x| x.name == tenant).map(|x| x.namespaces.clone()).unwrap_or_default()
}

fn tenant_of(t: &Tenancy, ns: &str) -> Option<String> {
    t.tenant_of_namespace(ns).map(|i| t.tenants[i].name.clone())
}

#[test]
fn the_example_is_upstream_profiles_and_valid_tenants() {
    let profiles: Vec<Value> = example("Profile");
    assert_eq!(profiles.len(), 4);
    for p in &profiles {
        // As kubeflow/dashboard's integration/resources/profile-simple.yaml writes one.
        assert_eq!(p["apiVersion"], "kubeflow.org/v1");
        assert_eq!(p["spec"]["owner"]["kind"], "User");
        assert!(p["spec"]["owner"]["name"].as_str().is_some_and(|n| n.contains('@')), "{p}");
    }
    // The fixtures are what the profile controller makes of such Profiles.
    for name in ["alice", "bob"] {
        let ns = fixture(name);
        let owner = &ns.metadata.owner_references.as_ref().expect("an owner")[0];
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str()),
            ("kubeflow.org/v1", "Profile", name)
        );
        assert_eq!(owner.controller, Some(true));
        let labels = ns.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/part-of"], "kubeflow-profile");
        assert_eq!(labels["kubernetes.io/metadata.name"], name);
    }
}

#[test]
fn one_tenant_per_profile_and_tenants_grouping_profiles_by_a_platform_label() {
    let t = tenancy(&example("Tenant"), &cluster_namespaces());
    // One tenant per Profile: by list (alice) and by the API server's name label (bob).
    assert_eq!(namespaces_of(&t, "alice"), ["alice"]);
    assert_eq!(namespaces_of(&t, "bob"), ["bob"]);
    // Grouped by the label the platform team set on carol's and dan's namespaces.
    assert_eq!(namespaces_of(&t, "vision"), ["carol", "dan"]);
    // Kubeflow's own namespace is nobody's.
    assert_eq!(tenant_of(&t, "kubeflow"), None);
    let (matched, errors) = match_namespaces(&example("Tenant"), &cluster_namespaces());
    assert!(errors.is_empty(), "{errors:?}");
    assert!(matched.values().all(|m| m.conflicts.is_empty()), "{matched:?}");
}

#[test]
fn a_grouping_tenant_needs_the_label_on_the_namespace_not_the_profile() {
    // The profile controller copies no Profile label to the namespace, so a platform label must
    // be set on the namespace: without it, a grouping tenant has nothing (and says nothing is
    // wrong: it may be made before its Profiles).
    let unlabelled = ["alice", "bob", "kubeflow"].map(fixture).to_vec();
    let t = tenancy(&example("Tenant"), &unlabelled);
    assert!(namespaces_of(&t, "vision").is_empty());
    assert_eq!(namespaces_of(&t, "alice"), ["alice"]);
}

#[test]
fn a_new_profiles_namespace_joins_its_tenant() {
    let mut namespaces = ["alice", "kubeflow"].map(fixture).to_vec();
    let before = tenancy(&example("Tenant"), &namespaces);
    assert!(namespaces_of(&before, "bob").is_empty(), "bob's Profile is not there yet");
    assert_eq!(tenant_of(&before, "bob"), None);
    // The profile controller creates bob's namespace, then the platform team labels dan's.
    namespaces.push(fixture("bob"));
    let mut dan = fixture("dan-vision");
    let after = tenancy(&example("Tenant"), &namespaces);
    assert_eq!(tenant_of(&after, "bob").as_deref(), Some("bob"));
    dan.metadata.labels.as_mut().expect("labels").remove("example.com/team");
    namespaces.push(dan.clone());
    assert_eq!(tenant_of(&tenancy(&example("Tenant"), &namespaces), "dan"), None, "not labelled yet");
    namespaces.pop();
    dan.metadata.labels.as_mut().expect("labels").insert("example.com/team".into(), "vision".into());
    namespaces.push(dan);
    assert_eq!(tenant_of(&tenancy(&example("Tenant"), &namespaces), "dan").as_deref(), Some("vision"));
}

/// A tenant for every Profile namespace without a team label (`DoesNotExist`), as a platform
/// might add for everyone not yet in a team.
fn everyone_else() -> Tenant {
    serde_yaml_ng::from_str(
        "apiVersion: gantry.dev/v1alpha1\nkind: Tenant\nmetadata: {name: everyone-else}\nspec:\n  namespaceSelector:\n    matchLabels: {app.kubernetes.io/part-of: kubeflow-profile}\n    matchExpressions:\n    - {key: example.com/team, operator: DoesNotExist}\n  quotas: {nvidia-a100-sxm4-80gb: {nominal: '1'}}\n",
    )
    .expect("a Tenant")
}

#[test]
fn a_namespace_two_tenants_claim_belongs_to_neither_and_both_say_so_while_the_rest_stands() {
    // everyone-else selects alice and bob, which alice's and bob's own tenants claim too.
    let mut tenants: Vec<Tenant> = example("Tenant");
    tenants.push(everyone_else());
    let t = tenancy(&tenants, &cluster_namespaces());
    assert_eq!(tenant_of(&t, "alice"), None, "claimed twice: nobody's");
    assert_eq!(tenant_of(&t, "bob"), None);
    assert!(namespaces_of(&t, "everyone-else").is_empty());
    // The rest of the tenancy stands.
    assert_eq!(namespaces_of(&t, "vision"), ["carol", "dan"]);
    assert_eq!(t.tenants.len(), 4);

    let (matched, errors) = match_namespaces(&tenants, &cluster_namespaces());
    assert!(errors.is_empty(), "{errors:?}");
    let conflict = |ns: &str, with: &str| NamespaceConflict {
        namespace: ns.into(),
        tenants: {
            let mut v = vec![ns.to_string(), with.to_string()];
            v.sort();
            v
        },
    };
    assert_eq!(matched["alice"].conflicts, [conflict("alice", "everyone-else")]);
    assert_eq!(matched["bob"].conflicts, [conflict("bob", "everyone-else")]);
    assert_eq!(
        matched["everyone-else"].conflicts,
        [conflict("alice", "everyone-else"), conflict("bob", "everyone-else")]
    );
    assert!(matched["vision"].conflicts.is_empty());
    assert_eq!(
        matched["alice"].conflicts[0].to_string(),
        "namespace `alice` is claimed by tenants `alice` and `everyone-else`; it belongs to neither until all but \
         one stop claiming it (remove it from a `namespaces` list, or change a `namespaceSelector` or the \
         namespace's labels)"
    );

    // Fixed by labelling: alice joins vision's team and leaves everyone-else's selector, so the
    // conflict becomes vision's and alice's tenant's, and bob's is unchanged.
    let mut namespaces = cluster_namespaces();
    let alice = namespaces.iter_mut().find(|n| n.metadata.name.as_deref() == Some("alice")).expect("alice");
    alice.metadata.labels.as_mut().expect("labels").insert("example.com/team".into(), "vision".into());
    let (matched, _) = match_namespaces(&tenants, &namespaces);
    assert_eq!(matched["alice"].conflicts, [conflict("alice", "vision")]);
    assert_eq!(matched["vision"].namespaces, ["carol", "dan"]);
}

#[test]
fn a_bad_selector_or_none_at_all_is_refused_naming_the_field() {
    let refusals = |tenant: &str| {
        let t: Tenant = serde_yaml_ng::from_str(tenant).expect("a Tenant");
        tenancy_from(&Settings::default(), &example("GpuFlavor"), &[], &[t], &cluster_namespaces())
            .expect_err("refused")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        refusals("metadata: {name: t}\nspec:\n  namespaceSelector:\n    matchExpressions: [{key: team, operator: in, values: [a]}]\n"),
        ["Tenant t: spec.namespaceSelector.matchExpressions[0].operator: `in` is not a label selector operator; use In, NotIn, Exists or DoesNotExist (spelled so)"]
    );
    assert_eq!(
        refusals("metadata: {name: t}\nspec:\n  namespaceSelector: {}\n"),
        ["Tenant t: spec.namespaceSelector: the selector is empty and would take every namespace of the cluster (kube-system included); select by labels, e.g. `matchLabels: {app.kubernetes.io/part-of: kubeflow-profile}`, or list `namespaces`"]
    );
    assert_eq!(
        refusals("metadata: {name: t}\nspec: {}\n"),
        ["Tenant t: spec: the tenant has no namespaces; list them (`namespaces: [team-a]`) or select them by label (`namespaceSelector: {matchLabels: {team: a}}`)"]
    );
    // A name listed twice by one tenant is still refused (as in the tenants file).
    assert_eq!(
        refusals("metadata: {name: t}\nspec: {namespaces: [alice, alice]}\n"),
        ["Tenant t: spec.namespaces[1]: namespace `alice` is listed twice for tenant `t`; remove one"]
    );
}

#[test]
fn a_watched_namespace_keeps_only_its_name_and_labels() {
    let mut ns = fixture("carol-vision");
    let labels = ns.metadata.labels.clone();
    strip_namespace(&mut ns);
    assert_eq!(ns.metadata.name.as_deref(), Some("carol"));
    assert_eq!(ns.metadata.labels, labels);
    assert!(ns.metadata.managed_fields.is_none() && ns.metadata.annotations.is_none());
    assert!(ns.metadata.owner_references.is_none() && ns.spec.is_none() && ns.status.is_none());
}
