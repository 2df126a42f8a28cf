/* SPDX-License-Identifier: MIT */
/*
 * The synthetic (in-memory) backend.  See synth.h for what it models.
 *
 * One mutex guards the whole tree: ops run on worker threads concurrently,
 * and a test backend gains nothing from finer locking.  The readdir
 * callback runs with the lock held (it only encodes into the reply).
 *
 * Lifetime: a node lives while a directory entry names it ('links') or
 * the core holds a reference ('refs': walks, fids, open handles).  It is
 * freed when both reach zero.  A removed directory is always empty
 * (rmdir and rename-over check), so freeing never orphans a subtree, and
 * nothing can be created in it again (ENOENT, like Linux).
 *
 * Directory offsets: every entry gets a cookie from its directory's
 * counter when it is linked (3, 4, ...; 1 and 2 are "." and ".."), and
 * entries stay sorted by cookie.  Readdir from offset o returns the
 * entries with cookie > o, so removing or adding entries never makes a
 * resumed listing skip or repeat a survivor.
 */
#include "backend/synth/synth.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define SY_DEF_BYTES (64u * 1024u * 1024u)
#define SY_DEF_NODES 65536u
#define SY_NAME_MAX 255
#define SY_XNAME_MAX 255
#define SY_XVALUE_MAX 65536
#define SY_FILE_MAX (UINT64_C(1) << 40) /* offsets beyond: EFBIG */
#define SY_FIRST_COOKIE 3
#define SY_STATFS_MAGIC 0x53594e54u /* "SYNT" */
#define SY_BLKSIZE 4096   /* st_blksize, f_bsize, a directory's size */
#define SY_STAT_BLOCK 512 /* st_blocks counts units of 512 bytes */

struct sy_xattr {
    struct sy_xattr *next;
    char *name;
    uint8_t *val;
    size_t len;
};

struct sy_lock {
    struct sy_lock *next;
    const struct be_handle *owner; /* OFD-like: the open handle owns it */
    uint8_t type;
    uint64_t start, end; /* inclusive */
    uint32_t proc_id;
};

struct sy_dirent {
    char *name;
    struct be_node *node;
    uint64_t cookie;
};

struct be_node {
    unsigned refs;  /* references held by the core */
    unsigned links; /* directory entries naming it (root: 1) */
    uint64_t ino;
    uint32_t version;
    uint32_t mode, uid, gid;
    uint64_t rdev;
    uint64_t atime, mtime, ctime, btime; /* logical clock ticks */
    /* directories: the containing directory (NULL once removed); other
     * types: a hint where one of the links is */
    struct be_node *parent;
    struct sy_dirent *ents; /* directories, sorted by cookie */
    size_t nents, cap;
    uint64_t next_cookie;
    unsigned nsubdirs;
    uint8_t *data; /* regular files */
    uint64_t size;
    char *target; /* symlinks */
    struct sy_xattr *xattrs;
    struct sy_lock *locks;
    struct be_node *all_prev, *all_next;
};

struct be_handle {
    struct be_node *n; /* one ref */
    uint32_t flags;
};

struct be_user {
    uint32_t uid;
};

struct sy_backend {
    struct backend be;
    pthread_mutex_t lock;
    struct be_node *root;
    struct be_node *all; /* every allocated node */
    size_t max_bytes, bytes;
    unsigned max_nodes, nodes;
    uint64_t next_ino;
    uint64_t clock;
    long node_refs, handles, users;
    bool readonly;
};

static _Thread_local uint32_t sy_cur_uid;

static struct sy_backend *
sy(struct backend *be)
{
    return be->priv;
}

/* ---- accounting ----------------------------------------------------------- */

static int
sy_charge(struct sy_backend *sb, size_t n)
{
    if (n > sb->max_bytes - sb->bytes) {
        return -ENOSPC;
    }
    sb->bytes += n;
    return 0;
}

static void
sy_uncharge(struct sy_backend *sb, size_t n)
{
    sb->bytes -= n;
}

static uint64_t
sy_tick(struct sy_backend *sb)
{
    return ++sb->clock;
}

static bool
sy_is_dir(const struct be_node *n)
{
    return S_ISDIR(n->mode);
}

/* ---- nodes ------------------------------------------------------------------ */

