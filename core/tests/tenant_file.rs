//! The tenants-file parser: exact values of a good file, defaults, one refusal per rule (with its
//! line, field and the words of the fix), the example files, and no panic on truncated input.

use gantry_core::tenancy::file::{load, parse, TenantFileError};
use gantry_core::tenancy::{
    Budget, Cohort, Flavor, FlavorQuota, IdleNotebooks, Kind, PreemptionPolicy, PriorityClass,
    ReclaimWithinCohort, Tenancy, Tenant, Timing, WhenCanPreempt, WhenExhausted, WithinTenant,
};
use std::path::Path;

const GOOD: &str = r#"# Gantry tenants file
currency: EUR
timing:
  reclaimWindow: 90s
  minRuntime: 2h
flavors:
  - name: A100
    price: 2.50
  - name: V100M32
  - name: cpu
    price: 0.03
priorityClasses:
  - {name: batch, value: 100}
  - {name: training, value: 300}
  - {name: high, value: 2000}
kindPriorities:
  serving: high
cohorts:
  - name: research
  - name: vision
    parent: research
tenants:
  - name: team-a
    namespaces: [team-a, team-a-dev]
    cohort: vision
    weight: 2
    priorityClasses: [batch, training, high]
    kindPriorities: {notebook: batch}
    quotas:
      A100: {nominal: 16, borrowingLimit: 8, lendingLimit: 8}
      V100M32: {nominal: 2.5}
      cpu: {nominal: "2500m"}
    prices: {A100: 3.10}
    budget: {gpuHoursPerMonth: 5000, whenExhausted: refuse}
    idleNotebooks: {stopAfter: 2h}
  - name: team-b
    namespaces: [team-b]
    quotas:
      V100M32: {nominal: "2500m", lendingLimit: 0}
    budget: {gpuHoursPerMonth: 0.5}
    idleNotebooks: {stopAfter: 30m, when: always}
    preemption:
      withinTenant: LowerOrNewerEqualPriority
      reclaimWithinCohort: LowerPriority
      borrowWithinCohort: {policy: LowerPriority, maxPriorityThreshold: 100}
      whenCanPreempt: Preempt
"#;

fn quota(nominal: u64, borrowing_limit: Option<u64>, lending_limit: Option<u64>) -> FlavorQuota {
    FlavorQuota { nominal, borrowing_limit, lending_limit }
}

#[test]
fn good_file_parses_to_exact_values() {
    let class = |name: &str, value| PriorityClass { name: name.into(), value };
    let expected = Tenancy {
        flavors: vec![
            Flavor { name: "A100".into(), price_micros: 2_500_000, sharing: false },
            Flavor { name: "V100M32".into(), price_micros: 0, sharing: false },
            Flavor { name: "cpu".into(), price_micros: 30_000, sharing: false },
        ],
        cohorts: vec![
            Cohort { name: "research".into(), parent: None },
            Cohort { name: "vision".into(), parent: Some(0) },
        ],
        tenants: vec![
            Tenant {
                name: "team-a".into(),
                namespaces: vec!["team-a".into(), "team-a-dev".into()],
                cohort: Some(1),
                quotas: vec![
                    quota(16_000, Some(8_000), Some(8_000)),
                    quota(2_500, None, None),
                    quota(2_500, None, None),
                ],
                weight: 2.0,
                allowed_classes: vec![0, 1, 2],
                // training, pipeline-step, notebook (overridden), serving (file-wide), batch
                kind_classes: [1, 1, 0, 2, 0],
                prices_micros: vec![3_100_000, 0, 30_000],
                budget: Some(Budget {
                    milli_gpu_seconds: 5000 * 3_600_000,
                    when_exhausted: WhenExhausted::Refuse,
                }),
                preemption: PreemptionPolicy::default(),
                idle_notebooks: Some(IdleNotebooks { stop_after: 7200, always: false }),
            },
            Tenant {
                name: "team-b".into(),
                namespaces: vec!["team-b".into()],
                cohort: None,
                quotas: vec![FlavorQuota::default(), quota(2_500, None, Some(0)), FlavorQuota::default()],
                weight: 1.0,
                allowed_classes: vec![0, 1, 2],
                kind_classes: [1, 1, 1, 2, 0],
                prices_micros: vec![2_500_000, 0, 30_000],
                budget: Some(Budget {
                    milli_gpu_seconds: 1_800_000,
                    when_exhausted: WhenExhausted::IdleOnly,
                }),
                preemption: PreemptionPolicy {
                    within_tenant: WithinTenant::LowerOrNewerEqualPriority,
                    reclaim_within_cohort: ReclaimWithinCohort::LowerPriority,
                    borrow_within_cohort: Some(100),
                    when_can_preempt: WhenCanPreempt::Preempt,
                },
                idle_notebooks: Some(IdleNotebooks { stop_after: 1800, always: true }),
            },
        ],
        priority_classes: vec![class("batch", 100), class("training", 300), class("high", 2000)],
        timing: Timing { reclaim_window: 90, min_runtime: 7200 },
        currency: "EUR".into(),
    };
    assert_eq!(parse("good.yaml", GOOD), Ok(expected));
}

