//! The policy file (unknown fields rejected with their path) and per-namespace overrides.

use crate::engine::keyring::{MatchTarget, RegistryKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Namespace label that overrides `inject` for the namespace.
pub const INJECT_LABEL: &str = "pullgate.io/inject";
/// Namespace label that overrides `validation` for the namespace.
pub const VALIDATION_LABEL: &str = "pullgate.io/validation";
/// Largest policy file accepted, so a mistaken path cannot exhaust memory.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// What a pod gets when an image that needs credentials has none usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    /// Reject the pod.
    Deny,
    /// Admit with warnings.
    #[default]
    Warn,
    /// No validation output.
    Off,
}

impl FromStr for Validation {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "deny" => Ok(Validation::Deny),
            "warn" => Ok(Validation::Warn),
            "off" => Ok(Validation::Off),
            _ => Err(()),
        }
    }
}

impl Validation {
    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Validation::Deny => "deny",
            Validation::Warn => "warn",
            Validation::Off => "off",
        }
    }
}

/// A registry pattern in kubelet key syntax, `*` for every registry, or `auto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryPattern {
    /// `*`: every registry (a kubelet key `*` would only match one-label hosts).
    All,
    /// `auto`: the registries the cluster's pull secrets show to be private (see
    /// `engine::registry_class`); every registry that a key itself names.
    Auto,
    /// A kubelet-style key: globs per label, port, path prefix.
    Key(RegistryKey),
}

impl RegistryPattern {
    /// Whether the pattern covers an image name (as the kubelet looks it up); `auto` covers
    /// any name here, since a registry key is itself the evidence it stands for.
    pub fn matches(&self, target: &MatchTarget<'_>) -> bool {
        match self {
            RegistryPattern::All | RegistryPattern::Auto => true,
            RegistryPattern::Key(k) => k.matches(target),
        }
    }
}

impl RegistryPattern {
    /// The pattern as written in the policy (`*` for every registry, `auto`).
    pub fn as_str(&self) -> &str {
        match self {
            RegistryPattern::All => "*",
            RegistryPattern::Auto => "auto",
            RegistryPattern::Key(k) => k.as_str(),
        }
    }
}

impl<'de> Deserialize<'de> for RegistryPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "*" {
            return Ok(RegistryPattern::All);
        }
        if s == "auto" {
            return Ok(RegistryPattern::Auto);
        }
        RegistryKey::parse(&s)
            .map(RegistryPattern::Key)
            .map_err(|e| serde::de::Error::custom(format!("invalid registry pattern {s:?}: {e}")))
    }
}

impl Serialize for RegistryPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RegistryPattern::All => s.serialize_str("*"),
            RegistryPattern::Auto => s.serialize_str("auto"),
            RegistryPattern::Key(k) => s.serialize_str(k.as_str()),
        }
    }
}

/// Which registries need credentials.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Registries {
    /// Registries whose images need credentials (default `auto`).
    #[serde(default = "auto_registries")]
    pub private: Vec<RegistryPattern>,
    /// Exceptions that never need credentials.
    #[serde(default)]
    pub public: Vec<RegistryPattern>,
}

fn auto_registries() -> Vec<RegistryPattern> {
    vec![RegistryPattern::Auto]
}

impl Default for Registries {
    fn default() -> Self {
        Registries {
            private: auto_registries(),
            public: Vec::new(),
        }
    }
}

impl Registries {
    /// Whether a registry key's registry needs credentials under this policy (images are
    /// classified by `engine::registry_class::classify`, which also reads the cluster).
    pub fn requires_credentials(&self, target: &MatchTarget<'_>) -> bool {
        self.credential_pattern(target).is_some()
    }

    /// The first `private` pattern that makes an image name need credentials, if it does (no
    /// `public` exception matches): a label value bounded by the policy, unlike the name's host.
    pub fn credential_pattern(&self, target: &MatchTarget<'_>) -> Option<&RegistryPattern> {
        self.private
            .iter()
            .find(|p| p.matches(target))
            .filter(|_| !self.public.iter().any(|p| p.matches(target)))
    }
}

/// Namespace scoping.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Namespaces {
    /// Namespaces pullgate never acts on.
    #[serde(default = "default_excluded")]
    pub exclude: Vec<String>,
}

fn default_excluded() -> Vec<String> {
    vec!["kube-system".to_owned(), "kube-node-lease".to_owned()]
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces {
            exclude: default_excluded(),
        }
    }
}

