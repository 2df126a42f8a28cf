/* SPDX-License-Identifier: MIT */
/*
 * virtfs CLI: commands that change the tree (mkdir, rm, mv, ln).
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

int
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

int
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

int
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

int
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

/* chown UID[:GID] PATH...: Tsetattr of the owner (and group) by number. */
int
cmd_chown(struct p9c_fid *root, int argc, char **argv)
{
    struct p9_tsetattr in;
    unsigned long uid;
    unsigned long gid = 0;
    char *end;
    int rc = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: virtfs chown UID[:GID] PATH...\n");
        return 2;
    }
    memset(&in, 0, sizeof(in));
    errno = 0;
    uid = strtoul(argv[1], &end, 10);
    if (*end == ':') {
        char *gs = end + 1;

        gid = strtoul(gs, &end, 10);
        in.valid |= P9_SETATTR_GID;
        if (end == gs) {
            end = gs - 1; /* "U:" is not a group */
        }
    }
    if (errno != 0 || *end != '\0' || end == argv[1] || uid > UINT32_MAX ||
        gid > UINT32_MAX) {
        fprintf(stderr, "virtfs chown: '%s': want UID or UID:GID (numbers)\n",
                argv[1]);
        return 2;
    }
    in.valid |= P9_SETATTR_UID;
    in.uid = (uint32_t)uid;
    in.gid = (uint32_t)gid;
    for (int i = 2; i < argc; i++) {
        struct p9c_fid *f;
        int err = p9c_walk(root, argv[i], &f);

        if (err == 0) {
            err = p9c_setattr(f, &in);
            p9c_clunk(f);
        }
        if (err != 0) {
            rc = cli_fail("chown", argv[i], err);
        }
    }
    return rc;
}
