/* SPDX-License-Identifier: MIT */
/*
 * A hostile VMM shrinks its guest-memory file after SET_MEM_TABLE (issue
 * 12, defect 6).  Against a real virtfsd process serving two vhost-user
 * sockets and a stream socket: the VMM's device faults once on the ring
 * (device thread) and once on a reply buffer (worker thread); each time
 * virtfsd must survive, drop that device only, keep serving the other VM
 * and the stream client, and accept a new front-end on the same socket.
 *
 * Usage: test_vhost_sigbus VIRTFSD
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fe.h"
#include "tap.h"

static char dir[] = "/tmp/vhost-sigbus-XXXXXX";
static char sock_a[100];
static char sock_b[100];
static char sock_s[100];
static pid_t daemon_pid = -1;

/* Tversion msize 131072 "9P2000.L" */
static const uint8_t tversion[21] = {21,  0,   0,   0,   100, 0xff, 0xff,
                                     0,   0,   2,   0,   8,   0,    '9',
                                     'P', '2', '0', '0', '0', '.',  'L'};

static uint32_t
put_tversion(struct fe *f, uint64_t gpa)
{
    memcpy(fe_ptr(f, gpa), tversion, sizeof(tversion));
    return sizeof(tversion);
}

/* Tgetattr on an unknown fid: answered (Rlerror) by a worker. */
static uint32_t
put_tgetattr(struct fe *f, uint64_t gpa, uint16_t tag)
{
    uint8_t *p = fe_ptr(f, gpa);
    uint32_t size = 19;
    uint32_t fid = 77;
    uint64_t mask = 0x7ff;

    memcpy(p, &size, 4);
    p[4] = 24;
    memcpy(p + 5, &tag, 2);
    memcpy(p + 7, &fid, 4);
    memcpy(p + 11, &mask, 8);
    return size;
}

/* Tversion through the ring; true if Rversion came back. */
static bool
ring_version(struct fe *f)
{
    uint64_t m = fe_alloc(f, 64);
    uint64_t r = fe_alloc(f, 64);
    struct fe_seg s[2] = {{m, put_tversion(f, m), false}, {r, 64, true}};
    uint16_t head = fe_chain(f, s, 2, false);
    uint32_t id;
    uint32_t len;

    fe_publish(f, head);
    fe_kick(f);
    return fe_used(f, &id, &len) == 0 && id == head && len == 21 &&
           ((uint8_t *)fe_ptr(f, r))[4] == 101;
}

static bool
vm_up(struct fe *f, const char *path)
{
    memset(f, 0, sizeof(*f));
    f->sock = f->memfd = f->kick = f->call = f->err = -1;
    if (fe_connect(f, path) < 0) {
        return false;
    }
    return fe_setup(f, VHU_FEATURES, 256) == 0 && ring_version(f);
}

/* Still running half a second later (a dying process closes its sockets
 * a moment before it can be reaped). */
static bool
daemon_alive(void)
{
    int status;

    for (int i = 0; i < 50; i++) {
        if (daemon_pid <= 0 || waitpid(daemon_pid, &status, WNOHANG) != 0) {
            daemon_pid = -1;
            return false;
        }
        usleep(10000);
    }
    return true;
}

/* A stream (Unix socket) client: Tversion -> Rversion. */
static bool
stream_version(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    uint8_t rv[64];
    size_t got = 0;
    bool ok = false;
    int fd = -1;

    strncpy(sa.sun_path, sock_s, sizeof(sa.sun_path) - 1);
    for (int i = 0; i < 200; i++) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            break;
        }
        close(fd);
        fd = -1;
        usleep(10000);
    }
    if (fd < 0 || send(fd, tversion, sizeof(tversion), MSG_NOSIGNAL) !=
                      sizeof(tversion)) {
        goto out;
    }
    while (got < 21) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, 5000) <= 0) {
            goto out;
        }
        n = recv(fd, rv + got, sizeof(rv) - got, 0);
        if (n <= 0) {
            goto out;
        }
        got += (size_t)n;
    }
    ok = rv[4] == 101;
out:
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

static void
spawn(const char *virtfsd)
{
    char ex[160];
    char a[160];
    char b[160];
    char s[160];
    char log[160];

    snprintf(ex, sizeof(ex), "%s/export", dir);
    snprintf(a, sizeof(a), "%s,tag=vma", sock_a);
    snprintf(b, sizeof(b), "%s,tag=vmb", sock_b);
    snprintf(s, sizeof(s), "unix:%s", sock_s);
    snprintf(log, sizeof(log), "%s/daemon.log", dir);
    mkdir(ex, 0700);
    daemon_pid = fork();
    if (daemon_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        if (fd >= 0) {
            dup2(fd, 2);
        }
        execl(virtfsd, virtfsd, "--export", ex, "--vhost-user", a,
              "--vhost-user", b, "--listen", s, "--log-level", "warn",
              (char *)NULL);
        _exit(127);
    }
}

