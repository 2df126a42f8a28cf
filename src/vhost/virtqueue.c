/* SPDX-License-Identifier: MIT */
#include "vhost/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "vhost/vhost_mem.h"

/*
 * Ring layout (virtio 1.x 2.7): all fields little-endian.
 *   desc:  num x { le64 addr; le32 len; le16 flags; le16 next; }  align 16
 *   avail: le16 flags; le16 idx; le16 ring[num]; le16 used_event; align 2
 *   used:  le16 flags; le16 idx; {le32 id; le32 len} ring[num];
 *          le16 avail_event;                                       align 4
 * The guest writes these concurrently: each field is read once, into a
 * local, and the local is what gets checked and used.
 */
#define DESC_SIZE 16u

static size_t
avail_size(uint16_t num)
{
    return 6u + 2u * (size_t)num;
}

static size_t
used_size(uint16_t num)
{
    return 6u + 8u * (size_t)num;
}

/* Aligned 16-bit guest fields (alignment is checked in vq_start). */
static uint16_t
load16(const uint8_t *p)
{
    return le16toh(
        __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED));
}

static void
store16(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELAXED);
}

static uint16_t
avail_idx_acquire(const struct vq *vq)
{
    uint16_t v = load16(vq->avail + 2);

    /* Ring entries and descriptors are read after the index. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return v;
}

void
vq_fail(struct vq *vq, const char *fmt, ...)
{
    char why[160];
    va_list ap;

    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started above */
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (!atomic_exchange(vq->broken, true)) {
        log_err("vhost-user: virtqueue violation, device broken: %s", why);
    }
}

int
vq_init(struct vq *vq, atomic_bool *broken)
{
    memset(vq, 0, sizeof(*vq));
    vq->kick_fd = -1;
    vq->err_fd = -1;
    vq->call_fd = -1;
    vq->busy_fd = -1;
    vq->broken = broken;
    vq->scratch = calloc(VQ_MAX_IOV, sizeof(*vq->scratch));
    if (vq->scratch == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_init(&vq->lock, NULL);
    pthread_cond_init(&vq->idle, NULL);
    return 0;
}

static void
close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

void
vq_reset(struct vq *vq)
{
    vq_stop(vq);
    vq->num = 0;
    vq->addr_set = false;
    vq->desc_ua = vq->avail_ua = vq->used_ua = 0;
    vq->last_avail_idx = 0;
    vq->enabled = false;
    close_fd(&vq->kick_fd);
    close_fd(&vq->err_fd);
    vq_set_call_fd(vq, -1);
}

void
vq_fini(struct vq *vq)
{
    if (vq->scratch == NULL) {
        return;
    }
    vq_reset(vq);
    pthread_cond_destroy(&vq->idle);
    pthread_mutex_destroy(&vq->lock);
    free(vq->scratch);
    vq->scratch = NULL;
}

int
vq_set_num(struct vq *vq, uint32_t num)
{
    if (num == 0 || num > VQ_MAX_SIZE || (num & (num - 1)) != 0 ||
        vq_is_started(vq)) {
        return -EINVAL;
    }
    vq->num = (uint16_t)num;
    return 0;
}

/* Translate the three rings; 0 or -EFAULT.  Called with vq->lock held. */
static int
translate_locked(struct vq *vq, struct vhu_mem *mem)
{
    uint8_t *d;
    uint8_t *a;
    uint8_t *u;

    d = vhu_mem_uaddr_ptr(mem, vq->desc_ua, (uint64_t)vq->num * DESC_SIZE);
    a = vhu_mem_uaddr_ptr(mem, vq->avail_ua, avail_size(vq->num));
    u = vhu_mem_uaddr_ptr(mem, vq->used_ua, used_size(vq->num));
    if (d == NULL || a == NULL || u == NULL) {
        return -EFAULT;
    }
    /* The spec's alignments; they also make the atomic accesses legal. */
    if (((uintptr_t)d & 15u) != 0 || ((uintptr_t)a & 1u) != 0 ||
        ((uintptr_t)u & 3u) != 0) {
        return -EINVAL;
    }
    vq->desc = d;
    vq->avail = a;
    vq->used = u;
    return 0;
}

int
vq_start(struct vq *vq, struct vhu_mem *mem)
{
    int err;

    if (vq->num == 0 || !vq->addr_set || mem == NULL) {
        return -EINVAL;
    }
    pthread_mutex_lock(&vq->lock);
    err = translate_locked(vq, mem);
    if (err == 0) {
        /* Resume where the driver's used ring is (after a reconnect or
         * GET/SET_VRING_BASE, requests in flight then are lost). */
        vq->used_idx = load16(vq->used + 2);
        vq->started = true;
    }
    pthread_mutex_unlock(&vq->lock);
    return err;
}

int
vq_remap(struct vq *vq, struct vhu_mem *mem)
{
    int err = 0;

    pthread_mutex_lock(&vq->lock);
    if (vq->started) {
        err = translate_locked(vq, mem);
        if (err != 0) {
            /* The rings left guest memory: nothing can be pushed now. */
            vq->started = false;
            vq->gen++;
            vq->gen_inflight = 0;
            vq->gen_iovs = 0;
        }
    }
    pthread_mutex_unlock(&vq->lock);
    return err;
}

void
vq_stop(struct vq *vq)
{
    pthread_mutex_lock(&vq->lock);
    if (vq->started) {
        vq->started = false;
        vq->gen++;
        vq->gen_inflight = 0;
        vq->gen_iovs = 0;
    }
    vq->desc = vq->avail = vq->used = NULL;
    if (vq->notifying && !pthread_equal(vq->notifier, pthread_self())) {
        /* A write the front-end made block: interrupt it (the server
         * core's SIGURG handler has no SA_RESTART).  The thread is alive:
         * it clears 'notifying' under this lock before it goes. */
        pthread_kill(vq->notifier, SIGURG);
    }
    pthread_mutex_unlock(&vq->lock);
}

bool
vq_is_started(struct vq *vq)
{
    bool s;

    pthread_mutex_lock(&vq->lock);
    s = vq->started;
    pthread_mutex_unlock(&vq->lock);
    return s;
}

bool
vq_wait_idle(struct vq *vq, int ms)
{
    struct timespec ts;
    bool idle;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&vq->lock);
    while (vq->inflight > 0) {
        if (pthread_cond_timedwait(&vq->idle, &vq->lock, &ts) != 0) {
            break;
        }
    }
    idle = vq->inflight == 0;
    pthread_mutex_unlock(&vq->lock);
    return idle;
}

