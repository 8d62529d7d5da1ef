//! Gantry's node agent: reads each GPU through NVML (or a recorded capture), judges its health,
//! publishes the node's GPU inventory for the scheduler, and serves Prometheus metrics and
//! per-pod GPU utilization.
//!
//! - [`sample`]: one pass over the GPUs in NVML's units; also the replay capture format;
//! - [`source`]: the source trait and the replay source; [`nvml`]: the NVML source (the product);
//! - [`health`]: healthy, degraded or failed per GPU, from XIDs, ECC and row remapping;
//! - [`inventory`]: the Node labels and annotations the scheduler reads, patched on change only;
//! - [`metrics`]: `gantry_gpu_*` families and, behind a flag, dcgm-exporter's;
//! - [`podresources`]: who holds each GPU, from the kubelet's pod-resources socket;
//! - [`idle`]: idle-but-allocated GPU time per namespace, sent to the quota API;
//! - [`idle_since`]: which pods' GPUs sit idle, and since when, published on the Node;
//! - [`agent`]: the sampling loop and the HTTP service.
//!
//! Errors at the crate's boundary are typed, one enum per concern ([`source::SampleError`],
//! [`source::ReplayError`], [`source::OpenError`], [`nvml::NvmlStartError`],
//! [`inventory::PublishError`], [`podresources::PodResourcesError`], [`agent::SamplerError`]), so
//! that a caller can tell the cases apart and reach the underlying error through `source()`; their
//! messages are the ones the agent logs.

pub mod agent;
pub mod health;
pub mod idle;
pub mod idle_since;
pub mod inventory;
pub mod metrics;
pub mod nvml;
pub mod podresources;
pub mod sample;
pub mod source;
