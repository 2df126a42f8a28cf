/* SPDX-License-Identifier: MIT */
/*
 * libp9c: Treaddir and a directory iterator.  Every batch of dirents is
 * validated as a whole before any entry is handed out: each must parse,
 * names must be non-empty and free of '/' and NUL, and the bytes must end
 * exactly at the last entry.
 */
#include "client/p9c_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct p9c_dir {
    struct p9c_fid *fid;
    uint32_t count;  /* Treaddir count */
    uint8_t *buf;    /* last batch, 'count' bytes */
    size_t len;      /* bytes in buf */
    size_t pos;      /* parse position in buf */
    uint64_t offset; /* cookie for the next Treaddir */
    uint64_t asked;  /* cookie the current batch was asked with */
    bool eof;
    char name[UINT16_MAX + 1]; /* NUL-terminated copy of the current name */
};

/* Parse the dirent at buf[*pos]; 0 or -EPROTO. */
static int
parse_one(const uint8_t *buf, size_t len, size_t *pos, struct p9_dirent *d)
{
    struct p9_rbuf b;
    struct iovec one;
    size_t start = *pos;

    p9_rbuf_init_flat(&b, &one, buf + start, len - start);
    p9_get_dirent(&b, d);
    if (b.bad || d->name.len == 0 ||
        memchr(d->name.s, '/', d->name.len) != NULL ||
        memchr(d->name.s, '\0', d->name.len) != NULL) {
        return -EPROTO;
    }
    *pos = len - b.left;
    return 0;
}

ssize_t
p9c_readdir(struct p9c_fid *f, uint64_t offset, void *buf, uint32_t count)
{
    struct p9_fcall t = {.type = P9_TREADDIR};
    struct p9c_reply *rep;
    struct p9_dirent d;
    uint32_t max = p9c_msize(f->conn) - P9_READDIRHDRSZ;
    uint32_t got;
    size_t pos = 0;
    int err;

    if (count > max) {
        count = max;
    }
    t.u.treaddir.fid = f->fid;
    t.u.treaddir.offset = offset;
    t.u.treaddir.count = count;
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        return err;
    }
    got = rep->f.u.rreaddir.data.len;
    if (got > count) {
        err = -EPROTO;
        goto out_free;
    }
    p9_data_copy(&rep->f.u.rreaddir.data, buf);
    while (pos < got) {
        err = parse_one(buf, got, &pos, &d);
        if (err != 0) {
            goto out_free;
        }
    }
    p9c_reply_free(rep);
    return got;

out_free:
    p9c_reply_free(rep);
    return err;
}

int
p9c_dir_open(struct p9c_fid *f, uint32_t count, struct p9c_dir **out)
{
    uint32_t max = p9c_msize(f->conn) - P9_READDIRHDRSZ;
    struct p9c_dir *d;

    *out = NULL;
    if (count == 0 || count > max) {
        count = max;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return -ENOMEM;
    }
    d->buf = malloc(count);
    if (d->buf == NULL) {
        free(d);
        return -ENOMEM;
    }
    d->fid = f;
    d->count = count;
    *out = d;
    return 0;
}

int
p9c_dir_next(struct p9c_dir *d, struct p9c_dirent *ent)
{
    struct p9_dirent de;
    int err;

    while (d->pos >= d->len) {
        ssize_t n;

        if (d->eof) {
            return 0;
        }
        if (d->len > 0 && d->offset == d->asked) {
            /* a batch that does not advance the cookie would loop forever */
            return -EPROTO;
        }
        d->asked = d->offset;
        n = p9c_readdir(d->fid, d->offset, d->buf, d->count);
        if (n < 0) {
            return (int)n;
        }
        d->len = (size_t)n;
        d->pos = 0;
        if (n == 0) {
            d->eof = true;
        }
    }
    err = parse_one(d->buf, d->len, &d->pos, &de);
    if (err != 0) {
        return err;
    }
    memcpy(d->name, de.name.s, de.name.len);
    d->name[de.name.len] = '\0';
    d->offset = de.offset;
    ent->qid = de.qid;
    ent->offset = de.offset;
    ent->type = de.type;
    ent->name = d->name;
    ent->namelen = de.name.len;
    return 1;
}

void
p9c_dir_close(struct p9c_dir *d)
{
    if (d == NULL) {
        return;
    }
    free(d->buf);
    free(d);
}
