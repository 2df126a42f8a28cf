/* SPDX-License-Identifier: MIT */
/*
 * The server test harness (support/harness.h): temporary trees, the
 * in-process or spawned server, a FIFO-blocking backend wrapper and typed
 * raw RPC helpers.  Built once into the test-support library.
 */
#include "support/harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

struct backend *(*th_wrap_backend)(struct backend *be);
int (*th_make_backend)(const struct th_export *ex, struct backend **out);
void (*th_config_hook)(struct p9s_config *cfg);
const struct xp_limits *th_loop_limits;

/* ---- a backend wrapper whose Tlopen of a FIFO blocks ------------------------
 *
 * The passthrough backend opens FIFOs O_NONBLOCK, so nothing in it blocks.
 * To test Tflush of a blocked request, th_block_backend() wraps a backend
 * so that opening a FIFO blocks in read(2) on a pipe -- "until a writer
 * comes", i.e. until th_block_release() writes a byte -- or until the
 * server interrupts the worker (SIGURG on flush), which gives -EINTR.
 */
static struct be_ops th_block_ops;
static const struct be_ops *th_block_orig;
static int th_block_pipe[2] = {-1, -1};
atomic_int th_block_waiting;     /* workers blocked right now */
atomic_int th_block_interrupted; /* blocked opens ended by EINTR */
atomic_int th_block_released;    /* blocked opens ended by a byte */
atomic_int th_block_nowait;      /* opens given up (BE_OPEN_NOWAIT) */
/* When set, a blocked open ignores interruption (a slow op that a Tflush
 * cannot cut short: its flushers must wait for it). */
atomic_bool th_block_uninterruptible;

static int
th_block_open(struct backend *be, struct be_node *n, uint32_t flags,
              struct be_handle **out, struct p9_qid *qid, uint32_t *iounit)
{
    struct p9_rgetattr a;

    if (th_block_orig->getattr(be, n, NULL, P9_GETATTR_MODE, &a) == 0 &&
        S_ISFIFO(a.mode)) {
        char ch;
        ssize_t r;

        if (flags & BE_OPEN_NOWAIT) {
            atomic_fetch_add(&th_block_nowait, 1);
            return -EAGAIN; /* this open would wait: give up */
        }

        atomic_fetch_add(&th_block_waiting, 1);
        do {
            r = read(th_block_pipe[0], &ch, 1);
        } while (r < 0 && errno == EINTR &&
                 atomic_load(&th_block_uninterruptible));
        atomic_fetch_sub(&th_block_waiting, 1);
        if (r < 0 && errno == EINTR) {
            atomic_fetch_add(&th_block_interrupted, 1);
            return -EINTR;
        }
        atomic_fetch_add(&th_block_released, 1);
    }
    return th_block_orig->open(be, n, flags, out, qid, iounit);
}

struct backend *
th_block_backend(struct backend *be)
{
    if (th_block_pipe[0] < 0 && pipe(th_block_pipe) < 0) {
        exit(99);
    }
    th_block_orig = be->ops;
    th_block_ops = *be->ops;
    th_block_ops.open = th_block_open;
    be->ops = &th_block_ops;
    return be;
}

/* Let one blocked open go on. */
void
th_block_release(void)
{
    if (write(th_block_pipe[1], "x", 1) != 1) {
        exit(99);
    }
}

/* Wait until 'n' workers are blocked (or 5 s). */
bool
th_block_wait(int n)
{
    for (int i = 0; i < 500; i++) {
        if (atomic_load(&th_block_waiting) >= n) {
            return true;
        }
        usleep(10000);
    }
    return false;
}

/* ---- servers -------------------------------------------------------------- */

static void *
th_loop_main(void *arg)
{
    struct th_srv *s = arg;

    xp_loop_run(s->loop, &s->stop, NULL);
    return NULL;
}

