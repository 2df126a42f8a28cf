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
#include <string.h>
#include <sys/xattr.h>

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

ssize_t
pt_getxattr(struct backend *be, struct be_node *n, const char *name, void *buf,
            size_t size)
{
    char proc[PT_PROC_PATH_MAX];
    ssize_t len;
    int err;

    (void)be;
    if (name == NULL || name[0] == '\0') {
        return -EINVAL;
    }
    err = pt_xattr_denied(name, false);
    if (err < 0) {
        return err;
    }
    pt_proc_path(proc, n->fd);
    len = getxattr(proc, name, buf, size);
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

    (void)be;
    pt_proc_path(proc, n->fd);
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
    pt_proc_path(proc, n->fd);
    if (setxattr(proc, name, value, size, xflags) < 0) {
        return -errno;
    }
    return 0;
}

int
pt_removexattr(struct backend *be, struct be_node *n, const char *name)
{
    char proc[PT_PROC_PATH_MAX];
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
    pt_proc_path(proc, n->fd);
    if (removexattr(proc, name) < 0) {
        return -errno;
    }
    return 0;
}
