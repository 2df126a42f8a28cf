/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: a hostile session against a whole server.
 *
 * Each input is a small program.  Its instructions become 9P2000.L
 * T-messages (encoded with the codec, fields drawn from the input: small
 * fid and tag numbers so they collide, names from a dictionary that holds
 * "..", "", names with '/' and over-long ones), raw frames and mutated
 * frames, Tflush of earlier tags, tag reuse, and "repeat the next
 * instruction N times" (e.g. a chain of 2000 Tflush, each flushing the
 * one before).  They are submitted to one server connection through a test
 * transport (p9s_conn_ops), so requests run concurrently on the worker
 * pool while the program goes on.  The test transport also takes the data
 * of large Rreads from a lent descriptor (stage_fd, as the stream
 * transport's splice does; one in three refused, so the fallback runs).  The export is the in-memory synth
 * backend with a small tree (or, by a header bit, a temporary directory
 * through the passthrough backend).  Opening the FIFO "fifo" waits until
 * the program releases it (SYNC / RELEASE / end): a deterministic slow
 * request to flush.
 *
 * Checked, abort() on failure (the fuzzer reports it):
 *   - every reply decodes, carries the request's tag, is the matching
 *     R-type or Rlerror (errno 1..4095), fits the reply space (a staged
 *     reply: its header does, and it is an Rread of exactly the staged
 *     bytes); Rread and
 *     Rreaddir data is no longer than asked for, Rreaddir data is whole
 *     dirents, Rwalk has no more qids than names;
 *   - exactly one send() or drop() per submitted message, and drop() only
 *     for a message some Tflush named, a closing session, or a submit the
 *     server refused;
 *   - Rflush only after the flushed request's reply;
 *   - no hang: all replies within FUZZ_SESSION_TIMEOUT_MS (default 10 s),
 *     and release() after close;
 *   - after the session: no backend node, handle or user reference left
 *     (synth counters), no descriptor left (passthrough), and LeakSanitizer
 *     for memory.
 *
 * Program format (tests/fuzz/gen_session_corpus.py writes seeds):
 *   byte 0: flags  0x01 passthrough export   0x02 short reply buffers
 *                  0x04 split frames in 3 segments   0x08 submit inline
 *                  when nothing is in flight   0x10 no preamble (default:
 *                  Tversion + Tattach fid 0 first)   0x20 reply_buf fails
 *                  for every 13th message
 *   then instructions: op[1] args...; op & 0x80: a tag byte follows
 *   (0xff = NOTAG, else tag & 0x0f); otherwise tags count up from 16.
 *   `gen_session_corpus.py --dump FILE` prints a program.
 *
 * Environment: FUZZ_SESSION_TIMEOUT_MS (hang limit, default 10000),
 * FUZZ_SESSION_MAX_REPEAT (cap on REPEAT counts, default 4000: lower it to
 * fuzz past a known crash that needs long chains), FUZZ_SESSION_TRACE
 * (one line per reply), FUZZ_SESSION_VERBOSE (server debug log).
 *
 * A long run that survives crashes (new inputs go to the first directory):
 *   build-fuzz/tests/fuzz/fuzz_session -fork=1 -ignore_crashes=1 \
 *       -max_total_time=3600 -artifact_prefix=/tmp/art/ /tmp/corpus
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/synth/synth.h"
#include "proto/p9_codec.h"
#include "support/fs.h"
#include "util/log.h"
#include "virtfs/backend.h"
#include "virtfs/p9.h"
#include "virtfs/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

#define FZ_MSIZE 65536u
#define FZ_MAX_MSGS 20000  /* per program, repeats included */
#define FZ_MAX_REPEAT 4000 /* INFLIGHT_MAX in the core is 4096 */
#define FZ_MAX_STEPS 20000 /* instructions per program, repeats included */
#define FZ_NFIDS 8
#define FZ_SETTLE_MS 2000 /* per program, for all its SETTLEs */
#define FZ_TAG_AUTO0 16

#define FZ_PASSTHROUGH 0x01
#define FZ_SHORT_REPLY 0x02
#define FZ_SPLIT 0x04
#define FZ_INLINE 0x08
#define FZ_NO_PREAMBLE 0x10
#define FZ_RBUF_FAIL 0x20

#define FZ_DIE(...)                                    \
    do {                                               \
        fprintf(stderr, "fuzz_session: " __VA_ARGS__); \
        fprintf(stderr, "\n");                         \
        abort();                                       \
    } while (0)

enum {
    OP_VERSION,
    OP_ATTACH,
    OP_WALK,
    OP_LOPEN,
    OP_LCREATE,
    OP_READ,
    OP_WRITE,
    OP_CLUNK,
    OP_REMOVE,
    OP_GETATTR,
    OP_SETATTR,
    OP_READDIR,
    OP_MKDIR,
    OP_SYMLINK,
    OP_MKNOD,
    OP_LINK,
    OP_RENAME,
    OP_RENAMEAT,
    OP_UNLINKAT,
    OP_XATTRWALK,
    OP_XATTRCREATE,
    OP_LOCK,
    OP_GETLOCK,
    OP_FSYNC,
    OP_STATFS,
    OP_READLINK,
    OP_FLUSH,
    OP_RAW,
    OP_MUTATE,
    OP_REPEAT,
    OP_SYNC,
    OP_RELEASE,
    OP_CLOSE,
    OP_SETTLE,
    OP_COUNT
};

enum msg_state { M_PENDING, M_SENT, M_DROPPED };

struct fz_msg {
    uint8_t *frame;
    size_t len;
    struct iovec iov[3];
    int iovcnt;
    uint8_t type;
    uint16_t tag;
    uint32_t count;        /* Tread/Treaddir: asked for */
    struct fz_msg *target; /* Tflush: the one pending message it names */
    bool flush_named;      /* a Tflush named it while pending */
    bool may_drop;         /* reply_buf refused, or the submit failed */
    enum msg_state state;
    uint8_t *reply;
    struct iovec riov;
    bool have_reply_buf;
    uint8_t *staged; /* what stage_fd took (the tail of an Rread) */
    size_t nstaged;
};

struct fz_sess {
    pthread_mutex_t m;
    pthread_cond_t cv;
    struct fz_msg **msgs;
    size_t nmsgs;
    unsigned pending;
    bool closing;
    bool released;
    unsigned flags;
    struct fz_msg *in_submit;
    uint32_t msize; /* last Rversion, for sizing writes */
};

/* ---- the input cursor ----------------------------------------------------- */

struct fz_in {
    const uint8_t *p;
    size_t n;
    bool eof;
};

static uint8_t
in8(struct fz_in *in)
{
    if (in->n == 0) {
        in->eof = true;
        return 0;
    }
    in->n--;
    return *in->p++;
}

static uint16_t
in16(struct fz_in *in)
{
    uint16_t v = in8(in);

    return (uint16_t)(v | in8(in) << 8);
}

static uint32_t
in32(struct fz_in *in)
{
    uint32_t v = in16(in);

    return v | (uint32_t)in16(in) << 16;
}

/* ---- the slow FIFO: a backend wrapper ---------------------------------------- */

static struct be_ops gate_ops;
static const struct be_ops *gate_orig;
static pthread_mutex_t gate_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int gate_waiting; /* requests held at the gate now */

static void
gate_set(bool open)
{
    pthread_mutex_lock(&gate_m);
    gate_open = open;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_m);
}

