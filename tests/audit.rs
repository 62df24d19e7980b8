//! `pullgate audit` (the real binary) against the in-repo fake API server: each cause, folding of
//! pods under their workloads, a clean cluster, pagination across pages with an expired continue
//! token, the JSON schema, the exit codes, and that credentials are never printed.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use support::fake_api::FakeApi;
use support::fixtures;
use support::workloads::{codes, pod, pod_spec, result, workload};

const PLANTED: &str = "Audit-Planted-Pw-5mzq";

/// The base cluster: namespace shop with an unpatched default ServiceAccount, a pull secret for
/// registry.example.com, an Opaque secret, and a pull secret that exists only in payments.
async fn cluster() -> FakeApi {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("shop", &[]));
    fake.apply(fixtures::service_account("shop", "default", &[]));
    fake.apply_secret("shop", "regcred", &["registry.example.com"], PLANTED);
    fake.apply(fixtures::opaque_secret(
        "shop", "notpull", "password", PLANTED,
    ));
    fake.apply_secret("payments", "payreg", &["pay.example.com"], PLANTED);
    fake
}

/// A policy file that turns injection off, so that each cause is the next pod's failure.
fn no_inject() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("policy file");
    std::fs::write(f.path(), "inject: false\n").expect("write policy");
    f
}

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
    assert!(
        !stdout.contains(PLANTED) && !stderr.contains(PLANTED),
        "credential printed:\n{stdout}{stderr}"
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cause_is_named_with_its_fix_and_pods_are_summarised_under_their_workload() {
    let fake = cluster().await;
    let image = "registry.example.com/shop/api:1";
    // Secret deleted: a Deployment, its ReplicaSet and 3 pods named "apicred", which is then deleted.
    fake.apply_secret("shop", "apicred", &["registry.example.com"], PLANTED);
    let dep = fake.apply(workload(
        "Deployment",
        "shop",
        "api",
        pod_spec(image, &["apicred"], "default"),
        None,
    ));
    let rs = fake.apply(workload(
        "ReplicaSet",
        "shop",
        "api-7d9",
        pod_spec(image, &["apicred"], "default"),
        Some(&dep),
    ));
    for i in 0..3 {
        fake.apply(pod(
            "shop",
            &format!("api-7d9-{i}"),
            pod_spec(image, &["apicred"], "default"),
            Some(&rs),
        ));
    }
    assert!(fake.delete("secrets", "shop", "apicred"));
    // ServiceAccount unpatched: no secret named anywhere, the default ServiceAccount has none.
    fake.apply(workload(
        "Deployment",
        "shop",
        "worker",
        pod_spec(image, &[], "default"),
        None,
    ));
    // Registry changed: the image moved to a port regcred does not cover.
    fake.apply(workload(
        "StatefulSet",
        "shop",
        "db",
        pod_spec(
            "registry.example.com:5000/shop/db:1",
            &["regcred"],
            "default",
        ),
        None,
    ));
    // The secret exists only in another namespace.
    fake.apply(workload(
        "DaemonSet",
        "shop",
        "agent",
        pod_spec("pay.example.com/agent:1", &["payreg"], "default"),
        None,
    ));
    // Wrong secret type.
    fake.apply(workload(
        "CronJob",
        "shop",
        "report",
        pod_spec(image, &["notpull"], "default"),
        None,
    ));
    // Fine: a Job and a ReplicationController naming regcred.
    fake.apply(workload(
        "Job",
        "shop",
        "migrate",
        pod_spec(image, &["regcred"], "default"),
        None,
    ));
    let rc = fake.apply(workload(
        "ReplicationController",
        "shop",
        "legacy",
        pod_spec(image, &["regcred"], "default"),
        None,
    ));
    fake.apply(pod(
        "shop",
        "legacy-x1",
        pod_spec(image, &["regcred"], "default"),
        Some(&rc),
    ));
    // A bare pod whose secret was deleted.
    fake.apply(pod(
        "shop",
        "debug",
        pod_spec(image, &["apicred"], "default"),
        None,
    ));

    let policy = no_inject();
    let config = policy.path().to_str().expect("utf-8 path");
    let (code, stdout, stderr) = audit(
        fake.kubeconfig_path(),
        &["-n", "shop", "--config", config, "-o", "json"],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report = json_of(&stdout);
    let api = result(&report, "Deployment", "api");
    assert_eq!(codes(api), ["SecretNotFound"], "{api:#}");
    assert_eq!(
        (api["scope"].as_str(), api["verdict"].as_str()),
        (Some("workload"), Some("fail"))
    );
    assert_eq!(api["pods"]["total"], 3, "{api:#}");
    assert_eq!(api["pods"]["withProblems"], 3);
    assert_eq!(api["pods"]["causes"][0]["code"], "SecretNotFound");
    assert_eq!(api["pods"]["causes"][0]["pods"], 3);
    assert!(
        codes(result(&report, "Deployment", "worker"))
            .contains(&"ServiceAccountNotPatched".to_owned()),
        "{report:#}"
    );
    assert!(
        codes(result(&report, "StatefulSet", "db")).contains(&"RegistryMismatch".to_owned()),
        "{report:#}"
    );
    assert!(
        codes(result(&report, "DaemonSet", "agent")).contains(&"SecretInOtherNamespace".to_owned()),
        "{report:#}"
    );
    assert!(
        codes(result(&report, "CronJob", "report")).contains(&"WrongSecretType".to_owned()),
        "{report:#}"
    );
    for (kind, name) in [("Job", "migrate"), ("ReplicationController", "legacy")] {
        let r = result(&report, kind, name);
        assert_eq!(r["verdict"], "ok", "{r:#}");
    }
    assert_eq!(
        result(&report, "ReplicationController", "legacy")["pods"]["total"],
        1
    );
    // The ReplicaSet is folded into its Deployment, not audited on its own.
    let kinds: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert!(!kinds.contains(&"ReplicaSet"), "{kinds:?}");
    let debug = result(&report, "Pod", "debug");
    assert_eq!(debug["scope"], "pod");
    assert_eq!(codes(debug), ["SecretNotFound"]);
    assert_eq!(report["summary"]["workloads"], 7, "{:#}", report["summary"]);
    assert_eq!(report["summary"]["pods"], 5);
    assert_eq!(report["summary"]["podsWithProblems"], 4);

    // The same as a table: one row per problem with its cause and fix.
    let (code, text, _) = audit(fake.kubeconfig_path(), &["-n", "shop", "--config", config]);
    assert_eq!(code, 1);
    let row = |w: &str| {
        text.lines()
            .find(|l| l.starts_with(w))
            .unwrap_or_else(|| panic!("no row for {w} in\n{text}"))
    };
    assert!(text.starts_with("WORKLOAD"), "{text}");
    assert!(
        row("Deployment/api ").contains("FAIL")
            && row("Deployment/api ").contains("SecretNotFound"),
        "{text}"
    );
    assert!(
        row("StatefulSet/db ").contains("RegistryMismatch"),
        "{text}"
    );
    assert!(
        row("StatefulSet/db ").contains("--docker-server=registry.example.com:5000"),
        "{text}"
    );
    assert!(row("CronJob/report ").contains("WrongSecretType"), "{text}");
    assert!(row("Pod/debug ").contains("SecretNotFound"), "{text}");
    assert!(
        text.contains("3 of 3 pods (e.g. api-7d9-0): SecretNotFound"),
        "{text}"
    );
    assert!(!text.contains("Job/migrate "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_cluster_exits_0() {
    let fake = cluster().await;
    let image = "registry.example.com/shop/web:1";
    let dep = fake.apply(workload(
        "Deployment",
        "shop",
        "web",
        pod_spec(image, &["regcred"], "default"),
        None,
    ));
    let rs = fake.apply(workload(
        "ReplicaSet",
        "shop",
        "web-1",
        pod_spec(image, &["regcred"], "default"),
        Some(&dep),
    ));
    fake.apply(pod(
        "shop",
        "web-1-a",
        pod_spec(image, &["regcred"], "default"),
        Some(&rs),
    ));
    // Default policy (injection on): a template naming nothing gets regcred injected.
    fake.apply(workload(
        "StatefulSet",
        "shop",
        "cache",
        pod_spec(image, &[], "default"),
        None,
    ));
    let (code, stdout, stderr) = audit(fake.kubeconfig_path(), &["-A"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        "2 workloads and 1 pods audited: 0 workloads and 0 pods with problems, 0 skipped"
    );
    let (code, stdout, _) = audit(fake.kubeconfig_path(), &["-A", "-o", "json"]);
    assert_eq!(code, 0);
    let report = json_of(&stdout);
    assert_eq!(
        result(&report, "StatefulSet", "cache")["injectedSecrets"],
        json!(["regcred"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_read_one_by_one_and_an_expired_continue_token_restarts_the_list() {
    let fake = cluster().await;
    let image = "registry.example.com/shop/api:1";
    let dep = fake.apply(workload(
        "Deployment",
        "shop",
        "api",
        pod_spec(image, &["regcred"], "default"),
        None,
    ));
    let rs = fake.apply(workload(
        "ReplicaSet",
        "shop",
        "api-1",
        pod_spec(image, &["regcred"], "default"),
        Some(&dep),
    ));
    for i in 0..10 {
        fake.apply(pod(
            "shop",
            &format!("api-1-{i:02}"),
            pod_spec(image, &["regcred"], "default"),
            Some(&rs),
        ));
    }
    for i in 0..7 {
        // Bare pods, one in three naming a secret that does not exist.
        let secret = if i % 3 == 0 { "gone" } else { "regcred" };
        fake.apply(pod(
            "shop",
            &format!("bare-{i}"),
            pod_spec(image, &[secret], "default"),
            None,
        ));
    }
    // The second page of the first paginated list meets an expired token.
    fake.expire_continues(1);
    let (code, stdout, stderr) = audit(
        fake.kubeconfig_path(),
        &["-n", "shop", "--page-size", "4", "-o", "json"],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report = json_of(&stdout);
    // Counted once each despite the restart.
    assert_eq!(report["summary"]["pods"], 17, "{:#}", report["summary"]);
    assert_eq!(report["summary"]["podsWithProblems"], 3);
    assert_eq!(result(&report, "Deployment", "api")["pods"]["total"], 10);
    let notes = report["notes"].as_array().cloned().unwrap_or_default();
    assert_eq!(notes.len(), 1, "{report:#}");
    assert!(
        notes[0]
            .as_str()
            .is_some_and(|n| n.contains("/api/v1/namespaces/shop/pods") && n.contains("410")),
        "{notes:?}"
    );
    let pod_lists: Vec<_> = fake
        .request_log()
        .into_iter()
        .filter(|r| r.path == "/api/v1/namespaces/shop/pods" && r.is_list())
        .collect();
    assert!(
        pod_lists.iter().all(|r| r.param("limit") == Some("4")),
        "{pod_lists:?}"
    );
    let expired = pod_lists.iter().filter(|r| r.status == Some(410)).count();
    assert_eq!(expired, 1, "{pod_lists:?}");
    // 17 pods in pages of 4: 5 pages, plus the page before the expiry and the 410 itself.
    assert_eq!(pod_lists.len(), 7, "{pod_lists:?}");
    assert!(
        pod_lists
            .iter()
            .filter(|r| r.param("continue").is_some())
            .count()
            >= 4
    );

    let (_, text, _) = audit(fake.kubeconfig_path(), &["-n", "shop", "--page-size", "4"]);
    assert!(
        text.contains("Pod/bare-0 ") && text.contains("Pod/bare-6 "),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_extends_the_check_schema_with_scope() {
    let fake = cluster().await;
    fake.apply(workload(
        "Deployment",
        "shop",
        "api",
        pod_spec("registry.example.com:5000/a:1", &["regcred"], "default"),
        None,
    ));
    let (code, stdout, _) = audit(fake.kubeconfig_path(), &["-n", "shop", "-o", "json"]);
    assert_eq!(code, 1);
    let report = json_of(&stdout);
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    assert_eq!(keys(&report), ["results", "skipped", "summary"]);
    let r = &report["results"][0];
    assert_eq!(
        keys(r),
        [
            "allowed",
            "findings",
            "imagePullSecrets",
            "images",
            "injectedSecrets",
            "kind",
            "name",
            "namespace",
            "pods",
            "scope",
            "verdict"
        ]
    );
    assert_eq!(
        keys(&r["images"][0]),
        [
            "container",
            "image",
            "matchedSecrets",
            "registry",
            "registryClass",
            "repository",
            "requiresCredentials"
        ]
    );
    assert_eq!(
        keys(&r["findings"][0]),
        [
            "code",
            "container",
            "image",
            "message",
            "registry",
            "severity"
        ]
    );
    assert_eq!(keys(&r["pods"]), ["causes", "total", "withProblems"]);
    assert_eq!(
        keys(&report["summary"]),
        [
            "pods",
            "podsNotListed",
            "podsWithProblems",
            "workloads",
            "workloadsWithProblems"
        ]
    );
    assert_eq!(r["findings"][0]["code"], "RegistryMismatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_exits_2() {
    let fake = cluster().await;
    fake.go_away().await;
    let (code, stdout, stderr) = audit(fake.kubeconfig_path(), &["-A"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("cannot read the cluster"), "{stderr}");
}
