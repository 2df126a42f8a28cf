/* SPDX-License-Identifier: MIT */
/*
 * Passthrough backend, adversarial walks: ".." at the root, illegal names,
 * host symlinks (absolute and relative escapes) are nodes that cannot be
 * walked through or opened, namespace ops through symlinked directories
 * cannot reach outside, device nodes only inside, read-only export.
 */
#include "pt_test.h"

#include <sys/sysmacros.h>

static char *outside;
static char *exp_root;

static void
test_dotdot_and_names(struct backend *be)
{
    struct p9_qid rq;
    struct p9_qid q;
    struct be_node *root = get_root(be, &rq);
    struct be_node *n = NULL;
    struct be_node *sub = NULL;
    struct be_node *up = NULL;
    int err;

    err = OPS(be)->walk1(be, root, "..", &n, &q);
    tap_ok(err == 0 && q.path == rq.path && q.type == P9_QTDIR,
           "walk/dotdot_from_root stays at root");
    if (err == 0) {
        struct be_node *n2 = NULL;
        struct p9_qid q2;

        err = OPS(be)->walk1(be, n, "..", &n2, &q2);
        tap_ok(err == 0 && q2.path == rq.path, "walk/dotdot twice stays");
        if (err == 0) {
            OPS(be)->node_put(be, n2);
        }
        OPS(be)->node_put(be, n);
    }
    err = OPS(be)->walk1(be, root, "/", &n, &q);
    tap_ok(err == -EINVAL || err == -ENOENT, "walk/name '/' refused (%d)", err);
    err = OPS(be)->walk1(be, root, "a/b", &n, &q);
    tap_ok(err == -EINVAL || err == -ENOENT, "walk/name 'a/b' refused (%d)",
           err);
    err = OPS(be)->walk1(be, root, "", &n, &q);
    tap_ok(err == -EINVAL || err == -ENOENT, "walk/empty name refused (%d)",
           err);
    err = OPS(be)->walk1(be, root, ".", &n, &q);
    tap_ok(err == -EINVAL || err == -ENOENT, "walk/'.' refused (%d)", err);
    err = OPS(be)->walk1(be, root, "../etc", &n, &q);
    tap_ok(err < 0, "walk/'../etc' refused (%d)", err);

    /* ".." below the root goes to the parent. */
    err = OPS(be)->walk1(be, root, "sub", &sub, &q);
    tap_ok(err == 0 && q.type == P9_QTDIR, "walk/sub is a dir");
    if (err == 0) {
        err = OPS(be)->walk1(be, sub, "..", &up, &q);
        tap_ok(err == 0 && q.path == rq.path, "walk/sub/.. is root");
        if (err == 0) {
            OPS(be)->node_put(be, up);
        }
        OPS(be)->node_put(be, sub);
    }
    OPS(be)->node_put(be, root);
}

/*
 * A directory moved out of the export (by the host, or by a client of an
 * overlapping export) must not become a way out: ".." from it is refused.
 */
static void
test_dotdot_after_move_out(struct backend *be)
{
    struct p9_qid rq;
    struct p9_qid q;
    struct be_node *root = get_root(be, &rq);
    struct be_node *mv = NULL;
    struct be_node *deep = NULL;
    struct be_node *up = NULL;
    char from[512];
    char to[512];
    int err;

    snprintf(from, sizeof(from), "%s/mv", exp_root);
    mkdir(from, 0755);
    snprintf(from, sizeof(from), "%s/mv/deep", exp_root);
    mkdir(from, 0755);
    err = OPS(be)->walk1(be, root, "mv", &mv, &q);
    if (err == 0) {
        err = OPS(be)->walk1(be, mv, "deep", &deep, &q);
    }
    tap_ok(err == 0, "walk/mv/deep");
    if (err != 0) {
        OPS(be)->node_put(be, root);
        return;
    }
    err = OPS(be)->walk1(be, deep, "..", &up, &q);
    tap_ok(err == 0, "walk/mv/deep/.. inside the export works");
    if (err == 0) {
        OPS(be)->node_put(be, up);
    }
    snprintf(from, sizeof(from), "%s/mv", exp_root);
    snprintf(to, sizeof(to), "%s/moved", outside);
    tap_ok(rename(from, to) == 0, "host moves mv out of the export");
    up = NULL;
    err = OPS(be)->walk1(be, deep, "..", &up, &q);
    tap_ok(err < 0 && up == NULL,
           "walk/.. from a directory moved outside is refused (%d)", err);
    if (err == 0) {
        OPS(be)->node_put(be, up);
    }
    up = NULL;
    err = OPS(be)->walk1(be, mv, "..", &up, &q);
    tap_ok(err < 0 && up == NULL,
           "walk/.. to the outside parent is refused (%d)", err);
    if (err == 0) {
        OPS(be)->node_put(be, up);
    }
    rename(to, from);
    OPS(be)->node_put(be, deep);
    OPS(be)->node_put(be, mv);
    OPS(be)->node_put(be, root);
}