/// The smallest valid file: one flavor, one tenant. Cases below append lines to it, so the first
/// appended line is line 5.
const HEAD: &str = "flavors:\n  - {name: A100, price: 2.5}\n  - {name: cpu}\ntenants:\n";

fn with_head(lines: &[&str]) -> String {
    format!("{HEAD}{}\n", lines.join("\n"))
}

#[test]
fn defaults() {
    let t = parse("min.yaml", &with_head(&["  - {name: team-a, namespaces: [team-a]}"])).unwrap();
    assert_eq!(t.currency, "USD");
    assert_eq!(t.timing, Timing { reclaim_window: 300, min_runtime: 600 });
    let builtin: Vec<(String, i32)> =
        Kind::ALL.iter().map(|k| (k.name().to_string(), k.default_priority())).collect();
    let got: Vec<(String, i32)> = t.priority_classes.iter().map(|c| (c.name.clone(), c.value)).collect();
    assert_eq!(got, builtin);
    let tenant = &t.tenants[0];
    assert_eq!(tenant.kind_classes, [0, 1, 2, 3, 4]);
    assert_eq!(tenant.allowed_classes, vec![0, 1, 2, 3, 4]);
    assert_eq!(tenant.quotas, vec![FlavorQuota::default(); 2]);
    assert_eq!(tenant.prices_micros, vec![2_500_000, 0]);
    assert_eq!((tenant.weight, tenant.cohort, tenant.budget), (1.0, None, None));
    assert!(t.cohorts.is_empty());
}

#[test]
fn units_and_durations() {
    let t = parse(
        "units.yaml",
        &with_head(&[
            "  - name: team-a",
            "    namespaces: [team-a]",
            "    quotas:",
            "      A100: {nominal: \"2500m\", borrowingLimit: 0.125, lendingLimit: 2.500}",
            "      cpu: {nominal: 64}",
            "    prices: {A100: 0.000001, cpu: 12}",
            "timing: {reclaimWindow: 5m, minRuntime: 45}",
        ]),
    )
    .unwrap();
    assert_eq!(t.tenants[0].quotas, vec![quota(2_500, Some(125), Some(2_500)), quota(64_000, None, None)]);
    assert_eq!(t.tenants[0].prices_micros, vec![1, 12_000_000]);
    assert_eq!(t.timing, Timing { reclaim_window: 300, min_runtime: 45 });
    let t = parse(
        "d.yaml",
        &with_head(&["  - {name: a, namespaces: [a]}", "timing: {reclaimWindow: 1d, minRuntime: 3h}"]),
    );
    assert_eq!(t.unwrap().timing, Timing { reclaim_window: 86_400, min_runtime: 10_800 });
}

