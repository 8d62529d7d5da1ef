//! The agent's steady CPU use: the real sampling loop, state, inventory and HTTP service in this
//! process, replaying an 8-GPU, 100-process node every second (no GPU here, so NVML's own time
//! is not included) and scraped every 15 s, for `AGENT_CPU_SECS` (default 60). Baseline in the
//! same run: the same process with one pass an hour, i.e. the runtime and server idling.
//!
//! ```sh
//! cargo bench -p gantry-node-agent --bench agent_cpu
//! ```

// getrusage(2) for the process's CPU time: the one unsafe call, allowed here only.
#![allow(unsafe_code)]

use gantry_node_agent::agent::{self, Outputs, Shared};
use gantry_node_agent::metrics::Options;
use gantry_node_agent::sample::Capture;
use gantry_node_agent::source::{GpuSource, Replay};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[path = "agent_cost.rs"]
#[allow(dead_code)]
mod cost;

/// CPU seconds this process has used (user + system).
fn cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given; nothing else is touched.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Runs the agent for `secs` with passes every `interval`; CPU seconds used per wall second.
fn measure(interval: Duration, secs: u64) -> Result<(f64, u64), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let capture = Capture {
            description: String::new(),
            driver_version: Some("550.90.07".into()),
            frames: vec![cost::node()],
        };
        let (frames, driver) =
            agent::start_sampler(move || Ok(Box::new(Replay::new(capture)?) as Box<dyn GpuSource>), interval)
                .map_err(|e| e.to_string())?;
        let shared = Shared::new(Options {
            node: "gpu-node-1".into(),
            dcgm: true,
            dcgm_hostname_label: "Hostname".into(),
        });
        shared.lock().driver_version = driver;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server =
            tokio::spawn(gantry_serve::serve(listener, agent::router(shared.clone()), None, async {
                let _ = stop_rx.await;
            }));
        let outputs = Outputs { publisher: None, pod_resources: None, print_inventory: false, idle: None };
        let run = tokio::spawn(agent::run(shared.clone(), frames, outputs, std::future::pending()));
        // A Prometheus-like scraper on its own thread.
        let scraper = std::thread::spawn(move || {
            let start = Instant::now();
            let mut scrapes = 0u64;
            while start.elapsed() < Duration::from_secs(secs) {
                if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    let mut out = Vec::new();
                    let _ = s.read_to_end(&mut out);
                    scrapes += 1;
                }
                std::thread::sleep(
                    Duration::from_secs(15).min(Duration::from_secs(secs).saturating_sub(start.elapsed())),
                );
            }
            scrapes
        });
        let (c0, t0) = (cpu(), Instant::now());
        let scrapes = tokio::task::spawn_blocking(move || scraper.join().unwrap_or(0))
            .await
            .map_err(|e| e.to_string())?;
        let used = (cpu() - c0) / t0.elapsed().as_secs_f64();
        let passes = shared.lock().passes;
        run.abort();
        let _ = stop_tx.send(());
        let _ = server.await;
        eprintln!("  {passes} passes, {scrapes} scrapes");
        Ok((used, passes))
    })
}

fn main() -> Result<(), String> {
    let secs: u64 = std::env::var("AGENT_CPU_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    println!("agent CPU over {secs} s (8 GPUs, 100 processes, replayed; scraped every 15 s)");
    let (idle, _) = measure(Duration::from_secs(3600), secs)?;
    let (busy, passes) = measure(Duration::from_secs(1), secs)?;
    println!("| case | passes | CPU (% of one core) |\n|---|---:|---:|");
    println!("| baseline: one pass an hour | 1 | {:.3} % |", idle * 100.0);
    println!("| 1 s interval | {passes} | {:.3} % |", busy * 100.0);
    println!("added by sampling every second: {:.3} % of one core", (busy - idle) * 100.0);
    Ok(())
}
