//! `pullgate doctor`: the guide's "how to diagnose it", automated for one live pod. A pure core
//! turns the pod, its namespace's view and its events into verdicts; a thin adapter reads them.

use crate::engine::diagnosis::{self, pull_failure, ContainerReport, Diagnosis, PullFailure};
use crate::engine::evaluate::Decision;
use crate::engine::index::ClusterIndex;
use crate::engine::podview::{PodView, WorkloadKind};
use crate::engine::policy::Policy;
use crate::engine::verification::VerificationTable;
use crate::engine::{evaluate_pod, Code, Finding, PodContext, Severity};
use crate::manifests::Document;
use crate::store::objects::{namespace_from_value, secret_from_value, service_account_from_value};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams};
use kube::Client;
use serde::Serialize;
use std::fmt::Write as _;

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Nothing wrong.
    Ok,
    /// Something to fix.
    Problem,
    /// Does not apply to this pod.
    NotApplicable,
}

/// One check of the guide, with its verdict and fixes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is checked.
    pub check: &'static str,
    /// Verdict.
    pub verdict: Verdict,
    /// What was found, each with its fix.
    pub details: Vec<String>,
}

/// The whole diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DoctorReport {
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// The checks, in the guide's order.
    pub checks: Vec<Check>,
    /// The engine's findings.
    pub findings: Vec<Finding>,
    /// The cause of the pod's current image pull failure, when its events or container statuses
    /// show one and not all its containers have started (as attribution names it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
}

impl DoctorReport {
    /// Whether any check found a problem.
    pub fn has_problem(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Problem)
    }
}

/// Why the pod could not be diagnosed.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The pod could not be read.
    #[error("cannot read pod {namespace}/{name}: {source}")]
    Pod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The pod object has an unexpected shape.
    #[error("cannot read pod {0}: unexpected shape")]
    Shape(String),
}

/// The guide's checks and the finding codes that fail each one.
const CHECKS: [(&str, &[Code]); 8] = [
    ("image references are valid", &[Code::InvalidImageReference]),
    (
        "referenced secrets exist in the pod's namespace",
        &[Code::SecretNotFound, Code::SecretInOtherNamespace],
    ),
    (
        "secrets are of the dockerconfigjson type and well-formed",
        &[
            Code::WrongSecretType,
            Code::MalformedSecret,
            Code::DeprecatedDockercfg,
            Code::CredentialHelperIgnored,
        ],
    ),
    (
        "a secret's registry matches each image's host, port and path",
        &[Code::RegistryMismatch, Code::NoCredentials],
    ),
    (
        "the ServiceAccount exists and provides the secret",
        &[Code::ServiceAccountMissing, Code::ServiceAccountNotPatched],
    ),
    (
        "credentials are fresh and accepted by the registry",
        &[Code::StaleCredentials, Code::CredentialsRejected],
    ),
    ("one secret per registry", &[Code::AmbiguousCredentials]),
    ("not a static pod", &[Code::StaticPod]),
];

/// Diagnose a pod from plain data: the engine's findings grouped into the guide's checks, plus
/// pull-error events (`reason: message`, oldest first) and container statuses, and the cause of
/// the current pull failure. Once all containers have started, past pull failures are history.
pub fn diagnose(
    view: &PodView,
    ctx: &PodContext<'_>,
    index: &ClusterIndex,
    policy: &Policy,
    events: &[String],
    containers: &[ContainerReport],
) -> DoctorReport {
    let (namespace, now) = (ctx.namespace, ctx.now);
    let d = evaluate_pod(view, ctx, policy, index);
    let failures = pull_failures(events);
    let started = diagnosis::all_started(containers);
    let mut checks = vec![
        events_check(started, &failures, containers),
        images_check(&d),
    ];
    checks.extend(guide_checks(&d));
    let diagnosis = if started {
        None
    } else {
        let latest = failures.into_iter().next_back().map(|(_, f)| f);
        diagnosis::current_failure(containers, latest)
            .map(|f| diagnosis::diagnose(view, namespace, policy, index, ctx.verified, &f, now))
    };
    DoctorReport {
        namespace: namespace.to_owned(),
        pod: view.meta().display_name(),
        checks,
        findings: d.findings,
        diagnosis,
    }
}