void
vq_set_call_fd(struct vq *vq, int fd)
{
    int old;

    pthread_mutex_lock(&vq->lock);
    old = vq->call_fd;
    vq->call_fd = fd;
    if (old >= 0 && old == vq->busy_fd) {
        vq->close_busy = true; /* being written: the notifier closes it */
        old = -1;
    }
    pthread_mutex_unlock(&vq->lock);
    if (old >= 0) {
        close(old);
    }
}

/*
 * Walk the chain at 'head' into vq->scratch.  Every check a hostile driver
 * can trip is here; a violation latches broken and returns -EIO.
 */
static int
walk_chain(struct vq *vq, const struct vhu_mem *mem, uint16_t head,
           int *niov_out, int *nout_out, uint64_t *out_len, uint64_t *in_len)
{
    const uint8_t *table = vq->desc;
    uint32_t table_num = vq->num;
    uint32_t i = head;
    uint32_t count = 0; /* descriptors seen in the current table */
    uint32_t total = 0; /* descriptors seen in the whole chain */
    bool indirect = false;
    bool seen_write = false;
    int niov = 0;
    int nout = 0;
    int err;

    *out_len = 0;
    *in_len = 0;
    for (;;) {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
        uint16_t next;
        uint8_t raw[DESC_SIZE];

        if (i >= table_num) {
            vq_fail(vq, "descriptor index %u >= %u%s", i, table_num,
                    indirect ? " (indirect)" : "");
            return -EIO;
        }
        /* A chain cannot visit more descriptors than its table holds
         * without visiting one twice: that bounds loops. */
        if (++count > table_num || ++total > VQ_MAX_SEGS) {
            vq_fail(vq, "descriptor chain at head %u loops or is too long",
                    head);
            return -EIO;
        }
        memcpy(raw, table + (size_t)i * DESC_SIZE, DESC_SIZE);
        memcpy(&addr, raw, 8);
        memcpy(&len, raw + 8, 4);
        memcpy(&flags, raw + 12, 2);
        memcpy(&next, raw + 14, 2);
        addr = le64toh(addr);
        len = le32toh(len);
        flags = le16toh(flags);
        next = le16toh(next);

        if (flags & VRING_DESC_F_INDIRECT) {
            if (!vq->indirect) {
                vq_fail(vq, "indirect descriptor not negotiated");
                return -EIO;
            }
            if (indirect) {
                vq_fail(vq, "nested indirect descriptor");
                return -EIO;
            }
            if (flags & VRING_DESC_F_NEXT) {
                vq_fail(vq, "indirect descriptor with NEXT");
                return -EIO;
            }
            if (len == 0 || len % DESC_SIZE != 0 ||
                len / DESC_SIZE > VQ_MAX_SEGS) {
                vq_fail(vq, "indirect table length %u", len);
                return -EIO;
            }
            table = vhu_mem_gpa_ptr(mem, addr, len);
            if (table == NULL) {
                vq_fail(vq, "indirect table %#llx+%u outside guest memory",
                        (unsigned long long)addr, len);
                return -EIO;
            }
            table_num = len / DESC_SIZE;
            indirect = true;
            count = 0;
            i = 0;
            continue;
        }
        if (flags & VRING_DESC_F_WRITE) {
            seen_write = true;
            *in_len += len;
            if (*in_len > VQ_MAX_BYTES) {
                vq_fail(vq, "writable chain longer than %u", VQ_MAX_BYTES);
                return -EIO;
            }
        } else {
            if (seen_write) {
                vq_fail(vq, "readable descriptor after a writable one");
                return -EIO;
            }
            *out_len += len;
            if (*out_len > VQ_MAX_BYTES) {
                vq_fail(vq, "readable chain longer than %u", VQ_MAX_BYTES);
                return -EIO;
            }
        }
        err = vhu_mem_gpa_iov(mem, addr, len, vq->scratch, (int)VQ_MAX_IOV,
                              &niov);
        if (err != 0) {
            vq_fail(vq, "buffer %#llx+%u %s", (unsigned long long)addr, len,
                    err == -E2BIG ? "needs too many segments"
                                  : "outside guest memory");
            return -EIO;
        }
        if (!seen_write) {
            nout = niov;
        }
        if (!(flags & VRING_DESC_F_NEXT)) {
            break;
        }
        i = next;
    }
    *niov_out = niov;
    *nout_out = nout;
    return 0;
}

