#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/syscalls.sh: syscalls per op of virtfsd's serving process (sandbox
# and seccomp on, export on /dev/shm, Unix socket, one connection).
# `strace -c -f -p CHILD` over two `virtfs bench` runs (1 s and 4 s);
# the difference in calls divided by the difference in ops, so the
# workload's setup cancels out.  Needs root and strace.
#
# usage: bench/syscalls.sh VIRTFSD VIRTFS WORKLOAD [VIRTFSD_OPTION...]
#   e.g. sudo bench/syscalls.sh build/tools/virtfsd/virtfsd \
#            build/tools/virtfs/virtfs stat
set -u
if [ $# -lt 3 ]; then
    sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
bin=$1
virtfs=$2
wl=$3
shift 3

# one SECS OUT: "OPS SYSCALL CALLS" lines of one run into OUT
one() {
    local secs=$1 out=$2 w spid cpid st ops
    shift 2
    w=$(mktemp -d /dev/shm/sysc.XXXXXX)
    mkdir -p "$w/export/bench/rd"
    (cd "$w/export/bench/rd" && seq -f 'f%06g' 0 2001 | xargs touch)
    "$bin" --export "$w/export" --listen "unix:$w/sock" "$@" 2>"$w/log" &
    spid=$!
    for _ in $(seq 100); do
        grep -q 'sandbox: ' "$w/log" 2>/dev/null && break
        sleep 0.05
    done
    read -r cpid _ <"/proc/$spid/task/$spid/children"
    strace -c -f -p "$cpid" -o "$w/strace" 2>/dev/null &
    st=$!
    sleep 0.5
    "$virtfs" -s "unix:$w/sock" -u root --uid 0 -m 65536 bench -c 1 \
        -t "$secs" -w "$wl" --dir /bench --files 2002 >"$w/bench.out" 2>&1
    sleep 0.2
    kill -INT "$st"
    wait "$st" 2>/dev/null
    kill "$spid"
    wait "$spid" 2>/dev/null
    ops=$(sed -n 's/.* ops=\([0-9]*\).*/\1/p' "$w/bench.out" | head -1)
    # strace -c rows: % seconds usecs/call calls [errors] syscall
    awk -v ops="$ops" 'NF >= 5 && $NF ~ /^[a-z_0-9]+$/ && $1 ~ /^[0-9.]+$/ {
        print ops, $NF, $4 }' "$w/strace" >"$out"
    rm -rf "$w"
}

tmpa=$(mktemp)
tmpb=$(mktemp)
trap 'rm -f "$tmpa" "$tmpb"' EXIT
one 1 "$tmpa" "$@"
one 4 "$tmpb" "$@"
awk 'NR == FNR { ops1 = $1; a[$2] = $3; next }
     { ops2 = $1; b[$2] = $3 }
     END {
         d = ops2 - ops1
         printf "%s: ops in the difference %d; syscalls per op:\n", wl, d
         for (k in b) {
             v = (b[k] - a[k]) / d
             if (v > 0.02) printf "  %-16s %.2f\n", k, v
         }
     }' wl="$wl" "$tmpa" "$tmpb"
