/* SPDX-License-Identifier: MIT */
/*
 * Logging: levels, stderr or syslog, and a rate limit for messages a peer
 * (guest, client) can trigger, so a hostile guest cannot flood the host log.
 */
#ifndef VIRTFS_UTIL_LOG_H
#define VIRTFS_UTIL_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
    LOG_LVL_ERROR = 0,
    LOG_LVL_WARN = 1,
    LOG_LVL_INFO = 2,
    LOG_LVL_DEBUG = 3,
};

/* Parse "error|warn|info|debug"; returns -1 if unknown. */
int log_parse_level(const char *s);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Send messages to syslog (ident) instead of stderr. */
void log_use_syslog(const char *ident);

/*
 * Copy src to dst (size bytes, NUL-terminated) with every control
 * character (C0, DEL, C1), line or paragraph separator, bidirectional
 * override and invalid UTF-8 byte written as \xNN.  Every log line goes
 * through it.  Returns the length written.
 */
size_t log_escape(char *dst, size_t size, const char *src);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level lvl,
                                                   const char *fmt, ...);

/*
 * Output the user asked for explicitly (--trace lines, --stats and SIGUSR1
 * reports): written whatever the --log-level, tagged with 'lvl'.
 */
__attribute__((format(printf, 2, 3))) void log_always(enum log_level lvl,
                                                      const char *fmt, ...);
#define log_trace(...) log_always(LOG_LVL_INFO, __VA_ARGS__)
/* While on (nestable, this thread only), every level is written: wrap a
 * report the user asked for whose lines use log_info. */
void log_force(bool on);

/*
 * Peer-triggerable message: at most 'burst' lines per 10 s per call site
 * (the site's static state is passed in); the number suppressed is
 * reported with the next line that passes.
 */
struct log_rl {
    long window;    /* start of the current window (s, monotonic) */
    unsigned count; /* lines in this window */
    unsigned dropped;
};
__attribute__((format(printf, 3, 4))) void
log_ratelimited(struct log_rl *rl, enum log_level lvl, const char *fmt, ...);

#define log_err(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                           \
    do {                                         \
        if (log_get_level() >= LOG_LVL_DEBUG) {  \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__); \
        }                                        \
    } while (0)

/* One rate-limited warning per call site. */
#define log_peer(...)                                     \
    do {                                                  \
        static struct log_rl rl_;                         \
        log_ratelimited(&rl_, LOG_LVL_WARN, __VA_ARGS__); \
    } while (0)

#endif