/* Opening a FIFO waits for the program (a writer that comes late); a
 * condition variable, so the core's SIGURG does not cut it short: the
 * request stays slow however it is flushed.  Not an open with O_DIRECTORY:
 * a real backend answers ENOTDIR at once for a FIFO (open(2) checks
 * before it waits), and the server runs those opens on the connection's
 * own thread, which here is the program's (held, it would wait for
 * itself).  For the same reason, an open tried there without waiting
 * (BE_OPEN_NOWAIT) gives up, as a real backend does. */
static int
gate_open_op(struct backend *be, struct be_node *n, uint32_t flags,
             struct be_handle **out, struct p9_qid *qid, uint32_t *iounit)
{
    struct p9_rgetattr a;

    if (!(flags & P9_DOTL_DIRECTORY) &&
        gate_orig->getattr(be, n, NULL, P9_GETATTR_MODE, &a) == 0 &&
        S_ISFIFO(a.mode)) {
        pthread_mutex_lock(&gate_m);
        if (!gate_open && (flags & BE_OPEN_NOWAIT)) {
            /* tried on the connection's thread: this open would wait */
            pthread_mutex_unlock(&gate_m);
            return -EAGAIN;
        }
        gate_waiting++;
        while (!gate_open) {
            pthread_cond_wait(&gate_cv, &gate_m);
        }
        gate_waiting--;
        pthread_mutex_unlock(&gate_m);
    }
    return gate_orig->open(be, n, flags, out, qid, iounit);
}

/*
 * On a real directory (passthrough mode, maybe as root) no device node is
 * made: a bug elsewhere must not turn the fuzzer into a writer of
 * /dev/sda.  The synth backend keeps them as attributes and gets them.
 */
static int
gate_mknod_op(struct backend *be, struct be_node *dir, const char *name,
              uint32_t mode, uint32_t major, uint32_t minor, uint32_t gid,
              struct p9_qid *qid)
{
    if (S_ISCHR(mode) || S_ISBLK(mode)) {
        return -EPERM;
    }
    return gate_orig->mknod(be, dir, name, mode, major, minor, gid, qid);
}

static void
gate_wrap(struct backend *be, bool real_dir)
{
    gate_orig = be->ops;
    gate_ops = *be->ops;
    gate_ops.open = gate_open_op;
    if (real_dir) {
        gate_ops.mknod = gate_mknod_op;
    }
    be->ops = &gate_ops;
}

/* ---- the transport ------------------------------------------------------------- */

/* The session of the program running now (one at a time). */
static struct fz_sess *fz_cur;

static struct fz_sess *
sess_of(struct p9s_conn *c)
{
    (void)c;
    return fz_cur;
}

static int
tp_reply_buf(struct p9s_conn *c, void *cookie, size_t need,
             const struct iovec **iov, int *iovcnt)
{
    struct fz_sess *s = sess_of(c);
    struct fz_msg *m = cookie;
    size_t cap = need;
    int err = 0;

    pthread_mutex_lock(&s->m);
    if (m->state != M_PENDING) {
        FZ_DIE("reply_buf for a finished message (tag %u)", m->tag);
    }
    if ((s->flags & FZ_RBUF_FAIL) && (m->len % 13) == 12) {
        m->may_drop = true;
        err = -ENOBUFS;
        goto out;
    }
    if ((s->flags & FZ_SHORT_REPLY) && cap > 11) {
        cap = 11 + (cap - 11) / 3; /* room for an Rlerror at least */
    }
    if (m->have_reply_buf) {
        free(m->reply); /* asked again: allowed, the last one counts */
    }
    m->reply = malloc(cap ? cap : 1);
    if (m->reply == NULL) {
        FZ_DIE("out of memory");
    }
    m->riov.iov_base = m->reply;
    m->riov.iov_len = cap;
    m->have_reply_buf = true;
    *iov = &m->riov;
    *iovcnt = 1;

out:
    pthread_mutex_unlock(&s->m);
    return err;
}

/*
 * conn ops stage_fd: take the data of a large Rread from the lent
 * descriptor, as the stream transport's splice does, but with pread into a
 * buffer of the message's; one request in three is refused (-ENOTSUP) so
 * that the core's fallback to read runs too.
 */
static ssize_t
tp_stage_fd(struct p9s_conn *c, void *cookie, int fd, uint64_t off,
            size_t count)
{
    struct fz_sess *s = sess_of(c);
    struct fz_msg *m = cookie;
    ssize_t n;

    pthread_mutex_lock(&s->m);
    if (m->state != M_PENDING || m->staged != NULL) {
        FZ_DIE("stage_fd for a finished or already staged message (tag %u)",
               m->tag);
    }
    if (m->type != P9_TREAD || count > m->count) {
        FZ_DIE("stage_fd of %zu bytes for type %u (%u asked)", count, m->type,
               m->count);
    }
    pthread_mutex_unlock(&s->m);
    if (m->len % 3 == 0) {
        return -ENOTSUP;
    }
    m->staged = malloc(count ? count : 1);
    if (m->staged == NULL) {
        FZ_DIE("out of memory");
    }
    n = pread(fd, m->staged, count, (off_t)off);
    if (n < 0) {
        n = -errno;
        free(m->staged);
        m->staged = NULL;
        return n;
    }
    m->nstaged = (size_t)n;
    if (getenv("FUZZ_SESSION_TRACE") != NULL) {
        fprintf(stderr, "  tag %u: %zd bytes staged\n", m->tag, n);
    }
    return n;
}

