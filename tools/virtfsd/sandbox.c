/* SPDX-License-Identifier: MIT */
/*
 * virtfsd's confinement, applied once at start in this order:
 *
 *   0. with --uid-map/--gid-map (unprivileged start), before main() opens
 *      anything: a user namespace with those ranges, the daemon its root
 *      (sandbox_userns()).
 *   1. namespaces (--sandbox namespace): unshare mount, pid, net, ipc, uts
 *      and cgroup namespaces (and a user namespace mapping only our own
 *      ids when not root), fork so the daemon is pid 1 of the new pid
 *      namespace (unshare(CLONE_NEWPID) only moves children; virtiofsd does
 *      the same), build a new root on a private tmpfs holding a bind mount
 *      of each host directory the backends hold (be_ops.host_dirs; a mount
 *      group through its common directory) at its host path, a /proc of the
 *      new pid namespace (the backends reopen through /proc/self/fd) and
 *      read-only /etc/passwd, /etc/group and /etc/nsswitch.conf (Tattach
 *      user names), pivot_root into it and detach the old root.  Each
 *      directory is then reopened inside the new root and handed back to
 *      its backend (be_ops.reroot), which replaces every descriptor it held
 *      of the old tree, so even ".." from an export root ends in the new
 *      root.  Or (--sandbox chroot) a chroot into the directories' deepest
 *      common directory, the working directory standing in for /proc/self/fd.
 *   2. rlimits: already applied by main() before this runs.
 *   3. capabilities: keep in the permitted and effective sets only what the
 *      exports need, clear the inheritable, ambient and bounding sets.
 *   4. PR_SET_DUMPABLE 0, PR_SET_NO_NEW_PRIVS 1.
 *   5. seccomp: an allow-list of the system calls virtfsd makes.
 *
 * All of it happens while virtfsd is one thread: namespaces and capability
 * sets are per thread and unshare(CLONE_NEWNS) refuses a process whose
 * threads share its fs_struct; every thread started later inherits them.
 * Sockets (listeners, vhost-user, TCP) exist before the network namespace
 * is entered and keep working: a listening socket keeps its namespace, so
 * accept() on it (a VMM reconnecting to the same vhost-user socket, a new
 * TCP client) works from inside.
 */
#include "sandbox.h"

#include <cap-ng.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <limits.h>
#include <nss.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <grp.h>
#include <unistd.h>

#include "virtfs/backend.h"
#include "util/log.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SB_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SB_SANITIZER 1
#endif
#endif

/* AddressSanitizer (with LeakSanitizer): see enter_chroot() */
#if defined(__SANITIZE_ADDRESS__)
#define SB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_ASAN 1
#endif
#endif
#ifdef SB_ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* Where the new root is built, inside the new mount namespace only. */
static const char *const sb_newroot_dirs[] = {"/tmp", "/mnt", "/run"};

void
sandbox_opts_init(struct sandbox_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->mode = SANDBOX_AUTO;
    o->seccomp = SANDBOX_SECCOMP_KILL;
}

static int
parse_cap(const char *name)
{
    char buf[64];
    size_t i;

    if (strncasecmp(name, "cap_", 4) == 0) {
        name += 4;
    }
    for (i = 0; name[i] != '\0' && i < sizeof(buf) - 1; i++) {
        buf[i] = (char)tolower((unsigned char)name[i]);
    }
    buf[i] = '\0';
    return capng_name_to_capability(buf);
}

/* "+cap:-cap:..." */
static int
parse_modcaps(struct sandbox_opts *o, const char *arg)
{
    char *s = strdup(arg);
    char *save = NULL;
    int rc = 0;

    if (s == NULL) {
        return -1;
    }
    for (char *t = strtok_r(s, ":,", &save); t != NULL;
         t = strtok_r(NULL, ":,", &save)) {
        int cap = (t[0] == '+' || t[0] == '-') ? parse_cap(t + 1) : -1;

        if (cap < 0 || cap >= 64) {
            fprintf(stderr,
                    "virtfsd: --modcaps: '%s': want +CAP or -CAP "
                    "with a capability name (e.g. +sys_admin)\n",
                    t);
            rc = -1;
            break;
        }
        if (t[0] == '+') {
            o->caps_add |= UINT64_C(1) << cap;
            o->caps_drop &= ~(UINT64_C(1) << cap);
        } else {
            o->caps_drop |= UINT64_C(1) << cap;
            o->caps_add &= ~(UINT64_C(1) << cap);
        }
    }
    free(s);
    return rc;
}

/* ---- user namespace with subordinate ids (unprivileged start) ---------- */

/* Said in the start log line when sandbox_userns() made the namespace. */
static char sb_userns_note[512];

/* ":NS:HOST:COUNT:" (the outer colons optional) */
static int
parse_idmap(struct sandbox_idrange *r, int *n, const char *arg, const char *opt)
{
    unsigned long v[3];
    const char *p = arg;
    char *end;

    if (*n == SANDBOX_MAX_IDMAP) {
        fprintf(stderr, "virtfsd: --%s: at most %d ranges\n", opt,
                SANDBOX_MAX_IDMAP);
        return -1;
    }
    if (*p == ':') {
        p++;
    }
    for (int i = 0; i < 3; i++) {
        errno = 0;
        v[i] = strtoul(p, &end, 10);
        if (errno != 0 || end == p || v[i] > UINT32_MAX ||
            (i < 2 && *end != ':') ||
            (i == 2 && *end != '\0' && strcmp(end, ":") != 0)) {
            fprintf(stderr,
                    "virtfsd: --%s %s: want :NAMESPACE_ID:HOST_ID:"
                    "COUNT:\n",
                    opt, arg);
            return -1;
        }
        p = end + 1;
    }
    if (v[2] == 0 || v[0] + v[2] - 1 > UINT32_MAX ||
        v[1] + v[2] - 1 > UINT32_MAX) {
        fprintf(stderr, "virtfsd: --%s %s: empty or out-of-range count\n", opt,
                arg);
        return -1;
    }
    r[*n].ns = (uint32_t)v[0];
    r[*n].host = (uint32_t)v[1];
    r[*n].count = (uint32_t)v[2];
    (*n)++;
    return 0;
}

