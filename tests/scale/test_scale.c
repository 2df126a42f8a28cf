/* SPDX-License-Identifier: MIT */
/*
 * Scale: a million fids on a daemon limited to 1,024 descriptors.
 *
 * A spawned virtfsd (--rlimit-nofile 1024) exports a tree of NF files
 * (NF = FIDS / 5, 1,000 per directory).  Three connections walk every file
 * once (NF distinct nodes), then fill up to FIDS fids in total with
 * repeated walks and clones, with getattr, open, read and write on
 * random fids along the way, and holding over a thousand of them open
 * (Tlopen).  Every request must succeed, the daemon's
 * descriptor count (sampled every 20 ms) must stay under the limit, and a
 * fourth connection attaches and works while the others hold their fids.
 * The daemon's memory per idle fid and per node is printed (from its RSS
 * and its node count), and a file renamed and one replaced on the host
 * after its node lost its descriptor give the file or ESTALE, never
 * another file.
 *
 * Usage: test_scale VIRTFSD privileged|unprivileged [FIDS]
 * "unprivileged" runs the daemon as uid/gid 65534 without capabilities:
 * no file handles, nodes are found again by name.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "virtfs/client.h"

#define NCONN 3
#define PER_DIR 1000
#define FD_LIMIT 1024
#define NOBODY 65534

static const char *vfsd;
static bool unpriv;
static long nfids = 1000000;
static long nfiles;
static char exdir[128];
static char sockdir[128];
static char addr[200];
static char logpath[200];
static pid_t pid;

static atomic_long failures;
static atomic_long ops_done;
static atomic_int max_fds;
static atomic_bool stop_monitor;
static pthread_barrier_t barrier;

struct worker {
    int idx;
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid **fids;
    long nf;
    unsigned seed;
    struct p9c_fid *open[4096]; /* fids held open (Tlopen) meanwhile */
    int nopen;
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
file_path(long i, char *buf, size_t size)
{
    snprintf(buf, size, "d%03ld/f%06ld", i / PER_DIR, i);
}

static void
file_content(long i, char *buf, size_t size)
{
    snprintf(buf, size, "f%07ld", i);
}

/* The process that serves: with the default --sandbox namespace virtfsd
 * forks and its child (pid 1 of a new pid namespace) does the work. */
static int
serving_pid(void)
{
    char p[64];
    long child = 0;
    FILE *f;

    snprintf(p, sizeof(p), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    f = fopen(p, "r");
    if (f != NULL) {
        if (fscanf(f, "%ld", &child) != 1) {
            child = 0;
        }
        fclose(f);
    }
    return child > 0 ? (int)child : (int)pid;
}

static long
rss_kb(void)
{
    char p[64];
    char line[256];
    long kb = -1;
    FILE *f;

    snprintf(p, sizeof(p), "/proc/%d/status", serving_pid());
    f = fopen(p, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb;
}

static int
daemon_fds(void)
{
    char p[64];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(p, sizeof(p), "/proc/%d/fd", serving_pid());
    d = opendir(p);
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

static void *
monitor(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_monitor)) {
        int n = daemon_fds();

        if (n > atomic_load(&max_fds)) {
            atomic_store(&max_fds, n);
        }
        usleep(20000);
    }
    return NULL;
}

static void
fail(const char *what, long i, int err)
{
    if (atomic_fetch_add(&failures, 1) < 10) {
        tap_diag("FAILED %s %ld: %d (%s)", what, i, err, strerror(-err));
    }
}

/* open + write + read back on a clone of 'f' (file i). */
static void
io_check(struct p9c_fid *f, long i)
{
    struct p9c_fid *c = NULL;
    char want[16];
    char buf[16] = "";
    ssize_t n;
    int err;

    file_content(i, want, sizeof(want));
    err = p9c_walk(f, "", &c);
    if (err < 0) {
        fail("clone", i, err);
        return;
    }
    err = p9c_open(c, P9_DOTL_RDWR);
    if (err < 0) {
        fail("open", i, err);
        p9c_clunk(c);
        return;
    }
    n = p9c_pwrite(c, want, strlen(want), 0);
    if (n != (ssize_t)strlen(want)) {
        fail("write", i, (int)n);
    }
    n = p9c_pread(c, buf, sizeof(buf) - 1, 0);
    if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n) != 0) {
        fail("read", i, n < 0 ? (int)n : -EIO);
    }
    p9c_clunk(c);
    atomic_fetch_add(&ops_done, 4);
}

