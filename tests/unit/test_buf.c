/* SPDX-License-Identifier: MIT */
/*
 * Cursor tests and the server's encode paths: Rread data written in place
 * through p9_wbuf_iov() then p9_encode() with data.ptr == NULL; Rreaddir
 * built with p9_put_dirent() on the reply writer; decoded data handed to
 * p9_data_iov()/p9_data_copy().
 */
#include "proto/p9_codec.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* 'one' is static: decoded data points at it after we return. */
static bool
dec_flat_check(const uint8_t *buf, long len, struct p9_fcall *f)
{
    static struct iovec one;
    struct p9_rbuf b;

    p9_rbuf_init_flat(&b, &one, buf, (size_t)len);
    return p9_decode(&b, (size_t)len, f) == 0;
}

static void
test_scalars(void)
{
    uint8_t a[7];
    uint8_t b[5];
    uint8_t c[3];
    struct iovec iov[3] = {{a, sizeof(a)}, {b, sizeof(b)}, {c, 3}};
    struct p9_wbuf w;
    struct p9_rbuf r;
    struct p9_qid q;
    struct p9_str s;

    p9_wbuf_init(&w, iov, 3);
    tap_ok(w.cap == 15 && p9_wbuf_room(&w) == 15,
           "wbuf capacity sums segments");
    p9_put_u8(&w, 0x81);
    p9_put_u16(&w, 0x8382);
    p9_put_u32(&w, 0x87868584);
    p9_put_u64(&w, 0x8f8e8d8c8b8a8988ull);
    tap_ok(!w.bad && w.used == 15 && p9_wbuf_room(&w) == 0,
           "15 bytes of integers fill 3 segments exactly");
    tap_ok(a[0] == 0x81 && a[1] == 0x82 && a[2] == 0x83 && a[3] == 0x84 &&
               a[6] == 0x87 && b[0] == 0x88 && c[2] == 0x8f,
           "little-endian bytes across segment edges");
    p9_put_u8(&w, 1);
    tap_ok(w.bad && w.used == 15, "overflow latches bad, writes nothing");

    p9_rbuf_init(&r, iov, 3, 15, NULL, 0);
    tap_ok(p9_get_u8(&r) == 0x81 && p9_get_u16(&r) == 0x8382 &&
               p9_get_u32(&r) == 0x87868584 &&
               p9_get_u64(&r) == 0x8f8e8d8c8b8a8988ull && p9_rbuf_done(&r) == 0,
           "integers read back across segment edges");
    tap_ok(p9_get_u32(&r) == 0 && r.bad && p9_rbuf_done(&r) == -EPROTO,
           "reading past the end returns 0 and latches bad");
    tap_ok(p9_get_u8(&r) == 0 && p9_get_u64(&r) == 0,
           "later reads keep returning 0");

    /* patch across the a/b edge */
    p9_wbuf_init(&w, iov, 3);
    p9_wbuf_skip(&w, 10);
    p9_wbuf_patch_u32(&w, 5, 0xddccbbaa);
    tap_ok(!w.bad && a[5] == 0xaa && a[6] == 0xbb && b[0] == 0xcc &&
               b[1] == 0xdd,
           "patch_u32 straddling two segments");
    p9_wbuf_patch_u32(&w, 7, 1);
    tap_ok(w.bad, "patch beyond what was written latches bad");

    /* qid + str through a writer, then back */
    p9_wbuf_init(&w, iov, 3);
    q.type = P9_QTDIR;
    q.version = 7;
    q.path = 0x1122334455667788ull;
    p9_put_qid(&w, &q);
    tap_ok(!w.bad && w.used == 13, "qid is 13 bytes");
    p9_put_cstr(&w, "x");
    tap_ok(w.bad, "string that does not fit latches bad");
    p9_wbuf_init(&w, iov, 3);
    p9_put_cstr(&w, "hello, world");
    tap_ok(!w.bad && w.used == 14, "cstr: len[2] + bytes");
    {
        char scratch[4];

        p9_rbuf_init(&r, iov, 3, 14, scratch, sizeof(scratch));
        p9_get_str(&r, &s);
        tap_ok(r.bad && s.len == 0 && s.s != NULL,
               "straddling string, scratch too small -> bad, empty view");
    }
    {
        char scratch[32];

        p9_rbuf_init(&r, iov, 3, 14, scratch, sizeof(scratch));
        p9_get_str(&r, &s);
        tap_ok(!r.bad && s.len == 12 && memcmp(s.s, "hello, world", 12) == 0 &&
                   s.s == scratch && r.scratch_used == 12,
               "straddling string copied into scratch");
    }
    {
        static char big[70000];

        memset(big, 'a', sizeof(big) - 1);
        p9_wbuf_init(&w, iov, 3);
        p9_put_cstr(&w, big);
        tap_ok(w.bad && w.used == 0, "cstr longer than 65535 latches bad");
    }
    /* get_bytes */
    {
        uint8_t out[4];

        p9_rbuf_init(&r, iov, 3, 3, NULL, 0);
        p9_get_bytes(&r, out, 4);
        tap_ok(r.bad && out[0] == 0 && out[3] == 0,
               "get_bytes short: bad, dst zeroed");
    }
}

