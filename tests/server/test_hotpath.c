/* SPDX-License-Identifier: MIT */
/*
 * The metadata hot path of the stream transport (issue 13), in-process:
 *
 *  - a request alone on its connection costs the connection thread one
 *    read: after a short read the socket is drained and the thread goes
 *    back to poll() instead of reading again for an EAGAIN.  Counted
 *    with the process's read syscalls (/proc/self/io syscr).
 *  - Tlcreate with O_EXCL cannot open an existing FIFO, so it runs on the
 *    connection thread like Tgetattr (no hand-over to a worker); without
 *    O_EXCL it still goes to a worker (it could wait for a FIFO's peer,
 *    and the connection thread must stay free to read a Tflush).  The
 *    same for Tlopen with O_DIRECTORY (opendir) against a plain Tlopen.
 */
#include "harness.h"

#include <sys/resource.h>

static struct th_srv *srv;
static const struct be_ops *orig_ops;
static struct be_ops rec_ops;
/* which thread ran the last getattr, create, open (rec_lock) */
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t getattr_thread;
static pthread_t create_thread;
static pthread_t open_thread;

static pthread_t
rec_get(const pthread_t *v)
{
    pthread_t t;

    pthread_mutex_lock(&rec_lock);
    t = *v;
    pthread_mutex_unlock(&rec_lock);
    return t;
}

static void
rec_clear(pthread_t *v)
{
    pthread_mutex_lock(&rec_lock);
    *v = (pthread_t)0;
    pthread_mutex_unlock(&rec_lock);
}

static int
rec_getattr(struct backend *be, struct be_node *n, struct be_handle *h,
            uint64_t mask, struct p9_rgetattr *out)
{
    pthread_mutex_lock(&rec_lock);
    getattr_thread = pthread_self();
    pthread_mutex_unlock(&rec_lock);
    return orig_ops->getattr(be, n, h, mask, out);
}

static int
rec_create(struct backend *be, struct be_node *dir, const char *name,
           uint32_t flags, uint32_t mode, uint32_t gid, struct be_node **out,
           struct be_handle **h, struct p9_qid *qid, uint32_t *iounit)
{
    pthread_mutex_lock(&rec_lock);
    create_thread = pthread_self();
    pthread_mutex_unlock(&rec_lock);
    return orig_ops->create(be, dir, name, flags, mode, gid, out, h, qid,
                            iounit);
}

static int
rec_open(struct backend *be, struct be_node *n, uint32_t flags,
         struct be_handle **out, struct p9_qid *qid, uint32_t *iounit)
{
    pthread_mutex_lock(&rec_lock);
    open_thread = pthread_self();
    pthread_mutex_unlock(&rec_lock);
    return orig_ops->open(be, n, flags, out, qid, iounit);
}

static struct backend *
rec_backend(struct backend *be)
{
    orig_ops = be->ops;
    rec_ops = *be->ops;
    rec_ops.getattr = rec_getattr;
    rec_ops.create = rec_create;
    rec_ops.open = rec_open;
    be->ops = &rec_ops;
    return be;
}

/* /proc/self/io syscr: read-type syscalls of the whole process. */
static long
proc_syscr(void)
{
    char line[128];
    long v = -1;
    FILE *f = fopen("/proc/self/io", "r");

    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "syscr: %ld", &v) == 1) {
            break;
        }
    }
    fclose(f);
    return v;
}

/* Send a T-message without waiting for the reply. */
static bool
raw_send(int fd, struct p9_fcall *t, uint16_t tag)
{
    size_t len;
    uint8_t *buf = th_frame(t, tag, &len);
    bool ok = write(fd, buf, len) == (ssize_t)len;

    free(buf);
    return ok;
}

/* The next reply within 'ms' (-1: however long): its type (tag in *tag),
 * or -1.  Two reads (header, body) when the reply arrives in one piece. */
static int
raw_reply(int fd, int ms, uint16_t *tag)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint8_t hdr[7];
    uint8_t body[512];
    uint32_t size;

    if ((ms >= 0 && poll(&p, 1, ms) != 1) ||
        !th_read_full(fd, hdr, sizeof(hdr))) {
        return -1;
    }
    size = th_get32(hdr);
    if (size < 7 || size - 7 > sizeof(body) ||
        !th_read_full(fd, body, size - 7)) {
        return -1;
    }
    *tag = (uint16_t)(hdr[5] | hdr[6] << 8);
    return hdr[4];
}

/* One RPC on a raw socket: the reply's type, or -1 (see raw_reply). */
static int
raw_rpc(int fd, struct p9_fcall *t, uint16_t tag)
{
    uint16_t rtag;

    if (!raw_send(fd, t, tag)) {
        return -1;
    }
    return raw_reply(fd, -1, &rtag);
}

/* A raw session (Tversion, Tattach of fid 1); sndbuf > 0: the server's
 * end of the socket takes only that much before a send would wait. */
static int
raw_conn_buf(int sndbuf)
{
    struct p9_fcall t;
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return -1;
    }
    if (sndbuf > 0) {
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    }
    if (xp_loop_add_conn(srv->loop, sv[0], sv[0], "hotpath", false) < 0) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    memset(&t, 0, sizeof(t));
    t.type = P9_TVERSION;
    t.u.tversion.msize = TH_MSIZE;
    t.u.tversion.version = th_str(P9_VERSION_L);
    if (raw_rpc(sv[1], &t, P9_NOTAG) != P9_RVERSION) {
        close(sv[1]);
        return -1;
    }
    memset(&t, 0, sizeof(t));
    t.type = P9_TATTACH;
    t.u.tattach.fid = 1;
    t.u.tattach.afid = P9_NOFID;
    t.u.tattach.uname = th_str("");
    t.u.tattach.aname = th_str("");
    t.u.tattach.n_uname = (uint32_t)getuid();
    if (raw_rpc(sv[1], &t, 1) != P9_RATTACH) {
        close(sv[1]);
        return -1;
    }
    return sv[1];
}

