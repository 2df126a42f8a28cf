#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/compare.sh: virtfsd against diod and nfs-ganesha (9P) in one run,
# with interleaved passes, and optionally against another virtfsd binary
# (an older build): the same client (`virtfs bench`), msize and duration
# for every server; prints min/median/max per server and the ratio of
# virtfsd's median to the better peer's.
#
# usage: bench/compare.sh [-b BUILD_DIR] [-p PASSES] [-t SECONDS]
#            [-c CONNS[,CONNS...]] [-T tcp[,unix]] [-w WORKLOADS]
#            [-m MSIZE] [-f FILES] [-s SIZE_MIB] [--base OLD_VIRTFSD]
#            [--no-diod] [--no-ganesha] [--no-floor] [-o RESULTS_FILE]
#
# Defaults: 3 passes, 3 s per workload, 1 connection, tcp and unix,
# workloads stat,create,mixed,readdir,seqread,seqwrite, msize 65536
# (diod's cap), 2000 readdir entries, a 64 MiB seqread file.  diod and
# ganesha serve TCP only here (their columns are n/a over Unix) and need
# root.  Each pass starts every server afresh, in a rotated order, so
# that drift of the machine's load spreads over all of them.
# VIRTFSD_ARGS adds options to both virtfsd columns.
# Each pass also measures the floor (BUILD/bench/floor, unless --no-floor):
# an empty server with virtfsd's thread-per-connection loop and the same
# closed-loop clients, small requests and replies (as a metadata RPC) with
# and without a 50 us busy-poll, and with 60 KiB replies or requests (as a
# seqread or seqwrite Tread/Twrite).  No server can go below it here.
# When the floor was built with liburing, the small shape is measured once
# more with its io_uring loop (row "uring": one io_uring_enter per request
# for the reply and the wait, against send + poll + read).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
build=$top/build
passes=3
secs=3
connlist=1
trlist=tcp,unix
workloads=stat,create,mixed,readdir,seqread,seqwrite
msize=65536
files=2000
size=64
base=
use_diod=1
use_ganesha=1
use_floor=1
results=

usage() {
    sed -n '4,26p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
    -b) build=$2; shift 2 ;;
    -p) passes=$2; shift 2 ;;
    -t) secs=$2; shift 2 ;;
    -c) connlist=$2; shift 2 ;;
    -T) trlist=$2; shift 2 ;;
    -w) workloads=$2; shift 2 ;;
    -m) msize=$2; shift 2 ;;
    -f) files=$2; shift 2 ;;
    -s) size=$2; shift 2 ;;
    -o) results=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --no-diod) use_diod=0; shift ;;
    --no-ganesha) use_ganesha=0; shift ;;
    --no-floor) use_floor=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; usage 2 >&2 ;;
    esac
done

virtfs=${VIRTFS:-$build/tools/virtfs/virtfs}
virtfsd=${VIRTFSD:-$build/tools/virtfsd/virtfsd}
diod=$(command -v diod || echo /usr/sbin/diod)
ganesha=$(command -v ganesha.nfsd || echo /usr/bin/ganesha.nfsd)
if [ ! -x "$virtfs" ] || [ ! -x "$virtfsd" ]; then
    echo "compare.sh: build virtfs and virtfsd first ($build)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    use_diod=0
    use_ganesha=0
fi
[ -x "$diod" ] || use_diod=0
floor=$build/bench/floor
[ -x "$floor" ] || use_floor=0
floor_uring=0
if [ "$use_floor" = 1 ] &&
   "$floor" -T unix -c 1 -t 0.05 --uring >/dev/null 2>&1; then
    floor_uring=1
fi
[ -x "$ganesha" ] || use_ganesha=0

servers="virtfsd"
[ -n "$base" ] && servers="$servers base"
[ "$use_diod" = 1 ] && servers="$servers diod"
[ "$use_ganesha" = 1 ] && servers="$servers ganesha"

