//! Finding codes, severities, and the one-line messages that name each cause and its fix: every
//! sentence a pod or secret evaluation or a pull-failure diagnosis shows a user is written here, the
//! decisions are elsewhere.

use super::keyring::NearMiss;
use serde::Serialize;
use std::fmt;

/// A stable finding code: one per cause of a failed (or fragile) image pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Code {
    /// A referenced imagePullSecret does not exist in the pod's namespace.
    SecretNotFound,
    /// A referenced secret exists, but only in other namespaces.
    SecretInOtherNamespace,
    /// A pull secret exists for the image's host, but its key differs in port, path or case.
    RegistryMismatch,
    /// A referenced secret is not of a pull-secret type: the kubelet ignores it.
    WrongSecretType,
    /// A pull secret's payload cannot be used.
    MalformedSecret,
    /// No secret in the namespace covers the image's registry.
    NoCredentials,
    /// The pod's ServiceAccount does not exist.
    ServiceAccountMissing,
    /// A matching secret exists but neither the pod nor its ServiceAccount references it.
    ServiceAccountNotPatched,
    /// A static (mirror) pod: the kubelet cannot give it imagePullSecrets.
    StaticPod,
    /// A secret of the deprecated `kubernetes.io/dockercfg` type.
    DeprecatedDockercfg,
    /// Several secrets cover one image's registry.
    AmbiguousCredentials,
    /// The secret covering an image is older than the policy's maxSecretAge.
    StaleCredentials,
    /// The image reference does not parse; the kubelet cannot pull it at all.
    InvalidImageReference,
    /// A credHelpers/credsStore entry, which the kubelet ignores.
    CredentialHelperIgnored,
    /// pullgate added secrets so that the images can be pulled.
    SecretsInjected,
    /// The registry rejected a secret's credentials when pullgate last verified them.
    CredentialsRejected,
}

impl Code {
    /// The code as it appears in JSON, metrics and warnings.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::SecretNotFound => "SecretNotFound",
            Code::SecretInOtherNamespace => "SecretInOtherNamespace",
            Code::RegistryMismatch => "RegistryMismatch",
            Code::WrongSecretType => "WrongSecretType",
            Code::MalformedSecret => "MalformedSecret",
            Code::NoCredentials => "NoCredentials",
            Code::ServiceAccountMissing => "ServiceAccountMissing",
            Code::ServiceAccountNotPatched => "ServiceAccountNotPatched",
            Code::StaticPod => "StaticPod",
            Code::DeprecatedDockercfg => "DeprecatedDockercfg",
            Code::AmbiguousCredentials => "AmbiguousCredentials",
            Code::StaleCredentials => "StaleCredentials",
            Code::InvalidImageReference => "InvalidImageReference",
            Code::CredentialHelperIgnored => "CredentialHelperIgnored",
            Code::SecretsInjected => "SecretsInjected",
            Code::CredentialsRejected => "CredentialsRejected",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How serious a finding is: errors fail pulls (and deny in deny mode), warnings are fragile setups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record (e.g. what was injected).
    Info,
    /// Works today, but fragile or deprecated.
    Warning,
    /// The kubelet will fail to pull.
    Error,
}

impl Severity {
    /// The severity as it appears in JSON and text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One diagnosed problem: what, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Stable code.
    pub code: Code,
    /// Severity.
    pub severity: Severity,
    /// Container the finding is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Image the finding is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Registry host of the image, if known (any pod author chooses it: never a metric label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// One line naming the cause and the fix.
    pub message: String,
}

impl Finding {
    /// A finding not tied to a container.
    pub fn general(code: Code, severity: Severity, message: String) -> Self {
        Finding {
            code,
            severity,
            container: None,
            image: None,
            registry: None,
            message,
        }
    }

