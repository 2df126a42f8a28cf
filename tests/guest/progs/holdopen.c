// SPDX-License-Identifier: MIT
/*
 * holdopen: guest side of tests/guest/scale.sh's rename check.
 *
 *   holdopen [-c] FILE EXPECT DIR NOPEN READY DONE
 *
 * Opens FILE and reads EXPECT from it, then opens NOPEN regular files found
 * in the subdirectories of DIR and reads a byte of each, keeping them all
 * open, so that a server with a small descriptor budget has to close FILE's
 * idle descriptor (the least recently used).  Then creates READY and waits
 * for DONE: meanwhile the host renames FILE and puts a different file under
 * its name.  FILE's descriptor must still give the original content, or an
 * error (ESTALE: the server could not find the same file again); it must
 * never give the new file's content.  With -c an error is a failure too
 * (the server has file handles, which follow a rename).  Last, every one of
 * the NOPEN files must still read.
 *
 * Prints "ok - ..." / "not ok - ..." lines; exit status 1 on any failure.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static int failed;

static void
result(int ok, const char *what, const char *detail)
{
    printf("%s - %s%s%s\n", ok ? "ok" : "not ok", what, detail[0] ? ": " : "",
           detail);
    if (!ok) {
        failed++;
    }
}

/* Opens up to *n regular files under DIR/<subdir>/, storing their fds. */
static int
open_many(const char *dir, int *fds, int want)
{
    DIR *top = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (top == NULL) {
        return 0;
    }
    while (n < want && (de = readdir(top)) != NULL) {
        char sub[4096];
        DIR *d;
        struct dirent *fe;

        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
        d = opendir(sub);
        if (d == NULL) {
            continue;
        }
        while (n < want && (fe = readdir(d)) != NULL) {
            char p[8192];
            char c;
            int fd;

            if (fe->d_name[0] == '.') {
                continue;
            }
            snprintf(p, sizeof(p), "%s/%s", sub, fe->d_name);
            fd = open(p, O_RDONLY);
            if (fd < 0) {
                continue;
            }
            /* a read makes the server open the file for I/O (Tlopen was
             * enough, but this also makes FILE the least recently used) */
            if (read(fd, &c, 1) < 0) {
                close(fd);
                continue;
            }
            fds[n++] = fd;
        }
        closedir(d);
    }
    closedir(top);
    return n;
}

int
main(int argc, char **argv)
{
    int need_content = 0;
    char buf[256];
    char detail[512];
    struct rlimit rl;
    struct stat st;
    int *fds;
    int nopen;
    int got;
    int fd;
    int bad = 0;
    ssize_t r;

    if (argc > 1 && strcmp(argv[1], "-c") == 0) {
        need_content = 1;
        argv++;
        argc--;
    }
    if (argc != 7) {
        fprintf(stderr,
                "usage: holdopen [-c] FILE EXPECT DIR NOPEN READY DONE\n");
        return 2;
    }
    const char *file = argv[1];
    const char *expect = argv[2];
    size_t elen = strlen(expect);
    nopen = atoi(argv[4]);
    if (nopen < 1 || elen >= sizeof(buf)) {
        return 2;
    }
    rl.rlim_cur = rl.rlim_max = (rlim_t)nopen + 64;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        perror("setrlimit");
    }

    fd = open(file, O_RDONLY);
    r = fd < 0 ? -1 : pread(fd, buf, elen, 0);
    result(r == (ssize_t)elen && memcmp(buf, expect, elen) == 0,
           "holdopen: the file reads before the host change", "");
    if (fd < 0) {
        return 1;
    }

    fds = calloc((size_t)nopen, sizeof(*fds));
    if (fds == NULL) {
        return 1;
    }
    got = open_many(argv[3], fds, nopen);
    snprintf(detail, sizeof(detail), "%d of %d", got, nopen);
    result(got == nopen, "holdopen: opened and read files while holding it",
           detail);

    int rfd = open(argv[5], O_CREAT | O_WRONLY, 0644);
    if (rfd >= 0) {
        close(rfd);
    }
    for (int i = 0; i < 1200 && stat(argv[6], &st) != 0; i++) {
        usleep(100000);
    }
    result(stat(argv[6], &st) == 0, "holdopen: the host changed the file", "");

    memset(buf, 0, sizeof(buf));
    r = pread(fd, buf, sizeof(buf) - 1, 0);
    if (r < 0) {
        snprintf(detail, sizeof(detail), "error %s", strerror(errno));
        result(!need_content && (errno == ESTALE || errno == EIO),
               "holdopen: held file after the host rename gives the renamed "
               "file or ESTALE",
               detail);
    } else {
        buf[r] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        snprintf(detail, sizeof(detail), "read '%s'", buf);
        result((size_t)r >= elen && memcmp(buf, expect, elen) == 0,
               "holdopen: held file after the host rename gives the renamed "
               "file or ESTALE",
               detail);
    }
    close(fd);

    for (int i = 0; i < got; i++) {
        char c;

        if (pread(fds[i], &c, 1, 0) != 1) {
            bad++;
        }
        close(fds[i]);
    }
    snprintf(detail, sizeof(detail), "%d of %d failed", bad, got);
    result(bad == 0, "holdopen: every held file still reads", detail);
    free(fds);
    return failed ? 1 : 0;
}
