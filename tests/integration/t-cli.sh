#!/bin/sh
# SPDX-License-Identifier: MIT
# Integration: virtfsd on a Unix socket driven by the virtfs CLI.
# Usage: t-cli.sh VIRTFSD VIRTFS        (TAP output)
set -u
VIRTFSD=$1
VIRTFS=$2
T=$(mktemp -d /tmp/vfst-cli-XXXXXX)
EX=$T/export
SOCK=$T/sock
mkdir -p "$EX"
n=0
failed=0
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
    if [ -n "${PID:-}" ] && kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT

"$VIRTFSD" --export "$EX" --listen "unix:$SOCK" --log-level error 2>"$T/daemon.log" &
PID=$!
i=0
while [ ! -S "$SOCK" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
V() { "$VIRTFS" -s "unix:$SOCK" "$@"; }

check "daemon listening" "[ -S '$SOCK' ]"
head -c 300000 /dev/urandom >"$T/blob"
printf 'hello\n' >"$T/small"
ok "put blob" V put "$T/blob" /blob
check "put: host copy identical" "cmp '$T/blob' '$EX/blob'"
ok "cat blob" sh -c "'$VIRTFS' -s 'unix:$SOCK' cat /blob > '$T/catout'"
check "cat: output identical" "cmp '$T/blob' '$T/catout'"
ok "get blob" V get /blob "$T/got"
check "get: copy identical" "cmp '$T/blob' '$T/got'"
ok "mkdir -p a/b/c" V mkdir -p a/b/c
check "mkdir -p: host dirs" "[ -d '$EX/a/b/c' ]"
ok "mkdir -p existing is fine" V mkdir -p a/b
ok "put into a directory" V put "$T/small" a/b
check "put into dir: host file" "cmp '$T/small' '$EX/a/b/small'"
ok "ls" sh -c "'$VIRTFS' -s 'unix:$SOCK' ls / > '$T/ls'"
check "ls lists a and blob" "grep -qx 'a/\\{0,1\\}' '$T/ls' && grep -q 'blob' '$T/ls'"
ok "ls -l" sh -c "'$VIRTFS' -s 'unix:$SOCK' ls -l / > '$T/lsl'"
check "ls -l shows size and type" "grep blob '$T/lsl' | grep -q 300000 && grep ' a' '$T/lsl' | grep -q '^d'"
ok "ls -R" sh -c "'$VIRTFS' -s 'unix:$SOCK' ls -R / > '$T/lsr'"
check "ls -R reaches a/b/c and a/b/small" "grep -q 'c' '$T/lsr' && grep -q 'small' '$T/lsr' && grep -q 'a/b' '$T/lsr'"
ok "mv" V mv /blob /a/moved
check "mv: host renamed" "[ ! -e '$EX/blob' ] && cmp '$T/blob' '$EX/a/moved'"
ok "mv into directory" V mv /a/moved /a/b
check "mv into dir: host" "cmp '$T/blob' '$EX/a/b/moved'"
ok "ln -s" V ln -s ../some/target /a/sl
check "ln -s: host symlink verbatim" "[ \"\$(readlink '$EX/a/sl')\" = ../some/target ]"
ok "ln (hard)" V ln /a/b/small /a/hard
check "ln: same inode" "[ \"\$(stat -c %i '$EX/a/hard')\" = \"\$(stat -c %i '$EX/a/b/small')\" ]"
ok "stat" sh -c "'$VIRTFS' -s 'unix:$SOCK' stat /a/b/small > '$T/stat'"
check "stat shows size 6" "grep -Eiq 'size[^0-9]*6([^0-9]|\$)' '$T/stat'"
ok "df" sh -c "'$VIRTFS' -s 'unix:$SOCK' df > '$T/df'"
check "df prints numbers" "grep -Eq '[0-9]{3,}' '$T/df'"
ok "rm file" V rm /a/hard
check "rm: host gone" "[ ! -e '$EX/a/hard' ]"
ok "rm -r" V rm -r /a
check "rm -r: host tree gone" "[ ! -e '$EX/a' ]"

# error cases: errno name on stderr, exit status 1
n=$((n + 1))
"$VIRTFS" -s "unix:$SOCK" cat /nonexistent >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -eq 1 ] && grep -q 'ENOENT' "$T/err"; then
    echo "ok $n - cat missing file: ENOENT, exit 1"
else
    failed=$((failed + 1)); echo "not ok $n - cat missing file: ENOENT, exit 1 (rc $rc)"
    sed 's/^/# /' "$T/err"
fi
mkdir "$EX/full"; : >"$EX/full/x"
n=$((n + 1))
"$VIRTFS" -s "unix:$SOCK" rm /full >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -eq 1 ] && grep -Eq 'EISDIR|ENOTEMPTY|EPERM' "$T/err" && [ -e "$EX/full/x" ]; then
    echo "ok $n - rm of a directory without -r fails with an errno name"
else
    failed=$((failed + 1)); echo "not ok $n - rm of a directory without -r (rc $rc)"
    sed 's/^/# /' "$T/err"
fi
n=$((n + 1))
"$VIRTFS" -s "unix:$SOCK" bogus-command >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -eq 2 ]; then
    echo "ok $n - unknown command: usage error, exit 2"
else
    failed=$((failed + 1)); echo "not ok $n - unknown command exit $rc"
fi

kill -TERM "$PID"
wait "$PID"
rc=$?
n=$((n + 1))
if [ $rc -eq 0 ] && [ ! -e "$SOCK" ]; then
    echo "ok $n - virtfsd exits 0 on SIGTERM and removes its socket"
else
    failed=$((failed + 1)); echo "not ok $n - virtfsd SIGTERM exit $rc"
    sed 's/^/# /' "$T/daemon.log"
fi
PID=
echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ $failed -eq 0 ]
