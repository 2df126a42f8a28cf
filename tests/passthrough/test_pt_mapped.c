/* SPDX-License-Identifier: MIT */
/*
 * Security models (mapped-xattr, mapped-file, none): what the guest sees
 * through the backend, what lands on the host, and QEMU's on-disk format
 * both ways (metadata this test writes the way QEMU's local backend does
 * must read back; metadata the backend writes must be byte-for-byte what
 * QEMU reads).  The rootless part runs the backend in a child that has
 * dropped to nobody.
 */
#include "pt_test.h"

#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

static char *exp_root;

static struct backend *
open_model(const char *root, enum pt_security_model model)
{
    struct pt_options o = {.root = root,
                           .remap_devs = true,
                           .model = model,
                           .multiuser = geteuid() == 0};
    struct backend *be = NULL;
    int err = pt_backend_new(&o, &be);

    if (err < 0) {
        fprintf(stderr, "pt_backend_new(%s): %s\n", root, strerror(-err));
        exit(2);
    }
    return be;
}

static struct be_user *
enter(struct backend *be, uint32_t uid)
{
    struct be_user *u = NULL;

    if (OPS(be)->user_get(be, "", uid, &u) < 0 ||
        OPS(be)->user_enter(be, u) < 0) {
        fprintf(stderr, "cannot act as %u\n", uid);
        exit(2);
    }
    return u;
}

static void
host_lstat(const char *rel, struct stat *st)
{
    char path[512];

    memset(st, 0, sizeof(*st));
    snprintf(path, sizeof(path), "%s/%s", exp_root, rel);
    lstat(path, st);
}

static int
gattr(struct backend *be, struct be_node *root, const char *rel,
      struct p9_rgetattr *ga)
{
    struct be_node *n = NULL;
    int err = walkp(be, root, rel, &n);

    memset(ga, 0, sizeof(*ga));
    if (err < 0) {
        return err;
    }
    err = OPS(be)->getattr(be, n, NULL, P9_GETATTR_BASIC, ga);
    OPS(be)->node_put(be, n);
    return err;
}

static int
setattr_rel(struct backend *be, struct be_node *root, const char *rel,
            uint32_t valid, uint32_t mode, uint32_t uid, uint32_t gid)
{
    struct be_node *n = NULL;
    struct p9_tsetattr sa;
    int err = walkp(be, root, rel, &n);

    if (err < 0) {
        return err;
    }
    memset(&sa, 0, sizeof(sa));
    sa.valid = valid;
    sa.mode = mode;
    sa.uid = uid;
    sa.gid = gid;
    err = OPS(be)->setattr(be, n, NULL, &sa);
    OPS(be)->node_put(be, n);
    return err;
}

static char *
slurp(const char *rel)
{
    static char buf[1024];
    char path[512];
    ssize_t len;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", exp_root, rel);
    buf[0] = '\0';
    fd = open(path, O_RDONLY | O_NOFOLLOW);
    if (fd < 0) {
        return buf;
    }
    len = read(fd, buf, sizeof(buf) - 1);
    buf[len > 0 ? len : 0] = '\0';
    close(fd);
    return buf;
}

