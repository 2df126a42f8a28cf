# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# shellcheck disable=SC2154  # work, servers, VHOST_MSIZE, VHOST_MEM...: the sourcing script's
#
# Identity checks of the guest suites (issue 8), sourced by run.sh after
# lib.sh (the vhost parts also need vhost-parts.sh):
#
#   ident_acl_bundle DIR      copies the host's getfacl and setfacl with the
#                             shared libraries they load into DIR/acl and
#                             writes wrapper scripts DIR/getfacl and
#                             DIR/setfacl that run them through that loader;
#                             the guest gets DIR/acl with guest_run -f and
#                             the wrappers with -b (busybox has no ACL tools)
#   ident_server_start SOCK EXPORT [virtfsd options...]
#                             virtfsd --export EXPORT --listen unix:SOCK with
#                             daemon options (--translate-uid, --all-squash);
#                             sets GUEST_SERVER_PID, log in SOCK.log
#   ident_part7 K             (run.sh part 7) --translate-uid/--translate-gid
#                             maps, forbid-guest, --all-squash and a
#                             nosuid,nodev export, each checked from a guest
#                             and on the host
#   ident_vhost_models K      (part 10) one VM with two virtio-9p devices
#                             served over vhost-user: mapped-xattr and
#                             mapped-file exports
#   ident_vhost_rootfs K      (part 10) the guest's root file system on
#                             virtfsd with security_model=mapped-xattr

ident_acl_bundle() {
    local d=$1 t lib
    mkdir -p "$d/acl" || return 1
    for t in getfacl setfacl; do
        cp -L "$(command -v "$t")" "$d/acl/$t" || return 1
        # Every library ldd names, the dynamic loader included, as files.
        for lib in $(ldd "$(command -v "$t")" | grep -o '/[^ ]*'); do
            cp -L "$lib" "$d/acl/${lib##*/}" || return 1
        done
        printf '#!/bin/sh\nexec /job/acl/ld-linux-x86-64.so.2 --library-path /job/acl /job/acl/%s "$@"\n' \
            "$t" > "$d/$t"
        chmod 755 "$d/$t"
    done
    [ -f "$d/acl/ld-linux-x86-64.so.2" ]
}

ident_server_start() {
    local sock=$1 exp=$2
    shift 2
    rm -f "$sock"
    setsid "$VIRTFS_SERVER" --export "$exp" --listen "unix:$sock" "$@" 2> "$sock.log" &
    GUEST_SERVER_PID=$!
    if ! guest_wait_socket "$sock" 10; then
        guest_die "virtfsd $* did not create $sock; its log:"
        tail -n 20 "$sock.log" >&2
        return 1
    fi
}