static void *
work(void *arg)
{
    struct worker *w = arg;
    long quota = nfids / NCONN + (w->idx < nfids % NCONN ? 1 : 0);
    char path[64];
    long distinct = 0;

    /* phase A: every file once, split between the connections */
    for (long i = w->idx; i < nfiles; i += NCONN) {
        int err;

        file_path(i, path, sizeof(path));
        err = p9c_walk(w->root, path, &w->fids[w->nf]);
        if (err < 0) {
            fail("walk", i, err);
            continue;
        }
        w->nf++;
        distinct++;
    }
    pthread_barrier_wait(&barrier); /* main measures */
    pthread_barrier_wait(&barrier);
    /* phase B: repeats and clones up to the quota (they pick among the
     * phase A fids: none walked is a failure, not a division by zero) */
    if (distinct == 0) {
        fail("phase A: no file walked on connection", w->idx, -ENOENT);
    }
    while (distinct > 0 && w->nf < quota) {
        long i = (long)(rand_r(&w->seed) % (unsigned)nfiles);
        int err;

        if (w->nf % 2 == 0) {
            file_path(i, path, sizeof(path));
            err = p9c_walk(w->root, path, &w->fids[w->nf]);
        } else {
            long k = (long)(rand_r(&w->seed) % (unsigned)distinct);

            err = p9c_walk(w->fids[k], "", &w->fids[w->nf]);
            i = -1;
        }
        if (err < 0) {
            fail("walk/clone", i, err);
            continue;
        }
        w->nf++;
        if (w->nf % 997 == 0) {
            long k = (long)(rand_r(&w->seed) % (unsigned)distinct);
            struct p9_rgetattr a;

            err = p9c_getattr(w->fids[k], P9_GETATTR_BASIC, &a);
            if (err < 0) {
                fail("getattr", k, err);
            }
        }
        if (w->nf % 211 == 0 && w->nopen < 4096) {
            /* hold an open fid: open files count against the limit too */
            long k = (long)(rand_r(&w->seed) % (unsigned)distinct);
            struct p9c_fid *c = NULL;

            err = p9c_walk(w->fids[k], "", &c);
            err = err ? err : p9c_open(c, P9_DOTL_RDONLY);
            if (err < 0) {
                fail("open (held)", k, err);
                p9c_clunk(c);
            } else {
                w->open[w->nopen++] = c;
            }
        }
        if (w->nf % 4999 == 0) {
            long k = (long)(rand_r(&w->seed) % (unsigned)distinct);

            /* fids[k] of phase A is file idx + k * NCONN */
            io_check(w->fids[k], w->idx + k * NCONN);
        }
    }
    /* every held open fid still reads */
    for (int i = 0; i < w->nopen; i++) {
        char buf[16];
        ssize_t n = p9c_pread(w->open[i], buf, sizeof(buf), 0);

        if (n < 0) {
            fail("read (held open)", i, (int)n);
        }
    }
    pthread_barrier_wait(&barrier);
    return NULL;
}

static atomic_int fourth_ok;