struct th_srv *
th_start(const char *virtfsd, const struct th_export *ex, int nex,
         const char *const *extra_args)
{
    struct th_srv *s = calloc(1, sizeof(*s));

    signal(SIGPIPE, SIG_IGN);
    s->virtfsd = virtfsd;
    if (virtfsd == NULL) {
        struct p9s_export pex[TH_MAXEX];
        struct p9s_config cfg = {.msize = TH_MSIZE, .threads = 8};

        log_set_level(getenv("TH_VERBOSE") ? LOG_LVL_INFO : LOG_LVL_ERROR);
        for (int i = 0; i < nex; i++) {
            struct pt_options po = {.root = ex[i].path,
                                    .readonly = ex[i].ro,
                                    .multiuser = false,
                                    .remap_devs = true};
            struct backend *be;

            if (th_make_backend != NULL) {
                if (th_make_backend(&ex[i], &be) < 0) {
                    fprintf(stderr, "backend for %s failed\n", ex[i].path);
                    exit(99);
                }
            } else if (pt_backend_new(&po, &be) < 0) {
                fprintf(stderr, "pt_backend_new(%s) failed\n", ex[i].path);
                exit(99);
            }
            if (th_wrap_backend != NULL) {
                be = th_wrap_backend(be);
            }
            s->be[s->nbe++] = be;
            pex[i].name = ex[i].name;
            pex[i].path = ex[i].path;
            pex[i].readonly = ex[i].ro;
            pex[i].be = be;
        }
        if (th_config_hook != NULL) {
            th_config_hook(&cfg);
        }
        s->srv = p9s_server_new(&cfg, pex, nex);
        s->loop = s->srv ? xp_loop_new(s->srv) : NULL;
        if (s->loop == NULL) {
            fprintf(stderr, "cannot start the in-process server\n");
            exit(99);
        }
        if (th_loop_limits != NULL) {
            xp_loop_set_limits(s->loop, th_loop_limits);
        }
        pthread_create(&s->th, NULL, th_loop_main, s);
        return s;
    }

    /* spawn virtfsd --export ... --listen unix:DIR/sock */
    {
        char *argv[64];
        char exarg[TH_MAXEX][PATH_MAX + 64];
        char listen[160];
        int argc = 0;
        char *d = th_mkdtemp("sock");

        snprintf(s->dir, sizeof(s->dir), "%s", d);
        free(d);
        snprintf(s->sock, sizeof(s->sock), "%s/s", s->dir);
        snprintf(listen, sizeof(listen), "unix:%s", s->sock);
        argv[argc++] = (char *)virtfsd;
        for (int i = 0; i < nex; i++) {
            snprintf(exarg[i], sizeof(exarg[i]), "%s%s%s%s",
                     ex[i].name ? ex[i].name : "", ex[i].name ? "=" : "",
                     ex[i].path, ex[i].ro ? ",ro" : "");
            argv[argc++] = "--export";
            argv[argc++] = exarg[i];
        }
        argv[argc++] = "--listen";
        argv[argc++] = listen;
        argv[argc++] = "--msize";
        argv[argc++] = "65536";
        argv[argc++] = "--log-level";
        argv[argc++] = "error";
        if (getenv("VIRTFS_TEST_VALGRIND") != NULL) {
            /* memcheck cannot follow the namespace sandbox (it reports
             * the bind mounts and dies in the new pid namespace): the
             * sandbox has its own suite (tests/sandbox), run without it */
            argv[argc++] = "--sandbox";
            argv[argc++] = "none";
            argv[argc++] = "--seccomp";
            argv[argc++] = "none";
        }
        for (int i = 0; extra_args != NULL && extra_args[i] != NULL; i++) {
            argv[argc++] = (char *)extra_args[i];
        }
        argv[argc] = NULL;
        s->pid = fork();
        if (s->pid == 0) {
            signal(SIGPIPE, SIG_DFL); /* virtfsd must cope by itself */
            execv(virtfsd, argv);
            _exit(127);
        }
        /* wait until it accepts */
        for (int i = 0; i < 500; i++) {
            struct sockaddr_un sa = {.sun_family = AF_UNIX};
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            int st;

            snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->sock);
            if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
                close(fd);
                return s;
            }
            close(fd);
            if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
                fprintf(stderr, "virtfsd exited early (status 0x%x)\n", st);
                exit(99);
            }
            usleep(10000);
        }
        fprintf(stderr, "virtfsd did not start listening\n");
        kill(s->pid, SIGKILL);
        exit(99);
    }
}

