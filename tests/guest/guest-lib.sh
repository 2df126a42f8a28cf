# SPDX-License-Identifier: MIT
# Helpers for guest jobs (busybox sh).  Source as ". /job/guest-lib.sh"
# (guest_run -f tests/guest/guest-lib.sh).  The reporting protocol of every
# guest job, which the host counts: "ok - DESC" / "not ok - DESC" per check,
# "T SECONDS STATUS NAME" per timed step, "# ..." for anything else.
FAILED=0

ok() { echo "ok - $*"; }
nok() { echo "not ok - $*"; FAILED=$((FAILED + 1)); }

# check DESC CMD...: runs CMD; prints ok/not ok, and CMD's output on failure.
check() {
    _d=$1
    shift
    if "$@" > /tmp/.check.out 2>&1; then
        ok "$_d"
    else
        nok "$_d (status $?)"
        sed 's/^/#   /' /tmp/.check.out | head -n 8
    fi
}

# check_fails DESC CMD...: CMD must fail.
check_fails() {
    _d=$1
    shift
    if "$@" > /tmp/.check.out 2>&1; then
        nok "$_d (unexpectedly succeeded)"
        sed 's/^/#   /' /tmp/.check.out | head -n 4
    else
        ok "$_d"
    fi
}

# run_prog CMD...: runs a program printing its own ok/not ok lines; counts
# its failures (exit status != 0 without a "not ok" line counts as one).
run_prog() {
    "$@" > /tmp/.prog.out 2>&1
    _rc=$?
    cat /tmp/.prog.out
    _n=$(grep -c '^not ok' /tmp/.prog.out)
    FAILED=$((FAILED + _n))
    if [ $_rc != 0 ] && [ "$_n" = 0 ]; then
        nok "$* exited with status $_rc"
    fi
}

# wait_for FILE [SECS]: polls until FILE exists (for cross-guest sync).
wait_for() {
    _n=$(( ${2:-120} * 5 ))
    while [ ! -e "$1" ] && [ $_n -gt 0 ]; do
        sleep 0.2
        _n=$((_n - 1))
    done
    [ -e "$1" ]
}

# g DESC STATUS [DETAIL]: a check from a status already taken ("cmd; g
# DESC $?"); DETAIL is shown on failure.
g() {
    if [ "$2" = 0 ]; then ok "$1"; else nok "$1${3:+ ($3)}"; fi
}

# now: seconds since boot, for step timings.
now() { cut -d' ' -f1 /proc/uptime; }

# Timed steps: t_start; STEP; t_end NAME [STATUS] prints
# "T SECONDS STATUS NAME" (time inside the guest, from /proc/uptime), which
# the host collects (tests/guest/run.sh, bench/guest-compare.sh).
T0=0
t_start() { T0=$(now); }
t_end() {
    echo "T $(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }') ${2:-0} $1"
}

# q CMD...: CMD under a SIGKILL timeout of $Q_TIMEOUT s (default 60): a
# request the server never answers would otherwise hang the whole job (9p
# waits are killable).
q() { timeout -s KILL "${Q_TIMEOUT:-60}" "$@"; }

finish() {
    echo "# guest: $FAILED failed"
    [ "$FAILED" = 0 ]
}