static struct be_node *
sy_node_alloc(struct sy_backend *sb, uint32_t mode, uint32_t gid, int *err)
{
    struct be_node *n;

    if (sb->nodes >= sb->max_nodes) {
        *err = -ENOSPC;
        return NULL;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    n->ino = sb->next_ino++;
    n->mode = mode;
    n->uid = sy_cur_uid;
    n->gid = gid;
    n->atime = n->mtime = n->ctime = n->btime = sy_tick(sb);
    n->next_cookie = SY_FIRST_COOKIE;
    n->all_next = sb->all;
    if (sb->all != NULL) {
        sb->all->all_prev = n;
    }
    sb->all = n;
    sb->nodes++;
    return n;
}

static void
sy_node_free(struct sy_backend *sb, struct be_node *n)
{
    while (n->xattrs != NULL) {
        struct sy_xattr *x = n->xattrs;

        n->xattrs = x->next;
        sy_uncharge(sb, strlen(x->name) + x->len);
        free(x->name);
        free(x->val);
        free(x);
    }
    while (n->locks != NULL) {
        struct sy_lock *l = n->locks;

        n->locks = l->next;
        free(l);
    }
    for (size_t i = 0; i < n->nents; i++) {
        /* only at destroy: a removed directory is empty */
        sy_uncharge(sb, strlen(n->ents[i].name));
        free(n->ents[i].name);
    }
    free(n->ents);
    sy_uncharge(sb, (size_t)n->size);
    free(n->data);
    if (n->target != NULL) {
        sy_uncharge(sb, strlen(n->target));
        free(n->target);
    }
    if (n->all_prev != NULL) {
        n->all_prev->all_next = n->all_next;
    } else {
        sb->all = n->all_next;
    }
    if (n->all_next != NULL) {
        n->all_next->all_prev = n->all_prev;
    }
    sb->nodes--;
    free(n);
}

static void
sy_maybe_free(struct sy_backend *sb, struct be_node *n)
{
    if (n->refs == 0 && n->links == 0 && n != sb->root) {
        sy_node_free(sb, n);
    }
}

static void
sy_ref(struct sy_backend *sb, struct be_node *n)
{
    n->refs++;
    sb->node_refs++;
}

static void
sy_unref(struct sy_backend *sb, struct be_node *n)
{
    n->refs--;
    sb->node_refs--;
    sy_maybe_free(sb, n);
}

static void
sy_qid(const struct be_node *n, struct p9_qid *q)
{
    if (S_ISDIR(n->mode)) {
        q->type = P9_QTDIR;
    } else if (S_ISLNK(n->mode)) {
        q->type = P9_QTSYMLINK;
    } else {
        q->type = P9_QTFILE;
    }
    q->version = n->version;
    q->path = n->ino;
}

static uint8_t
sy_dtype(const struct be_node *n)
{
    switch (n->mode & S_IFMT) {
    case S_IFDIR: return 4;
    case S_IFREG: return 8;
    case S_IFLNK: return 10;
    case S_IFIFO: return 1;
    case S_IFCHR: return 2;
    case S_IFBLK: return 6;
    case S_IFSOCK: return 12;
    default: return 0;
    }
}

/* ---- directory entries ------------------------------------------------------- */

static struct sy_dirent *
sy_lookup(struct be_node *dir, const char *name)
{
    for (size_t i = 0; i < dir->nents; i++) {
        if (strcmp(dir->ents[i].name, name) == 0) {
            return &dir->ents[i];
        }
    }
    return NULL;
}

/* A directory that can take new entries: a directory still linked. */
static int
sy_check_dir(struct be_node *dir)
{
    if (!sy_is_dir(dir)) {
        return -ENOTDIR;
    }
    if (dir->links == 0) {
        return -ENOENT;
    }
    return 0;
}

static int
sy_check_name(const char *name)
{
    size_t len = strlen(name);

    if (len == 0) {
        return -ENOENT;
    }
    if (len > SY_NAME_MAX) {
        return -ENAMETOOLONG;
    }
    if (strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0) {
        return -EINVAL;
    }
    return 0;
}

/*
 * Linking a name is split in two so that rename can fail before it changes
 * anything: reserve (bytes, array room, the name copy; may fail) and
 * commit (cannot fail).
 */
static int
sy_entry_reserve(struct sy_backend *sb, struct be_node *dir, const char *name,
                 char **copy)
{
    size_t len = strlen(name);
    int err;

    err = sy_charge(sb, len);
    if (err < 0) {
        return err;
    }
    if (dir->nents == dir->cap) {
        size_t cap = dir->cap ? dir->cap * 2 : 8;
        struct sy_dirent *ne = realloc(dir->ents, cap * sizeof(*ne));

        if (ne == NULL) {
            sy_uncharge(sb, len);
            return -ENOMEM;
        }
        dir->ents = ne;
        dir->cap = cap;
    }
    *copy = strdup(name);
    if (*copy == NULL) {
        sy_uncharge(sb, len);
        return -ENOMEM;
    }
    return 0;
}

static void
sy_entry_commit(struct sy_backend *sb, struct be_node *dir, char *copy,
                struct be_node *n)
{
    struct sy_dirent *e = &dir->ents[dir->nents++];

    e->name = copy;
    e->node = n;
    e->cookie = dir->next_cookie++;
    n->links++;
    if (sy_is_dir(n)) {
        n->parent = dir;
        dir->nsubdirs++;
    } else if (n->parent == NULL) {
        n->parent = dir;
    }
    dir->version++;
    dir->mtime = dir->ctime = sy_tick(sb);
    n->ctime = dir->mtime;
}

/* Link 'n' into 'dir' as 'name' (checked, not present). */
static int
sy_link_entry(struct sy_backend *sb, struct be_node *dir, const char *name,
              struct be_node *n)
{
    char *copy;
    int err;

    err = sy_entry_reserve(sb, dir, name, &copy);
    if (err == 0) {
        sy_entry_commit(sb, dir, copy, n);
    }
    return err;
}

/* Remove entry 'e' of 'dir'; frees the node if nothing else holds it. */
static void
sy_unlink_entry(struct sy_backend *sb, struct be_node *dir, struct sy_dirent *e)
{
    struct be_node *n = e->node;
    size_t i = (size_t)(e - dir->ents);

    sy_uncharge(sb, strlen(e->name));
    free(e->name);
    memmove(&dir->ents[i], &dir->ents[i + 1],
            (dir->nents - i - 1) * sizeof(*e));
    dir->nents--;
    n->links--;
    if (sy_is_dir(n)) {
        dir->nsubdirs--;
        n->parent = NULL;
    } else if (n->parent == dir) {
        n->parent = NULL; /* a hint only; sy_find_link searches */
    }
    dir->version++;
    dir->mtime = dir->ctime = sy_tick(sb);
    n->ctime = dir->mtime;
    sy_maybe_free(sb, n);
}

/* Some directory entry naming 'n' (Trename/Tremove act on the object). */
static int
sy_find_link(struct sy_backend *sb, struct be_node *n, struct be_node **dirp,
             struct sy_dirent **ep)
{
    if (n == sb->root) {
        return -EBUSY;
    }
    if (n->links == 0) {
        return -ENOENT;
    }
    if (n->parent != NULL) {
        struct be_node *d = n->parent;

        for (size_t i = 0; i < d->nents; i++) {
            if (d->ents[i].node == n) {
                *dirp = d;
                *ep = &d->ents[i];
                return 0;
            }
        }
    }
    /* the hint was stale: search everywhere */
    for (struct be_node *d = sb->all; d != NULL; d = d->all_next) {
        for (size_t i = 0; sy_is_dir(d) && i < d->nents; i++) {
            if (d->ents[i].node == n) {
                *dirp = d;
                *ep = &d->ents[i];
                return 0;
            }
        }
    }
    return -ENOENT;
}

/* ---- users ------------------------------------------------------------------- */

static int
sy_user_get(struct backend *be, const char *uname, uint32_t n_uname,
            struct be_user **out)
{
    struct sy_backend *sb = sy(be);
    struct be_user *u = calloc(1, sizeof(*u));

    if (u == NULL) {
        return -ENOMEM;
    }
    if (n_uname != P9_NONUNAME) {
        u->uid = n_uname;
    } else if (uname != NULL && uname[0] >= '0' && uname[0] <= '9') {
        char *end;
        unsigned long v = strtoul(uname, &end, 10);

        u->uid = (*end == '\0' && v < UINT32_MAX) ? (uint32_t)v : 0;
    }
    pthread_mutex_lock(&sb->lock);
    sb->users++;
    pthread_mutex_unlock(&sb->lock);
    *out = u;
    return 0;
}

static void
sy_user_put(struct backend *be, struct be_user *u)
{
    struct sy_backend *sb = sy(be);

    if (u == NULL) {
        return;
    }
    pthread_mutex_lock(&sb->lock);
    sb->users--;
    pthread_mutex_unlock(&sb->lock);
    free(u);
}

static int
sy_user_enter(struct backend *be, struct be_user *u)
{
    (void)be;
    sy_cur_uid = u != NULL ? u->uid : 0;
    return 0;
}

/* ---- nodes -------------------------------------------------------------------- */

static int
sy_root(struct backend *be, struct be_node **out, struct p9_qid *qid)
{
    struct sy_backend *sb = sy(be);

    pthread_mutex_lock(&sb->lock);
    sy_ref(sb, sb->root);
    sy_qid(sb->root, qid);
    pthread_mutex_unlock(&sb->lock);
    *out = sb->root;
    return 0;
}

static int
sy_walk1(struct backend *be, struct be_node *dir, const char *name,
         struct be_node **out, struct p9_qid *qid)
{
    struct sy_backend *sb = sy(be);
    struct be_node *n = NULL;
    int err = 0;

    pthread_mutex_lock(&sb->lock);
    if (!sy_is_dir(dir)) {
        err = -ENOTDIR;
    } else if (strcmp(name, "..") == 0) {
        if (dir == sb->root) {
            n = dir;
        } else if (dir->parent != NULL) {
            n = dir->parent;
        } else {
            err = -ENOENT; /* removed directory */
        }
    } else {
        struct sy_dirent *e = sy_lookup(dir, name);

        if (e == NULL) {
            err = -ENOENT;
        } else {
            n = e->node;
        }
    }
    if (err == 0) {
        sy_ref(sb, n);
        sy_qid(n, qid);
        *out = n;
    }
    pthread_mutex_unlock(&sb->lock);
    return err;
}

static void
sy_node_get(struct backend *be, struct be_node *n)
{
    struct sy_backend *sb = sy(be);

    pthread_mutex_lock(&sb->lock);
    sy_ref(sb, n);
    pthread_mutex_unlock(&sb->lock);
}

static void
sy_node_put(struct backend *be, struct be_node *n)
{
    struct sy_backend *sb = sy(be);

    if (n == NULL) {
        return;
    }
    pthread_mutex_lock(&sb->lock);
    sy_unref(sb, n);
    pthread_mutex_unlock(&sb->lock);
}

static int
sy_get_qid(struct backend *be, struct be_node *n, struct p9_qid *qid)
{
    struct sy_backend *sb = sy(be);

    pthread_mutex_lock(&sb->lock);
    sy_qid(n, qid);
    pthread_mutex_unlock(&sb->lock);
    return 0;
}

/* ---- attributes --------------------------------------------------------------- */

static uint64_t
sy_nlink(const struct be_node *n)
{
    return sy_is_dir(n) ? (uint64_t)n->links + 1 + n->nsubdirs : n->links;
}

static uint64_t
sy_size(const struct be_node *n)
{
    if (S_ISREG(n->mode)) {
        return n->size;
    }
    if (S_ISLNK(n->mode)) {
        return strlen(n->target);
    }
    if (sy_is_dir(n)) {
        return SY_BLKSIZE;
    }
    return 0;
}

static int
sy_getattr(struct backend *be, struct be_node *n, struct be_handle *h,
           uint64_t request_mask, struct p9_rgetattr *out)
{
    struct sy_backend *sb = sy(be);
    uint64_t size;

    (void)h;
    (void)request_mask; /* everything costs the same */
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&sb->lock);
    out->valid = P9_GETATTR_BASIC | P9_GETATTR_BTIME;
    sy_qid(n, &out->qid);
    out->mode = n->mode;
    out->uid = n->uid;
    out->gid = n->gid;
    out->nlink = sy_nlink(n);
    out->rdev = n->rdev;
    size = sy_size(n);
    out->size = size;
    out->blksize = SY_BLKSIZE;
    out->blocks = (size + SY_STAT_BLOCK - 1) / SY_STAT_BLOCK;
    out->atime_sec = n->atime;
    out->mtime_sec = n->mtime;
    out->ctime_sec = n->ctime;
    out->btime_sec = n->btime;
    pthread_mutex_unlock(&sb->lock);
    return 0;
}

