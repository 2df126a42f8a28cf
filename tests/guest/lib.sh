# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Guest test harness: boots a stock Debian kernel with a busybox initramfs
# under QEMU and runs a shell job inside it.  Source this file from bash.
#
#   guest_image SERIES          SERIES is 6.1 or 6.12.  Fetches the newest
#                               Debian generic kernel of that series with
#                               `apt-get download`, builds a small initramfs
#                               (busybox + 9p/virtio/vsock modules) into
#                               $VIRTFS_GUEST_CACHE/<version>/ and sets
#                               GUEST_IMAGE to that folder.  Idempotent; quick
#                               when cached.
#   guest_run [opts] JOB        boots GUEST_IMAGE, runs the shell script JOB
#                               as /job/run.sh in the guest and returns its
#                               exit status.  See guest_run_usage.
#   guest_static_build OUT SRC...
#                               gcc -static -O2 for guest binaries (rebuilt
#                               when a source is newer).
#   guest_server_start SOCK DIR [OPTS] / guest_server_stop PID
#                               the host 9P server ($VIRTFS_SERVER: virtfsd,
#                               or "diod" as a stand-in) on a Unix socket.
#   guest_kvm_usable            true when QEMU can use KVM here.
#   ok / nok / hcheck / check / checke / count_guest / summary
#                               the host side's TAP lines and counters
#                               ($passed, $failed; $kprefix prefixes each
#                               line; count_guest also shows the guest
#                               jobs' "T SECONDS STATUS NAME" steps),
#                               shared by the guest suites.
#
# Environment:
#   VIRTFS_GUEST_CACHE   cache folder (default /var/cache/virtfs-guest)
#   VIRTFS_GUEST_ACCEL   kvm|tcg (default: kvm when /dev/kvm is usable, else tcg)
#   VIRTFS_GUEST_LOGDIR  where console logs go (default $VIRTFS_GUEST_CACHE/logs)
#   VIRTFS_GUEST_QEMU    QEMU binary (default qemu-system-x86_64)
#   VIRTFS_GUEST_VERBOSE 1: print the whole console, not only the job output
#   VIRTFS_SERVER        see "host-side 9P servers" below
#
# Example:
#   . tests/guest/lib.sh
#   guest_image 6.12
#   guest_server_start /tmp/s.sock /srv/share
#   echo 'virtfs-mount -o uname=root --aname /srv/share none /mnt && ls /mnt' > job.sh
#   guest_run -b virtfs-mount -s /tmp/s.sock job.sh; echo "status $?"
#   guest_server_stop "$GUEST_SERVER_PID"

VIRTFS_GUEST_CACHE=${VIRTFS_GUEST_CACHE:-/var/cache/virtfs-guest}
VIRTFS_GUEST_QEMU=${VIRTFS_GUEST_QEMU:-qemu-system-x86_64}
GUEST_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Bump when the image recipe (module list, layout) changes: cached images
# with another recipe are rebuilt (without downloading again).
GUEST_IMAGE_RECIPE=4
# Modules the guest needs; their dependencies are added automatically.
GUEST_MODULES=(virtio_pci virtio_console 9p 9pnet 9pnet_fd 9pnet_virtio
               vmw_vsock_virtio_transport vsock_loopback)

# mawk reads pipes in blocks unless -W interactive: the console would not
# stream live.
if awk -W version 2>&1 | grep -q mawk; then GUEST_AWK=(awk -W interactive); else GUEST_AWK=(awk); fi

guest_log() { printf '[guest] %s\n' "$*" >&2; }
guest_die() { printf '[guest] error: %s\n' "$*" >&2; return 1; }

# --- kernel package selection ------------------------------------------------

# Prints the newest linux-image package of SERIES (6.1, 6.12) in the apt
# lists (generic flavour: not -rt, -cloud, -dbg or -unsigned).  One apt-cache
# call (about 1 s); apt-cache search only lists packages with a record in
# the lists, i.e. downloadable ones.
guest_kernel_pkg() {
    local series=$1 re p
    re="^linux-image-${series//./\\.}[.-][0-9][^ ]*-amd64\$"
    p=$(apt-cache search --names-only "$re" 2>/dev/null | awk '{print $1}' |
        grep -v -e '-unsigned$' -e '-dbg' -e '-rt-' -e '-cloud-' | sort -V | tail -n1)
    [ -n "$p" ] && echo "$p"
}

