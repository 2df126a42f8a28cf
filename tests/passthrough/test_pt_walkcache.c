/* SPDX-License-Identifier: MIT */
/*
 * Issue 13: a repeated walk of a name is one fstatat that finds the node
 * last linked under that name (the child index, pt_walk.c), and nodes stay
 * idle after their last reference so that the next walk finds them.  These
 * tests fail if that fast path ever returns a stale node: the host renames
 * or replaces the name between walks, unlinks and recreates it, swaps a
 * directory for a symlink; hard links in two directories; descriptors
 * reclaimed under a small budget.  They also count: a first walk of a
 * fresh tree tries no fstatat (no extra syscall on a miss), a repeated
 * walk is one.
 */
#include "pt_test.h"

#include "backend/passthrough/pt.h"

static char *exp_root;

/* The host's inode number of exp_root/rel, or 0. */
static ino_t
host_ino(const char *rel)
{
    char p[700];
    struct stat st;

    snprintf(p, sizeof(p), "%s/%s", exp_root, rel);
    if (lstat(p, &st) < 0) {
        return 0;
    }
    return st.st_ino;
}

static void
host_path(char *buf, size_t size, const char *rel)
{
    snprintf(buf, size, "%s/%s", exp_root, rel);
}

/* Walk root -> name, check it is the host's current file, put it. */
static struct be_node *
walk_check(struct backend *be, struct be_node *dir, const char *name,
           const char *rel, const char *what)
{
    struct be_node *n = NULL;
    struct p9_qid q;
    int err = OPS(be)->walk1(be, dir, name, &n, &q);
    ino_t want = host_ino(rel);

    tap_ok(err == 0 && n != NULL && n->ino == want && q.path != 0,
           "%s: the host's current file (%d; ino %lu, want %lu)", what, err,
           n != NULL ? (unsigned long)n->ino : 0UL, (unsigned long)want);
    return err == 0 ? n : NULL;
}

static void
test_counts(struct backend *be, struct be_node *root)
{
    struct pt_backend *pb = pt_be(be);
    struct be_node *d = NULL;
    struct be_node *n = NULL;
    struct be_node *first = NULL;
    struct p9_qid q;
    char p[700];
    unsigned long probe0;
    unsigned long fast0;
    int bad = 0;
    int err;

    /* a fresh tree: 4 directories of 25 files */
    for (int i = 0; i < 4; i++) {
        char dn[32];

        snprintf(dn, sizeof(dn), "tree/d%d", i);
        host_path(p, sizeof(p), "tree");
        mkdir(p, 0755);
        host_path(p, sizeof(p), dn);
        mkdir(p, 0755);
        for (int j = 0; j < 25; j++) {
            char fn[32];

            snprintf(fn, sizeof(fn), "f%d", j);
            put_file(p, fn, "x");
        }
    }
    probe0 = atomic_load(&pb->st_walk_probe);
    /* find-like: every name once, nodes put at once */
    err = walkp(be, root, "tree", &d);
    for (int i = 0; i < 4 && err == 0; i++) {
        struct be_node *sub = NULL;
        char dn[32];

        snprintf(dn, sizeof(dn), "d%d", i);
        err = OPS(be)->walk1(be, d, dn, &sub, &q);
        for (int j = 0; j < 25 && err == 0; j++) {
            char fn[32];

            snprintf(fn, sizeof(fn), "f%d", j);
            err = OPS(be)->walk1(be, sub, fn, &n, &q);
            if (err == 0) {
                OPS(be)->node_put(be, n);
            }
        }
        if (sub != NULL) {
            OPS(be)->node_put(be, sub);
        }
    }
    tap_ok(err == 0 && atomic_load(&pb->st_walk_probe) == probe0,
           "count/first walk of a fresh tree: no fstatat tried (%lu for 105 "
           "walks; %d)",
           atomic_load(&pb->st_walk_probe) - probe0, err);

    /* the stat loop: walk, put, walk again */
    err = d != NULL ? OPS(be)->walk1(be, d, "d1", &first, &q) : -1;
    if (first != NULL) {
        OPS(be)->node_put(be, first);
    }
    probe0 = atomic_load(&pb->st_walk_probe);
    fast0 = atomic_load(&pb->st_walk_fast);
    for (int i = 0; i < 100 && err == 0; i++) {
        err = OPS(be)->walk1(be, d, "d1", &n, &q);
        if (err == 0) {
            bad += n != first; /* the idle node, not a new one */
            OPS(be)->node_put(be, n);
        }
    }
    tap_ok(err == 0 && bad == 0 &&
               atomic_load(&pb->st_walk_probe) - probe0 == 100 &&
               atomic_load(&pb->st_walk_fast) - fast0 == 100,
           "count/100 repeated walks: 100 fstatat, 100 hits, the same node "
           "(%d; %lu, %lu)",
           err, atomic_load(&pb->st_walk_probe) - probe0,
           atomic_load(&pb->st_walk_fast) - fast0);
    /* a name that was never walked: no candidate, no fstatat */
    probe0 = atomic_load(&pb->st_walk_probe);
    err = OPS(be)->walk1(be, d, "nosuch", &n, &q);
    tap_ok(err == -ENOENT && atomic_load(&pb->st_walk_probe) == probe0,
           "count/a miss of a new name tries no fstatat (%d)", err);
    if (d != NULL) {
        OPS(be)->node_put(be, d);
    }
}

