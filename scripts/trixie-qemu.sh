#!/bin/sh
# SPDX-License-Identifier: MIT
#
# QEMU >= 10.2 (for vhost-user-test-device-pci) on a Debian 12 host: a cached
# Debian trixie chroot with qemu-system-x86 from trixie-backports, and a
# wrapper that runs that QEMU with the host's /dev, /proc and /tmp.
#
#   scripts/trixie-qemu.sh build             build the chroot if missing
#   scripts/trixie-qemu.sh root              print the chroot folder (builds)
#   scripts/trixie-qemu.sh run ARGS...       run qemu-system-x86_64 ARGS...
#   scripts/trixie-qemu.sh exec CMD ARGS...  run any command in the chroot
#
# Cache: $VIRTFS_GUEST_CACHE (default /var/cache/virtfs-guest)/trixie-qemu.
# Extra host folders to make visible at the same path inside the chroot:
# VIRTFS_QEMU_BINDS="/dir1:/dir2" (/tmp is always bound).
# Needs root (debootstrap, unshare, chroot) and Debian's archive on first use
# (about 95 s and 260 MB).  The binds live in a private mount namespace, so
# they vanish when QEMU exits and the host mount table stays clean.
set -eu

CACHE=${VIRTFS_GUEST_CACHE:-/var/cache/virtfs-guest}
ROOT=$CACHE/trixie-qemu
MIRROR=${VIRTFS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() {
    echo "trixie-qemu: $*" >&2
    exit 1
}

build() {
    [ -e "$ROOT/.virtfs-done" ] && return 0
    [ "$(id -u)" = 0 ] || die "building the chroot needs root"
    command -v debootstrap >/dev/null ||
        die "debootstrap missing (apt-get install debootstrap)"
    mkdir -p "$CACHE"
    # One builder at a time; the others wait and then find it done.
    exec 9>"$CACHE/.trixie-qemu.lock"
    flock 9
    if [ -e "$ROOT/.virtfs-done" ]; then
        return 0
    fi
    tmp=$ROOT.tmp
    rm -rf "$tmp"
    echo "trixie-qemu: debootstrap trixie into $tmp" >&2
    debootstrap --variant=minbase trixie "$tmp" "$MIRROR" >&2 ||
        die "debootstrap failed (log: $tmp/debootstrap/debootstrap.log)"
    echo "deb $MIRROR trixie-backports main" \
        >"$tmp/etc/apt/sources.list.d/backports.list"
    cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
    unshare --mount --propagation private sh -c '
        mount -t proc proc "$0/proc"
        chroot "$0" sh -c "apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends -t trixie-backports \
                qemu-system-x86 &&
            apt-get clean"' "$tmp" >&2 || die "apt-get in the chroot failed"
    rm -rf "$tmp/var/lib/apt/lists/"* "$tmp/var/cache/apt/"*.bin
    rm -rf "$ROOT"
    mv "$tmp" "$ROOT"
    touch "$ROOT/.virtfs-done"
    echo "trixie-qemu: ready: $("$0" exec qemu-system-x86_64 --version |
        head -n 1)" >&2
}

# Run "$@" inside the chroot, with /dev, /proc, /tmp and the extra binds.
in_chroot() {
    [ "$(id -u)" = 0 ] || die "running the chroot's QEMU needs root"
    unshare --mount --propagation private sh -c '
        R=$0
        mount --rbind /dev "$R/dev"
        mount -t proc proc "$R/proc"
        mount --bind /tmp "$R/tmp"
        IFS=:
        for d in ${VIRTFS_QEMU_BINDS:-}; do
            [ -n "$d" ] || continue
            mkdir -p "$R$d"
            mount --rbind "$d" "$R$d"
        done
        unset IFS
        cd /
        exec chroot "$R" "$@"' "$ROOT" "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
build)
    build
    ;;
root)
    build
    echo "$ROOT"
    ;;
run)
    build
    in_chroot qemu-system-x86_64 "$@"
    ;;
exec)
    build
    [ $# -gt 0 ] || die "exec needs a command"
    in_chroot "$@"
    ;;
*)
    echo "usage: $0 build|root|run QEMU-ARGS...|exec CMD..." >&2
    exit 2
    ;;
esac
