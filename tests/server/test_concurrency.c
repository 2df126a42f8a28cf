/* SPDX-License-Identifier: MIT */
/*
 * Concurrency: many connections x threads doing mixed operations with
 * checked results; 64 requests in flight on one connection; Tflush of
 * unknown, finished and blocked requests (in-process, where a backend
 * wrapper makes Tlopen of a FIFO block until "a writer comes"); SIGTERM to
 * virtfsd with requests in flight (virtfsd mode).
 */
#include "harness.h"

static const char *vfsd;
static struct th_srv *srv;
static char *base;
static char exdir[PATH_MAX];

#define FILESZ (1024 * 1024)
static uint8_t *filedata;

/* ---- mixed load ---------------------------------------------------------------- */

#define NCONN 16
#define NTHR 2

struct worker {
    struct p9c_conn *c;
    struct p9c_fid *root;
    int id;
    int seconds;
    long ops;
    long errors;
    char firsterr[160];
};

static void
werr(struct worker *w, const char *what, long v)
{
    if (w->errors++ == 0) {
        snprintf(w->firsterr, sizeof(w->firsterr), "t%d: %s (%ld)", w->id, what,
                 v);
    }
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct p9c_fid *dir = NULL;
    char dname[32];
    uint8_t wbuf[8192];
    uint8_t rbuf[8192];
    uint64_t end = th_now_ms() + (uint64_t)w->seconds * 1000;
    long it = 0;
    int err;

    snprintf(dname, sizeof(dname), "t%02d", w->id);
    err = p9c_mkdir(w->root, dname, 0755, (uint32_t)-1, NULL);
    err = err ? err : p9c_walk(w->root, dname, &dir);
    if (err < 0) {
        werr(w, "mkdir/walk own dir", err);
        return NULL;
    }
    while (th_now_ms() < end) {
        struct p9c_fid *f = NULL;
        struct p9c_fid *g = NULL;
        struct p9_rgetattr a;
        char shared[64];
        size_t len = 1000 + (size_t)(it * 37 % 7000);
        ssize_t n;

        it++;
        for (size_t i = 0; i < len; i++) {
            wbuf[i] = (uint8_t)(w->id * 31 + it + i);
        }
        p9c_walk(dir, "", &f);
        err = p9c_create(f, "f", P9_DOTL_RDWR, 0644, (uint32_t)-1);
        if (err < 0) {
            werr(w, "create", err);
            p9c_clunk(f);
            break;
        }
        n = p9c_pwrite(f, wbuf, len, 0);
        if (n != (ssize_t)len) {
            werr(w, "write", n);
        }
        n = p9c_pread(f, rbuf, sizeof(rbuf), 0);
        if (n != (ssize_t)len || memcmp(rbuf, wbuf, len) != 0) {
            werr(w, "read back", n);
        }
        err = p9c_getattr(f, P9_GETATTR_BASIC, &a);
        if (err < 0 || a.size != len) {
            werr(w, "getattr size", err ? err : (long)a.size);
        }
        p9c_clunk(f);
        err = p9c_renameat(dir, "f", dir, "g");
        if (err < 0) {
            werr(w, "renameat", err);
        }
        err = p9c_walk(dir, "g", &g);
        if (err < 0 || g->qid.type != P9_QTFILE) {
            werr(w, "walk renamed", err);
        }
        if (err == 0 && p9c_open(g, P9_DOTL_RDONLY) == 0) {
            n = p9c_pread(g, rbuf, 16, 0);
            if (n != 16 || memcmp(rbuf, wbuf, 16) != 0) {
                werr(w, "read renamed", n);
            }
        }
        p9c_clunk(g);
        /* a directory listing of our own dir: ., .., g */
        {
            struct p9c_fid *d = NULL;
            struct p9c_dir *it2 = NULL;
            struct p9c_dirent de;
            int cnt = 0;

            p9c_walk(dir, "", &d);
            err = p9c_open(d, P9_DOTL_RDONLY | P9_DOTL_DIRECTORY);
            err = err ? err : p9c_dir_open(d, 128, &it2);
            while (err == 0 && (err = p9c_dir_next(it2, &de)) == 1) {
                cnt++;
                err = 0;
            }
            if (err < 0 || cnt != 3) {
                werr(w, "readdir own dir", err < 0 ? err : cnt);
            }
            p9c_dir_close(it2);
            p9c_clunk(d);
        }
        err = p9c_unlinkat(dir, "g", 0);
        if (err < 0) {
            werr(w, "unlinkat", err);
        }
        /* the shared directory: a unique file, then away again */
        snprintf(shared, sizeof(shared), "s-%d-%ld", w->id, it);
        {
            struct p9c_fid *s = NULL;

            err = p9c_walk(w->root, "shared", &s);
            err = err ? err
                      : p9c_mknod(s, shared, S_IFIFO | 0600, 0, 0, (uint32_t)-1,
                                  NULL);
            err = err ? err : p9c_unlinkat(s, shared, 0);
            if (err < 0) {
                werr(w, "shared mknod/unlink", err);
            }
            p9c_clunk(s);
        }
        w->ops += 12;
    }
    p9c_clunk(dir);
    return NULL;
}

