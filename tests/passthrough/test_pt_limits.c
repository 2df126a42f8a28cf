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
    if (lim != NULL) {
        OPS(be)->handle_limits(be, h, lim);
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
    test_dir_budget(be, root);

    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
    rmtree(exp_root);
    free(exp_root);
    return tap_done();
}
