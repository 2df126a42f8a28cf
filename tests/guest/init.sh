#!/bin/sh
# SPDX-License-Identifier: MIT
# /init of the VirtFS test guest (busybox).  Mounts the pseudo file systems,
# loads the modules listed in /etc/modules.load, runs /job/run.sh with a
# timeout and prints "VIRTFS-JOB-EXIT=<status>" on the console, then powers
# off.  Kernel parameters read from /proc/cmdline:
#   virtfs.timeout=SECS   job timeout (default 300)
#   virtfs.debug=1        show module loading
export PATH=/job/bin:/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root TMPDIR=/tmp

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mount -t tmpfs -o mode=755 dev /dev
mkdir -p /dev/pts /dev/shm /tmp /mnt /run
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
exec 0</dev/null 1>/dev/console 2>&1

tmo=300 debug=0
for a in $(cat /proc/cmdline); do
    case $a in
        virtfs.timeout=*) tmo=${a#*=} ;;
        virtfs.debug=*) debug=${a#*=} ;;
    esac
done

for m in $(cat /etc/modules.load 2>/dev/null); do
    if out=$(insmod "/lib/modules/$m.ko" 2>&1); then
        [ "$debug" = 1 ] && echo "init: loaded $m"
    else
        case $out in
            *"File exists"*) ;;
            *) echo "init: insmod $m: $out" ;;
        esac
    fi
done
hostname guest

echo VIRTFS-JOB-START
cd /job || cd /
timeout -s KILL "$tmo" sh /job/run.sh
rc=$?
[ $rc = 137 ] && echo "init: job killed after $tmo s"
echo "VIRTFS-JOB-EXIT=$rc"
sync
poweroff -f
sleep 5
