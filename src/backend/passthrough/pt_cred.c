/* SPDX-License-Identifier: MIT */
/*
 * Users and per-thread credentials.
 *
 * user_get resolves the attaching user: n_uname (a numeric uid) wins over
 * uname.  A uid with a host account gets that account's primary gid and
 * its supplementary groups (getgrouplist); a uid without one gets gid = uid
 * and no supplementary groups.  An unknown non-numeric uname is -EINVAL in
 * multiuser mode; without multiuser it maps to nobody (65534) since the
 * identity is then only used to decide set-id bit clearing (pt_file.c).
 *
 * user_enter (multiuser only) switches the calling thread's fsuid, fsgid
 * and supplementary groups with raw syscalls: glibc's setgroups() and
 * setfsuid() wrappers broadcast to every thread of the process, which must
 * not happen.  The current identity is cached in a thread-local (by user
 * serial), so consecutive requests of one user cost no syscalls.  While
 * fsuid is not 0 the kernel drops the file capabilities (CAP_CHOWN,
 * CAP_DAC_*, CAP_FOWNER, CAP_FSETID, CAP_MKNOD...) from the effective set,
 * so permission checks and set-id clearing are the kernel's, as for that
 * user.
 */
#include "pt.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PT_NOBODY 65534
#define PT_PWBUF 16384
#define PT_MAXGROUPS 65536

#ifdef SYS_setfsuid32
#define PT_SYS_SETFSUID SYS_setfsuid32
#define PT_SYS_SETFSGID SYS_setfsgid32
#define PT_SYS_SETGROUPS SYS_setgroups32
#else
#define PT_SYS_SETFSUID SYS_setfsuid
#define PT_SYS_SETFSGID SYS_setfsgid
#define PT_SYS_SETGROUPS SYS_setgroups
#endif

static atomic_uint_fast64_t pt_user_serial = 1;

/* Serial of the user this thread acts as (0: the process's own identity). */
static _Thread_local uint64_t pt_tl_serial;
/* The identity itself, so that users of other sessions with the same ids
 * (each Tattach makes its own user object) cost no syscalls either. */
#define PT_TL_GROUPS 32
static _Thread_local uid_t pt_tl_fsuid;
static _Thread_local gid_t pt_tl_fsgid;
static _Thread_local int pt_tl_ngroups = -1;
static _Thread_local gid_t pt_tl_groups[PT_TL_GROUPS];

static bool
pt_tl_same(const struct be_user *u)
{
    return pt_tl_serial != 0 && pt_tl_fsuid == u->uid &&
           pt_tl_fsgid == u->gid && pt_tl_ngroups == u->ngroups &&
           u->ngroups <= PT_TL_GROUPS &&
           (u->ngroups == 0 ||
            memcmp(pt_tl_groups, u->groups,
                   (size_t)u->ngroups * sizeof(gid_t)) == 0);
}
/* uid of the user of the current request on this thread (any mode). */
static _Thread_local uid_t pt_tl_uid;
static _Thread_local bool pt_tl_uid_set;

uid_t
pt_current_uid(void)
{
    return pt_tl_uid_set ? pt_tl_uid : geteuid();
}

static bool
pt_parse_uid(const char *s, uid_t *uid)
{
    char *end;
    unsigned long v;

    if (s == NULL || s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v >= (unsigned long)UINT32_MAX) {
        return false;
    }
    *uid = (uid_t)v;
    return true;
}

/* Fill u->gid and the groups from the passwd entry 'pw' (may be NULL). */
static int
pt_user_groups(struct be_user *u, const struct passwd *pw)
{
    int n = 32;

    if (pw == NULL) {
        u->gid = (gid_t)u->uid;
        u->ngroups = 0;
        u->groups = NULL;
        return 0;
    }
    u->gid = pw->pw_gid;
    for (;;) {
        gid_t *g = malloc((size_t)n * sizeof(*g));
        int got = n;

        if (g == NULL) {
            return -ENOMEM;
        }
        if (getgrouplist(pw->pw_name, pw->pw_gid, g, &got) >= 0) {
            u->groups = g;
            u->ngroups = got;
            return 0;
        }
        free(g);
        if (got <= n) {
            n *= 2;
        } else {
            n = got;
        }
        if (n > PT_MAXGROUPS) {
            return -E2BIG;
        }
    }
}

