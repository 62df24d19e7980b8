//! AdmissionReview in (v1, v1beta1) and out: dispatch on the request's kind to the engine, and
//! answer with a JSONPatch, warnings, audit annotations or a denial. Synchronous and pure given
//! the index, so the HTTP layer only moves bytes.

pub mod patch;

use crate::engine::podview::{PodView, WorkloadKind, INJECT_ANNOTATION};
use crate::engine::{
    evaluate_pod, evaluate_service_account, Code, Finding, Operation, PodContext, Severity,
};
use crate::policy::{Policy, Validation};
use crate::store::index::ClusterIndex;
use crate::store::objects::secret_from_value;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Which webhook endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/mutate`: injection.
    Mutate,
    /// `/validate`: findings and denials.
    Validate,
}

impl Endpoint {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// Why a body is not an AdmissionReview pullgate can answer (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    /// Not JSON, or not the shape of an AdmissionReview.
    #[error("body is not a valid AdmissionReview: {0}")]
    Malformed(String),
    /// apiVersion/kind are not admission.k8s.io/v1 or v1beta1 AdmissionReview.
    #[error("unsupported apiVersion/kind {0:?}: expected admission.k8s.io/v1 or v1beta1 AdmissionReview")]
    Unsupported(String),
    /// No `request`.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// No `request.uid`.
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<Box<RawValue>>,
}

#[derive(Deserialize, Default)]
struct Gvk {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    kind: Gvk,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    object: Option<Box<RawValue>>,
}

/// The outcome of one review, for the response and for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Response body (an AdmissionReview JSON).
    pub body: Vec<u8>,
    /// Kind reviewed, as a low-cardinality label.
    pub kind: String,
    /// Operation.
    pub operation: String,
    /// Namespace of the request.
    pub namespace: String,
    /// uid of the request (for logs).
    pub uid: String,
    /// Whether it was allowed.
    pub allowed: bool,
    /// Whether a patch was returned.
    pub mutated: bool,
    /// Number of secrets injected.
    pub injected: usize,
    /// Codes of error findings that denied the request.
    pub denied_codes: Vec<Code>,
    /// Codes of findings sent as warnings.
    pub warning_codes: Vec<Code>,
    /// Registries that deny mode would reject (warn mode only).
    pub would_deny_registries: Vec<String>,
    /// The object could not be read: answered with allowed=false code 400.
    pub object_error: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct StatusOut {
    metadata: BTreeMap<String, String>,
    status: &'static str,
    message: String,
    reason: &'static str,
    code: u16,
}

/// What a review produced before serialisation.
#[derive(Default)]
struct Answer {
    allowed: bool,
    patch: Option<Vec<u8>>,
    deny: Option<(u16, &'static str, String)>,
    warnings: Vec<String>,
    audit: BTreeMap<&'static str, String>,
    injected: usize,
    denied_codes: Vec<Code>,
    warning_codes: Vec<Code>,
    would_deny_registries: Vec<String>,
    object_error: bool,
}

impl Answer {
    fn allow() -> Self {
        Answer {
            allowed: true,
            ..Default::default()
        }
    }

    fn bad_object(msg: String) -> Self {
        Answer {
            allowed: false,
            deny: Some((400, "BadRequest", msg)),
            object_error: true,
            ..Default::default()
        }
    }
}

/// Longest warning sent; the API server may truncate longer ones.
const MAX_WARNING: usize = 256;

/// Answer one AdmissionReview body.
pub fn review(
    endpoint: Endpoint,
    body: &[u8],
    policy: &Policy,
    index: &ClusterIndex,
    now: i64,
) -> Result<Outcome, ReviewError> {
    // serde reads a JSON array into a struct by position: only objects are reviews.
    if !is_json_object(body) {
        return Err(ReviewError::Malformed("expected a JSON object".to_owned()));
    }
    let review: ReviewIn =
        serde_json::from_slice(body).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    let api_version = match review.api_version.as_str() {
        v @ ("admission.k8s.io/v1" | "admission.k8s.io/v1beta1")
            if review.kind == "AdmissionReview" =>
        {
            v
        }
        _ => {
            return Err(ReviewError::Unsupported(format!(
                "{}/{}",
                review.api_version, review.kind
            )))
        }
    };
    let raw = review.request.ok_or(ReviewError::NoRequest)?;
    if raw.get() == "null" {
        return Err(ReviewError::NoRequest);
    }
    if !is_json_object(raw.get().as_bytes()) {
        return Err(ReviewError::Malformed(
            "request is not an object".to_owned(),
        ));
    }
    let req: RequestIn =
        serde_json::from_str(raw.get()).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    if req.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    let namespace = req.namespace.as_deref().unwrap_or("");
    let sub = req.sub_resource.as_deref().unwrap_or("");
    let answer = match (req.kind.group.as_str(), req.kind.kind.as_str()) {
        ("", "Pod") => pod(endpoint, &req, sub, namespace, policy, index, now),
        ("", "ServiceAccount") if sub.is_empty() => {
            service_account(endpoint, &req, namespace, policy, index)
        }
        ("", "Secret") if sub.is_empty() && endpoint == Endpoint::Validate => {
            secret(&req, namespace, policy)
        }
        ("apps" | "batch" | "", k) if sub.is_empty() && endpoint == Endpoint::Validate => {
            match WorkloadKind::from_kind(k) {
                Some(wk) if wk != WorkloadKind::Pod => {
                    workload(wk, &req, namespace, policy, index, now)
                }
                _ => Answer::allow(),
            }
        }
        _ => Answer::allow(),
    };
    Ok(finish(api_version, req, answer))
}

fn finish(api_version: &str, req: RequestIn, a: Answer) -> Outcome {
    let resp = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid: &req.uid,
            allowed: a.allowed,
            patch_type: a.patch.as_ref().map(|_| "JSONPatch"),
            patch: a
                .patch
                .as_ref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            status: a.deny.map(|(code, reason, message)| StatusOut {
                metadata: BTreeMap::new(),
                status: "Failure",
                message,
                reason,
                code,
            }),
            warnings: a.warnings,
            audit_annotations: a.audit,
        },
    };
    // Serialising plain strings and maps cannot fail; an empty body would surface as an error upstream.
    let body = serde_json::to_vec(&resp).unwrap_or_default();
    Outcome {
        body,
        kind: req.kind.kind,
        operation: req.operation,
        namespace: req.namespace.unwrap_or_default(),
        uid: req.uid,
        allowed: a.allowed,
        mutated: a.patch.is_some(),
        injected: a.injected,
        denied_codes: a.denied_codes,
        warning_codes: a.warning_codes,
        would_deny_registries: a.would_deny_registries,
        object_error: a.object_error,
    }
}

/// Whether the JSON text is an object (first non-blank byte `{`).
fn is_json_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The request's object, or why it is missing or not an object.
fn object(req: &RequestIn) -> Result<&str, String> {
    match req.object.as_deref().map(RawValue::get) {
        None | Some("null") => Err("request has no object".to_owned()),
        Some(o) if !is_json_object(o.as_bytes()) => {
            Err("request object is not a JSON object".to_owned())
        }
        Some(o) => Ok(o),
    }
}

fn pod(
    endpoint: Endpoint,
    req: &RequestIn,
    sub: &str,
    namespace: &str,
    policy: &Policy,
    index: &ClusterIndex,
    now: i64,
) -> Answer {
    let operation = match (req.operation.as_str(), sub) {
        ("CREATE", "") => Operation::Create,
        ("UPDATE", "" | "ephemeralcontainers") => Operation::Update,
        _ => return Answer::allow(),
    };
    if endpoint == Endpoint::Mutate && operation != Operation::Create {
        return Answer::allow();
    }
    let obj = match object(req) {
        Ok(o) => o,
        Err(m) => return Answer::bad_object(m),
    };
    let view = match PodView::from_slice(WorkloadKind::Pod, obj.as_bytes()) {
        Ok(v) => v,
        Err(e) => return Answer::bad_object(e.to_string()),
    };
    let ctx = PodContext {
        namespace,
        operation,
        now,
        allow_inject: endpoint == Endpoint::Mutate,
    };
    let d = evaluate_pod(&view, &ctx, policy, index);
    match endpoint {
        Endpoint::Mutate => {
            let mut a = Answer::allow();
            if !d.injected.is_empty() {
                a.patch = Some(patch::pod_pull_secrets(
                    d.had_own_pull_secrets,
                    &d.image_pull_secrets,
                    &d.injected,
                ));
                a.injected = d.injected.len();
                a.audit.insert("injected", d.injected.join(","));
            }
            a
        }
        Endpoint::Validate => {
            validation_answer(d.effective.validation, d.allowed, &d.findings, d.static_pod)
        }
    }
}

fn workload(
    kind: WorkloadKind,
    req: &RequestIn,
    namespace: &str,
    policy: &Policy,
    index: &ClusterIndex,
    now: i64,
) -> Answer {
    if !matches!(req.operation.as_str(), "CREATE" | "UPDATE") {
        return Answer::allow();
    }
    let obj = match object(req) {
        Ok(o) => o,
        Err(m) => return Answer::bad_object(m),
    };
    let view = match PodView::from_slice(kind, obj.as_bytes()) {
        Ok(v) => v,
        Err(e) => return Answer::bad_object(e.to_string()),
    };
    // Templates are checked as the pods their controller will create (which the mutating webhook may still fix).
    let ctx = PodContext {
        namespace,
        operation: Operation::Create,
        now,
        allow_inject: true,
    };
    let d = evaluate_pod(&view, &ctx, policy, index);
    validation_answer(d.effective.validation, d.allowed, &d.findings, false)
}

fn validation_answer(
    mode: Validation,
    allowed: bool,
    findings: &[Finding],
    static_pod: bool,
) -> Answer {
    let mut a = Answer::allow();
    if mode == Validation::Off {
        return a;
    }
    let reportable = findings.iter().filter(|f| f.severity != Severity::Info);
    if !allowed && !static_pod {
        let errors: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        let message = format!(
            "pullgate: {}",
            errors
                .iter()
                .map(|f| format!("{}: {}", f.code, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        );
        a.allowed = false;
        a.deny = Some((403, "Forbidden", message));
        a.denied_codes = errors.iter().map(|f| f.code).collect();
        a.audit
            .insert("denied", codes(a.denied_codes.iter().copied()));
        for f in findings.iter().filter(|f| f.severity == Severity::Warning) {
            a.warnings.push(warning(f));
            a.warning_codes.push(f.code);
        }
        return a;
    }
    for f in reportable {
        a.warnings.push(warning(f));
        a.warning_codes.push(f.code);
        if f.severity == Severity::Error && !static_pod {
            a.would_deny_registries
                .push(f.registry.clone().unwrap_or_default());
        }
    }
    if !a.warning_codes.is_empty() {
        a.audit
            .insert("findings", codes(a.warning_codes.iter().copied()));
    }
    if !a.would_deny_registries.is_empty() {
        a.audit.insert("would-deny", "true".to_owned());
    }
    a
}

fn codes(c: impl Iterator<Item = Code>) -> String {
    let mut v: Vec<&str> = c.map(Code::as_str).collect();
    v.dedup();
    v.join(",")
}

/// A short warning line for one finding.
fn warning(f: &Finding) -> String {
    let container = f
        .container
        .as_deref()
        .map(|c| format!(" [{c}]"))
        .unwrap_or_default();
    let mut w = format!("pullgate {}{container}: {}", f.code, f.message);
    if w.len() > MAX_WARNING {
        let mut cut = MAX_WARNING - 3;
        while !w.is_char_boundary(cut) {
            cut -= 1;
        }
        w.truncate(cut);
        w.push_str("...");
    }
    w
}

#[derive(Deserialize, Default)]
struct SaMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct SaRef {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaIn {
    #[serde(default)]
    metadata: SaMeta,
    #[serde(default)]
    image_pull_secrets: Option<Vec<SaRef>>,
}

fn service_account(
    endpoint: Endpoint,
    req: &RequestIn,
    namespace: &str,
    policy: &Policy,
    index: &ClusterIndex,
) -> Answer {
    if !matches!(req.operation.as_str(), "CREATE" | "UPDATE") {
        return Answer::allow();
    }
    let obj = match object(req) {
        Ok(o) => o,
        Err(m) => return Answer::bad_object(m),
    };
    let sa: SaIn = match serde_json::from_str(obj) {
        Ok(s) => s,
        Err(e) => return Answer::bad_object(format!("cannot read ServiceAccount object: {e}")),
    };
    let annotations = sa.metadata.annotations.as_ref();
    let opt_out = annotations
        .and_then(|a| a.get(INJECT_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    let refs: Vec<&str> = sa
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.as_str())
        .collect();
    let d = evaluate_service_account(&sa.metadata.name, &refs, opt_out, namespace, policy, index);
    let mut a = Answer::allow();
    match endpoint {
        Endpoint::Mutate if !d.injected.is_empty() => {
            let managed = annotations
                .and_then(|a| a.get(crate::store::index::MANAGED_ANNOTATION))
                .map(String::as_str);
            a.patch = Some(patch::service_account_pull_secrets(
                sa.image_pull_secrets.is_some_and(|v| !v.is_empty()),
                &d.injected,
                annotations.is_some(),
                managed,
            ));
            a.injected = d.injected.len();
            a.audit.insert("injected", d.injected.join(","));
        }
        Endpoint::Mutate => {}
        Endpoint::Validate => {
            if policy
                .for_namespace(&index.namespace(namespace).overrides)
                .validation
                != Validation::Off
            {
                for f in &d.findings {
                    a.warnings.push(warning(f));
                    a.warning_codes.push(f.code);
                }
            }
        }
    }
    a
}

fn secret(req: &RequestIn, namespace: &str, policy: &Policy) -> Answer {
    if !matches!(req.operation.as_str(), "CREATE" | "UPDATE") {
        return Answer::allow();
    }
    let obj = match object(req) {
        Ok(o) => o,
        Err(m) => return Answer::bad_object(m),
    };
    let value: serde_json::Value = match serde_json::from_str(obj) {
        Ok(v) => v,
        Err(_) => return Answer::bad_object("cannot read Secret object".to_owned()),
    };
    let mut a = Answer::allow();
    let findings = match secret_from_value(&value, namespace) {
        Err(e) => vec![Finding::general(
            Code::MalformedSecret,
            Severity::Warning,
            e.to_string(),
        )],
        Ok(s) => crate::engine::evaluate::secret_findings(&s, policy),
    };
    if policy.validation != Validation::Off {
        for f in &findings {
            a.warnings.push(warning(f));
            a.warning_codes.push(f.code);
        }
    }
    a
}
