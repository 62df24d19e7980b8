//! Pull-failure attribution (`attribution.enabled`, cluster mode): watch the kubelet's image-pull
//! failure Events, name each failing pod's cause on the pod itself (a `Warning` Event with
//! reason `PullgateDiagnosis`, once per pod and cause), count them
//! (`pullgate_image_pull_failures_total`), and, with `restartStuckPods`, delete controller-owned
//! pods that an injection now fixes so that they come back through admission.
//!
//! The decisions are pure ([`crate::engine::diagnosis`], [`throttle`], [`restart`]); this module
//! is the adapter: one Event watcher per watched scope, a bounded queue coalesced per pod, a few
//! workers that read the pod and diagnose it against the store (unless all its containers have
//! started since: the failure is history), and one paced Event writer. Only
//! the holder of the `pullgate-attribution` Lease acts, so replicas do not write the same Event.

pub mod restart;
pub mod throttle;

use crate::engine::diagnosis::{
    all_started, container_reports, diagnose, keyring_wait, pull_failure, Diagnosis,
};
use crate::engine::podview::{PodView, WorkloadKind};
use crate::engine::policy::Policy;
use crate::events::{event, EventSpec};
use crate::leader::{self, Elector};
use crate::metrics::{CauseLabels, Metrics, OutcomeLabels};
use crate::store::Store;
use crate::verify::Verifications;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use restart::RestartGate;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use throttle::{Announced, Pending, Queued, TokenBucket};
use tokio::sync::{mpsc, watch as leadership, Notify};
use tracing::{info, warn};

/// The longest Event message written (the kubelet's recorder cuts at the same length).
const MAX_MESSAGE: usize = 1024;

/// Failure Events older than this are history, not news (the API server's default Event TTL).
const MAX_EVENT_AGE_SECS: i64 = 3_600;

/// How attribution runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// This instance's identity (pod name).
    pub identity: String,
    /// Namespaces whose Events are watched (all when empty).
    pub namespaces: Vec<String>,
    /// How often the Lease is renewed.
    pub lease_every: Duration,
    /// Most pods queued for a diagnosis.
    pub queue_capacity: usize,
    /// Pods diagnosed at once.
    pub workers: usize,
    /// Most diagnoses remembered (to announce each once).
    pub announced_capacity: usize,
    /// How long a diagnosis is remembered.
    pub announced_ttl: Duration,
    /// How long a restart counts as in flight for its workload.
    pub restart_window: Duration,
    /// Credential verification results, as the verify task last published them.
    pub verifications: Arc<Verifications>,
}

impl Settings {
    /// Defaults for one instance.
    pub fn new(lease_namespace: String, identity: String, namespaces: Vec<String>) -> Self {
        Settings {
            lease_namespace,
            identity,
            namespaces,
            lease_every: Duration::from_secs(5),
            queue_capacity: 4_096,
            workers: 8,
            announced_capacity: 50_000,
            announced_ttl: Duration::from_secs(24 * 3_600),
            restart_window: Duration::from_secs(300),
            verifications: Default::default(),
        }
    }
}

/// State shared by the watcher, the workers and the writer.
struct Shared {
    client: Client,
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    metrics: Arc<Metrics>,
    verifications: Arc<Verifications>,
    /// Whether this instance holds the Lease; watchers run only while it does.
    leading: leadership::Sender<bool>,
    pending: Mutex<Pending>,
    wake: Notify,
    announced: Mutex<Announced>,
    restarts: Mutex<(TokenBucket, RestartGate)>,
    writes: mpsc::Sender<Event>,
}

