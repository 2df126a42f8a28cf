/* SPDX-License-Identifier: MIT */
/*
 * Codec tests: every message round-trips (flat, split at every byte, one
 * byte per segment), an independent layout check of every message against
 * the spec, golden byte vectors, a malformed-frame table, and -ENOBUFS on
 * short output buffers without writing past their end.
 */
#include "proto/p9_codec.h"
#include "samples.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BUFSZ 8192

/* ---- helpers ------------------------------------------------------------ */

static long
enc(const struct p9_fcall *f, uint8_t *buf, size_t cap)
{
    struct iovec iov = {buf, cap};
    struct p9_wbuf w;

    p9_wbuf_init(&w, &iov, 1);
    return p9_encode(&w, f);
}

/* Decoded data keeps a pointer to the iovec it came from, so the iovec
 * must outlive the message: a small ring covers the few messages a test
 * holds at once. */
static int
dec_flat(const uint8_t *buf, size_t len, struct p9_fcall *f)
{
    static struct iovec ring[8];
    static unsigned next;
    struct p9_rbuf b;

    p9_rbuf_init_flat(&b, &ring[next++ % 8], buf, len);
    return p9_decode(&b, len, f);
}

/* A message copied into separately allocated segments, so that ASan
 * catches any read past a segment's end. */
struct split {
    struct iovec *iov;
    int n;
};

static void
split_make(struct split *s, const uint8_t *msg, size_t len, const size_t *cuts,
           int ncuts)
{
    size_t prev = 0;

    s->iov = calloc((size_t)ncuts + 1, sizeof(*s->iov));
    s->n = ncuts + 1;
    for (int i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        size_t l = end - prev;

        /* malloc(0) may return NULL; keep a real (empty) segment. */
        s->iov[i].iov_base = malloc(l ? l : 1);
        s->iov[i].iov_len = l;
        memcpy(s->iov[i].iov_base, msg + prev, l);
        prev = end;
    }
}

static void
split_free(struct split *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->iov[i].iov_base);
    }
    free(s->iov);
}

static int
dec_split(const struct split *s, size_t len, char *scratch, size_t slen,
          struct p9_fcall *f)
{
    struct p9_rbuf b;

    p9_rbuf_init(&b, s->iov, s->n, len, scratch, slen);
    return p9_decode(&b, len, f);
}

static void
put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static const char *
tname(uint8_t t)
{
    const char *n = p9_type_name(t);

    return n != NULL ? n : "?";
}

/* ---- layout: an independent reading of the spec ------------------------- */

/*
 * Field widths per message, written from diod's protocol.md without
 * looking at the codec's tables: 1/2/4/8 integers, s string, Q qid,
 * D count[4] data[count], W nwname[2] wname[s]*, V nwqid[2] qid*.
 */
/* clang-format off */
static const char *
layout(uint8_t type)
{
    switch (type) {
    case P9_RLERROR: return "4"; /* NOLINT(bugprone-branch-clone): one case per type */
    case P9_TSTATFS: return "4";
    case P9_RSTATFS: return "448888884";
    case P9_TLOPEN: return "44";
    case P9_RLOPEN: return "Q4";
    case P9_TLCREATE: return "4s444";
    case P9_RLCREATE: return "Q4";
    case P9_TSYMLINK: return "4ss4";
    case P9_RSYMLINK: return "Q";
    case P9_TMKNOD: return "4s4444";
    case P9_RMKNOD: return "Q";
    case P9_TRENAME: return "44s";
    case P9_RRENAME: return "";
    case P9_TREADLINK: return "4";
    case P9_RREADLINK: return "s";
    case P9_TGETATTR: return "48";
    case P9_RGETATTR: return "8Q444888888888888888";
    case P9_TSETATTR: return "4444488888";
    case P9_RSETATTR: return "";
    case P9_TXATTRWALK: return "44s";
    case P9_RXATTRWALK: return "8";
    case P9_TXATTRCREATE: return "4s84";
    case P9_RXATTRCREATE: return "";
    case P9_TREADDIR: return "484";
    case P9_RREADDIR: return "D";
    case P9_TFSYNC: return "44";
    case P9_RFSYNC: return "";
    case P9_TLOCK: return "414884s";
    case P9_RLOCK: return "1";
    case P9_TGETLOCK: return "41884s";
    case P9_RGETLOCK: return "1884s";
    case P9_TLINK: return "44s";
    case P9_RLINK: return "";
    case P9_TMKDIR: return "4s44";
    case P9_RMKDIR: return "Q";
    case P9_TRENAMEAT: return "4s4s";
    case P9_RRENAMEAT: return "";
    case P9_TUNLINKAT: return "4s4";
    case P9_RUNLINKAT: return "";
    case P9_TVERSION: return "4s"; /* NOLINT(bugprone-branch-clone): one case per type */
    case P9_RVERSION: return "4s";
    case P9_TAUTH: return "4ss4";
    case P9_RAUTH: return "Q";
    case P9_TATTACH: return "44ss4";
    case P9_RATTACH: return "Q";
    case P9_TFLUSH: return "2";
    case P9_RFLUSH: return "";
    case P9_TWALK: return "44W";
    case P9_RWALK: return "V";
    case P9_TREAD: return "484";
    case P9_RREAD: return "D";
    case P9_TWRITE: return "48D";
    case P9_RWRITE: return "4"; /* NOLINT(bugprone-branch-clone): one case per type */
    case P9_TCLUNK: return "4";
    case P9_RCLUNK: return "";
    case P9_TREMOVE: return "4";
    case P9_RREMOVE: return "";
    default: return NULL;
    }
}
/* clang-format on */