/// Classes not named after a kind: each kind gets the class closest to its default priority,
/// ties to the lower value.
#[test]
fn kind_classes_by_closest_value() {
    let text = with_head(&[
        "  - {name: team-a, namespaces: [team-a]}",
        "priorityClasses: [{name: low, value: 400}, {name: top, value: 600}, {name: max, value: 5000}]",
    ]);
    let t = parse("k.yaml", &text).unwrap();
    // training 300 -> low; pipeline-step 500 ties -> low (400); notebook 800 -> top;
    // serving 1000 -> top; batch 100 -> low.
    assert_eq!(t.tenants[0].kind_classes, [0, 0, 1, 1, 0]);
}

/// One bad file: its text, and the expected line, field and words of the message.
struct Bad {
    name: &'static str,
    text: String,
    line: Option<usize>,
    field: &'static str,
    words: &'static [&'static str],
}

fn bad(
    name: &'static str,
    lines: &[&str],
    line: usize,
    field: &'static str,
    words: &'static [&'static str],
) -> Bad {
    Bad { name, text: with_head(lines), line: Some(line), field, words }
}

fn bad_raw(
    name: &'static str,
    text: &str,
    line: usize,
    field: &'static str,
    words: &'static [&'static str],
) -> Bad {
    Bad { name, text: text.to_string(), line: Some(line), field, words }
}

const TEAM_A: &str = "  - name: team-a";
const NS_A: &str = "    namespaces: [team-a]";

