//! The background audit of `serve --cluster` (policy `audit.enabled`), a thin adapter: on the
//! holder of the Lease `pullgate-audit` only, a full pass every `audit.interval` and a pass over
//! one namespace soon after its pull Secrets or ServiceAccounts change ([`super::schedule`]),
//! each read through [`super::cluster::pass`] over the webhook's own store. Each pass publishes
//! the `pullgate_audit_*` metrics, one `PullgateAudit` Event per new cause on a workload, and
//! the usage index that answers a Secret DELETE.

use super::cluster::{self, Options};
use super::live::{finding_counts, workload_causes, Announced, Cause, FindingCounts};
use super::policyreport::policy_reports;
use super::publish;
use super::schedule::{Pass, Schedule, Timing};
use super::{AuditReport, UsageIndex};
use crate::engine::policy::{Policy, Reports};
use crate::leader::{self, Elector};
use crate::metrics::{AuditFindingLabels, KindLabels, Metrics, PassLabels};
use crate::store::Store;
use crate::verify::Verifications;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use kube::Client;
use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tracing::{info, warn};

/// Name of the Lease whose holder runs the audit.
pub const LEASE: &str = "pullgate-audit";

/// The usage index of the last completed audit, shared with the admission handler.
#[derive(Debug, Clone, Default)]
pub struct SharedUsage(Arc<RwLock<Option<Arc<UsageIndex>>>>);

impl SharedUsage {
    /// The last completed audit's index; `None` until one completes on this instance.
    pub fn current(&self) -> Option<Arc<UsageIndex>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, usage: Option<Arc<UsageIndex>>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = usage;
    }
}

/// Settings of the audit loop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// This instance's identity (pod name).
    pub identity: String,
    /// How often the schedule is consulted.
    pub tick: Duration,
    /// How often the Lease is renewed (it lasts three times as long).
    pub lease_every: Duration,
    /// Objects per list page.
    pub page_size: u32,
    /// Most Events written per pass; causes beyond wait for the next pass.
    pub events_per_pass: usize,
    /// Causes remembered as announced.
    pub announced_capacity: usize,
    /// Credential verification results, as the verify task last published them.
    pub verifications: Arc<Verifications>,
}

impl Settings {
    /// The serve defaults for this identity.
    pub fn new(lease_namespace: String, identity: String) -> Self {
        Settings {
            lease_namespace,
            identity,
            tick: Duration::from_secs(1),
            lease_every: Duration::from_secs(5),
            page_size: 500,
            events_per_pass: 100,
            announced_capacity: 50_000,
            verifications: Default::default(),
        }
    }
}

/// What the passes have published so far.
struct Published {
    counts: FindingCounts,
    /// The same index the admission handler reads: a full pass moves its own in, a namespace
    /// pass merges into a copy (copy on write).
    usage: Arc<UsageIndex>,
    announced: Announced,
}

/// Audit until `shutdown` turns true: lead through the Lease `pullgate-audit` (released on
/// shutdown), and pass while leading.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    store: Arc<dyn Store>,
    changes: broadcast::Receiver<String>,
    policy: Arc<Policy>,
    metrics: Arc<Metrics>,
    usage: SharedUsage,
    settings: Settings,
    shutdown: watch::Receiver<bool>,
) {
    let elector = Elector::new(
        client.clone(),
        &settings.lease_namespace,
        LEASE,
        &settings.identity,
        settings.lease_every * 3,
    );
    let (leading, lead) = watch::channel(false);
    let tasks = Tasks {
        client,
        store,
        policy,
        metrics,
        usage,
        settings,
    };
    tokio::select! {
        () = leader::keep(elector, tasks.settings.lease_every, &leading, shutdown) => {}
        () = audit_while_leading(&tasks, changes, lead) => {}
    }
}

/// What the passes read and publish to.
struct Tasks {
    client: Client,
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    metrics: Arc<Metrics>,
    usage: SharedUsage,
    settings: Settings,
}

/// The schedule's passes, run while `lead` says this replica holds the Lease.
async fn audit_while_leading(
    t: &Tasks,
    mut changes: broadcast::Receiver<String>,
    lead: watch::Receiver<bool>,
) {
    let timing = Timing::new(t.policy.audit.interval.0);
    let mut schedule = Schedule::new(timing);
    let mut published = Published {
        counts: FindingCounts::new(),
        usage: Arc::default(),
        announced: Announced::new(t.settings.announced_capacity),
    };
    let mut tick = tokio::time::interval(t.settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    let mut changes_open = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = changes.recv(), if changes_open => {
                match r {
                    Ok(ns) => schedule.changed(&ns, Instant::now()),
                    Err(RecvError::Lagged(_)) => schedule.lost_changes(),
                    Err(RecvError::Closed) => changes_open = false,
                }
                continue;
            }
        }
        let now_leading = *lead.borrow();
        if now_leading != leading {
            leading = now_leading;
            if !leading {
                // Another replica audits now: its figures are the ones to read.
                clear(&t.metrics, &mut published, &t.usage);
            }
            schedule = Schedule::new(timing);
        }
        if !leading || !t.store.ready() {
            continue;
        }
        let namespaces = match schedule.next(Instant::now()) {
            Pass::Idle => continue,
            Pass::Full => vec![None],
            Pass::Namespaces(namespaces) => namespaces.into_iter().map(Some).collect(),
        };
        for ns in namespaces {
            pass(
                &t.client,
                &*t.store,
                &t.policy,
                &t.metrics,
                &mut published,
                &t.usage,
                &t.settings,
                ns,
            )
            .await;
        }
    }
}

