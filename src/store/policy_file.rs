//! The policy file's text read into the engine's [`Policy`]: the YAML reader lives with the
//! manifest reader, above the engine, so that the engine reads no file format.

use crate::engine::policy::{Policy, PolicyError, MAX_POLICY_BYTES};

impl Policy {
    /// Parse a policy from YAML (or JSON) text, naming the path of any bad field.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge { size: text.len() });
        }
        let value: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            crate::manifests::yaml_to_value(text).map_err(PolicyError::Yaml)?
        };
        Policy::from_value(value)
    }
}