/// A duration, in the one syntax of the policy and the command line (jiff's spans): `90d`, `12h`,
/// `30m`, `45s`, `500ms`, friendly `1h 30m`, or ISO 8601 `PT1H30M`. A day is 24 hours and a week
/// 7 days; months and years have no fixed length, so they are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// Why a duration was refused.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    /// Not a span jiff reads, or out of its range.
    #[error("duration {input:?}: {source} (write e.g. 90d, 12h, 30m, 45s, 500ms, \"1h 30m\" or PT1H30M)")]
    Syntax {
        /// The text.
        input: String,
        /// jiff's reason.
        #[source]
        source: jiff::Error,
    },
    /// Months or years.
    #[error("duration {input:?}: months and years have no fixed length; use days or weeks")]
    Calendar {
        /// The text.
        input: String,
    },
    /// Below zero.
    #[error("duration {input:?} is negative")]
    Negative {
        /// The text.
        input: String,
    },
}

impl FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, DurationError> {
        let input = s.trim();
        let syntax = |source| DurationError::Syntax {
            input: input.to_owned(),
            source,
        };
        let span: jiff::Span = input.parse().map_err(syntax)?;
        if span.get_years() != 0 || span.get_months() != 0 {
            return Err(DurationError::Calendar {
                input: input.to_owned(),
            });
        }
        let signed = span
            .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
            .map_err(syntax)?;
        if signed.is_negative() {
            return Err(DurationError::Negative {
                input: input.to_owned(),
            });
        }
        Ok(HumanDuration(signed.unsigned_abs()))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if nanos != 0 {
            if nanos.is_multiple_of(1_000_000) {
                write!(f, "{}ms", self.0.as_millis())
            } else {
                write!(f, "{}ns", self.0.as_nanos())
            }
        } else if s.is_multiple_of(86_400) && s > 0 {
            write!(f, "{}d", s / 86_400)
        } else if s.is_multiple_of(3_600) && s > 0 {
            write!(f, "{}h", s / 3_600)
        } else if s.is_multiple_of(60) && s > 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The policy: what pullgate injects and how it validates.
///
/// Defaults without a file: inject on, validation `warn`, registries `auto` (private where the cluster's pull secrets name the host). Warn (not deny)
/// because a webhook installed for the first time must not start rejecting pods before its owners
/// have seen what it would reject (`pullgate_would_deny_total`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    /// Add matching secrets to pods and ServiceAccounts.
    #[serde(default = "yes")]
    pub inject: bool,
    /// deny | warn | off.
    #[serde(default)]
    pub validation: Validation,
    /// Which registries need credentials.
    #[serde(default)]
    pub registries: Registries,
    /// Namespace scoping.
    #[serde(default)]
    pub namespaces: Namespaces,
    /// Warn when the secret covering an image is older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_secret_age: Option<HumanDuration>,
    /// The ServiceAccount reconciler (cluster mode).
    #[serde(default)]
    pub reconcile: Reconcile,
    /// A mode that wins over namespace labels too (`check --validation`: CI wants one answer).
    #[serde(skip)]
    pub validation_override: Option<Validation>,
    /// Registry verification of pull-secret credentials (opt-in).
    #[serde(default)]
    pub verify: Verify,
    /// Pull-failure attribution (cluster mode, opt-in).
    #[serde(default)]
    pub attribution: Attribution,
    /// Background audit of existing workloads (cluster mode, opt-in).
    #[serde(default)]
    pub audit: Audit,
}

/// The background audit in `serve --cluster`: every workload's next pod and every existing pod,
/// a full pass every `interval` and a namespace pass soon after its pull secrets change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Audit {
    /// Run the background audit at all (it lists every pod and workload, so opt-in).
    #[serde(default)]
    pub enabled: bool,
    /// Time between two full passes.
    #[serde(default = "one_hour", deserialize_with = "positive_duration")]
    pub interval: HumanDuration,
    /// Deny the deletion of a pull secret the last audit found in use (a warning otherwise).
    #[serde(default)]
    pub protect_in_use_secrets: bool,
    /// PolicyReports: `auto` where the CRD exists, `on`, or `off`.
    #[serde(default)]
    pub reports: Reports,
}

/// Whether the audit writes `wgpolicyk8s.io` PolicyReports. YAML 1.1 reads a bare `on`/`off`
/// as a boolean, so `true`/`false` are accepted for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reports {
    /// Where the PolicyReport CRD is served.
    #[default]
    Auto,
    /// Always (an absent CRD is an error in the log).
    On,
    /// Never.
    Off,
}

