//! `--self-signed-secret`: pullgate's own CA, generated with rcgen, kept in a Secret the replicas
//! share, published in the `caBundle` of pullgate's webhook configurations, and rotated well before
//! expiry without a single failed admission (see [`rotation`](super::rotation) for the hand-over
//! and [`reconciler`](super::reconciler) for the Secret).
//!
//! [`Managed`] runs the first check at start-up, then checks periodically and swaps the served
//! certificate when the Secret's changes. The time each check decides with comes from a [`Clock`],
//! so tests drive a rotation by moving the clock instead of waiting for it.

use super::reconciler::{Checked, ManagedError, Next, Reconciler};
use super::rotation::Material;
use super::CertResolver;
use crate::metrics::Metrics;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

/// Lifetime of a generated CA (and of the serving certificates it signs).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Time between two checks of the Secret and the webhook configurations.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Time the API servers get to load a new caBundle before a certificate signed by the new CA is
/// served.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);
/// Time the first check may take (retrying) before `pullgate serve` gives up.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The time the checks decide with, in seconds since the epoch: the system clock, or a test's.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(|| jiff::Timestamp::now().as_second()))
    }

    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// The current time, in seconds since the epoch.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

/// Where the Secret and the webhook configurations are, and how often they are checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of the Secret (the pod's).
    pub namespace: String,
    /// Name of the Secret.
    pub secret: String,
    /// Names of the Mutating- and/or ValidatingWebhookConfigurations whose caBundle is kept current.
    pub webhook_configurations: Vec<String>,
    /// Lifetime of a new CA and of its serving certificates.
    pub validity: Duration,
    /// Time between checks when all is current.
    pub check_interval: Duration,
    /// Time between publishing a new CA and serving a certificate it signed.
    pub settle: Duration,
    /// First delay between retries after an error (doubling up to `check_interval`).
    pub retry: Duration,
    /// How long the first check may keep retrying.
    pub startup_timeout: Duration,
    /// The time certificates are judged and issued at.
    pub clock: Clock,
}

impl Settings {
    /// Settings with the default lifetimes and intervals, on the system clock.
    pub fn new(namespace: String, secret: String, webhook_configurations: Vec<String>) -> Self {
        Settings {
            namespace,
            secret,
            webhook_configurations,
            validity: DEFAULT_VALIDITY,
            check_interval: DEFAULT_CHECK_INTERVAL,
            settle: DEFAULT_SETTLE,
            retry: Duration::from_secs(1),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            clock: Clock::system(),
        }
    }
}

/// The namespace of the Secret: the pod's (`--pod-namespace`, `$POD_NAMESPACE`), else
/// the client's default (the in-cluster namespace file, or the kubeconfig context's namespace).
pub fn pod_namespace(configured: Option<&str>, client: &kube::Client) -> String {
    configured.map_or_else(|| client.default_namespace().to_owned(), str::to_owned)
}

/// The intervals between checks.
#[derive(Debug, Clone)]
struct Timing {
    check_interval: Duration,
    settle: Duration,
    retry: Duration,
}

impl Timing {
    /// How long to wait before the next check.
    fn delay(&self, next: Next, failures: u32) -> Duration {
        match next {
            Next::Done => self.check_interval,
            Next::Settle => self.settle.min(self.check_interval),
            Next::Retry => self
                .retry
                .saturating_mul(1 << failures.min(16))
                .min(self.check_interval),
        }
    }
}

/// The self-signed certificate of a running `pullgate serve`: the resolver serving it, and the
/// background check that keeps the Secret, the webhook configurations and the resolver current.
pub struct Managed {
    reconciler: Reconciler,
    clock: Clock,
    timing: Timing,
    resolver: Arc<CertResolver>,
    metrics: Arc<Metrics>,
    /// DER of the served certificate, to swap only on change.
    served: Vec<u8>,
    next: Next,
}

