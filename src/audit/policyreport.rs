//! The audit as `wgpolicyk8s.io/v1alpha2` PolicyReports, pure: one report per namespace, named
//! [`REPORT_NAME`] and labelled as managed by pullgate, with one result per audited workload (and
//! per listed pod that no workload owns), in the shape Kyverno writes and Policy Reporter reads
//! (field names and enum values of the CRD's `PolicyReportResult`).

use super::report::{AuditReport, AuditResult, PodsSummary, Verdict};
use crate::engine::{Finding, Severity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `apiVersion` of the reports.
pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
/// API group of the reports.
pub const GROUP: &str = "wgpolicyk8s.io";
/// Version of the reports.
pub const VERSION: &str = "v1alpha2";
/// Resource (plural) of namespaced reports.
pub const PLURAL: &str = "policyreports";
/// Kind of namespaced reports.
pub const KIND: &str = "PolicyReport";
/// Name of pullgate's report in each namespace.
pub const REPORT_NAME: &str = "pullgate";
/// Label marking pullgate's reports (and the value it carries).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "pullgate");
/// Annotation counting the results left out beyond [`MAX_RESULTS`].
pub const NOT_LISTED_ANNOTATION: &str = "pullgate.io/results-not-listed";
/// `policy` and `source` of every result.
pub const POLICY: &str = "pullgate";
/// `rule` of a passing result (a failing one carries its finding's code).
pub const PASS_RULE: &str = "PullSecretsCoverImages";
/// `category` of every result, as Policy Reporter groups them.
pub const CATEGORY: &str = "Image Pull Secrets";
/// Results kept per report (problems first): an object must stay well under etcd's size limit.
pub const MAX_RESULTS: usize = 1000;

/// A `PolicyReport` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`KIND`].
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ReportMeta,
    /// Results counted by outcome.
    pub summary: ReportSummary,
    /// One per audited workload.
    pub results: Vec<ReportResult>,
}

/// The metadata pullgate sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportMeta {
    /// [`REPORT_NAME`].
    pub name: String,
    /// The namespace reported on.
    pub namespace: String,
    /// [`MANAGED_BY`].
    pub labels: BTreeMap<String, String>,
    /// [`NOT_LISTED_ANNOTATION`] when results were left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `PolicyReportSummary`: results counted by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSummary {
    /// Results `pass`.
    pub pass: u64,
    /// Results `fail`.
    pub fail: u64,
    /// Results `warn`.
    pub warn: u64,
    /// Results `error` (never written: what cannot be read is not a workload result).
    pub error: u64,
    /// Results `skip` (never written).
    pub skip: u64,
}

/// `metav1.Timestamp`, as the CRD stores a result's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: i32,
}

/// `corev1.ObjectReference` of the workload a result is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// `apps/v1`, `batch/v1` or `v1`.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// uid, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// `PolicyReportResult`: one workload's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResult {
    /// [`POLICY`]: the engine that wrote it.
    pub source: String,
    /// [`POLICY`].
    pub policy: String,
    /// The worst finding's code, or [`PASS_RULE`].
    pub rule: String,
    /// [`CATEGORY`].
    pub category: String,
    /// `high` for fail, `medium` for warn; absent on pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// When pullgate found it.
    pub timestamp: Timestamp,
    /// `pass`, `warn` or `fail`.
    pub result: String,
    /// Whether it counts against compliance: a warning is reported unscored, as the CRD defines
    /// `warn` (omitted when false, as Go's `omitempty` does).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scored: bool,
    /// The workload.
    pub resources: Vec<ResourceRef>,
    /// Cause and fix.
    pub message: String,
    /// Details: scope, whether admission would allow the next pod, pods with problems, codes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// `apiVersion` of a workload kind as the audit names it.
pub fn api_version_of(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => "v1",
    }
}

fn worst(findings: &[Finding]) -> Option<&Finding> {
    findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .max_by_key(|f| f.severity)
}

fn pods_message(p: &PodsSummary) -> Option<(String, String)> {
    let c = p.causes.iter().max_by_key(|c| c.severity)?;
    Some((
        c.code.to_string(),
        format!(
            "{} of {} pods (e.g. {}): {}",
            p.with_problems, p.total, c.example, c.message
        ),
    ))
}

