//! Initial sync of the cluster store at scale, against the in-repo fake API server.
//!
//! The cluster: 10,000 namespaces, each with 5 `kubernetes.io/dockerconfigjson` pull secrets
//! (the payloads `kubectl create secret docker-registry` writes, one with two registries), 3
//! secrets of other types as real namespaces hold them (two Opaque, one `helm.sh/release.v1` of
//! `--helm-kib` KiB, 16 by default: which pullgate sees as metadata only) and 3 ServiceAccounts
//! (two of them with the four labels Helm charts set). Measured: time from
//! `ClusterStore::start` to `ready()`, the process's RSS before and after (and its peak), the
//! index's size, the time of `store.view()` plus a namespace lookup, and one admission decision
//! over the synced view against the same decision over a one-namespace index (admission latency
//! must not depend on the cluster's size).
//!
//! The fake API server runs in a child process (this binary re-executed with
//! `PULLGATE_BENCH_ROLE=fake-api`), so its ~hundreds of MiB of objects and JSON never count in
//! the RSS measured here: what is measured is pullgate's store plus the kube client and runtime.
//!
//! Then the real `pullgate serve --cluster` binary syncs the same cluster and answers admission
//! reviews for every namespace over HTTPS; its RSS (from /proc) is the whole process's, as a
//! Deployment's memory limit sees it.
//!
//! The fake answers at a real API server's pace (`--storage-us`, `--cache-us`: the time per
//! object of a list read from etcd or served from the watch cache, by default the figures
//! measured on one) and offers streaming lists unless `--watch-list 0` (then pullgate lists
//! from the watch cache). Admission latency is measured while `serve` syncs and after.
//!
//! Last, the file store: the same objects (without the Helm release secrets) written as one
//! YAML file per namespace, loaded by `pullgate serve --manifests`, its RSS once loaded and
//! the high-water mark across a reload of the changed directory. `--only manifests` runs that
//! alone (no fake API server).
//!
//! ```text
//! cargo bench --bench cluster_sync -- [--namespaces 10000] [--helm-kib 16] [--lookups 1000000] [--reviews 20000] [--worker-threads N]
//!     [--storage-us 116] [--cache-us 32] [--watch-list 1] [--only manifests]
//! ```
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared by the process-level benches, each using a part of it.
#[allow(dead_code)]
#[path = "common/process.rs"]
mod process;
// The test support module's self-tests compile here too (benches build with cfg(test)) but run
// only in tests/cluster.rs, so their imports are unused in this crate.
#[allow(unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use process::{arg, mib, status_kib};
use pullgate::admission::{self, Endpoint};
use pullgate::engine::index::ClusterIndex;
use pullgate::engine::policy::Policy;
use pullgate::metrics::Metrics;
use pullgate::store::kube::{ClusterStore, Scope};
use pullgate::store::Store;
use std::ffi::OsStr;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::fake_api::{FakeApi, ListCost, Options};
use support::fixtures;
use support::serve::ServeProcess;

const ROLE: &str = "PULLGATE_BENCH_ROLE";
const SECRETS: [(&str, &[&str]); 5] = [
    ("regcred", &["registry.example.com"]),
    ("ghcr", &["ghcr.io"]),
    ("ecr", &["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]),
    ("dockerhub", &["https://index.docker.io/v1/"]),
    ("quay-gitlab", &["quay.io/acme", "registry.gitlab.com"]),
];

/// A 64-character registry token, different per secret, as registries issue them.
fn token(n: usize) -> String {
    let mut x = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..64)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[(x % 62) as usize]
                as char
        })
        .collect()
}

fn namespace_name(i: usize) -> String {
    format!("team-{i:05}")
}

