/* SPDX-License-Identifier: MIT */
/*
 * virtfsd's confinement: namespaces and a new root holding only the
 * exports, a minimal capability set, no-new-privs, non-dumpable, and a
 * seccomp allow-list.  See docs/security.md ("Layers").
 */
#ifndef VIRTFSD_SANDBOX_H
#define VIRTFSD_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "virtfs/server.h"

enum sandbox_mode {
    SANDBOX_AUTO,      /* namespace as root or in a user namespace, else none */
    SANDBOX_NAMESPACE, /* mount/pid/net/ipc/uts/cgroup namespaces + pivot_root */
    SANDBOX_CHROOT,    /* no namespaces (refused: see sandbox.c) */
    SANDBOX_NONE,
};

enum sandbox_seccomp {
    SANDBOX_SECCOMP_KILL, /* a call outside the allow-list kills the process */
    SANDBOX_SECCOMP_LOG,  /* allowed, logged by the kernel (audit) */
    SANDBOX_SECCOMP_TRAP, /* SIGSYS: virtfsd logs the call, it fails ENOSYS */
    SANDBOX_SECCOMP_NONE,
};

/* One --uid-map/--gid-map range (virtiofsd's :namespace_id:host_id:count:). */
#define SANDBOX_MAX_IDMAP 8
struct sandbox_idrange {
    uint32_t ns;
    uint32_t host;
    uint32_t count;
};

struct sandbox_opts {
    enum sandbox_mode mode;
    enum sandbox_seccomp seccomp;
    uint64_t caps_add;  /* --modcaps=+cap (bit = capability number) */
    uint64_t caps_drop; /* --modcaps=-cap */
    uint64_t caps_need; /* what the configured exports need beyond the
                           default set (bit = capability number) */
    struct sandbox_idrange uidmap[SANDBOX_MAX_IDMAP]; /* --uid-map */
    struct sandbox_idrange gidmap[SANDBOX_MAX_IDMAP]; /* --gid-map */
    int nuidmap;
    int ngidmap;
};

/* getopt_long values of the options, and their table entries. */
#define SANDBOX_OPT_MODE 0x5301
#define SANDBOX_OPT_SECCOMP 0x5302
#define SANDBOX_OPT_MODCAPS 0x5303
#define SANDBOX_OPT_UIDMAP 0x5304
#define SANDBOX_OPT_GIDMAP 0x5305
#define SANDBOX_LONG_OPTIONS                                       \
    {"sandbox", required_argument, NULL, SANDBOX_OPT_MODE},        \
        {"seccomp", required_argument, NULL, SANDBOX_OPT_SECCOMP}, \
        {"modcaps", required_argument, NULL, SANDBOX_OPT_MODCAPS}, \
        {"uid-map", required_argument, NULL, SANDBOX_OPT_UIDMAP},  \
    {                                                              \
        "gid-map", required_argument, NULL, SANDBOX_OPT_GIDMAP     \
    }
#define SANDBOX_USAGE                                                               \
    "Confinement (see virtfsd(8), docs/security.md):\n"                             \
    "      --sandbox MODE            namespace (default as root), chroot or none\n" \
    "      --seccomp ACTION          kill (default), log, trap or none: what a\n"   \
    "                                system call outside the allow-list does\n"     \
    "      --modcaps=+CAP:-CAP       add or drop capabilities from the kept set\n"  \
    "                                (e.g. --modcaps=+sys_admin:-mknod)\n"          \
    "      --uid-map=:NS:HOST:COUNT: unprivileged start: run in a user namespace\n" \
    "      --gid-map=:NS:HOST:COUNT: with these ranges (newuidmap/newgidmap,\n"     \
    "                                /etc/subuid); repeatable; NS 0 must be mapped\n"

void sandbox_opts_init(struct sandbox_opts *o);
/* One of the options above; prints the error, returns -1 if invalid. */
int sandbox_parse(struct sandbox_opts *o, int opt, const char *arg);

/*
 * With --uid-map/--gid-map (started as non-root): enter a user namespace
 * whose ranges newuidmap/newgidmap write, and become its root, so that the
 * exports opened afterwards get full ownership semantics over the mapped
 * host ids.  Call after option parsing, before any export is opened, while
 * the process is one thread.  No maps: does nothing.  Returns 0 or -errno
 * (the reason logged).
 */
int sandbox_userns(const struct sandbox_opts *o);

/*
 * A file the daemon removes when it exits (Unix socket, pid file): from
 * inside the new root it cannot, so the process that stays outside does,
 * after a clean exit, if the path still names the same file.
 */
void sandbox_cleanup_path(const char *path);

/*
 * Confine the process.  Call while virtfsd is still one thread, after
 * every listening socket exists and every export is open, and before
 * anything reaches a path outside the exports.  In namespace mode the
 * process forks: the caller outside the namespaces stays, forwards
 * signals and exits with the daemon's status (it never returns); the child
 * (pid 1 of the new pid namespace) returns 0 and goes on.  Logs one line
 * with the mode, the seccomp action and the capabilities kept.
 * Returns 0 or -errno (the process must then exit).
 */
int sandbox_enter(const struct sandbox_opts *o,
                  const struct p9s_export *exports, int nexports);

#endif
