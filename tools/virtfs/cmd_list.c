/* SPDX-License-Identifier: MIT */
/*
 * virtfs CLI: commands that look (ls, stat, df).
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
            if (p9c_getattr(f, P9_GETATTR_MODE, &a) == 0 && S_ISDIR(a.mode)) {
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

int
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

int
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
        printf("  Qid: type 0x%02x version %u path 0x%" PRIx64 "\n", a.qid.type,
               a.qid.version, a.qid.path);
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

int
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
