/* SPDX-License-Identifier: MIT */
/*
 * Identity model of the passthrough backend (needs root; see
 * docs/security.md "Credentials"): what a request of a non-root fid may
 * and may not do.
 *
 *  - It never holds CAP_SYS_ADMIN, CAP_SETFCAP & co: trusted.* and
 *    security.* writes are refused, and the thread's CapEff shows it.
 *  - New objects get the group the client asked for (fsgid at creation),
 *    also one the host does not know the user is in, and keep a set-gid
 *    bit in a set-gid directory.
 *  - The owner may chgrp to a group the guest says it is in; giving a
 *    file away or chgrp'ing another's file stays refused.
 *  - Access through a group the host does not know of is the guest's
 *    decision (CAP_DAC_OVERRIDE); owner-only checks stay the kernel's.
 *  - A non-owner may remove set-id bits (what a 6.12 client sends before
 *    a write), nothing else.
 *  - Set-id bits are cleared by the kernel before the data of a write
 *    lands and on truncation, also when root serves without multiuser.
 */
#include "pt_test.h"

#include <linux/capability.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/xattr.h>

#define UID 1234
#define UGID 1234 /* UID has no host account: its gid is its uid */
#define SUPP 4242 /* a group the guest says UID is in (host: unknown) */
#define SGIDDIR 4343

static char *exp_root;

static void
hpath(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", exp_root, name);
}

static void
host_stat(const char *name, struct stat *st)
{
    char path[512];

    memset(st, 0, sizeof(*st));
    hpath(path, sizeof(path), name);
    lstat(path, st);
}

static void
host_setup(const char *name, mode_t type, mode_t mode, uid_t uid, gid_t gid)
{
    char path[512];

    hpath(path, sizeof(path), name);
    if (type == S_IFDIR) {
        mkdir(path, mode);
    } else {
        put_file(exp_root, name, "root data");
    }
    /* a fixture left with the wrong owner would make the checks vacuous */
    if (chown(path, uid, gid) < 0) {
        tap_ok(false, "setup: chown %s (%s)", name, strerror(errno));
    }
    chmod(path, mode);
}

/* CapEff of the calling thread, from /proc. */
static uint64_t
thread_capeff(void)
{
    char line[256];
    unsigned long long v = ~0ULL;
    FILE *f = fopen("/proc/thread-self/status", "r");

    if (f == NULL) {
        return ~(uint64_t)0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "CapEff: %llx", &v) == 1) {
            break;
        }
    }
    fclose(f);
    return (uint64_t)v;
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

static int
chmod_node(struct backend *be, struct be_node *n, uint32_t mode)
{
    struct p9_tsetattr sa;

    memset(&sa, 0, sizeof(sa));
    sa.valid = P9_SETATTR_MODE | P9_SETATTR_CTIME;
    sa.mode = mode;
    return OPS(be)->setattr(be, n, NULL, &sa);
}

static int
chown_node(struct backend *be, struct be_node *n, uint32_t uid, uint32_t gid)
{
    struct p9_tsetattr sa;

    memset(&sa, 0, sizeof(sa));
    sa.valid = P9_SETATTR_CTIME;
    if (uid != (uint32_t)-1) {
        sa.valid |= P9_SETATTR_UID;
        sa.uid = uid;
    }
    if (gid != (uint32_t)-1) {
        sa.valid |= P9_SETATTR_GID;
        sa.gid = gid;
    }
    return OPS(be)->setattr(be, n, NULL, &sa);
}

/* ---- capabilities and privileged xattrs --------------------------------- */

