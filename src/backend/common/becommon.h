/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the host-file-system backends (passthrough, overlay):
 * the pieces where both must answer the guest the same way.
 */
#ifndef VIRTFS_BACKEND_COMMON_H
#define VIRTFS_BACKEND_COMMON_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "virtfs/p9.h"

/*
 * A 9P lock range (type, start, length; length 0 = to EOF) as a struct
 * flock for F_OFD_*: 0, or -EINVAL for an unknown type or a start past
 * the largest file offset.  A range reaching past the largest offset is
 * clamped to "to EOF", as POSIX ranges cannot express more.
 */
int becommon_flock(uint8_t type, uint64_t start, uint64_t length,
                   struct flock *fl);

/*
 * Fill the basic (+ btime when the file system gave it) fields of an
 * Rgetattr from a statx result.  The qid is left for the caller: each
 * backend derives it its own way.
 */
void becommon_statx_to_rgetattr(const struct statx *stx,
                                struct p9_rgetattr *out);

/* qid.version from a modification time: changes whenever the contents
 * do (32 bits on the wire), so 6.4+ Linux clients may cache. */
uint32_t becommon_qid_version(int64_t mtime_sec, uint32_t mtime_nsec);

/* open(path, oflags): the descriptor or -errno.  With 'nowait'
 * (BE_OPEN_NOWAIT, for a regular file) it does not wait for the break of
 * a lease a host process holds: the open is O_NONBLOCK, which gives
 * -EAGAIN instead (the kernel starts the break), and O_NONBLOCK is
 * cleared again unless oflags asked for it. */
int becommon_open_file(const char *path, int oflags, bool nowait);

#endif /* VIRTFS_BACKEND_COMMON_H */
