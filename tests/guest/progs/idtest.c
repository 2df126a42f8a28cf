/* SPDX-License-Identifier: MIT */
/*
 * idtest: multi-user POSIX semantics, run in a guest (static, as root).
 *
 *   idtest run DIR            run every scenario in DIR (empty, made by
 *                             root) and print one "step result" line each
 *   idtest create PATH MODE   open(O_CREAT|O_EXCL) with octal MODE, umask 0
 *   idtest compare REF DIR    run in REF (the guest's own tmpfs) and in DIR
 *                             (the 9p mount); print "ok - id: step" when
 *                             both agree, "not ok - ..." with both results
 *                             when they differ
 *
 * Each scenario runs in a child with its own uid, gid and supplementary
 * groups (setgroups/setgid/setuid), as a guest process would: several
 * users, a user with a supplementary group, newgrp (setgid to that group),
 * a set-gid directory, access through a supplementary group, chgrp,
 * set-id bits and a non-owner writer, privileged xattrs, sticky
 * directories and times.  The local file system is the reference.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define G_SGID 500  /* group of the set-gid directory (u1 not in it) */
#define G_SUPP 501  /* u1's supplementary group */
#define G_OTHER 502 /* nobody's group */
#define U1 1001
#define U2 1002

static const char *dir;

static const char *
ename(int e)
{
    static char buf[16];

    switch (e) {
    case 0: return "OK";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case ENODATA: return "ENODATA";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EROFS: return "EROFS";
    case EISDIR: return "EISDIR";
    case ENOTDIR: return "ENOTDIR";
    default: snprintf(buf, sizeof(buf), "E%d", e); return buf;
    }
}

static const char *
p(const char *fmt, ...)
{
    static char bufs[4][512];
    static int i;
    char rel[256];
    va_list ap;

    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started above */
    vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    i = (i + 1) % 4;
    snprintf(bufs[i], sizeof(bufs[i]), "%s/%s", dir, rel);
    return bufs[i];
}

static void
res(const char *step, int rc)
{
    printf("%s %s\n", step, ename(rc < 0 ? errno : 0));
}

static void
st(const char *step, const char *path)
{
    struct stat s;

    if (lstat(path, &s) < 0) {
        printf("%s stat:%s\n", step, ename(errno));
        return;
    }
    /* Symlink modes are always 0777 on Linux; keep them anyway. */
    printf("%s mode=%o uid=%u gid=%u\n", step, (unsigned)(s.st_mode & 07777),
           (unsigned)s.st_uid, (unsigned)s.st_gid);
}

static int
mkfile(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);

    if (fd < 0) {
        return -1;
    }
    close(fd);
    return 0;
}

static int
put(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ssize_t n;

    if (fd < 0) {
        return -1;
    }
    n = write(fd, s, strlen(s));
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* Write 'data' at offset 0 of an existing file (no O_TRUNC). */
static int
overwrite(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY);
    ssize_t n;

    if (fd < 0) {
        return -1;
    }
    n = pwrite(fd, data, strlen(data), 0);
    close(fd);
    return n < 0 ? -1 : 0;
}