static size_t
rd16(const uint8_t *p)
{
    return (size_t)p[0] | (size_t)p[1] << 8;
}

/* Walk an encoded message by its layout; true if it ends exactly.  The
 * longest string seen goes to *maxstr when not NULL. */
static bool
layout_walk(const char *lay, const uint8_t *m, size_t len, size_t *maxstr)
{
    size_t pos = P9_HDRSZ;
    size_t dummy;

    if (maxstr == NULL) {
        maxstr = &dummy;
    }
    *maxstr = 0;

    for (const char *c = lay; *c != '\0'; c++) {
        size_t n;

        switch (*c) {
        case '1':
        case '2':
        case '4':
        case '8': pos += (size_t)(*c - '0'); break;
        case 'Q': pos += 13; break;
        case 's':
            if (pos + 2 > len) {
                return false;
            }
            *maxstr = rd16(m + pos) > *maxstr ? rd16(m + pos) : *maxstr;
            pos += 2 + rd16(m + pos);
            break;
        case 'D':
            if (pos + 4 > len) {
                return false;
            }
            pos += 4 + ((size_t)m[pos] | (size_t)m[pos + 1] << 8 |
                        (size_t)m[pos + 2] << 16 | (size_t)m[pos + 3] << 24);
            break;
        case 'W':
        case 'V':
            if (pos + 2 > len) {
                return false;
            }
            n = rd16(m + pos);
            pos += 2;
            for (size_t i = 0; i < n; i++) {
                if (*c == 'V') {
                    pos += 13;
                } else {
                    if (pos + 2 > len) {
                        return false;
                    }
                    if (rd16(m + pos) > *maxstr) {
                        *maxstr = rd16(m + pos);
                    }
                    pos += 2 + rd16(m + pos);
                }
            }
            break;
        default: return false;
        }
        if (pos > len) {
            return false;
        }
    }
    return pos == len;
}

static bool
layout_ok(const char *lay, const uint8_t *m, size_t len)
{
    return lay != NULL && layout_walk(lay, m, len, NULL);
}

/* ---- round trips -------------------------------------------------------- */

static void
test_roundtrip_all(void)
{
    static uint8_t buf[BUFSZ];
    static uint8_t buf2[BUFSZ];

    for (size_t i = 0; i < sample_ntypes; i++) {
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            uint8_t t = sample_types[i];
            struct p9_fcall f;
            struct p9_fcall g;
            long n;
            long n2;
            int err;

            sample_fcall(t, v, &f);
            n = enc(&f, buf, sizeof(buf));
            tap_ok(n > 0 && (size_t)n == p9_encoded_size(&f) &&
                       buf[0] == (uint8_t)n && buf[4] == t,
                   "%s/%d encodes (%ld bytes, size field, type byte)", tname(t),
                   v, n);
            if (n <= 0) {
                continue;
            }
            tap_ok(layout_ok(layout(t), buf, (size_t)n),
                   "%s/%d wire layout matches the spec", tname(t), v);
            err = dec_flat(buf, (size_t)n, &g);
            tap_ok(err == 0 && p9_fcall_equal(&f, &g),
                   "%s/%d decodes to the same fields (err %d)", tname(t), v,
                   err);
            n2 = enc(&g, buf2, sizeof(buf2));
            tap_ok(n2 == n && memcmp(buf, buf2, (size_t)n) == 0,
                   "%s/%d re-encodes byte for byte", tname(t), v);
        }
    }
}

/* p9_fcall_equal must notice a change in any field (else the round trips
 * above prove nothing). */