static int
raw_conn(void)
{
    return raw_conn_buf(0);
}

/*
 * A request is "alone" when the one before it is completely done: after
 * one that ran on a worker, the worker's bookkeeping may still be running
 * when the client's next request arrives (which then goes to the pool as
 * well).  Let it settle before a request whose thread is checked.
 */
static void
settle(void)
{
    usleep(50000);
}

static int
raw_getattr(int fd, uint32_t fid)
{
    struct p9_fcall t = {.type = P9_TGETATTR};

    t.u.tgetattr.fid = fid;
    t.u.tgetattr.request_mask = P9_GETATTR_BASIC;
    return raw_rpc(fd, &t, 2);
}

/*
 * Sequential Tgetattr: the client side reads twice per reply; the server
 * side must read once per request (it read twice: the request, then an
 * EAGAIN).  Nothing else in the process reads meanwhile.
 */
static void
test_one_read_per_request(int fd)
{
    const int n = 400;
    long before;
    long after;
    int ok = 0;

    for (int i = 0; i < 20; i++) { /* warm up */
        raw_getattr(fd, 1);
    }
    before = proc_syscr();
    for (int i = 0; i < n; i++) {
        ok += raw_getattr(fd, 1) == P9_RGETATTR;
    }
    after = proc_syscr();
    tap_ok(ok == n, "hotpath/getattr_replies (%d of %d)", ok, n);
    tap_ok(before >= 0 && after >= 0, "hotpath/proc_self_io_readable");
    tap_diag("read syscalls per request, client and server: %.2f",
             (double)(after - before) / n);
    /* 2 client reads + 1 server read = 3; the old path made it 4 */
    tap_ok(after - before <= (long)n * 3 + n / 4,
           "hotpath/one_server_read_per_request (%ld reads for %d RPCs)",
           after - before, n);
}

/* Twalk dirfid -> newfid (no names): 0 or -1. */
static int
raw_clone(int fd, uint32_t dirfid, uint32_t newfid)
{
    struct p9_fcall t;

    memset(&t, 0, sizeof(t));
    t.type = P9_TWALK;
    t.u.twalk.fid = dirfid;
    t.u.twalk.newfid = newfid;
    return raw_rpc(fd, &t, 3) == P9_RWALK ? 0 : -1;
}

static void
raw_clunk(int fd, uint32_t fid)
{
    struct p9_fcall t;

    memset(&t, 0, sizeof(t));
    t.type = P9_TCLUNK;
    t.u.tclunk.fid = fid;
    raw_rpc(fd, &t, 5);
}

/* Twalk of one name (NULL: a clone) from dirfid to newfid: 0 or -1. */
static int
raw_walk(int fd, uint32_t dirfid, uint32_t newfid, const char *name)
{
    struct p9_fcall t;

    if (name == NULL) {
        return raw_clone(fd, dirfid, newfid);
    }
    memset(&t, 0, sizeof(t));
    t.type = P9_TWALK;
    t.u.twalk.fid = dirfid;
    t.u.twalk.newfid = newfid;
    t.u.twalk.nwname = 1;
    t.u.twalk.wname[0] = th_str(name);
    return raw_rpc(fd, &t, 3) == P9_RWALK ? 0 : -1;
}

/* Tlcreate of 'name' in dirfid (on a clone), or with create false Tlopen
 * of dirfid's 'name' (NULL: dirfid itself): the reply's type, or -1. */
static int
raw_open(int fd, uint32_t dirfid, uint32_t newfid, const char *name,
         bool create, uint32_t flags)
{
    struct p9_fcall t;
    int type;

    if (raw_walk(fd, dirfid, newfid, create ? NULL : name) < 0) {
        return -1;
    }
    memset(&t, 0, sizeof(t));
    if (create) {
        t.type = P9_TLCREATE;
        t.u.tlcreate.fid = newfid;
        t.u.tlcreate.name = th_str(name);
        t.u.tlcreate.flags = flags;
        t.u.tlcreate.mode = 0644;
        t.u.tlcreate.gid = (uint32_t)getgid();
    } else {
        t.type = P9_TLOPEN;
        t.u.tlopen.fid = newfid;
        t.u.tlopen.flags = flags;
    }
    type = raw_rpc(fd, &t, 4);
    raw_clunk(fd, newfid);
    return type;
}

/*
 * Routing of Tlcreate: one with O_EXCL cannot wait and runs on the
 * connection thread; one without is tried there without waiting
 * (BE_OPEN_NOWAIT): a new file is made there, while an existing name
 * (whose open may wait for a lease) moves to a worker.
 */
