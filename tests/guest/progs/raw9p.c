/* SPDX-License-Identifier: MIT */
/*
 * raw9p: an untrusted guest's escape attempts, sent as hand-made 9P2000.L
 * messages straight over a virtio-serial port (no kernel 9p client, which
 * would resolve "..", and symlinks, itself).  Prints "ok - ..." /
 * "not ok - ..." per attempt; exits 1 if any attempt got outside the export.
 *
 *   raw9p PORTNAME ANAME
 *
 * Export layout made by the host (tests/guest/run.sh):
 *   EXPORT/inside.txt, EXPORT/sub/
 *   EXPORT/up -> ..          EXPORT/upup -> ../..      EXPORT/etc -> /etc
 *   EXPORT/out -> ../outside EXPORT/secretlink -> ../outside/secret.txt
 *   EXPORT/../sentinel.txt, EXPORT/../outside/secret.txt  (must stay unseen)
 * The host then checks that nothing outside the export changed.
 *
 * Static build: gcc -static -O2 -o raw9p raw9p.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    Rlerror = 7,
    Tlopen = 12,
    Tlcreate = 14,
    Tsymlink = 16,
    Tmknod = 18,
    Tgetattr = 24,
    Tsetattr = 26,
    Treaddir = 40,
    Tlink = 70,
    Tmkdir = 72,
    Trenameat = 74,
    Tunlinkat = 76,
    Tversion = 100,
    Tattach = 104,
    Twalk = 110,
    Tread = 116,
    Tclunk = 120,
};

static int port_fd = -1, failures;
static uint8_t out[65536], in[65536];
static size_t olen;
static uint32_t in_len;
static uint8_t in_type;
static uint32_t last_err;
static uint16_t cur_tag, strays;
static uint8_t cur_type;

__attribute__((format(printf, 2, 3))) static bool
check(bool cond, const char *fmt, ...)
{
    va_list ap;
    printf("%sok - escape(raw 9P): ", cond ? "" : "not ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    failures += !cond;
    return cond;
}

static void
p8(uint8_t v)
{
    out[olen++] = v;
}
static void
p16(uint16_t v)
{
    p8(v & 0xff);
    p8(v >> 8);
}
static void
p32(uint32_t v)
{
    p16(v & 0xffff);
    p16(v >> 16);
}
static void
p64(uint64_t v)
{
    p32((uint32_t)v);
    p32((uint32_t)(v >> 32));
}
static void
pstr(const char *s)
{
    size_t n = strlen(s);
    p16((uint16_t)n);
    memcpy(out + olen, s, n);
    olen += n;
}
static uint32_t
g32(const uint8_t *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t
g16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void
begin(uint8_t type)
{
    olen = 4;
    cur_type = type;
    p8(type);
    /* Every request gets its own tag so that a stray or duplicate reply is
     * detected instead of being taken for the next answer. */
    cur_tag = type == Tversion ? 0xffff : (uint16_t)(cur_tag % 0xfff0 + 1);
    p16(cur_tag);
}

static int
full_io(bool wr, uint8_t *buf, size_t len)
{
    size_t done = 0;
    int idle = 0;
    while (done < len) {
        ssize_t r = wr ? write(port_fd, buf + done, len - done)
                       : read(port_fd, buf + done, len - done);
        if (r > 0) {
            done += (size_t)r;
            idle = 0;
            continue;
        }
        if (r < 0 && errno != EINTR && errno != EAGAIN) {
            return -1;
        }
        /* r == 0: host side not connected yet; wait a little. */
        if (++idle > 1000) {
            errno = ETIMEDOUT;
            return -1;
        }
        usleep(10000);
    }
    return 0;
}

/* Sends the message being built; returns the reply type (Rlerror sets last_err). */
static int
rpc(void)
{
    out[0] = (uint8_t)olen;
    out[1] = (uint8_t)(olen >> 8);
    out[2] = (uint8_t)(olen >> 16);
    out[3] = (uint8_t)(olen >> 24);
    if (full_io(true, out, olen) != 0) {
        fprintf(stderr, "raw9p: port write failed: %s\n", strerror(errno));
        exit(3);
    }
    for (;;) {
        struct pollfd pfd = {.fd = port_fd, .events = POLLIN};
        if (poll(&pfd, 1, 15000) == 0) {
            check(false, "no reply within 15 s to T%u tag %u", cur_type,
                  cur_tag);
            exit(1);
        }
        if (full_io(false, in, 7) != 0) {
            fprintf(stderr, "raw9p: port read failed: %s\n", strerror(errno));
            exit(3);
        }
        in_len = g32(in);
        if (in_len < 7 || in_len > sizeof(in)) {
            check(false, "reply with bad size %u", in_len);
            exit(1);
        }
        if (full_io(false, in + 7, in_len - 7) != 0) {
            exit(3);
        }
        if (g16(in + 5) == cur_tag) {
            break;
        }
        strays++;
        printf("# stray reply R%u tag %u (waiting for T%u tag %u)\n", in[4],
               g16(in + 5), cur_type, cur_tag);
    }
    in_type = in[4];
    last_err = in_type == Rlerror ? g32(in + 7) : 0;
    return in_type;
}

