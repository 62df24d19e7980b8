//! Credential verification results as plain data: the verify adapter owns and replaces a
//! [`VerificationTable`], and the decision reads it (through [`super::PodContext`]) next to the
//! index, which says whether each result still describes its secret's current resourceVersion.

use super::index::{ClusterIndex, CredentialStatus, SecretRef, SecretVerification};
use std::collections::HashMap;
use std::sync::Arc;

/// Verification results by secret. Entries are shared, so that a copy (taken to replace the
/// table behind a snapshot) costs reference counts, not the results themselves.
#[derive(Debug, Clone, Default)]
pub struct VerificationTable(HashMap<Arc<SecretRef>, Arc<SecretVerification>>);

impl VerificationTable {
    /// An empty table.
    pub fn new() -> Self {
        VerificationTable::default()
    }

    /// Whether no result is recorded (none unless `verify` is on).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many secrets have a result (current or not).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Record a secret's verification if `index` holds that secret at the verified
    /// resourceVersion; returns whether it was recorded (a result for a replaced secret is not).
    pub fn record(
        &mut self,
        index: &ClusterIndex,
        namespace: &str,
        name: &str,
        verification: SecretVerification,
    ) -> bool {
        let current = index
            .namespace(namespace)
            .secrets
            .get(name)
            .is_some_and(|s| s.resource_version == verification.resource_version);
        if current {
            self.0.insert(
                Arc::new((namespace.to_owned(), name.to_owned())),
                Arc::new(verification),
            );
        }
        current
    }

    /// Drop the results of secrets that `index` no longer holds at the verified resourceVersion.
    pub fn retain_current(&mut self, index: &ClusterIndex) {
        self.0.retain(|sref, v| {
            index
                .namespace(&sref.0)
                .secrets
                .get(sref.1.as_str())
                .is_some_and(|s| s.resource_version == v.resource_version)
        });
    }

    /// The verification of a secret, if it describes the version `index` holds.
    pub fn verification(
        &self,
        index: &ClusterIndex,
        namespace: &str,
        name: &str,
    ) -> Option<&SecretVerification> {
        if self.0.is_empty() {
            return None;
        }
        let rv = &index
            .namespace(namespace)
            .secrets
            .get(name)?
            .resource_version;
        self.0
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|v| &**v)
            .filter(|v| &v.resource_version == rv)
    }

    /// What the registry of `key` made of the secret's credential at the version `index` holds.
    pub fn credential_status(
        &self,
        index: &ClusterIndex,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Option<CredentialStatus> {
        self.verification(index, namespace, name)?
            .keys
            .get(key)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;
    use std::collections::BTreeMap;

    #[test]
    fn results_follow_their_secrets_resource_version() {
        let mut idx = ClusterIndex::new();
        let mut s = pull_secret("a", "regcred", &["r.example"], 0);
        s.resource_version = Some("1".into());
        idx.upsert_secret(s.clone());
        let verified = |rv: &str| SecretVerification {
            resource_version: Some(rv.into()),
            verified_at: 5,
            keys: BTreeMap::from([("r.example".to_owned(), CredentialStatus::Rejected)]),
        };
        let mut t = VerificationTable::new();
        assert!(t.is_empty());
        assert!(
            !t.record(&idx, "a", "missing", verified("1")),
            "an unknown secret"
        );
        assert!(!t.record(&idx, "a", "regcred", verified("0")), "a stale rv");
        assert!(t.record(&idx, "a", "regcred", verified("1")));
        assert_eq!(
            t.credential_status(&idx, "a", "regcred", "r.example"),
            Some(CredentialStatus::Rejected)
        );
        assert_eq!(t.credential_status(&idx, "a", "regcred", "other"), None);
        // A re-delivery at the same resourceVersion keeps the result.
        idx.upsert_secret(s.clone());
        assert!(t.verification(&idx, "a", "regcred").is_some());
        // A new version drops it from reads, and pruning drops it from the table.
        let mut rotated = s.clone();
        rotated.resource_version = Some("2".into());
        idx.upsert_secret(rotated);
        assert_eq!(t.verification(&idx, "a", "regcred"), None);
        let copy = t.clone();
        t.retain_current(&idx);
        assert!(t.is_empty());
        assert_eq!(copy.len(), 1, "a copy keeps its own entries");
        assert!(t.record(&idx, "a", "regcred", verified("2")));
        // Removing the secret drops it too.
        idx.remove_secret("a", "regcred");
        assert_eq!(t.verification(&idx, "a", "regcred"), None);
        t.retain_current(&idx);
        assert!(t.is_empty());
    }
}
