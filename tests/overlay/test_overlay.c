/* SPDX-License-Identifier: MIT */
/*
 * The overlay backend (layered exports) through an in-process server:
 * merged view, whiteouts, opaque directories, copy-up (qid kept, lower
 * untouched), namespace ops, readdir resume, and the kernel's overlayfs
 * mounted on the layers virtfsd wrote showing the tree the client saw.
 */
#include "../server/harness.h"

#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "ov_harness.h"

/* layered exports run without the sandbox for now (see virtfsd(8)) */
static const char *const ov_args[] = {
    "--sandbox", "none", "--seccomp", "none", "--modcaps=+sys_admin", NULL};

static char g_base[PATH_MAX];

static void
put(const char *rel, const char *data)
{
    char p[PATH_MAX];

    snprintf(p, sizeof(p), "%s/%s", g_lower, rel);
    th_write_file(p, data, strlen(data));
}

static void
build_layers(void)
{
    char p[PATH_MAX];
    char *b = th_mkdtemp("ovl");

    snprintf(g_base, sizeof(g_base), "%s", b);
    free(b);
    snprintf(g_lower, sizeof(g_lower), "%s/lower", g_base);
    snprintf(g_upper, sizeof(g_upper), "%s/upper", g_base);
    snprintf(g_work, sizeof(g_work), "%s/work", g_base);
    mkdir(g_lower, 0755);
    mkdir(g_upper, 0755);
    put("a", "lower a\n");
    put("gone", "to be hidden\n");
    snprintf(p, sizeof(p), "%s/d", g_lower);
    mkdir(p, 0755);
    put("d/x", "x\n");
    snprintf(p, sizeof(p), "%s/op", g_lower);
    mkdir(p, 0755);
    put("op/hidden", "h\n");
    snprintf(p, sizeof(p), "%s/empty", g_lower);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/full", g_lower);
    mkdir(p, 0755);
    put("full/f", "f\n");
    snprintf(p, sizeof(p), "%s/ln", g_lower);
    SETUP_OK(symlink("a", p));
    snprintf(p, sizeof(p), "%s/a", g_lower);
    chmod(p, 0640);
    /* the upper: its own file, a merged dir, a whiteout, an opaque dir */
    snprintf(p, sizeof(p), "%s/u", g_upper);
    th_write_file(p, "upper u\n", 8);
    snprintf(p, sizeof(p), "%s/d", g_upper);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/d/y", g_upper);
    th_write_file(p, "y\n", 2);
    snprintf(p, sizeof(p), "%s/gone", g_upper);
    mknod(p, S_IFCHR | 0, makedev(0, 0));
    snprintf(p, sizeof(p), "%s/op", g_upper);
    mkdir(p, 0755);
    setxattr(p, "trusted.overlay.opaque", "y", 1, 0);
    snprintf(p, sizeof(p), "%s/op/mine", g_upper);
    th_write_file(p, "m\n", 2);
}

/* Names of a directory through 9P, sorted, joined by ' ' (no . ..),
 * read 'count' bytes at a time. */
static int
ls9(struct p9c_fid *root, const char *path, uint32_t count, char *out,
    size_t size)
{
    struct p9c_fid *f;
    struct p9c_dir *it = NULL;
    struct p9c_dirent de;
    char names[64][64];
    int n = 0;
    int err;

    out[0] = '\0';
    err = p9c_walk(root, path, &f);
    if (err < 0) {
        return err;
    }
    err = p9c_open(f, 0);
    if (err == 0) {
        err = p9c_dir_open(f, count, &it);
    }
    if (err < 0) {
        p9c_clunk(f);
        return err;
    }
    while ((err = p9c_dir_next(it, &de)) > 0 && n < 64) {
        if (strcmp(de.name, ".") != 0 && strcmp(de.name, "..") != 0) {
            snprintf(names[n++], 64, "%s", de.name);
        }
    }
    p9c_dir_close(it);
    p9c_clunk(f);
    qsort(names, (size_t)n, 64, (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < n; i++) {
        strncat(out, names[i], size - strlen(out) - 2);
        if (i + 1 < n) {
            strcat(out, " ");
        }
    }
    return err < 0 ? err : 0;
}

static ssize_t
cat9(struct p9c_fid *root, const char *path, char *buf, size_t size)
{
    struct p9c_fid *f;
    ssize_t r;

    r = p9c_walk(root, path, &f);
    if (r < 0) {
        return r;
    }
    r = p9c_open(f, 0);
    if (r == 0) {
        r = p9c_pread(f, buf, size - 1, 0);
    }
    if (r >= 0) {
        buf[r] = '\0';
    }
    p9c_clunk(f);
    return r;
}

static int
write9(struct p9c_fid *root, const char *path, const char *data)
{
    struct p9c_fid *f;
    ssize_t r;

    r = p9c_walk(root, path, &f);
    if (r < 0) {
        return (int)r;
    }
    r = p9c_open(f, P9_DOTL_RDWR | P9_DOTL_TRUNC);
    if (r == 0) {
        r = p9c_pwrite(f, data, strlen(data), 0);
    }
    p9c_clunk(f);
    return r < 0 ? (int)r : 0;
}

static uint64_t
qpath9(struct p9c_fid *root, const char *path)
{
    struct p9c_fid *f;
    struct p9_rgetattr ga;
    uint64_t q = 0;

    if (p9c_walk(root, path, &f) == 0) {
        if (p9c_getattr(f, P9_GETATTR_BASIC, &ga) == 0) {
            q = ga.qid.path;
        }
        p9c_clunk(f);
    }
    return q;
}

static bool
upper_is_whiteout(const char *rel)
{
    char p[PATH_MAX];
    struct stat st;

    snprintf(p, sizeof(p), "%s/%s", g_upper, rel);
    if (lstat(p, &st) < 0) {
        return false;
    }
    return (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) ||
           getxattr(p, "user.overlay.whiteout", NULL, 0) >= 0;
}

/* A manifest of the tree as the client sees it: "path type mode size
 * content;" in sorted order, depth first. */
static void
manifest9(struct p9c_fid *root, const char *path, char *out, size_t size)
{
    char names[1024];
    char *save = NULL;

    if (ls9(root, path, 8192, names, sizeof(names)) < 0) {
        return;
    }
    for (char *nm = strtok_r(names, " ", &save); nm != NULL;
         nm = strtok_r(NULL, " ", &save)) {
        char sub[PATH_MAX];
        char line[512];
        char data[128] = "";
        struct p9c_fid *f;
        struct p9_rgetattr ga;

        snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "/" : "", nm);
        if (p9c_walk(root, sub, &f) < 0) {
            continue;
        }
        p9c_getattr(f, P9_GETATTR_BASIC, &ga);
        p9c_clunk(f);
        if (S_ISREG(ga.mode)) {
            cat9(root, sub, data, sizeof(data));
        }
        snprintf(line, sizeof(line), "%s %o %llu %s;", sub, ga.mode,
                 (unsigned long long)(S_ISDIR(ga.mode) ? 0 : ga.size), data);
        strncat(out, line, size - strlen(out) - 1);
        if (S_ISDIR(ga.mode)) {
            manifest9(root, sub, out, size);
        }
    }
}

static int
scmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The same manifest of a host directory (the kernel overlay mount). */
static void
manifest_host(const char *top, const char *path, char *out, size_t size)
{
    char dir[PATH_MAX];
    char *names[64];
    int n = 0;
    struct dirent *de;
    DIR *d;

    snprintf(dir, sizeof(dir), "%s/%s", top, path);
    d = opendir(dir);
    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL && n < 64) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            names[n++] = strdup(de->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(*names), scmp);
    for (int i = 0; i < n; i++) {
        char sub[PATH_MAX];
        char full[PATH_MAX];
        char line[512];
        char data[128] = "";
        struct stat st;

        snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "/" : "",
                 names[i]);
        snprintf(full, sizeof(full), "%s/%s", top, sub);
        lstat(full, &st);
        if (S_ISREG(st.st_mode)) {
            th_read_file(full, data, sizeof(data) - 1);
        }
        snprintf(line, sizeof(line), "%s %o %llu %s;", sub, st.st_mode,
                 (unsigned long long)(S_ISDIR(st.st_mode) ? 0 : st.st_size),
                 data);
        strncat(out, line, size - strlen(out) - 1);
        if (S_ISDIR(st.st_mode)) {
            manifest_host(top, sub, out, size);
        }
        free(names[i]);
    }
}

/* argv[1]: a virtfsd to spawn with --export ov=UPPER,lower=LOWER,work=WORK
 * (checks the option parsing too); without it an in-process server. */
