/* SPDX-License-Identifier: MIT */
/*
 * What a handle keeps between requests, charged to a session's budgets
 * (handle_limits): lock records and directory read-ahead.
 *   - The handle's count of lock records follows the kernel's exactly
 *     (/proc/locks) through thousands of random locks and unlocks,
 *     merges and splits, ranges to EOF included.
 *   - Beyond the lock budget Tlock fails with ENOLCK, also for an unlock
 *     that would split a record; a merging lock still works; close gives
 *     everything back.
 *   - Directory read-ahead is kept only within the memory budget and
 *     only while entries are left; listings stay exact without it.
 *   - Descriptors held for good (lim.fds): an open directory or created
 *     file beyond the budget is refused (EMFILE), a first lock ENOLCK, a
 *     plain open of a regular file is not counted; an open file found
 *     unlinked by the reclaimer is kept while the budget allows and
 *     reclaimed otherwise.
 *   - Nodes that cannot be found again (unlinked files held by fids) keep
 *     their descriptors only up to half the export's descriptor budget;
 *     beyond it they are closed and answer ESTALE.
 */
#include "pt_test.h"

#include "backend/passthrough/pt.h" /* PT_DIRBUF */

#include <sys/stat.h>
#include <sys/sysmacros.h>

static char *exp_root;

static struct be_handle *
xopen(struct backend *be, struct be_node *n, uint32_t flags,
      struct be_limits *lim)
{
    struct be_handle *h = NULL;
    struct p9_qid q;
    uint32_t iou;
    int err = OPS(be)->open(be, n, flags, &h, &q, &iou);

    if (err < 0) {
        tap_diag("open failed: %s", strerror(-err));
        return NULL;
    }
    if (lim != NULL && (err = OPS(be)->handle_limits(be, h, lim)) < 0) {
        tap_diag("handle_limits: %s", strerror(-err));
        OPS(be)->close(be, h);
        return NULL;
    }
    return h;
}

/* OFD lock records the kernel holds on the file 'st' (blocked waiters
 * not counted).  Matched on device and inode: other tests running at the
 * same time hold locks of their own. */
static int
kernel_locks(const struct stat *st)
{
    char line[256];
    char want[32];
    int n = 0;
    FILE *f = fopen("/proc/locks", "r");

    if (f == NULL) {
        return -1;
    }
    snprintf(want, sizeof(want), " %02x:%02x:%lu ", major(st->st_dev),
             minor(st->st_dev), (unsigned long)st->st_ino);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, "OFDLCK") != NULL && strstr(line, want) != NULL &&
            strstr(line, "->") == NULL) {
            n++;
        }
    }
    fclose(f);
    return n;
}

static int
lk(struct backend *be, struct be_handle *h, uint8_t type, uint64_t start,
   uint64_t len, uint8_t *st)
{
    struct p9_tlock t = {.type = type, .start = start, .length = len};

    *st = 0xff;
    return OPS(be)->lock(be, h, &t, st);
}

static void
test_lock_model(struct backend *be, struct be_node *root)
{
    struct be_budget locks = {.max = 1000000};
    struct be_limits lim = {.mem = NULL, .locks = &locks};
    struct be_node *n = NULL;
    struct be_handle *h;
    char path[512];
    struct stat st;
    int mismatches = 0;
    int failed = 0;
    int first_bad = -1;
    int peak = 0;
    uint8_t s;

    put_file(exp_root, "model", "0123456789");
    snprintf(path, sizeof(path), "%s/model", exp_root);
    stat(path, &st);
    walkp(be, root, "model", &n);
    h = xopen(be, n, P9_DOTL_RDWR, &lim);
    if (h == NULL) {
        tap_ok(false, "model/open");
        return;
    }
    srand(7);
    for (int i = 0; i < 4000; i++) {
        uint8_t type = (uint8_t)(rand() % 3);
        uint64_t start = (uint64_t)(rand() % 300);
        uint64_t len = (uint64_t)(rand() % 10);
        int k;

        if (rand() % 50 == 0) {
            start = (uint64_t)INT64_MAX - 5; /* far end: "to EOF" */
        }
        if (lk(be, h, type, start, len, &s) < 0 || s != P9_LOCK_SUCCESS) {
            failed++;
            continue;
        }
        k = kernel_locks(&st);
        peak = k > peak ? k : peak;
        if ((uint64_t)k != atomic_load(&locks.used)) {
            if (first_bad < 0) {
                first_bad = i;
                tap_diag("op %d: type %u %llu+%llu: kernel %d, counted %llu", i,
                         type, (unsigned long long)start,
                         (unsigned long long)len, k,
                         (unsigned long long)atomic_load(&locks.used));
            }
            mismatches++;
        }
    }
    tap_ok(mismatches == 0 && failed == 0 && peak > 20,
           "locks/4000 random locks: the count follows the kernel's "
           "records (%d mismatches, %d failed, up to %d records)",
           mismatches, failed, peak);
    OPS(be)->close(be, h);
    tap_ok(atomic_load(&locks.used) == 0 && kernel_locks(&st) == 0,
           "locks/close gives every record back (%llu)",
           (unsigned long long)atomic_load(&locks.used));
    OPS(be)->node_put(be, n);
}

