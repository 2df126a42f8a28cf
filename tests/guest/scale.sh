#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The scale guest suite (issue 9): a real Linux 9p client walks a large tree
# served by a virtfsd with a small descriptor limit, while a second guest
# writes and reads on the same export.
#
#   tests/guest/scale.sh [--full] [--kernel 6.1|6.12]... [--variant V]...
#                        [--files N] [--rlimit N] [--keep] [--build DIR]
#
# Runs (CI: 6.1 with unpriv, 6.12 with prefer; --full, or --kernel and
# --variant: every kernel with every variant), V = prefer: virtfsd as root
# with file handles (its default); never: as root with
# --inode-file-handles=never, nodes found again by name; unpriv: virtfsd
# started as the host user nobody (setpriv, no capabilities) with its
# default sandbox (a user namespace of its own ids), so no file handles are
# possible and nodes are found again by name; the export and the socket
# directory belong to nobody, and QEMU (root) connects to the daemon's 0600
# sockets:
#   - the host makes a tree of N distinct files (CI: 6,000, --full: 200,000)
#     in 100 to 200 directories;
#   - virtfsd --rlimit-nofile R (CI: 256, --full: 1024) serves it on three
#     listeners; the host samples the serving process's /proc/PID/fd;
#   - guest A mounts with cache=loose and runs `find` and `ls -lR` over the
#     whole tree: no error, exactly N files; then, through a second mount
#     (cache=none, its own connection), holds a file open while opening more
#     files than the budget (so the server closes that file's descriptor),
#     the host renames the file and puts another under its name, and the
#     held descriptor must give the renamed file or ESTALE, never the new
#     file (progs/holdopen.c; with file handles: the renamed file);
#   - guest B (another VM, its own connection, cache=none) writes and reads
#     back files on the same export all the while;
#   - the descriptor count never exceeded R, and the stats (SIGUSR1) show
#     node descriptors and open files reclaimed, reopens by handle (prefer)
#     or by name (never, unpriv), and no EMFILE/ENFILE; for unpriv the
#     serving process runs as nobody with no capabilities.
#
# Prints "ok - ..." / "not ok - ..." and "N passed, N failed"; exits 1 on a
# failure.  Needs root and QEMU (as tests/guest/run.sh).
set -uo pipefail
shopt -s lastpipe

here=$(cd "$(dirname "$0")" && pwd)
kernels=()
variants=()
full=0
files=
rlimit=
keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --full) full=1; shift ;;
        --kernel) kernels+=("$2"); shift 2 ;;
        --variant) variants+=("$2"); shift 2 ;;
        --files) files=$2; shift 2 ;;
        --rlimit) rlimit=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --build) export VIRTFS_BUILD_DIR=$2; shift 2 ;;
        -h|--help) sed -n '3,39p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "scale.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
