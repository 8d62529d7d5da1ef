//! Which namespaces a Tenant has: its `namespaces` list plus the namespaces its
//! `namespaceSelector` matches, as Kubernetes evaluates a `metav1.LabelSelector`.
//!
//! The rules are the API server's own (kubernetes/apimachinery, `pkg/apis/meta/v1/helpers.go`
//! `LabelSelectorAsSelector` and `pkg/labels/selector.go` `Requirement.Matches`): every
//! `matchLabels` pair and every `matchExpressions` requirement must hold (AND);
//! `In` needs the label with one of the values, `NotIn` holds when the label is absent or has
//! none of them, `Exists` and `DoesNotExist` take no values; an empty selector matches
//! everything. Keys must be qualified names and values valid label values, or the selector is
//! refused naming the field.
//!
//! Gantry refuses the empty selector `{}` on a Tenant: it would take every namespace of the
//! cluster (kube-system, Gantry's own, every other team's), which is never what a platform team
//! means.
//!
//! A namespace that two tenants claim (by list or by selector) belongs to neither: the rest of the
//! tenancy stays in force, and both Tenants' `status.conflicts` name it and the other tenant.

use super::convert::TENANT;
use super::{CrdError, NamespaceConflict, Tenant};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::{BTreeMap, BTreeSet};

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A checked label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// A field of a selector and what is wrong with it (`field` is relative to the selector:
/// `matchExpressions[0].operator`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    pub field: String,
    pub problem: String,
}

impl Selector {
    /// Checks `selector`; every problem found, each naming its field.
    pub fn new(selector: &LabelSelector) -> Result<Selector, Vec<SelectorError>> {
        let mut errors = Vec::new();
        let mut requirements = Vec::new();
        let mut refuse = |field: String, problem: String| errors.push(SelectorError { field, problem });
        for (key, value) in selector.match_labels.iter().flatten() {
            let field = format!("matchLabels.{key}");
            let key_ok = check_key(key).map_err(|p| refuse(field.clone(), p)).is_ok();
            let value_ok = check_value(value).map_err(|p| refuse(field.clone(), p)).is_ok();
            if key_ok && value_ok {
                requirements.push(Requirement::In(key.clone(), BTreeSet::from([value.clone()])));
            }
        }
        for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
            let field = |f: &str| format!("matchExpressions[{i}].{f}");
            let mut ok = check_key(&e.key).map_err(|p| refuse(field("key"), p)).is_ok();
            let values = e.values.clone().unwrap_or_default();
            for (k, v) in values.iter().enumerate() {
                ok &= check_value(v).map_err(|p| refuse(field(&format!("values[{k}]")), p)).is_ok();
            }
            let set: BTreeSet<String> = values.iter().cloned().collect();
            let key = e.key.clone();
            let requirement = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    refuse(
                        field("values"),
                        format!(
                            "operator {} needs at least one value; list the label values to match, or use \
                             Exists/DoesNotExist",
                            e.operator
                        ),
                    );
                    None
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    refuse(
                        field("values"),
                        format!("operator {} takes no values; remove `values`, or use In/NotIn", e.operator),
                    );
                    None
                }
                "In" => Some(Requirement::In(key, set)),
                "NotIn" => Some(Requirement::NotIn(key, set)),
                "Exists" => Some(Requirement::Exists(key)),
                "DoesNotExist" => Some(Requirement::DoesNotExist(key)),
                other => {
                    refuse(
                        field("operator"),
                        format!(
                            "`{other}` is not a label selector operator; use In, NotIn, Exists or DoesNotExist \
                             (spelled so)"
                        ),
                    );
                    None
                }
            };
            if let Some(r) = requirement.filter(|_| ok) {
                requirements.push(r);
            }
        }
        if errors.is_empty() {
            Ok(Selector { requirements })
        } else {
            Err(errors)
        }
    }

    /// Whether it matches every set of labels (no requirement at all).
    pub fn matches_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// A label value: at most 63 characters, empty or alphanumerics with `-`, `_`, `.` inside.
fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not a label value; use at most 63 letters, digits, '-', '_' and '.', starting and \
             ending with a letter or digit"
        ))
    }
}

