/* SPDX-License-Identifier: MIT */
/*
 * vfstest: file-system checks that busybox cannot do, run inside the test
 * guest on a 9p mount (and a few helpers run on the host).  Each subcommand
 * prints "ok - ..." / "not ok - ..." lines and exits 1 if any failed.
 *
 *   vfstest lock DIR              POSIX and OFD lock conflicts, two processes
 *   vfstest lock-held FILE        FILE is locked by a host process: expect conflict
 *   vfstest lock-hold FILE READY  (host) hold a write lock on FILE, touch READY, sleep
 *   vfstest xattr FILE            user.* xattr set/get/list/remove
 *   vfstest acl FILE UID          system.posix_acl_access raw xattr set/get
 *   vfstest tmpfile DIR           O_TMPFILE (unsupported: reported, not failed)
 *   vfstest mmap FILE             shared writable mmap, msync, read back
 *   vfstest mmap-read FILE        read-only mmap of an existing file vs read()
 *   vfstest rename-race DIR       concurrent renames
 *   vfstest unlink-open DIR       open, unlink, ftruncate, fstat, read/write
 *   vfstest sparse FILE GIB       1 byte at GIB GiB, holes read as zeros
 *   vfstest readdir DIR N         DIR has exactly N entries f000000..: count
 *   vfstest mkfiles DIR N         (host) create f000000.. f<N-1> empty files
 *   vfstest statfs PATH           print "statfs bsize blocks files" for PATH
 *   vfstest rofs DIR FILE         every mutating call fails with EROFS
 *   vfstest vsock-relay PORTNAME VPORT
 *                                 (guest) listen on vsock port VPORT (loopback,
 *                                 CID 1), accept one connection and relay it to
 *                                 the virtio-serial port PORTNAME, in the
 *                                 background: lets virtfs-mount --vsock be
 *                                 tested without a host vsock device
 *
 * Static build: gcc -static -O2 -o vfstest vfstest.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

/* Test paths are short; truncation warnings for 4 KiB buffers are noise. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static int failures;

__attribute__((format(printf, 2, 3))) static bool
check(bool cond, const char *fmt, ...)
{
    va_list ap;
    printf("%sok - ", cond ? "" : "not ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!cond) {
        failures++;
    }
    return cond;
}

__attribute__((format(printf, 1, 2))) static void
skip(const char *fmt, ...)
{
    va_list ap;
    printf("ok - ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static const char *
en(int e)
{
    static char buf[64];
    const char *n = strerrorname_np(e);
    snprintf(buf, sizeof(buf), "%s", n ? n : "?");
    return buf;
}

static void
path_join(char *out, size_t len, const char *a, const char *b)
{
    snprintf(out, len, "%s/%s", a, b);
}

static int
write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int
put_file(const char *path, const char *content)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return -1;
    }
    int rc = write_all(fd, content, strlen(content));
    close(fd);
    return rc;
}

static ssize_t
get_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n >= 0) {
        buf[n] = '\0';
    }
    return n;
}

static int
set_lock(int fd, int cmd, short type)
{
    struct flock fl = {
        .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    return fcntl(fd, cmd, &fl);
}

/* --- locks ----------------------------------------------------------------- */

/* Child: try a lock of the given kind; report 0 ok, else errno. */
static int
try_lock_in_child(const char *path, int cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_RDWR);
        if (fd < 0) {
            _exit(200);
        }
        int rc = set_lock(fd, cmd, F_WRLCK);
        _exit(rc == 0 ? 0 : (errno & 0x7f));
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

