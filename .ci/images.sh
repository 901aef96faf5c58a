#!/usr/bin/env bash
# `make images`: builds the two Sigil images from their Dockerfiles (apps/agent/Dockerfile,
# apps/control-plane/Dockerfile) with rootful podman, plus the two small images the real-node
# tests need (a pause image and a busybox workload image), and saves each as a docker-archive
# under $SIGIL_CACHE/images for `ctr images import` (tests/harness/real-node.ts).
#
# No container registry is reachable from this machine, so the test build does not pull the
# Dockerfiles' default public bases: it passes BASE_IMAGE=a distroless-style base assembled here
# from the cached Node 24 binary and Debian's own libraries (.ci/images/base.Containerfile), and
# ARTIFACTS=context, i.e. the compiled dist/ of `make build` (and, for the control plane, its
# production node_modules) instead of compiling inside the image. docs/decisions/015.
#
# Expects dist/ (make build). Idempotent: unchanged inputs cost a few seconds. --quiet: no size table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
CACHE="${SIGIL_CACHE:-$HOME/.cache/sigil}"
TAG="${SIGIL_IMAGE_TAG:-dev}"
QUIET=0
[ "${1:-}" = "--quiet" ] && QUIET=1
log() { printf '[images] %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { echo "make images runs podman as root (rootless podman is not set up on this machine)" >&2; exit 1; }
command -v podman >/dev/null || { echo "podman is missing: run make deps-apt" >&2; exit 1; }
[ -f dist/apps/agent/sigil-agent.cjs ] || { echo "dist/ is missing: run make build" >&2; exit 1; }
[ -x dist/apps/agent/sigil-exec ] || { echo "dist/apps/agent/sigil-exec is missing: make build builds it with Go (go not found?)" >&2; exit 1; }

# Podman's configuration lives in the cache, not /etc: runc (crun refuses this kernel's hybrid
# cgroups), cgroupfs, and explicit ulimits (root here may not raise its own: setrlimit fails).
PODMAN_DIR="$CACHE/podman"
mkdir -p "$PODMAN_DIR"
cat > "$PODMAN_DIR/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
EOF
cat > "$PODMAN_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
runroot = "$PODMAN_DIR/run"
graphroot = "$PODMAN_DIR/storage"
EOF
export CONTAINERS_CONF="$PODMAN_DIR/containers.conf" CONTAINERS_STORAGE_CONF="$PODMAN_DIR/storage.conf"
podman() { command podman --log-level=error "$@"; }

WORK="$CACHE/image-build"
OUT="$CACHE/images"
mkdir -p "$WORK" "$OUT"
NODE="$(command -v node)"
NODE_VERSION="$("$NODE" -p process.versions.node)"

# Copies each file and every shared library it loads (ldd) into rootfs $1, keeping paths.
copy_with_libs() {
  local rootfs="$1"; shift
  local f lib
  for f in "$@"; do
    mkdir -p "$rootfs$(dirname "$f")"
    cp -L "$f" "$rootfs$f"
    for lib in $(ldd "$f" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}'); do
      [ -e "$rootfs$lib" ] && continue
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
  done
}

# $1 tag, $2.. extra files (with their libraries) beside Node.
build_base() {
  local tag="$1"; shift
  podman image exists "localhost/sigil-base:$tag" && return 0
  log "building base image localhost/sigil-base:$tag from Node $NODE_VERSION and Debian's libraries"
  local ctx="$WORK/base-$tag"
  rm -rf "$ctx" && mkdir -p "$ctx/rootfs/nodejs/bin" "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/rootfs/home/nonroot"
  cp -L "$NODE" "$ctx/rootfs/nodejs/bin/node"
  copy_with_libs "$ctx/rootfs" "$NODE" "$@"
  rm -f "$ctx/rootfs$NODE" # copied for its libraries only; the runtime is /nodejs/bin/node
  cp -L /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > "$ctx/rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\nnogroup:x:65534:\n' > "$ctx/rootfs/etc/group"
  chmod 1777 "$ctx/rootfs/tmp"
  chown 65532:65532 "$ctx/rootfs/home/nonroot"
  podman build -q -f .ci/images/base.Containerfile -t "localhost/sigil-base:$tag" "$ctx" >/dev/null
  rm -rf "$ctx"
}

# The control plane's production dependencies (pkcs11js compiled for this Node), once per lockfile.
control_plane_modules() {
  local key; key="$(cat package-lock.json package.json | sha256sum | cut -c1-16)-node$NODE_VERSION"
  local dir="$WORK/control-plane-modules-$key"
  if [ ! -d "$dir/node_modules" ]; then
    log "installing the control plane's production dependencies for its image (once per lockfile)"
    rm -rf "$WORK"/control-plane-modules-* && mkdir -p "$dir.tmp"
    cp package.json package-lock.json "$dir.tmp/"
    (cd "$dir.tmp" && npm --loglevel=error install --omit=dev --omit=optional --no-save --no-audit --no-fund >/dev/null)
    mv "$dir.tmp" "$dir"
  fi
  printf '%s' "$dir"
}

# $1 image name, $2 Dockerfile, $3 context, $4.. more podman build args. Skipped when the
# Dockerfile, the context's content and the arguments are those of the image already built.
build_image() {
  local name="$1" file="$2" ctx="$3"; shift 3
  local inputs stamp="$OUT/$name.inputs"
  inputs="$( { sha256sum "$file"; printf '%s\n' "$@"; (cd "$ctx" && find . -path "${HASH_EXCLUDE:-/none}" -prune -o -type f -print0 | sort -z | xargs -0 sha256sum); } | sha256sum | cut -c1-32)"
  if podman image exists "localhost/$name:$TAG" && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then return 0; fi
  log "building localhost/$name:$TAG ($file)"
  podman build -q --layers -f "$file" -t "localhost/$name:$TAG" "$@" "$ctx" >/dev/null
  printf '%s' "$inputs" > "$stamp"
}

# Saves localhost/$1:$TAG to $OUT/$1.tar unless the archive already holds that image id.
save_archive() {
  local ref="localhost/$1:$TAG" id
  id="$(podman image inspect --format '{{.Id}}' "$ref")"
  [ -f "$OUT/$1.tar" ] && [ "$(cat "$OUT/$1.id" 2>/dev/null)" = "$id" ] && return 0
  rm -f "$OUT/$1.tar" "$OUT/$1.id"
  podman save -q --format docker-archive -o "$OUT/$1.tar.tmp" "$ref"
  mv "$OUT/$1.tar.tmp" "$OUT/$1.tar"
  printf '%s' "$id" > "$OUT/$1.id"
}

build_base "node$NODE_VERSION"
build_base "node$NODE_VERSION-softhsm" /usr/lib/softhsm/libsofthsm2.so

# The agent: its bundles (the agent, and the injector of injected pods once it exists) and sigil-exec.
ctx="$WORK/agent-context"
rm -rf "$ctx" && mkdir -p "$ctx/dist/apps/agent"
cp dist/apps/agent/sigil-*.cjs dist/apps/agent/sigil-exec "$ctx/dist/apps/agent/"
build_image sigil-agent apps/agent/Dockerfile "$ctx" \
  --build-arg "BASE_IMAGE=localhost/sigil-base:node$NODE_VERSION" --build-arg ARTIFACTS=context

# The control plane: dist/ of its app and libs, production node_modules, package.json ("type": "module").
modules="$(control_plane_modules)"
ctx="$WORK/control-plane-context"
rm -rf "$ctx" && mkdir -p "$ctx/dist/apps" "$ctx/var/lib/sigil"
cp package.json "$ctx/"
cp -al "$modules/node_modules" "$ctx/node_modules"
# The lockfile stands for node_modules in the input hash (hashing 240 MB of files would be slow).
HASH_EXCLUDE="./node_modules"
cp -r dist/apps/control-plane "$ctx/dist/apps/"
cp -r dist/libs "$ctx/dist/"
build_image sigil-control-plane apps/control-plane/Dockerfile "$ctx" \
  --build-arg "BASE_IMAGE=localhost/sigil-base:node$NODE_VERSION-softhsm" --build-arg ARTIFACTS=context \
  --label "sigil.modules=$(basename "$modules")"
HASH_EXCLUDE=""

# The node's sandbox image and the workloads' image.
ctx="$WORK/pause-context"
if ! podman image exists "localhost/sigil-pause:$TAG"; then
  rm -rf "$ctx" && mkdir -p "$ctx/rootfs"
  gcc -O2 -static -o "$ctx/rootfs/pause" .ci/images/pause.c
  build_image sigil-pause .ci/images/pause.Containerfile "$ctx"
fi
ctx="$WORK/busybox-context"
if ! podman image exists "localhost/sigil-busybox:$TAG"; then
  rm -rf "$ctx" && mkdir -p "$ctx/rootfs/bin"
  cp /bin/busybox "$ctx/rootfs/bin/busybox"
  for applet in sh cat env printenv sleep ls; do ln -s busybox "$ctx/rootfs/bin/$applet"; done
  build_image sigil-busybox .ci/images/busybox.Containerfile "$ctx"
fi

for image in sigil-agent sigil-control-plane sigil-pause sigil-busybox; do save_archive "$image"; done
# Dangling layers of earlier builds of the same tags.
[ "$(podman images -q --filter dangling=true | wc -l)" -eq 0 ] || podman image prune -f >/dev/null

if [ "$QUIET" -eq 0 ]; then
  echo "images (podman, archives in $OUT):"
  podman images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' --filter reference='localhost/sigil-*'
fi
