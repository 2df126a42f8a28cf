/* SPDX-License-Identifier: MIT */
/*
 * virtfs CLI: what main.c and bench.c share.
 */
#ifndef VIRTFS_TOOLS_VIRTFS_CLI_H
#define VIRTFS_TOOLS_VIRTFS_CLI_H

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

/* The bench subcommand (bench.c). */
int cmd_bench(int argc, char **argv);

#endif /* VIRTFS_TOOLS_VIRTFS_CLI_H */