static void
test_caps(struct backend *be, struct be_node *root)
{
    struct be_user *u;
    struct be_user *r;
    struct be_node *n = NULL;
    char buf[64];
    uint64_t eff;
    ssize_t len;
    int err;
    /* cap_setuid=ep as a v2 vfs_cap_data (magic 0x02000001, permitted bit 7,
     * effective flag). */
    static const unsigned char capv2[20] = {
        0x01, 0x00, 0x00, 0x02, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};

    u = enter(be, UID);
    eff = thread_capeff();
    tap_ok((eff & (UINT64_C(1) << CAP_SYS_ADMIN)) == 0,
           "caps/uid %d request has no CAP_SYS_ADMIN (CapEff %llx)", UID,
           (unsigned long long)eff);
    tap_ok(eff == (UINT64_C(1) << CAP_DAC_OVERRIDE),
           "caps/uid %d request holds CAP_DAC_OVERRIDE only (%llx)", UID,
           (unsigned long long)eff);
    if (walkp(be, root, "secret", &n) == 0) {
        err = OPS(be)->setxattr(be, n, "trusted.x", "evil", 4, 0);
        tap_ok(err == -EPERM, "caps/trusted.* set refused to uid %d (%d)", UID,
               err);
        len = OPS(be)->getxattr(be, n, "trusted.t", buf, sizeof(buf));
        tap_ok(len == -ENODATA, "caps/trusted.* of root not readable (%zd)",
               len);
        err = OPS(be)->removexattr(be, n, "trusted.t");
        tap_ok(err == -EPERM, "caps/trusted.* remove refused (%d)", err);
        err = OPS(be)->setxattr(be, n, "security.capability", capv2,
                                sizeof(capv2), 0);
        tap_ok(err == -EPERM, "caps/security.capability set refused (%d)", err);
        len = OPS(be)->listxattr(be, n, buf, sizeof(buf));
        tap_ok(len >= 0 && memmem(buf, (size_t)len, "trusted.t", 9) == NULL,
               "caps/listxattr hides trusted.* (%zd)", len);
        OPS(be)->node_put(be, n);
    } else {
        tap_ok(false, "caps/walk secret");
    }
    {
        char path[512];

        hpath(path, sizeof(path), "secret");
        len = getxattr(path, "trusted.x", buf, sizeof(buf));
        tap_ok(len < 0, "caps/no trusted.x landed on the host");
        len = getxattr(path, "security.capability", buf, sizeof(buf));
        tap_ok(len < 0, "caps/no security.capability landed on the host");
    }

    /* Root fids keep the daemon's set: trusted.* works for them. */
    r = enter(be, 0);
    eff = thread_capeff();
    tap_ok((eff & (UINT64_C(1) << CAP_SYS_ADMIN)) != 0,
           "caps/root request keeps CAP_SYS_ADMIN (%llx)",
           (unsigned long long)eff);
    if (walkp(be, root, "secret", &n) == 0) {
        len = OPS(be)->getxattr(be, n, "trusted.t", buf, sizeof(buf));
        tap_ok(len == 1, "caps/root reads trusted.* (%zd)", len);
        OPS(be)->node_put(be, n);
    }
    /* Back to the user: the full set must not come back with it. */
    OPS(be)->user_enter(be, u);
    eff = thread_capeff();
    tap_ok(eff == (UINT64_C(1) << CAP_DAC_OVERRIDE),
           "caps/uid %d again after root: DAC_OVERRIDE only (%llx)", UID,
           (unsigned long long)eff);
    OPS(be)->user_put(be, r);
    OPS(be)->user_put(be, u);
}

/* ---- group of new objects ----------------------------------------------- */

