/* SPDX-License-Identifier: MIT */
/*
 * Issue 13: the listing cache (pt_dircache.c) serves a repeated listing of
 * an unchanged directory without reading it again.  These tests fail if a
 * listing is ever stale: the host adds, removes, renames entries between
 * listings, many times within one clock tick; a directory is replaced by
 * another under the same name; a listing is paused mid-snapshot and
 * resumed, also from another handle at a cookie; a directory too large to
 * keep.  They also count: an unchanged directory is a cache hit, and the
 * cache stays within its bytes.
 *
 * The export is under $TMPDIR (or /tmp); the cache works only on tmpfs,
 * ext4, xfs and btrfs, and the counting checks say so when it is off.
 */
#include "pt_test.h"

#include <sys/statfs.h>

#include "backend/passthrough/pt.h"

static char *exp_root;

static struct be_handle *
xopen(struct backend *be, struct be_node *n, struct be_limits *lim)
{
    struct be_handle *h = NULL;
    struct p9_qid q;
    uint32_t iou;
    int err =
        OPS(be)->open(be, n, P9_DOTL_RDONLY | P9_DOTL_DIRECTORY, &h, &q, &iou);

    if (err < 0) {
        tap_diag("open failed: %s", strerror(-err));
        return NULL;
    }
    if (lim != NULL && OPS(be)->handle_limits(be, h, lim) < 0) {
        OPS(be)->close(be, h);
        return NULL;
    }
    return h;
}

/* List dir (relative to the root) through a new handle, 'limit' entries
 * per call; the names (without . and ..) go to c. */
static int
list(struct backend *be, struct be_node *root, const char *dir, struct dcoll *c,
     size_t limit)
{
    struct be_node *d = NULL;
    struct be_handle *h;
    int err = walkp(be, root, dir, &d);

    if (err < 0) {
        return err;
    }
    h = xopen(be, d, NULL);
    OPS(be)->node_put(be, d);
    if (h == NULL) {
        return -EIO;
    }
    dcoll_free(c);
    err = dcoll_all(be, h, c, limit);
    OPS(be)->close(be, h);
    return err;
}

/* Does the listing c hold exactly the host's entries of dir? */
static bool
exact(const struct dcoll *c, const char *dir)
{
    char p[700];
    int n;
    size_t mine = 0;

    snprintf(p, sizeof(p), "%s/%s", exp_root, dir);
    n = count_entries(p);
    for (size_t i = 0; i < c->count; i++) {
        char q[1000];
        struct stat st;

        if (strcmp(c->names[i], ".") == 0 || strcmp(c->names[i], "..") == 0) {
            continue;
        }
        snprintf(q, sizeof(q), "%s/%s", p, c->names[i]);
        if (lstat(q, &st) < 0) {
            return false; /* listed, but not there */
        }
        mine++;
    }
    return n >= 0 && mine == (size_t)n;
}

static void
make_files(const char *dir, int n, const char *prefix)
{
    char p[700];

    snprintf(p, sizeof(p), "%s/%s", exp_root, dir);
    mkdir(p, 0755);
    for (int i = 0; i < n; i++) {
        char name[64];

        snprintf(name, sizeof(name), "%s%05d", prefix, i);
        put_file(p, name, "");
    }
}

static unsigned long
hits(struct backend *be)
{
    return atomic_load(&pt_be(be)->st_dc_hits);
}