/* Rreaddir data is a whole number of well-formed dirents. */
static void
check_dirents(const struct p9_data *d)
{
    struct iovec v[4];
    struct p9_rbuf b;
    int n = p9_data_iov(d, v, 4);

    if (n < 0) {
        FZ_DIE("Rreaddir data not addressable");
    }
    p9_rbuf_init(&b, v, n, d->len, NULL, 0);
    while (b.left > 0 && !b.bad) {
        struct p9_dirent de;

        p9_get_dirent(&b, &de);
        if (!b.bad && de.name.len == 0) {
            FZ_DIE("Rreaddir entry with an empty name");
        }
    }
    if (b.bad) {
        FZ_DIE("Rreaddir data is not a sequence of dirents");
    }
}

static void
check_reply(struct fz_sess *s, struct fz_msg *m, size_t len)
{
    struct p9_fcall f;
    struct p9_rbuf b;
    struct iovec one;
    int err;

    uint8_t *whole = m->reply;

    if (m->staged != NULL && m->nstaged > 0 && len > m->nstaged) {
        /* the header in the reply space, then the staged data */
        size_t hdr = len - m->nstaged;

        if (!m->have_reply_buf || hdr > m->riov.iov_len) {
            FZ_DIE("staged send of %zu bytes without header space (tag %u)",
                   len, m->tag);
        }
        whole = malloc(len);
        if (whole == NULL) {
            FZ_DIE("out of memory");
        }
        memcpy(whole, m->reply, hdr);
        memcpy(whole + hdr, m->staged, m->nstaged);
    } else if (!m->have_reply_buf || len > m->riov.iov_len) {
        FZ_DIE("send of %zu bytes without reply space (tag %u)", len, m->tag);
    }
    memset(&f, 0, sizeof(f));
    p9_rbuf_init_flat(&b, &one, whole, len);
    err = p9_decode(&b, len, &f);
    if (whole != m->reply) {
        /* decoded views point into 'whole': check the sizes before it goes */
        if (err == 0 &&
            (f.type != P9_RREAD || f.u.rread.data.len != m->nstaged)) {
            FZ_DIE("staged reply is not an Rread of the %zu staged bytes",
                   m->nstaged);
        }
        free(whole);
        whole = NULL;
        f.u.rread.data.ptr = NULL;
        f.u.rread.data.iov = NULL;
    }
    if (err < 0) {
        FZ_DIE("reply to type %u tag %u does not decode (%d)", m->type, m->tag,
               err);
    }
    if (f.tag != m->tag) {
        FZ_DIE("reply tag %u for a request with tag %u", f.tag, m->tag);
    }
    if (f.type != P9_RLERROR && f.type != (uint8_t)(m->type + 1)) {
        FZ_DIE("reply type %u to request type %u", f.type, m->type);
    }
    if (f.type == P9_RLERROR &&
        (f.u.rlerror.ecode == 0 || f.u.rlerror.ecode > 4095)) {
        FZ_DIE("Rlerror with errno %u (type %u tag %u)", f.u.rlerror.ecode,
               m->type, m->tag);
    }
    if (f.type == P9_RREAD && f.u.rread.data.len > m->count) {
        FZ_DIE("Rread of %u bytes, %u asked", f.u.rread.data.len, m->count);
    }
    if (f.type == P9_RREADDIR && f.u.rreaddir.data.len > m->count) {
        FZ_DIE("Rreaddir of %u bytes, %u asked", f.u.rreaddir.data.len,
               m->count);
    }
    if (f.type == P9_RREADDIR) {
        check_dirents(&f.u.rreaddir.data);
    }
    if (f.type == P9_RWALK && f.u.rwalk.nwqid > m->count) {
        FZ_DIE("Rwalk with %u qids for %u names", f.u.rwalk.nwqid, m->count);
    }
    if (getenv("FUZZ_SESSION_TRACE") != NULL) {
        fprintf(stderr, "  type %u tag %u -> %s%s%u\n", m->type, m->tag,
                p9_type_name(f.type) ? p9_type_name(f.type) : "?",
                f.type == P9_RLERROR ? " errno " : " len ",
                f.type == P9_RLERROR ? f.u.rlerror.ecode : (unsigned)len);
    }
    if (f.type == P9_RVERSION) {
        s->msize = f.u.rversion.msize;
    }
    if (f.type == P9_RFLUSH && m->target != NULL &&
        m->target->state == M_PENDING) {
        FZ_DIE("Rflush (tag %u) before the reply of the flushed tag %u", m->tag,
               m->target->tag);
    }
}

static void
tp_send(struct p9s_conn *c, void *cookie, size_t len)
{
    struct fz_sess *s = sess_of(c);
    struct fz_msg *m = cookie;

    pthread_mutex_lock(&s->m);
    if (m->state != M_PENDING) {
        FZ_DIE("second completion (send) for tag %u", m->tag);
    }
    check_reply(s, m, len);
    m->state = M_SENT;
    s->pending--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->m);
}

static void
tp_drop(struct p9s_conn *c, void *cookie)
{
    struct fz_sess *s = sess_of(c);
    struct fz_msg *m = cookie;

    pthread_mutex_lock(&s->m);
    if (m->state != M_PENDING) {
        FZ_DIE("second completion (drop) for tag %u", m->tag);
    }
    if (!m->flush_named && !s->closing && !m->may_drop && s->in_submit != m) {
        FZ_DIE("reply to type %u tag %u dropped, but nobody flushed it",
               m->type, m->tag);
    }
    m->state = M_DROPPED;
    s->pending--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->m);
}

static void
tp_release(struct p9s_conn *c, void *tp)
{
    struct fz_sess *s = tp;

    (void)c;
    pthread_mutex_lock(&s->m);
    if (s->released) {
        FZ_DIE("release called twice");
    }
    s->released = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->m);
}

static const struct p9s_conn_ops tp_ops = {
    .reply_buf = tp_reply_buf,
    .send = tp_send,
    .stage_fd = tp_stage_fd,
    .drop = tp_drop,
    .release = tp_release,
};

static long
timeout_ms(void)
{
    const char *e = getenv("FUZZ_SESSION_TIMEOUT_MS");

    return e != NULL ? atol(e) : 10000;
}