/// Run attribution until `shutdown` turns true (then the Lease is released).
pub async fn run(
    client: Client,
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    metrics: Arc<Metrics>,
    settings: Settings,
    shutdown: leadership::Receiver<bool>,
) {
    let cfg = &policy.attribution;
    let per_minute = f64::from(cfg.restarts_per_minute);
    let (writes, rx) = mpsc::channel(1_024);
    let shared = Arc::new(Shared {
        client: client.clone(),
        store,
        leading: leadership::Sender::new(false),
        pending: Mutex::new(Pending::new(settings.queue_capacity)),
        wake: Notify::new(),
        announced: Mutex::new(Announced::new(
            settings.announced_capacity,
            settings.announced_ttl,
        )),
        restarts: Mutex::new((
            TokenBucket::new(per_minute / 60.0, per_minute, Instant::now()),
            RestartGate::new(cfg.max_restart_percent, settings.restart_window),
        )),
        writes,
        metrics,
        policy: policy.clone(),
        verifications: settings.verifications.clone(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(write_events(
        client.clone(),
        rx,
        f64::from(policy.attribution.events_per_second),
    ));
    tasks.spawn(work(shared.clone(), settings.workers.max(1)));
    let scopes: Vec<Api<Event>> = if settings.namespaces.is_empty() {
        vec![Api::all(client)]
    } else {
        settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    for api in scopes {
        tasks.spawn(watch(shared.clone(), api));
    }
    // Only the holder acts on Events. Once the Lease is released, dropping `tasks` stops the rest.
    let elector = Elector::new(
        shared.client.clone(),
        &settings.lease_namespace,
        "pullgate-attribution",
        &settings.identity,
        settings.lease_every * 3,
    );
    leader::keep(elector, settings.lease_every, &shared.leading, shutdown).await;
}

/// Watch Pod Events (server-side `involvedObject.kind=Pod`) and queue the pull failures, while
/// leading. Each new term starts with a fresh list, so failures seen by a former leader are
/// diagnosed again (announced once per pod and cause by this instance).
async fn watch(shared: Arc<Shared>, api: Api<Event>) {
    let mut leading = shared.leading.subscribe();
    loop {
        if leading.wait_for(|l| *l).await.is_err() {
            return;
        }
        // Diagnosing against a store still syncing would blame secrets that merely are not listed yet.
        while !shared.store.ready() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let config = watcher::Config::default().fields("involvedObject.kind=Pod");
        // Exponential backoff with jitter, reset by any success; a 410 Gone relists.
        let mut events = watcher::watcher(api.clone(), config)
            .default_backoff()
            .boxed();
        let consume = async {
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(WatchEvent::Apply(e) | WatchEvent::InitApply(e)) => shared.offer(&e),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "event watch failed; retrying"),
                }
            }
        };
        tokio::select! {
            () = consume => return,
            lost = leading.wait_for(|l| !*l) => if lost.is_err() { return },
        }
    }
}

impl Shared {
    fn outcome(&self, outcome: &'static str) {
        self.metrics
            .attribution_events
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Queue the pod of a pull-failure Event (other Events are ignored).
    fn offer(&self, e: &Event) {
        let (Some(reason), Some(message)) = (e.reason.as_deref(), e.message.as_deref()) else {
            return;
        };
        let Some(failure) = pull_failure(reason, message) else {
            return;
        };
        if last_seen(e).is_some_and(|t| jiff::Timestamp::now().as_second() - t > MAX_EVENT_AGE_SECS)
        {
            return;
        }
        let o = &e.involved_object;
        let (Some(ns), Some(name)) = (o.namespace.clone(), o.name.clone()) else {
            return;
        };
        if self.policy.excludes(&ns) {
            return;
        }
        let (queued, len) = {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            (p.push((ns, name), failure), p.len())
        };
        self.metrics
            .attribution_queued
            .set(i64::try_from(len).unwrap_or(i64::MAX));
        self.outcome(match queued {
            Queued::New => "queued",
            Queued::Coalesced => "coalesced",
            Queued::Dropped => "dropped",
        });
        if queued == Queued::New {
            self.wake.notify_one();
        }
    }

    /// Diagnose one pod: read it, evaluate it against the store, announce a new cause, maybe restart it.
    async fn process(
        &self,
        (namespace, name): (String, String),
        failure: crate::engine::diagnosis::PullFailure,
    ) {
        if !*self.leading.borrow() {
            // Leadership moved while the pod was queued: the new leader relists and diagnoses it.
            return self.outcome("not_leader");
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let pod = match pods.get_opt(&name).await {
            Ok(Some(p)) => p,
            Ok(None) => return self.outcome("pod_gone"),
            Err(e) => {
                warn!(error = %e, namespace, pod = name, "cannot read pod to diagnose it");
                return self.outcome("error");
            }
        };
        let Some(uid) = pod.metadata.uid.clone() else {
            return self.outcome("error");
        };
        let Ok(value) = serde_json::to_value(&pod) else {
            return self.outcome("error");
        };
        let Ok(view) = PodView::from_value(WorkloadKind::Pod, &value) else {
            return self.outcome("error");
        };
        let containers = container_reports(&value);
        if all_started(&containers) {
            // The pull failed once and then succeeded (a transient error): nothing to name.
            return self.outcome("started");
        }
        let failure = keyring_wait(&containers).unwrap_or(failure);
        let diagnosis = {
            let verified = self.verifications.snapshot();
            let index = self.store.view();
            diagnose(
                &view,
                &namespace,
                &self.policy,
                &index,
                Some(&verified),
                &failure,
                jiff::Timestamp::now().as_second(),
            )
        };
        let new = self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first(&uid, diagnosis.cause, Instant::now());
        if new {
            self.announce(&namespace, &name, &uid, &diagnosis);
        } else {
            self.outcome("duplicate");
        }
        if self.policy.attribution.restart_stuck_pods && diagnosis.fixed_by_recreation {
            self.restart(&pods, &pod, &uid, &diagnosis).await;
        }
    }

    fn announce(&self, namespace: &str, name: &str, uid: &str, d: &Diagnosis) {
        self.outcome("diagnosed");
        self.metrics
            .image_pull_failures
            .get_or_create(&CauseLabels {
                namespace: namespace.to_owned(),
                cause: d.cause.as_str(),
            })
            .inc();
        info!(
            namespace,
            pod = name,
            cause = d.cause.as_str(),
            image = d.image.as_deref().unwrap_or(""),
            "image pull failure diagnosed"
        );
        let e = pod_event(
            namespace,
            name,
            uid,
            "PullgateDiagnosis",
            "Warning",
            &d.message,
        );
        if self.writes.try_send(e).is_err() {
            // The writer is saturated: announce again at the pod's next failure.
            self.announced
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .forget(uid, d.cause);
            self.outcome("event_dropped");
        }
    }

    /// Delete a stuck pod so its controller recreates it through admission, within the limits.
    async fn restart(&self, pods: &Api<Pod>, pod: &Pod, uid: &str, d: &Diagnosis) {
        let Some(owner) = restart::candidate(pod) else {
            return;
        };
        // No restart budget left: spare the API server the pod list.
        let budget = self
            .restarts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .ready(Instant::now());
        if !budget {
            return;
        }
        let Ok(list) = pods.list(&ListParams::default()).await else {
            return;
        };
        let size = list
            .items
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.controller == Some(true) && o.uid == owner.uid)
            })
            .count();
        {
            let mut guard = self.restarts.lock().unwrap_or_else(PoisonError::into_inner);
            let (bucket, gate) = &mut *guard;
            let now = Instant::now();
            if !gate.allows(&owner.uid, size, now) || bucket.take(now).is_err() {
                return;
            }
            gate.record(&owner.uid, now);
        }
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        // The UID precondition: never delete a same-named replacement (StatefulSet pods reuse names).
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete(name, &params).await {
            Ok(_) => {
                self.metrics
                    .pod_restarts
                    .get_or_create(&CauseLabels {
                        namespace: namespace.to_owned(),
                        cause: d.cause.as_str(),
                    })
                    .inc();
                info!(namespace, pod = name, owner_kind = %owner.kind, owner = %owner.name, cause = d.cause.as_str(), "deleted a pod stuck on a pull failure so that its controller recreates it");
                let message = format!(
                    "pullgate deleted this pod so that {} {} recreates it through admission, where the missing imagePullSecret is injected ({})",
                    owner.kind,
                    owner.name,
                    d.cause.as_str()
                );
                let e = pod_event(
                    namespace,
                    name,
                    uid,
                    "PullgateRestartedPod",
                    "Normal",
                    &message,
                );
                if self.writes.try_send(e).is_err() {
                    self.outcome("event_dropped");
                }
            }
            Err(e) => warn!(error = %e, namespace, pod = name, "could not delete a stuck pod"),
        }
    }
}

