/* SPDX-License-Identifier: MIT */
/*
 * virtfs: command-line 9P2000.L client built on libp9c.
 *
 *   virtfs [-s ADDR] [-a ANAME] [-u UNAME] [--uid N] [-m MSIZE] CMD [ARGS]
 *
 * Remote paths are relative to the attached root ("/a/b" and "a/b" are the
 * same).  Every failure prints "virtfs: CMD PATH: ENAME (text)" and exits 1.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SERVER "unix:/run/virtfs.sock"
#define MAX_DEPTH 256 /* ls -R / rm -r recursion bound */

struct cli_opts cli;

/* ---- helpers ---------------------------------------------------------------------- */

int
cli_fail(const char *what, const char *path, int err)
{
    const char *name = strerrorname_np(-err);

    fprintf(stderr, "virtfs: %s%s%s: %s (%s)\n", what, path ? " " : "",
            path ? path : "", name ? name : "E?", strerror(-err));
    return 1;
}

int
cli_mount(struct p9c_conn **conn, struct p9c_fid **root)
{
    int err;

    err = p9c_mount(cli.server, cli.msize, cli.uname, cli.uid, cli.aname,
                    conn, root);
    if (err != 0) {
        return cli_fail("connect", cli.server, err);
    }
    return 0;
}

/* "a/b/c" split into its parent "a/b" and last name "c". */
struct split {
    char dir[PATH_MAX];
    char base[PATH_MAX];
};

/* Trailing slashes are ignored; -EINVAL for "/", "", "." and "..". */
static int
split_path(const char *path, struct split *sp)
{
    size_t len = strlen(path);
    char *slash;

    if (len >= PATH_MAX) {
        return -ENAMETOOLONG;
    }
    memcpy(sp->dir, path, len + 1);
    while (len > 0 && sp->dir[len - 1] == '/') {
        sp->dir[--len] = '\0';
    }
    slash = strrchr(sp->dir, '/');
    if (slash == NULL) {
        memcpy(sp->base, sp->dir, len + 1);
        sp->dir[0] = '\0';
    } else {
        memcpy(sp->base, slash + 1, strlen(slash + 1) + 1);
        *slash = '\0';
    }
    if (sp->base[0] == '\0' || strcmp(sp->base, ".") == 0 ||
        strcmp(sp->base, "..") == 0) {
        return -EINVAL;
    }
    return 0;
}