int
vq_pop(struct vq *vq, struct vhu_mem *mem, struct vq_elem **out)
{
    struct vq_elem *e;
    unsigned outstanding;
    size_t iovs;
    uint16_t avail_idx;
    uint16_t head;
    uint64_t out_len;
    uint64_t in_len;
    uint32_t gen;
    int niov;
    int nout;
    int err;

    if (atomic_load(vq->broken)) {
        return -EIO;
    }
    pthread_mutex_lock(&vq->lock);
    gen = vq->gen;
    if (!vq->started) {
        pthread_mutex_unlock(&vq->lock);
        return 0;
    }
    outstanding = vq->gen_inflight;
    iovs = vq->gen_iovs;
    pthread_mutex_unlock(&vq->lock);
    /* Only this thread changes the ring pointers: no lock needed now. */
    avail_idx = avail_idx_acquire(vq);
    if ((uint16_t)(avail_idx - vq->last_avail_idx) > vq->num) {
        vq_fail(vq, "avail index moved from %u to %u (ring size %u)",
                vq->last_avail_idx, avail_idx, vq->num);
        return -EIO;
    }
    if (avail_idx == vq->last_avail_idx) {
        return 0;
    }
    if (outstanding >= vq->num) {
        /* Heads reused before we returned them: without this, one ring
         * could make us hold any number of requests. */
        vq_fail(vq, "more than %u chains in flight (ring size)", vq->num);
        return -EIO;
    }
    head = load16(vq->avail + 4 + 2u * (vq->last_avail_idx & (vq->num - 1u)));
    if (head >= vq->num) {
        vq_fail(vq, "avail ring head %u >= ring size %u", head, vq->num);
        return -EIO;
    }
    err = walk_chain(vq, mem, head, &niov, &nout, &out_len, &in_len);
    if (err != 0) {
        return err;
    }
    if ((size_t)niov > VQ_MAX_INFLIGHT_IOV - iovs) {
        vq_fail(vq, "more than %u buffers in flight", VQ_MAX_INFLIGHT_IOV);
        return -EIO;
    }
    e = malloc(sizeof(*e) + (size_t)niov * sizeof(e->iov[0]));
    if (e == NULL) {
        return -ENOMEM;
    }
    e->vq = vq;
    e->mem = vhu_mem_get(mem);
    e->opaque = NULL;
    e->copy = NULL;
    e->copy_len = 0;
    e->gen = gen;
    e->head = head;
    e->out_num = nout;
    e->in_num = niov - nout;
    e->out_len = (size_t)out_len;
    e->in_len = (size_t)in_len;
    memcpy(e->iov, vq->scratch, (size_t)niov * sizeof(e->iov[0]));
    vq->last_avail_idx++;
    pthread_mutex_lock(&vq->lock);
    vq->inflight++;
    if (vq->gen == gen) {
        vq->gen_inflight++;
        vq->gen_iovs += (size_t)niov;
    }
    pthread_mutex_unlock(&vq->lock);
    *out = e;
    return 1;
}

