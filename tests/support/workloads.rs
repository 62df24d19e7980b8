//! Builders for Pods and workloads as their controllers write them (pod templates where each kind
//! keeps them, controller owner references) for `pullgate audit`'s tests and bench, and readers of
//! its JSON results.

use serde_json::{json, Value};

/// A pod spec with one container and the given imagePullSecrets (none: the field is absent).
pub fn pod_spec(image: &str, secrets: &[&str], service_account: &str) -> Value {
    let mut spec = json!({"serviceAccountName": service_account,
        "containers": [{"name": "app", "image": image}]});
    if !secrets.is_empty() {
        spec["imagePullSecrets"] = json!(secrets
            .iter()
            .map(|s| json!({"name": s}))
            .collect::<Vec<_>>());
    }
    spec
}

/// An owner reference marked `controller: true` to the object `owner` (as the API returned it).
pub fn controller_ref(owner: &Value) -> Value {
    json!([{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true}])
}

/// A workload of `kind` (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
/// ReplicationController) whose pod template has `spec`, controlled by `owner` if given.
pub fn workload(kind: &str, ns: &str, name: &str, spec: Value, owner: Option<&Value>) -> Value {
    let api_version = match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "ReplicationController" => "v1",
        other => panic!("not a workload kind: {other}"),
    };
    let template = json!({"metadata": {"labels": {"app.kubernetes.io/name": name}}, "spec": spec});
    let body = match kind {
        "CronJob" => {
            json!({"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}})
        }
        "ReplicationController" => {
            json!({"replicas": 1, "selector": {"app.kubernetes.io/name": name}, "template": template})
        }
        _ => {
            json!({"selector": {"matchLabels": {"app.kubernetes.io/name": name}}, "template": template})
        }
    };
    let mut w = json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": ns}, "spec": body});
    if let Some(o) = owner {
        w["metadata"]["ownerReferences"] = controller_ref(o);
    }
    w
}

/// A Pod with `spec`, controlled by `owner` if given.
pub fn pod(ns: &str, name: &str, spec: Value, owner: Option<&Value>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns}, "spec": spec});
    if let Some(o) = owner {
        p["metadata"]["ownerReferences"] = controller_ref(o);
    }
    p
}

/// The result for `kind`/`name` in the JSON of `pullgate audit` or `check`.
pub fn result<'a>(report: &'a Value, kind: &str, name: &str) -> &'a Value {
    report["results"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["kind"] == kind && r["name"] == name))
        .unwrap_or_else(|| panic!("no result for {kind} {name} in {report:#}"))
}

/// The codes of a result's findings at warning or error.
pub fn codes(r: &Value) -> Vec<String> {
    r["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| f["severity"] != "info")
                .map(|f| f["code"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