/* The "(reason)" of a check must describe the reply of the same request, and
 * C leaves the order of argument evaluation open: requests whose result is
 * checked are sent first (r_ = rpc();) and checked in the next statement. */
static int r_;
static const char *
ename(void)
{
    static char buf[64];
    if (in_type != Rlerror) {
        snprintf(buf, sizeof(buf), "success (R%u)", in_type);
    } else {
        const char *n = strerrorname_np((int)last_err);
        snprintf(buf, sizeof(buf), "%s", n ? n : "?");
    }
    return buf;
}

static uint32_t next_fid = 10;

/* Walks from fid over the names (NULL-terminated); returns the number of
 * qids in Rwalk (-1 for Rlerror).  *newfid is set when all names walked. */
static int
walk(uint32_t fid, uint32_t *newfid, const char *const *names,
     uint8_t *last_qid)
{
    uint16_t n = 0;
    while (names[n] != NULL) {
        n++;
    }
    uint32_t nf = next_fid++;
    begin(Twalk);
    p32(fid);
    p32(nf);
    p16(n);
    for (uint16_t i = 0; i < n; i++) {
        pstr(names[i]);
    }
    if (rpc() != Twalk + 1) {
        return -1;
    }
    int nq = g16(in + 7);
    if (nq == n && newfid != NULL) {
        *newfid = nf;
    }
    if (nq > 0 && last_qid != NULL) {
        memcpy(last_qid, in + 9 + 13 * (nq - 1), 13);
    }
    if (nq != n) {
        /* partial walk: newfid was not created */
    } else if (newfid == NULL) {
        begin(Tclunk);
        p32(nf);
        rpc();
    }
    return nq;
}

static void
clunk(uint32_t fid)
{
    begin(Tclunk);
    p32(fid);
    rpc();
}

/* A walk that must not succeed completely. */
static void
walk_must_fail(const char *desc, const char *const *names)
{
    int nq = 0, n = 0;
    while (names[n] != NULL) {
        n++;
    }
    nq = walk(0, NULL, names, NULL);
    check(nq < n, "walk %s refused (%s)", desc,
          nq < 0   ? ename()
          : nq < n ? "partial walk"
                   : "WALKED THROUGH");
}

