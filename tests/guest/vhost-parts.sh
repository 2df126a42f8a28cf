# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# shellcheck disable=SC2154  # here, work, servers, lockpid: run.sh's
# The guest suite's vhost-user parts (tests/guest/run.sh --transport vhost):
# QEMU's vhost-user-test-device-pci (virtio-id 9) with virtfsd as the
# vhost-user back-end, msize 512000.
#   part 8: workload (mount trans=virtio, host files, 64 MiB write/read
#           back/cmp checked on the host, 1000 files, ls -lR, rm -r,
#           namespace ops checked from the host, xattrs, a POSIX lock
#           conflict with a host process: tests/guest/vhost-progs/vhtool.c)
#           and reconnect (a second VM on the same --vhost-user socket of the
#           same virtfsd process, after the first VM exited)
#   part 9: root file system on virtfsd: a busybox root tree exported by
#           virtfsd; the guest boots with root=TAG rootfstype=9p
#           rootflags=trans=virtio,... through a tiny initramfs that loads
#           the 9p/virtio modules, mounts the root and switch_root's into it;
#           /sbin/init there runs a command, writes a file the host checks,
#           and powers off
#   part 10: security models: one VM with two virtio-9p devices, a
#           mapped-xattr and a mapped-file export, and part 9's root file
#           system on a mapped-xattr export (tests/guest/ident.sh)
# A hostile guest is covered by the unit tests (tests/vhost).
# Sourced by run.sh, which provides ok/nok/check/checke/count_guest (lib.sh),
# $work, $servers and the per-kernel loop; needs QEMU >= 10.2 (the trixie
# chroot of scripts/trixie-qemu.sh, built on first use by vhost-lib.sh).
# Every guest job reports through tests/guest/guest-lib.sh.

VHOST_MSIZE=512000
VHOST_MEM=512M
VHOST_TAG=vfstest
VHOST_ROOTTAG=vfsroot

# vhost_setup: QEMU, static helpers; 0 or 1 (reported).
vhost_setup() {
    # shellcheck source=vhost-lib.sh
    . "$here/vhost-lib.sh"
    vhost_qemu_available || { nok "vhost: no QEMU with vhost-user-test-device-pci"; return 1; }
    vhtool=$VIRTFS_GUEST_CACHE/bin/vhtool
    guest_static_build "$vhtool" "$here/vhost-progs/vhtool.c" ||
        { nok "vhost: static build of vhtool"; return 1; }
    busybox=$(command -v busybox) || { nok "vhost: busybox-static is not installed"; return 1; }
    if command -v file >/dev/null &&
       ! file "$(realpath "$busybox")" 2>/dev/null | grep -q 'statically linked'; then
        nok "vhost: $busybox is not static (install busybox-static)"
        return 1
    fi
    echo "# vhost QEMU: $VHOST_QEMU ($VHOST_QEMU_VERSION), accel: $(guest_accel_args)"
    # shellcheck disable=SC2034  # used in checke's expression
    caps=$("$VIRTFS_SERVER" --print-capabilities 2>&1)
    checke "vhost: virtfsd --print-capabilities reports type 9p" \
        'printf "%s" "$caps" | tr -d " \n" | grep -q "\"type\":\"9p\""'
}

# stop_vd PID: stops a virtfsd started here and forgets it.
stop_vd() {
    local p keep_pids=()
    vhost_virtfsd_stop "$1"
    for p in "${servers[@]}"; do [ "$p" = "$1" ] || keep_pids+=("$p"); done
    servers=("${keep_pids[@]}")
}

# --- (a) + (b): workload and reconnect -----------------------------------------

