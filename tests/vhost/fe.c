/* SPDX-License-Identifier: MIT */
#include "fe.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int
fe_init_common(struct fe *f)
{
    f->memfd = memfd_create("fe-guest-ram", MFD_CLOEXEC);
    if (f->memfd < 0 || ftruncate(f->memfd, FE_RAM) < 0) {
        return -errno;
    }
    f->ram =
        mmap(NULL, FE_RAM, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
    if (f->ram == MAP_FAILED) {
        return -errno;
    }
    f->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    f->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    f->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    f->data_next = FE_DATA_GPA;
    f->timeout_ms = 5000;
    return 0;
}

int
fe_init_sock(struct fe *f, int sock)
{
    memset(f, 0, sizeof(*f));
    f->sock = sock;
    return fe_init_common(f);
}

int
fe_connect(struct fe *f, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    for (int tries = 0; tries < 200; tries++) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return -errno;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            return fe_init_sock(f, fd);
        }
        close(fd);
        usleep(10000);
    }
    return -ECONNREFUSED;
}

void
fe_close(struct fe *f)
{
    if (f->sock >= 0) {
        close(f->sock);
    }
    if (f->ram != NULL && f->ram != MAP_FAILED) {
        munmap(f->ram, FE_RAM);
    }
    close(f->memfd);
    close(f->kick);
    close(f->call);
    close(f->err);
    memset(f, 0, sizeof(*f));
    f->sock = -1;
}

