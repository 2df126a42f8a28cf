/* SPDX-License-Identifier: MIT */
/*
 * The fid table.
 *
 * The table holds one reference to each fid; every request that uses a fid
 * holds another.  Tclunk unlinks the fid at once, so the client may reuse
 * its number immediately, while requests still running on the old fid
 * finish on their own references.  The object (its node, open handle and
 * user) is released on the last put.  The table lock is a leaf lock.
 */
#include "server/srv_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

/* Knuth's multiplicative hash: 2^32 divided by the golden ratio. */
#define FID_HASH_MULT 2654435761u
/* The first buffer of an xattr value being written (Txattrcreate). */
#define FID_XBUF_MIN 4096

static unsigned
fid_hash(const struct fid_table *t, uint32_t num)
{
    return (uint32_t)(num * FID_HASH_MULT) >> (32 - t->shift);
}

int
fid_table_init(struct fid_table *t, unsigned max, _Atomic long *total,
               long max_total, struct be_budget *mem, const char *peer)
{
    memset(t, 0, sizeof(*t));
    t->shift = 8;
    t->bucket = calloc((size_t)1 << t->shift, sizeof(struct fid *));
    if (t->bucket == NULL) {
        return -ENOMEM;
    }
    t->max = max;
    t->total = total;
    t->max_total = max_total;
    t->mem = mem;
    t->peer = peer;
    pthread_mutex_init(&t->lock, NULL);
    return 0;
}

void
fid_table_fini(struct fid_table *t)
{
    fid_clunk_all(t);
    free(t->bucket);
    t->bucket = NULL;
    pthread_mutex_destroy(&t->lock);
}

/*
 * Keep chains short as a session's fids grow (a guest with cache=loose
 * holds one per cached inode: hundreds of thousands): double the buckets
 * when there are two fids per bucket.  Table lock held; without memory
 * the table just stays as it is.
 */
static void
fid_table_grow(struct fid_table *t)
{
    unsigned nshift = t->shift + 1;
    size_t n = (size_t)1 << t->shift;
    struct fid **nb;

    if (t->count < 2 * n || nshift > 24) {
        return;
    }
    nb = calloc((size_t)1 << nshift, sizeof(struct fid *));
    if (nb == NULL) {
        return;
    }
    t->shift = nshift;
    for (size_t i = 0; i < n; i++) {
        struct fid *f;

        while ((f = t->bucket[i]) != NULL) {
            unsigned b = fid_hash(t, f->num);

            t->bucket[i] = f->next;
            f->next = nb[b];
            nb[b] = f;
        }
    }
    free(t->bucket);
    t->bucket = nb;
}

struct suser *
suser_new(struct backend *be, struct be_user *bu)
{
    struct suser *u = calloc(1, sizeof(*u));

    if (u == NULL) {
        return NULL;
    }
    atomic_init(&u->refs, 1);
    u->be = be;
    u->bu = bu;
    return u;
}

void
suser_ref(struct suser *u)
{
    atomic_fetch_add_explicit(&u->refs, 1, memory_order_relaxed);
}

