//! Secrets, ServiceAccounts and Namespaces read from manifests (JSON values) into index entries.

pub use crate::engine::index::parse_managed;
use crate::engine::index::{ClusterIndex, SecretInfo, ServiceAccountInfo};
use crate::engine::policy::NamespaceOverrides;
use crate::manifests::{Document, Problem};
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Why an object could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object's shape is wrong.
    #[error("{kind} {name:?}: {message}")]
    Shape {
        /// Kind.
        kind: &'static str,
        /// Name (or empty).
        name: String,
        /// What is wrong (never includes secret data).
        message: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ObjMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    creation_timestamp: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn meta_of(kind: &'static str, v: &serde_json::Value) -> Result<ObjMeta, ObjectError> {
    match v.get("metadata") {
        None | Some(serde_json::Value::Null) => Ok(ObjMeta::default()),
        // Shape errors only: metadata never carries secret data.
        Some(m) => ObjMeta::deserialize(m).map_err(|e| ObjectError::Shape {
            kind,
            name: String::new(),
            message: format!("metadata: {e}"),
        }),
    }
}

/// Seconds since the epoch of an RFC 3339 timestamp.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// Read a Secret manifest: `data` (base64) and `stringData` are decoded, parsed to keys, and dropped.
pub fn secret_from_value(
    v: &serde_json::Value,
    default_ns: &str,
) -> Result<SecretInfo, ObjectError> {
    let meta = meta_of("Secret", v)?;
    let name = meta.name;
    let shape = |message: String| ObjectError::Shape {
        kind: "Secret",
        name: name.clone(),
        message,
    };
    let secret_type = match v.get("type") {
        None | Some(serde_json::Value::Null) => "Opaque",
        Some(serde_json::Value::String(t)) => t.as_str(),
        Some(_) => return Err(shape("type must be a string".to_owned())),
    };
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let Some(map) = v.get("data").filter(|d| !d.is_null()) {
        let map = map
            .as_object()
            .ok_or_else(|| shape("data must be a map".to_owned()))?;
        for (k, val) in map {
            let text = val
                .as_str()
                .ok_or_else(|| shape(format!("data[{k:?}] must be a base64 string")))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| shape(format!("data[{k:?}] is not valid base64")))?;
            data.insert(k.clone(), bytes);
        }
    }
    if let Some(map) = v.get("stringData").filter(|d| !d.is_null()) {
        let map = map
            .as_object()
            .ok_or_else(|| shape("stringData must be a map".to_owned()))?;
        for (k, val) in map {
            let text = val
                .as_str()
                .ok_or_else(|| shape(format!("stringData[{k:?}] must be a string")))?;
            data.insert(k.clone(), text.as_bytes().to_vec());
        }
    }
    let ns = meta.namespace.as_deref().unwrap_or(default_ns);
    let created = meta.creation_timestamp.as_deref().and_then(parse_timestamp);
    Ok(SecretInfo::new(
        ns,
        &name,
        secret_type,
        created,
        meta.resource_version,
        &data,
    ))
}

/// Read a ServiceAccount manifest.
pub fn service_account_from_value(
    v: &serde_json::Value,
    default_ns: &str,
) -> Result<(String, ServiceAccountInfo), ObjectError> {
    let meta = meta_of("ServiceAccount", v)?;
    #[derive(Deserialize)]
    struct Ref {
        #[serde(default)]
        name: String,
    }
    let refs: Vec<Ref> = match v.get("imagePullSecrets") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(r) => Vec::<Ref>::deserialize(r).map_err(|e| ObjectError::Shape {
            kind: "ServiceAccount",
            name: meta.name.clone(),
            message: format!("imagePullSecrets: {e}"),
        })?,
    };
    let annotations = meta.annotations.unwrap_or_default();
    let labels = meta.labels.unwrap_or_default();
    let info = ServiceAccountInfo::new(
        meta.name,
        refs.into_iter().map(|r| r.name),
        &annotations,
        labels,
    );
    Ok((
        meta.namespace.unwrap_or_else(|| default_ns.to_owned()),
        info,
    ))
}

/// Read a Namespace manifest: its name and `pullgate.io/*` overrides.
pub fn namespace_from_value(
    v: &serde_json::Value,
) -> Result<(String, NamespaceOverrides), ObjectError> {
    let meta = meta_of("Namespace", v)?;
    Ok((
        meta.name,
        NamespaceOverrides::from_labels(&meta.labels.unwrap_or_default()),
    ))
}