/* The Rread path of the server: data goes straight into the reply. */
static void
test_rread_in_place(void)
{
    static const size_t segsz[] = {5, 9, 3, 4000, 100};
    struct iovec seg[5];
    struct iovec out[8];
    struct p9_wbuf w;
    struct p9_fcall f;
    struct p9_fcall g;
    struct p9_rbuf r;
    char scratch[16];
    uint8_t *back;
    size_t n = 3000;
    size_t total = 0;
    int cnt;
    long len;
    bool same = true;

    for (int i = 0; i < 5; i++) {
        seg[i].iov_base = malloc(segsz[i]);
        seg[i].iov_len = segsz[i];
        total += segsz[i];
    }
    p9_wbuf_init(&w, seg, 5);
    cnt = p9_wbuf_iov(&w, P9_HDRSZ + 4, n, out, 8);
    tap_ok(cnt == 3 && out[0].iov_len == 3 && out[1].iov_len == 3 &&
               out[2].iov_len == n - 6,
           "p9_wbuf_iov at offset 11 spans 3 segments (%d)", cnt);
    /* "preadv" into it */
    {
        size_t k = 0;

        for (int i = 0; i < cnt; i++) {
            for (size_t j = 0; j < out[i].iov_len; j++) {
                ((uint8_t *)out[i].iov_base)[j] = (uint8_t)(k++ * 13 + 1);
            }
        }
    }
    memset(&f, 0, sizeof(f));
    f.type = P9_RREAD;
    f.tag = 42;
    f.u.rread.data.len = (uint32_t)n;
    f.u.rread.data.ptr = NULL; /* already in place */
    tap_ok(p9_encoded_size(&f) == P9_HDRSZ + 4 + n,
           "encoded size counts in-place data");
    len = p9_encode(&w, &f);
    tap_ok(len == (long)(P9_HDRSZ + 4 + n), "Rread encodes around the data");

    p9_rbuf_init(&r, seg, 5, (size_t)len, scratch, sizeof(scratch));
    tap_ok(p9_decode(&r, (size_t)len, &g) == 0 && g.type == P9_RREAD &&
               g.tag == 42 && g.u.rread.data.len == n &&
               g.u.rread.data.ptr == NULL,
           "decodes; data is not contiguous so ptr is NULL");
    back = malloc(n);
    p9_data_copy(&g.u.rread.data, back);
    for (size_t k = 0; k < n; k++) {
        same = same && back[k] == (uint8_t)(k * 13 + 1);
    }
    tap_ok(same, "data written in place survives the encode");
    cnt = p9_data_iov(&g.u.rread.data, out, 8);
    tap_ok(cnt == 3 && out[0].iov_base == (uint8_t *)seg[1].iov_base + 6 &&
               out[0].iov_len == 3,
           "p9_data_iov returns the 3 source segments");
    tap_ok(p9_data_iov(&g.u.rread.data, out, 2) == -EINVAL,
           "p9_data_iov: too few entries -> -EINVAL");

    /* Re-encoding the decoded (gathered) message elsewhere copies it. */
    {
        uint8_t *flat = malloc((size_t)len);
        struct iovec one = {flat, (size_t)len};
        struct p9_wbuf w2;
        struct p9_fcall h;

        p9_wbuf_init(&w2, &one, 1);
        tap_ok(p9_encode(&w2, &g) == len && dec_flat_check(flat, len, &h) &&
                   p9_fcall_equal(&g, &h),
               "decoded split data re-encodes into a flat buffer");
        free(flat);
    }

    /* range checks */
    tap_ok(p9_wbuf_iov(&w, total - 1, 2, out, 8) == -EINVAL,
           "p9_wbuf_iov past the end -> -EINVAL");
    tap_ok(p9_wbuf_iov(&w, 0, total, out, 4) == -EINVAL,
           "p9_wbuf_iov with too few entries -> -EINVAL");
    tap_ok(p9_wbuf_iov(&w, 0, total, out, 5) == 5, "whole buffer = 5 entries");
    tap_ok(p9_wbuf_iov(&w, total, 0, out, 1) == 0, "empty range = 0 entries");

    /* too small for header + data: nothing written */
    f.u.rread.data.len = (uint32_t)(total - 10);
    tap_ok(p9_encode(&w, &f) == -ENOBUFS,
           "in-place data past the end -> -ENOBUFS");

    free(back);
    for (int i = 0; i < 5; i++) {
        free(seg[i].iov_base);
    }
}

