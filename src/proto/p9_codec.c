/* SPDX-License-Identifier: MIT */
/*
 * 9P2000.L message codec, driven by one field table per message.
 *
 * The tables below are the only place that knows a message's layout; the
 * decoder, encoder, size computation, equality and trace formatter all walk
 * them.  Field order and widths follow diod's protocol.md.  The decoder is
 * strict (see p9_codec.h): any deviation is -EPROTO, any id that is not a
 * 9P2000.L message is -EOPNOTSUPP.
 */
#include "proto/p9_codec.h"
#include "proto/p9_codec_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- the message tables ------------------------------------------------- */

/* clang-format off */
#define FLD(kind, fmt, msg, field)                                            \
    {                                                                         \
        #field, P9K_##kind, P9F_##fmt,                                        \
            (uint16_t)offsetof(struct p9_fcall, u.msg.field), 0               \
    }
#define QID(msg, field, label)                                                \
    {                                                                         \
        label, P9K_QID, P9F_DEC,                                              \
            (uint16_t)offsetof(struct p9_fcall, u.msg.field), 0               \
    }

static const struct p9_field f_rlerror[] = {
    FLD(U32, DEC, rlerror, ecode),
};
static const struct p9_field f_tstatfs[] = {
    FLD(U32, DEC, tstatfs, fid),
};
static const struct p9_field f_rstatfs[] = {
    FLD(U32, HEX, rstatfs, type),
    FLD(U32, DEC, rstatfs, bsize),
    FLD(U64, DEC, rstatfs, blocks),
    FLD(U64, DEC, rstatfs, bfree),
    FLD(U64, DEC, rstatfs, bavail),
    FLD(U64, DEC, rstatfs, files),
    FLD(U64, DEC, rstatfs, ffree),
    FLD(U64, HEX, rstatfs, fsid),
    FLD(U32, DEC, rstatfs, namelen),
};
static const struct p9_field f_tlopen[] = {
    FLD(U32, DEC, tlopen, fid),
    FLD(U32, OCT, tlopen, flags),
};
static const struct p9_field f_rlopen[] = {
    QID(rlopen, qid, "qid"),
    FLD(U32, DEC, rlopen, iounit),
};
static const struct p9_field f_tlcreate[] = {
    FLD(U32, DEC, tlcreate, fid),
    FLD(STR, DEC, tlcreate, name),
    FLD(U32, OCT, tlcreate, flags),
    FLD(U32, OCT, tlcreate, mode),
    FLD(U32, DEC, tlcreate, gid),
};
static const struct p9_field f_rlcreate[] = {
    QID(rlcreate, qid, "qid"),
    FLD(U32, DEC, rlcreate, iounit),
};
static const struct p9_field f_tsymlink[] = {
    FLD(U32, DEC, tsymlink, fid),
    FLD(STR, DEC, tsymlink, name),
    FLD(STR, DEC, tsymlink, symtgt),
    FLD(U32, DEC, tsymlink, gid),
};
static const struct p9_field f_rsymlink[] = {
    QID(rsymlink, qid, "qid"),
};
static const struct p9_field f_tmknod[] = {
    FLD(U32, DEC, tmknod, dfid),
    FLD(STR, DEC, tmknod, name),
    FLD(U32, OCT, tmknod, mode),
    FLD(U32, DEC, tmknod, major),
    FLD(U32, DEC, tmknod, minor),
    FLD(U32, DEC, tmknod, gid),
};
static const struct p9_field f_rmknod[] = {
    QID(rmknod, qid, "qid"),
};
static const struct p9_field f_trename[] = {
    FLD(U32, DEC, trename, fid),
    FLD(U32, DEC, trename, dfid),
    FLD(STR, DEC, trename, name),
};
static const struct p9_field f_treadlink[] = {
    FLD(U32, DEC, treadlink, fid),
};
static const struct p9_field f_rreadlink[] = {
    FLD(STR, DEC, rreadlink, target),
};
static const struct p9_field f_tgetattr[] = {
    FLD(U32, DEC, tgetattr, fid),
    FLD(U64, HEX, tgetattr, request_mask),
};
static const struct p9_field f_rgetattr[] = {
    FLD(U64, HEX, rgetattr, valid),
    QID(rgetattr, qid, "qid"),
    FLD(U32, OCT, rgetattr, mode),
    FLD(U32, DEC, rgetattr, uid),
    FLD(U32, DEC, rgetattr, gid),
    FLD(U64, DEC, rgetattr, nlink),
    FLD(U64, HEX, rgetattr, rdev),
    FLD(U64, DEC, rgetattr, size),
    FLD(U64, DEC, rgetattr, blksize),
    FLD(U64, DEC, rgetattr, blocks),
    FLD(U64, DEC, rgetattr, atime_sec),
    FLD(U64, DEC, rgetattr, atime_nsec),
    FLD(U64, DEC, rgetattr, mtime_sec),
    FLD(U64, DEC, rgetattr, mtime_nsec),
    FLD(U64, DEC, rgetattr, ctime_sec),
    FLD(U64, DEC, rgetattr, ctime_nsec),
    FLD(U64, DEC, rgetattr, btime_sec),
    FLD(U64, DEC, rgetattr, btime_nsec),
    FLD(U64, DEC, rgetattr, gen),
    FLD(U64, DEC, rgetattr, data_version),
};
static const struct p9_field f_tsetattr[] = {
    FLD(U32, DEC, tsetattr, fid),
    FLD(U32, HEX, tsetattr, valid),
    FLD(U32, OCT, tsetattr, mode),
    FLD(U32, DEC, tsetattr, uid),
    FLD(U32, DEC, tsetattr, gid),
    FLD(U64, DEC, tsetattr, size),
    FLD(U64, DEC, tsetattr, atime_sec),
    FLD(U64, DEC, tsetattr, atime_nsec),
    FLD(U64, DEC, tsetattr, mtime_sec),
    FLD(U64, DEC, tsetattr, mtime_nsec),
};
static const struct p9_field f_txattrwalk[] = {
    FLD(U32, DEC, txattrwalk, fid),
    FLD(U32, DEC, txattrwalk, newfid),
    FLD(STR, DEC, txattrwalk, name),
};
static const struct p9_field f_rxattrwalk[] = {
    FLD(U64, DEC, rxattrwalk, size),
};
static const struct p9_field f_txattrcreate[] = {
    FLD(U32, DEC, txattrcreate, fid),
    FLD(STR, DEC, txattrcreate, name),
    FLD(U64, DEC, txattrcreate, attr_size),
    FLD(U32, DEC, txattrcreate, flags),
};
static const struct p9_field f_treaddir[] = {
    FLD(U32, DEC, treaddir, fid),
    FLD(U64, DEC, treaddir, offset),
    FLD(U32, DEC, treaddir, count),
};
static const struct p9_field f_rreaddir[] = {
    FLD(DATA, DEC, rreaddir, data),
};
/* datasync[4] as the Linux client and QEMU send it (diod's protocol.md
 * predates it). */
