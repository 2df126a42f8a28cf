/* SPDX-License-Identifier: MIT */
#include "vhost/vhost_mem.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define TMPFS_MAGIC_ 0x01021994u
#define HUGETLBFS_MAGIC_ 0x958458f6u

struct vhu_map {
    atomic_uint refs;
    void *addr;                  /* mmap result */
    size_t len;                  /* mmap length */
    int slot;                    /* SIGBUS registry slot */
    struct vhu_mem_guard *guard; /* ref, may be NULL */
};

/*
 * ---- SIGBUS containment ----
 *
 * Why a handler and not sigsetjmp() around the accesses: guest memory is
 * written by the 9P core's workers (replies are encoded straight into the
 * guest's buffers, by code that knows nothing of vhost), and by the device
 * thread, in many places; a siglongjmp() out of the middle of them would
 * leave locks held and requests half done.  Replacing the faulting mapping
 * with anonymous memory lets every access complete (reads see zeros,
 * writes go nowhere the guest can see), and the device is then dropped
 * through its guard.
 *
 * The registry is an array of slots read by the handler without locks: a
 * slot is a seqlock (odd sequence = being written).  Registration and
 * removal are serialised by a mutex that the handler never takes.  A
 * mapping is registered before anyone can touch it and removed only when
 * its last reference is gone (nobody touches it any more), just before it
 * is unmapped; so a fault inside a mapping always finds its slot, and the
 * guard it points to is alive (the mapping holds a reference).
 */
#define REG_SLOTS 4096

struct reg_slot {
    atomic_uint seq;
    atomic_uintptr_t start;
    atomic_size_t len; /* 0: free */
    _Atomic(struct vhu_mem_guard *) guard;
};

/* mmap'd at first use: no cost for processes without vhost, and not a
 * root that LeakSanitizer scans after every fuzzer input. */
static struct reg_slot *reg;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static struct sigaction old_bus;
static bool reg_ok;

static void
reg_write(struct reg_slot *s, uintptr_t start, size_t len,
          struct vhu_mem_guard *g)
{
    unsigned seq = atomic_load_explicit(&s->seq, memory_order_relaxed);

    atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->start, start, memory_order_relaxed);
    atomic_store_explicit(&s->len, len, memory_order_relaxed);
    atomic_store_explicit(&s->guard, g, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
}

/* Chain to the handler that was there before, or die as SIGBUS would. */
static void
bus_not_ours(int sig, siginfo_t *si, void *uc)
{
    if ((old_bus.sa_flags & SA_SIGINFO) && old_bus.sa_sigaction != NULL) {
        old_bus.sa_sigaction(sig, si, uc);
        return;
    }
    if (!(old_bus.sa_flags & SA_SIGINFO) && old_bus.sa_handler != SIG_DFL &&
        old_bus.sa_handler != SIG_IGN) {
        old_bus.sa_handler(sig);
        return;
    }
    /* Returning re-executes the access, which now takes the default
     * action (a core dump at the right place); a signal sent by
     * kill() is raised again. */
    signal(SIGBUS, SIG_DFL);
    if (si->si_code <= 0) {
        raise(SIGBUS);
    }
}

