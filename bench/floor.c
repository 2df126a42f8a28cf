/* SPDX-License-Identifier: MIT */
/*
 * floor: what the machine's transport costs a request-reply server that
 * does nothing.  A child process serves CONNS connections, one thread
 * each, the way virtfsd's connection threads do (poll, read until a short
 * read, send the reply); the parent runs CONNS client threads in a closed
 * loop, one request in flight each, the way `virtfs bench` does.  Every
 * request carries the size of the reply it wants, so one run covers a
 * metadata RPC (small request, small reply), a 64 KiB read (small request,
 * big reply) and a 64 KiB write (big request, small reply).
 *
 * No 9P server can answer faster, or with less CPU per request, than this
 * empty one on the same machine: bench/compare.sh prints it next to the
 * servers it measures, so that a ratio can be read against what is left
 * above the floor.
 *
 * usage: floor [-T tcp|unix] [-c CONNS] [-t SECONDS] [--req BYTES]
 *              [--reply BYTES] [--spin USEC] [--uring] [--epoll THREADS]
 *
 * Prints one key=value line:
 *   floor tr= conns= req= reply= rtts= rtt/s= MiB/s= p50_us= p99_us=
 *         cpu_us_per_rtt=
 * cpu_us_per_rtt is the serving process's user+system CPU per
 * request-reply.  --spin USEC: before sleeping in poll(), the server polls
 * without sleeping for up to USEC (a plain busy-poll, no budget).
 * --uring (when built with liburing): each server thread has its own
 * io_uring instead, and one io_uring_enter() per request both sends the
 * last reply and waits for the next request (a send whose success posts no
 * completion, then a recv), where the poll loop makes three calls (send,
 * poll, read).  It shows whether io_uring would pay on this machine; where
 * io_uring is unavailable, --uring exits 77 (a skip for meson).
 * --epoll THREADS: THREADS server threads (at most CONNS) share the
 * connections, each waiting in one epoll set for all of its own and
 * answering every ready connection per wake-up, instead of one thread per
 * connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#ifdef HAVE_LIBURING
#include <liburing.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXCONNS 64
#define MAXBYTES (1u << 20)
#define MAXSAMPLES (1u << 20)

static size_t req_len = 32;
static size_t reply_len = 160;
static long spin_us;
static bool use_uring;
static int epoll_threads; /* --epoll N: N threads serve all connections */
static double secs = 2.0;
static atomic_bool stop_clients;

struct client {
    pthread_t th;
    uint64_t n;
    uint32_t *lat_us; /* samples, at most MAXSAMPLES */
    size_t nlat;
    int fd;
    bool failed;
};

static uint64_t
now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void
put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof(v));
}

static uint32_t
get32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

static bool
write_full(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};

            poll(&pf, 1, -1);
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/*
 * Take the frame at the start of in[0..*have) out of the buffer: 1 with
 * the reply size it asks for in *rlen, 0 while it is incomplete, -1 when
 * it is malformed.
 */
static int
take_frame(uint8_t *in, size_t *have, uint32_t *rlen)
{
    uint32_t len;

    if (*have < 8 || get32(in) > *have) {
        return 0;
    }
    len = get32(in);
    *rlen = get32(in + 4);
    if (len < 8 || *rlen < 8 || *rlen > MAXBYTES) {
        return -1;
    }
    memmove(in, in + len, *have - len);
    *have -= len;
    return 1;
}

/* One server connection: frames are size[4] reply_size[4] padding. */
static void *
serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint8_t *in = malloc(MAXBYTES + 8);
    uint8_t *out = calloc(1, MAXBYTES);
    size_t have = 0;
    uint32_t rlen;
    int k = 0;

    if (in == NULL || out == NULL) {
        exit(1);
    }
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (spin_us > 0) {
            uint64_t end = now_ns() + (uint64_t)spin_us * 1000u;

            while (poll(&pf, 1, 0) == 0 && now_ns() < end) {
            }
        }
        if (pf.revents == 0 && poll(&pf, 1, -1) < 0 && errno != EINTR) {
            break;
        }
        /* read until a short read, as virtfsd does */
        for (;;) {
            size_t want = MAXBYTES + 8 - have;

            n = read(fd, in + have, want);
            if (n <= 0) {
                break;
            }
            have += (size_t)n;
            while ((k = take_frame(in, &have, &rlen)) > 0) {
                put32(out, rlen);
                if (!write_full(fd, out, rlen)) {
                    goto out;
                }
            }
            if (k < 0) {
                goto out;
            }
            if ((size_t)n < want) {
                break;
            }
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                       errno != EINTR)) {
            break;
        }
    }