static void
test_lcreate_routing(int fd)
{
    pthread_t conn_thread;
    int type;

    settle();
    rec_clear(&getattr_thread);
    type = raw_getattr(fd, 1); /* alone: runs on the connection thread */
    conn_thread = rec_get(&getattr_thread);
    tap_ok(type == P9_RGETATTR, "lcreate/getattr_ok");

    rec_clear(&create_thread);
    type = raw_open(fd, 1, 10, "excl", true,
                    P9_DOTL_WRONLY | P9_DOTL_CREATE | P9_DOTL_EXCL);
    tap_ok(type == P9_RLCREATE, "lcreate/excl_ok (%d)", type);
    tap_ok(pthread_equal(rec_get(&create_thread), conn_thread),
           "lcreate/excl_runs_on_the_connection_thread");

    rec_clear(&create_thread);
    type = raw_open(fd, 1, 11, "noexcl", true, P9_DOTL_WRONLY | P9_DOTL_CREATE);
    tap_ok(type == P9_RLCREATE, "lcreate/noexcl_new_ok (%d)", type);
    tap_ok(pthread_equal(rec_get(&create_thread), conn_thread),
           "lcreate/noexcl_new_runs_on_the_connection_thread");

    rec_clear(&create_thread);
    type = raw_open(fd, 1, 11, "noexcl", true, P9_DOTL_WRONLY | P9_DOTL_CREATE);
    tap_ok(type == P9_RLCREATE, "lcreate/noexcl_existing_ok (%d)", type);
    tap_ok(rec_get(&create_thread) != (pthread_t)0 &&
               !pthread_equal(rec_get(&create_thread), conn_thread),
           "lcreate/noexcl_existing_goes_to_a_worker (its open may wait)");
}

static volatile sig_atomic_t lease_broken;

static void
on_sigio(int sig)
{
    (void)sig;
    lease_broken = 1;
}

/*
 * A host process holds a write lease on a file: a guest's open of it waits
 * until the lease is given up.  It must wait on a worker: the connection
 * thread goes on serving the connection meanwhile.
 */
static void
test_lopen_lease(int fd, const char *path, pthread_t conn_thread)
{
    struct sigaction sa = {.sa_handler = on_sigio};
    struct sigaction old;
    struct p9_fcall t;
    uint16_t tag = 0;
    int lfd;
    int type;
    int type2;
    int lease;

    sigaction(SIGIO, &sa, &old);
    lfd = open(path, O_RDONLY | O_CLOEXEC);
    if (lfd < 0 || fcntl(lfd, F_SETLEASE, F_WRLCK) < 0) {
        tap_ok(false, "lopen/lease_taken (%s)", strerror(errno));
        goto out;
    }
    lease_broken = 0;
    rec_clear(&open_thread);
    if (raw_walk(fd, 1, 14, "leased") < 0) {
        tap_ok(false, "lopen/lease_walk");
        goto out;
    }
    memset(&t, 0, sizeof(t));
    t.type = P9_TLOPEN;
    t.u.tlopen.fid = 14;
    t.u.tlopen.flags = P9_DOTL_RDONLY;
    raw_send(fd, &t, 4);
    for (int i = 0; i < 200 && !lease_broken; i++) {
        usleep(10000);
    }
    lease = fcntl(lfd, F_GETLEASE);
    /* during the break, F_GETLEASE gives the lease's target type */
    tap_ok(lease_broken && lease != F_WRLCK,
           "lopen/lease_break_started (target %d)", lease);
    /* the open waits; the connection is served meanwhile */
    memset(&t, 0, sizeof(t));
    t.type = P9_TGETATTR;
    t.u.tgetattr.fid = 1;
    t.u.tgetattr.request_mask = P9_GETATTR_BASIC;
    raw_send(fd, &t, 2);
    type = raw_reply(fd, 2000, &tag);
    tap_ok(type == P9_RGETATTR && tag == 2,
           "lopen/leased_open_waits_while_the_connection_is_served (%d, tag "
           "%u)",
           type, tag);
    close(lfd); /* gives the lease up */
    lfd = -1;
    type2 = raw_reply(fd, 5000, &tag);
    tap_ok(type2 == P9_RLOPEN && tag == 4,
           "lopen/leased_open_answered_after_the_lease (%d, tag %u)", type2,
           tag);
    tap_ok(rec_get(&open_thread) != (pthread_t)0 &&
               !pthread_equal(rec_get(&open_thread), conn_thread),
           "lopen/leased_open_ran_on_a_worker");
    raw_clunk(fd, 14);
out:
    if (lfd >= 0) {
        close(lfd);
    }
    sigaction(SIGIO, &old, NULL);
}

/*
 * Routing of Tlopen: an opendir cannot wait and runs on the connection
 * thread; the open of a regular file is tried there without waiting, and
 * moves to a worker when it would wait (O_TRUNC, a lease: above) or when
 * the backend cannot give up before waiting (a blocking FIFO: see
 * test_malformed's dup_tag).
 */
static void
test_lopen_routing(int fd, const char *exdir)
{
    pthread_t conn_thread;
    char path[PATH_MAX];
    int type;

    settle();
    rec_clear(&getattr_thread);
    raw_getattr(fd, 1);
    conn_thread = rec_get(&getattr_thread);

    rec_clear(&open_thread);
    type = raw_open(fd, 1, 12, NULL, false, P9_DOTL_RDONLY | P9_DOTL_DIRECTORY);
    tap_ok(type == P9_RLOPEN, "lopen/opendir_ok (%d)", type);
    tap_ok(pthread_equal(rec_get(&open_thread), conn_thread),
           "lopen/opendir_runs_on_the_connection_thread");

    rec_clear(&open_thread);
    type = raw_open(fd, 1, 13, "noexcl", false, P9_DOTL_RDONLY);
    tap_ok(type == P9_RLOPEN, "lopen/plain_ok (%d)", type);
    tap_ok(pthread_equal(rec_get(&open_thread), conn_thread),
           "lopen/plain_runs_on_the_connection_thread");

    rec_clear(&open_thread);
    type = raw_open(fd, 1, 13, "noexcl", false, P9_DOTL_RDWR);
    tap_ok(type == P9_RLOPEN, "lopen/rdwr_ok (%d)", type);
    tap_ok(pthread_equal(rec_get(&open_thread), conn_thread),
           "lopen/rdwr_runs_on_the_connection_thread");

    rec_clear(&open_thread);
    type = raw_open(fd, 1, 13, "noexcl", false, P9_DOTL_WRONLY | P9_DOTL_TRUNC);
    tap_ok(type == P9_RLOPEN, "lopen/trunc_ok (%d)", type);
    tap_ok(rec_get(&open_thread) != (pthread_t)0 &&
               !pthread_equal(rec_get(&open_thread), conn_thread),
           "lopen/trunc_goes_to_a_worker");

    snprintf(path, sizeof(path), "%s/leased", exdir);
    close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    test_lopen_lease(fd, path, conn_thread);
}

