#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/vhost-bench.sh: virtfsd's vhost-user path without a guest.  Starts
# virtfsd --vhost-user on a scratch export (sandbox and seccomp as the
# defaults) and runs bench/vhost_bench.c (built as
# BUILD/tests/vhost/vhost_bench) against it: the in-repo front-end plays
# the VMM and the guest driver (memfd RAM, split ring, eventfd kick/call).
#
# usage: bench/vhost-bench.sh [-b BUILD_DIR] [-t SECONDS] [-w WORKLOADS]
#                             [--io BYTES] [-p PASSES]
#
# Prints one key=value line per workload and pass (stat, read, write), with
# the serving process's CPU per op.  VIRTFSD overrides the daemon binary
# (e.g. an older build for a before/after comparison); VIRTFSD_ARGS adds
# options.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=$(dirname "$here")/build
secs=3
wl=stat,read,write
io=65536
passes=1

while [ $# -gt 0 ]; do
    case "$1" in
    -b) build=$2; shift 2 ;;
    -t) secs=$2; shift 2 ;;
    -w) wl=$2; shift 2 ;;
    -p) passes=$2; shift 2 ;;
    --io) io=$2; shift 2 ;;
    -h|--help) sed -n '4,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "vhost-bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

virtfsd=${VIRTFSD:-$build/tools/virtfsd/virtfsd}
tool=$build/tests/vhost/vhost_bench
if [ ! -x "$virtfsd" ] || [ ! -x "$tool" ]; then
    echo "vhost-bench.sh: build virtfsd and vhost_bench first" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/virtfs-vbench.XXXXXX")
vpid=
cleanup() {
    if [ -n "$vpid" ]; then
        kill "$vpid" 2>/dev/null || true
        wait "$vpid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$work/export"
fsize=$((16 * 1024 * 1024))
[ "$io" -gt $((fsize / 4)) ] && fsize=$((io * 4))
head -c "$fsize" /dev/zero >"$work/export/vb.file"

for _ in $(seq "$passes"); do
    # shellcheck disable=SC2086  # VIRTFSD_ARGS: extra options, split
    "$virtfsd" --export "$work/export" --vhost-user "$work/sock" \
        ${VIRTFSD_ARGS:-} 2>"$work/log" &
    vpid=$!
    for _ in $(seq 200); do
        [ -S "$work/sock" ] && break
        sleep 0.05
    done
    for _ in $(seq 100); do # the serving child exists after this line
        grep -q 'sandbox: ' "$work/log" && break
        sleep 0.05
    done
    cpid=
    read -r cpid _ <"/proc/$vpid/task/$vpid/children" 2>/dev/null || true
    "$tool" "$work/sock" -t "$secs" -w "$wl" --io "$io" \
        --file-size "$fsize" --pid "${cpid:-$vpid}" || {
        cat "$work/log" >&2; exit 1; }
    kill "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    vpid=
    rm -f "$work/sock"
done
