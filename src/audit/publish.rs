//! The thin adapter writing [`PolicyReport`]s: discovery of the CRD (never installed here),
//! create-or-update in place per namespace (get, then replace with the resourceVersion read,
//! retried on 409), deletion of pullgate's report where nothing is reported any more. Reports
//! pullgate does not own (without its `managed-by` label) are never written or deleted.

use super::policyreport::{
    PolicyReport, ReportResult, Timestamp, API_VERSION, GROUP, KIND, MANAGED_BY,
    NOT_LISTED_ANNOTATION, PLURAL, REPORT_NAME, VERSION,
};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::Client;
use std::collections::{BTreeMap, BTreeSet};

/// Attempts at writing one report when other writers keep winning the race.
const MAX_ATTEMPTS: u32 = 5;

/// Namespaces whose failures are kept in [`PublishStats::failures`]; beyond, only counted.
const MAX_FAILURES: usize = 20;

/// Field manager of pullgate's writes.
const FIELD_MANAGER: &str = "pullgate";

/// Why reports could not be published.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Discovery of `wgpolicyk8s.io/v1alpha2` failed (other than "not served").
    #[error("cannot discover {API_VERSION}: {0}")]
    Discovery(#[source] kube::Error),
    /// pullgate's existing reports could not be listed.
    #[error("cannot list PolicyReports: {0}")]
    List(#[source] kube::Error),
    /// A report could not be encoded.
    #[error("cannot encode the PolicyReport of namespace {namespace}: {source}")]
    Encode {
        /// Namespace.
        namespace: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What a publication did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Reports created.
    pub created: u64,
    /// Reports replaced in place.
    pub updated: u64,
    /// Reports already saying the same (only timestamps would change): not written.
    pub unchanged: u64,
    /// pullgate's reports deleted in namespaces with nothing to report.
    pub deleted: u64,
    /// Namespaces where a report named [`REPORT_NAME`] exists but is not pullgate's: untouched.
    pub foreign: u64,
    /// Writes lost to another writer and retried (409 Conflict).
    pub conflicts: u64,
    /// Namespaces whose report could not be written or deleted, with the cause (at most 20).
    pub failures: Vec<String>,
    /// Failures beyond those listed.
    pub failures_not_listed: u64,
}

impl PublishStats {
    fn fail(&mut self, namespace: &str, what: &str, e: &kube::Error) {
        tracing::warn!(namespace, error = %e, "cannot {what} the PolicyReport");
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(format!(
                "cannot {what} the PolicyReport in {namespace}: {e}"
            ));
        } else {
            self.failures_not_listed += 1;
        }
    }
}

fn resource() -> ApiResource {
    ApiResource {
        group: GROUP.to_owned(),
        version: VERSION.to_owned(),
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        plural: PLURAL.to_owned(),
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether the API server serves `policyreports` in `wgpolicyk8s.io/v1alpha2`.
pub async fn reports_served(client: &Client) -> Result<bool, ReportError> {
    match client.list_api_group_resources(API_VERSION).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == PLURAL)),
        Err(e) if status_code(&e) == Some(404) => Ok(false),
        Err(e) => Err(ReportError::Discovery(e)),
    }
}

/// Whether to publish now: when the CRD is served. `required` (mode `on`) makes an absent CRD
/// an error in the log, since reports were asked for; mode `auto` passes `false`, and mode `off`
/// does not call this at all.
pub async fn should_publish(client: &Client, required: bool) -> Result<bool, ReportError> {
    let served = reports_served(client).await?;
    if !served && required {
        tracing::error!(
            "audit.reports is on but the API server does not serve {PLURAL}.{GROUP}/{VERSION}: \
             no PolicyReports written (install the CRD, e.g. with the chart's \
             audit.installPolicyReportCrd, or set audit.reports to auto)"
        );
    }
    Ok(served)
}

fn owned(o: &DynamicObject) -> bool {
    o.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1)
}

/// A result without its timestamp: equal keys are the same finding, found earlier or now.
fn key(r: &ReportResult) -> Option<String> {
    let mut v = serde_json::to_value(r).ok()?;
    v.as_object_mut()?.remove("timestamp");
    Some(v.to_string())
}

