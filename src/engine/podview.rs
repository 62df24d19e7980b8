//! The containers of a Pod, or of a workload's pod template: only the fields pull decisions read.
//!
//! These types deserialize straight from an API object (unknown fields are skipped without
//! allocating), which keeps the admission hot path cheap compared with a full `k8s_openapi::Pod`.

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// Annotation the kubelet sets on mirror pods of static pods.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Annotation with which a pod or template opts out of injection.
pub const INJECT_ANNOTATION: &str = "pullgate.io/inject";

/// The few annotations pullgate reads; all others are skipped while parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    /// `kubernetes.io/config.mirror` is present.
    pub mirror: bool,
    /// `pullgate.io/inject: "false"` is present.
    pub inject_opt_out: bool,
}

impl<'de> Deserialize<'de> for Annotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Annotations;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_unit<E>(self) -> Result<Annotations, E> {
                Ok(Annotations::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Annotations, A::Error> {
                let mut out = Annotations::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        MIRROR_ANNOTATION => {
                            map.next_value::<IgnoredAny>()?;
                            out.mirror = true;
                        }
                        INJECT_ANNOTATION => {
                            let v: Option<String> = map.next_value()?;
                            out.inject_opt_out = v.as_deref().is_some_and(is_false);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

fn is_false(v: &str) -> bool {
    v.eq_ignore_ascii_case("false")
}

/// An owner reference: a mirror pod is owned by its Node.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct OwnerRef {
    /// Kind of the owner.
    #[serde(default)]
    pub kind: String,
}

/// The metadata fields pullgate reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Object name (absent on pods created with generateName).
    #[serde(default)]
    pub name: Option<String>,
    /// generateName prefix.
    #[serde(default)]
    pub generate_name: Option<String>,
    /// Namespace, when the object carries it.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Annotations of interest.
    #[serde(default)]
    pub annotations: Annotations,
    /// Owner references (to detect mirror pods owned by a Node).
    #[serde(default, deserialize_with = "null_as_default")]
    pub owner_references: Vec<OwnerRef>,
}

impl Meta {
    /// A display name: the name, or `generateName*` for pods not yet named.
    pub fn display_name(&self) -> String {
        match (&self.name, &self.generate_name) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(g)) => format!("{g}*"),
            _ => String::from("<unnamed>"),
        }
    }

    /// Whether this is the mirror of a static pod.
    pub fn is_mirror(&self) -> bool {
        self.annotations.mirror || self.owner_references.iter().any(|o| o.kind == "Node")
    }
}

/// `{name: …}` as in imagePullSecrets.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct LocalObjectReference {
    /// Referenced name; may be empty (the kubelet skips empty names).
    #[serde(default)]
    pub name: String,
}

/// A container's name and image.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Container {
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// Image reference as written (may be absent in templates awaiting defaulting).
    #[serde(default)]
    pub image: Option<String>,
}

/// The pod spec fields pull decisions depend on.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// serviceAccountName (empty means "default").
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// Deprecated alias of serviceAccountName.
    #[serde(default)]
    pub service_account: Option<String>,
    /// imagePullSecrets as written; `None` when absent.
    #[serde(default)]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Regular containers.
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<Container>,
    /// Init containers.
    #[serde(default, deserialize_with = "null_as_default")]
    pub init_containers: Vec<Container>,
    /// Ephemeral (debug) containers.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ephemeral_containers: Vec<Container>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Where a container sits in the pod spec (for JSON paths and messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// `spec.containers`.
    Regular,
    /// `spec.initContainers`.
    Init,
    /// `spec.ephemeralContainers`.
    Ephemeral,
}

impl PodSpec {
    /// The ServiceAccount the pod runs as, defaulted like the API server does.
    pub fn service_account(&self) -> &str {
        match (&self.service_account_name, &self.service_account) {
            (Some(n), _) if !n.is_empty() => n,
            (_, Some(n)) if !n.is_empty() => n,
            _ => "default",
        }
    }

    /// Every container of every kind, in the kubelet's start order (init first).
    pub fn all_containers(&self) -> impl Iterator<Item = (ContainerKind, &Container)> {
        self.init_containers
            .iter()
            .map(|c| (ContainerKind::Init, c))
            .chain(self.containers.iter().map(|c| (ContainerKind::Regular, c)))
            .chain(
                self.ephemeral_containers
                    .iter()
                    .map(|c| (ContainerKind::Ephemeral, c)),
            )
    }

    /// Whether the spec lists any imagePullSecrets entry (even an empty name).
    pub fn has_own_pull_secrets(&self) -> bool {
        self.image_pull_secrets
            .as_ref()
            .is_some_and(|v| !v.is_empty())
    }
}

