//! Whether an image's registry needs credentials: what the policy lists, and for the pattern
//! `auto` what the cluster's pull secrets show.
//!
//! Under `auto` a registry is private when some pull secret of the cluster has a key for its
//! host, whatever port, path or letter case the key gives (so that near misses such as a missing
//! `:5000` are still caught), and public otherwise: the kubelet then pulls it anonymously.
//! Docker Hub serves public and private repositories from one host, and many clusters hold a
//! Hub secret only to lift rate limits, so Hub is never an error by default: a Hub secret of the
//! pod's namespace is injected for Hub images; a Hub image not in `library/` (the official,
//! public images) that no secret covers is a warning while Hub secrets exist elsewhere.

use super::keyring::{is_default_registry_match, MatchTarget};
use super::reference::ImageRef;
use crate::engine::index::{ClusterIndex, HostClaim};
use crate::engine::policy::{Registries, RegistryPattern};
use std::fmt;

/// Why an image's registry counts as private or public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryClass<'a> {
    /// `registries.private` lists it (`*` or a pattern).
    ListedPrivate,
    /// `registries.public` lists it.
    ListedPublic,
    /// The policy lists neither it nor `auto`.
    Unlisted,
    /// A pull secret of the pod's namespace has a key for its host.
    SecretHere(&'a str),
    /// Only pull secrets of other namespaces have a key for its host.
    SecretElsewhere,
    /// No pull secret of the cluster has a key for its host: pulled anonymously.
    Unclaimed,
    /// A Docker Hub image, and the pod's namespace holds a Hub secret (used, never required).
    HubSecretHere(&'a str),
    /// A Docker Hub image outside `library/`, with Hub secrets only in other namespaces: it may
    /// be a private repository.
    HubSecretElsewhere,
    /// An official Docker Hub image (`docker.io/library/…`), public.
    HubOfficial,
}

impl RegistryClass<'_> {
    /// Whether the kubelet needs credentials for the image (and pullgate injects them).
    pub fn requires_credentials(&self) -> bool {
        matches!(
            self,
            RegistryClass::ListedPrivate
                | RegistryClass::SecretHere(_)
                | RegistryClass::SecretElsewhere
                | RegistryClass::HubSecretHere(_)
                | RegistryClass::HubSecretElsewhere
        )
    }

    /// Whether a missing credential is certain to fail the pull (an error), rather than only
    /// possibly (a warning): Docker Hub under `auto` is never certain.
    pub fn is_certain(&self) -> bool {
        !matches!(
            self,
            RegistryClass::HubSecretHere(_) | RegistryClass::HubSecretElsewhere
        )
    }

    /// The class with its reason, for people and the JSON report, e.g.
    /// `private (secret "regcred" in this namespace is for registry.example.com)`.
    pub fn describe(&self, host: &str) -> String {
        Described(self, host).to_string()
    }

    /// [`RegistryClass::describe`] for an image: classes are about hosts, so without its port.
    pub fn describe_image(&self, image: &ImageRef) -> String {
        let target = MatchTarget::new(image.name());
        let host = target.host_and_port().map_or_else(
            || image.domain().into(),
            |(h, _)| String::from_utf8_lossy(h),
        );
        self.describe(&host)
    }
}

struct Described<'c, 'a>(&'c RegistryClass<'a>, &'c str);

impl fmt::Display for Described<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.1;
        match self.0 {
            RegistryClass::ListedPrivate => write!(f, "private (registries.private lists {host})"),
            RegistryClass::ListedPublic => write!(f, "public (registries.public lists {host})"),
            RegistryClass::Unlisted => {
                write!(f, "public (registries.private does not list {host})")
            }
            RegistryClass::SecretHere(s) => {
                write!(f, "private (secret {s:?} in this namespace is for {host})")
            }
            RegistryClass::SecretElsewhere => {
                write!(
                    f,
                    "private (pull secrets in other namespaces are for {host})"
                )
            }
            RegistryClass::Unclaimed => write!(
                f,
                "public (no pull secret in the cluster is for {host}; pulled anonymously)"
            ),
            RegistryClass::HubSecretHere(s) => write!(
                f,
                "Docker Hub, credentials used where present (secret {s:?} in this namespace)"
            ),
            RegistryClass::HubSecretElsewhere => write!(
                f,
                "Docker Hub, possibly private (Hub secrets exist in other namespaces)"
            ),
            RegistryClass::HubOfficial => write!(f, "public (official Docker Hub image)"),
        }
    }
}

