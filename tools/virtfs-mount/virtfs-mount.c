/* SPDX-License-Identifier: MIT */
/*
 * virtfs-mount: mounts a 9P2000.L export inside a guest over a virtio-serial
 * port or an AF_VSOCK connection, using the kernel's trans=fd transport.
 *
 * virtio-serial: the kernel's trans=fd cannot use a vport directly (since
 * Linux 5.10 kernel_read()/kernel_write() need ->read_iter/->write_iter,
 * which virtio_console lacks), and a vport may be opened only once.  So the
 * helper opens the port once, creates a socketpair, hands one end to the
 * kernel and relays between the port and the other end in a background
 * process that lives as long as the mount.
 *
 * vsock: the socket is handed to the kernel directly; no relay is needed.
 *
 * Static build for guests:  gcc -static -O2 -o virtfs-mount virtfs-mount.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

/* From meson.build (-DVIRTFS_VERSION); scripts/version.sh prints it for a
 * build outside meson (the guest harness's static build). */
#ifndef VIRTFS_VERSION
#define VIRTFS_VERSION "unknown"
#endif

#define DEFAULT_PORT "org.virtfs.0"
#define DEFAULT_MSIZE 131072u
#define DEFAULT_TIMEOUT 30
#define DEFAULT_CID 2u           /* VMADDR_CID_HOST */
#define RELAY_BUF (256u * 1024u) /* per direction */
#define MAX_OPTS 4000            /* mount data must fit in one page */

/* Exit statuses: 0 ok, 1 runtime failure, 2 usage error. */
enum { EXIT_USAGE = 2 };

static const char *prog = "virtfs-mount";
static bool verbose;
static int log_fd = 2; /* where the daemonized relay reports */

struct config {
    const char *port; /* virtio-serial port name or /dev path */
    const char *aname;
    const char *user_opts;
    const char *source;
    const char *target;
    unsigned msize;
    unsigned timeout; /* seconds: port lookup and mount */
    bool vsock;
    unsigned vsock_port;
    unsigned cid;
    bool dry_run;
    bool foreground;
};

__attribute__((format(printf, 1, 2))) static void
err_msg(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n = snprintf(buf, sizeof(buf), "%s: ", prog);

    va_start(ap, fmt);
    /* ap was started just above (clang-analyzer-14 false positive) */
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized) */
    vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strlen(buf);
    if (len < sizeof(buf) - 1) {
        buf[len++] = '\n';
    }
    ssize_t w = write(log_fd, buf, len);
    (void)w;
}

#define vmsg(...)                 \
    do {                          \
        if (verbose)              \
            err_msg(__VA_ARGS__); \
    } while (0)

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: %s [options] TAG_OR_NONE MOUNTPOINT\n"
        "Mount a VirtFS (9P2000.L) export over virtio-serial or vsock.\n"
        "\n"
        "  --port NAME       virtio-serial port name, or a /dev path (default %s)\n"
        "  --vsock PORT      connect to the host over AF_VSOCK instead\n"
        "  --cid CID         vsock CID to connect to (default %u, the host)\n"
        "  -o OPTS           extra 9p mount options (comma-separated)\n"
        "  --aname A         attach name (export name or path)\n"
        "  --msize N         maximum 9P message size (default %u)\n"
        "  --timeout SECS    wait this long for the port and the mount (default %d)\n"
        "  -f, --foreground  keep the relay in the foreground\n"
        "  -n, --dry-run     print what would be mounted and exit\n"
        "  -v, --verbose     report progress on stderr\n"
        "  -h, --help        this help\n"
        "  -V, --version     print the version\n",
        prog, DEFAULT_PORT, DEFAULT_CID, DEFAULT_MSIZE, DEFAULT_TIMEOUT);
}

static bool
parse_uint(const char *s, unsigned long max, unsigned *out)
{
    char *end;

    if (s == NULL || *s == '\0' || *s == '-' || *s == '+') {
        return false;
    }
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return false;
    }
    *out = (unsigned)v;
    return true;
}

/* Options that virtfs-mount sets itself and a user may not give. */
static const char *const reserved_opts[] = {"trans", "rfdno", "wfdno", "port",
                                            NULL};

/*
 * Builds the mount data string into buf.  rfd/wfd < 0 print "FD" (dry run).
 * Returns false (with a message) when the user options conflict.
 */
