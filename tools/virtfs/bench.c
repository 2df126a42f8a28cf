/* SPDX-License-Identifier: MIT */
/*
 * virtfs bench: a closed-loop load generator.  N threads, each with its
 * own connection, run one workload for T seconds; each thread issues its
 * next operation as soon as the previous one returns.  Per-operation
 * latency is recorded for every op and the p50/p99 are exact (all samples
 * are kept and sorted).  With --pid, the server's CPU time (utime + stime
 * from /proc/PID/stat) over the measured interval is divided by the ops.
 *
 * The bench creates what it needs under --dir (default /bench) and removes
 * it at the end: stat.file, a directory rd/ with --files entries, the
 * --size MiB seq.file and one sw.N file per thread for seqwrite.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/procstat.h"

enum wl {
    WL_STAT,
    WL_CREATE,
    WL_READDIR,
    WL_SEQREAD,
    WL_SEQWRITE,
    WL_MIXED,
    WL_COUNT,
};

static const char *const wl_names[WL_COUNT] = {
    "stat", "create", "readdir", "seqread", "seqwrite", "mixed",
};

#define CREATE_SIZE 4096
#define MAX_SAMPLES (64u * 1024 * 1024) /* per thread; later ops not sampled */

struct bench_cfg {
    int conns;
    int secs;
    long pid;        /* 0 = no CPU accounting */
    const char *dir; /* remote bench directory */
    unsigned files;  /* entries in rd/ */
    uint64_t size;   /* bytes of seq.file */
    unsigned wlmask;
};

struct worker {
    pthread_t th;
    int idx;
    enum wl wl;
    const struct bench_cfg *cfg;
    struct p9c_conn *conn;
    struct p9c_fid *root;
    struct p9c_fid *dir; /* the bench dir */
    struct p9c_fid *io;  /* open file for seqread/seqwrite */
    char *buf;           /* I/O buffer */
    uint32_t iosz;
    uint64_t off;
    uint64_t lo, hi; /* this worker's byte range for seq I/O */
    uint64_t ops;
    uint64_t bytes;
    uint64_t entries; /* readdir: entries in the last listing */
    uint32_t *lat;    /* ns, clamped to UINT32_MAX */
    size_t nlat;
    size_t caplat;
    int err;
    const char *errwhat;
};

