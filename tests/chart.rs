//! Keeps the Helm chart (charts/pullgate) and the binary in step.
//!
//! - every `--flag` the Deployment passes to `pullgate serve` is one `pullgate serve --help` lists;
//! - the policy files the chart renders pass `pullgate validate-config`: the files `scripts/lint-chart.py`
//!   wrote to `$PULLGATE_RENDERED_POLICY_DIR` when that is set, else the `policy:` blocks of values.yaml and
//!   of the profiles, taken by plain text scanning (their keys are the policy file's own keys);
//! - the values the schema allows for `policy.validation` are the ones the binary accepts;
//! - the webhook paths and ports in the templates are the binary's (/mutate, /validate, /healthz, /readyz,
//!   8443, 9090);
//! - `charts/pullgate/metrics.txt` lists exactly the metrics the dashboard and the alerts query;
//! - rendered with the real Helm (`scripts/lint-chart.py --render-json`, helm-sdkpy): `policy.verify` and
//!   `policy.attribution` reach the policy ConfigMap and load in pullgate as given, their RBAC exists only
//!   when they are on (pods/delete only with `restartStuckPods`, inside the watched namespaces when
//!   `cluster.watchNamespaces` is set), `verifyCaBundles` is mounted read-only where `caFile` points, and
//!   contradictory settings are refused; the schema's bounds are the binary's.
//!
//! The chart files are scanned as text; rendered policies are read with the crate's own YAML parser.

use std::collections::{BTreeMap, BTreeSet};
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

// ---------------------------------------------------------------------------------------------------
// Renders with the real Helm: credential verification and pull-failure attribution.

/// One case's render: the manifest's objects, or the message Helm refused it with.
/// A case's manifest documents and hook documents, or why Helm refused it.
type Rendered = Result<(Vec<serde_json::Value>, Vec<serde_json::Value>), String>;

/// The values of every case the tests below render.
fn render_cases() -> serde_json::Value {
    serde_json::json!({
        "default": {},
        "workers": {"server": {"workerThreads": 3}},
        "digest": {"image": {"digest": format!("sha256:{}", "ab".repeat(32))}},
        "verify": {"policy": {"verify": {"enabled": true}}},
        "attribution": {"policy": {"attribution": {"enabled": true}}},
        "restart": {"policy": {"attribution": {"enabled": true, "restartStuckPods": true}}},
        "full": {
            "policy": {
                "verify": {
                    "enabled": true, "interval": "1h", "timeout": "5s", "deny": true,
                    "probeRepository": "library/busybox",
                    "registries": [
                        {"pattern": "*.corp.example", "caFile": "/etc/pullgate/ca/corp.pem"},
                        {"pattern": "registry.local:5000", "insecure": true}
                    ]
                },
                "attribution": {
                    "enabled": true, "eventsPerSecond": 5, "restartStuckPods": true,
                    "maxRestartPercent": 50, "restartsPerMinute": 3
                }
            },
            "verifyCaBundles": [
                {"configMap": "corp-ca"},
                {"secret": "partner-ca", "items": [{"key": "ca.crt", "path": "partner.pem"}]}
            ]
        },
        "watch-namespaces": {
            "cluster": {"watchNamespaces": ["team-a", "team-b"]},
            "policy": {
                "verify": {"enabled": true},
                "attribution": {"enabled": true, "restartStuckPods": true}
            }
        },
        "verify-without-cluster": {
            "cluster": {"enabled": false}, "policy": {"verify": {"enabled": true}}
        },
        "attribution-without-cluster": {
            "cluster": {"enabled": false}, "policy": {"attribution": {"enabled": true}}
        },
        "restart-without-attribution": {"policy": {"attribution": {"restartStuckPods": true}}},
        "bundles-without-verify": {"verifyCaBundles": [{"configMap": "corp-ca"}]},
        "cafile-without-bundles": {
            "policy": {"verify": {"enabled": true, "registries": [
                {"pattern": "r.example", "caFile": "/etc/pullgate/ca/r.pem"}
            ]}}
        }
    })
}

