/* SPDX-License-Identifier: MIT */
/*
 * Per-session limits (issue 12 #3): one client cannot grow the daemon
 * without bound.  Against a server with small limits (--max-fids 3000,
 * --session-mem 4, --max-locks 64):
 *   - fids: Twalk / Txattrwalk / Tattach beyond the limit answer EMFILE,
 *     beyond the server-wide one (--max-fids-total 5000) ENFILE; a clunk
 *     makes room again;
 *   - xattr snapshots (Txattrwalk of a 60 kB value): ENOMEM once 4 MiB are
 *     pinned, and the server's RSS grows by no more than the budget;
 *   - xattr values (Txattrcreate + Twrite): Txattrcreate pins nothing,
 *     Twrite data beyond the budget answers ENOSPC, written values commit;
 *   - open directories read one entry at a time: the read-ahead buffers
 *     stay within the budget (RSS) and listings stay exact;
 *   - lock records: ENOLCK beyond 64, and the host kernel never holds more
 *     than 64 records of the session (counted in /proc/locks), however
 *     the ranges merge and split;
 *   - descriptors held for good (--session-fds 700): open directories
 *     beyond it answer EMFILE, a Tlcreate EMFILE without creating the
 *     file, a first Tlock on an open file ENOLCK; plain opens of regular
 *     files (reclaimable) still work; a clunk makes room;
 * while a second client keeps working and gets its own budgets.  Then,
 * with the default limits: 100,000 fids work, and snapshots stop at 16 MiB.
 */
#include "harness.h"

#include <sys/resource.h>
#include <sys/xattr.h>

#define MAX_FIDS 3000
#define MAX_FIDS_TOTAL 5000
#define MEM_MIB 4
#define MAX_LOCKS 64
#define XVAL 60000
#define NDIRENT 2500
#define SESSION_FDS 700 /* > NDIRFID (test_readdir) */

static const char *vfsd;
static struct th_srv *srv;
static char exdir[PATH_MAX];

static void
config_hook(struct p9s_config *cfg)
{
    cfg->max_fids = MAX_FIDS;
    cfg->max_fids_total = MAX_FIDS_TOTAL;
    cfg->session_mem = (uint64_t)MEM_MIB << 20;
    cfg->max_locks = MAX_LOCKS;
    cfg->session_fds = SESSION_FDS;
}

/* Resident set of the server (the spawned virtfsd, or this process). */
static long
server_rss_kb(void)
{
    char path[64];
    char line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status",
             vfsd ? (int)srv->pid : (int)getpid());
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb;
}

static struct p9c_conn *
attach(uint32_t fid)
{
    struct p9c_conn *c = th_connect(srv);

    if (c == NULL || p9c_version(c, TH_MSIZE) < 0 ||
        th_attach(c, fid, "", NULL) < 0) {
        tap_diag("cannot attach");
        exit(99);
    }
    return c;
}

static int
xattrwalk(struct p9c_conn *c, uint32_t fid, uint32_t newfid, const char *name,
          uint64_t *size)
{
    struct p9_fcall t = {.type = P9_TXATTRWALK};
    struct p9c_reply *r;
    int err;

    t.u.txattrwalk.fid = fid;
    t.u.txattrwalk.newfid = newfid;
    t.u.txattrwalk.name = th_str(name);
    err = th_rpc(c, &t, &r);
    if (err == 0 && size != NULL) {
        *size = r->f.u.rxattrwalk.size;
    }
    p9c_reply_free(r);
    return err;
}

static int
xattrcreate(struct p9c_conn *c, uint32_t fid, const char *name, uint64_t size)
{
    struct p9_fcall t = {.type = P9_TXATTRCREATE};

    t.u.txattrcreate.fid = fid;
    t.u.txattrcreate.name = th_str(name);
    t.u.txattrcreate.attr_size = size;
    t.u.txattrcreate.flags = 0;
    return th_rpc(c, &t, NULL);
}

