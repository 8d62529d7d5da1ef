//! The PodResources client against a fake kubelet: a tonic server implementing the generated
//! `PodResourcesLister` trait on a Unix socket in a temporary directory.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{container, device, pod, serve, FakeKubelet};
use gantry_node_agent::podresources::proto::{ContainerDevices, ListPodResourcesResponse};
use gantry_node_agent::podresources::{self, Assignment, PodResourcesError};
use tokio::net::UnixListener;

const GPU_A0: &str = "GPU-8a2f6c1e-3b4d-4e5f-9a6b-7c8d9e0f1a2b";
const GPU_A1: &str = "GPU-1c9e4b7a-2d3f-4a5b-8c6d-9e0f1a2b3c4d";
const GPU_B0: &str = "GPU-5d7b2e9f-4c1a-4b3d-a6e8-0f1a2b3c4d5e";
const MIG_B: &str = "MIG-0e4f8a2c-6b1d-5c3e-b7f9-1a2b3c4d5e6f";
const TIMEOUT: Duration = Duration::from_secs(2);

/// Two GPU pods, one with an RDMA device beside its GPUs and a sidecar without devices, and a pod
/// holding nothing but an empty device entry.
fn two_gpu_pods() -> ListPodResourcesResponse {
    ListPodResourcesResponse {
        pod_resources: vec![
            pod(
                "team-a",
                "train-llama-0",
                vec![
                    container(
                        "trainer",
                        vec![
                            device("nvidia.com/gpu", GPU_A0, 0),
                            device("rdma/hca_shared_devices_a", "mlx5_0", 0),
                            device("nvidia.com/gpu", GPU_A1, 1),
                        ],
                    ),
                    container("log-shipper", vec![]),
                ],
            ),
            pod(
                "team-b",
                "infer-7f9c",
                vec![
                    container("server", vec![device("nvidia.com/gpu", GPU_B0, 0)]),
                    container("embedder", vec![device("nvidia.com/mig-1g.10gb", MIG_B, 1)]),
                ],
            ),
            pod(
                "kube-system",
                "kube-proxy-x2v9q",
                vec![container(
                    "kube-proxy",
                    vec![ContainerDevices {
                        resource_name: "nvidia.com/gpu".to_string(),
                        ..Default::default()
                    }],
                )],
            ),
        ],
    }
}

fn assignment(ns: &str, pod: &str, container: &str, resource: &str, ids: &[&str]) -> Assignment {
    Assignment {
        namespace: ns.to_string(),
        pod: pod.to_string(),
        container: container.to_string(),
        resource: resource.to_string(),
        device_ids: ids.iter().map(|id| id.to_string()).collect(),
    }
}

fn owner(ns: &str, pod: &str, container: &str) -> (String, String, String) {
    (ns.to_string(), pod.to_string(), container.to_string())
}

/// What `list` returns from a fake kubelet holding [`two_gpu_pods`].
async fn list_two_gpu_pods() -> Vec<Assignment> {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = serve(dir.path(), FakeKubelet { pods: Some(two_gpu_pods()) });
    podresources::list(&socket, TIMEOUT).await.expect("list")
}

#[tokio::test]
async fn list_returns_each_containers_devices_per_resource() {
    let assignments = list_two_gpu_pods().await;

    assert_eq!(
        assignments,
        vec![
            assignment("team-a", "train-llama-0", "trainer", "nvidia.com/gpu", &[GPU_A0, GPU_A1]),
            assignment("team-a", "train-llama-0", "trainer", "rdma/hca_shared_devices_a", &["mlx5_0"]),
            assignment("team-b", "infer-7f9c", "server", "nvidia.com/gpu", &[GPU_B0]),
            assignment("team-b", "infer-7f9c", "embedder", "nvidia.com/mig-1g.10gb", &[MIG_B]),
        ]
    );
}

#[tokio::test]
async fn gpu_owners_maps_gpu_and_mig_uuids_to_their_containers() {
    let assignments = list_two_gpu_pods().await;

    let owners = podresources::gpu_owners(&assignments);

    assert_eq!(owners.len(), 4, "the RDMA device is no GPU: {owners:?}");
    assert_eq!(owners[GPU_A0], owner("team-a", "train-llama-0", "trainer"));
    assert_eq!(owners[GPU_A1], owner("team-a", "train-llama-0", "trainer"));
    assert_eq!(owners[GPU_B0], owner("team-b", "infer-7f9c", "server"));
    assert_eq!(owners[MIG_B], owner("team-b", "infer-7f9c", "embedder"));
}

