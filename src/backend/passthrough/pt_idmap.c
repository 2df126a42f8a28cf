/* SPDX-License-Identifier: MIT */
/*
 * uid/gid translation between guest and host, with virtiofsd's rule
 * syntax (--translate-uid / --translate-gid):
 *
 *   map:G:H:N           guest G.. <-> host H.. (both directions), N ids
 *   guest:G:H:N         guest G.. -> host H.. only
 *   host:H:G:N          host H.. -> guest G.. only
 *   squash-guest:G:H:N  guest G..G+N-1 -> the one host id H
 *   squash-host:H:G:N   host H..H+N-1 -> the one guest id G
 *   forbid-guest:G:N    guest G..G+N-1 refused (EPERM)
 *
 * An id no rule covers is the same on both sides.  Rules of one direction
 * must not overlap (refused when parsed, as virtiofsd does), so the order
 * of the rules does not matter.  Applied to attaches (the n_uname), the gid
 * of creations, chown (guest -> host) and getattr (host -> guest).
 */
#include "pt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
pt_id_to_host_rule(const struct pt_idrule *r)
{
    return r->kind == PT_ID_MAP || r->kind == PT_ID_GUEST ||
           r->kind == PT_ID_SQUASH_GUEST || r->kind == PT_ID_FORBID_GUEST;
}

static bool
pt_id_to_guest_rule(const struct pt_idrule *r)
{
    return r->kind == PT_ID_MAP || r->kind == PT_ID_HOST ||
           r->kind == PT_ID_SQUASH_HOST;
}

/* The source range of 'r' in the direction asked for. */
static uint32_t
pt_id_src(const struct pt_idrule *r, bool to_host)
{
    return (!to_host && r->kind == PT_ID_MAP) ? r->b : r->a;
}

static bool
pt_id_in(uint32_t id, uint32_t base, uint32_t count)
{
    return (uint64_t)id >= base && (uint64_t)id < (uint64_t)base + count;
}

int
pt_id_to_host(const struct pt_idmap *m, uint32_t guest, uint32_t *host)
{
    if (m == NULL || guest == (uint32_t)-1) {
        *host = guest;
        return 0;
    }
    for (size_t i = 0; i < m->n; i++) {
        const struct pt_idrule *r = &m->rules[i];

        if (!pt_id_to_host_rule(r) || !pt_id_in(guest, r->a, r->count)) {
            continue;
        }
        switch (r->kind) {
        case PT_ID_FORBID_GUEST: return -EPERM;
        case PT_ID_SQUASH_GUEST: *host = r->b; return 0;
        default: *host = r->b + (guest - r->a); return 0;
        }
    }
    *host = guest;
    return 0;
}

bool
pt_id_squashed(const struct pt_idmap *m, uint32_t guest)
{
    if (m == NULL) {
        return false;
    }
    for (size_t i = 0; i < m->n; i++) {
        const struct pt_idrule *r = &m->rules[i];

        if (r->kind == PT_ID_SQUASH_GUEST && pt_id_in(guest, r->a, r->count)) {
            return true;
        }
    }
    return false;
}

uint32_t
pt_id_to_guest(const struct pt_idmap *m, uint32_t host)
{
    if (m == NULL) {
        return host;
    }
    for (size_t i = 0; i < m->n; i++) {
        const struct pt_idrule *r = &m->rules[i];
        uint32_t src = pt_id_src(r, false);

        if (!pt_id_to_guest_rule(r) || !pt_id_in(host, src, r->count)) {
            continue;
        }
        switch (r->kind) {
        case PT_ID_MAP: return r->a + (host - r->b);
        case PT_ID_SQUASH_HOST: return r->b;
        default: return r->b + (host - r->a);
        }
    }
    return host;
}

static int
pt_id_num(const char *s, uint64_t max, uint32_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9') {
        return -EINVAL;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return -EINVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

static bool
pt_id_overlap(const struct pt_idrule *x, const struct pt_idrule *y,
              bool to_host)
{
    uint64_t xa = pt_id_src(x, to_host);
    uint64_t ya = pt_id_src(y, to_host);

    return xa < ya + y->count && ya < xa + x->count;
}

int
pt_idmap_add(struct pt_idmap *m, const char *spec)
{
    static const struct {
        const char *name;
        enum pt_idrule_kind kind;
    } kinds[] = {
        {"map", PT_ID_MAP},
        {"guest", PT_ID_GUEST},
        {"host", PT_ID_HOST},
        {"squash-guest", PT_ID_SQUASH_GUEST},
        {"squash-host", PT_ID_SQUASH_HOST},
        {"forbid-guest", PT_ID_FORBID_GUEST},
    };
    struct pt_idrule r = {0};
    char buf[128];
    char *f[5] = {NULL};
    char *save = NULL;
    int nf = 0;
    bool found = false;

    if (m->n >= PT_IDMAP_MAX || strlen(spec) >= sizeof(buf)) {
        return -E2BIG;
    }
    memcpy(buf, spec, strlen(spec) + 1);
    for (char *t = strtok_r(buf, ":", &save); t != NULL && nf < 5;
         t = strtok_r(NULL, ":", &save)) {
        f[nf++] = t;
    }
    if (nf == 0) {
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(f[0], kinds[i].name) == 0) {
            r.kind = kinds[i].kind;
            found = true;
        }
    }
    if (!found) {
        return -EINVAL;
    }
    if (r.kind == PT_ID_FORBID_GUEST) {
        if (nf != 3 || pt_id_num(f[1], UINT32_MAX, &r.a) < 0 ||
            pt_id_num(f[2], UINT32_MAX, &r.count) < 0) {
            return -EINVAL;
        }
    } else if (nf != 4 || pt_id_num(f[1], UINT32_MAX, &r.a) < 0 ||
               pt_id_num(f[2], UINT32_MAX, &r.b) < 0 ||
               pt_id_num(f[3], UINT32_MAX, &r.count) < 0) {
        return -EINVAL;
    }
    /* Ranges stay inside the 32-bit id space. */
    if (r.count == 0 || (uint64_t)r.a + r.count > (uint64_t)UINT32_MAX + 1 ||
        ((r.kind == PT_ID_MAP || r.kind == PT_ID_GUEST ||
          r.kind == PT_ID_HOST) &&
         (uint64_t)r.b + r.count > (uint64_t)UINT32_MAX + 1)) {
        return -ERANGE;
    }
    for (size_t i = 0; i < m->n; i++) {
        const struct pt_idrule *o = &m->rules[i];

        if ((pt_id_to_host_rule(&r) && pt_id_to_host_rule(o) &&
             pt_id_overlap(&r, o, true)) ||
            (pt_id_to_guest_rule(&r) && pt_id_to_guest_rule(o) &&
             pt_id_overlap(&r, o, false))) {
            return -EEXIST;
        }
    }
    m->rules[m->n++] = r;
    return 0;
}
