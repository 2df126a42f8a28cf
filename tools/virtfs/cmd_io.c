/* SPDX-License-Identifier: MIT */
/*
 * virtfs CLI: commands that move file data (cat, get, put).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int
open_read(struct p9c_fid *root, const char *path, struct p9c_fid **out)
{
    struct p9c_fid *f;
    int err;

    err = p9c_walk(root, path, &f);
    if (err != 0) {
        return err;
    }
    err = p9c_open(f, P9_DOTL_RDONLY);
    if (err != 0) {
        p9c_clunk(f);
        return err;
    }
    *out = f;
    return 0;
}

static int
write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Copy a remote open fid to a local fd; returns 0 or -errno, *local set
 * when the error is on the local side. */
static int
copy_out(struct p9c_fid *f, int fd, int *local)
{
    size_t bufsize = p9c_iosize(f);
    char *buf = malloc(bufsize);
    uint64_t off = 0;
    int err = 0;

    *local = 0;
    if (buf == NULL) {
        return -ENOMEM;
    }
    for (;;) {
        ssize_t n = p9c_pread(f, buf, bufsize, off);

        if (n < 0) {
            err = (int)n;
            break;
        }
        if (n == 0) {
            break;
        }
        err = write_all(fd, buf, (size_t)n);
        if (err != 0) {
            *local = 1;
            break;
        }
        off += (uint64_t)n;
    }
    free(buf);
    return err;
}

int
cmd_cat(struct p9c_fid *root, int argc, char **argv)
{
    struct p9c_fid *f;
    int local;
    int rc = 0;
    int err;

    if (argc < 2) {
        fprintf(stderr, "usage: virtfs cat PATH...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        err = open_read(root, argv[i], &f);
        if (err == 0) {
            err = copy_out(f, STDOUT_FILENO, &local);
            p9c_clunk(f);
        }
        if (err != 0) {
            rc = cli_fail("cat", argv[i], err);
        }
    }
    return rc;
}

int
cmd_get(struct p9c_fid *root, int argc, char **argv)
{
    const char *remote;
    const char *local;
    struct p9c_fid *f;
    int islocal;
    int fd;
    int err;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: virtfs get REMOTE [LOCAL]\n");
        return 2;
    }
    remote = argv[1];
    if (argc == 3) {
        local = argv[2];
    } else {
        local = strrchr(remote, '/') ? strrchr(remote, '/') + 1 : remote;
        if (*local == '\0') {
            return cli_fail("get", remote, -EINVAL);
        }
    }
    err = open_read(root, remote, &f);
    if (err != 0) {
        return cli_fail("get", remote, err);
    }
    fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = -errno;
        p9c_clunk(f);
        return cli_fail("get", local, err);
    }
    err = copy_out(f, fd, &islocal);
    p9c_clunk(f);
    if (close(fd) != 0 && err == 0) {
        err = -errno;
        islocal = 1;
    }
    if (err != 0) {
        return cli_fail("get", islocal ? local : remote, err);
    }
    return 0;
}

int
cmd_put(struct p9c_fid *root, int argc, char **argv)
{
    static struct split sp;
    char target[PATH_MAX];
    const char *lbase;
    struct p9c_fid *dir = NULL;
    struct p9c_fid *f = NULL;
    struct p9_rgetattr a;
    struct stat st;
    char *buf = NULL;
    uint64_t off = 0;
    size_t bufsize;
    int fd;
    int err;

    if (argc != 3) {
        fprintf(stderr, "usage: virtfs put LOCAL REMOTE\n");
        return 2;
    }
    fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        err = -errno;
        if (fd >= 0) {
            close(fd);
        }
        return cli_fail("put", argv[1], err);
    }
    /* "put file dir" puts dir/file, like cp */
    snprintf(target, sizeof(target), "%s", argv[2]);
    if (p9c_walk(root, argv[2], &f) == 0) {
        if (p9c_getattr(f, P9_GETATTR_MODE, &a) == 0 && S_ISDIR(a.mode)) {
            lbase = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1];
            if (join_path(target, argv[2], lbase) != 0) {
                p9c_clunk(f);
                close(fd);
                return cli_fail("put", argv[2], -ENAMETOOLONG);
            }
        }
        p9c_clunk(f);
        f = NULL;
    }
    err = walk_parent(root, target, &sp, &dir);
    if (err != 0) {
        goto out;
    }
    err = p9c_walk(dir, "", &f);
    if (err != 0) {
        goto out;
    }
    err =
        p9c_create(f, sp.base, P9_DOTL_WRONLY | P9_DOTL_CREATE | P9_DOTL_TRUNC,
                   st.st_mode & 0777, (uint32_t)-1);
    if (err == -EEXIST) {
        p9c_clunk(f);
        f = NULL;
        err = p9c_walk(dir, sp.base, &f);
        if (err == 0) {
            err = p9c_open(f, P9_DOTL_WRONLY | P9_DOTL_TRUNC);
        }
    }
    if (err != 0) {
        goto out;
    }
    bufsize = p9c_iosize(f);
    buf = malloc(bufsize);
    if (buf == NULL) {
        err = -ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, bufsize);
        ssize_t w;

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            err = -errno;
            close(fd);
            p9c_clunk(f);
            p9c_clunk(dir);
            free(buf);
            return cli_fail("put", argv[1], err);
        }
        if (n == 0) {
            break;
        }
        w = p9c_pwrite(f, buf, (size_t)n, off);
        if (w < 0) {
            err = (int)w;
            goto out;
        }
        if (w != n) {
            err = -EIO;
            goto out;
        }
        off += (uint64_t)n;
    }
out:
    free(buf);
    if (fd >= 0) {
        close(fd);
    }
    if (f != NULL) {
        int cerr = p9c_clunk(f);

        if (err == 0) {
            err = cerr;
        }
    }
    p9c_clunk(dir);
    if (err != 0) {
        return cli_fail("put", target, err);
    }
    return 0;
}
