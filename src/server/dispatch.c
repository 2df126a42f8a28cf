/* SPDX-License-Identifier: MIT */
/*
 * The op table and the single exit.
 *
 * The table is built from p9_msgs.def, indexed by the 8-bit message type
 * (it cannot overrun).  Every request leaves through p9s_respond() exactly
 * once: errors become Rlerror there and nowhere else; a flushed request
 * that did not complete is dropped (no reply); Tflush waiters are answered
 * after the reply.
 */
#include "server/srv_int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"

typedef int op_fn(struct p9s_req *r);

static const struct op_desc {
    op_fn *fn;
    unsigned flags;
} op_table[256] = {
#define P9_MSG(NAME, name, ID, FLAGS) [ID] = {op_##name, (FLAGS)},
#include "proto/p9_msgs.def"
#undef P9_MSG
};

/* The fid whose export decides read-only gating, for mutating messages. */
static bool
req_primary_fid(const struct p9_fcall *t, uint32_t *fid)
{
    switch (t->type) {
    case P9_TLCREATE:
        *fid = t->u.tlcreate.fid;
        return true;
    case P9_TSYMLINK:
        *fid = t->u.tsymlink.fid;
        return true;
    case P9_TMKNOD:
        *fid = t->u.tmknod.dfid;
        return true;
    case P9_TRENAME:
        *fid = t->u.trename.fid;
        return true;
    case P9_TSETATTR:
        *fid = t->u.tsetattr.fid;
        return true;
    case P9_TXATTRCREATE:
        *fid = t->u.txattrcreate.fid;
        return true;
    case P9_TLINK:
        *fid = t->u.tlink.dfid;
        return true;
    case P9_TMKDIR:
        *fid = t->u.tmkdir.dfid;
        return true;
    case P9_TRENAMEAT:
        *fid = t->u.trenameat.olddirfid;
        return true;
    case P9_TUNLINKAT:
        *fid = t->u.tunlinkat.dirfd;
        return true;
    case P9_TWRITE:
        *fid = t->u.twrite.fid;
        return true;
    default:
        return false;
    }
}

static bool
req_on_readonly(struct p9s_req *r)
{
    struct fid *f;
    uint32_t num;
    bool ro;

    if (!req_primary_fid(&r->t, &num)) {
        return false;
    }
    f = fid_get(&r->conn->fids, num);
    if (f == NULL) {
        return false; /* the op reports EBADF */
    }
    ro = f->ex->readonly;
    fid_put(f);
    return ro;
}

void
p9s_dispatch(struct p9s_req *r)
{
    const struct op_desc *op = &op_table[r->t.type];
    bool run = conn_start(r);
    int err;

    if (!run && !(op->flags & P9F_MUSTRUN)) {
        err = -EINTR; /* flushed while queued: dropped by respond */
    } else if (r->decode_err == -EOPNOTSUPP || op->fn == NULL ||
               !p9_is_tmsg(r->t.type)) {
        log_peer("%s: unsupported message type %u", r->conn->peer,
                 r->t.type);
        err = -EOPNOTSUPP;
    } else if (r->decode_err < 0) {
        log_peer("%s: malformed %s (tag %u)", r->conn->peer,
                 p9_type_name(r->t.type), r->t.tag);
        err = r->decode_err;
    } else if (!(op->flags & (P9F_RO | P9F_MUSTRUN)) && req_on_readonly(r)) {
        err = -EROFS;
    } else {
        err = op->fn(r);
    }
    p9s_respond(r, err);
}

int
req_out(struct p9s_req *r, size_t need)
{
    struct p9s_conn *c = r->conn;
    int err;

    if (!r->have_out) {
        err = c->ops->reply_buf(c, r->cookie, need, &r->out, &r->outcnt);
        if (err < 0) {
            return err;
        }
        r->have_out = true;
        p9_wbuf_init(&r->w, r->out, r->outcnt);
    }
    return 0;
}

static void
trace_reply(struct p9s_req *r)
{
    char line[512];

    p9_format(&r->r, line, sizeof(line));
    log_msg(LOG_LVL_INFO, "%s -> %s", r->conn->peer, line);
}

void
p9s_respond(struct p9s_req *r, int err)
{
    struct p9s_conn *c = r->conn;
    struct timespec now;
    bool drop;
    long len = -1;

    assert(!r->responded);
    r->responded = true;

    pthread_mutex_lock(&c->lock);
    drop = r->flushed && (err == -EINTR || c->closing);
    r->state = REQ_REPLYING; /* from here the peer may reuse the tag */
    pthread_mutex_unlock(&c->lock);

    if (!drop) {
        r->r.tag = r->t.tag;
        if (err < 0) {
            r->r.type = P9_RLERROR;
            r->r.u.rlerror.ecode = p9_errno_to_dotl(-err);
        } else {
            r->r.type = (uint8_t)(r->t.type + 1);
        }
        if (req_out(r, p9_encoded_size(&r->r)) == 0) {
            p9_wbuf_init(&r->w, r->out, r->outcnt);
            len = p9_encode(&r->w, &r->r);
        }
        if (len < 0 && err >= 0) {
            /* the reply does not fit what the transport gave us */
            log_peer("%s: reply to %s does not fit (%ld)", c->peer,
                     p9_type_name(r->t.type), len);
            r->r.type = P9_RLERROR;
            r->r.u.rlerror.ecode = p9_errno_to_dotl(ENOBUFS);
            p9_wbuf_init(&r->w, r->out, r->outcnt);
            len = p9_encode(&r->w, &r->r);
        }
        drop = len < 0;
    }
    if (drop) {
        c->ops->drop(c, r->cookie);
    } else {
        if (c->srv->trace) {
            trace_reply(r);
        }
        c->ops->send(c, r->cookie, (size_t)len);
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    stats_record(c->srv, r->t.type,
                 (uint64_t)(now.tv_sec - r->start.tv_sec) * 1000000000u +
                     (uint64_t)now.tv_nsec - (uint64_t)r->start.tv_nsec,
                 err < 0);
    conn_req_done(r, !drop);
}
