#!/usr/bin/env bash
# Runs every test tier and prints one summary line "N passed, N failed".
#
#   scripts/check.sh            all tiers
#   CHECK_GUEST=0 scripts/check.sh   everything but the QEMU guest suites
#                                    (reported as not run, never as passed)
#
# Counts are individual checks: TAP assertions of every test program and
# "ok"/"not ok" lines of the shell suites.  A TAP "ok ... # SKIP" is counted
# as skipped, never as passed.  Tiers (docs/architecture.md, "Builds tested
# in CI"):
#   build           gcc debugoptimized (the default build), all suites
#   install         meson install --destdir of that build: every file there
#   valgrind        memcheck over the server and vhost tests of that build
#   build-clang     clang debugoptimized, all suites
#   build-release   gcc release (-O3, NDEBUG), all suites
#   build-hardened  Debian's packaging flags (dpkg-buildflags, hardening=+all,
#                   _FORTIFY_SOURCE=3, stack-clash, CET), buildtype plain
#   build-lto       the same flags with LTO (what Ubuntu builds)
#   build-asan      ASan+UBSan with -ftrivial-auto-var-init=pattern
#   build-tsan      TSan (clang): the server, session and vhost tests
#   clang-tidy      .clang-tidy (bugprone, cert, clang static analyzer)
#   format          clang-format check (scripts/check-format.sh): every C
#                   file as .clang-format says
#   build-fuzz      each libFuzzer target for FUZZ_SECONDS (20) s, the
#                   session fuzzer at least 60 s (beside the others)
#   guests          QEMU, real Linux 9p clients (gcc build), in two lanes:
#                   the serial suite beside the vhost-user, layered-export
#                   and scale suites
# Every build uses -Werror.
set -u
cd "$(dirname "$0")/.."
top=$PWD
# Install what the tests need (idempotent; apt-get only when missing).
bash scripts/setup-deps.sh || { echo "setup-deps failed"; echo "0 passed, 1 failed"; exit 1; }
passed=0
failed=0
skipped=0
notes=()
timings=()
t_all=$SECONDS

log() { printf '\n=== %s\n' "$*"; }

# Per-tier wall-clock time: tier NAME starts a tier and closes the last one.
tier_name=
tier_t0=0
tier() {
    if [ -n "$tier_name" ]; then
        timings+=("$(printf '%-16s %4d s' "$tier_name" $((SECONDS - tier_t0)))")
    fi
    tier_name=$1
    tier_t0=$SECONDS
}

# Sum the TAP results of one meson test run (its testlog JSON).
count_meson() {
    local dir=$1 logbase=${2:-testlog} p f s
    read -r p f s < <(python3 - "$dir/meson-logs/$logbase.json" <<'PY'
import json, re, sys
p = f = s = 0
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    print(0, 1, 0); sys.exit()
for line in lines:
    t = json.loads(line)
    out = t.get("stdout") or ""
    oks = re.findall(r"^ok \d+.*$", out, re.M)
    skip = [l for l in oks if re.search(r"#\s*skip", l, re.I)]
    nok = len(re.findall(r"^not ok \d+", out, re.M))
    if t.get("result") not in ("OK", "EXPECTEDFAIL") and nok == 0:
        nok = 1   # crashed, timed out, skipped whole or failed without a TAP line
    p += len(oks) - len(skip); f += nok; s += len(skip)
print(p, f, s)
PY
)
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    echo "--- $dir${2:+ ($2)}: $p passed, $f failed, $s skipped"
}

# Count "ok"/"not ok" lines of a shell suite's output file (skips apart).
count_tap_file() {
    local out=$1 what=$2 p f s
    s=$(grep -ciE '^ok .*#[[:space:]]*skip' "$out" || true)
    p=$(( $(grep -c '^ok ' "$out" || true) - s ))
    f=$(grep -c '^not ok ' "$out" || true)
    if [ "$p" = 0 ] && [ "$f" = 0 ]; then f=1; notes+=("$what produced no results"); fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    echo "--- $what: $p passed, $f failed, $s skipped"
}

# run_build DIR [meson setup args...]; CFLAGS/CPPFLAGS/LDFLAGS/CC from the
# environment.  A build dir configured with other arguments is wiped.
# run_build DIR MESON_OPTION... [-- NINJA_TARGET...]: configure DIR (again
# when the options changed) and build it, or only the targets after "--".
run_build() {
    local dir=$1; shift
    local want
    local -a opts=() targets=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    targets=("$@")
    set -- "${opts[@]}"
    want="CC=${CC:-} CFLAGS=${CFLAGS:-} CPPFLAGS=${CPPFLAGS:-} LDFLAGS=${LDFLAGS:-} $*"
    if [ -f "$dir/build.ninja" ] && [ "$(cat "$dir.args" 2>/dev/null)" != "$want" ]; then
        rm -rf "$dir"
    fi
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || {
            cat "$dir.setup.log"; failed=$((failed + 1)); notes+=("$dir: configure failed"); return 1; }
        echo "$want" > "$dir.args"
    fi
    ninja -C "$dir" "${targets[@]}" || { failed=$((failed + 1)); notes+=("$dir: build failed"); return 1; }
}

