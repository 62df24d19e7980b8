//! PolicyReports written from a real audit of the in-repo fake API server: created once per
//! namespace, updated in place (same object, new resourceVersion, no duplicate) and only when
//! something changed, retried after a lost race, nothing written where the CRD is absent, a
//! stale report of pullgate's deleted, and reports pullgate does not own left untouched.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use pullgate::audit::cluster::{self, Options};
use pullgate::audit::policyreport::policy_reports;
use pullgate::audit::publish::{publish, reports_served, should_publish, PublishStats};
use pullgate::engine::policy::Policy;
use serde_json::{json, Value};
use std::time::Duration;
use support::fake_api::FakeApi;
use support::fixtures;
use support::workloads::{pod_spec, workload};

const REPORTS: &str = "policyreports.wgpolicyk8s.io";

/// Namespace shop: a pull secret for registry.example.com, an unpatched default ServiceAccount,
/// Deployment `api` naming it and Deployment `web` naming a secret that does not exist.
async fn cluster() -> FakeApi {
    let fake = FakeApi::start().await;
    fake.apply(fixtures::namespace("shop", &[]));
    fake.apply(fixtures::service_account("shop", "default", &[]));
    fake.apply_secret("shop", "regcred", &["registry.example.com"], "pw");
    fake.apply(workload(
        "Deployment",
        "shop",
        "api",
        pod_spec("registry.example.com/api:1", &["regcred"], "default"),
        None,
    ));
    fake.apply(web(&["gone"]));
    fake
}

fn web(secrets: &[&str]) -> Value {
    workload(
        "Deployment",
        "shop",
        "web",
        pod_spec("registry.example.com/web:1", secrets, "default"),
        None,
    )
}

/// Audit the fake as `serve` would (injection off, so that each cause shows), then publish.
async fn audit_and_publish(fake: &FakeApi, now: i64) -> PublishStats {
    let client = fake.client().await;
    let policy = Policy::from_yaml("inject: false\n").expect("policy");
    let options = Options {
        sync_timeout: Duration::from_secs(10),
        ..Options::default()
    };
    let (report, _) = cluster::run(client.clone(), &policy, &options, now, None)
        .await
        .expect("audit");
    publish(&client, None, policy_reports(&report, now).into_values())
        .await
        .expect("publish")
}

fn stored(fake: &FakeApi, ns: &str, name: &str) -> Value {
    fake.get(REPORTS, ns, name)
        .unwrap_or_else(|| panic!("no PolicyReport {ns}/{name}"))
}

