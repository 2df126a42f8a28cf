/* SPDX-License-Identifier: MIT */
/*
 * Passthrough swap races: a host thread keeps exchanging a directory (and
 * a file) with a symlink to a directory outside the export while the
 * backend walks, opens, reads, lists, creates and renames through them.
 * Nothing outside may ever be read, listed, created or changed.
 */
#include "pt_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#define ITERS 20000

static char *exp_root;
static char *outside;
static atomic_int stop_swap;
static atomic_long swaps;

static void *
swapper(void *arg)
{
    int dfd = open(exp_root, O_PATH | O_DIRECTORY);
    char sub[512];
    int sfd;

    (void)arg;
    snprintf(sub, sizeof(sub), "%s/d", exp_root);
    while (!atomic_load(&stop_swap)) {
        /* d <-> dl (symlink to outside), and d/f <-> d/fl likewise. */
        if (renameat2(dfd, "d", dfd, "dl", RENAME_EXCHANGE) == 0) {
            atomic_fetch_add(&swaps, 1);
        }
        sfd = openat(dfd, "d", O_PATH | O_DIRECTORY | O_NOFOLLOW);
        if (sfd >= 0) {
            renameat2(sfd, "f", sfd, "fl", RENAME_EXCHANGE);
            close(sfd);
        }
    }
    close(dfd);
    return NULL;
}

/* Outside content that must never show up through the backend. */
#define SECRET "OUTSIDE-SECRET"

struct stats {
    int dir_seen;
    int link_seen;
    int leaks;
    int bad_errors;
    int reads_ok;
    int creates;
};

static int
leak_fn(void *ctx, const struct p9_qid *qid, uint64_t off, uint8_t type,
        const char *name, size_t namelen)
{
    struct stats *s = ctx;

    (void)qid;
    (void)off;
    (void)type;
    (void)namelen;
    if (strcmp(name, "outside-only") == 0) {
        s->leaks++;
    }
    return 0;
}

static void
one_round(struct backend *be, struct be_node *root, int i, struct stats *s)
{
    struct be_node *d = NULL;
    struct be_node *f = NULL;
    struct be_node *nn = NULL;
    struct be_handle *h = NULL;
    struct p9_qid q;
    uint32_t iou;
    char name[64];
    char buf[128];
    int err;

    err = OPS(be)->walk1(be, root, "d", &d, &q);
    if (err < 0) {
        return;
    }
    if (q.type == P9_QTSYMLINK) {
        s->link_seen++;
        err = OPS(be)->walk1(be, d, "f", &f, &q);
        if (err == 0) {
            s->leaks++;
            OPS(be)->node_put(be, f);
        }
        err = OPS(be)->open(be, d, P9_DOTL_RDONLY, &h, &q, &iou);
        if (err == 0) {
            s->leaks++;
            OPS(be)->close(be, h);
        }
        snprintf(name, sizeof(name), "new%d", i);
        err = OPS(be)->create(be, d, name, P9_DOTL_RDWR, 0644, 0, &nn, &h, &q,
                              &iou);
        if (err == 0) {
            s->leaks++;
            OPS(be)->close(be, h);
            OPS(be)->node_put(be, nn);
        }
        OPS(be)->node_put(be, d);
        return;
    }
    s->dir_seen++;
    /* The node is the real directory even if the name now is a symlink. */
    err =
        OPS(be)->open(be, d, P9_DOTL_RDONLY | P9_DOTL_DIRECTORY, &h, &q, &iou);
    if (err == 0) {
        OPS(be)->readdir(be, h, 0, leak_fn, s);
        OPS(be)->close(be, h);
    } else {
        s->bad_errors++;
    }
    err = OPS(be)->walk1(be, d, "f", &f, &q);
    if (err == 0) {
        err = OPS(be)->open(be, f, P9_DOTL_RDONLY, &h, &q, &iou);
        if (err == 0) {
            if (read_all(be, h, buf, sizeof(buf)) > 0) {
                if (strstr(buf, SECRET) != NULL) {
                    s->leaks++;
                } else {
                    s->reads_ok++;
                }
            }
            OPS(be)->close(be, h);
        } else if (err != -ELOOP) {
            s->bad_errors++; /* a swapped-in symlink must give ELOOP */
        }
        OPS(be)->node_put(be, f);
    }
    snprintf(name, sizeof(name), "new%d", i);
    err = OPS(be)->create(be, d, name, P9_DOTL_RDWR, 0644, (uint32_t)-1, &nn,
                          &h, &q, &iou);
    if (err == 0) {
        s->creates++;
        OPS(be)->close(be, h);
        /* Trename the new node (its parent is being swapped around). */
        snprintf(name, sizeof(name), "ren%d", i);
        err = OPS(be)->rename(be, nn, d, name);
        if (err < 0) {
            snprintf(name, sizeof(name), "new%d", i);
        }
        if (OPS(be)->unlinkat(be, d, name, 0) < 0) {
            s->bad_errors++;
        }
        OPS(be)->node_put(be, nn);
    }
    OPS(be)->node_put(be, d);
}