static atomic_bool stop_flag;
static atomic_bool no_unlinkat; /* server answered Tunlinkat EOPNOTSUPP */
static pthread_barrier_t start_barrier;

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
record(struct worker *w, uint64_t ns)
{
    if (w->nlat == w->caplat) {
        size_t cap = w->caplat ? w->caplat * 2 : 65536;
        uint32_t *p;

        if (cap > MAX_SAMPLES) {
            return;
        }
        p = realloc(w->lat, cap * sizeof(*p));
        if (p == NULL) {
            return;
        }
        w->lat = p;
        w->caplat = cap;
    }
    w->lat[w->nlat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

/* ---- one operation per workload -------------------------------------------------- */

static int
op_stat(struct worker *w)
{
    char path[512];
    struct p9c_fid *f;
    struct p9_rgetattr a;
    int err;

    snprintf(path, sizeof(path), "%s/stat.file", w->cfg->dir);
    err = p9c_walk(w->root, path, &f);
    if (err != 0) {
        return err;
    }
    err = p9c_getattr(f, P9_GETATTR_BASIC, &a);
    p9c_clunk(f);
    return err;
}

static int
op_create(struct worker *w)
{
    char name[64];
    struct p9c_fid *f;
    ssize_t n;
    int err;

    snprintf(name, sizeof(name), "c.%d.%" PRIu64, w->idx, w->ops);
    err = p9c_walk(w->dir, "", &f);
    if (err != 0) {
        return err;
    }
    err = p9c_create(f, name, P9_DOTL_WRONLY | P9_DOTL_CREATE | P9_DOTL_EXCL,
                     0644, (uint32_t)-1);
    if (err != 0) {
        p9c_clunk(f);
        return err;
    }
    n = p9c_pwrite(f, w->buf, CREATE_SIZE, 0);
    err = p9c_clunk(f);
    if (n != CREATE_SIZE) {
        err = n < 0 ? (int)n : -EIO;
    }
    if (err == 0 && !atomic_load(&no_unlinkat)) {
        err = p9c_unlinkat(w->dir, name, 0);
        if (err == -EOPNOTSUPP || err == -ENOSYS) {
            atomic_store(&no_unlinkat, true);
        }
    }
    if (atomic_load(&no_unlinkat) &&
        (err == 0 || err == -EOPNOTSUPP || err == -ENOSYS)) {
        /* server without Tunlinkat: walk + Tremove (reported in output) */
        err = p9c_walk(w->dir, name, &f);
        if (err == 0) {
            err = p9c_remove(f);
        }
    }
    w->bytes += CREATE_SIZE;
    return err;
}

static int
op_readdir(struct worker *w)
{
    struct p9c_fid *f;
    struct p9c_dir *d;
    struct p9c_dirent ent;
    uint64_t count = 0;
    int err;
    int r;

    err = p9c_walk(w->dir, "rd", &f);
    if (err != 0) {
        return err;
    }
    err = p9c_open(f, P9_DOTL_RDONLY | P9_DOTL_DIRECTORY);
    if (err == 0) {
        err = p9c_dir_open(f, 0, &d);
    }
    if (err != 0) {
        p9c_clunk(f);
        return err;
    }
    while ((r = p9c_dir_next(d, &ent)) > 0) {
        count++;
    }
    p9c_dir_close(d);
    p9c_clunk(f);
    if (r < 0) {
        return r;
    }
    if (count < w->cfg->files) {
        return -ENOENT; /* the listing lost entries */
    }
    w->entries = count;
    return 0;
}

static int
op_seqread(struct worker *w)
{
    ssize_t n;

    if (w->off + w->iosz > w->hi) {
        w->off = w->lo;
    }
    n = p9c_pread(w->io, w->buf, w->iosz, w->off);
    if (n < 0) {
        return (int)n;
    }
    if ((uint32_t)n != w->iosz) {
        return -EIO;
    }
    w->off += (uint64_t)n;
    w->bytes += (uint64_t)n;
    return 0;
}

static int
op_seqwrite(struct worker *w)
{
    ssize_t n;

    if (w->off + w->iosz > w->hi) {
        w->off = w->lo;
    }
    n = p9c_pwrite(w->io, w->buf, w->iosz, w->off);
    if (n < 0) {
        return (int)n;
    }
    if ((uint32_t)n != w->iosz) {
        return -EIO;
    }
    w->off += (uint64_t)n;
    w->bytes += (uint64_t)n;
    return 0;
}

/* What one process of an edit-build loop asks in turn: look a file up,
 * read a small file whole, look up again, write a new file (create,
 * write, clunk, unlink). */
static int
op_mixed(struct worker *w)
{
    char path[512];
    struct p9c_fid *f;
    ssize_t n;
    int err;

    switch (w->ops % 4) {
    case 1:
        snprintf(path, sizeof(path), "%s/mix.file", w->cfg->dir);
        err = p9c_walk(w->root, path, &f);
        if (err != 0) {
            return err;
        }
        err = p9c_open(f, P9_DOTL_RDONLY);
        n = err == 0 ? p9c_pread(f, w->buf, CREATE_SIZE, 0) : 0;
        p9c_clunk(f);
        if (err == 0 && n != CREATE_SIZE) {
            err = n < 0 ? (int)n : -EIO;
        }
        return err;
    case 3: return op_create(w);
    default: return op_stat(w);
    }
}

static int (*const wl_ops[WL_COUNT])(struct worker *) = {
    op_stat, op_create, op_readdir, op_seqread, op_seqwrite, op_mixed,
};

/* ---- per-thread preparation ------------------------------------------------------- */

static uint32_t
io_size(struct p9c_fid *f)
{
    uint32_t n = p9c_iosize(f);

    return n >= 8192 ? n & ~4095u : n; /* page-aligned I/O when possible */
}

static int
prep(struct worker *w)
{
    char name[64];
    uint64_t slice;
    int err;

    w->off = 0;
    w->ops = 0;
    w->bytes = 0;
    w->nlat = 0;
    w->err = 0;
    if (w->wl == WL_SEQREAD) {
        err = p9c_walk(w->dir, "seq.file", &w->io);
        if (err != 0) {
            return err;
        }
        err = p9c_open(w->io, P9_DOTL_RDONLY);
        if (err != 0) {
            return err;
        }
        w->iosz = io_size(w->io);
        /* threads start spread over the file, then wrap around it */
        w->lo = 0;
        w->hi = w->cfg->size;
        slice = w->cfg->size / (uint64_t)w->cfg->conns;
        w->off = (uint64_t)w->idx * slice / w->iosz * w->iosz;
    } else if (w->wl == WL_SEQWRITE) {
        snprintf(name, sizeof(name), "sw.%d", w->idx);
        err = p9c_walk(w->dir, "", &w->io);
        if (err != 0) {
            return err;
        }
        err = p9c_create(w->io, name,
                         P9_DOTL_WRONLY | P9_DOTL_CREATE | P9_DOTL_TRUNC, 0644,
                         (uint32_t)-1);
        if (err != 0) {
            return err;
        }
        w->iosz = io_size(w->io);
        /* the threads together write --size bytes at most */
        w->lo = 0;
        w->hi = w->cfg->size / (uint64_t)w->cfg->conns;
        if (w->hi < w->iosz) {
            w->hi = w->iosz;
        }
    }
    return 0;
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    int (*op)(struct worker *) = wl_ops[w->wl];
    int err;

    err = prep(w);
    if (err != 0) {
        w->err = err;
        w->errwhat = "setup";
    }
    pthread_barrier_wait(&start_barrier);
    while (w->err == 0 &&
           !atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        uint64_t t0 = now_ns();

        err = op(w);
        if (err != 0) {
            w->err = err;
            w->errwhat = wl_names[w->wl];
            break;
        }
        record(w, now_ns() - t0);
        w->ops++;
    }
    if (w->io != NULL) {
        p9c_clunk(w->io);
        w->io = NULL;
    }
    return NULL;
}

/* ---- setup and cleanup of the remote files --------------------------------------- */

struct setup_job {
    struct worker *w;
    int what; /* 0 = rd entries, 1 = seq.file */
    int err;
};

static void *
setup_main(void *arg)
{
    struct setup_job *j = arg;
    struct worker *w = j->w;
    const struct bench_cfg *cfg = w->cfg;
    struct p9c_fid *rd = NULL;
    struct p9c_fid *f = NULL;
    uint64_t lo;
    uint64_t hi;
    int err = 0;

    if (j->what == 0) {
        char name[32];

        err = p9c_walk(w->dir, "rd", &rd);
        for (unsigned i = (unsigned)w->idx; err == 0 && i < cfg->files;
             i += (unsigned)cfg->conns) {
            snprintf(name, sizeof(name), "f%06u", i);
            if (p9c_walk(rd, name, &f) == 0) {
                p9c_clunk(f); /* there from an earlier run (or the host) */
                f = NULL;
                continue;
            }
            err = p9c_mknod(rd, name, S_IFREG | 0644, 0, 0, (uint32_t)-1, NULL);
            if (err == -EEXIST) {
                err = 0;
            } else if (err == -EPERM || err == -EOPNOTSUPP || err == -ENOSYS) {
                /* no mknod: lcreate + clunk */
                err = p9c_walk(rd, "", &f);
                if (err == 0) {
                    err = p9c_create(f, name, P9_DOTL_WRONLY | P9_DOTL_CREATE,
                                     0644, (uint32_t)-1);
                    p9c_clunk(f);
                }
            }
        }
        p9c_clunk(rd);
    } else {
        uint64_t slice = cfg->size / (uint64_t)cfg->conns;

        lo = (uint64_t)w->idx * slice;
        hi = w->idx == cfg->conns - 1 ? cfg->size : lo + slice;
        err = p9c_walk(w->dir, "seq.file", &f);
        if (err == 0) {
            err = p9c_open(f, P9_DOTL_WRONLY);
        }
        while (err == 0 && lo < hi) {
            size_t n = p9c_iosize(f);
            ssize_t k;

            if (n > hi - lo) {
                n = (size_t)(hi - lo);
            }
            k = p9c_pwrite(f, w->buf, n, lo);
            if (k <= 0) {
                err = k < 0 ? (int)k : -EIO;
            }
            lo += k > 0 ? (uint64_t)k : 0;
        }
        if (f != NULL) {
            p9c_clunk(f);
        }
    }
    j->err = err;
    return NULL;
}

/* Run setup_main over all workers in parallel. */
static int
setup_parallel(struct worker *ws, int n, int what)
{
    struct setup_job *jobs = calloc((size_t)n, sizeof(*jobs));
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    int err = 0;

    if (jobs == NULL || th == NULL) {
        free(jobs);
        free(th);
        return -ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        jobs[i].w = &ws[i];
        jobs[i].what = what;
        pthread_create(&th[i], NULL, setup_main, &jobs[i]);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].err != 0 && err == 0) {
            err = jobs[i].err;
        }
    }
    free(jobs);
    free(th);
    return err;
}