static void
test_symlinks(struct backend *be)
{
    static const char *const links[] = {"etc", "up", "outs", "self"};
    struct be_node *root = get_root(be, NULL);

    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        struct be_node *l = NULL;
        struct be_node *x = NULL;
        struct be_handle *h = NULL;
        struct p9_qid q;
        struct p9_rgetattr ga;
        uint32_t iou;
        char buf[256];
        ssize_t len;
        int err;

        err = OPS(be)->walk1(be, root, links[i], &l, &q);
        if (!tap_ok(err == 0 && q.type == P9_QTSYMLINK,
                    "symlink/%s is a symlink node", links[i])) {
            continue;
        }
        err = OPS(be)->getattr(be, l, NULL, P9_GETATTR_ALL, &ga);
        tap_ok(err == 0 && S_ISLNK(ga.mode), "symlink/%s getattr is lnk",
               links[i]);
        err = OPS(be)->walk1(be, l, "passwd", &x, &q);
        tap_ok(err == -ELOOP || err == -ENOTDIR,
               "symlink/%s walk through fails (%d)", links[i], err);
        err = OPS(be)->walk1(be, l, "secret", &x, &q);
        tap_ok(err == -ELOOP || err == -ENOTDIR,
               "symlink/%s walk to secret fails (%d)", links[i], err);
        err = OPS(be)->open(be, l, P9_DOTL_RDONLY, &h, &q, &iou);
        tap_ok(err == -ELOOP, "symlink/%s open fails ELOOP (%d)", links[i],
               err);
        err = OPS(be)->open(be, l, P9_DOTL_RDONLY | P9_DOTL_DIRECTORY, &h, &q,
                            &iou);
        tap_ok(err == -ELOOP, "symlink/%s opendir fails (%d)", links[i], err);
        err = OPS(be)->create(be, l, "new", P9_DOTL_RDWR, 0644, 0, &x, &h, &q,
                              &iou);
        tap_ok(err == -ENOTDIR, "symlink/%s create inside fails (%d)", links[i],
               err);
        err = OPS(be)->mkdir(be, l, "newdir", 0755, 0, &q);
        tap_ok(err == -ENOTDIR, "symlink/%s mkdir inside fails", links[i]);
        err = OPS(be)->mknod(be, l, "nod", S_IFIFO | 0644, 0, 0, 0, &q);
        tap_ok(err == -ENOTDIR, "symlink/%s mknod inside fails", links[i]);
        err = OPS(be)->symlink(be, l, "sl", "x", 0, &q);
        tap_ok(err == -ENOTDIR, "symlink/%s symlink inside fails", links[i]);
        err = OPS(be)->renameat(be, root, "file", l, "moved");
        tap_ok(err == -ENOTDIR, "symlink/%s renameat into fails (%d)", links[i],
               err);
        err = OPS(be)->renameat(be, l, "secret", root, "stolen");
        tap_ok(err == -ENOTDIR, "symlink/%s renameat out of fails (%d)",
               links[i], err);
        err = OPS(be)->unlinkat(be, l, "secret", 0);
        tap_ok(err == -ENOTDIR, "symlink/%s unlinkat inside fails", links[i]);
        {
            struct be_node *f = NULL;

            if (OPS(be)->walk1(be, root, "file", &f, &q) == 0) {
                err = OPS(be)->link(be, l, "hl", f);
                tap_ok(err == -ENOTDIR, "symlink/%s link into fails (%d)",
                       links[i], err);
                err = OPS(be)->rename(be, f, l, "moved");
                tap_ok(err == -ENOTDIR, "symlink/%s Trename into fails (%d)",
                       links[i], err);
                OPS(be)->node_put(be, f);
            }
        }
        len = OPS(be)->readlink(be, l, buf, sizeof(buf));
        tap_ok(len > 0, "symlink/%s readlink", links[i]);
        err = OPS(be)->statfs(be, l, &(struct p9_rstatfs){0});
        tap_ok(err == 0, "symlink/%s statfs works on the link itself",
               links[i]);
        OPS(be)->node_put(be, l);
    }
    OPS(be)->node_put(be, root);
}

