/* SPDX-License-Identifier: MIT */
/*
 * vhost-user device tests against the stub 9P core (stub_server.c): the
 * QEMU message sequence, requests in every chain layout (split headers,
 * indirect tables, zero-copy style payload buffers, buffers straddling two
 * memory regions), EVENT_IDX, drop, GET_VRING_BASE, reconnect, and hostile
 * rings and messages, each of which must be refused without a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fe.h"
#include "tap.h"
#include "util/log.h"
#include "vhost/vhost.h"

#define F_ALL VHU_FEATURES
#define F_PLAIN                                               \
    (VHU_FEATURES & ~((1ull << VIRTIO_RING_F_INDIRECT_DESC) | \
                      (1ull << VIRTIO_RING_F_EVENT_IDX)))

/* stub_server.c: enable its 'held' and 'read late' request types. */
extern bool stub_test_types;

static char sock_path[108];
static struct vhu_server *server;

/* A 9P-shaped message: size[4] type[1] tag[2] body. */
static uint32_t
put_msg(struct fe *f, uint64_t gpa, uint8_t type, uint16_t tag,
        const void *body, uint32_t blen)
{
    uint8_t *p = fe_ptr(f, gpa);
    uint32_t size = 7 + blen;

    memcpy(p, &size, 4);
    p[4] = type;
    memcpy(p + 5, &tag, 2);
    memcpy(p + 7, body, blen);
    return size;
}

static bool
connect_setup(struct fe *f, uint64_t features)
{
    if (fe_connect(f, sock_path) < 0) {
        return false;
    }
    return fe_setup(f, features, 256) == 0;
}

/* Send one request laid out in 'segs' and wait for its completion. */
static int
roundtrip(struct fe *f, const struct fe_seg *segs, int n, bool indirect,
          uint32_t *len)
{
    uint16_t head = fe_chain(f, segs, n, indirect);
    uint32_t id;
    int err;

    fe_publish(f, head);
    fe_kick(f);
    err = fe_used(f, &id, len);
    if (err == 0 && id != head) {
        return -EPROTO;
    }
    return err;
}

static void
test_negotiation(void)
{
    struct fe f;
    uint64_t v = 0;
    struct vhu_config cfg = {.offset = 0, .size = 8};
    struct vhu_config out;
    int n;

    tap_ok(fe_connect(&f, sock_path) == 0, "connect");
    v = 0;
    fe_get_u64(&f, VHU_GET_FEATURES, &v);
    tap_ok(v == VHU_FEATURES,
           "GET_FEATURES = VERSION_1|PROTOCOL_FEATURES|MOUNT_TAG|INDIRECT|"
           "EVENT_IDX (%#llx)",
           (unsigned long long)v);
    tap_ok(fe_get_u64(&f, VHU_GET_PROTOCOL_FEATURES, &v) == 0 &&
               v == VHU_PROTOCOL_FEATURES,
           "GET_PROTOCOL_FEATURES = %#llx", (unsigned long long)v);
    tap_ok(fe_send(&f, VHU_SET_PROTOCOL_FEATURES, VHU_FLAG_VERSION, &v, 8, NULL,
                   0) == 0,
           "SET_PROTOCOL_FEATURES");
    tap_ok(fe_get_u64(&f, VHU_GET_QUEUE_NUM, &v) == 0 && v == 1,
           "GET_QUEUE_NUM = 1");
    tap_ok(fe_get_u64(&f, VHU_GET_MAX_MEM_SLOTS, &v) == 0 && v == 32,
           "GET_MAX_MEM_SLOTS = 32");
    fe_send(&f, VHU_GET_CONFIG, VHU_FLAG_VERSION, &cfg, 12 + 8, NULL, 0);
    n = fe_recv(&f, VHU_GET_CONFIG, &out, sizeof(out));
    tap_ok(n == 20 && out.size == 8 &&
               memcmp(out.data, "\x06\x00virtfs", 8) == 0,
           "GET_CONFIG: le16 6 + \"virtfs\"");
    cfg.offset = 2;
    cfg.size = 10;
    fe_send(&f, VHU_GET_CONFIG, VHU_FLAG_VERSION, &cfg, 12 + 10, NULL, 0);
    n = fe_recv(&f, VHU_GET_CONFIG, &out, sizeof(out));
    tap_ok(n == 22 && memcmp(out.data, "virtfs\0\0\0\0", 10) == 0,
           "GET_CONFIG at an offset, zero padded");
    cfg.offset = 250;
    cfg.size = 10;
    fe_send(&f, VHU_GET_CONFIG, VHU_FLAG_VERSION, &cfg, 12 + 10, NULL, 0);
    n = fe_recv(&f, VHU_GET_CONFIG, &out, sizeof(out));
    tap_ok(n == 0, "GET_CONFIG beyond 256 bytes: empty reply");
    v = 1ull << 40;
    tap_ok(fe_ack(&f, VHU_SET_FEATURES, &v, 8, NULL, 0) == 1,
           "SET_FEATURES with an unoffered bit: failed ACK");
    tap_ok(fe_ack(&f, VHU_SET_CONFIG, &cfg, 12 + 10, NULL, 0) == 1,
           "SET_CONFIG refused (read-only tag)");
    fe_close(&f);
}

