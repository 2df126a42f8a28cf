/* SPDX-License-Identifier: MIT */
/*
 * Passthrough backend internals: exports a host directory through the
 * be_ops contract (include/virtfs/backend.h).
 *
 * Every node is an O_PATH|O_NOFOLLOW descriptor plus the (dev, ino) it had
 * when opened, one node per file per export (pt_node.c); no node stores a
 * path string, only the last name it was reached by in its parent.  The
 * descriptor may be reclaimed and found again (pt_fdcache.c).  Walks open exactly one name
 * relative to the parent's descriptor and never follow a symlink.  I/O
 * reopens the inode through /proc/self/fd/N (regular files, directories and
 * FIFOs only), so a name swapped for a symlink after a walk cannot redirect
 * anything outside the export.
 */
#ifndef VIRTFS_PASSTHROUGH_PT_H
#define VIRTFS_PASSTHROUGH_PT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "virtfs/backend.h"

/* Directory read buffer of a worker thread (pt_dir.c): the most read
 * ahead that a handle can keep, charged to the session's memory budget. */
#define PT_DIRBUF (64 * 1024)

/* "/proc/self/fd/" + a decimal int + NUL */
#define PT_PROC_PATH_MAX 32

/* qid.path layout with remap_devs: dev index in the top 16 bits. */
#define PT_QID_DEV_SHIFT 48
#define PT_QID_INO_MASK ((UINT64_C(1) << PT_QID_DEV_SHIFT) - 1)
/* Dev index reserved for objects that go through the (dev, ino) map. */
#define PT_QID_MAP_INDEX 0xFFFFu

struct pt_qidmap_ent;

struct file_handle;
struct pt_lockrec;

/*
 * A file system object: an O_PATH descriptor, never a path.  There is one
 * node per (dev, ino) per export, shared by every fid of every connection
 * (the node table in pt_node.c).  A node knows the directory and name it
 * was last reached by ('parent' holds a reference, so the chain up to the
 * root stays alive); ".." is answered from that link (pt_walk.c).
 */
struct be_node {
    struct be_node *hnext;  /* node table chain; under nt_lock */
    struct be_node *parent; /* one ref; NULL for the root or unknown */
    char *name;             /* name in 'parent'; NULL if unknown */
    atomic_uint refs;       /* drops to 0 only under nt_lock */
    /*
     * O_PATH|O_NOFOLLOW, owned; -1 while reclaimed (pt_fdcache.c).  Under
     * fd_lock; valid without it while the node is pinned (pins > 0): every
     * op pins the nodes it is given, so op code reads n->fd directly.
     */
    int fd;
    unsigned pins;            /* under fd_lock */
    struct be_node *lru_prev; /* fd cache LRU, under fd_lock */
    struct be_node *lru_next;
    struct file_handle *fh; /* identity + reopen; NULL if none
                                    * (taken when the fd is reclaimed) */
    dev_t dev;              /* identity at open time */
    ino_t ino;
    mode_t type;          /* st_mode & S_IFMT; an inode never changes type */
    bool hashed;          /* in the node table */
    bool on_lru;          /* fd >= 0, unpinned, reclaimable */
    bool pinned_for_good; /* fd can never be reopened: never reclaimed */
    bool fh_mnt_ok;       /* fh was taken on the root's mount */
    bool fh_tried;        /* pt_reclaim asked for fh (nt_lock) */
    bool dying;           /* freed while the reclaimer held it (pt_fdcache.c) */
    /*
     * The child index (pt_node.c): (parent, name) -> the node last linked
     * under that name, so that a repeated walk finds its candidate without
     * a syscall (pt_walk.c).  Under nt_lock.
     */
    struct be_node *cnext;
    uint32_t chash;
    bool chashed; /* in the child index */
    /* Kept after the last reference (refs 0, still hashed) on the idle
     * list, so that the next walk of the name finds it.  Under nt_lock. */
    bool idle;
    bool gone; /* its name was removed by a client: never kept idle */
    struct be_node *idle_prev;
    struct be_node *idle_next;
};