static const struct p9_field f_tfsync[] = {
    FLD(U32, DEC, tfsync, fid),
    FLD(U32, DEC, tfsync, datasync),
};
static const struct p9_field f_tlock[] = {
    FLD(U32, DEC, tlock, fid),
    FLD(U8,  DEC, tlock, type),
    FLD(U32, DEC, tlock, flags),
    FLD(U64, DEC, tlock, start),
    FLD(U64, DEC, tlock, length),
    FLD(U32, DEC, tlock, proc_id),
    FLD(STR, DEC, tlock, client_id),
};
static const struct p9_field f_rlock[] = {
    FLD(U8,  DEC, rlock, status),
};
static const struct p9_field f_tgetlock[] = {
    FLD(U32, DEC, tgetlock, fid),
    FLD(U8,  DEC, tgetlock, type),
    FLD(U64, DEC, tgetlock, start),
    FLD(U64, DEC, tgetlock, length),
    FLD(U32, DEC, tgetlock, proc_id),
    FLD(STR, DEC, tgetlock, client_id),
};
static const struct p9_field f_rgetlock[] = {
    FLD(U8,  DEC, rgetlock, type),
    FLD(U64, DEC, rgetlock, start),
    FLD(U64, DEC, rgetlock, length),
    FLD(U32, DEC, rgetlock, proc_id),
    FLD(STR, DEC, rgetlock, client_id),
};
static const struct p9_field f_tlink[] = {
    FLD(U32, DEC, tlink, dfid),
    FLD(U32, DEC, tlink, fid),
    FLD(STR, DEC, tlink, name),
};
static const struct p9_field f_tmkdir[] = {
    FLD(U32, DEC, tmkdir, dfid),
    FLD(STR, DEC, tmkdir, name),
    FLD(U32, OCT, tmkdir, mode),
    FLD(U32, DEC, tmkdir, gid),
};
static const struct p9_field f_rmkdir[] = {
    QID(rmkdir, qid, "qid"),
};
static const struct p9_field f_trenameat[] = {
    FLD(U32, DEC, trenameat, olddirfid),
    FLD(STR, DEC, trenameat, oldname),
    FLD(U32, DEC, trenameat, newdirfid),
    FLD(STR, DEC, trenameat, newname),
};
static const struct p9_field f_tunlinkat[] = {
    FLD(U32, DEC, tunlinkat, dirfd),
    FLD(STR, DEC, tunlinkat, name),
    FLD(U32, HEX, tunlinkat, flags),
};
static const struct p9_field f_tversion[] = {
    FLD(U32, DEC, tversion, msize),
    FLD(STR, DEC, tversion, version),
};
static const struct p9_field f_rversion[] = {
    FLD(U32, DEC, rversion, msize),
    FLD(STR, DEC, rversion, version),
};
static const struct p9_field f_tauth[] = {
    FLD(U32, DEC, tauth, afid),
    FLD(STR, DEC, tauth, uname),
    FLD(STR, DEC, tauth, aname),
    FLD(U32, DEC, tauth, n_uname),
};
static const struct p9_field f_rauth[] = {
    QID(rauth, aqid, "aqid"),
};
static const struct p9_field f_tattach[] = {
    FLD(U32, DEC, tattach, fid),
    FLD(U32, DEC, tattach, afid),
    FLD(STR, DEC, tattach, uname),
    FLD(STR, DEC, tattach, aname),
    FLD(U32, DEC, tattach, n_uname),
};
static const struct p9_field f_rattach[] = {
    QID(rattach, qid, "qid"),
};
static const struct p9_field f_tflush[] = {
    FLD(U16, DEC, tflush, oldtag),
};
static const struct p9_field f_twalk[] = {
    FLD(U32, DEC, twalk, fid),
    FLD(U32, DEC, twalk, newfid),
    { "nwname", P9K_STRS, P9F_DEC,
      (uint16_t)offsetof(struct p9_fcall, u.twalk.nwname),
      (uint16_t)offsetof(struct p9_fcall, u.twalk.wname) },
};
static const struct p9_field f_rwalk[] = {
    { "nwqid", P9K_QIDS, P9F_DEC,
      (uint16_t)offsetof(struct p9_fcall, u.rwalk.nwqid),
      (uint16_t)offsetof(struct p9_fcall, u.rwalk.wqid) },
};
static const struct p9_field f_tread[] = {
    FLD(U32, DEC, tread, fid),
    FLD(U64, DEC, tread, offset),
    FLD(U32, DEC, tread, count),
};
static const struct p9_field f_rread[] = {
    FLD(DATA, DEC, rread, data),
};
static const struct p9_field f_twrite[] = {
    FLD(U32, DEC, twrite, fid),
    FLD(U64, DEC, twrite, offset),
    FLD(DATA, DEC, twrite, data),
};
static const struct p9_field f_rwrite[] = {
    FLD(U32, DEC, rwrite, count),
};
static const struct p9_field f_tclunk[] = {
    FLD(U32, DEC, tclunk, fid),
};
static const struct p9_field f_tremove[] = {
    FLD(U32, DEC, tremove, fid),
};

