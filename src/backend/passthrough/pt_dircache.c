/* SPDX-License-Identifier: MIT */
/*
 * The listing cache: what getdents64 returned for a whole directory, from
 * offset 0 to the end, kept per export so that the next listing of an
 * unchanged directory costs one fstat instead of reading the directory
 * again (on tmpfs that is most of a listing's CPU: bench/README.md).
 *
 * A snapshot is keyed by the directory's (dev, ino) and valid while the
 * directory's ctime, mtime and size are what they were before it was
 * read.  Every change of a directory's entries (create, unlink, rename,
 * link, mkdir, rmdir, by anyone: a client, the host, another guest)
 * updates its ctime and mtime.  Timestamps are coarse (a clock tick), so
 * two changes within one tick could leave them equal: a directory is
 * only cached when its ctime is older than the start of the read by more
 * than PT_DC_RACY_NS (a change after the read began stamps a later
 * time), and when it did not change while it was read.  And only on
 * file systems known to keep those timestamps (tmpfs, ext2/3/4, xfs,
 * btrfs): not on network or FUSE mounts, whose times may be the server's
 * or cached.
 *
 * Memory: at most pb->dc_max bytes of snapshots in the cache (LRU), one
 * snapshot at most PT_DC_ONE_MAX (or a quarter of dc_max), at most
 * PT_DC_MAX_ENTRIES of them.  A larger directory is remembered as such
 * (until it changes) and read the usual way.
 * A handle keeps a reference while its listing is paused mid-snapshot,
 * charged to its session's memory budget like read-ahead (pt_dir.c).
 */
#include "pt.h"

#include <errno.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

#define PT_DC_BUCKETS 1024u
#define PT_DC_MAX_ENTRIES 4096u
#define PT_DC_RACY_NS 100000000LL /* 100 ms: many clock ticks */
#define PT_DC_ONE_MAX (1024u * 1024u)
#define PT_DC_ROOM 4096u /* at least this much room for each getdents64 */

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

struct pt_dirsnap {
    atomic_uint refs;         /* the cache's one, and each handle's */
    struct pt_dirsnap *hnext; /* bucket chain (dc_lock) */
    struct pt_dirsnap *lprev; /* LRU, most recent at dc_lru_head->lnext */
    struct pt_dirsnap *lnext;
    dev_t dev;
    ino_t ino;
    struct timespec ctim;
    struct timespec mtim;
    off_t size;
    char *data; /* getdents64 records, len bytes, offset 0 to the end;
                   NULL: the directory is too large to keep */
    size_t len;
};

