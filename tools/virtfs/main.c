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

struct cli_opts cli;

/* ---- main ---------------------------------------------------------------------------- */

/* The commands.  'fn' runs on an attached root; 'raw' ones (bench) make
 * their own connections from the global options. */
static const struct cli_cmd {
    const char *name;
    int (*fn)(struct p9c_fid *root, int argc, char **argv);
    int (*raw)(int argc, char **argv);
} cmds[] = {
    {"ls", cmd_ls, NULL},       {"stat", cmd_stat, NULL},
    {"cat", cmd_cat, NULL},     {"get", cmd_get, NULL},
    {"put", cmd_put, NULL},     {"mkdir", cmd_mkdir, NULL},
    {"rm", cmd_rm, NULL},       {"mv", cmd_mv, NULL},
    {"ln", cmd_ln, NULL},       {"df", cmd_df, NULL},
    {"chown", cmd_chown, NULL}, {"bench", NULL, cmd_bench},
};

static int
run_cmd(const struct cli_cmd *cmd, int argc, char **argv)
{
    struct p9c_conn *conn;
    struct p9c_fid *root;
    int rc;

    if (cmd->raw != NULL) {
        return cmd->raw(argc, argv);
    }
    if (cli_mount(&conn, &root) != 0) {
        return 1;
    }
    rc = cmd->fn(root, argc, argv);
    if (fflush(stdout) != 0 && rc == 0) {
        rc = cli_fail("write", "stdout", -errno);
    }
    p9c_clunk(root);
    p9c_close(conn);
    return rc;
}

static void
usage(FILE *out)
{
    fprintf(
        out,
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
        "  chown UID[:GID] PATH...  change owner (and group) by number\n"
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
    const char *cmd;
    int c;

    cli.server =
        getenv("VIRTFS_SERVER") ? getenv("VIRTFS_SERVER") : DEFAULT_SERVER;
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
                fprintf(stderr, "virtfs: bad --msize '%s' (%u..%u)\n", optarg,
                        P9_MIN_MSIZE, P9_MAX_MSIZE);
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
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(cmd, cmds[i].name) == 0) {
            return run_cmd(&cmds[i], argc - optind, argv + optind);
        }
    }
    fprintf(stderr, "virtfs: unknown command '%s' (see virtfs --help)\n", cmd);
    return 2;
}