impl Managed {
    /// Run the first check (retrying for up to `settings.startup_timeout`): create or adopt the
    /// Secret, publish its CA, and load its serving certificate.
    pub async fn start(
        client: kube::Client,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ManagedError> {
        let reconciler = Reconciler::new(
            client,
            settings.namespace,
            settings.secret,
            settings.webhook_configurations,
            settings.validity,
        );
        let deadline = Instant::now() + settings.startup_timeout;
        let mut delay = settings.retry.min(Duration::from_millis(500));
        let (checked, loaded) = loop {
            let attempt = match reconciler.check(settings.clock.now()).await {
                Ok(c) => c
                    .material
                    .serving()
                    .map(|l| (c, l))
                    .map_err(ManagedError::from),
                Err(e) => Err(e),
            };
            match attempt {
                Ok(ok) => break ok,
                Err(e) if Instant::now() + delay < deadline => {
                    warn!(error = %e, retry_in = ?delay, "self-signed certificate not ready; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        };
        metrics.cert_expiry.set(loaded.not_after as f64);
        let served = loaded
            .key
            .cert
            .first()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        info!(namespace = %reconciler.namespace(), secret = %reconciler.secret(), not_after = loaded.not_after, "serving the self-signed certificate from the Secret");
        Ok(Managed {
            reconciler,
            clock: settings.clock,
            timing: Timing {
                check_interval: settings.check_interval,
                settle: settings.settle,
                retry: settings.retry,
            },
            resolver: Arc::new(CertResolver::new(loaded.key)),
            metrics,
            served,
            next: checked.next,
        })
    }

    /// The resolver to build the TLS server with.
    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    fn serve(&mut self, material: &Material) {
        match material.serving() {
            Ok(loaded) => {
                let Some(der) = loaded.key.cert.first() else {
                    return;
                };
                if der.as_ref() != self.served.as_slice() {
                    self.served = der.to_vec();
                    self.resolver.set(loaded.key.clone());
                    self.metrics.cert_expiry.set(loaded.not_after as f64);
                    info!(
                        not_after = loaded.not_after,
                        "serving a new certificate from the Secret"
                    );
                }
            }
            Err(e) => {
                warn!(error = %e, "the Secret's serving certificate is unusable; keeping the served one")
            }
        }
    }

    /// Check periodically, forever: every `check_interval` when all is current, after `settle`
    /// during a hand-over, sooner (backing off) after an error or while a configuration is missing.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            tokio::time::sleep(self.timing.delay(self.next, failures)).await;
            match self.reconciler.check(self.clock.now()).await {
                Ok(Checked { material, next }) => {
                    self.serve(&material);
                    self.next = next;
                    failures = if next == Next::Retry {
                        failures.saturating_add(1)
                    } else {
                        0
                    };
                }
                Err(e) => {
                    warn!(error = %e, "self-signed certificate check failed; retrying");
                    self.next = Next::Retry;
                    failures = failures.saturating_add(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_follow_the_state_and_back_off_up_to_the_check_interval() {
        let t = Timing {
            check_interval: Duration::from_secs(600),
            settle: Duration::from_secs(30),
            retry: Duration::from_secs(1),
        };
        assert_eq!(t.delay(Next::Done, 3), Duration::from_secs(600));
        assert_eq!(t.delay(Next::Settle, 0), Duration::from_secs(30));
        assert_eq!(t.delay(Next::Retry, 0), Duration::from_secs(1));
        assert_eq!(t.delay(Next::Retry, 3), Duration::from_secs(8));
        assert_eq!(t.delay(Next::Retry, 40), Duration::from_secs(600));
        let short = Timing {
            check_interval: Duration::from_secs(10),
            ..t
        };
        assert_eq!(short.delay(Next::Settle, 0), Duration::from_secs(10));
    }

    #[test]
    fn a_clock_reads_what_it_is_given() {
        let at = Arc::new(std::sync::atomic::AtomicI64::new(5));
        let c = Clock::from_fn({
            let at = at.clone();
            move || at.load(std::sync::atomic::Ordering::SeqCst)
        });
        assert_eq!(c.now(), 5);
        at.store(7, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(c.clone().now(), 7);
        assert!(Clock::system().now() > 1_700_000_000);
    }
}
