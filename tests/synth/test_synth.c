/* SPDX-License-Identifier: MIT */
/*
 * The synth backend: its contract directly (no server), then a whole
 * in-process server on it through libp9c (tests/server/harness.h with
 * th_make_backend), checking the session leaves no backend reference.
 */
#include "../server/harness.h"

#include <sys/sysmacros.h>

#include "backend/synth/synth.h"

#define OPS(be) ((be)->ops)

static struct backend *
new_be(size_t max_bytes, unsigned max_nodes)
{
    struct synth_options o = {.max_bytes = max_bytes, .max_nodes = max_nodes};
    struct backend *be = NULL;

    if (synth_backend_new(&o, &be) < 0) {
        exit(99);
    }
    return be;
}

static struct be_node *
root_of(struct backend *be, struct p9_qid *q)
{
    struct be_node *r;
    struct p9_qid dummy;

    OPS(be)->root(be, &r, q ? q : &dummy);
    return r;
}

static struct be_node *
walk(struct backend *be, struct be_node *dir, const char *name, int *err)
{
    struct be_node *n = NULL;
    struct p9_qid q;
    int e = OPS(be)->walk1(be, dir, name, &n, &q);

    if (err != NULL) {
        *err = e;
    }
    return e == 0 ? n : NULL;
}

static ssize_t
write_at(struct backend *be, struct be_handle *h, const char *s, uint64_t off)
{
    struct iovec v = {(void *)s, strlen(s)};

    return OPS(be)->write(be, h, &v, 1, off);
}

static ssize_t
read_at(struct backend *be, struct be_handle *h, char *buf, size_t n,
        uint64_t off)
{
    struct iovec v = {buf, n};
    ssize_t r = OPS(be)->read(be, h, &v, 1, off);

    if (r >= 0 && (size_t)r < n) {
        buf[r] = '\0';
    }
    return r;
}

/* create+open 'name' in dir; returns the handle (node put) */
static struct be_handle *
create(struct backend *be, struct be_node *dir, const char *name, int *err)
{
    struct be_handle *h = NULL;
    struct be_node *n = NULL;
    struct p9_qid q;
    uint32_t iounit;

    *err = OPS(be)->create(be, dir, name, P9_DOTL_RDWR, 0644, 0, &n, &h, &q,
                           &iounit);
    if (*err == 0) {
        OPS(be)->node_put(be, n);
    }
    return h;
}

/* readdir collecting names into 'out' (space-separated), up to 'max'
 * entries; returns the resume offset */
struct collect {
    char out[1024];
    int left;
    uint64_t last;
};

static int
collect_fn(void *ctx, const struct p9_qid *qid, uint64_t off, uint8_t type,
           const char *name, size_t namelen)
{
    struct collect *c = ctx;

    (void)qid;
    (void)type;
    if (c->left == 0) {
        return 1;
    }
    c->left--;
    strncat(c->out, name, namelen);
    strcat(c->out, " ");
    c->last = off;
    return 0;
}

static uint64_t
list(struct backend *be, struct be_handle *h, uint64_t off, int max, char *out,
     size_t size)
{
    struct collect c = {.left = max, .last = off};

    c.out[0] = '\0';
    OPS(be)->readdir(be, h, off, collect_fn, &c);
    snprintf(out, size, "%s", c.out);
    return c.last;
}

static struct be_handle *
open_node(struct backend *be, struct be_node *n, uint32_t flags, int *err)
{
    struct be_handle *h = NULL;
    struct p9_qid q;
    uint32_t iounit;

    *err = OPS(be)->open(be, n, flags, &h, &q, &iounit);
    return h;
}

