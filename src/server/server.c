/* SPDX-License-Identifier: MIT */
/* The server object: configuration, exports, worker pool, statistics. */
#include "server/srv_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

/* The ops the core calls without a NULL check (backend.h: mandatory). */
static bool
backend_complete(const struct backend *be)
{
    const struct be_ops *o = be != NULL ? be->ops : NULL;

    return o != NULL && o->root != NULL && o->walk1 != NULL &&
           o->node_get != NULL && o->node_put != NULL &&
           (o->close != NULL || (o->open == NULL && o->create == NULL));
}

struct p9s_server *
p9s_server_new(const struct p9s_config *cfg, const struct p9s_export *exports,
               int nexports)
{
    struct p9s_server *srv;
    int threads = cfg->threads;

    for (int i = 0; i < nexports; i++) {
        if (!backend_complete(exports[i].be)) {
            log_err("export %s: its backend lacks a mandatory op",
                    exports[i].path);
            return NULL;
        }
    }
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return NULL;
    }
    srv->msize = cfg->msize ? cfg->msize : P9_DEFAULT_MSIZE;
    if (srv->msize < P9_MIN_MSIZE) {
        srv->msize = P9_MIN_MSIZE;
    }
    if (srv->msize > P9_MAX_MSIZE) {
        srv->msize = P9_MAX_MSIZE;
    }
    srv->trace = cfg->trace;
    srv->max_fids = cfg->max_fids ? cfg->max_fids : P9S_DEFAULT_MAX_FIDS;
    srv->max_fids_total = cfg->max_fids_total ? (long)cfg->max_fids_total
                                              : P9S_DEFAULT_MAX_FIDS_TOTAL;
    srv->session_mem =
        cfg->session_mem ? cfg->session_mem : P9S_DEFAULT_SESSION_MEM;
    srv->max_locks = cfg->max_locks ? cfg->max_locks : P9S_DEFAULT_MAX_LOCKS;
    srv->session_fds =
        cfg->session_fds ? cfg->session_fds : P9S_DEFAULT_SESSION_FDS;
    srv->exports = calloc((size_t)nexports, sizeof(*srv->exports));
    if (srv->exports == NULL) {
        free(srv);
        return NULL;
    }
    memcpy(srv->exports, exports, (size_t)nexports * sizeof(*exports));
    srv->nexports = nexports;
    if (threads <= 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

        threads = ncpu > 0 ? (int)ncpu * 2 : 4;
        if (threads < 4) {
            threads = 4;
        }
    }
    if (workq_init(srv, threads) < 0 ||
        (!cfg->defer_start && p9s_server_start(srv) < 0)) {
        log_err("cannot start worker threads");
        free(srv->exports);
        free(srv);
        return NULL;
    }
    return srv;
}

int
p9s_server_start(struct p9s_server *srv)
{
    int err;

    if (srv->started) {
        return 0;
    }
    err = workq_start(srv);
    if (err == 0) {
        srv->started = true;
    }
    return err;
}

void
p9s_server_free(struct p9s_server *srv)
{
    if (srv == NULL) {
        return;
    }
    workq_fini(srv);
    free(srv->exports);
    free(srv);
}

uint32_t
p9s_server_msize(const struct p9s_server *srv)
{
    return srv->msize;
}

void
stats_record(struct p9s_server *srv, uint8_t type, uint64_t ns, bool err)
{
    struct p9s_stat *s = &srv->stats[type];
    uint64_t us = ns / 1000;
    unsigned b = 0;
    uint64_t max;

    while (us > 1 && b < P9S_HIST_BUCKETS - 1) {
        us >>= 1;
        b++;
    }
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    if (err) {
        atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&s->total_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->hist[b], 1, memory_order_relaxed);
    max = atomic_load_explicit(&s->max_ns, memory_order_relaxed);
    while (ns > max && !atomic_compare_exchange_weak(&s->max_ns, &max, ns)) {
    }
}

/* Upper bound (us) of the bucket holding the q-quantile. */
static uint64_t
stats_quantile(struct p9s_stat *s, uint64_t count, double q)
{
    uint64_t want = (uint64_t)((double)count * q);
    uint64_t seen = 0;

    for (unsigned b = 0; b < P9S_HIST_BUCKETS; b++) {
        seen += atomic_load(&s->hist[b]);
        if (seen > want) {
            return (uint64_t)2 << b;
        }
    }
    return UINT64_MAX;
}

void
p9s_server_dump_stats(struct p9s_server *srv)
{
    log_info("stats: %ld session(s); per message: count errors avg_us "
             "p50_us<= p99_us<= max_us",
             atomic_load(&srv->nconns));
    for (unsigned t = 0; t < P9_NTYPES; t++) {
        struct p9s_stat *s = &srv->stats[t];
        uint64_t n = atomic_load(&s->count);

        if (n == 0) {
            continue;
        }
        log_info("stats: %-12s %10llu %8llu %8llu %8llu %8llu %8llu",
                 p9_type_name((uint8_t)t) ? p9_type_name((uint8_t)t) : "?",
                 (unsigned long long)n,
                 (unsigned long long)atomic_load(&s->errors),
                 (unsigned long long)(atomic_load(&s->total_ns) / n / 1000),
                 (unsigned long long)stats_quantile(s, n, 0.50),
                 (unsigned long long)stats_quantile(s, n, 0.99),
                 (unsigned long long)(atomic_load(&s->max_ns) / 1000));
    }
    log_info("stats: opens tried on transport threads without waiting: "
             "%llu, moved to a worker: %llu",
             (unsigned long long)atomic_load(&srv->opens_nowait),
             (unsigned long long)atomic_load(&srv->opens_requeued));
    for (int i = 0; i < srv->nexports; i++) {
        struct backend *be = srv->exports[i].be;

        if (be != NULL && be->ops->dump_stats != NULL) {
            be->ops->dump_stats(be);
        }
    }
}