# Build DIR and run every non-guest suite in it but the scale suite (a
# million fids: it measures memory and descriptors, which the gcc and
# ASan tiers cover; repeating it per build costs minutes).
build_and_test() {
    local dir=$1; shift
    if run_build "$dir" "$@"; then
        meson test -C "$dir" --print-errorlogs --num-processes 2 \
            --no-suite scale || true
        count_meson "$dir"
    fi
}

# Debian's package build flags (what dh_auto_configure hands meson, with
# --buildtype=plain).  bookworm's dpkg-buildflags leaves out two flags that
# trixie's hardening=+all adds (-fstack-clash-protection, -fcf-protection);
# they are added here, and _FORTIFY_SOURCE is raised to 3 (trixie's level
# with gcc >= 12), so the tier is the stricter of the two releases.
deb_flags() {
    export DEB_BUILD_MAINT_OPTIONS=hardening=+all
    deb_cflags="$(dpkg-buildflags --get CFLAGS)"
    for f in -fstack-clash-protection -fcf-protection; do
        case " $deb_cflags " in *" $f "*) ;; *) deb_cflags="$deb_cflags $f" ;; esac
    done
    deb_cppflags="$(dpkg-buildflags --get CPPFLAGS | sed 's/-D_FORTIFY_SOURCE=[0-9]/-U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3/')"
    deb_ldflags="$(dpkg-buildflags --get LDFLAGS)"
    unset DEB_BUILD_MAINT_OPTIONS
}

tier build
log "gcc debugoptimized build (-Werror) and all suites"
gcc_ok=0
if run_build build; then
    gcc_ok=1
    meson test -C build --print-errorlogs --num-processes 2 || true
    count_meson build
fi

tier systemd
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

