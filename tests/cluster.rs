//! The cluster store against the in-repo fake API server: initial sync and readiness, live
//! changes, resumed and expired watches, outages, the requests actually sent, secret hygiene,
//! and the real `pullgate serve --cluster` answering AdmissionReviews end to end.
//!
//! Every wait polls against a deadline; nothing sleeps to synchronise.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use pullgate::engine::pullsecret::{DOCKERCFG_TYPE, DOCKER_CONFIG_JSON_TYPE};
use pullgate::metrics::{KindLabels, Metrics, ResourceLabels, WouldDenyLabels};
use pullgate::store::kube::{ClusterStore, Scope};
use pullgate::store::Store;
use serde_json::Value;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;
use support::fake_api::{FakeApi, LoggedRequest, Options};
use support::serve::ServeProcess;
use support::{eventually, fixtures, logs, poll, DEADLINE};

const PLANTED: &str = "Planted-Cluster-Pw-41xQz";

/// Watchers per scope: two pull-secret types, Opaque and every other secret type (metadata
/// only), ServiceAccounts, Namespaces.
const WATCHERS: usize = 6;

/// Secret watchers: the two pull types and the two metadata-only ones.
const SECRET_WATCHERS: usize = 4;

/// The `Accept` kube sends for metadata-only watches and gets (lists ask for the List form).
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

async fn start_store(fake: &FakeApi, namespaces: &[&str]) -> (Arc<ClusterStore>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let scope = Scope {
        namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        ..Scope::default()
    };
    let store = ClusterStore::start(fake.client().await, scope, metrics.clone());
    (store, metrics)
}

async fn synced(fake: &FakeApi, namespaces: &[&str]) -> (Arc<ClusterStore>, Arc<Metrics>) {
    let (store, metrics) = start_store(fake, namespaces).await;
    eventually("the store to sync", || store.ready()).await;
    (store, metrics)
}

fn has_secret(store: &ClusterStore, ns: &str, name: &str) -> bool {
    store.view().namespace(ns).secrets.contains_key(name)
}

fn keys(store: &ClusterStore, ns: &str, name: &str) -> Vec<String> {
    store
        .view()
        .namespace(ns)
        .secrets
        .get(name)
        .map(|s| s.usable_keys().map(|k| k.as_str().to_owned()).collect())
        .unwrap_or_default()
}

fn stale(metrics: &Metrics) -> i64 {
    metrics.store_stale.get()
}

fn requests_since(fake: &FakeApi, from: usize) -> Vec<LoggedRequest> {
    fake.request_log().into_iter().skip(from).collect()
}

/// A request for a resource's whole state: a streaming list (a watch with
/// `sendInitialEvents`), or a LIST where the server offers no streaming.
fn is_initial_list(r: &LoggedRequest) -> bool {
    r.is_list() || r.is_watch() && r.param("sendInitialEvents") == Some("true")
}

