#!/usr/bin/env bash
# Fails when proto/ does not pass buf lint, or when the committed generated code in
# libs/agent-protocol/src/gen differs from what `make generate` produces.
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/buf lint
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
node_modules/.bin/buf generate --output "$tmp"
if ! diff -r "$tmp/libs/agent-protocol/src/gen" libs/agent-protocol/src/gen >/dev/null; then
  echo "generated code in libs/agent-protocol/src/gen is stale: run \`make generate\` and commit" >&2
  diff -r "$tmp/libs/agent-protocol/src/gen" libs/agent-protocol/src/gen | head -20 >&2
  exit 1
fi