/* Resize a regular file, charging or refunding the difference. */
static int
sy_resize(struct sy_backend *sb, struct be_node *n, uint64_t size)
{
    uint8_t *nd;
    int err;

    if (size > SY_FILE_MAX) {
        return -EFBIG;
    }
    if (size == n->size) {
        return 0;
    }
    if (size > n->size) {
        err = sy_charge(sb, (size_t)(size - n->size));
        if (err < 0) {
            return err;
        }
    }
    if (size == 0) {
        free(n->data);
        nd = NULL;
    } else {
        nd = realloc(n->data, (size_t)size);
        if (nd == NULL) {
            sy_uncharge(sb, (size_t)(size - n->size));
            return -ENOMEM;
        }
        if (size > n->size) {
            memset(nd + n->size, 0, (size_t)(size - n->size));
        }
    }
    if (size < n->size) {
        sy_uncharge(sb, (size_t)(n->size - size));
    }
    n->data = nd;
    n->size = size;
    n->version++;
    return 0;
}

static int
sy_setattr(struct backend *be, struct be_node *n, struct be_handle *h,
           const struct p9_tsetattr *in)
{
    struct sy_backend *sb = sy(be);
    const uint32_t v = in->valid;
    uint64_t now;
    int err = 0;

    (void)h;
    if (sb->readonly) {
        return -EROFS;
    }
    pthread_mutex_lock(&sb->lock);
    /* the only step that can fail goes first: nothing half done */
    if (v & P9_SETATTR_SIZE) {
        if (sy_is_dir(n)) {
            err = -EISDIR;
        } else if (!S_ISREG(n->mode)) {
            err = -EINVAL;
        } else {
            err = sy_resize(sb, n, in->size);
        }
        if (err < 0) {
            goto out;
        }
    }
    now = sy_tick(sb);
    if (v & P9_SETATTR_SIZE) {
        n->mtime = now;
    }
    if (v & P9_SETATTR_MODE) {
        n->mode = (n->mode & S_IFMT) | (in->mode & 07777);
    }
    if (v & P9_SETATTR_UID) {
        n->uid = in->uid;
    }
    if (v & P9_SETATTR_GID) {
        n->gid = in->gid;
    }
    if (v & P9_SETATTR_ATIME) {
        n->atime = (v & P9_SETATTR_ATIME_SET) ? in->atime_sec : now;
    }
    if (v & P9_SETATTR_MTIME) {
        n->mtime = (v & P9_SETATTR_MTIME_SET) ? in->mtime_sec : now;
    }
    n->ctime = now;

out:
    pthread_mutex_unlock(&sb->lock);
    return err;
}

