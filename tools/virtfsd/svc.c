/* SPDX-License-Identifier: MIT */
/* systemd socket activation and readiness notification: see svc.h. */
#include "svc.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int notify_fd = -1;

static int
parse_int(const char *s, long *out)
{
    char *end;

    if (s == NULL || *s == '\0') {
        return -EINVAL;
    }
    errno = 0;
    *out = strtol(s, &end, 10);
    return (errno != 0 || *end != '\0' || *out < 0) ? -EINVAL : 0;
}

int
svc_listen_fds(const char **names, int max)
{
    static char *fdnames;
    const char *pid_s = getenv("LISTEN_PID");
    const char *names_s;
    long pid;
    long n;
    char *save = NULL;
    char *tok;
    int rc;

    if (pid_s == NULL) {
        return 0;
    }
    /* meant for this process, not one that inherited the environment */
    if (parse_int(pid_s, &pid) < 0 || pid != (long)getpid()) {
        rc = 0;
        goto out;
    }
    if (parse_int(getenv("LISTEN_FDS"), &n) < 0 || n > max) {
        rc = -EINVAL;
        goto out;
    }
    names_s = getenv("LISTEN_FDNAMES");
    if (names_s != NULL) {
        fdnames = strdup(names_s);
    }
    tok = fdnames ? strtok_r(fdnames, ":", &save) : NULL;
    for (int i = 0; i < (int)n; i++) {
        int fd = SVC_LISTEN_FDS_START + i;

        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            rc = -errno;
            goto out;
        }
        names[i] = tok ? tok : "";
        tok = tok ? strtok_r(NULL, ":", &save) : NULL;
    }
    rc = (int)n;
out:
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return rc;
}

int
svc_notify_open(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len;
    size_t plen;
    int fd;

    if (path == NULL || path[0] == '\0') {
        return 0;
    }
    plen = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sa.sun_path)) {
        unsetenv("NOTIFY_SOCKET");
        return -EINVAL;
    }
    memcpy(sa.sun_path, path, plen);
    if (path[0] == '@') {
        sa.sun_path[0] = '\0'; /* abstract namespace */
    }
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&sa, len) < 0) {
        int err = -errno;

        close(fd);
        return err;
    }
    unsetenv("NOTIFY_SOCKET");
    notify_fd = fd;
    return 0;
}

void
svc_notify(const char *state)
{
    if (notify_fd >= 0 &&
        send(notify_fd, state, strlen(state), MSG_NOSIGNAL) < 0) {
        /* systemd gone: nobody to tell */
    }
}
