#!/usr/bin/env python3
"""Render the pullgate chart with the real Helm (helm-sdkpy), for tests/chart.rs.

stdin: {"case": {"values": {...}, "kubeconfig": "PATH"}, ...}; stdout: {"case": {"manifest": "...",
"hooks": ["...", ...], "notes": "...", "error": null}, ...} where `error` is Helm's message when it
refused the values. helm-sdkpy has no `helm template`, so each case is a real `helm install`
(wait=False) against the API server the kubeconfig names (tests/support/helm_api.rs).
"""
import asyncio
import json
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parent.parent / "charts" / "pullgate"

try:
    import helm_sdkpy
except ImportError:
    sys.exit("scripts/helm-render.py needs the PyPI package helm-sdkpy (pip's "
             "--ignore-requires-python flag is needed); .ci/run installs it")


def render(values: dict, kubeconfig: str) -> dict:
    config = helm_sdkpy.Configuration(namespace="pullgate-system", kubeconfig=kubeconfig)
    try:
        release = asyncio.run(helm_sdkpy.Install(config).run(
            "pullgate", str(CHART), values=values or None, wait=False, timeout=60))
    except helm_sdkpy.HelmError as e:
        return {"manifest": "", "hooks": [], "notes": "", "error": str(e)}
    return {"manifest": release.get("manifest", ""),
            "hooks": [h.get("manifest", "") for h in release.get("hooks") or []],
            "notes": (release.get("info") or {}).get("notes", ""), "error": None}


cases = json.load(sys.stdin)
json.dump({name: render(c["values"], c["kubeconfig"]) for name, c in cases.items()}, sys.stdout)
