/* SPDX-License-Identifier: MIT */
/*
 * The worker pool.  A request is handed over once: the worker runs the op
 * with all its backend calls, encodes the reply and gives it to the
 * transport (one thread hop per request).
 *
 * The pool has a fixed core of threads.  A manager thread watches for work
 * that waits while every worker is busy and no worker has picked anything
 * up for WORKQ_STALL_MS: then the workers are blocked (e.g. in the open of a
 * FIFO, which must not hold up other requests) and the pool grows by one.
 * Short bursts of load do not grow it.  Extra threads exit after being
 * idle for a while.
 */
#include "server/srv_int.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

#define WORKQ_IDLE_EXIT_S 10
#define WORKQ_STALL_MS 20

static void *worker_main(void *arg);
static void *manager_main(void *arg);

/* Flush interrupts a running op with this signal (no SA_RESTART). */
static void
wake_handler(int sig)
{
    (void)sig;
}

static int
workq_spawn(struct p9s_server *srv)
{
    pthread_attr_t attr;
    pthread_t th;
    int err;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    err = pthread_create(&th, &attr, worker_main, srv);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        return -err;
    }
    srv->wq.nthreads++;
    srv->wq.running++;
    return 0;
}

int
workq_init(struct p9s_server *srv, int threads)
{
    struct workq *wq = &srv->wq;
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = wake_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGURG, &sa, NULL);

    memset(wq, 0, sizeof(*wq));
    pthread_mutex_init(&wq->lock, NULL);
    pthread_cond_init(&wq->cond, NULL);
    pthread_cond_init(&wq->done_cond, NULL);
    pthread_cond_init(&wq->mgr_cond, NULL);
    wq->min_threads = threads;
    wq->max_threads = threads * 4 + 64;
    return 0;
}

/*
 * Start the workers and the manager.  Separate from workq_init() so that a
 * daemon can build its server, then confine itself while it is still one
 * thread (namespaces and capabilities are per thread), then start.
 */
int
workq_start(struct p9s_server *srv)
{
    struct workq *wq = &srv->wq;
    int threads = wq->min_threads;
    int err = 0;

    pthread_mutex_lock(&wq->lock);
    for (int i = 0; i < threads && err == 0; i++) {
        err = workq_spawn(srv);
    }
    if (err == 0) {
        pthread_attr_t attr;
        pthread_t th;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        err = -pthread_create(&th, &attr, manager_main, srv);
        pthread_attr_destroy(&attr);
        if (err == 0) {
            wq->running++;
        }
    }
    pthread_mutex_unlock(&wq->lock);
    return err;
}

void
workq_push(struct p9s_server *srv, struct p9s_req *r)
{
    struct workq *wq = &srv->wq;

    r->q_next = NULL;
    pthread_mutex_lock(&wq->lock);
    if (wq->tail != NULL) {
        wq->tail->q_next = r;
    } else {
        wq->head = r;
    }
    wq->tail = r;
    if (wq->idle == 0 && wq->mgr_sleeping) {
        pthread_cond_signal(&wq->mgr_cond);
    }
    pthread_cond_signal(&wq->cond);
    pthread_mutex_unlock(&wq->lock);
}

static void *
worker_main(void *arg)
{
    struct p9s_server *srv = arg;
    struct workq *wq = &srv->wq;
    struct p9s_req *r;
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGURG);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    pthread_mutex_lock(&wq->lock);
    for (;;) {
        while (wq->head == NULL && !wq->stop) {
            struct timespec ts;
            int rc;

            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += WORKQ_IDLE_EXIT_S;
            wq->idle++;
            rc = pthread_cond_timedwait(&wq->cond, &wq->lock, &ts);
            wq->idle--;
            if (rc == ETIMEDOUT && wq->head == NULL &&
                wq->nthreads > wq->min_threads) {
                goto out;
            }
        }
        if (wq->head == NULL && wq->stop) {
            goto out;
        }
        r = wq->head;
        wq->pickups++;
        wq->head = r->q_next;
        if (wq->head == NULL) {
            wq->tail = NULL;
        }
        pthread_mutex_unlock(&wq->lock);
        p9s_dispatch(r);
        pthread_mutex_lock(&wq->lock);
    }
out:
    wq->nthreads--;
    wq->running--;
    pthread_cond_broadcast(&wq->done_cond);
    pthread_mutex_unlock(&wq->lock);
    return NULL;
}

/* Grows the pool when queued work makes no progress (see the top). */
static void *
manager_main(void *arg)
{
    struct p9s_server *srv = arg;
    struct workq *wq = &srv->wq;

    pthread_mutex_lock(&wq->lock);
    while (!wq->stop) {
        struct timespec ts;
        uint64_t seen;

        if (wq->head == NULL || wq->idle > 0) {
            wq->mgr_sleeping = true;
            pthread_cond_wait(&wq->mgr_cond, &wq->lock);
            wq->mgr_sleeping = false;
            continue;
        }
        seen = wq->pickups;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WORKQ_STALL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&wq->mgr_cond, &wq->lock, &ts);
        if (!wq->stop && wq->head != NULL && wq->idle == 0 &&
            wq->pickups == seen && wq->nthreads < wq->max_threads) {
            if (workq_spawn(srv) < 0) {
                log_peer("cannot grow the worker pool");
            } else {
                log_debug("worker pool grown to %d threads (workers blocked)",
                          wq->nthreads);
            }
        }
    }
    wq->running--;
    pthread_cond_broadcast(&wq->done_cond);
    pthread_mutex_unlock(&wq->lock);
    return NULL;
}

void
workq_fini(struct p9s_server *srv)
{
    struct workq *wq = &srv->wq;

    pthread_mutex_lock(&wq->lock);
    wq->stop = true;
    pthread_cond_broadcast(&wq->cond);
    pthread_cond_broadcast(&wq->mgr_cond);
    while (wq->running > 0) {
        pthread_cond_wait(&wq->done_cond, &wq->lock);
    }
    pthread_mutex_unlock(&wq->lock);
}