static int
ensure_file(struct p9c_fid *dir, const char *name, uint64_t size, bool *fresh)
{
    struct p9c_fid *f;
    struct p9_rgetattr a;
    int err;

    *fresh = false;
    err = p9c_walk(dir, name, &f);
    if (err == 0) {
        err = p9c_getattr(f, P9_GETATTR_SIZE, &a);
        p9c_clunk(f);
        if (err == 0 && a.size == size) {
            return 0;
        }
    }
    err = p9c_walk(dir, "", &f);
    if (err != 0) {
        return err;
    }
    err = p9c_create(f, name, P9_DOTL_WRONLY | P9_DOTL_CREATE | P9_DOTL_TRUNC,
                     0644, (uint32_t)-1);
    if (err == -EEXIST) {
        p9c_clunk(f);
        err = p9c_walk(dir, name, &f);
        if (err != 0) {
            return err;
        }
        err = p9c_open(f, P9_DOTL_WRONLY | P9_DOTL_TRUNC);
    }
    p9c_clunk(f);
    *fresh = err == 0;
    return err;
}

/* Write 'size' (at most CREATE_SIZE) bytes to the existing file 'name'. */
static int
fill_file(struct p9c_fid *dir, const char *name, uint32_t size)
{
    char buf[CREATE_SIZE];
    struct p9c_fid *f;
    ssize_t n;
    int err;

    memset(buf, 'm', sizeof(buf));
    err = p9c_walk(dir, name, &f);
    if (err != 0) {
        return err;
    }
    err = p9c_open(f, P9_DOTL_WRONLY);
    n = err == 0 ? p9c_pwrite(f, buf, size, 0) : 0;
    p9c_clunk(f);
    if (err == 0 && n != (ssize_t)size) {
        err = n < 0 ? (int)n : -EIO;
    }
    return err;
}