fn bad_cases() -> Vec<Bad> {
    vec![
        bad(
            "idle notebooks without stopAfter",
            &[TEAM_A, NS_A, "    idleNotebooks: {when: always}"],
            7,
            "tenants[0].idleNotebooks.stopAfter",
            &["e.g. `stopAfter: 2h`"],
        ),
        bad(
            "idle notebooks stopped after seconds",
            &[TEAM_A, NS_A, "    idleNotebooks: {stopAfter: 30s}"],
            7,
            "tenants[0].idleNotebooks.stopAfter",
            &["under a minute", "at least `1m`"],
        ),
        bad(
            "idle notebooks with an unknown condition",
            &[TEAM_A, NS_A, "    idleNotebooks: {stopAfter: 1h, when: sometimes}"],
            7,
            "tenants[0].idleNotebooks.when",
            &["`sometimes`", "`work-waits`", "`always`"],
        ),
        bad(
            "unknown flavor",
            &[TEAM_A, NS_A, "    quotas:", "      H100: {nominal: 8}"],
            8,
            "tenants[0].quotas.H100",
            &["unknown flavor `H100`", "A100, cpu", "declare it under `flavors`"],
        ),
        bad(
            "negative quota",
            &[TEAM_A, NS_A, "    quotas:", "      A100: {nominal: -4}"],
            8,
            "tenants[0].quotas.A100.nominal",
            &["nominal is -4; quotas cannot be negative"],
        ),
        bad(
            "lending above nominal",
            &[TEAM_A, NS_A, "    quotas:", "      A100: {nominal: 8, lendingLimit: 12}"],
            8,
            "tenants[0].quotas.A100.lendingLimit",
            &[
                "lendingLimit 12 is above nominal 8; a tenant can lend at most its nominal quota",
                "lower lendingLimit",
            ],
        ),
        bad(
            "namespace in two tenants",
            &[
                TEAM_A,
                "    namespaces: [team-a, shared]",
                "  - name: team-b",
                "    namespaces:",
                "      - team-b",
                "      - shared",
            ],
            10,
            "tenants[1].namespaces[1]",
            &["`shared`", "team-a", "team-b", "one tenant only", "remove it"],
        ),
        bad(
            "cohort cycle",
            &[TEAM_A, NS_A, "cohorts:", "  - {name: a, parent: b}", "  - {name: b, parent: a}"],
            8,
            "cohorts[0].parent",
            &["cohort cycle: a -> b -> a; remove one parent"],
        ),
        bad(
            "cohort is its own parent",
            &[TEAM_A, NS_A, "cohorts:", "  - {name: a, parent: a}"],
            8,
            "cohorts[0].parent",
            &["cohort cycle: a -> a"],
        ),
        bad(
            "unknown key typo",
            &[TEAM_A, NS_A, "    quotas:", "      A100: {nominal: 8, borowingLimit: 4}"],
            8,
            "tenants[0].quotas.A100.borowingLimit",
            &["unknown key", "did you mean `borrowingLimit`?", "lendingLimit"],
        ),
        bad(
            "unknown top-level key",
            &[TEAM_A, NS_A, "cohort:", "  - name: a"],
            7,
            "cohort",
            &["unknown key `cohort`", "did you mean `cohorts`?"],
        ),
        bad(
            "too many decimals",
            &[TEAM_A, NS_A, "    quotas:", "      A100: {nominal: 2.5005}"],
            8,
            "tenants[0].quotas.A100.nominal",
            &["too many decimals", "at most 3 decimals", "\"2500m\""],
        ),
        bad(
            "quantity not a number",
            &[TEAM_A, NS_A, "    quotas:", "      A100: {nominal: eight}"],
            8,
            "tenants[0].quotas.A100.nominal",
            &["not a number", "such as 2.5"],
        ),
        bad(
            "missing namespaces",
            &[TEAM_A, "    weight: 1"],
            5,
            "tenants[0].namespaces",
            &["missing required key `namespaces`", "namespaces: [team-a]"],
        ),
        bad(
            "missing nominal",
            &[TEAM_A, NS_A, "    quotas:", "      A100: {lendingLimit: 1}"],
            8,
            "tenants[0].quotas.A100.nominal",
            &["missing required key `nominal`"],
        ),
        bad(
            "quota without nominal key",
            &[TEAM_A, NS_A, "    quotas: {A100: 8}"],
            7,
            "tenants[0].quotas.A100",
            &["expected a mapping", "`{nominal: 8}`"],
        ),
        bad(
            "wrong type",
            &[TEAM_A, NS_A, "    weight: [1]"],
            7,
            "tenants[0].weight",
            &["expected a single value, found a list"],
        ),
        bad("weight zero", &[TEAM_A, NS_A, "    weight: 0"], 7, "tenants[0].weight", &["greater than 0"]),
        bad(
            "weight not finite",
            &[TEAM_A, NS_A, "    weight: inf"],
            7,
            "tenants[0].weight",
            &["greater than 0"],
        ),
        bad(
            "duplicate tenant",
            &[TEAM_A, NS_A, "  - name: team-a", "    namespaces: [other]"],
            7,
            "tenants[1].name",
            &["tenant `team-a` is declared twice", "tenants[0]", "rename or remove one"],
        ),
        bad(
            "bad tenant name",
            &["  - name: Team_A", NS_A],
            5,
            "tenants[0].name",
            &["`Team_A` is not a valid name", "lowercase letters, digits and '-'"],
        ),
        bad(
            "namespace twice in one tenant",
            &[TEAM_A, "    namespaces: [team-a, team-a]"],
            6,
            "tenants[0].namespaces[1]",
            &["listed twice for tenant `team-a`"],
        ),
        bad(
            "cohort parent missing",
            &[TEAM_A, NS_A, "cohorts:", "  - name: a", "  - {name: b, parent: root}"],
            9,
            "cohorts[1].parent",
            &["unknown cohort `root`", "declared: a, b", "declare it under `cohorts`"],
        ),
        bad(
            "duplicate cohort",
            &[TEAM_A, NS_A, "cohorts:", "  - name: a", "  - name: a"],
            9,
            "cohorts[1].name",
            &["cohort `a` is declared twice"],
        ),
        bad(
            "tenant cohort missing",
            &[TEAM_A, NS_A, "    cohort: visoin", "cohorts: [{name: vision}]"],
            7,
            "tenants[0].cohort",
            &["unknown cohort `visoin`", "did you mean `vision`?"],
        ),
        bad(
            "unknown kind",
            &[TEAM_A, NS_A, "kindPriorities:", "  trainng: batch"],
            8,
            "kindPriorities.trainng",
            &["unknown kind `trainng`", "did you mean `training`?", "pipeline-step"],
        ),
        bad(
            "unknown class in kindPriorities",
            &[TEAM_A, NS_A, "kindPriorities: {serving: urgent}"],
            7,
            "kindPriorities.serving",
            &["unknown priority class `urgent`", "declare it under `priorityClasses`"],
        ),
        bad(
            "unknown class in tenant",
            &[TEAM_A, NS_A, "    priorityClasses: [batch, gold]"],
            7,
            "tenants[0].priorityClasses[1]",
            &["unknown priority class `gold`", "serving"],
        ),
        bad(
            "default kind class not allowed",
            &[TEAM_A, NS_A, "    priorityClasses: [batch]"],
            7,
            "tenants[0].priorityClasses",
            &["kind training", "`training`", "add `training` to priorityClasses", "kindPriorities.training"],
        ),
        bad(
            "override class not allowed",
            &[
                TEAM_A,
                NS_A,
                "    priorityClasses: [training, pipeline-step, notebook, serving, batch]",
                "priorityClasses:",
                "  - {name: training, value: 1}",
                "  - {name: pipeline-step, value: 2}",
                "  - {name: notebook, value: 3}",
                "  - {name: serving, value: 4}",
                "  - {name: batch, value: 5}",
                "  - {name: vip, value: 6}",
                "kindPriorities: {serving: vip}",
            ],
            7,
            "tenants[0].priorityClasses",
            &["kind serving", "`vip`", "add `vip` to priorityClasses"],
        ),
        bad(
            "tenant override not allowed",
            &[
                TEAM_A,
                NS_A,
                "    priorityClasses: [training, pipeline-step, notebook, serving, batch]",
                "    kindPriorities: {batch: vip}",
                "priorityClasses:",
                "  - {name: training, value: 1}",
                "  - {name: pipeline-step, value: 2}",
                "  - {name: notebook, value: 3}",
                "  - {name: serving, value: 4}",
                "  - {name: batch, value: 5}",
                "  - {name: vip, value: 6}",
            ],
            8,
            "tenants[0].kindPriorities.batch",
            &["class `vip` is not in this tenant's priorityClasses", "add `vip`"],
        ),
        bad(
            "duplicate class",
            &[TEAM_A, NS_A, "priorityClasses:", "  - {name: low, value: 1}", "  - {name: low, value: 2}"],
            9,
            "priorityClasses[1].name",
            &["priority class `low` is declared twice"],
        ),
        bad(
            "class value out of range",
            &[TEAM_A, NS_A, "priorityClasses:", "  - {name: low, value: 3000000000}"],
            8,
            "priorityClasses[0].value",
            &["outside the 32-bit range", "2147483647"],
        ),
        bad(
            "empty class list",
            &[TEAM_A, NS_A, "priorityClasses: []"],
            7,
            "priorityClasses",
            &["empty", "remove the key to use the built-in classes"],
        ),
        bad(
            "negative price",
            &[TEAM_A, NS_A, "    prices: {A100: -1}"],
            7,
            "tenants[0].prices.A100",
            &["price is -1; prices cannot be negative"],
        ),
        bad(
            "unknown flavor in prices",
            &[TEAM_A, NS_A, "    prices: {V100: 1}"],
            7,
            "tenants[0].prices.V100",
            &["unknown flavor `V100`"],
        ),
        bad(
            "budget when exhausted",
            &[TEAM_A, NS_A, "    budget: {gpuHoursPerMonth: 10, whenExhausted: stop}"],
            7,
            "tenants[0].budget.whenExhausted",
            &["unknown value `stop`", "idle-only", "refuse"],
        ),
        bad(
            "bad duration",
            &[TEAM_A, NS_A, "timing:", "  minRuntime: 10 minutes"],
            8,
            "timing.minRuntime",
            &["not a duration", "5m"],
        ),
        bad("empty tenants", &["  []"], 5, "tenants", &["empty", "at least one tenant"]),
        bad(
            "duplicate key",
            &[TEAM_A, NS_A, "    name: team-b"],
            7,
            "name",
            &["key `name` appears twice", "line 5", "remove one"],
        ),
        bad(
            "yaml syntax",
            &[TEAM_A, "    namespaces: team-a: x"],
            6,
            "",
            &["YAML syntax error", "indentation"],
        ),
        bad("yaml anchors", &[TEAM_A, "    namespaces: &ns [team-a]"], 6, "", &["anchors", "not supported"]),
        bad_raw(
            "duplicate flavor",
            "flavors:\n  - name: A100\n  - name: A100\ntenants: [{name: a, namespaces: [a]}]\n",
            3,
            "flavors[1].name",
            &["flavor `A100` is declared twice", "flavors[0]"],
        ),
        bad_raw(
            "empty flavors",
            "flavors: []\ntenants: [{name: a, namespaces: [a]}]\n",
            1,
            "flavors",
            &["empty", "list the GPU models"],
        ),
        bad_raw(
            "missing flavors",
            "\ntenants: [{name: a, namespaces: [a]}]\n",
            2,
            "flavors",
            &["missing required key `flavors`"],
        ),
        bad(
            "unknown preemption word",
            &[TEAM_A, NS_A, "    preemption: {withinTenant: Lower}"],
            7,
            "tenants[0].preemption.withinTenant",
            &["unknown withinTenant `Lower`", "`Never`, `LowerPriority`, `LowerOrNewerEqualPriority`"],
        ),
        bad(
            "unknown preemption key",
            &[TEAM_A, NS_A, "    preemption: {reclaim: Any}"],
            7,
            "tenants[0].preemption.reclaim",
            &["reclaimWithinCohort"],
        ),
        bad(
            "borrowing threshold without a policy",
            &[TEAM_A, NS_A, "    preemption:", "      borrowWithinCohort: {maxPriorityThreshold: 100}"],
            8,
            "tenants[0].preemption.borrowWithinCohort.maxPriorityThreshold",
            &["needs `policy: LowerPriority`"],
        ),
        bad(
            "borrowing threshold not a number",
            &[
                TEAM_A,
                NS_A,
                "    preemption:",
                "      borrowWithinCohort: {policy: LowerPriority, maxPriorityThreshold: high}",
            ],
            8,
            "tenants[0].preemption.borrowWithinCohort.maxPriorityThreshold",
            &["not a priority value", "whole number"],
        ),
        bad_raw("top level list", "- flavors\n", 1, "", &["must be a mapping"]),
    ]
}