static void
test_host_changes(struct backend *be, struct be_node *root)
{
    struct pt_backend *pb = pt_be(be);
    struct be_node *n;
    struct be_node *held;
    struct be_node *sub;
    struct p9_qid q;
    char p[700];
    char p2[700];
    int err;

    /* rename over the name (the old file's node still held by a fid) */
    put_file(exp_root, "x", "old");
    put_file(exp_root, "y", "new");
    held = walk_check(be, root, "x", "x", "replace/first walk");
    n = walk_check(be, root, "x", "x", "replace/repeated walk");
    tap_ok(n == held && n != NULL, "replace/repeated walk is the same node");
    OPS(be)->node_put(be, n);
    host_path(p, sizeof(p), "y");
    host_path(p2, sizeof(p2), "x");
    SETUP_OK(rename(p, p2));
    n = walk_check(be, root, "x", "x", "replace/after the host's rename");
    tap_ok(n != NULL && n != held, "replace/not the replaced file's node");
    OPS(be)->node_put(be, n);
    OPS(be)->node_put(be, held);

    /* rename away: the old name is gone, the new name finds the node */
    held = walk_check(be, root, "x", "x", "rename/walk");
    OPS(be)->node_put(be, held); /* idle now */
    host_path(p, sizeof(p), "x");
    host_path(p2, sizeof(p2), "x2");
    SETUP_OK(rename(p, p2));
    n = NULL;
    err = OPS(be)->walk1(be, root, "x", &n, &q);
    tap_ok(err == -ENOENT && n == NULL,
           "rename/the old name answers ENOENT (%d)", err);
    {
        unsigned long probe = atomic_load(&pb->st_walk_probe);

        err = OPS(be)->walk1(be, root, "x", &n, &q);
        tap_ok(err == -ENOENT && atomic_load(&pb->st_walk_probe) == probe,
               "rename/the stale entry is gone: no fstatat the second time "
               "(%d)",
               err);
    }
    n = walk_check(be, root, "x2", "x2", "rename/the new name");
    OPS(be)->node_put(be, n);

    /* unlink and recreate (the idle node keeps the old inode number busy
     * while it holds its descriptor; the new file is another inode) */
    put_file(exp_root, "u", "1");
    n = walk_check(be, root, "u", "u", "recreate/walk");
    {
        dev_t odev = n != NULL ? n->dev : 0;
        ino_t oino = n != NULL ? n->ino : 0;
        struct be_node *old;

        OPS(be)->node_put(be, n); /* idle */
        host_path(p, sizeof(p), "u");
        SETUP_OK(unlink(p));
        put_file(exp_root, "u", "2");
        n = walk_check(be, root, "u", "u", "recreate/after unlink + create");
        OPS(be)->node_put(be, n);
        /* the idle node of the deleted file went with its stale link
         * (its descriptor kept the deleted file allocated) */
        old = pt_node_lookup(pb, odev, oino);
        tap_ok(old == NULL, "recreate/the deleted file's idle node is freed");
        OPS(be)->node_put(be, old);
    }

    /* a directory swapped for a symlink to outside the export */
    host_path(p, sizeof(p), "sd");
    mkdir(p, 0755);
    put_file(p, "inner", "in");
    sub = walk_check(be, root, "sd", "sd", "swap/directory walk");
    n = walk_check(be, sub, "inner", "sd/inner", "swap/walk below it");
    OPS(be)->node_put(be, n);
    OPS(be)->node_put(be, sub);
    host_path(p2, sizeof(p2), "sd.old");
    SETUP_OK(rename(p, p2));
    SETUP_OK(symlink("/etc", p));
    sub = walk_check(be, root, "sd", "sd", "swap/walk after the swap");
    tap_ok(sub != NULL && sub->type == S_IFLNK,
           "swap/the name is a symlink node now");
    n = NULL;
    err = sub != NULL ? OPS(be)->walk1(be, sub, "passwd", &n, &q) : 0;
    tap_ok(err == -ELOOP && n == NULL,
           "swap/walking through it is refused (%d)", err);
    if (sub != NULL) {
        OPS(be)->node_put(be, sub);
    }

    /* hard links in two directories: one node, never a wrong one */
    host_path(p, sizeof(p), "h1");
    mkdir(p, 0755);
    host_path(p, sizeof(p), "h2");
    mkdir(p, 0755);
    host_path(p, sizeof(p), "h1");
    put_file(p, "a", "hard");
    host_path(p, sizeof(p), "h1/a");
    host_path(p2, sizeof(p2), "h2/b");
    SETUP_OK(link(p, p2));
    {
        struct be_node *d1 = walk_check(be, root, "h1", "h1", "hard/h1");
        struct be_node *d2 = walk_check(be, root, "h2", "h2", "hard/h2");
        struct be_node *a = NULL;
        int bad = 0;

        for (int i = 0; i < 6 && d1 != NULL && d2 != NULL; i++) {
            struct be_node *m = NULL;

            err =
                OPS(be)->walk1(be, i % 2 ? d2 : d1, i % 2 ? "b" : "a", &m, &q);
            if (err != 0 || m->ino != host_ino("h1/a") ||
                (a != NULL && m != a)) {
                bad++;
            }
            if (a == NULL) {
                a = m;
            } else if (m != NULL) {
                OPS(be)->node_put(be, m);
            }
        }
        tap_ok(bad == 0, "hard/alternating walks of two links: one node");
        /* unlink one link on the host: the other still walks */
        SETUP_OK(unlink(p));
        n = NULL;
        err = d1 != NULL ? OPS(be)->walk1(be, d1, "a", &n, &q) : -1;
        tap_ok(err == -ENOENT, "hard/the removed link answers ENOENT (%d)",
               err);
        n = d2 != NULL ? walk_check(be, d2, "b", "h2/b", "hard/other link")
                       : NULL;
        tap_ok(n == a && n != NULL, "hard/the other link is the same node");
        OPS(be)->node_put(be, n);
        OPS(be)->node_put(be, a);
        OPS(be)->node_put(be, d1);
        OPS(be)->node_put(be, d2);
    }

    /* ".." from a node found by the fast path */
    held = walk_check(be, root, "h2", "h2", "dotdot/walk h2");
    n = walk_check(be, root, "h2", "h2", "dotdot/walk h2 again");
    OPS(be)->node_put(be, n);
    sub = NULL;
    err = held != NULL ? OPS(be)->walk1(be, held, "..", &sub, &q) : -1;
    tap_ok(err == 0 && sub == root, "dotdot/.. of it is the root (%d)", err);
    if (sub != NULL) {
        OPS(be)->node_put(be, sub);
    }
    OPS(be)->node_put(be, held);

    /* a client's unlink frees the idle node of that name at once (its
     * descriptor would keep the deleted file's blocks) */
    put_file(exp_root, "g", "gone");
    n = walk_check(be, root, "g", "g", "unlink/walk");
    {
        dev_t dev = n != NULL ? n->dev : 0;
        ino_t ino = n != NULL ? n->ino : 0;
        struct be_node *still;

        OPS(be)->node_put(be, n);
        still = pt_node_lookup(pb, dev, ino);
        tap_ok(still != NULL && still == n, "unlink/idle before the unlink");
        OPS(be)->node_put(be, still);
        err = OPS(be)->unlinkat(be, root, "g", 0);
        still = pt_node_lookup(pb, dev, ino);
        tap_ok(err == 0 && still == NULL,
               "unlink/the client's unlink frees the idle node (%d)", err);
        OPS(be)->node_put(be, still);
    }
}

