//! One listed object reduced to what the audit reads: its pod view, identity and controller.

use crate::engine::podview::{PodView, PodViewError, WorkloadKind};
use serde::Deserialize;

/// A Pod or workload as the audit keeps it while its page is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditObject {
    /// The pod (template) view the engine reads.
    pub view: PodView,
    /// Namespace.
    pub namespace: String,
    /// `metadata.uid` (empty when absent, as in hand-written test objects).
    pub uid: String,
    /// uid of the owner reference marked `controller: true`, if any.
    pub controller: Option<String>,
    /// Will never create or pull again: a terminated pod, a finished Job.
    pub done: bool,
}

/// Why a listed object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Its spec or metadata does not have the shape of its kind.
    #[error(transparent)]
    View(#[from] PodViewError),
    /// Its identity or status does not have the expected shape.
    #[error("cannot read {kind} object: {source}")]
    Shape {
        /// Kind being read.
        kind: &'static str,
        /// The JSON error (shape only: pods and workloads carry no credentials).
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Deserialize, Default)]
struct Extra {
    #[serde(default)]
    metadata: ExtraMeta,
    #[serde(default)]
    status: Option<ExtraStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ExtraMeta {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    owner_references: Option<Vec<Owner>>,
}

#[derive(Deserialize)]
struct Owner {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    controller: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ExtraStatus {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    conditions: Option<Vec<Condition>>,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    status: String,
}

/// Read one list item (the JSON of a Pod or of a workload of `kind`) in `default_ns` when it
/// carries no namespace.
pub fn parse(
    kind: WorkloadKind,
    bytes: &[u8],
    default_ns: &str,
) -> Result<AuditObject, ObjectError> {
    let view = PodView::from_slice(kind, bytes)?;
    let extra: Extra = serde_json::from_slice(bytes).map_err(|source| ObjectError::Shape {
        kind: kind.as_str(),
        source,
    })?;
    let status = extra.status.unwrap_or_default();
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.kind == t && c.status == "True")
    };
    let done = match kind {
        WorkloadKind::Pod => super::pod::terminated(status.phase.as_deref()),
        // A finished Job creates no more pods (a CronJob's next Job is its template's).
        WorkloadKind::Job => condition("Complete") || condition("Failed"),
        _ => false,
    };
    Ok(AuditObject {
        namespace: extra
            .metadata
            .namespace
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default_ns.to_owned()),
        uid: extra.metadata.uid.unwrap_or_default(),
        controller: extra
            .metadata
            .owner_references
            .into_iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid),
        done,
        view,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_identity_controller_and_whether_done() {
        let pod = json!({"metadata": {"name": "api-1", "namespace": "shop", "uid": "p1",
            "ownerReferences": [{"kind": "Node", "uid": "n"}, {"kind": "ReplicaSet", "uid": "rs1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}, "status": {"phase": "Running"}});
        let o = parse(WorkloadKind::Pod, pod.to_string().as_bytes(), "default").unwrap();
        assert_eq!((o.namespace.as_str(), o.uid.as_str()), ("shop", "p1"));
        assert_eq!(o.controller.as_deref(), Some("rs1"));
        assert!(!o.done);
        let job = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": []}}},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        let o = parse(WorkloadKind::Job, job.to_string().as_bytes(), "default").unwrap();
        assert!(o.done && o.controller.is_none());
        assert_eq!(o.namespace, "default");
        let bad = json!({"metadata": {"name": "x", "ownerReferences": "nope"}, "spec": {}});
        assert!(parse(WorkloadKind::Pod, bad.to_string().as_bytes(), "d").is_err());
    }
}