static int
sy_statfs(struct backend *be, struct be_node *n, struct p9_rstatfs *out)
{
    struct sy_backend *sb = sy(be);

    (void)n;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&sb->lock);
    out->type = SY_STATFS_MAGIC;
    out->bsize = SY_BLKSIZE;
    out->blocks = sb->max_bytes / SY_BLKSIZE;
    out->bfree = (sb->max_bytes - sb->bytes) / SY_BLKSIZE;
    out->bavail = out->bfree;
    out->files = sb->max_nodes;
    out->ffree = sb->max_nodes - sb->nodes;
    out->fsid = SY_STATFS_MAGIC;
    out->namelen = SY_NAME_MAX;
    pthread_mutex_unlock(&sb->lock);
    return 0;
}

static ssize_t
sy_readlink(struct backend *be, struct be_node *n, char *buf, size_t size)
{
    struct sy_backend *sb = sy(be);
    ssize_t len = -EINVAL;

    pthread_mutex_lock(&sb->lock);
    if (S_ISLNK(n->mode)) {
        size_t l = strlen(n->target);

        memcpy(buf, n->target, l < size ? l : size);
        len = (ssize_t)l;
    }
    pthread_mutex_unlock(&sb->lock);
    return len;
}

/* ---- open files ---------------------------------------------------------------- */

/* Checks an open of 'n' with 'flags' may go on (lock held). */
static int
sy_open_check(const struct be_node *n, uint32_t flags)
{
    uint32_t acc = flags & 3;

    if (acc == P9_DOTL_NOACCESS) {
        return -EINVAL;
    }
    if (S_ISLNK(n->mode)) {
        return -ELOOP; /* opens never follow */
    }
    if ((flags & P9_DOTL_DIRECTORY) && !sy_is_dir(n)) {
        return -ENOTDIR;
    }
    if (sy_is_dir(n)) {
        if (acc != P9_DOTL_RDONLY || (flags & P9_DOTL_TRUNC)) {
            return -EISDIR;
        }
        return 0;
    }
    if (!S_ISREG(n->mode)) {
        return -ENXIO; /* devices, FIFOs, sockets: attributes only */
    }
    return 0;
}

static int
sy_handle_new(struct sy_backend *sb, struct be_node *n, uint32_t flags,
              struct be_handle **out)
{
    struct be_handle *h = calloc(1, sizeof(*h));

    if (h == NULL) {
        return -ENOMEM;
    }
    h->n = n;
    h->flags = flags;
    sy_ref(sb, n);
    sb->handles++;
    *out = h;
    return 0;
}

static int
sy_open(struct backend *be, struct be_node *n, uint32_t flags,
        struct be_handle **out, struct p9_qid *qid, uint32_t *iounit)
{
    struct sy_backend *sb = sy(be);
    uint32_t acc = flags & 3;
    int err;

    if (sb->readonly && (acc != P9_DOTL_RDONLY || (flags & P9_DOTL_TRUNC))) {
        return -EROFS;
    }
    pthread_mutex_lock(&sb->lock);
    err = sy_open_check(n, flags);
    if (err == 0 && (flags & P9_DOTL_TRUNC) && acc != P9_DOTL_RDONLY) {
        err = sy_resize(sb, n, 0);
        if (err == 0) {
            n->mtime = n->ctime = sy_tick(sb);
        }
    }
    if (err == 0) {
        err = sy_handle_new(sb, n, flags, out);
    }
    if (err == 0) {
        sy_qid(n, qid);
        *iounit = 0;
    }
    pthread_mutex_unlock(&sb->lock);
    return err;
}

static int
sy_create(struct backend *be, struct be_node *dir, const char *name,
          uint32_t flags, uint32_t mode, uint32_t gid,
          struct be_node **node_out, struct be_handle **out, struct p9_qid *qid,
          uint32_t *iounit)
{
    struct sy_backend *sb = sy(be);
    struct sy_dirent *e;
    struct be_node *n;
    int err;

    if (sb->readonly) {
        return -EROFS;
    }
    err = sy_check_name(name);
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&sb->lock);
    err = sy_check_dir(dir);
    if (err < 0) {
        goto out;
    }
    e = sy_lookup(dir, name);
    if (e != NULL) {
        /* open(O_CREAT) of an existing name opens it, unless O_EXCL */
        n = e->node;
        if (flags & P9_DOTL_EXCL) {
            err = -EEXIST;
            goto out;
        }
        err = sy_open_check(n, flags);
        if (err == 0 && (flags & P9_DOTL_TRUNC) &&
            (flags & 3) != P9_DOTL_RDONLY) {
            err = sy_resize(sb, n, 0);
        }
        if (err < 0) {
            goto out;
        }
    } else {
        if ((flags & 3) == P9_DOTL_NOACCESS) {
            err = -EINVAL;
            goto out;
        }
        n = sy_node_alloc(sb, S_IFREG | (mode & 07777), gid, &err);
        if (n == NULL) {
            goto out;
        }
        err = sy_link_entry(sb, dir, name, n);
        if (err < 0) {
            sy_node_free(sb, n);
            goto out;
        }
    }
    err = sy_handle_new(sb, n, flags, out);
    if (err < 0) {
        goto out; /* the new file stays, as after a failed open(2) */
    }
    sy_ref(sb, n);
    *node_out = n;
    sy_qid(n, qid);
    *iounit = 0;

out:
    pthread_mutex_unlock(&sb->lock);
    return err;
}

static void
sy_close(struct backend *be, struct be_handle *h)
{
    struct sy_backend *sb = sy(be);
    struct sy_lock **pp;

    pthread_mutex_lock(&sb->lock);
    /* closing drops the handle's locks (OFD semantics) */
    for (pp = &h->n->locks; *pp != NULL;) {
        struct sy_lock *l = *pp;

        if (l->owner == h) {
            *pp = l->next;
            free(l);
        } else {
            pp = &l->next;
        }
    }
    sb->handles--;
    sy_unref(sb, h->n);
    pthread_mutex_unlock(&sb->lock);
    free(h);
}

