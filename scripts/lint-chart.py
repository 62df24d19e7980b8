#!/usr/bin/env python3
"""Lint and render-test the pullgate Helm chart (charts/pullgate).

Usage:
    python3 scripts/lint-chart.py                 # all checks; exit 1 on any failure
    python3 scripts/lint-chart.py --write-readme  # regenerate the values table in the chart README first
    PULLGATE_RENDERED_POLICY_DIR=/tmp/policies python3 scripts/lint-chart.py
        # also writes every rendered policy file there, for `cargo test --test chart`
    echo '{"case": {values...}}' | python3 scripts/lint-chart.py --render-json
        # renders each case (as step 3 below) and prints {"case": {"objects": [...], "hooks": [...],
        # "error": null}} as JSON, the objects being the manifest's documents and the hooks the hook
        # documents; what tests/chart.rs renders the chart with

What it checks:
1. Static: Chart.yaml appVersion equals the crate version; every value in values.yaml has a `# --` comment;
   the README values table is current; values.schema.json is draft-07 and closes every object.
2. `helm lint` through helm-sdkpy (PyPI `helm-sdkpy`, Helm v4 as a library) with the default values and with
   each profile (values-staging.yaml, values-prod.yaml). Any message of Severity >= 3 (error) fails.
3. Render: helm-sdkpy has no `helm template`, so each case is a real `helm install` (wait=False) against a
   fake Kubernetes API server on 127.0.0.1 that answers discovery, accepts every write and stores nothing.
   That renders exactly what a cluster would get, schema validation and `lookup` included. The manifests
   must parse as YAML and hold what pullgate needs: both webhook configurations with /mutate and /validate,
   the ports, the security context, least-privilege RBAC, the pre-delete hook, the policy file.
4. Refusals: invalid values (schema) and contradictions (_validate.tpl) must fail the render with the
   value's name in the message.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import http.server
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "pullgate"
PROFILES = ["values-staging.yaml", "values-prod.yaml"]
RELEASE = "pullgate"
NAMESPACE = "pullgate-system"
KUBE_VERSION = ("1", "34", "v1.34.0")
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
POLICY_KEYS = {"inject", "validation", "registries", "namespaces", "maxSecretAge", "reconcile", "verify", "attribution"}
README_START = "<!-- values-table:start -->"
README_END = "<!-- values-table:end -->"
FAKE_CA = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBfzCCASWgAwIBAgIUXHZ0ZXN0LWNhLW5vdC1hLXJlYWwtY2VydDAKBggqhkjO\n"
    "-----END CERTIFICATE-----\n"
)


def require_packages() -> None:
    """Fail naming the install command when helm-sdkpy or PyYAML is missing (.ci/run installs them)."""
    missing = []
    try:
        import yaml  # noqa: F401
    except ImportError:
        missing.append("pyyaml")
    try:
        import helm_sdkpy  # noqa: F401
    except ImportError:
        missing.append("helm-sdkpy")
    if missing:
        print(
            f"scripts/lint-chart.py needs {' '.join(missing)}: "
            f"python3 -m pip install --ignore-requires-python {' '.join(missing)} (.ci/run installs them)",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(2)


require_packages()
import helm_sdkpy  # noqa: E402
import yaml  # noqa: E402


# ----------------------------------------------------------------------------------------------------------
# Results


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0
        self.warnings: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
            print(f"    FAIL {what}", flush=True)
        return ok

    def warn(self, what: str) -> None:
        self.warnings.append(what)
        print(f"    warn {what}", flush=True)


# ----------------------------------------------------------------------------------------------------------
# values.yaml documentation


def parse_value_docs(path: Path) -> tuple[dict[str, str], list[str]]:
    """Return ({dotted key: `# --` description}, [every dotted key in order])."""
    docs: dict[str, str] = {}
    keys: list[str] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    in_doc = False
    for raw in path.read_text().splitlines():
        s = raw.strip()
        if not s:
            pending, in_doc = [], False
            continue
        if s.startswith("#"):
            m = re.match(r"#\s?--\s?(.*)", s)
            if m:
                pending, in_doc = [m.group(1)], True
            elif in_doc:
                pending.append(s.lstrip("#").strip())
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_.\-/\"]+):(\s|$)", raw)
        if not m or s.startswith("-"):
            pending, in_doc = [], False
            continue
        indent = len(m.group(1))
        key = m.group(2).strip('"')
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        dotted = ".".join(k for _, k in stack)
        keys.append(dotted)
        if pending:
            docs[dotted] = " ".join(pending).strip()
        pending, in_doc = [], False
    return docs, keys


def leaf_paths(values: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in values.items():
        p = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(leaf_paths(v, p + "."))
        else:
            out.append(p)
    return out


def schema_at(schema: dict, dotted: str) -> dict | None:
    node = schema
    for part in dotted.split("."):
        props = node.get("properties", {})
        if part not in props:
            return None
        node = props[part]
    return node


def schema_type(schema: dict, node: dict) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return schema_type(schema, schema["definitions"][name])
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(e)}`" for e in node["enum"])
    if ("oneOf" in node or "anyOf" in node) and "type" not in node:  # with a type they only constrain it
        return " or ".join(sorted({schema_type(schema, n) for n in node.get("oneOf", node.get("anyOf", []))}))
    t = node.get("type", "")
    if isinstance(t, list):
        return " or ".join(t)
    if t == "array" and "items" in node:
        return f"list of {schema_type(schema, node['items'])}"
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    return t or "any"


def values_table(values: dict, docs: dict[str, str], keys: list[str], schema: dict) -> str:
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for key in keys:
        if key not in docs:
            continue
        node = schema_at(schema, key) or {}
        default = values
        for part in key.split("."):
            default = default[part]
        dflt = json.dumps(default).replace("|", "\\|")
        desc = docs[key].replace("|", "\\|")
        rows.append(f"| `{key}` | {schema_type(schema, node)} | `{dflt}` | {desc} |")
    return "\n".join(rows)


def check_static(report: Report, write_readme: bool) -> None:
    print("static checks", flush=True)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    cargo = (ROOT / "Cargo.toml").read_text()
    m = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo, re.M | re.S)
    report.check(m is not None and str(chart.get("appVersion")) == m.group(1),
                 f"Chart.yaml appVersion {chart.get('appVersion')!r} equals the crate version "
                 f"{m.group(1) if m else '?'!r}")
    report.check(chart.get("apiVersion") == "v2", "Chart.yaml apiVersion is v2")

    values_path = CHART / "values.yaml"
    values = yaml.safe_load(values_path.read_text())
    docs, keys = parse_value_docs(values_path)
    for leaf in leaf_paths(values):
        parts = leaf.split(".")
        documented = any(".".join(parts[:i]) in docs for i in range(1, len(parts) + 1))
        report.check(documented, f"values.yaml: `{leaf}` has a `# --` comment (on it or a parent)")

    schema = json.loads((CHART / "values.schema.json").read_text())
    report.check(schema.get("$schema", "").startswith("http://json-schema.org/draft-07/schema"),
                 "values.schema.json declares draft-07")

    def walk(node: dict, where: str) -> None:
        if not isinstance(node, dict):
            return
        if node.get("type") == "object" and "properties" in node and where != "global":
            report.check(node.get("additionalProperties") is False,
                         f"values.schema.json: `{where or '<root>'}` has additionalProperties: false")
        for k, v in node.get("properties", {}).items():
            walk(v, f"{where}.{k}" if where else k)
        for k, v in node.get("definitions", {}).items():
            walk(v, f"definitions.{k}")
        for k in ("items",):
            if isinstance(node.get(k), dict):
                walk(node[k], f"{where}[]")

    walk(schema, "")
    for key in docs:
        node = schema_at(schema, key)
        if report.check(node is not None, f"values.schema.json describes `{key}`"):
            if "properties" not in node or not node.get("properties"):
                report.check("default" in node, f"values.schema.json: `{key}` has a default")

    readme = CHART / "README.md"
    table = values_table(values, docs, keys, schema)
    text = readme.read_text() if readme.exists() else ""
    if README_START in text and README_END in text:
        head, rest = text.split(README_START, 1)
        _, tail = rest.split(README_END, 1)
        fresh = f"{head}{README_START}\n{table}\n{README_END}{tail}"
        if write_readme and fresh != text:
            readme.write_text(fresh)
            text = fresh
            print("    wrote the values table in charts/pullgate/README.md")
        report.check(fresh == text, "charts/pullgate/README.md values table is current "
                                    "(run: python3 scripts/lint-chart.py --write-readme)")
    else:
        report.check(False, f"charts/pullgate/README.md has the {README_START} / {README_END} markers")

    metrics = [l.strip() for l in (CHART / "metrics.txt").read_text().splitlines() if l.strip()]
    report.check(len(metrics) == len(set(metrics)) and all(re.fullmatch(r"pullgate_[a-z0-9_]+", m) for m in metrics),
                 "charts/pullgate/metrics.txt holds unique pullgate_* names")


# ----------------------------------------------------------------------------------------------------------
# helm lint


def deep_merge(base: dict, over: dict) -> dict:
    """Helm's values merge: maps merge, everything else replaces, null deletes."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def helm_lint(report: Report, label: str, overlay: dict | None) -> None:
    """helm-sdkpy's Lint takes no values, so a profile is linted as a copy of the chart whose values.yaml is
    the merged result."""
    with tempfile.TemporaryDirectory() as tmp:
        path = CHART
        if overlay:
            path = Path(tmp) / "pullgate"
            shutil.copytree(CHART, path)
            merged = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), overlay)
            (path / "values.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
        try:
            result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(str(path)))
        except helm_sdkpy.HelmError as e:
            report.check(False, f"helm lint ({label}) ran: {e}")
            return
    messages = result.get("Messages") or []
    worst = max((m.get("Severity", 0) for m in messages), default=0)
    for m in messages:
        sev = m.get("Severity", 0)
        err = m.get("Err") or ""
        err = err if isinstance(err, str) and err else ""
        line = f"helm lint ({label}): {SEVERITY.get(sev, sev)} {m.get('Path', '')} {err}".rstrip()
        if sev >= 3:
            report.check(False, line + " (the render step below shows the message)")
        elif sev == 2:
            report.warn(line)
        else:
            print(f"    info {line}")
    report.check(worst < 3, f"helm lint ({label}): no message of severity >= 3 "
                            f"({len(messages)} message(s), worst {SEVERITY.get(worst, worst)})")


