/* SPDX-License-Identifier: MIT */
/*
 * Passthrough backend test helpers (support/pt_test.h).
 */
#include "support/pt_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

struct backend *
be_open(const char *root, bool ro, bool mu)
{
    struct pt_options o = {
        .root = root, .readonly = ro, .multiuser = mu, .remap_devs = true};
    struct backend *be = NULL;
    int err = pt_backend_new(&o, &be);

    if (err < 0) {
        fprintf(stderr, "pt_backend_new(%s): %s\n", root, strerror(-err));
        exit(2);
    }
    return be;
}

int
put_file(const char *dir, const char *name, const char *content)
{
    char path[4096];
    int fd;
    ssize_t len = (ssize_t)strlen(content);

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
        sizeof(path)) {
        return -ENAMETOOLONG;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return -errno;
    }
    if (write(fd, content, (size_t)len) != len) {
        close(fd);
        return -EIO;
    }
    close(fd);
    return 0;
}

/* Walk a '/'-separated relative path from 'start' one element at a time. */
int
walkp(struct backend *be, struct be_node *start, const char *path,
      struct be_node **out)
{
    char buf[512];
    char *save = NULL;
    char *tok;
    struct be_node *cur = start;
    struct p9_qid qid;

    OPS(be)->node_get(be, cur);
    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, "/", &save); tok != NULL;
         tok = strtok_r(NULL, "/", &save)) {
        struct be_node *next;
        int err = OPS(be)->walk1(be, cur, tok, &next, &qid);

        OPS(be)->node_put(be, cur);
        if (err < 0) {
            return err;
        }
        cur = next;
    }
    *out = cur;
    return 0;
}

struct be_node *
get_root(struct backend *be, struct p9_qid *qid)
{
    struct be_node *r = NULL;
    struct p9_qid q;

    if (OPS(be)->root(be, &r, qid != NULL ? qid : &q) < 0) {
        exit(2);
    }
    return r;
}

/* Read everything from an open handle into buf (NUL-terminated). */
ssize_t
read_all(struct backend *be, struct be_handle *h, char *buf, size_t size)
{
    struct iovec iov = {.iov_base = buf, .iov_len = size - 1};
    ssize_t n = OPS(be)->read(be, h, &iov, 1, 0);

    buf[n > 0 ? n : 0] = '\0';
    return n;
}

int
dcoll_fn(void *ctx, const struct p9_qid *qid, uint64_t off, uint8_t type,
         const char *name, size_t namelen)
{
    struct dcoll *c = ctx;

    (void)qid;
    (void)type;
    if (c->limit != 0 && c->this_call >= c->limit) {
        return 1;
    }
    if (c->count == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 1024;
        char **nn = realloc(c->names, ncap * sizeof(*nn));

        if (nn == NULL) {
            c->bad = 1;
            return 1;
        }
        c->names = nn;
        c->cap = ncap;
    }
    c->names[c->count] = strndup(name, namelen);
    c->count++;
    c->this_call++;
    c->last_off = off;
    return 0;
}

void
dcoll_free(struct dcoll *c)
{
    for (size_t i = 0; i < c->count; i++) {
        free(c->names[i]);
    }
    free(c->names);
    memset(c, 0, sizeof(*c));
}

/* Read the whole directory in chunks of 'limit' entries. */
int
dcoll_all(struct backend *be, struct be_handle *h, struct dcoll *c,
          size_t limit)
{
    uint64_t off = 0;

    c->limit = limit;
    for (;;) {
        size_t before = c->count;
        int err;

        c->this_call = 0;
        err = OPS(be)->readdir(be, h, off, dcoll_fn, c);
        if (err < 0) {
            return err;
        }
        if (c->count == before) {
            return 0;
        }
        off = c->last_off;
    }
}

bool
dcoll_has(const struct dcoll *c, const char *name)
{
    for (size_t i = 0; i < c->count; i++) {
        if (strcmp(c->names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* Number of entries (excluding . and ..) in a host directory. */
int
count_entries(const char *path)
{
    char cmd[600];
    FILE *f;
    int n = -1;

    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", path);
    f = popen(cmd, "r");
    if (f == NULL) {
        return -1;
    }
    if (fscanf(f, "%d", &n) != 1) {
        n = -1;
    }
    pclose(f);
    return n;
}