static ssize_t
sy_read(struct backend *be, struct be_handle *h, const struct iovec *iov,
        int iovcnt, uint64_t off)
{
    struct sy_backend *sb = sy(be);
    struct be_node *n = h->n;
    ssize_t done = 0;

    if ((h->flags & 3) == P9_DOTL_WRONLY) {
        return -EBADF;
    }
    pthread_mutex_lock(&sb->lock);
    if (sy_is_dir(n)) {
        done = -EISDIR;
        goto out;
    }
    for (int i = 0; i < iovcnt && off < n->size; i++) {
        uint64_t avail = n->size - off;
        size_t k = iov[i].iov_len < avail ? iov[i].iov_len : (size_t)avail;

        memcpy(iov[i].iov_base, n->data + off, k);
        off += k;
        done += (ssize_t)k;
    }
    n->atime = sy_tick(sb);

out:
    pthread_mutex_unlock(&sb->lock);
    return done;
}

static ssize_t
sy_write(struct backend *be, struct be_handle *h, const struct iovec *iov,
         int iovcnt, uint64_t off)
{
    struct sy_backend *sb = sy(be);
    struct be_node *n = h->n;
    uint64_t len = 0;
    ssize_t err;

    if ((h->flags & 3) == P9_DOTL_RDONLY) {
        return -EBADF;
    }
    if (sb->readonly) {
        return -EROFS;
    }
    for (int i = 0; i < iovcnt; i++) {
        len += iov[i].iov_len;
    }
    if (len > SSIZE_MAX) {
        return -EINVAL;
    }
    pthread_mutex_lock(&sb->lock);
    if (h->flags & P9_DOTL_APPEND) {
        off = n->size;
    }
    if (off > SY_FILE_MAX || len > SY_FILE_MAX - off) {
        err = -EFBIG;
        goto out;
    }
    if (off + len > n->size) {
        err = sy_resize(sb, n, off + len);
        if (err < 0) {
            goto out;
        }
    }
    for (int i = 0; len > 0 && i < iovcnt; i++) {
        if (iov[i].iov_len > 0) {
            memcpy(n->data + off, iov[i].iov_base, iov[i].iov_len);
        }
        off += iov[i].iov_len;
    }
    if (len > 0) {
        n->version++;
    }
    n->mtime = n->ctime = sy_tick(sb);
    err = (ssize_t)len;

out:
    pthread_mutex_unlock(&sb->lock);
    return err;
}

static int
sy_fsync(struct backend *be, struct be_handle *h, bool datasync)
{
    (void)be;
    (void)h;
    (void)datasync;
    return 0;
}

static int
sy_readdir(struct backend *be, struct be_handle *h, uint64_t offset,
           be_dirent_fn *fn, void *ctx)
{
    struct sy_backend *sb = sy(be);
    struct be_node *d = h->n;
    struct p9_qid q;
    size_t lo, hi;
    int err = 0;

    pthread_mutex_lock(&sb->lock);
    if (!sy_is_dir(d)) {
        err = -ENOTDIR;
        goto out;
    }
    if (offset == 0) {
        sy_qid(d, &q);
        if (fn(ctx, &q, 1, 4, ".", 1) != 0) {
            goto out;
        }
        offset = 1;
    }
    if (offset == 1) {
        struct be_node *p = d == sb->root || d->parent == NULL ? d : d->parent;

        sy_qid(p, &q);
        if (fn(ctx, &q, 2, 4, "..", 2) != 0) {
            goto out;
        }
        offset = 2;
    }
    /* first entry with cookie > offset */
    lo = 0;
    hi = d->nents;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (d->ents[mid].cookie <= offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (size_t i = lo; i < d->nents; i++) {
        const struct sy_dirent *e = &d->ents[i];

        sy_qid(e->node, &q);
        if (fn(ctx, &q, e->cookie, sy_dtype(e->node), e->name,
               strlen(e->name)) != 0) {
            break;
        }
    }

out:
    pthread_mutex_unlock(&sb->lock);
    return err;
}

/* ---- namespace ----------------------------------------------------------------- */

/* Create a node of 'mode' named 'name' in 'dir' (target for symlinks). */
static int
sy_make(struct sy_backend *sb, struct be_node *dir, const char *name,
        uint32_t mode, uint64_t rdev, const char *target, size_t tlen,
        uint32_t gid, struct p9_qid *qid)
{
    struct be_node *n;
    int err;

    if (sb->readonly) {
        return -EROFS;
    }
    err = sy_check_name(name);
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&sb->lock);
    err = sy_check_dir(dir);
    if (err == 0 && sy_lookup(dir, name) != NULL) {
        err = -EEXIST;
    }
    if (err < 0) {
        goto out;
    }
    n = sy_node_alloc(sb, mode, gid, &err);
    if (n == NULL) {
        goto out;
    }
    n->rdev = rdev;
    if (target != NULL) {
        err = sy_charge(sb, tlen);
        if (err == 0) {
            n->target = strndup(target, tlen);
            if (n->target == NULL) {
                sy_uncharge(sb, tlen);
                err = -ENOMEM;
            }
        }
    } else if (S_ISREG(mode) && tlen > 0) {
        err = sy_resize(sb, n, tlen);
    }
    if (err == 0) {
        err = sy_link_entry(sb, dir, name, n);
    }
    if (err < 0) {
        sy_node_free(sb, n);
        goto out;
    }
    if (qid != NULL) {
        sy_qid(n, qid);
    }

out:
    pthread_mutex_unlock(&sb->lock);
    return err;
}

static int
sy_mkdir(struct backend *be, struct be_node *dir, const char *name,
         uint32_t mode, uint32_t gid, struct p9_qid *qid)
{
    return sy_make(sy(be), dir, name, S_IFDIR | (mode & 07777), 0, NULL, 0, gid,
                   qid);
}

static int
sy_mknod(struct backend *be, struct be_node *dir, const char *name,
         uint32_t mode, uint32_t major, uint32_t minor, uint32_t gid,
         struct p9_qid *qid)
{
    uint32_t type = mode & S_IFMT;
    uint64_t rdev = 0;

    switch (type) {
    case 0: type = S_IFREG; break;
    case S_IFREG:
    case S_IFIFO:
    case S_IFSOCK: break;
    case S_IFCHR:
    case S_IFBLK: rdev = makedev(major, minor); break;
    case S_IFDIR: return -EPERM;
    default: return -EINVAL;
    }
    return sy_make(sy(be), dir, name, type | (mode & 07777), rdev, NULL, 0, gid,
                   qid);
}

static int
sy_symlink(struct backend *be, struct be_node *dir, const char *name,
           const char *target, uint32_t gid, struct p9_qid *qid)
{
    size_t tlen = strlen(target);

    if (tlen == 0) {
        return -ENOENT;
    }
    if (tlen >= PATH_MAX) {
        return -ENAMETOOLONG;
    }
    return sy_make(sy(be), dir, name, S_IFLNK | 0777, 0, target, tlen, gid,
                   qid);
}