impl<'de> Deserialize<'de> for Reports {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(Reports::On),
            Raw::Flag(false) => Ok(Reports::Off),
            Raw::Word(w) => match w.as_str() {
                "auto" => Ok(Reports::Auto),
                "on" => Ok(Reports::On),
                "off" => Ok(Reports::Off),
                _ => Err(serde::de::Error::custom(format!(
                    "{w:?}: expected auto, on or off"
                ))),
            },
        }
    }
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            enabled: false,
            interval: one_hour(),
            protect_in_use_secrets: false,
            reports: Reports::Auto,
        }
    }
}

fn one_hour() -> HumanDuration {
    HumanDuration(Duration::from_secs(3_600))
}

/// Pull-failure attribution: watch the kubelet's image-pull failure Events, name each failure's
/// cause on the pod (a `PullgateDiagnosis` Event), and optionally restart pods that injection now fixes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Attribution {
    /// Watch pull-failure Events and diagnose them at all.
    #[serde(default)]
    pub enabled: bool,
    /// Most Events pullgate writes per second (diagnoses and restarts together); a burst of one second is allowed.
    #[serde(default = "twenty", deserialize_with = "positive_u32")]
    pub events_per_second: u32,
    /// Delete controller-owned pods stuck on a pull failure that an injection now fixes, so their controller recreates them through admission.
    #[serde(default)]
    pub restart_stuck_pods: bool,
    /// Most pods of one workload (owner) being restarted at once, in percent of its pods (at least one pod).
    #[serde(default = "twenty_five", deserialize_with = "percent")]
    pub max_restart_percent: u32,
    /// Most pod restarts per minute, cluster-wide.
    #[serde(default = "ten", deserialize_with = "positive_u32")]
    pub restarts_per_minute: u32,
}

impl Default for Attribution {
    fn default() -> Self {
        Attribution {
            enabled: false,
            events_per_second: twenty(),
            restart_stuck_pods: false,
            max_restart_percent: twenty_five(),
            restarts_per_minute: ten(),
        }
    }
}

fn twenty() -> u32 {
    20
}

fn twenty_five() -> u32 {
    25
}

fn ten() -> u32 {
    10
}

/// A rate that must not be zero (zero would silently disable what `enabled` switched on).
fn positive_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == 0 {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(v)
}

/// A percentage in 1..=100.
fn percent<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if !(1..=100).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{v} is not a percentage between 1 and 100"
        )));
    }
    Ok(v)
}

/// Registry verification: prove pull-secret credentials against their registries (Docker
/// Registry HTTP API v2 auth flow), periodically in cluster mode and in `check --verify`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Verify {
    /// Probe credentials at all (off by default: it sends credentials over the network).
    #[serde(default)]
    pub enabled: bool,
    /// Least time between two probes of an unchanged secret (jittered upwards by up to 10%).
    #[serde(default = "six_hours", deserialize_with = "positive_duration")]
    pub interval: HumanDuration,
    /// Deadline of one probe (every request of the auth flow together).
    #[serde(default = "ten_seconds", deserialize_with = "positive_duration")]
    pub timeout: HumanDuration,
    /// Report rejected credentials as errors (denied in deny mode) instead of warnings.
    #[serde(default)]
    pub deny: bool,
    /// Repository named in the token scope (`repository:<name>:pull`) and probed when `/v2/` needs no auth.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "repository_name"
    )]
    pub probe_repository: Option<String>,
    /// Per-registry transport settings; the first matching pattern applies.
    #[serde(default)]
    pub registries: Vec<VerifyRegistry>,
}

/// Transport settings of the registries a pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VerifyRegistry {
    /// Registries this entry is for, in `registries.private` syntax.
    pub pattern: RegistryPattern,
    /// PEM file of extra root CAs for these registries (the system roots are trusted as well).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Allow plain HTTP to these registries (credentials then cross the network in clear text).
    #[serde(default)]
    pub insecure: bool,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            enabled: false,
            interval: six_hours(),
            timeout: ten_seconds(),
            deny: false,
            probe_repository: None,
            registries: Vec::new(),
        }
    }
}

fn six_hours() -> HumanDuration {
    HumanDuration(Duration::from_secs(6 * 3_600))
}

fn ten_seconds() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// A duration that must not be zero (a zero interval would probe in a loop, a zero timeout never succeed).
fn positive_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    let v = HumanDuration::deserialize(d)?;
    if v.0.is_zero() {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(v)
}