static int
setup(struct worker *ws, const struct bench_cfg *cfg)
{
    struct p9c_fid *dir = ws[0].dir;
    bool fresh;
    int err;

    if (cfg->wlmask & (1u << WL_MIXED)) {
        err = ensure_file(dir, "mix.file", CREATE_SIZE, &fresh);
        if (err == 0 && fresh) {
            err = fill_file(dir, "mix.file", CREATE_SIZE);
        }
        if (err != 0) {
            return cli_fail("bench setup", "mix.file", err);
        }
    }
    if (cfg->wlmask & ((1u << WL_STAT) | (1u << WL_MIXED))) {
        err = ensure_file(dir, "stat.file", 0, &fresh);
        if (err != 0) {
            return cli_fail("bench setup", "stat.file", err);
        }
    }
    if (cfg->wlmask & (1u << WL_READDIR)) {
        struct p9c_fid *rd = NULL;

        /* an existing "rd" is used as it is (nfs-ganesha answers a
         * Tmkdir of an existing name with a reply libp9c cannot take) */
        err = p9c_walk(dir, "rd", &rd);
        if (err == 0) {
            p9c_clunk(rd);
        } else {
            err = p9c_mkdir(dir, "rd", 0755, (uint32_t)-1, NULL);
        }
        if (err != 0 && err != -EEXIST) {
            return cli_fail("bench setup", "rd", err);
        }
        err = setup_parallel(ws, cfg->conns, 0);
        if (err != 0) {
            return cli_fail("bench setup", "rd/*", err);
        }
    }
    if (cfg->wlmask & (1u << WL_SEQREAD)) {
        err = ensure_file(dir, "seq.file", cfg->size, &fresh);
        if (err == 0 && fresh) {
            err = setup_parallel(ws, cfg->conns, 1);
        }
        if (err != 0) {
            return cli_fail("bench setup", "seq.file", err);
        }
    }
    return 0;
}