static void
test_mixed_load(int seconds)
{
    static struct worker ws[NCONN * NTHR];
    pthread_t th[NCONN * NTHR];
    struct p9c_conn *cs[NCONN];
    struct p9c_fid *roots[NCONN];
    long ops = 0;
    long errors = 0;
    int mounted = 0;
    char p[PATH_MAX];

    snprintf(p, sizeof(p), "%s/shared", exdir);
    mkdir(p, 0755);
    for (int i = 0; i < NCONN; i++) {
        if (th_mount(srv, "", &cs[i], &roots[i]) == 0) {
            mounted++;
        }
    }
    tap_ok(mounted == NCONN, "load/%d_connections_mounted", mounted);
    if (mounted != NCONN) {
        return;
    }
    for (int i = 0; i < NCONN * NTHR; i++) {
        ws[i].c = cs[i % NCONN];
        ws[i].root = roots[i % NCONN];
        ws[i].id = i;
        ws[i].seconds = seconds;
        pthread_create(&th[i], NULL, worker_main, &ws[i]);
    }
    for (int i = 0; i < NCONN * NTHR; i++) {
        pthread_join(th[i], NULL);
        ops += ws[i].ops;
        errors += ws[i].errors;
        if (ws[i].errors) {
            tap_diag("%s", ws[i].firsterr);
        }
    }
    tap_diag("load: %ld ops in %d s over %d connections x %d threads", ops,
             seconds, NCONN, NTHR);
    /* the floor only shows the load really ran; under valgrind (check.sh
     * sets VIRTFS_TEST_VALGRIND) every thread takes turns on one CPU */
    tap_ok(errors == 0 && ops > (getenv("VIRTFS_TEST_VALGRIND") ? 100 : 1000),
           "load/mixed_ops_correct (%ld errors, %ld ops)", errors, ops);
    for (int i = 0; i < NCONN; i++) {
        p9c_clunk(roots[i]);
        p9c_close(cs[i]);
    }
    {
        int left = 0;
        DIR *d = opendir(p);
        struct dirent *e;

        while (d && (e = readdir(d)) != NULL) {
            left += e->d_name[0] != '.';
        }
        if (d) {
            closedir(d);
        }
        tap_ok(left == 0, "load/shared_dir_empty_after (%d)", left);
    }
}

/* ---- pipelining ------------------------------------------------------------------ */

