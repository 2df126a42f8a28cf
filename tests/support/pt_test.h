/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the passthrough backend tests: temporary exports under
 * /tmp, recursive removal, small file helpers, and a readdir collector.
 * Every test calls the be_ops directly.  The code is in pt_test.c, part of
 * the test-support library (tests/support/meson.build).
 */
#ifndef VIRTFS_TESTS_SUPPORT_PT_TEST_H
#define VIRTFS_TESTS_SUPPORT_PT_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/fs.h"
#include "tap.h"

#include "virtfs/backend.h"

#define OPS(be) ((be)->ops)

/* The names these tests use for support/fs.h's helpers. */
static inline void
rmtree(const char *path)
{
    th_rmtree(path);
}

/* mkdtemp under /tmp; returns a malloc'd path or exits. */
static inline char *
mktmp(const char *tag)
{
    return th_mkdtemp(tag);
}

/* Readdir collector: names (malloc'd) and offsets; stops after 'limit'. */
struct dcoll {
    char **names;
    size_t count;
    size_t cap;
    size_t limit; /* per call; 0 = unlimited */
    size_t this_call;
    uint64_t last_off;
    int bad;
};

/* A passthrough backend on "root" (exits on failure). */
struct backend *be_open(const char *root, bool ro, bool mu);
/* Write DIR/NAME with "content".  0 or -errno. */
int put_file(const char *dir, const char *name, const char *content);
/* Walk a '/'-separated relative path from 'start' one element at a time. */
int walkp(struct backend *be, struct be_node *start, const char *path,
          struct be_node **out);
/* The export root node (exits on failure). */
struct be_node *get_root(struct backend *be, struct p9_qid *qid);
/* Read everything from an open handle into buf (NUL-terminated). */
ssize_t read_all(struct backend *be, struct be_handle *h, char *buf,
                 size_t size);
/* A be_readdir_fn collecting into the struct dcoll "ctx". */
int dcoll_fn(void *ctx, const struct p9_qid *qid, uint64_t off, uint8_t type,
             const char *name, size_t namelen);
/* Free the names and reset the collector. */
void dcoll_free(struct dcoll *c);
/* Read the whole directory in chunks of 'limit' entries. */
int dcoll_all(struct backend *be, struct be_handle *h, struct dcoll *c,
              size_t limit);
/* Was "name" collected? */
bool dcoll_has(const struct dcoll *c, const char *name);
/* Number of entries (excluding . and ..) in a host directory. */
int count_entries(const char *path);

#endif /* VIRTFS_TESTS_SUPPORT_PT_TEST_H */
