/* SPDX-License-Identifier: MIT */
/*
 * virtfsd as a vhost-user back-end for a virtio-9p device.
 *
 * QEMU (>= 10.2) provides the device model with
 *   -chardev socket,id=vfs,path=SOCK
 *   -device vhost-user-test-device-pci,chardev=vfs,virtio-id=9,num_vqs=1,
 *           vq_size=1024,config_size=<2 + strlen(tag)>
 * and shares guest RAM through a memfd (memory-backend-memfd,share=on).
 * The guest runs its stock 9pnet_virtio: mount -t 9p -o trans=virtio TAG.
 *
 * One front-end connection is one device: a thread serves its vhost-user
 * socket and its kick eventfd, pops request chains and submits them to a
 * new 9P session (p9s_conn) of 'srv'; worker threads write replies
 * straight into the guest's buffers and complete the chains.  When the
 * front-end disconnects, breaks the protocol or shrinks the guest memory
 * under us (a SIGBUS, caught: see vhost_mem.h), all device state is
 * dropped, the session is closed, and the server accepts the next
 * connection.  docs/security.md lists what a hostile VMM can do.
 */
#ifndef VIRTFS_VHOST_VHOST_H
#define VIRTFS_VHOST_VHOST_H

#include <stdbool.h>
#include <stdio.h>

struct bp_group;
struct p9s_server;
struct vhu_server;

/* Longest mount tag: the config space (2 + tag) must fit GET_CONFIG's 256. */
#define VHU_MAX_TAG 254

struct vhu_opts {
    /* Exactly one of the three sources of connections: */
    const char *socket_path; /* create a listening socket here (replaces a
                                stale socket file), or NULL */
    int listen_fd;           /* an inherited listening socket, or -1 */
    int conn_fd;             /* one connected socket (serve it, then stop;
                                taken over), or -1 */
    const char *tag;         /* mount tag, 1..VHU_MAX_TAG bytes (copied) */
    bool once;               /* stop after the first connection ends */
    /* busy-poll (util/busypoll.h): the group of devices whose rules this
     * server's devices share (one per process: "one peer alone" then
     * means one guest), or NULL for none.  Not owned; must outlive the
     * server.  While it allows, a device thread that found its ring
     * empty watches the ring's index for the window before it asks for
     * kicks again and sleeps: a guest that waits for each reply gets its
     * next request taken without a kick (EVENT_IDX) and the device
     * without a wake-up. */
    struct bp_group *bp;
};

/*
 * vhu_server_new - check the options and open the socket.
 * @srv:  the 9P server whose sessions the devices use (not owned; must
 *        outlive the vhost-user server).
 * @opts: see struct vhu_opts; copied.
 * @out:  the new server, not yet running.
 * Returns 0 or -errno (-EINVAL for bad options, bind/listen errors).
 */
int vhu_server_new(struct p9s_server *srv, const struct vhu_opts *opts,
                   struct vhu_server **out);

/*
 * vhu_server_run - serve in the calling thread: accept a front-end, run its
 * device until it disconnects, accept the next, until vhu_server_stop() or
 * (with opts.once or conn_fd) the first connection's end.  Returns 0 or
 * -errno of a fatal accept error.
 */
int vhu_server_run(struct vhu_server *vs);

/* vhu_server_start - vhu_server_run() in a new thread.  0 or -errno. */
int vhu_server_start(struct vhu_server *vs);

/*
 * vhu_server_stop - ask the server to stop: the current device is torn
 * down (its 9P session closed) and run() returns.  Thread-safe and
 * async-signal-safe (one eventfd write).
 */
void vhu_server_stop(struct vhu_server *vs);

/*
 * vhu_server_wait - wait for the thread of vhu_server_start() to end.
 * Returns run()'s result.
 */
int vhu_server_wait(struct vhu_server *vs);

/*
 * vhu_server_free - stop, join the thread if any, close the sockets and
 * remove the socket file created for opts.socket_path.  NULL is a no-op.
 * In-flight 9P requests may still complete afterwards: each device's
 * memory lives until its session's release().
 */
void vhu_server_free(struct vhu_server *vs);

/*
 * vhu_print_capabilities - print the vhost-user back-end capabilities
 * JSON ("Backend program conventions" of the vhost-user spec) for
 * --print-capabilities: {"type": "9p", "features": []}.
 */
void vhu_print_capabilities(FILE *f);

#endif
