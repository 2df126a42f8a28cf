#!/bin/bash
# SPDX-License-Identifier: MIT
#
# VirtFS in one command: a Linux guest mounts a host directory through
# virtfsd.  On a fresh Debian 12 machine, as root, from a checkout:
#
#   bash scripts/demo.sh [DIR]
#
# Installs what it needs (apt-get), builds VirtFS (meson + ninja), starts
# virtfsd exporting DIR (default: a demo directory with a few files), boots a
# Debian kernel under QEMU (KVM when usable, TCG otherwise) that mounts the
# export, lists the host's files, writes one, and checks on the host that the
# file arrived.  Exit status 0 only when the host saw the guest's file.
#
# Transport: with a QEMU >= 10.2 at hand (the host's, or the trixie chroot of
# scripts/trixie-qemu.sh once built), virtfsd is the vhost-user back-end of a
# virtio-9p device and the guest mounts with trans=virtio; otherwise (Debian
# 12's QEMU 7.2) the guest reaches virtfsd's socket through a virtio-serial
# port and mounts with the virtfs-mount helper.
#
# Environment: VIRTFS_DEMO_TRANSPORT (auto (default), vhost: build the trixie
# QEMU if needed, serial), VIRTFS_DEMO_KERNEL (6.1 default, or 6.12),
# VIRTFS_BUILD_DIR (default build), VIRTFS_GUEST_CACHE (default
# /var/cache/virtfs-guest).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
step=0
nsteps=7
say() { step=$((step + 1)); printf '==> [%d/%d] %s\n' "$step" "$nsteps" "$*"; }
fail() { printf '==> demo FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (apt-get, and QEMU needs /dev access)"

say "installing dependencies (scripts/setup-deps.sh)"
bash scripts/setup-deps.sh 2>&1 | sed 's/^/    /'

export VIRTFS_BUILD_DIR=${VIRTFS_BUILD_DIR:-$top/build}
say "building VirtFS in $VIRTFS_BUILD_DIR (meson + ninja)"
if [ ! -f "$VIRTFS_BUILD_DIR/build.ninja" ]; then
    meson setup "$VIRTFS_BUILD_DIR" > "$VIRTFS_BUILD_DIR.setup.log" 2>&1 ||
        { cat "$VIRTFS_BUILD_DIR.setup.log"; fail "meson setup failed"; }
fi
ninja -C "$VIRTFS_BUILD_DIR" > "$VIRTFS_BUILD_DIR.ninja.log" 2>&1 ||
    { tail -n 30 "$VIRTFS_BUILD_DIR.ninja.log"; fail "build failed (log: $VIRTFS_BUILD_DIR.ninja.log)"; }
virtfsd=$VIRTFS_BUILD_DIR/tools/virtfsd/virtfsd
[ -x "$virtfsd" ] || fail "$virtfsd was not built"
export VIRTFS_SERVER=$virtfsd
mkdir -p "$VIRTFS_BUILD_DIR/guest"
# The guest helper is linked statically: the initramfs has no libc.
mount_helper=$VIRTFS_BUILD_DIR/guest/virtfs-mount
gcc -static -O2 -DVIRTFS_VERSION="\"$(sh scripts/version.sh)\"" \
    -o "$mount_helper" tools/virtfs-mount/virtfs-mount.c ||
    fail "static build of virtfs-mount failed"
echo "    virtfsd: $virtfsd"
echo "    guest helper: $mount_helper (static)"

# shellcheck source=../tests/guest/lib.sh
. tests/guest/lib.sh
kernel=${VIRTFS_DEMO_KERNEL:-6.1}
say "getting a Debian $kernel guest kernel and building its initramfs (cached in $VIRTFS_GUEST_CACHE)"
guest_image "$kernel" 2>&1 | sed 's/^/    /'
guest_image "$kernel" 2>/dev/null || fail "guest image"
echo "    kernel $(cat "$GUEST_IMAGE/kver"): $GUEST_IMAGE"

if [ $# -ge 1 ]; then
    export_dir=$(cd "$1" && pwd) || fail "no such directory: $1"
else
    export_dir=${TMPDIR:-/tmp}/virtfs-demo
    mkdir -p "$export_dir/docs"
    echo "Hello from the host ($(hostname))." > "$export_dir/hello.txt"
    printf 'VirtFS demo\nThis directory lives on the host and is shared with the guest.\n' \
        > "$export_dir/README.txt"
    seq 1 1000 > "$export_dir/docs/numbers.txt"
fi
guest_file=from-guest.txt
token="virtfs-demo-$$-$RANDOM$RANDOM"
rm -f "$export_dir/$guest_file"

work=$(mktemp -d "${TMPDIR:-/tmp}/virtfs-demo-run.XXXXXX")
sock=$work/virtfs.sock
server_pid=
cleanup() {
    if [ "${transport:-}" = vhost ]; then
        [ -z "$server_pid" ] || vhost_virtfsd_stop "$server_pid"
    else
        guest_server_stop "$server_pid"
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=../tests/guest/vhost-lib.sh
. tests/guest/vhost-lib.sh
transport=${VIRTFS_DEMO_TRANSPORT:-auto}
case $transport in
    auto)
        # vhost-user when a QEMU >= 10.2 is there without building anything
        transport=serial
        if { command -v qemu-system-x86_64 >/dev/null &&
             _vhost_qemu_has_device qemu-system-x86_64; } ||
           [ -e "$VHOST_GUEST_CACHE/trixie-qemu/.virtfs-done" ]; then
            vhost_qemu_available -q && transport=vhost
        fi ;;
    vhost) vhost_qemu_available || fail "no QEMU >= 10.2 with vhost-user-test-device-pci" ;;
    serial) ;;
    *) fail "VIRTFS_DEMO_TRANSPORT must be auto, vhost or serial" ;;