static void
test_pipelining(void)
{
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid *f = NULL;
    struct p9c_req *reqs[64];
    int started = 0;
    int good = 0;
    int err;

    if (th_mount(srv, "", &c, &root) != 0) {
        tap_ok(false, "pipelining/mount");
        return;
    }
    err = p9c_walk(root, "data", &f);
    err = err ? err : p9c_open(f, P9_DOTL_RDONLY);
    tap_ok(err == 0, "pipeline/open (%d)", err);
    for (int i = 0; i < 64; i++) {
        struct p9_fcall t = {.type = P9_TREAD};

        t.u.tread.fid = f->fid;
        t.u.tread.offset = (uint64_t)((i * 7919) % 60) * 16384;
        t.u.tread.count = 4096 + (uint32_t)(i % 5) * 8192;
        if (p9c_start(c, &t, &reqs[i]) == 0) {
            started++;
        } else {
            reqs[i] = NULL;
        }
    }
    tap_ok(started == 64, "pipeline/64_in_flight (%d)", started);
    /* wait in reverse order: the library demultiplexes by tag */
    for (int i = 63; i >= 0; i--) {
        struct p9c_reply *r = NULL;
        uint64_t off = (uint64_t)((i * 7919) % 60) * 16384;
        uint32_t cnt = 4096 + (uint32_t)(i % 5) * 8192;

        if (reqs[i] == NULL) {
            continue;
        }
        if (p9c_wait(reqs[i], &r) == 0 && r->decode_err == 0 &&
            r->f.type == P9_RREAD && r->f.u.rread.data.len == cnt &&
            memcmp(r->f.u.rread.data.ptr, filedata + off, cnt) == 0) {
            good++;
        }
        p9c_reply_free(r);
    }
    tap_ok(good == 64, "pipeline/all_64_replies_correct (%d)", good);
    p9c_clunk(f);
    p9c_clunk(root);
    p9c_close(c);
}

/* ---- flush -------------------------------------------------------------------------- */

static void
test_flush_simple(void)
{
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_req *r = NULL;
    struct p9c_reply *rep = NULL;
    struct p9_fcall t = {.type = P9_TGETATTR};
    uint64_t t0;
    uint16_t tag;
    int err;

    if (th_mount(srv, "", &c, &root) != 0) {
        tap_ok(false, "flush/mount");
        return;
    }
    t0 = th_now_ms();
    err = p9c_flush(c, 999);
    tap_ok(err == 0 && th_now_ms() - t0 < 2000,
           "flush/unknown_tag_rflush_at_once (%d)", err);
    t.u.tgetattr.fid = root->fid;
    t.u.tgetattr.request_mask = P9_GETATTR_BASIC;
    p9c_start(c, &t, &r);
    tag = p9c_req_tag(r);
    err = p9c_wait(r, &rep);
    tap_ok(err == 0 && rep->f.type == P9_RGETATTR, "flush/getattr_done");
    p9c_reply_free(rep);
    err = p9c_flush(c, tag);
    tap_ok(err == 0, "flush/finished_tag_rflush (%d)", err);
    err = p9c_flush(c, P9_NOTAG);
    tap_ok(err == 0, "flush/notag_rflush (%d)", err);
    {
        struct p9_rgetattr a;

        err = p9c_getattr(root, P9_GETATTR_BASIC, &a);
        tap_ok(err == 0 && p9c_error(c) == 0,
               "flush/connection_fine_after (%d)", err);
    }
    p9c_clunk(root);
    p9c_close(c);
}

/* virtfsd: Tlopen of a FIFO must not block a worker (O_NONBLOCK). */
static void
test_fifo_open_nonblocking(void)
{
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid *f = NULL;
    uint64_t t0;
    int err;

    if (th_mount(srv, "", &c, &root) != 0) {
        tap_ok(false, "fifo/mount");
        return;
    }
    p9c_walk(root, "fifo", &f);
    t0 = th_now_ms();
    err = p9c_open(f, P9_DOTL_RDONLY);
    tap_ok(th_now_ms() - t0 < 3000,
           "fifo/lopen_rdonly_returns_without_writer (%d)", err);
    p9c_clunk(f);
    p9c_clunk(root);
    p9c_close(c);
}

/* Raw client helpers for the flush chain: one frame out, one frame in. */
static int
raw_send(int fd, struct p9_fcall *t, uint16_t tag)
{
    size_t len;
    uint8_t *buf = th_frame(t, tag, &len);
    ssize_t n = write(fd, buf, len);

    free(buf);
    return n == (ssize_t)len ? 0 : -1;
}