/* Empty bodies still need a non-NULL table to count as known. */
static const struct p9_field f_empty[1];

#define D(type, arr) [type] = { arr, (uint8_t)(sizeof(arr) / sizeof((arr)[0])) }
#define E(type) [type] = { f_empty, 0 }

#define P9_RBODY(type, arr) D(type, arr)
#define P9_REMPTY(type, arr) E(type)
static const struct p9_msgdesc descs[P9_NTYPES] = {
    D(P9_RLERROR, f_rlerror),
#define P9_MSG(NAME, name, ID, FLAGS, FID, RB)                               \
    D(P9_T##NAME, f_t##name), RB(P9_R##NAME, f_r##name),
#include "virtfs/p9_msgs.def"
#undef P9_MSG
};
#undef P9_RBODY
#undef P9_REMPTY
/* clang-format on */

#undef D
#undef E
#undef FLD
#undef QID

const struct p9_msgdesc *
p9_msgdesc_get(uint8_t type)
{
    return descs[type].fields != NULL ? &descs[type] : NULL;
}

/* Member of f at byte offset off (offsets come from the tables above). */
static void *
fld(struct p9_fcall *f, uint16_t off)
{
    return (char *)f + off;
}

static const void *
cfld(const struct p9_fcall *f, uint16_t off)
{
    return (const char *)f + off;
}

/* ---- decode ------------------------------------------------------------- */

int
p9_decode_hdr(struct p9_rbuf *b, size_t len, uint32_t *size, uint8_t *type,
              uint16_t *tag)
{
    /* The cursor may cover a larger buffer than the message (a transport
     * buffer); the framed length is what counts.  It may not cover less. */
    if (b->left < len) {
        b->bad = true;
        return -EPROTO;
    }
    b->left = len;
    *size = p9_get_u32(b);
    *type = p9_get_u8(b);
    *tag = p9_get_u16(b);
    if (b->bad || *size != len) {
        b->bad = true;
        return -EPROTO;
    }
    return 0;
}

static void
dec_field(struct p9_rbuf *b, struct p9_fcall *f, const struct p9_field *fd)
{
    void *p = fld(f, fd->off);

    switch (fd->kind) {
    case P9K_U8: *(uint8_t *)p = p9_get_u8(b); break;
    case P9K_U16: *(uint16_t *)p = p9_get_u16(b); break;
    case P9K_U32: *(uint32_t *)p = p9_get_u32(b); break;
    case P9K_U64: *(uint64_t *)p = p9_get_u64(b); break;
    case P9K_QID: p9_get_qid(b, p); break;
    case P9K_STR: p9_get_str(b, p); break;
    case P9K_DATA: {
        uint32_t count = p9_get_u32(b);

        /* The data runs exactly to the end of the message. */
        if (!b->bad && count != b->left) {
            b->bad = true;
        }
        p9_get_data(b, count, p);
        break;
    }
    case P9K_STRS:
    case P9K_QIDS: {
        uint16_t n = p9_get_u16(b);

        if (n > P9_MAXWELEM) {
            b->bad = true;
            n = 0;
        }
        *(uint16_t *)p = n;
        for (uint16_t i = 0; i < n; i++) {
            if (fd->kind == P9K_STRS) {
                p9_get_str(b, (struct p9_str *)fld(f, fd->off2) + i);
            } else {
                p9_get_qid(b, (struct p9_qid *)fld(f, fd->off2) + i);
            }
        }
        break;
    }
    default: b->bad = true; break;
    }
}

int
p9_decode_body(struct p9_rbuf *b, struct p9_fcall *f)
{
    const struct p9_msgdesc *d = p9_msgdesc_get(f->type);

    memset(&f->u, 0, sizeof(f->u));
    if (d == NULL || f->type == P9_TLERROR) {
        return -EOPNOTSUPP;
    }
    for (unsigned i = 0; i < d->nfields && !b->bad; i++) {
        dec_field(b, f, &d->fields[i]);
    }
    return p9_rbuf_done(b);
}

int
p9_decode(struct p9_rbuf *b, size_t len, struct p9_fcall *f)
{
    uint32_t size;
    int err;

    err = p9_decode_hdr(b, len, &size, &f->type, &f->tag);
    if (err < 0) {
        return err;
    }
    return p9_decode_body(b, f);
}

/* ---- encode ------------------------------------------------------------- */

/* A cursor over the bytes of a struct p9_data, wherever they live. */
struct data_it {
    const uint8_t *ptr;    /* flat data, or NULL */
    const struct iovec *v; /* else: current segment */
    int cnt;
    size_t off; /* offset inside v[0] */
    size_t left;
};

static void
dit_init(struct data_it *it, const struct p9_data *d)
{
    it->ptr = d->ptr;
    it->v = d->iov;
    it->cnt = d->iov != NULL ? d->iovcnt : 0;
    it->off = d->off;
    it->left = d->len;
}

/* Bytes available contiguously at the cursor (0 at the end, or when the
 * segments run out early); *p points at them. */
static size_t
dit_peek(struct data_it *it, const uint8_t **p)
{
    size_t n;

    if (it->left == 0) {
        return 0;
    }
    if (it->ptr != NULL) {
        *p = it->ptr;
        return it->left;
    }
    while (it->cnt > 0 && it->off >= it->v[0].iov_len) {
        it->off -= it->v[0].iov_len;
        it->v++;
        it->cnt--;
    }
    if (it->cnt == 0) {
        return 0;
    }
    *p = (const uint8_t *)it->v[0].iov_base + it->off;
    n = it->v[0].iov_len - it->off;
    return n < it->left ? n : it->left;
}

static void
dit_advance(struct data_it *it, size_t n)
{
    it->left -= n;
    if (it->ptr != NULL) {
        it->ptr += n;
    } else {
        it->off += n;
    }
}

/* Data for encoding: from ptr, else gathered from iov (a decoded message
 * re-encoded), else already in place in the output (skip it). */
static void
enc_data(struct p9_wbuf *w, const struct p9_data *d)
{
    struct data_it it;
    const uint8_t *p;
    size_t n;

    p9_put_u32(w, d->len);
    if (d->ptr == NULL && d->iov == NULL) {
        p9_wbuf_skip(w, d->len);
        return;
    }
    dit_init(&it, d);
    while ((n = dit_peek(&it, &p)) > 0) {
        p9_put_bytes(w, p, n);
        dit_advance(&it, n);
    }
    if (it.left != 0) {
        w->bad = true; /* the source segments hold fewer than len bytes */
    }
}

static void
enc_field(struct p9_wbuf *w, const struct p9_fcall *f,
          const struct p9_field *fd)
{
    const void *p = cfld(f, fd->off);

    switch (fd->kind) {
    case P9K_U8: p9_put_u8(w, *(const uint8_t *)p); break;
    case P9K_U16: p9_put_u16(w, *(const uint16_t *)p); break;
    case P9K_U32: p9_put_u32(w, *(const uint32_t *)p); break;
    case P9K_U64: p9_put_u64(w, *(const uint64_t *)p); break;
    case P9K_QID: p9_put_qid(w, p); break;
    case P9K_STR: p9_put_str(w, p); break;
    case P9K_DATA: enc_data(w, p); break;
    case P9K_STRS:
    case P9K_QIDS: {
        uint16_t n = *(const uint16_t *)p;

        p9_put_u16(w, n);
        for (uint16_t i = 0; i < n; i++) {
            if (fd->kind == P9K_STRS) {
                p9_put_str(w, (const struct p9_str *)cfld(f, fd->off2) + i);
            } else {
                p9_put_qid(w, (const struct p9_qid *)cfld(f, fd->off2) + i);
            }
        }
        break;
    }
    default: w->bad = true; break;
    }
}

/*
 * The size enc_all() will write for f, in *need, after the checks: -EINVAL
 * for what no buffer could hold (unknown type, counts over 16, a string
 * with len but no bytes).  One walk over the fields does both.
 */
static int
enc_check(const struct p9_fcall *f, const struct p9_msgdesc **dp, size_t *need)
{
    const struct p9_msgdesc *d = p9_msgdesc_get(f->type);
    size_t n = P9_HDRSZ;

    if (d == NULL || f->type == P9_TLERROR) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < d->nfields; i++) {
        const struct p9_field *fd = &d->fields[i];
        const void *p = cfld(f, fd->off);

        switch (fd->kind) {
        case P9K_U8: n += 1; break;
        case P9K_U16: n += 2; break;
        case P9K_U32: n += 4; break;
        case P9K_U64: n += 8; break;
        case P9K_QID: n += P9_QIDSZ; break;
        case P9K_STR: {
            const struct p9_str *sp = p;

            if (sp->s == NULL && sp->len != 0) {
                return -EINVAL;
            }
            n += 2 + (size_t)sp->len;
            break;
        }
        case P9K_DATA: n += 4 + (size_t)((const struct p9_data *)p)->len; break;
        case P9K_STRS: {
            uint16_t cnt = *(const uint16_t *)p;
            const struct p9_str *sv = cfld(f, fd->off2);

            if (cnt > P9_MAXWELEM) {
                return -EINVAL;
            }
            n += 2;
            for (uint16_t j = 0; j < cnt; j++) {
                if (sv[j].s == NULL && sv[j].len != 0) {
                    return -EINVAL;
                }
                n += 2 + (size_t)sv[j].len;
            }
            break;
        }
        case P9K_QIDS: {
            uint16_t cnt = *(const uint16_t *)p;

            if (cnt > P9_MAXWELEM) {
                return -EINVAL;
            }
            n += 2 + (size_t)P9_QIDSZ * cnt;
            break;
        }
        default: break; /* enc_field() latches 'bad' for these */
        }
    }
    *dp = d;
    *need = n;
    return 0;
}