/* An open file or directory. */
struct be_handle {
    struct be_node *node; /* one ref */
    /*
     * A real open descriptor, owned; -1 while reclaimed (pt_fdcache.c).
     * Under fd_lock; valid without it while io_pins > 0 (the wrappers in
     * pt_node.c pin the handle around every op that uses it).
     */
    int fd;
    int oflags;                /* the open(2) flags used (O_TRUNC dropped) */
    unsigned io_pins;          /* under fd_lock */
    struct be_handle *hl_prev; /* open-file LRU, under fd_lock */
    struct be_handle *hl_next;
    bool on_lru;
    bool keep;            /* carries state: never reclaimed */
    bool dying;           /* closed while the reclaimer held it */
    bool fds_charged;     /* one unit of lim.fds held (under fd_lock) */
    pthread_mutex_t lock; /* serialises readdir; protects the fields below */
    /*
     * Directory read-ahead: entries getdents64 returned that no Treaddir
     * took yet.  A Treaddir that resumes at 'dcur' continues from here
     * without lseek (which makes e.g. ext4 rebuild its hash-order cache).
     * Kept between requests only while entries are left and only as far
     * as the session's memory budget allows (pt_dir.c).
     */
    char *dbuf;    /* the entries left (dlen bytes, charged) */
    long dlen;     /* bytes of entries in dbuf */
    long dpos;     /* next unreturned entry */
    uint64_t dcur; /* offset of the position at dpos */
    bool dvalid;   /* dbuf/dcur describe the fd's stream */
    /* A listing served from the listing cache (pt_dircache.c): dbuf is
     * the snapshot's data (one reference, not owned), charged to the
     * session's memory only while the listing is paused; after its last
     * entry the listing has ended (dend) whatever the fd's position. */
    struct pt_dirsnap *dsnap;
    bool dsnap_charged;
    bool dend;
    struct be_limits lim; /* the session's budgets (handle_limits; lim.fds
                             is read under fd_lock) */
    /* The OFD lock records this handle holds, as the kernel keeps them
     * (pt_lock.c): counted against lim.locks. */
    struct pt_lockrec *locks; /* sorted by start, disjoint */
    size_t nlocks;
    size_t locks_cap;
};

/* The export.  Immutable after pt_backend_new() except the qid maps. */
struct pt_backend {
    struct backend be;    /* be.priv points back here */
    struct be_node *root; /* the export root node (one ref) */
    bool readonly;        /* every mutation answers -EROFS */
    bool multiuser;       /* switch fsuid/fsgid/groups per thread */
    bool remap_devs;      /* qid.path = devindex << 48 | ino */
    bool nosuid;          /* strip set-id bits, refuse security.capability */
    bool nodev;           /* refuse creating device nodes */
    enum pt_security_model model;
    mode_t fmode;           /* mapped models: host mode of new files */
    mode_t dmode;           /* mapped models: host mode of new directories */
    struct pt_idmap uidmap; /* guest <-> host id translation (pt_idmap.c) */
    struct pt_idmap gidmap;
    bool caps;         /* the daemon has capabilities: see pt_cred.c */
    uint64_t cap_full; /* its permitted set (what a root fid runs with) */

    pthread_mutex_t qid_lock; /* protects the fields below */
    dev_t *devs;              /* devs[i] = device with index i */
    size_t ndevs;
    size_t devs_cap;
    struct pt_qidmap_ent **map; /* (dev, ino) -> counter, chained hash */
    size_t map_size;            /* buckets, power of two */
    size_t map_count;
    uint64_t map_next; /* next counter value */

