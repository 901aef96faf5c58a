#!/usr/bin/env bash
# Builds sigil-exec (apps/agent/exec-wrapper), the exec wrapper of injected pods, and copies it
# to $1 (default dist/apps/agent/sigil-exec). A static Linux binary for this machine's
# architecture (GOARCH overrides), built once per source and Go version into the cache: later
# runs cost a hash and a copy. .ci/build.mjs calls it, so `make build` and the tests' global
# setup both produce it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-dist/apps/agent/sigil-exec}"
CACHE="${SIGIL_CACHE:-$HOME/.cache/sigil}"
SRC=apps/agent/exec-wrapper

# Status 3: no Go here (.ci/build.mjs then warns and builds the rest).
command -v go >/dev/null || { echo "go is required to build sigil-exec ($SRC)" >&2; exit 3; }
export CGO_ENABLED=0 GOOS=linux GOARCH="${GOARCH:-$(go env GOHOSTARCH)}" GOFLAGS=-buildvcs=false
FLAGS=(-trimpath -ldflags '-s -w')
key="$( { go env GOVERSION GOOS GOARCH; printf '%s\n' "${FLAGS[@]}"; cd "$SRC" && find . -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum | sort | xargs sha256sum; } | sha256sum | cut -c1-16)"
bin="$CACHE/sigil-exec/$key/sigil-exec"
if [ ! -x "$bin" ]; then
  printf '[sigil-exec] building %s for linux/%s\n' "$SRC" "$GOARCH" >&2
  mkdir -p "$(dirname "$bin")"
  # Worktrees share the cache and may build at once: each into a file of its own, then a rename.
  tmp="$(mktemp "$bin.XXXXXX")"
  (cd "$SRC" && go build "${FLAGS[@]}" -o "$tmp" .)
  mv "$tmp" "$bin"
fi
mkdir -p "$(dirname "$OUT")"
cp "$bin" "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