static int
cmd_lock(const char *dir)
{
    char path[4096];
    path_join(path, sizeof(path), dir, "lockfile");
    if (!check(put_file(path, "lock test\n") == 0, "lock: create %s", path)) {
        return 1;
    }
    static const struct {
        const char *name;
        int cmd;
    } kinds[] = {{"POSIX (F_SETLK)", F_SETLK},
                 {"OFD (F_OFD_SETLK)", F_OFD_SETLK}};
    for (size_t i = 0; i < 2; i++) {
        int fd = open(path, O_RDWR);
        int rc = set_lock(fd, kinds[i].cmd, F_WRLCK);
        if (!check(fd >= 0 && rc == 0, "lock: %s write lock taken (%s)",
                   kinds[i].name, rc ? en(errno) : "0")) {
            if (fd >= 0) {
                close(fd);
            }
            continue;
        }
        for (size_t j = 0; j < 2; j++) {
            int r = try_lock_in_child(path, kinds[j].cmd);
            check(r == EAGAIN || r == EACCES,
                  "lock: second process %s conflicts with held %s (got %s)",
                  kinds[j].name, kinds[i].name, r == 0 ? "success" : en(r));
        }
        /* F_GETLK from another process sees the lock. */
        pid_t pid = fork();
        if (pid == 0) {
            int f2 = open(path, O_RDWR);
            struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
            int r = fcntl(f2, F_GETLK, &fl);
            _exit(r == 0 && fl.l_type != F_UNLCK ? 0 : 1);
        }
        int st;
        waitpid(pid, &st, 0);
        check(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "lock: F_GETLK in another process reports the %s lock",
              kinds[i].name);
        set_lock(fd, kinds[i].cmd, F_UNLCK);
        int r = try_lock_in_child(path, kinds[i].cmd);
        check(r == 0, "lock: %s lock free after unlock (got %s)", kinds[i].name,
              r == 0 ? "success" : en(r));
        close(fd);
    }
    /* Shared read locks coexist. */
    int fa = open(path, O_RDWR);
    int ra = set_lock(fa, F_OFD_SETLK, F_RDLCK);
    int fb = open(path, O_RDWR);
    int rb = set_lock(fb, F_OFD_SETLK, F_RDLCK);
    check(ra == 0 && rb == 0, "lock: two OFD read locks coexist");
    close(fa);
    close(fb);
    return failures ? 1 : 0;
}

static int
cmd_lock_held(const char *path)
{
    int fd = open(path, O_RDWR);
    if (!check(fd >= 0, "host lock: open %s (%s)", path,
               fd < 0 ? en(errno) : "0")) {
        return 1;
    }
    int rc = set_lock(fd, F_SETLK, F_WRLCK);
    int e = errno;
    check(
        rc < 0 && (e == EAGAIN || e == EACCES),
        "host lock: guest POSIX F_SETLK conflicts with the host's lock (got %s)",
        rc == 0 ? "success" : en(e));
    if (rc == 0) {
        set_lock(fd, F_SETLK, F_UNLCK);
    }
    rc = set_lock(fd, F_OFD_SETLK, F_WRLCK);
    e = errno;
    check(
        rc < 0 && (e == EAGAIN || e == EACCES),
        "host lock: guest OFD F_OFD_SETLK conflicts with the host's lock (got %s)",
        rc == 0 ? "success" : en(e));
    if (rc == 0) {
        set_lock(fd, F_OFD_SETLK, F_UNLCK);
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    rc = fcntl(fd, F_GETLK, &fl);
    check(rc == 0 && fl.l_type == F_WRLCK,
          "host lock: guest F_GETLK sees the host's write lock (%s)",
          rc                     ? en(errno)
          : fl.l_type == F_UNLCK ? "F_UNLCK"
                                 : "locked");
    close(fd);
    return failures ? 1 : 0;
}

static int
cmd_lock_hold(const char *path, const char *ready)
{
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || set_lock(fd, F_SETLKW, F_WRLCK) != 0) {
        perror(path);
        return 1;
    }
    if (put_file(ready, "locked\n") != 0) {
        perror(ready);
        return 1;
    }
    for (;;) {
        pause();
    }
}

/* --- xattr / ACL ------------------------------------------------------------ */