# Finds the module file for NAME in the index file (name<TAB>path lines).
_guest_mod_path() { awk -F'\t' -v n="$1" '$1 == n {print $2; exit}' "$2"; }

# Resolves GUEST_MODULES + dependencies in load order.  Args: modroot outfile
_guest_resolve_modules() {
    local modroot=$1 out=$2 idx builtin
    idx=$(mktemp)
    builtin=$(mktemp)
    find "$modroot/kernel" -name '*.ko*' | while read -r f; do
        local b=${f##*/}
        b=${b%%.ko*}
        printf '%s\t%s\n' "${b//-/_}" "$f"
    done > "$idx"
    if [ -f "$modroot/modules.builtin" ]; then
        sed 's#.*/##; s#\.ko.*##; s#-#_#g' "$modroot/modules.builtin" > "$builtin"
    fi
    : > "$out"
    local -A seen=()
    _visit() {
        local m=${1//-/_} path deps d
        [ -n "${seen[$m]:-}" ] && return 0
        seen[$m]=1
        if grep -qx "$m" "$builtin"; then return 0; fi
        path=$(_guest_mod_path "$m" "$idx")
        if [ -z "$path" ]; then
            guest_log "note: module $m not found (not built for this kernel?)"
            return 0
        fi
        deps=$(_guest_cat_module "$path" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1)
        for d in ${deps//,/ }; do _visit "$d"; done
        printf '%s\t%s\n' "$m" "$path" >> "$out"
    }
    local m
    for m in "${GUEST_MODULES[@]}"; do _visit "$m"; done
    rm -f "$idx" "$builtin"
}

_guest_cat_module() {
    case $1 in
        *.ko.xz) xz -dc "$1" ;;
        *.ko.zst) zstd -qdc "$1" ;;
        *.ko.gz) gzip -dc "$1" ;;
        *) cat "$1" ;;
    esac
}

