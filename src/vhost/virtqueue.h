/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.x, section 2.7) as seen by a device whose
 * driver is hostile.  vq_pop() reads one descriptor chain from guest memory,
 * checks every descriptor (index, loops, indirect tables, direction order,
 * lengths, address translation) and returns the chain as iovecs into guest
 * memory; vq_push() puts a completed chain in the used ring and notifies the
 * driver through the call eventfd.  Any violation latches the device's
 * 'broken' flag (logged once): the queue then stops and nothing crashes.
 *
 * Threads: configuration, vq_start/stop and vq_pop run on the device thread;
 * vq_push runs on any worker thread.  Used-ring updates, the call fd and the
 * started/generation state are protected by vq->lock.
 */
#ifndef VIRTFS_VHOST_VIRTQUEUE_H
#define VIRTFS_VHOST_VIRTQUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct vhu_mem;

#define VQ_MAX_SIZE 32768u             /* largest ring (power of two) */
#define VQ_MAX_SEGS 4096u              /* descriptors per chain, all tables */
#define VQ_MAX_IOV 8192u               /* iovecs per chain after splitting */
#define VQ_MAX_BYTES (64u << 20)       /* bytes per direction per chain */
#define VQ_MAX_INFLIGHT_IOV (1u << 20) /* iovecs of all chains in flight */

#define VRING_DESC_F_NEXT 1u
#define VRING_DESC_F_WRITE 2u
#define VRING_DESC_F_INDIRECT 4u
#define VRING_AVAIL_F_NO_INTERRUPT 1u

/* A popped chain; the cookie a transport passes around. */
struct vq_elem {
    struct vq *vq;
    struct vhu_mem *mem; /* ref: the table the iovecs point into */
    void *opaque;        /* the caller's */
    void *copy;          /* the caller's malloc'd buffer, freed with it */
    size_t copy_len;     /* the caller's accounting of it */
    uint32_t gen;        /* vq generation at pop (stale ones are dropped) */
    uint16_t head;       /* descriptor index that goes in the used ring */
    int out_num;         /* readable (driver -> device) iovecs: iov[0..] */
    int in_num;          /* writable iovecs: iov[out_num..] */
    size_t out_len;      /* total readable bytes */
    size_t in_len;       /* total writable bytes */
    struct iovec iov[];
};

struct vq {
    /* Set up while stopped, by the device thread. */
    uint16_t num;     /* ring size; 0 = not configured */
    bool addr_set;    /* SET_VRING_ADDR seen */
    uint64_t desc_ua; /* front-end virtual addresses of the rings */
    uint64_t avail_ua;
    uint64_t used_ua;
    bool event_idx;          /* VIRTIO_RING_F_EVENT_IDX negotiated */
    bool indirect;           /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
    uint16_t last_avail_idx; /* next avail entry to pop (device thread) */
    int kick_fd;             /* device thread; -1 none */
    int err_fd;              /* device thread; -1 none */
    bool enabled;            /* SET_VRING_ENABLE (device thread) */

    atomic_bool *broken;   /* the device's latch */
    struct iovec *scratch; /* VQ_MAX_IOV entries, vq_pop only */

    pthread_mutex_t lock;
    pthread_cond_t idle; /* signalled when inflight drops to 0 */
    bool started;        /* lock; rings translated, pops allowed */
    uint32_t gen;        /* lock; bumped by vq_stop */
    uint8_t *desc;       /* lock (written); ring pointers while started */
    uint8_t *avail;
    uint8_t *used;
    uint16_t used_idx; /* lock: next used entry */
    int call_fd;       /* lock; -1 none */
    unsigned inflight; /* lock: popped, not yet pushed */
    /* lock: chains and their iovecs popped in this generation, not yet
     * pushed.  A driver owns 'num' descriptors: it cannot have more
     * chains outstanding, however it reuses heads; the iovec budget
     * bounds the memory the elements take. */
    unsigned gen_inflight;
    size_t gen_iovs;
    /*
     * The call eventfd belongs to the front-end, which can make a write to
     * it block (clear O_NONBLOCK on the shared file, fill the counter).
     * So it is written outside the lock by one thread at a time (the
     * notifier); others that need an interrupt meanwhile set notify_again
     * and the notifier writes once more.  vq_stop() interrupts a notifier
     * stuck in write() with SIGURG.  All under lock.
     */
    bool notifying;
    bool notify_again;
    pthread_t notifier;
    int busy_fd;     /* the fd the notifier writes, -1 */
    bool close_busy; /* busy_fd was replaced: the notifier closes it */
};

/* Initialise; 'broken' is the device latch.  0 or -ENOMEM. */
int vq_init(struct vq *vq, atomic_bool *broken);
/* Stop, close the fds, free.  No element may be in flight any more. */
void vq_fini(struct vq *vq);
/* Forget all configuration (device reset); the vq must be stopped. */
void vq_reset(struct vq *vq);

/* Latch the device broken with a reason (logged once per device). */
void vq_fail(struct vq *vq, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* SET_VRING_NUM: power of two, 1..VQ_MAX_SIZE, ring stopped.  0/-EINVAL. */
int vq_set_num(struct vq *vq, uint32_t num);
/* Translate the ring addresses with 'mem' and start.  0/-errno. */
int vq_start(struct vq *vq, struct vhu_mem *mem);
/* Retranslate a started ring after a memory table change.  0/-EFAULT. */
int vq_remap(struct vq *vq, struct vhu_mem *mem);
/* Stop: no more pops; pushes of elements popped before are dropped. */
void vq_stop(struct vq *vq);
bool vq_is_started(struct vq *vq);
/* Wait until every popped element was pushed, at most 'ms'.  true if so. */
bool vq_wait_idle(struct vq *vq, int ms);
/* Replace the call eventfd (takes ownership of fd, may be -1; it should be
 * non-blocking). */
void vq_set_call_fd(struct vq *vq, int fd);

/*
 * Pop the next chain.  Returns 1 and *out (owned by the caller until
 * vq_push), 0 when the ring is empty, -EIO when the device is (now) broken,
 * -ENOMEM.  Device thread only.
 */
int vq_pop(struct vq *vq, struct vhu_mem *mem, struct vq_elem **out);
/*
 * Return a chain to the driver with 'len' bytes written (clamped to
 * in_len) and notify it if it wants to be.  Frees the element.  Any thread.
 */
void vq_push(struct vq_elem *e, size_t len);
/*
 * Before sleeping on the kick fd: re-enable notifications (EVENT_IDX: set
 * avail_event) and report whether more chains arrived meanwhile.
 */
bool vq_enable_notify(struct vq *vq);
/*
 * Has the driver published a chain we have not popped?  A cheap look for
 * busy-poll (no lock, no check: vq_pop decides).  Device thread only, and
 * only on a started ring (a stopped one has no avail pointer).
 */
bool vq_avail_pending(const struct vq *vq);

#endif