static bool
maps_zero(const struct sandbox_idrange *r, int n)
{
    for (int i = 0; i < n; i++) {
        if (r[i].ns == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Whether this host lets an unprivileged user make a user namespace:
 * Debian's kernel.unprivileged_userns_clone and user.max_user_namespaces.
 * Returns NULL if it does, else why not.
 */
static const char *
userns_refused(void)
{
    static const struct {
        const char *path;
        const char *why;
    } knobs[] = {
        {"/proc/sys/kernel/unprivileged_userns_clone",
         "kernel.unprivileged_userns_clone is 0"},
        {"/proc/sys/user/max_user_namespaces", "user.max_user_namespaces is 0"},
    };

    for (size_t i = 0; i < sizeof(knobs) / sizeof(*knobs); i++) {
        char buf[32];
        ssize_t n;
        int fd = open(knobs[i].path, O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
            continue; /* this kernel has no such knob */
        }
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n > 0) {
            buf[n] = '\0';
            if (strtol(buf, NULL, 10) == 0) {
                return knobs[i].why;
            }
        }
    }
    return NULL;
}

/* Run "TOOL PID NS HOST COUNT ..." and wait for it; 0 if it succeeded. */
static int
run_idmap_tool(const char *tool, pid_t pid, const struct sandbox_idrange *r,
               int n)
{
    char args[1 + 1 + 3 * SANDBOX_MAX_IDMAP][16];
    char *argv[2 + 3 * SANDBOX_MAX_IDMAP + 1];
    int argc = 0;
    pid_t child;
    int status;

    argv[argc++] = (char *)tool;
    snprintf(args[0], sizeof(args[0]), "%ld", (long)pid);
    argv[argc++] = args[0];
    for (int i = 0; i < n; i++) {
        snprintf(args[1 + 3 * i], sizeof(args[0]), "%u", r[i].ns);
        snprintf(args[2 + 3 * i], sizeof(args[0]), "%u", r[i].host);
        snprintf(args[3 + 3 * i], sizeof(args[0]), "%u", r[i].count);
        argv[argc++] = args[1 + 3 * i];
        argv[argc++] = args[2 + 3 * i];
        argv[argc++] = args[3 + 3 * i];
    }
    argv[argc] = NULL;
    child = fork();
    if (child < 0) {
        return -errno;
    }
    if (child == 0) {
        execvp(tool, argv);
        fprintf(stderr, "virtfsd: %s: %s (Debian package uidmap)\n", tool,
                strerror(errno));
        _exit(127);
    }
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPERM;
}

int
sandbox_userns(const struct sandbox_opts *o)
{
    const char *why;
    pid_t self = getpid();
    pid_t helper;
    int pfd[2];
    int status;
    char c = 0;
    int err = 0;

    if (o->nuidmap == 0 && o->ngidmap == 0) {
        return 0;
    }
    if (geteuid() == 0) {
        log_err("--uid-map/--gid-map are for an unprivileged start; root "
                "needs no user namespace");
        return -EINVAL;
    }
    if (o->mode == SANDBOX_NONE || o->mode == SANDBOX_CHROOT) {
        log_err("--uid-map/--gid-map need --sandbox namespace");
        return -EINVAL;
    }
    if (!maps_zero(o->uidmap, o->nuidmap) ||
        !maps_zero(o->gidmap, o->ngidmap)) {
        log_err("--uid-map and --gid-map must both map namespace id 0 (the "
                "daemon runs as root of the namespace)");
        return -EINVAL;
    }
    why = userns_refused();
    if (why != NULL) {
        log_err("--uid-map: this host allows no user namespaces (%s)", why);
        return -EPERM;
    }
    /* newuidmap must run outside the namespace (a set-uid binary does not
     * gain root inside one): a helper forked first waits for the unshare */
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        return -errno;
    }
    fflush(NULL);
    helper = fork();
    if (helper < 0) {
        err = -errno;
        close(pfd[0]);
        close(pfd[1]);
        return err;
    }
    if (helper == 0) {
        close(pfd[1]);
        if (read(pfd[0], &c, 1) != 1 || c != 'u') {
            _exit(1);
        }
        _exit(run_idmap_tool("newuidmap", self, o->uidmap, o->nuidmap) == 0 &&
                      run_idmap_tool("newgidmap", self, o->gidmap,
                                     o->ngidmap) == 0
                  ? 0
                  : 1);
    }
    close(pfd[0]);
    if (unshare(CLONE_NEWUSER) < 0) {
        err = -errno;
        log_err("--uid-map: unshare(CLONE_NEWUSER): %s", strerror(-err));
    } else {
        c = 'u';
    }
    if (write(pfd[1], &c, 1) != 1 && err == 0) {
        err = -errno;
    }
    close(pfd[1]);
    while (waitpid(helper, &status, 0) < 0) {
        if (errno != EINTR) {
            err = err < 0 ? err : -errno;
            break;
        }
    }
    if (err == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        log_err("--uid-map/--gid-map: newuidmap or newgidmap refused the "
                "ranges (are they this user's in /etc/subuid and "
                "/etc/subgid?)");
        err = -EPERM;
    }
    /* root of the namespace, with the supplementary groups dropped */
    if (err == 0 && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
        err = -errno;
        log_err("--uid-map: cannot become root of the namespace: %s",
                strerror(-err));
    }
    if (err == 0 && setgroups(0, NULL) < 0) {
        log_warn("--uid-map: setgroups: %s", strerror(errno));
    }
    if (err == 0) {
        /* " (user namespace, uid map NS:HOST:COUNT,..., gid map ...)" */
        size_t off = (size_t)snprintf(sb_userns_note, sizeof(sb_userns_note),
                                      " (user namespace, uid map");

        for (int m = 0; m < 2; m++) {
            const struct sandbox_idrange *r = m ? o->gidmap : o->uidmap;
            int n = m ? o->ngidmap : o->nuidmap;

            for (int i = 0; i < n && off < sizeof(sb_userns_note); i++) {
                off += (size_t)snprintf(sb_userns_note + off,
                                        sizeof(sb_userns_note) - off,
                                        "%s%u:%u:%u", i ? "," : " ", r[i].ns,
                                        r[i].host, r[i].count);
            }
            if (off < sizeof(sb_userns_note)) {
                off += (size_t)snprintf(sb_userns_note + off,
                                        sizeof(sb_userns_note) - off, "%s",
                                        m ? ")" : ", gid map");
            }
        }
    }
    return err;
}

int
sandbox_parse(struct sandbox_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case SANDBOX_OPT_MODE:
        if (strcmp(arg, "namespace") == 0) {
            o->mode = SANDBOX_NAMESPACE;
        } else if (strcmp(arg, "chroot") == 0) {
            o->mode = SANDBOX_CHROOT;
        } else if (strcmp(arg, "none") == 0) {
            o->mode = SANDBOX_NONE;
        } else {
            fprintf(stderr, "virtfsd: --sandbox: namespace, chroot or none\n");
            return -1;
        }
        return 0;
    case SANDBOX_OPT_SECCOMP:
        if (strcmp(arg, "kill") == 0) {
            o->seccomp = SANDBOX_SECCOMP_KILL;
        } else if (strcmp(arg, "log") == 0) {
            o->seccomp = SANDBOX_SECCOMP_LOG;
        } else if (strcmp(arg, "trap") == 0) {
            o->seccomp = SANDBOX_SECCOMP_TRAP;
        } else if (strcmp(arg, "none") == 0) {
            o->seccomp = SANDBOX_SECCOMP_NONE;
        } else {
            fprintf(stderr, "virtfsd: --seccomp: kill, log, trap or none\n");
            return -1;
        }
        return 0;
    case SANDBOX_OPT_MODCAPS: return parse_modcaps(o, arg);
    case SANDBOX_OPT_UIDMAP:
        return parse_idmap(o->uidmap, &o->nuidmap, arg, "uid-map");
    case SANDBOX_OPT_GIDMAP:
        return parse_idmap(o->gidmap, &o->ngidmap, arg, "gid-map");
    default: return -1;
    }
}

