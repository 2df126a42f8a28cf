/* SPDX-License-Identifier: MIT */
/*
 * Private to src/proto: the per-message field tables that drive the
 * decoder, the encoder, p9_encoded_size(), p9_fcall_equal() and
 * p9_format(), so the five can never disagree about a message's layout.
 * Each table lists the fields of one message in wire order, with the
 * offset of the matching member inside struct p9_fcall.
 */
#ifndef VIRTFS_PROTO_P9_CODEC_INT_H
#define VIRTFS_PROTO_P9_CODEC_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/p9_codec.h"

enum p9_fkind {
    P9K_U8 = 1,
    P9K_U16,
    P9K_U32,
    P9K_U64,
    P9K_QID,  /* struct p9_qid */
    P9K_STR,  /* struct p9_str: len[2] bytes[len] */
    P9K_DATA, /* struct p9_data: count[4] data[count], always last */
    P9K_STRS, /* Twalk: uint16_t count at 'off', p9_str array at 'off2' */
    P9K_QIDS, /* Rwalk: uint16_t count at 'off', p9_qid array at 'off2' */
};

/* How p9_format() prints an integer field. */
enum p9_ffmt {
    P9F_DEC = 0,
    P9F_HEX,
    P9F_OCT,
};

struct p9_field {
    const char *name; /* spec field name, printed by p9_format() */
    uint8_t kind;     /* enum p9_fkind */
    uint8_t fmt;      /* enum p9_ffmt */
    uint16_t off;     /* offsetof(struct p9_fcall, u.<msg>.<field>) */
    uint16_t off2;    /* second member for P9K_STRS / P9K_QIDS */
};

struct p9_msgdesc {
    const struct p9_field *fields; /* NULL: unknown message type */
    uint8_t nfields;               /* 0 for an empty body */
};

/* The layout of message 'type', or NULL if it is not 9P2000.L. */
const struct p9_msgdesc *p9_msgdesc_get(uint8_t type);

#endif /* VIRTFS_PROTO_P9_CODEC_INT_H */
