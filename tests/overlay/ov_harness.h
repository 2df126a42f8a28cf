/* SPDX-License-Identifier: MIT */
/*
 * What the overlay tests share: the layer paths of the current fixture
 * and the hook that makes the in-process server's backend a layered
 * export of them (one lower).  Include after ../server/harness.h.
 */
#ifndef VIRTFS_TESTS_OV_HARNESS_H
#define VIRTFS_TESTS_OV_HARNESS_H

#include "backend/overlay/overlay.h"

static char g_lower[PATH_MAX];
static char g_upper[PATH_MAX];
static char g_work[PATH_MAX];

static __attribute__((unused)) int
make_ov(const struct th_export *ex, struct backend **out)
{
    struct ov_options o = {.upper = g_upper, .work = g_work, .nlowers = 1};

    (void)ex;
    o.lowers[0] = g_lower;
    return ov_backend_new(&o, out);
}

#endif /* VIRTFS_TESTS_OV_HARNESS_H */
