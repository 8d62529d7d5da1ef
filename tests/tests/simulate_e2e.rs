//! End to end: the real openb trace, cut down so it runs in seconds, through `gantry_sim::simulate`
//! and `replay::run`. Only structural facts are asserted, never which policy wins.

use gantry_core::PolicyKind;
use gantry_sim::replay::{self, RunResult, RunSpec, REPORT_POINTS};
use gantry_sim::report::Report;
use gantry_sim::simulate;
use gantry_sim::trace::Trace;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

const SEEDS: [u64; 2] = [42, 43];
const POLICIES: [PolicyKind; 4] =
    [PolicyKind::Random, PolicyKind::BestFit, PolicyKind::Fgd, PolicyKind::Gantry];

/// Every 10th node of the openb GPU node list and the first 800 pods of the default pod list.
fn small_trace() -> &'static Trace {
    static TRACE: OnceLock<Trace> = OnceLock::new();
    TRACE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../traces/openb");
        let mut t =
            Trace::load(&dir.join("openb_node_list_gpu_node.csv"), &dir.join("openb_pod_list_default.csv"))
                .unwrap();
        t.nodes = t.nodes.into_iter().step_by(10).collect();
        t.pods.truncate(800);
        t
    })
}

fn run_all() -> Report {
    simulate(small_trace(), &POLICIES, &SEEDS, 1.3, &|| {})
}

/// The report as JSON, without the wall-clock fields that differ between runs.
fn without_timings(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|k, _| !k.starts_with("wall_seconds"));
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

fn report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(run_all)
}

#[test]
fn the_subset_is_what_we_asked_for() {
    let t = small_trace();
    assert_eq!((t.nodes.len(), t.pods.len()), (122, 800));
    let info = &report().trace;
    assert_eq!((info.nodes, info.pods, info.gpus), (122, 800, t.gpu_capacity() / 1000));
    assert_eq!(info.never_fit_pods, replay::never_fitting(t).len());
}

#[test]
fn report_has_every_policy_with_sane_values() {
    let r = report();
    assert_eq!(r.seeds, SEEDS);
    assert_eq!(
        r.results.iter().map(|s| s.policy.as_str()).collect::<Vec<_>>(),
        ["random", "best-fit", "fgd", "gantry"]
    );
    for s in &r.results {
        let p = &s.policy;
        assert_eq!(s.seeds, SEEDS, "{p}");
        let arrived: Vec<u32> = s.unallocated_gpu_pct.iter().map(|c| c.arrived).collect();
        assert!(
            arrived.iter().all(|a| REPORT_POINTS.contains(a)) && arrived.windows(2).all(|w| w[0] < w[1]),
            "{p}: {arrived:?}"
        );
        for c in &s.unallocated_gpu_pct {
            let st = c.stats;
            assert!((1..=2).contains(&st.n), "{p}@{}: n = {}", c.arrived, st.n);
            assert!(
                (0.0..=100.0).contains(&st.mean) && (0.0..=100.0).contains(&st.median) && st.sd >= 0.0,
                "{p}@{}: {st:?}",
                c.arrived
            );
        }
        // Inflated to 130 %, every run passes 100 % arrived.
        let at100 = s.unallocated(100).unwrap_or_else(|| panic!("{p}: no value at 100 % arrived"));
        assert_eq!(at100.n, 2, "{p}");
        let frag = s.fragmentation_pct_at_100.unwrap_or_else(|| panic!("{p}: no fragmentation at 100 %"));
        assert!((0.0..=100.0).contains(&frag.mean), "{p}: {frag:?}");
        for (f, n) in s.failed_pods_per_seed.iter().zip(&s.never_fit_pods_per_seed) {
            assert!(n <= f, "{p}: {n} never-fit pods but only {f} failed");
        }
        // You cannot allocate more than has arrived: allocated ≤ arrived, within the bucket's width.
        for &(a, v) in &s.median_curve {
            assert!((0.0..=100.0).contains(&v), "{p}@{a}: {v}");
            assert!(100.0 - v <= a as f64 + 1.51, "{p}@{a}: allocated {} % of capacity", 100.0 - v);
        }
    }
}