static void
test_unchanged_and_changed(struct backend *be, struct be_node *root, bool on)
{
    struct dcoll c = {0};
    char p[800];
    unsigned long h0;
    int err;

    make_files("a", 500, "f");
    usleep(200000); /* older than the racy window */
    err = list(be, root, "a", &c, 0);
    tap_ok(err == 0 && c.count == 502 && exact(&c, "a"),
           "first listing: exact (%zu)", c.count);
    h0 = hits(be);
    err = list(be, root, "a", &c, 0);
    tap_ok(err == 0 && c.count == 502 && exact(&c, "a"),
           "second listing: exact (%zu)", c.count);
    tap_ok(!on || hits(be) == h0 + 1,
           "second listing of the unchanged directory is a cache hit "
           "(%lu)%s",
           hits(be) - h0, on ? "" : " # SKIP cache off on this file system");

    /* the host adds, removes, renames: every listing sees it */
    snprintf(p, sizeof(p), "%s/a", exp_root);
    put_file(p, "added-by-host", "");
    err = list(be, root, "a", &c, 0);
    tap_ok(err == 0 && c.count == 503 && dcoll_has(&c, "added-by-host") &&
               exact(&c, "a"),
           "host create: listed (%zu)", c.count);
    snprintf(p, sizeof(p), "%s/a/f00007", exp_root);
    unlink(p);
    err = list(be, root, "a", &c, 0);
    tap_ok(err == 0 && c.count == 502 && !dcoll_has(&c, "f00007") &&
               exact(&c, "a"),
           "host unlink: gone (%zu)", c.count);
    {
        char q[800];

        snprintf(p, sizeof(p), "%s/a/f00008", exp_root);
        snprintf(q, sizeof(q), "%s/a/renamed", exp_root);
        rename(p, q);
    }
    err = list(be, root, "a", &c, 0);
    tap_ok(err == 0 && dcoll_has(&c, "renamed") && !dcoll_has(&c, "f00008") &&
               exact(&c, "a"),
           "host rename: new name, old gone (%zu)", c.count);
    dcoll_free(&c);
}

/* Many changes within one clock tick: timestamps alone could not tell
 * them apart (on kernels without multigrain timestamps); the racy window
 * must. */
static void
test_same_tick(struct backend *be, struct be_node *root)
{
    struct dcoll c = {0};
    char p[700];
    int bad = 0;

    make_files("t", 50, "g");
    usleep(200000);
    list(be, root, "t", &c, 0); /* cached */
    snprintf(p, sizeof(p), "%s/t", exp_root);
    for (int i = 0; i < 200; i++) {
        char name[32];

        snprintf(name, sizeof(name), "tick%03d", i);
        put_file(p, name, "");
        if (list(be, root, "t", &c, 0) != 0 || !dcoll_has(&c, name) ||
            !exact(&c, "t")) {
            bad++;
        }
        if (i % 3 == 0) {
            char q[800];

            snprintf(q, sizeof(q), "%s/%s", p, name);
            unlink(q);
            if (list(be, root, "t", &c, 0) != 0 || dcoll_has(&c, name) ||
                !exact(&c, "t")) {
                bad++;
            }
        }
    }
    tap_ok(bad == 0, "200 host changes, each listed at once: none stale (%d)",
           bad);
    /* Kernels before multigrain timestamps (6.13) stamp directory times
     * from a coarse clock: a change right after a listing can leave them
     * equal.  So a directory changed within the last 100 ms is never
     * kept; the host kernel here may not need it, this checks the rule. */
    {
        unsigned long h0;

        put_file(p, "fresh", "");
        h0 = hits(be);
        list(be, root, "t", &c, 0);
        list(be, root, "t", &c, 0);
        tap_ok(hits(be) == h0 && dcoll_has(&c, "fresh"),
               "a directory changed within 100 ms is not kept (%lu hits)",
               hits(be) - h0);
    }
    dcoll_free(&c);
}

/* rmdir + mkdir of the same name (the inode number may come back). */
static void
test_replaced(struct backend *be, struct be_node *root)
{
    struct dcoll c = {0};
    char p[700];
    int bad = 0;

    for (int round = 0; round < 5; round++) {
        snprintf(p, sizeof(p), "%s/r", exp_root);
        rmtree(p);
        make_files("r", 10 + round, "r");
        usleep(150000);
        if (list(be, root, "r", &c, 0) != 0 || c.count != (size_t)12 + round ||
            !exact(&c, "r")) {
            bad++;
        }
        if (list(be, root, "r", &c, 0) != 0 || c.count != (size_t)12 + round) {
            bad++;
        }
    }
    tap_ok(bad == 0, "a directory replaced under its name: listed exact (%d)",
           bad);
    dcoll_free(&c);
}

/* A listing paused mid-snapshot: charged while paused, exact when
 * resumed one entry at a time; another handle resumes at a cookie. */
