/* SPDX-License-Identifier: MIT */
/*
 * Qids: type from the mode, version from the mtime, path from (dev, ino).
 *
 * With remap_devs, each host device seen gets a small index (the export
 * root's device is index 0) and qid.path = index << 48 | ino, so files on
 * different host mounts under the export never share a qid.path.  An inode
 * number that does not fit in 48 bits, or a device beyond index 0xFFFE,
 * goes through a (dev, ino) -> counter map instead and gets index 0xFFFF.
 * Map entries are never evicted (bounded by the number of such objects
 * the guest has seen).  Without remap_devs, qid.path is the inode number.
 */
#include "pt.h"

#include "backend/common/becommon.h"

#include <errno.h>
#include <stdlib.h>

struct pt_qidmap_ent {
    struct pt_qidmap_ent *next;
    dev_t dev;
    ino_t ino;
    uint64_t value;
};

#define PT_QIDMAP_INIT 64

int
pt_qid_init(struct pt_backend *pb)
{
    int err;

    err = pthread_mutex_init(&pb->qid_lock, NULL);
    if (err != 0) {
        return -err;
    }
    pb->devs = NULL;
    pb->ndevs = 0;
    pb->devs_cap = 0;
    pb->map = NULL;
    pb->map_size = 0;
    pb->map_count = 0;
    pb->map_next = 1;
    /* The root's device is index 0, so plain inode numbers show through
     * (and pt_qid_path answers them without the lock). */
    pb->devs = malloc(8 * sizeof(*pb->devs));
    if (pb->devs == NULL) {
        return -ENOMEM;
    }
    pb->devs_cap = 8;
    pb->devs[0] = pb->root->dev;
    pb->ndevs = 1;
    return 0;
}

void
pt_qid_fini(struct pt_backend *pb)
{
    for (size_t i = 0; i < pb->map_size; i++) {
        struct pt_qidmap_ent *e = pb->map[i];

        while (e != NULL) {
            struct pt_qidmap_ent *next = e->next;

            free(e);
            e = next;
        }
    }
    free(pb->map);
    free(pb->devs);
    pthread_mutex_destroy(&pb->qid_lock);
}

static size_t
pt_qidmap_hash(dev_t dev, ino_t ino, size_t size)
{
    uint64_t h = (uint64_t)ino * UINT64_C(0x9E3779B97F4A7C15);

    h ^= (uint64_t)dev * UINT64_C(0xC2B2AE3D27D4EB4F);
    h ^= h >> 29;
    return (size_t)(h & (size - 1));
}

/* Grow the hash table; on allocation failure keep the old one. */
static void
pt_qidmap_grow(struct pt_backend *pb)
{
    size_t nsize = pb->map_size ? pb->map_size * 2 : PT_QIDMAP_INIT;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    struct pt_qidmap_ent **nmap = calloc(nsize, sizeof(*nmap));

    if (nmap == NULL) {
        return;
    }
    for (size_t i = 0; i < pb->map_size; i++) {
        struct pt_qidmap_ent *e = pb->map[i];

        while (e != NULL) {
            struct pt_qidmap_ent *next = e->next;
            size_t b = pt_qidmap_hash(e->dev, e->ino, nsize);

            e->next = nmap[b];
            nmap[b] = e;
            e = next;
        }
    }
    free(pb->map);
    pb->map = nmap;
    pb->map_size = nsize;
}

/* Caller holds qid_lock. */
static uint64_t
pt_qidmap_lookup(struct pt_backend *pb, dev_t dev, ino_t ino)
{
    struct pt_qidmap_ent *e;
    size_t b;

    if (pb->map_count >= pb->map_size) {
        pt_qidmap_grow(pb);
    }
    if (pb->map_size == 0) {
        /* Out of memory and no table: degrade to a folded value. */
        return (uint64_t)PT_QID_MAP_INDEX << PT_QID_DEV_SHIFT |
               (((uint64_t)ino ^ ((uint64_t)ino >> 48)) & PT_QID_INO_MASK);
    }
    b = pt_qidmap_hash(dev, ino, pb->map_size);
    for (e = pb->map[b]; e != NULL; e = e->next) {
        if (e->dev == dev && e->ino == ino) {
            return e->value;
        }
    }
    e = malloc(sizeof(*e));
    if (e == NULL) {
        return (uint64_t)PT_QID_MAP_INDEX << PT_QID_DEV_SHIFT |
               (((uint64_t)ino ^ ((uint64_t)ino >> 48)) & PT_QID_INO_MASK);
    }
    e->dev = dev;
    e->ino = ino;
    e->value = (uint64_t)PT_QID_MAP_INDEX << PT_QID_DEV_SHIFT |
               (pb->map_next++ & PT_QID_INO_MASK);
    e->next = pb->map[b];
    pb->map[b] = e;
    pb->map_count++;
    return e->value;
}

uint64_t
pt_qid_path(struct pt_backend *pb, dev_t dev, ino_t ino)
{
    uint64_t path;
    size_t idx;

    if (!pb->remap_devs) {
        return (uint64_t)ino;
    }
    /* the common case needs no lock: the root's device has index 0 */
    if (pb->root != NULL && dev == pb->root->dev &&
        ((uint64_t)ino & ~PT_QID_INO_MASK) == 0) {
        return (uint64_t)ino;
    }
    pthread_mutex_lock(&pb->qid_lock);
    for (idx = 0; idx < pb->ndevs; idx++) {
        if (pb->devs[idx] == dev) {
            break;
        }
    }
    if (idx == pb->ndevs && idx < PT_QID_MAP_INDEX) {
        if (pb->ndevs == pb->devs_cap) {
            size_t ncap = pb->devs_cap ? pb->devs_cap * 2 : 8;
            dev_t *nd = realloc(pb->devs, ncap * sizeof(*nd));

            if (nd != NULL) {
                pb->devs = nd;
                pb->devs_cap = ncap;
            }
        }
        if (pb->ndevs < pb->devs_cap) {
            pb->devs[pb->ndevs++] = dev;
        } else {
            idx = PT_QID_MAP_INDEX;
        }
    }
    if (idx < PT_QID_MAP_INDEX && ((uint64_t)ino & ~PT_QID_INO_MASK) == 0) {
        path = (uint64_t)idx << PT_QID_DEV_SHIFT | (uint64_t)ino;
    } else {
        path = pt_qidmap_lookup(pb, dev, ino);
    }
    pthread_mutex_unlock(&pb->qid_lock);
    return path;
}

static uint8_t
pt_mode_to_qtype(mode_t mode)
{
    if (S_ISDIR(mode)) {
        return P9_QTDIR;
    }
    if (S_ISLNK(mode)) {
        return P9_QTSYMLINK;
    }
    return P9_QTFILE;
}

void
pt_stat_to_qid(struct pt_backend *pb, const struct stat *st, struct p9_qid *qid)
{
    qid->type = pt_mode_to_qtype(st->st_mode);
    /* Changes whenever the contents (mtime) change; 32 bits on the wire. */
    qid->version =
        becommon_qid_version(st->st_mtim.tv_sec, (uint32_t)st->st_mtim.tv_nsec);
    qid->path = pt_qid_path(pb, st->st_dev, st->st_ino);
}

int
pt_qid(struct backend *be, struct be_node *n, struct p9_qid *qid)
{
    struct stat st;
    int err;

    err = pt_fstat(n->fd, &st);
    if (err < 0) {
        return err;
    }
    pt_stat_to_qid(pt_be(be), &st, qid);
    return 0;
}
