/* SPDX-License-Identifier: MIT */
/*
 * The node descriptor cache: how many fids the guests hold no longer
 * decides how many descriptors the daemon holds.
 *
 * Every node normally owns an O_PATH descriptor.  Unpinned nodes whose
 * descriptor could be found again sit on an LRU list; when the export holds
 * more descriptors than its budget (node descriptors + open files, below
 * the NOFILE limit with a reserve for the rest of the daemon), the least
 * recently used ones are closed.  A node without a descriptor is reopened
 * the next time an op pins it:
 *
 *  - by file handle: open_by_handle_at() relative to the export root,
 *    when the host allows it (CAP_DAC_READ_SEARCH, a file system with
 *    handles, the node on the root's mount) and --inode-file-handles is
 *    not "never".  Handles are the server's own, taken with
 *    name_to_handle_at() from descriptors it opened; none ever comes from
 *    a peer.  A handle follows its file across renames, like a descriptor.
 *  - by name: the node's parent (pinned, reopened the same way if needed)
 *    and the name the node was last reached by, opened with
 *    pt_open_child() (one element, no symlinks), and the result must be
 *    the same file: (dev, ino) and, where the file system has handles,
 *    the handle (which carries the inode generation, so a reused inode
 *    number is told apart).  Anything else is -ESTALE: never another file.
 *
 * Never reclaimed: the root, nodes that cannot be found again (no handle
 * and no parent link), and unlinked files (nlink 0: neither way finds
 * them again; they keep their descriptor while a fid holds them).
 *
 * Ops pin the nodes they are given (the wrappers in pt_node.c), so op code
 * reads n->fd directly; an unpinned node may lose its descriptor at any
 * time.  fd_lock and nt_lock are leaf locks, never held together.
 */
#include "pt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

/* Descriptors kept back for listeners, connections, vhost, logs... */
#define PT_FD_RESERVE_MIN 32
#define PT_FD_RESERVE_MAX 256
/* Nodes reclaimed at most per trim call, and under EMFILE pressure. */
#define PT_TRIM_BATCH 64

struct file_handle *
pt_fh_of(int fd, int *mnt_id)
{
    union {
        struct file_handle fh;
        char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    } u;
    struct file_handle *fh;

    u.fh.handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(fd, "", &u.fh, mnt_id, AT_EMPTY_PATH) < 0) {
        return NULL;
    }
    fh = malloc(sizeof(*fh) + u.fh.handle_bytes);
    if (fh != NULL) {
        memcpy(fh, &u.fh, sizeof(*fh) + u.fh.handle_bytes);
    }
    return fh;
}

bool
pt_fh_equal(const struct file_handle *a, const struct file_handle *b)
{
    return a->handle_type == b->handle_type &&
           a->handle_bytes == b->handle_bytes &&
           memcmp(a->f_handle, b->f_handle, a->handle_bytes) == 0;
}

static void
pt_lru_del(struct be_node *n)
{
    n->lru_prev->lru_next = n->lru_next;
    n->lru_next->lru_prev = n->lru_prev;
    n->lru_prev = n->lru_next = NULL;
    n->on_lru = false;
}

static void
pt_lru_add(struct pt_backend *pb, struct be_node *n)
{
    n->lru_next = pb->lru.lru_next;
    n->lru_prev = &pb->lru;
    pb->lru.lru_next->lru_prev = n;
    pb->lru.lru_next = n;
    n->on_lru = true;
}

int
pt_fdcache_init(struct pt_backend *pb, const struct pt_options *opt)
{
    struct rlimit rl;
    int err;

    err = pthread_mutex_init(&pb->fd_lock, NULL);
    if (err != 0) {
        return -err;
    }
    pb->lru.lru_next = pb->lru.lru_prev = &pb->lru;
    pb->hlru.hl_next = pb->hlru.hl_prev = &pb->hlru;
    pb->mount_fd = -1;
    pb->fh_mode = opt->inode_file_handles;
    if (opt->fd_budget > 0) {
        pb->fd_budget = opt->fd_budget;
    } else if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
               rl.rlim_cur != RLIM_INFINITY) {
        long lim = (long)rl.rlim_cur;
        long reserve = lim / 8;

        reserve = reserve < PT_FD_RESERVE_MIN ? PT_FD_RESERVE_MIN : reserve;
        reserve = reserve > PT_FD_RESERVE_MAX ? PT_FD_RESERVE_MAX : reserve;
        pb->fd_budget = lim - reserve > 16 ? lim - reserve : 16;
    } else {
        pb->fd_budget = 1L << 20;
    }
    return 0;
}