static void
test_requests(uint64_t features, const char *what)
{
    struct fe f;
    uint32_t len = 0;
    uint64_t m;
    uint64_t r;
    uint64_t r2;
    uint8_t body[300];
    uint8_t *rp;
    bool ok;

    for (size_t i = 0; i < sizeof(body); i++) {
        body[i] = (uint8_t)(i * 7 + 1);
    }
    tap_ok(connect_setup(&f, features), "%s: setup sequence", what);

    /* Tversion in one buffer, reply in one buffer. */
    m = fe_alloc(&f, 64);
    r = fe_alloc(&f, 64);
    {
        uint8_t tv[14] = {0,   0,   2,   0,   8,   0,   '9',
                          'P', '2', '0', '0', '0', '.', 'L'};
        struct fe_seg s[2] = {{m, put_msg(&f, m, 100, 0xffff, tv, 14), false},
                              {r, 64, true}};

        ok = roundtrip(&f, s, 2, false, &len) == 0;
        rp = fe_ptr(&f, r);
        tap_ok(ok && len == 21 && rp[4] == 101 &&
                   memcmp(rp + 13, "9P2000.L", 8) == 0,
               "%s: Tversion -> Rversion, used len 21 (%u)", what, len);
    }

    /* Header split over three readable buffers, reply over two. */
    m = fe_alloc(&f, 512);
    r = fe_alloc(&f, 100);
    r2 = fe_alloc(&f, 512);
    {
        uint32_t size = put_msg(&f, m, 20, 7, body, 200);
        struct fe_seg s[5] = {{m, 3, false},
                              {m + 3, 5, false},
                              {m + 8, size - 8, false},
                              {r, 100, true},
                              {r2, 512, true}};
        uint8_t *a = fe_ptr(&f, r);
        uint8_t *b = fe_ptr(&f, r2);

        memset(a, 0, 100);
        memset(b, 0, 512);
        ok = roundtrip(&f, s, 5, false, &len) == 0;
        tap_ok(ok && len == size && a[4] == 21 &&
                   memcmp(a + 7, body, 93) == 0 &&
                   memcmp(b, body + 93, 107) == 0,
               "%s: split header, reply spans two buffers", what);
    }

    /* Buffers straddling the boundary between the two memory regions. */
    {
        uint64_t mm = FE_REGION - 100;
        uint64_t rr = FE_REGION + 4096 - 50;
        uint32_t size = put_msg(&f, mm, 30, 9, body, 250);
        struct fe_seg s[2] = {{mm, size, false}, {rr, 300, true}};
        uint8_t *a = fe_ptr(&f, rr);

        ok = roundtrip(&f, s, 2, false, &len) == 0;
        tap_ok(ok && len == size && a[4] == 31 && memcmp(a + 7, body, 250) == 0,
               "%s: buffers crossing two regions are split and joined", what);
        (void)rr;
    }

    /* Zero-copy style Twrite: header + three separate payload buffers. */
    {
        uint64_t h = fe_alloc(&f, 64);
        uint64_t p1 = fe_alloc(&f, 4096);
        uint64_t p2 = fe_alloc(&f, 4096);
        uint64_t p3 = fe_alloc(&f, 4096);
        uint8_t hdr[16];
        uint32_t size = 7 + 16 + 3 * 100;
        struct fe_seg s[6];
        uint8_t *a;

        memset(hdr, 0xab, sizeof(hdr));
        put_msg(&f, h, 118, 3, hdr, 16);
        memcpy(fe_ptr(&f, h), &size, 4);
        memcpy(fe_ptr(&f, p1), body, 100);
        memcpy(fe_ptr(&f, p2), body + 100, 100);
        memcpy(fe_ptr(&f, p3), body + 200, 100);
        r = fe_alloc(&f, 400);
        s[0] = (struct fe_seg){h, 23, false};
        s[1] = (struct fe_seg){p1, 100, false};
        s[2] = (struct fe_seg){p2, 100, false};
        s[3] = (struct fe_seg){p3, 100, false};
        s[4] = (struct fe_seg){r, 11, true};
        s[5] = (struct fe_seg){r + 64, 400, true};
        ok = roundtrip(&f, s, 6, false, &len) == 0;
        a = fe_ptr(&f, r + 64);
        tap_ok(ok && len == size && memcmp(a, hdr + 4, 12) == 0 &&
                   memcmp(a + 12, body, 300) == 0,
               "%s: zero-copy layout (payload in separate buffers)", what);
    }

    /* Indirect table with 12 entries (more than a slot's direct ones). */
    if (features & (1ull << VIRTIO_RING_F_INDIRECT_DESC)) {
        struct fe_seg s[12];
        uint32_t size = put_msg(&f, m, 40, 11, body, 200);
        uint8_t *a;

        for (int i = 0; i < 8; i++) {
            s[i] = (struct fe_seg){m + (uint64_t)i * 26,
                                   i < 7 ? 26 : size - 182, false};
        }
        r = fe_alloc(&f, 256);
        memset(fe_ptr(&f, r), 0, 256);
        for (int i = 8; i < 12; i++) {
            s[i] = (struct fe_seg){r + (uint64_t)(i - 8) * 64, 64, true};
        }
        ok = roundtrip(&f, s, 12, true, &len) == 0;
        a = fe_ptr(&f, r);
        tap_ok(ok && len == size && a[4] == 41 && memcmp(a + 7, body, 200) == 0,
               "%s: indirect table of 12 descriptors", what);
    }

    /* Reply space smaller than the echo: truncated to the space. */
    {
        uint32_t size = put_msg(&f, m, 50, 12, body, 200);
        struct fe_seg s[2] = {{m, size, false}, {r, 40, true}};

        ok = roundtrip(&f, s, 2, false, &len) == 0;
        tap_ok(ok && len == 40, "%s: reply limited to writable space (%u)",
               what, len);
    }

    /* A flushed (dropped) request still comes back, with len 0. */
    {
        uint32_t size = put_msg(&f, m, 108, 13, body, 2);
        struct fe_seg s[2] = {{m, size, false}, {r, 64, true}};

        ok = roundtrip(&f, s, 2, false, &len) == 0;
        tap_ok(ok && len == 0, "%s: dropped request returned with len 0", what);
    }

    /* Many in flight at once: all complete, each exactly once. */
    {
        int n = (int)(f.num / FE_SLOT_DESCS);
        bool seen[256] = {false};
        int got = 0;
        uint32_t id;

        for (int i = 0; i < n; i++) {
            uint64_t mi = fe_alloc(&f, 64);
            uint64_t ri = fe_alloc(&f, 64);
            struct fe_seg s[2] = {
                {mi, put_msg(&f, mi, 60, (uint16_t)i, body, 20), false},
                {ri, 64, true}};

            fe_publish(&f, fe_chain(&f, s, 2, false));
        }
        fe_kick(&f);
        for (int i = 0; i < n; i++) {
            if (fe_used(&f, &id, &len) != 0 || id >= 256 || seen[id] ||
                len != 27) {
                break;
            }
            seen[id] = true;
            got++;
        }
        tap_ok(got == n, "%s: %d concurrent requests all completed (%d)", what,
               n, got);
    }

    /* Notifications: with EVENT_IDX, none when used_event is ahead. */
    if (features & (1ull << VIRTIO_RING_F_EVENT_IDX)) {
        uint16_t *used_event = fe_ptr(&f, FE_AVAIL_GPA + 4 + 2ull * f.num);
        uint32_t size = put_msg(&f, m, 70, 14, body, 2);
        struct fe_seg s[2] = {{m, size, false}, {r, 64, true}};
        uint16_t before = fe_used_idx(&f);
        uint32_t id;

        while (fe_called(&f, 50)) {
        }
        *used_event = (uint16_t)(f.last_used + 5);
        fe_publish(&f, fe_chain(&f, s, 2, false));
        fe_kick(&f);
        for (int i = 0; i < 200 && fe_used_idx(&f) == before; i++) {
            usleep(5000);
        }
        tap_ok(fe_used_idx(&f) != before && !fe_called(&f, 100),
               "%s: no interrupt while used_event is ahead", what);
        fe_used(&f, &id, &len); /* sets used_event = last_used */
        fe_publish(&f, fe_chain(&f, s, 2, false));
        fe_kick(&f);
        tap_ok(fe_called(&f, 2000), "%s: interrupt when used_event is met",
               what);
        fe_used(&f, &id, &len);
    }

    /* GET_VRING_BASE stops the ring and reports the avail index. */
    {
        struct vhu_vring_state st = {.index = 0};
        int n;

        fe_send(&f, VHU_GET_VRING_BASE, VHU_FLAG_VERSION, &st, 8, NULL, 0);
        n = fe_recv(&f, VHU_GET_VRING_BASE, &st, sizeof(st));
        tap_ok(n == 8 && st.num == f.avail_idx,
               "%s: GET_VRING_BASE = last avail index %u (%u)", what,
               f.avail_idx, st.num);
    }
    fe_close(&f);
}

