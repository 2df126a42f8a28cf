/* SPDX-License-Identifier: MIT */
/*
 * Server core internals: server, connection (session), request, fid.
 *
 * Lock order (see docs/architecture.md):
 *   conn->lock  ->  fid_table.lock (leaf)     fid->lock (leaf, never with
 *   workq.lock is a leaf too.                  the table lock held)
 * No lock is held across a backend call.
 */
#ifndef VIRTFS_SERVER_SRV_INT_H
#define VIRTFS_SERVER_SRV_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "proto/p9_codec.h"
#include "virtfs/backend.h"
#include "virtfs/server.h"

/* ---- users: a core refcount around the backend's user object ---------- */

struct suser {
    atomic_int refs;
    struct backend *be;
    struct be_user *bu;
};

struct suser *suser_new(struct backend *be, struct be_user *bu);
void suser_ref(struct suser *u);
void suser_put(struct suser *u);

/* ---- fids ----------------------------------------------------------------- */

enum fid_kind {
    FID_NONE,        /* walked or attached, not open */
    FID_FILE,        /* opened non-directory */
    FID_DIR,         /* opened directory */
    FID_XATTR_READ,  /* Txattrwalk result: a snapshot of a value or list */
    FID_XATTR_WRITE, /* Txattrcreate: collects the value until Tclunk */
};

struct fid {
    atomic_int refs; /* table's ref + one per request using it */
    uint32_t num;
    const struct p9s_export *ex; /* export this fid belongs to */
    struct backend *be;
    struct suser *user;   /* attaching user (ref) */
    pthread_mutex_t lock; /* protects everything below */
    struct be_node *node; /* ref; replaced by walk-in-place/lcreate */
    enum fid_kind kind;
    struct be_handle *h; /* open file/dir (FID_FILE, FID_DIR) */
    uint32_t open_flags;
    /* xattr fids */
    char *xname;
    uint8_t *xbuf;
    uint64_t xcap; /* bytes allocated at xbuf, charged to mem */
    uint64_t xsize;
    uint64_t xfill;
    uint32_t xflags;
    struct be_budget *mem; /* the session's memory budget */
    struct fid *next;      /* hash chain (table lock) */
};

struct fid_table {
    pthread_mutex_t lock;
    struct fid **bucket; /* 1 << shift chains; grows with count */
    unsigned shift;
    unsigned count;
    unsigned max;          /* fids allowed (EMFILE beyond) */
    _Atomic long *total;   /* fids of all sessions (the server's) */
    long max_total;        /* ... allowed (ENFILE beyond) */
    struct be_budget *mem; /* given to every fid */
    const char *peer;      /* for the log line at the limit */
};

int fid_table_init(struct fid_table *t, unsigned max, _Atomic long *total,
                   long max_total, struct be_budget *mem, const char *peer);
void fid_table_fini(struct fid_table *t);
/* New fid (refs = 2: table + caller) or NULL with *err = -EEXIST/-ENOMEM,
 * -EMFILE when the session holds its maximum of fids, -ENFILE when all
 * sessions together hold the server's. */
struct fid *fid_new(struct fid_table *t, uint32_t num,
                    const struct p9s_export *ex, struct suser *user,
                    struct be_node *node, int *err);
struct fid *fid_get(struct fid_table *t, uint32_t num);
void fid_put(struct fid *f);
/* Unlink from the table; returns the table's reference (caller puts). */
struct fid *fid_unlink(struct fid_table *t, uint32_t num);
/* Unlink every fid (Tversion reset, connection close). */
void fid_clunk_all(struct fid_table *t);
/* Finish a write-xattr fid at clunk: setxattr/removexattr. */
int fid_xattr_commit(struct fid *f);
/* Make room for 'want' bytes of xattr value at f->xbuf (f->lock held),
 * charged to the session's memory budget: 0 or -ENOMEM. */
int fid_xbuf_reserve(struct fid *f, uint64_t want);

/* ---- requests --------------------------------------------------------- */

