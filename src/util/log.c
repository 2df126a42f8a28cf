/* SPDX-License-Identifier: MIT */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static _Atomic int cur_level = LOG_LVL_INFO;
static bool use_syslog;
static _Thread_local int force_depth;
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

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t
utf8_len(const unsigned char *p, size_t left, uint32_t *cp)
{
    size_t n;
    uint32_t c;

    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        c = p[0] & 0x1fu;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        c = p[0] & 0x0fu;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        c = p[0] & 0x07u;
    } else {
        return 0;
    }
    if (n > left) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        c = c << 6 | (p[i] & 0x3fu);
    }
    /* overlong forms, surrogates, beyond U+10FFFF */
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff)) {
        return 0;
    }
    *cp = c;
    return n;
}

/* Code points that move the cursor, start a terminal sequence or reorder
 * the text a reader sees. */
static bool
cp_unsafe(uint32_t c)
{
    return c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0x2028 ||
           c == 0x2029 || (c >= 0x202a && c <= 0x202e) ||
           (c >= 0x2066 && c <= 0x2069) || c == 0x200e || c == 0x200f;
}

size_t
log_escape(char *dst, size_t size, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)src;
    size_t left = strlen(src);
    size_t o = 0;

    if (size == 0) {
        return 0;
    }
    while (left > 0) {
        uint32_t cp = 0;
        size_t n = utf8_len(p, left, &cp);

        if (n == 0 || cp_unsafe(cp)) {
            /* every byte of it as \xNN */
            if (n == 0) {
                n = 1;
            }
            if (o + 4 * n >= size) {
                break;
            }
            for (size_t i = 0; i < n; i++) {
                dst[o++] = '\\';
                dst[o++] = 'x';
                dst[o++] = hex[p[i] >> 4];
                dst[o++] = hex[p[i] & 0xf];
            }
        } else {
            if (o + n >= size) {
                break;
            }
            memcpy(dst + o, p, n);
            o += n;
        }
        p += n;
        left -= n;
    }
    dst[o] = '\0';
    return o;
}

void
log_force(bool on)
{
    force_depth += on ? 1 : -1;
}

__attribute__((format(printf, 3, 0))) static void
log_vmsg(bool always, enum log_level lvl, const char *fmt, va_list ap)
{
    static const char *const tags[] = {"error", "warn", "info", "debug"};
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    char raw[1024];
    char line[4 * sizeof(raw)];

    if (!always && force_depth == 0 && (int)lvl > atomic_load(&cur_level)) {
        return;
    }
    /*
     * Lines carry peer-provided strings (anames, paths, trace lines): a
     * newline or a terminal escape in them must not forge or hide log
     * lines, so every control character is shown as \xNN.
     */
    vsnprintf(raw, sizeof(raw), fmt, ap);
    log_escape(line, sizeof(line), raw);
    if (use_syslog) {
        syslog(prio[lvl], "%s", line);
    } else {
        /* one write per line so concurrent threads do not interleave */
        char out[sizeof(line) + 32];
        int n = snprintf(out, sizeof(out), "virtfs: %s: %s\n", tags[lvl], line);
        if (n > 0) {
            ssize_t r =
                write(STDERR_FILENO, out,
                      (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1);
            (void)r;
        }
    }
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(false, lvl, fmt, ap);
    va_end(ap);
}

void
log_always(enum log_level lvl, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(true, lvl, fmt, ap);
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
    log_vmsg(false, lvl, fmt, ap);
    va_end(ap);
}
