/* SPDX-License-Identifier: MIT */
/*
 * Passthrough multiuser (needs root): a uid with no host account creates
 * files owned by it, owner-only checks are the kernel's, identities are
 * per thread, and set-id bits are cleared on writes when root serves
 * without multiuser.  test_pt_ident.c has the rest of the identity model.
 */
#include "pt_test.h"

#include <pthread.h>
#include <sys/syscall.h>

static char *exp_root;

#define UID 1234

static uid_t
cur_fsuid(void)
{
    return (uid_t)syscall(SYS_setfsuid, (uid_t)-1);
}

static void
host_stat(const char *name, struct stat *st)
{
    char path[512];

    memset(st, 0, sizeof(*st));
    snprintf(path, sizeof(path), "%s/%s", exp_root, name);
    lstat(path, st);
}

static void *
as_user(void *arg)
{
    struct backend *be = arg;
    struct be_user *u = NULL;
    struct be_user *r = NULL;
    struct be_node *root = get_root(be, NULL);
    struct be_node *n = NULL;
    struct be_node *x = NULL;
    struct be_handle *h = NULL;
    struct p9_qid q;
    struct p9_tsetattr sa;
    struct stat st;
    uint32_t iou;
    int err;

    err = OPS(be)->user_get(be, "", UID, &u);
    tap_ok(err == 0, "mu/user_get n_uname %d without host account", UID);
    err = OPS(be)->user_enter(be, u);
    tap_ok(err == 0 && cur_fsuid() == UID, "mu/user_enter sets fsuid");

    err = OPS(be)->create(be, root, "mine", P9_DOTL_RDWR, 0644, UID, &n, &h, &q,
                          &iou);
    host_stat("mine", &st);
    tap_ok(err == 0 && st.st_uid == UID && st.st_gid == UID,
           "mu/create owned by %d:%d (%d)", UID, UID, err);
    if (err == 0) {
        OPS(be)->close(be, h);
        memset(&sa, 0, sizeof(sa));
        sa.valid = P9_SETATTR_MODE;
        sa.mode = 0600;
        tap_ok(OPS(be)->setattr(be, n, NULL, &sa) == 0, "mu/chmod own file");
        sa.valid = P9_SETATTR_UID;
        sa.uid = 0;
        tap_ok(OPS(be)->setattr(be, n, NULL, &sa) == -EPERM,
               "mu/chown to root denied");
        /* Membership is the guest's word (docs/security.md). */
        sa.valid = P9_SETATTR_GID;
        sa.gid = 0;
        tap_ok(OPS(be)->setattr(be, n, NULL, &sa) == 0,
               "mu/owner chgrp to a group the host does not list");
        tap_ok(OPS(be)->setxattr(be, n, "user.a", "1", 1, 0) == 0,
               "mu/user xattr on own file");
        tap_ok(OPS(be)->link(be, root, "mine-hl", n) == 0,
               "mu/hard link without CAP_DAC_READ_SEARCH (proc fallback)");
        tap_ok(OPS(be)->rename(be, n, root, "mine2") == 0,
               "mu/Trename own file");
        OPS(be)->node_put(be, n);
    }
    err = OPS(be)->create(be, root, "g0", P9_DOTL_RDWR, 0644, 0, &n, &h, &q,
                          &iou);
    host_stat("g0", &st);
    tap_ok(err == 0 && st.st_gid == 0,
           "mu/create with another gid gets that gid (%u)",
           (unsigned)st.st_gid);
    if (err == 0) {
        OPS(be)->close(be, h);
        OPS(be)->node_put(be, n);
    }
    err = OPS(be)->mkdir(be, root, "mdir", 0755, UID, &q);
    host_stat("mdir", &st);
    tap_ok(err == 0 && st.st_uid == UID, "mu/mkdir owned by user");
    err = OPS(be)->symlink(be, root, "msym", "x", UID, &q);
    host_stat("msym", &st);
    tap_ok(err == 0 && st.st_uid == UID, "mu/symlink owned by user");
    err = OPS(be)->mknod(be, root, "mnull", S_IFCHR | 0666, 1, 3, UID, &q);
    tap_ok(err == -EPERM, "mu/mknod device denied to non-root (%d)", err);

    /*
     * Read/write/search checks are the guest kernel's (the fid runs with
     * CAP_DAC_OVERRIDE): it knows groups 9P does not carry.
     */
    err = OPS(be)->create(be, root, "rootonly", P9_DOTL_RDWR, 0644, UID, &x, &h,
                          &q, &iou);
    tap_ok(err == -EISDIR || err == -EACCES, "mu/create over a dir refused");
    if (walkp(be, root, "rootonly", &x) == 0) {
        err = OPS(be)->create(be, x, "f", P9_DOTL_RDWR, 0644, UID, &n, &h, &q,
                              &iou);
        tap_ok(err == 0, "mu/create in root's 0755 dir: guest's call (%d)",
               err);
        if (err == 0) {
            OPS(be)->close(be, h);
            OPS(be)->node_put(be, n);
        }
        err = OPS(be)->mkdir(be, x, "d", 0755, UID, &q);
        tap_ok(err == 0, "mu/mkdir in root's dir: guest's call");
        OPS(be)->node_put(be, x);
    }
    if (walkp(be, root, "secret", &x) == 0) {
        err = OPS(be)->open(be, x, P9_DOTL_RDONLY, &h, &q, &iou);
        tap_ok(err == 0, "mu/open root's 0600 file: guest's call (%d)", err);
        if (err == 0) {
            OPS(be)->close(be, h);
        }
        err = OPS(be)->setxattr(be, x, "trusted.a", "1", 1, 0);
        tap_ok(err == -EPERM, "mu/trusted xattr on root's file denied");
        OPS(be)->node_put(be, x);
    }
    if (walkp(be, root, "sticky/rootfile", &x) == 0) {
        tap_ok(OPS(be)->remove(be, x) == -EPERM,
               "mu/remove root's file in a sticky dir EPERM");
        OPS(be)->node_put(be, x);
    }

    /* Back to root on this thread. */
    err = OPS(be)->user_get(be, "root", P9_NONUNAME, &r);
    tap_ok(err == 0, "mu/user_get root by name");
    if (err == 0) {
        OPS(be)->user_enter(be, r);
        tap_ok(cur_fsuid() == 0, "mu/back to fsuid 0");
        tap_ok(OPS(be)->mknod(be, root, "mnull", S_IFCHR | 0666, 1, 3, 0, &q) ==
                   0,
               "mu/mknod device as root works");
        OPS(be)->user_put(be, r);
    }
    OPS(be)->user_put(be, u);
    OPS(be)->node_put(be, root);
    return NULL;
}

