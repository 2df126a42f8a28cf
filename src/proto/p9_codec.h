/* SPDX-License-Identifier: MIT */
/*
 * The 9P2000.L codec: pure, no I/O, no allocation, no globals.
 *
 * Reading: struct p9_rbuf is a bounds-checked little-endian cursor over a
 * scatter-gather list (a message may arrive split across several guest
 * buffers).  Every read checks the bytes left; the first failure latches
 * 'bad' and later reads return zeros, so a decoder checks once at the end.
 * Strings are returned as views when they lie in one segment; a string
 * that straddles two segments is copied into the caller's scratch area
 * (or the decode fails with -EPROTO when there is none / it is full).
 *
 * Writing: struct p9_wbuf is the same cursor over writable iovecs (the
 * transport's reply buffer, possibly guest memory).  Overflow latches
 * 'bad'.  p9_encode() writes the size field last.
 *
 * Rules enforced by p9_decode() (R1 in the style guide): the size field
 * equals the framed length, every field fits, nwname/nwqid <= 16, no string
 * contains NUL, data counts fit in the message, nothing is left over.
 */
#ifndef VIRTFS_PROTO_P9_CODEC_H
#define VIRTFS_PROTO_P9_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtfs/p9.h"

struct p9_rbuf {
    const struct iovec *iov; /* current segment */
    int iovcnt;              /* segments from 'iov' on */
    size_t off;              /* offset inside iov[0] */
    size_t left;             /* bytes left in the whole message */
    char *scratch; /* for strings split across segments; may be NULL */
    size_t scratch_len;
    size_t scratch_used;
    bool bad; /* sticky: a read ran short or a field was invalid */
};

struct p9_wbuf {
    const struct iovec *iov; /* current segment */
    int iovcnt;
    size_t off;               /* offset inside iov[0] */
    size_t used;              /* bytes written (or skipped) so far */
    size_t cap;               /* total capacity of all segments */
    const struct iovec *iov0; /* first segment, for patching the size field */
    int iovcnt0;
    bool bad;
};

/* -- reader ---------------------------------------------------------------- */

void p9_rbuf_init(struct p9_rbuf *b, const struct iovec *iov, int iovcnt,
                  size_t len, char *scratch, size_t scratch_len);
/* Convenience: one contiguous buffer, no scratch needed.  'one' is
 * caller storage that decoded p9_data keeps pointing at: it must live as
 * long as the decoded message. */
void p9_rbuf_init_flat(struct p9_rbuf *b, struct iovec *one, const void *buf,
                       size_t len);
uint8_t p9_get_u8(struct p9_rbuf *b);
uint16_t p9_get_u16(struct p9_rbuf *b);
uint32_t p9_get_u32(struct p9_rbuf *b);
uint64_t p9_get_u64(struct p9_rbuf *b);
void p9_get_qid(struct p9_rbuf *b, struct p9_qid *q);
void p9_get_str(struct p9_rbuf *b, struct p9_str *out);
/* Record where 'len' bytes start and skip them (no copy). */
void p9_get_data(struct p9_rbuf *b, uint32_t len, struct p9_data *out);
/* Copy 'n' bytes out. */
void p9_get_bytes(struct p9_rbuf *b, void *dst, size_t n);
/* 0 if every read fit and nothing is left over, else -EPROTO. */
int p9_rbuf_done(const struct p9_rbuf *b);

/*
 * Fill 'out' (at most 'max' entries) with the segments of decoded data 'd'.
 * Returns the number of entries, or -EINVAL if they do not fit in 'max'.
 */
int p9_data_iov(const struct p9_data *d, struct iovec *out, int max);
/* Copy decoded data into a flat buffer of at least d->len bytes. */
void p9_data_copy(const struct p9_data *d, void *dst);

/* -- writer ---------------------------------------------------------------- */

void p9_wbuf_init(struct p9_wbuf *w, const struct iovec *iov, int iovcnt);
void p9_put_u8(struct p9_wbuf *w, uint8_t v);
void p9_put_u16(struct p9_wbuf *w, uint16_t v);
void p9_put_u32(struct p9_wbuf *w, uint32_t v);
void p9_put_u64(struct p9_wbuf *w, uint64_t v);
void p9_put_qid(struct p9_wbuf *w, const struct p9_qid *q);
void p9_put_str(struct p9_wbuf *w, const struct p9_str *s);
void p9_put_cstr(struct p9_wbuf *w, const char *s); /* latches bad if > 65535 */
void p9_put_bytes(struct p9_wbuf *w, const void *src, size_t n);
void p9_wbuf_skip(struct p9_wbuf *w, size_t n);
/* Overwrite 4 bytes at absolute offset 'at' (already written). */
void p9_wbuf_patch_u32(struct p9_wbuf *w, size_t at, uint32_t v);
/*
 * Segments of the output buffer covering [at, at+len) (absolute offsets),
 * e.g. to preadv() Rread data straight into the reply.  Returns the number
 * of entries, or -EINVAL if 'max' is too small or the range is outside
 * the buffer.
 */