/// The result of one audited workload (or pod) at `now` (seconds since the epoch).
pub fn result_of(r: &AuditResult, now: i64) -> ReportResult {
    let findings = &r.result.findings;
    let problems: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .collect();
    let (rule, message) = match (worst(findings), r.pods.as_ref().and_then(pods_message)) {
        (Some(f), _) => {
            let mut m = f.message.clone();
            match problems.len() {
                0 | 1 => {}
                2 => m.push_str(" (and 1 more finding)"),
                n => m.push_str(&format!(" (and {} more findings)", n - 1)),
            }
            (f.code.to_string(), m)
        }
        (None, Some(pods)) => pods,
        (None, None) => (
            PASS_RULE.to_owned(),
            "the next pod can pull its images".to_owned(),
        ),
    };
    let (result, severity, scored) = match r.verdict {
        Verdict::Fail => ("fail", Some("high"), true),
        Verdict::Warn => ("warn", Some("medium"), false),
        Verdict::Ok => ("pass", None, true),
    };
    let mut properties = BTreeMap::new();
    let scope = serde_json::to_value(r.scope)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    properties.insert("scope".to_owned(), scope);
    properties.insert("allowed".to_owned(), r.result.allowed.to_string());
    if !problems.is_empty() {
        let mut codes: Vec<String> = problems.iter().map(|f| f.code.to_string()).collect();
        codes.dedup();
        properties.insert("codes".to_owned(), codes.join(","));
    }
    if let Some(p) = &r.pods {
        properties.insert("pods".to_owned(), p.total.to_string());
        properties.insert("podsWithProblems".to_owned(), p.with_problems.to_string());
    }
    ReportResult {
        source: POLICY.to_owned(),
        policy: POLICY.to_owned(),
        rule,
        category: CATEGORY.to_owned(),
        severity: severity.map(str::to_owned),
        timestamp: Timestamp {
            seconds: now,
            nanos: 0,
        },
        result: result.to_owned(),
        scored,
        resources: vec![ResourceRef {
            api_version: api_version_of(&r.result.kind).to_owned(),
            kind: r.result.kind.clone(),
            name: r.result.name.clone(),
            namespace: r.result.namespace.clone(),
            uid: r.uid.clone(),
        }],
        message,
        properties,
    }
}

/// The report of `namespace` from its audited results: problems first (fail, then warn), each
/// group in audit order, at most [`MAX_RESULTS`] (the rest counted in an annotation).
pub fn policy_report<'a>(
    namespace: &str,
    results: impl IntoIterator<Item = &'a AuditResult>,
    now: i64,
) -> PolicyReport {
    let mut all: Vec<&AuditResult> = results.into_iter().collect();
    // Stable: the audit's order is kept within each verdict.
    all.sort_by_key(|r| std::cmp::Reverse(r.verdict));
    let not_listed = all.len().saturating_sub(MAX_RESULTS);
    let mut summary = ReportSummary::default();
    let results: Vec<ReportResult> = all
        .into_iter()
        .take(MAX_RESULTS)
        .map(|r| {
            match r.verdict {
                Verdict::Ok => summary.pass += 1,
                Verdict::Warn => summary.warn += 1,
                Verdict::Fail => summary.fail += 1,
            }
            result_of(r, now)
        })
        .collect();
    let mut annotations = BTreeMap::new();
    if not_listed > 0 {
        annotations.insert(NOT_LISTED_ANNOTATION.to_owned(), not_listed.to_string());
    }
    PolicyReport {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        metadata: ReportMeta {
            name: REPORT_NAME.to_owned(),
            namespace: namespace.to_owned(),
            labels: BTreeMap::from([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())]),
            annotations,
        },
        summary,
        results,
    }
}

