/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user listening server: one thread accepts front-end
 * connections and runs the device of each, one at a time, until a stop.
 */
#include "vhost/vhu_int.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/fdbudget.h"
#include "util/log.h"
#include "util/sock.h"
#include "vhost/vhost.h"

#define ACCEPT_BACKOFF_MS 100 /* accept failed for want of resources */

struct vhu_server {
    struct p9s_server *srv;
    int listen_fd;     /* -1 when serving conn_fd only */
    int conn_fd;       /* pre-connected socket, -1 after use */
    int stop_fd;       /* eventfd */
    char *unlink_path; /* socket file we created */
    struct sock_unix_id unlink_id;
    char tag[VHU_MAX_TAG + 1];
    bool once;
    struct bp_group *bp; /* busy-poll group, or NULL */
    pthread_t thread;
    bool has_thread;
    int result;
};

int
vhu_server_new(struct p9s_server *srv, const struct vhu_opts *o,
               struct vhu_server **out)
{
    struct vhu_server *vs;
    size_t taglen = o->tag ? strlen(o->tag) : 0;
    int sources =
        (o->socket_path != NULL) + (o->listen_fd >= 0) + (o->conn_fd >= 0);
    int err;

    if (srv == NULL || sources != 1 || taglen == 0 || taglen > VHU_MAX_TAG) {
        return -EINVAL;
    }
    vs = calloc(1, sizeof(*vs));
    if (vs == NULL) {
        return -ENOMEM;
    }
    vs->srv = srv;
    vs->listen_fd = o->listen_fd;
    vs->conn_fd = o->conn_fd;
    vs->once = o->once;
    vs->bp = o->bp;
    memcpy(vs->tag, o->tag, taglen + 1);
    vs->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vs->stop_fd < 0) {
        err = -errno;
        free(vs);
        return err;
    }
    if (o->listen_fd >= 0 && (err = sock_check_listening(o->listen_fd)) < 0) {
        log_err("vhost-user: fd %d is not a listening stream socket",
                o->listen_fd);
        close(vs->stop_fd);
        free(vs);
        return err == -EINVAL ? -ENOTSOCK : err;
    }
    if (o->socket_path != NULL) {
        char msg[256];
        /* one front-end at a time; a second waits in the backlog */
        int fd = sock_listen_unix(o->socket_path, 1, &vs->unlink_id, msg,
                                  sizeof(msg));

        if (fd < 0) {
            log_err("vhost-user: %s", msg);
            close(vs->stop_fd);
            free(vs);
            return fd;
        }
        vs->listen_fd = fd;
        vs->unlink_path = strdup(o->socket_path);
    }
    *out = vs;
    return 0;
}

static void
serve_conn(struct vhu_server *vs, int fd)
{
    struct vhu_dev *d;

    /* the device's own descriptors (its wake-up eventfd) are a control
     * path too: spare numbers if clients have used the rest */
    fdbudget_release(2);
    d = vhu_dev_new(vs->srv, fd, vs->tag);
    fdbudget_refill();
    if (d == NULL) {
        log_err("vhost-user: cannot create a device");
        return;
    }
    d->bp = vs->bp;
    log_info("vhost-user: front-end connected");
    vhu_dev_run(d, vs->stop_fd);
    vhu_dev_close(d);
    log_info("vhost-user: front-end gone, device state dropped");
}

static bool
stop_requested(struct vhu_server *vs)
{
    struct pollfd p = {.fd = vs->stop_fd, .events = POLLIN};

    return poll(&p, 1, 0) > 0;
}

int
vhu_server_run(struct vhu_server *vs)
{
    if (vs->conn_fd >= 0) {
        int fd = vs->conn_fd;

        vs->conn_fd = -1;
        serve_conn(vs, fd);
        return 0;
    }
    while (!stop_requested(vs)) {
        struct pollfd p[2] = {
            {.fd = vs->listen_fd, .events = POLLIN},
            {.fd = vs->stop_fd, .events = POLLIN},
        };
        int fd;

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (p[1].revents) {
            break;
        }
        fd = accept4(vs->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE) &&
            fdbudget_release(1) == 1) {
            /* the VMM is a control path: it may use a spare */
            fd = accept4(vs->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        }
        if (fd < 0) {
            int err = errno;

            if (err == EINTR || err == EAGAIN || err == ECONNABORTED) {
                continue;
            }
            if (err == EMFILE || err == ENFILE || err == ENOMEM ||
                err == ENOBUFS || err == EPROTO || err == EPERM) {
                /*
                 * Out of resources (or a connection that failed before we
                 * took it): this socket stays served.  Wait a little, so
                 * the backlog entry does not spin us, then try again.
                 */
                log_peer("vhost-user: accept: %s; retrying", strerror(err));
                poll(&p[1], 1, ACCEPT_BACKOFF_MS);
                continue;
            }
            log_err("vhost-user: accept: %s", strerror(err));
            return -err;
        }
        serve_conn(vs, fd);
        if (vs->once) {
            break;
        }
    }
    return 0;
}

static void *
server_thread(void *arg)
{
    struct vhu_server *vs = arg;

    vs->result = vhu_server_run(vs);
    return NULL;
}

int
vhu_server_start(struct vhu_server *vs)
{
    int err = pthread_create(&vs->thread, NULL, server_thread, vs);

    if (err != 0) {
        return -err;
    }
    vs->has_thread = true;
    return 0;
}

void
vhu_server_stop(struct vhu_server *vs)
{
    uint64_t one = 1;

    if (write(vs->stop_fd, &one, sizeof(one)) < 0) {
        /* The counter is already non-zero: stop is pending anyway. */
    }
}

int
vhu_server_wait(struct vhu_server *vs)
{
    if (vs->has_thread) {
        pthread_join(vs->thread, NULL);
        vs->has_thread = false;
    }
    return vs->result;
}

void
vhu_server_free(struct vhu_server *vs)
{
    if (vs == NULL) {
        return;
    }
    if (vs->has_thread) {
        vhu_server_stop(vs);
        vhu_server_wait(vs);
    }
    if (vs->conn_fd >= 0) {
        close(vs->conn_fd);
    }
    if (vs->listen_fd >= 0) {
        close(vs->listen_fd);
    }
    if (vs->unlink_path != NULL) {
        sock_unix_unlink(vs->unlink_path, &vs->unlink_id);
        free(vs->unlink_path);
    }
    close(vs->stop_fd);
    free(vs);
}

void
vhu_print_capabilities(FILE *f)
{
    fprintf(f, "{\n  \"type\": \"9p\",\n  \"features\": []\n}\n");
}
