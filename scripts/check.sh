#!/usr/bin/env bash
# Runs every test tier and prints one summary line "N passed, N failed".
#
#   scripts/check.sh            all tiers
#   CHECK_GUEST=0 scripts/check.sh   everything but the QEMU guest suite
#                                    (reported as not run, never as passed)
#
# Counts are individual checks: TAP assertions of every test program and
# "ok"/"not ok" lines of the shell suites.
set -u
cd "$(dirname "$0")/.."
top=$PWD
# Install what the tests need (idempotent; apt-get only when missing).
bash scripts/setup-deps.sh || { echo "setup-deps failed"; echo "0 passed, 1 failed"; exit 1; }
passed=0
failed=0
notes=()

log() { printf '\n=== %s\n' "$*"; }

# Sum the TAP results of one meson build dir's last test run.
count_meson() {
    local dir=$1 p f
    read -r p f < <(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, re, sys
p = f = 0
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    print(0, 1); sys.exit()
for line in lines:
    t = json.loads(line)
    out = t.get("stdout") or ""
    ok = len(re.findall(r"^ok \d+", out, re.M))
    nok = len(re.findall(r"^not ok \d+", out, re.M))
    if t.get("result") not in ("OK", "EXPECTEDFAIL") and nok == 0:
        nok = 1   # crashed, timed out or failed without a TAP line
    p += ok; f += nok
print(p, f)
PY
)
    passed=$((passed + p)); failed=$((failed + f))
    echo "--- $dir: $p passed, $f failed"
}

run_build() {
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || {
            cat "$dir.setup.log"; failed=$((failed + 1)); notes+=("$dir: configure failed"); return 1; }
    fi
    ninja -C "$dir" || { failed=$((failed + 1)); notes+=("$dir: build failed"); return 1; }
}

log "gcc build (-Werror) and all suites"
if run_build build; then
    meson test -C build --print-errorlogs --num-processes 2 || true
    count_meson build
fi

log "systemd units: systemd-analyze verify"
if command -v systemd-analyze >/dev/null && [ -f share/systemd/virtfsd@.service.in ]; then
    # the unit as installed, its ExecStart pointed at the binary just built
    ud=$(mktemp -d)
    sed "s|@SBINDIR@|$top/build/tools/virtfsd|" share/systemd/virtfsd@.service.in >"$ud/virtfsd@.service"
    cp share/systemd/virtfsd@.socket "$ud/"
    if (cd "$ud" && systemd-analyze verify --man=no ./virtfsd@vm1.service ./virtfsd@vm1.socket) 2>&1; then
        echo "ok - systemd-analyze verify virtfsd@.service virtfsd@.socket"; passed=$((passed + 1))
    else
        echo "not ok - systemd-analyze verify (output above)"; failed=$((failed + 1))
    fi
    rm -rf "$ud"
else
    failed=$((failed + 1)); notes+=("systemd-analyze missing")
fi

log "clang build (-Werror) and unit suites"
if command -v clang >/dev/null; then
    if CC=clang run_build build-clang; then
        meson test -C build-clang --print-errorlogs --suite unit --suite fuzz || true
        count_meson build-clang
    fi
else
    failed=$((failed + 1)); notes+=("clang missing")
fi

log "ASan+UBSan build and all suites"
if run_build build-asan -Db_sanitize=address,undefined -Db_lundef=false; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        meson test -C build-asan --print-errorlogs --num-processes 2 -t 3 || true
    count_meson build-asan
fi

log "libFuzzer targets (clang -fsanitize=fuzzer,address,undefined), ${FUZZ_SECONDS:-20} s each (session: 60 s)"
if CC=clang run_build build-fuzz -Dfuzz=true; then
    for t in tests/fuzz/fuzz_decode:tests/fuzz/corpus/decode \
             tests/vhost/fuzz_vring:tests/vhost/corpus/vring \
             tests/vhost/fuzz_vhost_msg:tests/vhost/corpus/vhost_msg \
             tests/fuzz/fuzz_session:tests/fuzz/corpus/session; do
        bin=build-fuzz/${t%%:*}
        secs=${FUZZ_SECONDS:-20}
        # the whole-server session fuzzer (issue 12): at least 60 s
        if [ "${bin##*/}" = fuzz_session ] && [ "$secs" -lt 60 ]; then secs=60; fi
        corpus=$(mktemp -d)   # new inputs land here, not in the tree
        cp -r "${t#*:}/." "$corpus/"
        if [ -x "$bin" ] && "$bin" -max_total_time="$secs" \
                -print_final_stats=1 "$corpus" > "$corpus.log" 2>&1; then
            echo "ok - fuzz ${bin##*/}: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$corpus.log" | grep -o '[0-9]*$') inputs, no crash"
            passed=$((passed + 1))
        else
            echo "not ok - fuzz ${bin##*/} (log below)"; tail -n 40 "$corpus.log"
            failed=$((failed + 1))
        fi
        rm -rf "$corpus" "$corpus.log"
    done
fi

if [ "${CHECK_GUEST:-1}" = 1 ]; then
    log "QEMU guest suite (real Linux 9p client)"
    if [ "$(id -u)" = 0 ] && [ -x tests/guest/run.sh ]; then
        out=$(mktemp)
        VIRTFSD="$top/build/tools/virtfsd/virtfsd" bash tests/guest/run.sh 2>&1 | tee "$out"
        p=$(grep -c '^ok ' "$out" || true); f=$(grep -c '^not ok ' "$out" || true)
        if [ "$p" = 0 ] && [ "$f" = 0 ]; then f=1; notes+=("guest suite produced no results"); fi
        passed=$((passed + p)); failed=$((failed + f))
        rm -f "$out"
    else
        failed=$((failed + 1)); notes+=("guest suite needs root and tests/guest/run.sh")
    fi
    log "QEMU guest suite over vhost-user virtio-9p (QEMU 11 from a trixie chroot)"
    if [ "$(id -u)" = 0 ]; then
        out=$(mktemp)
        VIRTFSD="$top/build/tools/virtfsd/virtfsd" bash tests/guest/vhost.sh 2>&1 | tee "$out"
        p=$(grep -c '^ok ' "$out" || true); f=$(grep -c '^not ok ' "$out" || true)
        if [ "$p" = 0 ] && [ "$f" = 0 ]; then f=1; notes+=("vhost guest suite produced no results"); fi
        passed=$((passed + p)); failed=$((failed + f))
        rm -f "$out"
    else
        failed=$((failed + 1)); notes+=("vhost guest suite needs root")
    fi
else
    notes+=("guest suites not run (CHECK_GUEST=0)")
fi

echo
for n in "${notes[@]}"; do echo "note: $n"; done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
