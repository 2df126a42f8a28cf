#!/bin/bash
# SPDX-License-Identifier: MIT
# Idempotent dependency installer for VirtFS (build, guest tests, demo).
# Debian 12 (bookworm), run as root.  Safe to run repeatedly: it only calls
# apt-get when something is missing.
#
#   scripts/setup-deps.sh            build + guest-test dependencies
#   scripts/setup-deps.sh --build    build dependencies only
#   scripts/setup-deps.sh --check    exit 1 if anything is missing, install nothing
#
# It also makes sure bookworm-backports is in the apt sources (the guest suite
# boots the 6.12 kernel from there).
set -euo pipefail

BUILD_PKGS=(meson ninja-build gcc clang libclang-rt-14-dev libc6-dev pkg-config python3
            libseccomp-dev libcap-ng-dev systemd dpkg-dev valgrind
            clang-tidy-14 clang-format-14
            uidmap   # uidmap: newuidmap/newgidmap, tests/sandbox --uid-map
            liburing-dev)  # bench/floor --uring
GUEST_PKGS=(qemu-system-x86 debootstrap busybox-static cpio xz-utils socat attr acl linux-libc-dev
            ca-certificates xfsprogs)  # xfsprogs: the overlay reflink test
mode=all
case "${1:-}" in
    --build) mode=build ;;
    --check) mode=check ;;
    ""|--all) ;;
    *) echo "usage: $0 [--build|--check|--all]" >&2; exit 2 ;;
esac

log() { printf '[setup-deps] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ] && [ "$mode" != check ]; then
    log "must run as root (apt-get install)"; exit 1
fi

pkgs=("${BUILD_PKGS[@]}")
[ "$mode" = build ] || pkgs+=("${GUEST_PKGS[@]}")

have_backports() {
    grep -rqsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null
}

missing=()
for p in "${pkgs[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing+=("$p")
done

if [ "$mode" = check ]; then
    rc=0
    [ ${#missing[@]} -eq 0 ] || { log "missing packages: ${missing[*]}"; rc=1; }
    have_backports || { log "bookworm-backports not in apt sources"; rc=1; }
    exit $rc
fi

need_update=0
if [ "$mode" != build ] && ! have_backports; then
    log "adding bookworm-backports to /etc/apt/sources.list.d/virtfs-backports.sources"
    cat > /etc/apt/sources.list.d/virtfs-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    need_update=1
fi
# apt lists that were never fetched (fresh container) also need an update.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 ||
   { [ "$mode" != build ] && ! ls /var/lib/apt/lists/*bookworm-backports*_Packages* >/dev/null 2>&1; }; then
    need_update=1
fi
if [ ${#missing[@]} -gt 0 ]; then
    need_update=1
fi

export DEBIAN_FRONTEND=noninteractive
if [ $need_update = 1 ]; then
    log "apt-get update"
    apt-get update -qq >&2 || { log "apt-get update failed"; exit 1; }
fi
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
log "dependencies ok"
