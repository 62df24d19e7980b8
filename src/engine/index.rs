//! The in-memory cluster index the engine reads: pull secrets (keys only), ServiceAccounts and
//! namespace overrides, with the cross-namespace lookups diagnostics need. Pure data, no I/O.

use crate::engine::keyring::{is_default_registry_match, keys_cover, MatchTarget, RegistryKey};
use crate::engine::policy::NamespaceOverrides;
use crate::engine::pullsecret::{
    parse_pull_secret, PayloadError, PullSecretKeys, DOCKERCFG_TYPE, DOCKER_CONFIG_JSON_TYPE,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Annotation on a ServiceAccount listing the pull secrets pullgate added (so only those are ever removed).
pub const MANAGED_ANNOTATION: &str = "pullgate.io/managed-pull-secrets";

/// A secret as the index keeps it: metadata and parsed registry keys, never credential data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// Namespace (in an index: the one copy of the name its tables share).
    pub namespace: Arc<str>,
    /// Name (in an index: one copy per distinct name, shared by every namespace using it).
    pub name: Arc<str>,
    /// `type` of the secret (the pull types are not copied per secret: there is one per secret).
    pub secret_type: Cow<'static, str>,
    /// Creation time, seconds since the Unix epoch.
    pub created: Option<i64>,
    /// resourceVersion, when read from an API server.
    pub resource_version: Option<String>,
    /// Parsed registry keys, or why the payload is unusable (pull-secret types only). In an
    /// index, equal keys are one shared copy: secrets replicated across namespaces, or created
    /// for the same registries, name the same few keys (see [`ClusterIndex::upsert_secret`]).
    pub payload: Result<Arc<PullSecretKeys>, Box<PayloadError>>,
}

impl SecretInfo {
    /// Build from a secret's metadata and decoded data; the data is parsed and then dropped.
    pub fn new(
        namespace: &str,
        name: &str,
        secret_type: &str,
        created: Option<i64>,
        resource_version: Option<String>,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Self {
        let payload = if is_pull_type(secret_type) {
            parse_pull_secret(secret_type, data)
                .map(Arc::new)
                .map_err(Box::new)
        } else {
            Ok(Arc::default())
        };
        SecretInfo {
            namespace: Arc::from(namespace),
            name: Arc::from(name),
            secret_type: match secret_type {
                DOCKER_CONFIG_JSON_TYPE => Cow::Borrowed(DOCKER_CONFIG_JSON_TYPE),
                DOCKERCFG_TYPE => Cow::Borrowed(DOCKERCFG_TYPE),
                other => Cow::Owned(other.to_owned()),
            },
            created,
            resource_version,
            payload,
        }
    }

    /// Whether the type is one the kubelet reads pull credentials from.
    pub fn is_pull_type(&self) -> bool {
        is_pull_type(&self.secret_type)
    }

    /// Whether the type is the deprecated `kubernetes.io/dockercfg`.
    pub fn is_dockercfg(&self) -> bool {
        self.secret_type == DOCKERCFG_TYPE
    }

    /// Whether the kubelet would find credentials for the image in this secret alone: a key
    /// matches it, or the Docker Hub fallback applies ([`keys_cover`], the keyring's own rule).
    pub fn covers(&self, target: &MatchTarget<'_>) -> bool {
        keys_cover(self.usable_keys(), target)
    }

    /// The keys the kubelet would use from this secret (none when the payload is unusable).
    pub fn usable_keys(&self) -> impl Iterator<Item = &crate::engine::keyring::RegistryKey> {
        self.payload
            .as_ref()
            .ok()
            .filter(|_| self.is_pull_type())
            .into_iter()
            .flat_map(|p| p.entries.iter())
            .filter_map(|e| e.key.as_ref().ok())
    }
}

/// A secret of a type the kubelet reads no pull credentials from, as an index keeps it: its
/// name and, when known, its type; never anything of its data. A pod naming it gets
/// `WrongSecretType` rather than `SecretNotFound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherSecret {
    /// Name.
    pub name: Arc<str>,
    /// `type`; `None` when the index only knows that it is not a pull type (the cluster store
    /// reads such secrets' metadata only, which does not carry the type).
    pub secret_type: Option<Cow<'static, str>>,
}

/// Whether a secret type carries pull credentials.
pub fn is_pull_type(secret_type: &str) -> bool {
    secret_type == DOCKER_CONFIG_JSON_TYPE || secret_type == DOCKERCFG_TYPE
}

/// A ServiceAccount as the index keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAccountInfo {
    /// Name.
    pub name: String,
    /// imagePullSecrets names, in order.
    pub image_pull_secrets: Vec<String>,
    /// Names pullgate added (from [`MANAGED_ANNOTATION`]).
    pub managed: Vec<String>,
    /// `pullgate.io/inject: "false"`.
    pub inject_opt_out: bool,
    /// Labels (for the reconciler's selector).
    pub labels: BTreeMap<String, String>,
}

