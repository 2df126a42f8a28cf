/* SPDX-License-Identifier: MIT */
/*
 * Host-side file helpers shared by the test programs (part of the
 * test-support library, tests/support/meson.build): temporary directories,
 * whole-file reads and writes, recursive removal and a checksum of a tree.
 * Setup failures exit(99): a hard error, not a test result.
 */
#ifndef VIRTFS_TESTS_SUPPORT_FS_H
#define VIRTFS_TESTS_SUPPORT_FS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* A fixture step that must work (exit 99: a hard error, not a test result). */
#define SETUP_OK(call)                                                    \
    do {                                                                  \
        if ((call) < 0) {                                                 \
            fprintf(stderr, "%s:%d: setup: %s: %s\n", __FILE__, __LINE__, \
                    #call, strerror(errno));                              \
            exit(99);                                                     \
        }                                                                 \
    } while (0)

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t th_now_ms(void);
/* Descriptors this process has open now (/proc/self/fd), or -1. */
int th_count_fds(void);
/* rm -rf, not following symlinks; best effort. */
void th_rmtree(const char *path);
/* A fresh directory /tmp/vfst-TAG-XXXXXX (malloc'ed; exits on failure). */
char *th_mkdtemp(const char *tag);
/* Create or truncate 'path' with 'len' bytes of 'data'.  0 or -errno. */
int th_write_file(const char *path, const void *data, size_t len);
/* Read a whole file (up to size-1 bytes, NUL-terminated); length or -errno. */
ssize_t th_read_file(const char *path, char *buf, size_t size);
/* lstat() succeeds. */
bool th_exists(const char *path);
/* Go 'depth' directories 'name' down from 'top' (making each first when
 * 'make'), one openat at a time (the path would pass PATH_MAX).  Returns
 * the deepest directory reached, open (the caller closes it), or -1;
 * *levels says how many levels down that is. */
int th_chain(const char *top, const char *name, int depth, bool make,
             int *levels);
/* Become nobody (uid and gid 65534, no supplementary groups) for good.
 * 0, or -errno of the call that failed. */
int th_become_nobody(void);
/* FNV-1a over a tree: names, types, modes, sizes, contents, link targets
 * (0 if it cannot be read). */
uint64_t th_tree_hash(const char *path);

#endif /* VIRTFS_TESTS_SUPPORT_FS_H */
