//! `pullgate check --verify`: probe the pull secrets of the input files, whose data is right
//! there, before the engine evaluates the workloads against them.

use super::flow::Verdict;
use super::prober::Verifier;
use super::service::SecretData;
use super::targets_of;
use crate::engine::index::{CredentialStatus, SecretVerification};
use crate::engine::policy::Policy;
use crate::engine::pullsecret::credentials_for;
use crate::manifests::Document;
use crate::store::objects::secret_from_value;
use base64::Engine as _;
use std::collections::BTreeMap;

/// The verification of one secret of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSecret {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The result, as the index records it.
    pub verification: SecretVerification,
    /// The verdict per registry key, with its explanation.
    pub verdicts: BTreeMap<String, Verdict>,
}

/// The decoded `data` and `stringData` of a Secret manifest. (store::objects decodes the same
/// way but keeps only the parsed keys; this copy lives only for the probe.)
fn secret_data(v: &serde_json::Value) -> SecretData {
    let mut data = SecretData(BTreeMap::new());
    if let Some(map) = v.get("data").and_then(|d| d.as_object()) {
        for (k, val) in map {
            if let Some(bytes) = val.as_str().and_then(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t.trim())
                    .ok()
            }) {
                data.0.insert(k.clone(), bytes);
            }
        }
    }
    if let Some(map) = v.get("stringData").and_then(|d| d.as_object()) {
        for (k, val) in map {
            if let Some(text) = val.as_str() {
                data.0.insert(k.clone(), text.as_bytes().to_vec());
            }
        }
    }
    data
}

/// Probe every pull secret among `docs` that covers a private registry of the policy (in a
/// namespace the policy does not exclude), all registries at once within their limits.
pub async fn verify_documents(
    docs: &[Document],
    policy: &Policy,
    default_ns: &str,
    verifier: &Verifier,
) -> Vec<VerifiedSecret> {
    let secrets = docs
        .iter()
        .filter(|d| d.kind() == "Secret")
        .filter_map(|d| {
            // Unreadable secrets are reported by the check itself.
            let info = secret_from_value(&d.value, default_ns).ok()?;
            let keys: Vec<_> = targets_of(&info, policy).into_iter().cloned().collect();
            (!keys.is_empty()).then_some((d, info, keys))
        });
    let probes = secrets.map(|(doc, info, keys)| async move {
        let mut verdicts = BTreeMap::new();
        for key in &keys {
            let read = || async {
                let data = secret_data(&doc.value);
                credentials_for(&info.secret_type, &data.0, key)
                    .map_err(|e| Verdict::new(CredentialStatus::Unsupported, e.to_string()))
            };
            let verdict = verifier.probe(key, read).await.unwrap_or_else(|v| v);
            verdicts.insert(key.as_str().to_owned(), verdict);
        }
        VerifiedSecret {
            namespace: info.namespace.to_string(),
            name: info.name.to_string(),
            verification: SecretVerification {
                resource_version: info.resource_version.clone(),
                verified_at: jiff::Timestamp::now().as_second(),
                keys: verdicts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.status))
                    .collect(),
            },
            verdicts,
        }
    });
    futures::future::join_all(probes).await
}