# ----------------------------------------------------------------------------------------------------------
# A fake API server, so that helm-sdkpy's Install renders the chart like `helm install --dry-run`.

API_RESOURCES = {
    ("", "v1"): [("configmaps", "ConfigMap", True), ("secrets", "Secret", True), ("services", "Service", True),
                 ("serviceaccounts", "ServiceAccount", True), ("namespaces", "Namespace", False),
                 ("pods", "Pod", True), ("events", "Event", True)],
    ("apps", "v1"): [("deployments", "Deployment", True)],
    ("batch", "v1"): [("jobs", "Job", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("rbac.authorization.k8s.io", "v1"): [("clusterroles", "ClusterRole", False),
                                          ("clusterrolebindings", "ClusterRoleBinding", False),
                                          ("roles", "Role", True), ("rolebindings", "RoleBinding", True)],
    ("admissionregistration.k8s.io", "v1"): [
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False),
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True)],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", True)],
    ("monitoring.coreos.com", "v1"): [("servicemonitors", "ServiceMonitor", True),
                                      ("prometheusrules", "PrometheusRule", True)],
    ("cert-manager.io", "v1"): [("issuers", "Issuer", True), ("certificates", "Certificate", True)],
    ("apiextensions.k8s.io", "v1"): [("customresourcedefinitions", "CustomResourceDefinition", False)],
}