out:
    close(fd);
    free(in);
    free(out);
    return NULL;
}

/* One connection of an epoll thread (--epoll). */
struct econn {
    int fd;
    size_t have;
    uint8_t *in;
};

/*
 * Read what one ready connection has until a short read and answer every
 * complete frame; false when it ended or failed.
 */
static bool
econn_serve(struct econn *c, uint8_t *out)
{
    for (;;) {
        size_t want = MAXBYTES + 8 - c->have;
        ssize_t n = read(c->fd, c->in + c->have, want);
        uint32_t rlen;
        int k;

        if (n < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        }
        if (n == 0) {
            return false;
        }
        c->have += (size_t)n;
        while ((k = take_frame(c->in, &c->have, &rlen)) > 0) {
            put32(out, rlen);
            if (!write_full(c->fd, out, rlen)) {
                return false;
            }
        }
        if (k < 0) {
            return false;
        }
        if ((size_t)n < want) {
            return true;
        }
    }
}

/* The connections of one epoll thread: fds[0..n). */
struct eset {
    int fds[MAXCONNS];
    int n;
};

/*
 * One thread serving several connections from one epoll set (--epoll):
 * a wake-up answers every connection that is ready, where the thread per
 * connection of serve() takes one wake-up per connection.
 */
static void *
serve_epoll(void *arg)
{
    struct eset *set = arg;
    struct econn *cs = calloc((size_t)set->n, sizeof(*cs));
    uint8_t *out = calloc(1, MAXBYTES);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int live = set->n;

    if (cs == NULL || out == NULL || ep < 0) {
        exit(1);
    }
    for (int i = 0; i < set->n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};

        cs[i].fd = set->fds[i];
        cs[i].in = malloc(MAXBYTES + 8);
        if (cs[i].in == NULL ||
            epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0) {
            exit(1);
        }
    }
    while (live > 0) {
        struct epoll_event evs[MAXCONNS];
        int n = epoll_wait(ep, evs, MAXCONNS, -1);

        if (n < 0 && errno != EINTR) {
            break;
        }
        for (int i = 0; i < n; i++) {
            struct econn *c = evs[i].data.ptr;

            if (!econn_serve(c, out)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                live--;
            }
        }
    }
    for (int i = 0; i < set->n; i++) {
        free(cs[i].in);
    }
    free(cs);
    free(out);
    close(ep);
    return NULL;
}

#ifdef HAVE_LIBURING
/*
 * One server connection over its own ring.  The reply to the last request
 * goes out in the same io_uring_enter() that waits for the next request:
 * the send is flagged to post no completion when it succeeds, so the one
 * completion waited for is the recv's.  The client sends its next request
 * only after the whole reply, so the reply buffer is free again by then.
 */
static void *
serve_uring(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint8_t *in = malloc(MAXBYTES + 8);
    uint8_t *out = calloc(1, MAXBYTES);
    struct io_uring ring;
    size_t have = 0;
    uint32_t rlen;
    int k;
    uint32_t pending = 0; /* reply bytes to send with the next wait */

    if (in == NULL || out == NULL ||
        io_uring_queue_init(8, &ring,
                            IORING_SETUP_SINGLE_ISSUER |
                                IORING_SETUP_DEFER_TASKRUN) < 0) {
        exit(1);
    }
    for (;;) {
        struct io_uring_sqe *sqe;
        struct io_uring_cqe *cqe;
        int res = 0;
        bool got = false;

        if (pending > 0) {
            sqe = io_uring_get_sqe(&ring);
            io_uring_prep_send(sqe, fd, out, pending,
                               MSG_NOSIGNAL | MSG_WAITALL);
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
            io_uring_sqe_set_data64(sqe, 1);
            pending = 0;
        }
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_recv(sqe, fd, in + have, MAXBYTES + 8 - have, 0);
        io_uring_sqe_set_data64(sqe, 2);
        while (!got) {
            unsigned head;
            unsigned seen = 0;

            int rc = io_uring_submit_and_wait(&ring, 1);

            if (rc < 0 && rc != -EINTR) {
                goto out;
            }
            io_uring_for_each_cqe(&ring, head, cqe)
            {
                seen++;
                if (cqe->user_data == 1) { /* a send failed */
                    io_uring_cq_advance(&ring, seen);
                    goto out;
                }
                res = cqe->res;
                got = true;
            }
            io_uring_cq_advance(&ring, seen);
        }
        if (res <= 0) {
            break;
        }
        have += (size_t)res;
        while ((k = take_frame(in, &have, &rlen)) > 0) {
            /* a reply still owed before this one goes out now */
            if (pending > 0 && !write_full(fd, out, pending)) {
                goto out;
            }
            put32(out, rlen);
            pending = rlen;
        }
        if (k < 0) {
            goto out;
        }
    }
out:
    io_uring_queue_exit(&ring);
    close(fd);
    free(in);
    free(out);
    return NULL;
}
#endif