void
suser_put(struct suser *u)
{
    if (u == NULL ||
        atomic_fetch_sub_explicit(&u->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    if (u->bu != NULL && u->be->ops->user_put != NULL) {
        u->be->ops->user_put(u->be, u->bu);
    }
    free(u);
}

/*
 * Takes over the caller's references to 'user' and 'node' on success
 * (on failure the caller keeps them).
 */
struct fid *
fid_new(struct fid_table *t, uint32_t num, const struct p9s_export *ex,
        struct suser *user, struct be_node *node, int *err)
{
    struct fid *f;
    struct fid *e;
    unsigned b;

    if (num == P9_NOFID) {
        *err = -EINVAL;
        return NULL;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    atomic_init(&f->refs, 2);
    f->num = num;
    f->ex = ex;
    f->be = ex->be;
    f->user = user;
    f->node = node;
    f->kind = FID_NONE;
    f->mem = t->mem;
    pthread_mutex_init(&f->lock, NULL);

    pthread_mutex_lock(&t->lock);
    b = fid_hash(t, num);
    for (e = t->bucket[b]; e != NULL; e = e->next) {
        if (e->num == num) {
            pthread_mutex_unlock(&t->lock);
            pthread_mutex_destroy(&f->lock);
            free(f);
            *err = -EEXIST;
            return NULL;
        }
    }
    if (t->count >= t->max) {
        pthread_mutex_unlock(&t->lock);
        pthread_mutex_destroy(&f->lock);
        free(f);
        log_peer("%s: fid limit of the session reached (%u; --max-fids), "
                 "answering EMFILE",
                 t->peer, t->max);
        *err = -EMFILE;
        return NULL;
    }
    if (atomic_fetch_add_explicit(t->total, 1, memory_order_relaxed) >=
        t->max_total) {
        atomic_fetch_sub_explicit(t->total, 1, memory_order_relaxed);
        pthread_mutex_unlock(&t->lock);
        pthread_mutex_destroy(&f->lock);
        free(f);
        log_peer("%s: fid limit of the server reached (%lu; "
                 "--max-fids-total), answering ENFILE",
                 t->peer, (unsigned long)t->max_total);
        *err = -ENFILE;
        return NULL;
    }
    fid_table_grow(t);
    b = fid_hash(t, num);
    f->next = t->bucket[b];
    t->bucket[b] = f;
    t->count++;
    pthread_mutex_unlock(&t->lock);
    return f;
}

int
fid_take_ref(struct fid *f, unsigned flags, struct fid_use *u)
{
    bool xattr;
    int err = 0;

    memset(u, 0, sizeof(*u));
    pthread_mutex_lock(&f->lock);
    u->kind = f->kind;
    xattr = u->kind == FID_XATTR_READ || u->kind == FID_XATTR_WRITE;
    if ((flags & FT_NOXATTR) && xattr) {
        err = -EINVAL;
    } else if ((flags & FT_UNOPENED) && u->kind != FID_NONE) {
        err = -EBUSY;
    } else if ((flags & FT_OPEN) && u->kind != FID_FILE && u->kind != FID_DIR) {
        err = -EBADF;
    } else {
        u->h = f->h;
        if (flags & FT_NODE) {
            u->node = f->node;
            f->be->ops->node_get(f->be, u->node);
        }
    }
    pthread_mutex_unlock(&f->lock);
    if (err == 0 && f->be->ops->user_enter != NULL) {
        err = f->be->ops->user_enter(f->be, f->user->bu);
    }
    u->f = f;
    if (err < 0) {
        fid_drop(u);
    }
    return err;
}

int
fid_take(struct p9s_req *r, uint32_t num, unsigned flags, struct fid_use *u)
{
    struct fid *f = fid_get(&r->conn->fids, num);

    if (f == NULL) {
        memset(u, 0, sizeof(*u));
        return -EBADF;
    }
    return fid_take_ref(f, flags, u);
}

void
fid_drop(struct fid_use *u)
{
    if (u->node != NULL) {
        u->f->be->ops->node_put(u->f->be, u->node);
        u->node = NULL;
    }
    if (u->f != NULL) {
        fid_put(u->f);
        u->f = NULL;
    }
}

struct fid *
fid_get(struct fid_table *t, uint32_t num)
{
    struct fid *e;

    pthread_mutex_lock(&t->lock);
    for (e = t->bucket[fid_hash(t, num)]; e != NULL; e = e->next) {
        if (e->num == num) {
            atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return e;
}

void
fid_put(struct fid *f)
{
    const struct be_ops *ops;

    if (f == NULL ||
        atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    ops = f->be->ops;
    if (f->h != NULL) {
        ops->close(f->be, f->h);
    }
    if (f->node != NULL) {
        ops->node_put(f->be, f->node);
    }
    suser_put(f->user);
    free(f->xname);
    free(f->xbuf);
    be_budget_uncharge(f->mem, f->xcap);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

struct fid *
fid_unlink(struct fid_table *t, uint32_t num)
{
    struct fid **pp;
    struct fid *e = NULL;

    pthread_mutex_lock(&t->lock);
    for (pp = &t->bucket[fid_hash(t, num)]; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->num == num) {
            e = *pp;
            *pp = e->next;
            e->next = NULL;
            t->count--;
            atomic_fetch_sub_explicit(t->total, 1, memory_order_relaxed);
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return e;
}

void
fid_clunk_all(struct fid_table *t)
{
    struct fid *list = NULL;
    struct fid *f;

    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < (size_t)1 << t->shift; i++) {
        while ((f = t->bucket[i]) != NULL) {
            t->bucket[i] = f->next;
            f->next = list;
            list = f;
        }
    }
    atomic_fetch_sub_explicit(t->total, t->count, memory_order_relaxed);
    t->count = 0;
    pthread_mutex_unlock(&t->lock);
    while ((f = list) != NULL) {
        list = f->next;
        f->next = NULL;
        (void)fid_xattr_commit(f); /* no-op unless a write-xattr fid */
        fid_put(f);
    }
}

int
fid_xattr_commit(struct fid *f)
{
    const struct be_ops *ops = f->be->ops;
    int err;

    pthread_mutex_lock(&f->lock);
    if (f->kind != FID_XATTR_WRITE) {
        pthread_mutex_unlock(&f->lock);
        return 0;
    }
    f->kind = FID_NONE; /* commit once */
    pthread_mutex_unlock(&f->lock);
    if (f->xfill != f->xsize) {
        return -EINVAL;
    }
    if (ops->user_enter != NULL) {
        err = ops->user_enter(f->be, f->user->bu);
        if (err < 0) {
            return err; /* never act as someone else */
        }
    }
    if (f->xsize == 0 && (f->xflags & P9_XATTR_CREATE) == 0) {
        /* Linux removexattr: Txattrcreate with size 0, then Tclunk */
        if (ops->removexattr == NULL) {
            return -ENOSYS;
        }
        err = ops->removexattr(f->be, f->node, f->xname);
        if (err == -ENODATA && (f->xflags & P9_XATTR_REPLACE) == 0) {
            err = 0;
        }
        return err;
    }
    if (ops->setxattr == NULL) {
        return -ENOSYS;
    }
    /* an empty value has no buffer (it grows only as data arrives) */
    return ops->setxattr(f->be, f->node, f->xname,
                         f->xbuf != NULL ? (const void *)f->xbuf : "", f->xsize,
                         f->xflags);
}

int
fid_xbuf_reserve(struct fid *f, uint64_t want)
{
    uint64_t cap = f->xcap;
    uint8_t *nb;

    if (want <= cap) {
        return 0;
    }
    /* grow geometrically as the value arrives, never past its size */
    cap = cap * 2 > want ? cap * 2 : want;
    if (cap < FID_XBUF_MIN) {
        cap = FID_XBUF_MIN;
    }
    if (cap > f->xsize) {
        cap = f->xsize;
    }
    if (!be_budget_charge(f->mem, cap - f->xcap)) {
        return -ENOMEM;
    }
    nb = realloc(f->xbuf, (size_t)cap);
    if (nb == NULL) {
        be_budget_uncharge(f->mem, cap - f->xcap);
        return -ENOMEM;
    }
    memset(nb + f->xcap, 0, (size_t)(cap - f->xcap));
    f->xbuf = nb;
    f->xcap = cap;
    return 0;
}