tier install
log "meson install --destdir: binaries, every man page in man/, the vhost-user descriptor"
if [ $gcc_ok = 1 ]; then
    dest=$(mktemp -d)
    out=$(mktemp)
    if meson install -C build --destdir "$dest" --quiet >"$out.log" 2>&1; then
        {
            pre=$dest/usr/local
            for f in sbin/virtfsd bin/virtfs sbin/virtfs-mount \
                     share/qemu/vhost-user/50-virtfsd-9p.json; do
                if [ -f "$pre/$f" ]; then echo "ok - installed $f"; else echo "not ok - $f not installed"; fi
            done
            for m in man/*.[1-8]; do
                m=${m#man/}
                f=share/man/man${m##*.}/$m
                if [ -f "$pre/$f" ]; then echo "ok - installed $f"; else echo "not ok - $f not installed"; fi
            done
            if grep -q '"/usr/local/sbin/virtfsd"' \
                    "$pre/share/qemu/vhost-user/50-virtfsd-9p.json" 2>/dev/null; then
                echo "ok - vhost-user descriptor names the installed virtfsd"
            else
                echo "not ok - vhost-user descriptor does not name /usr/local/sbin/virtfsd"
            fi
        } | tee "$out"
    else
        cat "$out.log"; echo "not ok - meson install failed" > "$out"
    fi
    count_tap_file "$out" "install"
    rm -rf "$dest" "$out" "$out.log"
fi

tier valgrind
log "valgrind memcheck: server and vhost tests of the gcc build (spawned virtfsd included)"
if [ $gcc_ok = 1 ]; then
    # --trace-children: the '-virtfsd' variants run the daemon under memcheck
    # too, and the test fails when it does not exit 0.  Leaks count when
    # definite.  (valgrind 3.19 does not know openat2 and answers ENOSYS, so
    # this tier walks through the openat fallback of pt_walk.c.)
    # (meson names the log after the wrapper: meson-logs/testlog-valgrind.json)
    # Not run under valgrind: srv_limits (measures the daemon's RSS, which
    # valgrind inflates), vhost_mem and vhost_sigbus (3 TiB mappings and
    # SIGBUS recovery on a truncated memfd, which valgrind cannot emulate).
    VIRTFS_TEST_VALGRIND=1 \
    meson test -C build --print-errorlogs --num-processes 2 \
        srv_session srv_session-virtfsd srv_malformed srv_malformed-virtfsd \
        srv_escape srv_escape-virtfsd srv_concurrency srv_concurrency-virtfsd \
        synth vhost vhost_9p \
        --timeout-multiplier 10 \
        --wrapper "valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --track-origins=yes --trace-children=yes" || true
    count_meson build testlog-valgrind
fi

tier build-clang
log "clang debugoptimized build (-Werror) and all suites"
if command -v clang >/dev/null; then
    CC=clang build_and_test build-clang
else
    failed=$((failed + 1)); notes+=("clang missing")
fi

tier build-release
log "gcc release build (-O3, -DNDEBUG) and all suites"
build_and_test build-release --buildtype=release -Db_ndebug=true

deb_flags
tier build-hardened
log "Debian package flags: CFLAGS='$deb_cflags' CPPFLAGS='$deb_cppflags' LDFLAGS='$deb_ldflags', all suites"
CFLAGS="$deb_cflags" CPPFLAGS="$deb_cppflags" LDFLAGS="$deb_ldflags" \
    build_and_test build-hardened --buildtype=plain

tier build-lto
log "the same package flags with LTO (-Db_lto=true), all suites"
CFLAGS="$deb_cflags" CPPFLAGS="$deb_cppflags" LDFLAGS="$deb_ldflags" \
    build_and_test build-lto --buildtype=plain -Db_lto=true

tier build-asan
log "ASan+UBSan build, uninitialised locals filled with a pattern, all suites"
# -ftrivial-auto-var-init=pattern: a local read before it is written holds
# 0xFE bytes instead of whatever the stack had, so a status or length that
# some path forgets to set fails every time instead of in one build in ten.
if run_build build-asan -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-ftrivial-auto-var-init=pattern; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        meson test -C build-asan --print-errorlogs --num-processes 2 -t 3 || true
    count_meson build-asan
fi

tier build-tsan
log "TSan build (clang -fsanitize=thread): the server, flush, session and vhost tests"
# The tests with the most threads at once: in-process servers (connection
# threads, workers, Tflush chains) and the same tests against the spawned
# daemon, built with ThreadSanitizer, which fails a test on any data race
# it sees.  Only these test programs and virtfsd are built.  Not here:
# srv_limits (measures the RSS, which TSan inflates), vhost_mem and
# vhost_sigbus (3 TiB mappings, SIGBUS recovery), as for valgrind.
tsan_tests=(srv_session srv_session-virtfsd srv_malformed srv_malformed-virtfsd
            srv_escape srv_escape-virtfsd srv_concurrency srv_concurrency-virtfsd
            srv_hotpath synth vhost vhost_9p)
tsan_targets=(tests/server/test_srv_session tests/server/test_srv_malformed
              tests/server/test_srv_escape tests/server/test_srv_concurrency
              tests/server/test_srv_hotpath tests/synth/test_synth
              tests/vhost/test_vhost tests/vhost/test_vhost_9p tools/virtfsd/virtfsd)
if CC=clang run_build build-tsan -Db_sanitize=thread -Db_lundef=false -- \
        "${tsan_targets[@]}"; then
    TSAN_OPTIONS=halt_on_error=1 \
        meson test -C build-tsan --no-rebuild --print-errorlogs --num-processes 2 \
        "${tsan_tests[@]}" || true
    count_meson build-tsan
fi

tier clang-tidy
log "clang-tidy (.clang-tidy: bugprone, cert, clang static analyzer) on every source of the gcc build"
if [ $gcc_ok = 1 ]; then
    out=$(mktemp)
    # gcc-only warning options in compile_commands.json are not clang's business
    run-clang-tidy-14 -p build -j 2 -quiet -extra-arg=-Wno-unknown-warning-option \
        '/(src|tools|tests|bench)/' > "$out" 2>&1
    rc=$?
    sed -i 's/\x1b\[[0-9;]*m//g' "$out"
    n=$(grep -cE '(warning|error): ' "$out" || true)
    if [ "$rc" = 0 ] && [ "$n" = 0 ]; then
        echo "ok - clang-tidy: no findings"; passed=$((passed + 1))
    else
        grep -E '(warning|error): ' "$out" | sort -u
        [ "$n" != 0 ] || tail -n 30 "$out"
        echo "not ok - clang-tidy: $n findings (exit $rc)"; failed=$((failed + 1))
    fi
    rm -f "$out"
fi

tier format
# .clang-format over src tools tests bench include (scripts/check-format.sh)
log "clang-format --dry-run -Werror (.clang-format) on every C file"
if bash scripts/check-format.sh; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

tier build-fuzz
log "libFuzzer targets (clang -fsanitize=fuzzer,address,undefined), ${FUZZ_SECONDS:-20} s each (session: 60 s), in two lanes"
# fuzz_one BIN CORPUS SECS RESULT: one target; its "ok"/"not ok" line (and
# on failure the end of its log) goes to RESULT.
fuzz_one() {
    local bin=$1 src=$2 secs=$3 res=$4 corpus
    corpus=$(mktemp -d)   # new inputs land here, not in the tree
    cp -r "$src/." "$corpus/"
    # -timeout: one input that runs for a minute is a hang, reported as
    # such (the default, 1200 s, let one stuck input eat the CI budget)
    if [ -x "$bin" ] && "$bin" -max_total_time="$secs" -timeout=60 \
            -print_final_stats=1 "$corpus" > "$corpus.log" 2>&1; then
        echo "ok - fuzz ${bin##*/}: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$corpus.log" | grep -o '[0-9]*$') inputs, no crash" > "$res"
    else
        { echo "not ok - fuzz ${bin##*/} (log below)"; tail -n 40 "$corpus.log"; } > "$res"
    fi
    rm -rf "$corpus" "$corpus.log"
}
if CC=clang run_build build-fuzz -Dfuzz=true; then
    secs=${FUZZ_SECONDS:-20}
    fz=$(mktemp -d)
    # Two lanes on the two cores, the same fuzzing time per target: the
    # whole-server session fuzzer (issue 12: at least 60 s) in one, the
    # decoder, vring and vhost-user message targets one after another in
    # the other.
    fuzz_one build-fuzz/tests/fuzz/fuzz_session tests/fuzz/corpus/session \
        "$((secs < 60 ? 60 : secs))" "$fz/4" &
    fzpid=$!
    fuzz_one build-fuzz/tests/fuzz/fuzz_decode tests/fuzz/corpus/decode "$secs" "$fz/1"
    fuzz_one build-fuzz/tests/vhost/fuzz_vring tests/vhost/corpus/vring "$secs" "$fz/2"
    fuzz_one build-fuzz/tests/vhost/fuzz_vhost_msg tests/vhost/corpus/vhost_msg "$secs" "$fz/3"
    wait "$fzpid"
    for r in 1 2 3 4; do
        if [ -f "$fz/$r" ]; then cat "$fz/$r"; else echo "not ok - fuzz target $r left no result"; fi
    done > "$fz/all"
    cat "$fz/all"
    count_tap_file "$fz/all" "fuzz targets"
    rm -rf "$fz"