/* out = "a/b" (out has PATH_MAX bytes): 0 or -ENAMETOOLONG. */
static int
join_path(char *out, const char *a, const char *b)
{
    size_t la = strlen(a);
    const char *sep = la > 0 && a[la - 1] == '/' ? "" : "/";
    int n = snprintf(out, PATH_MAX, "%s%s%s", a, sep, b);

    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* Walk to the parent of 'path'; sp->base is the last name. */
static int
walk_parent(struct p9c_fid *root, const char *path, struct split *sp,
            struct p9c_fid **out)
{
    int err = split_path(path, sp);

    if (err != 0) {
        return err;
    }
    return p9c_walk(root, sp->dir, out);
}

static void
mode_string(uint32_t mode, char out[11])
{
    static const char rwx[] = "rwxrwxrwx";
    char t = '?';

    switch (mode & S_IFMT) {
    case S_IFREG: t = '-'; break;
    case S_IFDIR: t = 'd'; break;
    case S_IFLNK: t = 'l'; break;
    case S_IFCHR: t = 'c'; break;
    case S_IFBLK: t = 'b'; break;
    case S_IFIFO: t = 'p'; break;
    case S_IFSOCK: t = 's'; break;
    default: break;
    }
    out[0] = t;
    for (int i = 0; i < 9; i++) {
        out[1 + i] = (mode & (0400u >> i)) ? rwx[i] : '-';
    }
    if (mode & S_ISUID) {
        out[3] = (mode & S_IXUSR) ? 's' : 'S';
    }
    if (mode & S_ISGID) {
        out[6] = (mode & S_IXGRP) ? 's' : 'S';
    }
    if (mode & S_ISVTX) {
        out[9] = (mode & S_IXOTH) ? 't' : 'T';
    }
    out[10] = '\0';
}

static void
fmt_time(uint64_t sec, int with_secs, char *buf, size_t size)
{
    time_t t = (time_t)sec;
    struct tm tm;

    if (localtime_r(&t, &tm) == NULL ||
        strftime(buf, size, with_secs ? "%Y-%m-%d %H:%M:%S" : "%Y-%m-%d %H:%M",
                 &tm) == 0) {
        snprintf(buf, size, "%" PRIu64, sec);
    }
}

/* ---- ls ------------------------------------------------------------------------------ */

struct ls_opts {
    int longfmt;
    int recursive;
};

static void
ls_print(struct p9c_fid *f, const char *name, const struct p9_rgetattr *a,
         const struct ls_opts *o)
{
    char mode[11];
    char when[32];
    char target[PATH_MAX];

    if (!o->longfmt) {
        printf("%s\n", name);
        return;
    }
    mode_string(a->mode, mode);
    fmt_time(a->mtime_sec, 0, when, sizeof(when));
    printf("%s %3" PRIu64 " %5u %5u %10" PRIu64 " %s %s", mode, a->nlink,
           a->uid, a->gid, a->size, when, name);
    if (S_ISLNK(a->mode) && f != NULL &&
        p9c_readlink(f, target, sizeof(target)) >= 0) {
        printf(" -> %s", target);
    }
    printf("\n");
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read all names of an unopened directory fid (clones and opens it). */
static int
read_names(struct p9c_fid *dir, char ***names_out, size_t *n_out)
{
    struct p9c_fid *d;
    struct p9c_dir *it;
    struct p9c_dirent ent;
    char **names = NULL;
    size_t n = 0;
    size_t cap = 0;
    int err;
    int r;

    err = p9c_walk(dir, "", &d);
    if (err != 0) {
        return err;
    }
    err = p9c_open(d, P9_DOTL_RDONLY | P9_DOTL_DIRECTORY);
    if (err != 0) {
        goto out_clunk;
    }
    err = p9c_dir_open(d, 0, &it);
    if (err != 0) {
        goto out_clunk;
    }
    while ((r = p9c_dir_next(it, &ent)) > 0) {
        if (strcmp(ent.name, ".") == 0 || strcmp(ent.name, "..") == 0) {
            continue;
        }
        if (n == cap) {
            char **p;

            cap = cap ? cap * 2 : 64;
            p = realloc(names, cap * sizeof(*p));
            if (p == NULL) {
                r = -ENOMEM;
                break;
            }
            names = p;
        }
        names[n] = strdup(ent.name);
        if (names[n] == NULL) {
            r = -ENOMEM;
            break;
        }
        n++;
    }
    p9c_dir_close(it);
    if (r < 0) {
        err = r;
        for (size_t i = 0; i < n; i++) {
            free(names[i]);
        }
        free(names);
        goto out_clunk;
    }
    if (n > 1) {
        qsort(names, n, sizeof(*names), cmp_str);
    }
    *names_out = names;
    *n_out = n;
out_clunk:
    p9c_clunk(d);
    return err;
}

static void
free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

static int
ls_dir(struct p9c_fid *dir, const char *path, const struct ls_opts *o,
       int depth)
{
    char **names;
    size_t n;
    int rc = 0;
    int err;

    if (depth > MAX_DEPTH) {
        return cli_fail("ls", path, -ELOOP);
    }
    err = read_names(dir, &names, &n);
    if (err != 0) {
        return cli_fail("ls", path, err);
    }
    if (o->recursive) {
        printf("%s:\n", path);
    }
    for (size_t i = 0; i < n; i++) {
        struct p9c_fid *f;
        struct p9_rgetattr a;

        if (!o->longfmt) {
            printf("%s\n", names[i]);
            continue;
        }
        err = p9c_walk(dir, names[i], &f);
        if (err == 0) {
            err = p9c_getattr(f, P9_GETATTR_BASIC, &a);
            if (err == 0) {
                ls_print(f, names[i], &a, o);
            }
            p9c_clunk(f);
        }
        if (err != 0) {
            rc = cli_fail("ls", names[i], err);
        }
    }
    if (o->recursive) {
        for (size_t i = 0; i < n; i++) {
            struct p9c_fid *f;
            struct p9_rgetattr a;
            char sub[PATH_MAX];

            if (p9c_walk(dir, names[i], &f) != 0) {
                continue;
            }
            if (p9c_getattr(f, P9_GETATTR_MODE, &a) == 0 &&
                S_ISDIR(a.mode)) {
                if (join_path(sub, path, names[i]) != 0) {
                    rc = cli_fail("ls", names[i], -ENAMETOOLONG);
                } else {
                    printf("\n");
                    rc |= ls_dir(f, sub, o, depth + 1);
                }
            }
            p9c_clunk(f);
        }
    }
    free_names(names, n);
    return rc;
}

static int
cmd_ls(struct p9c_fid *root, int argc, char **argv)
{
    static const struct option lopts[] = {{"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    struct ls_opts o = {0};
    const char *path = "/";
    struct p9c_fid *f;
    struct p9_rgetattr a;
    int c;
    int rc;
    int err;

    optind = 0;
    while ((c = getopt_long(argc, argv, "+lR", lopts, NULL)) != -1) {
        switch (c) {
        case 'l': o.longfmt = 1; break;
        case 'R': o.recursive = 1; break;
        default:
            fprintf(stderr, "usage: virtfs ls [-l] [-R] [PATH]\n");
            return 2;
        }
    }
    if (optind < argc) {
        path = argv[optind];
    }
    err = p9c_walk(root, path, &f);
    if (err == 0) {
        err = p9c_getattr(f, P9_GETATTR_BASIC, &a);
        if (err != 0) {
            p9c_clunk(f);
        }
    }
    if (err != 0) {
        return cli_fail("ls", path, err);
    }
    if (S_ISDIR(a.mode)) {
        rc = ls_dir(f, path, &o, 0);
    } else {
        ls_print(f, path, &a, &o);
        rc = 0;
    }
    p9c_clunk(f);
    return rc;
}

/* ---- stat, cat, get, put ---------------------------------------------------------- */

static int
cmd_stat(struct p9c_fid *root, int argc, char **argv)
{
    struct p9c_fid *f;
    struct p9_rgetattr a;
    char mode[11];
    char target[PATH_MAX];
    char t1[32], t2[32], t3[32];
    int rc = 0;
    int err;

    if (argc < 2) {
        fprintf(stderr, "usage: virtfs stat PATH...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        err = p9c_walk(root, argv[i], &f);
        if (err != 0) {
            rc = cli_fail("stat", argv[i], err);
            continue;
        }
        err = p9c_getattr(f, P9_GETATTR_ALL, &a);
        if (err != 0) {
            p9c_clunk(f);
            rc = cli_fail("stat", argv[i], err);
            continue;
        }
        mode_string(a.mode, mode);
        fmt_time(a.atime_sec, 1, t1, sizeof(t1));
        fmt_time(a.mtime_sec, 1, t2, sizeof(t2));
        fmt_time(a.ctime_sec, 1, t3, sizeof(t3));
        printf("  File: %s", argv[i]);
        if (S_ISLNK(a.mode) && p9c_readlink(f, target, sizeof(target)) >= 0) {
            printf(" -> %s", target);
        }
        printf("\n  Size: %-12" PRIu64 " Blocks: %-8" PRIu64
               " IO Block: %-6" PRIu64 "\n",
               a.size, a.blocks, a.blksize);
        printf("  Qid: type 0x%02x version %u path 0x%" PRIx64 "\n",
               a.qid.type, a.qid.version, a.qid.path);
        printf("  Mode: (%04o/%s)  Links: %" PRIu64 "  Uid: %u  Gid: %u",
               a.mode & 07777, mode, a.nlink, a.uid, a.gid);
        if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
            printf("  Rdev: 0x%" PRIx64, a.rdev);
        }
        printf("\n  Access: %s.%09" PRIu64 "\n  Modify: %s.%09" PRIu64
               "\n  Change: %s.%09" PRIu64 "\n",
               t1, a.atime_nsec, t2, a.mtime_nsec, t3, a.ctime_nsec);
        printf("  Valid: 0x%" PRIx64 "  Gen: %" PRIu64
               "  Data version: %" PRIu64 "\n",
               a.valid, a.gen, a.data_version);
        p9c_clunk(f);
    }
    return rc;
}

/* Walk to 'path' and open it for reading. */
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

static int
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

static int
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

static int
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
            lbase = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1
                                          : argv[1];
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
    err = p9c_create(f, sp.base, P9_DOTL_WRONLY | P9_DOTL_CREATE | P9_DOTL_TRUNC,
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
            fd = -1;
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

int
cli_unlink(struct p9c_fid *dir, const char *name, uint32_t flags)
{
    struct p9c_fid *f;
    int err = p9c_unlinkat(dir, name, flags);

    if (err != -EOPNOTSUPP && err != -ENOSYS) {
        return err;
    }
    /* servers without Tunlinkat (older diod): walk + Tremove */
    err = p9c_walk(dir, name, &f);
    if (err != 0) {
        return err;
    }
    return p9c_remove(f);
}

/* ---- mkdir, rm, mv, ln, df ----------------------------------------------------------- */

static int
mkdir_p(struct p9c_fid *root, const char *path)
{
    struct p9c_fid *cur;
    struct p9c_fid *next;
    char name[PATH_MAX];
    const char *p = path;
    int err;

    err = p9c_walk(root, "", &cur);
    if (err != 0) {
        return err;
    }
    for (;;) {
        size_t len;

        while (*p == '/') {
            p++;
        }
        len = strcspn(p, "/");
        if (len == 0) {
            break;
        }
        if (len >= sizeof(name)) {
            err = -ENAMETOOLONG;
            break;
        }
        memcpy(name, p, len);
        name[len] = '\0';
        p += len;
        err = p9c_walk(cur, name, &next);
        if (err == -ENOENT) {
            err = p9c_mkdir(cur, name, 0755, (uint32_t)-1, NULL);
            if (err == 0 || err == -EEXIST) {
                err = p9c_walk(cur, name, &next);
            }
        }
        if (err != 0) {
            break;
        }
        p9c_clunk(cur);
        cur = next;
    }
    p9c_clunk(cur);
    return err;
}

int
cli_mkdir_p(struct p9c_fid *root, const char *path)
{
    return mkdir_p(root, path);
}

static int
cmd_mkdir(struct p9c_fid *root, int argc, char **argv)
{
    static struct split sp;
    struct p9c_fid *dir;
    int parents = 0;
    int rc = 0;
    int c;
    int err;

    optind = 0;
    while ((c = getopt(argc, argv, "+p")) != -1) {
        if (c != 'p') {
            fprintf(stderr, "usage: virtfs mkdir [-p] PATH...\n");
            return 2;
        }
        parents = 1;
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: virtfs mkdir [-p] PATH...\n");
        return 2;
    }
    for (int i = optind; i < argc; i++) {
        if (parents) {
            err = mkdir_p(root, argv[i]);
        } else {
            err = walk_parent(root, argv[i], &sp, &dir);
            if (err == 0) {
                err = p9c_mkdir(dir, sp.base, 0755, (uint32_t)-1, NULL);
                p9c_clunk(dir);
            }
        }
        if (err != 0) {
            rc = cli_fail("mkdir", argv[i], err);
        }
    }
    return rc;
}

/* Remove everything inside directory fid 'dir' (not the dir itself). */
static int
rm_tree(struct p9c_fid *dir, const char *path, int depth)
{
    char **names;
    size_t n;
    int err;
    int rc = 0;

    if (depth > MAX_DEPTH) {
        return -ELOOP;
    }
    err = read_names(dir, &names, &n);
    if (err != 0) {
        return err;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct p9c_fid *sub;
        struct p9_rgetattr a;
        uint32_t flags = 0;

        err = p9c_walk(dir, names[i], &sub);
        if (err == 0) {
            err = p9c_getattr(sub, P9_GETATTR_MODE, &a);
            if (err == 0 && S_ISDIR(a.mode)) {
                flags = P9_DOTL_AT_REMOVEDIR;
                err = rm_tree(sub, path, depth + 1);
            }
            p9c_clunk(sub);
        }
        if (err == 0) {
            err = cli_unlink(dir, names[i], flags);
        }
        if (err != 0) {
            rc = err;
        }
    }
    free_names(names, n);
    return rc;
}

int
cli_rm_tree(struct p9c_fid *dir)
{
    return rm_tree(dir, "", 0);
}

static int
cmd_rm(struct p9c_fid *root, int argc, char **argv)
{
    static struct split sp;
    struct p9c_fid *dir;
    struct p9c_fid *f;
    struct p9_rgetattr a;
    int recursive = 0;
    int rc = 0;
    int c;
    int err;

    optind = 0;
    while ((c = getopt(argc, argv, "+rf")) != -1) {
        if (c != 'r') {
            fprintf(stderr, "usage: virtfs rm [-r] PATH...\n");
            return 2;
        }
        recursive = 1;
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: virtfs rm [-r] PATH...\n");
        return 2;
    }
    for (int i = optind; i < argc; i++) {
        err = walk_parent(root, argv[i], &sp, &dir);
        if (err != 0) {
            rc = cli_fail("rm", argv[i], err);
            continue;
        }
        err = p9c_walk(dir, sp.base, &f);
        if (err == 0) {
            err = p9c_getattr(f, P9_GETATTR_MODE, &a);
            if (err == 0 && S_ISDIR(a.mode)) {
                err = recursive ? rm_tree(f, argv[i], 0) : -EISDIR;
                if (err == 0) {
                    p9c_clunk(f);
                    f = NULL;
                    err = cli_unlink(dir, sp.base, P9_DOTL_AT_REMOVEDIR);
                }
            } else if (err == 0) {
                p9c_clunk(f);
                f = NULL;
                err = cli_unlink(dir, sp.base, 0);
            }
            p9c_clunk(f);
        }
        p9c_clunk(dir);
        if (err != 0) {
            rc = cli_fail("rm", argv[i], err);
        }
    }
    return rc;
}

static int
cmd_mv(struct p9c_fid *root, int argc, char **argv)
{
    static struct split os;
    static struct split ns;
    char target[PATH_MAX];
    struct p9c_fid *odir = NULL;
    struct p9c_fid *ndir = NULL;
    struct p9c_fid *f;
    struct p9_rgetattr a;
    int err;

    if (argc != 3) {
        fprintf(stderr, "usage: virtfs mv OLD NEW\n");
        return 2;
    }
    snprintf(target, sizeof(target), "%s", argv[2]);
    if (p9c_walk(root, argv[2], &f) == 0) {
        /* "mv a dir" moves a into dir, like mv(1) */
        if (p9c_getattr(f, P9_GETATTR_MODE, &a) == 0 && S_ISDIR(a.mode) &&
            split_path(argv[1], &os) == 0) {
            if (join_path(target, argv[2], os.base) != 0) {
                p9c_clunk(f);
                return cli_fail("mv", argv[2], -ENAMETOOLONG);
            }
        }
        p9c_clunk(f);
    }
    err = walk_parent(root, argv[1], &os, &odir);
    if (err != 0) {
        return cli_fail("mv", argv[1], err);
    }
    err = walk_parent(root, target, &ns, &ndir);
    if (err != 0) {
        p9c_clunk(odir);
        return cli_fail("mv", target, err);
    }
    err = p9c_renameat(odir, os.base, ndir, ns.base);
    if (err == -EOPNOTSUPP || err == -ENOSYS) {
        /* old servers: Trename on a fid for the source */
        err = p9c_walk(odir, os.base, &f);
        if (err == 0) {
            err = p9c_rename(f, ndir, ns.base);
            p9c_clunk(f);
        }
    }
    p9c_clunk(odir);
    p9c_clunk(ndir);
    if (err != 0) {
        return cli_fail("mv", argv[1], err);
    }
    return 0;
}

static int
cmd_ln(struct p9c_fid *root, int argc, char **argv)
{
    static struct split sp;
    struct p9c_fid *dir;
    struct p9c_fid *f;
    int sym = 0;
    int c;
    int err;

    optind = 0;
    while ((c = getopt(argc, argv, "+s")) != -1) {
        if (c != 's') {
            fprintf(stderr, "usage: virtfs ln [-s] TARGET LINK\n");
            return 2;
        }
        sym = 1;
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: virtfs ln [-s] TARGET LINK\n");
        return 2;
    }
    err = walk_parent(root, argv[optind + 1], &sp, &dir);
    if (err != 0) {
        return cli_fail("ln", argv[optind + 1], err);
    }
    if (sym) {
        err = p9c_symlink(dir, sp.base, argv[optind], (uint32_t)-1, NULL);
    } else {
        err = p9c_walk(root, argv[optind], &f);
        if (err != 0) {
            p9c_clunk(dir);
            return cli_fail("ln", argv[optind], err);
        }
        err = p9c_link(dir, f, sp.base);
        p9c_clunk(f);
    }
    p9c_clunk(dir);
    if (err != 0) {
        return cli_fail("ln", argv[optind + 1], err);
    }
    return 0;
}

static int
cmd_df(struct p9c_fid *root, int argc, char **argv)
{
    struct p9_rstatfs s;
    const char *path = argc > 1 ? argv[1] : "/";
    struct p9c_fid *f;
    uint64_t k;
    int err;

    err = p9c_walk(root, path, &f);
    if (err == 0) {
        err = p9c_statfs(f, &s);
        p9c_clunk(f);
    }
    if (err != 0) {
        return cli_fail("df", path, err);
    }
    k = s.bsize / 1024 ? s.bsize / 1024 : 1;
    printf("%-12s %14s %14s %14s %5s %12s %12s\n", "Filesystem", "1K-blocks",
           "Used", "Available", "Use%", "Inodes", "IFree");
    printf("%-12s %14" PRIu64 " %14" PRIu64 " %14" PRIu64 " %4" PRIu64
           "%% %12" PRIu64 " %12" PRIu64 "\n",
           cli.aname && *cli.aname ? cli.aname : "9p", s.blocks * k,
           (s.blocks - s.bfree) * k, s.bavail * k,
           s.blocks ? (s.blocks - s.bfree) * 100 / s.blocks : 0, s.files,
           s.ffree);
    printf("type 0x%08x bsize %u namelen %u fsid 0x%" PRIx64 "\n", s.type,
           s.bsize, s.namelen, s.fsid);
    return 0;
}

/* ---- main ---------------------------------------------------------------------------- */

static void
usage(FILE *out)
{
    fprintf(out,
"usage: virtfs [OPTIONS] COMMAND [ARGS...]\n"
"\n"
"A command-line 9P2000.L client.  Remote paths are relative to the\n"
"attached tree ('/a/b' and 'a/b' name the same file).\n"
"\n"
"Options:\n"
"  -s, --server ADDR  server address: unix:PATH, tcp:HOST:PORT or fd:N\n"
"                     (default $VIRTFS_SERVER or " DEFAULT_SERVER ")\n"
"  -a, --aname ANAME  tree to attach (default: the server's default, \"\")\n"
"  -u, --uname NAME   user name sent in Tattach (default: your login name)\n"
"      --uid N        numeric uid sent in Tattach (default: your uid)\n"
"  -m, --msize BYTES  msize to propose (default 1048576; the server may\n"
"                     lower it)\n"
"  -h, --help         show this help and exit\n"
"\n"
"Commands:\n"
"  ls [-l] [-R] [PATH]    list a directory (-l long format, -R recursive)\n"
"  stat PATH...           show all attributes of PATH\n"
"  cat PATH...            write files to standard output\n"
"  get REMOTE [LOCAL]     copy a remote file to LOCAL (default: its name)\n"
"  put LOCAL REMOTE       copy a local file to REMOTE (into it if a dir)\n"
"  mkdir [-p] PATH...     create directories (-p: parents, no error if\n"
"                         existing)\n"
"  rm [-r] PATH...        remove files (-r: directories recursively)\n"
"  mv OLD NEW             rename (into NEW if it is a directory)\n"
"  ln [-s] TARGET LINK    hard link, or symbolic link with -s\n"
"  df [PATH]              file system usage (Tstatfs)\n"
"  bench [OPTIONS]        load generator; 'virtfs bench --help' for options\n"
"\n"
"Errors print 'virtfs: COMMAND PATH: ENAME (description)' and exit 1;\n"
"usage errors exit 2.\n");
}

static const char *
default_uname(void)
{
    struct passwd *pw = getpwuid(getuid());

    return pw != NULL ? pw->pw_name : "root";
}

static int
parse_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || v > UINT32_MAX) {
        return -EINVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"server", required_argument, NULL, 's'},
        {"aname", required_argument, NULL, 'a'},
        {"uname", required_argument, NULL, 'u'},
        {"uid", required_argument, NULL, 'U'},
        {"msize", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const struct {
        const char *name;
        int (*fn)(struct p9c_fid *root, int argc, char **argv);
    } cmds[] = {
        {"ls", cmd_ls},       {"stat", cmd_stat}, {"cat", cmd_cat},
        {"get", cmd_get},     {"put", cmd_put},   {"mkdir", cmd_mkdir},
        {"rm", cmd_rm},       {"mv", cmd_mv},     {"ln", cmd_ln},
        {"df", cmd_df},
    };
    struct p9c_conn *conn;
    struct p9c_fid *root;
    const char *cmd;
    int c;
    int rc;

    cli.server = getenv("VIRTFS_SERVER") ? getenv("VIRTFS_SERVER")
                                         : DEFAULT_SERVER;
    cli.aname = "";
    cli.uname = NULL;
    cli.uid = (uint32_t)getuid();
    cli.msize = P9_DEFAULT_MSIZE;
    while ((c = getopt_long(argc, argv, "+s:a:u:m:h", lopts, NULL)) != -1) {
        switch (c) {
        case 's': cli.server = optarg; break;
        case 'a': cli.aname = optarg; break;
        case 'u': cli.uname = optarg; break;
        case 'U':
            if (parse_u32(optarg, &cli.uid) != 0) {
                fprintf(stderr, "virtfs: bad --uid '%s'\n", optarg);
                return 2;
            }
            break;
        case 'm':
            if (parse_u32(optarg, &cli.msize) != 0 ||
                cli.msize < P9_MIN_MSIZE || cli.msize > P9_MAX_MSIZE) {
                fprintf(stderr, "virtfs: bad --msize '%s' (%u..%u)\n",
                        optarg, P9_MIN_MSIZE, P9_MAX_MSIZE);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (cli.uname == NULL) {
        cli.uname = default_uname();
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "bench") == 0) {
        return cmd_bench(argc - optind, argv + optind);
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(cmd, cmds[i].name) != 0) {
            continue;
        }
        if (cli_mount(&conn, &root) != 0) {
            return 1;
        }
        rc = cmds[i].fn(root, argc - optind, argv + optind);
        if (fflush(stdout) != 0 && rc == 0) {
            rc = cli_fail("write", "stdout", -errno);
        }
        p9c_clunk(root);
        p9c_close(conn);
        return rc;
    }
    fprintf(stderr, "virtfs: unknown command '%s' (see virtfs --help)\n",
            cmd);
    return 2;
}
