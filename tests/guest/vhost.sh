#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The guest suite's vhost-user parts: tests/guest/run.sh --transport vhost
# (parts 8-10, tests/guest/vhost-parts.sh; see run.sh --help).  Kept for its
# command line, which CI and the docs use:
#
#   tests/guest/vhost.sh [--kernel 6.1|6.12]... [--virtfsd PATH] [--keep]
#                        [--part a|d|e]...   (default: all)
#
#   (a) workload and reconnect          = run.sh --part 8
#   (d) root file system on virtfsd     = run.sh --part 9
#   (e) security models (mapped-xattr, mapped-file, a mapped-xattr root)
#                                       = run.sh --part 10
#
# Needs root.  Environment: VIRTFSD (virtfsd binary), VIRTFS_BUILD_DIR
# (default build; virtfsd is built there when missing), VIRTFS_GUEST_CACHE.
# Prints "ok - ..." / "not ok - ..." and "N passed, N failed"; exit status 1
# when a check failed.
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --virtfsd) args+=(--server "$2"); shift 2 ;;
        --part)
            case $2 in
                a) args+=(--part 8) ;;
                d) args+=(--part 9) ;;
                e) args+=(--part 10) ;;
                *) echo "vhost.sh: --part a|d|e" >&2; exit 2 ;;
            esac
            shift 2 ;;
        -h|--help) sed -n '3,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$1"); shift ;;
    esac
done
exec bash "$(dirname "$0")/run.sh" --transport vhost "${args[@]}"