/// Every case of [`render_cases`], rendered once per test binary by `scripts/lint-chart.py
/// --render-json`: a real `helm install` through helm-sdkpy (Helm v4 as a library) against the
/// script's fake API server, as the chart lint renders its own cases. Needs `python3` with
/// helm-sdkpy and PyYAML (the script installs them when missing, as in CI).
fn rendered(case: &str) -> Result<&'static Rendered, String> {
    static ALL: std::sync::OnceLock<Result<BTreeMap<String, Rendered>, String>> =
        std::sync::OnceLock::new();
    let all = ALL.get_or_init(render_all).as_ref().map_err(Clone::clone)?;
    all.get(case)
        .ok_or_else(|| format!("no render case {case:?}"))
}

fn render_all() -> Result<BTreeMap<String, Rendered>, String> {
    use std::io::Write;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lint-chart.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("--render-json")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run python3 {}: {e} (the chart render tests need python3 with helm-sdkpy)",
                script.display()
            )
        })?;
    let input = render_cases().to_string();
    child
        .stdin
        .take()
        .ok_or("no stdin for the render script")?
        .write_all(input.as_bytes())
        .map_err(|e| format!("cannot write the render cases: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("render script: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{} --render-json failed ({}):\n{}",
            script.display(),
            out.status,
            text_of(&out)
        ));
    }
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "render script answered no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let answer = answer
        .as_object()
        .ok_or("render script answered no JSON object")?;
    let mut all = BTreeMap::new();
    for (case, r) in answer {
        let rendered = match r["error"].as_str() {
            Some(e) => Err(e.to_owned()),
            None => Ok((
                r["objects"].as_array().cloned().unwrap_or_default(),
                r["hooks"].as_array().cloned().unwrap_or_default(),
            )),
        };
        all.insert(case.clone(), rendered);
    }
    Ok(all)
}

/// The objects of a case that must render.
fn objects(case: &str) -> Result<&'static [serde_json::Value], String> {
    match rendered(case)? {
        Ok((objects, _)) => Ok(objects),
        Err(e) => Err(format!("case {case} was refused: {e}")),
    }
}

/// The hook documents of a case that must render.
fn hooks(case: &str) -> Result<&'static [serde_json::Value], String> {
    match rendered(case)? {
        Ok((_, hooks)) => Ok(hooks),
        Err(e) => Err(format!("case {case} was refused: {e}")),
    }
}

/// The message a case that must be refused was refused with.
fn refusal(case: &str) -> Result<&'static str, String> {
    match rendered(case)? {
        Ok(_) => Err(format!(
            "case {case} rendered, but the chart must refuse it"
        )),
        Err(e) => Ok(e),
    }
}

fn of_kind<'a>(
    objects: &'a [serde_json::Value],
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    objects.iter().filter(move |o| o["kind"] == kind)
}

/// The policy file the chart renders: its text, as YAML data, and as the binary loads it.
fn rendered_policy(
    case: &str,
) -> Result<(serde_json::Value, pullgate::engine::policy::Policy), String> {
    let objects = objects(case)?;
    let cm = of_kind(objects, "ConfigMap")
        .find(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-policy"))
        })
        .ok_or_else(|| format!("{case}: no policy ConfigMap"))?;
    let text = cm["data"]["policy.yaml"]
        .as_str()
        .ok_or_else(|| format!("{case}: the policy ConfigMap has no policy.yaml"))?;
    let data: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("{case}: policy.yaml is not YAML: {e}\n{text}"))?;
    let policy = pullgate::engine::policy::Policy::from_yaml(text)
        .map_err(|e| format!("{case}: pullgate refuses the rendered policy: {e}\n{text}"))?;
    Ok((data, policy))
}

/// RBAC rules of a case: (kind, namespace, rule) for every ClusterRole and Role rule.
fn rules(case: &str) -> Result<Vec<(String, String, serde_json::Value)>, String> {
    let objects = objects(case)?;
    let mut out = Vec::new();
    for kind in ["ClusterRole", "Role"] {
        for role in of_kind(objects, kind) {
            let ns = role["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for rule in role["rules"].as_array().into_iter().flatten() {
                out.push((kind.to_owned(), ns.clone(), rule.clone()));
            }
        }
    }
    Ok(out)
}

fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect()
}

/// Where `verb` on `resource` is granted, as "ClusterRole" or "Role/<namespace>". Rules limited by
/// `resourceNames` are left out: they grant access to named objects only.
fn grants(
    rules: &[(String, String, serde_json::Value)],
    resource: &str,
    verb: &str,
) -> BTreeSet<String> {
    rules
        .iter()
        .filter(|(_, _, r)| {
            r.get("resourceNames").is_none()
                && strings(&r["resources"]).contains(&resource)
                && strings(&r["verbs"]).contains(&verb)
        })
        .map(|(kind, ns, _)| {
            if kind == "Role" {
                format!("Role/{ns}")
            } else {
                kind.clone()
            }
        })
        .collect()
}

fn check_all(what: &str, failures: Vec<String>) -> TestResult {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}:\n  {}", failures.join("\n  ")))
    }
}

#[test]
fn policy_configmap_carries_verify_and_attribution() -> TestResult {
    let cases = render_cases();
    let (data, policy) = rendered_policy("full")?;
    let mut failures = Vec::new();
    for section in ["verify", "attribution"] {
        let want = &cases["full"]["policy"][section];
        if data[section] != *want {
            failures.push(format!(
                "policy.yaml {section} is {}, the values say {want}",
                data[section]
            ));
        }
    }
    let v = &policy.verify;
    let a = &policy.attribution;
    let loaded = [
        (v.enabled && v.deny, "verify.enabled and verify.deny"),
        (v.interval.to_string() == "1h", "verify.interval 1h"),
        (v.timeout.to_string() == "5s", "verify.timeout 5s"),
        (
            v.probe_repository.as_deref() == Some("library/busybox"),
            "verify.probeRepository",
        ),
        (
            v.registries.len() == 2
                && v.registries[0].ca_file.as_deref()
                    == Some(Path::new("/etc/pullgate/ca/corp.pem"))
                && v.registries[1].insecure,
            "verify.registries (caFile, insecure)",
        ),
        (
            a.enabled && a.restart_stuck_pods,
            "attribution.enabled and restartStuckPods",
        ),
        (
            (
                a.events_per_second,
                a.max_restart_percent,
                a.restarts_per_minute,
            ) == (5, 50, 3),
            "attribution rates (5/s, 50%, 3/min)",
        ),
    ];
    for (ok, what) in loaded {
        if !ok {
            failures.push(format!(
                "pullgate did not load {what} from the rendered policy"
            ));
        }
    }
    // The chart's defaults are the binary's: verification and attribution off, same settings, and
    // no empty probeRepository (the binary would refuse it).
    let (data, policy) = rendered_policy("default")?;
    let defaults = pullgate::engine::policy::Policy::default();
    if policy.verify != defaults.verify || policy.attribution != defaults.attribution {
        failures.push(format!(
            "default values render verify {:?} / attribution {:?}, the binary defaults are {:?} / {:?}",
            policy.verify, policy.attribution, defaults.verify, defaults.attribution
        ));
    }
    if data["verify"].get("probeRepository").is_some() {
        failures.push("an empty probeRepository is rendered into the policy".into());
    }
    check_all("rendered policy", failures)
}

