#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The QEMU guest suite: real Linux 9p clients (Debian kernels 6.1 and 6.12)
# mount exports of the VirtFS server, over two transports:
#   serial  virtio-serial ports + virtfs-mount (parts 1-7; Debian 12's QEMU)
#   vhost   the vhost-user virtio-9p device, virtfsd as the back-end (parts
#           8-10, msize 512000; QEMU >= 10.2 from the trixie chroot of
#           scripts/trixie-qemu.sh, built on first use; tests/guest/vhost-parts.sh)
#
#   tests/guest/run.sh [--transport serial|vhost|all] [--kernel 6.1|6.12]...
#                      [--server PATH|diod] [--part N]... [--keep] [--build DIR]
#
#   (1) basic: host files, 64 MiB file, namespace ops checked from the host,
#       ls -lR, 1000 files + rm -r, locks (guest/guest and host/guest),
#       xattr, POSIX ACL, O_TMPFILE, mmap, rename races, open-unlink-
#       ftruncate, 8 GiB sparse file, 100k-entry directory, statfs
#   (2) two guests at once on one export (cache=none)
#   (3) read-only export: every write fails with EROFS, the host is unchanged
#   (4) escape attempts (kernel client and raw 9P): nothing outside the export
#       is seen or changed
#   (5) several guest users (supplementary groups, newgrp, a set-gid
#       directory, chgrp, set-id bits and a non-owner writer, privileged
#       xattrs): progs/idtest runs the same steps on the guest's tmpfs and on
#       the 9p mount (cache=none and cache=loose); every result must match
#   (6) security models against QEMU's own 9p server: one guest mounts the
#       same host directory through QEMU's built-in virtio-9p (-fsdev local,
#       security_model=M) and through virtfsd (--export DIR,security_model=M),
#       M = mapped-xattr and mapped-file; a tree (several owners, set-id bits,
#       char/block devices, fifos, symlinks, hard links) built through one
#       server must list identically (ls -lnR, stat) through the other, both
#       ways; on the host nothing is a device, set-id or foreign-owned;
#       idtest (part 5's several users) on the mapped export (and through
#       access=client in mapped-xattr); and rootless:
#       virtfsd as nobody with mapped-xattr gives a guest root chown, mknod
#       and set-id bits while the host holds only nobody's plain files;
#       POSIX ACLs (the host's getfacl/setfacl, copied with their
#       libraries) compared through both servers in mapped-xattr
#   (7) --translate-uid/--translate-gid (map, forbid-guest), --all-squash
#       and a nosuid,nodev export (EPERM for mknod), in a guest and on the
#       host (tests/guest/ident.sh)
#   (8) vhost-user workload: host files, 64 MiB write/read back, 1000 files,
#       ls -lR, rm -r, namespace ops checked from the host, xattrs, a POSIX
#       lock held by a host process (vhost-progs/vhtool.c); then a second VM
#       on the same socket of the same virtfsd process (reconnect)
#   (9) vhost-user root file system: a busybox tree exported by virtfsd is
#       the guest's root (root=TAG rootfstype=9p through a tiny initramfs)
#   (10) vhost-user security models: one VM with a mapped-xattr and a
#       mapped-file virtio-9p device (chown, set-id bits, devices, fifo,
#       links; the host holds only the daemon's plain files), and part 9's
#       root on a mapped-xattr export (tests/guest/ident.sh)
#
# Every guest job reports through tests/guest/guest-lib.sh: "ok - " /
# "not ok - " per check, "T SECONDS STATUS NAME" per timed step, counted and
# shown by count_guest (lib.sh).  --transport (default all) selects one
# transport's parts; --part picks parts by number.  tests/guest/vhost.sh is
# run.sh --transport vhost with its old options.
#
# Prints "ok - ..." / "not ok - ..." per check and "N passed, N failed" at the
# end; exits 1 on any failure.  Needs root.  The server is $VIRTFS_SERVER
# (or $VIRTFSD; default build/tools/virtfsd/virtfsd, built when missing), or
# "diod" as a stand-in.  Console logs: $VIRTFS_GUEST_CACHE/logs/.
set -uo pipefail
shopt -s lastpipe   # count_guest at the end of a pipeline updates the counters

here=$(cd "$(dirname "$0")" && pwd)
kernels=()
parts=()
keep=0
transport=all
while [ $# -gt 0 ]; do
    case $1 in
        --transport) transport=$2; shift 2 ;;
        --transport=*) transport=${1#*=}; shift ;;
        --kernel) kernels+=("$2"); shift 2 ;;
        --kernel=*) kernels+=("${1#*=}"); shift ;;
        --server) export VIRTFS_SERVER=$2; shift 2 ;;
        --part) parts+=("$2"); shift 2 ;;
        --keep) keep=1; shift ;;
        --build) export VIRTFS_BUILD_DIR=$2; shift 2 ;;
        -h|--help) sed -n '3,62p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
if [ ${#parts[@]} = 0 ]; then
    case $transport in
        serial) parts=(1 2 3 4 5 6 7) ;;
        vhost) parts=(8 9 10) ;;
        all) parts=(1 2 3 4 5 6 7 8 9 10) ;;
        *) echo "run.sh: --transport serial|vhost|all" >&2; exit 2 ;;
    esac
fi
want_part() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=ident.sh
. "$here/ident.sh"
# shellcheck source=vhost-parts.sh
. "$here/vhost-parts.sh"

# ok, nok, hcheck, check, checke, count_guest, summary: lib.sh

if [ "$(id -u)" != 0 ]; then
    echo "not ok - guest suite needs root"
    failed=1
    summary
    exit 1
fi