/* ---- namespaces -------------------------------------------------------- */

static volatile sig_atomic_t sb_child_pid;

#define SB_MAX_CLEANUP 64
static struct {
    const char *path;
    dev_t dev;
    ino_t ino;
} sb_cleanup[SB_MAX_CLEANUP];
static int sb_ncleanup;

void
sandbox_cleanup_path(const char *path)
{
    struct stat st;

    if (sb_ncleanup < SB_MAX_CLEANUP && lstat(path, &st) == 0) {
        sb_cleanup[sb_ncleanup].path = path;
        sb_cleanup[sb_ncleanup].dev = st.st_dev;
        sb_cleanup[sb_ncleanup].ino = st.st_ino;
        sb_ncleanup++;
    }
}

/* only what the daemon made: a newer daemon may have replaced it */
static void
run_cleanup(void)
{
    for (int i = 0; i < sb_ncleanup; i++) {
        struct stat st;

        if (lstat(sb_cleanup[i].path, &st) == 0 &&
            st.st_dev == sb_cleanup[i].dev && st.st_ino == sb_cleanup[i].ino) {
            unlink(sb_cleanup[i].path);
        }
    }
}

static void
forward_signal(int sig)
{
    if (sb_child_pid > 0) {
        kill((pid_t)sb_child_pid, sig);
    }
}

/*
 * The process left outside the namespaces: it is what started virtfsd
 * (a shell's $!, systemd's main pid, the --pid-file), so it passes on
 * the signals a daemon gets and exits as the daemon did.
 */
/* the signals virtfsd handles; any other kills the supervisor as it did
 * the daemon before, and the daemon follows (PR_SET_PDEATHSIG) */
static const int sb_fwd_sigs[] = {SIGTERM, SIGINT, SIGUSR1};

static void __attribute__((noreturn))
supervise(pid_t child, const sigset_t *mask)
{
    struct sigaction sa;
    int status;

    sb_child_pid = child;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = forward_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sb_fwd_sigs) / sizeof(sb_fwd_sigs[0]); i++) {
        sigaction(sb_fwd_sigs[i], &sa, NULL);
    }
    /* what arrived since fork_daemon() blocked them goes on now */
    sigprocmask(SIG_SETMASK, mask, NULL);
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) {
            _exit(1);
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        run_cleanup();
    }
    if (WIFSIGNALED(status)) {
        /* die the same way, so callers see e.g. SIGSYS of a seccomp kill */
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
        _exit(128 + WTERMSIG(status));
    }
    _exit(WEXITSTATUS(status));
}

/*
 * Fork the daemon off its supervisor.  The signals the supervisor passes
 * on stay blocked across fork(): one that comes between fork() and the
 * supervisor's handlers (a SIGUSR1 right after the socket appeared) is
 * forwarded, not taken by main()'s handler in a process that serves
 * nothing.  Returns in the child only; -errno if fork() failed.
 */
static int
fork_daemon(void)
{
    sigset_t block, old;
    pid_t child;
    int err;

    sigemptyset(&block);
    for (size_t i = 0; i < sizeof(sb_fwd_sigs) / sizeof(sb_fwd_sigs[0]); i++) {
        sigaddset(&block, sb_fwd_sigs[i]);
    }
    sigprocmask(SIG_BLOCK, &block, &old);
    fflush(NULL);
    child = fork();
    err = child < 0 ? -errno : 0;
    if (child > 0) {
        supervise(child, &old);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return err;
}

static int
write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;
    int err = 0;

    if (fd < 0) {
        return -errno;
    }
    n = write(fd, text, strlen(text));
    if (n != (ssize_t)strlen(text)) {
        err = n < 0 ? -errno : -EIO;
    }
    close(fd);
    return err;
}

/* Map our own uid/gid into a new user namespace (unprivileged start). */
static int
map_ids(uid_t uid, gid_t gid)
{
    char line[64];
    int err;

    snprintf(line, sizeof(line), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    err = write_file("/proc/self/uid_map", line);
    if (err == 0) {
        err = write_file("/proc/self/setgroups", "deny\n");
    }
    if (err == 0) {
        snprintf(line, sizeof(line), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
        err = write_file("/proc/self/gid_map", line);
    }
    return err;
}

/* mkdir -p of an absolute path below root (components already there are
 * fine: inside an earlier bind mount they are the host's own). */
static int
mkdirs(const char *root, const char *path)
{
    char buf[PATH_MAX];
    size_t rl = strlen(root);

    if (rl + strlen(path) + 1 > sizeof(buf)) {
        return -ENAMETOOLONG;
    }
    memcpy(buf, root, rl);
    memcpy(buf + rl, path, strlen(path) + 1);
    for (char *p = buf + rl + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;

            *p = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
                return -errno;
            }
            *p = c;
            if (c == '\0') {
                break;
            }
        }
    }
    return 0;
}

/*
 * What the new root must hold: every host directory the exports' backends
 * keep open (be_ops.host_dirs), found by the path their descriptors name.
 */
#define SB_MAX_DIRS 1024

struct sb_dir {
    int ex;               /* export index */
    struct be_hostdir hd; /* as the backend reported it */
    char *path;           /* absolute path on the host */
};

/* A bind mount of the new root (a directory, or the common ancestor of a
 * mount group). */
struct sb_bind {
    char *path;
    bool writable;
    bool check; /* the path must still be the inode of dir 'dir' */
    int dir;
    int srcfd; /* opened in the host's tree before the new root exists */
};

struct sb_plan {
    struct sb_dir *dirs;
    int ndirs;
    struct sb_bind *binds;
    int nbinds;
};