/// Count the pass's listed objects per kind.
fn record_objects(metrics: &Metrics, stats: &cluster::Stats) {
    for (kind, n) in &stats.per_kind {
        metrics
            .audit_objects
            .get_or_create(&KindLabels { kind })
            .inc_by(*n);
    }
}

/// Keep only the pass's usage index (the results go here), as the one the admission handler
/// reads: the whole index after a full pass, merged into a copy after a namespace pass.
fn keep_usage(
    published: &mut Published,
    usage: &SharedUsage,
    namespace: Option<&str>,
    report: AuditReport,
) {
    match namespace {
        Some(ns) => Arc::make_mut(&mut published.usage).merge_namespace(ns, &report.usage),
        None => published.usage = Arc::new(report.usage),
    }
    usage.set(Some(published.usage.clone()));
}

/// Write the pass's PolicyReports (one per namespace, in place) where `audit.reports` asks for
/// them and the API server serves the CRD; a failure is logged, never fatal to the pass.
async fn publish_reports(
    client: &Client,
    policy: &Policy,
    (namespace, watched): (Option<&str>, &[String]),
    report: &AuditReport,
    now: i64,
) {
    let required = match policy.audit.reports {
        Reports::Off => return,
        Reports::Auto => false,
        Reports::On => true,
    };
    let published = match publish::should_publish(client, required).await {
        Ok(false) => return,
        Ok(true) => {
            let reports = policy_reports(report, now).into_values();
            publish::publish_watched(client, namespace, watched, reports).await
        }
        Err(e) => Err(e),
    };
    match published {
        Ok(stats) => info!(
            namespace = namespace.unwrap_or("*"),
            created = stats.created,
            updated = stats.updated,
            unchanged = stats.unchanged,
            deleted = stats.deleted,
            foreign = stats.foreign,
            failures = stats.failures.len() as u64 + stats.failures_not_listed,
            "PolicyReports published"
        ),
        Err(e) => {
            warn!(error = %e, namespace = namespace.unwrap_or("*"), "PolicyReports not published")
        }
    }
}

fn clear(metrics: &Metrics, published: &mut Published, usage: &SharedUsage) {
    publish_counts(metrics, &mut published.counts, None, FindingCounts::new());
    published.usage = Arc::default();
    usage.set(None);
}

/// One pass over `namespace` (every namespace when `None`), published.
#[allow(clippy::too_many_arguments)]
async fn pass(
    client: &Client,
    store: &dyn Store,
    policy: &Policy,
    metrics: &Metrics,
    published: &mut Published,
    usage: &SharedUsage,
    settings: &Settings,
    namespace: Option<String>,
) {
    let started = Instant::now();
    let options = Options {
        namespace: namespace.clone(),
        watch_namespaces: store.watched_namespaces(),
        page_size: settings.page_size,
        slim: true,
        verified: Some(settings.verifications.snapshot_full()),
        ..Options::default()
    };
    let now = jiff::Timestamp::now();
    let (report, stats) = match cluster::pass(client, store, policy, &options, now.as_second())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, namespace = namespace.as_deref().unwrap_or("*"), "audit pass failed");
            return;
        }
    };
    let scope = if namespace.is_some() {
        "namespace"
    } else {
        "full"
    };
    record_objects(metrics, &stats);
    let causes = workload_causes(&report);
    let summary = report.summary.clone();
    let found = finding_counts(&report);
    let watched = store.watched_namespaces();
    let where_ = (namespace.as_deref(), &watched[..]);
    publish_reports(client, policy, where_, &report, now.as_second()).await;
    keep_usage(published, usage, namespace.as_deref(), report);
    let current: HashSet<Cause> = causes.iter().map(|(c, _)| c.clone()).collect();
    published.announced.resolve(namespace.as_deref(), &current);
    publish_counts(metrics, &mut published.counts, namespace.as_deref(), found);
    let written = announce(
        client,
        &mut published.announced,
        &causes,
        settings.events_per_pass,
        now,
    )
    .await;
    let elapsed = started.elapsed();
    record_duration(metrics, scope, elapsed);
    info!(
        scope,
        namespace = namespace.as_deref().unwrap_or("*"),
        workloads = summary.workloads,
        workloads_with_problems = summary.workloads_with_problems,
        pods = summary.pods,
        pods_with_problems = summary.pods_with_problems,
        objects = stats.objects,
        events = written,
        elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        evaluation_ms = u64::try_from(stats.evaluation.as_millis()).unwrap_or(u64::MAX),
        "audit pass complete"
    );
}

