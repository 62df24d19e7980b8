//! Keeps the Helm chart (charts/pullgate) and the binary in step.
//!
//! - every `--flag` the Deployment passes to `pullgate serve` is one `pullgate serve --help` lists;
//! - the policy files the chart renders pass `pullgate validate-config`: the files `scripts/lint-chart.py`
//!   wrote to `$PULLGATE_RENDERED_POLICY_DIR` when that is set, else the `policy:` blocks of values.yaml and
//!   of the profiles, taken by plain text scanning (their keys are the policy file's own keys);
//! - the values the schema allows for `policy.validation` are the ones the binary accepts;
//! - the webhook paths and ports in the templates are the binary's (/mutate, /validate, /healthz, /readyz,
//!   8443, 9090);
//! - `charts/pullgate/metrics.txt` lists exactly the metrics the dashboard and the alerts query.
//!
//! Only std and `serde_json`: the chart files are scanned as text, no YAML parser needed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

type TestResult = Result<(), String>;

const BIN: &str = env!("CARGO_BIN_EXE_pullgate");

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts")
        .join("pullgate")
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn run(args: &[&str]) -> Result<Output, String> {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .map_err(|e| format!("cannot run {BIN} {}: {e}", args.join(" ")))
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A file of its own in the system temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Result<Self, String> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "pullgate-chart-test-{}-{n}-{name}",
            std::process::id()
        ));
        fs::write(&path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// `--name` tokens in a text: two dashes at the start of a word, then `[a-z][a-z0-9-]*`.
fn flags_in(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut flags = BTreeSet::new();
    let mut i = 0;
    while i + 2 < bytes.len() {
        let at_word_start =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'-');
        if at_word_start
            && bytes[i] == b'-'
            && bytes[i + 1] == b'-'
            && bytes[i + 2].is_ascii_lowercase()
        {
            let start = i + 2;
            let mut end = start;
            while end < bytes.len()
                && (bytes[end].is_ascii_lowercase()
                    || bytes[end].is_ascii_digit()
                    || bytes[end] == b'-')
            {
                end += 1;
            }
            flags.insert(text[start..end].trim_end_matches('-').to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    flags
}

/// `pullgate_*` metric names in a text, with `_bucket`, `_sum` and `_count` folded into the base name.
fn metrics_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(pos) = rest.find("pullgate_") {
        let before_ok = rest[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[pos..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if before_ok {
            let name = &tail[..len];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_string());
        }
        rest = &tail[len.max(1)..];
    }
    names
}

/// The `policy:` block of a values file as a policy file: the block's lines, de-indented by two. Keys set
/// to `""` are dropped, as the chart's template leaves empty optional keys out.
fn policy_block(values: &str) -> Option<String> {
    let mut lines = values.lines().skip_while(|l| l.trim_end() != "policy:");
    lines.next()?;
    let mut out = String::new();
    for line in lines {
        let top_level = !line.is_empty() && !line.starts_with(' ') && !line.starts_with('#');
        if top_level {
            break;
        }
        if line.trim_end().ends_with(": \"\"") {
            continue;
        }
        out.push_str(line.strip_prefix("  ").unwrap_or(line));
        out.push('\n');
    }
    Some(out)
}

fn validate_config(name: &str, policy: &str) -> Result<Output, String> {
    let file = TempFile::new(name, policy)?;
    run(&["validate-config", file.path()])
}

fn expect_valid(name: &str, policy: &str) -> TestResult {
    let out = validate_config(name, policy)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`pullgate validate-config` rejected {name} ({}):\n{}\n--- policy ---\n{policy}",
            out.status,
            text_of(&out)
        ))
    }
}

#[test]
fn deployment_flags_are_flags_of_pullgate_serve() -> TestResult {
    let deployment = read(&chart_dir().join("templates/deployment.yaml"))?;
    let used = flags_in(&deployment);
    if used.is_empty() {
        return Err("no --flags found in templates/deployment.yaml".into());
    }
    let out = run(&["serve", "--help"])?;
    if !out.status.success() {
        return Err(format!(
            "`pullgate serve --help` failed ({}):\n{}",
            out.status,
            text_of(&out)
        ));
    }
    let known = flags_in(&text_of(&out));
    let unknown: Vec<_> = used.difference(&known).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "templates/deployment.yaml passes flags `pullgate serve --help` does not list: {unknown:?}\n\
             (help lists {known:?})"
        ))
    }
}