/// Diagnose queued pods, a few at once.
async fn work(shared: Arc<Shared>, workers: usize) {
    loop {
        let batch: Vec<_> = {
            let mut p = shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let batch = std::iter::from_fn(|| p.pop()).take(workers).collect();
            shared
                .metrics
                .attribution_queued
                .set(i64::try_from(p.len()).unwrap_or(i64::MAX));
            batch
        };
        if batch.is_empty() {
            shared.wake.notified().await;
            continue;
        }
        futures::future::join_all(batch.into_iter().map(|(pod, f)| shared.process(pod, f))).await;
    }
}

/// Write queued Events, at most `per_second` (a one-second burst allowed).
async fn write_events(client: Client, mut rx: mpsc::Receiver<Event>, per_second: f64) {
    let mut bucket = TokenBucket::new(per_second, per_second.max(1.0), Instant::now());
    while let Some(e) = rx.recv().await {
        while let Err(wait) = bucket.take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let ns = e.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        if let Err(err) = api.create(&PostParams::default(), &e).await {
            warn!(error = %err, namespace = ns, "could not record event");
        }
    }
}

/// An Event about a pod, its message cut to the Event length limit.
fn pod_event(
    namespace: &str,
    name: &str,
    uid: &str,
    reason: &str,
    type_: &str,
    message: &str,
) -> Event {
    event(
        EventSpec {
            kind: "Pod",
            namespace,
            name,
            uid: Some(uid),
            reason,
            type_,
            message: cut(message, MAX_MESSAGE),
        },
        jiff::Timestamp::now(),
    )
}

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    format!(
        "{}…",
        crate::engine::diagnosis::cut(s, max.saturating_sub('…'.len_utf8()))
    )
}

/// When an Event last happened, seconds since the Unix epoch (series, then last, event and first time).
fn last_seen(e: &Event) -> Option<i64> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0.as_second())
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0.as_second()))
        .or_else(|| e.event_time.as_ref().map(|t| t.0.as_second()))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0.as_second()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_on_character_boundaries() {
        assert_eq!(cut("short", 10), "short");
        let long = "é".repeat(1_000);
        let c = cut(&long, MAX_MESSAGE);
        assert!(c.len() <= MAX_MESSAGE && c.ends_with('…'), "{}", c.len());
    }

    #[test]
    fn event_time_prefers_the_latest_field() {
        let t = |s| {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(s).unwrap(),
            )
        };
        let mut e = Event {
            first_timestamp: Some(t(10)),
            ..Event::default()
        };
        assert_eq!(last_seen(&e), Some(10));
        e.last_timestamp = Some(t(20));
        assert_eq!(last_seen(&e), Some(20));
        e.series = Some(k8s_openapi::api::core::v1::EventSeries {
            count: Some(3),
            last_observed_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                jiff::Timestamp::from_second(30).unwrap(),
            )),
        });
        assert_eq!(last_seen(&e), Some(30));
        assert_eq!(last_seen(&Event::default()), None);
    }
}