static void
bus_handler(int sig, siginfo_t *si, void *uc)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    int saved = errno;

    /* Only a fault of the kernel (not kill()) names a real address. */
    for (int i = 0; reg != NULL && si->si_code > 0 && i < REG_SLOTS; i++) {
        struct reg_slot *s = &reg[i];
        unsigned s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        uintptr_t start = atomic_load_explicit(&s->start, memory_order_relaxed);
        size_t len = atomic_load_explicit(&s->len, memory_order_relaxed);
        struct vhu_mem_guard *g =
            atomic_load_explicit(&s->guard, memory_order_relaxed);
        uint64_t one = 1;

        atomic_thread_fence(memory_order_acquire);
        if ((s1 & 1u) != 0 ||
            atomic_load_explicit(&s->seq, memory_order_relaxed) != s1 ||
            len == 0 || a < start || a - start >= len) {
            continue;
        }
        /*
         * Ours: swap the whole mapping for zero pages (mmap is one raw
         * system call, safe here; MAP_FIXED replaces atomically, so other
         * threads inside the mapping never see a hole), and tell the
         * device.  The device is dropped anyway, so its memory need not
         * stay connected to the guest's.
         */
        if (mmap((void *)start, len, PROT_READ | PROT_WRITE,
                 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                 0) == MAP_FAILED) {
            break;
        }
        if (g != NULL) {
            atomic_store(&g->faulted, true);
            if (write(g->efd, &one, sizeof(one)) < 0) {
                /* counter full: the device is being told already */
            }
        }
        errno = saved;
        return;
    }
    errno = saved;
    bus_not_ours(sig, si, uc);
}

static void
reg_init(void)
{
    struct sigaction sa;

    reg = mmap(NULL, REG_SLOTS * sizeof(*reg), PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (reg == MAP_FAILED) {
        reg = NULL;
        return;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = bus_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    reg_ok = sigaction(SIGBUS, &sa, &old_bus) == 0;
}

/* Register [addr, addr + len) for 'g'; the slot or -ENOSPC. */
static int
reg_add(void *addr, size_t len, struct vhu_mem_guard *g)
{
    int slot = -ENOSPC;

    pthread_once(&reg_once, reg_init);
    if (!reg_ok) {
        return -ENOSYS;
    }
    if (g != NULL && atomic_fetch_add(&g->nmaps, 1) >= VHU_MEM_GUARD_MAPS) {
        atomic_fetch_sub(&g->nmaps, 1);
        return -ENOSPC;
    }
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < REG_SLOTS; i++) {
        if (atomic_load_explicit(&reg[i].len, memory_order_relaxed) == 0) {
            reg_write(&reg[i], (uintptr_t)addr, len, g);
            slot = i;
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    if (slot < 0 && g != NULL) {
        atomic_fetch_sub(&g->nmaps, 1);
    }
    return slot;
}

static void
reg_remove(int slot, struct vhu_mem_guard *g)
{
    pthread_mutex_lock(&reg_lock);
    reg_write(&reg[slot], 0, 0, NULL);
    pthread_mutex_unlock(&reg_lock);
    if (g != NULL) {
        atomic_fetch_sub(&g->nmaps, 1);
    }
}

struct vhu_mem_guard *
vhu_mem_guard_new(void)
{
    struct vhu_mem_guard *g = calloc(1, sizeof(*g));

    if (g == NULL) {
        return NULL;
    }
    g->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g->efd < 0) {
        free(g);
        return NULL;
    }
    atomic_init(&g->refs, 1);
    atomic_init(&g->faulted, false);
    atomic_init(&g->nmaps, 0);
    return g;
}

static struct vhu_mem_guard *
guard_get(struct vhu_mem_guard *g)
{
    if (g != NULL) {
        atomic_fetch_add(&g->refs, 1);
    }
    return g;
}

void
vhu_mem_guard_put(struct vhu_mem_guard *g)
{
    if (g != NULL && atomic_fetch_sub(&g->refs, 1) == 1) {
        close(g->efd);
        free(g);
    }
}

/* ---- tables ---- */

static void
map_put(struct vhu_map *map)
{
    if (map != NULL && atomic_fetch_sub(&map->refs, 1) == 1) {
        /* Out of the registry first: the range may be reused at once. */
        reg_remove(map->slot, map->guard);
        munmap(map->addr, map->len);
        vhu_mem_guard_put(map->guard);
        free(map);
    }
}

struct vhu_mem *
vhu_mem_new_guarded(struct vhu_mem_guard *g)
{
    struct vhu_mem *m = calloc(1, sizeof(*m));

    if (m != NULL) {
        atomic_init(&m->refs, 1);
        m->guard = guard_get(g);
    }
    return m;
}

struct vhu_mem *
vhu_mem_new(void)
{
    return vhu_mem_new_guarded(NULL);
}

struct vhu_mem *
vhu_mem_clone(const struct vhu_mem *m)
{
    struct vhu_mem *c = vhu_mem_new_guarded(m->guard);

    if (c == NULL) {
        return NULL;
    }
    c->nregions = m->nregions;
    for (int i = 0; i < m->nregions; i++) {
        c->r[i] = m->r[i];
        atomic_fetch_add(&c->r[i].map->refs, 1);
    }
    return c;
}

struct vhu_mem *
vhu_mem_get(struct vhu_mem *m)
{
    atomic_fetch_add(&m->refs, 1);
    return m;
}

void
vhu_mem_put(struct vhu_mem *m)
{
    if (m == NULL || atomic_fetch_sub(&m->refs, 1) != 1) {
        return;
    }
    for (int i = 0; i < m->nregions; i++) {
        map_put(m->r[i].map);
    }
    vhu_mem_guard_put(m->guard);
    free(m);
}

/* [a, a + alen) and [b, b + blen) intersect; lengths non-zero, no wrap. */
static bool
ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a <= b + (blen - 1) && b <= a + (alen - 1);
}

/* Page size for the file: huge pages on hugetlbfs (st_blksize). */
static uint64_t
file_page(const struct stat *st)
{
    uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t bs = (uint64_t)st->st_blksize;

    if (bs > pg && (bs & (bs - 1)) == 0) {
        pg = bs;
    }
    return pg;
}

/* Map [off, off + size) of 'fd' (page-aligned outward) into a new map. */
static int
map_new(int fd, uint64_t off, uint64_t size, uint64_t pg,
        struct vhu_mem_guard *g, struct vhu_map **out, uint8_t **hva)
{
    uint64_t start = off & ~(pg - 1);
    uint64_t len = off - start + size;
    struct vhu_map *map;
    void *addr;
    int slot;

    /* Round up to whole pages: the handler replaces whole pages. */
    if (len > UINT64_MAX - (pg - 1)) {
        return -EINVAL;
    }
    len = (len + pg - 1) & ~(pg - 1);
    if (len > SIZE_MAX) {
        return -EINVAL;
    }
    map = calloc(1, sizeof(*map));
    if (map == NULL) {
        return -ENOMEM;
    }
    addr = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_NORESERVE, fd, (off_t)start);
    if (addr == MAP_FAILED) {
        int err = -errno;

        free(map);
        return err;
    }
    slot = reg_add(addr, (size_t)len, g);
    if (slot < 0) {
        munmap(addr, (size_t)len);
        free(map);
        return slot;
    }
    atomic_init(&map->refs, 1);
    map->addr = addr;
    map->len = (size_t)len;
    map->slot = slot;
    map->guard = guard_get(g);
    *out = map;
    *hva = (uint8_t *)addr + (off - start);
    return 0;
}

