/* SPDX-License-Identifier: MIT */
/*
 * Message names, one-line trace rendering, and the open-flag and errno
 * mappings between the 9P2000.L wire and the host.
 *
 * p9_format() walks the same field tables as the codec, so a trace line
 * always shows every field in wire order.  It never writes past 'size'
 * and never reads data payloads (they may be "in place" and unwritten).
 */
#include "proto/p9_codec.h"
#include "proto/p9_codec_int.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- names -------------------------------------------------------------- */

/* clang-format off */
static const char *const names[P9_NTYPES] = {
    [P9_RLERROR] = "Rlerror",
#define P9_MSG(NAME, name, ID, FLAGS, FID, RB) \
    [P9_T##NAME] = "T" #name, [P9_R##NAME] = "R" #name,
#include "virtfs/p9_msgs.def"
#undef P9_MSG
};
/* clang-format on */

const char *
p9_type_name(uint8_t type)
{
    return names[type];
}

bool
p9_is_tmsg(uint8_t type)
{
    switch (type) {
#define P9_MSG(NAME, name, ID, FLAGS, FID, RB) case P9_T##NAME:
#include "virtfs/p9_msgs.def"
#undef P9_MSG
        return true;
    default: return false;
    }
}

/* ---- format ------------------------------------------------------------- */

/* Longest string rendered before it is cut with "...". */
#define FMT_STR_MAX 128

struct out {
    char *buf;
    size_t size;
    size_t pos; /* bytes written, excluding the NUL */
    bool full;  /* something did not fit */
};

static void
out_mem(struct out *o, const char *s, size_t n)
{
    if (o->full) {
        return;
    }
    /* Keep one byte for the NUL. */
    if (o->size == 0 || o->size - 1 - o->pos < n) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->pos, s, n);
    o->pos += n;
}