static void
plan_free(struct sb_plan *p)
{
    for (int i = 0; i < p->ndirs; i++) {
        free(p->dirs[i].path);
    }
    for (int i = 0; i < p->nbinds; i++) {
        free(p->binds[i].path);
        if (p->binds[i].srcfd >= 0) {
            close(p->binds[i].srcfd);
        }
    }
    free(p->dirs);
    free(p->binds);
    memset(p, 0, sizeof(*p));
}

/* The path a descriptor names in the caller's root, malloc'd. */
static char *
fd_path(int fd)
{
    char proc[32];
    char buf[PATH_MAX];
    ssize_t n;

    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    n = readlink(proc, buf, sizeof(buf) - 1);
    if (n <= 0 || buf[0] != '/') {
        return NULL; /* unlinked, or not reachable from our root */
    }
    buf[n] = '\0';
    return strdup(buf);
}

/* Cut 'acc' back to the deepest directory that also contains 'path'. */
static void
common_dir(char *acc, const char *path)
{
    size_t i = 0;
    size_t last = 1; /* keep "/" at least */

    while (acc[i] != '\0' && acc[i] == path[i]) {
        i++;
        if (acc[i] == '/' ||
            (acc[i] == '\0' && (path[i] == '/' || path[i] == '\0'))) {
            last = i;
        }
    }
    if (acc[i] == '\0' && (path[i] == '/' || path[i] == '\0')) {
        return; /* acc is an ancestor of path (or path itself) */
    }
    acc[last] = '\0';
}

static bool
same_inode(int a, int b)
{
    struct stat sa;
    struct stat sb;

    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static int
plan_add_bind(struct sb_plan *p, char *path, bool writable, int dir, bool check)
{
    struct sb_bind *b = &p->binds[p->nbinds++];

    b->path = path;
    b->writable = writable;
    b->dir = dir;
    b->check = check;
    b->srcfd = -1;
    return path == NULL ? -ENOMEM : 0;
}

/*
 * Collect the directories and decide the binds: each directory at its own
 * path, except a mount group (directories the backend renames between),
 * bound once through its members' deepest common directory.  That
 * directory's other entries are then in the new root too; a group whose
 * common directory is "/" would bring the whole host back and is refused.
 */
static int
plan_make(struct sb_plan *p, const struct p9s_export *exports, int nexports)
{
    memset(p, 0, sizeof(*p));
    p->dirs = calloc(SB_MAX_DIRS, sizeof(*p->dirs));
    p->binds = calloc(SB_MAX_DIRS, sizeof(*p->binds));
    if (p->dirs == NULL || p->binds == NULL) {
        return -ENOMEM;
    }
    for (int e = 0; e < nexports; e++) {
        const struct be_ops *ops = exports[e].be->ops;
        struct be_hostdir hd[64];
        int n;

        if (ops->host_dirs == NULL || ops->reroot == NULL) {
            log_err("sandbox: export %s: its backend cannot be confined "
                    "(no host_dirs/reroot); use --sandbox none",
                    exports[e].path);
            return -ENOTSUP;
        }
        n = ops->host_dirs(exports[e].be, hd, 64);
        if (n < 0) {
            return n;
        }
        if (n > 64 || p->ndirs + n > SB_MAX_DIRS) {
            return -E2BIG;
        }
        for (int i = 0; i < n; i++) {
            struct sb_dir *d = &p->dirs[p->ndirs];

            d->ex = e;
            d->hd = hd[i];
            d->path = fd_path(hd[i].fd);
            if (d->path == NULL) {
                log_err("sandbox: export %s: a directory it holds has no "
                        "path (removed?)",
                        exports[e].path);
                return -ENOENT;
            }
            p->ndirs++;
        }
    }
    for (int i = 0; i < p->ndirs; i++) {
        const struct sb_dir *d = &p->dirs[i];
        bool writable = d->hd.writable;
        bool seen = false;
        char *anc;

        if (d->hd.mount_group == 0) {
            if (plan_add_bind(p, strdup(d->path), writable, i, true) < 0) {
                return -ENOMEM;
            }
            continue;
        }
        for (int j = 0; j < i && !seen; j++) {
            seen = p->dirs[j].ex == d->ex &&
                   p->dirs[j].hd.mount_group == d->hd.mount_group;
        }
        if (seen) {
            continue;
        }
        anc = strdup(d->path);
        if (anc == NULL) {
            return -ENOMEM;
        }
        for (int j = i + 1; j < p->ndirs; j++) {
            if (p->dirs[j].ex == d->ex &&
                p->dirs[j].hd.mount_group == d->hd.mount_group) {
                common_dir(anc, p->dirs[j].path);
                writable = writable || p->dirs[j].hd.writable;
            }
        }
        if (strcmp(anc, "/") == 0) {
            log_err("sandbox: export %s: directories that must share a "
                    "mount (overlay upper and work) have no common parent "
                    "but /; put them in one directory",
                    exports[d->ex].path);
            free(anc);
            return -EINVAL;
        }
        if (plan_add_bind(p, anc, writable, i, false) < 0) {
            return -ENOMEM;
        }
    }
    return 0;
}

/* Open each bind source in the host's tree (before a tmpfs can hide it). */
static int
plan_open(struct sb_plan *p)
{
    for (int i = 0; i < p->nbinds; i++) {
        struct sb_bind *b = &p->binds[i];

        b->srcfd = open(b->path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (b->srcfd < 0) {
            int err = -errno;

            log_err("sandbox: open %s: %s", b->path, strerror(-err));
            return err;
        }
        if (b->check && !same_inode(b->srcfd, p->dirs[b->dir].hd.fd)) {
            log_err("sandbox: %s changed since the export was opened", b->path);
            return -ESTALE;
        }
    }
    return 0;
}

/*
 * Bind one directory at its host path below newroot, read-only unless a
 * backend writes there.  The source is the descriptor opened in this mount
 * namespace (the kernel binds only mounts of the caller's namespace).
 */
static int
bind_dir(const char *newroot, const struct sb_bind *b, bool userns)
{
    char src[32];
    char dst[PATH_MAX + 16];
    struct statvfs sv;
    int err;

    err = mkdirs(newroot, b->path);
    if (err < 0) {
        return err;
    }
    snprintf(src, sizeof(src), "/proc/self/fd/%d", b->srcfd);
    snprintf(dst, sizeof(dst), "%s%s", newroot, b->path);
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0) {
        return -errno;
    }
    if (!b->writable && !userns && statvfs(dst, &sv) == 0) {
        unsigned long fl = MS_BIND | MS_REMOUNT | MS_RDONLY;

        /* a bind remount must repeat the flags the kernel locked */
        fl |= (sv.f_flag & ST_NOSUID) ? MS_NOSUID : 0;
        fl |= (sv.f_flag & ST_NODEV) ? MS_NODEV : 0;
        fl |= (sv.f_flag & ST_NOEXEC) ? MS_NOEXEC : 0;
        fl |= (sv.f_flag & ST_NOATIME) ? MS_NOATIME : 0;
        fl |= (sv.f_flag & ST_NODIRATIME) ? MS_NODIRATIME : 0;
        fl |= (sv.f_flag & ST_RELATIME) ? MS_RELATIME : 0;
        if (mount(NULL, dst, NULL, fl, NULL) < 0) {
            log_warn("sandbox: read-only bind of %s: %s (virtfsd still "
                     "writes nothing there)",
                     b->path, strerror(errno));
        }
    }
    return 0;
}

/*
 * In the new root: reopen every directory by its path (minus 'strip', the
 * new root's host path in chroot mode), check it is the same inode, and
 * hand them to the backends, export by export.
 */
static int
plan_reroot(const struct sb_plan *p, const struct p9s_export *exports,
            int nexports, size_t strip, const char *proc_fd)
{
    int fds[64];
    int err = 0;

    for (int e = 0; e < nexports && err == 0; e++) {
        int n = 0;

        for (int i = 0; i < p->ndirs && err == 0; i++) {
            const char *path = p->dirs[i].path + strip;
            int fd;

            if (p->dirs[i].ex != e) {
                continue;
            }
            fd = open(path[0] != '\0' ? path : "/",
                      O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                err = -errno;
            } else if (!same_inode(fd, p->dirs[i].hd.fd)) {
                close(fd);
                err = -ESTALE;
            } else {
                fds[n++] = fd;
            }
            if (err < 0) {
                log_err("sandbox: reopen %s in the new root: %s",
                        p->dirs[i].path, strerror(-err));
            }
        }
        if (err == 0) {
            err = exports[e].be->ops->reroot(exports[e].be, fds, n, proc_fd);
            if (err < 0) {
                log_err("sandbox: export %s: reroot: %s", exports[e].path,
                        strerror(-err));
            }
        }
        while (n > 0) {
            close(fds[--n]);
        }
    }
    return err;
}

/*
 * The user and group databases, read-only: a Tattach names its user
 * (uname, or n_uname mapped to a name and groups), resolved through NSS
 * files.  Bound file by file (no /etc/shadow); a database replaced on the
 * host by rename is seen after a restart of virtfsd.
 */
static const char *const sb_etc_files[] = {
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
};

static int
bind_etc_file(const char *newroot, const char *path, bool userns)
{
    char dst[64];
    int fd;

    if (access(path, F_OK) < 0) {
        return 0; /* nothing to show */
    }
    snprintf(dst, sizeof(dst), "%s/etc", newroot);
    if (mkdir(dst, 0755) < 0 && errno != EEXIST) {
        return -errno;
    }
    snprintf(dst, sizeof(dst), "%s%s", newroot, path);
    fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -errno;
    }
    close(fd);
    if (mount(path, dst, NULL, MS_BIND, NULL) < 0) {
        return -errno;
    }
    if (!userns && mount(NULL, dst, NULL,
                         MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID |
                             MS_NODEV | MS_NOEXEC,
                         NULL) < 0) {
        log_warn("sandbox: read-only bind of %s: %s", path, strerror(errno));
    }
    return 0;
}

