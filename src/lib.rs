//! pullgate: catches imagePullSecrets misconfiguration at admission time, deciding exactly as the kubelet would.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admission;
pub mod attribution;
pub mod check;
pub mod cli;
pub mod doctor;
pub mod engine;
pub mod events;
pub mod manifests;
pub mod metrics;
pub mod reconcile;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod uninstall;
pub mod verify;