/// The events (`reason: message`) that report a pull failure, each with the failure.
fn pull_failures(events: &[String]) -> Vec<(&String, PullFailure)> {
    events
        .iter()
        .filter_map(|e| {
            let (reason, message) = e.split_once(": ")?;
            Some((e, pull_failure(reason, message)?))
        })
        .collect()
}

/// "pod events show no image pull errors": the failing waits and failure events, or, once every
/// container has `started`, the failures as history.
fn events_check(
    started: bool,
    failures: &[(&String, PullFailure)],
    containers: &[ContainerReport],
) -> Check {
    let (verdict, details) = if started {
        let details = failures.last().map(|(latest, _)| {
            let n = failures.len();
            let events = if n == 1 { "event" } else { "events" };
            format!(
                "earlier pull failures ({n} {events}, the latest: {latest}) are history: all containers have started"
            )
        });
        (Verdict::Ok, details.into_iter().collect())
    } else {
        let details: Vec<String> = containers
            .iter()
            .filter(|c| c.pull_failure().is_some())
            .filter_map(ContainerReport::describe_wait)
            .chain(failures.iter().map(|(e, _)| (*e).clone()))
            .collect();
        let verdict = if details.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Problem
        };
        (verdict, details)
    };
    Check {
        check: "pod events show no image pull errors",
        verdict,
        details,
    }
}

/// "which images need credentials": each image's registry class, for the record.
fn images_check(d: &Decision<'_>) -> Check {
    Check {
        check: "which images need credentials",
        verdict: Verdict::Ok,
        details: d
            .images
            .iter()
            .filter_map(|i| {
                let (class, r) = i.registry_class.zip(i.reference.as_ref())?;
                Some(format!("{:?}: {}", i.image, class.describe_image(r)))
            })
            .collect(),
    }
}

/// The guide's [`CHECKS`], each failed by a warning or error among its finding codes.
fn guide_checks<'a>(d: &'a Decision<'_>) -> impl Iterator<Item = Check> + 'a {
    let requires = d.images.iter().any(|i| i.requires_credentials);
    CHECKS.iter().map(move |&(name, codes)| {
        let hits: Vec<&Finding> = d
            .findings
            .iter()
            .filter(|f| codes.contains(&f.code))
            .collect();
        let verdict = if hits.iter().any(|f| f.severity >= Severity::Warning) {
            Verdict::Problem
        } else if name == "not a static pod" || requires {
            Verdict::Ok
        } else {
            Verdict::NotApplicable
        };
        Check {
            check: name,
            verdict,
            details: hits.iter().map(|f| f.message.clone()).collect(),
        }
    })
}

/// The report as text: one line per check, with fixes indented.
pub fn render_text(r: &DoctorReport) -> String {
    let mut out = format!("pod {}/{}\n", r.namespace, r.pod);
    for c in &r.checks {
        let mark = match c.verdict {
            Verdict::Ok => "ok     ",
            Verdict::Problem => "PROBLEM",
            Verdict::NotApplicable => "n/a    ",
        };
        let _ = writeln!(out, "  [{mark}] {}", c.check);
        for d in &c.details {
            let _ = writeln!(out, "            - {d}");
        }
    }
    if let Some(d) = &r.diagnosis {
        let _ = writeln!(out, "  diagnosis: {}: {}", d.cause, d.message);
    }
    out
}

fn to_value<T: Serialize>(o: &T) -> Option<serde_json::Value> {
    serde_json::to_value(o).ok()
}

