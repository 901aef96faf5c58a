#!/usr/bin/env bash
# Undoes everything a real node (tests/harness/real-node.ts) did to this machine, from what it
# recorded in its directory: containers (runc), processes (process groups, containerd shims),
# mounts under the directory, the pod cgroups, kernel settings the kubelet changed, and the few
# paths it had to create outside the directory. Written in shell so that it can run when the
# Node process that started the node is gone (killed test, killed Jest worker).
#
#   real-node-cleanup.sh DIR              clean up DIR's node now
#   real-node-cleanup.sh --watch PID DIR  wait until PID exits, then clean up (started detached by the harness)
#   real-node-cleanup.sh --leftovers      clean up every node whose owner process is gone
set -uo pipefail

PREFIX="${TMPDIR:-/tmp}/sigil-node-"

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

clean() {
  local dir="$1"
  [ -f "$dir/owner" ] || return 0
  # 1. The daemons' process groups (the kubelet first of all, which would restart containers).
  local pg pids
  if [ -f "$dir/pgids" ]; then
    while read -r pg; do [ -n "$pg" ] && kill -TERM -- "-$pg" 2>/dev/null; done < "$dir/pgids"
    for _ in $(seq 50); do
      pids=""; while read -r pg; do [ -n "$pg" ] && kill -0 -- "-$pg" 2>/dev/null && pids=1; done < "$dir/pgids"
      [ -z "$pids" ] && break; sleep 0.1
    done
    while read -r pg; do [ -n "$pg" ] && kill -KILL -- "-$pg" 2>/dev/null; done < "$dir/pgids"
  fi
  # 2. Containers, by the runc state of this node's containerd (its Root option): nothing restarts them now.
  local runc_root="$dir/runc/k8s.io" id
  if [ -d "$runc_root" ]; then
    for id in $(runc --root "$runc_root" list -q 2>/dev/null); do
      runc --root "$runc_root" kill "$id" KILL >/dev/null 2>&1
      runc --root "$runc_root" delete --force "$id" >/dev/null 2>&1
    done
  fi
  # 3. Anything else naming this directory: containerd shims.
  local f
  for f in /proc/[0-9]*/cmdline; do
    grep -qsF -- "$dir/" "$f" || continue
    grep -qsF -e real-node-cleanup -e grep "$f" && continue # this script, its subshells, grep itself
    pid="${f#/proc/}"; kill -KILL "${pid%/cmdline}" 2>/dev/null
  done
  sleep 0.2
  # 4. Mounts under the directory (kubelet volumes, container root filesystems, sandbox shm), deepest first.
  awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
  # 5. Paths created outside the directory (the kubepods cgroups, kubelet's fixed directories), last created first.
  if [ -f "$dir/created" ]; then
    tac "$dir/created" | while read -r p; do
      case "$p" in
        /sys/fs/cgroup/*) [ -d "$p" ] && find "$p" -depth -type d -exec rmdir {} + 2>/dev/null ;;
        /*) rm -rf -- "$p" ;;
      esac
    done
  fi
  # 6. Kernel settings the kubelet changed, back to what they were.
  if [ -f "$dir/sysctl" ]; then
    while read -r key value; do [ -n "$key" ] && echo "$value" > "$key" 2>/dev/null; done < "$dir/sysctl"
  fi
  rm -f "$dir/owner" # no longer a node: nothing above is left to undo
  # Removing the image store takes a while on a busy disk; nobody needs to wait for it.
  [ "${SIGIL_KEEP_TEST_DIR:-}" = "1" ] || (rm -rf -- "$dir" >/dev/null 2>&1 &)
}

case "${1:-}" in
  --watch)
    owner="$2"; dir="$3"
    while alive "$owner" && [ -f "$dir/owner" ]; do sleep 1; done
    clean "$dir"
    ;;
  --leftovers)
    for dir in "$PREFIX"*; do
      [ -f "$dir/owner" ] || continue
      alive "$(cat "$dir/owner")" && continue
      echo "[real-node] cleaning up a node left behind by a killed run: $dir" >&2
      clean "$dir"
    done
    ;;
  "") echo "usage: $0 DIR | --watch PID DIR | --leftovers" >&2; exit 2 ;;
  *) clean "$1" ;;
esac