/* After the root node exists: may reopen by handle here? */
int
pt_fdcache_probe(struct pt_backend *pb)
{
    struct be_node *r = pb->root;
    int fd;

    pthread_mutex_lock(&pb->fd_lock);
    if (r->on_lru) {
        pt_lru_del(r);
    }
    r->pinned_for_good = true;
    pthread_mutex_unlock(&pb->fd_lock);
    pb->root_mnt_id = -1;
    if (r->fh == NULL) {
        /* the root's handle tells whether handles can be opened here
         * (other nodes take theirs when their descriptor is reclaimed) */
        r->fh = pt_fh_of(r->fd, &pb->root_mnt_id);
        r->fh_tried = true;
    } else {
        free(pt_fh_of(r->fd, &pb->root_mnt_id));
    }
    r->fh_mnt_ok = r->fh != NULL;
    if (pb->fh_mode == PT_FH_NEVER) {
        return 0;
    }
    if (r->fh != NULL) {
        char proc[PT_PROC_PATH_MAX];

        /* open_by_handle_at wants a real (not O_PATH) descriptor on the
         * mount: the root directory opened for reading. */
        pt_proc_path(proc, r->fd);
        pb->mount_fd = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        fd = pb->mount_fd < 0
                 ? -1
                 : open_by_handle_at(pb->mount_fd, r->fh, O_PATH | O_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            pb->fh_open = true;
        } else if (pb->mount_fd >= 0) {
            close(pb->mount_fd);
            pb->mount_fd = -1;
        }
    }
    if (!pb->fh_open && pb->fh_mode == PT_FH_MANDATORY) {
        log_err("passthrough: --inode-file-handles=mandatory, but file "
                "handles cannot be opened here (needs CAP_DAC_READ_SEARCH "
                "and a file system that has them)");
        return -EOPNOTSUPP;
    }
    return 0;
}

/* Confinement: the export root is the one host directory held. */
int
pt_host_dirs(struct backend *be, struct be_hostdir *out, int max)
{
    struct pt_backend *pb = be->priv;

    if (max >= 1) {
        out[0].fd = pb->root->fd;
        out[0].writable = !pb->readonly;
        out[0].mount_group = 0;
    }
    return 1;
}

/*
 * Confinement: the root descriptor and the open_by_handle_at mount
 * descriptor become ones of the new root (same numbers, so nothing that
 * copied them is left dangling).  A handle resolved through the old
 * mount_fd would have given descriptors on the host's mount, from which
 * ".." climbs past the export.  Runs before any request: no other node
 * holds a descriptor yet.
 */
int
pt_reroot(struct backend *be, const int *fds, int n, const char *proc_fd)
{
    struct pt_backend *pb = be->priv;
    struct be_node *r = pb->root;
    int mnt = -1;

    if (n != 1) {
        return -EINVAL;
    }
    pt_set_proc_fd(proc_fd);
    if (dup3(fds[0], r->fd, O_CLOEXEC) < 0) {
        return -errno;
    }
    /* nodes found below carry the new mount's id in their handles */
    free(pt_fh_of(r->fd, &mnt));
    pb->root_mnt_id = mnt;
    if (pb->mount_fd >= 0) {
        char proc[PT_PROC_PATH_MAX];
        int fd;

        pt_proc_path(proc, r->fd);
        fd = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            return -errno;
        }
        if (dup3(fd, pb->mount_fd, O_CLOEXEC) < 0) {
            int err = -errno;

            close(fd);
            return err;
        }
        close(fd);
    }
    return 0;
}

void
pt_fdcache_fini(struct pt_backend *pb)
{
    if (pb->mount_fd >= 0) {
        close(pb->mount_fd);
    }
    pthread_mutex_destroy(&pb->fd_lock);
}

/* Pick reclaim victims from the LRU tail.  Caller holds fd_lock. */
static int
pt_pick_victims(struct pt_backend *pb, struct be_node **v, int max, bool force)
{
    int nv = 0;

    while (nv < max && pb->lru.lru_prev != &pb->lru &&
           (force ||
            pb->fd_nodes + atomic_load(&pb->fd_files) - nv > pb->fd_budget)) {
        struct be_node *n = pb->lru.lru_prev;

        pt_lru_del(n);
        n->pins++; /* ours, while we look at it outside the lock */
        v[nv++] = n;
    }
    return nv;
}

