/* SPDX-License-Identifier: MIT */
/*
 * Malformed input over the socket: each bad frame must be answered with
 * Rlerror (EPROTO / EINVAL / EOPNOTSUPP) or close only the offending
 * connection.  A witness connection opened first must keep working after
 * every case, and the server must survive clients that vanish with
 * replies pending.
 */
#include "harness.h"

static struct th_srv *srv;
static const char *vfsd;
static char *base;
static char exdir[PATH_MAX];
static struct p9c_conn *wc; /* witness connection */
static struct p9c_fid *wroot;

#define BIGSZ 200000

/* ---- a tiny frame builder --------------------------------------------------- */

struct fb {
    uint8_t b[TH_MSIZE * 2];
    size_t n;
};

static void
fb_u8(struct fb *f, uint8_t v)
{
    f->b[f->n++] = v;
}

static void
fb_u16(struct fb *f, uint16_t v)
{
    fb_u8(f, (uint8_t)v);
    fb_u8(f, (uint8_t)(v >> 8));
}

static void
fb_u32(struct fb *f, uint32_t v)
{
    fb_u16(f, (uint16_t)v);
    fb_u16(f, (uint16_t)(v >> 16));
}

static void
fb_u64(struct fb *f, uint64_t v)
{
    fb_u32(f, (uint32_t)v);
    fb_u32(f, (uint32_t)(v >> 32));
}

static void
fb_bytes(struct fb *f, const void *p, size_t n)
{
    memcpy(f->b + f->n, p, n);
    f->n += n;
}

static void
fb_str(struct fb *f, const char *s, size_t n)
{
    fb_u16(f, (uint16_t)n);
    fb_bytes(f, s, n);
}

static void
fb_hdr(struct fb *f, uint8_t type, uint16_t tag)
{
    f->n = 0;
    fb_u32(f, 0);
    fb_u8(f, type);
    fb_u16(f, tag);
}

/* Set size[4] to the bytes written. */
static void
fb_fin(struct fb *f)
{
    th_put32(f->b, (uint32_t)f->n);
}

/* ---- outcomes ------------------------------------------------------------------ */

enum outcome { OUT_OTHER = -1, OUT_CLOSED = 0, OUT_RLERROR = 1 };

/* Send a frame (>= 7 bytes) and classify what comes back. */
static enum outcome
outcome_of(struct p9c_conn *c, const void *frame, size_t len, uint32_t *ecode)
{
    struct p9c_reply *r = NULL;
    int err = p9c_rpc_raw(c, frame, len, &r);
    enum outcome o = OUT_OTHER;

    *ecode = 0;
    if (err == 0 && r->decode_err == 0 && r->f.type == P9_RLERROR) {
        *ecode = r->f.u.rlerror.ecode;
        o = OUT_RLERROR;
    } else if (err == 0) {
        *ecode = 1000u + (r ? r->f.type : 0u);
    } else if (err != -ETIMEDOUT) {
        o = OUT_CLOSED;
    }
    p9c_reply_free(r);
    return o;
}

/* After raw bytes: is the connection closed by the server? */
static bool
is_closed(struct p9c_conn *c)
{
    struct p9_rgetattr a;
    int err;

    p9c_set_timeout(c, 5000);
    err = th_getattr(c, TF(1), &a);
    return err < 0 && err != -ETIMEDOUT && err != -EBADF &&
           (p9c_error(c) != 0 || err == -ECONNRESET || err == -EPIPE);
}

static bool
witness_ok(void)
{
    struct p9c_fid *f = NULL;
    char buf[16];
    ssize_t n = -1;

    if (p9c_walk(wroot, "small", &f) == 0 && p9c_open(f, 0) == 0) {
        n = p9c_pread(f, buf, sizeof(buf), 0);
    }
    p9c_clunk(f);
    return n == 5 && memcmp(buf, "small", 5) == 0;
}

/* A fresh victim connection with TF(1) attached to the export root. */
static struct p9c_conn *
victim(void)
{
    struct p9c_conn *c = th_connect(srv);

    if (c == NULL || p9c_version(c, TH_MSIZE) < 0 ||
        th_attach(c, TF(1), "", NULL) < 0) {
        fprintf(stderr, "cannot set up a victim connection\n");
        exit(99);
    }
    return c;
}