t_start=$SECONDS
work=$(mktemp -d /var/tmp/virtfs-guest-suite.XXXXXX)
bin=$work/bin
mkdir -p "$bin"
servers=()
lockpid=
cleanup() {
    local p
    for p in "${servers[@]}"; do guest_server_stop "$p"; done
    [ -n "$lockpid" ] && kill "$lockpid" 2>/dev/null
    if [ $keep = 1 ]; then echo "# kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- binaries ---------------------------------------------------------------
if [ "$VIRTFS_SERVER" != diod ] && [ ! -x "$VIRTFS_SERVER" ]; then
    echo "# building virtfsd in $VIRTFS_BUILD_DIR"
    { [ -f "$VIRTFS_BUILD_DIR/build.ninja" ] || meson setup "$VIRTFS_BUILD_DIR"; } >/dev/null &&
        ninja -C "$VIRTFS_BUILD_DIR" tools/virtfsd/virtfsd >/dev/null
fi
if [ "$VIRTFS_SERVER" != diod ] && [ ! -x "$VIRTFS_SERVER" ]; then
    nok "server $VIRTFS_SERVER is missing (build failed?)"
    summary
    exit 1
fi
echo "# server: $VIRTFS_SERVER"
serial_wanted=0
for p in 1 2 3 4 5 6 7; do want_part $p && serial_wanted=1; done
if [ $serial_wanted = 1 ]; then
    guest_static_build "$bin/virtfs-mount" "$VIRTFS_SRC_DIR/tools/virtfs-mount/virtfs-mount.c" &&
    guest_static_build "$bin/vfstest" "$here/progs/vfstest.c" &&
    guest_static_build "$bin/raw9p" "$here/progs/raw9p.c" &&
    guest_static_build "$bin/idtest" "$here/progs/idtest.c" &&
    gcc -O2 -o "$bin/vfstest-host" "$here/progs/vfstest.c" ||
        { nok "building the static guest programs"; summary; exit 1; }
    ident_acl_bundle "$bin" || { nok "copying getfacl/setfacl for the guest"; summary; exit 1; }
fi

# The vhost-user parts: their QEMU and helpers (vhost-parts.sh).
vhost_ok=0
if want_part 8 || want_part 9 || want_part 10; then
    if [ "$VIRTFS_SERVER" = diod ]; then
        nok "the vhost-user parts need virtfsd, not diod"
    elif vhost_setup; then
        vhost_ok=1
    fi
fi

GB=(-b "$bin/virtfs-mount" -b "$bin/vfstest" -b "$bin/raw9p" -b "$bin/idtest"
    -b "$bin/getfacl" -b "$bin/setfacl" -f "$bin/acl" -f "$here/guest-lib.sh")

# Mount line used by every job.  aname = export path works with both
# virtfsd and diod; uname=root is needed by diod.
mount_cmd() { # PORT EXPORT MNT [extra -o opts]
    local o=uname=root
    [ -n "${4:-}" ] && o="$o,$4"
    echo "virtfs-mount --port $1 -o $o --aname '$2' none $3"
}

# Shows the server's warnings and errors (for the report of a failed check).
server_warnings() {
    grep -E -i 'warn|error|closing' "$1" 2>/dev/null | sort | uniq -c | head -n 8 |
        sed 's/^/# server log: /'
}

# A listing that changes when anything in a tree changes.
tree_sum() {
    (cd "$1" && find . -printf '%p %y %m %U:%G %s %T@ %l\n' | sort &&
        find . -type f -print0 | sort -z | xargs -0r md5sum)
}

# ----------------------------------------------------------------------------
# (1) basic job
# ----------------------------------------------------------------------------
part1() {
    local k=$1 w=$work/$k/p1 e sock
    e=$w/export
    sock=$w/s.sock
    mkdir -p "$e/host" "$e/g"
    echo "hello from the host" > "$e/host/hello.txt"
    head -c 3000000 /dev/urandom > "$e/host/data.bin"
    local hostmd5 t0
    hostmd5=$(md5sum < "$e/host/data.bin" | cut -d' ' -f1)
    # The 100k-entry directory is made once and moved between kernels.
    if [ ! -d "$work/big100k" ]; then
        t0=$SECONDS
        "$bin/vfstest-host" mkfiles "$work/big100k" 100000 || nok "host: create 100k files"
        echo "# host: created 100000 files in $((SECONDS - t0)) s"
    fi
    mv "$work/big100k" "$e/host/big100k"
    echo "lock me" > "$e/host/locked.file"
    rm -f "$w/lock.ready"
    "$bin/vfstest-host" lock-hold "$e/host/locked.file" "$w/lock.ready" &
    lockpid=$!
    local n=50
    while [ ! -f "$w/lock.ready" ] && [ $n -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
    hcheck "host: helper holds a write lock on host/locked.file" test -f "$w/lock.ready"

    guest_server_start "$sock" "$e" || { nok "server start (part 1)"; return; }
    local spid=$GUEST_SERVER_PID
    servers+=("$spid")

    cat > "$w/job.sh" <<EOF
. /job/guest-lib.sh
M=/mnt/v MM=/mnt/mm G=/mnt/v/g
mkdir -p \$M \$MM
check "mount over virtio-serial with virtfs-mount" $(mount_cmd org.virtfs.0 "$e" '$M')
grep -q ' /mnt/v 9p ' /proc/mounts || { nok "mounted"; finish; exit 1; }
grep ' /mnt/v ' /proc/mounts | sed 's/^/# /'
check "second mount cache=mmap,posixacl on port org.virtfs.1" $(mount_cmd org.virtfs.1 "$e" '$MM' cache=mmap,posixacl)
check "read a host file" grep -qx "hello from the host" \$M/host/hello.txt
check "host file content (md5) matches" test "\$(md5sum < \$M/host/data.bin | cut -d' ' -f1)" = "$hostmd5"

t=\$(now)
dd if=/dev/urandom of=/tmp/big bs=1M count=64 2>/dev/null
check "write a 64 MiB file (dd conv=fsync)" dd if=/tmp/big of=\$G/big.bin bs=1M conv=fsync
echo 3 > /proc/sys/vm/drop_caches
check "64 MiB file reads back identical (cmp)" cmp /tmp/big \$G/big.bin
md5sum /tmp/big | cut -d' ' -f1 > \$G/big.md5
rm -f /tmp/big
echo "# 64 MiB write+read: from \$t to \$(now)"

check "mkdir -p" mkdir -p \$G/dir1/a/b/c
echo content > \$G/dir1/file
check "rename" mv \$G/dir1/file \$G/dir1/renamed
check "symlink" ln -s renamed \$G/dir1/symlink
check "readlink" test "\$(readlink \$G/dir1/symlink)" = renamed
check "hard link" ln \$G/dir1/renamed \$G/dir1/hardlink
check "hard link count 2" test "\$(stat -c %h \$G/dir1/renamed)" = 2
check "chmod 0640" chmod 0640 \$G/dir1/renamed
check "mode visible through the hard link" test "\$(stat -c %a \$G/dir1/hardlink)" = 640
touch \$G/dir1/owned
check "chown 1234:5678" chown 1234:5678 \$G/dir1/owned
check "owner visible in the guest" test "\$(stat -c %u:%g \$G/dir1/owned)" = 1234:5678
echo 0123456789 > \$G/dir1/trunc
check "truncate -s 4" truncate -s 4 \$G/dir1/trunc
check "truncated size 4" test "\$(stat -c %s \$G/dir1/trunc)" = 4
touch \$G/dir1/timed
check "utimes (touch -d 2001-02-03 04:05:06)" touch -d '2001-02-03 04:05:06' \$G/dir1/timed
check "mtime visible in the guest" test "\$(stat -c %Y \$G/dir1/timed)" = 981173106
mkdir -p \$G/dir2
check "rename a directory tree into another directory" mv \$G/dir1/a \$G/dir2/a
check "rmdir" sh -c "mkdir \$G/dir1/gone && rmdir \$G/dir1/gone"

t=\$(now)
mkdir \$G/many
i=0
while [ \$i -lt 1000 ]; do echo "file \$i" > \$G/many/f\$i || break; i=\$((i + 1)); done
check "create 1000 files" test \$i = 1000
check "readdir sees 1000 files" test "\$(ls \$G/many | wc -l)" = 1000
check "read 1000 files" sh -c "cat \$G/many/* | wc -l | grep -qx 1000"
echo "# 1000 files create+list+read: \$(now) (from \$t)"
check "ls -lR" sh -c "ls -lR \$M/g > /tmp/lsr && test \\\$(wc -l < /tmp/lsr) -gt 1000"
t=\$(now)
check "rm -r of 1000 files" rm -r \$G/many
check "directory of 1000 files is gone" test ! -e \$G/many
echo "# rm -r: \$(now) (from \$t)"

echo "# t=\$(now) progs"
run_prog vfstest lock \$G
run_prog vfstest lock-held \$M/host/locked.file
run_prog vfstest xattr \$G/xattr.file
run_prog vfstest acl \$MM/g/acl.file 1234
echo "# t=\$(now)"
run_prog vfstest tmpfile \$G
run_prog vfstest mmap \$MM/g/mmap.bin
md5sum \$G/mmap.bin | cut -d' ' -f1 > \$G/mmap.md5
run_prog vfstest mmap-read \$G/mmap.bin
echo "# t=\$(now)"
run_prog vfstest rename-race \$G
echo "# t=\$(now)"
run_prog vfstest unlink-open \$G
echo "# t=\$(now)"
run_prog vfstest sparse \$G/sparse.bin 8
t=\$(now)
echo "# t=\$(now)"
run_prog vfstest readdir \$M/host/big100k 100000
check "statfs (df)" sh -c "df -k \$M | grep -q /mnt/v"
df -k \$M | sed 's/^/# /'
vfstest statfs \$M > \$G/statfs.txt
sed 's/^/# /' \$G/statfs.txt
if vfstest vsock-relay org.virtfs.2 5641; then
    mkdir -p /mnt/vs
    check "vsock: virtfs-mount --vsock 5641 --cid 1 (loopback, relayed to the host)" virtfs-mount --vsock 5641 --cid 1 -o uname=root --aname '$e' none /mnt/vs
    check "vsock: read a host file" grep -qx "hello from the host" /mnt/vs/host/hello.txt
    check "vsock: umount" umount /mnt/vs
else
    nok "vsock: loopback relay could not start"
fi
check "umount cache=mmap mount" umount \$MM
check "umount" umount \$M
sleep 0.3
check "virtfs-mount relays exited after umount" sh -c '! pidof virtfs-mount'
finish
EOF
    local rc=0
    t0=$SECONDS
    guest_run -t 480 -m 768M -n "$k-basic" "${GB[@]}" -s "$sock" -s "$sock" -s "$sock" "$w/job.sh" |
        count_guest
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] || [ "$rc" = 125 ] && nok "basic job: guest did not finish (status $rc)"
    echo "# basic job: $((SECONDS - t0)) s (status $rc)"
    server_warnings "$sock.log"
    kill "$lockpid" 2>/dev/null
    wait "$lockpid" 2>/dev/null
    lockpid=

    # Host-side checks of what the guest did.
    local g=$e/g
    hcheck "host: 64 MiB file md5 equals the guest's" \
        test "$(md5sum < "$g/big.bin" 2>/dev/null | cut -d' ' -f1)" = "$(cat "$g/big.md5" 2>/dev/null)"
    hcheck "host: 64 MiB file size" test "$(stat -c %s "$g/big.bin" 2>/dev/null)" = 67108864
    hcheck "host: renamed file has its content" grep -qx content "$g/dir1/renamed"
    hcheck "host: old name is gone" test ! -e "$g/dir1/file"
    hcheck "host: symlink -> renamed" test "$(readlink "$g/dir1/symlink")" = renamed
    hcheck "host: hard link shares the inode" test "$g/dir1/hardlink" -ef "$g/dir1/renamed"
    hcheck "host: mode 640" test "$(stat -c %a "$g/dir1/renamed" 2>/dev/null)" = 640
    hcheck "host: owner 1234:5678" test "$(stat -c %u:%g "$g/dir1/owned" 2>/dev/null)" = 1234:5678
    hcheck "host: truncated to 4 bytes '0123'" test "$(cat "$g/dir1/trunc" 2>/dev/null)" = 0123
    hcheck "host: mtime 2001-02-03 04:05:06" test "$(stat -c %Y "$g/dir1/timed" 2>/dev/null)" = 981173106
    hcheck "host: moved tree dir2/a/b/c" test -d "$g/dir2/a/b/c"
    hcheck "host: dir1/a moved away" test ! -e "$g/dir1/a"
    hcheck "host: 1000 files removed" test ! -e "$g/many"
    hcheck "host: xattr user.virtfs.keep=kept" \
        test "$(getfattr --only-values -n user.virtfs.keep "$g/xattr.file" 2>/dev/null)" = kept
    hcheck "host: xattr user.virtfs.test removed" \
        sh -c "! getfattr -n user.virtfs.test '$g/xattr.file'"
    hcheck "host: POSIX ACL user:1234:r--" sh -c "getfacl -c '$g/acl.file' | grep -qx user:1234:r--"
    hcheck "host: mmap-written file md5 equals the guest's cache=none view" \
        test "$(md5sum < "$g/mmap.bin" 2>/dev/null | cut -d' ' -f1)" = "$(cat "$g/mmap.md5" 2>/dev/null)"
    hcheck "host: sparse file size 8 GiB + 1" test "$(stat -c %s "$g/sparse.bin" 2>/dev/null)" = 8589934593
    hcheck "host: sparse file uses < 16 MiB" test "$(du -k "$g/sparse.bin" | cut -f1)" -lt 16384
    hcheck "host: unlinked-open file gone" test ! -e "$g/unlinked-open"
    mv "$e/host/big100k" "$work/big100k"
    local hs gs
    hs=$("$bin/vfstest-host" statfs "$e" | sed -n 's/.*total=\([0-9]*\).*/\1/p')
    gs=$(sed -n 's/.*total=\([0-9]*\).*/\1/p' "$g/statfs.txt" 2>/dev/null)
    hcheck "host: statfs total size equal in guest and host ($gs vs $hs)" test -n "$gs" -a "$gs" = "$hs"
}

# ----------------------------------------------------------------------------
# (2) two guests at once on one export
# ----------------------------------------------------------------------------
part2() {
    local k=$1 w=$work/$k/p2 e sock token
    e=$w/export
    sock=$w/s.sock
    token=$RANDOM$RANDOM
    mkdir -p "$e/two"
    guest_server_start "$sock" "$e" || { nok "server start (part 2)"; return; }
    servers+=("$GUEST_SERVER_PID")
    cat > "$w/a.sh" <<EOF
. /job/guest-lib.sh
M=/mnt/v; T=/mnt/v/two
mkdir -p \$M
check "guest A: mount (cache=none)" $(mount_cmd org.virtfs.0 "$e" '$M' cache=none)
echo "hello from A $token" > \$T/msg.tmp && mv \$T/msg.tmp \$T/msg
echo v1 > \$T/shared
touch \$T/s1
check "guest A: B acknowledged A's message" wait_for \$T/ack 240
check "guest A: B's reply content" grep -qx "hello from B $token" \$T/ack
check "guest A: B read v1" wait_for \$T/r1 120
echo v2 > \$T/shared
touch \$T/s2
check "guest A: B saw v2" wait_for \$T/r2 120
check "guest A: B saw the rewrite, content" grep -qx v2 \$T/r2
umount \$M
finish
EOF
    cat > "$w/b.sh" <<EOF
. /job/guest-lib.sh
M=/mnt/v; T=/mnt/v/two
mkdir -p \$M
check "guest B: mount (cache=none)" $(mount_cmd org.virtfs.0 "$e" '$M' cache=none)
check "guest B: sees A's file appear" wait_for \$T/msg 240
check "guest B: A's message content" grep -qx "hello from A $token" \$T/msg
wait_for \$T/s1 60
cat \$T/shared > \$T/r1.tmp; mv \$T/r1.tmp \$T/r1
check "guest B: reads v1" grep -qx v1 \$T/r1
echo "hello from B $token" > \$T/ack.tmp && mv \$T/ack.tmp \$T/ack
check "guest B: A's rewrite signalled" wait_for \$T/s2 120
cat \$T/shared > \$T/r2.tmp; mv \$T/r2.tmp \$T/r2
check "guest B: sees v2 after A rewrote the file" grep -qx v2 \$T/r2
umount \$M
finish
EOF
    local t0=$SECONDS ra rb
    guest_run -t 300 -n "$k-two-a" "${GB[@]}" -s "$sock" "$w/a.sh" > "$w/a.out" 2>&1 &
    local pa=$!
    guest_run -t 300 -n "$k-two-b" "${GB[@]}" -s "$sock" "$w/b.sh" > "$w/b.out" 2>&1 &
    local pb=$!
    wait $pa; ra=$?
    wait $pb; rb=$?
    count_guest < "$w/a.out"
    count_guest < "$w/b.out"
    [ $ra = 124 ] || [ $ra = 125 ] && nok "two guests: guest A did not finish (status $ra)"
    [ $rb = 124 ] || [ $rb = 125 ] && nok "two guests: guest B did not finish (status $rb)"
    hcheck "host: both guests' files present" test -f "$e/two/msg" -a -f "$e/two/ack"
    server_warnings "$sock.log"
    echo "# two guests: $((SECONDS - t0)) s"
}

# ----------------------------------------------------------------------------
# (3) read-only export
# ----------------------------------------------------------------------------
part3() {
    local k=$1 w=$work/$k/p3 e sock
    e=$w/export
    sock=$w/s.sock
    mkdir -p "$e/subdir"
    echo "read-only content" > "$e/file.txt"
    echo inner > "$e/subdir/inner"
    ln -s file.txt "$e/link"
    setfattr -n user.virtfs.orig -v 1 "$e/file.txt" 2>/dev/null
    tree_sum "$e" > "$w/before"
    guest_server_start "$sock" "$e" ro || { nok "server start (part 3)"; return; }
    servers+=("$GUEST_SERVER_PID")
    cat > "$w/job.sh" <<EOF
. /job/guest-lib.sh
M=/mnt/v
mkdir -p \$M
check "ro: mount the read-only export" $(mount_cmd org.virtfs.0 "$e" '$M')
check "ro: read a file" grep -qx "read-only content" \$M/file.txt
check "ro: list" sh -c "ls -la \$M | grep -q subdir"
run_prog vfstest rofs \$M \$M/file.txt
check_fails "ro: shell redirection into a file" sh -c "echo x > \$M/file.txt"
check_fails "ro: rm -r of a directory" rm -r \$M/subdir
check_fails "ro: touch a new file" touch \$M/newfile
umount \$M
finish
EOF
    guest_run -t 240 -n "$k-ro" "${GB[@]}" -s "$sock" "$w/job.sh" | count_guest
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] || [ "$rc" = 125 ] && nok "ro job: guest did not finish (status $rc)"
    server_warnings "$sock.log"
    tree_sum "$e" > "$w/after"
    if cmp -s "$w/before" "$w/after"; then
        ok "host: read-only export unchanged (checksum listing)"
    else
        nok "host: read-only export CHANGED"
        diff "$w/before" "$w/after" | head -n 10 | sed 's/^/#   /'
    fi
}