/// A label key: a name part (as a value, but not empty), optionally after a DNS subdomain
/// prefix and `/` (`app.kubernetes.io/part-of`).
fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    if prefix_ok && !name.is_empty() && is_name_part(name) {
        Ok(())
    } else {
        Err(format!(
            "`{key}` is not a label key; write an optional DNS prefix and `/`, then at most 63 letters, digits, \
             '-', '_' and '.', starting and ending with a letter or digit (e.g. `app.kubernetes.io/part-of`)"
        ))
    }
}

fn is_name_part(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= 63
        && alnum(s.chars().next())
        && alnum(s.chars().last())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// One tenant's namespaces once lists and selectors are resolved over the cluster's namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    /// The tenant's own namespaces: its list (in order), then what its selector matches (by
    /// name), without those another tenant claims too.
    pub namespaces: Vec<String>,
    /// Namespaces it claims that another tenant claims too (they belong to neither).
    pub conflicts: Vec<NamespaceConflict>,
    /// Of the list, those claimed by another tenant too (left out of the tenancy).
    pub(crate) contested: BTreeSet<String>,
}

/// Each named tenant's namespaces (by tenant name) over `namespaces` (the cluster's Namespace
/// objects; only their names and labels are read), and every problem with a selector. A tenant
/// whose selector is refused matches nothing by it (its list still counts).
pub fn match_namespaces(
    tenants: &[Tenant],
    namespaces: &[Namespace],
) -> (BTreeMap<String, Matched>, Vec<CrdError>) {
    let mut errors = Vec::new();
    let no_labels = BTreeMap::new();
    // Per tenant: listed namespaces (in order, as written) and selected ones (by name).
    let mut claims: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for t in tenants {
        let Some(name) = t.metadata.name.as_deref() else { continue };
        let listed = t.spec.namespaces.clone();
        let mut selected = Vec::new();
        if let Some(selector) = &t.spec.namespace_selector {
            match Selector::new(selector) {
                Ok(s) if s.matches_everything() => errors.push(CrdError {
                    kind: TENANT.into(),
                    name: name.into(),
                    field: "spec.namespaceSelector".into(),
                    problem: "the selector is empty and would take every namespace of the cluster \
                              (kube-system included); select by labels, e.g. `matchLabels: \
                              {app.kubernetes.io/part-of: kubeflow-profile}`, or list `namespaces`"
                        .into(),
                }),
                Ok(s) => {
                    for ns in namespaces {
                        let Some(ns_name) = ns.metadata.name.as_deref() else { continue };
                        let labels = ns.metadata.labels.as_ref().unwrap_or(&no_labels);
                        if s.matches(labels) && !listed.iter().any(|l| l == ns_name) {
                            selected.push(ns_name.to_string());
                        }
                    }
                    selected.sort();
                    selected.dedup();
                }
                Err(problems) => errors.extend(problems.into_iter().map(|e| CrdError {
                    kind: TENANT.into(),
                    name: name.into(),
                    field: format!("spec.namespaceSelector.{}", e.field),
                    problem: e.problem,
                })),
            }
        }
        claims.insert(name.to_string(), (listed, selected));
    }
    // Namespace -> the tenants that claim it.
    let mut claimants: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (tenant, (listed, selected)) in &claims {
        for ns in listed.iter().chain(selected) {
            claimants.entry(ns).or_default().insert(tenant);
        }
    }
    let mut out = BTreeMap::new();
    for (tenant, (listed, selected)) in &claims {
        let mut matched = Matched::default();
        let mut seen = BTreeSet::new();
        for ns in listed.iter().chain(selected) {
            if !seen.insert(ns.as_str()) {
                continue;
            }
            let by = claimants.get(ns.as_str()).filter(|c| c.len() > 1);
            match by {
                Some(by) => {
                    matched.conflicts.push(NamespaceConflict {
                        namespace: ns.clone(),
                        tenants: by.iter().map(|t| t.to_string()).collect(),
                    });
                    matched.contested.insert(ns.clone());
                }
                None => matched.namespaces.push(ns.clone()),
            }
        }
        out.insert(tenant.clone(), matched);
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn sel(match_labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    #[test]
    fn matching_is_the_api_servers() {
        let profile = labels(&[("app.kubernetes.io/part-of", "kubeflow-profile"), ("team", "vision")]);
        let plain = labels(&[("kubernetes.io/metadata.name", "default")]);
        let none = labels(&[]);
        // (selector, matches profile, matches plain, matches none)
        let table: Vec<(&str, LabelSelector, [bool; 3])> = vec![
            ("empty matches everything", sel(&[], vec![]), [true, true, true]),
            ("matchLabels", sel(&[("team", "vision")], vec![]), [true, false, false]),
            (
                "matchLabels, two pairs (AND)",
                sel(&[("team", "vision"), ("x", "y")], vec![]),
                [false, false, false],
            ),
            ("In", sel(&[], vec![expr("team", "In", Some(&["nlp", "vision"]))]), [true, false, false]),
            (
                "NotIn: absent label matches",
                sel(&[], vec![expr("team", "NotIn", Some(&["vision"]))]),
                [false, true, true],
            ),
            (
                "NotIn: other value matches",
                sel(&[], vec![expr("team", "NotIn", Some(&["nlp"]))]),
                [true, true, true],
            ),
            ("Exists", sel(&[], vec![expr("team", "Exists", None)]), [true, false, false]),
            (
                "Exists, empty values list",
                sel(&[], vec![expr("team", "Exists", Some(&[]))]),
                [true, false, false],
            ),
            ("DoesNotExist", sel(&[], vec![expr("team", "DoesNotExist", None)]), [false, true, true]),
            (
                "matchLabels AND expressions",
                sel(
                    &[("app.kubernetes.io/part-of", "kubeflow-profile")],
                    vec![expr("team", "In", Some(&["nlp"]))],
                ),
                [false, false, false],
            ),
        ];
        for (what, s, expected) in table {
            let s = Selector::new(&s).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            let got = [s.matches(&profile), s.matches(&plain), s.matches(&none)];
            assert_eq!(got, expected, "{what}");
        }
    }

    #[test]
    fn invalid_selectors_name_the_field_and_the_fix() {
        let table: Vec<(LabelSelector, &str, &str)> = vec![
            (
                sel(&[], vec![expr("team", "in", Some(&["a"]))]),
                "matchExpressions[0].operator",
                "`in` is not a label selector operator; use In, NotIn, Exists or DoesNotExist",
            ),
            (
                sel(&[], vec![expr("team", "In", None)]),
                "matchExpressions[0].values",
                "operator In needs at least one value",
            ),
            (
                sel(&[], vec![expr("team", "NotIn", Some(&[]))]),
                "matchExpressions[0].values",
                "operator NotIn needs at least one value",
            ),
            (
                sel(&[], vec![expr("team", "Exists", Some(&["a"]))]),
                "matchExpressions[0].values",
                "operator Exists takes no values",
            ),
            (
                sel(&[], vec![expr("team", "DoesNotExist", Some(&["a"]))]),
                "matchExpressions[0].values",
                "operator DoesNotExist takes no values",
            ),
            (
                sel(&[], vec![expr("Team Name", "Exists", None)]),
                "matchExpressions[0].key",
                "`Team Name` is not a label key",
            ),
            (sel(&[], vec![expr("", "Exists", None)]), "matchExpressions[0].key", "`` is not a label key"),
            (
                sel(&[], vec![expr("Example.com/team", "Exists", None)]),
                "matchExpressions[0].key",
                "is not a label key",
            ),
            (
                sel(&[], vec![expr("team", "In", Some(&["a b"]))]),
                "matchExpressions[0].values[0]",
                "`a b` is not a label value",
            ),
            (sel(&[("team", "-x")], vec![]), "matchLabels.team", "`-x` is not a label value"),
            (sel(&[("a/b/c", "x")], vec![]), "matchLabels.a/b/c", "is not a label key"),
        ];
        for (s, field, problem) in table {
            let errors = Selector::new(&s).expect_err(field);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, field);
            assert!(errors[0].problem.contains(problem), "{}", errors[0].problem);
        }
        // Valid shapes: prefixed keys, empty values, dots and underscores.
        let ok = sel(
            &[("app.kubernetes.io/part-of", "kubeflow-profile"), ("empty", "")],
            vec![expr("a_b.c", "In", Some(&["1.0_x"]))],
        );
        assert!(Selector::new(&ok).is_ok());
        let long = "x".repeat(64);
        assert!(Selector::new(&sel(&[("team", &long)], vec![])).is_err(), "values are at most 63");
    }
}
