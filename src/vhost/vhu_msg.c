/* SPDX-License-Identifier: MIT */
/*
 * vhost-user message I/O: read one message with its descriptors, within a
 * deadline and never past a stop request, and send a reply.  The checks of
 * a message's contents are the device's (vhu_dev.c); this file only frames.
 */
#include "vhost/vhu_int.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "util/fdbudget.h"
#include "util/log.h"

void
vhu_msg_close_fds(struct vhu_msg *m)
{
    for (int i = 0; i < m->nfds; i++) {
        if (m->fds[i] >= 0) {
            close(m->fds[i]);
        }
    }
    m->nfds = 0;
}

/* Milliseconds left until 'deadline' (CLOCK_MONOTONIC), at least 0. */
static int
ms_left(const struct timespec *deadline)
{
    struct timespec now;
    long long ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long long)(deadline->tv_sec - now.tv_sec) * 1000 +
         (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : (int)ms;
}

/*
 * Wait until 'sock' is ready for 'events', the message deadline passes
 * (-ETIMEDOUT) or 'stop_fd' (>= 0) fires (-ECANCELED).  A front-end that
 * sends a message slowly or never reads our replies holds the device
 * thread at most until the deadline, and never past a stop.
 */
static int
sock_wait(int sock, short events, int stop_fd, const struct timespec *deadline)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = sock, .events = events},
                              {.fd = stop_fd, .events = POLLIN}};
        int left = ms_left(deadline);
        int n = poll(p, stop_fd >= 0 ? 2 : 1, left);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (stop_fd >= 0 && p[1].revents) {
            return -ECANCELED;
        }
        if (p[0].revents) {
            return 0;
        }
        if (left == 0) {
            return -ETIMEDOUT;
        }
    }
}

static void
set_deadline(struct timespec *deadline)
{
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += VHU_RECV_TIMEOUT_S;
}

/* Read exactly 'len' bytes (after a header started to arrive). */
static int
read_full(int sock, void *buf, size_t len, int stop_fd,
          const struct timespec *deadline)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = recv(sock, p, len, MSG_DONTWAIT);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            /* The rest of the message is late. */
            int err = sock_wait(sock, POLLIN, stop_fd, deadline);

            if (err < 0) {
                return err;
            }
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            return -EPROTO; /* EOF inside a message */
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
vhu_msg_read(int sock, struct vhu_msg *m, int stop_fd)
{
    struct timespec deadline;
    union {
        char buf[CMSG_SPACE(VHU_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    uint8_t hdr[VHU_HDR_SIZE];
    struct iovec iov = {.iov_base = hdr, .iov_len = sizeof(hdr)};
    struct msghdr mh = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof(ctl.buf),
    };
    ssize_t n;
    int err;

    m->nfds = 0;
    /*
     * A message may carry descriptors (SET_MEM_TABLE, SET_VRING_KICK/CALL):
     * if the process is out of them, the kernel drops them (MSG_CTRUNC) and
     * the device would be lost.  Free spare numbers for them first.
     */
    fdbudget_release(VHU_MAX_FDS);
    do {
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    err = errno;
    fdbudget_refill();
    if (n < 0) {
        return err == EAGAIN ? -ETIMEDOUT : -err;
    }
    if (n == 0) {
        return -ECONNRESET;
    }
    set_deadline(&deadline);
    /* Take every fd first, so that each error path below closes them. */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL;
         c = CMSG_NXTHDR(&mh, c)) {
        size_t cnt;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len < CMSG_LEN(0)) {
            continue;
        }
        cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < cnt; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (m->nfds < VHU_MAX_FDS) {
                m->fds[m->nfds++] = fd;
            } else {
                close(fd); /* cannot happen with our buffer; be safe */
            }
        }
    }
    if (mh.msg_flags & MSG_CTRUNC) {
        /* More fds than any message may carry (or no descriptor left to
         * receive them in): some were discarded. */
        log_peer("vhost-user: descriptors of a message were dropped "
                 "(too many, or out of descriptors)");
        err = -EPROTO;
        goto out_err;
    }
    if ((size_t)n < sizeof(hdr)) {
        err = read_full(sock, hdr + n, sizeof(hdr) - (size_t)n, stop_fd,
                        &deadline);
        if (err < 0) {
            goto out_err;
        }
    }
    memcpy(&m->request, hdr, 4);
    memcpy(&m->flags, hdr + 4, 4);
    memcpy(&m->size, hdr + 8, 4);
    if ((m->flags & VHU_FLAG_VERSION_MASK) != VHU_FLAG_VERSION ||
        m->size > VHU_MAX_PAYLOAD) {
        /* Cannot trust the framing any more. */
        err = -EPROTO;
        goto out_err;
    }
    if (m->size > 0) {
        err = read_full(sock, m->p.bytes, m->size, stop_fd, &deadline);
        if (err < 0) {
            goto out_err;
        }
    }
    return 0;

out_err:
    vhu_msg_close_fds(m);
    return err;
}

int
vhu_msg_send(int sock, int stop_fd, uint32_t request, const void *payload,
             uint32_t size)
{
    uint8_t buf[VHU_HDR_SIZE + VHU_MAX_PAYLOAD];
    uint32_t flags = VHU_FLAG_VERSION | VHU_FLAG_REPLY;
    size_t len = VHU_HDR_SIZE + size;
    size_t off = 0;
    struct timespec deadline;

    memcpy(buf, &request, 4);
    memcpy(buf + 4, &flags, 4);
    memcpy(buf + 8, &size, 4);
    if (size > 0) {
        memcpy(buf + VHU_HDR_SIZE, payload, size);
    }
    set_deadline(&deadline);
    while (off < len) {
        ssize_t n =
            send(sock, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            /* The front-end does not read its replies. */
            int err = sock_wait(sock, POLLOUT, stop_fd, &deadline);

            if (err < 0) {
                return err;
            }
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        off += (size_t)n;
    }
    return 0;
}
