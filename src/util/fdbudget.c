/* SPDX-License-Identifier: MIT */
#include "util/fdbudget.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int spares[FDBUDGET_SPARES];
static int nspares;
static bool inited;
static atomic_long first_reserved = -1; /* lowest reserved number, -1: none */
static unsigned reserve_n;

int
fdbudget_init(unsigned reserve)
{
    struct rlimit rl;
    rlim_t cap;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return -errno;
    }
    cap = rl.rlim_cur / 4;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 30)) {
        cap = 1u << 28;
        rl.rlim_cur = 1u << 30;
    }
    if (reserve > cap) {
        reserve = (unsigned)cap;
    }
    pthread_mutex_lock(&lock);
    reserve_n = reserve;
    atomic_store(&first_reserved,
                 reserve > 0 ? (long)rl.rlim_cur - (long)reserve : -1);
    inited = true;
    pthread_mutex_unlock(&lock);
    fdbudget_refill();
    return 0;
}

unsigned
fdbudget_reserve(void)
{
    return reserve_n;
}

int
fdbudget_admit(int fd)
{
    long first = atomic_load(&first_reserved);

    if (fd < 0 || first < 0 || fd < first) {
        return fd;
    }
    close(fd);
    return -EMFILE;
}

int
fdbudget_release(int n)
{
    int done = 0;

    pthread_mutex_lock(&lock);
    while (done < n && nspares > 0) {
        close(spares[--nspares]);
        done++;
    }
    pthread_mutex_unlock(&lock);
    return done;
}

void
fdbudget_refill(void)
{
    pthread_mutex_lock(&lock);
    while (inited && nspares < FDBUDGET_SPARES) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
            break;
        }
        spares[nspares++] = fd;
    }
    pthread_mutex_unlock(&lock);
}
