//! Leader election over a `coordination.k8s.io/v1` Lease, with client-go's leaderelection
//! semantics: another replica's lease expires `leaseDurationSeconds` after THIS replica last saw
//! its record change (client-go's `observedRecord`/`observedTime`), never by comparing the
//! holder's `renewTime` with the local clock, so clock skew between replicas decides nothing;
//! and a leader releases the Lease on shutdown (client-go's `ReleaseOnCancel`) so the next one
//! takes over at once instead of after a full lease duration.
//!
//! [`decide`] and [`Observed::update`] are the pure core; [`Elector`] is the API adapter, given
//! the instant by its caller so that tests drive it without waiting; [`keep`] is the loop that the
//! reconciler and attribution run.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// What a replica does with the Lease record it has just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or its record has not changed for a lease duration: take it.
    Acquire,
    /// This replica holds it: renew it.
    Renew,
    /// Another replica holds a live lease.
    Wait,
}

/// A Lease record as this replica last read it, and when (on this replica's monotonic clock) it
/// first read that record.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The record.
    pub record: LeaseSpec,
    /// When this replica first saw the record as it is.
    pub at: Instant,
}

impl Observed {
    /// The observation after reading `record` at `now`: the instant moves only when the record
    /// changed, since a holder proves it is alive by changing it (renewing), whatever its clock says.
    pub fn update(previous: Option<Observed>, record: &LeaseSpec, now: Instant) -> Observed {
        match previous {
            Some(p) if p.record == *record => p,
            _ => Observed {
                record: record.clone(),
                at: now,
            },
        }
    }
}

/// The decision of replica `identity` at `now`, given its observation of the Lease;
/// `default_duration` applies when the record names no valid duration.
pub fn decide(
    identity: &str,
    observed: &Observed,
    now: Instant,
    default_duration: Duration,
) -> Decision {
    let holder = observed.record.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = observed
        .record
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    match observed.at.checked_add(duration) {
        Some(expiry) if expiry <= now => Decision::Acquire,
        _ => Decision::Wait,
    }
}

/// `leaseDurationSeconds` for `d`: rounded up, and at least 1 (a zero would let any replica take
/// the Lease at once).
fn whole_seconds(d: Duration) -> i32 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
}

/// Leader election for one replica over one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Option<Observed>,
    /// The Lease as this replica last wrote it while leading: a release replaces that version only.
    held: Option<Lease>,
}