# ----------------------------------------------------------------------------
# (4) escape attempts
# ----------------------------------------------------------------------------
part4() {
    local k=$1 w=$work/$k/p4 e sock
    e=$w/export
    sock=$w/s.sock
    mkdir -p "$e/sub" "$w/outside"
    echo "host secret next to the export" > "$w/sentinel.txt"
    echo "host secret outside" > "$w/outside/secret.txt"
    chmod 0600 "$w/outside/secret.txt"
    chmod 0750 "$w/outside"
    echo inside > "$e/inside.txt"
    echo inside2 > "$e/inside2.txt"
    ln -s .. "$e/up"
    ln -s ../.. "$e/upup"
    ln -s /etc "$e/etc"
    ln -s ../outside "$e/out"
    ln -s ../outside/secret.txt "$e/secretlink"
    tree_sum "$w/outside" > "$w/outside.before"
    md5sum "$w/sentinel.txt" > "$w/sentinel.before"
    ls -la --time-style=full-iso /etc > "$w/etc.before"
    guest_server_start "$sock" "$e" || { nok "server start (part 4)"; return; }
    servers+=("$GUEST_SERVER_PID")
    cat > "$w/job.sh" <<EOF
. /job/guest-lib.sh
M=/mnt/v
mkdir -p \$M
check "escape: mount" $(mount_cmd org.virtfs.0 "$e" '$M')
check "escape: cd .. past the root lands in the guest's /mnt" sh -c "cd \$M/../..; test -d mnt/v && test ! -e sentinel.txt"
check_fails "escape: \$M/../sentinel.txt not readable" cat \$M/../sentinel.txt
check_fails "escape: symlink up -> .. does not reach the host" cat \$M/up/sentinel.txt
check_fails "escape: symlink upup -> ../.. does not reach the host" cat \$M/upup/outside/secret.txt
check_fails "escape: symlink etc -> /etc shows the guest's /etc, not the host's" cat \$M/etc/passwd
check_fails "escape: symlink out -> ../outside not readable" cat \$M/out/secret.txt
check_fails "escape: secretlink -> ../outside/secret.txt not readable" cat \$M/secretlink
check_fails "escape: write through secretlink" sh -c "echo pwned > \$M/secretlink"
check_fails "escape: rename into symlinked dir out/" mv \$M/inside2.txt \$M/out/
check_fails "escape: rename a dir into symlinked dir out/" mv \$M/sub \$M/out/
check_fails "escape: create in symlinked dir out/" sh -c "echo x > \$M/out/evil.txt"
check_fails "escape: mkfifo in symlinked dir out/" mknod \$M/out/evilfifo p
if mknod \$M/devnull c 1 3 2>/dev/null; then
    ok "escape: mknod char device created inside the export (node only)"
    check "escape: guest device node acts locally" sh -c "echo x > \$M/devnull"
else
    ok "escape: mknod char device refused by the server"
fi
check "escape: mknod fifo inside the export" mknod \$M/fifo p
ln -s /etc/shadow \$M/shadowlink 2>/dev/null
check_fails "escape: new symlink to /etc/shadow resolves in the guest" cat \$M/shadowlink
run_prog raw9p org.virtfs.1 "$e"
umount \$M
finish
EOF
    ls -A "$w" > "$work/$k/p4.list.before"
    guest_run -t 240 -n "$k-escape" "${GB[@]}" -s "$sock" -s "$sock" "$w/job.sh" | count_guest
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] || [ "$rc" = 125 ] && nok "escape job: guest did not finish (status $rc)"
    server_warnings "$sock.log"
    tree_sum "$w/outside" > "$w/outside.after"
    if cmp -s "$w/outside.before" "$w/outside.after"; then
        ok "host: directory outside the export unchanged"
    else
        nok "host: directory outside the export CHANGED"
        diff "$w/outside.before" "$w/outside.after" | head -n 10 | sed 's/^/#   /'
    fi
    hcheck "host: sentinel next to the export unchanged" md5sum -c --quiet "$w/sentinel.before"
    ls -A "$w" | grep -v -e '\.after$' > "$work/$k/p4.list.after"
    hcheck "host: nothing new next to the export" cmp -s "$work/$k/p4.list.before" "$work/$k/p4.list.after"
    ls -la --time-style=full-iso /etc > "$w/etc.after"
    hcheck "host: /etc listing unchanged" cmp -s "$w/etc.before" "$w/etc.after"
    hcheck "host: inside.txt still in the export" test -f "$e/inside.txt"
    hcheck "host: symlink targets unchanged" \
        test "$(readlink "$e/out"):$(readlink "$e/secretlink")" = "../outside:../outside/secret.txt"
}