static int
cmd_xattr(const char *path)
{
    const char *name = "user.virtfs.test", *val = "hello xattr \x01\x02 value";
    size_t vlen = strlen(val);
    if (access(path, F_OK) != 0) {
        put_file(path, "xattr\n");
    }
    int rc = setxattr(path, name, val, vlen, 0);
    if (!check(rc == 0, "xattr: setxattr %s (%s)", name,
               rc ? en(errno) : "0")) {
        return 1;
    }
    char buf[256];
    ssize_t n = getxattr(path, name, buf, sizeof(buf));
    check(n == (ssize_t)vlen && memcmp(buf, val, vlen) == 0,
          "xattr: getxattr returns the value (%zd bytes)", n);
    n = getxattr(path, name, NULL, 0);
    check(n == (ssize_t)vlen, "xattr: getxattr size query (%zd)", n);
    char list[4096];
    n = listxattr(path, list, sizeof(list));
    bool found = false;
    for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(list + i) + 1) {
        if (strcmp(list + i, name) == 0) {
            found = true;
        }
    }
    check(found, "xattr: listxattr lists %s", name);
    rc = setxattr(path, name, "x", 1, XATTR_CREATE);
    check(rc < 0 && errno == EEXIST,
          "xattr: XATTR_CREATE on existing name fails EEXIST (%s)",
          rc ? en(errno) : "success");
    rc = setxattr(path, "user.virtfs.keep", "kept", 4, 0);
    check(rc == 0, "xattr: second attribute user.virtfs.keep (%s)",
          rc ? en(errno) : "0");
    rc = removexattr(path, name);
    check(rc == 0, "xattr: removexattr (%s)", rc ? en(errno) : "0");
    n = getxattr(path, name, buf, sizeof(buf));
    check(n < 0 && errno == ENODATA, "xattr: removed attribute is gone (%s)",
          n < 0 ? en(errno) : "present");
    return failures ? 1 : 0;
}

/* Linux's POSIX ACL xattr format (linux/posix_acl_xattr.h). */
struct acl_hdr {
    uint32_t version;
};
struct acl_ent {
    uint16_t tag, perm;
    uint32_t id;
};

static int
cmd_acl(const char *path, const char *uidstr)
{
    uint32_t uid = (uint32_t)strtoul(uidstr, NULL, 10);
    if (access(path, F_OK) != 0) {
        put_file(path, "acl\n");
    }
    struct {
        struct acl_hdr h;
        struct acl_ent e[5];
    } __attribute__((packed)) acl = {
        .h = {2},
        .e =
            {
                {0x01, 6, 0xffffffffu}, /* USER_OBJ rw- */
                {0x02, 4, uid},         /* USER uid r-- */
                {0x04, 4, 0xffffffffu}, /* GROUP_OBJ r-- */
                {0x10, 4, 0xffffffffu}, /* MASK r-- */
                {0x20, 0, 0xffffffffu}, /* OTHER --- */
            },
    };
    int rc = setxattr(path, "system.posix_acl_access", &acl, sizeof(acl), 0);
    if (!check(rc == 0, "acl: set system.posix_acl_access (%s)",
               rc ? en(errno) : "0")) {
        return 1;
    }
    char buf[256];
    ssize_t n = getxattr(path, "system.posix_acl_access", buf, sizeof(buf));
    int e = errno;
    check(n == (ssize_t)sizeof(acl) && memcmp(buf, &acl, sizeof(acl)) == 0,
          "acl: system.posix_acl_access reads back identical (%zd bytes%s%s)",
          n, n < 0 ? ", " : "", n < 0 ? en(e) : "");
    struct stat st;
    stat(path, &st);
    check((st.st_mode & 0777) == 0640,
          "acl: mode follows the ACL (0%o, want 0640)", st.st_mode & 0777);
    return failures ? 1 : 0;
}

/* --- O_TMPFILE ---------------------------------------------------------------- */

static int
cmd_tmpfile(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    if (fd < 0) {
        int e = errno;
        if (e == EOPNOTSUPP || e == EISDIR || e == EINVAL || e == ENOSYS) {
            skip("tmpfile: O_TMPFILE # SKIP not supported by this client (%s)",
                 en(e));
            return 0;
        }
        check(false, "tmpfile: O_TMPFILE failed unexpectedly (%s)", en(e));
        return 1;
    }
    check(write_all(fd, "tmp data", 8) == 0, "tmpfile: write to O_TMPFILE");
    char buf[16] = {0};
    check(pread(fd, buf, 8, 0) == 8 && memcmp(buf, "tmp data", 8) == 0,
          "tmpfile: read back");
    char proc[64], dst[4096];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    path_join(dst, sizeof(dst), dir, "tmpfile-linked");
    int rc = linkat(AT_FDCWD, proc, AT_FDCWD, dst, AT_SYMLINK_FOLLOW);
    if (rc == 0) {
        check(get_file(dst, buf, sizeof(buf)) == 8,
              "tmpfile: linkat made it visible");
    } else {
        skip("tmpfile: linkat of O_TMPFILE # SKIP %s", en(errno));
    }
    close(fd);
    return failures ? 1 : 0;
}

