/* SPDX-License-Identifier: MIT */
/*
 * virtfs CLI: helpers every command uses (errors, mount, paths).
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

    err = p9c_mount(cli.server, cli.msize, cli.uname, cli.uid, cli.aname, conn,
                    root);
    if (err != 0) {
        return cli_fail("connect", cli.server, err);
    }
    return 0;
}

/* Trailing slashes are ignored; -EINVAL for "/", "", "." and "..". */
int
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
int
join_path(char *out, const char *a, const char *b)
{
    size_t la = strlen(a);
    const char *sep = la > 0 && a[la - 1] == '/' ? "" : "/";
    int n = snprintf(out, PATH_MAX, "%s%s%s", a, sep, b);

    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* Walk to the parent of 'path'; sp->base is the last name. */
int
walk_parent(struct p9c_fid *root, const char *path, struct split *sp,
            struct p9c_fid **out)
{
    int err = split_path(path, sp);

    if (err != 0) {
        return err;
    }
    return p9c_walk(root, sp->dir, out);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read all names of an unopened directory fid (clones and opens it). */
int
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

void
free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}