static void
test_paused(struct backend *be, struct be_node *root, bool on)
{
    struct be_budget mem = {.max = 1u << 20};
    struct be_limits lim = {.mem = &mem};
    struct dcoll c = {0};
    struct dcoll c2 = {0};
    struct be_node *d = NULL;
    struct be_handle *h;
    struct be_handle *h2;
    uint64_t cookie;
    int err;

    make_files("p", 300, "p");
    usleep(200000);
    list(be, root, "p", &c, 0); /* cached */
    walkp(be, root, "p", &d);
    h = xopen(be, d, &lim);
    h2 = xopen(be, d, &lim);
    if (h == NULL || h2 == NULL) {
        tap_ok(false, "paused: open");
        return;
    }
    dcoll_free(&c);
    c.limit = 100;
    c.this_call = 0;
    err = OPS(be)->readdir(be, h, 0, dcoll_fn, &c);
    tap_ok(err == 0 && c.count == 100 && (!on || atomic_load(&mem.used) > 0),
           "paused mid-listing: the snapshot is charged (%llu bytes)%s",
           (unsigned long long)atomic_load(&mem.used),
           on ? "" : " # SKIP cache off on this file system");
    cookie = c.last_off;
    /* another handle from the cookie: the rest */
    c2.limit = 0;
    c2.this_call = 0;
    err = OPS(be)->readdir(be, h2, cookie, dcoll_fn, &c2);
    tap_ok(err == 0 && c2.count == 202,
           "another handle at a cookie: the "
           "other 202 entries (%zu)",
           c2.count);
    /* the first resumes, one entry per call */
    for (;;) {
        size_t before = c.count;

        c.limit = 1;
        c.this_call = 0;
        err = OPS(be)->readdir(be, h, c.last_off, dcoll_fn, &c);
        if (err != 0 || c.count == before) {
            break;
        }
    }
    tap_ok(err == 0 && c.count == 302 && exact(&c, "p"),
           "resumed one entry at a time: exact (%zu)", c.count);
    tap_ok(atomic_load(&mem.used) == 0,
           "at the end the charge is given back (%llu)",
           (unsigned long long)atomic_load(&mem.used));
    c.limit = 0;
    c.this_call = 0;
    err = OPS(be)->readdir(be, h, c.last_off, dcoll_fn, &c);
    tap_ok(err == 0 && c.count == 302, "past the end: nothing more (%zu)",
           c.count);
    OPS(be)->close(be, h);
    OPS(be)->close(be, h2);
    OPS(be)->node_put(be, d);
    dcoll_free(&c);
    dcoll_free(&c2);
}

/* A listing read whole for the cache is charged to the session while it
 * is read: a session whose budget cannot hold it gets the usual listing,
 * exact, and the cache is not filled; one whose budget can, fills it. */
static void
test_session_budget(struct backend *be, struct be_node *root, bool on)
{
    struct be_budget mem = {.max = 16u << 10};
    struct be_limits lim = {.mem = &mem};
    struct dcoll c = {0};
    struct be_node *d = NULL;
    struct be_handle *h;
    unsigned long f0;
    unsigned long h0;
    int err;

    make_files("sb", 1500, "entry-of-a-budget-test-");
    usleep(200000);
    walkp(be, root, "sb", &d);
    f0 = atomic_load(&pt_be(be)->st_dc_fills);
    h = xopen(be, d, &lim);
    dcoll_free(&c);
    err = h != NULL ? dcoll_all(be, h, &c, 0) : -EIO;
    tap_ok(err == 0 && c.count == 1502 && exact(&c, "sb") &&
               atomic_load(&pt_be(be)->st_dc_fills) == f0,
           "a 16 KiB session budget: listed exact (%zu), the cache not "
           "filled (%lu fills)",
           c.count, atomic_load(&pt_be(be)->st_dc_fills) - f0);
    if (h != NULL) {
        OPS(be)->close(be, h);
    }
    tap_ok(atomic_load(&mem.used) == 0, "and nothing left charged (%llu)",
           (unsigned long long)atomic_load(&mem.used));

    mem.max = 1u << 20;
    h = xopen(be, d, &lim);
    dcoll_free(&c);
    err = h != NULL ? dcoll_all(be, h, &c, 0) : -EIO;
    tap_ok(err == 0 && c.count == 1502 &&
               (!on || atomic_load(&pt_be(be)->st_dc_fills) == f0 + 1),
           "a 1 MiB session budget: the listing fills the cache (%lu)%s",
           atomic_load(&pt_be(be)->st_dc_fills) - f0,
           on ? "" : " # SKIP cache off on this file system");
    if (h != NULL) {
        OPS(be)->close(be, h);
    }
    tap_ok(atomic_load(&mem.used) == 0, "closed: nothing left charged (%llu)",
           (unsigned long long)atomic_load(&mem.used));

    mem.max = 16u << 10;
    h0 = hits(be);
    h = xopen(be, d, &lim);
    dcoll_free(&c);
    err = h != NULL ? dcoll_all(be, h, &c, 0) : -EIO;
    tap_ok(err == 0 && c.count == 1502 && exact(&c, "sb") &&
               (!on || hits(be) == h0 + 1),
           "the 16 KiB session then lists it from the cache (%lu hit)%s",
           hits(be) - h0, on ? "" : " # SKIP cache off on this file system");
    if (h != NULL) {
        OPS(be)->close(be, h);
    }
    OPS(be)->node_put(be, d);
    dcoll_free(&c);
}

