/* SPDX-License-Identifier: MIT */
/* CPU time of a process, for the benchmarks (virtfs bench, vhost_bench). */
#ifndef VIRTFS_UTIL_PROCSTAT_H
#define VIRTFS_UTIL_PROCSTAT_H

/* utime + stime of process 'pid' in ms (from /proc/PID/stat), or -1. */
double proc_cpu_ms(long pid);

#endif