#[test]
fn rendered_policies_pass_validate_config() -> TestResult {
    if let Some(dir) = std::env::var_os("PULLGATE_RENDERED_POLICY_DIR") {
        let dir = PathBuf::from(dir);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!(
                "{} has no rendered policy; run scripts/lint-chart.py with PULLGATE_RENDERED_POLICY_DIR set",
                dir.display()
            ));
        }
        for file in &files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("policy.yaml");
            expect_valid(name, &read(file)?)?;
        }
        return Ok(());
    }
    for values in ["values.yaml", "values-staging.yaml", "values-prod.yaml"] {
        let text = read(&chart_dir().join(values))?;
        let policy = policy_block(&text)
            .ok_or_else(|| format!("{values} has no top-level `policy:` block"))?;
        expect_valid(values, &policy)?;
    }
    Ok(())
}

#[test]
fn validate_config_rejects_what_the_chart_schema_rejects() -> TestResult {
    let base = policy_block(&read(&chart_dir().join("values.yaml"))?)
        .ok_or("values.yaml has no top-level `policy:` block")?;
    let schema: serde_json::Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))?)
            .map_err(|e| format!("values.schema.json: {e}"))?;
    let allowed = schema
        .pointer("/properties/policy/properties/validation/enum")
        .and_then(serde_json::Value::as_array)
        .ok_or("values.schema.json has no enum for policy.validation")?;
    let with_validation = |value: &str| {
        base.lines()
            .map(|l| {
                if l.starts_with("validation:") {
                    format!("validation: {value:?}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for value in allowed.iter().filter_map(serde_json::Value::as_str) {
        expect_valid(&format!("validation-{value}.yaml"), &with_validation(value))?;
    }
    // A value outside the enum, and a misspelt key of the reconciler section the chart renders, both fail
    // with exit code 2 and the path.
    let bad_cases = [
        (
            "validation-block.yaml",
            with_validation("block"),
            "validation",
        ),
        (
            "reconcile-key.yaml",
            format!("{base}reconcile:\n  serviceAcounts: true\n"),
            "reconcile.serviceAcounts",
        ),
    ];
    for (name, policy, path) in bad_cases {
        let out = validate_config(name, &policy)?;
        if out.status.code() != Some(2) || !text_of(&out).contains(path) {
            return Err(format!(
                "`pullgate validate-config` on {name} should exit 2 naming `{path}`; got {}:\n{}",
                out.status,
                text_of(&out)
            ));
        }
    }
    Ok(())
}

#[test]
fn webhook_paths_and_ports_match_the_binary() -> TestResult {
    let chart = chart_dir();
    let webhooks = read(&chart.join("templates/webhooks.yaml"))?;
    let deployment = read(&chart.join("templates/deployment.yaml"))?;
    let service = read(&chart.join("templates/service.yaml"))?;
    let values = read(&chart.join("values.yaml"))?;
    let monitor = read(&chart.join("templates/servicemonitor.yaml"))?;
    let checks = [
        (
            webhooks.contains("\"path\" \"/mutate\""),
            "webhooks.yaml sends the mutating webhooks to /mutate",
        ),
        (
            webhooks.contains("\"path\" \"/validate\""),
            "webhooks.yaml sends the validating webhooks to /validate",
        ),
        (
            deployment.contains("path: /healthz") && deployment.contains("path: /readyz"),
            "probes use /healthz and /readyz",
        ),
        (
            deployment.matches("scheme: HTTPS").count() == 3,
            "the three probes use HTTPS",
        ),
        (
            deployment.contains("--listen={{ $bind }}:{{ .Values.server.port }}"),
            "--listen uses server.port",
        ),
        (
            deployment.contains("--metrics-listen={{ $bind }}:{{ .Values.server.metricsPort }}"),
            "--metrics-listen uses server.metricsPort",
        ),
        (
            deployment.contains("containerPort: {{ .Values.server.port }}"),
            "the https container port is server.port",
        ),
        (
            deployment.contains("containerPort: {{ .Values.server.metricsPort }}"),
            "the metrics container port is server.metricsPort",
        ),
        (
            deployment.contains("--config=/etc/pullgate/policy.yaml"),
            "--config is /etc/pullgate/policy.yaml",
        ),
        (
            deployment.contains("mountPath: /etc/pullgate/policy.yaml"),
            "the policy is mounted at /etc/pullgate/policy.yaml",
        ),
        (
            service.contains("targetPort: https") && service.contains("targetPort: metrics"),
            "the Service targets the named ports",
        ),
        (
            values.contains("\n  port: 8443\n"),
            "values.yaml server.port is 8443",
        ),
        (
            values.contains("\n  metricsPort: 9090\n"),
            "values.yaml server.metricsPort is 9090",
        ),
        (
            values.contains("\n  port: 443\n"),
            "values.yaml service.port is 443",
        ),
        (
            monitor.contains("path: /metrics") && monitor.contains("port: metrics"),
            "the ServiceMonitor scrapes metrics:/metrics",
        ),
    ];
    let failed: Vec<_> = checks
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, what)| *what)
        .collect();
    if !failed.is_empty() {
        return Err(format!(
            "chart does not match the binary's endpoints: {failed:?}"
        ));
    }
    // The binary's own defaults are the chart's ports.
    let out = run(&["serve", "--help"])?;
    let help = text_of(&out);
    for port in ["8443", "9090"] {
        if !help.contains(port) {
            return Err(format!(
                "`pullgate serve --help` does not show the default port {port}:\n{help}"
            ));
        }
    }
    Ok(())
}

#[test]
fn metrics_list_matches_dashboard_and_alerts() -> TestResult {
    let chart = chart_dir();
    let listed: BTreeSet<String> = read(&chart.join("metrics.txt"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let dashboard = read(&chart.join("dashboards/pullgate.json"))?;
    serde_json::from_str::<serde_json::Value>(&dashboard)
        .map_err(|e| format!("dashboards/pullgate.json: {e}"))?;
    let alerts = read(&chart.join("templates/prometheusrule.yaml"))?;
    let queried: BTreeSet<String> = metrics_in(&dashboard)
        .union(&metrics_in(&alerts))
        .cloned()
        .collect();
    let unlisted: Vec<_> = queried.difference(&listed).collect();
    let unused: Vec<_> = listed.difference(&queried).collect();
    if unlisted.is_empty() && unused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "metrics.txt and the dashboard/alerts disagree: queried but not listed {unlisted:?}, \
             listed but never queried {unused:?}"
        ))
    }
}

