/* SPDX-License-Identifier: MIT */
/*
 * Sockets shared by the stream transport, the vhost-user listener and the
 * client library: one Unix-socket listener with one stale-socket rule, one
 * HOST:PORT / [V6]:PORT parser, and the matching connects.
 *
 * Functions return a descriptor (or 0) or -errno; those that take
 * msg/msgsize also leave a one-line reason there for the user.
 */
#ifndef VIRTFS_UTIL_SOCK_H
#define VIRTFS_UTIL_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Which socket file a listener created (see sock_unix_unlink). */
struct sock_unix_id {
    dev_t dev;
    ino_t ino;
};

/*
 * Split "HOST:PORT", "[V6ADDR]:PORT" or ":PORT" (host "" = any).  PORT is
 * decimal, 0..65535 (0 only with allow_zero: a kernel-chosen port).  Host
 * is copied without brackets.  -EINVAL with a reason in msg otherwise.
 */
int sock_split_hostport(const char *s, char *host, size_t hostsize,
                        unsigned *port, bool allow_zero, char *msg,
                        size_t msgsize);

/*
 * Listen on the Unix socket PATH, created owner-only (0600) without
 * touching the process umask.  An existing socket file is replaced only if
 * nobody accepts on it (stale: connect() is refused); a live one is
 * -EADDRINUSE, any other kind of file -EEXIST.  'id' (may be NULL)
 * receives the identity of the new socket file.
 */
int sock_listen_unix(const char *path, int backlog, struct sock_unix_id *id,
                     char *msg, size_t msgsize);

/* Unlink PATH only if it is still the socket file 'id' names (a newer
 * daemon may have taken the path over). */
void sock_unix_unlink(const char *path, const struct sock_unix_id *id);

/* Listen on "HOST:PORT" (TCP, first address that binds). */
int sock_listen_tcp(const char *hostport, int backlog, char *msg,
                    size_t msgsize);

/* 0 if fd is a listening stream socket, else -ENOTSOCK / -EINVAL. */
int sock_check_listening(int fd);

/* Connected stream sockets (close-on-exec, TCP_NODELAY for TCP). */
int sock_connect_unix(const char *path);
int sock_connect_tcp(const char *hostport);

#endif