/* A new connected client (no Tversion sent yet). */
struct p9c_conn *
th_connect(struct th_srv *s)
{
    struct p9c_conn *c = NULL;
    int err;

    if (s->virtfsd != NULL) {
        char addr[160];

        snprintf(addr, sizeof(addr), "unix:%s", s->sock);
        err = p9c_connect(addr, &c);
    } else {
        int sv[2];
        char peer[32];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            return NULL;
        }
        snprintf(peer, sizeof(peer), "test#%d", ++s->nconn_seq);
        if (xp_loop_add_conn(s->loop, sv[0], sv[0], peer, false) < 0) {
            close(sv[0]);
            close(sv[1]);
            return NULL;
        }
        err = p9c_connect_fd(sv[1], &c);
    }
    if (err < 0) {
        return NULL;
    }
    p9c_set_timeout(c, TH_RPC_TIMEOUT_MS);
    return c;
}

/* connect + version(TH_MSIZE) + attach(aname). */
int
th_mount(struct th_srv *s, const char *aname, struct p9c_conn **cp,
         struct p9c_fid **rootp)
{
    struct p9c_conn *c = th_connect(s);
    int err;

    *cp = NULL;
    *rootp = NULL;
    if (c == NULL) {
        return -ECONNREFUSED;
    }
    err = p9c_version(c, TH_MSIZE);
    if (err == 0) {
        err = p9c_attach(c, "", (uint32_t)getuid(), aname, rootp);
    }
    if (err != 0) { /* 0 or -errno; never hand out a NULL root as success */
        p9c_close(c);
        return err;
    }
    *cp = c;
    return 0;
}

/* Is the server still alive (spawned) / serving (both)? */
bool
th_alive(struct th_srv *s, const char *aname)
{
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9_rgetattr a;
    bool ok;

    if (s->virtfsd != NULL && waitpid(s->pid, NULL, WNOHANG) != 0) {
        return false;
    }
    if (th_mount(s, aname, &c, &root) < 0) {
        return false;
    }
    ok = p9c_getattr(root, P9_GETATTR_BASIC, &a) == 0;
    p9c_fid_forget(root); /* p9c_close does not free handles (reported) */
    p9c_close(c);
    return ok;
}

/* Stop the server.  Returns the exit status (spawned) or 0. */
int
th_stop(struct th_srv *s)
{
    int rc = 0;

    if (s->virtfsd != NULL) {
        int st = 0;
        uint64_t t0 = th_now_ms();

        kill(s->pid, SIGTERM);
        while (waitpid(s->pid, &st, WNOHANG) == 0) {
            if (th_now_ms() - t0 > 20000) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, &st, 0);
                rc = -1;
                break;
            }
            usleep(5000);
        }
        if (rc == 0) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        th_rmtree(s->dir);
    } else {
        /* wait for the sessions the clients closed to go away */
        for (int i = 0; i < 2000 && atomic_load(&s->srv->nconns) > 0; i++) {
            usleep(5000);
        }
        if (atomic_load(&s->srv->nconns) > 0) {
            fprintf(stderr, "# %ld session(s) still open at stop\n",
                    atomic_load(&s->srv->nconns));
            rc = -1;
        }
        atomic_store(&s->stop, 1);
        pthread_join(s->th, NULL);
        xp_loop_shutdown(s->loop, 5000);
        xp_loop_free(s->loop);
        p9s_server_free(s->srv);
        for (int i = 0; i < s->nbe; i++) {
            if (s->be[i]->ops->destroy != NULL) {
                s->be[i]->ops->destroy(s->be[i]);
            }
        }
    }
    free(s);
    return rc;
}

/* ---- typed RPC helpers on raw fid numbers ----------------------------------- */

struct p9_str
th_str(const char *s)
{
    struct p9_str r = {s, (uint16_t)strlen(s)};

    return r;
}

/* Send t, return 0 or -errno; the reply is freed unless out != NULL. */
int
th_rpc(struct p9c_conn *c, struct p9_fcall *t, struct p9c_reply **out)
{
    struct p9c_reply *r = NULL;
    int err = p9c_rpc(c, t, &r);

    if (out != NULL) {
        *out = r;
    } else {
        p9c_reply_free(r);
    }
    return err;
}

int
th_attach(struct p9c_conn *c, uint32_t fid, const char *aname,
          struct p9_qid *qid)
{
    struct p9_fcall t = {.type = P9_TATTACH};
    struct p9c_reply *r;
    int err;