/* Twrite of len bytes; count written or -errno. */
static long
twrite(struct p9c_conn *c, uint32_t fid, uint64_t off, const void *buf,
       uint32_t len)
{
    struct p9_fcall t = {.type = P9_TWRITE};
    struct p9c_reply *r;
    long n;
    int err;

    t.u.twrite.fid = fid;
    t.u.twrite.offset = off;
    t.u.twrite.data.len = len;
    t.u.twrite.data.ptr = buf;
    err = th_rpc(c, &t, &r);
    n = err < 0 ? err : (long)r->f.u.rwrite.count;
    p9c_reply_free(r);
    return n;
}

/* Write a whole value in 8000-byte pieces (msize 64k). */
static long
twrite_all(struct p9c_conn *c, uint32_t fid, const uint8_t *buf, size_t len)
{
    size_t off = 0;

    while (off < len) {
        uint32_t n = len - off < 8000 ? (uint32_t)(len - off) : 8000;
        long w = twrite(c, fid, off, buf + off, n);

        if (w < 0) {
            return w;
        }
        off += (size_t)w;
    }
    return (long)off;
}

/* Treaddir: bytes of entries or -errno; entries copied to buf. */
static long
treaddir(struct p9c_conn *c, uint32_t fid, uint64_t off, uint32_t count,
         uint8_t *buf)
{
    struct p9_fcall t = {.type = P9_TREADDIR};
    struct p9c_reply *r;
    long n;
    int err;

    t.u.treaddir.fid = fid;
    t.u.treaddir.offset = off;
    t.u.treaddir.count = count;
    err = th_rpc(c, &t, &r);
    if (err < 0) {
        return err;
    }
    n = r->f.u.rreaddir.data.len;
    if (n > 0) {
        memcpy(buf, r->f.u.rreaddir.data.ptr, (size_t)n);
    }
    p9c_reply_free(r);
    return n;
}

static int
tlock(struct p9c_conn *c, uint32_t fid, uint8_t type, uint64_t start,
      uint64_t len, uint8_t *status)
{
    struct p9_fcall t = {.type = P9_TLOCK};
    struct p9c_reply *r;
    int err;

    t.u.tlock.fid = fid;
    t.u.tlock.type = type;
    t.u.tlock.start = start;
    t.u.tlock.length = len;
    t.u.tlock.proc_id = 1;
    t.u.tlock.client_id = th_str("limits");
    err = th_rpc(c, &t, &r);
    if (err == 0) {
        *status = r->f.u.rlock.status;
    }
    p9c_reply_free(r);
    return err;
}

/* ---- fids ---------------------------------------------------------------- */

/* Clone the root into fids first.. until an error; how many were made. */
static int
fill(struct p9c_conn *c, int first, int max, int *err)
{
    int made = 0;

    *err = 0;
    for (int i = first; i < first + max; i++) {
        *err = th_walk1(c, TF(0), TF(i), NULL);
        if (*err < 0) {
            break;
        }
        made++;
    }
    return made;
}

static void
unfill(struct p9c_conn *c, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        th_clunk(c, TF(i));
    }
}

/*
 * fill() that waits for the fids of closed sessions to go (the server
 * clunks them after the connection's end, not before close() returns):
 * retried while the server-wide limit stops it early.
 */
static int
fill_settled(struct p9c_conn *c, int first, int max, int want, int *err)
{
    int made = 0;

    for (int tries = 0; tries < 50; tries++) {
        made = fill(c, first, max, err);
        if (made >= want || *err != -ENFILE) {
            break;
        }
        unfill(c, first, made);
        usleep(100000);
    }
    return made;
}

