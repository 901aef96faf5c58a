#!/usr/bin/env bash
# Runs pkcs11-tool (opensc) against the development SoftHSM token under $SIGIL_DATA_DIR (.data).
#   hsm/pkcs11-tool.sh --list-objects
set -euo pipefail
data="${SIGIL_DATA_DIR:-.data}"
conf="$data/softhsm/softhsm2.conf"
[ -f "$conf" ] || { echo "no development token at $conf (run \`make up\` once)" >&2; exit 1; }
module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
  [ -f "$m" ] && module="$m" && break
done
[ -n "$module" ] || { echo "SoftHSM is not installed" >&2; exit 1; }
export SOFTHSM2_CONF="$conf"
login=()
case " $* " in *" --list-mechanisms "*|*" -M "*|*" --list-slots "*|*" -L "*) ;; *) login=(--login --pin "$(cat "$data/softhsm/pin")") ;; esac
exec pkcs11-tool --module "$module" --token-label sigil "${login[@]}" "$@"
