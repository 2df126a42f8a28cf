/* SPDX-License-Identifier: MIT */
/*
 * log_escape(): what a peer can put in a log line (util/log.c),
 * sock_split_hostport(): the one HOST:PORT parser, and sock_listen_unix():
 * a socket path appears only when it accepts (util/sock.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tap.h"
#include "util/log.h"
#include "util/sock.h"

static void
esc(const char *in, const char *want, const char *what)
{
    char out[256];

    log_escape(out, sizeof(out), in);
    tap_ok(strcmp(out, want) == 0, "escape %s: '%s'", what, out);
}

static void
test_escape(void)
{
    char small[9];

    esc("plain text 123", "plain text 123", "plain ASCII unchanged");
    esc("a\nvirtfs: error: x", "a\\x0avirtfs: error: x", "newline");
    esc("\r\t\x1b[2J\x07\x7f", "\\x0d\\x09\\x1b[2J\\x07\\x7f", "C0 and DEL");
    esc("caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac",
        "valid UTF-8 kept");
    esc("\xc2\x9b"
        "31m",
        "\\xc2\\x9b31m", "C1 CSI (U+009B)");
    esc("\xe2\x80\xae"
        "gpj.exe",
        "\\xe2\\x80\\xaegpj.exe", "bidi override (U+202E)");
    esc("\xe2\x80\xa8", "\\xe2\\x80\\xa8", "line separator (U+2028)");
    esc("\xff\xfe", "\\xff\\xfe", "invalid bytes");
    esc("\xc0\x8a", "\\xc0\\x8a", "overlong newline");
    esc("\xed\xa0\x80", "\\xed\\xa0\\x80", "surrogate");
    esc("\xe2\x82", "\\xe2\\x82", "truncated sequence");
    esc("back\\slash", "back\\slash", "backslash kept (no control)");
    log_escape(small, sizeof(small), "ab\ncdefgh");
    tap_ok(strcmp(small, "ab\\x0acd") == 0 && strlen(small) < sizeof(small),
           "escape: cut to the buffer, never inside an escape: '%s'", small);
    log_escape(small, 4, "\n\n");
    tap_ok(strcmp(small, "") == 0, "escape: no room for an escape: nothing");
}

static void
hp(const char *in, int want_err, const char *host, unsigned port, bool zero)
{
    char h[64] = "";
    char msg[128] = "";
    unsigned p = 12345;
    int err = sock_split_hostport(in, h, sizeof(h), &p, zero, msg, sizeof(msg));

    if (want_err) {
        tap_ok(err == -EINVAL && msg[0] != '\0', "hostport '%s' rejected (%s)",
               in, msg);
    } else {
        tap_ok(err == 0 && strcmp(h, host) == 0 && p == port,
               "hostport '%s' -> '%s' %u (%d)", in, h, p, err);
    }
}

static void
test_hostport(void)
{
    hp("127.0.0.1:5640", 0, "127.0.0.1", 5640, false);
    hp("[::1]:564", 0, "::1", 564, false);
    hp("localhost:1", 0, "localhost", 1, false);
    hp(":65535", 0, "", 65535, false);
    hp("127.0.0.1:0", 0, "127.0.0.1", 0, true);
    hp("127.0.0.1:0", 1, NULL, 0, false);
    hp("127.0.0.1:99999", 1, NULL, 0, true);
    hp("127.0.0.1:65536", 1, NULL, 0, true);
    hp("127.0.0.1:4294967297", 1, NULL, 0, true);
    hp("127.0.0.1:-1", 1, NULL, 0, true);
    hp("127.0.0.1:+80", 1, NULL, 0, true);
    hp("127.0.0.1: 80", 1, NULL, 0, true);
    hp("127.0.0.1:80x", 1, NULL, 0, true);
    hp("127.0.0.1:", 1, NULL, 0, true);
    hp("127.0.0.1", 1, NULL, 0, true);
    hp("::1:80", 1, NULL, 0, true);
    hp("[::1]80", 1, NULL, 0, true);
    hp("[::1:80", 1, NULL, 0, true);
    hp("127.0.0.1:http", 1, NULL, 0, true);
}

/*
 * A Unix socket path that appears is a socket that accepts: a watcher that
 * connects the moment inotify reports the name (a VMM waiting for its
 * vhost-user socket) must never get ECONNREFUSED.  Binding the final name
 * before listen() failed this within a few hundred rounds.
 */
struct appear_arg {
    const char *dir;
    const char *name;
    int rounds;
    int refused;
    int connected;
    int ready; /* the watch is in place */
    pthread_mutex_t m;
    pthread_cond_t cv;
};

static void *
appear_watch(void *p)
{
    struct appear_arg *a = p;
    char path[256];
    char buf[4096] __attribute__((aligned(8)));
    int in = inotify_init1(IN_CLOEXEC);

    snprintf(path, sizeof(path), "%s/%s", a->dir, a->name);
    inotify_add_watch(in, a->dir, IN_CREATE | IN_MOVED_TO);
    pthread_mutex_lock(&a->m);
    a->ready = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->m);
    for (bool end = false; !end;) {
        ssize_t n = read(in, buf, sizeof(buf));

        for (ssize_t off = 0; off < n;) {
            const struct inotify_event *ev = (const void *)(buf + off);

            off += (ssize_t)(sizeof(*ev) + ev->len);
            if (ev->len > 0 && strcmp(ev->name, "end") == 0) {
                end = true;
            }
            if (ev->len == 0 || strcmp(ev->name, a->name) != 0) {
                continue;
            }
            struct sockaddr_un sa = {.sun_family = AF_UNIX};
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

            memcpy(sa.sun_path, path, strlen(path) + 1);
            if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
                a->connected++;
            } else if (errno == ECONNREFUSED) {
                a->refused++;
            }
            close(fd);
        }
        if (n <= 0) {
            break;
        }
    }
    close(in);
    return NULL;
}

static void
test_listen_appears_ready(void)
{
    char dir[] = "/tmp/vfs-sock-XXXXXX";
    char path[256];
    struct appear_arg a = {.name = "s", .rounds = 300};
    pthread_t th;
    int bad = 0;

    if (mkdtemp(dir) == NULL) {
        tap_ok(false, "mkdtemp");
        return;
    }
    a.dir = dir;
    pthread_mutex_init(&a.m, NULL);
    pthread_cond_init(&a.cv, NULL);
    snprintf(path, sizeof(path), "%s/s", dir);
    pthread_create(&th, NULL, appear_watch, &a);
    pthread_mutex_lock(&a.m);
    while (!a.ready) {
        pthread_cond_wait(&a.cv, &a.m);
    }
    pthread_mutex_unlock(&a.m);
    for (int i = 0; i < a.rounds; i++) {
        struct sock_unix_id id;
        char msg[256];
        int fd = sock_listen_unix(path, 4, &id, msg, sizeof(msg));

        if (fd < 0) {
            bad++;
            continue;
        }
        usleep(200); /* the watcher connects meanwhile */
        sock_unix_unlink(path, &id);
        close(fd);
    }
    snprintf(path, sizeof(path), "%s/end", dir); /* the watcher stops */
    close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    pthread_join(th, NULL);
    unlink(path);
    tap_ok(bad == 0, "%d listeners made on one path in turn (failed: %d)",
           a.rounds, bad);
    tap_ok(a.refused == 0 && a.connected > 0,
           "a socket path that appears accepts at once (%d connected, "
           "%d refused)",
           a.connected, a.refused);
    rmdir(dir);
}

int
main(void)
{
    test_escape();
    test_hostport();
    test_listen_appears_ready();
    return tap_done();
}