impl Elector {
    /// An elector for Lease `name` in `namespace`, written with `duration` as its lease duration.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: None,
            held: None,
        }
    }

    /// Take or renew the Lease at `now`; `Ok(true)` while this replica leads. Writes carry the
    /// read resourceVersion, so two replicas cannot both win.
    pub async fn try_lead(&mut self, now: Instant) -> Result<bool, kube::Error> {
        let result = self.acquire_or_renew(now).await;
        if !matches!(result, Ok(true)) {
            self.held = None;
        }
        result
    }

    async fn acquire_or_renew(&mut self, now: Instant) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.record(None, 0)),
            };
            let created = self.api.create(&PostParams::default(), &lease).await;
            return self.written(created, now);
        };
        let record = lease.spec.clone().unwrap_or_default();
        let observed = Observed::update(self.observed.take(), &record, now);
        let decision = decide(&self.identity, &observed, now, self.duration);
        self.observed = Some(observed);
        let transitions = record.lease_transitions.unwrap_or(0);
        lease.spec = Some(match decision {
            Decision::Wait => return Ok(false),
            Decision::Renew => self.record(record.acquire_time, transitions),
            Decision::Acquire => self.record(None, transitions.saturating_add(1)),
        });
        let replaced = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await;
        self.written(replaced, now)
    }

    /// This replica's record, renewed now; acquired now unless `acquired` says when.
    fn record(&self, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        let now = MicroTime(jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(whole_seconds(self.duration)),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Record the outcome of a write: what this replica wrote is what it has observed, now.
    fn written(
        &mut self,
        result: Result<Lease, kube::Error>,
        now: Instant,
    ) -> Result<bool, kube::Error> {
        match result {
            Ok(lease) => {
                self.observed = Some(Observed {
                    record: lease.spec.clone().unwrap_or_default(),
                    at: now,
                });
                self.held = Some(lease);
                Ok(true)
            }
            // Another replica wrote first: it leads.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give the Lease up if this replica holds it, as client-go's `ReleaseOnCancel` does: an empty
    /// holder, which any replica takes at once. `Ok(true)` when a held Lease was released.
    pub async fn release(&mut self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.held.take() else {
            return Ok(false);
        };
        let old = lease.spec.take().unwrap_or_default();
        let now = MicroTime(jiff::Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: old.lease_transitions,
            ..Default::default()
        });
        self.observed = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Changed since this replica wrote it: no longer this replica's to release.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Resolve once `shutdown` turns true; never when its sender is gone without that.
pub async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Try to lead every `every` and publish on `leading` whether this replica does, until
/// `shutdown` turns true; then publish `false` and release the Lease.
pub async fn keep(
    mut elector: Elector,
    every: Duration,
    leading: &watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown_requested(&mut shutdown) => break,
        }
        let now = elector.try_lead(Instant::now()).await.unwrap_or_else(|e| {
            warn!(error = %e, lease = %elector.name, "lease renewal failed");
            false
        });
        if leading.send_replace(now) != now {
            info!(leading = now, lease = %elector.name, identity = %elector.identity, "leadership changed");
        }
    }
    leading.send_replace(false);
    match elector.release().await {
        Ok(true) => info!(lease = %elector.name, identity = %elector.identity, "lease released"),
        Ok(false) => {}
        Err(e) => {
            warn!(error = %e, lease = %elector.name, "could not release the lease; the next leader waits for it to expire")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn record(holder: &str, renewed_secs: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: jiff::Timestamp::from_second(renewed_secs)
                .ok()
                .map(MicroTime),
            ..Default::default()
        }
    }

    /// Read `record` at `start + secs` after `previous`, and decide as "me".
    fn read(
        previous: Option<Observed>,
        record: &LeaseSpec,
        start: Instant,
        secs: u64,
    ) -> (Observed, Decision) {
        let now = start + Duration::from_secs(secs);
        let observed = Observed::update(previous, record, now);
        let decision = decide("me", &observed, now, DURATION);
        (observed, decision)
    }

    #[test]
    fn free_and_own_leases() {
        let start = Instant::now();
        let empty = LeaseSpec::default();
        assert_eq!(read(None, &empty, start, 0).1, Decision::Acquire);
        assert_eq!(read(None, &record("", 0), start, 0).1, Decision::Acquire);
        assert_eq!(read(None, &record("me", 0), start, 0).1, Decision::Renew);
    }

    #[test]
    fn a_holders_clock_far_behind_keeps_the_lease_while_it_renews() {
        // The holder's renewTime is a day before this replica's clock: the old rule (renewTime
        // against the local clock) took the lease at once.
        let start = Instant::now();
        let day_ago = jiff::Timestamp::now().as_second() - 86_400;
        let (mut obs, d) = read(None, &record("other", day_ago), start, 0);
        assert_eq!(d, Decision::Wait);
        for step in 1..=10 {
            let renewed = record("other", day_ago + 5 * step);
            let (next, d) = read(Some(obs), &renewed, start, 5 * step.unsigned_abs());
            assert_eq!(
                d,
                Decision::Wait,
                "renewing holder lost the lease at step {step}"
            );
            obs = next;
        }
    }

    #[test]
    fn a_holders_clock_far_ahead_loses_the_lease_once_it_stops_renewing() {
        // renewTime a day in the future: the old rule never took this lease over.
        let start = Instant::now();
        let ahead = record("other", jiff::Timestamp::now().as_second() + 86_400);
        let (obs, d) = read(None, &ahead, start, 0);
        assert_eq!(d, Decision::Wait);
        let (obs, d) = read(Some(obs), &ahead, start, 14);
        assert_eq!(d, Decision::Wait, "expired before a lease duration");
        assert_eq!(obs.at, start, "an unchanged record keeps its first sight");
        assert_eq!(read(Some(obs), &ahead, start, 15).1, Decision::Acquire);
    }

    #[test]
    fn expiry_counts_from_the_last_change_this_replica_saw() {
        let start = Instant::now();
        let (obs, _) = read(None, &record("other", 100), start, 0);
        // Renewed at 10 s: the expiry moves to 10 + 15 s.
        let (obs, d) = read(Some(obs), &record("other", 110), start, 10);
        assert_eq!(
            (obs.at, d),
            (start + Duration::from_secs(10), Decision::Wait)
        );
        let (obs, d) = read(Some(obs), &record("other", 110), start, 24);
        assert_eq!(d, Decision::Wait);
        assert_eq!(
            read(Some(obs), &record("other", 110), start, 25).1,
            Decision::Acquire
        );
    }

    #[test]
    fn written_durations_are_whole_seconds_never_zero() {
        assert_eq!(whole_seconds(Duration::from_millis(300)), 1);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(15_001)), 16);
        assert_eq!(whole_seconds(Duration::from_secs(15)), 15);
        assert_eq!(whole_seconds(Duration::MAX), i32::MAX);
    }

    #[test]
    fn the_records_own_duration_applies_else_the_default() {
        let start = Instant::now();
        let mut short = record("other", 0);
        short.lease_duration_seconds = Some(2);
        let (obs, _) = read(None, &short, start, 0);
        assert_eq!(read(Some(obs), &short, start, 2).1, Decision::Acquire);
        let mut unnamed = record("other", 0);
        unnamed.lease_duration_seconds = None;
        let (obs, _) = read(None, &unnamed, start, 0);
        let (obs, d) = read(Some(obs), &unnamed, start, 14);
        assert_eq!(d, Decision::Wait);
        assert_eq!(read(Some(obs), &unnamed, start, 15).1, Decision::Acquire);
    }
}