    /// A finding about one container's image.
    pub fn for_image(
        code: Code,
        severity: Severity,
        container: &str,
        image: &str,
        registry: Option<&str>,
        message: String,
    ) -> Self {
        Finding {
            code,
            severity,
            container: Some(container.to_owned()),
            image: Some(image.to_owned()),
            registry: registry.map(str::to_owned),
            message,
        }
    }
}

// ---- Messages: every sentence `evaluate` puts in a finding, with its fix ----
//
// The decision picks the code and severity; these name the cause and the command that fixes it.

/// Where a pod's imagePullSecrets come from: its own spec, or its ServiceAccount (`Some(name)`).
pub fn secrets_field(service_account: Option<&str>) -> String {
    match service_account {
        None => "the pod's spec.imagePullSecrets".to_owned(),
        Some(sa) => format!("ServiceAccount {sa:?} imagePullSecrets"),
    }
}

/// `InvalidImageReference`: a container without an image.
pub fn no_image(container: &str, field: &str) -> String {
    format!(
        "container {container:?} has no image: the API server rejects it ({field}: Required value); set the image"
    )
}

/// `InvalidImageReference`: an image the reference grammar refuses.
pub fn invalid_reference(
    image: &str,
    container: &str,
    error: &dyn fmt::Display,
    field: &str,
) -> String {
    format!(
        "image {image:?} of container {container:?} is not a valid reference ({error}): the kubelet cannot pull it; fix {field}"
    )
}

/// `ServiceAccountMissing`.
pub fn service_account_missing(sa: &str, namespace: &str) -> String {
    format!(
        "ServiceAccount {sa:?} does not exist in namespace {namespace:?}, so pods using it are rejected: create it (kubectl create serviceaccount {sa} -n {namespace}) or fix spec.serviceAccountName"
    )
}

/// `MalformedSecret`, fatal: the kubelet's keyring cannot be built, every pull fails.
pub fn secret_unusable_for_pod(name: &str, field: &str, error: &str, namespace: &str) -> String {
    format!(
        "secret {name:?} in {field} is unusable ({error}): fix its .dockerconfigjson (kubectl create secret docker-registry {name} -n {namespace} --docker-server=… --dry-run=client -o yaml | kubectl apply -f -) or remove the reference"
    )
}

/// Appended to a finding about an image on a registry that may serve it without credentials.
pub const MAYBE_PUBLIC: &str = " (Docker Hub serves public and private repositories alike, so this is a warning: list docker.io in registries.private to make it an error)";

/// Appended to a finding about a pod that exists: its imagePullSecrets are fixed.
pub const RECREATE_POD: &str = "; a pod's imagePullSecrets cannot change after creation, so fix the workload or ServiceAccount and recreate the pod";

/// `SecretsInjected`.
pub fn secrets_injected(names: &[&str]) -> String {
    format!(
        "added imagePullSecrets {} so that the kubelet can authenticate",
        quoted(names)
    )
}

/// `AmbiguousCredentials`.
pub fn ambiguous_credentials(registry: &str, names: &[&str]) -> String {
    format!(
        "{} secrets cover registry {registry:?} ({}); the kubelet tries them in that order and a stale one can mask a valid one: keep one secret per registry",
        names.len(),
        quoted(names)
    )
}

/// `StaleCredentials`.
pub fn stale_credentials(name: &str, registry: &str, days: i64, max: &dyn fmt::Display) -> String {
    format!(
        "secret {name:?} covering {registry:?} is {days} days old (maxSecretAge {max}): rotate the credential at the registry, create a new secret and reference it before removing the old one"
    )
}

/// `MalformedSecret` blamed for one image: the secret yields no credentials.
pub fn secret_gives_image_nothing(
    name: &str,
    error: &str,
    image: &str,
    namespace: &str,
    registry: &str,
) -> String {
    format!(
        "secret {name:?} gives the kubelet no credentials ({error}), so image {image:?} is pulled without any: recreate it with kubectl create secret docker-registry {name} -n {namespace} --docker-server={registry}"
    )
}

