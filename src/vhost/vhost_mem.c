/* SPDX-License-Identifier: MIT */
#include "vhost/vhost_mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

struct vhu_map {
    atomic_uint refs;
    void *addr; /* mmap result */
    size_t len; /* mmap length */
};

static void
map_put(struct vhu_map *map)
{
    if (map != NULL && atomic_fetch_sub(&map->refs, 1) == 1) {
        munmap(map->addr, map->len);
        free(map);
    }
}

struct vhu_mem *
vhu_mem_new(void)
{
    struct vhu_mem *m = calloc(1, sizeof(*m));

    if (m != NULL) {
        atomic_init(&m->refs, 1);
    }
    return m;
}

struct vhu_mem *
vhu_mem_clone(const struct vhu_mem *m)
{
    struct vhu_mem *c = vhu_mem_new();

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
    free(m);
}

/* [a, a + alen) and [b, b + blen) intersect; lengths non-zero, no wrap. */
static bool
ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a <= b + (blen - 1) && b <= a + (alen - 1);
}

int
vhu_mem_add(struct vhu_mem *m, const struct vhu_mem_desc *d, int fd)
{
    struct vhu_mem_region *r;
    struct vhu_map *map;
    struct stat st;
    uint64_t maplen;
    void *addr;

    if (m->nregions >= VHU_MEM_MAX_SLOTS) {
        return -ENOSPC;
    }
    /* Ranges must be non-empty and must not wrap around 2^64. */
    if (d->size == 0 || d->gpa > UINT64_MAX - (d->size - 1) ||
        d->uaddr > UINT64_MAX - (d->size - 1) ||
        d->mmap_offset > UINT64_MAX - d->size) {
        return -EINVAL;
    }
    maplen = d->mmap_offset + d->size;
    if (maplen > SIZE_MAX || maplen > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    for (int i = 0; i < m->nregions; i++) {
        if (ranges_overlap(d->gpa, d->size, m->r[i].d.gpa, m->r[i].d.size)) {
            return -EINVAL;
        }
    }
    /*
     * Touching a page beyond the end of the file would raise SIGBUS, so the
     * region must lie within the file as it is now.  (A front-end that
     * shrinks the file later can still do that; QEMU does not.)
     */
    if (fstat(fd, &st) < 0) {
        return -errno;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < maplen) {
        return -EINVAL;
    }
    map = calloc(1, sizeof(*map));
    if (map == NULL) {
        return -ENOMEM;
    }
    /* Map from offset 0: mmap_offset need not be page aligned. */
    addr = mmap(NULL, (size_t)maplen, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (addr == MAP_FAILED) {
        int err = -errno;

        free(map);
        return err;
    }
    atomic_init(&map->refs, 1);
    map->addr = addr;
    map->len = (size_t)maplen;
    r = &m->r[m->nregions++];
    r->d = *d;
    r->hva = (uint8_t *)addr + d->mmap_offset;
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