static void
test_basics(void)
{
    struct backend *be = new_be(0, 0);
    struct p9_qid q, q2;
    struct be_node *root = root_of(be, &q);
    struct p9_rgetattr a;
    struct be_handle *h;
    struct be_node *n;
    char buf[64];
    int err;

    tap_ok(q.type == P9_QTDIR && q.path == 1, "root qid: dir, path 1");
    tap_ok(OPS(be)->mkdir(be, root, "a", 0755, 7, &q2) == 0 && q2.path == 2 &&
               q2.type == P9_QTDIR,
           "mkdir: next inode number");
    n = walk(be, root, "a", NULL);
    h = create(be, n, "f", &err);
    tap_ok(err == 0 && h != NULL, "create a/f");
    tap_ok(write_at(be, h, "hello", 0) == 5 && write_at(be, h, "!", 10) == 1,
           "write, and a write past the end");
    tap_ok(read_at(be, h, buf, sizeof(buf), 0) == 11 &&
               memcmp(buf, "hello\0\0\0\0\0!", 11) == 0,
           "read back, hole is zeros");
    OPS(be)->close(be, h);
    {
        struct be_node *f = walk(be, n, "f", NULL);

        OPS(be)->getattr(be, f, NULL, P9_GETATTR_ALL, &a);
        tap_ok(a.size == 11 && a.nlink == 1 && S_ISREG(a.mode) &&
                   (a.mode & 07777) == 0644 && a.qid.version > 0,
               "getattr of the file");
        OPS(be)->node_put(be, f);
    }
    OPS(be)->getattr(be, n, NULL, P9_GETATTR_ALL, &a);
    tap_ok(S_ISDIR(a.mode) && a.nlink == 2 && a.gid == 7,
           "directory: nlink 2, the gid asked for");
    OPS(be)->getattr(be, root, NULL, P9_GETATTR_ALL, &a);
    tap_ok(a.nlink == 3, "root nlink counts the subdirectory");
    {
        struct be_node *up = walk(be, n, "..", NULL);
        struct be_node *up2 = walk(be, root, "..", NULL);

        tap_ok(up == root && up2 == root, "'..' of a/ is the root, of the "
                                          "root the root");
        OPS(be)->node_put(be, up);
        OPS(be)->node_put(be, up2);
    }
    walk(be, root, "missing", &err);
    tap_ok(err == -ENOENT, "walk to a missing name: ENOENT");
    OPS(be)->node_put(be, n);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/* Two backends given the same operations report the same qids/listings. */
static uint64_t
script(char *listing, size_t size)
{
    struct backend *be = new_be(0, 0);
    struct be_node *root = root_of(be, NULL);
    struct p9_qid q;
    struct be_handle *h;
    uint64_t acc = 0;
    int err;

    OPS(be)->mkdir(be, root, "d", 0755, 0, &q);
    acc = acc * 31 + q.path;
    OPS(be)->symlink(be, root, "s", "d", 0, &q);
    acc = acc * 31 + q.path;
    h = create(be, root, "f", &err);
    write_at(be, h, "x", 0);
    OPS(be)->close(be, h);
    OPS(be)->renameat(be, root, "f", root, "g");
    h = open_node(be, root, P9_DOTL_RDONLY, &err);
    list(be, h, 0, 100, listing, size);
    OPS(be)->close(be, h);
    {
        struct be_node *g = walk(be, root, "g", NULL);
        struct p9_rgetattr a;

        OPS(be)->getattr(be, g, NULL, P9_GETATTR_ALL, &a);
        acc = acc * 31 + a.qid.path;
        acc = acc * 31 + a.qid.version;
        acc = acc * 31 + a.mtime_sec;
        OPS(be)->node_put(be, g);
    }
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
    return acc;
}

static void
test_deterministic(void)
{
    char l1[256], l2[256];
    uint64_t a = script(l1, sizeof(l1));
    uint64_t b = script(l2, sizeof(l2));

    tap_ok(a == b && strcmp(l1, l2) == 0, "same operations, same qids, "
                                          "times and listing");
    tap_ok(strcmp(l1, ". .. d s g ") == 0, "listing in link order: %s", l1);
}

static void
test_readdir_offsets(void)
{
    struct backend *be = new_be(0, 0);
    struct be_node *root = root_of(be, NULL);
    struct be_handle *d;
    char names[16], got[512], rest[512];
    uint64_t off;
    int err;

    for (int i = 0; i < 8; i++) {
        snprintf(names, sizeof(names), "e%d", i);
        OPS(be)->mknod(be, root, names, S_IFREG | 0644, 0, 0, 0, NULL);
    }
    d = open_node(be, root, P9_DOTL_RDONLY, &err);
    off = list(be, d, 0, 5, got, sizeof(got));
    tap_ok(strcmp(got, ". .. e0 e1 e2 ") == 0, "first part: %s", got);
    /* remove one already returned and one not yet, add one */
    OPS(be)->unlinkat(be, root, "e1", 0);
    OPS(be)->unlinkat(be, root, "e4", 0);
    OPS(be)->mkdir(be, root, "late", 0755, 0, NULL);
    list(be, d, off, 100, rest, sizeof(rest));
    tap_ok(strcmp(rest, "e3 e5 e6 e7 late ") == 0,
           "resumed after changes: no survivor skipped or repeated (%s)", rest);
    list(be, d, 1, 1, got, sizeof(got));
    tap_ok(strcmp(got, ".. ") == 0, "offset 1 resumes at '..'");
    list(be, d, 1000, 10, got, sizeof(got));
    tap_ok(got[0] == '\0', "an offset past the end: nothing");
    OPS(be)->close(be, d);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

static void
test_links_and_unlink(void)
{
    struct backend *be = new_be(0, 0);
    struct be_node *root = root_of(be, NULL);
    struct synth_stats st0, st;
    struct p9_rgetattr a;
    struct be_handle *h;
    struct be_node *f;
    char buf[32];
    int err;

    h = create(be, root, "f", &err);
    write_at(be, h, "data", 0);
    f = walk(be, root, "f", NULL);
    tap_ok(OPS(be)->link(be, root, "g", f) == 0, "link f -> g");
    tap_ok(OPS(be)->link(be, root, "g", f) == -EEXIST, "link over a name: "
                                                       "EEXIST");
    OPS(be)->getattr(be, f, NULL, P9_GETATTR_ALL, &a);
    tap_ok(a.nlink == 2, "nlink 2");
    synth_get_stats(be, &st0);
    tap_ok(OPS(be)->unlinkat(be, root, "f", 0) == 0 &&
               OPS(be)->unlinkat(be, root, "g", 0) == 0,
           "unlink both names");
    tap_ok(read_at(be, h, buf, sizeof(buf), 0) == 4 && strcmp(buf, "data") == 0,
           "still readable through the open handle");
    tap_ok(OPS(be)->link(be, root, "h", f) == -ENOENT,
           "no new link to an unlinked file");
    OPS(be)->close(be, h);
    synth_get_stats(be, &st);
    tap_ok(st.nodes == st0.nodes, "node kept while the core holds a ref");
    OPS(be)->node_put(be, f);
    synth_get_stats(be, &st);
    tap_ok(st.nodes == st0.nodes - 1 && st.bytes == 0,
           "freed with the last reference (bytes back to %zu)", st.bytes);
    {
        struct be_node *d;

        OPS(be)->mkdir(be, root, "d", 0755, 0, NULL);
        d = walk(be, root, "d", NULL);
        OPS(be)->mkdir(be, d, "sub", 0755, 0, NULL);
        tap_ok(OPS(be)->unlinkat(be, root, "d", P9_DOTL_AT_REMOVEDIR) ==
                   -ENOTEMPTY,
               "rmdir of a non-empty directory: ENOTEMPTY");
        tap_ok(OPS(be)->unlinkat(be, root, "d", 0) == -EISDIR,
               "unlink of a directory: EISDIR");
        tap_ok(OPS(be)->unlinkat(be, d, "sub", P9_DOTL_AT_REMOVEDIR) == 0 &&
                   OPS(be)->remove(be, d) == 0,
               "rmdir sub, Tremove d");
        tap_ok(OPS(be)->mkdir(be, d, "x", 0755, 0, NULL) == -ENOENT,
               "nothing can be created in a removed directory");
        walk(be, d, "..", &err);
        tap_ok(err == -ENOENT, "'..' of a removed directory: ENOENT");
        tap_ok(OPS(be)->remove(be, root) == -EBUSY, "Tremove of the root: "
                                                    "EBUSY");
        OPS(be)->node_put(be, d);
    }
    OPS(be)->node_put(be, root);
    synth_get_stats(be, &st);
    tap_ok(st.node_refs == 0 && st.handles == 0 && st.nodes == 1,
           "only the root is left");
    OPS(be)->destroy(be);
}

static void
test_rename(void)
{
    struct backend *be = new_be(0, 0);
    struct be_node *root = root_of(be, NULL);
    struct be_node *a, *b, *f, *up;
    struct be_handle *h;
    char buf[16];
    int err;

    OPS(be)->mkdir(be, root, "a", 0755, 0, NULL);
    OPS(be)->mkdir(be, root, "b", 0755, 0, NULL);
    a = walk(be, root, "a", NULL);
    b = walk(be, root, "b", NULL);
    OPS(be)->mkdir(be, a, "in", 0755, 0, NULL);
    h = create(be, root, "f", &err);
    write_at(be, h, "F", 0);
    OPS(be)->close(be, h);
    h = create(be, root, "g", &err);
    write_at(be, h, "G", 0);
    OPS(be)->close(be, h);

    tap_ok(OPS(be)->renameat(be, root, "f", root, "g") == 0,
           "renameat over an existing file");
    f = walk(be, root, "g", NULL);
    h = open_node(be, f, P9_DOTL_RDONLY, &err);
    tap_ok(h != NULL && read_at(be, h, buf, sizeof(buf), 0) == 1 &&
               buf[0] == 'F',
           "the target now holds the moved file");
    OPS(be)->close(be, h);
    walk(be, root, "f", &err);
    tap_ok(err == -ENOENT, "the old name is gone");
    tap_ok(OPS(be)->renameat(be, root, "a", a, "x") == -EINVAL,
           "a directory into itself: EINVAL");
    tap_ok(OPS(be)->renameat(be, root, "b", root, "a") == -ENOTEMPTY,
           "a directory over a non-empty one: ENOTEMPTY");
    tap_ok(OPS(be)->renameat(be, root, "g", root, "b") == -EISDIR,
           "a file over a directory: EISDIR");
    tap_ok(OPS(be)->renameat(be, root, "b", root, "g") == -ENOTDIR,
           "a directory over a file: ENOTDIR");
    tap_ok(OPS(be)->rename(be, a, b, "moved") == 0, "Trename a -> b/moved");
    up = walk(be, a, "..", NULL);
    tap_ok(up == b, "'..' of the moved directory is its new parent");
    OPS(be)->node_put(be, up);
    tap_ok(OPS(be)->rename(be, f, b, "ff") == 0, "Trename of a file");
    walk(be, root, "g", &err);
    tap_ok(err == -ENOENT, "gone from its old directory");
    tap_ok(OPS(be)->renameat(be, b, "ff", b, "ff") == 0,
           "rename onto itself: nothing to do");
    OPS(be)->node_put(be, f);
    OPS(be)->node_put(be, a);
    OPS(be)->node_put(be, b);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/* Renaming over an existing name when the directory's entry array must
 * grow for the new name (regression: the old entry pointer dangled). */
static void
test_rename_full_dir(void)
{
    struct backend *be = new_be(0, 0);
    struct be_node *root = root_of(be, NULL);
    struct be_handle *d;
    char name[8], got[256];
    int err;

    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "e%d", i);
        OPS(be)->mknod(be, root, name, S_IFREG | 0644, 0, 0, 0, NULL);
    }
    tap_ok(OPS(be)->renameat(be, root, "e0", root, "e7") == 0,
           "rename over a name in a full directory");
    d = open_node(be, root, P9_DOTL_RDONLY, &err);
    list(be, d, 0, 100, got, sizeof(got));
    tap_ok(strcmp(got, ". .. e1 e2 e3 e4 e5 e6 e7 ") == 0, "listing: %s", got);
    OPS(be)->close(be, d);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

static void
test_special(void)
{
    struct backend *be = new_be(0, 0);
    struct be_node *root = root_of(be, NULL);
    struct p9_rgetattr a;
    struct be_node *n;
    char buf[64];
    int err;

    tap_ok(OPS(be)->symlink(be, root, "s", "../target", 0, NULL) == 0,
           "symlink");
    n = walk(be, root, "s", NULL);
    tap_ok(OPS(be)->readlink(be, n, buf, sizeof(buf)) == 9 &&
               memcmp(buf, "../target", 9) == 0,
           "readlink");
    tap_ok(open_node(be, n, P9_DOTL_RDONLY, &err) == NULL && err == -ELOOP,
           "open of a symlink: ELOOP");
    OPS(be)->node_put(be, n);
    tap_ok(OPS(be)->mknod(be, root, "c", S_IFCHR | 0600, 4, 5, 0, NULL) == 0 &&
               OPS(be)->mknod(be, root, "p", S_IFIFO | 0600, 0, 0, 0, NULL) ==
                   0,
           "mknod of a char device and a FIFO");
    n = walk(be, root, "c", NULL);
    OPS(be)->getattr(be, n, NULL, P9_GETATTR_ALL, &a);
    tap_ok(S_ISCHR(a.mode) && a.rdev == makedev(4, 5), "device attributes");
    tap_ok(open_node(be, n, P9_DOTL_RDONLY, &err) == NULL && err == -ENXIO,
           "open of a device: ENXIO (attributes only)");
    tap_ok(OPS(be)->readlink(be, n, buf, sizeof(buf)) == -EINVAL,
           "readlink of a non-symlink: EINVAL");
    OPS(be)->node_put(be, n);
    tap_ok(OPS(be)->mknod(be, root, "dd", S_IFDIR | 0755, 0, 0, 0, NULL) ==
               -EPERM,
           "mknod of a directory: EPERM");
    tap_ok(open_node(be, root, P9_DOTL_WRONLY, &err) == NULL && err == -EISDIR,
           "open of a directory for writing: EISDIR");
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

static void
test_xattrs(void)
{
    struct backend *be = new_be(0, 0);
    struct be_node *root = root_of(be, NULL);
    char buf[64];

    tap_ok(OPS(be)->setxattr(be, root, "user.a", "1", 1, P9_XATTR_CREATE) == 0,
           "setxattr CREATE");
    tap_ok(OPS(be)->setxattr(be, root, "user.a", "2", 1, P9_XATTR_CREATE) ==
               -EEXIST,
           "CREATE of an existing name: EEXIST");
    tap_ok(OPS(be)->setxattr(be, root, "user.b", "2", 1, P9_XATTR_REPLACE) ==
               -ENODATA,
           "REPLACE of a missing name: ENODATA");
    tap_ok(OPS(be)->setxattr(be, root, "user.b", "long", 4, 0) == 0,
           "setxattr");
    tap_ok(OPS(be)->getxattr(be, root, "user.b", NULL, 0) == 4 &&
               OPS(be)->getxattr(be, root, "user.b", buf, 2) == -ERANGE &&
               OPS(be)->getxattr(be, root, "user.b", buf, sizeof(buf)) == 4 &&
               memcmp(buf, "long", 4) == 0,
           "getxattr: size, ERANGE, value");
    tap_ok(OPS(be)->listxattr(be, root, NULL, 0) == 14 &&
               OPS(be)->listxattr(be, root, buf, sizeof(buf)) == 14 &&
               memcmp(buf, "user.a\0user.b\0", 14) == 0,
           "listxattr");
    tap_ok(OPS(be)->removexattr(be, root, "user.a") == 0 &&
               OPS(be)->removexattr(be, root, "user.a") == -ENODATA &&
               OPS(be)->getxattr(be, root, "user.a", NULL, 0) == -ENODATA,
           "removexattr");
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

static void
test_caps(void)
{
    struct backend *be = new_be(100, 4);
    struct be_node *root = root_of(be, NULL);
    struct synth_stats st0, st;
    struct p9_rstatfs sf;
    struct p9_tsetattr sa = {.valid = P9_SETATTR_SIZE, .size = 1000};
    char big[200];
    struct be_handle *h;
    struct be_node *f;
    int err;

    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    h = create(be, root, "f", &err);
    tap_ok(write_at(be, h, "0123456789", 0) == 10, "a write under the cap");
    synth_get_stats(be, &st0);
    tap_ok(write_at(be, h, big, 0) == -ENOSPC, "a write over the byte cap: "
                                               "ENOSPC");
    synth_get_stats(be, &st);
    tap_ok(st.bytes == st0.bytes, "and nothing was charged");
    f = walk(be, root, "f", NULL);
    tap_ok(OPS(be)->setattr(be, f, NULL, &sa) == -ENOSPC,
           "truncate up over the cap: ENOSPC");
    tap_ok(write_at(be, h, "x", (uint64_t)1 << 50) == -EFBIG,
           "a write at 2^50: EFBIG");
    tap_ok(OPS(be)->setxattr(be, root, "user.x", big, 150, 0) == -ENOSPC,
           "an xattr over the cap: ENOSPC");
    OPS(be)->close(be, h);
    OPS(be)->node_put(be, f);
    tap_ok(OPS(be)->mkdir(be, root, "d1", 0755, 0, NULL) == 0 &&
               OPS(be)->mkdir(be, root, "d2", 0755, 0, NULL) == 0,
           "nodes under the cap");
    tap_ok(OPS(be)->mkdir(be, root, "d3", 0755, 0, NULL) == -ENOSPC,
           "a node over the node cap: ENOSPC");
    OPS(be)->statfs(be, root, &sf);
    tap_ok(sf.files == 4 && sf.ffree == 0, "statfs: files %llu, ffree %llu",
           (unsigned long long)sf.files, (unsigned long long)sf.ffree);
    tap_ok(OPS(be)->unlinkat(be, root, "d2", P9_DOTL_AT_REMOVEDIR) == 0 &&
               OPS(be)->mkdir(be, root, "d3", 0755, 0, NULL) == 0,
           "a freed node can be used again");
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

static void
test_locks(void)
{
    struct backend *be = new_be(0, 0);
    struct be_node *root = root_of(be, NULL);
    struct p9_tlock l = {.type = P9_LOCK_TYPE_WRLCK, .start = 0, .length = 10};
    struct p9_tgetlock g = {.type = P9_LOCK_TYPE_RDLCK, .start = 5};
    struct p9_rgetlock out;
    struct be_handle *h1, *h2;
    struct be_node *f;
    uint8_t status = 99;
    int err;

    h1 = create(be, root, "f", &err);
    f = walk(be, root, "f", NULL);
    h2 = open_node(be, f, P9_DOTL_RDWR, &err);
    tap_ok(OPS(be)->lock(be, h1, &l, &status) == 0 && status == P9_LOCK_SUCCESS,
           "write lock [0,10)");
    l.type = P9_LOCK_TYPE_RDLCK;
    l.start = 5;
    l.length = 0;
    tap_ok(OPS(be)->lock(be, h2, &l, &status) == 0 && status == P9_LOCK_BLOCKED,
           "a conflicting read lock: BLOCKED");
    tap_ok(OPS(be)->getlock(be, h2, &g, &out) == 0 &&
               out.type == P9_LOCK_TYPE_WRLCK && out.start == 0 &&
               out.length == 10,
           "getlock reports the holder's range");
    l.start = 10;
    tap_ok(OPS(be)->lock(be, h2, &l, &status) == 0 && status == P9_LOCK_SUCCESS,
           "a read lock after it: SUCCESS");
    {
        struct p9_tlock u = {
            .type = P9_LOCK_TYPE_UNLCK, .start = 2, .length = 3};

        tap_ok(OPS(be)->lock(be, h1, &u, &status) == 0 &&
                   status == P9_LOCK_SUCCESS,
               "unlock the middle [2,5)");
        g.start = 3;
        g.length = 1;
        tap_ok(OPS(be)->getlock(be, h2, &g, &out) == 0 &&
                   out.type == P9_LOCK_TYPE_UNLCK,
               "the hole is free");
        g.start = 6;
        tap_ok(OPS(be)->getlock(be, h2, &g, &out) == 0 &&
                   out.type == P9_LOCK_TYPE_WRLCK && out.start == 5 &&
                   out.length == 5,
               "the tail [5,10) still held");
    }
    OPS(be)->close(be, h1);
    l.start = 0;
    l.type = P9_LOCK_TYPE_WRLCK;
    tap_ok(OPS(be)->lock(be, h2, &l, &status) == 0 && status == P9_LOCK_SUCCESS,
           "close released the holder's locks");
    OPS(be)->close(be, h2);
    OPS(be)->node_put(be, f);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

static void
test_readonly(void)
{
    struct synth_options o = {.readonly = true};
    struct backend *be;
    struct be_node *root;
    int err;

    synth_backend_new(&o, &be);
    tap_ok(synth_add(be, "f", S_IFREG | 0644, "abc", 3) == 0,
           "synth_add populates a read-only tree");
    root = root_of(be, NULL);
    tap_ok(OPS(be)->mkdir(be, root, "d", 0755, 0, NULL) == -EROFS,
           "read-only: mkdir EROFS");
    tap_ok(create(be, root, "g", &err) == NULL && err == -EROFS,
           "read-only: create EROFS");
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/* ---- through a whole server ----------------------------------------------- */

static struct backend *last_be;

static int
make_synth(const struct th_export *ex, struct backend **out)
{
    int err;

    (void)ex;
    err = synth_backend_new(NULL, out);
    if (err == 0) {
        err = synth_add(*out, "hello.txt", S_IFREG | 0644, "hi there\n", 9);
    }
    last_be = *out;
    return err;
}

/*
 * Each case below has a fixture of its own, made on the backend directly
 * (synth_add), and a session of its own: one failing case does not take
 * the others with it.  Only the last check, that the cases' removals left
 * nothing behind, depends on them all.
 */
static struct th_srv *srv_s;

/* A session on the synth export, or NULL (reported). */
static struct p9c_fid *
srv_mount(struct p9c_conn **c, const char *what)
{
    struct p9c_fid *root = NULL;
    int err = th_mount(srv_s, "synth", c, &root);

    if (err < 0) {
        tap_ok(false, "%s: mount the synth export (%d)", what, err);
        return NULL;
    }
    return root;
}

static void
srv_unmount(struct p9c_conn *c, struct p9c_fid *root)
{
    p9c_clunk(root);
    p9c_close(c);
}

/* A fixture on the backend itself (not through the server under test). */
static bool
srv_fixture(const char *path, uint32_t mode, const char *data)
{
    int err = synth_add(last_be, path, mode, data, data ? strlen(data) : 0);

    if (err < 0) {
        tap_diag("fixture %s: %d", path, err);
    }
    return err == 0;
}

static void
srv_statfs_and_read(void)
{
    struct p9c_conn *c;
    struct p9c_fid *root = srv_mount(&c, "statfs");
    struct p9c_fid *f = NULL;
    struct p9_rstatfs sf;
    char buf[64];

    if (root == NULL) {
        return;
    }
    tap_ok(p9c_statfs(root, &sf) == 0 && sf.type == 0x53594e54u,
           "statfs says synth");
    tap_ok(p9c_walk(root, "hello.txt", &f) == 0 && p9c_open(f, 0) == 0 &&
               p9c_pread(f, buf, sizeof(buf), 0) == 9 &&
               memcmp(buf, "hi there\n", 9) == 0,
           "read a populated file");
    p9c_clunk(f);
    srv_unmount(c, root);
}

static void
srv_mkdir_rmdir(void)
{
    struct p9c_conn *c;
    struct p9c_fid *root = srv_mount(&c, "mkdir");
    struct p9c_fid *d = NULL;

    if (root == NULL) {
        return;
    }
    tap_ok(p9c_mkdir(root, "mk", 0755, 0, NULL) == 0 &&
               p9c_walk(root, "mk", &d) == 0,
           "Tmkdir, walk into it");
    p9c_clunk(d);
    tap_ok(srv_fixture("full", S_IFDIR | 0755, NULL) &&
               srv_fixture("full/f", S_IFREG | 0644, "x") &&
               p9c_unlinkat(root, "full", P9_DOTL_AT_REMOVEDIR) == -ENOTEMPTY,
           "rmdir of a non-empty directory: ENOTEMPTY");
    tap_ok(p9c_unlinkat(root, "mk", P9_DOTL_AT_REMOVEDIR) == 0,
           "rmdir of an empty directory");
    /* cleanup: the last check counts what is left */
    if (p9c_walk(root, "full", &d) == 0) {
        p9c_unlinkat(d, "f", 0);
        p9c_clunk(d);
    }
    p9c_unlinkat(root, "full", P9_DOTL_AT_REMOVEDIR);
    srv_unmount(c, root);
}

static void
srv_create_write(void)
{
    struct p9c_conn *c;
    struct p9c_fid *root = srv_mount(&c, "create");
    struct p9c_fid *f = NULL;
    char buf[16] = "";

    if (root == NULL) {
        return;
    }
    tap_ok(p9c_walk(root, "", &f) == 0 &&
               p9c_create(f, "new", P9_DOTL_RDWR, 0600, 0) == 0 &&
               p9c_pwrite(f, "written", 7, 0) == 7 &&
               p9c_pread(f, buf, sizeof(buf), 0) == 7 &&
               memcmp(buf, "written", 7) == 0,
           "Tlcreate, Twrite, Tread");
    p9c_clunk(f);
    tap_ok(p9c_unlinkat(root, "new", 0) == 0, "Tunlinkat of a file");
    srv_unmount(c, root);
}

static void
srv_symlink_readlink(void)
{
    struct p9c_conn *c;
    struct p9c_fid *root = srv_mount(&c, "symlink");
    struct p9c_fid *f = NULL;
    char buf[16];

    if (root == NULL) {
        return;
    }
    tap_ok(p9c_symlink(root, "link", "target", 0, NULL) == 0, "Tsymlink");
    tap_ok(srv_fixture("link2", S_IFLNK | 0777, "new") &&
               p9c_walk(root, "link2", &f) == 0 &&
               p9c_readlink(f, buf, sizeof(buf)) == 3 &&
               memcmp(buf, "new", 3) == 0,
           "Treadlink");
    p9c_clunk(f);
    tap_ok(p9c_unlinkat(root, "link", 0) == 0 &&
               p9c_unlinkat(root, "link2", 0) == 0,
           "Tunlinkat of symlinks");
    srv_unmount(c, root);
}

static void
srv_xattr(void)
{
    struct p9c_conn *c;
    struct p9c_fid *root = srv_mount(&c, "xattr");
    struct p9c_fid *f = NULL;
    char buf[16];

    if (root == NULL) {
        return;
    }
    tap_ok(srv_fixture("xa", S_IFREG | 0644, "") &&
               p9c_walk(root, "xa", &f) == 0 &&
               p9c_xattr_set(f, "user.k", "v", 1, 0) == 0 &&
               p9c_xattr_get(f, "user.k", buf, sizeof(buf)) == 1 &&
               buf[0] == 'v',
           "xattr set and get");
    p9c_clunk(f);
    p9c_unlinkat(root, "xa", 0);
    srv_unmount(c, root);
}

static void
srv_rename_readdir(void)
{
    struct p9c_conn *c;
    struct p9c_fid *root = srv_mount(&c, "rename");
    struct p9c_fid *d = NULL, *f = NULL;
    struct p9c_dir *it = NULL;
    struct p9c_dirent de;
    char names[256] = "";

    if (root == NULL) {
        return;
    }
    if (!srv_fixture("rd", S_IFDIR | 0755, NULL) ||
        !srv_fixture("rd/a", S_IFREG | 0644, "a") ||
        !srv_fixture("rd/b", S_IFREG | 0644, "b") ||
        p9c_walk(root, "rd", &d) < 0) {
        tap_ok(false, "rename fixture");
        srv_unmount(c, root);
        return;
    }
    tap_ok(p9c_renameat(d, "a", d, "renamed") == 0, "Trenameat");
    tap_ok(p9c_walk(d, "", &f) == 0 && p9c_open(f, P9_DOTL_DIRECTORY) == 0 &&
               p9c_dir_open(f, 64, &it) == 0,
           "open the directory");
    while (it != NULL && p9c_dir_next(it, &de) == 1) {
        strcat(names, de.name);
        strcat(names, " ");
    }
    if (it != NULL) {
        p9c_dir_close(it);
    }
    p9c_clunk(f);
    tap_ok(strcmp(names, ". .. b renamed ") == 0 ||
               strcmp(names, ". .. renamed b ") == 0,
           "Treaddir in small chunks lists each entry once: %s", names);
    p9c_unlinkat(d, "renamed", 0);
    p9c_unlinkat(d, "a", 0);
    p9c_unlinkat(d, "b", 0);
    p9c_clunk(d);
    p9c_unlinkat(root, "rd", P9_DOTL_AT_REMOVEDIR);
    srv_unmount(c, root);
}

static void
test_server(void)
{
    struct th_export ex = {.name = "synth", .path = "/synth"};
    struct synth_stats st;

    th_make_backend = make_synth;
    srv_s = th_start(NULL, &ex, 1, NULL);
    srv_statfs_and_read();
    srv_mkdir_rmdir();
    srv_create_write();
    srv_symlink_readlink();
    srv_xattr();
    srv_rename_readdir();
    for (int i = 0; i < 2000 && atomic_load(&srv_s->srv->nconns) > 0; i++) {
        usleep(5000);
    }
    synth_get_stats(last_be, &st);
    tap_ok(st.node_refs == 0 && st.handles == 0 && st.users == 0,
           "after the sessions: %ld node refs, %ld handles, %ld users",
           st.node_refs, st.handles, st.users);
    tap_ok(st.nodes == 2, "nodes left: root and hello.txt (%u)", st.nodes);
    tap_ok(th_stop(srv_s) == 0, "server stops");
}

int
main(void)
{
    test_basics();
    test_deterministic();
    test_readdir_offsets();
    test_links_and_unlink();
    test_rename();
    test_rename_full_dir();
    test_special();
    test_xattrs();
    test_caps();
    test_locks();
    test_readonly();
    test_server();
    return tap_done();
}