static void
check_ecode(const char *name, enum outcome o, uint32_t ecode, bool allow_closed)
{
    bool good =
        (o == OUT_RLERROR && (ecode == EPROTO || ecode == EINVAL ||
                              ecode == EOPNOTSUPP || ecode == ENOENT)) ||
        (allow_closed && o == OUT_CLOSED);

    tap_ok(good, "%s (outcome %d ecode %u)", name, o, ecode);
    tap_ok(witness_ok(), "%s/witness_still_served", name);
}

/* Bytes that must close the connection. */
static void
expect_close(const char *name, const void *bytes, size_t len)
{
    struct p9c_conn *c = victim();

    p9c_send_bytes(c, bytes, len);
    tap_ok(is_closed(c), "%s/connection_closed", name);
    p9c_close(c);
    tap_ok(witness_ok(), "%s/witness_still_served", name);
}

static void
test_frames(void)
{
    static struct fb f;
    struct p9c_conn *c;
    uint32_t ec;
    enum outcome o;

    /* size < 7, 0, > msize, 0xFFFFFFFF */
    {
        static const uint8_t s4[] = {4, 0, 0, 0, 120, 1, 0};
        static const uint8_t s0[] = {0, 0, 0, 0, 120, 1, 0};
        static const uint8_t s6[] = {6, 0, 0, 0, 120, 1, 0};
        uint8_t big[7] = {0, 0, 0, 0, 120, 1, 0};
        uint8_t huge[7] = {0xff, 0xff, 0xff, 0xff, 120, 1, 0};

        expect_close("frame/size_4", s4, sizeof(s4));
        expect_close("frame/size_0", s0, sizeof(s0));
        expect_close("frame/size_6", s6, sizeof(s6));
        th_put32(big, TH_MSIZE + 1);
        expect_close("frame/size_msize_plus_1", big, sizeof(big));
        expect_close("frame/size_ffffffff", huge, sizeof(huge));
    }
    /* after Tversion(8192) the smaller msize is enforced */
    {
        c = victim();
        p9c_version(c, 8192);
        fb_hdr(&f, P9_TCLUNK, 1);
        fb_u32(&f, TF(1));
        memset(f.b + f.n, 0, 9000);
        f.n += 9000;
        fb_fin(&f);
        p9c_send_bytes(c, f.b, f.n);
        tap_ok(is_closed(c), "frame/size_above_renegotiated_msize_closed");
        p9c_close(c);
    }
    /* a partial frame, then the client goes away */
    {
        c = victim();
        fb_hdr(&f, P9_TCLUNK, 1);
        fb_u32(&f, TF(1));
        th_put32(f.b, 100);
        p9c_send_bytes(c, f.b, f.n);
        p9c_close(c);
        tap_ok(witness_ok(), "frame/partial_then_eof/witness_still_served");
    }
    /* header only: a body is missing */
    c = victim();
    fb_hdr(&f, P9_TVERSION, P9_NOTAG);
    fb_fin(&f);
    o = outcome_of(c, f.b, f.n, &ec);
    check_ecode("frame/tversion_without_body", o, ec, true);
    if (o == OUT_CLOSED) {
        p9c_close(c);
        c = victim();
    }
    fb_hdr(&f, P9_TGETATTR, 3);
    fb_u32(&f, TF(1));
    fb_fin(&f);
    o = outcome_of(c, f.b, f.n, &ec);
    check_ecode("frame/tgetattr_missing_mask", o, ec, true);
    if (o == OUT_CLOSED) {
        p9c_close(c);
        c = victim();
    }
    /* truncated string: length says 50, 3 bytes follow */
    fb_hdr(&f, P9_TWALK, 4);
    fb_u32(&f, TF(1));
    fb_u32(&f, TF(2));
    fb_u16(&f, 1);
    fb_u16(&f, 50);
    fb_bytes(&f, "abc", 3);
    fb_fin(&f);
    o = outcome_of(c, f.b, f.n, &ec);
    check_ecode("frame/truncated_string", o, ec, true);
    if (o == OUT_CLOSED) {
        p9c_close(c);
        c = victim();
    }
    tap_ok(th_getattr(c, TF(2), NULL) == -EBADF,
           "frame/truncated_string_binds_nothing");
    /* trailing bytes after a complete message */
    fb_hdr(&f, P9_TGETATTR, 5);
    fb_u32(&f, TF(1));
    fb_u64(&f, P9_GETATTR_BASIC);
    fb_bytes(&f, "JUNKJUNK", 8);
    fb_fin(&f);
    o = outcome_of(c, f.b, f.n, &ec);
    check_ecode("frame/trailing_bytes", o, ec, true);
    if (o == OUT_CLOSED) {
        p9c_close(c);
        c = victim();
    }
    /* NUL inside names */
    {
        char p[PATH_MAX];

        fb_hdr(&f, P9_TWALK, 6);
        fb_u32(&f, TF(1));
        fb_u32(&f, TF(3));
        fb_u16(&f, 1);
        fb_str(&f, "small\0x", 7);
        fb_fin(&f);
        o = outcome_of(c, f.b, f.n, &ec);
        tap_ok(o == OUT_CLOSED || o == OUT_RLERROR,
               "frame/walk_name_with_nul_refused (outcome %d ecode %u)", o, ec);
        if (o == OUT_CLOSED) {
            p9c_close(c);
            c = victim();
        }
        fb_hdr(&f, P9_TMKDIR, 7);
        fb_u32(&f, TF(1));
        fb_str(&f, "nd\0evil", 7);
        fb_u32(&f, 0755);
        fb_u32(&f, (uint32_t)-1);
        fb_fin(&f);
        o = outcome_of(c, f.b, f.n, &ec);
        snprintf(p, sizeof(p), "%s/nd", exdir);
        tap_ok((o == OUT_CLOSED || o == OUT_RLERROR) && !th_exists(p),
               "frame/mkdir_name_with_nul_refused (outcome %d ecode %u)", o,
               ec);
        if (o == OUT_CLOSED) {
            p9c_close(c);
            c = victim();
        }
        th_walk1(c, TF(1), TF(4), NULL);
        fb_hdr(&f, P9_TLCREATE, 8);
        fb_u32(&f, TF(4));
        fb_str(&f, "nf\0evil", 7);
        fb_u32(&f, P9_DOTL_RDWR);
        fb_u32(&f, 0644);
        fb_u32(&f, (uint32_t)-1);
        fb_fin(&f);
        o = outcome_of(c, f.b, f.n, &ec);
        snprintf(p, sizeof(p), "%s/nf", exdir);
        tap_ok((o == OUT_CLOSED || o == OUT_RLERROR) && !th_exists(p),
               "frame/lcreate_name_with_nul_refused (outcome %d ecode %u)", o,
               ec);
        if (o == OUT_CLOSED) {
            p9c_close(c);
            c = victim();
        }
        tap_ok(witness_ok(), "frame/nul_names/witness_still_served");
    }
    /* unknown types and R-messages */
    {
        static const uint8_t types[] = {0,   1,   6,   7,   9,   101, 107,
                                        111, 117, 200, 255, 126, 127};

        for (size_t i = 0; i < sizeof(types); i++) {
            char name[64];

            fb_hdr(&f, types[i], (uint16_t)(20 + i));
            fb_u32(&f, TF(1));
            fb_u32(&f, 0);
            fb_fin(&f);
            o = outcome_of(c, f.b, f.n, &ec);
            snprintf(name, sizeof(name), "frame/type_%u_refused", types[i]);
            check_ecode(name, o, ec, true);
            if (o == OUT_CLOSED) {
                p9c_close(c);
                c = victim();
            }
        }
    }
    p9c_close(c);
}