static void
test_create_gid(struct backend *be, struct be_node *root)
{
    struct be_user *u = enter(be, UID);
    struct be_node *n = NULL;
    struct be_node *d = NULL;
    struct be_handle *h = NULL;
    struct p9_qid q;
    struct stat st;
    uint32_t iou;
    int err;

    err = OPS(be)->create(be, root, "g-file", P9_DOTL_RDWR, 0644, SUPP, &n, &h,
                          &q, &iou);
    host_stat("g-file", &st);
    tap_ok(err == 0 && st.st_uid == UID && st.st_gid == SUPP,
           "gid/create gets the requested gid %d (%d, %u)", SUPP, err,
           (unsigned)st.st_gid);
    if (err == 0) {
        OPS(be)->close(be, h);
        OPS(be)->node_put(be, n);
    }
    err = OPS(be)->mkdir(be, root, "g-dir", 0755, SUPP, &q);
    host_stat("g-dir", &st);
    tap_ok(err == 0 && st.st_gid == SUPP, "gid/mkdir gets gid %d (%u)", SUPP,
           (unsigned)st.st_gid);
    err = OPS(be)->mknod(be, root, "g-fifo", S_IFIFO | 0644, 0, 0, SUPP, &q);
    host_stat("g-fifo", &st);
    tap_ok(err == 0 && st.st_gid == SUPP, "gid/mknod fifo gets gid %d (%u)",
           SUPP, (unsigned)st.st_gid);
    err = OPS(be)->symlink(be, root, "g-sym", "target", SUPP, &q);
    host_stat("g-sym", &st);
    tap_ok(err == 0 && st.st_gid == SUPP, "gid/symlink gets gid %d (%u)", SUPP,
           (unsigned)st.st_gid);
    /* The thread's fsgid is the user's again afterwards. */
    err = OPS(be)->mkdir(be, root, "g-after", 0755, (uint32_t)-1, &q);
    host_stat("g-after", &st);
    tap_ok(err == 0 && st.st_gid == UGID,
           "gid/next creation without a gid uses the user's (%u)",
           (unsigned)st.st_gid);
    tap_ok(thread_capeff() == (UINT64_C(1) << CAP_DAC_OVERRIDE),
           "gid/no CAP_SETGID left after a creation");

    /* Set-gid directory of a group the host does not know UID is in. */
    if (walkp(be, root, "sgid", &d) == 0) {
        err = OPS(be)->create(be, d, "f", P9_DOTL_RDWR, 02755, SGIDDIR, &n, &h,
                              &q, &iou);
        host_stat("sgid/f", &st);
        tap_ok(err == 0 && st.st_gid == SGIDDIR &&
                   (st.st_mode & 07777) == 02755,
               "gid/create in set-gid dir: group %d, mode 2755 (%u, %o)",
               SGIDDIR, (unsigned)st.st_gid, st.st_mode & 07777);
        if (err == 0) {
            OPS(be)->close(be, h);
            OPS(be)->node_put(be, n);
        }
        err = OPS(be)->mkdir(be, d, "sub", 0755, SGIDDIR, &q);
        host_stat("sgid/sub", &st);
        tap_ok(err == 0 && st.st_gid == SGIDDIR && (st.st_mode & S_ISGID),
               "gid/mkdir in set-gid dir inherits group and S_ISGID (%o)",
               st.st_mode & 07777);
        OPS(be)->node_put(be, d);
    } else {
        tap_ok(false, "gid/walk sgid");
    }
    OPS(be)->user_put(be, u);
}

/* ---- chown / chgrp ------------------------------------------------------- */