static bool
build_options(const struct config *c, int fd, char *buf, size_t len)
{
    bool user_version = false, user_msize = false, user_aname = false;
    char tmp[MAX_OPTS + 1];

    if (c->user_opts != NULL) {
        if (strlen(c->user_opts) > MAX_OPTS) {
            err_msg("-o: options too long");
            return false;
        }
        strcpy(tmp, c->user_opts);
        char *save = NULL;
        for (char *o = strtok_r(tmp, ",", &save); o != NULL;
             o = strtok_r(NULL, ",", &save)) {
            size_t klen = strcspn(o, "=");
            for (const char *const *r = reserved_opts; *r != NULL; r++) {
                if (strlen(*r) == klen && strncmp(o, *r, klen) == 0) {
                    err_msg(
                        "-o: option '%.*s' is set by %s and may not be given",
                        (int)klen, o, prog);
                    return false;
                }
            }
            if (klen == 7 && strncmp(o, "version", 7) == 0) {
                user_version = true;
            } else if (klen == 5 && strncmp(o, "msize", 5) == 0) {
                user_msize = true;
            } else if (klen == 5 && strncmp(o, "aname", 5) == 0) {
                user_aname = true;
            }
        }
        if (user_aname && c->aname != NULL) {
            err_msg("--aname and -o aname= both given");
            return false;
        }
    }

    int n;
    if (fd >= 0) {
        n = snprintf(buf, len, "trans=fd,rfdno=%d,wfdno=%d", fd, fd);
    } else {
        n = snprintf(buf, len, "trans=fd,rfdno=FD,wfdno=FD");
    }
    if (!user_version) {
        n += snprintf(buf + n, len - (size_t)n, ",version=9p2000.L");
    }
    if (!user_msize) {
        n += snprintf(buf + n, len - (size_t)n, ",msize=%u", c->msize);
    }
    if (c->aname != NULL) {
        n += snprintf(buf + n, len - (size_t)n, ",aname=%s", c->aname);
    }
    if (c->user_opts != NULL && c->user_opts[0] != '\0') {
        n += snprintf(buf + n, len - (size_t)n, ",%s", c->user_opts);
    }
    if ((size_t)n >= len || n > MAX_OPTS) {
        err_msg("mount options too long");
        return false;
    }
    return true;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Finds the vport device of the port called name: /sys/class/virtio-ports/
 * <dev>/name.  Returns 1 and the device path when found, 0 when not (yet).
 */
static int
find_port_once(const char *name, char *path, size_t len)
{
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    int found = 0;

    if (d == NULL) {
        return 0;
    }
    while (!found && (e = readdir(d)) != NULL) {
        char p[PATH_MAX], buf[256];
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(p, sizeof(p), "/sys/class/virtio-ports/%s/name", e->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        ssize_t r = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (r <= 0) {
            continue;
        }
        buf[r] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        if (strcmp(buf, name) != 0) {
            continue;
        }
        snprintf(path, len, "/dev/%s", e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) {
            /* No devtmpfs/udev node: make one from the sysfs dev numbers. */
            unsigned maj, min;
            snprintf(p, sizeof(p), "/sys/class/virtio-ports/%s/dev", e->d_name);
            FILE *f = fopen(p, "re");
            if (f != NULL) {
                if (fscanf(f, "%u:%u", &maj, &min) == 2 &&
                    mknod(path, S_IFCHR | 0600, makedev(maj, min)) == 0) {
                    vmsg("created %s (%u:%u)", path, maj, min);
                }
                fclose(f);
            }
            if (stat(path, &st) != 0) {
                continue; /* retry later */
            }
        }
        found = 1;
    }
    closedir(d);
    return found;
}

static int
open_port(const struct config *c)
{
    char path[PATH_MAX];
    double deadline = now_s() + c->timeout;

    if (c->port[0] == '/') {
        snprintf(path, sizeof(path), "%s", c->port);
    } else {
        bool said = false;
        while (!find_port_once(c->port, path, sizeof(path))) {
            if (now_s() >= deadline) {
                err_msg(
                    "virtio-serial port '%s' not found in /sys/class/virtio-ports after %u s "
                    "(is virtio_console loaded and the port configured on the host?)",
                    c->port, c->timeout);
                return -1;
            }
            if (!said) {
                vmsg("waiting for virtio-serial port '%s'", c->port);
                said = true;
            }
            usleep(50 * 1000);
        }
    }
    for (;;) {
        int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd >= 0) {
            vmsg("port '%s' is %s", c->port, path);
            return fd;
        }
        if (errno == EBUSY && now_s() < deadline) {
            usleep(50 * 1000);
            continue;
        }
        if (errno == EBUSY) {
            err_msg(
                "%s: %s (the port is already open: is another virtfs-mount using it?)",
                path, strerror(errno));
        } else {
            err_msg("%s: %s", path, strerror(errno));
        }
        return -1;
    }
}

static int
connect_vsock(const struct config *c)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_msg("socket(AF_VSOCK): %s%s", strerror(errno),
                errno == EAFNOSUPPORT ? " (load vmw_vsock_virtio_transport)"
                                      : "");
        return -1;
    }
    struct sockaddr_vm sa = {
        .svm_family = AF_VSOCK,
        .svm_cid = c->cid,
        .svm_port = c->vsock_port,
    };
    double deadline = now_s() + c->timeout;
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            vmsg("connected to vsock %u:%u", c->cid, c->vsock_port);
            return fd;
        }
        /* The host side may not listen yet: retry refused connections. */
        if ((errno == ECONNREFUSED || errno == ECONNRESET || errno == EINTR) &&
            now_s() < deadline) {
            close(fd);
            usleep(100 * 1000);
            fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                break;
            }
            continue;
        }
        break;
    }
    err_msg("connect to vsock CID %u port %u: %s", c->cid, c->vsock_port,
            strerror(errno));
    if (fd >= 0) {
        close(fd);
    }
    return -1;
}