/*
 * Reclaim the descriptors of victims picked by pt_pick_victims, unless
 * the node cannot be found again (then it keeps its descriptor for good)
 * or someone pinned it meanwhile.  Returns how many were closed.
 */
static int
pt_reclaim(struct pt_backend *pb, struct be_node **v, int nv)
{
    int closed = 0;

    for (int i = 0; i < nv; i++) {
        struct be_node *n = v[i];
        struct stat st;
        bool findable;
        bool over_for_good = false;
        int fd = -1;

        if (n->fh == NULL && !n->fh_tried) {
            /* taken now, not at adopt: most nodes never lose their
             * descriptor, so most never need a handle (one syscall less
             * per new node).  n is pinned: n->fd is the node's file, and
             * the handle is set before the descriptor goes (under
             * fd_lock below), which is when readers look at it. */
            int mnt = -1;
            struct file_handle *fh = pt_fh_of(n->fd, &mnt);

            pthread_mutex_lock(&pb->nt_lock);
            n->fh = fh;
            n->fh_mnt_ok = fh != NULL && mnt == pb->root_mnt_id;
            n->fh_tried = true;
            pthread_mutex_unlock(&pb->nt_lock);
        }
        pthread_mutex_lock(&pb->nt_lock);
        findable = (pb->fh_open && n->fh != NULL && n->fh_mnt_ok) ||
                   (n->parent != NULL && n->name != NULL);
        pthread_mutex_unlock(&pb->nt_lock);
        if (findable && fstat(n->fd, &st) == 0 && st.st_nlink == 0) {
            findable = false; /* unlinked: only this descriptor has it */
        }
        pthread_mutex_lock(&pb->fd_lock);
        n->pins--;
        if (n->dying) {
            /* freed while we looked: ours to finish (pt_fdcache_forget) */
            if (n->pins == 0) {
                if (n->fd >= 0) {
                    pb->fd_nodes--;
                    close(n->fd);
                }
                if (n->pinned_for_good) {
                    pb->fd_for_good--;
                }
                pthread_mutex_unlock(&pb->fd_lock);
                pt_node_free(n);
                continue;
            }
        } else if (!findable && pb->fd_for_good < pb->fd_budget / 2) {
            n->pinned_for_good = true;
            pb->fd_for_good++;
        } else if (n->pins == 0) {
            /* (a node that cannot be found again, beyond half the budget,
             * is closed too: its fids answer ESTALE unless a handle still
             * reaches the file; fids pin it, so peers could otherwise
             * hold the whole budget with unlinked files) */
            if (!findable) {
                over_for_good = true;
            }
            fd = n->fd;
            n->fd = -1;
            pb->fd_nodes--;
        }
        /* else: pinned meanwhile; its unpin puts it back on the LRU */
        pthread_mutex_unlock(&pb->fd_lock);
        if (fd >= 0) {
            close(fd);
            closed++;
            atomic_fetch_add_explicit(&pb->st_evict, 1, memory_order_relaxed);
        }
        if (over_for_good) {
            log_peer("passthrough: files that cannot be found again "
                     "(unlinked, held by fids) hold half the descriptor "
                     "budget (%ld): closing more of them; their fids may "
                     "answer ESTALE",
                     pb->fd_budget);
        }
    }
    return closed;
}

static void pt_trim(struct pt_backend *pb);

/* ---- open files ---------------------------------------------------------- */

static void
pt_hlru_del(struct be_handle *h)
{
    /* h is on the circular list: both links are non-NULL (the analyzer
     * loses track that the tail's hl_next is &pb->hlru) */
    // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): circular list
    h->hl_prev->hl_next = h->hl_next;
    h->hl_next->hl_prev = h->hl_prev;
    h->hl_prev = h->hl_next = NULL;
    h->on_lru = false;
}

static void
pt_hlru_add(struct pt_backend *pb, struct be_handle *h)
{
    h->hl_next = pb->hlru.hl_next;
    h->hl_prev = &pb->hlru;
    pb->hlru.hl_next->hl_prev = h;
    pb->hlru.hl_next = h;
    h->on_lru = true;
}

/* Caller holds fd_lock. */
static int
pt_pick_hvictims(struct pt_backend *pb, struct be_handle **v, int max,
                 long over)
{
    int nv = 0;

    while (nv < max && nv < over && pb->hlru.hl_prev != &pb->hlru) {
        struct be_handle *h = pb->hlru.hl_prev;

        pt_hlru_del(h);
        h->io_pins++;
        v[nv++] = h;
    }
    return nv;
}

