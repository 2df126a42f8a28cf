/* SPDX-License-Identifier: MIT */
/*
 * virtfsd: export host directories to VM guests over 9P2000.L.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/capability.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sandbox.h"
#include "svc.h"
#include "transport/stream.h"
#include "vhost/vhost.h"
#include "util/busypoll.h"
#include "util/fdbudget.h"
#include "util/log.h"
#include "util/sock.h"
#include "backend/overlay/overlay.h"
#include "virtfs/backend.h"
#include "virtfs/p9.h"
#include "virtfs/server.h"

#define MAX_EXPORTS 64
#define MAX_LISTEN 16
#define MAX_VHOST 16
#define DEFAULT_TAG "virtfs"

/* set by signal handlers, read by the loop thread: lock-free atomics are
 * both async-signal-safe and free of data races across threads */
static atomic_int stop_flag;
static atomic_int stats_flag;
static_assert(ATOMIC_INT_LOCK_FREE == 2, "signal flags must be lock-free");

/* long-only options of the node descriptor cache */
enum { OPT_RLIMIT_NOFILE = 0x200, OPT_FILE_HANDLES, OPT_DIR_CACHE };

static void
on_stop(int sig)
{
    (void)sig;
    atomic_store_explicit(&stop_flag, 1, memory_order_relaxed);
}

static void
on_stats(int sig)
{
    (void)sig;
    atomic_store_explicit(&stats_flag, 1, memory_order_relaxed);
}

/* long-only options without a letter */
enum {
    OPT_MAX_FIDS = 0x100,
    OPT_SESSION_MEM,
    OPT_MAX_LOCKS,
    OPT_SESSION_FDS,
    OPT_MAX_FIDS_TOTAL,
    OPT_MAX_CONNS,
    OPT_FRAME_TIMEOUT,
    OPT_BUSY_POLL,
    OPT_FD_RESERVE,
    OPT_TRANSLATE_UID,
    OPT_TRANSLATE_GID,
    OPT_ALL_SQUASH
};

static void
usage(FILE *out)
{
    fprintf(
        out,
        "Usage: virtfsd --export [NAME=]DIR[,ro][,nosuid][,nodev][,security_model=M]\n"
        "               [--export ...]\n"
        "               (--listen ADDR | --stdio | --vhost-user PATH | --fd N)... [OPTIONS]\n"
        "\n"
        "Export host directories to virtual machines over 9P2000.L.\n"
        "\n"
        "Exports:\n"
        "  -e, --export [NAME=]DIR[,OPT]...  export DIR (repeatable). A client selects\n"
        "                                an export with aname=NAME or aname=DIR; with\n"
        "                                one export an empty aname selects it. OPT:\n"
        "                                ro      every mutating request fails (EROFS)\n"
        "                                nosuid  set-uid/set-gid bits and file\n"
        "                                        capabilities never reach the host\n"
        "                                nodev   creating device nodes fails (EPERM)\n"
        "                                lower=A[:B...]  layered export: DIR is the\n"
        "                                        writable upper (created when missing)\n"
        "                                        over read-only A, B (leftmost on top)\n"
        "                                work=W  copy-up scratch dir (default DIR.work)\n"
        "                                security_model=passthrough|mapped-xattr|\n"
        "                                  mapped-file|none   as QEMU's -fsdev local\n"
        "                                  (default passthrough; mapped = mapped-xattr)\n"
        "                                fmode=OCTAL, dmode=OCTAL  host mode of files\n"
        "                                  and directories in the mapped models\n"
        "                                  (default 0600, 0700)\n"
        "Transports:\n"
        "  -l, --listen ADDR             accept connections on ADDR (repeatable):\n"
        "                                  unix:PATH       Unix socket (a stale socket file is\n"
        "                                                  replaced; a live one is an error)\n"
        "                                  tcp:HOST:PORT   TCP (e.g. tcp:127.0.0.1:5640,\n"
        "                                                  tcp:[::1]:5640); PORT 1..65535\n"
        "                                  fd:N            inherited listening socket N\n"
        "      --stdio                   serve one connection on stdin/stdout, exit at EOF\n"
        "      --vhost-user PATH[,tag=T] be the vhost-user back-end of a virtio-9p device\n"
        "                                on socket PATH (repeatable: one socket per VM;\n"
        "                                a VM reconnecting after a reboot is served again)\n"
        "      --fd N[,tag=T]            like --vhost-user on an inherited listening socket\n"
        "      --tag TAG                 default virtio-9p mount tag (default \"virtfs\")\n"
        "      --print-capabilities      print the vhost-user back-end JSON and exit\n"
        "Protocol and server:\n"
        "  -m, --msize N                 largest message size (default %u, min %u, max %u)\n"
        "  -t, --threads N               worker threads (default: 2 x CPUs, at least 4);\n"
        "                                the pool grows while all workers are blocked\n"
        "      --no-multiuser            never switch to the attaching user's uid/gid\n"
        "                                (default when running as root: act as the user\n"
        "                                named in Tattach for every request)\n"
        "      --translate-uid RULE, --translate-gid RULE  (repeatable) translate ids,\n"
        "                                virtiofsd's syntax: map:G:H:N, guest:G:H:N,\n"
        "                                host:H:G:N, squash-guest:G:H:N,\n"
        "                                squash-host:H:G:N, forbid-guest:G:N\n"
        "      --all-squash              every guest uid/gid is nobody/nogroup on the\n"
        "                                host (the daemon's own ids when unprivileged)\n"
        "      --no-remap                qid.path = inode number only (default: remap\n"
        "                                (dev, ino) so files on different host mounts\n"
        "                                under one export never share a qid)\n"
        "Limits per session (connection or virtio device); beyond them the peer gets\n"
        "an error and the daemon and other sessions go on (see virtfsd(8)):\n"
        "      --max-fids N              fids (default 1048576; then EMFILE)\n"
        "      --max-fids-total N        fids of all sessions together (default\n"
        "                                4194304; then ENFILE)\n"
        "      --session-mem MIB         memory pinned between requests: xattr values\n"
        "                                and snapshots, directory read-ahead (default 16)\n"
        "      --max-locks N             byte-range lock records (default 4096; ENOLCK)\n"
        "      --session-fds N           host descriptors held for good: open\n"
        "                                directories, created or locked files (default\n"
        "                                half an export's descriptor budget; EMFILE)\n"
        "      --rlimit-nofile N         set the descriptor limit (RLIMIT_NOFILE) to N;\n"
        "                                exports keep their descriptors below it, with a\n"
        "                                reserve for connections (default: current limit)\n"
        "      --inode-file-handles MODE how a file whose cached descriptor was closed\n"
        "                                is found again: prefer (default: file handles\n"
        "                                where the host allows, else by name), never\n"
        "                                (by name), mandatory (fail without handles)\n"
        "      --dir-cache MIB           listings of unchanged directories kept per\n"
        "                                export, on tmpfs, ext4, xfs and btrfs\n"
        "                                (default 16; 0 = off)\n"
        "Connections and descriptors (see virtfsd(8)):\n"
        "      --max-connections N       connections per --listen socket (default %u);\n"
        "                                when full, the longest-idle connection that\n"
        "                                never attached is dropped for a new client\n"
        "      --frame-timeout SECONDS   a message must arrive whole within SECONDS of\n"
        "                                its first byte (default %u, 0 = no limit)\n"
        "      --busy-poll USEC          poll a connection or a vhost-user ring up to\n"
        "                                USEC microseconds before sleeping, while\n"
        "                                requests keep coming that fast from one\n"
        "                                connection or guest alone\n"
        "                                (default %u; 0 = off; 0..1000)\n"

        "      --fd-reserve N            descriptors kept for control paths (vhost-user,\n"
        "                                listeners); clients may not use them (default %u)\n" SANDBOX_USAGE
        "Operation:\n"
        "      --log-level LEVEL         error, warn, info (default) or debug\n"
        "      --syslog                  log to syslog instead of stderr\n"
        "      --trace                   log one decoded line per T and R message\n"
        "                                (whatever the --log-level)\n"
        "      --stats SECONDS           log per-message counts and latency every\n"
        "                                SECONDS (also on SIGUSR1, whatever the level)\n"
        "      --pid-file PATH           write the process id to PATH (mode 0644)\n"
        "  -h, --help                    show this help\n"
        "  -V, --version                 show the version\n"
        "\n"
        "Signals: SIGTERM/SIGINT finish in-flight requests and exit; SIGUSR1 logs stats.\n"
        "Linux: mount -t 9p -o trans=unix,version=9p2000.L,aname=NAME PATH /mnt\n"
        "Guest over vhost-user: mount -t 9p -o trans=virtio,version=9p2000.L TAG /mnt\n"
        "See virtfsd(8).\n",
        P9_DEFAULT_MSIZE, P9_MIN_MSIZE, P9_MAX_MSIZE, XP_DEFAULT_MAX_CONNS,
        XP_DEFAULT_FRAME_TIMEOUT, XP_DEFAULT_BUSY_POLL,
        FDBUDGET_DEFAULT_RESERVE);
}