/// A pod or pod template: its metadata and spec.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct PodTemplate {
    /// Metadata (of the pod, or of the template).
    #[serde(default)]
    pub metadata: Meta,
    /// Pod spec.
    #[serde(default)]
    pub spec: PodSpec,
}

/// The kinds pullgate evaluates, with where their pod template lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// A bare Pod.
    Pod,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// v1 ReplicationController.
    ReplicationController,
    /// batch/v1 Job.
    Job,
    /// batch/v1 CronJob.
    CronJob,
}

impl WorkloadKind {
    /// The kind for an object's `kind` field, if pullgate evaluates it.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "Pod" => WorkloadKind::Pod,
            "Deployment" => WorkloadKind::Deployment,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "ReplicationController" => WorkloadKind::ReplicationController,
            "Job" => WorkloadKind::Job,
            "CronJob" => WorkloadKind::CronJob,
            _ => return None,
        })
    }

    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Pod => "Pod",
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::ReplicationController => "ReplicationController",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
        }
    }

    /// JSON pointer from the object root to the pod spec.
    pub fn spec_pointer(self) -> &'static str {
        match self {
            WorkloadKind::Pod => "/spec",
            WorkloadKind::CronJob => "/spec/jobTemplate/spec/template/spec",
            _ => "/spec/template/spec",
        }
    }
}

#[derive(Deserialize)]
struct TemplateHolder {
    #[serde(default)]
    template: PodTemplate,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobTemplateHolder {
    #[serde(default)]
    job_template: JobTemplate,
}

#[derive(Deserialize, Default)]
struct JobTemplate {
    #[serde(default)]
    spec: Option<TemplateHolder>,
}

#[derive(Deserialize)]
struct Workload<S> {
    #[serde(default)]
    metadata: Meta,
    spec: Option<S>,
}

/// A Pod or a workload reduced to what pull decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// The object's kind.
    pub kind: WorkloadKind,
    /// The workload's own metadata (empty for a Pod: see [`PodView::meta`]).
    pub metadata: Meta,
    /// The pod (template) metadata and spec.
    pub pod: PodTemplate,
}

/// Why an object could not be read as a pod view.
#[derive(Debug, thiserror::Error)]
pub enum PodViewError {
    /// The object's shape does not match its kind.
    #[error("cannot read {kind} object: {source}")]
    Shape {
        /// Kind being read.
        kind: &'static str,
        /// The JSON error (shape only: objects read here carry no credentials).
        #[source]
        source: serde_json::Error,
    },
}

impl PodView {
    /// Read a view of `kind` from raw JSON bytes.
    pub fn from_slice(kind: WorkloadKind, bytes: &[u8]) -> Result<Self, PodViewError> {
        Self::read(kind, |k| match k {
            ReadAs::Pod => serde_json::from_slice::<PodTemplate>(bytes).map(ReadOut::Pod),
            ReadAs::Template => {
                serde_json::from_slice::<Workload<TemplateHolder>>(bytes).map(ReadOut::Template)
            }
            ReadAs::CronJob => {
                serde_json::from_slice::<Workload<JobTemplateHolder>>(bytes).map(ReadOut::CronJob)
            }
        })
        .map_err(|source| PodViewError::Shape {
            kind: kind.as_str(),
            source,
        })
    }

    /// Read a view of `kind` from a JSON value.
    pub fn from_value(kind: WorkloadKind, value: &serde_json::Value) -> Result<Self, PodViewError> {
        Self::deserialize_as(kind, value).map_err(|source| PodViewError::Shape {
            kind: kind.as_str(),
            source,
        })
    }

    /// Read a view of `kind` from any deserializer, e.g. one positioned on the object inside a
    /// larger document, so that the object is not scanned once more on its own.
    pub fn deserialize_as<'de, D: Deserializer<'de>>(
        kind: WorkloadKind,
        d: D,
    ) -> Result<Self, D::Error> {
        Self::read(kind, |k| match k {
            ReadAs::Pod => PodTemplate::deserialize(d).map(ReadOut::Pod),
            ReadAs::Template => Workload::<TemplateHolder>::deserialize(d).map(ReadOut::Template),
            ReadAs::CronJob => Workload::<JobTemplateHolder>::deserialize(d).map(ReadOut::CronJob),
        })
    }

    /// The object's own metadata: the pod's, or the workload's.
    pub fn meta(&self) -> &Meta {
        match self.kind {
            WorkloadKind::Pod => &self.pod.metadata,
            _ => &self.metadata,
        }
    }

