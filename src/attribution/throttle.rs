//! The bounded, time-explicit state of attribution: the queue of pods to diagnose (coalesced
//! per pod), the memory of diagnoses already announced, and token buckets. Pure: the caller
//! passes the time, so every rule is tested without a clock.

use crate::engine::diagnosis::{Cause, PullFailure};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A pod, by namespace and name.
pub type PodKey = (String, String);

/// What happened to a failure offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// The pod was not queued: it is now.
    New,
    /// The pod was already queued: the newer failure replaced the older one.
    Coalesced,
    /// The queue is full: the failure was dropped (the kubelet reports it again at its next back-off).
    Dropped,
}

/// Pods waiting for a diagnosis, first come first served, one entry per pod whatever the
/// number of its failure Events: a burst of Events costs memory per pod, never per Event.
#[derive(Debug)]
pub struct Pending {
    order: VecDeque<PodKey>,
    failures: HashMap<PodKey, PullFailure>,
    capacity: usize,
}

impl Pending {
    /// A queue of at most `capacity` pods.
    pub fn new(capacity: usize) -> Self {
        Pending {
            order: VecDeque::new(),
            failures: HashMap::new(),
            capacity,
        }
    }

    /// Queue a pod's failure.
    pub fn push(&mut self, pod: PodKey, failure: PullFailure) -> Queued {
        if let Some(f) = self.failures.get_mut(&pod) {
            *f = failure;
            return Queued::Coalesced;
        }
        if self.failures.len() >= self.capacity {
            return Queued::Dropped;
        }
        self.order.push_back(pod.clone());
        self.failures.insert(pod, failure);
        Queued::New
    }

    /// The oldest queued pod and its latest failure.
    pub fn pop(&mut self) -> Option<(PodKey, PullFailure)> {
        let pod = self.order.pop_front()?;
        let failure = self.failures.remove(&pod)?;
        Some((pod, failure))
    }

    /// Pods queued.
    pub fn len(&self) -> usize {
        self.failures.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Diagnoses already announced, by pod UID and cause, so a pod in back-off gets one Event per
/// cause rather than one per retry. Bounded in size and age: the oldest entries go first.
#[derive(Debug)]
pub struct Announced {
    at: HashMap<(String, Cause), Instant>,
    order: VecDeque<((String, Cause), Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl Announced {
    /// Remember at most `capacity` diagnoses, each for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Announced {
            at: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            ttl,
        }
    }

    /// Record a diagnosis; true when it is new (not announced within the ttl).
    pub fn first(&mut self, uid: &str, cause: Cause, now: Instant) -> bool {
        self.expire(now);
        let key = (uid.to_owned(), cause);
        if self.at.contains_key(&key) {
            return false;
        }
        // Forgotten entries leave stale slots in `order`: bound those too.
        while self.at.len() >= self.capacity || self.order.len() >= 2 * self.capacity {
            let Some((old, t)) = self.order.pop_front() else {
                break;
            };
            self.remove_if_at(&old, t);
        }
        self.at.insert(key.clone(), now);
        self.order.push_back((key, now));
        true
    }

    /// Forget a diagnosis whose announcement failed, so the next failure announces it again.
    pub fn forget(&mut self, uid: &str, cause: Cause) {
        self.at.remove(&(uid.to_owned(), cause));
    }

    /// Diagnoses remembered.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((_, t)) = self.order.front() {
            if now.saturating_duration_since(*t) < self.ttl {
                break;
            }
            if let Some((key, t)) = self.order.pop_front() {
                self.remove_if_at(&key, t);
            }
        }
    }

    /// Remove an entry only if it is the one recorded at `t` (it may have been forgotten and re-added since).
    fn remove_if_at(&mut self, key: &(String, Cause), t: Instant) {
        if self.at.get(key) == Some(&t) {
            self.at.remove(key);
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Whether a token is available now (without taking it).
    pub fn ready(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * self.rate).min(self.burst) >= 1.0
    }

    /// Take a token: Ok, or how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(image: &str) -> PullFailure {
        PullFailure {
            image: Some(image.to_owned()),
            auth_error: true,
            keyring: None,
            message: String::new(),
        }
    }