static int
parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v > max || s[0] == '-') {
        return -1;
    }
    *out = v;
    return 0;
}

struct export_arg {
    char *name;
    char *path;
    bool ro;
    bool nosuid;
    bool nodev;
    enum pt_security_model model;
    unsigned long fmode; /* 0: the default (0600) */
    unsigned long dmode; /* 0: the default (0700) */
    char *lower;         /* layered export: "A:B", else NULL */
    char *work;
};

/* security_model=, fmode=, dmode= of --export (QEMU's -fsdev vocabulary). */
static int
parse_export_model(const char *opt, struct export_arg *ex)
{
    static const struct {
        const char *name;
        enum pt_security_model model;
    } models[] = {
        {"passthrough", PT_SM_PASSTHROUGH},
        {"mapped-xattr", PT_SM_MAPPED_XATTR},
        {"mapped", PT_SM_MAPPED_XATTR},
        {"mapped-file", PT_SM_MAPPED_FILE},
        {"none", PT_SM_NONE},
    };
    unsigned long *mp = NULL;
    char *end;

    if (strncmp(opt, "security_model=", 15) == 0) {
        for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
            if (strcmp(opt + 15, models[i].name) == 0) {
                ex->model = models[i].model;
                return 0;
            }
        }
        return -1;
    }
    if (strncmp(opt, "fmode=", 6) == 0) {
        mp = &ex->fmode;
    } else if (strncmp(opt, "dmode=", 6) == 0) {
        mp = &ex->dmode;
    } else {
        return -1;
    }
    errno = 0;
    *mp = strtoul(opt + 6, &end, 8);
    /* Permission bits only: never a set-id bit on the host. */
    if (errno != 0 || end == opt + 6 || *end != '\0' || *mp == 0 ||
        *mp > 0777) {
        return -1;
    }
    return 0;
}

/*
 * A layered export (lower=) implements only some of the export options:
 * refuse the others rather than silently not enforce them.  The overlay
 * backend stores owners and modes as they are (passthrough model), never
 * switches the fsuid, and maps no ids.
 */
static int
check_layered_opts(const struct export_arg *ex, const struct pt_idmap *uidmap,
                   const struct pt_idmap *gidmap)
{
    const char *bad = NULL;

    if (ex->nosuid || ex->nodev) {
        bad = "nosuid/nodev are";
    } else if (ex->model != PT_SM_PASSTHROUGH) {
        bad = "security_model= other than passthrough is";
    } else if (ex->fmode != 0 || ex->dmode != 0) {
        bad = "fmode=/dmode= are";
    } else if (uidmap->n != 0 || gidmap->n != 0) {
        bad = "--translate-uid/--translate-gid/--all-squash are";
    }
    if (bad != NULL) {
        fprintf(stderr,
                "virtfsd: export %s: %s not supported with lower= "
                "yet\n",
                ex->path, bad);
        return -1;
    }
    return 0;
}