impl ServiceAccountInfo {
    /// Build from an object's parts: imagePullSecrets names (empty ones dropped), annotations, labels.
    pub fn new(
        name: String,
        pull_secrets: impl IntoIterator<Item = String>,
        annotations: &BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) -> Self {
        ServiceAccountInfo {
            name,
            image_pull_secrets: pull_secrets.into_iter().filter(|n| !n.is_empty()).collect(),
            managed: parse_managed(annotations.get(MANAGED_ANNOTATION).map(String::as_str)),
            inject_opt_out: annotations
                .get(crate::engine::podview::INJECT_ANNOTATION)
                .is_some_and(|v| v.eq_ignore_ascii_case("false")),
            labels,
        }
    }
}

/// The managed-secrets annotation: a comma-separated list of names.
pub fn parse_managed(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// A value that carries its own object name, by which a [`NameMap`] keys it.
pub trait Named {
    /// The object's name.
    fn name(&self) -> &str;
}

impl Named for SecretInfo {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for OtherSecret {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for ServiceAccountInfo {
    fn name(&self) -> &str {
        &self.name
    }
}

/// A small map from object name to value, kept as one vector sorted by the values' own names: a
/// namespace holds a handful of secrets and ServiceAccounts, and a B-tree node per map (or a
/// second copy of every name as a key) would cost more than the objects at 10,000 namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameMap<V> {
    entries: Vec<V>,
}

impl<V> Default for NameMap<V> {
    fn default() -> Self {
        NameMap {
            entries: Vec::new(),
        }
    }
}

#[cfg(test)]
impl<V: Named> std::ops::Index<&str> for NameMap<V> {
    type Output = V;
    /// Panics when absent, like `BTreeMap`'s indexing: for tests, on names they inserted.
    fn index(&self, name: &str) -> &V {
        match self.get(name) {
            Some(v) => v,
            None => panic!("no entry named {name:?}"),
        }
    }
}

impl<V: Named> NameMap<V> {
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|v| v.name().cmp(name))
    }

    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.position(name).ok().and_then(|i| self.entries.get(i))
    }

    /// Whether `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Insert, or replace the value of the same name; returns the previous value.
    pub fn insert(&mut self, value: V) -> Option<V> {
        match self.position(value.name()) {
            Ok(i) => self.entries.get_mut(i).map(|e| std::mem::replace(e, value)),
            Err(i) => {
                // Exact capacity: maps are small and long-lived.
                self.entries.reserve_exact(1);
                self.entries.insert(i, value);
                None
            }
        }
    }

    /// Remove `name`; returns its value.
    pub fn remove(&mut self, name: &str) -> Option<V> {
        let i = self.position(name).ok()?;
        let v = self.entries.remove(i);
        if self.entries.capacity() > self.entries.len() * 2 {
            self.entries.shrink_to_fit();
        }
        Some(v)
    }

    /// Names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(Named::name)
    }
}

impl<V> NameMap<V> {
    /// Values in name order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One namespace's view: what the engine needs to decide for a pod there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Overrides from the namespace's labels.
    pub overrides: NamespaceOverrides,
    /// Pull secrets by name.
    pub secrets: NameMap<SecretInfo>,
    /// Secrets of other types by name (names and types only).
    pub other_secrets: NameMap<OtherSecret>,
    /// ServiceAccounts by name.
    pub service_accounts: NameMap<ServiceAccountInfo>,
}

impl NamespaceInfo {
    /// Pull secrets, newest first (ties by name), the order injection uses.
    pub fn pull_secrets_newest_first(&self) -> Vec<&SecretInfo> {
        let mut v: Vec<&SecretInfo> = self.secrets.values().filter(|s| s.is_pull_type()).collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
        v
    }
}

/// Candidates [`ClusterIndex::covering_elsewhere`] examines at most. Its answer is only a hint
/// for a pod that is already failing, and without a bound one such pod costs a walk over every
/// secret in the cluster with a key for the image's host (~1 ms per 1,000 namespaces when each
/// has its own path on one registry, as per-tenant keys do).
pub const MAX_ELSEWHERE_CANDIDATES: usize = 64;

/// Pull secrets of other namespaces that cover an image.
#[derive(Debug)]
pub struct Elsewhere<'a> {
    /// The covering secrets found.
    pub found: Vec<&'a SecretInfo>,
    /// False when [`MAX_ELSEWHERE_CANDIDATES`] were examined and more were left, so that an
    /// empty `found` does not mean that no other namespace has one.
    pub exhaustive: bool,
}

/// A secret somewhere in the cluster: (namespace, name).
pub type SecretRef = (String, String);

/// What a registry made of a credential when pullgate last verified it (`verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialStatus {
    /// The registry accepted the credential (or its token realm issued a token for it).
    Valid,
    /// The registry (or its realm) answered 401/403 to the credential.
    Rejected,
    /// Network or TLS failure, timeout or 5xx: nothing is known about the credential.
    Unreachable,
    /// The registry's answer cannot judge the credential (no auth required, unknown scheme, redirect elsewhere).
    Unsupported,
}

impl CredentialStatus {
    /// Every status, in metric-label order.
    pub const ALL: [CredentialStatus; 4] = [
        CredentialStatus::Valid,
        CredentialStatus::Rejected,
        CredentialStatus::Unreachable,
        CredentialStatus::Unsupported,
    ];