static const char *
mount_hint(int e)
{
    switch (e) {
    case ENODEV:
        return " (the 9p file system is not available: load the 9p module)";
    case EPROTONOSUPPORT:
        return " (the fd transport is not available: load 9pnet_fd)";
    case EINVAL: return " (see dmesg for the 9p client's reason)";
    case ECONNREFUSED:
    case EIO:
    case ECONNRESET:
    case EPIPE:
        return " (the connection to the server failed: is the server running on the host?)";
    case ENOENT: return " (the server did not find the export: check --aname)";
    case EACCES:
    case EPERM: return " (attach refused by the server, or not root)";
    default: return "";
    }
}

static int
do_mount(const struct config *c, int fd)
{
    char opts[MAX_OPTS + 64];

    if (!build_options(c, fd, opts, sizeof(opts))) {
        return -1;
    }
    vmsg("mount -t 9p -o %s %s %s", opts, c->source, c->target);
    if (mount(c->source, c->target, "9p", 0, opts) != 0) {
        int e = errno;
        err_msg("mount %s on %s: %s%s", c->source, c->target, strerror(e),
                mount_hint(e));
        errno = e;
        return -1;
    }
    return 0;
}

/* --- relay ---------------------------------------------------------------- */

struct pipe_buf {
    char *data;
    size_t head, len; /* head: first unsent byte; len: bytes held */
};

/* Reads from fd into b.  Returns >0 bytes, 0 EOF, -1 would block, -2 error. */
static ssize_t
buf_fill(struct pipe_buf *b, int fd)
{
    if (b->len == 0) {
        b->head = 0;
    }
    size_t tail = b->head + b->len;
    if (tail >= RELAY_BUF) { /* compact */
        memmove(b->data, b->data + b->head, b->len);
        b->head = 0;
        tail = b->len;
    }
    ssize_t r = read(fd, b->data + tail, RELAY_BUF - tail);
    if (r > 0) {
        b->len += (size_t)r;
        return r;
    }
    if (r == 0) {
        return 0;
    }
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -1
                                                                       : -2;
}