/* Start a device, break its ring with 'bad', check it refuses cleanly. */
typedef void bad_ring_fn(struct fe *f);

static void
hostile_ring(const char *what, uint64_t features, bad_ring_fn *bad)
{
    struct fe f;
    uint64_t v;
    uint16_t used;

    if (!connect_setup(&f, features)) {
        tap_ok(false, "hostile ring %s: setup", what);
        fe_close(&f);
        return;
    }
    f.timeout_ms = 300;
    used = fe_used_idx(&f);
    bad(&f);
    fe_kick(&f);
    tap_ok(fe_errored(&f, 2000) && fe_used_idx(&f) == used &&
               fe_get_u64(&f, VHU_GET_FEATURES, &v) == 0,
           "hostile ring refused: %s (err eventfd, no used entry, device "
           "still answers)",
           what);
    fe_close(&f);
}

static void
bad_loop(struct fe *f)
{
    uint64_t b = fe_alloc(f, 64);

    fe_put_desc(f, FE_DESC_GPA, 0, b, 16, VRING_DESC_F_NEXT, 1);
    fe_put_desc(f, FE_DESC_GPA, 1, b, 16, VRING_DESC_F_NEXT, 0);
    fe_publish(f, 0);
}

static void
bad_head(struct fe *f)
{
    fe_publish(f, 300);
}

static void
bad_next(struct fe *f)
{
    fe_put_desc(f, FE_DESC_GPA, 0, fe_alloc(f, 64), 16, VRING_DESC_F_NEXT, 256);
    fe_publish(f, 0);
}

static void
bad_addr(struct fe *f)
{
    fe_put_desc(f, FE_DESC_GPA, 0, FE_RAM + 4096, 16, 0, 0);
    fe_publish(f, 0);
}

static void
bad_wrap(struct fe *f)
{
    fe_put_desc(f, FE_DESC_GPA, 0, UINT64_MAX - 8, 32, 0, 0);
    fe_publish(f, 0);
}

static void
bad_huge(struct fe *f)
{
    fe_put_desc(f, FE_DESC_GPA, 0, FE_DATA_GPA, 0xffffffffu, 0, 0);
    fe_publish(f, 0);
}

