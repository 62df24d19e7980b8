//! Prometheus metrics (prometheus-client), all named `pullgate_*` with units in the name.
//!
//! Families whose label values come from input (namespaces, secrets, registry keys) are [`Bounded`]:
//! at most `max_series` label sets get their own series, so no client can grow pullgate's memory or
//! its scrapers' series without limit.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

/// Label value that stands for every label set beyond a family's cap.
pub const OVERFLOW: &str = "_overflow";
/// Default cap on the series of one bounded family (`--metrics-max-series`).
pub const DEFAULT_MAX_SERIES: usize = 1000;

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
    /// The policy's `registries.private` pattern that made the image need credentials, or `other`
    /// (never the image's own host, which any pod author can make up).
    pub registry: String,
}

/// A label set whose input-derived values can all be replaced by [`OVERFLOW`].
pub trait Overflow {
    /// The label set that collects what exceeds the family's cap.
    fn overflow(&self) -> Self;
}

impl Overflow for WouldDenyLabels {
    fn overflow(&self) -> Self {
        WouldDenyLabels {
            namespace: OVERFLOW.to_owned(),
            registry: OVERFLOW.to_owned(),
        }
    }
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

impl Overflow for CauseLabels {
    fn overflow(&self) -> Self {
        CauseLabels {
            namespace: OVERFLOW.to_owned(),
            cause: self.cause,
        }
    }
}

/// Labels of the audit's finding counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditFindingLabels {
    /// Namespace of the workloads.
    pub namespace: String,
    /// Finding code.
    pub code: &'static str,
}

/// Labels of an audit pass.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassLabels {
    /// full | namespace.
    pub scope: &'static str,
}

/// Labels of the overflow counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    /// The bounded metric, as exported.
    pub metric: &'static str,
}

/// A metric family with at most `max` series of its own.
///
/// Beyond the cap, [`Bounded::get_or_create`] answers with the family's [`OVERFLOW`] series (counters:
/// the family's sum stays exact) and [`Bounded::series`] with nothing (gauges, whose values do not
/// add up); either way `pullgate_metric_series_overflow_total{metric}` counts the update.
#[derive(Debug)]
pub struct Bounded<S, M> {
    family: Family<S, M>,
    /// The label sets that have their own series; the lock also orders their creation against the cap.
    own: Mutex<HashSet<S>>,
    max: usize,
    overflowed: Counter,
}

impl<S: Clone + Hash + Eq, M: Clone + Default> Bounded<S, M> {
    fn new(max: usize, overflowed: Counter) -> Self {
        Bounded {
            family: Family::default(),
            own: Mutex::new(HashSet::new()),
            max,
            overflowed,
        }
    }

    /// The series of `labels`, created while the family is below its cap; `None` beyond it.
    pub fn series(&self, labels: &S) -> Option<M> {
        if let Some(m) = self.family.get(labels) {
            return Some(m.clone());
        }
        let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
        if own.len() >= self.max && !own.contains(labels) {
            drop(own);
            self.overflowed.inc();
            return None;
        }
        own.insert(labels.clone());
        Some(self.family.get_or_create_owned(labels))
    }

    /// Remove the series of `labels`, freeing its place under the cap.
    pub fn remove(&self, labels: &S) -> bool {
        let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
        own.remove(labels);
        self.family.remove(labels)
    }

    /// Remove every own series whose labels `gone` selects (the overflow series stays).
    pub fn remove_where(&self, gone: impl Fn(&S) -> bool) {
        let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
        own.retain(|l| {
            if gone(l) {
                self.family.remove(l);
                false
            } else {
                true
            }
        });
    }

