//! `pullgate uninstall-webhooks` (the real binary, as the chart's pre-delete hook runs it) against
//! the in-repo fake API server behind the webhook-configuration proxy of `support/webhookconfig.rs`:
//! both configurations are deleted, a second run succeeds (404 = already gone), transient 503s
//! are retried, and a 403 fails with a message naming the object and the manual fix.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;
#[allow(dead_code)]
use std::process::Command;
use support::fake_api::FakeApi;
use support::webhookconfig::{webhook_configuration, Kind, WebhookConfigs};

const MUTATING: &str = "pullgate-mutating";
const VALIDATING: &str = "pullgate-validating";

async fn cluster() -> (FakeApi, WebhookConfigs) {
    support::install_crypto();
    let fake = FakeApi::start().await;
    let proxy = WebhookConfigs::start(&fake).await;
    proxy.put(webhook_configuration(
        Kind::Mutating,
        MUTATING,
        "pullgate",
        "pullgate",
    ));
    proxy.put(webhook_configuration(
        Kind::Validating,
        VALIDATING,
        "pullgate",
        "pullgate",
    ));
    (fake, proxy)
}

/// Run the subcommand; its exit code, stdout and stderr.
fn uninstall(proxy: &WebhookConfigs) -> (i32, String, String) {
    // The proxy keeps serving on the runtime's other worker while this one waits.
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_pullgate"))
            .args([
                "uninstall-webhooks",
                "--mutating",
                MUTATING,
                "--validating",
                VALIDATING,
                "--kubeconfig",
            ])
            .arg(proxy.kubeconfig_path())
            .env_remove("KUBECONFIG")
            .output()
            .expect("run pullgate uninstall-webhooks")
    });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn deletes(proxy: &WebhookConfigs) -> Vec<(Kind, String, u16)> {
    proxy.delete_log()
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_both_configurations_and_a_second_run_succeeds() {
    let (_fake, proxy) = cluster().await;
    let (code, out, err) = uninstall(&proxy);
    assert_eq!(code, 0, "{out}{err}");
    assert!(proxy.get(Kind::Mutating, MUTATING).is_none(), "{out}");
    assert!(proxy.get(Kind::Validating, VALIDATING).is_none(), "{out}");
    assert!(
        out.contains("mutatingwebhookconfiguration/pullgate-mutating deleted"),
        "{out}"
    );
    assert!(
        out.contains("validatingwebhookconfiguration/pullgate-validating deleted"),
        "{out}"
    );
    assert_eq!(
        deletes(&proxy),
        vec![
            (Kind::Mutating, MUTATING.to_owned(), 200),
            (Kind::Validating, VALIDATING.to_owned(), 200)
        ]
    );

    // Idempotent: what is gone stays gone, and that is success.
    let (code, out, err) = uninstall(&proxy);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("mutatingwebhookconfiguration/pullgate-mutating already gone"),
        "{out}"
    );
    assert!(
        out.contains("validatingwebhookconfiguration/pullgate-validating already gone"),
        "{out}"
    );
    assert_eq!(deletes(&proxy).len(), 4);
    assert!(deletes(&proxy)[2..].iter().all(|(_, _, s)| *s == 404));
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_retried() {
    let (_fake, proxy) = cluster().await;
    proxy.fail_next_deletes(2);
    let (code, out, err) = uninstall(&proxy);
    assert_eq!(code, 0, "{out}{err}");
    assert!(proxy.get(Kind::Mutating, MUTATING).is_none());
    assert!(proxy.get(Kind::Validating, VALIDATING).is_none());
    let statuses: Vec<u16> = deletes(&proxy).iter().map(|(_, _, s)| *s).collect();
    assert_eq!(statuses, vec![503, 503, 200, 200], "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_fails_with_the_object_and_the_fix() {
    let (_fake, proxy) = cluster().await;
    proxy.forbid_deletes(true);
    let (code, out, err) = uninstall(&proxy);
    assert_ne!(code, 0, "a refused delete must fail the hook: {out}{err}");
    assert!(proxy.get(Kind::Mutating, MUTATING).is_some());
    assert!(proxy.get(Kind::Validating, VALIDATING).is_some());
    for target in [
        "mutatingwebhookconfiguration/pullgate-mutating",
        "validatingwebhookconfiguration/pullgate-validating",
    ] {
        assert!(
            err.contains(&format!(
                "deleting {target}: the API server answered 403 Forbidden"
            )),
            "{err}"
        );
        assert!(err.contains(&format!("kubectl delete {target}")), "{err}");
    }
    // A refusal is final: one request per configuration, no retries.
    assert_eq!(deletes(&proxy).len(), 2, "{err}");
}