/// Namespace `i` and its objects, but for the Helm release secret: the namespace, 5 pull
/// secrets, 2 Opaque secrets, 3 ServiceAccounts.
fn namespace_objects(i: usize) -> Vec<serde_json::Value> {
    let ns = namespace_name(i);
    let labels: &[(&str, &str)] = if i.is_multiple_of(10) {
        &[("pullgate.io/inject", "false")]
    } else {
        &[]
    };
    let mut out = vec![fixtures::namespace(&ns, labels)];
    for (j, (name, registries)) in SECRETS.iter().enumerate() {
        out.push(fixtures::pull_secret(
            &ns,
            name,
            registries,
            &token(i * 5 + j),
        ));
    }
    // Secrets of other types: an application's and a TLS-less config's.
    out.push(fixtures::opaque_secret(
        &ns,
        "app-credentials",
        "password",
        &token(i),
    ));
    out.push(fixtures::opaque_secret(
        &ns,
        "db-connection",
        "url",
        &token(i + 1),
    ));
    out.push(fixtures::service_account(&ns, "default", &["regcred"]));
    // The other two as a Helm chart creates them: with its four standard labels.
    for (name, refs) in [("builder", &["ghcr", "ecr"][..]), ("deployer", &[])] {
        let mut sa = fixtures::service_account(&ns, name, refs);
        sa["metadata"]["labels"] = serde_json::json!({
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/instance": format!("{name}-{i}"),
            "app.kubernetes.io/managed-by": "Helm",
            "helm.sh/chart": format!("{name}-1.4.2"),
        });
        out.push(sa);
    }
    out
}

/// One YAML document per object: top-level keys in block style, their values in flow style
/// (JSON is YAML), as `kubectl get -o yaml` output is read.
fn yaml_documents(objects: &[serde_json::Value]) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        for (k, v) in o.as_object().expect("an object") {
            out.push_str(&format!("{k}: {v}\n"));
        }
    }
    out
}

fn fake_options() -> Options {
    Options {
        list_cost: ListCost {
            storage: Duration::from_micros(arg("--storage-us", 116) as u64),
            cache: Duration::from_micros(arg("--cache-us", 32) as u64),
        },
        watch_list: arg("--watch-list", 1) != 0,
        ..Options::default()
    }
}

/// Child role: serve the populated cluster until the parent closes our stdin.
fn serve_fake(namespaces: usize, helm_kib: usize, options: Options) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let fake = FakeApi::start_with(options).await;
        let started = Instant::now();
        for i in 0..namespaces {
            let ns = namespace_name(i);
            for object in namespace_objects(i) {
                fake.apply(object);
            }
            fake.apply(fixtures::helm_release_secret(&ns, "app", 1, helm_kib * 1024));
        }
        eprintln!(
            "fake API: {} namespaces, {} secrets, {} ServiceAccounts populated in {:.1} s; fake RSS {:.0} MiB",
            fake.count("namespaces"),
            fake.count("secrets"),
            fake.count("serviceaccounts"),
            started.elapsed().as_secs_f64(),
            mib(status_kib("self", "VmRSS:"))
        );
        println!("READY {}", fake.kubeconfig_path().display());
        // Serve until the parent is done (its end of our stdin closes).
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .expect("stdin reader");
    });
}

