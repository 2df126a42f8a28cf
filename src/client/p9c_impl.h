/* SPDX-License-Identifier: MIT */
/*
 * libp9c internals: the connection, the tag table and the request object.
 *
 * Locking: conn->mu protects the tag table, every request's state, the
 * waiter list, 'reading', 'dead' and the fid-number allocator.  conn->wmu
 * serialises writes to the fd (a frame is written whole under it).  The
 * input state (in*, cur*) is touched only by the thread that set
 * 'reading' (under mu) and so needs no lock of its own.  Lock order: wmu
 * is never taken with mu held, and mu is never held across I/O.
 */
#ifndef VIRTFS_CLIENT_P9C_IMPL_H
#define VIRTFS_CLIENT_P9C_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtfs/client.h"
#include "proto/p9_codec.h"

#define P9C_NTAGS 65536u       /* tag table covers every 16-bit tag */
#define P9C_INBUF (64u * 1024) /* read-ahead buffer for small replies */
#define P9C_SMALL_MSG 512      /* encode on the stack up to this size */
#define P9C_TWRITE_HDR (P9_HDRSZ + 4 + 8 + 4) /* size..tag fid offset count */

/* A request in flight: registered in conn->tags[tag] until answered. */
struct p9c_req {
    struct p9c_conn *conn;
    uint16_t tag;
    bool is_flush; /* a Tflush: its Rflush completes 'flush_oldtag' */
    uint16_t flush_oldtag;
    bool done;      /* reply, flush or error arrived (mu) */
    bool abandoned; /* nobody will wait: free on completion (mu) */
    int err;        /* 0 with 'reply', else -errno (mu) */
    struct p9c_reply *reply;
    pthread_cond_t cv;     /* signalled on completion or reader hand-off */
    struct p9c_req *wnext; /* waiter list (mu), while blocked in wait */
    struct p9c_req *wprev;
};

struct p9c_conn {
    int fd;
    uint32_t msize;      /* negotiated (or proposed) msize */
    uint32_t rmax;       /* largest frame accepted from the server */
    unsigned timeout_ms; /* 0 = wait forever */

    pthread_mutex_t mu;
    pthread_mutex_t wmu;   /* serialises writes */
    struct p9c_req **tags; /* P9C_NTAGS slots (mu) */
    uint16_t next_tag;     /* rotating allocation cursor (mu) */
    bool reading;          /* some waiter owns the input side (mu) */
    int dead;              /* 0 or the -errno that ended the connection */
    struct p9c_req *whead; /* blocked waiters, reader candidates (mu) */

    /* input side: owned by the thread with 'reading' set */
    uint8_t *in; /* read-ahead buffer, P9C_INBUF bytes */
    size_t inpos;
    size_t inlen;
    uint8_t *cur; /* frame being assembled, NULL between frames */
    uint32_t cursize;
    uint32_t curgot;

    /* fid numbers (mu) */
    uint32_t *freefids;
    size_t nfree;
    size_t capfree;
    uint32_t nextfid;
};

/* Allocate a fid handle with a fresh number; NULL on exhaustion/OOM. */
struct p9c_fid *p9c_fid_new(struct p9c_conn *c);
/* Release the handle and (if owned) its number; no message is sent. */
void p9c_fid_release(struct p9c_fid *f);

/* Fill a p9_str from a C string: 0 or -ENAMETOOLONG. */
int p9c_mkstr(struct p9_str *out, const char *s);

/* p9c_rpc() for callers that only need success/failure. */
int p9c_rpc0(struct p9c_conn *c, const struct p9_fcall *t);

#endif /* VIRTFS_CLIENT_P9C_IMPL_H */
