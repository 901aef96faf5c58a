#!/usr/bin/env bash
# Builds the pinned Go test binaries once and caches them outside the repository:
# kube-apiserver and helm (every e2e test), kubelet, kube-controller-manager and
# kube-scheduler (the real-node tests, tests/harness/real-node.ts). Idempotent and quiet
# when everything is present.
#
# The Kubernetes binaries cannot be `go install`ed (k8s.io/kubernetes replaces its staging
# modules with v0.0.0), so we build them from a throwaway wrapper module that pins every
# staging module to its published v0.N.M (see ../shared/findings.md).
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.33.13}"
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
CACHE="${SIGIL_CACHE:-$HOME/.cache/sigil}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

log() { printf '[go-tools] %s\n' "$*" >&2; }

command -v go >/dev/null || { echo "go is required to build test binaries (kube-apiserver, helm)" >&2; exit 1; }

# A wrapper module in $1 that requires k8s.io/kubernetes and pins its staging modules;
# $2 is Go source (package main or a tools file) whose imports decide what `go mod tidy` keeps.
kube_wrapper_module() {
  local dir="$1" source="$2" staging="v0.${KUBE_VERSION#v1.}"
  (
    cd "$dir"
    go mod init sigil.local/kube-build >/dev/null 2>&1
    printf '%s\n' "$source" > main.go
    go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
    # Every staging module the kubernetes go.mod lists as v0.0.0 gets its published tag.
    curl -fsSL "$(go env GOPROXY | cut -d, -f1)/k8s.io/kubernetes/@v/$KUBE_VERSION.mod" \
      | awk '/^[[:space:]]*k8s.io\/[^ ]+ v0.0.0$/ {print $1}' \
      | while read -r mod; do go mod edit -replace="$mod=$mod@$staging"; done
    go mod tidy >/dev/null 2>&1 || go mod tidy
  )
}

kube_ldflags() {
  local minor="${KUBE_VERSION#v1.}"
  printf '%s' "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
}

build_kube_apiserver() {
  local out="$BIN/kube-apiserver-$KUBE_VERSION"
  [ -x "$out" ] && return 0
  log "building kube-apiserver $KUBE_VERSION (first run only, several minutes)"
  local work; work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  kube_wrapper_module "$work" 'package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}'
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "$(kube_ldflags)" -o "$out.tmp" . && mv "$out.tmp" "$out")
}

# The node's own binaries, in one `go build` so they share one compile of the common graph
# (most of it is also kube-apiserver's, already in the Go build cache).
NODE_COMMANDS=(kubelet kube-controller-manager kube-scheduler)
build_node_binaries() {
  local missing=() cmd
  for cmd in "${NODE_COMMANDS[@]}"; do [ -x "$BIN/$cmd-$KUBE_VERSION" ] || missing+=("$cmd"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "building ${missing[*]} $KUBE_VERSION for the real-node tests (first run only: 10-20 minutes on 2 cores)"
  local work; work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  # The commands are main packages (not importable); their app packages carry the dependencies.
  kube_wrapper_module "$work" '//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)'
  local pkgs=()
  for cmd in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  (cd "$work" && mkdir out && CGO_ENABLED=0 go build -trimpath -ldflags "$(kube_ldflags)" -o out/ "${pkgs[@]}")
  for cmd in "${missing[@]}"; do mv "$work/out/$cmd" "$BIN/$cmd-$KUBE_VERSION"; done
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
build_node_binaries
ln -sf "kube-apiserver-$KUBE_VERSION" "$BIN/kube-apiserver"
for cmd in "${NODE_COMMANDS[@]}"; do ln -sf "$cmd-$KUBE_VERSION" "$BIN/$cmd"; done
ln -sf "helm-$HELM_VERSION" "$BIN/helm"