/// Read what the diagnosis needs from the cluster and diagnose `namespace/name`.
pub async fn run(
    client: Client,
    namespace: &str,
    name: &str,
    policy: &Policy,
    now: i64,
    verifier: Option<&crate::verify::Verifier>,
) -> Result<DoctorReport, DoctorError> {
    let (value, view) = read_pod(&client, namespace, name).await?;
    let mut index = ClusterIndex::new();
    let mut verified = VerificationTable::new();
    let values = read_namespace_secrets(&client, namespace, &view, &mut index).await;
    if let Some(verifier) = verifier {
        // The data is at hand: probe the namespace's secrets now, then drop it.
        let docs: Vec<Document> = values
            .into_iter()
            .enumerate()
            .map(|(index, value)| Document {
                source: "cluster".to_owned(),
                index,
                value,
            })
            .collect();
        for v in crate::verify::offline::verify_documents(&docs, policy, namespace, verifier).await
        {
            verified.record(&index, &v.namespace, &v.name, v.verification);
        }
    }
    read_elsewhere(&client, namespace, &mut index).await;
    let messages = read_pod_events(client, namespace, name).await;
    let containers = diagnosis::container_reports(&value);
    let ctx = PodContext::existing(namespace, now).with_verified(Some(&verified));
    Ok(diagnose(
        &view,
        &ctx,
        &index,
        policy,
        &messages,
        &containers,
    ))
}

/// The pod as JSON and as the engine views it.
async fn read_pod(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(serde_json::Value, PodView), DoctorError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods.get(name).await.map_err(|source| DoctorError::Pod {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    })?;
    let value = to_value(&pod).ok_or_else(|| DoctorError::Shape(name.to_owned()))?;
    let view = PodView::from_value(WorkloadKind::Pod, &value)
        .map_err(|_| DoctorError::Shape(name.to_owned()))?;
    Ok((value, view))
}

/// Index the namespace's ServiceAccounts and its pull secrets, plus every name the pod or a
/// ServiceAccount references whatever its type; returns the secrets as JSON (for verify).
async fn read_namespace_secrets(
    client: &Client,
    namespace: &str,
    view: &PodView,
    index: &mut ClusterIndex,
) -> Vec<serde_json::Value> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut seen = Vec::new();
    for t in ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"] {
        if let Ok(list) = secrets
            .list(&ListParams::default().fields(&format!("type={t}")))
            .await
        {
            seen.extend(list.items);
        }
    }
    let mut referenced: Vec<String> = view
        .pod
        .spec
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = sas.list(&ListParams::default()).await {
        for sa in list.items {
            if let Some(v) = to_value(&sa) {
                if let Ok((ns, info)) = service_account_from_value(&v, namespace) {
                    referenced.extend(info.image_pull_secrets.iter().cloned());
                    index.upsert_service_account(&ns, info);
                }
            }
        }
    }
    for r in &referenced {
        if !seen.iter().any(|s| s.metadata.name.as_deref() == Some(r)) {
            if let Ok(Some(s)) = secrets.get_opt(r).await {
                seen.push(s);
            }
        }
    }
    let values: Vec<serde_json::Value> = seen.iter().filter_map(to_value).collect();
    drop(seen);
    for v in &values {
        if let Ok(info) = secret_from_value(v, namespace) {
            index.upsert_secret(info);
        }
    }
    values
}

