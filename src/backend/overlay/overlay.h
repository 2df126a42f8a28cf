/* SPDX-License-Identifier: MIT */
/*
 * The overlay backend: the merged view of a writable upper directory over
 * read-only lower trees, in the kernel overlayfs on-disk format (see
 * docs/architecture.md, "Layered exports").
 */
#ifndef VIRTFS_BACKEND_OVERLAY_H
#define VIRTFS_BACKEND_OVERLAY_H

#include <stdbool.h>

#include "virtfs/backend.h"

#define OV_MAX_LOWERS 16

struct ov_options {
    const char *upper; /* writable layer, created when missing */
    const char *work;  /* scratch dir on the upper's fs, outside it;
                           created when missing */
    const char *lowers[OV_MAX_LOWERS]; /* leftmost on top */
    int nlowers;
    bool readonly;
};

/* Open the layered export; returns 0 and a new backend, or -errno. */
int ov_backend_new(const struct ov_options *opt, struct backend **out);

#endif /* VIRTFS_BACKEND_OVERLAY_H */