/*
 * Repeated: 300 rounds of an open tried inline that succeeds, one that
 * gives up and moves to a worker (O_TRUNC), and a Tlcreate of an existing
 * name (gives up too).  Every reply is right and no descriptor is left
 * behind by the tries that gave up.
 */
static void
test_open_repeated(int fd)
{
    int before;
    int after;
    int ok = 0;

    /* warm: the node of "noexcl" and its cached descriptor exist */
    raw_open(fd, 1, 13, "noexcl", false, P9_DOTL_RDONLY);
    before = th_count_fds();
    for (int i = 0; i < 300; i++) {
        ok += raw_open(fd, 1, 13, "noexcl", false, P9_DOTL_RDONLY) == P9_RLOPEN;
        ok += raw_open(fd, 1, 13, "noexcl", false,
                       P9_DOTL_WRONLY | P9_DOTL_TRUNC) == P9_RLOPEN;
        ok += raw_open(fd, 1, 11, "noexcl", true,
                       P9_DOTL_WRONLY | P9_DOTL_CREATE) == P9_RLCREATE;
    }
    after = th_count_fds();
    tap_ok(ok == 900, "repeated opens: %d of 900 answered as asked", ok);
    tap_ok(before > 0 && after == before,
           "repeated opens: no descriptor left behind (%d before, %d after)",
           before, after);
}

/* ---- large reads spliced from the file to the socket ---------------------- */

#define SPLICE_FILE_SIZE (1024 * 1024 + 123)

static uint8_t
pattern(uint64_t i)
{
    return (uint8_t)(i * 7 + i / 251);
}

static void
send_tread(int fd, uint32_t fid, uint64_t off, uint32_t count, uint16_t tag)
{
    struct p9_fcall t;

    memset(&t, 0, sizeof(t));
    t.type = P9_TREAD;
    t.u.tread.fid = fid;
    t.u.tread.offset = off;
    t.u.tread.count = count;
    raw_send(fd, &t, tag);
}

/* Read one reply: an Rread for 'tag' whose data is the file's bytes at
 * 'off'?  Its count in *got (-1: not an Rread, or not those bytes). */
static bool
rread_ok(int fd, uint16_t tag, uint64_t off, long *got)
{
    static uint8_t buf[TH_MSIZE];
    uint32_t size;
    uint32_t count;

    *got = -1;
    if (!th_read_full(fd, buf, 7)) {
        return false;
    }
    size = th_get32(buf);
    if (size < 7 || size > sizeof(buf) ||
        !th_read_full(fd, buf + 7, size - 7)) {
        return false;
    }
    if (buf[4] != P9_RREAD || (buf[5] | buf[6] << 8) != tag || size < 11) {
        return false;
    }
    count = th_get32(buf + 7);
    if (count != size - 11) {
        return false;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (buf[11 + i] != pattern(off + i)) {
            return false;
        }
    }
    *got = count;
    return true;
}

/* A new raw session (sndbuf: raw_conn_buf) with "spliced" open for
 * reading as fid 20: its socket, or -1. */
