/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the 9P2000.L decoder.
 *
 * Each input is one framed message.  It is decoded flat and again split
 * into three separately allocated segments (cut points derived from the
 * input), which must agree.  A message that decodes must re-encode to the
 * very same bytes (the wire form is canonical) and decode again to equal
 * fields.  Whatever happens, the result is formatted.  Any disagreement
 * aborts, so the fuzzer reports it.
 *
 * Built with -fsanitize=fuzzer when -Dfuzz=true; otherwise linked into
 * replay.c, which feeds it the corpus in CI.
 */
#include "proto/p9_codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

#define CHECK(cond)    \
    do {               \
        if (!(cond)) { \
            abort();   \
        }              \
    } while (0)

static uint32_t
hash(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

/* 'one' must outlive f: decoded data points at it. */
static int
decode_flat(struct iovec *one, const uint8_t *p, size_t len, struct p9_fcall *f)
{
    struct p9_rbuf b;

    memset(f, 0, sizeof(*f));
    p9_rbuf_init_flat(&b, one, p, len);
    return p9_decode(&b, len, f);
}

static void
format_all(const struct p9_fcall *f)
{
    char big[512];
    char tiny[9];

    p9_format(f, big, sizeof(big));
    CHECK(strlen(big) < sizeof(big));
    p9_format(f, tiny, sizeof(tiny));
    CHECK(strlen(tiny) < sizeof(tiny));
    p9_format(f, tiny, 1);
    CHECK(tiny[0] == '\0');
}

/* Client side: walk Rreaddir data as dirents until it ends or goes bad. */
static void
walk_dirents(const struct p9_data *d)
{
    struct iovec v[4];
    char scratch[64];
    struct p9_rbuf b;
    int n = p9_data_iov(d, v, 4);

    if (n < 0) {
        return;
    }
    p9_rbuf_init(&b, v, n, d->len, scratch, sizeof(scratch));
    while (b.left > 0 && !b.bad) {
        struct p9_dirent de;

        b.scratch_used = 0;
        p9_get_dirent(&b, &de);
        CHECK(b.bad || de.name.len == 0 ||
              memchr(de.name.s, 0, de.name.len) == NULL);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    struct p9_fcall f1;
    struct p9_fcall f2;
    struct p9_fcall f3;
    struct iovec seg[3];
    struct iovec one1;
    struct iovec one3;
    struct p9_rbuf b;
    uint32_t h = hash(data, len);
    size_t c1 = h % (len + 1);
    size_t c2 = c1 + (h >> 11) % (len - c1 + 1);
    char *scratch = malloc(len + 1);
    uint8_t *out = malloc(len + 1);
    int rc1;
    int rc2;

    rc1 = decode_flat(&one1, data, len, &f1);
    CHECK(rc1 == 0 || rc1 == -EPROTO || rc1 == -EOPNOTSUPP);

    /* The same bytes in three allocations: ASan sees any overread. */
    seg[0].iov_len = c1;
    seg[1].iov_len = c2 - c1;
    seg[2].iov_len = len - c2;
    {
        size_t off = 0;

        for (int i = 0; i < 3; i++) {
            /* Exact size (malloc(0) included): no slack to hide in. */
            /* NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI) */
            seg[i].iov_base = malloc(seg[i].iov_len);
            if (seg[i].iov_len > 0) {
                if (seg[i].iov_base == NULL) {
                    abort();
                }
                memcpy(seg[i].iov_base, data + off, seg[i].iov_len);
            }
            off += seg[i].iov_len;
        }
    }
    memset(&f2, 0, sizeof(f2));
    p9_rbuf_init(&b, seg, 3, len, scratch, len + 1);
    rc2 = p9_decode(&b, len, &f2);
    CHECK(rc1 == rc2);
    format_all(&f1);
    format_all(&f2);

    if (rc1 == 0) {
        struct iovec o = {out, len};
        struct p9_wbuf w;
        long n;

        CHECK(p9_fcall_equal(&f1, &f2));
        CHECK(p9_encoded_size(&f1) == len);
        p9_wbuf_init(&w, &o, 1);
        n = p9_encode(&w, &f1);
        CHECK(n == (long)len && memcmp(out, data, len) == 0);
        CHECK(decode_flat(&one3, out, len, &f3) == 0 &&
              p9_fcall_equal(&f1, &f3));
        /* The split decode's data/strings re-encode from their segments. */
        memset(out, 0, len);
        p9_wbuf_init(&w, &o, 1);
        CHECK(p9_encode(&w, &f2) == (long)len && memcmp(out, data, len) == 0);
        /* One byte short never fits. */
        o.iov_len = len - 1;
        p9_wbuf_init(&w, &o, 1);
        CHECK(p9_encode(&w, &f1) == -ENOBUFS);
        if (f1.type == P9_RREADDIR) {
            walk_dirents(&f1.u.rreaddir.data);
            walk_dirents(&f2.u.rreaddir.data);
        }
    }

    for (int i = 0; i < 3; i++) {
        free(seg[i].iov_base);
    }
    free(scratch);
    free(out);
    return 0;
}
