//! Gantry's node agent: a DaemonSet that reads GPU inventory, telemetry and health through NVML,
//! publishes them for the scheduler and exports Prometheus metrics.
//!
//! Not built yet: this crate only reserves the component's place in the workspace.