fn result_for<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["results"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["resources"][0]["name"] == name))
        .unwrap_or_else(|| panic!("no result for {name} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_created_then_updated_in_place_only_when_it_changes() {
    let fake = cluster().await;
    fake.install_policy_report_crd(true);

    let first = audit_and_publish(&fake, 1_000).await;
    assert_eq!((first.created, first.updated), (1, 0), "{first:?}");
    let report = stored(&fake, "shop", "pullgate");
    assert_eq!(
        report["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "pullgate"
    );
    assert_eq!(
        report["summary"],
        json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    let failing = result_for(&report, "web");
    assert_eq!(failing["result"], "fail");
    assert_eq!(failing["rule"], "SecretNotFound");
    assert_eq!(failing["policy"], "pullgate");
    assert_eq!(failing["source"], "pullgate");
    assert_eq!(failing["timestamp"], json!({"seconds": 1_000, "nanos": 0}));
    let deployment = fake.get("deployments.apps", "shop", "web").expect("web");
    assert_eq!(
        failing["resources"][0],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
            "namespace": "shop", "uid": deployment["metadata"]["uid"]})
    );
    assert!(
        failing["message"]
            .as_str()
            .unwrap_or_default()
            .contains("gone"),
        "{failing}"
    );
    assert_eq!(result_for(&report, "api")["result"], "pass");

    // Nothing changed: not written again (timestamps alone do not make a new report).
    let same = audit_and_publish(&fake, 2_000).await;
    assert_eq!((same.unchanged, same.updated, same.created), (1, 0, 0));
    let unchanged = stored(&fake, "shop", "pullgate");
    assert_eq!(
        unchanged["metadata"]["resourceVersion"],
        report["metadata"]["resourceVersion"]
    );

    fake.apply(web(&["regcred"]));
    let writes_before = fake.request_log().len();
    let second = audit_and_publish(&fake, 3_000).await;
    assert_eq!((second.created, second.updated), (0, 1), "{second:?}");
    let updated = stored(&fake, "shop", "pullgate");
    assert_eq!(updated["metadata"]["uid"], report["metadata"]["uid"]);
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        report["metadata"]["resourceVersion"]
    );
    assert_eq!(fake.count(REPORTS), 1);
    assert_eq!(
        updated["summary"],
        json!({"pass": 2, "fail": 0, "warn": 0, "error": 0, "skip": 0})
    );
    assert_eq!(result_for(&updated, "web")["result"], "pass");
    // The result that did not change keeps the time it was found.
    assert_eq!(
        result_for(&updated, "api")["timestamp"],
        json!({"seconds": 1_000, "nanos": 0})
    );
    let writes: Vec<_> = fake.request_log()[writes_before..]
        .iter()
        .filter(|r| r.path.contains("/policyreports") && r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        ["PUT /apis/wgpolicyk8s.io/v1alpha2/namespaces/shop/policyreports/pullgate"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_race_is_retried_on_the_latest_version() {
    let fake = cluster().await;
    fake.install_policy_report_crd(true);
    audit_and_publish(&fake, 1_000).await;
    fake.race_writes(REPORTS, 1, |o| {
        o["metadata"]["annotations"] = json!({"example.com/touched": "yes"});
    });
    fake.apply(web(&["regcred"]));
    let stats = audit_and_publish(&fake, 2_000).await;
    assert_eq!((stats.updated, stats.conflicts), (1, 1), "{stats:?}");
    let report = stored(&fake, "shop", "pullgate");
    assert_eq!(report["summary"]["fail"], 0);
    // The other writer's annotation survives the rewrite.
    assert_eq!(
        report["metadata"]["annotations"]["example.com/touched"],
        "yes"
    );
    assert_eq!(fake.count(REPORTS), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_written_where_the_crd_is_absent() {
    let fake = cluster().await;
    let client = fake.client().await;
    assert!(!reports_served(&client).await.expect("discovery"));
    assert!(!should_publish(&client, true).await.expect("discovery"));
    let log = fake.request_log();
    let touched: Vec<_> = log
        .iter()
        .filter(|r| r.path.contains("wgpolicyk8s.io"))
        .map(|r| (r.method.as_str(), r.path.as_str(), r.status))
        .collect();
    assert_eq!(
        touched,
        [
            ("GET", "/apis/wgpolicyk8s.io/v1alpha2", Some(404)),
            ("GET", "/apis/wgpolicyk8s.io/v1alpha2", Some(404))
        ]
    );
    assert_eq!(fake.count(REPORTS), 0);

    fake.install_policy_report_crd(true);
    assert!(reports_served(&client).await.expect("discovery"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_not_owned_by_pullgate_are_untouched_and_stale_ones_deleted() {
    let fake = cluster().await;
    fake.install_policy_report_crd(true);
    let foreign = |ns: &str, name: &str| {
        json!({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
            "metadata": {"name": name, "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "kyverno"}},
            "summary": {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0},
            "results": [{"policy": "require-labels", "result": "fail", "source": "kyverno"}]})
    };
    // A report named like pullgate's but Kyverno's, where pullgate has results.
    let squatter = fake.apply(foreign("shop", "pullgate"));
    // Kyverno's report in a namespace without workloads.
    let kyverno = fake.apply(foreign("quiet", "kyverno-report"));
    // pullgate's own report from an earlier pass in a namespace whose workloads are gone.
    fake.apply(json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
        "metadata": {"name": "pullgate", "namespace": "emptied",
            "labels": {"app.kubernetes.io/managed-by": "pullgate"}},
        "summary": {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0},
        "results": []}));

    let stats = audit_and_publish(&fake, 1_000).await;
    assert_eq!(
        (stats.foreign, stats.created, stats.updated, stats.deleted),
        (1, 0, 0, 1),
        "{stats:?}"
    );
    assert_eq!(stored(&fake, "shop", "pullgate"), squatter);
    assert_eq!(stored(&fake, "quiet", "kyverno-report"), kyverno);
    assert!(fake.get(REPORTS, "emptied", "pullgate").is_none());
    assert_eq!(fake.count(REPORTS), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_pass_prunes_only_its_namespace() {
    let fake = cluster().await;
    fake.install_policy_report_crd(true);
    audit_and_publish(&fake, 1_000).await;
    fake.apply(fixtures::namespace("other", &[]));
    fake.apply(workload(
        "Deployment",
        "other",
        "db",
        pod_spec("registry.example.com/db:1", &[], "default"),
        None,
    ));
    audit_and_publish(&fake, 1_000).await;
    assert_eq!(fake.count(REPORTS), 2);

    // A pass over `other` that found nothing there: only that namespace's report goes.
    let client = fake.client().await;
    let stats = publish(&client, Some("other"), std::iter::empty())
        .await
        .expect("publish");
    assert_eq!(stats.deleted, 1, "{stats:?}");
    assert!(fake.get(REPORTS, "other", "pullgate").is_none());
    assert!(fake.get(REPORTS, "shop", "pullgate").is_some());
}
