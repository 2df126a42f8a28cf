/* SPDX-License-Identifier: MIT */
/*
 * Real 9P2000.L over the virtqueue: the server core with the passthrough
 * backend on a temporary export, driven through tests/vhost/fe.c the way
 * Linux 9pnet_virtio does it (including its zero-copy Tread/Twrite
 * layouts, where payload pages are separate descriptors).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fe.h"
#include "tmsg.h"
#include "tap.h"
#include "util/log.h"
#include "vhost/vhost.h"
#include "virtfs/backend.h"
#include "virtfs/server.h"

#define NOFID 0xffffffffu
#define FILE_LEN 10000u

static char sock_path[128];
static char export_dir[64];

static uint32_t
get_u32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return v;
}

/* Send a single-buffer T-message, reply into one buffer; returns R type. */
static int
rpc(struct fe *f, uint64_t tg, uint32_t tlen, uint64_t rg, uint32_t rcap,
    uint32_t *rlen)
{
    struct fe_seg s[2] = {{tg, tlen, false}, {rg, rcap, true}};
    uint32_t id;
    uint8_t *r = fe_ptr(f, rg);

    memset(r, 0, 8);
    fe_publish(f, fe_chain(f, s, 2, false));
    fe_kick(f);
    if (fe_used(f, &id, rlen) != 0) {
        return -ETIMEDOUT;
    }
    if (*rlen < 7 || get_u32(r) != *rlen) {
        return -EPROTO;
    }
    return r[4];
}

/*
 * 'n' Tgetattr of fid 1 in a closed loop, each kicked only if the device
 * asked for it (as Linux does with EVENT_IDX), 'gap_us' apart.  Returns
 * how many were answered with Rgetattr.
 */
static unsigned
getattr_loop(struct fe *f, uint64_t tg, uint64_t rg, unsigned n,
             unsigned gap_us)
{
    unsigned good = 0;

    for (unsigned i = 0; i < n; i++) {
        struct fe_seg s[2];
        struct tmsg t;
        uint16_t old = f->avail_idx;
        uint32_t id;
        uint32_t rlen;
        uint8_t *r = fe_ptr(f, rg);

        t_begin(&t, f, tg, 24, 11);
        t_u32(&t, 1);
        t_u64(&t, 0x7ffu);
        t_end(&t, 0);
        s[0] = (struct fe_seg){tg, t.len, false};
        s[1] = (struct fe_seg){rg, 4096, true};
        memset(r, 0, 8);
        fe_publish(f, fe_chain(f, s, 2, false));
        fe_kick_if_needed(f, old);
        if (fe_used(f, &id, &rlen) != 0) {
            break;
        }
        good += rlen > 7 && r[4] == 25;
        if (gap_us) {
            usleep(gap_us);
        }
    }
    return good;
}

static bool
session(struct fe *f, uint64_t tg, uint64_t rg)
{
    struct tmsg t;
    uint32_t rlen;
    uint8_t *r = fe_ptr(f, rg);

    t_begin(&t, f, tg, 100, 0xffff);
    t_u32(&t, 65536);
    t_str(&t, "9P2000.L");
    t_end(&t, 0);
    if (rpc(f, tg, t.len, rg, 4096, &rlen) != 101 ||
        memcmp(r + 13, "9P2000.L", 8) != 0) {
        return false;
    }
    t_begin(&t, f, tg, 104, 1);
    t_u32(&t, 1);
    t_u32(&t, NOFID);
    t_str(&t, "root");
    t_str(&t, export_dir);
    t_u32(&t, 0);
    t_end(&t, 0);
    return rpc(f, tg, t.len, rg, 4096, &rlen) == 105;
}