/// Index what lies outside the namespace: pull secrets of other namespaces (when the caller may
/// list them) and the Namespace object itself.
async fn read_elsewhere(client: &Client, namespace: &str, index: &mut ClusterIndex) {
    let all: Api<Secret> = Api::all(client.clone());
    for t in ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"] {
        if let Ok(list) = all
            .list(&ListParams::default().fields(&format!("type={t}")))
            .await
        {
            for s in list
                .items
                .iter()
                .filter(|s| s.metadata.namespace.as_deref() != Some(namespace))
            {
                if let Some(info) = to_value(s).and_then(|v| secret_from_value(&v, namespace).ok())
                {
                    index.upsert_secret(info);
                }
            }
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Ok(ns) = namespaces.get(namespace).await {
        if let Some((n, o)) = to_value(&ns).and_then(|v| namespace_from_value(&v).ok()) {
            index.upsert_namespace(&n, o);
        }
    }
}

/// The pod's events as `reason: message`, oldest first, so the last pull failure is the latest.
async fn read_pod_events(client: Client, namespace: &str, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client, namespace);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.name={name},involvedObject.kind=Pod"
    ));
    let mut items = events.list(&lp).await.map(|l| l.items).unwrap_or_default();
    items.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .or(e.first_timestamp.as_ref())
            .map(|t| t.0)
    });
    items
        .into_iter()
        .filter_map(|e| {
            e.message
                .map(|m| format!("{}: {m}", e.reason.unwrap_or_default()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::tests::pull_secret;
    use serde_json::json;

    /// [`diagnose`] of an existing pod in `shop`, with no verification results.
    fn diagnose_in_shop(
        v: &PodView,
        idx: &ClusterIndex,
        policy: &Policy,
        events: &[String],
        containers: &[ContainerReport],
    ) -> DoctorReport {
        diagnose(
            v,
            &PodContext::existing("shop", 0),
            idx,
            policy,
            events,
            containers,
        )
    }

    fn view(v: serde_json::Value) -> PodView {
        PodView::from_value(WorkloadKind::Pod, &v).unwrap()
    }

    #[test]
    fn port_mismatch_is_a_registry_problem_with_fix() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 0));
        let v = view(
            json!({"metadata": {"name": "api"}, "spec": {"imagePullSecrets": [{"name": "regcred"}],
            "containers": [{"name": "c", "image": "registry.example.com:5000/a:1"}]}}),
        );
        let events = vec![
            "Failed: Failed to pull image \"registry.example.com:5000/a:1\": 401 Unauthorized"
                .to_owned(),
        ];
        let r = diagnose_in_shop(&v, &idx, &Policy::default(), &events, &[]);
        assert!(r.has_problem());
        let classes = r
            .checks
            .iter()
            .find(|c| c.check == "which images need credentials")
            .map(|c| c.details.clone());
        assert_eq!(
            classes,
            Some(vec![
                "\"registry.example.com:5000/a:1\": private (secret \"regcred\" in this namespace is for registry.example.com)".to_owned()
            ])
        );
        let registry = r
            .checks
            .iter()
            .find(|c| c.check.starts_with("a secret's registry"))
            .unwrap();
        assert_eq!(registry.verdict, Verdict::Problem);
        assert!(registry.details[0].contains("--docker-server=registry.example.com:5000"));
        assert_eq!(r.checks[0].verdict, Verdict::Problem);
        let text = render_text(&r);
        assert!(
            text.contains("[PROBLEM] a secret's registry")
                && text.contains("[ok     ] not a static pod"),
            "{text}"
        );
    }

    #[test]
    fn latest_pull_failure_is_diagnosed_and_rejected_credentials_are_a_problem() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 0));
        let v = view(
            json!({"metadata": {"name": "api"}, "spec": {"imagePullSecrets": [{"name": "regcred"}],
            "containers": [{"name": "c", "image": "registry.example.com/a:1"}]}}),
        );
        let events = vec![
            "Scheduled: Successfully assigned shop/api to node-1".to_owned(),
            "BackOff: Back-off restarting failed container c".to_owned(),
            "Failed: Failed to pull image \"registry.example.com/a:1\": 401 Unauthorized"
                .to_owned(),
            "BackOff: Back-off pulling image \"registry.example.com/a:1\"".to_owned(),
        ];
        let r = diagnose_in_shop(&v, &idx, &Policy::default(), &events, &[]);
        assert_eq!(
            r.checks[0].details.len(),
            2,
            "only the pull failures: {:?}",
            r.checks[0]
        );
        let d = r.diagnosis.as_ref().unwrap();
        assert_eq!(
            d.cause,
            crate::engine::diagnosis::Cause::CredentialsLookRight
        );
        assert!(render_text(&r).contains("diagnosis: CredentialsLookRight"));

        let mut keys = std::collections::BTreeMap::new();
        keys.insert(
            "registry.example.com".to_owned(),
            crate::engine::index::CredentialStatus::Rejected,
        );
        let mut table = VerificationTable::new();
        assert!(table.record(
            &idx,
            "shop",
            "regcred",
            crate::engine::index::SecretVerification {
                resource_version: None,
                verified_at: 1,
                keys
            }
        ));
        let ctx = PodContext::existing("shop", 0).with_verified(Some(&table));
        let r = diagnose(&v, &ctx, &idx, &Policy::default(), &events, &[]);
        let fresh = r
            .checks
            .iter()
            .find(|c| c.check.starts_with("credentials are fresh"))
            .unwrap();
        assert_eq!(fresh.verdict, Verdict::Problem, "{fresh:?}");
        assert_eq!(
            r.diagnosis.map(|d| d.cause),
            Some(crate::engine::diagnosis::Cause::CredentialsRejected)
        );
        let r = diagnose_in_shop(&v, &idx, &Policy::default(), &[], &[]);
        assert!(r.diagnosis.is_none());
    }

    #[test]
    fn pull_failures_of_a_started_pod_are_history() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 0));
        let v = view(
            json!({"metadata": {"name": "api"}, "spec": {"imagePullSecrets": [{"name": "regcred"}],
            "containers": [{"name": "c", "image": "registry.example.com/a:1"}]}}),
        );
        let events = vec![
            "Failed: Failed to pull image \"registry.example.com/a:1\": 503 Service Unavailable"
                .to_owned(),
            "Failed: Error: ImagePullBackOff".to_owned(),
        ];
        let running = diagnosis::container_reports(
            &json!({"status": {"containerStatuses": [{"name": "c", "started": true,
            "state": {"running": {}}}]}}),
        );
        let r = diagnose_in_shop(&v, &idx, &Policy::default(), &events, &running);
        assert!(!r.has_problem(), "{}", render_text(&r));
        assert!(r.diagnosis.is_none());
        assert_eq!(
            r.checks[0].details,
            ["earlier pull failures (2 events, the latest: Failed: Error: ImagePullBackOff) are history: all containers have started"]
        );
        // Still waiting on the pull: the same Events are the current problem, and the wait is listed.
        let waiting = diagnosis::container_reports(
            &json!({"status": {"containerStatuses": [{"name": "c",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}}),
        );
        let r = diagnose_in_shop(&v, &idx, &Policy::default(), &events, &waiting);
        assert!(r.has_problem());
        assert_eq!(r.checks[0].details.len(), 3, "{:?}", r.checks[0]);
        assert!(r.checks[0].details[0].starts_with("container \"c\" waits: ImagePullBackOff"));
        assert!(r.diagnosis.is_some());
        // Events expired, the status still shows the wait: diagnosed from it.
        let r = diagnose_in_shop(&v, &idx, &Policy::default(), &[], &waiting);
        assert!(
            r.has_problem() && r.diagnosis.is_some(),
            "{}",
            render_text(&r)
        );
    }

    #[test]
    fn healthy_pod_and_public_images() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 0));
        let v = view(
            json!({"metadata": {"name": "web"}, "spec": {"imagePullSecrets": [{"name": "regcred"}],
            "containers": [{"name": "c", "image": "registry.example.com/a:1"}]}}),
        );
        let r = diagnose_in_shop(&v, &idx, &Policy::default(), &[], &[]);
        assert!(!r.has_problem(), "{}", render_text(&r));
        let public = Policy::from_yaml("registries:\n  public: [docker.io]\n").unwrap();
        let v = view(
            json!({"metadata": {"name": "n"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
        );
        let r = diagnose_in_shop(&v, &idx, &public, &[], &[]);
        assert!(r.checks.iter().any(|c| c.verdict == Verdict::NotApplicable));
        assert!(!r.has_problem());
    }

    #[test]
    fn static_pod_and_unpatched_service_account() {
        let mut idx = ClusterIndex::new();
        idx.upsert_secret(pull_secret("shop", "regcred", &["registry.example.com"], 0));
        let v = view(
            json!({"metadata": {"name": "s", "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"containers": [{"name": "c", "image": "registry.example.com/a:1"}]}}),
        );
        let r = diagnose_in_shop(&v, &idx, &Policy::default(), &[], &[]);
        assert_eq!(r.checks.last().map(|c| c.verdict), Some(Verdict::Problem));
        let v = view(
            json!({"metadata": {"name": "w"}, "spec": {"containers": [{"name": "c", "image": "registry.example.com/a:1"}]}}),
        );
        let r = diagnose_in_shop(&v, &idx, &Policy::default(), &[], &[]);
        let sa = r
            .checks
            .iter()
            .find(|c| c.check.starts_with("the ServiceAccount"))
            .unwrap();
        assert_eq!(sa.verdict, Verdict::Problem);
        assert!(sa.details[0].contains("kubectl patch serviceaccount default"));
    }
}