/* The Rreaddir path: dirents appended after offset 11, then p9_encode(). */
static void
test_rreaddir_dirents(void)
{
    static const char *const names[] = {".",
                                        "..",
                                        "file-a",
                                        "dir_b",
                                        "a longer name with spaces",
                                        "\xc3\xa9t\xc3\xa9"};
    uint8_t s1[17];
    uint8_t s2[60];
    uint8_t s3[300];
    struct iovec seg[3] = {
        {s1, sizeof(s1)}, {s2, sizeof(s2)}, {s3, sizeof(s3)}};
    struct p9_wbuf w;
    struct p9_fcall f;
    struct p9_fcall g;
    struct p9_rbuf r;
    struct iovec dv[8];
    char scratch[256];
    int nput = 0;
    int nread = 0;
    bool same = true;
    long len;
    int cnt;

    p9_wbuf_init(&w, seg, 3);
    p9_wbuf_skip(&w, P9_HDRSZ + 4);
    for (int round = 0; round < 10; round++) {
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            struct p9_dirent d;

            d.qid.type = i < 2 ? P9_QTDIR : P9_QTFILE;
            d.qid.version = (uint32_t)i;
            d.qid.path = 1000 + (uint64_t)nput;
            d.offset = (uint64_t)nput + 1;
            d.type = (uint8_t)(i < 2 ? 4 : 8);
            d.name.s = names[i];
            d.name.len = (uint16_t)strlen(names[i]);
            if (p9_wbuf_room(&w) < p9_dirent_size(d.name.len)) {
                goto full;
            }
            p9_put_dirent(&w, &d);
            nput++;
        }
    }
full:
    tap_ok(!w.bad && nput > 5, "dirents appended until full (%d)", nput);
    {
        struct p9_dirent big;
        size_t before = w.used;

        memset(&big, 0, sizeof(big));
        big.name.s = scratch;
        big.name.len = 200;
        memset(scratch, 'z', sizeof(scratch));
        p9_put_dirent(&w, &big);
        tap_ok(w.bad && w.used == before,
               "a dirent that does not fit writes nothing");
    }
    memset(&f, 0, sizeof(f));
    f.type = P9_RREADDIR;
    f.tag = 9;
    f.u.rreaddir.data.len = (uint32_t)(w.used - (P9_HDRSZ + 4));
    len = p9_encode(&w, &f);
    tap_ok(len > 0 && (size_t)len == P9_HDRSZ + 4 + f.u.rreaddir.data.len,
           "Rreaddir encodes on the same writer (%ld bytes)", len);

    p9_rbuf_init(&r, seg, 3, (size_t)len, scratch, sizeof(scratch));
    tap_ok(p9_decode(&r, (size_t)len, &g) == 0 &&
               g.u.rreaddir.data.len == f.u.rreaddir.data.len,
           "Rreaddir decodes");
    cnt = p9_data_iov(&g.u.rreaddir.data, dv, 8);
    tap_ok(cnt >= 2, "dirent data spans %d segments", cnt);
    p9_rbuf_init(&r, dv, cnt, g.u.rreaddir.data.len, scratch, sizeof(scratch));
    while (r.left > 0 && !r.bad) {
        struct p9_dirent d;
        size_t i = (size_t)nread % (sizeof(names) / sizeof(names[0]));

        r.scratch_used = 0; /* each name is used before the next read */
        p9_get_dirent(&r, &d);
        same = same && !r.bad && d.qid.path == 1000 + (uint64_t)nread &&
               d.offset == (uint64_t)nread + 1 &&
               d.name.len == strlen(names[i]) &&
               memcmp(d.name.s, names[i], d.name.len) == 0;
        nread++;
    }
    tap_ok(same && nread == nput && p9_rbuf_done(&r) == 0,
           "every dirent reads back (%d)", nread);
}

static void
test_data_zero(void)
{
    struct p9_data d;
    struct iovec out[1];

    memset(&d, 0, sizeof(d));
    tap_ok(p9_data_iov(&d, out, 0) == 0, "empty data -> 0 entries");
    d.ptr = "abc";
    d.len = 3;
    tap_ok(p9_data_iov(&d, out, 1) == 1 && out[0].iov_len == 3,
           "flat data -> 1 entry");
    d.ptr = NULL;
    tap_ok(p9_data_iov(&d, out, 1) == -EINVAL,
           "in-place data has no source segments -> -EINVAL");
}

int
main(void)
{
    test_scalars();
    test_rread_in_place();
    test_rreaddir_dirents();
    test_data_zero();
    return tap_done();
}