static int
build_root(const struct p9s_export *exports, int nexports, bool userns)
{
    const char *newroot = NULL;
    struct sb_plan plan;
    char proc[64];
    int err;

    /* nothing we mount may propagate back to the host */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        return -errno;
    }
    err = plan_make(&plan, exports, nexports);
    if (err == 0) {
        err = plan_open(&plan); /* before a tmpfs hides them (/tmp/x) */
    }
    for (size_t i = 0;
         err == 0 && i < sizeof(sb_newroot_dirs) / sizeof(*sb_newroot_dirs);
         i++) {
        if (mount("virtfsd-root", sb_newroot_dirs[i], "tmpfs",
                  MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=0755,size=64k") == 0) {
            newroot = sb_newroot_dirs[i];
        }
        if (newroot != NULL) {
            break;
        }
        if (i + 1 == sizeof(sb_newroot_dirs) / sizeof(*sb_newroot_dirs)) {
            err = errno > 0 ? -errno : -ENOENT;
        }
    }
    /* shortest paths first: a directory inside another is bound on top */
    for (size_t len = 1; len <= PATH_MAX && err == 0; len++) {
        for (int i = 0; i < plan.nbinds && err == 0; i++) {
            if (strlen(plan.binds[i].path) != len) {
                continue;
            }
            err = bind_dir(newroot, &plan.binds[i], userns);
            if (err < 0) {
                log_err("sandbox: bind mount of %s: %s", plan.binds[i].path,
                        strerror(-err));
            }
        }
    }
    for (size_t i = 0;
         err == 0 && i < sizeof(sb_etc_files) / sizeof(*sb_etc_files); i++) {
        err = bind_etc_file(newroot, sb_etc_files[i], userns);
        if (err < 0) {
            log_err("sandbox: bind mount of %s: %s", sb_etc_files[i],
                    strerror(-err));
        }
    }
    if (err != 0 || newroot == NULL) {
        err = err != 0 ? err : -ENOENT;
        goto out;
    }
    snprintf(proc, sizeof(proc), "%s/proc", newroot);
    if (mkdir(proc, 0555) < 0 && errno != EEXIST) {
        err = -errno;
        goto out;
    }
    /* subset=pid (Linux 5.8): only the pid directories, no /proc/sys */
    if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "subset=pid") < 0 &&
        mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
            0) {
        err = -errno;
        log_err("sandbox: mount /proc: %s", strerror(-err));
        goto out;
    }
    if (chdir(newroot) < 0) {
        err = -errno;
        goto out;
    }
    /* the old root ends up under the new one; detach it at once */
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
        err = -errno;
        log_err("sandbox: pivot_root: %s", strerror(-err));
        goto out;
    }
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0) {
        err = -errno;
        goto out;
    }
    if (mount(NULL, "/", NULL,
              MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              NULL) < 0) {
        log_warn("sandbox: cannot make the new root read-only: %s",
                 strerror(errno));
    }
    err = plan_reroot(&plan, exports, nexports, 0, "/proc/self/fd/");
out:
    plan_free(&plan);
    return err;
}

/*
 * Returns 0 in the confined child, never returns in the parent.
 * *userns is set when a user namespace was made (unprivileged start),
 * *committed once a namespace exists (a later error is fatal).
 */