fi

if [ "${CHECK_GUEST:-1}" = 1 ]; then
    tier guests
    # Two lanes, one QEMU (TCG: one core) mostly in each: the serial suite
    # in one; the vhost-user suite, the layered-export guests and the scale
    # suite one after another in the other.  Each suite has its own work
    # folder and servers; the guest images and the trixie QEMU they share
    # are built under a lock (tests/guest/lib.sh, scripts/trixie-qemu.sh).
    # Each suite's output is printed whole when both lanes are done.
    log "QEMU guest suites (real Linux 9p clients), in two lanes: serial | vhost-user, layered, scale"
    if [ "$(id -u)" = 0 ] && [ -x tests/guest/run.sh ]; then
        gd=$(mktemp -d)
        # guest_suite NAME SCRIPT [ARGS...]: its output into $gd/NAME, its
        # seconds into $gd/NAME.t
        guest_suite() {
            local name=$1 t0=$SECONDS
            shift
            VIRTFSD="$top/build/tools/virtfsd/virtfsd" bash "$@" > "$gd/$name" 2>&1
            echo "$((SECONDS - t0))" > "$gd/$name.t"
        }
        guest_suite serial tests/guest/run.sh --transport serial &
        glane=$!
        guest_suite vhost tests/guest/run.sh --transport vhost
        guest_suite overlay tests/guest/overlay.sh
        guest_suite scale tests/guest/scale.sh
        wait "$glane"
        for s in serial:"guest suite (serial)" vhost:"vhost guest suite" \
                 overlay:"overlay guest suite" scale:"scale guest suite"; do
            f=${s%%:*}
            log "${s#*:}: $(cat "$gd/$f.t" 2>/dev/null || echo '?') s"
            cat "$gd/$f"
            count_tap_file "$gd/$f" "${s#*:}"
        done
        rm -rf "$gd"
    else
        failed=$((failed + 1)); notes+=("guest suites need root and tests/guest/run.sh")
    fi
else
    notes+=("guest suites not run (CHECK_GUEST=0)")
fi

tier end
echo
echo "Time per tier:"
for t in "${timings[@]}"; do echo "  $t"; done
echo "  total            $(printf '%4d' $((SECONDS - t_all))) s"
[ "$skipped" = 0 ] || notes+=("$skipped checks skipped (not counted as passed)")
for n in "${notes[@]}"; do echo "note: $n"; done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
