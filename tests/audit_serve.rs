//! The background audit of `pullgate serve --cluster` (the real binary) against the in-repo fake
//! API server: a deleted secret shows up in `pullgate_audit_findings` through a debounced namespace
//! pass (the full-pass interval is an hour), one `PullgateAudit` Event per cause, only the Lease
//! holder audits, and a Secret DELETE is answered from the last completed audit over real TLS:
//! silently before any, with a warning when in use, denied under `protectInUseSecrets`.
//!
//! Every wait polls a condition against a deadline; nothing sleeps to synchronise.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::time::Duration;
use support::fake_api::FakeApi;
use support::serve::ServeProcess;
use support::workloads::{pod, pod_spec, workload};
use support::{fixtures, poll, DEADLINE};

const PLANTED: &str = "Audit-Serve-Planted-Pw-8kq";
const IMAGE: &str = "registry.example.com/shop/api:1";
/// The bound the debounced namespace pass promises for a deleted secret.
const WITHIN_A_MINUTE: Duration = Duration::from_secs(60);

/// shop: Deployment api (ReplicaSet, 2 pods) naming apicred, Deployment web naming regcred.
async fn cluster() -> FakeApi {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("pullgate", &[]));
    fake.apply(fixtures::namespace("shop", &[]));
    fake.apply(fixtures::service_account("shop", "default", &[]));
    fake.apply_secret("shop", "regcred", &["registry.example.com"], PLANTED);
    fake.apply_secret("shop", "apicred", &["registry.example.com"], PLANTED);
    let dep = fake.apply(workload(
        "Deployment",
        "shop",
        "api",
        pod_spec(IMAGE, &["apicred"], "default"),
        None,
    ));
    let rs = fake.apply(workload(
        "ReplicaSet",
        "shop",
        "api-7d9",
        pod_spec(IMAGE, &["apicred"], "default"),
        Some(&dep),
    ));
    for i in 0..2 {
        fake.apply(pod(
            "shop",
            &format!("api-7d9-{i}"),
            pod_spec(IMAGE, &["apicred"], "default"),
            Some(&rs),
        ));
    }
    fake.apply(workload(
        "Deployment",
        "shop",
        "web",
        pod_spec(IMAGE, &["regcred"], "default"),
        None,
    ));
    fake
}

struct Served {
    process: ServeProcess,
    https: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// `pullgate serve --cluster` on `fake` under `policy`, as `identity`, ready.
async fn serve(fake: &FakeApi, policy: &str, identity: &str) -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = dir.path().join("ca.pem");
    let config = dir.path().join("policy.yaml");
    std::fs::write(&config, policy).expect("write policy");
    let process = ServeProcess::spawn(
        [
            OsStr::new("--cluster"),
            OsStr::new("--self-signed"),
            OsStr::new("--kubeconfig"),
            fake.kubeconfig_path().as_os_str(),
            OsStr::new("--ca-out"),
            ca_path.as_os_str(),
            OsStr::new("--config"),
            config.as_os_str(),
        ],
        &[("POD_NAMESPACE", "pullgate"), ("POD_NAME", identity)],
        WITHIN_A_MINUTE,
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
    let (h, p) = (&https, &process);
    poll("/readyz", DEADLINE, || async move {
        h.get(p.url("/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;
    Served {
        process,
        https,
        _dir: dir,
    }
}

impl Served {
    async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.process.metrics))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of the series `name{labels}` (exact label text), if exported.
    async fn series(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// Wait for a completed audit pass after log line `from` of `scope` (full or namespace).
    fn wait_pass(&mut self, scope: &str, from: usize) -> Value {
        // The fake API keeps serving on the runtime's other worker while this one waits.
        tokio::task::block_in_place(|| {
            self.process
                .wait_log(&format!("a {scope} audit pass"), from, |v| {
                    v["message"] == "audit pass complete" && v["scope"] == scope
                })
        })
    }

    /// POST a Secret DELETE review for shop/`name` to /validate; its `.response`.
    async fn delete_review(&self, name: &str) -> Value {
        let review = secret_delete_review("shop", name);
        let resp = self
            .https
            .post(self.process.url("/validate?timeout=10s"))
            .json(&review)
            .send()
            .await
            .expect("POST /validate");
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.expect("AdmissionReview JSON");
        assert_eq!(v["response"]["uid"], review["request"]["uid"], "{v}");
        v["response"].clone()
    }
}

/// A Secret DELETE review as a v1.36 kube-apiserver sends it to a validating webhook (see
/// staging/src/k8s.io/api/admission/v1/types.go: `name` set, `object` null, the deleted secret
/// in `oldObject`, the DeleteOptions in `options`).
fn secret_delete_review(ns: &str, name: &str) -> Value {
    let mut old = fixtures::pull_secret(ns, name, &["registry.example.com"], PLANTED);
    old["metadata"]["uid"] = json!("0b8a3c52-1f0e-4c55-9b7e-5d2f8f1f4a10");
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "6f1d1d7e-4a4e-4f7c-9f7b-0c1c0b2b7d21",
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "requestKind": {"group": "", "version": "v1", "kind": "Secret"},
            "requestResource": {"group": "", "version": "v1", "resource": "secrets"},
            "name": name,
            "namespace": ns,
            "operation": "DELETE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
            "object": null,
            "oldObject": old,
            "dryRun": false,
            "options": {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"}
        }
    })
}

fn warnings(resp: &Value) -> Vec<String> {
    resp["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// PullgateAudit Events in shop about `name`: their messages, once checked to name the object
/// as `kubectl describe` finds it (kind, apiVersion, uid).
async fn audit_events(fake: &FakeApi, name: &str) -> Vec<String> {
    let uid = fake
        .get("deployments.apps", "shop", name)
        .map(|d| d["metadata"]["uid"].clone());
    let events: Api<Event> = Api::namespaced(fake.client().await, "shop");
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("PullgateAudit")
                && e.involved_object.name.as_deref() == Some(name)
        })
        .map(|e| {
            let o = &e.involved_object;
            assert_eq!(
                (
                    o.kind.as_deref(),
                    o.api_version.as_deref(),
                    e.type_.as_deref()
                ),
                (Some("Deployment"), Some("apps/v1"), Some("Warning"))
            );
            assert_eq!(o.uid.clone().map(Value::from), uid, "{e:?}");
            e.message.unwrap_or_default()
        })
        .collect()
}

const POLICY: &str = "inject: false\naudit:\n  enabled: true\n  interval: 1h\n";
const FINDING: &str = r#"pullgate_audit_findings{namespace="shop",code="SecretNotFound"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_secret_is_audited_within_a_minute_announced_once_and_its_delete_warned() {
    support::install_crypto();
    let fake = cluster().await;
    let mut s = serve(&fake, POLICY, "pullgate-0").await;
    let full = s.wait_pass("full", 0);
    assert_eq!(full["workloads"], 2, "{full}");
    assert_eq!(full["workloads_with_problems"], 0, "{full}");
    assert!(s.series(FINDING).await.is_none(), "{}", s.metrics().await);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"pullgate_audit_objects_total{kind="Pod"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"pullgate_audit_duration_seconds_count{scope="full"} 1"#),
        "{metrics}"
    );
    assert!(s
        .series("pullgate_audit_last_run_timestamp_seconds")
        .await
        .is_some_and(|t| t > 1.0e9));

