/* SPDX-License-Identifier: MIT */
/*
 * Host-side file helpers of the tests (support/fs.h).
 */
#include "support/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t
th_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
th_rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    remove(p);
    return 0;
}

void
th_rmtree(const char *path)
{
    nftw(path, th_rm_cb, 64, FTW_DEPTH | FTW_PHYS);
}

/* A fresh temporary directory; the returned string is static storage
 * owned by the caller (strdup'ed). */
int
th_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n - 1; /* the DIR's own */
}

char *
th_mkdtemp(const char *tag)
{
    char tmpl[128];

    snprintf(tmpl, sizeof(tmpl), "/tmp/vfst-%s-XXXXXX", tag);
    if (mkdtemp(tmpl) == NULL) {
        perror("mkdtemp");
        exit(99);
    }
    return strdup(tmpl);
}

int
th_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ssize_t n;

    if (fd < 0) {
        return -errno;
    }
    n = write(fd, data, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -EIO;
}

/* Read a whole file (up to size-1 bytes, NUL-terminated); length or -errno. */
ssize_t
th_read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY);
    size_t got = 0;

    if (fd < 0) {
        return -errno;
    }
    while (got + 1 < size) {
        ssize_t n = read(fd, buf + got, size - 1 - got);

        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    close(fd);
    return (ssize_t)got;
}

bool
th_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* FNV-1a over a tree: names, types, modes, sizes, contents, link targets. */
static uint64_t th_tree_hash_acc;

static void
th_fnv(const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++) {
        /* clang-analyzer-14 cannot read one byte of a uint64_t[] it saw
         * initialised (th_hash_dir's v[]) and calls it garbage */
        /* NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign) */
        th_tree_hash_acc ^= b[i];
        th_tree_hash_acc *= 0x100000001b3ULL;
    }
}

static int th_hash_dir(int dfd);

static int
th_namecmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
th_hash_dir(int dfd)
{
    DIR *d = fdopendir(dup(dfd));
    char *names[4096];
    int n = 0;
    struct dirent *e;

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL && n < 4096) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(names[0]), th_namecmp);
    for (int i = 0; i < n; i++) {
        struct stat st;
        char buf[8192];

        th_fnv(names[i], strlen(names[i]) + 1);
        if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0) {
            uint64_t v[2] = {st.st_mode, (uint64_t)st.st_size};

            th_fnv(v, sizeof(v));
            if (S_ISREG(st.st_mode)) {
                int fd = openat(dfd, names[i], O_RDONLY | O_NOFOLLOW);
                ssize_t r;

                while (fd >= 0 && (r = read(fd, buf, sizeof(buf))) > 0) {
                    th_fnv(buf, (size_t)r);
                }
                if (fd >= 0) {
                    close(fd);
                }
            } else if (S_ISLNK(st.st_mode)) {
                ssize_t r = readlinkat(dfd, names[i], buf, sizeof(buf));

                if (r > 0) {
                    th_fnv(buf, (size_t)r);
                }
            } else if (S_ISDIR(st.st_mode)) {
                int sub =
                    openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW);

                if (sub >= 0) {
                    th_hash_dir(sub);
                    close(sub);
                }
            }
        }
        free(names[i]);
    }
    return 0;
}

/* Hash of a whole tree (0 if it cannot be read). */
uint64_t
th_tree_hash(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);

    if (fd < 0) {
        return 0;
    }
    th_tree_hash_acc = 0xcbf29ce484222325ULL;
    th_hash_dir(fd);
    close(fd);
    return th_tree_hash_acc;
}

int
th_become_nobody(void)
{
    if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
        setresuid(65534, 65534, 65534) < 0) {
        return -errno;
    }
    return 0;
}

int
th_chain(const char *top, const char *name, int depth, bool make, int *levels)
{
    int dfd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    *levels = 0;
    while (dfd >= 0 && *levels < depth) {
        int nfd;

        if (make && mkdirat(dfd, name, 0755) < 0) {
            break;
        }
        nfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (nfd < 0) {
            break;
        }
        close(dfd);
        dfd = nfd;
        (*levels)++;
    }
    return dfd;
}
