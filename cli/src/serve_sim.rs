//! `gantry simulate --tenants FILE --serve ADDR`: the quota API and dashboard over Gantry's run
//! of the multi-tenant simulation, fed as the virtual clock runs: after every step the closed
//! usage records go into an in-memory ledger, and a few times a second the view of the queue is
//! renewed. The clock is paced at `speed` simulated seconds per real second, so a newcomer
//! watches quotas fill, queues form and cost accrue; the service stays up after the run ends.
//!
//! The simulation runs on a thread of its own and the service on the async runtime, so that
//! SIGINT or SIGTERM stops both at once, mid-run: the process exits when the service has closed
//! its connections (within half a second), without waiting for the simulated month to finish.

use gantry_api::view::View;
use gantry_core::model::{ModelCatalog, Node};
use gantry_core::queue::{Accrual, Queue};
use gantry_core::tenancy::{Seconds, Tenancy};
use gantry_quota_api::api::{router, Api};
use gantry_quota_api::auth::StaticTokens;
use gantry_quota_api::ledger::{records_of, Ledger, NotebookStopRecord};
use gantry_sim::multi::timeline::{run_observed, StoppedNotebook, TimelineSpec};
use gantry_sim::multi::SimWorkload;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// A token for this run only: 128 random bits from the standard library's hasher keys.
fn token() -> String {
    let part = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        h.finish()
    };
    format!("{:016x}{:016x}", part(), part())
}

/// How long in-flight requests may take once a signal asks the service to stop.
const STOP_GRACE: Duration = Duration::from_millis(500);

pub fn run(
    tenancy: Tenancy,
    models: ModelCatalog,
    nodes: Vec<Node>,
    workloads: Vec<SimWorkload>,
    spec: TimelineSpec,
    addr: &str,
    speed: f64,
) -> Result<(), String> {
    if !(speed.is_finite() && speed >= 0.0) {
        return Err(format!(
            "--speed {speed} is not a speed; give simulated seconds per real second (0: as fast as it can)"
        ));
    }
    let token = token();
    let tokens = StaticTokens::parse(
        "simulate --serve",
        &format!("tokens:\n  - {{token: \"{token}\", user: admin, admin: true}}\n"),
    )
    .map_err(|e| e.to_string())?;
    let api = Api::new(
        View::empty(spec.start, &tenancy.currency),
        Ledger::in_memory().map_err(|e| e.to_string())?,
        Box::new(tokens),
    );
    // No scheduler runs here: the API exports the queue's metrics itself.
    api.export_queue_metrics(true);
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Installed before the address is announced: a signal sent as soon as it appears stops the
    // service instead of killing the process.
    let stop = {
        let _inside = runtime.enter();
        gantry_serve::stop_signal()
    };
    let days = (spec.end - spec.start) as f64 / 86_400.0;
    let real = if speed > 0.0 {
        format!("about {:.0} s", (spec.end - spec.start) as f64 / speed)
    } else {
        "as fast as it can".into()
    };
    eprintln!(
        "gantry simulate: {} tenants, {} workloads, {days:.1} days at {speed}x ({real})",
        tenancy.tenants.len(),
        workloads.len()
    );
    eprintln!("gantry simulate: dashboard at http://{local}/ (sign in with the token below)");
    eprintln!("gantry simulate: API at http://{local}/api/v1 (Authorization: Bearer {token}); OpenAPI at http://{local}/openapi.json");
    let options = gantry_serve::ServeOptions { shutdown_timeout: STOP_GRACE, ..Default::default() };
    let server = gantry_serve::serve_with(listener, router(api.clone()), None, options, stop);
    let (done, finished) = tokio::sync::oneshot::channel();
    // Not joined: on a signal the process ends with the service, wherever the run is.
    std::thread::spawn(move || {
        let _ = done.send(simulate(&tenancy, &models, &nodes, &workloads, &spec, &api, speed));
    });
    runtime.block_on(async {
        tokio::pin!(server);
        tokio::select! {
            served = &mut server => {
                eprintln!("gantry simulate: stopped before the run ended");
                return served.map_err(|e| e.to_string());
            }
            ran = finished => match ran {
                Ok(Ok(summary)) => eprintln!("gantry simulate: {summary}; still serving (Ctrl-C to stop)"),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("the simulation stopped unexpectedly (see the message above)".into()),
            },
        }
        server.await.map_err(|e| e.to_string())
    })
}

