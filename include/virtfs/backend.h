/* SPDX-License-Identifier: MIT */
/*
 * The backend contract.
 *
 * The server core owns the protocol: fids, open state, msize, flush,
 * read-only gating, name checks.  A backend sees only nodes (its own opaque
 * objects), open handles, users, and typed arguments.  Every op returns 0
 * (or a byte count) on success and a negative errno on failure.  An op left
 * NULL answers -ENOSYS (the core checks), except the mandatory ones: root,
 * walk1, node_get, node_put, and close when open or create is given;
 * p9s_server_new() refuses an export whose backend lacks one.  Ops may
 * block: they run on a worker thread, one request start to finish on one
 * thread.
 *
 * Names handed to a backend are NUL-terminated, non-empty, contain no '/',
 * and are not "." (the core refuses those).  ".." can reach walk1 only;
 * a backend must keep ".." at its root at the root.
 *
 * References: every function that fills a `**out` node or handle returns a
 * new reference the caller owns; node_put() / close() release them.
 *
 * Credentials: before running any op on behalf of a fid, the core calls
 * user_enter(be, user) on the worker thread with the user that attached
 * that fid.  A backend that switches identities (fsuid/fsgid/groups) does
 * it there, per thread.  Ops that create files receive the gid the client
 * asked for.
 */
#ifndef VIRTFS_BACKEND_H
#define VIRTFS_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "virtfs/p9.h"

struct backend;
struct be_node;   /* a file system object (opaque) */
struct be_handle; /* an open file or directory (opaque) */
struct be_user;   /* an attached user (opaque) */

/*
 * Readdir callback: called once per entry in order.  'off' is the offset
 * that resumes *after* this entry.  Return 0 to continue, 1 to stop (the
 * entry did NOT fit and was not consumed).
 */
typedef int be_dirent_fn(void *ctx, const struct p9_qid *qid, uint64_t off,
                         uint8_t type, const char *name, size_t namelen);

/* Reader of a lent descriptor (be_ops.read_fd): bytes taken, or -errno. */
typedef ssize_t be_fd_sink(void *arg, int fd, uint64_t off, size_t count);

/*
 * What a peer may make a backend keep on its behalf between requests
 * (read-ahead buffers, lock records): a counter shared by every handle of
 * one session, with a ceiling.  A backend charges before it keeps
 * something and uncharges when it lets go (at the latest in close()); the
 * core keeps the budget alive until every handle of the session is
 * closed.  Beyond the ceiling a backend does without what is optional
 * (keeps no read-ahead) or fails the op with the errno Linux would give.
 */
struct be_budget {
    _Atomic uint64_t used;
    uint64_t max;
};

/* Charge 'n' units; false (nothing charged) if that would pass max.  A NULL
 * budget is unlimited. */
