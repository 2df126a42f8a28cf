#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/run.sh: run `virtfs bench` against virtfsd and against diod in the
# same run, on loopback TCP, with the same client, msize, connection count
# and duration, and print a table with both figures and virtfsd/diod.
#
# usage: bench/run.sh [-b BUILD_DIR] [-c CONNS] [-t SECONDS] [-w WORKLOADS]
#                     [-m MSIZE] [-f FILES] [-s SIZE_MIB] [-d TMPDIR]
#                     [--no-diod] [--no-virtfsd] [--keep] [--model M]
#
# --model M: the second column is virtfsd again with
# --export DIR,security_model=M (e.g. mapped-xattr) instead of diod, so
# the cost of a security model shows in one run.
#
# Environment: VIRTFSD, VIRTFS, DIOD override the binaries' paths;
# VIRTFSD_ARGS adds options (e.g. "--sandbox none --seccomp none").
# diod must run as root here (it switches to the attaching user); without
# root the diod column is skipped.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
build=$top/build
conns=4
secs=5
workloads=all
msize=65536      # diod caps msize at 64 KiB: same value for both servers
files=10000
size=256
tmpbase=${TMPDIR:-/tmp}
run_diod=1
run_virtfsd=1
keep=0
model=

usage() {
    sed -n '4,19p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
    -b) build=$2; shift 2 ;;
    -c) conns=$2; shift 2 ;;
    -t) secs=$2; shift 2 ;;
    -w) workloads=$2; shift 2 ;;
    -m) msize=$2; shift 2 ;;
    -f) files=$2; shift 2 ;;
    -s) size=$2; shift 2 ;;
    -d) tmpbase=$2; shift 2 ;;
    --no-diod) run_diod=0; shift ;;
    --no-virtfsd) run_virtfsd=0; shift ;;
    --keep) keep=1; shift ;;
    --model) model=$2; run_diod=0; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage 2 >&2 ;;
    esac
done

virtfs=${VIRTFS:-$build/tools/virtfs/virtfs}
virtfsd=${VIRTFSD:-$build/tools/virtfsd/virtfsd}
diod=${DIOD:-$(command -v diod || echo /usr/sbin/diod)}

[ -x "$virtfs" ] || { echo "run.sh: $virtfs not built" >&2; exit 1; }
if [ "$run_virtfsd" = 1 ] && [ ! -x "$virtfsd" ]; then
    echo "run.sh: $virtfsd not built: virtfsd column skipped" >&2
    run_virtfsd=0
fi
if [ -z "$model" ] && [ "$run_diod" = 1 ] && { [ ! -x "$diod" ] || [ "$(id -u)" != 0 ]; }; then
    echo "run.sh: diod missing or not root: diod column skipped" >&2
    run_diod=0
fi