/* --- mmap ------------------------------------------------------------------- */

static int
cmd_mmap(const char *path)
{
    const size_t len = 1u << 20;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (!check(fd >= 0 && ftruncate(fd, (off_t)len) == 0,
               "mmap: create %s 1 MiB", path)) {
        return 1;
    }
    unsigned char *m =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        check(false, "mmap: MAP_SHARED PROT_WRITE (%s)", en(e));
        close(fd);
        return 1;
    }
    for (size_t i = 0; i < len; i++) {
        m[i] = (unsigned char)(i * 7 + 3);
    }
    check(msync(m, len, MS_SYNC) == 0, "mmap: msync");
    munmap(m, len);
    close(fd);
    fd = open(path, O_RDONLY);
    unsigned char *buf = malloc(len);
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    bool same = got == len;
    for (size_t i = 0; same && i < len; i++) {
        same = buf[i] == (unsigned char)(i * 7 + 3);
    }
    check(
        same,
        "mmap: data written through the mapping reads back with read() (%zu bytes)",
        got);
    close(fd);
    free(buf);
    return failures ? 1 : 0;
}

static int
cmd_mmap_read(const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (!check(fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0,
               "mmap-read: open %s", path)) {
        return 1;
    }
    size_t len = (size_t)st.st_size;
    unsigned char *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (!check(m != MAP_FAILED, "mmap-read: PROT_READ MAP_SHARED (%s)",
               m == MAP_FAILED ? en(errno) : "0")) {
        return 1;
    }
    unsigned char *buf = malloc(len);
    ssize_t n = pread(fd, buf, len, 0);
    check(n == (ssize_t)len && memcmp(buf, m, len) == 0,
          "mmap-read: mapping equals read() (%zu bytes)", len);
    /* MAP_PRIVATE writes stay private. */
    unsigned char *p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (check(p != MAP_FAILED, "mmap-read: MAP_PRIVATE PROT_WRITE")) {
        p[0] ^= 0xff;
        n = pread(fd, buf, 1, 0);
        check(n == 1 && buf[0] == m[0],
              "mmap-read: private write not visible in the file");
        munmap(p, len);
    }
    munmap(m, len);
    free(buf);
    close(fd);
    return failures ? 1 : 0;
}

/* --- rename races ------------------------------------------------------------- */

