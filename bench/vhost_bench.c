/* SPDX-License-Identifier: MIT */
/*
 * vhost_bench: the VirtIO path of virtfsd without a guest.  It plays the
 * VMM and the guest driver through the in-repo front-end (tests/vhost/fe.c:
 * memfd guest RAM, a split ring, eventfd kicks and calls) against a
 * running virtfsd --vhost-user SOCKET, and drives sequential 9P requests
 * through the ring, one in flight, as a guest process doing one thing at
 * a time does.  Prints, per workload, ops/s, p50/p99 latency and (with
 * --pid) the server's CPU per op, in the key=value format of
 * `virtfs bench`.
 *
 * usage: vhost_bench SOCKET [-t SECONDS] [-w stat,read,write] [--pid PID]
 *                    [--io BYTES] [--file NAME]
 *
 * The export's root must hold NAME (default vb.file) of at least BYTES
 * (default 65536; at most 1 MiB): bench/vhost-bench.sh makes it, starts
 * virtfsd and measures the serving process.
 *
 *   stat   Twalk root -> NAME, Tgetattr, Tclunk   (3 RPCs per op)
 *   read   Tread of BYTES from the open file, sliding over it
 *   write  Twrite of BYTES to the open file, sliding over it
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fe.h"
#include "util/procstat.h"
#include "tmsg.h"

#define NOFID 0xffffffffu
#define MAX_IO (1u << 20)
/* latency histogram: 100 ns buckets up to 100 ms (the last one: longer) */
#define HIST_NS 100u
#define HIST_N 1000000u

static struct fe fe;
static uint64_t tg;   /* request buffer (gpa) */
static uint64_t rg;   /* reply buffer (gpa) */
static uint32_t tcap; /* their sizes */
static uint32_t rcap;