static int
pt_hreclaim(struct pt_backend *pb, struct be_handle **v, int nv)
{
    int closed = 0;

    for (int i = 0; i < nv; i++) {
        struct be_handle *h = v[i];
        struct stat st;
        bool keep = false;
        int fd = -1;

        /* An unlinked file: a reopen could not find it again. */
        if (fstat(h->fd, &st) == 0 && st.st_nlink == 0) {
            keep = true;
        }
        pthread_mutex_lock(&pb->fd_lock);
        h->io_pins--;
        if (h->dying) {
            if (h->io_pins == 0) {
                pthread_mutex_unlock(&pb->fd_lock);
                pt_handle_free(pb, h);
                continue;
            }
        } else if (keep &&
                   (h->fds_charged || be_budget_charge(h->lim.fds, 1))) {
            h->fds_charged = true;
            h->keep = true;
        } else if (h->io_pins == 0 && !h->keep) {
            /* (an unlinked file beyond the session's descriptor budget is
             * closed too: that session's later I/O on it gets ESTALE) */
            fd = h->fd;
            h->fd = -1;
        }
        pthread_mutex_unlock(&pb->fd_lock);
        if (fd >= 0) {
            close(fd);
            atomic_fetch_sub_explicit(&pb->fd_files, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&pb->st_hevict, 1, memory_order_relaxed);
            closed++;
        }
    }
    return closed;
}

/* A new open file; 'keep' when it may never be reclaimed. */
void
pt_hcache_adopt(struct pt_backend *pb, struct be_handle *h, bool keep)
{
    pthread_mutex_lock(&pb->fd_lock);
    h->keep = keep;
    if (!keep) {
        pt_hlru_add(pb, h);
    }
    pthread_mutex_unlock(&pb->fd_lock);
    pt_trim(pb);
}

/* The open file now carries state (a lock): it keeps its descriptor, one
 * unit of the session's descriptor budget; -ENOLCK if that is full. */
int
pt_hcache_keep(struct pt_backend *pb, struct be_handle *h)
{
    int err = 0;

    pthread_mutex_lock(&pb->fd_lock);
    if (!h->fds_charged) {
        if (!be_budget_charge(h->lim.fds, 1)) {
            err = -ENOLCK;
            goto out;
        }
        h->fds_charged = true;
    }
    h->keep = true;
    if (h->on_lru) {
        pt_hlru_del(h);
    }
out:
    pthread_mutex_unlock(&pb->fd_lock);
    return err;
}

/* Tclunk: true if the caller frees h now, false if the reclaimer will. */
bool
pt_hcache_forget(struct pt_backend *pb, struct be_handle *h)
{
    bool now = true;

    pthread_mutex_lock(&pb->fd_lock);
    if (h->on_lru) {
        pt_hlru_del(h);
    }
    if (h->io_pins > 0) {
        h->dying = true;
        now = false;
    }
    pthread_mutex_unlock(&pb->fd_lock);
    return now;
}

/*
 * Make h->fd valid until pt_hunpin.  A reclaimed open file is reopened
 * through its node with the flags it was opened with (O_TRUNC dropped)
 * and must still be the same inode.  The kernel checks permissions again:
 * a file made unreadable on the host since the open answers EACCES.
 */
int
pt_hpin(struct pt_backend *pb, struct be_handle *h)
{
    char proc[PT_PROC_PATH_MAX];
    struct stat st;
    int extra = -1;
    int fd;
    int err;

    pthread_mutex_lock(&pb->fd_lock);
    if (h->fd >= 0) {
        h->io_pins++;
        if (h->on_lru) {
            pt_hlru_del(h);
        }
        pthread_mutex_unlock(&pb->fd_lock);
        return 0;
    }
    pthread_mutex_unlock(&pb->fd_lock);
    err = pt_pin(pb, h->node);
    if (err < 0) {
        return err;
    }
    pt_proc_path(proc, h->node->fd);
    fd = open(proc, h->oflags | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 && pt_fd_pressure(pb, -errno, "reopen for I/O")) {
        fd = open(proc, h->oflags | O_CLOEXEC | O_NOCTTY);
    }
    err = fd < 0 ? -errno : 0;
    pt_unpin(pb, h->node);
    if (err < 0) {
        return err;
    }
    if (fstat(fd, &st) < 0 || st.st_dev != h->node->dev ||
        st.st_ino != h->node->ino) {
        close(fd);
        return -ESTALE;
    }
    atomic_fetch_add_explicit(&pb->st_hreopen, 1, memory_order_relaxed);
    pthread_mutex_lock(&pb->fd_lock);
    if (h->fd >= 0) {
        extra = fd;
    } else {
        h->fd = fd;
        atomic_fetch_add_explicit(&pb->fd_files, 1, memory_order_relaxed);
    }
    h->io_pins++;
    if (h->on_lru) {
        pt_hlru_del(h);
    }
    pthread_mutex_unlock(&pb->fd_lock);
    if (extra >= 0) {
        close(extra);
    }
    pt_trim(pb);
    return 0;
}

