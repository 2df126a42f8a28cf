/* SPDX-License-Identifier: MIT */
/*
 * Bounds-checked little-endian cursors over scatter-gather lists.
 *
 * The reader never reads past 'left' (the framed message length) nor past
 * the last segment; the writer never writes past the total capacity.  Both
 * latch 'bad' on the first failure so callers check once at the end.
 * Byte order is fixed by shifts, never by the host layout.  Nothing here
 * allocates.
 */
#include "proto/p9_codec.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* ---- reader ------------------------------------------------------------- */

void
p9_rbuf_init(struct p9_rbuf *b, const struct iovec *iov, int iovcnt, size_t len,
             char *scratch, size_t scratch_len)
{
    b->iov = iov;
    b->iovcnt = iovcnt > 0 ? iovcnt : 0;
    b->off = 0;
    b->left = len;
    b->scratch = scratch;
    b->scratch_len = scratch != NULL ? scratch_len : 0;
    b->scratch_used = 0;
    b->bad = false;
}

void
p9_rbuf_init_flat(struct p9_rbuf *b, struct iovec *one, const void *buf,
                  size_t len)
{
    /* The reader never writes through iov_base; the cast only fits struct
     * iovec's non-const member. */
    one->iov_base = (void *)(uintptr_t)buf;
    one->iov_len = len;
    p9_rbuf_init(b, one, 1, len, NULL, 0);
}

/* Step over finished and empty segments so that iov[0] has a byte at 'off'
 * (or no segment is left). */
static void
rb_settle(struct p9_rbuf *b)
{
    while (b->iovcnt > 0 && b->off >= b->iov[0].iov_len) {
        b->off -= b->iov[0].iov_len;
        b->iov++;
        b->iovcnt--;
    }
}

/* Consume n bytes, copying them to dst unless dst is NULL. */
static bool
rb_copy(struct p9_rbuf *b, void *dst, size_t n)
{
    uint8_t *d = dst;

    if (b->bad || n > b->left) {
        b->bad = true;
        return false;
    }
    while (n > 0) {
        size_t avail;
        size_t chunk;

        rb_settle(b);
        if (b->iovcnt == 0) {
            /* The segments hold fewer bytes than the framed length. */
            b->bad = true;
            return false;
        }
        avail = b->iov[0].iov_len - b->off;
        chunk = n < avail ? n : avail;
        if (d != NULL && chunk > 0) {
            /* chunk 0: the segment may be empty with a NULL base; with
             * chunk > 0 iov_len > off, so the base is not NULL */
            /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
            memcpy(d, (const uint8_t *)b->iov[0].iov_base + b->off, chunk);
            d += chunk;
        }
        b->off += chunk;
        b->left -= chunk;
        n -= chunk;
    }
    return true;
}

/* Pointer to the next n (> 0) bytes if they lie in one segment, else NULL.
 * Does not consume; the caller has checked n <= left. */
static const uint8_t *
rb_contig(struct p9_rbuf *b, size_t n)
{
    rb_settle(b);
    if (b->iovcnt == 0 || b->iov[0].iov_len - b->off < n) {
        return NULL;
    }
    return (const uint8_t *)b->iov[0].iov_base + b->off;
}

/* The next n (<= 8) bytes: a view when contiguous, else copied to tmp.
 * NULL (and 'bad' latched) when they are not there. */
static const uint8_t *
rb_fixed(struct p9_rbuf *b, size_t n, uint8_t *tmp)
{
    const uint8_t *p;

    if (b->bad || n > b->left) {
        b->bad = true;
        return NULL;
    }
    p = rb_contig(b, n);
    if (p != NULL) {
        b->off += n;
        b->left -= n;
        return p;
    }
    return rb_copy(b, tmp, n) ? tmp : NULL;
}

uint8_t
p9_get_u8(struct p9_rbuf *b)
{
    uint8_t tmp[1];
    const uint8_t *p = rb_fixed(b, 1, tmp);

    return p != NULL ? p[0] : 0;
}