class FakeApiServer:
    """Answers discovery, returns `objects` (path -> object) to GETs, 404 or an empty list otherwise,
    and echoes every write. Listens on 127.0.0.1 only and stops with the context manager."""

    def __init__(self, objects: dict[str, dict] | None = None) -> None:
        self.objects = objects or {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def reply(self, code: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                path = self.path.split("?", 1)[0]
                code, obj = server.get(path)
                self.reply(code, obj)

            def write(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    obj = json.loads(raw) if raw else {}
                except ValueError:  # protobuf (Helm's release Secret): any JSON answer will do
                    obj = {}
                path = self.path.split("?", 1)[0]
                if self.command == "PATCH" and path in server.objects:
                    obj = server.objects[path]  # the patched object; its content does not matter here
                self.reply(201 if self.command == "POST" else 200, obj)

            do_POST = do_PUT = do_PATCH = write  # noqa: N815

            def do_DELETE(self):  # noqa: N802
                self.reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeApiServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def kubeconfig(self) -> str:
        port = self.httpd.server_address[1]
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "fake", "user": {"token": "not-a-real-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NAMESPACE}}],
        })

    def get(self, path: str) -> tuple[int, dict]:
        major, minor, git = KUBE_VERSION
        if path == "/version":
            return 200, {"major": major, "minor": minor, "gitVersion": git, "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                       "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                      for (g, v) in API_RESOURCES if g]
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        for (g, v), resources in API_RESOURCES.items():
            base = "/api/v1" if not g else f"/apis/{g}/{v}"
            if path == base:
                return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{g}/{v}" if g else v,
                             "resources": [{"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k,
                                            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                                           for n, k, ns in resources]}
        if path in self.objects:
            return 200, self.objects[path]
        last = path.rstrip("/").rsplit("/", 1)[-1]
        if any(last == n for rs in API_RESOURCES.values() for n, _, _ in rs):
            return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                     "code": 404, "message": f"{path} not found"}


def render(values: dict, objects: dict[str, dict] | None = None) -> dict:
    """`helm install` into the fake API server; returns the release (manifest, hooks, info.notes)."""
    with FakeApiServer(objects) as api:
        config = helm_sdkpy.Configuration(namespace=NAMESPACE, kubeconfig=api.kubeconfig)
        return asyncio.run(helm_sdkpy.Install(config).run(
            RELEASE, str(CHART), values=values or None, wait=False, timeout=60))


# ----------------------------------------------------------------------------------------------------------
# Checks on rendered manifests


def load_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def expected(values: dict) -> dict:
    """The chart's effective values: defaults merged with the case's values."""
    return deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)


def check_webhooks(r: Report, case: str, docs: list[dict], v: dict, existing_ca: str | None) -> None:
    svc = find(docs, "Service")
    svc = svc[0] if svc else {"metadata": {"name": "?"}, "spec": {"ports": []}}
    svc_port = next((p for p in svc["spec"]["ports"] if p["name"] == "https"), {})
    r.check(svc_port.get("port") == v["service"]["port"] and svc_port.get("targetPort") == "https",
            f"[{case}] Service port https {v['service']['port']} -> targetPort https")
    mode = v["certificates"]["mode"]
    for kind, path, enabled in (("MutatingWebhookConfiguration", "/mutate", v["webhooks"]["mutating"]["enabled"]),
                                ("ValidatingWebhookConfiguration", "/validate", v["webhooks"]["validating"]["enabled"])):
        configs = find(docs, kind)
        if not r.check(len(configs) == (1 if enabled else 0), f"[{case}] {kind} rendered iff enabled"):
            continue
        if not enabled:
            continue
        cfg = configs[0]
        side = "mutating" if kind.startswith("Mutating") else "validating"
        failure = v["webhooks"][side]["failurePolicy"] or v["webhooks"]["failurePolicy"]
        names = [w["name"] for w in cfg["webhooks"]]
        r.check(len(names) == len(set(names)) and all(n.endswith(".pullgate.io") for n in names),
                f"[{case}] {kind} webhook names unique and fully qualified: {names}")
        ann = cfg["metadata"].get("annotations") or {}
        if mode == "certManager":
            r.check(ann.get("cert-manager.io/inject-ca-from") == f"{NAMESPACE}/{RELEASE}-serving",
                    f"[{case}] {kind} has cert-manager.io/inject-ca-from")
        else:
            r.check("cert-manager.io/inject-ca-from" not in ann, f"[{case}] {kind} has no inject-ca-from")
        for w in cfg["webhooks"]:
            where = f"[{case}] {kind}/{w['name']}"
            cc = w["clientConfig"]
            r.check(cc["service"] == {"name": svc["metadata"]["name"], "namespace": NAMESPACE, "path": path,
                                      "port": v["service"]["port"]},
                    f"{where} calls service {svc['metadata']['name']}:{v['service']['port']}{path}")
            r.check(w.get("admissionReviewVersions") == ["v1", "v1beta1"], f"{where} admissionReviewVersions [v1, v1beta1]")
            r.check(w.get("sideEffects") == "None", f"{where} sideEffects None")
            r.check(w.get("matchPolicy") == "Equivalent", f"{where} matchPolicy Equivalent")
            r.check(w.get("timeoutSeconds") == v["webhooks"]["timeoutSeconds"], f"{where} timeoutSeconds")
            r.check(w.get("failurePolicy") == failure, f"{where} failurePolicy {failure}")
            if side == "mutating":
                r.check(w.get("reinvocationPolicy") == "IfNeeded", f"{where} reinvocationPolicy IfNeeded")
            else:
                r.check("reinvocationPolicy" not in w, f"{where} has no reinvocationPolicy")
            # caBundle per certificate mode
            ca = cc.get("caBundle")
            if mode == "existingSecret":
                r.check(ca is not None and base64.b64decode(ca).decode().strip() == v["certificates"]["existingSecret"]["caBundle"].strip(),
                        f"{where} caBundle is the existingSecret CA")
            elif mode == "selfSigned":
                r.check(ca == existing_ca, f"{where} caBundle {'kept from the cluster' if existing_ca else 'left empty'} (selfSigned)")
            else:
                r.check(ca is None, f"{where} no caBundle (cainjector fills it)")
            # selectors
            exprs = w["namespaceSelector"]["matchExpressions"]
            notin = [e for e in exprs if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "NotIn"]
            must = {"kube-system", "kube-node-lease", NAMESPACE, *v["policy"]["namespaces"]["exclude"],
                    *v["webhooks"]["namespaceSelector"]["excludeNamespaces"]}
            r.check(len(notin) == 1 and must <= set(notin[0]["values"]),
                    f"{where} namespaceSelector excludes {sorted(must)}")
            obj = w["objectSelector"]["matchExpressions"]
            r.check({"key": "pullgate.io/ignore", "operator": "NotIn", "values": ["true"]} in obj,
                    f"{where} objectSelector skips pullgate.io/ignore=true")
            for rule in w["rules"]:
                r.check(rule.get("scope") == "Namespaced" and "*" not in rule["resources"] and "*" not in rule["apiGroups"],
                        f"{where} rules are namespaced and name their resources")
            ops = {(res, op) for rule in w["rules"] for res in rule["resources"] for op in rule["operations"]}
            conds = {c["name"]: c["expression"] for c in w.get("matchConditions") or []}
            wh = w["name"].split(".")[0]
            if side == "mutating" and wh == "pods":
                r.check(ops == {("pods", "CREATE")}, f"{where} pods CREATE only")
                r.check("kubernetes.io/config.mirror" in conds.get("not-a-mirror-pod", ""), f"{where} skips mirror pods")
            if side == "validating" and wh == "pods":
                r.check(ops == {("pods", "CREATE"), ("pods", "UPDATE"), ("pods/ephemeralcontainers", "CREATE"),
                                ("pods/ephemeralcontainers", "UPDATE")}, f"{where} pods + ephemeralcontainers CREATE/UPDATE")
            if wh == "serviceaccounts":
                r.check(ops == {("serviceaccounts", "CREATE"), ("serviceaccounts", "UPDATE")}, f"{where} serviceaccounts CREATE/UPDATE")
        by_name = {w["name"].split(".")[0] for w in cfg["webhooks"]}
        if side == "mutating":
            r.check(by_name == {"pods", "serviceaccounts"}, f"[{case}] mutating webhooks: pods, serviceaccounts")
        else:
            want = {"pods", "serviceaccounts"} | ({"workloads"} if v["webhooks"]["validating"]["workloads"] else set()) \
                | ({"secrets"} if v["webhooks"]["validating"]["secrets"] else set())
            r.check(by_name == want, f"[{case}] validating webhooks: {sorted(want)}")
            for w in cfg["webhooks"]:
                if w["name"].startswith("workloads."):
                    res = {x for rule in w["rules"] for x in rule["resources"]}
                    r.check(res == {"deployments", "statefulsets", "daemonsets", "replicasets", "replicationcontrollers",
                                    "jobs", "cronjobs"}, f"[{case}] workloads webhook covers every workload kind")


