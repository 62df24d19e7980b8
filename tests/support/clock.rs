//! A clock a test moves by hand: what `--self-signed-secret`'s checks decide with, and what a
//! test's TLS client verifies certificates at, so a rotation months away happens in milliseconds.

use pullgate::tls::runner::Clock;
use rustls::pki_types::UnixTime;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Seconds since the epoch, starting at the real time and moved only by [`TestClock::advance`].
#[derive(Debug, Clone)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    /// A clock at the current real time.
    pub fn new() -> Self {
        TestClock(Arc::new(AtomicI64::new(jiff::Timestamp::now().as_second())))
    }

    /// The time it reads.
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Move it to `at` (never backwards).
    pub fn set(&self, at: i64) {
        self.0.fetch_max(at, Ordering::SeqCst);
    }

    /// Move it forward.
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).expect("a duration in range");
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// The same time, for the runner's settings.
    pub fn clock(&self) -> Clock {
        let t = self.clone();
        Clock::from_fn(move || t.now())
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl rustls::time_provider::TimeProvider for TestClock {
    fn current_time(&self) -> Option<UnixTime> {
        let secs = u64::try_from(self.now()).ok()?;
        Some(UnixTime::since_unix_epoch(Duration::from_secs(secs)))
    }
}