static void
test_readlink(struct backend *be)
{
    struct be_node *root = get_root(be, NULL);
    struct be_node *l = NULL;
    char buf[64];
    ssize_t len;

    if (walkp(be, root, "up", &l) == 0) {
        len = OPS(be)->readlink(be, l, buf, sizeof(buf));
        tap_ok(len == 5 && memcmp(buf, "../..", 5) == 0, "readlink/up");
        OPS(be)->node_put(be, l);
    }
    if (walkp(be, root, "file", &l) == 0) {
        len = OPS(be)->readlink(be, l, buf, sizeof(buf));
        tap_ok(len == -EINVAL, "readlink/of a file is EINVAL");
        OPS(be)->node_put(be, l);
    }
    OPS(be)->node_put(be, root);
}

static void
test_mknod_dev(struct backend *be)
{
    struct be_node *root = get_root(be, NULL);
    struct be_node *l = NULL;
    struct be_node *d = NULL;
    struct be_handle *h = NULL;
    struct p9_qid q;
    struct stat st;
    char path[512];
    uint32_t iou;
    int err;

    if (geteuid() != 0) {
        tap_ok(true, "# SKIP mknod device needs root");
        OPS(be)->node_put(be, root);
        return;
    }
    err = OPS(be)->mknod(be, root, "null", S_IFCHR | 0666, 1, 3, 0, &q);
    snprintf(path, sizeof(path), "%s/null", exp_root);
    tap_ok(err == 0 && lstat(path, &st) == 0 && S_ISCHR(st.st_mode) &&
               st.st_rdev == makedev(1, 3),
           "mknod/char device inside works (%d)", err);
    if (walkp(be, root, "null", &d) == 0) {
        err = OPS(be)->open(be, d, P9_DOTL_RDWR, &h, &q, &iou);
        tap_ok(err == -EPERM, "mknod/device node is not opened (%d)", err);
        OPS(be)->node_put(be, d);
    }
    if (walkp(be, root, "outs", &l) == 0) {
        err = OPS(be)->mknod(be, l, "null", S_IFCHR | 0666, 1, 3, 0, &q);
        tap_ok(err == -ENOTDIR, "mknod/through symlink to outside fails");
        OPS(be)->node_put(be, l);
    }
    err = OPS(be)->mknod(be, root, "..", S_IFCHR | 0666, 1, 3, 0, &q);
    tap_ok(err < 0, "mknod/'..' refused");
    err = OPS(be)->mknod(be, root, "a/b", S_IFIFO | 0666, 0, 0, 0, &q);
    tap_ok(err < 0, "mknod/'a/b' refused");
    OPS(be)->node_put(be, root);
}