#[test]
fn values_schema_closes_every_object() -> TestResult {
    fn walk(node: &serde_json::Value, at: &str, open: &mut Vec<String>) {
        let Some(obj) = node.as_object() else { return };
        if let Some(props) = obj.get("properties").and_then(serde_json::Value::as_object) {
            if at != "/global"
                && obj.get("additionalProperties") != Some(&serde_json::Value::Bool(false))
            {
                open.push(if at.is_empty() {
                    "/".into()
                } else {
                    at.to_string()
                });
            }
            for (k, v) in props {
                walk(v, &format!("{at}/{k}"), open);
            }
        }
        if let Some(defs) = obj
            .get("definitions")
            .and_then(serde_json::Value::as_object)
        {
            for (k, v) in defs {
                walk(v, &format!("#/definitions/{k}"), open);
            }
        }
        if let Some(items) = obj.get("items") {
            walk(items, &format!("{at}[]"), open);
        }
    }
    let schema: serde_json::Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))?)
            .map_err(|e| format!("values.schema.json: {e}"))?;
    let mut open = Vec::new();
    walk(&schema, "", &mut open);
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "values.schema.json objects without additionalProperties: false: {open:?}"
        ))
    }
}

#[test]
fn text_scanners_work() {
    assert_eq!(
        flags_in("- serve\n- --listen=[::]:8443\n- --cluster\n{{- if x }}\n# -- doc\n--watch-namespace=a"),
        ["cluster", "listen", "watch-namespace"].iter().map(|s| (*s).to_string()).collect()
    );
    assert_eq!(
        metrics_in("rate(pullgate_admission_duration_seconds_bucket{x}[5m]) / pullgate_store_stale xpullgate_no"),
        ["pullgate_admission_duration_seconds", "pullgate_store_stale"]
            .iter()
            .map(|s| (*s).to_string())
            .collect()
    );
    let block = policy_block("a: 1\npolicy:\n  # -- doc\n  inject: true\n  maxSecretAge: \"\"\n  registries:\n    private: [\"*\"]\n\nwebhooks:\n  x: 1\n");
    assert_eq!(
        block.as_deref(),
        Some("# -- doc\ninject: true\nregistries:\n  private: [\"*\"]\n\n")
    );
}