static char *
snapshot(const char *dir)
{
    char cmd[600];
    char *out = calloc(1, 65536);
    FILE *p;

    snprintf(cmd, sizeof(cmd),
             "cd '%s' && ls -lAR --time-style=+%%s.%%N . && cat f", dir);
    p = popen(cmd, "r");
    if (p != NULL && out != NULL) {
        size_t n = fread(out, 1, 65535, p);

        out[n] = '\0';
        pclose(p);
    }
    return out;
}

int
main(void)
{
    struct backend *be;
    struct be_node *root;
    struct stats s = {0};
    pthread_t th;
    char path[512];
    char *before;
    char *after;

    outside = mktmp("race-out");
    exp_root = mktmp("race");
    put_file(outside, "f", SECRET "\n");
    put_file(outside, "outside-only", "x");
    snprintf(path, sizeof(path), "%s/d", exp_root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/d", exp_root);
    put_file(path, "f", "inside\n");
    snprintf(path, sizeof(path), "%s/dl", exp_root);
    if (symlink(outside, path) < 0) {
        return 2;
    }
    /* d/fl: a symlink to the outside secret file. */
    snprintf(path, sizeof(path), "%s/d/fl", exp_root);
    {
        char target[512];

        snprintf(target, sizeof(target), "%s/f", outside);
        if (symlink(target, path) < 0) {
            return 2;
        }
    }
    before = snapshot(outside);

    be = be_open(exp_root, false, false);
    root = get_root(be, NULL);
    pthread_create(&th, NULL, swapper, NULL);
    for (int i = 0; i < ITERS; i++) {
        one_round(be, root, i, &s);
    }
    atomic_store(&stop_swap, 1);
    pthread_join(th, NULL);

    tap_diag("%ld swaps, %d dir, %d link, %d reads, %d creates",
             atomic_load(&swaps), s.dir_seen, s.link_seen, s.reads_ok,
             s.creates);
    tap_ok(s.dir_seen > 0 && s.link_seen > 0, "race/both states were seen");
    tap_ok(s.leaks == 0, "race/nothing outside read, listed or created (%d)",
           s.leaks);
    tap_ok(s.bad_errors == 0, "race/no unexpected errors (%d)", s.bad_errors);
    tap_ok(s.reads_ok > 0, "race/inside file read");
    after = snapshot(outside);
    tap_ok(before != NULL && after != NULL && strcmp(before, after) == 0 &&
               strstr(after, SECRET) != NULL,
           "race/outside sentinel dir unchanged");
    tap_ok(count_entries(outside) == 2, "race/outside has its 2 entries");

    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
    free(before);
    free(after);
    rmtree(exp_root);
    rmtree(outside);
    free(exp_root);
    free(outside);
    return tap_done();
}
