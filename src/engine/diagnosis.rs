//! Pull-failure attribution: recognise the kubelet's image-pull failure Events and name the most
//! likely cause of one from the engine's view of the pod, as the guide's causes table does.

use super::evaluate::{evaluate_pod, Decision, PodContext};
use super::findings::{self, closest, Code, Finding, Severity};
use super::keyring::MatchTarget;
use super::podview::PodView;
use super::registry_class::RegistryClass;
use crate::engine::index::ClusterIndex;
use crate::engine::policy::Policy;
use crate::engine::verification::VerificationTable;
use serde::Serialize;
use std::fmt;

/// Longest image reference taken from an Event message (distribution caps names at 255 bytes;
/// tag and digest add less than 200).
const MAX_IMAGE_LEN: usize = 512;

/// Longest part of the kubelet's message quoted back in a diagnosis.
const MAX_QUOTE_LEN: usize = 300;

/// The cause of a pull failure, one per row of the guide's causes table (plus the engine's extras).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Cause {
    /// No pull secret for the registry exists in the namespace, and none is referenced.
    SecretMissing,
    /// A referenced secret does not exist, but one with a similar name does.
    SecretNameMismatch,
    /// A secret exists for the image's host, but its key differs in port, path or case.
    RegistryMismatch,
    /// A matching secret exists, but the pod's ServiceAccount does not reference it.
    ServiceAccountNotPatched,
    /// The pod runs as a ServiceAccount that lacks the secret (or does not exist) while another has it.
    WrongServiceAccount,
    /// The secret exists only in other namespaces.
    NamespaceIsolation,
    /// A static pod: the kubelet cannot give it imagePullSecrets.
    StaticPod,
    /// The registry rejected the secret's credentials when pullgate last verified them.
    CredentialsRejected,
    /// A referenced secret is unusable (malformed payload or not a pull-secret type).
    MalformedSecret,
    /// The image reference does not parse.
    InvalidImageReference,
    /// The credentials look right: the tag, the registry or the network is the likelier cause.
    CredentialsLookRight,
}

impl Cause {
    /// The cause as it appears in Events, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::SecretMissing => "SecretMissing",
            Cause::SecretNameMismatch => "SecretNameMismatch",
            Cause::RegistryMismatch => "RegistryMismatch",
            Cause::ServiceAccountNotPatched => "ServiceAccountNotPatched",
            Cause::WrongServiceAccount => "WrongServiceAccount",
            Cause::NamespaceIsolation => "NamespaceIsolation",
            Cause::StaticPod => "StaticPod",
            Cause::CredentialsRejected => "CredentialsRejected",
            Cause::MalformedSecret => "MalformedSecret",
            Cause::InvalidImageReference => "InvalidImageReference",
            Cause::CredentialsLookRight => "CredentialsLookRight",
        }
    }

    /// One phrase naming the cause, as the guide's table does.
    fn summary(self) -> &'static str {
        match self {
            Cause::SecretMissing => findings::CAUSE_SECRET_MISSING,
            Cause::SecretNameMismatch => findings::CAUSE_SECRET_NAME_MISMATCH,
            Cause::RegistryMismatch => findings::CAUSE_REGISTRY_MISMATCH,
            Cause::ServiceAccountNotPatched => findings::CAUSE_SERVICE_ACCOUNT_NOT_PATCHED,
            Cause::WrongServiceAccount => findings::CAUSE_WRONG_SERVICE_ACCOUNT,
            Cause::NamespaceIsolation => findings::CAUSE_NAMESPACE_ISOLATION,
            Cause::StaticPod => findings::CAUSE_STATIC_POD,
            Cause::CredentialsRejected => findings::CAUSE_CREDENTIALS_REJECTED,
            Cause::MalformedSecret => findings::CAUSE_MALFORMED_SECRET,
            Cause::InvalidImageReference => findings::CAUSE_INVALID_IMAGE_REFERENCE,
            Cause::CredentialsLookRight => findings::CAUSE_CREDENTIALS_LOOK_RIGHT,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kubelet Event or container status that reports an image pull failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFailure {
    /// The image the kubelet names, when the message names one.
    pub image: Option<String>,
    /// Whether the runtime's error reads as an authentication or authorisation failure.
    pub auth_error: bool,
    /// The kubelet could not read the pod's imagePullSecrets, so it tried no pull at all.
    pub keyring: Option<KeyringError>,
    /// The kubelet's message, cut to a quotable length.
    pub message: String,
}

/// Why the kubelet could not build its keyring from a pod's imagePullSecrets.
///
/// The kubelet decodes every pull secret of the pod with Go's encoding/json into
/// pkg/credentialprovider's types (secrets.MakeDockerKeyring); the first error fails every
/// pull of the pod before any request, and kuberuntime's startContainer reports the bare error
/// text as the container's waiting reason and as a `Failed` Event "Error: <text>".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyringError {
    /// An `auth` is not base64: encoding/base64's "illegal base64 data at input byte N".
    AuthNotBase64,
    /// An `auth` decodes but has no ':': config.go's "unable to parse auth field, must be
    /// formatted as base64(username:password)" (older kubelets stop after "field").
    AuthNotUserPassword,
    /// The payload is not JSON of the docker config shape: encoding/json's syntax errors
    /// ("invalid character 'x' …", "unexpected end of JSON input") and type errors
    /// ("json: cannot unmarshal …").
    Json,
}