#[test]
fn refusals_name_line_field_and_fix() {
    let cases = bad_cases();
    assert!(cases.len() >= 40);
    for case in &cases {
        let e = match parse("bad.yaml", &case.text) {
            Ok(_) => panic!("{}: accepted:\n{}", case.name, case.text),
            Err(e) => e,
        };
        assert_eq!((e.line, e.field.as_str()), (case.line, case.field), "{}: {e}", case.name);
        assert_eq!(e.file, "bad.yaml", "{}", case.name);
        for word in case.words {
            assert!(e.problem.contains(word), "{}: {:?} lacks {word:?}", case.name, e.problem);
        }
    }
}

#[test]
fn error_display() {
    let e = TenantFileError {
        file: "t.yaml".into(),
        line: Some(8),
        field: "tenants[0].weight".into(),
        problem: "p".into(),
    };
    assert_eq!(e.to_string(), "t.yaml:8: tenants[0].weight: p");
    let e = TenantFileError { file: "t.yaml".into(), line: None, field: String::new(), problem: "p".into() };
    assert_eq!(e.to_string(), "t.yaml: p");
    let e = parse("x.yaml", &with_head(&[TEAM_A, NS_A, "    weight: -1"])).unwrap_err();
    assert!(e.to_string().starts_with("x.yaml:7: tenants[0].weight: weight is -1;"), "{e}");
}