    fn read<E>(
        kind: WorkloadKind,
        de: impl FnOnce(ReadAs) -> Result<ReadOut, E>,
    ) -> Result<Self, E> {
        let as_ = match kind {
            WorkloadKind::Pod => ReadAs::Pod,
            WorkloadKind::CronJob => ReadAs::CronJob,
            _ => ReadAs::Template,
        };
        let out = de(as_)?;
        Ok(match out {
            ReadOut::Pod(pod) => PodView {
                kind,
                metadata: Meta::default(),
                pod,
            },
            ReadOut::Template(w) => PodView {
                kind,
                metadata: w.metadata,
                pod: w.spec.map(|s| s.template).unwrap_or_default(),
            },
            ReadOut::CronJob(w) => PodView {
                kind,
                metadata: w.metadata,
                pod: w
                    .spec
                    .and_then(|s| s.job_template.spec)
                    .map(|s| s.template)
                    .unwrap_or_default(),
            },
        })
    }
}

enum ReadAs {
    Pod,
    Template,
    CronJob,
}

enum ReadOut {
    Pod(PodTemplate),
    Template(Workload<TemplateHolder>),
    CronJob(Workload<JobTemplateHolder>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_pod_with_all_container_kinds() {
        let v = json!({"metadata": {"name": "p", "annotations": {"a": "b", "pullgate.io/inject": "false"}},
            "spec": {"serviceAccountName": "builder", "imagePullSecrets": [{"name": "x"}],
              "initContainers": [{"name": "i", "image": "init:1"}],
              "containers": [{"name": "c", "image": "app:1"}],
              "ephemeralContainers": [{"name": "e", "image": "debug:1"}]}});
        let view = PodView::from_value(WorkloadKind::Pod, &v).unwrap();
        let names: Vec<_> = view
            .pod
            .spec
            .all_containers()
            .map(|(_, c)| c.name.as_str())
            .collect();
        assert_eq!(names, ["i", "c", "e"]);
        assert_eq!(view.pod.spec.service_account(), "builder");
        assert!(view.pod.metadata.annotations.inject_opt_out);
        assert!(!view.pod.metadata.is_mirror());
        assert!(view.pod.spec.has_own_pull_secrets());
    }

    #[test]
    fn service_account_defaults() {
        let mut spec = PodSpec::default();
        assert_eq!(spec.service_account(), "default");
        spec.service_account = Some("legacy".into());
        assert_eq!(spec.service_account(), "legacy");
        spec.service_account_name = Some(String::new());
        assert_eq!(spec.service_account(), "legacy");
    }

    #[test]
    fn reads_templates_of_each_workload() {
        let tpl = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"containers": [{"name": "c", "image": "reg.example.com/a:1"}]}});
        for kind in [
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "ReplicationController",
            "Job",
        ] {
            let k = WorkloadKind::from_kind(kind).unwrap();
            let v = json!({"kind": kind, "metadata": {"name": "w", "namespace": "ns"}, "spec": {"template": tpl}});
            let view = PodView::from_value(k, &v).unwrap();
            assert_eq!(view.meta().name.as_deref(), Some("w"));
            assert_eq!(view.pod.spec.containers.len(), 1, "{kind}");
            assert!(view.pod.metadata.is_mirror());
            assert_eq!(k.spec_pointer(), "/spec/template/spec");
        }
        let cj = json!({"metadata": {"name": "cj"}, "spec": {"jobTemplate": {"spec": {"template": tpl}}}});
        let view = PodView::from_value(WorkloadKind::CronJob, &cj).unwrap();
        assert_eq!(
            view.pod.spec.containers[0].image.as_deref(),
            Some("reg.example.com/a:1")
        );
    }

    #[test]
    fn nulls_and_missing_fields_are_tolerated() {
        let v = json!({"metadata": {"annotations": null, "ownerReferences": null},
            "spec": {"containers": null, "imagePullSecrets": null}});
        let view = PodView::from_value(WorkloadKind::Pod, &v).unwrap();
        assert!(view.pod.spec.containers.is_empty());
        assert!(!view.pod.spec.has_own_pull_secrets());
        let empty = PodView::from_value(WorkloadKind::Deployment, &json!({})).unwrap();
        assert!(empty.pod.spec.containers.is_empty());
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        for bad in [
            json!("str"),
            json!({"spec": {"containers": "x"}}),
            json!({"metadata": 5}),
            json!({"spec": {"imagePullSecrets": [5]}}),
        ] {
            assert!(
                PodView::from_value(WorkloadKind::Pod, &bad).is_err(),
                "{bad}"
            );
        }
        assert!(PodView::from_slice(WorkloadKind::Pod, b"{not json").is_err());
    }

    #[test]
    fn node_owned_pod_is_mirror() {
        let v =
            json!({"metadata": {"ownerReferences": [{"kind": "Node", "name": "n1"}]}, "spec": {}});
        assert!(PodView::from_value(WorkloadKind::Pod, &v)
            .unwrap()
            .pod
            .metadata
            .is_mirror());
    }
}