/// One report per namespace with audited results, by namespace.
pub fn policy_reports(report: &AuditReport, now: i64) -> BTreeMap<String, PolicyReport> {
    let mut by_ns: BTreeMap<&str, Vec<&AuditResult>> = BTreeMap::new();
    for r in &report.results {
        by_ns
            .entry(r.result.namespace.as_str())
            .or_default()
            .push(r);
    }
    by_ns
        .into_iter()
        .map(|(ns, rs)| (ns.to_owned(), policy_report(ns, rs, now)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::{PodCause, ResultScope};
    use crate::check::CheckResult;
    use crate::engine::Code;
    use serde_json::json;

    fn finding(code: Code, severity: Severity, message: &str) -> Finding {
        Finding {
            code,
            severity,
            container: None,
            image: None,
            registry: None,
            message: message.to_owned(),
        }
    }

    fn result(kind: &str, name: &str, verdict: Verdict, findings: Vec<Finding>) -> AuditResult {
        AuditResult {
            result: CheckResult {
                kind: kind.to_owned(),
                namespace: "shop".to_owned(),
                name: name.to_owned(),
                allowed: verdict != Verdict::Fail,
                injected_secrets: vec![],
                image_pull_secrets: vec![],
                images: vec![],
                findings,
            },
            scope: if kind == "Pod" {
                ResultScope::Pod
            } else {
                ResultScope::Workload
            },
            verdict,
            pods: (kind != "Pod").then(PodsSummary::default),
            uid: format!("uid-{name}"),
        }
    }

    #[test]
    fn a_failing_workload_is_a_scored_fail_with_its_code_fix_and_reference() {
        let r = result(
            "Deployment",
            "api",
            Verdict::Fail,
            vec![
                finding(Code::SecretsInjected, Severity::Info, "injected regcred"),
                finding(
                    Code::SecretNotFound,
                    Severity::Error,
                    "secret \"regcred\" not found: create it in namespace shop",
                ),
                finding(Code::StaleCredentials, Severity::Warning, "old: rotate it"),
            ],
        );
        let v = serde_json::to_value(policy_report("shop", [&r], 1_700_000_000)).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "wgpolicyk8s.io/v1alpha2",
                "kind": "PolicyReport",
                "metadata": {
                    "name": "pullgate",
                    "namespace": "shop",
                    "labels": {"app.kubernetes.io/managed-by": "pullgate"}
                },
                "summary": {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0},
                "results": [{
                    "source": "pullgate",
                    "policy": "pullgate",
                    "rule": "SecretNotFound",
                    "category": "Image Pull Secrets",
                    "severity": "high",
                    "timestamp": {"seconds": 1_700_000_000, "nanos": 0},
                    "result": "fail",
                    "scored": true,
                    "resources": [{
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "api",
                        "namespace": "shop",
                        "uid": "uid-api"
                    }],
                    "message": "secret \"regcred\" not found: create it in namespace shop (and 1 more finding)",
                    "properties": {
                        "scope": "workload",
                        "allowed": "false",
                        "codes": "SecretNotFound,StaleCredentials",
                        "pods": "0",
                        "podsWithProblems": "0"
                    }
                }]
            })
        );
    }

    #[test]
    fn warn_is_unscored_and_pass_has_no_severity() {
        let warn = result(
            "CronJob",
            "nightly",
            Verdict::Warn,
            vec![finding(Code::StaleCredentials, Severity::Warning, "old")],
        );
        let ok = result("StatefulSet", "db", Verdict::Ok, vec![]);
        let report = policy_report("shop", [&ok, &warn], 5);
        let v = serde_json::to_value(&report).unwrap();
        let warn_v = &v["results"][0];
        assert_eq!(warn_v["result"], "warn");
        assert_eq!(warn_v["severity"], "medium");
        assert!(warn_v.get("scored").is_none(), "{warn_v}");
        assert_eq!(warn_v["resources"][0]["apiVersion"], "batch/v1");
        let ok_v = &v["results"][1];
        assert_eq!(ok_v["result"], "pass");
        assert_eq!(ok_v["rule"], PASS_RULE);
        assert_eq!(ok_v["scored"], true);
        assert!(ok_v.get("severity").is_none(), "{ok_v}");
        assert_eq!(
            report.summary,
            ReportSummary {
                pass: 1,
                warn: 1,
                ..ReportSummary::default()
            }
        );
    }

    #[test]
    fn a_problem_only_in_existing_pods_names_the_pods() {
        let mut r = result("Deployment", "web", Verdict::Fail, vec![]);
        r.pods = Some(PodsSummary {
            total: 5,
            with_problems: 3,
            causes: vec![PodCause {
                code: Code::SecretNotFound,
                severity: Severity::Error,
                pods: 3,
                message: "secret \"old\" not found: recreate it".to_owned(),
                example: "web-abc".to_owned(),
            }],
        });
        let rr = result_of(&r, 1);
        assert_eq!(rr.rule, "SecretNotFound");
        assert_eq!(
            rr.message,
            "3 of 5 pods (e.g. web-abc): secret \"old\" not found: recreate it"
        );
        assert_eq!(rr.properties["podsWithProblems"], "3");
        assert_eq!(rr.result, "fail");
    }

    #[test]
    fn problems_come_first_and_the_rest_beyond_the_cap_is_counted() {
        let mut rs: Vec<AuditResult> = (0..MAX_RESULTS + 5)
            .map(|i| result("Deployment", &format!("ok-{i}"), Verdict::Ok, vec![]))
            .collect();
        rs.push(result(
            "Pod",
            "lonely",
            Verdict::Fail,
            vec![finding(
                Code::NoCredentials,
                Severity::Error,
                "none: add one",
            )],
        ));
        let report = policy_report("shop", &rs, 1);
        assert_eq!(report.results.len(), MAX_RESULTS);
        assert_eq!(report.results[0].result, "fail");
        assert_eq!(report.results[0].resources[0].api_version, "v1");
        assert_eq!(report.results[0].properties["scope"], "pod");
        assert_eq!(report.results[1].resources[0].name, "ok-0");
        assert_eq!(report.summary.fail, 1);
        assert_eq!(report.summary.pass, (MAX_RESULTS - 1) as u64);
        assert_eq!(report.metadata.annotations[NOT_LISTED_ANNOTATION], "6");
    }

    #[test]
    fn one_report_per_namespace() {
        let a = result("Deployment", "a", Verdict::Ok, vec![]);
        let mut b = result("Deployment", "b", Verdict::Ok, vec![]);
        b.result.namespace = "other".to_owned();
        let audit = AuditReport {
            results: vec![a, b],
            ..AuditReport::default()
        };
        let reports = policy_reports(&audit, 1);
        assert_eq!(
            reports.keys().map(String::as_str).collect::<Vec<_>>(),
            ["other", "shop"]
        );
        assert_eq!(reports["other"].metadata.namespace, "other");
        assert_eq!(reports["other"].results[0].resources[0].name, "b");
        assert_eq!(reports["shop"].summary.pass, 1);
    }
}