static int
enter_namespaces(const struct p9s_export *exports, int nexports, bool *userns,
                 bool *committed)
{
    /* the others are made by the child: the process that stays outside
     * keeps the host's mount namespace (it removes the sockets at exit) */
    int child_flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                      CLONE_NEWCGROUP;
    int flags = CLONE_NEWPID;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    int err;

    *userns = uid != 0;
    if (*userns) {
        flags |= CLONE_NEWUSER;
    }
    if (unshare(flags) < 0) {
        return -errno;
    }
    /* from here a failure is fatal: a user namespace without a mapping
     * cannot just go on unconfined */
    *committed = true;
    if (*userns) {
        err = map_ids(uid, gid);
        if (err < 0) {
            return err;
        }
    }
    err = fork_daemon();
    if (err < 0) {
        return err;
    }
    /* the daemon goes when its supervisor goes (e.g. SIGKILLed) */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (unshare(child_flags) < 0) {
        err = -errno;
        log_err("sandbox: unshare: %s", strerror(-err));
        return err;
    }
    if (sethostname("virtfsd", 7) < 0) {
        log_warn("sandbox: sethostname: %s", strerror(errno));
    }
    return build_root(exports, nexports, *userns);
}

/*
 * --sandbox chroot, for hosts without namespaces: the daemon forks (the
 * process outside stays, as in namespace mode, to remove the sockets at
 * exit) and chroots into the deepest directory that holds every directory
 * the exports' backends use: the export itself when there is one
 * passthrough export.  A common parent of "/" would confine nothing and is
 * refused.  With no mount namespace there is no /proc below the new root:
 * the working directory becomes /proc/self/fd, opened before the chroot,
 * and the backends name descriptors relative to it (be_ops.reroot).  Only
 * those digit-only names are ever resolved from it.  User names and groups
 * resolve through the new root's /etc files (NSS fixed to the built-in
 * "files" service first, so no module is ever loaded from the new root).
 */
static int
enter_chroot(const struct p9s_export *exports, int nexports)
{
    static const char *const dbs[] = {"passwd", "group", "initgroups"};
    struct sb_plan plan;
    char *root = NULL;
    int procfd;
    int err;

    if (geteuid() != 0) {
        log_err("--sandbox chroot needs root (CAP_SYS_CHROOT)");
        return -EPERM;
    }
    err = plan_make(&plan, exports, nexports);
    if (err == 0 && plan.ndirs > 0) {
        root = strdup(plan.dirs[0].path);
        err = root == NULL ? -ENOMEM : 0;
    }
    for (int i = 1; err == 0 && i < plan.ndirs; i++) {
        common_dir(root, plan.dirs[i].path);
    }
    if (err == 0 && (root == NULL || strcmp(root, "/") == 0)) {
        log_err("--sandbox chroot: the exports' directories have no common "
                "parent but /, where a chroot confines nothing; give "
                "exports below one directory, or use --sandbox namespace");
        err = -EINVAL;
    }
    for (size_t i = 0; err == 0 && i < sizeof(dbs) / sizeof(*dbs); i++) {
        if (__nss_configure_lookup(dbs[i], "files") != 0) {
            err = -EINVAL;
        }
    }
    if (err != 0 || root == NULL) {
        err = err != 0 ? err : -EINVAL;
        goto out;
    }
    err = fork_daemon();
    if (err < 0) {
        goto out;
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
#ifdef SB_ASAN
    /* LeakSanitizer's check at exit needs /proc, which a chroot lacks
     * (the process would abort): check now, before the chroot, instead */
    __lsan_do_leak_check();
#endif
    /* the child's own /proc/PID/fd: "self" resolves now */
    procfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0 || chdir(root) < 0 || chroot(".") < 0 ||
        fchdir(procfd) < 0) {
        err = -errno;
        log_err("--sandbox chroot %s: %s", root, strerror(-err));
    } else {
        err = plan_reroot(&plan, exports, nexports, strlen(root), "");
    }
    if (procfd >= 0) {
        close(procfd);
    }
    if (err == 0) {
        log_info("sandbox: chroot into %s", root);
    }
out:
    free(root);
    plan_free(&plan);
    return err;
}

/* ---- capabilities ------------------------------------------------------ */

static const int sb_caps_rw[] = {
    CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
    CAP_FSETID, CAP_SETUID,       CAP_SETGID,          CAP_MKNOD,
};
/* with only read-only exports nothing is created, chowned or chmodded */
static const int sb_caps_ro[] = {
    CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_SETUID, CAP_SETGID,
};

static uint64_t
caps_wanted(const struct sandbox_opts *o, const struct p9s_export *exports,
            int nexports, bool privileged)
{
    bool all_ro = true;
    uint64_t set = 0;

    for (int i = 0; i < nexports; i++) {
        all_ro = all_ro && exports[i].readonly;
    }
    if (privileged) {
        const int *caps = all_ro ? sb_caps_ro : sb_caps_rw;
        size_t n = all_ro ? sizeof(sb_caps_ro) / sizeof(int)
                          : sizeof(sb_caps_rw) / sizeof(int);

        for (size_t i = 0; i < n; i++) {
            set |= UINT64_C(1) << caps[i];
        }
    }
    if (privileged) {
        set |= o->caps_need;
    }
    return (set | o->caps_add) & ~o->caps_drop;
}

static void
caps_string(uint64_t set, char *buf, size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (int c = 0; c < 64 && off < len; c++) {
        const char *name;

        if (!(set & (UINT64_C(1) << c))) {
            continue;
        }
        name = capng_capability_to_name((unsigned)c);
        off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "," : "",
                                name ? name : "?");
    }
    if (buf[0] == '\0') {
        snprintf(buf, len, "none");
    }
}

static int
apply_caps(uint64_t keep)
{
    int rc;

    capng_clear(CAPNG_SELECT_ALL);
    for (int c = 0; c < 64; c++) {
        if ((keep & (UINT64_C(1) << c)) &&
            capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED,
                         (unsigned)c) < 0) {
            return -EINVAL;
        }
    }
    /* bounding (needs CAP_SETPCAP, still held), then the sets; ambient
     * and inheritable stay empty */
    rc = capng_apply(CAPNG_SELECT_ALL);
    if (rc < 0) {
        log_err("sandbox: capng_apply failed (%d)", rc);
        return -EPERM;
    }
    return 0;
}

/* ---- seccomp ----------------------------------------------------------- */

/*
 * Every system call virtfsd makes on any transport, and what glibc makes
 * for it: threads, memory, signals, time.  Names a given architecture does
 * not have (e.g. open, stat on arm64) are skipped.
 */
