//! Test support for the cluster store: an in-process fake Kubernetes API server speaking the
//! real wire protocol ([`fake_api`]), object builders ([`fixtures`], [`workloads`]), log capture ([`logs`]),
//! the real `pullgate serve` as a child process ([`serve`]), and polling with a deadline (tests
//! never sleep to synchronise).
// Shared by several test crates and the cluster_sync bench, each using a part of it: hence the
// dead_code allowances (per item, so a crate may also allow it on its `mod support;`).

#[allow(dead_code)]
pub mod fake_api;
#[allow(dead_code)]
pub mod fixtures;
#[allow(dead_code)]
pub mod logs;
#[allow(dead_code)]
pub mod serve;
#[allow(dead_code)]
pub mod workloads;

use std::future::Future;
use std::time::{Duration, Instant};

/// Longest wait for anything the tests poll for.
#[allow(dead_code)]
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Install the ring provider as the process default once (kube's TLS stack and the tests' HTTPS
/// clients share a process).
#[allow(dead_code)]
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Poll `check` until it returns `Some`, or panic naming `what` after `deadline`.
#[allow(dead_code)]
pub async fn poll<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Poll a synchronous condition until it holds, or panic naming `what` after [`DEADLINE`].
#[allow(dead_code)]
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    poll(what, DEADLINE, || std::future::ready(cond().then_some(()))).await;
}
