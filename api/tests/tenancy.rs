//! From GpuFlavor, Cohort and Tenant objects to a `Tenancy` and back: every example tenants file
//! survives file -> objects -> rendered stream -> objects -> tenancy; the objects are refused with
//! the tenants file's rules and words, naming object and field; no objects is an empty tenancy
//! with the settings file's globals; the settings file itself.

use gantry_api::crds::{
    objects_yaml, tenancy_from, tenancy_to_objects, Budget, Cohort, CohortSpec, FlavorQuota, GpuFlavor,
    GpuFlavorSpec, NoObjectName, Tenant, TenantSpec,
};
use gantry_core::tenancy::file::{self, parse_settings, parse_with_settings};
use gantry_core::tenancy::{PriorityClass, Settings, Tenancy, Timing};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tenants");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "example tenants files in {}", dir.display());
    files
}

/// Uses every field: prices, budgets, milli quantities, limits, weights, a subset of classes,
/// kind overrides file-wide and per tenant, nested cohorts, several namespaces, a preemption
/// policy.
const RICH: &str = r#"
currency: EUR
timing: {reclaimWindow: 90s, minRuntime: 2h}
flavors:
  - {name: V100M32}
  - {name: A100, price: 2.50}
  - {name: cpu, price: 0.03}
priorityClasses:
  - {name: batch, value: 100}
  - {name: training, value: 300}
  - {name: high, value: 2000}
kindPriorities: {serving: high}
cohorts:
  - {name: vision, parent: research}
  - {name: research}
tenants:
  - name: team-b
    namespaces: [team-b]
    quotas:
      V100M32: {nominal: "2500m", lendingLimit: 0}
    budget: {gpuHoursPerMonth: 0.5}
    preemption:
      withinTenant: LowerOrNewerEqualPriority
      reclaimWithinCohort: LowerPriority
      borrowWithinCohort: {policy: LowerPriority, maxPriorityThreshold: 300}
      whenCanPreempt: Preempt
  - name: team-a
    namespaces: [team-a, team-a-dev]
    cohort: vision
    weight: 2.5
    priorityClasses: [high, batch, training]
    kindPriorities: {notebook: batch, serving: high}
    quotas:
      A100: {nominal: 16, borrowingLimit: 8, lendingLimit: 8}
      V100M32: {nominal: 2.5, borrowingLimit: 0}
      cpu: {nominal: "2500m"}
    prices: {A100: 3.10, cpu: 0.03}
    budget: {gpuHoursPerMonth: 5000.125, whenExhausted: refuse}
"#;

