/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user protocol (QEMU docs/interop/vhost-user.rst), back-end
 * side, for one virtio-9p device per front-end connection.  Wire layouts
 * and request numbers are here so that the test driver can play the
 * front-end.
 *
 * Every message is checked against one table before any handler runs:
 * payload size, vring index range and the number of fds (R13).  A stream
 * error (EOF, short read, oversized payload, truncated control data, bad
 * version) or a table violation ends the connection; the device's state
 * then goes, and only that device's.  A handler failure (a bad memory
 * region, an unstartable ring) is answered with a failed REPLY_ACK.
 */
#ifndef VIRTFS_VHOST_VHOST_USER_H
#define VIRTFS_VHOST_VHOST_USER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/busypoll.h"
#include "vhost/vhost.h"
#include "vhost/vhost_mem.h"
#include "vhost/virtqueue.h"

struct p9s_server;
struct p9s_conn;

/* clang-format off */
enum vhu_request {
    VHU_GET_FEATURES          = 1,
    VHU_SET_FEATURES          = 2,
    VHU_SET_OWNER             = 3,
    VHU_RESET_OWNER           = 4,
    VHU_SET_MEM_TABLE         = 5,
    VHU_SET_LOG_BASE          = 6,
    VHU_SET_LOG_FD            = 7,
    VHU_SET_VRING_NUM         = 8,
    VHU_SET_VRING_ADDR        = 9,
    VHU_SET_VRING_BASE        = 10,
    VHU_GET_VRING_BASE        = 11,
    VHU_SET_VRING_KICK        = 12,
    VHU_SET_VRING_CALL        = 13,
    VHU_SET_VRING_ERR         = 14,
    VHU_GET_PROTOCOL_FEATURES = 15,
    VHU_SET_PROTOCOL_FEATURES = 16,
    VHU_GET_QUEUE_NUM         = 17,
    VHU_SET_VRING_ENABLE      = 18,
    VHU_GET_CONFIG            = 24,
    VHU_SET_CONFIG            = 25,
    VHU_RESET_DEVICE          = 34,
    VHU_GET_MAX_MEM_SLOTS     = 36,
    VHU_ADD_MEM_REG           = 37,
    VHU_REM_MEM_REG           = 38,
    VHU_REQUEST_MAX           = 64,  /* table size; above: unknown */
};
/* clang-format on */

#define VHU_FLAG_VERSION 0x1u /* bits 0-1 */
#define VHU_FLAG_VERSION_MASK 0x3u
#define VHU_FLAG_REPLY 0x4u
#define VHU_FLAG_NEED_REPLY 0x8u
#define VHU_HDR_SIZE 12u

/* virtio feature bits */
#define VIRTIO_9P_MOUNT_TAG 0
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29
#define VHOST_USER_F_PROTOCOL_FEATURES 30
#define VIRTIO_F_VERSION_1 32

/* protocol feature bits */
#define VHU_PROTO_MQ 0
#define VHU_PROTO_REPLY_ACK 3
#define VHU_PROTO_CONFIG 9
#define VHU_PROTO_RESET_DEVICE 13
#define VHU_PROTO_CONFIGURE_MEM_SLOTS 15

#define VHU_FEATURES                                                         \
    ((1ull << VIRTIO_9P_MOUNT_TAG) | (1ull << VIRTIO_RING_F_INDIRECT_DESC) | \
     (1ull << VIRTIO_RING_F_EVENT_IDX) |                                     \
     (1ull << VHOST_USER_F_PROTOCOL_FEATURES) | (1ull << VIRTIO_F_VERSION_1))
#define VHU_PROTOCOL_FEATURES                                        \
    ((1ull << VHU_PROTO_MQ) | (1ull << VHU_PROTO_REPLY_ACK) |        \
     (1ull << VHU_PROTO_CONFIG) | (1ull << VHU_PROTO_RESET_DEVICE) | \
     (1ull << VHU_PROTO_CONFIGURE_MEM_SLOTS))

