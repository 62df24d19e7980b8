//! TEMPORARY STUB (replaced by the real module).
use super::keyring::{KeyError, RegistryKey};
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub raw: String,
    pub key: Result<RegistryKey, KeyError>,
    pub has_credentials: bool,
}
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullSecretKeys {
    pub entries: Vec<KeyEntry>,
    pub ignored_helpers: Vec<String>,
}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad payload")]
pub struct PayloadError;
impl PayloadError {
    pub fn is_fatal(&self) -> bool {
        true
    }
}
pub fn parse_pull_secret(
    _t: &str,
    _d: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<PullSecretKeys, PayloadError> {
    Ok(PullSecretKeys::default())
}
