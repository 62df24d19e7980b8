//! AdmissionReview in (v1, v1beta1) and out: dispatch on the request's kind to the engine, and
//! answer with a JSONPatch, warnings, audit annotations or a denial. Synchronous and pure given
//! the index, so the HTTP layer only moves bytes.

pub mod patch;

use crate::audit::UsageIndex;
use crate::engine::index::ClusterIndex;
use crate::engine::keyring::MatchTarget;
use crate::engine::podview::{PodView, WorkloadKind, INJECT_ANNOTATION};
use crate::engine::policy::{Policy, Registries, Validation};
use crate::engine::verification::VerificationTable;
use crate::engine::{
    evaluate_pod, evaluate_service_account, Code, Decision, Finding, Operation, PodContext,
    Severity,
};
use crate::store::objects::secret_from_value;
use base64::Engine;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

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
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or not the shape of an AdmissionReview.
    #[error("body is not a valid AdmissionReview: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The body, or its `request`, is JSON but not an object.
    #[error("body is not a valid AdmissionReview: {0}")]
    NotAnObject(&'static str),
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
    /// Name of the object (set for DELETE, where `object` is null).
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    object: Option<Box<RawValue>>,
    /// The object already read as a view, by [`OnePassRequest`] (then `object` is None).
    #[serde(skip)]
    view: Option<PodView>,
}

/// A review read in one pass; see [`OnePassRequest`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnePassReview {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<OnePassRequest>,
}

/// A [`RequestIn`] read without keeping the object as text to parse again: when `kind`, which
/// the API server writes before `object`, names a pod or a workload, the object is read
/// straight into its [`PodView`]. Stricter than the derived reader (an object that is not a
/// JSON object, or one that does not read as a view, fails the whole review), so that on any
/// error the caller reads the review again with [`ReviewIn`] and answers exactly as before.
struct OnePassRequest(RequestIn);

impl<'de> Deserialize<'de> for OnePassRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OnePassVisitor)
    }
}

struct OnePassVisitor;

/// The AdmissionRequest fields [`OnePassVisitor`] reads; a key is matched without being copied.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum RequestField {
    Uid,
    Kind,
    SubResource,
    Namespace,
    Name,
    Operation,
    Object,
    #[serde(other)]
    Other,
}

impl<'de> Visitor<'de> for OnePassVisitor {
    type Value = OnePassRequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionRequest object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OnePassRequest, A::Error> {
        // The derived reader refuses a repeated field; so does this one.
        fn once<T, E: de::Error>(slot: &mut Option<T>, v: T, name: &'static str) -> Result<(), E> {
            match slot.replace(v) {
                Some(_) => Err(E::duplicate_field(name)),
                None => Ok(()),
            }
        }
        let (mut uid, mut kind, mut sub_resource, mut namespace, mut operation) =
            (None, None, None, None, None);
        let mut name = None;
        let mut object: Option<Result<PodView, Option<Box<RawValue>>>> = None;
        while let Some(field) = map.next_key::<RequestField>()? {
            match field {
                RequestField::Uid => once(&mut uid, map.next_value::<String>()?, "uid")?,
                RequestField::Kind => once(&mut kind, map.next_value::<Gvk>()?, "kind")?,
                RequestField::SubResource => once(
                    &mut sub_resource,
                    map.next_value::<Option<String>>()?,
                    "subResource",
                )?,
                RequestField::Namespace => once(
                    &mut namespace,
                    map.next_value::<Option<String>>()?,
                    "namespace",
                )?,
                RequestField::Name => once(&mut name, map.next_value::<Option<String>>()?, "name")?,
                RequestField::Operation => {
                    once(&mut operation, map.next_value::<String>()?, "operation")?
                }
                RequestField::Object => {
                    let read = match kind.as_ref().and_then(view_kind) {
                        Some(k) => Ok(map.next_value_seed(ViewSeed(k))?),
                        None => Err(map.next_value::<Option<Box<RawValue>>>()?),
                    };
                    once(&mut object, read, "object")?;
                }
                RequestField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (object, view) = match object {
            Some(Ok(view)) => (None, Some(view)),
            Some(Err(raw)) => (raw, None),
            None => (None, None),
        };
        Ok(OnePassRequest(RequestIn {
            uid: uid.unwrap_or_default(),
            kind: kind.unwrap_or_default(),
            sub_resource: sub_resource.flatten(),
            namespace: namespace.flatten(),
            name: name.flatten(),
            operation: operation.unwrap_or_default(),
            object,
            view,
        }))
    }
}

/// The view a review of this kind is decided on, as [`review`] dispatches it.
fn view_kind(kind: &Gvk) -> Option<WorkloadKind> {
    match (kind.group.as_str(), WorkloadKind::from_kind(&kind.kind)?) {
        ("", WorkloadKind::Pod) => Some(WorkloadKind::Pod),
        (_, WorkloadKind::Pod) => None,
        ("apps" | "batch" | "", k) => Some(k),
        _ => None,
    }
}

/// Reads an object straight into a view of its kind; anything but a JSON object fails.
struct ViewSeed(WorkloadKind);

impl<'de> DeserializeSeed<'de> for ViewSeed {
    type Value = PodView;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PodView, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ViewSeed {
    type Value = PodView;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} object", self.0.as_str())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PodView, A::Error> {
        PodView::deserialize_as(self.0, de::value::MapAccessDeserializer::new(map))
    }
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
    /// What deny mode would reject (warn mode only), once each: the policy's private-registry
    /// pattern that made each failing image need credentials, or `other` for findings not tied to one.
    pub would_deny_patterns: Vec<String>,
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
    would_deny_patterns: Vec<String>,
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
    review_with_usage(endpoint, body, policy, index, now, Observed::default())
}

/// What the cluster-mode tasks have learnt, for the decisions that read it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed<'a> {
    /// Who uses which secret, as of the last completed audit (`None` before one completes: a
    /// Secret DELETE is then allowed without a word).
    pub usage: Option<&'a UsageIndex>,
    /// Credential verification results (`verify`); `None` when nothing was verified.
    pub verified: Option<&'a VerificationTable>,
}

