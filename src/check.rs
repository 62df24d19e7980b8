//! `pullgate check`: evaluate the Pods and workloads of manifests offline, against the Secrets,
//! ServiceAccounts and Namespaces in the same input, as the mutating then validating webhook would.

use crate::engine::index::{ClusterIndex, CredentialStatus};
use crate::engine::podview::{PodView, WorkloadKind};
use crate::engine::policy::Policy;
use crate::engine::verification::VerificationTable;
use crate::engine::{evaluate_pod, Decision, Finding, PodContext};
use crate::manifests::{Document, Manifests, Problem};
use crate::store::objects::index_documents;
use crate::verify::offline::VerifiedSecret;
use serde::Serialize;
use std::fmt::Write as _;

/// One evaluated object in the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// Kind of the object.
    pub kind: String,
    /// Namespace evaluated in.
    pub namespace: String,
    /// Name (or generateName*).
    pub name: String,
    /// Whether admission would accept it.
    pub allowed: bool,
    /// Secrets pullgate would inject.
    pub injected_secrets: Vec<String>,
    /// The imagePullSecrets the pods end up with.
    pub image_pull_secrets: Vec<String>,
    /// Per-image details.
    pub images: Vec<ImageResult>,
    /// Findings.
    pub findings: Vec<Finding>,
}

/// One image of a checked object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageResult {
    /// Container name.
    pub container: String,
    /// Image as written.
    pub image: String,
    /// Registry domain (absent when the reference is invalid).
    pub registry: Option<String>,
    /// Repository path.
    pub repository: Option<String>,
    /// Whether it needs credentials.
    pub requires_credentials: bool,
    /// Why the registry counts as private or public (absent when the reference is invalid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_class: Option<String>,
    /// Secrets covering it, in the kubelet's order.
    pub matched_secrets: Vec<String>,
}

/// One verified credential (`check --verify`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialCheck {
    /// Namespace of the secret.
    pub namespace: String,
    /// The secret.
    pub secret: String,
    /// The registry key verified.
    pub registry: String,
    /// valid | rejected | unreachable | unsupported.
    pub status: CredentialStatus,
    /// Why.
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct CheckReport {
    /// One entry per Pod or workload.
    pub results: Vec<CheckResult>,
    /// Credentials verified against their registries (`--verify`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialCheck>,
    /// Documents of kinds pullgate does not evaluate, and YAML that is not a Kubernetes object.
    pub skipped: usize,
    /// Files and documents that could not be read or evaluated, each with its file and document.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Problem>,
    /// The same, skipped on request (`--skip-invalid`) instead of failing the check.
    #[serde(rename = "skippedInvalid", skip_serializing_if = "Vec::is_empty")]
    pub skipped_invalid: Vec<Problem>,
}

impl CheckReport {
    /// Whether every object is admitted.
    pub fn all_allowed(&self) -> bool {
        self.results.iter().all(|r| r.allowed)
    }

    /// Whether a verified credential was rejected by its registry.
    pub fn credentials_rejected(&self) -> bool {
        self.credentials
            .iter()
            .any(|c| c.status == CredentialStatus::Rejected)
    }
}

/// Evaluate every Pod and workload that was read, and report what could not be read: as errors, or
/// with `skip_invalid` as skipped. Documents that are not objects count as skipped kinds.
pub fn check_manifests(
    input: &Manifests,
    policy: &Policy,
    default_ns: &str,
    now: i64,
    verified: &[VerifiedSecret],
    skip_invalid: bool,
) -> CheckReport {
    let mut report = check_verified(&input.documents, policy, default_ns, now, verified);
    report.skipped += input.not_objects.len();
    let mut problems = input.unreadable.clone();
    problems.append(&mut report.errors);
    problems.sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
    if skip_invalid {
        report.skipped_invalid = problems;
    } else {
        report.errors = problems;
    }
    report
}

/// Evaluate every Pod and workload among `docs`.
pub fn check(docs: &[Document], policy: &Policy, default_ns: &str, now: i64) -> CheckReport {
    check_verified(docs, policy, default_ns, now, &[])
}

/// [`check`] with the results of verifying the input's secrets against their registries.
pub fn check_verified(
    docs: &[Document],
    policy: &Policy,
    default_ns: &str,
    now: i64,
    verified: &[VerifiedSecret],
) -> CheckReport {
    let (index, mut errors) = index_documents(docs, default_ns);
    let mut table = VerificationTable::new();
    let mut report = CheckReport::default();
    for v in verified {
        table.record(&index, &v.namespace, &v.name, v.verification.clone());
        report.credentials.extend(
            v.verdicts
                .iter()
                .map(|(registry, verdict)| CredentialCheck {
                    namespace: v.namespace.clone(),
                    secret: v.name.clone(),
                    registry: registry.clone(),
                    status: verdict.status,
                    detail: verdict.detail.clone(),
                }),
        );
    }
    for d in docs {
        let Some(kind) = WorkloadKind::from_kind(d.kind()) else {
            if !matches!(d.kind(), "Secret" | "ServiceAccount" | "Namespace") {
                report.skipped += 1;
            }
            continue;
        };
        match PodView::from_value(kind, &d.value) {
            Ok(view) => report
                .results
                .push(check_one(&view, policy, &index, &table, default_ns, now)),
            Err(e) => errors.push(Problem {
                file: d.source.clone(),
                document: Some(d.index),
                message: e.to_string(),
            }),
        }
    }
    report.errors = errors;
    report
}