static int
sy_link(struct backend *be, struct be_node *dir, const char *name,
        struct be_node *target)
{
    struct sy_backend *sb = sy(be);
    int err;

    if (sb->readonly) {
        return -EROFS;
    }
    err = sy_check_name(name);
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&sb->lock);
    err = sy_check_dir(dir);
    if (err == 0 && sy_is_dir(target)) {
        err = -EPERM;
    } else if (err == 0 && target->links == 0) {
        err = -ENOENT;
    } else if (err == 0 && sy_lookup(dir, name) != NULL) {
        err = -EEXIST;
    }
    if (err == 0) {
        err = sy_link_entry(sb, dir, name, target);
    }
    pthread_mutex_unlock(&sb->lock);
    return err;
}

/* Is 'd' 'anc' or inside it? */
static bool
sy_within(const struct be_node *d, const struct be_node *anc)
{
    for (; d != NULL; d = d->parent) {
        if (d == anc) {
            return true;
        }
    }
    return false;
}

/* Move od/oldname to nd/newname (lock held, names checked). */
static int
sy_move(struct sy_backend *sb, struct be_node *od, const char *oldname,
        struct be_node *nd, const char *newname)
{
    struct sy_dirent *e = sy_lookup(od, oldname);
    struct sy_dirent *dst;
    struct be_node *n;
    char *copy;
    int err;

    if (e == NULL) {
        return -ENOENT;
    }
    n = e->node;
    err = sy_check_dir(nd);
    if (err < 0) {
        return err;
    }
    if (sy_is_dir(n) && sy_within(nd, n)) {
        return -EINVAL; /* into itself */
    }
    dst = sy_lookup(nd, newname);
    if (dst != NULL) {
        if (dst->node == n) {
            return 0; /* rename(2): the same file, nothing to do */
        }
        if (sy_is_dir(n) && !sy_is_dir(dst->node)) {
            return -ENOTDIR;
        }
        if (!sy_is_dir(n) && sy_is_dir(dst->node)) {
            return -EISDIR;
        }
        if (sy_is_dir(dst->node) && dst->node->nents > 0) {
            return -ENOTEMPTY;
        }
    }
    err = sy_entry_reserve(sb, nd, newname, &copy);
    if (err < 0) {
        return err;
    }
    /* from here nothing fails; the pin keeps n across its unlink (the
     * reserve may have moved nd's entries: look dst up again) */
    n->refs++;
    dst = sy_lookup(nd, newname);
    if (dst != NULL) {
        sy_unlink_entry(sb, nd, dst);
    }
    sy_unlink_entry(sb, od, sy_lookup(od, oldname));
    sy_entry_commit(sb, nd, copy, n);
    n->refs--;
    return 0;
}

static int
sy_renameat(struct backend *be, struct be_node *olddir, const char *oldname,
            struct be_node *newdir, const char *newname)
{
    struct sy_backend *sb = sy(be);
    int err;

    if (sb->readonly) {
        return -EROFS;
    }
    err = sy_check_name(oldname);
    if (err == 0) {
        err = sy_check_name(newname);
    }
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&sb->lock);
    err = sy_check_dir(olddir);
    if (err == 0) {
        err = sy_move(sb, olddir, oldname, newdir, newname);
    }
    pthread_mutex_unlock(&sb->lock);
    return err;
}

static int
sy_rename(struct backend *be, struct be_node *n, struct be_node *newdir,
          const char *newname)
{
    struct sy_backend *sb = sy(be);
    struct be_node *od;
    struct sy_dirent *e;
    int err;

    if (sb->readonly) {
        return -EROFS;
    }
    err = sy_check_name(newname);
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&sb->lock);
    err = sy_find_link(sb, n, &od, &e);
    if (err == 0) {
        char old[SY_NAME_MAX + 1];

        snprintf(old, sizeof(old), "%s", e->name);
        err = sy_move(sb, od, old, newdir, newname);
    }
    pthread_mutex_unlock(&sb->lock);
    return err;
}

/* Remove entry 'e' of 'dir' as unlinkat(flags) would (lock held). */
static int
sy_remove_entry(struct sy_backend *sb, struct be_node *dir, struct sy_dirent *e,
                uint32_t flags)
{
    struct be_node *n = e->node;

    if (flags & P9_DOTL_AT_REMOVEDIR) {
        if (!sy_is_dir(n)) {
            return -ENOTDIR;
        }
        if (n->nents > 0) {
            return -ENOTEMPTY;
        }
    } else if (sy_is_dir(n)) {
        return -EISDIR;
    }
    sy_unlink_entry(sb, dir, e);
    return 0;
}

static int
sy_unlinkat(struct backend *be, struct be_node *dir, const char *name,
            uint32_t flags)
{
    struct sy_backend *sb = sy(be);
    struct sy_dirent *e;
    int err;

    if (sb->readonly) {
        return -EROFS;
    }
    if (flags & ~(uint32_t)P9_DOTL_AT_REMOVEDIR) {
        return -EINVAL;
    }
    err = sy_check_name(name);
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&sb->lock);
    if (!sy_is_dir(dir)) {
        err = -ENOTDIR;
    } else if ((e = sy_lookup(dir, name)) == NULL) {
        err = -ENOENT;
    } else {
        err = sy_remove_entry(sb, dir, e, flags);
    }
    pthread_mutex_unlock(&sb->lock);
    return err;
}

static int
sy_remove(struct backend *be, struct be_node *n)
{
    struct sy_backend *sb = sy(be);
    struct be_node *dir;
    struct sy_dirent *e;
    int err;

    if (sb->readonly) {
        return -EROFS;
    }
    pthread_mutex_lock(&sb->lock);
    err = sy_find_link(sb, n, &dir, &e);
    if (err == 0) {
        err = sy_remove_entry(sb, dir, e,
                              sy_is_dir(n) ? P9_DOTL_AT_REMOVEDIR : 0);
    }
    pthread_mutex_unlock(&sb->lock);
    return err;
}

/* ---- xattrs ------------------------------------------------------------------- */

static struct sy_xattr **
sy_xfind(struct be_node *n, const char *name)
{
    struct sy_xattr **pp;

    for (pp = &n->xattrs; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            break;
        }
    }
    return pp;
}