static void
test_io_counts(void)
{
    static struct fb f;
    struct p9c_conn *c = victim();
    struct p9c_reply *r = NULL;
    uint8_t *host = malloc(BIGSZ + 1);
    char p[PATH_MAX];
    uint32_t ec;
    enum outcome o;
    int err;

    snprintf(p, sizeof(p), "%s/big", exdir);
    th_read_file(p, (char *)host, BIGSZ + 1);
    th_walk1(c, TF(1), TF(10), "big");
    th_lopen(c, TF(10), P9_DOTL_RDWR);
    fb_hdr(&f, P9_TREAD, 30);
    fb_u32(&f, TF(10));
    fb_u64(&f, 1000);
    fb_u32(&f, 0xFFFFFFFFu);
    fb_fin(&f);
    err = p9c_rpc_raw(c, f.b, f.n, &r);
    tap_ok(err == 0 && r->decode_err == 0 && r->f.type == P9_RREAD &&
               r->f.u.rread.data.len > 0 &&
               r->f.u.rread.data.len <= TH_MSIZE - 11 && r->len <= TH_MSIZE &&
               memcmp(r->f.u.rread.data.ptr, host + 1000,
                      r->f.u.rread.data.len) == 0,
           "io/tread_count_ffffffff_capped (err %d len %u)", err,
           r && r->decode_err == 0 ? r->f.u.rread.data.len : 0);
    p9c_reply_free(r);
    r = NULL;
    fb_hdr(&f, P9_TREAD, 31);
    fb_u32(&f, TF(10));
    fb_u64(&f, UINT64_MAX - 5);
    fb_u32(&f, 0xFFFFFFFFu);
    fb_fin(&f);
    err = p9c_rpc_raw(c, f.b, f.n, &r);
    tap_ok(err == 0 && r->decode_err == 0 &&
               ((r->f.type == P9_RREAD && r->f.u.rread.data.len == 0) ||
                r->f.type == P9_RLERROR),
           "io/tread_offset_near_2^64 (err %d)", err);
    p9c_reply_free(r);
    r = NULL;
    /* Treaddir with a huge count on a directory */
    th_walk1(c, TF(1), TF(11), NULL);
    th_lopen(c, TF(11), P9_DOTL_RDONLY | P9_DOTL_DIRECTORY);
    fb_hdr(&f, P9_TREADDIR, 32);
    fb_u32(&f, TF(11));
    fb_u64(&f, 0);
    fb_u32(&f, 0xFFFFFFFFu);
    fb_fin(&f);
    err = p9c_rpc_raw(c, f.b, f.n, &r);
    tap_ok(err == 0 && r->decode_err == 0 && r->f.type == P9_RREADDIR &&
               r->len <= TH_MSIZE && r->f.u.rreaddir.data.len > 0,
           "io/treaddir_count_ffffffff_capped (err %d)", err);
    p9c_reply_free(r);
    /* Twrite whose count is larger than the bytes in the frame */
    fb_hdr(&f, P9_TWRITE, 33);
    fb_u32(&f, TF(10));
    fb_u64(&f, 0);
    fb_u32(&f, 5000);
    fb_bytes(&f, "ABCDEFGH", 8);
    fb_fin(&f);
    o = outcome_of(c, f.b, f.n, &ec);
    check_ecode("io/twrite_count_beyond_frame", o, ec, true);
    if (o == OUT_CLOSED) {
        p9c_close(c);
        c = victim();
    }
    /* Twrite count 0xFFFFFFFF */
    fb_hdr(&f, P9_TWRITE, 34);
    fb_u32(&f, TF(10));
    fb_u64(&f, 0);
    fb_u32(&f, 0xFFFFFFFFu);
    fb_bytes(&f, "ABCDEFGH", 8);
    fb_fin(&f);
    o = outcome_of(c, f.b, f.n, &ec);
    check_ecode("io/twrite_count_ffffffff", o, ec, true);
    {
        uint8_t *now = malloc(BIGSZ + 1);
        ssize_t n = th_read_file(p, (char *)now, BIGSZ + 1);

        tap_ok(n == BIGSZ && memcmp(now, host, BIGSZ) == 0,
               "io/bad_twrites_changed_nothing");
        free(now);
    }
    p9c_close(c);
    free(host);
}