work=$(mktemp -d "${TMPDIR:-/tmp}/virtfs-compare.XXXXXX")
[ -n "$results" ] || results=$work/results
: >"$results"
: >"$results.floor"
spid=
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
    rm -rf "$work/x"
    [ "$results" = "$work/results" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pick_port() {
    p=$(( 20000 + ($$ * 7 + $1 * 131 + RANDOM) % 30000 ))
    while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
        p=$((p + 1))
    done 2>/dev/null
    echo "$p"
}

wait_ready() { # addr aname
    for _ in $(seq 200); do
        "$virtfs" -s "$1" -a "$2" -u root --uid 0 -m "$msize" df \
            >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "compare.sh: server at $1 did not come up" >&2
    return 1
}

# start SERVER TRANSPORT: sets addr, aname, spid (process to stop) and
# cpid (process whose CPU counts); returns 1 if the server cannot serve
# that transport.
start() {
    rm -rf "$work/x"
    mkdir -p "$work/x/export/bench/rd"
    # the readdir entries are made here, the same for every server
    # (nfs-ganesha 4.3 refuses a Tmknod of a regular file)
    (cd "$work/x/export/bench/rd" &&
        seq -f 'f%06g' 0 $((files - 1)) | xargs touch)
    aname=
    cpid=
    case "$1:$2" in
    virtfsd:*|base:*)
        bin=$virtfsd
        [ "$1" = base ] && bin=$base
        if [ "$2" = tcp ]; then
            addr=tcp:127.0.0.1:$(pick_port 1)
        else
            addr=unix:$work/x/sock
        fi
        # shellcheck disable=SC2086  # VIRTFSD_ARGS: extra options, split
        "$bin" --export "$work/x/export" --listen "$addr" ${VIRTFSD_ARGS:-} \
            2>"$work/x/log" &
        spid=$!
        wait_ready "$addr" "" || return 1
        for _ in $(seq 100); do # the serving child exists after this line
            grep -q 'sandbox: ' "$work/x/log" && break
            sleep 0.05
        done
        read -r cpid _ <"/proc/$spid/task/$spid/children" 2>/dev/null || true
        ;;
    diod:tcp)
        port=$(pick_port 2)
        addr=tcp:127.0.0.1:$port
        aname=$work/x/export
        "$diod" -f -n -e "$work/x/export" -l "127.0.0.1:$port" \
            -L "$work/x/log" &
        spid=$!
        wait_ready "$addr" "$aname" || return 1
        ;;
    ganesha:tcp)
        port=$(pick_port 3)
        addr=tcp:127.0.0.1:$port
        aname=$work/x/export
        cat >"$work/x/ganesha.conf" <<EOF
NFS_CORE_PARAM { Protocols = 4, 9P; NFS_Port = $(pick_port 4);
                 Enable_NLM = false; Enable_RQUOTA = false; }
NFSV4 { Graceless = true; }
_9P { _9P_TCP_Port = $port; _9P_TCP_Msize = $((msize > 65560 ? msize : 65560)); }
EXPORT { Export_Id = 1; Path = $work/x/export; Pseudo = $work/x/export;
         Protocols = 9P; Access_Type = RW; Squash = No_Root_Squash;
         FSAL { Name = VFS; } }
LOG { Default_Log_Level = WARN; }
EOF
        "$ganesha" -F -f "$work/x/ganesha.conf" -L "$work/x/log" \
            -p "$work/x/pid" -N NIV_WARN &
        spid=$!
        wait_ready "$addr" "$aname" || return 1
        ;;
    *)
        return 1 ;;
    esac
    cpid=${cpid:-$spid}
    return 0
}

stop() {
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    spid=
}

echo "compare.sh: servers: $servers; $passes passes; conns $connlist;" \
     "transports $trlist; ${secs}s per workload; msize $msize" >&2
