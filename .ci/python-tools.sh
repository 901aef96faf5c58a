#!/usr/bin/env bash
# Installs the pinned Python test tools (schemathesis, the OpenAPI fuzzer of
# tests/e2e/openapi-fuzz.e2e-spec.ts) into a venv in the cache, outside the repository.
# Idempotent and quiet when the pinned version is already there.
set -euo pipefail

SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
CACHE="${SIGIL_CACHE:-$HOME/.cache/sigil}"
VENV="$CACHE/venv-schemathesis"
STAMP="$VENV/.sigil-schemathesis-$SCHEMATHESIS_VERSION"

[ -f "$STAMP" ] && [ -x "$VENV/bin/st" ] && exit 0

PYTHON="${PYTHON:-$(command -v python3 || true)}"
[ -n "$PYTHON" ] || { echo "python3 (>= 3.9, with venv) is required for the OpenAPI fuzz test" >&2; exit 1; }

echo "[python-tools] installing schemathesis $SCHEMATHESIS_VERSION into $VENV" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
touch "$STAMP"
