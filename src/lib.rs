//! pullgate: catches imagePullSecrets misconfiguration at admission time, deciding exactly as the kubelet would.

pub mod admission;
pub mod attribution;
pub mod audit;
pub mod check;
pub mod cli;
pub mod doctor;
pub mod engine;
pub mod events;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod reconcile;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod uninstall;
pub mod verify;