/* Names and types (w = whiteout, o = opaque dir) of a raw upper tree. */
static void
upper_shape(const char *top, const char *path, char *out, size_t size)
{
    char dir[PATH_MAX];
    char *names[64];
    int n = 0;
    struct dirent *de;
    DIR *d;

    snprintf(dir, sizeof(dir), "%s/%s", top, path);
    d = opendir(dir);
    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL && n < 64) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            names[n++] = strdup(de->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(*names), scmp);
    for (int i = 0; i < n; i++) {
        char sub[PATH_MAX];
        char full[PATH_MAX];
        char line[PATH_MAX + 8];
        char c = '?';
        struct stat st;

        snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "/" : "",
                 names[i]);
        snprintf(full, sizeof(full), "%s/%s", top, sub);
        lstat(full, &st);
        if (S_ISCHR(st.st_mode) && st.st_rdev == 0) {
            c = 'w';
        } else if (S_ISDIR(st.st_mode)) {
            char v[4];

            c = (getxattr(full, "trusted.overlay.opaque", v, sizeof(v)) == 1 &&
                 v[0] == 'y')
                    ? 'o'
                    : 'd';
        } else if (S_ISREG(st.st_mode)) {
            c = 'f';
        } else if (S_ISLNK(st.st_mode)) {
            c = 'l';
        }
        snprintf(line, sizeof(line), "%s:%c ", sub, c);
        strncat(out, line, size - strlen(out) - 1);
        if (S_ISDIR(st.st_mode)) {
            upper_shape(top, sub, out, size);
        }
        free(names[i]);
    }
}

/* The client's sequence of changes, as a process applies it on a kernel
 * overlayfs mount at 'm' (the comparison's other side). */
static void
replay_on_kernel(const char *m)
{
    char p[PATH_MAX];
    char q[PATH_MAX];
    mode_t old = umask(0);
    int fd;

#define P(rel) (snprintf(p, sizeof(p), "%s/%s", m, rel), p)
#define Q(rel) (snprintf(q, sizeof(q), "%s/%s", m, rel), q)
    th_write_file(P("a"), "new a\n", 6);
    chmod(P("full/f"), 0600);
    setxattr(P("d/x"), "user.test", "v", 1, 0);
    unlink(P("ln"));
    unlink(P("full/f"));
    rmdir(P("full"));
    mkdir(P("full"), 0755);
    fd = open(P("gone"), O_CREAT | O_EXCL | O_RDWR, 0644);
    if (fd >= 0) {
        (void)!write(fd, "again\n", 6);
        close(fd);
    }
    rename(P("u"), Q("u2"));
    rename(P("d/x"), Q("x2"));
    mkdir(P("nd"), 0700);
    SETUP_OK(symlink("u2", P("sl")));
    SETUP_OK(link(P("u2"), Q("hl")));
    rmdir(P("empty"));
    rename(P("full"), Q("full2"));
#undef P
#undef Q
    umask(old);
}

static bool
same_bytes(const char *a, const char *b, off_t skip_first)
{
    char cmd[2 * PATH_MAX + 64];

    snprintf(cmd, sizeof(cmd), "cmp -s -i %lld %s %s", (long long)skip_first, a,
             b);
    return system(cmd) == 0;
}

/* Copy-up of each file type, with owner, set-id bits, xattrs and ACLs;
 * no escape through a lower symlink.  Fresh layers, in-process server. */
static void
test_types(const char *virtfsd)
{
    struct th_export ex = {.name = "ov", .path = "/ov"};
    static char exspec[3 * PATH_MAX + 32];
    struct th_srv *s;
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid *f;
    char p[PATH_MAX];
    char q[PATH_MAX];
    char cmd[2 * PATH_MAX];
    struct stat st;
    uint64_t lower_hash;
    int err;
    char *big = malloc(1 << 20);

    build_layers();
    for (int i = 0; i < (1 << 20); i++) {
        big[i] = (char)(i * 7 + i / 4096);
    }
    snprintf(p, sizeof(p), "%s/big", g_lower);
    th_write_file(p, big, 1 << 20);
    free(big);
    snprintf(p, sizeof(p), "%s/sl", g_lower);
    SETUP_OK(symlink("big", p));
    snprintf(p, sizeof(p), "%s/pipe", g_lower);
    mkfifo(p, 0644);
    snprintf(p, sizeof(p), "%s/esc", g_lower);
    SETUP_OK(symlink("/etc", p));
    snprintf(p, sizeof(p), "%s/owned", g_lower);
    th_write_file(p, "suid\n", 5);
    SETUP_OK(chown(p, 1234, 5678));
    chmod(p, 04755);
    setxattr(p, "user.k", "v1", 2, 0);
    snprintf(p, sizeof(p), "%s/dd", g_lower);
    mkdir(p, 0750);
    setxattr(p, "user.k", "dir", 3, 0);
    snprintf(cmd, sizeof(cmd), "setfacl -m u:4321:rx %s", p);
    tap_ok(system(cmd) == 0, "an ACL on a lower directory");
    lower_hash = th_tree_hash(g_lower);

    snprintf(exspec, sizeof(exspec), "%s,lower=%s,work=%s", g_upper, g_lower,
             g_work);
    ex.path = exspec;
    s = th_start(virtfsd, &ex, 1, virtfsd ? ov_args : NULL);
    err = th_mount(s, "ov", &c, &root);
    tap_ok(err == 0, "mount fresh layers (%d)", err);
    if (err < 0) {
        return;
    }
    {
        struct p9_tsetattr sa = {.valid = P9_SETATTR_UID, .uid = 42};

        tap_ok(p9c_walk(root, "sl", &f) == 0 && p9c_setattr(f, &sa) == 0,
               "chown a lower symlink");
        p9c_clunk(f);
        snprintf(p, sizeof(p), "%s/sl", g_upper);
        tap_ok(lstat(p, &st) == 0 && S_ISLNK(st.st_mode) && st.st_uid == 42 &&
                   readlink(p, q, sizeof(q)) == 3 && memcmp(q, "big", 3) == 0,
               "copy-up of a symlink keeps its target");
    }
    {
        struct p9_tsetattr sa = {.valid =
                                     P9_SETATTR_MTIME | P9_SETATTR_MTIME_SET,
                                 .mtime_sec = 1000000};

        tap_ok(p9c_walk(root, "pipe", &f) == 0 && p9c_setattr(f, &sa) == 0,
               "touch a lower fifo");
        p9c_clunk(f);
        snprintf(p, sizeof(p), "%s/pipe", g_upper);
        tap_ok(lstat(p, &st) == 0 && S_ISFIFO(st.st_mode) &&
                   st.st_mtime == 1000000 && (st.st_mode & 07777) == 0644,
               "copy-up of a fifo");
    }
    tap_ok(write9(root, "owned", "SUID\n") == 0, "write a set-uid lower file");
    snprintf(p, sizeof(p), "%s/owned", g_upper);
    {
        char v[8];

        tap_ok(lstat(p, &st) == 0 && st.st_uid == 1234 && st.st_gid == 5678,
               "copy-up keeps the owner");
        /* chmod after chown (which clears it); the daemon writes as root */
        tap_ok(lstat(p, &st) == 0 && (st.st_mode & 07777) == 04755,
               "copy-up keeps the set-uid bit");
        tap_ok(getxattr(p, "user.k", v, sizeof(v)) == 2 &&
                   memcmp(v, "v1", 2) == 0,
               "copy-up keeps xattrs");
    }
    f = NULL;
    tap_ok(p9c_walk(root, "big", &f) == 0 && p9c_open(f, P9_DOTL_RDWR) == 0 &&
               p9c_pwrite(f, "Z", 1, 0) == 1,
           "write one byte of a 1 MiB file");
    p9c_clunk(f);
    snprintf(p, sizeof(p), "%s/big", g_upper);
    snprintf(q, sizeof(q), "%s/big", g_lower);
    tap_ok(lstat(p, &st) == 0 && st.st_size == (1 << 20) && same_bytes(p, q, 1),
           "the rest of the data was copied");
    tap_ok(p9c_walk(root, "dd", &f) == 0 &&
               p9c_mkdir(f, "sub", 0755, 0, NULL) == 0,
           "mkdir in a lower dir");
    p9c_clunk(f);
    snprintf(p, sizeof(p), "%s/dd", g_upper);
    snprintf(cmd, sizeof(cmd),
             "getfacl -c %s 2>/dev/null | grep -q 'user:4321:r-x'", p);
    tap_ok(lstat(p, &st) == 0 && (st.st_mode & 0777) == 0750 &&
               system(cmd) == 0,
           "the copied-up dir has its mode and ACL");
    tap_ok(p9c_walk(root, "esc/passwd", &f) < 0,
           "no walk through a lower symlink to the host");
    tap_ok(p9c_walk(root, "esc", &f) == 0 && p9c_open(f, 0) < 0,
           "no open of a lower symlink");
    p9c_clunk(f);
    {
        struct p9c_fid *r2;

        tap_ok(p9c_attach(c, "", 1000, "ov", &r2) == 0 &&
                   p9c_mkdir(r2, "bobs", 0755, 1000, NULL) == 0 &&
                   p9c_walk(r2, "dd", &f) == 0 &&
                   p9c_create(f, "bobf", P9_DOTL_RDWR, 0644, 1000) == 0,
               "uid 1000 makes a dir and a file");
        p9c_clunk(f);
        p9c_clunk(r2);
        snprintf(p, sizeof(p), "%s/bobs", g_upper);
        snprintf(q, sizeof(q), "%s/dd/bobf", g_upper);
        tap_ok(lstat(p, &st) == 0 && st.st_uid == 1000 && st.st_gid == 1000 &&
                   lstat(q, &st) == 0 && st.st_uid == 1000,
               "owned by the user who made them");
    }
    /* byte-range locks on a copied-up file, two handles */
    {
        struct p9c_fid *l1 = NULL;
        struct p9c_fid *l2 = NULL;
        struct p9c_flock fl = {
            .type = P9_LOCK_TYPE_WRLCK, .start = 0, .length = 10, .proc_id = 1};
        struct p9c_flock probe = {
            .type = P9_LOCK_TYPE_UNLCK, .start = 0, .length = 10, .proc_id = 2};
        uint8_t st1 = 9;
        uint8_t st2 = 9;
        uint8_t st3 = 9;

        tap_ok(p9c_walk(root, "owned", &l1) == 0 &&
                   p9c_open(l1, P9_DOTL_RDWR) == 0 &&
                   p9c_walk(root, "owned", &l2) == 0 &&
                   p9c_open(l2, P9_DOTL_RDWR) == 0 &&
                   p9c_lock(l1, &fl, &st1) == 0 && st1 == P9_LOCK_SUCCESS &&
                   p9c_lock(l2, &fl, &st2) == 0 && st2 == P9_LOCK_BLOCKED &&
                   p9c_getlock(l2, &probe) == 0 &&
                   probe.type == P9_LOCK_TYPE_WRLCK,
               "a write lock blocks another handle, getlock sees it");
        fl.type = P9_LOCK_TYPE_UNLCK;
        fl.length = 0;
        p9c_lock(l1, &fl, &st1);
        fl.type = P9_LOCK_TYPE_WRLCK;
        tap_ok(p9c_lock(l2, &fl, &st3) == 0 && st3 == P9_LOCK_SUCCESS,
               "and the other gets it after the unlock");
        p9c_clunk(l1);
        p9c_clunk(l2);
    }
    tap_ok(th_tree_hash(g_lower) == lower_hash, "the lower tree never changed");
    p9c_clunk(root);
    p9c_close(c);
    th_stop(s);
    if (getenv("OV_KEEP") == NULL) {
        th_rmtree(g_base);
    }
}

