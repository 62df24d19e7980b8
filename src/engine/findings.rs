//! Finding codes, severities, and the one-line messages that name each cause and its fix.

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
    fn codes_serialize_as_their_names() {
        let json = serde_json::to_string(&Code::RegistryMismatch).unwrap_or_default();
        assert_eq!(json, "\"RegistryMismatch\"");
        assert_eq!(Code::StaticPod.as_str(), "StaticPod");
    }
}