#[test]
fn verify_and_attribution_rbac_only_when_enabled() -> TestResult {
    let cluster = || BTreeSet::from(["ClusterRole".to_owned()]);
    let none = BTreeSet::new;
    // The release namespace of scripts/lint-chart.py's renders.
    let release = || BTreeSet::from(["Role/pullgate-system".to_owned()]);
    // (case, resource, verb, where it must be granted)
    let want = [
        ("default", "secrets", "get", none()),
        ("default", "events", "create", none()),
        ("default", "events", "watch", none()),
        ("default", "pods", "get", none()),
        ("default", "pods", "list", none()),
        ("verify", "secrets", "get", cluster()),
        ("verify", "secrets", "list", cluster()),
        ("verify", "events", "create", cluster()),
        ("verify", "events", "patch", cluster()),
        ("verify", "events", "list", none()),
        ("verify", "pods", "get", none()),
        ("attribution", "events", "list", cluster()),
        ("attribution", "events", "watch", cluster()),
        ("attribution", "events", "create", cluster()),
        ("attribution", "events", "patch", cluster()),
        ("attribution", "pods", "get", cluster()),
        ("attribution", "pods", "list", cluster()),
        ("attribution", "secrets", "get", none()),
        // Leader election (Lease pullgate-attribution), in the release namespace only.
        ("attribution", "leases", "update", release()),
        ("attribution", "leases", "create", release()),
        ("verify", "leases", "update", none()),
        ("default", "leases", "update", none()),
    ];
    let mut failures = Vec::new();
    for (case, resource, verb, place) in want {
        let got = grants(&rules(case)?, resource, verb);
        if got != place {
            failures.push(format!(
                "[{case}] {verb} {resource}: granted in {got:?}, want {place:?}"
            ));
        }
    }
    // Events are written and read as core/v1 only; pods are never watched, updated or patched.
    for case in [
        "verify",
        "attribution",
        "restart",
        "full",
        "watch-namespaces",
    ] {
        for (kind, ns, rule) in rules(case)? {
            let resources = strings(&rule["resources"]);
            if (resources.contains(&"events") || resources.contains(&"pods"))
                && strings(&rule["apiGroups"]) != [""]
            {
                failures.push(format!("[{case}] {kind} {ns}: {rule} is not core/v1 only"));
            }
            let verbs = strings(&rule["verbs"]);
            if resources.contains(&"pods")
                && verbs
                    .iter()
                    .any(|v| ["watch", "update", "patch", "*"].contains(v))
            {
                failures.push(format!(
                    "[{case}] {kind} {ns}: {rule} grants more than pullgate uses on pods"
                ));
            }
        }
    }
    check_all("RBAC for verification and attribution", failures)
}

#[test]
fn pods_delete_only_with_restart_stuck_pods() -> TestResult {
    let mut failures = Vec::new();
    for (case, want) in [
        ("default", BTreeSet::new()),
        ("verify", BTreeSet::new()),
        ("attribution", BTreeSet::new()),
        ("restart", BTreeSet::from(["ClusterRole".to_owned()])),
        ("full", BTreeSet::from(["ClusterRole".to_owned()])),
    ] {
        let got = grants(&rules(case)?, "pods", "delete");
        if got != want {
            failures.push(format!(
                "[{case}] delete pods granted in {got:?}, want {want:?}"
            ));
        }
    }
    check_all("pods/delete", failures)
}

#[test]
fn watched_namespaces_confine_verify_and_attribution_grants() -> TestResult {
    let rules = rules("watch-namespaces")?;
    let roles = BTreeSet::from(["Role/team-a".to_owned(), "Role/team-b".to_owned()]);
    let mut failures = Vec::new();
    for (resource, verb) in [
        ("secrets", "get"),
        ("events", "create"),
        ("events", "watch"),
        ("pods", "list"),
        ("pods", "delete"),
    ] {
        let got = grants(&rules, resource, verb);
        if got != roles {
            failures.push(format!(
                "{verb} {resource}: granted in {got:?}, want {roles:?}"
            ));
        }
    }
    check_all("grants with cluster.watchNamespaces", failures)
}

