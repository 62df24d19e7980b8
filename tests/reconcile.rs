//! The ServiceAccount reconciler against the in-repo fake API server: adds new pull secrets, keeps
//! the old one until it is deleted (rotation without a gap), never removes what a user wrote, is
//! idempotent, records Events, hands leadership over through the Lease, and converges when its patches
//! lose a race with another client (409 Conflict).
//!
//! Every wait polls against a deadline; nothing sleeps to synchronise.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use pullgate::engine::policy::Policy;
use pullgate::metrics::Metrics;
use pullgate::reconcile::{run, LoopConfig};
use pullgate::store::kube::{ClusterStore, Scope};
use pullgate::store::Store;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::fake_api::FakeApi;
use support::serve::ServeProcess;
use support::{eventually, fixtures, DEADLINE};

fn policy() -> Arc<Policy> {
    let mut p = Policy::default();
    p.reconcile.service_accounts = true;
    Arc::new(p)
}

async fn start(fake: &FakeApi, identity: &str) -> tokio::task::JoinHandle<()> {
    start_with(fake, identity, policy()).await
}

/// The reconciler over a store scoped as `pullgate serve` scopes it for `policy`.
async fn start_with(
    fake: &FakeApi,
    identity: &str,
    policy: Arc<Policy>,
) -> tokio::task::JoinHandle<()> {
    let store: Arc<dyn Store> = ClusterStore::start(
        fake.client().await,
        Scope::for_policy(Vec::new(), &policy),
        Arc::new(Metrics::new()),
    );
    let ready = store.clone();
    eventually("the store to sync", move || ready.ready()).await;
    let cfg = LoopConfig {
        lease_namespace: "pullgate".to_owned(),
        identity: identity.to_owned(),
        every: Duration::from_millis(100),
        patch_interval: Duration::ZERO,
    };
    // The sender dropped at once: a reconciler that is never told to shut down.
    let (_, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(run(fake.client().await, store, policy, cfg, shutdown))
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

/// Status codes the fake answered to PATCHes of one ServiceAccount, in order.
fn patch_statuses(fake: &FakeApi, ns: &str, sa: &str) -> Vec<u16> {
    let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}");
    fake.request_log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == path)
        .filter_map(|r| r.status)
        .collect()
}

/// Reasons of the Events stored about one ServiceAccount.
async fn event_reasons(fake: &FakeApi, ns: &str, sa: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(fake.client().await, ns);
    let params = ListParams::default().fields(&format!(
        "involvedObject.kind=ServiceAccount,involvedObject.name={sa}"
    ));
    api.list(&params)
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

/// Another client editing the ServiceAccount between the reconciler's read and its patch: it adds
/// its own pull secret (once) and bumps an annotation (every time, so each edit is a real write).
fn other_client() -> impl Fn(&mut serde_json::Value) + Send + Sync + 'static {
    let edits = AtomicUsize::new(0);
    move |sa: &mut serde_json::Value| {
        let n = edits.fetch_add(1, Ordering::SeqCst) + 1;
        sa["metadata"]["annotations"]["example.com/edits"] = n.to_string().into();
        let refs = sa["imagePullSecrets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !refs.iter().any(|r| r["name"] == "users-own") {
            let mut refs = refs;
            refs.push(serde_json::json!({"name": "users-own"}));
            sa["imagePullSecrets"] = refs.into();
        }
    }
}