#define VHU_NUM_VQS 1      /* virtio-9p has one request queue */
#define VHU_MAX_FDS 8      /* fds per message (and SET_MEM_TABLE regions) */
#define VHU_MAX_CONFIG 256 /* config space bytes per GET/SET_CONFIG */
#define VHU_VRING_IDX_MASK 0xffu
#define VHU_VRING_NOFD 0x100u /* in KICK/CALL/ERR: no fd sent */

/* Payloads (little-endian host assumed, as the front-end is local). */
struct vhu_vring_state {
    uint32_t index;
    uint32_t num;
};

struct vhu_vring_addr {
    uint32_t index;
    uint32_t flags;
    uint64_t desc; /* front-end virtual addresses */
    uint64_t used;
    uint64_t avail;
    uint64_t log;
};

struct vhu_mem_table {
    uint32_t nregions;
    uint32_t padding;
    struct vhu_mem_desc regions[VHU_MAX_FDS];
};

struct vhu_mem_single {
    uint64_t padding;
    struct vhu_mem_desc region;
};

struct vhu_config {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
    uint8_t data[VHU_MAX_CONFIG];
};

#define VHU_CONFIG_HDR 12u
#define VHU_MAX_PAYLOAD sizeof(struct vhu_config)

struct vhu_msg {
    uint32_t request;
    uint32_t flags;
    uint32_t size; /* payload bytes */
    union {
        uint64_t u64;
        struct vhu_vring_state state;
        struct vhu_vring_addr addr;
        struct vhu_mem_table mem;
        struct vhu_mem_single memreg;
        struct vhu_config config;
        uint8_t bytes[VHU_MAX_PAYLOAD];
    } p;
    int fds[VHU_MAX_FDS]; /* received fds; owned by the message */
    int nfds;
};

/* Close the fds still owned by 'm'. */
void vhu_msg_close_fds(struct vhu_msg *m);

/* One device = one front-end connection. */
struct vhu_dev {
    atomic_uint refs; /* device thread + each p9s session */
    struct p9s_server *srv;
    int sock;           /* the front-end connection (owned) */
    int stop_fd;        /* vhu_dev_run's, -1 */
    atomic_bool broken; /* guest/front-end violation latched */
    bool err_signalled; /* the err eventfds were written */
    uint64_t features;  /* acked by SET_FEATURES */
    uint64_t protocol_features;
    struct vhu_mem *mem;         /* current table; device thread; may be NULL */
    struct vhu_mem_guard *guard; /* SIGBUS in our guest memory (ref) */
    struct p9s_conn *conn;       /* current 9P session, or NULL */
    atomic_uint inflight;        /* chains submitted, not yet pushed back */
    atomic_size_t copied;        /* bytes of request copies in flight */
    struct vq vq[VHU_NUM_VQS];
    /* busy-poll: the group of the server's devices (NULL: off), and this
     * device thread's own state (see util/busypoll.h) */
    struct bp_group *bp;
    struct bp_state bps;
    uint8_t config[2 + VHU_MAX_TAG];
    size_t config_len;
};

/*
 * A device on connected socket 'sock' (taken over) with config space
 * le16 len + tag.  Returns NULL on allocation failure (sock closed).
 */
struct vhu_dev *vhu_dev_new(struct p9s_server *srv, int sock, const char *tag);
/*
 * Read and handle one message.  0 to go on, < 0 when the connection must
 * end (EOF, stream error, table violation).
 */
int vhu_dev_dispatch(struct vhu_dev *d);
/* Handle an already read message (takes its fds).  As dispatch. */
int vhu_dev_handle(struct vhu_dev *d, struct vhu_msg *m);
/* Pop and submit everything available on queue 'i'. */
void vhu_dev_process(struct vhu_dev *d, int i);
/* Serve until EOF / error, or until 'stop_fd' (>= 0) becomes readable. */
void vhu_dev_run(struct vhu_dev *d, int stop_fd);
/* Tear down: stop rings, close the session, close the socket, drop the
 * device thread's reference. */
void vhu_dev_close(struct vhu_dev *d);

#endif