for pass in $(seq "$passes"); do
    # rotate the order of the servers from pass to pass
    read -r -a sv <<<"$servers"
    order=
    for i in $(seq 0 $(( ${#sv[@]} - 1 ))); do
        order="$order ${sv[$(( (i + pass - 1) % ${#sv[@]} ))]}"
    done
    for conns in ${connlist//,/ }; do
        for tr in ${trlist//,/ }; do
            for s in $order; do
                start "$s" "$tr" || { stop; continue; }
                echo "compare.sh: pass $pass $s $tr $conns conn(s)" >&2
                "$virtfs" -s "$addr" -a "$aname" -u root --uid 0 -m "$msize" \
                    bench -c "$conns" -t "$secs" -w "$workloads" \
                    --pid "$cpid" --files "$files" --size "$size" \
                    --dir /bench 2>>"$work/bench.err" |
                    sed "s/^/$s $tr $pass /" >>"$results" || true
                stop
            done
            [ "$use_floor" = 1 ] || continue
            echo "compare.sh: pass $pass floor $tr $conns conn(s)" >&2
            io=$(( (msize - 24) / 4096 * 4096 ))
            shapes="small:32:160:0 small:32:160:50"
            [ "$floor_uring" = 0 ] || shapes="$shapes uring:32:160:0:--uring"
            case ",$workloads," in *,seqread,*)
                shapes="$shapes seqread:32:$io:50" ;; esac
            case ",$workloads," in *,seqwrite,*)
                shapes="$shapes seqwrite:$io:160:50" ;; esac
            for sh in $shapes; do
                IFS=: read -r name rq rp sp io_opt <<<"$sh"
                # shellcheck disable=SC2086 # io_opt: empty or --uring
                "$floor" -T "$tr" -c "$conns" -t "$secs" --req "$rq" \
                    --reply "$rp" --spin "$sp" $io_opt 2>>"$work/bench.err" |
                    sed "s/^/$name spin=$sp $pass /" >>"$results.floor" || true
            done
        done
    done
done

# Table: per workload, transport and connection count, the median (min-max)
# of each server; ratio = virtfsd median / best peer median (base excluded).
# awk helpers of both tables: field(KEY) of a key=value line (from field
# 5), med(LIST) the median of a space-separated list (lo, hi: its range)
# shellcheck disable=SC2016  # awk code: no shell expansion wanted
awk_lib='
function field(key,    i, kv) {
    for (i = 5; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == key) return kv[2]
    }
    return ""
}
function med(list,    n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++)
        for (j = i + 1; j <= n; j++)
            if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    lo = a[1]; hi = a[n]
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}'
awk "$awk_lib"'
{
    srv = $1; tr = $2; wl = $4
    conns = field("conns")
    key = wl " " tr " c" conns
    if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
    if (!(srv in sseen)) { sseen[srv] = 1; srvs[++ns] = srv }
    m = (wl == "seqread" || wl == "seqwrite") ? "MiB/s" : "ops/s"
    if (wl == "readdir") m = "ops/s"
    v[key, srv, "tp"] = v[key, srv, "tp"] " " field(m)
    v[key, srv, "p50"] = v[key, srv, "p50"] " " field("p50_us")
    v[key, srv, "cpu"] = v[key, srv, "cpu"] " " field("cpu_ms_per_kop")
}
END {
    printf "%-22s %-6s", "workload/transport", "metric"
    for (i = 1; i <= ns; i++) printf " %24s", srvs[i]
    printf " %7s %7s\n", "ratio", "vs_base"
    for (k = 1; k <= nk; k++) {
        split("tp p50 cpu", ms, " ")
        for (mi = 1; mi <= 3; mi++) {
            mm = ms[mi]; best = ""; mine = ""; basev = ""
            printf "%-22s %-6s", keys[k], mm
            for (i = 1; i <= ns; i++) {
                l = v[keys[k], srvs[i], mm]
                if (l == "" || l ~ /^ *$/) { printf " %24s", "n/a"; continue }
                x = med(l)
                printf " %24s", sprintf("%.4g (%.4g-%.4g)", x, lo, hi)
                if (srvs[i] == "virtfsd") mine = x
                else if (srvs[i] == "base") basev = x
                else {
                    if (best == "" || (mm == "tp" ? x > best : x < best)) best = x
                }
            }
            if (mine != "" && best != "" && best + 0 != 0 && mine + 0 != 0)
                printf " %7.2f", mm == "tp" ? mine / best : best / mine
            else
                printf " %7s", "-"
            if (mine != "" && basev != "" && basev + 0 != 0 && mine + 0 != 0)
                printf " %7.2f\n", mm == "tp" ? mine / basev : basev / mine
            else
                printf " %7s\n", "-"
        }
    }
    print "\ntp: ops/s (stat, create, mixed, readdir listings) or MiB/s (seq*);"
    print "p50: latency of one op in us; cpu: server CPU ms per 1000 ops."
    print "median (min-max) over the passes; ratio: virtfsd against the better"
    print "peer (diod, ganesha), vs_base: virtfsd against --base; > 1 favours"
    print "virtfsd for every metric."
}' "$results"
if [ -s "$results.floor" ]; then
    awk "$awk_lib"'
{
    key = sprintf("%-9s %-7s %-4s c%s", $1, $2, field("tr"), field("conns"))
    if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
    rt[key] = rt[key] " " field("rtt/s")
    mb[key] = mb[key] " " field("MiB/s")
    p5[key] = p5[key] " " field("p50_us")
    cpu[key] = cpu[key] " " field("cpu_us_per_rtt")
}
END {
    print "\nfloor: an empty server, same loop and clients (bench/floor), medians"
    printf "%-30s %10s %9s %8s %12s\n", "shape spin transport conns", \
        "rtt/s", "MiB/s", "p50_us", "cpu_us/rtt"
    for (k = 1; k <= nk; k++)
        printf "%-30s %10.0f %9.1f %8.1f %12.2f\n", keys[k], med(rt[keys[k]]), \
            med(mb[keys[k]]), med(p5[keys[k]]), med(cpu[keys[k]])
    print "small: 32-byte requests, 160-byte replies (a metadata RPC; a stat"
    print "op is 3 of them, create 4-5); seqread/seqwrite: the I/O size;"
    print "uring: the small shape served by an io_uring loop (bench/floor --uring)."
}' "$results.floor"
fi
echo "compare.sh: raw results in $results" >&2
