/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpus for fuzz_decode: one valid message of every
 * 9P2000.L type (variant 0), the other variants of the messages with
 * counts and strings, and a few malformed frames.
 *
 *   ninja -C build tests/fuzz/gen_corpus && build/tests/fuzz/gen_corpus DIR
 */
#include "proto/p9_codec.h"
#include "samples.h"

#include <stdio.h>
#include <string.h>

static int
write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "wb");
    if (fp == NULL || fwrite(p, 1, n, fp) != n) {
        perror(path);
        if (fp != NULL) {
            fclose(fp);
        }
        return -1;
    }
    return fclose(fp);
}

int
main(int argc, char **argv)
{
    static uint8_t buf[8192];
    static const uint8_t more[] = {P9_TWALK, P9_RWALK,    P9_TWRITE,
                                   P9_RREAD, P9_TLCREATE, P9_TSYMLINK,
                                   P9_TLOCK, P9_TVERSION};
    int rc = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < sample_ntypes; i++) {
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            struct iovec iov = {buf, sizeof(buf)};
            struct p9_wbuf w;
            struct p9_fcall f;
            char name[64];
            long n;

            if (v != 0 && memchr(more, sample_types[i], sizeof(more)) == NULL) {
                continue;
            }
            sample_fcall(sample_types[i], v, &f);
            p9_wbuf_init(&w, &iov, 1);
            n = p9_encode(&w, &f);
            if (n < 0) {
                return 1;
            }
            snprintf(name, sizeof(name), "%03u-%s-%d", sample_types[i],
                     p9_type_name(sample_types[i]), v);
            rc |= write_seed(argv[1], name, buf, (size_t)n);
        }
    }
    /* A few near-misses: trailing byte, nwname 17, NUL in a name. */
    {
        static const uint8_t trailing[] = {8, 0, 0, 0, 109, 1, 0, 0};
        static const uint8_t nw17[] = {17, 0, 0, 0, 110, 1, 0,  1, 0,
                                       0,  0, 2, 0, 0,   0, 17, 0};
        static const uint8_t nul[] = {18, 0, 0, 0, 110, 1, 0, 1, 0,
                                      0,  0, 2, 0, 0,   0, 1, 0, 0};

        rc |= write_seed(argv[1], "bad-trailing", trailing, sizeof(trailing));
        rc |= write_seed(argv[1], "bad-nwname17", nw17, sizeof(nw17));
        rc |= write_seed(argv[1], "bad-nul", nul, sizeof(nul));
    }
    return rc != 0;
}