/* The next reply's type and tag (body discarded); false on EOF/timeout. */
static bool
raw_recv(int fd, uint8_t *type, uint16_t *tag)
{
    uint8_t hdr[7];
    uint8_t body[256];
    uint32_t size;

    if (!th_read_full(fd, hdr, sizeof(hdr))) {
        return false;
    }
    size = th_get32(hdr);
    if (size < 7 || size - 7 > sizeof(body) ||
        !th_read_full(fd, body, size - 7)) {
        return false;
    }
    *type = hdr[4];
    *tag = (uint16_t)(hdr[5] | hdr[6] << 8);
    return true;
}

static void *
release_later(void *arg)
{
    (void)arg;
    usleep(300000); /* the server parks what it reads meanwhile */
    th_block_release();
    return NULL;
}

/*
 * In-process: a chain of Tflush (each flushes the one before, the first
 * flushes a slow request that a flush cannot interrupt), all sent in one
 * write, longer than a worker's stack would take if the flushers were
 * answered recursively.  Every Tflush gets its Rflush, in chain order,
 * after the slow request's reply, and the server keeps serving.
 */
static void
test_flush_chain(int links)
{
    struct p9_fcall t;
    pthread_t releaser;
    uint8_t *chain = malloc((size_t)links * 9);
    uint8_t type;
    uint16_t tag;
    int sv[2];
    int ok = 0;
    int inorder = 0;
    bool setup = true;
    bool slow_first = false;

    if (chain == NULL ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
        xp_loop_add_conn(srv->loop, sv[0], sv[0], "chain", false) < 0) {
        tap_ok(false, "flush_chain/setup");
        free(chain);
        return;
    }
    memset(&t, 0, sizeof(t));
    t.type = P9_TVERSION;
    t.u.tversion.msize = TH_MSIZE;
    t.u.tversion.version = th_str(P9_VERSION_L);
    setup = raw_send(sv[1], &t, P9_NOTAG) == 0 &&
            raw_recv(sv[1], &type, &tag) && type == P9_RVERSION;
    memset(&t, 0, sizeof(t));
    t.type = P9_TATTACH;
    t.u.tattach.fid = 1;
    t.u.tattach.afid = P9_NOFID;
    t.u.tattach.uname = th_str("root");
    t.u.tattach.aname = th_str("");
    t.u.tattach.n_uname = 0;
    setup = setup && raw_send(sv[1], &t, 1) == 0 &&
            raw_recv(sv[1], &type, &tag) && type == P9_RATTACH;
    memset(&t, 0, sizeof(t));
    t.type = P9_TWALK;
    t.u.twalk.fid = 1;
    t.u.twalk.newfid = 2;
    t.u.twalk.nwname = 1;
    t.u.twalk.wname[0] = th_str("fifo");
    setup = setup && raw_send(sv[1], &t, 1) == 0 &&
            raw_recv(sv[1], &type, &tag) && type == P9_RWALK;
    atomic_store(&th_block_uninterruptible, true);
    memset(&t, 0, sizeof(t));
    t.type = P9_TLOPEN;
    t.u.tlopen.fid = 2;
    t.u.tlopen.flags = P9_DOTL_RDONLY;
    setup = setup && raw_send(sv[1], &t, 7) == 0 && th_block_wait(1);
    tap_ok(setup, "flush_chain/slow_request_blocks");
    for (int i = 0; i < links; i++) {
        uint8_t *fr = chain + (size_t)i * 9;
        uint16_t ftag = (uint16_t)(100 + i);
        uint16_t old = i == 0 ? 7 : (uint16_t)(ftag - 1);

        th_put32(fr, 9);
        fr[4] = P9_TFLUSH;
        fr[5] = (uint8_t)ftag;
        fr[6] = (uint8_t)(ftag >> 8);
        fr[7] = (uint8_t)old;
        fr[8] = (uint8_t)(old >> 8);
    }
    /* one write: the server may read the whole chain at once; it must not
     * take more than its pending limit, nor recurse per link */
    pthread_create(&releaser, NULL, release_later, NULL);
    for (size_t off = 0, len = (size_t)links * 9; off < len;) {
        ssize_t n = write(sv[1], chain + off, len - off);

        if (n <= 0) {
            break;
        }
        off += (size_t)n;
    }
    pthread_join(releaser, NULL);
    for (int i = 0; i <= links; i++) {
        if (!raw_recv(sv[1], &type, &tag)) {
            break;
        }
        if (i == 0 && tag == 7) {
            slow_first = type == P9_RLOPEN;
            continue;
        }
        if (type == P9_RFLUSH) {
            ok++;
            inorder += tag == (uint16_t)(100 + ok - 1);
        }
    }
    atomic_store(&th_block_uninterruptible, false);
    tap_ok(slow_first, "flush_chain/slow_reply_before_every_rflush");
    tap_ok(ok == links && inorder == links,
           "flush_chain/%d_links_all_answered_in_order (%d Rflush, %d in "
           "order)",
           links, ok, inorder);
    memset(&t, 0, sizeof(t));
    t.type = P9_TCLUNK;
    t.u.tclunk.fid = 2;
    tap_ok(raw_send(sv[1], &t, 8) == 0 && raw_recv(sv[1], &type, &tag) &&
               type == P9_RCLUNK && tag == 8,
           "flush_chain/connection_fine_after");
    close(sv[1]);
    free(chain);
}

