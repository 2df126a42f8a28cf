/* SPDX-License-Identifier: MIT */
/*
 * readdir of a big merged directory on a layered export: N entries in the
 * lower (half of them empty files, which the xattr-whiteout form makes
 * the costly case), N/10 new files, N/100 whiteouts and N/100 copied-up
 * files in the upper.  Checks the merged listing (count, no whiteout, no
 * duplicate), that a Treaddir at any offset, also on a fresh fid, resumes
 * exactly where the full listing has that offset, and prints the time of
 * one full listing.  argv[1]: N (default 10000).
 */
#include "../server/harness.h"

#include <sys/resource.h>
#include <sys/sysmacros.h>

#include "ov_harness.h"

static void
mkfile(const char *dir, const char *prefix, long i, bool empty)
{
    char p[PATH_MAX];

    snprintf(p, sizeof(p), "%s/%s%07ld", dir, prefix, i);
    if (th_write_file(p, "x", empty ? 0 : 1) < 0) {
        perror(p);
        exit(99);
    }
}

struct ent {
    char name[32];
    uint64_t next; /* the offset that resumes after this entry */
};

/* Parse one Rreaddir payload into ents[*n...]; returns the count parsed. */
static size_t
parse(const uint8_t *b, size_t len, struct ent *ents, size_t *n, size_t cap)
{
    size_t got = 0;
    size_t pos = 0;

    while (pos + 13 + 8 + 1 + 2 <= len && *n < cap) {
        uint64_t off;
        uint16_t nl;

        memcpy(&off, b + pos + 13, 8);
        memcpy(&nl, b + pos + 22, 2);
        if (pos + 24 + nl > len) {
            break;
        }
        snprintf(ents[*n].name, sizeof(ents[*n].name), "%.*s", (int)nl,
                 (const char *)b + pos + 24);
        ents[*n].next = off;
        (*n)++;
        got++;
        pos += 24 + nl;
    }
    return got;
}

/* Every entry of dir fid 'd' from offset 'off', at most 'cap'. */
static size_t
list_from(struct p9c_fid *d, uint64_t off, struct ent *ents, size_t cap,
          bool one_batch)
{
    static uint8_t buf[65536];
    size_t n = 0;

    for (;;) {
        ssize_t r = p9c_readdir(d, off, buf, sizeof(buf));

        if (r <= 0 || parse(buf, (size_t)r, ents, &n, cap) == 0) {
            break;
        }
        off = ents[n - 1].next;
        if (one_batch || n == cap) {
            break;
        }
    }
    return n;
}

/* CPU time of the whole process (the server runs in it), in ms: less
 * noisy than wall time on a loaded machine. */
