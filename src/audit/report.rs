//! Aggregation, pure: each workload's verdict on its next pod, the existing pods it owns summarised
//! under it ("3 of 5 pods: SecretNotFound …"), pods owned by no audited workload on their own, and
//! the usage index (which workloads and how many pods depend on each secret) that a warning on
//! deleting a secret reads.

use super::object::AuditObject;
use super::{pod, workload};
use crate::check::{to_result, CheckResult};
use crate::engine::index::ClusterIndex;
use crate::engine::podview::WorkloadKind;
use crate::engine::policy::Policy;
use crate::engine::verification::VerificationTable;
use crate::engine::{Code, Finding, Severity};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

/// Distinct causes kept per workload's pods; further ones are counted in `withProblems` only.
pub const MAX_CAUSES: usize = 8;

/// Pods owned by no audited workload listed one by one; beyond, only counted.
pub const MAX_POD_RESULTS: usize = 1000;

/// Objects that could not be read, listed; beyond, only counted.
const MAX_ERRORS: usize = 100;

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing to fix.
    Ok,
    /// Works, but fragile (a warning finding).
    Warn,
    /// The pull fails (and deny mode rejects the next pod).
    Fail,
}

impl Verdict {
    /// The verdict of a set of findings: their worst severity.
    pub fn of(findings: &[Finding]) -> Verdict {
        findings
            .iter()
            .map(|f| Verdict::of_severity(f.severity))
            .max()
            .unwrap_or(Verdict::Ok)
    }

    fn of_severity(s: Severity) -> Verdict {
        match s {
            Severity::Info => Verdict::Ok,
            Severity::Warning => Verdict::Warn,
            Severity::Error => Verdict::Fail,
        }
    }

    /// As shown in the text table.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// What a result is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultScope {
    /// A workload's next pod (its template, decided as admission would now).
    Workload,
    /// An existing pod owned by no audited workload.
    Pod,
}

/// One cause among a workload's existing pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCause {
    /// Finding code.
    pub code: Code,
    /// Severity.
    pub severity: Severity,
    /// Pods with this finding.
    pub pods: u32,
    /// The finding's message (cause and fix).
    pub message: String,
    /// One such pod.
    pub example: String,
}

/// A workload's existing pods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodsSummary {
    /// Pods audited.
    pub total: u32,
    /// Pods with a warning or error finding.
    pub with_problems: u32,
    /// Their causes, at most [`MAX_CAUSES`].
    pub causes: Vec<PodCause>,
}

impl PodsSummary {
    fn add(&mut self, pod: &str, findings: &[Finding]) {
        self.total += 1;
        let mut any = false;
        for (i, f) in findings.iter().enumerate() {
            let duplicate = findings[..i]
                .iter()
                .any(|g| g.code == f.code && g.message == f.message);
            if f.severity < Severity::Warning || duplicate {
                continue;
            }
            any = true;
            let known = self
                .causes
                .iter_mut()
                .find(|c| c.code == f.code && c.message == f.message);
            if let Some(c) = known {
                c.pods += 1;
            } else if self.causes.len() < MAX_CAUSES {
                self.causes.push(PodCause {
                    code: f.code,
                    severity: f.severity,
                    pods: 1,
                    message: f.message.clone(),
                    example: pod.to_owned(),
                });
            }
        }
        if any {
            self.with_problems += 1;
        }
    }

    fn verdict(&self) -> Verdict {
        self.causes
            .iter()
            .map(|c| Verdict::of_severity(c.severity))
            .max()
            .unwrap_or(Verdict::Ok)
    }
}

/// One audited workload or pod: the entry of `pullgate check`, plus what it is about and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditResult {
    /// As `pullgate check` reports it (for a workload: its next pod).
    #[serde(flatten)]
    pub result: CheckResult,
    /// `workload` or `pod`.
    pub scope: ResultScope,
    /// The worst of the next pod's and the existing pods' findings.
    pub verdict: Verdict,
    /// A workload's existing pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodsSummary>,
    /// `metadata.uid` (empty when absent), for PolicyReports and Events (`kubectl describe`
    /// selects them by it); not in the JSON of `check`.
    #[serde(skip)]
    pub uid: String,
}

/// Totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Workloads audited.
    pub workloads: u64,
    /// Workloads whose verdict is not ok.
    pub workloads_with_problems: u64,
    /// Existing pods audited.
    pub pods: u64,
    /// Existing pods with a warning or error finding.
    pub pods_with_problems: u64,
    /// Pods with problems owned by no audited workload and not listed (beyond [`MAX_POD_RESULTS`]).
    pub pods_not_listed: u64,
}

/// A workload as the usage index names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadRef {
    /// Kind.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Who depends on one secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Indexes of the workloads (their next pod names it, or one of their pods does).
    workloads: Vec<u32>,
    /// Existing pods naming it.
    pub pods: u32,
}

/// Secret (namespace, name) → the workloads and pods that name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageIndex {
    workloads: Vec<WorkloadRef>,
    secrets: BTreeMap<String, BTreeMap<String, Usage>>,
}

impl UsageIndex {
    fn add(&mut self, namespace: &str, secret: &str, workload: Option<u32>, pod: bool) {
        let by_name = match self.secrets.get_mut(namespace) {
            Some(m) => m,
            None => self.secrets.entry(namespace.to_owned()).or_default(),
        };
        let usage = match by_name.get_mut(secret) {
            Some(u) => u,
            None => by_name.entry(secret.to_owned()).or_default(),
        };
        if let Some(w) = workload {
            // Objects arrive workload by workload, so a repeat is the last one added.
            if usage.workloads.last() != Some(&w) && !usage.workloads.contains(&w) {
                usage.workloads.push(w);
            }
        }
        if pod {
            usage.pods += 1;
        }
    }

    /// The workloads and the number of pods that name `namespace/secret`.
    pub fn users(&self, namespace: &str, secret: &str) -> Option<(Vec<&WorkloadRef>, u32)> {
        let u = self.secrets.get(namespace)?.get(secret)?;
        let workloads = u
            .workloads
            .iter()
            .filter_map(|w| self.workloads.get(usize::try_from(*w).ok()?))
            .collect();
        Some((workloads, u.pods))
    }

    /// "secret regcred is used by 12 pods of 3 workloads (shop/api, shop/web, …)", or None when
    /// nothing audited names it.
    pub fn describe(&self, namespace: &str, secret: &str) -> Option<String> {
        let (workloads, pods) = self.users(namespace, secret)?;
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut names: Vec<String> = workloads
            .iter()
            .take(3)
            .map(|w| format!("{}/{}", w.namespace, w.name))
            .collect();
        if workloads.len() > 3 {
            names.push("…".to_owned());
        }
        let owners = if workloads.is_empty() {
            String::new()
        } else {
            format!(
                " of {} ({})",
                plural(workloads.len(), "workload", "workloads"),
                names.join(", ")
            )
        };
        Some(format!(
            "secret {secret} is used by {}{owners}",
            plural(usize::try_from(pods).unwrap_or(usize::MAX), "pod", "pods")
        ))
    }