static void
test_fids(void)
{
    struct p9c_conn *a = attach(TF(0));
    struct p9c_conn *b = attach(TF(0));
    int made;
    int err;

    /* the root fid is one: MAX_FIDS - 1 walks fit */
    made = fill_settled(a, 1, MAX_FIDS + 10, MAX_FIDS - 1, &err);
    tap_ok(made == MAX_FIDS - 1 && err == -EMFILE,
           "fids/Twalk beyond --max-fids answers EMFILE (%d made, %d)", made,
           err);
    err = xattrwalk(a, TF(0), TF(MAX_FIDS + 100), "", NULL);
    tap_ok(err == -EMFILE, "fids/Txattrwalk at the limit: EMFILE (%d)", err);
    err = th_attach(a, TF(MAX_FIDS + 101), "", NULL);
    tap_ok(err == -EMFILE, "fids/Tattach at the limit: EMFILE (%d)", err);
    err = th_getattr(a, TF(MAX_FIDS / 2), NULL);
    tap_ok(err == 0, "fids/the session's fids still work (%d)", err);

    /* another session has its own table, up to the server-wide limit */
    err = th_walk1(b, TF(0), TF(1), NULL);
    tap_ok(err == 0 && th_getattr(b, TF(1), NULL) == 0,
           "fids/a second client keeps working (%d)", err);
    for (int tries = 0; tries < 50; tries++) {
        /* fids of the sessions of earlier tests may still be going */
        made = fill(b, 2, MAX_FIDS, &err);
        if (made >= MAX_FIDS_TOTAL - MAX_FIDS - 2) {
            break;
        }
        unfill(b, 2, made);
        usleep(100000);
    }
    tap_ok(err == -ENFILE && made == MAX_FIDS_TOTAL - MAX_FIDS - 2,
           "fids/beyond --max-fids-total: ENFILE (%d more made, %d)", made,
           err);
    unfill(b, 2, made);

    err = th_clunk(a, TF(1));
    if (err == 0) {
        err = th_walk1(a, TF(0), TF(MAX_FIDS + 102), NULL);
    }
    tap_ok(err == 0, "fids/a clunk makes room again (%d)", err);
    p9c_close(a);
    p9c_close(b);
    /* a new session after the old ones went: the whole quota again */
    a = attach(TF(0));
    made = fill_settled(a, 1, MAX_FIDS - 1, MAX_FIDS - 1, &err);
    tap_ok(made == MAX_FIDS - 1,
           "fids/a new session gets its whole quota "
           "(%d, %d)",
           made, err);
    p9c_close(a);
}

/* ---- xattr snapshots ------------------------------------------------------ */

#define NSNAP 1000

static void
test_xattr_snapshots(void)
{
    struct p9c_conn *a = attach(TF(0));
    struct p9c_conn *b = attach(TF(0));
    long rss0;
    long rss1;
    int ok = 0;
    int first_err = 0;
    int errs = 0;
    int err;

    if (th_walk1(a, TF(0), TF(1), "x") < 0 ||
        th_walk1(b, TF(0), TF(1), "x") < 0) {
        tap_ok(false, "xsnap/walk to x");
        return;
    }
    rss0 = server_rss_kb();
    for (int i = 0; i < NSNAP; i++) {
        uint64_t size = 0;

        err = xattrwalk(a, TF(1), TF(100 + i), "user.big", &size);
        if (err == 0 && size == XVAL) {
            ok++;
        } else if (err < 0) {
            if (first_err == 0) {
                first_err = err;
            }
            errs++;
        }
    }
    rss1 = server_rss_kb();
    tap_ok(first_err == -ENOMEM && ok <= (MEM_MIB << 20) / XVAL &&
               ok >= (MEM_MIB << 20) / XVAL - 2,
           "xsnap/snapshots beyond --session-mem answer ENOMEM (%d kept, "
           "first error %d, %d errors)",
           ok, first_err, errs);
    tap_ok(rss1 - rss0 < 16 * 1024,
           "xsnap/%d Txattrwalk of 60 kB grow the server by %ld kB "
           "(< 16 MiB)",
           NSNAP, rss1 - rss0);
    {
        uint64_t size = 0;

        err = xattrwalk(b, TF(1), TF(2), "user.big", &size);
        tap_ok(err == 0 && size == XVAL,
               "xsnap/a second client still gets its snapshot (%d)", err);
    }
    /* clunking gives the budget back */
    for (int i = 0; i < NSNAP; i++) {
        th_clunk(a, TF(100 + i));
    }
    err = xattrwalk(a, TF(1), TF(99), "user.big", NULL);
    tap_ok(err == 0, "xsnap/after the clunks a snapshot fits again (%d)", err);
    p9c_close(a);
    p9c_close(b);
}