static void
test_readonly(void)
{
    struct backend *be = be_open(exp_root, true, false);
    struct be_node *root = get_root(be, NULL);
    struct be_node *f = NULL;
    struct be_node *x = NULL;
    struct be_handle *h = NULL;
    struct p9_qid q;
    struct p9_tsetattr sa = {.valid = P9_SETATTR_MODE, .mode = 0600};
    uint32_t iou;
    int err;

    tap_ok(OPS(be)->create(be, root, "ro", P9_DOTL_RDWR, 0644, 0, &x, &h, &q,
                           &iou) == -EROFS,
           "ro/create");
    tap_ok(OPS(be)->mkdir(be, root, "ro", 0755, 0, &q) == -EROFS, "ro/mkdir");
    tap_ok(OPS(be)->mknod(be, root, "ro", S_IFIFO | 0644, 0, 0, 0, &q) ==
               -EROFS,
           "ro/mknod");
    tap_ok(OPS(be)->symlink(be, root, "ro", "x", 0, &q) == -EROFS,
           "ro/symlink");
    tap_ok(OPS(be)->unlinkat(be, root, "file", 0) == -EROFS, "ro/unlinkat");
    tap_ok(OPS(be)->renameat(be, root, "file", root, "f2") == -EROFS,
           "ro/renameat");
    if (walkp(be, root, "file", &f) == 0) {
        tap_ok(OPS(be)->open(be, f, P9_DOTL_WRONLY, &h, &q, &iou) == -EROFS,
               "ro/open for write");
        tap_ok(OPS(be)->open(be, f, P9_DOTL_RDONLY | P9_DOTL_TRUNC, &h, &q,
                             &iou) == -EROFS,
               "ro/open O_TRUNC");
        err = OPS(be)->open(be, f, P9_DOTL_RDONLY, &h, &q, &iou);
        tap_ok(err == 0, "ro/open for read works");
        if (err == 0) {
            struct iovec iov = {.iov_base = "x", .iov_len = 1};

            tap_ok(OPS(be)->write(be, h, &iov, 1, 0) == -EROFS, "ro/write");
            OPS(be)->close(be, h);
        }
        tap_ok(OPS(be)->setattr(be, f, NULL, &sa) == -EROFS, "ro/setattr");
        tap_ok(OPS(be)->setxattr(be, f, "user.x", "1", 1, 0) == -EROFS,
               "ro/setxattr");
        tap_ok(OPS(be)->removexattr(be, f, "user.x") == -EROFS,
               "ro/removexattr");
        tap_ok(OPS(be)->link(be, root, "hl", f) == -EROFS, "ro/link");
        tap_ok(OPS(be)->rename(be, f, root, "f3") == -EROFS, "ro/rename");
        tap_ok(OPS(be)->remove(be, f) == -EROFS, "ro/remove");
        OPS(be)->node_put(be, f);
    }
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

int
main(void)
{
    struct backend *be;
    char path[512];
    int before;

    outside = mktmp("outside");
    exp_root = mktmp("walk");
    put_file(outside, "secret", "SECRET\n");
    snprintf(path, sizeof(path), "%s/sub", exp_root);
    mkdir(path, 0755);
    put_file(exp_root, "file", "hello\n");
    snprintf(path, sizeof(path), "%s/etc", exp_root);
    if (symlink("/etc", path) < 0) {
        return 2;
    }
    snprintf(path, sizeof(path), "%s/up", exp_root);
    if (symlink("../..", path) < 0) {
        return 2;
    }
    snprintf(path, sizeof(path), "%s/outs", exp_root);
    if (symlink(outside, path) < 0) {
        return 2;
    }
    snprintf(path, sizeof(path), "%s/self", exp_root);
    if (symlink(".", path) < 0) {
        return 2;
    }
    before = count_entries(outside);

    be = be_open(exp_root, false, false);
    test_dotdot_and_names(be);
    test_dotdot_after_move_out(be);
    test_symlinks(be);
    test_readlink(be);
    test_mknod_dev(be);
    OPS(be)->destroy(be);
    test_readonly();

    tap_ok(count_entries(outside) == before && before == 1,
           "outside directory unchanged");
    snprintf(path, sizeof(path), "%s/file", exp_root);
    tap_ok(access(path, F_OK) == 0, "export file still in place");

    rmtree(exp_root);
    rmtree(outside);
    free(exp_root);
    free(outside);
    return tap_done();
}