/* Same tag twice while the first is in flight: the connection closes. */
static void
test_dup_tag(void)
{
    static struct fb f;
    struct p9c_conn *c = victim();
    struct p9_fcall t = {.type = P9_TLOPEN};
    uint8_t *fr;
    size_t len;

    if (vfsd == NULL) {
        /* deterministic: a lopen of the FIFO blocks in the wrapper */
        th_walk1(c, TF(1), TF(20), "fifo");
        t.u.tlopen.fid = TF(20);
        t.u.tlopen.flags = P9_DOTL_RDONLY;
        fr = th_frame(&t, 40, &len);
        p9c_send_bytes(c, fr, len);
        tap_ok(th_block_wait(1), "dup_tag/first_request_blocked");
        /* alone on its connection, it was tried there first, gave up and
         * blocked on a worker (the connection thread reads the rest) */
        tap_ok(atomic_load(&th_block_nowait) >= 1,
               "dup_tag/the_open_gave_up_on_the_connection_thread (%d)",
               atomic_load(&th_block_nowait));
        fb_hdr(&f, P9_TCLUNK, 40);
        fb_u32(&f, TF(1));
        fb_fin(&f);
        p9c_send_bytes(c, f.b, f.n);
        free(fr);
    } else {
        /* a dirty fsync, then the same tag right behind it in one write */
        th_walk1(c, TF(1), TF(20), "big");
        th_lopen(c, TF(20), P9_DOTL_RDWR);
        {
            struct p9c_fid *wf = p9c_fid_wrap(c, TF(20), NULL);
            static uint8_t junk[BIGSZ];

            memset(junk, 'j', sizeof(junk));
            p9c_pwrite(wf, junk, sizeof(junk), BIGSZ);
            p9c_fid_forget(wf);
        }
        fb_hdr(&f, P9_TFSYNC, 41);
        fb_u32(&f, TF(20));
        fb_u32(&f, 0);
        fb_fin(&f); /* 15 bytes */
        for (int i = 0; i < 20; i++) {
            memcpy(f.b + f.n, f.b, 15);
            f.n += 15;
        }
        p9c_send_bytes(c, f.b, f.n);
    }
    tap_ok(is_closed(c), "dup_tag/connection_closed");
    p9c_close(c);
    tap_ok(witness_ok(), "dup_tag/witness_still_served");
}

