/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: a guest driver writing anything into its rings and
 * tables.  Input: [0] feature bits (1 = indirect, 2 = event_idx),
 * [1] log2 ring size (mod 9), [2..3] starting avail index, the rest is
 * guest RAM (64 KiB) with the rings at fixed places: desc at 0, avail at
 * 0x1000, used at 0x2000.  Every chain popped is pushed back.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vhost/vhost_mem.h"
#include "vhost/virtqueue.h"

#define RAM (64u << 10)
#define UA 0x500000000ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vhu_mem *mem;
static uint8_t *ram;

static int
setup(void)
{
    struct vhu_mem_desc d = {.gpa = 0, .size = RAM, .uaddr = UA};
    int fd = memfd_create("fuzz-ram", MFD_CLOEXEC);

    if (fd < 0 || ftruncate(fd, RAM) < 0) {
        return -1;
    }
    mem = vhu_mem_new();
    if (mem == NULL || vhu_mem_add(mem, &d, fd) < 0) {
        return -1;
    }
    close(fd);
    ram = vhu_mem_gpa_ptr(mem, 0, RAM);
    return ram != NULL ? 0 : -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static atomic_bool broken;
    struct vq vq;
    struct vq_elem *e;
    uint16_t start;

    if (mem == NULL && setup() < 0) {
        abort();
    }
    if (size < 4) {
        return 0;
    }
    memset(ram, 0, RAM);
    memcpy(ram, data + 4, size - 4 < RAM ? size - 4 : RAM);
    atomic_store(&broken, false);
    if (vq_init(&vq, &broken) < 0) {
        return 0;
    }
    vq.indirect = data[0] & 1;
    vq.event_idx = (data[0] >> 1) & 1;
    memcpy(&start, data + 2, 2);
    vq.last_avail_idx = start;
    vq.desc_ua = UA;
    vq.avail_ua = UA + 0x1000;
    vq.used_ua = UA + 0x2000;
    vq.addr_set = true;
    if (vq_set_num(&vq, 1u << (data[1] % 9)) == 0 && vq_start(&vq, mem) == 0) {
        for (int i = 0; i < 600; i++) {
            int r = vq_pop(&vq, mem, &e);

            if (r != 1) {
                break;
            }
            vq_push(e, e->in_len / 2);
        }
        (void)vq_enable_notify(&vq);
    }
    vq_fini(&vq);
    return 0;
}
