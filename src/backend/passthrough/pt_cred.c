/* SPDX-License-Identifier: MIT */
/*
 * Users and per-thread credentials.
 *
 * user_get resolves the attaching user: n_uname (a numeric uid) wins over
 * uname.  A uid with a host account gets that account's primary gid and
 * its supplementary groups (getgrouplist); a uid without one gets gid = uid
 * and no supplementary groups.  An unknown non-numeric uname is -EINVAL in
 * multiuser mode; without multiuser it maps to nobody (65534) since the
 * identity is then only used to pick the capability set below.
 *
 * user_enter switches the calling thread (never the process: glibc's
 * setgroups()/setfsuid() wrappers broadcast to every thread, so raw
 * syscalls are used) to the fid's identity.  The trust model
 * (docs/security.md, "Credentials"): the guest kernel knows the caller's
 * full credentials and checks permissions itself; 9P carries only the uid
 * and, on creations, the gid it chose.  A guest can attach as uid 0 anyway,
 * so inside the export the guest kernel's checks stand, and what the
 * server must hold to is what a non-root identity never gets:
 *
 *   root fid (uid 0)    fsuid 0, the daemon's whole permitted set.
 *   other, multiuser    fsuid = uid, fsgid = the user's gid (the request's
 *                       gid while creating), host groups, and the
 *                       effective set {CAP_DAC_OVERRIDE} only:
 *     DAC_OVERRIDE   read/write/search through a group the guest says the
 *                    caller is in but the host does not know of.
 *     not CHOWN      raised only around a chgrp by the owner (pt_attr.c):
 *                    always-on it would let any fid give away any file.
 *     not FOWNER     the kernel keeps owner-only checks (chmod, utimes,
 *                    sticky directories); raised only around a chmod by a
 *                    non-owner that only removes set-id bits.
 *     not FSETID     so the kernel clears set-id bits on write and
 *                    truncation, before the data lands; raised only
 *                    around chmod/chgrp by the owner (the guest already
 *                    stripped S_ISGID where POSIX wants).
 *     not MKNOD      a non-root guest user cannot make device nodes.
 *     not DAC_READ_SEARCH  only linkat(AT_EMPTY_PATH) wants it; pt_link
 *                    has a /proc fallback.  (It also opens
 *                    open_by_handle_at, which must never serve a guest.)
 *     never SYS_ADMIN (trusted.*, security.*), SETFCAP
 *                    (security.capability), SYS_RESOURCE, SETUID/SETGID,
 *                    or any other non-file-system capability.
 *   other, no multiuser (daemon is root)  fsuid 0 and the daemon's
 *                    file-system set minus FSETID (so set-id bits are
 *                    cleared by the kernel before a write lands).
 *
 * Order matters: setfsuid(non-zero) makes the kernel drop the file-system
 * capabilities from the effective set (and setfsuid(0) raises them again),
 * so capset comes after the id switch; setgroups/setfsuid need
 * CAP_SETGID/CAP_SETUID, so the full set is raised before it.  The current
 * identity and effective set are cached per thread, so consecutive
 * requests of one user cost no syscalls.  If anything fails the thread is
 * left with an empty effective set (fail closed).
 */
#include "pt.h"
#include "util/log.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/log.h"

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

/* The file-system capabilities (the kernel's CAP_FS_MASK without MAC). */
#define PT_CAPS_FS                                                           \
    (PT_CAP(CAP_CHOWN) | PT_CAP(CAP_DAC_OVERRIDE) |                          \
     PT_CAP(CAP_DAC_READ_SEARCH) | PT_CAP(CAP_FOWNER) | PT_CAP(CAP_FSETID) | \
     PT_CAP(CAP_MKNOD))
/* A non-root fid in multiuser mode (see the file comment). */
#define PT_CAPS_USER PT_CAP(CAP_DAC_OVERRIDE)
/* A non-root fid when root serves without multiuser. */
#define PT_CAPS_NOMU_USER (PT_CAPS_FS & ~PT_CAP(CAP_FSETID))

