/* SPDX-License-Identifier: MIT */
/*
 * Sessions: one per transport connection (or virtio device).  A session
 * keeps the negotiated msize, the fid table and the table of in-flight
 * tags (request.c runs the requests).  It is released once it is closing
 * and its last request is done.
 */
#include "server/srv_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

struct p9s_conn *
p9s_conn_new(struct p9s_server *srv, const struct p9s_conn_ops *ops, void *tp,
             const char *peer)
{
    struct p9s_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->srv = srv;
    c->ops = ops;
    c->tp = tp;
    snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "?");
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->msize, srv->msize);
    atomic_init(&c->mem.used, 0);
    c->mem.max = srv->session_mem;
    atomic_init(&c->locks.used, 0);
    c->locks.max = srv->max_locks;
    atomic_init(&c->fds.used, 0);
    c->fds.max = srv->session_fds;
    c->lim.mem = &c->mem;
    c->lim.locks = &c->locks;
    c->lim.fds = &c->fds;
    if (fid_table_init(&c->fids, srv->max_fids, &srv->nfids,
                       srv->max_fids_total, &c->mem, c->peer) < 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
    }
    atomic_fetch_add(&srv->nconns, 1);
    log_debug("%s: session opened", c->peer);
    return c;
}

uint32_t
p9s_conn_msize(struct p9s_conn *c)
{
    return atomic_load(&c->msize);
}

long
p9s_frame_len(struct p9s_conn *c, const uint8_t hdr[4])
{
    uint32_t size = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 |
                    (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;

    /* Before Tversion the session msize is the server cap. */
    if (size < P9_HDRSZ || size > atomic_load(&c->msize)) {
        log_peer("%s: bad frame size %u (msize %u)", c->peer, size,
                 atomic_load(&c->msize));
        return -EPROTO;
    }
    return size;
}

void
conn_release(struct p9s_conn *c)
{
    /* every request is done: clunk what is left and hand back */
    fid_table_fini(&c->fids);
    atomic_fetch_sub(&c->srv->nconns, 1);
    log_debug("%s: session closed", c->peer);
    c->ops->release(c, c->tp);
    pthread_mutex_destroy(&c->lock);
    free(atomic_load(&c->spare));
    free(c);
}

/* The session holds as many descriptors for good as it may: -EMFILE, and
 * one rate-limited line naming the peer. */
int
conn_fds_full(struct p9s_conn *c)
{
    log_peer("%s: descriptors the session holds at the limit (%llu; "
             "--session-fds), the open answers EMFILE",
             c->peer, (unsigned long long)c->fds.max);
    return -EMFILE;
}

/* Give a new handle its session's budgets; -EMFILE when it would hold one
 * descriptor more than the session may keep (the caller closes it). */
int
conn_handle_limits(struct p9s_conn *c, struct backend *be, struct be_handle *h)
{
    int err = 0;

    if (be->ops->handle_limits != NULL) {
        err = be->ops->handle_limits(be, h, &c->lim);
    }
    return err == -EMFILE ? conn_fds_full(c) : err;
}

void
conn_reset_session(struct p9s_conn *c)
{
    fid_clunk_all(&c->fids);
}

void
p9s_conn_close(struct p9s_conn *c)
{
    bool release;

    pthread_mutex_lock(&c->lock);
    c->closing = true;
    for (unsigned i = 0; i < TAG_BUCKETS; i++) {
        for (struct p9s_req *r = c->tags[i]; r != NULL; r = r->tag_next) {
            r->flushed = true; /* nobody is listening any more */
            if (r->state == REQ_RUNNING) {
                pthread_kill(r->worker, SIGURG);
            }
        }
    }
    release = c->inflight == 0 && !c->released;
    if (release) {
        c->released = true;
    }
    pthread_mutex_unlock(&c->lock);
    if (release) {
        conn_release(c);
    }
}