/// Classify an image (its normalised name) of a pod in `namespace`.
pub fn classify<'a>(
    registries: &Registries,
    target: &MatchTarget<'_>,
    index: &'a ClusterIndex,
    namespace: &str,
) -> RegistryClass<'a> {
    if registries.public.iter().any(|p| p.matches(target)) {
        return RegistryClass::ListedPublic;
    }
    let mut auto = false;
    for p in &registries.private {
        match p {
            RegistryPattern::Auto => auto = true,
            RegistryPattern::All => return RegistryClass::ListedPrivate,
            RegistryPattern::Key(k) if k.matches(target) => return RegistryClass::ListedPrivate,
            RegistryPattern::Key(_) => {}
        }
    }
    if !auto {
        return RegistryClass::Unlisted;
    }
    if target.host() == "docker.io" && is_default_registry_match(target.name()) {
        let official = target.name().starts_with("docker.io/library/");
        return match index.docker_hub_claim(namespace) {
            HostClaim::Here(s) => RegistryClass::HubSecretHere(&s.name),
            HostClaim::Elsewhere if !official => RegistryClass::HubSecretElsewhere,
            _ if official => RegistryClass::HubOfficial,
            _ => RegistryClass::Unclaimed,
        };
    }
    match index.host_claim(target, namespace) {
        HostClaim::Here(s) => RegistryClass::SecretHere(&s.name),
        HostClaim::Elsewhere => RegistryClass::SecretElsewhere,
        HostClaim::None => RegistryClass::Unclaimed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;
    use crate::engine::policy::Policy;

    fn index() -> ClusterIndex {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 1));
        idx.upsert_secret(pull_secret("ops", "glob", &["*.corp.example"], 1));
        idx.upsert_secret(pull_secret(
            "ops",
            "hub",
            &["https://index.docker.io/v1/"],
            1,
        ));
        idx
    }

    fn auto() -> Registries {
        Policy::from_yaml("registries:\n  private: [auto]\n")
            .expect("policy")
            .registries
    }

    fn class(idx: &ClusterIndex, registries: &Registries, ns: &str, image: &str) -> String {
        let t = MatchTarget::new(image);
        let c = classify(registries, &t, idx, ns);
        format!("{} {}", c.requires_credentials(), c.describe(t.host()))
    }

    #[test]
    fn auto_follows_the_cluster_secrets() {
        let idx = index();
        let r = auto();
        let cases = [
            (
                "shop",
                "registry.example.com/app",
                "true private (secret \"regcred\"",
            ),
            // Near misses are still private: port, path and case are ignored.
            (
                "shop",
                "registry.example.com:5000/app",
                "true private (secret \"regcred\"",
            ),
            ("shop", "Registry.Example.com/app", "true private (secret"),
            (
                "web",
                "registry.example.com/app",
                "true private (pull secrets in other",
            ),
            (
                "web",
                "a.corp.example/app",
                "true private (pull secrets in other",
            ),
            (
                "web",
                "a.b.corp.example/app",
                "true private (pull secrets in other",
            ),
            (
                "web",
                "registry.k8s.io/pause",
                "false public (no pull secret",
            ),
            (
                "web",
                "us-central1-docker.pkg.dev/p/r/app",
                "false public (no pull secret",
            ),
            ("web", "docker.io/library/redis", "false public (official"),
            (
                "web",
                "docker.io/acme/app",
                "true Docker Hub, possibly private",
            ),
            (
                "ops",
                "docker.io/library/redis",
                "true Docker Hub, credentials used",
            ),
        ];
        for (ns, image, want) in cases {
            let got = class(&idx, &r, ns, image);
            assert!(got.starts_with(want), "{ns} {image}: {got}");
        }
        let t = MatchTarget::new("docker.io/acme/app");
        assert!(!classify(&r, &t, &idx, "web").is_certain());
        let t = MatchTarget::new("registry.example.com/app");
        assert!(classify(&r, &t, &idx, "web").is_certain());
    }

    #[test]
    fn without_hub_secrets_hub_is_public() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 1));
        let r = auto();
        assert!(class(&idx, &r, "shop", "docker.io/acme/app").starts_with("false public (no"));
        idx.remove_secret("shop", "regcred");
        assert!(class(&idx, &r, "shop", "registry.example.com/x").starts_with("false"));
    }

    #[test]
    fn explicit_lists_win() {
        let idx = index();
        let p = Policy::from_yaml(
            "registries:\n  private: ['ghcr.io/acme']\n  public: [registry.example.com]\n",
        )
        .expect("policy");
        let r = &p.registries;
        assert!(class(&idx, r, "shop", "ghcr.io/acme/x")
            .starts_with("true private (registries.private"));
        assert!(class(&idx, r, "shop", "registry.example.com/x")
            .starts_with("false public (registries.public"));
        assert!(class(&idx, r, "shop", "quay.io/x")
            .starts_with("false public (registries.private does not"));
        let all = Policy::from_yaml("registries:\n  private: ['*']\n").expect("policy");
        assert!(class(&idx, &all.registries, "shop", "registry.k8s.io/pause").starts_with("true"));
        let both = Policy::from_yaml("registries:\n  private: [auto, ghcr.io]\n").expect("policy");
        assert!(class(&idx, &both.registries, "shop", "ghcr.io/x").starts_with("true"));
        assert!(class(&idx, &both.registries, "web", "a.corp.example/x").starts_with("true"));
        assert!(class(&idx, &both.registries, "web", "quay.io/x").starts_with("false"));
    }
}