#[tokio::test]
async fn a_failed_list_call_is_a_call_error_with_the_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = serve(dir.path(), FakeKubelet { pods: None });

    let err = podresources::list(&socket, TIMEOUT).await.expect_err("kubelet refused");

    match &err {
        PodResourcesError::Call { message } => {
            assert!(message.contains("Unavailable"), "{message}");
            assert!(message.contains("kubelet is shutting down"), "{message}");
        }
        other => panic!("expected a Call error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_socket_is_reported_with_its_path_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("pod-resources").join("kubelet.sock");

    let err = podresources::list(&socket, TIMEOUT).await.expect_err("no socket");

    match &err {
        PodResourcesError::Missing { socket: reported } => assert_eq!(reported, &socket),
        other => panic!("expected Missing, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.starts_with(&socket.display().to_string()), "{message}");
    assert!(message.contains("mount /var/lib/kubelet/pod-resources"), "{message}");
    assert!(message.contains("--pod-resources-socket"), "{message}");
}

/// Asserts that `list` on `socket` fails with a Connect error naming the path, well within `TIMEOUT`.
async fn assert_connect_error(socket: &Path) {
    let started = Instant::now();
    let err = podresources::list(socket, TIMEOUT).await.expect_err("nobody listens");
    assert!(started.elapsed() < TIMEOUT, "took {:?}", started.elapsed());
    match &err {
        PodResourcesError::Connect { socket: reported, message } => {
            assert_eq!(reported, socket);
            assert!(!message.is_empty());
        }
        other => panic!("expected a Connect error, got {other:?}"),
    }
    assert!(err.to_string().contains(&socket.display().to_string()), "{err}");
}

#[tokio::test]
async fn a_socket_left_by_a_dead_kubelet_is_a_connect_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("kubelet.sock");
    drop(UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists(), "dropping the listener leaves the socket file behind");

    assert_connect_error(&socket).await;
}

#[tokio::test]
async fn a_regular_file_at_the_socket_path_is_a_connect_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("kubelet.sock");
    std::fs::write(&socket, b"not a socket").expect("write");

    assert_connect_error(&socket).await;
}

#[tokio::test]
async fn a_kubelet_that_never_answers_fails_within_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("kubelet.sock");
    // Bound and listening, so connecting succeeds, but nothing accepts or speaks HTTP/2.
    let _listener = UnixListener::bind(&socket).expect("bind");
    let timeout = Duration::from_millis(300);

    let started = Instant::now();
    let err = podresources::list(&socket, timeout).await.expect_err("silent kubelet");

    assert!(started.elapsed() < timeout + Duration::from_secs(1), "took {:?}", started.elapsed());
    assert!(matches!(err, PodResourcesError::Connect { .. } | PodResourcesError::Call { .. }), "{err:?}");
}

#[test]
fn the_messages_are_word_for_word_those_the_agent_logs() {
    let socket = Path::new("/var/lib/kubelet/pod-resources/kubelet.sock").to_path_buf();
    assert_eq!(
        PodResourcesError::Missing { socket: socket.clone() }.to_string(),
        "/var/lib/kubelet/pod-resources/kubelet.sock: no kubelet pod-resources socket; mount \
         /var/lib/kubelet/pod-resources read-only into the agent, or set --pod-resources-socket"
    );
    assert_eq!(
        PodResourcesError::Connect { socket, message: "connection refused".into() }.to_string(),
        "/var/lib/kubelet/pod-resources/kubelet.sock: cannot connect to the kubelet pod-resources socket \
         (connection refused); check that the kubelet is running on this node and that the agent may \
         open the socket (it is root-owned, so the agent needs to run as root)"
    );
    assert_eq!(
        PodResourcesError::Call { message: "Unavailable: shutting down".into() }.to_string(),
        "kubelet pod-resources List call failed: Unavailable: shutting down; the kubelet must serve \
         podresources v1 (Kubernetes 1.20 or later), see its log for the cause"
    );
}
