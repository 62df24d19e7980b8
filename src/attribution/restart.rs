//! When pullgate may delete a pod stuck on a pull failure so that its controller recreates it
//! through admission (`attribution.restartStuckPods`). Pure rules over the pod object and the
//! restarts already made; the caller does the API calls.

use crate::engine::diagnosis::waiting_failure;
use k8s_openapi::api::core::v1::Pod;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Controllers that recreate a deleted pod from their template. Bare pods are never restarted:
/// nothing would bring them back.
const CONTROLLERS: [&str; 4] = ["ReplicaSet", "StatefulSet", "DaemonSet", "Job"];

/// The controller that owns a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Kind (one of the recreating controllers).
    pub kind: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// The pod's recreating controller, if the pod is one that may be restarted: owned by one,
/// not being deleted, with a container waiting on an image pull (as
/// [`waiting_failure`] reads the waiting reason, a pull-secret error of the kubelet included).
pub fn candidate(pod: &Pod) -> Option<Owner> {
    if pod.metadata.deletion_timestamp.is_some() || pod.metadata.uid.is_none() {
        return None;
    }
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && CONTROLLERS.contains(&o.kind.as_str()))?;
    let status = pod.status.as_ref()?;
    let statuses = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten());
    let stuck = statuses.into_iter().any(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| {
                let reason = w.reason.as_deref()?;
                waiting_failure(reason, w.message.as_deref().unwrap_or_default())
            })
            .is_some()
    });
    stuck.then(|| Owner {
        kind: owner.kind.clone(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
    })
}

/// Restarts made per workload, to keep each workload's restarts in flight under a fraction of its pods.
#[derive(Debug)]
pub struct RestartGate {
    recent: HashMap<String, VecDeque<Instant>>,
    /// How long a restart counts as in flight (its replacement being scheduled and pulling).
    window: Duration,
    percent: u32,
}

impl RestartGate {
    /// At most `percent` of a workload's pods (at least one) restarted within `window`.
    pub fn new(percent: u32, window: Duration) -> Self {
        RestartGate {
            recent: HashMap::new(),
            window,
            percent,
        }
    }

    /// Most restarts in flight for a workload of `pods` pods.
    pub fn limit(&self, pods: usize) -> usize {
        (pods.saturating_mul(self.percent as usize) / 100).max(1)
    }

    /// Whether one more pod of workload `owner_uid`, which has `pods` pods, may be restarted now.
    pub fn allows(&mut self, owner_uid: &str, pods: usize, now: Instant) -> bool {
        self.expire(now);
        let in_flight = self.recent.get(owner_uid).map_or(0, VecDeque::len);
        in_flight < self.limit(pods)
    }

    /// Record a restart of a pod of workload `owner_uid`.
    pub fn record(&mut self, owner_uid: &str, now: Instant) {
        self.recent
            .entry(owner_uid.to_owned())
            .or_default()
            .push_back(now);
    }

    fn expire(&mut self, now: Instant) {
        let window = self.window;
        self.recent.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= window)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(owner_kind: Option<&str>, waiting: &str) -> Pod {
        let mut v = json!({
            "metadata": {"name": "api-1", "namespace": "shop", "uid": "pod-uid"},
            "spec": {"containers": [{"name": "api", "image": "r.io/a"}]},
            "status": {"containerStatuses": [{"name": "api", "image": "r.io/a", "imageID": "",
                "ready": false, "restartCount": 0, "state": {"waiting": {"reason": waiting}}}]}
        });
        if let Some(kind) = owner_kind {
            v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind,
                "name": "api-7d9", "uid": "rs-uid", "controller": true}]);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_controller_owned_pods_stuck_on_pulls() {
        for kind in CONTROLLERS {
            let o = candidate(&pod(Some(kind), "ImagePullBackOff")).unwrap();
            assert_eq!((o.kind.as_str(), o.uid.as_str()), (kind, "rs-uid"));
        }
        assert!(candidate(&pod(Some("ReplicaSet"), "ErrImagePull")).is_some());
        assert!(
            candidate(&pod(
                Some("ReplicaSet"),
                "illegal base64 data at input byte 12"
            ))
            .is_some(),
            "the kubelet cannot read the pod's pull secrets"
        );
        assert!(
            candidate(&pod(None, "ImagePullBackOff")).is_none(),
            "bare pod"
        );
        assert!(candidate(&pod(Some("Node"), "ImagePullBackOff")).is_none());
        assert!(candidate(&pod(Some("ReplicaSet"), "CrashLoopBackOff")).is_none());
        let mut p = pod(Some("ReplicaSet"), "ImagePullBackOff");
        p.metadata.owner_references.as_mut().unwrap()[0].controller = None;
        assert!(
            candidate(&p).is_none(),
            "an owner that is not the controller"
        );
        let mut p = pod(Some("ReplicaSet"), "ImagePullBackOff");
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(candidate(&p).is_none(), "already being deleted");
        let mut p = pod(Some("Job"), "PodInitializing");
        p.status.as_mut().unwrap().init_container_statuses =
            p.status.as_ref().unwrap().container_statuses.clone();
        p.status
            .as_mut()
            .unwrap()
            .init_container_statuses
            .as_mut()
            .unwrap()[0]
            .state
            .as_mut()
            .unwrap()
            .waiting
            .as_mut()
            .unwrap()
            .reason = Some("ImagePullBackOff".to_owned());
        assert!(candidate(&p).is_some(), "stuck in an init container");
    }

    #[test]
    fn a_fraction_of_each_workload_at_once() {
        let t = Instant::now();
        let mut g = RestartGate::new(25, Duration::from_secs(300));
        assert_eq!(g.limit(1), 1);
        assert_eq!(g.limit(3), 1, "at least one, rounded down");
        assert_eq!(g.limit(8), 2);
        assert!(g.allows("rs", 8, t));
        g.record("rs", t);
        assert!(g.allows("rs", 8, t));
        g.record("rs", t);
        assert!(!g.allows("rs", 8, t), "2 of 8 in flight");
        assert!(g.allows("other", 8, t), "per workload");
        assert!(
            g.allows("rs", 8, t + Duration::from_secs(300)),
            "in flight for the window only"
        );
        let mut all = RestartGate::new(100, Duration::from_secs(300));
        for _ in 0..4 {
            assert!(all.allows("rs", 4, t));
            all.record("rs", t);
        }
        assert!(!all.allows("rs", 4, t));
    }
}