/* Writes as much of b as fd takes.  Returns 0 ok (maybe partial), -2 error. */
static int
buf_drain(struct pipe_buf *b, int fd)
{
    while (b->len > 0) {
        ssize_t w = write(fd, b->data + b->head, b->len);
        if (w > 0) {
            b->head += (size_t)w;
            b->len -= (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        return -2;
    }
    b->head = 0;
    return 0;
}

static bool
buf_full(const struct pipe_buf *b)
{
    return b->len >= RELAY_BUF;
}

/*
 * Relays between the vport and the socket until the kernel closes its end of
 * the socketpair (unmount) or the host disconnects after having spoken.
 * Returns the exit status.
 */
static int
relay(int port, int sock)
{
    struct pipe_buf up = {0},
                    down = {0}; /* up: guest->host, down: host->guest */
    bool host_spoke = false;
    double hup_since = 0;

    up.data = malloc(RELAY_BUF);
    down.data = malloc(RELAY_BUF);
    if (up.data == NULL || down.data == NULL) {
        err_msg("relay: out of memory");
        return 1;
    }
    int fl = fcntl(sock, F_GETFL);
    fcntl(sock, F_SETFL, fl | O_NONBLOCK);

    for (;;) {
        /* While the host is not connected the port reports POLLHUP all the
         * time: leave it out of poll() and retry reading every 20 ms. */
        bool hup = hup_since > 0;
        struct pollfd p[2] = {
            {.fd = hup ? -1 : port, .events = 0},
            {.fd = sock, .events = 0},
        };
        if (!buf_full(&down)) {
            p[0].events |= POLLIN;
        }
        if (up.len > 0) {
            p[0].events |= POLLOUT;
        }
        if (!buf_full(&up)) {
            p[1].events |= POLLIN;
        }
        if (down.len > 0) {
            p[1].events |= POLLOUT;
        }
        int n = poll(p, 2, hup ? 20 : -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            err_msg("relay: poll: %s", strerror(errno));
            return 1;
        }

        /* socket (kernel 9p client) -> port */
        if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) && !buf_full(&up)) {
            ssize_t r = buf_fill(&up, sock);
            if (r == 0 || r == -2) {
                /* The kernel dropped its end: unmounted (or mount failed). */
                vmsg("relay: 9p client closed the connection; exiting");
                return 0;
            }
        }
        if (up.len > 0 && buf_drain(&up, port) < 0) {
            err_msg("relay: write to port: %s", strerror(errno));
            return 1;
        }

        /* port (host server) -> socket */
        if ((hup || (p[0].revents & (POLLIN | POLLHUP | POLLERR))) &&
            !buf_full(&down)) {
            ssize_t r = buf_fill(&down, port);
            if (r > 0) {
                host_spoke = true;
                hup_since = 0;
            } else if (r == -2) {
                err_msg("relay: read from port: %s", strerror(errno));
                return 1;
            } else if (r == 0 || (p[0].revents & (POLLHUP | POLLERR))) {
                /* Host not connected (yet, or any more). */
                double t = now_s();
                if (hup_since == 0) {
                    hup_since = t;
                }
                if (host_spoke && t - hup_since > 2.0) {
                    err_msg(
                        "relay: the host closed the port; ending the 9p connection");
                    return 1;
                }
            }
        }
        if (down.len > 0 && buf_drain(&down, sock) < 0) {
            if (errno == EPIPE || errno == ECONNRESET) {
                vmsg("relay: 9p client closed the connection; exiting");
                return 0;
            }
            err_msg("relay: write to socket: %s", strerror(errno));
            return 1;
        }
    }
}

static void
detach_stdio(void)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        if (!verbose) {
            dup2(null, 2);
        }
        if (null > 2) {
            close(null);
        }
    }
    if (!verbose) {
        int k = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
        log_fd = k >= 0 ? k : 2;
    }
}