impl KeyringError {
    /// What is wrong with the secret and how to fix it, for a pod in `namespace`.
    fn explain(self, namespace: &str) -> String {
        let what = match self {
            KeyringError::AuthNotBase64 => findings::KEYRING_AUTH_NOT_BASE64,
            KeyringError::AuthNotUserPassword => findings::KEYRING_AUTH_NOT_USER_PASSWORD,
            KeyringError::Json => findings::KEYRING_JSON,
        };
        findings::keyring_unreadable(what, namespace)
    }
}

/// The keyring error a kubelet text (a waiting reason, or a `Failed` Event after "Error: ")
/// reports, matched on the stable parts of the Go error texts.
pub fn keyring_error(text: &str) -> Option<KeyringError> {
    let text = text.trim_start();
    if text.contains("illegal base64 data at input byte") {
        Some(KeyringError::AuthNotBase64)
    } else if text.contains("unable to parse auth field") {
        Some(KeyringError::AuthNotUserPassword)
    } else if text.starts_with("invalid character '")
        || text.starts_with("unexpected end of JSON input")
        || text.starts_with("json: cannot unmarshal ")
    {
        // Anchored: these phrases are generic, but the kubelet reports the keyring's error bare.
        Some(KeyringError::Json)
    } else {
        None
    }
}

fn keyring_failure(kind: KeyringError, text: &str) -> PullFailure {
    PullFailure {
        image: None,
        // "…at input byte 401" is no HTTP status.
        auth_error: false,
        keyring: Some(kind),
        message: cut(text, MAX_QUOTE_LEN).to_owned(),
    }
}

/// The pull failure an Event reports, or None for any other Event.
///
/// The kubelet (pkg/kubelet/images, pkg/kubelet/events) records `Failed` with "Failed to pull
/// image %q: …" and "Error: ErrImagePull" / "Error: ImagePullBackOff", and `BackOff` with
/// "Back-off pulling image %q" — `BackOff` also reports crash loops ("Back-off restarting failed
/// container"), which are not pull failures — and `InspectFailed` for a reference it cannot parse.
/// `ErrImagePull` and `ImagePullBackOff` are container waiting reasons that some runtimes and
/// tools record as Event reasons too. A pod whose pull secrets the kubelet cannot read gets
/// `Failed` "Error: <keyring error>" instead (see [`KeyringError`]).
pub fn pull_failure(reason: &str, message: &str) -> Option<PullFailure> {
    if reason == "Failed" {
        if let Some(kind) = message.strip_prefix("Error: ").and_then(keyring_error) {
            return Some(keyring_failure(kind, message));
        }
    }
    let is_pull = match reason {
        "ErrImagePull" | "ImagePullBackOff" => true,
        "Failed" => {
            message.starts_with("Failed to pull image")
                || message.contains("ErrImagePull")
                || message.contains("ImagePullBackOff")
        }
        "BackOff" => message.starts_with("Back-off pulling image"),
        // An image reference the kubelet cannot even parse ("Failed to apply default image tag %q").
        "InspectFailed" => true,
        _ => false,
    };
    if !is_pull {
        return None;
    }
    Some(PullFailure {
        image: quoted(message).map(str::to_owned),
        auth_error: is_auth_error(message),
        keyring: None,
        message: cut(message, MAX_QUOTE_LEN).to_owned(),
    })
}

/// The pull failure a container's `state.waiting` reports, or None for any other wait.
///
/// The kubelet sets the reason to `ErrImagePull`, `ImagePullBackOff` or `InvalidImageName`
/// (message: the runtime's error or "Back-off pulling image %q: …"), or, when it cannot read
/// the pod's pull secrets, to the keyring's error text itself.
pub fn waiting_failure(reason: &str, message: &str) -> Option<PullFailure> {
    if let Some(kind) = keyring_error(reason) {
        return Some(keyring_failure(kind, reason));
    }
    if !matches!(
        reason,
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName"
    ) {
        return None;
    }
    let text = if message.is_empty() { reason } else { message };
    Some(PullFailure {
        image: quoted(message).map(str::to_owned),
        auth_error: is_auth_error(message),
        keyring: None,
        message: cut(text, MAX_QUOTE_LEN).to_owned(),
    })
}

/// One container's status as the kubelet reports it: only what pull diagnoses read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerReport {
    /// Container name.
    pub name: String,
    /// An init container (they run before the others).
    pub init: bool,
    /// Running, terminated, `started`, or terminated before: its image was pulled.
    pub started: bool,
    /// `state.waiting` as (reason, message).
    pub waiting: Option<(String, String)>,
}

impl ContainerReport {
    /// The pull failure this container waits on, if any.
    pub fn pull_failure(&self) -> Option<PullFailure> {
        let (reason, message) = self.waiting.as_ref()?;
        waiting_failure(reason, message)
    }

    /// The wait as one line for a report, e.g. `container "app" waits: ImagePullBackOff: Back-off …`.
    pub fn describe_wait(&self) -> Option<String> {
        let (reason, message) = self.waiting.as_ref()?;
        let text = findings::waiting_text(reason, message);
        Some(findings::container_waits(
            &self.name,
            cut(&text, MAX_QUOTE_LEN),
        ))
    }
}