    /// Number of label sets with a series of their own.
    pub fn len(&self) -> usize {
        self.own
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no label set has a series of its own.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: Clone + Hash + Eq + Overflow, M: Clone + Default> Bounded<S, M> {
    /// The series of `labels`, or the family's overflow series once it is at its cap.
    pub fn get_or_create(&self, labels: &S) -> M {
        self.series(labels)
            .unwrap_or_else(|| self.family.get_or_create_owned(&labels.overflow()))
    }
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
    pub would_deny: Bounded<WouldDenyLabels, Counter>,
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
    pub credential_status: Bounded<CredentialLabels, Gauge>,
    /// When each credential was last verified.
    pub credential_last_verified: Bounded<CredentialKeyLabels, Gauge<f64, AtomicU64>>,
    /// Pods diagnosed with an image pull failure, once per pod and cause (`attribution`).
    pub image_pull_failures: Bounded<CauseLabels, Counter>,
    /// Pods deleted so that their controller recreates them with injected secrets.
    pub pod_restarts: Bounded<CauseLabels, Counter>,
    /// Pull-failure Events by what attribution did with them.
    pub attribution_events: Family<OutcomeLabels, Counter>,
    /// Pods waiting for a diagnosis.
    pub attribution_queued: Gauge,
    /// Workloads (and lone pods) with a finding, by namespace and code, as of the last audit.
    pub audit_findings: Bounded<AuditFindingLabels, Gauge>,
    /// End of the last completed audit pass.
    pub audit_last_run: Gauge<f64, AtomicU64>,
    /// Time an audit pass took.
    pub audit_duration: Family<PassLabels, Histogram>,
    /// Objects the audit read, by kind.
    pub audit_objects: Family<KindLabels, Counter>,
}

/// Histogram buckets in seconds of an audit pass: from one namespace to a large cluster.
const AUDIT_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

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
    /// Create and register every metric, bounded families capped at [`DEFAULT_MAX_SERIES`].
    pub fn new() -> Self {
        Self::with_max_series(DEFAULT_MAX_SERIES)
    }

    /// Create and register every metric, each bounded family capped at `max_series` series.
    pub fn with_max_series(max_series: usize) -> Self {
        let mut registry = Registry::with_prefix("pullgate");
        let overflow = Family::<MetricLabels, Counter>::default();
        registry.register(
            "metric_series_overflow",
            "Updates of a bounded metric family at its series cap (--metrics-max-series), folded into its _overflow series or dropped",
            overflow.clone(),
        );
        let overflowed =
            |metric: &'static str| overflow.get_or_create_owned(&MetricLabels { metric });
        let mut metrics = Metrics {
            registry,
            requests: Family::<RequestLabels, Counter>::default(),
            duration: Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(BUCKETS)
            }),
            denials: Family::<CodeLabels, Counter>::default(),
            warnings: Family::<CodeLabels, Counter>::default(),
            would_deny: Bounded::new(max_series, overflowed("pullgate_would_deny_total")),
            injected: Family::<KindLabels, Counter>::default(),
            store_objects: Family::<KindLabels, Gauge>::default(),
            store_last_reload: Gauge::<f64, AtomicU64>::default(),
            store_last_sync: Family::<ResourceLabels, Gauge<f64, AtomicU64>>::default(),
            store_stale: Gauge::default(),
            cert_expiry: Gauge::<f64, AtomicU64>::default(),
            credential_status: Bounded::new(max_series, overflowed("pullgate_credential_status")),
            credential_last_verified: Bounded::new(
                max_series,
                overflowed("pullgate_credential_last_verified_timestamp_seconds"),
            ),
            image_pull_failures: Bounded::new(
                max_series,
                overflowed("pullgate_image_pull_failures_total"),
            ),
            pod_restarts: Bounded::new(max_series, overflowed("pullgate_pod_restarts_total")),
            attribution_events: Family::<OutcomeLabels, Counter>::default(),
            attribution_queued: Gauge::default(),
            audit_findings: Bounded::new(max_series, overflowed("pullgate_audit_findings")),
            audit_last_run: Gauge::<f64, AtomicU64>::default(),
            audit_duration: Family::<PassLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(AUDIT_BUCKETS)
            }),
            audit_objects: Family::<KindLabels, Counter>::default(),
        };
        metrics.register_admission();
        metrics.register_store();
        metrics.register_credentials();
        metrics.register_attribution();
        metrics.register_audit();
        metrics
    }

    /// Register the metrics of one area. Admission: requests, latency, denials, warnings and injections.
    fn register_admission(&mut self) {
        self.registry.register(
            "admission_requests",
            "Admission requests by endpoint, kind, operation and result",
            self.requests.clone(),
        );
        self.registry.register(
            "admission_duration_seconds",
            "Time to answer an admission request",
            self.duration.clone(),
        );
        self.registry.register(
            "denials",
            "Denied admissions by finding code",
            self.denials.clone(),
        );
        self.registry.register(
            "warnings",
            "Admission warnings by finding code",
            self.warnings.clone(),
        );
        self.registry.register(
            "would_deny",
            "Admissions that deny mode would have rejected (warn mode), by namespace and the policy's private-registry pattern",
            self.would_deny.family.clone(),
        );
        self.registry.register(
            "injected_secrets",
            "imagePullSecrets injected, by kind of object",
            self.injected.clone(),
        );
    }

    /// Register the metrics of one area. The store, and the serving certificate.
    fn register_store(&mut self) {
        self.registry.register(
            "store_objects",
            "Objects in the store by kind",
            self.store_objects.clone(),
        );
        self.registry.register(
            "store_last_reload_timestamp_seconds",
            "Time of the last successful store (re)load",
            self.store_last_reload.clone(),
        );
        self.registry.register(
            "store_last_sync_timestamp_seconds",
            "Time of the last event or relist per watched resource",
            self.store_last_sync.clone(),
        );
        self.registry.register(
            "store_stale",
            "1 while the store may be out of date",
            self.store_stale.clone(),
        );
        self.registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate",
            self.cert_expiry.clone(),
        );
    }

    /// Register the metrics of one area. Credential verification (`verify`).
    fn register_credentials(&mut self) {
        self.registry.register(
            "credential_status",
            "1 for the current verification status of a pull secret's credential for a registry",
            self.credential_status.family.clone(),
        );
        self.registry.register(
            "credential_last_verified_timestamp_seconds",
            "Time a pull secret's credential for a registry was last verified",
            self.credential_last_verified.family.clone(),
        );
    }

    /// Register the metrics of one area. Pull-failure attribution (`attribution`).
    fn register_attribution(&mut self) {
        self.registry.register(
            "image_pull_failures",
            "Pods diagnosed with an image pull failure, once per pod and cause",
            self.image_pull_failures.family.clone(),
        );
        self.registry.register(
            "pod_restarts",
            "Pods stuck on a pull failure that pullgate deleted so that their controller recreates them",
            self.pod_restarts.family.clone(),
        );
        self.registry.register(
            "attribution_events",
            "Pull-failure Events by outcome (queued, coalesced, dropped; then per pod: diagnosed, duplicate, started, pod_gone, not_leader, event_dropped, error)",
            self.attribution_events.clone(),
        );
        self.registry.register(
            "attribution_queued_pods",
            "Pods waiting for a pull-failure diagnosis",
            self.attribution_queued.clone(),
        );
    }

    /// Register the metrics of one area. The background audit.
    fn register_audit(&mut self) {
        self.registry.register(
            "audit_findings",
            "Workloads and pods owned by none with a finding, by namespace and code, as of the last audit",
            self.audit_findings.family.clone(),
        );
        self.registry.register(
            "audit_last_run_timestamp_seconds",
            "End of the last completed audit pass",
            self.audit_last_run.clone(),
        );
        self.registry.register(
            "audit_duration_seconds",
            "Time an audit pass took, by scope (full or namespace)",
            self.audit_duration.clone(),
        );
        self.registry.register(
            "audit_objects",
            "Objects the audit read, by kind",
            self.audit_objects.clone(),
        );
    }

    /// Drop the series of a deleted namespace, so that namespaces coming and going do not fill the caps.
    pub fn forget_namespace(&self, namespace: &str) {
        self.would_deny.remove_where(|l| l.namespace == namespace);
        self.image_pull_failures
            .remove_where(|l| l.namespace == namespace);
        self.pod_restarts.remove_where(|l| l.namespace == namespace);
        self.credential_status
            .remove_where(|l| l.namespace == namespace);
        self.credential_last_verified
            .remove_where(|l| l.namespace == namespace);
        self.audit_findings
            .remove_where(|l| l.namespace == namespace);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(ns: &str, registry: &str) -> WouldDenyLabels {
        WouldDenyLabels {
            namespace: ns.to_owned(),
            registry: registry.to_owned(),
        }
    }

    fn overflowed(m: &Metrics, metric: &str) -> Option<f64> {
        let prefix = format!("pullgate_metric_series_overflow_total{{metric=\"{metric}\"}} ");
        m.encode()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
    }

    #[test]
    fn counters_beyond_the_cap_fold_into_one_overflow_series() {
        let m = Metrics::with_max_series(3);
        for i in 0..10 {
            m.would_deny
                .get_or_create(&deny(&format!("ns{i}"), "*"))
                .inc();
        }
        // An existing series keeps counting at the cap.
        m.would_deny.get_or_create(&deny("ns0", "*")).inc();
        assert_eq!(m.would_deny.len(), 3);
        let text = m.encode();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("pullgate_would_deny_total{"))
            .collect();
        assert_eq!(series.len(), 4, "{text}");
        assert!(
            text.contains(
                r#"pullgate_would_deny_total{namespace="_overflow",registry="_overflow"} 7"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"pullgate_would_deny_total{namespace="ns0",registry="*"} 2"#));
        assert_eq!(overflowed(&m, "pullgate_would_deny_total"), Some(7.0));
    }

    #[test]
    fn cause_overflow_keeps_the_cause() {
        let m = Metrics::with_max_series(1);
        for ns in ["a", "b"] {
            m.image_pull_failures
                .get_or_create(&CauseLabels {
                    namespace: ns.to_owned(),
                    cause: "SecretMissing",
                })
                .inc();
        }
        let text = m.encode();
        assert!(
            text.contains(r#"pullgate_image_pull_failures_total{namespace="_overflow",cause="SecretMissing"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn gauges_beyond_the_cap_are_not_exported_but_counted() {
        let m = Metrics::with_max_series(2);
        let key = |secret: &str| CredentialKeyLabels {
            namespace: "a".to_owned(),
            secret: secret.to_owned(),
            registry: "r.io".to_owned(),
        };
        assert!(m.credential_last_verified.series(&key("s1")).is_some());
        assert!(m.credential_last_verified.series(&key("s2")).is_some());
        assert!(m.credential_last_verified.series(&key("s3")).is_none());
        assert!(m.credential_last_verified.series(&key("s1")).is_some());
        assert_eq!(
            overflowed(&m, "pullgate_credential_last_verified_timestamp_seconds"),
            Some(1.0)
        );
        // Removing a series frees its place.
        assert!(m.credential_last_verified.remove(&key("s1")));
        assert!(m.credential_last_verified.series(&key("s3")).is_some());
        assert_eq!(m.credential_last_verified.len(), 2);
    }

    #[test]
    fn a_deleted_namespace_frees_its_series() {
        let m = Metrics::with_max_series(2);
        m.would_deny.get_or_create(&deny("gone", "*")).inc();
        m.would_deny.get_or_create(&deny("gone", "other")).inc();
        m.would_deny.get_or_create(&deny("new", "*")).inc();
        m.forget_namespace("gone");
        assert!(m.would_deny.is_empty());
        m.would_deny.get_or_create(&deny("new", "*")).inc();
        let text = m.encode();
        assert!(!text.contains(r#"namespace="gone""#), "{text}");
        assert!(
            text.contains(r#"pullgate_would_deny_total{namespace="new",registry="*"} 1"#),
            "{text}"
        );
        // The overflow series (from before) stays: counters never go back.
        assert!(text.contains(r#"namespace="_overflow""#), "{text}");
    }
}