/* ---- xattr values ------------------------------------------------------------ */

#define NVAL 150

static void
test_xattr_values(void)
{
    struct p9c_conn *a = attach(TF(0));
    struct p9c_conn *b = attach(TF(0));
    static uint8_t val[XVAL];
    char name[64];
    char got[64];
    long rss0;
    long rss1;
    int created = 0;
    int written = 0;
    long first_err = 0;
    int committed = 0;
    int err;

    for (size_t i = 0; i < sizeof(val); i++) {
        val[i] = (uint8_t)(i * 7);
    }
    /* Txattrcreate alone pins nothing: all of them succeed */
    rss0 = server_rss_kb();
    for (int i = 0; i < NVAL; i++) {
        snprintf(name, sizeof(name), "user.v%d", i);
        if (th_walk1(a, TF(0), TF(1000 + i), "y") == 0 &&
            xattrcreate(a, TF(1000 + i), name, XVAL) == 0) {
            created++;
        }
    }
    rss1 = server_rss_kb();
    tap_ok(created == NVAL,
           "xval/%d Txattrcreate of 60 kB: all accepted "
           "(%d), server grew %ld kB",
           NVAL, created, rss1 - rss0);
    for (int i = 0; i < NVAL; i++) {
        long n = twrite_all(a, TF(1000 + i), val, sizeof(val));

        if (n == XVAL) {
            written++;
        } else if (first_err == 0) {
            first_err = n;
        }
    }
    tap_ok(first_err == -ENOSPC && written >= (MEM_MIB << 20) / XVAL - 2 &&
               written <= (MEM_MIB << 20) / XVAL,
           "xval/value data beyond --session-mem answers ENOSPC (%d written, "
           "%ld)",
           written, first_err);
    {
        long n;

        err = th_walk1(b, TF(0), TF(1), "y");
        err = err ? err : xattrcreate(b, TF(1), "user.fromb", XVAL);
        n = err ? err : twrite_all(b, TF(1), val, sizeof(val));
        err = n < 0 ? (int)n : th_clunk(b, TF(1));
        tap_ok(err == 0, "xval/a second client still sets a 60 kB value (%d)",
               err);
    }
    for (int i = 0; i < NVAL; i++) {
        th_clunk(a, TF(1000 + i));
    }
    {
        char path[PATH_MAX + 8];
        static uint8_t back[XVAL + 1];

        snprintf(path, sizeof(path), "%s/y", exdir);
        for (int i = 0; i < NVAL; i++) {
            snprintf(got, sizeof(got), "user.v%d", i);
            if (getxattr(path, got, back, sizeof(back)) == XVAL &&
                memcmp(back, val, XVAL) == 0) {
                committed++;
            }
        }
        tap_ok(committed == written,
               "xval/every fully written value was set "
               "on the host (%d of %d)",
               committed, written);
        tap_ok(getxattr(path, "user.fromb", back, sizeof(back)) == XVAL,
               "xval/the second client's value is set");
    }
    p9c_close(a);
    p9c_close(b);
}

/* ---- directory read-ahead ------------------------------------------------------ */

#define NDIRFID 600

/* Read the rest of a directory from 'off' with small replies; count the
 * entries ("." and ".." too). */
