/* SPDX-License-Identifier: MIT */
/* Guest memory tables: region checks and address translation. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tap.h"
#include "vhost/vhost_mem.h"

#define MB (1u << 20)

int
main(void)
{
    int fd = memfd_create("t", MFD_CLOEXEC);
    struct vhu_mem *m = vhu_mem_new();
    struct vhu_mem *c;
    struct iovec iov[4];
    int n = 0;
    struct vhu_mem_desc a = {.gpa = 0, .size = MB, .uaddr = 0x7f0000000000,
                             .mmap_offset = 0};
    struct vhu_mem_desc b = {.gpa = MB, .size = MB, .uaddr = 0x7f1000000000,
                             .mmap_offset = MB};
    struct vhu_mem_desc x;
    uint8_t *p;

    if (fd < 0 || ftruncate(fd, 2 * MB) < 0 || m == NULL) {
        return 1;
    }
    tap_ok(vhu_mem_add(m, &a, fd) == 0, "region A added");
    tap_ok(vhu_mem_add(m, &b, fd) == 0, "region B added (offset 1 MiB)");
    p = vhu_mem_gpa_ptr(m, 100, 10);
    memcpy(p, "hello", 5);
    tap_ok(memcmp(vhu_mem_uaddr_ptr(m, a.uaddr + 100, 5), "hello", 5) == 0,
           "gpa and uaddr reach the same bytes");
    tap_ok(vhu_mem_gpa_ptr(m, MB - 4, 8) == NULL,
           "contiguous pointer refused across regions");
    tap_ok(vhu_mem_gpa_iov(m, MB - 4, 8, iov, 4, &n) == 0 && n == 2 &&
               iov[0].iov_len == 4 && iov[1].iov_len == 4,
           "range across regions split into two iovecs");
    n = 0;
    tap_ok(vhu_mem_gpa_iov(m, MB - 4, 8, iov, 1, &n) == -E2BIG,
           "iovec limit enforced");
    n = 0;
    tap_ok(vhu_mem_gpa_iov(m, 2 * MB - 4, 8, iov, 4, &n) == -EFAULT,
           "range past the end refused");
    n = 0;
    tap_ok(vhu_mem_gpa_iov(m, UINT64_MAX - 2, 8, iov, 4, &n) == -EFAULT,
           "wrapping range refused");
    n = 0;
    tap_ok(vhu_mem_gpa_iov(m, 5, 0, iov, 4, &n) == 0 && n == 0,
           "empty range adds nothing");
    tap_ok(vhu_mem_uaddr_ptr(m, a.uaddr + MB - 2, 4) == NULL,
           "uaddr range past its region refused");
    tap_ok(vhu_mem_uaddr_ptr(m, 0x1000, 4) == NULL, "unknown uaddr refused");

    x = a;
    x.gpa = MB / 2;
    tap_ok(vhu_mem_add(m, &x, fd) == -EINVAL, "overlap refused");
    x = (struct vhu_mem_desc){.gpa = 4 * MB, .size = 0};
    tap_ok(vhu_mem_add(m, &x, fd) == -EINVAL, "size 0 refused");
    x = (struct vhu_mem_desc){.gpa = 4 * MB, .size = MB, .mmap_offset = 2 * MB};
    tap_ok(vhu_mem_add(m, &x, fd) == -EINVAL, "beyond the file refused");
    x = (struct vhu_mem_desc){.gpa = UINT64_MAX - 10, .size = MB};
    tap_ok(vhu_mem_add(m, &x, fd) == -EINVAL, "gpa wrap refused");
    x = (struct vhu_mem_desc){.gpa = 4 * MB, .size = MB,
                              .uaddr = UINT64_MAX - 10};
    tap_ok(vhu_mem_add(m, &x, fd) == -EINVAL, "uaddr wrap refused");

    c = vhu_mem_clone(m);
    tap_ok(c != NULL && vhu_mem_remove(c, &a) == 0 && c->nregions == 1,
           "clone, then remove a region from the clone");
    tap_ok(vhu_mem_gpa_ptr(c, 100, 5) == NULL &&
               memcmp(vhu_mem_gpa_ptr(m, 100, 5), "hello", 5) == 0,
           "the original still maps it");
    vhu_mem_put(m);
    tap_ok(vhu_mem_gpa_ptr(c, MB + 8, 8) != NULL,
           "the clone keeps its shared mapping after the original goes");
    tap_ok(vhu_mem_remove(c, &a) == -ENOENT, "removing twice: ENOENT");
    for (int i = 0; i < VHU_MEM_MAX_SLOTS; i++) {
        x = (struct vhu_mem_desc){.gpa = 8 * MB + (uint64_t)i * 4096,
                                  .size = 4096};
        if (vhu_mem_add(c, &x, fd) < 0) {
            tap_ok(c->nregions == VHU_MEM_MAX_SLOTS && i == 31,
                   "slot limit: %d regions, then ENOSPC", c->nregions);
            break;
        }
    }
    vhu_mem_put(c);
    close(fd);
    return tap_done();
}