static ssize_t
sy_getxattr(struct backend *be, struct be_node *n, const char *name, void *buf,
            size_t size)
{
    struct sy_backend *sb = sy(be);
    struct sy_xattr *x;
    ssize_t ret;

    pthread_mutex_lock(&sb->lock);
    x = *sy_xfind(n, name);
    if (x == NULL) {
        ret = -ENODATA;
    } else if (size == 0) {
        ret = (ssize_t)x->len;
    } else if (size < x->len) {
        ret = -ERANGE;
    } else {
        if (x->len > 0) {
            memcpy(buf, x->val, x->len);
        }
        ret = (ssize_t)x->len;
    }
    pthread_mutex_unlock(&sb->lock);
    return ret;
}

static ssize_t
sy_listxattr(struct backend *be, struct be_node *n, char *buf, size_t size)
{
    struct sy_backend *sb = sy(be);
    size_t need = 0;
    ssize_t ret;

    pthread_mutex_lock(&sb->lock);
    for (struct sy_xattr *x = n->xattrs; x != NULL; x = x->next) {
        need += strlen(x->name) + 1;
    }
    if (size == 0) {
        ret = (ssize_t)need;
    } else if (size < need) {
        ret = -ERANGE;
    } else {
        char *p = buf;

        for (struct sy_xattr *x = n->xattrs; x != NULL; x = x->next) {
            size_t l = strlen(x->name) + 1;

            memcpy(p, x->name, l);
            p += l;
        }
        ret = (ssize_t)need;
    }
    pthread_mutex_unlock(&sb->lock);
    return ret;
}

static int
sy_setxattr(struct backend *be, struct be_node *n, const char *name,
            const void *value, size_t size, uint32_t flags)
{
    struct sy_backend *sb = sy(be);
    struct sy_xattr **pp;
    struct sy_xattr *x;
    uint8_t *val = NULL;
    size_t nlen = strlen(name);
    int err;

    if (sb->readonly) {
        return -EROFS;
    }
    if (nlen == 0 || nlen > SY_XNAME_MAX) {
        return -ERANGE;
    }
    if (size > SY_XVALUE_MAX) {
        return -E2BIG;
    }
    if (flags & ~(uint32_t)(P9_XATTR_CREATE | P9_XATTR_REPLACE)) {
        return -EINVAL;
    }
    if (size > 0) {
        val = malloc(size);
        if (val == NULL) {
            return -ENOMEM;
        }
        memcpy(val, value, size);
    }
    pthread_mutex_lock(&sb->lock);
    pp = sy_xfind(n, name);
    x = *pp;
    if (x != NULL && (flags & P9_XATTR_CREATE)) {
        err = -EEXIST;
    } else if (x == NULL && (flags & P9_XATTR_REPLACE)) {
        err = -ENODATA;
    } else if (x != NULL) {
        err = size > x->len ? sy_charge(sb, size - x->len) : 0;
        if (err == 0) {
            sy_uncharge(sb, x->len > size ? x->len - size : 0);
            free(x->val);
            x->val = val;
            x->len = size;
            val = NULL;
        }
    } else {
        err = sy_charge(sb, nlen + size);
        if (err == 0) {
            x = calloc(1, sizeof(*x));
            if (x == NULL || (x->name = strdup(name)) == NULL) {
                free(x);
                sy_uncharge(sb, nlen + size);
                err = -ENOMEM;
            } else {
                x->val = val;
                x->len = size;
                val = NULL;
                *pp = x; /* appended: lists keep creation order */
            }
        }
    }
    if (err == 0) {
        n->ctime = sy_tick(sb);
    }
    pthread_mutex_unlock(&sb->lock);
    free(val);
    return err;
}

static int
sy_removexattr(struct backend *be, struct be_node *n, const char *name)
{
    struct sy_backend *sb = sy(be);
    struct sy_xattr **pp;
    struct sy_xattr *x;
    int err = 0;

    if (sb->readonly) {
        return -EROFS;
    }
    pthread_mutex_lock(&sb->lock);
    pp = sy_xfind(n, name);
    x = *pp;
    if (x == NULL) {
        err = -ENODATA;
    } else {
        *pp = x->next;
        sy_uncharge(sb, strlen(x->name) + x->len);
        free(x->name);
        free(x->val);
        free(x);
        n->ctime = sy_tick(sb);
    }
    pthread_mutex_unlock(&sb->lock);
    return err;
}

/* ---- locks -------------------------------------------------------------------- */

/* [start, end] of a wire range; length 0 means to the end of the file. */
static int
sy_range(uint64_t start, uint64_t length, uint64_t *end)
{
    if (length == 0) {
        *end = UINT64_MAX;
    } else if (length - 1 > UINT64_MAX - start) {
        return -EINVAL;
    } else {
        *end = start + length - 1;
    }
    return 0;
}

static const struct sy_lock *
sy_conflict(const struct be_node *n, const struct be_handle *h, uint8_t type,
            uint64_t start, uint64_t end)
{
    for (const struct sy_lock *l = n->locks; l != NULL; l = l->next) {
        if (l->owner != h && l->start <= end && start <= l->end &&
            (type == P9_LOCK_TYPE_WRLCK || l->type == P9_LOCK_TYPE_WRLCK)) {
            return l;
        }
    }
    return NULL;
}

static int
sy_lock(struct backend *be, struct be_handle *h, const struct p9_tlock *in,
        uint8_t *status)
{
    struct sy_backend *sb = sy(be);
    struct be_node *n = h->n;
    struct sy_lock **pp;
    struct sy_lock *nl = NULL;
    uint64_t end;
    int err;

    if (in->type > P9_LOCK_TYPE_UNLCK) {
        return -EINVAL;
    }
    err = sy_range(in->start, in->length, &end);
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&sb->lock);
    if (in->type != P9_LOCK_TYPE_UNLCK &&
        sy_conflict(n, h, in->type, in->start, end) != NULL) {
        *status = P9_LOCK_BLOCKED; /* never waits */
        goto out;
    }
    /* cut the range out of this owner's locks (up to two pieces stay) */
    for (pp = &n->locks; *pp != NULL;) {
        struct sy_lock *l = *pp;

        if (l->owner != h || l->end < in->start || end < l->start) {
            pp = &l->next;
            continue;
        }
        if (l->start < in->start && l->end > end) {
            struct sy_lock *tail = malloc(sizeof(*tail));

            if (tail == NULL) {
                err = -ENOMEM;
                goto out;
            }
            *tail = *l;
            tail->start = end + 1;
            l->end = in->start - 1;
            tail->next = l->next;
            l->next = tail;
            pp = &tail->next;
        } else if (l->start < in->start) {
            l->end = in->start - 1;
            pp = &l->next;
        } else if (l->end > end) {
            l->start = end + 1;
            pp = &l->next;
        } else {
            *pp = l->next;
            free(l);
        }
    }
    if (in->type != P9_LOCK_TYPE_UNLCK) {
        nl = malloc(sizeof(*nl));
        if (nl == NULL) {
            err = -ENOMEM;
            goto out;
        }
        nl->owner = h;
        nl->type = in->type;
        nl->start = in->start;
        nl->end = end;
        nl->proc_id = in->proc_id;
        nl->next = n->locks;
        n->locks = nl;
    }
    *status = P9_LOCK_SUCCESS;