static int
count_entries(struct p9c_conn *c, uint32_t fid, uint64_t off, int *n)
{
    static uint8_t buf[TH_MSIZE];

    for (;;) {
        long got = treaddir(c, fid, off, 700, buf);
        size_t p = 0;

        if (got < 0) {
            return (int)got;
        }
        if (got == 0) {
            return 0;
        }
        while (p < (size_t)got) {
            uint16_t nlen = (uint16_t)(buf[p + 22] | buf[p + 23] << 8);

            memcpy(&off, buf + p + 13, 8);
            (*n)++;
            p += 24 + nlen;
        }
    }
}

static void
test_readdir(void)
{
    struct p9c_conn *a = attach(TF(0));
    struct p9c_conn *b = attach(TF(0));
    static uint8_t buf[TH_MSIZE];
    uint64_t offs[NDIRFID];
    long rss0;
    long rss1;
    int opened = 0;
    int read1 = 0;
    int n;
    int err;

    rss0 = server_rss_kb();
    for (int i = 0; i < NDIRFID; i++) {
        long got;

        offs[i] = 0;
        if (th_walk1(a, TF(0), TF(2000 + i), "d") < 0 ||
            th_lopen(a, TF(2000 + i), P9_DOTL_RDONLY) < 0) {
            continue;
        }
        opened++;
        /* one entry: the rest of the host's batch stays read ahead */
        got = treaddir(a, TF(2000 + i), 0, 60, buf);
        if (got > 24) {
            memcpy(&offs[i], buf + 13, 8);
            read1++;
        }
    }
    rss1 = server_rss_kb();
    tap_ok(opened == NDIRFID && read1 == NDIRFID,
           "readdir/%d directory fids each read one entry (%d, %d)", NDIRFID,
           opened, read1);
    tap_ok(rss1 - rss0 < 16 * 1024 + NDIRFID * 4,
           "readdir/their read-ahead grows the server by %ld kB (< 16 MiB + "
           "fids)",
           rss1 - rss0);
    /* the first ones kept their read-ahead, the last ones did not: both
     * must list the rest exactly */
    n = 1;
    err = count_entries(a, TF(2000), offs[0], &n);
    tap_ok(err == 0 && n == NDIRENT + 2,
           "readdir/a buffered fid lists "
           "exactly (%d of %d, %d)",
           n, NDIRENT + 2, err);
    n = 1;
    err = count_entries(a, TF(2000 + NDIRFID - 1), offs[NDIRFID - 1], &n);
    tap_ok(err == 0 && n == NDIRENT + 2,
           "readdir/an unbuffered fid lists "
           "exactly (%d of %d, %d)",
           n, NDIRENT + 2, err);
    n = 0;
    err = th_walk1(b, TF(0), TF(1), "d");
    err = err ? err : th_lopen(b, TF(1), P9_DOTL_RDONLY);
    err = err ? err : count_entries(b, TF(1), 0, &n);
    tap_ok(err == 0 && n == NDIRENT + 2,
           "readdir/a second client lists the "
           "directory (%d, %d)",
           n, err);
    p9c_close(a);
    p9c_close(b);
}

/* ---- lock records --------------------------------------------------------------- */

/* OFD lock records the host kernel holds on inode 'ino'. */
static int
kernel_locks(ino_t ino)
{
    char line[256];
    char want[32];
    int n = 0;
    FILE *f = fopen("/proc/locks", "r");

    if (f == NULL) {
        return -1;
    }
    snprintf(want, sizeof(want), ":%lu ", (unsigned long)ino);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, "OFDLCK") != NULL && strstr(line, want) != NULL &&
            strstr(line, "->") == NULL) {
            n++;
        }
    }
    fclose(f);
    return n;
}