# guest_image SERIES: sets GUEST_IMAGE (folder with vmlinuz, initrd.gz, kver).
guest_image() {
    local series=${1:?usage: guest_image 6.1|6.12} pkg dir
    mkdir -p "$VIRTFS_GUEST_CACHE"
    pkg=$(guest_kernel_pkg "$series") || pkg=
    if [ -z "$pkg" ]; then
        # No apt lists (offline, or no apt-get update yet): use the newest
        # cached image of the series, else update the lists once and retry.
        dir=$(ls -d "$VIRTFS_GUEST_CACHE"/"$series"[.-]*/ 2>/dev/null | sort -V | tail -n1)
        if [ -n "$dir" ] && [ -f "$dir/ready" ]; then
            GUEST_IMAGE=${dir%/}
            return 0
        fi
        guest_log "apt-get update (no kernel package of $series known to apt)"
        apt-get update -qq >&2 || true
        pkg=$(guest_kernel_pkg "$series") ||
            { guest_die "no linux-image package for series $series (is bookworm-backports in the apt sources? scripts/setup-deps.sh adds it)"; return 1; }
    fi
    local ver=${pkg#linux-image-}
    ver=${ver%-amd64}
    dir=$VIRTFS_GUEST_CACHE/$ver
    if [ -f "$dir/ready" ] && [ "$(cat "$dir/ready")" = "$GUEST_IMAGE_RECIPE" ] &&
       [ -f "$dir/vmlinuz" ] && [ -f "$dir/initrd.gz" ]; then
        GUEST_IMAGE=$dir
        return 0
    fi
    # One builder at a time per image (several suites may share the cache).
    local lockfd rc=0
    exec {lockfd}>"$VIRTFS_GUEST_CACHE/.build-$ver.lock"
    flock "$lockfd"
    if ! { [ -f "$dir/ready" ] && [ "$(cat "$dir/ready")" = "$GUEST_IMAGE_RECIPE" ]; }; then
        _guest_build_image "$pkg" "$dir" || rc=1
    fi
    exec {lockfd}>&-
    [ $rc = 0 ] || return 1
    GUEST_IMAGE=$dir
    # Older kernels of the same series are superseded: free their space.
    local old
    for old in "$VIRTFS_GUEST_CACHE"/"$series"[.-]*/; do
        old=${old%/}
        [ "$old" = "$dir" ] || [ ! -f "$old/package" ] && continue
        rm -f "$VIRTFS_GUEST_CACHE/debs/$(cat "$old/package")_"*.deb
        rm -rf "$old"
    done
}

_guest_build_image() {
    local pkg=$1 dir=$2 debdir=$VIRTFS_GUEST_CACHE/debs t0=$SECONDS
    mkdir -p "$debdir" "$dir"
    local deb
    deb=$(ls "$debdir/${pkg}_"*.deb 2>/dev/null | sort -V | tail -n1)
    if [ -z "$deb" ]; then
        guest_log "downloading kernel $pkg"
        # _apt must be able to write here, else apt warns ("unsandboxed").
        chmod 755 "$VIRTFS_GUEST_CACHE"
        chown _apt "$debdir" 2>/dev/null || true
        (cd "$debdir" && apt-get download -q=2 "$pkg" >&2) ||
            { guest_die "apt-get download $pkg failed"; return 1; }
        deb=$(ls "$debdir/${pkg}_"*.deb 2>/dev/null | sort -V | tail -n1)
        [ -n "$deb" ] || { guest_die "downloaded .deb of $pkg not found"; return 1; }
    fi
    guest_log "building guest image for $pkg"
    local x root rc=0
    x=$(mktemp -d "$VIRTFS_GUEST_CACHE/unpack.XXXXXX")
    root=$(mktemp -d "$VIRTFS_GUEST_CACHE/root.XXXXXX")
    _guest_make_image "$deb" "$pkg" "$dir" "$x" "$root" || rc=$?
    # The unpacked kernel tree (400-600 MB) is not needed any more.
    rm -rf "$x" "$root"
    [ $rc = 0 ] && guest_log "guest image $dir ready ($(wc -l < "$dir/modules.load") modules, $((SECONDS - t0)) s)"
    return $rc
}

_guest_make_image() {
    local deb=$1 pkg=$2 dir=$3 x=$4 root=$5
    dpkg-deb -x "$deb" "$x" || { guest_die "dpkg-deb -x $deb failed"; return 1; }
    local vmlinuz kver modroot
    vmlinuz=$(ls "$x"/boot/vmlinuz-* 2>/dev/null | head -n1)
    [ -n "$vmlinuz" ] || { guest_die "no boot/vmlinuz-* in $deb"; return 1; }
    kver=${vmlinuz##*/vmlinuz-}
    for modroot in "$x/lib/modules/$kver" "$x/usr/lib/modules/$kver" ""; do
        [ -d "$modroot" ] && break
    done
    [ -n "$modroot" ] || { guest_die "no modules folder for $kver in $deb"; return 1; }

    local list
    list=$(mktemp)
    _guest_resolve_modules "$modroot" "$list"

    mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,mnt,job/bin,lib/modules,root,run}
    cp /bin/busybox "$root/bin/busybox" 2>/dev/null || cp /usr/bin/busybox "$root/bin/busybox" ||
        { guest_die "busybox-static is not installed"; return 1; }
    local a
    for a in $("$root/bin/busybox" --list); do
        [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
    done
    local name path
    : > "$root/etc/modules.load"
    while IFS=$'\t' read -r name path; do
        _guest_cat_module "$path" > "$root/lib/modules/$name.ko"
        echo "$name" >> "$root/etc/modules.load"
    done < "$list"
    rm -f "$list"
    mknod -m 600 "$root/dev/console" c 5 1
    mknod -m 666 "$root/dev/null" c 1 3
    echo "$kver" > "$root/etc/kver"
    # A default /init; guest_run appends the current one from the source tree.
    install -m 755 "$GUEST_LIB_DIR/init.sh" "$root/init"
    (cd "$root" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -9 > "$dir/initrd.gz.tmp"
    cp "$vmlinuz" "$dir/vmlinuz.tmp"
    mv "$dir/initrd.gz.tmp" "$dir/initrd.gz"
    mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
    echo "$kver" > "$dir/kver"
    echo "$pkg" > "$dir/package"
    cp "$root/etc/modules.load" "$dir/modules.load"
    echo "$GUEST_IMAGE_RECIPE" > "$dir/ready"
}

# --- static guest binaries ---------------------------------------------------

# guest_static_build OUT SRC... : gcc -static -O2, rebuilt only when a source
# is newer than OUT.
guest_static_build() {
    local out=$1; shift
    local s newer=0
    [ -f "$out" ] || newer=1
    for s in "$@"; do [ "$s" -nt "$out" ] && newer=1; done
    [ $newer = 1 ] || return 0
    mkdir -p "$(dirname "$out")"
    gcc -static -O2 -std=gnu17 -Wall -D_GNU_SOURCE -o "$out" "$@" ||
        { guest_die "gcc -static failed for $out"; return 1; }
}

# --- running a job -------------------------------------------------------------

guest_run_usage() {
    cat >&2 <<'EOF'
guest_run [options] JOB_SCRIPT
  -i DIR        guest image folder (default $GUEST_IMAGE, from guest_image)
  -t SECS       hard timeout for the whole boot (default 300)
  -n NAME       name for the console log (default: job script name)
  -m MEM        guest memory (default 512M)
  -b FILE       copy FILE into /job/bin in the guest (repeatable)
  -f FILE       copy FILE into /job in the guest (repeatable)
  -s SOCK       add a virtio-serial port connected to the Unix socket SOCK
                (ports are named org.virtfs.0, org.virtfs.1, ... in order)
  -S NAME=SOCK  same with an explicit port name
  -a ARGS       extra kernel command line
  -q ARG        extra QEMU argument (repeatable)
The job's output is printed on stdout; the return value is the job's exit
status (124: timeout, 125: the guest stopped without reporting a status).
EOF
}

# KVM is used when /dev/kvm is usable: the node is there and read-writable,
# the CPU has vmx/svm, and a probe boot (done once per host boot, verdict
# kept in /run) reaches the job.  Some sandboxes offer a /dev/kvm that opens
# but cannot run a guest; the probe catches those.
guest_kvm_usable() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    grep -qwE 'vmx|svm' /proc/cpuinfo || return 1
    local stamp=/run/virtfs-guest-kvm
    if [ ! -f "$stamp" ]; then
        local img=${GUEST_IMAGE:-} job
        [ -n "$img" ] || return 1
        job=$(mktemp)
        echo 'exit 0' > "$job"
        if VIRTFS_GUEST_ACCEL=kvm-only guest_run -t 20 -n kvm-probe "$job" >/dev/null 2>&1; then
            echo yes > "$stamp"
        else
            echo no > "$stamp"
        fi
        rm -f "$job"
    fi
    [ "$(cat "$stamp")" = yes ]
}

guest_accel_args() {
    local accel=${VIRTFS_GUEST_ACCEL:-}
    if [ -z "$accel" ]; then
        if guest_kvm_usable; then accel=kvm; else accel=tcg; fi
    fi
    case $accel in
        kvm-only) echo "-accel kvm -cpu host" ;;
        kvm) echo "-accel kvm -cpu host" ;;
        *) echo "-accel tcg" ;;
    esac
}