/// Answer one AdmissionReview body with what the cluster-mode tasks have learnt ([`Observed`]).
pub fn review_with_usage(
    endpoint: Endpoint,
    body: &[u8],
    policy: &Policy,
    index: &ClusterIndex,
    now: i64,
    observed: Observed<'_>,
) -> Result<Outcome, ReviewError> {
    // serde reads a JSON array into a struct by position: only objects are reviews.
    if !is_json_object(body) {
        return Err(ReviewError::NotAnObject("expected a JSON object"));
    }
    // One pass for a well-formed review (any the API server sends); whatever that reader refuses
    // is read again step by step, which finds the precise error or answer.
    let (api_version, kind, request) = match serde_json::from_slice::<OnePassReview>(body) {
        Ok(r) => (r.api_version, r.kind, Ok(r.request.map(|r| r.0))),
        Err(_) => {
            let r: ReviewIn = serde_json::from_slice(body)?;
            (r.api_version, r.kind, Err(r.request))
        }
    };
    let api_version = match (api_version.as_str(), kind.as_str()) {
        ("admission.k8s.io/v1", "AdmissionReview") => "admission.k8s.io/v1",
        ("admission.k8s.io/v1beta1", "AdmissionReview") => "admission.k8s.io/v1beta1",
        _ => return Err(ReviewError::Unsupported(format!("{api_version}/{kind}"))),
    };
    let req = match request {
        Ok(req) => req.ok_or(ReviewError::NoRequest)?,
        Err(raw) => {
            let raw = raw.ok_or(ReviewError::NoRequest)?;
            if raw.get() == "null" {
                return Err(ReviewError::NoRequest);
            }
            if !is_json_object(raw.get().as_bytes()) {
                return Err(ReviewError::NotAnObject("request is not an object"));
            }
            serde_json::from_str(raw.get())?
        }
    };
    if req.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    let namespace = req.namespace.as_deref().unwrap_or("");
    let sub = req.sub_resource.as_deref().unwrap_or("");
    let answer = match (req.kind.group.as_str(), req.kind.kind.as_str()) {
        ("", "Pod") => pod(
            endpoint,
            &req,
            namespace,
            policy,
            index,
            now,
            observed.verified,
        ),
        ("", "ServiceAccount") if sub.is_empty() => {
            service_account(endpoint, &req, namespace, policy, index)
        }
        ("", "Secret") if sub.is_empty() && endpoint == Endpoint::Validate => {
            if req.operation == "DELETE" {
                secret_delete(&req, namespace, policy, observed.usage)
            } else {
                secret(&req, namespace, policy)
            }
        }
        ("apps" | "batch" | "", k) if sub.is_empty() && endpoint == Endpoint::Validate => {
            match WorkloadKind::from_kind(k) {
                Some(wk) if wk != WorkloadKind::Pod => {
                    workload(wk, &req, namespace, policy, index, now, observed.verified)
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
        would_deny_patterns: a.would_deny_patterns,
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

/// The request's object as a view of `kind`: the one read with the request, else read now.
fn view_of(req: &RequestIn, kind: WorkloadKind) -> Result<Cow<'_, PodView>, String> {
    if let Some(view) = req.view.as_ref().filter(|v| v.kind == kind) {
        return Ok(Cow::Borrowed(view));
    }
    let obj = object(req)?;
    PodView::from_slice(kind, obj.as_bytes())
        .map(Cow::Owned)
        .map_err(|e| e.to_string())
}

fn pod(
    endpoint: Endpoint,
    req: &RequestIn,
    namespace: &str,
    policy: &Policy,
    index: &ClusterIndex,
    now: i64,
    verified: Option<&VerificationTable>,
) -> Answer {
    let sub = req.sub_resource.as_deref().unwrap_or("");
    let operation = match (req.operation.as_str(), sub) {
        ("CREATE", "") => Operation::Create,
        ("UPDATE", "" | "ephemeralcontainers") => Operation::Update,
        _ => return Answer::allow(),
    };
    if endpoint == Endpoint::Mutate && operation != Operation::Create {
        return Answer::allow();
    }
    let view = match view_of(req, WorkloadKind::Pod) {
        Ok(v) => v,
        Err(m) => return Answer::bad_object(m),
    };
    let ctx = PodContext {
        namespace,
        operation,
        now,
        allow_inject: endpoint == Endpoint::Mutate,
        verified: None,
    }
    .with_verified(verified);
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
        Endpoint::Validate => validation_answer(&d, d.static_pod, &policy.registries),
    }
}

fn workload(
    kind: WorkloadKind,
    req: &RequestIn,
    namespace: &str,
    policy: &Policy,
    index: &ClusterIndex,
    now: i64,
    verified: Option<&VerificationTable>,
) -> Answer {
    if !matches!(req.operation.as_str(), "CREATE" | "UPDATE") {
        return Answer::allow();
    }
    let view = match view_of(req, kind) {
        Ok(v) => v,
        Err(m) => return Answer::bad_object(m),
    };
    // Templates are checked as the pods their controller will create (which the mutating webhook may still fix).
    let ctx = PodContext::creating(namespace, now).with_verified(verified);
    let d = evaluate_pod(&view, &ctx, policy, index);
    validation_answer(&d, false, &policy.registries)
}

/// The would-deny label of an error finding: the pattern that made its image need credentials.
fn would_deny_pattern(f: &Finding, d: &Decision<'_>, registries: &Registries) -> String {
    f.image
        .as_deref()
        .and_then(|image| d.images.iter().find(|i| i.image == image))
        .and_then(|i| i.reference.as_ref())
        .and_then(|r| registries.credential_pattern(&MatchTarget::new(r.name())))
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned())
}

fn validation_answer(d: &Decision<'_>, static_pod: bool, registries: &Registries) -> Answer {
    let (mode, allowed, findings) = (d.effective.validation, d.allowed, &d.findings);
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
            let pattern = would_deny_pattern(f, d, registries);
            if !a.would_deny_patterns.contains(&pattern) {
                a.would_deny_patterns.push(pattern);
            }
        }
    }
    if !a.warning_codes.is_empty() {
        a.audit
            .insert("findings", codes(a.warning_codes.iter().copied()));
    }
    if !a.would_deny_patterns.is_empty() {
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
    cut_warning(format!("pullgate {}{container}: {}", f.code, f.message))
}

/// A warning cut to [`MAX_WARNING`] bytes on a character boundary.
fn cut_warning(mut w: String) -> String {
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
                .and_then(|a| a.get(crate::engine::index::MANAGED_ANNOTATION))
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

/// A Secret DELETE: what the last audit found depending on it, as a warning, or a denial under
/// `audit.protectInUseSecrets`.
fn secret_delete(
    req: &RequestIn,
    namespace: &str,
    policy: &Policy,
    usage: Option<&UsageIndex>,
) -> Answer {
    let described = req
        .name
        .as_deref()
        .zip(usage)
        .and_then(|(name, usage)| usage.describe(namespace, name));
    let Some(users) = described else {
        return Answer::allow();
    };
    let message = format!("pullgate: {users}; their next pods will fail to pull");
    if policy.audit.protect_in_use_secrets {
        return Answer {
            allowed: false,
            deny: Some((
                403,
                "Forbidden",
                format!("{message} (audit.protectInUseSecrets forbids deleting it)"),
            )),
            ..Default::default()
        };
    }
    let mut a = Answer::allow();
    a.warnings.push(cut_warning(message));
    a.audit.insert("secret-in-use", "true".to_owned());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;
    use proptest::prelude::*;

    /// A review whose request has `kind` before `object` (as the API server writes it: read in
    /// one pass) or after it (the object is then kept as text and read on its own).
    fn body(kind: &str, object: &str, object_first: bool) -> Vec<u8> {
        let kind = format!(r#""kind":{kind}"#);
        let object = format!(r#""object":{object}"#);
        let (a, b) = if object_first {
            (object, kind)
        } else {
            (kind, object)
        };
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u1",{a},"namespace":"shop","operation":"CREATE",{b}}}}}"#
        )
        .into_bytes()
    }

    fn index() -> ClusterIndex {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 1));
        idx
    }

    /// The same answer (or error) whichever way the object was read.
    fn same_either_way(kind: &str, object: &str) -> Result<(), TestCaseError> {
        let (policy, idx) = (Policy::default(), index());
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            // The bodies differ in layout, so positions in request-level errors differ too.
            let read = |object_first| {
                review(
                    endpoint,
                    &body(kind, object, object_first),
                    &policy,
                    &idx,
                    0,
                )
                .map_err(|e| {
                    let message = e.to_string();
                    match e {
                        ReviewError::Malformed(_) => {
                            message.split(" at line ").next().unwrap_or("").to_owned()
                        }
                        _ => message,
                    }
                })
            };
            prop_assert_eq!(read(false), read(true), "{} {}", kind, object);
        }
        Ok(())
    }

    const POD: &str = r#"{"kind":"Pod","group":"","version":"v1"}"#;
    const DEPLOYMENT: &str = r#"{"kind":"Deployment","group":"apps","version":"v1"}"#;
    const CRONJOB: &str = r#"{"kind":"CronJob","group":"batch","version":"v1"}"#;

    #[test]
    fn one_pass_answers_as_the_step_by_step_reader() {
        let pod = r#"{"metadata":{"name":"p"},"spec":{"imagePullSecrets":[{"name":"nope"}],"containers":[{"name":"a","image":"registry.example.com/a:1"},{"name":"b","image":"quay.io/b"}]}}"#;
        let template = r#"{"metadata":{"name":"d"},"spec":{"template":{"spec":{"containers":[{"name":"a","image":"quay.io/a"}]}}}}"#;
        let cronjob = r#"{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"quay.io/a"}]}}}}}}"#;
        let cases = [
            (POD, pod),
            (DEPLOYMENT, template),
            (CRONJOB, cronjob),
            (POD, template),
            (r#"{"kind":"Pod","group":"apps"}"#, pod),
            (POD, "null"),
            (POD, "[]"),
            (POD, r#"[{"name":"p"}]"#),
            (POD, r#""pod""#),
            (POD, r#"{"spec":{"containers":"x"}}"#),
            (POD, r#"{"spec":{"containers":[{"image":7}]}}"#),
            (POD, &format!(r#"{pod},"object":{pod}"#)),
            (POD, &format!(r#"{pod},"uid":"again""#)),
            (DEPLOYMENT, r#"{"spec":null}"#),
            (
                r#"{"kind":"ServiceAccount","group":""}"#,
                r#"{"metadata":{"name":"default"}}"#,
            ),
            (r#"{"kind":"Secret","group":""}"#, r#"{"type":"Opaque"}"#),
            ("null", pod),
        ];
        for (kind, object) in cases {
            if let Err(e) = same_either_way(kind, object) {
                panic!("{e}");
            }
        }
        // The API server's order is read in one pass, the object straight into its view.
        let read = |b: &[u8]| {
            serde_json::from_slice::<OnePassReview>(b)
                .ok()
                .and_then(|r| r.request)
                .map(|r| (r.0.view.is_some(), r.0.object.is_some()))
        };
        assert_eq!(read(&body(POD, pod, false)), Some((true, false)));
        assert_eq!(read(&body(POD, pod, true)), Some((false, true)));
        assert_eq!(read(&body(POD, "[]", false)), None);
        // Both orders give a decision for a well-formed pod, not an error.
        let out = review(
            Endpoint::Validate,
            &body(POD, pod, false),
            &Policy::default(),
            &index(),
            0,
        );
        assert!(out.is_ok_and(|o| !o.warning_codes.is_empty()));
    }

    #[test]
    fn verification_results_passed_in_reach_pods_and_workloads() {
        use crate::engine::index::{CredentialStatus, SecretVerification};
        let (policy, idx) = (Policy::default(), index());
        let mut table = VerificationTable::new();
        assert!(table.record(
            &idx,
            "shop",
            "regcred",
            SecretVerification {
                resource_version: None,
                verified_at: 1,
                keys: BTreeMap::from([(
                    "registry.example.com".to_owned(),
                    CredentialStatus::Rejected
                )]),
            },
        ));
        let pod = r#"{"metadata":{"name":"p"},"spec":{"imagePullSecrets":[{"name":"regcred"}],"containers":[{"name":"a","image":"registry.example.com/a:1"}]}}"#;
        let template = r#"{"metadata":{"name":"d"},"spec":{"template":{"spec":{"imagePullSecrets":[{"name":"regcred"}],"containers":[{"name":"a","image":"registry.example.com/a:1"}]}}}}"#;
        for (kind, object) in [(POD, pod), (DEPLOYMENT, template)] {
            let codes = |verified| {
                let observed = Observed {
                    usage: None,
                    verified,
                };
                let b = body(kind, object, false);
                review_with_usage(Endpoint::Validate, &b, &policy, &idx, 0, observed)
                    .map(|o| o.warning_codes)
                    .unwrap()
            };
            let rejected = |c: &[Code]| c.contains(&Code::CredentialsRejected);
            assert!(!rejected(&codes(None)), "{kind}");
            assert!(rejected(&codes(Some(&table))), "{kind}");
        }
    }

    /// The request fields the one-pass reader reads by hand, as the derived `RequestIn` reads
    /// them (the test above compares the two orders, which share this field reading).
    #[test]
    fn one_pass_reads_request_fields_as_the_derived_reader() {
        let requests = [
            r#"{"uid":"u1","kind":{"group":"","kind":"Pod"},"subResource":"ephemeralcontainers","namespace":"shop","operation":"UPDATE","object":{"spec":{"containers":[]}}}"#,
            r#"{"uid":"u2","kind":{"group":"apps","kind":"Deployment"},"namespace":null,"operation":"CREATE"}"#,
            r#"{"uid":"u3","kind":{"kind":"ServiceAccount"},"sub\u0052esource":"status","name":"x","dryRun":true}"#,
            r#"{"operation":"DELETE","unknown":{"nested":[1,2]},"uid":"u4"}"#,
            r#"{}"#,
        ];
        for request in requests {
            let derived: RequestIn = serde_json::from_str(request).expect("derived reader");
            let body = format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{request}}}"#
            );
            let one_pass = serde_json::from_str::<OnePassReview>(&body)
                .ok()
                .and_then(|r| r.request)
                .map(|r| r.0);
            let Some(one_pass) = one_pass else {
                panic!("one-pass reader refused {request}");
            };
            let fields = |r: &RequestIn| {
                (
                    r.uid.clone(),
                    r.kind.group.clone(),
                    r.kind.kind.clone(),
                    r.sub_resource.clone(),
                    r.namespace.clone(),
                    r.operation.clone(),
                )
            };
            assert_eq!(fields(&one_pass), fields(&derived), "{request}");
        }
    }

    fn json_leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_owned()),
            Just("7".to_owned()),
            Just("true".to_owned()),
            Just(r#""registry.example.com/a:1""#.to_owned()),
            Just(r#""quay.io/b""#.to_owned()),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
        ]
    }

    /// A Secret DELETE as the API server sends it: `name` set, `object` null, `oldObject` the secret.
    fn secret_delete_body(name: &str) -> Vec<u8> {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u9","kind":{{"group":"","version":"v1","kind":"Secret"}},"resource":{{"group":"","version":"v1","resource":"secrets"}},"requestKind":{{"group":"","version":"v1","kind":"Secret"}},"name":"{name}","namespace":"shop","operation":"DELETE","userInfo":{{"username":"kubernetes-admin"}},"object":null,"oldObject":{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"{name}","namespace":"shop"}},"type":"kubernetes.io/dockerconfigjson","data":{{".dockerconfigjson":"e30="}}}},"dryRun":false,"options":{{"apiVersion":"meta.k8s.io/v1","kind":"DeleteOptions","propagationPolicy":"Background"}}}}}}"#
        )
        .into_bytes()
    }

    fn usage() -> crate::audit::UsageIndex {
        let policy = Policy::default();
        let mut a = crate::audit::Auditor::new(&policy, 0);
        let d = serde_json::json!({"metadata": {"name": "api", "namespace": "shop", "uid": "d1"},
            "spec": {"template": {"spec": {"imagePullSecrets": [{"name": "regcred"}],
            "containers": [{"name": "a", "image": "registry.example.com/a:1"}]}}}});
        let o =
            crate::audit::object::parse(WorkloadKind::Deployment, d.to_string().as_bytes(), "shop")
                .unwrap();
        a.workload(&o, &index());
        a.finish().usage
    }

    fn response(o: &Outcome) -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&o.body).unwrap()["response"].clone()
    }

    #[test]
    fn deleting_a_secret_in_use_warns_or_denies_from_the_last_audit() {
        let (policy, idx, usage) = (Policy::default(), index(), usage());
        let run = |name: &str, policy: &Policy, usage: Option<&UsageIndex>| {
            review_with_usage(
                Endpoint::Validate,
                &secret_delete_body(name),
                policy,
                &idx,
                0,
                Observed {
                    usage,
                    verified: None,
                },
            )
            .unwrap()
        };
        // No audit completed: nothing said.
        let o = run("regcred", &policy, None);
        assert!(o.allowed);
        assert!(response(&o).get("warnings").is_none(), "{}", response(&o));
        // In use: a warning naming the users.
        let o = run("regcred", &policy, Some(&usage));
        assert!(o.allowed);
        assert_eq!(
            response(&o)["warnings"][0],
            "pullgate: secret regcred is used by 0 pods of 1 workload (shop/api); their next pods will fail to pull"
        );
        // Unused: allowed silently.
        let o = run("other", &policy, Some(&usage));
        assert!(o.allowed && response(&o).get("warnings").is_none());
        // Protected: denied.
        let mut protect = Policy::default();
        protect.audit.protect_in_use_secrets = true;
        let o = run("regcred", &protect, Some(&usage));
        assert!(!o.allowed);
        let r = response(&o);
        assert_eq!(r["status"]["code"], 403);
        assert!(
            r["status"]["message"]
                .as_str()
                .unwrap()
                .contains("secret regcred is used by 0 pods of 1 workload (shop/api)"),
            "{r}"
        );
        assert!(run("other", &protect, Some(&usage)).allowed);
        // The mutating endpoint never answers on it.
        let o = review_with_usage(
            Endpoint::Mutate,
            &secret_delete_body("regcred"),
            &protect,
            &idx,
            0,
            Observed {
                usage: Some(&usage),
                verified: None,
            },
        )
        .unwrap();
        assert!(o.allowed);
    }

    proptest! {
        #[test]
        fn one_pass_equals_step_by_step_on_odd_pods(
            image in json_leaf(),
            name in json_leaf(),
            containers_shape in 0..3usize,
            secrets in json_leaf(),
            annotations in json_leaf(),
            kind in prop_oneof![Just(POD), Just(DEPLOYMENT), Just(CRONJOB)],
        ) {
            let container = format!(r#"{{"name":{name},"image":{image}}}"#);
            let containers = match containers_shape {
                0 => format!("[{container}]"),
                1 => format!("[{container},{container}]"),
                _ => container,
            };
            let spec = format!(r#"{{"imagePullSecrets":{secrets},"containers":{containers}}}"#);
            let object = match kind {
                DEPLOYMENT => format!(r#"{{"spec":{{"template":{{"metadata":{{"annotations":{annotations}}},"spec":{spec}}}}}}}"#),
                CRONJOB => format!(r#"{{"spec":{{"jobTemplate":{{"spec":{{"template":{{"spec":{spec}}}}}}}}}}}"#),
                _ => format!(r#"{{"metadata":{{"annotations":{annotations}}},"spec":{spec}}}"#),
            };
            same_either_way(kind, &object)?;
        }
    }
}