/// The facts one run must satisfy whatever the policy.
fn check_run(r: &RunResult, trace: &Trace) {
    let p = r.policy;
    let capacity = trace.gpu_capacity() as f64;
    assert!(r.failed_pods <= r.pods && r.never_fit_pods <= r.failed_pods, "{p}: {r:?}");
    let failed_pct = r.failed_gpu_milli as f64 * 100.0 / capacity;
    let mut last = f64::NEG_INFINITY;
    for (a, v) in r.allocated_by_arrived.iter().enumerate() {
        let Some(alloc) = *v else { continue };
        let a = a as f64;
        // Each logged point has allocated = arrived − failed so far, rounded to 0.01, with arrived
        // within ±0.5 of its bucket (±1.5 where a bucket borrows its neighbours).
        assert!(alloc <= a + 1.51, "{p}@{a}: allocated {alloc} > arrived");
        assert!(alloc >= a - 1.51 - failed_pct, "{p}@{a}: allocated {alloc}, failed only {failed_pct} %");
        // Nothing ever departs, so allocation never goes down.
        assert!(alloc >= last - 1e-9, "{p}@{a}: allocation fell from {last} to {alloc}");
        last = alloc;
        assert_eq!(r.unallocated_at(a as u32), Some(100.0 - alloc));
    }
    assert!(r.allocated_by_arrived[100].is_some(), "{p}: no bucket at 100 %");
    assert_eq!(r.allocated_by_arrived[150], None, "{p}: arrivals stop near 130 %");
    let frag = r.fragmentation_at_100.unwrap();
    assert!((0.0..=100.0).contains(&frag) && (0.0..=100.0).contains(&r.fragmentation_end), "{p}: {frag}");
}

#[test]
fn runs_satisfy_accounting_facts_and_match_the_report() {
    let trace = small_trace();
    let before: u64 = trace.pods.iter().map(|p| p.request.gpu_total()).sum();
    for (i, &policy) in POLICIES.iter().enumerate() {
        let runs: Vec<RunResult> = SEEDS
            .iter()
            .map(|&seed| replay::run(trace, RunSpec { policy, seed, inflate_to: 1.3 }, || {}))
            .collect();
        for r in &runs {
            check_run(r, trace);
            // Inflation appends copies when the trace asks for less than 130 %, and drops pods otherwise.
            if (before as f64) < 1.3 * trace.gpu_capacity() as f64 {
                assert!(r.pods > trace.pods.len(), "{policy}: {} pods", r.pods);
            } else {
                assert!(r.pods <= trace.pods.len(), "{policy}: {} pods", r.pods);
            }
        }
        // The report summarises exactly these runs.
        let s = &report().results[i];
        assert_eq!(
            s.failed_pods_per_seed,
            runs.iter().map(|r| r.failed_pods).collect::<Vec<_>>(),
            "{policy}"
        );
        assert_eq!(
            s.never_fit_pods_per_seed,
            runs.iter().map(|r| r.never_fit_pods).collect::<Vec<_>>(),
            "{policy}"
        );
        let mut at100: Vec<f64> = runs.iter().map(|r| r.unallocated_at(100).unwrap()).collect();
        at100.sort_by(f64::total_cmp);
        assert!((s.unallocated(100).unwrap().median - (at100[0] + at100[1]) / 2.0).abs() < 1e-9, "{policy}");
    }
}

#[test]
fn same_seeds_give_identical_results() {
    let again = run_all();
    assert_eq!(
        without_timings(serde_json::from_str(&report().to_json()).unwrap()),
        without_timings(serde_json::from_str(&again.to_json()).unwrap())
    );
    // And a single run repeated is the same run.
    let spec = RunSpec { policy: PolicyKind::Random, seed: 7, inflate_to: 1.3 };
    let (a, b) = (replay::run(small_trace(), spec, || {}), replay::run(small_trace(), spec, || {}));
    assert_eq!(
        (a.allocated_by_arrived, a.failed_pods, a.pods),
        (b.allocated_by_arrived, b.failed_pods, b.pods)
    );
}

#[test]
fn json_csv_and_table_outputs() {
    let r = report();
    let v: Value = serde_json::from_str(&r.to_json()).expect("the JSON output parses");
    assert_eq!(v["trace"]["nodes"], 122);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), POLICIES.len());
    for (res, kind) in results.iter().zip(POLICIES) {
        assert_eq!(res["policy"], kind.name());
        let curve = res["unallocated_gpu_pct"].as_array().unwrap();
        assert!(!curve.is_empty());
        for point in curve {
            for key in ["arrived", "mean", "sd", "median", "n"] {
                assert!(point[key].is_number(), "{kind}: {point}");
            }
        }
    }

    let csv = r.to_csv();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("trace,policy,seeds,arrived_pct,unallocated_gpu_pct_mean"), "{header}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), r.results.iter().map(|s| s.unallocated_gpu_pct.len()).sum::<usize>());
    for row in rows {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f.len(), header.split(',').count(), "{row}");
        assert_eq!((f[0], f[2]), ("default", "2"), "{row}");
        assert!(POLICIES.iter().any(|k| k.name() == f[1]), "{row}");
    }

    let table = r.to_table();
    assert!(
        table.contains("122 nodes") && table.contains("800 pods") && table.contains("2 seeds (42-43)"),
        "{table}"
    );
    for k in POLICIES {
        assert!(table.contains(k.name()), "{table}");
    }
}