void
pt_hunpin(struct pt_backend *pb, struct be_handle *h)
{
    pthread_mutex_lock(&pb->fd_lock);
    if (--h->io_pins == 0 && !h->keep && !h->on_lru && h->fd >= 0) {
        pt_hlru_add(pb, h);
    }
    pthread_mutex_unlock(&pb->fd_lock);
}

/*
 * Bring the export back under its descriptor budget: node descriptors
 * first (cheap to find again), then idle open files.
 */
static void
pt_trim(struct pt_backend *pb)
{
    struct be_node *v[PT_TRIM_BATCH];
    struct be_handle *hv[PT_TRIM_BATCH];
    long over;
    int nv;
    int nh = 0;

    pthread_mutex_lock(&pb->fd_lock);
    nv = pt_pick_victims(pb, v, PT_TRIM_BATCH, false);
    over = pb->fd_nodes - nv + atomic_load(&pb->fd_files) - pb->fd_budget;
    if (over > 0) {
        nh = pt_pick_hvictims(pb, hv, PT_TRIM_BATCH, over);
    }
    pthread_mutex_unlock(&pb->fd_lock);
    if (nv > 0) {
        (void)pt_reclaim(pb, v, nv);
    }
    if (nh > 0) {
        (void)pt_hreclaim(pb, hv, nh);
    }
}

/*
 * A new node with its descriptor: put it on the LRU.  Its file handle
 * (identity, and the way back once the descriptor is reclaimed) is taken
 * by pt_reclaim just before the descriptor goes: while the node has its
 * descriptor, the descriptor pins the inode and nothing needs the handle.
 */
void
pt_fdcache_adopt(struct pt_backend *pb, struct be_node *n)
{
    pthread_mutex_lock(&pb->fd_lock);
    pb->fd_nodes++;
    if (n->pins == 0 && !n->pinned_for_good && n != pb->root) {
        pt_lru_add(pb, n);
    }
    pthread_mutex_unlock(&pb->fd_lock);
    pt_trim(pb);
}

/*
 * An existing node that had lost its descriptor was walked to again:
 * install 'fd' (already checked to be the same file).  Returns false if
 * the node has one again already (the caller closes fd).
 */
bool
pt_fdcache_install(struct pt_backend *pb, struct be_node *n, int fd)
{
    bool used = false;

    pthread_mutex_lock(&pb->fd_lock);
    if (n->fd < 0) {
        n->fd = fd;
        pb->fd_nodes++;
        if (n->pins == 0 && !n->pinned_for_good) {
            pt_lru_add(pb, n);
        }
        used = true;
    }
    pthread_mutex_unlock(&pb->fd_lock);
    if (used) {
        pt_trim(pb);
    }
    return used;
}

/*
 * The node has no references left and is unhashed: close its descriptor
 * and free it.  The reclaimer may be looking at it (it pins without a
 * reference); then it is marked dying and the reclaimer frees it.
 */
void
pt_fdcache_forget(struct pt_backend *pb, struct be_node *n)
{
    int fd = -1;

    pthread_mutex_lock(&pb->fd_lock);
    if (n->on_lru) {
        pt_lru_del(n);
    }
    if (n->pins > 0) {
        n->dying = true;
        pthread_mutex_unlock(&pb->fd_lock);
        return;
    }
    if (n->fd >= 0) {
        pb->fd_nodes--;
        fd = n->fd;
    }
    if (n->pinned_for_good && n != pb->root) {
        pb->fd_for_good--;
    }
    pthread_mutex_unlock(&pb->fd_lock);
    if (fd >= 0) {
        close(fd);
    }
    pt_node_free(n);
}

