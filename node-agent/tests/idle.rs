//! Idle-but-allocated time from the GPUs to the quota API's ledger, over the real parts: the
//! agent's loop on a replayed capture, a fake kubelet saying who holds which GPU, the agent's
//! sender, and the quota API served on loopback with a token file. A window the quota API refuses
//! for good is dropped alone; the others land.

mod common;

use common::{container, device, pod, serve, FakeKubelet};
use gantry_api::quota::IdleLine;
use gantry_api::view::View;
use gantry_node_agent::agent::{self, Outputs, Shared};
use gantry_node_agent::idle::{self, IdleMeter};
use gantry_node_agent::metrics::Options;
use gantry_node_agent::podresources::proto::ListPodResourcesResponse;
use gantry_node_agent::source::{GpuSource, Replay};
use gantry_quota_api::api::{router, Api};
use gantry_quota_api::auth::StaticTokens;
use gantry_quota_api::ledger::{Ledger, Record, Rollup};
use gantry_serve::client::BearerClient;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const CAPTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/node-agent/a100x4.json");

/// team-a owns namespace team-a; the capture's GPUs are A100-SXM4-40GB at 2 EUR an hour.
fn view(with_tenants: bool) -> View {
    let tenants = if with_tenants {
        json!([{"name": "team-a", "cohort": null, "namespaces": ["team-a"], "pending": 0, "running": 1,
                "quotas": [{"flavor": "NVIDIA-A100-SXM4-40GB", "nominal": 4.0, "borrowingLimit": null, "used": 2.0, "borrowed": 0.0, "ceiling": 4.0, "priceMicros": 2_500_000}]}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({"at": 0, "currency": "EUR", "flavors": [{"name": "NVIDIA-A100-SXM4-40GB", "capacity": 4.0, "price": 2.0}],
        "tenants": tenants, "queue": [], "running": []}))
    .expect("a view")
}

/// Milli-GPU-seconds idle in the ledger, per tenant.
fn idle_of(api: &Api) -> Vec<(String, u64)> {
    let rows = api.ledger().sums(Rollup::Hour, None, 0, i64::MAX).expect("the ledger reads");
    rows.into_iter().map(|(t, _, s)| (t, s.idle)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_gpus_reach_the_ledger_once_even_when_the_quota_api_was_not_ready() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let capture = Replay::load(Path::new(CAPTURE)).expect("the capture");
    let text: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(CAPTURE).expect("the capture")).expect("JSON");
    let uuids: Vec<String> = text["frames"][0]["gpus"]
        .as_array()
        .expect("GPUs")
        .iter()
        .map(|g| g["uuid"].as_str().expect("a UUID").to_string())
        .collect();
    // team-a's trainer holds GPU 0 (97 % busy) and GPU 2 (idle); a pod in a namespace no tenant
    // owns holds GPU 3; GPU 1 is held by nobody.
    let kubelet = FakeKubelet {
        pods: Some(ListPodResourcesResponse {
            pod_resources: vec![
                pod(
                    "team-a",
                    "train-0",
                    vec![container(
                        "trainer",
                        vec![device("nvidia.com/gpu", &uuids[0], 0), device("nvidia.com/gpu", &uuids[2], 1)],
                    )],
                ),
                pod("team-z", "stray", vec![container("main", vec![device("nvidia.com/gpu", &uuids[3], 1)])]),
            ],
        }),
    };
    let socket = serve(dir.path(), kubelet);

    let tokens = "tokens:\n  - {token: agent-token, user: 'system:serviceaccount:gantry-system:gantry-node-agent', node: gpu-node-1}\n";
    let api = Api::new(
        view(false),
        Ledger::in_memory().expect("a ledger"),
        Box::new(StaticTokens::parse("tokens.yaml", tokens).expect("tokens")),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(gantry_serve::serve(listener, router(api.clone()), None, std::future::pending()));
    let token = dir.path().join("token");
    std::fs::write(&token, "agent-token\n").expect("the token file");

    let (frames, _) =
        agent::start_sampler(move || Ok(Box::new(capture) as Box<dyn GpuSource>), Duration::from_millis(200))
            .expect("the sampler");
    let shared = Shared::new(Options {
        node: "gpu-node-1".into(),
        dcgm: false,
        dcgm_hostname_label: "Hostname".into(),
    });
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(idle::send(
        BearerClient::new(&url, token),
        "gpu-node-1".into(),
        rx,
        Duration::from_millis(300),
        std::future::pending(),
    ));
    let outputs = Outputs {
        publisher: None,
        pod_resources: Some(socket),
        print_inventory: false,
        idle: Some((IdleMeter::new(1, 5), tx)),
    };
    tokio::spawn(agent::run(shared, frames, outputs, std::future::pending()));

    // Until the scheduler has sent its tenants the quota API answers 503 and the agent keeps
    // its windows.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(idle_of(&api).is_empty(), "nothing is charged before the tenants are known");
    api.set_view(view(true));
    let deadline = Instant::now() + Duration::from_secs(20);
    let total = loop {
        let idle = idle_of(&api);
        if let Some((_, total)) = idle.iter().find(|(t, _)| t == "team-a").filter(|(_, t)| *t >= 4 * 1030) {
            assert_eq!(
                idle.len(),
                1,
                "only team-a is charged (team-z is no tenant's, GPU 1 is no pod's): {idle:?}"
            );
            break *total;
        }
        assert!(Instant::now() < deadline, "the idle time did not reach the ledger: {idle:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every charged second holds GPU 2 idle (1000) and GPU 0 3 % idle (30): the windows kept
    // while the quota API was not ready arrived whole, and none twice.
    assert_eq!(total % 1030, 0, "{total} milli-GPU-seconds is not a whole number of seconds of both GPUs");
    // At team-a's own price (2.50, not the flavor's 2.00), rounded down once per window.
    let sums = &api.ledger().sums(Rollup::Hour, Some("team-a"), 0, i64::MAX).expect("sums")[0].2;
    let exact = total * 2_500_000 / 3_600_000;
    assert!(
        sums.idle_cost <= exact && sums.idle_cost + total / 1030 >= exact,
        "{} micro-EUR for {total}",
        sums.idle_cost
    );
    assert_eq!((sums.guaranteed, sums.borrowed), (0, 0), "agents write idle time only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_refused_for_good_is_dropped_and_the_others_land() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tokens = "tokens:\n  - {token: agent-token, user: agent, node: gpu-node-1}\n";
    let api = Api::new(
        view(true),
        Ledger::in_memory().expect("a ledger"),
        Box::new(StaticTokens::parse("tokens.yaml", tokens).expect("tokens")),
    );
    // The ledger already holds window 60-120 of this node with other figures (an earlier send
    // whose answer was lost, at a price changed since).
    let model = "NVIDIA-A100-SXM4-40GB";
    let held = Record {
        tenant: "team-a".into(),
        flavor: model.into(),
        start: 60,
        end: 120,
        guaranteed: 0,
        borrowed: 0,
        idle: 5,
        price_micros: 2_000_000,
        node: Some("gpu-node-1".into()),
        run: None,
        experiment: None,
        pipeline: None,
    };
    api.ledger().append(&[held]).expect("the held record");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(gantry_serve::serve(listener, router(api.clone()), None, std::future::pending()));
    let token = dir.path().join("token");
    std::fs::write(&token, "agent-token\n").expect("the token file");

    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(idle::send(
        BearerClient::new(&url, token),
        "gpu-node-1".into(),
        rx,
        Duration::from_secs(3600),
        std::future::pending(),
    ));
    let line = |start: i64, idle: u64| IdleLine {
        start,
        end: start + 60,
        namespace: "team-a".into(),
        model: model.into(),
        idle,
    };
    tx.send(vec![line(0, 1000), line(60, 2000), line(120, 3000)]).await.expect("sent");
    tx.send(vec![line(180, 4000)]).await.expect("sent");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let total: u64 = idle_of(&api).iter().map(|(_, i)| i).sum();
        // 5 held + the windows at 0, 120 and 180; the refused one (2,000) is not there.
        if total == 5 + 1000 + 3000 + 4000 {
            break;
        }
        assert!(Instant::now() < deadline, "the other windows did not land: {total}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