    /// Replace what this index knows of `namespace` by what `pass` (an audit of that namespace)
    /// found; workloads no longer named by anything are dropped, so repeated merges do not grow it.
    pub fn merge_namespace(&mut self, namespace: &str, pass: &UsageIndex) {
        let mut merged = UsageIndex::default();
        let mut remap: HashMap<(bool, u32), u32> = HashMap::new();
        let sources = self
            .secrets
            .iter()
            .filter(|(ns, _)| ns.as_str() != namespace)
            .map(|(ns, m)| (false, ns, m))
            .chain(
                pass.secrets
                    .get_key_value(namespace)
                    .map(|(ns, m)| (true, ns, m)),
            );
        for (from_pass, ns, by_name) in sources {
            let source = if from_pass { pass } else { &*self };
            let mut out = BTreeMap::new();
            for (secret, usage) in by_name {
                let workloads = usage
                    .workloads
                    .iter()
                    .filter_map(|w| {
                        if let Some(n) = remap.get(&(from_pass, *w)) {
                            return Some(*n);
                        }
                        let r = source.workloads.get(usize::try_from(*w).ok()?)?;
                        let n = u32::try_from(merged.workloads.len()).ok()?;
                        merged.workloads.push(r.clone());
                        remap.insert((from_pass, *w), n);
                        Some(n)
                    })
                    .collect();
                out.insert(
                    secret.clone(),
                    Usage {
                        workloads,
                        pods: usage.pods,
                    },
                );
            }
            merged.secrets.insert(ns.clone(), out);
        }
        *self = merged;
    }

    /// Number of secrets named by anything audited.
    pub fn len(&self) -> usize {
        self.secrets.values().map(BTreeMap::len).sum()
    }

    /// Whether nothing audited names a secret.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// The whole audit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Every audited workload (scope `workload`), then the pods with problems that no audited
    /// workload owns (scope `pod`).
    pub results: Vec<AuditResult>,
    /// Totals.
    pub summary: Summary,
    /// Objects not evaluated: in namespaces the policy excludes, finished Jobs, terminated pods.
    pub skipped: u64,
    /// Objects that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// What happened on the way (a list restarted after its continue token expired).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Who depends on each secret.
    #[serde(skip)]
    pub usage: UsageIndex,
}

impl AuditReport {
    /// Whether anything needs fixing.
    pub fn has_problem(&self) -> bool {
        !self.errors.is_empty()
            || self.summary.pods_with_problems > 0
            || self.results.iter().any(|r| r.verdict != Verdict::Ok)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    uid: String,
    /// Shared, so that the checkpoint the cluster adapter takes before each list (a clone of
    /// the auditor) does not copy every workload's result: only the pods summaries change later.
    result: std::sync::Arc<CheckResult>,
    pods: PodsSummary,
}

/// Builds an [`AuditReport`] from objects fed in list order: Deployments, StatefulSets,
/// DaemonSets and CronJobs first, then Jobs, ReplicaSets and ReplicationControllers (folded into
/// the audited workload that controls them), then Pods. Keeps per workload one entry, per secret
/// one usage record, and nothing per pod but counts (and pods with problems that no workload
/// owns, at most [`MAX_POD_RESULTS`]): memory does not grow with the number of pods.
#[derive(Debug, Clone)]
pub struct Auditor<'p> {
    policy: &'p Policy,
    now: i64,
    entries: Vec<Entry>,
    /// uid of an audited workload, or of a ReplicaSet/Job it controls → its entry.
    owners: HashMap<String, u32>,
    pods: Vec<AuditResult>,
    usage: UsageIndex,
    summary: Summary,
    skipped: u64,
    errors: Vec<String>,
    unlisted_errors: u64,
    notes: Vec<String>,
    /// Keep of each result only what the background audit publishes (findings at warning or error).
    slim: bool,
    /// Credential verification results the decisions read.
    verified: Option<Arc<VerificationTable>>,
}

impl<'p> Auditor<'p> {
    /// An empty audit under `policy` at `now` (seconds since the epoch).
    pub fn new(policy: &'p Policy, now: i64) -> Self {
        Auditor {
            policy,
            now,
            entries: Vec::new(),
            owners: HashMap::new(),
            pods: Vec::new(),
            usage: UsageIndex::default(),
            summary: Summary::default(),
            skipped: 0,
            errors: Vec::new(),
            unlisted_errors: 0,
            notes: Vec::new(),
            slim: false,
            verified: None,
        }
    }