#[test]
fn load_reads_files_and_reports_io_errors() {
    let e = load(Path::new("/nonexistent/tenants.yaml")).unwrap_err();
    assert_eq!((e.file.as_str(), e.line, e.field.as_str()), ("/nonexistent/tenants.yaml", None, ""));
    assert!(e.problem.contains("cannot read"), "{e}");
}

/// Every prefix of a good file either parses or is refused; none panics.
#[test]
fn truncated_input_never_panics() {
    for (i, _) in GOOD.char_indices() {
        let _ = parse("cut.yaml", &GOOD[..i]);
    }
}

/// Per example file: the GPU capacity of its cluster per flavor (nominal quotas must add up to it).
const EXAMPLES: &[(&str, &[(&str, u64)])] = &[
    ("venus.yaml", &[("A100", 616), ("V100M32", 352)]),
    (
        "openb.yaml",
        &[
            ("G2", 4392),
            ("T4", 842),
            ("G3", 312),
            ("P100", 265),
            ("V100M32", 204),
            ("V100M16", 195),
            ("A10", 2),
        ],
    ),
    ("scale-100.yaml", &[("A100", 20_000), ("V100M32", 20_000)]),
];

#[test]
fn example_files_parse_and_quotas_match_their_clusters() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tenants");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let t = load(&path).unwrap_or_else(|e| panic!("{e}"));
        seen += 1;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some((_, capacity)) = EXAMPLES.iter().find(|(n, _)| *n == name) else { continue };
        for (flavor, gpus) in *capacity {
            let f = t.flavor(flavor).unwrap();
            let total: u64 = t.tenants.iter().map(|x| x.quotas[f].nominal).sum();
            assert_eq!(total, gpus * 1000, "{name}: {flavor}");
        }
    }
    assert!(seen >= EXAMPLES.len(), "found {seen} example files in {}", dir.display());
}

