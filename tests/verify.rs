//! Credential verification against real servers on loopback: Debian's `docker-registry` (the
//! distribution registry) with TLS and htpasswd or token auth, a bearer-token realm on another
//! host (127.0.0.2), scriptable fake registries for redirects, slowness and 5xx, the cluster
//! loop against the fake API server, and `pullgate check --verify` as a pipeline runs it.
//!
//! Every test that needs the real registry fails, naming the install command, when it is not
//! installed; `.ci/run` installs it.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared with the cluster tests; this binary uses only part of it.
#[allow(dead_code)]
mod support;

use k8s_openapi::api::core::v1::Event;
use pullgate::engine::index::CredentialStatus;
use pullgate::engine::keyring::RegistryKey;
use pullgate::engine::podview::{PodView, WorkloadKind};
use pullgate::engine::policy::Policy;
use pullgate::engine::pullsecret::{credentials_for, DOCKER_CONFIG_JSON_TYPE};
use pullgate::engine::{evaluate_pod, Code, Operation, PodContext, Severity};
use pullgate::metrics::Metrics;
use pullgate::store::kube::{ClusterStore, Scope};
use pullgate::store::Store;
use pullgate::verify::kube::{KubeEvents, KubeSecrets};
use pullgate::verify::service::{LoopConfig, VerifyLoop};
use pullgate::verify::{Settings, Verdict, Verifications, Verifier};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::registry::{self, Auth, Behaviour, FakeRegistry, RealRegistry, Realm, TestPki};
use support::{eventually, fixtures, logs, poll, DEADLINE};

/// The password planted in every secret: it must never show up in logs, metrics or reports.
const PLANTED: &str = "Pl4nted-Verify-Pw-93kQz";
/// A second, wrong password (also planted: it is a credential too).
const WRONG: &str = "Wr0ng-Verify-Pw-51xTq";
/// The username `fixtures::docker_config_json` writes.
const USER: &str = "robot$ci-puller";

fn policy(yaml: &str) -> Policy {
    Policy::from_yaml(yaml).expect("test policy")
}

fn verifier(yaml: &str) -> Verifier {
    Verifier::new(Settings::from_policy(&policy(yaml).verify).expect("verify settings"))
}

/// A registry entry trusting the test CA.
fn trusting(pattern: &str, pki: &TestPki) -> String {
    registry::verify_policy(
        false,
        "5s",
        &[(pattern, Some(pki.ca_file.as_path()), false)],
    )
}

/// Probe `key` with a `.dockerconfigjson` for it holding `user`/`password`.
async fn probe(v: &Verifier, key: &str, user: &str, password: &str) -> Verdict {
    let auth = fixtures::b64(format!("{user}:{password}"));
    let payload = json!({"auths": {key: {"auth": auth}}}).to_string();
    let data = BTreeMap::from([(".dockerconfigjson".to_owned(), payload.into_bytes())]);
    let key = RegistryKey::parse(key).expect("registry key");
    let read = || async { credentials_for(DOCKER_CONFIG_JSON_TYPE, &data, &key) };
    v.probe(&key, read).await.expect("credentials decode")
}

fn assert_status(v: &Verdict, want: CredentialStatus, what: &str) {
    assert_eq!(v.status, want, "{what}: {}", v.detail);
    for secret in [PLANTED, WRONG] {
        assert!(
            !v.detail.contains(secret),
            "{what}: detail leaks a credential"
        );
    }
}

