//! Between the objects and a [`Tenancy`].
//!
//! [`tenancy_from`] builds the tenancy the scheduler works with from the GpuFlavor, Cohort and
//! Tenant objects plus the cluster-wide [`Settings`] (currency, timing, priority classes, class per
//! kind: they have no object and come from the settings file, see
//! `gantry_core::tenancy::file::parse_settings`). It hands the objects' values to the same builder
//! as the tenants file, so both accept and refuse the same things in the same words; a refusal
//! names the object and field instead of the line ([`CrdError`]).
//!
//! Names: a flavor's name in the tenancy is its GpuFlavor's `spec.model` (what nodes report, as
//! `Tenancy::bind` needs); tenants' `quotas` and `prices` name flavors by their GpuFlavor's object
//! name. Cohorts and tenants are named by their object names.
//!
//! Namespaces: a tenant's are its `namespaces` list plus those of the cluster's Namespace objects
//! its `namespaceSelector` matches ([`super::select`]); a namespace two tenants claim is left out
//! of both (the rest of the tenancy stands) and shown on both Tenants' status.
//!
//! [`tenancy_to_objects`] goes the other way, for moving a tenants file into a cluster, and
//! [`objects_yaml`] renders the objects for `kubectl apply -f`.

use crate::crds::{
    BorrowWithinCohort, Budget, Cohort, CohortSpec, FlavorQuota, GpuFlavor, GpuFlavorSpec, IdleNotebooksSpec,
    Tenant, TenantPreemption, TenantSpec,
};
use gantry_core::tenancy::build::{
    self, At, Declared, FieldRefusal, Form, Origin, RawBudget, RawCohort, RawFlavor, RawIdleNotebooks,
    RawList, RawPreemption, RawQuota, RawTenant, Val,
};
use gantry_core::tenancy::{self as core, Kind, Settings, Tenancy, WhenExhausted};
use k8s_openapi::api::core::v1::Namespace;
use std::collections::BTreeMap;

