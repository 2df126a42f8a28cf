/* SPDX-License-Identifier: MIT */
/*
 * vhost-user back-end for virtio-9p: message I/O, the per-message check
 * table, the handlers, the device thread, and the listening server.
 *
 * Threads: one server thread accepts connections and runs the device of
 * each, one at a time (poll on the socket, the kick eventfds and the stop
 * eventfd).  9P workers call the p9s_conn_ops below concurrently; they only
 * touch the element (cookie) they were given and its virtqueue (vq->lock).
 *
 * Lifetime: a device is refcounted.  The device thread holds one
 * reference until vhu_dev_close(); each 9P session holds one until its
 * release().  Elements in flight keep their memory table alive, so guest
 * memory a worker writes into is never unmapped under it.
 */
#include "vhost/vhost_user.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "util/fdbudget.h"
#include "util/log.h"
#include "util/sock.h"
#include "vhost/vhost.h"
#include "virtfs/p9.h"
#include "virtfs/server.h"

/* How long GET_VRING_BASE waits for requests in flight to complete. */
#define VHU_DRAIN_MS 3000
/* A message must arrive whole within this (a stalled front-end is cut). */
#define VHU_RECV_TIMEOUT_S 10
/* Chains popped per kick before the socket gets a look again. */
#define VHU_POP_BATCH 256
/* Requests are copied out of guest memory (see stable_request()): the
 * largest request other than Twrite (two strings of the longest 9P length
 * fit: Trenameat), and the copies one device may have in flight.  Linux
 * sends at most a few KiB (16 names of NAME_MAX). */
#define VHU_MAX_REQ_COPY (136u << 10)
#define VHU_MAX_COPIED (64u << 20)
/* Twrite: size[4] type[1] tag[2] fid[4] offset[8] count[4], then data */
#define TWRITE_HDR 23u
#define ACCEPT_BACKOFF_MS 100 /* accept failed for want of resources */

/* ---- message I/O ------------------------------------------------------ */

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
sock_wait(int sock, short events, int stop_fd,
          const struct timespec *deadline)
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

static int msg_read(int sock, struct vhu_msg *m, int stop_fd);

int
vhu_msg_read(int sock, struct vhu_msg *m)
{
    return msg_read(sock, m, -1);
}