# The guest jobs report through tests/guest/guest-lib.sh ("ok - ",
# "not ok - ", "T SECONDS STATUS NAME"), counted by run.sh's count_guest.
write_workload_job() {
    local job=$1 hello=$2 md5=$3
    cat > "$job" <<EOF
VHOST_TAG=$VHOST_TAG VHOST_MSIZE=$VHOST_MSIZE HELLO='$hello' HMD5=$md5
EOF
    cat >> "$job" <<'EOF'
. /job/guest-lib.sh
V=/job/bin/vhtool

mount -t 9p -o trans=virtio,version=9p2000.L,msize=$VHOST_MSIZE,uname=root $VHOST_TAG /mnt
g "mount -t 9p trans=virtio $VHOST_TAG" $?
mline=$(grep " /mnt 9p " /proc/mounts)
echo "# $mline"
case $mline in *trans=virtio*msize=$VHOST_MSIZE*|*msize=$VHOST_MSIZE*trans=virtio*) r=0 ;; *) r=1 ;; esac
g "mounted with trans=virtio msize=$VHOST_MSIZE" $r "$mline"
grep -q " /mnt 9p " /proc/mounts || exit 1

# host files
[ "$(cat /mnt/hello.txt)" = "$HELLO" ]; g "read host text file" $?
t_start; m=$(q md5sum /mnt/host8m.bin | cut -d' ' -f1); t_end "read 8 MiB host file"
[ "$m" = "$HMD5" ]; g "md5 of 8 MiB host file" $? "$m"
[ "$(readlink /mnt/hsl)" = hello.txt ]; g "readlink of host symlink" $?
[ "$(stat -c %a /mnt/hmode)" = 600 ]; g "mode of host file 0600" $?
[ "$($V xattr-get /mnt/hello.txt user.host 2>&1)" = hostval ]; g "read host xattr" $?

# 64 MiB write / read back / compare
dd if=/dev/urandom of=/tmp/w bs=1M count=64 2>/dev/null
t_start; q dd if=/tmp/w of=/mnt/big.bin bs=1M conv=fsync 2>/dev/null; r=$?; t_end "dd write 64 MiB conv=fsync"
g "write 64 MiB" $r
echo 3 > /proc/sys/vm/drop_caches
t_start; q dd if=/mnt/big.bin of=/tmp/r bs=1M 2>/dev/null; r=$?; t_end "dd read 64 MiB (cold cache)"
g "read 64 MiB back" $r
cmp /tmp/w /tmp/r; g "cmp 64 MiB read back" $?
rm -f /tmp/r
md5sum /tmp/w | cut -d' ' -f1 > /mnt/big.md5
rm -f /tmp/w

# 1000 files, ls -lR, rm -r
mkdir /mnt/many
t_start
q sh -c 'i=1; while [ $i -le 1000 ]; do echo "file $i" > /mnt/many/f$i || exit 1; i=$((i + 1)); done'
t_end "create 1000 files"
[ "$(q ls /mnt/many | wc -l)" = 1000 ]; g "1000 files listed" $?
t_start; n=$(q sh -c 'n=0; for f in /mnt/many/f*; do read -r x < "$f" && n=$((n + 1)); done; echo $n'); t_end "read 1000 files"
[ "$n" = 1000 ]; g "read 1000 files" $? "$n"
[ "$(cat /mnt/many/f777)" = "file 777" ]; g "content of f777" $?
t_start; l=$(q ls -lR /mnt | wc -l); t_end "ls -lR"
[ "$l" -gt 1000 ]; g "ls -lR lines > 1000" $? "$l"
t_start; q rm -r /mnt/many; r=$?; t_end "rm -r 1000 files"
[ $r = 0 ] && [ ! -e /mnt/many ]; g "rm -r" $?

# namespace operations (checked again on the host)
mkdir -p /mnt/t/d1/d2; g "mkdir -p" $?
echo data > /mnt/t/a && mv /mnt/t/a /mnt/t/d1/b; g "rename file" $?
mv /mnt/t/d1/d2 /mnt/t/d3; g "rename directory" $?
ln -s d1/b /mnt/t/sl && [ "$(cat /mnt/t/sl)" = data ]; g "symlink" $?
ln /mnt/t/d1/b /mnt/t/hl && [ "$(stat -c %h /mnt/t/d1/b)" = 2 ]; g "hard link (nlink 2)" $?
chmod 640 /mnt/t/hl && [ "$(stat -c %a /mnt/t/d1/b)" = 640 ]; g "chmod 640" $?
echo 0123456789 > /mnt/t/tr && truncate -s 4 /mnt/t/tr && [ "$(cat /mnt/t/tr)" = 0123 ]; g "truncate shrink" $?
truncate -s 12345 /mnt/t/big && [ "$(stat -c %s /mnt/t/big)" = 12345 ]; g "truncate grow" $?
touch /mnt/t/gone && rm /mnt/t/gone && [ ! -e /mnt/t/gone ]; g "unlink" $?