/// A refused object: which object and field, what is wrong and how to fix it.
///
/// Displays as `{kind} {name}: {field}: {problem}`, e.g.
/// `Tenant team-a: spec.quotas.a100.borrowingLimit: borrowingLimit is -2; quotas cannot be
/// negative, use 0 or more`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {}: {}{problem}", if .name.is_empty() { "(no name)" } else { .name.as_str() }, field_prefix(.field))]
pub struct CrdError {
    /// `GpuFlavor`, `Cohort` or `Tenant`.
    pub kind: String,
    /// The object's name; empty when it has none.
    pub name: String,
    /// The field path in the object, such as `spec.quotas.a100.nominal`.
    pub field: String,
    pub problem: String,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

const GPU_FLAVOR: &str = "GpuFlavor";
const COHORT: &str = "Cohort";
pub(super) const TENANT: &str = "Tenant";

/// The objects' words for declaring a missing name.
struct ObjectForm;

impl Form for ObjectForm {
    fn declare(&self, what: Declared) -> String {
        match what {
            Declared::Flavor => "create a GpuFlavor of that name".to_string(),
            Declared::Cohort => "create a Cohort of that name".to_string(),
            Declared::PriorityClass => {
                "declare it under `priorityClasses` in Gantry's settings file".to_string()
            }
        }
    }
}

/// Builds the tenancy from the objects under the cluster-wide `settings`, with the validation and
/// defaults of the tenants file. Flavors, cohorts and tenants are ordered by object name, so the
/// same objects in any order give the same tenancy. No objects at all is a valid, empty tenancy.
///
/// `namespaces` are the cluster's Namespace objects, which tenants' selectors are matched
/// against (only names and labels are read); with none, selectors match nothing. A namespace
/// claimed by two tenants is no refusal: it belongs to neither ([`super::match_namespaces`] says
/// which).
///
/// FieldRefusals: every one found, objects in name order, each naming its object and field.
pub fn tenancy_from(
    settings: &Settings,
    flavors: &[GpuFlavor],
    cohorts: &[Cohort],
    tenants: &[Tenant],
    namespaces: &[Namespace],
) -> Result<Tenancy, Vec<CrdError>> {
    let mut errors = Vec::new();
    let (matched, selector_errors) = super::select::match_namespaces(tenants, namespaces);
    let flavors = by_name(flavors, GPU_FLAVOR, |f| f.metadata.name.as_deref(), &mut errors);
    let cohorts = by_name(cohorts, COHORT, |c| c.metadata.name.as_deref(), &mut errors);
    let tenants = by_name(tenants, TENANT, |t| t.metadata.name.as_deref(), &mut errors);
    errors.extend(selector_errors);
    let flavors: Vec<RawFlavor> = flavors.into_iter().map(|(name, f)| raw_flavor(name, &f.spec)).collect();
    let cohorts: Vec<RawCohort> = cohorts.into_iter().map(|(name, c)| raw_cohort(name, &c.spec)).collect();
    let mut raw_tenants = Vec::with_capacity(tenants.len());
    for (name, t) in tenants {
        if t.spec.namespaces.is_empty() && t.spec.namespace_selector.is_none() {
            errors.push(CrdError {
                kind: TENANT.into(),
                name: name.into(),
                field: "spec".into(),
                problem:
                    "the tenant has no namespaces; list them (`namespaces: [team-a]`) or select them by \
                          label (`namespaceSelector: {matchLabels: {team: a}}`)"
                        .into(),
            });
        }
        raw_tenants.push(raw_tenant(name, &t.spec, matched.get(name)));
    }
    let tenants = raw_tenants;
    match build::tenancy(settings, &flavors, &cohorts, &tenants, &ObjectForm) {
        Ok(tenancy) if errors.is_empty() => Ok(tenancy),
        Ok(_) => Err(errors),
        Err(refusals) => {
            errors.extend(refusals.into_iter().map(crd_error));
            Err(errors)
        }
    }
}

/// The named objects in order of name; an object without a name is refused.
fn by_name<'a, T>(
    objects: &'a [T],
    kind: &str,
    name: impl Fn(&T) -> Option<&str>,
    errors: &mut Vec<CrdError>,
) -> Vec<(&'a str, &'a T)> {
    let mut named = Vec::with_capacity(objects.len());
    for object in objects {
        match name(object) {
            Some(n) => named.push((n, object)),
            None => errors.push(CrdError {
                kind: kind.to_string(),
                name: String::new(),
                field: "metadata.name".to_string(),
                problem: "the object has no name; give it one".to_string(),
            }),
        }
    }
    named.sort_by_key(|&(n, _)| n);
    named
}

fn crd_error(refusal: FieldRefusal) -> CrdError {
    let FieldRefusal { at: At { origin, field }, problem } = refusal;
    match origin {
        Origin::Object { kind, name } => CrdError { kind, name, field, problem },
        Origin::Line(_) => CrdError { kind: String::new(), name: String::new(), field, problem },
    }
}

fn raw_flavor(name: &str, spec: &GpuFlavorSpec) -> RawFlavor {
    let at = |field: &str| At::object(GPU_FLAVOR, name, field);
    RawFlavor {
        at: at(""),
        name: Val::new(&spec.model, at("spec.model")),
        key: Some(Val::new(name, at("metadata.name"))),
        price: spec.price.as_ref().map(|p| Val::new(p, at("spec.price"))),
        sharing: spec.sharing.map(|s| Val::new(s.to_string(), at("spec.sharing"))),
    }
}

fn raw_cohort(name: &str, spec: &CohortSpec) -> RawCohort {
    let at = |field: &str| At::object(COHORT, name, field);
    RawCohort {
        at: at(""),
        name: Val::new(name, at("metadata.name")),
        parent: spec.parent.as_ref().map(|p| Val::new(p, at("spec.parent"))),
    }
}

