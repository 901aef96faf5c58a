#!/usr/bin/env bash
# Builds the pinned Go test binaries (kube-apiserver, helm) once and caches them
# outside the repository. Idempotent and quiet when everything is present.
#
# kube-apiserver cannot be `go install`ed (k8s.io/kubernetes replaces its staging
# modules with v0.0.0), so we build it from a throwaway wrapper module that pins
# every staging module to its published v0.N.M (see ../shared/findings.md).
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.33.13}"
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
CACHE="${SIGIL_CACHE:-$HOME/.cache/sigil}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

log() { printf '[go-tools] %s\n' "$*" >&2; }

command -v go >/dev/null || { echo "go is required to build test binaries (kube-apiserver, helm)" >&2; exit 1; }

build_kube_apiserver() {
  local out="$BIN/kube-apiserver-$KUBE_VERSION"
  [ -x "$out" ] && return 0
  log "building kube-apiserver $KUBE_VERSION (first run only, several minutes)"
  local minor="${KUBE_VERSION#v1.}"          # 33.13
  local staging="v0.$minor"                   # v0.33.13
  local work; work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  (
    cd "$work"
    go mod init sigil.local/kube-apiserver-build >/dev/null 2>&1
    cat > main.go <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
GO
    go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
    # Every staging module the kubernetes go.mod lists as v0.0.0 gets its published tag.
    curl -fsSL "$(go env GOPROXY | cut -d, -f1)/k8s.io/kubernetes/@v/$KUBE_VERSION.mod" \
      | awk '/^[[:space:]]*k8s.io\/[^ ]+ v0.0.0$/ {print $1}' \
      | while read -r mod; do go mod edit -replace="$mod=$mod@$staging"; done
    go mod tidy >/dev/null 2>&1 || go mod tidy
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
    ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
    CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out.tmp" .
    mv "$out.tmp" "$out"
  )
}

build_helm() {
  local out="$BIN/helm-$HELM_VERSION"
  [ -x "$out" ] && return 0
  log "building helm $HELM_VERSION (first run only)"
  local major="${HELM_VERSION%%.*}"
  GOBIN="$CACHE/gobin-tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/$major/cmd/helm@$HELM_VERSION"
  mv "$CACHE/gobin-tmp/helm" "$out"
  rmdir "$CACHE/gobin-tmp" 2>/dev/null || true
}

build_kube_apiserver
build_helm
ln -sf "kube-apiserver-$KUBE_VERSION" "$BIN/kube-apiserver"
ln -sf "helm-$HELM_VERSION" "$BIN/helm"