guest_run() {
    local image=${GUEST_IMAGE:-} tmo=300 name= mem=512M kargs= OPTIND=1 opt
    local -a bins=() files=() qextra=() ports=()
    local nport=0
    while getopts "i:t:n:m:b:f:s:S:a:q:h" opt; do
        case $opt in
            i) image=$OPTARG ;;
            t) tmo=$OPTARG ;;
            n) name=$OPTARG ;;
            m) mem=$OPTARG ;;
            b) bins+=("$OPTARG") ;;
            f) files+=("$OPTARG") ;;
            s) ports+=("org.virtfs.$nport=$OPTARG"); nport=$((nport + 1)) ;;
            S) ports+=("$OPTARG") ;;
            a) kargs="$kargs $OPTARG" ;;
            q) qextra+=("$OPTARG") ;;
            *) guest_run_usage; return 2 ;;
        esac
    done
    shift $((OPTIND - 1))
    local job=${1:-}
    [ -n "$job" ] && [ -f "$job" ] || { guest_run_usage; return 2; }
    [ -n "$image" ] && [ -f "$image/ready" ] || { guest_die "no guest image (call guest_image first)"; return 2; }
    [ -n "$name" ] || { name=${job##*/}; name=${name%.sh}; }

    local logdir=${VIRTFS_GUEST_LOGDIR:-$VIRTFS_GUEST_CACHE/logs}
    mkdir -p "$logdir"
    local log=$logdir/$name.log work
    work=$(mktemp -d "${TMPDIR:-/tmp}/virtfs-guest.XXXXXX")

    # The job archive: current /init, the job, its binaries and files.  The
    # kernel unpacks concatenated archives in order, so these override the
    # base image.
    mkdir -p "$work/root/job/bin"
    install -m 755 "$GUEST_LIB_DIR/init.sh" "$work/root/init"
    install -m 755 "$job" "$work/root/job/run.sh"
    local f
    for f in "${bins[@]}"; do install -m 755 "$f" "$work/root/job/bin/" || return 2; done
    for f in "${files[@]}"; do cp -a "$f" "$work/root/job/" || return 2; done
    (cd "$work/root" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -1 > "$work/job.cpio.gz"
    cat "$image/initrd.gz" "$work/job.cpio.gz" > "$work/initrd"

    local -a q=("$VIRTFS_GUEST_QEMU" $(guest_accel_args) -M pc -m "$mem" -smp 1
                -nodefaults -no-user-config -display none -no-reboot
                -serial stdio -kernel "$image/vmlinuz" -initrd "$work/initrd"
                -append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off virtfs.timeout=$((tmo > 20 ? tmo - 10 : tmo))$kargs")
    if [ ${#ports[@]} -gt 0 ]; then
        q+=(-device virtio-serial-pci,id=vser0)
        local i=0 p
        for p in "${ports[@]}"; do
            q+=(-chardev "socket,id=vsc$i,path=${p#*=}"
                -device "virtserialport,bus=vser0.0,chardev=vsc$i,name=${p%%=*}")
            i=$((i + 1))
        done
    fi
    q+=("${qextra[@]}")

    local verbose=${VIRTFS_GUEST_VERBOSE:-0} rc t0=$SECONDS
    : > "$log"
    echo "# ${q[*]}" > "$log.cmd"
    # Console -> log (raw) and -> awk, which prints only the job's output,
    # live, and leaves the exit marker out.
    timeout -k 5 "$tmo" "${q[@]}" < /dev/null 2> "$log.qemu" |
        "${GUEST_AWK[@]}" -v v="$verbose" -v logf="$log" '
            { sub(/\r$/, ""); print > logf; fflush(logf) }
            /^VIRTFS-JOB-START$/ { on = 1; if (!v) next }
            /^VIRTFS-JOB-EXIT=/ { on = 0; if (!v) next }
            on || v { print; fflush() }'
    local qrc=${PIPESTATUS[0]}
    rc=$(sed -n 's/^VIRTFS-JOB-EXIT=\([0-9]*\)$/\1/p' "$log" | tail -n1)
    if [ -z "$rc" ]; then
        if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
            guest_log "$name: timed out after $tmo s"
            rc=124
        else
            guest_log "$name: guest stopped without an exit status (qemu status $qrc)"
            rc=125
        fi
    fi
    GUEST_RUN_SECONDS=$((SECONDS - t0))
    if [ "$rc" != 0 ]; then
        guest_log "$name: job exit status $rc after ${GUEST_RUN_SECONDS} s; console log $log, last lines:"
        tail -n 30 "$log" | sed 's/^/    | /' >&2
        [ -s "$log.qemu" ] && sed 's/^/    qemu: /' "$log.qemu" | tail -n 5 >&2
    fi
    rm -rf "$work"
    return "$rc"
}

# --- host-side 9P servers ------------------------------------------------------
#
# VIRTFS_SERVER selects the server the guests talk to:
#   a path to virtfsd (default: $VIRTFSD, else $VIRTFS_BUILD_DIR/tools/virtfsd/virtfsd)
#   "diod"  Debian's diod behind socat, as a stand-in.
# Both serve aname=<export path>; guests mount with
#   virtfs-mount -o uname=root --aname DIR none MNT
# (diod needs uname=root; virtfsd accepts it).

VIRTFS_SRC_DIR=$(cd "$GUEST_LIB_DIR/../.." && pwd)
VIRTFS_BUILD_DIR=${VIRTFS_BUILD_DIR:-$VIRTFS_SRC_DIR/build}
VIRTFS_SERVER=${VIRTFS_SERVER:-${VIRTFSD:-$VIRTFS_BUILD_DIR/tools/virtfsd/virtfsd}}

# guest_wait_socket PATH [SECS]: waits until a Unix socket exists.
guest_wait_socket() {
    local s=$1 n=$(( ${2:-10} * 10 ))
    while [ ! -S "$s" ] && [ $n -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
    [ -S "$s" ]
}

# guest_server_start SOCK DIR [ro]: starts the server in its own process
# group, listening on the Unix socket SOCK.  Sets GUEST_SERVER_PID (also the
# group id) and writes the server's log to SOCK.log.
guest_server_start() {
    local sock=$1 dir=$2 ro=${3:-} exp
    rm -f "$sock"
    if [ "$VIRTFS_SERVER" = diod ]; then
        local o=
        [ "$ro" = ro ] && o="-o ro"
        [ -n "$ro" ] && [ "$ro" != ro ] && { guest_die "diod: no export options $ro"; return 1; }
        setsid socat "UNIX-LISTEN:$sock,unlink-early,fork" \
            EXEC:"diod -f -n -e $dir $o -r 0 -w 1 -L stderr" 2> "$sock.log" &
    else
        [ -x "$VIRTFS_SERVER" ] || { guest_die "server $VIRTFS_SERVER not built"; return 1; }
        exp=$dir
        [ -n "$ro" ] && exp="$dir,$ro"   # ro, nosuid, nodev, comma-separated
        setsid "$VIRTFS_SERVER" --export "$exp" --listen "unix:$sock" 2> "$sock.log" &
    fi
    GUEST_SERVER_PID=$!
    if ! guest_wait_socket "$sock" 10; then
        guest_die "server did not create $sock; its log:"
        tail -n 20 "$sock.log" >&2
        return 1
    fi
}

# guest_server_stop PID: stops a server started by guest_server_start.
guest_server_stop() {
    local pid=${1:-}
    [ -n "$pid" ] || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local n=50
    while kill -0 "$pid" 2>/dev/null && [ $n -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# ---- the host side's TAP lines ------------------------------------------------
passed=0
failed=0
kprefix=
ok() { echo "ok - $kprefix$*"; passed=$((passed + 1)); }
nok() { echo "not ok - $kprefix$*"; failed=$((failed + 1)); }
hcheck() { local d=$1; shift; if "$@" >/dev/null 2>&1; then ok "$d"; else nok "$d"; fi; }
# check DESC CMD...: CMD on the host, its output shown.
check() { local d=$1; shift; if "$@"; then ok "$d"; else nok "$d"; fi; }
# checke DESC 'SHELL EXPRESSION': evaluated (the caller's locals are visible).
checke() { if eval "$2"; then ok "$1"; else nok "$1"; fi; }
# Counts the ok/not ok lines of guest output (on stdin), prefixing them, and
# shows its timed steps (tests/guest/guest-lib.sh's protocol).
count_guest() {
    local line secs st
    while IFS= read -r line; do
        case $line in
            "ok - "*) passed=$((passed + 1)); echo "ok - $kprefix${line#ok - }" ;;
            "not ok - "*) failed=$((failed + 1)); echo "not ok - $kprefix${line#not ok - }" ;;
            "T "*) read -r _ secs st _ <<< "$line"
                   printf '# %s%-34s %7s s%s\n' "$kprefix" "${line#T * * }" "$secs" \
                       "$([ "$st" = 0 ] || echo " (status $st)")" ;;
            *) echo "$line" ;;
        esac
    done
}
summary() {
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
}