/* One request through the ring; the reply's type, or -errno. */
static int
rpc(const struct tmsg *t)
{
    struct fe_seg s[2] = {{tg, t->len, false}, {rg, rcap, true}};
    uint8_t *r = fe_ptr(&fe, rg);
    uint32_t size;
    uint32_t id;
    uint32_t len;

    uint16_t old = fe.avail_idx;

    fe_publish(&fe, fe_chain(&fe, s, 2, false));
    /* like a guest driver: a kick only when the device asked for one */
    fe_kick_if_needed(&fe, old);
    if (fe_used(&fe, &id, &len) != 0) {
        return -ETIMEDOUT;
    }
    memcpy(&size, r, 4);
    if (len < 7 || size != len) {
        return -EPROTO;
    }
    return r[4];
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The q-quantile of 'ops' samples in the histogram, in us. */
static double
hist_pct(const uint32_t *hist, unsigned long ops, double q)
{
    unsigned long want = (unsigned long)(q * (double)ops) + 1;
    unsigned long seen = 0;

    for (uint32_t b = 0; b < HIST_N; b++) {
        seen += hist[b];
        if (seen >= want) {
            return ((double)b + 0.5) * HIST_NS / 1e3;
        }
    }
    return (double)HIST_N * HIST_NS / 1e3;
}

static int
op_stat(const char *name)
{
    struct tmsg t;

    t_begin(&t, &fe, tg, 110, 1); /* Twalk 1 -> 2 name */
    t_u32(&t, 1);
    t_u32(&t, 2);
    t_u16(&t, 1);
    t_str(&t, name);
    t_end(&t, 0);
    if (rpc(&t) != 111) {
        return -1;
    }
    t_begin(&t, &fe, tg, 24, 1); /* Tgetattr 2 basic */
    t_u32(&t, 2);
    t_u64(&t, 0x7ffu);
    t_end(&t, 0);
    if (rpc(&t) != 25) {
        return -1;
    }
    t_begin(&t, &fe, tg, 120, 1); /* Tclunk 2 */
    t_u32(&t, 2);
    t_end(&t, 0);
    return rpc(&t) == 121 ? 0 : -1;
}

static int
op_io(bool write, uint32_t fid, uint64_t off, uint32_t io)
{
    struct tmsg t;
    int type;

    t_begin(&t, &fe, tg, write ? 118 : 116, 1);
    t_u32(&t, fid);
    t_u64(&t, off);
    t_u32(&t, io);
    if (write) {
        memset(t.p + t.len, 0x5a, io);
        t.len += io;
    }
    t_end(&t, 0);
    type = rpc(&t);
    return type == (write ? 119 : 117) ? 0 : -1;
}

/* Walk 1 -> fid, Tlopen with flags. */
static int
open_fid(const char *name, uint32_t fid, uint32_t flags)
{
    struct tmsg t;

    t_begin(&t, &fe, tg, 110, 1);
    t_u32(&t, 1);
    t_u32(&t, fid);
    t_u16(&t, 1);
    t_str(&t, name);
    t_end(&t, 0);
    if (rpc(&t) != 111) {
        return -1;
    }
    t_begin(&t, &fe, tg, 12, 1);
    t_u32(&t, fid);
    t_u32(&t, flags);
    t_end(&t, 0);
    return rpc(&t) == 13 ? 0 : -1;
}

static int
run(const char *wl, const char *name, double secs, int pid, uint32_t io,
    uint64_t fsize, uint32_t *hist)
{
    bool is_stat = strcmp(wl, "stat") == 0;
    bool is_write = strcmp(wl, "write") == 0;
    uint64_t off = 0;
    unsigned long ops = 0;
    double c0;
    double c1;
    unsigned long k0;
    double t0;
    double t;
    uint32_t fid = is_write ? 4 : 3;

    if (!is_stat && strcmp(wl, "read") != 0 && !is_write) {
        fprintf(stderr, "vhost_bench: unknown workload %s\n", wl);
        return -1;
    }
    if (!is_stat && open_fid(name, fid, is_write ? 1 : 0) < 0) {
        fprintf(stderr, "vhost_bench: cannot open %s\n", name);
        return -1;
    }
    c0 = proc_cpu_ms(pid);
    k0 = fe.kicks;
    t0 = now_s();
    t = t0;
    while (t - t0 < secs) {
        double s = t;
        int err;

        if (is_stat) {
            err = op_stat(name);
        } else {
            err = op_io(is_write, fid, off, io);
            off += io;
            if (off + io > fsize) {
                off = 0;
            }
        }
        if (err < 0) {
            fprintf(stderr, "vhost_bench: %s failed\n", wl);
            return -1;
        }
        t = now_s();
        {
            double b = (t - s) * 1e9 / HIST_NS;

            hist[b < HIST_N - 1 ? (uint32_t)b : HIST_N - 1]++;
        }
        ops++;
    }
    c1 = proc_cpu_ms(pid);
    {
        double el = t - t0;
        printf("%s conns=1 secs=%.2f ops=%lu ops/s=%.0f", wl, el, ops,
               (double)ops / el);
        if (!is_stat) {
            printf(" MiB/s=%.1f io=%u", (double)ops * io / el / 1048576.0, io);
        }
        printf(" p50_us=%.1f p99_us=%.1f", hist_pct(hist, ops, 0.50),
               hist_pct(hist, ops, 0.99));
        if (c0 >= 0 && c1 >= 0 && ops > 0) {
            printf(" cpu_ms_per_kop=%.2f", (c1 - c0) / ((double)ops / 1000));
        }
        if (ops > 0) {
            printf(" kicks_per_op=%.2f", (double)(fe.kicks - k0) / (double)ops);
        }
        printf(" transport=vhost-user\n");
        fflush(stdout);
    }
    if (!is_stat) {
        struct tmsg tm;

        t_begin(&tm, &fe, tg, 120, 1);
        t_u32(&tm, fid);
        t_end(&tm, 0);
        (void)rpc(&tm);
    }
    return 0;
}

static void
usage(FILE *out)
{
    fprintf(out, "usage: vhost_bench SOCKET [-t SECONDS] [-w stat,read,write]"
                 " [--pid PID]\n"
                 "                   [--io BYTES] [--file NAME] "
                 "[--file-size BYTES]\n");
}

int
main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"pid", required_argument, NULL, 'p'},
        {"io", required_argument, NULL, 'i'},
        {"file", required_argument, NULL, 'f'},
        {"file-size", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *wls = "stat,read,write";
    const char *name = "vb.file";
    double secs = 3;
    uint64_t fsize = 0;
    uint32_t io = 65536;
    uint32_t *hist;
    struct tmsg t;
    char *list;
    char *save = NULL;
    int pid = 0;
    int c;
    int rc = 0;

    while ((c = getopt_long(argc, argv, "t:w:h", lopts, NULL)) != -1) {
        switch (c) {
        case 't': secs = atof(optarg); break;
        case 'w': wls = optarg; break;
        case 'p': pid = atoi(optarg); break;
        case 'i': io = (uint32_t)strtoul(optarg, NULL, 0); break;
        case 'f': name = optarg; break;
        case 's': fsize = strtoull(optarg, NULL, 0); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || io == 0 || io > MAX_IO) {
        usage(stderr);
        return 2;
    }
    if (fsize < io) {
        fsize = io;
    }
    hist = malloc(sizeof(*hist) * HIST_N);
    memset(&fe, 0, sizeof(fe));
    fe.sock = fe.memfd = fe.kick = fe.call = fe.err = -1;
    if (hist == NULL || fe_connect(&fe, argv[optind]) < 0 ||
        fe_setup(&fe, VHU_FEATURES, 256) != 0) {
        fprintf(stderr, "vhost_bench: no vhost-user back-end at %s\n",
                argv[optind]);
        free(hist);
        return 1;
    }
    tcap = io + 4096;
    rcap = io + 4096;
    tg = fe_alloc(&fe, tcap);
    rg = fe_alloc(&fe, rcap);

    t_begin(&t, &fe, tg, 100, 0xffff); /* Tversion */
    t_u32(&t, io + 4096);
    t_str(&t, "9P2000.L");
    t_end(&t, 0);
    if (rpc(&t) != 101) {
        fprintf(stderr, "vhost_bench: Tversion failed\n");
        free(hist);
        fe_close(&fe);
        return 1;
    }
    t_begin(&t, &fe, tg, 104, 1); /* Tattach 1, root, default export */
    t_u32(&t, 1);
    t_u32(&t, NOFID);
    t_str(&t, "root");
    t_str(&t, "");
    t_u32(&t, 0);
    t_end(&t, 0);
    if (rpc(&t) != 105) {
        fprintf(stderr, "vhost_bench: Tattach failed\n");
        free(hist);
        fe_close(&fe);
        return 1;
    }
    list = strdup(wls);
    for (char *w = strtok_r(list, ",", &save); w != NULL && rc == 0;
         w = strtok_r(NULL, ",", &save)) {
        memset(hist, 0, sizeof(*hist) * HIST_N);
        rc = run(w, name, secs, pid, io, fsize, hist) < 0 ? 1 : 0;
    }
    free(list);
    free(hist);
    fe_close(&fe);
    return rc;
}
