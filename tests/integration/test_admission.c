/* SPDX-License-Identifier: MIT */
/*
 * Admission control and descriptor exhaustion against a spawned virtfsd:
 *  - thousands of idle connections do not lock a new client out; an
 *    attached session is never reclaimed;
 *  - a full listener of attached sessions refuses (EOF), it does not hang;
 *  - a silent connection (a virtio-serial port before the guest speaks)
 *    survives while the listener has room, and speaks later;
 *  - a partial frame has a deadline;
 *  - with RLIMIT_NOFILE exhausted by clients, a new client is refused at
 *    once instead of hanging, the vhost-user listener still takes a VMM
 *    whose control messages carry descriptors, and service resumes.
 * Usage: test_admission VIRTFSD                          (TAP output)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "util/sock.h"
#include "vhost/fe.h"
#include "virtfs/client.h"

static const char *virtfsd;
static char tmp[64];
static char exportdir[128];

static long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Start virtfsd with 'args' (NULL-terminated), RLIMIT_NOFILE 'nofile' (0 =
 * inherited), stderr to 'log'; wait until 'sock' exists. */
static pid_t
spawn(const char *const *args, rlim_t nofile, const char *log, const char *sock)
{
    const char *argv[32];
    int n = 0;
    pid_t pid;
    struct stat st;

    argv[n++] = virtfsd;
    argv[n++] = "--export";
    argv[n++] = exportdir;
    for (int i = 0; args[i] != NULL && n < 31; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (fd >= 0) {
            dup2(fd, 2);
        }
        if (nofile > 0) {
            struct rlimit rl = {nofile, nofile};

            setrlimit(RLIMIT_NOFILE, &rl);
        }
        execv(virtfsd, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500 && stat(sock, &st) < 0; i++) {
        usleep(10000);
    }
    usleep(50000);
    return pid;
}

static void
stop(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            return;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static bool
log_has(const char *log, const char *s)
{
    char buf[1 << 16];
    FILE *f = fopen(log, "r");
    bool found = false;

    if (f == NULL) {
        return false;
    }
    while (!found && fgets(buf, sizeof(buf), f) != NULL) {
        found = strstr(buf, s) != NULL;
    }
    fclose(f);
    return found;
}

/* Version + attach on a fresh connection, every wait bounded by 'ms'. */
static int
mount_timed(const char *addr, unsigned ms, struct p9c_conn **c,
            struct p9c_fid **root)
{
    int err = p9c_connect(addr, c);

    if (err < 0) {
        return err;
    }
    p9c_set_timeout(*c, ms);
    err = p9c_version(*c, 65536);
    if (err == 0) {
        err = p9c_attach(*c, "root", 0, "", root);
    }
    if (err < 0) {
        p9c_close(*c);
        *c = NULL;
    }
    return err;
}

static void
unmount(struct p9c_conn *c, struct p9c_fid *root)
{
    if (root != NULL) {
        p9c_clunk(root);
    }
    p9c_close(c);
}

static bool
still_works(struct p9c_fid *root)
{
    struct p9_rgetattr a;

    return p9c_getattr(root, P9_GETATTR_BASIC, &a) == 0;
}

/* true if the peer closed 'fd' within ms */
static bool
sees_eof(int fd, int ms)
{
    long end = now_ms() + ms;

    while (now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char b[64];

        if (poll(&p, 1, (int)(end - now_ms())) > 0) {
            ssize_t n = read(fd, b, sizeof(b));

            if (n == 0 || (n < 0 && errno == ECONNRESET)) {
                return true;
            }
        }
    }
    return false;
}

/* ---- thousands of idle connections ------------------------------------- */

static void
test_idle_flood(void)
{
    enum { NIDLE = 4200 };
    char sock[128], addr[160], log[128];
    const char *args[] = {"--listen", addr, NULL};
    static int fds[NIDLE];
    struct p9c_conn *a, *b;
    struct p9c_fid *ra = NULL, *rb = NULL;
    int nopen = 0;
    long t0;
    int err;
    pid_t pid;

    snprintf(sock, sizeof(sock), "%s/idle.sock", tmp);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    snprintf(log, sizeof(log), "%s/idle.log", tmp);
    pid = spawn(args, 0, log, sock);
    err = mount_timed(addr, 5000, &a, &ra);
    tap_ok(err == 0, "flood: an attached client before the flood (%d)", err);
    for (int i = 0; i < NIDLE; i++) {
        fds[i] = sock_connect_unix(sock);
        if (fds[i] >= 0) {
            nopen++;
        }
    }
    tap_ok(nopen == NIDLE, "flood: %d idle connections opened (never a byte)",
           nopen);
    usleep(500000);
    t0 = now_ms();
    err = mount_timed(addr, 60000, &b, &rb);
    tap_ok(err == 0 && now_ms() - t0 < 60000,
           "flood: a new client is served within a minute among %d idle "
           "connections (%d, %ld ms)",
           NIDLE, err, now_ms() - t0);
    if (err == 0) {
        tap_ok(still_works(rb), "flood: the new client's session works");
        unmount(b, rb);
    } else {
        tap_ok(false, "flood: the new client's session works");
    }
    tap_ok(err == 0 && still_works(ra),
           "flood: the session attached before the flood was not reclaimed");
    tap_ok(log_has(log, "dropped (no attach, idle"),
           "flood: a log line names each idle peer that was dropped");
    if (ra != NULL) {
        unmount(a, ra);
    }
    for (int i = 0; i < NIDLE; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    stop(pid);
}

/* ---- a full listener of attached sessions ------------------------------ */

static void
test_full_of_attached(void)
{
    char sock[128], addr[160], log[128];
    const char *args[] = {"--listen", addr, "--max-connections", "4", NULL};
    struct p9c_conn *c[5] = {0};
    struct p9c_fid *r[5] = {0};
    bool all = true;
    long t0;
    int err;
    pid_t pid;

    snprintf(sock, sizeof(sock), "%s/full.sock", tmp);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    snprintf(log, sizeof(log), "%s/full.log", tmp);
    pid = spawn(args, 0, log, sock);
    for (int i = 0; i < 4; i++) {
        all &= mount_timed(addr, 5000, &c[i], &r[i]) == 0;
    }
    tap_ok(all, "full: 4 attached sessions on --max-connections 4");
    t0 = now_ms();
    err = mount_timed(addr, 5000, &c[4], &r[4]);
    tap_ok(err < 0 && err != -ETIMEDOUT && now_ms() - t0 < 3000,
           "full: a 5th client is refused at once, not left hanging "
           "(%d, %ld ms)",
           err, now_ms() - t0);
    all = true;
    for (int i = 0; i < 4; i++) {
        all &= r[i] != NULL && still_works(r[i]);
    }
    tap_ok(all, "full: no attached session was reclaimed for it");
    tap_ok(log_has(log, "refused: 4 connections"),
           "full: the refusal is logged with the peer");
    unmount(c[0], r[0]);
    c[0] = NULL;
    usleep(200000);
    err = mount_timed(addr, 5000, &c[4], &r[4]);
    tap_ok(err == 0, "full: with a place free a new client is served (%d)",
           err);
    for (int i = 1; i < 5; i++) {
        if (c[i] != NULL) {
            unmount(c[i], r[i]);
        }
    }
    stop(pid);
}

/* ---- a silent connection (virtio-serial) and the frame deadline -------- */

static void
test_silent_and_partial(void)
{
    char sock[128], addr[160], log[128];
    const char *args[] = {
        "--listen", addr, "--max-connections", "8", "--frame-timeout",
        "1",        NULL};
    struct p9c_conn *c;
    struct p9c_fid *root;
    uint8_t hdr[4 + 10] = {0xa0, 0x86, 0x01, 0x00, 120}; /* 100000 bytes */
    int silent, partial, halfhdr;
    long t0;
    int err;
    pid_t pid;

    snprintf(sock, sizeof(sock), "%s/silent.sock", tmp);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    snprintf(log, sizeof(log), "%s/silent.log", tmp);
    pid = spawn(args, 0, log, sock);
    silent = sock_connect_unix(sock);
    partial = sock_connect_unix(sock);
    halfhdr = sock_connect_unix(sock);
    tap_ok(silent >= 0 && partial >= 0 && halfhdr >= 0, "silent: connected");
    t0 = now_ms();
    tap_ok(write(partial, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr) &&
               write(halfhdr, hdr, 2) == 2,
           "partial: size header sent, no body");
    /* other clients come and go while the first one stays silent */
    for (int i = 0; i < 12; i++) {
        err = mount_timed(addr, 5000, &c, &root);
        if (err == 0) {
            unmount(c, root);
        }
    }
    tap_ok(sees_eof(partial, 4000) && now_ms() - t0 < 4000,
           "partial: a frame not completed within --frame-timeout 1 is "
           "dropped (%ld ms)",
           now_ms() - t0);
    tap_ok(sees_eof(halfhdr, 1000), "partial: so is half a size header");
    tap_ok(log_has(log, "frame not completed within 1 s"),
           "partial: the drop is logged with the peer");
    usleep(1500000); /* the silent one is now well past the frame timeout */
    err = p9c_connect_fd(silent, &c);
    if (err == 0) {
        p9c_set_timeout(c, 5000);
        err = p9c_version(c, 65536);
    }
    if (err == 0) {
        err = p9c_attach(c, "root", 0, "", &root);
    }
    tap_ok(err == 0,
           "silent: a connection silent for %ld ms (no byte, listener not "
           "full) is served when it speaks (%d)",
           now_ms() - t0, err);
    if (err == 0) {
        tap_ok(still_works(root), "silent: its session works");
        unmount(c, root);
    } else {
        tap_ok(false, "silent: its session works");
    }
    stop(pid);
}

/* ---- size headers alone do not allocate msize ---------------------------- */

static long
vm_data_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmData: %ld kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib;
}

static void
test_header_memory(void)
{
    enum { NPEER = 200 };
    char sock[128], addr[160], log[128];
    const char *args[] = {"--listen", addr, "--frame-timeout", "60", NULL};
    /* size[4] = 1000000 (below the default msize), then type and tag */
    const uint8_t hdr[8] = {0x40, 0x42, 0x0f, 0x00, 118, 1, 0, 0};
    static int fds[NPEER];
    long before, after;
    int sent = 0;
    pid_t pid;

    snprintf(sock, sizeof(sock), "%s/mem.sock", tmp);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    snprintf(log, sizeof(log), "%s/mem.log", tmp);
    pid = spawn(args, 0, log, sock);
    for (int i = 0; i < NPEER; i++) {
        fds[i] = sock_connect_unix(sock);
    }
    usleep(500000);
    before = vm_data_kib(pid);
    for (int i = 0; i < NPEER; i++) {
        sent += fds[i] >= 0 && write(fds[i], hdr, sizeof(hdr)) == 8;
    }
    usleep(1000000);
    after = vm_data_kib(pid);
    tap_ok(sent == NPEER && before > 0 && after > 0 &&
               after - before < 64 * 1024,
           "memory: %d peers that sent only a 1 MB size header grew the "
           "daemon's data by %ld KiB (< 64 MiB; msize-sized buffers would "
           "be ~200 MiB)",
           sent, after - before);
    for (int i = 0; i < NPEER; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    stop(pid);
}

/* ---- descriptors running out ------------------------------------------- */

static void
test_emfile(void)
{
    enum { NCONN = 200 };
    char sock[128], addr[160], vsock[128], log[128];
    const char *args[] = {
        "--listen", addr, "--vhost-user", vsock, "--fd-reserve", "32", NULL};
    const char *args0[] = {
        "--listen", addr, "--vhost-user", vsock, "--fd-reserve", "0", NULL};
    static int fds[NCONN];
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct fe fe;
    int refused = 0;
    long t0;
    int err;
    pid_t pid;

    snprintf(sock, sizeof(sock), "%s/emfile.sock", tmp);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    snprintf(vsock, sizeof(vsock), "%s/emfile.vhost", tmp);
    snprintf(log, sizeof(log), "%s/emfile.log", tmp);
    pid = spawn(args, 128, log, sock);

    /* 1. connections alone cannot take the reserve */
    for (int i = 0; i < NCONN; i++) {
        fds[i] = sock_connect_unix(sock);
    }
    usleep(300000);
    for (int i = 0; i < NCONN; i++) {
        refused += fds[i] >= 0 && sees_eof(fds[i], 5);
    }
    tap_ok(refused > 0,
           "emfile: with RLIMIT_NOFILE 128, %d of %d connections "
           "were refused (EOF) instead of hanging",
           refused, NCONN);
    t0 = now_ms();
    err = mount_timed(addr, 5000, &c, &root);
    tap_ok(err < 0 && err != -ETIMEDOUT && now_ms() - t0 < 3000,
           "emfile: one more client is refused at once (%d, %ld ms)", err,
           now_ms() - t0);
    if (err == 0) {
        unmount(c, root);
    }
    memset(&fe, 0, sizeof(fe));
    fe.timeout_ms = 5000;
    err = fe_connect(&fe, vsock);
    if (err == 0) {
        err = fe_setup(&fe, ~0ull, 64);
    }
    tap_ok(err == 0,
           "emfile: the vhost-user VMM connects and its fd-carrying "
           "messages (mem table, kick, call, err) arrive whole (%d)",
           err);
    fe_close(&fe);
    for (int i = 0; i < NCONN; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    usleep(300000);

    /* 2. no reserve: connections use up every descriptor, so accept itself
     * fails with EMFILE; the spares still refuse clients and take a VMM */
    err = mount_timed(addr, 5000, &c, &root);
    tap_ok(err == 0,
           "emfile: the connections are gone, a client is served "
           "again (%d)",
           err);
    if (err == 0) {
        unmount(c, root);
    }
    tap_ok(kill(pid, 0) == 0, "emfile: the daemon is still running");
    stop(pid);
    pid = spawn(args0, 128, log, sock);
    for (int i = 0; i < NCONN; i++) {
        fds[i] = sock_connect_unix(sock);
    }
    usleep(500000);
    t0 = now_ms();
    err = mount_timed(addr, 5000, &c, &root);
    tap_ok(err < 0 && err != -ETIMEDOUT && now_ms() - t0 < 3000,
           "emfile: out of descriptors (no reserve), a new client is refused "
           "at once, not left hanging (%d, %ld ms)",
           err, now_ms() - t0);
    if (err == 0) {
        unmount(c, root);
    }
    memset(&fe, 0, sizeof(fe));
    fe.timeout_ms = 5000;
    err = fe_connect(&fe, vsock);
    if (err == 0) {
        err = fe_setup(&fe, ~0ull, 64);
    }
    tap_ok(err == 0,
           "emfile: out of descriptors, the vhost-user listener "
           "still accepts and its fd-carrying messages arrive whole (%d)",
           err);
    fe_close(&fe);
    tap_ok(log_has(log, "accept on unix:") ||
               log_has(log, "refused: cannot set up the connection"),
           "emfile: the refusal (accept or connection set-up out of "
           "descriptors) is logged");
    for (int i = 0; i < NCONN; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    usleep(500000);
    err = mount_timed(addr, 5000, &c, &root);
    tap_ok(err == 0 && still_works(root),
           "emfile: descriptors are back, the listener serves again (%d)", err);
    if (err == 0) {
        unmount(c, root);
    }
    tap_ok(kill(pid, 0) == 0, "emfile: the daemon is still running");
    stop(pid);
}

int
main(int argc, char **argv)
{
    struct rlimit rl;
    char cmd[200];
    const char *only;

    if (argc < 2) {
        fprintf(stderr, "usage: test_admission VIRTFSD\n");
        return 2;
    }
    virtfsd = argv[1];
    signal(SIGPIPE, SIG_IGN);
    /* the flood needs a few thousand descriptors here */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    snprintf(tmp, sizeof(tmp), "/tmp/vfst-adm-XXXXXX");
    if (mkdtemp(tmp) == NULL) {
        return 1;
    }
    snprintf(exportdir, sizeof(exportdir), "%s/export", tmp);
    mkdir(exportdir, 0755);

    /* ADMISSION_ONLY=flood runs one part (e.g. against an older virtfsd
     * that lacks the newer options) */
    only = getenv("ADMISSION_ONLY");
    if (only == NULL || strcmp(only, "full") == 0) {
        test_full_of_attached();
    }
    if (only == NULL || strcmp(only, "silent") == 0) {
        test_silent_and_partial();
    }
    if (only == NULL || strcmp(only, "memory") == 0) {
        test_header_memory();
    }
    if (only == NULL || strcmp(only, "emfile") == 0) {
        test_emfile();
    }
    if (only != NULL && strcmp(only, "flood") != 0) {
        /* skip the flood */
    } else if (rl.rlim_max >= 4400) {
        test_idle_flood();
    } else {
        tap_ok(false, "flood: needs RLIMIT_NOFILE >= 4400 (hard limit %lu)",
               (unsigned long)rl.rlim_max);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (getenv("KEEP") == NULL && system(cmd) != 0) {
        tap_diag("cannot remove %s", tmp);
    }
    return tap_done();
}
