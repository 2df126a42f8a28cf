/* SPDX-License-Identifier: MIT */
/*
 * Shared harness for the server tests (and the synth and overlay tests):
 * temporary exports, an in-process server (passthrough backend, or the one
 * th_make_backend makes, + stream transport loop in a thread, one
 * socketpair per client connection) or a spawned virtfsd on a Unix socket,
 * typed raw RPC helpers and host-side checks (tree checksums).  The code
 * is in tests/support/harness.c, built once into the test-support library
 * (tests/support/meson.build) that every harness user links.
 *
 * Every test program takes an optional argument: the path of the virtfsd
 * binary.  Without it the tests run against the in-process server.
 */
#ifndef VIRTFS_TESTS_SUPPORT_HARNESS_H
#define VIRTFS_TESTS_SUPPORT_HARNESS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server/srv_int.h"
#include "support/fs.h"
#include "tap.h"
#include "transport/stream.h"
#include "util/log.h"
#include "virtfs/backend.h"
#include "virtfs/client.h"
#include "virtfs/p9.h"
#include "virtfs/server.h"

#define TH_MSIZE 65536u /* server cap used by every test server */
#define TH_MAXEX 4
#define TH_RPC_TIMEOUT_MS 10000

struct th_export {
    const char *name; /* NULL: only the path selects it */
    const char *path;
    bool ro;
};

struct th_srv {
    const char *virtfsd; /* NULL: in-process */
    /* in-process */
    struct p9s_server *srv;
    struct xp_loop *loop;
    struct backend *be[TH_MAXEX];
    int nbe;
    pthread_t th;
    atomic_int stop;
    int nconn_seq;
    /* spawned */
    pid_t pid;
    char dir[64];
    char sock[128];
};

/* Optional: wrap each in-process backend (e.g. to make ops block). */
extern struct backend *(*th_wrap_backend)(struct backend *be);
/* Optional: make each in-process export's backend (e.g. the synth backend)
 * instead of a passthrough backend on ex->path. */
extern int (*th_make_backend)(const struct th_export *ex, struct backend **out);
/* Optional: adjust the in-process server's configuration (the spawned
 * virtfsd gets the same through extra_args). */
extern void (*th_config_hook)(struct p9s_config *cfg);
/* Optional: the in-process loop's limits, set before its thread starts
 * (as virtfsd does; setting them on a running loop races its threads). */
extern const struct xp_limits *th_loop_limits;

/* th_block_backend(): workers blocked right now, blocked opens ended by
 * EINTR, blocked opens ended by a byte, opens that would have blocked
 * given up under BE_OPEN_NOWAIT; when uninterruptible is set, a blocked
 * open ignores interruption (a slow op that a Tflush cannot cut short: its
 * flushers must wait for it). */
extern atomic_int th_block_waiting;
extern atomic_int th_block_interrupted;
extern atomic_int th_block_released;
extern atomic_int th_block_nowait;
extern atomic_bool th_block_uninterruptible;

/* Raw fid numbers of the typed RPC helpers, above the client's own. */
#define TF(n) (P9C_FID_USER_BASE + (n))

/*
 * Wrap a backend so that opening a FIFO blocks in read(2) on a pipe, "until
 * a writer comes" (th_block_release()) or until the server interrupts the
 * worker (SIGURG on flush), which gives -EINTR: a Tflush of a blocked
 * request.  For th_wrap_backend.
 */
struct backend *th_block_backend(struct backend *be);
/* Let one blocked open go on. */
void th_block_release(void);
/* Wait until 'n' workers are blocked (or 5 s). */
bool th_block_wait(int n);
/* Start a server on the exports: in-process (virtfsd NULL) or the given
 * virtfsd with extra_args (NULL-terminated, may be NULL).  Exits on failure. */
struct th_srv *th_start(const char *virtfsd, const struct th_export *ex,
                        int nex, const char *const *extra_args);
/* A new connected client (no Tversion sent yet). */
struct p9c_conn *th_connect(struct th_srv *s);
/* connect + version(TH_MSIZE) + attach(aname). */
int th_mount(struct th_srv *s, const char *aname, struct p9c_conn **cp,
             struct p9c_fid **rootp);
/* Is the server still alive (spawned) / serving (both)? */
bool th_alive(struct th_srv *s, const char *aname);
/* Stop the server.  Returns the exit status (spawned) or 0. */
int th_stop(struct th_srv *s);
/* A 9P string view of a C string. */
struct p9_str th_str(const char *s);
/* Send t, return 0 or -errno; the reply is freed unless out != NULL. */
int th_rpc(struct p9c_conn *c, struct p9_fcall *t, struct p9c_reply **out);
int th_attach(struct p9c_conn *c, uint32_t fid, const char *aname,
              struct p9_qid *qid);
/* Twalk with explicit names; returns -errno or nwqid; qids copied out. */
int th_walk(struct p9c_conn *c, uint32_t fid, uint32_t newfid, int n,
            const char *const *names, struct p9_qid *qids);
int th_walk1(struct p9c_conn *c, uint32_t fid, uint32_t newfid,
             const char *name);
/* Typed Tattach/Twalk/Tgetattr/Tclunk/Tlopen on raw fids: 0 or -errno. */
int th_getattr(struct p9c_conn *c, uint32_t fid, struct p9_rgetattr *out);
int th_clunk(struct p9c_conn *c, uint32_t fid);
int th_lopen(struct p9c_conn *c, uint32_t fid, uint32_t flags);
/* Tlcreate 'name' on the directory fid 'fid' (gid -1): 0 or -errno. */
int th_lcreate(struct p9c_conn *c, uint32_t fid, const char *name,
               uint32_t flags, uint32_t mode);
/* Build a frame for t with tag 'tag' (malloc'ed). */
uint8_t *th_frame(struct p9_fcall *t, uint16_t tag, size_t *len);
/* Little-endian 32-bit put/get in a raw frame. */
void th_put32(uint8_t *p, uint32_t v);
uint32_t th_get32(const uint8_t *p);
/* Read exactly 'len' bytes from a raw socket, polling before each read
 * (20 s at most per read); false on EOF, error or timeout. */
bool th_read_full(int fd, uint8_t *buf, size_t len);
/* Test-mode banner; returns the virtfsd path or NULL. */
const char *th_mode(int argc, char **argv);

#endif /* VIRTFS_TESTS_SUPPORT_HARNESS_H */
