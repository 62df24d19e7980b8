//! Prometheus metrics (prometheus-client), all named `pullgate_*` with units in the name.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of an admission request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// mutate | validate.
    pub endpoint: &'static str,
    /// Kind reviewed (Pod, ServiceAccount, …; "other" for the rest).
    pub kind: &'static str,
    /// CREATE, UPDATE, …
    pub operation: &'static str,
    /// allowed | denied | mutated | error.
    pub result: &'static str,
}

/// Labels with an endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// mutate | validate.
    pub endpoint: &'static str,
}

/// Labels with a finding code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// Finding code.
    pub code: &'static str,
}

/// Labels of a would-deny.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WouldDenyLabels {
    /// Namespace.
    pub namespace: String,
    /// Registry host of the image.
    pub registry: String,
}

/// Labels with a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Object kind.
    pub kind: &'static str,
}

/// Labels with a watched resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// secrets | serviceaccounts | namespaces.
    pub resource: &'static str,
}

/// Labels of a verified credential's status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    /// Namespace of the secret.
    pub namespace: String,
    /// The secret.
    pub secret: String,
    /// The registry key verified.
    pub registry: String,
    /// valid | rejected | unreachable | unsupported.
    pub status: &'static str,
}

/// Labels of a verified credential.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialKeyLabels {
    /// Namespace of the secret.
    pub namespace: String,
    /// The secret.
    pub secret: String,
    /// The registry key verified.
    pub registry: String,
}

/// Labels of pull-failure attribution counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    /// Namespace of the pod.
    pub namespace: String,
    /// Diagnosed cause.
    pub cause: &'static str,
}

/// What attribution did with a pull-failure Event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// queued, coalesced, dropped, diagnosed, duplicate, started, pod_gone, not_leader, event_dropped, error.
    pub outcome: &'static str,
}

/// Every metric pullgate exports.
pub struct Metrics {
    registry: Registry,
    /// Admission requests by endpoint, kind, operation and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Handling latency.
    pub duration: Family<EndpointLabels, Histogram>,
    /// Denials by finding code.
    pub denials: Family<CodeLabels, Counter>,
    /// Warnings by finding code.
    pub warnings: Family<CodeLabels, Counter>,
    /// What deny mode would have rejected, in warn mode.
    pub would_deny: Family<WouldDenyLabels, Counter>,
    /// Secrets injected, by kind of object.
    pub injected: Family<KindLabels, Counter>,
    /// Objects in the store.
    pub store_objects: Family<KindLabels, Gauge>,
    /// Last successful (re)load of the store.
    pub store_last_reload: Gauge<f64, AtomicU64>,
    /// Last sync of each watched resource.
    pub store_last_sync: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    /// 1 while the store may be out of date (a watch is down or a reload failed).
    pub store_stale: Gauge,
    /// notAfter of the serving certificate.
    pub cert_expiry: Gauge<f64, AtomicU64>,
    /// 1 for a verified credential's current status, 0 for the others (`verify`).
    pub credential_status: Family<CredentialLabels, Gauge>,
    /// When each credential was last verified.
    pub credential_last_verified: Family<CredentialKeyLabels, Gauge<f64, AtomicU64>>,
    /// Pods diagnosed with an image pull failure, once per pod and cause (`attribution`).
    pub image_pull_failures: Family<CauseLabels, Counter>,
    /// Pods deleted so that their controller recreates them with injected secrets.
    pub pod_restarts: Family<CauseLabels, Counter>,
    /// Pull-failure Events by what attribution did with them.
    pub attribution_events: Family<OutcomeLabels, Counter>,
    /// Pods waiting for a diagnosis.
    pub attribution_queued: Gauge,
}

/// Histogram buckets in seconds: sub-millisecond resolution where admission lives, up to the webhook timeout.
const BUCKETS: [f64; 15] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pullgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests by endpoint, kind, operation and result",
            requests.clone(),
        );
        let duration =
            Family::<EndpointLabels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission request",
            duration.clone(),
        );
        let denials = Family::<CodeLabels, Counter>::default();
        registry.register(
            "denials",
            "Denied admissions by finding code",
            denials.clone(),
        );
        let warnings = Family::<CodeLabels, Counter>::default();
        registry.register(
            "warnings",
            "Admission warnings by finding code",
            warnings.clone(),
        );
        let would_deny = Family::<WouldDenyLabels, Counter>::default();
        registry.register(
            "would_deny",
            "Admissions that deny mode would have rejected (warn mode)",
            would_deny.clone(),
        );
        let injected = Family::<KindLabels, Counter>::default();
        registry.register(
            "injected_secrets",
            "imagePullSecrets injected, by kind of object",
            injected.clone(),
        );
        let store_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "store_objects",
            "Objects in the store by kind",
            store_objects.clone(),
        );
        let store_last_reload = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "store_last_reload_timestamp_seconds",
            "Time of the last successful store (re)load",
            store_last_reload.clone(),
        );
        let store_last_sync = Family::<ResourceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "store_last_sync_timestamp_seconds",
            "Time of the last event or relist per watched resource",
            store_last_sync.clone(),
        );
        let store_stale = Gauge::default();
        registry.register(
            "store_stale",
            "1 while the store may be out of date",
            store_stale.clone(),
        );
        let cert_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate",
            cert_expiry.clone(),
        );
        let credential_status = Family::<CredentialLabels, Gauge>::default();
        registry.register(
            "credential_status",
            "1 for the current verification status of a pull secret's credential for a registry",
            credential_status.clone(),
        );
        let credential_last_verified =
            Family::<CredentialKeyLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "credential_last_verified_timestamp_seconds",
            "Time a pull secret's credential for a registry was last verified",
            credential_last_verified.clone(),
        );
        let image_pull_failures = Family::<CauseLabels, Counter>::default();
        registry.register(
            "image_pull_failures",
            "Pods diagnosed with an image pull failure, once per pod and cause",
            image_pull_failures.clone(),
        );
        let pod_restarts = Family::<CauseLabels, Counter>::default();
        registry.register(
            "pod_restarts",
            "Pods stuck on a pull failure that pullgate deleted so that their controller recreates them",
            pod_restarts.clone(),
        );
        let attribution_events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "attribution_events",
            "Pull-failure Events by outcome (queued, coalesced, dropped; then per pod: diagnosed, duplicate, started, pod_gone, not_leader, event_dropped, error)",
            attribution_events.clone(),
        );
        let attribution_queued = Gauge::default();
        registry.register(
            "attribution_queued_pods",
            "Pods waiting for a pull-failure diagnosis",
            attribution_queued.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            denials,
            warnings,
            would_deny,
            injected,
            store_objects,
            store_last_reload,
            store_last_sync,
            store_stale,
            cert_expiry,
            credential_status,
            credential_last_verified,
            image_pull_failures,
            pod_restarts,
            attribution_events,
            attribution_queued,
        }
    }

    /// The registry for extra collectors (e.g. the cluster store).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A low-cardinality label for an operation string.
pub fn operation_label(op: &str) -> &'static str {
    match op {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

/// A low-cardinality label for a kind string.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "Pod" => "Pod",
        "ServiceAccount" => "ServiceAccount",
        "Secret" => "Secret",
        "Deployment" => "Deployment",
        "StatefulSet" => "StatefulSet",
        "DaemonSet" => "DaemonSet",
        "ReplicaSet" => "ReplicaSet",
        "ReplicationController" => "ReplicationController",
        "Job" => "Job",
        "CronJob" => "CronJob",
        _ => "other",
    }
}