/* Descriptors reclaimed under a small budget: the fast path needs a live
 * descriptor; a reclaimed node takes the open path and its checks. */
static void
test_reclaim(int mode, const char *tag)
{
    enum { NFILES = 60, BUDGET = 12 };
    struct pt_options o = {.root = exp_root,
                           .remap_devs = true,
                           .inode_file_handles = mode,
                           .fd_budget = BUDGET};
    struct backend *be = NULL;
    struct be_node *root;
    struct be_node *dir = NULL;
    struct be_node *keep = NULL;
    struct pt_backend *pb;
    struct p9_qid q;
    char d[64];
    char p[700];
    char rel[96];
    int bad = 0;
    int err;

    snprintf(d, sizeof(d), "rc-%s", tag);
    host_path(p, sizeof(p), d);
    mkdir(p, 0755);
    for (int i = 0; i < NFILES; i++) {
        char c[32];

        snprintf(c, sizeof(c), "f%d", i);
        put_file(p, c, c);
    }
    if (pt_backend_new(&o, &be) < 0) {
        tap_ok(0, "reclaim/%s backend", tag);
        return;
    }
    pb = pt_be(be);
    root = get_root(be, NULL);
    err = OPS(be)->walk1(be, root, d, &dir, &q);
    /* f0 held by a "fid" throughout: its descriptor gets reclaimed */
    err = err ? err : OPS(be)->walk1(be, dir, "f0", &keep, &q);
    for (int round = 0; round < 3 && err == 0; round++) {
        struct be_node *held[NFILES] = {NULL};

        for (int i = 0; i < NFILES && err == 0; i++) {
            struct be_node *n = NULL;
            char c[32];

            snprintf(c, sizeof(c), "f%d", i);
            snprintf(rel, sizeof(rel), "%s/%s", d, c);
            err = OPS(be)->walk1(be, dir, c, &n, &q);
            if (err == 0) {
                bad += n->ino != host_ino(rel);
                bad += i == 0 && n != keep;
                held[i] = n; /* fids held: more nodes than the budget */
            }
        }
        for (int i = 0; i < NFILES; i++) {
            if (held[i] != NULL) {
                OPS(be)->node_put(be, held[i]);
            }
        }
    }
    tap_ok(err == 0 && bad == 0 && atomic_load(&pb->st_evict) > 0,
           "reclaim/%s: 3 rounds of %d walks under a budget of %d, every one "
           "the host's file (%d; %d bad; %lu reclaimed)",
           tag, NFILES, BUDGET, err, bad, atomic_load(&pb->st_evict));
    tap_ok(pb->nidle <= pb->idle_max && pb->fd_nodes <= BUDGET + 2,
           "reclaim/%s: idle %zu <= %zu, node descriptors %ld", tag, pb->nidle,
           pb->idle_max, pb->fd_nodes);
    /* replace f0 on the host while its node has no descriptor */
    if (keep != NULL) {
        char p2[700];
        struct be_node *n = NULL;

        snprintf(rel, sizeof(rel), "%s/f0", d);
        host_path(p, sizeof(p), rel);
        snprintf(rel, sizeof(rel), "%s/f1", d);
        host_path(p2, sizeof(p2), rel);
        SETUP_OK(rename(p2, p));
        snprintf(rel, sizeof(rel), "%s/f0", d);
        err = OPS(be)->walk1(be, dir, "f0", &n, &q);
        tap_ok(err == 0 && n != keep && n->ino == host_ino(rel),
               "reclaim/%s: f0 replaced on the host: the new file (%d)", tag,
               err);
        if (n != NULL) {
            OPS(be)->node_put(be, n);
        }
        OPS(be)->node_put(be, keep);
    }
    OPS(be)->node_put(be, dir);
    OPS(be)->node_put(be, root);
    pt_node_idle_flush(pb);
    tap_ok(pb->nt_count == 1, "reclaim/%s: only the root left after a flush",
           tag);
    OPS(be)->destroy(be);
}