esac
tag=demo
mem=512M
qargs=()
if [ "$transport" = vhost ]; then
    say "starting virtfsd --export $export_dir --vhost-user $sock --tag $tag"
    vhost_virtfsd_start "$virtfsd" "$sock" "$export_dir" "$tag" ||
        fail "virtfsd did not start (log: $sock.log)"
    server_pid=$VHOST_VIRTFSD_PID
    vhost_guest_qargs "$sock" "$tag" "$mem"
    qargs=("${VHOST_QARGS[@]}")
    export VIRTFS_GUEST_QEMU=$VHOST_QEMU
    how="trans=virtio: virtio-9p device, virtfsd as its vhost-user back-end, $VHOST_QEMU_VERSION"
    mount_cmd="mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,uname=root $tag /mnt/host"
else
    say "starting virtfsd --export $export_dir --listen unix:$sock"
    guest_server_start "$sock" "$export_dir" || fail "virtfsd did not start (log: $sock.log)"
    server_pid=$GUEST_SERVER_PID
    qargs=(-s "$sock")
    how="virtfs-mount over the virtio-serial port org.virtfs.0 (trans=fd)"
    mount_cmd="virtfs-mount --aname '$export_dir' -o uname=root none /mnt/host"
fi

cat > "$work/job.sh" <<EOF
echo "    guest: Linux \$(uname -r) is up (\$(cut -d' ' -f1 /proc/uptime) s)"
echo "==> [6/$nsteps] guest: mounting the export: $how"
mkdir -p /mnt/host
$mount_cmd || exit 1
grep ' /mnt/host ' /proc/mounts | sed 's/^/    guest: /'
echo "    guest: ls -l /mnt/host"
ls -l /mnt/host | sed 's/^/    guest:   /'
echo "    guest: cat /mnt/host/hello.txt"
cat /mnt/host/hello.txt 2>&1 | sed 's/^/    guest:   /'
echo "    guest: writing /mnt/host/$guest_file"
printf 'written by the guest (Linux %s)\n%s\n' "\$(uname -r)" '$token' > /mnt/host/$guest_file || exit 1
sync
umount /mnt/host || exit 1
echo "    guest: unmounted; powering off"
EOF

accel=tcg
guest_kvm_usable && accel=kvm
say "booting the guest under QEMU ($accel; about 10-30 s under TCG)"
t0=$SECONDS
rc=0
guest_run -t 240 -n demo -m "$mem" -b "$mount_helper" "${qargs[@]}" "$work/job.sh" || rc=$?
echo "    guest finished in $((SECONDS - t0)) s with status $rc"
[ $rc = 0 ] || fail "the guest job failed (status $rc); server log: $sock.log"

step=$((step + 1))   # step 6 was printed by the guest
say "checking on the host: $export_dir/$guest_file"
if [ -f "$export_dir/$guest_file" ] && grep -qx "$token" "$export_dir/$guest_file"; then
    sed 's/^/    host: /' "$export_dir/$guest_file"
    echo "==> demo OK: the host sees the file the guest wrote"
    exit 0
fi
fail "the guest's file is missing or wrong on the host"