fn main() {
    let namespaces = arg("--namespaces", 10_000);
    let helm_kib = arg("--helm-kib", 16);
    if std::env::var_os(ROLE).is_some() {
        serve_fake(namespaces, helm_kib, fake_options());
        return;
    }
    let lookups = arg("--lookups", 1_000_000);
    let reviews = arg("--reviews", 20_000);
    let workers = arg("--worker-threads", 0);
    if std::env::args().any(|a| a == "manifests") {
        serve_manifests(namespaces);
        return;
    }
    let exe = std::env::current_exe().expect("own executable");
    let options = fake_options();
    println!(
        "fake API: {} µs per object from storage, {} µs from the watch cache, streaming lists {}",
        options.list_cost.storage.as_micros(),
        options.list_cost.cache.as_micros(),
        if options.watch_list {
            "offered"
        } else {
            "refused"
        }
    );
    let mut child = Command::new(exe)
        .args(std::env::args().skip(1))
        .env(ROLE, "fake-api")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the fake API server");
    let mut lines = BufReader::new(child.stdout.take().expect("child stdout")).lines();
    let kubeconfig = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(path) = line.strip_prefix("READY ") {
                    break std::path::PathBuf::from(path);
                }
            }
            _ => panic!("the fake API server exited before it was ready"),
        }
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = pullgate::store::kube::client(Some(&kubeconfig)).await.expect("client");
        let rss_before = status_kib("self", "VmRSS:");
        let metrics = Arc::new(Metrics::new());
        let started = Instant::now();
        let store = ClusterStore::start(client, Scope::default(), metrics);
        while !store.ready() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let sync = started.elapsed();
        let rss_after = status_kib("self", "VmRSS:");
        let peak = status_kib("self", "VmHWM:");
        let (secrets, others, sas, nss) = {
            let v = store.view();
            (v.secret_count(), v.other_secret_count(), v.service_account_count(), v.namespace_count())
        };

        let names: Vec<String> = (0..namespaces).map(namespace_name).collect();
        let t = Instant::now();
        for i in 0..lookups {
            let view = store.view();
            let ns = view.namespace(&names[i % names.len()]);
            black_box(ns.secrets.len() + ns.service_accounts.len());
        }
        let lookup_ns = t.elapsed().as_nanos() as f64 / lookups as f64;
        // The same namespace every time: the lock and hashing without cache misses.
        let hot = &names[namespaces / 2];
        let t = Instant::now();
        for _ in 0..lookups {
            let view = store.view();
            let ns = view.namespace(hot);
            black_box(ns.secrets.len() + ns.service_accounts.len());
        }
        let hot_ns = t.elapsed().as_nanos() as f64 / lookups as f64;

        // One pod review in a synced namespace vs. the same namespace alone in an index.
        let mut review: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/admission-reviews/admissionreview-pod-create-mutate.json"
            ))
            .expect("fixture"),
        )
        .expect("fixture JSON");
        review["request"]["namespace"] = serde_json::json!(names[namespaces / 2]);
        review["request"]["object"]["metadata"]["namespace"] = serde_json::json!(names[namespaces / 2]);
        let body = serde_json::to_vec(&review).expect("review");
        let policy = Policy::default();
        let now = jiff::Timestamp::now().as_second();
        let mut small = ClusterIndex::new();
        {
            let view = store.view();
            let ns = view.namespace(&names[namespaces / 2]);
            for s in ns.secrets.values() {
                small.upsert_secret(s.clone());
            }
            for o in ns.other_secrets.values() {
                small.upsert_other_secret(&names[namespaces / 2], o.clone());
            }
            for sa in ns.service_accounts.values() {
                small.upsert_service_account(&names[namespaces / 2], sa.clone());
            }
        }
        let decide = |index: &ClusterIndex| {
            let rounds = 20_000;
            let t = Instant::now();
            for _ in 0..rounds {
                black_box(admission::review(Endpoint::Mutate, &body, &policy, index, now).expect("review"));
            }
            t.elapsed().as_nanos() as f64 / 1000.0 / rounds as f64
        };
        let review_small = decide(&small);
        let review_big = {
            let view = store.view();
            decide(&view)
        };

        println!("cluster_sync: {namespaces} namespaces, {secrets} pull secrets, {others} other secrets (by name), {sas} ServiceAccounts ({nss} namespaces indexed)");
        println!("  initial sync           {:>8.2} s", sync.as_secs_f64());
        println!(
            "  RSS before / after     {:>8.1} / {:.1} MiB (store + kube client: {:.1} MiB); peak {:.1} MiB",
            mib(rss_before),
            mib(rss_after),
            mib(rss_after.saturating_sub(rss_before)),
            mib(peak)
        );
        println!("  view() + lookup        {lookup_ns:>8.1} ns across all namespaces, {hot_ns:.1} ns for one (cache-hot)");
        println!("  mutate review          {review_big:>8.1} µs over the synced index, {review_small:.1} µs over one namespace");
        drop(store);

        serve_binary(&kubeconfig, &names, &review, reviews, workers).await;
    });
    // Closing its stdin ends the child.
    drop(child.stdin.take());
    let _ = child.wait();
    serve_manifests(namespaces);
}