/* A small cache: a directory larger than a snapshot may be is listed the
 * usual way, every time exact; the cache keeps within its bytes. */
static void
test_small_cache(bool on)
{
    struct pt_options o = {
        .root = exp_root, .remap_devs = true, .dir_cache = 64 * 1024};
    struct backend *be = NULL;
    struct be_node *root;
    struct dcoll c = {0};
    unsigned long h0;
    int bad = 0;

    if (pt_backend_new(&o, &be) < 0) {
        tap_ok(false, "small cache: backend");
        return;
    }
    root = get_root(be, NULL);
    make_files("big", 2000, "a-long-name-for-a-big-directory-");
    usleep(200000);
    h0 = hits(be);
    for (int i = 0; i < 3; i++) {
        if (list(be, root, "big", &c, 0) != 0 || c.count != 2002 ||
            !exact(&c, "big")) {
            bad++;
        }
    }
    tap_ok(bad == 0 && hits(be) == h0,
           "too large to keep: listed exact, never from the cache (%d, %lu)",
           bad, hits(be) - h0);
    {
        /* and the small ones are kept, hit on the second listing */
        make_files("mid", 100, "m");
        usleep(200000);
        h0 = hits(be);
        list(be, root, "mid", &c, 0);
        list(be, root, "mid", &c, 0);
        tap_ok(c.count == 102 && exact(&c, "mid") &&
                   (!on || hits(be) == h0 + 1),
               "a directory that fits is kept (%lu hit)%s", hits(be) - h0,
               on ? "" : " # SKIP cache off on this file system");
    }
    for (int i = 0; i < 40; i++) {
        char dn[32];

        snprintf(dn, sizeof(dn), "small%02d", i);
        make_files(dn, 40, "s");
    }
    usleep(200000);
    for (int i = 0; i < 40; i++) {
        char dn[32];

        snprintf(dn, sizeof(dn), "small%02d", i);
        if (list(be, root, dn, &c, 0) != 0 || c.count != 42) {
            bad++;
        }
    }
    tap_ok(bad == 0 && pt_be(be)->dc_bytes <= 64 * 1024 &&
               (!on || pt_be(be)->dc_bytes > 32 * 1024),
           "40 directories through a 64 KiB cache: %zu bytes in %zu "
           "snapshots%s",
           pt_be(be)->dc_bytes, pt_be(be)->dc_count,
           on ? "" : " # SKIP cache off on this file system");
    dcoll_free(&c);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

int
main(void)
{
    struct backend *be;
    struct be_node *root;
    struct statfs sf;
    bool on;

    umask(022);
    /* tmpfs where there is one (the cache's best case), else $TMPDIR */
    if (statfs("/dev/shm", &sf) == 0 && sf.f_type == 0x01021994) {
        char tmpl[] = "/dev/shm/virtfs-dircache.XXXXXX";

        exp_root = mkdtemp(tmpl) != NULL ? strdup(tmpl) : NULL;
    }
    if (exp_root == NULL) {
        exp_root = mktmp("dircache");
    }
    be = be_open(exp_root, false, false);
    root = get_root(be, NULL);
    on = statfs(exp_root, &sf) == 0 &&
         (sf.f_type == 0x01021994 || sf.f_type == 0xEF53 ||
          sf.f_type == 0x58465342 || sf.f_type == 0x9123683E);
    tap_diag("export on file system 0x%lx: listing cache %s",
             (unsigned long)sf.f_type, on ? "on" : "off");

    test_unchanged_and_changed(be, root, on);
    test_same_tick(be, root);
    test_replaced(be, root);
    test_paused(be, root, on);
    test_session_budget(be, root, on);
    test_small_cache(on);

    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
    rmtree(exp_root);
    free(exp_root);
    return tap_done();
}