# ----------------------------------------------------------------------------
# run.sh part 7: translation, squash, nosuid/nodev
# ----------------------------------------------------------------------------
ident_part7() {
    local k=$1
    local w=$work/$k/p7 et es en rc
    et=$w/translate
    es=$w/squash
    en=$w/nosuid
    mkdir -p "$et" "$es" "$en"
    # translate: guest 1000..1009 <-> host 5000..5009 (uids), 6000.. (gids).
    echo host > "$et/hf"
    chown 5003:6004 "$et/hf"
    ident_server_start "$w/t.sock" "$et" --translate-uid map:1000:5000:10 \
        --translate-gid map:1000:6000:10 --translate-uid forbid-guest:777:1 ||
        { nok "server start (part 7, translate)"; return; }
    servers+=("$GUEST_SERVER_PID")
    # all-squash: the export belongs to nobody, who is every guest user.
    chown 65534:65534 "$es"
    echo secret > "$es/secret"
    chmod 600 "$es/secret"
    ident_server_start "$w/s.sock" "$es" --all-squash ||
        { nok "server start (part 7, all-squash)"; return; }
    servers+=("$GUEST_SERVER_PID")
    guest_server_start "$w/n.sock" "$en" nosuid,nodev ||
        { nok "server start (part 7, nosuid)"; return; }
    servers+=("$GUEST_SERVER_PID")
    cat > "$w/job.sh" <<EOF
. /job/guest-lib.sh
T=/mnt/t S=/mnt/s N=/mnt/n
mkdir -p \$T \$S \$N
check "translate: mount" $(mount_cmd org.virtfs.0 "$et" '$T' cache=none)
check "translate: host 5003:6004 shows as 1003:1004" sh -c "stat -c %u:%g \$T/hf | grep -qx 1003:1004"
check "translate: chown 1002:1005" sh -c "touch \$T/c && chown 1002:1005 \$T/c && stat -c %u:%g \$T/c | grep -qx 1002:1005"
check "translate: set-gid directory of group 1003 gives its group to a new file" \
    sh -c "mkdir \$T/sg && chown 0:1003 \$T/sg && chmod 2775 \$T/sg && touch \$T/sg/x && stat -c %g \$T/sg/x | grep -qx 1003"
check "translate: ids outside the rules unchanged (chown 2000:2001)" sh -c "touch \$T/o && chown 2000:2001 \$T/o && stat -c %u:%g \$T/o | grep -qx 2000:2001"
touch \$T/forbidden
check "translate: forbid-guest:777 refuses chown 777 with EPERM" sh -c "chown 777 \$T/forbidden 2>&1 | grep -q 'Operation not permitted'"
check "all-squash: mount" $(mount_cmd org.virtfs.1 "$es" '$S' cache=none)
check "all-squash: guest root creates a file" sh -c "echo x > \$S/a"
check "all-squash: the file belongs to 65534:65534" sh -c "stat -c %u:%g \$S/a | grep -qx 65534:65534"
chown 0:0 \$S/a 2>/dev/null
check "all-squash: after chown 0:0 still 65534:65534" sh -c "stat -c %u:%g \$S/a | grep -qx 65534:65534"
check_fails "all-squash: guest root cannot read the host's 0600 root file" cat \$S/secret
check "nosuid,nodev: mount" $(mount_cmd org.virtfs.2 "$en" '$N' cache=none)
check "nodev: mknod c 1 3 fails with EPERM" sh -c "mknod \$N/null c 1 3 2>&1 | grep -q 'Operation not permitted'"
check "nodev: mknod b 7 0 fails with EPERM" sh -c "mknod \$N/loop b 7 0 2>&1 | grep -q 'Operation not permitted'"
check "nosuid: a file the guest makes set-uid" sh -c "echo x > \$N/su && chmod 4755 \$N/su"
umount \$T; umount \$S; umount \$N
finish
EOF
    guest_run -t 200 -n "$k-translate" "${GB[@]}" -s "$w/t.sock" -s "$w/s.sock" -s "$w/n.sock" \
        "$w/job.sh" | count_guest
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] || [ "$rc" = 125 ] && nok "part 7 job: guest did not finish (status $rc)"
    server_warnings "$w/t.sock.log"
    hcheck "host (translate): guest 1002:1005 is 5002:6005" \
        test "$(stat -c %u:%g "$et/c" 2>/dev/null)" = 5002:6005
    hcheck "host (translate): the set-gid directory's new file has group 6003" \
        test "$(stat -c %g "$et/sg/x" 2>/dev/null)" = 6003
    hcheck "host (translate): 2000:2001 untranslated" \
        test "$(stat -c %u:%g "$et/o" 2>/dev/null)" = 2000:2001
    hcheck "host (translate): forbidden file still root's" \
        test "$(stat -c %u "$et/forbidden" 2>/dev/null)" = 0
    hcheck "host (all-squash): every file the guest made is 65534:65534" \
        test "$(stat -c %u:%g "$es/a" 2>/dev/null)" = 65534:65534
    hcheck "host (all-squash): secret untouched" test "$(cat "$es/secret")" = secret
    hcheck "host (nosuid): the guest's set-uid file is 0755 here" \
        test "$(stat -c %a "$en/su" 2>/dev/null)" = 755
    hcheck "host (nodev): no device node" \
        test -z "$(find "$en" \( -type b -o -type c \) 2>/dev/null)"
}