static void
deadline(struct timespec *ts)
{
    long ms = timeout_ms();

    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Wait until nothing is pending (or, with 'release', until released). */
static void
wait_idle(struct fz_sess *s, bool release)
{
    struct timespec ts;

    deadline(&ts);
    pthread_mutex_lock(&s->m);
    while (release ? !s->released : s->pending > 0) {
        if (pthread_cond_timedwait(&s->cv, &s->m, &ts) == ETIMEDOUT) {
            for (size_t i = 0; i < s->nmsgs; i++) {
                if (s->msgs[i]->state == M_PENDING) {
                    fprintf(stderr, "  pending: #%zu type %u tag %u\n", i,
                            s->msgs[i]->type, s->msgs[i]->tag);
                }
            }
            FZ_DIE("hang: %u replies missing after %ld ms%s", s->pending,
                   timeout_ms(), release ? " (waiting for release)" : "");
        }
    }
    pthread_mutex_unlock(&s->m);
}

/* ---- building messages ------------------------------------------------------------ */

struct fz_prog {
    struct fz_sess *s;
    struct p9s_conn *conn;
    uint16_t next_tag;
    bool dead;          /* the session was closed */
    bool in_repeat;     /* REPEAT does not nest */
    unsigned steps;     /* instructions run, repeats included */
    unsigned settle_ms; /* SETTLE waiting left for this program */
    uint8_t last[512];  /* last encoded frame (for MUTATE), truncated */
    size_t last_len;
};

static const char *const names[] = {
    "d", "f", "l",   "fifo", "new", "x",  "y",        "..",
    ".", "",  "a/b", "e",    "dev", "d2", "\x01\xff", NULL /* the long one */,
};
#define NNAMES (sizeof(names) / sizeof(names[0]))

static struct p9_str
pick_name(struct fz_in *in)
{
    static char longname[300];
    struct p9_str s;
    unsigned i = in8(in) % NNAMES;

    if (names[i] == NULL) {
        memset(longname, 'n', sizeof(longname));
        s.s = longname;
        s.len = sizeof(longname);
        return s;
    }
    s.s = names[i];
    s.len = (uint16_t)strlen(names[i]);
    return s;
}

static uint32_t
pick_fid(struct fz_in *in)
{
    uint8_t b = in8(in);

    if (b == 0xff) {
        return P9_NOFID;
    }
    return b >= 0xf0 ? 1000u + b : b % FZ_NFIDS;
}

static uint64_t
pick_u64(struct fz_in *in, const uint64_t *tab, size_t n)
{
    uint8_t b = in8(in);

    return b < n ? tab[b] : tab[b % n] + (b / n);
}

static struct fz_msg *
msg_new(size_t len)
{
    struct fz_msg *m = calloc(1, sizeof(*m));

    if (m == NULL || (m->frame = malloc(len ? len : 1)) == NULL) {
        FZ_DIE("out of memory");
    }
    m->len = len;
    return m;
}

/* Split the frame into up to three exactly sized segments (ASan sees
 * any read across a segment end). */
static void
msg_segments(struct fz_sess *s, struct fz_msg *m, struct fz_in *in)
{
    if ((s->flags & FZ_SPLIT) && m->len >= 2) {
        size_t c1 = 1 + in8(in) % (m->len - 1);
        size_t c2 = c1 + in8(in) % (m->len - c1 + 1);
        size_t cut[4] = {0, c1, c2, m->len};
        uint8_t *whole = m->frame;
        int k = 0;

        for (int i = 0; i < 3; i++) {
            size_t l = cut[i + 1] - cut[i];

            if (l == 0) {
                continue;
            }
            m->iov[k].iov_base = malloc(l);
            memcpy(m->iov[k].iov_base, whole + cut[i], l);
            m->iov[k].iov_len = l;
            k++;
        }
        m->iovcnt = k;
        free(whole);
        m->frame = NULL;
        return;
    }
    m->iov[0].iov_base = m->frame;
    m->iov[0].iov_len = m->len;
    m->iovcnt = 1;
}

static void
msg_free(struct fz_msg *m)
{
    if (m->frame == NULL) {
        for (int i = 0; i < m->iovcnt; i++) {
            free(m->iov[i].iov_base);
        }
    }
    free(m->frame);
    free(m->reply);
    free(m->staged);
    free(m);
}

/* Submit m; on a refused submit close the session as a transport must. */
static void
submit(struct fz_prog *pg, struct fz_msg *m, struct fz_in *in)
{
    struct fz_sess *s = pg->s;
    unsigned flags = 0;
    int rc;

    if (pg->dead || s->nmsgs >= FZ_MAX_MSGS) {
        msg_free(m);
        pg->dead = true;
        return;
    }
    msg_segments(s, m, in);
    pthread_mutex_lock(&s->m);
    if ((s->flags & FZ_INLINE) && s->pending == 0) {
        flags = P9S_SUBMIT_INLINE; /* honest: nothing else in flight */
    }
    s->msgs[s->nmsgs++] = m;
    s->pending++;
    s->in_submit = m;
    pthread_mutex_unlock(&s->m);

    rc = flags == 0 ? p9s_conn_submit(pg->conn, m->iov, m->iovcnt, m->len, m)
                    : p9s_conn_submit_flags(pg->conn, m->iov, m->iovcnt, m->len,
                                            m, flags);

    pthread_mutex_lock(&s->m);
    s->in_submit = NULL;
    if (rc < 0 && m->state == M_PENDING) {
        FZ_DIE("submit refused (%d) without drop()", rc);
    }
    if (rc < 0) {
        s->closing = true;
    }
    pthread_mutex_unlock(&s->m);
    if (rc < 0) {
        p9s_conn_close(pg->conn);
        pg->dead = true;
    }
}

static uint16_t
take_tag(struct fz_prog *pg, uint8_t op, struct fz_in *in)
{
    if (op & 0x80) {
        uint8_t b = in8(in);

        return b == 0xff ? P9_NOTAG : b & 0x0f;
    }
    if (pg->next_tag == P9_NOTAG || pg->next_tag < FZ_TAG_AUTO0) {
        pg->next_tag = FZ_TAG_AUTO0;
    }
    return pg->next_tag++;
}

/* Encode f and submit it ('target': what a Tflush names). */
static void
send_fcall(struct fz_prog *pg, struct p9_fcall *f, struct fz_in *in,
           struct fz_msg *target)
{
    size_t len = p9_encoded_size(f);
    struct fz_msg *m;
    struct p9_wbuf w;
    struct iovec o;

    if (len == 0) {
        return; /* not encodable (e.g. a string over 65535) */
    }
    m = msg_new(len);
    o.iov_base = m->frame;
    o.iov_len = len;
    p9_wbuf_init(&w, &o, 1);
    if (p9_encode(&w, f) != (long)len) {
        FZ_DIE("encode of type %u failed", f->type);
    }
    m->type = f->type;
    m->tag = f->tag;
    m->target = target;
    if (f->type == P9_TREAD) {
        m->count = f->u.tread.count;
    } else if (f->type == P9_TREADDIR) {
        m->count = f->u.treaddir.count;
    } else if (f->type == P9_TWALK) {
        m->count = f->u.twalk.nwname;
    }
    pg->last_len = len < sizeof(pg->last) ? len : sizeof(pg->last);
    memcpy(pg->last, m->frame, pg->last_len);
    submit(pg, m, in);
}

static struct fz_msg *flush_target(struct fz_sess *s, uint16_t tag,
                                   uint16_t oldtag);

/* Submit raw bytes as a frame; the header fields come from the bytes. */
static void
send_raw(struct fz_prog *pg, const uint8_t *p, size_t len, struct fz_in *in)
{
    struct fz_msg *m = msg_new(len);

    if (len == 9 && p[4] == P9_TFLUSH) {
        /* a well-formed Tflush after all: what it names may be dropped */
        m->target = flush_target(pg->s, (uint16_t)(p[5] | p[6] << 8),
                                 (uint16_t)(p[7] | p[8] << 8));
    }

    memcpy(m->frame, p, len);
    m->type = len > 4 ? p[4] : 0;
    m->tag = len > 6 ? (uint16_t)(p[5] | p[6] << 8) : 0;
    m->count = UINT32_MAX; /* unknown (Twalk: at most 16 anyway) */
    if (len > 6 && (m->type == P9_TREAD || m->type == P9_TREADDIR) &&
        len >= 7 + 16) {
        /* fid[4] offset[8] count[4] */
        m->count = (uint32_t)p[19] | (uint32_t)p[20] << 8 |
                   (uint32_t)p[21] << 16 | (uint32_t)p[22] << 24;
    }
    submit(pg, m, in);
}

/*
 * Mark what a Tflush of 'oldtag' with tag 'tag' names (before it is
 * submitted, so a drop() racing with the submit is already allowed).
 * Returns the message whose reply must come before Rflush, or NULL when
 * the client itself broke the rules (the Tflush reuses the tag of a
 * request whose reply it has not seen, or two requests hold 'oldtag'):
 * the server may then answer either first.
 */
static struct fz_msg *
flush_target(struct fz_sess *s, uint16_t tag, uint16_t oldtag)
{
    struct fz_msg *t = NULL;
    bool own_tag_pending = false;
    int n = 0;

    pthread_mutex_lock(&s->m);
    for (size_t i = 0; i < s->nmsgs; i++) {
        if (s->msgs[i]->state != M_PENDING) {
            continue;
        }
        if (s->msgs[i]->tag == oldtag) {
            s->msgs[i]->flush_named = true;
            t = s->msgs[i];
            n++;
        }
        if (s->msgs[i]->tag == tag) {
            own_tag_pending = true;
        }
    }
    pthread_mutex_unlock(&s->m);
    return n == 1 && !own_tag_pending ? t : NULL;
}

static void
op_sync(struct fz_prog *pg)
{
    gate_set(true);
    wait_idle(pg->s, false);
    gate_set(false);
}

/* Wait until every pending request is done or held at the gate, so what
 * follows meets a known state (e.g. a slow request that is really
 * running, not still queued).  Some states never settle (a Tflush of a
 * request held at the gate waits as long as the gate is shut), so all the
 * SETTLEs of one program share FZ_SETTLE_MS: a REPEATed SETTLE must not
 * turn into an hour of sleeping. */
static void
op_settle(struct fz_prog *pg)
{
    while (pg->settle_ms > 0) {
        unsigned pending;
        int held;

        pthread_mutex_lock(&pg->s->m);
        pending = pg->s->pending;
        pthread_mutex_unlock(&pg->s->m);
        pthread_mutex_lock(&gate_m);
        held = gate_waiting;
        pthread_mutex_unlock(&gate_m);
        if (pending <= (unsigned)held) {
            return;
        }
        usleep(1000);
        pg->settle_ms--;
    }
}

static void run_one(struct fz_prog *pg, struct fz_in *in);

static void
run_repeat(struct fz_prog *pg, struct fz_in *in)
{
    /* FUZZ_SESSION_MAX_REPEAT lowers the cap, e.g. to fuzz past a known
     * crash that needs long chains */
    const char *cap = getenv("FUZZ_SESSION_MAX_REPEAT");
    unsigned max = cap != NULL ? (unsigned)atoi(cap) : FZ_MAX_REPEAT;
    unsigned count = in16(in) % (max ? max : 1) + 1;
    struct fz_in start = *in;
    struct fz_in end = *in;

    if (pg->in_repeat) {
        return;
    }
    pg->in_repeat = true;
    for (unsigned i = 0; i < count && !pg->dead && !in->eof; i++) {
        *in = start;
        run_one(pg, in);
        end = *in;
    }
    pg->in_repeat = false;
    *in = end;
}

static void
run_one(struct fz_prog *pg, struct fz_in *in)
{
    static const uint64_t offs[] = {
        0, 1, 2, 3, 4096, 100000, UINT64_MAX, (uint64_t)1 << 40};
    static const uint64_t counts[] = {0,    1,     13,         100,
                                      4096, 65536, UINT32_MAX, 200};
    static const uint32_t oflags[] = {P9_DOTL_RDONLY,
                                      P9_DOTL_WRONLY,
                                      P9_DOTL_RDWR,
                                      P9_DOTL_NOACCESS,
                                      P9_DOTL_RDWR | P9_DOTL_TRUNC,
                                      P9_DOTL_RDONLY | P9_DOTL_DIRECTORY,
                                      P9_DOTL_WRONLY | P9_DOTL_APPEND,
                                      P9_DOTL_RDWR | P9_DOTL_EXCL,
                                      P9_DOTL_RDONLY | P9_DOTL_NONBLOCK,
                                      0xffffffffu};
    static const uint32_t modes[] = {0644,        0755,   010644,  020644,
                                     060644,      040755, 0140755, 0,
                                     0xffffffffu, 04755};
    static const char *const xnames[] = {"",           "user.k",    "user.new",
                                         "security.x", "trusted.t", "bogus"};
    static const char *const versions[] = {"9P2000.L", "9P2000",     "9P2000.u",
                                           "",         "9P2000.L.x", "9P"};
    static const uint32_t msizes[] = {FZ_MSIZE,    8192,     4096, 100,
                                      0xffffffffu, 1u << 20, 4097, 65535};
    static uint8_t wdata[FZ_MSIZE];
    struct fz_sess *s = pg->s;
    struct p9_fcall f;
    uint8_t op = in8(in);

    if (in->eof || pg->dead || ++pg->steps > FZ_MAX_STEPS) {
        return;
    }
    memset(&f, 0, sizeof(f));
    switch ((op & 0x7f) % OP_COUNT) {
    case OP_REPEAT: run_repeat(pg, in); return;
    case OP_SYNC: op_sync(pg); return;
    case OP_RELEASE: gate_set(true); return;
    case OP_SETTLE: op_settle(pg); return;
    case OP_CLOSE:
        pthread_mutex_lock(&s->m);
        s->closing = true;
        pthread_mutex_unlock(&s->m);
        p9s_conn_close(pg->conn);
        pg->dead = true;
        return;
    case OP_RAW: {
        uint8_t buf[4 + 255];
        size_t n = in8(in);

        for (size_t i = 0; i < n; i++) {
            buf[4 + i] = in8(in);
        }
        /* a correct size field: the body is what is hostile */
        buf[0] = (uint8_t)(n + 4);
        buf[1] = (uint8_t)((n + 4) >> 8);
        buf[2] = buf[3] = 0;
        send_raw(pg, buf, n + 4, in);
        return;
    }
    case OP_MUTATE: {
        uint8_t buf[sizeof(pg->last)];
        uint8_t pos = in8(in);
        uint8_t val = in8(in);

        if (pg->last_len <= 4) {
            return;
        }
        memcpy(buf, pg->last, pg->last_len);
        buf[0] = (uint8_t)pg->last_len; /* truncated copies stay framed */
        buf[1] = (uint8_t)(pg->last_len >> 8);
        buf[2] = buf[3] = 0;
        buf[4 + pos % (pg->last_len - 4)] ^= val ? val : 0x80;
        send_raw(pg, buf, pg->last_len, in);
        return;
    }
    default: break;
    }
    f.tag = take_tag(pg, op, in);
    switch ((op & 0x7f) % OP_COUNT) {
    case OP_VERSION:
        f.type = P9_TVERSION;
        f.u.tversion.msize = msizes[in8(in) % 8];
        f.u.tversion.version.s = versions[in8(in) % 6];
        f.u.tversion.version.len = (uint16_t)strlen(f.u.tversion.version.s);
        break;
    case OP_ATTACH: {
        static const char *const unames[] = {"", "root", "1000", "nobody"};
        static const char *const anames[] = {"", "/nonexistent", "synth", ".."};
        uint8_t b = in8(in);

        f.type = P9_TATTACH;
        f.u.tattach.fid = pick_fid(in);
        f.u.tattach.afid = (b & 0x10) ? 1 : P9_NOFID;
        f.u.tattach.uname.s = unames[b & 3];
        f.u.tattach.uname.len = (uint16_t)strlen(unames[b & 3]);
        f.u.tattach.aname.s = anames[(b >> 2) & 3];
        f.u.tattach.aname.len = (uint16_t)strlen(anames[(b >> 2) & 3]);
        f.u.tattach.n_uname = (b & 0x20) ? P9_NONUNAME : (b & 0x40) ? 1000 : 0;
        if (b & 0x80) {
            /* Tauth has the same fields, afid first */
            struct p9_tattach a = f.u.tattach;

            f.type = P9_TAUTH;
            f.u.tauth.afid = a.fid;
            f.u.tauth.uname = a.uname;
            f.u.tauth.aname = a.aname;
            f.u.tauth.n_uname = a.n_uname;
        }
        break;
    }
    case OP_WALK: {
        uint8_t n;

        f.type = P9_TWALK;
        f.u.twalk.fid = pick_fid(in);
        f.u.twalk.newfid = pick_fid(in);
        n = in8(in) % (P9_MAXWELEM + 1);
        f.u.twalk.nwname = n;
        for (unsigned i = 0; i < n; i++) {
            f.u.twalk.wname[i] = pick_name(in);
        }
        break;
    }
    case OP_LOPEN:
        f.type = P9_TLOPEN;
        f.u.tlopen.fid = pick_fid(in);
        f.u.tlopen.flags = oflags[in8(in) % 10];
        break;
    case OP_LCREATE:
        f.type = P9_TLCREATE;
        f.u.tlcreate.fid = pick_fid(in);
        f.u.tlcreate.name = pick_name(in);
        f.u.tlcreate.flags = oflags[in8(in) % 10] | P9_DOTL_CREATE;
        f.u.tlcreate.mode = modes[in8(in) % 10];
        f.u.tlcreate.gid = in8(in);
        break;
    case OP_READ:
        f.type = P9_TREAD;
        f.u.tread.fid = pick_fid(in);
        f.u.tread.offset = pick_u64(in, offs, 8);
        f.u.tread.count = (uint32_t)pick_u64(in, counts, 8);
        break;
    case OP_WRITE: {
        uint32_t room = s->msize > 4096 ? s->msize : 4096;
        uint32_t fid = pick_fid(in);
        uint8_t b = in8(in);
        uint32_t n = b < 0x80 ? b : (uint32_t)(b - 0x7f) * 256;

        if (n > room - P9_IOHDRSZ) {
            n = room - P9_IOHDRSZ;
        }
        f.type = P9_TWRITE;
        f.u.twrite.fid = fid;
        f.u.twrite.offset = pick_u64(in, offs, 8);
        memset(wdata, 'w', n);
        f.u.twrite.data.len = n;
        f.u.twrite.data.ptr = wdata;
        break;
    }
    case OP_CLUNK:
        f.type = P9_TCLUNK;
        f.u.tclunk.fid = pick_fid(in);
        break;
    case OP_REMOVE:
        f.type = P9_TREMOVE;
        f.u.tremove.fid = pick_fid(in);
        break;
    case OP_GETATTR:
        f.type = P9_TGETATTR;
        f.u.tgetattr.fid = pick_fid(in);
        f.u.tgetattr.request_mask = in8(in) & 1 ? P9_GETATTR_ALL : in32(in);
        break;
    case OP_SETATTR:
        f.type = P9_TSETATTR;
        f.u.tsetattr.fid = pick_fid(in);
        f.u.tsetattr.valid = in16(in);
        f.u.tsetattr.mode = modes[in8(in) % 10];
        f.u.tsetattr.uid = in8(in);
        f.u.tsetattr.gid = in8(in);
        f.u.tsetattr.size = pick_u64(in, offs, 8);
        f.u.tsetattr.atime_sec = in8(in);
        f.u.tsetattr.mtime_nsec = in32(in);
        break;
    case OP_READDIR:
        f.type = P9_TREADDIR;
        f.u.treaddir.fid = pick_fid(in);
        f.u.treaddir.offset = pick_u64(in, offs, 8);
        f.u.treaddir.count = (uint32_t)pick_u64(in, counts, 8);
        break;
    case OP_MKDIR:
        f.type = P9_TMKDIR;
        f.u.tmkdir.dfid = pick_fid(in);
        f.u.tmkdir.name = pick_name(in);
        f.u.tmkdir.mode = modes[in8(in) % 10];
        break;
    case OP_SYMLINK:
        f.type = P9_TSYMLINK;
        f.u.tsymlink.fid = pick_fid(in);
        f.u.tsymlink.name = pick_name(in);
        f.u.tsymlink.symtgt = pick_name(in);
        break;
    case OP_MKNOD:
        f.type = P9_TMKNOD;
        f.u.tmknod.dfid = pick_fid(in);
        f.u.tmknod.name = pick_name(in);
        f.u.tmknod.mode = modes[in8(in) % 10];
        f.u.tmknod.major = in8(in);
        f.u.tmknod.minor = in8(in);
        break;
    case OP_LINK:
        f.type = P9_TLINK;
        f.u.tlink.dfid = pick_fid(in);
        f.u.tlink.fid = pick_fid(in);
        f.u.tlink.name = pick_name(in);
        break;
    case OP_RENAME:
        f.type = P9_TRENAME;
        f.u.trename.fid = pick_fid(in);
        f.u.trename.dfid = pick_fid(in);
        f.u.trename.name = pick_name(in);
        break;
    case OP_RENAMEAT:
        f.type = P9_TRENAMEAT;
        f.u.trenameat.olddirfid = pick_fid(in);
        f.u.trenameat.oldname = pick_name(in);
        f.u.trenameat.newdirfid = pick_fid(in);
        f.u.trenameat.newname = pick_name(in);
        break;
    case OP_UNLINKAT: {
        static const uint32_t uf[] = {0, P9_DOTL_AT_REMOVEDIR, 1, 0xffffffffu};

        f.type = P9_TUNLINKAT;
        f.u.tunlinkat.dirfd = pick_fid(in);
        f.u.tunlinkat.name = pick_name(in);
        f.u.tunlinkat.flags = uf[in8(in) % 4];
        break;
    }
    case OP_XATTRWALK: {
        const char *x = xnames[in8(in) % 6];

        f.type = P9_TXATTRWALK;
        f.u.txattrwalk.fid = pick_fid(in);
        f.u.txattrwalk.newfid = pick_fid(in);
        f.u.txattrwalk.name.s = x;
        f.u.txattrwalk.name.len = (uint16_t)strlen(x);
        break;
    }
    case OP_XATTRCREATE: {
        static const uint64_t xs[] = {0, 5,  100, 65537, (uint64_t)1 << 40,
                                      1, 64, 4096};
        const char *x = xnames[in8(in) % 6];

        f.type = P9_TXATTRCREATE;
        f.u.txattrcreate.fid = pick_fid(in);
        f.u.txattrcreate.name.s = x;
        f.u.txattrcreate.name.len = (uint16_t)strlen(x);
        f.u.txattrcreate.attr_size = pick_u64(in, xs, 8);
        f.u.txattrcreate.flags = in8(in) % 5;
        break;
    }
    case OP_LOCK:
        f.type = P9_TLOCK;
        f.u.tlock.fid = pick_fid(in);
        f.u.tlock.type = in8(in) % 4;
        f.u.tlock.flags = in8(in) % 4;
        f.u.tlock.start = pick_u64(in, offs, 8);
        f.u.tlock.length = pick_u64(in, offs, 8);
        f.u.tlock.proc_id = in8(in);
        f.u.tlock.client_id.s = "fz";
        f.u.tlock.client_id.len = 2;
        break;
    case OP_GETLOCK:
        f.type = P9_TGETLOCK;
        f.u.tgetlock.fid = pick_fid(in);
        f.u.tgetlock.type = in8(in) % 4;
        f.u.tgetlock.start = pick_u64(in, offs, 8);
        f.u.tgetlock.length = pick_u64(in, offs, 8);
        f.u.tgetlock.proc_id = in8(in);
        f.u.tgetlock.client_id.s = "fz";
        f.u.tgetlock.client_id.len = 2;
        break;
    case OP_FSYNC:
        f.type = P9_TFSYNC;
        f.u.tfsync.fid = pick_fid(in);
        f.u.tfsync.datasync = in8(in) & 1;
        break;
    case OP_STATFS:
        f.type = P9_TSTATFS;
        f.u.tstatfs.fid = pick_fid(in);
        break;
    case OP_READLINK:
        f.type = P9_TREADLINK;
        f.u.treadlink.fid = pick_fid(in);
        break;
    case OP_FLUSH: {
        uint8_t b = in8(in);
        struct fz_msg *t = NULL;
        uint16_t old;

        if (b < 0x80) {
            /* the tag of the (b % 64 + 1)-th last message */
            size_t back = (size_t)(b % 64) + 1;

            pthread_mutex_lock(&s->m);
            old = s->nmsgs >= back ? s->msgs[s->nmsgs - back]->tag : 0;
            pthread_mutex_unlock(&s->m);
        } else {
            old = b == 0xff ? P9_NOTAG : b & 0x0f;
        }
        f.type = P9_TFLUSH;
        f.u.tflush.oldtag = old;
        t = flush_target(s, f.tag, old);
        send_fcall(pg, &f, in, t);
        return;
    }
    default: return;
    }
    send_fcall(pg, &f, in, NULL);
}

/* ---- exports ------------------------------------------------------------------ */

static char *pt_dir;

static int
rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    if (ftw->level > 0) {
        remove(p);
    }
    return 0;
}