/* In-process: flush of a request blocked in the backend. */
static void
test_flush_blocked(void)
{
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid *f = NULL;
    struct p9c_req *blocked = NULL;
    struct p9c_reply *rep = NULL;
    struct p9_fcall t = {.type = P9_TLOPEN};
    int served = 0;
    int intr0 = atomic_load(&th_block_interrupted);
    int err;

    if (th_mount(srv, "", &c, &root) != 0) {
        tap_ok(false, "flush_blocked/mount");
        return;
    }
    p9c_walk(root, "fifo", &f);
    t.u.tlopen.fid = f->fid;
    t.u.tlopen.flags = P9_DOTL_RDONLY;
    err = p9c_start(c, &t, &blocked);
    tap_ok(err == 0 && th_block_wait(1), "flush/lopen_fifo_blocks");
    /* the same connection keeps being served meanwhile */
    for (int i = 0; i < 20; i++) {
        struct p9_rgetattr a;

        served += p9c_getattr(root, P9_GETATTR_BASIC, &a) == 0;
    }
    tap_ok(served == 20, "flush/others_served_while_blocked (%d)", served);
    {
        /* out of order: 16 reads started after the lopen finish first */
        struct p9c_fid *d = NULL;
        struct p9c_req *rq[16];
        int ok = 0;

        p9c_walk(root, "data", &d);
        p9c_open(d, P9_DOTL_RDONLY);
        for (int i = 0; i < 16; i++) {
            struct p9_fcall rt = {.type = P9_TREAD};

            rt.u.tread.fid = d->fid;
            rt.u.tread.offset = (uint64_t)i * 1000;
            rt.u.tread.count = 1000;
            if (p9c_start(c, &rt, &rq[i]) < 0) {
                rq[i] = NULL;
            }
        }
        for (int i = 0; i < 16; i++) {
            struct p9c_reply *r = NULL;

            if (rq[i] != NULL && p9c_wait(rq[i], &r) == 0 &&
                r->f.type == P9_RREAD && r->f.u.rread.data.len == 1000 &&
                memcmp(r->f.u.rread.data.ptr, filedata + i * 1000, 1000) == 0) {
                ok++;
            }
            p9c_reply_free(r);
        }
        tap_ok(ok == 16 && atomic_load(&th_block_waiting) == 1,
               "flush/later_requests_answered_first (%d)", ok);
        p9c_clunk(d);
    }
    err = p9c_flush(c, p9c_req_tag(blocked));
    tap_ok(err == 0, "flush/blocked_request_rflush (%d)", err);
    err = p9c_wait(blocked, &rep);
    tap_ok(err == -EINTR || (err == 0 && rep != NULL),
           "flush/blocked_request_no_reply_or_reply_first (%d)", err);
    p9c_reply_free(rep);
    tap_ok(atomic_load(&th_block_interrupted) == intr0 + 1 &&
               atomic_load(&th_block_waiting) == 0,
           "flush/worker_interrupted");
    {
        struct p9_rgetattr a;

        err = p9c_getattr(f, P9_GETATTR_BASIC, &a);
        tap_ok(err == 0 && p9c_error(c) == 0 && S_ISFIFO(a.mode),
               "flush/connection_and_fid_fine_after (%d)", err);
    }
    /* the fid was not opened by the flushed request: open it for real */
    blocked = NULL;
    err = p9c_start(c, &t, &blocked);
    th_block_wait(1);
    th_block_release(); /* a writer came */
    rep = NULL;
    err = err ? err : p9c_wait(blocked, &rep);
    tap_ok(err == 0 && rep->f.type == P9_RLOPEN,
           "flush/lopen_completes_when_released (%d type %d)", err,
           rep ? rep->f.type : -1);
    p9c_reply_free(rep);

    /* two Tflush for one blocked request: both answered */
    {
        struct p9c_fid *f2 = NULL;
        struct p9c_req *fl[2] = {NULL, NULL};
        int ok = 0;

        p9c_walk(root, "fifo", &f2);
        t.u.tlopen.fid = f2->fid;
        blocked = NULL;
        p9c_start(c, &t, &blocked);
        th_block_wait(1);
        for (int i = 0; i < 2; i++) {
            uint8_t fr[9] = {9, 0, 0, 0, P9_TFLUSH, 0, 0, 0, 0};
            uint16_t old = p9c_req_tag(blocked);

            fr[5] = (uint8_t)(600 + i);
            fr[6] = (uint8_t)((600 + i) >> 8);
            fr[7] = (uint8_t)old;
            fr[8] = (uint8_t)(old >> 8);
            p9c_start_raw(c, fr, sizeof(fr), &fl[i]);
        }
        for (int i = 0; i < 2; i++) {
            struct p9c_reply *r = NULL;

            if (fl[i] != NULL && p9c_wait(fl[i], &r) == 0 &&
                r->f.type == P9_RFLUSH) {
                ok++;
            }
            p9c_reply_free(r);
        }
        err = p9c_wait(blocked, NULL);
        tap_ok(ok == 2 && (err == -EINTR || err == 0),
               "flush/two_flushes_of_one_request_both_answered (%d, %d)", ok,
               err);
        p9c_clunk(f2);
    }
    /* a connection that closes with a blocked request releases the worker */
    {
        struct p9c_conn *c2;
        struct p9c_fid *r2;
        struct p9c_fid *f3 = NULL;
        int intr = atomic_load(&th_block_interrupted);

        th_mount(srv, "", &c2, &r2);
        p9c_walk(r2, "fifo", &f3);
        t.u.tlopen.fid = f3->fid;
        blocked = NULL;
        p9c_start(c2, &t, &blocked);
        th_block_wait(1);
        p9c_req_abandon(blocked);
        p9c_fid_forget(f3);
        p9c_fid_forget(r2);
        p9c_close(c2);
        for (int i = 0; i < 300 && atomic_load(&th_block_waiting) > 0; i++) {
            usleep(10000);
        }
        tap_ok(atomic_load(&th_block_waiting) == 0 &&
                   atomic_load(&th_block_interrupted) == intr + 1,
               "flush/close_interrupts_blocked_worker");
    }
    p9c_clunk(f);
    p9c_clunk(root);
    p9c_close(c);
}