int
main(void)
{
    struct pt_options po = {.remap_devs = true};
    struct p9s_config cfg = {.msize = 0, .threads = 2};
    struct p9s_export ex = {0};
    struct vhu_opts o = {.listen_fd = -1, .conn_fd = -1, .tag = "virtfs"};
    struct p9s_server *srv;
    struct vhu_server *vs;
    struct backend *be;
    struct tmsg t;
    struct fe f;
    uint8_t data[FILE_LEN];
    uint64_t tg;
    uint64_t rg;
    uint32_t rlen;
    uint8_t *r;
    char path[160];
    int fd;

    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_LVL_ERROR);
    strcpy(export_dir, "/tmp/vhost-9p-XXXXXX");
    if (mkdtemp(export_dir) == NULL) {
        return 1;
    }
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 13 + i / 256);
    }
    snprintf(path, sizeof(path), "%s/hello.txt", export_dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, data, sizeof(data)) != (ssize_t)sizeof(data)) {
        return 1;
    }
    close(fd);
    snprintf(sock_path, sizeof(sock_path), "%s.sock", export_dir);

    po.root = export_dir;
    tap_ok(pt_backend_new(&po, &be) == 0, "passthrough backend on %s",
           export_dir);
    ex.path = export_dir;
    ex.be = be;
    srv = p9s_server_new(&cfg, &ex, 1);
    tap_ok(srv != NULL, "9P server");
    o.socket_path = sock_path;
    tap_ok(vhu_server_new(srv, &o, &vs) == 0 && vhu_server_start(vs) == 0,
           "vhost-user server");

    tap_ok(fe_connect(&f, sock_path) == 0 &&
               fe_setup(&f, VHU_FEATURES, 256) == 0,
           "front-end setup");
    tg = fe_alloc(&f, 4096);
    rg = fe_alloc(&f, 4096);
    r = fe_ptr(&f, rg);
    tap_ok(session(&f, tg, rg), "Tversion + Tattach");

    /* Twalk 1 -> 2 "hello.txt" */
    t_begin(&t, &f, tg, 110, 2);
    t_u32(&t, 1);
    t_u32(&t, 2);
    memcpy(t.p + t.len, "\x01\x00", 2);
    t.len += 2;
    t_str(&t, "hello.txt");
    t_end(&t, 0);
    tap_ok(rpc(&f, tg, t.len, rg, 4096, &rlen) == 111 && r[7] == 1,
           "Twalk hello.txt -> Rwalk with 1 qid");

    t_begin(&t, &f, tg, 12, 3);
    t_u32(&t, 2);
    t_u32(&t, 0); /* O_RDONLY */
    t_end(&t, 0);
    tap_ok(rpc(&f, tg, t.len, rg, 4096, &rlen) == 13, "Tlopen -> Rlopen");

    /* Zero-copy Tread: 11-byte header buffer, payload in two pages. */
    {
        uint64_t pg1 = fe_alloc(&f, 4096);
        uint64_t pg2 = fe_alloc(&f, 4096);
        struct fe_seg s[4];
        uint32_t id;
        uint32_t count;
        uint8_t got[8192];
        bool ok;

        t_begin(&t, &f, tg, 116, 4);
        t_u32(&t, 2);
        t_u64(&t, 0);
        t_u32(&t, 8192);
        t_end(&t, 0);
        s[0] = (struct fe_seg){tg, t.len, false};
        s[1] = (struct fe_seg){rg, 11, true};
        s[2] = (struct fe_seg){pg1, 4096, true};
        s[3] = (struct fe_seg){pg2, 4096, true};
        fe_publish(&f, fe_chain(&f, s, 4, false));
        fe_kick(&f);
        ok = fe_used(&f, &id, &rlen) == 0;
        count = get_u32(r + 7);
        memcpy(got, fe_ptr(&f, pg1), 4096);
        memcpy(got + 4096, fe_ptr(&f, pg2), 4096);
        tap_ok(ok && r[4] == 117 && count == 8192 && rlen == 11 + 8192 &&
                   memcmp(got, data, 8192) == 0,
               "zero-copy Tread: 8192 bytes straight into the page buffers");

        t_begin(&t, &f, tg, 116, 5);
        t_u32(&t, 2);
        t_u64(&t, 8192);
        t_u32(&t, 8192);
        t_end(&t, 0);
        fe_publish(&f, fe_chain(&f, s, 4, true));
        fe_kick(&f);
        ok = fe_used(&f, &id, &rlen) == 0;
        count = get_u32(r + 7);
        tap_ok(ok && r[4] == 117 && count == FILE_LEN - 8192 &&
                   memcmp(fe_ptr(&f, pg1), data + 8192, count) == 0,
               "Tread at the end through an indirect table: %u bytes", count);
    }

    /* Create a file and Twrite to it with the payload in two buffers. */
    t_begin(&t, &f, tg, 110, 6);
    t_u32(&t, 1);
    t_u32(&t, 3);
    memcpy(t.p + t.len, "\x00\x00", 2);
    t.len += 2;
    t_end(&t, 0);
    tap_ok(rpc(&f, tg, t.len, rg, 4096, &rlen) == 111, "Twalk clone");
    t_begin(&t, &f, tg, 14, 7);
    t_u32(&t, 3);
    t_str(&t, "new.txt");
    t_u32(&t, 01 | 0100); /* O_WRONLY | O_CREAT */
    t_u32(&t, 0644);
    t_u32(&t, 0);
    t_end(&t, 0);
    tap_ok(rpc(&f, tg, t.len, rg, 4096, &rlen) == 15, "Tlcreate new.txt");
    {
        uint64_t p1 = fe_alloc(&f, 4096);
        uint64_t p2 = fe_alloc(&f, 4096);
        struct fe_seg s[4];
        uint32_t id;
        uint8_t back[5000];
        bool ok;

        memcpy(fe_ptr(&f, p1), data, 3000);
        memcpy(fe_ptr(&f, p2), data + 3000, 2000);
        t_begin(&t, &f, tg, 118, 8);
        t_u32(&t, 3);
        t_u64(&t, 0);
        t_u32(&t, 5000);
        t_end(&t, 5000);
        s[0] = (struct fe_seg){tg, t.len, false};
        s[1] = (struct fe_seg){p1, 3000, false};
        s[2] = (struct fe_seg){p2, 2000, false};
        s[3] = (struct fe_seg){rg, 64, true};
        fe_publish(&f, fe_chain(&f, s, 4, false));
        fe_kick(&f);
        ok = fe_used(&f, &id, &rlen) == 0;
        snprintf(path, sizeof(path), "%s/new.txt", export_dir);
        fd = open(path, O_RDONLY);
        tap_ok(ok && r[4] == 119 && get_u32(r + 7) == 5000 && fd >= 0 &&
                   read(fd, back, sizeof(back)) == 5000 &&
                   memcmp(back, data, 5000) == 0,
               "zero-copy Twrite: 5000 bytes from two payload buffers");
        if (fd >= 0) {
            close(fd);
        }
    }

    t_begin(&t, &f, tg, 120, 9);
    t_u32(&t, 2);
    t_end(&t, 0);
    tap_ok(rpc(&f, tg, t.len, rg, 4096, &rlen) == 121, "Tclunk");

    /* An undecodable message: returned with len 0, then a new session. */
    t_begin(&t, &f, tg, 100, 10);
    t_u32(&t, 65536);
    t_end(&t, 0);
    memcpy(t.p, "\xff\x00\x00\x00", 4); /* size disagrees with the chain */
    tap_ok(rpc(&f, tg, t.len, rg, 4096, &rlen) == -EPROTO && rlen == 0,
           "size mismatch: chain returned with len 0");
    tap_ok(session(&f, tg, rg), "new 9P session after the bad message");
    fe_close(&f);

    /* Reconnect: the old session is closed, a new device starts clean. */
    tap_ok(fe_connect(&f, sock_path) == 0 &&
               fe_setup(&f, VHU_FEATURES, 128) == 0,
           "reconnect: setup");
    tg = fe_alloc(&f, 4096);
    rg = fe_alloc(&f, 4096);
    tap_ok(session(&f, tg, rg), "reconnect: Tversion + Tattach");

    /* Without busy-poll the device asks for a kick whenever it found its
     * ring empty; on a loaded machine the front-end often publishes the
     * next request before the device looked (it was preempted by the
     * front-end it woke), so the kicks are only reported. */
    {
        unsigned good = getattr_loop(&f, tg, rg, 500, 0);

        tap_ok(good == 500, "no busy-poll: %u of 500 replies", good);
        tap_diag("no busy-poll: %lu kicks, %lu not needed", f.kicks,
                 f.unkicked);
    }
    fe_close(&f);

    /* Busy-poll: a guest that waits for each reply has its next request
     * taken from the ring without a kick. */
    {
        struct bp_group grp;
        struct vhu_opts o2 = o;
        struct vhu_server *vs2 = NULL;
        char sock2[160];
        unsigned long total = 0;
        unsigned good = 0;
        unsigned long spins;
        bool vg = getenv("VIRTFS_TEST_VALGRIND") != NULL;

        bp_group_init(&grp, 200);
        snprintf(sock2, sizeof(sock2), "%s.bp.sock", export_dir);
        o2.socket_path = sock2;
        o2.bp = &grp;
        tap_ok(vhu_server_new(srv, &o2, &vs2) == 0 &&
                   vhu_server_start(vs2) == 0 && fe_connect(&f, sock2) == 0 &&
                   fe_setup(&f, VHU_FEATURES, 256) == 0,
               "busy-poll: device with a 200 us window");
        tg = fe_alloc(&f, 4096);
        rg = fe_alloc(&f, 4096);
        tap_ok(session(&f, tg, rg), "busy-poll: Tversion + Tattach");
        /* in one round of requests, at least a quarter caught spinning
         * and not kicked; a loaded machine pauses the spinning (each
         * preemption of a spin doubles the pause, up to 1 s), so rounds
         * go on for up to 30 s to see it work once the load has passed */
        bool caught = false;
        uint64_t t_end = bp_now_ns() + 30 * 1000000000ull;
        int round = 0;

        for (; !caught && (vg ? round < 1 : round < 8 || bp_now_ns() < t_end);
             round++) {
            unsigned long n = vg ? 200 : 2000;
            unsigned long s0 = atomic_load(&grp.spins);
            unsigned long u0 = f.unkicked;

            good += getattr_loop(&f, tg, rg, (unsigned)n, 0);
            total += n;
            caught = (atomic_load(&grp.spins) - s0) * 4 >= n &&
                     (f.unkicked - u0) * 4 >= n;
        }
        tap_ok(good == total, "busy-poll: %u of %lu replies", good, total);
        if (vg) {
            /* valgrind runs one thread at a time: the front-end cannot
             * publish while the device spins */
            tap_skip("busy-poll: requests taken without a kick",
                     "under valgrind");
        } else {
            tap_ok(caught,
                   "busy-poll: in a round of requests, a quarter taken "
                   "without a kick (in all: %lu spins; %lu kicks, %lu not "
                   "needed, %lu requests in %d rounds)",
                   atomic_load(&grp.spins), f.kicks, f.unkicked, total, round);
        }
        spins = atomic_load(&grp.spins);
        usleep(300000);
        spins = atomic_load(&grp.spins) - spins;
        tap_ok(spins <= 1,
               "busy-poll: an idle ring is not watched (%lu spins in 300 ms)",
               spins);
        spins = atomic_load(&grp.spins);
        good = getattr_loop(&f, tg, rg, 20, 20000);
        spins = atomic_load(&grp.spins) - spins;
        tap_ok(good == 20 && spins <= 2,
               "busy-poll: requests 20 ms apart are not waited for (%lu "
               "spins for 20)",
               spins);
        /* a front-end that takes the rings out of guest memory (a new
         * table without them: the ring stops, its kick stays), then
         * kicks at once: the device must not look at the stopped ring,
         * whose pointers were into the old, unmapped table */
        good = getattr_loop(&f, tg, rg, 200, 0);
        {
            struct vhu_mem_table mt = {.nregions = 1};
            uint64_t feat = 0;
            int ack;

            mt.regions[0] =
                (struct vhu_mem_desc){.gpa = FE_REGION,
                                      .size = FE_REGION,
                                      .uaddr = (uintptr_t)f.ram + FE_REGION,
                                      .mmap_offset = FE_REGION};
            ack = fe_ack(&f, VHU_SET_MEM_TABLE, &mt, 8 + 32, &f.memfd, 1);
            /* kicks 100 us apart: each wake comes within the window
             * (a spin may start whenever no pause holds it back) */
            for (int i = 0; i < 200; i++) {
                fe_kick(&f);
                usleep(100);
            }
            tap_ok(good == 200 &&
                       fe_get_u64(&f, VHU_GET_FEATURES, &feat) == 0 &&
                       feat != 0,
                   "busy-poll: kicks on a ring stopped by a table without it "
                   "(ack %d): the device still answers",
                   ack);
        }
        fe_close(&f);
        vhu_server_free(vs2);
    }

    vhu_server_free(vs);
    p9s_server_free(srv);
    be->ops->destroy(be);
    unlink(path);
    snprintf(path, sizeof(path), "%s/hello.txt", export_dir);
    unlink(path);
    rmdir(export_dir);
    return tap_done();
}