    t.u.tattach.fid = fid;
    t.u.tattach.afid = P9_NOFID;
    t.u.tattach.uname = th_str("");
    t.u.tattach.aname = th_str(aname);
    t.u.tattach.n_uname = (uint32_t)getuid();
    err = th_rpc(c, &t, &r);
    if (err == 0 && qid != NULL) {
        *qid = r->f.u.rattach.qid;
    }
    p9c_reply_free(r);
    return err;
}

/* Twalk with explicit names; returns -errno or nwqid; qids copied out. */
int
th_walk(struct p9c_conn *c, uint32_t fid, uint32_t newfid, int n,
        const char *const *names, struct p9_qid *qids)
{
    struct p9_fcall t = {.type = P9_TWALK};
    struct p9c_reply *r;
    int err;

    t.u.twalk.fid = fid;
    t.u.twalk.newfid = newfid;
    t.u.twalk.nwname = (uint16_t)n;
    for (int i = 0; i < n; i++) {
        t.u.twalk.wname[i] = th_str(names[i]);
    }
    err = th_rpc(c, &t, &r);
    if (err < 0) {
        return err;
    }
    err = r->f.u.rwalk.nwqid;
    if (qids != NULL) {
        memcpy(qids, r->f.u.rwalk.wqid, sizeof(struct p9_qid) * (size_t)err);
    }
    p9c_reply_free(r);
    return err;
}

int
th_walk1(struct p9c_conn *c, uint32_t fid, uint32_t newfid, const char *name)
{
    const char *names[1] = {name};
    int n = th_walk(c, fid, newfid, name ? 1 : 0, names, NULL);

    return n < 0 ? n : 0;
}

int
th_getattr(struct p9c_conn *c, uint32_t fid, struct p9_rgetattr *out)
{
    struct p9_fcall t = {.type = P9_TGETATTR};
    struct p9c_reply *r;
    int err;

    t.u.tgetattr.fid = fid;
    t.u.tgetattr.request_mask = P9_GETATTR_ALL;
    err = th_rpc(c, &t, &r);
    if (err == 0 && out != NULL) {
        *out = r->f.u.rgetattr;
    }
    p9c_reply_free(r);
    return err;
}

int
th_clunk(struct p9c_conn *c, uint32_t fid)
{
    struct p9_fcall t = {.type = P9_TCLUNK};

    t.u.tclunk.fid = fid;
    return th_rpc(c, &t, NULL);
}

int
th_lopen(struct p9c_conn *c, uint32_t fid, uint32_t flags)
{
    struct p9_fcall t = {.type = P9_TLOPEN};

    t.u.tlopen.fid = fid;
    t.u.tlopen.flags = flags;
    return th_rpc(c, &t, NULL);
}

int
th_lcreate(struct p9c_conn *c, uint32_t fid, const char *name, uint32_t flags,
           uint32_t mode)
{
    struct p9_fcall t = {.type = P9_TLCREATE};

    t.u.tlcreate.fid = fid;
    t.u.tlcreate.name = th_str(name);
    t.u.tlcreate.flags = flags;
    t.u.tlcreate.mode = mode;
    t.u.tlcreate.gid = (uint32_t)-1;
    return th_rpc(c, &t, NULL);
}

/* Build a frame for t with tag 'tag' (malloc'ed). */
uint8_t *
th_frame(struct p9_fcall *t, uint16_t tag, size_t *len)
{
    uint8_t *buf = NULL;

    t->tag = tag;
    if (p9c_encode(t, &buf, len) < 0) {
        fprintf(stderr, "p9c_encode failed\n");
        exit(99);
    }
    return buf;
}

void
th_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint32_t
th_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Read exactly 'len' bytes from a raw socket, polling before each read
 * (20 s at most per read); false on EOF, error or timeout. */
bool
th_read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, 20000) <= 0) {
            return false;
        }
        n = read(fd, buf + got, len - got);
        if (n <= 0) {
            return false;
        }
        got += (size_t)n;
    }
    return true;
}

/* Test-mode banner; returns the virtfsd path or NULL. */
const char *
th_mode(int argc, char **argv)
{
    const char *v = argc > 1 ? argv[1] : NULL;

    tap_diag("server: %s", v ? v : "in-process");
    return v;
}