static void
cleanup(struct worker *ws, const struct bench_cfg *cfg, bool made_dir)
{
    struct p9c_fid *dir = ws[0].dir;
    struct p9c_fid *rd;
    char name[32];

    cli_unlink(dir, "stat.file", 0);
    cli_unlink(dir, "seq.file", 0);
    cli_unlink(dir, "mix.file", 0);
    for (int i = 0; i < cfg->conns; i++) {
        snprintf(name, sizeof(name), "sw.%d", i);
        cli_unlink(dir, name, 0);
    }
    if (p9c_walk(dir, "rd", &rd) == 0) {
        cli_rm_tree(rd);
        p9c_clunk(rd);
        cli_unlink(dir, "rd", P9_DOTL_AT_REMOVEDIR);
    }
    if (made_dir) {
        const char *d = cfg->dir;

        while (*d == '/') {
            d++;
        }
        if (*d != '\0' && strchr(d, '/') == NULL) {
            cli_unlink(ws[0].root, d, P9_DOTL_AT_REMOVEDIR);
        }
    }
}

/* ---- driver ------------------------------------------------------------------------- */

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static int
run_one(struct worker *ws, const struct bench_cfg *cfg, enum wl wl)
{
    uint64_t ops = 0;
    uint64_t bytes = 0;
    uint64_t entries = 0;
    size_t nlat = 0;
    uint32_t *all;
    double cpu0 = -1;
    double cpu1 = -1;
    double secs;
    double p50;
    double p99;
    uint64_t t0;
    int rc = 0;

    atomic_store(&stop_flag, false);
    pthread_barrier_init(&start_barrier, NULL, (unsigned)cfg->conns + 1);
    for (int i = 0; i < cfg->conns; i++) {
        ws[i].wl = wl;
        pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
    }
    pthread_barrier_wait(&start_barrier);
    if (cfg->pid > 0) {
        cpu0 = proc_cpu_ms(cfg->pid);
    }
    t0 = now_ns();
    for (int s = 0; s < cfg->secs * 10; s++) {
        bool failed = false;

        usleep(100000);
        for (int i = 0; i < cfg->conns; i++) {
            failed |= ws[i].err != 0;
        }
        if (failed) {
            break;
        }
    }
    atomic_store(&stop_flag, true);
    for (int i = 0; i < cfg->conns; i++) {
        pthread_join(ws[i].th, NULL);
    }
    secs = (double)(now_ns() - t0) / 1e9;
    if (cfg->pid > 0) {
        cpu1 = proc_cpu_ms(cfg->pid);
    }
    pthread_barrier_destroy(&start_barrier);
    for (int i = 0; i < cfg->conns; i++) {
        if (ws[i].err != 0) {
            char what[64];

            snprintf(what, sizeof(what), "bench %s", wl_names[wl]);
            cli_fail(what, ws[i].errwhat, ws[i].err);
            rc = 1;
        }
        ops += ws[i].ops;
        bytes += ws[i].bytes;
        nlat += ws[i].nlat;
        if (ws[i].entries > entries) {
            entries = ws[i].entries;
        }
    }
    if (rc != 0) {
        return rc;
    }
    all = malloc((nlat ? nlat : 1) * sizeof(*all));
    if (all == NULL) {
        return cli_fail("bench", NULL, -ENOMEM);
    }
    nlat = 0;
    for (int i = 0; i < cfg->conns; i++) {
        if (ws[i].nlat > 0) {
            memcpy(all + nlat, ws[i].lat, ws[i].nlat * sizeof(*all));
            nlat += ws[i].nlat;
        }
    }
    qsort(all, nlat, sizeof(*all), cmp_u32);
    if (nlat > 0) {
        size_t i50 = nlat / 2, i99 = nlat * 99 / 100;

        p50 = all[i50] / 1000.0;
        p99 = all[i99] / 1000.0;
    } else {
        p50 = p99 = 0;
    }
    free(all);

    printf("%s conns=%d secs=%.2f ops=%" PRIu64 " ops/s=%.0f", wl_names[wl],
           cfg->conns, secs, ops, (double)ops / secs);
    if (wl == WL_SEQREAD || wl == WL_SEQWRITE) {
        printf(" MiB/s=%.1f io=%u", (double)bytes / secs / (1024.0 * 1024.0),
               ws[0].iosz);
    }
    if (wl == WL_READDIR) {
        printf(" entries=%" PRIu64, entries);
    }
    if (wl == WL_CREATE && atomic_load(&no_unlinkat)) {
        printf(" unlink=walk+remove");
    }
    printf(" p50_us=%.1f p99_us=%.1f", p50, p99);
    if (cfg->pid > 0 && cpu0 >= 0 && cpu1 >= 0 && ops > 0) {
        printf(" cpu_ms_per_kop=%.2f", (cpu1 - cpu0) / ((double)ops / 1000.0));
    }
    printf(" msize=%u\n", p9c_msize(ws[0].conn));
    fflush(stdout);
    return 0;
}