static void
enc_all(struct p9_wbuf *w, const struct p9_fcall *f, const struct p9_msgdesc *d)
{
    p9_put_u32(w, 0); /* size, patched at the end */
    p9_put_u8(w, f->type);
    p9_put_u16(w, f->tag);
    for (unsigned i = 0; i < d->nfields; i++) {
        enc_field(w, f, &d->fields[i]);
    }
}

size_t
p9_encoded_size(const struct p9_fcall *f)
{
    const struct p9_msgdesc *d;
    size_t need;

    if (enc_check(f, &d, &need) < 0) {
        return 0;
    }
    return need;
}

long
p9_encode(struct p9_wbuf *w, const struct p9_fcall *f)
{
    const struct p9_msgdesc *d;
    size_t need;
    int err;

    err = enc_check(f, &d, &need);
    if (err < 0) {
        return err;
    }
    if (need > UINT32_MAX) {
        return -EINVAL;
    }
    /* "At the start of w": rewind, so a writer that already holds in-place
     * payload (Rread data, dirents after offset 11) can be reused. */
    w->iov = w->iov0;
    w->iovcnt = w->iovcnt0;
    w->off = 0;
    w->used = 0;
    w->bad = false;
    if (need > w->cap) {
        w->bad = true;
        return -ENOBUFS;
    }
    enc_all(w, f, d);
    if (w->bad || w->used != need) {
        w->bad = true;
        return -ENOBUFS;
    }
    p9_wbuf_patch_u32(w, 0, (uint32_t)need);
    return (long)need;
}