    /// The status as it appears in metrics, events and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Valid => "valid",
            CredentialStatus::Rejected => "rejected",
            CredentialStatus::Unreachable => "unreachable",
            CredentialStatus::Unsupported => "unsupported",
        }
    }
}

/// The verification of one secret's credentials at one resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVerification {
    /// The secret's resourceVersion when its data was read for the probe.
    pub resource_version: Option<String>,
    /// When it was verified, seconds since the Unix epoch.
    pub verified_at: i64,
    /// Outcome per registry key (the normalised key, as [`RegistryKey::as_str`] gives it).
    ///
    /// [`RegistryKey::as_str`]: crate::engine::keyring::RegistryKey::as_str
    pub keys: BTreeMap<String, CredentialStatus>,
}

/// The whole cluster's view, indexed for O(1) namespace lookups and cheap cross-namespace queries.
#[derive(Debug, Clone, Default)]
pub struct ClusterIndex {
    /// By name; each key is the one copy of the name that the cross-namespace tables share.
    namespaces: HashMap<Arc<str>, NamespaceInfo>,
    /// Secret name -> namespaces holding a secret of that name. Each key is the one copy of the
    /// secret name that `by_host` and `globbed` share (a replicated secret has the same name in
    /// thousands of namespaces).
    by_name: HashMap<Arc<str>, BTreeSet<Arc<str>>>,
    /// [`host_key`] of the hostname and port URLsMatch compares -> pull secrets with a non-glob
    /// key for them: such a key only matches images with exactly that hostname and port.
    by_host: HashMap<Box<[u8]>, BTreeSet<Held>>,
    /// Pull secrets with a glob key (few in practice; checked one by one).
    globbed: BTreeSet<Held>,
    /// Lower-cased hostname of every non-glob key -> how many keys name it: the registries the
    /// cluster's pull secrets show to be private, whatever port, path or case a key gives.
    hostnames: HashMap<Box<[u8]>, u32>,
    secrets: usize,
    other_secrets: usize,
    service_accounts: usize,
    /// The ServiceAccount label keys kept ([`ClusterIndex::keeping_labels`]); all when `None`.
    kept_labels: Option<Arc<BTreeSet<String>>>,
    /// One copy of each distinct set of keys the indexed pull secrets hold, shared by them all:
    /// ~0.3 KiB per secret otherwise, when most secrets name the same few registries.
    payloads: HashSet<Arc<PullSecretKeys>>,
}

/// Which pull secret, if any, shows a registry host to be private ([`ClusterIndex::host_claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostClaim<'a> {
    /// A secret of the pod's own namespace has a key for the host.
    Here(&'a SecretInfo),
    /// Only secrets of other namespaces do.
    Elsewhere,
    /// No pull secret of the cluster names the host.
    None,
}

/// A secret as the cross-namespace tables hold it: (namespace, name), both shared with the keys
/// of `namespaces` and `by_name`, so that a reference costs no allocation.
type Held = (Arc<str>, Arc<str>);

/// The `by_host` key of a hostname and port: a host never holds a '/', so they cannot run together.
fn host_key(hostname: &[u8], port: &[u8]) -> Box<[u8]> {
    let mut key = Vec::with_capacity(hostname.len() + 1 + port.len());
    key.extend_from_slice(hostname);
    key.push(b'/');
    key.extend_from_slice(port);
    key.into_boxed_slice()
}

static EMPTY_NAMESPACE: std::sync::LazyLock<NamespaceInfo> =
    std::sync::LazyLock::new(NamespaceInfo::default);