static void
bad_total(struct fe *f)
{
    /* 100 x 1 MiB, each valid, 100 MiB in total. */
    for (uint32_t i = 0; i < 100; i++) {
        fe_put_desc(f, FE_TABLE_GPA, i, 0x100000, 1u << 20,
                    i < 99 ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    }
    fe_put_desc(f, FE_DESC_GPA, 0, FE_TABLE_GPA, 1600, VRING_DESC_F_INDIRECT,
                0);
    fe_publish(f, 0);
}

static void
bad_nested(struct fe *f)
{
    fe_put_desc(f, FE_TABLE_GPA, 0, FE_TABLE_GPA + 4096, 16,
                VRING_DESC_F_INDIRECT, 0);
    fe_put_desc(f, FE_DESC_GPA, 0, FE_TABLE_GPA, 16, VRING_DESC_F_INDIRECT, 0);
    fe_publish(f, 0);
}

static void
bad_indirect_len(struct fe *f)
{
    fe_put_desc(f, FE_DESC_GPA, 0, FE_TABLE_GPA, 24, VRING_DESC_F_INDIRECT, 0);
    fe_publish(f, 0);
}

static void
bad_indirect_next(struct fe *f)
{
    fe_put_desc(f, FE_TABLE_GPA, 0, fe_alloc(f, 64), 16, 0, 0);
    fe_put_desc(f, FE_DESC_GPA, 0, FE_TABLE_GPA, 16,
                VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    fe_publish(f, 0);
}

static void
bad_indirect_addr(struct fe *f)
{
    fe_put_desc(f, FE_DESC_GPA, 0, FE_RAM - 8, 64, VRING_DESC_F_INDIRECT, 0);
    fe_publish(f, 0);
}

static void
bad_indirect_loop(struct fe *f)
{
    uint64_t b = fe_alloc(f, 64);

    for (uint32_t i = 0; i < 4; i++) {
        fe_put_desc(f, FE_TABLE_GPA, i, b, 8, VRING_DESC_F_NEXT,
                    (uint16_t)((i + 1) % 4));
    }
    fe_put_desc(f, FE_DESC_GPA, 0, FE_TABLE_GPA, 64, VRING_DESC_F_INDIRECT, 0);
    fe_publish(f, 0);
}

static void
bad_order(struct fe *f)
{
    uint64_t b = fe_alloc(f, 64);

    fe_put_desc(f, FE_DESC_GPA, 0, b, 16,
                VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    fe_put_desc(f, FE_DESC_GPA, 1, b + 16, 16, 0, 0);
    fe_publish(f, 0);
}

static void
bad_copy_size(struct fe *f)
{
    /* 200 KiB, not a Twrite: more than any request to copy needs. */
    uint64_t m = 0x100000;
    uint32_t size = 200u << 10;
    uint8_t *p = fe_ptr(f, m);

    memcpy(p, &size, 4);
    p[4] = 20;
    fe_put_desc(f, FE_DESC_GPA, 0, m, size, VRING_DESC_F_NEXT, 1);
    fe_put_desc(f, FE_DESC_GPA, 1, m + size, 64, VRING_DESC_F_WRITE, 0);
    fe_publish(f, 0);
}

static void
bad_jump(struct fe *f)
{
    fe_set_avail_idx(f, (uint16_t)(f->avail_idx + 257));
}

/*
 * A driver reusing a head that is still in flight: each pop makes a new
 * request, so one ring could make us hold any number of them.  Fill the
 * ring with requests the stub holds, wait until all are taken, then add
 * one more.
 */
static void
test_head_reuse(void)
{
    struct fe f;
    uint64_t m;
    uint64_t r;
    uint8_t b[4] = {1, 2, 3, 4};
    uint16_t *avail_event;
    uint16_t head;
    uint64_t v;
    int i;

    if (!connect_setup(&f, F_ALL)) {
        tap_ok(false, "head reuse: setup");
        fe_close(&f);
        return;
    }
    m = fe_alloc(&f, 64);
    r = fe_alloc(&f, 64);
    {
        struct fe_seg s[2] = {{m, put_msg(&f, m, 202, 1, b, 4), false},
                              {r, 64, true}};

        head = fe_chain(&f, s, 2, false);
    }
    avail_event = fe_ptr(&f, FE_USED_GPA + 4 + 8ull * f.num);
    for (i = 0; i < f.num; i++) {
        fe_publish(&f, head); /* the same head, 256 times */
    }
    fe_kick(&f);
    for (i = 0; i < 400 &&
                __atomic_load_n(avail_event, __ATOMIC_ACQUIRE) != f.avail_idx;
         i++) {
        usleep(5000);
    }
    tap_ok(i < 400 && !fe_errored(&f, 0),
           "head reuse: %u chains in flight (one per descriptor) accepted",
           f.num);
    fe_publish(&f, head);
    fe_kick(&f);
    tap_ok(fe_errored(&f, 2000) && fe_get_u64(&f, VHU_GET_FEATURES, &v) == 0,
           "head reuse: chain %u in flight refused (err eventfd, device "
           "still answers)",
           f.num + 1);
    fe_close(&f);
}

/*
 * Chains of 8189 buffers each (an indirect table of 4095 descriptors, all
 * but one straddling the two memory regions), held in flight: 128 fit the
 * budget of 2^20 buffers in flight, the 129th is refused.
 */
static void
test_iov_budget(void)
{
    const uint64_t table = FE_TABLE_GPA;
    struct fe f;
    uint64_t m;
    uint8_t *p;
    uint16_t *avail_event;
    uint32_t size = 7 + 4094 * 2;
    uint64_t v;
    int i;

    if (!connect_setup(&f, F_ALL)) {
        tap_ok(false, "buffer budget: setup");
        fe_close(&f);
        return;
    }
    m = fe_alloc(&f, 64);
    p = fe_ptr(&f, m);
    memcpy(p, &size, 4);
    p[4] = 202; /* held by the stub */
    p[5] = p[6] = 0;
    fe_put_desc(&f, table, 0, m, 7, VRING_DESC_F_NEXT, 1);
    for (uint32_t d = 1; d < 4095; d++) {
        fe_put_desc(&f, table, d, FE_REGION - 1, 2,
                    d < 4094 ? VRING_DESC_F_NEXT : 0, (uint16_t)(d + 1));
    }
    fe_put_desc(&f, FE_DESC_GPA, 0, table, 4095 * 16, VRING_DESC_F_INDIRECT, 0);
    avail_event = fe_ptr(&f, FE_USED_GPA + 4 + 8ull * f.num);
    for (i = 0; i < 128; i++) {
        fe_publish(&f, 0);
    }
    fe_kick(&f);
    for (i = 0; i < 400 &&
                __atomic_load_n(avail_event, __ATOMIC_ACQUIRE) != f.avail_idx;
         i++) {
        usleep(5000);
    }
    tap_ok(i < 400 && !fe_errored(&f, 0),
           "buffer budget: 128 chains of 8189 buffers in flight accepted "
           "(%u taken)",
           __atomic_load_n(avail_event, __ATOMIC_ACQUIRE));
    fe_publish(&f, 0);
    fe_kick(&f);
    tap_ok(fe_errored(&f, 2000) && fe_get_u64(&f, VHU_GET_FEATURES, &v) == 0,
           "buffer budget: the 129th refused (err eventfd, device still "
           "answers)");
    fe_close(&f);
}

/*
 * A guest rewriting a request after it was handed over (after the checks
 * of a name, before its use): the core must see the bytes as they were
 * when the chain was popped.  The stub reads a type 203 request only when
 * the next one arrives; the guest changes it in between.
 */
static void
test_stable_request(void)
{
    struct fe f;
    uint64_t m;
    uint64_t r;
    uint64_t m2;
    uint64_t r2;
    uint16_t *avail_event;
    uint32_t id;
    uint32_t len = 0;
    uint8_t *rp;
    bool ok;
    int i;

    if (!connect_setup(&f, F_ALL)) {
        tap_ok(false, "stable request: setup");
        fe_close(&f);
        return;
    }
    avail_event = fe_ptr(&f, FE_USED_GPA + 4 + 8ull * f.num);
    m = fe_alloc(&f, 64);
    r = fe_alloc(&f, 64);
    {
        struct fe_seg s[2] = {{m, put_msg(&f, m, 203, 1, "name", 4), false},
                              {r, 64, true}};

        fe_publish(&f, fe_chain(&f, s, 2, false));
    }
    fe_kick(&f);
    for (i = 0; i < 400 &&
                __atomic_load_n(avail_event, __ATOMIC_ACQUIRE) != f.avail_idx;
         i++) {
        usleep(5000);
    }
    memcpy(fe_ptr(&f, m + 7), "/../", 4); /* the guest rewrites it */
    m2 = fe_alloc(&f, 64);
    r2 = fe_alloc(&f, 64);
    {
        struct fe_seg s[2] = {{m2, put_msg(&f, m2, 20, 2, "next", 4), false},
                              {r2, 64, true}};

        fe_publish(&f, fe_chain(&f, s, 2, false));
    }
    fe_kick(&f);
    ok = fe_used(&f, &id, &len) == 0;
    rp = fe_ptr(&f, r);
    tap_ok(ok && len == 11 && rp[4] == 204 && memcmp(rp + 7, "name", 4) == 0,
           "stable request: the core sees the request as popped, not as the "
           "guest rewrote it (%.4s)",
           (const char *)rp + 7);
    fe_used(&f, &id, &len);
    fe_close(&f);
}

static void
test_hostile_rings(void)
{
    hostile_ring("descriptor loop", F_ALL, bad_loop);
    hostile_ring("head index >= ring size", F_ALL, bad_head);
    hostile_ring("next index >= ring size", F_ALL, bad_next);
    hostile_ring("address outside guest memory", F_ALL, bad_addr);
    hostile_ring("address range wrapping 2^64", F_ALL, bad_wrap);
    hostile_ring("4 GiB descriptor length", F_ALL, bad_huge);
    hostile_ring("100 MiB chain", F_ALL, bad_total);
    hostile_ring("nested indirect", F_ALL, bad_nested);
    hostile_ring("indirect length not a multiple of 16", F_ALL,
                 bad_indirect_len);
    hostile_ring("indirect with NEXT", F_ALL, bad_indirect_next);
    hostile_ring("indirect table outside guest memory", F_ALL,
                 bad_indirect_addr);
    hostile_ring("loop inside an indirect table", F_ALL, bad_indirect_loop);
    hostile_ring("indirect without the feature", F_PLAIN, bad_nested);
    hostile_ring("readable after writable", F_ALL, bad_order);
    hostile_ring("avail index jumps by more than the ring size", F_ALL,
                 bad_jump);
    hostile_ring("200 KiB request other than Twrite", F_ALL, bad_copy_size);
    test_head_reuse();
    test_iov_budget();
    test_stable_request();
}

/* A raw message; the back-end must close the connection. */
static void
expect_disconnect(const char *what, uint32_t req, uint32_t flags, const void *p,
                  uint32_t size, int nfds)
{
    struct fe f;
    int fds[16];

    tap_ok(fe_connect(&f, sock_path) == 0, "%s: connect", what);
    f.timeout_ms = 3000;
    for (int i = 0; i < nfds; i++) {
        fds[i] = f.kick;
    }
    fe_send(&f, req, flags, p, size, fds, nfds);
    tap_ok(fe_eof(&f), "%s: connection closed", what);
    fe_close(&f);
}

static void
test_hostile_messages(void)
{
    struct vhu_vring_state st = {.index = 5, .num = 64};
    uint64_t v = 0;
    uint8_t big[64] = {0};
    struct fe f;
    struct vhu_mem_table mt = {.nregions = 1};
    int fds[2];

    expect_disconnect("SET_FEATURES with 4 payload bytes", VHU_SET_FEATURES,
                      VHU_FLAG_VERSION, &v, 4, 0);
    expect_disconnect("SET_VRING_NUM on vring 5", VHU_SET_VRING_NUM,
                      VHU_FLAG_VERSION, &st, 8, 0);
    expect_disconnect("SET_VRING_CALL with 2 fds", VHU_SET_VRING_CALL,
                      VHU_FLAG_VERSION, &v, 8, 2);
    expect_disconnect("SET_VRING_KICK without fd nor NOFD flag",
                      VHU_SET_VRING_KICK, VHU_FLAG_VERSION, &v, 8, 0);
    expect_disconnect("GET_FEATURES carrying an fd", VHU_GET_FEATURES,
                      VHU_FLAG_VERSION, NULL, 0, 1);
    expect_disconnect("12 fds in one message", VHU_SET_VRING_CALL,
                      VHU_FLAG_VERSION, &v, 8, 12);
    expect_disconnect("bad version in flags", VHU_GET_FEATURES, 0x2, NULL, 0,
                      0);
    big[0] = 9;
    expect_disconnect("SET_MEM_TABLE with 9 regions", VHU_SET_MEM_TABLE,
                      VHU_FLAG_VERSION, big, 40, 0);

    /* Truncated: the header announces 8 bytes, 3 arrive, then EOF. */
    tap_ok(fe_connect(&f, sock_path) == 0, "truncated: connect");
    {
        uint8_t raw[15] = {2, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 1, 2, 3};

        tap_ok(send(f.sock, raw, sizeof(raw), MSG_NOSIGNAL) == 15 &&
                   shutdown(f.sock, SHUT_WR) == 0 && fe_eof(&f),
               "truncated message: connection closed");
    }
    fe_close(&f);

    /* Oversized size field. */
    tap_ok(fe_connect(&f, sock_path) == 0, "oversized: connect");
    {
        uint8_t raw[12] = {2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0};

        tap_ok(send(f.sock, raw, sizeof(raw), MSG_NOSIGNAL) == 12 && fe_eof(&f),
               "payload size 65536: connection closed");
    }
    fe_close(&f);

    /* Refusals that keep the connection. */
    tap_ok(fe_connect(&f, sock_path) == 0, "refusals: connect");
    fe_get_u64(&f, VHU_GET_PROTOCOL_FEATURES, &v);
    fe_send(&f, VHU_SET_PROTOCOL_FEATURES, VHU_FLAG_VERSION, &v, 8, NULL, 0);
    tap_ok(fe_ack(&f, 99, NULL, 0, NULL, 0) == 1,
           "unknown request 99: failed ACK");
    tap_ok(fe_ack(&f, VHU_SET_LOG_BASE, big, 16, NULL, 0) == 1,
           "unsupported SET_LOG_BASE: failed ACK");
    st.index = 0;
    st.num = 100;
    tap_ok(fe_ack(&f, VHU_SET_VRING_NUM, &st, 8, NULL, 0) == 1,
           "ring size 100 (not a power of two) refused");
    st.num = 65536;
    tap_ok(fe_ack(&f, VHU_SET_VRING_NUM, &st, 8, NULL, 0) == 1,
           "ring size 65536 refused");
    big[0] = 0;
    fds[0] = f.memfd;
    mt.regions[0] = (struct vhu_mem_desc){0, 0, 0x1000, 0};
    tap_ok(fe_ack(&f, VHU_SET_MEM_TABLE, &mt, 40, fds, 1) == 1,
           "memory region of size 0 refused");
    mt.regions[0] = (struct vhu_mem_desc){0, FE_RAM * 2, 0x1000, 0};
    tap_ok(fe_ack(&f, VHU_SET_MEM_TABLE, &mt, 40, fds, 1) == 1,
           "memory region beyond the end of its file refused");
    mt.regions[0] = (struct vhu_mem_desc){0, 4096, 0x1000, UINT64_MAX - 100};
    tap_ok(fe_ack(&f, VHU_SET_MEM_TABLE, &mt, 40, fds, 1) == 1,
           "memory region with a wrapping mmap offset refused");
    mt.regions[0] = (struct vhu_mem_desc){UINT64_MAX - 100, 4096, 0x1000, 0};
    tap_ok(fe_ack(&f, VHU_SET_MEM_TABLE, &mt, 40, fds, 1) == 1,
           "memory region with a wrapping gpa refused");
    mt.nregions = 2;
    fds[1] = f.memfd;
    mt.regions[0] = (struct vhu_mem_desc){0, 8192, 0x10000, 0};
    mt.regions[1] = (struct vhu_mem_desc){4096, 8192, 0x20000, 0};
    tap_ok(fe_ack(&f, VHU_SET_MEM_TABLE, &mt, 72, fds, 2) == 1,
           "overlapping memory regions refused");
    fds[0] = f.kick; /* an eventfd is no memory */
    mt.nregions = 1;
    mt.regions[0] = (struct vhu_mem_desc){0, 8, 0x1000, 0};
    tap_ok(fe_ack(&f, VHU_SET_MEM_TABLE, &mt, 40, fds, 1) == 1,
           "memory region backed by an eventfd refused");
    {
        struct vhu_vring_state en = {.index = 0, .num = 0};
        uint64_t k = 0;

        st.num = 64;
        fe_ack(&f, VHU_SET_VRING_NUM, &st, 8, NULL, 0);
        tap_ok(fe_ack(&f, VHU_SET_VRING_KICK, &k, 8, &f.kick, 1) == 1,
               "ring without addresses or memory does not start");
        en.num = 1;
        tap_ok(fe_ack(&f, VHU_SET_VRING_ENABLE, &en, 8, NULL, 0) == 0,
               "SET_VRING_ENABLE still works");
    }
    tap_ok(fe_get_u64(&f, VHU_GET_FEATURES, &v) == 0,
           "connection alive after the refusals");
    fe_close(&f);
}

/*
 * fd abuse (issue 12): a call eventfd the front-end left blocking with its
 * counter full, and kick/call/err fds that are no eventfds.  Before, the
 * worker pushing a reply blocked in write() holding the ring lock, and
 * with it the device thread and every other worker completing a request.
 */
static void
test_hostile_fds(void)
{
    struct fe f;
    uint64_t idx = 0;
    uint64_t v;
    int bad;
    int p[2];

    tap_ok(connect_setup(&f, F_PLAIN), "fd abuse: setup");
    bad = eventfd(0, EFD_CLOEXEC); /* blocking */
    v = UINT64_MAX - 1;
    tap_ok(bad >= 0 && write(bad, &v, 8) == 8 &&
               fe_ack(&f, VHU_SET_VRING_CALL, &idx, 8, &bad, 1) == 0,
           "fd abuse: call eventfd blocking and full, accepted");
    /* The file is shared: make it blocking again after the hand-over. */
    tap_ok(fcntl(bad, F_SETFL, 0) == 0, "fd abuse: O_NONBLOCK cleared again");
    for (int round = 0; round < 2; round++) {
        uint64_t m = fe_alloc(&f, 64);
        uint64_t r = fe_alloc(&f, 64);
        uint8_t b[4] = {1, 2, 3, 4};
        struct fe_seg s[2] = {{m, put_msg(&f, m, 20, 1, b, 4), false},
                              {r, 64, true}};
        uint32_t len = 0;

        tap_ok(roundtrip(&f, s, 2, false, &len) == 0 && len == 11,
               "fd abuse: request %d completes (no interrupt possible)", round);
    }
    tap_ok(fe_get_u64(&f, VHU_GET_FEATURES, &v) == 0,
           "fd abuse: device thread still answers");
    close(bad);

    bad = memfd_create("not-an-eventfd", MFD_CLOEXEC);
    tap_ok(fe_ack(&f, VHU_SET_VRING_KICK, &idx, 8, &bad, 1) == 1,
           "fd abuse: a memfd as kick fd refused (always readable)");
    close(bad);
    tap_ok(pipe2(p, O_CLOEXEC) == 0 &&
               fe_ack(&f, VHU_SET_VRING_CALL, &idx, 8, &p[1], 1) == 1 &&
               fe_ack(&f, VHU_SET_VRING_ERR, &idx, 8, &p[1], 1) == 1,
           "fd abuse: a pipe as call or err fd refused (can block)");
    close(p[0]);
    close(p[1]);
    tap_ok(fe_get_u64(&f, VHU_GET_FEATURES, &v) == 0,
           "fd abuse: connection alive after the refusals");
    fe_close(&f);
}

static void *
free_thread(void *arg)
{
    vhu_server_free(arg);
    return NULL;
}

/*
 * A front-end that never reads its replies (the device thread's send
 * blocks) or stops in the middle of a message: the server must still stop
 * at once (virtfsd's SIGTERM), not hang or wait for the front-end.
 */
static void
stuck_frontend(bool partial)
{
    const char *what = partial ? "half a message" : "unread replies";
    struct vhu_opts o = {.listen_fd = -1, .conn_fd = -1, .tag = "x"};
    struct vhu_server *vs;
    struct timespec ts;
    pthread_t th;
    uint8_t hdr[12] = {
        VHU_GET_FEATURES, 0, 0, 0, VHU_FLAG_VERSION, 0, 0, 0, 0, 0, 0, 0};
    uint64_t sent = 0;
    int sp[2];
    bool stopped;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        tap_ok(false, "%s: socketpair", what);
        return;
    }
    o.conn_fd = sp[1];
    if (vhu_server_new((struct p9s_server *)sp, &o, &vs) < 0 ||
        vhu_server_start(vs) < 0) {
        tap_ok(false, "%s: server", what);
        return;
    }
    if (partial) {
        sent = send(sp[0], hdr, 5, MSG_NOSIGNAL) == 5;
    } else {
        /* Requests until both socket buffers are full. */
        for (int idle = 0; idle < 50;) {
            if (send(sp[0], hdr, sizeof(hdr), MSG_NOSIGNAL | MSG_DONTWAIT) ==
                sizeof(hdr)) {
                sent++;
                idle = 0;
            } else {
                usleep(2000);
                idle++;
            }
        }
    }
    usleep(100000);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 3;
    stopped = pthread_create(&th, NULL, free_thread, vs) == 0 &&
              pthread_timedjoin_np(th, NULL, &ts) == 0;
    tap_ok(sent > 0 && stopped,
           "%s: the server stops within 3 s (%llu requests sent)", what,
           (unsigned long long)sent);
    close(sp[0]);
    if (!stopped) {
        pthread_join(th, NULL); /* ends with the connection */
    }
}

static void
test_reconnect(void)
{
    struct fe f;
    uint32_t len = 0;

    for (int round = 0; round < 3; round++) {
        uint64_t m;
        uint64_t r;
        bool ok = connect_setup(&f, F_ALL);

        if (ok) {
            uint8_t tv[14] = {0,   0,   2,   0,   8,   0,   '9',
                              'P', '2', '0', '0', '0', '.', 'L'};
            struct fe_seg s[2];

            m = fe_alloc(&f, 64);
            r = fe_alloc(&f, 64);
            s[0] =
                (struct fe_seg){m, put_msg(&f, m, 100, 0xffff, tv, 14), false};
            s[1] = (struct fe_seg){r, 64, true};
            ok = roundtrip(&f, s, 2, false, &len) == 0 && len == 21;
        }
        tap_ok(ok, "reconnect round %d: fresh device serves Tversion", round);
        /* Leave requests in flight on purpose, then vanish. */
        fe_close(&f);
    }
}

static void
test_reset(void)
{
    struct fe f;
    uint64_t v;

    tap_ok(connect_setup(&f, F_ALL), "reset: setup");
    bad_loop(&f);
    fe_kick(&f);
    tap_ok(fe_errored(&f, 2000), "reset: ring broken by a loop");
    tap_ok(fe_ack(&f, VHU_RESET_DEVICE, NULL, 0, NULL, 0) == 0,
           "RESET_DEVICE acknowledged");
    f.avail_idx = 0;
    f.last_used = 0;
    memset(fe_ptr(&f, 0), 0, 0x4000);
    tap_ok(fe_get_u64(&f, VHU_GET_FEATURES, &v) == 0 &&
               fe_setup(&f, F_ALL, 128) == 0,
           "device set up again after reset");
    {
        uint64_t m = fe_alloc(&f, 64);
        uint64_t r = fe_alloc(&f, 64);
        uint8_t b[4] = {1, 2, 3, 4};
        struct fe_seg s[2] = {{m, put_msg(&f, m, 20, 1, b, 4), false},
                              {r, 64, true}};
        uint32_t len = 0;

        tap_ok(roundtrip(&f, s, 2, false, &len) == 0 && len == 11,
               "requests work again after reset");
    }
    fe_close(&f);
}

int
main(void)
{
    struct vhu_opts o = {.listen_fd = -1, .conn_fd = -1, .tag = "virtfs"};
    char dir[] = "/tmp/vhost-test-XXXXXX";
    struct vhu_server *vs2;
    int sp[2];

    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_LVL_ERROR);
    stub_test_types = true;
    if (mkdtemp(dir) == NULL) {
        return 1;
    }
    snprintf(sock_path, sizeof(sock_path), "%s/vhost.sock", dir);
    o.socket_path = sock_path;
    /* The stub core ignores the server pointer; it only must be non-NULL. */
    tap_ok(vhu_server_new((struct p9s_server *)dir, &o, &server) == 0 &&
               vhu_server_start(server) == 0,
           "server listens on %s", sock_path);

    test_negotiation();
    test_requests(F_ALL, "indirect+event_idx");
    test_requests(F_PLAIN, "plain");
    test_hostile_rings();
    test_hostile_messages();
    test_hostile_fds();
    stuck_frontend(false);
    stuck_frontend(true);
    test_reset();
    test_reconnect();

    /* Bad options. */
    o.tag = "";
    tap_ok(vhu_server_new((struct p9s_server *)dir, &o, &vs2) == -EINVAL,
           "empty tag refused");
    o.tag = "t";
    o.listen_fd = 3;
    tap_ok(vhu_server_new((struct p9s_server *)dir, &o, &vs2) == -EINVAL,
           "two connection sources refused");

    /* A pre-connected socket (socketpair), served once. */
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
    o = (struct vhu_opts){.listen_fd = -1, .conn_fd = sp[1], .tag = "x"};
    if (vhu_server_new((struct p9s_server *)dir, &o, &vs2) == 0 &&
        vhu_server_start(vs2) == 0) {
        struct fe f;
        uint64_t v;

        fe_init_sock(&f, sp[0]);
        tap_ok(fe_get_u64(&f, VHU_GET_FEATURES, &v) == 0,
               "socketpair connection served");
        fe_close(&f);
        tap_ok(vhu_server_wait(vs2) == 0, "conn_fd server ends with it");
        vhu_server_free(vs2);
    } else {
        tap_ok(false, "conn_fd server");
    }

    vhu_server_free(server);
    tap_ok(access(sock_path, F_OK) != 0, "socket file removed");
    rmdir(dir);
    return tap_done();
}
