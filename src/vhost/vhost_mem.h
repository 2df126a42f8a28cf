/* SPDX-License-Identifier: MIT */
/*
 * Guest memory of one vhost-user device: the regions the front-end shares
 * (SET_MEM_TABLE, ADD_MEM_REG), mmap'd from their fds, and translation of
 * guest-physical addresses (descriptors) and front-end virtual addresses
 * (ring addresses from SET_VRING_ADDR) to pointers in this process.
 *
 * A table is immutable once published and refcounted: every request in
 * flight holds a reference to the table its iovecs point into, so a new
 * table (memory hotplug, reconnect) never unmaps memory a worker is still
 * writing.  Mappings are refcounted on their own so that ADD/REM_MEM_REG can
 * build a new table that shares the unchanged regions.  Every length check
 * is written so that it cannot overflow (no 'a + len > b' on guest values).
 *
 * SIGBUS containment: the front-end owns the files behind guest memory and
 * may shrink them (or let a size-limited tmpfs run full) after we mapped
 * them; touching such a page raises SIGBUS, in the device thread or in any
 * worker writing a reply.  Every mapping is registered with a process-wide
 * SIGBUS handler, which replaces a faulting mapping with anonymous zero
 * pages (the access completes harmlessly), marks the owning device's guard
 * faulted and wakes its thread through the guard's eventfd, so that only
 * that device is disconnected.  Any other SIGBUS keeps its default action.
 */
#ifndef VIRTFS_VHOST_VHOST_MEM_H
#define VIRTFS_VHOST_VHOST_MEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Slots reported by GET_MAX_MEM_SLOTS; also the table's capacity. */
#define VHU_MEM_MAX_SLOTS 32

/* One region as described on the wire (all values from the front-end). */
struct vhu_mem_desc {
    uint64_t gpa;         /* guest physical address */
    uint64_t size;        /* bytes */
    uint64_t uaddr;       /* front-end (QEMU) virtual address */
    uint64_t mmap_offset; /* offset of the region in the fd */
};

struct vhu_map; /* one mmap'd fd, refcounted */

/* Largest sum of region sizes in one table (address space is shared by
 * every device of the process; no VM sharing a 9P export is this big). */
#define VHU_MEM_MAX_BYTES (1ull << 42)
/* Mappings one guard may own at a time (tables still held by requests in
 * flight included), so that one front-end cannot fill the registry. */
#define VHU_MEM_GUARD_MAPS 256

/*
 * One device's fault notification: 'faulted' is set and 'efd' (an eventfd,
 * non-blocking) is written by the SIGBUS handler when a mapping of a table
 * created with this guard faulted.  Refcounted: the device and every
 * mapping hold a reference.
 */
struct vhu_mem_guard {
    atomic_uint refs;
    atomic_bool faulted;
    atomic_uint nmaps; /* registered mappings */
    int efd;
};

/* A new guard (refs = 1), NULL on failure (errno set). */
struct vhu_mem_guard *vhu_mem_guard_new(void);
void vhu_mem_guard_put(struct vhu_mem_guard *g);

struct vhu_mem_region {
    struct vhu_mem_desc d;
    uint8_t *hva;        /* d.gpa maps here (inside map) */
    struct vhu_map *map; /* one ref held by the table */
};

struct vhu_mem {
    atomic_uint refs;
    struct vhu_mem_guard *guard; /* ref, may be NULL (tests) */
    int nregions;
    struct vhu_mem_region r[VHU_MEM_MAX_SLOTS];
};

/* An empty table (refs = 1); NULL on allocation failure. */
struct vhu_mem *vhu_mem_new(void);
/* The same, whose mappings report faults to 'g' (a reference is taken). */
struct vhu_mem *vhu_mem_new_guarded(struct vhu_mem_guard *g);
/* A copy of 'm' sharing its mappings (refs = 1); NULL on failure. */
struct vhu_mem *vhu_mem_clone(const struct vhu_mem *m);
/* Reference counting; the last put unmaps what no other table uses. */
struct vhu_mem *vhu_mem_get(struct vhu_mem *m);
void vhu_mem_put(struct vhu_mem *m);

/*
 * Map 'fd' and add the region 'd' to an unpublished table.  Checks: size
 * non-zero, no wrap-around of gpa/uaddr/offset ranges, no overlap with an
 * existing region (in guest-physical or front-end space), offset + size
 * within the file, the file a regular file on tmpfs or hugetlbfs (memory:
 * a page fault on it cannot wait for a process, as on FUSE or NFS), the
 * table's total size within VHU_MEM_MAX_BYTES, a free slot (in the table,
 * the guard and the SIGBUS registry).  Only the pages holding the region
 * are mapped.  The fd is not consumed (the caller closes it; the mapping
 * stays).  Returns 0 or -errno (-EINVAL, -ENOSPC, ...).
 */
int vhu_mem_add(struct vhu_mem *m, const struct vhu_mem_desc *d, int fd);
/* Remove the region matching d->gpa, d->size (and uaddr); -ENOENT if none. */
int vhu_mem_remove(struct vhu_mem *m, const struct vhu_mem_desc *d);

/*
 * Translate the guest-physical range [gpa, gpa + len) into at most 'max'
 * iovecs appended at iov[*n] (a range crossing regions is split).  Returns
 * 0, -EFAULT when some byte is not guest memory (or the range wraps),
 * -E2BIG when more than 'max' iovecs would be needed.  len 0 adds nothing.
 */
int vhu_mem_gpa_iov(const struct vhu_mem *m, uint64_t gpa, uint64_t len,
                    struct iovec *iov, int max, int *n);
/* A pointer to [gpa, gpa + len) if it lies within one region, else NULL. */
void *vhu_mem_gpa_ptr(const struct vhu_mem *m, uint64_t gpa, uint64_t len);
/* Same for a front-end virtual address range (ring addresses). */
void *vhu_mem_uaddr_ptr(const struct vhu_mem *m, uint64_t uaddr, uint64_t len);

#endif
