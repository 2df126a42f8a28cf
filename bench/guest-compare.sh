#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The same guest workload over two virtio-9p servers, in one run, with the
# same QEMU (the trixie chroot's QEMU 11, see scripts/trixie-qemu.sh), the
# same guest kernel and the same mount options:
#
#   virtfsd   virtfsd --vhost-user, QEMU vhost-user-test-device-pci
#             (virtio-id 9, vq_size 1024)
#   qemu      QEMU's built-in server: -fsdev local,security_model=none
#             -device virtio-9p-pci
#
# Guest: mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,uname=root
# with cache=none (the default) and/or cache=mmap; 512 MiB memfd-backed RAM
# (share=on) for both.  Steps, timed inside the guest from /proc/uptime:
# create N files (default 1000), stat them, read them (cat), dd write
# 64 MiB conv=fsync, dd read 64 MiB after drop_caches, ls -lR, find,
# rm -rf.  Plus the wall time from QEMU start to power-off.
#
#   bench/guest-compare.sh [--kernel 6.1|6.12]... [--cache none|mmap]...
#                          [--files N] [--runs N] [--virtfsd PATH] [--local]
#
# --local adds a third configuration: the same steps on the guest's own
# tmpfs, no 9P at all.  That is the guest's floor: what the steps cost the
# guest itself (fork and exec of each command, its VFS, TCG's emulation),
# which no server can remove; the table then also shows QEMU / tmpfs, the
# most any server could gain over QEMU's on that step.
#
# With --runs N each configuration runs N times (alternating) and the table
# shows the median.  TCG on a small host varies by +-30 % run to run.
# Environment: VIRTFSD, VIRTFS_BUILD_DIR (default build), VIRTFS_GUEST_CACHE.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/guest/lib.sh
. "$top/tests/guest/lib.sh"
# shellcheck source=../tests/guest/vhost-lib.sh
. "$top/tests/guest/vhost-lib.sh"

kernels=()
caches=()
files=1000
runs=1
local_fs=0
virtfsd=${VIRTFSD:-}
while [ $# -gt 0 ]; do
    case $1 in
        --kernel) kernels+=("$2"); shift 2 ;;
        --cache) case $2 in none|mmap) caches+=("$2") ;;
                 *) echo "guest-compare: --cache none|mmap" >&2; exit 2 ;; esac
                 shift 2 ;;
        --files) files=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --virtfsd) virtfsd=$2; shift 2 ;;
        --local) local_fs=1; shift ;;
        -h|--help) sed -n '3,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "guest-compare: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