/// `ServiceAccountNotPatched`; `other_sa` is a ServiceAccount that does reference the secret.
pub fn service_account_not_patched(
    secret: &str,
    registry: &str,
    sa: &str,
    namespace: &str,
    other_sa: Option<&str>,
) -> String {
    let hint = other_sa
        .map(|a| {
            format!(
                "; ServiceAccount {a:?} references it: should the pod use serviceAccountName: {a}?"
            )
        })
        .unwrap_or_default();
    format!(
        "secret {secret:?} covers registry {registry:?} but neither the pod nor ServiceAccount {sa:?} references it: kubectl patch serviceaccount {sa} -n {namespace} -p '{{\"imagePullSecrets\":[{{\"name\":\"{secret}\"}}]}}' (or add it to spec.imagePullSecrets), then recreate the pod{hint}"
    )
}

/// Where else the cluster has credentials for an image that its namespace lacks.
pub enum Elsewhere<'a> {
    /// No other namespace has any.
    Nowhere,
    /// None among the first `examined` candidates (the walk is bounded).
    NoneOfFirst(usize),
    /// These `namespace/name` secrets cover it.
    Found(&'a [String]),
}

/// `NoCredentials`.
pub fn no_credentials(
    namespace: &str,
    registry: &str,
    image: &str,
    elsewhere: Elsewhere<'_>,
) -> String {
    let create = format!(
        "create one (kubectl create secret docker-registry regcred -n {namespace} --docker-server={registry} --docker-username=… --docker-password=…) and reference it from the pod or its ServiceAccount"
    );
    let where_ = match elsewhere {
        Elsewhere::Nowhere => format!("and none exists elsewhere in the cluster: {create}"),
        Elsewhere::NoneOfFirst(examined) => format!(
            "and none of the first {examined} secrets of other namespaces with a key for this registry covers it either: {create}"
        ),
        Elsewhere::Found(list) => format!(
            "but {} covers it in another namespace and secrets are namespace-scoped: copy or sync it into {namespace:?} and reference it",
            list.join(", ")
        ),
    };
    format!(
        "no pull secret in namespace {namespace:?} covers registry {registry:?} (image {image:?}), {where_}; a retry succeeds once it exists"
    )
}

/// `SecretInOtherNamespace`: `others` (at least one) hold a secret of that name.
pub fn secret_in_other_namespace(
    name: &str,
    field: &str,
    others: &[&str],
    namespace: &str,
) -> String {
    let first = others.first().copied().unwrap_or_default();
    format!(
        "imagePullSecret {name:?} (from {field}) exists only in namespace(s) {}, and a pod can use secrets of its own namespace only: copy it (kubectl get secret {name} -n {first} -o json | jq 'del(.metadata.namespace,.metadata.uid,.metadata.resourceVersion,.metadata.creationTimestamp)' | kubectl apply -n {namespace} -f -) or sync it",
        others.join(", ")
    )
}

