#!/usr/bin/env bash
# Runs the whole Jest suite and ends with the plain summary line CI reads:
# "N passed, N failed", computed from Jest's own JSON results.
set -uo pipefail
cd "$(dirname "$0")/.."
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
NODE_OPTIONS="${NODE_OPTIONS:-} --experimental-vm-modules --no-warnings=ExperimentalWarning" \
  node node_modules/jest/bin/jest.js --ci --json --outputFile="$results" "$@"
status=$?
node -e '
  const fs = require("node:fs");
  let r = {};
  try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch {}
  const passed = r.numPassedTests ?? 0;
  // Suites that fail to run at all (syntax error, failed setup) count as failures too.
  const failed = (r.numFailedTests ?? 0) + (r.numRuntimeErrorTestSuites ?? 0) + (r.success === undefined ? 1 : 0);
  console.log(`${passed} passed, ${failed} failed`);
' "$results"
exit $status
