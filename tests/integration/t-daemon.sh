#!/bin/sh
# SPDX-License-Identifier: MIT
# Integration: virtfsd's command line, socket handling, file modes and log
# hygiene, driven with the virtfs CLI.
# Usage: t-daemon.sh VIRTFSD VIRTFS        (TAP output)
set -u
VIRTFSD=$1
VIRTFS=$2
T=$(mktemp -d /tmp/vfst-daemon-XXXXXX)
EX=$T/export
mkdir -p "$EX"
n=0
failed=0
PIDS=""
ok() {   # ok DESC CMD...
    desc=$1; shift
    n=$((n + 1))
    if "$@" >"$T/out" 2>"$T/err"; then
        echo "ok $n - $desc"
    else
        failed=$((failed + 1))
        echo "not ok $n - $desc"
        sed 's/^/# /' "$T/out" "$T/err" | head -20
    fi
}
check() { # check DESC SHELL-EXPR
    desc=$1; shift
    ok "$desc" sh -c "$1"
}
cleanup() {
    for p in $PIDS; do
        kill -KILL "$p" 2>/dev/null
    done
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

# After SIGKILL of the daemon's outer process (namespace sandbox), its
# child still serves until its parent-death signal has ended it: wait until
# nobody accepts on the socket (up to 5 s).
wait_stale() {
    i=0
    while [ $i -lt 100 ] &&
          socat -u OPEN:/dev/null "UNIX-CONNECT:$1" 2>/dev/null; do
        sleep 0.05; i=$((i + 1))
    done
}
wait_sock() { # wait_sock PATH
    i=0
    while [ ! -S "$1" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
}
wait_log() { # wait_log FILE PATTERN: up to 20 s (a loaded machine)
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null && [ $i -lt 2000 ]; do
        sleep 0.01; i=$((i + 1))
    done
}
# rejects LOG CMD...: CMD exits at once with a failure status (not killed
# by the timeout, not a signal), its stderr in LOG
rejects() {
    log=$1; shift
    timeout 5 "$@" >/dev/null 2>"$log"
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -lt 128 ]
}
# start NAME ARGS...: virtfsd in the background, log in $T/NAME.log
start() {
    name=$1; shift
    "$VIRTFSD" --export "$EX" "$@" 2>"$T/$name.log" &
    LASTPID=$!
    PIDS="$PIDS $LASTPID"
}

# ---- #11: a live Unix socket is never taken over; a stale one is ----------
S1=$T/s1
start d1 --listen "unix:$S1"
D1=$LASTPID
wait_sock "$S1"
check "first daemon listening" "[ -S '$S1' ]"
ok "second daemon on the same live socket exits with an error" \
    rejects "$T/d2.log" "$VIRTFSD" --export "$EX" --listen "unix:$S1"
check "... saying the socket is in use" "grep -q 'another process is listening' '$T/d2.log'"
ok "the first daemon still serves its socket" "$VIRTFS" -s "unix:$S1" ls /
ok "second vhost-user daemon on a live vhost socket exits with an error" \
    rejects "$T/d3.log" "$VIRTFSD" --export "$EX" --vhost-user "$S1"
ok "the first daemon still serves after the vhost-user attempt" \
    "$VIRTFS" -s "unix:$S1" ls /
kill -KILL "$D1"; wait "$D1" 2>/dev/null
wait_stale "$S1"
check "a killed daemon leaves a stale socket file" "[ -S '$S1' ]"
start d4 --listen "unix:$S1"
D4=$LASTPID
sleep 0.3
ok "a stale socket is replaced" "$VIRTFS" -s "unix:$S1" ls /
kill -TERM "$D4"; wait "$D4" 2>/dev/null
check "orderly exit removes its socket" "[ ! -e '$S1' ]"
VS=$T/vs
start d5a --vhost-user "$VS"
wait_sock "$VS"
kill -KILL "$LASTPID"; wait "$LASTPID" 2>/dev/null
wait_stale "$VS"
check "a killed vhost-user daemon leaves a stale socket file" "[ -S '$VS' ]"
start d5 --vhost-user "$VS"
D5=$LASTPID
wait_log "$T/d5.log" "vhost-user virtio-9p device on"
check "a stale vhost-user socket is replaced" "kill -0 $D5 && grep -q 'device on $VS' '$T/d5.log'"
kill -USR1 "$D5"
wait_log "$T/d5.log" "spins on vhost-user"
check "stats of a vhost-user daemon count its devices' busy-poll spins" \
    "grep -q 'stats: busy-poll: [0-9]* spins on vhost-user device threads' '$T/d5.log'"
kill -TERM "$D5"; wait "$D5" 2>/dev/null
printf 'x' >"$T/plain"
ok "--listen on an existing regular file is refused" \
    rejects /dev/null "$VIRTFSD" --export "$EX" --listen "unix:$T/plain"
check "... and the file is left alone" "[ -f '$T/plain' ] && [ \"\$(cat '$T/plain')\" = x ]"

# ---- #11: ports, suboptions, inherited descriptors -------------------------
for p in 99999 65536 -1 +80 '' 0x10 80a; do
    ok "--listen tcp:127.0.0.1:$p is rejected" \
        rejects "$T/port.log" "$VIRTFSD" --export "$EX" --listen "tcp:127.0.0.1:$p"
done
check "... with a message naming the port range" "grep -q '65535' '$T/port.log'"
ok "--listen tcp:[::1 without ] is rejected" \
    rejects /dev/null "$VIRTFSD" --export "$EX" --listen "tcp:[::1:5640"
ok "--vhost-user PATH,foo=bar is rejected" \
    rejects "$T/sub.log" "$VIRTFSD" --export "$EX" --vhost-user "$T/vh,foo=bar"
check "... naming the option, and no file is created" \
    "grep -q \"unknown or repeated option 'foo=bar'\" '$T/sub.log' && [ ! -e '$T/vh,foo=bar' ] && [ ! -e '$T/vh' ]"
ok "--vhost-user PATH,tag=a,tag=b is rejected" \
    rejects /dev/null "$VIRTFSD" --export "$EX" --vhost-user "$T/vh,tag=a,tag=b"
ok "--fd N on a regular file is rejected" \
    rejects "$T/fd.log" "$VIRTFSD" --export "$EX" --fd 7 7<"$T/plain"
check "... as not a listening socket" "grep -q 'not a listening' '$T/fd.log'"
ok "--fd N on a closed descriptor is rejected" \
    rejects /dev/null "$VIRTFSD" --export "$EX" --fd 9
ok "--listen fd:N on a regular file is rejected" \
    rejects /dev/null "$VIRTFSD" --export "$EX" --listen fd:7 7<"$T/plain"
ok "--max-connections 0 is rejected" \
    rejects /dev/null "$VIRTFSD" --export "$EX" --listen "unix:$T/x" --max-connections 0
ok "--busy-poll 1001 is rejected" \
    rejects "$T/bp.log" "$VIRTFSD" --export "$EX" --listen "unix:$T/x" --busy-poll 1001
check "... naming the range" "grep -q 'busy-poll must be 0..1000' '$T/bp.log'"

# ---- #11: --trace and --stats are shown whatever --log-level ---------------
S2=$T/s2
start d6 --listen "unix:$S2" --log-level warn --trace --stats 1
D6=$LASTPID
wait_sock "$S2"
ok "client against --log-level warn --trace" "$VIRTFS" -s "unix:$S2" ls /
echo stats >"$EX/stats.txt"
ok "a file read (a Tlopen tried without waiting)" \
    "$VIRTFS" -s "unix:$S2" cat /stats.txt
wait_log "$T/d6.log" "<- Tattach"
check "--trace lines are written at --log-level warn" \
    "grep -q '<- Tversion' '$T/d6.log' && grep -q -- '-> Rattach' '$T/d6.log'"
wait_log "$T/d6.log" "stats:"
check "--stats lines are written at --log-level warn" "grep -q 'stats:' '$T/d6.log'"
check "--log-level warn still hides info lines" "! grep -q 'listening on' '$T/d6.log'"
wait_log "$T/d6.log" "listing cache:"
check "--stats counts busy-poll spins and the listing cache" \
    "grep -q 'stats: busy-poll: [0-9]* spins on connection threads' '$T/d6.log' && grep -q 'stats: passthrough listing cache: [0-9]* listings served' '$T/d6.log'"
wait_log "$T/d6.log" "without waiting: [1-9]"
check "--stats counts the opens tried without waiting" \
    "grep -q 'stats: opens tried on transport threads without waiting: [1-9][0-9]*, moved to a worker: 0' '$T/d6.log'"
kill -TERM "$D6"; wait "$D6" 2>/dev/null
S3=$T/s3
start d7 --listen "unix:$S3" --log-level error --dir-cache 0
D7=$LASTPID
wait_sock "$S3"
kill -USR1 "$D7"
wait_log "$T/d7.log" "stats:"
check "SIGUSR1 stats are written at --log-level error" "grep -q 'stats:' '$T/d7.log'"
wait_log "$T/d7.log" "listing cache:"
check "--dir-cache 0: the stats say the listing cache is off" \
    "grep -q 'stats: passthrough listing cache: off' '$T/d7.log'"

# ---- #10: peer strings cannot forge or hide log lines ----------------------
ANAME=$(printf 'x\nvirtfs: error: FORGED\033[2J\r\342\200\256')
ok "attach with a hostile aname fails" \
    sh -c "! '$VIRTFS' -s 'unix:$S3' -a \"\$1\" ls / 2>/dev/null" sh "$ANAME"
kill -TERM "$D7"; wait "$D7" 2>/dev/null
S4=$T/s4
start d8 --listen "unix:$S4" --trace
D8=$LASTPID
wait_sock "$S4"
"$VIRTFS" -s "unix:$S4" -a "$ANAME" ls / >/dev/null 2>&1
"$VIRTFS" -s "unix:$S4" mkdir "$(printf 'd\nvirtfs: info: FORGED2\033]0;t\007')" >/dev/null 2>&1
wait_log "$T/d8.log" "Rmkdir"
kill -TERM "$D8"; wait "$D8" 2>/dev/null
check "the unknown-export warning is in the log" "grep -q 'unknown export' '$T/d8.log'"
check "no log line starts with a forged prefix" "! grep -q '^virtfs: [a-z]*: FORGED' '$T/d8.log' '$T/d7.log'"
check "every log line is a virtfs line" "! grep -v '^virtfs: [a-z]*: ' '$T/d8.log' '$T/d7.log' | grep -q ."
check "no escape, CR, BEL or bidi override reaches the log" \
    "! LC_ALL=C grep -q \"\$(printf '[\\033\\r\\007]')\" '$T/d8.log' '$T/d7.log' && ! grep -q \"\$(printf '\\342\\200\\256')\" '$T/d8.log' '$T/d7.log'"
check "the warning shows the aname escaped (\\x0a, \\x1b)" \
    "grep -F 'warn: ' '$T/d8.log' | grep -qF 'unknown export '\\''x\\x0avirtfs: error: FORGED\\x1b[2J'"

# ---- #9: no umask 0: the pid file and the daemon's own files ---------------
S5=$T/s5
(umask 022; exec "$VIRTFSD" --export "$EX" --listen "unix:$S5" --pid-file "$T/pid" 2>"$T/d9.log") &
D9=$!
PIDS="$PIDS $D9"
wait_sock "$S5"
i=0
while [ ! -s "$T/pid" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
check "pid file holds the pid" "[ \"\$(cat '$T/pid')\" = $D9 ]"
check "pid file is 0644 under umask 022" "[ \"\$(stat -c %a '$T/pid')\" = 644 ]"
check "the daemon's process umask stays 0022" "grep -q '^Umask:[[:space:]]*0022' /proc/$D9/status"
check "the listening socket is owner-only" "[ \"\$(stat -c %a '$S5')\" = 600 ]"
printf 'abc' >"$T/src"
chmod 0666 "$T/src"
ok "put a 0666 file through the daemon" "$VIRTFS" -s "unix:$S5" put "$T/src" /m
check "the 9P create gets exactly 0666 (no server umask on top)" "[ \"\$(stat -c %a '$EX/m')\" = 666 ]"
check "the process umask is still 0022 after creates" "grep -q '^Umask:[[:space:]]*0022' /proc/$D9/status"
kill -TERM "$D9"; wait "$D9" 2>/dev/null
ln -s "$T/victim" "$T/pidlink"
ok "--pid-file through a symlink is refused" \
    rejects /dev/null "$VIRTFSD" --export "$EX" --listen "unix:$T/s6" --pid-file "$T/pidlink"
check "... and nothing is created at its target" "[ ! -e '$T/victim' ]"

echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ $failed -eq 0 ]
