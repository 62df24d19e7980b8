//! Builders for the objects the tests put into the fake API server, with realistic payloads.

use base64::Engine;
use serde_json::{json, Map, Value};

/// Base64 (standard alphabet, padded), as Secret data and `auth` fields use it.
pub fn b64(s: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Decode standard base64, panicking (naming the text) on anything else.
pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {s}"))
}

/// A `.dockerconfigjson` payload as `kubectl create secret docker-registry` writes it, one
/// `auths` entry per (registry, user, password): username, password, email and the combined `auth`.
pub fn docker_config_json_entries(entries: &[(&str, &str, &str)]) -> String {
    let auths: Map<String, Value> = entries
        .iter()
        .map(|(registry, user, password)| {
            let entry = json!({
                "username": user,
                "password": password,
                "email": "ci@example.com",
                "auth": b64(format!("{user}:{password}")),
            });
            ((*registry).to_owned(), entry)
        })
        .collect();
    json!({ "auths": auths }).to_string()
}

/// [`docker_config_json_entries`] for one CI robot user holding `password` on every registry.
pub fn docker_config_json(registries: &[&str], password: &str) -> String {
    let entries: Vec<(&str, &str, &str)> = registries
        .iter()
        .map(|r| (*r, "robot$ci-puller", password))
        .collect();
    docker_config_json_entries(&entries)
}

/// A `kubernetes.io/dockerconfigjson` Secret.
pub fn pull_secret(ns: &str, name: &str, registries: &[&str], password: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": ns, "labels": { "app.kubernetes.io/part-of": "ci" } },
        "type": "kubernetes.io/dockerconfigjson",
        "data": { ".dockerconfigjson": b64(docker_config_json(registries, password)) },
    })
}

/// A `kubernetes.io/dockerconfigjson` Secret whose one entry has `auth` as given (e.g. not
/// base64), which the kubelet's keyring refuses.
pub fn malformed_pull_secret(ns: &str, name: &str, registry: &str, auth: &str) -> Value {
    let payload = json!({ "auths": { registry: { "auth": auth } } }).to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": ns },
        "type": "kubernetes.io/dockerconfigjson",
        "data": { ".dockerconfigjson": b64(payload) },
    })
}

/// A legacy `kubernetes.io/dockercfg` Secret (the bare map of registries, no `auths`).
pub fn dockercfg_secret(ns: &str, name: &str, registries: &[&str], password: &str) -> Value {
    let cfg: Map<String, Value> = registries
        .iter()
        .map(|r| {
            (
                (*r).to_owned(),
                json!({ "auth": b64(format!("legacy:{password}")), "email": "ci@example.com" }),
            )
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": ns },
        "type": "kubernetes.io/dockercfg",
        "data": { ".dockercfg": b64(Value::Object(cfg).to_string()) },
    })
}

/// An Opaque Secret (the store may receive its metadata, never its data).
pub fn opaque_secret(ns: &str, name: &str, key: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": ns },
        "type": "Opaque",
        "data": { key: b64(value) },
    })
}

/// A Helm release Secret as Helm 3 stores one: type `helm.sh/release.v1`, its four labels, and
/// the release (chart, values, manifest; gzipped then base64-encoded by Helm) as `data.release`,
/// here `size` bytes of base64 text that do not compress: real ones run from tens of KiB to ~1 MiB.
pub fn helm_release_secret(ns: &str, release: &str, version: u32, size: usize) -> Value {
    let mut x = (size as u64 ^ u64::from(version)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let blob: String = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(x % 64) as usize]
                as char
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("sh.helm.release.v1.{release}.v{version}"),
            "namespace": ns,
            "labels": {
                "name": release,
                "owner": "helm",
                "status": "deployed",
                "version": version.to_string(),
            },
        },
        "type": "helm.sh/release.v1",
        "data": { "release": b64(blob) },
    })
}

/// A ServiceAccount with imagePullSecrets.
pub fn service_account(ns: &str, name: &str, pull_secrets: &[&str]) -> Value {
    let refs: Vec<Value> = pull_secrets.iter().map(|n| json!({ "name": n })).collect();
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": { "name": name, "namespace": ns },
        "imagePullSecrets": refs,
    })
}

/// A Namespace with labels.
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } })
}