# xattrs (static helper; busybox has no setfattr)
$V xattr-set /mnt/t/d1/b user.vfs value1; g "setxattr" $?
[ "$($V xattr-get /mnt/t/d1/b user.vfs)" = value1 ]; g "getxattr" $?
$V xattr-list /mnt/t/d1/b | grep -qx user.vfs; g "listxattr" $?
$V xattr-rm /mnt/hello.txt user.rmme; g "removexattr" $?

# POSIX locks: /mnt/locked is write-locked by a host process
[ "$($V lock-try /mnt/locked 2>&1)" = busy ]; g "F_SETLK conflicts with host lock (EAGAIN)" $?
[ "$($V lock-get /mnt/locked 2>&1)" = wrlck ]; g "F_GETLK reports host write lock" $?
[ "$($V lock-try /mnt/free 2>&1)" = locked ]; g "F_SETLK on unlocked file" $?
[ "$($V lock-local /mnt/free2 2>&1 | tr '\n' ' ')" = "busy locked " ]; g "lock conflict between two guest processes" $?

sync
umount /mnt; g "umount" $?
finish
EOF
}

write_second_job() {
    local job=$1
    cat > "$job" <<EOF
VHOST_TAG=$VHOST_TAG VHOST_MSIZE=$VHOST_MSIZE
EOF
    cat >> "$job" <<'EOF'
. /job/guest-lib.sh
mount -t 9p -o trans=virtio,version=9p2000.L,msize=$VHOST_MSIZE,uname=root $VHOST_TAG /mnt
g "second VM: mount on the same socket" $?
grep -q " /mnt 9p " /proc/mounts || exit 1
[ "$(cat /mnt/t/d1/b 2>&1)" = data ]; g "second VM: sees the first VM's file" $?
echo second > /mnt/second.txt; g "second VM: write" $?
umount /mnt; g "second VM: umount" $?
finish
EOF
}

# run_job NAME JOB [guest_run options]: runs a job with the vhost QEMU and
# counts its checks.  Returns guest_run's status.
run_job() {
    local name=$1 job=$2; shift 2
    VIRTFS_GUEST_QEMU=$VHOST_QEMU guest_run -n "$name" -m "$VHOST_MEM" \
        -f "$here/guest-lib.sh" "$@" "$job" | count_guest
    return "${PIPESTATUS[0]}"
}