# ----------------------------------------------------------------------------
# run.sh part 10 (vhost-parts.sh): the mapped models over vhost-user, root
# file system mapped-xattr
# ----------------------------------------------------------------------------

# The guest job of one mapped export on virtio-9p tag TAG (guest-lib.sh's
# protocol).  Args: TAG MNT MODEL
_ident_vhost_model_job() {
    local tag=$1 mnt=$2 m=$3
    cat <<EOF
M=$mnt
mkdir -p \$M
mount -t 9p -o trans=virtio,version=9p2000.L,msize=$VHOST_MSIZE,cache=none,access=user $tag \$M
g "$m: mount -t 9p trans=virtio $tag" \$?
touch \$M/f && chown 1234:5678 \$M/f && [ "\$(stat -c %u:%g \$M/f)" = 1234:5678 ]; g "$m: chown 1234:5678" \$?
chmod 4755 \$M/f && [ "\$(stat -c %a \$M/f)" = 4755 ]; g "$m: chmod 4755" \$?
mknod \$M/kvm c 10 232 && [ "\$(stat -c %F:%t:%T \$M/kvm)" = "character special file:a:e8" ]; g "$m: mknod c 10 232" \$?
mknod \$M/loop b 7 0 && [ "\$(stat -c %F:%t:%T \$M/loop)" = "block special file:7:0" ]; g "$m: mknod b 7 0" \$?
mkfifo \$M/fifo && [ -p \$M/fifo ]; g "$m: mkfifo" \$?
ln -s /etc/shadow \$M/sl && [ "\$(readlink \$M/sl)" = /etc/shadow ]; g "$m: symlink" \$?
ln \$M/f \$M/hl && [ "\$(stat -c %h:%u \$M/hl)" = 2:1234 ]; g "$m: hard link shares the owner" \$?
mkdir \$M/d && chown 1000:1000 \$M/d && chmod 2775 \$M/d && touch \$M/d/x && [ "\$(stat -c %u:%g:%a \$M/d)" = 1000:1000:2775 ]; g "$m: set-gid directory" \$?
[ "\$(stat -c %g \$M/d/x)" = 1000 ]; g "$m: new file in it has group 1000" \$?
umount \$M; g "$m: umount" \$?
EOF
}