/* "[NAME=]DIR[,OPT]..." with OPT one of ro, rw, nosuid, nodev (from the
 * right: a directory name may itself contain a comma before them). */
static int
parse_export(const char *arg, struct export_arg *ex)
{
    char *s = strdup(arg);
    char *eq;
    char *comma;
    char *real;

    if (s == NULL) {
        return -1;
    }
    ex->ro = false;
    ex->nosuid = false;
    ex->nodev = false;
    ex->lower = NULL;
    ex->work = NULL;
    ex->model = PT_SM_PASSTHROUGH;
    ex->fmode = 0;
    ex->dmode = 0;
    while ((comma = strrchr(s, ',')) != NULL) {
        if (strcmp(comma, ",ro") == 0) {
            ex->ro = true;
        } else if (strcmp(comma, ",rw") == 0) {
            ex->ro = false;
        } else if (strcmp(comma, ",nosuid") == 0) {
            ex->nosuid = true;
        } else if (strcmp(comma, ",nodev") == 0) {
            ex->nodev = true;
        } else if (strncmp(comma, ",lower=", 7) == 0 && comma[7] != '\0') {
            ex->lower = strdup(comma + 7);
        } else if (strncmp(comma, ",work=", 6) == 0 && comma[6] != '\0') {
            ex->work = strdup(comma + 6);
        } else if (strchr(comma, '=') == NULL ||
                   parse_export_model(comma + 1, ex) < 0) {
            fprintf(stderr,
                    "virtfsd: --export %s: bad option '%s' (ro, rw, "
                    "nosuid, nodev, security_model=passthrough|mapped-xattr|"
                    "mapped-file|none, fmode=OCTAL, dmode=OCTAL)\n",
                    arg, comma + 1);
            free(s);
            return -1;
        }
        *comma = '\0';
    }
    eq = strchr(s, '=');
    ex->name = NULL;
    if (eq != NULL && s[0] != '/') {
        *eq = '\0';
        if (s[0] == '\0') {
            fprintf(stderr, "virtfsd: --export %s: empty name\n", arg);
            free(s);
            return -1;
        }
        ex->name = strdup(s);
        memmove(s, eq + 1, strlen(eq + 1) + 1);
    }
    if (ex->lower != NULL) {
        (void)mkdir(s, 0755); /* a layered export's upper: made when missing */
    }
    real = realpath(s, NULL);
    if (real == NULL) {
        fprintf(stderr, "virtfsd: --export %s: %s\n", arg, strerror(errno));
        free(ex->name);
        free(s);
        return -1;
    }
    ex->path = real;
    free(s);
    return 0;
}

static void
raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            log_warn("cannot raise RLIMIT_NOFILE: %s", strerror(errno));
        }
    }
}

/*
 * The daemon's state, filled stage by stage by main() below.  File scope
 * (one daemon per process): what the option parser allocates stays
 * reachable until exit, also on the many early "bad option" returns (no
 * leak reports).
 */
static struct export_arg exargs[MAX_EXPORTS];
static struct p9s_export exports[MAX_EXPORTS];
static const char *listens[MAX_LISTEN];
static struct sock_unix_id listen_ids[MAX_LISTEN];
static int nlistening = 0;
static struct xp_limits limits = {
    .max_conns = XP_DEFAULT_MAX_CONNS,
    .frame_timeout = XP_DEFAULT_FRAME_TIMEOUT,
    .busy_poll_us = XP_DEFAULT_BUSY_POLL,
};
static unsigned fd_reserve = FDBUDGET_DEFAULT_RESERVE;
static struct vhu_opts vopts[MAX_VHOST];
static char *vtags[MAX_VHOST];
static char *vargs[MAX_VHOST]; /* strdup'd arguments vtags point into */
static struct vhu_server *vhosts[MAX_VHOST] = {0};
/* --busy-poll for the vhost-user devices: one group for all of them */
static struct bp_group vhost_bp;

/* --stats: what the stream loop does not know of */
static void
log_vhost_stats(void *arg)
{
    (void)arg;
    if (vhosts[0] != NULL) {
        log_info("stats: busy-poll: %lu spins on vhost-user device threads",
                 atomic_load(&vhost_bp.spins));
    }
}
static const char *default_tag = DEFAULT_TAG;
static int nvhost = 0;
static int nexports = 0;
static int nlisten = 0;
static bool use_stdio = false;
static int multiuser = -1; /* default: when root (after --uid-map) */
static struct pt_idmap uidmap, gidmap; /* --translate-uid/-gid */
static bool remap = true;
static unsigned long rlimit_nofile = 0;
static int file_handles = PT_FH_PREFER;
static long dir_cache = 0; /* pt_options.dir_cache: 0 = its default */
static long fd_budget = 0;
static const char *pidfile = NULL;
static unsigned long stats_every = 0;
static struct p9s_config cfg = {0};
static struct sandbox_opts sbo;
static struct p9s_server *srv;
static struct xp_loop *loop;
/* how far start-up got: what stage_shutdown() must undo */
static enum {
    UNWIND_NONE,      /* no server yet */
    UNWIND_SERVER,    /* the server (and maybe the loop) exist */
    UNWIND_LISTENERS, /* listeners may exist */
    UNWIND_ALL,       /* the loop may have sessions, vhost devices exist */
} unwind;

/* A stage returns GO_ON, or the exit status the process ends with. */
#define GO_ON (-1)