test_workload() {
    local k=$1
    local exp=$work/$k/vhost-export sock=$work/$k/vu.sock
    mkdir -p "$exp"
    local hello="hello from the host $k"
    echo "$hello" > "$exp/hello.txt"
    setfattr -n user.host -v hostval "$exp/hello.txt"
    setfattr -n user.rmme -v x "$exp/hello.txt"
    head -c 8M /dev/urandom > "$exp/host8m.bin"
    ln -s hello.txt "$exp/hsl"
    echo m > "$exp/hmode" && chmod 600 "$exp/hmode"
    : > "$exp/free"; : > "$exp/free2"
    local md5
    md5=$(md5sum "$exp/host8m.bin" | cut -d' ' -f1)

    # A host process holds a POSIX write lock on exp/locked.
    rm -f "$work/lock.ready"
    "$vhtool" lock-hold "$exp/locked" 600 "$work/lock.ready" &
    lockpid=$!
    local n=50
    while [ ! -e "$work/lock.ready" ] && [ $n -gt 0 ]; do sleep 0.1; n=$((n - 1)); done

    vhost_virtfsd_start "$VIRTFS_SERVER" "$sock" "$exp" "$VHOST_TAG" ||
        { nok "vhost: virtfsd --vhost-user starts"; return; }
    local vpid=$VHOST_VIRTFSD_PID
    servers+=("$vpid")
    ok "vhost: virtfsd --vhost-user $sock --tag $VHOST_TAG starts"
    vhost_guest_qargs "$sock" "$VHOST_TAG" "$VHOST_MEM"

    local job=$work/$k/vhost-job.sh t0=$SECONDS rc
    write_workload_job "$job" "$hello" "$md5"
    run_job "vhost-workload-$k" "$job" -t 200 -b "$vhtool" "${VHOST_QARGS[@]}"
    rc=$?
    echo "# $k: workload VM: boot to poweroff $((SECONDS - t0)) s"
    check "vhost: workload VM exits with status 0 (got $rc)" [ "$rc" = 0 ]
    kill "$lockpid" 2>/dev/null; wait "$lockpid" 2>/dev/null; lockpid=

    # host-side checks
    checke "vhost: host: 64 MiB file md5 equals the guest's" \
        '[ -s "$exp/big.md5" ] && [ "$(md5sum < "$exp/big.bin" | cut -d" " -f1)" = "$(cat "$exp/big.md5")" ]'
    check "vhost: host: 64 MiB file size" [ "$(stat -c %s "$exp/big.bin" 2>/dev/null)" = 67108864 ]
    checke "vhost: host: rm -r removed many/" '[ -d "$exp/t" ] && [ ! -e "$exp/many" ]'
    check "vhost: host: mkdir -p t/d1" [ -d "$exp/t/d1" ]
    checke "vhost: host: renamed file t/d1/b" '[ ! -e "$exp/t/a" ] && [ "$(cat "$exp/t/d1/b" 2>/dev/null)" = data ]'
    checke "vhost: host: renamed directory t/d3" '[ -d "$exp/t/d3" ] && [ ! -e "$exp/t/d1/d2" ]'
    check "vhost: host: symlink t/sl -> d1/b" [ "$(readlink "$exp/t/sl")" = d1/b ]
    checke "vhost: host: hard link t/hl (same inode, nlink 2)" \
        '[ "$(stat -c %i "$exp/t/hl")" = "$(stat -c %i "$exp/t/d1/b")" ] && [ "$(stat -c %h "$exp/t/d1/b")" = 2 ]'
    check "vhost: host: chmod 640" [ "$(stat -c %a "$exp/t/d1/b" 2>/dev/null)" = 640 ]
    check "vhost: host: truncate shrink (4 bytes)" [ "$(cat "$exp/t/tr" 2>/dev/null)" = 0123 ]
    check "vhost: host: truncate grow (12345 bytes)" [ "$(stat -c %s "$exp/t/big" 2>/dev/null)" = 12345 ]
    check "vhost: host: xattr user.vfs set by the guest" \
        [ "$(getfattr --only-values -n user.vfs "$exp/t/d1/b" 2>/dev/null)" = value1 ]
    checke "vhost: host: xattr user.rmme removed by the guest" \
        '! getfattr -n user.rmme "$exp/hello.txt" >/dev/null 2>&1'

    # (b) a second VM on the same socket, same virtfsd process
    job=$work/$k/vhost-job2.sh
    write_second_job "$job"
    t0=$SECONDS
    run_job "vhost-second-$k" "$job" -t 90 "${VHOST_QARGS[@]}"
    rc=$?
    check "vhost: second VM exits with status 0 (got $rc)" [ "$rc" = 0 ]
    check "vhost: host: second VM's file arrived" [ "$(cat "$exp/second.txt" 2>/dev/null)" = second ]
    check "vhost: the same virtfsd process ($vpid) served both VMs" kill -0 "$vpid"
    check "vhost: virtfsd log: two front-end connections" \
        [ "$(grep -c 'front-end connected' "$sock.log")" = 2 ]
    if grep -qiE ' (error|warn[a-z]*):' "$sock.log"; then
        nok "vhost: virtfsd log has no errors or warnings"
        grep -iE ' (error|warn[a-z]*):' "$sock.log" | head -n 5 | sed 's/^/#   /'
    else
        ok "vhost: virtfsd log has no errors or warnings"
    fi
    stop_vd "$vpid"
    checke "vhost: virtfsd exits on SIGTERM" '! kill -0 "$vpid" 2>/dev/null'
}

