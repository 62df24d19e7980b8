//! When each secret is probed: at once when first seen or rotated (a new resourceVersion), then
//! no sooner than the interval, jittered upwards by up to a tenth of it so that secrets seen
//! together (at start) spread out instead of probing their registries in lockstep forever.
//! Pure: the caller passes the time.

use crate::engine::index::{CredentialStatus, SecretRef};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// Why a secret is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Never probed (or not since pullgate started).
    New,
    /// Its resourceVersion changed since the last probe: a rotation, probed at once.
    Rotated,
    /// The interval since the last probe has passed (or a failed attempt's retry time).
    Interval,
}

/// One status change of a secret's registry key, for Events and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The registry key.
    pub key: String,
    /// The status before (of any earlier resourceVersion), if one was known.
    pub before: Option<CredentialStatus>,
    /// The status now.
    pub after: CredentialStatus,
}

impl Change {
    /// Whether the change deserves an Event: any change between known statuses, and a first
    /// result that is `rejected` (a healthy first result at start would be 5,000 Events of noise).
    pub fn is_notable(&self) -> bool {
        match self.before {
            Some(before) => before != self.after,
            None => self.after == CredentialStatus::Rejected,
        }
    }
}

/// What is known of one secret.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// resourceVersion of the last completed probe.
    pub resource_version: Option<String>,
    /// Status per key from the last completed probe (empty before the first).
    pub statuses: BTreeMap<String, CredentialStatus>,
    /// Not due before this; `None` when due now.
    next_due: Option<Instant>,
    /// After a failed attempt (the secret could not be read): nothing before this, rotated or not.
    retry_after: Option<Instant>,
    /// A probe is running.
    in_flight: bool,
    /// The last result is recorded in the verification table.
    published: bool,
    /// A probe has completed at least once.
    probed: bool,
}

/// The schedule of every secret being verified.
#[derive(Debug)]
pub struct Schedule {
    interval: Duration,
    jitter_seed: RandomState,
    slots: HashMap<SecretRef, Slot>,
}

impl Schedule {
    /// An empty schedule probing unchanged secrets every `interval` (plus jitter).
    pub fn new(interval: Duration) -> Schedule {
        Schedule {
            interval,
            // Random per process: two replicas do not probe in lockstep either.
            jitter_seed: RandomState::new(),
            slots: HashMap::new(),
        }
    }

    /// Whether a secret at `resource_version` is due now, and why.
    pub fn due(
        &self,
        secret: &SecretRef,
        resource_version: &Option<String>,
        now: Instant,
    ) -> Option<Reason> {
        let Some(slot) = self.slots.get(secret) else {
            return Some(Reason::New);
        };
        if slot.in_flight || slot.retry_after.is_some_and(|at| now < at) {
            return None;
        }
        if !slot.probed {
            return Some(Reason::New);
        }
        if &slot.resource_version != resource_version {
            return Some(Reason::Rotated);
        }
        match slot.next_due {
            Some(at) if now < at => None,
            _ => Some(Reason::Interval),
        }
    }

    /// A probe of the secret starts.
    pub fn begin(&mut self, secret: &SecretRef) {
        self.slots.entry(secret.clone()).or_default().in_flight = true;
    }

    /// A probe completed: record its statuses and when the secret is next due; returns the
    /// status changes per key (against the previous result, whatever its resourceVersion).
    pub fn complete(
        &mut self,
        secret: &SecretRef,
        resource_version: Option<String>,
        statuses: BTreeMap<String, CredentialStatus>,
        now: Instant,
    ) -> Vec<Change> {
        let jitter = self.jitter(secret, &resource_version);
        let next = now + self.interval + jitter;
        let slot = self.slots.entry(secret.clone()).or_default();
        let changes = statuses
            .iter()
            .map(|(key, after)| Change {
                key: key.clone(),
                before: slot.statuses.get(key).copied(),
                after: *after,
            })
            .collect();
        *slot = Slot {
            resource_version,
            statuses,
            next_due: Some(next),
            retry_after: None,
            in_flight: false,
            published: false,
            probed: true,
        };
        changes
    }

    /// A probe could not run (the secret could not be read): try again at `at`, keeping what
    /// was known. Not used for registry failures, which are results (`unreachable`).
    pub fn retry_at(&mut self, secret: &SecretRef, at: Instant) {
        if let Some(slot) = self.slots.get_mut(secret) {
            slot.in_flight = false;
            slot.retry_after = Some(at);
        }
    }

    /// The secret changed while it was being probed: due again at once.
    pub fn supersede(&mut self, secret: &SecretRef) {
        if let Some(slot) = self.slots.get_mut(secret) {
            slot.in_flight = false;
            slot.next_due = None;
            slot.retry_after = None;
        }
    }

    /// The last result of the secret is recorded in the verification table.
    pub fn mark_published(&mut self, secret: &SecretRef) {
        if let Some(slot) = self.slots.get_mut(secret) {
            slot.published = true;
        }
    }

    /// Completed results not yet recorded in the verification table.
    pub fn unpublished(&self) -> Vec<(SecretRef, Slot)> {
        self.slots
            .iter()
            .filter(|(_, s)| s.probed && !s.published && !s.in_flight)
            .map(|(r, s)| (r.clone(), s.clone()))
            .collect()
    }

    /// Forget secrets no longer verified (deleted, or no longer covering a private registry);
    /// returns them with what was known, so their metrics can be removed.
    pub fn retain(&mut self, mut live: impl FnMut(&SecretRef) -> bool) -> Vec<(SecretRef, Slot)> {
        let gone: Vec<SecretRef> = self
            .slots
            .iter()
            .filter(|(r, s)| !s.in_flight && !live(r))
            .map(|(r, _)| r.clone())
            .collect();
        gone.into_iter()
            .filter_map(|r| self.slots.remove(&r).map(|s| (r, s)))
            .collect()
    }

