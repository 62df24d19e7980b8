//! When the background audit runs, pure: a full pass every `interval`, and a pass over one
//! namespace once its pull secrets or ServiceAccounts have been quiet for a moment (a rotation
//! touches several objects), at most once per namespace per `min_gap`. The caller feeds changes
//! and `now`; nothing here sleeps or reads a clock.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Timing of the passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time between two full passes.
    pub interval: Duration,
    /// A namespace is audited once it has had no change for this long...
    pub quiet: Duration,
    /// ...or this long after its first unaudited change, even if changes keep coming.
    pub max_wait: Duration,
    /// Least time between two passes over one namespace.
    pub min_gap: Duration,
    /// Most namespace passes started at once; the rest wait for the next call.
    pub max_batch: usize,
    /// Namespaces waiting beyond this many are covered by a full pass instead.
    pub max_pending: usize,
}

impl Timing {
    /// The serve defaults around a full-pass `interval`: 5 s quiet, 30 s at most, 20 s apart.
    pub fn new(interval: Duration) -> Self {
        Timing {
            interval,
            quiet: Duration::from_secs(5),
            max_wait: Duration::from_secs(30),
            min_gap: Duration::from_secs(20),
            max_batch: 16,
            max_pending: 1_000,
        }
    }
}

/// What to run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pass {
    /// Every namespace.
    Full,
    /// These namespaces, one pass each.
    Namespaces(Vec<String>),
    /// Nothing yet.
    Idle,
}

/// Pending namespace changes and the times of the last passes.
#[derive(Debug, Clone)]
pub struct Schedule {
    timing: Timing,
    last_full: Option<Instant>,
    /// Namespace → (first unaudited change, last change).
    pending: BTreeMap<String, (Instant, Instant)>,
    /// Namespace → start of its last pass; entries older than `min_gap` are dropped.
    last_pass: HashMap<String, Instant>,
    full_requested: bool,
}

impl Schedule {
    /// A schedule whose first call to [`Schedule::next`] asks for a full pass.
    pub fn new(timing: Timing) -> Self {
        Schedule {
            timing,
            last_full: None,
            pending: BTreeMap::new(),
            last_pass: HashMap::new(),
            full_requested: false,
        }
    }

    /// A pull secret or ServiceAccount in `namespace` changed at `now`.
    pub fn changed(&mut self, namespace: &str, now: Instant) {
        if let Some(p) = self.pending.get_mut(namespace) {
            p.1 = now;
        } else if self.pending.len() >= self.timing.max_pending {
            self.full_requested = true;
        } else {
            self.pending.insert(namespace.to_owned(), (now, now));
        }
    }

    /// Changes were lost (the notification channel overflowed): audit everything.
    pub fn lost_changes(&mut self) {
        self.full_requested = true;
    }

    /// What to run at `now`; the passes returned count as started.
    pub fn next(&mut self, now: Instant) -> Pass {
        let full_due = self.full_requested
            || self
                .last_full
                .is_none_or(|t| now.saturating_duration_since(t) >= self.timing.interval);
        if full_due {
            self.full_requested = false;
            self.last_full = Some(now);
            // A full pass covers every pending change made before it.
            self.pending.clear();
            self.last_pass.clear();
            return Pass::Full;
        }
        let gap = self.timing.min_gap;
        self.last_pass
            .retain(|_, t| now.saturating_duration_since(*t) < gap);
        let t = self.timing;
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(ns, (first, last))| {
                let settled = now.saturating_duration_since(*last) >= t.quiet
                    || now.saturating_duration_since(*first) >= t.max_wait;
                settled && !self.last_pass.contains_key(*ns)
            })
            .map(|(ns, _)| ns.clone())
            .take(t.max_batch)
            .collect();
        if due.is_empty() {
            return Pass::Idle;
        }
        for ns in &due {
            self.pending.remove(ns);
            self.last_pass.insert(ns.clone(), now);
        }
        Pass::Namespaces(due)
    }

    /// Namespaces waiting for a pass.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn started() -> (Schedule, Instant) {
        let t0 = Instant::now();
        let mut s = Schedule::new(Timing::new(secs(3_600)));
        assert_eq!(s.next(t0), Pass::Full);
        (s, t0)
    }

    fn names(v: &[&str]) -> Pass {
        Pass::Namespaces(v.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn first_call_is_a_full_pass_then_every_interval() {
        let (mut s, t0) = started();
        assert_eq!(s.next(t0 + secs(1)), Pass::Idle);
        assert_eq!(s.next(t0 + secs(3_599)), Pass::Idle);
        assert_eq!(s.next(t0 + secs(3_600)), Pass::Full);
        assert_eq!(s.next(t0 + secs(3_601)), Pass::Idle);
    }

    #[test]
    fn a_change_is_audited_once_quiet() {
        let (mut s, t0) = started();
        s.changed("shop", t0 + secs(10));
        s.changed("shop", t0 + secs(12));
        assert_eq!(s.next(t0 + secs(16)), Pass::Idle, "only 4 s quiet");
        assert_eq!(s.next(t0 + secs(17)), names(&["shop"]));
        assert_eq!(s.next(t0 + secs(18)), Pass::Idle, "audited once");
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn a_namespace_that_keeps_changing_is_audited_by_max_wait() {
        let (mut s, t0) = started();
        for i in 0..40 {
            s.changed("busy", t0 + secs(10 + i));
            let pass = s.next(t0 + secs(10 + i));
            if i < 30 {
                assert_eq!(pass, Pass::Idle, "at {i}");
            } else {
                assert_eq!(pass, names(&["busy"]), "at {i}");
                break;
            }
        }
    }

    #[test]
    fn passes_over_one_namespace_are_rate_limited() {
        let (mut s, t0) = started();
        s.changed("shop", t0 + secs(10));
        assert_eq!(s.next(t0 + secs(15)), names(&["shop"]));
        s.changed("shop", t0 + secs(16));
        s.changed("web", t0 + secs(16));
        // shop ran at 15: not again before 35; web is not held back by it.
        assert_eq!(s.next(t0 + secs(21)), names(&["web"]));
        assert_eq!(s.next(t0 + secs(34)), Pass::Idle);
        assert_eq!(s.next(t0 + secs(35)), names(&["shop"]));
    }

    #[test]
    fn batches_are_bounded_and_overflow_becomes_a_full_pass() {
        let t0 = Instant::now();
        let mut timing = Timing::new(secs(3_600));
        timing.max_batch = 2;
        timing.max_pending = 3;
        let mut s = Schedule::new(timing);
        assert_eq!(s.next(t0), Pass::Full);
        for ns in ["a", "b", "c"] {
            s.changed(ns, t0 + secs(1));
        }
        assert_eq!(s.next(t0 + secs(6)), names(&["a", "b"]));
        assert_eq!(s.next(t0 + secs(6)), names(&["c"]));
        for ns in ["d", "e", "f", "g"] {
            s.changed(ns, t0 + secs(7));
        }
        assert_eq!(s.next(t0 + secs(7)), Pass::Full, "g did not fit");
        assert_eq!(s.pending(), 0);
        s.lost_changes();
        assert_eq!(s.next(t0 + secs(8)), Pass::Full);
    }
}
