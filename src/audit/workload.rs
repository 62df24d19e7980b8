//! A workload's next pod: what the webhook would decide for its pod template now.

use crate::engine::index::ClusterIndex;
use crate::engine::podview::PodView;
use crate::engine::policy::Policy;
use crate::engine::verification::VerificationTable;
use crate::engine::{evaluate_pod, Decision, PodContext};

/// The decision for the next pod a workload's controller creates from `view`'s template, made
/// as the admission path makes it for a workload: the context of a pod being created (so the
/// policy's and the namespace labels' injection applies first), then validation of the result.
pub fn next_pod<'a>(
    view: &'a PodView,
    namespace: &str,
    policy: &Policy,
    index: &'a ClusterIndex,
    verified: Option<&VerificationTable>,
    now: i64,
) -> Decision<'a> {
    let ctx = PodContext::creating(namespace, now).with_verified(verified);
    evaluate_pod(view, &ctx, policy, index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;
    use crate::engine::podview::WorkloadKind;
    use crate::engine::Code;
    use serde_json::json;

    fn deployment(secrets: serde_json::Value) -> PodView {
        PodView::from_value(
            WorkloadKind::Deployment,
            &json!({"metadata": {"name": "api", "namespace": "shop"}, "spec": {"template": {"spec": {
                "imagePullSecrets": secrets,
                "containers": [{"name": "app", "image": "registry.example.com/shop/api:1"}]}}}}),
        )
        .unwrap()
    }

    #[test]
    fn next_pod_is_injected_then_validated_as_admission_does() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 0));
        let policy = Policy::default();
        // No secret named: the mutating webhook would inject regcred, so the next pod is fine.
        let view = deployment(json!([]));
        let d = next_pod(&view, "shop", &policy, &idx, None, 0);
        assert_eq!(d.injected, ["regcred"]);
        assert!(d.errors().next().is_none(), "{:?}", d.findings);
        // The template names a deleted secret: the webhook still injects the covering one.
        let gone = deployment(json!([{"name": "gone"}]));
        let d = next_pod(&gone, "shop", &policy, &idx, None, 0);
        assert_eq!(d.injected, ["regcred"], "{:?}", d.findings);
        // Injection off by policy: nothing saves the next pod.
        let off = Policy::from_yaml("inject: false\n").unwrap();
        let d = next_pod(&gone, "shop", &off, &idx, None, 0);
        assert!(d.injected.is_empty());
        assert!(
            d.errors().any(|f| f.code == Code::SecretNotFound),
            "{:?}",
            d.findings
        );
        let view = deployment(json!([]));
        let d = next_pod(&view, "shop", &off, &idx, None, 0);
        assert!(d.errors().next().is_some(), "{:?}", d.findings);
    }
}