int p9_wbuf_iov(const struct p9_wbuf *w, size_t at, size_t len,
                struct iovec *out, int max);
/* Bytes still free after the current position. */
size_t p9_wbuf_room(const struct p9_wbuf *w);

/*
 * Encoded size of one directory entry (qid[13] offset[8] type[1] name[s]).
 */
size_t p9_dirent_size(size_t namelen);
/* Append one dirent at the writer's position. */
void p9_put_dirent(struct p9_wbuf *w, const struct p9_dirent *d);
/* Read one dirent from Rreaddir data (client side). */
void p9_get_dirent(struct p9_rbuf *b, struct p9_dirent *d);

/* -- messages ---------------------------------------------------------------- */

/*
 * Decode the 7-byte header.  'len' is the framed length of the whole
 * message; the size field must equal it.  Returns 0 or -EPROTO.
 */
int p9_decode_hdr(struct p9_rbuf *b, size_t len, uint32_t *size, uint8_t *type,
                  uint16_t *tag);

/*
 * Decode the body of a message whose header was read with p9_decode_hdr()
 * into f (f->type and f->tag must be set by the caller).  Works for every
 * T- and R-message of 9P2000.L.  Returns 0, -EPROTO (malformed), or
 * -EOPNOTSUPP (a type that is not part of 9P2000.L).
 */
int p9_decode_body(struct p9_rbuf *b, struct p9_fcall *f);

/* Header + body in one call: a whole message in 'b' of framed length len. */
int p9_decode(struct p9_rbuf *b, size_t len, struct p9_fcall *f);

/*
 * Encode a whole message (size[4] type[1] tag[2] body) at the start of w.
 * Returns the total size, or -ENOBUFS if it does not fit, or -EINVAL for
 * an unknown type / a string longer than 65535.
 *
 * w is rewound first (and 'bad' cleared), so the writer that already
 * carries in-place payload (Rread data via p9_wbuf_iov(), dirents via
 * p9_put_dirent() after P9_HDRSZ + 4) can be passed as is.  Nothing is
 * written when the message does not fit.  Data with ptr == NULL and iov
 * == NULL is in place (skipped); with ptr == NULL and iov set (a decoded
 * message) it is gathered from iov.
 */
long p9_encode(struct p9_wbuf *w, const struct p9_fcall *f);

/*
 * Encoded size of a message (the same computation p9_encode() makes),
 * without writing anything.  Data with ptr == NULL counts its 'len'.
 * 0 for a message p9_encode() would refuse with -EINVAL.
 */
size_t p9_encoded_size(const struct p9_fcall *f);

/*
 * true if a and b are the same message: type, tag and every field; strings
 * and data compared by content wherever they live.  For tests and fuzzing.
 */
bool p9_fcall_equal(const struct p9_fcall *a, const struct p9_fcall *b);

/* "Twalk", "Rlerror", ... or NULL for an unknown id. */
const char *p9_type_name(uint8_t type);
/* true if 'type' is a 9P2000.L T-message we know. */
bool p9_is_tmsg(uint8_t type);

/*
 * One-line rendering for --trace, e.g.
 *   "Twalk tag 3 fid 1 newfid 2 nwname 2 'a' 'bc'".
 * Always NUL-terminates; truncates with "..." when 'size' is too small.
 * Strings are escaped (non-printable bytes as \xNN).
 */
void p9_format(const struct p9_fcall *f, char *buf, size_t size);

/* 'mode' bits P9_DOTL_* -> host open(2) flags, and back. */
int p9_dotl_to_oflags(uint32_t flags);
uint32_t p9_oflags_to_dotl(int oflags);

/* Host errno -> Linux errno for Rlerror (identity on Linux). */
uint32_t p9_errno_to_dotl(int err);

#endif /* VIRTFS_PROTO_P9_CODEC_H */