/// The container statuses of a Pod object (init containers first); none when it has no status.
pub fn container_reports(pod: &serde_json::Value) -> Vec<ContainerReport> {
    let status = &pod["status"];
    let read = |field: &str, init: bool| {
        status[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(move |c| {
                let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                let state = &c["state"];
                let w = &state["waiting"];
                let waiting = w
                    .is_object()
                    .then(|| (text(&w["reason"]), text(&w["message"])));
                ContainerReport {
                    name: text(&c["name"]),
                    init,
                    started: state["running"].is_object()
                        || state["terminated"].is_object()
                        || c["started"].as_bool() == Some(true)
                        || c["lastState"]["terminated"].is_object(),
                    waiting,
                }
            })
    };
    read("initContainerStatuses", true)
        .chain(read("containerStatuses", false))
        .collect()
}

/// Whether every container of the pod has started and none waits on a pull: earlier pull
/// failures are then history, not the pod's current problem.
pub fn all_started(containers: &[ContainerReport]) -> bool {
    let mut regular = containers.iter().filter(|c| !c.init).peekable();
    regular.peek().is_some()
        && regular.all(|c| c.started)
        && containers.iter().all(|c| c.pull_failure().is_none())
}

/// A container waiting because the kubelet cannot read the pod's pull secrets: the kubelet's
/// own verdict, and current, so it outranks any failure Event.
pub fn keyring_wait(containers: &[ContainerReport]) -> Option<PullFailure> {
    containers
        .iter()
        .filter_map(ContainerReport::pull_failure)
        .find(|f| f.keyring.is_some())
}

/// The failure to diagnose: a container waiting on the keyring, else the latest failure Event,
/// else any container waiting on a pull (its Events may have expired).
pub fn current_failure(
    containers: &[ContainerReport],
    latest_event: Option<PullFailure>,
) -> Option<PullFailure> {
    keyring_wait(containers)
        .or(latest_event)
        .or_else(|| containers.iter().find_map(ContainerReport::pull_failure))
}

/// The first double-quoted string of a message (the kubelet formats images with %q), if it can be an image.
fn quoted(message: &str) -> Option<&str> {
    let start = message.find('"')? + 1;
    let len = message[start..].find('"')?;
    let s = &message[start..start + len];
    let plausible = !s.is_empty()
        && s.len() <= MAX_IMAGE_LEN
        && !s.contains('\\')
        && !s
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    plausible.then_some(s)
}

/// Whether a runtime error reads as a credential problem (containerd, CRI-O and registries word it differently).
fn is_auth_error(message: &str) -> bool {
    const MARKERS: [&str; 8] = [
        "unauthorized",
        "authentication required",
        "authorization failed",
        "access denied",
        "requested access to the resource is denied",
        "forbidden",
        "401",
        "403",
    ];
    let lower = message.to_ascii_lowercase();
    MARKERS.iter().any(|m| lower.contains(m))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The cause of one pull failure and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// The cause.
    pub cause: Cause,
    /// The image the diagnosis is about, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// One line naming the cause and the fix.
    pub message: String,
    /// Whether recreating the pod through admission fixes it (pullgate would inject a secret now).
    pub fixed_by_recreation: bool,
}

/// Finding codes in the order their cause is the likelier explanation of a failed pull: what
/// stops every pull of the pod first, then the reference chain from secret to ServiceAccount.
const PRIORITY: [Code; 10] = [
    Code::InvalidImageReference,
    Code::MalformedSecret,
    Code::WrongSecretType,
    Code::SecretInOtherNamespace,
    Code::SecretNotFound,
    Code::ServiceAccountMissing,
    Code::ServiceAccountNotPatched,
    Code::RegistryMismatch,
    Code::NoCredentials,
    Code::CredentialsRejected,
];

/// Name the cause of a pull failure of an existing pod in `namespace`, as of the index and the
/// credential verification results (`verified`) now.
pub fn diagnose(
    view: &PodView,
    namespace: &str,
    policy: &Policy,
    index: &ClusterIndex,
    verified: Option<&VerificationTable>,
    failure: &PullFailure,
    now: i64,
) -> Diagnosis {
    let existing = PodContext::existing(namespace, now).with_verified(verified);
    let current = evaluate_pod(view, &existing, policy, index);
    if let Some(kind) = failure.keyring {
        return keyring_diagnosis(kind, &current, namespace, failure);
    }
    let image = failure
        .image
        .as_deref()
        .filter(|i| current.images.iter().any(|d| d.image == *i));
    // `auto` took the registry for public because no secret names it; the registry refusing an
    // anonymous pull says otherwise, so the pod is diagnosed as if every registry were private.
    let guessed_public = current.images.iter().any(|d| {
        image == Some(d.image)
            && matches!(
                d.registry_class,
                Some(RegistryClass::Unclaimed | RegistryClass::HubOfficial)
            )
    });
    if failure.auth_error && guessed_public {
        return diagnose(
            view,
            namespace,
            &policy.with_every_registry_private(),
            index,
            verified,
            failure,
            now,
        );
    }
    if current.static_pod {
        let message = current
            .findings
            .iter()
            .find(|f| f.code == Code::StaticPod)
            .map_or_else(
                || findings::STATIC_POD_FALLBACK.to_owned(),
                |f| f.message.clone(),
            );
        return diagnosis(Cause::StaticPod, image, &message, false);
    }
    let relevant = |f: &&Finding| {
        let about = image.is_none_or(|i| f.image.is_none() || f.image.as_deref() == Some(i));
        let fails = f.severity == Severity::Error || f.code == Code::CredentialsRejected;
        about && fails && PRIORITY.contains(&f.code)
    };
    let rank = |f: &&Finding| PRIORITY.iter().position(|c| *c == f.code);
    let Some(finding) = current.findings.iter().filter(relevant).min_by_key(rank) else {
        return looks_right(&current, image, failure);
    };
    let subject = image.or(finding.image.as_deref());
    let cause = cause_of(finding, &current, view, namespace, index);
    // Recreated through admission, would the pod be given what it lacks now?
    let fresh_ctx = PodContext::creating(namespace, now).with_verified(verified);
    let fresh = evaluate_pod(view, &fresh_ctx, policy, index);
    let fixed = !fresh.injected.is_empty()
        && !fresh.static_pod
        && !fresh
            .errors()
            .any(|f| f.image.is_none() || subject.is_none() || f.image.as_deref() == subject);
    diagnosis(cause, subject, &finding.message, fixed)
}

fn diagnosis(cause: Cause, image: Option<&str>, detail: &str, fixed: bool) -> Diagnosis {
    Diagnosis {
        cause,
        image: image.map(str::to_owned),
        message: findings::pull_diagnosis(image, cause.summary(), detail, fixed),
        fixed_by_recreation: fixed,
    }
}

/// The kubelet cannot read the pod's pull secrets: a malformed secret, whichever image it is for.
fn keyring_diagnosis(
    kind: KeyringError,
    current: &Decision<'_>,
    namespace: &str,
    failure: &PullFailure,
) -> Diagnosis {
    // The engine names the secret and its fix when it reads the payload as the kubelet does;
    // the pod-level (fatal) finding is an error, a ServiceAccount's is a warning.
    let finding = current
        .findings
        .iter()
        .filter(|f| f.code == Code::MalformedSecret)
        .max_by_key(|f| f.severity);
    let detail = finding.map_or_else(
        || findings::keyring_secret_among(&current.image_pull_secrets, &kind.explain(namespace)),
        |f| f.message.clone(),
    );
    Diagnosis {
        cause: Cause::MalformedSecret,
        image: None,
        message: findings::keyring_diagnosis(
            Cause::MalformedSecret.summary(),
            &detail,
            &failure.message,
        ),
        fixed_by_recreation: false,
    }
}

/// No finding explains the failure: the secrets cover the image as far as pullgate can tell.
fn looks_right(current: &Decision<'_>, image: Option<&str>, failure: &PullFailure) -> Diagnosis {
    let detail = current
        .images
        .iter()
        .find(|d| image.is_none_or(|i| d.image == i))
        .map(|d| {
            if !d.requires_credentials {
                findings::looks_right_public(d.image)
            } else if d.matched_secrets.is_empty() {
                findings::looks_right_not_required(d.image)
            } else {
                findings::looks_right_covered(&d.matched_secrets, d.image)
            }
        })
        .unwrap_or_else(|| findings::LOOKS_RIGHT_ALL.to_owned());
    Diagnosis {
        cause: Cause::CredentialsLookRight,
        image: image.map(str::to_owned),
        message: findings::looks_right_diagnosis(
            image,
            Cause::CredentialsLookRight.summary(),
            &detail,
            findings::looks_right_next(failure.auth_error),
            &failure.message,
        ),
        fixed_by_recreation: false,
    }
}

/// The guide's cause behind one finding, told apart with the index where one code covers two causes.
fn cause_of(
    finding: &Finding,
    current: &Decision<'_>,
    view: &PodView,
    namespace: &str,
    index: &ClusterIndex,
) -> Cause {
    let ns = index.namespace(namespace);
    match finding.code {
        Code::InvalidImageReference => Cause::InvalidImageReference,
        Code::MalformedSecret | Code::WrongSecretType => Cause::MalformedSecret,
        Code::SecretInOtherNamespace => Cause::NamespaceIsolation,
        Code::SecretNotFound => {
            let pull_names = || {
                ns.secrets
                    .values()
                    .filter(|s| s.is_pull_type())
                    .map(|s| &*s.name)
            };
            let similar = current
                .image_pull_secrets
                .iter()
                .filter(|n| !ns.secrets.contains_key(n))
                .any(|n| closest(n, pull_names()).is_some());
            if similar {
                Cause::SecretNameMismatch
            } else {
                Cause::SecretMissing
            }
        }
        Code::ServiceAccountMissing => Cause::WrongServiceAccount,
        Code::ServiceAccountNotPatched => {
            // Another ServiceAccount of the namespace already provides a covering secret.
            let sa = view.pod.spec.service_account();
            let covering: Vec<&str> = finding
                .image
                .as_deref()
                .and_then(|i| super::reference::ImageRef::parse(i).ok())
                .map(|r| {
                    let target = MatchTarget::new(r.name());
                    ns.secrets
                        .values()
                        .filter(|s| s.is_pull_type() && s.covers(&target))
                        .map(|s| &*s.name)
                        .collect()
                })
                .unwrap_or_default();
            let other = ns.service_accounts.values().any(|a| {
                a.name != sa
                    && a.image_pull_secrets
                        .iter()
                        .any(|n| covering.contains(&n.as_str()))
            });
            if other {
                Cause::WrongServiceAccount
            } else {
                Cause::ServiceAccountNotPatched
            }
        }
        Code::RegistryMismatch => Cause::RegistryMismatch,
        Code::NoCredentials => {
            let elsewhere = finding
                .image
                .as_deref()
                .and_then(|i| super::reference::ImageRef::parse(i).ok())
                .is_some_and(|r| {
                    !index
                        .secrets_covering_elsewhere(&MatchTarget::new(r.name()), namespace, 1)
                        .is_empty()
                });
            if elsewhere {
                Cause::NamespaceIsolation
            } else {
                Cause::SecretMissing
            }
        }
        Code::CredentialsRejected => Cause::CredentialsRejected,
        _ => Cause::CredentialsLookRight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;
    use crate::engine::index::{
        CredentialStatus, SecretInfo, SecretVerification, ServiceAccountInfo,
    };
    use crate::engine::podview::WorkloadKind;
    use serde_json::json;
    use std::collections::BTreeMap;

    const IMG: &str = "registry.example.com:5000/shop/api:1";

    fn failed(image: &str, why: &str) -> PullFailure {
        pull_failure(
            "Failed",
            &format!("Failed to pull image \"{image}\": {why}"),
        )
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> PodView {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "api", "image": IMG}]);
        }
        PodView::from_value(
            WorkloadKind::Pod,
            &json!({"metadata": {"name": "api-1", "namespace": "shop"}, "spec": spec}),
        )
        .unwrap()
    }

    fn sa(name: &str, secrets: &[&str]) -> ServiceAccountInfo {
        ServiceAccountInfo::new(
            name.to_owned(),
            secrets.iter().map(|s| (*s).to_owned()),
            &BTreeMap::new(),
            BTreeMap::new(),
        )
    }

    fn run(idx: &ClusterIndex, p: &PodView, policy: &Policy) -> Diagnosis {
        diagnose(
            p,
            "shop",
            policy,
            idx,
            None,
            &failed(IMG, "401 Unauthorized"),
            0,
        )
    }

    #[test]
    fn recognises_kubelet_pull_failure_events_only() {
        let f = failed(
            IMG,
            "rpc error: code = Unknown desc = failed to authorize: 401 Unauthorized",
        );
        assert_eq!(f.image.as_deref(), Some(IMG));
        assert!(f.auth_error);
        let f = failed("nginx:nope", "manifest unknown: not found");
        assert_eq!(f.image.as_deref(), Some("nginx:nope"));
        assert!(!f.auth_error);
        let b = pull_failure("BackOff", "Back-off pulling image \"nginx:1\"").unwrap();
        assert_eq!(b.image.as_deref(), Some("nginx:1"));
        let e = pull_failure("Failed", "Error: ErrImagePull").unwrap();
        assert_eq!(e.image, None);
        assert!(pull_failure("Failed", "Error: ImagePullBackOff").is_some());
        assert!(pull_failure("ErrImagePull", "whatever").is_some());
        assert!(pull_failure("ImagePullBackOff", "").is_some());
        let i = pull_failure(
            "InspectFailed",
            "Failed to apply default image tag \"Registry.example.com/Shop/API\": couldn't parse image name",
        )
        .unwrap();
        assert_eq!(i.image.as_deref(), Some("Registry.example.com/Shop/API"));
        for (reason, message) in [
            (
                "BackOff",
                "Back-off restarting failed container api in pod api-1",
            ),
            ("Failed", "Error: failed to create containerd task"),
            ("Pulled", "Successfully pulled image \"nginx:1\""),
            ("FailedMount", "MountVolume.SetUp failed"),
            ("failed", "Failed to pull image \"nginx\""),
        ] {
            assert_eq!(pull_failure(reason, message), None, "{reason}: {message}");
        }
    }

    #[test]
    fn recognises_the_kubelets_keyring_errors_in_events_and_waiting_reasons() {
        // (text after "Error: " and as waiting reason, kind); offsets and JSON contexts vary.
        let cases = [
            (
                "illegal base64 data at input byte 0",
                KeyringError::AuthNotBase64,
            ),
            (
                "illegal base64 data at input byte 401",
                KeyringError::AuthNotBase64,
            ),
            (
                "unable to parse auth field, must be formatted as base64(username:password)",
                KeyringError::AuthNotUserPassword,
            ),
            ("unable to parse auth field", KeyringError::AuthNotUserPassword),
            (
                "invalid character 'x' looking for beginning of value",
                KeyringError::Json,
            ),
            (
                "invalid character '}' after object key",
                KeyringError::Json,
            ),
            ("unexpected end of JSON input", KeyringError::Json),
            (
                "json: cannot unmarshal string into Go value of type credentialprovider.DockerConfigJSON",
                KeyringError::Json,
            ),
        ];
        for (text, kind) in cases {
            let e = pull_failure("Failed", &format!("Error: {text}"))
                .unwrap_or_else(|| panic!("Event {text:?} not recognised"));
            assert_eq!(e.keyring, Some(kind), "{text}");
            assert_eq!(e.image, None);
            assert!(!e.auth_error, "{text}: no registry was asked");
            assert_eq!(e.message, format!("Error: {text}"));
            let w = waiting_failure(text, text)
                .unwrap_or_else(|| panic!("waiting reason {text:?} not recognised"));
            assert_eq!((w.keyring, w.message.as_str()), (Some(kind), text));
        }
        // Generic phrases count only where the kubelet puts the keyring's error: bare.
        for (reason, message) in [
            (
                "Failed",
                "Error: failed to create containerd task: invalid character 'x'",
            ),
            (
                "Failed",
                "invalid character 'x' looking for beginning of value",
            ),
            ("FailedMount", "Error: illegal base64 data at input byte 0"),
            ("Failed", "Error: CreateContainerConfigError"),
        ] {
            assert_eq!(pull_failure(reason, message), None, "{reason}: {message}");
        }
        // A runtime's pull error that happens to mention base64 stays a pull failure.
        let f = failed(IMG, "illegal base64 data at input byte 3");
        assert_eq!((f.keyring, f.image.as_deref()), (None, Some(IMG)));
        for reason in [
            "CreateContainerConfigError",
            "ContainerCreating",
            "CrashLoopBackOff",
        ] {
            assert_eq!(waiting_failure(reason, "x"), None, "{reason}");
        }
        let w = waiting_failure(
            "ImagePullBackOff",
            &format!("Back-off pulling image \"{IMG}\": ErrImagePull: 401 Unauthorized"),
        )
        .unwrap();
        assert_eq!(
            (w.image.as_deref(), w.auth_error, w.keyring),
            (Some(IMG), true, None)
        );
        assert_eq!(
            waiting_failure("ErrImagePull", "").unwrap().message,
            "ErrImagePull"
        );
    }

    fn malformed(auth: &str) -> SecretInfo {
        let payload = format!(r#"{{"auths":{{"registry.example.com:5000":{{"auth":"{auth}"}}}}}}"#);
        let mut data = BTreeMap::new();
        data.insert(".dockerconfigjson".to_owned(), payload.into_bytes());
        SecretInfo::new(
            "shop",
            "mal",
            "kubernetes.io/dockerconfigjson",
            Some(1),
            None,
            &data,
        )
    }

    #[test]
    fn keyring_errors_are_malformed_secrets_whatever_else_is_wrong() {
        let policy = Policy::default();
        let p = pod(
            json!({"imagePullSecrets": [{"name": "mal"}], "containers": [
            {"name": "api", "image": IMG},
            {"name": "side", "image": "Quay.io/Acme/Side"}]}),
        );
        for (auth, text, fix) in [
            (
                "%%%",
                "illegal base64 data at input byte 0",
                "not valid base64",
            ),
            // base64("robot") has no ':'.
            (
                "cm9ib3Q=",
                "unable to parse auth field, must be formatted as base64(username:password)",
                "does not decode to username:password",
            ),
        ] {
            let mut idx = ClusterIndex::new();
            idx.upsert_secret(malformed(auth));
            let f = pull_failure("Failed", &format!("Error: {text}")).unwrap();
            let d = diagnose(&p, "shop", &policy, &idx, None, &f, 0);
            assert_eq!(d.cause, Cause::MalformedSecret, "{}", d.message);
            assert!(!d.fixed_by_recreation);
            assert_eq!(d.image, None, "the keyring fails for every image");
            for part in [
                "secret \"mal\"",
                fix,
                "kubectl create secret docker-registry mal -n shop",
            ] {
                assert!(d.message.contains(part), "{part:?} in {}", d.message);
            }
            assert!(
                d.message.ends_with(&format!("(kubelet: Error: {text})")),
                "{}",
                d.message
            );
            assert!(
                !d.message.contains(auth),
                "no credential material: {}",
                d.message
            );
        }

        // pullgate cannot see the secret (not synced, or read differently): the kubelet's word stands.
        let f = waiting_failure(
            "illegal base64 data at input byte 7",
            "illegal base64 data at input byte 7",
        )
        .unwrap();
        let d = diagnose(&p, "shop", &policy, &ClusterIndex::new(), None, &f, 0);
        assert_eq!(d.cause, Cause::MalformedSecret, "{}", d.message);
        assert!(
            d.message.contains("imagePullSecrets (mal)")
                && d.message.contains("is not valid base64")
                && d.message.contains("-n shop"),
            "{}",
            d.message
        );
        let f = pull_failure("Failed", "Error: unexpected end of JSON input").unwrap();
        let d = diagnose(&p, "shop", &policy, &ClusterIndex::new(), None, &f, 0);
        assert_eq!(d.cause, Cause::MalformedSecret);
        assert!(
            d.message.contains("not a valid docker config JSON"),
            "{}",
            d.message
        );
    }

    fn status(v: serde_json::Value) -> Vec<ContainerReport> {
        container_reports(&json!({"status": v}))
    }

    #[test]
    fn container_statuses_tell_current_pull_failures_from_history() {
        let running =
            json!({"name": "api", "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}});
        let backoff = json!({"name": "side", "state": {"waiting": {"reason": "ImagePullBackOff",
            "message": format!("Back-off pulling image \"{IMG}\"")}}});
        let keyring = json!({"name": "side", "state": {"waiting": {
            "reason": "illegal base64 data at input byte 0", "message": "illegal base64 data at input byte 0"}}});
        let crashing = json!({"name": "side", "started": false, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1}}});
        let done = json!({"name": "init", "state": {"terminated": {"exitCode": 0}}});

        assert!(all_started(&status(
            json!({"containerStatuses": [running]})
        )));
        assert!(all_started(&status(
            json!({"containerStatuses": [running, crashing],
            "initContainerStatuses": [done]})
        )));
        assert!(all_started(&status(
            json!({"containerStatuses": [{"name": "a", "started": true,
            "state": {}}]})
        )));
        assert!(!all_started(&[]), "no status yet");
        assert!(
            !all_started(&status(json!({"initContainerStatuses": [done]}))),
            "no container yet"
        );
        assert!(!all_started(&status(
            json!({"containerStatuses": [running, backoff]})
        )));
        assert!(!all_started(&status(json!({"containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}]}))));
        // Restarted with imagePullPolicy Always and now failing the pull again: current, not history.
        let repulling = json!({"name": "api", "lastState": {"terminated": {"exitCode": 0}},
            "state": {"waiting": {"reason": "ErrImagePull", "message": "401 Unauthorized"}}});
        assert!(!all_started(&status(
            json!({"containerStatuses": [repulling]})
        )));
        let stuck_init =
            status(json!({"initContainerStatuses": [backoff], "containerStatuses": [running]}));
        assert!(
            !all_started(&stuck_init),
            "an init container is stuck on a pull"
        );
        assert_eq!(
            stuck_init[0].describe_wait().as_deref(),
            Some(
                format!(
                    "container \"side\" waits: ImagePullBackOff: Back-off pulling image \"{IMG}\""
                )
                .as_str()
            )
        );

        // The kubelet's keyring verdict outranks the latest Event; else the Event; else the wait.
        let event = failed(IMG, "401 Unauthorized");
        let c = status(json!({"containerStatuses": [backoff, keyring]}));
        assert_eq!(
            current_failure(&c, Some(event.clone())).and_then(|f| f.keyring),
            Some(KeyringError::AuthNotBase64)
        );
        let c = status(json!({"containerStatuses": [backoff]}));
        assert_eq!(current_failure(&c, Some(event.clone())), Some(event));
        assert_eq!(
            current_failure(&c, None).and_then(|f| f.image),
            Some(IMG.to_owned())
        );
        assert_eq!(current_failure(&[], None), None);
        assert_eq!(keyring_wait(&c), None);

        // Malformed statuses are read leniently, never a panic.
        for v in [
            json!(null),
            json!({"containerStatuses": 3}),
            json!({"containerStatuses": [3, {"state": {"waiting": 1}}, {"state": {"waiting": {"reason": 5}}}]}),
        ] {
            let r = status(v);
            assert!(!all_started(&r));
        }
    }

    #[test]
    fn adversarial_event_messages_are_bounded_and_never_panic() {
        let huge = format!(
            "Failed to pull image \"{}\": {}",
            "a".repeat(10_000),
            "é".repeat(100_000)
        );
        let f = pull_failure("Failed", &huge).unwrap();
        assert_eq!(f.image, None, "an over-long quoted string is not an image");
        assert!(f.message.len() <= MAX_QUOTE_LEN);
        for message in [
            "Failed to pull image \"",
            "Failed to pull image \"\"",
            "Failed to pull image \"a b\": x",
            "Failed to pull image \"a\\\"b\": x",
            "Failed to pull image \"\u{0}\"",
            "Failed to pull image ééé\"é",
        ] {
            let f = pull_failure("Failed", message).unwrap();
            assert!(f.image.is_none(), "{message:?} gave {:?}", f.image);
        }
        assert_eq!(cut("ééé", 3), "é");
    }

    #[test]
    fn names_each_cause_of_the_guide() {
        let policy = Policy::default();
        let covering = || pull_secret("shop", "regcred", &["registry.example.com:5000"], 1);

        // Nothing anywhere.
        let idx = ClusterIndex::new();
        let d = run(&idx, &pod(json!({})), &policy);
        assert_eq!(d.cause, Cause::SecretMissing, "{}", d.message);
        assert!(
            d.message.contains("kubectl create secret docker-registry"),
            "{}",
            d.message
        );

        // A referenced name that is almost an existing one.
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(covering());
        let d = run(
            &idx,
            &pod(json!({"imagePullSecrets": [{"name": "regcrd"}]})),
            &policy,
        );
        assert_eq!(d.cause, Cause::SecretNameMismatch, "{}", d.message);
        assert!(
            d.message.contains("did you mean \"regcred\""),
            "{}",
            d.message
        );

        // A referenced name nothing resembles.
        let d = run(
            &idx,
            &pod(json!({"imagePullSecrets": [{"name": "zzzzzzzzzzzz"}]})),
            &policy,
        );
        assert_eq!(d.cause, Cause::SecretMissing, "{}", d.message);

        // The port differs.
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 1));
        let d = run(
            &idx,
            &pod(json!({"imagePullSecrets": [{"name": "regcred"}]})),
            &policy,
        );
        assert_eq!(d.cause, Cause::RegistryMismatch, "{}", d.message);
        assert!(
            d.message.contains("registry.example.com:5000"),
            "{}",
            d.message
        );

        // The secret exists, the ServiceAccount does not list it.
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(covering());
        idx.upsert_service_account("shop", sa("default", &[]));
        let d = run(&idx, &pod(json!({})), &policy);
        assert_eq!(d.cause, Cause::ServiceAccountNotPatched, "{}", d.message);
        assert!(
            d.message.contains("kubectl patch serviceaccount default"),
            "{}",
            d.message
        );

        // Another ServiceAccount lists it: the pod runs as the wrong one.
        idx.upsert_service_account("shop", sa("builder", &["regcred"]));
        let d = run(&idx, &pod(json!({})), &policy);
        assert_eq!(d.cause, Cause::WrongServiceAccount, "{}", d.message);
        let d = run(&idx, &pod(json!({"serviceAccountName": "ghost"})), &policy);
        assert_eq!(d.cause, Cause::WrongServiceAccount, "{}", d.message);

        // The referenced secret, or a covering one, lives in another namespace.
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret(
            "team-b",
            "regcred",
            &["registry.example.com:5000"],
            1,
        ));
        let d = run(
            &idx,
            &pod(json!({"imagePullSecrets": [{"name": "regcred"}]})),
            &policy,
        );
        assert_eq!(d.cause, Cause::NamespaceIsolation, "{}", d.message);
        let d = run(&idx, &pod(json!({})), &policy);
        assert_eq!(d.cause, Cause::NamespaceIsolation, "{}", d.message);
        assert!(d.message.contains("team-b/regcred"), "{}", d.message);

        // A mirror pod.
        let p = PodView::from_value(
            WorkloadKind::Pod,
            &json!({"metadata": {"name": "etcd-node1", "annotations": {"kubernetes.io/config.mirror": "x"}},
                "spec": {"containers": [{"name": "c", "image": IMG}]}}),
        )
        .unwrap();
        let d = run(&ClusterIndex::new(), &p, &policy);
        assert_eq!(d.cause, Cause::StaticPod, "{}", d.message);
        assert!(!d.fixed_by_recreation);

        // Unusable secret.
        let mut data = BTreeMap::new();
        data.insert(".dockerconfigjson".to_owned(), b"{not json".to_vec());
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(SecretInfo::new(
            "shop",
            "broken",
            "kubernetes.io/dockerconfigjson",
            Some(1),
            None,
            &data,
        ));
        let d = run(
            &idx,
            &pod(json!({"imagePullSecrets": [{"name": "broken"}]})),
            &policy,
        );
        assert_eq!(d.cause, Cause::MalformedSecret, "{}", d.message);

        // An image that does not parse.
        let p =
            pod(json!({"containers": [{"name": "c", "image": "Registry.example.com/Shop/API"}]}));
        let f = failed("Registry.example.com/Shop/API", "InvalidImageName");
        let d = diagnose(&p, "shop", &policy, &ClusterIndex::new(), None, &f, 0);
        assert_eq!(d.cause, Cause::InvalidImageReference, "{}", d.message);
    }

    #[test]
    fn rejected_credentials_and_credentials_that_look_right() {
        let policy = Policy::default();
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret(
            "shop",
            "regcred",
            &["registry.example.com:5000"],
            1,
        ));
        let p = pod(json!({"imagePullSecrets": [{"name": "regcred"}]}));
        let d = run(&idx, &p, &policy);
        assert_eq!(d.cause, Cause::CredentialsLookRight, "{}", d.message);
        assert!(
            d.message.contains("refused the credentials"),
            "{}",
            d.message
        );
        assert!(
            d.message.contains("secret \"regcred\" covers"),
            "{}",
            d.message
        );
        let tag = failed(IMG, "manifest unknown");
        let d = diagnose(&p, "shop", &policy, &idx, None, &tag, 0);
        assert_eq!(d.cause, Cause::CredentialsLookRight);
        assert!(
            d.message.contains("check the image name and tag"),
            "{}",
            d.message
        );
        assert!(
            d.message.contains("(kubelet: Failed to pull image"),
            "{}",
            d.message
        );

        let mut keys = BTreeMap::new();
        keys.insert(
            "registry.example.com:5000".to_owned(),
            CredentialStatus::Rejected,
        );
        let mut table = VerificationTable::new();
        assert!(table.record(
            &idx,
            "shop",
            "regcred",
            SecretVerification {
                resource_version: None,
                verified_at: 1,
                keys
            }
        ));
        let failure = failed(IMG, "401 Unauthorized");
        let d = diagnose(&p, "shop", &policy, &idx, Some(&table), &failure, 0);
        assert_eq!(d.cause, Cause::CredentialsRejected, "{}", d.message);
        assert!(!d.fixed_by_recreation);
    }

    #[test]
    fn a_failure_of_another_image_is_not_blamed_on_this_one() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret(
            "shop",
            "regcred",
            &["registry.example.com:5000"],
            1,
        ));
        let p = pod(
            json!({"imagePullSecrets": [{"name": "regcred"}], "containers": [
            {"name": "api", "image": IMG},
            {"name": "side", "image": "quay.io/acme/side:1"}]}),
        );
        let d = run(&idx, &p, &Policy::default());
        assert_eq!(d.cause, Cause::CredentialsLookRight, "{}", d.message);
        assert_eq!(d.image.as_deref(), Some(IMG));
        let f = failed("quay.io/acme/side:1", "401");
        let d = diagnose(&p, "shop", &Policy::default(), &idx, None, &f, 0);
        assert_eq!(d.cause, Cause::SecretMissing, "{}", d.message);
        assert_eq!(d.image.as_deref(), Some("quay.io/acme/side:1"));
    }

    #[test]
    fn recreation_fixes_only_what_injection_fixes() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret(
            "shop",
            "regcred",
            &["registry.example.com:5000"],
            1,
        ));
        idx.upsert_service_account("shop", sa("default", &[]));
        let d = run(&idx, &pod(json!({})), &Policy::default());
        assert_eq!(d.cause, Cause::ServiceAccountNotPatched);
        assert!(d.fixed_by_recreation, "{}", d.message);
        assert!(d.message.contains("delete the pod"), "{}", d.message);

        let no_inject = Policy::from_yaml("inject: false\n").unwrap();
        let d = run(&idx, &pod(json!({})), &no_inject);
        assert!(!d.fixed_by_recreation, "{}", d.message);

        let opted_out = PodView::from_value(
            WorkloadKind::Pod,
            &json!({"metadata": {"name": "a", "annotations": {"pullgate.io/inject": "false"}},
                "spec": {"containers": [{"name": "api", "image": IMG}]}}),
        )
        .unwrap();
        assert!(!run(&idx, &opted_out, &Policy::default()).fixed_by_recreation);

        // Nothing to inject: the port differs.
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 1));
        assert!(!run(&idx, &pod(json!({})), &Policy::default()).fixed_by_recreation);
    }
}