    /*
     * The node table: (dev, ino) -> node, chained hash.  nt_lock also
     * protects every node's parent/name/hnext/hashed and the 0 <-> 1
     * transitions of refs.  It is a leaf lock: nothing that can block
     * runs under it.
     */
    pthread_mutex_t nt_lock;
    struct be_node **nt;
    size_t nt_size; /* buckets, power of two */
    size_t nt_count;
    /* The child index, (parent, name) -> node, chained; under nt_lock. */
    struct be_node **ct;
    size_t ct_size; /* buckets, power of two */
    size_t ct_count;
    /* Unreferenced nodes kept for the next walk, most recent first
     * (idle.idle_next); at most idle_max.  Under nt_lock. */
    struct be_node idle;
    size_t nidle;
    size_t idle_max;
    /* The descriptor cache (pt_fdcache.c). */
    int fh_mode;  /* PT_FH_NEVER / PREFER / MANDATORY */
    bool fh_open; /* open_by_handle_at works (CAP_DAC_READ_SEARCH) */
    int root_mnt_id;
    int mount_fd;              /* root opened O_RDONLY, for open_by_handle_at */
    pthread_mutex_t fd_lock;   /* leaf lock: LRU, n->fd, n->pins, counts */
    struct be_node lru;        /* list head: lru.lru_next = most recent */
    struct be_handle hlru;     /* open files that may be reclaimed */
    long fd_budget;            /* node + open-file descriptors we may hold */
    long fd_nodes;             /* node descriptors held (under fd_lock) */
    long fd_for_good;          /* of those, pinned for good (not the
                                  root; under fd_lock): at most half of
                                  fd_budget */
    atomic_long fd_files;      /* open-file descriptors held */
    atomic_ulong st_hits;      /* pin found the descriptor open */
    atomic_ulong st_misses;    /* pin had to reopen */
    atomic_ulong st_reopen_fh; /* reopened by file handle */
    atomic_ulong st_reopen_name;  /* reopened by name from the parent */
    atomic_ulong st_stale;        /* reopen found another file: ESTALE */
    atomic_ulong st_evict;        /* descriptors reclaimed */
    atomic_ulong st_emfile;       /* EMFILE/ENFILE answered to a client */
    atomic_ulong st_hevict;       /* open-file descriptors reclaimed */
    atomic_ulong st_hreopen;      /* open files reopened for I/O */
    atomic_ulong st_dotdot_fast;  /* ".." answered from the parent link */
    atomic_ulong st_dotdot_slow;  /* ".." verified by climbing */
    atomic_ulong st_verify_calls; /* openat2 calls made by those checks */
    atomic_ulong st_walk_probe;   /* walks that tried the child index (one
                                   * fstatat each) */
    atomic_ulong st_walk_fast;    /* ... and returned its node */
    /* The listing cache (pt_dircache.c); dc == NULL: off. */
    pthread_mutex_t dc_lock;
    struct pt_dirsnap **dc; /* (dev, ino) -> snapshot, chained */
    struct pt_dirsnap *dc_lru_head;
    size_t dc_max; /* bytes */
    size_t dc_bytes;
    size_t dc_count;
    _Atomic dev_t dc_good_dev; /* last device whose times we trust */
    _Atomic dev_t dc_bad_dev;  /* last device whose times we do not */
    atomic_ulong st_dc_hits;   /* listings served from the cache */
    atomic_ulong st_dc_fills;  /* directories read whole for it */
};

/* An attached user. */
struct be_user {
    atomic_uint refs;
    uint64_t serial; /* unique per object, for the per-thread cache */
    uid_t uid;
    gid_t gid;
    int ngroups;
    gid_t *groups; /* supplementary groups (owned), may be NULL */
    /* The guest uid fell under a squash-guest rule (--all-squash): the
     * host's permission checks for 'uid' stand (no CAP_DAC_OVERRIDE). */
    bool squashed;
};

static inline struct pt_backend *
pt_be(struct backend *be)
{
    return be->priv;
}

/*
 * The permission bits of a mode from the wire for an object of 'type'.
 * With nosuid, set-uid never and set-gid only on directories (where it
 * means "inherit the group", not a privilege) reach the host.
 */
static inline mode_t
pt_mode_bits(const struct pt_backend *pb, mode_t type, uint32_t mode)
{
    mode_t m = (mode_t)(mode & 07777);

    if (pb->nosuid) {
        m &= ~(mode_t)S_ISUID;
        if (type != S_IFDIR) {
            m &= ~(mode_t)S_ISGID;
        }
    }
    return m;
}