/* A fourth connection, while the others hold their fids. */
static void *
fourth(void *arg)
{
    struct p9c_conn *c = NULL;
    struct p9c_fid *root = NULL;
    struct p9c_fid *f = NULL;
    struct p9c_fid *d = NULL;
    struct p9_rgetattr a;
    char buf[32] = "";
    int err;

    (void)arg;
    err = p9c_mount(addr, 0, "root", unpriv ? NOBODY : 0, "", &c, &root);
    if (err == 0) {
        err = p9c_walk(root, "d000/f000007", &f);
    }
    if (err == 0) {
        err = p9c_getattr(f, P9_GETATTR_BASIC, &a);
    }
    if (err == 0) {
        err = p9c_open(f, P9_DOTL_RDONLY);
    }
    if (err == 0) {
        err = p9c_pread(f, buf, sizeof(buf) - 1, 0) == 8 ? 0 : -EIO;
    }
    if (err == 0) {
        err = p9c_walk(root, "", &d);
    }
    if (err == 0) {
        err = p9c_create(d, "fourth", P9_DOTL_RDWR, 0644, (uint32_t)-1);
    }
    if (err == 0) {
        err = p9c_pwrite(d, "hello", 5, 0) == 5 ? 0 : -EIO;
    }
    atomic_store(&fourth_ok, err == 0 ? 1 : err);
    p9c_clunk(d);
    p9c_clunk(f);
    p9c_clunk(root);
    p9c_close(c);
    return NULL;
}

/* The files host_changes() renames and replaces (w[0]'s phase A fids). */
static long
host_kr(void)
{
    return 1234 % (nfiles / NCONN);
}

static long
host_kp(void)
{
    return 4321 % (nfiles / NCONN);
}

static long
host_ir(void)
{
    return host_kr() * NCONN;
}

static long
host_ip(void)
{
    return host_kp() * NCONN;
}

static int
make_tree(void)
{
    char p[256];
    char content[16];

    for (long i = 0; i < nfiles; i++) {
        int fd;

        if (i % PER_DIR == 0) {
            snprintf(p, sizeof(p), "%s/d%03ld", exdir, i / PER_DIR);
            if (mkdir(p, 0755) < 0 ||
                (unpriv && chown(p, NOBODY, NOBODY) < 0)) {
                return -1;
            }
        }
        snprintf(p, sizeof(p), "%s/d%03ld/f%06ld", exdir, i / PER_DIR, i);
        fd = open(p, O_CREAT | O_WRONLY | O_EXCL, 0644);
        file_content(i, content, sizeof(content));
        /* Empty files (the I/O checks write before they read), except
         * those read before any write: by the fourth connection and by
         * the host change checks. */
        if (fd < 0 ||
            ((i % PER_DIR == 7 || i == host_ir() || i == host_ip()) &&
             write(fd, content, strlen(content)) < 0) ||
            (unpriv && fchown(fd, NOBODY, NOBODY) < 0)) {
            return -1;
        }
        close(fd);
    }
    return 0;
}

static int
rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP) {
        rmdir(p);
    } else {
        unlink(p);
    }
    return 0;
}

static int
spawn(void)
{
    char sock[200];

    snprintf(sock, sizeof(sock), "unix:%s/s", sockdir);
    snprintf(addr, sizeof(addr), "%s", sock);
    pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        if (unpriv && (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 ||
                       setuid(NOBODY) < 0)) {
            _exit(126);
        }
        execl(vfsd, "virtfsd", "--rlimit-nofile", "1024", "--no-multiuser",
              "--export", exdir, "--listen", sock, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        struct p9c_conn *c = NULL;

        if (p9c_connect(addr, &c) == 0) {
            p9c_close(c);
            return 0;
        }
        usleep(10000);
    }
    return -1;
}

static void
print_stats(long *nodes)
{
    char line[512];
    FILE *f;

    kill(pid, SIGUSR1);
    usleep(300000);
    f = fopen(logpath, "r");
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p = strstr(line, "passthrough nodes ");

        if (p != NULL) {
            *nodes = strtol(p + strlen("passthrough nodes "), NULL, 10);
        }
        if (strstr(line, "stats: passthrough") != NULL ||
            strstr(line, "EMFILE") != NULL) {
            line[strcspn(line, "\n")] = '\0';
            tap_diag("%s", line);
        }
    }
    fclose(f);
}