# KERNEL:VARIANT pairs to run
runs=()
if [ ${#kernels[@]} = 0 ] && [ ${#variants[@]} = 0 ] && [ $full = 0 ]; then
    runs=(6.1:unpriv 6.12:prefer)
else
    [ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
    [ ${#variants[@]} -gt 0 ] || variants=(prefer never unpriv)
    for v in "${variants[@]}"; do
        case $v in
            prefer|never|unpriv) ;;
            *) echo "scale.sh: unknown variant $v (prefer, never, unpriv)" >&2; exit 2 ;;
        esac
    done
    for k in "${kernels[@]}"; do
        for v in "${variants[@]}"; do runs+=("$k:$v"); done
    done
fi
if [ $full = 1 ]; then
    files=${files:-200000}; rlimit=${rlimit:-1024}; nopen=2000; mem=1G; tmo=3000
else
    files=${files:-6000}; rlimit=${rlimit:-256}; nopen=600; mem=512M; tmo=900
fi

# shellcheck source=lib.sh
. "$here/lib.sh"

# ok, nok, check, count_guest, summary: lib.sh

if [ "$(id -u)" != 0 ]; then
    nok "scale guest suite needs root"
    summary
    exit 1
fi

t_start=$SECONDS
work=$(mktemp -d /var/tmp/virtfs-guest-scale.XXXXXX)
bin=$work/bin
mkdir -p "$bin"
server=
bgpids=()
cleanup() {
    local p
    [ -n "$server" ] && guest_server_stop "$server"
    for p in "${bgpids[@]}"; do kill "$p" 2>/dev/null; done
    if [ $keep = 1 ]; then echo "# kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

if [ ! -x "$VIRTFS_SERVER" ]; then
    echo "# building virtfsd in $VIRTFS_BUILD_DIR"
    { [ -f "$VIRTFS_BUILD_DIR/build.ninja" ] || meson setup "$VIRTFS_BUILD_DIR"; } >/dev/null &&
        ninja -C "$VIRTFS_BUILD_DIR" tools/virtfsd/virtfsd >/dev/null
fi
[ -x "$VIRTFS_SERVER" ] || { nok "server $VIRTFS_SERVER is missing"; summary; exit 1; }
guest_static_build "$bin/virtfs-mount" "$VIRTFS_SRC_DIR/tools/virtfs-mount/virtfs-mount.c" &&
guest_static_build "$bin/holdopen" "$here/progs/holdopen.c" ||
    { nok "building the static guest programs"; summary; exit 1; }
echo "# server: $VIRTFS_SERVER; $files files, --rlimit-nofile $rlimit"

# --- the tree: distinct files, made once and shared by every run ---------------
e=$work/export
ndirs=$(( files >= 100000 ? 200 : 100 ))
t0=$SECONDS
python3 - "$e/tree" "$files" "$ndirs" <<'EOF' || { nok "making the tree"; summary; exit 1; }
import os, sys
top, n, nd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(nd):
    os.makedirs("%s/d%03d" % (top, d))
for i in range(n):
    fd = os.open("%s/d%03d/f%06d" % (top, i % nd, i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"f%06d\n" % i)
    os.close(fd)
EOF
have=$(find "$e/tree" -type f | wc -l)
check "host: $files distinct files in $ndirs directories ($((SECONDS - t0)) s)" [ "$have" = "$files" ]

# serving_pid PID: the process that serves (the sandbox's child when there
# is one, else PID itself).  The sockets are made before the fork: give the
# child up to 5 s to appear.
serving_pid() {
    local c n=50
    while :; do
        c=$(cat "/proc/$1/task/$1/children" 2>/dev/null | awk '{print $1}')
        [ -n "$c" ] || [ $n = 0 ] && break
        n=$((n - 1))
        sleep 0.1
    done
    echo "${c:-$1}"
}

# stat_field LOG REGEX: the number after REGEX in the last stats line.
stat_field() {
    grep -o "$2 [0-9]*" "$1" | tail -n1 | grep -o '[0-9]*$'
}

# The unpriv variant's host user: nobody, as tests/guest/run.sh's rootless
# check (no account of its own to create and leave behind).
unpriv_uid=65534
unpriv_gid=65534

run_one() { # KERNEL VARIANT
    local k=$1 v=$2 w=$work/run
    local opts=() pre=() srv=$VIRTFS_SERVER sa sn sb log
    rm -rf "$w" "$e/ctl" "$e/b"
    mkdir -p "$w/s" "$e/ctl" "$e/b"
    echo "ORIGINAL-$k-$v" > "$e/ctl/target"
    sa=$w/s/a.sock; sn=$w/s/n.sock; sb=$w/s/b.sock; log=$w/virtfsd.log
    [ "$v" = never ] && opts+=(--inode-file-handles=never)
    if [ "$v" = unpriv ]; then
        # The daemon reaches the export and its socket directory through
        # $work (mktemp made it 0700), and owns what it serves and where
        # it listens; the log is opened here, by root.
        chmod 711 "$work" "$w"
        chown -R "$unpriv_uid:$unpriv_gid" "$e" "$w/s"
        pre=(setpriv "--reuid=$unpriv_uid" "--regid=$unpriv_gid" --clear-groups
             --inh-caps=-all)
        # A build tree the user cannot reach: run a copy from $bin.
        if ! "${pre[@]}" test -x "$srv"; then
            cp "$srv" "$bin/virtfsd" && chmod 755 "$bin" "$bin/virtfsd"
            srv=$bin/virtfsd
        fi
    fi
    setsid "${pre[@]}" "$srv" --export "$e" --listen "unix:$sa" --listen "unix:$sn" \
        --listen "unix:$sb" --rlimit-nofile "$rlimit" "${opts[@]}" 2> "$log" &
    server=$!
    if ! guest_wait_socket "$sb" 10; then
        nok "server start"; tail -n 20 "$log"; guest_server_stop "$server"; server=; return
    fi
    local sp
    sleep 0.2
    sp=$(serving_pid "$server")
    if [ "$v" = unpriv ]; then
        # real, effective, saved and file-system ids; the capabilities of
        # its own user namespace, which it drops too
        local ids want caps
        ids=$(awk '/^[UG]id:/ {print $2, $3, $4, $5}' "/proc/$sp/status" | paste -sd/)
        want="$unpriv_uid $unpriv_uid $unpriv_uid $unpriv_uid/$unpriv_gid $unpriv_gid $unpriv_gid $unpriv_gid"
        caps=$(awk '/^CapEff:/ {print $2}' "/proc/$sp/status")
        check "host: the serving process (pid $sp) runs as uid/gid $ids, CapEff $caps" \
            [ "$ids" = "$want" -a "$caps" = 0000000000000000 ]
        grep 'sandbox:' "$log" | sed 's/^/# /'
    fi

    # Descriptor sampler: the highest count seen, every 0.2 s.
    (
        max=0
        while kill -0 "$sp" 2>/dev/null; do
            n=$(ls "/proc/$sp/fd" 2>/dev/null | wc -l)
            [ "$n" -gt "$max" ] && { max=$n; echo "$max" > "$w/maxfd"; }
            sleep 0.2
        done
    ) &
    local sampler=$!
    # The host side of holdopen: rename the held file, put another there.
    (
        for _ in $(seq 1 $((tmo * 5))); do
            if [ -e "$e/ctl/ready" ]; then
                mv "$e/ctl/target" "$e/ctl/target.renamed" &&
                    echo "NEW-FILE-$k-$v" > "$e/ctl/target" &&
                    touch "$e/ctl/done"
                exit 0
            fi
            sleep 0.2
        done
    ) &
    local changer=$!
    bgpids=("$sampler" "$changer")

    cat > "$w/a.sh" <<EOF
. /job/guest-lib.sh
mkdir -p /mnt/v /mnt/n
check "guest A: mount (cache=loose)" virtfs-mount --port org.virtfs.0 -o uname=root,cache=loose --aname '$e' none /mnt/v
check "guest A: second mount (cache=none, own connection)" virtfs-mount --port org.virtfs.1 -o uname=root,cache=none --aname '$e' none /mnt/n
t0=\$(now)
find /mnt/v/tree -type f > /tmp/find.out 2> /tmp/find.err
rc=\$?
n=\$(wc -l < /tmp/find.out)
t1=\$(now)
check "guest A: find over the tree: status \$rc, \$n files (want $files), no error output" [ \$rc = 0 -a "\$n" = $files -a ! -s /tmp/find.err ]
head -n 3 /tmp/find.err | sed 's/^/#   find: /'
{ ls -lR /mnt/v/tree 2> /tmp/ls.err; echo \$? > /tmp/ls.rc; } | awk '/^-/ {n++} END {print n + 0}' > /tmp/ls.n
t2=\$(now)
check "guest A: ls -lR over the tree: status \$(cat /tmp/ls.rc), \$(cat /tmp/ls.n) files, no error output" [ "\$(cat /tmp/ls.rc)" = 0 -a "\$(cat /tmp/ls.n)" = $files -a ! -s /tmp/ls.err ]
head -n 3 /tmp/ls.err | sed 's/^/#   ls: /'
check "guest A: a file's content after the walk" grep -qx f000007 /mnt/v/tree/d007/f000007
echo "# guest A: find \$(awk "BEGIN {print \$t1 - \$t0}") s, ls -lR \$(awk "BEGIN {print \$t2 - \$t1}") s"
run_prog holdopen $( [ "$v" = prefer ] && echo -c ) /mnt/n/ctl/target ORIGINAL-$k-$v /mnt/n/tree $nopen /mnt/n/ctl/ready /mnt/n/ctl/done
umount /mnt/n
umount /mnt/v
finish
EOF
    cat > "$w/b.sh" <<EOF
. /job/guest-lib.sh
mkdir -p /mnt/v
check "guest B: mount (cache=none)" virtfs-mount --port org.virtfs.0 -o uname=root,cache=none --aname '$e' none /mnt/v
touch /mnt/v/b/started
i=0; bad=0
while [ ! -e /mnt/v/b/stop ] && [ \$i -lt 200000 ]; do
    f=/mnt/v/b/f\$((i % 64))
    echo "B \$i" > \$f
    [ "\$(cat \$f)" = "B \$i" ] || bad=\$((bad + 1))
    grep -qx f000042 /mnt/v/tree/d042/f000042 || bad=\$((bad + 1))
    i=\$((i + 1))
done
check "guest B: \$i write/read rounds while A walked, \$bad wrong" [ \$i -gt 0 -a \$bad = 0 ]
umount /mnt/v
finish
EOF
    local t0=$SECONDS ra rb started=no
    guest_run -t "$tmo" -m 256M -n "scale-$k-$v-b" -b "$bin/virtfs-mount" \
        -f "$here/guest-lib.sh" -s "$sb" "$w/b.sh" > "$w/b.out" 2>&1 &
    local pb=$!
    guest_run -t "$tmo" -m "$mem" -n "scale-$k-$v-a" -b "$bin/virtfs-mount" \
        -b "$bin/holdopen" -f "$here/guest-lib.sh" -s "$sa" -s "$sn" "$w/a.sh" > "$w/a.out" 2>&1
    ra=$?
    local ta=$((SECONDS - t0))
    [ -e "$e/b/started" ] && started=yes
    touch "$e/b/stop"
    wait $pb; rb=$?
    count_guest < "$w/a.out"
    count_guest < "$w/b.out"
    [ $ra = 0 ] || nok "guest A finished with status $ra"
    [ $rb = 0 ] || nok "guest B finished with status $rb"
    check "guest B was working before guest A finished" [ $started = yes ]
    check "host: the held file was renamed (target.renamed is the original)" \
        grep -qx "ORIGINAL-$k-$v" "$e/ctl/target.renamed"

    kill -USR1 "$server"
    sleep 1
    local maxfd hfh byname stale recl orecl oreop emf handles
    maxfd=$(cat "$w/maxfd" 2>/dev/null || echo 0)
    check "host: the daemon's descriptors stayed <= $rlimit (max seen $maxfd)" \
        [ "$maxfd" -gt 0 -a "$maxfd" -le "$rlimit" ]
    grep 'stats: passthrough' "$log" | tail -n 2 | sed 's/^/# /'
    hfh=$(stat_field "$log" "reopened by handle")
    byname=$(stat_field "$log" "by name")
    stale=$(stat_field "$log" "stale")
    recl=$(stat_field "$log" "; reclaimed")
    orecl=$(stat_field "$log" "open files reclaimed")
    oreop=$(stat_field "$log" ", reopened")
    emf=$(stat_field "$log" "EMFILE/ENFILE")
    handles=$(grep -o 'file handles [a-z ]*used' "$log" | tail -n1)
    check "stats: node descriptors reclaimed (${recl:-?})" [ "${recl:-0}" -gt 0 ]
    check "stats: open files reclaimed (${orecl:-?}) and reopened (${oreop:-?})" \
        [ "${orecl:-0}" -gt 0 -a "${oreop:-0}" -gt 0 ]
    check "stats: no EMFILE/ENFILE answers (${emf:-?})" [ "${emf:-x}" = 0 ]
    if [ "$v" != prefer ]; then
        check "stats: $handles; reopened by name ${byname:-?}, stale ${stale:-?}" \
            [ "$handles" = "file handles not used" -a "${byname:-0}" -gt 0 ]
    else
        check "stats: $handles; reopened by handle ${hfh:-?}" \
            [ "$handles" = "file handles used" -a "${hfh:-0}" -gt 0 ]
    fi
    grep -E -i 'warn|error' "$log" | grep -v 'stats:' | sort | uniq -c | head -n 5 |
        sed 's/^/# server log: /'
    guest_server_stop "$server"
    server=
    kill "$sampler" "$changer" 2>/dev/null
    wait "$sampler" "$changer" 2>/dev/null
    bgpids=()
    echo "# $k $v: guest A ${ta} s, both guests $((SECONDS - t0)) s"
}

for r in "${runs[@]}"; do
    k=${r%%:*}
    v=${r#*:}
    kprefix="$k: "
    if ! guest_image "$k"; then
        nok "guest image"
        continue
    fi
    kprefix="$k $v: "
    run_one "$k" "$v"
done
kprefix=
echo "# total: $((SECONDS - t_start)) s"
summary
