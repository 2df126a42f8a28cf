#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Layered exports under real Linux 9p clients (Debian kernels 6.1, 6.12):
#
#   tests/guest/overlay.sh [--kernel 6.1|6.12]... [--build DIR] [--keep]
#
# One virtfsd serves vm1=UPPER1,lower=GOLDEN and vm2=UPPER2,lower=GOLDEN.
# Guest 1 reads a lower file, changes one (copy-up), deletes one (whiteout),
# renames one, makes a directory, lists a 2000-entry lower directory and a
# merged one; then guest 2 sees none of that, only the golden tree, and
# makes its own change.  On the host afterwards: the golden tree is
# unchanged byte for byte, and `mount -t overlay` over GOLDEN + each upper
# shows exactly the tree its guest listed (names, types, modes, sizes,
# md5 of every file).  Prints the time to make a clone (an empty
# directory) and to `cp -a` the golden tree.
#
# Prints "ok - ..." / "not ok - ..." per check and "N passed, N failed";
# exits 1 on any failure.  Needs root (virtfsd writes trusted.overlay.*,
# the host mounts overlayfs).  Measured under TCG on a loaded 2-core host:
# 60 s per kernel (two boots), 150-290 s at load ~20.
set -uo pipefail
shopt -s lastpipe

here=$(cd "$(dirname "$0")" && pwd)
kernels=()
keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --kernel) kernels+=("$2"); shift 2 ;;
        --kernel=*) kernels+=("${1#*=}"); shift ;;
        --build) export VIRTFS_BUILD_DIR=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "overlay.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)

# shellcheck source=lib.sh
. "$here/lib.sh"

# ok, nok, hcheck, count_guest, summary: lib.sh

if [ "$(id -u)" != 0 ]; then
    echo "not ok - the overlay guest suite needs root"
    exit 1
fi