/* The mapped-file model's metadata names stay hidden on repeated walks. */
static void
test_mapped(void)
{
    struct pt_options o = {
        .root = exp_root, .remap_devs = true, .model = PT_SM_MAPPED_FILE};
    struct backend *be = NULL;
    struct be_node *root;
    struct be_node *n = NULL;
    struct p9_qid q;
    char p[700];
    int e1;
    int e2;

    host_path(p, sizeof(p), PT_META_DIR);
    mkdir(p, 0700);
    if (pt_backend_new(&o, &be) < 0) {
        tap_ok(0, "mapped/backend");
        return;
    }
    root = get_root(be, NULL);
    e1 = OPS(be)->walk1(be, root, PT_META_DIR, &n, &q);
    e2 = OPS(be)->walk1(be, root, PT_META_DIR, &n, &q);
    tap_ok(e1 == -ENOENT && e2 == -ENOENT,
           "mapped/the metadata directory stays hidden (%d, %d)", e1, e2);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

int
main(void)
{
    struct backend *be;
    struct be_node *root;

    exp_root = mktmp("walkcache");
    be = be_open(exp_root, false, false);
    root = get_root(be, NULL);

    test_counts(be, root);
    test_host_changes(be, root);
    test_reclaim(PT_FH_PREFER, "prefer");
    test_reclaim(PT_FH_NEVER, "never");
    test_mapped();

    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
    rmtree(exp_root);
    free(exp_root);
    return tap_done();
}