/* One rate-limited line when the host's limit is hit anyway. */
static void
pt_log_emfile(struct pt_backend *pb, int err, const char *what)
{
    static atomic_llong last;
    long long now = (long long)time(NULL);
    long long prev = atomic_load_explicit(&last, memory_order_relaxed);

    atomic_fetch_add_explicit(&pb->st_emfile, 1, memory_order_relaxed);
    if (now - prev >= 10 && atomic_compare_exchange_strong(&last, &prev, now)) {
        log_warn("passthrough: %s: %s for the requesting client (uid %u); "
                 "holding %ld node and %ld open-file descriptors, budget %ld",
                 what, err == -ENFILE ? "ENFILE" : "EMFILE",
                 (unsigned)pt_current_uid(), pb->fd_nodes,
                 atomic_load(&pb->fd_files), pb->fd_budget);
    }
}

/*
 * After a syscall failed with 'err': if that is EMFILE/ENFILE, close some
 * cached descriptors and return true (the caller retries once).  When
 * there is nothing to close, log (rate-limited) and return false: only
 * this request fails.
 */
bool
pt_fd_pressure(struct pt_backend *pb, int err, const char *what)
{
    struct be_node *v[PT_TRIM_BATCH];
    struct be_handle *hv[PT_TRIM_BATCH / 2];
    int nv;
    int nh = 0;

    if (err != -EMFILE && err != -ENFILE) {
        return false;
    }

    pthread_mutex_lock(&pb->fd_lock);
    nv = pt_pick_victims(pb, v, PT_TRIM_BATCH / 2, true);
    if (nv == 0) {
        nh = pt_pick_hvictims(pb, hv, PT_TRIM_BATCH / 2, PT_TRIM_BATCH / 2);
    }
    pthread_mutex_unlock(&pb->fd_lock);
    if (nv > 0 && pt_reclaim(pb, v, nv) > 0) {
        return true;
    }
    if (nh > 0 && pt_hreclaim(pb, hv, nh) > 0) {
        return true;
    }
    pt_log_emfile(pb, err, what);
    return false;
}

/* Reopen n by its file handle.  New descriptor or -errno. */
static int
pt_reopen_fh(struct pt_backend *pb, struct be_node *n)
{
    struct stat st;
    int fd;

    fd =
        open_by_handle_at(pb->mount_fd, n->fh, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && pt_fd_pressure(pb, -errno, "reopen")) {
        fd = open_by_handle_at(pb->mount_fd, n->fh,
                               O_PATH | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
        int err = -errno;

        if (err == -ESTALE || err == -ENOENT) {
            atomic_fetch_add_explicit(&pb->st_stale, 1, memory_order_relaxed);
            return -ESTALE;
        }
        return err;
    }
    if (pt_fstat(fd, &st) < 0 || st.st_dev != n->dev || st.st_ino != n->ino) {
        close(fd);
        atomic_fetch_add_explicit(&pb->st_stale, 1, memory_order_relaxed);
        return -ESTALE;
    }
    atomic_fetch_add_explicit(&pb->st_reopen_fh, 1, memory_order_relaxed);
    return fd;
}

static bool
pt_has_fh(const struct pt_backend *pb, const struct be_node *n)
{
    return pb->fh_open && n->fh != NULL && n->fh_mnt_ok;
}

/* Open 'name' below the directory pfd and require it to be n's file.  New
 * descriptor or -errno (-ESTALE: not the same file, or gone). */
static int
pt_reopen_child(struct pt_backend *pb, int pfd, const char *name,
                struct be_node *n)
{
    struct stat st;
    int mnt;
    int fd;

    fd = pt_open_child(pfd, name, 0);
    if (fd < 0 && pt_fd_pressure(pb, fd, "reopen")) {
        fd = pt_open_child(pfd, name, 0);
    }
    if (fd < 0) {
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM) {
            return fd;
        }
        atomic_fetch_add_explicit(&pb->st_stale, 1, memory_order_relaxed);
        return -ESTALE;
    }
    /* The same file, not whatever has the name now. */
    if (pt_fstat(fd, &st) < 0 || st.st_dev != n->dev || st.st_ino != n->ino) {
        goto out_stale;
    }
    if (n->fh != NULL) {
        struct file_handle *fh = pt_fh_of(fd, &mnt);

        if (fh == NULL || !pt_fh_equal(fh, n->fh)) {
            free(fh);
            goto out_stale;
        }
        free(fh);
    }
    atomic_fetch_add_explicit(&pb->st_reopen_name, 1, memory_order_relaxed);
    return fd;

out_stale:
    close(fd);
    atomic_fetch_add_explicit(&pb->st_stale, 1, memory_order_relaxed);
    return -ESTALE;
}