static void
test_garbage(void)
{
    static uint8_t g[16384];
    static struct fb f;
    unsigned seed = 12345;

    /* raw noise */
    for (int round = 0; round < 4; round++) {
        struct p9c_conn *c = victim();

        for (size_t i = 0; i < sizeof(g); i++) {
            g[i] = (uint8_t)rand_r(&seed);
        }
        if (round == 0) {
            th_put32(g, 32); /* a sane size, then noise */
        }
        p9c_send_bytes(c, g, sizeof(g));
        usleep(20000);
        p9c_close(c);
    }
    tap_ok(witness_ok(), "garbage/noise/witness_still_served");
    /* well-framed noise of every T type: answered or closed, never hung */
    {
        struct p9c_conn *c = victim();
        int answered = 0;
        int closed = 0;
        int other = 0;

        for (int i = 0; i < 600; i++) {
            size_t blen = (size_t)(rand_r(&seed) % 64);
            uint32_t ec;
            enum outcome o;

            fb_hdr(&f, (uint8_t)(i % 256 == 100 ? 8 : i % 256),
                   (uint16_t)(i + 1));
            /* plausible fids half of the time */
            if (rand_r(&seed) & 1) {
                fb_u32(&f, TF(1));
            }
            for (size_t k = 0; k < blen; k++) {
                fb_u8(&f, (uint8_t)rand_r(&seed));
            }
            fb_fin(&f);
            if (f.b[4] == P9_TVERSION || f.b[4] == P9_TFLUSH) {
                continue; /* keep the session; flush has its own tests */
            }
            o = outcome_of(c, f.b, f.n, &ec);
            if (o == OUT_CLOSED) {
                closed++;
                p9c_close(c);
                c = victim();
            } else if (o == OUT_RLERROR || ec >= 1000) {
                answered++;
            } else {
                other++;
            }
        }
        p9c_close(c);
        tap_ok(other == 0 && answered + closed > 500,
               "garbage/framed_noise_answered_or_closed (answered %d closed "
               "%d timeouts %d)",
               answered, closed, other);
    }
    tap_ok(witness_ok(), "garbage/framed/witness_still_served");
}