static void
pt_cleanup(void)
{
    if (pt_dir != NULL) {
        nftw(pt_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        rmdir(pt_dir);
    }
}

static void
fill_file(uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf[i] = (uint8_t)('a' + i % 26);
    }
}

/* The same small tree in both backends. */
static struct backend *
make_synth(void)
{
    struct synth_options o = {.max_bytes = 1u << 20, .max_nodes = 64};
    struct backend *be;
    static uint8_t data[5000];

    fill_file(data, sizeof(data));
    if (synth_backend_new(&o, &be) < 0 ||
        synth_add(be, "d", S_IFDIR | 0755, NULL, 0) < 0 ||
        synth_add(be, "d/e", S_IFREG | 0644, "hello", 5) < 0 ||
        synth_add(be, "f", S_IFREG | 0644, data, sizeof(data)) < 0 ||
        synth_add(be, "l", S_IFLNK, "f", 1) < 0 ||
        synth_add(be, "fifo", S_IFIFO | 0644, NULL, 0) < 0 ||
        synth_add(be, "dev", S_IFCHR | 0600, NULL, 0) < 0) {
        FZ_DIE("cannot build the synth tree");
    }
    return be;
}

static struct backend *
make_pt(void)
{
    struct pt_options o = {.multiuser = false, .remap_devs = true};
    static uint8_t data[5000];
    struct backend *be;
    char p[4200];
    int fd;

    if (pt_dir == NULL) {
        char tmpl[] = "/tmp/vfs-fuzz-session-XXXXXX";

        if (mkdtemp(tmpl) == NULL) {
            FZ_DIE("mkdtemp");
        }
        pt_dir = strdup(tmpl);
        atexit(pt_cleanup);
    }
    nftw(pt_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    fill_file(data, sizeof(data));
    snprintf(p, sizeof(p), "%s/d", pt_dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/d/e", pt_dir);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (write(fd, "hello", 5) != 5) {
            FZ_DIE("write");
        }
        close(fd);
    }
    snprintf(p, sizeof(p), "%s/f", pt_dir);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (write(fd, data, sizeof(data)) != (ssize_t)sizeof(data)) {
            FZ_DIE("write");
        }
        close(fd);
    }
    snprintf(p, sizeof(p), "%s/l", pt_dir);
    if (symlink("f", p) < 0) {
        FZ_DIE("symlink");
    }
    snprintf(p, sizeof(p), "%s/fifo", pt_dir);
    if (mkfifo(p, 0644) < 0) {
        FZ_DIE("mkfifo");
    }
    o.root = pt_dir;
    if (pt_backend_new(&o, &be) < 0) {
        FZ_DIE("pt_backend_new");
    }
    return be;
}