fn check_one(
    view: &PodView,
    policy: &Policy,
    index: &ClusterIndex,
    verified: &VerificationTable,
    default_ns: &str,
    now: i64,
) -> CheckResult {
    let meta = view.meta();
    let namespace = meta
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(default_ns);
    let ctx = PodContext::creating(namespace, now).with_verified(Some(verified));
    let d = evaluate_pod(view, &ctx, policy, index);
    to_result(view, namespace, &d)
}

/// One decision as a report entry (shared with `pullgate audit`).
pub fn to_result(view: &PodView, namespace: &str, d: &Decision<'_>) -> CheckResult {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    CheckResult {
        kind: view.kind.as_str().to_owned(),
        namespace: namespace.to_owned(),
        name: view.meta().display_name(),
        allowed: d.allowed,
        injected_secrets: owned(&d.injected),
        image_pull_secrets: owned(&d.image_pull_secrets),
        images: d
            .images
            .iter()
            .map(|i| ImageResult {
                container: i.container.to_owned(),
                image: i.image.to_owned(),
                registry: i.reference.as_ref().map(|r| r.domain().to_owned()),
                repository: i.reference.as_ref().map(|r| r.path().to_owned()),
                requires_credentials: i.requires_credentials,
                registry_class: i
                    .registry_class
                    .zip(i.reference.as_ref())
                    .map(|(c, r)| c.describe_image(r)),
                matched_secrets: owned(&i.matched_secrets),
            })
            .collect(),
        findings: d.findings.clone(),
    }
}

/// The report as a compact human table followed by findings with their fixes.
pub fn render_text(report: &CheckReport) -> String {
    let mut out = String::new();
    write_table(&mut out, report);
    write_findings(&mut out, report);
    write_credentials(&mut out, report);
    write_errors_and_totals(&mut out, report);
    out.push('\n');
    out
}

/// One row per object: kind, namespace, name, result and injected secrets, in aligned columns.
fn write_table(out: &mut String, report: &CheckReport) {
    let rows: Vec<[String; 5]> = report
        .results
        .iter()
        .map(|r| {
            [
                r.kind.clone(),
                r.namespace.clone(),
                r.name.clone(),
                if r.allowed { "allowed" } else { "DENIED" }.to_owned(),
                if r.injected_secrets.is_empty() {
                    "-".to_owned()
                } else {
                    r.injected_secrets.join(",")
                },
            ]
        })
        .collect();
    write_columns(
        out,
        ["KIND", "NAMESPACE", "NAME", "RESULT", "INJECTED"],
        &rows,
    );
}

/// One finding's line: severity, code, container and message (`check` and `audit` text).
pub fn write_finding(out: &mut String, f: &Finding) {
    let container = f
        .container
        .as_deref()
        .map(|c| format!(" [{c}]"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  {:<7} {}{container}: {}",
        f.severity.as_str(),
        f.code,
        f.message
    );
}

/// `header` and `rows` in aligned columns, the last one unpadded (`check` and `audit` tables).
pub fn write_columns(out: &mut String, header: [&str; 5], rows: &[[String; 5]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i == 4 {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        l
    };
    let _ = writeln!(out, "{}", line(header));
    for r in rows {
        let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
}

/// Each object's findings, with its fixes, under a heading naming the object.
fn write_findings(out: &mut String, report: &CheckReport) {
    for r in report.results.iter().filter(|r| !r.findings.is_empty()) {
        let _ = writeln!(out, "\n{} {}/{}:", r.kind, r.namespace, r.name);
        for f in &r.findings {
            write_finding(out, f);
        }
    }
}

/// The verified credentials, when `verify` ran.
fn write_credentials(out: &mut String, report: &CheckReport) {
    if !report.credentials.is_empty() {
        let _ = writeln!(out, "\ncredentials:");
        for c in &report.credentials {
            let _ = writeln!(
                out,
                "  {:<11} {}/{} {}: {}",
                c.status.as_str(),
                c.namespace,
                c.secret,
                c.registry,
                c.detail
            );
        }
    }
}

/// Invalid documents, then the totals line (without its newline).
fn write_errors_and_totals(out: &mut String, report: &CheckReport) {
    if !report.errors.is_empty() {
        out.push('\n');
    }
    for e in &report.errors {
        let _ = writeln!(out, "error: {e}");
    }
    if !report.skipped_invalid.is_empty() {
        out.push('\n');
    }
    for e in &report.skipped_invalid {
        let _ = writeln!(out, "skipped (invalid): {e}");
    }
    let denied = report.results.iter().filter(|r| !r.allowed).count();
    let _ = write!(
        out,
        "\n{} checked, {} denied, {} skipped (kinds pullgate does not evaluate)",
        report.results.len(),
        denied,
        report.skipped
    );
    if !report.errors.is_empty() {
        let _ = write!(out, ", {} invalid (not evaluated)", report.errors.len());
    }
    if !report.skipped_invalid.is_empty() {
        let _ = write!(out, ", {} invalid skipped", report.skipped_invalid.len());
    }
}
