/* SPDX-License-Identifier: MIT */
#include "util/procstat.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

double
proc_cpu_ms(long pid)
{
    char path[64];
    char buf[4096];
    unsigned long ut;
    unsigned long st;
    FILE *f;
    char *p;
    size_t n;

    if (pid <= 0) {
        return -1;
    }
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* comm may contain spaces */
    if (p == NULL) {
        return -1;
    }
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}
