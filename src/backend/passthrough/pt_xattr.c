/* SPDX-License-Identifier: MIT */
/*
 * Extended attributes, through the node's inode.
 *
 * f*xattr() do not work on O_PATH descriptors, and opening the file would
 * need read permission the xattr syscalls do not.  So the path variants are
 * used on the /proc/self/fd/N magic link: following it ends on the inode
 * the descriptor holds (also for symlinks, devices and FIFOs, which are
 * never opened), and no other path element is resolved.  Permission
 * checks (user.* refused on symlinks and special files, trusted.* needing
 * CAP_SYS_ADMIN, ...) are the kernel's.  system.posix_acl_access/default
 * pass through as raw bytes.
 *
 * A request of a non-root fid never holds CAP_SYS_ADMIN or CAP_SETFCAP
 * (pt_cred.c), so the kernel refuses it trusted.* and writing security.*;
 * pt_xattr_denied says the same first, so that no capability set a
 * future change gives such a thread can open them.  Reading security.*
 * (getcap, ls -Z) is allowed to any user on Linux and stays so.  A nosuid
 * export refuses security.capability to every fid.
 */
#include "pt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/limits.h>
#include <sys/xattr.h>

/*
 * Mapped models (QEMU's names): the guest's POSIX ACLs, security.* and
 * trusted.* are stored as user.virtfs.<name>, never as host xattrs of
 * those namespaces; user.virtfs.* itself (the metadata) is invisible to
 * the guest: not listed, ENODATA to read, EACCES to write.  Other system.*
 * names are EOPNOTSUPP; user.* passes through.
 */
#define PT_XMAP_PREFIX "user.virtfs."
#define PT_XMAP_MAX (XATTR_NAME_MAX + 1)

