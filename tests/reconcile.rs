//! The ServiceAccount reconciler against the in-repo fake API server: adds new pull secrets, keeps
//! the old one until it is deleted (rotation without a gap), never removes what a user wrote, is
//! idempotent, records Events, and hands leadership over through the Lease.
//!
//! Every wait polls against a deadline; nothing sleeps to synchronise.

mod support;

use pullgate::metrics::Metrics;
use pullgate::policy::Policy;
use pullgate::reconcile::{run, LoopConfig};
use pullgate::store::kube::ClusterStore;
use pullgate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use support::fake_api::FakeApi;
use support::{eventually, fixtures};

fn policy() -> Arc<Policy> {
    let mut p = Policy::default();
    p.reconcile.service_accounts = true;
    Arc::new(p)
}

async fn start(fake: &FakeApi, identity: &str) -> tokio::task::JoinHandle<()> {
    let store: Arc<dyn Store> =
        ClusterStore::start(fake.client().await, Vec::new(), Arc::new(Metrics::new()));
    let ready = store.clone();
    eventually("the store to sync", move || ready.ready()).await;
    let cfg = LoopConfig {
        lease_namespace: "pullgate".to_owned(),
        identity: identity.to_owned(),
        every: Duration::from_millis(100),
        patch_interval: Duration::ZERO,
    };
    tokio::spawn(run(fake.client().await, store, policy(), cfg))
}

fn pull_secrets(fake: &FakeApi, ns: &str, sa: &str) -> Vec<String> {
    fake.get("serviceaccounts", ns, sa)
        .and_then(|v| v["imagePullSecrets"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect()
}

fn managed(fake: &FakeApi, ns: &str, sa: &str) -> String {
    fake.get("serviceaccounts", ns, sa)
        .and_then(|v| {
            v["metadata"]["annotations"]["pullgate.io/managed-pull-secrets"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn holder(fake: &FakeApi) -> Option<String> {
    fake.get(
        "leases.coordination.k8s.io",
        "pullgate",
        "pullgate-reconciler",
    )
    .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

fn sa_patches(fake: &FakeApi) -> usize {
    fake.request_log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/serviceaccounts/"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_adds_before_it_removes_and_leaves_user_references_alone() {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    fake.apply(fixtures::namespace("team", &[]));
    fake.apply(fixtures::service_account("team", "default", &[]));
    fake.apply(fixtures::service_account("team", "builder", &["users-own"]));
    fake.apply_secret("team", "regcred", &["registry.example.com"], "pw-1");
    let task = start(&fake, "a").await;

    eventually("regcred added to both ServiceAccounts", || {
        pull_secrets(&fake, "team", "default") == ["regcred"]
            && pull_secrets(&fake, "team", "builder") == ["users-own", "regcred"]
    })
    .await;
    assert_eq!(managed(&fake, "team", "builder"), "regcred");
    eventually("an Event on the ServiceAccount", || {
        fake.count("events") >= 2
    })
    .await;

    // Rotation: the new secret is added next to the old one.
    fake.apply_secret("team", "regcred-2026", &["registry.example.com"], "pw-2");
    eventually("the new secret added, the old kept", || {
        pull_secrets(&fake, "team", "default") == ["regcred", "regcred-2026"]
    })
    .await;
    // The old secret is deleted: only now is its reference dropped, and never the user's own.
    fake.delete("secrets", "team", "regcred");
    eventually("the deleted secret's reference dropped", || {
        pull_secrets(&fake, "team", "default") == ["regcred-2026"]
            && pull_secrets(&fake, "team", "builder") == ["users-own", "regcred-2026"]
    })
    .await;
    assert_eq!(managed(&fake, "team", "default"), "regcred-2026");

    // Idempotent: further passes (the lease keeps being renewed) patch nothing.
    let patches = sa_patches(&fake);
    let renewals = |f: &FakeApi| {
        f.request_log()
            .iter()
            .filter(|r| r.path.contains("/leases/"))
            .count()
    };
    let seen = renewals(&fake);
    eventually("several more reconcile passes", || {
        renewals(&fake) >= seen + 6
    })
    .await;
    assert_eq!(
        sa_patches(&fake),
        patches,
        "a converged cluster must not be patched again"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_reconciles_and_leadership_moves_on() {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    fake.apply(fixtures::service_account("team", "default", &[]));
    let a = start(&fake, "a").await;
    eventually("a to take the lease", || {
        holder(&fake).as_deref() == Some("a")
    })
    .await;
    let b = start(&fake, "b").await;
    fake.apply_secret("team", "one", &["r.example.com"], "pw");
    eventually("the secret reconciled", || {
        pull_secrets(&fake, "team", "default") == ["one"]
    })
    .await;
    assert_eq!(
        holder(&fake).as_deref(),
        Some("a"),
        "b must not steal a live lease"
    );

    // a stops renewing: once the lease expires, b leads and reconciles.
    a.abort();
    eventually("b to take over the lease", || {
        holder(&fake).as_deref() == Some("b")
    })
    .await;
    fake.apply_secret("team", "two", &["q.example.com"], "pw");
    eventually("b reconciles", || {
        pull_secrets(&fake, "team", "default") == ["one", "two"]
    })
    .await;
    let transitions = fake
        .get(
            "leases.coordination.k8s.io",
            "pullgate",
            "pullgate-reconciler",
        )
        .and_then(|l| l["spec"]["leaseTransitions"].as_i64());
    assert_eq!(transitions, Some(1));
    b.abort();
}