/* Host rename / replace of files whose nodes lost their descriptors. */
static void
host_changes(struct worker *w)
{
    /* w[0].fids[k] is file k * NCONN (phase A order) */
    long kr = host_kr();
    long kp = host_kp();
    long ir = host_ir();
    long ip = host_ip();
    char p[256];
    char p2[256];
    char want[16];
    int fd;

    snprintf(p, sizeof(p), "%s/d%03ld/f%06ld", exdir, ir / PER_DIR, ir);
    snprintf(p2, sizeof(p2), "%s/d%03ld/renamed", exdir, ir / PER_DIR);
    tap_ok(rename(p, p2) == 0, "host renames file %ld", ir);
    snprintf(p, sizeof(p), "%s/d%03ld/f%06ld", exdir, ip / PER_DIR, ip);
    unlink(p);
    fd = open(p, O_CREAT | O_WRONLY, 0644);
    tap_ok(fd >= 0 && write(fd, "OTHERFILE", 9) == 9 &&
               (!unpriv || fchown(fd, NOBODY, NOBODY) == 0),
           "host replaces file %ld", ip);
    close(fd);
    for (int k = 0; k < 2; k++) {
        struct p9c_fid *c = NULL;
        char buf[32] = "";
        long i = k == 0 ? ir : ip;
        int err = p9c_walk(w[0].fids[k == 0 ? kr : kp], "", &c);

        file_content(i, want, sizeof(want));
        if (err == 0) {
            err = p9c_open(c, P9_DOTL_RDONLY);
        }
        if (err == 0) {
            ssize_t n = p9c_pread(c, buf, sizeof(buf) - 1, 0);

            err = n < 0 ? (int)n : 0;
        }
        p9c_clunk(c);
        tap_ok((err == 0 && strcmp(buf, want) == 0) || err == -ESTALE,
               "%s on the host: the held fid gives the file or ESTALE, never "
               "another (%d, '%s')",
               k == 0 ? "renamed" : "replaced", err, buf);
    }
}