static uint64_t
cpu_ms(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

static int
open_root(struct p9c_fid *root, struct p9c_fid **d)
{
    int err = p9c_walk(root, "", d);

    if (err == 0) {
        err = p9c_open(*d, 0);
    }
    return err;
}

int
main(int argc, char **argv)
{
    struct th_export ex = {.name = "ov", .path = "/ov"};
    long n = argc > 1 ? atol(argv[1]) : 10000;
    long nnew = n / 10;
    long nwh = n / 100;
    long ncu = n / 100;
    size_t want = (size_t)(2 + n + nnew - nwh);
    size_t cap = want + 16;
    struct ent *full = calloc(cap, sizeof(*full));
    struct ent *part = calloc(cap, sizeof(*part));
    char *base = th_mkdtemp("ovbig");
    struct th_srv *s;
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid *d;
    struct p9c_fid *d2;
    size_t got;
    uint64_t t0;
    uint64_t t1;
    uint64_t c0;
    uint64_t c1;
    bool dup = false;
    bool wh = false;
    int bad = 0;

    if (full == NULL || part == NULL || n < 100) {
        free(full);
        free(part);
        return 99;
    }
    snprintf(g_lower, sizeof(g_lower), "%s/lower", base);
    snprintf(g_upper, sizeof(g_upper), "%s/upper", base);
    snprintf(g_work, sizeof(g_work), "%s/work", base);
    if (mkdir(g_lower, 0755) < 0 || mkdir(g_upper, 0755) < 0) {
        free(full);
        free(part);
        return 99;
    }
    for (long i = 0; i < n; i++) {
        mkfile(g_lower, "f", i, i % 2 == 0);
    }
    for (long i = 0; i < nnew; i++) {
        mkfile(g_upper, "g", i, i % 2 == 0);
    }
    th_make_backend = make_ov;
    s = th_start(NULL, &ex, 1, NULL);
    if (th_mount(s, "ov", &c, &root) < 0) {
        return 99;
    }
    /* whiteouts and copy-ups through the export, as a guest makes them */
    for (long i = 0; i < nwh + ncu; i++) {
        char name[32];
        struct p9c_fid *f;

        snprintf(name, sizeof(name), "f%07ld", i * 7);
        if (i < nwh) {
            if (p9c_unlinkat(root, name, 0) < 0) {
                return 99;
            }
        } else {
            if (p9c_walk(root, name, &f) < 0 || p9c_open(f, P9_DOTL_RDWR) < 0 ||
                p9c_pwrite(f, "y", 1, 0) != 1) {
                return 99;
            }
            p9c_clunk(f);
        }
    }

    if (open_root(root, &d) < 0) {
        return 99;
    }
    t0 = th_now_ms();
    c0 = cpu_ms();
    got = list_from(d, 0, full, cap, false);
    c1 = cpu_ms();
    t1 = th_now_ms();
    printf("# %ld lower + %ld upper entries, %ld whiteouts, %ld copied up: "
           "full listing %zu entries in %llu ms (%llu ms CPU)\n",
           n, nnew, nwh, ncu, got, (unsigned long long)(t1 - t0),
           (unsigned long long)(c1 - c0));
    for (size_t i = 0; i < got; i++) {
        wh |= strcmp(full[i].name, "f0000000") == 0 ||
              strcmp(full[i].name, "f0000007") == 0;
        for (size_t j = i + 1; j < got && j < i + 2; j++) {
            dup |= strcmp(full[i].name, full[j].name) == 0;
        }
    }
    tap_ok(got == want && !wh && !dup,
           "the merged listing has every visible name once, no whiteout "
           "(%zu of %zu)",
           got, want);

    /* resume: at 200 offsets spread over the listing, on this fid and on
     * a fresh one, the next entry is the full listing's */
    if (open_root(root, &d2) < 0) {
        return 99;
    }
    t0 = th_now_ms();
    for (size_t k = 0; k + 1 < got; k += got / 200 + 1) {
        struct p9c_fid *f = (k / (got / 200 + 1)) % 2 ? d2 : d;
        size_t m = list_from(f, full[k].next, part, 4, true);

        if (m == 0 || strcmp(part[0].name, full[k + 1].name) != 0) {
            bad++;
        }
    }
    t1 = th_now_ms();
    tap_ok(bad == 0,
           "Treaddir at any offset resumes exactly, on the same "
           "and a fresh fid (%d wrong; 200 resumes in %llu ms)",
           bad, (unsigned long long)(t1 - t0));
    /* the listing again on a fresh fid: the same order */
    p9c_clunk(d2);
    if (open_root(root, &d2) < 0) {
        return 99;
    }
    got = list_from(d2, 0, part, cap, false);
    bad = 0;
    for (size_t i = 0; i < got; i++) {
        bad += strcmp(part[i].name, full[i].name) != 0 ||
               part[i].next != full[i].next;
    }
    tap_ok(got == want && bad == 0,
           "a second listing on a fresh fid has "
           "the same names at the same offsets (%d differ)",
           bad);
    p9c_clunk(d2);
    p9c_clunk(d);
    p9c_clunk(root);
    p9c_close(c);
    th_stop(s);
    th_rmtree(base);
    free(base);
    free(full);
    free(part);
    return tap_done();
}