static const char *const sb_syscalls[] = {
    /* files: the passthrough backend (walks, I/O, attributes, dirs) */
    "openat",
    "openat2",
    "open",
    "close",
    "close_range",
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "lseek",
    "_llseek",
    "fstat",
    "fstat64",
    "newfstatat",
    "fstatat64",
    "stat",
    "lstat",
    "statx",
    "statfs",
    "fstatfs",
    "statfs64",
    "fstatfs64",
    "getdents64",
    "getdents",
    "readlinkat",
    "readlink",
    "mkdirat",
    "mkdir",
    "mknodat",
    "mknod",
    "symlinkat",
    "symlink",
    "linkat",
    "link",
    "unlinkat",
    "unlink",
    "rmdir",
    "renameat",
    "renameat2",
    "rename",
    "fchownat",
    "fchown",
    "fchown32",
    "lchown",
    "chown",
    "fchmodat",
    "fchmodat2",
    "fchmod",
    "chmod",
    "utimensat",
    "utimensat_time64",
    "futimesat",
    "truncate",
    "ftruncate",
    "truncate64",
    "ftruncate64",
    "fallocate",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "syncfs",
    "faccessat",
    "faccessat2",
    "access",
    "flock",
    "fcntl",
    "fcntl64",
    "name_to_handle_at",
    "open_by_handle_at",
    "copy_file_range",
    "splice",
    "sendfile",
    "sendfile64",
    "fadvise64",
    "fadvise64_64",
    "umask",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "getcwd",
    "chdir",
    "fchdir",
    "dup",
    "dup2",
    "dup3",
    "pipe2",
    /* per-request identity (setfsuid/setfsgid/setgroups, capset per
     * thread) and queries */
    "setfsuid",
    "setfsgid",
    "setfsuid32",
    "setfsgid32",
    "setgroups",
    "setgroups32",
    "capget",
    "capset",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "getuid32",
    "geteuid32",
    "getgid32",
    "getegid32",
    "getgroups32",
    /* event loops, transports (stream, vhost-user), eventfds */
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "select",
    "pselect6",
    "pselect6_time64",
    "eventfd2",
    "accept",
    "accept4",
    "recvmsg",
    "sendmsg",
    "recvfrom",
    "sendto",
    "recvmmsg",
    "sendmmsg",
    "shutdown",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "getpeername",
    "connect",
    /* memory (guest memory regions of vhost-user, malloc) */
    "mmap",
    "mmap2",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "brk",
    "membarrier",
    /* threads, futexes, signals, glibc */
    "clone",
    "clone3",
    "futex",
    "futex_time64",
    "futex_waitv",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "set_tid_address",
    "gettid",
    "getpid",
    "getppid",
    "tgkill",
    "tkill",
    "exit",
    "exit_group",
    "sched_yield",
    "sched_getaffinity",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigreturn",
    "sigaltstack",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_sigsuspend",
    "restart_syscall",
    /* time, timers (--stats), entropy, limits */
    "clock_gettime",
    "clock_gettime64",
    "clock_getres",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "nanosleep",
    "gettimeofday",
    "time",
    "timer_create",
    "timer_settime",
    "timer_settime64",
    "timer_delete",
    "timer_gettime",
    "getrandom",
    "uname",
    "getrlimit",
    "prlimit64",
    "ugetrlimit",
    "sysinfo",
    "getpriority",
};

#ifdef SB_SANITIZER
/* ASan/LSan: the leak checker's stop-the-world thread ptraces ours */
static const char *const sb_syscalls_sanitizer[] = {
    "ptrace",  "wait4",    "waitid",
    "prctl",   "kill",     "sched_setaffinity",
    "getpgid", "readlink", "process_vm_readv",
};
#endif

static void
on_sigsys(int sig, siginfo_t *si, void *uc_)
{
    static const char msg[] = "virtfsd: seccomp: blocked system call ";
    char num[16];
    int n = 0;
    unsigned v = (unsigned)si->si_syscall;
    ucontext_t *uc = uc_;

    (void)sig;
    /* async-signal-safe: write(2) of a fixed text and a number */
    do {
        num[sizeof(num) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 && n < 14);
    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0 ||
        write(STDERR_FILENO, num + sizeof(num) - n, (size_t)n) < 0 ||
        write(STDERR_FILENO, "\n", 1) < 0) {
        /* nothing to do: the log is gone */
    }
    /* the call did not happen: make it fail with ENOSYS */
#if defined(__x86_64__)
    uc->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
#elif defined(__aarch64__)
    uc->uc_mcontext.regs[0] = (unsigned long long)-ENOSYS;
#else
    (void)uc;
    _exit(159);
#endif
}

static int
add_rule(scmp_filter_ctx ctx, const char *name, unsigned nargs,
         const struct scmp_arg_cmp *args)
{
    int nr = seccomp_syscall_resolve_name(name);

    if (nr == __NR_SCMP_ERROR) {
        return 0; /* not on this architecture */
    }
    return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, nargs, args);
}

static int
apply_seccomp(enum sandbox_seccomp mode)
{
    uint32_t deflt;
    scmp_filter_ctx ctx;
    int err = 0;

    switch (mode) {
    case SANDBOX_SECCOMP_KILL: deflt = SCMP_ACT_KILL_PROCESS; break;
    case SANDBOX_SECCOMP_LOG: deflt = SCMP_ACT_LOG; break;
    case SANDBOX_SECCOMP_TRAP: {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_sigsys;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSYS, &sa, NULL);
        deflt = SCMP_ACT_TRAP;
        break;
    }
    default: return 0;
    }
    ctx = seccomp_init(deflt);
    if (ctx == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0;
         i < sizeof(sb_syscalls) / sizeof(*sb_syscalls) && err == 0; i++) {
        err = add_rule(ctx, sb_syscalls[i], 0, NULL);
    }
#ifdef SB_SANITIZER
    for (size_t i = 0;
         i < sizeof(sb_syscalls_sanitizer) / sizeof(*sb_syscalls_sanitizer) &&
         err == 0;
         i++) {
        err = add_rule(ctx, sb_syscalls_sanitizer[i], 0, NULL);
    }
#else
    {
        /* prctl: thread names and queries, not PR_SET_DUMPABLE etc. */
        static const int pr_ok[] = {PR_SET_NAME,       PR_GET_NAME,
                                    PR_CAPBSET_READ,   PR_GET_DUMPABLE,
                                    PR_GET_SECUREBITS, PR_GET_NO_NEW_PRIVS,
                                    PR_GET_KEEPCAPS};

        for (size_t i = 0; i < sizeof(pr_ok) / sizeof(*pr_ok) && err == 0;
             i++) {
            struct scmp_arg_cmp a =
                SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)pr_ok[i]);

            err = add_rule(ctx, "prctl", 1, &a);
        }
    }
