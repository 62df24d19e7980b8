//! Credential verification at scale: the real verification loop (`verify::service::VerifyLoop`,
//! the prober, rustls, the HTTP adapter) against in-process fake registries over TLS on
//! loopback, with secrets read from memory instead of the API server.
//!
//! The question: do 5,000 secrets across 50 registries get verified well within one interval
//! (6 h by default) while no registry ever sees more probes at once than the per-registry limit?
//! Each fake registry answers `/v2/` with a Basic challenge, then checks the credential, after
//! an artificial latency that stands in for the network and the registry's own work. It
//! records the most requests it handled at once.
//!
//! ```text
//! cargo bench --bench verify -- [--secrets 5000] [--registries 50] [--per-registry 2]
//!     [--latency-ms 20] [--threads 2]
//! ```
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/registry.rs"]
mod registry;

use base64::Engine;
use futures::future::BoxFuture;
use pullgate::engine::index::{ClusterIndex, SecretInfo};
use pullgate::engine::policy::Policy;
use pullgate::metrics::Metrics;
use pullgate::store::{Store, View};
use pullgate::verify::service::{
    FetchedSecret, LoopConfig, SecretData, SecretSource, SourceError, VerifyLoop,
};
use pullgate::verify::{Settings, Verifications, Verifier};
use registry::{Behaviour, FakeRegistry, TestPki};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const USER: &str = "bench-puller";
const PASSWORD: &str = "bench-password";

struct Args {
    secrets: usize,
    registries: usize,
    per_registry: usize,
    latency: Duration,
    threads: usize,
}