# ----------------------------------------------------------------------------
# (5) several guest users: POSIX semantics against the guest's own tmpfs
# ----------------------------------------------------------------------------
part5() {
    local k=$1 w=$work/$k/p5 e sock ens sockns
    e=$w/export
    sock=$w/s.sock
    ens=$w/export-nosuid
    sockns=$w/ns.sock
    mkdir -p "$e" "$ens"
    guest_server_start "$sock" "$e" || { nok "server start (part 5)"; return; }
    servers+=("$GUEST_SERVER_PID")
    guest_server_start "$sockns" "$ens" nosuid,nodev || { nok "server start (part 5, nosuid)"; return; }
    servers+=("$GUEST_SERVER_PID")
    # uname=root only names the mount's first attach; access=user (the
    # 9P2000.L default) makes the client attach each guest user by uid.
    cat > "$w/job.sh" <<EOF
. /job/guest-lib.sh
M=/mnt/v ML=/mnt/l
mkdir -p \$M \$ML /tmp/ref1 /tmp/ref2
check "id: mount (cache=none, access=user)" $(mount_cmd org.virtfs.0 "$e" '$M' cache=none,access=user)
check "id: mount (cache=loose, access=user)" $(mount_cmd org.virtfs.1 "$e" '$ML' cache=loose,access=user)
mkdir \$M/none \$M/loose
echo "# cache=none"
run_prog idtest compare /tmp/ref1 \$M/none
echo "# cache=loose"
run_prog idtest compare /tmp/ref2 \$ML/loose
umount \$ML
umount \$M
NS=/mnt/ns
mkdir -p \$NS
check "nosuid: mount the nosuid,nodev export" $(mount_cmd org.virtfs.2 "$ens" '$NS' cache=none)
touch \$NS/f
chmod 6755 \$NS/f
check "nosuid: chmod 6755 leaves 755" test "\$(stat -c %a \$NS/f)" = 755
check "nosuid: create with mode 4755" idtest create \$NS/g 4755
check "nosuid: created file has mode 755" test "\$(stat -c %a \$NS/g)" = 755
check_fails "nodev: mknod c 1 3 refused" mknod \$NS/null c 1 3
check_fails "nodev: mknod b 7 0 refused" mknod \$NS/loop b 7 0
check "nodev: mkfifo still works" mkfifo \$NS/fifo
umount \$NS
finish
EOF
    guest_run -t 300 -n "$k-ident" "${GB[@]}" -s "$sock" -s "$sock" -s "$sockns" "$w/job.sh" | count_guest
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] || [ "$rc" = 125 ] && nok "id job: guest did not finish (status $rc)"
    server_warnings "$sock.log"
    # What the host sees: the owners and groups the guest users chose.
    hcheck "host: u1's file in the set-gid dir is 1001:500" \
        test "$(stat -c %u:%g "$e/none/sgid/sgid-f" 2>/dev/null)" = 1001:500
    hcheck "host: u1's file after newgrp is 1001:501" \
        test "$(stat -c %u:%g "$e/none/w/newgrp-f" 2>/dev/null)" = 1001:501
    hcheck "host: root's set-uid file written by u2 lost its set-id bits" \
        test "$(stat -c %a "$e/none/suid1" 2>/dev/null)" = 777
    hcheck "host: no trusted.x on u1's directory" \
        sh -c "! getfattr -n trusted.x '$e/none/w/u1-d' 2>/dev/null | grep -q trusted"
    hcheck "host: nosuid export holds no set-id file" \
        test -z "$(find "$ens" -perm /6000 -type f 2>/dev/null)"
    hcheck "host: nodev export holds no device node" \
        test -z "$(find "$ens" \( -type b -o -type c \) 2>/dev/null)"
}