int
main(int argc, char **argv)
{
    struct fe fa;
    struct fe fb;
    struct fe fc;
    int status = 0;
    bool up;

    signal(SIGPIPE, SIG_IGN);
    if (argc != 2 || mkdtemp(dir) == NULL) {
        fprintf(stderr, "usage: test_vhost_sigbus VIRTFSD\n");
        return 2;
    }
    snprintf(sock_a, sizeof(sock_a), "%s/a.sock", dir);
    snprintf(sock_b, sizeof(sock_b), "%s/b.sock", dir);
    snprintf(sock_s, sizeof(sock_s), "%s/s.sock", dir);
    spawn(argv[1]);
    tap_ok(daemon_pid > 0, "virtfsd spawned (pid %d)", (int)daemon_pid);

    up = tap_ok(vm_up(&fa, sock_a), "VM A: set up, Tversion over its ring");
    up &= tap_ok(vm_up(&fb, sock_b), "VM B: set up, Tversion over its ring");
    up &= tap_ok(stream_version(), "stream client: Tversion");
    if (!up) {
        fe_close(&fa);
        fe_close(&fb);
        goto out;
    }

    /*
     * 1. VM A publishes a request, shrinks guest RAM to nothing, kicks:
     * the device thread faults reading the ring.  (This process must not
     * touch A's RAM any more either.)
     */
    {
        uint64_t m = fe_alloc(&fa, 64);
        uint64_t r = fe_alloc(&fa, 64);
        struct fe_seg s[2] = {{m, put_tversion(&fa, m), false}, {r, 64, true}};

        fe_publish(&fa, fe_chain(&fa, s, 2, false));
        tap_ok(ftruncate(fa.memfd, 0) == 0, "VM A: guest RAM shrunk to 0");
        fe_kick(&fa);
        tap_ok(fe_eof(&fa), "VM A: device dropped (connection closed)");
    }
    fe_close(&fa);
    tap_ok(daemon_alive(), "virtfsd survives a fault on the ring");
    tap_ok(ring_version(&fb), "VM B still served");
    tap_ok(stream_version(), "stream client still served");
    if (!tap_ok(vm_up(&fa, sock_a), "VM A's socket accepts a new front-end")) {
        fe_close(&fa);
        fe_close(&fb);
        goto out;
    }

    /*
     * 2. The ring stays (first 2 MiB), the reply buffers are in the part
     * cut off: two requests at once, answered by workers, which fault
     * writing the replies.
     */
    {
        uint64_t m1 = fe_alloc(&fa, 64);
        uint64_t m2 = fe_alloc(&fa, 64);
        uint64_t r1 = FE_REGION + 8192;
        uint64_t r2 = FE_REGION + 16384;
        struct fe_seg s1[2] = {{m1, put_tgetattr(&fa, m1, 1), false},
                               {r1, 4096, true}};
        struct fe_seg s2[2] = {{m2, put_tgetattr(&fa, m2, 2), false},
                               {r2, 4096, true}};

        fe_publish(&fa, fe_chain(&fa, s1, 2, false));
        fe_publish(&fa, fe_chain(&fa, s2, 2, false));
        tap_ok(ftruncate(fa.memfd, FE_REGION) == 0,
               "VM A: guest RAM shrunk to its first region");
        fe_kick(&fa);
        tap_ok(fe_eof(&fa), "VM A: device dropped after the reply fault");
    }
    fe_close(&fa);
    tap_ok(daemon_alive(), "virtfsd survives a fault writing a reply");
    tap_ok(ring_version(&fb), "VM B still served");
    tap_ok(stream_version(), "stream client still served");
    tap_ok(vm_up(&fc, sock_a), "VM A's socket accepts a third front-end");
    fe_close(&fc);
    fe_close(&fb);

out:
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGTERM);
        if (waitpid(daemon_pid, &status, 0) != daemon_pid) {
            status = -1;
        }
    }
    tap_ok(daemon_pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "virtfsd exits cleanly on SIGTERM (status %#x)", status);
    {
        char cmd[256];

        snprintf(cmd, sizeof(cmd), "sed 's/^/# /' %s/daemon.log; rm -rf %s",
                 dir, dir);
        if (system(cmd) != 0) {
            tap_diag("cleanup failed");
        }
    }
    return tap_done();
}