static int
cmd_rename_race(const char *dir)
{
    char base[4096], a[4096], b[4096];
    path_join(base, sizeof(base), dir, "race");
    mkdir(base, 0755);
    path_join(a, sizeof(a), base, "a");
    path_join(b, sizeof(b), base, "b");
    mkdir(a, 0755);
    mkdir(b, 0755);
    enum { WORKERS = 4, ROUNDS = 150 };
    pid_t pids[WORKERS + 1];
    /* Workers 0,1: ping-pong own file between dirs a and b.
     * Workers 2,3: rename own fresh file onto the shared target a/T. */
    for (int w = 0; w < WORKERS; w++) {
        pids[w] = fork();
        if (pids[w] == 0) {
            char p1[4200], p2[4200], content[32];
            int bad = 0;
            snprintf(content, sizeof(content), "worker %d\n", w);
            for (int i = 0; i < ROUNDS; i++) {
                if (w < 2) {
                    snprintf(p1, sizeof(p1), "%s/f%d", a, w);
                    snprintf(p2, sizeof(p2), "%s/f%d", b, w);
                    if (i == 0 && put_file(p1, content) != 0) {
                        bad++;
                    }
                    if (rename(p1, p2) != 0 || rename(p2, p1) != 0) {
                        bad++;
                    }
                } else {
                    snprintf(p1, sizeof(p1), "%s/src%d", b, w);
                    snprintf(p2, sizeof(p2), "%s/T", a);
                    if (put_file(p1, content) != 0 || rename(p1, p2) != 0) {
                        bad++;
                    }
                }
            }
            _exit(bad > 255 ? 255 : bad);
        }
    }
    /* Reader: lists both dirs and opens what it sees; ENOENT is fine. */
    pids[WORKERS] = fork();
    if (pids[WORKERS] == 0) {
        int bad = 0;
        for (int i = 0; i < ROUNDS; i++) {
            DIR *d = opendir(a);
            if (d == NULL) {
                bad++;
                continue;
            }
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                char p[4400];
                snprintf(p, sizeof(p), "%s/%s", a, e->d_name);
                int fd = open(p, O_RDONLY);
                if (fd < 0 && errno != ENOENT) {
                    bad++;
                }
                if (fd >= 0) {
                    close(fd);
                }
            }
            closedir(d);
        }
        _exit(bad > 255 ? 255 : bad);
    }
    int errs = 0;
    for (int w = 0; w <= WORKERS; w++) {
        int st;
        waitpid(pids[w], &st, 0);
        errs += WIFEXITED(st) ? WEXITSTATUS(st) : 1000;
    }
    check(errs == 0,
          "rename-race: %d processes x %d renames, no unexpected errors (%d)",
          WORKERS + 1, ROUNDS, errs);
    char buf[64], p[4200];
    bool ok = true;
    for (int w = 0; w < 2; w++) {
        snprintf(p, sizeof(p), "%s/f%d", a, w);
        char want[32];
        snprintf(want, sizeof(want), "worker %d\n", w);
        ok = ok && get_file(p, buf, sizeof(buf)) > 0 && strcmp(buf, want) == 0;
        snprintf(p, sizeof(p), "%s/f%d", b, w);
        ok = ok && access(p, F_OK) != 0;
    }
    check(ok, "rename-race: ping-pong files ended in place with their content");
    snprintf(p, sizeof(p), "%s/T", a);
    ok = get_file(p, buf, sizeof(buf)) > 0 &&
         (strcmp(buf, "worker 2\n") == 0 || strcmp(buf, "worker 3\n") == 0);
    check(ok, "rename-race: shared target holds one worker's complete content");
    int count = 0;
    DIR *d = opendir(b);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            count++;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    check(count == 0, "rename-race: source dir empty at the end (%d left)",
          count);
    return failures ? 1 : 0;
}

/* --- open, unlink, ftruncate ------------------------------------------------- */

static int
cmd_unlink_open(const char *dir)
{
    char path[4096];
    path_join(path, sizeof(path), dir, "unlinked-open");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (!check(fd >= 0, "unlink-open: create (%s)", fd < 0 ? en(errno) : "0")) {
        return 1;
    }
    char block[4096];
    memset(block, 'u', sizeof(block));
    check(write_all(fd, block, sizeof(block)) == 0,
          "unlink-open: write 4096 bytes");
    check(unlink(path) == 0, "unlink-open: unlink while open");
    check(access(path, F_OK) != 0 && errno == ENOENT,
          "unlink-open: name is gone");
    int rc = ftruncate(fd, 100);
    check(rc == 0, "unlink-open: ftruncate(100) after unlink (%s)",
          rc ? en(errno) : "0");
    struct stat st;
    rc = fstat(fd, &st);
    check(rc == 0 && st.st_size == 100,
          "unlink-open: fstat after unlink: size %lld (want 100, %s)",
          rc ? -1LL : (long long)st.st_size, rc ? en(errno) : "0");
    check(rc == 0 && st.st_nlink == 0,
          "unlink-open: fstat after unlink: nlink %lu (want 0)",
          rc ? 99UL : (unsigned long)st.st_nlink);
    ssize_t w = pwrite(fd, "tail", 4, 200);
    check(w == 4, "unlink-open: pwrite after unlink (%s)",
          w == 4 ? "0" : en(errno));
    char buf[8] = {0};
    ssize_t r = pread(fd, buf, 4, 200);
    check(r == 4 && memcmp(buf, "tail", 4) == 0,
          "unlink-open: pread after unlink");
    r = pread(fd, buf, 4, 150);
    check(r == 4 && memcmp(buf, "\0\0\0\0", 4) == 0,
          "unlink-open: gap after ftruncate reads zeros");
    rc = fchmod(fd, 0600);
    check(rc == 0, "unlink-open: fchmod after unlink (%s)",
          rc ? en(errno) : "0");
    close(fd);
    return failures ? 1 : 0;
}