static void
test_chown(struct backend *be, struct be_node *root)
{
    struct be_user *u = enter(be, UID);
    struct be_node *n = NULL;
    struct be_handle *h = NULL;
    struct p9_qid q;
    struct stat st;
    uint32_t iou;
    int err;

    err = OPS(be)->create(be, root, "own", P9_DOTL_RDWR, 0644, UGID, &n, &h, &q,
                          &iou);
    tap_ok(err == 0, "chown/create own file");
    if (err != 0) {
        OPS(be)->user_put(be, u);
        return;
    }
    OPS(be)->close(be, h);
    err = chown_node(be, n, (uint32_t)-1, SUPP);
    host_stat("own", &st);
    tap_ok(err == 0 && st.st_gid == SUPP,
           "chown/owner chgrp to a supplementary group (%d, %u)", err,
           (unsigned)st.st_gid);
    err = chown_node(be, n, UID, UGID);
    host_stat("own", &st);
    tap_ok(err == 0 && st.st_gid == UGID,
           "chown/owner chown to own uid + group (%d)", err);
    /* Set-id clearing as Linux does on chown (S_ISUID always, S_ISGID
     * with group-exec), also when the capability is raised for it. */
    chmod_node(be, n, 06755);
    host_stat("own", &st);
    tap_ok((st.st_mode & 07777) == 06755, "chown/owner chmod 6755 kept (%o)",
           st.st_mode & 07777);
    err = chown_node(be, n, (uint32_t)-1, SUPP);
    host_stat("own", &st);
    tap_ok(err == 0 && (st.st_mode & 07777) == 0755,
           "chown/chgrp clears S_ISUID and S_ISGID (%o)", st.st_mode & 07777);
    /* chmod g+s by the owner on a group the host does not know: kept. */
    err = chmod_node(be, n, 02750);
    host_stat("own", &st);
    tap_ok(err == 0 && (st.st_mode & 07777) == 02750,
           "chown/owner chmod g+s on its supplementary group kept (%o)",
           st.st_mode & 07777);
    err = chown_node(be, n, 0, (uint32_t)-1);
    tap_ok(err == -EPERM, "chown/giving the file away refused (%d)", err);
    err = chown_node(be, n, 4321, SUPP);
    tap_ok(err == -EPERM, "chown/uid+gid to another uid refused (%d)", err);
    OPS(be)->node_put(be, n);

    if (walkp(be, root, "secret", &n) == 0) {
        err = chown_node(be, n, (uint32_t)-1, SUPP);
        tap_ok(err == -EPERM, "chown/chgrp of root's file refused (%d)", err);
        err = chown_node(be, n, UID, (uint32_t)-1);
        tap_ok(err == -EPERM, "chown/taking root's file refused (%d)", err);
        err = chmod_node(be, n, 0666);
        tap_ok(err == -EPERM, "chown/chmod of root's file refused (%d)", err);
        {
            struct p9_tsetattr sa;

            memset(&sa, 0, sizeof(sa));
            sa.valid = P9_SETATTR_MTIME | P9_SETATTR_MTIME_SET;
            sa.mtime_sec = 1;
            err = OPS(be)->setattr(be, n, NULL, &sa);
            tap_ok(err == -EPERM,
                   "chown/explicit mtime on root's file refused (%d)", err);
            /* What the client sends after a truncate or write: mtime=now. */
            memset(&sa, 0, sizeof(sa));
            sa.valid = P9_SETATTR_MTIME | P9_SETATTR_CTIME;
            err = OPS(be)->setattr(be, n, NULL, &sa);
            tap_ok(err == 0, "chown/mtime=now alone by a non-owner (%d)", err);
            sa.valid = P9_SETATTR_ATIME | P9_SETATTR_MTIME;
            err = OPS(be)->setattr(be, n, NULL, &sa);
            tap_ok(err == 0, "chown/atime+mtime=now by a non-owner (%d)", err);
            tap_ok(thread_capeff() == (UINT64_C(1) << CAP_DAC_OVERRIDE),
                   "chown/no CAP_FOWNER left after the times");
        }
        OPS(be)->node_put(be, n);
    }
    OPS(be)->user_put(be, u);
}

/* ---- access through supplementary groups, set-id removal ---------------- */