impl ClusterIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty index that keeps only these ServiceAccount label keys (the reconciler's selector
    /// reads labels, nothing else does). Helm gives every ServiceAccount it creates five or so
    /// labels, which would otherwise cost a few hundred bytes per ServiceAccount.
    pub fn keeping_labels(keys: BTreeSet<String>) -> Self {
        ClusterIndex {
            kept_labels: Some(Arc::new(keys)),
            ..Self::default()
        }
    }

    /// The view of a namespace (empty when nothing is known of it).
    pub fn namespace(&self, name: &str) -> &NamespaceInfo {
        self.namespaces.get(name).unwrap_or(&EMPTY_NAMESPACE)
    }

    /// Names of the namespaces known.
    pub fn namespace_names(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(|k| &**k)
    }

    /// Number of pull secrets indexed.
    pub fn secret_count(&self) -> usize {
        self.secrets
    }

    /// Number of secrets of other types indexed (by name).
    pub fn other_secret_count(&self) -> usize {
        self.other_secrets
    }

    /// Number of ServiceAccounts indexed.
    pub fn service_account_count(&self) -> usize {
        self.service_accounts
    }

    /// Number of namespaces indexed.
    pub fn namespace_count(&self) -> usize {
        self.namespaces.len()
    }

    /// Namespaces other than `except` that hold a secret named `name`.
    pub fn namespaces_with_secret<'a>(
        &'a self,
        name: &str,
        except: &'a str,
    ) -> impl Iterator<Item = &'a str> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|ns| &**ns)
            .filter(move |ns| *ns != except)
    }

    /// Well-formed pull secrets outside `except` whose keys cover the image name (at most `limit`,
    /// among the first [`MAX_ELSEWHERE_CANDIDATES`] candidates).
    pub fn secrets_covering_elsewhere(
        &self,
        target: &MatchTarget<'_>,
        except: &str,
        limit: usize,
    ) -> Vec<&SecretInfo> {
        self.covering_elsewhere(target, except, limit).found
    }

    /// [`ClusterIndex::secrets_covering_elsewhere`], and whether the walk was cut short.
    pub fn covering_elsewhere(
        &self,
        target: &MatchTarget<'_>,
        except: &str,
        limit: usize,
    ) -> Elsewhere<'_> {
        let exact = target
            .host_and_port()
            .and_then(|(hostname, port)| self.by_host.get(&*host_key(hostname, port)))
            .into_iter()
            .flatten();
        // Docker Hub images are also covered by "index.docker.io" keys, through the fallback.
        let hub = is_default_registry_match(target.name())
            .then(|| self.by_host.get(&*host_key(b"index.docker.io", b"")))
            .flatten()
            .into_iter()
            .flatten();
        let mut candidates = exact
            .chain(hub)
            .chain(self.globbed.iter())
            .filter(|(ns, _)| &**ns != except);
        let mut found: Vec<&SecretInfo> = Vec::new();
        let mut examined = 0;
        while found.len() < limit {
            let Some((ns, name)) = candidates.next() else {
                break;
            };
            if examined == MAX_ELSEWHERE_CANDIDATES {
                return Elsewhere {
                    found,
                    exhaustive: false,
                };
            }
            examined += 1;
            if let Some(s) = self.namespace(ns).secrets.get(name) {
                // A secret with both an exact and a glob key is a candidate twice.
                let seen = || {
                    found
                        .iter()
                        .any(|o| o.namespace == s.namespace && o.name == s.name)
                };
                if s.covers(target) && !seen() {
                    found.push(s);
                }
            }
        }
        Elsewhere {
            found,
            exhaustive: true,
        }
    }

    /// Which pull secret shows that the image's registry host is private (a key for that host,
    /// any port, path or letter case): one of `namespace` if there is one, else whether any
    /// other namespace holds one.
    pub fn host_claim<'a>(&'a self, target: &MatchTarget<'_>, namespace: &str) -> HostClaim<'a> {
        let here = self
            .namespace(namespace)
            .secrets
            .values()
            .find(|s| s.usable_keys().any(|k| k.claims_host(target)));
        if let Some(s) = here {
            return HostClaim::Here(s);
        }
        let named = target.host_and_port().is_some_and(|(hostname, _)| {
            self.hostnames
                .contains_key(hostname.to_ascii_lowercase().as_slice())
        });
        let globbed = || {
            self.globbed.iter().any(|(ns, name)| {
                self.namespace(ns).secrets.get(name).is_some_and(|s| {
                    s.usable_keys()
                        .any(|k| k.is_glob() && k.claims_host(target))
                })
            })
        };
        if named || globbed() {
            HostClaim::Elsewhere
        } else {
            HostClaim::None
        }
    }

    /// [`ClusterIndex::host_claim`] for Docker Hub, whose keys name `docker.io` or
    /// `index.docker.io` while its images are all normalised to `docker.io`.
    pub fn docker_hub_claim<'a>(&'a self, namespace: &str) -> HostClaim<'a> {
        let hub = |k: &RegistryKey| {
            k.host_and_port().is_some_and(|(h, _)| {
                h.eq_ignore_ascii_case(b"docker.io") || h.eq_ignore_ascii_case(b"index.docker.io")
            })
        };
        let here = self
            .namespace(namespace)
            .secrets
            .values()
            .find(|s| s.usable_keys().any(hub));
        if let Some(s) = here {
            HostClaim::Here(s)
        } else if self.hostnames.contains_key(&b"docker.io"[..])
            || self.hostnames.contains_key(&b"index.docker.io"[..])
        {
            HostClaim::Elsewhere
        } else {
            HostClaim::None
        }
    }

    /// Add or replace a secret. A secret of another type keeps only its name and type.
    pub fn upsert_secret(&mut self, mut secret: SecretInfo) {
        if !secret.is_pull_type() {
            let other = OtherSecret {
                name: secret.name,
                secret_type: Some(secret.secret_type),
            };
            self.upsert_other_secret(&secret.namespace, other);
            return;
        }
        self.remove_secret(&secret.namespace, &secret.name);
        // One object per name: a secret recreated under a pull type replaces the other one.
        self.remove_other_secret(&secret.namespace, &secret.name);
        let ns = self.namespace_entry(&secret.namespace).0;
        let name = self
            .by_name
            .get_key_value(&*secret.name)
            .map_or_else(|| Arc::clone(&secret.name), |(k, _)| Arc::clone(k));
        self.by_name
            .entry(Arc::clone(&name))
            .or_default()
            .insert(Arc::clone(&ns));
        let held = (ns, name);
        for key in secret.usable_keys() {
            if key.is_glob() {
                self.globbed.insert(held.clone());
            } else if let Some((hostname, port)) = key.host_and_port() {
                self.by_host
                    .entry(host_key(hostname, port))
                    .or_default()
                    .insert(held.clone());
                *self
                    .hostnames
                    .entry(hostname.to_ascii_lowercase().into_boxed_slice())
                    .or_default() += 1;
            }
        }
        self.secrets += 1;
        // The secret keeps the tables' copies of its names instead of its own.
        secret.namespace = Arc::clone(&held.0);
        secret.name = held.1;
        if let Ok(keys) = &mut secret.payload {
            match self.payloads.get(&**keys) {
                Some(shared) => *keys = Arc::clone(shared),
                None => {
                    self.payloads.insert(Arc::clone(keys));
                }
            }
        }
        self.namespace_entry(&secret.namespace)
            .1
            .secrets
            .insert(secret);
    }

    /// A namespace's entry, created if need be, and the one copy of its name the tables share.
    fn namespace_entry(&mut self, name: &str) -> (Arc<str>, &mut NamespaceInfo) {
        let key = self
            .namespaces
            .get_key_value(name)
            .map_or_else(|| Arc::from(name), |(k, _)| Arc::clone(k));
        let info = self.namespaces.entry(Arc::clone(&key)).or_default();
        (key, info)
    }

    /// Remove a secret; returns it if it was known.
    pub fn remove_secret(&mut self, namespace: &str, name: &str) -> Option<SecretInfo> {
        let old = self.namespaces.get_mut(namespace)?.secrets.remove(name)?;
        self.secrets -= 1;
        if let Some(set) = self.by_name.get_mut(name) {
            set.remove(namespace);
            if set.is_empty() {
                self.by_name.remove(name);
            }
        }
        // The secret holds the tables' own copies of its names (see upsert_secret).
        let held = (Arc::clone(&old.namespace), Arc::clone(&old.name));
        for key in old.usable_keys() {
            if key.is_glob() {
                self.globbed.remove(&held);
            } else if let Some((hostname, port)) = key.host_and_port() {
                let host = host_key(hostname, port);
                if let Some(set) = self.by_host.get_mut(&host) {
                    set.remove(&held);
                    if set.is_empty() {
                        self.by_host.remove(&host);
                    }
                }
                let lower = hostname.to_ascii_lowercase();
                if let Some(n) = self.hostnames.get_mut(lower.as_slice()) {
                    *n -= 1;
                    if *n == 0 {
                        self.hostnames.remove(lower.as_slice());
                    }
                }
            }
        }
        // Forget keys no other secret holds: the table's copy and `old`'s are the last two. (A
        // copy held outside the index only stops being shared with later secrets.)
        if let Ok(keys) = &old.payload {
            if Arc::strong_count(keys) <= 2 {
                self.payloads.remove(&**keys);
            }
        }
        self.prune(namespace);
        Some(old)
    }

    /// Add or replace a secret of a type that is not a pull type (one replaces a pull secret of
    /// the same name: the secret was recreated under another type).
    pub fn upsert_other_secret(&mut self, namespace: &str, secret: OtherSecret) {
        self.remove_secret(namespace, &secret.name);
        if self
            .namespace_entry(namespace)
            .1
            .other_secrets
            .insert(secret)
            .is_none()
        {
            self.other_secrets += 1;
        }
    }

    /// Remove a secret of another type; returns it if it was known.
    pub fn remove_other_secret(&mut self, namespace: &str, name: &str) -> Option<OtherSecret> {
        let old = self
            .namespaces
            .get_mut(namespace)?
            .other_secrets
            .remove(name)?;
        self.other_secrets -= 1;
        self.prune(namespace);
        Some(old)
    }

    /// Add or replace a ServiceAccount (with only the label keys this index keeps).
    pub fn upsert_service_account(&mut self, namespace: &str, mut sa: ServiceAccountInfo) {
        if let Some(keep) = &self.kept_labels {
            // Collected anew rather than retained: an emptied B-tree keeps its ~0.5 KiB root node.
            sa.labels = std::mem::take(&mut sa.labels)
                .into_iter()
                .filter(|(k, _)| keep.contains(k))
                .collect();
        }
        let ns = self.namespace_entry(namespace).1;
        if ns.service_accounts.insert(sa).is_none() {
            self.service_accounts += 1;
        }
    }

    /// Remove a ServiceAccount.
    pub fn remove_service_account(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> Option<ServiceAccountInfo> {
        let old = self
            .namespaces
            .get_mut(namespace)?
            .service_accounts
            .remove(name)?;
        self.service_accounts -= 1;
        self.prune(namespace);
        Some(old)
    }

    /// Set a namespace's overrides (from its labels).
    pub fn upsert_namespace(&mut self, name: &str, overrides: NamespaceOverrides) {
        self.namespace_entry(name).1.overrides = overrides;
        self.prune(name);
    }

    /// Forget a namespace's overrides (its objects go with their own deletions).
    pub fn remove_namespace(&mut self, name: &str) {
        if let Some(ns) = self.namespaces.get_mut(name) {
            ns.overrides = NamespaceOverrides::default();
        }
        self.prune(name);
    }

    /// Drop a namespace entry that holds nothing, keeping the map small.
    fn prune(&mut self, name: &str) {
        if self.namespaces.get(name).is_some_and(|n| {
            n.secrets.is_empty()
                && n.other_secrets.is_empty()
                && n.service_accounts.is_empty()
                && n.overrides == NamespaceOverrides::default()
        }) {
            self.namespaces.remove(name);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;

    /// A dockerconfigjson secret with the given registry keys (test helper).
    pub fn pull_secret(ns: &str, name: &str, keys: &[&str], created: i64) -> SecretInfo {
        let auths: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .map(|k| {
                let auth = base64::engine::general_purpose::STANDARD.encode("user:pw");
                ((*k).to_owned(), serde_json::json!({ "auth": auth }))
            })
            .collect();
        let payload = serde_json::json!({ "auths": auths }).to_string();
        let mut data = BTreeMap::new();
        data.insert(".dockerconfigjson".to_owned(), payload.into_bytes());
        SecretInfo::new(
            ns,
            name,
            DOCKER_CONFIG_JSON_TYPE,
            Some(created),
            None,
            &data,
        )
    }

    #[test]
    fn an_index_keeping_labels_drops_the_others() {
        let labels = BTreeMap::from([
            ("team".to_owned(), "payments".to_owned()),
            ("helm.sh/chart".to_owned(), "api-1.2.3".to_owned()),
            ("app.kubernetes.io/managed-by".to_owned(), "Helm".to_owned()),
        ]);
        let sa = || ServiceAccountInfo::new("api".into(), [], &BTreeMap::new(), labels.clone());
        let mut keeping = ClusterIndex::keeping_labels(BTreeSet::from(["team".to_owned()]));
        keeping.upsert_service_account("shop", sa());
        let kept = &keeping.namespace("shop").service_accounts["api"].labels;
        assert_eq!(
            kept,
            &BTreeMap::from([("team".to_owned(), "payments".to_owned())])
        );
        let mut none = ClusterIndex::keeping_labels(BTreeSet::new());
        none.upsert_service_account("shop", sa());
        assert!(none.namespace("shop").service_accounts["api"]
            .labels
            .is_empty());
        let mut all = ClusterIndex::new();
        all.upsert_service_account("shop", sa());
        assert_eq!(all.namespace("shop").service_accounts["api"].labels, labels);
    }

    #[test]
    fn equal_keys_are_one_shared_copy_until_no_secret_holds_them() {
        let keys = |idx: &ClusterIndex, ns: &str, name: &str| match &idx.namespace(ns).secrets[name]
            .payload
        {
            Ok(k) => Arc::clone(k),
            Err(e) => panic!("{e}"),
        };
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("a", "regcred", &["registry.example.com"], 1));
        idx.upsert_secret(pull_secret("b", "copy", &["registry.example.com"], 2));
        idx.upsert_secret(pull_secret("c", "other", &["quay.io"], 3));
        assert!(Arc::ptr_eq(
            &keys(&idx, "a", "regcred"),
            &keys(&idx, "b", "copy")
        ));
        assert!(!Arc::ptr_eq(
            &keys(&idx, "a", "regcred"),
            &keys(&idx, "c", "other")
        ));
        assert_eq!(idx.payloads.len(), 2);
        // A replacement with the same keys, then removals: the table keeps only what is held.
        idx.upsert_secret(pull_secret("a", "regcred", &["registry.example.com"], 4));
        assert!(Arc::ptr_eq(
            &keys(&idx, "a", "regcred"),
            &keys(&idx, "b", "copy")
        ));
        idx.remove_secret("a", "regcred");
        assert_eq!(idx.payloads.len(), 2);
        idx.remove_secret("b", "copy");
        assert_eq!(idx.payloads.len(), 1);
        idx.upsert_secret(pull_secret("c", "other", &["ghcr.io"], 5));
        assert_eq!(idx.payloads.len(), 1);
        assert_eq!(
            keys(&idx, "c", "other").entries[0]
                .key
                .as_ref()
                .map(|k| k.as_str()),
            Ok("ghcr.io")
        );
    }

    #[test]
    fn upsert_and_remove_keep_indexes_consistent() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("a", "regcred", &["registry.example.com"], 1));
        idx.upsert_secret(pull_secret(
            "b",
            "regcred",
            &["registry.example.com:5000"],
            2,
        ));
        idx.upsert_secret(pull_secret("c", "globby", &["*.example.com"], 3));
        assert_eq!(idx.secret_count(), 3);
        let names: Vec<_> = idx.namespaces_with_secret("regcred", "a").collect();
        assert_eq!(names, ["b"]);

        let t = MatchTarget::new("registry.example.com/app");
        let found: Vec<_> = idx
            .secrets_covering_elsewhere(&t, "z", 10)
            .iter()
            .map(|s| s.namespace.to_string())
            .collect();
        assert_eq!(found, ["a", "c"]);
        let t5000 = MatchTarget::new("registry.example.com:5000/app");
        let found: Vec<_> = idx
            .secrets_covering_elsewhere(&t5000, "z", 10)
            .iter()
            .map(|s| s.namespace.to_string())
            .collect();
        assert_eq!(found, ["b"]);

        // Replacing a secret re-indexes its keys.
        idx.upsert_secret(pull_secret("a", "regcred", &["quay.io"], 4));
        assert_eq!(idx.secret_count(), 3);
        assert!(idx
            .secrets_covering_elsewhere(&t, "z", 10)
            .iter()
            .all(|s| &*s.namespace != "a"));

        assert!(idx.remove_secret("c", "globby").is_some());
        assert!(idx.remove_secret("c", "globby").is_none());
        assert!(idx.secrets_covering_elsewhere(&t, "z", 10).is_empty());
        idx.remove_secret("a", "regcred");
        idx.remove_secret("b", "regcred");
        assert_eq!(idx.secret_count(), 0);
        assert_eq!(idx.namespace_count(), 0);
        assert_eq!(idx.namespaces_with_secret("regcred", "").count(), 0);
    }

    #[test]
    fn other_secrets_are_names_only_and_one_object_per_name() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(SecretInfo::new(
            "a",
            "regcred",
            "Opaque",
            Some(1),
            Some("9".into()),
            &BTreeMap::from([(".dockerconfigjson".to_owned(), b"{}".to_vec())]),
        ));
        assert_eq!((idx.secret_count(), idx.other_secret_count()), (0, 1));
        assert_eq!(
            idx.namespace("a").other_secrets.get("regcred"),
            Some(&OtherSecret {
                name: "regcred".into(),
                secret_type: Some(Cow::Borrowed("Opaque"))
            })
        );
        assert_eq!(
            idx.namespaces_with_secret("regcred", "b").count(),
            0,
            "copying a secret of another type helps no pod"
        );
        // Recreated as a pull secret, then as another type again: one object per name.
        idx.upsert_secret(pull_secret("a", "regcred", &["r.io"], 2));
        assert_eq!((idx.secret_count(), idx.other_secret_count()), (1, 0));
        idx.upsert_other_secret(
            "a",
            OtherSecret {
                name: "regcred".into(),
                secret_type: None,
            },
        );
        assert_eq!((idx.secret_count(), idx.other_secret_count()), (0, 1));
        assert!(idx.by_name.is_empty() && idx.by_host.is_empty());
        assert!(idx.remove_other_secret("a", "regcred").is_some());
        assert!(idx.remove_other_secret("a", "regcred").is_none());
        assert_eq!(idx.namespace_count(), 0);
    }

    #[test]
    fn covering_elsewhere_examines_a_bounded_number_of_candidates() {
        let mut idx = ClusterIndex::new();
        let tenants = MAX_ELSEWHERE_CANDIDATES + 10;
        for i in 0..tenants {
            let key = format!("harbor.example.com:8443/tenant-{i:03}");
            idx.upsert_secret(pull_secret(&format!("ns-{i:03}"), "harbor", &[&key], 1));
        }
        // Sorts after every tenant namespace, so the walk reaches it only without a bound.
        idx.upsert_secret(pull_secret("zz", "harbor", &["harbor.example.com:8443"], 1));
        let t = MatchTarget::new("harbor.example.com:8443/payments/api");
        let e = idx.covering_elsewhere(&t, "here", 3);
        assert!(e.found.is_empty() && !e.exhaustive);
        // A hit within the bound is found, and an exhausted walk says so.
        idx.upsert_secret(pull_secret("a", "harbor", &["harbor.example.com:8443"], 1));
        let e = idx.covering_elsewhere(&t, "here", 3);
        assert_eq!(e.found.len(), 1);
        let other_port = MatchTarget::new("harbor.example.com/payments/api");
        let e = idx.covering_elsewhere(&other_port, "here", 3);
        assert!(e.found.is_empty() && e.exhaustive);
    }

    #[test]
    fn exact_keys_are_found_by_the_host_and_port_urls_match_compares() {
        let mut idx = ClusterIndex::new();
        // A bare trailing colon is no port, as in Go: this key covers "quay.io/…".
        idx.upsert_secret(pull_secret("a", "colon", &["quay.io:"], 1));
        idx.upsert_secret(pull_secret("b", "v1", &["https://quay.io/v1/"], 1));
        let found: Vec<&str> = idx
            .secrets_covering_elsewhere(&MatchTarget::new("quay.io/x"), "z", 10)
            .iter()
            .map(|s| &*s.namespace)
            .collect();
        assert_eq!(found, ["a", "b"]);
        idx.remove_secret("a", "colon");
        idx.remove_secret("b", "v1");
        assert!(idx.by_host.is_empty());
    }

    #[test]
    fn service_accounts_and_namespaces() {
        let mut idx = ClusterIndex::new();
        idx.upsert_service_account(
            "a",
            ServiceAccountInfo {
                name: "default".into(),
                ..Default::default()
            },
        );
        idx.upsert_service_account(
            "a",
            ServiceAccountInfo {
                name: "default".into(),
                image_pull_secrets: vec!["x".into()],
                ..Default::default()
            },
        );
        assert_eq!(idx.service_account_count(), 1);
        assert_eq!(
            idx.namespace("a").service_accounts["default"].image_pull_secrets,
            ["x"]
        );
        idx.upsert_namespace(
            "a",
            NamespaceOverrides {
                inject: Some(false),
                validation: None,
            },
        );
        assert_eq!(idx.namespace("a").overrides.inject, Some(false));
        idx.remove_service_account("a", "default");
        idx.remove_namespace("a");
        assert_eq!(idx.namespace_count(), 0);
        assert!(idx.namespace("missing").secrets.is_empty());
    }

    #[test]
    fn newest_first_ordering() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("a", "old", &["r.io"], 1));
        idx.upsert_secret(pull_secret("a", "new", &["r.io"], 9));
        idx.upsert_secret(pull_secret("a", "mid", &["r.io"], 5));
        let names: Vec<_> = idx
            .namespace("a")
            .pull_secrets_newest_first()
            .iter()
            .map(|s| &*s.name)
            .collect();
        assert_eq!(names, ["new", "mid", "old"]);
    }

    fn key_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex("(\\*\\.)?(r|q)\\.io(:(5000|))?(/(a|b)){0,2}")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    proptest::proptest! {
        #[test]
        fn tables_equal_a_rebuild_after_any_changes(
            changes in proptest::collection::vec(
                (0..3usize, 0..4usize, proptest::collection::vec(key_strategy(), 0..3), proptest::bool::ANY),
                0..60,
            ),
        ) {
            let mut idx = ClusterIndex::new();
            for (ns, name, keys, remove) in &changes {
                let (ns, name) = (format!("ns-{ns}"), format!("s-{name}"));
                if *remove {
                    idx.remove_secret(&ns, &name);
                } else {
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    idx.upsert_secret(pull_secret(&ns, &name, &keys, 1));
                }
            }
            let mut rebuilt = ClusterIndex::new();
            for ns in idx.namespace_names() {
                for s in idx.namespace(ns).secrets.values() {
                    rebuilt.upsert_secret(s.clone());
                }
            }
            let tables = |i: &ClusterIndex| {
                let by_name: BTreeMap<String, Vec<String>> = i
                    .by_name
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.iter().map(|n| n.to_string()).collect()))
                    .collect();
                let by_host: BTreeMap<Vec<u8>, Vec<(String, String)>> = i
                    .by_host
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()))
                    .collect();
                let globbed: Vec<(String, String)> =
                    i.globbed.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
                (by_name, by_host, globbed, i.secret_count(), i.namespace_count())
            };
            proptest::prop_assert_eq!(tables(&idx), tables(&rebuilt));
        }

        #[test]
        fn covering_elsewhere_equals_a_scan_of_every_namespace(
            secrets in proptest::collection::vec(
                (0..4usize, 0..40usize, proptest::collection::vec(key_strategy(), 1..3)),
                0..120,
            ),
            image in "(r|q|x\\.r)\\.io(:5000)?(/(a|b)){1,2}",
            except in 0..4usize,
        ) {
            let mut idx = ClusterIndex::new();
            for (ns, name, keys) in &secrets {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                idx.upsert_secret(pull_secret(&format!("ns-{ns}"), &format!("s-{name}"), &keys, 1));
            }
            let except = format!("ns-{except}");
            let target = MatchTarget::new(&image);
            let mut want: Vec<(&str, &str)> = idx
                .namespace_names()
                .filter(|ns| *ns != except)
                .flat_map(|ns| idx.namespace(ns).secrets.values())
                .filter(|s| s.covers(&target))
                .map(|s| (&*s.namespace, &*s.name))
                .collect();
            want.sort_unstable();
            let e = idx.covering_elsewhere(&target, &except, usize::MAX);
            let mut got: Vec<(&str, &str)> =
                e.found.iter().map(|s| (&*s.namespace, &*s.name)).collect();
            got.sort_unstable();
            proptest::prop_assert!(e.found.len() <= MAX_ELSEWHERE_CANDIDATES);
            if e.exhaustive {
                proptest::prop_assert_eq!(&got, &want);
            } else {
                proptest::prop_assert!(got.iter().all(|g| want.contains(g)));
            }
            let limited = idx.covering_elsewhere(&target, &except, 2);
            proptest::prop_assert!(limited.found.len() <= 2);
            proptest::prop_assert!(limited.found.iter().all(|s| want.contains(&(&*s.namespace, &*s.name))));
        }
    }

    #[test]
    fn name_map_keeps_sorted_unique_entries() {
        let sa = |name: &str, secret: &str| ServiceAccountInfo {
            name: name.to_owned(),
            image_pull_secrets: vec![secret.to_owned()],
            ..Default::default()
        };
        let pulls = |m: &NameMap<ServiceAccountInfo>| -> Vec<String> {
            m.values().map(|s| s.image_pull_secrets.concat()).collect()
        };
        let mut m = NameMap::default();
        assert_eq!(m.insert(sa("b", "2")), None);
        assert_eq!(m.insert(sa("a", "1")), None);
        assert_eq!(m.insert(sa("c", "3")), None);
        assert_eq!(m.insert(sa("b", "20")), Some(sa("b", "2")));
        assert_eq!(pulls(&m), ["1", "20", "3"]);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(m.get("b"), Some(&sa("b", "20")));
        assert!(m.contains_key("c") && !m.contains_key("d"));
        assert_eq!(m.remove("a"), Some(sa("a", "1")));
        assert_eq!(m.remove("a"), None);
        assert_eq!(m.len(), 2);
    }
}
