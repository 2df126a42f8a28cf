#!/bin/bash
# SPDX-License-Identifier: MIT
# The sandbox of a running virtfsd, seen from the host (TAP):
#   /proc/PID/status of the confined process (Seccomp, NoNewPrivs, CapEff,
#   CapBnd ...), /proc/PID/root holding only the exports and /proc, the
#   start log line, every transport still serving (Unix, TCP, vhost-user
#   reconnect), --modcaps, read-only exports, and each --seccomp action
#   against a system call outside the allow-list (virtfsd-testhooks).
# Usage: t-sandbox.sh VIRTFSD VIRTFSD_TESTHOOKS VIRTFS       (needs root)
set -u
VIRTFSD=$1
HOOKS=$2
VIRTFS=$3
T=$(mktemp -d /tmp/vfst-sbx-XXXXXX)
EX=$T/export
mkdir -p "$EX" "$T/ro"
echo hello >"$EX/a"
echo ro >"$T/ro/r"
n=0
failed=0
pids=()

ok() {   # ok DESC CMD...
    local desc=$1; shift
    n=$((n + 1))
    if "$@" >"$T/out" 2>"$T/err"; then
        echo "ok $n - $desc"
    else
        failed=$((failed + 1))
        echo "not ok $n - $desc"
        sed 's/^/# /' "$T/out" "$T/err" | head -20
    fi
}
check() { ok "$1" bash -c "$2"; }
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    # the subordinate ranges this test added (same inodes, old contents)
    [ -f "$T/subuid.bak" ] && cat "$T/subuid.bak" >/etc/subuid
    [ -f "$T/subgid.bak" ] && cat "$T/subgid.bak" >/etc/subgid
    rm -rf "$T"
}
trap cleanup EXIT

# start NAME ARGS...: virtfsd in the background, stderr to $T/NAME.log,
# pid file $T/NAME.pid; waits for the start log line.  Sets PID (the
# process started) and CPID (the confined daemon: its child in namespace
# mode, itself otherwise).
start() {
    local name=$1; shift
    local bin=$VIRTFSD
    if [ "$1" = hooks ]; then bin=$HOOKS; shift; fi
    "$bin" --pid-file "$T/$name.pid" "$@" 2>"$T/$name.log" &
    PID=$!
    pids+=("$PID")
    for _ in $(seq 500); do
        grep -q 'sandbox: ' "$T/$name.log" 2>/dev/null && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.01
    done
    sleep 0.1
    CPID=$PID
    if [ -r "/proc/$PID/task/$PID/children" ]; then
        read -r c _ <"/proc/$PID/task/$PID/children" || true
        [ -n "${c:-}" ] && CPID=$c
    fi
}
stop() { kill -TERM "$PID" 2>/dev/null; wait "$PID"; }
field() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$CPID/status"; }

if [ "$(id -u)" != 0 ]; then
    echo "1..0 # needs root"
    exit 1   # a skip must not count as a pass
fi

# --- defaults: namespace, seccomp kill, the read-write capability set ---
S=$T/s.sock
port=$((20000 + RANDOM % 20000))
start def --export "$EX" --listen "unix:$S" --listen "tcp:127.0.0.1:$port"
check "start log line: mode, seccomp action, capabilities" \
    "grep -q 'sandbox: namespace, seccomp kill, capabilities kept: chown,dac_override,dac_read_search,fowner,fsetid,setgid,setuid,mknod' '$T/def.log'"
check "the daemon is another process than the one started (pid 1 of its namespace)" \
    "[ '$CPID' != '$PID' ] && grep -q '^NSpid:.*[[:space:]]1\$' /proc/$CPID/status"
check "Seccomp: 2 (filter)" "[ '$(field Seccomp)' = 2 ]"
check "NoNewPrivs: 1" "[ '$(field NoNewPrivs)' = 1 ]"
check "CapEff = CapPrm = the 8 file-system capabilities (0x80000df)" \
    "[ '$(field CapEff)' = 00000000080000df ] && [ '$(field CapPrm)' = 00000000080000df ]"