static int
msg_read(int sock, struct vhu_msg *m, int stop_fd)
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
    if ((m->flags & 3u) != VHU_FLAG_VERSION || m->size > VHU_MAX_PAYLOAD) {
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

static int
msg_send(struct vhu_dev *d, uint32_t request, const void *payload,
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
        ssize_t n = send(d->sock, buf + off, len - off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            /* The front-end does not read its replies. */
            int err = sock_wait(d->sock, POLLOUT, d->stop_fd, &deadline);

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

/* ---- the check table -------------------------------------------------- */

enum vhu_size_rule {
    SZ_EXACT,    /* size == min */
    SZ_MEMTABLE, /* 8 + nregions * 32, nregions 1..VHU_MAX_FDS */
    SZ_CONFIG,   /* 12 + config.size, config.size <= VHU_MAX_CONFIG */
};

enum vhu_idx_rule {
    IDX_NONE,
    IDX_STATE,   /* u32 index at offset 0 (state, addr) */
    IDX_U64,     /* low 8 bits of the u64 (KICK, CALL, ERR) */
};

enum vhu_fd_rule {
    FD_NONE,     /* no fd */
    FD_ONE,      /* exactly one */
    FD_OPT,      /* zero or one (ignored) */
    FD_VRING,    /* one unless VHU_VRING_NOFD is set */
    FD_REGIONS,  /* one per region */
};

struct vhu_msg_rule {
    const char *name;
    uint8_t size_rule;
    uint16_t size;       /* exact size, or the minimum */
    uint8_t idx_rule;
    uint8_t fd_rule;
    bool has_reply;      /* answered with a payload, never with an ACK */
    int (*handle)(struct vhu_dev *d, struct vhu_msg *m);
};

/* Handlers: 0 or -errno (failed ACK).  Replies are written in m->p/size. */
static int h_get_features(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_features(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_owner(struct vhu_dev *d, struct vhu_msg *m);
static int h_reset(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_mem_table(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_vring_num(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_vring_addr(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_vring_base(struct vhu_dev *d, struct vhu_msg *m);
static int h_get_vring_base(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_vring_kick(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_vring_call(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_vring_err(struct vhu_dev *d, struct vhu_msg *m);
static int h_get_protocol_features(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_protocol_features(struct vhu_dev *d, struct vhu_msg *m);
static int h_get_queue_num(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_vring_enable(struct vhu_dev *d, struct vhu_msg *m);
static int h_get_config(struct vhu_dev *d, struct vhu_msg *m);
static int h_set_config(struct vhu_dev *d, struct vhu_msg *m);
static int h_get_max_mem_slots(struct vhu_dev *d, struct vhu_msg *m);
static int h_add_mem_reg(struct vhu_dev *d, struct vhu_msg *m);
static int h_rem_mem_reg(struct vhu_dev *d, struct vhu_msg *m);

#define ST sizeof(struct vhu_vring_state)
#define U64 sizeof(uint64_t)
#define REG sizeof(struct vhu_mem_single)

/* clang-format off */
static const struct vhu_msg_rule rules[VHU_REQUEST_MAX] = {
    /* request                    name                  size rule    size  index      fds        reply handler */
    [VHU_GET_FEATURES]          = {"GET_FEATURES",          SZ_EXACT,    0,   IDX_NONE,  FD_NONE,    true,  h_get_features},
    [VHU_SET_FEATURES]          = {"SET_FEATURES",          SZ_EXACT,    U64, IDX_NONE,  FD_NONE,    false, h_set_features},
    [VHU_SET_OWNER]             = {"SET_OWNER",             SZ_EXACT,    0,   IDX_NONE,  FD_NONE,    false, h_set_owner},
    [VHU_RESET_OWNER]           = {"RESET_OWNER",           SZ_EXACT,    0,   IDX_NONE,  FD_NONE,    false, h_reset},
    [VHU_SET_MEM_TABLE]         = {"SET_MEM_TABLE",         SZ_MEMTABLE, 8,   IDX_NONE,  FD_REGIONS, false, h_set_mem_table},
    [VHU_SET_VRING_NUM]         = {"SET_VRING_NUM",         SZ_EXACT,    ST,  IDX_STATE, FD_NONE,    false, h_set_vring_num},
    [VHU_SET_VRING_ADDR]        = {"SET_VRING_ADDR",        SZ_EXACT,    sizeof(struct vhu_vring_addr),
                                                                              IDX_STATE, FD_NONE,    false, h_set_vring_addr},
    [VHU_SET_VRING_BASE]        = {"SET_VRING_BASE",        SZ_EXACT,    ST,  IDX_STATE, FD_NONE,    false, h_set_vring_base},
    [VHU_GET_VRING_BASE]        = {"GET_VRING_BASE",        SZ_EXACT,    ST,  IDX_STATE, FD_NONE,    true,  h_get_vring_base},
    [VHU_SET_VRING_KICK]        = {"SET_VRING_KICK",        SZ_EXACT,    U64, IDX_U64,   FD_VRING,   false, h_set_vring_kick},
    [VHU_SET_VRING_CALL]        = {"SET_VRING_CALL",        SZ_EXACT,    U64, IDX_U64,   FD_VRING,   false, h_set_vring_call},
    [VHU_SET_VRING_ERR]         = {"SET_VRING_ERR",         SZ_EXACT,    U64, IDX_U64,   FD_VRING,   false, h_set_vring_err},
    [VHU_GET_PROTOCOL_FEATURES] = {"GET_PROTOCOL_FEATURES", SZ_EXACT,    0,   IDX_NONE,  FD_NONE,    true,  h_get_protocol_features},
    [VHU_SET_PROTOCOL_FEATURES] = {"SET_PROTOCOL_FEATURES", SZ_EXACT,    U64, IDX_NONE,  FD_NONE,    false, h_set_protocol_features},
    [VHU_GET_QUEUE_NUM]         = {"GET_QUEUE_NUM",         SZ_EXACT,    0,   IDX_NONE,  FD_NONE,    true,  h_get_queue_num},
    [VHU_SET_VRING_ENABLE]      = {"SET_VRING_ENABLE",      SZ_EXACT,    ST,  IDX_STATE, FD_NONE,    false, h_set_vring_enable},
    [VHU_GET_CONFIG]            = {"GET_CONFIG",            SZ_CONFIG,   VHU_CONFIG_HDR,
                                                                              IDX_NONE,  FD_NONE,    true,  h_get_config},
    [VHU_SET_CONFIG]            = {"SET_CONFIG",            SZ_CONFIG,   VHU_CONFIG_HDR,
                                                                              IDX_NONE,  FD_NONE,    false, h_set_config},
    [VHU_RESET_DEVICE]          = {"RESET_DEVICE",          SZ_EXACT,    0,   IDX_NONE,  FD_NONE,    false, h_reset},
    [VHU_GET_MAX_MEM_SLOTS]     = {"GET_MAX_MEM_SLOTS",     SZ_EXACT,    0,   IDX_NONE,  FD_NONE,    true,  h_get_max_mem_slots},
    [VHU_ADD_MEM_REG]           = {"ADD_MEM_REG",           SZ_EXACT,    REG, IDX_NONE,  FD_ONE,     false, h_add_mem_reg},
    [VHU_REM_MEM_REG]           = {"REM_MEM_REG",           SZ_EXACT,    REG, IDX_NONE,  FD_OPT,     false, h_rem_mem_reg},
};
/* clang-format on */

/* Apply the table to 'm'; NULL (after one log line) when it fails. */
static const struct vhu_msg_rule *
check_msg(struct vhu_dev *d, const struct vhu_msg *m)
{
    const struct vhu_msg_rule *r;
    uint32_t want_size;
    uint32_t idx = 0;
    int want_fds = 0;
    int max_fds;

    (void)d;
    if (m->request >= VHU_REQUEST_MAX || rules[m->request].name == NULL) {
        return NULL;
    }
    r = &rules[m->request];
    switch (r->size_rule) {
    case SZ_MEMTABLE:
        want_size = UINT32_MAX;
        if (m->size >= 8 && m->p.mem.nregions >= 1 &&
            m->p.mem.nregions <= VHU_MAX_FDS) {
            want_size = 8u + m->p.mem.nregions *
                                 (uint32_t)sizeof(struct vhu_mem_desc);
        }
        break;
    case SZ_CONFIG:
        want_size = UINT32_MAX;
        if (m->size >= VHU_CONFIG_HDR && m->p.config.size <= VHU_MAX_CONFIG) {
            want_size = VHU_CONFIG_HDR + m->p.config.size;
        }
        break;
    default:
        want_size = r->size;
        break;
    }
    if (m->size != want_size) {
        log_peer("vhost-user: %s: payload %u bytes, expected %d", r->name,
                 m->size, want_size == UINT32_MAX ? -1 : (int)want_size);
        return NULL;
    }
    switch (r->idx_rule) {
    case IDX_STATE:
        idx = m->p.state.index;
        break;
    case IDX_U64:
        idx = (uint32_t)(m->p.u64 & VHU_VRING_IDX_MASK);
        break;
    default:
        break;
    }
    if (idx >= VHU_NUM_VQS) {
        log_peer("vhost-user: %s: vring %u out of range", r->name, idx);
        return NULL;
    }
    switch (r->fd_rule) {
    case FD_ONE:
        want_fds = 1;
        break;
    case FD_VRING:
        want_fds = (m->p.u64 & VHU_VRING_NOFD) ? 0 : 1;
        break;
    case FD_REGIONS:
        want_fds = (int)m->p.mem.nregions;
        break;
    default:
        break;
    }
    max_fds = r->fd_rule == FD_OPT ? 1 : want_fds;
    if (m->nfds < want_fds || m->nfds > max_fds) {
        log_peer("vhost-user: %s: %d fds, expected %d", r->name, m->nfds,
                 want_fds);
        return NULL;
    }
    return r;
}

/* ---- handlers --------------------------------------------------------- */

static bool
has_proto(const struct vhu_dev *d, int bit)
{
    return (d->protocol_features >> bit) & 1u;
}

static void
reply_u64(struct vhu_msg *m, uint64_t v)
{
    m->p.u64 = v;
    m->size = sizeof(uint64_t);
}

/* Take fd i out of the message (it will not be closed with it). */
static int
take_fd(struct vhu_msg *m, int i)
{
    int fd = m->fds[i];

    m->fds[i] = -1;
    return fd;
}

/*
 * The front-end shares the open file of each eventfd it gave us and may
 * clear O_NONBLOCK on it at any time: set it again before each use, so
 * that a read or write it drained or filled gives EAGAIN instead of a
 * blocked device thread.
 */
static void
ensure_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0 && !(fl & O_NONBLOCK)) {
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
}

/*
 * Reset a kick eventfd.  poll() said it is readable, but the front-end may
 * have drained it since (and cleared O_NONBLOCK): RWF_NOWAIT makes this
 * read never block whatever the file's flags, on kernels whose eventfd
 * honours it; elsewhere O_NONBLOCK is set again first.
 */
static ssize_t
read_kick(int fd, uint64_t *cnt)
{
    struct iovec iov = {.iov_base = cnt, .iov_len = sizeof(*cnt)};
    ssize_t n = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);

    if (n >= 0 || errno != EOPNOTSUPP) {
        return n;
    }
    ensure_nonblock(fd);
    return read(fd, cnt, sizeof(*cnt));
}

/* st_dev/st_ino of the anonymous inode eventfds share, if /proc is gone. */
static struct stat anon_st;
static bool anon_st_ok;
static pthread_once_t anon_once = PTHREAD_ONCE_INIT;

static void
anon_init(void)
{
    int fd = eventfd(0, EFD_CLOEXEC);

    if (fd >= 0) {
        anon_st_ok = fstat(fd, &anon_st) == 0;
        close(fd);
    }
}

/*
 * Is 'fd' an eventfd?  Kick, call and err fds are read and written by our
 * threads; anything else (a pipe nobody empties, a file on FUSE, a socket)
 * could block them or, always readable, spin the device thread.
 */
static bool
is_eventfd(int fd)
{
    char path[40];
    char link[64];
    struct stat st;
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, link, sizeof(link) - 1);
    if (n >= 0) {
        link[n] = 0;
        return strcmp(link, "anon_inode:[eventfd]") == 0;
    }
    /* No /proc (a sandbox): at least an anonymous inode, like ours. */
    pthread_once(&anon_once, anon_init);
    return anon_st_ok && fstat(fd, &st) == 0 && st.st_dev == anon_st.st_dev &&
           st.st_ino == anon_st.st_ino;
}

/*
 * Take fd 0 of a KICK/CALL/ERR message: an eventfd, made non-blocking
 * (the file is shared with the front-end, which uses it non-blocking
 * too).  The fd or -errno (the message keeps a refused fd, to close).
 */
static int
take_eventfd(struct vhu_msg *m, const char *what)
{
    int fl;

    if (!is_eventfd(m->fds[0])) {
        log_peer("vhost-user: %s: not an eventfd", what);
        return -EINVAL;
    }
    fl = fcntl(m->fds[0], F_GETFL);
    if (fl < 0 || fcntl(m->fds[0], F_SETFL, fl | O_NONBLOCK) < 0) {
        return -errno;
    }
    return take_fd(m, 0);
}

static int
h_get_features(struct vhu_dev *d, struct vhu_msg *m)
{
    (void)d;
    reply_u64(m, VHU_FEATURES);
    return 0;
}

static int
h_set_features(struct vhu_dev *d, struct vhu_msg *m)
{
    uint64_t f = m->p.u64;

    if (f & ~VHU_FEATURES) {
        log_peer("vhost-user: SET_FEATURES %#llx has unoffered bits",
                 (unsigned long long)f);
        return -EINVAL;
    }
    d->features = f;
    for (int i = 0; i < VHU_NUM_VQS; i++) {
        /* Workers read event_idx in vq_push: change it under the lock. */
        pthread_mutex_lock(&d->vq[i].lock);
        d->vq[i].event_idx = (f >> VIRTIO_RING_F_EVENT_IDX) & 1u;
        d->vq[i].indirect = (f >> VIRTIO_RING_F_INDIRECT_DESC) & 1u;
        pthread_mutex_unlock(&d->vq[i].lock);
    }
    return 0;
}

static int
h_set_owner(struct vhu_dev *d, struct vhu_msg *m)
{
    (void)d;
    (void)m;
    return 0;
}

/* Remap the started rings after a memory table change. */
static void
remap_rings(struct vhu_dev *d)
{
    for (int i = 0; i < VHU_NUM_VQS; i++) {
        if (vq_remap(&d->vq[i], d->mem) != 0) {
            log_peer("vhost-user: vring %d left guest memory; stopped", i);
        }
    }
}

/* Publish 'mem' as the current table (takes the reference). */
static void
swap_mem(struct vhu_dev *d, struct vhu_mem *mem)
{
    struct vhu_mem *old = d->mem;

    d->mem = mem;
    remap_rings(d);
    vhu_mem_put(old);
    /* A ring kicked before any memory was known can start now. */
    for (int i = 0; i < VHU_NUM_VQS; i++) {
        struct vq *vq = &d->vq[i];

        if (vq->kick_fd >= 0 && !vq_is_started(vq) && vq->num != 0 &&
            vq->addr_set && vq_start(vq, d->mem) != 0) {
            log_peer("vhost-user: vring %d cannot start", i);
        }
    }
}

static int
h_set_mem_table(struct vhu_dev *d, struct vhu_msg *m)
{
    struct vhu_mem *mem = vhu_mem_new_guarded(d->guard);
    int err = 0;

    if (mem == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < m->p.mem.nregions; i++) {
        err = vhu_mem_add(mem, &m->p.mem.regions[i], m->fds[i]);
        if (err < 0) {
            log_peer("vhost-user: SET_MEM_TABLE region %u refused (%d)", i,
                     err);
            vhu_mem_put(mem);
            return err;
        }
    }
    swap_mem(d, mem);
    return 0;
}

static int
h_add_mem_reg(struct vhu_dev *d, struct vhu_msg *m)
{
    struct vhu_mem *mem =
        d->mem ? vhu_mem_clone(d->mem) : vhu_mem_new_guarded(d->guard);
    int err;

    if (mem == NULL) {
        return -ENOMEM;
    }
    err = vhu_mem_add(mem, &m->p.memreg.region, m->fds[0]);
    if (err < 0) {
        log_peer("vhost-user: ADD_MEM_REG refused (%d)", err);
        vhu_mem_put(mem);
        return err;
    }
    swap_mem(d, mem);
    return 0;
}

static int
h_rem_mem_reg(struct vhu_dev *d, struct vhu_msg *m)
{
    struct vhu_mem *mem;
    int err;

    if (d->mem == NULL) {
        return -ENOENT;
    }
    mem = vhu_mem_clone(d->mem);
    if (mem == NULL) {
        return -ENOMEM;
    }
    err = vhu_mem_remove(mem, &m->p.memreg.region);
    if (err < 0) {
        vhu_mem_put(mem);
        return err;
    }
    swap_mem(d, mem);
    return 0;
}

static int
h_get_max_mem_slots(struct vhu_dev *d, struct vhu_msg *m)
{
    (void)d;
    reply_u64(m, VHU_MEM_MAX_SLOTS);
    return 0;
}

static int
h_set_vring_num(struct vhu_dev *d, struct vhu_msg *m)
{
    return vq_set_num(&d->vq[m->p.state.index], m->p.state.num);
}

static int
h_set_vring_addr(struct vhu_dev *d, struct vhu_msg *m)
{
    struct vq *vq = &d->vq[m->p.addr.index];

    vq->desc_ua = m->p.addr.desc;
    vq->avail_ua = m->p.addr.avail;
    vq->used_ua = m->p.addr.used;
    vq->addr_set = true;
    /* A started ring may be moved (the front-end does so for logging). */
    if (d->mem != NULL && vq_remap(vq, d->mem) != 0) {
        return -EFAULT;
    }
    return 0;
}

static int
h_set_vring_base(struct vhu_dev *d, struct vhu_msg *m)
{
    struct vq *vq = &d->vq[m->p.state.index];

    if (m->p.state.num > UINT16_MAX || vq_is_started(vq)) {
        return -EINVAL;
    }
    vq->last_avail_idx = (uint16_t)m->p.state.num;
    return 0;
}

static int
h_get_vring_base(struct vhu_dev *d, struct vhu_msg *m)
{
    struct vq *vq = &d->vq[m->p.state.index];

    /*
     * Stop the ring.  Requests in flight still complete into the used ring
     * for a while: the front-end takes last_avail_idx as the used index
     * when the ring is restarted.
     */
    if (vq->kick_fd >= 0) {
        close(vq->kick_fd);
        vq->kick_fd = -1;
    }
    if (!vq_wait_idle(vq, VHU_DRAIN_MS)) {
        log_warn("vhost-user: vring %u stopped with requests in flight",
                 m->p.state.index);
    }
    vq_stop(vq);
    m->p.state.num = vq->last_avail_idx;
    m->size = sizeof(m->p.state);
    return 0;
}

static int
h_set_vring_kick(struct vhu_dev *d, struct vhu_msg *m)
{
    struct vq *vq = &d->vq[m->p.u64 & VHU_VRING_IDX_MASK];
    int err;
    int fd;

    if (vq->kick_fd >= 0) {
        close(vq->kick_fd);
        vq->kick_fd = -1;
    }
    if (m->nfds == 0) {
        /* Polling mode is not supported: a ring nobody kicks never runs. */
        return -ENOTSUP;
    }
    fd = take_eventfd(m, "SET_VRING_KICK");
    if (fd < 0) {
        return fd;
    }
    vq->kick_fd = fd;
    /* Without PROTOCOL_FEATURES a ring is enabled when it starts. */
    if (!((d->features >> VHOST_USER_F_PROTOCOL_FEATURES) & 1u)) {
        vq->enabled = true;
    }
    err = vq_start(vq, d->mem);
    if (err < 0) {
        log_peer("vhost-user: vring cannot start (%d)", err);
        return err;
    }
    return 0;
}

static int
h_set_vring_call(struct vhu_dev *d, struct vhu_msg *m)
{
    struct vq *vq = &d->vq[m->p.u64 & VHU_VRING_IDX_MASK];
    int fd = -1;

    if (m->nfds > 0 && (fd = take_eventfd(m, "SET_VRING_CALL")) < 0) {
        return fd;
    }
    vq_set_call_fd(vq, fd);
    return 0;
}

static int
h_set_vring_err(struct vhu_dev *d, struct vhu_msg *m)
{
    struct vq *vq = &d->vq[m->p.u64 & VHU_VRING_IDX_MASK];
    int fd = -1;

    if (m->nfds > 0 && (fd = take_eventfd(m, "SET_VRING_ERR")) < 0) {
        return fd;
    }
    if (vq->err_fd >= 0) {
        close(vq->err_fd);
    }
    vq->err_fd = fd;
    return 0;
}

static int
h_get_protocol_features(struct vhu_dev *d, struct vhu_msg *m)
{
    (void)d;
    reply_u64(m, VHU_PROTOCOL_FEATURES);
    return 0;
}

static int
h_set_protocol_features(struct vhu_dev *d, struct vhu_msg *m)
{
    if (m->p.u64 & ~VHU_PROTOCOL_FEATURES) {
        log_peer("vhost-user: SET_PROTOCOL_FEATURES %#llx has unoffered bits",
                 (unsigned long long)m->p.u64);
        return -EINVAL;
    }
    d->protocol_features = m->p.u64;
    return 0;
}

static int
h_get_queue_num(struct vhu_dev *d, struct vhu_msg *m)
{
    (void)d;
    reply_u64(m, VHU_NUM_VQS);
    return 0;
}

static int
h_set_vring_enable(struct vhu_dev *d, struct vhu_msg *m)
{
    if (m->p.state.num > 1) {
        return -EINVAL;
    }
    d->vq[m->p.state.index].enabled = m->p.state.num == 1;
    return 0;
}

static int
h_get_config(struct vhu_dev *d, struct vhu_msg *m)
{
    uint32_t off = m->p.config.offset;
    uint32_t size = m->p.config.size;

    if (!has_proto(d, VHU_PROTO_CONFIG) || off > VHU_MAX_CONFIG ||
        size > VHU_MAX_CONFIG - off) {
        m->size = 0; /* an empty reply tells the front-end it failed */
        return -EINVAL;
    }
    memset(m->p.config.data, 0, size);
    if (off < d->config_len) {
        size_t n = d->config_len - off;

        memcpy(m->p.config.data, d->config + off, n < size ? n : size);
    }
    m->size = VHU_CONFIG_HDR + size;
    return 0;
}

static int
h_set_config(struct vhu_dev *d, struct vhu_msg *m)
{
    /* The 9P config space (tag) is read-only for the driver. */
    (void)d;
    (void)m;
    return -EPERM;
}

static int
h_reset(struct vhu_dev *d, struct vhu_msg *m)
{
    (void)m;
    for (int i = 0; i < VHU_NUM_VQS; i++) {
        vq_reset(&d->vq[i]);
    }
    d->features = 0;
    atomic_store(&d->broken, false);
    d->err_signalled = false;
    return 0;
}

/* ---- 9P session glue -------------------------------------------------- */

static void dev_put(struct vhu_dev *d);

static int
op_reply_buf(struct p9s_conn *c, void *cookie, size_t need,
             const struct iovec **iov, int *iovcnt)
{
    struct vq_elem *e = cookie;
    bool stale;

    (void)c;
    (void)need;
    pthread_mutex_lock(&e->vq->lock);
    stale = !e->vq->started || e->gen != e->vq->gen;
    pthread_mutex_unlock(&e->vq->lock);
    if (stale || e->in_num == 0) {
        return stale ? -ECANCELED : -ENOBUFS;
    }
    *iov = e->iov + e->out_num;
    *iovcnt = e->in_num;
    return 0;
}

/* A request is complete: its copy no longer counts. */
static void
copy_done(struct vhu_dev *d, struct vq_elem *e)
{
    atomic_fetch_sub(&d->copied, e->copy_len);
    e->copy_len = 0;
}

static void
op_send(struct p9s_conn *c, void *cookie, size_t len)
{
    struct vq_elem *e = cookie;
    struct vhu_dev *d = e->opaque;

    (void)c;
    copy_done(d, e);
    vq_push(e, len);
    atomic_fetch_sub(&d->inflight, 1);
}

static void
op_drop(struct p9s_conn *c, void *cookie)
{
    struct vq_elem *e = cookie;
    struct vhu_dev *d = e->opaque;

    /* virtio wants every chain back: return it with nothing written. */
    (void)c;
    copy_done(d, e);
    vq_push(e, 0);
    atomic_fetch_sub(&d->inflight, 1);
}

static void
op_release(struct p9s_conn *c, void *tp)
{
    (void)c;
    dev_put(tp);
}

static const struct p9s_conn_ops vhu_conn_ops = {
    .reply_buf = op_reply_buf,
    .send = op_send,
    .drop = op_drop,
    .release = op_release,
};

static int
open_session(struct vhu_dev *d)
{
    atomic_fetch_add(&d->refs, 1);
    d->conn = p9s_conn_new(d->srv, &vhu_conn_ops, d, "vhost-user");
    if (d->conn == NULL) {
        atomic_fetch_sub(&d->refs, 1);
        return -ENOMEM;
    }
    return 0;
}

static void
close_session(struct vhu_dev *d)
{
    if (d->conn != NULL) {
        p9s_conn_close(d->conn); /* release() drops the session's ref */
        d->conn = NULL;
    }
}

/* ---- the device ------------------------------------------------------- */

struct vhu_dev *
vhu_dev_new(struct p9s_server *srv, int sock, const char *tag)
{
    struct vhu_dev *d = calloc(1, sizeof(*d));
    size_t len = strlen(tag);
    int i;

    if (d == NULL || len > VHU_MAX_TAG) {
        goto out_free;
    }
    atomic_init(&d->refs, 1);
    atomic_init(&d->broken, false);
    atomic_init(&d->copied, 0);
    d->srv = srv;
    d->sock = sock;
    d->stop_fd = -1;
    d->guard = vhu_mem_guard_new();
    if (d->guard == NULL) {
        goto out_free;
    }
    for (i = 0; i < VHU_NUM_VQS; i++) {
        if (vq_init(&d->vq[i], &d->broken) < 0) {
            goto out_vqs;
        }
    }
    d->config[0] = (uint8_t)(len & 0xff);
    d->config[1] = (uint8_t)(len >> 8);
    memcpy(d->config + 2, tag, len);
    d->config_len = 2 + len;
    if (open_session(d) < 0) {
        goto out_vqs;
    }
    return d;

out_vqs:
    while (--i >= 0) {
        vq_fini(&d->vq[i]);
    }
out_free:
    if (d != NULL) {
        vhu_mem_guard_put(d->guard);
    }
    free(d);
    close(sock);
    return NULL;
}

static void
dev_put(struct vhu_dev *d)
{
    if (atomic_fetch_sub(&d->refs, 1) != 1) {
        return;
    }
    for (int i = 0; i < VHU_NUM_VQS; i++) {
        vq_fini(&d->vq[i]);
    }
    vhu_mem_put(d->mem);
    vhu_mem_guard_put(d->guard);
    if (d->sock >= 0) {
        close(d->sock);
    }
    free(d);
}

int
vhu_dev_handle(struct vhu_dev *d, struct vhu_msg *m)
{
    const struct vhu_msg_rule *r = check_msg(d, m);
    bool need_ack;
    uint32_t req = m->request;
    int err;

    if (r == NULL && (req >= VHU_REQUEST_MAX || rules[req].name == NULL)) {
        /* Unknown or unsupported: refuse it, keep the connection. */
        log_peer("vhost-user: unsupported request %u", req);
        vhu_msg_close_fds(m);
        if (m->flags & VHU_FLAG_NEED_REPLY) {
            uint64_t fail = 1;

            return msg_send(d, req, &fail, sizeof(fail));
        }
        return 0;
    }
    if (r == NULL) {
        /* The front-end broke the protocol: this device is done. */
        atomic_store(&d->broken, true);
        vhu_msg_close_fds(m);
        return -EPROTO;
    }
    need_ack = !r->has_reply && (m->flags & VHU_FLAG_NEED_REPLY) &&
               has_proto(d, VHU_PROTO_REPLY_ACK);
    log_debug("vhost-user: %s", r->name);
    err = r->handle(d, m);
    vhu_msg_close_fds(m); /* the ones the handler did not take */
    if (r->has_reply) {
        return msg_send(d, req, m->p.bytes, m->size);
    }
    if (need_ack) {
        uint64_t status = err < 0 ? 1 : 0;

        return msg_send(d, req, &status, sizeof(status));
    }
    return 0;
}

int
vhu_dev_dispatch(struct vhu_dev *d)
{
    struct vhu_msg m;
    int err = msg_read(d->sock, &m, d->stop_fd);

    if (err < 0) {
        if (err != -ECONNRESET) {
            log_peer("vhost-user: bad message stream (%d)", err);
        }
        return err;
    }
    return vhu_dev_handle(d, &m);
}

/* Signal the front-end once that a ring went bad. */
static void
signal_broken(struct vhu_dev *d)
{
    uint64_t one = 1;

    if (d->err_signalled || !atomic_load(&d->broken)) {
        return;
    }
    d->err_signalled = true;
    for (int i = 0; i < VHU_NUM_VQS; i++) {
        if (d->vq[i].err_fd >= 0) {
            ensure_nonblock(d->vq[i].err_fd);
        }
        if (d->vq[i].err_fd >= 0 &&
            write(d->vq[i].err_fd, &one, sizeof(one)) < 0) {
            log_peer("vhost-user: err eventfd write failed");
        }
    }
}

/* Copy 'len' bytes at offset 'off' of the iovecs into 'dst'. */
static void
iov_gather(uint8_t *dst, const struct iovec *iov, int cnt, size_t off,
           size_t len)
{
    for (int i = 0; i < cnt && len > 0; i++) {
        size_t n;

        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        n = iov[i].iov_len - off;
        if (n > len) {
            n = len;
        }
        memcpy(dst, (const uint8_t *)iov[i].iov_base + off, n);
        dst += n;
        len -= n;
        off = 0;
    }
}

/*
 * The request as the core gets it.  Its bytes are in guest memory, which
 * the guest may rewrite while the core decodes and uses them (strings are
 * borrowed from the message, a name is checked and then used), so the
 * core gets a private copy: the whole message, or for a Twrite its header
 * alone (its payload is file data, which the guest may change as it
 * likes).  Sets iov and cnt (kept in e->copy) and returns 0, or -E2BIG
 * when the copy would be too large, -ENOMEM.
 */
static int
stable_request(struct vhu_dev *d, struct vq_elem *e, const struct iovec **iov,
               int *cnt)
{
    uint8_t hdr[TWRITE_HDR];
    bool twrite = false;
    size_t clen = e->out_len;
    size_t off;
    struct iovec *v;
    uint8_t *bytes;
    int n = 1;

    if (e->out_len > p9s_conn_msize(d->conn)) {
        /* The core refuses it from its length alone: nothing to copy. */
        *iov = e->iov;
        *cnt = e->out_num;
        return 0;
    }
    if (e->out_len >= TWRITE_HDR) {
        /* Read once: what decides is what the core will see. */
        iov_gather(hdr, e->iov, e->out_num, 0, TWRITE_HDR);
        /* out_len >= TWRITE_HDR: iov_gather filled hdr (the analyzer
         * does not follow its loop) */
        /* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
        twrite = hdr[4] == P9_TWRITE;
    }
    if (twrite) {
        clen = TWRITE_HDR;
        n += e->out_num; /* at most: the payload's guest buffers */
    } else if (clen > VHU_MAX_REQ_COPY) {
        return -E2BIG;
    }
    if (atomic_fetch_add(&d->copied, clen) + clen > VHU_MAX_COPIED) {
        atomic_fetch_sub(&d->copied, clen);
        return -E2BIG;
    }
    e->copy = malloc((size_t)n * sizeof(*v) + clen);
    if (e->copy == NULL) {
        atomic_fetch_sub(&d->copied, clen);
        return -ENOMEM;
    }
    e->copy_len = clen;
    v = e->copy;
    bytes = (uint8_t *)(v + n);
    n = 1;
    v[0] = (struct iovec){.iov_base = bytes, .iov_len = clen};
    if (!twrite) {
        iov_gather(bytes, e->iov, e->out_num, 0, clen);
    } else {
        memcpy(bytes, hdr, TWRITE_HDR);
        off = TWRITE_HDR;
        for (int i = 0; i < e->out_num; i++) {
            if (off >= e->iov[i].iov_len) {
                off -= e->iov[i].iov_len;
                continue;
            }
            v[n].iov_base = (uint8_t *)e->iov[i].iov_base + off;
            v[n].iov_len = e->iov[i].iov_len - off;
            n++;
            off = 0;
        }
    }
    *iov = v;
    *cnt = n;
    return 0;
}

/*
 * Hand a chain to the 9P core.  'alone': the ring held nothing after it;
 * with nothing else in flight either, the request may run right on the
 * device thread (the core decides which requests qualify), saving the
 * hand-over to a worker for a guest that waits for each reply.
 */
static void
submit(struct vhu_dev *d, struct vq_elem *e, bool alone)
{
    const struct iovec *iov;
    unsigned flags = 0;
    int cnt;
    int err;

    if (e->out_len < 7 || d->conn == NULL) {
        /* Too short to be a 9P message: hand it back untouched. */
        log_peer("vhost-user: request of %zu bytes returned", e->out_len);
        vq_push(e, 0);
        return;
    }
    err = stable_request(d, e, &iov, &cnt);
    if (err < 0) {
        vq_fail(e->vq, "request of %zu bytes cannot be copied (%d)",
                e->out_len, err);
        vq_push(e, 0);
        return;
    }
    e->opaque = d;
    if (atomic_fetch_add(&d->inflight, 1) == 0 && alone) {
        flags = P9S_SUBMIT_INLINE;
    }
    err = p9s_conn_submit_flags(d->conn, iov, cnt, e->out_len, e, flags);
    if (err < 0) {
        /*
         * The element was dropped (returned).  The 9P stream cannot go on
         * (bad header, duplicate tag): start a new session, which the
         * guest has to begin with Tversion like any other.
         */
        log_peer("vhost-user: 9P session reset after a bad request (%d)",
                 err);
        close_session(d);
        if (open_session(d) < 0) {
            log_err("vhost-user: cannot open a new 9P session");
        }
    }
}

/* Pop up to a batch; true if the ring may still hold more. */
static bool
process_batch(struct vhu_dev *d, int i)
{
    struct vq *vq = &d->vq[i];
    struct vq_elem *e;
    struct vq_elem *next = NULL;
    int n = 0;
    int r = 0;

    if (!vq->enabled || d->mem == NULL ||
        atomic_load(&d->guard->faulted)) {
        return false;
    }
    for (;;) {
        while (n < VHU_POP_BATCH) {
            if (next != NULL) {
                e = next;
                next = NULL;
            } else if ((r = vq_pop(vq, d->mem, &e)) != 1) {
                break;
            }
            /* look one ahead: is this request alone in the ring? */
            r = vq_pop(vq, d->mem, &next);
            if (r != 1) {
                next = NULL;
            }
            submit(d, e, r == 0);
            n++;
            if (r < 0) {
                break;
            }
        }
        if (next != NULL) {
            submit(d, next, false); /* popped already: must go now */
            return true;
        }
        if (n >= VHU_POP_BATCH) {
            return true;
        }
        if (r < 0) {
            signal_broken(d);
            return false;
        }
        /* Empty: re-arm notifications, then look once more (a chain added
         * between the last pop and the re-arm would get no kick). */
        if (!vq_enable_notify(vq)) {
            return false;
        }
    }
}

void
vhu_dev_process(struct vhu_dev *d, int i)
{
    while (process_batch(d, i)) {
    }
}

/* The SIGBUS handler replaced part of our guest memory: drop the device. */
static bool
memory_faulted(struct vhu_dev *d)
{
    if (!atomic_load(&d->guard->faulted)) {
        return false;
    }
    atomic_store(&d->broken, true);
    log_peer("vhost-user: guest memory vanished under the device (the "
             "front-end shrank its file); disconnecting");
    return true;
}

void
vhu_dev_run(struct vhu_dev *d, int stop_fd)
{
    struct pollfd pfd[3 + VHU_NUM_VQS];
    int vqidx[3 + VHU_NUM_VQS];
    bool more[VHU_NUM_VQS] = {false};
    struct timeval tv = {.tv_sec = VHU_RECV_TIMEOUT_S};

    d->stop_fd = stop_fd;
    setsockopt(d->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (;;) {
        int n = 0;
        int timeout = -1;

        if (memory_faulted(d)) {
            return;
        }
        pfd[n++] = (struct pollfd){.fd = d->sock, .events = POLLIN};
        vqidx[n] = -2;
        pfd[n++] = (struct pollfd){.fd = d->guard->efd, .events = POLLIN};
        if (stop_fd >= 0) {
            vqidx[n] = -1;
            pfd[n++] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
        }
        for (int i = 0; i < VHU_NUM_VQS; i++) {
            if (d->vq[i].kick_fd >= 0 && !atomic_load(&d->broken)) {
                vqidx[n] = i;
                pfd[n++] = (struct pollfd){.fd = d->vq[i].kick_fd,
                                           .events = POLLIN};
            }
            if (more[i]) {
                timeout = 0;
            }
        }
        if (poll(pfd, (nfds_t)n, timeout) < 0) {
            if (errno == EINTR) {
                continue;
            }
            log_err("vhost-user: poll: %s", strerror(errno));
            return;
        }
        for (int k = 1; k < n; k++) {
            if (vqidx[k] == -1 && pfd[k].revents) {
                return; /* stop requested */
            }
        }
        for (int k = 1; k < n; k++) {
            uint64_t cnt;

            if (vqidx[k] < 0 || !(pfd[k].revents & POLLIN)) {
                continue;
            }
            if (read_kick(pfd[k].fd, &cnt) < 0 && errno != EAGAIN) {
                log_peer("vhost-user: kick eventfd read failed");
            }
            more[vqidx[k]] = true;
        }
        for (int i = 0; i < VHU_NUM_VQS; i++) {
            if (more[i]) {
                more[i] = process_batch(d, i);
            }
        }
        if (memory_faulted(d)) {
            return;
        }
        if (pfd[0].revents) {
            if (vhu_dev_dispatch(d) < 0) {
                return;
            }
            /* A message may have started or enabled a ring. */
            for (int i = 0; i < VHU_NUM_VQS; i++) {
                more[i] = d->vq[i].kick_fd >= 0;
            }
        }
    }
}

void
vhu_dev_close(struct vhu_dev *d)
{
    if (d == NULL) {
        return;
    }
    for (int i = 0; i < VHU_NUM_VQS; i++) {
        vq_stop(&d->vq[i]);
    }
    close_session(d);
    if (d->sock >= 0) {
        close(d->sock);
        d->sock = -1;
    }
    dev_put(d);
}

/* ---- the server ------------------------------------------------------- */

struct vhu_server {
    struct p9s_server *srv;
    int listen_fd;     /* -1 when serving conn_fd only */
    int conn_fd;       /* pre-connected socket, -1 after use */
    int stop_fd;       /* eventfd */
    char *unlink_path; /* socket file we created */
    struct sock_unix_id unlink_id;
    char tag[VHU_MAX_TAG + 1];
    bool once;
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
    int sources = (o->socket_path != NULL) + (o->listen_fd >= 0) +
                  (o->conn_fd >= 0);
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

int
vhu_serve(struct p9s_server *srv, const struct vhu_opts *opts,
          struct vhu_server **handle)
{
    struct vhu_server *vs;
    int err = vhu_server_new(srv, opts, &vs);

    /* clang-analyzer-14 does not know that -errno < 0, so it thinks an
     * error path of vhu_server_new() may return 0 with vs unset */
    if (err < 0) {
        return err;
    }
    if (handle != NULL) {
        *handle = vs; /* NOLINT(clang-analyzer-core.uninitialized.Assign) */
    }
    err = vhu_server_run(vs); /* NOLINT(clang-analyzer-core.CallAndMessage) */
    if (handle != NULL) {
        *handle = NULL;
    }
    vhu_server_free(vs);
    return err;
}

void
vhu_print_capabilities(FILE *f)
{
    fprintf(f, "{\n  \"type\": \"9p\",\n  \"features\": []\n}\n");
}
