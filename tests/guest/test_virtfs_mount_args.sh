#!/bin/bash
# SPDX-License-Identifier: MIT
# Argument handling of virtfs-mount (no guest, no root, no device needed):
# --dry-run output, and exit status 2 with a message for bad arguments.
#   tests/guest/test_virtfs_mount_args.sh PATH/TO/virtfs-mount
# Output: TAP.
set -u
bin=${1:-build/tools/virtfs-mount/virtfs-mount}
n=0
failed=0
t() { # DESC EXPECTED_STATUS EXPECTED_OUTPUT_REGEX ARGS...
    local desc=$1 want=$2 re=$3 out rc
    shift 3
    out=$("$bin" "$@" 2>&1)
    rc=$?
    n=$((n + 1))
    if [ "$rc" = "$want" ] && grep -Eq -- "$re" <<<"$out"; then
        echo "ok $n - $desc"
    else
        echo "not ok $n - $desc (status $rc, want $want)"
        sed 's/^/#   /' <<<"$out" | head -n 6
        failed=$((failed + 1))
    fi
}
D='^options: trans=fd,rfdno=FD,wfdno=FD'
t "dry run, defaults" 0 "${D},version=9p2000\.L,msize=131072\$" -n none /mnt
t "dry run names the default port" 0 '^transport: virtio-serial port=org\.virtfs\.0$' --dry-run none /mnt
t "dry run prints the mount command" 0 '^mount -t 9p -o trans=fd.* tag0 /mnt/x$' -n tag0 /mnt/x
t "--port NAME" 0 '^transport: virtio-serial port=org\.example\.7$' -n --port org.example.7 none /mnt
t "--aname" 0 "${D},version=9p2000\.L,msize=131072,aname=/srv/x\$" -n --aname /srv/x none /mnt
t "-o appended" 0 "${D},version=9p2000\.L,msize=131072,cache=loose,uname=root\$" -n -o cache=loose,uname=root none /mnt
t "-o msize= replaces the default" 0 "${D},version=9p2000\.L,msize=65536\$" -n -o msize=65536 none /mnt
t "-o version= replaces the default" 0 "${D},msize=131072,version=9p2000\.u\$" -n -o version=9p2000.u none /mnt
t "--msize" 0 "${D},version=9p2000\.L,msize=262144\$" -n --msize 262144 none /mnt
t "--vsock" 0 '^transport: vsock cid=2 port=5640$' -n --vsock 5640 none /mnt
t "--vsock --cid" 0 '^transport: vsock cid=7 port=5640$' -n --vsock 5640 --cid 7 none /mnt
t "--help" 0 '^usage: virtfs-mount' --help
t "--version" 0 '^virtfs-mount [0-9]' --version
t "no arguments" 2 'missing TAG_OR_NONE' 
t "one argument" 2 'missing TAG_OR_NONE' none
t "three arguments" 2 'too many arguments' none /mnt extra
t "unknown long option" 2 "unknown option '--bogus'" --bogus none /mnt
t "unknown short option" 2 "unknown option '-x'" -x none /mnt
t "option without its argument" 2 "'--port' needs an argument" none /mnt --port
t "-o trans= is reserved" 2 "option 'trans' is set by" -n -o trans=tcp none /mnt
t "-o rfdno= is reserved" 2 "option 'rfdno' is set by" -n -o cache=none,rfdno=3 none /mnt
t "-o wfdno= is reserved" 2 "option 'wfdno' is set by" -n -o wfdno=3 none /mnt
t "--aname and -o aname= conflict" 2 'both given' -n --aname a -o aname=b none /mnt
t "-o twice" 2 '-o given twice' -n -o a -o b none /mnt
t "--port with --vsock" 2 'exclude each other' -n --port p --vsock 1 none /mnt
t "--cid without --vsock" 2 '--cid needs --vsock' -n --cid 3 none /mnt
t "--vsock not a number" 2 "--vsock: invalid port number 'abc'" -n --vsock abc none /mnt
t "--vsock negative" 2 "invalid port number '-1'" -n --vsock -1 none /mnt
t "--cid too large" 2 "--cid: invalid CID" -n --vsock 1 --cid 99999999999 none /mnt
t "--msize too small" 2 "--msize: invalid size '100'" -n --msize 100 none /mnt
t "--msize garbage" 2 "--msize: invalid size '12k'" -n --msize 12k none /mnt
t "--timeout 0" 2 "--timeout: invalid" -n --timeout 0 none /mnt
t "--aname with a comma" 2 "--aname: a comma" -n --aname a,b none /mnt
t "empty --port" 2 "empty port name" -n --port '' none /mnt
t "empty mount point" 2 "empty source or mount point" -n none ''
t "missing mount point directory" 1 "mount point /nonexistent/virtfs: No such file" none /nonexistent/virtfs
t "mount point is a file" 1 "is not a directory" none /etc/hostname
t "port that never appears: clear error after --timeout" 1 "port 'org.virtfs.none' not found .* after 1 s" \
    --port org.virtfs.none --timeout 1 none /tmp
t "port given as a missing device path" 1 "/dev/virtfs-no-such-port: No such file" \
    --port /dev/virtfs-no-such-port none /tmp
echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ $failed = 0 ]