/// The file store: `pullgate serve --manifests` over the cluster written as YAML, RSS once
/// loaded, then the high-water mark across the reload of a changed directory.
fn serve_manifests(namespaces: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).expect("manifests dir");
    let t = Instant::now();
    let mut bytes = 0;
    for i in 0..namespaces {
        let text = yaml_documents(&namespace_objects(i));
        bytes += text.len();
        std::fs::write(manifests.join(format!("{}.yaml", namespace_name(i))), text)
            .expect("write manifest");
    }
    println!(
        "pullgate serve --manifests ({namespaces} files, {:.0} MiB of YAML, written in {:.1} s):",
        bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    let ca_out = dir.path().join("ca.pem");
    let args: Vec<&OsStr> = vec![
        OsStr::new("--manifests"),
        manifests.as_os_str(),
        OsStr::new("--self-signed"),
        OsStr::new("--ca-out"),
        ca_out.as_os_str(),
        OsStr::new("--reload-interval"),
        OsStr::new("1s"),
    ];
    let started = Instant::now();
    let mut served = ServeProcess::spawn(args, &[], Duration::from_secs(600));
    let loaded = started.elapsed();
    let pid = served.pid().to_string();
    let (rss, peak) = (status_kib(&pid, "VmRSS:"), status_kib(&pid, "VmHWM:"));
    println!("  loaded and serving     {:>8.2} s", loaded.as_secs_f64());
    println!(
        "  RSS once loaded        {:>8.1} MiB; peak {:.1} MiB",
        mib(rss),
        mib(peak)
    );

    // A changed file: the whole directory is read again into a new index, then swapped.
    let mark = served.mark();
    let first = manifests.join(format!("{}.yaml", namespace_name(0)));
    let mut text = std::fs::read_to_string(&first).expect("read manifest");
    text.push_str(&yaml_documents(&[fixtures::pull_secret(
        &namespace_name(0),
        "added",
        &["added.example.com"],
        &token(0),
    )]));
    std::fs::write(&first, text).expect("change a manifest");
    let t = Instant::now();
    served.wait_log("the manifests to reload", mark, |v| {
        v["message"] == "manifests reloaded"
    });
    let reload = t.elapsed();
    let (rss2, peak2) = (status_kib(&pid, "VmRSS:"), status_kib(&pid, "VmHWM:"));
    served.sigterm();
    let _ = served.finish(Duration::from_secs(30));
    println!("  reload noticed + built {:>8.2} s", reload.as_secs_f64());
    println!(
        "  RSS after the reload   {:>8.1} MiB; peak across it {:.1} MiB",
        mib(rss2),
        mib(peak2)
    );
}

