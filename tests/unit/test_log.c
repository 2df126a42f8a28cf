/* SPDX-License-Identifier: MIT */
/*
 * log_escape(): what a peer can put in a log line (util/log.c), and
 * sock_split_hostport(): the one HOST:PORT parser (util/sock.c).
 */
#include <errno.h>
#include <string.h>

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
    esc("\xc2\x9b" "31m", "\\xc2\\x9b31m", "C1 CSI (U+009B)");
    esc("\xe2\x80\xae" "gpj.exe", "\\xe2\\x80\\xaegpj.exe",
        "bidi override (U+202E)");
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
    int err = sock_split_hostport(in, h, sizeof(h), &p, zero, msg,
                                  sizeof(msg));

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

int
main(void)
{
    test_escape();
    test_hostport();
    return tap_done();
}
