//! Registry verification (`verify` in the policy, off by default): prove pull-secret
//! credentials against their registries with the Docker Registry HTTP API v2 auth flow, so an
//! expired or revoked credential is named before a fresh node fails to pull.
//!
//! - [`challenge`] and [`flow`] are pure: WWW-Authenticate parsing and the auth flow as a state
//!   machine deciding every request and verdict (`valid`, `rejected`, `unreachable`,
//!   `unsupported`) and where a credential may go.
//! - [`http`] is the thin adapter (one HTTP/1.1 request per connection, rustls, no redirects).
//! - [`prober`] runs flows under per-registry concurrency limits and a deadline, with the
//!   policy's per-registry CAs and plain-HTTP exceptions; [`tls`] checks server certificates
//!   against a `caFile`, accepting a self-signed registry certificate as containerd does.
//! - [`schedule`] is the pure schedule (at once when new or rotated, then every interval, jittered).
//! - [`service`] is the loop that plans over the store, reads each secret only when its
//!   registry has a free slot, records results in [`table`] (read by admission, audit and
//!   attribution), metrics and Events; [`kube`] binds it
//!   to the API server, [`offline`] serves `pullgate check --verify`.
//!
//! A registry whose `/v2/` needs no authentication does not check credentials at all, so such
//! a credential is reported `unsupported` rather than `valid`: nothing was proven about it.

pub mod challenge;
pub mod flow;
pub mod http;
pub mod kube;
pub mod offline;
pub mod prober;
pub mod schedule;
pub mod service;
pub mod table;
pub mod tls;

pub use flow::Verdict;
pub use prober::{Settings, Verifier, VerifyError};
pub use table::Verifications;

use crate::engine::index::{ClusterIndex, SecretInfo};
use crate::engine::keyring::{MatchTarget, RegistryKey};
use crate::engine::policy::Policy;

/// The registry keys of a secret worth verifying: keys of a usable pull secret, in a namespace
/// the policy acts on, that hold a credential, name one host (no glob), and cover a private
/// registry of the policy. Each key once, in document order.
pub fn targets_of<'a>(secret: &'a SecretInfo, policy: &Policy) -> Vec<&'a RegistryKey> {
    if policy.excludes(&secret.namespace) || !secret.is_pull_type() {
        return Vec::new();
    }
    let Ok(payload) = &secret.payload else {
        return Vec::new();
    };
    let mut keys: Vec<&RegistryKey> = Vec::new();
    for entry in payload.entries.iter().filter(|e| e.has_credentials) {
        let Ok(key) = &entry.key else { continue };
        if key.is_glob()
            || !policy
                .registries
                .requires_credentials(&MatchTarget::new(key.served_name()))
            || keys.contains(&key)
        {
            continue;
        }
        keys.push(key);
    }
    keys
}

/// The secrets of these namespaces with the keys to verify (secrets with none are left out).
pub fn targets<'a>(
    index: &'a ClusterIndex,
    namespaces: &'a [String],
    policy: &'a Policy,
) -> impl Iterator<Item = (&'a SecretInfo, Vec<&'a RegistryKey>)> + 'a {
    namespaces
        .iter()
        .flat_map(move |ns| index.namespace(ns).secrets.values())
        .filter_map(move |s| {
            let keys = targets_of(s, policy);
            (!keys.is_empty()).then_some((s, keys))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;

    #[test]
    fn targets_are_private_single_host_keys_with_credentials() {
        let policy = Policy::from_yaml(
            "registries:\n  private: ['*']\n  public: [registry.k8s.io]\nnamespaces:\n  exclude: [infra]\n",
        )
        .unwrap();
        let s = pull_secret(
            "shop",
            "regcred",
            &[
                "registry.example.com:5000",
                "*.example.com",
                "registry.k8s.io",
                "https://registry.example.com:5000/v2/",
            ],
            1,
        );
        let keys: Vec<&str> = targets_of(&s, &policy).iter().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["registry.example.com:5000"]);
        let excluded = pull_secret("infra", "regcred", &["r.io"], 1);
        assert!(targets_of(&excluded, &policy).is_empty());

        let mut idx = ClusterIndex::new();
        idx.upsert_secret(s);
        idx.upsert_secret(excluded);
        idx.upsert_secret(pull_secret("shop", "public-only", &["registry.k8s.io"], 1));
        let namespaces: Vec<String> = idx.namespace_names().map(str::to_owned).collect();
        let all: Vec<&str> = targets(&idx, &namespaces, &policy)
            .map(|(s, _)| &*s.name)
            .collect();
        assert_eq!(all, ["regcred"]);
        let only_infra = ["infra".to_owned()];
        assert_eq!(targets(&idx, &only_infra, &policy).count(), 0);
    }
}
