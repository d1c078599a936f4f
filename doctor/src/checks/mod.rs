//! The checks, by side of the boundary: bypass (what reaches the gateway around clawguard),
//! the gateway's config, clawguard's own deployment, and the gateway's own audit.

pub mod bypass;
pub mod deployment;
pub mod gateway_config;
pub mod openclaw_audit;