check "CapBnd, CapAmb, CapInh empty" \
    "[ '$(field CapBnd)' = 0000000000000000 ] && [ '$(field CapAmb)' = 0000000000000000 ] && [ '$(field CapInh)' = 0000000000000000 ]"
# everything reachable by path from inside: the export's path and /proc
(cd "/proc/$CPID/root" && find . -path ./proc -prune -print -o -print | sort) >"$T/tree"
etc=$(for f in passwd group nsswitch.conf; do [ -e /etc/$f ] && echo ./etc/$f; done)
printf '%s\n' . ./proc $(p=.; IFS=/; for c in ${EX#/}; do p=$p/$c; echo "$p"; done) \
    "./${EX#/}/a" ${etc:+./etc} $etc | sort >"$T/want"
check "/proc/PID/root holds only the export (at its path), /proc and the user databases" "diff '$T/want' '$T/tree'"
check "no /etc/shadow, /usr, /home inside" "[ ! -e /proc/$CPID/root/etc/shadow ] && [ ! -e /proc/$CPID/root/usr ] && [ ! -e /proc/$CPID/root/home ]"
check "Tattach by user name (uname root, no n_uname) resolves inside" \
    "[ \"\$('$VIRTFS' -s unix:$S -u root --uid 4294967295 cat /a)\" = hello ]"
check "/proc inside shows only the daemon's pid namespace" \
    "[ \"\$(ls /proc/$CPID/root/proc | grep -c '^[0-9]')\" = 1 ]"
check "its network namespace is not the host's" \
    "[ \"\$(readlink /proc/$CPID/ns/net)\" != \"\$(readlink /proc/self/ns/net)\" ]"
check "its mount namespace is not the host's" \
    "[ \"\$(readlink /proc/$CPID/ns/mnt)\" != \"\$(readlink /proc/self/ns/mnt)\" ]"
check "Unix socket: read a file" "[ \"\$('$VIRTFS' -s unix:$S cat /a)\" = hello ]"
check "Unix socket: write a file, host sees it" \
    "echo w > $T/w && '$VIRTFS' -s unix:$S put $T/w /w && [ \"\$(cat $EX/w)\" = w ]"
check "Unix socket: mkdir, mv, rm" \
    "'$VIRTFS' -s unix:$S mkdir /d && '$VIRTFS' -s unix:$S mv /w /d/w && '$VIRTFS' -s unix:$S rm /d/w && [ ! -e $EX/d/w ]"
# every directory descriptor lies on a mount of the daemon's own
# namespace: none is left on the host's detached tree (e.g. the export's
# open_by_handle_at mount descriptor), from which ".." could climb out
check "every directory descriptor of the daemon is on a mount of its new root" \
    "for f in /proc/$CPID/fd/*; do [ -d \$f ] || continue; l=\$(readlink \$f) || continue; case \$l in /*) ;; *) continue ;; esac; m=\$(awk '\$1 == \"mnt_id:\" {print \$2}' /proc/$CPID/fdinfo/\${f##*/}); awk -v m=\$m '\$1 == m {f=1} END {exit !f}' /proc/$CPID/mountinfo || { echo \"fd \${f##*/} -> \$l on mount \$m not in the namespace\"; exit 1; }; done"
check "TCP listener made before the network namespace still serves" \
    "[ \"\$('$VIRTFS' -s tcp:127.0.0.1:$port cat /a)\" = hello ]"
stop
check "SIGTERM to the started process: clean exit 0" "[ $? = 0 ]"
check "the daemon is gone too" "! kill -0 $CPID 2>/dev/null"
check "its Unix socket and pid file are removed (by the process outside)" \
    "[ ! -e '$S' ] && [ ! -e '$T/def.pid' ]"

# --- vhost-user: a VMM reconnecting to the same socket is accepted ---
V=$T/v.sock
start vh --export "$EX" --vhost-user "$V"
python3 - "$V" <<'PY' >"$T/vh.out" 2>&1
import socket, sys, time
for i in range(3):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    time.sleep(0.2)
    s.close()
    time.sleep(0.2)
PY
check "vhost-user: three connections in a row on one socket, each accepted" \
    "[ \"\$(grep -c 'front-end connected' '$T/vh.log')\" = 3 ]"
stop

# --- a layered export (overlay backend) under the default sandbox ---
L=$T/lay
mkdir -p "$L/lower/sub" "$L/lower/sub2" "$L/upper"; echo x >"$L/lower/sub2/x"
echo lower >"$L/lower/l"; echo gone >"$L/lower/gone"; echo deep >"$L/lower/sub/s"
start lay --export "$L/upper,lower=$L/lower" --listen "unix:$T/y.sock"
check "layered: default sandbox and seccomp kill (no --sandbox none needed)" \
    "grep -q 'sandbox: namespace, seccomp kill' '$T/lay.log' && [ '$(field Seccomp)' = 2 ]"
check "layered: the lower is a read-only bind inside, upper and work share one mount" \
    "grep -q ' ${L}/lower .* ro[, ]' /proc/$CPID/mountinfo && grep -q ' ${L} .* rw[, ]' /proc/$CPID/mountinfo && ! grep -q ' ${L}/upper ' /proc/$CPID/mountinfo"
check "layered: walk and read a lower file" \
    "[ \"\$('$VIRTFS' -s unix:$T/y.sock cat /sub/s)\" = deep ]"
check "layered: write over a lower file copies it up, the lower is untouched" \
    "echo new >$T/nw && '$VIRTFS' -s unix:$T/y.sock put $T/nw /l && [ \"\$(cat $L/upper/l)\" = new ] && [ \"\$(cat $L/lower/l)\" = lower ] && [ \"\$('$VIRTFS' -s unix:$T/y.sock cat /l)\" = new ]"
check "layered: unlink of a lower file leaves a whiteout (char 0/0) in the upper" \
    "'$VIRTFS' -s unix:$T/y.sock rm /gone && [ \"\$(stat -c '%F %t %T' $L/upper/gone)\" = 'character special file 0 0' ] && [ -e $L/lower/gone ] && ! '$VIRTFS' -s unix:$T/y.sock ls / | grep -qx gone"
check "layered: a directory made over a removed lower one is opaque (trusted.overlay.opaque: CAP_SYS_ADMIN kept for it)" \
    "'$VIRTFS' -s unix:$T/y.sock rm -r /sub2 && '$VIRTFS' -s unix:$T/y.sock mkdir /sub2 && [ -z \"\$('$VIRTFS' -s unix:$T/y.sock ls /sub2)\" ] && grep -q 'kept: .*sys_admin' '$T/lay.log'"
check "layered: mkdir and rename in the merged view (work -> upper renames)" \
    "'$VIRTFS' -s unix:$T/y.sock mkdir /nd && '$VIRTFS' -s unix:$T/y.sock mv /sub/s /nd/s && [ -f $L/upper/nd/s ] && [ -f $L/lower/sub/s ]"
stop
check "layered: clean exit 0 (nothing was killed by seccomp)" "[ $? = 0 ]"
check "layered: upper and work without a common parent but / are refused" \
    "'$VIRTFSD' --export /vfst-sbx-u.$$,lower=$L/lower,work=/vfst-sbx-w.$$ --stdio </dev/null 2>$T/lw.err; r=\$?; rm -rf /vfst-sbx-u.$$ /vfst-sbx-w.$$; [ \$r != 0 ] && grep -q 'no common parent' $T/lw.err"

# --- --stdio: the connection on stdin/stdout, held by both processes ---
check "--stdio: Tversion answered inside the sandbox, exit 0 at EOF" "python3 - '$VIRTFSD' '$EX' <<'PY'
import socket, struct, subprocess, sys
a, b = socket.socketpair()
p = subprocess.Popen([sys.argv[1], '--export', sys.argv[2], '--stdio'],
                     stdin=b, stdout=b, stderr=subprocess.DEVNULL)
b.close()
v = b'9P2000.L'
a.sendall(struct.pack('<IBHIH', 13 + len(v), 100, 0xffff, 65536, len(v)) + v)
a.settimeout(10)
r = a.recv(64)
a.close()
sys.exit(0 if r[4] == 101 and p.wait(timeout=10) == 0 else 1)
PY"

# --- read-only exports keep fewer capabilities; --modcaps ---
start ro --export "$T/ro,ro" --listen "unix:$T/r.sock"
check "read-only exports only: CapEff 0xce (no chown, fsetid, mknod)" \
    "[ '$(field CapEff)' = 00000000000000ce ]"
check "read-only export is a read-only bind mount inside" \
    "grep -q ' ${T}/ro .* ro[, ]' /proc/$CPID/mountinfo"
stop
start mc --export "$EX" --listen "unix:$T/m.sock" --modcaps=+sys_admin:-mknod
check "--modcaps=+sys_admin:-mknod" \
    "[ '$(field CapEff)' = 00000000002000df ] && grep -q 'kept: .*sys_admin' '$T/mc.log'"
stop
check "--modcaps with an unknown capability is refused" \
    "! '$VIRTFSD' --export $EX --stdio --modcaps=+nosuchcap </dev/null"

# --- --sandbox chroot: no namespaces; root = the exports' common directory ---
start chr --export "$EX" --listen "unix:$T/c.sock" --sandbox chroot
check "chroot: start log line" \
    "grep -q 'sandbox: chroot, seccomp kill, capabilities kept: chown,dac_override,dac_read_search,fowner,fsetid,setgid,setuid,mknod' '$T/chr.log'"
check "chroot: /proc/PID/root is the export, the working directory its /proc/PID/fd" \
    "[ \"\$(readlink /proc/$CPID/root)\" = '$EX' ] && [ \"\$(readlink /proc/$CPID/cwd)\" = /proc/$CPID/fd ] && [ '$CPID' != '$PID' ]"
check "chroot: Seccomp 2, NoNewPrivs 1, CapEff 0x80000df, CapBnd empty" \
    "[ '$(field Seccomp)' = 2 ] && [ '$(field NoNewPrivs)' = 1 ] && [ '$(field CapEff)' = 00000000080000df ] && [ '$(field CapBnd)' = 0000000000000000 ]"
check "chroot: the host's mount namespace (no namespaces made)" \
    "[ \"\$(readlink /proc/$CPID/ns/mnt)\" = \"\$(readlink /proc/self/ns/mnt)\" ]"
check "chroot: read, write, mkdir, rename, hard link, rm" \
    "[ \"\$('$VIRTFS' -s unix:$T/c.sock cat /a)\" = hello ] && echo c >$T/cw && '$VIRTFS' -s unix:$T/c.sock put $T/cw /cw && '$VIRTFS' -s unix:$T/c.sock mkdir /cd && '$VIRTFS' -s unix:$T/c.sock mv /cw /cd/cw && '$VIRTFS' -s unix:$T/c.sock ln /cd/cw /cl && [ \"\$(stat -c %h $EX/cl)\" = 2 ] && '$VIRTFS' -s unix:$T/c.sock rm -r /cd /cl && [ ! -e $EX/cd ]"
stop
check "chroot: clean exit, the socket removed by the process outside" "[ $? = 0 ] && [ ! -e $T/c.sock ]"
start chrl --export "$L/upper,lower=$L/lower" --listen "unix:$T/cl.sock" --sandbox chroot
check "chroot: a layered export is confined to the common directory of its layers" \
    "[ \"\$(readlink /proc/$CPID/root)\" = '$L' ] && [ \"\$('$VIRTFS' -s unix:$T/cl.sock cat /sub2/x 2>/dev/null || '$VIRTFS' -s unix:$T/cl.sock cat /l)\" != '' ] && echo cu >$T/cu && '$VIRTFS' -s unix:$T/cl.sock put $T/cu /gone2 && [ \"\$(cat $L/upper/gone2)\" = cu ]"
stop
check "chroot: exports whose only common parent is / are refused with a message" \
    "! '$VIRTFSD' --export $EX --export /proc/sys --stdio --sandbox chroot </dev/null 2>$T/chroot.err && grep -q 'no common parent but /' $T/chroot.err"
# --- --sandbox none --seccomp none: nothing but the capability drop ---
start none --export "$EX" --listen "unix:$T/n.sock" --sandbox none --seccomp none
check "--sandbox none --seccomp none: same process, Seccomp 0, host root" \
    "[ '$CPID' = '$PID' ] && [ '$(field Seccomp)' = 0 ] && [ \"\$(readlink /proc/$CPID/root)\" = / ]"
check "--sandbox none: capabilities still dropped, no-new-privs" \
    "[ '$(field CapEff)' = 00000000080000df ] && [ '$(field NoNewPrivs)' = 1 ]"
check "--sandbox none: serves" "[ \"\$('$VIRTFS' -s unix:$T/n.sock cat /a)\" = hello ]"
stop

# --- a system call outside the allow-list (test hook: syslog(2), nr 103
#     on x86_64) under each action ---
nr=$(printf '#include <sys/syscall.h>\nSYS_syslog\n' | cpp -P 2>/dev/null | tail -n1)
export VIRTFSD_TEST_FORBIDDEN_SYSCALL=1
start log hooks --export "$EX" --listen "unix:$T/l.sock" --seccomp log
check "log: the forbidden call ran (the daemon logged its result)" \
    "grep -q 'test hook: forbidden system call $nr returned' '$T/log.log'"
check "log: the kernel logged it (audit type=1326, syscall=$nr, our pid)" \
    "dmesg 2>/dev/null | grep 'type=1326' | grep 'pid=$CPID ' | grep -q 'syscall=$nr '"
check "log: the daemon keeps serving" "[ \"\$('$VIRTFS' -s unix:$T/l.sock cat /a)\" = hello ]"
stop
start trap hooks --export "$EX" --listen "unix:$T/t.sock" --seccomp trap
check "trap: SIGSYS handler names the call" \
    "grep -q 'seccomp: blocked system call $nr\$' '$T/trap.log'"
check "trap: the call failed with ENOSYS, the daemon lives on" \
    "grep -q 'returned -1 (Function not implemented)' '$T/trap.log' && [ \"\$('$VIRTFS' -s unix:$T/t.sock cat /a)\" = hello ]"
stop
start kill hooks --export "$EX" --listen "unix:$T/k.sock"
wait "$PID"; st=$?
check "kill (default): the daemon is killed by SIGSYS (status $st = 128+31)" "[ $st = 159 ]"
check "kill: the call never returned" "! grep -q 'test hook' '$T/kill.log'"
unset VIRTFSD_TEST_FORBIDDEN_SYSCALL
start nohook hooks --export "$EX" --listen "unix:$T/h.sock"
check "kill: without the hook the test binary serves (the filter allows the rest)" \
    "[ \"\$('$VIRTFS' -s unix:$T/h.sock cat /a)\" = hello ]"
stop

check "a thread started before the sandbox: refused at start, exit 1" \
    "! VIRTFSD_TEST_EARLY_THREAD=1 '$HOOKS' --export $EX --stdio </dev/null 2>$T/early.err && grep -q 'threads run already' $T/early.err"

# --- unprivileged start: a user namespace, or none and a log line ---
chmod 755 "$T"; chmod -R a+rwX "$EX"; mkdir -m 1777 "$T/u"
if command -v setpriv >/dev/null; then
    setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$VIRTFSD" --export "$EX" --listen "unix:$T/u/u.sock" 2>"$T/u.log" &
    PID=$!; pids+=("$PID")
    for _ in $(seq 300); do grep -q 'sandbox: ' "$T/u.log" && break; sleep 0.01; done
    check "unprivileged: user namespace, or 'none' said in the log line" \
        "grep -Eq 'sandbox: (namespace \\(user namespace, only uid 65534 and gid 65534 mapped|none \\(namespaces unavailable)' '$T/u.log'"
    check "chroot: refused for a non-root start" \
        "! setpriv --reuid=65534 --regid=65534 --clear-groups '$VIRTFSD' --export $EX --stdio --sandbox chroot </dev/null 2>$T/chroot2.err && grep -q 'chroot needs root' $T/chroot2.err"
    check "unprivileged: serves" "[ \"\$('$VIRTFS' -s unix:$T/u/u.sock cat /a)\" = hello ]"
    stop

    # --uid-map/--gid-map: root of a user namespace over a subordinate range
    # (newuidmap/newgidmap from Debian's uidmap; ranges in /etc/subuid)
    if ! command -v newuidmap >/dev/null; then
        n=$((n + 1)); failed=$((failed + 1))
        echo "not ok $n - --uid-map: newuidmap missing (apt-get install uidmap)"
    else
        cp /etc/subuid "$T/subuid.bak"; cp /etc/subgid "$T/subgid.bak"
        echo "65534:2100000:65536" >>/etc/subuid
        echo "65534:2100000:65536" >>/etc/subgid
        UX=$T/ux; mkdir "$UX"; echo mine >"$UX/m"; chown -R 65534:65534 "$UX"
        setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$VIRTFSD" --export "$UX" --listen "unix:$T/u/m.sock" \
            --uid-map=:0:65534:1: --uid-map=:1:2100000:65536: \
            --gid-map=:0:65534:1: --gid-map=:1:2100000:65536: 2>"$T/um.log" &
        PID=$!; pids+=("$PID")
        for _ in $(seq 300); do grep -q 'sandbox: ' "$T/um.log" 2>/dev/null && break; sleep 0.01; done
        sleep 0.1
        CPID=$PID; c=; read -r c _ <"/proc/$PID/task/$PID/children" || true; [ -n "${c:-}" ] && CPID=$c
        check "--uid-map: the log line names the user namespace and its ranges" \
            "grep -q 'sandbox: namespace (user namespace, uid map 0:65534:1,1:2100000:65536, gid map 0:65534:1,1:2100000:65536), seccomp kill' '$T/um.log'"
        check "--uid-map: Seccomp 2, NoNewPrivs 1, a user namespace of its own" \
            "[ '$(field Seccomp)' = 2 ] && [ '$(field NoNewPrivs)' = 1 ] && [ \"\$(readlink /proc/$CPID/ns/user)\" != \"\$(readlink /proc/self/ns/user)\" ]"
        check "--uid-map: the daemon's own files are root's inside" \
            "'$VIRTFS' -s unix:$T/u/m.sock -u root --uid 0 ls -l / | grep -Eq '^-rw.* 0 +0 .* m\$'"
        check "--uid-map: a new file, chown 1000:1000 by a root attach; on the host it is 2100999:2100999" \
            "echo n >$T/un && '$VIRTFS' -s unix:$T/u/m.sock -u root --uid 0 put $T/un /n && '$VIRTFS' -s unix:$T/u/m.sock -u root --uid 0 chown 1000:1000 /n && [ \"\$(stat -c %u:%g $UX/n)\" = 2100999:2100999 ]"
        check "--uid-map: a uid outside the ranges cannot be given (EINVAL)" \
            "! '$VIRTFS' -s unix:$T/u/m.sock -u root --uid 0 chown 70000 /n 2>$T/un.err && grep -q EINVAL $T/un.err && [ \"\$(stat -c %u $UX/n)\" = 2100999 ]"
        check "--uid-map: uid 1000 attaching acts as host 2100999 (its file, its write)" \
            "'$VIRTFS' -s unix:$T/u/m.sock -u '' --uid 1000 put $T/un /n && '$VIRTFS' -s unix:$T/u/m.sock -u '' --uid 1000 mkdir /d1000 && [ \"\$(stat -c %u $UX/d1000)\" = 2100999 ]"
        stop
        check "--uid-map: a range not in /etc/subuid is refused at start" \
            "! setpriv --reuid=65534 --regid=65534 --clear-groups '$VIRTFSD' --export $UX --stdio --uid-map=:0:65534:1: --uid-map=:1:3100000:10: --gid-map=:0:65534:1: </dev/null 2>$T/um2.err && grep -q 'refused the ranges' $T/um2.err"
        check "--uid-map as root is refused" \
            "! '$VIRTFSD' --export $UX --stdio --uid-map=:0:0:1: --gid-map=:0:0:1: </dev/null 2>$T/um3.err && grep -q 'unprivileged start' $T/um3.err"
    fi
fi

echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ "$failed" = 0 ]
