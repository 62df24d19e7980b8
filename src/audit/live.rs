//! What the background audit publishes from a report, pure: finding counts per namespace and
//! code (the `pullgate_audit_findings` gauge), the causes found on each workload, and the bounded
//! memory of causes already announced with an Event.

use super::report::{AuditReport, ResultScope};
use crate::engine::{Code, Severity};
use std::collections::{BTreeMap, HashSet, VecDeque};

/// Workloads and lone pods with a finding of each code, per namespace.
pub type FindingCounts = BTreeMap<String, BTreeMap<Code, u64>>;

/// One cause on one workload, as an Event announces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cause {
    /// Namespace.
    pub namespace: String,
    /// Workload kind.
    pub kind: String,
    /// Workload name.
    pub name: String,
    /// Finding code.
    pub code: Code,
    /// The workload's uid (a workload recreated under the same name is another one).
    pub uid: String,
}

/// Each workload's (or lone pod's) distinct codes at warning or error, counted per namespace.
pub fn finding_counts(report: &AuditReport) -> FindingCounts {
    let mut counts = FindingCounts::new();
    for r in &report.results {
        let mut codes: Vec<Code> = r
            .result
            .findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning)
            .map(|f| f.code)
            .chain(r.pods.iter().flat_map(|p| p.causes.iter().map(|c| c.code)))
            .collect();
        codes.sort_unstable();
        codes.dedup();
        for c in codes {
            *counts
                .entry(r.result.namespace.clone())
                .or_default()
                .entry(c)
                .or_default() += 1;
        }
    }
    counts
}

/// Each workload's causes (its next pod's findings at warning or error, then its pods'), with
/// the message of the first finding of each code.
pub fn workload_causes(report: &AuditReport) -> Vec<(Cause, String)> {
    let mut out: Vec<(Cause, String)> = Vec::new();
    for r in report
        .results
        .iter()
        .filter(|r| r.scope == ResultScope::Workload)
    {
        let next = r
            .result
            .findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning)
            .map(|f| (f.code, format!("next pod: {}", f.message)));
        let pods = r.pods.iter().flat_map(|p| {
            p.causes.iter().map(move |c| {
                (
                    c.code,
                    format!("{} of {} pods: {}", c.pods, p.total, c.message),
                )
            })
        });
        let mut seen: Vec<Code> = Vec::new();
        for (code, message) in next.chain(pods) {
            if seen.contains(&code) {
                continue;
            }
            seen.push(code);
            out.push((
                Cause {
                    namespace: r.result.namespace.clone(),
                    kind: r.result.kind.clone(),
                    name: r.result.name.clone(),
                    code,
                    uid: r.uid.clone(),
                },
                message,
            ));
        }
    }
    out
}

/// Causes already announced, at most `capacity` (the oldest forgotten first, so memory stays
/// bounded whatever the cluster's size); a cause that goes away is forgotten, so its return is
/// announced again.
#[derive(Debug, Clone)]
pub struct Announced {
    capacity: usize,
    order: VecDeque<Cause>,
    known: HashSet<Cause>,
}

impl Announced {
    /// An empty memory of at most `capacity` causes.
    pub fn new(capacity: usize) -> Self {
        Announced {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            known: HashSet::new(),
        }
    }

    /// Whether `cause` is new (and remember it).
    pub fn fresh(&mut self, cause: &Cause) -> bool {
        if self.known.contains(cause) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.known.remove(&old);
            }
        }
        self.order.push_back(cause.clone());
        self.known.insert(cause.clone());
        true
    }

    /// Forget the causes in `namespace` (every one when `None`) that the pass over it no longer found.
    pub fn resolve(&mut self, namespace: Option<&str>, current: &HashSet<Cause>) {
        let gone = |c: &Cause| namespace.is_none_or(|n| c.namespace == n) && !current.contains(c);
        if self.order.iter().any(gone) {
            self.order.retain(|c| !gone(c));
            self.known.retain(|c| !gone(c));
        }
    }

    /// Causes remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(ns: &str, name: &str, code: Code) -> Cause {
        Cause {
            namespace: ns.to_owned(),
            kind: "Deployment".to_owned(),
            name: name.to_owned(),
            code,
            uid: format!("uid-{name}"),
        }
    }

    #[test]
    fn a_cause_is_announced_once_until_it_goes_away() {
        let mut a = Announced::new(10);
        let c = cause("shop", "api", Code::SecretNotFound);
        assert!(a.fresh(&c));
        assert!(!a.fresh(&c));
        // Another namespace's pass leaves it alone; its own pass that still finds it too.
        a.resolve(Some("web"), &HashSet::new());
        a.resolve(Some("shop"), &HashSet::from([c.clone()]));
        assert!(!a.fresh(&c));
        // Fixed, then broken again: a new cause.
        a.resolve(Some("shop"), &HashSet::new());
        assert!(a.is_empty());
        assert!(a.fresh(&c));
        a.resolve(None, &HashSet::new());
        assert!(a.fresh(&c));
    }

    #[test]
    fn counts_and_causes_come_from_workloads_and_their_pods() {
        use crate::audit::object::parse;
        use crate::audit::Auditor;
        use crate::engine::index::ClusterIndex;
        use crate::engine::podview::WorkloadKind;
        use crate::engine::policy::Policy;
        let deployment = |name: &str, secret: &str| {
            let v = serde_json::json!({"metadata": {"name": name, "namespace": "shop", "uid": name},
                "spec": {"template": {"spec": {"imagePullSecrets": [{"name": secret}],
                "containers": [{"name": "app", "image": "registry.example.com/a:1"}]}}}});
            parse(WorkloadKind::Deployment, v.to_string().as_bytes(), "shop").unwrap()
        };
        let policy = Policy::default();
        let mut a = Auditor::new(&policy, 0);
        let idx = ClusterIndex::new();
        a.workload(&deployment("api", "gone"), &idx);
        a.workload(&deployment("web", "gone"), &idx);
        let report = a.finish();
        let counts = finding_counts(&report);
        assert_eq!(counts["shop"][&Code::SecretNotFound], 2, "{counts:?}");
        let causes = workload_causes(&report);
        let api: Vec<&(Cause, String)> = causes.iter().filter(|(c, _)| c.name == "api").collect();
        assert!(
            api.iter().any(|(c, m)| c.code == Code::SecretNotFound
                && c.kind == "Deployment"
                && m.starts_with("next pod: ")),
            "{causes:?}"
        );
        // One entry per code per workload.
        let mut keys: Vec<&Cause> = causes.iter().map(|(c, _)| c).collect();
        keys.dedup();
        assert_eq!(keys.len(), causes.len());
    }

    #[test]
    fn memory_is_bounded() {
        let mut a = Announced::new(3);
        for i in 0..10 {
            assert!(a.fresh(&cause("ns", &format!("w{i}"), Code::SecretNotFound)));
        }
        assert_eq!(a.len(), 3);
        assert!(!a.fresh(&cause("ns", "w9", Code::SecretNotFound)));
        assert!(a.fresh(&cause("ns", "w0", Code::SecretNotFound)), "evicted");
    }
}