/* ---- equality ----------------------------------------------------------- */

static bool
str_eq(const struct p9_str *a, const struct p9_str *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->s, b->s, a->len) == 0);
}

static bool
qid_eq(const struct p9_qid *a, const struct p9_qid *b)
{
    return a->type == b->type && a->version == b->version && a->path == b->path;
}

/* Compare two payloads chunk by chunk; "in place" data (no ptr, no iov)
 * only equals "in place" data of the same length. */
static bool
data_eq(const struct p9_data *a, const struct p9_data *b)
{
    struct data_it ia;
    struct data_it ib;
    bool pa = a->ptr == NULL && a->iov == NULL;
    bool pb = b->ptr == NULL && b->iov == NULL;

    if (a->len != b->len || pa != pb) {
        return false;
    }
    if (pa) {
        return true;
    }
    dit_init(&ia, a);
    dit_init(&ib, b);
    while (ia.left > 0) {
        const uint8_t *xa = NULL;
        const uint8_t *xb = NULL;
        size_t na = dit_peek(&ia, &xa);
        size_t nb = dit_peek(&ib, &xb);
        size_t n = na < nb ? na : nb;

        if (n == 0 || memcmp(xa, xb, n) != 0) {
            return false;
        }
        dit_advance(&ia, n);
        dit_advance(&ib, n);
    }
    return true;
}

