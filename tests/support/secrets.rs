//! Credential material the tests plant or take from the examples, and the checks that none of it
//! is ever printed, logged or served.

use super::fixtures::{b64, docker_config_json_entries};
use super::paths::examples;
use serde_json::json;

/// The password inside every example pull secret (examples/cluster).
pub const EXAMPLE_PASSWORD: &str = "example-password-not-real";
/// A password planted by the tests in their own manifests; it must never be printed or served.
pub const PLANTED_PASSWORD: &str = "Planted-Pw-7f3kQ9xZ-c0rgi";
/// The user of the planted credentials.
pub const PLANTED_USER: &str = "planted-user";

fn secret_yaml(name: &str, ns: &str, ty: &str, key: &str, payload: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  creationTimestamp: \"2026-05-01T00:00:00Z\"\ntype: {ty}\ndata:\n  {key}: {}\n",
        b64(payload)
    )
}

/// Namespace `vault` (deny) whose secrets all carry [`PLANTED_PASSWORD`], several of them malformed
/// in ways whose error messages could be tempted to quote the payload.
pub fn planted_manifests() -> String {
    let p = PLANTED_PASSWORD;
    let u = PLANTED_USER;
    let dcj = "kubernetes.io/dockerconfigjson";
    let docs = [
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: vault\n  labels:\n    pullgate.io/validation: deny\n".to_owned(),
        secret_yaml("good", "vault", dcj, ".dockerconfigjson", &docker_config_json_entries(&[("private.example.org", u, p)])),
        // auth that is not base64, and contains the password.
        secret_yaml("bad-auth", "vault", dcj, ".dockerconfigjson",
            &json!({"auths": {"bad.example.org": {"auth": format!("{p}!!not base64")}}}).to_string()),
        // auth whose decoded form has no colon.
        secret_yaml("no-colon", "vault", dcj, ".dockerconfigjson",
            &json!({"auths": {"colon.example.org": {"auth": b64(format!("{u}{p}"))}}}).to_string()),
        // an entry of the wrong JSON type (a string where an object belongs).
        secret_yaml("wrong-shape", "vault", dcj, ".dockerconfigjson",
            &json!({"auths": {"shape.example.org": p}}).to_string()),
        // not JSON at all.
        secret_yaml("not-json", "vault", dcj, ".dockerconfigjson", &format!("{{auths: {p}")),
        // credential helpers next to a real entry.
        secret_yaml("helpers", "vault", dcj, ".dockerconfigjson",
            &json!({"auths": {"helped.example.org": {"username": u, "password": p}}, "credHelpers": {"helped.example.org": p}}).to_string()),
        secret_yaml("legacy", "vault", "kubernetes.io/dockercfg", ".dockercfg",
            &json!({"legacy.example.org": {"username": u, "password": p, "auth": b64(format!("{u}:{p}"))}}).to_string()),
        secret_yaml("opaque", "vault", "Opaque", "password", p),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: vault\n".to_owned(),
    ];
    docs.join("---\n")
}

/// Everything that would betray a credential of the examples or of the planted secrets.
pub fn secret_needles() -> Vec<String> {
    let mut v = vec![
        EXAMPLE_PASSWORD.to_owned(),
        b64(EXAMPLE_PASSWORD),
        b64(format!("ci-bot:{EXAMPLE_PASSWORD}")),
        b64(format!("robot:{EXAMPLE_PASSWORD}")),
        PLANTED_PASSWORD.to_owned(),
        b64(PLANTED_PASSWORD),
        b64(format!("{PLANTED_USER}:{PLANTED_PASSWORD}")),
        b64(format!("{PLANTED_USER}{PLANTED_PASSWORD}")),
    ];
    // The stored payloads themselves (base64 of the whole config).
    let cluster =
        std::fs::read_to_string(examples().join("cluster/cluster.yaml")).expect("cluster.yaml");
    for line in cluster.lines() {
        let t = line.trim();
        if let Some((k, val)) = t.split_once(": ") {
            if k.starts_with('.') || k == "token" {
                v.push(val.trim().to_owned());
            }
        }
    }
    // Base64 of a password depends on its alignment: also look for the aligned middle part.
    for p in [EXAMPLE_PASSWORD, PLANTED_PASSWORD] {
        for pad in ["", "x", "xx"] {
            let e = b64(format!("{pad}{p}"));
            let start = if pad.is_empty() { 0 } else { 4 };
            let core: String = e.chars().skip(start).take(16).collect();
            v.push(core);
        }
    }
    v
}

/// The first credential material found in `text` (named `what`), with the line around it.
pub fn leak(what: &str, text: &str) -> Option<String> {
    secret_needles()
        .into_iter()
        .find(|n| text.contains(n.as_str()))
        .map(|n| format!("{what} leaks secret material {n:?}:\n{}", excerpt(text, &n)))
}

/// Panic if `text` (named `what`) contains any credential material.
pub fn assert_no_secrets(what: &str, text: &str) {
    if let Some(l) = leak(what, text) {
        panic!("{l}");
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    let start = text[..i].rfind('\n').map_or(0, |n| n + 1);
    let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
    text[start..end].chars().take(600).collect()
}
