//! Gantry's admission webhook (AdmissionReview v1): tenant quotas and priorities, workload
//! classification, and rejections a user can act on.
//!
//! Not built yet: this crate only reserves the component's place in the workspace.