/* A handler running with r->nowait that would have to wait returns this
 * (or the backend's -EAGAIN), having changed nothing: the request runs
 * again on a worker. */
#define REQ_REQUEUE 2

/* Where a request is, as seen by Tflush (protected by conn->lock). */
enum req_state {
    REQ_QUEUED,   /* waiting for a worker */
    REQ_RUNNING,  /* a worker runs the op */
    REQ_REPLYING, /* the reply is being handed to the transport: the peer
                     may see it at once and reuse the tag, so a new request
                     with this tag is legal; a Tflush still waits for it */
    REQ_DONE,     /* reply sent or dropped */
};

struct p9s_req {
    struct p9s_conn *conn;
    void *cookie;
    /* the T-message */
    const struct iovec *in;
    int incnt;
    size_t inlen;
    char *scratch;     /* for strings split across segments */
    struct p9_fcall t; /* decoded T (views into 'in') */
    int decode_err;
    /* the reply */
    struct p9_fcall r;
    const struct iovec *out;
    int outcnt;
    bool have_out;
    struct p9_wbuf w;
    /* flush */
    enum req_state state;     /* conn->lock */
    bool flushed;             /* conn->lock */
    struct p9s_req *flushers; /* Tflush requests waiting (conn->lock) */
    struct p9s_req *flush_next;
    pthread_t worker; /* valid while RUNNING */
    bool responded;
    /* runs on the transport's thread: an open or create that could wait
     * is given up (BE_OPEN_NOWAIT) and moved to a worker (REQ_REQUEUE) */
    bool nowait;
    /* an Rread whose data the transport holds (conn ops stage_fd): that
     * many bytes follow the encoded header */
    uint32_t staged;
    struct timespec start;
    /* links */
    struct p9s_req *tag_next; /* conn's in-flight hash (conn->lock) */
    struct p9s_req *q_next;   /* work queue (workq lock) */
};

/* ---- connection ------------------------------------------------------- */

#define TAG_BUCKETS 128

struct p9s_conn {
    struct p9s_server *srv;
    const struct p9s_conn_ops *ops;
    void *tp;
    char peer[64];
    pthread_mutex_t lock;
    struct p9s_req *tags[TAG_BUCKETS]; /* in-flight by tag */
    unsigned inflight;
    bool closing;
    bool released;
    _Atomic uint32_t msize;
    struct fid_table fids;
    /* a retired request's memory, kept for the next (req_done puts it
     * under 'lock'; req_decode takes it with an exchange) */
    _Atomic(struct p9s_req *) spare;
    /* what this session may make the daemon keep (server.h limits) */
    struct be_budget mem;   /* bytes of pinned buffers */
    struct be_budget locks; /* byte-range lock records */
    struct be_budget fds;   /* host descriptors held for good */
    struct be_limits lim;   /* all three, for backend handles */
};

/* ---- server ------------------------------------------------------------- */

/* Latency histogram buckets: log2 of microseconds. */
#define P9S_HIST_BUCKETS 32

struct p9s_stat {
    _Atomic uint64_t count;
    _Atomic uint64_t errors;
    _Atomic uint64_t total_ns;
    _Atomic uint64_t max_ns;
    _Atomic uint64_t hist[P9S_HIST_BUCKETS]; /* log2 buckets of microseconds */
};

struct workq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct p9s_req *head, *tail;
    int nthreads;
    int idle;
    int min_threads;
    int max_threads;
    bool stop;
    pthread_cond_t done_cond;
    int running;             /* threads alive (workers + manager) */
    pthread_cond_t mgr_cond; /* wakes the manager (see workq.c) */
    uint64_t pickups;        /* requests taken by workers so far */
    bool mgr_sleeping;       /* the manager waits for a push (no timer) */
};

