//! Gantry's kube-scheduler extender (filter, prioritize, bind, preempt over the extender v1 HTTP
//! protocol) and queue controller.
//!
//! Not built yet: this crate only reserves the component's place in the workspace. The extender
//! will drive `gantry_core::Scheduler`, the same placement cycle `gantry simulate` measures.