static bool
pt_has_prefix(const char *name, const char *prefix)
{
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

/* -errno if a non-root fid may not touch 'name' this way, else 0. */
static int
pt_xattr_denied(const char *name, bool write)
{
    if (pt_current_uid() == 0) {
        return 0;
    }
    if (pt_has_prefix(name, "trusted.")) {
        /* What the kernel answers a caller without CAP_SYS_ADMIN. */
        return write ? -EPERM : -ENODATA;
    }
    if (write && pt_has_prefix(name, "security.")) {
        return -EPERM;
    }
    return 0;
}

static bool pt_has_prefix(const char *name, const char *prefix);

/* The host name of the guest's xattr 'name' into out, or -errno. */
static int
pt_xattr_map(struct pt_backend *pb, const char *name, bool write, char *out)
{
    if (!pt_mapped(pb)) {
        if (strlen(name) >= PT_XMAP_MAX) {
            return -ERANGE;
        }
        strcpy(out, name);
        return 0;
    }
    if (pt_has_prefix(name, PT_XMAP_PREFIX)) {
        return write ? -EACCES : -ENODATA;
    }
    if (strcmp(name, "system.posix_acl_access") == 0 ||
        strcmp(name, "system.posix_acl_default") == 0 ||
        pt_has_prefix(name, "security.") || pt_has_prefix(name, "trusted.")) {
        if (snprintf(out, PT_XMAP_MAX, PT_XMAP_PREFIX "%s", name) >=
            PT_XMAP_MAX) {
            return -ERANGE;
        }
        return 0;
    }
    if (pt_has_prefix(name, "system.")) {
        return -EOPNOTSUPP;
    }
    if (strlen(name) >= PT_XMAP_MAX) {
        return -ERANGE;
    }
    strcpy(out, name);
    return 0;
}

/* The guest's name of host xattr 'host' in a mapped model, or NULL. */
static const char *
pt_xattr_unmap(const char *host)
{
    const char *g;

    if (!pt_has_prefix(host, PT_XMAP_PREFIX)) {
        return host;
    }
    g = host + strlen(PT_XMAP_PREFIX);
    if (strcmp(g, "system.posix_acl_access") == 0 ||
        strcmp(g, "system.posix_acl_default") == 0 ||
        pt_has_prefix(g, "security.") ||
        (pt_has_prefix(g, "trusted.") && pt_current_uid() == 0)) {
        return g;
    }
    return NULL; /* metadata (uid, gid, mode, rdev) or unknown */
}

static ssize_t
pt_listxattr_mapped(const char *proc, char *buf, size_t size)
{
    char *all = NULL;
    ssize_t len;
    size_t out = 0;

    for (;;) {
        len = listxattr(proc, NULL, 0);
        if (len < 0) {
            len = -errno;
            free(all); /* from an earlier round that got ERANGE */
            return len;
        }
        free(all);
        all = malloc((size_t)len + 1);
        if (all == NULL) {
            return -ENOMEM;
        }
        len = listxattr(proc, all, (size_t)len);
        if (len >= 0) {
            break;
        }
        if (errno != ERANGE) {
            len = -errno;
            free(all);
            return len;
        }
        /* grew in between: again */
    }
    for (ssize_t pos = 0; pos < len;) {
        const char *name = all + pos;
        size_t nl = strlen(name);
        const char *g = pt_xattr_unmap(name);

        pos += (ssize_t)nl + 1;
        if (g == NULL) {
            continue;
        }
        nl = strlen(g) + 1;
        if (size != 0) {
            if (out + nl > size) {
                free(all);
                return -ERANGE;
            }
            memcpy(buf + out, g, nl);
        }
        out += nl;
    }
    free(all);
    return (ssize_t)out;
}

ssize_t
pt_getxattr(struct backend *be, struct be_node *n, const char *name, void *buf,
            size_t size)
{
    char proc[PT_PROC_PATH_MAX];
    char hname[PT_XMAP_MAX];
    ssize_t len;
    int err;

    if (name == NULL || name[0] == '\0') {
        return -EINVAL;
    }
    err = pt_xattr_denied(name, false);
    if (err < 0) {
        return err;
    }
    err = pt_xattr_map(pt_be(be), name, false, hname);
    if (err < 0) {
        return err;
    }
    pt_proc_path(proc, n->fd);
    len = getxattr(proc, hname, buf, size);
    if (len < 0) {
        return -errno;
    }
    return len;
}

ssize_t
pt_listxattr(struct backend *be, struct be_node *n, char *buf, size_t size)
{
    char proc[PT_PROC_PATH_MAX];
    ssize_t len;

    pt_proc_path(proc, n->fd);
    if (pt_mapped(pt_be(be))) {
        return pt_listxattr_mapped(proc, buf, size);
    }
    len = listxattr(proc, buf, size);
    if (len < 0) {
        return -errno;
    }
    return len;
}

int
pt_setxattr(struct backend *be, struct be_node *n, const char *name,
            const void *value, size_t size, uint32_t flags)
{
    char proc[PT_PROC_PATH_MAX];
    char hname[PT_XMAP_MAX];
    int xflags = 0;
    int err;

    if (pt_be(be)->readonly) {
        return -EROFS;
    }
    if (name == NULL || name[0] == '\0') {
        return -EINVAL;
    }
    if (flags & ~(uint32_t)(P9_XATTR_CREATE | P9_XATTR_REPLACE)) {
        return -EINVAL;
    }
    if (flags & P9_XATTR_CREATE) {
        xflags |= XATTR_CREATE;
    }
    if (flags & P9_XATTR_REPLACE) {
        xflags |= XATTR_REPLACE;
    }
    err = pt_xattr_denied(name, true);
    if (err < 0) {
        return err;
    }
    /* nosuid: file capabilities are set-id bits by another name. */
    if (pt_be(be)->nosuid && strcmp(name, "security.capability") == 0) {
        return -EPERM;
    }
    err = pt_xattr_map(pt_be(be), name, true, hname);
    if (err < 0) {
        return err;
    }
    pt_proc_path(proc, n->fd);
    if (setxattr(proc, hname, value, size, xflags) < 0) {
        return -errno;
    }
    return 0;
}

int
pt_removexattr(struct backend *be, struct be_node *n, const char *name)
{
    char proc[PT_PROC_PATH_MAX];
    char hname[PT_XMAP_MAX];
    int err;

    if (pt_be(be)->readonly) {
        return -EROFS;
    }
    if (name == NULL || name[0] == '\0') {
        return -EINVAL;
    }
    err = pt_xattr_denied(name, true);
    if (err < 0) {
        return err;
    }
    err = pt_xattr_map(pt_be(be), name, true, hname);
    if (err < 0) {
        return err;
    }
    pt_proc_path(proc, n->fd);
    if (removexattr(proc, hname) < 0) {
        /* QEMU: removing an ACL that is not there is no error. */
        if (errno == ENODATA && pt_mapped(pt_be(be)) &&
            pt_has_prefix(name, "system.posix_acl_")) {
            return 0;
        }
        return -errno;
    }
    return 0;
}