    /// Keep of each result only its identity and its findings at warning or error (no images,
    /// secrets or info findings): what `serve`'s background audit publishes, in less memory.
    pub fn slim(mut self) -> Self {
        self.slim = true;
        self
    }

    /// Decide with these credential verification results (`verify`, `audit --verify`).
    pub fn with_verified(mut self, verified: Arc<VerificationTable>) -> Self {
        self.verified = Some(verified);
        self
    }

    fn trimmed(&self, mut r: CheckResult) -> CheckResult {
        if self.slim {
            r.images = Vec::new();
            r.injected_secrets = Vec::new();
            r.image_pull_secrets = Vec::new();
            r.findings.retain(|f| f.severity >= Severity::Warning);
            r.findings.shrink_to_fit();
        }
        r
    }

    /// Audit one workload: its next pod, unless a workload audited earlier controls it (a
    /// Deployment's ReplicaSet, a CronJob's Job), whose pods are then summarised under that one.
    pub fn workload(&mut self, o: &AuditObject, index: &ClusterIndex) {
        let kind = o.view.kind;
        if matches!(
            kind,
            WorkloadKind::ReplicaSet | WorkloadKind::ReplicationController | WorkloadKind::Job
        ) {
            if let Some(&w) = o.controller.as_ref().and_then(|c| self.owners.get(c)) {
                if !o.uid.is_empty() {
                    self.owners.insert(o.uid.clone(), w);
                }
                return;
            }
        }
        if kind == WorkloadKind::Pod || o.done || self.policy.excludes(&o.namespace) {
            self.skipped += 1;
            return;
        }
        let d = workload::next_pod(
            &o.view,
            &o.namespace,
            self.policy,
            index,
            self.verified.as_deref(),
            self.now,
        );
        let w = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        for s in &d.image_pull_secrets {
            self.usage.add(&o.namespace, s, Some(w), false);
        }
        let result = self.trimmed(to_result(&o.view, &o.namespace, &d));
        self.usage.workloads.push(WorkloadRef {
            kind: kind.as_str(),
            namespace: o.namespace.clone(),
            name: result.name.clone(),
        });
        self.entries.push(Entry {
            uid: o.uid.clone(),
            result: std::sync::Arc::new(result),
            pods: PodsSummary::default(),
        });
        if !o.uid.is_empty() {
            self.owners.insert(o.uid.clone(), w);
        }
    }

    /// Audit one existing pod: under the audited workload that controls it (directly or through
    /// its ReplicaSet or Job), or on its own.
    pub fn pod(&mut self, o: &AuditObject, index: &ClusterIndex) {
        if o.done || self.policy.excludes(&o.namespace) {
            self.skipped += 1;
            return;
        }
        let d = pod::existing_pod(
            &o.view,
            &o.namespace,
            self.policy,
            index,
            self.verified.as_deref(),
            self.now,
        );
        let owner = o
            .controller
            .as_ref()
            .and_then(|c| self.owners.get(c))
            .copied();
        for s in &d.image_pull_secrets {
            self.usage.add(&o.namespace, s, owner, true);
        }
        let verdict = Verdict::of(&d.findings);
        self.summary.pods += 1;
        if verdict != Verdict::Ok {
            self.summary.pods_with_problems += 1;
        }
        let entry = owner.and_then(|w| self.entries.get_mut(usize::try_from(w).ok()?));
        match entry {
            Some(e) => e.pods.add(&o.view.meta().display_name(), &d.findings),
            None if verdict == Verdict::Ok => {}
            None if self.pods.len() < MAX_POD_RESULTS => self.pods.push(AuditResult {
                result: self.trimmed(to_result(&o.view, &o.namespace, &d)),
                scope: ResultScope::Pod,
                verdict,
                pods: None,
                uid: o.uid.clone(),
            }),
            None => self.summary.pods_not_listed += 1,
        }
    }

