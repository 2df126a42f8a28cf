/* SPDX-License-Identifier: MIT */
/*
 * virtfs CLI: what main.c and bench.c share.
 */
#ifndef VIRTFS_TOOLS_VIRTFS_CLI_H
#define VIRTFS_TOOLS_VIRTFS_CLI_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "virtfs/client.h"

/* Global options, filled by main() before a subcommand runs. */
struct cli_opts {
    const char *server; /* -s */
    const char *aname;  /* -a */
    const char *uname;  /* -u */
    uint32_t uid;       /* --uid */
    uint32_t msize;     /* -m */
};

extern struct cli_opts cli;

/* Print "virtfs: WHAT PATH: ENAME (text)" for err (< 0); returns 1. */
int cli_fail(const char *what, const char *path, int err);

/* Connect, negotiate and attach with the global options. */
int cli_mount(struct p9c_conn **conn, struct p9c_fid **root);

/* mkdir -p relative to root: 0 or -errno. */
int cli_mkdir_p(struct p9c_fid *root, const char *path);

/* Remove everything below the (unopened) directory fid dir. */
int cli_rm_tree(struct p9c_fid *dir);

/*
 * Tunlinkat, or walk + Tremove when the server lacks Tunlinkat
 * (EOPNOTSUPP/ENOSYS, e.g. diod before 1.1).
 */
int cli_unlink(struct p9c_fid *dir, const char *name, uint32_t flags);

/* "a/b/c" split into its parent "a/b" and last name "c". */
struct split {
    char dir[PATH_MAX];
    char base[PATH_MAX];
};

/* Trailing slashes are ignored; -EINVAL for "/", "", "." and "..". */
int split_path(const char *path, struct split *sp);
/* out = "a/b" (out has PATH_MAX bytes): 0 or -ENAMETOOLONG. */
int join_path(char *out, const char *a, const char *b);
/* Walk to the parent of 'path'; sp->base is the last name. */
int walk_parent(struct p9c_fid *root, const char *path, struct split *sp,
                struct p9c_fid **out);

/* All names of an unopened directory fid, sorted (it is cloned and
 * opened); free with free_names(). */
int read_names(struct p9c_fid *dir, char ***names_out, size_t *n_out);
void free_names(char **names, size_t n);

#define MAX_DEPTH 256 /* ls -R / rm -r recursion bound */

/* The commands: one file per group (cmd_list.c, cmd_io.c, cmd_ns.c). */
int cmd_ls(struct p9c_fid *root, int argc, char **argv);
int cmd_stat(struct p9c_fid *root, int argc, char **argv);
int cmd_df(struct p9c_fid *root, int argc, char **argv);
int cmd_cat(struct p9c_fid *root, int argc, char **argv);
int cmd_get(struct p9c_fid *root, int argc, char **argv);
int cmd_put(struct p9c_fid *root, int argc, char **argv);
int cmd_mkdir(struct p9c_fid *root, int argc, char **argv);
int cmd_chown(struct p9c_fid *root, int argc, char **argv);
int cmd_rm(struct p9c_fid *root, int argc, char **argv);
int cmd_mv(struct p9c_fid *root, int argc, char **argv);
int cmd_ln(struct p9c_fid *root, int argc, char **argv);
/* The bench subcommand (bench.c): connects by itself. */
int cmd_bench(int argc, char **argv);

#endif /* VIRTFS_TOOLS_VIRTFS_CLI_H */
