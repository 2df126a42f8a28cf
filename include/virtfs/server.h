/* SPDX-License-Identifier: MIT */
/*
 * Embedding the 9P server, and the contract between the server core and a
 * transport (byte streams, vhost-user virtqueues, ...).
 *
 * A transport owns connections and message buffers.  For every framed
 * T-message it calls p9s_conn_submit() with the message's scatter-gather
 * list and an opaque cookie.  Later, on a worker thread, the core asks the
 * transport for reply space (reply_buf), encodes the R-message straight
 * into it, and hands it back with send() -- or calls drop() when the
 * request was flushed and must not be answered.  Exactly one of send() or
 * drop() is called per submitted cookie; after it, the core never touches
 * the T-message buffers again.
 *
 * Threads: submit/close are called by the transport (any one thread per
 * connection at a time); reply_buf/send/drop are called from worker
 * threads, concurrently, so they must be thread-safe.  release() is called
 * once, after close() and after the last send/drop: the transport may then
 * free its side.
 */
#ifndef VIRTFS_SERVER_H
#define VIRTFS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct backend;
struct p9s_server;
struct p9s_conn;

struct p9s_conn_ops {
    /*
     * Reply space for the request 'cookie', wanted: 'need' bytes (the
     * largest reply the request can produce).  Set *iov / *iovcnt to
     * writable segments; their total may be smaller than 'need' (the
     * core then shortens Rread/Rreaddir).  Returns 0 or -errno (the
     * request is then dropped).
     */
    int (*reply_buf)(struct p9s_conn *c, void *cookie, size_t need,
                     const struct iovec **iov, int *iovcnt);
    /* The reply is complete: 'len' bytes at the start of the reply space,
     * or, after stage_fd took n bytes, len - n bytes there and then those
     * n (len <= n: the staged bytes are not part of the reply). */
    void (*send)(struct p9s_conn *c, void *cookie, size_t len);
    /*
     * Optional: take up to 'count' bytes of the host descriptor 'fd' at
     * 'off' as the data of this request's reply, an Rread, without copying
     * them into the reply space (the stream transport puts them in a pipe
     * and splices them to its socket).  Returns the bytes taken (0: end of
     * file), -ENOTSUP when the transport cannot do that now (the core then
     * reads into the reply space), or -errno of the read.  fd is lent for
     * this call only (be_ops.read_fd).  drop() discards what was taken.
     */
    ssize_t (*stage_fd)(struct p9s_conn *c, void *cookie, int fd, uint64_t off,
                        size_t count);
    /* No reply for this request (flushed or connection closing). */
    void (*drop)(struct p9s_conn *c, void *cookie);
    /* The connection is gone from the core's side (see above). */
    void (*release)(struct p9s_conn *c, void *tp);
};

struct p9s_export {
    const char *name; /* aname that selects it (may be NULL) */
    const char *path; /* host directory (also accepted as aname) */
    bool readonly;
    struct backend *be; /* owned by the caller */
};

/*
 * Per-session limits: what one peer can make the daemon hold.  Beyond
 * them the peer gets an error (docs/security.md has the table) and one
 * rate-limited log line names it; other sessions are not affected.
 */
#define P9S_DEFAULT_MAX_FIDS (1024u * 1024u)          /* EMFILE beyond */
#define P9S_DEFAULT_MAX_FIDS_TOTAL (4l * 1024 * 1024) /* all sessions; ENFILE */
#define P9S_DEFAULT_SESSION_MEM (16ull * 1024 * 1024) /* bytes; ENOMEM/ENOSPC */
#define P9S_DEFAULT_MAX_LOCKS 4096u                   /* records; ENOLCK */
#define P9S_DEFAULT_SESSION_FDS 65536u                /* descriptors; EMFILE */

struct p9s_config {
    uint32_t msize;          /* server cap; 0 = P9_DEFAULT_MSIZE */
    int threads;             /* worker pool size; 0 = from CPU count */
    bool trace;              /* one decoded line per T and R message */
    uint32_t max_fids;       /* fids per session; 0 = P9S_DEFAULT_MAX_FIDS */
    uint32_t max_fids_total; /* fids of all sessions; 0 = default */
    /* bytes of buffers a session may pin between requests (xattr values
     * and snapshots, directory read-ahead); 0 = P9S_DEFAULT_SESSION_MEM */
    uint64_t session_mem;
    uint32_t max_locks; /* byte-range lock records per session; 0 = default */
    /* host descriptors a session may make the backends hold for good
     * (struct be_limits.fds); 0 = P9S_DEFAULT_SESSION_FDS */
    uint32_t session_fds;
    bool defer_start; /* no threads until p9s_server_start() */
};

struct p9s_server *p9s_server_new(const struct p9s_config *cfg,
                                  const struct p9s_export *exports,
                                  int nexports);
/* Start the worker threads of a server made with defer_start (no-op
 * otherwise).  Requests queued before are served then. */
int p9s_server_start(struct p9s_server *srv);
/* Wait for in-flight requests of all connections, stop the workers. */
void p9s_server_free(struct p9s_server *srv);
/* Print per-message counts and latency to the log. */
void p9s_server_dump_stats(struct p9s_server *srv);
/* Maximum msize of this server. */
uint32_t p9s_server_msize(const struct p9s_server *srv);

/* A new session.  'tp' is the transport's private pointer, given back in
 * release(); 'peer' is a name for log lines (copied). */
struct p9s_conn *p9s_conn_new(struct p9s_server *srv,
                              const struct p9s_conn_ops *ops, void *tp,
                              const char *peer);
/*
 * Submit one T-message of 'len' bytes held in 'iov'.  The buffers stay
 * valid until send()/drop() for 'cookie'.  Returns 0, or -EPROTO when the
 * message cannot be answered at all (undecodable header, size mismatch,
 * duplicate in-flight tag): the transport must then close the connection
 * (drop() has been called for the cookie).
 */
int p9s_conn_submit(struct p9s_conn *c, const struct iovec *iov, int iovcnt,
                    size_t len, void *cookie);

/*
 * The same with flags.  P9S_SUBMIT_INLINE: the transport has nothing else
 * of this session in flight and would only wait for this reply, so the
 * request may run right here on the calling thread instead of being handed
 * to a worker (requests that may wait for another party -- Tlopen,
 * Tlcreate, Tlock, Tfsync -- still go to the pool).
 * send()/drop() may then be called before this function returns.
 */
#define P9S_SUBMIT_INLINE 0x1u
int p9s_conn_submit_flags(struct p9s_conn *c, const struct iovec *iov,
                          int iovcnt, size_t len, void *cookie, unsigned flags);
/* The negotiated msize (the server's cap until Tversion). */
uint32_t p9s_conn_msize(struct p9s_conn *c);
/* The transport has gone: cancel what can be cancelled, clunk all fids
 * once in-flight requests finish, then call ops->release. */
void p9s_conn_close(struct p9s_conn *c);

/* For transports that frame byte streams: validated frame length from the
 * 4-byte size prefix, or -EPROTO (< 7 or > msize). */
long p9s_frame_len(struct p9s_conn *c, const uint8_t hdr[4]);

#endif /* VIRTFS_SERVER_H */