/// `matched`: the tenant's namespaces resolved over the cluster's (its list's duplicates are
/// kept, so that they are refused as in the file).
fn raw_tenant(name: &str, spec: &TenantSpec, matched: Option<&super::Matched>) -> RawTenant {
    let at = |field: &str| At::object(TENANT, name, field);
    let contested = |ns: &String| matched.is_some_and(|m| m.contested.contains(ns));
    let mut namespaces = RawList {
        at: at("spec.namespaces"),
        items: spec
            .namespaces
            .iter()
            .enumerate()
            .filter(|(_, ns)| !contested(ns))
            .map(|(k, ns)| Val::new(ns, at(&format!("spec.namespaces[{k}]"))))
            .collect(),
    };
    for ns in matched.iter().flat_map(|m| &m.namespaces).filter(|ns| !spec.namespaces.contains(ns)) {
        namespaces.items.push(Val::new(ns, at("spec.namespaceSelector")));
    }
    let list = |field: &str, items: &[String]| RawList {
        at: at(field),
        items: items.iter().enumerate().map(|(k, v)| Val::new(v, at(&format!("{field}[{k}]")))).collect(),
    };
    let map = |field: &str, m: &BTreeMap<String, String>| {
        let entry = |(k, v): (&String, &String)| {
            let at = at(&format!("{field}.{k}"));
            (Val::new(k, at.clone()), Val::new(v, at))
        };
        m.iter().map(entry).collect()
    };
    let quota = |(flavor, q): (&String, &FlavorQuota)| {
        let field = format!("spec.quotas.{flavor}");
        let val = |key: &str, v: &String| Val::new(v, at(&format!("{field}.{key}")));
        let quota = RawQuota {
            nominal: val("nominal", &q.nominal),
            borrowing_limit: q.borrowing_limit.as_ref().map(|v| val("borrowingLimit", v)),
            lending_limit: q.lending_limit.as_ref().map(|v| val("lendingLimit", v)),
        };
        (Val::new(flavor, at(&field)), quota)
    };
    let budget = |b: &Budget| RawBudget {
        gpu_hours_per_month: Val::new(&b.gpu_hours_per_month, at("spec.budget.gpuHoursPerMonth")),
        when_exhausted: b.when_exhausted.as_ref().map(|w| Val::new(w, at("spec.budget.whenExhausted"))),
    };
    RawTenant {
        at: at(""),
        name: Val::new(name, at("metadata.name")),
        namespaces,
        // Checked by the caller: the tenant lists namespaces or has a selector.
        namespaces_may_be_empty: true,
        cohort: spec.cohort.as_ref().map(|c| Val::new(c, at("spec.cohort"))),
        // f64's Display is the shortest text that reads back as the same number.
        weight: spec.weight.map(|w| Val::new(w.to_string(), at("spec.weight"))),
        priority_classes: spec.priority_classes.as_ref().map(|c| list("spec.priorityClasses", c)),
        kind_priorities: map("spec.kindPriorities", &spec.kind_priorities),
        quotas: spec.quotas.iter().map(quota).collect(),
        prices: map("spec.prices", &spec.prices),
        budget: spec.budget.as_ref().map(budget),
        preemption: spec.preemption.as_ref().map(|p| {
            let val = |key: &str, v: &Option<String>| {
                v.as_ref().map(|v| Val::new(v, at(&format!("spec.preemption.{key}"))))
            };
            let borrow = p.borrow_within_cohort.as_ref();
            RawPreemption {
                within_tenant: val("withinTenant", &p.within_tenant),
                reclaim_within_cohort: val("reclaimWithinCohort", &p.reclaim_within_cohort),
                borrow_policy: val("borrowWithinCohort.policy", &borrow.and_then(|b| b.policy.clone())),
                borrow_max_priority: val(
                    "borrowWithinCohort.maxPriorityThreshold",
                    &borrow.and_then(|b| b.max_priority_threshold.map(|n| n.to_string())),
                ),
                when_can_preempt: val("whenCanPreempt", &p.when_can_preempt),
            }
        }),
        idle_notebooks: spec.idle_notebooks.as_ref().map(|n| RawIdleNotebooks {
            at: at("spec.idleNotebooks"),
            stop_after: Val::new(&n.stop_after, at("spec.idleNotebooks.stopAfter")),
            when: n.when.as_ref().map(|w| Val::new(w, at("spec.idleNotebooks.when"))),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// From a tenancy to objects

/// The objects of a tenancy: flavors, cohorts and tenants, each in order of name.
pub type TenancyObjects = (Vec<GpuFlavor>, Vec<Cohort>, Vec<Tenant>);

/// The GpuFlavor name for a flavor (a GPU model): lowercase letters, digits and '-', as object
/// names must be: `A100` -> `a100`, `NVIDIA A100-SXM4-80GB` -> `nvidia-a100-sxm4-80gb`.
pub fn flavor_object_name(model: &str) -> String {
    let mut name = String::with_capacity(model.len());
    for c in model.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
    }
    name.truncate(63);
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "flavor".to_string()
    } else {
        name.to_string()
    }
}

/// A tenancy that cannot be written as objects: a name in the tenants file that no object
/// could have. The message says what to rename.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoObjectName {
    #[error(
        "flavors `{first}` and `{second}` would both be the GpuFlavor `{object}` (object names are lowercase \
         letters, digits and '-'); rename one of them"
    )]
    SameFlavor { first: String, second: String, object: String },
    #[error(
        "cohort `{0}` cannot be the name of a Cohort object; rename it (and its uses) to 1 to 63 lowercase \
         letters, digits and '-', starting and ending with a letter or digit"
    )]
    Cohort(String),
}

