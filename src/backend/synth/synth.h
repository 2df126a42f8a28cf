/* SPDX-License-Identifier: MIT */
/*
 * The synthetic backend: a whole file system in memory, for deterministic
 * server tests and the session fuzzer (QEMU's 9p-synth is the precedent).
 *
 * It implements every op of include/virtfs/backend.h: directories, regular
 * files with data, symlinks, device nodes / FIFOs / sockets (attributes
 * only: opening one answers ENXIO), xattrs, hard links, rename, unlink,
 * readdir with stable offsets, statfs and simple byte-range locks.
 *
 * Determinism: inode numbers (qid.path) count up from 1 (the root) in
 * creation order; qid.version counts changes of the node's data; times
 * come from a logical clock that ticks once per mutation.  The same
 * sequence of operations gives the same qids, offsets and attributes.
 *
 * Bounded memory: 'max_bytes' caps the payload (file data, names, symlink
 * targets, xattr names and values) and 'max_nodes' the number of nodes;
 * beyond either an op answers ENOSPC and changes nothing.
 *
 * Users: no permission checks.  A user is its uid (n_uname, else a numeric
 * uname, else 0); new nodes belong to the acting user and the gid the
 * client asked for.
 */
#ifndef VIRTFS_BACKEND_SYNTH_H
#define VIRTFS_BACKEND_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "virtfs/backend.h"

struct synth_options {
    size_t max_bytes;   /* payload cap; 0 = 64 MiB */
    unsigned max_nodes; /* node cap, root included; 0 = 65536 */
    bool readonly;      /* every mutation answers EROFS */
};

int synth_backend_new(const struct synth_options *opt, struct backend **out);

/*
 * Populate from the host side (tests), before the backend serves (it
 * lifts 'readonly' for the call): create 'path' (relative to the
 * root, '/'-separated, parents must exist) with 'mode' (type and
 * permission bits).  Regular files get 'data'/'len' as contents, symlinks
 * get it as their target; other types ignore it.  0 or -errno.
 */
int synth_add(struct backend *be, const char *path, uint32_t mode,
              const void *data, size_t len);

/* Live counts, e.g. to check that a session released everything. */
struct synth_stats {
    unsigned nodes; /* allocated nodes, root included */
    size_t bytes;   /* payload bytes in use */
    long node_refs; /* node references held by the caller (walk, root...) */
    long handles;   /* open handles */
    long users;     /* users from user_get not yet put */
};

void synth_get_stats(struct backend *be, struct synth_stats *st);

#endif /* VIRTFS_BACKEND_SYNTH_H */