    /// What is known of a secret.
    pub fn slot(&self, secret: &SecretRef) -> Option<&Slot> {
        self.slots.get(secret)
    }

    /// Number of secrets scheduled.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no secret is scheduled.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Between zero and a tenth of the interval, fixed per secret and resourceVersion.
    fn jitter(&self, secret: &SecretRef, resource_version: &Option<String>) -> Duration {
        let spread = u64::try_from(self.interval.as_millis() / 10).unwrap_or(u64::MAX);
        if spread == 0 {
            return Duration::ZERO;
        }
        let h = self.jitter_seed.hash_one((secret, resource_version));
        Duration::from_millis(h % (spread + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CredentialStatus::*;

    const HOUR: Duration = Duration::from_secs(3_600);

    fn sref(n: &str) -> SecretRef {
        ("ns".to_owned(), n.to_owned())
    }

    fn rv(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    fn statuses(s: CredentialStatus) -> BTreeMap<String, CredentialStatus> {
        BTreeMap::from([("r.io".to_owned(), s)])
    }

    #[test]
    fn new_then_cached_until_the_jittered_interval() {
        let mut s = Schedule::new(6 * HOUR);
        let t0 = Instant::now();
        let a = sref("a");
        assert_eq!(s.due(&a, &rv("1"), t0), Some(Reason::New));
        s.begin(&a);
        assert_eq!(s.due(&a, &rv("1"), t0), None, "in flight");
        let changes = s.complete(&a, rv("1"), statuses(Valid), t0);
        assert_eq!(
            changes,
            [Change {
                key: "r.io".into(),
                before: None,
                after: Valid
            }]
        );
        assert!(!changes[0].is_notable());
        // Unchanged: not before the interval, and due by interval + 10%.
        assert_eq!(
            s.due(&a, &rv("1"), t0 + 6 * HOUR - Duration::from_secs(1)),
            None
        );
        assert_eq!(
            s.due(&a, &rv("1"), t0 + 6 * HOUR + 36 * Duration::from_secs(60)),
            Some(Reason::Interval)
        );
        // Rotated: at once.
        assert_eq!(
            s.due(&a, &rv("2"), t0 + Duration::from_secs(1)),
            Some(Reason::Rotated)
        );
    }

    #[test]
    fn jitter_spreads_secrets_within_a_tenth() {
        let mut s = Schedule::new(6 * HOUR);
        let t0 = Instant::now();
        let mut dues = Vec::new();
        for i in 0..200 {
            let r = sref(&format!("s{i}"));
            s.begin(&r);
            s.complete(&r, rv("1"), statuses(Valid), t0);
            let next = s.slot(&r).and_then(|sl| sl.next_due).unwrap();
            assert!(next >= t0 + 6 * HOUR && next <= t0 + 6 * HOUR + 36 * Duration::from_secs(60));
            dues.push(next);
        }
        dues.sort();
        dues.dedup();
        assert!(dues.len() > 150, "jitter spreads: {} distinct", dues.len());
    }

    #[test]
    fn changes_retries_supersession_and_retention() {
        let mut s = Schedule::new(HOUR);
        let t0 = Instant::now();
        let a = sref("a");
        s.begin(&a);
        let first = s.complete(&a, rv("1"), statuses(Rejected), t0);
        assert!(first[0].is_notable(), "a first rejected result is notable");
        s.begin(&a);
        let changes = s.complete(&a, rv("2"), statuses(Valid), t0);
        assert_eq!(changes[0].before, Some(Rejected));
        assert!(changes[0].is_notable());
        s.begin(&a);
        assert!(!s.complete(&a, rv("2"), statuses(Valid), t0)[0].is_notable());

        // A failed read retries at the given time, keeping the statuses.
        s.begin(&a);
        s.retry_at(&a, t0 + Duration::from_secs(30));
        assert_eq!(s.due(&a, &rv("2"), t0 + Duration::from_secs(29)), None);
        assert_eq!(
            s.due(&a, &rv("3"), t0 + Duration::from_secs(29)),
            None,
            "even rotated"
        );
        assert_eq!(s.due(&a, &rv("2"), t0 + 2 * HOUR), Some(Reason::Interval));
        assert_eq!(
            s.due(&a, &rv("3"), t0 + Duration::from_secs(30)),
            Some(Reason::Rotated)
        );
        assert_eq!(
            s.slot(&a).map(|sl| sl.statuses.clone()),
            Some(statuses(Valid))
        );
        // Superseded: due at once.
        s.begin(&a);
        s.supersede(&a);
        assert_eq!(s.due(&a, &rv("2"), t0), Some(Reason::Interval));
        // A never-probed secret whose read failed waits for its retry too.
        let c = sref("c");
        s.begin(&c);
        s.retry_at(&c, t0 + Duration::from_secs(30));
        assert_eq!(s.due(&c, &rv("1"), t0), None);
        assert_eq!(
            s.due(&c, &rv("1"), t0 + Duration::from_secs(30)),
            Some(Reason::New)
        );
        s.retain(|r| r != &c);

        // Publication bookkeeping.
        assert_eq!(s.unpublished().len(), 1);
        s.mark_published(&a);
        assert!(s.unpublished().is_empty());

        // Retention keeps live and in-flight secrets.
        let b = sref("b");
        s.begin(&b);
        let gone = s.retain(|_| false);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, a);
        assert_eq!(s.len(), 1, "b is in flight");
        assert!(!s.is_empty());
    }
}