def check_deployment(r: Report, case: str, docs: list[dict], v: dict) -> dict:
    deps = find(docs, "Deployment")
    if not r.check(len(deps) == 1, f"[{case}] one Deployment"):
        return {}
    dep = deps[0]
    spec = dep["spec"]["template"]["spec"]
    r.check(dep["spec"]["replicas"] == v["replicaCount"], f"[{case}] replicas {v['replicaCount']}")
    c = next(c for c in spec["containers"] if c["name"] == "pullgate")
    args = c["args"]
    r.check(args[0] == "serve", f"[{case}] container runs `pullgate serve`")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    r.check(ports == {"https": v["server"]["port"], "metrics": v["server"]["metricsPort"]},
            f"[{case}] container ports https {v['server']['port']}, metrics {v['server']['metricsPort']}")
    listen = [a for a in args if a.startswith("--listen=")]
    metrics = [a for a in args if a.startswith("--metrics-listen=")]
    r.check(len(listen) == 1 and listen[0].endswith(f":{v['server']['port']}"), f"[{case}] --listen on the https port")
    r.check(len(metrics) == 1 and metrics[0].endswith(f":{v['server']['metricsPort']}"), f"[{case}] --metrics-listen on the metrics port")
    r.check("--config=/etc/pullgate/policy.yaml" in args, f"[{case}] --config=/etc/pullgate/policy.yaml")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    r.check("/etc/pullgate/policy.yaml" in mounts, f"[{case}] policy mounted at /etc/pullgate/policy.yaml")
    bundles = v["verifyCaBundles"]
    ca_mount = mounts.get("/etc/pullgate/ca")
    r.check((ca_mount is not None) == bool(bundles), f"[{case}] /etc/pullgate/ca mounted iff verifyCaBundles")
    if ca_mount:
        vol = next((x for x in spec["volumes"] if x["name"] == ca_mount["name"]), {})
        sources = (vol.get("projected") or {}).get("sources", [])
        want = [{("configMap" if "configMap" in b else "secret"): {
            "name": b.get("configMap", b.get("secret")), **({"items": b["items"]} if b.get("items") else {})}}
            for b in bundles]
        r.check(ca_mount.get("readOnly") is True and sources == want,
                f"[{case}] CA bundles mounted read-only as one projected volume of the named sources")
    mode = v["certificates"]["mode"]
    if mode == "selfSigned":
        r.check(any(a.startswith("--self-signed-secret=") for a in args) and not any(a.startswith("--tls-cert") for a in args),
                f"[{case}] selfSigned: --self-signed-secret and no --tls-cert")
        hooks = [a.split("=", 1)[1] for a in args if a.startswith("--webhook-configuration=")]
        want = ([f"{RELEASE}-mutating"] if v["webhooks"]["mutating"]["enabled"] else []) + \
               ([f"{RELEASE}-validating"] if v["webhooks"]["validating"]["enabled"] else [])
        r.check(hooks == want, f"[{case}] --webhook-configuration names {want}")
    else:
        r.check("--tls-cert=/etc/pullgate/tls/tls.crt" in args and "--tls-key=/etc/pullgate/tls/tls.key" in args
                and "/etc/pullgate/tls" in mounts, f"[{case}] {mode}: TLS Secret mounted and passed")
    r.check(("--cluster" in args) == v["cluster"]["enabled"], f"[{case}] --cluster iff cluster.enabled")
    r.check([a.split("=", 1)[1] for a in args if a.startswith("--watch-namespace=")] == (v["cluster"]["watchNamespaces"] if v["cluster"]["enabled"] else []),
            f"[{case}] --watch-namespace per watched namespace")
    needs_api = v["cluster"]["enabled"] or mode == "selfSigned" or v["reconciler"]["enabled"]
    r.check(spec.get("automountServiceAccountToken") is needs_api,
            f"[{case}] automountServiceAccountToken {needs_api}")
    env = {e["name"]: e for e in c["env"]}
    r.check(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
            f"[{case}] POD_NAMESPACE from the downward API")
    r.check(env.get("RUST_LOG", {}).get("value") == v["logLevel"], f"[{case}] RUST_LOG")
    sc = c["securityContext"]
    r.check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 65532 and sc.get("readOnlyRootFilesystem") is True
            and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"]
            and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
            f"[{case}] container securityContext hardened")
    psc = spec["securityContext"]
    r.check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, f"[{case}] pod securityContext non-root 65532")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        g = c.get(probe, {}).get("httpGet", {})
        r.check(g.get("path") == path and g.get("scheme") == "HTTPS" and g.get("port") == "https",
                f"[{case}] {probe} GET {path} over HTTPS")
    ann = dep["spec"]["template"]["metadata"].get("annotations") or {}
    r.check(re.fullmatch(r"[0-9a-f]{64}", ann.get("checksum/policy", "")) is not None, f"[{case}] checksum/policy annotation")
    if v["priorityClassName"]:
        r.check(spec.get("priorityClassName") == v["priorityClassName"], f"[{case}] priorityClassName")
    if not v["affinity"] and v["podAntiAffinity"] != "none":
        r.check("podAntiAffinity" in spec.get("affinity", {}), f"[{case}] pod anti-affinity")
    if v["zoneSpread"]:
        r.check(any(t["topologyKey"] == "topology.kubernetes.io/zone" for t in spec.get("topologySpreadConstraints", [])),
                f"[{case}] zone topology spread")
    r.check(c.get("resources") == v["resources"], f"[{case}] resources from values")
    return dep


