/* SPDX-License-Identifier: MIT */
/*
 * One sample message of every 9P2000.L type, with a distinct value in
 * every field, for the codec tests and the fuzz corpus generator.
 */
#ifndef VIRTFS_TESTS_UNIT_SAMPLES_H
#define VIRTFS_TESTS_UNIT_SAMPLES_H

#include <stddef.h>
#include <stdint.h>

#include "proto/p9_codec.h"

/* Every T- and R-message id of 9P2000.L (Rlerror included). */
extern const uint8_t sample_types[];
extern const size_t sample_ntypes;

/*
 * Fill f with the sample for 'type'.  variant 0 is the plain sample; other
 * variants change counts and string lengths (e.g. nwname 0 and 16, empty
 * strings, empty and larger data) to widen the corpus.  Strings and data
 * point at static storage.
 */
void sample_fcall(uint8_t type, int variant, struct p9_fcall *f);

/* Number of variants sample_fcall() knows (variant < SAMPLE_VARIANTS). */
#define SAMPLE_VARIANTS 3

#endif