int
vhu_mem_add(struct vhu_mem *m, const struct vhu_mem_desc *d, int fd)
{
    struct vhu_mem_region *r;
    struct vhu_map *map = NULL;
    struct statfs sfs;
    struct stat st;
    uint64_t end;
    uint64_t total = d->size;
    uint8_t *hva = NULL;
    int err;

    if (m->nregions >= VHU_MEM_MAX_SLOTS) {
        return -ENOSPC;
    }
    /* Ranges must be non-empty and must not wrap around 2^64. */
    if (d->size == 0 || d->gpa > UINT64_MAX - (d->size - 1) ||
        d->uaddr > UINT64_MAX - (d->size - 1) ||
        d->mmap_offset > UINT64_MAX - d->size) {
        return -EINVAL;
    }
    end = d->mmap_offset + d->size;
    if (d->size > VHU_MEM_MAX_BYTES || end > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    for (int i = 0; i < m->nregions; i++) {
        const struct vhu_mem_desc *o = &m->r[i].d;

        if (ranges_overlap(d->gpa, d->size, o->gpa, o->size) ||
            ranges_overlap(d->uaddr, d->size, o->uaddr, o->size)) {
            return -EINVAL;
        }
        total += o->size;
    }
    /* All devices share one address space: none may take most of it. */
    if (total > VHU_MEM_MAX_BYTES) {
        return -ENOSPC;
    }
    /*
     * Touching a page beyond the end of the file raises SIGBUS, so the
     * region must lie within the file as it is now.  (A front-end that
     * shrinks the file later is caught by the SIGBUS handler.)  And the
     * file must be memory: a fault on a FUSE or network file waits for
     * another process, which would hang the thread that touched it.
     */
    if (fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0) {
        return -errno;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < end) {
        return -EINVAL;
    }
    if ((uint32_t)sfs.f_type != TMPFS_MAGIC_ &&
        (uint32_t)sfs.f_type != HUGETLBFS_MAGIC_) {
        return -EINVAL;
    }
    err = map_new(fd, d->mmap_offset, d->size, file_page(&st), m->guard, &map,
                  &hva);
    if (err < 0) {
        return err;
    }
    r = &m->r[m->nregions++];
    r->d = *d;
    r->hva = hva;
    r->map = map;
    return 0;
}

int
vhu_mem_remove(struct vhu_mem *m, const struct vhu_mem_desc *d)
{
    for (int i = 0; i < m->nregions; i++) {
        struct vhu_mem_region *r = &m->r[i];

        if (r->d.gpa == d->gpa && r->d.size == d->size &&
            r->d.uaddr == d->uaddr) {
            map_put(r->map);
            memmove(r, r + 1, (size_t)(m->nregions - i - 1) * sizeof(*r));
            m->nregions--;
            return 0;
        }
    }
    return -ENOENT;
}

/* Region holding guest-physical 'gpa', or NULL. */
static const struct vhu_mem_region *
find_gpa(const struct vhu_mem *m, uint64_t gpa)
{
    for (int i = 0; i < m->nregions; i++) {
        const struct vhu_mem_region *r = &m->r[i];

        if (gpa >= r->d.gpa && gpa - r->d.gpa < r->d.size) {
            return r;
        }
    }
    return NULL;
}

int
vhu_mem_gpa_iov(const struct vhu_mem *m, uint64_t gpa, uint64_t len,
                struct iovec *iov, int max, int *n)
{
    if (len != 0 && gpa > UINT64_MAX - (len - 1)) {
        return -EFAULT;
    }
    while (len > 0) {
        const struct vhu_mem_region *r = find_gpa(m, gpa);
        uint64_t off;
        uint64_t chunk;

        if (r == NULL) {
            return -EFAULT;
        }
        if (*n >= max) {
            return -E2BIG;
        }
        off = gpa - r->d.gpa;
        chunk = r->d.size - off;
        if (chunk > len) {
            chunk = len;
        }
        iov[*n].iov_base = r->hva + off;
        iov[*n].iov_len = (size_t)chunk;
        (*n)++;
        gpa += chunk;
        len -= chunk;
    }
    return 0;
}

void *
vhu_mem_gpa_ptr(const struct vhu_mem *m, uint64_t gpa, uint64_t len)
{
    const struct vhu_mem_region *r = find_gpa(m, gpa);
    uint64_t off;

    if (r == NULL) {
        return NULL;
    }
    off = gpa - r->d.gpa;
    if (len > r->d.size - off) {
        return NULL;
    }
    return r->hva + off;
}

void *
vhu_mem_uaddr_ptr(const struct vhu_mem *m, uint64_t uaddr, uint64_t len)
{
    for (int i = 0; i < m->nregions; i++) {
        const struct vhu_mem_region *r = &m->r[i];
        uint64_t off;

        if (uaddr < r->d.uaddr || uaddr - r->d.uaddr >= r->d.size) {
            continue;
        }
        off = uaddr - r->d.uaddr;
        if (len > r->d.size - off) {
            return NULL;
        }
        return r->hva + off;
    }
    return NULL;
}
