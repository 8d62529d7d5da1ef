//! The multi-tenant simulation end to end, on the shipped Venus tenants and cluster: the
//! properties the product promises, checked on a small generated month slice.

use gantry_core::tenancy::{file, IdleNotebooks};
use gantry_core::PolicyKind;
use gantry_sim::bundled;
use gantry_sim::multi::generate::{generate, GenSpec};
use gantry_sim::multi::summary::SetupSummary;
use gantry_sim::multi::timeline::Setup;
use gantry_sim::multi::{simulate_tenants, MultiSpec, DEFAULT_START};
use gantry_sim::trace::parse_nodes;

fn run(seed: u64) -> Vec<SetupSummary> {
    run_with(seed, None, vec![Setup::Gantry, Setup::StrictQuota, Setup::Fifo])
}

/// The Venus tenants, each with `idle` as its `idleNotebooks` rule.
fn run_with(seed: u64, idle: Option<IdleNotebooks>, setups: Vec<Setup>) -> Vec<SetupSummary> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tenants/venus.yaml");
    let mut tenancy = file::load(std::path::Path::new(root)).expect("the shipped tenants file loads");
    for t in &mut tenancy.tenants {
        t.idle_notebooks = idle;
    }
    let (models, nodes) =
        parse_nodes(bundled::VENUS_NODES_NAME, bundled::VENUS_NODES).expect("the bundled cluster parses");
    let flavors = tenancy.bind(&models).expect("venus flavors match the venus cluster");
    let capacity = nodes.iter().map(|n| n.gpu_capacity() as u64).sum();
    let days = 4.0;
    let spec = GenSpec { seed, workloads: 3000, start: DEFAULT_START, days, load: 1.0 };
    let workloads = generate(&tenancy, &flavors, capacity, &spec).expect("a valid generator spec");
    let multi = MultiSpec {
        workload: "test".into(),
        tenants_file: "venus.yaml".into(),
        nodes_file: bundled::VENUS_NODES_NAME.into(),
        policy: PolicyKind::Gantry,
        setups,
        start: DEFAULT_START,
        end: DEFAULT_START + (days * 86400.0) as i64,
        sample_every: 3600,
    };
    simulate_tenants(&tenancy, &models, &nodes, &workloads, &multi).expect("simulation runs").setups
}

#[test]
fn guarantees_hold_idle_capacity_is_used_and_the_ledger_is_exact() {
    for seed in [1, 2] {
        let s = run(seed);
        let (gantry, strict, fifo) = (&s[0], &s[1], &s[2]);
        for x in &s {
            assert!(
                x.ledger_exact,
                "{:?} seed {seed}: accrued GPU time equals the integral of allocation",
                x.setup
            );
        }
        assert_eq!(gantry.violations, 0, "seed {seed}: {:?}", gantry.violation_examples);
        assert!(
            gantry.worst_owed_wait <= 900,
            "seed {seed}: worst owed wait {} s is within window + minimum runtime",
            gantry.worst_owed_wait
        );
        assert!(
            gantry.mean_allocated_pct > strict.mean_allocated_pct + 10.0,
            "seed {seed}: borrowing fills idle quota: {:.1} vs {:.1}",
            gantry.mean_allocated_pct,
            strict.mean_allocated_pct
        );
        assert!(gantry.delays.p95 < strict.delays.p95, "seed {seed}: borrowing shortens waits");
        assert!(strict.tenants.iter().all(|t| t.borrowed_gpu_hours == 0.0), "strict quota never borrows");
        assert_eq!(strict.reclaims, 0, "nothing is borrowed, so nothing is reclaimed");
        assert_eq!(fifo.preemptions, 0, "FIFO never preempts");
        assert!(fifo.violations > 0, "seed {seed}: FIFO ignores guarantees, which this workload exposes");
    }
}

#[test]
fn idle_notebooks_give_their_gpus_back_and_nothing_else_is_stopped() {
    let rule = |always| Some(IdleNotebooks { stop_after: 3600, always });
    for seed in [1, 2] {
        let off = &run_with(seed, None, vec![Setup::Gantry])[0];
        let waits = &run_with(seed, rule(false), vec![Setup::Gantry])[0];
        let always = &run_with(seed, rule(true), vec![Setup::Gantry])[0];
        assert_eq!(off.notebooks.stopped, 0, "seed {seed}: no rule, no stop");
        assert!(off.notebooks.idle_held_gpu_hours > 0.0, "seed {seed}: the generated notebooks sit idle");
        for (x, what) in [(waits, "work-waits"), (always, "always")] {
            let nb = &x.notebooks;
            assert!(x.ledger_exact, "seed {seed} {what}: the ledger stays exact");
            assert!(nb.stopped > 0, "seed {seed} {what}: idle notebooks are stopped");
            assert_eq!(
                nb.stopped_not_notebook, 0,
                "seed {seed} {what}: serving, training and steps never are"
            );
            assert!(nb.given_back_gpu_hours > 0.0);
            assert!(
                nb.idle_held_gpu_hours < off.notebooks.idle_held_gpu_hours,
                "seed {seed} {what}: less idle GPU time held: {:.0} vs {:.0} GPU-h",
                nb.idle_held_gpu_hours,
                off.notebooks.idle_held_gpu_hours
            );
            assert_eq!(x.violations, 0, "seed {seed} {what}: guarantees still hold");
        }
        assert!(
            always.notebooks.stopped >= waits.notebooks.stopped,
            "seed {seed}: always stops at least as many"
        );
    }
}