static void
test_lock_budget(struct backend *be, struct be_node *root)
{
    struct be_budget locks = {.max = 10};
    struct be_limits lim = {.mem = NULL, .locks = &locks};
    struct be_node *n = NULL;
    struct be_handle *h;
    struct be_handle *h2;
    int ok = 0;
    int err = 0;
    uint8_t s;

    put_file(exp_root, "budget", "x");
    walkp(be, root, "budget", &n);
    h = xopen(be, n, P9_DOTL_RDWR, &lim);
    h2 = xopen(be, n, P9_DOTL_RDWR, &lim); /* same session */
    if (h == NULL || h2 == NULL) {
        tap_ok(false, "budget/open");
        return;
    }
    for (int i = 0; i < 8; i++) {
        err = lk(be, h, P9_LOCK_TYPE_WRLCK, (uint64_t)i * 10, 5, &s);
        ok += err == 0 && s == P9_LOCK_SUCCESS;
    }
    tap_ok(ok == 8, "budget/8 records (%d)", ok);
    err = lk(be, h2, P9_LOCK_TYPE_RDLCK, 1000, 5, &s);
    err = err ? err : lk(be, h2, P9_LOCK_TYPE_RDLCK, 2000, 5, &s);
    tap_ok(err == 0 && atomic_load(&locks.used) == 10,
           "budget/two more on another handle of the session (%d)", err);
    err = lk(be, h, P9_LOCK_TYPE_WRLCK, 500, 1, &s);
    tap_ok(err == -ENOLCK, "budget/the 11th record: ENOLCK (%d)", err);
    err = lk(be, h, P9_LOCK_TYPE_UNLCK, 12, 1, &s);
    tap_ok(err == -ENOLCK,
           "budget/an unlock that splits a record: ENOLCK "
           "(%d)",
           err);
    err = lk(be, h, P9_LOCK_TYPE_WRLCK, 5, 5, &s);
    tap_ok(err == 0 && s == P9_LOCK_SUCCESS && atomic_load(&locks.used) == 9,
           "budget/a lock joining two records is allowed (%d, %llu)", err,
           (unsigned long long)atomic_load(&locks.used));
    err = lk(be, h, P9_LOCK_TYPE_UNLCK, 0, 0, &s);
    tap_ok(err == 0 && atomic_load(&locks.used) == 2,
           "budget/unlock of everything gives back (%llu)",
           (unsigned long long)atomic_load(&locks.used));
    OPS(be)->close(be, h);
    OPS(be)->close(be, h2);
    tap_ok(atomic_load(&locks.used) == 0, "budget/close gives back");
    OPS(be)->node_put(be, n);
}

static void
test_dir_budget(struct backend *be, struct be_node *root)
{
    struct be_budget mem = {.max = PT_DIRBUF};
    struct be_limits lim = {.mem = &mem, .locks = NULL};
    struct be_node *d = NULL;
    struct be_handle *h1;
    struct be_handle *h2;
    struct dcoll c1 = {0};
    struct dcoll c2 = {0};
    uint64_t kept;
    char dir[512];
    int err;

    snprintf(dir, sizeof(dir), "%s/big", exp_root);
    mkdir(dir, 0755);
    for (int i = 0; i < 3000; i++) {
        char name[64];

        snprintf(name, sizeof(name), "an-entry-with-a-long-name-%05d", i);
        put_file(dir, name, "");
    }
    walkp(be, root, "big", &d);
    h1 = xopen(be, d, P9_DOTL_RDONLY, &lim);
    h2 = xopen(be, d, P9_DOTL_RDONLY, &lim);
    if (h1 == NULL || h2 == NULL) {
        tap_ok(false, "dir/open");
        return;
    }
    c1.limit = 1;
    c2.limit = 1;
    err = OPS(be)->readdir(be, h1, 0, dcoll_fn, &c1);
    kept = atomic_load(&mem.used);
    tap_ok(err == 0 && c1.count == 1 && kept > PT_DIRBUF / 2 &&
               kept < PT_DIRBUF,
           "dir/a handle with entries left keeps them, charged (%llu)",
           (unsigned long long)kept);
    err = OPS(be)->readdir(be, h2, 0, dcoll_fn, &c2);
    tap_ok(err == 0 && c2.count == 1 && atomic_load(&mem.used) == kept,
           "dir/beyond the budget another keeps none (%llu)",
           (unsigned long long)atomic_load(&mem.used));
    dcoll_free(&c1);
    dcoll_free(&c2);
    err = dcoll_all(be, h2, &c2, 7);
    tap_ok(err == 0 && c2.count == 3002,
           "dir/without read-ahead the listing is exact (%zu)", c2.count);
    err = dcoll_all(be, h1, &c1, 5);
    tap_ok(err == 0 && c1.count == 3002 && atomic_load(&mem.used) == 0,
           "dir/read to the end: exact, and the buffer is given back "
           "(%zu, %llu)",
           c1.count, (unsigned long long)atomic_load(&mem.used));
    dcoll_free(&c1);
    c1.limit = 1;
    OPS(be)->readdir(be, h1, 0, dcoll_fn, &c1);
    OPS(be)->close(be, h1);
    OPS(be)->close(be, h2);
    tap_ok(atomic_load(&mem.used) == 0, "dir/close gives the buffer back");
    dcoll_free(&c1);
    dcoll_free(&c2);
    OPS(be)->node_put(be, d);
}