#[test]
fn ca_bundles_are_mounted_read_only_where_ca_file_points() -> TestResult {
    let full = objects("full")?;
    let deployment = of_kind(full, "Deployment").next().ok_or("no Deployment")?;
    let spec = &deployment["spec"]["template"]["spec"];
    let container = spec["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "pullgate"))
        .ok_or("no pullgate container")?;
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["mountPath"] == "/etc/pullgate/ca"))
        .ok_or_else(|| {
            format!(
                "nothing mounted at /etc/pullgate/ca: {}",
                container["volumeMounts"]
            )
        })?;
    let mut failures = Vec::new();
    if mount["readOnly"] != true {
        failures.push(format!("the CA mount is not read-only: {mount}"));
    }
    let volume = spec["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
        .ok_or("the CA mount has no volume")?;
    let want = serde_json::json!([
        {"configMap": {"name": "corp-ca"}},
        {"secret": {"name": "partner-ca", "items": [{"key": "ca.crt", "path": "partner.pem"}]}}
    ]);
    if volume["projected"]["sources"] != want {
        failures.push(format!(
            "the CA volume should project {want}, it is {volume}"
        ));
    }
    // Every caFile of the policy lies under the mount.
    let (_, policy) = rendered_policy("full")?;
    for r in &policy.verify.registries {
        if let Some(file) = &r.ca_file {
            if !file.starts_with("/etc/pullgate/ca/") {
                failures.push(format!("caFile {} is outside the CA mount", file.display()));
            }
        }
    }
    // Without CA bundles nothing is mounted there.
    let default_mounts = of_kind(objects("verify")?, "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| c["volumeMounts"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["mountPath"] == "/etc/pullgate/ca")
        .count();
    if default_mounts != 0 {
        failures.push("/etc/pullgate/ca is mounted without verifyCaBundles".into());
    }
    check_all("CA bundles", failures)
}

#[test]
fn verify_and_attribution_settings_the_chart_refuses() -> TestResult {
    let mut failures = Vec::new();
    for (case, fragment) in [
        (
            "verify-without-cluster",
            "policy.verify.enabled=true needs cluster.enabled=true",
        ),
        (
            "attribution-without-cluster",
            "policy.attribution.enabled=true needs cluster.enabled=true",
        ),
        (
            "restart-without-attribution",
            "restartStuckPods=true needs policy.attribution.enabled=true",
        ),
        (
            "bundles-without-verify",
            "verifyCaBundles is set but policy.verify.enabled is false",
        ),
        (
            "cafile-without-bundles",
            "policy.verify.registries[0].caFile",
        ),
    ] {
        let message = refusal(case)?;
        if !message.contains(fragment) {
            failures.push(format!(
                "[{case}] refused without naming {fragment:?}: {message}"
            ));
        }
    }
    check_all("refusals", failures)
}

#[test]
fn schema_bounds_of_verify_and_attribution_are_the_binary_s() -> TestResult {
    let schema: serde_json::Value =
        serde_json::from_str(&read(&chart_dir().join("values.schema.json"))?)
            .map_err(|e| format!("values.schema.json: {e}"))?;
    let attribution = schema
        .pointer("/properties/policy/properties/attribution/properties")
        .ok_or("values.schema.json has no policy.attribution")?;
    let mut failures = Vec::new();
    for key in ["eventsPerSecond", "maxRestartPercent", "restartsPerMinute"] {
        let bound = |b: &str| attribution[key][b].as_u64();
        let (Some(min), Some(max)) = (bound("minimum"), bound("maximum")) else {
            failures.push(format!(
                "policy.attribution.{key} has no minimum and maximum"
            ));
            continue;
        };
        for (value, ok) in [(min, true), (max, true), (min - 1, false), (max + 1, false)] {
            let out = validate_config(
                &format!("attribution-{key}-{value}.yaml"),
                &format!("attribution:\n  {key}: {value}\n"),
            )?;
            if out.status.success() != ok {
                failures.push(format!(
                    "attribution.{key}: {value} is {} by the schema but {} by pullgate: {}",
                    if ok { "allowed" } else { "refused" },
                    if out.status.success() {
                        "allowed"
                    } else {
                        "refused"
                    },
                    text_of(&out).trim()
                ));
            }
        }
    }
    // Durations: pullgate accepts and refuses what the schema's `^[1-9][0-9]{0,8}(s|m|h|d)$` does (the
    // chart lint proves the schema side by rendering `0s`).
    for key in ["interval", "timeout"] {
        for (value, ok) in [
            ("1s", true),
            ("6h", true),
            ("0s", false),
            ("5", false),
            ("1w", false),
        ] {
            let out = validate_config(
                &format!("verify-{key}-{value}.yaml"),
                &format!("verify:\n  {key}: {value:?}\n"),
            )?;
            if out.status.success() != ok {
                failures.push(format!(
                    "verify.{key}: {value:?} should be {}",
                    if ok { "accepted" } else { "refused" }
                ));
            }
        }
    }
    check_all("schema bounds", failures)
}

/// The container args of the Deployment a case renders.
fn serve_args(case: &str) -> Result<Vec<String>, String> {
    let deployment = of_kind(objects(case)?, "Deployment")
        .next()
        .ok_or_else(|| format!("{case}: no Deployment"))?;
    Ok(
        strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
            .into_iter()
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn worker_threads_flag_only_when_set() -> TestResult {
    let default = serve_args("default")?;
    if default.iter().any(|a| a.starts_with("--worker-threads")) {
        return Err(format!("default values pass --worker-threads: {default:?}"));
    }
    let set = serve_args("workers")?;
    if !set.iter().any(|a| a == "--worker-threads=3") {
        return Err(format!(
            "workerThreads: 3 does not pass --worker-threads=3: {set:?}"
        ));
    }
    // 0 means "auto" in the values and is never passed: the binary refuses it.
    let out = run(&["serve", "--worker-threads", "0", "--self-signed"])?;
    if out.status.code() != Some(2) || !text_of(&out).contains("worker-threads") {
        return Err(format!(
            "--worker-threads 0 was not refused: {}",
            text_of(&out)
        ));
    }
    Ok(())
}

/// The pre-delete hook runs pullgate's own image (an air-gapped cluster has nothing else to pull)
/// with `uninstall-webhooks` on both configurations, passing only flags the subcommand has, and its
/// ServiceAccount may delete exactly those two names.
#[test]
fn pre_delete_hook_runs_pullgate_uninstall_webhooks() -> TestResult {
    let help = run(&["uninstall-webhooks", "--help"])?;
    if !help.status.success() {
        return Err(format!(
            "`pullgate uninstall-webhooks --help` failed: {}",
            text_of(&help)
        ));
    }
    let known = flags_in(&text_of(&help));
    let mut failures = Vec::new();
    for case in ["default", "digest"] {
        let deployment = of_kind(objects(case)?, "Deployment")
            .next()
            .ok_or_else(|| format!("{case}: no Deployment"))?;
        let pullgate = &deployment["spec"]["template"]["spec"]["containers"][0];
        let hooks = hooks(case)?;
        let Some(job) = of_kind(hooks, "Job").next() else {
            failures.push(format!("{case}: no pre-delete Job"));
            continue;
        };
        let c = &job["spec"]["template"]["spec"]["containers"][0];
        if c["image"] != pullgate["image"] || c["imagePullPolicy"] != pullgate["imagePullPolicy"] {
            failures.push(format!(
                "{case}: hook image {} ({}), pullgate's {} ({})",
                c["image"], c["imagePullPolicy"], pullgate["image"], pullgate["imagePullPolicy"]
            ));
        }
        if c.get("command").is_some() {
            failures.push(format!(
                "{case}: the hook must use the image's pullgate entrypoint, not {}",
                c["command"]
            ));
        }
        let args = strings(&c["args"]);
        if args
            != [
                "uninstall-webhooks",
                "--mutating=pullgate-mutating",
                "--validating=pullgate-validating",
            ]
        {
            failures.push(format!("{case}: hook args {args:?}"));
        }
        let used = flags_in(&args.join("\n"));
        let unknown: Vec<_> = used.difference(&known).collect();
        if !unknown.is_empty() {
            failures.push(format!("{case}: hook flags `pullgate uninstall-webhooks --help` does not list: {unknown:?}"));
        }
        let deadline = job["spec"]["activeDeadlineSeconds"].as_u64().unwrap_or(0);
        if !(1..=120).contains(&deadline) {
            failures.push(format!(
                "{case}: activeDeadlineSeconds {deadline} is not short"
            ));
        }
        for role in of_kind(hooks, "ClusterRole") {
            for rule in role["rules"].as_array().into_iter().flatten() {
                let mut names = strings(&rule["resourceNames"]);
                names.sort_unstable();
                if strings(&rule["verbs"]) != ["delete"]
                    || names != ["pullgate-mutating", "pullgate-validating"]
                {
                    failures.push(format!(
                        "{case}: hook rule grants more than delete on the two names: {rule}"
                    ));
                }
            }
        }
    }
    check_all("pre-delete hook", failures)
}
