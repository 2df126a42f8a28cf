/* SPDX-License-Identifier: MIT */
/*
 * Building 9P T-messages in the front-end's guest memory (tests/vhost/fe.c):
 * shared by test_vhost_9p and bench/vhost_bench.c.
 */
#ifndef VIRTFS_TESTS_VHOST_TMSG_H
#define VIRTFS_TESTS_VHOST_TMSG_H

#include <stdint.h>
#include <string.h>

#include "fe.h"

/* A T-message under construction, in guest memory. */
struct tmsg {
    uint8_t *p;
    uint32_t len;
};

static inline void
t_begin(struct tmsg *t, struct fe *f, uint64_t gpa, uint8_t type, uint16_t tag)
{
    t->p = fe_ptr(f, gpa);
    t->len = 7;
    t->p[4] = type;
    memcpy(t->p + 5, &tag, 2);
}

static inline void
t_u16(struct tmsg *t, uint16_t v)
{
    memcpy(t->p + t->len, &v, 2);
    t->len += 2;
}

static inline void
t_u32(struct tmsg *t, uint32_t v)
{
    memcpy(t->p + t->len, &v, 4);
    t->len += 4;
}

static inline void
t_u64(struct tmsg *t, uint64_t v)
{
    memcpy(t->p + t->len, &v, 8);
    t->len += 8;
}

static inline void
t_str(struct tmsg *t, const char *s)
{
    uint16_t n = (uint16_t)strlen(s);

    memcpy(t->p + t->len, &n, 2);
    memcpy(t->p + t->len + 2, s, n);
    t->len += 2u + n;
}

/* Finish with 'extra' payload bytes that live elsewhere (zero copy);
 * returns the bytes written here. */
static inline uint32_t
t_end(struct tmsg *t, uint32_t extra)
{
    uint32_t size = t->len + extra;

    memcpy(t->p, &size, 4);
    return t->len;
}

#endif