int
fe_send(struct fe *f, uint32_t req, uint32_t flags, const void *p,
        uint32_t size, const int *fds, int nfds)
{
    uint8_t buf[VHU_HDR_SIZE + 4096];
    union {
        char b[CMSG_SPACE(32 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = VHU_HDR_SIZE + size};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (size > 4096 || nfds > 32) {
        return -EINVAL;
    }
    memset(&ctl, 0, sizeof(ctl)); /* CMSG_SPACE's padding goes out too */
    memcpy(buf, &req, 4);
    memcpy(buf + 4, &flags, 4);
    memcpy(buf + 8, &size, 4);
    if (size > 0) {
        memcpy(buf + VHU_HDR_SIZE, p, size);
    }
    if (nfds > 0) {
        struct cmsghdr *c;

        mh.msg_control = ctl.b;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    if (sendmsg(f->sock, &mh, MSG_NOSIGNAL) != (ssize_t)iov.iov_len) {
        return -EIO;
    }
    return 0;
}

static int
recv_full(struct fe *f, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        struct pollfd pfd = {.fd = f->sock, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, f->timeout_ms) <= 0) {
            return -ETIMEDOUT;
        }
        n = recv(f->sock, p, len, 0);
        if (n <= 0) {
            return -EPIPE;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
fe_recv(struct fe *f, uint32_t req, void *p, uint32_t cap)
{
    uint8_t hdr[VHU_HDR_SIZE];
    uint8_t junk[4096];
    uint32_t r;
    uint32_t flags;
    uint32_t size;
    int err = recv_full(f, hdr, sizeof(hdr));

    if (err < 0) {
        return err;
    }
    memcpy(&r, hdr, 4);
    memcpy(&flags, hdr + 4, 4);
    memcpy(&size, hdr + 8, 4);
    if (size > sizeof(junk)) {
        return -EPROTO;
    }
    err = recv_full(f, junk, size);
    if (err < 0) {
        return err;
    }
    if (r != req || flags != (VHU_FLAG_VERSION | VHU_FLAG_REPLY)) {
        return -EPROTO;
    }
    memcpy(p, junk, size < cap ? size : cap);
    return (int)size;
}

int
fe_get_u64(struct fe *f, uint32_t req, uint64_t *v)
{
    int n;
    int err = fe_send(f, req, VHU_FLAG_VERSION, NULL, 0, NULL, 0);

    if (err < 0) {
        return err;
    }
    n = fe_recv(f, req, v, sizeof(*v));
    if (n < 0) {
        return n;
    }
    return n == 8 ? 0 : -EPROTO;
}

int
fe_ack(struct fe *f, uint32_t req, const void *p, uint32_t size, const int *fds,
       int nfds)
{
    uint64_t v;
    int n;
    int err = fe_send(f, req, VHU_FLAG_VERSION | VHU_FLAG_NEED_REPLY, p, size,
                      fds, nfds);

    if (err < 0) {
        return err;
    }
    n = fe_recv(f, req, &v, sizeof(v));
    if (n < 0) {
        return n;
    }
    if (n != 8) {
        return -EPROTO;
    }
    return v == 0 ? 0 : 1;
}

bool
fe_eof(struct fe *f)
{
    uint8_t b[64];
    struct pollfd pfd = {.fd = f->sock, .events = POLLIN};

    for (;;) {
        ssize_t n;

        if (poll(&pfd, 1, f->timeout_ms) <= 0) {
            return false;
        }
        n = recv(f->sock, b, sizeof(b), 0);
        if (n <= 0) {
            return true;
        }
    }
}

int
fe_setup(struct fe *f, uint64_t features, uint16_t num)
{
    struct vhu_mem_table mt = {.nregions = 2};
    struct vhu_vring_state st = {.index = 0};
    struct vhu_vring_addr ad = {.index = 0};
    uint64_t v;
    uint64_t u;
    int fds[2] = {f->memfd, f->memfd};
    int err;

    if ((err = fe_get_u64(f, VHU_GET_FEATURES, &v)) < 0) {
        return err;
    }
    f->features = v & features;
    if ((err = fe_get_u64(f, VHU_GET_PROTOCOL_FEATURES, &u)) < 0) {
        return err;
    }
    if ((err = fe_send(f, VHU_SET_PROTOCOL_FEATURES, VHU_FLAG_VERSION, &u, 8,
                       NULL, 0)) < 0 ||
        (err = fe_send(f, VHU_SET_OWNER, VHU_FLAG_VERSION, NULL, 0, NULL, 0)) <
            0 ||
        (err = fe_ack(f, VHU_SET_FEATURES, &f->features, 8, NULL, 0)) != 0) {
        return err ? err : -1;
    }
    mt.regions[0] = (struct vhu_mem_desc){.gpa = 0,
                                          .size = FE_REGION,
                                          .uaddr = (uintptr_t)f->ram,
                                          .mmap_offset = 0};
    mt.regions[1] =
        (struct vhu_mem_desc){.gpa = FE_REGION,
                              .size = FE_REGION,
                              .uaddr = (uintptr_t)f->ram + FE_REGION,
                              .mmap_offset = FE_REGION};
    if ((err = fe_ack(f, VHU_SET_MEM_TABLE, &mt, 8 + 2 * 32, fds, 2)) != 0) {
        return err;
    }
    f->num = num;
    st.num = num;
    if ((err = fe_ack(f, VHU_SET_VRING_NUM, &st, 8, NULL, 0)) != 0) {
        return err;
    }
    st.num = f->avail_idx;
    if ((err = fe_ack(f, VHU_SET_VRING_BASE, &st, 8, NULL, 0)) != 0) {
        return err;
    }
    ad.desc = (uintptr_t)f->ram + FE_DESC_GPA;
    ad.avail = (uintptr_t)f->ram + FE_AVAIL_GPA;
    ad.used = (uintptr_t)f->ram + FE_USED_GPA;
    if ((err = fe_ack(f, VHU_SET_VRING_ADDR, &ad, sizeof(ad), NULL, 0)) != 0) {
        return err;
    }
    v = 0;
    if ((err = fe_ack(f, VHU_SET_VRING_KICK, &v, 8, &f->kick, 1)) != 0 ||
        (err = fe_ack(f, VHU_SET_VRING_CALL, &v, 8, &f->call, 1)) != 0 ||
        (err = fe_ack(f, VHU_SET_VRING_ERR, &v, 8, &f->err, 1)) != 0) {
        return err;
    }
    st.num = 1;
    return fe_ack(f, VHU_SET_VRING_ENABLE, &st, 8, NULL, 0);
}

void *
fe_ptr(struct fe *f, uint64_t gpa)
{
    return f->ram + gpa;
}

uint64_t
fe_alloc(struct fe *f, uint32_t len)
{
    uint64_t g;

    if (f->data_next + len > FE_RAM) {
        f->data_next = FE_DATA_GPA;
    }
    g = f->data_next;
    f->data_next = (f->data_next + len + 63) & ~63ull;
    return g;
}

void
fe_put_desc(struct fe *f, uint64_t table, uint32_t i, uint64_t addr,
            uint32_t len, uint16_t flags, uint16_t next)
{
    uint8_t *d = fe_ptr(f, table + 16ull * i);

    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

uint16_t
fe_chain(struct fe *f, const struct fe_seg *s, int n, bool indirect)
{
    uint16_t slot = (uint16_t)(f->avail_idx % (f->num / FE_SLOT_DESCS));
    uint16_t head = (uint16_t)(slot * FE_SLOT_DESCS);

    if (indirect) {
        uint64_t table = FE_TABLE_GPA + 4096ull * (slot % 32);

        for (int i = 0; i < n; i++) {
            uint16_t fl = (uint16_t)((s[i].write ? VRING_DESC_F_WRITE : 0) |
                                     (i + 1 < n ? VRING_DESC_F_NEXT : 0));

            fe_put_desc(f, table, (uint32_t)i, s[i].gpa, s[i].len, fl,
                        (uint16_t)(i + 1));
        }
        fe_put_desc(f, FE_DESC_GPA, head, table, (uint32_t)(16 * n),
                    VRING_DESC_F_INDIRECT, 0);
        return head;
    }
    for (int i = 0; i < n && i < (int)FE_SLOT_DESCS; i++) {
        uint16_t fl = (uint16_t)((s[i].write ? VRING_DESC_F_WRITE : 0) |
                                 (i + 1 < n ? VRING_DESC_F_NEXT : 0));

        fe_put_desc(f, FE_DESC_GPA, (uint32_t)(head + i), s[i].gpa, s[i].len,
                    fl, (uint16_t)(head + i + 1));
    }
    return head;
}

void
fe_set_avail_idx(struct fe *f, uint16_t idx)
{
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n((uint16_t *)fe_ptr(f, FE_AVAIL_GPA + 2), idx,
                     __ATOMIC_RELAXED);
    f->avail_idx = idx;
}

void
fe_publish(struct fe *f, uint16_t head)
{
    uint16_t *ring = fe_ptr(f, FE_AVAIL_GPA + 4);

    ring[f->avail_idx % f->num] = head;
    fe_set_avail_idx(f, (uint16_t)(f->avail_idx + 1));
}

void
fe_kick(struct fe *f)
{
    uint64_t one = 1;

    if (write(f->kick, &one, 8) < 0) {
        abort();
    }
}

void
fe_kick_if_needed(struct fe *f, uint16_t old_idx)
{
    bool need;

    /* the index is published before we read the device's wish */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (f->features & (1ull << VIRTIO_RING_F_EVENT_IDX)) {
        uint16_t ev = __atomic_load_n(
            (uint16_t *)fe_ptr(f, FE_USED_GPA + 4 + 8ull * f->num),
            __ATOMIC_RELAXED);

        need = (uint16_t)(f->avail_idx - ev - 1) <
               (uint16_t)(f->avail_idx - old_idx);
    } else {
        need = !(__atomic_load_n((uint16_t *)fe_ptr(f, FE_USED_GPA),
                                 __ATOMIC_RELAXED) &
                 1u); /* VRING_USED_F_NO_NOTIFY */
    }
    if (need) {
        f->kicks++;
        fe_kick(f);
    } else {
        f->unkicked++;
    }
}

uint16_t
fe_used_idx(struct fe *f)
{
    return __atomic_load_n((uint16_t *)fe_ptr(f, FE_USED_GPA + 2),
                           __ATOMIC_ACQUIRE);
}

int
fe_used(struct fe *f, uint32_t *id, uint32_t *len)
{
    struct timespec t0;
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (fe_used_idx(f) != f->last_used) {
            uint8_t *e =
                fe_ptr(f, FE_USED_GPA + 4 + 8ull * (f->last_used % f->num));

            memcpy(id, e, 4);
            memcpy(len, e + 4, 4);
            f->last_used++;
            /* EVENT_IDX: notify me about the next one. */
            *(uint16_t *)fe_ptr(f, FE_AVAIL_GPA + 4 + 2ull * f->num) =
                f->last_used;
            return 0;
        }
        fe_called(f, 20);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((t1.tv_sec - t0.tv_sec) * 1000 +
                (t1.tv_nsec - t0.tv_nsec) / 1000000 >
            f->timeout_ms) {
            return -ETIMEDOUT;
        }
    }
}

static bool
fd_fires(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t v;

    if (poll(&pfd, 1, ms) <= 0) {
        return false;
    }
    return read(fd, &v, 8) == 8;
}

bool
fe_called(struct fe *f, int ms)
{
    return fd_fires(f->call, ms);
}

bool
fe_errored(struct fe *f, int ms)
{
    return fd_fires(f->err, ms);
}
