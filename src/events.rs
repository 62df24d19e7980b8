//! core/v1 Events that pullgate records on the objects it acts on (ServiceAccounts, Secrets, Pods,
//! and the workloads the audit finds broken).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// Who records the Events.
const COMPONENT: &str = "pullgate";

/// What an Event is about and says.
pub struct EventSpec<'a> {
    /// Kind of the object (a core/v1, apps/v1 or batch/v1 kind).
    pub kind: &'a str,
    /// Namespace of the object (and of the Event).
    pub namespace: &'a str,
    /// Name of the object.
    pub name: &'a str,
    /// UID of the object, when known (`kubectl describe` selects Events by it).
    pub uid: Option<&'a str>,
    /// CamelCase reason.
    pub reason: &'a str,
    /// `Normal` or `Warning`.
    pub type_: &'a str,
    /// Human message.
    pub message: String,
}

/// A new Event about an object, stamped `now`.
pub fn event(spec: EventSpec<'_>, now: jiff::Timestamp) -> Event {
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", spec.name)),
            namespace: Some(spec.namespace.to_owned()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(api_version(spec.kind).to_owned()),
            kind: Some(spec.kind.to_owned()),
            name: Some(spec.name.to_owned()),
            namespace: Some(spec.namespace.to_owned()),
            uid: spec.uid.map(str::to_owned),
            ..Default::default()
        },
        reason: Some(spec.reason.to_owned()),
        message: Some(spec.message),
        type_: Some(spec.type_.to_owned()),
        reporting_component: Some(COMPONENT.to_owned()),
        source: Some(EventSource {
            component: Some(COMPONENT.to_owned()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    }
}

/// The apiVersion of a kind pullgate records Events on.
fn api_version(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => "v1",
    }
}