static void
test_equal_detects(void)
{
    static uint8_t buf[BUFSZ];
    int missed = 0;
    int tried = 0;

    for (size_t i = 0; i < sample_ntypes; i++) {
        uint8_t t = sample_types[i];
        struct p9_fcall f;
        long n;

        sample_fcall(t, 0, &f);
        n = enc(&f, buf, sizeof(buf));
        /* Flip each body byte (keeping strings NUL-free and counts
         * intact is not needed: only decodable mutants are compared). */
        for (long pos = P9_HDRSZ; pos < n; pos++) {
            struct p9_fcall g;

            buf[pos] ^= 0x01;
            if (dec_flat(buf, (size_t)n, &g) == 0) {
                tried++;
                if (p9_fcall_equal(&f, &g)) {
                    missed++;
                    tap_diag("%s: flip at %ld not seen", tname(t), pos);
                }
            }
            buf[pos] ^= 0x01;
        }
    }
    tap_ok(missed == 0 && tried > 900,
           "p9_fcall_equal sees every flipped body byte (%d mutants)", tried);
}

static void
check_splits(uint8_t t, int v)
{
    static uint8_t buf[BUFSZ];
    static char scratch[BUFSZ];
    struct p9_fcall f;
    long n;
    int bad2 = 0;
    int bad3 = 0;
    int noscratch_fail = 0;
    int noscratch_wrong = 0;
    int pairs = 0;

    sample_fcall(t, v, &f);
    n = enc(&f, buf, sizeof(buf));
    /* Two segments, cut at every position (0 and n give an empty one). */
    for (size_t c = 0; c <= (size_t)n; c++) {
        struct split s;
        struct p9_fcall g;
        int err;

        split_make(&s, buf, (size_t)n, &c, 1);
        err = dec_split(&s, (size_t)n, scratch, sizeof(scratch), &g);
        if (err != 0 || !p9_fcall_equal(&f, &g)) {
            bad2++;
        }
        /* Without scratch: fine, or -EPROTO when a string straddles. */
        err = dec_split(&s, (size_t)n, NULL, 0, &g);
        if (err == -EPROTO) {
            noscratch_fail++;
        } else if (err != 0 || !p9_fcall_equal(&f, &g)) {
            noscratch_wrong++;
        }
        split_free(&s);
    }
    tap_ok(bad2 == 0, "%s/%d: 2 segments, cut at each of %ld+1 positions",
           tname(t), v, n);
    tap_ok(noscratch_wrong == 0, "%s/%d: no scratch -> ok or -EPROTO (%d)",
           tname(t), v, noscratch_fail);
    if (n > 400) {
        return;
    }
    /* Three segments, every pair of cuts. */
    for (size_t c1 = 0; c1 <= (size_t)n; c1++) {
        for (size_t c2 = c1; c2 <= (size_t)n; c2++) {
            size_t cuts[2] = {c1, c2};
            struct split s;
            struct p9_fcall g;

            split_make(&s, buf, (size_t)n, cuts, 2);
            if (dec_split(&s, (size_t)n, scratch, sizeof(scratch), &g) != 0 ||
                !p9_fcall_equal(&f, &g)) {
                bad3++;
            }
            split_free(&s);
            pairs++;
        }
    }
    tap_ok(bad3 == 0, "%s/%d: 3 segments, all %d cut pairs", tname(t), v,
           pairs);
}

static void
test_splits(void)
{
    static const uint8_t types[] = {P9_TWALK,    P9_TWRITE,   P9_TLCREATE,
                                    P9_RREADDIR, P9_TSYMLINK, P9_RWALK,
                                    P9_RGETATTR, P9_TRENAMEAT};

    for (size_t i = 0; i < sizeof(types); i++) {
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            check_splits(types[i], v);
        }
    }
}