bool
p9_fcall_equal(const struct p9_fcall *a, const struct p9_fcall *b)
{
    const struct p9_msgdesc *d;

    if (a->type != b->type || a->tag != b->tag) {
        return false;
    }
    d = p9_msgdesc_get(a->type);
    if (d == NULL) {
        return false;
    }
    for (unsigned i = 0; i < d->nfields; i++) {
        const struct p9_field *fd = &d->fields[i];
        const void *pa = cfld(a, fd->off);
        const void *pb = cfld(b, fd->off);
        bool eq = true;

        switch (fd->kind) {
        case P9K_U8: eq = *(const uint8_t *)pa == *(const uint8_t *)pb; break;
        case P9K_U16:
            eq = *(const uint16_t *)pa == *(const uint16_t *)pb;
            break;
        case P9K_U32:
            eq = *(const uint32_t *)pa == *(const uint32_t *)pb;
            break;
        case P9K_U64:
            eq = *(const uint64_t *)pa == *(const uint64_t *)pb;
            break;
        case P9K_QID: eq = qid_eq(pa, pb); break;
        case P9K_STR: eq = str_eq(pa, pb); break;
        case P9K_DATA: eq = data_eq(pa, pb); break;
        case P9K_STRS:
        case P9K_QIDS: {
            uint16_t n = *(const uint16_t *)pa;

            if (n != *(const uint16_t *)pb || n > P9_MAXWELEM) {
                return false;
            }
            for (uint16_t j = 0; j < n && eq; j++) {
                if (fd->kind == P9K_STRS) {
                    eq = str_eq((const struct p9_str *)cfld(a, fd->off2) + j,
                                (const struct p9_str *)cfld(b, fd->off2) + j);
                } else {
                    eq = qid_eq((const struct p9_qid *)cfld(a, fd->off2) + j,
                                (const struct p9_qid *)cfld(b, fd->off2) + j);
                }
            }
            break;
        }
        default: eq = false; break;
        }
        if (!eq) {
            return false;
        }
    }
    return true;
}