/*
 * Write an eventfd the front-end shares with us.  It may have cleared
 * O_NONBLOCK on the shared file since we set it: set it again first, so
 * that a full counter gives EAGAIN instead of a thread stuck for good.
 * (A front-end racing this check can still block the one notifier; see
 * struct vq.)
 */
static ssize_t
write_nonblock(int fd, uint64_t v)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0 && !(fl & O_NONBLOCK)) {
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    return write(fd, &v, sizeof(v));
}

/* virtio's vring_need_event(): did new_idx just pass event_idx? */
static bool
need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

void
vq_push(struct vq_elem *e, size_t len)
{
    struct vq *vq = e->vq;
    bool notify = false;
    bool notifier = false;
    uint32_t id32;
    uint32_t len32;
    uint8_t *slot;
    uint16_t old;

    if (len > e->in_len) {
        len = e->in_len;
    }
    pthread_mutex_lock(&vq->lock);
    if (vq->started && e->gen == vq->gen && !atomic_load(vq->broken)) {
        old = vq->used_idx;
        slot = vq->used + 4 + 8u * (old & (vq->num - 1u));
        id32 = htole32(e->head);
        len32 = htole32((uint32_t)len);
        memcpy(slot, &id32, 4);
        memcpy(slot + 4, &len32, 4);
        vq->used_idx = (uint16_t)(old + 1u);
        /* The entry must be visible before the index that publishes it. */
        __atomic_thread_fence(__ATOMIC_RELEASE);
        store16(vq->used + 2, vq->used_idx);
        /* And the index before we read the driver's notification wish. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (vq->event_idx) {
            uint16_t ev = load16(vq->avail + 4 + 2u * (size_t)vq->num);

            notify = need_event(ev, vq->used_idx, old);
        } else {
            notify = !(load16(vq->avail) & VRING_AVAIL_F_NO_INTERRUPT);
        }
        if (notify && vq->call_fd >= 0) {
            if (vq->notifying) {
                vq->notify_again = true; /* the notifier writes again */
            } else {
                vq->notifying = true;
                vq->notifier = pthread_self();
                notifier = true;
            }
        }
    }
    if (e->gen == vq->gen && vq->gen_inflight > 0) {
        vq->gen_inflight--;
        vq->gen_iovs -= (size_t)(e->out_num + e->in_num);
    }
    if (vq->inflight > 0 && --vq->inflight == 0) {
        pthread_cond_broadcast(&vq->idle);
    }
    while (notifier) {
        uint64_t one = 1;
        int fd = vq->call_fd;

        vq->notify_again = false;
        vq->busy_fd = fd;
        pthread_mutex_unlock(&vq->lock);
        if (fd >= 0 && write_nonblock(fd, one) < 0 && errno != EAGAIN) {
            log_peer("vhost-user: call eventfd write failed");
        }
        pthread_mutex_lock(&vq->lock);
        vq->busy_fd = -1;
        if (vq->close_busy) {
            vq->close_busy = false;
            close(fd);
        }
        if (!vq->notify_again || vq->call_fd < 0) {
            vq->notifying = false;
            notifier = false;
        }
    }
    pthread_mutex_unlock(&vq->lock);
    vhu_mem_put(e->mem);
    free(e->copy);
    free(e);
}

bool
vq_enable_notify(struct vq *vq)
{
    uint16_t avail_idx;

    if (atomic_load(vq->broken) || !vq_is_started(vq)) {
        return false;
    }
    if (vq->event_idx) {
        /* Kick us when the entry after the last one we took arrives. */
        store16(vq->used + 4 + 8u * (size_t)vq->num, vq->last_avail_idx);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    avail_idx = load16(vq->avail + 2);
    return avail_idx != vq->last_avail_idx;
}

bool
vq_avail_pending(const struct vq *vq)
{
    return load16(vq->avail + 2) != vq->last_avail_idx;
}