static void
test_access(struct backend *be, struct be_node *root)
{
    struct be_user *u = enter(be, UID);
    struct be_node *n = NULL;
    struct be_node *d = NULL;
    struct be_handle *h = NULL;
    struct p9_qid q;
    struct stat st;
    struct iovec iov = {.iov_base = "guest", .iov_len = 5};
    uint32_t iou;
    int err;

    if (walkp(be, root, "grpfile", &n) == 0) {
        err = OPS(be)->open(be, n, P9_DOTL_RDWR, &h, &q, &iou);
        tap_ok(err == 0, "access/open 0060 file via a guest group (%d)", err);
        if (err == 0) {
            OPS(be)->close(be, h);
        }
        OPS(be)->node_put(be, n);
    } else {
        tap_ok(false, "access/walk grpfile");
    }
    if (walkp(be, root, "grpdir", &d) == 0) {
        err = OPS(be)->create(be, d, "new", P9_DOTL_RDWR, 0644, SUPP, &n, &h,
                              &q, &iou);
        tap_ok(err == 0, "access/create in 0070 dir via a guest group (%d)",
               err);
        if (err == 0) {
            OPS(be)->close(be, h);
            OPS(be)->node_put(be, n);
        }
        OPS(be)->node_put(be, d);
    }
    /* Owner-only checks stay the kernel's: the sticky directory. */
    if (walkp(be, root, "sticky/rootfile", &n) == 0) {
        tap_ok(OPS(be)->remove(be, n) == -EPERM,
               "access/remove root's file in a sticky dir EPERM");
        OPS(be)->node_put(be, n);
    }
    err = OPS(be)->mknod(be, root, "dev", S_IFCHR | 0666, 1, 3, UGID, &q);
    tap_ok(err == -EPERM, "access/mknod device refused (%d)", err);

    /* A non-owner writer: only removing set-id bits is allowed. */
    if (walkp(be, root, "suidroot", &n) == 0) {
        err = chmod_node(be, n, 06775);
        tap_ok(err == -EPERM, "setid/non-owner chmod 6775 refused (%d)", err);
        err = chmod_node(be, n, 0775);
        tap_ok(err == -EPERM,
               "setid/non-owner removing set-id + o-w refused (%d)", err);
        err = chmod_node(be, n, 06777);
        host_stat("suidroot", &st);
        tap_ok(err == 0 && (st.st_mode & 07777) == 06777,
               "setid/non-owner same mode: no-op success (%d, %o)", err,
               st.st_mode & 07777);
        err = chmod_node(be, n, 02777);
        host_stat("suidroot", &st);
        tap_ok(err == 0 && (st.st_mode & 07777) == 02777,
               "setid/non-owner removing S_ISUID applied (%d, %o)", err,
               st.st_mode & 07777);
        err = chmod_node(be, n, 00777);
        host_stat("suidroot", &st);
        tap_ok(err == 0 && (st.st_mode & 07777) == 0777,
               "setid/non-owner removing S_ISGID applied (%d, %o)", err,
               st.st_mode & 07777);
        OPS(be)->node_put(be, n);
    }
    /* Open with O_TRUNC by a non-owner: truncated, bits gone. */
    if (walkp(be, root, "suidt", &n) == 0) {
        err =
            OPS(be)->open(be, n, P9_DOTL_WRONLY | P9_DOTL_TRUNC, &h, &q, &iou);
        if (err == 0) {
            OPS(be)->close(be, h);
        }
        host_stat("suidt", &st);
        tap_ok(err == 0 && st.st_size == 0 && (st.st_mode & 07777) == 0777,
               "setid/open O_TRUNC by uid %d clears set-id bits (%d, %o)", UID,
               err, st.st_mode & 07777);
        OPS(be)->node_put(be, n);
    }
    /* Write by a non-owner of a root set-uid file: bits gone. */
    if (walkp(be, root, "suidw", &n) == 0) {
        err = OPS(be)->open(be, n, P9_DOTL_WRONLY, &h, &q, &iou);
        if (err == 0) {
            OPS(be)->write(be, h, &iov, 1, 0);
            OPS(be)->close(be, h);
        }
        host_stat("suidw", &st);
        tap_ok(err == 0 && (st.st_mode & 07777) == 0777,
               "setid/write by uid %d clears set-id bits (%o)", UID,
               st.st_mode & 07777);
        OPS(be)->node_put(be, n);
    }
    OPS(be)->user_put(be, u);
}

/* ---- set-id clearing before the data, in both modes ---------------------- */

/*
 * Order of the inotify events a write of 'uid' produces on a 06777 root
 * file: the kernel's own clearing shows as IN_ATTRIB before IN_MODIFY.
 * Returns 1 when ATTRIB came first, 0 when MODIFY came first, -1 else.
 */
