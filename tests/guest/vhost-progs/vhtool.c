// SPDX-License-Identifier: MIT
/*
 * vhtool: small static helper for tests/guest/vhost.sh.  Busybox has no
 * xattr tools and no fcntl-lock tool; this fills the gap.  It runs in the
 * guest and, for lock-hold, on the host (the binary is static).
 *
 *   vhtool xattr-set FILE NAME VALUE
 *   vhtool xattr-get FILE NAME          prints the value
 *   vhtool xattr-list FILE              prints the names, one a line
 *   vhtool xattr-rm FILE NAME
 *   vhtool lock-hold FILE SECS READY    F_SETLK write lock on the whole file,
 *                                       creates READY, sleeps SECS (or until
 *                                       killed)
 *   vhtool lock-try FILE                F_SETLK write lock: prints "locked" or
 *                                       "busy" (EAGAIN/EACCES); exit 0 both
 *   vhtool lock-get FILE                F_GETLK for a write lock: prints
 *                                       "unlck" or "wrlck" / "rdlck"
 *   vhtool lock-local FILE              parent locks, a child process tries:
 *                                       prints "busy" then (after the parent
 *                                       unlocks) "locked"
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

static int
die(const char *what, const char *arg)
{
    fprintf(stderr, "vhtool: %s %s: %s\n", what, arg ? arg : "",
            strerror(errno));
    return 1;
}

static void
whole(struct flock *fl, short type)
{
    memset(fl, 0, sizeof(*fl));
    fl->l_type = type;
    fl->l_whence = SEEK_SET;
    fl->l_start = 0;
    fl->l_len = 0;
}

/* 0 locked, 1 busy, -1 error */
static int
try_lock(int fd)
{
    struct flock fl;
    whole(&fl, F_WRLCK);
    if (fcntl(fd, F_SETLK, &fl) == 0)
        return 0;
    if (errno == EAGAIN || errno == EACCES)
        return 1;
    return -1;
}

static int
unlock(int fd)
{
    struct flock fl;
    whole(&fl, F_UNLCK);
    return fcntl(fd, F_SETLK, &fl);
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: vhtool CMD FILE [ARGS]\n");
        return 2;
    }
    const char *cmd = argv[1], *file = argv[2];

    if (!strcmp(cmd, "xattr-set") && argc == 5) {
        if (setxattr(file, argv[3], argv[4], strlen(argv[4]), 0) < 0)
            return die("setxattr", file);
        return 0;
    }
    if (!strcmp(cmd, "xattr-get") && argc == 4) {
        char buf[4096];
        ssize_t n = getxattr(file, argv[3], buf, sizeof(buf));
        if (n < 0)
            return die("getxattr", file);
        fwrite(buf, 1, (size_t)n, stdout);
        putchar('\n');
        return 0;
    }
    if (!strcmp(cmd, "xattr-list") && argc == 3) {
        char buf[65536];
        ssize_t n = listxattr(file, buf, sizeof(buf));
        if (n < 0)
            return die("listxattr", file);
        for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
            puts(buf + i);
        return 0;
    }
    if (!strcmp(cmd, "xattr-rm") && argc == 4) {
        if (removexattr(file, argv[3]) < 0)
            return die("removexattr", file);
        return 0;
    }

    int fd = open(file, O_RDWR | O_CREAT, 0644);
    if (fd < 0)
        return die("open", file);

    if (!strcmp(cmd, "lock-hold") && argc == 5) {
        int r = try_lock(fd);
        if (r != 0)
            return r < 0 ? die("lock", file)
                         : (fprintf(stderr, "vhtool: %s busy\n", file), 1);
        int rf = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (rf < 0)
            return die("open", argv[4]);
        close(rf);
        sleep((unsigned)atoi(argv[3]));
        return 0;
    }
    if (!strcmp(cmd, "lock-try") && argc == 3) {
        int r = try_lock(fd);
        if (r < 0)
            return die("lock", file);
        puts(r ? "busy" : "locked");
        if (r == 0)
            unlock(fd);
        return 0;
    }
    if (!strcmp(cmd, "lock-get") && argc == 3) {
        struct flock fl;
        whole(&fl, F_WRLCK);
        if (fcntl(fd, F_GETLK, &fl) < 0)
            return die("F_GETLK", file);
        puts(fl.l_type == F_UNLCK   ? "unlck"
             : fl.l_type == F_WRLCK ? "wrlck"
                                    : "rdlck");
        return 0;
    }
    if (!strcmp(cmd, "lock-local") && argc == 3) {
        if (try_lock(fd) != 0)
            return die("lock", file);
        for (int round = 0; round < 2; round++) {
            if (round == 1)
                unlock(fd);
            fflush(stdout);
            pid_t pid = fork();
            if (pid < 0)
                return die("fork", "");
            if (pid == 0) {
                int cfd = open(file, O_RDWR);
                int r = cfd < 0 ? -1 : try_lock(cfd);
                puts(r == 1 ? "busy" : r == 0 ? "locked" : "error");
                fflush(stdout);
                _exit(0);
            }
            int st;
            waitpid(pid, &st, 0);
        }
        return 0;
    }
    fprintf(stderr, "vhtool: bad command %s\n", cmd);
    return 2;
}
