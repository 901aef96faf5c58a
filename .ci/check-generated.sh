#!/usr/bin/env bash
# Fails when proto/ does not pass buf lint, or when committed generated code differs from what
# `make generate` produces: the gRPC types in libs/agent-protocol/src/gen, and the CLI's REST
# types in libs/rest-api/src/gen/openapi.ts (from the control plane's OpenAPI document).
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

# The REST types of the CLI and the console (libs/rest-api/src/gen/openapi.ts) against the control plane's OpenAPI document.
node .ci/openapi.mjs "$tmp/openapi.ts"
if ! diff "$tmp/openapi.ts" libs/rest-api/src/gen/openapi.ts >/dev/null; then
  echo "libs/rest-api/src/gen/openapi.ts is stale (the REST API changed): run \`make generate\` and commit" >&2
  diff "$tmp/openapi.ts" libs/rest-api/src/gen/openapi.ts | head -20 >&2
  exit 1
fi