/* --- sparse file -------------------------------------------------------------- */

static int
cmd_sparse(const char *path, const char *gib)
{
    off_t off = (off_t)strtoll(gib, NULL, 10) << 30;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (!check(fd >= 0, "sparse: create (%s)", fd < 0 ? en(errno) : "0")) {
        return 1;
    }
    ssize_t w = pwrite(fd, "Z", 1, off);
    check(w == 1, "sparse: write 1 byte at %s GiB (%s)", gib,
          w == 1 ? "0" : en(errno));
    w = pwrite(fd, "A", 1, 4096 * 3);
    struct stat st;
    fstat(fd, &st);
    check(st.st_size == off + 1, "sparse: size %lld (want %lld)",
          (long long)st.st_size, (long long)off + 1);
    check(st.st_blocks * 512 < (1 << 24), "sparse: allocated %lld KiB only",
          (long long)st.st_blocks / 2);
    char buf[8192];
    memset(buf, 'x', sizeof(buf));
    ssize_t r = pread(fd, buf, sizeof(buf), off - 8192);
    bool zeros = r == (ssize_t)sizeof(buf);
    for (size_t i = 0; zeros && i < sizeof(buf); i++) {
        zeros = buf[i] == 0;
    }
    check(zeros, "sparse: hole before the last byte reads as zeros");
    r = pread(fd, buf, 2, off);
    check(r == 1 && buf[0] == 'Z',
          "sparse: last byte reads back, then EOF (%zd)", r);
    r = pread(fd, buf, 1, 4096 * 3);
    check(r == 1 && buf[0] == 'A', "sparse: byte in the first MiB reads back");
    close(fd);
    return failures ? 1 : 0;
}

/* --- big directories ---------------------------------------------------------- */

static int
cmd_mkfiles(const char *dir, const char *nstr)
{
    long n = strtol(nstr, NULL, 10);
    mkdir(dir, 0755);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0) {
        perror(dir);
        return 1;
    }
    for (long i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%06ld", i);
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            perror(name);
            return 1;
        }
        close(fd);
    }
    close(dfd);
    return 0;
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static int
cmd_readdir(const char *dir, const char *nstr)
{
    long n = strtol(nstr, NULL, 10);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (!check(fd >= 0, "readdir: open %s (%s)", dir,
               fd < 0 ? en(errno) : "0")) {
        return 1;
    }
    unsigned char *seen = calloc((size_t)n, 1);
    static char buf[1 << 16];
    long total = 0, dups = 0, strays = 0, calls = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        long r = syscall(SYS_getdents64, fd, buf, sizeof(buf));
        if (r < 0) {
            check(false, "readdir: getdents64 (%s) after %ld entries",
                  en(errno), total);
            return 1;
        }
        if (r == 0) {
            break;
        }
        calls++;
        for (long off = 0; off < r;) {
            struct linux_dirent64 *d = (void *)(buf + off);
            off += d->d_reclen;
            if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) {
                continue;
            }
            total++;
            char *end;
            long i = d->d_name[0] == 'f' ? strtol(d->d_name + 1, &end, 10) : -1;
            if (i < 0 || i >= n || *end != '\0') {
                strays++;
            } else if (seen[i]++) {
                dups++;
            }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long missing = 0;
    for (long i = 0; i < n; i++) {
        missing += !seen[i];
    }
    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    check(
        total == n && dups == 0 && strays == 0 && missing == 0,
        "readdir: %ld entries listed completely (got %ld, %ld missing, %ld duplicates, %ld "
        "strays; %ld getdents64 calls, %.1f s)",
        n, total, missing, dups, strays, calls, secs);
    free(seen);
    close(fd);
    return failures ? 1 : 0;
}

