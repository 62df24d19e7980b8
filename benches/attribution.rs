//! Pull-failure attribution under a sustained stream of kubelet failure Events, against the
//! in-repo fake API server (in this process: its CPU counts in the process figures, so they
//! are an upper bound for pullgate's own).
//!
//! The cluster: `--namespaces` namespaces of `--pods-per-ns` pods each whose images no
//! referenced secret covers (half the namespaces hold a covering secret that the ServiceAccount
//! lacks, half hold none). A generator writes `--rate` failure Events per second for
//! `--seconds`, cycling over the pods (so every pod fails several times, as in back-off).
//! Measured: Events offered to attribution and what became of them, the largest queue seen,
//! the time to drain the queue after the last Event, the process's CPU time per Event and its
//! peak RSS. Attribution keeps up when nothing is dropped and the queue stays small.
//!
//! ```text
//! cargo bench --bench attribution -- [--rate 500] [--seconds 20] [--namespaces 20] [--pods-per-ns 100]
//! ```
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared by the process-level benches, each using a part of it.
#[allow(dead_code)]
#[path = "common/process.rs"]
mod process;
// The test support module's self-tests compile here too (benches build with cfg(test)) but run
// only in the test crates, so their imports are unused in this crate.
#[allow(unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use process::{arg, mib, status_kib};
use pullgate::attribution::{run, Settings};
use pullgate::engine::policy::Policy;
use pullgate::metrics::Metrics;
use pullgate::store::kube::{ClusterStore, Scope};
use pullgate::store::Store;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::fake_api::FakeApi;
use support::fixtures;

const IMG: &str = "registry.example.com:5000/shop/api:1.4";

/// User + system CPU time of this process, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the ")".
    (ticks(11) + ticks(12)) / 100.0
}

fn sample(metrics: &Metrics, name: &str, label: Option<&str>) -> f64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| label.is_none_or(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // An empty f64 sum is -0.0; print it as 0.
        .sum::<f64>()
        + 0.0
}

fn outcome(m: &Metrics, o: &str) -> f64 {
    sample(
        m,
        "pullgate_attribution_events_total",
        Some(&format!("outcome=\"{o}\"")),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench` asks harness-less benches to list their tests; there is nothing to list.
        return;
    }
    support::install_crypto();
    let rate = arg("--rate", 500);
    let seconds = arg("--seconds", 20);
    let namespaces = arg("--namespaces", 20);
    let per_ns = arg("--pods-per-ns", 100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async move {
        let fake = FakeApi::start().await;
        fake.apply(fixtures::namespace("pullgate", &[]));
        let mut pods = Vec::new();
        for n in 0..namespaces {
            let ns = format!("team-{n:03}");
            fake.apply(fixtures::service_account(&ns, "default", &[]));
            if n % 2 == 0 {
                fake.apply_secret(&ns, "regcred", &["registry.example.com:5000"], "pw");
            }
            for p in 0..per_ns {
                let name = format!("api-{p:04}");
                fake.apply(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"containers": [{"name": "api", "image": IMG}]}}));
                pods.push((ns.clone(), name));
            }
        }
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn Store> =
            ClusterStore::start(fake.client().await, Scope::default(), Arc::new(Metrics::new()));
        while !store.ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut policy = Policy::default();
        policy.attribution.enabled = true;
        policy.attribution.events_per_second = 1_000;
        let mut settings = Settings::new("pullgate".to_owned(), "bench".to_owned(), Vec::new());
        settings.lease_every = Duration::from_millis(100);
        let task = tokio::spawn(run(
            fake.client().await,
            store,
            Arc::new(policy),
            metrics.clone(),
            settings,
            tokio::sync::watch::channel(false).1,
        ));
        // Leading and watching: offer a probe Event until attribution has queued it.
        let (probe_ns, probe_pod) = &pods[0];
        while outcome(&metrics, "queued") == 0.0 {
            failure(&fake, probe_ns, probe_pod, 0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rss_before = status_kib("self", "VmRSS:");
        let cpu_before = cpu_seconds();
        let total = rate * seconds;
        let start = Instant::now();
        let mut max_queue = 0.0f64;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in 0..total {
            tick.tick().await;
            let (ns, name) = &pods[i % pods.len()];
            failure(&fake, ns, name, 1 + i / pods.len());
            if i % 50 == 0 {
                max_queue = max_queue.max(sample(&metrics, "pullgate_attribution_queued_pods", None));
            }
        }
        let generated_in = start.elapsed();
        let offered = || {
            ["queued", "coalesced", "dropped"]
                .iter()
                .map(|o| outcome(&metrics, o))
                .sum::<f64>()
        };
        let processed = || {
            ["diagnosed", "duplicate", "started", "pod_gone", "error", "not_leader"]
                .iter()
                .map(|o| outcome(&metrics, o))
                .sum::<f64>()
        };
        // Drain: every Event offered and every queued pod processed.
        let drain_start = Instant::now();
        while offered() < total as f64 || processed() < outcome(&metrics, "queued") {
            if drain_start.elapsed() > Duration::from_secs(120) {
                eprintln!("did not drain within 120 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drained_in = drain_start.elapsed();
        let cpu = cpu_seconds() - cpu_before;
        task.abort();
        println!("| Events | generated in | rate | queued | coalesced | dropped | diagnosed | duplicate | max queue | drain after last | process CPU per Event | RSS before → peak |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {total} | {:.1} s | {:.0}/s | {} | {} | {} | {} | {} | {} | {} ms | {:.0} µs | {:.1} → {:.1} MiB |",
            generated_in.as_secs_f64(),
            total as f64 / generated_in.as_secs_f64(),
            outcome(&metrics, "queued"),
            outcome(&metrics, "coalesced"),
            outcome(&metrics, "dropped"),
            outcome(&metrics, "diagnosed"),
            outcome(&metrics, "duplicate"),
            max_queue,
            drained_in.as_millis(),
            cpu / total as f64 * 1e6,
            mib(rss_before),
            mib(status_kib("self", "VmHWM:")),
        );
    });
}

/// One kubelet failure Event (the n-th for this pod).
fn failure(fake: &FakeApi, ns: &str, pod: &str, n: usize) {
    let now = jiff::Timestamp::now().to_string();
    fake.apply(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{pod}.{n:x}"), "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": ns},
        "reason": "Failed", "type": "Warning",
        "message": format!("Failed to pull image \"{IMG}\": failed to authorize: 401 Unauthorized"),
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }));
}
