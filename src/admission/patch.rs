//! RFC 6902 JSON patches that add imagePullSecrets (and pullgate's bookkeeping annotation).

use crate::engine::index::MANAGED_ANNOTATION;
use serde_json::{json, Value};

/// Escape a JSON-pointer token (RFC 6901): `~` then `/`.
pub fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn refs(names: &[&str]) -> Value {
    Value::Array(names.iter().map(|n| json!({ "name": n })).collect())
}

/// Patch a Pod: append `injected` when the spec has a non-empty list, else set the whole final list.
pub fn pod_pull_secrets(has_list: bool, final_list: &[&str], injected: &[&str]) -> Vec<u8> {
    let ops: Vec<Value> = if has_list {
        injected
            .iter()
            .map(|n| json!({"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": n}}))
            .collect()
    } else {
        // "add" replaces an existing empty list or null as well as creating the member.
        vec![json!({"op": "add", "path": "/spec/imagePullSecrets", "value": refs(final_list)})]
    };
    serde_json::to_vec(&ops).unwrap_or_default()
}

/// Patch a ServiceAccount: add `injected` to imagePullSecrets and record them as managed by pullgate.
pub fn service_account_pull_secrets(
    has_list: bool,
    injected: &[&str],
    has_annotations: bool,
    managed: Option<&str>,
) -> Vec<u8> {
    let mut ops: Vec<Value> = if has_list {
        injected
            .iter()
            .map(|n| json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": n}}))
            .collect()
    } else {
        vec![json!({"op": "add", "path": "/imagePullSecrets", "value": refs(injected)})]
    };
    let mut all: Vec<&str> = managed
        .map(|m| {
            m.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for n in injected {
        if !all.contains(n) {
            all.push(n);
        }
    }
    let value = all.join(",");
    if has_annotations {
        ops.push(json!({"op": "add", "path": format!("/metadata/annotations/{}", escape_pointer(MANAGED_ANNOTATION)), "value": value}));
    } else {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {MANAGED_ANNOTATION: value}}));
    }
    serde_json::to_vec(&ops).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(doc: Value, patch: &[u8]) -> Value {
        let p: json_patch::Patch = serde_json::from_slice(patch).unwrap();
        let mut doc = doc;
        json_patch::patch(&mut doc, &p).unwrap();
        doc
    }

    #[test]
    fn pointer_escaping() {
        assert_eq!(
            escape_pointer("pullgate.io/managed-pull-secrets"),
            "pullgate.io~1managed-pull-secrets"
        );
        assert_eq!(escape_pointer("a~b/c"), "a~0b~1c");
    }

    #[test]
    fn pod_patch_for_absent_empty_null_and_present_lists() {
        for spec in [
            json!({}),
            json!({"imagePullSecrets": []}),
            json!({"imagePullSecrets": null}),
        ] {
            let out = apply(
                json!({"spec": spec}),
                &pod_pull_secrets(false, &["a", "b"], &["b"]),
            );
            assert_eq!(
                out["spec"]["imagePullSecrets"],
                json!([{"name": "a"}, {"name": "b"}])
            );
        }
        let out = apply(
            json!({"spec": {"imagePullSecrets": [{"name": "x"}]}}),
            &pod_pull_secrets(true, &["x", "y"], &["y"]),
        );
        assert_eq!(
            out["spec"]["imagePullSecrets"],
            json!([{"name": "x"}, {"name": "y"}])
        );
    }

    #[test]
    fn service_account_patch_records_managed_names() {
        let out = apply(
            json!({"metadata": {"name": "sa"}}),
            &service_account_pull_secrets(false, &["r"], false, None),
        );
        assert_eq!(out["imagePullSecrets"], json!([{"name": "r"}]));
        assert_eq!(out["metadata"]["annotations"][MANAGED_ANNOTATION], "r");
        let sa = json!({"metadata": {"annotations": {MANAGED_ANNOTATION: "old"}}, "imagePullSecrets": [{"name": "mine"}]});
        let out = apply(
            sa,
            &service_account_pull_secrets(true, &["new"], true, Some("old")),
        );
        assert_eq!(
            out["imagePullSecrets"],
            json!([{"name": "mine"}, {"name": "new"}])
        );
        assert_eq!(
            out["metadata"]["annotations"][MANAGED_ANNOTATION],
            "old,new"
        );
    }
}