/* Give n the descriptor fd (unless another thread reopened it first) and
 * pin it; returns n's descriptor. */
static int
pt_pin_install(struct pt_backend *pb, struct be_node *n, int fd)
{
    int extra = -1;

    pthread_mutex_lock(&pb->fd_lock);
    if (n->fd >= 0) {
        extra = fd; /* another thread reopened it first */
    } else {
        n->fd = fd;
        pb->fd_nodes++;
    }
    n->pins++;
    if (n->on_lru) {
        pt_lru_del(n);
    }
    fd = n->fd;
    pthread_mutex_unlock(&pb->fd_lock);
    if (extra >= 0) {
        close(extra);
    }
    return fd;
}

/* One step of a way back by name: node c is 'name' in its parent. */
struct pt_step {
    struct be_node *node; /* a reference (not for step 0, the caller's) */
    char *name;
};

/*
 * Find node n's file again (n has no descriptor).  New descriptor or
 * -errno.  By handle when there is one; else by name from the nearest
 * ancestor that has a descriptor or a handle, down one element at a time.
 * Iterative: a peer decides how deep a chain of reclaimed directories is,
 * and a worker's stack is small.
 */
static int
pt_reopen(struct pt_backend *pb, struct be_node *n)
{
    struct pt_step *st = NULL;
    struct be_node *top = NULL;
    size_t nst = 0;
    size_t cap = 0;
    int pfd = -1;
    int fd = -ESTALE;

    if (pt_has_fh(pb, n)) {
        return pt_reopen_fh(pb, n);
    }
    /* the chain up to an ancestor that can be pinned without this */
    for (struct be_node *c = n;;) {
        struct be_node *p;
        bool done;

        if (nst == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct pt_step *g = realloc(st, ncap * sizeof(*st));

            if (g == NULL) {
                fd = -ENOMEM;
                goto out;
            }
            st = g;
            cap = ncap;
        }
        pthread_mutex_lock(&pb->nt_lock);
        p = c->parent;
        if (p == NULL || c->name == NULL) {
            pthread_mutex_unlock(&pb->nt_lock);
            atomic_fetch_add_explicit(&pb->st_stale, 1, memory_order_relaxed);
            goto out;
        }
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
        st[nst].node = c;
        st[nst].name = strdup(c->name);
        pthread_mutex_unlock(&pb->nt_lock);
        nst++;
        top = p;
        if (st[nst - 1].name == NULL) {
            fd = -ENOMEM;
            goto out;
        }
        pthread_mutex_lock(&pb->fd_lock);
        done = p->fd >= 0 || pt_has_fh(pb, p);
        pthread_mutex_unlock(&pb->fd_lock);
        if (done) {
            break;
        }
        c = p;
    }
    /* top has a descriptor or a handle: pinning it does not come back
     * here (unless it lost its descriptor meanwhile: one level more) */
    pfd = pt_pin(pb, top);
    if (pfd < 0) {
        fd = pfd;
        goto out;
    }
    for (size_t i = nst; i-- > 0;) {
        struct be_node *c = st[i].node;
        struct be_node *up = i + 1 < nst ? st[i + 1].node : top;

        fd = pt_reopen_child(pb, pfd, st[i].name, c);
        if (i == 0 || fd < 0) {
            pt_unpin(pb, up);
            break;
        }
        /* an intermediate directory: it keeps what we opened */
        pfd = pt_pin_install(pb, c, fd);
        pt_unpin(pb, up);
    }

out:
    /* the references: top's, and each step's parent but the caller's n */
    for (size_t i = 0; i < nst; i++) {
        if (i > 0) {
            pt_node_put(&pb->be, st[i].node);
        }
        free(st[i].name);
    }
    pt_node_put(&pb->be, top);
    free(st);
    return fd;
}

/*
 * Make n->fd valid until pt_unpin: returns the descriptor or -errno
 * (-ESTALE when the file cannot be found again).
 */