out:
    pthread_mutex_unlock(&sb->lock);
    return err;
}

static int
sy_getlock(struct backend *be, struct be_handle *h,
           const struct p9_tgetlock *in, struct p9_rgetlock *out)
{
    struct sy_backend *sb = sy(be);
    const struct sy_lock *l;
    uint8_t type = in->type;
    uint64_t end;
    int err;

    if (type > P9_LOCK_TYPE_UNLCK) {
        return -EINVAL;
    }
    err = sy_range(in->start, in->length, &end);
    if (err < 0) {
        return err;
    }
    if (type == P9_LOCK_TYPE_UNLCK) {
        type = P9_LOCK_TYPE_WRLCK; /* as the passthrough: see pt_lock.c */
    }
    memset(out, 0, sizeof(*out));
    out->client_id.s = "";
    pthread_mutex_lock(&sb->lock);
    l = sy_conflict(h->n, h, type, in->start, end);
    if (l == NULL) {
        out->type = P9_LOCK_TYPE_UNLCK;
        out->start = in->start;
        out->length = in->length;
        out->proc_id = in->proc_id;
    } else {
        out->type = l->type;
        out->start = l->start;
        out->length = l->end == UINT64_MAX ? 0 : l->end - l->start + 1;
        out->proc_id = l->proc_id;
    }
    pthread_mutex_unlock(&sb->lock);
    return 0;
}

/* ---- lifetime ----------------------------------------------------------------- */

static void
sy_destroy(struct backend *be)
{
    struct sy_backend *sb = sy(be);

    while (sb->all != NULL) {
        sy_node_free(sb, sb->all);
    }
    pthread_mutex_destroy(&sb->lock);
    free(sb);
}

static const struct be_ops sy_ops = {
    .user_get = sy_user_get,
    .user_put = sy_user_put,
    .user_enter = sy_user_enter,
    .root = sy_root,
    .walk1 = sy_walk1,
    .node_get = sy_node_get,
    .node_put = sy_node_put,
    .qid = sy_get_qid,
    .getattr = sy_getattr,
    .setattr = sy_setattr,
    .statfs = sy_statfs,
    .readlink = sy_readlink,
    .open = sy_open,
    .create = sy_create,
    .close = sy_close,
    .read = sy_read,
    .write = sy_write,
    .fsync = sy_fsync,
    .readdir = sy_readdir,
    .mkdir = sy_mkdir,
    .mknod = sy_mknod,
    .symlink = sy_symlink,
    .link = sy_link,
    .renameat = sy_renameat,
    .unlinkat = sy_unlinkat,
    .rename = sy_rename,
    .remove = sy_remove,
    .getxattr = sy_getxattr,
    .listxattr = sy_listxattr,
    .setxattr = sy_setxattr,
    .removexattr = sy_removexattr,
    .lock = sy_lock,
    .getlock = sy_getlock,
    .destroy = sy_destroy,
};

int
synth_backend_new(const struct synth_options *opt, struct backend **out)
{
    struct sy_backend *sb = calloc(1, sizeof(*sb));
    int err;

    if (sb == NULL) {
        return -ENOMEM;
    }
    sb->be.ops = &sy_ops;
    sb->be.priv = sb;
    pthread_mutex_init(&sb->lock, NULL);
    sb->max_bytes =
        opt != NULL && opt->max_bytes ? opt->max_bytes : SY_DEF_BYTES;
    sb->max_nodes =
        opt != NULL && opt->max_nodes ? opt->max_nodes : SY_DEF_NODES;
    sb->readonly = opt != NULL && opt->readonly;
    sb->next_ino = 1;
    sb->root = sy_node_alloc(sb, S_IFDIR | 0755, 0, &err);
    if (sb->root == NULL) {
        pthread_mutex_destroy(&sb->lock);
        free(sb);
        return err;
    }
    sb->root->links = 1; /* never freed before destroy */
    sb->root->uid = 0;
    *out = &sb->be;
    return 0;
}

int
synth_add(struct backend *be, const char *path, uint32_t mode, const void *data,
          size_t len)
{
    struct sy_backend *sb = sy(be);
    struct be_node *dir = sb->root;
    char buf[PATH_MAX];
    char *name;
    char *slash;
    bool ro = sb->readonly;
    int err;

    if (strlen(path) >= sizeof(buf)) {
        return -ENAMETOOLONG;
    }
    strcpy(buf, path);
    name = buf;
    pthread_mutex_lock(&sb->lock);
    while ((slash = strchr(name, '/')) != NULL) {
        struct sy_dirent *e;

        *slash = '\0';
        e = *name ? sy_lookup(dir, name) : NULL;
        if (*name && (e == NULL || !sy_is_dir(e->node))) {
            pthread_mutex_unlock(&sb->lock);
            return e == NULL ? -ENOENT : -ENOTDIR;
        }
        dir = *name ? e->node : dir;
        name = slash + 1;
    }
    pthread_mutex_unlock(&sb->lock);
    sb->readonly = false; /* populating a read-only tree is the point */
    if (S_ISLNK(mode)) {
        err = sy_make(sb, dir, name, S_IFLNK | 0777, 0, data, len, 0, NULL);
    } else {
        err = sy_make(sb, dir, name, mode, 0, NULL, S_ISREG(mode) ? len : 0, 0,
                      NULL);
        if (err == 0 && S_ISREG(mode) && len > 0) {
            struct sy_dirent *e;

            pthread_mutex_lock(&sb->lock);
            e = sy_lookup(dir, name);
            memcpy(e->node->data, data, len);
            pthread_mutex_unlock(&sb->lock);
        }
    }
    sb->readonly = ro;
    return err;
}

void
synth_get_stats(struct backend *be, struct synth_stats *st)
{
    struct sy_backend *sb = sy(be);

    pthread_mutex_lock(&sb->lock);
    st->nodes = sb->nodes;
    st->bytes = sb->bytes;
    st->node_refs = sb->node_refs;
    st->handles = sb->handles;
    st->users = sb->users;
    pthread_mutex_unlock(&sb->lock);
}