/* Every byte in its own segment: every field straddles. */
static void
test_byte_segments(void)
{
    static uint8_t buf[BUFSZ];
    static char scratch[BUFSZ];
    int bad = 0;
    int strfail = 0;
    int strmsgs = 0;

    for (size_t i = 0; i < sample_ntypes; i++) {
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            uint8_t t = sample_types[i];
            struct p9_fcall f;
            struct p9_fcall g;
            struct split s;
            size_t *cuts;
            long n;
            int err;

            sample_fcall(t, v, &f);
            n = enc(&f, buf, sizeof(buf));
            cuts = calloc((size_t)n, sizeof(*cuts));
            for (long k = 0; k < n - 1; k++) {
                cuts[k] = (size_t)k + 1;
            }
            split_make(&s, buf, (size_t)n, cuts, (int)n - 1);
            err = dec_split(&s, (size_t)n, scratch, sizeof(scratch), &g);
            if (err != 0 || !p9_fcall_equal(&f, &g)) {
                bad++;
                tap_diag("%s/%d: byte segments err %d", tname(t), v, err);
            }
            /* Any string longer than one byte now straddles: with a
             * 1-byte scratch the decode must fail cleanly, not overrun. */
            err = dec_split(&s, (size_t)n, scratch, 1, &g);
            {
                size_t maxstr;

                (void)layout_walk(layout(t), buf, (size_t)n, &maxstr);
                if (maxstr >= 2) {
                    strmsgs++;
                    strfail += err == -EPROTO;
                } else if (err != 0 || !p9_fcall_equal(&f, &g)) {
                    bad++;
                }
            }
            split_free(&s);
            free(cuts);
        }
    }
    tap_ok(bad == 0, "all samples decode from 1-byte segments");
    tap_ok(strfail == strmsgs && strmsgs > 20,
           "scratch too small for straddling strings -> -EPROTO (%d/%d)",
           strfail, strmsgs);
}

/* ---- golden vectors (written by hand from protocol.md) ------------------ */

/* clang-format off */
static const uint8_t g_tversion[] = {
    21, 0, 0, 0,  100,  0xff, 0xff,
    0x00, 0x20, 0, 0,                         /* msize 8192 */
    8, 0, '9', 'P', '2', '0', '0', '0', '.', 'L',
};
static const uint8_t g_rlerror[] = {
    11, 0, 0, 0,  7,  1, 0,
    2, 0, 0, 0,                               /* ENOENT */
};
static const uint8_t g_twalk[] = {
    24, 0, 0, 0,  110,  1, 0,
    1, 0, 0, 0,  2, 0, 0, 0,  2, 0,
    1, 0, 'a',  2, 0, 'b', 'c',
};
static const uint8_t g_rwalk[] = {
    22, 0, 0, 0,  111,  2, 0,
    1, 0,
    0x80,  1, 0, 0, 0,  8, 7, 6, 5, 4, 3, 2, 1,
};
static const uint8_t g_tgetattr[] = {
    19, 0, 0, 0,  24,  3, 0,
    1, 0, 0, 0,
    0xff, 0x3f, 0, 0, 0, 0, 0, 0,
};
static const uint8_t g_twrite[] = {
    26, 0, 0, 0,  118,  4, 0,
    2, 0, 0, 0,
    0x10, 0, 0, 0, 0, 0, 0, 0,
    3, 0, 0, 0,  'a', 'b', 'c',
};
static const uint8_t g_rread[] = {
    13, 0, 0, 0,  117,  5, 0,
    2, 0, 0, 0,  'h', 'i',
};
static const uint8_t g_tlcreate[] = {
    26, 0, 0, 0,  14,  6, 0,
    1, 0, 0, 0,
    1, 0, 'f',
    0x41, 0, 0, 0,                            /* CREATE | WRONLY */
    0xa4, 0x01, 0, 0,                         /* 0644 */
    0, 0, 0, 0,
};
static const uint8_t g_rflush[] = {
    7, 0, 0, 0,  109,  7, 0,
};
static const uint8_t g_tlock[] = {
    39, 0, 0, 0,  52,  8, 0,
    1, 0, 0, 0,  1,  0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    5, 0, 0, 0,  1, 0, 'c',
};
static const uint8_t g_rlopen[] = {
    24, 0, 0, 0,  13,  9, 0,
    0,  0, 0, 0, 0,  42, 0, 0, 0, 0, 0, 0, 0,
    0x00, 0x10, 0, 0,
};
static const uint8_t g_tattach[] = {
    24, 0, 0, 0,  104,  1, 0,
    0, 0, 0, 0,  0xff, 0xff, 0xff, 0xff,
    1, 0, 'u',  0, 0,
    0, 0, 0, 0,
};
static const uint8_t g_rreaddir[] = {
    38, 0, 0, 0,  41,  10, 0,
    27, 0, 0, 0,                                   /* count */
    0x80,  0, 0, 0, 0,  3, 0, 0, 0, 0, 0, 0, 0,   /* qid */
    0x01, 0, 0, 0, 0, 0, 0, 0,                     /* offset */
    4,                                             /* DT_DIR */
    3, 0, 's', 'u', 'b',                           /* name */
};
/* clang-format on */