/// A repository path as distribution accepts it: it goes into a URL path and a token scope verbatim.
fn repository_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let Some(name) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    if name.len() > 255 || !name.split('/').all(component_ok) {
        return Err(serde::de::Error::custom(format!(
            "{name:?} is not a repository path (lowercase letters, digits, '.', '_', '-' and '/')"
        )));
    }
    Ok(Some(name))
}

/// What the cluster-mode reconciler keeps in step.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Reconcile {
    /// Add new pull secrets to ServiceAccounts, drop the ones pullgate added once their secret is gone.
    #[serde(default)]
    pub service_accounts: bool,
    /// Only ServiceAccounts with all these labels (matchLabels); empty selects all.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            inject: true,
            validation: Validation::default(),
            registries: Registries::default(),
            namespaces: Namespaces::default(),
            max_secret_age: None,
            reconcile: Reconcile::default(),
            validation_override: None,
            verify: Verify::default(),
            attribution: Attribution::default(),
            audit: Audit::default(),
        }
    }
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file is larger than [`MAX_POLICY_BYTES`].
    #[error("policy is {size} bytes, more than the {MAX_POLICY_BYTES} allowed")]
    TooLarge {
        /// Size seen.
        size: usize,
    },
    /// Not YAML.
    #[error("policy is not valid YAML: {0}")]
    Yaml(String),
    /// A field is unknown or has the wrong type.
    #[error("policy field `{path}`: {message}")]
    Field {
        /// Path of the bad field, e.g. `registries.privat`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Policy {
    /// This policy with `registries.private: ["*"]` (its `public` exceptions kept): for a pod
    /// whose registry proved private by refusing an anonymous pull.
    pub fn with_every_registry_private(&self) -> Policy {
        let mut p = self.clone();
        p.registries.private = vec![RegistryPattern::All];
        p
    }

    /// A policy from the parsed policy document (null: every default), naming the path of any
    /// bad field. Reading the file's YAML is the caller's (`store::policy_file`): the engine
    /// reads no file format.
    pub fn from_value(value: serde_json::Value) -> Result<Policy, PolicyError> {
        let value = match value {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            v => v,
        };
        serde_path_to_error::deserialize(value).map_err(|e| PolicyError::Field {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    /// The policy in force for a namespace, after its `pullgate.io/*` labels.
    pub fn for_namespace(&self, labels: &NamespaceOverrides) -> Effective {
        Effective {
            inject: labels.inject.unwrap_or(self.inject),
            validation: self
                .validation_override
                .or(labels.validation)
                .unwrap_or(self.validation),
        }
    }

    /// Whether pullgate acts on this namespace at all.
    pub fn excludes(&self, namespace: &str) -> bool {
        self.namespaces.exclude.iter().any(|n| n == namespace)
    }
}

/// A namespace's overrides, read from its labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamespaceOverrides {
    /// From `pullgate.io/inject`.
    pub inject: Option<bool>,
    /// From `pullgate.io/validation`.
    pub validation: Option<Validation>,
}

impl NamespaceOverrides {
    /// Read overrides from namespace labels; unknown values are ignored (the policy applies).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Self {
        NamespaceOverrides {
            inject: labels.get(INJECT_LABEL).and_then(|v| match v.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            }),
            validation: labels.get(VALIDATION_LABEL).and_then(|v| v.parse().ok()),
        }
    }
}