/* pt_node.c */
int pt_node_new(struct pt_backend *pb, int fd, struct be_node *parent,
                const char *name, struct be_node **out, struct stat *st);
void pt_node_relink(struct pt_backend *pb, struct be_node *n,
                    struct be_node *parent, const char *name);
struct be_node *pt_node_lookup(struct pt_backend *pb, dev_t dev, ino_t ino);
struct be_node *pt_node_child(struct pt_backend *pb, struct be_node *dir,
                              const char *name);
void pt_node_unname(struct pt_backend *pb, struct be_node *dir,
                    const char *name);
void pt_node_gone(struct pt_backend *pb, struct be_node *n);
void pt_node_idle_flush(struct pt_backend *pb);
void pt_node_get(struct backend *be, struct be_node *n);
void pt_node_put(struct backend *be, struct be_node *n);
void pt_proc_path(char buf[PT_PROC_PATH_MAX], int fd);
void pt_set_proc_fd(const char *prefix);
int pt_root(struct backend *be, struct be_node **out, struct p9_qid *qid);
int pt_fstat(int fd, struct stat *st);
bool pt_is_root(struct pt_backend *pb, const struct be_node *n);
int pt_set_gid(int fd, const struct stat *st, uint32_t gid);

/* pt_fdcache.c */
int pt_fdcache_init(struct pt_backend *pb, const struct pt_options *opt);
int pt_fdcache_probe(struct pt_backend *pb);
int pt_host_dirs(struct backend *be, struct be_hostdir *out, int max);
int pt_reroot(struct backend *be, const int *fds, int n, const char *proc_fd);
bool pt_fdcache_install(struct pt_backend *pb, struct be_node *n, int fd);
void pt_node_free(struct be_node *n);
void pt_fdcache_fini(struct pt_backend *pb);
void pt_fdcache_adopt(struct pt_backend *pb, struct be_node *n);
void pt_fdcache_forget(struct pt_backend *pb, struct be_node *n);
struct file_handle *pt_fh_of(int fd, int *mnt_id);
bool pt_fh_equal(const struct file_handle *a, const struct file_handle *b);
int pt_pin(struct pt_backend *pb, struct be_node *n);
int pt_pin_if_open(struct pt_backend *pb, struct be_node *n);
void pt_unpin(struct pt_backend *pb, struct be_node *n);
int pt_pin2(struct pt_backend *pb, struct be_node *a, struct be_node *b);
void pt_unpin2(struct pt_backend *pb, struct be_node *a, struct be_node *b);
bool pt_fd_pressure(struct pt_backend *pb, int err, const char *what);
void pt_dump_stats(struct backend *be);
void pt_hcache_adopt(struct pt_backend *pb, struct be_handle *h, bool keep);
int pt_hcache_keep(struct pt_backend *pb, struct be_handle *h);
bool pt_hcache_forget(struct pt_backend *pb, struct be_handle *h);
int pt_hpin(struct pt_backend *pb, struct be_handle *h);
void pt_hunpin(struct pt_backend *pb, struct be_handle *h);
void pt_handle_free(struct pt_backend *pb, struct be_handle *h);

/* pt_qid.c */
int pt_qid_init(struct pt_backend *pb);
void pt_qid_fini(struct pt_backend *pb);
uint64_t pt_qid_path(struct pt_backend *pb, dev_t dev, ino_t ino);
void pt_stat_to_qid(struct pt_backend *pb, const struct stat *st,
                    struct p9_qid *qid);
int pt_qid(struct backend *be, struct be_node *n, struct p9_qid *qid);

/* pt_walk.c */
int pt_walk1(struct backend *be, struct be_node *dir, const char *name,
             struct be_node **out, struct p9_qid *qid);
int pt_check_name(const char *name);
int pt_open_child(int dirfd, const char *name, int extra_flags);
int pt_locate(struct pt_backend *pb, struct be_node *n, int *parent_fd,
              char **name);

/* pt_cred.c */
int pt_user_get(struct backend *be, const char *uname, uint32_t n_uname,
                struct be_user **out);