static void *(*server_fn(void))(void *)
{
#ifdef HAVE_LIBURING
    if (use_uring) {
        return serve_uring;
    }
#endif
    return serve;
}

static bool
read_full(int fd, uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static void *
client_main(void *arg)
{
    struct client *c = arg;
    uint8_t *req = calloc(1, req_len);
    uint8_t *rep = malloc(reply_len);

    if (req == NULL || rep == NULL) {
        c->failed = true;
        free(req);
        free(rep);
        return NULL;
    }
    put32(req, (uint32_t)req_len);
    put32(req + 4, (uint32_t)reply_len);
    while (!atomic_load(&stop_clients)) {
        uint64_t t0 = now_ns();

        if (!write_full(c->fd, req, req_len) ||
            !read_full(c->fd, rep, reply_len)) {
            c->failed = true;
            break;
        }
        if (c->nlat < MAXSAMPLES) {
            c->lat_us[c->nlat++] = (uint32_t)((now_ns() - t0) / 1000u);
        }
        c->n++;
    }
    free(req);
    free(rep);
    return NULL;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

/* utime+stime of process 'pid', seconds. */
static double
proc_cpu(pid_t pid)
{
    char path[64];
    char buf[1024];
    unsigned long ut = 0;
    unsigned long st = 0;
    FILE *f;
    char *p;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    if (fgets(buf, sizeof(buf), f) == NULL) {
        fclose(f);
        return -1;
    }
    fclose(f);
    p = strrchr(buf, ')'); /* after the command name */
    if (p == NULL || sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu "
                            "%lu",
                            &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void
usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: floor [-T tcp|unix] [-c CONNS] [-t SECONDS] "
            "[--req BYTES] [--reply BYTES] [--spin USEC] [--uring] "
            "[--epoll THREADS]\n");
    exit(code);
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"req", required_argument, NULL, 'q'},
        {"reply", required_argument, NULL, 'r'},
        {"spin", required_argument, NULL, 's'},
        {"uring", no_argument, NULL, 'U'},
        {"epoll", required_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct client cl[MAXCONNS];
    int sfd[MAXCONNS];
    bool tcp = true;
    int conns = 1;
    int lfd = -1;
    int one = 1;
    uint64_t total = 0;
    uint32_t *all;
    size_t nall = 0;
    double cpu0;
    double cpu1;
    uint64_t t0;
    double dt;
    pid_t pid;
    char io[32] = "";
    int o;

    while ((o = getopt_long(argc, argv, "T:c:t:h", opts, NULL)) != -1) {
        switch (o) {
        case 'T': tcp = strcmp(optarg, "unix") != 0; break;
        case 'c': conns = atoi(optarg); break;
        case 't': secs = atof(optarg); break;
        case 'q': req_len = strtoul(optarg, NULL, 10); break;
        case 'r': reply_len = strtoul(optarg, NULL, 10); break;
        case 's': spin_us = atol(optarg); break;
        case 'U':
#ifdef HAVE_LIBURING
            use_uring = true;
            break;
#else
            fprintf(stderr, "floor: built without liburing\n");
            return 2;
#endif
        case 'E': epoll_threads = atoi(optarg); break;
        case 'h': usage(0); break;
        default: usage(2);
        }
    }
    if (conns < 1 || conns > MAXCONNS || secs <= 0 || req_len < 8 ||
        req_len > MAXBYTES || reply_len < 8 || reply_len > MAXBYTES ||
        spin_us < 0 || (use_uring && spin_us > 0) || epoll_threads < 0 ||
        epoll_threads > conns ||
        (epoll_threads > 0 && (use_uring || spin_us > 0))) {
        usage(2);
    }
#ifdef HAVE_LIBURING
    if (use_uring) {
        /* io_uring may be off here (kernel.io_uring_disabled, a seccomp
         * profile): say so, as a skip, before anything is measured */
        struct io_uring probe;
        int rc = io_uring_queue_init(
            8, &probe, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);

        if (rc < 0) {
            fprintf(stderr, "floor: io_uring unavailable: %s\n", strerror(-rc));
            return 77;
        }
        io_uring_queue_exit(&probe);
    }
#endif
    if (tcp) {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof(a);

        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            getsockname(lfd, (struct sockaddr *)&a, &al) < 0 ||
            listen(lfd, MAXCONNS) < 0) {
            perror("floor: listen");
            return 1;
        }
        for (int i = 0; i < conns; i++) {
            cl[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (cl[i].fd < 0 ||
                connect(cl[i].fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
                (sfd[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
                perror("floor: connect");
                return 1;
            }
            setsockopt(cl[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            setsockopt(sfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        close(lfd);
    } else {
        for (int i = 0; i < conns; i++) {
            int sv[2];

            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                perror("floor: socketpair");
                return 1;
            }
            cl[i].fd = sv[0];
            sfd[i] = sv[1];
        }
    }
    pid = fork();
    if (pid < 0) {
        perror("floor: fork");
        return 1;
    }
    if (pid == 0) {
        pthread_t th[MAXCONNS];
        static struct eset sets[MAXCONNS];

        if (epoll_threads > 0) {
            for (int i = 0; i < conns; i++) {
                struct eset *e = &sets[i % epoll_threads];

                close(cl[i].fd);
                if (fcntl(sfd[i], F_SETFL, O_NONBLOCK) < 0) {
                    _exit(1);
                }
                e->fds[e->n++] = sfd[i];
            }
            for (int i = 0; i < epoll_threads; i++) {
                if (pthread_create(&th[i], NULL, serve_epoll, &sets[i])) {
                    _exit(1);
                }
            }
            for (int i = 0; i < epoll_threads; i++) {
                pthread_join(th[i], NULL);
            }
            _exit(0);
        }
        for (int i = 0; i < conns; i++) {
            close(cl[i].fd);
            /* non-blocking, as virtfsd's sockets */
            if (fcntl(sfd[i], F_SETFL, O_NONBLOCK) < 0 ||
                pthread_create(&th[i], NULL, server_fn(),
                               (void *)(intptr_t)sfd[i])) {
                _exit(1);
            }
        }
        for (int i = 0; i < conns; i++) {
            pthread_join(th[i], NULL);
        }
        _exit(0);
    }
    for (int i = 0; i < conns; i++) {
        close(sfd[i]);
        cl[i].lat_us = malloc(sizeof(uint32_t) * MAXSAMPLES);
        if (cl[i].lat_us == NULL) {
            return 1;
        }
    }
    cpu0 = proc_cpu(pid);
    t0 = now_ns();
    for (int i = 0; i < conns; i++) {
        if (pthread_create(&cl[i].th, NULL, client_main, &cl[i]) != 0) {
            return 1;
        }
    }
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&stop_clients, true);
    for (int i = 0; i < conns; i++) {
        pthread_join(cl[i].th, NULL);
    }
    dt = (double)(now_ns() - t0) / 1e9;
    cpu1 = proc_cpu(pid);
    for (int i = 0; i < conns; i++) {
        shutdown(cl[i].fd, SHUT_RDWR);
        close(cl[i].fd);
    }
    waitpid(pid, NULL, 0);
    all = malloc(sizeof(uint32_t) * MAXSAMPLES * (size_t)conns);
    if (all == NULL) {
        return 1;
    }
    for (int i = 0; i < conns; i++) {
        if (cl[i].failed) {
            fprintf(stderr, "floor: connection %d failed\n", i);
            free(all);
            return 1;
        }
        total += cl[i].n;
        memcpy(all + nall, cl[i].lat_us, cl[i].nlat * sizeof(uint32_t));
        nall += cl[i].nlat;
    }
    if (total == 0 || nall == 0 || cpu0 < 0 || cpu1 < 0) {
        fprintf(stderr, "floor: nothing measured\n");
        free(all);
        return 1;
    }
    qsort(all, nall, sizeof(uint32_t), cmp_u32);
    if (epoll_threads > 0) {
        snprintf(io, sizeof(io), " io=epoll%d", epoll_threads);
    } else if (use_uring) {
        snprintf(io, sizeof(io), " io=uring");
    }
    printf("floor tr=%s%s conns=%d req=%zu reply=%zu rtts=%llu rtt/s=%.0f "
           "MiB/s=%.1f p50_us=%u p99_us=%u cpu_us_per_rtt=%.2f\n",
           tcp ? "tcp" : "unix", io, conns, req_len, reply_len,
           (unsigned long long)total, (double)total / dt,
           (double)total * (double)(req_len > reply_len ? req_len : reply_len) /
               dt / (1024.0 * 1024.0),
           all[nall / 2], all[nall * 99 / 100],
           (cpu1 - cpu0) / (double)total * 1e6);
    free(all);
    return 0;
}