int
main(int argc, char **argv)
{
    struct worker w[NCONN];
    pthread_t th[NCONN];
    pthread_t mon;
    pthread_t four;
    long rss0, rssA, rssB, nodes = -1;
    long fidsA = 0, fidsB = 0;
    double t0, tA, tB;
    int status;

    if (argc < 3) {
        fprintf(stderr, "usage: %s VIRTFSD privileged|unprivileged [FIDS]\n",
                argv[0]);
        return 2;
    }
    vfsd = argv[1];
    unpriv = strcmp(argv[2], "unprivileged") == 0;
    if (argc > 3) {
        nfids = strtol(argv[3], NULL, 10);
    }
    nfiles = nfids / 5;
    if (unpriv && geteuid() != 0) {
        unpriv = false; /* already unprivileged: same thing */
    }
    /* tmpfs when there is one: 200,000 files on a busy disk take minutes */
    snprintf(exdir, sizeof(exdir), "%s/vfs-scale-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    snprintf(sockdir, sizeof(sockdir), "/tmp/vfs-scale-sock-XXXXXX");
    if (mkdtemp(exdir) == NULL || mkdtemp(sockdir) == NULL) {
        return 2;
    }
    chmod(sockdir, 0777);
    if (unpriv && chown(exdir, NOBODY, NOBODY) < 0) {
        return 2;
    }
    snprintf(logpath, sizeof(logpath), "%s/log", sockdir);
    t0 = now_s();
    status = make_tree();
    tap_ok(status == 0, "host tree of %ld files (%.1f s)", nfiles,
           now_s() - t0);
    tap_ok(spawn() == 0, "virtfsd --rlimit-nofile %d (%s)", FD_LIMIT,
           unpriv ? "uid 65534, no capabilities" : "root");

    pthread_barrier_init(&barrier, NULL, NCONN + 1);
    for (int i = 0; i < NCONN; i++) {
        int err;

        memset(&w[i], 0, sizeof(w[i]));
        w[i].idx = i;
        w[i].seed = 12345u + (unsigned)i;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of fid pointers */
        w[i].fids = calloc((size_t)(nfids / NCONN + 2), sizeof(*w[i].fids));
        err = p9c_mount(addr, 0, "root", unpriv ? NOBODY : 0, "", &w[i].c,
                        &w[i].root);
        tap_ok(err == 0 && w[i].fids != NULL, "connection %d attaches (%d)", i,
               err);
        if (err != 0) {
            kill(pid, SIGKILL);
            return 1;
        }
    }
    pthread_create(&mon, NULL, monitor, NULL);
    rss0 = rss_kb();
    t0 = now_s();
    for (int i = 0; i < NCONN; i++) {
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    pthread_barrier_wait(&barrier);
    tA = now_s() - t0;
    rssA = rss_kb();
    for (int i = 0; i < NCONN; i++) {
        fidsA += w[i].nf;
    }
    pthread_barrier_wait(&barrier);
    t0 = now_s();
    pthread_create(&four, NULL, fourth, NULL);
    pthread_join(four, NULL);
    pthread_barrier_wait(&barrier);
    tB = now_s() - t0;
    for (int i = 0; i < NCONN; i++) {
        pthread_join(th[i], NULL);
        fidsB += w[i].nf;
    }
    fidsB -= fidsA;
    rssB = rss_kb();

    tap_ok(atomic_load(&failures) == 0,
           "every walk, clone, getattr, open, read and write succeeded "
           "(%ld failed)",
           atomic_load(&failures));
    tap_ok(fidsA + fidsB == nfids,
           "%ld fids held over %d connections "
           "(%ld distinct files, %ld repeats and clones; %.1f s + %.1f s)",
           fidsA + fidsB, NCONN, fidsA, fidsB, tA, tB);
    tap_ok(atomic_load(&fourth_ok) == 1,
           "a fourth connection attaches, walks, reads, creates and writes "
           "meanwhile (%d)",
           atomic_load(&fourth_ok));
    tap_ok(atomic_load(&ops_done) > 0, "%ld I/O operations on random fids",
           atomic_load(&ops_done));
    tap_ok(w[0].nopen + w[1].nopen + w[2].nopen > (nfids >= 300000 ? 1024 : 0),
           "%d fids held open meanwhile, each read at the end",
           w[0].nopen + w[1].nopen + w[2].nopen);
    host_changes(w);
    atomic_store(&stop_monitor, true);
    pthread_join(mon, NULL);
    tap_ok(atomic_load(&max_fds) < FD_LIMIT,
           "daemon descriptors stayed under %d (max seen %d)", FD_LIMIT,
           atomic_load(&max_fds));
    print_stats(&nodes);
    {
        double per_fid = (double)(rssB - rssA) * 1024.0 / (double)fidsB;
        double per_node =
            nodes > 0
                ? ((double)(rssA - rss0) * 1024.0 - per_fid * (double)fidsA) /
                      (double)nodes
                : -1;

        tap_diag("daemon RSS: %ld kB attached, %ld kB after %ld distinct "
                 "fids, %ld kB after %ld fids; %ld nodes",
                 rss0, rssA, fidsA, rssB, fidsA + fidsB, nodes);
        tap_diag("memory per idle fid: %.0f bytes (target < 200); per "
                 "node: %.0f bytes (target < 300)",
                 per_fid, per_node);
        tap_ok(per_fid > 0 && per_node > 0,
               "memory per fid %.0f B, per node "
               "%.0f B measured",
               per_fid, per_node);
    }

    for (int i = 0; i < NCONN; i++) {
        for (int k = 0; k < w[i].nopen; k++) {
            p9c_fid_forget(w[i].open[k]);
        }
        for (long k = 0; k < w[i].nf; k++) {
            p9c_fid_forget(w[i].fids[k]); /* the server drops them at close */
        }
        p9c_fid_forget(w[i].root);
        p9c_close(w[i].c);
        free(w[i].fids);
    }
    t0 = now_s();
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "virtfsd exits cleanly (%d, %.1f s)", status, now_s() - t0);
    t0 = now_s();
    nftw(exdir, rm_one, 64, FTW_DEPTH | FTW_PHYS);
    nftw(sockdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    tap_diag("tree removed in %.1f s", now_s() - t0);
    return tap_done();
}
