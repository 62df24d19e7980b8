//! Pull-failure attribution against the in-repo fake API server: kubelet failure Events for each
//! cause of the guide become one `PullgateDiagnosis` Event per pod and cause, counted by cause;
//! repeats are suppressed; a burst of 10,000 Events is coalesced per pod; stuck controller-owned
//! pods that injection now fixes are restarted within the limits, bare pods never.
//!
//! Every wait polls against a deadline; nothing sleeps to synchronise.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use pullgate::attribution::{run, Settings};
use pullgate::engine::policy::Policy;
use pullgate::metrics::Metrics;
use pullgate::store::kube::{ClusterStore, Scope};
use pullgate::store::Store;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use support::fake_api::FakeApi;
use support::{eventually, fixtures, poll, DEADLINE};

const IMG: &str = "registry.example.com:5000/shop/api:1.4";

struct Running {
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(fake: &FakeApi, policy: Policy) -> Running {
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn Store> = ClusterStore::start(
        fake.client().await,
        Scope::default(),
        Arc::new(Metrics::new()),
    );
    let ready = store.clone();
    eventually("the store to sync", move || ready.ready()).await;
    let mut settings = Settings::new("pullgate".to_owned(), "a".to_owned(), Vec::new());
    settings.lease_every = Duration::from_millis(50);
    let task = tokio::spawn(run(
        fake.client().await,
        store,
        Arc::new(policy),
        metrics.clone(),
        settings,
        tokio::sync::watch::channel(false).1,
    ));
    eventually("the attribution lease taken", || {
        fake.get(
            "leases.coordination.k8s.io",
            "pullgate",
            "pullgate-attribution",
        )
        .is_some()
    })
    .await;
    Running { metrics, task }
}

fn policy(restart: bool) -> Policy {
    let mut p = Policy::from_yaml("registries:\n  private: ['*']\n").expect("policy");
    p.attribution.enabled = true;
    p.attribution.events_per_second = 10_000;
    p.attribution.restart_stuck_pods = restart;
    p
}

/// A pod as the API server stores it after admission, with the kubelet's waiting status.
fn pod(ns: &str, name: &str, spec: Value, owner: Option<(&str, &str)>, waiting: &str) -> Value {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "api", "image": IMG}]);
    }
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
        "status": {"phase": "Pending", "containerStatuses": [{"name": "api", "image": IMG, "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": waiting, "message": "Back-off pulling image"}}}]},
    });
    if let Some((kind, uid)) = owner {
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind,
            "name": format!("{name}-owner"), "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    }
    p
}

/// A kubelet Event about a pod, as the kubelet's recorder writes it.
fn kubelet_event(fake: &FakeApi, ns: &str, pod: &str, n: usize, reason: &str, message: &str) {
    let uid = fake
        .get("pods", ns, pod)
        .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let now = jiff::Timestamp::now().to_string();
    fake.apply(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{pod}.{n:x}"), "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": ns, "uid": uid,
            "fieldPath": "spec.containers{api}"},
        "reason": reason, "message": message, "type": "Warning",
        "source": {"component": "kubelet", "host": "node-1"}, "reportingComponent": "kubelet",
        "firstTimestamp": now, "lastTimestamp": now, "count": n + 1,
    }));
}

fn pull_failed(fake: &FakeApi, ns: &str, pod: &str, n: usize) {
    kubelet_event(
        fake,
        ns,
        pod,
        n,
        "Failed",
        &format!("Failed to pull image \"{IMG}\": rpc error: code = Unknown desc = failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized"),
    );
}

/// The `PullgateDiagnosis` (or other pullgate) Events about a pod, read through the real client.
async fn pullgate_events(client: &kube::Client, ns: &str, pod: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=Pod,involvedObject.name={pod},reason={reason}"
    ));
    api.list(&lp).await.map(|l| l.items).unwrap_or_default()
}