static int
lopen(uint32_t fid, uint32_t flags)
{
    begin(Tlopen);
    p32(fid);
    p32(flags);
    return rpc();
}

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: raw9p PORTNAME ANAME\n");
        return 2;
    }
    /* Find /dev/vportNpM named argv[1]. */
    char dev[300] = "";
    for (int tries = 0; tries < 300 && dev[0] == '\0'; tries++) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            char p[600], name[256] = "";
            snprintf(p, sizeof(p), "/sys/class/virtio-ports/%s/name",
                     e->d_name);
            FILE *f = fopen(p, "r");
            if (f != NULL) {
                if (fgets(name, sizeof(name), f) != NULL) {
                    name[strcspn(name, "\n")] = '\0';
                }
                fclose(f);
            }
            if (strcmp(name, argv[1]) == 0) {
                snprintf(dev, sizeof(dev), "/dev/%s", e->d_name);
            }
        }
        if (d != NULL) {
            closedir(d);
        }
        if (dev[0] == '\0') {
            usleep(20000);
        }
    }
    port_fd = dev[0] ? open(dev, O_RDWR) : -1;
    if (port_fd < 0) {
        fprintf(stderr, "raw9p: port %s not found/openable\n", argv[1]);
        return 3;
    }

    begin(Tversion);
    p32(65536);
    pstr("9P2000.L");
    r_ = rpc();
    if (!check(r_ == Tversion + 1, "Tversion answered")) {
        return 1;
    }
    begin(Tattach);
    p32(0);
    p32(~0u);
    pstr("root");
    pstr(argv[2]);
    p32(0);
    r_ = rpc();
    if (!check(r_ == Tattach + 1, "Tattach %s (%s)", argv[2], ename())) {
        return 1;
    }
    uint8_t rootq[13], q[13];
    memcpy(rootq, in + 7, 13);

    /* ".." at the root stays at the root (or is refused). */
    uint32_t f = 0;
    int nq = walk(0, &f, (const char *const[]){"..", NULL}, q);
    check(nq < 0 || memcmp(q + 5, rootq + 5, 8) == 0,
          "walk .. from the root stays at the root");
    if (nq == 1) {
        uint32_t g;
        int n2 = walk(f, &g, (const char *const[]){"sentinel.txt", NULL}, NULL);
        check(n2 < 1, "walk sentinel.txt after .. from the root refused (%s)",
              n2 < 0 ? ename() : "WALKED THROUGH");
        clunk(f);
    }
    walk_must_fail("[.., sentinel.txt]",
                   (const char *const[]){"..", "sentinel.txt", NULL});
    walk_must_fail(
        "[.., .., .., etc, passwd]",
        (const char *const[]){"..", "..", "..", "etc", "passwd", NULL});
    walk_must_fail(
        "[sub, .., .., sentinel.txt]",
        (const char *const[]){"sub", "..", "..", "sentinel.txt", NULL});
    walk_must_fail("through symlink out -> ../outside",
                   (const char *const[]){"out", "secret.txt", NULL});
    walk_must_fail("through symlink up -> ..",
                   (const char *const[]){"up", "sentinel.txt", NULL});
    walk_must_fail("through symlink upup -> ../..",
                   (const char *const[]){"upup", "etc", NULL});
    walk_must_fail("through symlink etc -> /etc",
                   (const char *const[]){"etc", "passwd", NULL});
    walk_must_fail("name with a slash 'out/secret.txt'",
                   (const char *const[]){"out/secret.txt", NULL});
    walk_must_fail("name '../sentinel.txt'",
                   (const char *const[]){"../sentinel.txt", NULL});
    walk_must_fail("name '/etc'", (const char *const[]){"/etc", NULL});

    /* Operations on fids of symlinks that point outside. */
    uint32_t out_fid = 0, etc_fid = 0, sec_fid = 0, file_fid = 0;
    walk(0, &out_fid, (const char *const[]){"out", NULL}, NULL);
    walk(0, &etc_fid, (const char *const[]){"etc", NULL}, NULL);
    walk(0, &sec_fid, (const char *const[]){"secretlink", NULL}, NULL);
    walk(0, &file_fid, (const char *const[]){"inside.txt", NULL}, NULL);
    check(out_fid && etc_fid && sec_fid && file_fid,
          "walk to the symlinks themselves works");

    if (etc_fid) {
        int t = lopen(etc_fid, 0 /* O_RDONLY */);
        bool leak = false;
        if (t == Tlopen + 1) {
            begin(Treaddir);
            p32(etc_fid);
            p64(0);
            p32(4096);
            leak = rpc() == Treaddir + 1 && g32(in + 7) > 0;
        }
        check(!leak,
              "Tlopen+Treaddir on symlink etc -> /etc lists nothing (%s)",
              ename());
    }
    if (sec_fid) {
        int t = lopen(sec_fid, 0);
        bool leak = false;
        if (t == Tlopen + 1) {
            begin(Tread);
            p32(sec_fid);
            p64(0);
            p32(4096);
            leak = rpc() == Tread + 1 && g32(in + 7) > 0;
        }
        check(
            !leak,
            "Tlopen+Tread on secretlink -> ../outside/secret.txt reads nothing (%s)",
            ename());
        clunk(sec_fid);
        walk(0, &sec_fid, (const char *const[]){"secretlink", NULL}, NULL);
        t = lopen(sec_fid, 01 | 01000 /* O_WRONLY|O_TRUNC */);
        check(t != Tlopen + 1,
              "Tlopen O_WRONLY|O_TRUNC on secretlink refused (%s)", ename());
        clunk(sec_fid);
        walk(0, &sec_fid, (const char *const[]){"secretlink", NULL}, NULL);
        begin(Tsetattr);
        p32(sec_fid);
        p32(0x8 | 0x1); /* SIZE | MODE */
        p32(0666);
        p32(0);
        p32(0);
        p64(0);
        p64(0);
        p64(0);
        p64(0);
        p64(0);
        rpc();
        printf(
            "# Tsetattr(size=0, mode=0666) on secretlink: %s (host checks the target)\n",
            ename());
    }
    if (out_fid) {
        begin(Tlcreate);
        p32(out_fid);
        pstr("evil.txt");
        p32(01 | 0100); /* O_WRONLY|O_CREAT */
        p32(0644);
        p32(0);
        r_ = rpc();
        check(r_ != Tlcreate + 1,
              "Tlcreate inside symlink out -> ../outside refused (%s)",
              ename());
        clunk(out_fid);
        walk(0, &out_fid, (const char *const[]){"out", NULL}, NULL);

        begin(Tmkdir);
        p32(out_fid);
        pstr("evildir");
        p32(0755);
        p32(0);
        r_ = rpc();
        check(r_ != Tmkdir + 1, "Tmkdir inside symlink out refused (%s)",
              ename());
        begin(Tsymlink);
        p32(out_fid);
        pstr("evillink");
        pstr("/etc/passwd");
        p32(0);
        r_ = rpc();
        check(r_ != Tsymlink + 1, "Tsymlink inside symlink out refused (%s)",
              ename());
        begin(Tmknod);
        p32(out_fid);
        pstr("evilfifo");
        p32(010644);
        p32(0);
        p32(0);
        p32(0);
        r_ = rpc();
        check(r_ != Tmknod + 1, "Tmknod inside symlink out refused (%s)",
              ename());
        begin(Tunlinkat);
        p32(out_fid);
        pstr("secret.txt");
        p32(0);
        r_ = rpc();
        check(r_ != Tunlinkat + 1,
              "Tunlinkat secret.txt via symlink out refused (%s)", ename());
        begin(Trenameat);
        p32(0);
        pstr("inside.txt");
        p32(out_fid);
        pstr("stolen.txt");
        r_ = rpc();
        check(r_ != Trenameat + 1,
              "Trenameat inside.txt into symlink out refused (%s)", ename());
        begin(Trenameat);
        p32(out_fid);
        pstr("secret.txt");
        p32(0);
        pstr("grabbed.txt");
        r_ = rpc();
        check(r_ != Trenameat + 1,
              "Trenameat secret.txt out of symlink out refused (%s)", ename());
        if (file_fid) {
            begin(Tlink);
            p32(out_fid);
            p32(file_fid);
            pstr("linked.txt");
            r_ = rpc();
            check(r_ != Tlink + 1, "Tlink into symlink out refused (%s)",
                  ename());
        }
        begin(Tsetattr);
        p32(out_fid);
        p32(0x1); /* MODE */
        p32(0777);
        p32(0);
        p32(0);
        p64(0);
        p64(0);
        p64(0);
        p64(0);
        p64(0);
        rpc();
        printf(
            "# Tsetattr(mode=0777) on symlink out: %s (host checks the target)\n",
            ename());
    }
    /* Names with a slash or dot-dot in create-type requests. */
    static const char *const bad_names[] = {
        "../escaped.txt", "sub/../../escaped.txt", "..", ".", "", NULL};
    for (int i = 0; bad_names[i] != NULL; i++) {
        uint32_t d = 0;
        walk(0, &d, (const char *const[]){NULL}, NULL); /* clone the root */
        begin(Tlcreate);
        p32(d);
        pstr(bad_names[i]);
        p32(01 | 0100);
        p32(0644);
        p32(0);
        r_ = rpc();
        check(r_ != Tlcreate + 1, "Tlcreate name '%s' refused (%s)",
              bad_names[i], ename());
        if (in_type != Tlcreate + 1) {
            clunk(d);
        }
        begin(Tmkdir);
        p32(0);
        pstr(bad_names[i]);
        p32(0755);
        p32(0);
        r_ = rpc();
        check(r_ != Tmkdir + 1, "Tmkdir name '%s' refused (%s)", bad_names[i],
              ename());
        begin(Trenameat);
        p32(0);
        pstr("inside.txt");
        p32(0);
        pstr(bad_names[i]);
        r_ = rpc();
        check(r_ != Trenameat + 1, "Trenameat to name '%s' refused (%s)",
              bad_names[i], ename());
    }
    check(strays == 0, "exactly one reply per request (%u stray replies)",
          strays);
    printf("# raw9p: %d failed\n", failures);
    return failures ? 1 : 0;
}