static void
test_locks(void)
{
    struct p9c_conn *a = attach(TF(0));
    struct p9c_conn *b = attach(TF(0));
    char path[PATH_MAX + 8];
    struct stat st;
    uint8_t status = 0;
    int ok = 0;
    int first_err = 0;
    int over = 0;
    int unjust = 0;
    int err;

    snprintf(path, sizeof(path), "%s/lk", exdir);
    stat(path, &st);
    err = th_walk1(a, TF(0), TF(1), "lk");
    err = err ? err : th_lopen(a, TF(1), P9_DOTL_RDWR);
    if (err < 0) {
        tap_ok(false, "locks/open (%d)", err);
        return;
    }
    /* disjoint ranges: one record each */
    for (int i = 0; i < 200; i++) {
        err = tlock(a, TF(1), P9_LOCK_TYPE_WRLCK, (uint64_t)i * 2, 1, &status);
        if (err == 0 && status == P9_LOCK_SUCCESS) {
            ok++;
        } else if (first_err == 0) {
            first_err = err;
        }
    }
    tap_ok(ok == MAX_LOCKS && first_err == -ENOLCK,
           "locks/records beyond --max-locks answer ENOLCK (%d set, %d)", ok,
           first_err);
    tap_ok(kernel_locks(st.st_ino) == MAX_LOCKS,
           "locks/the kernel holds %d records (%d)", MAX_LOCKS,
           kernel_locks(st.st_ino));
    /* filling a gap joins two records and the new one into one: allowed
     * at the limit */
    err = tlock(a, TF(1), P9_LOCK_TYPE_WRLCK, 1, 1, &status);
    tap_ok(err == 0 && status == P9_LOCK_SUCCESS &&
               kernel_locks(st.st_ino) == MAX_LOCKS - 1,
           "locks/a merging lock is allowed at the limit (%d, kernel %d)", err,
           kernel_locks(st.st_ino));
    /* random locks and unlocks: the kernel never holds more than the
     * limit, and a refusal only comes when the request could pass it */
    srand(12);
    for (int i = 0; i < 3000; i++) {
        uint8_t type = (uint8_t)(rand() % 3);
        uint64_t start = (uint64_t)(rand() % 400);
        uint64_t len = (uint64_t)(rand() % 8);
        int before = kernel_locks(st.st_ino);
        int after;

        err = tlock(a, TF(1), type, start, len, &status);
        after = kernel_locks(st.st_ino);
        if (after > MAX_LOCKS) {
            over++;
        }
        if (err == -ENOLCK && before + 2 <= MAX_LOCKS) {
            unjust++;
        }
        if (i % 500 == 0) {
            /* sometimes drop everything */
            tlock(a, TF(1), P9_LOCK_TYPE_UNLCK, 0, 0, &status);
        }
    }
    tap_ok(over == 0 && unjust == 0,
           "locks/3000 random locks: the kernel never passed the limit (%d "
           "times), no needless ENOLCK (%d)",
           over, unjust);
    /* another session, same file, its own budget */
    err = th_walk1(b, TF(0), TF(1), "lk");
    err = err ? err : th_lopen(b, TF(1), P9_DOTL_RDWR);
    err = err ? err : tlock(b, TF(1), P9_LOCK_TYPE_RDLCK, 100000, 10, &status);
    tap_ok(err == 0 && status == P9_LOCK_SUCCESS,
           "locks/a second client still locks (%d)", err);
    /* closing the fid drops the records and gives the budget back */
    th_clunk(a, TF(1));
    err = th_walk1(a, TF(0), TF(2), "lk");
    err = err ? err : th_lopen(a, TF(2), P9_DOTL_RDWR);
    ok = 0;
    for (int i = 0; i < MAX_LOCKS && err == 0; i++) {
        err = tlock(a, TF(2), P9_LOCK_TYPE_WRLCK, (uint64_t)i * 2 + 1000, 1,
                    &status);
        ok += err == 0 && status == P9_LOCK_SUCCESS;
    }
    tap_ok(ok == MAX_LOCKS,
           "locks/after a clunk the budget is whole again "
           "(%d, %d)",
           ok, err);
    p9c_close(a);
    p9c_close(b);
}

/* ---- descriptors held for good ---------------------------------------------- */

