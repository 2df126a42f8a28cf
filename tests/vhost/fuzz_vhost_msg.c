/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: a front-end sending any message stream.  The input is
 * cut into messages by their headers; each is sent on a socketpair with
 * the fds its request would carry (memfds for memory tables, eventfds for
 * KICK/CALL/ERR), and the device handles it before the next is sent.  A
 * message cut short by the end of the input arrives truncated (then EOF).
 * Built with the stub 9P core.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"
#include "vhost/vhost_user.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* How many fds (and of which kind) a well-formed message would carry. */
static int
make_fds(const uint8_t *msg, size_t len, int *fds)
{
    uint32_t req;
    uint32_t n = 0;
    uint64_t u = 0;

    if (len < VHU_HDR_SIZE) {
        return 0;
    }
    memcpy(&req, msg, 4);
    if (len >= VHU_HDR_SIZE + 8) {
        memcpy(&u, msg + VHU_HDR_SIZE, 8);
    }
    switch (req) {
    case VHU_SET_MEM_TABLE:
        n = (uint32_t)u;
        n = n > VHU_MAX_FDS ? VHU_MAX_FDS : n;
        for (uint32_t i = 0; i < n; i++) {
            fds[i] = memfd_create("fuzz-ram", MFD_CLOEXEC);
            if (fds[i] < 0 || ftruncate(fds[i], 65536) < 0) {
                n = i + (fds[i] >= 0);
                break;
            }
        }
        return (int)n;
    case VHU_ADD_MEM_REG:
        fds[0] = memfd_create("fuzz-ram", MFD_CLOEXEC);
        if (fds[0] >= 0 && ftruncate(fds[0], 65536) < 0) {
            close(fds[0]);
            return 0;
        }
        return fds[0] >= 0;
    case VHU_SET_VRING_KICK:
    case VHU_SET_VRING_CALL:
    case VHU_SET_VRING_ERR:
        if (u & VHU_VRING_NOFD) {
            return 0;
        }
        fds[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        return fds[0] >= 0;
    default: return 0;
    }
}

static void
send_msg(int sock, const uint8_t *p, size_t len)
{
    union {
        char b[CMSG_SPACE(VHU_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    int fds[VHU_MAX_FDS];
    int n = make_fds(p, len, fds);

    if (n > 0) {
        struct cmsghdr *c;

        mh.msg_control = ctl.b;
        mh.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)n * sizeof(int));
    }
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0) {
        /* the device side is gone or full: it will see what it has */
    }
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
}

static void
drain(int sock)
{
    uint8_t b[4096];

    while (recv(sock, b, sizeof(b), MSG_DONTWAIT) > 0) {
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vhu_dev *d;
    size_t off = 0;
    int sv[2];

    if (size > 65536) {
        return 0;
    }
    log_set_level(LOG_LVL_ERROR);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return 0;
    }
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    d = vhu_dev_new((struct p9s_server *)sv, sv[1], "fuzz");
    if (d == NULL) {
        close(sv[0]);
        return 0;
    }
    for (int i = 0; i < 4096; i++) {
        size_t len = size - off;
        uint32_t psize;

        if (len >= VHU_HDR_SIZE) {
            memcpy(&psize, data + off + 8, 4);
            if (psize <= len - VHU_HDR_SIZE) {
                len = VHU_HDR_SIZE + psize;
            }
        }
        if (len > 0) {
            send_msg(sv[0], data + off, len);
            off += len;
        }
        if (off >= size) {
            shutdown(sv[0], SHUT_WR);
        }
        if (vhu_dev_dispatch(d) != 0) {
            break;
        }
        for (int q = 0; q < VHU_NUM_VQS; q++) {
            vhu_dev_process(d, q);
        }
        drain(sv[0]);
    }
    vhu_dev_close(d);
    close(sv[0]);
    return 0;
}
