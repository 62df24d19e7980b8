//! An existing pod: do the secrets it names still exist, and do they still cover its images?
//! A running pod keeps working from the node's image cache until it is restarted elsewhere, so
//! this is the failure waiting for the next reschedule.

use crate::engine::index::ClusterIndex;
use crate::engine::podview::PodView;
use crate::engine::policy::Policy;
use crate::engine::verification::VerificationTable;
use crate::engine::{evaluate_pod, Decision, PodContext};

/// The decision for an existing pod as the kubelet would pull its images again: nothing is
/// injected (an existing pod's imagePullSecrets cannot change); the pod's own list (which the
/// ServiceAccount admission plugin filled at creation) is resolved in the namespace, and each
/// image is looked up in the kubelet's keyring of the usable ones ([`crate::engine::keyring::Keyring`]).
pub fn existing_pod<'a>(
    view: &'a PodView,
    namespace: &str,
    policy: &Policy,
    index: &'a ClusterIndex,
    verified: Option<&VerificationTable>,
    now: i64,
) -> Decision<'a> {
    let ctx = PodContext::existing(namespace, now).with_verified(verified);
    evaluate_pod(view, &ctx, policy, index)
}

/// Whether a pod in this `status.phase` will never pull an image again (it has terminated).
pub fn terminated(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;
    use crate::engine::podview::WorkloadKind;
    use crate::engine::Code;
    use serde_json::json;

    fn pod(secret: &str, image: &str) -> PodView {
        PodView::from_value(
            WorkloadKind::Pod,
            &json!({"metadata": {"name": "api-1", "namespace": "shop"}, "spec": {
                "imagePullSecrets": [{"name": secret}],
                "containers": [{"name": "app", "image": image}]}}),
        )
        .unwrap()
    }

    #[test]
    fn deleted_secret_and_moved_registry_are_errors_nothing_is_injected() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 0));
        idx.upsert_secret(pull_secret(
            "shop",
            "other",
            &["registry.example.com:5000"],
            0,
        ));
        let policy = Policy::default();
        let v = pod("regcred", "registry.example.com/shop/api:1");
        let d = existing_pod(&v, "shop", &policy, &idx, None, 0);
        assert!(d.findings.iter().all(|f| f.code != Code::SecretNotFound));
        assert_eq!(d.images[0].matched_secrets, ["regcred"]);
        // The secret was deleted: no injection can save an existing pod.
        let v = pod("deleted", "registry.example.com/shop/api:1");
        let d = existing_pod(&v, "shop", &policy, &idx, None, 0);
        assert!(d.injected.is_empty());
        assert!(
            d.errors().any(|f| f.code == Code::SecretNotFound),
            "{:?}",
            d.findings
        );
        // The registry moved to a port the named secret does not cover.
        let v = pod("regcred", "registry.example.com:5000/shop/api:1");
        let d = existing_pod(&v, "shop", &policy, &idx, None, 0);
        assert!(d.errors().next().is_some(), "{:?}", d.findings);
    }

    #[test]
    fn terminated_phases() {
        assert!(terminated(Some("Succeeded")) && terminated(Some("Failed")));
        assert!(!terminated(Some("Running")) && !terminated(Some("Pending")) && !terminated(None));
    }
}