/// The objects that declare `tenancy` in a cluster whose settings file holds `settings` (those
/// of the tenants file it came from: `file::parse_with_settings`). Built back with
/// [`tenancy_from`] under the same settings they give the same tenancy, up to order (objects come
/// in name order). Defaults are left out: a tenant's quota of 0, its price when it is the
/// flavor's, weight 1, every class allowed, the cluster-wide class of a kind.
///
/// Refused, naming what to rename in the tenants file: a cohort whose name cannot be an object
/// name, two flavors whose models give the same object name.
pub fn tenancy_to_objects(tenancy: &Tenancy, settings: &Settings) -> Result<TenancyObjects, NoObjectName> {
    let mut keys: Vec<String> = Vec::with_capacity(tenancy.flavors.len());
    for flavor in &tenancy.flavors {
        let key = flavor_object_name(&flavor.name);
        if let Some(other) = keys.iter().position(|k| *k == key).and_then(|i| tenancy.flavors.get(i)) {
            return Err(NoObjectName::SameFlavor {
                first: other.name.clone(),
                second: flavor.name.clone(),
                object: key,
            });
        }
        keys.push(key);
    }
    for cohort in &tenancy.cohorts {
        if !build::is_dns_label(&cohort.name) {
            return Err(NoObjectName::Cohort(cohort.name.clone()));
        }
    }
    let mut flavors: Vec<GpuFlavor> = tenancy
        .flavors
        .iter()
        .zip(&keys)
        .map(|(f, key)| {
            let price = (f.price_micros != 0).then(|| build::micro_text(f.price_micros));
            GpuFlavor::new(
                key,
                GpuFlavorSpec { model: f.name.clone(), price, sharing: f.sharing.then_some(true) },
            )
        })
        .collect();
    let cohort_name = |c: Option<usize>| c.and_then(|c| tenancy.cohorts.get(c)).map(|c| c.name.clone());
    let mut cohorts: Vec<Cohort> = tenancy
        .cohorts
        .iter()
        .map(|c| Cohort::new(&c.name, CohortSpec { parent: cohort_name(c.parent) }))
        .collect();
    let mut tenants: Vec<Tenant> = tenancy
        .tenants
        .iter()
        .map(|t| Tenant::new(&t.name, tenant_spec(t, tenancy, settings, &keys, cohort_name(t.cohort))))
        .collect();
    flavors.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    cohorts.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    tenants.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok((flavors, cohorts, tenants))
}