work=$(mktemp -d /var/tmp/virtfs-guest-overlay.XXXXXX)
bin=$work/bin
spid=
mnt=
cleanup() {
    [ -n "$spid" ] && guest_server_stop "$spid"
    [ -n "$mnt" ] && umount "$mnt" 2>/dev/null
    if [ $keep = 1 ]; then echo "# kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

if [ ! -x "$VIRTFS_SERVER" ]; then
    nok "server $VIRTFS_SERVER is missing (build it first)"
    summary
    exit 1
fi
guest_static_build "$bin/virtfs-mount" "$VIRTFS_SRC_DIR/tools/virtfs-mount/virtfs-mount.c" ||
    { nok "building virtfs-mount for the guest"; summary; exit 1; }

# The manifest both sides print: one line per path (sorted, C order):
# path, type, permission bits, size, md5 of a file or a symlink's target.
# busybox sh and the host's tools print it identically.  The 2000-entry
# directory is summarised by its count.
cat > "$work/manifest.sh" <<'EOF'
manifest() {
    (cd "$1" && find . ! -path "./many/*" | LC_ALL=C sort | while read -r p; do
        if [ -L "$p" ]; then echo "$p l $(readlink "$p")"
        elif [ -d "$p" ]; then echo "$p d $(stat -c %a "$p")"
        else echo "$p f $(stat -c "%a %s" "$p") $(md5sum < "$p" | cut -d" " -f1)"
        fi
    done; echo "many: $(ls "$1/many" | wc -l)")
}
EOF
. "$work/manifest.sh"

# The golden tree: a few files, a symlink, nested directories, 2000 files.
golden=$work/golden
mkdir -p "$golden/etc" "$golden/usr/share/doc" "$golden/var/log" "$golden/many"
echo golden > "$golden/etc/hostname"
echo "keep me" > "$golden/etc/motd"
echo "delete me" > "$golden/etc/old.conf"
echo "rename me" > "$golden/etc/a.conf"
head -c 1000000 /dev/urandom > "$golden/usr/share/doc/blob"
chmod 0640 "$golden/usr/share/doc/blob"
ln -s ../../etc/hostname "$golden/var/log/link"
for i in $(seq 1 2000); do : > "$golden/many/f$i"; done
# Changes when anything in the tree changes (names, types, modes, owners,
# sizes, mtimes, symlink targets, data).
tree_hash() {
    (cd "$1" && find . -printf '%p %y %m %U:%G %s %T@ %l\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0r md5sum) | md5sum
}
golden_sum=$(tree_hash "$golden")

# Clone timings: a layered clone is an empty directory; the alternative a
# copy of the tree (here 2000 + 7 entries and 1 MB).
t0=$(date +%s%N); mkdir "$work/clone-empty"; t1=$(date +%s%N)
cp -a "$golden" "$work/clone-cp"; t2=$(date +%s%N)
echo "# clone: mkdir $(( (t1 - t0) / 1000 )) us; cp -a of the golden tree ($(find "$golden" | wc -l) entries) $(( (t2 - t1) / 1000 )) us"
rm -rf "$work/clone-empty" "$work/clone-cp"

# job_head NAME: the start of a guest job: mount export NAME on $M.
job_head() {
    cat <<EOF
. /job/guest-lib.sh
. /job/manifest.sh
M=/mnt/v
mkdir -p \$M
check "$1: mount its clone" virtfs-mount --port org.virtfs.0 -o uname=root --aname $1 none \$M
EOF
}

# run_vm NAME: boots a guest on $w/NAME.sh (port org.virtfs.0 = $sock),
# counts its checks; its manifest lines stay in $w/NAME.out.
run_vm() {
    local vm=$1 rc
    # no_timer_check: a TCG guest on a loaded host may fail the IO-APIC
    # timer check at boot and panic
    guest_run -t 240 -a no_timer_check -n "$k-overlay-$vm" -b "$bin/virtfs-mount" -f "$here/guest-lib.sh" \
        -f "$work/manifest.sh" -s "$sock" "$w/$vm.sh" > "$w/$vm.out" 2>&1
    rc=$?
    grep -v '^M ' "$w/$vm.out" | count_guest
    [ "$rc" = 0 ] || nok "$vm job (status $rc, $GUEST_RUN_SECONDS s)"
    echo "# $vm guest: $GUEST_RUN_SECONDS s"
}

for k in "${kernels[@]}"; do
    kprefix="[$k] "
    tk=$SECONDS
    if ! guest_image "$k"; then
        nok "guest image for kernel $k"
        continue
    fi
    w=$work/$k
    mkdir -p "$w"
    sock=$w/s.sock
    # the default sandbox and seccomp filter (the uppers and their work
    # directories share $w, the lower is bound read-only)
    setsid "$VIRTFS_SERVER" --export "vm1=$w/u1,lower=$golden" \
        --export "vm2=$w/u2,lower=$golden" --listen "unix:$sock" \
        2> "$w/server.log" &
    spid=$!
    if ! guest_wait_socket "$sock" 10; then
        nok "virtfsd with two layered exports starts"; tail -n 5 "$w/server.log"
        spid=
        continue
    fi

    { job_head vm1; cat <<EOF
check "vm1: read a lower file" grep -qx golden \$M/etc/hostname
check "vm1: change a lower file (copy-up)" sh -c "echo vm1 > \$M/etc/hostname"
check "vm1: the change reads back" grep -qx vm1 \$M/etc/hostname
check "vm1: append to a 1 MB lower file" sh -c "echo tail >> \$M/usr/share/doc/blob"
check "vm1: delete a lower file (whiteout)" rm \$M/etc/old.conf
check_fails "vm1: the deleted file is gone" test -e \$M/etc/old.conf
check "vm1: rename a lower file" mv \$M/etc/a.conf \$M/etc/b.conf
check "vm1: mkdir and create in a merged dir" sh -c "mkdir \$M/var/log/vm1 && echo x > \$M/var/log/vm1/new"
check "vm1: the symlink resolves to the new hostname" grep -qx vm1 \$M/var/log/link
check "vm1: readdir of a 2000-entry lower dir" test "\$(ls \$M/many | wc -l)" = 2000
check "vm1: delete in the big dir" rm \$M/many/f7
check "vm1: readdir of the merged etc" test "\$(ls \$M/etc | tr '\n' ' ')" = "b.conf hostname motd "
echo 3 > /proc/sys/vm/drop_caches
manifest \$M | sed 's/^/M /'
umount \$M
finish
EOF
    } > "$w/vm1.sh"
    run_vm vm1

    { job_head vm2; cat <<EOF
check "vm2: sees the golden hostname, not vm1's" grep -qx golden \$M/etc/hostname
check "vm2: vm1's deleted file is here" grep -qx "delete me" \$M/etc/old.conf
check "vm2: vm1's renamed file is at its old name" test -f \$M/etc/a.conf -a ! -e \$M/etc/b.conf
check_fails "vm2: vm1's new directory is not here" test -e \$M/var/log/vm1
check "vm2: 2000 entries in the big dir" test "\$(ls \$M/many | wc -l)" = 2000
check "vm2: its own change" sh -c "echo vm2 > \$M/etc/hostname && grep -qx vm2 \$M/etc/hostname"
check "vm2: rmdir a lower-only dir tree" rm -r \$M/usr/share/doc
manifest \$M | sed 's/^/M /'
umount \$M
finish
EOF
    } > "$w/vm2.sh"
    run_vm vm2
    guest_server_stop "$spid"
    spid=

    now_sum=$(tree_hash "$golden")
    hcheck "host: the golden tree is unchanged (names, modes, owners, times, data)" \
        test "$golden_sum" = "$now_sum"
    # The kernel's overlayfs over the same layers shows what each guest saw.
    for vm in vm1 vm2; do
        u=$w/u${vm#vm}
        mnt=$w/mnt-$vm
        mkdir -p "$mnt" "$w/kwork-$vm"
        if mount -t overlay overlay -o "lowerdir=$golden,upperdir=$u,workdir=$w/kwork-$vm" "$mnt"; then
            manifest "$mnt" > "$w/$vm.host"
            umount "$mnt"
            mnt=
            sed -n 's/^M //p' "$w/$vm.out" | tr -d '\r' > "$w/$vm.guest"
            if [ -s "$w/$vm.guest" ] && cmp -s "$w/$vm.guest" "$w/$vm.host"; then
                ok "host: mount -t overlay of golden + $vm's upper shows what $vm saw ($(wc -l < "$w/$vm.host") lines)"
            else
                nok "host: mount -t overlay of golden + $vm's upper shows what $vm saw"
                diff "$w/$vm.guest" "$w/$vm.host" | head -n 10 | sed 's/^/# /'
            fi
        else
            nok "host: mount -t overlay over golden + $vm's upper"
            mnt=
        fi
    done
    echo "# kernel $k: $((SECONDS - tk)) s"
done
kprefix=
summary