/// The settings in force for one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// Injection on.
    pub inject: bool,
    /// Validation mode.
    pub validation: Validation,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file() {
        let p = Policy::from_yaml("").unwrap();
        assert_eq!(p, Policy::default());
        assert!(p.inject);
        assert_eq!(p.validation, Validation::Warn);
        assert_eq!(p.registries.private, vec![RegistryPattern::Auto]);
        assert!(p.excludes("kube-system"));
    }

    #[test]
    fn full_policy_parses() {
        let p = Policy::from_yaml(
            "inject: false\nvalidation: deny\nregistries:\n  private: ['*.example.com', 'ghcr.io/acme']\n  public: [registry.k8s.io]\nnamespaces:\n  exclude: [infra]\nmaxSecretAge: 90d\n",
        )
        .unwrap();
        assert!(!p.inject);
        assert_eq!(p.validation, Validation::Deny);
        assert_eq!(p.registries.private.len(), 2);
        assert_eq!(
            p.max_secret_age,
            Some(HumanDuration(Duration::from_secs(90 * 86_400)))
        );
        assert!(p.excludes("infra") && !p.excludes("kube-system"));
    }

    #[test]
    fn unknown_and_mistyped_fields_name_their_path() {
        let cases = [
            ("registries:\n  privat: []\n", "registries"),
            ("validation: maybe\n", "validation"),
            ("maxSecretAge: 90 parsecs\n", "maxSecretAge"),
            ("inject: 3\n", "inject"),
            ("namespaces:\n  exclude: {a: b}\n", "namespaces.exclude"),
            ("injekt: true\n", "injekt"),
        ];
        for (text, path) in cases {
            match Policy::from_yaml(text) {
                Err(PolicyError::Field { path: p, .. }) => {
                    assert!(p.starts_with(path), "{text}: {p}")
                }
                other => panic!("{text}: expected field error, got {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_and_oversized_policies_are_errors() {
        assert!(matches!(
            Policy::from_yaml("a: [unclosed"),
            Err(PolicyError::Yaml(_))
        ));
        assert!(matches!(
            Policy::from_yaml("- a\n- b\n"),
            Err(PolicyError::Field { .. })
        ));
        let big = "#".repeat(MAX_POLICY_BYTES + 1);
        assert!(matches!(
            Policy::from_yaml(&big),
            Err(PolicyError::TooLarge { .. })
        ));
    }

    #[test]
    fn durations_parse_and_print() {
        for (s, secs) in [
            ("90d", 90 * 86_400),
            ("12h", 43_200),
            ("30m", 1_800),
            ("45s", 45),
            ("2w", 14 * 86_400),
        ] {
            let d: HumanDuration = s.parse().unwrap();
            assert_eq!(d.0.as_secs(), secs);
            assert_eq!(d.to_string(), s.replace("2w", "14d"));
        }
        for (s, d) in [
            ("1h 30m", Duration::from_secs(5_400)),
            ("1h30m", Duration::from_secs(5_400)),
            ("PT1H30M", Duration::from_secs(5_400)),
            ("P1D", Duration::from_secs(86_400)),
            ("1.5h", Duration::from_secs(5_400)),
            ("1m0s", Duration::from_secs(60)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(s.parse::<HumanDuration>().unwrap().0, d, "{s}");
        }
        let ms: HumanDuration = "1500ms".parse().unwrap();
        assert_eq!(
            (ms.0, ms.to_string()),
            (Duration::from_millis(1_500), "1500ms".to_owned())
        );
        for bad in [
            "",
            "d",
            "10",
            "10 parsecs",
            "-1d",
            "99999999999999999999d",
            "1.5d",
            "1mo",
            "1y",
            "P1M",
        ] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
        let err = "2mo".parse::<HumanDuration>().unwrap_err().to_string();
        assert!(err.contains("months and years"), "{err}");
        let err = "-1d".parse::<HumanDuration>().unwrap_err().to_string();
        assert!(err.contains("negative"), "{err}");
    }

    #[test]
    fn namespace_labels_override() {
        let mut labels = BTreeMap::new();
        labels.insert(INJECT_LABEL.to_owned(), "false".to_owned());
        labels.insert(VALIDATION_LABEL.to_owned(), "deny".to_owned());
        let eff = Policy::default().for_namespace(&NamespaceOverrides::from_labels(&labels));
        assert_eq!(
            eff,
            Effective {
                inject: false,
                validation: Validation::Deny
            }
        );
        let forced = Policy {
            validation_override: Some(Validation::Off),
            ..Policy::default()
        };
        assert_eq!(
            forced
                .for_namespace(&NamespaceOverrides::from_labels(&labels))
                .validation,
            Validation::Off
        );
        labels.insert(VALIDATION_LABEL.to_owned(), "bogus".to_owned());
        let eff = Policy::default().for_namespace(&NamespaceOverrides::from_labels(&labels));
        assert_eq!(eff.validation, Validation::Warn);
    }

    #[test]
    fn verify_section_defaults_parses_and_rejects() {
        let v = Policy::default().verify;
        assert!(!v.enabled && !v.deny);
        assert_eq!(v.interval.0, Duration::from_secs(6 * 3_600));
        assert_eq!(v.timeout.0, Duration::from_secs(10));
        let p = Policy::from_yaml(
            "verify:\n  enabled: true\n  interval: 1h\n  timeout: 5s\n  deny: true\n  probeRepository: library/busybox\n  registries:\n  - pattern: '*.corp.example'\n    caFile: /etc/pullgate/ca.pem\n  - pattern: 'registry.local:5000'\n    insecure: true\n",
        )
        .unwrap();
        assert!(p.verify.enabled && p.verify.deny);
        assert_eq!(p.verify.interval.0, Duration::from_secs(3_600));
        assert_eq!(
            p.verify.probe_repository.as_deref(),
            Some("library/busybox")
        );
        assert_eq!(p.verify.registries.len(), 2);
        assert!(p.verify.registries[1].insecure && p.verify.registries[1].ca_file.is_none());
        for (text, path) in [
            ("verify:\n  enabeld: true\n", "verify"),
            ("verify:\n  interval: 0s\n", "verify.interval"),
            ("verify:\n  timeout: soon\n", "verify.timeout"),
            (
                "verify:\n  probeRepository: Library/Busybox\n",
                "verify.probeRepository",
            ),
            (
                "verify:\n  probeRepository: 'a/../b?x'\n",
                "verify.probeRepository",
            ),
            (
                "verify:\n  registries:\n  - pattern: 'a b'\n",
                "verify.registries[0].pattern",
            ),
            (
                "verify:\n  registries:\n  - pattern: r.io\n    cafile: x\n",
                "verify.registries[0]",
            ),
        ] {
            match Policy::from_yaml(text) {
                Err(PolicyError::Field { path: p, .. }) => {
                    assert!(p.starts_with(path), "{text}: {p}")
                }
                other => panic!("{text}: expected field error, got {other:?}"),
            }
        }
    }

    #[test]
    fn audit_section_defaults_parses_and_rejects() {
        let a = Policy::default().audit;
        assert!(!a.enabled && !a.protect_in_use_secrets);
        assert_eq!(a.interval.0, Duration::from_secs(3_600));
        assert_eq!(a.reports, Reports::Auto);
        let p = Policy::from_yaml(
            "audit:\n  enabled: true\n  interval: 30m\n  protectInUseSecrets: true\n  reports: off\n",
        )
        .unwrap();
        assert!(p.audit.enabled && p.audit.protect_in_use_secrets);
        assert_eq!(p.audit.interval.0, Duration::from_secs(1_800));
        assert_eq!(p.audit.reports, Reports::Off);
        for (text, want) in [
            ("on", Reports::On),
            ("'off'", Reports::Off),
            ("auto", Reports::Auto),
            ("true", Reports::On),
        ] {
            let p = Policy::from_yaml(&format!("audit:\n  reports: {text}\n")).unwrap();
            assert_eq!(p.audit.reports, want, "{text}");
        }
        for (text, path) in [
            ("audit:\n  enable: true\n", "audit"),
            ("audit:\n  interval: 0s\n", "audit.interval"),
            ("audit:\n  interval: hourly\n", "audit.interval"),
            ("audit:\n  reports: yes-please\n", "audit.reports"),
            ("audit:\n  reports: 1\n", "audit.reports"),
            (
                "audit:\n  protectInUseSecrets: maybe\n",
                "audit.protectInUseSecrets",
            ),
        ] {
            match Policy::from_yaml(text) {
                Err(PolicyError::Field { path: p, .. }) => {
                    assert!(p.starts_with(path), "{text}: {p}")
                }
                other => panic!("{text}: expected field error, got {other:?}"),
            }
        }
    }

    #[test]
    fn requires_credentials_honours_public_exceptions() {
        let p = Policy::from_yaml(
            "registries:\n  private: ['*']\n  public: [registry.k8s.io, docker.io/library]\n",
        )
        .unwrap();
        let need = |n: &str| p.registries.requires_credentials(&MatchTarget::new(n));
        assert!(need("registry.example.com/app"));
        assert!(!need("registry.k8s.io/pause"));
        assert!(!need("docker.io/library/nginx"));
        assert!(need("docker.io/acme/app"));
    }

    #[test]
    fn credential_pattern_is_the_first_private_pattern_unless_public() {
        let p = Policy::from_yaml(
            "registries:\n  private: ['*.corp.example', 'docker.io/acme', '*']\n  public: [registry.k8s.io]\n",
        )
        .unwrap();
        let pattern = |n: &str| {
            p.registries
                .credential_pattern(&MatchTarget::new(n))
                .map(RegistryPattern::as_str)
        };
        assert_eq!(pattern("eu.corp.example/app"), Some("*.corp.example"));
        assert_eq!(pattern("docker.io/acme/app"), Some("docker.io/acme"));
        assert_eq!(pattern("made-up-1234.example/app"), Some("*"));
        assert_eq!(pattern("registry.k8s.io/pause"), None);
    }
}