static void
bench_usage(FILE *out)
{
    fprintf(
        out,
        "usage: virtfs bench [-s ADDR] [-a ANAME] [-u UNAME] [--uid N] [-m MSIZE]\n"
        "                    [-c CONNS] [-t SECONDS] [-w WORKLOAD] [--pid PID]\n"
        "                    [--dir REMOTE_DIR] [--files N] [--size MIB]\n"
        "\n"
        "Closed-loop load: CONNS threads, one connection each, for SECONDS per\n"
        "workload.  One line per workload, key=value fields:\n"
        "  NAME conns= secs= ops= ops/s= [MiB/s= io=] [entries=] p50_us= p99_us=\n"
        "  [cpu_ms_per_kop=] msize=\n"
        "\n"
        "  -c, --conns N      connections/threads (default 4)\n"
        "  -t, --time S       seconds per workload (default 5)\n"
        "  -w, --workload W   stat|create|readdir|seqread|seqwrite|mixed|all, or a\n"
        "                     comma-separated list (default all)\n"
        "      --pid PID      server pid: report its CPU ms per 1000 ops\n"
        "      --dir PATH     remote work directory (default /bench); created and\n"
        "                     emptied of the bench's files at the end\n"
        "      --files N      entries in the readdir directory (default 10000)\n"
        "      --size MIB     size of the seqread file (default 256)\n"
        "  -s, -a, -u, --uid, -m  as for virtfs (may also come before 'bench')\n"
        "\n"
        "Workloads (one op = one sample):\n"
        "  stat      walk DIR/stat.file + getattr + clunk\n"
        "  create    lcreate + 4 KiB write + clunk + unlinkat (walk + remove\n"
        "            if the server has no Tunlinkat; then unlink=walk+remove)\n"
        "  readdir   walk + lopen + full listing of DIR/rd + clunk\n"
        "  seqread   one Tread of the I/O size (iounit/msize, 4 KiB aligned)\n"
        "  seqwrite  one Twrite of the I/O size, each thread to its own file\n"
        "  mixed     in turn: stat; walk + lopen + 4 KiB read of DIR/mix.file +\n"
        "            clunk; stat; create (as above)\n");
}

static int
parse_wl(const char *s, unsigned *mask)
{
    char buf[128];
    char *save = NULL;
    char *tok;

    *mask = 0;
    snprintf(buf, sizeof(buf), "%s", s);
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        bool found = false;

        if (strcmp(tok, "all") == 0) {
            *mask |= (1u << WL_COUNT) - 1;
            continue;
        }
        for (int i = 0; i < WL_COUNT; i++) {
            if (strcmp(tok, wl_names[i]) == 0) {
                *mask |= 1u << i;
                found = true;
            }
        }
        if (!found) {
            return -EINVAL;
        }
    }
    return *mask != 0 ? 0 : -EINVAL;
}

static long
parse_pos(const char *s, long max)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v <= 0 || v > max) {
        return -1;
    }
    return v;
}