static int
open_spliced(int sndbuf)
{
    struct p9_fcall t = {.type = P9_TLOPEN};
    int fd = raw_conn_buf(sndbuf);

    t.u.tlopen.fid = 20;
    t.u.tlopen.flags = P9_DOTL_RDONLY;
    if (fd >= 0 && (raw_walk(fd, 1, 20, "spliced") < 0 ||
                    raw_rpc(fd, &t, 4) != P9_RLOPEN)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static bool
raw_read_check(int fd, uint32_t fid, uint64_t off, uint32_t count, long want)
{
    long got;

    send_tread(fd, fid, off, count, 7);
    return rread_ok(fd, 7, off, &got) && got == want;
}

/*
 * A Tread of 16 KiB or more that runs on the connection thread of a
 * socket: its data goes from the file into the connection's pipe and on
 * to the socket, without a copy through a buffer (xconn_stage_fd).
 * Smaller reads and reads of other files are copied as before.  Checked:
 * every byte, the count at the end of the file, which reads took the
 * pipe, a socket that does not take a reply at once (the rest is queued
 * from the pipe), and no descriptor left after the connection (its pipe
 * is closed with it).
 */
static void
test_read_spliced(const char *exdir)
{
    char path[PATH_MAX];
    uint8_t *data = malloc(SPLICE_FILE_SIZE);
    unsigned long s0;
    int fds0;
    int fd;
    int ok = 0;
    int fdw;
    long got;

    snprintf(path, sizeof(path), "%s/spliced", exdir);
    fdw = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    for (uint64_t i = 0; data != NULL && i < SPLICE_FILE_SIZE; i++) {
        data[i] = pattern(i);
    }
    tap_ok(data != NULL && fdw >= 0 &&
               write(fdw, data, SPLICE_FILE_SIZE) == SPLICE_FILE_SIZE,
           "splice/file_written");
    close(fdw);
    free(data);
    fd = open_spliced(0);
    tap_ok(fd >= 0, "splice/open");
    if (fd < 0) {
        return;
    }
    s0 = xp_loop_spliced_reads(srv->loop);
    ok += raw_read_check(fd, 20, 0, 61440, 61440);
    ok += raw_read_check(fd, 20, 1000, 40000, 40000); /* unaligned */
    ok += raw_read_check(fd, 20, 4096 * 7 + 1, TH_MSIZE, TH_MSIZE - 11);
    tap_ok(ok == 3, "splice/large_reads_right (%d of 3)", ok);
    tap_ok(xp_loop_spliced_reads(srv->loop) - s0 == 3,
           "splice/large_reads_spliced (%lu of 3)",
           xp_loop_spliced_reads(srv->loop) - s0);
    s0 = xp_loop_spliced_reads(srv->loop);
    tap_ok(raw_read_check(fd, 20, SPLICE_FILE_SIZE - 100, 61440, 100),
           "splice/read_at_the_end_is_short");
    tap_ok(raw_read_check(fd, 20, SPLICE_FILE_SIZE, 61440, 0) &&
               raw_read_check(fd, 20, (uint64_t)1 << 40, 61440, 0),
           "splice/read_beyond_the_end_is_empty");
    tap_ok(raw_read_check(fd, 20, 5, 4000, 4000) &&
               xp_loop_spliced_reads(srv->loop) - s0 == 1,
           "splice/small_read_copied (%lu spliced)",
           xp_loop_spliced_reads(srv->loop) - s0);
    close(fd);
    /* the file's node (and its descriptor) stays cached */
    settle();
    fds0 = th_count_fds();

    /*
     * The server's end of this socket takes 8 KiB (the kernel doubles
     * it): a reply does not go out whole; what the socket did not take is
     * read out of the pipe into the output queue.  The client sends one
     * Tread at a time, each when the one before has been staged (so that
     * each arrives alone), and reads no reply until the 24th is sent; then
     * every reply is checked.
     */
    fd = open_spliced(8192);
    tap_ok(fd >= 0, "splice/full_socket_open");
    if (fd < 0) {
        return;
    }
    s0 = xp_loop_spliced_reads(srv->loop);
    for (int i = 0; i < 24; i++) {
        send_tread(fd, 20, (uint64_t)i * 40960, 40960, (uint16_t)(100 + i));
        /* the next goes when this one has been staged, so that each
         * arrives alone however slowly a loaded machine runs the server */
        for (int w = 0; w < 10000 && xp_loop_spliced_reads(srv->loop) - s0 <
                                         (unsigned long)i + 1;
             w++) {
            usleep(1000);
        }
    }
    ok = 0;
    for (int i = 0; i < 24; i++) {
        ok += rread_ok(fd, (uint16_t)(100 + i), (uint64_t)i * 40960, &got) &&
              got == 40960;
    }
    tap_ok(ok == 24, "splice/full_socket_all_replies_right (%d of 24)", ok);
    tap_ok(xp_loop_spliced_reads(srv->loop) - s0 == 24,
           "splice/full_socket_all_spliced (%lu of 24)",
           xp_loop_spliced_reads(srv->loop) - s0);
    tap_ok(raw_read_check(fd, 20, 0, 61440, 61440),
           "splice/full_socket_reads_go_on");
    close(fd);
    /* a client that goes away with replies on their way: the server's
     * splice meets a closed socket (EPIPE), the connection ends */
    fd = open_spliced(8192);
    for (int i = 0; fd >= 0 && i < 8; i++) {
        send_tread(fd, 20, (uint64_t)i * 40960, 40960, (uint16_t)(200 + i));
        usleep(2000);
    }
    if (fd >= 0) {
        close(fd);
    }
    fd = open_spliced(0);
    tap_ok(fd >= 0 && raw_read_check(fd, 20, 4096, 61440, 61440),
           "splice/serves_on_after_a_client_left_mid_reply");
    if (fd >= 0) {
        close(fd);
    }
    settle(); /* the connection threads close their ends and pipes */
    tap_ok(th_count_fds() == fds0,
           "splice/no_descriptor_left (%d before, %d after)", fds0,
           th_count_fds());
}

/*
 * At most read_pipes connections hold a read pipe at once (their pages
 * count against the daemon's user's pipe quota): with the limit at 1, a
 * second connection's large reads are copied, and right; once the first
 * connection is gone, a new one gets the pipe.
 */
/* On a server started with read_pipes = 1 (main). */
static void
test_read_pipes_limit(void)
{
    unsigned long s0;
    bool ok;
    int a;
    int b;
    int c;

    a = open_spliced(0);
    b = open_spliced(0);
    s0 = xp_loop_spliced_reads(srv->loop);
    ok = a >= 0 && raw_read_check(a, 20, 0, 61440, 61440);
    tap_ok(ok && xp_loop_spliced_reads(srv->loop) - s0 == 1,
           "pipes/first_connection_splices (read %s, %lu spliced)",
           ok ? "right" : "wrong", xp_loop_spliced_reads(srv->loop) - s0);
    s0 = xp_loop_spliced_reads(srv->loop);
    tap_ok(b >= 0 && raw_read_check(b, 20, 0, 61440, 61440) &&
               raw_read_check(b, 20, 8192, 40000, 40000) &&
               xp_loop_spliced_reads(srv->loop) == s0,
           "pipes/second_connection_copies_right (%lu spliced)",
           xp_loop_spliced_reads(srv->loop) - s0);
    if (a >= 0) {
        close(a);
    }
    settle(); /* a's connection ends and gives its pipe back */
    tap_ok(xp_loop_read_pipes(srv->loop) == 0,
           "pipes/given_back_when_the_connection_ends (%u held)",
           xp_loop_read_pipes(srv->loop));
    c = open_spliced(0);
    s0 = xp_loop_spliced_reads(srv->loop);
    ok = c >= 0 && raw_read_check(c, 20, 0, 61440, 61440);
    tap_ok(ok && xp_loop_spliced_reads(srv->loop) - s0 == 1,
           "pipes/a_freed_pipe_goes_to_the_next_connection (read %s, %lu "
           "spliced)",
           ok ? "right" : "wrong", xp_loop_spliced_reads(srv->loop) - s0);
    if (b >= 0) {
        close(b);
    }
    if (c >= 0) {
        close(c);
    }
}

/* A Twrite frame of 'len' bytes of pattern() at 'off' (malloc'ed). */
static uint8_t *
twrite_frame(uint32_t fid, uint64_t off, uint32_t len, uint16_t tag,
             size_t *flen)
{
    struct p9_fcall t;
    uint8_t *data = malloc(len);
    uint8_t *frame;

    for (uint32_t i = 0; data != NULL && i < len; i++) {
        data[i] = pattern(off + i);
    }
    memset(&t, 0, sizeof(t));
    t.type = P9_TWRITE;
    t.u.twrite.fid = fid;
    t.u.twrite.offset = off;
    t.u.twrite.data.len = len;
    t.u.twrite.data.ptr = data;
    frame = data == NULL ? NULL : th_frame(&t, tag, flen);
    free(data);
    return frame;
}

/* Frames a then b in one write(), through buf (room for both). */
static bool
write_two(int fd, uint8_t *buf, const uint8_t *a, size_t alen, const uint8_t *b,
          size_t blen)
{
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    return write(fd, buf, alen + blen) == (ssize_t)(alen + blen);
}

/* The next two replies, in any order: an Rwrite for tag w and an Rgetattr
 * for tag g? */
static bool
write_and_getattr_answered(int fd, uint16_t w, uint16_t g)
{
    int got = 0;

    for (int i = 0; i < 2; i++) {
        uint16_t tag;
        int type = raw_reply(fd, 5000, &tag);

        if (type == P9_RWRITE && tag == w) {
            got |= 1;
        } else if (type == P9_RGETATTR && tag == g) {
            got |= 2;
        }
    }
    return got == 3;
}

/* Tlcreate NAME (read-write) under the export root as fid (walked from 1):
 * true when the file was made and fid is open. */
static bool
raw_create_file(int fd, uint32_t fid, const char *name)
{
    struct p9_fcall t;

    if (raw_walk(fd, 1, fid, NULL) < 0) {
        return false;
    }
    memset(&t, 0, sizeof(t));
    t.type = P9_TLCREATE;
    t.u.tlcreate.fid = fid;
    t.u.tlcreate.name = th_str(name);
    t.u.tlcreate.flags = P9_DOTL_RDWR | P9_DOTL_CREATE;
    t.u.tlcreate.mode = 0644;
    t.u.tlcreate.gid = (uint32_t)getgid();
    return raw_rpc(fd, &t, 4) == P9_RLCREATE;
}

/* The file EXDIR/NAME holds exactly len bytes of pattern(). */
static bool
file_holds_pattern(const char *exdir, const char *name, size_t len)
{
    char path[PATH_MAX];
    uint8_t *buf = malloc(len + 1);
    int hf;
    bool same;

    snprintf(path, sizeof(path), "%s/%s", exdir, name);
    hf = open(path, O_RDONLY | O_CLOEXEC);
    same = buf != NULL && hf >= 0 && read(hf, buf, len + 1) == (ssize_t)len;
    for (size_t i = 0; same && i < len; i++) {
        same = buf[i] == pattern(i);
    }
    if (hf >= 0) {
        close(hf);
    }
    free(buf);
    return same;
}

/*
 * A large frame that starts the staging buffer (a Twrite) takes that
 * buffer over instead of being copied out of it; what came after it in
 * the same read moves to a new one.  Three shapes, in one write() each: a
 * Twrite alone, a Twrite followed by a Tgetattr (the rest moves), and a
 * Tgetattr followed by a Twrite (copied out, as before).  The file must
 * hold every byte.
 */
static void
test_write_handover(const char *exdir)
{
    uint8_t *buf = malloc(3 * 60000);
    uint8_t *f[2];
    size_t len[2];
    int fd = raw_conn();
    struct p9_fcall t;

    if (fd < 0 || buf == NULL) {
        tap_ok(false, "handover/connect");
        free(buf);
        return;
    }
    tap_ok(raw_create_file(fd, 21, "written"), "handover/create");
    f[0] = twrite_frame(21, 0, 60000, 30, &len[0]);
    tap_ok(f[0] != NULL && write(fd, f[0], len[0]) == (ssize_t)len[0] &&
               raw_reply(fd, 5000, &(uint16_t){0}) == P9_RWRITE,
           "handover/twrite_alone");
    free(f[0]);
    /* a Twrite, then a Tgetattr, in one write */
    f[0] = twrite_frame(21, 60000, 60000, 31, &len[0]);
    memset(&t, 0, sizeof(t));
    t.type = P9_TGETATTR;
    t.u.tgetattr.fid = 1;
    t.u.tgetattr.request_mask = P9_GETATTR_BASIC;
    f[1] = th_frame(&t, 32, &len[1]);
    tap_ok(write_two(fd, buf, f[0], len[0], f[1], len[1]) &&
               write_and_getattr_answered(fd, 31, 32),
           "handover/twrite_then_tgetattr_answered");
    free(f[0]);
    /* a Tgetattr, then a Twrite */
    f[0] = twrite_frame(21, 120000, 60000, 34, &len[0]);
    tap_ok(write_two(fd, buf, f[1], len[1], f[0], len[0]) &&
               write_and_getattr_answered(fd, 34, 32),
           "handover/tgetattr_then_twrite_answered");
    free(f[0]);
    free(f[1]);
    raw_clunk(fd, 21);
    close(fd);
    tap_ok(file_holds_pattern(exdir, "written", 3 * 60000),
           "handover/file_holds_every_byte");
    free(buf);
}

static double
cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/*
 * --busy-poll 1000: requests are still answered one by one, and an idle
 * connection stops spinning (one window that catches nothing, then
 * poll() sleeps): the process uses well under 10 % of a core while idle.
 */
static void
test_busy_poll(int fd)
{
    const int n = 400;
    double c0;
    double c1;
    unsigned long spins0 = xp_loop_busy_polls(srv->loop);
    uint64_t t0;
    int ok = 0;
    int i;

    /* at least 200 ms: a connection spins only after 10 ms alone */
    t0 = th_now_ms();
    for (i = 0; i < n || th_now_ms() - t0 < 200; i++) {
        ok += raw_getattr(fd, 1) == P9_RGETATTR;
    }
    tap_ok(ok == i, "busypoll/getattr_replies (%d of %d)", ok, i);
    tap_ok(xp_loop_busy_polls(srv->loop) > spins0,
           "busypoll/one_connection_spins (%lu spins for %d requests)",
           xp_loop_busy_polls(srv->loop) - spins0, i);
    tap_diag("busy-poll 1000 us: %.1f us per Tgetattr",
             (double)(th_now_ms() - t0) * 1e3 / i);
    c0 = cpu_seconds();
    usleep(300000);
    c1 = cpu_seconds();
    tap_ok(c1 - c0 < 0.030,
           "busypoll/idle_connection_stops_spinning (%.1f ms of CPU in "
           "300 ms idle)",
           (c1 - c0) * 1e3);
    tap_ok(raw_getattr(fd, 1) == P9_RGETATTR, "busypoll/answers_after_idle");

    /* A request every 20 ms: longer than the window, so spinning would
     * catch none; the thread must stop spinning after the first miss
     * (30 spins of 1 ms would be 30 ms of CPU on top of the requests'
     * own, within the budget of 10 % of the 600 ms). */
    ok = 0;
    c0 = cpu_seconds();
    for (i = 0; i < 30; i++) {
        usleep(20000);
        ok += raw_getattr(fd, 1) == P9_RGETATTR;
    }
    c1 = cpu_seconds();
    tap_ok(ok == 30 && c1 - c0 < 0.020,
           "busypoll/slow_requests_no_spinning (%d replies, %.1f ms of CPU "
           "for 30 requests 20 ms apart)",
           ok, (c1 - c0) * 1e3);
}

/* Write len bytes of p in pieces of 'piece' bytes, 'gap_us' apart. */
static bool
write_pieces(int fd, const uint8_t *p, size_t len, size_t piece, int gap_us)
{
    for (size_t off = 0; off < len; off += piece) {
        size_t k = len - off < piece ? len - off : piece;

        if (off > 0) {
            usleep((useconds_t)gap_us);
        }
        if (write(fd, p + off, k) != (ssize_t)k) {
            return false;
        }
    }
    return true;
}

/*
 * --busy-poll 1000: the spinning thread reads the connection itself, so
 * what it catches is whatever has arrived: part of a frame, the rest of
 * one, a frame and part of a large one.  Pieces 100 us apart (well within
 * the window) must all add up to the right requests, a large Twrite's
 * bytes must all reach the file, and a client that goes away while the
 * thread spins must have its connection closed (the thread reads the end
 * of the stream in the spin).
 */
static void
test_spin_reads(int fd, const char *exdir)
{
    unsigned long spins0 = xp_loop_busy_polls(srv->loop);
    struct p9_fcall t;
    uint8_t *g;
    uint8_t *w;
    uint8_t *both;
    size_t glen;
    size_t wlen;
    int ok = 0;
    int fds0;
    uint64_t t0;

    memset(&t, 0, sizeof(t));
    t.type = P9_TGETATTR;
    t.u.tgetattr.fid = 1;
    t.u.tgetattr.request_mask = P9_GETATTR_BASIC;
    g = th_frame(&t, 7, &glen);
    for (int i = 0; g != NULL && i < 50; i++) {
        uint16_t tag = 0;

        /* size and half the header, the rest of the header, the body */
        ok += write_pieces(fd, g, glen, 6, 100) &&
              raw_reply(fd, 5000, &tag) == P9_RGETATTR && tag == 7;
    }
    tap_ok(ok == 50, "spin/getattr_in_pieces (%d of 50 answered)", ok);

    /* a Tgetattr and the first 10 KiB of a 60,000-byte Twrite together
     * (the rest of the Twrite goes to its own buffer), then the rest in
     * 7 KiB pieces */
    ok = raw_create_file(fd, 41, "spun");
    w = twrite_frame(41, 0, 60000, 42, &wlen);
    both = malloc(glen + (w != NULL ? wlen : 0));
    if (ok && g != NULL && w != NULL && both != NULL) {
        memcpy(both, g, glen);
        memcpy(both + glen, w, wlen);
        ok = write(fd, both, glen + 10240) == (ssize_t)(glen + 10240) &&
             write_pieces(fd, both + glen + 10240, wlen - 10240, 7 * 1024,
                          100) &&
             write_and_getattr_answered(fd, 42, 7);
    } else {
        ok = 0;
    }
    tap_ok(ok, "spin/getattr_and_twrite_in_pieces_answered");
    raw_clunk(fd, 41);
    tap_ok(file_holds_pattern(exdir, "spun", 60000),
           "spin/file_holds_every_byte");
    tap_ok(xp_loop_busy_polls(srv->loop) > spins0, "spin/spun (%lu spins)",
           xp_loop_busy_polls(srv->loop) - spins0);

    /* the client leaves right after a reply, while the thread spins: its
     * socket and wake-up descriptor close (the client's end, too: 3) */
    ok = 0;
    for (int i = 0; i < 20; i++) {
        uint16_t tag = 0;

        ok += write(fd, g, glen) == (ssize_t)glen &&
              raw_reply(fd, 5000, &tag) == P9_RGETATTR;
    }
    fds0 = th_count_fds();
    close(fd);
    t0 = th_now_ms();
    while (th_count_fds() > fds0 - 3 && th_now_ms() - t0 < 5000) {
        usleep(1000);
    }
    tap_ok(ok == 20 && th_count_fds() <= fds0 - 3,
           "spin/client_gone_connection_closed (%d descriptors, then %d, "
           "in %llu ms)",
           fds0, th_count_fds(), (unsigned long long)(th_now_ms() - t0));
    free(g);
    free(w);
    free(both);
}

struct spin_client {
    pthread_t th;
    int fd;
    int n;
    int ok;
};

static void *
spin_client_main(void *arg)
{
    struct spin_client *sc = arg;

    for (int i = 0; i < sc->n; i++) {
        sc->ok += raw_getattr(sc->fd, 1) == P9_RGETATTR;
    }
    return NULL;
}

/*
 * Connections that take turns: every request answered, and (almost) no
 * spinning -- a thread spins only while its connection has been the only
 * one sending for 10 ms, so four closed loops at once keep every thread
 * asleep between requests, as without --busy-poll.  A few spins may come
 * before the loops interleave.  (On a loaded 2-core machine the rule that
 * a request must come within the window stops most of these spins by
 * itself, so this checks the behaviour, not that one rule; the rules are
 * measured in bench/README.md.)
 */
static void
test_busy_poll_shared(void)
{
    struct spin_client sc[4];
    unsigned long spins0 = xp_loop_busy_polls(srv->loop);
    unsigned long spins;
    int ok = 0;
    int want = 0;

    for (int i = 0; i < 4; i++) {
        sc[i].fd = raw_conn();
        sc[i].n = 500;
        sc[i].ok = 0;
    }
    for (int i = 0; i < 4; i++) {
        if (sc[i].fd >= 0) {
            pthread_create(&sc[i].th, NULL, spin_client_main, &sc[i]);
        }
    }
    for (int i = 0; i < 4; i++) {
        if (sc[i].fd >= 0) {
            pthread_join(sc[i].th, NULL);
            close(sc[i].fd);
            ok += sc[i].ok;
            want += sc[i].n;
        }
    }
    spins = xp_loop_busy_polls(srv->loop) - spins0;
    tap_ok(want == 2000 && ok == want,
           "busypoll/shared_all_answered (%d of %d)", ok, want);
    tap_ok(spins <= 100,
           "busypoll/shared_connections_do_not_spin (%lu spins for %d "
           "requests)",
           spins, want);
}

int
main(int argc, char **argv)
{
    static const struct xp_limits pipes_lim = {
        .frame_timeout = XP_DEFAULT_FRAME_TIMEOUT, .read_pipes = 1};
    static const struct xp_limits bp_lim = {
        .frame_timeout = XP_DEFAULT_FRAME_TIMEOUT, .busy_poll_us = 1000};
    struct th_export ex;
    char exdir[PATH_MAX];
    char *base;
    int fd;
    int err;

    (void)argc;
    (void)argv;
    tap_diag("server: in-process");
    th_wrap_backend = rec_backend;
    base = th_mkdtemp("hotpath");
    snprintf(exdir, sizeof(exdir), "%s/ex", base);
    mkdir(exdir, 0755);
    ex = (struct th_export){NULL, exdir, false};
    srv = th_start(NULL, &ex, 1, NULL);
    fd = raw_conn();
    tap_ok(fd >= 0, "hotpath/connect");
    if (fd >= 0) {
        test_one_read_per_request(fd);
        test_lcreate_routing(fd);
        test_lopen_routing(fd, exdir);
        test_open_repeated(fd);
        close(fd);
    }
    test_read_spliced(exdir);
    test_write_handover(exdir);
    err = th_stop(srv);
    tap_ok(err == 0, "server/clean_stop (%d)", err);

    /* one read pipe for the whole server */
    th_loop_limits = &pipes_lim;
    srv = th_start(NULL, &ex, 1, NULL);
    test_read_pipes_limit();
    err = th_stop(srv);
    tap_ok(err == 0, "pipes/clean_stop (%d)", err);

    /* a second server with --busy-poll 1000 (set before any connection) */
    th_loop_limits = &bp_lim;
    srv = th_start(NULL, &ex, 1, NULL);
    fd = raw_conn();
    tap_ok(fd >= 0, "busypoll/connect");
    if (fd >= 0) {
        test_busy_poll(fd);
        test_spin_reads(fd, exdir); /* closes fd */
    }
    err = th_stop(srv);
    tap_ok(err == 0, "busypoll/clean_stop (%d)", err);

    /* a third: several connections at once */
    srv = th_start(NULL, &ex, 1, NULL);
    test_busy_poll_shared();
    err = th_stop(srv);
    tap_ok(err == 0, "busypoll/shared_clean_stop (%d)", err);
    th_rmtree(base);
    free(base);
    return tap_done();
}
