#!/usr/bin/env python3
"""`helm lint` of charts/pullgate through helm-sdkpy, with the default values and with each profile
(values-staging.yaml, values-prod.yaml); any message of Severity >= 3 (error) fails. What the chart
renders is checked by tests/chart.rs."""
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

CHART = Path(__file__).resolve().parent.parent / "charts" / "pullgate"
PROFILES = ["values-staging.yaml", "values-prod.yaml"]
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}

try:
    import helm_sdkpy
    import yaml
except ImportError as e:
    sys.exit(f"scripts/helm-lint.py needs {e.name}: the PyPI packages helm-sdkpy (pip's "
             "--ignore-requires-python flag is needed) and pyyaml; .ci/run installs them")


def overlay(base: dict, over: dict) -> dict:
    """A profile over the defaults as Helm coalesces them: maps merge, anything else replaces,
    null deletes. (helm-sdkpy's Lint takes no values, so a profile is linted as a chart copy.)"""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = overlay(out[k], v)
        else:
            out[k] = v
    return out


def lint(label: str, profile: str | None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = CHART
        if profile:
            path = Path(tmp) / "pullgate"
            shutil.copytree(CHART, path)
            merged = overlay(yaml.safe_load((CHART / "values.yaml").read_text()),
                             yaml.safe_load((CHART / profile).read_text()) or {})
            (path / "values.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
        result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(str(path)))
    errors = 0
    for m in result.get("Messages") or []:
        sev = m.get("Severity", 0)
        # helm-sdkpy passes a Go error on as {}: the render in tests/chart.rs shows the message.
        err = m.get("Err") or ("(message lost by helm-sdkpy: cargo test --test chart shows it)" if sev >= 3 else "")
        print(f"helm lint ({label}): {SEVERITY.get(sev, sev)} {m.get('Path', '')} {err}".rstrip())
        errors += sev >= 3
    return errors


print(f"helm-sdkpy {helm_sdkpy.get_version()}")
failed = lint("default values", None) + sum(lint(p, p) for p in PROFILES)
print("helm lint " + ("FAILED" if failed else "passed"))
sys.exit(1 if failed else 0)