/// Latencies in µs, sorted, as "p50 / p99 / max".
fn percentiles(mut us: Vec<u64>) -> String {
    if us.is_empty() {
        return "none".to_owned();
    }
    us.sort_unstable();
    let at = |q: f64| us[((us.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    format!(
        "p50 {:.2} / p99 {:.2} / max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

/// The real binary: sync time to the "cluster store synced" log line, validate-review latency
/// while it syncs and after (`reviews` spread over every namespace, 8 at a time, over HTTPS),
/// RSS once synced and after the reviews.
async fn serve_binary(
    kubeconfig: &std::path::Path,
    names: &[String],
    review: &serde_json::Value,
    reviews: usize,
    workers: usize,
) {
    const CONCURRENCY: usize = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_out = dir.path().join("ca.pem");
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("--cluster"),
        OsStr::new("--self-signed"),
        OsStr::new("--kubeconfig"),
        kubeconfig.as_os_str(),
        OsStr::new("--ca-out"),
        ca_out.as_os_str(),
    ];
    let workers_arg = workers.to_string();
    if workers > 0 {
        args.extend([OsStr::new("--worker-threads"), OsStr::new(&workers_arg)]);
    }
    let started = Instant::now();
    let mut served = ServeProcess::spawn(args, &[], Duration::from_secs(600));
    let pid = served.pid().to_string();
    let ca = std::fs::read(&ca_out).expect("CA file");
    let https = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA certificate"))
        .build()
        .expect("HTTPS client");
    let url = served.url("/validate?timeout=5s");
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        names
            .iter()
            .map(|ns| {
                let mut r = review.clone();
                r["request"]["namespace"] = serde_json::json!(ns);
                r["request"]["object"]["metadata"]["namespace"] = serde_json::json!(ns);
                serde_json::to_vec(&r).expect("review")
            })
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // `limit` reviews at most, until `stop` is set; each one's latency in µs.
    let run = |limit: usize, stop: Arc<std::sync::atomic::AtomicBool>| {
        let clients: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (https, url, bodies, next, stop) = (
                    https.clone(),
                    url.clone(),
                    bodies.clone(),
                    next.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= limit {
                            break;
                        }
                        let t = Instant::now();
                        let resp = https
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(bodies[i % bodies.len()].clone())
                            .send()
                            .await
                            .expect("POST /validate");
                        assert_eq!(resp.status(), 200, "validate answered");
                        let v: serde_json::Value = resp.json().await.expect("AdmissionReview JSON");
                        assert!(v["response"]["allowed"].is_boolean(), "a decision: {v}");
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    lat
                })
            })
            .collect();
        async move {
            let mut all = Vec::new();
            for c in clients {
                all.extend(c.await.expect("client task"));
            }
            all
        }
    };
    // While it syncs: reviews until the store is synced (the webhook answers before it is
    // ready; the API server only sends them once the readiness probe passes).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let during = tokio::spawn(run(usize::MAX, stop.clone()));
    tokio::task::block_in_place(|| {
        served.wait_log("the cluster store to sync", 0, |v| {
            v["message"] == "cluster store synced"
        })
    });
    let sync = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = during.await.expect("reviews during the sync");
    let (synced_rss, synced_peak) = (status_kib(&pid, "VmRSS:"), status_kib(&pid, "VmHWM:"));

    next.store(0, std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let after = run(reviews, Arc::new(std::sync::atomic::AtomicBool::new(false))).await;
    let served_for = t.elapsed();
    let (rss, peak) = (status_kib(&pid, "VmRSS:"), status_kib(&pid, "VmHWM:"));
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    served.sigterm();
    let _ = served.finish(Duration::from_secs(30));

    println!(
        "pullgate serve --cluster (the real binary, whole process; {}, {threads} threads at the end):",
        if workers > 0 { format!("--worker-threads {workers}") } else { "default workers".to_owned() }
    );
    println!("  sync to log line       {:>8.2} s", sync.as_secs_f64());
    println!(
        "  RSS once synced        {:>8.1} MiB; peak {:.1} MiB",
        mib(synced_rss),
        mib(synced_peak)
    );
    println!(
        "  RSS after reviews      {:>8.1} MiB; peak {:.1} MiB ({} reviews, {:.0}/s over HTTPS, {CONCURRENCY} at a time)",
        mib(rss),
        mib(peak),
        after.len(),
        after.len() as f64 / served_for.as_secs_f64()
    );
    println!(
        "  latency during sync    ({} reviews) {}",
        during.len(),
        percentiles(during)
    );
    println!("  latency after sync     {}", percentiles(after));
}