struct p9s_server {
    uint32_t msize;
    uint32_t max_fids;    /* per session */
    long max_fids_total;  /* all sessions together */
    _Atomic long nfids;   /* fids of all sessions */
    uint64_t session_mem; /* per session, bytes */
    uint32_t max_locks;   /* per session, records */
    uint32_t session_fds; /* per session, descriptors held for good */
    bool trace;
    struct p9s_export *exports;
    int nexports;
    struct workq wq;
    bool started; /* workq_start() ran (p9s_server_start) */
    _Atomic long nconns;
    struct p9s_stat stats[P9_NTYPES]; /* per message type */
    /* Tlopen/Tlcreate tried on a transport's thread (r->nowait), and those
     * of them that moved to a worker (REQ_REQUEUE) */
    atomic_ullong opens_nowait;
    atomic_ullong opens_requeued;
};

/* workq.c */
int workq_init(struct p9s_server *srv, int threads);
int workq_start(struct p9s_server *srv);
void workq_push(struct p9s_server *srv, struct p9s_req *r);
void workq_fini(struct p9s_server *srv);

/* request.c: a request's life (see the top of request.c) */
void p9s_dispatch(struct p9s_req *r);
void p9s_respond(struct p9s_req *r, int err);
/* Reply space of at least 'need' bytes (may be shorter); sets r->w. */
int req_out(struct p9s_req *r, size_t need);

/* conn.c */
void conn_reset_session(struct p9s_conn *c);
/* Attach the session's budgets to a backend handle it just opened. */
int conn_fds_full(struct p9s_conn *c);
int conn_handle_limits(struct p9s_conn *c, struct backend *be,
                       struct be_handle *h);
/* Every request is done: clunk what is left and hand the session back. */
void conn_release(struct p9s_conn *c);

/* fid.c: how a handler takes a fid */

/* What a handler holds of a fid while it runs, read under the fid lock. */
struct fid_use {
    struct fid *f;        /* +1 ref */
    struct be_node *node; /* +1 ref with FT_NODE, else NULL */
    struct be_handle *h;  /* the open handle, or NULL; lives as long as f */
    enum fid_kind kind;
};

enum fid_take_flags {
    FT_NODE = 1u << 0,     /* take a reference on the fid's node */
    FT_NOXATTR = 1u << 1,  /* an xattr fid is refused: -EINVAL */
    FT_UNOPENED = 1u << 2, /* must not be open, nor an xattr fid: -EBUSY */
    FT_OPEN = 1u << 3,     /* must be an open file or directory: -EBADF */
};

/*
 * Take fid 'num' of the request's session for the handler: checks 'flags'
 * against the fid's kind, fills 'u', and makes the calling thread act as
 * the fid's user.  Returns 0, or -errno with nothing held (-EBADF for an
 * unknown fid).  Release with fid_drop().
 */
int fid_take(struct p9s_req *r, uint32_t num, unsigned flags,
             struct fid_use *u);
/* The same for a fid the caller already holds a reference to (consumed,
 * even on failure). */
int fid_take_ref(struct fid *f, unsigned flags, struct fid_use *u);
void fid_drop(struct fid_use *u);
/* ops_session.c */
/* Copy a wire name into buf (NUL-terminated) after checking it: empty ->
 * -ENOENT; contains '/' -> -EINVAL; "." or ".." -> -EINVAL unless
 * allow_dotdot and it is ".."; too long -> -ENAMETOOLONG. */
int name_check(const struct p9_str *s, char *buf, size_t size,
               bool allow_dotdot);
/* The backend op, or -ENOSYS if the backend lacks it. */
#define BE_CALL(f, op, ...)             \
    ((f)->be->ops->op == NULL ? -ENOSYS \
                              : (f)->be->ops->op((f)->be, __VA_ARGS__))

const struct p9s_export *srv_find_export(struct p9s_server *srv,
                                         const char *aname);

#define P9_MSG(NAME, name, ID, FLAGS, FID, RB) int op_##name(struct p9s_req *r);
#include "virtfs/p9_msgs.def"
#undef P9_MSG

/* server.c: per-message-type counts and latency (--stats) */
void stats_record(struct p9s_server *srv, uint8_t type, uint64_t ns, bool err);

#endif
