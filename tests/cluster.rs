//! The cluster store against the in-repo fake API server: initial sync and readiness, live
//! changes, resumed and expired watches, outages, the requests actually sent, secret hygiene,
//! and the real `pullgate serve --cluster` answering AdmissionReviews end to end.
//!
//! Every wait polls against a deadline; nothing sleeps to synchronise.

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

fn lists_of(log: &[LoggedRequest], path: &str) -> usize {
    log.iter().filter(|r| r.path == path && r.is_list()).count()
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
    eventually("the four initial lists to reach the server", || {
        fake.request_log().iter().filter(|r| r.is_list()).count() == 4
    })
    .await;
    assert!(!store.ready(), "not ready while the initial lists are held");
    fake.set_stalled(false);
    eventually("the store to sync", || store.ready()).await;

    let view = store.view();
    assert_eq!(view.secret_count(), 2, "only pull secrets are received");
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
        Some(pullgate::policy::Validation::Deny)
    );
    drop(view);
    assert_eq!(
        metrics
            .store_objects
            .get_or_create(&KindLabels { kind: "Secret" })
            .get(),
        2
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
async fn sends_field_selectors_pages_and_resumes_from_bookmarks() {
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
    for ty in [DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE] {
        let selector = format!("type={ty}");
        let list = log.iter().find(|r| {
            r.path == "/api/v1/secrets"
                && r.is_list()
                && r.param("fieldSelector") == Some(&selector)
        });
        assert_eq!(
            list.and_then(|r| r.param("limit")),
            Some("500"),
            "list of {ty} in {log:#?}"
        );
        let watch = log.iter().find(|r| {
            r.path == "/api/v1/secrets"
                && r.is_watch()
                && r.param("fieldSelector") == Some(&selector)
        });
        let watch = watch.unwrap_or_else(|| panic!("no watch of {ty}"));
        assert_eq!(watch.param("allowWatchBookmarks"), Some("true"));
        assert!(watch
            .param("resourceVersion")
            .is_some_and(|rv| !rv.is_empty()));
    }
    assert!(
        log.iter()
            .all(|r| r.path != "/api/v1/secrets" || r.param("fieldSelector").is_some()),
        "never an unfiltered secret request"
    );
    let pages: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.path == "/api/v1/serviceaccounts" && r.is_list())
        .collect();
    assert_eq!(pages.len(), 3);
    assert!(pages[1].param("continue").is_some() && pages[2].param("continue").is_some());
    assert!(log
        .iter()
        .any(|r| r.path == "/api/v1/namespaces" && r.is_watch()));
    assert!(log.iter().all(|r| r.authorized));

    // A write the watchers do not see (a ConfigMap) moves the resourceVersion; bookmarks carry
    // it to them, so a reconnect resumes from there rather than from the old version.
    eventually("every watch to open", || fake.open_watches() == 4).await;
    fake.apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns-0"}}));
    let moved_past = fake.resource_version();
    let secret_watches = |fake: &FakeApi| -> Vec<usize> {
        let log = fake.request_log();
        (0..log.len())
            .filter(|i| log[*i].is_watch() && log[*i].path == "/api/v1/secrets")
            .collect()
    };
    let watching = secret_watches(&fake);
    assert_eq!(watching.len(), 2);
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
        secret_watches(&fake).len() == 4
    })
    .await;
    let log = fake.request_log();
    for i in &secret_watches(&fake)[2..] {
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
        2,
        "resumed without relisting"
    );
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
    eventually("every watch to open", || fake.open_watches() == 4).await;
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
        r.param("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v < compacted_rv)
    };
    assert!(
        after
            .iter()
            .any(|r| r.is_watch() && r.status == Some(200) && expired(r)),
        "a watch from before the compaction, answered 200 with the 410 ERROR event: {after:#?}"
    );
    eventually("one relist per secret type", || {
        lists_of(&requests_since(&fake, compacted_at), "/api/v1/secrets") == 2
    })
    .await;
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
    assert!(store
        .view()
        .namespace("a")
        .secrets
        .get("broken")
        .expect("broken")
        .payload
        .is_err());

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