static int
attrib_before_modify(struct backend *be, struct be_node *root, const char *name,
                     bool truncate_only)
{
    char path[512];
    char evbuf[4096] __attribute__((aligned(8)));
    struct be_user *u;
    struct be_user *r;
    struct be_node *n = NULL;
    struct be_handle *h = NULL;
    struct p9_qid q;
    struct iovec iov = {.iov_base = "guest", .iov_len = 5};
    uint32_t iou;
    int ifd;
    int res = -1;
    ssize_t len;

    hpath(path, sizeof(path), name);
    put_file(exp_root, name, "root data");
    chmod(path, 06777);
    if (walkp(be, root, name, &n) < 0) {
        return -1;
    }
    u = enter(be, UID);
    if (OPS(be)->open(be, n, P9_DOTL_RDWR, &h, &q, &iou) < 0) {
        goto out;
    }
    ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    inotify_add_watch(ifd, path, IN_ATTRIB | IN_MODIFY);
    if (truncate_only) {
        struct p9_tsetattr sa;

        memset(&sa, 0, sizeof(sa));
        sa.valid = P9_SETATTR_SIZE;
        sa.size = 2;
        OPS(be)->setattr(be, n, h, &sa);
    } else {
        OPS(be)->write(be, h, &iov, 1, 0);
    }
    len = read(ifd, evbuf, sizeof(evbuf));
    for (char *p = evbuf; len > 0 && p < evbuf + len;) {
        const struct inotify_event *ev = (const struct inotify_event *)p;

        if (ev->mask & IN_ATTRIB) {
            res = 1;
            break;
        }
        if (ev->mask & IN_MODIFY) {
            res = 0;
            break;
        }
        p += sizeof(*ev) + ev->len;
    }
    close(ifd);
    OPS(be)->close(be, h);
out:
    r = enter(be, 0);
    OPS(be)->user_put(be, r);
    OPS(be)->user_put(be, u);
    OPS(be)->node_put(be, n);
    return res;
}

struct race {
    const char *path;
    atomic_int stop;
    atomic_int seen_bad;
};

/* Observer: once the guest's data is visible, the set-uid bit must be gone. */
static void *
observe(void *arg)
{
    struct race *rc = arg;
    char buf[16];
    struct stat st;

    while (!atomic_load(&rc->stop)) {
        int fd = open(rc->path, O_RDONLY);
        ssize_t len;

        if (fd < 0) {
            continue;
        }
        len = pread(fd, buf, 5, 0);
        close(fd);
        if (len == 5 && memcmp(buf, "guest", 5) == 0 &&
            stat(rc->path, &st) == 0 && (st.st_mode & S_ISUID)) {
            atomic_fetch_add(&rc->seen_bad, 1);
        }
    }
    return NULL;
}

