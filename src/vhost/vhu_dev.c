/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user device: the per-message check table, the message
 * handlers, the device's life (new, close, the last reference) and its
 * thread (vhu_dev_run: poll on the socket, the kick eventfds and the stop
 * eventfd).  What a kick does, handing the ring's chains to the 9P core,
 * is vhu_p9.c.
 *
 * Lifetime: a device is refcounted.  The device thread holds one
 * reference until vhu_dev_close(); each 9P session holds one until its
 * release().  Elements in flight keep their memory table alive, so guest
 * memory a worker writes into is never unmapped under it.
 */
#include "vhost/vhu_int.h"

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
#include <unistd.h>

#include "util/log.h"

/* How long GET_VRING_BASE waits for requests in flight to complete. */
#define VHU_DRAIN_MS 3000

/* ---- the check table -------------------------------------------------- */

enum vhu_size_rule {
    SZ_EXACT,    /* size == min */
    SZ_MEMTABLE, /* 8 + nregions * 32, nregions 1..VHU_MAX_FDS */
    SZ_CONFIG,   /* 12 + config.size, config.size <= VHU_MAX_CONFIG */
};

enum vhu_idx_rule {
    IDX_NONE,
    IDX_STATE, /* u32 index at offset 0 (state, addr) */
    IDX_U64,   /* low 8 bits of the u64 (KICK, CALL, ERR) */
};

enum vhu_fd_rule {
    FD_NONE,    /* no fd */
    FD_ONE,     /* exactly one */
    FD_OPT,     /* zero or one (ignored) */
    FD_VRING,   /* one unless VHU_VRING_NOFD is set */
    FD_REGIONS, /* one per region */
};

struct vhu_msg_rule {
    const char *name;
    uint8_t size_rule;
    uint16_t size; /* exact size, or the minimum */
    uint8_t idx_rule;
    uint8_t fd_rule;
    bool has_reply; /* answered with a payload, never with an ACK */
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
            want_size =
                8u + m->p.mem.nregions * (uint32_t)sizeof(struct vhu_mem_desc);
        }
        break;
    case SZ_CONFIG:
        want_size = UINT32_MAX;
        if (m->size >= VHU_CONFIG_HDR && m->p.config.size <= VHU_MAX_CONFIG) {
            want_size = VHU_CONFIG_HDR + m->p.config.size;
        }
        break;
    default: want_size = r->size; break;
    }
    if (m->size != want_size) {
        log_peer("vhost-user: %s: payload %u bytes, expected %d", r->name,
                 m->size, want_size == UINT32_MAX ? -1 : (int)want_size);
        return NULL;
    }
    switch (r->idx_rule) {
    case IDX_STATE: idx = m->p.state.index; break;
    case IDX_U64: idx = (uint32_t)(m->p.u64 & VHU_VRING_IDX_MASK); break;
    default: break;
    }
    if (idx >= VHU_NUM_VQS) {
        log_peer("vhost-user: %s: vring %u out of range", r->name, idx);
        return NULL;
    }
    switch (r->fd_rule) {
    case FD_ONE: want_fds = 1; break;
    case FD_VRING: want_fds = (m->p.u64 & VHU_VRING_NOFD) ? 0 : 1; break;
    case FD_REGIONS: want_fds = (int)m->p.mem.nregions; break;
    default: break;
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
    if (vhu_session_open(d) < 0) {
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

void
vhu_dev_put(struct vhu_dev *d)
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

            return vhu_msg_send(d->sock, d->stop_fd, req, &fail, sizeof(fail));
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
        return vhu_msg_send(d->sock, d->stop_fd, req, m->p.bytes, m->size);
    }
    if (need_ack) {
        uint64_t status = err < 0 ? 1 : 0;

        return vhu_msg_send(d->sock, d->stop_fd, req, &status, sizeof(status));
    }
    return 0;
}

int
vhu_dev_dispatch(struct vhu_dev *d)
{
    struct vhu_msg m;
    int err = vhu_msg_read(d->sock, &m, d->stop_fd);

    if (err < 0) {
        if (err != -ECONNRESET) {
            log_peer("vhost-user: bad message stream (%d)", err);
        }
        return err;
    }
    return vhu_dev_handle(d, &m);
}

/* Signal the front-end once that a ring went bad. */
void
vhu_dev_signal_broken(struct vhu_dev *d)
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
                pfd[n++] =
                    (struct pollfd){.fd = d->vq[i].kick_fd, .events = POLLIN};
            }
            if (more[i]) {
                timeout = 0;
            }
        }
        if (timeout < 0 && d->bp != NULL) {
            bp_sleeping(d->bp, &d->bps);
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
            if (timeout < 0 && d->bp != NULL) {
                bp_woken(d->bp, &d->bps); /* once: t_sleep is reset */
            }
            more[vqidx[k]] = true;
        }
        for (int i = 0; i < VHU_NUM_VQS; i++) {
            if (more[i]) {
                more[i] = vhu_ring_process(d, i);
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
    vhu_session_close(d);
    if (d->sock >= 0) {
        close(d->sock);
        d->sock = -1;
    }
    vhu_dev_put(d);
}