/* --vhost-user PATH[,tag=T] ('H') or --fd N[,tag=T] ('F') */
static int
opt_vhost(int c, const char *optval)
{
    unsigned long v;
    char *arg;
    char *t;

    if (nvhost == MAX_VHOST) {
        fprintf(stderr,
                "virtfsd: too many vhost-user sockets (max "
                "%d)\n",
                MAX_VHOST);
        return 2;
    }
    arg = strdup(optval);
    if (arg == NULL) {
        return 1;
    }
    vargs[nvhost] = arg;
    vtags[nvhost] = NULL;
    /* PATH[,tag=T]: every suboption must be known (as --export) */
    t = strchr(arg, ',');
    if (t != NULL) {
        *t++ = '\0';
    }
    while (t != NULL) {
        char *next = strchr(t, ',');

        if (next != NULL) {
            *next++ = '\0';
        }
        if (strncmp(t, "tag=", 4) == 0 && vtags[nvhost] == NULL) {
            vtags[nvhost] = t + 4;
        } else {
            fprintf(stderr,
                    "virtfsd: --%s %s: unknown or repeated "
                    "option '%s' (only ,tag=T)\n",
                    c == 'H' ? "vhost-user" : "fd", optval, t);
            return 2;
        }
        t = next;
    }
    memset(&vopts[nvhost], 0, sizeof(vopts[nvhost]));
    vopts[nvhost].listen_fd = -1;
    vopts[nvhost].conn_fd = -1;
    if (c == 'H') {
        vopts[nvhost].socket_path = arg;
    } else if (parse_uint(arg, 65535, &v) < 0) {
        fprintf(stderr, "virtfsd: --fd needs a descriptor number\n");
        return 2;
    } else if (sock_check_listening((int)v) < 0) {
        fprintf(stderr,
                "virtfsd: --fd %lu is not a listening stream "
                "socket\n",
                v);
        return 2;
    } else {
        vopts[nvhost].listen_fd = (int)v;
    }
    nvhost++;
    return GO_ON;
}

/* The numeric limits and the descriptor cache options. */
static int
opt_limit(int c, const char *optval)
{
    unsigned long v;

    switch (c) {
    case OPT_MAX_FIDS: /* per-session limits (server.h) */
        if (parse_uint(optval, UINT32_MAX - 1, &v) < 0 || v == 0) {
            fprintf(stderr, "virtfsd: --max-fids must be 1..%u\n",
                    UINT32_MAX - 1);
            return 2;
        }
        cfg.max_fids = (uint32_t)v;
        break;
    case OPT_MAX_FIDS_TOTAL:
        if (parse_uint(optval, UINT32_MAX - 1, &v) < 0 || v == 0) {
            fprintf(stderr, "virtfsd: --max-fids-total must be 1..%u\n",
                    UINT32_MAX - 1);
            return 2;
        }
        cfg.max_fids_total = (uint32_t)v;
        break;
    case OPT_SESSION_MEM:
        if (parse_uint(optval, 1024 * 1024, &v) < 0 || v == 0) {
            fprintf(stderr, "virtfsd: --session-mem must be 1..1048576 "
                            "(MiB)\n");
            return 2;
        }
        cfg.session_mem = (uint64_t)v << 20;
        break;
    case OPT_MAX_LOCKS:
        if (parse_uint(optval, 16u << 20, &v) < 0 || v == 0) {
            fprintf(stderr, "virtfsd: --max-locks must be 1..%u\n", 16u << 20);
            return 2;
        }
        cfg.max_locks = (uint32_t)v;
        break;
    case OPT_SESSION_FDS:
        if (parse_uint(optval, 1u << 30, &v) < 0 || v == 0) {
            fprintf(stderr, "virtfsd: --session-fds must be 1..%u\n", 1u << 30);
            return 2;
        }
        cfg.session_fds = (uint32_t)v;
        break;
    case OPT_RLIMIT_NOFILE:
        if (parse_uint(optval, 1UL << 30, &v) < 0 || v < 64) {
            fprintf(stderr, "virtfsd: --rlimit-nofile must be at least "
                            "64\n");
            return 2;
        }
        rlimit_nofile = v;
        break;
    case OPT_DIR_CACHE:
        if (parse_uint(optval, 4096, &v) < 0) {
            fprintf(stderr, "virtfsd: --dir-cache must be 0..4096 MiB\n");
            return 2;
        }
        dir_cache = v == 0 ? -1 : (long)v * 1024 * 1024;
        break;
    case OPT_FILE_HANDLES:
        if (strcmp(optval, "prefer") == 0) {
            file_handles = PT_FH_PREFER;
        } else if (strcmp(optval, "never") == 0) {
            file_handles = PT_FH_NEVER;
        } else if (strcmp(optval, "mandatory") == 0) {
            file_handles = PT_FH_MANDATORY;
        } else {
            fprintf(stderr, "virtfsd: --inode-file-handles is never, "
                            "prefer or mandatory\n");
            return 2;
        }
        break;
    case OPT_MAX_CONNS: /* admission (transport/stream.h) */
        if (parse_uint(optval, 65536, &v) < 0 || v == 0) {
            fprintf(stderr, "virtfsd: --max-connections must be "
                            "1..65536\n");
            return 2;
        }
        limits.max_conns = (unsigned)v;
        break;
    case OPT_FRAME_TIMEOUT:
        if (parse_uint(optval, 86400, &v) < 0) {
            fprintf(stderr, "virtfsd: --frame-timeout must be 0..86400 "
                            "s\n");
            return 2;
        }
        limits.frame_timeout = (unsigned)v;
        break;
    case OPT_BUSY_POLL:
        if (parse_uint(optval, 1000, &v) < 0) {
            fprintf(stderr, "virtfsd: --busy-poll must be 0..1000 us\n");
            return 2;
        }
        limits.busy_poll_us = (unsigned)v;
        break;
    case OPT_FD_RESERVE:
        if (parse_uint(optval, 1u << 20, &v) < 0) {
            fprintf(stderr, "virtfsd: --fd-reserve must be 0..1048576\n");
            return 2;
        }
        fd_reserve = (unsigned)v;
        break;
    default: return 2;
    }
    return GO_ON;
}