/// `desired` with each result's timestamp taken from `current` where the same result was
/// already reported (a result's time is when it was found), and whether anything but those
/// timestamps differs.
fn carry_over(desired: &mut PolicyReport, current: &DynamicObject) -> bool {
    let old: Vec<ReportResult> = current
        .data
        .get("results")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let old_keys: Vec<(String, Timestamp)> = old
        .iter()
        .filter_map(|r| Some((key(r)?, r.timestamp)))
        .collect();
    let mut same = old_keys.len() == desired.results.len();
    for (i, r) in desired.results.iter_mut().enumerate() {
        let Some(k) = key(r) else {
            same = false;
            continue;
        };
        if let Some((_, t)) = old_keys.iter().find(|(o, _)| *o == k) {
            r.timestamp = *t;
        }
        same &= old_keys.get(i).is_some_and(|(o, _)| *o == k);
    }
    let not_listed = |a: Option<&BTreeMap<String, String>>| {
        a.and_then(|a| a.get(NOT_LISTED_ANNOTATION)).cloned()
    };
    same && current.data.get("summary") == serde_json::to_value(&desired.summary).ok().as_ref()
        && not_listed(current.metadata.annotations.as_ref())
            == not_listed(Some(&desired.metadata.annotations))
}

/// The object to write: `desired`, keeping the labels and annotations others set on `current`.
fn to_object(
    desired: &PolicyReport,
    current: Option<&DynamicObject>,
) -> Result<DynamicObject, serde_json::Error> {
    let mut obj: DynamicObject = serde_json::from_value(serde_json::to_value(desired)?)?;
    if let Some(cur) = current {
        let mut labels = cur.metadata.labels.clone().unwrap_or_default();
        labels.extend(desired.metadata.labels.clone());
        let mut annotations = cur.metadata.annotations.clone().unwrap_or_default();
        annotations.remove(NOT_LISTED_ANNOTATION);
        annotations.extend(desired.metadata.annotations.clone());
        obj.metadata.labels = Some(labels);
        obj.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
        obj.metadata.resource_version = cur.metadata.resource_version.clone();
    }
    Ok(obj)
}

enum Outcome {
    Created,
    Updated,
    Unchanged,
    Foreign,
}

async fn put(
    client: &Client,
    report: &PolicyReport,
    stats: &mut PublishStats,
) -> Result<Outcome, Result<kube::Error, ReportError>> {
    let ns = report.metadata.namespace.as_str();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource());
    let pp = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_owned()),
    };
    let encode = |source| {
        Err(ReportError::Encode {
            namespace: ns.to_owned(),
            source,
        })
    };
    let mut last = None;
    for _ in 0..MAX_ATTEMPTS {
        let current = api.get_opt(REPORT_NAME).await.map_err(Ok)?;
        let written = match &current {
            None => {
                let obj = to_object(report, None).map_err(encode)?;
                api.create(&pp, &obj).await.map(|_| Outcome::Created)
            }
            Some(cur) if !owned(cur) => return Ok(Outcome::Foreign),
            Some(cur) => {
                let mut desired = report.clone();
                if carry_over(&mut desired, cur) {
                    return Ok(Outcome::Unchanged);
                }
                let obj = to_object(&desired, Some(cur)).map_err(encode)?;
                api.replace(REPORT_NAME, &pp, &obj)
                    .await
                    .map(|_| Outcome::Updated)
            }
        };
        match written {
            // Created meanwhile (409 AlreadyExists) or changed since read (409 Conflict).
            Err(e) if status_code(&e) == Some(409) => {
                stats.conflicts += 1;
                last = Some(e);
            }
            other => return other.map_err(Ok),
        }
    }
    Err(Ok(last.unwrap_or_else(|| {
        kube::Error::Service("no attempt made at writing the PolicyReport".into())
    })))
}

/// Write `reports` (one per namespace) in place, and delete pullgate's report in every
/// namespace of `scope` (one namespace, or all with `None`) that is not among them: the audit
/// found nothing to report there any more. A namespace that cannot be written is counted in
/// the stats and the others proceed; discovery and listing failures end the publication.
pub async fn publish(
    client: &Client,
    scope: Option<&str>,
    reports: impl IntoIterator<Item = PolicyReport>,
) -> Result<PublishStats, ReportError> {
    publish_watched(client, scope, &[], reports).await
}