#[test]
fn example_details() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tenants");
    let venus = load(&dir.join("venus.yaml")).unwrap();
    assert_eq!(venus.tenants.len(), 18);
    let sizes: Vec<f64> = venus.tenants.iter().map(|t| t.weight).collect();
    let expected = [160, 80, 72, 72, 64, 64, 64, 64, 64, 56, 48, 48, 32, 32, 16, 16, 8, 8];
    assert_eq!(sizes, expected.map(f64::from));
    let cpu = venus.cpu_flavor().unwrap();
    assert!(venus.tenants.iter().all(|t| t.quotas[cpu].nominal as f64 == t.weight * 2000.0));
    let openb = load(&dir.join("openb.yaml")).unwrap();
    let cpu = openb.cpu_flavor().unwrap();
    assert_eq!(openb.tenants.iter().map(|t| t.quotas[cpu].nominal).sum::<u64>(), 125_514_000);
    let scale = load(&dir.join("scale-100.yaml")).unwrap();
    assert_eq!((scale.tenants.len(), scale.cohorts.len()), (100, 5));
}

#[test]
fn checking_a_file_lists_every_problem_and_leaves_parse_stopping_at_the_first() {
    let text = "flavors: [{name: A100, colour: red}]\ntenants:\n  - {name: a, namespaces: [a], quotas: {H100: {nominal: 1}}}\n  - {name: b}\n";
    let (parsed, errors) = gantry_core::tenancy::file::check("t.yaml", text);
    assert!(parsed.is_none());
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["flavors[0].colour", "tenants[0].quotas.H100", "tenants[1].namespaces"],
        "{errors:?}"
    );
    // The same thread parses as before: one error, the first the reading meets.
    let first = gantry_core::tenancy::file::parse("t.yaml", text).unwrap_err();
    assert_eq!(first.field, "flavors[0].colour");
}