#endif
    {
        /* unshare: only CLONE_FS, which each creating thread uses once for
         * a umask of its own (pt_exact_modes: exact modes for the guest
         * without a process-wide umask 0) */
        struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_EQ, CLONE_FS);

        if (err == 0) {
            err = add_rule(ctx, "unshare", 1, &a);
        }
    }
    {
        /* new sockets: only AF_UNIX (syslog reconnects to /dev/log) */
        struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_EQ, AF_UNIX);

        if (err == 0) {
            err = add_rule(ctx, "socket", 1, &a);
        }
    }
    {
        /* ioctl: glibc's isatty and socket queries, and FICLONE (the
         * overlay backend's copy-up shares extents where it can) */
        static const unsigned long io_ok[] = {TCGETS, FIONREAD, FIONBIO,
                                              FIOCLEX, FICLONE};

        for (size_t i = 0; i < sizeof(io_ok) / sizeof(*io_ok) && err == 0;
             i++) {
            struct scmp_arg_cmp a = SCMP_A1(SCMP_CMP_EQ, io_ok[i]);

            err = add_rule(ctx, "ioctl", 1, &a);
        }
    }
    /* every thread, and no-new-privs (libseccomp's default) with it */
    if (err == 0) {
        err = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    }
    /* a binary tree instead of a chain of ~200 compares (libseccomp
     * 2.5); the kernel's cache makes argument-free allows cheap anyway */
    if (err == 0) {
        (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    }
    if (err == 0) {
        err = seccomp_load(ctx);
    }
    seccomp_release(ctx);
    return err;
}

/* ---- the whole --------------------------------------------------------- */

static const char *
mode_name(enum sandbox_mode m)
{
    switch (m) {
    case SANDBOX_NAMESPACE: return "namespace";
    case SANDBOX_CHROOT: return "chroot";
    case SANDBOX_NONE: return "none";
    default: return "auto";
    }
}

static const char *
seccomp_name(enum sandbox_seccomp s)
{
    static const char *const names[] = {"kill", "log", "trap", "none"};

    return names[s];
}

#ifdef VIRTFSD_TEST_HOOKS
/*
 * Test builds only (virtfsd-testhooks, never installed): make one system
 * call that is not on the allow-list, so tests/sandbox can see each
 * seccomp action at work.  syslog(SYSLOG_ACTION_SIZE_BUFFER) is harmless.
 */
static void
test_hook_forbidden_call(void)
{
    const char *e = getenv("VIRTFSD_TEST_FORBIDDEN_SYSCALL");
    long r;

    if (e == NULL || strcmp(e, "1") != 0) {
        return;
    }
    errno = 0;
    r = syscall(SYS_syslog, 10, NULL, 0);
    log_info("test hook: forbidden system call %d returned %ld (%s)",
             (int)SYS_syslog, r, r < 0 ? strerror(errno) : "ok");
}
#endif

/*
 * Threads already running would not follow: a fork keeps only the calling
 * thread, and capability sets are per thread.  Count them (/proc/self/task)
 * so a thread started too early is an error at start, not a hole.
 */
static int
count_threads(void)
{
    struct stat st;

    /* a directory's link count: 2 + one per subdirectory (task) */
    if (stat("/proc/self/task", &st) < 0) {
        return -errno;
    }
    return (int)st.st_nlink - 2;
}

#ifdef VIRTFSD_TEST_HOOKS
static void *
test_hook_sleeper(void *arg)
{
    (void)arg;
    pause();
    return NULL;
}

/* VIRTFSD_TEST_EARLY_THREAD=1: a thread started before the sandbox */
static void
test_hook_early_thread(void)
{
    const char *e = getenv("VIRTFSD_TEST_EARLY_THREAD");
    pthread_t th;

    if (e != NULL && strcmp(e, "1") == 0 &&
        pthread_create(&th, NULL, test_hook_sleeper, NULL) == 0) {
        pthread_detach(th);
    }
}
#endif

int
sandbox_enter(const struct sandbox_opts *o, const struct p9s_export *exports,
              int nexports)
{
    enum sandbox_mode mode = o->mode;
    bool privileged = geteuid() == 0;
    bool userns = false;
    bool committed = false;
    uint64_t keep;
    char caps[512];
    char note[192] = "";
    int err;

#ifdef VIRTFSD_TEST_HOOKS
    test_hook_early_thread();
#endif
    err = count_threads();
    if (err > 1) {
        log_err("sandbox: %d threads run already; virtfsd must start none "
                "before it confines itself",
                err);
        return -EBUSY;
    }
    if (mode == SANDBOX_CHROOT) {
        err = enter_chroot(exports, nexports);
        if (err < 0) {
            return err;
        }
    }
    if (mode == SANDBOX_AUTO || mode == SANDBOX_NAMESPACE) {
        err = enter_namespaces(exports, nexports, &userns, &committed);
        if (err < 0 && (mode == SANDBOX_NAMESPACE || committed)) {
            log_err("--sandbox namespace: %s", strerror(-err));
            return err;
        }
        if (err < 0) {
            /* the first unshare failed: nothing changed yet */
            const char *why = privileged ? NULL : userns_refused();

            snprintf(note, sizeof(note), " (namespaces unavailable: %s)",
                     why != NULL ? why : strerror(-err));
            mode = SANDBOX_NONE;
        } else {
            mode = SANDBOX_NAMESPACE;
        }
    }

    /* rlimits (RLIMIT_NOFILE, --rlimit-nofile) are set by main() before */

    keep = caps_wanted(o, exports, nexports, privileged);
    if (privileged || userns) {
        err = apply_caps(userns ? 0 : keep);
        if (err < 0) {
            return err;
        }
        if (userns) {
            keep = 0;
        }
    } else {
        keep = 0; /* an unprivileged daemon has none to drop */
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        err = -errno;
        log_err("sandbox: prctl: %s", strerror(-err));
        return err;
    }
    err = apply_seccomp(o->seccomp);
    if (err < 0) {
        log_err("sandbox: cannot load the seccomp filter: %s", strerror(-err));
        return err;
    }
    caps_string(keep, caps, sizeof(caps));
    if (userns) {
        /* no ranges: only the daemon's own ids exist inside */
        snprintf(note, sizeof(note),
                 " (user namespace, only uid %u and "
                 "gid %u mapped: no ownership changes; --uid-map/--gid-map "
                 "map a range)",
                 (unsigned)getuid(), (unsigned)getgid());
    }
    log_info("sandbox: %s%s%s, seccomp %s, capabilities kept: %s",
             mode_name(mode), sb_userns_note, note, seccomp_name(o->seccomp),
             caps);
#ifdef VIRTFSD_TEST_HOOKS
    test_hook_forbidden_call();
#endif
    return 0;
}