int
pt_dircache_init(struct pt_backend *pb, long max)
{
    pb->dc_max = max > 0 ? (size_t)max : 0;
    pb->dc = NULL;
    pb->dc_bytes = 0;
    pb->dc_count = 0;
    if (pb->dc_max == 0) {
        return 0;
    }
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    pb->dc = calloc(PT_DC_BUCKETS, sizeof(*pb->dc));
    if (pb->dc == NULL) {
        return -ENOMEM;
    }
    pb->dc_lru_head = calloc(1, sizeof(*pb->dc_lru_head));
    if (pb->dc_lru_head == NULL) {
        free(pb->dc);
        pb->dc = NULL;
        return -ENOMEM;
    }
    pb->dc_lru_head->lnext = pb->dc_lru_head->lprev = pb->dc_lru_head;
    atomic_init(&pb->dc_good_dev, (dev_t)-1);
    atomic_init(&pb->dc_bad_dev, (dev_t)-1);
    if (pthread_mutex_init(&pb->dc_lock, NULL) != 0) {
        free(pb->dc_lru_head);
        free(pb->dc);
        pb->dc = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void
snap_free(struct pt_dirsnap *s)
{
    free(s->data);
    free(s);
}

void
pt_dirsnap_put(struct pt_dirsnap *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) {
        snap_free(s);
    }
}

const char *
pt_dirsnap_data(const struct pt_dirsnap *s, long *len)
{
    *len = (long)s->len;
    return s->data;
}

static size_t
dc_bucket(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev;

    return (size_t)(h >> 32) & (PT_DC_BUCKETS - 1);
}

void
pt_dircache_log_stats(struct pt_backend *pb)
{
    if (pb->dc == NULL) {
        log_info("stats: passthrough listing cache: off");
        return;
    }
    pthread_mutex_lock(&pb->dc_lock);
    log_info("stats: passthrough listing cache: %lu listings served from it, "
             "%lu directories read whole; %zu listings kept, %zu of %zu bytes",
             atomic_load(&pb->st_dc_hits), atomic_load(&pb->st_dc_fills),
             pb->dc_count, pb->dc_bytes, pb->dc_max);
    pthread_mutex_unlock(&pb->dc_lock);
}

/* Take s out of the table and the LRU onto the list *gone, whose
 * references (the cache's) the caller drops with dc_put_gone after
 * unlocking.  Caller holds dc_lock. */
static void
dc_unlink(struct pt_backend *pb, struct pt_dirsnap *s, struct pt_dirsnap **gone)
{
    struct pt_dirsnap **pp = &pb->dc[dc_bucket(s->dev, s->ino)];

    while (*pp != s) {
        pp = &(*pp)->hnext;
    }
    *pp = s->hnext;
    s->lprev->lnext = s->lnext;
    s->lnext->lprev = s->lprev;
    pb->dc_bytes -= s->len;
    pb->dc_count--;
    s->hnext = *gone;
    *gone = s;
}

/* The entry for (dev, ino), or NULL.  Caller holds dc_lock. */
static struct pt_dirsnap *
dc_find(struct pt_backend *pb, dev_t dev, ino_t ino)
{
    struct pt_dirsnap *s = pb->dc[dc_bucket(dev, ino)];

    while (s != NULL && (s->dev != dev || s->ino != ino)) {
        s = s->hnext;
    }
    return s;
}

/* Put s (not on the LRU) at its most recently used end.  Caller holds
 * dc_lock. */
static void
dc_lru_front(struct pt_backend *pb, struct pt_dirsnap *s)
{
    s->lnext = pb->dc_lru_head->lnext;
    s->lprev = pb->dc_lru_head;
    s->lnext->lprev = s;
    pb->dc_lru_head->lnext = s;
}

static void
dc_put_gone(struct pt_dirsnap *gone)
{
    while (gone != NULL) {
        /* distinct entries, each taken out of the LRU once (dc_unlink) */
        /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        struct pt_dirsnap *next = gone->hnext;

        pt_dirsnap_put(gone);
        gone = next;
    }
}

void
pt_dircache_free(struct pt_backend *pb)
{
    if (pb->dc == NULL) {
        return;
    }
    struct pt_dirsnap *gone = NULL;

    while (pb->dc_lru_head->lnext != pb->dc_lru_head) {
        dc_unlink(pb, pb->dc_lru_head->lnext, &gone);
    }
    dc_put_gone(gone);
    free(pb->dc);
    free(pb->dc_lru_head);
    pb->dc = NULL;
    pthread_mutex_destroy(&pb->dc_lock);
}

static bool
same_times(const struct pt_dirsnap *s, const struct stat *st)
{
    return s->ctim.tv_sec == st->st_ctim.tv_sec &&
           s->ctim.tv_nsec == st->st_ctim.tv_nsec &&
           s->mtim.tv_sec == st->st_mtim.tv_sec &&
           s->mtim.tv_nsec == st->st_mtim.tv_nsec && s->size == st->st_size;
}

int
pt_dircache_get(struct pt_backend *pb, const struct stat *st,
                struct pt_dirsnap **out)
{
    struct pt_dirsnap *gone = NULL;
    struct pt_dirsnap *s;
    bool big;

    *out = NULL;
    if (pb->dc == NULL) {
        return -1;
    }
    if (st->st_dev ==
        atomic_load_explicit(&pb->dc_bad_dev, memory_order_relaxed)) {
        return -1; /* not a file system whose times we trust */
    }
    pthread_mutex_lock(&pb->dc_lock);
    s = dc_find(pb, st->st_dev, st->st_ino);
    if (s != NULL && !same_times(s, st)) {
        dc_unlink(pb, s, &gone); /* the directory changed: gone for good */
        s = NULL;
    }
    big = s != NULL && s->data == NULL;
    if (s != NULL && !big) {
        /* most recently used first */
        s->lprev->lnext = s->lnext;
        s->lnext->lprev = s->lprev;
        dc_lru_front(pb, s);
        atomic_fetch_add(&s->refs, 1);
        *out = s;
    }
    pthread_mutex_unlock(&pb->dc_lock);
    dc_put_gone(gone);
    if (*out != NULL) {
        atomic_fetch_add_explicit(&pb->st_dc_hits, 1, memory_order_relaxed);
        return 1;
    }
    return big ? -1 : 0;
}

/* Does the file system under fd keep directory times we can trust?  The
 * last device found wanting is remembered (pt_dircache_get). */
static bool
dc_fs_ok(struct pt_backend *pb, int fd, dev_t dev)
{
    struct statfs sf;

    if (dev == atomic_load_explicit(&pb->dc_good_dev, memory_order_relaxed)) {
        return true;
    }
    if (fstatfs(fd, &sf) < 0) {
        return false;
    }
    switch ((unsigned long)sf.f_type) {
    case TMPFS_MAGIC:
    case EXT4_SUPER_MAGIC: /* also ext2 and ext3 */
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
        atomic_store_explicit(&pb->dc_good_dev, dev, memory_order_relaxed);
        return true;
    default:
        atomic_store_explicit(&pb->dc_bad_dev, dev, memory_order_relaxed);
        return false;
    }
}

/* Keep s (one more reference, taken here). */
static void
dc_insert(struct pt_backend *pb, struct pt_dirsnap *s)
{
    size_t b = dc_bucket(s->dev, s->ino);
    struct pt_dirsnap *gone = NULL;
    struct pt_dirsnap *old;

    pthread_mutex_lock(&pb->dc_lock);
    old = dc_find(pb, s->dev, s->ino);
    if (old != NULL) {
        dc_unlink(pb, old, &gone);
    }
    while (pb->dc_count > 0 && (pb->dc_bytes + s->len > pb->dc_max ||
                                pb->dc_count >= PT_DC_MAX_ENTRIES)) {
        /* least recently used */
        dc_unlink(pb, pb->dc_lru_head->lprev, &gone);
    }
    atomic_fetch_add(&s->refs, 1);
    s->hnext = pb->dc[b];
    pb->dc[b] = s;
    dc_lru_front(pb, s);
    pb->dc_bytes += s->len;
    pb->dc_count++;
    pthread_mutex_unlock(&pb->dc_lock);
    dc_put_gone(gone);
}

/*
 * Read the directory open on fd (st: its fstat from before) from offset 0
 * to the end into a new snapshot (one reference, the caller's), and cache
 * it unless the directory changed while it was read.  NULL when it could
 * not be kept anyway (changed within PT_DC_RACY_NS, or on a file system
 * whose times we do not trust), when it is larger than a snapshot may be,
 * or on error: the caller then reads it the usual way (and must seek, the
 * position of fd is undefined).
 */
struct pt_dirsnap *
pt_dircache_fill(struct pt_backend *pb, int fd, const struct stat *st,
                 struct be_budget *mem)
{
    size_t one_max =
        pb->dc_max / 4 < PT_DC_ONE_MAX ? pb->dc_max / 4 : PT_DC_ONE_MAX;
    struct timespec now;
    struct pt_dirsnap *s;
    struct stat st2;
    size_t cap = 0;
    bool racy;

    if (pb->dc == NULL || !dc_fs_ok(pb, fd, st->st_dev)) {
        return NULL;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    racy = (long long)(now.tv_sec - st->st_ctim.tv_sec) * 1000000000LL +
               (now.tv_nsec - st->st_ctim.tv_nsec) <
           PT_DC_RACY_NS;
    if (racy) {
        /* it could not be kept: read it the usual way, as far as the
         * client asks (a directory being written to stays uncached) */
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->dev = st->st_dev;
    s->ino = st->st_ino;
    s->ctim = st->st_ctim;
    s->mtim = st->st_mtim;
    s->size = st->st_size;
    if (lseek(fd, 0, SEEK_SET) < 0) {
        goto fail;
    }
    for (;;) {
        long n;

        if (cap - s->len < PT_DC_ROOM) {
            size_t ncap = cap == 0 ? 16384 : cap * 2;
            char *nd;

            if (ncap > one_max + PT_DC_ROOM) {
                ncap = one_max + PT_DC_ROOM;
            }
            if (ncap - s->len < PT_DC_ROOM) {
                goto too_big;
            }
            /* the session pays for the buffer while it fills */
            if (!be_budget_charge(mem, ncap - cap)) {
                goto fail;
            }
            nd = realloc(s->data, ncap);
            if (nd == NULL) {
                be_budget_uncharge(mem, ncap - cap);
                goto fail;
            }
            s->data = nd;
            cap = ncap;
        }
        n = syscall(SYS_getdents64, fd, s->data + s->len, cap - s->len);
        if (n < 0) {
            goto fail;
        }
        if (n == 0) {
            break;
        }
        s->len += (size_t)n;
        if (s->len > one_max) {
            goto too_big;
        }
    }
    atomic_fetch_add_explicit(&pb->st_dc_fills, 1, memory_order_relaxed);
    if (fstat(fd, &st2) == 0 && same_times(s, &st2) && st2.st_dev == s->dev &&
        st2.st_ino == s->ino) {
        dc_insert(pb, s);
    }
    be_budget_uncharge(mem, cap - s->len); /* the length stays charged */
    return s;

too_big:
    /* remember that, until the directory changes */
    free(s->data);
    s->data = NULL;
    s->len = 0;
    dc_insert(pb, s);
fail:
    be_budget_uncharge(mem, cap);
    pt_dirsnap_put(s);
    return NULL;
}
