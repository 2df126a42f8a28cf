/* SPDX-License-Identifier: MIT */
/*
 * Byte-stream transports: Unix and TCP listeners, inherited sockets, and a
 * single connection on a pair of fds (--stdio).  One event-loop thread
 * (epoll) accepts, reads and frames size[4]-prefixed 9P messages for every
 * connection and submits them to the server core; worker threads write the
 * replies (one writer at a time per connection).
 */
#ifndef VIRTFS_TRANSPORT_STREAM_H
#define VIRTFS_TRANSPORT_STREAM_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

struct p9s_server;
struct xp_loop;

/*
 * Open a listening socket for "unix:PATH", "tcp:HOST:PORT" or "fd:N" (an
 * inherited, already listening socket).  A stale Unix socket file at PATH
 * is replaced; any other file there is an error.  Returns the fd or
 * -errno, with a message in 'msg'.
 */
int xp_listen(const char *spec, char *msg, size_t msgsize);

struct xp_loop *xp_loop_new(struct p9s_server *srv);
void xp_loop_free(struct xp_loop *loop);
int xp_loop_add_listener(struct xp_loop *loop, int fd, const char *name);
/* Serve one connection on rfd/wfd (may be equal).  With 'last' the loop
 * ends once this connection is gone (--stdio). */
int xp_loop_add_conn(struct xp_loop *loop, int rfd, int wfd,
                     const char *peer, bool last);
/* Run until *stop becomes nonzero (checked at least every 200 ms) or a
 * 'last' connection ends.  Returns 0.  When *stop is set, listeners stop
 * accepting and the function returns; in-flight requests finish in the
 * worker pool (p9s_server_free waits for them). */
int xp_loop_run(struct xp_loop *loop, volatile sig_atomic_t *stop,
                volatile sig_atomic_t *stats);

/*
 * Orderly stop: stop reading every connection, wait (up to timeout_ms) for
 * their in-flight requests to be answered, then close them and wait for
 * their sessions to be released.  Call from the loop's thread after
 * xp_loop_run() returned, before p9s_server_free().
 */
void xp_loop_shutdown(struct xp_loop *loop, unsigned timeout_ms);

#endif
