//! The fake's storage, modelled on etcd plus the API server's watch cache: objects per resource
//! in key order, one global resourceVersion, a bounded change history (older watches and exact
//! reads get 410), snapshots for consistent pagination, and the write path (create, update,
//! patch, delete) with the server's defaulting, validation and preconditions.

use super::select::{FieldSelector, LabelSelector};
use super::status::ApiError;
use axum::body::Bytes;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// A resource the fake serves.
#[derive(Debug)]
pub struct ResourceType {
    /// API group ("" for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Plural name in paths.
    pub plural: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Field-selector labels beyond `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
}

impl ResourceType {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The resource as error messages name it (`secrets`, `leases.coordination.k8s.io`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_owned()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Every field label a selector may use on this resource.
    pub fn selectable(&self) -> Vec<&'static str> {
        let mut v = vec!["metadata.name"];
        if self.namespaced {
            v.push("metadata.namespace");
        }
        v.extend_from_slice(self.fields);
        v
    }
}

/// Index of Namespaces in [`RESOURCES`].
pub const NAMESPACES: usize = 2;

/// The resources served: what pullgate watches, plus what a reconciler writes.
pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        fields: &["type"],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        kind: "ServiceAccount",
        namespaced: true,
        fields: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        fields: &["status.phase"],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        fields: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "type",
        ],
    },
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        fields: &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        fields: &[],
    },
    // Read by `pullgate doctor`.
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        fields: &["spec.nodeName", "spec.serviceAccountName", "status.phase"],
    },
    // Workloads, listed page by page by `pullgate audit`.
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
        fields: &[],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        kind: "StatefulSet",
        namespaced: true,
        fields: &[],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        kind: "DaemonSet",
        namespaced: true,
        fields: &[],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        kind: "ReplicaSet",
        namespaced: true,
        fields: &[],
    },
    ResourceType {
        group: "batch",
        version: "v1",
        plural: "jobs",
        kind: "Job",
        namespaced: true,
        fields: &["status.successful"],
    },
    ResourceType {
        group: "batch",
        version: "v1",
        plural: "cronjobs",
        kind: "CronJob",
        namespaced: true,
        fields: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "replicationcontrollers",
        kind: "ReplicationController",
        namespaced: true,
        fields: &["status.replicas"],
    },
    // A CRD: served only while the test says it is installed ([`is_optional_crd`]).
    ResourceType {
        group: "wgpolicyk8s.io",
        version: "v1alpha2",
        plural: "policyreports",
        kind: "PolicyReport",
        namespaced: true,
        fields: &[],
    },
];

/// Whether a resource comes from a CRD a test installs or not (PolicyReports).
pub fn is_optional_crd(res: usize) -> bool {
    RESOURCES[res].group == "wgpolicyk8s.io"
}

/// The resource at a path's group, version and plural.
pub fn resource_by_path(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of an object's `apiVersion` and `kind`.
pub fn resource_by_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.api_version() == api_version && r.kind == kind)
}

/// An object as stored: identity, what selectors read, and its JSON.
#[derive(Debug)]
pub struct Stored {
    /// Namespace ("" when cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// resourceVersion of this state.
    pub rv: u64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Selectable fields.
    pub fields: Vec<(&'static str, String)>,
    /// The object without `kind`/`apiVersion`, as list items carry it.
    pub body: Bytes,
}

impl Stored {
    /// The object with `kind` and `apiVersion`, as single reads and watch events carry it.
    pub fn typed(&self, rt: &ResourceType) -> Vec<u8> {
        let mut out = format!(
            r#"{{"kind":"{}","apiVersion":"{}""#,
            rt.kind,
            rt.api_version()
        )
        .into_bytes();
        if self.body.len() > 2 {
            out.push(b',');
            out.extend_from_slice(&self.body[1..]);
        } else {
            out.push(b'}');
        }
        out
    }

    /// The JSON value (with `kind` and `apiVersion`).
    pub fn value(&self, rt: &ResourceType) -> Value {
        serde_json::from_slice(&self.typed(rt)).unwrap_or(Value::Null)
    }

    /// The same object at another resourceVersion (a deletion's final state carries the
    /// deletion's resourceVersion).
    fn restamped(&self, rv: u64) -> Stored {
        let mut v: Value = serde_json::from_slice(&self.body).unwrap_or_else(|_| json!({}));
        v["metadata"]["resourceVersion"] = json!(rv.to_string());
        Stored {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            rv,
            labels: self.labels.clone(),
            fields: self.fields.clone(),
            body: serde_json::to_vec(&v).unwrap_or_default().into(),
        }
    }
}

/// How an object changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Deleted.
    Deleted,
}

/// One committed change, as the watch cache keeps it.
#[derive(Debug)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Index in [`RESOURCES`].
    pub resource: usize,
    /// Storage key.
    pub key: String,
    /// What happened.
    pub kind: ChangeType,
    /// The new state (a deletion: the last state, at the deletion's resourceVersion).
    pub object: Arc<Stored>,
    /// The state before.
    pub prev: Option<Arc<Stored>>,
}

/// Which objects a list or watch covers.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Index in [`RESOURCES`].
    pub resource: usize,
    /// Only this namespace (namespaced requests).
    pub namespace: Option<String>,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `labelSelector`.
    pub labels: LabelSelector,
}

impl Filter {
    fn matches(&self, o: &Stored) -> bool {
        self.namespace.as_ref().is_none_or(|n| *n == o.namespace)
            && self.fields.matches(&o.fields)
            && self.labels.matches(&o.labels)
    }

    /// The watch event line a change produces for this watcher. As in the cacher, an update
    /// that moves an object into the selection is ADDED and one that moves it out is DELETED.
    pub fn event_for(&self, c: &Change) -> Option<Bytes> {
        if c.resource != self.resource {
            return None;
        }
        let rt = &RESOURCES[c.resource];
        let was = c.prev.as_ref().is_some_and(|p| self.matches(p));
        if c.kind == ChangeType::Deleted {
            return was.then(|| event_line("DELETED", &c.object.typed(rt)));
        }
        match (was, self.matches(&c.object)) {
            (true, true) => Some(event_line("MODIFIED", &c.object.typed(rt))),
            (false, true) => Some(event_line("ADDED", &c.object.typed(rt))),
            (true, false) => c
                .prev
                .as_ref()
                .map(|p| event_line("DELETED", &p.restamped(c.rv).typed(rt))),
            (false, false) => None,
        }
    }
}

/// A watch event line: `{"type":…,"object":…}\n`.
pub fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = format!(r#"{{"type":"{kind}","object":"#).into_bytes();
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    out.into()
}

/// A BOOKMARK line: an empty object of the kind carrying only the resourceVersion.
pub fn bookmark_line(rt: &ResourceType, rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object = json!({ "kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata });
    event_line("BOOKMARK", object.to_string().as_bytes())
}

/// Parameters of a list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// `limit`.
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
}

impl ListQuery {
    /// Whether the API server's cacher answers this list rather than etcd (`shouldDelegateList`
    /// in k8s.io/apiserver's cacher.go): `resourceVersion=0` always, and then whole, because
    /// the watch cache cannot continue a list (`limit` is ignored: "serve paginated requests
    /// about revision 0 from watch cache to avoid overwhelming etcd"); a continue token, an
    /// `Exact` match, or a `limit` with any other resourceVersion go to etcd; without a limit,
    /// consistent lists come from the cache too (ConsistentListFromCache, beta from v1.31).
    pub fn served_by_cache(&self) -> bool {
        let rv = self.resource_version.as_deref().unwrap_or("");
        let exact = self.resource_version_match.as_deref() == Some("Exact");
        self.continue_token.is_none() && !exact && (rv == "0" || self.limit.is_none())
    }
}

/// Parameters of a watch.
#[derive(Debug, Clone, Default)]
pub struct WatchQuery {
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
}

/// A watch's opening: the lines to send first, then the live changes after `from`.
pub struct WatchStart {
    /// Lines to send before live changes.
    pub lines: Vec<Bytes>,
    /// Whether the stream ends after `lines` (an ERROR event).
    pub close: bool,
    /// Live changes.
    pub changes: broadcast::Receiver<Arc<Change>>,
    /// resourceVersion the lines bring the watcher to.
    pub from: u64,
}

/// How a patch body is to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/apply-patch+yaml` (server-side apply; minimal, see [`State::patch`]).
    Apply,
}