ident_vhost_models() {
    local k=$1
    local m ex=$work/mx-$k ef=$work/mf-$k sx=$work/mx-$k.sock sf=$work/mf-$k.sock
    local vx vf rc job=$work/models-$k.sh
    mkdir -p "$ex" "$ef"
    vhost_virtfsd_start "$VIRTFS_SERVER" "$sx" "$ex,security_model=mapped-xattr" vfsmx ||
        { nok "vhost: virtfsd --vhost-user mapped-xattr starts"; return; }
    vx=$VHOST_VIRTFSD_PID
    servers+=("$vx")
    vhost_virtfsd_start "$VIRTFS_SERVER" "$sf" "$ef,security_model=mapped-file" vfsmf ||
        { nok "vhost: virtfsd --vhost-user mapped-file starts"; return; }
    vf=$VHOST_VIRTFSD_PID
    servers+=("$vf")
    {
        echo '. /job/guest-lib.sh'
        _ident_vhost_model_job vfsmx /mnt/x mapped-xattr
        _ident_vhost_model_job vfsmf /mnt/f mapped-file
        echo finish
    } > "$job"
    # Two vhost-user devices on one shared memory backend.
    vhost_guest_qargs "$sx" vfsmx "$VHOST_MEM"
    VHOST_QARGS+=(-q -chardev -q "socket,id=vfs2,path=$sf"
        -q -device -q "vhost-user-test-device-pci,chardev=vfs2,virtio-id=9,num_vqs=1,vq_size=1024,config_size=$((2 + 5))")
    local t0=$SECONDS
    run_job "vhost-models-$k" "$job" -t 200 "${VHOST_QARGS[@]}"
    rc=$?
    echo "# $k: mapped models VM: boot to poweroff $((SECONDS - t0)) s"
    check "vhost: mapped models VM exits with status 0 (got $rc)" [ "$rc" = 0 ]
    for m in mapped-xattr:"$ex" mapped-file:"$ef"; do
        local d=${m#*:}
        m=${m%%:*}
        check "vhost: host ($m): no device node, fifo, symlink or set-id file" \
            [ -z "$(find "$d" \( -type b -o -type c -o -type p -o -type l -o -perm /6000 \) 2>/dev/null)" ]
        check "vhost: host ($m): every file is root's (the daemon's)" \
            [ -z "$(find "$d" ! -user 0 2>/dev/null)" ]
        check "vhost: host ($m): the guest's files are there" [ -f "$d/kvm" ] && [ -f "$d/d/x" ]
    done
    check "vhost: host (mapped-xattr): owner 1234 in user.virtfs.uid" \
        [ "$(getfattr --only-values -n user.virtfs.uid "$ex/f" 2>/dev/null | od -An -tu4 | tr -d ' ')" = 1234 ]
    check "vhost: host (mapped-file): owner 1234 in .virtfs_metadata/f" \
        grep -qx 'virtfs.uid=1234' "$ef/.virtfs_metadata/f"
    stop_vd "$vx"
    stop_vd "$vf"
}

ident_vhost_rootfs() {
    local k=$1
    local r=$work/rootfs-mapped sock=$work/rootm-$k.sock tag=vfsrootm
    local kver
    kver=$(cat "$GUEST_IMAGE/kver")
    if [ ! -d "$r/bin" ]; then
        make_root_tree "$r"
        cat > "$r/etc/rc.cmd" <<'EOF'
set -e
k=$(uname -r)
grep -q ' / 9p .*trans=virtio' /proc/mounts
d=/var/lib/m-$k
mkdir -p $d
mknod $d/null c 1 3
touch /suid-$k && chmod 4755 /suid-$k
chown 1000:1000 $d/null
mkdir $d/home && chown 1000:100 $d/home && chmod 2770 $d/home
echo "null=$(stat -c %F:%u:%g $d/null) suid=$(stat -c %a /suid-$k) home=$(stat -c %u:%g:%a $d/home)" > /mapped-$k.txt
echo x > $d/null
echo "wrote /mapped-$k.txt"
EOF
    fi
    rm -f "$r/mapped-$kver.txt"
    root_vd_start "$sock" "$r,security_model=mapped-xattr" "$tag" ||
        { nok "vhost: mapped rootfs: virtfsd starts"; return; }
    local vpid=$ROOT_VD_PID log=$work/$k/rootfs-mapped-console.log
    boot_9p_root "$k" "$sock" "$tag" "$log"
    local qrc=$ROOT_QRC
    check "vhost: mapped rootfs: /sbin/init from the mapped-xattr root ran as PID 1" \
        grep -q '^VIRTFS-ROOT-START pid=1$' "$log"
    check "vhost: mapped rootfs: its commands (mknod, chown, set-id bits) succeeded" \
        grep -q '^VIRTFS-ROOT-DONE rc=0$' "$log"
    check "vhost: mapped rootfs: the guest saw a device 1000:1000, a set-uid file, a set-gid home" \
        grep -qx "null=character special file:1000:1000 suid=4755 home=1000:100:2770" "$r/mapped-$kver.txt"
    check "vhost: mapped rootfs: host: no device node, no set-id file" \
        [ -z "$(find "$r" \( -type b -o -type c -o -perm /6000 \) 2>/dev/null)" ]
    check "vhost: mapped rootfs: host: every file is root's (the daemon's)" \
        [ -z "$(find "$r" ! -user 0 2>/dev/null)" ]
    if [ "$qrc" != 0 ] || ! grep -q '^VIRTFS-ROOT-DONE rc=0$' "$log"; then
        tail -n 20 "$log" | sed 's/^/#   | /'
    fi
    stop_vd "$vpid"
}