/* Clients that disconnect with many replies pending. */
static void
test_vanishing_clients(void)
{
    static struct fb f;

    for (int round = 0; round < 4; round++) {
        struct p9c_conn *c = victim();

        th_walk1(c, TF(1), TF(30), "big");
        th_lopen(c, TF(30), P9_DOTL_RDONLY);
        f.n = 0;
        for (int i = 0; i < 300; i++) {
            size_t at = f.n;

            fb_u32(&f, 0);
            fb_u8(&f, P9_TREAD);
            fb_u16(&f, (uint16_t)(100 + i));
            fb_u32(&f, TF(30));
            fb_u64(&f, (uint64_t)(i % 3) * 60000);
            fb_u32(&f, 60000);
            th_put32(f.b + at, (uint32_t)(f.n - at));
            if (f.n > sizeof(f.b) - 64) {
                p9c_send_bytes(c, f.b, f.n);
                f.n = 0;
            }
        }
        p9c_send_bytes(c, f.b, f.n);
        if (round & 1) {
            shutdown(p9c_fd(c), SHUT_RDWR); /* RST-ish: both directions */
        }
        p9c_close(c);
    }
    usleep(100000);
    tap_ok(witness_ok(), "vanish/witness_still_served");
    /* a client that stays connected but never reads its replies */
    {
        struct p9c_conn *c = victim();
        uint64_t t0;
        bool ok;

        th_walk1(c, TF(1), TF(30), "big");
        th_lopen(c, TF(30), P9_DOTL_RDONLY);
        f.n = 0;
        for (int i = 0; i < 200; i++) {
            size_t at = f.n;

            fb_u32(&f, 0);
            fb_u8(&f, P9_TREAD);
            fb_u16(&f, (uint16_t)(100 + i));
            fb_u32(&f, TF(30));
            fb_u64(&f, 0);
            fb_u32(&f, 60000);
            th_put32(f.b + at, (uint32_t)(f.n - at));
        }
        p9c_send_bytes(c, f.b, f.n);
        usleep(200000);
        t0 = th_now_ms();
        {
            struct p9c_conn *o = th_connect(srv);

            p9c_set_timeout(o, 3000);
            ok = p9c_version(o, TH_MSIZE) == 0 &&
                 th_attach(o, TF(1), "", NULL) == 0 &&
                 th_getattr(o, TF(1), NULL) == 0;
            p9c_close(o);
        }
        tap_diag("stalled reader: another client answered in %llu ms",
                 (unsigned long long)(th_now_ms() - t0));
        /* A client that does not read its replies only stalls itself:
         * workers never block on its socket (the rest is queued). */
        tap_ok(ok, "stalled_reader/others_still_served");
        p9c_close(c);
        usleep(300000);
        tap_ok(th_alive(srv, ""), "stalled_reader/server_recovers_after_close");
    }
    tap_ok(th_alive(srv, ""), "vanish/server_alive_and_accepting");
}

int
main(int argc, char **argv)
{
    struct th_export ex;
    char p[PATH_MAX];
    uint8_t *big = malloc(BIGSZ);
    int err;

    vfsd = th_mode(argc, argv);
    if (vfsd == NULL) {
        th_wrap_backend = th_block_backend;
    }
    base = th_mkdtemp("malformed");
    snprintf(exdir, sizeof(exdir), "%s/ex", base);
    mkdir(exdir, 0755);
    snprintf(p, sizeof(p), "%s/small", exdir);
    th_write_file(p, "small", 5);
    for (int i = 0; i < BIGSZ; i++) {
        big[i] = (uint8_t)(i % 251);
    }
    snprintf(p, sizeof(p), "%s/big", exdir);
    th_write_file(p, big, BIGSZ);
    free(big);
    snprintf(p, sizeof(p), "%s/fifo", exdir);
    mkfifo(p, 0644);
    ex = (struct th_export){NULL, exdir, false};
    srv = th_start(vfsd, &ex, 1, NULL);
    err = th_mount(srv, "", &wc, &wroot);
    tap_ok(err == 0 && witness_ok(), "witness/mounted (%d)", err);

    test_frames();
    test_io_counts();
    test_dup_tag();
    test_garbage();
    test_vanishing_clients();

    tap_ok(witness_ok(), "witness/still_served_at_end");
    p9c_clunk(wroot);
    p9c_close(wc);
    if (vfsd == NULL) {
        /* the blocked lopen of dup_tag was interrupted by the close */
        tap_ok(atomic_load(&th_block_waiting) == 0,
               "dup_tag/blocked_worker_released_at_close (%d interrupted)",
               atomic_load(&th_block_interrupted));
    }
    err = th_stop(srv);
    tap_ok(err == 0, "server/clean_stop (%d)", err);
    th_rmtree(base);
    free(base);
    return tap_done();
}