/// The objects of a rendered stream, checking each document's apiVersion, kind and name.
fn read_stream(yaml: &str) -> (Vec<GpuFlavor>, Vec<Cohort>, Vec<Tenant>) {
    assert!(yaml.starts_with("# "), "a comment first");
    let (mut flavors, mut cohorts, mut tenants) = (Vec::new(), Vec::new(), Vec::new());
    for doc in yaml.split("---\n").skip(1) {
        let value: Value = serde_yaml_ng::from_str(doc).expect("each document is YAML");
        assert_eq!(value["apiVersion"], "gantry.dev/v1alpha1", "{doc}");
        assert!(value["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty()), "{doc}");
        assert!(value.get("status").is_none(), "no status: {doc}");
        match value["kind"].as_str() {
            Some("GpuFlavor") => flavors.push(serde_json::from_value(value).unwrap()),
            Some("Cohort") => cohorts.push(serde_json::from_value(value).unwrap()),
            Some("Tenant") => tenants.push(serde_json::from_value(value).unwrap()),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    (flavors, cohorts, tenants)
}

fn round_trip(name: &str, text: &str) {
    let (tenancy, settings) = parse_with_settings(name, text).unwrap_or_else(|e| panic!("{e}"));
    let (flavors, cohorts, tenants) = tenancy_to_objects(&tenancy, &settings).unwrap();
    assert_eq!(
        (flavors.len(), cohorts.len(), tenants.len()),
        (tenancy.flavors.len(), tenancy.cohorts.len(), tenancy.tenants.len()),
        "{name}"
    );
    let direct = tenancy_from(&settings, &flavors, &cohorts, &tenants, &[])
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    // The file declares things in its own order, the objects come in name order.
    assert_eq!(direct.sorted_by_name(), tenancy.sorted_by_name(), "{name}");

    let yaml = objects_yaml(&flavors, &cohorts, &tenants).unwrap();
    let (f, c, t) = read_stream(&yaml);
    let json = |v: &(&[GpuFlavor], &[Cohort], &[Tenant])| serde_json::to_value(v).unwrap();
    assert_eq!(
        json(&(&f, &c, &t)),
        json(&(&flavors, &cohorts, &tenants)),
        "{name}: the stream reads back as the same objects"
    );
    // Objects in another order: the very same tenancy.
    fn reversed<T>(mut v: Vec<T>) -> Vec<T> {
        v.reverse();
        v
    }
    let again = tenancy_from(&settings, &reversed(f), &reversed(c), &reversed(t), &[]).unwrap();
    assert_eq!(again, direct, "{name}");
}

#[test]
fn example_files_round_trip_through_objects() {
    for path in examples() {
        let text = std::fs::read_to_string(&path).unwrap();
        round_trip(&path.display().to_string(), &text);
    }
    round_trip("rich.yaml", RICH);
}

#[test]
fn objects_of_the_rich_file() {
    let (tenancy, settings) = parse_with_settings("rich.yaml", RICH).unwrap();
    let (flavors, cohorts, tenants) = tenancy_to_objects(&tenancy, &settings).unwrap();
    let names = |v: Vec<Option<String>>| v.into_iter().map(Option::unwrap).collect::<Vec<_>>();
    assert_eq!(names(flavors.iter().map(|f| f.metadata.name.clone()).collect()), ["a100", "cpu", "v100m32"]);
    assert_eq!(
        flavors[0].spec,
        GpuFlavorSpec { model: "A100".into(), price: Some("2.5".into()), sharing: None }
    );
    assert_eq!(flavors[2].spec, GpuFlavorSpec { model: "V100M32".into(), price: None, sharing: None });
    assert_eq!(cohorts[1].spec.parent.as_deref(), Some("research"));
    let quota = |n: &str, b: Option<&str>, l: Option<&str>| FlavorQuota {
        nominal: n.into(),
        borrowing_limit: b.map(Into::into),
        lending_limit: l.map(Into::into),
    };
    let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let expected = TenantSpec {
        namespaces: vec!["team-a".into(), "team-a-dev".into()],
        namespace_selector: None,
        cohort: Some("vision".into()),
        weight: Some(2.5),
        priority_classes: Some(vec!["high".into(), "batch".into(), "training".into()]),
        // serving: high is the file-wide class, so left out
        kind_priorities: map(&[("notebook", "batch")]),
        quotas: BTreeMap::from([
            ("a100".into(), quota("16", Some("8"), Some("8"))),
            ("cpu".into(), quota("2.5", None, None)),
            ("v100m32".into(), quota("2.5", Some("0"), None)),
        ]),
        // cpu's 0.03 is the list price, so left out
        prices: map(&[("a100", "3.1")]),
        budget: Some(Budget {
            gpu_hours_per_month: "5000.125".into(),
            when_exhausted: Some("refuse".into()),
        }),
        // Gantry's own rules: left out
        preemption: None,
        idle_notebooks: None,
    };
    assert_eq!(tenants[0].metadata.name.as_deref(), Some("team-a"));
    assert_eq!(tenants[0].spec, expected);
    assert_eq!(
        tenants[1].spec.budget,
        Some(Budget { gpu_hours_per_month: "0.5".into(), when_exhausted: None })
    );
    assert_eq!(tenants[1].spec.weight, None);
    assert_eq!(tenants[1].spec.priority_classes, None);
    let policy = tenants[1].spec.preemption.as_ref().expect("team-b's policy");
    assert_eq!(policy.within_tenant.as_deref(), Some("LowerOrNewerEqualPriority"));
    assert_eq!(policy.reclaim_within_cohort.as_deref(), Some("LowerPriority"));
    assert_eq!(policy.when_can_preempt.as_deref(), Some("Preempt"));
    let borrow = policy.borrow_within_cohort.as_ref().expect("borrowing while preempting");
    assert_eq!((borrow.policy.as_deref(), borrow.max_priority_threshold), (Some("LowerPriority"), Some(300)));
}

#[test]
fn tenancy_is_in_name_order() {
    let (tenancy, settings) = parse_with_settings("rich.yaml", RICH).unwrap();
    let (flavors, cohorts, tenants) = tenancy_to_objects(&tenancy, &settings).unwrap();
    let built = tenancy_from(&settings, &flavors, &cohorts, &tenants, &[]).unwrap();
    let models: Vec<&str> = built.flavors.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(models, ["A100", "cpu", "V100M32"], "in GpuFlavor name order: a100, cpu, v100m32");
    let cohorts: Vec<&str> = built.cohorts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(cohorts, ["research", "vision"]);
    assert_eq!(built.cohorts[1].parent, Some(0));
    let tenants: Vec<&str> = built.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tenants, ["team-a", "team-b"]);
    assert_eq!(built.tenants[0].cohort, Some(1));
}

#[test]
fn no_objects_is_an_empty_tenancy_with_the_settings() {
    let text = "currency: EUR\ntiming: {reclaimWindow: 2m}\npriorityClasses:\n  - {name: low, value: 1}\n  - {name: top, value: 900}\nkindPriorities: {batch: top}\n";
    let settings = parse_settings("settings.yaml", text).unwrap();
    let class = |name: &str, value| PriorityClass { name: name.into(), value };
    assert_eq!(
        settings,
        Settings {
            currency: "EUR".into(),
            timing: Timing { reclaim_window: 120, min_runtime: 600 },
            priority_classes: vec![class("low", 1), class("top", 900)],
            // by closest value: training 300 -> low, pipeline-step 500 -> top, notebook 800 -> top,
            // serving 1000 -> top; batch -> top as set
            kind_classes: [0, 1, 1, 1, 1],
        }
    );
    let empty = tenancy_from(&settings, &[], &[], &[], &[]).unwrap();
    let expected = Tenancy {
        flavors: vec![],
        cohorts: vec![],
        tenants: vec![],
        priority_classes: settings.priority_classes.clone(),
        timing: settings.timing,
        currency: "EUR".into(),
    };
    assert_eq!(empty, expected);
    let empty = tenancy_from(&Settings::default(), &[], &[], &[], &[]).unwrap();
    assert_eq!(
        (empty.currency.as_str(), empty.timing, empty.priority_classes.len()),
        ("USD", Timing::default(), 5)
    );
}

// ---------------------------------------------------------------------------------------------
// The settings file

#[test]
fn settings_file_takes_only_the_cluster_wide_sections() {
    assert_eq!(parse_settings("s.yaml", ""), Ok(Settings::default()));
    assert_eq!(parse_settings("s.yaml", "# nothing here\n\n"), Ok(Settings::default()));
    assert_eq!(parse_settings("s.yaml", "{}"), Ok(Settings::default()));
    // The same sections give the same settings as in a whole tenants file.
    let sections = "currency: EUR\ntiming: {reclaimWindow: 90s, minRuntime: 2h}\npriorityClasses:\n  - {name: batch, value: 100}\n  - {name: training, value: 300}\n  - {name: high, value: 2000}\nkindPriorities: {serving: high}\n";
    let whole = format!("{sections}flavors: [{{name: A100}}]\ntenants: [{{name: a, namespaces: [a]}}]\n");
    assert_eq!(parse_settings("s.yaml", sections), Ok(parse_with_settings("t.yaml", &whole).unwrap().1));

    let refusals = [
        (
            "currency: EUR\ntenants:\n  - {name: a, namespaces: [a]}\n",
            "s.yaml:2: tenants: `tenants` does not belong in the settings file: in a cluster, flavors, cohorts and \
             tenants are GpuFlavor, Cohort and Tenant objects; remove the section and create the objects \
             (`gantry crd --from-tenants FILE` prints a tenants file's as objects)",
        ),
        (
            "curency: EUR\n",
            "s.yaml:1: curency: unknown key `curency` (did you mean `currency`?); allowed keys here: currency, \
             timing, priorityClasses, kindPriorities",
        ),
        (
            "kindPriorities: {serving: urgent}\n",
            "s.yaml:1: kindPriorities.serving: unknown priority class `urgent`; declared: training, pipeline-step, \
             notebook, serving, batch; declare it under `priorityClasses` or fix the name",
        ),
        (
            "timing: {minRuntime: soon}\n",
            "s.yaml:1: timing.minRuntime: \"soon\" is not a duration; write whole seconds or a whole number with s, \
             m, h or d, such as 90s, 5m, 2h, 1d",
        ),
    ];
    for (text, expected) in refusals {
        assert_eq!(parse_settings("s.yaml", text).unwrap_err().to_string(), expected);
    }
    let e = file::load_settings(Path::new("/nonexistent/settings.yaml")).unwrap_err();
    assert!(e.problem.starts_with("cannot read the settings file"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Refused objects

struct Objects {
    flavors: Vec<GpuFlavor>,
    cohorts: Vec<Cohort>,
    tenants: Vec<Tenant>,
}

fn flavor(name: &str, model: &str, price: Option<&str>) -> GpuFlavor {
    GpuFlavor::new(name, GpuFlavorSpec { model: model.into(), price: price.map(Into::into), sharing: None })
}

fn cohort(name: &str, parent: Option<&str>) -> Cohort {
    Cohort::new(name, CohortSpec { parent: parent.map(Into::into) })
}

fn tenant(name: &str, namespaces: &[&str]) -> Tenant {
    Tenant::new(
        name,
        TenantSpec { namespaces: namespaces.iter().map(|n| n.to_string()).collect(), ..Default::default() },
    )
}

fn quota(nominal: &str) -> FlavorQuota {
    FlavorQuota { nominal: nominal.into(), ..Default::default() }
}

/// A valid set: flavors a100 (A100) and cpu, cohort vision under research, tenants team-a (in
/// vision, 8 A100) and team-b.
fn valid() -> Objects {
    let mut team_a = tenant("team-a", &["team-a"]);
    team_a.spec.cohort = Some("vision".into());
    team_a.spec.quotas.insert("a100".into(), quota("8"));
    Objects {
        flavors: vec![flavor("a100", "A100", Some("2.5")), flavor("cpu", "cpu", None)],
        cohorts: vec![cohort("research", None), cohort("vision", Some("research"))],
        tenants: vec![team_a, tenant("team-b", &["team-b"])],
    }
}

fn team_a(o: &mut Objects) -> &mut TenantSpec {
    &mut o.tenants[0].spec
}

fn a100_quota(o: &mut Objects) -> &mut FlavorQuota {
    team_a(o).quotas.get_mut("a100").unwrap()
}

/// One refused set: how it differs from [`valid`] and every message, in order.
struct Bad {
    name: &'static str,
    change: fn(&mut Objects),
    messages: &'static [&'static str],
}

const BAD: &[Bad] = &[
    Bad {
        name: "negative borrowing limit",
        change: |o| a100_quota(o).borrowing_limit = Some("-2".into()),
        messages: &["Tenant team-a: spec.quotas.a100.borrowingLimit: borrowingLimit is -2; quotas cannot be negative, use 0 or more"],
    },
    Bad {
        name: "lending above nominal",
        change: |o| a100_quota(o).lending_limit = Some("12".into()),
        messages: &["Tenant team-a: spec.quotas.a100.lendingLimit: lendingLimit 12 is above nominal 8; a tenant can lend at most its nominal quota, so lower lendingLimit or raise nominal"],
    },
    Bad {
        name: "quantity with too many decimals",
        change: |o| a100_quota(o).nominal = "2.5005".into(),
        messages: &["Tenant team-a: spec.quotas.a100.nominal: nominal is \"2.5005\": too many decimals to count exactly; write a number of GPUs (cores for cpu) with at most 3 decimals, such as 2.5, or milli-units such as \"2500m\""],
    },
    Bad {
        name: "quota of a flavor named by its model",
        change: |o| {
            let q = team_a(o).quotas.remove("a100").unwrap();
            team_a(o).quotas.insert("A100".into(), q);
        },
        messages: &["Tenant team-a: spec.quotas.A100: unknown flavor `A100` (did you mean `a100`?); declared: a100, cpu; create a GpuFlavor of that name or fix the name"],
    },
    Bad {
        name: "price of an unknown flavor",
        change: |o| {
            team_a(o).prices.insert("h100".into(), "4".into());
        },
        messages: &["Tenant team-a: spec.prices.h100: unknown flavor `h100` (did you mean `a100`?); declared: a100, cpu; create a GpuFlavor of that name or fix the name"],
    },
    // A namespace in two tenants is no refusal of the objects: it belongs to neither
    // (api/tests/profiles.rs).
    Bad {
        name: "no namespaces",
        change: |o| o.tenants[1].spec.namespaces.clear(),
        messages: &["Tenant team-b: spec: the tenant has no namespaces; list them (`namespaces: [team-a]`) or select them by label (`namespaceSelector: {matchLabels: {team: a}}`)"],
    },
    Bad {
        name: "bad namespace name",
        change: |o| o.tenants[1].spec.namespaces[0] = "Team_B".into(),
        messages: &["Tenant team-b: spec.namespaces[0]: `Team_B` is not a valid name; use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"],
    },
    Bad {
        name: "tenant name with a dot",
        change: |o| o.tenants[1].metadata.name = Some("team.b".into()),
        messages: &["Tenant team.b: metadata.name: `team.b` is not a valid name; use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"],
    },
    Bad {
        name: "cohort cycle",
        change: |o| o.cohorts[0].spec.parent = Some("vision".into()),
        messages: &[
            "Cohort research: spec.parent: cohort cycle: research -> vision -> research; remove one parent",
            "Cohort vision: spec.parent: cohort cycle: vision -> research -> vision; remove one parent",
        ],
    },
    Bad {
        name: "unknown parent cohort",
        change: |o| o.cohorts[1].spec.parent = Some("root".into()),
        messages: &["Cohort vision: spec.parent: unknown cohort `root`; declared: research, vision; create a Cohort of that name or fix the name"],
    },
    Bad {
        name: "unknown tenant cohort",
        change: |o| team_a(o).cohort = Some("visoin".into()),
        messages: &["Tenant team-a: spec.cohort: unknown cohort `visoin` (did you mean `vision`?); declared: research, vision; create a Cohort of that name or fix the name"],
    },
    Bad {
        name: "unknown priority class",
        change: |o| team_a(o).priority_classes = Some(vec!["batch".into(), "gold".into()]),
        messages: &["Tenant team-a: spec.priorityClasses[1]: unknown priority class `gold`; declared: training, pipeline-step, notebook, serving, batch; declare it under `priorityClasses` in Gantry's settings file or fix the name"],
    },
    Bad {
        name: "default class of a kind not allowed",
        change: |o| team_a(o).priority_classes = Some(vec!["batch".into()]),
        messages: &["Tenant team-a: spec.priorityClasses: kind training runs at class `training` by default, which this tenant may not use (allowed: batch); add `training` to priorityClasses or set kindPriorities.training to one of the allowed classes"],
    },
    Bad {
        name: "override class not allowed",
        change: |o| {
            let spec = team_a(o);
            spec.priority_classes = Some(["training", "pipeline-step", "notebook", "serving"].map(String::from).to_vec());
            spec.kind_priorities.insert("batch".into(), "training".into());
            spec.kind_priorities.insert("notebook".into(), "batch".into());
        },
        messages: &["Tenant team-a: spec.kindPriorities.notebook: class `batch` is not in this tenant's priorityClasses (training, pipeline-step, notebook, serving); add `batch` to spec.priorityClasses or choose one of those"],
    },
    Bad {
        name: "unknown kind",
        change: |o| {
            team_a(o).kind_priorities.insert("trainng".into(), "batch".into());
        },
        messages: &["Tenant team-a: spec.kindPriorities.trainng: unknown kind `trainng` (did you mean `training`?); kinds are: training, pipeline-step, notebook, serving, batch"],
    },
    Bad {
        name: "budget in words",
        change: |o| team_a(o).budget = Some(Budget { gpu_hours_per_month: "lots".into(), when_exhausted: None }),
        messages: &["Tenant team-a: spec.budget.gpuHoursPerMonth: gpuHoursPerMonth is \"lots\": not a number; write a number of GPU-hours with at most 3 decimals, such as 5000"],
    },
    Bad {
        name: "budget when exhausted",
        change: |o| {
            team_a(o).budget = Some(Budget { gpu_hours_per_month: "10".into(), when_exhausted: Some("stop".into()) })
        },
        messages: &["Tenant team-a: spec.budget.whenExhausted: unknown value `stop`; write `idle-only` (run only on idle capacity) or `refuse`"],
    },
    Bad {
        name: "weight zero",
        change: |o| team_a(o).weight = Some(0.0),
        messages: &["Tenant team-a: spec.weight: weight is 0; it must be a number greater than 0 (shares of borrowed capacity follow it), e.g. 1"],
    },
    Bad {
        name: "negative tenant price",
        change: |o| {
            team_a(o).prices.insert("cpu".into(), "-0.5".into());
        },
        messages: &["Tenant team-a: spec.prices.cpu: price is -0.5; prices cannot be negative, use 0 or more"],
    },
    Bad {
        name: "flavor price with a currency",
        change: |o| o.flavors[0].spec.price = Some("2.50 USD".into()),
        messages: &["GpuFlavor a100: spec.price: price is \"2.50 USD\": not a number; write a price per GPU-hour (core-hour for cpu) with at most 6 decimals, such as 2.40"],
    },
    Bad {
        name: "two flavors of one model",
        change: |o| o.flavors.push(flavor("a100-sxm", "A100", None)),
        messages: &["GpuFlavor a100-sxm: spec.model: flavor `A100` is declared twice (also GpuFlavor a100); names must be unique, so rename or remove one"],
    },
    Bad {
        name: "empty model",
        change: |o| o.flavors[1].spec.model = " ".into(),
        messages: &["GpuFlavor cpu: spec.model: is empty; give it a name"],
    },
    Bad {
        name: "unknown preemption word",
        change: |o| {
            team_a(o).preemption = Some(gantry_api::crds::TenantPreemption {
                reclaim_within_cohort: Some("Sometimes".into()),
                ..Default::default()
            })
        },
        messages: &["Tenant team-a: spec.preemption.reclaimWithinCohort: unknown reclaimWithinCohort `Sometimes`; write one of `Never`, `LowerPriority`, `Any`"],
    },
    Bad {
        name: "object without a name",
        change: |o| o.cohorts.push(Cohort { metadata: Default::default(), spec: CohortSpec { parent: None } }),
        messages: &["Cohort (no name): metadata.name: the object has no name; give it one"],
    },
    Bad {
        name: "every refusal, objects in name order",
        change: |o| {
            o.tenants[1].spec.weight = Some(-1.0);
            a100_quota(o).nominal = "-8".into();
            o.flavors.reverse();
            o.flavors[0].spec.price = Some("free".into());
        },
        messages: &[
            "GpuFlavor cpu: spec.price: price is \"free\": not a number; write a price per GPU-hour (core-hour for cpu) with at most 6 decimals, such as 2.40",
            "Tenant team-a: spec.quotas.a100.nominal: nominal is -8; quotas cannot be negative, use 0 or more",
            "Tenant team-b: spec.weight: weight is -1; it must be a number greater than 0 (shares of borrowed capacity follow it), e.g. 1",
        ],
    },
];

#[test]
fn refused_objects_name_object_field_problem_and_fix() {
    let ok = valid();
    tenancy_from(&Settings::default(), &ok.flavors, &ok.cohorts, &ok.tenants, &[])
        .expect("the valid set is valid");
    assert!(BAD.len() >= 12);
    for case in BAD {
        let mut objects = valid();
        (case.change)(&mut objects);
        let errors = match tenancy_from(
            &Settings::default(),
            &objects.flavors,
            &objects.cohorts,
            &objects.tenants,
            &[],
        ) {
            Ok(_) => panic!("{}: accepted", case.name),
            Err(e) => e,
        };
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(got, case.messages, "{}", case.name);
    }
}

#[test]
fn error_parts() {
    let mut o = valid();
    a100_quota(&mut o).borrowing_limit = Some("-2".into());
    let errors = tenancy_from(&Settings::default(), &o.flavors, &o.cohorts, &o.tenants, &[]).unwrap_err();
    let e = &errors[0];
    assert_eq!(
        (e.kind.as_str(), e.name.as_str(), e.field.as_str()),
        ("Tenant", "team-a", "spec.quotas.a100.borrowingLimit")
    );
    assert_eq!(e.problem, "borrowingLimit is -2; quotas cannot be negative, use 0 or more");
}

/// The same mistake in a tenants file and in the objects: the same problem, word for word.
#[test]
fn same_words_as_the_tenants_file() {
    let head = "flavors: [{name: a100, price: 2.5}, {name: cpu}]\ncohorts: [{name: research}, {name: vision, parent: research}]\ntenants:\n  - name: team-a\n    namespaces: [team-a]\n    cohort: vision\n";
    /// The file's line, the same change to the objects, and (when the messages differ in how to
    /// declare a missing name) the start they share.
    type Case = (&'static str, fn(&mut Objects), &'static str);
    let cases: &[Case] = &[
        (
            "    quotas: {a100: {nominal: 8, borrowingLimit: -2}}",
            |o| a100_quota(o).borrowing_limit = Some("-2".into()),
            "",
        ),
        (
            "    quotas: {a100: {nominal: 8, lendingLimit: 9.5}}",
            |o| a100_quota(o).lending_limit = Some("9.5".into()),
            "",
        ),
        ("    quotas: {a100: {nominal: 2.0001}}", |o| a100_quota(o).nominal = "2.0001".into(), ""),
        (
            "    quotas: {h100: {nominal: 8}}",
            |o| {
                let q = team_a(o).quotas.remove("a100").unwrap();
                team_a(o).quotas.insert("h100".into(), q);
            },
            "unknown flavor `h100` (did you mean `a100`?); declared: a100, cpu; ",
        ),
        ("    weight: -3", |o| team_a(o).weight = Some(-3.0), ""),
        (
            "    cohort: visoin",
            |o| team_a(o).cohort = Some("visoin".into()),
            "unknown cohort `visoin` (did you mean `vision`?); declared: research, vision; ",
        ),
        (
            "    budget: {gpuHoursPerMonth: 1e3}",
            |o| team_a(o).budget = Some(Budget { gpu_hours_per_month: "1e3".into(), when_exhausted: None }),
            "",
        ),
        (
            "    priorityClasses: [batch, batch]",
            |o| team_a(o).priority_classes = Some(vec!["batch".into(), "batch".into()]),
            "",
        ),
        (
            "    prices: {cpu: 1.0000001}",
            |o| {
                team_a(o).prices.insert("cpu".into(), "1.0000001".into());
            },
            "",
        ),
    ];
    for (line, change, prefix) in cases {
        // the file's line replaces its `cohort:` line when it sets the cohort
        let text = if line.contains("cohort:") {
            head.replace("    cohort: vision\n", &format!("{line}\n"))
        } else {
            format!("{head}{line}\n")
        };
        let from_file = file::parse("t.yaml", &text).unwrap_err().problem;
        let mut o = valid();
        change(&mut o);
        let from_objects =
            tenancy_from(&Settings::default(), &o.flavors, &o.cohorts, &o.tenants, &[]).unwrap_err();
        assert_eq!(from_objects.len(), 1, "{line}: {from_objects:?}");
        if prefix.is_empty() {
            assert_eq!(from_objects[0].problem, from_file, "{line}");
        } else {
            // Only the way to declare the missing name differs.
            assert!(
                from_file.starts_with(prefix) && from_objects[0].problem.starts_with(prefix),
                "{line}: {from_file} / {}",
                from_objects[0].problem
            );
        }
    }
}

#[test]
fn flavor_object_names() {
    use gantry_api::crds::flavor_object_name as name;
    assert_eq!(name("A100"), "a100");
    assert_eq!(name("V100M32"), "v100m32");
    assert_eq!(name("NVIDIA A100-SXM4-80GB"), "nvidia-a100-sxm4-80gb");
    assert_eq!(name("Tesla.V100__x"), "tesla-v100-x");
    assert_eq!(name("--"), "flavor");
    assert_eq!(name(&"X".repeat(80)).len(), 63);
}

#[test]
fn tenancies_that_cannot_be_objects() {
    let text = "flavors: [{name: A100}, {name: a100}]\ntenants: [{name: a, namespaces: [a]}]\n";
    let (t, s) = parse_with_settings("t.yaml", text).unwrap();
    assert_eq!(
        tenancy_to_objects(&t, &s).unwrap_err().to_string(),
        "flavors `A100` and `a100` would both be the GpuFlavor `a100` (object names are lowercase letters, digits \
         and '-'); rename one of them"
    );
    let text =
        "flavors: [{name: A100}]\ncohorts: [{name: Research Org}]\ntenants: [{name: a, namespaces: [a]}]\n";
    let (t, s) = parse_with_settings("t.yaml", text).unwrap();
    assert_eq!(tenancy_to_objects(&t, &s).unwrap_err(), NoObjectName::Cohort("Research Org".into()));
    assert_eq!(
        tenancy_to_objects(&t, &s).unwrap_err().to_string(),
        "cohort `Research Org` cannot be the name of a Cohort object; rename it (and its uses) to 1 to 63 lowercase \
         letters, digits and '-', starting and ending with a letter or digit"
    );
}