static int
cmd_statfs(const char *path)
{
    struct statfs s;
    if (statfs(path, &s) != 0) {
        perror(path);
        return 1;
    }
    unsigned long long total =
        (unsigned long long)s.f_blocks * (unsigned long long)s.f_bsize;
    printf("statfs type=0x%lx bsize=%lu blocks=%llu total=%llu files=%llu\n",
           (unsigned long)s.f_type, (unsigned long)s.f_bsize,
           (unsigned long long)s.f_blocks, total,
           (unsigned long long)s.f_files);
    return 0;
}

/* --- read-only export ------------------------------------------------------- */

static void
expect_erofs(int rc, int e, const char *what)
{
    check(rc < 0 && e == EROFS, "ro: %s fails with EROFS (got %s)", what,
          rc >= 0 ? "success" : en(e));
}

static int
cmd_rofs(const char *dir, const char *file)
{
    char p[4096], q[4096];
    int rc, e;
#define TRY(expr, what)            \
    do {                           \
        errno = 0;                 \
        rc = (expr);               \
        e = errno;                 \
        expect_erofs(rc, e, what); \
    } while (0)
    path_join(p, sizeof(p), dir, "new-file");
    TRY(open(p, O_WRONLY | O_CREAT, 0644), "create file");
    if (rc >= 0) {
        close(rc);
    }
    TRY(open(file, O_WRONLY), "open existing file for writing");
    if (rc >= 0) {
        close(rc);
    }
    TRY(open(file, O_RDWR | O_TRUNC), "open with O_TRUNC");
    if (rc >= 0) {
        close(rc);
    }
    TRY(truncate(file, 1), "truncate");
    path_join(p, sizeof(p), dir, "new-dir");
    TRY(mkdir(p, 0755), "mkdir");
    TRY(unlink(file), "unlink");
    path_join(q, sizeof(q), dir, "renamed");
    TRY(rename(file, q), "rename");
    TRY(chmod(file, 0600), "chmod");
    TRY(chown(file, 1, 1), "chown");
    struct timespec ts[2] = {{1, 0}, {1, 0}};
    TRY(utimensat(AT_FDCWD, file, ts, 0), "utimensat");
    path_join(p, sizeof(p), dir, "new-symlink");
    TRY(symlink("target", p), "symlink");
    path_join(p, sizeof(p), dir, "new-link");
    TRY(link(file, p), "hard link");
    path_join(p, sizeof(p), dir, "new-fifo");
    TRY(mknod(p, S_IFIFO | 0644, 0), "mknod fifo");
    TRY(setxattr(file, "user.virtfs.ro", "x", 1, 0), "setxattr");
    TRY(removexattr(file, "user.virtfs.ro"), "removexattr");
    /* rmdir of an existing (empty or not) subdirectory */
    path_join(p, sizeof(p), dir, "subdir");
    if (access(p, F_OK) == 0) {
        TRY(rmdir(p), "rmdir");
    }
    int fd = open(file, O_RDONLY);
    char buf[16];
    check(fd >= 0 && read(fd, buf, sizeof(buf)) > 0, "ro: reading still works");
    if (fd >= 0) {
        close(fd);
    }
#undef TRY
    return failures ? 1 : 0;
}

/* --- vsock loopback relay -------------------------------------------------- */

static int
find_vport(const char *name, char *dev, size_t len)
{
    for (int tries = 0; tries < 500; tries++) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            char p[600], buf[256];
            snprintf(p, sizeof(p), "/sys/class/virtio-ports/%s/name",
                     e->d_name);
            if (get_file(p, buf, sizeof(buf)) > 0) {
                buf[strcspn(buf, "\n")] = '\0';
                if (strcmp(buf, name) == 0) {
                    snprintf(dev, len, "/dev/%s", e->d_name);
                    closedir(d);
                    return 0;
                }
            }
        }
        if (d != NULL) {
            closedir(d);
        }
        usleep(20000);
    }
    return -1;
}