static int
readable(const char *path, int flags)
{
    char buf[64];
    int fd = open(path, flags);

    if (fd < 0) {
        return -1;
    }
    if (read(fd, buf, sizeof(buf)) < 0) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

static void
creations(const char *tag, const char *d)
{
    char step[96];

    snprintf(step, sizeof(step), "%s.file", tag);
    res(step, mkfile(p("%s/%s-f", d, tag), 02755));
    st(step, p("%s/%s-f", d, tag));
    snprintf(step, sizeof(step), "%s.dir", tag);
    res(step, mkdir(p("%s/%s-d", d, tag), 0755));
    st(step, p("%s/%s-d", d, tag));
    snprintf(step, sizeof(step), "%s.fifo", tag);
    res(step, mkfifo(p("%s/%s-p", d, tag), 0644));
    st(step, p("%s/%s-p", d, tag));
    snprintf(step, sizeof(step), "%s.symlink", tag);
    res(step, symlink("target", p("%s/%s-l", d, tag)));
    st(step, p("%s/%s-l", d, tag));
}

/* ---- scenarios ----------------------------------------------------------- */

static void
u1_main(void)
{
    struct timespec ts[2] = {{.tv_sec = 1000000, .tv_nsec = 0},
                             {.tv_sec = 1000000, .tv_nsec = 0}};
    struct timespec now[2] = {{.tv_nsec = UTIME_NOW}, {.tv_nsec = UTIME_NOW}};
    /* cap_setuid=ep, v2 */
    static const unsigned char cap[20] = {0x01, 0x00, 0x00, 0x02, 0x80};

    creations("u1", "w");
    res("u1.chgrp-supp", chown(p("w/u1-f"), (uid_t)-1, G_SUPP));
    st("u1.chgrp-supp", p("w/u1-f"));
    res("u1.chgrp-nonmember", chown(p("w/u1-f"), (uid_t)-1, G_OTHER));
    res("u1.chown-away", chown(p("w/u1-f"), U2, (gid_t)-1));
    res("u1.lchgrp-symlink", lchown(p("w/u1-l"), (uid_t)-1, G_SUPP));
    st("u1.lchgrp-symlink", p("w/u1-l"));
    res("u1.chmod-6755", chmod(p("w/u1-f"), 06755));
    st("u1.chmod-6755", p("w/u1-f"));
    res("u1.chgrp-clears-setid", chown(p("w/u1-f"), (uid_t)-1, U1));
    st("u1.chgrp-clears-setid", p("w/u1-f"));
    res("u1.chmod-2750-own-group", chmod(p("w/u1-f"), 02750));
    res("u1.chgrp-supp-2750", chown(p("w/u1-f"), (uid_t)-1, G_SUPP));
    st("u1.chgrp-supp-2750", p("w/u1-f"));
    res("u1.chmod-g+s-supp", chmod(p("w/u1-f"), 02750));
    st("u1.chmod-g+s-supp", p("w/u1-f"));
    {
        int fd = open(p("w/u1-f"), O_RDONLY);

        res("u1.fchgrp-back", fd < 0 ? -1 : fchown(fd, (uid_t)-1, U1));
        if (fd >= 0) {
            close(fd);
        }
        st("u1.fchgrp-back", p("w/u1-f"));
    }

    /* Access through the supplementary group. */
    res("u1.open-rdwr-grpfile", readable(p("grpfile"), O_RDWR));
    res("u1.write-grpfile", overwrite(p("grpfile"), "u1"));
    res("u1.create-in-grpdir", mkfile(p("grpdir/u1"), 0640));
    st("u1.create-in-grpdir", p("grpdir/u1"));
    res("u1.search-grpdir", access(p("grpdir/u1"), F_OK));
    res("u1.create-in-otherdir", mkfile(p("otherdir/u1"), 0640));
    res("u1.open-otherfile", readable(p("otherfile"), O_RDONLY));

    /* Own set-uid file written by its owner: Linux clears the bits. */
    res("u1.own-setid-create", mkfile(p("w/u1-s"), 0755));
    res("u1.own-setid-chmod", chmod(p("w/u1-s"), 06755));
    res("u1.own-setid-write", overwrite(p("w/u1-s"), "data"));
    st("u1.own-setid-write", p("w/u1-s"));

    /* Privileged xattrs stay refused (user.* is part 1's: the 6.1 guest's
     * tmpfs, the reference here, has none). */
    res("u1.xattr-trusted-set", setxattr(p("w/u1-d"), "trusted.x", "1", 1, 0));
    res("u1.xattr-security-capability",
        setxattr(p("w/u1-s"), "security.capability", cap, sizeof(cap), 0));

    /* Owner-only checks. */
    res("u1.unlink-sticky-root", unlink(p("sticky/rootf")));
    res("u1.unlink-sticky-own", unlink(p("sticky/u1f")));
    res("u1.sticky-own-recreate", mkfile(p("sticky/u1f"), 0644));
    res("u1.utimes-explicit-root", utimensat(AT_FDCWD, p("wr"), ts, 0));
    res("u1.utimes-now-writable", utimensat(AT_FDCWD, p("wr"), now, 0));
    res("u1.chmod-root-file", chmod(p("wr"), 0600));
    res("u1.chgrp-root-file", chown(p("wr"), (uid_t)-1, G_SUPP));
    res("u1.mknod-device", mknod(p("w/u1-dev"), S_IFCHR | 0600, makedev(1, 3)));
}

static void
u1_sticky_setup(void)
{
    res("u1.sticky-own-create", mkfile(p("sticky/u1f"), 0644));
}

static void
u1_newgrp(void)
{
    creations("newgrp", "w");
}

static void
u1_sgid(void)
{
    creations("sgid", "sgid");
}

static void
u2_main(void)
{
    res("u2.open-grpfile", readable(p("grpfile"), O_RDONLY));
    res("u2.create-in-grpdir", mkfile(p("grpdir/u2"), 0640));
    /* A non-owner writes root's set-id files. */
    res("u2.write-suid1", overwrite(p("suid1"), "u2 data"));
    st("u2.write-suid1", p("suid1"));
    res("u2.truncate-suid2", truncate(p("suid2"), 1));
    st("u2.truncate-suid2", p("suid2"));
    {
        int fd = open(p("suid3"), O_WRONLY | O_TRUNC);

        res("u2.open-trunc-suid3", fd);
        if (fd >= 0) {
            close(fd);
        }
        st("u2.open-trunc-suid3", p("suid3"));
    }
    res("u2.write-sgid-noexec", overwrite(p("sgidnx"), "u2"));
    st("u2.write-sgid-noexec", p("sgidnx"));
    res("u2.chmod-remove-setid", chmod(p("suid4"), 0777));
    res("u2.unlink-sticky-u1", unlink(p("sticky/u1f")));
}

/* ---- driver -------------------------------------------------------------- */

static void
as_user(uid_t uid, gid_t gid, int ngroups, const gid_t *groups,
        void (*fn)(void))
{
    pid_t pid;
    int status;

    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        if (setgroups((size_t)ngroups, groups) < 0 || setgid(gid) < 0 ||
            setuid(uid) < 0) {
            perror("setgroups/setgid/setuid");
            _exit(2);
        }
        fn();
        fflush(stdout);
        _exit(0);
    }
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        printf("child-failed uid=%u\n", (unsigned)uid);
    }
}