/// [`publish`] for a store that watches only `watched` namespaces (empty: the whole cluster),
/// where the identity may hold only a Role per namespace: with no `scope`, the cleanup lists
/// pullgate's reports in each watched namespace instead of cluster-wide.
pub async fn publish_watched(
    client: &Client,
    scope: Option<&str>,
    watched: &[String],
    reports: impl IntoIterator<Item = PolicyReport>,
) -> Result<PublishStats, ReportError> {
    let mut stats = PublishStats::default();
    let mut written = BTreeSet::new();
    for report in reports {
        let ns = report.metadata.namespace.clone();
        if scope.is_some_and(|s| s != ns) {
            continue;
        }
        match put(client, &report, &mut stats).await {
            Ok(Outcome::Created) => stats.created += 1,
            Ok(Outcome::Updated) => stats.updated += 1,
            Ok(Outcome::Unchanged) => stats.unchanged += 1,
            Ok(Outcome::Foreign) => stats.foreign += 1,
            Err(Ok(e)) => stats.fail(&ns, "write", &e),
            Err(Err(e)) => return Err(e),
        }
        written.insert(ns);
    }
    let apis: Vec<Api<DynamicObject>> = match scope {
        Some(ns) => vec![Api::namespaced_with(client.clone(), ns, &resource())],
        None if !watched.is_empty() => watched
            .iter()
            .map(|ns| Api::namespaced_with(client.clone(), ns, &resource()))
            .collect(),
        None => vec![Api::all_with(client.clone(), &resource())],
    };
    for api in &apis {
        delete_unwritten(client, api, &written, &mut stats).await?;
    }
    Ok(stats)
}

/// Delete pullgate's reports that `api` lists outside the namespaces just `written`.
async fn delete_unwritten(
    client: &Client,
    api: &Api<DynamicObject>,
    written: &BTreeSet<String>,
    stats: &mut PublishStats,
) -> Result<(), ReportError> {
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let mut lp = ListParams::default().labels(&selector).limit(500);
    loop {
        let page = api.list(&lp).await.map_err(ReportError::List)?;
        for o in &page.items {
            let ns = o.metadata.namespace.as_deref().unwrap_or_default();
            if o.metadata.name.as_deref() != Some(REPORT_NAME) || written.contains(ns) {
                continue;
            }
            // Only the report as read: a concurrent rewrite by someone else is left alone.
            let dp = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    resource_version: o.metadata.resource_version.clone(),
                    uid: o.metadata.uid.clone(),
                }),
                ..DeleteParams::default()
            };
            let one: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource());
            match one.delete(REPORT_NAME, &dp).await {
                Ok(_) => stats.deleted += 1,
                Err(e) if matches!(status_code(&e), Some(404 | 409)) => {}
                Err(e) => stats.fail(ns, "delete", &e),
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::policyreport::{policy_report, ReportSummary};
    use serde_json::json;

    fn report_with(rules: &[(&str, i64)]) -> PolicyReport {
        let mut r = policy_report("shop", [], 0);
        for (rule, seconds) in rules {
            r.results.push(ReportResult {
                source: "pullgate".into(),
                policy: "pullgate".into(),
                rule: (*rule).into(),
                category: "c".into(),
                severity: None,
                timestamp: Timestamp {
                    seconds: *seconds,
                    nanos: 0,
                },
                result: "pass".into(),
                scored: true,
                resources: vec![],
                message: String::new(),
                properties: BTreeMap::new(),
            });
        }
        r.summary = ReportSummary {
            pass: rules.len() as u64,
            ..ReportSummary::default()
        };
        r
    }

    fn stored(r: &PolicyReport) -> DynamicObject {
        let mut v = serde_json::to_value(r).unwrap();
        v["metadata"]["resourceVersion"] = json!("7");
        v["metadata"]["labels"]["team"] = json!("shop");
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_timestamps_changing_is_no_change_and_old_times_are_kept() {
        let current = stored(&report_with(&[("A", 10), ("B", 20)]));
        let mut same = report_with(&[("A", 99), ("B", 99)]);
        assert!(carry_over(&mut same, &current));
        let mut changed = report_with(&[("A", 99), ("C", 99)]);
        assert!(!carry_over(&mut changed, &current));
        assert_eq!(
            changed.results[0].timestamp.seconds, 10,
            "A was found at 10"
        );
        assert_eq!(changed.results[1].timestamp.seconds, 99, "C is new");
        let mut fewer = report_with(&[("A", 99)]);
        assert!(!carry_over(&mut fewer, &current));
    }

    #[test]
    fn a_rewrite_keeps_others_labels_and_the_version_read() {
        let current = stored(&report_with(&[("A", 10)]));
        let obj = to_object(&report_with(&[("A", 10)]), Some(&current)).unwrap();
        assert_eq!(obj.metadata.resource_version.as_deref(), Some("7"));
        let labels = obj.metadata.labels.unwrap();
        assert_eq!(labels["team"], "shop");
        assert_eq!(labels[MANAGED_BY.0], MANAGED_BY.1);
        assert!(owned(&current));
    }
}
