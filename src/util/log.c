/* SPDX-License-Identifier: MIT */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static _Atomic int cur_level = LOG_LVL_INFO;
static bool use_syslog;
static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;

#define RL_BURST 5
#define RL_WINDOW_S 10

int
log_parse_level(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

void
log_set_level(enum log_level lvl)
{
    atomic_store(&cur_level, (int)lvl);
}

enum log_level
log_get_level(void)
{
    return (enum log_level)atomic_load(&cur_level);
}

void
log_use_syslog(const char *ident)
{
    /* connect now: a sandboxed daemon cannot reach /dev/log later */
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    use_syslog = true;
}

__attribute__((format(printf, 2, 0))) static void
log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
    static const char *const tags[] = {"error", "warn", "info", "debug"};
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    char line[1024];

    if ((int)lvl > atomic_load(&cur_level)) {
        return;
    }
    vsnprintf(line, sizeof(line), fmt, ap);
    if (use_syslog) {
        syslog(prio[lvl], "%s", line);
    } else {
        /* one write per line so concurrent threads do not interleave */
        char out[1100];
        int n = snprintf(out, sizeof(out), "virtfs: %s: %s\n", tags[lvl],
                         line);
        if (n > 0) {
            ssize_t r = write(STDERR_FILENO, out,
                              (size_t)n < sizeof(out) ? (size_t)n
                                                      : sizeof(out) - 1);
            (void)r;
        }
    }
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(lvl, fmt, ap);
    va_end(ap);
}

void
log_ratelimited(struct log_rl *rl, enum log_level lvl, const char *fmt, ...)
{
    struct timespec ts;
    unsigned dropped = 0;
    bool pass;
    va_list ap;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    pthread_mutex_lock(&rl_lock);
    if (ts.tv_sec - rl->window >= RL_WINDOW_S) {
        rl->window = ts.tv_sec;
        rl->count = 0;
    }
    pass = rl->count < RL_BURST;
    if (pass) {
        rl->count++;
        dropped = rl->dropped;
        rl->dropped = 0;
    } else {
        rl->dropped++;
    }
    pthread_mutex_unlock(&rl_lock);
    if (!pass) {
        return;
    }
    if (dropped) {
        log_msg(lvl, "(%u similar messages suppressed)", dropped);
    }
    va_start(ap, fmt);
    log_vmsg(lvl, fmt, ap);
    va_end(ap);
}
