/* SPDX-License-Identifier: MIT */
#include "util/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SETMSG(...)                              \
    do {                                         \
        if (msg != NULL && msgsize > 0) {        \
            snprintf(msg, msgsize, __VA_ARGS__); \
        }                                        \
    } while (0)

int
sock_split_hostport(const char *s, char *host, size_t hostsize, unsigned *port,
                    bool allow_zero, char *msg, size_t msgsize)
{
    const char *p;
    size_t hl;
    char *end;
    unsigned long v;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');

        if (rb == NULL || rb[1] != ':') {
            SETMSG("'%s': expected [ADDRESS]:PORT", s);
            return -EINVAL;
        }
        hl = (size_t)(rb - s - 1);
        if (hl >= hostsize) {
            SETMSG("'%s': host too long", s);
            return -EINVAL;
        }
        memcpy(host, s + 1, hl);
        p = rb + 2;
    } else {
        const char *colon = strrchr(s, ':');

        if (colon == NULL) {
            SETMSG("'%s': expected HOST:PORT", s);
            return -EINVAL;
        }
        hl = (size_t)(colon - s);
        if (hl >= hostsize) {
            SETMSG("'%s': host too long", s);
            return -EINVAL;
        }
        if (memchr(s, ':', hl) != NULL) {
            /* a bare IPv6 address: the last colon is ambiguous */
            SETMSG("'%s': write an IPv6 address as [ADDRESS]:PORT", s);
            return -EINVAL;
        }
        memcpy(host, s, hl);
        p = colon + 1;
    }
    host[hl] = '\0';
    /* decimal digits only: strtoul would take "+5", " 5" or "-1" */
    if (p[0] < '0' || p[0] > '9') {
        SETMSG("'%s': port must be a number 0..65535", s);
        return -EINVAL;
    }
    errno = 0;
    v = strtoul(p, &end, 10);
    if (errno != 0 || *end != '\0' || v > 65535 || (v == 0 && !allow_zero)) {
        SETMSG("'%s': port must be %s..65535", s, allow_zero ? "0" : "1");
        return -EINVAL;
    }
    *port = (unsigned)v;
    return 0;
}

/*
 * Is someone accepting on the socket file at sa?  0: no (stale),
 * -EADDRINUSE: yes, other -errno: cannot tell.
 */
static int
unix_probe(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int err = 0;

    if (fd < 0) {
        return -errno;
    }
    /* EAGAIN/EINPROGRESS: a live listener with a full backlog */
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ||
        errno == EAGAIN || errno == EINPROGRESS) {
        err = -EADDRINUSE;
    } else if (errno == ECONNREFUSED || errno == ENOENT) {
        err = 0;
    } else {
        err = -errno;
    }
    close(fd);
    return err;
}

