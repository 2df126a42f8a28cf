/* SPDX-License-Identifier: MIT */
/*
 * libp9c: POSIX byte-range locks (Tlock, Tgetlock).  The server's answer
 * is range-checked: an unknown status or lock type gives -EPROTO.
 */
#include "client/p9c_impl.h"

#include <errno.h>
#include <string.h>

int
p9c_lock(struct p9c_fid *f, const struct p9c_flock *l, uint8_t *status)
{
    struct p9_fcall t = {.type = P9_TLOCK};
    struct p9c_reply *rep;
    int err;

    t.u.tlock.fid = f->fid;
    t.u.tlock.type = l->type;
    t.u.tlock.flags = l->flags;
    t.u.tlock.start = l->start;
    t.u.tlock.length = l->length;
    t.u.tlock.proc_id = l->proc_id;
    t.u.tlock.client_id.s = l->client_id;
    t.u.tlock.client_id.len =
        (uint16_t)strnlen(l->client_id, sizeof(l->client_id));
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        return err;
    }
    *status = rep->f.u.rlock.status;
    p9c_reply_free(rep);
    if (*status > P9_LOCK_GRACE) {
        return -EPROTO;
    }
    return 0;
}

int
p9c_getlock(struct p9c_fid *f, struct p9c_flock *l)
{
    struct p9_fcall t = {.type = P9_TGETLOCK};
    struct p9c_reply *rep;
    const struct p9_rgetlock *g;
    size_t n;
    int err;

    t.u.tgetlock.fid = f->fid;
    t.u.tgetlock.type = l->type;
    t.u.tgetlock.start = l->start;
    t.u.tgetlock.length = l->length;
    t.u.tgetlock.proc_id = l->proc_id;
    t.u.tgetlock.client_id.s = l->client_id;
    t.u.tgetlock.client_id.len =
        (uint16_t)strnlen(l->client_id, sizeof(l->client_id));
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        return err;
    }
    g = &rep->f.u.rgetlock;
    if (g->type > P9_LOCK_TYPE_UNLCK) {
        p9c_reply_free(rep);
        return -EPROTO;
    }
    l->type = g->type;
    l->start = g->start;
    l->length = g->length;
    l->proc_id = g->proc_id;
    n = g->client_id.len;
    if (n >= sizeof(l->client_id)) {
        n = sizeof(l->client_id) - 1;
    }
    memcpy(l->client_id, g->client_id.s, n);
    l->client_id[n] = '\0';
    p9c_reply_free(rep);
    return 0;
}