/* Open 'name' below the root with 'flags', charged to 'lim'. */
static struct be_handle *
open_name(struct backend *be, struct be_node *root, const char *name,
          uint32_t flags, struct be_limits *lim)
{
    struct be_node *n = NULL;
    struct be_handle *h;

    if (walkp(be, root, name, &n) < 0) {
        return NULL;
    }
    h = xopen(be, n, flags, lim);
    OPS(be)->node_put(be, n);
    return h;
}

static void
test_held_fds(void)
{
    struct pt_options o = {
        .root = exp_root, .remap_devs = true, .fd_budget = 16};
    struct be_budget fds = {.max = 2};
    struct be_limits lim = {.fds = &fds};
    struct be_handle *d1;
    struct be_handle *d2;
    struct be_handle *f;
    struct be_handle *g;
    struct be_handle *many[24];
    struct backend *be = NULL;
    struct be_node *root;
    struct be_node *n = NULL;
    struct be_node *cn = NULL;
    char dir[512];
    char buf[8];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct p9_qid q;
    uint32_t iou;
    uint8_t s;
    int err;

    snprintf(dir, sizeof(dir), "%s/held", exp_root);
    mkdir(dir, 0755);
    for (int i = 0; i < 24; i++) {
        char name[16];

        snprintf(name, sizeof(name), "f%d", i);
        put_file(dir, name, "held");
    }
    if (pt_backend_new(&o, &be) < 0) {
        tap_ok(false, "held/backend");
        return;
    }
    root = get_root(be, NULL);
    d1 = open_name(be, root, "held", P9_DOTL_RDONLY, &lim);
    d2 = open_name(be, root, "held", P9_DOTL_RDONLY, &lim);
    tap_ok(d1 != NULL && d2 != NULL && atomic_load(&fds.used) == 2,
           "held/two open directories: two units (%llu)",
           (unsigned long long)atomic_load(&fds.used));
    tap_ok(open_name(be, root, "held", P9_DOTL_RDONLY, &lim) == NULL &&
               atomic_load(&fds.used) == 2,
           "held/a third is refused, nothing charged");
    f = open_name(be, root, "held/f0", P9_DOTL_RDWR, &lim);
    tap_ok(f != NULL && atomic_load(&fds.used) == 2,
           "held/a regular file opens uncounted");
    err = f != NULL ? lk(be, f, P9_LOCK_TYPE_WRLCK, 0, 1, &s) : -1;
    tap_ok(err == -ENOLCK, "held/its first lock: ENOLCK (%d)", err);
    n = NULL;
    err = walkp(be, root, "held", &n);
    err = err ? err
              : OPS(be)->create(be, n, "made", P9_DOTL_RDWR, 0644, (uint32_t)-1,
                                &cn, &g, &q, &iou);
    if (err == 0) {
        err = OPS(be)->handle_limits(be, g, &lim);
        OPS(be)->close(be, g);
        OPS(be)->node_put(be, cn);
    }
    tap_ok(err == -EMFILE, "held/a created file beyond it: EMFILE (%d)", err);
    OPS(be)->close(be, d2);
    tap_ok(atomic_load(&fds.used) == 1, "held/close gives one back");
    /* an unlinked open file, found by the reclaimer, takes the free unit;
     * a second one finds none and is closed */
    g = open_name(be, root, "held/f1", P9_DOTL_RDWR, &lim);
    snprintf(dir, sizeof(dir), "%s/held/f0", exp_root);
    unlink(dir);
    snprintf(dir, sizeof(dir), "%s/held/f1", exp_root);
    unlink(dir);
    for (int i = 0; i < 22; i++) {
        char name[32];

        snprintf(name, sizeof(name), "held/f%d", i + 2);
        many[i] = open_name(be, root, name, P9_DOTL_RDONLY, &lim);
    }
    {
        ssize_t rf = f ? OPS(be)->read(be, f, &iov, 1, 0) : -1;
        ssize_t rg = g ? OPS(be)->read(be, g, &iov, 1, 0) : -1;

        /* the closed one is reopened through its node's descriptor, which
         * still reaches the unlinked file */
        tap_ok(atomic_load(&fds.used) == 2 && rf == 4 && rg == 4,
               "held/of two unlinked open files one is kept (charged), the "
               "other reclaimed and still readable (reads %zd, %zd; %llu "
               "held)",
               rf, rg, (unsigned long long)atomic_load(&fds.used));
    }
    for (int i = 0; i < 22; i++) {
        if (many[i] != NULL) {
            OPS(be)->close(be, many[i]);
        }
    }
    OPS(be)->close(be, f);
    OPS(be)->close(be, g);
    OPS(be)->close(be, d1);
    tap_ok(atomic_load(&fds.used) == 0, "held/every close gives back");
    OPS(be)->node_put(be, n);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/* Fids held on 40 unlinked files, a budget of 16: at most 8 keep their
 * descriptors, the rest are stale, and every other file still works. */
static void
test_unlinked_nodes(void)
{
    struct pt_options o = {
        .root = exp_root, .remap_devs = true, .fd_budget = 16};
    struct be_node *un[40];
    struct be_node *other[40];
    struct backend *be = NULL;
    struct be_node *root;
    struct p9_rgetattr a;
    char dir[512];
    int live = 0;
    int stale = 0;
    int others = 0;

    snprintf(dir, sizeof(dir), "%s/unl", exp_root);
    mkdir(dir, 0755);
    for (int i = 0; i < 40; i++) {
        char name[16];

        snprintf(name, sizeof(name), "u%d", i);
        put_file(dir, name, "u");
        snprintf(name, sizeof(name), "o%d", i);
        put_file(dir, name, "o");
    }
    if (pt_backend_new(&o, &be) < 0) {
        tap_ok(false, "unlinked/backend");
        return;
    }
    root = get_root(be, NULL);
    for (int i = 0; i < 40; i++) {
        char name[32];

        un[i] = NULL;
        snprintf(name, sizeof(name), "unl/u%d", i);
        walkp(be, root, name, &un[i]);
        snprintf(name, sizeof(name), "%s/unl/u%d", exp_root, i);
        unlink(name);
    }
    /* other walks make the reclaimer look at all of them */
    for (int i = 0; i < 40; i++) {
        char name[32];

        other[i] = NULL;
        snprintf(name, sizeof(name), "unl/o%d", i);
        others +=
            walkp(be, root, name, &other[i]) == 0 &&
            OPS(be)->getattr(be, other[i], NULL, P9_GETATTR_BASIC, &a) == 0;
    }
    for (int i = 0; i < 40; i++) {
        int err = un[i]
                      ? OPS(be)->getattr(be, un[i], NULL, P9_GETATTR_BASIC, &a)
                      : -1;

        live += err == 0;
        stale += err == -ESTALE;
    }
    tap_ok(others == 40, "unlinked/other files work under the budget (%d)",
           others);
    tap_ok(live <= 16 / 2 + 1 && live + stale == 40 &&
               pt_be(be)->fd_for_good <= 16 / 2,
           "unlinked/at most half the budget keeps unlinked files (%d live, "
           "%d stale, %ld pinned)",
           live, stale, pt_be(be)->fd_for_good);
    for (int i = 0; i < 40; i++) {
        if (un[i] != NULL) {
            OPS(be)->node_put(be, un[i]);
        }
        if (other[i] != NULL) {
            OPS(be)->node_put(be, other[i]);
        }
    }
    tap_ok(pt_be(be)->fd_for_good == 0, "unlinked/released with their fids");
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

int
main(void)
{
    struct backend *be;
    struct be_node *root;

    umask(022);
    exp_root = mktmp("limits");
    be = be_open(exp_root, false, false);
    root = get_root(be, NULL);

    test_lock_model(be, root);
    test_lock_budget(be, root);
    {
        /* read-ahead, without the listing cache (test_pt_dircache) */
        struct pt_options o = {
            .root = exp_root, .remap_devs = true, .dir_cache = -1};
        struct backend *be2 = NULL;
        struct be_node *root2;

        if (pt_backend_new(&o, &be2) < 0) {
            return 2;
        }
        root2 = get_root(be2, NULL);
        test_dir_budget(be2, root2);
        OPS(be2)->node_put(be2, root2);
        OPS(be2)->destroy(be2);
    }
    test_held_fds();
    test_unlinked_nodes();

    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
    rmtree(exp_root);
    free(exp_root);
    return tap_done();
}