static void
golden(const char *what, const uint8_t *bytes, size_t len,
       const struct p9_fcall *want)
{
    static uint8_t buf[BUFSZ];
    struct p9_fcall got;
    long n;
    int err;

    err = dec_flat(bytes, len, &got);
    tap_ok(err == 0 && p9_fcall_equal(want, &got), "golden %s decodes (%d)",
           what, err);
    n = enc(want, buf, sizeof(buf));
    tap_ok(n == (long)len && memcmp(buf, bytes, len) == 0,
           "golden %s encodes to the spec bytes", what);
}

static void
test_golden(void)
{
    struct p9_fcall f;

    memset(&f, 0, sizeof(f));
    f.type = P9_TVERSION;
    f.tag = P9_NOTAG;
    f.u.tversion.msize = 8192;
    f.u.tversion.version.s = "9P2000.L";
    f.u.tversion.version.len = 8;
    golden("Tversion", g_tversion, sizeof(g_tversion), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_RLERROR;
    f.tag = 1;
    f.u.rlerror.ecode = ENOENT;
    golden("Rlerror", g_rlerror, sizeof(g_rlerror), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_TWALK;
    f.tag = 1;
    f.u.twalk.fid = 1;
    f.u.twalk.newfid = 2;
    f.u.twalk.nwname = 2;
    f.u.twalk.wname[0].s = "a";
    f.u.twalk.wname[0].len = 1;
    f.u.twalk.wname[1].s = "bc";
    f.u.twalk.wname[1].len = 2;
    golden("Twalk", g_twalk, sizeof(g_twalk), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_RWALK;
    f.tag = 2;
    f.u.rwalk.nwqid = 1;
    f.u.rwalk.wqid[0].type = P9_QTDIR;
    f.u.rwalk.wqid[0].version = 1;
    f.u.rwalk.wqid[0].path = 0x0102030405060708ull;
    golden("Rwalk", g_rwalk, sizeof(g_rwalk), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_TGETATTR;
    f.tag = 3;
    f.u.tgetattr.fid = 1;
    f.u.tgetattr.request_mask = P9_GETATTR_ALL;
    golden("Tgetattr", g_tgetattr, sizeof(g_tgetattr), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_TWRITE;
    f.tag = 4;
    f.u.twrite.fid = 2;
    f.u.twrite.offset = 0x10;
    f.u.twrite.data.ptr = "abc";
    f.u.twrite.data.len = 3;
    golden("Twrite", g_twrite, sizeof(g_twrite), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_RREAD;
    f.tag = 5;
    f.u.rread.data.ptr = "hi";
    f.u.rread.data.len = 2;
    golden("Rread", g_rread, sizeof(g_rread), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_TLCREATE;
    f.tag = 6;
    f.u.tlcreate.fid = 1;
    f.u.tlcreate.name.s = "f";
    f.u.tlcreate.name.len = 1;
    f.u.tlcreate.flags = P9_DOTL_CREATE | P9_DOTL_WRONLY;
    f.u.tlcreate.mode = 0644;
    golden("Tlcreate", g_tlcreate, sizeof(g_tlcreate), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_RFLUSH;
    f.tag = 7;
    golden("Rflush", g_rflush, sizeof(g_rflush), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_TLOCK;
    f.tag = 8;
    f.u.tlock.fid = 1;
    f.u.tlock.type = P9_LOCK_TYPE_WRLCK;
    f.u.tlock.proc_id = 5;
    f.u.tlock.client_id.s = "c";
    f.u.tlock.client_id.len = 1;
    golden("Tlock", g_tlock, sizeof(g_tlock), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_RLOPEN;
    f.tag = 9;
    f.u.rlopen.qid.path = 42;
    f.u.rlopen.iounit = 4096;
    golden("Rlopen", g_rlopen, sizeof(g_rlopen), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_TATTACH;
    f.tag = 1;
    f.u.tattach.afid = P9_NOFID;
    f.u.tattach.uname.s = "u";
    f.u.tattach.uname.len = 1;
    golden("Tattach", g_tattach, sizeof(g_tattach), &f);

    memset(&f, 0, sizeof(f));
    f.type = P9_RREADDIR;
    f.tag = 10;
    f.u.rreaddir.data.ptr = g_rreaddir + 11;
    f.u.rreaddir.data.len = 27;
    golden("Rreaddir", g_rreaddir, sizeof(g_rreaddir), &f);
    {
        struct iovec one;
        struct p9_rbuf b;
        struct p9_dirent d;

        p9_rbuf_init_flat(&b, &one, g_rreaddir + 11, 27);
        p9_get_dirent(&b, &d);
        tap_ok(p9_rbuf_done(&b) == 0 && d.qid.type == P9_QTDIR &&
                   d.qid.path == 3 && d.offset == 1 && d.type == 4 &&
                   d.name.len == 3 && memcmp(d.name.s, "sub", 3) == 0 &&
                   p9_dirent_size(3) == 27,
               "golden dirent parses (qid, offset, type, name)");
    }
}

/* ---- malformed frames --------------------------------------------------- */

static int
dec_copy(const uint8_t *m, size_t len)
{
    struct p9_fcall f;
    uint8_t *c = malloc(len ? len : 1);
    int err;

    memcpy(c, m, len);
    err = dec_flat(c, len, &f);
    free(c);
    return err;
}

static void
test_truncations(void)
{
    static uint8_t buf[BUFSZ];
    static uint8_t cut[BUFSZ];
    int ok_adj = 0;
    int ok_raw = 0;
    int total = 0;
    int ok_trail = 0;
    int ok_size = 0;

    for (size_t i = 0; i < sample_ntypes; i++) {
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            uint8_t t = sample_types[i];
            struct p9_fcall f;
            long n;

            sample_fcall(t, v, &f);
            n = enc(&f, buf, sizeof(buf));
            for (long c = 0; c < n; c++) {
                memcpy(cut, buf, (size_t)c);
                /* size field as sent (mismatch) */
                ok_raw += dec_copy(cut, (size_t)c) == -EPROTO;
                /* size field patched to agree with the framing */
                if (c >= 4) {
                    put_le32(cut, (uint32_t)c);
                }
                ok_adj += dec_copy(cut, (size_t)c) == -EPROTO;
                total++;
            }
            /* one trailing byte, size field agreeing */
            memcpy(cut, buf, (size_t)n);
            cut[n] = 0;
            put_le32(cut, (uint32_t)n + 1);
            ok_trail += dec_copy(cut, (size_t)n + 1) == -EPROTO;
            /* size field one off either way */
            memcpy(cut, buf, (size_t)n);
            put_le32(cut, (uint32_t)n + 1);
            ok_size += dec_copy(cut, (size_t)n) == -EPROTO;
            put_le32(cut, (uint32_t)n - 1);
            ok_size += dec_copy(cut, (size_t)n) == -EPROTO;
        }
    }
    tap_ok(ok_raw == total, "every truncation fails (%d/%d)", ok_raw, total);
    tap_ok(ok_adj == total, "every truncation with matching size fails (%d/%d)",
           ok_adj, total);
    tap_ok(ok_trail == (int)sample_ntypes * SAMPLE_VARIANTS,
           "a trailing byte fails for every type (%d)", ok_trail);
    tap_ok(ok_size == 2 * (int)sample_ntypes * SAMPLE_VARIANTS,
           "size field +-1 fails for every type (%d)", ok_size);
}

static void
test_malformed(void)
{
    uint8_t m[256];
    size_t len;

    /* nwname 17: 17 one-byte names */
    memset(m, 0, sizeof(m));
    m[4] = P9_TWALK;
    len = 7 + 4 + 4;
    m[len++] = 17;
    m[len++] = 0;
    for (int i = 0; i < 17; i++) {
        m[len++] = 1;
        m[len++] = 0;
        m[len++] = 'x';
    }
    put_le32(m, (uint32_t)len);
    tap_ok(dec_copy(m, len) == -EPROTO, "Twalk nwname 17 refused");
    m[15] = 16;
    put_le32(m, (uint32_t)len - 3);
    tap_ok(dec_copy(m, len - 3) == 0, "Twalk nwname 16 accepted");

    /* nwqid 17 */
    memset(m, 0, sizeof(m));
    m[4] = P9_RWALK;
    m[7] = 17;
    len = 7 + 2 + 17 * 13;
    put_le32(m, (uint32_t)len);
    tap_ok(dec_copy(m, len) == -EPROTO, "Rwalk nwqid 17 refused");
    m[7] = 16;
    put_le32(m, (uint32_t)len - 13);
    tap_ok(dec_copy(m, len - 13) == 0, "Rwalk nwqid 16 accepted");

    /* NUL inside a string */
    memcpy(m, g_twalk, sizeof(g_twalk));
    m[22] = '\0';
    tap_ok(dec_copy(m, sizeof(g_twalk)) == -EPROTO, "NUL inside wname refused");
    memcpy(m, g_tversion, sizeof(g_tversion));
    m[20] = '\0';
    tap_ok(dec_copy(m, sizeof(g_tversion)) == -EPROTO,
           "NUL at the end of a string refused");
    memcpy(m, g_tlcreate, sizeof(g_tlcreate));
    m[13] = '\0';
    tap_ok(dec_copy(m, sizeof(g_tlcreate)) == -EPROTO,
           "NUL as a whole name refused");

    /* string length past the end */
    memcpy(m, g_tversion, sizeof(g_tversion));
    m[11] = 9;
    tap_ok(dec_copy(m, sizeof(g_tversion)) == -EPROTO,
           "string length one past the end refused");
    m[11] = 0xff;
    m[12] = 0xff;
    tap_ok(dec_copy(m, sizeof(g_tversion)) == -EPROTO,
           "string length 65535 refused");
    memcpy(m, g_tversion, sizeof(g_tversion));
    m[11] = 7;
    tap_ok(dec_copy(m, sizeof(g_tversion)) == -EPROTO,
           "string length one short (trailing byte) refused");

    /* data counts */
    memcpy(m, g_twrite, sizeof(g_twrite));
    m[19] = 4;
    tap_ok(dec_copy(m, sizeof(g_twrite)) == -EPROTO,
           "Twrite count > remaining refused");
    m[19] = 2;
    tap_ok(dec_copy(m, sizeof(g_twrite)) == -EPROTO,
           "Twrite count < remaining refused");
    put_le32(m + 19, 0xffffffffu);
    tap_ok(dec_copy(m, sizeof(g_twrite)) == -EPROTO,
           "Twrite count 2^32-1 refused");
    memcpy(m, g_rread, sizeof(g_rread));
    m[7] = 3;
    tap_ok(dec_copy(m, sizeof(g_rread)) == -EPROTO,
           "Rread count > remaining refused");
    {
        static const uint8_t rd[] = {11, 0, 0, 0, 41, 1, 0, 0, 0, 0, 0};

        tap_ok(dec_copy(rd, sizeof(rd)) == 0, "empty Rreaddir accepted");
    }

    /* Tread/Treaddir count is only a number */
    {
        uint8_t tr[23] = {23, 0, 0, 0, P9_TREAD, 1, 0};

        put_le32(tr + 19, 0xffffffffu);
        tap_ok(dec_copy(tr, sizeof(tr)) == 0,
               "Tread count 2^32-1 decodes (server checks msize)");
        tr[4] = P9_TREADDIR;
        tap_ok(dec_copy(tr, sizeof(tr)) == 0, "Treaddir count likewise");
    }

    /* unknown types */
    {
        static const uint8_t unknown[] = {0,   1,   5,   6,   9 + 1, 28,  29,
                                          99,  106, 107, 112, 113,   114, 124,
                                          125, 126, 127, 200, 255};
        int ok = 0;

        for (size_t i = 0; i < sizeof(unknown); i++) {
            uint8_t u[11] = {11, 0, 0, 0, unknown[i], 0, 0, 1, 2, 3, 4};

            ok += dec_copy(u, sizeof(u)) == -EOPNOTSUPP;
            u[0] = 7;
            ok += dec_copy(u, 7) == -EOPNOTSUPP;
        }
        tap_ok(ok == 2 * (int)sizeof(unknown),
               "unknown types (incl. Tlerror, 9P2000 Tstat/Topen) -> "
               "-EOPNOTSUPP (%d)",
               ok);
    }

    /* R-messages decode as R */
    {
        struct p9_fcall f;

        tap_ok(dec_flat(g_rlerror, sizeof(g_rlerror), &f) == 0 &&
                   f.type == P9_RLERROR && f.tag == 1 && f.u.rlerror.ecode == 2,
               "Rlerror decodes as an R-message");
        tap_ok(dec_flat(g_rflush, sizeof(g_rflush), &f) == 0 &&
                   f.type == P9_RFLUSH && f.tag == 7,
               "empty-body Rflush decodes");
    }

    /* header problems */
    tap_ok(dec_copy(g_rflush, 6) == -EPROTO, "6-byte frame refused");
    tap_ok(dec_copy(g_rflush, 0) == -EPROTO, "empty frame refused");
    {
        struct iovec one = {(void *)(uintptr_t)g_twalk, 10};
        struct p9_rbuf b;
        struct p9_fcall f;

        /* Cursor shorter than the framed length */
        p9_rbuf_init(&b, &one, 1, 10, NULL, 0);
        tap_ok(p9_decode(&b, sizeof(g_twalk), &f) == -EPROTO,
               "framed length beyond the cursor refused");
        /* Segments shorter than the length the cursor was given */
        p9_rbuf_init(&b, &one, 1, sizeof(g_twalk), NULL, 0);
        tap_ok(p9_decode(&b, sizeof(g_twalk), &f) == -EPROTO,
               "segments shorter than the length refused (no overread)");
        /* Cursor over a larger buffer than the message */
        one.iov_len = sizeof(g_twalk);
        p9_rbuf_init(&b, &one, 1, sizeof(g_twalk) + 100, NULL, 0);
        tap_ok(p9_decode(&b, sizeof(g_twalk), &f) == 0 && f.u.twalk.nwname == 2,
               "cursor longer than the frame: the frame length wins");
    }
    {
        /* hdr only API */
        struct iovec one;
        struct p9_rbuf b;
        uint32_t size;
        uint8_t type;
        uint16_t tag;
        struct p9_fcall f;

        p9_rbuf_init_flat(&b, &one, g_twalk, sizeof(g_twalk));
        tap_ok(p9_decode_hdr(&b, sizeof(g_twalk), &size, &type, &tag) == 0 &&
                   size == 24 && type == P9_TWALK && tag == 1,
               "p9_decode_hdr reads size/type/tag");
        f.type = type;
        f.tag = tag;
        tap_ok(p9_decode_body(&b, &f) == 0 && f.u.twalk.newfid == 2,
               "p9_decode_body after p9_decode_hdr");
    }
}

/* ---- short output buffers ----------------------------------------------- */

static void
test_enobufs(void)
{
    static uint8_t buf[BUFSZ + 64];
    static uint8_t seg2[BUFSZ + 64];
    int bad = 0;
    int checked = 0;

    for (size_t i = 0; i < sample_ntypes; i++) {
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            uint8_t t = sample_types[i];
            struct p9_fcall f;
            size_t need;

            sample_fcall(t, v, &f);
            need = p9_encoded_size(&f);
            for (size_t cap = 0; cap < need; cap += (need > 600 ? 37 : 1)) {
                struct iovec iov[2];
                struct p9_wbuf w;
                long r;
                size_t c1 = cap / 2;

                memset(buf, 0xaa, sizeof(buf));
                memset(seg2, 0xaa, sizeof(seg2));
                /* one segment */
                r = enc(&f, buf, cap);
                if (r != -ENOBUFS) {
                    bad++;
                }
                for (size_t k = cap; k < need + 64; k++) {
                    if (buf[k] != 0xaa) {
                        bad++;
                        break;
                    }
                }
                /* two segments */
                iov[0].iov_base = buf;
                iov[0].iov_len = c1;
                iov[1].iov_base = seg2;
                iov[1].iov_len = cap - c1;
                p9_wbuf_init(&w, iov, 2);
                r = p9_encode(&w, &f);
                if (r != -ENOBUFS) {
                    bad++;
                }
                for (size_t k = cap - c1; k < need + 64; k++) {
                    if (seg2[k] != 0xaa) {
                        bad++;
                        break;
                    }
                }
                checked++;
            }
            /* exact fit works */
            if (enc(&f, buf, need) != (long)need) {
                bad++;
            }
        }
    }
    tap_ok(bad == 0,
           "short buffers -> -ENOBUFS, nothing written past the end (%d caps)",
           checked);

    /* -EINVAL cases */
    {
        struct p9_fcall f;

        memset(&f, 0, sizeof(f));
        f.type = 0;
        tap_ok(enc(&f, buf, sizeof(buf)) == -EINVAL, "unknown type -> -EINVAL");
        f.type = P9_TLERROR;
        tap_ok(enc(&f, buf, sizeof(buf)) == -EINVAL, "Tlerror -> -EINVAL");
        f.type = P9_TWALK;
        f.u.twalk.nwname = 17;
        tap_ok(enc(&f, buf, sizeof(buf)) == -EINVAL && p9_encoded_size(&f) == 0,
               "Twalk nwname 17 -> -EINVAL");
        memset(&f, 0, sizeof(f));
        f.type = P9_RWALK;
        f.u.rwalk.nwqid = 17;
        tap_ok(enc(&f, buf, sizeof(buf)) == -EINVAL,
               "Rwalk nwqid 17 -> -EINVAL");
        memset(&f, 0, sizeof(f));
        f.type = P9_TMKDIR;
        f.u.tmkdir.name.len = 3; /* s == NULL */
        tap_ok(enc(&f, buf, sizeof(buf)) == -EINVAL,
               "string with len but no bytes -> -EINVAL");
    }
}

int
main(void)
{
    test_roundtrip_all();
    test_equal_detects();
    test_splits();
    test_byte_segments();
    test_golden();
    test_truncations();
    test_malformed();
    test_enobufs();
    return tap_done();
}
