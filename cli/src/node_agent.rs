//! `gantry node-agent`: the per-node GPU agent. On a GPU node it reads NVML; with
//! `--source replay:FILE` it replays a recorded capture and needs no GPU and no API server.

use clap::Args;
use gantry_node_agent::agent::{self, Outputs, Shared};
use gantry_node_agent::idle;
use gantry_node_agent::inventory::Publisher;
use gantry_node_agent::metrics::Options;
use gantry_node_agent::nvml::NvmlSource;
use gantry_node_agent::sample::Capture;
use gantry_node_agent::source::{GpuSource, OpenError, Replay};
use gantry_serve::TlsFiles;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct NodeAgentArgs {
    /// Where GPU samples come from: `nvml` (the driver's library), or `replay:FILE` (a capture
    /// recorded with --record, replayed one frame per interval).
    #[arg(long, value_name = "SOURCE", default_value = "nvml")]
    source: String,
    /// Address to serve /metrics, /v1/gpus, /v1/utilization, /healthz and /readyz on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9400")]
    listen: String,
    /// Seconds between sampling passes (fractions allowed, at least 0.05).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    interval: f64,
    /// This node's name: the inventory is written on this Node. Default: $NODE_NAME. Without
    /// either, nothing is written (no API server needed).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Also write dcgm-exporter's metric names, units and labels (DCGM_FI_DEV_*). Leave off
    /// where dcgm-exporter already runs, or every dashboard panel doubles.
    #[arg(long)]
    dcgm_compat: bool,
    /// The host label's key on DCGM families (released dcgm-exporter 4.x: Hostname).
    #[arg(long, value_name = "KEY", default_value = "Hostname")]
    dcgm_hostname_label: String,
    /// The kubelet's pod-resources socket, for per-pod attribution; `none` to turn it off.
    #[arg(long, value_name = "PATH", default_value = gantry_node_agent::podresources::DEFAULT_SOCKET)]
    pod_resources_socket: String,
    /// Print the GPU inventory (JSON) to stdout at start and whenever it changes.
    #[arg(long)]
    print_inventory: bool,
    /// Record N passes into FILE as a replay capture, print it, and exit (no server).
    #[arg(long, value_name = "FILE", requires = "passes")]
    record: Option<PathBuf>,
    /// Passes to record with --record.
    #[arg(long, value_name = "N")]
    passes: Option<u32>,
    /// Send idle-but-allocated GPU time per namespace to the quota API at this base URL, e.g.
    /// http://gantry-quota-api.gantry-system.svc (needs --pod-resources-socket to know who
    /// holds each GPU). Off without it.
    #[arg(long, value_name = "URL")]
    quota_api: Option<String>,
    /// The bearer token for --quota-api, read at every send: a service account token for the
    /// audience gantry-quota-api (the chart projects it here).
    #[arg(long, value_name = "FILE", default_value = gantry_serve::client::QUOTA_API_TOKEN_FILE)]
    quota_api_token: PathBuf,
    /// Seconds per idle-time window sent to the quota API.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    idle_window: u32,
    /// Serve HTTPS with this certificate (PEM); reloaded when the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Where samples come from, as `--source` names it.
enum SourceSpec {
    Nvml,
    Replay(PathBuf),
}

/// Reads `--source`.
fn source_spec(spec: &str) -> Result<SourceSpec, String> {
    match spec.split_once(':') {
        None if spec == "nvml" => Ok(SourceSpec::Nvml),
        Some(("replay", file)) if !file.is_empty() => Ok(SourceSpec::Replay(PathBuf::from(file))),
        _ => Err(format!(
            "--source {spec:?} is not a source; use nvml, or replay:FILE with a capture recorded by --record"
        )),
    }
}

/// Builds the source `spec` names (on the sampling thread: NVML handles stay on it).
fn source(spec: &SourceSpec) -> Result<Box<dyn GpuSource>, OpenError> {
    match spec {
        SourceSpec::Nvml => Ok(Box::new(NvmlSource::new()?)),
        SourceSpec::Replay(file) => Ok(Box::new(Replay::load(file)?)),
    }
}

pub fn run(args: NodeAgentArgs) -> Result<(), String> {
    if !(args.interval.is_finite() && args.interval >= 0.05) {
        return Err(format!(
            "--interval {} is too short or not a number; give seconds, at least 0.05",
            args.interval
        ));
    }
    let interval = Duration::from_secs_f64(args.interval);
    if let Some(file) = &args.record {
        return record(&args.source, file, args.passes.unwrap_or(1).max(1), interval);
    }
    let node = args.node.clone().or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()));
    // An agent publishing on its Node confirms its idle evidence at its passes; fewer than one a
    // refresh would let the scheduler take it for stale.
    let refresh = gantry_api::node::IDLE_REFRESH_SECONDS;
    if node.is_some() && args.interval > refresh as f64 {
        return Err(format!(
            "--interval {} is longer than the {refresh} s within which an agent publishing on its Node \
             must confirm its idle evidence; give at most {refresh}, or leave out --node/NODE_NAME",
            args.interval
        ));
    }
    let options = Options {
        node: node.clone().unwrap_or_else(hostname),
        dcgm: args.dcgm_compat,
        dcgm_hostname_label: args.dcgm_hostname_label.clone(),
    };
    let spec = source_spec(&args.source)?;
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        // NVML is loaded before anything is served, so a node without the driver fails at once.
        let (frames, driver) =
            agent::start_sampler(move || source(&spec), interval).map_err(|e| e.to_string())?;
        let shared = Shared::new(options);
        shared.lock().driver_version = driver;
        let publisher = match &node {
            Some(name) => {
                let client = kube::Client::try_default()
                    .await
                    .map_err(|e| format!("cannot reach the Kubernetes API server to publish Node {name}'s GPUs ({e}); run in the DaemonSet, set KUBECONFIG, or leave out --node/NODE_NAME"))?;
                Some(Publisher::new(client, name.clone()))
            }
            None => None,
        };
        let pod_resources = (args.pod_resources_socket != "none").then(|| PathBuf::from(&args.pod_resources_socket));
        let idle = match &args.quota_api {
            Some(url) => {
                if pod_resources.is_none() {
                    return Err("--quota-api needs the pod-resources socket to know whose GPUs are idle; drop --pod-resources-socket none".to_string());
                }
                let (tx, rx) = tokio::sync::mpsc::channel(64);
                let caller = gantry_serve::client::BearerClient::new(url, args.quota_api_token.clone());
                tokio::spawn(idle::send(caller, shared.options.node.clone(), rx, idle::RETRY, gantry_serve::stop_signal()));
                // A stalled agent is charged for at most three passes (and 5 s) between two.
                let max_gap = (3.0 * args.interval).ceil().max(5.0) as i64;
                Some((idle::IdleMeter::new(i64::from(args.idle_window.max(1)), max_gap), tx))
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
        // Installed before the address is announced (see `stop_signal`).
        let (stop_serving, stop_sampling) = (gantry_serve::stop_signal(), gantry_serve::stop_signal());
        let target = node.as_deref().map_or("not published (no --node)".to_string(), |n| format!("published on Node {n}"));
        eprintln!("gantry node-agent: source {}, every {}s, inventory {target}; metrics at {scheme}://{addr}/metrics", args.source, args.interval);
        let tls = args.tls_cert.clone().zip(args.tls_key.clone()).map(|(c, k)| TlsFiles::new(c, k));
        let outputs = Outputs { publisher, pod_resources, print_inventory: args.print_inventory, idle };
        let server = gantry_serve::serve(listener, agent::router(shared.clone()), tls, stop_serving);
        tokio::select! {
            r = server => r.map_err(|e| e.to_string()),
            () = agent::run(shared, frames, outputs, stop_sampling) => Ok(()),
        }
    })
}

/// `--record FILE --passes N`: a capture for the replay source and the tests.
fn record(spec: &str, file: &PathBuf, passes: u32, interval: Duration) -> Result<(), String> {
    let mut src = source(&source_spec(spec)?).map_err(|e| e.to_string())?;
    let mut capture = Capture {
        description: format!("recorded by gantry node-agent on {} at {}", hostname(), jiff::Timestamp::now()),
        driver_version: src.driver_version(),
        frames: Vec::new(),
    };
    for i in 0..passes {
        if i > 0 {
            std::thread::sleep(interval);
        }
        capture.frames.push(src.sample().map_err(|e| e.to_string())?);
    }
    let text = serde_json::to_string_pretty(&capture).map_err(|e| e.to_string())?;
    std::fs::write(file, format!("{text}\n"))
        .map_err(|e| format!("{}: cannot write the capture: {e}", file.display()))?;
    println!("{text}");
    Ok(())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "localhost".into())
}