void pt_user_put(struct backend *be, struct be_user *u);
int pt_user_enter(struct backend *be, struct be_user *u);
/* This thread creates files with the exact modes given (pt_cred.c). */
void pt_exact_modes(void);
uid_t pt_current_uid(void);
bool pt_current_in_group(gid_t gid);
void pt_cred_init(struct pt_backend *pb);
bool pt_cred_limited(struct pt_backend *pb);
int pt_cred_raise(struct pt_backend *pb, uint64_t caps, uint64_t *saved);
void pt_cred_restore(struct pt_backend *pb, uint64_t saved);
int pt_cred_fsgid(struct pt_backend *pb, uint32_t gid, uint32_t *saved);
void pt_cred_fsgid_restore(struct pt_backend *pb, uint32_t saved);

/* A capability as a bit of the 64-bit masks above. */
#define PT_CAP(c) (UINT64_C(1) << (c))

/* pt_attr.c */
int pt_getattr(struct backend *be, struct be_node *n, struct be_handle *h,
               uint64_t request_mask, struct p9_rgetattr *out);
int pt_setattr(struct backend *be, struct be_node *n, struct be_handle *h,
               const struct p9_tsetattr *in);
int pt_statfs(struct backend *be, struct be_node *n, struct p9_rstatfs *out);
ssize_t pt_readlink(struct backend *be, struct be_node *n, char *buf,
                    size_t size);

/* pt_file.c */
int pt_open(struct backend *be, struct be_node *n, uint32_t flags,
            struct be_handle **out, struct p9_qid *qid, uint32_t *iounit);
int pt_create(struct backend *be, struct be_node *dir, const char *name,
              uint32_t flags, uint32_t mode, uint32_t gid,
              struct be_node **node_out, struct be_handle **out,
              struct p9_qid *qid, uint32_t *iounit);
void pt_close(struct backend *be, struct be_handle *h);
ssize_t pt_read(struct backend *be, struct be_handle *h,
                const struct iovec *iov, int iovcnt, uint64_t off);
ssize_t pt_write(struct backend *be, struct be_handle *h,
                 const struct iovec *iov, int iovcnt, uint64_t off);
int pt_fsync(struct backend *be, struct be_handle *h, bool datasync);

/* pt_dir.c */
void pt_dirbuf_release(struct be_handle *h);

/* The listing cache (pt_dircache.c). */
struct pt_dirsnap;
#define PT_DIRCACHE_DEFAULT (16L * 1024 * 1024)
int pt_dircache_init(struct pt_backend *pb, long max);
void pt_dircache_free(struct pt_backend *pb);
/* Log its counters (virtfsd --stats). */
void pt_dircache_log_stats(struct pt_backend *pb);
/* 1: *out is the cached listing of the directory st describes (a
 * reference); 0: none, pt_dircache_fill may make one; -1: do not try. */
int pt_dircache_get(struct pt_backend *pb, const struct stat *st,
                    struct pt_dirsnap **out);
/* Read the directory whole into a new snapshot (the cache keeps it if it
 * may).  Its buffer is charged to 'mem' as it grows (no snapshot if the
 * budget cannot hold it); the snapshot's length (pt_dirsnap_data) stays
 * charged for the caller to uncharge. */
struct pt_dirsnap *pt_dircache_fill(struct pt_backend *pb, int fd,
                                    const struct stat *st,
                                    struct be_budget *mem);
void pt_dirsnap_put(struct pt_dirsnap *s);
const char *pt_dirsnap_data(const struct pt_dirsnap *s, long *len);
int pt_readdir(struct backend *be, struct be_handle *h, uint64_t offset,
               be_dirent_fn *fn, void *ctx);
int pt_mkdir(struct backend *be, struct be_node *dir, const char *name,
             uint32_t mode, uint32_t gid, struct p9_qid *qid);
int pt_mknod(struct backend *be, struct be_node *dir, const char *name,
             uint32_t mode, uint32_t major, uint32_t minor, uint32_t gid,
             struct p9_qid *qid);