uint16_t
p9_get_u16(struct p9_rbuf *b)
{
    uint8_t tmp[2];
    const uint8_t *p = rb_fixed(b, 2, tmp);

    if (p == NULL) {
        return 0;
    }
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

uint32_t
p9_get_u32(struct p9_rbuf *b)
{
    uint8_t tmp[4];
    const uint8_t *p = rb_fixed(b, 4, tmp);

    if (p == NULL) {
        return 0;
    }
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

uint64_t
p9_get_u64(struct p9_rbuf *b)
{
    uint8_t tmp[8];
    const uint8_t *p = rb_fixed(b, 8, tmp);
    uint64_t v = 0;

    if (p == NULL) {
        return 0;
    }
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

void
p9_get_qid(struct p9_rbuf *b, struct p9_qid *q)
{
    q->type = p9_get_u8(b);
    q->version = p9_get_u32(b);
    q->path = p9_get_u64(b);
}

void
p9_get_str(struct p9_rbuf *b, struct p9_str *out)
{
    uint16_t len = p9_get_u16(b);
    const uint8_t *p;

    out->s = "";
    out->len = 0;
    if (b->bad) {
        return;
    }
    if (len > b->left) {
        b->bad = true;
        return;
    }
    if (len == 0) {
        return;
    }
    p = rb_contig(b, len);
    if (p != NULL) {
        (void)rb_copy(b, NULL, len);
    } else {
        /* Straddles segments: gather into the caller's scratch. */
        char *q;

        if (b->scratch == NULL || b->scratch_len - b->scratch_used < len) {
            b->bad = true;
            return;
        }
        q = b->scratch + b->scratch_used;
        if (!rb_copy(b, q, len)) {
            return;
        }
        b->scratch_used += len;
        p = (const uint8_t *)q;
    }
    if (memchr(p, '\0', len) != NULL) {
        b->bad = true;
        return;
    }
    out->s = (const char *)p;
    out->len = len;
}

void
p9_get_data(struct p9_rbuf *b, uint32_t len, struct p9_data *out)
{
    memset(out, 0, sizeof(*out));
    if (b->bad || len > b->left) {
        b->bad = true;
        return;
    }
    rb_settle(b);
    out->len = len;
    out->iov = b->iov;
    out->iovcnt = b->iovcnt;
    out->off = b->off;
    if (len > 0) {
        out->ptr = rb_contig(b, len);
    }
    (void)rb_copy(b, NULL, len);
}

void
p9_get_bytes(struct p9_rbuf *b, void *dst, size_t n)
{
    if (!rb_copy(b, dst, n)) {
        memset(dst, 0, n);
    }
}

int
p9_rbuf_done(const struct p9_rbuf *b)
{
    return (b->bad || b->left != 0) ? -EPROTO : 0;
}

int
p9_data_iov(const struct p9_data *d, struct iovec *out, int max)
{
    const struct iovec *v = d->iov;
    int cnt = d->iovcnt;
    size_t off = d->off;
    size_t left = d->len;
    int n = 0;

    if (left == 0) {
        return 0;
    }
    if (d->ptr != NULL || v == NULL) {
        /* Contiguous (or built for encoding): one flat buffer. */
        if (d->ptr == NULL || max < 1) {
            return -EINVAL;
        }
        out[0].iov_base = (void *)(uintptr_t)d->ptr;
        out[0].iov_len = left;
        return 1;
    }
    while (left > 0) {
        size_t chunk;

        if (cnt <= 0) {
            return -EINVAL;
        }
        if (off >= v->iov_len) {
            off -= v->iov_len;
            v++;
            cnt--;
            continue;
        }
        if (n == max) {
            return -EINVAL;
        }
        chunk = v->iov_len - off;
        if (chunk > left) {
            chunk = left;
        }
        out[n].iov_base = (uint8_t *)v->iov_base + off;
        out[n].iov_len = chunk;
        n++;
        left -= chunk;
        off = 0;
        v++;
        cnt--;
    }
    return n;
}

void
p9_data_copy(const struct p9_data *d, void *dst)
{
    const struct iovec *v = d->iov;
    int cnt = d->iovcnt;
    size_t off = d->off;
    size_t left = d->len;
    uint8_t *o = dst;

    if (d->ptr != NULL) {
        memcpy(dst, d->ptr, d->len);
        return;
    }
    while (left > 0 && v != NULL && cnt > 0) {
        size_t chunk;

        if (off >= v->iov_len) {
            off -= v->iov_len;
            v++;
            cnt--;
            continue;
        }
        chunk = v->iov_len - off;
        if (chunk > left) {
            chunk = left;
        }
        memcpy(o, (const uint8_t *)v->iov_base + off, chunk);
        o += chunk;
        left -= chunk;
        off = 0;
        v++;
        cnt--;
    }
}

/* ---- writer ------------------------------------------------------------- */

void
p9_wbuf_init(struct p9_wbuf *w, const struct iovec *iov, int iovcnt)
{
    size_t cap = 0;

    if (iovcnt < 0 || iov == NULL) {
        iovcnt = 0;
    }
    for (int i = 0; i < iovcnt; i++) {
        cap += iov[i].iov_len;
    }
    w->iov = iov;
    w->iovcnt = iovcnt;
    w->off = 0;
    w->used = 0;
    w->cap = cap;
    w->iov0 = iov;
    w->iovcnt0 = iovcnt;
    w->bad = false;
}

/* Little-endian store of the low 'n' bytes of v. */
static inline void
wb_le(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Step the cursor past the segments it has filled. */
static void
wb_next_seg(struct p9_wbuf *w)
{
    while (w->iovcnt > 0 && w->off >= w->iov[0].iov_len) {
        w->off = 0;
        w->iov++;
        w->iovcnt--;
    }
}

/*
 * true when n bytes fit at the cursor in its segment (nearly always: one
 * reply buffer); they go at wb_cur().  Moves nothing but the segment; the
 * caller advances off and used by what it writes there.
 */
static inline bool
wb_fits(struct p9_wbuf *w, size_t n)
{
    wb_next_seg(w);
    return w->iovcnt > 0 && n <= w->iov[0].iov_len - w->off;
}

static inline uint8_t *
wb_cur(const struct p9_wbuf *w)
{
    return (uint8_t *)w->iov[0].iov_base + w->off;
}

/*
 * Append n bytes from src, or skip n bytes when src is NULL.  All or
 * nothing: a write that does not fit writes nothing and latches 'bad'.
 * memmove, because Rread data may be re-encoded onto itself.
 */
static void
wb_write(struct p9_wbuf *w, const void *src, size_t n)
{
    const uint8_t *s = src;

    if (w->bad || w->cap - w->used < n) {
        w->bad = true;
        return;
    }
    w->used += n;
    if (n == 0) {
        return;
    }
    if (wb_fits(w, n)) {
        if (s != NULL) {
            memmove(wb_cur(w), s, n);
        }
        w->off += n;
        return;
    }
    while (n > 0) {
        size_t avail;
        size_t chunk;

        wb_next_seg(w);
        /* cap covers every segment, so one is always left here. */
        avail = w->iov[0].iov_len - w->off;
        chunk = n < avail ? n : avail;
        if (s != NULL) {
            memmove((uint8_t *)w->iov[0].iov_base + w->off, s, chunk);
            s += chunk;
        }
        w->off += chunk;
        n -= chunk;
    }
}

/*
 * Write the n-byte little-endian integer v: straight into the segment when
 * it fits (wb_fits), else through wb_write() (a segment boundary, or a full
 * or failed writer).
 */
static inline void
wb_put_le(struct p9_wbuf *w, uint64_t v, size_t n)
{
    uint8_t t[8];

    if (!w->bad && wb_fits(w, n)) {
        wb_le(wb_cur(w), v, n);
        w->off += n;
        w->used += n;
        return;
    }
    wb_le(t, v, n);
    wb_write(w, t, n);
}

void
p9_put_u8(struct p9_wbuf *w, uint8_t v)
{
    wb_put_le(w, v, 1);
}

void
p9_put_u16(struct p9_wbuf *w, uint16_t v)
{
    wb_put_le(w, v, 2);
}

void
p9_put_u32(struct p9_wbuf *w, uint32_t v)
{
    wb_put_le(w, v, 4);
}

void
p9_put_u64(struct p9_wbuf *w, uint64_t v)
{
    wb_put_le(w, v, 8);
}

void
p9_put_qid(struct p9_wbuf *w, const struct p9_qid *q)
{
    p9_put_u8(w, q->type);
    p9_put_u32(w, q->version);
    p9_put_u64(w, q->path);
}

void
p9_put_str(struct p9_wbuf *w, const struct p9_str *s)
{
    if (s->s == NULL && s->len != 0) {
        w->bad = true;
        return;
    }
    p9_put_u16(w, s->len);
    wb_write(w, s->s, s->len);
}

void
p9_put_cstr(struct p9_wbuf *w, const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;

    if (len > UINT16_MAX) {
        w->bad = true;
        return;
    }
    p9_put_u16(w, (uint16_t)len);
    wb_write(w, s, len);
}

void
p9_put_bytes(struct p9_wbuf *w, const void *src, size_t n)
{
    if (src == NULL && n != 0) {
        w->bad = true;
        return;
    }
    wb_write(w, src, n);
}

void
p9_wbuf_skip(struct p9_wbuf *w, size_t n)
{
    wb_write(w, NULL, n);
}

void
p9_wbuf_patch_u32(struct p9_wbuf *w, size_t at, uint32_t v)
{
    const struct iovec *seg = w->iov0;
    int cnt = w->iovcnt0;
    size_t i = 0;

    if (at > w->used || w->used - at < 4 || seg == NULL) {
        w->bad = true;
        return;
    }
    while (i < 4 && cnt > 0) {
        if (at >= seg->iov_len) {
            at -= seg->iov_len;
            seg++;
            cnt--;
            continue;
        }
        ((uint8_t *)seg->iov_base)[at] = (uint8_t)(v >> (8 * i));
        i++;
        at++;
    }
}

int
p9_wbuf_iov(const struct p9_wbuf *w, size_t at, size_t len, struct iovec *out,
            int max)
{
    const struct iovec *seg = w->iov0;
    int cnt = w->iovcnt0;
    int n = 0;

    if (seg == NULL || at > w->cap || len > w->cap - at) {
        return -EINVAL;
    }
    while (len > 0 && cnt > 0) {
        size_t chunk;

        if (at >= seg->iov_len) {
            at -= seg->iov_len;
            seg++;
            cnt--;
            continue;
        }
        if (n == max) {
            return -EINVAL;
        }
        chunk = seg->iov_len - at;
        if (chunk > len) {
            chunk = len;
        }
        out[n].iov_base = (uint8_t *)seg->iov_base + at;
        out[n].iov_len = chunk;
        n++;
        len -= chunk;
        at = 0;
        seg++;
        cnt--;
    }
    return n;
}

size_t
p9_wbuf_room(const struct p9_wbuf *w)
{
    return w->bad ? 0 : w->cap - w->used;
}

/* ---- dirents ------------------------------------------------------------ */

size_t
p9_dirent_size(size_t namelen)
{
    return P9_QIDSZ + 8 + 1 + 2 + namelen;
}

void
p9_put_dirent(struct p9_wbuf *w, const struct p9_dirent *d)
{
    size_t n = p9_dirent_size(d->name.len);

    /* All or nothing, so a caller filling a reply can stop at the first
     * entry that does not fit and still send the ones before it. */
    if (w->bad || p9_wbuf_room(w) < n || (d->name.s == NULL && d->name.len)) {
        w->bad = true;
        return;
    }
    /*
     * A listing is thousands of entries per reply: when the entry fits in
     * the current segment (nearly always), store it in place, one copy of
     * the name, instead of seven wb_write calls.
     */
    if (wb_fits(w, n)) {
        uint8_t *p = wb_cur(w);

        p[0] = d->qid.type;
        wb_le(p + 1, d->qid.version, 4);
        wb_le(p + 5, d->qid.path, 8);
        wb_le(p + 13, d->offset, 8);
        p[21] = d->type;
        wb_le(p + 22, d->name.len, 2);
        if (d->name.len > 0) {
            memcpy(p + 24, d->name.s, d->name.len);
        }
        w->off += n;
        w->used += n;
        return;
    }
    p9_put_qid(w, &d->qid);
    p9_put_u64(w, d->offset);
    p9_put_u8(w, d->type);
    p9_put_str(w, &d->name);
}

void
p9_get_dirent(struct p9_rbuf *b, struct p9_dirent *d)
{
    p9_get_qid(b, &d->qid);
    d->offset = p9_get_u64(b);
    d->type = p9_get_u8(b);
    p9_get_str(b, &d->name);
}