/* virtfsd: SIGTERM with requests in flight exits 0. */
struct sig_reader {
    struct p9c_req *reqs[64];
    int n;
    int replies;
    int timeouts;
};

static void *
sig_reader_main(void *arg)
{
    struct sig_reader *sr = arg;

    for (int k = 0; k < sr->n; k++) {
        struct p9c_reply *r = NULL;

        int err = p9c_wait(sr->reqs[k], &r);

        if (err == 0 && r->f.type == P9_RREAD) {
            sr->replies++;
        } else if (err == -ETIMEDOUT) {
            sr->timeouts++;
        }
        p9c_reply_free(r);
    }
    return NULL;
}

static void
test_sigterm(void)
{
    struct th_export ex = {NULL, exdir, false};
    struct th_srv *s2 = th_start(vfsd, &ex, 1, NULL);
    struct p9c_conn *cs[4] = {NULL};
    struct p9c_fid *roots[4];
    struct p9c_fid *fs[4];
    static struct sig_reader sr[4];
    pthread_t th[4];
    int started = 0;
    int replies = 0;
    int timeouts = 0;
    int st = -1;
    pid_t pid = s2->pid;
    uint64_t t0;

    /* all sessions first: a client that does not read its replies can
     * hold workers in send() */
    for (int i = 0; i < 4; i++) {
        int err;

        fs[i] = NULL;
        sr[i].n = 0;
        err = th_mount(s2, "", &cs[i], &roots[i]);
        err = err ? err : p9c_walk(roots[i], "data", &fs[i]);
        err = err ? err : p9c_open(fs[i], P9_DOTL_RDONLY);
        if (err < 0) {
            tap_diag("sigterm: connection %d: %s", i, strerror(-err));
        }
    }
    for (int i = 0; i < 4; i++) {
        if (fs[i] == NULL || fs[i]->mode < 0) {
            continue;
        }
        for (int k = 0; k < 64; k++) {
            struct p9_fcall t = {.type = P9_TREAD};

            t.u.tread.fid = fs[i]->fid;
            t.u.tread.offset = (uint64_t)k * 16384;
            t.u.tread.count = 60000;
            if (p9c_start(cs[i], &t, &sr[i].reqs[sr[i].n]) == 0) {
                sr[i].n++;
            }
        }
        started += sr[i].n;
    }
    kill(pid, SIGTERM); /* requests are in flight: nobody read a reply yet */
    for (int i = 0; i < 4; i++) {
        pthread_create(&th[i], NULL, sig_reader_main, &sr[i]);
    }
    t0 = th_now_ms();
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (th_now_ms() - t0 > 30000) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        usleep(5000);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        replies += sr[i].replies;
        timeouts += sr[i].timeouts;
        p9c_fid_forget(fs[i]);
        if (cs[i] != NULL) {
            p9c_fid_forget(roots[i]);
        }
        p9c_close(cs[i]);
    }
    tap_ok(started == 256 && st == 0,
           "sigterm/in_flight_clean_exit_0 (started %d status 0x%x, %llu ms)",
           started, st, (unsigned long long)(th_now_ms() - t0));
    /* requests the server had read are answered; those still in the
     * socket buffer at SIGTERM end with the connection -- none hangs */
    tap_ok(timeouts == 0,
           "sigterm/every_request_answered_or_connection_closed (%d "
           "replies, %d timeouts of %d)",
           replies, timeouts, started);
    th_rmtree(s2->dir);
    free(s2);
}

