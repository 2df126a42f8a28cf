/* SPDX-License-Identifier: MIT */
/*
 * A tiny TAP producer for the project's C tests.
 *
 *   tap_ok(cond, "fmt", ...)  -> "ok N - ..." or "not ok N - ..."
 *   tap_todo(cond, name, why) -> the same with "# TODO why" (does not fail)
 *   tap_skip(name, why)       -> "ok N - name # SKIP why" (counted as skipped)
 *   tap_done()                -> prints the plan and "# N passed, N failed",
 *                                returns the process exit status.
 */
#ifndef VIRTFS_TESTS_TAP_H
#define VIRTFS_TESTS_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static int tap_n, tap_failed, tap_skipped;

__attribute__((format(printf, 2, 3), unused)) static bool
tap_ok(bool cond, const char *fmt, ...)
{
    va_list ap;

    tap_n++;
    if (!cond) {
        tap_failed++;
    }
    printf("%sok %d - ", cond ? "" : "not ", tap_n);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    return cond;
}

__attribute__((format(printf, 1, 2), unused)) static void
tap_diag(const char *fmt, ...)
{
    va_list ap;

    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* A TAP "# TODO" line: a known bug, reported; does not fail the run. */
__attribute__((unused)) static void
tap_todo(bool cond, const char *name, const char *why)
{
    tap_n++;
    printf("%sok %d - %s # TODO %s\n", cond ? "" : "not ", tap_n, name, why);
    fflush(stdout);
}

/* A TAP "# SKIP" line: not run here (a harness reports it as skipped). */
__attribute__((unused)) static void
tap_skip(const char *name, const char *why)
{
    tap_n++;
    tap_skipped++;
    printf("ok %d - %s # SKIP %s\n", tap_n, name, why);
    fflush(stdout);
}

__attribute__((unused)) static int
tap_done(void)
{
    if (tap_skipped) {
        printf("1..%d\n# %d passed, %d skipped, %d failed\n", tap_n,
               tap_n - tap_failed - tap_skipped, tap_skipped, tap_failed);
    } else {
        printf("1..%d\n# %d passed, %d failed\n", tap_n, tap_n - tap_failed,
               tap_failed);
    }
    return tap_failed ? 1 : 0;
}

#endif