static int
setup_node(const char *rel, mode_t type, mode_t mode, uid_t uid, gid_t gid)
{
    const char *path = p("%s", rel);

    if (type == S_IFDIR) {
        if (mkdir(path, 0700) < 0) {
            return -1;
        }
    } else if (put(path, "root data\n") < 0) {
        return -1;
    }
    if (chown(path, uid, gid) < 0 || chmod(path, mode) < 0) {
        return -1;
    }
    return 0;
}

static int
run(const char *d)
{
    static const gid_t u1groups[] = {U1, G_SUPP};
    static const gid_t u2groups[] = {U2};

    dir = d;
    umask(0);
    if (chmod(d, 0755) < 0) {
        perror(d);
        return 2;
    }
    if (setup_node("w", S_IFDIR, 0777, 0, 0) < 0 ||
        setup_node("sgid", S_IFDIR, 02777, 0, G_SGID) < 0 ||
        setup_node("grpfile", S_IFREG, 0060, 0, G_SUPP) < 0 ||
        setup_node("grpdir", S_IFDIR, 0070, 0, G_SUPP) < 0 ||
        setup_node("otherdir", S_IFDIR, 0070, 0, G_OTHER) < 0 ||
        setup_node("otherfile", S_IFREG, 0060, 0, G_OTHER) < 0 ||
        setup_node("suid1", S_IFREG, 06777, 0, 0) < 0 ||
        setup_node("suid2", S_IFREG, 04777, 0, 0) < 0 ||
        setup_node("suid3", S_IFREG, 06777, 0, 0) < 0 ||
        setup_node("suid4", S_IFREG, 06777, 0, 0) < 0 ||
        setup_node("sgidnx", S_IFREG, 02767, 0, 0) < 0 ||
        setup_node("sticky", S_IFDIR, 01777, 0, 0) < 0 ||
        setup_node("sticky/rootf", S_IFREG, 0666, 0, 0) < 0 ||
        setup_node("wr", S_IFREG, 0666, 0, 0) < 0) {
        perror("setup");
        return 2;
    }
    as_user(U1, U1, 2, u1groups, u1_sticky_setup);
    as_user(U1, U1, 2, u1groups, u1_main);
    as_user(U1, G_SUPP, 2, u1groups, u1_newgrp);
    as_user(U1, U1, 2, u1groups, u1_sgid);
    as_user(U2, U2, 1, u2groups, u2_main);
    fflush(stdout);
    return 0;
}

/* Runs 'run(d)' in a child with stdout to 'out'. */
static int
run_to(const char *d, const char *out)
{
    pid_t pid;
    int status;

    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        if (freopen(out, "w", stdout) == NULL) {
            _exit(2);
        }
        _exit(run(d));
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) {
        return 2;
    }
    return WEXITSTATUS(status);
}

static int
compare(const char *ref, const char *d)
{
    char la[512];
    char lb[512];
    FILE *fa;
    FILE *fb;
    int bad = 0;
    int n = 0;

    if (run_to(ref, "/tmp/idtest.ref") != 0 ||
        run_to(d, "/tmp/idtest.out") != 0) {
        printf("not ok - id: setup failed\n");
        return 1;
    }
    fa = fopen("/tmp/idtest.ref", "r");
    fb = fopen("/tmp/idtest.out", "r");
    if (fa == NULL || fb == NULL) {
        printf("not ok - id: no output\n");
        return 1;
    }
    for (;;) {
        char *a = fgets(la, sizeof(la), fa);
        char *b = fgets(lb, sizeof(lb), fb);

        if (a == NULL && b == NULL) {
            break;
        }
        n++;
        if (a != NULL) {
            la[strcspn(la, "\n")] = '\0';
        }
        if (b != NULL) {
            lb[strcspn(lb, "\n")] = '\0';
        }
        if (a != NULL && b != NULL && strcmp(la, lb) == 0) {
            printf("ok - id: %s\n", lb);
        } else {
            printf("not ok - id: 9p '%s', local '%s'\n", b ? lb : "(none)",
                   a ? la : "(none)");
            bad++;
        }
    }
    fclose(fa);
    fclose(fb);
    printf("# id: %d steps, %d differ from the local file system\n", n, bad);
    return bad == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "run") == 0) {
        return run(argv[2]);
    }
    if (argc == 4 && strcmp(argv[1], "create") == 0) {
        umask(0);
        if (mkfile(argv[2], (mode_t)strtoul(argv[3], NULL, 8)) < 0) {
            perror(argv[2]);
            return 1;
        }
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "compare") == 0) {
        return compare(argv[2], argv[3]);
    }
    fprintf(stderr, "usage: idtest run DIR | idtest create PATH MODE | "
                    "idtest compare REFDIR DIR\n");
    return 2;
}