fn htpasswd_users() -> Auth {
    Auth::Htpasswd(vec![(USER.to_owned(), PLANTED.to_owned())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_registry_basic_auth_valid_and_wrong_password() {
    logs::capture();
    registry::require_real_registry("real_registry_basic_auth_valid_and_wrong_password");
    let pki = TestPki::new();
    let reg = RealRegistry::start(&pki, htpasswd_users()).await;
    let v = verifier(&trusting(&reg.key(), &pki));
    assert_status(
        &probe(&v, &reg.key(), USER, PLANTED).await,
        CredentialStatus::Valid,
        "right password",
    );
    assert_status(
        &probe(&v, &reg.key(), USER, WRONG).await,
        CredentialStatus::Rejected,
        "wrong password",
    );
    assert_status(
        &probe(&v, &reg.key(), "nobody", PLANTED).await,
        CredentialStatus::Rejected,
        "unknown user",
    );
    // /v2/ anonymously, then with the credential: two requests per probe.
    assert_eq!(reg.probe_requests(), 6, "{}", reg.log_text());
}

/// The distribution registry's self-signed recipe gives a certificate that is its own CA; with
/// `caFile` naming it, credentials are judged like any other registry's, not `unreachable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_registry_with_a_self_signed_ca_certificate_judges_credentials() {
    logs::capture();
    registry::require_real_registry(
        "real_registry_with_a_self_signed_ca_certificate_judges_credentials",
    );
    let pki = TestPki::self_signed();
    let reg = RealRegistry::start(&pki, htpasswd_users()).await;
    let v = verifier(&trusting(&reg.key(), &pki));
    assert_status(
        &probe(&v, &reg.key(), USER, PLANTED).await,
        CredentialStatus::Valid,
        "right password",
    );
    assert_status(
        &probe(&v, &reg.key(), USER, WRONG).await,
        CredentialStatus::Rejected,
        "wrong password",
    );
    assert_eq!(reg.probe_requests(), 4, "{}", reg.log_text());

    // Only the caFile makes it trusted: without one it stays unreachable, and nothing is sent.
    let untrusting = verifier(&registry::verify_policy(false, "5s", &[]));
    let v = probe(&untrusting, &reg.key(), USER, WRONG).await;
    assert_status(&v, CredentialStatus::Unreachable, "no caFile");
    assert!(v.detail.contains("TLS"), "{}", v.detail);
    assert_eq!(reg.probe_requests(), 4, "{}", reg.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_and_a_stopped_registry_are_unreachable_never_rejected() {
    logs::capture();
    registry::require_real_registry(
        "untrusted_ca_and_a_stopped_registry_are_unreachable_never_rejected",
    );
    let pki = TestPki::new();
    let mut reg = RealRegistry::start(&pki, htpasswd_users()).await;
    // No caFile: the test CA is not among the system roots.
    let untrusting = verifier(&registry::verify_policy(false, "5s", &[]));
    let v = probe(&untrusting, &reg.key(), USER, WRONG).await;
    assert_status(&v, CredentialStatus::Unreachable, "untrusted CA");
    assert!(
        v.detail.contains("TLS") && v.detail.to_lowercase().contains("certificate"),
        "{}",
        v.detail
    );
    assert_eq!(
        reg.probe_requests(),
        0,
        "nothing was sent before the handshake failed"
    );

    let trusting = verifier(&trusting(&reg.key(), &pki));
    reg.stop();
    let v = probe(&trusting, &reg.key(), USER, WRONG).await;
    assert_status(&v, CredentialStatus::Unreachable, "registry down");
    assert!(v.detail.contains("cannot connect"), "{}", v.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_registry_token_auth_with_the_realm_on_another_host() {
    logs::capture();
    registry::require_real_registry("real_registry_token_auth_with_the_realm_on_another_host");
    let pki = TestPki::new();
    // The realm listens on 127.0.0.2: another host than the registry's 127.0.0.1.
    let realm = Realm::start("127.0.0.2", &pki, USER, PLANTED, None).await;
    let reg = RealRegistry::start(
        &pki,
        Auth::Token {
            realm: realm.url(),
            service: "pullgate-test".to_owned(),
        },
    )
    .await;
    // Only the registry has a caFile entry: its realm inherits that trust.
    let mut yaml = trusting(&reg.key(), &pki);
    yaml.push_str("  probeRepository: team/app\n");
    let v = verifier(&yaml);
    assert_status(
        &probe(&v, &reg.key(), USER, PLANTED).await,
        CredentialStatus::Valid,
        "right password",
    );
    assert_status(
        &probe(&v, &reg.key(), USER, WRONG).await,
        CredentialStatus::Rejected,
        "wrong password",
    );
    let seen = realm.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].accepted && !seen[1].accepted);
    assert_eq!(seen[0].user.as_deref(), Some(USER));
    assert_eq!(
        seen[0].query,
        "service=pullgate-test&scope=repository%3Ateam%2Fapp%3Apull"
    );
    assert_eq!(realm.issued(), 1);
    // The registry saw only the anonymous /v2/ of each probe.
    assert_eq!(reg.probe_requests(), 2, "{}", reg.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_only_to_the_registry_and_the_realm_it_named() {
    logs::capture();
    let pki = TestPki::new();
    let trap = FakeRegistry::start("127.0.0.3", Some(&pki), Behaviour::Trap, Duration::ZERO).await;
    let trap_url = format!("https://{}/v2/", trap.served.addr);
    let realm = Realm::start("127.0.0.2", &pki, USER, PLANTED, None).await;
    let bearer = FakeRegistry::start(
        "127.0.0.1",
        Some(&pki),
        Behaviour::Bearer { realm: realm.url() },
        Duration::ZERO,
    )
    .await;
    // Patterns match the registry keys, which carry the port.
    let v = verifier(&trusting(&bearer.served.authority(), &pki));
    assert_status(
        &probe(&v, &bearer.served.authority(), USER, PLANTED).await,
        CredentialStatus::Valid,
        "token flow",
    );
    assert_eq!(
        bearer.stats.with_authorization.load(Ordering::SeqCst),
        0,
        "the registry never gets the credential in a token flow"
    );
    assert_eq!(realm.seen().len(), 1);

    // Redirects to a host nobody named are refused before anything is sent there.
    let redirecting_realm =
        Realm::start("127.0.0.2", &pki, USER, PLANTED, Some(trap_url.clone())).await;
    let cases = [
        (
            "/v2/ redirected",
            Behaviour::Redirect {
                to: trap_url.clone(),
            },
        ),
        (
            "authenticated /v2/ redirected",
            Behaviour::RedirectAuthenticated {
                to: trap_url.clone(),
            },
        ),
        (
            "realm redirected",
            Behaviour::Bearer {
                realm: redirecting_realm.url(),
            },
        ),
    ];
    for (what, behaviour) in cases {
        let fake = FakeRegistry::start("127.0.0.1", Some(&pki), behaviour, Duration::ZERO).await;
        let key = fake.served.authority();
        let v = verifier(&trusting(&key, &pki));
        let verdict = probe(&v, &key, USER, PLANTED).await;
        assert_status(&verdict, CredentialStatus::Unsupported, what);
        assert!(
            verdict.detail.contains("same origin only"),
            "{what}: {}",
            verdict.detail
        );
    }
    assert_eq!(
        redirecting_realm.seen().len(),
        1,
        "the realm the registry named got the credential"
    );
    assert_eq!(trap.requests(), 0, "nothing reached the host nobody named");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_registries_time_out_and_server_errors_are_unreachable() {
    logs::capture();
    let pki = TestPki::new();
    let slow = FakeRegistry::start(
        "127.0.0.1",
        Some(&pki),
        Behaviour::Basic {
            user: USER.into(),
            password: PLANTED.into(),
        },
        Duration::from_secs(5),
    )
    .await;
    let key = slow.served.authority();
    let v = verifier(&registry::verify_policy(
        false,
        "1s",
        &[(&key, Some(&pki.ca_file), false)],
    ));
    let started = Instant::now();
    let verdict = probe(&v, &key, USER, PLANTED).await;
    assert_status(&verdict, CredentialStatus::Unreachable, "slow registry");
    assert!(
        verdict.detail.contains("no complete answer within"),
        "{}",
        verdict.detail
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline holds: {:?}",
        started.elapsed()
    );

    let cases = [
        (503, CredentialStatus::Unreachable),
        (500, CredentialStatus::Unreachable),
        (401, CredentialStatus::Unsupported),
        (404, CredentialStatus::Unsupported),
        (200, CredentialStatus::Unsupported),
    ];
    for (status, want) in cases {
        let fake = FakeRegistry::start(
            "127.0.0.1",
            Some(&pki),
            Behaviour::Status(status),
            Duration::ZERO,
        )
        .await;
        let key = fake.served.authority();
        let v = verifier(&trusting(&key, &pki));
        assert_status(
            &probe(&v, &key, USER, PLANTED).await,
            want,
            &format!("status {status}"),
        );
        assert_eq!(
            fake.stats.with_authorization.load(Ordering::SeqCst),
            0,
            "status {status}: no credential sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_only_where_the_policy_says_insecure() {
    logs::capture();
    let fake = FakeRegistry::start(
        "127.0.0.1",
        None,
        Behaviour::Basic {
            user: USER.into(),
            password: PLANTED.into(),
        },
        Duration::ZERO,
    )
    .await;
    let key = fake.served.authority();
    // Not insecure: HTTPS to a plain-HTTP port fails the handshake (unreachable), no credential sent.
    let v = verifier(&registry::verify_policy(false, "5s", &[]));
    assert_status(
        &probe(&v, &key, USER, PLANTED).await,
        CredentialStatus::Unreachable,
        "https to http",
    );
    assert_eq!(fake.stats.with_authorization.load(Ordering::SeqCst), 0);
    let settings = Settings::from_policy(
        &policy(&registry::verify_policy(false, "5s", &[(&key, None, true)])).verify,
    )
    .expect("settings");
    assert_eq!(settings.insecure_patterns(), std::slice::from_ref(&key));
    let v = Verifier::new(settings);
    assert_status(
        &probe(&v, &key, USER, PLANTED).await,
        CredentialStatus::Valid,
        "insecure registry",
    );
    assert_status(
        &probe(&v, &key, USER, WRONG).await,
        CredentialStatus::Rejected,
        "insecure registry, wrong password",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_registry_concurrency_is_never_exceeded() {
    logs::capture();
    let pki = TestPki::new();
    let fake = FakeRegistry::start(
        "127.0.0.1",
        Some(&pki),
        Behaviour::Basic {
            user: USER.into(),
            password: PLANTED.into(),
        },
        Duration::from_millis(40),
    )
    .await;
    let key = fake.served.authority();
    let v = Verifier::new(
        Settings::from_policy(&policy(&trusting(&key, &pki)).verify)
            .expect("settings")
            .with_per_registry(2),
    );
    let probes = (0..12).map(|_| probe(&v, &key, USER, PLANTED));
    let verdicts = futures::future::join_all(probes).await;
    assert!(verdicts.iter().all(|v| v.status == CredentialStatus::Valid));
    assert_eq!(fake.stats.accepted.load(Ordering::SeqCst), 12);
    let max = fake.stats.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 2, "at most 2 at once, saw {max}");
    assert_eq!(max, 2, "and the limit is used");
}

// ---- cluster mode ----

fn credential_lines(metrics: &Metrics, secret: &str) -> Vec<String> {
    metrics
        .encode()
        .lines()
        .filter(|l| {
            l.starts_with("pullgate_credential_") && l.contains(&format!("secret=\"{secret}\""))
        })
        .map(str::to_owned)
        .collect()
}

fn status_of(
    store: &ClusterStore,
    verified: &Verifications,
    ns: &str,
    name: &str,
    key: &str,
) -> Option<CredentialStatus> {
    verified
        .snapshot()
        .credential_status(&store.view(), ns, name, key)
}

async fn events(fake: &support::fake_api::FakeApi, ns: &str) -> Vec<Event> {
    let api: kube::Api<Event> = kube::Api::namespaced(fake.client().await, ns);
    api.list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn leaks(text: &str) -> Vec<String> {
    let b64 = |s: String| fixtures::b64(s);
    let mut needles = vec![PLANTED.to_owned(), WRONG.to_owned()];
    for pw in [PLANTED, WRONG] {
        needles.push(b64(format!("{USER}:{pw}")));
        needles.push(b64(pw.to_owned()));
    }
    needles
        .into_iter()
        .filter(|n| text.contains(n.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_rotation_cache_metrics_events_findings_and_no_leaks() {
    logs::capture();
    registry::require_real_registry(
        "cluster_mode_rotation_cache_metrics_events_findings_and_no_leaks",
    );
    let pki = TestPki::new();
    let reg = RealRegistry::start(&pki, htpasswd_users()).await;
    let key = reg.key();
    // A loopback port nothing listens on: a registry that is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string();
    let fake = support::fake_api::FakeApi::start().await;
    fake.apply_secret("shop", "regcred", &[&key], WRONG);
    fake.apply_secret("shop", "other-registry", &[&down], PLANTED);

    let metrics = Arc::new(Metrics::new());
    let store = ClusterStore::start(fake.client().await, Scope::default(), metrics.clone());
    eventually("the store to sync", || store.ready()).await;
    let mut yaml = registry::verify_policy(true, "5s", &[(&key, Some(&pki.ca_file), false)]);
    yaml.push_str("  interval: 1h\n");
    let policy = Arc::new(policy(&yaml));
    let client = fake.client().await;
    let verified = Arc::new(Verifications::new());
    let verify_loop = VerifyLoop {
        store: store.clone() as Arc<dyn Store>,
        verifications: verified.clone(),
        policy: policy.clone(),
        verifier: Arc::new(Verifier::new(
            Settings::from_policy(&policy.verify).expect("settings"),
        )),
        source: Arc::new(KubeSecrets::new(client.clone())),
        events: Some(Arc::new(KubeEvents::new(client))),
        metrics: metrics.clone(),
        config: LoopConfig {
            scan_every: Duration::from_millis(50),
            ..LoopConfig::default()
        },
    };
    let task = tokio::spawn(verify_loop.run());

    // The wrong password: rejected in the index, the metrics, an Event, and an admission finding.
    poll("the secret to be verified rejected", DEADLINE, || async {
        (status_of(&store, &verified, "shop", "regcred", &key) == Some(CredentialStatus::Rejected))
            .then_some(())
    })
    .await;
    let lines = credential_lines(&metrics, "regcred");
    let status_line = |s: &str| {
        format!("pullgate_credential_status{{namespace=\"shop\",secret=\"regcred\",registry=\"{key}\",status=\"{s}\"}}")
    };
    assert!(
        lines.contains(&format!("{} 1", status_line("rejected"))),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&format!("{} 0", status_line("valid"))),
        "{lines:#?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("pullgate_credential_last_verified_timestamp_seconds{")));
    let pod = json!({"metadata": {"name": "web", "namespace": "shop"},
        "spec": {"imagePullSecrets": [{"name": "regcred"}], "containers": [{"name": "web", "image": format!("{key}/shop/web:1")}]}});
    let view = PodView::from_value(WorkloadKind::Pod, &pod).expect("pod");
    let ctx = PodContext {
        namespace: "shop",
        operation: Operation::Create,
        now: 0,
        allow_inject: false,
        verified: None,
    };
    let findings_json = {
        let table = verified.snapshot();
        let ctx = ctx.with_verified(Some(&table));
        let index = store.view();
        let d = evaluate_pod(&view, &ctx, &policy, &index);
        let rejected: Vec<_> = d
            .findings
            .iter()
            .filter(|f| f.code == Code::CredentialsRejected)
            .collect();
        assert_eq!(rejected.len(), 1, "{:?}", d.findings);
        assert_eq!(rejected[0].severity, Severity::Error, "verify.deny");
        serde_json::to_string(&d.findings).expect("findings json")
    };
    poll("an Event on the Secret", DEADLINE, || async {
        events(&fake, "shop").await.into_iter().find(|e| {
            e.reason.as_deref() == Some("CredentialsRejected")
                && e.involved_object.name.as_deref() == Some("regcred")
        })
    })
    .await;

    // Unchanged: cached, not probed again within the interval (one probe is anonymous /v2/,
    // then /v2/ with the credential; the access log may trail the response by a moment).
    poll(
        "the probe's two requests in the access log",
        DEADLINE,
        || async { (reg.probe_requests() == 2).then_some(()) },
    )
    .await;
    // An early re-probe of the unchanged secret would add two requests before the rotation's
    // two: the count below would then pass 4 and the poll for exactly 4 would time out.

    // Rotated (a new resourceVersion): probed at once, and valid now.
    fake.apply_secret("shop", "regcred", &[&key], PLANTED);
    poll(
        "the rotated secret to be verified valid",
        DEADLINE,
        || async {
            (status_of(&store, &verified, "shop", "regcred", &key) == Some(CredentialStatus::Valid))
                .then_some(())
        },
    )
    .await;
    poll("exactly one more probe", DEADLINE, || async {
        (reg.probe_requests() == 4).then_some(())
    })
    .await;
    assert!(credential_lines(&metrics, "regcred").contains(&format!("{} 1", status_line("valid"))));
    poll("a recovery Event", DEADLINE, || async {
        events(&fake, "shop")
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("CredentialsVerified"))
    })
    .await;
    {
        let index = store.view();
        let d = evaluate_pod(&view, &ctx, &policy, &index);
        assert!(
            d.findings
                .iter()
                .all(|f| f.code != Code::CredentialsRejected),
            "{:?}",
            d.findings
        );
    }
    // The secret whose registry is unreachable is reported as such, never as rejected.
    poll("the unreachable registry's status", DEADLINE, || async {
        status_of(&store, &verified, "shop", "other-registry", &down)
            .filter(|s| *s == CredentialStatus::Unreachable)
    })
    .await;

    // Deleted: its series go.
    assert!(fake.delete("secrets", "shop", "regcred"));
    poll("the deleted secret's metrics to go", DEADLINE, || async {
        credential_lines(&metrics, "regcred")
            .is_empty()
            .then_some(())
    })
    .await;
    task.abort();

    // Nothing secret in logs, metrics, findings or Events.
    let event_text = serde_json::to_string(&events(&fake, "shop").await).expect("events json");
    for (what, text) in [
        ("logs", logs::text()),
        ("metrics", metrics.encode()),
        ("findings", findings_json),
        ("events", event_text),
    ] {
        assert!(
            leaks(&text).is_empty(),
            "{what} leak a credential: {:?}",
            leaks(&text)
        );
    }
    assert!(
        logs::text().contains("registry rejects the secret's credentials"),
        "the rejection was logged"
    );
}

// ---- pullgate check --verify ----

fn write_inputs(dir: &Path, key: &str, password: &str, ca: &Path, deny: bool) {
    let secret = fixtures::pull_secret("shop", "regcred", &[key], password);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"imagePullSecrets": [{"name": "regcred"}], "containers": [{"name": "web", "image": format!("{key}/shop/web:1")}]}});
    // JSON documents are YAML too; the leading `---` makes the loader read the file as YAML.
    let docs = format!("---\n{secret}\n---\n{pod}\n");
    std::fs::write(dir.join("app.yaml"), docs).expect("write manifests");
    let yaml = registry::verify_policy(deny, "5s", &[(key, Some(ca), false)]);
    std::fs::write(dir.join("policy.yaml"), yaml).expect("write policy");
}

fn run_check(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
        .arg("check")
        .arg("--verify")
        .arg("--config")
        .arg(dir.join("policy.yaml"))
        .args(extra)
        .arg(dir.join("app.yaml"))
        .output()
        .expect("run pullgate check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_verify_fails_a_pipeline_on_rejected_credentials() {
    registry::require_real_registry("check_verify_fails_a_pipeline_on_rejected_credentials");
    let pki = TestPki::new();
    let reg = RealRegistry::start(&pki, htpasswd_users()).await;
    let dir = tempfile::tempdir().expect("dir");

    // Rejected under verify.deny: exit 1, an error finding and the credential's status.
    write_inputs(dir.path(), &reg.key(), WRONG, &pki.ca_file, true);
    let (code, stdout, stderr) = run_check(dir.path(), &["-o", "json"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json report");
    assert_eq!(report["credentials"][0]["status"], "rejected", "{report:#}");
    assert_eq!(report["credentials"][0]["registry"], reg.key());
    let finding = &report["results"][0]["findings"][0];
    assert_eq!(finding["code"], "CredentialsRejected", "{report:#}");
    assert_eq!(finding["severity"], "error");
    assert!(
        leaks(&stdout).is_empty() && leaks(&stderr).is_empty(),
        "{:?}",
        leaks(&stdout)
    );
    let (code, text, _) = run_check(dir.path(), &[]);
    assert_eq!(code, 1);
    assert!(
        text.contains("CredentialsRejected") && text.contains("credentials:\n  rejected"),
        "{text}"
    );
    assert!(leaks(&text).is_empty());

    // Without verify.deny it is a warning: exit 0, unless the pipeline asks for deny mode.
    write_inputs(dir.path(), &reg.key(), WRONG, &pki.ca_file, false);
    let (code, stdout, _) = run_check(dir.path(), &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("warning CredentialsRejected"), "{stdout}");
    let (code, _, _) = run_check(dir.path(), &["--validation", "deny"]);
    assert_eq!(code, 1);

    // The right password: valid, exit 0, no finding.
    write_inputs(dir.path(), &reg.key(), PLANTED, &pki.ca_file, true);
    let (code, stdout, stderr) = run_check(dir.path(), &["-o", "json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json report");
    assert_eq!(report["credentials"][0]["status"], "valid");
    assert!(leaks(&stdout).is_empty());
    // Without --verify nothing is probed.
    let before = reg.probe_requests();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
        .args(["check", "--config"])
        .arg(dir.path().join("policy.yaml"))
        .arg(dir.path().join("app.yaml"))
        .output()
        .expect("run pullgate check");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(reg.probe_requests(), before);
}

// ---- pullgate doctor --verify ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_verify_names_rejected_credentials() {
    registry::require_real_registry("doctor_verify_names_rejected_credentials");
    let pki = TestPki::new();
    let reg = RealRegistry::start(&pki, htpasswd_users()).await;
    let fake = support::fake_api::FakeApi::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(
        &policy_file,
        registry::verify_policy(false, "5s", &[(&reg.key(), Some(&pki.ca_file), false)]),
    )
    .expect("write policy");
    let image = format!("{}/shop/web:1", reg.key());
    fake.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"imagePullSecrets": [{"name": "regcred"}], "containers": [{"name": "web", "image": image}]}}));
    fake.apply(json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "shop"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "shop"},
        "reason": "Failed", "type": "Warning",
        "message": format!("Failed to pull image \"{image}\": 401 Unauthorized")}));
    let doctor = |extra: &[&str]| {
        let out = tokio::task::block_in_place(|| {
            std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
                .args(["doctor", "-n", "shop", "web", "-o", "json", "--kubeconfig"])
                .arg(fake.kubeconfig_path())
                .arg("--config")
                .arg(&policy_file)
                .args(extra)
                .env_remove("KUBECONFIG")
                .output()
                .expect("run pullgate doctor")
        });
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            leaks(&stdout).is_empty() && leaks(&stderr).is_empty(),
            "{stdout}{stderr}"
        );
        let report: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
        (out.status.code().unwrap_or(-1), report)
    };
    let fresh = |r: &serde_json::Value| {
        r["checks"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["check"] == "credentials are fresh and accepted by the registry")
            })
            .map(|c| c["verdict"].clone())
    };

    fake.apply_secret("shop", "regcred", &[&reg.key()], WRONG);
    let (code, report) = doctor(&["--verify"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(fresh(&report), Some(json!("problem")), "{report:#}");
    assert_eq!(
        report["diagnosis"]["cause"], "CredentialsRejected",
        "{report:#}"
    );
    // Without --verify nothing is probed, and the secret looks right.
    let probes = reg.probe_requests();
    let (code, report) = doctor(&[]);
    assert_eq!(reg.probe_requests(), probes);
    assert_eq!(
        code, 1,
        "the pull error in the events is a problem: {report:#}"
    );
    assert_eq!(
        report["diagnosis"]["cause"], "CredentialsLookRight",
        "{report:#}"
    );

    fake.apply_secret("shop", "regcred", &[&reg.key()], PLANTED);
    let (_, report) = doctor(&["--verify"]);
    assert_eq!(fresh(&report), Some(json!("ok")), "{report:#}");
    assert_eq!(
        report["diagnosis"]["cause"], "CredentialsLookRight",
        "{report:#}"
    );
}

// ---- pullgate serve --cluster with verify enabled ----

/// `pullgate serve` as a child process, its stdout (JSON logs) collected; killed when dropped.
struct ServeChild {
    child: std::process::Child,
    stdout: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServeChild {
    fn lines(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cluster_starts_the_verifier_when_enabled() {
    use std::io::BufRead;
    let pki = TestPki::new();
    let reg = FakeRegistry::start(
        "127.0.0.1",
        Some(&pki),
        Behaviour::Basic {
            user: USER.into(),
            password: PLANTED.into(),
        },
        Duration::ZERO,
    )
    .await;
    let key = reg.served.authority();
    let fake = support::fake_api::FakeApi::start().await;
    fake.apply_secret("shop", "regcred", &[&key], WRONG);
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("policy.yaml");
    let ca_out = dir.path().join("webhook-ca.pem");
    std::fs::write(
        &config,
        registry::verify_policy(
            false,
            "5s",
            &[
                (&key, Some(&pki.ca_file), false),
                ("plain.example.test:5000", None, true),
            ],
        ),
    )
    .expect("policy");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
        .args(["serve", "--cluster", "--self-signed"])
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--ca-out")
        .arg(&ca_out)
        .arg("--kubeconfig")
        .arg(fake.kubeconfig_path())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("PULLGATE_MANIFESTS")
        .env_remove("PULLGATE_WATCH_NAMESPACES")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn pullgate serve");
    let pipe = child.stdout.take().expect("stdout");
    let stdout = Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = stdout.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Ok(mut l) = lines.lock() {
                l.push(line);
            }
        }
    });
    let served = ServeChild { child, stdout };
    let served = &served;
    let (listen, metrics_addr) = poll("pullgate serve to start", DEADLINE, || async move {
        served
            .lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "pullgate serving")
            .and_then(|v| {
                Some((
                    v["listen"].as_str()?.to_owned(),
                    v["metrics"].as_str()?.to_owned(),
                ))
            })
    })
    .await;
    let want = format!(
        "pullgate_credential_status{{namespace=\"shop\",secret=\"regcred\",registry=\"{key}\",status=\"rejected\"}} 1"
    );
    let url = format!("http://{metrics_addr}/metrics");
    let (want, url) = (&want, &url);
    let metrics = poll(
        "the rejected credential in /metrics",
        DEADLINE,
        || async move {
            let text = reqwest::get(url.as_str()).await.ok()?.text().await.ok()?;
            text.contains(want.as_str()).then_some(text)
        },
    )
    .await;
    assert!(leaks(&metrics).is_empty());
    // The admission path reads the verifier's results: a pod using the secret is warned.
    let ca_pem = std::fs::read_to_string(&ca_out).expect("the webhook CA written at start");
    let client = support::client::https_client(&ca_pem, false);
    let mut pod = support::admission::pod("shop", "web", &[&format!("{key}/shop/web:1")]);
    pod["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    let review = support::admission::create_review("u-verify", &pod);
    let answer =
        support::client::post_json(&client, &format!("https://{listen}/validate"), &review).await;
    let warnings = answer.response()["warnings"].to_string();
    assert!(
        warnings.contains("rejected the credentials of secret"),
        "{warnings}"
    );
    assert!(leaks(&warnings).is_empty());
    let output = served.lines().join("\n");
    assert!(
        output.contains("plain HTTP allowed") && output.contains("plain.example.test:5000"),
        "the insecure registry is logged as a warning at start:\n{output}"
    );
    assert!(
        output.contains("credential verification enabled"),
        "{output}"
    );
    assert!(
        leaks(&output).is_empty(),
        "the server's logs leak a credential"
    );
}
