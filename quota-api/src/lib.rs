//! Gantry's quota API: quotas, usage, queues, pending reasons and cost per tenant.
//!
//! Not built yet: this crate only reserves the component's place in the workspace.