/// The index formed by the Secrets, ServiceAccounts and Namespaces among `docs`; errors name their document.
pub fn index_documents(docs: &[Document], default_ns: &str) -> (ClusterIndex, Vec<Problem>) {
    let mut idx = ClusterIndex::new();
    let errors = docs
        .iter()
        .filter_map(|d| index_document(&mut idx, d, default_ns).err())
        .collect();
    (idx, errors)
}

/// Add `d` to `idx` if it is a Secret, ServiceAccount or Namespace; the error names the document.
pub fn index_document(
    idx: &mut ClusterIndex,
    d: &Document,
    default_ns: &str,
) -> Result<(), Problem> {
    let res = match d.kind() {
        "Secret" => secret_from_value(&d.value, default_ns).map(|s| idx.upsert_secret(s)),
        "ServiceAccount" => service_account_from_value(&d.value, default_ns)
            .map(|(ns, sa)| idx.upsert_service_account(&ns, sa)),
        "Namespace" => namespace_from_value(&d.value).map(|(n, o)| idx.upsert_namespace(&n, o)),
        _ => Ok(()),
    };
    res.map_err(|e| Problem {
        file: d.source.clone(),
        document: Some(d.index),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLANTED: &str = "pl4nted-S3cret-pw";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn secret_from_data_and_string_data() {
        let cfg = format!(
            r#"{{"auths":{{"registry.example.com:5000":{{"auth":"{}"}}}}}}"#,
            b64(&format!("u:{PLANTED}"))
        );
        let v = json!({"kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "regcred", "namespace": "ns", "creationTimestamp": "2026-01-02T03:04:05Z"},
            "data": {".dockerconfigjson": b64(&cfg)}});
        let s = secret_from_value(&v, "default").unwrap();
        assert_eq!((&*s.namespace, &*s.name), ("ns", "regcred"));
        assert_eq!(s.created, Some(1_767_323_045));
        let keys: Vec<_> = s.usable_keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(keys, ["registry.example.com:5000"]);
        assert!(!format!("{s:?}").contains(PLANTED));

        let v = json!({"kind": "Secret", "type": "kubernetes.io/dockerconfigjson", "metadata": {"name": "sd"},
            "stringData": {".dockerconfigjson": cfg}});
        let s = secret_from_value(&v, "default").unwrap();
        assert_eq!(&*s.namespace, "default");
        assert_eq!(s.usable_keys().count(), 1);
        assert!(!format!("{s:?}").contains(PLANTED));
    }

    #[test]
    fn malformed_secret_manifests_are_errors_without_data() {
        for v in [
            json!({"metadata": {"name": "x"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "%%%not-base64"}}),
            json!({"metadata": {"name": "x"}, "data": ["a"]}),
            json!({"metadata": {"name": "x"}, "data": {"a": 5}}),
            json!({"metadata": {"name": "x"}, "type": 7}),
            json!({"metadata": "x"}),
            json!({"metadata": {"name": "x"}, "stringData": {"a": PLANTED.len()}}),
        ] {
            let e = secret_from_value(&v, "d").expect_err("should fail");
            assert!(!e.to_string().contains(PLANTED));
        }
    }

    #[test]
    fn service_account_and_namespace() {
        let v = json!({"metadata": {"name": "builder", "namespace": "ci",
            "annotations": {"pullgate.io/managed-pull-secrets": "a, b", "pullgate.io/inject": "false"}},
            "imagePullSecrets": [{"name": "a"}, {"name": ""}, {}]});
        let (ns, sa) = service_account_from_value(&v, "default").unwrap();
        assert_eq!(ns, "ci");
        assert_eq!(sa.image_pull_secrets, ["a"]);
        assert_eq!(sa.managed, ["a", "b"]);
        assert!(sa.inject_opt_out);
        assert!(service_account_from_value(&json!({"imagePullSecrets": "x"}), "d").is_err());

        let (n, o) = namespace_from_value(
            &json!({"metadata": {"name": "ci", "labels": {"pullgate.io/validation": "deny"}}}),
        )
        .unwrap();
        assert_eq!(n, "ci");
        assert_eq!(o.validation, Some(crate::engine::policy::Validation::Deny));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:10Z"), Some(10));
        assert_eq!(
            parse_timestamp("2026-11-29T01:00:00+01:00"),
            parse_timestamp("2026-11-29T00:00:00Z")
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
