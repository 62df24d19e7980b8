//! Leader election against the in-repo fake API server, driven by an injected clock (the instants
//! given to `try_lead`), never by waiting: a holder that renews keeps the Lease whatever its clock
//! says, a silent holder loses it a lease duration after this replica last saw its record change,
//! and a released Lease is taken at once.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use pullgate::leader::{keep, Elector};
use serde_json::{json, Value};
use std::time::Duration;
use support::fake_api::FakeApi;
use support::fixtures;
use tokio::sync::watch;
use tokio::time::Instant;

const NS: &str = "pullgate";
const LEASE: &str = "pullgate-test";
const DURATION: Duration = Duration::from_secs(15);

/// An elector for the test Lease (its namespace created on first use).
async fn elector(fake: &FakeApi, identity: &str) -> Elector {
    fake.apply(fixtures::namespace(NS, &[]));
    Elector::new(fake.client().await, NS, LEASE, identity, DURATION)
}

fn lease(fake: &FakeApi) -> Value {
    fake.get("leases.coordination.k8s.io", NS, LEASE)
        .expect("the Lease exists")
}

fn holder(fake: &FakeApi) -> String {
    lease(fake)["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Write the Lease as another replica would.
fn write_lease(fake: &FakeApi, holder: &str, renewed: jiff::Timestamp) {
    fake.apply(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": NS},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "leaseTransitions": 0,
        },
    }));
}

fn at(start: Instant, secs: u64) -> Instant {
    start + Duration::from_secs(secs)
}

#[tokio::test]
async fn a_renewing_holder_keeps_the_lease_though_its_clock_is_an_hour_behind() {
    let fake = FakeApi::start().await;
    let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let start = Instant::now();
    let mut me = elector(&fake, "me").await;
    // Over 50 s, more than three lease durations, "other" renews every 5 s with a renewTime an
    // hour behind this replica's clock (the old rule took such a lease at the first look).
    for step in 0..10u64 {
        let renewed = hour_ago + jiff::SignedDuration::from_secs(5 * step as i64);
        write_lease(&fake, "other", renewed);
        let led = me.try_lead(at(start, 5 * step)).await.unwrap();
        assert!(
            !led,
            "took a lease renewed {} s ago at step {step}",
            5 * step
        );
    }
    assert_eq!(holder(&fake), "other");
}

#[tokio::test]
async fn a_silent_holder_loses_the_lease_a_duration_after_it_was_last_seen_changing() {
    let fake = FakeApi::start().await;
    let start = Instant::now();
    let (mut a, mut b) = (elector(&fake, "a").await, elector(&fake, "b").await);
    assert!(
        a.try_lead(at(start, 0)).await.unwrap(),
        "a creates the Lease"
    );
    assert!(!b.try_lead(at(start, 0)).await.unwrap());
    assert!(a.try_lead(at(start, 5)).await.unwrap(), "a renews");
    assert!(
        !b.try_lead(at(start, 6)).await.unwrap(),
        "b sees the renewal at 6 s"
    );
    // a goes silent: b waits 15 s from when it saw the last change, not from a's renewTime.
    assert!(
        !b.try_lead(at(start, 20)).await.unwrap(),
        "taken before 6 + 15 s"
    );
    assert_eq!(holder(&fake), "a");
    assert!(
        b.try_lead(at(start, 21)).await.unwrap(),
        "not taken at 6 + 15 s"
    );
    assert_eq!(holder(&fake), "b");
    assert_eq!(lease(&fake)["spec"]["leaseTransitions"], 1);
    // a comes back: it sees b's record change, so it waits in turn.
    assert!(!a.try_lead(at(start, 22)).await.unwrap());
    assert!(b.try_lead(at(start, 23)).await.unwrap(), "b renews");
    assert_eq!(holder(&fake), "b");
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let fake = FakeApi::start().await;
    let start = Instant::now();
    let (mut a, mut b) = (elector(&fake, "a").await, elector(&fake, "b").await);
    assert!(a.try_lead(at(start, 0)).await.unwrap());
    assert!(!b.try_lead(at(start, 0)).await.unwrap());
    assert!(a.release().await.unwrap(), "a held the Lease");
    assert_eq!(holder(&fake), "");
    // No time passes: the empty holder is free.
    assert!(b.try_lead(at(start, 0)).await.unwrap());
    assert_eq!(holder(&fake), "b");
    assert!(!a.release().await.unwrap(), "a no longer holds it");
    assert_eq!(holder(&fake), "b");
}

#[tokio::test]
async fn a_lease_changed_since_this_replica_wrote_it_is_not_released() {
    let fake = FakeApi::start().await;
    let mut a = elector(&fake, "a").await;
    assert!(a.try_lead(Instant::now()).await.unwrap());
    write_lease(&fake, "c", jiff::Timestamp::now());
    assert!(!a.release().await.unwrap());
    assert_eq!(holder(&fake), "c");
}

#[tokio::test]
async fn keep_leads_then_releases_on_shutdown() {
    let fake = FakeApi::start().await;
    let a = elector(&fake, "a").await;
    let (leading, mut leads) = watch::channel(false);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        keep(a, Duration::from_millis(50), &leading, shutdown_rx).await;
        leading
    });
    let deadline = Duration::from_secs(10);
    tokio::time::timeout(deadline, leads.wait_for(|l| *l))
        .await
        .expect("a leads within the deadline")
        .unwrap();
    assert_eq!(holder(&fake), "a");
    shutdown.send_replace(true);
    let leading = tokio::time::timeout(deadline, task)
        .await
        .expect("keep returns after shutdown")
        .unwrap();
    assert!(
        !*leading.borrow(),
        "still publishing leadership after release"
    );
    assert_eq!(holder(&fake), "");
}