# --- (d) root file system on virtfsd -------------------------------------------

# A busybox root tree (shared by both kernels' runs; each writes its own file).
make_root_tree() {
    local r=$1 a
    mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,root,var/log,mnt}
    chmod 1777 "$r/tmp"
    cp "$busybox" "$r/bin/busybox"
    for a in $("$r/bin/busybox" --list); do
        [ "$a" = busybox ] || [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
    printf 'root:x:0:\n' > "$r/etc/group"
    echo virtfs-root > "$r/etc/hostname"
    cat > "$r/sbin/init" <<'EOF'
#!/bin/sh
# /sbin/init of the root file system that virtfsd exports.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp
exec 0</dev/null 1>/dev/console 2>&1
hostname -F /etc/hostname
echo "VIRTFS-ROOT-START pid=$$"
echo "root: $(grep ' / ' /proc/mounts | grep -v rootfs)"
sh /etc/rc.cmd
rc=$?
sync
echo "VIRTFS-ROOT-DONE rc=$rc"
poweroff -f
sleep 5
EOF
    chmod 755 "$r/sbin/init"
    # The command the guest runs from its 9p root.
    cat > "$r/etc/rc.cmd" <<'EOF'
set -e
k=$(uname -r)
grep -q ' / 9p .*trans=virtio' /proc/mounts
echo "kernel=$k hostname=$(hostname) init=$(readlink /proc/1/exe)" > "/from-guest-$k.txt"
mkdir -p /var/log/run-$k
ls /bin | wc -l > /var/log/run-$k/applets
cp /bin/busybox /tmp/bb && cmp /bin/busybox /tmp/bb
mv /var/log/run-$k/applets /var/log/run-$k/applets.txt
echo "wrote /from-guest-$k.txt"
EOF
}