def check_policy(r: Report, case: str, docs: list[dict], v: dict, out_dir: Path | None) -> None:
    cms = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].endswith("-policy")]
    if not r.check(len(cms) == 1, f"[{case}] one policy ConfigMap"):
        return
    text = cms[0]["data"]["policy.yaml"]
    try:
        policy = yaml.safe_load(text)
    except yaml.YAMLError as e:
        r.check(False, f"[{case}] policy.yaml parses: {e}")
        return
    r.check(isinstance(policy, dict) and set(policy) <= POLICY_KEYS, f"[{case}] policy keys {sorted(policy)} within {sorted(POLICY_KEYS)}")
    want = copy.deepcopy(v["policy"])
    if not want.get("maxSecretAge"):
        want.pop("maxSecretAge", None)
    if not want["verify"].get("probeRepository"):
        want["verify"].pop("probeRepository", None)
    if v["reconciler"]["enabled"]:
        want["reconcile"] = {"serviceAccounts": True, "selector": v["reconciler"].get("selector", {})}
    r.check(policy == want, f"[{case}] rendered policy equals policy values")
    r.check(isinstance(policy.get("validation"), str), f"[{case}] validation is a string (quoted off)")
    if out_dir:
        (out_dir / f"{case}.policy.yaml").write_text(text)