    fn key(ns: &str, name: &str) -> PodKey {
        (ns.to_owned(), name.to_owned())
    }

    #[test]
    fn pending_coalesces_per_pod_and_is_bounded() {
        let mut q = Pending::new(3);
        assert_eq!(q.push(key("a", "p1"), failure("x:1")), Queued::New);
        assert_eq!(q.push(key("a", "p1"), failure("x:2")), Queued::Coalesced);
        assert_eq!(q.push(key("a", "p2"), failure("y")), Queued::New);
        assert_eq!(q.push(key("b", "p1"), failure("z")), Queued::New);
        assert_eq!(q.push(key("b", "p2"), failure("w")), Queued::Dropped);
        assert_eq!(q.len(), 3);
        let (k, f) = q.pop().unwrap();
        assert_eq!(k, key("a", "p1"));
        assert_eq!(f.image.as_deref(), Some("x:2"), "the latest failure wins");
        assert_eq!(q.push(key("b", "p2"), failure("w")), Queued::New);
        let order: Vec<PodKey> = std::iter::from_fn(|| q.pop().map(|(k, _)| k)).collect();
        assert_eq!(order, [key("a", "p2"), key("b", "p1"), key("b", "p2")]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_burst_of_ten_thousand_failures_stays_within_the_bound() {
        let mut q = Pending::new(1_000);
        let mut dropped = 0;
        for i in 0..10_000 {
            // 10,000 Events over 2,000 pods: five back-off retries each.
            if q.push(key("ns", &format!("p{}", i % 2_000)), failure("x")) == Queued::Dropped {
                dropped += 1;
            }
        }
        assert_eq!(q.len(), 1_000);
        assert_eq!(
            dropped, 5_000,
            "pods beyond the bound are dropped, every retry of them"
        );
        let mut seen = Announced::new(500, Duration::from_secs(3_600));
        let t = Instant::now();
        for i in 0..10_000 {
            seen.first(&format!("uid-{i}"), Cause::SecretMissing, t);
        }
        assert_eq!(seen.len(), 500);
        assert!(seen.order.len() <= 500);
    }

    #[test]
    fn announced_once_per_pod_and_cause_until_it_expires() {
        let t = Instant::now();
        let mut a = Announced::new(10, Duration::from_secs(60));
        assert!(a.first("u1", Cause::SecretMissing, t));
        assert!(!a.first("u1", Cause::SecretMissing, t + Duration::from_secs(1)));
        assert!(
            a.first("u1", Cause::RegistryMismatch, t),
            "another cause is news"
        );
        assert!(a.first("u2", Cause::SecretMissing, t));
        assert!(a.first("u1", Cause::SecretMissing, t + Duration::from_secs(61)));
        a.forget("u2", Cause::SecretMissing);
        assert!(a.first("u2", Cause::SecretMissing, t + Duration::from_secs(62)));
        // The re-added entry survives the expiry of its first recording.
        assert!(!a.first("u2", Cause::SecretMissing, t + Duration::from_secs(70)));
    }

    #[test]
    fn token_bucket_paces_after_its_burst() {
        let t = Instant::now();
        let mut b = TokenBucket::new(2.0, 2.0, t);
        assert!(b.take(t).is_ok());
        assert!(b.ready(t));
        assert!(b.take(t).is_ok());
        assert!(!b.ready(t));
        assert!(b.ready(t + Duration::from_millis(500)));
        let wait = b.take(t).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 0.5).abs() < 1e-9,
            "{wait:?}: one token per half second"
        );
        assert!(b.take(t + Duration::from_millis(500)).is_ok());
        assert!(b.take(t + Duration::from_millis(500)).is_err());
        // Never more than the burst, however long the pause.
        let later = t + Duration::from_secs(3_600);
        assert!(b.take(later).is_ok() && b.take(later).is_ok() && b.take(later).is_err());
    }
}
