//! The verification results the verify loop publishes: a [`VerificationTable`] replaced whole
//! on each change, so that every reader (admission, audit, attribution) decides on a consistent
//! snapshot without a lock, and a pass of the loop never waits on an admission.

use crate::engine::index::{ClusterIndex, SecretVerification};
use crate::engine::verification::VerificationTable;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The current verification results, shared between the verify loop (the only writer) and
/// the readers it feeds.
#[derive(Debug, Default)]
pub struct Verifications(ArcSwap<VerificationTable>);

impl Verifications {
    /// No results yet.
    pub fn new() -> Self {
        Verifications::default()
    }

    /// The results as they are now; cheap (no allocation), released when dropped.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<VerificationTable>> {
        self.0.load()
    }

    /// The results as they are now, to keep across awaits.
    pub fn snapshot_full(&self) -> Arc<VerificationTable> {
        self.0.load_full()
    }

    /// Record a secret's verification if `index` holds that secret at the verified
    /// resourceVersion; returns whether it was recorded.
    pub fn record(
        &self,
        index: &ClusterIndex,
        namespace: &str,
        name: &str,
        verification: SecretVerification,
    ) -> bool {
        let mut recorded = false;
        // Entries are shared: the copy costs a reference count per secret, not the results.
        self.0.rcu(|current| {
            let mut next = VerificationTable::clone(current);
            recorded = next.record(index, namespace, name, verification.clone());
            next
        });
        recorded
    }

    /// Drop the results of secrets `index` no longer holds at their verified resourceVersion.
    pub fn retain_current(&self, index: &ClusterIndex) {
        let current = self.0.load();
        if current.is_empty() {
            return;
        }
        let mut next = VerificationTable::clone(&current);
        next.retain_current(index);
        if next.len() != current.len() {
            self.0.store(Arc::new(next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;
    use crate::engine::index::CredentialStatus;
    use std::collections::BTreeMap;

    #[test]
    fn a_snapshot_is_unchanged_by_later_records_and_prunes() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("a", "regcred", &["r.example"], 0));
        let v = SecretVerification {
            resource_version: None,
            verified_at: 1,
            keys: BTreeMap::from([("r.example".to_owned(), CredentialStatus::Valid)]),
        };
        let shared = Verifications::new();
        let before = shared.snapshot_full();
        assert!(shared.record(&idx, "a", "regcred", v.clone()));
        assert!(!shared.record(&idx, "a", "other", v));
        assert!(before.is_empty());
        let after = shared.snapshot_full();
        assert_eq!(
            after.credential_status(&idx, "a", "regcred", "r.example"),
            Some(CredentialStatus::Valid)
        );
        idx.remove_secret("a", "regcred");
        shared.retain_current(&idx);
        assert!(shared.snapshot().is_empty());
        assert_eq!(after.len(), 1);
    }
}