work=$(mktemp -d "$tmpbase/virtfs-bench.XXXXXX")
pids=""
cleanup() {
    for p in $pids; do
        kill "$p" 2>/dev/null || true
    done
    for p in $pids; do
        wait "$p" 2>/dev/null || true
    done
    if [ "$keep" = 0 ]; then
        rm -rf "$work"
    else
        echo "run.sh: kept $work" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port: ask the kernel via an unbound python-less trick:
# pick from a range and skip ports that answer.
pick_port() {
    p=$(( 20000 + ($$ * 7 + $1 * 131) % 30000 ))
    while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
        p=$((p + 1))
    done 2>/dev/null
    echo "$p"
}

# Wait until the server answers a 9P attach (up to 10 s).
wait_ready() { # addr aname
    i=0
    while ! "$virtfs" -s "$1" -a "$2" -u root --uid 0 -m "$msize" df \
            >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            echo "run.sh: server at $1 did not come up" >&2
            return 1
        fi
        sleep 0.1
    done
}

# run_bench NAME ADDR ANAME PID -> results in $work/NAME.out
run_bench() {
    echo "run.sh: benchmarking $1 ($2, msize $msize, $conns conns," \
         "${secs}s per workload)" >&2
    "$virtfs" -s "$2" -a "$3" -u root --uid 0 -m "$msize" bench \
        -c "$conns" -t "$secs" -w "$workloads" --pid "$4" \
        --files "$files" --size "$size" --dir /bench | tee "$work/$1.out" >&2
}

: >"$work/virtfsd.out"
: >"$work/diod.out"

if [ "$run_virtfsd" = 1 ]; then
    mkdir -p "$work/export-virtfsd"
    port=$(pick_port 1)
    # shellcheck disable=SC2086  # VIRTFSD_ARGS: extra options, split
    "$virtfsd" --export "$work/export-virtfsd" \
        --listen "tcp:127.0.0.1:$port" ${VIRTFSD_ARGS:-} 2>"$work/virtfsd.log" &
    vpid=$!
    pids="$pids $vpid"
    wait_ready "tcp:127.0.0.1:$port" "" || { cat "$work/virtfsd.log" >&2; exit 1; }
    # --sandbox namespace: the serving daemon is the child (pid 1 of its
    # namespace); its CPU is what counts
    # (the listening socket accepts before the sandbox is up: wait for its
    # log line first)
    for _ in $(seq 100); do
        grep -q 'sandbox: ' "$work/virtfsd.log" && break
        sleep 0.05
    done
    cpid=
    read -r cpid _ <"/proc/$vpid/task/$vpid/children" 2>/dev/null || true  # no newline: status 1
    run_bench virtfsd "tcp:127.0.0.1:$port" "" "${cpid:-$vpid}"
fi

other=diod
if [ -n "$model" ]; then
    other=$model
    mkdir -p "$work/export-model"
    port2=$(pick_port 2)
    # shellcheck disable=SC2086  # VIRTFSD_ARGS as for the first column
    "$virtfsd" --export "$work/export-model,security_model=$model" \
        --listen "tcp:127.0.0.1:$port2" ${VIRTFSD_ARGS:-} 2>"$work/virtfsd-model.log" &
    mpid=$!
    pids="$pids $mpid"
    wait_ready "tcp:127.0.0.1:$port2" "" || {
        cat "$work/virtfsd-model.log" >&2; exit 1; }
    # As above: the sandboxed serving daemon is the child; its CPU counts
    # (the parent's was reported, 0.00 ms per 1000 ops).
    for _ in $(seq 100); do
        grep -q 'sandbox: ' "$work/virtfsd-model.log" && break
        sleep 0.05
    done
    cpid=
    read -r cpid _ <"/proc/$mpid/task/$mpid/children" 2>/dev/null || true
    run_bench diod "tcp:127.0.0.1:$port2" "" "${cpid:-$mpid}"
fi

if [ "$run_diod" = 1 ]; then
    mkdir -p "$work/export-diod"
    port2=$(pick_port 2)
    "$diod" -f -n -e "$work/export-diod" -l "127.0.0.1:$port2" \
        -L "$work/diod.log" &
    dpid=$!
    pids="$pids $dpid"
    wait_ready "tcp:127.0.0.1:$port2" "$work/export-diod" || {
        cat "$work/diod.log" >&2; exit 1; }
    run_bench diod "tcp:127.0.0.1:$port2" "$work/export-diod" "$dpid"
fi

# Table: one row per workload and metric; ratio = virtfsd / diod (for
# latency and CPU lower is better, so a ratio < 1 favours virtfsd there).
awk -v conns="$conns" -v secs="$secs" -v msize="$msize" -v other="$other" '
function field(line, key,    n, i, a, kv) {
    n = split(line, a, " ")
    for (i = 2; i <= n; i++) {
        split(a[i], kv, "=")
        if (kv[1] == key) return kv[2]
    }
    return ""
}
FNR == 1 { src = (FILENAME ~ /virtfsd\.out$/) ? "v" : "d" }
{
    wl = $1
    if (!(wl in seen)) { seen[wl] = 1; order[++nwl] = wl }
    line[src, wl] = $0
}
function row(wl, label, key,    v, d, r) {
    v = field(line["v", wl], key); d = field(line["d", wl], key)
    if (v == "" && d == "") return
    r = (v != "" && d != "" && d + 0 != 0) ? sprintf("%.2f", v / d) : "-"
    printf "%-9s %-15s %14s %14s %8s\n", wl, label, \
        (v == "" ? "n/a" : v), (d == "" ? "n/a" : d), r
}
END {
    printf "\nvirtfs bench: %s conns, %s s per workload, msize %s\n\n", \
        conns, secs, msize
    printf "%-9s %-15s %14s %14s %8s\n", "workload", "metric", "virtfsd", \
        other, "ratio"
    for (i = 1; i <= nwl; i++) {
        wl = order[i]
        if (wl == "seqread" || wl == "seqwrite") row(wl, "MiB/s", "MiB/s")
        row(wl, "ops/s", "ops/s")
        row(wl, "p50_us", "p50_us")
        row(wl, "p99_us", "p99_us")
        row(wl, "cpu_ms/kop", "cpu_ms_per_kop")
    }
    print "\nratio = virtfsd/" other ": higher is better for ops/s and MiB/s,"
    print "lower is better for latency and cpu_ms/kop (server CPU per 1000 ops)."
}' "$work/virtfsd.out" "$work/diod.out"
