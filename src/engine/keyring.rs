//! TEMPORARY STUB (replaced by the real module).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryKey {
    s: String,
}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad key")]
pub struct KeyError;
impl RegistryKey {
    pub fn parse(raw: &str) -> Result<RegistryKey, KeyError> {
        Ok(RegistryKey { s: raw.to_owned() })
    }
    pub fn as_str(&self) -> &str {
        &self.s
    }
    pub fn host(&self) -> &str {
        &self.s
    }
    pub fn hostname(&self) -> &str {
        &self.s
    }
    pub fn port(&self) -> Option<&str> {
        None
    }
    pub fn path(&self) -> &str {
        ""
    }
    pub fn is_glob(&self) -> bool {
        false
    }
    pub fn matches(&self, t: &MatchTarget<'_>) -> bool {
        t.name.starts_with(&self.s)
    }
    pub fn near_miss(&self, _t: &MatchTarget<'_>) -> Option<NearMiss> {
        None
    }
}
pub struct MatchTarget<'a> {
    name: &'a str,
}
impl<'a> MatchTarget<'a> {
    pub fn new(name: &'a str) -> Self {
        MatchTarget { name }
    }
    pub fn name(&self) -> &'a str {
        self.name
    }
    pub fn host(&self) -> &'a str {
        self.name.split('/').next().unwrap_or("")
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NearMiss {
    Port {
        key: Option<String>,
        image: Option<String>,
    },
    Path {
        key_path: String,
        image_path: String,
    },
    Case,
    LabelCount,
}
pub fn is_default_registry_match(_n: &str) -> bool {
    false
}