    /// An object that could not be read.
    pub fn unreadable(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(message);
        } else {
            self.unlisted_errors += 1;
        }
    }

    /// Something the report should say about how it was made.
    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// The report.
    pub fn finish(self) -> AuditReport {
        let mut summary = self.summary;
        let mut results: Vec<AuditResult> = self
            .entries
            .into_iter()
            .map(|e| {
                let verdict = Verdict::of(&e.result.findings).max(e.pods.verdict());
                summary.workloads += 1;
                if verdict != Verdict::Ok {
                    summary.workloads_with_problems += 1;
                }
                AuditResult {
                    // The sole owner once the adapter's checkpoints are gone: no copy then.
                    result: std::sync::Arc::unwrap_or_clone(e.result),
                    scope: ResultScope::Workload,
                    verdict,
                    pods: Some(e.pods),
                    uid: e.uid,
                }
            })
            .collect();
        results.extend(self.pods);
        let mut errors = self.errors;
        if self.unlisted_errors > 0 {
            errors.push(format!(
                "and {} more objects that could not be read",
                self.unlisted_errors
            ));
        }
        AuditReport {
            results,
            summary,
            skipped: self.skipped,
            errors,
            notes: self.notes,
            usage: self.usage,
        }
    }
}

/// A finding's message split into its cause and its fix, at the first `": "` outside quotes and
/// parentheses (messages read "cause: fix"); the fix is empty when there is no such split.
pub fn cause_and_fix(message: &str) -> (&str, &str) {
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for (i, c) in message.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth = depth.saturating_sub(1),
            ':' if !quoted && depth == 0 && message[i + 1..].starts_with(' ') => {
                return (&message[..i], &message[i + 2..]);
            }
            _ => {}
        }
    }
    (message, "")
}

fn worst(findings: &[Finding]) -> Option<&Finding> {
    findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .max_by_key(|f| f.severity)
}

/// The report as a table of what needs fixing (workload, namespace, verdict, cause, fix), the
/// full findings of each, and the totals.
pub fn render_text(report: &AuditReport) -> String {
    let mut out = String::new();
    write_problem_table(&mut out, &problem_rows(report));
    for r in report.results.iter().filter(|r| r.verdict != Verdict::Ok) {
        write_problem_details(&mut out, r);
    }
    write_errors_and_totals(&mut out, report);
    out
}

/// One row per workload or pod with a problem: its worst finding (or its pods' worst cause) and fix.
fn problem_rows(report: &AuditReport) -> Vec<[String; 5]> {
    let mut rows: Vec<[String; 5]> = Vec::new();
    for r in report.results.iter().filter(|r| r.verdict != Verdict::Ok) {
        let (cause, message) = match (worst(&r.result.findings), &r.pods) {
            (Some(f), _) => (f.code.to_string(), f.message.as_str()),
            (None, Some(p)) => match p.causes.iter().max_by_key(|c| c.severity) {
                Some(c) => (
                    format!("{} of {} pods: {}", p.with_problems, p.total, c.code),
                    c.message.as_str(),
                ),
                None => continue,
            },
            (None, None) => continue,
        };
        let fix = match cause_and_fix(message).1 {
            "" => "-",
            f => f,
        };
        rows.push([
            format!("{}/{}", r.result.kind, r.result.name),
            r.result.namespace.clone(),
            r.verdict.as_str().to_owned(),
            cause,
            fix.to_owned(),
        ]);
    }
    rows
}

/// The rows under a header, in aligned columns; nothing when no row has a problem.
fn write_problem_table(out: &mut String, rows: &[[String; 5]]) {
    if !rows.is_empty() {
        let header = ["WORKLOAD", "NAMESPACE", "VERDICT", "CAUSE", "FIX"];
        crate::check::write_columns(out, header, rows);
    }
}