/* ---- one program ------------------------------------------------------------------- */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    struct p9s_config cfg = {.msize = FZ_MSIZE, .threads = 2};
    struct fz_in in = {data, len, false};
    struct p9s_export ex = {.name = "synth", .path = "/synth"};
    struct fz_sess s;
    struct fz_prog pg;
    struct p9s_server *srv;
    struct backend *be;
    unsigned flags;
    int fds0 = -1;

    if (len == 0) {
        return 0;
    }
    log_set_level(getenv("FUZZ_SESSION_VERBOSE") ? LOG_LVL_DEBUG
                                                 : LOG_LVL_ERROR);
    flags = in8(&in);
    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.m, NULL);
    pthread_cond_init(&s.cv, NULL);
    s.flags = flags;
    s.msize = FZ_MSIZE;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    s.msgs = calloc(FZ_MAX_MSGS, sizeof(*s.msgs));
    fz_cur = &s;

    if (flags & FZ_PASSTHROUGH) {
        fds0 = th_count_fds();
        be = make_pt();
        ex.path = pt_dir;
    } else {
        be = make_synth();
    }
    gate_wrap(be, (flags & FZ_PASSTHROUGH) != 0);
    gate_set(false);
    ex.be = be;
    srv = p9s_server_new(&cfg, &ex, 1);
    if (srv == NULL) {
        FZ_DIE("p9s_server_new");
    }
    memset(&pg, 0, sizeof(pg));
    pg.s = &s;
    pg.next_tag = FZ_TAG_AUTO0;
    pg.settle_ms = FZ_SETTLE_MS;
    pg.conn = p9s_conn_new(srv, &tp_ops, &s, "fuzz");
    if (pg.conn == NULL) {
        FZ_DIE("p9s_conn_new");
    }

    if (!(flags & FZ_NO_PREAMBLE)) {
        /* Tversion, Tattach fid 0 (uname "", n_uname 0), then SYNC */
        static const uint8_t pre[] = {OP_VERSION, 0, 0,      OP_ATTACH,
                                      0,          0, OP_SYNC};
        struct fz_in pin = {pre, sizeof(pre), false};

        while (!pin.eof && pin.n > 0 && !pg.dead) {
            run_one(&pg, &pin);
        }
    }
    while (!in.eof && !pg.dead && pg.steps <= FZ_MAX_STEPS) {
        run_one(&pg, &in);
    }

    /* let the slow requests finish, collect every reply, close */
    gate_set(true);
    if (!pg.dead) {
        wait_idle(&s, false);
        pthread_mutex_lock(&s.m);
        s.closing = true;
        pthread_mutex_unlock(&s.m);
        p9s_conn_close(pg.conn);
    }
    wait_idle(&s, true);
    for (size_t i = 0; i < s.nmsgs; i++) {
        if (s.msgs[i]->state == M_PENDING) {
            FZ_DIE("tag %u never answered nor dropped before release",
                   s.msgs[i]->tag);
        }
    }
    p9s_server_free(srv);

    if (!(flags & FZ_PASSTHROUGH)) {
        struct synth_stats st;

        synth_get_stats(be, &st);
        if (st.node_refs != 0 || st.handles != 0 || st.users != 0) {
            FZ_DIE("the server kept backend references: %ld node refs, "
                   "%ld handles, %ld users",
                   st.node_refs, st.handles, st.users);
        }
    }
    if (be->ops->destroy != NULL) {
        be->ops->destroy(be);
    }
    if (fds0 >= 0 && th_count_fds() != fds0) {
        FZ_DIE("descriptors leaked: %d before, %d after", fds0, th_count_fds());
    }
    for (size_t i = 0; i < s.nmsgs; i++) {
        msg_free(s.msgs[i]);
    }
    free(s.msgs);
    fz_cur = NULL;
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.m);
    return 0;
}