struct crash_arg {
    struct p9c_fid *root;
    int err;
};

static void *
crash_open(void *p)
{
    struct crash_arg *a = p;
    struct p9c_fid *f;

    a->err = p9c_walk(a->root, "big", &f);
    if (a->err == 0) {
        a->err = p9c_open(f, P9_DOTL_RDWR);
        p9c_clunk(f);
    }
    return NULL;
}

static int
count_entries(const char *dir)
{
    struct dirent *de;
    DIR *d = opendir(dir);
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    }
    closedir(d);
    return n;
}

/* kill -9 the daemon at many points of a 64 MiB copy-up: the upper has
 * no file or the whole file, never a part; a restart drops the leftovers. */
static void
test_crash(const char *virtfsd)
{
    struct th_export ex = {.name = "ov"};
    static char exspec[3 * PATH_MAX + 32];
    const size_t size = 64u << 20;
    char p[PATH_MAX];
    char q[PATH_MAX];
    char *data = malloc(1 << 20);
    bool never_half = true;
    int mid_copy = 0;
    int whole = 0;
    int fd;

    build_layers();
    snprintf(q, sizeof(q), "%s/big", g_lower);
    fd = open(q, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (size_t off = 0; off < size; off += 1 << 20) {
        for (int i = 0; i < (1 << 20); i++) {
            data[i] = (char)(off / 4096 + (size_t)i * 13);
        }
        (void)!write(fd, data, 1 << 20);
    }
    close(fd);
    free(data);
    snprintf(p, sizeof(p), "%s/big", g_upper);
    snprintf(exspec, sizeof(exspec), "%s,lower=%s,work=%s", g_upper, g_lower,
             g_work);
    ex.path = exspec;
    for (int i = 0; i < 20; i++) {
        struct crash_arg a = {.err = 0};
        struct th_srv *s = th_start(virtfsd, &ex, 1, virtfsd ? ov_args : NULL);
        struct p9c_conn *c;
        struct stat st;
        pthread_t t;

        if (th_mount(s, "ov", &c, &a.root) < 0) {
            never_half = false;
            th_stop(s);
            break;
        }
        pthread_create(&t, NULL, crash_open, &a);
        usleep((useconds_t)(i * 10000));
        kill(s->pid, SIGKILL);
        pthread_join(t, NULL);
        p9c_clunk(a.root);
        p9c_close(c);
        th_stop(s);
        if (lstat(p, &st) == 0) {
            if (st.st_size != (off_t)size || !same_bytes(p, q, 0)) {
                never_half = false;
            }
            whole++;
            unlink(p);
        }
        mid_copy += count_entries(g_work) > 0;
        /* the next start must drop what was left in the work dir */
        if (count_entries(g_work) > 0) {
            s = th_start(virtfsd, &ex, 1, virtfsd ? ov_args : NULL);
            th_stop(s);
            if (count_entries(g_work) != 0) {
                never_half = false;
                printf("# leftovers in the work dir after a restart\n");
            }
        }
    }
    tap_ok(never_half,
           "kill -9 during copy-up: the old file or the whole "
           "new one, never half (%d whole, %d killed mid-copy)",
           whole, mid_copy);
    tap_ok(mid_copy > 0, "some kills landed in the middle of a copy-up");
    if (getenv("OV_KEEP") == NULL) {
        th_rmtree(g_base);
    }
}

static char g_lower2[PATH_MAX];
static char g_upper2[PATH_MAX];

/* two clones: vm1 on g_upper, vm2 on g_upper2, one lower */
static int
make_ov_pc(const struct th_export *ex, struct backend **out)
{
    struct ov_options o = {.nlowers = 1};
    static char work2[PATH_MAX];

    snprintf(g_upper2, sizeof(g_upper2), "%s/upper2", g_base);
    snprintf(work2, sizeof(work2), "%s/work2", g_base);
    o.upper = strcmp(ex->name, "vm1") == 0 ? g_upper : g_upper2;
    o.work = strcmp(ex->name, "vm1") == 0 ? g_work : work2;
    o.lowers[0] = g_lower;
    return ov_backend_new(&o, out);
}

static int
make_ov2(const struct th_export *ex, struct backend **out)
{
    struct ov_options o = {.upper = g_upper, .work = g_work, .nlowers = 2};

    (void)ex;
    o.lowers[0] = g_lower;
    o.lowers[1] = g_lower2;
    return ov_backend_new(&o, out);
}

/* lower=A:B: leftmost on top, a whiteout and an opaque dir in the middle
 * layer; readdir resumes at its offsets while the directory changes; the
 * kernel mounted on the same three layers lists the same tree. */
static void
test_two_lowers(const char *virtfsd)
{
    struct th_export ex = {.name = "ov"};
    static char exspec[4 * PATH_MAX + 32];
    struct th_srv *s;
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid *f;
    char p[PATH_MAX];
    char buf[8192];
    char buf2[8192];
    char ls[1024];

    build_layers();
    snprintf(g_lower2, sizeof(g_lower2), "%s/lower2", g_base);
    mkdir(g_lower2, 0755);
    snprintf(p, sizeof(p), "%s/a", g_lower2);
    th_write_file(p, "bottom a\n", 9);
    snprintf(p, sizeof(p), "%s/b2", g_lower2);
    th_write_file(p, "only in B\n", 10);
    snprintf(p, sizeof(p), "%s/z", g_lower2);
    th_write_file(p, "z\n", 2);
    snprintf(p, sizeof(p), "%s/z", g_lower);
    mknod(p, S_IFCHR, makedev(0, 0)); /* A whites out B's z */
    snprintf(p, sizeof(p), "%s/d", g_lower2);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/d/fromB", g_lower2);
    th_write_file(p, "B\n", 2);
    snprintf(p, sizeof(p), "%s/op", g_lower2);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/op/deep", g_lower2);
    th_write_file(p, "B\n", 2);
    snprintf(p, sizeof(p), "%s/op", g_lower);
    setxattr(p, "trusted.overlay.opaque", "y", 1, 0); /* A's op is opaque */
    for (int i = 0; i < 40; i++) {
        snprintf(p, sizeof(p), "%s/d/many%02d", g_lower2, i);
        th_write_file(p, "", 0);
    }
    snprintf(exspec, sizeof(exspec), "%s,lower=%s:%s,work=%s", g_upper, g_lower,
             g_lower2, g_work);
    ex.path = exspec;
    th_make_backend = make_ov2;
    s = th_start(virtfsd, &ex, 1, virtfsd ? ov_args : NULL);
    if (th_mount(s, "ov", &c, &root) < 0) {
        tap_ok(false, "mount two lowers");
        th_stop(s);
        return;
    }
    tap_ok(cat9(root, "a", buf, sizeof(buf)) == 8 &&
               strcmp(buf, "lower a\n") == 0,
           "the leftmost lower is on top");
    tap_ok(cat9(root, "b2", buf, sizeof(buf)) == 10,
           "a name only in the bottom lower");
    tap_ok(p9c_walk(root, "z", &f) == -ENOENT,
           "a whiteout in the upper lower hides the bottom one");
    tap_ok(p9c_walk(root, "op/deep", &f) == -ENOENT,
           "an opaque dir in a lower stops the fall-through");
    tap_ok(p9c_walk(root, "d/fromB", &f) == 0 && p9c_clunk(f) == 0,
           "three layers merge in d");
    /* readdir of d in small pieces while names come and go */
    {
        struct p9c_fid *d;
        uint64_t off = 0;
        char rb[256];
        int n = 0;
        ssize_t r;
        bool changed = false;

        tap_ok(p9c_walk(root, "d", &d) == 0 && p9c_open(d, 0) == 0, "open d");
        while ((r = p9c_readdir(d, off, rb, sizeof(rb))) > 0) {
            size_t pos = 0;

            while (pos < (size_t)r) {
                /* qid[13] offset[8] type[1] name[s] */
                uint16_t nl;

                memcpy(&off, rb + pos + 13, 8);
                memcpy(&nl, rb + pos + 22, 2);
                pos += 24 + nl;
                n++;
            }
            if (!changed) {
                struct p9c_fid *dd;

                changed = p9c_walk(root, "d", &dd) == 0 &&
                          p9c_create(dd, "newer", P9_DOTL_RDWR, 0644, 0) == 0;
                p9c_clunk(dd);
                changed = changed && p9c_walk(root, "d", &dd) == 0 &&
                          p9c_unlinkat(dd, "many00", 0) == 0;
                p9c_clunk(dd);
            }
        }
        p9c_clunk(d);
        /* the listing of the open: . .. x y fromB many00..39, each once */
        tap_ok(changed && n == 2 + 3 + 40,
               "readdir resumes at its offsets while d changes (%d)", n);
    }
    ls9(root, "", 8192, ls, sizeof(ls));
    buf[0] = '\0';
    manifest9(root, "", buf, sizeof(buf));
    p9c_clunk(root);
    p9c_close(c);
    th_stop(s);
    {
        char mnt[PATH_MAX];
        char kwork[PATH_MAX];
        char opts[4 * PATH_MAX + 64];

        snprintf(mnt, sizeof(mnt), "%s/mnt2", g_base);
        snprintf(kwork, sizeof(kwork), "%s/kwork2", g_base);
        mkdir(mnt, 0755);
        mkdir(kwork, 0755);
        snprintf(opts, sizeof(opts), "lowerdir=%s:%s,upperdir=%s,workdir=%s",
                 g_lower, g_lower2, g_upper, kwork);
        if (mount("overlay", mnt, "overlay", 0, opts) == 0) {
            buf2[0] = '\0';
            manifest_host(mnt, "", buf2, sizeof(buf2));
            tap_ok(strcmp(buf, buf2) == 0,
                   "kernel overlayfs on the same three layers agrees");
            if (strcmp(buf, buf2) != 0) {
                printf("# 9p:     %s\n# kernel: %s\n", buf, buf2);
            }
            umount(mnt);
        } else {
            tap_ok(false, "mount -t overlay: %s", strerror(errno));
        }
    }
    if (getenv("OV_KEEP") == NULL) {
        th_rmtree(g_base);
    }
}

/* Copy-up on XFS (reflink=1, on a loop device): the copy shares the
 * lower's extents, so a 64 MiB copy-up takes (almost) no space. */
static int
test_reflink(void)
{
    struct th_export ex = {.name = "ov", .path = "/ov"};
    char img[PATH_MAX];
    char mnt[PATH_MAX];
    char cmd[3 * PATH_MAX];
    char p[PATH_MAX];
    char q[PATH_MAX];
    struct statfs before;
    struct statfs after;
    struct th_srv *s;
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid *f = NULL;
    char *b = th_mkdtemp("ovx");
    char *data = malloc(1 << 20);
    long long used;
    int fd;

    snprintf(g_base, sizeof(g_base), "%s", b);
    free(b);
    snprintf(img, sizeof(img), "%s/xfs.img", g_base);
    snprintf(mnt, sizeof(mnt), "%s/m", g_base);
    mkdir(mnt, 0755);
    snprintf(cmd, sizeof(cmd),
             "truncate -s 400M %s && mkfs.xfs -q -m reflink=1 "
             "%s && mount -o loop %s %s",
             img, img, img, mnt);
    if (!tap_ok(system(cmd) == 0,
                "an XFS image with reflink on a loop device")) {
        th_rmtree(g_base);
        free(data);
        return tap_done();
    }
    snprintf(g_lower, sizeof(g_lower), "%s/lower", mnt);
    snprintf(g_upper, sizeof(g_upper), "%s/upper", mnt);
    snprintf(g_work, sizeof(g_work), "%s/work", mnt);
    mkdir(g_lower, 0755);
    snprintf(q, sizeof(q), "%s/big", g_lower);
    fd = open(q, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (int m = 0; m < 64; m++) {
        memset(data, 'a' + m % 26, 1 << 20);
        (void)!write(fd, data, 1 << 20);
    }
    fsync(fd);
    close(fd);
    free(data);
    th_make_backend = make_ov;
    s = th_start(NULL, &ex, 1, NULL);
    if (th_mount(s, "ov", &c, &root) == 0) {
        sync();
        statfs(mnt, &before);
        tap_ok(p9c_walk(root, "big", &f) == 0 &&
                   p9c_open(f, P9_DOTL_RDWR) == 0 &&
                   p9c_pwrite(f, "Z", 1, 0) == 1,
               "write one byte of a 64 MiB lower file on XFS");
        p9c_clunk(f);
        sync();
        statfs(mnt, &after);
        used = ((long long)before.f_bfree - (long long)after.f_bfree) *
               (long long)before.f_bsize;
        snprintf(p, sizeof(p), "%s/big", g_upper);
        tap_ok(same_bytes(p, q, 1), "the copy has the data");
        /* FICLONE; XFS also reflinks a same-fs copy_file_range, so
         * this tells shared extents from a byte copy, not one call from
         * the other */
        tap_ok(used < (8 << 20),
               "copy-up shares the extents: %lld KiB "
               "used for 64 MiB",
               used / 1024);
        p9c_clunk(root);
        p9c_close(c);
    }
    th_stop(s);
    umount(mnt);
    th_rmtree(g_base);
    return tap_done();
}

/* Pages of 'path' in the page cache (mincore). */
static long
resident_pages(const char *path)
{
    long ps = sysconf(_SC_PAGESIZE);
    struct stat st;
    unsigned char *vec;
    void *m;
    long n = 0;
    int fd = open(path, O_RDONLY);

    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) {
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    vec = malloc((size_t)((st.st_size + ps - 1) / ps));
    if (m != MAP_FAILED && vec != NULL &&
        mincore(m, (size_t)st.st_size, vec) == 0) {
        for (long i = 0; i < (st.st_size + ps - 1) / ps; i++) {
            n += vec[i] & 1;
        }
    }
    if (m != MAP_FAILED) {
        munmap(m, (size_t)st.st_size);
    }
    free(vec);
    close(fd);
    return n;
}

/* Two clones (two uppers over one lower) read the same 16 MiB lower
 * file: it is cached once, as the lower file's own pages. */
static void
test_page_cache(void)
{
    struct th_export ex[2] = {{.name = "vm1", .path = "/vm1"},
                              {.name = "vm2", .path = "/vm2"}};
    char big[PATH_MAX];
    char *data = malloc(1 << 20);
    long pages = (16L << 20) / sysconf(_SC_PAGESIZE);
    long before;
    long after1 = 0;
    long after2 = 0;
    struct th_srv *s;
    int fd;

    build_layers();
    snprintf(big, sizeof(big), "%s/big", g_lower);
    fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (int m = 0; m < 16; m++) {
        memset(data, 'A' + m, 1 << 20);
        (void)!write(fd, data, 1 << 20);
    }
    fsync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    before = resident_pages(big);
    th_make_backend = make_ov_pc;
    s = th_start(NULL, ex, 2, NULL);
    for (int vm = 0; vm < 2; vm++) {
        struct p9c_conn *c;
        struct p9c_fid *root;
        struct p9c_fid *f;

        if (th_mount(s, vm == 0 ? "vm1" : "vm2", &c, &root) < 0) {
            break;
        }
        if (p9c_walk(root, "big", &f) == 0 && p9c_open(f, 0) == 0) {
            for (uint64_t off = 0; off < (16u << 20); off += 1 << 15) {
                if (p9c_pread(f, data, 1 << 15, off) <= 0) {
                    break;
                }
            }
            p9c_clunk(f);
        }
        p9c_clunk(root);
        p9c_close(c);
        if (vm == 0) {
            after1 = resident_pages(big);
        } else {
            after2 = resident_pages(big);
        }
    }
    th_stop(s);
    free(data);
    /* the first test's upper entries: u d gone op */
    tap_ok(before < pages / 10 && after1 >= pages * 9 / 10 &&
               after2 >= after1 && count_entries(g_upper) == 4 &&
               count_entries(g_upper2) == 0,
           "two clones read one lower file: one copy in the page cache, the "
           "lower's (%ld, then %ld, then %ld of %ld pages; nothing in the "
           "uppers)",
           before, after1, after2, pages);
    th_rmtree(g_base);
}

/* The getattr qid of 'path' (zeroed when the walk fails). */
static struct p9_qid
qid9(struct p9c_fid *root, const char *path)
{
    struct p9c_fid *f;
    struct p9_rgetattr ga;
    struct p9_qid q = {0};

    if (p9c_walk(root, path, &f) == 0) {
        if (p9c_getattr(f, P9_GETATTR_BASIC, &ga) == 0) {
            q = ga.qid;
        }
        p9c_clunk(f);
    }
    return q;
}

/*
 * qid.version follows the file (mtime, as passthrough) and survives
 * copy-up; a lock range past the largest offset means "to EOF" (as
 * passthrough: one shared helper); hard links in a lower tree are broken
 * by copy-up, as on the kernel's overlayfs without index=on.
 */
static void
test_versions_links(const char *virtfsd)
{
    struct th_export ex = {.name = "ov", .path = "/ov"};
    static char exspec[3 * PATH_MAX + 32];
    struct timespec old[2] = {{.tv_sec = 1000000000, .tv_nsec = 123456789},
                              {.tv_sec = 1000000000, .tv_nsec = 123456789}};
    struct th_srv *s;
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid *f;
    struct p9_qid q0;
    struct p9_qid q1;
    struct p9_qid q2;
    char p[PATH_MAX];
    char p2[PATH_MAX];
    char buf[256];
    uint64_t lower_hash;
    int err;

    build_layers();
    snprintf(p, sizeof(p), "%s/v", g_lower);
    th_write_file(p, "version\n", 8);
    SETUP_OK(utimensat(AT_FDCWD, p, old, 0));
    snprintf(p, sizeof(p), "%s/h1", g_lower);
    snprintf(p2, sizeof(p2), "%s/h2", g_lower);
    th_write_file(p, "linked\n", 7);
    SETUP_OK(link(p, p2));
    lower_hash = th_tree_hash(g_lower);
    snprintf(exspec, sizeof(exspec), "%s,lower=%s,work=%s", g_upper, g_lower,
             g_work);
    ex.path = exspec;
    th_make_backend = make_ov;
    s = th_start(virtfsd, &ex, 1, virtfsd ? ov_args : NULL);
    err = th_mount(s, "ov", &c, &root);
    tap_ok(err == 0, "mount fresh layers for versions and links (%d)", err);
    if (err < 0) {
        return;
    }

    /* qid.version */
    q0 = qid9(root, "v");
    tap_ok(q0.version != 0, "a lower file's qid has a version (%u)",
           q0.version);
    {
        struct p9_tsetattr sa = {.valid = P9_SETATTR_MODE, .mode = 0600};
        struct p9_qid wq = {0};

        err = p9c_walk(root, "v", &f);
        if (err == 0) {
            wq = f->qid;
            err = p9c_setattr(f, &sa);
            p9c_clunk(f);
        }
        q1 = qid9(root, "v");
        snprintf(p, sizeof(p), "%s/v", g_upper);
        tap_ok(err == 0 && th_exists(p) && q1.version == q0.version &&
                   q1.path == q0.path && wq.version == q0.version,
               "copy-up (chmod) keeps qid path and version (%u, walk %u)",
               q1.version, wq.version);
    }
    tap_ok(write9(root, "v", "changed\n") == 0, "write the copied-up file");
    q2 = qid9(root, "v");
    tap_ok(q2.version != q1.version && q2.path == q1.path,
           "a write changes the version, not the path (%u -> %u)", q1.version,
           q2.version);
    tap_ok(qid9(root, "v").version == q2.version,
           "and it is stable while the file does not change");

    /* a lock to "the end of all offsets": passthrough's clamp, not EINVAL */
    {
        struct p9c_fid *l1 = NULL;
        struct p9c_fid *l2 = NULL;
        struct p9c_flock fl = {.type = P9_LOCK_TYPE_WRLCK,
                               .start = 100,
                               .length = UINT64_MAX,
                               .proc_id = 1};
        struct p9c_flock probe = {.type = P9_LOCK_TYPE_WRLCK,
                                  .start = 1ULL << 40,
                                  .length = 1,
                                  .proc_id = 2};
        uint8_t st1 = 9;

        err = p9c_walk(root, "v", &l1);
        if (err == 0) {
            err = p9c_open(l1, P9_DOTL_RDWR);
        }
        if (err == 0) {
            err = p9c_lock(l1, &fl, &st1);
        }
        if (err == 0 && (err = p9c_walk(root, "v", &l2)) == 0 &&
            (err = p9c_open(l2, P9_DOTL_RDWR)) == 0) {
            err = p9c_getlock(l2, &probe);
        }
        tap_ok(err == 0 && st1 == P9_LOCK_SUCCESS &&
                   probe.type == P9_LOCK_TYPE_WRLCK && probe.start == 100 &&
                   probe.length == 0,
               "a lock range past INT64_MAX locks to EOF (%d, status %u, "
               "seen %u %llu+%llu)",
               err, st1, probe.type, (unsigned long long)probe.start,
               (unsigned long long)probe.length);
        p9c_clunk(l1);
        p9c_clunk(l2);
    }

    /* hard links in the lower tree */
    {
        struct p9_rgetattr ga1 = {0};
        struct p9_rgetattr ga2 = {0};
        struct p9c_fid *f2;

        if (p9c_walk(root, "h1", &f) == 0) {
            p9c_getattr(f, P9_GETATTR_BASIC, &ga1);
            p9c_clunk(f);
        }
        if (p9c_walk(root, "h2", &f2) == 0) {
            p9c_getattr(f2, P9_GETATTR_BASIC, &ga2);
            p9c_clunk(f2);
        }
        tap_ok(ga1.nlink == 2 && ga1.qid.path == ga2.qid.path &&
                   ga1.qid.path != 0,
               "two lower links: one qid, nlink 2");
        tap_ok(write9(root, "h1", "h1 only\n") == 0 &&
                   cat9(root, "h1", buf, sizeof(buf)) == 8 &&
                   strcmp(buf, "h1 only\n") == 0,
               "writing one lower link copies it up");
        tap_ok(cat9(root, "h2", buf, sizeof(buf)) == 7 &&
                   strcmp(buf, "linked\n") == 0,
               "the other link keeps the lower data (copy-up breaks the "
               "link, as overlayfs without index=on)");
        memset(&ga1, 0, sizeof(ga1));
        if (p9c_walk(root, "h1", &f) == 0) {
            p9c_getattr(f, P9_GETATTR_BASIC, &ga1);
            p9c_clunk(f);
        }
        tap_ok(ga1.nlink == 1 && ga1.qid.path == ga2.qid.path,
               "the copy has nlink 1 and keeps its qid (nlink %u)",
               (unsigned)ga1.nlink);
    }
    tap_ok(th_tree_hash(g_lower) == lower_hash, "the lower tree never changed");
    p9c_clunk(root);
    p9c_close(c);
    th_stop(s);

    /* the kernel's overlayfs (index=off) does the same with hard links */
    {
        char mnt[PATH_MAX];
        char kw[PATH_MAX];
        char ku[PATH_MAX];
        char opts[3 * PATH_MAX + 64];

        snprintf(mnt, sizeof(mnt), "%s/kmnt", g_base);
        snprintf(kw, sizeof(kw), "%s/kw", g_base);
        snprintf(ku, sizeof(ku), "%s/ku", g_base);
        mkdir(mnt, 0755);
        mkdir(kw, 0755);
        mkdir(ku, 0755);
        snprintf(opts, sizeof(opts),
                 "lowerdir=%s,upperdir=%s,workdir=%s,"
                 "index=off",
                 g_lower, ku, kw);
        if (mount("overlay", mnt, "overlay", 0, opts) == 0) {
            char h[PATH_MAX + 8];
            int fd;

            snprintf(h, sizeof(h), "%s/h1", mnt);
            fd = open(h, O_WRONLY | O_TRUNC);
            err = fd >= 0 && write(fd, "h1 only\n", 8) == 8 ? 0 : -1;
            if (fd >= 0) {
                close(fd);
            }
            snprintf(h, sizeof(h), "%s/h2", mnt);
            buf[0] = '\0';
            fd = open(h, O_RDONLY);
            if (fd >= 0) {
                ssize_t r = read(fd, buf, sizeof(buf) - 1);

                buf[r > 0 ? r : 0] = '\0';
                close(fd);
            }
            tap_ok(err == 0 && strcmp(buf, "linked\n") == 0,
                   "kernel overlayfs (index=off) also breaks the link");
            umount(mnt);
        } else {
            tap_ok(false, "mount -t overlay: %s (needs root)", strerror(errno));
        }
    }
    th_rmtree(g_base);
}

/* Export options a layered export does not implement are refused (exit
 * 2), not silently ignored; the plain layered line serves (exit 0). */
static void
test_refused_options(const char *virtfsd)
{
    static const char *const bad[] = {
        ",nodev",
        ",nosuid",
        ",security_model=mapped-xattr",
        ",security_model=mapped-file",
        ",security_model=none",
        ",fmode=0644",
        ",dmode=0755",
        " --translate-uid=map:0:1000:1",
        " --all-squash",
    };
    char cmd[3 * PATH_MAX];
    char *t = th_mkdtemp("ovn");
    int rc;
    int ok = 0;

    snprintf(cmd, sizeof(cmd),
             "%s --export v=%s/u,lower=%s --sandbox none "
             "--seccomp none --modcaps=+sys_admin --stdio </dev/null "
             "2>/dev/null",
             virtfsd, t, t);
    rc = system(cmd);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r;

        snprintf(cmd, sizeof(cmd),
                 "%s --export v=%s/u,lower=%s%s --sandbox "
                 "none --seccomp none --modcaps=+sys_admin --stdio </dev/null "
                 "2>/dev/null",
                 virtfsd, t, t, bad[i]);
        r = system(cmd);
        if (WIFEXITED(r) && WEXITSTATUS(r) == 2) {
            ok++;
        } else {
            printf("# not refused: %s (%d)\n", bad[i], r);
        }
    }
    tap_ok(WIFEXITED(rc) && WEXITSTATUS(rc) == 0 &&
               ok == (int)(sizeof(bad) / sizeof(bad[0])),
           "options a layered export ignores are refused (%d of %zu; plain "
           "line %d)",
           ok, sizeof(bad) / sizeof(bad[0]), rc);
    snprintf(cmd, sizeof(cmd),
             "%s --export v=%s/p,work=%s/w --stdio "
             "</dev/null 2>/dev/null",
             virtfsd, t, t);
    {
        char pdir[PATH_MAX];

        snprintf(pdir, sizeof(pdir), "%s/p", t);
        mkdir(pdir, 0755);
    }
    rc = system(cmd);
    tap_ok(WIFEXITED(rc) && WEXITSTATUS(rc) == 2,
           "work= without lower= is refused (%d)", rc);
    th_rmtree(t);
    free(t);
}

#define OV_DEEP 3000

/*
 * A write to a file DEPTH directories down a lower tree copies every one
 * of them up, on a server worker (256 KiB of stack): iteratively, so the
 * depth of the lower tree does not matter.
 */
static void
test_deep_copy_up(void)
{
    static char spec[3 * PATH_MAX + 32];
    struct th_export exo = {.name = "ov", .path = spec};
    struct p9c_fid *root;
    struct p9c_fid *cur;
    struct p9c_fid *f = NULL;
    struct p9c_conn *c;
    struct th_srv *s;
    int dfd;
    int levels = 0;
    int err;

    build_layers();
    dfd = th_chain(g_lower, "deep", OV_DEEP, true, &levels);
    if (dfd >= 0) {
        int fd = openat(dfd, "f", O_WRONLY | O_CREAT, 0644);

        if (fd >= 0) {
            (void)!write(fd, "lower\n", 6);
            close(fd);
        }
        close(dfd);
    }
    snprintf(spec, sizeof(spec), "%s,lower=%s,work=%s", g_upper, g_lower,
             g_work);
    th_make_backend = make_ov;
    s = th_start(NULL, &exo, 1, NULL);
    if (th_mount(s, "ov", &c, &root) < 0) {
        tap_ok(false, "deep/mount");
        th_stop(s);
        return;
    }
    cur = root;
    levels = 0;
    for (int i = 0; i < OV_DEEP; i++) {
        struct p9c_fid *next;

        if (p9c_walk(cur, "deep", &next) < 0) {
            break;
        }
        if (cur != root) {
            p9c_clunk(cur);
        }
        cur = next;
        levels++;
    }
    err = p9c_walk(cur, "f", &f);
    err = err ? err : p9c_open(f, P9_DOTL_RDWR);
    err = err ? err : (p9c_pwrite(f, "upper\n", 6, 0) == 6 ? 0 : -EIO);
    tap_ok(levels == OV_DEEP && err == 0,
           "deep/a write %d lower directories down copies them all up on a "
           "worker (%d levels, %d)",
           OV_DEEP, levels, err);
    /* on the host: the chain and the file are in the upper now */
    dfd = th_chain(g_upper, "deep", OV_DEEP, false, &levels);
    {
        char buf[16] = "";
        int fd = dfd >= 0 ? openat(dfd, "f", O_RDONLY) : -1;

        if (fd >= 0) {
            (void)!read(fd, buf, sizeof(buf) - 1);
            close(fd);
        }
        tap_ok(levels == OV_DEEP && strcmp(buf, "upper\n") == 0,
               "deep/the upper holds the %d directories and the new data "
               "(%d)",
               OV_DEEP, levels);
    }
    if (dfd >= 0) {
        close(dfd);
    }
    if (f != NULL) {
        p9c_clunk(f);
    }
    if (cur != root) {
        p9c_clunk(cur);
    }
    p9c_clunk(root);
    p9c_close(c);
    th_stop(s);
}

static void
fds4(struct p9s_config *cfg)
{
    cfg->session_fds = 4;
}

/* A layered export never reclaims descriptors: every open file counts
 * against the session's --session-fds (4 here). */
static void
test_session_fds(void)
{
    static char spec[3 * PATH_MAX + 32];
    struct th_export exo = {.name = "ov", .path = spec};
    const struct th_export *ex = &exo;
    struct p9c_fid *f[6] = {NULL};
    struct p9c_fid *root;
    struct p9c_conn *c;
    struct p9c_conn *c2;
    struct p9c_fid *root2;
    struct th_srv *s;
    int opened = 0;
    int err = 0;

    build_layers();
    snprintf(spec, sizeof(spec), "%s,lower=%s,work=%s", g_upper, g_lower,
             g_work);
    th_config_hook = fds4;
    th_make_backend = make_ov;
    s = th_start(NULL, ex, 1, NULL);
    th_config_hook = NULL;
    if (th_mount(s, "ov", &c, &root) < 0 ||
        th_mount(s, "ov", &c2, &root2) < 0) {
        tap_ok(false, "session-fds/mount");
        th_stop(s);
        return;
    }
    for (int i = 0; i < 6; i++) {
        err = p9c_walk(root, "a", &f[i]);
        err = err ? err : p9c_open(f[i], 0);
        if (err < 0) {
            break;
        }
        opened++;
    }
    tap_ok(opened == 4 && err == -EMFILE,
           "session-fds/layered export: 4 open files, then EMFILE (%d, %d)",
           opened, err);
    {
        struct p9c_fid *g = NULL;

        err = p9c_walk(root2, "a", &g);
        err = err ? err : p9c_open(g, 0);
        tap_ok(err == 0, "session-fds/another session opens (%d)", err);
        if (g != NULL) {
            p9c_clunk(g);
        }
    }
    p9c_clunk(f[0]);
    f[0] = NULL;
    err = p9c_walk(root, "a", &f[0]);
    err = err ? err : p9c_open(f[0], 0);
    tap_ok(err == 0, "session-fds/a clunk makes room (%d)", err);
    for (int i = 0; i < 6; i++) {
        if (f[i] != NULL) {
            p9c_clunk(f[i]);
        }
    }
    p9c_clunk(root);
    p9c_clunk(root2);
    p9c_close(c);
    p9c_close(c2);
    th_stop(s);
}

/*
 * BE_OPEN_NOWAIT (the server's first try of an open on a transport's
 * thread): what could wait gives -EAGAIN and changes nothing -- a write
 * open that needs a copy-up, a truncation, a create -- while a read open
 * of a lower file goes through.  Backend calls, in-process only.
 */
static char lent_buf[4096];

/* A be_fd_sink that reads what it is lent, as the stream transport's
 * splice would. */
static ssize_t
lent_pread(void *arg, int fd, uint64_t off, size_t count)
{
    ssize_t n;

    (void)arg;
    n = pread(fd, lent_buf, count < sizeof(lent_buf) ? count : sizeof(lent_buf),
              (off_t)off);
    return n < 0 ? -errno : n;
}

/* be_ops.read_fd lends the descriptor that read uses: the same bytes. */
static void
test_read_fd(struct backend *be, struct be_handle *h)
{
    char buf[4096];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    ssize_t a = be->ops->read(be, h, &iov, 1, 0);
    ssize_t b = be->ops->read_fd == NULL
                    ? -ENOSYS
                    : be->ops->read_fd(be, h, 0, sizeof(buf), lent_pread, NULL);

    tap_ok(a > 0 && b == a && memcmp(buf, lent_buf, (size_t)a) == 0,
           "read_fd: lends the file's descriptor, same bytes as read (%zd, "
           "%zd)",
           a, b);
}

static void
test_nowait(struct backend *be)
{
    const struct be_ops *o = be->ops;
    struct be_node *root = NULL;
    struct be_node *dir = NULL;
    struct be_node *n = NULL;
    struct be_node *nn = NULL;
    struct be_handle *h = NULL;
    char up[PATH_MAX];
    char mk[2][PATH_MAX];
    struct p9_qid q;
    struct stat st;
    uint32_t iou;
    int err;

    if (o->root(be, &root, &q) < 0 ||
        o->walk1(be, root, "full", &dir, &q) < 0 ||
        o->walk1(be, dir, "f", &n, &q) < 0) {
        tap_ok(false, "nowait: walk to full/f");
        goto out;
    }
    snprintf(up, sizeof(up), "%s/full/f", g_upper);
    err = o->open(be, n, P9_DOTL_WRONLY | BE_OPEN_NOWAIT, &h, &q, &iou);
    tap_ok(err == -EAGAIN && lstat(up, &st) < 0,
           "nowait: a write open that needs a copy-up gives EAGAIN, nothing "
           "copied (%d)",
           err);
    err = o->open(be, n, P9_DOTL_RDONLY | BE_OPEN_NOWAIT, &h, &q, &iou);
    tap_ok(err == 0, "nowait: a read open of a lower file goes through (%d)",
           err);
    if (err == 0) {
        test_read_fd(be, h);
        o->close(be, h);
    }
    err = o->open(be, n, P9_DOTL_RDONLY | P9_DOTL_TRUNC | BE_OPEN_NOWAIT, &h,
                  &q, &iou);
    tap_ok(err == -EAGAIN, "nowait: a truncating open gives EAGAIN (%d)", err);
    err = o->create(be, dir, "nw", P9_DOTL_WRONLY | BE_OPEN_NOWAIT, 0644,
                    (uint32_t)-1, &nn, &h, &q, &iou);
    snprintf(mk[0], sizeof(mk[0]), "%s/full/nw", g_upper);
    snprintf(mk[1], sizeof(mk[1]), "%s/full/nw", g_lower);
    tap_ok(err == -EAGAIN && lstat(mk[0], &st) < 0 && lstat(mk[1], &st) < 0,
           "nowait: a create gives EAGAIN, nothing made (%d)", err);
    err = o->open(be, n, P9_DOTL_WRONLY, &h, &q, &iou);
    tap_ok(err == 0 && lstat(up, &st) == 0,
           "nowait: without it, the write open copies up (%d)", err);
    if (err == 0) {
        o->close(be, h);
    }
out:
    if (n != NULL) {
        o->node_put(be, n);
    }
    if (dir != NULL) {
        o->node_put(be, dir);
    }
    if (root != NULL) {
        o->node_put(be, root);
    }
}

int
main(int argc, char **argv)
{
    struct th_export ex = {.name = "ov", .path = "/ov"};
    static char exspec[3 * PATH_MAX + 32];
    struct th_srv *s;
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid *f;
    struct p9c_fid *d;
    char buf[4096];
    char buf2[4096];
    uint64_t lower_hash;
    uint64_t q;
    int err;

    if (argc > 1 && strcmp(argv[1], "--reflink") == 0) {
        return test_reflink();
    }

    build_layers();
    lower_hash = th_tree_hash(g_lower);
    /* fresh copies of both layers for the kernel to replay on */
    snprintf(buf, sizeof(buf),
             "cp -a %s/lower %s/klower && cp -a %s/upper "
             "%s/kupper",
             g_base, g_base, g_base, g_base);
    tap_ok(system(buf) == 0, "copy the layers for the kernel replay");
    snprintf(exspec, sizeof(exspec), "%s,lower=%s,work=%s", g_upper, g_lower,
             g_work);
    ex.path = exspec;
    th_make_backend = make_ov;
    s = th_start(argc > 1 ? argv[1] : NULL, &ex, 1, argc > 1 ? ov_args : NULL);
    err = th_mount(s, "ov", &c, &root);
    tap_ok(err == 0, "mount the layered export (%d)", err);
    if (err < 0) {
        return tap_done();
    }

    /* 1. the merged view */
    tap_ok(ls9(root, "", 8192, buf, sizeof(buf)) == 0 &&
               strcmp(buf, "a d empty full ln op u") == 0,
           "root lists both layers, hides the whiteout (%s)", buf);
    tap_ok(cat9(root, "a", buf, sizeof(buf)) == 8 &&
               strcmp(buf, "lower a\n") == 0,
           "a lower file reads");
    tap_ok(cat9(root, "u", buf, sizeof(buf)) == 8, "an upper file reads");
    tap_ok(p9c_walk(root, "gone", &f) == -ENOENT, "a whiteout hides a name");
    tap_ok(ls9(root, "d", 8192, buf, sizeof(buf)) == 0 &&
               strcmp(buf, "x y") == 0,
           "a merged directory merges (%s)", buf);
    tap_ok(ls9(root, "op", 8192, buf, sizeof(buf)) == 0 &&
               strcmp(buf, "mine") == 0,
           "an opaque directory stops (%s)", buf);
    tap_ok(p9c_walk(root, "op/hidden", &f) == -ENOENT,
           "no walk through an opaque directory");
    tap_ok(ls9(root, "", 64, buf2, sizeof(buf2)) == 0 &&
               strcmp(buf2, "a d empty full ln op u") == 0,
           "readdir resumes exactly with small reads (%s)", buf2);
    tap_ok(p9c_walk(root, "../../a", &f) == 0 && p9c_clunk(f) == 0,
           "'..' at the root stays at the root");
    tap_ok(p9c_walk(root, "ln", &f) == 0 &&
               p9c_readlink(f, buf, sizeof(buf)) >= 0 && strcmp(buf, "a") == 0,
           "readlink of a lower symlink");
    p9c_clunk(f);
    err = p9c_xattr_set(root, "trusted.overlay.opaque", "y", 1, 0);
    tap_ok(err < 0 && p9c_xattr_set(root, "user.overlay.whiteout", "", 0,
                                    P9_XATTR_CREATE) < 0,
           "the client cannot set overlay's own xattrs (%d)", err);

    if (s->nbe > 0) {
        test_nowait(s->be[0]);
    }

    /* 2. copy-up */
    q = qpath9(root, "a");
    tap_ok(write9(root, "a", "new a\n") == 0, "open a lower file for write");
    tap_ok(cat9(root, "a", buf, sizeof(buf)) == 6 &&
               strcmp(buf, "new a\n") == 0,
           "reads see the new data");
    snprintf(buf2, sizeof(buf2), "%s/a", g_upper);
    {
        struct stat st;

        tap_ok(lstat(buf2, &st) == 0 && (st.st_mode & 07777) == 0640,
               "copied up with its mode");
    }
    tap_ok(qpath9(root, "a") == q && q != 0, "the qid survives copy-up");
    {
        struct p9c_fid *dd;
        struct p9c_dir *it = NULL;
        struct p9c_dirent de;
        int same = 0;

        if (p9c_walk(root, "", &dd) == 0 && p9c_open(dd, 0) == 0 &&
            p9c_dir_open(dd, 8192, &it) == 0) {
            while (p9c_dir_next(it, &de) > 0) {
                if (strcmp(de.name, "a") == 0 || strcmp(de.name, "d") == 0 ||
                    strcmp(de.name, "u") == 0 || strcmp(de.name, "op") == 0) {
                    same += de.qid.path == qpath9(root, de.name);
                }
            }
            p9c_dir_close(it);
        }
        p9c_clunk(dd);
        tap_ok(same == 4, "readdir qids equal walk qids (copied-up, merged, "
                          "upper, opaque)");
    }
    {
        struct p9_tsetattr sa = {.valid = P9_SETATTR_MODE, .mode = 0600};

        tap_ok(p9c_walk(root, "full/f", &f) == 0 && p9c_setattr(f, &sa) == 0,
               "chmod a lower file in a lower-only dir");
        p9c_clunk(f);
        snprintf(buf2, sizeof(buf2), "%s/full/f", g_upper);
        tap_ok(th_exists(buf2), "parents copied up first");
    }
    tap_ok(p9c_walk(root, "d/x", &f) == 0 &&
               p9c_xattr_set(f, "user.test", "v", 1, 0) == 0,
           "setxattr copies up");
    tap_ok(p9c_xattr_get(f, "user.test", buf, sizeof(buf)) == 1,
           "and the xattr reads back");
    p9c_clunk(f);

    /* 3. namespace */
    tap_ok(p9c_unlinkat(root, "ln", 0) == 0 && upper_is_whiteout("ln") &&
               p9c_walk(root, "ln", &f) == -ENOENT,
           "unlink of a lower name leaves a whiteout");
    tap_ok(p9c_unlinkat(root, "full", P9_DOTL_AT_REMOVEDIR) == -ENOTEMPTY,
           "rmdir of a non-empty merged dir");
    err = p9c_walk(root, "full", &d);
    if (err == 0) {
        err = p9c_unlinkat(d, "f", 0);
        p9c_clunk(d);
    }
    if (err == 0) {
        err = p9c_unlinkat(root, "full", P9_DOTL_AT_REMOVEDIR);
    }
    tap_ok(err == 0 && upper_is_whiteout("full"),
           "rmdir once empty across layers (%d)", err);
    tap_ok(p9c_mkdir(root, "full", 0755, 0, NULL) == 0 &&
               ls9(root, "full", 8192, buf, sizeof(buf)) == 0 && buf[0] == '\0',
           "mkdir over a whiteout is opaque (empty: '%s')", buf);
    tap_ok(p9c_walk(root, "", &d) == 0 &&
               p9c_create(d, "gone", P9_DOTL_RDWR, 0644, 0) == 0 &&
               p9c_pwrite(d, "again\n", 6, 0) == 6,
           "create over a whiteout");
    p9c_clunk(d);
    tap_ok(p9c_renameat(root, "d", root, "d2") == -EXDEV,
           "rename of a lower directory: EXDEV");
    q = qpath9(root, "u");
    tap_ok(p9c_renameat(root, "u", root, "u2") == 0 && qpath9(root, "u2") == q,
           "rename of an upper file");
    tap_ok(p9c_walk(root, "d", &d) == 0 &&
               p9c_renameat(d, "x", root, "x2") == 0 && p9c_clunk(d) == 0 &&
               upper_is_whiteout("d/x") && p9c_walk(root, "d/x", &f) == -ENOENT,
           "rename of a lower file leaves a whiteout");
    tap_ok(p9c_mkdir(root, "nd", 0700, 0, NULL) == 0 &&
               p9c_symlink(root, "sl", "u2", 0, NULL) == 0 &&
               p9c_walk(root, "u2", &f) == 0 && p9c_link(root, f, "hl") == 0,
           "mkdir, symlink, link in the upper");
    p9c_clunk(f);
    tap_ok(p9c_unlinkat(root, "empty", P9_DOTL_AT_REMOVEDIR) == 0 &&
               p9c_walk(root, "empty", &f) == -ENOENT,
           "rmdir of a lower-only dir");
    tap_ok(p9c_renameat(root, "full", root, "full2") == 0 &&
               upper_is_whiteout("full"),
           "an opaque upper dir renames, leaving a whiteout");

    /* what the client sees now */
    buf[0] = '\0';
    manifest9(root, "", buf, sizeof(buf));
    tap_ok(th_tree_hash(g_lower) == lower_hash, "the lower tree never changed");
    p9c_clunk(root);
    p9c_close(c);
    th_stop(s);

    /* 4. the kernel's overlayfs on the same layers shows the same tree */
    {
        char mnt[PATH_MAX];
        char opts[3 * PATH_MAX + 64];
        char kwork[PATH_MAX];

        snprintf(mnt, sizeof(mnt), "%s/mnt", g_base);
        snprintf(kwork, sizeof(kwork), "%s/kwork", g_base);
        mkdir(mnt, 0755);
        mkdir(kwork, 0755);
        snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s",
                 g_lower, g_upper, kwork);
        if (mount("overlay", mnt, "overlay", 0, opts) == 0) {
            buf2[0] = '\0';
            manifest_host(mnt, "", buf2, sizeof(buf2));
            tap_ok(strcmp(buf, buf2) == 0,
                   "kernel overlayfs shows what the client saw");
            if (strcmp(buf, buf2) != 0) {
                printf("# 9p:     %s\n# kernel: %s\n", buf, buf2);
            }
            umount(mnt);
        } else {
            tap_ok(false, "mount -t overlay: %s (needs root)", strerror(errno));
        }
        snprintf(opts, sizeof(opts),
                 "lowerdir=%s/klower,upperdir=%s/kupper,"
                 "workdir=%s",
                 g_base, g_base, kwork);
        if (mount("overlay", mnt, "overlay", 0, opts) == 0) {
            replay_on_kernel(mnt);
            buf2[0] = '\0';
            manifest_host(mnt, "", buf2, sizeof(buf2));
            tap_ok(strcmp(buf, buf2) == 0,
                   "the same changes on a kernel overlayfs give the same tree");
            if (strcmp(buf, buf2) != 0) {
                printf("# 9p:     %s\n# kernel: %s\n", buf, buf2);
            }
            umount(mnt);
            {
                char k[PATH_MAX];

                buf[0] = buf2[0] = '\0';
                snprintf(k, sizeof(k), "%s/kupper", g_base);
                upper_shape(g_upper, "", buf, sizeof(buf));
                upper_shape(k, "", buf2, sizeof(buf2));
                tap_ok(strcmp(buf, buf2) == 0,
                       "and the same upper on disk: "
                       "whiteouts, opaque dirs, copied-up objects");
                if (strcmp(buf, buf2) != 0) {
                    printf("# ours:   %s\n# kernel: %s\n", buf, buf2);
                }
            }
        } else {
            tap_ok(false, "mount -t overlay: %s (needs root)", strerror(errno));
        }
    }
    if (getenv("OV_KEEP") == NULL) {
        th_rmtree(g_base);
    } else {
        printf("# kept %s\n", g_base);
    }
    test_types(argc > 1 ? argv[1] : NULL);
    test_two_lowers(argc > 1 ? argv[1] : NULL);
    test_versions_links(argc > 1 ? argv[1] : NULL);
    if (argc == 1) {
        test_page_cache();
        test_session_fds();
        test_deep_copy_up();
    }
    if (argc > 1) {
        char cmd[2 * PATH_MAX];
        int rc;

        char *t = th_mkdtemp("ovn");

        test_crash(argv[1]); /* needs a daemon of its own to kill */
        test_refused_options(argv[1]);
        /* the same line without nodev serves (EOF on stdin: exit 0) */
        snprintf(
            cmd, sizeof(cmd),
            "%s --export v=%s/u,lower=%s --sandbox none --seccomp none --modcaps=+sys_admin --stdio "
            "</dev/null 2>/dev/null",
            argv[1], t, t);
        rc = system(cmd);
        snprintf(
            cmd, sizeof(cmd),
            "%s --export v=%s/u,lower=%s,nodev --sandbox none --seccomp none --modcaps=+sys_admin --stdio "
            "</dev/null 2>/dev/null",
            argv[1], t, t);
        {
            int rc2 = system(cmd);

            tap_ok(WIFEXITED(rc) && WEXITSTATUS(rc) == 0 && WIFEXITED(rc2) &&
                       WEXITSTATUS(rc2) == 2,
                   "nodev with lower= is refused, not ignored (%d, %d)", rc,
                   rc2);
        }
        th_rmtree(t);
        free(t);
    }
    return tap_done();
}
