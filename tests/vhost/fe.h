/* SPDX-License-Identifier: MIT */
/*
 * A vhost-user front-end for tests: it plays QEMU (the message sequence,
 * memfd guest RAM, eventfds) and the guest driver (a split ring laid out in
 * that RAM, requests in descriptor chains, kicks, the used ring).
 *
 * Guest RAM is one 4 MiB memfd, shared as two regions so that buffers can
 * straddle a region boundary: gpa [0, 2M) and [2M, 4M), each with the
 * front-end address where this process mapped it.  gpa == offset in RAM.
 */
#ifndef VIRTFS_TESTS_VHOST_FE_H
#define VIRTFS_TESTS_VHOST_FE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhost/vhost_user.h"

#define FE_RAM (4u << 20)
#define FE_REGION (2u << 20)
#define FE_DESC_GPA 0x0000u /* ring of up to 256 entries */
#define FE_AVAIL_GPA 0x1000u
#define FE_USED_GPA 0x2000u
#define FE_TABLE_GPA 0x4000u /* indirect tables: 32 x 4 KiB */
#define FE_DATA_GPA 0x40000u /* buffers from here */
#define FE_SLOT_DESCS 8u     /* direct descriptors per request slot */

struct fe {
    int sock;
    int memfd;
    uint8_t *ram;
    uint16_t num;       /* ring size */
    uint16_t avail_idx; /* driver: next avail index */
    uint16_t last_used; /* driver: used entries consumed */
    int kick;           /* eventfds (the device got dups) */
    int call;
    int err;
    uint64_t data_next; /* bump allocator (gpa) */
    uint64_t features;
    int timeout_ms;         /* for replies and completions */
    unsigned long kicks;    /* by fe_kick_if_needed: sent */
    unsigned long unkicked; /* and skipped (the device did not want one) */
};

/* One buffer of a request. */
struct fe_seg {
    uint64_t gpa;
    uint32_t len;
    bool write;
};

/* Connect to a Unix socket (retrying briefly); 0 or -errno. */
int fe_connect(struct fe *f, const char *path);
/* Use an already connected socket. */
int fe_init_sock(struct fe *f, int sock);
void fe_close(struct fe *f);

/* Messages.  Send: 0 or -errno.  Receive: payload size, 0 on EOF... */
int fe_send(struct fe *f, uint32_t req, uint32_t flags, const void *p,
            uint32_t size, const int *fds, int nfds);
/* Receive a reply to 'req': payload size (>= 0), -EPIPE at EOF, -ETIMEDOUT,
 * -EPROTO on a mismatching header. */
int fe_recv(struct fe *f, uint32_t req, void *p, uint32_t cap);
/* GET_xxx returning a u64: 0 and *v, or -errno. */
int fe_get_u64(struct fe *f, uint32_t req, uint64_t *v);
/* Send with NEED_REPLY and return the ACK: 0 ok, 1 failed, < 0 error. */
int fe_ack(struct fe *f, uint32_t req, const void *p, uint32_t size,
           const int *fds, int nfds);
/* true if the back-end closed the connection (within the timeout). */
bool fe_eof(struct fe *f);

/*
 * The QEMU sequence up to a running ring of 'num' entries: features
 * (offered & 'features'), protocol features, owner, memory table, vring
 * num/base/addr/kick/call/err, enable.  0 or the first failure.
 */
int fe_setup(struct fe *f, uint64_t features, uint16_t num);

/* Guest memory. */
void *fe_ptr(struct fe *f, uint64_t gpa);
uint64_t fe_alloc(struct fe *f, uint32_t len);
/* Write one raw descriptor into a table (gpa of the table). */
void fe_put_desc(struct fe *f, uint64_t table, uint32_t i, uint64_t addr,
                 uint32_t len, uint16_t flags, uint16_t next);
/* Place a chain: direct (n <= FE_SLOT_DESCS) or through an indirect table.
 * Returns the head index. */
uint16_t fe_chain(struct fe *f, const struct fe_seg *s, int n, bool indirect);
/* Publish head in the avail ring (and bump the index). */
void fe_publish(struct fe *f, uint16_t head);
/* Set the avail index directly (hostile tests). */
void fe_set_avail_idx(struct fe *f, uint16_t idx);
void fe_kick(struct fe *f);
/*
 * Kick as a guest driver does after publishing: only if the device asked
 * for it (EVENT_IDX: avail_event passed since 'old_idx', the avail index
 * before publishing; otherwise unless VRING_USED_F_NO_NOTIFY).  Counts
 * kicks and kicks skipped.
 */
void fe_kick_if_needed(struct fe *f, uint16_t old_idx);
/* Wait for the next used entry: 0 and id/len, or -ETIMEDOUT. */
int fe_used(struct fe *f, uint32_t *id, uint32_t *len);
/* true if the call eventfd fires within ms (and consume it). */
bool fe_called(struct fe *f, int ms);
/* true if the err eventfd fires within ms. */
bool fe_errored(struct fe *f, int ms);
/* The used index as the device left it. */
uint16_t fe_used_idx(struct fe *f);

#endif