/* The host side holds no guest privilege: daemon-owned, plain, no set-id. */
static bool
host_plain(const char *rel, bool dir, uid_t owner)
{
    struct stat st;

    host_lstat(rel, &st);
    return st.st_uid == owner && (st.st_mode & 07000) == 0 &&
           (dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

/* Build a tree as guest uid 'uid'; check attributes and the host side. */
static void
run_model(enum pt_security_model model, const char *tag)
{
    struct backend *be = open_model(exp_root, model);
    struct be_node *root = get_root(be, NULL);
    struct be_user *u = enter(be, 0);
    struct be_user *u2;
    struct be_node *n = NULL;
    struct be_handle *h = NULL;
    struct p9_rgetattr ga;
    struct p9_qid q;
    uid_t me = geteuid();
    char buf[256];
    ssize_t len;
    uint32_t iou;
    int err;

    /* Regular file with set-uid, of a guest user, through Tlcreate. */
    err = OPS(be)->create(be, root, "suid", P9_DOTL_RDWR, 04755, 100, &n, &h,
                          &q, &iou);
    tap_ok(err == 0, "%s/create (%d)", tag, err);
    if (err == 0) {
        OPS(be)->close(be, h);
        OPS(be)->node_put(be, n);
    }
    gattr(be, root, "suid", &ga);
    tap_ok(ga.mode == (S_IFREG | 04755) && ga.uid == 0 && ga.gid == 100,
           "%s/create: guest sees 04755 0:100 (%o %u:%u)", tag, ga.mode, ga.uid,
           ga.gid);
    tap_ok(host_plain("suid", false, me), "%s/create: host file plain", tag);
    tap_ok(OPS(be)->mkdir(be, root, "d", 02775, 200, &q) == 0 &&
               gattr(be, root, "d", &ga) == 0 && ga.mode == (S_IFDIR | 02775) &&
               ga.gid == 200,
           "%s/mkdir 02775 gid 200 (%o)", tag, ga.mode);
    tap_ok(host_plain("d", true, me), "%s/mkdir: host dir plain", tag);
    tap_ok(OPS(be)->mknod(be, root, "null", S_IFCHR | 0666, 1, 3, 0, &q) == 0 &&
               gattr(be, root, "null", &ga) == 0 &&
               ga.mode == (S_IFCHR | 0666) && ga.rdev == makedev(1, 3),
           "%s/mknod chr 1,3 (%o rdev %llx)", tag, ga.mode,
           (unsigned long long)ga.rdev);
    tap_ok(host_plain("null", false, me), "%s/mknod chr: host regular file",
           tag);
    tap_ok(OPS(be)->mknod(be, root, "sda", S_IFBLK | 0660, 8, 0, 6, &q) == 0 &&
               gattr(be, root, "sda", &ga) == 0 &&
               ga.mode == (S_IFBLK | 0660) && ga.rdev == makedev(8, 0) &&
               ga.gid == 6 && host_plain("sda", false, me),
           "%s/mknod blk 8,0", tag);
    tap_ok(OPS(be)->mknod(be, root, "fifo", S_IFIFO | 0644, 0, 0, 0, &q) == 0 &&
               gattr(be, root, "fifo", &ga) == 0 &&
               ga.mode == (S_IFIFO | 0644) && host_plain("fifo", false, me),
           "%s/mknod fifo", tag);
    tap_ok(OPS(be)->mknod(be, root, "sock", S_IFSOCK | 0755, 0, 0, 0, &q) ==
                   0 &&
               gattr(be, root, "sock", &ga) == 0 &&
               ga.mode == (S_IFSOCK | 0755) && host_plain("sock", false, me),
           "%s/mknod socket", tag);
    tap_ok(OPS(be)->symlink(be, root, "ln", "../some/where", 0, &q) == 0 &&
               gattr(be, root, "ln", &ga) == 0 && ga.mode == (S_IFLNK | 0777),
           "%s/symlink: guest sees a symlink (%o)", tag, ga.mode);
    tap_ok(host_plain("ln", false, me) &&
               strcmp(slurp("ln"), "../some/where") == 0,
           "%s/symlink: host regular file holding the target", tag);
    if (walkp(be, root, "ln", &n) == 0) {
        len = OPS(be)->readlink(be, n, buf, sizeof(buf));
        tap_ok(len == 13 && memcmp(buf, "../some/where", 13) == 0,
               "%s/readlink (%zd)", tag, len);
        OPS(be)->node_put(be, n);
    } else {
        tap_ok(false, "%s/readlink: walk", tag);
    }
    if (walkp(be, root, "suid", &n) == 0) {
        struct p9_rgetattr g2 = {0};

        tap_ok(OPS(be)->link(be, root, "suid-hl", n) == 0 &&
                   gattr(be, root, "suid-hl", &g2) == 0 &&
                   g2.mode == (S_IFREG | 04755) && g2.gid == 100 &&
                   g2.nlink == 2,
               "%s/hard link keeps the metadata (%o nlink %llu)", tag, g2.mode,
               (unsigned long long)g2.nlink);
        OPS(be)->node_put(be, n);
    }

    /* chown/chmod by the guest's root: metadata only. */
    tap_ok(setattr_rel(be, root, "suid", P9_SETATTR_UID | P9_SETATTR_GID, 0,
                       4321, 4322) == 0 &&
               gattr(be, root, "suid", &ga) == 0 && ga.uid == 4321 &&
               ga.gid == 4322 && gattr(be, root, "suid-hl", &ga) == 0 &&
               ga.uid == 4321,
           "%s/chown to 4321:4322 (both names)", tag);
    tap_ok(host_plain("suid", false, me), "%s/chown: host owner unchanged",
           tag);
    tap_ok(setattr_rel(be, root, "d", P9_SETATTR_MODE, S_IFDIR | 01777, 0, 0) ==
                   0 &&
               gattr(be, root, "d", &ga) == 0 && ga.mode == (S_IFDIR | 01777),
           "%s/chmod dir 01777", tag);
    tap_ok(host_plain("d", true, me), "%s/chmod: host mode unchanged", tag);

    /* A non-root guest user: owner rules, with the stored owner. */
    u2 = enter(be, 4321);
    tap_ok(setattr_rel(be, root, "suid", P9_SETATTR_MODE, 02700, 0, 0) == 0,
           "%s/uid 4321 chmods its file", tag);
    tap_ok(setattr_rel(be, root, "null", P9_SETATTR_MODE, 0777, 0, 0) == -EPERM,
           "%s/uid 4321 cannot chmod root's file", tag);
    tap_ok(setattr_rel(be, root, "suid", P9_SETATTR_UID, 0, 99, 0) == -EPERM,
           "%s/uid 4321 cannot give its file away", tag);
    tap_ok(setattr_rel(be, root, "suid", P9_SETATTR_GID, 0, 0, 77) == 0 &&
               gattr(be, root, "suid", &ga) == 0 && ga.gid == 77,
           "%s/uid 4321 chgrps its file", tag);
    tap_ok(setattr_rel(be, root, "sda", P9_SETATTR_GID, 0, 0, 77) == -EPERM,
           "%s/uid 4321 cannot chgrp root's file", tag);
    if (walkp(be, root, "suid", &n) == 0) {
        tap_ok(OPS(be)->setxattr(be, n, "trusted.x", "1", 1, 0) == -EPERM &&
                   OPS(be)->setxattr(be, n, "security.x", "1", 1, 0) == -EPERM,
               "%s/non-root fid: no trusted.* or security.*", tag);
        OPS(be)->node_put(be, n);
    }
    /* Writes and truncation by a non-root fid clear stored set-id bits. */
    {
        struct iovec iov = {.iov_base = "x", .iov_len = 1};
        ssize_t w = -1;

        err = OPS(be)->create(be, root, "w", P9_DOTL_RDWR, 06755, 0, &n, &h, &q,
                              &iou);
        if (err == 0) {
            w = OPS(be)->write(be, h, &iov, 1, 0);
            OPS(be)->close(be, h);
            OPS(be)->node_put(be, n);
        }
        err = gattr(be, root, "w", &ga);
        tap_ok(w == 1 && err == 0 && ga.mode == (S_IFREG | 0755),
               "%s/write by uid 4321 clears set-uid and set-gid (%o)", tag,
               ga.mode);
        /* The writer (no host account: its gid is 4321) is not in 0. */
        setattr_rel(be, root, "w", P9_SETATTR_MODE, 02644, 0, 0);
        if (walkp(be, root, "w", &n) == 0) {
            if (OPS(be)->open(be, n, P9_DOTL_WRONLY, &h, &q, &iou) == 0) {
                OPS(be)->write(be, h, &iov, 1, 0);
                OPS(be)->close(be, h);
            }
            OPS(be)->node_put(be, n);
        }
        err = gattr(be, root, "w", &ga);
        tap_ok(err == 0 && ga.mode == (S_IFREG | 0644),
               "%s/set-gid without group-exec, writer not in the group: "
               "cleared (%o)",
               tag, ga.mode);
        setattr_rel(be, root, "w", P9_SETATTR_GID | P9_SETATTR_MODE, 02644, 0,
                    4321);
        if (walkp(be, root, "w", &n) == 0) {
            if (OPS(be)->open(be, n, P9_DOTL_WRONLY, &h, &q, &iou) == 0) {
                OPS(be)->write(be, h, &iov, 1, 0);
                OPS(be)->close(be, h);
            }
            OPS(be)->node_put(be, n);
        }
        err = gattr(be, root, "w", &ga);
        tap_ok(err == 0 && ga.mode == (S_IFREG | 02644) && ga.gid == 4321,
               "%s/set-gid without group-exec, writer in the group: kept (%o)",
               tag, ga.mode);
        setattr_rel(be, root, "w", P9_SETATTR_MODE, 04700, 0, 0);
        err = setattr_rel(be, root, "w", P9_SETATTR_SIZE, 0, 0, 0);
        gattr(be, root, "w", &ga);
        tap_ok(err == 0 && ga.mode == (S_IFREG | 0700),
               "%s/truncate by uid 4321 clears set-uid (%o)", tag, ga.mode);
        setattr_rel(be, root, "w", P9_SETATTR_MODE, 04700, 0, 0);
        if (walkp(be, root, "w", &n) == 0) {
            if (OPS(be)->open(be, n, P9_DOTL_WRONLY | P9_DOTL_TRUNC, &h, &q,
                              &iou) == 0) {
                OPS(be)->close(be, h);
            }
            OPS(be)->node_put(be, n);
        }
        gattr(be, root, "w", &ga);
        tap_ok(ga.mode == (S_IFREG | 0700),
               "%s/open(O_TRUNC) by uid 4321 clears set-uid (%o)", tag,
               ga.mode);
    }
    OPS(be)->user_put(be, u2);
    u2 = enter(be, 0);
    {
        struct iovec iov = {.iov_base = "y", .iov_len = 1};

        setattr_rel(be, root, "w", P9_SETATTR_MODE, 04755, 0, 0);
        if (walkp(be, root, "w", &n) == 0) {
            if (OPS(be)->open(be, n, P9_DOTL_WRONLY, &h, &q, &iou) == 0) {
                OPS(be)->write(be, h, &iov, 1, 0);
                OPS(be)->close(be, h);
            }
            OPS(be)->node_put(be, n);
        }
        gattr(be, root, "w", &ga);
        tap_ok(ga.mode == (S_IFREG | 04755),
               "%s/a root fid's write keeps set-uid (%o)", tag, ga.mode);
    }

    /* xattrs: QEMU's names, metadata invisible. */
    if (walkp(be, root, "suid", &n) == 0) {
        char host[512];
        char list[1024];

        snprintf(host, sizeof(host), "%s/suid", exp_root);
        tap_ok(OPS(be)->setxattr(be, n, "user.plain", "v", 1, 0) == 0 &&
                   getxattr(host, "user.plain", buf, sizeof(buf)) == 1,
               "%s/user.* passes through", tag);
        tap_ok(OPS(be)->setxattr(be, n, "security.selinux", "lbl", 3, 0) == 0 &&
                   getxattr(host, "security.selinux", buf, sizeof(buf)) < 0 &&
                   getxattr(host, "user.virtfs.security.selinux", buf,
                            sizeof(buf)) == 3,
               "%s/security.* stored as user.virtfs.security.*", tag);
        tap_ok(OPS(be)->setxattr(be, n, "trusted.t", "T", 1, 0) == 0 &&
                   getxattr(host, "user.virtfs.trusted.t", buf, sizeof(buf)) ==
                       1,
               "%s/trusted.* stored as user.virtfs.trusted.*", tag);
        tap_ok(OPS(be)->setxattr(be, n, "system.posix_acl_access", "\x02\0\0\0",
                                 4, 0) == 0 &&
                   getxattr(host, "user.virtfs.system.posix_acl_access", buf,
                            sizeof(buf)) == 4,
               "%s/ACL stored as user.virtfs.system.posix_acl_access", tag);
        len = OPS(be)->getxattr(be, n, "security.selinux", buf, sizeof(buf));
        tap_ok(len == 3 && memcmp(buf, "lbl", 3) == 0,
               "%s/security.* reads back", tag);
        len = OPS(be)->listxattr(be, n, list, sizeof(list));
        {
            bool virt = false;
            bool sel = false;
            bool acl = false;

            for (ssize_t p = 0; p > -1 && p < len;
                 p += (ssize_t)strlen(list + p) + 1) {
                virt |= strncmp(list + p, "user.virtfs.", 12) == 0;
                sel |= strcmp(list + p, "security.selinux") == 0;
                acl |= strcmp(list + p, "system.posix_acl_access") == 0;
            }
            tap_ok(len > 0 && !virt && sel && acl,
                   "%s/listxattr: guest names, no user.virtfs.* (%zd)", tag,
                   len);
            tap_ok(OPS(be)->listxattr(be, n, NULL, 0) == len,
                   "%s/listxattr size probe agrees", tag);
        }
        tap_ok(OPS(be)->getxattr(be, n, "user.virtfs.uid", buf, sizeof(buf)) ==
                       -ENODATA &&
                   OPS(be)->setxattr(be, n, "user.virtfs.uid", "0000", 4, 0) ==
                       -EACCES &&
                   OPS(be)->removexattr(be, n, "user.virtfs.mode") == -EACCES,
               "%s/user.virtfs.* hidden and refused", tag);
        OPS(be)->node_put(be, n);
    }

    /* Renames and removals keep metadata with the name. */
    tap_ok(OPS(be)->renameat(be, root, "null", root, "null2") == 0 &&
               gattr(be, root, "null2", &ga) == 0 &&
               ga.mode == (S_IFCHR | 0666) && ga.rdev == makedev(1, 3),
           "%s/renameat keeps the metadata", tag);
    if (walkp(be, root, "d", &n) == 0) {
        struct be_node *sub = NULL;

        tap_ok(OPS(be)->mkdir(be, n, "sub", 0750, 5, &q) == 0 &&
                   OPS(be)->mknod(be, n, "f", S_IFREG | 0644, 0, 0, 5, &q) ==
                       0 &&
                   walkp(be, n, "f", &sub) == 0,
               "%s/entries in a subdirectory", tag);
        if (sub != NULL) {
            tap_ok(OPS(be)->rename(be, sub, root, "f-moved") == 0 &&
                       gattr(be, root, "f-moved", &ga) == 0 &&
                       ga.mode == (S_IFREG | 0644) && ga.gid == 5,
                   "%s/Trename across directories keeps the metadata", tag);
            OPS(be)->node_put(be, sub);
        }
        tap_ok(OPS(be)->unlinkat(be, n, "sub", P9_DOTL_AT_REMOVEDIR) == 0,
               "%s/rmdir", tag);
        OPS(be)->node_put(be, n);
    }
    tap_ok(OPS(be)->unlinkat(be, root, "d", P9_DOTL_AT_REMOVEDIR) == 0,
           "%s/rmdir of a directory that held metadata", tag);
    tap_ok(OPS(be)->unlinkat(be, root, "fifo", 0) == 0 &&
               OPS(be)->mknod(be, root, "fifo", S_IFREG | 0600, 0, 0, 0, &q) ==
                   0 &&
               gattr(be, root, "fifo", &ga) == 0 && ga.mode == (S_IFREG | 0600),
           "%s/unlink drops the metadata (a new file of the name is new)", tag);

    OPS(be)->user_put(be, u2);
    OPS(be)->user_put(be, u);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/* Little-endian 32-bit value of host xattr 'name' of 'rel', or -1. */
static long long
host_x32(const char *rel, const char *name)
{
    char path[512];
    unsigned char b[8];

    snprintf(path, sizeof(path), "%s/%s", exp_root, rel);
    if (getxattr(path, name, b, sizeof(b)) != 4) {
        return -1;
    }
    return (long long)(b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24);
}

static void
test_xattr_format(void)
{
    struct backend *be = open_model(exp_root, PT_SM_MAPPED_XATTR);
    struct be_node *root = get_root(be, NULL);
    struct be_user *u = enter(be, 1000);
    struct p9_rgetattr ga;
    struct p9_qid q;
    unsigned char rdev[8] = {0x03, 0x01, 0, 0, 0, 0, 0, 0};
    unsigned char le[4];
    char path[512];
    uint32_t v;

    /* Written by us: QEMU's names and encodings. */
    tap_ok(OPS(be)->mknod(be, root, "tty", S_IFCHR | 0620, 4, 1, 5, &q) == 0,
           "fmt-x/mknod");
    tap_ok(host_x32("tty", "user.virtfs.uid") == 1000 &&
               host_x32("tty", "user.virtfs.gid") == 5 &&
               host_x32("tty", "user.virtfs.mode") == (S_IFCHR | 0620),
           "fmt-x/uid, gid, mode: 4 bytes little-endian");
    snprintf(path, sizeof(path), "%s/tty", exp_root);
    {
        unsigned char b[16];

        tap_ok(getxattr(path, "user.virtfs.rdev", b, sizeof(b)) == 8 &&
                   b[0] == 0x01 && b[1] == 0x04,
               "fmt-x/rdev: 8 bytes little-endian (dev_t of 4,1)");
    }
    /* Written as QEMU does: read by us. */
    snprintf(path, sizeof(path), "%s/byqemu", exp_root);
    close(open(path, O_CREAT | O_WRONLY, 0600));
    v = 2000;
    memcpy(le, &v, 4); /* little-endian host */
    setxattr(path, "user.virtfs.uid", le, 4, 0);
    v = 3000;
    memcpy(le, &v, 4);
    setxattr(path, "user.virtfs.gid", le, 4, 0);
    v = S_IFCHR | 06711;
    memcpy(le, &v, 4);
    setxattr(path, "user.virtfs.mode", le, 4, 0);
    setxattr(path, "user.virtfs.rdev", rdev, 8, 0);
    tap_ok(gattr(be, root, "byqemu", &ga) == 0 && ga.uid == 2000 &&
               ga.gid == 3000 && ga.mode == (S_IFCHR | 06711) &&
               ga.rdev == 0x103,
           "fmt-x/QEMU's metadata reads back (%u:%u %o %llx)", ga.uid, ga.gid,
           ga.mode, (unsigned long long)ga.rdev);
    OPS(be)->user_put(be, u);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

static void
test_file_format(void)
{
    struct backend *be = open_model(exp_root, PT_SM_MAPPED_FILE);
    struct be_node *root = get_root(be, NULL);
    struct be_user *u = enter(be, 1000);
    struct be_node *n = NULL;
    struct be_handle *h = NULL;
    struct p9_rgetattr ga;
    struct p9_qid q;
    struct dcoll c = {0};
    char path[512];
    FILE *f;

    tap_ok(OPS(be)->mknod(be, root, "tty", S_IFCHR | 0620, 4, 1, 5, &q) == 0,
           "fmt-f/mknod");
    tap_ok(strcmp(slurp(".virtfs_metadata/tty"),
                  "virtfs.uid=1000\nvirtfs.gid=5\nvirtfs.mode=8592\n"
                  "virtfs.rdev=1025\n") == 0,
           "fmt-f/metadata file in QEMU's text format");
    /* Written as QEMU does, subdirectory and root included. */
    snprintf(path, sizeof(path), "%s/qd", exp_root);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/qd/x", exp_root);
    close(open(path, O_CREAT | O_WRONLY, 0600));
    snprintf(path, sizeof(path), "%s/qd/.virtfs_metadata", exp_root);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/qd/.virtfs_metadata/x", exp_root);
    f = fopen(path, "w");
    if (f != NULL) {
        fprintf(f, "virtfs.uid=%d\nvirtfs.gid=%d\nvirtfs.mode=%d\n", 7, 8,
                S_IFLNK | 0777);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/.virtfs_metadata_root", exp_root);
    f = fopen(path, "w");
    if (f != NULL) {
        fprintf(f, "virtfs.uid=%d\nvirtfs.mode=%d\n", 33, S_IFDIR | 01777);
        fclose(f);
    }
    tap_ok(gattr(be, root, "qd/x", &ga) == 0 && ga.uid == 7 && ga.gid == 8 &&
               ga.mode == (S_IFLNK | 0777),
           "fmt-f/QEMU's metadata reads back (%u:%u %o)", ga.uid, ga.gid,
           ga.mode);
    tap_ok(OPS(be)->getattr(be, root, NULL, P9_GETATTR_BASIC, &ga) == 0 &&
               ga.uid == 33 && ga.mode == (S_IFDIR | 01777),
           "fmt-f/the root's metadata from .virtfs_metadata_root");
    /* Hidden from the guest. */
    tap_ok(walkp(be, root, ".virtfs_metadata", &n) == -ENOENT &&
               walkp(be, root, ".virtfs_metadata_root", &n) == -ENOENT &&
               walkp(be, root, "qd/.virtfs_metadata/x", &n) == -ENOENT,
           "fmt-f/walk to the metadata: ENOENT");
    tap_ok(OPS(be)->mkdir(be, root, ".virtfs_metadata", 0755, 0, &q) ==
                   -EINVAL &&
               OPS(be)->create(be, root, ".virtfs_metadata_root", P9_DOTL_RDWR,
                               0644, 0, &n, &h, &q, &(uint32_t){0}) == -EINVAL,
           "fmt-f/creating the metadata names: EINVAL");
    if (OPS(be)->open(be, root, P9_DOTL_RDONLY, &h, &q, &(uint32_t){0}) == 0) {
        dcoll_all(be, h, &c, 0);
        tap_ok(dcoll_has(&c, "tty") && dcoll_has(&c, "qd") &&
                   !dcoll_has(&c, ".virtfs_metadata") &&
                   !dcoll_has(&c, ".virtfs_metadata_root"),
               "fmt-f/readdir hides the metadata (%zu entries)", c.count);
        dcoll_free(&c);
        OPS(be)->close(be, h);
    } else {
        tap_ok(false, "fmt-f/open root");
    }
    OPS(be)->user_put(be, u);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/* QEMU's "none": the daemon's own identity; ownership is best effort. */
static void
test_none(void)
{
    struct backend *be = open_model(exp_root, PT_SM_NONE);
    struct be_node *root = get_root(be, NULL);
    struct be_user *u = enter(be, 1234);
    struct p9_rgetattr ga;
    struct p9_qid q;
    struct stat st;

    tap_ok(OPS(be)->mkdir(be, root, "nd", 0755, 1234, &q) == 0,
           "none/mkdir as uid 1234");
    host_lstat("nd", &st);
    tap_ok(gattr(be, root, "nd", &ga) == 0 && ga.uid == st.st_uid &&
               (st.st_mode & 07777) == 0755,
           "none/no metadata: the host's owner and mode (%u)", ga.uid);
    tap_ok(geteuid() != 0 || (st.st_uid == 1234 && st.st_gid == 1234),
           "none/as root the daemon gives the new object to the user");
    OPS(be)->user_put(be, u);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/*
 * Rootless: a daemon running as nobody gives a guest root chown to any
 * uid, device nodes and set-id bits, none of which are real on the host.
 */
static void
test_rootless(enum pt_security_model model, const char *tag)
{
    char *dir = mktmp("rootless");
    pid_t pid;
    int status = 0;

    if (geteuid() != 0) {
        tap_ok(true, "%s/rootless: already unprivileged (the rest covers it)",
               tag);
        free(dir);
        return;
    }
    if (chown(dir, 65534, 65534) < 0) {
        tap_ok(false, "%s/rootless: chown tmp", tag);
        free(dir);
        return;
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        struct backend *be;
        struct be_node *root;
        struct p9_rgetattr ga;
        struct p9_qid q;
        struct stat st;
        char path[512];
        int bad = 0;

        if (th_become_nobody() < 0) {
            _exit(3);
        }
        exp_root = dir;
        be = open_model(dir, model);
        root = get_root(be, NULL);
        enter(be, 0);
        bad |= OPS(be)->mknod(be, root, "kvm", S_IFCHR | 0666, 10, 232, 0,
                              &q) != 0;
        bad |= (OPS(be)->mkdir(be, root, "home", 0755, 0, &q) != 0) << 1;
        bad |=
            (OPS(be)->mknod(be, root, "su", S_IFREG | 04755, 0, 0, 0, &q) != 0)
            << 2;
        bad |= (setattr_rel(be, root, "home", P9_SETATTR_UID | P9_SETATTR_GID,
                            0, 1000, 1000) != 0)
               << 3;
        bad |= (gattr(be, root, "kvm", &ga) != 0 ||
                ga.mode != (S_IFCHR | 0666) || ga.rdev != makedev(10, 232))
               << 4;
        bad |= (gattr(be, root, "su", &ga) != 0 || ga.mode != (S_IFREG | 04755))
               << 5;
        bad |= (gattr(be, root, "home", &ga) != 0 || ga.uid != 1000) << 6;
        snprintf(path, sizeof(path), "%s/kvm", dir);
        bad |= (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
                st.st_uid != 65534)
               << 7;
        snprintf(path, sizeof(path), "%s/su", dir);
        bad |= (lstat(path, &st) != 0 || (st.st_mode & 07000) != 0 ||
                st.st_uid != 65534)
               << 8;
        snprintf(path, sizeof(path), "%s/home", dir);
        bad |= (lstat(path, &st) != 0 || st.st_uid != 65534) << 9;
        _exit(bad == 0 ? 0 : 10 + (bad & 0x3ff) % 200);
    }
    waitpid(pid, &status, 0);
    tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "%s/rootless (daemon as nobody): guest root's chown, mknod, set-id "
           "work; host files nobody's, regular, no set-id (status %d)",
           tag, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    rmtree(dir);
    free(dir);
}

int
main(void)
{
    static const struct {
        enum pt_security_model model;
        const char *tag;
    } models[] = {{PT_SM_MAPPED_XATTR, "mapped-xattr"},
                  {PT_SM_MAPPED_FILE, "mapped-file"}};

    for (size_t i = 0; i < 2; i++) {
        exp_root = mktmp("mapped");
        run_model(models[i].model, models[i].tag);
        rmtree(exp_root);
        free(exp_root);
        test_rootless(models[i].model, models[i].tag);
    }
    exp_root = mktmp("fmtx");
    test_xattr_format();
    rmtree(exp_root);
    free(exp_root);
    exp_root = mktmp("fmtf");
    test_file_format();
    rmtree(exp_root);
    free(exp_root);
    exp_root = mktmp("none");
    test_none();
    rmtree(exp_root);
    free(exp_root);
    return tap_done();
}
