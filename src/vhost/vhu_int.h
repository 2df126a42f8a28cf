/* SPDX-License-Identifier: MIT */
/*
 * Internal to the vhost-user back-end: what its files call of each other.
 *
 *   vhu_msg.c     message I/O (framing, descriptors, deadlines)
 *   vhu_dev.c     the check table, the handlers, the device and its thread
 *   vhu_p9.c      the 9P glue: transport ops, ring -> 9P core
 *   vhu_server.c  the listening server (accept loop, start/stop)
 *
 * The types and the calls the tests use are in vhost_user.h; the daemon's
 * interface is vhost.h.
 */
#ifndef VIRTFS_VHOST_VHU_INT_H
#define VIRTFS_VHOST_VHU_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "vhost/vhost_user.h"

/* A message must arrive whole within this (a stalled front-end is cut). */
#define VHU_RECV_TIMEOUT_S 10

/*
 * Read one message from 'sock'.  0, -ECONNRESET at a clean EOF before a
 * header, -ETIMEDOUT when the rest of a message is late, -ECANCELED when
 * 'stop_fd' (>= 0) becomes readable meanwhile, or -EPROTO/-errno for a
 * stream error (every fd received is then closed).
 */
int vhu_msg_read(int sock, struct vhu_msg *m, int stop_fd);
/*
 * Send a reply to 'request' with 'size' payload bytes, within the receive
 * deadline and never past a stop.  0 or -errno.
 */
int vhu_msg_send(int sock, int stop_fd, uint32_t request, const void *payload,
                 uint32_t size);

/* Drop a reference to the device; the last one frees it. */
void vhu_dev_put(struct vhu_dev *d);
/* Write the err eventfds once after the device was marked broken. */
void vhu_dev_signal_broken(struct vhu_dev *d);

/* Open a 9P session on the device (it takes a device reference). */
int vhu_session_open(struct vhu_dev *d);
/* Close the device's session, if any. */
void vhu_session_close(struct vhu_dev *d);
/*
 * Pop up to a batch of chains of queue 'i' and submit them; true if the
 * ring may still hold more.
 */
bool vhu_ring_process(struct vhu_dev *d, int i);

#endif