/// One result's findings (warnings and errors) and its pods' causes, under a heading naming it.
fn write_problem_details(out: &mut String, r: &AuditResult) {
    let what = match r.scope {
        ResultScope::Workload => "next pod",
        ResultScope::Pod => "pod",
    };
    let _ = writeln!(
        out,
        "\n{} {}/{} ({what}):",
        r.result.kind, r.result.namespace, r.result.name
    );
    for f in r
        .result
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
    {
        crate::check::write_finding(out, f);
    }
    if r.result
        .findings
        .iter()
        .all(|f| f.severity < Severity::Warning)
    {
        let _ = writeln!(out, "  ok      the next pod can pull its images");
    }
    if let Some(p) = r.pods.as_ref().filter(|p| p.with_problems > 0) {
        for c in &p.causes {
            let _ = writeln!(
                out,
                "  {:<7} {} of {} pods (e.g. {}): {}: {}",
                c.severity.as_str(),
                c.pods,
                p.total,
                c.example,
                c.code,
                c.message
            );
        }
    }
}

/// Errors and notes, then the totals line.
fn write_errors_and_totals(out: &mut String, report: &AuditReport) {
    if !report.errors.is_empty() || !report.notes.is_empty() {
        out.push('\n');
    }
    for e in &report.errors {
        let _ = writeln!(out, "error: {e}");
    }
    for n in &report.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let s = &report.summary;
    let _ = write!(
        out,
        "\n{} workloads and {} pods audited: {} workloads and {} pods with problems",
        s.workloads, s.pods, s.workloads_with_problems, s.pods_with_problems
    );
    if s.pods_not_listed > 0 {
        let _ = write!(out, " ({} pods not listed)", s.pods_not_listed);
    }
    let _ = writeln!(out, ", {} skipped", report.skipped);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::object::parse;
    use crate::engine::index::tests::pull_secret;
    use serde_json::{json, Value};

    fn obj(kind: WorkloadKind, v: Value) -> AuditObject {
        parse(kind, v.to_string().as_bytes(), "default").unwrap()
    }

    fn meta(name: &str, uid: &str, owner: Option<&str>) -> Value {
        let mut m = json!({"name": name, "namespace": "shop", "uid": uid});
        if let Some(o) = owner {
            m["ownerReferences"] = json!([{"uid": o, "controller": true}]);
        }
        m
    }

    fn template(secret: &str) -> Value {
        json!({"spec": {"imagePullSecrets": [{"name": secret}],
            "containers": [{"name": "app", "image": "registry.example.com/shop/api:1"}]}})
    }

    fn pod(name: &str, owner: &str, secret: &str) -> AuditObject {
        let mut v = template(secret);
        v["metadata"] = meta(name, &format!("uid-{name}"), Some(owner));
        obj(WorkloadKind::Pod, v)
    }

    #[test]
    fn pods_fold_under_their_deployment_through_its_replicaset() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 0));
        let policy = Policy::default();
        let mut a = Auditor::new(&policy, 0);
        let dep = obj(
            WorkloadKind::Deployment,
            json!({"metadata": meta("api", "d1", None), "spec": {"template": template("regcred")}}),
        );
        a.workload(&dep, &idx);
        let rs = obj(
            WorkloadKind::ReplicaSet,
            json!({"metadata": meta("api-7d9", "rs1", Some("d1")), "spec": {"template": template("regcred")}}),
        );
        a.workload(&rs, &idx);
        // An older ReplicaSet's pods still name a secret since deleted.
        let old = obj(
            WorkloadKind::ReplicaSet,
            json!({"metadata": meta("api-5c4", "rs0", Some("d1")), "spec": {"template": template("old")}}),
        );
        a.workload(&old, &idx);
        for i in 0..2 {
            a.pod(&pod(&format!("api-7d9-{i}"), "rs1", "regcred"), &idx);
        }
        for i in 0..3 {
            a.pod(&pod(&format!("api-5c4-{i}"), "rs0", "old"), &idx);
        }
        // A bare pod naming the deleted secret, and a succeeded one that is skipped.
        let mut bare = template("old");
        bare["metadata"] = meta("debug", "p9", None);
        a.pod(&obj(WorkloadKind::Pod, bare.clone()), &idx);
        bare["status"] = json!({"phase": "Succeeded"});
        a.pod(&obj(WorkloadKind::Pod, bare), &idx);
        let r = a.finish();
        assert_eq!(r.results.len(), 2, "{:#?}", r.results);
        let w = &r.results[0];
        assert_eq!((w.scope, w.verdict), (ResultScope::Workload, Verdict::Fail));
        assert!(w.result.findings.is_empty(), "the next pod is fine");
        let p = w.pods.as_ref().unwrap();
        assert_eq!((p.total, p.with_problems), (5, 3));
        assert_eq!(p.causes[0].code, Code::SecretNotFound);
        assert_eq!(p.causes[0].pods, 3);
        assert_eq!(p.causes[0].example, "api-5c4-0");
        assert_eq!(r.results[1].scope, ResultScope::Pod);
        assert_eq!(r.results[1].result.name, "debug");
        assert_eq!(
            r.summary,
            Summary {
                workloads: 1,
                workloads_with_problems: 1,
                pods: 6,
                pods_with_problems: 4,
                pods_not_listed: 0
            }
        );
        assert_eq!(r.skipped, 1);
        assert!(r.has_problem());
        assert_eq!(
            r.usage.describe("shop", "regcred").as_deref(),
            Some("secret regcred is used by 2 pods of 1 workload (shop/api)")
        );
        assert_eq!(
            r.usage.describe("shop", "old").as_deref(),
            Some("secret old is used by 4 pods of 1 workload (shop/api)")
        );
        assert_eq!(r.usage.describe("shop", "nothing"), None);
        assert_eq!(r.usage.len(), 2);
        let text = render_text(&r);
        assert!(
            text.contains("Deployment/api  shop       FAIL     3 of 5 pods: SecretNotFound"),
            "{text}"
        );
        assert!(
            text.contains("3 of 5 pods (e.g. api-5c4-0): SecretNotFound"),
            "{text}"
        );
        assert!(
            text.contains(
                "1 workloads and 6 pods audited: 1 workloads and 4 pods with problems, 1 skipped"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["results"][0]["scope"], "workload");
        assert_eq!(json["results"][0]["kind"], "Deployment");
        assert_eq!(json["results"][0]["pods"]["withProblems"], 3);
        assert_eq!(json["results"][1]["scope"], "pod");
        assert!(json.get("usage").is_none());
    }

    /// The usage index of an audit of Deployments `(namespace, name, secret)`.
    fn usage_of(deployments: &[(&str, &str, &str)]) -> UsageIndex {
        let policy = Policy::default();
        let mut a = Auditor::new(&policy, 0);
        for (i, (ns, name, secret)) in deployments.iter().enumerate() {
            let mut m = meta(name, &format!("d{i}"), None);
            m["namespace"] = json!(ns);
            let d = json!({"metadata": m, "spec": {"template": template(secret)}});
            a.workload(&obj(WorkloadKind::Deployment, d), &ClusterIndex::new());
        }
        a.finish().usage
    }

    #[test]
    fn a_slim_audit_keeps_verdicts_findings_and_usage() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 0));
        let policy = Policy::default();
        let run = |slim: bool| {
            let mut a = Auditor::new(&policy, 0);
            if slim {
                a = a.slim();
            }
            for (name, secret) in [("api", "regcred"), ("web", "gone")] {
                let d = json!({"metadata": meta(name, name, None), "spec": {"template": template(secret)}});
                a.workload(&obj(WorkloadKind::Deployment, d), &idx);
            }
            a.finish()
        };
        let (full, slim) = (run(false), run(true));
        assert!(full.results.iter().all(|r| !r.result.images.is_empty()));
        assert!(slim.results.iter().all(|r| r.result.images.is_empty()));
        let outline = |r: &AuditReport| {
            r.results
                .iter()
                .map(|r| {
                    let codes: Vec<Code> = r
                        .result
                        .findings
                        .iter()
                        .filter(|f| f.severity >= Severity::Warning)
                        .map(|f| f.code)
                        .collect();
                    (r.result.name.clone(), r.verdict, codes)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(outline(&full), outline(&slim));
        assert_eq!(full.usage, slim.usage);
        assert_eq!(full.summary, slim.summary);
    }

    #[test]
    fn a_namespace_pass_replaces_that_namespace_only() {
        let mut all = usage_of(&[
            ("shop", "api", "regcred"),
            ("shop", "web", "regcred"),
            ("shop", "cron", "old"),
            ("ci", "runner", "regcred"),
        ]);
        let pass = usage_of(&[("shop", "api", "regcred"), ("shop", "api2", "new")]);
        for _ in 0..3 {
            all.merge_namespace("shop", &pass);
        }
        assert_eq!(
            all.describe("shop", "regcred").as_deref(),
            Some("secret regcred is used by 0 pods of 1 workload (shop/api)")
        );
        assert_eq!(all.describe("shop", "old"), None);
        assert!(all.describe("shop", "new").is_some());
        assert_eq!(
            all.describe("ci", "regcred").as_deref(),
            Some("secret regcred is used by 0 pods of 1 workload (ci/runner)")
        );
        // Workloads no longer named are dropped: merging again does not grow the index.
        assert_eq!(all.workloads.len(), 3);
        assert_eq!(all.len(), 3);
        all.merge_namespace("shop", &UsageIndex::default());
        assert_eq!((all.len(), all.workloads.len()), (1, 1));
    }

    #[test]
    fn a_replicaset_without_an_audited_owner_is_a_workload_and_excluded_namespaces_are_skipped() {
        let idx = ClusterIndex::new();
        let policy = Policy::from_yaml("namespaces:\n  exclude: [kube-system]\n").unwrap();
        let mut a = Auditor::new(&policy, 0);
        let rs = obj(
            WorkloadKind::ReplicaSet,
            json!({"metadata": meta("lone", "rs1", Some("rollout-uid")), "spec": {"template": template("x")}}),
        );
        a.workload(&rs, &idx);
        let mut sys = template("x");
        sys["metadata"] = json!({"name": "dns", "namespace": "kube-system"});
        a.workload(
            &obj(
                WorkloadKind::Deployment,
                json!({"metadata": sys["metadata"], "spec": {"template": template("x")}}),
            ),
            &idx,
        );
        let r = a.finish();
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.results[0].result.kind, "ReplicaSet");
        assert_eq!(r.skipped, 1);
        assert_eq!(
            r.usage.describe("shop", "x").as_deref(),
            Some("secret x is used by 0 pods of 1 workload (shop/lone)")
        );
    }

    #[test]
    fn clean_audit_has_no_problem() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 0));
        let policy = Policy::default();
        let mut a = Auditor::new(&policy, 0);
        let dep = obj(
            WorkloadKind::Deployment,
            json!({"metadata": meta("api", "d1", None), "spec": {"template": template("regcred")}}),
        );
        a.workload(&dep, &idx);
        a.pod(&pod("api-1", "d1", "regcred"), &idx);
        let r = a.finish();
        assert!(!r.has_problem(), "{r:#?}");
        assert_eq!(r.results[0].verdict, Verdict::Ok);
        assert!(render_text(&r).starts_with("\n1 workloads and 1 pods audited: 0 workloads"));
    }

    #[test]
    fn causes_split_from_fixes_outside_quotes_and_parentheses() {
        assert_eq!(
            cause_and_fix("secret \"a: b\" is missing (reason: gone): create it: now"),
            (
                "secret \"a: b\" is missing (reason: gone)",
                "create it: now"
            )
        );
        assert_eq!(cause_and_fix("no split here"), ("no split here", ""));
    }
}