static void
relay_fds(int a, int b)
{
    static char buf[2][65536];
    size_t len[2] = {0, 0}, off[2] = {0, 0};
    int fds[2] = {a, b};
    for (;;) {
        struct pollfd p[2];
        for (int i = 0; i < 2; i++) {
            /* direction i: fds[i] -> fds[1 - i] */
            p[i].fd = fds[i];
            p[i].events =
                (len[i] == 0 ? POLLIN : 0) | (len[1 - i] > 0 ? POLLOUT : 0);
        }
        if (poll(p, 2, -1) < 0 && errno != EINTR) {
            return;
        }
        for (int i = 0; i < 2; i++) {
            if (len[i] == 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                ssize_t r = read(fds[i], buf[i], sizeof(buf[i]));
                if (r == 0 && i == 1) {
                    return; /* 9p client closed the vsock connection */
                }
                if (r > 0) {
                    len[i] = (size_t)r;
                    off[i] = 0;
                } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
                    return;
                } else if (r == 0) {
                    usleep(10000); /* vport: host not connected yet */
                }
            }
            if (len[i] > 0) {
                ssize_t w = write(fds[1 - i], buf[i] + off[i], len[i]);
                if (w > 0) {
                    off[i] += (size_t)w;
                    len[i] -= (size_t)w;
                } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    return;
                }
            }
        }
    }
}

static int
cmd_vsock_relay(const char *portname, const char *vport)
{
    char dev[300];
    if (find_vport(portname, dev, sizeof(dev)) != 0) {
        fprintf(stderr, "vsock-relay: port %s not found\n", portname);
        return 1;
    }
    int port = open(dev, O_RDWR | O_NONBLOCK);
    int ls = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm sa = {.svm_family = AF_VSOCK,
                             .svm_cid = VMADDR_CID_ANY,
                             .svm_port = (unsigned)strtoul(vport, NULL, 10)};
    if (port < 0 || ls < 0 ||
        bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(ls, 1) != 0) {
        fprintf(stderr, "vsock-relay: %s\n", strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid != 0) {
        return pid < 0;
    }
    setsid();
    int c = accept(ls, NULL, NULL);
    close(ls);
    if (c >= 0) {
        fcntl(c, F_SETFL, O_NONBLOCK);
        relay_fds(port, c);
    }
    _exit(0);
}

int
main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) {
        fprintf(stderr, "usage: vfstest CMD ARGS... (see the source)\n");
        return 2;
    }
    const char *c = argv[1];
#define NEED(n)                                                        \
    do {                                                               \
        if (argc < (n) + 2) {                                          \
            fprintf(stderr, "vfstest %s: needs %d arguments\n", c, n); \
            return 2;                                                  \
        }                                                              \
    } while (0)
    if (!strcmp(c, "lock"))
        return cmd_lock(argv[2]);
    if (!strcmp(c, "lock-held"))
        return cmd_lock_held(argv[2]);
    if (!strcmp(c, "lock-hold")) {
        NEED(2);
        return cmd_lock_hold(argv[2], argv[3]);
    }
    if (!strcmp(c, "xattr"))
        return cmd_xattr(argv[2]);
    if (!strcmp(c, "acl")) {
        NEED(2);
        return cmd_acl(argv[2], argv[3]);
    }
    if (!strcmp(c, "tmpfile"))
        return cmd_tmpfile(argv[2]);
    if (!strcmp(c, "mmap"))
        return cmd_mmap(argv[2]);
    if (!strcmp(c, "mmap-read"))
        return cmd_mmap_read(argv[2]);
    if (!strcmp(c, "rename-race"))
        return cmd_rename_race(argv[2]);
    if (!strcmp(c, "unlink-open"))
        return cmd_unlink_open(argv[2]);
    if (!strcmp(c, "sparse")) {
        NEED(2);
        return cmd_sparse(argv[2], argv[3]);
    }
    if (!strcmp(c, "mkfiles")) {
        NEED(2);
        return cmd_mkfiles(argv[2], argv[3]);
    }
    if (!strcmp(c, "readdir")) {
        NEED(2);
        return cmd_readdir(argv[2], argv[3]);
    }
    if (!strcmp(c, "statfs"))
        return cmd_statfs(argv[2]);
    if (!strcmp(c, "rofs")) {
        NEED(2);
        return cmd_rofs(argv[2], argv[3]);
    }
    if (!strcmp(c, "vsock-relay")) {
        NEED(2);
        return cmd_vsock_relay(argv[2], argv[3]);
    }
    fprintf(stderr, "vfstest: unknown command %s\n", c);
    return 2;
}