/* Tlcreate 'name' in the directory 'dfid' as the new open 'fid'. */
static int
tlcreate(struct p9c_conn *c, uint32_t dfid, uint32_t fid, const char *name)
{
    int err = th_walk(c, dfid, fid, 0, NULL, NULL);

    return err < 0 ? err : th_lcreate(c, fid, name, P9_DOTL_RDWR, 0644);
}

static void
test_held_fds(void)
{
    struct p9c_conn *a = attach(TF(0));
    struct p9c_conn *b = attach(TF(0));
    char path[PATH_MAX + 32];
    uint8_t status = 0;
    int opened = 0;
    int err = 0;

    /* open directories until the session's budget says no */
    for (int i = 0; i < SESSION_FDS + 10; i++) {
        err = th_walk1(a, TF(0), TF(3000 + i), "d");
        err = err ? err : th_lopen(a, TF(3000 + i), P9_DOTL_RDONLY);
        if (err < 0) {
            break;
        }
        opened++;
    }
    tap_ok(opened == SESSION_FDS && err == -EMFILE,
           "heldfds/open directories stop at --session-fds with EMFILE "
           "(%d, %d)",
           opened, err);
    err = tlcreate(a, TF(0), TF(2), "made-at-limit");
    snprintf(path, sizeof(path), "%s/made-at-limit", exdir);
    tap_ok(err == -EMFILE && access(path, F_OK) < 0,
           "heldfds/Tlcreate at the limit: EMFILE, no file created (%d)", err);
    th_clunk(a, TF(2)); /* the fid stays what it was: the directory */
    /* a plain open of a regular file can be reclaimed: not counted */
    err = th_walk1(a, TF(0), TF(2), "lk");
    err = err ? err : th_lopen(a, TF(2), P9_DOTL_RDWR);
    tap_ok(err == 0, "heldfds/a regular file still opens at the limit (%d)",
           err);
    /* its first lock would keep its descriptor for good */
    err = err ? err : tlock(a, TF(2), P9_LOCK_TYPE_WRLCK, 0, 1, &status);
    tap_ok(err == -ENOLCK,
           "heldfds/the first Tlock on it at the limit: ENOLCK (%d)", err);
    /* another session has its own budget */
    err = th_walk1(b, TF(0), TF(1), "d");
    err = err ? err : th_lopen(b, TF(1), P9_DOTL_RDONLY);
    tap_ok(err == 0, "heldfds/a second client opens a directory (%d)", err);
    err = tlcreate(b, TF(0), TF(2), "made-by-b");
    tap_ok(err == 0, "heldfds/a second client creates a file (%d)", err);
    /* a clunk gives one back */
    th_clunk(a, TF(3000));
    err = tlcreate(a, TF(0), TF(3), "made-after-clunk");
    tap_ok(err == 0, "heldfds/after a clunk the session creates again (%d)",
           err);
    err = th_walk1(a, TF(0), TF(4), "d");
    err = err ? err : th_lopen(a, TF(4), P9_DOTL_RDONLY);
    tap_ok(err == -EMFILE, "heldfds/and is at the limit again (%d)", err);
    p9c_close(a);
    p9c_close(b);
    /* a closed session gives everything back */
    a = attach(TF(0));
    opened = 0;
    for (int i = 0; i < SESSION_FDS; i++) {
        err = th_walk1(a, TF(0), TF(3000 + i), "d");
        err = err ? err : th_lopen(a, TF(3000 + i), P9_DOTL_RDONLY);
        opened += err == 0;
    }
    tap_ok(opened == SESSION_FDS,
           "heldfds/a new session holds %d directories again (%d)", SESSION_FDS,
           opened);
    p9c_close(a);
    snprintf(path, sizeof(path), "%s/made-by-b", exdir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/made-after-clunk", exdir);
    unlink(path);
}

/* ---- the defaults ---------------------------------------------------------- */

#define NCLONE 100000

/*
 * With the default limits: 100,000 fids are fine and cheap, and a client
 * taking xattr snapshots until it is refused pins no more than 16 MiB.
 */
static void
test_defaults(struct th_export *ex)
{
    struct th_srv *def;
    struct th_srv *keep = srv;
    struct p9c_conn *a;
    long rss0;
    long rss1;
    long rss2;
    int made;
    int snaps = 0;
    int err = 0;

    th_config_hook = NULL;
    def = th_start(vfsd, ex, 1, NULL);
    (void)keep;
    srv = def; /* for attach() and server_rss_kb() */
    a = attach(TF(0));
    rss0 = server_rss_kb();
    made = fill(a, 1, NCLONE, &err);
    rss1 = server_rss_kb();
    tap_ok(made == NCLONE, "defaults/%d fids (%d, %d): %ld bytes each", NCLONE,
           made, err, made ? (rss1 - rss0) * 1024 / made : 0);
    err = th_walk1(a, TF(0), TF(NCLONE + 1), "x");
    for (int i = 0; i < 1000 && err == 0; i++) {
        err =
            xattrwalk(a, TF(NCLONE + 1), TF(NCLONE + 2 + i), "user.big", NULL);
        snaps += err == 0;
    }
    rss2 = server_rss_kb();
    tap_ok(err == -ENOMEM && snaps == (16 << 20) / XVAL,
           "defaults/60 kB snapshots until ENOMEM: %d (%d)", snaps, err);
    tap_ok(rss2 - rss1 < 20 * 1024,
           "defaults/they grow the server by %ld kB (< 20 MiB)", rss2 - rss1);
    p9c_close(a);
    th_stop(def);
    srv = keep;
}

int
main(int argc, char **argv)
{
    struct th_export ex = {.name = NULL, .path = exdir, .ro = false};
    static const char *const args[] = {"--max-fids",
                                       "3000",
                                       "--max-fids-total",
                                       "5000",
                                       "--session-mem",
                                       "4",
                                       "--max-locks",
                                       "64",
                                       "--session-fds",
                                       "700",
                                       NULL};
    static uint8_t big[XVAL];
    struct rlimit rl;
    char path[PATH_MAX + 32];
    char *base;

    vfsd = th_mode(argc, argv);
    /* many open directories at once (in-process) */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* 60 kB user xattrs: tmpfs (Linux >= 6.6), XFS, btrfs take them;
     * ext4 without ea_inode does not */
    memset(big, 'v', sizeof(big));
    base = strdup("/dev/shm/vfst-limits-XXXXXX");
    if (base == NULL || mkdtemp(base) == NULL) {
        free(base);
        base = th_mkdtemp("limits");
    }
    snprintf(exdir, sizeof(exdir), "%s", base);
    snprintf(path, sizeof(path), "%s/x", exdir);
    th_write_file(path, "x", 1);
    if (setxattr(path, "user.big", big, sizeof(big), 0) < 0) {
        tap_diag("a 60 kB user xattr in %s: %s", exdir, strerror(errno));
        th_rmtree(base);
        free(base);
        return 99;
    }
    snprintf(path, sizeof(path), "%s/y", exdir);
    th_write_file(path, "y", 1);
    snprintf(path, sizeof(path), "%s/lk", exdir);
    th_write_file(path, "lock", 4);
    snprintf(path, sizeof(path), "%s/d", exdir);
    mkdir(path, 0755);
    for (int i = 0; i < NDIRENT; i++) {
        snprintf(path, sizeof(path), "%s/d/entry-with-a-long-name-%05d", exdir,
                 i);
        th_write_file(path, "", 0);
    }

    th_config_hook = config_hook;
    srv = th_start(vfsd, &ex, 1, args);
    /* the RSS checks first, before freed memory sits in the heap */
    test_readdir();
    test_xattr_snapshots();
    test_xattr_values();
    test_fids();
    test_locks();
    test_held_fds();
    tap_ok(th_alive(srv, ""), "the server is alive and serving");
    th_stop(srv);
    test_defaults(&ex); /* a fresh virtfsd: its own RSS */
    th_rmtree(base);
    free(base);
    return tap_done();
}
