//! `pullgate audit --verify` against the real `docker-registry` (htpasswd) through the fake API
//! server, and the audit and PolicyReport cleanup of a namespace-scoped install
//! (`cluster.watchNamespaces`), which must never list cluster-wide.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use pullgate::audit::cluster::{self, Options};
use pullgate::audit::policyreport::policy_reports;
use pullgate::audit::publish::publish_watched;
use pullgate::engine::policy::Policy;
use pullgate::metrics::Metrics;
use pullgate::store::kube::{ClusterStore, Scope};
use pullgate::store::Store;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use support::fake_api::{FakeApi, LoggedRequest};
use support::fixtures;
use support::registry::{self, Auth, RealRegistry, TestPki};
use support::workloads::{codes, pod_spec, result, workload};

const PLANTED: &str = "AuditVerify-Planted-Pw-8kqz";
const WRONG: &str = "AuditVerify-Wrong-Pw-3vnd";
/// The username `fixtures::docker_config_json` writes.
const USER: &str = "robot$ci-puller";

fn audit(kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    // The fake API keeps serving on the runtime's other worker while this one waits.
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_pullgate"))
            .arg("audit")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .env_remove("PULLGATE_CONFIG")
            .output()
            .expect("run pullgate audit")
    });
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    for secret in [PLANTED, WRONG] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "credential printed:\n{stdout}{stderr}"
        );
    }
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_rejected_credentials_and_passes_good_ones_without_printing_them() {
    registry::require_real_registry(
        "verify_names_rejected_credentials_and_passes_good_ones_without_printing_them",
    );
    let pki = TestPki::new();
    let reg = RealRegistry::start(&pki, Auth::Htpasswd(vec![(USER.into(), PLANTED.into())])).await;
    let key = reg.key();
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("shop", &[]));
    fake.apply(fixtures::service_account("shop", "default", &[]));
    fake.apply_secret("shop", "good", &[&key], PLANTED);
    fake.apply_secret("shop", "bad", &[&key], WRONG);
    let image = format!("{key}/shop/app:1");
    for (name, secret) in [("api", "good"), ("web", "bad")] {
        fake.apply(workload(
            "Deployment",
            "shop",
            name,
            pod_spec(&image, &[secret], "default"),
            None,
        ));
    }
    let policy = tempfile::NamedTempFile::new().expect("policy file");
    let verify =
        registry::verify_policy(false, "5s", &[(&key, Some(pki.ca_file.as_path()), false)]);
    std::fs::write(policy.path(), format!("inject: false\n{verify}")).expect("write policy");
    let config = policy.path().to_str().expect("utf-8 path");

    let (code, stdout, stderr) = audit(
        fake.kubeconfig_path(),
        &["-n", "shop", "--config", config, "--verify", "-o", "json"],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    let web = codes(result(&report, "Deployment", "web"));
    assert!(
        web.contains(&"CredentialsRejected".to_owned()),
        "{report:#}"
    );
    let api = codes(result(&report, "Deployment", "api"));
    assert!(
        api.is_empty(),
        "good credentials flagged: {api:?}\n{report:#}"
    );
    let notes = report["notes"].to_string();
    assert!(notes.contains("secret shop/bad: registry"), "{notes}");
    assert!(!notes.contains("secret shop/good"), "{notes}");
    // Each secret proven once: anonymous /v2/, then with its credential.
    assert_eq!(reg.probe_requests(), 4, "{}", reg.log_text());

    // Without --verify nothing is sent and the bad credential goes unnoticed.
    let (code, stdout, _) = audit(
        fake.kubeconfig_path(),
        &["-n", "shop", "--config", config, "-o", "json"],
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(reg.probe_requests(), 4, "{}", reg.log_text());
}

/// Namespaced resources the audit and its store read.
const NAMESPACED: [&str; 12] = [
    "pods",
    "replicationcontrollers",
    "deployments",
    "statefulsets",
    "daemonsets",
    "replicasets",
    "jobs",
    "cronjobs",
    "secrets",
    "serviceaccounts",
    "policyreports",
    "events",
];

/// Lists and watches of namespaced resources made outside `allowed` namespaces (a Role per
/// namespace would refuse them).
fn outside(log: &[LoggedRequest], allowed: &[&str]) -> Vec<String> {
    log.iter()
        .filter(|r| r.method == "GET" && (r.is_list() || r.is_watch()))
        .filter(|r| {
            NAMESPACED
                .iter()
                .any(|p| r.path.ends_with(&format!("/{p}")))
        })
        .filter(|r| {
            !allowed
                .iter()
                .any(|ns| r.path.contains(&format!("/namespaces/{ns}/")))
        })
        .map(|r| r.path.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_scoped_audit_and_report_cleanup_list_only_inside_watched_namespaces() {
    let fake = FakeApi::start().await;
    fake.install_policy_report_crd(true);
    for ns in ["a", "b", "c"] {
        fake.apply(fixtures::namespace(ns, &[]));
        fake.apply(fixtures::service_account(ns, "default", &[]));
        fake.apply(workload(
            "Deployment",
            ns,
            "app",
            pod_spec("registry.example.com/app:1", &["gone"], "default"),
            None,
        ));
    }
    // The CLI with --namespaces: both watched namespaces audited, c never read.
    let (code, stdout, stderr) = audit(
        fake.kubeconfig_path(),
        &["--namespaces", "a,b", "-o", "json"],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    let namespaces: Vec<&str> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["namespace"].as_str())
        .collect();
    assert_eq!(namespaces, ["a", "b"], "{report:#}");
    let log = fake.request_log();
    let cli_requests = log.len();
    assert!(
        log.iter()
            .any(|r| r.path == "/apis/apps/v1/namespaces/b/deployments"),
        "{log:#?}"
    );
    assert_eq!(outside(&log, &["a", "b"]), Vec::<String>::new());

    // As serve's background pass runs it: the scope comes from the webhook's store (started
    // with --watch-namespace b,a), then the PolicyReport cleanup of that scope.
    let client = fake.client().await;
    let policy = Policy::from_yaml("inject: false\n").expect("policy");
    let store = ClusterStore::start(
        client.clone(),
        Scope::for_policy(vec!["b".into(), "a".into(), "b".into()], &policy),
        Arc::new(Metrics::new()),
    );
    support::eventually("the store to sync", || store.ready()).await;
    let watched = store.watched_namespaces();
    assert_eq!(watched, ["a", "b"]);
    let options = Options {
        watch_namespaces: watched.clone(),
        slim: true,
        ..Options::default()
    };
    let now = jiff::Timestamp::now().as_second();
    let (report, _) = cluster::pass(&client, &*store, &policy, &options, now)
        .await
        .expect("audit");
    let reports = policy_reports(&report, now);
    assert_eq!(reports.len(), 2, "{:?}", reports.keys());
    let stats = publish_watched(&client, None, &watched, reports.into_values())
        .await
        .expect("publish");
    assert_eq!(stats.created, 2, "{stats:?}");
    let log = fake.request_log();
    let cleanup: Vec<&str> = log[cli_requests..]
        .iter()
        .filter(|r| r.is_list() && r.path.ends_with("/policyreports"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        cleanup,
        [
            "/apis/wgpolicyk8s.io/v1alpha2/namespaces/a/policyreports",
            "/apis/wgpolicyk8s.io/v1alpha2/namespaces/b/policyreports"
        ]
    );
    assert_eq!(outside(&log, &["a", "b"]), Vec::<String>::new());
}
