//! `pullgate audit` at scale, against the in-repo fake API server.
//!
//! The cluster: 5,000 namespaces (`--namespaces`), each with a pull secret for
//! registry.example.com, a default ServiceAccount naming it, and one Deployment whose ReplicaSet
//! owns 10 pods (`--pods`): 50,000 pods. In one namespace in ten the pods and the template name
//! a secret that does not exist, so the failing paths (findings, pod summaries) are measured too.
//!
//! The fake API server runs in a child process (this binary re-executed with
//! `PULLGATE_BENCH_ROLE=fake-api`), so its objects never count in the RSS measured here.
//!
//! Measured, in process: the store's sync (as `pullgate audit` and `serve --cluster` build it),
//! then one audit pass (`audit::cluster::pass`, pages of 500): pods evaluated per second
//! excluding API time (reading each listed object and deciding; the target is ≥ 20,000/s), the
//! wall time of the pass, and the peak RSS during the pass above the RSS once synced (the peak is
//! reset through /proc/self/clear_refs after the sync, so it is the pass's own). Then the real
//! binary `pullgate audit -A`: its wall time and its peak RSS (VmHWM, sampled every 2 ms until it
//! exits, so a peak in its last milliseconds may be missed).
//!
//! ```text
//! cargo bench --bench audit -- [--namespaces 5000] [--pods 10]
//! ```
// Bench code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/process.rs"]
mod process;
// The test support module's self-tests compile here too (benches build with cfg(test)) but run
// only in the test crates, so their imports are unused in this crate.
#[allow(unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use process::{arg, mib, serve_until_stdin_closes, spawn_fake_api, status_kib};
use pullgate::audit::cluster::{self, Options};
use pullgate::engine::policy::Policy;
use pullgate::metrics::Metrics;
use pullgate::store::kube::{ClusterStore, Scope};
use pullgate::store::Store;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::fake_api::FakeApi;
use support::fixtures;
use support::workloads::{pod, pod_spec, workload};

const ROLE: &str = "PULLGATE_BENCH_ROLE";
const IMAGE: &str = "registry.example.com/team/app:1.4.2";

fn namespace_name(i: usize) -> String {
    format!("team-{i:05}")
}

/// Child role: serve the populated cluster until the parent closes our stdin.
fn serve_fake(namespaces: usize, pods: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let fake = FakeApi::start().await;
        let started = Instant::now();
        for i in 0..namespaces {
            let ns = namespace_name(i);
            fake.apply(fixtures::namespace(&ns, &[]));
            fake.apply_secret(
                &ns,
                "regcred",
                &["registry.example.com"],
                &format!("pw-{i}"),
            );
            fake.apply(fixtures::service_account(&ns, "default", &["regcred"]));
            let secret = if i % 10 == 0 { "deleted" } else { "regcred" };
            let spec = pod_spec(IMAGE, &[secret], "default");
            let dep = fake.apply(workload("Deployment", &ns, "app", spec.clone(), None));
            let rs = fake.apply(workload(
                "ReplicaSet",
                &ns,
                "app-7d9c",
                spec.clone(),
                Some(&dep),
            ));
            for j in 0..pods {
                fake.apply(pod(
                    &ns,
                    &format!("app-7d9c-{j:03}"),
                    spec.clone(),
                    Some(&rs),
                ));
            }
        }
        eprintln!(
            "fake API: {} namespaces, {} pods, {} deployments populated in {:.1} s",
            fake.count("namespaces"),
            fake.count("pods"),
            fake.count("deployments.apps"),
            started.elapsed().as_secs_f64(),
        );
        serve_until_stdin_closes(fake.kubeconfig_path()).await;
    });
}

fn main() {
    let namespaces = arg("--namespaces", 5_000);
    let pods = arg("--pods", 10);
    if std::env::var_os(ROLE).is_some() {
        serve_fake(namespaces, pods);
        return;
    }
    let (mut child, kubeconfig) = spawn_fake_api(
        ROLE,
        &[
            "--namespaces".to_owned(),
            namespaces.to_string(),
            "--pods".to_owned(),
            pods.to_string(),
        ],
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = pullgate::store::kube::client(Some(&kubeconfig)).await.expect("client");
        let policy = Policy::default();
        let store = ClusterStore::start(client.clone(), Scope::default(), Arc::new(Metrics::new()));
        let started = Instant::now();
        while !store.ready() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let sync = started.elapsed();
        let synced = status_kib("self", "VmRSS:");
        // Reset VmHWM to the current RSS, so that the peak read after the pass is the pass's.
        std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
        let now = jiff::Timestamp::now().as_second();
        let t = Instant::now();
        let (report, stats) = cluster::pass(&client, &*store, &policy, &Options::default(), now)
            .await
            .expect("audit pass");
        let wall = t.elapsed();
        let peak = status_kib("self", "VmHWM:");
        let s = &report.summary;
        assert_eq!(s.pods as usize, namespaces * pods, "every pod audited once");
        println!(
            "audit: {namespaces} namespaces, {} workloads, {} pods ({} with problems), {} pages, {} objects",
            s.workloads, s.pods, s.pods_with_problems, stats.pages, stats.objects
        );
        println!("  store sync             {:>8.2} s", sync.as_secs_f64());
        println!(
            "  pods evaluated         {:>8.0} /s excluding API time ({:.2} s for the pods; all objects {:.0}/s)",
            s.pods as f64 / stats.pod_evaluation.as_secs_f64(),
            stats.pod_evaluation.as_secs_f64(),
            stats.objects as f64 / stats.evaluation.as_secs_f64()
        );
        println!(
            "  pass wall time         {:>8.2} s (API included: the fake serves and the client parses)",
            wall.as_secs_f64()
        );
        println!(
            "  RSS once synced        {:>8.1} MiB; peak during the pass {:.1} MiB (+{:.1} MiB)",
            mib(synced),
            mib(peak),
            mib(peak.saturating_sub(synced))
        );
        drop(store);
    });

    for output in ["text", "json"] {
        let t = Instant::now();
        let mut audit = Command::new(env!("CARGO_BIN_EXE_pullgate"))
            .args(["audit", "-A", "-o", output, "--kubeconfig"])
            .arg(&kubeconfig)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run pullgate audit");
        let pid = audit.id().to_string();
        let mut peak = 0;
        let status = loop {
            peak = peak.max(status_kib(&pid, "VmHWM:"));
            if let Some(status) = audit.try_wait().expect("wait for pullgate audit") {
                break status;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(status.code(), Some(1), "one namespace in ten has problems");
        println!(
            "pullgate audit -A -o {output:<4} (the real binary): {:.2} s, peak RSS {:.1} MiB (sampled)",
            t.elapsed().as_secs_f64(),
            mib(peak)
        );
    }
    drop(child.stdin.take());
    let _ = child.wait();
}