static void
out_str(struct out *o, const char *s)
{
    out_mem(o, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void
out_fmt(struct out *o, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        o->full = true;
        return;
    }
    out_mem(o, tmp, (size_t)n);
}

static void
out_qstr(struct out *o, const struct p9_str *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = s->len < FMT_STR_MAX ? s->len : FMT_STR_MAX;

    out_mem(o, "'", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s->s[i];
        char e[4];

        if (c == '\'' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            out_mem(o, e, 2);
        } else if (c >= 0x20 && c < 0x7f) {
            e[0] = (char)c;
            out_mem(o, e, 1);
        } else {
            e[0] = '\\';
            e[1] = 'x';
            e[2] = hex[c >> 4];
            e[3] = hex[c & 0xf];
            out_mem(o, e, 4);
        }
    }
    if (n < s->len) {
        out_mem(o, "...", 3);
    }
    out_mem(o, "'", 1);
}

static void
out_qid(struct out *o, const struct p9_qid *q)
{
    out_fmt(o, "(%02x %" PRIu32 " %" PRIx64 ")", q->type, q->version, q->path);
}

static void
out_num(struct out *o, const char *name, uint64_t v, uint8_t fmt)
{
    switch (fmt) {
    case P9F_HEX: out_fmt(o, " %s 0x%" PRIx64, name, v); break;
    case P9F_OCT: out_fmt(o, " %s 0%" PRIo64, name, v); break;
    default: out_fmt(o, " %s %" PRIu64, name, v); break;
    }
}

static void
fmt_field(struct out *o, const struct p9_fcall *f, const struct p9_field *fd)
{
    const char *p = (const char *)f + fd->off;

    switch (fd->kind) {
    case P9K_U8: out_num(o, fd->name, *(const uint8_t *)p, fd->fmt); break;
    case P9K_U16: out_num(o, fd->name, *(const uint16_t *)p, fd->fmt); break;
    case P9K_U32: out_num(o, fd->name, *(const uint32_t *)p, fd->fmt); break;
    case P9K_U64: out_num(o, fd->name, *(const uint64_t *)p, fd->fmt); break;
    case P9K_QID:
        out_fmt(o, " %s ", fd->name);
        out_qid(o, (const struct p9_qid *)(const void *)p);
        break;
    case P9K_STR:
        out_fmt(o, " %s ", fd->name);
        out_qstr(o, (const struct p9_str *)(const void *)p);
        break;
    case P9K_DATA:
        out_fmt(o, " count %" PRIu32,
                ((const struct p9_data *)(const void *)p)->len);
        break;
    case P9K_STRS:
    case P9K_QIDS: {
        uint16_t n = *(const uint16_t *)(const void *)p;
        const char *arr = (const char *)f + fd->off2;

        out_fmt(o, " %s %u", fd->name, (unsigned)n);
        if (n > P9_MAXWELEM) {
            n = P9_MAXWELEM; /* never read past the array */
        }
        for (uint16_t i = 0; i < n; i++) {
            out_mem(o, " ", 1);
            if (fd->kind == P9K_STRS) {
                out_qstr(o, (const struct p9_str *)(const void *)arr + i);
            } else {
                out_qid(o, (const struct p9_qid *)(const void *)arr + i);
            }
        }
        break;
    }
    default: break;
    }
}

void
p9_format(const struct p9_fcall *f, char *buf, size_t size)
{
    struct out o = {buf, size, 0, false};
    const struct p9_msgdesc *d = p9_msgdesc_get(f->type);
    const char *name = p9_type_name(f->type);

    if (size == 0) {
        return;
    }
    if (name != NULL) {
        out_str(&o, name);
    } else {
        out_fmt(&o, "T?%u", (unsigned)f->type);
    }
    out_fmt(&o, " tag %u", (unsigned)f->tag);
    if (d != NULL) {
        for (unsigned i = 0; i < d->nfields && !o.full; i++) {
            fmt_field(&o, f, &d->fields[i]);
        }
    }
    if (o.full) {
        /* Mark the cut; with fewer than 4 bytes there is no room. */
        if (size >= 4) {
            size_t at = o.pos < size - 4 ? o.pos : size - 4;

            memcpy(buf + at, "...", 3);
            o.pos = at + 3;
        }
    }
    buf[o.pos] = '\0';
}

/* ---- open flags --------------------------------------------------------- */

/* Every non-access-mode bit, spelled out: the wire carries Linux values but
 * the host's O_* need not match them. */
/* clang-format off */
static const struct {
    uint32_t dotl;
    int oflag;
} oflag_map[] = {
    { P9_DOTL_CREATE,    O_CREAT },
    { P9_DOTL_EXCL,      O_EXCL },
    { P9_DOTL_NOCTTY,    O_NOCTTY },
    { P9_DOTL_TRUNC,     O_TRUNC },
    { P9_DOTL_APPEND,    O_APPEND },
    { P9_DOTL_NONBLOCK,  O_NONBLOCK },
    { P9_DOTL_DSYNC,     O_DSYNC },
    { P9_DOTL_FASYNC,    O_ASYNC },
    { P9_DOTL_DIRECT,    O_DIRECT },
    { P9_DOTL_LARGEFILE, O_LARGEFILE },
    { P9_DOTL_DIRECTORY, O_DIRECTORY },
    { P9_DOTL_NOFOLLOW,  O_NOFOLLOW },
    { P9_DOTL_NOATIME,   O_NOATIME },
    { P9_DOTL_CLOEXEC,   O_CLOEXEC },
    { P9_DOTL_SYNC,      O_SYNC },
};
/* clang-format on */

int
p9_dotl_to_oflags(uint32_t flags)
{
    int o;

    switch (flags & 3u) {
    case P9_DOTL_RDONLY: o = O_RDONLY; break;
    case P9_DOTL_WRONLY: o = O_WRONLY; break;
    case P9_DOTL_RDWR: o = O_RDWR; break;
    default:
        /* NOACCESS: Linux's "3" (ioctl-only open), passed through as
         * QEMU does; the server decides what to do with it. */
        o = O_ACCMODE;
        break;
    }
    for (size_t i = 0; i < sizeof(oflag_map) / sizeof(oflag_map[0]); i++) {
        if (flags & oflag_map[i].dotl) {
            o |= oflag_map[i].oflag;
        }
    }
    return o;
}

uint32_t
p9_oflags_to_dotl(int oflags)
{
    uint32_t d;

    switch (oflags & O_ACCMODE) {
    case O_RDONLY: d = P9_DOTL_RDONLY; break;
    case O_WRONLY: d = P9_DOTL_WRONLY; break;
    case O_RDWR: d = P9_DOTL_RDWR; break;
    default: d = P9_DOTL_NOACCESS; break;
    }
    for (size_t i = 0; i < sizeof(oflag_map) / sizeof(oflag_map[0]); i++) {
        int of = oflag_map[i].oflag;

        /* O_SYNC includes O_DSYNC on Linux: require all of its bits.  A
         * flag that is 0 on this host (O_LARGEFILE on 64-bit) maps to
         * nothing. */
        if (of != 0 && (oflags & of) == of) {
            d |= oflag_map[i].dotl;
        }
    }
    return d;
}

/* ---- errno -------------------------------------------------------------- */

uint32_t
p9_errno_to_dotl(int err)
{
    /* Linux host: the wire carries Linux errno values unchanged.  Accept
     * either sign, since callers hold -errno. */
    if (err < 0) {
        return 0u - (uint32_t)err; /* no overflow for INT_MIN */
    }
    return (uint32_t)err;
}