fn tenant_spec(
    t: &core::Tenant,
    tenancy: &Tenancy,
    settings: &Settings,
    keys: &[String],
    cohort: Option<String>,
) -> TenantSpec {
    let class_name = |classes: &[core::PriorityClass], i: usize| classes.get(i).map(|c| c.name.clone());
    let all: Vec<usize> = (0..tenancy.priority_classes.len()).collect();
    let priority_classes = (t.allowed_classes != all).then(|| {
        t.allowed_classes.iter().filter_map(|&c| class_name(&tenancy.priority_classes, c)).collect()
    });
    let mut kind_priorities = BTreeMap::new();
    for kind in Kind::ALL {
        let class = t.kind_classes.get(kind.index()).and_then(|&c| class_name(&tenancy.priority_classes, c));
        let default =
            settings.kind_classes.get(kind.index()).and_then(|&c| class_name(&settings.priority_classes, c));
        if let Some(class) = class.filter(|c| Some(c) != default.as_ref()) {
            kind_priorities.insert(kind.name().to_string(), class);
        }
    }
    let mut quotas = BTreeMap::new();
    let mut prices = BTreeMap::new();
    for (f, (flavor, key)) in tenancy.flavors.iter().zip(keys).enumerate() {
        if let Some(q) = t.quotas.get(f).filter(|q| **q != core::FlavorQuota::default()) {
            let quota = FlavorQuota {
                nominal: build::milli_text(q.nominal),
                borrowing_limit: q.borrowing_limit.map(build::milli_text),
                lending_limit: q.lending_limit.map(build::milli_text),
            };
            quotas.insert(key.clone(), quota);
        }
        if let Some(&price) = t.prices_micros.get(f).filter(|&&p| p != flavor.price_micros) {
            prices.insert(key.clone(), build::micro_text(price));
        }
    }
    let budget = t.budget.map(|b| Budget {
        // The file counts GPU-hours to 3 decimals, so this is exact for a budget read from one.
        gpu_hours_per_month: build::milli_text(b.milli_gpu_seconds / 3600),
        when_exhausted: (b.when_exhausted == WhenExhausted::Refuse).then(|| "refuse".to_string()),
    });
    let preemption =
        (t.preemption != core::PreemptionPolicy::default()).then(|| preemption_spec(&t.preemption));
    TenantSpec {
        namespaces: t.namespaces.clone(),
        namespace_selector: None,
        cohort,
        weight: (t.weight != 1.0).then_some(t.weight),
        priority_classes,
        kind_priorities,
        quotas,
        prices,
        budget,
        preemption,
        idle_notebooks: t.idle_notebooks.map(|n| IdleNotebooksSpec {
            stop_after: format!("{}s", n.stop_after),
            when: n.always.then(|| "always".to_string()),
        }),
    }
}

/// The CRD's words for a preemption policy (those of the tenants file, and Kueue's).
fn preemption_spec(p: &core::PreemptionPolicy) -> TenantPreemption {
    use core::{ReclaimWithinCohort as R, WhenCanPreempt as W, WithinTenant as T};
    let within = match p.within_tenant {
        T::Never => "Never",
        T::LowerPriority => "LowerPriority",
        T::LowerOrNewerEqualPriority => "LowerOrNewerEqualPriority",
    };
    let reclaim = match p.reclaim_within_cohort {
        R::Never => "Never",
        R::LowerPriority => "LowerPriority",
        R::Any => "Any",
    };
    let when = match p.when_can_preempt {
        W::TryNextFlavor => "TryNextFlavor",
        W::Preempt => "Preempt",
    };
    TenantPreemption {
        within_tenant: Some(within.into()),
        reclaim_within_cohort: Some(reclaim.into()),
        borrow_within_cohort: p.borrow_within_cohort.map(|n| BorrowWithinCohort {
            policy: Some("LowerPriority".into()),
            max_priority_threshold: (n != i32::MAX).then_some(n),
        }),
        when_can_preempt: Some(when.into()),
    }
}

/// The objects as one YAML stream for `kubectl apply -f`: flavors, then cohorts, then tenants,
/// each a document after a `---` line, with `apiVersion`, `kind` and `metadata.name`.
pub fn objects_yaml(
    flavors: &[GpuFlavor],
    cohorts: &[Cohort],
    tenants: &[Tenant],
) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::from("# Gantry objects (gantry.dev/v1alpha1); apply with `kubectl apply -f`.\n");
    for f in flavors {
        super::push_document(&mut out, f)?;
    }
    for c in cohorts {
        super::push_document(&mut out, c)?;
    }
    for t in tenants {
        super::push_document(&mut out, t)?;
    }
    Ok(out)
}