int
pt_user_get(struct backend *be, const char *uname, uint32_t n_uname,
            struct be_user **out)
{
    struct pt_backend *pb = pt_be(be);
    struct passwd pwbuf;
    struct passwd *pw = NULL;
    struct be_user *u;
    char *buf;
    int err;

    u = calloc(1, sizeof(*u));
    buf = malloc(PT_PWBUF);
    if (u == NULL || buf == NULL) {
        err = -ENOMEM;
        goto out_free;
    }
    if (n_uname != P9_NONUNAME) {
        u->uid = (uid_t)n_uname;
        if (getpwuid_r(u->uid, &pwbuf, buf, PT_PWBUF, &pw) != 0) {
            pw = NULL;
        }
    } else if (uname != NULL && uname[0] != '\0') {
        if (getpwnam_r(uname, &pwbuf, buf, PT_PWBUF, &pw) != 0) {
            pw = NULL;
        }
        if (pw != NULL) {
            u->uid = pw->pw_uid;
        } else if (pt_parse_uid(uname, &u->uid)) {
            if (getpwuid_r(u->uid, &pwbuf, buf, PT_PWBUF, &pw) != 0) {
                pw = NULL;
            }
        } else if (pb->multiuser) {
            err = -EINVAL;
            goto out_free;
        } else {
            u->uid = PT_NOBODY;
        }
    } else if (pb->multiuser) {
        err = -EINVAL;
        goto out_free;
    } else {
        u->uid = geteuid();
    }
    err = pt_user_groups(u, pw);
    if (err < 0) {
        goto out_free;
    }
    free(buf);
    atomic_init(&u->refs, 1);
    u->serial = atomic_fetch_add(&pt_user_serial, 1);
    *out = u;
    return 0;

out_free:
    free(buf);
    free(u);
    return err;
}

void
pt_user_put(struct backend *be, struct be_user *u)
{
    (void)be;
    if (u == NULL) {
        return;
    }
    if (atomic_fetch_sub_explicit(&u->refs, 1, memory_order_acq_rel) == 1) {
        free(u->groups);
        free(u);
    }
}

int
pt_user_enter(struct backend *be, struct be_user *u)
{
    struct pt_backend *pb = pt_be(be);
    long prev;

    pt_tl_uid = u->uid;
    pt_tl_uid_set = true;
    if (!pb->multiuser || pt_tl_serial == u->serial) {
        return 0;
    }
    if (pt_tl_same(u)) {
        pt_tl_serial = u->serial;
        return 0;
    }
    /* Groups first: the kernel checks them once fsgid/fsuid are set. */
    if (syscall(PT_SYS_SETGROUPS, (size_t)u->ngroups, u->groups) < 0) {
        int err = -errno;

        pt_tl_serial = 0;
        return err;
    }
    /* setfsuid/setfsgid report no error: read back with -1 to verify. */
    syscall(PT_SYS_SETFSGID, u->gid);
    prev = syscall(PT_SYS_SETFSGID, (gid_t)-1);
    if ((uint32_t)prev != (uint32_t)u->gid) {
        pt_tl_serial = 0;
        return -EPERM;
    }
    syscall(PT_SYS_SETFSUID, u->uid);
    prev = syscall(PT_SYS_SETFSUID, (uid_t)-1);
    if ((uint32_t)prev != (uint32_t)u->uid) {
        pt_tl_serial = 0;
        return -EPERM;
    }
    pt_tl_serial = u->serial;
    pt_tl_fsuid = u->uid;
    pt_tl_fsgid = u->gid;
    pt_tl_ngroups = u->ngroups <= PT_TL_GROUPS ? u->ngroups : -1;
    if (pt_tl_ngroups > 0) {
        memcpy(pt_tl_groups, u->groups, (size_t)u->ngroups * sizeof(gid_t));
    }
    return 0;
}