def check_rbac(r: Report, case: str, docs: list[dict], v: dict) -> None:
    mode = v["certificates"]["mode"]
    rules = []  # (kind, namespace, rule)
    for kind in ("ClusterRole", "Role"):
        for d in find(docs, kind):
            for rule in d.get("rules", []):
                rules.append((kind, d["metadata"].get("namespace"), rule))
    for kind, ns, rule in rules:
        r.check(all("*" not in rule.get(k, []) for k in ("verbs", "resources", "apiGroups")),
                f"[{case}] {kind} rule {rule.get('resources')} has no wildcard")
        if "secrets" in rule["resources"] and set(rule["verbs"]) & {"update", "patch", "delete"}:
            r.check(bool(rule.get("resourceNames")), f"[{case}] secret {rule['verbs']} limited by resourceNames")
        if "secrets" in rule["resources"] and "get" in rule["verbs"] and not rule.get("resourceNames"):
            # Verification reads the credentials it probes; list already returns the same data.
            r.check(v["policy"]["verify"]["enabled"] and "update" not in rule["verbs"],
                    f"[{case}] get on any secret only for policy.verify")
        if "secrets" in rule["resources"] and "create" in rule["verbs"]:
            r.check(kind == "Role" and ns == NAMESPACE, f"[{case}] secret create only in the release namespace")
        if any(x.endswith("webhookconfigurations") for x in rule["resources"]):
            r.check(bool(rule.get("resourceNames")) and set(rule["verbs"]) <= {"get", "patch"},
                    f"[{case}] webhook configuration rules: get/patch by name")

    def granted(resource: str, verb: str) -> bool:
        return any(resource in rule["resources"] and verb in rule["verbs"] for _, _, rule in rules)

    cluster, recon = v["cluster"]["enabled"], v["reconciler"]["enabled"]
    verify, attribution = v["policy"]["verify"]["enabled"], v["policy"]["attribution"]
    for res in ("secrets", "serviceaccounts", "namespaces"):
        r.check(granted(res, "watch") == cluster and granted(res, "list") == cluster, f"[{case}] list/watch {res} iff cluster mode")
    r.check(granted("serviceaccounts", "patch") == recon, f"[{case}] patch serviceaccounts iff reconciler")
    elects = recon or v["policy"]["attribution"]["enabled"]
    r.check(granted("leases", "update") == elects and granted("leases", "create") == elects,
            f"[{case}] leases iff reconciler or attribution")
    r.check(all(kind == "Role" and ns == NAMESPACE for kind, ns, rule in rules if "leases" in rule["resources"]),
            f"[{case}] leases only in the release namespace")
    writes_events = recon or verify or attribution["enabled"]
    r.check(granted("events", "create") == writes_events and granted("events", "patch") == writes_events,
            f"[{case}] create/patch events iff reconciler, verify or attribution")
    r.check(any("secrets" in rule["resources"] and "get" in rule["verbs"] and not rule.get("resourceNames")
                for _, _, rule in rules) == verify, f"[{case}] get secrets iff policy.verify")
    r.check(granted("events", "watch") == attribution["enabled"] and granted("events", "list") == attribution["enabled"],
            f"[{case}] list/watch events iff policy.attribution")
    r.check(granted("pods", "get") == attribution["enabled"] and granted("pods", "list") == attribution["enabled"],
            f"[{case}] get/list pods iff policy.attribution")
    r.check(granted("pods", "delete") == attribution["restartStuckPods"], f"[{case}] delete pods iff restartStuckPods")
    r.check(not granted("pods", "watch") and not granted("pods", "update") and not granted("pods", "patch"),
            f"[{case}] pods never watched, updated or patched")
    r.check(all(rule["apiGroups"] == [""] for _, _, rule in rules if "events" in rule["resources"]),
            f"[{case}] events rules are core/v1 only")
    r.check(granted("mutatingwebhookconfigurations", "patch") == (mode == "selfSigned"),
            f"[{case}] patch webhook configurations iff selfSigned")
    r.check(granted("secrets", "create") == (mode == "selfSigned"), f"[{case}] create secrets iff selfSigned")
    if cluster and v["cluster"]["watchNamespaces"]:
        roles = {d["metadata"]["namespace"] for d in find(docs, "Role") if any("secrets" in x["resources"] and "watch" in x["verbs"] for x in d["rules"])}
        r.check(roles == set(v["cluster"]["watchNamespaces"]), f"[{case}] secret watch Roles only in watched namespaces")
        r.check(not any("secrets" in rule["resources"] for kind, _, rule in rules if kind == "ClusterRole"),
                f"[{case}] no cluster-wide secret access with watchNamespaces")
        r.check(not any({"events", "pods", "serviceaccounts"} & set(rule["resources"]) for kind, _, rule in rules if kind == "ClusterRole"),
                f"[{case}] no cluster-wide event, pod or ServiceAccount access with watchNamespaces")
    sa_name = find(docs, "Deployment")[0]["spec"]["template"]["spec"]["serviceAccountName"] if find(docs, "Deployment") else "?"
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for b in find(docs, kind):
            r.check(b["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}],
                    f"[{case}] {kind} {b['metadata']['name']} binds only the pullgate ServiceAccount")


def check_hooks(r: Report, case: str, release: dict, v: dict) -> None:
    hooks = release.get("hooks") or []
    docs = [yaml.safe_load(h["manifest"]) for h in hooks if h.get("manifest")]
    jobs = find(docs, "Job")
    if not v["hooks"]["preDelete"]["enabled"]:
        r.check(not jobs, f"[{case}] no pre-delete Job when disabled")
        return
    if not r.check(len(jobs) == 1, f"[{case}] one pre-delete Job"):
        return
    job = jobs[0]
    ann = job["metadata"]["annotations"]
    r.check(ann.get("helm.sh/hook") == "pre-delete" and "hook-succeeded" in ann.get("helm.sh/hook-delete-policy", ""),
            f"[{case}] Job is a pre-delete hook, deleted on success")
    c = job["spec"]["template"]["spec"]["containers"][0]
    image = v["image"]
    r.check(c["image"].startswith(image["repository"] + ("@" if image["digest"] else ":")),
            f"[{case}] hook runs the pullgate image (no separate kubectl image to pull)")
    r.check(c.get("imagePullPolicy") == image["pullPolicy"], f"[{case}] hook pulls as the Deployment does")
    words = c.get("command", []) + c.get("args", [])
    r.check(words[:1] == ["uninstall-webhooks"] and f"--mutating={RELEASE}-mutating" in words
            and f"--validating={RELEASE}-validating" in words,
            f"[{case}] hook runs `pullgate uninstall-webhooks` on both webhook configurations")
    r.check(job["spec"]["activeDeadlineSeconds"] == v["hooks"]["preDelete"]["activeDeadlineSeconds"] <= 300,
            f"[{case}] hook Job has a short activeDeadlineSeconds")
    sa = job["spec"]["template"]["spec"]["serviceAccountName"]
    roles = find(docs, "ClusterRole")
    r.check(len(roles) == 1 and all(x["verbs"] == ["delete"]
                                    and sorted(x.get("resourceNames") or []) == [f"{RELEASE}-mutating", f"{RELEASE}-validating"]
                                    for x in roles[0]["rules"]),
            f"[{case}] hook ClusterRole: delete on exactly the two configuration names")
    r.check(bool(find(docs, "ServiceAccount", sa)) and any(b["subjects"][0]["name"] == sa for b in find(docs, "ClusterRoleBinding")),
            f"[{case}] hook has its own ServiceAccount and binding")
    for d in docs:
        a = d["metadata"].get("annotations") or {}
        r.check(a.get("helm.sh/hook") == "pre-delete", f"[{case}] hook object {d['kind']} is a pre-delete hook")


def check_extras(r: Report, case: str, docs: list[dict], v: dict) -> None:
    mode = v["certificates"]["mode"]
    dep = find(docs, "Deployment")
    labels = dep[0]["spec"]["selector"]["matchLabels"] if dep else {}
    pdb = find(docs, "PodDisruptionBudget")
    r.check(len(pdb) == (1 if v["podDisruptionBudget"]["enabled"] else 0), f"[{case}] PodDisruptionBudget iff enabled")
    if pdb:
        r.check(pdb[0]["spec"]["selector"]["matchLabels"] == labels, f"[{case}] PDB selects the pullgate pods")
    certs = find(docs, "Certificate")
    if mode == "certManager":
        serving = find(docs, "Certificate", f"{RELEASE}-serving")
        r.check(len(serving) == 1, f"[{case}] serving Certificate")
        if serving:
            vol = [x for x in dep[0]["spec"]["template"]["spec"]["volumes"] if x["name"] == "tls"]
            r.check(bool(vol) and vol[0]["secret"]["secretName"] == serving[0]["spec"]["secretName"],
                    f"[{case}] Deployment mounts the serving Certificate's Secret")
            dns = serving[0]["spec"]["dnsNames"]
            r.check(f"{RELEASE}.{NAMESPACE}.svc" in dns, f"[{case}] serving Certificate names the Service")
        own_ca = not v["certificates"]["certManager"]["issuerRef"]["name"]
        r.check(len(find(docs, "Issuer")) == (2 if own_ca else 0) and len(certs) == (2 if own_ca else 1),
                f"[{case}] cert-manager CA chain {'created' if own_ca else 'taken from issuerRef'}")
    else:
        r.check(not certs and not find(docs, "Issuer"), f"[{case}] no cert-manager objects outside certManager mode")
    np_ = find(docs, "NetworkPolicy")
    r.check(len(np_) == (1 if v["networkPolicy"]["enabled"] else 0), f"[{case}] NetworkPolicy iff enabled")
    if np_:
        ingress = np_[0]["spec"]["ingress"]
        ports = [p["port"] for rule in ingress for p in rule["ports"]]
        r.check(ports[0] == "https" and all(x["from"] for x in ingress), f"[{case}] NetworkPolicy: listed peers only")
        r.check(("metrics" in ports) == bool(v["networkPolicy"]["metrics"]["peers"]), f"[{case}] NetworkPolicy metrics rule")
    sm = find(docs, "ServiceMonitor")
    r.check(len(sm) == (1 if v["metrics"]["serviceMonitor"]["enabled"] else 0), f"[{case}] ServiceMonitor iff enabled")
    if sm:
        ep = sm[0]["spec"]["endpoints"][0]
        r.check(ep["port"] == "metrics" and ep["path"] == "/metrics", f"[{case}] ServiceMonitor scrapes metrics:/metrics")
    metric_names = set((CHART / "metrics.txt").read_text().split())
    used: set[str] = set()
    pr = find(docs, "PrometheusRule")
    r.check(len(pr) == (1 if v["metrics"]["prometheusRule"]["enabled"] else 0), f"[{case}] PrometheusRule iff enabled")
    if pr:
        alerts = {rule["alert"]: rule for g in pr[0]["spec"]["groups"] for rule in g["rules"]}
        for need in ("PullgateWebhookErrors", "PullgateWebhookSlow", "PullgateCertificateExpiringSoon", "PullgateStoreStale"):
            r.check(need in alerts, f"[{case}] alert {need}")
        for name, rule in alerts.items():
            r.check("{{" not in rule["expr"] and rule["labels"].get("severity") in {"info", "warning", "critical"},
                    f"[{case}] alert {name} is rendered and has a severity")
            used |= {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"pullgate_[a-z0-9_]+", rule["expr"])}
    dash = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    r.check(len(dash) == (1 if v["metrics"]["dashboard"]["enabled"] else 0), f"[{case}] dashboard ConfigMap iff enabled")
    if dash:
        r.check((dash[0]["metadata"].get("labels") or {}).get("grafana_dashboard") == "1", f"[{case}] dashboard label grafana_dashboard: \"1\"")
        try:
            board = json.loads(dash[0]["data"]["pullgate.json"])
            r.check(bool(board.get("panels")), f"[{case}] dashboard JSON parses")
        except (ValueError, KeyError) as e:
            r.check(False, f"[{case}] dashboard JSON parses: {e}")
        used |= {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"pullgate_[a-z0-9_]+", dash[0]["data"]["pullgate.json"])}
    if pr and dash:
        r.check(used == metric_names, f"[{case}] dashboard + alerts use exactly metrics.txt "
                                      f"(extra {sorted(used - metric_names)}, unused {sorted(metric_names - used)})")
    for d in docs:
        r.check(d["metadata"].get("namespace") in (None, NAMESPACE) or d["kind"] in ("Role", "RoleBinding", "ConfigMap"),
                f"[{case}] {d['kind']}/{d['metadata']['name']} lives in the release namespace")