/* The thread's capability sets as last read or set (valid: pt_tl_caps). */
static _Thread_local bool pt_tl_caps;
static _Thread_local uint64_t pt_tl_eff;
static _Thread_local uint64_t pt_tl_perm;
static _Thread_local uint64_t pt_tl_inh;

/* Serial of the user this thread acts as (0: the process's own identity). */
static _Thread_local uint64_t pt_tl_serial;
/* The identity itself, so that users of other sessions with the same ids
 * (each Tattach makes its own user object) cost no syscalls either. */
#define PT_TL_GROUPS 32
static _Thread_local uid_t pt_tl_fsuid;
static _Thread_local gid_t pt_tl_fsgid;
static _Thread_local int pt_tl_ngroups = -1;
static _Thread_local gid_t pt_tl_groups[PT_TL_GROUPS];

static _Thread_local bool pt_tl_squashed;

static bool
pt_tl_same(const struct be_user *u)
{
    return pt_tl_serial != 0 && pt_tl_fsuid == u->uid &&
           pt_tl_squashed == u->squashed && pt_tl_fsgid == u->gid &&
           pt_tl_ngroups == u->ngroups && u->ngroups <= PT_TL_GROUPS &&
           (u->ngroups == 0 || memcmp(pt_tl_groups, u->groups,
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

/* The user of the current request on this thread (NULL: none entered).
 * Valid for the request: its fid holds a reference. */
static _Thread_local const struct be_user *pt_tl_user;

bool
pt_current_in_group(gid_t gid)
{
    const struct be_user *u = pt_tl_user;

    if (u == NULL) {
        return getegid() == gid;
    }
    if (u->gid == gid) {
        return true;
    }
    for (int i = 0; i < u->ngroups; i++) {
        if (u->groups[i] == gid) {
            return true;
        }
    }
    return false;
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
        uint32_t hid;

        /* --translate-uid: the guest's uid names a host uid (or none). */
        err = pt_id_to_host(&pb->uidmap, n_uname, &hid);
        if (err < 0) {
            goto out_free;
        }
        u->uid = (uid_t)hid;
        u->squashed = pt_id_squashed(&pb->uidmap, n_uname);
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

static int
pt_capget(uint64_t *eff, uint64_t *perm, uint64_t *inh)
{
    struct __user_cap_header_struct hdr = {
        .version = _LINUX_CAPABILITY_VERSION_3,
        .pid = 0,
    };
    struct __user_cap_data_struct d[2];

    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &hdr, d) < 0) {
        return -errno;
    }
    *eff = (uint64_t)d[1].effective << 32 | d[0].effective;
    *perm = (uint64_t)d[1].permitted << 32 | d[0].permitted;
    *inh = (uint64_t)d[1].inheritable << 32 | d[0].inheritable;
    return 0;
}

/* Read this thread's capability sets into the cache if not there. */
static int
pt_caps_load(void)
{
    int err;

    if (pt_tl_caps) {
        return 0;
    }
    err = pt_capget(&pt_tl_eff, &pt_tl_perm, &pt_tl_inh);
    if (err < 0) {
        return err;
    }
    pt_tl_caps = true;
    return 0;
}

/*
 * Set this thread's effective set to 'eff' (within its permitted set),
 * leaving permitted and inheritable as they are.  'force' skips the cache
 * (after setfsuid, which changes the effective set behind our back).
 */
static int
pt_caps_set(uint64_t eff, bool force)
{
    struct __user_cap_header_struct hdr = {
        .version = _LINUX_CAPABILITY_VERSION_3,
        .pid = 0,
    };
    struct __user_cap_data_struct d[2];
    int err;

    err = pt_caps_load();
    if (err < 0) {
        return err;
    }
    eff &= pt_tl_perm;
    if (!force && eff == pt_tl_eff) {
        return 0;
    }
    d[0].effective = (uint32_t)eff;
    d[1].effective = (uint32_t)(eff >> 32);
    d[0].permitted = (uint32_t)pt_tl_perm;
    d[1].permitted = (uint32_t)(pt_tl_perm >> 32);
    d[0].inheritable = (uint32_t)pt_tl_inh;
    d[1].inheritable = (uint32_t)(pt_tl_inh >> 32);
    if (syscall(SYS_capset, &hdr, d) < 0) {
        err = -errno;
        pt_tl_caps = false; /* unknown now: read back next time */
        return err;
    }
    pt_tl_eff = eff;
    return 0;
}

/*
 * Something failed half-way: act as nobody, without groups or any
 * capability, on this thread (best effort for the ids: they need the
 * capabilities we may have lost).  The next user_enter starts afresh.
 */
static void
pt_caps_lockdown(void)
{
    int err;

    pt_tl_serial = 0;
    (void)syscall(PT_SYS_SETGROUPS, (size_t)0, NULL);
    (void)syscall(PT_SYS_SETFSGID, (gid_t)PT_NOBODY);
    (void)syscall(PT_SYS_SETFSUID, (uid_t)PT_NOBODY);
    err = pt_caps_set(0, true);
    if (err < 0) {
        /* Not expected (lowering is always allowed); say it loudly. */
        log_err("passthrough: cannot drop capabilities: %s", strerror(-err));
    }
}

void
pt_cred_init(struct pt_backend *pb)
{
    uint64_t eff = 0;
    uint64_t perm = 0;
    uint64_t inh = 0;

    pb->caps = false;
    pb->cap_full = 0;
    /* pt_capget sets all three when it returns 0 (capget(2) fills them) */
    /* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
    if (pt_capget(&eff, &perm, &inh) == 0 && perm != 0) {
        pb->caps = true;
        pb->cap_full = perm;
    }
}

/*
 * The effective set a request of user 'u' runs with.  A squashed user
 * (many guest ids made one host id, --all-squash) gets no
 * CAP_DAC_OVERRIDE: DAC_OVERRIDE stands in for guest groups the host does
 * not know, but a squash promises host-side access as that one host user
 * (diod's allsquash, NFS's root_squash), so a guest root squashed to
 * nobody must not read the host's 0600 files.
 */
static uint64_t
pt_caps_for(const struct pt_backend *pb, const struct be_user *u)
{
    if (u->uid == 0) {
        return pb->cap_full;
    }
    if (u->squashed && pb->multiuser) {
        return 0;
    }
    return pb->multiuser ? PT_CAPS_USER : PT_CAPS_NOMU_USER;
}

bool
pt_cred_limited(struct pt_backend *pb)
{
    return pb->multiuser && pt_current_uid() != 0;
}

/* Nothing to restore (pt_cred_raise had nothing to raise). */
#define PT_CAPS_NONE UINT64_MAX

int
pt_cred_raise(struct pt_backend *pb, uint64_t caps, uint64_t *saved)
{
    int err;

    *saved = PT_CAPS_NONE;
    if (!pb->caps || caps == 0) {
        return 0;
    }
    err = pt_caps_load();
    if (err < 0) {
        return err;
    }
    *saved = pt_tl_eff;
    return pt_caps_set(pt_tl_eff | caps, false);
}

void
pt_cred_restore(struct pt_backend *pb, uint64_t saved)
{
    if (saved != PT_CAPS_NONE && pb->caps && pt_caps_set(saved, false) < 0) {
        pt_caps_lockdown();
    }
}

/*
 * Creations: act with fsgid 'gid' (the gid the client chose) until
 * pt_cred_fsgid_restore(*saved).  setfsgid to a group outside the
 * process's own needs CAP_SETGID, held only around the switch.
 */
static int
pt_setfsgid_checked(gid_t gid)
{
    long prev;

    syscall(PT_SYS_SETFSGID, gid);
    prev = syscall(PT_SYS_SETFSGID, (gid_t)-1);
    return (uint32_t)prev == (uint32_t)gid ? 0 : -EPERM;
}

int
pt_cred_fsgid(struct pt_backend *pb, uint32_t gid, uint32_t *saved)
{
    uint64_t eff = pt_tl_eff;
    int err;

    *saved = (uint32_t)-1;
    if (!pb->multiuser || gid == (uint32_t)-1 || pt_tl_serial == 0 ||
        (gid_t)gid == pt_tl_fsgid) {
        return 0;
    }
    err = pt_caps_set(eff | PT_CAP(CAP_SETGID), false);
    if (err == 0) {
        err = pt_setfsgid_checked((gid_t)gid);
    }
    if (pt_caps_set(eff, false) < 0) {
        pt_caps_lockdown();
        return -EPERM;
    }
    if (err < 0) {
        return err;
    }
    *saved = (uint32_t)pt_tl_fsgid;
    return 0;
}

void
pt_cred_fsgid_restore(struct pt_backend *pb, uint32_t saved)
{
    uint64_t eff = pt_tl_eff;
    int err;

    if (saved == (uint32_t)-1 || !pb->multiuser) {
        return;
    }
    err = pt_caps_set(eff | PT_CAP(CAP_SETGID), false);
    if (err == 0) {
        err = pt_setfsgid_checked((gid_t)saved);
    }
    if (err < 0 || pt_caps_set(eff, false) < 0) {
        pt_caps_lockdown();
    }
}

int
pt_user_enter(struct backend *be, struct be_user *u)
{
    struct pt_backend *pb = pt_be(be);
    uint64_t want = pt_caps_for(pb, u);
    long prev;
    int err;

    pt_tl_uid = u->uid;
    pt_tl_uid_set = true;
    pt_tl_user = u;
    if (!pb->multiuser) {
        return pb->caps ? pt_caps_set(want, false) : 0;
    }
    if (pt_tl_serial == u->serial) {
        return 0;
    }
    if (pt_tl_same(u)) {
        pt_tl_serial = u->serial;
        return 0;
    }
    /* setgroups/setfsgid/setfsuid need CAP_SETGID/CAP_SETUID. */
    err = pt_caps_set(pb->cap_full, false);
    if (err < 0) {
        goto out_lockdown;
    }
    /* Groups first: the kernel checks them once fsgid/fsuid are set. */
    if (syscall(PT_SYS_SETGROUPS, (size_t)u->ngroups, u->groups) < 0) {
        err = -errno;
        goto out_lockdown;
    }
    /* setfsuid/setfsgid report no error: read back with -1 to verify. */
    err = pt_setfsgid_checked(u->gid);
    if (err < 0) {
        goto out_lockdown;
    }
    syscall(PT_SYS_SETFSUID, u->uid);
    prev = syscall(PT_SYS_SETFSUID, (uid_t)-1);
    if ((uint32_t)prev != (uint32_t)u->uid) {
        err = -EPERM;
        goto out_lockdown;
    }
    /* setfsuid changed the effective set: set it whatever the cache says. */
    err = pt_caps_set(want, true);
    if (err < 0) {
        goto out_lockdown;
    }
    pt_tl_serial = u->serial;
    pt_tl_fsuid = u->uid;
    pt_tl_squashed = u->squashed;
    pt_tl_fsgid = u->gid;
    pt_tl_ngroups = u->ngroups <= PT_TL_GROUPS ? u->ngroups : -1;
    if (pt_tl_ngroups > 0) {
        memcpy(pt_tl_groups, u->groups, (size_t)u->ngroups * sizeof(gid_t));
    }
    return 0;

out_lockdown:
    pt_caps_lockdown();
    return err;
}

/*
 * Modes from the wire already carry the guest's umask, so the server's own
 * must not be applied on top.  The umask is per process, and a process-wide
 * umask(0) would make everything else the daemon creates (pid file,
 * sockets, logs) world-writable.  So each thread that creates files gets
 * a private file-system context (unshare(CLONE_FS): umask, cwd and root
 * become its own, and the backend uses neither cwd nor root) with umask 0,
 * once, on its first create.
 */
void
pt_exact_modes(void)
{
    static _Thread_local bool done;

    if (done) {
        return;
    }
    done = true;
    if (unshare(CLONE_FS) < 0) {
        log_peer("passthrough: unshare(CLONE_FS): %s; created files get "
                 "the daemon's umask",
                 strerror(errno));
        return;
    }
    umask(0);
}
