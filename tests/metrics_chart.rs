//! Every metric the chart's dashboard and alerts query (charts/pullgate/metrics.txt) is one the server exports.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

fn exported() -> BTreeSet<String> {
    use pullgate::metrics::*;
    let m = Metrics::new();
    // Families without a sample are not exposed at all: give each one sample.
    m.requests
        .get_or_create(&RequestLabels {
            endpoint: "validate",
            kind: "Pod",
            operation: "CREATE",
            result: "denied",
        })
        .inc();
    m.duration
        .get_or_create(&EndpointLabels {
            endpoint: "validate",
        })
        .observe(0.001);
    m.denials
        .get_or_create(&CodeLabels {
            code: "NoCredentials",
        })
        .inc();
    m.warnings
        .get_or_create(&CodeLabels {
            code: "NoCredentials",
        })
        .inc();
    m.would_deny
        .get_or_create(&WouldDenyLabels {
            namespace: "a".into(),
            registry: "r".into(),
        })
        .inc();
    m.injected.get_or_create(&KindLabels { kind: "Pod" }).inc();
    m.store_objects
        .get_or_create(&KindLabels { kind: "Secret" })
        .set(1);
    m.store_last_sync
        .get_or_create(&ResourceLabels {
            resource: "secrets",
        })
        .set(1.0);
    for family in [&m.image_pull_failures, &m.pod_restarts] {
        family
            .get_or_create(&CauseLabels {
                namespace: "a".into(),
                cause: "SecretMissing",
            })
            .inc();
    }
    m.attribution_events
        .get_or_create(&OutcomeLabels { outcome: "queued" })
        .inc();
    if let Some(g) = m.audit_findings.series(&AuditFindingLabels {
        namespace: "a".into(),
        code: "SecretNotFound",
    }) {
        g.set(1);
    }
    m.audit_last_run.set(1.0);
    m.audit_duration
        .get_or_create(&PassLabels { scope: "full" })
        .observe(1.0);
    m.audit_objects
        .get_or_create(&KindLabels { kind: "Pod" })
        .inc();
    let text = m.encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() != Some("#") || parts.next() != Some("TYPE") {
            continue;
        }
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        // OpenMetrics names counters without `_total` in TYPE lines; samples carry it.
        names.insert(if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_owned()
        });
    }
    names
}

#[test]
fn chart_metrics_are_exported() {
    let listed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/pullgate/metrics.txt"
    ))
    .expect("charts/pullgate/metrics.txt");
    let exported = exported();
    assert!(exported.len() >= 11, "{exported:?}");
    let missing: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !exported.contains(*l))
        .collect();
    assert!(
        missing.is_empty(),
        "queried by the chart but not exported: {missing:?}; exported: {exported:?}"
    );
}

#[test]
fn every_exported_metric_is_pullgate_prefixed_with_units() {
    for name in exported() {
        assert!(name.starts_with("pullgate_"), "{name}");
        let unit_ok = name.ends_with("_total")
            || name.ends_with("_seconds")
            // Gauges that count objects: the unit is the object, named last.
            || name == "pullgate_store_objects"
            || name == "pullgate_attribution_queued_pods"
            || name == "pullgate_audit_findings"
            || name == "pullgate_store_stale"
            || name.starts_with("pullgate_credential_status");
        assert!(unit_ok, "{name} has no unit suffix");
    }
}
