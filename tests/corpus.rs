//! `pullgate check` over a realistic repository of manifests (tests/fixtures/corpus): every
//! readable document is evaluated, every unreadable one is named with its file and document in
//! words for people, nothing stops the run, and the exit code tells errors from findings.
// Test code states its expectations with unwrap, expect and panic (Cargo.toml [lints] denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::Value;
use std::process::{Command, Output};
use support::paths::*;

const CORPUS: &str = "tests/fixtures/corpus";

fn check(extra: &[&str]) -> Output {
    Command::new(bin())
        .arg("check")
        .args(extra)
        .arg(CORPUS)
        .current_dir(root())
        // The corpus's registries are named by no secret: every one is private here.
        .env(
            "PULLGATE_CONFIG",
            "tests/fixtures/policy/every-registry-private.yaml",
        )
        .output()
        .expect("run pullgate")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// The objects evaluated, by name, with whether they were admitted.
const RESULTS: [(&str, bool); 7] = [
    ("nightly", true), // apps/team-a/jobs/nightly.yml: a CronJob in a nested directory
    ("shop", true),    // helm/rendered.yaml: the ServiceAccount carries regcred
    ("json-ok", true), // json/pod.json
    ("worker", false), // kustomize/build.yaml: no secret for private.example.org
    ("after", true),   // misc/duplicate-key.yaml, after the bad document
    ("debug", true),   // misc/list.yaml, an item of a List
    ("after-syntax-error", false), // misc/syntax-error.yaml, after the bad document
];

/// Skipped kinds and YAML that is not a Kubernetes object: helm Service and PrometheusRule (2),
/// kustomize ConfigMap and Service (2), Kustomization (1), the List's ConfigMap (1), the CRD and
/// its Widget (2), Chart.yaml and values.yaml (2), the workflow and the inventory list (2), the
/// ConfigMap before the duplicate key (1).
const SKIPPED: u64 = 13;

/// Every unreadable document: file, document index, and the start of its message.
const ERRORS: [(&str, u64, &str); 6] = [
    ("apps/team-a/bad-pod.yaml", 0, "cannot read Pod object"),
    (
        "charts/web/templates/deployment.yaml",
        0,
        "looks like a template (contains {{ … }}, line 4); render it first (helm template / kustomize build)",
    ),
    (
        "charts/web/templates/serviceaccount.yaml",
        0,
        "looks like a template (contains {{ … }}, line 1); render it first (helm template / kustomize build)",
    ),
    ("json/broken.json", 0, "trailing comma at line 5"),
    ("misc/duplicate-key.yaml", 1, "duplicate key \"name\" (line 12)"),
    ("misc/syntax-error.yaml", 1, "unclosed quote (line 13)"),
];

fn assert_problems(list: &Value) {
    let list = list.as_array().expect("a list of problems");
    assert_eq!(list.len(), ERRORS.len(), "{list:#?}");
    for (p, (file, document, message)) in list.iter().zip(ERRORS) {
        assert_eq!(p["file"], format!("{CORPUS}/{file}"), "{p}");
        assert_eq!(p["document"], document, "{p}");
        let got = p["message"].as_str().expect("message");
        assert!(got.starts_with(message), "{file}: {got}");
        for internal in ["DuplicateKeyPolicy", "Options", "serde", "saphyr"] {
            assert!(!got.contains(internal), "{file}: {got}");
        }
    }
}

#[test]
fn every_readable_document_is_evaluated_and_every_unreadable_one_named() {
    let o = check(&["--validation", "deny", "-o", "json"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report = json(&o);
    let got: Vec<(String, bool)> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["allowed"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    let want: Vec<(String, bool)> = RESULTS.iter().map(|(n, a)| ((*n).to_owned(), *a)).collect();
    assert_eq!(got, want);
    assert_eq!(report["skipped"], SKIPPED);
    assert_problems(&report["errors"]);
    assert!(report.get("skippedInvalid").is_none(), "{report}");
    // The hidden .github directory is not read at all.
    assert!(!report.to_string().contains("release.yml"));
}

#[test]
fn skip_invalid_lists_them_and_exits_on_the_findings() {
    let o = check(&["--validation", "deny", "--skip-invalid", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "two objects are denied");
    let report = json(&o);
    assert_eq!(
        report["results"].as_array().map(Vec::len),
        Some(RESULTS.len())
    );
    assert_eq!(report["skipped"], SKIPPED);
    assert!(report.get("errors").is_none(), "{report}");
    assert_problems(&report["skippedInvalid"]);
    // In warn mode nothing is denied: exit 0 although some documents were unreadable.
    let o = check(&["--skip-invalid", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0));
    assert_problems(&json(&o)["skippedInvalid"]);
    // Without --skip-invalid, unreadable input fails the check even when everything is admitted.
    assert_eq!(check(&[]).status.code(), Some(2));
}

#[test]
fn text_output_names_each_problem_and_counts_everything() {
    let o = check(&["--validation", "deny"]);
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&o.stdout);
    for (file, document, message) in ERRORS {
        let line = format!("error: {CORPUS}/{file} (document {document}): {message}");
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    assert!(
        text.ends_with("\n7 checked, 2 denied, 13 skipped (kinds pullgate does not evaluate), 6 invalid (not evaluated)\n"),
        "{text}"
    );
    let o = check(&["--validation", "deny", "--skip-invalid"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for (file, document, _) in ERRORS {
        let line = format!("skipped (invalid): {CORPUS}/{file} (document {document}): ");
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    assert!(!text.contains("error: "), "{text}");
    assert!(text.ends_with(", 6 invalid skipped\n"), "{text}");
}