/// The value of a counter or gauge sample whose labels include all of `labels`.
fn sample(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Wait until a repeated failure was processed (and found a duplicate) and the queue is empty.
async fn repeats_processed(m: &Metrics) {
    eventually("the repeats processed", || {
        sample(
            m,
            "pullgate_attribution_events_total",
            &[("outcome", "duplicate")],
        ) >= 1.0
            && sample(m, "pullgate_attribution_queued_pods", &[]) == 0.0
    })
    .await;
}

fn failures(m: &Metrics, ns: &str, cause: &str) -> f64 {
    sample(
        m,
        "pullgate_image_pull_failures_total",
        &[("namespace", ns), ("cause", cause)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cause_is_named_on_the_pod_once() {
    support::install_crypto();
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    let covering = ["registry.example.com:5000"];
    let password = "attr-s3cret-pw";
    // (namespace, setup, pod spec, expected cause, words of the fix)
    fake.apply(fixtures::service_account("missing", "default", &[]));
    // No secret anywhere covers quay.io (the Event names no image the pod has: all images are considered).
    let quay = json!({"containers": [{"name": "api", "image": "quay.io/acme/api:1"}]});
    fake.apply(pod("missing", "api", quay, None, "ImagePullBackOff"));

    fake.apply_secret("mismatch", "regcred", &covering, password);
    fake.apply(pod(
        "mismatch",
        "api",
        json!({"imagePullSecrets": [{"name": "regcrd"}]}),
        None,
        "ImagePullBackOff",
    ));

    fake.apply_secret("port", "regcred", &["registry.example.com"], password);
    fake.apply(pod(
        "port",
        "api",
        json!({"imagePullSecrets": [{"name": "regcred"}]}),
        None,
        "ImagePullBackOff",
    ));

    fake.apply_secret("unpatched", "regcred", &covering, password);
    fake.apply(fixtures::service_account("unpatched", "default", &[]));
    fake.apply(pod("unpatched", "api", json!({}), None, "ImagePullBackOff"));

    fake.apply_secret("wrongsa", "regcred", &covering, password);
    fake.apply(fixtures::service_account("wrongsa", "default", &[]));
    fake.apply(fixtures::service_account(
        "wrongsa",
        "builder",
        &["regcred"],
    ));
    fake.apply(pod("wrongsa", "api", json!({}), None, "ImagePullBackOff"));

    fake.apply_secret("vault", "regcred", &covering, password);
    fake.apply(pod(
        "isolated",
        "api",
        json!({"imagePullSecrets": [{"name": "regcred"}]}),
        None,
        "ImagePullBackOff",
    ));

    let mut mirror = pod("static", "etcd-node-1", json!({}), None, "ImagePullBackOff");
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
    fake.apply(mirror);

    fake.apply_secret("fine", "regcred", &covering, password);
    fake.apply(pod(
        "fine",
        "api",
        json!({"imagePullSecrets": [{"name": "regcred"}]}),
        None,
        "ImagePullBackOff",
    ));

    let run = start(&fake, policy(false)).await;
    let client = fake.client().await;
    let cases = [
        (
            "missing",
            "api",
            "SecretMissing",
            "kubectl create secret docker-registry",
        ),
        (
            "mismatch",
            "api",
            "SecretNameMismatch",
            "did you mean \\\"regcred\\\"",
        ),
        (
            "port",
            "api",
            "RegistryMismatch",
            "registry.example.com:5000",
        ),
        (
            "unpatched",
            "api",
            "ServiceAccountNotPatched",
            "kubectl patch serviceaccount default",
        ),
        (
            "wrongsa",
            "api",
            "WrongServiceAccount",
            "serviceAccountName: builder",
        ),
        (
            "isolated",
            "api",
            "NamespaceIsolation",
            "exists only in namespace(s)",
        ),
        ("static", "etcd-node-1", "StaticPod", "credential provider"),
        (
            "fine",
            "api",
            "CredentialsLookRight",
            "refused the credentials",
        ),
    ];
    // Excluded by the policy: delivered first on the same watch, so once the others are diagnosed it was seen.
    fake.apply(pod(
        "kube-system",
        "coredns",
        json!({}),
        None,
        "ImagePullBackOff",
    ));
    pull_failed(&fake, "kube-system", "coredns", 0);
    for (ns, name, _, _) in cases {
        pull_failed(&fake, ns, name, 0);
    }
    for (ns, name, cause, fix) in cases {
        let events = poll(&format!("a diagnosis on {ns}/{name}"), DEADLINE, || async {
            let e = pullgate_events(&client, ns, name, "PullgateDiagnosis").await;
            (!e.is_empty()).then_some(e)
        })
        .await;
        assert_eq!(events.len(), 1, "{ns}: one Event");
        let e = &events[0];
        let message = e.message.clone().unwrap_or_default();
        let escaped = serde_json::to_string(&message).unwrap_or_default();
        assert!(escaped.contains(fix), "{ns}: {message}");
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reporting_component.as_deref(), Some("pullgate"));
        let pod_uid = fake.get("pods", ns, name).unwrap()["metadata"]["uid"].clone();
        assert_eq!(
            e.involved_object.uid.as_deref(),
            pod_uid.as_str(),
            "kubectl describe pod selects Events by UID"
        );
        assert_eq!(failures(&run.metrics, ns, cause), 1.0, "{ns}: {cause}");
        assert!(
            !message.contains(password),
            "no credential in the diagnosis"
        );
    }

    assert!(
        pullgate_events(&client, "kube-system", "coredns", "PullgateDiagnosis")
            .await
            .is_empty()
    );
    assert_eq!(
        sample(
            &run.metrics,
            "pullgate_image_pull_failures_total",
            &[("namespace", "kube-system")]
        ),
        0.0
    );

    // The kubelet keeps retrying: more Events for the same pod, same cause, one more Event type.
    for n in 1..6 {
        pull_failed(&fake, "port", "api", n);
    }
    kubelet_event(
        &fake,
        "port",
        "api",
        9,
        "BackOff",
        &format!("Back-off pulling image \"{IMG}\""),
    );
    kubelet_event(
        &fake,
        "port",
        "api",
        10,
        "BackOff",
        "Back-off restarting failed container api in pod api",
    );
    repeats_processed(&run.metrics).await;
    assert_eq!(
        pullgate_events(&client, "port", "api", "PullgateDiagnosis")
            .await
            .len(),
        1
    );
    assert_eq!(failures(&run.metrics, "port", "RegistryMismatch"), 1.0);

    // The cause changes (the pod's secret is deleted; same-named ones exist elsewhere): a new diagnosis.
    fake.delete("secrets", "port", "regcred");
    let diagnosed = |m: &Metrics| {
        sample(
            m,
            "pullgate_attribution_events_total",
            &[("outcome", "diagnosed")],
        )
    };
    let before = diagnosed(&run.metrics);
    let mut n = 20;
    poll("a second cause diagnosed", DEADLINE, || {
        n += 1;
        pull_failed(&fake, "port", "api", n);
        std::future::ready((diagnosed(&run.metrics) > before).then_some(()))
    })
    .await;
    assert_eq!(failures(&run.metrics, "port", "NamespaceIsolation"), 1.0);
    poll("two Events on the pod, one per cause", DEADLINE, || async {
        (pullgate_events(&client, "port", "api", "PullgateDiagnosis")
            .await
            .len()
            == 2)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_thousand_events_is_coalesced_per_pod() {
    support::install_crypto();
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    fake.apply(fixtures::service_account("burst", "default", &[]));
    const PODS: usize = 200;
    for p in 0..PODS {
        fake.apply(pod(
            "burst",
            &format!("api-{p}"),
            json!({}),
            None,
            "ImagePullBackOff",
        ));
    }
    // 10,000 Events (50 retries of 200 pods), all there before pullgate starts: the initial list delivers them at once.
    for n in 0..50 {
        for p in 0..PODS {
            pull_failed(&fake, "burst", &format!("api-{p}"), n * PODS + p);
        }
    }
    let run = start(&fake, policy(false)).await;
    let offered = || {
        ["queued", "coalesced", "dropped"]
            .iter()
            .map(|o| {
                sample(
                    &run.metrics,
                    "pullgate_attribution_events_total",
                    &[("outcome", o)],
                )
            })
            .sum::<f64>()
    };
    eventually("all 10,000 Events offered", || offered() >= 10_000.0).await;
    eventually("every pod diagnosed once", || {
        failures(&run.metrics, "burst", "SecretMissing") == PODS as f64
    })
    .await;
    let queued = sample(
        &run.metrics,
        "pullgate_attribution_events_total",
        &[("outcome", "queued")],
    );
    assert!(
        queued <= 2.0 * PODS as f64,
        "queued {queued}: entries per pod, not per Event"
    );
    assert_eq!(
        sample(
            &run.metrics,
            "pullgate_attribution_events_total",
            &[("outcome", "dropped")]
        ),
        0.0
    );
    let client = fake.client().await;
    let api: Api<Event> = Api::namespaced(client, "burst");
    let written = poll("one diagnosis Event per pod", DEADLINE, || async {
        let n = api
            .list(&ListParams::default().fields("reason=PullgateDiagnosis"))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        (n >= PODS).then_some(n)
    })
    .await;
    assert_eq!(written, PODS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_pods_are_restarted_within_limits_and_bare_pods_never() {
    support::install_crypto();
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    fake.apply(fixtures::service_account("shop", "default", &[]));
    // The secret exists now: the pods were created before it, so injection fixes them on recreation.
    fake.apply_secret("shop", "regcred", &["registry.example.com:5000"], "pw");
    for p in 0..4 {
        fake.apply(pod(
            "shop",
            &format!("web-{p}"),
            json!({}),
            Some(("ReplicaSet", "rs-web")),
            "ImagePullBackOff",
        ));
    }
    fake.apply(pod("shop", "bare", json!({}), None, "ImagePullBackOff"));
    fake.apply(pod(
        "shop",
        "running",
        json!({}),
        Some(("ReplicaSet", "rs-run")),
        "ContainerCreating",
    ));
    // Not fixable by injection: the only secret's port differs.
    fake.apply_secret("other", "regcred", &["registry.example.com"], "pw");
    fake.apply(pod(
        "other",
        "db-0",
        json!({}),
        Some(("StatefulSet", "sts-db")),
        "ImagePullBackOff",
    ));

    let mut p = policy(true);
    p.attribution.max_restart_percent = 25;
    let run = start(&fake, p).await;
    let client = fake.client().await;
    for name in ["web-0", "web-1", "web-2", "web-3", "bare", "running"] {
        pull_failed(&fake, "shop", name, 0);
    }
    pull_failed(&fake, "other", "db-0", 0);

    let alive = |ns: &str, names: &[&str]| {
        names
            .iter()
            .filter(|n| fake.get("pods", ns, n).is_some())
            .count()
    };
    let webs = ["web-0", "web-1", "web-2", "web-3"];
    eventually("one web pod restarted", || alive("shop", &webs) == 3).await;
    eventually("all seven pods diagnosed", || {
        sample(
            &run.metrics,
            "pullgate_attribution_events_total",
            &[("outcome", "diagnosed")],
        ) >= 7.0
    })
    .await;
    // More failures of the remaining web pods: still at most 25 % of the ReplicaSet (1 of 4) in flight.
    for (n, name) in webs.iter().enumerate() {
        if fake.get("pods", "shop", name).is_some() {
            pull_failed(&fake, "shop", name, 10 + n);
        }
    }
    repeats_processed(&run.metrics).await;
    assert_eq!(
        alive("shop", &webs),
        3,
        "one restart per 4-pod workload at once"
    );
    assert!(
        fake.get("pods", "shop", "bare").is_some(),
        "bare pods are never deleted"
    );
    assert!(
        fake.get("pods", "shop", "running").is_some(),
        "not stuck on a pull"
    );
    assert!(
        fake.get("pods", "other", "db-0").is_some(),
        "injection would not fix it"
    );
    assert_eq!(
        sample(
            &run.metrics,
            "pullgate_pod_restarts_total",
            &[("namespace", "shop"), ("cause", "ServiceAccountNotPatched")]
        ),
        1.0
    );
    let restarted = webs
        .iter()
        .find(|n| fake.get("pods", "shop", n).is_none())
        .copied()
        .unwrap_or_default();
    let events = poll("the restart recorded as an Event", DEADLINE, || async {
        let e = pullgate_events(&client, "shop", restarted, "PullgateRestartedPod").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    let message = events[0].message.clone().unwrap_or_default();
    assert!(message.contains("ReplicaSet web-"), "{message}");
    let deletes: Vec<_> = fake
        .request_log()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_with_the_same_name_is_never_deleted() {
    support::install_crypto();
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    fake.apply(fixtures::service_account("db", "default", &[]));
    fake.apply_secret("db", "regcred", &["registry.example.com:5000"], "pw");
    fake.apply(pod(
        "db",
        "db-0",
        json!({}),
        Some(("StatefulSet", "sts")),
        "ImagePullBackOff",
    ));
    let client = fake.client().await;
    // What pullgate sends: a delete whose UID precondition names a pod that was replaced.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "db");
    let params = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("an-older-pod".to_owned()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let err = pods
        .delete("db-0", &params)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("Precondition failed: UID"), "{err}");
    assert!(fake.get("pods", "db", "db-0").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_attribution_on_one_replica_only() {
    support::install_crypto();
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    fake.apply(fixtures::service_account("shop", "default", &[]));
    fake.apply_secret("shop", "regcred", &["registry.example.com"], "pw");
    fake.apply(pod(
        "shop",
        "api",
        json!({"imagePullSecrets": [{"name": "regcred"}]}),
        None,
        "ImagePullBackOff",
    ));
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("policy.yaml");
    std::fs::write(&config, "attribution:\n  enabled: true\n").expect("policy");
    let kubeconfig = fake.kubeconfig_path().to_path_buf();
    // Two replicas, as the chart runs them: the Lease decides which one acts.
    let replicas: Vec<_> = ["pullgate-a", "pullgate-b"]
        .iter()
        .map(|name| {
            let (kubeconfig, config) = (kubeconfig.clone(), config.clone());
            tokio::task::spawn_blocking(move || {
                support::serve::ServeProcess::spawn(
                    [
                        "--cluster".as_ref(),
                        "--self-signed".as_ref(),
                        "--kubeconfig".as_ref(),
                        kubeconfig.as_os_str(),
                        "--config".as_ref(),
                        config.as_os_str(),
                    ],
                    &[
                        ("POD_NAMESPACE", "pullgate"),
                        ("POD_NAME", name),
                        ("RUST_LOG", "info"),
                    ],
                    DEADLINE,
                )
            })
        })
        .collect();
    let mut procs = Vec::new();
    for r in replicas {
        procs.push(r.await.expect("spawn"));
    }
    let holder = poll("an attribution leader", DEADLINE, || {
        std::future::ready(
            fake.get(
                "leases.coordination.k8s.io",
                "pullgate",
                "pullgate-attribution",
            )
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned)),
        )
    })
    .await;
    assert!(holder.starts_with("pullgate-"), "{holder}");
    let client = fake.client().await;
    let mut n = 0;
    poll("a diagnosis written by the leader", DEADLINE, || {
        n += 1;
        pull_failed(&fake, "shop", "api", n % 3);
        let client = client.clone();
        async move {
            let e = pullgate_events(&client, "shop", "api", "PullgateDiagnosis").await;
            (!e.is_empty()).then_some(())
        }
    })
    .await;
    // More failures: the follower never writes, the leader writes once per cause.
    for i in 10..20 {
        pull_failed(&fake, "shop", "api", i);
    }
    let diagnosed = |p: &support::serve::ServeProcess| {
        p.lines()
            .iter()
            .filter(|l| l.contains("image pull failure diagnosed"))
            .count()
    };
    let leader = procs
        .iter()
        .position(|p| p.lines().iter().any(|l| l.contains("\"leading\":true")))
        .expect("the leader logged its leadership");
    eventually("the leader logged its diagnosis", || {
        diagnosed(&procs[leader]) == 1
    })
    .await;
    let events = pullgate_events(&client, "shop", "api", "PullgateDiagnosis").await;
    assert_eq!(
        events.len(),
        1,
        "one Event per pod and cause, from one replica"
    );
    assert!(
        events[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("registry differs")),
        "{:?}",
        events[0].message
    );
    assert_eq!(
        diagnosed(&procs[1 - leader]),
        0,
        "the follower stays silent"
    );
    let log = procs[leader].lines().join("\n");
    assert!(
        !log.contains("robot$ci-puller") && !log.contains("\"pw\""),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_kubelet_cannot_read_is_malformed_and_a_started_pod_is_history() {
    support::install_crypto();
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    fake.apply(fixtures::service_account("shop", "default", &[]));
    let planted = "attr-planted-auth";
    fake.apply(fixtures::malformed_pull_secret(
        "shop",
        "mal",
        "registry.example.com:5000",
        &format!("%{planted}"),
    ));
    let keyring = "illegal base64 data at input byte 0";
    fake.apply(pod(
        "shop",
        "api",
        json!({"imagePullSecrets": [{"name": "mal"}]}),
        None,
        keyring,
    ));
    // A pod whose pull failed once, then started: its containers run.
    fake.apply_secret("shop", "regcred", &["registry.example.com:5000"], "pw");
    let mut flaky = pod(
        "shop",
        "flaky",
        json!({"imagePullSecrets": [{"name": "regcred"}]}),
        None,
        "ImagePullBackOff",
    );
    flaky["status"] = json!({"phase": "Running", "containerStatuses": [{"name": "api", "image": IMG,
        "imageID": "registry.example.com:5000/shop/api@sha256:0123", "ready": true, "started": true,
        "restartCount": 0, "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}]});
    fake.apply(flaky);

    let run = start(&fake, policy(false)).await;
    let client = fake.client().await;
    pull_failed(&fake, "shop", "flaky", 0);
    kubelet_event(
        &fake,
        "shop",
        "api",
        0,
        "Failed",
        &format!("Error: {keyring}"),
    );
    let events = poll("a diagnosis on shop/api", DEADLINE, || async {
        let e = pullgate_events(&client, "shop", "api", "PullgateDiagnosis").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    let message = events[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("an imagePullSecret is unusable")
            && message.contains("secret \"mal\"")
            && message.contains("not valid base64")
            && message.contains(keyring),
        "{message}"
    );
    assert!(
        !message.contains(planted),
        "no credential material: {message}"
    );
    assert_eq!(failures(&run.metrics, "shop", "MalformedSecret"), 1.0);

    eventually("the started pod's failure set aside", || {
        sample(
            &run.metrics,
            "pullgate_attribution_events_total",
            &[("outcome", "started")],
        ) == 1.0
    })
    .await;
    assert!(
        pullgate_events(&client, "shop", "flaky", "PullgateDiagnosis")
            .await
            .is_empty(),
        "no diagnosis for a pod whose containers all run"
    );
    assert_eq!(
        sample(
            &run.metrics,
            "pullgate_image_pull_failures_total",
            &[("namespace", "shop")]
        ),
        1.0,
        "only the malformed secret's pod is counted"
    );
}
