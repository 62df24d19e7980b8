//! AdmissionReviews as the API server sends them, the manifests they carry, and the patches the
//! mutating webhook answers.

use super::fixtures::unb64;
use super::paths::{examples, fixtures_dir, scratch, sweep_shared_dirs};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::OnceLock;

/// Copy examples/cluster and tests/fixtures/manifests (namespaces wh-test and lab) into `dir`.
pub fn write_test_manifests(dir: &Path) {
    std::fs::create_dir_all(dir).expect("manifests dir");
    std::fs::copy(
        examples().join("cluster/cluster.yaml"),
        dir.join("cluster.yaml"),
    )
    .expect("copy cluster.yaml");
    for f in ["wh-test.yaml", "lab.yaml"] {
        std::fs::copy(fixtures_dir().join("manifests").join(f), dir.join(f)).expect("copy fixture");
    }
}

/// Read one fixture review (tests/fixtures/admission-reviews/NAME).
pub fn fixture_review(name: &str) -> Value {
    let p = fixtures_dir().join("admission-reviews").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture JSON")
}

/// The documents of a manifest file, as JSON.
pub fn manifest_docs(path: &Path) -> Vec<Value> {
    pullgate::manifests::load_paths(&[path.to_owned()])
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|d| d.value)
        .collect()
}

/// The (only) object of examples/pods/NAME.yaml.
pub fn example_object(name: &str) -> Value {
    let docs = manifest_docs(&examples().join("pods").join(format!("{name}.yaml")));
    assert_eq!(docs.len(), 1, "{name}");
    docs.into_iter().next().expect("one document")
}

/// An AdmissionReview for `object` as the API server would send it (kind, resource and
/// namespace taken from the object).
pub fn review_for(api_version: &str, uid: &str, operation: &str, object: &Value) -> Value {
    let (group, version) = match object["apiVersion"]
        .as_str()
        .unwrap_or("v1")
        .split_once('/')
    {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (
            String::new(),
            object["apiVersion"].as_str().unwrap_or("v1").to_owned(),
        ),
    };
    let kind = object["kind"].as_str().unwrap_or("Pod").to_owned();
    let resource = match kind.as_str() {
        "ServiceAccount" => "serviceaccounts".to_owned(),
        k => format!("{}s", k.to_ascii_lowercase()),
    };
    let ns = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": object["metadata"]["name"],
            "namespace": ns,
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// A v1 CREATE review of `object`.
pub fn create_review(uid: &str, object: &Value) -> Value {
    review_for("admission.k8s.io/v1", uid, "CREATE", object)
}

/// A minimal pod in `ns` with one container per image.
pub fn pod(ns: &str, name: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, img)| json!({"name": format!("c{i}"), "image": img}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": containers, "serviceAccountName": "default"}
    })
}

/// Apply the response's base64 JSONPatch to `object`.
pub fn apply_patch(object: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let raw = unb64(response["patch"].as_str().expect("patch is a string"));
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch is RFC 6902");
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &patch).unwrap_or_else(|e| panic!("patch {patch:?} failed: {e}"));
    doc
}

/// The decoded patch operations.
pub fn patch_ops(response: &Value) -> Vec<Value> {
    serde_json::from_slice(&unb64(response["patch"].as_str().expect("patch"))).expect("ops")
}

/// The manifests of [`write_test_manifests`], written once per test process.
pub fn shared_manifests() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        sweep_shared_dirs();
        let d = scratch("shared-manifests");
        write_test_manifests(d.path());
        d
    })
    .path()
}