static inline bool
be_budget_charge(struct be_budget *b, uint64_t n)
{
    uint64_t cur;

    if (b == NULL || n == 0) {
        return true;
    }
    cur = atomic_load_explicit(&b->used, memory_order_relaxed);
    do {
        if (n > b->max || cur > b->max - n) {
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(
        &b->used, &cur, cur + n, memory_order_relaxed, memory_order_relaxed));
    return true;
}

static inline void
be_budget_uncharge(struct be_budget *b, uint64_t n)
{
    if (b != NULL && n != 0) {
        atomic_fetch_sub_explicit(&b->used, n, memory_order_relaxed);
    }
}

/*
 * A host directory a backend keeps open (an export root, an overlay layer,
 * a work directory), reported for confinement: virtfsd's sandbox makes
 * exactly these reachable in its new root (tools/virtfsd/sandbox.c).
 */
struct be_hostdir {
    int fd;          /* the backend's descriptor of it; its /proc/self/fd
                        link names the path to rebuild */
    bool writable;   /* the backend creates, renames or deletes below it */
    int mount_group; /* nonzero: every directory of this backend with the
                        same value must stay on one mount in the new root,
                        because the backend renames or links between them
                        (overlay: upper and work) */
};

/* The budgets of one session, handed to each handle it opens. */
struct be_limits {
    struct be_budget *mem;   /* bytes of buffers kept between requests */
    struct be_budget *locks; /* byte-range lock records held */
    /* host descriptors held that the backend cannot give back under
     * descriptor pressure (an open directory, a file it created or that
     * carries locks, an unlinked open file; every open file of a backend
     * that never reclaims): one unit each */
    struct be_budget *fds;
};

/*
 * In the 'flags' of open and create, never from the wire: the caller runs
 * on a thread that must not wait (a transport's own, which has to go on
 * reading the connection, e.g. a Tflush).  Where the call could wait long
 * (a lease held by a host process to break, a truncation, an existing
 * name that create would open, a copy-up), the backend returns -EAGAIN
 * having changed nothing, and the caller runs it again without the flag
 * on a worker.  Only backends with be_ops.open_nowait see it.
 */
#define BE_OPEN_NOWAIT 0x80000000u

struct be_ops {
    /* -- users ------------------------------------------------------------- */
    /* Resolve the attaching user (uname and/or n_uname, n_uname may be
     * P9_NONUNAME).  New reference in *out. */
    int (*user_get)(struct backend *be, const char *uname, uint32_t n_uname,
                    struct be_user **out);
    void (*user_put)(struct backend *be, struct be_user *u);
    /* Act as 'u' on the calling thread until the next user_enter. */
    int (*user_enter)(struct backend *be, struct be_user *u);

    /* -- nodes ------------------------------------------------------------- */
    int (*root)(struct backend *be, struct be_node **out, struct p9_qid *qid);
    int (*walk1)(struct backend *be, struct be_node *dir, const char *name,
                 struct be_node **out, struct p9_qid *qid);
    void (*node_get)(struct backend *be, struct be_node *n);
    void (*node_put)(struct backend *be, struct be_node *n);
    int (*qid)(struct backend *be, struct be_node *n, struct p9_qid *qid);

    /* -- attributes --------------------------------------------------------- */
    /* 'h' may be NULL; when given, the op uses the open file (e.g. fstat). */
    int (*getattr)(struct backend *be, struct be_node *n, struct be_handle *h,
                   uint64_t request_mask, struct p9_rgetattr *out);
    int (*setattr)(struct backend *be, struct be_node *n, struct be_handle *h,
                   const struct p9_tsetattr *in);
    int (*statfs)(struct backend *be, struct be_node *n,
                  struct p9_rstatfs *out);
    /* Returns the length of the target (not NUL-terminated in buf). */
    ssize_t (*readlink)(struct backend *be, struct be_node *n, char *buf,
                        size_t size);

    /* -- open files ---------------------------------------------------------- */
    /* 'flags' are P9_DOTL_* open flags from the wire. */
    int (*open)(struct backend *be, struct be_node *n, uint32_t flags,
                struct be_handle **out, struct p9_qid *qid, uint32_t *iounit);
    /* Create and open 'name' in 'dir'; the new node and handle are returned. */
    int (*create)(struct backend *be, struct be_node *dir, const char *name,
                  uint32_t flags, uint32_t mode, uint32_t gid,
                  struct be_node **node_out, struct be_handle **out,
                  struct p9_qid *qid, uint32_t *iounit);
    /* open and create understand BE_OPEN_NOWAIT (see there) */
    bool open_nowait;
    void (*close)(struct backend *be, struct be_handle *h);
    /*
     * Charge what handle 'h' keeps between requests to 'lim' (see struct
     * be_budget).  Called once right after open/create, before any other
     * op on 'h'; without it nothing is charged.  Optional.  -EMFILE when
     * the descriptor the handle holds does not fit lim->fds: the caller
     * closes 'h' and fails the open.
     */
    int (*handle_limits)(struct backend *be, struct be_handle *h,
                         const struct be_limits *lim);
    ssize_t (*read)(struct backend *be, struct be_handle *h,
                    const struct iovec *iov, int iovcnt, uint64_t off);
    /*
     * Optional, for reads that need not pass through a buffer: lend the
     * host descriptor of the open regular file 'h' to 'sink', which reads
     * up to 'count' bytes at 'off' from it (the stream transport splices
     * them into its socket).  Returns what sink returns, or -ENOTSUP if
     * 'h' has no such descriptor (the caller then uses read).  The
     * descriptor is valid only during the call; sink only reads from it
     * at an explicit offset (splice, pread): it never keeps, closes or
     * changes it.
     */
    ssize_t (*read_fd)(struct backend *be, struct be_handle *h, uint64_t off,
                       size_t count, be_fd_sink *sink, void *arg);
    ssize_t (*write)(struct backend *be, struct be_handle *h,
                     const struct iovec *iov, int iovcnt, uint64_t off);
    int (*fsync)(struct backend *be, struct be_handle *h, bool datasync);
    /*
     * Emit entries of the open directory 'h' starting at 'offset' (0 = the
     * beginning, otherwise a value an earlier entry's 'off' returned) until
     * 'fn' returns 1 or the directory ends.  Returns 0 or -errno.
     */
    int (*readdir)(struct backend *be, struct be_handle *h, uint64_t offset,
                   be_dirent_fn *fn, void *ctx);

    /* -- namespace ------------------------------------------------------------- */
    int (*mkdir)(struct backend *be, struct be_node *dir, const char *name,
                 uint32_t mode, uint32_t gid, struct p9_qid *qid);
    int (*mknod)(struct backend *be, struct be_node *dir, const char *name,
                 uint32_t mode, uint32_t major, uint32_t minor, uint32_t gid,
                 struct p9_qid *qid);
    int (*symlink)(struct backend *be, struct be_node *dir, const char *name,
                   const char *target, uint32_t gid, struct p9_qid *qid);
    int (*link)(struct backend *be, struct be_node *dir, const char *name,
                struct be_node *target);
    int (*renameat)(struct backend *be, struct be_node *olddir,
                    const char *oldname, struct be_node *newdir,
                    const char *newname);
    /* 'flags' is 0 or P9_DOTL_AT_REMOVEDIR. */
    int (*unlinkat)(struct backend *be, struct be_node *dir, const char *name,
                    uint32_t flags);
    /* Trename / Tremove: the object itself, wherever it is now. */
    int (*rename)(struct backend *be, struct be_node *n, struct be_node *newdir,
                  const char *newname);
    int (*remove)(struct backend *be, struct be_node *n);

    /* -- xattrs (value is raw bytes; an empty list name lists) ------------------ */
    ssize_t (*getxattr)(struct backend *be, struct be_node *n, const char *name,
                        void *buf, size_t size);
    ssize_t (*listxattr)(struct backend *be, struct be_node *n, char *buf,
                         size_t size);
    /* flags: 0, P9_XATTR_CREATE, P9_XATTR_REPLACE */
    int (*setxattr)(struct backend *be, struct be_node *n, const char *name,
                    const void *value, size_t size, uint32_t flags);
    int (*removexattr)(struct backend *be, struct be_node *n, const char *name);

    /* -- locks (on an open handle) ----------------------------------------------- */
    /* Sets *status to P9_LOCK_SUCCESS / BLOCKED / ERROR; never blocks.
     * -ENOLCK when the lock records it would add pass the handle's lock
     * budget (an unlock that splits a range adds one too). */
    int (*lock)(struct backend *be, struct be_handle *h,
                const struct p9_tlock *in, uint8_t *status);
    /* In: the lock asked about; out: a conflicting lock, or type UNLCK.
     * out->client_id may point into backend-owned storage valid until the
     * next call on this thread. */
    int (*getlock)(struct backend *be, struct be_handle *h,
                   const struct p9_tgetlock *in, struct p9_rgetlock *out);

    /* -- lifetime ------------------------------------------------------------- */
    void (*destroy)(struct backend *be);
    /* Optional: log the backend's own counters (virtfsd --stats). */
    void (*dump_stats)(struct backend *be);

    /* -- confinement (optional; a backend gives both or neither) ------------ */
    /*
     * Fill up to 'max' entries with every host directory the backend holds
     * a descriptor of (nothing else of the host file system is reached
     * except through them).  Returns the number it holds (more than 'max'
     * means the caller's array was too small) or -errno.  Called once, on
     * the only thread, before any request.
     */
    int (*host_dirs)(struct backend *be, struct be_hostdir *out, int max);
    /*
     * The process has moved into a new root (pivot_root or chroot) where
     * the directories host_dirs() listed are reachable again: fds[i] is
     * directory i reopened there (O_PATH, the same inode, checked by the
     * caller; the caller closes fds[] afterwards).  The backend replaces
     * every descriptor it holds of the old tree, so that even ".." from an
     * export root ends inside the new root.  'proc_fd' is how
     * /proc/self/fd/N is named from now on: the prefix to which a decimal
     * descriptor number is appended ("/proc/self/fd/", or "" when the
     * caller has made /proc/self/fd the working directory, for a chroot
     * that holds no /proc); it must stay valid for the process lifetime.
     * Returns 0 or -errno (the daemon must then stop).
     */
    int (*reroot)(struct backend *be, const int *fds, int n,
                  const char *proc_fd);
};

struct backend {
    const struct be_ops *ops;
    void *priv;
};

/* ---- the passthrough backend (src/backend/passthrough) --------------------- */

/* Security models, in QEMU's vocabulary (docs/security.md, "Models"). */
enum pt_security_model {
    PT_SM_PASSTHROUGH = 0, /* host owners and modes are the guest's */
    PT_SM_MAPPED_XATTR,    /* the guest's in user.virtfs.* xattrs */
    PT_SM_MAPPED_FILE,     /* the guest's in .virtfs_metadata files */
    PT_SM_NONE,            /* as the daemon; ownership best effort */
};

/* uid/gid translation rules (virtiofsd's syntax; pt_idmap.c). */
#define PT_IDMAP_MAX 32
enum pt_idrule_kind {
    PT_ID_MAP,          /* map:G:H:N */
    PT_ID_GUEST,        /* guest:G:H:N */
    PT_ID_HOST,         /* host:H:G:N */
    PT_ID_SQUASH_GUEST, /* squash-guest:G:H:N */
    PT_ID_SQUASH_HOST,  /* squash-host:H:G:N */
    PT_ID_FORBID_GUEST, /* forbid-guest:G:N */
};
struct pt_idrule {
    enum pt_idrule_kind kind;
    uint32_t a; /* the first field's base */
    uint32_t b; /* the second field's base (or the squash target) */
    uint32_t count;
};
struct pt_idmap {
    size_t n;
    struct pt_idrule rules[PT_IDMAP_MAX];
};

/* Add one rule "KIND:..." to m: 0, -EINVAL (syntax), -ERANGE, -EEXIST
 * (overlaps an earlier rule of the same direction), -E2BIG (too many). */
int pt_idmap_add(struct pt_idmap *m, const char *spec);

struct pt_options {
    const char *root; /* host directory to export */
    bool
        readonly; /* refuse every mutation with EROFS (also enforced by core) */
    bool
        multiuser; /* act as the attaching user (default when running as root) */
    bool remap_devs; /* qid.path unique across host mounts (default true) */
    bool nosuid;     /* set-uid/set-gid files and file capabilities
                           never reach the host */
    bool nodev;      /* creating device nodes is refused */
    /* How nodes whose O_PATH descriptor was reclaimed are found again:
     * PT_FH_PREFER (default) reopens by file handle where the host allows
     * it, else by name from the parent; NEVER always by name; MANDATORY
     * refuses to start without file handles. */
    int inode_file_handles;
    /* Descriptors the export may hold (node cache + open files); 0 = the
     * NOFILE soft limit minus a reserve for the rest of the daemon. */
    long fd_budget;
    /* Bytes of whole-directory listings kept for repeated listings of
     * unchanged directories; 0 = 16 MiB, < 0 = none. */
    long dir_cache;
    enum pt_security_model model;
    uint32_t fmode; /* mapped models: host mode of files (0 = 0600) */
    uint32_t dmode; /* mapped models: host mode of directories (0 = 0700) */
    const struct pt_idmap *uidmap; /* NULL or empty: ids are the same */
    const struct pt_idmap *gidmap;
};

enum { PT_FH_PREFER = 0, PT_FH_NEVER = 1, PT_FH_MANDATORY = 2 };

/* Open the export; returns 0 and a new backend, or -errno. */
int pt_backend_new(const struct pt_options *opt, struct backend **out);

#endif /* VIRTFS_BACKEND_H */
