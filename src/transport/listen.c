/* SPDX-License-Identifier: MIT */
/*
 * Listening sockets for the stream transport: "unix:PATH", "tcp:HOST:PORT"
 * and "fd:N" (see stream.h).  The socket work itself is util/sock.c, shared
 * with the vhost-user listener and the client library.
 */
#include "transport/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/sock.h"

#define BACKLOG 128

int
xp_listen(const char *spec, struct sock_unix_id *id, char *msg, size_t msgsize)
{
    if (strncmp(spec, "unix:", 5) == 0) {
        return sock_listen_unix(spec + 5, BACKLOG, id, msg, msgsize);
    }
    if (strncmp(spec, "tcp:", 4) == 0) {
        return sock_listen_tcp(spec + 4, BACKLOG, msg, msgsize);
    }
    if (strncmp(spec, "fd:", 3) == 0) {
        const char *p = spec + 3;
        char *end;
        long n;

        errno = 0;
        n = strtol(p, &end, 10);
        if (p[0] < '0' || p[0] > '9' || *end != '\0' || errno != 0 ||
            n > 65535 || sock_check_listening((int)n) < 0) {
            snprintf(msg, msgsize, "%s is not a listening stream socket", spec);
            return -EINVAL;
        }
        return (int)n;
    }
    snprintf(msg, msgsize,
             "unknown listen address '%s' (use unix:PATH, tcp:HOST:PORT or "
             "fd:N)",
             spec);
    return -EINVAL;
}