static void
test_setid_order(bool multiuser)
{
    struct backend *be = be_open(exp_root, false, multiuser);
    struct be_node *root = get_root(be, NULL);
    const char *mode = multiuser ? "mu" : "nomu";
    char path[512];
    struct race rc;
    pthread_t th;
    struct stat st;
    int bad_rounds = 0;
    int r;

    r = attrib_before_modify(be, root, "order-w", false);
    tap_ok(r == 1, "%s/set-id cleared before a write's data (inotify %d)", mode,
           r);
    host_stat("order-w", &st);
    tap_ok((st.st_mode & 07777) == 0777, "%s/write cleared 6777 -> %o", mode,
           st.st_mode & 07777);
    r = attrib_before_modify(be, root, "order-t", true);
    host_stat("order-t", &st);
    tap_ok(r == 1 && (st.st_mode & 07777) == 0777,
           "%s/truncation by uid %d clears set-id bits (%d, %o)", mode, UID, r,
           st.st_mode & 07777);

    /* The race as another host process sees it. */
    hpath(path, sizeof(path), "race");
    rc.path = path;
    for (int round = 0; round < 20; round++) {
        struct be_user *u;
        struct be_node *n = NULL;
        struct be_handle *h = NULL;
        struct p9_qid q;
        struct iovec iov = {.iov_base = "guest", .iov_len = 5};
        uint32_t iou;

        put_file(exp_root, "race", "rootx");
        chmod(path, 04755);
        atomic_store(&rc.stop, 0);
        atomic_store(&rc.seen_bad, 0);
        pthread_create(&th, NULL, observe, &rc);
        usleep(2000);
        u = enter(be, UID);
        if (walkp(be, root, "race", &n) == 0) {
            if (OPS(be)->open(be, n, P9_DOTL_WRONLY, &h, &q, &iou) == 0) {
                OPS(be)->write(be, h, &iov, 1, 0);
                OPS(be)->close(be, h);
            }
            OPS(be)->node_put(be, n);
        }
        usleep(2000);
        atomic_store(&rc.stop, 1);
        pthread_join(th, NULL);
        if (atomic_load(&rc.seen_bad) > 0) {
            bad_rounds++;
        }
        OPS(be)->user_put(be, u);
        OPS(be)->user_put(be, enter(be, 0));
    }
    tap_ok(bad_rounds == 0,
           "%s/no observer saw guest data in a set-uid file (%d/20 rounds)",
           mode, bad_rounds);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/* --no-multiuser as root: a non-root fid has no CAP_SYS_ADMIN either. */
static void
test_nomu_caps(void)
{
    struct backend *be = be_open(exp_root, false, false);
    struct be_node *root = get_root(be, NULL);
    struct be_node *n = NULL;
    struct be_user *u = enter(be, UID);
    uint64_t eff = thread_capeff();
    int err;

    tap_ok((eff & (UINT64_C(1) << CAP_SYS_ADMIN)) == 0 &&
               (eff & (UINT64_C(1) << CAP_FSETID)) == 0 &&
               (eff & (UINT64_C(1) << CAP_DAC_OVERRIDE)) != 0,
           "nomu/uid %d request: fs set without FSETID, no SYS_ADMIN (%llx)",
           UID, (unsigned long long)eff);
    if (walkp(be, root, "grpfile", &n) == 0) {
        struct stat st;

        err = chmod_node(be, n, 02070);
        host_stat("grpfile", &st);
        tap_ok(err == 0 && (st.st_mode & 07777) == 02070,
               "nomu/chmod g+s on a group the daemon is not in kept (%o)",
               st.st_mode & 07777);
        chmod_node(be, n, 0060);
        OPS(be)->node_put(be, n);
    }
    if (walkp(be, root, "secret", &n) == 0) {
        err = OPS(be)->setxattr(be, n, "trusted.y", "1", 1, 0);
        tap_ok(err == -EPERM, "nomu/trusted.* refused to uid %d (%d)", UID,
               err);
        OPS(be)->node_put(be, n);
    }
    OPS(be)->user_put(be, enter(be, 0));
    eff = thread_capeff();
    tap_ok((eff & (UINT64_C(1) << CAP_SYS_ADMIN)) != 0,
           "nomu/root request has the full set again (%llx)",
           (unsigned long long)eff);
    OPS(be)->user_put(be, u);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/* ---- export options nosuid, nodev ----------------------------------------- */

static void
test_export_opts(bool opts)
{
    struct pt_options o = {.root = exp_root,
                           .multiuser = true,
                           .remap_devs = true,
                           .nosuid = opts,
                           .nodev = opts};
    const char *tag = opts ? "nosuid" : "plain";
    static const unsigned char capv2[20] = {0x01, 0x00, 0x00, 0x02, 0x80};
    struct backend *be = NULL;
    struct be_node *root;
    struct be_node *n = NULL;
    struct be_handle *h = NULL;
    struct be_user *r;
    struct p9_qid q;
    struct stat st;
    char name[64];
    uint32_t iou;
    int err;

    if (pt_backend_new(&o, &be) < 0) {
        tap_ok(false, "%s/backend", tag);
        return;
    }
    root = get_root(be, NULL);
    r = enter(be, 0); /* even root's files */
    snprintf(name, sizeof(name), "%s-f", tag);
    err = OPS(be)->create(be, root, name, P9_DOTL_RDWR, 06755, 0, &n, &h, &q,
                          &iou);
    host_stat(name, &st);
    tap_ok(err == 0 && (st.st_mode & 07777) == (opts ? 0755 : 06755),
           "%s/create 6755 -> %o", tag, st.st_mode & 07777);
    if (err == 0) {
        OPS(be)->close(be, h);
        err = chmod_node(be, n, 04711);
        host_stat(name, &st);
        tap_ok(err == 0 && (st.st_mode & 07777) == (opts ? 0711 : 04711),
               "%s/chmod 4711 -> %o", tag, st.st_mode & 07777);
        err = OPS(be)->setxattr(be, n, "security.capability", capv2,
                                sizeof(capv2), 0);
        tap_ok(opts ? err == -EPERM : err == 0,
               "%s/security.capability by root (%d)", tag, err);
        OPS(be)->node_put(be, n);
    }
    snprintf(name, sizeof(name), "%s-d", tag);
    err = OPS(be)->mkdir(be, root, name, 0755, 0, &q);
    if (err == 0 && walkp(be, root, name, &n) == 0) {
        err = chmod_node(be, n, 06755);
        OPS(be)->node_put(be, n);
    }
    host_stat(name, &st);
    tap_ok(err == 0 && (st.st_mode & 07777) == (opts ? 02755 : 06755),
           "%s/directory chmod 6755 -> %o (set-gid of a directory stays)", tag,
           st.st_mode & 07777);
    snprintf(name, sizeof(name), "%s-m", tag);
    err = OPS(be)->mknod(be, root, name, S_IFREG | 04755, 0, 0, 0, &q);
    host_stat(name, &st);
    tap_ok(err == 0 && (st.st_mode & 07777) == (opts ? 0755 : 04755),
           "%s/mknod regular 4755 -> %o", tag, st.st_mode & 07777);
    snprintf(name, sizeof(name), "%s-null", tag);
    err = OPS(be)->mknod(be, root, name, S_IFCHR | 0666, 1, 3, 0, &q);
    tap_ok(opts ? err == -EPERM : err == 0, "%s/mknod char device (%d)", tag,
           err);
    snprintf(name, sizeof(name), "%s-blk", tag);
    err = OPS(be)->mknod(be, root, name, S_IFBLK | 0600, 7, 0, 0, &q);
    tap_ok(opts ? err == -EPERM : err == 0, "%s/mknod block device (%d)", tag,
           err);
    snprintf(name, sizeof(name), "%s-fifo", tag);
    err = OPS(be)->mknod(be, root, name, S_IFIFO | 0644, 0, 0, 0, &q);
    tap_ok(err == 0, "%s/mknod fifo works (%d)", tag, err);
    OPS(be)->user_put(be, r);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

static void *
run_mu(void *arg)
{
    struct backend *be = arg;
    struct be_node *root = get_root(be, NULL);

    test_caps(be, root);
    test_create_gid(be, root);
    test_chown(be, root);
    test_access(be, root);
    OPS(be)->node_put(be, root);
    return NULL;
}

int
main(void)
{
    struct backend *be;
    pthread_t th;
    char path[512];

    if (geteuid() != 0) {
        tap_ok(true, "# SKIP identity tests need root");
        return tap_done();
    }
    exp_root = mktmp("ident");
    chmod(exp_root, 0777);
    host_setup("secret", S_IFREG, 0600, 0, 0);
    hpath(path, sizeof(path), "secret");
    if (setxattr(path, "trusted.t", "1", 1, 0) < 0) {
        perror("setxattr trusted.t (the host fs needs trusted xattrs)");
    }
    host_setup("sgid", S_IFDIR, 02777, 0, SGIDDIR);
    host_setup("grpfile", S_IFREG, 0060, 0, SUPP);
    host_setup("grpdir", S_IFDIR, 0070, 0, SUPP);
    host_setup("sticky", S_IFDIR, 01777, 0, 0);
    hpath(path, sizeof(path), "sticky");
    put_file(path, "rootfile", "x");
    host_setup("suidroot", S_IFREG, 06777, 0, 0);
    host_setup("suidw", S_IFREG, 06777, 0, 0);
    host_setup("suidt", S_IFREG, 06777, 0, 0);

    be = be_open(exp_root, false, true);
    /* A thread of its own: the identity switches must not leak to main. */
    pthread_create(&th, NULL, run_mu, be);
    pthread_join(th, NULL);
    tap_ok(thread_capeff() != 0 && (uint32_t)syscall(SYS_setfsuid, -1) == 0,
           "main thread kept its identity and capabilities");
    OPS(be)->destroy(be);

    test_setid_order(true);
    test_setid_order(false);
    test_nomu_caps();
    test_export_opts(false);
    test_export_opts(true);
    rmtree(exp_root);
    free(exp_root);
    return tap_done();
}