fn args() -> Args {
    let mut a = Args {
        secrets: 5_000,
        registries: 50,
        per_registry: 2,
        latency: Duration::from_millis(20),
        threads: 2,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = || argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match argv[i].as_str() {
            "--secrets" => a.secrets = value().map_or(a.secrets, |v| v as usize),
            "--registries" => a.registries = value().map_or(a.registries, |v| (v as usize).max(1)),
            "--per-registry" => a.per_registry = value().map_or(a.per_registry, |v| v as usize),
            "--latency-ms" => a.latency = value().map_or(a.latency, Duration::from_millis),
            "--threads" => a.threads = value().map_or(a.threads, |v| (v as usize).max(1)),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// The index behind a lock, as the cluster store keeps it.
struct MemStore(RwLock<ClusterIndex>);

impl Store for MemStore {
    fn view(&self) -> View<'_> {
        View::Locked(
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn ready(&self) -> bool {
        true
    }
}

/// Secret data from memory, as the API server would return it; counts reads.
struct MemSource {
    data: HashMap<(String, String), BTreeMap<String, Vec<u8>>>,
}

impl SecretSource for MemSource {
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<FetchedSecret>, SourceError>> {
        let found = self
            .data
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|d| FetchedSecret {
                resource_version: Some("1".to_owned()),
                secret_type: "kubernetes.io/dockerconfigjson".to_owned(),
                data: SecretData(d.clone()),
            });
        Box::pin(async move { Ok(found) })
    }
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(a));
}

async fn run(a: Args) {
    let pki = TestPki::new();
    let mut registries = Vec::with_capacity(a.registries);
    for _ in 0..a.registries {
        registries.push(
            FakeRegistry::start(
                "127.0.0.1",
                Some(&pki),
                Behaviour::Basic {
                    user: USER.to_owned(),
                    password: PASSWORD.to_owned(),
                },
                a.latency,
            )
            .await,
        );
    }
    let keys: Vec<String> = registries.iter().map(|r| r.served.authority()).collect();

    let mut index = ClusterIndex::new();
    let mut data = HashMap::new();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for i in 0..a.secrets {
        let ns = format!("team-{}", i % 100);
        let name = format!("regcred-{i}");
        let key = &keys[i % keys.len()];
        let payload = serde_json::json!({"auths": {key: {"auth": auth}}}).to_string();
        let d = BTreeMap::from([(".dockerconfigjson".to_owned(), payload.into_bytes())]);
        index.upsert_secret(SecretInfo::new(
            &ns,
            &name,
            "kubernetes.io/dockerconfigjson",
            Some(0),
            Some("1".to_owned()),
            &d,
        ));
        data.insert((ns, name), d);
    }
    let store = Arc::new(MemStore(RwLock::new(index)));

    // Every registry trusts the test CA through one pattern entry per registry key.
    let mut yaml =
        String::from("verify:\n  enabled: true\n  interval: 6h\n  timeout: 10s\n  registries:\n");
    for k in &keys {
        yaml.push_str(&format!(
            "  - pattern: '{k}'\n    caFile: {}\n",
            pki.ca_file.display()
        ));
    }
    let policy = Arc::new(Policy::from_yaml(&yaml).expect("policy"));
    let settings = Settings::from_policy(&policy.verify)
        .expect("settings")
        .with_per_registry(a.per_registry);
    let metrics = Arc::new(Metrics::new());
    let verifications = Arc::new(Verifications::new());
    let verify_loop = VerifyLoop {
        store: store.clone(),
        verifications: verifications.clone(),
        policy: policy.clone(),
        verifier: Arc::new(Verifier::new(settings)),
        source: Arc::new(MemSource { data }),
        events: None,
        metrics: metrics.clone(),
        config: LoopConfig {
            scan_every: Duration::from_millis(50),
            reads_at_once: 64,
            retry_after: Duration::from_secs(60),
        },
    };

    let started = Instant::now();
    let task = tokio::spawn(verify_loop.run());
    let verified = |store: &MemStore| {
        let view = store.view();
        let table = verifications.snapshot();
        (0..a.secrets)
            .filter(|i| {
                table
                    .verification(&view, &format!("team-{}", i % 100), &format!("regcred-{i}"))
                    .is_some()
            })
            .count()
    };
    let deadline = started + Duration::from_secs(600);
    let mut done = 0;
    while Instant::now() < deadline {
        done = verified(&store);
        if done == a.secrets {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let requests_after_pass: usize = registries.iter().map(|r| r.requests()).sum();
    // An unchanged secret is not probed again within the interval.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requests_later: usize = registries.iter().map(|r| r.requests()).sum();
    task.abort();

    let max_in_flight = registries
        .iter()
        .map(|r| r.stats.max_in_flight.load(Ordering::SeqCst))
        .max()
        .unwrap_or(0);
    let accepted: usize = registries
        .iter()
        .map(|r| r.stats.accepted.load(Ordering::SeqCst))
        .sum();
    let valid = metrics
        .encode()
        .lines()
        .filter(|l| {
            l.starts_with("pullgate_credential_status{") && l.contains("status=\"valid\"} 1")
        })
        .count();
    let interval = policy.verify.interval.0;
    let per_sec = done as f64 / elapsed.as_secs_f64();
    // The floor: each registry's probes run `per_registry` at a time, two round trips each.
    let floor = a.latency.as_secs_f64() * 2.0 * (a.secrets as f64 / a.registries as f64)
        / a.per_registry.max(1) as f64;

    println!(
        "## Credential verification: {} secrets across {} registries\n",
        a.secrets, a.registries
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| secrets verified | {done} of {} |", a.secrets);
    println!("| valid (metric `pullgate_credential_status`) | {valid} |");
    println!("| credentials accepted by the registries | {accepted} |");
    println!("| per-registry limit | {} |", a.per_registry);
    println!("| most requests one registry saw at once | {max_in_flight} |");
    println!(
        "| registry latency per request | {} ms |",
        a.latency.as_millis()
    );
    println!(
        "| time for the whole pass | {:.2} s |",
        elapsed.as_secs_f64()
    );
    println!("| floor (latency × 2 requests × secrets per registry ÷ limit) | {floor:.2} s |");
    println!("| secrets verified per second | {per_sec:.0} |");
    println!(
        "| share of one interval ({}) | {:.4} % |",
        policy.verify.interval,
        100.0 * elapsed.as_secs_f64() / interval.as_secs_f64()
    );
    println!("| requests in the pass / 1 s later | {requests_after_pass} / {requests_later} |");
    println!(
        "| runtime worker threads (cores: {}) | {} |",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.threads
    );

    assert_eq!(done, a.secrets, "every secret verified");
    assert!(
        max_in_flight <= a.per_registry,
        "a registry saw {max_in_flight} requests at once, over the limit of {}",
        a.per_registry
    );
    assert!(elapsed < interval, "the pass fits in one interval");
    assert_eq!(requests_after_pass, requests_later, "no early re-probe");
}