int
pt_pin(struct pt_backend *pb, struct be_node *n)
{
    int fd;

    pthread_mutex_lock(&pb->fd_lock);
    if (n->fd >= 0) {
        n->pins++;
        if (n->on_lru) {
            pt_lru_del(n);
        }
        fd = n->fd;
        pthread_mutex_unlock(&pb->fd_lock);
        atomic_fetch_add_explicit(&pb->st_hits, 1, memory_order_relaxed);
        return fd;
    }
    pthread_mutex_unlock(&pb->fd_lock);
    atomic_fetch_add_explicit(&pb->st_misses, 1, memory_order_relaxed);
    fd = pt_reopen(pb, n);
    if (fd < 0) {
        return fd;
    }
    fd = pt_pin_install(pb, n, fd);
    pt_trim(pb);
    return fd;
}

/*
 * Pin n only if it has its descriptor now (no reopen): 0, or -ESTALE.
 * While pinned, that descriptor keeps the inode, so its (dev, ino) names
 * no other file (the fast walk in pt_walk.c relies on it).
 */
int
pt_pin_if_open(struct pt_backend *pb, struct be_node *n)
{
    int err = -ESTALE;

    pthread_mutex_lock(&pb->fd_lock);
    if (n->fd >= 0) {
        n->pins++;
        if (n->on_lru) {
            pt_lru_del(n);
        }
        err = 0;
    }
    pthread_mutex_unlock(&pb->fd_lock);
    return err;
}

void
pt_unpin(struct pt_backend *pb, struct be_node *n)
{
    bool over;

    if (n == NULL) {
        return;
    }
    pthread_mutex_lock(&pb->fd_lock);
    if (--n->pins == 0 && n->fd >= 0 && !n->pinned_for_good && !n->on_lru &&
        n != pb->root) {
        pt_lru_add(pb, n);
    }
    over = pb->fd_nodes + atomic_load(&pb->fd_files) > pb->fd_budget;
    pthread_mutex_unlock(&pb->fd_lock);
    if (over) {
        pt_trim(pb);
    }
}

/* Pin two nodes (either may be NULL or both the same). */
int
pt_pin2(struct pt_backend *pb, struct be_node *a, struct be_node *b)
{
    int err;

    if (a != NULL) {
        err = pt_pin(pb, a);
        if (err < 0) {
            return err;
        }
    }
    if (b != NULL) {
        err = pt_pin(pb, b);
        if (err < 0) {
            pt_unpin(pb, a);
            return err;
        }
    }
    return 0;
}

void
pt_unpin2(struct pt_backend *pb, struct be_node *a, struct be_node *b)
{
    pt_unpin(pb, b);
    pt_unpin(pb, a);
}

void
pt_dump_stats(struct backend *be)
{
    struct pt_backend *pb = pt_be(be);
    size_t nodes;
    long fd_nodes;

    pthread_mutex_lock(&pb->nt_lock);
    nodes = pb->nt_count;
    pthread_mutex_unlock(&pb->nt_lock);
    pthread_mutex_lock(&pb->fd_lock);
    fd_nodes = pb->fd_nodes;
    pthread_mutex_unlock(&pb->fd_lock);
    log_info("stats: passthrough nodes %zu; descriptors: nodes %ld, open "
             "files %ld, budget %ld; file handles %s",
             nodes, fd_nodes, atomic_load(&pb->fd_files), pb->fd_budget,
             pb->fh_open ? "used" : "not used");
    log_info("stats: passthrough cache hits %lu misses %lu; reopened by "
             "handle %lu, by name %lu; stale %lu; reclaimed %lu; "
             "open files reclaimed %lu, reopened %lu; "
             "EMFILE/ENFILE %lu; '..' fast %lu slow %lu",
             atomic_load(&pb->st_hits), atomic_load(&pb->st_misses),
             atomic_load(&pb->st_reopen_fh), atomic_load(&pb->st_reopen_name),
             atomic_load(&pb->st_stale), atomic_load(&pb->st_evict),
             atomic_load(&pb->st_hevict), atomic_load(&pb->st_hreopen),
             atomic_load(&pb->st_emfile), atomic_load(&pb->st_dotdot_fast),
             atomic_load(&pb->st_dotdot_slow));
    pthread_mutex_lock(&pb->nt_lock);
    nodes = pb->nidle;
    pthread_mutex_unlock(&pb->nt_lock);
    log_info("stats: passthrough walks by the child index %lu of %lu tried; "
             "idle nodes %zu (at most %zu)",
             atomic_load(&pb->st_walk_fast), atomic_load(&pb->st_walk_probe),
             nodes, pb->idle_max);
    pt_dircache_log_stats(pb);
}
