//! The simulator's typed errors read as the strings they replaced, word for word (the CLI prints
//! them), and keep what they wrap.

use gantry_core::tenancy::file;
use gantry_core::PolicyKind;
use gantry_sim::multi::generate::{GenSpec, GenSpecError};
use gantry_sim::multi::openb::{workloads, NoWeightedTenant};
use gantry_sim::multi::timeline::{Setup, UnknownSetup};
use gantry_sim::multi::{simulate_tenants, MultiError, MultiSpec, DEFAULT_START};
use gantry_sim::plot::{check_target, draw_svg, PlotError};
use gantry_sim::report::{Report, TraceInfo};
use gantry_sim::trace::{parse_nodes, Trace};
use std::error::Error as _;
use std::path::Path;

#[test]
fn setup_names() {
    assert_eq!(Setup::parse("strict"), Ok(Setup::StrictQuota));
    let e = Setup::parse("fair").unwrap_err();
    assert_eq!(e, UnknownSetup { name: "fair".into() });
    assert_eq!(e.to_string(), "unknown baseline \"fair\"; use strict-quota or fifo");
}

#[test]
fn generator_spec() {
    let spec = GenSpec { seed: 1, workloads: 10, start: DEFAULT_START, days: 0.0, load: 1.0 };
    assert_eq!(spec.validate(), Err(GenSpecError::Days { days: 0.0 }));
    assert_eq!(
        spec.validate().unwrap_err().to_string(),
        "days is 0; give an arrival window of at least one second"
    );
    let spec = GenSpec { days: 1.0, load: -0.5, ..spec };
    assert_eq!(
        spec.validate().unwrap_err().to_string(),
        "load is -0.5; give a positive fraction of the cluster's GPU capacity"
    );
}

fn venus() -> gantry_core::tenancy::Tenancy {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tenants/venus.yaml");
    file::load(Path::new(root)).expect("the shipped tenants file loads")
}

#[test]
fn a_flavor_no_node_has_is_the_cores_error_unchanged() {
    let tenancy = venus();
    // A cluster of T4s only: none of Venus's GPU flavors is bound.
    let (models, nodes) = parse_nodes("t4.csv", "sn,cpu_milli,memory_mib,gpu,model\nn1,64000,262144,8,T4\n")
        .expect("a one-node cluster parses");
    let unbound = tenancy.bind(&models).expect_err("Venus's flavors are not T4");
    let spec = MultiSpec {
        workload: "none".into(),
        tenants_file: "venus.yaml".into(),
        nodes_file: "t4.csv".into(),
        policy: PolicyKind::Gantry,
        setups: vec![Setup::Gantry],
        start: DEFAULT_START,
        end: DEFAULT_START + 3600,
        sample_every: 3600,
    };
    let e = simulate_tenants(&tenancy, &models, &nodes, &[], &spec).expect_err("refused");
    assert_eq!(e.to_string(), unbound.to_string());
    assert_eq!(e, MultiError::UnboundFlavor(unbound));
}

#[test]
fn a_tenancy_without_weight_gets_no_pods() {
    let mut tenancy = venus();
    for t in &mut tenancy.tenants {
        t.weight = 0.0;
    }
    let (models, nodes) = parse_nodes("n.csv", "sn,cpu_milli,memory_mib,gpu,model\nn1,64000,262144,8,A100\n")
        .expect("a one-node cluster parses");
    let trace = Trace {
        name: "empty".into(),
        nodes_source: "n.csv".into(),
        pods_source: "p.csv".into(),
        models,
        nodes,
        pods: vec![],
    };
    let e = workloads(&trace, &tenancy, 1, DEFAULT_START).unwrap_err();
    assert_eq!(e, NoWeightedTenant);
    assert_eq!(
        e.to_string(),
        "the tenants file has no tenant with a positive weight to give the trace's pods to"
    );
}

#[test]
fn plot_targets() {
    let e = check_target(Path::new("out/figure.png")).unwrap_err();
    assert!(matches!(e, PlotError::NotSvg { .. }));
    assert_eq!(
        e.to_string(),
        "cannot draw out/figure.png: only SVG output is supported; name the file *.svg"
    );

    // A directory that does not exist: the drawing fails when the file is written, and the
    // backend's error is kept as the source.
    let missing = std::env::temp_dir().join(format!("gantry-no-dir-{}", std::process::id())).join("f.svg");
    let report = Report {
        trace: TraceInfo {
            name: "t".into(),
            nodes_file: "n".into(),
            pods_file: "p".into(),
            nodes: 0,
            gpus: 0,
            pods: 0,
            never_fit_pods: 0,
        },
        seeds: vec![],
        inflate_to: 1.0,
        results: vec![],
        wall_seconds: 0.0,
    };
    let e = draw_svg(&report, &missing).unwrap_err();
    assert!(matches!(e, PlotError::Draw { .. }), "{e}");
    let source = e.source().expect("the drawing error is kept");
    assert_eq!(e.to_string(), format!("cannot draw {}: {source}", missing.display()));
}