/// `SecretNotFound`; `suggestion` is an existing name close to it, `registry` the image's.
pub fn secret_not_found(
    name: &str,
    field: &str,
    namespace: &str,
    suggestion: Option<&str>,
    registry: Option<&str>,
) -> String {
    let suggestion = suggestion
        .map(|c| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default();
    let server = registry.unwrap_or("<registry>");
    format!(
        "imagePullSecret {name:?} (from {field}) does not exist in namespace {namespace:?}{suggestion}: fix the name, or create it (kubectl create secret docker-registry {name} -n {namespace} --docker-server={server} --docker-username=… --docker-password=…)"
    )
}

/// `WrongSecretType`; `secret_type` is `None` when only "not a pull type" is known.
pub fn wrong_secret_type(name: &str, secret_type: Option<&str>, namespace: &str) -> String {
    let what = match secret_type {
        Some(t) => format!("has type {t:?}, which the kubelet ignores for image pulls"),
        None => "is not of a pull-secret type (kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg), so the kubelet ignores it for image pulls".to_owned(),
    };
    format!(
        "secret {name:?} {what}: recreate it as kubernetes.io/dockerconfigjson (kubectl create secret docker-registry {name} -n {namespace} …)"
    )
}

/// Why a key for the image's host does not cover it, in words.
pub fn near_miss_detail(why: &NearMiss) -> String {
    match why {
        NearMiss::Port { key: k, image: i } => format!(
            "the port differs (key {}, image {})",
            k.as_deref().map_or("none".to_owned(), |p| format!(":{p}")),
            i.as_deref().map_or("none".to_owned(), |p| format!(":{p}"))
        ),
        NearMiss::Path {
            key_path,
            image_path,
        } => {
            format!("the key's path {key_path:?} is not a prefix of the image path {image_path:?}")
        }
        NearMiss::Case => "the host differs in letter case (keys are case-sensitive)".to_owned(),
        NearMiss::LabelCount => {
            "a glob matches one DNS label per '*', and the label counts differ".to_owned()
        }
    }
}

/// `RegistryMismatch`: secret `secret` of `namespace` has key `raw`, which misses image `image`
/// (named `name`, on `registry`) for the reason `why`.
pub fn registry_mismatch(
    image: &str,
    name: &str,
    registry: &str,
    secret: &str,
    namespace: &str,
    raw: &str,
    why: &NearMiss,
) -> String {
    format!(
        "image {image:?} needs credentials for {name:?}, but secret {secret:?} has key {raw:?}: {}; add an entry for {registry:?} (kubectl create secret docker-registry {secret} -n {namespace} --docker-server={registry} …)",
        near_miss_detail(why)
    )
}

/// `StaticPod`, per image: a static pod has no imagePullSecrets.
pub fn static_pod_image(image: &str) -> String {
    format!(
        "static pod: the kubelet cannot give it imagePullSecrets, so {image:?} must be pulled with node credentials: configure a kubelet credential provider (--image-credential-provider-config and --image-credential-provider-bin-dir) or pre-pull the image"
    )
}

/// `StaticPod`: a static pod that lists imagePullSecrets.
pub const STATIC_POD_WITH_SECRETS: &str = "static pod lists imagePullSecrets: the API server refuses its mirror pod (mirror pods may not reference secrets) and the kubelet cannot read them; remove them from the manifest and use a kubelet credential provider";

/// `CredentialsRejected`; `others` are the other secrets the kubelet falls back to (none: it has
/// no other credential).
pub fn credentials_rejected(
    key: &str,
    name: &str,
    image: &str,
    namespace: &str,
    others: Option<&[&str]>,
) -> String {
    let consequence = match others {
        None => format!(
            "the kubelet has no other credential for {image:?}, so pulls fail on every node without a cached copy"
        ),
        Some(others) => format!(
            "the kubelet falls back to {}, but tries this one first",
            quoted(others)
        ),
    };
    format!(
        "registry {key:?} rejected the credentials of secret {name:?} when pullgate last verified them: {consequence}; update the credential (kubectl create secret docker-registry {name} -n {namespace} --docker-server={key} --docker-username=… --docker-password=… --dry-run=client -o yaml | kubectl apply -f -)"
    )
}

/// `DeprecatedDockercfg`, for a secret a pod references.
pub fn dockercfg_referenced(name: &str, namespace: &str) -> String {
    format!(
        "secret {name:?} uses the deprecated kubernetes.io/dockercfg type: recreate it as kubernetes.io/dockerconfigjson (kubectl create secret docker-registry {name} -n {namespace} …)"
    )
}

/// `DeprecatedDockercfg`, for a secret on its own.
pub fn dockercfg_secret(name: &str) -> String {
    format!(
        "secret {name:?} uses the deprecated kubernetes.io/dockercfg type: recreate it as kubernetes.io/dockerconfigjson (kubectl create secret docker-registry)"
    )
}

/// `CredentialHelperIgnored`.
pub fn credential_helpers_ignored(name: &str, helpers: &[String]) -> String {
    format!(
        "secret {name:?} names credential helpers ({}), which the kubelet ignores: put the credentials under \"auths\"",
        helpers.join(", ")
    )
}

/// `MalformedSecret`, not fatal, for a referenced secret that no failed pull was blamed on.
pub fn secret_gives_nothing_referenced(name: &str, error: &str) -> String {
    format!("secret {name:?} gives the kubelet no credentials ({error}): fix or remove it")
}

/// `MalformedSecret`, fatal, for a ServiceAccount's secret.
pub fn secret_unusable_for_service_account(name: &str, error: &str) -> String {
    format!(
        "secret {name:?} has an unusable payload ({error}); every pod using this ServiceAccount will fail all image pulls: fix or remove it"
    )
}

/// `MalformedSecret`, for a secret on its own; `fatal`: no pod referencing it can pull anything.
pub fn secret_payload_unusable(name: &str, error: &dyn fmt::Display, fatal: bool) -> String {
    if fatal {
        format!("secret {name:?} has an unusable payload ({error}): every pod referencing it will fail all image pulls; fix its data")
    } else {
        format!("secret {name:?} gives the kubelet no credentials ({error}): fix its data")
    }
}

/// `RegistryMismatch`: a key the kubelet ignores.
pub fn key_ignored(name: &str, raw: &str, error: &dyn fmt::Display) -> String {
    format!(
        "secret {name:?} has registry key {raw:?} that the kubelet ignores ({error}): write it as host[:port]"
    )
}

/// `RegistryMismatch`: a key with a scheme or path that matches no private registry.
pub fn key_matches_no_private_registry(name: &str, raw: &str, normalised: &str) -> String {
    format!(
        "secret {name:?} has registry key {raw:?} (normalised {normalised:?}) that matches no private registry of the policy: write it as the images' host[:port]"
    )
}

// ---- Messages of a pull-failure diagnosis: every sentence `diagnose` shows a user ----
//
// diagnosis.rs names the cause; these word it, its fix and the kubelet's text quoted back.

/// Cause `SecretMissing`, in a few words.
pub const CAUSE_SECRET_MISSING: &str = "no pull secret for its registry in the namespace";
/// Cause `SecretNameMismatch`, in a few words.
pub const CAUSE_SECRET_NAME_MISMATCH: &str = "secret name mismatch";
/// Cause `RegistryMismatch`, in a few words.
pub const CAUSE_REGISTRY_MISMATCH: &str = "the secret's registry differs from the image's";
/// Cause `ServiceAccountNotPatched`, in a few words.
pub const CAUSE_SERVICE_ACCOUNT_NOT_PATCHED: &str = "ServiceAccount not patched";
/// Cause `WrongServiceAccount`, in a few words.
pub const CAUSE_WRONG_SERVICE_ACCOUNT: &str = "pod uses the wrong ServiceAccount";
/// Cause `NamespaceIsolation`, in a few words.
pub const CAUSE_NAMESPACE_ISOLATION: &str = "the secret is in another namespace";
/// Cause `StaticPod`, in a few words.
pub const CAUSE_STATIC_POD: &str = "static pods cannot use imagePullSecrets";
/// Cause `CredentialsRejected`, in a few words.
pub const CAUSE_CREDENTIALS_REJECTED: &str = "the registry rejects the credentials";
/// Cause `MalformedSecret`, in a few words.
pub const CAUSE_MALFORMED_SECRET: &str = "an imagePullSecret is unusable";
/// Cause `InvalidImageReference`, in a few words.
pub const CAUSE_INVALID_IMAGE_REFERENCE: &str = "invalid image reference";
/// Cause `CredentialsLookRight`, in a few words.
pub const CAUSE_CREDENTIALS_LOOK_RIGHT: &str = "credentials look right";

/// Keyring error: an `auth` that is not base64.
pub const KEYRING_AUTH_NOT_BASE64: &str =
    "the \"auth\" field of a registry entry is not valid base64";
/// Keyring error: an `auth` without a ':'.
pub const KEYRING_AUTH_NOT_USER_PASSWORD: &str = "the \"auth\" field of a registry entry decodes to text without a ':' (it must be base64 of username:password; a token alone needs its username too)";
/// Keyring error: a payload that is not docker config JSON.
pub const KEYRING_JSON: &str = "the payload is not a valid docker config JSON document";

/// A keyring error (`what`, one of the `KEYRING_*` texts) and how to fix it, for a pod in `namespace`.
pub fn keyring_unreadable(what: &str, namespace: &str) -> String {
    format!(
        "{what}, so the kubelet pulls none of the pod's images: recreate the secret (kubectl create secret docker-registry NAME -n {namespace} --docker-server=… --docker-username=… --docker-password=… --dry-run=client -o yaml | kubectl apply -f -)"
    )
}

/// A container's waiting `reason` with its `message`, unless that adds nothing.
pub fn waiting_text(reason: &str, message: &str) -> String {
    if message.is_empty() || message == reason {
        reason.to_owned()
    } else {
        format!("{reason}: {message}")
    }
}

/// A container's wait as one line; `text` is its (cut) [`waiting_text`].
pub fn container_waits(container: &str, text: &str) -> String {
    format!("container {container:?} waits: {text}")
}

/// The detail of a `StaticPod` diagnosis when the engine gave no finding for it.
pub const STATIC_POD_FALLBACK: &str = "configure a kubelet credential provider on the node";

/// What fails: pulling `image`, or an unnamed image.
pub fn pulling_fails(image: Option<&str>) -> String {
    image.map_or_else(
        || "pulling an image fails".to_owned(),
        |i| format!("pulling {i:?} fails"),
    )
}

/// A diagnosis from a finding: what fails, the cause, the finding's `detail`, and, when
/// `fixed`, that recreating the pod fixes it.
pub fn pull_diagnosis(image: Option<&str>, cause: &str, detail: &str, fixed: bool) -> String {
    let recreate = if fixed {
        " pullgate now injects the missing secret at admission: delete the pod so that its controller recreates it."
    } else {
        ""
    };
    format!(
        "{} ({cause}): {}.{recreate}",
        pulling_fails(image),
        detail.trim_end_matches('.')
    )
}

/// Where the kubelet found an unreadable secret: among the pod's imagePullSecrets `names`.
pub fn keyring_secret_among(names: &[&str], explanation: &str) -> String {
    if names.is_empty() {
        format!("in one of the pod's imagePullSecrets, {explanation}")
    } else {
        format!(
            "in one of the pod's imagePullSecrets ({}), {explanation}",
            names.join(", ")
        )
    }
}

/// A diagnosis of an unreadable keyring: no image can be pulled; `kubelet` is its text.
pub fn keyring_diagnosis(cause: &str, detail: &str, kubelet: &str) -> String {
    format!(
        "no image of the pod can be pulled ({cause}): {} (kubelet: {kubelet})",
        detail.trim_end_matches('.')
    )
}

/// Nothing wrong found: `image`'s registry is public in the policy.
pub fn looks_right_public(image: &str) -> String {
    format!("registry of {image:?} is public in the policy, so no secret is needed")
}

/// Nothing wrong found: no secret covers `image`, and none is required.
pub fn looks_right_not_required(image: &str) -> String {
    format!("no secret covers {image:?}, but the policy does not require one here")
}

/// Nothing wrong found: `secrets` cover `image`.
pub fn looks_right_covered(secrets: &[&str], image: &str) -> String {
    format!(
        "secret {:?} covers {image:?} and nothing about it looks wrong",
        secrets.join(", ")
    )
}

/// Nothing wrong found, and no image of the pod is named.
pub const LOOKS_RIGHT_ALL: &str = "the pod's secrets cover its images";

/// What to check next when the credentials look right: after an auth error, or any other.
pub fn looks_right_next(auth_error: bool) -> &'static str {
    if auth_error {
        "the registry refused the credentials: check that they are current (docker login with them, or enable verify) and that the account may pull this repository"
    } else {
        "check the image name and tag, and that the node can reach the registry"
    }
}