fn lists_of(log: &[LoggedRequest], path: &str) -> usize {
    log.iter()
        .filter(|r| r.path == path && is_initial_list(r))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_after_every_initial_list_then_serves_the_cluster() {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace(
        "a",
        &[
            ("pullgate.io/inject", "false"),
            ("pullgate.io/validation", "deny"),
        ],
    ));
    fake.apply_secret("a", "regcred", &["registry.example.com"], "pw");
    fake.apply(fixtures::dockercfg_secret(
        "b",
        "legacy",
        &["legacy.example.com"],
        "pw",
    ));
    fake.apply(fixtures::opaque_secret("a", "app-config", "token", "t"));
    fake.apply(fixtures::service_account("a", "default", &["regcred"]));

    fake.set_stalled(true);
    let (store, metrics) = start_store(&fake, &[]).await;
    eventually("every initial list to reach the server", || {
        fake.request_log()
            .iter()
            .filter(|r| is_initial_list(r))
            .count()
            == WATCHERS
    })
    .await;
    assert!(!store.ready(), "not ready while the initial lists are held");
    fake.set_stalled(false);
    eventually("the store to sync", || store.ready()).await;

    let view = store.view();
    assert_eq!(
        view.secret_count(),
        2,
        "only pull secrets are received whole"
    );
    assert_eq!(view.other_secret_count(), 1);
    let opaque = view.namespace("a").other_secrets.get("app-config");
    assert_eq!(
        opaque.and_then(|o| o.secret_type.as_deref()),
        Some("Opaque"),
        "the other secret is known by name and type"
    );
    assert_eq!(keys(&store, "a", "regcred"), ["registry.example.com"]);
    let legacy = &view.namespace("b").secrets.get("legacy").expect("legacy");
    assert_eq!(legacy.secret_type, DOCKERCFG_TYPE);
    assert!(legacy.created.is_some() && legacy.resource_version.is_some());
    assert_eq!(
        view.namespace("a")
            .secrets
            .get("regcred")
            .expect("regcred")
            .secret_type,
        DOCKER_CONFIG_JSON_TYPE
    );
    assert_eq!(
        view.namespace("a")
            .service_accounts
            .get("default")
            .expect("default")
            .image_pull_secrets,
        ["regcred"]
    );
    assert_eq!(view.namespace("a").overrides.inject, Some(false));
    assert_eq!(
        view.namespace("a").overrides.validation,
        Some(pullgate::engine::policy::Validation::Deny)
    );
    drop(view);
    assert_eq!(
        metrics
            .store_objects
            .get_or_create(&KindLabels { kind: "Secret" })
            .get(),
        3,
        "every secret the store knows, two whole and one by name"
    );
    assert_eq!(
        metrics
            .store_objects
            .get_or_create(&KindLabels {
                kind: "ServiceAccount"
            })
            .get(),
        1
    );
    for resource in ["secrets", "serviceaccounts", "namespaces"] {
        assert!(
            metrics
                .store_last_sync
                .get_or_create(&ResourceLabels { resource })
                .get()
                > 1.0e9,
            "{resource}"
        );
    }
    assert_eq!(stale(&metrics), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_field_selectors_lists_from_the_cache_and_resumes_from_bookmarks() {
    let fake = FakeApi::start_with(Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    // More ServiceAccounts than one page of the watcher's list (500).
    for i in 0..1100 {
        fake.apply(fixtures::service_account(
            &format!("ns-{}", i % 7),
            &format!("sa-{i}"),
            &[],
        ));
    }
    let (store, _metrics) = synced(&fake, &[]).await;
    assert_eq!(store.view().service_account_count(), 1100);

    let log = fake.request_log();
    // Pull secrets whole; the others as metadata only (their data never leaves the server).
    let others = "type!=kubernetes.io/dockerconfigjson,type!=kubernetes.io/dockercfg,type!=Opaque";
    for (selector, metadata_only) in [
        (format!("type={DOCKER_CONFIG_JSON_TYPE}"), false),
        (format!("type={DOCKERCFG_TYPE}"), false),
        ("type=Opaque".to_owned(), true),
        (others.to_owned(), true),
    ] {
        // A streaming list: one watch that first sends the state, then the changes.
        let watch = log.iter().find(|r| {
            r.path == "/api/v1/secrets"
                && is_initial_list(r)
                && r.param("fieldSelector") == Some(&selector)
        });
        let watch = watch.unwrap_or_else(|| panic!("no list of {selector} in {log:#?}"));
        assert!(watch.is_watch());
        assert_eq!(watch.param("sendInitialEvents"), Some("true"));
        assert_eq!(watch.param("resourceVersionMatch"), Some("NotOlderThan"));
        assert_eq!(watch.param("allowWatchBookmarks"), Some("true"));
        let accept = watch.accept.as_deref();
        if metadata_only {
            assert_eq!(accept, Some(METADATA), "{selector}");
        } else {
            assert!(
                !accept.unwrap_or_default().contains("as="),
                "{selector}: {accept:?}"
            );
        }
    }
    assert!(
        log.iter()
            .all(|r| r.path != "/api/v1/secrets" || r.param("fieldSelector").is_some()),
        "never an unfiltered secret request"
    );
    // No LIST at all where the server streams: 1100 ServiceAccounts in one request, not
    // three pages from etcd.
    assert!(log.iter().all(|r| !r.is_list()), "{log:#?}");
    assert_eq!(lists_of(&log, "/api/v1/serviceaccounts"), 1);
    assert!(log
        .iter()
        .any(|r| r.path == "/api/v1/namespaces" && r.is_watch()));
    assert!(log.iter().all(|r| r.authorized));

    // A write the watchers do not see (a ConfigMap) moves the resourceVersion; bookmarks carry
    // it to them, so a reconnect resumes from there rather than from the old version.
    eventually("every watch to open", || fake.open_watches() == WATCHERS).await;
    fake.apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns-0"}}));
    let moved_past = fake.resource_version();
    let secret_watches = |fake: &FakeApi| -> Vec<usize> {
        let log = fake.request_log();
        (0..log.len())
            .filter(|i| log[*i].is_watch() && log[*i].path == "/api/v1/secrets")
            .collect()
    };
    let watching = secret_watches(&fake);
    assert_eq!(watching.len(), SECRET_WATCHERS);
    eventually(
        "both secret watches to send a bookmark past the write",
        || {
            let marked = fake.bookmarks();
            watching
                .iter()
                .all(|w| marked.iter().any(|(i, rv)| i == w && *rv >= moved_past))
        },
    )
    .await;
    fake.end_watches();
    eventually("the secret watches to reconnect", || {
        secret_watches(&fake).len() == 2 * SECRET_WATCHERS
    })
    .await;
    let log = fake.request_log();
    for i in &secret_watches(&fake)[SECRET_WATCHERS..] {
        let from = log[*i]
            .param("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok());
        assert!(
            from >= Some(moved_past),
            "resumed from {from:?}, before the bookmark's {moved_past}"
        );
    }
    assert_eq!(
        lists_of(&fake.request_log(), "/api/v1/secrets"),
        SECRET_WATCHERS,
        "resumed without relisting"
    );
}

/// A server with the WatchList feature off (v1.33's default) refuses streaming lists with 422:
/// each watcher then lists in pages (bounded memory; a whole list from the watch cache held
/// ~150 MiB more at 10,000 namespaces) and watches on from there; relists after a 410 do the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_streaming_lists_lists_in_pages() {
    let fake = FakeApi::start_with(Options {
        watch_list: false,
        ..Options::default()
    })
    .await;
    for i in 0..1100 {
        fake.apply(fixtures::service_account("a", &format!("sa-{i}"), &[]));
    }
    fake.apply_secret("a", "regcred", &["r.io"], "pw");
    fake.apply(fixtures::opaque_secret("a", "app-config", "token", "t"));
    let (store, metrics) = synced(&fake, &[]).await;
    assert_eq!(store.view().service_account_count(), 1100);
    assert!(has_secret(&store, "a", "regcred"));

    let log = fake.request_log();
    let refused: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.is_watch() && r.param("sendInitialEvents") == Some("true"))
        .collect();
    assert_eq!(refused.len(), WATCHERS, "one attempt per watcher: {log:#?}");
    assert!(refused.iter().all(|r| r.status == Some(422)));
    let lists: Vec<&LoggedRequest> = log.iter().filter(|r| r.is_list()).collect();
    for list in &lists {
        assert_eq!(list.param("limit"), Some("500"), "{list:?}");
        assert_eq!(list.param("resourceVersion"), None);
        assert_eq!(list.status, Some(200));
    }
    let pages: Vec<&&LoggedRequest> = lists
        .iter()
        .filter(|r| r.path == "/api/v1/serviceaccounts")
        .collect();
    assert_eq!(pages.len(), 3, "{pages:#?}");
    assert!(pages[1].param("continue").is_some() && pages[2].param("continue").is_some());
    assert_eq!(
        lists.len(),
        WATCHERS + 2,
        "one list per watcher, SAs in 3 pages"
    );
    assert_eq!(
        lists
            .iter()
            .filter(|r| r.param("fieldSelector") == Some("type=Opaque"))
            .map(|r| r.accept.as_deref())
            .collect::<Vec<_>>(),
        [Some(METADATA_LIST)]
    );

    // Then watched from the list's resourceVersion; a 410 relists in pages, not by trying a
    // streaming list again.
    eventually("every watch to open", || fake.open_watches() == WATCHERS).await;
    let before = fake.request_log().len();
    fake.set_stalled(true);
    fake.drop_watches();
    eventually("the watches to close", || fake.open_watches() == 0).await;
    fake.apply_secret("a", "new", &["r.io"], "pw");
    fake.compact();
    fake.set_stalled(false);
    eventually("the relist to bring the new secret", || {
        has_secret(&store, "a", "new")
    })
    .await;
    let after = requests_since(&fake, before);
    assert!(
        after.iter().all(|r| r.param("sendInitialEvents").is_none()),
        "{after:#?}"
    );
    assert!(after
        .iter()
        .any(|r| r.is_list() && r.param("limit") == Some("500")));
    eventually("the store to be fresh", || stale(&metrics) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_mode_reads_only_the_listed_namespaces() {
    let fake = FakeApi::start().await;
    fake.apply_secret("team-a", "regcred", &["r.io"], "pw");
    fake.apply_secret("team-b", "regcred", &["r.io"], "pw");
    fake.apply(fixtures::namespace(
        "team-a",
        &[("pullgate.io/inject", "true")],
    ));
    let (store, _metrics) = synced(&fake, &["team-a"]).await;
    assert!(has_secret(&store, "team-a", "regcred"));
    assert!(!has_secret(&store, "team-b", "regcred"));
    assert_eq!(
        store.view().namespace("team-a").overrides.inject,
        Some(true)
    );

    fake.apply_secret("team-b", "later", &["r.io"], "pw");
    fake.apply_secret("team-a", "later", &["r.io"], "pw");
    eventually("the new team-a secret", || {
        has_secret(&store, "team-a", "later")
    })
    .await;
    assert!(!has_secret(&store, "team-b", "later"));

    let log = fake.request_log();
    let paths: std::collections::BTreeSet<&str> = log.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths.into_iter().collect::<Vec<_>>(),
        [
            "/api/v1/namespaces",
            "/api/v1/namespaces/team-a/secrets",
            "/api/v1/namespaces/team-a/serviceaccounts"
        ]
    );
    assert!(log
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces")
        .all(|r| r.param("fieldSelector") == Some("metadata.name=team-a")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_after_start_are_applied() {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("a", &[]));
    let (store, metrics) = synced(&fake, &[]).await;
    assert_eq!(store.view().secret_count(), 0);

    fake.apply_secret("a", "regcred", &["registry.example.com"], "pw");
    eventually("a secret created after start", || {
        has_secret(&store, "a", "regcred")
    })
    .await;
    fake.apply_secret("a", "regcred", &["quay.io"], "pw");
    eventually("the secret's new registry", || {
        keys(&store, "a", "regcred") == ["quay.io"]
    })
    .await;
    fake.apply(fixtures::dockercfg_secret(
        "a",
        "legacy",
        &["old.example.com"],
        "pw",
    ));
    eventually("a dockercfg secret", || has_secret(&store, "a", "legacy")).await;

    fake.apply(fixtures::service_account("a", "builder", &["regcred"]));
    eventually("a new ServiceAccount", || {
        store
            .view()
            .namespace("a")
            .service_accounts
            .contains_key("builder")
    })
    .await;
    fake.apply(fixtures::service_account(
        "a",
        "builder",
        &["regcred", "legacy"],
    ));
    eventually("its new imagePullSecrets", || {
        store
            .view()
            .namespace("a")
            .service_accounts
            .get("builder")
            .is_some_and(|s| s.image_pull_secrets.len() == 2)
    })
    .await;
    fake.apply(fixtures::namespace(
        "a",
        &[("pullgate.io/validation", "off")],
    ));
    eventually("the namespace label", || {
        store.view().namespace("a").overrides.validation.is_some()
    })
    .await;

    assert!(fake.delete("secrets", "a", "regcred"));
    eventually("a deleted secret to disappear", || {
        !has_secret(&store, "a", "regcred")
    })
    .await;
    assert!(fake.delete("serviceaccounts", "a", "builder"));
    eventually("a deleted ServiceAccount to disappear", || {
        store.view().service_account_count() == 0
    })
    .await;
    for ns in ["a", "b"] {
        metrics
            .would_deny
            .get_or_create(&WouldDenyLabels {
                namespace: ns.to_owned(),
                registry: "*".to_owned(),
            })
            .inc();
    }
    assert!(fake.delete("namespaces", "", "a"));
    eventually("everything of a deleted namespace to disappear", || {
        store.view().namespace_count() == 0
    })
    .await;
    // Its metric series go too, so namespaces coming and going do not fill the series cap.
    eventually("the deleted namespace's series to go", || {
        metrics.would_deny.len() == 1
    })
    .await;
    assert!(!metrics.encode().contains(r#"namespace="a""#));
    assert_eq!(
        metrics
            .store_objects
            .get_or_create(&KindLabels { kind: "Secret" })
            .get(),
        0
    );
    assert_eq!(stale(&metrics), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_resumes_and_replays_what_it_missed() {
    let fake = FakeApi::start().await;
    fake.apply_secret("a", "keep", &["r.io"], "pw");
    fake.apply_secret("a", "gone", &["r.io"], "pw");
    let (store, metrics) = synced(&fake, &[]).await;
    eventually("every watch to open", || fake.open_watches() == WATCHERS).await;
    let before = fake.request_log().len();

    // Cut the watches and hold their reconnections while the cluster changes.
    fake.set_stalled(true);
    fake.drop_watches();
    eventually("the watches to close", || fake.open_watches() == 0).await;
    assert!(fake.delete("secrets", "a", "gone"));
    fake.apply_secret("a", "new", &["r.io"], "pw");
    assert!(
        has_secret(&store, "a", "gone"),
        "nothing can arrive while the server is held"
    );
    fake.set_stalled(false);

    eventually("the missed delete and create", || {
        !has_secret(&store, "a", "gone") && has_secret(&store, "a", "new")
    })
    .await;
    assert!(has_secret(&store, "a", "keep"));
    let after = requests_since(&fake, before);
    assert_eq!(
        lists_of(&after, "/api/v1/secrets"),
        0,
        "resumed from the last resourceVersion without a relist: {after:#?}"
    );
    assert!(after
        .iter()
        .any(|r| r.is_watch() && r.param("resourceVersion").is_some()));
    assert_eq!(stale(&metrics), 0, "fresh again once the watches are back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_resource_version_relists_and_prunes() {
    let fake = FakeApi::start().await;
    fake.apply_secret("a", "keep", &["r.io"], "pw");
    fake.apply_secret("a", "gone", &["r.io"], "pw");
    fake.apply(fixtures::service_account("a", "old", &[]));
    fake.apply(fixtures::namespace("a", &[("pullgate.io/inject", "false")]));
    let (store, metrics) = synced(&fake, &[]).await;

    // An outage long enough for the history to be compacted past the watchers' versions.
    fake.fail_next(usize::MAX);
    fake.drop_watches();
    eventually("the store to notice the outage", || stale(&metrics) == 1).await;
    assert!(fake.delete("secrets", "a", "gone"));
    assert!(fake.delete("serviceaccounts", "a", "old"));
    fake.apply(fixtures::namespace("a", &[]));
    fake.apply_secret("a", "new", &["r.io"], "pw");
    let compacted_at = fake.request_log().len();
    let compacted_rv = fake.resource_version();
    fake.compact();
    fake.fail_next(0);

    eventually("the relist to converge", || {
        let v = store.view();
        let a = v.namespace("a");
        !a.secrets.contains_key("gone")
            && a.secrets.contains_key("new")
            && a.service_accounts.is_empty()
            && a.overrides.inject.is_none()
    })
    .await;
    assert!(has_secret(&store, "a", "keep"));
    let after = requests_since(&fake, compacted_at);
    let expired = |r: &LoggedRequest| {
        !is_initial_list(r)
            && r.param("resourceVersion")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v < compacted_rv)
    };
    assert!(
        after
            .iter()
            .any(|r| r.is_watch() && r.status == Some(200) && expired(r)),
        "a watch from before the compaction, answered 200 with the 410 ERROR event: {after:#?}"
    );
    eventually("one relist per secrets watcher", || {
        lists_of(&requests_since(&fake, compacted_at), "/api/v1/secrets") == SECRET_WATCHERS
    })
    .await;
    // Relists stream from the watch cache too: after an outage every replica relists at once.
    assert!(requests_since(&fake, compacted_at)
        .iter()
        .all(|r| !r.is_list()));
    eventually("the store to be fresh again", || stale(&metrics) == 0).await;
    assert!(store.ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_serving_and_marks_the_store_stale() {
    logs::capture();
    let fake = FakeApi::start().await;
    fake.apply_secret("a", "regcred", &["r.io"], "pw");
    let (store, metrics) = synced(&fake, &[]).await;
    assert!(metrics.encode().contains("pullgate_store_stale 0"));

    fake.fail_next(usize::MAX);
    fake.drop_watches();
    eventually("store_stale to turn 1", || stale(&metrics) == 1).await;
    assert!(metrics.encode().contains("pullgate_store_stale 1"));
    assert!(store.ready(), "still ready: the last state is served");
    assert!(has_secret(&store, "a", "regcred"));
    assert!(fake.request_log().iter().any(|r| r.status == Some(500)));

    // Recovery shows even though nothing in the cluster changes afterwards.
    fake.fail_next(0);
    eventually("store_stale back to 0", || stale(&metrics) == 0).await;
    assert!(has_secret(&store, "a", "regcred"));
    let text = logs::text();
    assert!(text.contains("watch failed"), "errors are logged");
    assert!(text.contains("watch recovered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_of_other_types_come_and_go_by_name_without_their_data() {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("a", &[]));
    let (store, metrics) = synced(&fake, &[]).await;
    let other = |name: &str| {
        store
            .view()
            .namespace("a")
            .other_secrets
            .get(name)
            .map(|o| o.secret_type.as_deref().map(str::to_owned))
    };
    let secret_gauge = || {
        metrics
            .store_objects
            .get_or_create(&KindLabels { kind: "Secret" })
            .get()
    };

    fake.apply(fixtures::opaque_secret("a", "regcred", "password", PLANTED));
    eventually("the Opaque secret's name", || {
        other("regcred") == Some(Some("Opaque".to_owned()))
    })
    .await;
    let helm = fixtures::helm_release_secret("a", "web", 1, 64 * 1024);
    let helm_data = helm["data"]["release"]
        .as_str()
        .expect("release")
        .to_owned();
    fake.apply(helm);
    eventually("the Helm release secret's name, type unknown", || {
        other("sh.helm.release.v1.web.v1") == Some(None)
    })
    .await;
    assert_eq!(secret_gauge(), 2);
    assert!(!has_secret(&store, "a", "regcred"));

    // Recreated as a pull secret: one object, now whole; then deleted.
    assert!(fake.delete("secrets", "a", "regcred"));
    fake.apply_secret("a", "regcred", &["registry.example.com"], PLANTED);
    eventually("regcred as a pull secret", || {
        has_secret(&store, "a", "regcred") && other("regcred").is_none()
    })
    .await;
    assert!(fake.delete("secrets", "a", "regcred"));
    assert!(fake.delete("secrets", "a", "sh.helm.release.v1.web.v1"));
    eventually("both gone", || {
        !has_secret(&store, "a", "regcred") && other("sh.helm.release.v1.web.v1").is_none()
    })
    .await;
    assert_eq!(store.view().namespace_count(), 0, "nothing left of it");
    assert_eq!(secret_gauge(), 0);

    // Every request for secrets of other types asked for metadata only, so the fake (which
    // honours Accept as the API server does) never sent their data.
    let log = fake.request_log();
    let metadata_requests: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| {
            r.path == "/api/v1/secrets"
                && r.param("fieldSelector")
                    .is_some_and(|f| f.contains("Opaque"))
        })
        .collect();
    assert!(
        metadata_requests.len() >= 2,
        "a streaming list (then watch) each: {log:#?}"
    );
    assert!(metadata_requests.iter().all(|r| r
        .accept
        .as_deref()
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))));
    assert!(!format!("{:?}", *store.view()).contains(&helm_data[..64]));
}

/// An AdmissionReview of a pod in `namespace` naming `secret` in spec.imagePullSecrets.
fn review_naming(namespace: &str, secret: &str) -> Value {
    let mut review: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/admission-reviews/admissionreview-pod-create-mutate.json"
        ))
        .expect("fixture"),
    )
    .expect("fixture JSON");
    review["request"]["uid"] = serde_json::json!(format!("uid-{secret}"));
    review["request"]["namespace"] = serde_json::json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = serde_json::json!(namespace);
    review["request"]["object"]["spec"]["imagePullSecrets"] = serde_json::json!([{"name": secret}]);
    review
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cluster_names_a_secret_of_the_wrong_type_as_check_does() {
    support::install_crypto();
    let fake = FakeApi::start().await;
    let objects = [
        fixtures::namespace("shop", &[("pullgate.io/validation", "deny")]),
        fixtures::service_account("shop", "default", &[]),
        fixtures::opaque_secret("shop", "regcred", ".dockerconfigjson", PLANTED),
        fixtures::helm_release_secret("shop", "web", 3, 32 * 1024),
        // The same name as a pull secret elsewhere: what the store saw before, so it said
        // SecretInOtherNamespace.
        fixtures::pull_secret("elsewhere", "regcred", &["registry.example.com"], PLANTED),
    ];
    for o in &objects {
        fake.apply(o.clone());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = dir.path().join("ca.pem");
    let served = ServeProcess::spawn(
        [
            OsStr::new("--cluster"),
            OsStr::new("--self-signed"),
            OsStr::new("--kubeconfig"),
            fake.kubeconfig_path().as_os_str(),
            OsStr::new("--ca-out"),
            ca_path.as_os_str(),
        ],
        &[],
        DEADLINE,
    );
    let ca_path = &ca_path;
    let ca = poll("the CA file", DEADLINE, || async move {
        std::fs::read(ca_path).ok()
    })
    .await;
    let https = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA certificate"))
        .build()
        .expect("HTTPS client");
    let (https, served) = (&https, &served);
    // Ready once the store has synced.
    poll("/readyz", DEADLINE, || async move {
        https
            .get(served.url("/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;

    // What `pullgate check` decides over the same objects: the index built from manifests.
    let docs: Vec<pullgate::manifests::Document> = objects
        .iter()
        .enumerate()
        .map(|(index, value)| pullgate::manifests::Document {
            source: "objects".to_owned(),
            index,
            value: value.clone(),
        })
        .collect();
    let (offline, errors) = pullgate::store::objects::index_documents(&docs, "default");
    assert!(errors.is_empty(), "{errors:?}");

    for (secret, wording) in [
        ("regcred", "has type \"Opaque\""),
        ("sh.helm.release.v1.web.v3", "is not of a pull-secret type"),
    ] {
        let review = review_naming("shop", secret);
        let resp = https
            .post(served.url("/validate?timeout=5s"))
            .json(&review)
            .send()
            .await
            .expect("POST /validate");
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.expect("AdmissionReview JSON");
        let live = &v["response"];
        assert_eq!(live["allowed"], false, "{live}");
        let message = live["status"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("pullgate: WrongSecretType: ") && message.contains(wording),
            "{message}"
        );
        let body = serde_json::to_vec(&review).expect("review");
        let checked = pullgate::admission::review(
            pullgate::admission::Endpoint::Validate,
            &body,
            &pullgate::engine::policy::Policy::default(),
            &offline,
            jiff::Timestamp::now().as_second(),
        )
        .expect("offline review");
        assert_eq!(
            checked.denied_codes,
            [pullgate::engine::Code::WrongSecretType],
            "{secret}"
        );
        if secret == "regcred" {
            let offline: Value = serde_json::from_slice(&checked.body).expect("JSON");
            assert_eq!(
                offline["response"]["status"]["message"], live["status"]["message"],
                "the same words as check"
            );
        }
    }
}

/// How soon after the API server answers again the store must be current and not stale.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

fn last_sync(metrics: &Metrics, resource: &'static str) -> f64 {
    metrics
        .store_last_sync
        .get_or_create(&ResourceLabels { resource })
        .get()
}

/// The API server goes away for `outage` while secrets, ServiceAccounts and namespace labels
/// change, and comes back on the same port (with its history compacted when `compact`, as a
/// restarted API server's fresh watch cache answers 410 to old resourceVersions). The store must
/// notice within a few seconds, keep serving, and be current and fresh again within
/// [`RECOVERY_BOUND`] of the server's return.
async fn recovers_after(outage: Duration, compact: bool) {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("a", &[("pullgate.io/inject", "false")]));
    fake.apply_secret("a", "keep", &["r.io"], "pw");
    fake.apply_secret("a", "gone", &["r.io"], "pw");
    fake.apply(fixtures::opaque_secret("a", "config", "k", "v"));
    fake.apply(fixtures::service_account("a", "old", &["keep"]));
    let (store, metrics) = synced(&fake, &[]).await;
    eventually("every watch to open", || fake.open_watches() == WATCHERS).await;

    fake.go_away().await;
    let went_away = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    poll("store_stale to turn 1", Duration::from_secs(5), || {
        std::future::ready((stale(&metrics) == 1).then_some(()))
    })
    .await;
    assert!(fake.delete("secrets", "a", "gone"));
    fake.apply_secret("a", "keep", &["quay.io"], "pw");
    fake.apply_secret("a", "new", &["r.io"], "pw");
    assert!(fake.delete("secrets", "a", "config"));
    fake.apply(fixtures::opaque_secret("a", "later", "k", "v"));
    assert!(fake.delete("serviceaccounts", "a", "old"));
    fake.apply(fixtures::service_account("a", "builder", &["new"]));
    fake.apply(fixtures::namespace(
        "a",
        &[("pullgate.io/validation", "deny")],
    ));
    // The outage lasts until the store's own gauges say its state is `outage` old.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64()
    };
    poll(
        "the store's state to be as old as the outage",
        outage + DEADLINE,
        || {
            let oldest = ["secrets", "serviceaccounts", "namespaces"]
                .map(|r| last_sync(&metrics, r))
                .into_iter()
                .fold(f64::INFINITY, f64::min);
            std::future::ready((now() - oldest >= outage.as_secs_f64()).then_some(()))
        },
    )
    .await;
    assert!(
        store.ready() && has_secret(&store, "a", "gone"),
        "the last state is served"
    );
    assert_eq!(stale(&metrics), 1);
    // A watch response already on its way when the server went away may still count (within
    // milliseconds); nothing later does, so the gauges tell how old the state is.
    for resource in ["secrets", "serviceaccounts", "namespaces"] {
        let synced = last_sync(&metrics, resource);
        assert!(
            synced <= went_away + 0.5,
            "{resource} synced at {synced}, {}s after the server went away",
            synced - went_away
        );
    }
    let compacted_rv = fake.resource_version();
    if compact {
        fake.compact();
    }
    let back_at = fake.request_log().len();
    fake.come_back();
    let back = std::time::Instant::now();

    let current = |store: &ClusterStore| {
        let v = store.view();
        let a = v.namespace("a");
        let keys: Vec<String> = a
            .secrets
            .get("keep")
            .map(|s| s.usable_keys().map(|k| k.as_str().to_owned()).collect())
            .unwrap_or_default();
        !a.secrets.contains_key("gone")
            && a.secrets.contains_key("new")
            && keys == ["quay.io"]
            && !a.other_secrets.contains_key("config")
            && a.other_secrets.contains_key("later")
            && !a.service_accounts.contains_key("old")
            && a.service_accounts.contains_key("builder")
            && a.overrides.inject.is_none()
            && a.overrides.validation == Some(pullgate::engine::policy::Validation::Deny)
    };
    poll("the store to be current again", RECOVERY_BOUND, || {
        std::future::ready(current(&store).then_some(()))
    })
    .await;
    let remaining = RECOVERY_BOUND.saturating_sub(back.elapsed());
    poll("store_stale back to 0", remaining, || {
        std::future::ready((stale(&metrics) == 0).then_some(()))
    })
    .await;
    let recovered_in = back.elapsed();
    assert!(recovered_in < RECOVERY_BOUND, "{recovered_in:?}");
    let back_wall = went_away + outage.as_secs_f64();
    for resource in ["secrets", "serviceaccounts", "namespaces"] {
        assert!(last_sync(&metrics, resource) >= back_wall, "{resource}");
    }
    let after = requests_since(&fake, back_at);
    let expired = after.iter().any(|r| {
        r.is_watch()
            && !is_initial_list(r)
            && r.param("resourceVersion")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v < compacted_rv)
    });
    assert!(
        expired,
        "the watchers resumed from where they were: {after:#?}"
    );
    if compact {
        // Relisting is part of being current: within the bound too.
        let remaining = RECOVERY_BOUND.saturating_sub(back.elapsed());
        poll("every watcher to relist after the 410", remaining, || {
            let relists = requests_since(&fake, back_at)
                .iter()
                .filter(|r| is_initial_list(r) && r.param("continue").is_none())
                .count();
            std::future::ready((relists == WATCHERS).then_some(()))
        })
        .await;
    } else {
        let relists = after.iter().filter(|r| is_initial_list(r)).count();
        assert_eq!(
            relists, 0,
            "resumed from the history without a relist: {after:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_again_within_the_bound_after_a_short_outage() {
    recovers_after(Duration::from_secs(1), false).await;
}

/// Long enough that kube's default backoff (0.8 s doubling to 30 s, client-go's) would be
/// sleeping 12.8 s or more when the server returns, and before the 410 relist once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_again_within_the_bound_after_a_long_outage_and_compaction() {
    recovers_after(Duration::from_secs(16), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_data_never_reaches_logs_or_debug_output() {
    logs::capture();
    let fake = FakeApi::start().await;
    fake.apply_secret(
        "a",
        "planted",
        &["registry.example.com", "quay.io"],
        PLANTED,
    );
    fake.apply(fixtures::dockercfg_secret(
        "a",
        "planted-legacy",
        &["old.example.com"],
        PLANTED,
    ));
    // A payload the parser rejects must not be echoed in the error either.
    let mut broken = fixtures::pull_secret("a", "broken", &[], PLANTED);
    broken["data"][".dockerconfigjson"] = fixtures::b64(format!(
        "{{\"auths\": {{\"r.io\": {{\"password\": \"{PLANTED}\""
    ))
    .into();
    fake.apply(broken);
    fake.apply(fixtures::opaque_secret("a", "opaque", "password", PLANTED));
    let (store, _metrics) = synced(&fake, &[]).await;
    assert!(has_secret(&store, "a", "planted") && has_secret(&store, "a", "broken"));
    let refused = store
        .view()
        .namespace("a")
        .secrets
        .get("broken")
        .expect("broken")
        .payload
        .as_ref()
        .err()
        .map(ToString::to_string);
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.starts_with("the payload is not valid JSON (line 1, column ")),
        "{refused:?}"
    );

    // Changes and errors are logged too: exercise those paths with the secrets present.
    fake.apply_secret("a", "planted", &["registry.example.com"], PLANTED);
    eventually("the update", || keys(&store, "a", "planted").len() == 1).await;
    fake.fail_next(3);
    fake.drop_watches();
    eventually("the failed requests", || {
        fake.request_log()
            .iter()
            .filter(|r| r.status == Some(500))
            .count()
            == 3
    })
    .await;

    let needles = [
        PLANTED.to_owned(),
        fixtures::b64(format!("robot$ci-puller:{PLANTED}")),
        fixtures::b64(format!("legacy:{PLANTED}")),
        fixtures::b64(PLANTED),
    ];
    let debug = format!("{:?}", *store.view());
    let logged = logs::text();
    assert!(logged.contains("cluster store synced"), "the capture works");
    for needle in &needles {
        assert!(
            !debug.contains(needle.as_str()),
            "the index's Debug output contains secret data"
        );
        assert!(
            !logged.contains(needle.as_str()),
            "the logs contain secret data"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cluster_decides_from_the_live_cluster() {
    support::install_crypto();
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("wh-test", &[]));
    fake.apply(fixtures::service_account("wh-test", "default", &[]));
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_out = dir.path().join("ca.pem");
    let served = ServeProcess::spawn(
        [
            OsStr::new("--cluster"),
            OsStr::new("--self-signed"),
            OsStr::new("--kubeconfig"),
            fake.kubeconfig_path().as_os_str(),
            OsStr::new("--ca-out"),
            ca_out.as_os_str(),
        ],
        &[("RUST_LOG", "debug")],
        DEADLINE,
    );
    let (listen, metrics_addr) = (served.listen.to_string(), served.metrics.to_string());

    let ca_path = dir.path().join("ca.pem");
    let ca_path = &ca_path;
    let ca = poll("the CA file", DEADLINE, || async move {
        std::fs::read(ca_path).ok()
    })
    .await;
    let https = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA certificate"))
        .build()
        .expect("HTTPS client");
    let listen = listen.as_str();
    let url = move |path: &str| format!("https://{listen}{path}");
    let https = &https;
    poll("/readyz", DEADLINE, || async move {
        https
            .get(url("/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;

    let review: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/admission-reviews/admissionreview-pod-create-mutate.json"
        ))
        .expect("fixture"),
    )
    .expect("fixture JSON");
    let review = &review;
    let mutate = || async move {
        let resp = https
            .post(url("/mutate?timeout=5s"))
            .json(&review)
            .send()
            .await
            .expect("POST /mutate");
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.expect("AdmissionReview JSON");
        v["response"].clone()
    };
    let before = mutate().await;
    assert_eq!(before["uid"], review["request"]["uid"]);
    assert!(
        before.get("patch").is_none(),
        "nothing to inject yet: {before}"
    );

    fake.apply_secret("wh-test", "regcred", &["registry.example.com"], PLANTED);
    let after = poll("the decision to change", DEADLINE, || async move {
        let r = mutate().await;
        r.get("patch").is_some().then_some(r)
    })
    .await;
    let patch =
        String::from_utf8(unb64(after["patch"].as_str().expect("patch"))).expect("UTF-8 patch");
    assert!(patch.contains("regcred"), "{patch}");

    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("pullgate_store_stale 0"), "{metrics}");
    assert!(
        metrics.contains(r#"pullgate_store_objects{kind="Secret"} 1"#),
        "{metrics}"
    );
    let output = served.lines().join("\n");
    assert!(output.contains("cluster store synced"), "{output}");
    assert!(!output.contains(PLANTED));
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64 patch")
}