[ ${#caches[@]} -gt 0 ] || caches=(none)
case $files in ''|*[!0-9]*) echo "guest-compare: --files N" >&2; exit 2 ;; esac
die() { echo "guest-compare: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root"

MSIZE=512000
MEM=512M
TAG=vfsbench

if [ -z "$virtfsd" ]; then
    virtfsd=${VIRTFS_BUILD_DIR:-$top/build}/tools/virtfsd/virtfsd
fi
[ -x "$virtfsd" ] || die "no virtfsd at $virtfsd (build it, or set VIRTFSD)"
virtfsd=$(realpath "$virtfsd")
vhost_qemu_available -q || die "no QEMU with vhost-user-test-device-pci (scripts/trixie-qemu.sh)"
export VIRTFS_GUEST_QEMU=$VHOST_QEMU

work=$(mktemp -d /tmp/virtfs-guest-compare.XXXXXX)
vpid=
cleanup() {
    vhost_virtfsd_stop "$vpid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export VIRTFS_GUEST_LOGDIR=$work/logs

# the job's body; run_one puts TAG, MSIZE, FILES and CACHE before it
body=$work/body.sh
cat > "$body" <<'EOF'
. /job/guest-lib.sh   # t_start/t_end ("T SECONDS STATUS NAME"), q
Q_TIMEOUT=600
if [ "$LOCAL" = 1 ]; then
    mount -t tmpfs -o size=256m,mode=0755 vfslocal /mnt || exit 1
else
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=$MSIZE,uname=root,cache=$CACHE $TAG /mnt || exit 1
fi
grep " /mnt 9p " /proc/mounts | sed 's/^/# /'
dd if=/dev/urandom of=/tmp/src bs=1M count=64 2>/dev/null
mkdir /mnt/w
t_start; q sh -c 'i=1; while [ $i -le '"$FILES"' ]; do echo "file $i" > /mnt/w/f$i || exit 1; i=$((i + 1)); done'; t_end create $?
echo 3 > /proc/sys/vm/drop_caches
t_start; q sh -c 'cd /mnt/w && stat -c %s -- f* > /dev/null'; t_end stat $?
echo 3 > /proc/sys/vm/drop_caches
t_start; q sh -c 'cd /mnt/w && cat -- f* > /dev/null'; t_end read $?
t_start; q dd if=/tmp/src of=/mnt/big bs=1M conv=fsync 2>/dev/null; t_end ddwrite $?
echo 3 > /proc/sys/vm/drop_caches
t_start; q dd if=/mnt/big of=/tmp/back bs=1M 2>/dev/null; t_end ddread $?
cmp /tmp/src /tmp/back || echo "T 0 1 cmp"
rm -f /tmp/back
echo 3 > /proc/sys/vm/drop_caches
t_start; n=$(q ls -lR /mnt | wc -l); t_end lslR $?
echo "# ls -lR: $n lines"
echo 3 > /proc/sys/vm/drop_caches
t_start; n=$(q find /mnt | wc -l); t_end find $?
echo "# find: $n names"
[ "$n" -eq $((FILES + 3)) ] || echo "T 0 1 findcount"
t_start; q rm -rf /mnt/w /mnt/big; t_end rmrf $?
umount /mnt
EOF

# run_one KERNEL CACHE CONFIG RUN: one boot; appends
# "kernel/cache|config|step|secs|st" lines to $work/results.
run_one() {
    local k=$1 c=$2 cfg=$3 n=$4
    local exp=$work/exp-$k-$cfg-$n t0 rc out job=$work/job-$c-$cfg.sh
    local is_local=0
    [ "$cfg" = local ] && is_local=1
    mkdir -p "$exp"
    { echo "TAG=$TAG MSIZE=$MSIZE FILES=$files CACHE=$c LOCAL=$is_local"; cat "$body"; } > "$job"
    local -a qa=(-q -object -q "memory-backend-memfd,id=mem,size=$MEM,share=on"
                 -q -machine -q memory-backend=mem)
    if [ "$cfg" = virtfsd ]; then
        local sock=$work/vu-$k.sock
        vhost_virtfsd_start "$virtfsd" "$sock" "$exp" "$TAG" || return 1
        vpid=$VHOST_VIRTFSD_PID
        qa=()
        vhost_guest_qargs "$sock" "$TAG" "$MEM"
        qa=("${VHOST_QARGS[@]}")
    elif [ "$cfg" = qemu ]; then
        qa+=(-q -fsdev -q "local,id=fs0,path=$exp,security_model=none"
             -q -device -q "virtio-9p-pci,fsdev=fs0,mount_tag=$TAG")
    fi
    out=$work/out-$k-$c-$cfg-$n
    t0=$(date +%s.%N)
    guest_run -n "$cfg-$k-$c-$n" -t $((400 + files / 10)) -m "$MEM" -f "$top/tests/guest/guest-lib.sh" \
        "${qa[@]}" "$job" > "$out"
    rc=$?
    local wall
    wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ "$cfg" = virtfsd ]; then
        if grep -qiE ' (error|warn[a-z]*):' "$work/vu-$k.sock.log"; then
            grep -iE ' (error|warn[a-z]*):' "$work/vu-$k.sock.log" | sed "s/^/# $k virtfsd: /" | head -n 5 >&2
        fi
        vhost_virtfsd_stop "$vpid"
        vpid=
    fi
    sed -n 's/^# /# '"$k $c $cfg"': /p' "$out" >&2
    awk -v k="$k/$c" -v c="$cfg" '$1 == "T" { print k "|" c "|" $4 "|" $2 "|" $3 }' "$out" >> "$work/results"
    echo "$k/$c|$cfg|boot|$wall|$rc" >> "$work/results"
    echo "# $k cache=$c $cfg run $n: job status $rc, boot to poweroff $wall s" >&2
    rm -rf "$exp"
}

for k in "${kernels[@]}"; do
    guest_image "$k" || die "guest image $k"
    echo "# kernel $k: $(cat "$GUEST_IMAGE/kver")" >&2
    for c in "${caches[@]}"; do
        for n in $(seq 1 "$runs"); do
            if [ $((n % 2)) = 1 ]; then order="virtfsd qemu"; else order="qemu virtfsd"; fi
            [ "$local_fs" = 1 ] && order="$order local"
            for cfg in $order; do run_one "$k" "$c" "$cfg" "$n"; done
        done
    done
done

# median of the runs; a step that failed (status != 0) in any run shows "FAIL"
med() {
    awk -F'|' -v k="$1" -v c="$2" -v s="$3" '
        $1 == k && $2 == c && $3 == s { v[n++] = $4; if ($5 != 0) bad = 1 }
        END {
            if (n == 0) { print "-"; exit }
            if (bad) { print "FAIL"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            printf "%.2f", (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
        }' "$work/results"
}

echo
echo "Guest workload, virtio-9p, msize $MSIZE, $files files, $MEM guest, $(guest_accel_args | sed 's/-accel //'), $VHOST_QEMU_VERSION"
echo "seconds inside the guest (/proc/uptime); median of $runs run(s); boot = QEMU start to power-off (wall)"
steps=(create stat read ddwrite ddread lslR find rmrf boot)
declare -A label=([create]="create $files files" [stat]="stat $files files"
                  [read]="read $files files (cat)"
                  [ddwrite]="dd write 64 MiB conv=fsync" [ddread]="dd read 64 MiB (cold)"
                  [lslR]="ls -lR" [find]="find" [rmrf]="rm -rf" [boot]="boot to poweroff (wall)")
for k in "${kernels[@]}"; do
    for c in "${caches[@]}"; do
        echo
        if [ "$local_fs" = 1 ]; then
            printf '| %-28s | %14s | %14s | %8s | %11s | %11s |\n' "kernel $k, cache=$c" "virtfsd vhost" "QEMU virtio-9p" "ratio" "guest tmpfs" "QEMU/tmpfs"
            printf '|%s|%s|%s|%s|%s|%s|\n' "------------------------------" "----------------" "----------------" "----------" "-------------" "-------------"
        else
            printf '| %-28s | %14s | %14s | %8s |\n' "kernel $k, cache=$c" "virtfsd vhost" "QEMU virtio-9p" "ratio"
            printf '|%s|%s|%s|%s|\n' "------------------------------" "----------------" "----------------" "----------"
        fi
        for s in "${steps[@]}"; do
            a=$(med "$k/$c" virtfsd "$s")
            b=$(med "$k/$c" qemu "$s")
            r=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }')
            if [ "$local_fs" = 1 ]; then
                l=$(med "$k/$c" local "$s")
                m=$(awk -v b="$b" -v l="$l" 'BEGIN { if (b + 0 > 0 && l + 0 > 0) printf "%.2f", b / l; else print "-" }')
                printf '| %-28s | %14s | %14s | %8s | %11s | %11s |\n' "${label[$s]}" "$a" "$b" "$r" "$l" "$m"
            else
                printf '| %-28s | %14s | %14s | %8s |\n' "${label[$s]}" "$a" "$b" "$r"
            fi
        done
    done
done
echo
echo "ratio = virtfsd / QEMU (below 1: virtfsd faster)"
[ "$local_fs" = 1 ] && echo "QEMU/tmpfs = the most a server could be faster than QEMU's on that step (the guest's own cost is the rest)"
if [ "$runs" -gt 1 ]; then
    echo "per-run values (s):"
    awk -F'|' '{ v[$1 " " $2 " " $3] = v[$1 " " $2 " " $3] " " $4 }
               END { for (x in v) print "  " x ":" v[x] }' "$work/results" | sort
fi
if awk -F'|' '$5 != 0 { bad = 1 } END { exit !bad }' "$work/results"; then
    echo "guest-compare: some steps failed (FAIL above)" >&2
    exit 1
fi