impl PatchType {
    /// From a Content-Type; `None` for types the fake does not implement (strategic merge).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// The storage.
pub struct State {
    rv: u64,
    /// History holds every change after this resourceVersion.
    compacted: u64,
    objects: Vec<BTreeMap<String, Arc<Stored>>>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    changes: broadcast::Sender<Arc<Change>>,
    next_uid: u64,
}

fn key(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}/{name}")
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .map_or_else(|_| "1970-01-01T00:00:00Z".to_owned(), |t| t.to_string())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

impl State {
    /// Empty storage starting at `initial_rv`, keeping at most `history_limit` changes.
    pub fn new(initial_rv: u64, history_limit: usize) -> Self {
        let (changes, _) = broadcast::channel(1 << 16);
        State {
            rv: initial_rv,
            compacted: initial_rv,
            objects: RESOURCES.iter().map(|_| BTreeMap::new()).collect(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            changes,
            next_uid: 1,
        }
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Drop all history: any older resourceVersion or continue token now gets 410.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    /// Another client's write (a ConfigMap in `default` changes), then a compaction: every
    /// continue token issued before is now expired, as after etcd compacts under a long list.
    pub fn write_and_compact(&mut self) -> Result<(), ApiError> {
        let res = resource_by_path("", "v1", "configmaps")
            .ok_or_else(|| ApiError::internal("the fake serves configmaps"))?;
        let name = "fake-compaction";
        let obj = json!({"metadata": {"name": name}, "data": {"rv": self.rv.to_string()}});
        if self.get(NAMESPACES, "", "default").is_err() {
            self.create(
                NAMESPACES,
                "",
                json!({"metadata": {"name": "default"}}),
                false,
            )?;
        }
        if self.get(res, "default", name).is_ok() {
            self.update(res, "default", name, obj, false)?;
        } else {
            self.create(res, "default", obj, false)?;
        }
        self.compact();
        Ok(())
    }

    /// Number of objects of a resource.
    pub fn count(&self, res: usize) -> usize {
        self.objects[res].len()
    }

    fn uid(&mut self) -> String {
        self.next_uid += 1;
        let n = self.next_uid;
        format!("{:08x}-fa4e-4a11-8b1e-{:012x}", n >> 16, n)
    }

    fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.next_uid += 1;
        let mut n = self.next_uid.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    /// Read one object.
    pub fn get(&self, res: usize, ns: &str, name: &str) -> Result<Arc<Stored>, ApiError> {
        self.objects[res]
            .get(&key(ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&RESOURCES[res].qualified(), name))
    }

    /// Validate and default an object for storage at `rv`.
    fn admit(
        &mut self,
        res: usize,
        path_ns: &str,
        mut v: Value,
        existing: Option<&Stored>,
        rv: u64,
    ) -> Result<Stored, ApiError> {
        let rt = &RESOURCES[res];
        let obj = v.as_object_mut().ok_or_else(|| {
            ApiError::bad_request("the body of the request must be a JSON object")
        })?;
        if let Some(av) = obj
            .remove("apiVersion")
            .and_then(|a| a.as_str().map(str::to_owned))
            .filter(|a| !a.is_empty())
        {
            if av != rt.api_version() {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    rt.api_version()
                )));
            }
        }
        if let Some(k) = obj
            .remove("kind")
            .and_then(|k| k.as_str().map(str::to_owned))
            .filter(|k| !k.is_empty())
        {
            if k != rt.kind {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    rt.kind
                )));
            }
        }
        let meta = obj.entry("metadata").or_insert_with(|| json!({}));
        let meta = meta
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        let text = |m: &Map<String, Value>, k: &str| {
            m.get(k).and_then(Value::as_str).unwrap_or("").to_owned()
        };
        // Namespace: taken from the path; a different one in the body is refused.
        if rt.namespaced {
            let body_ns = text(meta, "namespace");
            if !body_ns.is_empty() && body_ns != path_ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), json!(path_ns));
        } else {
            meta.remove("namespace");
        }
        let mut name = text(meta, "name");
        if let Some(old) = existing {
            if name.is_empty() {
                name = old.name.clone();
            } else if name != old.name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({name}) does not match the name on the URL ({})",
                    old.name
                )));
            }
        } else if name.is_empty() {
            let prefix = text(meta, "generateName");
            if !prefix.is_empty() {
                name = format!("{prefix}{}", self.random_suffix());
            }
        }
        let kind = rt.qualified_kind();
        if name.is_empty() {
            return Err(ApiError::invalid(
                &kind,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        let valid = if res == NAMESPACES {
            is_dns_label(&name)
        } else {
            is_dns_subdomain(&name)
        };
        if !valid {
            return Err(ApiError::invalid(
                &kind,
                &name,
                "metadata.name",
                &format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"),
            ));
        }
        meta.insert("name".into(), json!(name));
        let uid = match existing {
            Some(old) => old.uid.clone(),
            None => self.uid(),
        };
        meta.insert("uid".into(), json!(uid));
        let created = existing
            .and_then(|o| serde_json::from_slice::<Value>(&o.body).ok())
            .and_then(|v| {
                v["metadata"]["creationTimestamp"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_else(now_rfc3339);
        meta.insert("creationTimestamp".into(), json!(created));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.remove("selfLink");
        let mut labels = BTreeMap::new();
        if let Some(l) = meta.get("labels").filter(|l| !l.is_null()) {
            let l = l
                .as_object()
                .ok_or_else(|| ApiError::bad_request("metadata.labels must be a map of strings"))?;
            for (k, val) in l {
                let val = val.as_str().ok_or_else(|| {
                    ApiError::bad_request("metadata.labels must be a map of strings")
                })?;
                labels.insert(k.clone(), val.to_owned());
            }
        }
        match rt.kind {
            "Secret" => admit_secret(obj, existing.map(|o| o.fields.as_slice()), &name)?,
            "Namespace" => {
                labels.insert("kubernetes.io/metadata.name".into(), name.clone());
                obj["metadata"]["labels"] = json!(labels);
                let spec = obj.entry("spec").or_insert_with(|| json!({}));
                if spec.get("finalizers").is_none() {
                    spec["finalizers"] = json!(["kubernetes"]);
                }
                obj.insert("status".into(), json!({"phase": "Active"}));
            }
            _ => {}
        }
        let mut fields = vec![("metadata.name", name.clone())];
        if rt.namespaced {
            fields.push(("metadata.namespace", path_ns.to_owned()));
        }
        for f in rt.fields {
            let pointer = format!("/{}", f.replace('.', "/"));
            let val = v
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            fields.push((f, val));
        }
        Ok(Stored {
            namespace: if rt.namespaced {
                path_ns.to_owned()
            } else {
                String::new()
            },
            name,
            uid,
            rv,
            labels,
            fields,
            body: serde_json::to_vec(&v).unwrap_or_default().into(),
        })
    }

    fn commit(
        &mut self,
        res: usize,
        kind: ChangeType,
        object: Stored,
        prev: Option<Arc<Stored>>,
    ) -> Arc<Stored> {
        self.rv = object.rv;
        let object = Arc::new(object);
        let k = key(&object.namespace, &object.name);
        if kind == ChangeType::Deleted {
            self.objects[res].remove(&k);
        } else {
            self.objects[res].insert(k.clone(), object.clone());
        }
        let change = Arc::new(Change {
            rv: self.rv,
            resource: res,
            key: k,
            kind,
            object: object.clone(),
            prev,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
        object
    }

    /// Create (POST).
    pub fn create(
        &mut self,
        res: usize,
        ns: &str,
        v: Value,
        dry_run: bool,
    ) -> Result<Arc<Stored>, ApiError> {
        let rt = &RESOURCES[res];
        if rt.namespaced && !self.objects[NAMESPACES].contains_key(ns) {
            return Err(ApiError::not_found("namespaces", ns));
        }
        let obj = self.admit(res, ns, v, None, self.rv + 1)?;
        if self.objects[res].contains_key(&key(&obj.namespace, &obj.name)) {
            return Err(ApiError::already_exists(&rt.qualified(), &obj.name));
        }
        if dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(self.commit(res, ChangeType::Added, obj, None))
    }

    /// Replace (PUT); a `metadata.resourceVersion` in the body is a precondition.
    pub fn update(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        v: Value,
        dry_run: bool,
    ) -> Result<Arc<Stored>, ApiError> {
        let rt = &RESOURCES[res];
        let old = self.get(res, ns, name)?;
        let wanted = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !wanted.is_empty() && wanted != old.rv.to_string() {
            return Err(ApiError::conflict(&rt.qualified(), name));
        }
        let body_name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(name);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let obj = self.admit(res, ns, v, Some(&old), self.rv + 1)?;
        if dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(self.commit(res, ChangeType::Modified, obj, Some(old)))
    }

    /// Patch. Merge and JSON patches need the object to exist; a `metadata.resourceVersion`
    /// left in the patched object that differs from the stored one is a 409, as on the real
    /// server. Apply is minimal: it creates the object when missing and otherwise merges the
    /// applied configuration (no field ownership, so no conflicts and no removal of fields a
    /// manager stopped applying). Returns the object and whether it was created.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
        field_manager: Option<&str>,
        dry_run: bool,
    ) -> Result<(Arc<Stored>, bool), ApiError> {
        let rt = &RESOURCES[res];
        let existing = self.objects[res].get(&key(ns, name)).cloned();
        let patched = match patch_type {
            PatchType::Apply => {
                if field_manager.is_none_or(str::is_empty) {
                    return Err(ApiError::invalid(
                        "PatchOptions.meta.k8s.io",
                        "",
                        "fieldManager",
                        "Required value: is required for apply patch",
                    ));
                }
                let text = std::str::from_utf8(body)
                    .map_err(|_| ApiError::bad_request("apply patch is not UTF-8"))?;
                let applied: Value = serde_saphyr::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                if !applied.is_object() {
                    return Err(ApiError::bad_request("an apply patch must be an object"));
                }
                match &existing {
                    None => {
                        let mut applied = applied;
                        applied["metadata"]["name"] = json!(name);
                        return self.create(res, ns, applied, dry_run).map(|o| (o, true));
                    }
                    Some(old) => {
                        let mut cur = old.value(rt);
                        json_patch::merge(&mut cur, &applied);
                        cur
                    }
                }
            }
            PatchType::Merge => {
                let old = existing
                    .as_ref()
                    .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?;
                let patch: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                let mut cur = old.value(rt);
                json_patch::merge(&mut cur, &patch);
                cur
            }
            PatchType::Json => {
                let old = existing
                    .as_ref()
                    .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?;
                let ops: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                let mut cur = old.value(rt);
                json_patch::patch(&mut cur, &ops)
                    .map_err(|e| ApiError::unprocessable(e.to_string()))?;
                cur
            }
        };
        self.update(res, ns, name, patched, dry_run)
            .map(|o| (o, false))
    }

    /// Delete, with an optional resourceVersion precondition. Deleting a Namespace deletes
    /// what is in it first (the namespace controller's eventual result, without the
    /// Terminating phase).
    pub fn delete(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        precondition: Option<&str>,
        dry_run: bool,
    ) -> Result<Arc<Stored>, ApiError> {
        let rt = &RESOURCES[res];
        let old = self.get(res, ns, name)?;
        if precondition.is_some_and(|p| p != old.rv.to_string()) {
            return Err(ApiError::conflict(&rt.qualified(), name));
        }
        if dry_run {
            return Ok(old);
        }
        if res == NAMESPACES {
            let prefix = format!("{name}/");
            for r in (0..RESOURCES.len()).filter(|r| RESOURCES[*r].namespaced) {
                let names: Vec<String> = self.objects[r]
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, o)| o.name.clone())
                    .collect();
                for n in names {
                    self.delete(r, name, &n, None, false)?;
                }
            }
        }
        let last = old.restamped(self.rv + 1);
        Ok(self.commit(res, ChangeType::Deleted, last, Some(old)))
    }

    /// Where a list reads from: (snapshot resourceVersion, first key), by the API server's
    /// rules for `resourceVersion`, `resourceVersionMatch`, `limit` and `continue`.
    fn read_point(&self, q: &ListQuery) -> Result<(u64, Option<String>), ApiError> {
        let rv = q.resource_version.as_deref().filter(|r| !r.is_empty());
        if let Some(token) = &q.continue_token {
            if rv.is_some() {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (at, start) = decode_continue(token)?;
            // rv -1: the token of a 410 answer, continuing at the latest state (an inconsistent list).
            let Ok(at) = u64::try_from(at) else {
                return Ok((self.rv, Some(start)));
            };
            if at < self.compacted {
                // As etcd3's handleCompactedErrorForPaging: the Status carries a token to go on with.
                return Err(ApiError::continue_expired(encode_continue(-1, &start)));
            }
            return Ok((at, Some(start)));
        }
        let parse = |r: &str| {
            r.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{r}\"")))
        };
        let exact = |n: u64| {
            if n > self.rv {
                Err(ApiError::too_large(n, self.rv))
            } else if n < self.compacted {
                Err(ApiError::too_old(n, self.compacted + 1))
            } else {
                Ok((n, None))
            }
        };
        let not_older = |n: u64| {
            if n > self.rv {
                Err(ApiError::too_large(n, self.rv))
            } else {
                Ok((self.rv, None))
            }
        };
        let list_options = |detail: &str| {
            ApiError::invalid(
                "ListOptions.meta.k8s.io",
                "",
                "resourceVersionMatch",
                detail,
            )
        };
        match (
            q.resource_version_match
                .as_deref()
                .filter(|m| !m.is_empty()),
            rv,
        ) {
            (Some(_), None) => Err(list_options(
                "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            )),
            (Some("Exact"), Some("0")) => Err(list_options(
                "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            )),
            (Some("Exact"), Some(r)) => exact(parse(r)?),
            (Some("NotOlderThan"), Some(r)) => not_older(parse(r)?),
            (Some(other), Some(_)) => Err(list_options(&format!("Unsupported value: \"{other}\""))),
            (None, None | Some("0")) => Ok((self.rv, None)),
            // Legacy rule: a non-zero resourceVersion with a limit reads exactly there.
            (None, Some(r)) if q.limit.is_some() => exact(parse(r)?),
            (None, Some(r)) => not_older(parse(r)?),
        }
    }

    /// A resource's objects as of `at` (which must be within the history).
    fn snapshot(&self, res: usize, at: u64) -> Cow<'_, BTreeMap<String, Arc<Stored>>> {
        if at >= self.rv {
            return Cow::Borrowed(&self.objects[res]);
        }
        let mut m = self.objects[res].clone();
        for c in self.history.iter().rev().take_while(|c| c.rv > at) {
            if c.resource == res {
                match &c.prev {
                    Some(p) => m.insert(c.key.clone(), p.clone()),
                    None => m.remove(&c.key),
                };
            }
        }
        Cow::Owned(m)
    }

    /// A list response body (`…List` with `metadata.resourceVersion`, `continue`,
    /// `remainingItemCount` when no selector is used, and items without kind/apiVersion).
    /// Also the number of items in it.
    pub fn list(&self, filter: &Filter, q: &ListQuery) -> Result<(Vec<u8>, usize), ApiError> {
        let rt = &RESOURCES[filter.resource];
        let (at, start) = self.read_point(q)?;
        let snap = self.snapshot(filter.resource, at);
        let prefix = filter
            .namespace
            .as_ref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        let from = match start {
            Some(s) if s > prefix => s,
            _ => prefix.clone(),
        };
        let limit = match q.limit.filter(|l| *l > 0) {
            Some(l) if !(q.served_by_cache() && q.resource_version.as_deref() == Some("0")) => l,
            _ => usize::MAX,
        };
        let selective = !filter.fields.is_empty() || !filter.labels.is_empty();
        let mut items: Vec<&Stored> = Vec::new();
        let mut last_key = "";
        let mut more = false;
        let mut remaining = 0usize;
        for (k, o) in snap
            .range(from..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            if !filter.matches(o) {
                continue;
            }
            if items.len() < limit {
                items.push(o);
                last_key = k;
                continue;
            }
            more = true;
            if selective {
                break;
            }
            remaining += 1;
        }
        let mut metadata = json!({ "resourceVersion": at.to_string() });
        if more {
            metadata["continue"] = json!(encode_continue(
                i64::try_from(at).unwrap_or(i64::MAX),
                &format!("{last_key}\u{0}"),
            ));
            if !selective {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        let mut out = format!(
            r#"{{"kind":"{}List","apiVersion":"{}","metadata":{},"items":["#,
            rt.kind,
            rt.api_version(),
            metadata
        )
        .into_bytes();
        for (i, o) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&o.body);
        }
        out.extend_from_slice(b"]}");
        Ok((out, items.len()))
    }

    /// Open a watch: `resourceVersion` unset or "0" starts with a synthetic ADDED per object,
    /// N replays the history after N (410 as an ERROR event when N is older than the history),
    /// and `sendInitialEvents` ends the initial events with the `initial-events-end` bookmark.
    pub fn watch(&self, filter: &Filter, q: &WatchQuery) -> Result<WatchStart, ApiError> {
        let rt = &RESOURCES[filter.resource];
        let rv = q.resource_version.as_deref().filter(|r| !r.is_empty());
        let changes = self.changes.subscribe();
        let current = || -> Vec<Bytes> {
            self.objects[filter.resource]
                .values()
                .filter(|o| filter.matches(o))
                .map(|o| event_line("ADDED", &o.typed(rt)))
                .collect()
        };
        let error = |e: ApiError| WatchStart {
            lines: vec![event_line("ERROR", e.status().to_string().as_bytes())],
            close: true,
            changes: self.changes.subscribe(),
            from: self.rv,
        };
        if q.send_initial_events {
            if !q.bookmarks {
                return Err(ApiError::invalid("ListOptions.meta.k8s.io", "", "allowWatchBookmarks", "Required value: allowWatchBookmarks must be set to true when sendInitialEvents is true"));
            }
            if q.resource_version_match.as_deref() != Some("NotOlderThan") {
                return Err(ApiError::invalid("ListOptions.meta.k8s.io", "", "resourceVersionMatch", "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"));
            }
            if let Some(n) = rv
                .and_then(|r| r.parse::<u64>().ok())
                .filter(|n| *n > self.rv)
            {
                return Ok(error(ApiError::too_large(n, self.rv)));
            }
            let mut lines = current();
            lines.push(bookmark_line(rt, self.rv, true));
            return Ok(WatchStart {
                lines,
                close: false,
                changes,
                from: self.rv,
            });
        }
        let Some(r) = rv.filter(|r| *r != "0") else {
            return Ok(WatchStart {
                lines: current(),
                close: false,
                changes,
                from: self.rv,
            });
        };
        let n = r
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{r}\"")))?;
        if n < self.compacted {
            return Ok(error(ApiError::too_old(n, self.compacted + 1)));
        }
        if n > self.rv {
            return Ok(error(ApiError::too_large(n, self.rv)));
        }
        let lines = self
            .history
            .iter()
            .filter(|c| c.rv > n)
            .filter_map(|c| filter.event_for(c))
            .collect();
        Ok(WatchStart {
            lines,
            close: false,
            changes,
            from: self.rv,
        })
    }
}

fn admit_secret(
    obj: &mut Map<String, Value>,
    old_fields: Option<&[(&'static str, String)]>,
    name: &str,
) -> Result<(), ApiError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data = match obj.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::bad_request("Secret.data must be a map")),
    };
    for (k, v) in &data {
        let ok = v.as_str().is_some_and(|s| b64.decode(s).is_ok());
        if !ok {
            // The real error names the position, never the value.
            return Err(ApiError::bad_request(format!("Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{k:?}]")));
        }
    }
    // stringData is write-only: merged into data and never stored or returned.
    match obj.remove("stringData") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let s = v.as_str().ok_or_else(|| {
                    ApiError::bad_request("Secret.stringData values must be strings")
                })?;
                data.insert(k, json!(b64.encode(s)));
            }
        }
        Some(_) => return Err(ApiError::bad_request("Secret.stringData must be a map")),
    }
    if !data.is_empty() {
        obj.insert("data".into(), Value::Object(data));
    }
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or("Opaque")
        .to_owned();
    if let Some(old_type) = old_fields
        .and_then(|f| f.iter().find(|(k, _)| *k == "type"))
        .map(|(_, v)| v)
    {
        if *old_type != ty {
            return Err(ApiError::invalid(
                "Secret",
                name,
                "type",
                &format!("Invalid value: \"{ty}\": field is immutable"),
            ));
        }
    }
    obj.insert("type".into(), json!(ty));
    Ok(())
}

/// A continue token as the API server encodes it: base64url of `{"v","rv","start"}`.
fn encode_continue(rv: i64, start: &str) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": rv, "start": start });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad());
    }
    let rv = v["rv"].as_i64().filter(|rv| *rv >= -1).ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_owned();
    Ok((rv, start))
}