ROOT_INIT='#!/bin/sh
# initramfs /init: load the 9p/virtio modules, mount the 9p root given by
# root= rootfstype= rootflags= (rw|ro) and switch_root into it.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec 0</dev/null 1>/dev/console 2>&1
for m in $(cat /etc/modules.load); do insmod /lib/modules/$m.ko 2>/dev/null; done
root= fstype=auto flags= mode=ro init=/sbin/init
for a in $(cat /proc/cmdline); do
    case $a in
        root=*) root=${a#root=} ;;
        rootfstype=*) fstype=${a#rootfstype=} ;;
        rootflags=*) flags=${a#rootflags=} ;;
        rw) mode=rw ;;
        ro) mode=ro ;;
        init=*) init=${a#init=} ;;
    esac
done
mkdir -p /newroot
n=0
until mount -t "$fstype" -o "$mode${flags:+,$flags}" "$root" /newroot; do
    n=$((n + 1))
    if [ $n -ge 20 ]; then
        echo "VIRTFS-ROOT-FAIL cannot mount $root ($fstype, $flags)"
        poweroff -f
    fi
    sleep 0.5
done
echo "initramfs: mounted $root on /newroot ($fstype $mode,$flags)"
umount /proc /sys
umount /dev 2>/dev/null
exec switch_root /newroot "$init"
echo "VIRTFS-ROOT-FAIL switch_root"
poweroff -f
'

# root_vd_start SOCK EXPORT TAG: a virtfsd for a 9p root file system on
# SOCK, the tag in the --vhost-user PATH,tag=T form; ROOT_VD_PID (also in
# $servers).  Fails when the socket does not appear.  Also used by ident.sh.
root_vd_start() {
    rm -f "$1"
    setsid "$VIRTFS_SERVER" --export "$2" --vhost-user "$1,tag=$3" 2> "$1.log" &
    ROOT_VD_PID=$!
    servers+=("$ROOT_VD_PID")
    guest_wait_socket "$1" 10
}

# boot_9p_root K SOCK TAG LOG: boots kernel K's image with its root file
# system on the vhost-user 9p device at SOCK (tag TAG), through an initramfs
# (the image's modules + ROOT_INIT); console in LOG, QEMU's status in
# ROOT_QRC; shows the time and the console's init lines.  Also used by
# tests/guest/ident.sh.
boot_9p_root() {
    local k=$1 sock=$2 tag=$3 log=$4 t0=$SECONDS
    # initrd = the guest image's initramfs (modules) + a cpio with our /init
    local d=$work/$k/rootinit
    if [ ! -f "$d/initrd" ]; then
        mkdir -p "$d/root"
        printf '%s' "$ROOT_INIT" > "$d/root/init"
        chmod 755 "$d/root/init"
        (cd "$d/root" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -1 > "$d/init.cpio.gz"
        cat "$GUEST_IMAGE/initrd.gz" "$d/init.cpio.gz" > "$d/initrd"
    fi
    local -a q
    mapfile -t q < <(vhost_qemu_args "$sock" "$tag" "$VHOST_MEM")
    # shellcheck disable=SC2046
    timeout -k 5 120 "$VHOST_QEMU" $(guest_accel_args) -M pc -m "$VHOST_MEM" -smp 1 \
        -nodefaults -no-user-config -display none -no-reboot -serial stdio \
        -kernel "$GUEST_IMAGE/vmlinuz" -initrd "$d/initrd" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off root=$tag rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=$VHOST_MSIZE,uname=root rw" \
        "${q[@]}" < /dev/null 2> "$log.qemu" | tr -d '\r' > "$log"
    ROOT_QRC=${PIPESTATUS[0]}
    echo "# $k: 9p root VM ($tag): boot to poweroff $((SECONDS - t0)) s (qemu status $ROOT_QRC)"
    grep -E '^(initramfs:|root:|wrote|VIRTFS-ROOT)' "$log" | sed "s/^/# $k guest: /"
}

test_rootfs() {
    local k=$1
    local r=$work/vhost-rootfs sock=$work/$k/vu-root.sock
    [ -d "$r/bin" ] || make_root_tree "$r"
    local kver
    kver=$(cat "$GUEST_IMAGE/kver")
    rm -f "$r/from-guest-$kver.txt"

    mkdir -p "$work/$k"
    root_vd_start "$sock" "$r" "$VHOST_ROOTTAG" || { nok "vhost: rootfs: virtfsd --vhost-user $sock,tag=$VHOST_ROOTTAG starts"; return; }
    local vpid=$ROOT_VD_PID log=$work/$k/rootfs-console.log
    boot_9p_root "$k" "$sock" "$VHOST_ROOTTAG" "$log"
    local qrc=$ROOT_QRC
    check "vhost: rootfs: initramfs mounted root=$VHOST_ROOTTAG (9p, trans=virtio)" \
        grep -q "^initramfs: mounted $VHOST_ROOTTAG on /newroot" "$log"
    check "vhost: rootfs: /sbin/init from the 9p root ran as PID 1" grep -q '^VIRTFS-ROOT-START pid=1$' "$log"
    check "vhost: rootfs: / is 9p over virtio with msize $VHOST_MSIZE" \
        grep -qE "^root: $VHOST_ROOTTAG / 9p .*msize=$VHOST_MSIZE.*trans=virtio" "$log"
    check "vhost: rootfs: command in the 9p root succeeded" grep -q '^VIRTFS-ROOT-DONE rc=0$' "$log"
    check "vhost: rootfs: host sees /from-guest-$kver.txt" \
        grep -q "^kernel=$kver hostname=virtfs-root init=/bin/busybox" "$r/from-guest-$kver.txt"
    check "vhost: rootfs: host sees /var/log/run-$kver/applets.txt" \
        [ "$(cat "$r/var/log/run-$kver/applets.txt" 2>/dev/null)" -gt 100 ]
    check "vhost: rootfs: guest powered off cleanly (qemu status $qrc)" [ "$qrc" = 0 ]
    if [ "$qrc" != 0 ] || ! grep -q '^VIRTFS-ROOT-DONE rc=0$' "$log"; then
        tail -n 20 "$log" | sed 's/^/#   | /'
    fi
    stop_vd "$vpid"
}

