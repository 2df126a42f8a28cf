/* SPDX-License-Identifier: MIT */
/*
 * A peer decides how deep a chain of directories is.  Finding a node
 * again by name after its descriptor and all its ancestors' were
 * reclaimed walks that chain: it must not take stack in proportion to
 * the depth (a worker thread has 256 KiB; the old recursive reopen took
 * about 400 bytes a level and overflowed it a few hundred levels down).
 *   - A chain of DEPTH directories, walked down to the last one with only
 *     the deepest node held (its parent links keep the rest), under a
 *     descriptor budget of 16 and without file handles: a getattr and a
 *     walk below the deepest node, on a thread with a 256 KiB stack,
 *     work and reopen the whole chain by name.
 *   - Moving a directory in the middle of the chain aside on the host
 *     makes the deepest node stale (ESTALE), never another file.
 */
#include "pt_test.h"

#include "backend/passthrough/pt.h"

#include <pthread.h>
#include <sys/stat.h>

#define DEPTH 20000
#define STACK (256 * 1024)

struct deep_arg {
    struct backend *be;
    struct be_node *deep;
    int getattr_err;
    int walk_err;
    uint64_t ino;
};

static void *
deep_thread(void *p)
{
    struct deep_arg *a = p;
    struct p9_rgetattr at;
    struct be_node *leaf = NULL;
    struct p9_qid q;

    a->getattr_err =
        OPS(a->be)->getattr(a->be, a->deep, NULL, P9_GETATTR_BASIC, &at);
    a->ino = at.qid.path;
    a->walk_err = OPS(a->be)->walk1(a->be, a->deep, "leaf", &leaf, &q);
    if (leaf != NULL) {
        OPS(a->be)->node_put(a->be, leaf);
    }
    return NULL;
}

static char *root_dir;

/* Walk NSIB sibling directories of the chain: the budget of 16 makes the
 * chain's nodes give their descriptors up. */
#define NSIB 40
static void
flush_fds(struct backend *be, struct be_node *root)
{
    struct be_node *x[NSIB] = {NULL};

    for (int i = 0; i < NSIB; i++) {
        struct p9_qid q;
        char name[16];

        snprintf(name, sizeof(name), "x%d", i);
        OPS(be)->walk1(be, root, name, &x[i], &q);
    }
    for (int i = 0; i < NSIB; i++) {
        if (x[i] != NULL) {
            OPS(be)->node_put(be, x[i]);
        }
    }
}

/* Run deep_thread on a small stack, like a server worker. */
static void
on_small_stack(struct deep_arg *a)
{
    pthread_attr_t attr;
    pthread_t t;

    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, STACK);
    a->getattr_err = a->walk_err = -1;
    if (pthread_create(&t, &attr, deep_thread, a) == 0) {
        pthread_join(t, NULL);
    }
    pthread_attr_destroy(&attr);
}

int
main(void)
{
    struct pt_options o = {
        .remap_devs = true, .inode_file_handles = PT_FH_NEVER, .fd_budget = 16};
    struct backend *be = NULL;
    struct be_node *root;
    struct be_node *cur;
    struct deep_arg a;
    int dfd;
    int made = 0;
    int walked = 0;
    unsigned long reopens;

    root_dir = mktmp("deep");
    o.root = root_dir;
    /* the chain on the host: d/d/d/... and a file at the bottom */
    dfd = open(root_dir, O_RDONLY | O_DIRECTORY);
    for (int i = 0; dfd >= 0 && i < NSIB; i++) {
        char name[16];

        snprintf(name, sizeof(name), "x%d", i);
        mkdirat(dfd, name, 0755);
    }
    if (dfd >= 0) {
        close(dfd);
    }
    dfd = th_chain(root_dir, "d", DEPTH, true, &made);
    if (dfd >= 0) {
        int f = openat(dfd, "leaf", O_WRONLY | O_CREAT, 0644);

        if (f >= 0) {
            close(f);
        }
        close(dfd);
    }
    tap_ok(made == DEPTH, "deep/a host chain of %d directories (%d)", DEPTH,
           made);
    if (pt_backend_new(&o, &be) < 0) {
        tap_ok(false, "deep/backend");
        return tap_done();
    }
    root = get_root(be, NULL);
    cur = root;
    OPS(be)->node_get(be, cur);
    for (int i = 0; i < DEPTH; i++) {
        struct be_node *next = NULL;
        struct p9_qid q;

        if (OPS(be)->walk1(be, cur, "d", &next, &q) < 0) {
            break;
        }
        OPS(be)->node_put(be, cur); /* the child's parent link keeps it */
        cur = next;
        walked++;
    }
    tap_ok(walked == DEPTH && pt_be(be)->fd_nodes <= 16,
           "deep/walked down %d levels within the budget (%d; %ld node "
           "descriptors)",
           DEPTH, walked, pt_be(be)->fd_nodes);
    /* every descriptor of the chain goes: walks elsewhere */
    flush_fds(be, root);
    reopens = atomic_load(&pt_be(be)->st_reopen_name);
    a = (struct deep_arg){.be = be, .deep = cur};
    on_small_stack(&a);
    tap_ok(a.getattr_err == 0,
           "deep/getattr of the deepest node on a 256 KiB stack (%d; %lu "
           "reopened by name)",
           a.getattr_err, atomic_load(&pt_be(be)->st_reopen_name) - reopens);
    tap_ok(a.walk_err == 0, "deep/and a walk below it (%d)", a.walk_err);
    tap_ok(atomic_load(&pt_be(be)->st_reopen_name) - reopens >= DEPTH / 2,
           "deep/the chain was found again by name, level by level");

    /* move a directory in the middle of the chain aside on the host: the
     * way by name leads nowhere now, so the deepest node is stale */
    dfd = th_chain(root_dir, "d", DEPTH / 2, false, &walked);
    tap_ok(walked == DEPTH / 2 && renameat(dfd, "d", dfd, "moved") == 0,
           "deep/host moves level %d aside", DEPTH / 2 + 1);
    if (dfd >= 0) {
        close(dfd);
    }
    flush_fds(be, root);
    a = (struct deep_arg){.be = be, .deep = cur};
    on_small_stack(&a);
    tap_ok(a.getattr_err == -ESTALE, "deep/after the move: ESTALE (%d)",
           a.getattr_err);

    OPS(be)->node_put(be, cur);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
    rmtree(root_dir);
    free(root_dir);
    return tap_done();
}
