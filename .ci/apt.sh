#!/usr/bin/env bash
# Installs the Debian packages Sigil's local stack and tests need, only if missing.
set -euo pipefail
# `.ci/apt.sh real-node` (make deps-apt-node: the real-node tests, `make images`, `make try-node`)
# adds containerd + runc (the node's runtime), podman (builds the OCI images) and busybox-static
# (the tiny workload image), gcc + libc6-dev (the static pause binary).
# chromium + fonts-dejavu-core: the console's end-to-end tests drive Debian's headless Chromium
# (Playwright pointed at it, no browser download).
PKGS=(redis-server softhsm2 opensc etcd-server chromium fonts-dejavu-core)
[ "${1:-}" = "real-node" ] && PKGS=(containerd runc podman busybox-static gcc libc6-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "[apt] installing: ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts these as system services on install; Sigil runs its own instances.
for svc in redis-server etcd containerd; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