static int
run_virtio_serial(const struct config *c)
{
    int port = open_port(c);
    if (port < 0) {
        return 1;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        err_msg("socketpair: %s", strerror(errno));
        return 1;
    }
    /* sv[0] goes to the kernel (looked up by number in this process at
     * mount time, so CLOEXEC does not matter); sv[1] to the relay. */
    pid_t pid = fork();
    if (pid < 0) {
        err_msg("fork: %s", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        /* Child: the relay.  It must be running before mount(2) is called,
         * since mount blocks until Tversion and Tattach are answered. */
        close(sv[0]);
        if (!c->foreground) {
            setsid();
        }
        if (chdir("/") != 0) {
            /* ignore */
        }
        signal(SIGPIPE, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        if (!c->foreground) {
            detach_stdio();
        }
        _exit(relay(port, sv[1]));
    }
    close(sv[1]);
    close(port);

    /* Bound the mount: a server that never answers would block us forever.
     * SIGALRM's default action kills us; the kernel then drops the fds and
     * the relay exits. */
    alarm(c->timeout);
    int rc = do_mount(c, sv[0]);
    alarm(0);
    close(sv[0]);
    if (rc != 0) {
        /* The relay would see EOF once the kernel has dropped its
         * references; do not leave it to chance. */
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return 1;
    }
    vmsg("mounted %s on %s (relay pid %d)", c->source, c->target, (int)pid);
    if (c->foreground) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    return 0;
}

static int
run_vsock(const struct config *c)
{
    int fd = connect_vsock(c);
    if (fd < 0) {
        return 1;
    }
    alarm(c->timeout);
    int rc = do_mount(c, fd);
    alarm(0);
    close(fd); /* the kernel holds its own reference */
    if (rc != 0) {
        return 1;
    }
    vmsg("mounted %s on %s over vsock %u:%u", c->source, c->target, c->cid,
         c->vsock_port);
    return 0;
}

int
main(int argc, char **argv)
{
    struct config c = {
        .port = NULL,
        .msize = DEFAULT_MSIZE,
        .timeout = DEFAULT_TIMEOUT,
        .cid = DEFAULT_CID,
    };
    bool cid_given = false;
    enum { O_PORT = 256, O_VSOCK, O_CID, O_ANAME, O_MSIZE, O_TIMEOUT };
    static const struct option longopts[] = {
        {"port", required_argument, NULL, O_PORT},
        {"vsock", required_argument, NULL, O_VSOCK},
        {"cid", required_argument, NULL, O_CID},
        {"aname", required_argument, NULL, O_ANAME},
        {"msize", required_argument, NULL, O_MSIZE},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"options", required_argument, NULL, 'o'},
        {"foreground", no_argument, NULL, 'f'},
        {"dry-run", no_argument, NULL, 'n'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    if (argv[0] != NULL && argv[0][0] != '\0') {
        const char *b = strrchr(argv[0], '/');
        prog = b != NULL ? b + 1 : argv[0];
    }
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":o:fnvhV", longopts, NULL)) != -1) {
        switch (opt) {
        case O_PORT:
            /* required_argument: getopt_long has set optarg */
            /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
            if (optarg[0] == '\0') {
                err_msg("--port: empty port name");
                return EXIT_USAGE;
            }
            c.port = optarg;
            break;
        case O_VSOCK:
            if (!parse_uint(optarg, UINT32_MAX - 1, &c.vsock_port)) {
                err_msg("--vsock: invalid port number '%s'", optarg);
                return EXIT_USAGE;
            }
            c.vsock = true;
            break;
        case O_CID:
            if (!parse_uint(optarg, UINT32_MAX - 1, &c.cid)) {
                err_msg("--cid: invalid CID '%s'", optarg);
                return EXIT_USAGE;
            }
            cid_given = true;
            break;
        case O_ANAME:
            /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
            if (strchr(optarg, ',') != NULL) {
                err_msg(
                    "--aname: a comma cannot be passed in 9p mount options");
                return EXIT_USAGE;
            }
            c.aname = optarg;
            break;
        case O_MSIZE:
            if (!parse_uint(optarg, 64u * 1024 * 1024, &c.msize) ||
                c.msize < 4096) {
                err_msg("--msize: invalid size '%s' (4096 .. 67108864)",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case O_TIMEOUT:
            if (!parse_uint(optarg, 86400, &c.timeout) || c.timeout == 0) {
                err_msg(
                    "--timeout: invalid number of seconds '%s' (1 .. 86400)",
                    optarg);
                return EXIT_USAGE;
            }
            break;
        case 'o':
            if (c.user_opts != NULL) {
                err_msg("-o given twice: combine the options with commas");
                return EXIT_USAGE;
            }
            c.user_opts = optarg;
            break;
        case 'f': c.foreground = true; break;
        case 'n': c.dry_run = true; break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("virtfs-mount %s\n", VIRTFS_VERSION); return 0;
        case ':':
            err_msg("option '%s' needs an argument", argv[optind - 1]);
            usage(stderr);
            return EXIT_USAGE;
        default:
            if (optopt != 0) {
                err_msg("unknown option '-%c'", optopt);
            } else {
                err_msg("unknown option '%s'", argv[optind - 1]);
            }
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        err_msg(argc - optind < 2 ? "missing TAG_OR_NONE and/or MOUNTPOINT"
                                  : "too many arguments");
        usage(stderr);
        return EXIT_USAGE;
    }
    c.source = argv[optind];
    c.target = argv[optind + 1];
    if (c.source[0] == '\0' || c.target[0] == '\0') {
        err_msg("empty source or mount point");
        return EXIT_USAGE;
    }
    if (c.vsock && c.port != NULL) {
        err_msg("--port and --vsock exclude each other");
        return EXIT_USAGE;
    }
    if (cid_given && !c.vsock) {
        err_msg("--cid needs --vsock");
        return EXIT_USAGE;
    }
    if (c.port == NULL) {
        c.port = DEFAULT_PORT;
    }

    char opts[MAX_OPTS + 64];
    if (!build_options(&c, -1, opts, sizeof(opts))) {
        return EXIT_USAGE;
    }
    if (c.dry_run) {
        if (c.vsock) {
            printf("transport: vsock cid=%u port=%u\n", c.cid, c.vsock_port);
        } else {
            printf("transport: virtio-serial port=%s\n", c.port);
        }
        printf("source: %s\n", c.source);
        printf("mountpoint: %s\n", c.target);
        printf("options: %s\n", opts);
        printf("mount -t 9p -o %s %s %s\n", opts, c.source, c.target);
        return 0;
    }

    struct stat st;
    if (stat(c.target, &st) != 0) {
        err_msg("mount point %s: %s", c.target, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        err_msg("mount point %s is not a directory", c.target);
        return 1;
    }
    return c.vsock ? run_vsock(&c) : run_virtio_serial(&c);
}