# ----------------------------------------------------------------------------
# (6) security models: interop with QEMU's local backend
# ----------------------------------------------------------------------------
part6() {
    local k=$1 m w e sock rc
    local acls
    for m in mapped-xattr mapped-file; do
        acls=0
        [ $m = mapped-xattr ] && acls=1
        w=$work/$k/p6-$m
        e=$w/export
        sock=$w/s.sock
        mkdir -p "$e"
        guest_server_start "$sock" "$e" "security_model=$m" ||
            { nok "server start (part 6, $m)"; continue; }
        servers+=("$GUEST_SERVER_PID")
        cat > "$w/job.sh" <<EOF
. /job/guest-lib.sh
Q=/mnt/q V=/mnt/v
mkdir -p \$Q \$V
check "$m: mount QEMU's 9p" mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,access=user q9 \$Q
check "$m: mount virtfsd" $(mount_cmd org.virtfs.0 "$e" '$V' cache=none,access=user)
QA=/mnt/qa VA=/mnt/va
mkdir -p \$QA \$VA
check "$m: mount QEMU's 9p (posixacl)" mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,posixacl q9a \$QA
check "$m: mount virtfsd (posixacl)" $(mount_cmd org.virtfs.1 "$e" '$VA' cache=none,posixacl)
build() { # DIR: a tree with several owners, set-id bits, devices, links
    mkdir \$1 && cd \$1 || return 1
    mkdir -m 2775 sg && chown 1001:500 sg &&
    echo data > f && chown 1002:501 f && chmod 4755 f &&
    touch g && chown 0:7 g && chmod 2711 g &&
    mknod null c 1 3 && mknod loop b 7 0 && chown 5:6 loop && chmod 640 loop &&
    mkfifo -m 600 fifo && chown 1001:1001 fifo &&
    ln -s ../some/where sl && chown -h 1003:1003 sl &&
    ln f hl && mkdir sg/sub && touch sg/sub/x && chmod 1777 sg/sub &&
    ln -s f sg/rel && mknod sg/tty c 4 1 && chmod 6755 g
    rc=\$?
    cd /
    return \$rc
}
# ACLs go through a second mount with posixacl, which implies
# access=client (with access=user the client refuses system.posix_acl_*
# with EOPNOTSUPP); the first mount stays access=user for idtest.
setacls() { # DIR (on a posixacl mount)
    cd \$1 || return 1
    touch acl && chown 1001:500 acl && chmod 640 acl && setfacl -m u:1002:rw-,g:501:r-- acl &&
    mkdir dacl && setfacl -m u:1003:r-x dacl && setfacl -d -m u:1002:rwx,g:500:r-x dacl &&
    touch dacl/inh && mkdir dacl/sub
    rc=\$?
    cd /
    return \$rc
}
listing() { # DIR: what must match
    (cd \$1 && ls -lnR . | sed 's/  */ /g' &&
        find . | sort | while read -r p; do stat -c '%n %F %a %u %g %h %t:%T %s' "\$p"; done)
}
acllisting() { # DIR (on a posixacl mount)
    (cd \$1 && find . | sort | xargs getfacl -n 2>&1)
}
# ACLs: QEMU keeps mapped-file ACLs as real host ACLs (its passthrough
# xattr operations), virtfsd as user.virtfs.system.posix_acl_* (a guest's
# ACL must not grant host users anything): compared in mapped-xattr only.
ACLS=$acls
check "$m: QEMU builds a tree" build \$Q/byqemu
check "$m: QEMU sets ACLs (setfacl)" setacls \$QA/byqemu
listing \$Q/byqemu > /tmp/q1
listing \$V/byqemu > /tmp/v1
check "$m: virtfsd lists QEMU's tree identically" cmp /tmp/q1 /tmp/v1
cmp /tmp/q1 /tmp/v1 >/dev/null || diff /tmp/q1 /tmp/v1 | head -n 20 | sed 's/^/#   /'
if grep -q '^c.* 1, *3 .* null' /tmp/v1 && grep -q '^-rwsr-xr-x 2 1002 501 ' /tmp/v1 &&
    grep -q '^l.* 1003 1003 .* sl -> ../some/where' /tmp/v1 && grep -q '^p' /tmp/v1; then
    ok "$m: through virtfsd: devices, owners, set-id bits, symlinks, hard links"
else
    nok "$m: through virtfsd: devices, owners, set-id bits, symlinks, hard links"
    head -n 30 /tmp/v1 | sed 's/^/#   /'
fi
check "$m: virtfsd builds a tree" build \$V/byvirtfsd
check "$m: virtfsd sets ACLs (setfacl)" setacls \$VA/byvirtfsd
listing \$V/byvirtfsd > /tmp/v2
listing \$Q/byvirtfsd > /tmp/q2
check "$m: QEMU lists virtfsd's tree identically" cmp /tmp/v2 /tmp/q2
cmp /tmp/v2 /tmp/q2 >/dev/null || diff /tmp/v2 /tmp/q2 | head -n 20 | sed 's/^/#   /'
check "$m: through QEMU: virtfsd's block device" grep -q '^b.* 7, *0 .* loop' /tmp/q2
acllisting \$VA/byvirtfsd > /tmp/va2
check "$m: getfacl through virtfsd: virtfsd's ACLs" sh -c "grep -qx user:1002:rw- /tmp/va2 && grep -qx default:user:1002:rwx /tmp/va2"
if [ "\$ACLS" = 1 ]; then
    acllisting \$QA/byqemu > /tmp/qa1
    acllisting \$VA/byqemu > /tmp/va1
    check "$m: getfacl -R: virtfsd shows QEMU's ACLs identically" cmp /tmp/qa1 /tmp/va1
    cmp /tmp/qa1 /tmp/va1 >/dev/null || diff /tmp/qa1 /tmp/va1 | head -n 20 | sed 's/^/#   /'
    check "$m: getfacl through virtfsd: QEMU's ACLs" sh -c "grep -qx user:1002:rw- /tmp/va1 && grep -qx default:group:500:r-x /tmp/va1"
    acllisting \$QA/byvirtfsd > /tmp/qa2
    check "$m: getfacl -R: QEMU shows virtfsd's ACLs identically" cmp /tmp/va2 /tmp/qa2
    cmp /tmp/va2 /tmp/qa2 >/dev/null || diff /tmp/va2 /tmp/qa2 | head -n 20 | sed 's/^/#   /'
fi
check "$m: chown through virtfsd seen by QEMU" sh -c "chown 4242:4343 \$V/byqemu/g && stat -c %u:%g \$Q/byqemu/g | grep -qx 4242:4343"
check "$m: chmod through QEMU seen by virtfsd" sh -c "chmod 4711 \$Q/byvirtfsd/f && stat -c %a \$V/byvirtfsd/f | grep -qx 4711"
# Several guest users on the mapped export, compared with the guest's tmpfs
# (access=user); in mapped-xattr again through the access=client mount.
mkdir -p /tmp/idref \$V/ids
run_prog idtest compare /tmp/idref \$V/ids
if [ "\$ACLS" = 1 ]; then
    mkdir -p /tmp/idrefc \$VA/idsc
    echo "# access=client (posixacl)"
    run_prog idtest compare /tmp/idrefc \$VA/idsc
fi
umount \$VA
umount \$QA
umount \$V
umount \$Q
finish
EOF
        guest_run -t 300 -n "$k-models-$m" "${GB[@]}" -s "$sock" -s "$sock" \
            -q -fsdev -q "local,id=q9fs,path=$e,security_model=$m" \
            -q -device -q "virtio-9p-pci,fsdev=q9fs,mount_tag=q9" \
            -q -fsdev -q "local,id=q9fsa,path=$e,security_model=$m" \
            -q -device -q "virtio-9p-pci,fsdev=q9fsa,mount_tag=q9a" \
            "$w/job.sh" | count_guest
        rc=${PIPESTATUS[0]}
        [ "$rc" = 124 ] || [ "$rc" = 125 ] && nok "$m job: guest did not finish (status $rc)"
        server_warnings "$sock.log"
        hcheck "host ($m): no device node, fifo or symlink in the export" \
            test -z "$(find "$e" \( -type b -o -type c -o -type p -o -type l \) 2>/dev/null)"
        hcheck "host ($m): no set-id file in the export" \
            test -z "$(find "$e" -perm /6000 2>/dev/null)"
        hcheck "host ($m): every file belongs to the servers' user" \
            test -z "$(find "$e" ! -user "$(id -u)" 2>/dev/null)"
        hcheck "host ($m): the trees are there" test -f "$e/byqemu/f" -a -f "$e/byvirtfsd/f"
        hcheck "host ($m): virtfsd's ACL is in user.virtfs.system.posix_acl_access" \
            getfattr -n user.virtfs.system.posix_acl_access "$e/byvirtfsd/acl"
        hcheck "host ($m): no real ACL on virtfsd's files" \
            test -z "$(getfacl -R -s -p "$e/byvirtfsd" 2>/dev/null)"
    done
    # Rootless: virtfsd as nobody with mapped-xattr; a guest root still
    # gets ownership semantics, and the host holds only nobody's plain files.
    w=$work/$k/p6-rootless
    e=$w/export
    sock=$w/s.sock
    mkdir -p "$e"
    chmod 711 "$work" "$work/$k"
    chown 65534:65534 "$w" "$e"
    rm -f "$sock"
    setsid setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$VIRTFS_SERVER" --export "$e,security_model=mapped-xattr" \
        --listen "unix:$sock" 2> "$w/server.log" &
    servers+=($!)
    if ! guest_wait_socket "$sock" 10; then
        nok "rootless: virtfsd as nobody did not start"
        sed 's/^/# server log: /' "$w/server.log" | tail -n 5
        return
    fi
    cat > "$w/job.sh" <<EOF
. /job/guest-lib.sh
R=/mnt/r
mkdir -p \$R
check "rootless: mount (virtfsd runs as nobody)" $(mount_cmd org.virtfs.0 "$e" '$R' cache=none,access=user)
check "rootless: chown to 1234:5678" sh -c "touch \$R/a && chown 1234:5678 \$R/a && stat -c %u:%g \$R/a | grep -qx 1234:5678"
check "rootless: chmod 4755 (set-uid)" sh -c "chmod 4755 \$R/a && stat -c %a \$R/a | grep -qx 4755"
check "rootless: mknod c 10 232" sh -c "mknod \$R/kvm c 10 232 && stat -c %F:%t:%T \$R/kvm | grep -qx 'character special file:a:e8'"
check "rootless: mknod b 8 0, chown 0:6" sh -c "mknod \$R/sda b 8 0 && chown 0:6 \$R/sda && stat -c %F:%t:%T:%u:%g \$R/sda | grep -qx 'block special file:8:0:0:6'"
check "rootless: mkfifo, chown 1001:1001" sh -c "mkfifo -m 620 \$R/fifo && chown 1001:1001 \$R/fifo && stat -c %F:%a:%u \$R/fifo | grep -qx 'fifo:620:1001'"
check "rootless: set-gid file of root" sh -c "touch \$R/sg && chown 0:0 \$R/sg && chmod 2755 \$R/sg && stat -c %a:%u \$R/sg | grep -qx 2755:0"
check "rootless: mkdir, chown 1000:1000, set-gid" sh -c "mkdir \$R/home && chown 1000:1000 \$R/home && chmod 2775 \$R/home && stat -c %u:%g:%a \$R/home | grep -qx 1000:1000:2775"
check "rootless: symlink" sh -c "ln -s /etc/shadow \$R/ln && test \"\\\$(readlink \$R/ln)\" = /etc/shadow"
umount \$R
finish
EOF
    guest_run -t 200 -n "$k-models-rootless" "${GB[@]}" -s "$sock" "$w/job.sh" | count_guest
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] || [ "$rc" = 125 ] && nok "rootless job: guest did not finish (status $rc)"
    hcheck "host (rootless): every file belongs to nobody" \
        test -z "$(find "$e" ! -user 65534 2>/dev/null)"
    hcheck "host (rootless): no device node, symlink or set-id bit" \
        test -z "$(find "$e" \( -type b -o -type c -o -type l -o -perm /6000 \) 2>/dev/null)"
    hcheck "host (rootless): the files are there" test -f "$e/kvm" -a -f "$e/a" -a -d "$e/home" -a -f "$e/sda" -a -f "$e/fifo"
}

# ----------------------------------------------------------------------------
for k in "${kernels[@]}"; do
    kprefix="[$k] "
    tk=$SECONDS
    if ! guest_image "$k"; then
        nok "guest image for kernel $k"
        continue
    fi
    echo "# kernel $k: $(cat "$GUEST_IMAGE/package")"
    want_part 1 && part1 "$k"
    want_part 2 && part2 "$k"
    want_part 3 && part3 "$k"
    want_part 4 && part4 "$k"
    want_part 5 && part5 "$k"
    want_part 6 && part6 "$k"
    want_part 7 && ident_part7 "$k"
    if [ $vhost_ok = 1 ]; then
        want_part 8 && test_workload "$k"
        want_part 9 && test_rootfs "$k"
        want_part 10 && ident_vhost_models "$k"
        want_part 10 && ident_vhost_rootfs "$k"
    fi
    for p in "${servers[@]}"; do guest_server_stop "$p"; done
    servers=()
    echo "# kernel $k: $((SECONDS - tk)) s"
    rm -rf "${work:?}/$k"
done
kprefix=
echo "# total: $((SECONDS - t_start)) s"
summary