/// Runs the simulation, feeding `api` as the clock goes; a summary of the run.
fn simulate(
    tenancy: &Tenancy,
    models: &ModelCatalog,
    nodes: &[Node],
    workloads: &[SimWorkload],
    spec: &TimelineSpec,
    api: &Api,
    speed: f64,
) -> Result<String, String> {
    let started = Instant::now();
    let mut shown = Instant::now();
    let mut failed: Option<String> = None;
    let mut observe = |q: &Queue, now: Seconds, accruals: &[Accrual], stopped: &[StoppedNotebook]| {
        if failed.is_some() {
            return;
        }
        if !accruals.is_empty() {
            if let Err(e) = api.ledger().append(&records_of(tenancy, accruals)) {
                failed = Some(e.to_string());
            }
        }
        if !stopped.is_empty() {
            let lines: Vec<NotebookStopRecord> =
                stopped.iter().map(|s| notebook_stop_line(tenancy, s, now)).collect();
            if let Err(e) = api.ledger().append_stops(&lines) {
                failed = Some(e.to_string());
            }
        }
        if speed > 0.0 {
            let due = Duration::from_secs_f64((now - spec.start).max(0) as f64 / speed);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                api.set_view(View::of(q, now));
                std::thread::sleep(wait.min(Duration::from_secs(5)));
                shown = Instant::now();
                return;
            }
        }
        if shown.elapsed() >= Duration::from_millis(250) || now >= spec.end {
            api.set_view(View::of(q, now));
            shown = Instant::now();
        }
    };
    let outcome =
        run_observed(tenancy, models, nodes, workloads, spec, &mut observe).map_err(|e| e.to_string())?;
    if let Some(e) = failed {
        return Err(format!("the simulation's usage could not be recorded: {e}"));
    }
    Ok(format!(
        "done in {:.1} s: {} admitted, {} finished, {} waiting at the end",
        started.elapsed().as_secs_f64(),
        outcome.admitted,
        outcome.finished,
        outcome.waiting_at_end
    ))
}

/// The ledger's line for a notebook the simulation stopped: the Notebook is the workload, in its
/// tenant's first namespace (the simulated tenants' workloads have no namespace of their own).
fn notebook_stop_line(tenancy: &Tenancy, s: &StoppedNotebook, now: Seconds) -> NotebookStopRecord {
    let tenant = tenancy.tenants.get(s.stop.tenant);
    let namespace = tenant.and_then(|t| t.namespaces.first()).or(tenant.map(|t| &t.name));
    NotebookStopRecord::of(tenancy, &s.stop, namespace.map_or("", String::as_str), &s.name, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::tenancy::{file, IdleNotebooks};
    use gantry_quota_api::ledger::StopQuery;
    use gantry_sim::bundled;
    use gantry_sim::multi::generate::{generate, GenSpec};
    use gantry_sim::multi::timeline::{run, Setup};
    use gantry_sim::multi::DEFAULT_START;
    use gantry_sim::trace::parse_nodes;

    /// The served run's ledger holds a line for every notebook the idle rule stopped, as the
    /// live scheduler sends them: the same stops as the plain run of the same month slice.
    #[test]
    fn the_served_ledger_has_a_line_for_every_notebook_the_idle_rule_stopped() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tenants/venus.yaml");
        let mut tenancy = file::load(std::path::Path::new(root)).expect("the shipped tenants file loads");
        for t in &mut tenancy.tenants {
            t.idle_notebooks = Some(IdleNotebooks { stop_after: 3600, always: false });
        }
        let (models, nodes) =
            parse_nodes(bundled::VENUS_NODES_NAME, bundled::VENUS_NODES).expect("the bundled cluster");
        let flavors = tenancy.bind(&models).expect("venus flavors");
        let capacity = nodes.iter().map(|n| n.gpu_capacity() as u64).sum();
        let gen = GenSpec { seed: 42, workloads: 1500, start: DEFAULT_START, days: 2.0, load: 1.0 };
        let workloads = generate(&tenancy, &flavors, capacity, &gen).expect("a valid spec");
        let spec = TimelineSpec {
            policy: gantry_core::PolicyKind::Gantry,
            setup: Setup::Gantry,
            start: DEFAULT_START,
            end: DEFAULT_START + 2 * 86_400,
            sample_every: 3600,
        };
        let plain = run(&tenancy, &models, &nodes, &workloads, &spec).expect("the plain run");
        assert!(plain.notebooks.stopped > 0, "the slice stops notebooks");

        let tokens = StaticTokens::parse("t", "tokens: []\n").expect("no tokens");
        let api = Api::new(
            View::empty(spec.start, &tenancy.currency),
            Ledger::in_memory().expect("a ledger"),
            Box::new(tokens),
        );
        simulate(&tenancy, &models, &nodes, &workloads, &spec, &api, 0.0).expect("the served run");
        let query = StopQuery { tenant: None, from: spec.start, to: spec.end + 1, limit: 100_000 };
        let stops = api.ledger().stops(&query).expect("the stops read back");
        assert_eq!(stops.count as usize, plain.notebooks.stopped);
        for s in &stops.stops {
            let tenant = tenancy.tenants.iter().find(|t| t.name == s.tenant).expect("a tenant by name");
            assert_eq!(Some(&s.namespace), tenant.namespaces.first(), "{s:?}");
            assert!(s.idle_since < s.at && s.idle > 0 && s.message.contains("idle for"), "{s:?}");
            assert!(workloads.iter().any(|w| w.workload.name == s.notebook), "{s:?}");
        }
    }
}
