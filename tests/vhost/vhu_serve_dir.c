/* SPDX-License-Identifier: MIT */
/*
 * vhu_serve_dir SOCKET DIR [TAG] - serve DIR as a vhost-user virtio-9p
 * back-end on SOCKET (for manual and guest tests until virtfsd has the
 * option).  Serves one front-end connection, then exits; SIGTERM/SIGINT
 * stop it.  Set VIRTFS_LOG=debug for message logs.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "vhost/vhost.h"
#include "virtfs/backend.h"
#include "virtfs/server.h"

static struct vhu_server *volatile handle;

static void
on_signal(int sig)
{
    (void)sig;
    if (handle != NULL) {
        /* it only write(2)s the stop eventfd: async-signal-safe */
        /* NOLINTNEXTLINE(bugprone-signal-handler,cert-sig30-c) */
        vhu_server_stop(handle);
    }
}

int
main(int argc, char **argv)
{
    struct pt_options po = {.remap_devs = true};
    struct p9s_config cfg = {0};
    struct p9s_export ex = {0};
    struct vhu_opts o = {.listen_fd = -1, .conn_fd = -1, .once = true};
    struct vhu_server *vs;
    struct p9s_server *srv;
    struct backend *be;
    const char *lvl = getenv("VIRTFS_LOG");
    int err;

    if (argc < 3) {
        fprintf(stderr, "usage: %s SOCKET DIR [TAG]\n", argv[0]);
        return 2;
    }
    if (lvl != NULL && log_parse_level(lvl) >= 0) {
        log_set_level((enum log_level)log_parse_level(lvl));
    }
    po.root = argv[2];
    if ((err = pt_backend_new(&po, &be)) < 0) {
        fprintf(stderr, "%s: %s\n", argv[2], strerror(-err));
        return 1;
    }
    ex.path = argv[2];
    ex.be = be;
    srv = p9s_server_new(&cfg, &ex, 1);
    o.socket_path = argv[1];
    o.tag = argc > 3 ? argv[3] : "virtfs";
    if (srv == NULL || vhu_server_new(srv, &o, &vs) < 0) {
        fprintf(stderr, "%s: cannot serve\n", argv[1]);
        return 1;
    }
    handle = vs;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    err = vhu_server_run(vs);
    handle = NULL;
    vhu_server_free(vs);
    p9s_server_free(srv);
    be->ops->destroy(be);
    return err < 0 ? 1 : 0;
}