/// A pass of `scope` took `elapsed` and has just ended.
fn record_duration(metrics: &Metrics, scope: &'static str, elapsed: Duration) {
    metrics
        .audit_duration
        .get_or_create(&PassLabels { scope })
        .observe(elapsed.as_secs_f64());
    metrics
        .audit_last_run
        .set(jiff::Timestamp::now().as_millisecond() as f64 / 1_000.0);
}

/// Record an Event for each cause not announced yet, at most `limit`; returns how many.
async fn announce(
    client: &Client,
    announced: &mut Announced,
    causes: &[(Cause, String)],
    limit: usize,
    now: jiff::Timestamp,
) -> usize {
    let mut written = 0;
    for (cause, message) in causes {
        if written >= limit {
            break;
        }
        if announced.fresh(cause) {
            record_event(client, cause, message, now).await;
            written += 1;
        }
    }
    written
}

/// Set the finding gauges of the namespaces a pass covered to what it found, removing the
/// series that went back to zero.
fn publish_counts(
    metrics: &Metrics,
    published: &mut FindingCounts,
    namespace: Option<&str>,
    found: FindingCounts,
) {
    let covered: Vec<String> = match namespace {
        Some(ns) => vec![ns.to_owned()],
        None => published.keys().cloned().collect(),
    };
    for ns in covered {
        let Some(old) = published.remove(&ns) else {
            continue;
        };
        for code in old.keys() {
            if !found.get(&ns).is_some_and(|m| m.contains_key(code)) {
                metrics.audit_findings.remove(&AuditFindingLabels {
                    namespace: ns.clone(),
                    code: code.as_str(),
                });
            }
        }
    }
    for (ns, codes) in &found {
        for (code, n) in codes {
            let labels = AuditFindingLabels {
                namespace: ns.clone(),
                code: code.as_str(),
            };
            if let Some(g) = metrics.audit_findings.series(&labels) {
                g.set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
    }
    published.extend(found);
}

async fn record_event(client: &Client, cause: &Cause, message: &str, now: jiff::Timestamp) {
    let event = crate::events::event(
        crate::events::EventSpec {
            kind: &cause.kind,
            namespace: &cause.namespace,
            name: &cause.name,
            uid: Some(cause.uid.as_str()).filter(|u| !u.is_empty()),
            reason: "PullgateAudit",
            type_: "Warning",
            message: format!("{}: {message}", cause.code),
        },
        now,
    );
    let api: Api<Event> = Api::namespaced(client.clone(), &cause.namespace);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        warn!(error = %e, namespace = %cause.namespace, workload = %cause.name, "could not record the audit event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Code;

    fn counts(entries: &[(&str, Code, u64)]) -> FindingCounts {
        let mut c = FindingCounts::new();
        for (ns, code, n) in entries {
            c.entry((*ns).to_owned()).or_default().insert(*code, *n);
        }
        c
    }

    fn exported(m: &Metrics) -> Vec<String> {
        let mut v: Vec<String> = m
            .encode()
            .lines()
            .filter(|l| l.starts_with("pullgate_audit_findings{"))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn finding_series_follow_the_passes_and_go_at_zero() {
        let m = Metrics::new();
        let mut published = FindingCounts::new();
        publish_counts(
            &m,
            &mut published,
            None,
            counts(&[
                ("shop", Code::SecretNotFound, 2),
                ("web", Code::NoCredentials, 1),
            ]),
        );
        assert_eq!(exported(&m).len(), 2, "{:?}", exported(&m));
        // A pass over shop: its SecretNotFound is fixed, a new code appears; web is untouched.
        publish_counts(
            &m,
            &mut published,
            Some("shop"),
            counts(&[("shop", Code::ServiceAccountNotPatched, 1)]),
        );
        assert_eq!(
            exported(&m),
            [
                r#"pullgate_audit_findings{namespace="shop",code="ServiceAccountNotPatched"} 1"#,
                r#"pullgate_audit_findings{namespace="web",code="NoCredentials"} 1"#,
            ]
        );
        // A full pass that finds nothing removes every series.
        publish_counts(&m, &mut published, None, FindingCounts::new());
        assert!(exported(&m).is_empty(), "{:?}", exported(&m));
        assert!(published.is_empty());
    }
}