/// A diagnosis that found nothing wrong: `detail`, what to check `next`, the kubelet's text.
pub fn looks_right_diagnosis(
    image: Option<&str>,
    cause: &str,
    detail: &str,
    next: &str,
    kubelet: &str,
) -> String {
    let quote = if kubelet.is_empty() {
        String::new()
    } else {
        format!(" (kubelet: {kubelet})")
    };
    format!(
        "{} ({cause}): {detail}; {next}{quote}",
        pulling_fails(image)
    )
}

/// Names quoted and comma-separated, in order.
pub fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Levenshtein distance, for suggesting the closest existing secret name.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `name`, if any is plausibly a typo of it.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("regcred", "regcred"), 0);
        assert_eq!(edit_distance("regcred", "regcreds"), 1);
        assert_eq!(edit_distance("regcred", "reg-cred"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_picks_plausible_typo_only() {
        let names = ["regcred", "other-registry", "ghcr"];
        assert_eq!(closest("regcreds", names.iter().copied()), Some("regcred"));
        assert_eq!(closest("totally-different", names.iter().copied()), None);
    }

    #[test]
    fn diagnosis_sentences_keep_their_wording() {
        assert_eq!(
            pull_diagnosis(Some("a:1"), CAUSE_SECRET_NAME_MISMATCH, "secret \"x\" is missing.", true),
            "pulling \"a:1\" fails (secret name mismatch): secret \"x\" is missing. pullgate now injects the missing secret at admission: delete the pod so that its controller recreates it."
        );
        assert_eq!(
            pull_diagnosis(None, CAUSE_STATIC_POD, STATIC_POD_FALLBACK, false),
            "pulling an image fails (static pods cannot use imagePullSecrets): configure a kubelet credential provider on the node."
        );
        assert_eq!(
            keyring_secret_among(&[], "E"),
            "in one of the pod's imagePullSecrets, E"
        );
        assert_eq!(
            keyring_secret_among(&["a", "b"], "E"),
            "in one of the pod's imagePullSecrets (a, b), E"
        );
        assert_eq!(
            keyring_diagnosis(CAUSE_MALFORMED_SECRET, "D.", "K"),
            "no image of the pod can be pulled (an imagePullSecret is unusable): D (kubelet: K)"
        );
        assert_eq!(
            looks_right_diagnosis(None, CAUSE_CREDENTIALS_LOOK_RIGHT, LOOKS_RIGHT_ALL, "N", ""),
            "pulling an image fails (credentials look right): the pod's secrets cover its images; N"
        );
        assert_eq!(
            looks_right_diagnosis(
                Some("a:1"),
                CAUSE_CREDENTIALS_LOOK_RIGHT,
                &looks_right_covered(&["s", "t"], "a:1"),
                looks_right_next(false),
                "K"
            ),
            "pulling \"a:1\" fails (credentials look right): secret \"s, t\" covers \"a:1\" and nothing about it looks wrong; check the image name and tag, and that the node can reach the registry (kubelet: K)"
        );
        assert_eq!(
            container_waits("app", &waiting_text("ErrImagePull", "ErrImagePull")),
            "container \"app\" waits: ErrImagePull"
        );
        assert_eq!(
            container_waits("app", &waiting_text("ErrImagePull", "m")),
            "container \"app\" waits: ErrImagePull: m"
        );
    }

    #[test]
    fn codes_serialize_as_their_names() {
        let json = serde_json::to_string(&Code::RegistryMismatch).unwrap_or_default();
        assert_eq!(json, "\"RegistryMismatch\"");
        assert_eq!(Code::StaticPod.as_str(), "StaticPod");
    }
}