    // The completed audit names apicred's users on its DELETE; an unused secret gets nothing.
    let resp = s.delete_review("apicred").await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(
        warnings(&resp),
        ["pullgate: secret apicred is used by 2 pods of 1 workload (shop/api); their next pods will fail to pull"]
    );
    let resp = s.delete_review("unused").await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).is_empty(), "{resp}");

    // Deleted for real: a namespace pass finds it within the bound, not after the hour.
    let mark = s.process.mark();
    assert!(fake.delete("secrets", "shop", "apicred"));
    let s_ref = &s;
    let n = poll("SecretNotFound in shop", WITHIN_A_MINUTE, || async move {
        s_ref.series(FINDING).await
    })
    .await;
    assert_eq!(n, 1.0, "one workload (api) has the cause");
    let pass = s.wait_pass("namespace", mark);
    assert_eq!(pass["namespace"], "shop", "{pass}");
    let fake_ref = &fake;
    let first = poll("the PullgateAudit Event on api", DEADLINE, || async move {
        let e = audit_events(fake_ref, "api").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].starts_with("SecretNotFound: ") && first[0].contains("apicred"),
        "{first:?}"
    );
    assert!(
        !first[0].contains(PLANTED) && !s.process.stdout_text().contains(PLANTED),
        "credential material leaked"
    );
    assert!(audit_events(&fake, "web").await.is_empty());

    // Another change in shop: a second pass still finds the cause, and announces nothing new.
    let mark = s.process.mark();
    fake.apply(fixtures::service_account("shop", "builder", &[]));
    s.wait_pass("namespace", mark);
    assert_eq!(audit_events(&fake, "api").await.len(), 1);
    assert_eq!(s.series(FINDING).await, Some(1.0));

    // Fixed: the secret is back, the series goes away.
    let mark = s.process.mark();
    fake.apply_secret("shop", "apicred", &["registry.example.com"], PLANTED);
    s.wait_pass("namespace", mark);
    assert_eq!(s.series(FINDING).await, None, "{}", s.metrics().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_the_lease_audits_nothing_and_says_nothing_on_delete() {
    support::install_crypto();
    let fake = cluster().await;
    assert!(fake.delete("secrets", "shop", "apicred"));
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .expect("round to seconds");
    fake.apply(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "pullgate-audit", "namespace": "pullgate"},
        "spec": {"holderIdentity": "pullgate-other", "leaseDurationSeconds": 3600,
            "acquireTime": now.to_string(), "renewTime": now.to_string()}
    }));
    let s = serve(&fake, POLICY, "pullgate-1").await;
    // Two lease reads: the loop has decided twice that it does not lead.
    let fake_ref = &fake;
    poll("two reads of the audit Lease", DEADLINE, || async move {
        let reads = fake_ref
            .request_log()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/leases/pullgate-audit"))
            .count();
        (reads >= 2).then_some(())
    })
    .await;
    assert_eq!(
        fake.get("leases.coordination.k8s.io", "pullgate", "pullgate-audit")
            .map(|l| l["spec"]["holderIdentity"].clone()),
        Some(json!("pullgate-other"))
    );
    assert!(audit_events(&fake, "api").await.is_empty());
    assert!(
        !fake
            .request_log()
            .iter()
            .any(|r| r.path.contains("/pods") || r.path.contains("/deployments")),
        "a non-leader listed workloads"
    );
    let metrics = s.metrics().await;
    assert!(!metrics.contains("pullgate_audit_findings{"), "{metrics}");
    assert!(
        !metrics.contains("pullgate_audit_duration_seconds_count{"),
        "{metrics}"
    );
    // No completed audit: a DELETE of a secret in use is allowed without a word.
    let resp = s.delete_review("regcred").await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).is_empty(), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protect_in_use_secrets_denies_deleting_one_in_use() {
    support::install_crypto();
    let fake = cluster().await;
    let policy = format!("{POLICY}  protectInUseSecrets: true\n");
    let mut s = serve(&fake, &policy, "pullgate-0").await;
    s.wait_pass("full", 0);
    let resp = s.delete_review("regcred").await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert_eq!(resp["status"]["code"], 403, "{resp}");
    let message = resp["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("pullgate: secret regcred is used by 0 pods of 1 workload (shop/web)")
            && message.contains("protectInUseSecrets"),
        "{message}"
    );
    let resp = s.delete_review("unused").await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).is_empty(), "{resp}");
}

