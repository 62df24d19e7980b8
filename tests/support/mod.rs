//! The one support tree of the integration tests (and of the benches that include it), a module
//! per job: an in-process fake Kubernetes API server speaking the real wire protocol
//! ([`fake_api`]) with webhook configurations in front of it ([`webhookconfig`]), the chart
//! rendered by the real Helm ([`helm`]), object and payload builders ([`fixtures`]),
//! AdmissionReviews and patches ([`admission`]), planted credentials and leak checks
//! ([`secrets`]), certificates from `pullgate certs` ([`certs`]), repository paths ([`paths`]),
//! HTTPS and raw TLS clients ([`client`]), a clock tests move by hand ([`clock`]), the webhook
//! in-process ([`inprocess`]) and as a child process ([`serve`]), registries ([`registry`]),
//! workloads and pods ([`workloads`]), log
//! capture ([`logs`]), and polling with a deadline here (tests never sleep to synchronise).
// Shared by several test crates and the cluster_sync bench, each using a part of it: hence the
// dead_code allowances (per item, so a crate may also allow it on its `mod support;`).

#[allow(dead_code)]
pub mod admission;
#[allow(dead_code)]
pub mod certs;
#[allow(dead_code)]
pub mod client;
#[allow(dead_code)]
pub mod clock;
#[allow(dead_code)]
pub mod fake_api;
#[allow(dead_code)]
pub mod fixtures;
#[allow(dead_code)]
pub mod helm;
#[allow(dead_code)]
pub mod inprocess;
#[allow(dead_code)]
pub mod logs;
#[allow(dead_code)]
pub mod paths;
// Allows dead code itself: benches/verify.rs includes it alone.
pub mod registry;
#[allow(dead_code)]
pub mod secrets;
#[allow(dead_code)]
pub mod serve;
#[allow(dead_code)]
pub mod webhookconfig;
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