int
cmd_bench(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"server", required_argument, NULL, 's'},
        {"aname", required_argument, NULL, 'a'},
        {"uname", required_argument, NULL, 'u'},
        {"uid", required_argument, NULL, 'U'},
        {"msize", required_argument, NULL, 'm'},
        {"conns", required_argument, NULL, 'c'},
        {"time", required_argument, NULL, 't'},
        {"workload", required_argument, NULL, 'w'},
        {"pid", required_argument, NULL, 'P'},
        {"dir", required_argument, NULL, 'D'},
        {"files", required_argument, NULL, 'F'},
        {"size", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct bench_cfg cfg = {
        .conns = 4,
        .secs = 5,
        .dir = "/bench",
        .files = 10000,
        .size = 256ull << 20,
        .wlmask = (1u << WL_COUNT) - 1,
    };
    struct worker *ws;
    struct p9c_fid *probe;
    bool made_dir;
    long v;
    int rc = 0;
    int c;
    int err;

    optind = 0;
    while ((c = getopt_long(argc, argv, "+s:a:u:m:c:t:w:h", lopts, NULL)) !=
           -1) {
        v = 0;
        switch (c) {
        case 's': cli.server = optarg; break;
        case 'a': cli.aname = optarg; break;
        case 'u': cli.uname = optarg; break;
        case 'U':
            v = strcmp(optarg, "0") == 0 ? 0 : parse_pos(optarg, UINT32_MAX);
            cli.uid = (uint32_t)v;
            break;
        case 'm':
            v = parse_pos(optarg, P9_MAX_MSIZE);
            if (v < P9_MIN_MSIZE) {
                v = -1;
            }
            cli.msize = (uint32_t)v;
            break;
        case 'c':
            v = parse_pos(optarg, 1024);
            cfg.conns = (int)v;
            break;
        case 't':
            v = parse_pos(optarg, 86400);
            cfg.secs = (int)v;
            break;
        case 'w': v = parse_wl(optarg, &cfg.wlmask) == 0 ? 1 : -1; break;
        case 'P':
            v = parse_pos(optarg, 1L << 30);
            cfg.pid = v;
            break;
        case 'D':
            cfg.dir = optarg;
            v = *optarg ? 1 : -1;
            break;
        case 'F':
            v = parse_pos(optarg, 10000000);
            cfg.files = (unsigned)v;
            break;
        case 'S':
            v = parse_pos(optarg, 1L << 20);
            cfg.size = (uint64_t)v << 20;
            break;
        case 'h': bench_usage(stdout); return 0;
        default: bench_usage(stderr); return 2;
        }
        if (v < 0) {
            fprintf(stderr, "virtfs bench: bad value '%s'\n", optarg);
            return 2;
        }
    }
    if (optind < argc) {
        bench_usage(stderr);
        return 2;
    }
    ws = calloc((size_t)cfg.conns, sizeof(*ws));
    if (ws == NULL) {
        return cli_fail("bench", NULL, -ENOMEM);
    }
    for (int i = 0; i < cfg.conns; i++) {
        ws[i].idx = i;
        ws[i].cfg = &cfg;
        if (cli_mount(&ws[i].conn, &ws[i].root) != 0) {
            rc = 1;
            goto out;
        }
        ws[i].buf = malloc(p9c_msize(ws[i].conn));
        if (ws[i].buf == NULL) {
            rc = cli_fail("bench", NULL, -ENOMEM);
            goto out;
        }
        memset(ws[i].buf, 'x', p9c_msize(ws[i].conn));
    }
    made_dir = p9c_walk(ws[0].root, cfg.dir, &probe) != 0;
    if (!made_dir) {
        p9c_clunk(probe);
    }
    err = cli_mkdir_p(ws[0].root, cfg.dir);
    if (err != 0) {
        rc = cli_fail("bench mkdir", cfg.dir, err);
        goto out;
    }
    for (int i = 0; i < cfg.conns; i++) {
        err = p9c_walk(ws[i].root, cfg.dir, &ws[i].dir);
        if (err != 0) {
            rc = cli_fail("bench", cfg.dir, err);
            goto out;
        }
    }
    rc = setup(ws, &cfg);
    for (int wl = 0; rc == 0 && wl < WL_COUNT; wl++) {
        if (cfg.wlmask & (1u << wl)) {
            rc = run_one(ws, &cfg, (enum wl)wl);
        }
    }
    cleanup(ws, &cfg, made_dir);
out:
    for (int i = 0; i < cfg.conns; i++) {
        p9c_clunk(ws[i].dir);
        p9c_clunk(ws[i].root);
        p9c_close(ws[i].conn);
        free(ws[i].buf);
        free(ws[i].lat);
    }
    free(ws);
    return rc;
}