def webhook_object(kind: str, name: str, ca: str) -> dict:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "Helm"},
                         "annotations": {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE}},
            "webhooks": [{"name": "pods.example.pullgate.io", "clientConfig": {"caBundle": ca}}]}


def profile(name: str) -> dict:
    return yaml.safe_load((CHART / name).read_text()) or {}


def render_cases() -> list[tuple[str, dict, dict | None, str | None]]:
    """(case name, values, objects already in the cluster, caBundle expected to be kept)."""
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nkept\n-----END CERTIFICATE-----\n").decode()
    existing = {
        f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{RELEASE}-mutating":
            webhook_object("MutatingWebhookConfiguration", f"{RELEASE}-mutating", ca),
        f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{RELEASE}-validating":
            webhook_object("ValidatingWebhookConfiguration", f"{RELEASE}-validating", ca),
    }
    return [
        ("default", {}, None, None),
        ("staging", profile("values-staging.yaml"), None, None),
        ("prod", profile("values-prod.yaml"), None, None),
        ("selfsigned-upgrade", {}, existing, ca),
        ("certmanager", {"certificates": {"mode": "certManager"}}, None, None),
        ("certmanager-issuer", {"certificates": {"mode": "certManager", "certManager": {
            "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}, None, None),
        ("existingsecret-validate-only", {
            "certificates": {"mode": "existingSecret", "existingSecret": {"name": "pullgate-tls", "caBundle": FAKE_CA}},
            "cluster": {"enabled": False}, "policy": {"inject": False, "validation": "off"},
            "webhooks": {"mutating": {"enabled": False}}, "hooks": {"preDelete": {"enabled": False}},
            "podDisruptionBudget": {"enabled": False}, "zoneSpread": False, "podAntiAffinity": "none"}, None, None),
        ("everything", {
            "replicaCount": 3, "priorityClassName": "system-cluster-critical",
            "server": {"bindAddress": "::"}, "reconciler": {"enabled": True},
            "cluster": {"watchNamespaces": ["team-a", "team-b"]},
            "policy": {"maxSecretAge": "30d", "registries": {"private": ["*.corp.example", "ghcr.io/acme"],
                                                             "public": ["registry.k8s.io"]},
                       "namespaces": {"exclude": ["kube-system", "kube-node-lease", "monitoring"]}},
            "webhooks": {"validating": {"secrets": True, "failurePolicy": "Fail"},
                         "namespaceSelector": {"excludeNamespaces": ["sandbox"],
                                               "matchExpressions": [{"key": "team", "operator": "Exists"}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                           "whenUnsatisfiable": "DoNotSchedule"}],
            "podDisruptionBudget": {"minAvailable": 2},
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                        "prometheusRule": {"enabled": True, "additionalRuleLabels": {"team": "platform"}},
                        "dashboard": {"enabled": True, "namespace": "monitoring"}},
            "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.0/24"]},
                              "metrics": {"peers": [{"namespaceSelector": {"matchLabels": {
                                  "kubernetes.io/metadata.name": "monitoring"}}}]}},
            "extraEnv": [{"name": "EXTRA", "value": "1"}],
        }, None, None),
        ("verify-attribution", {
            "policy": {
                "verify": {"enabled": True, "interval": "1h", "timeout": "5s", "deny": True,
                           "probeRepository": "library/busybox",
                           "registries": [{"pattern": "*.corp.example", "caFile": "/etc/pullgate/ca/corp.pem"},
                                          {"pattern": "registry.local:5000", "insecure": True}]},
                "attribution": {"enabled": True, "eventsPerSecond": 5, "restartStuckPods": True,
                                "maxRestartPercent": 50, "restartsPerMinute": 3}},
            "verifyCaBundles": [{"configMap": "corp-ca"},
                                {"secret": "partner-ca", "items": [{"key": "ca.crt", "path": "partner.pem"}]}],
        }, None, None),
        ("verify-attribution-watchnamespaces", {
            "cluster": {"watchNamespaces": ["team-a", "team-b"]}, "reconciler": {"enabled": True},
            "policy": {"verify": {"enabled": True}, "attribution": {"enabled": True}},
        }, None, None),
    ]


def refusal_cases() -> list[tuple[str, dict, str]]:
    """(case, values, fragment the error must contain)."""
    return [
        ("schema: validation enum", {"policy": {"validation": "block"}}, "validation"),
        ("schema: bare off is a boolean", {"policy": {"validation": False}}, "validation"),
        ("schema: unknown key", {"polcy": {"inject": True}}, "polcy"),
        ("schema: unknown nested key", {"webhooks": {"timeoutSecond": 5}}, "timeoutSecond"),
        ("schema: timeout range", {"webhooks": {"timeoutSeconds": 31}}, "timeoutSeconds"),
        ("schema: failurePolicy enum", {"webhooks": {"failurePolicy": "Deny"}}, "failurePolicy"),
        ("schema: certificates.mode enum", {"certificates": {"mode": "vault"}}, "mode"),
        ("validate: existingSecret needs caBundle",
         {"certificates": {"mode": "existingSecret", "existingSecret": {"name": "x"}}}, "caBundle"),
        ("validate: caBundle outside existingSecret", {"certificates": {"existingSecret": {"caBundle": FAKE_CA}}},
         "existingSecret"),
        ("validate: networkPolicy without API server", {"networkPolicy": {"enabled": True}}, "networkPolicy.apiServer"),
        ("validate: request timeout >= webhook timeout", {"server": {"requestTimeoutSeconds": 5}}, "requestTimeoutSeconds"),
        ("validate: deny without validating webhook",
         {"policy": {"validation": "deny", "inject": True}, "webhooks": {"validating": {"enabled": False}}},
         "policy.validation=deny"),
        ("validate: inject without mutating webhook", {"webhooks": {"mutating": {"enabled": False}}}, "policy.inject"),
        ("validate: PDB blocks drains", {"podDisruptionBudget": {"minAvailable": 2}}, "minAvailable"),
        ("validate: reconciler without cluster mode",
         {"reconciler": {"enabled": True}, "cluster": {"enabled": False}}, "reconciler.enabled"),
        ("validate: grace periods", {"terminationGracePeriodSeconds": 20}, "shutdownGracePeriodSeconds"),
        ("validate: verify without cluster mode",
         {"policy": {"verify": {"enabled": True}}, "cluster": {"enabled": False}}, "policy.verify.enabled"),
        ("validate: attribution without cluster mode",
         {"policy": {"attribution": {"enabled": True}}, "cluster": {"enabled": False}}, "policy.attribution.enabled"),
        ("validate: restartStuckPods without attribution",
         {"policy": {"attribution": {"restartStuckPods": True}}}, "restartStuckPods"),
        ("validate: CA bundles without verify", {"verifyCaBundles": [{"configMap": "corp-ca"}]}, "verifyCaBundles"),
        ("validate: caFile in /etc/pullgate/ca without bundles",
         {"policy": {"verify": {"enabled": True, "registries": [{"pattern": "r.example", "caFile": "/etc/pullgate/ca/r.pem"}]}}},
         "verifyCaBundles"),
        ("schema: maxRestartPercent range", {"policy": {"attribution": {"maxRestartPercent": 101}}}, "maxRestartPercent"),
        ("schema: zero interval", {"policy": {"verify": {"interval": "0s"}}}, "interval"),
        ("schema: CA bundle names one source", {"verifyCaBundles": [{"configMap": "a", "secret": "b"}]}, "verifyCaBundles"),
    ]


def check_renders(report: Report, out_dir: Path | None) -> None:
    for case, values, objects, kept_ca in render_cases():
        print(f"render {case}", flush=True)
        try:
            release = render(values, objects)
        except helm_sdkpy.HelmError as e:
            report.check(False, f"[{case}] renders: {str(e)[:600]}")
            continue
        try:
            docs = load_docs(release.get("manifest", ""))
        except yaml.YAMLError as e:
            report.check(False, f"[{case}] manifest parses as YAML: {e}")
            continue
        report.check(all(isinstance(d, dict) and d.get("apiVersion") and d.get("kind") for d in docs),
                     f"[{case}] every document has apiVersion and kind")
        v = expected(values)
        try:
            check_webhooks(report, case, docs, v, kept_ca)
            check_deployment(report, case, docs, v)
            check_policy(report, case, docs, v, out_dir)
            check_rbac(report, case, docs, v)
            check_hooks(report, case, release, v)
            check_extras(report, case, docs, v)
            notes = (release.get("info") or {}).get("notes", "")
            report.check("rollout status" in notes and "--dry-run=server" in notes, f"[{case}] NOTES explain how to verify")
        except (KeyError, IndexError, TypeError, StopIteration, AttributeError) as e:
            report.check(False, f"[{case}] manifest has the expected shape: {type(e).__name__} {e}\n"
                                f"{traceback.format_exc(limit=2)}")
        print(f"    {len(docs)} objects, {len(release.get('hooks') or [])} hook objects", flush=True)

    for case, values, fragment in refusal_cases():
        print(f"refuse {case}", flush=True)
        try:
            render(values)
            report.check(False, f"[{case}] is refused, but it rendered")
        except helm_sdkpy.HelmError as e:
            msg = str(e)
            report.check(fragment in msg, f"[{case}] refused naming {fragment!r}: {msg.splitlines()[0][:240] if msg else ''}")


def render_json() -> int:
    """--render-json: render each case of the JSON object on stdin with the real Helm (as check_renders does)
    and print, as one JSON object, each case's manifest documents (`objects`) and hook documents (`hooks`) or
    the render's error message (`error`). Exit 0 whenever every case was attempted: a refused render is an answer, not a failure."""
    try:
        cases = json.load(sys.stdin)
    except ValueError as e:
        print(f"--render-json: stdin is not JSON: {e}", file=sys.stderr)
        return 2
    if not isinstance(cases, dict) or not all(isinstance(x, dict) for x in cases.values()):
        print("--render-json: stdin must be a JSON object of {case name: values object}", file=sys.stderr)
        return 2
    out = {}
    for case, values in cases.items():
        try:
            release = render(values)
            hooks = [d for h in release.get("hooks") or [] for d in load_docs(h.get("manifest", ""))]
            out[case] = {"objects": load_docs(release.get("manifest", "")), "hooks": hooks, "error": None}
        except helm_sdkpy.HelmError as e:
            out[case] = {"objects": [], "hooks": [], "error": str(e)}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


# ----------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-readme", action="store_true", help="regenerate the values table in charts/pullgate/README.md")
    ap.add_argument("--policy-dir", default=os.environ.get("PULLGATE_RENDERED_POLICY_DIR"),
                    help="write each rendered policy.yaml here (default: $PULLGATE_RENDERED_POLICY_DIR)")
    ap.add_argument("--render-json", action="store_true",
                    help="only render: read {case: values} as JSON on stdin, print {case: {objects, error}} as JSON")
    args = ap.parse_args()
    if args.render_json:
        return render_json()
    out_dir = Path(args.policy_dir) if args.policy_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)

    print(f"helm-sdkpy {helm_sdkpy.get_version()}, chart {CHART.relative_to(ROOT)}", flush=True)
    report = Report()
    check_static(report, args.write_readme)
    print("helm lint", flush=True)
    helm_lint(report, "default values", None)
    for name in PROFILES:
        helm_lint(report, name, profile(name))
    check_renders(report, out_dir)

    print()
    print("summary")
    print(f"  checks passed: {report.passed}")
    print(f"  warnings:      {len(report.warnings)}")
    print(f"  failures:      {len(report.failures)}")
    for f in report.failures:
        print(f"    - {f}")
    if out_dir:
        print(f"  rendered policies: {', '.join(sorted(p.name for p in out_dir.glob('*.policy.yaml')))} in {out_dir}")
    print("chart lint " + ("FAILED" if report.failures else "passed"))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