/// The fake's resource key of PolicyReports.
const REPORTS: &str = "policyreports.wgpolicyk8s.io";

/// The (workload, result, rule) of each result of `report`, sorted.
fn report_results(report: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["resources"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["result"].as_str().unwrap_or_default().to_owned(),
                r["rule"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_audit_writes_each_namespace_policy_report_and_updates_it_in_place() {
    support::install_crypto();
    let fake = cluster().await;
    fake.install_policy_report_crd(true);
    let mut s = serve(&fake, POLICY, "pullgate-0").await;
    s.wait_pass("full", 0);
    let fake_ref = &fake;
    let first = poll("shop's PolicyReport", DEADLINE, || async move {
        fake_ref.get(REPORTS, "shop", "pullgate")
    })
    .await;
    assert_eq!(
        report_results(&first),
        [
            (
                "api".to_owned(),
                "pass".to_owned(),
                "PullSecretsCoverImages".to_owned()
            ),
            (
                "web".to_owned(),
                "pass".to_owned(),
                "PullSecretsCoverImages".to_owned()
            ),
        ]
    );
    assert_eq!(first["summary"]["pass"], 2, "{first}");

    // apicred deleted: the namespace pass rewrites the same report (same uid), api now fails.
    let mark = s.process.mark();
    assert!(fake.delete("secrets", "shop", "apicred"));
    s.wait_pass("namespace", mark);
    let uid = first["metadata"]["uid"].clone();
    let updated = poll("api failing in shop's report", DEADLINE, || async move {
        fake_ref
            .get(REPORTS, "shop", "pullgate")
            .filter(|r| r["summary"]["fail"] == 1)
    })
    .await;
    assert_eq!(
        updated["metadata"]["uid"], uid,
        "replaced in place, not recreated"
    );
    assert_eq!(
        report_results(&updated),
        [
            (
                "api".to_owned(),
                "fail".to_owned(),
                "SecretNotFound".to_owned()
            ),
            (
                "web".to_owned(),
                "pass".to_owned(),
                "PullSecretsCoverImages".to_owned()
            ),
        ]
    );
    let text = updated.to_string();
    assert!(
        text.contains("apicred") && !text.contains(PLANTED),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_off_or_an_absent_crd_write_no_policy_report() {
    support::install_crypto();
    for (policy, crd) in [
        (format!("{POLICY}  reports: \"off\"\n"), true),
        (POLICY.to_owned(), false),
    ] {
        let fake = cluster().await;
        fake.install_policy_report_crd(crd);
        let mut s = serve(&fake, &policy, "pullgate-0").await;
        s.wait_pass("full", 0);
        assert!(fake.get(REPORTS, "shop", "pullgate").is_none(), "{policy}");
        assert!(
            !fake
                .request_log()
                .iter()
                .any(|r| r.method != "GET" && r.path.contains("/policyreports")),
            "{policy}: a PolicyReport was written"
        );
    }
}