static void
test_user_get(struct backend *be)
{
    struct be_user *u = NULL;
    int err;

    err = OPS(be)->user_get(be, "no-such-user-xyz", P9_NONUNAME, &u);
    tap_ok(err == -EINVAL, "mu/unknown user name refused");
    err = OPS(be)->user_get(be, "4321", P9_NONUNAME, &u);
    tap_ok(err == 0, "mu/numeric uname without account accepted");
    if (err == 0) {
        OPS(be)->user_put(be, u);
    }
    err = OPS(be)->user_get(be, "nobody", P9_NONUNAME, &u);
    tap_ok(err == 0, "mu/user_get nobody");
    if (err == 0) {
        OPS(be)->user_put(be, u);
    }
}

static void
test_suid_clear(void)
{
    struct backend *be = be_open(exp_root, false, false);
    struct be_node *root = get_root(be, NULL);
    struct be_user *u = NULL;
    struct be_user *r = NULL;
    struct be_node *n = NULL;
    struct be_handle *h = NULL;
    struct p9_tsetattr sa;
    struct p9_qid q;
    struct stat st;
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    uint32_t iou;

    OPS(be)->user_get(be, "", UID, &u);
    OPS(be)->user_get(be, "", 0, &r);
    OPS(be)->user_enter(be, u);
    tap_ok(cur_fsuid() == 0, "nomu/user_enter does not switch identity");
    OPS(be)->create(be, root, "suid", P9_DOTL_RDWR, 0755, (uint32_t)-1, &n, &h,
                    &q, &iou);
    memset(&sa, 0, sizeof(sa));
    sa.valid = P9_SETATTR_MODE;
    sa.mode = 06755;
    OPS(be)->setattr(be, n, NULL, &sa);
    host_stat("suid", &st);
    tap_ok((st.st_mode & 07777) == 06755, "nomu/setuid+setgid set");
    OPS(be)->write(be, h, &iov, 1, 0);
    host_stat("suid", &st);
    tap_ok((st.st_mode & 07777) == 0755,
           "nomu/write by uid %d clears set-id bits (%o)", UID,
           st.st_mode & 07777);
    OPS(be)->setattr(be, n, NULL, &sa);
    OPS(be)->user_enter(be, r);
    OPS(be)->write(be, h, &iov, 1, 0);
    host_stat("suid", &st);
    tap_ok((st.st_mode & 07777) == 06755, "nomu/write by root keeps them");
    OPS(be)->close(be, h);
    OPS(be)->node_put(be, n);
    OPS(be)->user_put(be, u);
    OPS(be)->user_put(be, r);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

int
main(void)
{
    struct backend *be;
    pthread_t th;
    char path[512];

    if (geteuid() != 0) {
        tap_ok(true, "# SKIP multiuser tests need root");
        return tap_done();
    }
    exp_root = mktmp("mu");
    chmod(exp_root, 0777);
    snprintf(path, sizeof(path), "%s/rootonly", exp_root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/sticky", exp_root);
    mkdir(path, 01777);
    chmod(path, 01777);
    put_file(path, "rootfile", "x");
    put_file(exp_root, "secret", "root only");
    snprintf(path, sizeof(path), "%s/secret", exp_root);
    chmod(path, 0600);

    be = be_open(exp_root, false, true);
    test_user_get(be);
    pthread_create(&th, NULL, as_user, be);
    /* While the other thread acts as UID, this one stays root. */
    pthread_join(th, NULL);
    tap_ok(cur_fsuid() == 0, "mu/main thread identity untouched");
    OPS(be)->destroy(be);

    test_suid_clear();
    rmtree(exp_root);
    free(exp_root);
    return tap_done();
}
