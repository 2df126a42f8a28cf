/* SPDX-License-Identifier: MIT */
/*
 * Byte-stream transports: Unix and TCP listeners, inherited sockets, and a
 * single connection on a pair of fds (--stdio).  One event-loop thread
 * (epoll) accepts; every connection has a thread that reads and frames
 * size[4]-prefixed 9P messages and submits them to the server core; worker
 * threads write the replies (one writer at a time per connection).
 * The process must ignore SIGPIPE: a write to a pipe (--stdio) and a
 * splice to a socket (large Rreads, stream.c) raise it when the peer has
 * gone (socket sends use MSG_NOSIGNAL; splice has no such flag).
 */
#ifndef VIRTFS_TRANSPORT_STREAM_H
#define VIRTFS_TRANSPORT_STREAM_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct p9s_server;
struct xp_loop;

struct sock_unix_id;

/*
 * Open a listening socket for "unix:PATH", "tcp:HOST:PORT" or "fd:N" (an
 * inherited, already listening stream socket).  A Unix socket file at PATH
 * is replaced only if stale (nobody accepts on it); a live one or any
 * other file there is an error.  'id' (may be NULL) identifies the socket
 * file created for unix:PATH.  Returns the fd or -errno, with a message in
 * 'msg'.  Implemented in listen.c.
 */
int xp_listen(const char *spec, struct sock_unix_id *id, char *msg,
              size_t msgsize);

/*
 * Admission control (docs/security.md):
 *  max_conns      connections per listener (and 4096 in all).  When a
 *                 listener is full and a client waits, the connection that
 *                 never attached and has been idle longest is dropped to
 *                 admit it; a session that attached is never dropped.
 *                 With no such connection the new client is refused.
 *  frame_timeout  seconds a frame may take from its first byte to its
 *                 last (a partial frame holds a buffer); 0 = no limit.
 * A connection that never sends a byte is never timed out (a virtio-serial
 * port is connected at VM start and the guest may speak minutes later).
 */
#define XP_DEFAULT_MAX_CONNS 1024
#define XP_DEFAULT_FRAME_TIMEOUT 30
#define XP_DEFAULT_BUSY_POLL 50 /* µs, virtfsd's default */
/* Connections that hold a read pipe at once (stream.c, large Rreads
 * spliced): a pipe's pages count against its owner's pipe quota
 * (fs.pipe-user-pages-soft, shared by the user's processes). */
#define XP_DEFAULT_READ_PIPES 64
struct xp_limits {
    unsigned max_conns;     /* 0 = XP_DEFAULT_MAX_CONNS */
    unsigned frame_timeout; /* seconds; 0 = none */
    /* µs a connection thread spins, reading its connection without
     * sleeping, before it sleeps in poll(), while requests arrive within
     * that window and from this connection alone (see util/busypoll.h);
     * 0 = off (the zero value; virtfsd's default is XP_DEFAULT_BUSY_POLL). */
    unsigned busy_poll_us;
    unsigned read_pipes; /* 0 = XP_DEFAULT_READ_PIPES */
};

/* How many busy-poll spins connection threads have started (tests). */
unsigned long xp_loop_busy_polls(struct xp_loop *loop);
/* How many Rreads were spliced from the file into a connection's pipe (no
 * copy through a reply buffer; counted before the reply is sent). */
unsigned long xp_loop_spliced_reads(struct xp_loop *loop);
/* How many connections hold a read pipe now (tests). */
unsigned xp_loop_read_pipes(struct xp_loop *loop);
/* Also call fn(arg) when xp_loop_run logs the stats (the daemon's other
 * counters: its vhost-user devices).  Set before running. */
void xp_loop_on_stats(struct xp_loop *loop, void (*fn)(void *), void *arg);

struct xp_loop *xp_loop_new(struct p9s_server *srv);
/* Set before adding listeners and connections. */
void xp_loop_set_limits(struct xp_loop *loop, const struct xp_limits *lim);
void xp_loop_free(struct xp_loop *loop);
int xp_loop_add_listener(struct xp_loop *loop, int fd, const char *name);
/* Serve one connection on rfd/wfd (may be equal).  With 'last' the loop
 * ends once this connection is gone (--stdio). */
int xp_loop_add_conn(struct xp_loop *loop, int rfd, int wfd, const char *peer,
                     bool last);
/* Run until *stop becomes nonzero (checked at least every 200 ms) or a
 * 'last' connection ends.  Returns 0.  When *stop is set, listeners stop
 * accepting and the function returns; in-flight requests finish in the
 * worker pool (p9s_server_free waits for them). */
int xp_loop_run(struct xp_loop *loop, atomic_int *stop, atomic_int *stats);

/*
 * Orderly stop: stop reading every connection, wait (up to timeout_ms) for
 * their in-flight requests to be answered, then close them and wait for
 * their sessions to be released.  Call from the loop's thread after
 * xp_loop_run() returned, before p9s_server_free().
 */
void xp_loop_shutdown(struct xp_loop *loop, unsigned timeout_ms);

#endif