int
sock_listen_unix(const char *path, int backlog, struct sock_unix_id *id,
                 char *msg, size_t msgsize)
{
    struct sockaddr_un sa;
    struct sockaddr_un tmp;
    const struct sockaddr_un *bound = &sa;
    struct stat st;
    int fd;
    int err;

    if (path[0] == '\0' || strlen(path) >= sizeof(sa.sun_path)) {
        SETMSG("unix socket path empty or longer than %zu bytes: %s",
               sizeof(sa.sun_path) - 1, path);
        return -ENAMETOOLONG;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            SETMSG("%s exists and is not a socket", path);
            return -EEXIST;
        }
        err = unix_probe(&sa);
        if (err == -EADDRINUSE) {
            SETMSG("%s: another process is listening on it", path);
            return err;
        }
        if (err < 0) {
            SETMSG("%s: cannot tell whether the socket is in use: %s", path,
                   strerror(-err));
            return err;
        }
        /* stale: left by a process that is gone */
        if (unlink(path) < 0 && errno != ENOENT) {
            err = -errno;
            SETMSG("%s: cannot remove the stale socket: %s", path,
                   strerror(-err));
            return err;
        }
    }
    /*
     * Bound under a temporary name and renamed into place once listening:
     * a client that sees the path (a VMM waiting for the vhost-user socket,
     * a script polling for it) never meets a socket that refuses
     * connections.  A path too long for the suffix is bound directly.
     */
    if (snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%ld~", path,
                 (long)getpid()) < (int)sizeof(tmp.sun_path)) {
        tmp.sun_family = AF_UNIX;
        unlink(tmp.sun_path); /* our own pid: a leftover of ours */
        bound = &tmp;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = -errno;
        SETMSG("socket: %s", strerror(-err));
        return err;
    }
    /*
     * Owner-only whatever the umask: whoever can connect can attach as any
     * uid when virtfsd runs as root.  bind() takes the mode of the socket's
     * inode (less the umask), so set it on the descriptor first: no
     * process-wide umask change, which would race with other threads.
     */
    if (fchmod(fd, 0600) < 0 ||
        bind(fd, (struct sockaddr *)bound, sizeof(*bound)) < 0) {
        err = -errno;
        SETMSG("bind %s: %s", bound->sun_path, strerror(-err));
        close(fd);
        return err;
    }
    if (lstat(bound->sun_path, &st) < 0 ||
        ((st.st_mode & 077) != 0 && chmod(bound->sun_path, 0600) < 0) ||
        listen(fd, backlog) < 0) {
        err = -errno;
        SETMSG("listen %s: %s", bound->sun_path, strerror(-err));
        unlink(bound->sun_path);
        close(fd);
        return err;
    }
    /* NOREPLACE: a daemon that took the path meanwhile keeps it */
    if (bound == &tmp && renameat2(AT_FDCWD, tmp.sun_path, AT_FDCWD, path,
                                   RENAME_NOREPLACE) < 0) {
        err = -errno;
        if (err == -EEXIST) {
            SETMSG("%s: another process is listening on it", path);
            err = -EADDRINUSE;
        } else {
            SETMSG("rename %s to %s: %s", tmp.sun_path, path, strerror(-err));
        }
        unlink(tmp.sun_path);
        close(fd);
        return err;
    }
    if (id != NULL) {
        id->dev = st.st_dev;
        id->ino = st.st_ino;
    }
    return fd;
}

void
sock_unix_unlink(const char *path, const struct sock_unix_id *id)
{
    struct stat st;

    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == id->dev &&
        st.st_ino == id->ino) {
        unlink(path);
    }
}

static int
tcp_resolve(const char *hostport, bool passive, struct addrinfo **res,
            char *msg, size_t msgsize)
{
    struct addrinfo hints;
    char host[256];
    char port[8];
    unsigned pn;
    int err;

    err = sock_split_hostport(hostport, host, sizeof(host), &pn, passive, msg,
                              msgsize);
    if (err < 0) {
        return err;
    }
    snprintf(port, sizeof(port), "%u", pn);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    err = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
    if (err != 0) {
        SETMSG("%s: %s", hostport, gai_strerror(err));
        return err == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    }
    return 0;
}

int
sock_listen_tcp(const char *hostport, int backlog, char *msg, size_t msgsize)
{
    struct addrinfo *res;
    int one = 1;
    int fd = -1;
    int err;

    err = tcp_resolve(hostport, true, &res, msg, msgsize);
    if (err < 0) {
        return err;
    }
    err = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, backlog) == 0) {
            break;
        }
        err = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        SETMSG("bind/listen %s: %s", hostport, strerror(-err));
        return err;
    }
    return fd;
}

int
sock_check_listening(int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);

    if (fd < 0) {
        return -EBADF;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) < 0) {
        return -errno; /* ENOTSOCK, EBADF */
    }
    if (v != SOCK_STREAM) {
        return -EINVAL;
    }
    len = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0) {
        return -errno;
    }
    return v ? 0 : -EINVAL;
}

int
sock_connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;
    int err;

    if (path[0] == '\0' || strlen(path) >= sizeof(sa.sun_path)) {
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int
sock_connect_tcp(const char *hostport)
{
    struct addrinfo *res;
    int one = 1;
    int err;

    err = tcp_resolve(hostport, false, &res, NULL, 0);
    if (err < 0) {
        return err;
    }
    err = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                        ai->ai_protocol);

        if (fd < 0) {
            err = -errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            /* RPCs are small and latency-bound: no Nagle delay */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            freeaddrinfo(res);
            return fd;
        }
        err = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}