int pt_symlink(struct backend *be, struct be_node *dir, const char *name,
               const char *target, uint32_t gid, struct p9_qid *qid);
int pt_link(struct backend *be, struct be_node *dir, const char *name,
            struct be_node *target);
int pt_renameat(struct backend *be, struct be_node *olddir, const char *oldname,
                struct be_node *newdir, const char *newname);
int pt_unlinkat(struct backend *be, struct be_node *dir, const char *name,
                uint32_t flags);
int pt_rename(struct backend *be, struct be_node *n, struct be_node *newdir,
              const char *newname);
int pt_remove(struct backend *be, struct be_node *n);

/* pt_xattr.c */
ssize_t pt_getxattr(struct backend *be, struct be_node *n, const char *name,
                    void *buf, size_t size);
ssize_t pt_listxattr(struct backend *be, struct be_node *n, char *buf,
                     size_t size);
int pt_setxattr(struct backend *be, struct be_node *n, const char *name,
                const void *value, size_t size, uint32_t flags);
int pt_removexattr(struct backend *be, struct be_node *n, const char *name);

/* pt_mapped.c: the mapped models' metadata (QEMU's on-disk format). */
#define PT_META_DIR ".virtfs_metadata"
#define PT_META_ROOT ".virtfs_metadata_root"
#define PT_META_UID 1u
#define PT_META_GID 2u
#define PT_META_MODE 4u
#define PT_META_RDEV 8u

struct pt_meta {
    unsigned have; /* PT_META_* fields present */
    uint32_t uid;
    uint32_t gid;
    uint32_t mode; /* file type and permission bits */
    uint64_t rdev;
};

static inline bool
pt_mapped(const struct pt_backend *pb)
{
    return pb->model == PT_SM_MAPPED_XATTR || pb->model == PT_SM_MAPPED_FILE;
}

bool pt_meta_hidden_name(const struct pt_backend *pb, const char *name);
int pt_meta_read(struct pt_backend *pb, struct be_node *n, struct pt_meta *m);
int pt_meta_write(struct pt_backend *pb, struct be_node *n,
                  const struct pt_meta *m);
int pt_meta_write_at(struct pt_backend *pb, int fd, int dirfd, const char *name,
                     const struct pt_meta *m);
void pt_meta_unlink(struct pt_backend *pb, int dirfd, const char *name);
int pt_meta_rmdir_prep(struct pt_backend *pb, int dirfd, const char *name);
int pt_meta_rename(struct pt_backend *pb, int odir, const char *oname, int ndir,
                   const char *nname);
int pt_meta_link(struct pt_backend *pb, int odir, const char *oname, int ndir,
                 const char *nname);
int pt_meta_kill_suid(struct pt_backend *pb, struct be_node *n);
void pt_meta_apply(const struct pt_meta *m, uint32_t *mode, uint32_t *uid,
                   uint32_t *gid, uint64_t *rdev);

/* pt_idmap.c */
int pt_id_to_host(const struct pt_idmap *m, uint32_t guest, uint32_t *host);
/* True if a squash-guest rule covers guest id 'guest'. */
bool pt_id_squashed(const struct pt_idmap *m, uint32_t guest);
uint32_t pt_id_to_guest(const struct pt_idmap *m, uint32_t host);

/* pt_lock.c */
struct pt_lockrec {
    int64_t start;
    int64_t end; /* inclusive; INT64_MAX: to EOF */
    short type;  /* F_RDLCK or F_WRLCK */
};
int pt_handle_limits(struct backend *be, struct be_handle *h,
                     const struct be_limits *lim);
/* Uncharge and free what the handle keeps (called by pt_close). */
void pt_handle_release(struct be_handle *h);
int pt_lock(struct backend *be, struct be_handle *h, const struct p9_tlock *in,
            uint8_t *status);
int pt_getlock(struct backend *be, struct be_handle *h,
               const struct p9_tgetlock *in, struct p9_rgetlock *out);

#endif /* VIRTFS_PASSTHROUGH_PT_H */