/*
 * systemd socket activation: a socket named "9p" (or "listen*")
 * is a --listen fd:N, any other a vhost-user --fd N.
 */
static int
opt_listen_fds(void)
{
    static char fdargs[MAX_LISTEN][16];
    const char *names[MAX_LISTEN + MAX_VHOST];
    int n = svc_listen_fds(names, MAX_LISTEN + MAX_VHOST);

    if (n < 0) {
        fprintf(stderr, "virtfsd: LISTEN_FDS: %s\n", strerror(-n));
        return 2;
    }
    for (int i = 0; i < n; i++) {
        int fd = SVC_LISTEN_FDS_START + i;

        if ((strcmp(names[i], "9p") == 0 ||
             strncmp(names[i], "listen", 6) == 0) &&
            nlisten < MAX_LISTEN) {
            snprintf(fdargs[nlisten], sizeof(fdargs[0]), "fd:%d", fd);
            listens[nlisten] = fdargs[nlisten];
            nlisten++;
        } else if (nvhost < MAX_VHOST) {
            memset(&vopts[nvhost], 0, sizeof(vopts[nvhost]));
            vopts[nvhost].listen_fd = fd;
            vopts[nvhost].conn_fd = -1;
            vtags[nvhost] = NULL;
            vargs[nvhost++] = NULL;
        } else {
            fprintf(stderr, "virtfsd: too many activated sockets\n");
            return 2;
        }
    }
    return GO_ON;
}