int
main(int argc, char **argv)
{
    struct th_export ex;
    char p[PATH_MAX];
    int err;

    vfsd = th_mode(argc, argv);
    if (vfsd == NULL) {
        th_wrap_backend = th_block_backend;
    }
    base = th_mkdtemp("conc");
    snprintf(exdir, sizeof(exdir), "%s/ex", base);
    mkdir(exdir, 0755);
    filedata = malloc(FILESZ);
    for (int i = 0; i < FILESZ; i++) {
        filedata[i] = (uint8_t)((i * 13) ^ (i >> 9));
    }
    snprintf(p, sizeof(p), "%s/data", exdir);
    th_write_file(p, filedata, FILESZ);
    snprintf(p, sizeof(p), "%s/fifo", exdir);
    mkfifo(p, 0644);

    ex = (struct th_export){NULL, exdir, false};
    srv = th_start(vfsd, &ex, 1, NULL);
    test_mixed_load(3);
    test_pipelining();
    test_flush_simple();
    if (vfsd == NULL) {
        test_flush_blocked();
        test_flush_chain(3000);
    } else {
        test_fifo_open_nonblocking();
    }
    tap_ok(th_alive(srv, ""), "server/still_serving");
    err = th_stop(srv);
    tap_ok(err == 0, "server/clean_stop (%d)", err);
    if (vfsd != NULL) {
        test_sigterm();
    }
    th_rmtree(base);
    free(base);
    free(filedata);
    return tap_done();
}