/// Issue #4: the API server answers the reconciler's patch with 409 Conflict because another client
/// changed the ServiceAccount since the reconciler read it (its resourceVersion precondition fails).
/// The reconciler re-reads, re-plans against the fresh object and converges: the secret is added
/// once, the other client's changes survive, and one Event records the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_patches_are_retried_on_the_fresh_object_and_converge() {
    // 2 conflicts fit in one pass (three attempts per change); 4 outlast it, and the next pass
    // (planned again from the watched store, which by then has the other client's writes) finishes.
    for conflicts in [1usize, 2, 4] {
        let fake = FakeApi::start().await;
        fake.apply(fixtures::namespace("pullgate", &[]));
        fake.apply(fixtures::service_account("team", "default", &[]));
        fake.apply_secret("team", "regcred", &["registry.example.com"], "pw-1");
        fake.race_writes("serviceaccounts", conflicts, other_client());
        let task = start(&fake, "a").await;

        eventually(
            "the reconciler to add regcred next to the other client's secret",
            || pull_secrets(&fake, "team", "default") == ["users-own", "regcred"],
        )
        .await;
        // The log records a status once the answer is written, just after the store commits.
        eventually("every patch answered", || {
            patch_statuses(&fake, "team", "default").len() > conflicts
        })
        .await;
        let mut want = vec![409; conflicts];
        want.push(200);
        assert_eq!(
            patch_statuses(&fake, "team", "default"),
            want,
            "{conflicts} conflict(s), then one successful patch"
        );
        let sa = fake
            .get("serviceaccounts", "team", "default")
            .expect("the ServiceAccount");
        assert_eq!(
            sa["metadata"]["annotations"]["example.com/edits"],
            conflicts.to_string(),
            "the other client's last write is kept"
        );
        assert_eq!(
            managed(&fake, "team", "default"),
            "regcred",
            "only regcred is recorded as pullgate's: users-own is the other client's"
        );
        eventually("the Event about the change", || fake.count("events") >= 1).await;
        assert_eq!(
            event_reasons(&fake, "team", "default").await,
            ["PullSecretsReconciled"],
            "one Event for one change, none for the lost attempts"
        );

        // Converged: later passes leave the ServiceAccount alone.
        let leases = |f: &FakeApi| {
            f.request_log()
                .iter()
                .filter(|r| r.path.contains("/leases/"))
                .count()
        };
        let seen = leases(&fake);
        eventually("several more reconcile passes", || {
            leases(&fake) >= seen + 6
        })
        .await;
        assert_eq!(
            patch_statuses(&fake, "team", "default").len(),
            conflicts + 1
        );
        assert_eq!(
            pull_secrets(&fake, "team", "default"),
            ["users-own", "regcred"]
        );
        assert_eq!(
            event_reasons(&fake, "team", "default").await,
            ["PullSecretsReconciled"]
        );
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_picks_service_accounts_by_label_among_helm_labels() {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    fake.apply(fixtures::namespace("team", &[]));
    let labelled = |name: &str, team: &str| {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": "team", "labels": {
                "team": team,
                "app.kubernetes.io/managed-by": "Helm",
                "app.kubernetes.io/name": name,
                "helm.sh/chart": format!("{name}-1.2.3"),
            }},
        })
    };
    fake.apply(labelled("api", "payments"));
    fake.apply(labelled("worker", "shop"));
    fake.apply(fixtures::service_account("team", "default", &[]));
    fake.apply_secret("team", "regcred", &["registry.example.com"], "pw-1");
    let mut p = Policy::default();
    p.reconcile.service_accounts = true;
    p.reconcile.selector = [("team".to_owned(), "payments".to_owned())].into();
    let task = start_with(&fake, "a", Arc::new(p)).await;

    eventually("regcred added to the selected ServiceAccount", || {
        pull_secrets(&fake, "team", "api") == ["regcred"]
    })
    .await;
    // A later secret is reconciled too, so a pass has run since the first; the others stay as they were.
    fake.apply_secret("team", "ghcr", &["ghcr.io"], "pw-2");
    eventually("ghcr added to the selected ServiceAccount", || {
        pull_secrets(&fake, "team", "api") == ["regcred", "ghcr"]
    })
    .await;
    assert!(pull_secrets(&fake, "team", "worker").is_empty());
    assert!(pull_secrets(&fake, "team", "default").is_empty());
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_releases_the_reconciler_lease_on_sigterm() {
    support::install_crypto();
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("policy.yaml");
    std::fs::write(&config, "reconcile:\n  serviceAccounts: true\n").expect("policy file");
    // The pod's namespace and name come from the environment, as the chart's downward API sets them.
    let mut served = ServeProcess::spawn(
        [
            OsStr::new("--cluster"),
            OsStr::new("--self-signed"),
            OsStr::new("--kubeconfig"),
            fake.kubeconfig_path().as_os_str(),
            OsStr::new("--config"),
            config.as_os_str(),
        ],
        &[("POD_NAMESPACE", "pullgate"), ("POD_NAME", "pullgate-0")],
        DEADLINE,
    );
    eventually("serve to take the reconciler lease", || {
        holder(&fake).as_deref() == Some("pullgate-0")
    })
    .await;
    served.sigterm();
    // Released, not left to expire: the next replica leads at once.
    eventually("the lease released", || {
        holder(&fake).as_deref() == Some("")
    })
    .await;
    let status = tokio::task::spawn_blocking(move || served.finish(DEADLINE))
        .await
        .expect("waiting for serve");
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