/* Stage 1: the command line and systemd's LISTEN_FDS. */
static int
stage_options(int argc, char **argv)
{
    static const struct option opts[] = {
        {"export", required_argument, NULL, 'e'},
        {"listen", required_argument, NULL, 'l'},
        {"stdio", no_argument, NULL, 'S'},
        {"msize", required_argument, NULL, 'm'},
        {"threads", required_argument, NULL, 't'},
        {"no-multiuser", no_argument, NULL, 'U'},
        {"no-remap", no_argument, NULL, 'R'},
        {"translate-uid", required_argument, NULL, OPT_TRANSLATE_UID},
        {"translate-gid", required_argument, NULL, OPT_TRANSLATE_GID},
        {"all-squash", no_argument, NULL, OPT_ALL_SQUASH},
        {"log-level", required_argument, NULL, 'L'},
        {"syslog", no_argument, NULL, 'Y'},
        {"trace", no_argument, NULL, 'T'},
        {"stats", required_argument, NULL, 's'},
        {"pid-file", required_argument, NULL, 'P'},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
        {"frame-timeout", required_argument, NULL, OPT_FRAME_TIMEOUT},
        {"busy-poll", required_argument, NULL, OPT_BUSY_POLL},
        {"fd-reserve", required_argument, NULL, OPT_FD_RESERVE},
        {"vhost-user", required_argument, NULL, 'H'},
        {"fd", required_argument, NULL, 'F'},
        {"tag", required_argument, NULL, 'G'},
        {"print-capabilities", no_argument, NULL, 'C'},
        {"max-fids", required_argument, NULL, OPT_MAX_FIDS},
        {"session-mem", required_argument, NULL, OPT_SESSION_MEM},
        {"max-locks", required_argument, NULL, OPT_MAX_LOCKS},
        {"session-fds", required_argument, NULL, OPT_SESSION_FDS},
        {"max-fids-total", required_argument, NULL, OPT_MAX_FIDS_TOTAL},
        /* node descriptor cache (pt_fdcache.c) */
        {"rlimit-nofile", required_argument, NULL, OPT_RLIMIT_NOFILE},
        {"inode-file-handles", required_argument, NULL, OPT_FILE_HANDLES},
        {"dir-cache", required_argument, NULL, OPT_DIR_CACHE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        SANDBOX_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    unsigned long v;
    int c;

    sandbox_opts_init(&sbo);
    /* A usage error exits the process; what the loop strdup()ed goes
     * with it. */
    /* NOLINTBEGIN(clang-analyzer-unix.Malloc) */
    while ((c = getopt_long(argc, argv, "e:l:m:t:hV", opts, NULL)) != -1) {
        switch (c) {
        case SANDBOX_OPT_MODE:
        case SANDBOX_OPT_SECCOMP:
        case SANDBOX_OPT_MODCAPS:
        case SANDBOX_OPT_UIDMAP:
        case SANDBOX_OPT_GIDMAP:
            if (sandbox_parse(&sbo, c, optarg) < 0) {
                return 2;
            }
            break;
        case 'e':
            if (nexports == MAX_EXPORTS) {
                fprintf(stderr, "virtfsd: too many exports (max %d)\n",
                        MAX_EXPORTS);
                return 2;
            }
            if (parse_export(optarg, &exargs[nexports]) < 0) {
                return 2;
            }
            nexports++;
            break;
        case 'l':
            if (nlisten == MAX_LISTEN) {
                fprintf(stderr, "virtfsd: too many --listen (max %d)\n",
                        MAX_LISTEN);
                return 2;
            }
            listens[nlisten++] = optarg;
            break;
        case 'S': use_stdio = true; break;
        case 'H':
        case 'F': {
            int st = opt_vhost(c, optarg);

            if (st != GO_ON) {
                return st;
            }
            break;
        }
        case 'G': default_tag = optarg; break;
        case 'C': vhu_print_capabilities(stdout); return 0;
        case 'm':
            if (parse_uint(optarg, P9_MAX_MSIZE, &v) < 0 || v < P9_MIN_MSIZE) {
                fprintf(stderr, "virtfsd: --msize must be %u..%u\n",
                        P9_MIN_MSIZE, P9_MAX_MSIZE);
                return 2;
            }
            cfg.msize = (uint32_t)v;
            break;
        case 't':
            if (parse_uint(optarg, 1024, &v) < 0 || v == 0) {
                fprintf(stderr, "virtfsd: --threads must be 1..1024\n");
                return 2;
            }
            cfg.threads = (int)v;
            break;
        case 'U': multiuser = 0; break;
        case OPT_TRANSLATE_UID:
        case OPT_TRANSLATE_GID: {
            int e = pt_idmap_add(c == OPT_TRANSLATE_UID ? &uidmap : &gidmap,
                                 optarg);

            if (e < 0) {
                fprintf(stderr, "virtfsd: --translate-%s %s: %s\n",
                        c == OPT_TRANSLATE_UID ? "uid" : "gid", optarg,
                        e == -EEXIST ? "overlaps an earlier rule"
                                     : "bad rule (map|guest|host|squash-guest|"
                                       "squash-host:A:B:N, forbid-guest:A:N)");
                return 2;
            }
            break;
        }
        case OPT_ALL_SQUASH: {
            /* diod's allsquash: every guest id is one host id (nobody, or
             * the daemon's own when unprivileged). */
            char r[64];

            snprintf(r, sizeof(r), "squash-guest:0:%u:4294967295",
                     geteuid() == 0 ? 65534u : (unsigned)geteuid());
            if (pt_idmap_add(&uidmap, r) < 0) {
                fprintf(stderr, "virtfsd: --all-squash: conflicts with a "
                                "--translate-uid rule\n");
                return 2;
            }
            snprintf(r, sizeof(r), "squash-guest:0:%u:4294967295",
                     geteuid() == 0 ? 65534u : (unsigned)getegid());
            if (pt_idmap_add(&gidmap, r) < 0) {
                fprintf(stderr, "virtfsd: --all-squash: conflicts with a "
                                "--translate-gid rule\n");
                return 2;
            }
            break;
        }
        case 'R': remap = false; break;
        case 'L': {
            int lvl = log_parse_level(optarg);

            if (lvl < 0) {
                fprintf(stderr, "virtfsd: --log-level: error, warn, info or "
                                "debug\n");
                return 2;
            }
            log_set_level((enum log_level)lvl);
            break;
        }
        case 'Y': log_use_syslog("virtfsd"); break;
        case 'T': cfg.trace = true; break;
        case 's':
            if (parse_uint(optarg, 86400, &v) < 0 || v == 0) {
                fprintf(stderr, "virtfsd: --stats must be 1..86400 s\n");
                return 2;
            }
            stats_every = v;
            break;
        case 'P': pidfile = optarg; break;
        case OPT_MAX_FIDS:
        case OPT_MAX_FIDS_TOTAL:
        case OPT_SESSION_MEM:
        case OPT_MAX_LOCKS:
        case OPT_SESSION_FDS:
        case OPT_RLIMIT_NOFILE:
        case OPT_FILE_HANDLES:
        case OPT_DIR_CACHE:
        case OPT_MAX_CONNS:
        case OPT_FRAME_TIMEOUT:
        case OPT_BUSY_POLL:
        case OPT_FD_RESERVE: {
            int st = opt_limit(c, optarg);

            if (st != GO_ON) {
                return st;
            }
            break;
        }
        case 'h': usage(stdout); return 0;
        case 'V': printf("virtfsd %s (9P2000.L)\n", VIRTFS_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    /* NOLINTEND(clang-analyzer-unix.Malloc) */
    if (optind < argc) {
        fprintf(stderr, "virtfsd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    c = opt_listen_fds();
    if (c != GO_ON) {
        return c;
    }
    if (nexports == 0) {
        fprintf(stderr, "virtfsd: no --export given\n");
        usage(stderr);
        return 2;
    }
    if (nlisten == 0 && !use_stdio && nvhost == 0) {
        fprintf(stderr, "virtfsd: give --listen ADDR, --stdio, --vhost-user "
                        "PATH or --fd N\n");
        return 2;
    }
    for (int i = 0; i < nvhost; i++) {
        const char *tag = vtags[i] ? vtags[i] : default_tag;

        if (tag[0] == '\0' || strlen(tag) > VHU_MAX_TAG) {
            fprintf(stderr, "virtfsd: mount tag must be 1..%d bytes\n",
                    VHU_MAX_TAG);
            return 2;
        }
        vopts[i].tag = tag;
    }
    return GO_ON;
}

/* Stage 2: who the daemon is (--uid-map: root of a user namespace, before
 * anything is opened) and what that makes the defaults. */
static int
stage_identity(void)
{
    if (sandbox_userns(&sbo) < 0) {
        return 1;
    }
    if (multiuser < 0) {
        multiuser = geteuid() == 0;
    }
    return GO_ON;
}

/* A layered export: DIR is the upper over lower=A:B.  0 or -errno (a
 * usage error printed: -EINVAL). */
static int
open_layered(struct export_arg *ex, struct backend **be)
{
    struct ov_options oo = {.upper = ex->path, .readonly = ex->ro};
    char work[PATH_MAX];
    int err;

    snprintf(work, sizeof(work), "%s.work", ex->path);
    oo.work = ex->work != NULL ? ex->work : work;
    for (char *save = NULL, *l = strtok_r(ex->lower, ":", &save); l != NULL;
         l = strtok_r(NULL, ":", &save)) {
        if (oo.nlowers == OV_MAX_LOWERS) {
            fprintf(stderr, "virtfsd: export %s: too many lowers\n", ex->path);
            return -EINVAL;
        }
        oo.lowers[oo.nlowers++] = l;
    }
    err = ov_backend_new(&oo, be);
    /* as root the overlay keeps its markers (opaque directories,
     * redirects) in trusted.overlay.*, the kernel overlayfs format: only
     * CAP_SYS_ADMIN may read or write that namespace */
    if (err == 0 && !ex->ro && geteuid() == 0) {
        sbo.caps_need |= UINT64_C(1) << CAP_SYS_ADMIN;
    }
    return err;
}

/* Stage 3: descriptor limits and one backend per export. */
static int
stage_exports(void)
{
    /* Descriptors: the limit, a reserve for the rest, the rest split
     * evenly between the exports' node caches and open files. */
    {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
            rl.rlim_cur = rl.rlim_max = 1024;
        }
        if (rlimit_nofile > 0) {
            rl.rlim_cur = (rlim_t)rlimit_nofile;
            if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < rl.rlim_cur) {
                rl.rlim_max = rl.rlim_cur;
            }
            if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                fprintf(stderr, "virtfsd: --rlimit-nofile %lu: %s\n",
                        rlimit_nofile, strerror(errno));
                return 1;
            }
        }
        if (rl.rlim_cur != RLIM_INFINITY) {
            long lim = (long)rl.rlim_cur;
            long reserve = lim / 8 < 32 ? 32 : lim / 8 > 256 ? 256 : lim / 8;

            fd_budget = (lim - reserve) / (nexports > 0 ? nexports : 1);
            fd_budget = fd_budget < 16 ? 16 : fd_budget;
        }
    }
    /* One session may hold at most half an export's descriptors for good,
     * so the rest stays reclaimable for the others. */
    if (cfg.session_fds == 0 && fd_budget > 0) {
        cfg.session_fds = (uint32_t)(fd_budget / 2 < P9S_DEFAULT_SESSION_FDS
                                         ? fd_budget / 2
                                         : P9S_DEFAULT_SESSION_FDS);
    }
    for (int i = 0; i < nexports; i++) {
        struct pt_options po = {
            .root = exargs[i].path,
            .readonly = exargs[i].ro,
            .multiuser = multiuser != 0,
            .remap_devs = remap,
            .nosuid = exargs[i].nosuid,
            .nodev = exargs[i].nodev,
            .inode_file_handles = file_handles,
            .fd_budget = fd_budget,
            .dir_cache = dir_cache,
            .model = exargs[i].model,
            .fmode = (uint32_t)exargs[i].fmode,
            .dmode = (uint32_t)exargs[i].dmode,
            .uidmap = &uidmap,
            .gidmap = &gidmap,
        };
        struct backend *be;
        int err;

        for (int j = 0; j < i; j++) {
            if (exargs[i].name && exargs[j].name &&
                strcmp(exargs[i].name, exargs[j].name) == 0) {
                fprintf(stderr, "virtfsd: export name '%s' given twice\n",
                        exargs[i].name);
                return 2;
            }
        }
        if (exargs[i].lower == NULL && exargs[i].work != NULL) {
            fprintf(stderr, "virtfsd: export %s: work= needs lower=\n",
                    exargs[i].path);
            return 2;
        }
        if (exargs[i].lower != NULL &&
            check_layered_opts(&exargs[i], &uidmap, &gidmap) < 0) {
            return 2;
        }
        if (exargs[i].lower != NULL) {
            err = open_layered(&exargs[i], &be);
            if (err == -EINVAL) {
                return 2;
            }
        } else {
            err = pt_backend_new(&po, &be);
        }
        if (err < 0) {
            fprintf(stderr, "virtfsd: export %s: %s\n", exargs[i].path,
                    strerror(-err));
            return 1;
        }
        exports[i].name = exargs[i].name;
        exports[i].path = exargs[i].path;
        exports[i].readonly = exargs[i].ro;
        exports[i].be = be;
    }
    return GO_ON;
}

/* Stage 4: process-wide settings (signals, limits, malloc) and the
 * transports: server (threads deferred), loop, listeners, vhost-user
 * sockets, pid file. */
static int
stage_transports(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_stats;
    sigaction(SIGUSR1, &sa, NULL);
    raise_nofile();
    if (fdbudget_init(fd_reserve) < 0) {
        log_warn("cannot read RLIMIT_NOFILE: no descriptor reserve");
    }
    /*
     * Message buffers (up to msize) come and go on every request, on many
     * threads: keep them on the heap instead of mmap/munmap per buffer,
     * whose TLB shootdowns cost more than the copy itself.
     */
    mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);

    /* threads start after the sandbox: see sandbox_enter() */
    cfg.defer_start = true;
    srv = p9s_server_new(&cfg, exports, nexports);
    if (srv == NULL) {
        fprintf(stderr, "virtfsd: cannot start the server\n");
        return 1;
    }
    unwind = UNWIND_SERVER;
    loop = xp_loop_new(srv);
    if (loop == NULL) {
        fprintf(stderr, "virtfsd: cannot create the event loop\n");
        return 1;
    }
    unwind = UNWIND_LISTENERS;
    xp_loop_set_limits(loop, &limits);
    xp_loop_on_stats(loop, log_vhost_stats, NULL);
    for (int i = 0; i < nlisten; i++) {
        char msg[256];
        int fd = xp_listen(listens[i], &listen_ids[i], msg, sizeof(msg));

        if (fd < 0) {
            fprintf(stderr, "virtfsd: --listen %s\n", msg);
            return 1;
        }
        nlistening = i + 1;
        if (xp_loop_add_listener(loop, fd, listens[i]) < 0) {
            fprintf(stderr, "virtfsd: cannot watch %s\n", listens[i]);
            return 1;
        }
        log_info("listening on %s", listens[i]);
    }
    unwind = UNWIND_ALL;
    bp_group_init(&vhost_bp, limits.busy_poll_us);
    for (int i = 0; i < nvhost; i++) {
        int err;

        vopts[i].bp = &vhost_bp;
        err = vhu_server_new(srv, &vopts[i], &vhosts[i]);

        if (err < 0) {
            fprintf(stderr, "virtfsd: vhost-user %s: %s\n",
                    vopts[i].socket_path ? vopts[i].socket_path : "fd",
                    strerror(-err));
            return 1;
        }
        log_info("vhost-user virtio-9p device on %s%s, tag '%s'",
                 vopts[i].socket_path ? vopts[i].socket_path : "fd ",
                 vopts[i].socket_path ? "" : "(inherited)", vopts[i].tag);
    }
    if (pidfile != NULL) {
        /* an explicit mode: never what the umask happens to allow, never
         * through a symlink planted at PATH */
        int pfd =
            open(pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                 0644);
        char line[32];
        int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());

        if (pfd < 0 || fchmod(pfd, 0644) < 0 ||
            write(pfd, line, (size_t)n) != n) {
            fprintf(stderr, "virtfsd: --pid-file %s: %s\n", pidfile,
                    strerror(errno));
            if (pfd >= 0) {
                close(pfd);
            }
            return 1;
        }
        close(pfd);
    }
    return GO_ON;
}

/* Stage 5: confine the still single-threaded process, then start the
 * threads and connections. */
static int
stage_sandbox(void)
{
    /* every socket and export is open, one thread so far: confine */
    if (svc_notify_open() < 0) {
        log_warn("NOTIFY_SOCKET unusable: no readiness notification");
    }
    for (int i = 0; i < nlisten; i++) {
        if (strncmp(listens[i], "unix:", 5) == 0) {
            sandbox_cleanup_path(listens[i] + 5);
        }
    }
    for (int i = 0; i < nvhost; i++) {
        if (vopts[i].socket_path != NULL) {
            sandbox_cleanup_path(vopts[i].socket_path);
        }
    }
    if (pidfile != NULL) {
        sandbox_cleanup_path(pidfile);
    }
    if (sandbox_enter(&sbo, exports, nexports) < 0 ||
        p9s_server_start(srv) < 0) {
        return 1;
    }
    for (int i = 0; i < nvhost; i++) {
        if (vhu_server_start(vhosts[i]) < 0) {
            fprintf(stderr, "virtfsd: cannot start a vhost-user thread\n");
            return 1;
        }
    }
    if (use_stdio && xp_loop_add_conn(loop, 0, 1, "stdio", true) < 0) {
        fprintf(stderr, "virtfsd: cannot serve stdin/stdout\n");
        return 1;
    }
    for (int i = 0; i < nexports; i++) {
        static const char *const mnames[] = {"passthrough", "mapped-xattr",
                                             "mapped-file", "none"};

        log_info("exporting %s%s%s%s%s%s (security_model=%s)", exports[i].path,
                 exports[i].name ? " as " : "",
                 exports[i].name ? exports[i].name : "",
                 exports[i].readonly ? " (read-only)" : "",
                 exargs[i].nosuid ? " (nosuid)" : "",
                 exargs[i].nodev ? " (nodev)" : "", mnames[exargs[i].model]);
    }
    return GO_ON;
}

/* Stage 6: serve until SIGTERM/SIGINT. */
static void
stage_run(void)
{
    if (stats_every > 0) {
        /* SIGALRM-free: the loop checks the flag; a timer sets it */
        struct sigevent sev;
        struct itimerspec its;
        timer_t tid;

        memset(&sev, 0, sizeof(sev));
        sev.sigev_notify = SIGEV_SIGNAL;
        sev.sigev_signo = SIGUSR1;
        memset(&its, 0, sizeof(its));
        its.it_value.tv_sec = (time_t)stats_every;
        its.it_interval.tv_sec = (time_t)stats_every;
        if (timer_create(CLOCK_MONOTONIC, &sev, &tid) == 0) {
            timer_settime(tid, 0, &its, NULL);
        }
    }
    svc_notify("READY=1");
    xp_loop_run(loop, &stop_flag, &stats_flag);
    svc_notify("STOPPING=1");
    log_info("shutting down");
}

/* Stage 7: undo what start-up did, as far as it got; 'rc' is the exit
 * status (the pid file goes only after a clean run). */
static void
stage_shutdown(int rc)
{
    if (unwind >= UNWIND_ALL) {
        xp_loop_shutdown(loop, 10000); /* in-flight requests are answered */
        for (int i = 0; i < nvhost; i++) {
            vhu_server_free(vhosts[i]); /* NULL is a no-op */
        }
    }
    for (int i = 0; unwind >= UNWIND_LISTENERS && i < nlistening; i++) {
        /* only the socket file this process created (a newer daemon may
         * have replaced it after ours went stale) */
        if (strncmp(listens[i], "unix:", 5) == 0) {
            sock_unix_unlink(listens[i] + 5, &listen_ids[i]);
        }
    }
    if (unwind >= UNWIND_SERVER) {
        p9s_server_free(srv); /* waits for in-flight requests */
        xp_loop_free(loop);   /* after the last session was released */
        for (int i = 0; i < nexports; i++) {
            if (exports[i].be->ops->destroy != NULL) {
                exports[i].be->ops->destroy(exports[i].be);
            }
        }
    }
    if (pidfile != NULL && rc == 0) {
        unlink(pidfile);
    }
    for (int i = 0; i < nexports; i++) {
        free(exargs[i].name);
        free(exargs[i].path);
    }
    for (int i = 0; i < nvhost; i++) {
        free(vargs[i]);
    }
}

int
main(int argc, char **argv)
{
    int rc;

    rc = stage_options(argc, argv);
    if (rc == GO_ON) {
        rc = stage_identity();
    }
    if (rc == GO_ON) {
        rc = stage_exports();
    }
    if (rc != GO_ON) {
        return rc; /* nothing to undo yet */
    }
    rc = stage_transports();
    if (rc == GO_ON) {
        rc = stage_sandbox();
    }
    if (rc == GO_ON) {
        stage_run();
        rc = 0;
    }
    stage_shutdown(rc);
    return rc;
}
