//! A fake kubelet for the tests: a tonic server implementing the generated `PodResourcesLister`
//! trait on a Unix socket, and builders for its answers.
#![allow(dead_code)] // Each test binary uses its own part.

use std::path::{Path, PathBuf};

use gantry_node_agent::podresources::proto::pod_resources_lister_server::{
    PodResourcesLister, PodResourcesListerServer,
};
use gantry_node_agent::podresources::proto::{
    AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerDevices, ContainerResources,
    GetPodResourcesRequest, GetPodResourcesResponse, ListPodResourcesRequest, ListPodResourcesResponse,
    NumaNode, PodResources, TopologyInfo,
};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// A kubelet that answers `List` with a fixed response, or with `Unavailable` when it has none.
pub struct FakeKubelet {
    pub pods: Option<ListPodResourcesResponse>,
}

#[tonic::async_trait]
impl PodResourcesLister for FakeKubelet {
    async fn list(
        &self,
        _: Request<ListPodResourcesRequest>,
    ) -> Result<Response<ListPodResourcesResponse>, Status> {
        match &self.pods {
            Some(pods) => Ok(Response::new(pods.clone())),
            None => Err(Status::unavailable("kubelet is shutting down")),
        }
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<AllocatableResourcesRequest>,
    ) -> Result<Response<AllocatableResourcesResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn get(
        &self,
        _: Request<GetPodResourcesRequest>,
    ) -> Result<Response<GetPodResourcesResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }
}

/// Serves `kubelet` on `dir/kubelet.sock` until the test's runtime ends; returns the socket path.
pub fn serve(dir: &Path, kubelet: FakeKubelet) -> PathBuf {
    let socket = dir.join("kubelet.sock");
    let listener = UnixListener::bind(&socket).expect("bind the fake kubelet's socket");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PodResourcesListerServer::new(kubelet))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    socket
}

/// Like the kubelet, one `ContainerDevices` entry per device, each with its NUMA node.
pub fn device(resource: &str, id: &str, numa: i64) -> ContainerDevices {
    ContainerDevices {
        resource_name: resource.to_string(),
        device_ids: vec![id.to_string()],
        topology: Some(TopologyInfo { nodes: vec![NumaNode { id: numa }] }),
    }
}

pub fn container(name: &str, devices: Vec<ContainerDevices>) -> ContainerResources {
    ContainerResources { name: name.to_string(), devices, ..Default::default() }
}

pub fn pod(namespace: &str, name: &str, containers: Vec<ContainerResources>) -> PodResources {
    PodResources { name: name.to_string(), namespace: namespace.to_string(), containers }
}
