/* SPDX-License-Identifier: MIT */
/*
 * Session and protocol tests through libp9c against the full server
 * (in-process over a socketpair, or a spawned virtfsd with argv[1]):
 * version, auth, attach, walk rules, every operation end to end, fids that
 * survive renames, open-unlinked files, the read-only export, unknown fids.
 */
#include "harness.h"

#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

static const char *vfsd;
static char *base;
static char exdir[PATH_MAX];
static char rodir[PATH_MAX];

static void
hpath(char *buf, const char *dir, const char *rel)
{
    snprintf(buf, PATH_MAX, "%s/%s", dir, rel);
}

/* ---- version / auth / attach -------------------------------------------------- */

static int
raw_version(struct p9c_conn *c, uint32_t msize, const char *ver,
            uint32_t *msize_out, char *ver_out, size_t vsize)
{
    struct p9_fcall t = {.type = P9_TVERSION};
    struct p9c_reply *r;
    int err;

    t.u.tversion.msize = msize;
    t.u.tversion.version = th_str(ver);
    t.tag = P9_NOTAG;
    err = th_rpc(c, &t, &r);
    if (err == 0) {
        *msize_out = r->f.u.rversion.msize;
        snprintf(ver_out, vsize, "%.*s", r->f.u.rversion.version.len,
                 r->f.u.rversion.version.s);
    }
    p9c_reply_free(r);
    return err;
}

static void
test_version(struct th_srv *s)
{
    struct p9c_conn *c = th_connect(s);
    struct p9_qid q;
    uint32_t ms = 0;
    char ver[64] = "";
    int err;

    err = raw_version(c, 8192, "9P2000.L", &ms, ver, sizeof(ver));
    tap_ok(err == 0 && ms == 8192 && strcmp(ver, "9P2000.L") == 0,
           "version/smaller_msize_kept (err %d msize %u '%s')", err, ms, ver);
    err = raw_version(c, 4u << 20, "9P2000.L", &ms, ver, sizeof(ver));
    tap_ok(err == 0 && ms == TH_MSIZE,
           "version/larger_msize_capped_to_server (%u)", ms);
    err = raw_version(c, 8192, "9P2000", &ms, ver, sizeof(ver));
    tap_ok(err == 0 && strcmp(ver, "unknown") == 0,
           "version/9P2000_unknown ('%s')", ver);
    err = raw_version(c, 8192, "9P2000.u", &ms, ver, sizeof(ver));
    tap_ok(err == 0 && strcmp(ver, "unknown") == 0,
           "version/9P2000.u_unknown ('%s')", ver);
    err = raw_version(c, 8192, "", &ms, ver, sizeof(ver));
    tap_ok(err == 0 && strcmp(ver, "unknown") == 0,
           "version/empty_unknown ('%s')", ver);
    err = raw_version(c, 100, "9P2000.L", &ms, ver, sizeof(ver));
    tap_ok(err < 0 || (ms >= P9_MIN_MSIZE && strcmp(ver, "unknown") != 0),
           "version/tiny_msize_refused_or_raised (err %d msize %u)", err, ms);

    /* second Tversion clunks every fid */
    err = raw_version(c, TH_MSIZE, "9P2000.L", &ms, ver, sizeof(ver));
    err = err ? err : th_attach(c, TF(1), "rw", &q);
    err = err ? err : th_walk1(c, TF(1), TF(2), NULL);
    tap_ok(err == 0 && th_getattr(c, TF(2), NULL) == 0,
           "version/fids_usable_before_reset (%d)", err);
    err = raw_version(c, TH_MSIZE, "9P2000.L", &ms, ver, sizeof(ver));
    tap_ok(err == 0 && th_getattr(c, TF(1), NULL) == -EBADF &&
               th_getattr(c, TF(2), NULL) == -EBADF,
           "version/second_tversion_clunks_all_fids");
    tap_ok(th_attach(c, TF(1), "rw", NULL) == 0,
           "version/fid_number_reusable_after_reset");
    p9c_close(c);
}

static void
test_auth_attach(struct th_srv *s)
{
    struct p9c_conn *c = th_connect(s);
    struct p9_fcall t = {.type = P9_TAUTH};
    struct p9_qid q1 = {0}; /* compared even when an attach failed */
    struct p9_qid q2 = {0};
    struct p9_rgetattr a;
    struct stat st = {0};
    char path_slash[PATH_MAX + 2];
    int err;

    p9c_version(c, TH_MSIZE);
    t.u.tauth.afid = TF(9);
    t.u.tauth.uname = th_str("");
    t.u.tauth.aname = th_str("");
    t.u.tauth.n_uname = 0;
    err = th_rpc(c, &t, NULL);
    tap_ok(err == -EOPNOTSUPP, "auth/eopnotsupp (%d)", err);

    err = th_attach(c, TF(1), "rw", &q1);
    tap_ok(err == 0 && (q1.type & P9_QTDIR), "attach/by_name (%d)", err);
    err = th_attach(c, TF(2), exdir, &q2);
    tap_ok(err == 0 && q2.path == q1.path, "attach/by_path (%d)", err);
    snprintf(path_slash, sizeof(path_slash), "%s/", exdir);
    err = th_attach(c, TF(3), path_slash, NULL);
    tap_ok(err == 0, "attach/by_path_trailing_slash (%d)", err);
    err = th_attach(c, TF(4), "ro", &q2);
    tap_ok(err == 0 && q2.path != q1.path, "attach/second_export (%d)", err);
    err = th_attach(c, TF(5), "nosuch", NULL);
    tap_ok(err < 0 && th_getattr(c, TF(5), NULL) == -EBADF,
           "attach/unknown_export_refused (%d)", err);
    err = th_attach(c, TF(6), "", NULL);
    tap_ok(err < 0, "attach/empty_aname_ambiguous_with_two_exports (%d)", err);
    err = th_attach(c, TF(7), "/", NULL);
    tap_ok(err < 0, "attach/root_path_refused (%d)", err);
    err = th_attach(c, TF(1), "rw", NULL);
    tap_ok(err < 0, "attach/fid_in_use_refused (%d)", err);
    t.type = P9_TATTACH;
    t.u.tattach.fid = TF(8);
    t.u.tattach.afid = TF(1);
    t.u.tattach.uname = th_str("");
    t.u.tattach.aname = th_str("rw");
    t.u.tattach.n_uname = (uint32_t)getuid();
    err = th_rpc(c, &t, NULL);
    tap_ok(err < 0, "attach/afid_not_nofid_refused (%d)", err);

    err = th_getattr(c, TF(1), &a);
    stat(exdir, &st);
    tap_ok(err == 0 && a.qid.path == q1.path && S_ISDIR(a.mode) &&
               a.nlink == st.st_nlink && a.mtime_sec == (uint64_t)st.st_mtime,
           "attach/root_is_export_dir");
    p9c_close(c);
}

static void
test_attach_single(const char *dir)
{
    struct th_export ex = {NULL, dir, false};
    struct th_srv *s = th_start(vfsd, &ex, 1, NULL);
    struct p9c_conn *c = th_connect(s);
    struct p9_qid q;
    int err;

    p9c_version(c, TH_MSIZE);
    err = th_attach(c, TF(1), "", &q);
    tap_ok(err == 0 && (q.type & P9_QTDIR),
           "attach/empty_aname_single_export (%d)", err);
    err = th_attach(c, TF(2), "other", NULL);
    tap_ok(err < 0, "attach/unknown_name_single_export (%d)", err);
    p9c_close(c);
    tap_ok(th_stop(s) == 0, "attach/single_export_server_stops_cleanly");
}

/* ---- walk -------------------------------------------------------------------- */

static void
test_walk(struct p9c_conn *c)
{
    struct p9_qid root = {0};
    struct p9_qid q[P9_MAXWELEM];
    struct p9_rgetattr a;
    char p[PATH_MAX];
    int n;

    hpath(p, exdir, "w");
    mkdir(p, 0755);
    hpath(p, exdir, "w/sub");
    mkdir(p, 0755);
    hpath(p, exdir, "w/sub/file");
    th_write_file(p, "x", 1);

    th_attach(c, TF(100), "rw", &root);
    n = th_walk(c, TF(100), TF(101), 0, NULL, NULL);
    tap_ok(n == 0 && th_getattr(c, TF(101), &a) == 0 && a.qid.path == root.path,
           "walk/nwname0_clones (%d)", n);
    n = th_walk(c, TF(100), TF(101), 0, NULL, NULL);
    tap_ok(n < 0, "walk/newfid_in_use_refused (%d)", n);
    th_clunk(c, TF(101));

    {
        const char *names[] = {"w", "sub", "file"};

        n = th_walk(c, TF(100), TF(102), 3, names, q);
        tap_ok(n == 3 && (q[0].type & P9_QTDIR) && (q[1].type & P9_QTDIR) &&
                   !(q[2].type & P9_QTDIR) && th_getattr(c, TF(102), &a) == 0 &&
                   a.size == 1,
               "walk/three_elements (%d)", n);
        th_clunk(c, TF(102));
    }
    {
        const char *names[] = {"w", "nope", "file"};

        n = th_walk(c, TF(100), TF(103), 3, names, q);
        tap_ok(n == 1 && (q[0].type & P9_QTDIR),
               "walk/partial_returns_qids_so_far (%d)", n);
        tap_ok(th_getattr(c, TF(103), NULL) == -EBADF,
               "walk/partial_leaves_newfid_unbound");
    }
    {
        const char *names[] = {"nope"};

        n = th_walk(c, TF(100), TF(104), 1, names, q);
        tap_ok(n == -ENOENT && th_getattr(c, TF(104), NULL) == -EBADF,
               "walk/first_element_missing_enoent (%d)", n);
    }
    {
        const char *names[] = {".."};
        const char *names3[] = {"..", "..", ".."};
        const char *names4[] = {"w", "..", "..", "w"};

        n = th_walk(c, TF(100), TF(105), 1, names, q);
        tap_ok(n == 1 && q[0].path == root.path,
               "walk/dotdot_from_root_stays_root (%d)", n);
        th_clunk(c, TF(105));
        n = th_walk(c, TF(100), TF(105), 3, names3, q);
        tap_ok(n == 3 && q[2].path == root.path &&
                   th_getattr(c, TF(105), &a) == 0 && a.qid.path == root.path,
               "walk/dotdot_x3_from_root_stays_root (%d)", n);
        th_clunk(c, TF(105));
        n = th_walk(c, TF(100), TF(105), 4, names4, q);
        tap_ok(n == 4 && q[1].path == root.path && q[2].path == root.path &&
                   q[3].path == q[0].path,
               "walk/dir_dotdot_dotdot_dir (%d)", n);
        th_clunk(c, TF(105));
    }
    {
        const char *bad[] = {"", ".", "w/sub", "w/sub/file"};

        for (int i = 0; i < 4; i++) {
            const char *two[] = {"w", bad[i]};

            n = th_walk(c, TF(100), TF(106), 1, &bad[i], q);
            tap_ok(n < 0 && th_getattr(c, TF(106), NULL) == -EBADF,
                   "walk/name_'%s'_refused (%d)", bad[i], n);
            n = th_walk(c, TF(100), TF(106), 2, two, q);
            tap_ok((n == 1 || n < 0) && th_getattr(c, TF(106), NULL) == -EBADF,
                   "walk/name_'%s'_as_second_element_partial (%d)", bad[i], n);
        }
    }
    {
        /* newfid == fid moves an unopened fid; an open fid cannot move */
        const char *names[] = {"w"};

        th_walk1(c, TF(100), TF(107), NULL);
        n = th_walk(c, TF(107), TF(107), 1, names, q);
        tap_ok(n == 1 && th_getattr(c, TF(107), &a) == 0 &&
                   a.qid.path == q[0].path,
               "walk/in_place (%d)", n);
        th_lopen(c, TF(107), P9_DOTL_RDONLY);
        names[0] = "sub";
        n = th_walk(c, TF(107), TF(107), 1, names, q);
        tap_ok(n < 0, "walk/in_place_on_open_fid_refused (%d)", n);
        n = th_walk(c, TF(107), TF(108), 1, names, q);
        tap_ok(n == 1, "walk/from_open_fid_to_new_fid (%d)", n);
        th_clunk(c, TF(107));
        th_clunk(c, TF(108));
    }
    {
        /* nwname 17: hand-made frame */
        struct p9_fcall t = {.type = P9_TWALK};
        const char *names[16];
        uint8_t *f;
        uint8_t *f2;
        size_t len;
        struct p9c_reply *r = NULL;
        int err;

        for (int i = 0; i < 16; i++) {
            names[i] = "..";
            t.u.twalk.wname[i] = th_str(names[i]);
        }
        t.u.twalk.fid = TF(100);
        t.u.twalk.newfid = TF(109);
        t.u.twalk.nwname = 16;
        f = th_frame(&t, 77, &len);
        f2 = malloc(len + 4);
        memcpy(f2, f, len);
        memcpy(f2 + len, "\x02\x00..", 4);
        th_put32(f2, (uint32_t)len + 4);
        f2[15] = 17; /* size[4] type tag[2] fid[4] newfid[4] nwname[2] */
        f2[16] = 0;
        err = p9c_rpc_raw(c, f2, len + 4, &r);
        tap_ok((err == 0 && r->f.type == P9_RLERROR &&
                r->f.u.rlerror.ecode == EPROTO) ||
                   (err < 0 && err != -ETIMEDOUT),
               "walk/nwname_17_eproto_or_closed (err %d type %d)", err,
               r ? r->f.type : -1);
        p9c_reply_free(r);
        free(f);
        free(f2);
        if (err == 0) {
            tap_ok(th_getattr(c, TF(109), NULL) == -EBADF,
                   "walk/nwname_17_binds_nothing");
        }
    }
    th_clunk(c, TF(100));
}

/* th_mount on the test's two-export server */
static struct th_srv *cur_srv;

static int
th_mount_any(struct p9c_conn **c, struct p9c_fid **root)
{
    return th_mount(cur_srv, "rw", c, root);
}

/* ---- every operation end to end ---------------------------------------------- */

static void
test_ops(struct p9c_fid *root)
{
    struct p9c_fid *f = NULL;
    struct p9c_fid *g = NULL;
    struct p9c_fid *d = NULL;
    struct p9_rgetattr a;
    struct p9_qid q;
    struct stat st;
    char p[PATH_MAX];
    char p2[PATH_MAX];
    char buf[256];
    static uint8_t big[200000];
    static uint8_t back[200000];
    ssize_t n;
    int err;

    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (uint8_t)(i * 7 + i / 1000);
    }
    /* lcreate + write + read */
    p9c_walk(root, "", &f);
    err = p9c_create(f, "file", P9_DOTL_RDWR, 0640, (uint32_t)getgid());
    hpath(p, exdir, "file");
    /* stat first: tap_ok's arguments are evaluated in no set order, so
     * st.st_mode in the message could be read before a stat() in cond */
    if (stat(p, &st) < 0) {
        st.st_mode = 0;
    }
    tap_ok(err == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0640,
           "lcreate/creates_with_mode (%d, mode %o)", err,
           (unsigned)st.st_mode);
    n = p9c_pwrite(f, big, sizeof(big), 0);
    tap_ok(n == (ssize_t)sizeof(big), "write/200k_split_over_msize (%zd)", n);
    memset(back, 0, sizeof(back));
    n = p9c_pread(f, back, sizeof(back), 0);
    tap_ok(n == (ssize_t)sizeof(big) && memcmp(back, big, sizeof(big)) == 0,
           "read/200k_roundtrip (%zd)", n);
    n = p9c_pread(f, back, 100, sizeof(big) - 10);
    tap_ok(n == 10 && memcmp(back, big + sizeof(big) - 10, 10) == 0,
           "read/short_at_eof (%zd)", n);
    n = p9c_pread(f, back, 100, sizeof(big) + 5);
    tap_ok(n == 0, "read/past_eof_zero (%zd)", n);
    {
        int fd = open(p, O_RDONLY);
        ssize_t hn = read(fd, back, sizeof(back));

        close(fd);
        tap_ok(hn == (ssize_t)sizeof(big) &&
                   memcmp(back, big, sizeof(big)) == 0,
               "write/host_sees_data");
    }
    err = p9c_getattr(f, P9_GETATTR_ALL, &a);
    tap_ok(err == 0 && a.size == sizeof(big) && S_ISREG(a.mode) &&
               (a.mode & 07777) == 0640 && a.qid.path == f->qid.path &&
               (a.valid & P9_GETATTR_BASIC) == P9_GETATTR_BASIC,
           "getattr/size_mode_ino (%d size %llu)", err,
           (unsigned long long)a.size);
    err = p9c_create(f, "again", P9_DOTL_RDWR, 0640, (uint32_t)-1);
    tap_ok(err < 0, "lcreate/on_open_fid_refused (%d)", err);
    g = NULL;
    p9c_walk(root, "", &g);
    err = p9c_create(g, "file", P9_DOTL_RDWR | P9_DOTL_CREATE | P9_DOTL_EXCL,
                     0600, (uint32_t)-1);
    tap_ok(err == -EEXIST, "lcreate/excl_existing_eexist (%d)", err);
    p9c_clunk(g);

    /* setattr: truncate, mode, times */
    {
        struct p9_tsetattr sa = {0};

        sa.valid = P9_SETATTR_SIZE;
        sa.size = 5;
        err = p9c_setattr(f, &sa);
        stat(p, &st);
        tap_ok(err == 0 && st.st_size == 5, "setattr/truncate (%d, %lld)", err,
               (long long)st.st_size);
        sa.valid = P9_SETATTR_MODE;
        sa.mode = 0604;
        err = p9c_setattr(f, &sa);
        stat(p, &st);
        tap_ok(err == 0 && (st.st_mode & 07777) == 0604,
               "setattr/mode (%d, %o)", err, (unsigned)st.st_mode);
        sa.valid = P9_SETATTR_ATIME | P9_SETATTR_ATIME_SET | P9_SETATTR_MTIME |
                   P9_SETATTR_MTIME_SET;
        sa.atime_sec = 1000000000;
        sa.atime_nsec = 5;
        sa.mtime_sec = 1200000000;
        sa.mtime_nsec = 7000;
        err = p9c_setattr(f, &sa);
        stat(p, &st);
        tap_ok(err == 0 && st.st_atim.tv_sec == 1000000000 &&
                   st.st_atim.tv_nsec == 5 && st.st_mtim.tv_sec == 1200000000 &&
                   st.st_mtim.tv_nsec == 7000,
               "setattr/times_set (%d, %ld %ld)", err, (long)st.st_atim.tv_sec,
               (long)st.st_mtim.tv_sec);
        err = p9c_getattr(f, P9_GETATTR_ALL, &a);
        tap_ok(err == 0 && a.mtime_sec == 1200000000 && a.mtime_nsec == 7000 &&
                   a.size == 5,
               "getattr/sees_setattr");
        sa.valid = P9_SETATTR_MTIME; /* now */
        err = p9c_setattr(f, &sa);
        stat(p, &st);
        tap_ok(err == 0 && st.st_mtim.tv_sec > 1600000000,
               "setattr/mtime_now (%d)", err);
    }
    err = p9c_fsync(f, false);
    tap_ok(err == 0, "fsync/ok (%d)", err);
    err = p9c_fsync(f, true);
    tap_ok(err == 0, "fsync/datasync_ok (%d)", err);

    /* mkdir / mknod / symlink / readlink / link */
    err = p9c_mkdir(root, "dir", 0750, (uint32_t)-1, &q);
    hpath(p2, exdir, "dir");
    tap_ok(err == 0 && (q.type & P9_QTDIR) && stat(p2, &st) == 0 &&
               S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0750,
           "mkdir/creates (%d)", err);
    err = p9c_mkdir(root, "dir", 0750, (uint32_t)-1, &q);
    tap_ok(err == -EEXIST, "mkdir/existing_eexist (%d)", err);
    err = p9c_mknod(root, "fifo", S_IFIFO | 0644, 0, 0, (uint32_t)-1, &q);
    hpath(p2, exdir, "fifo");
    tap_ok(err == 0 && lstat(p2, &st) == 0 && S_ISFIFO(st.st_mode),
           "mknod/fifo (%d)", err);
    err = p9c_symlink(root, "sl", "some/where/../x", (uint32_t)-1, &q);
    hpath(p2, exdir, "sl");
    n = readlink(p2, buf, sizeof(buf) - 1);
    tap_ok(err == 0 && (q.type & P9_QTSYMLINK) && n == 15 &&
               memcmp(buf, "some/where/../x", 15) == 0,
           "symlink/creates_verbatim (%d)", err);
    {
        struct p9c_fid *s = NULL;

        err = p9c_walk(root, "sl", &s);
        n = err == 0 ? p9c_readlink(s, buf, sizeof(buf)) : err;
        tap_ok(n == 15 && strcmp(buf, "some/where/../x") == 0,
               "readlink/returns_target (%zd)", n);
        p9c_clunk(s);
    }
    err = p9c_link(root, f, "hard");
    hpath(p2, exdir, "hard");
    {
        struct stat st2;

        stat(p, &st);
        tap_ok(err == 0 && stat(p2, &st2) == 0 && st2.st_ino == st.st_ino &&
                   st.st_nlink == 2,
               "link/hard_link (%d)", err);
    }

    /* renameat / rename / unlinkat */
    p9c_walk(root, "dir", &d);
    err = p9c_renameat(root, "hard", d, "moved");
    hpath(p2, exdir, "dir/moved");
    hpath(p, exdir, "hard");
    tap_ok(err == 0 && th_exists(p2) && !th_exists(p),
           "renameat/into_subdir (%d)", err);
    hpath(p, exdir, "file");
    tap_ok(th_exists(p), "renameat/other_link_intact");
    {
        struct p9c_fid *m = NULL;

        p9c_walk(root, "dir/moved", &m);
        err = p9c_rename(m, root, "renamed");
        hpath(p2, exdir, "renamed");
        tap_ok(err == 0 && th_exists(p2), "rename/moves_object (%d)", err);
        err = p9c_getattr(m, P9_GETATTR_BASIC, &a);
        tap_ok(err == 0 && a.nlink == 2, "rename/fid_still_valid (%d)", err);
        p9c_clunk(m);
    }
    err = p9c_unlinkat(root, "renamed", 0);
    tap_ok(err == 0 && !th_exists(p2), "unlinkat/file (%d)", err);
    err = p9c_unlinkat(root, "renamed", 0);
    tap_ok(err == -ENOENT, "unlinkat/missing_enoent (%d)", err);
    hpath(p2, exdir, "dir/inner");
    th_write_file(p2, "z", 1);
    err = p9c_unlinkat(root, "dir", 0);
    tap_ok(err < 0 && th_exists(p2), "unlinkat/dir_without_removedir (%d)",
           err);
    err = p9c_unlinkat(root, "dir", P9_DOTL_AT_REMOVEDIR);
    tap_ok(err == -ENOTEMPTY, "unlinkat/removedir_nonempty_enotempty (%d)",
           err);
    err = p9c_unlinkat(d, "inner", 0);
    err = err ? err : p9c_unlinkat(root, "dir", P9_DOTL_AT_REMOVEDIR);
    hpath(p2, exdir, "dir");
    tap_ok(err == 0 && !th_exists(p2), "unlinkat/removedir_empty (%d)", err);
    err = p9c_unlinkat(root, "file", P9_DOTL_AT_REMOVEDIR);
    tap_ok(err == -ENOTDIR, "unlinkat/removedir_on_file_enotdir (%d)", err);
    err = p9c_unlinkat(root, "file", 0x1234);
    tap_ok(err == -EINVAL, "unlinkat/bad_flags_einval (%d)", err);
    p9c_clunk(d);

    /* statfs */
    {
        struct p9_rstatfs sf;
        struct statvfs sv;

        err = p9c_statfs(root, &sf);
        statvfs(exdir, &sv);
        tap_ok(err == 0 && sf.bsize > 0 && sf.namelen >= 255 &&
                   sf.blocks == sv.f_blocks,
               "statfs/matches_host (%d)", err);
    }

    /* xattrs */
    {
        char v[64];

        err = p9c_xattr_set(f, "user.vfs", "value-1", 7, 0);
        n = getxattr(p, "user.vfs", v, sizeof(v));
        tap_ok(err == 0 && n == 7 && memcmp(v, "value-1", 7) == 0,
               "xattr/set_visible_on_host (%d)", err);
        err = p9c_xattr_set(f, "user.vfs", "x", 1, P9_XATTR_CREATE);
        tap_ok(err == -EEXIST, "xattr/create_existing_eexist (%d)", err);
        n = p9c_xattr_get(f, "user.vfs", v, sizeof(v));
        tap_ok(n == 7 && memcmp(v, "value-1", 7) == 0, "xattr/get (%zd)", n);
        n = p9c_xattr_get(f, "user.vfs", v, 3);
        tap_ok(n == -ERANGE, "xattr/get_small_buffer_erange (%zd)", n);
        n = p9c_xattr_list(f, buf, sizeof(buf));
        tap_ok(n > 0 && memmem(buf, (size_t)n, "user.vfs", 9) != NULL,
               "xattr/list (%zd)", n);
        err = p9c_xattr_remove(f, "user.vfs");
        n = getxattr(p, "user.vfs", v, sizeof(v));
        tap_ok(err == 0 && n < 0 && errno == ENODATA, "xattr/remove (%d)", err);
        n = p9c_xattr_get(f, "user.vfs", v, sizeof(v));
        tap_ok(n == -ENODATA, "xattr/get_missing_enodata (%zd)", n);
    }

    /* locks between two connections */
    {
        struct p9c_conn *c2;
        struct p9c_fid *r2;
        struct p9c_fid *f2 = NULL;
        struct p9c_flock l = {0};
        uint8_t status = 0xff;

        err = th_mount_any(&c2, &r2);
        err = err ? err : p9c_walk(r2, "file", &f2);
        err = err ? err : p9c_open(f2, P9_DOTL_RDWR);
        tap_ok(err == 0, "lock/second_connection_opens (%d)", err);
        l.type = P9_LOCK_TYPE_WRLCK;
        l.start = 0;
        l.length = 100;
        l.proc_id = 1;
        snprintf(l.client_id, sizeof(l.client_id), "conn-a");
        err = p9c_lock(f, &l, &status);
        tap_ok(err == 0 && status == P9_LOCK_SUCCESS,
               "lock/first_wrlck_success (%d, %u)", err, status);
        l.proc_id = 2;
        snprintf(l.client_id, sizeof(l.client_id), "conn-b");
        l.start = 50;
        l.length = 10;
        status = 0xff;
        err = p9c_lock(f2, &l, &status);
        tap_ok(err == 0 && status == P9_LOCK_BLOCKED,
               "lock/conflict_blocked (%d, %u)", err, status);
        l.type = P9_LOCK_TYPE_WRLCK;
        err = p9c_getlock(f2, &l);
        tap_ok(err == 0 && l.type == P9_LOCK_TYPE_WRLCK && l.start == 0 &&
                   l.length == 100,
               "getlock/reports_conflict (%d type %u %llu+%llu)", err, l.type,
               (unsigned long long)l.start, (unsigned long long)l.length);
        l.type = P9_LOCK_TYPE_WRLCK;
        l.start = 200;
        l.length = 10;
        err = p9c_getlock(f2, &l);
        tap_ok(err == 0 && l.type == P9_LOCK_TYPE_UNLCK,
               "getlock/free_range_unlck (%d type %u)", err, l.type);
        l.type = P9_LOCK_TYPE_UNLCK;
        l.start = 0;
        l.length = 100;
        err = p9c_lock(f, &l, &status);
        tap_ok(err == 0 && status == P9_LOCK_SUCCESS, "lock/unlock (%d)", err);
        l.type = P9_LOCK_TYPE_WRLCK;
        l.start = 50;
        l.length = 10;
        err = p9c_lock(f2, &l, &status);
        tap_ok(err == 0 && status == P9_LOCK_SUCCESS,
               "lock/after_unlock_success (%d, %u)", err, status);
        l.type = 7;
        err = p9c_lock(f2, &l, &status);
        tap_ok(err == -EINVAL, "lock/bad_type_einval (%d)", err);
        p9c_clunk(f2);
        p9c_clunk(r2);
        p9c_close(c2);
    }

    p9c_clunk(f);
}

/* ---- readdir of a big directory --------------------------------------------- */

static int
parse_dirents(const uint8_t *b, size_t len, char names[][16], uint64_t *offs,
              int max)
{
    size_t pos = 0;
    int n = 0;

    while (pos < len) {
        uint16_t nl;

        if (len - pos < 24 || n == max) {
            return -1;
        }
        nl = (uint16_t)(b[pos + 22] | b[pos + 23] << 8);
        if (len - pos - 24 < nl || nl >= 16) {
            return -1;
        }
        memcpy(&offs[n], b + pos + 13, 8);
        memcpy(names[n], b + pos + 24, nl);
        names[n][nl] = '\0';
        n++;
        pos += 24 + nl;
    }
    return n;
}

static void
test_readdir_big(struct p9c_fid *root)
{
    enum { NFILES = 10000 };
    char p[PATH_MAX];
    static unsigned char seen[NFILES];
    char names[64][16];
    uint64_t offs[64];
    uint8_t buf[512];
    struct p9c_fid *d = NULL;
    uint64_t off = 0;
    uint64_t mid_off = 0;
    char mid_next[16] = "";
    int dups = 0;
    int total = 0;
    int dots = 0;
    int calls = 0;
    bool bad = false;
    int err;

    hpath(p, exdir, "big");
    mkdir(p, 0755);
    for (int i = 0; i < NFILES; i++) {
        int fd;

        snprintf(p, sizeof(p), "%s/big/e%05d", exdir, i);
        fd = open(p, O_CREAT | O_WRONLY, 0644);
        close(fd);
    }
    err = p9c_walk(root, "big", &d);
    err = err ? err : p9c_open(d, P9_DOTL_RDONLY | P9_DOTL_DIRECTORY);
    tap_ok(err == 0, "readdir/open_big_dir (%d)", err);
    memset(seen, 0, sizeof(seen));
    for (;;) {
        ssize_t n = p9c_readdir(d, off, buf, 200);
        int k;

        calls++;
        if (n <= 0) {
            bad = bad || n < 0; /* keep a bad name seen earlier */
            break;
        }
        k = parse_dirents(buf, (size_t)n, names, offs, 64);
        if (k <= 0) {
            bad = true;
            break;
        }
        for (int i = 0; i < k; i++) {
            int idx;

            if (!strcmp(names[i], ".") || !strcmp(names[i], "..")) {
                dots++;
                continue;
            }
            if (sscanf(names[i], "e%05d", &idx) != 1 || idx < 0 ||
                idx >= NFILES) {
                bad = true;
                continue;
            }
            if (seen[idx]++) {
                dups++;
            }
            total++;
            if (total == NFILES / 2) {
                mid_off = offs[i];
            } else if (total == NFILES / 2 + 1) {
                snprintf(mid_next, sizeof(mid_next), "%s", names[i]);
            }
        }
        off = offs[k - 1];
        if (calls > 100000) {
            bad = true;
            break;
        }
    }
    tap_ok(!bad && total == NFILES && dups == 0 && dots == 2,
           "readdir/10k_entries_small_count_exact (total %d dups %d dots "
           "%d calls %d)",
           total, dups, dots, calls);
    {
        ssize_t n = p9c_readdir(d, mid_off, buf, 200);
        int k = n > 0 ? parse_dirents(buf, (size_t)n, names, offs, 64) : -1;

        tap_ok(k > 0 && strcmp(names[0], mid_next) == 0,
               "readdir/resume_from_saved_offset ('%s' vs '%s')",
               k > 0 ? names[0] : "?", mid_next);
        n = p9c_readdir(d, off, buf, sizeof(buf));
        tap_ok(n == 0, "readdir/end_offset_gives_empty (%zd)", n);
        n = p9c_readdir(d, 0, buf, 20);
        tap_ok(n <= 0, "readdir/count_smaller_than_entry (%zd)", n);
    }
    {
        struct p9c_fid *fl = NULL;
        ssize_t n;

        p9c_walk(root, "big/e00001", &fl);
        p9c_open(fl, P9_DOTL_RDONLY);
        n = p9c_readdir(fl, 0, buf, sizeof(buf));
        tap_ok(n < 0, "readdir/on_file_refused (%zd)", n);
        p9c_clunk(fl);
    }
    p9c_clunk(d);
    hpath(p, exdir, "big");
    th_rmtree(p);
}

/* ---- fids across renames, open-unlinked files -------------------------------- */

static void
test_rename_survival(struct p9c_fid *root)
{
    struct p9c_fid *x = NULL;
    struct p9c_fid *y = NULL;
    struct p9_rgetattr a;
    char p[PATH_MAX];
    char buf[64];
    ssize_t n;
    int err;

    hpath(p, exdir, "r1");
    mkdir(p, 0755);
    hpath(p, exdir, "r1/file");
    th_write_file(p, "before", 6);
    p9c_walk(root, "r1/file", &x);
    p9c_walk(root, "r1", &y);
    err = p9c_renameat(root, "r1", root, "r2");
    tap_ok(err == 0, "fid_rename/renameat_parent (%d)", err);
    err = p9c_getattr(x, P9_GETATTR_BASIC, &a);
    tap_ok(err == 0 && a.size == 6, "fid_rename/getattr_after (%d)", err);
    err = p9c_open(x, P9_DOTL_RDWR);
    n = err ? err : p9c_pread(x, buf, sizeof(buf), 0);
    tap_ok(n == 6 && memcmp(buf, "before", 6) == 0,
           "fid_rename/open_read_after (%zd)", n);
    n = p9c_pwrite(x, "AFTER", 5, 0);
    hpath(p, exdir, "r2/file");
    th_read_file(p, buf, sizeof(buf));
    tap_ok(n == 5 && strcmp(buf, "AFTERe") == 0,
           "fid_rename/write_lands_in_new_place ('%s')", buf);
    {
        struct p9c_fid *z = NULL;

        err = p9c_walk(y, "file", &z);
        tap_ok(err == 0, "fid_rename/walk_from_renamed_dir_fid (%d)", err);
        p9c_clunk(z);
    }
    /* Trename through a fid, then the old fid of the object */
    err = p9c_rename(y, root, "r3");
    hpath(p, exdir, "r3/file");
    tap_ok(err == 0 && th_exists(p), "fid_rename/trename_dir (%d)", err);
    n = p9c_pread(x, buf, sizeof(buf), 0);
    tap_ok(n == 6, "fid_rename/open_fid_after_second_rename (%zd)", n);
    p9c_clunk(x);
    p9c_clunk(y);
    hpath(p, exdir, "r3");
    th_rmtree(p);
}

static void
test_open_unlinked(struct p9c_fid *root)
{
    struct p9c_fid *f = NULL;
    struct p9_rgetattr a;
    struct p9_tsetattr sa = {0};
    char buf[64];
    ssize_t n;
    int err;

    p9c_walk(root, "", &f);
    err = p9c_create(f, "doomed", P9_DOTL_RDWR, 0644, (uint32_t)-1);
    n = p9c_pwrite(f, "0123456789", 10, 0);
    err = err ? err : p9c_unlinkat(root, "doomed", 0);
    tap_ok(err == 0 && n == 10, "unlinked/create_write_unlink (%d)", err);
    n = p9c_pwrite(f, "abc", 3, 10);
    tap_ok(n == 3, "unlinked/write (%zd)", n);
    n = p9c_pread(f, buf, sizeof(buf), 0);
    tap_ok(n == 13 && memcmp(buf, "0123456789abc", 13) == 0,
           "unlinked/read (%zd)", n);
    err = p9c_getattr(f, P9_GETATTR_ALL, &a);
    tap_ok(err == 0 && a.nlink == 0 && a.size == 13,
           "unlinked/getattr_nlink0 (%d, nlink %llu)", err,
           (unsigned long long)a.nlink);
    sa.valid = P9_SETATTR_SIZE;
    sa.size = 4;
    err = p9c_setattr(f, &sa);
    err = err ? err : p9c_getattr(f, P9_GETATTR_ALL, &a);
    tap_ok(err == 0 && a.size == 4, "unlinked/ftruncate (%d)", err);
    p9c_clunk(f);
}

/*
 * Errors of one request never leak into the next: after a Tread and a
 * Twrite that fail (directory, read-only fid, unopened fid), writes and
 * reads on freshly opened files succeed, many times over (a release build
 * once answered them with the old errno).
 */
static void
test_error_isolation(struct p9c_fid *root)
{
    int good = 0;
    int bad = 0;

    for (int round = 0; round < 20; round++) {
        struct p9c_fid *d = NULL;
        struct p9c_fid *ro = NULL;
        struct p9c_fid *un = NULL;
        struct p9c_fid *f = NULL;
        char name[32];
        char buf[8];
        ssize_t n;

        p9c_walk(root, "", &d);
        bad += p9c_open(d, P9_DOTL_RDONLY) == 0 &&
               p9c_pread(d, buf, sizeof(buf), 0) == -EISDIR;
        p9c_walk(root, "", &un);
        bad += p9c_pwrite(un, "x", 1, 0) == -EBADF;
        snprintf(name, sizeof(name), "iso%d", round);
        p9c_walk(root, "", &ro);
        if (p9c_create(ro, name, P9_DOTL_RDWR, 0644, (uint32_t)-1) == 0) {
            p9c_clunk(ro);
            ro = NULL;
            p9c_walk(root, name, &ro);
            bad += p9c_open(ro, P9_DOTL_RDONLY) == 0 &&
                   p9c_pwrite(ro, "x", 1, 0) == -EBADF;
        }
        p9c_walk(root, name, &f);
        n = p9c_open(f, P9_DOTL_RDWR) == 0 ? p9c_pwrite(f, "abcd", 4, 0) : -1;
        good += n == 4 && p9c_pread(f, buf, sizeof(buf), 0) == 4 &&
                memcmp(buf, "abcd", 4) == 0;
        p9c_clunk(f);
        p9c_clunk(ro);
        p9c_clunk(un);
        p9c_clunk(d);
        p9c_unlinkat(root, name, 0);
    }
    tap_ok(bad == 60, "errors/failed_io_as_expected (%d of 60)", bad);
    tap_ok(good == 20, "errors/later_io_unaffected (%d of 20)", good);
}

/* The core refuses a backend that lacks a mandatory op. */
static void
test_backend_contract(void)
{
    static const struct be_ops empty;
    struct pt_options po = {.root = exdir, .remap_devs = true};
    struct backend *pt = NULL;
    struct be_ops partial;
    struct backend be = {.ops = &empty};
    struct p9s_export ex = {NULL, exdir, false, &be};
    struct p9s_config cfg = {.msize = TH_MSIZE, .threads = 1};
    struct p9s_server *srv;

    srv = p9s_server_new(&cfg, &ex, 1);
    tap_ok(srv == NULL, "contract/empty_backend_refused");
    p9s_server_free(srv);
    if (pt_backend_new(&po, &pt) < 0) {
        tap_ok(false, "contract/passthrough_backend");
        return;
    }
    ex.be = pt;
    srv = p9s_server_new(&cfg, &ex, 1);
    tap_ok(srv != NULL, "contract/complete_backend_accepted");
    p9s_server_free(srv);
    partial = *pt->ops;
    partial.walk1 = NULL;
    be.ops = &partial;
    be.priv = pt->priv;
    ex.be = &be;
    srv = p9s_server_new(&cfg, &ex, 1);
    tap_ok(srv == NULL, "contract/backend_without_walk1_refused");
    p9s_server_free(srv);
    pt->ops->destroy(pt);
}

/* ---- read-only export ---------------------------------------------------------- */

static void
test_readonly(struct th_srv *s)
{
    struct p9c_conn *c;
    struct p9c_fid *root;
    struct p9c_fid *f = NULL;
    struct p9c_fid *g = NULL;
    struct p9c_fid *d = NULL;
    struct p9_tsetattr sa = {0};
    char buf[64];
    uint64_t h0;
    uint64_t h1;
    int err;

    h0 = th_tree_hash(rodir);
    err = th_mount(s, "ro", &c, &root);
    tap_ok(err == 0, "ro/attach (%d)", err);
    if (err < 0) {
        return;
    }
    p9c_walk(root, "", &g);
    err = p9c_create(g, "new", P9_DOTL_RDWR, 0644, (uint32_t)-1);
    tap_ok(err == -EROFS, "ro/lcreate_erofs (%d)", err);
    p9c_clunk(g);
    err = p9c_mkdir(root, "nd", 0755, (uint32_t)-1, NULL);
    tap_ok(err == -EROFS, "ro/mkdir_erofs (%d)", err);
    err = p9c_mknod(root, "nf", S_IFIFO | 0644, 0, 0, (uint32_t)-1, NULL);
    tap_ok(err == -EROFS, "ro/mknod_erofs (%d)", err);
    err = p9c_symlink(root, "ns", "x", (uint32_t)-1, NULL);
    tap_ok(err == -EROFS, "ro/symlink_erofs (%d)", err);
    p9c_walk(root, "f", &f);
    p9c_walk(root, "d", &d);
    err = p9c_link(root, f, "nl");
    tap_ok(err == -EROFS, "ro/link_erofs (%d)", err);
    err = p9c_renameat(root, "f", root, "f2");
    tap_ok(err == -EROFS, "ro/renameat_erofs (%d)", err);
    err = p9c_renameat(d, "g", root, "g2");
    tap_ok(err == -EROFS, "ro/renameat_from_subdir_erofs (%d)", err);
    err = p9c_rename(f, d, "f3");
    tap_ok(err == -EROFS, "ro/rename_erofs (%d)", err);
    err = p9c_unlinkat(root, "f", 0);
    tap_ok(err == -EROFS, "ro/unlinkat_erofs (%d)", err);
    err = p9c_unlinkat(root, "e", P9_DOTL_AT_REMOVEDIR);
    tap_ok(err == -EROFS, "ro/unlinkat_removedir_erofs (%d)", err);
    sa.valid = P9_SETATTR_SIZE;
    err = p9c_setattr(f, &sa);
    tap_ok(err == -EROFS, "ro/setattr_truncate_erofs (%d)", err);
    sa.valid = P9_SETATTR_MODE;
    sa.mode = 0777;
    err = p9c_setattr(f, &sa);
    tap_ok(err == -EROFS, "ro/setattr_mode_erofs (%d)", err);
    sa.valid = P9_SETATTR_MTIME;
    err = p9c_setattr(d, &sa);
    tap_ok(err == -EROFS, "ro/setattr_mtime_erofs (%d)", err);
    err = p9c_xattr_set(f, "user.x", "1", 1, 0);
    tap_ok(err == -EROFS, "ro/xattrcreate_erofs (%d)", err);
    err = p9c_xattr_remove(f, "user.ro");
    tap_ok(err == -EROFS, "ro/xattr_remove_erofs (%d)", err);
    {
        static const uint32_t fl[] = {P9_DOTL_WRONLY, P9_DOTL_RDWR,
                                      P9_DOTL_RDONLY | P9_DOTL_TRUNC,
                                      P9_DOTL_WRONLY | P9_DOTL_APPEND};
        static const char *const fn[] = {"wronly", "rdwr", "trunc", "append"};

        for (int i = 0; i < 4; i++) {
            struct p9c_fid *o = NULL;

            p9c_walk(root, "f", &o);
            err = p9c_open(o, fl[i]);
            tap_ok(err == -EROFS, "ro/lopen_%s_erofs (%d)", fn[i], err);
            p9c_clunk(o);
        }
    }
    {
        struct p9c_fid *o = NULL;
        ssize_t n;

        p9c_walk(root, "f", &o);
        err = p9c_open(o, P9_DOTL_RDONLY);
        n = err ? err : p9c_pread(o, buf, sizeof(buf), 0);
        tap_ok(n == 7 && memcmp(buf, "ro-data", 7) == 0,
               "ro/lopen_rdonly_read_ok (%zd)", n);
        n = p9c_pwrite(o, "x", 1, 0);
        tap_ok(n < 0, "ro/write_on_rdonly_fid_refused (%zd)", n);
        n = p9c_xattr_get(o, "user.ro", buf, sizeof(buf));
        tap_ok(n == 1, "ro/xattr_get_ok (%zd)", n);
        p9c_clunk(o);
    }
    {
        struct p9c_fid *o = NULL;

        p9c_walk(root, "d/g", &o);
        err = p9c_remove(o);
        tap_ok(err == -EROFS, "ro/remove_erofs (%d)", err);
        o = NULL;
        err = p9c_walk(root, "d/g", &o);
        tap_ok(err == 0, "ro/remove_left_file (%d)", err);
        p9c_clunk(o);
    }
    {
        struct p9_rstatfs sf;

        tap_ok(p9c_statfs(root, &sf) == 0, "ro/statfs_ok");
    }
    p9c_clunk(f);
    p9c_clunk(d);
    p9c_clunk(root);
    p9c_close(c);
    h1 = th_tree_hash(rodir);
    tap_ok(h0 == h1 && h0 != 0, "ro/nothing_changed_on_disk");
}

static void
test_badfid(struct p9c_conn *c)
{
    struct p9_fcall t = {.type = P9_TREAD};
    int err;

    tap_ok(th_getattr(c, TF(5000), NULL) == -EBADF, "badfid/getattr_ebadf");
    tap_ok(th_walk1(c, TF(5000), TF(5001), NULL) == -EBADF,
           "badfid/walk_ebadf");
    tap_ok(th_lopen(c, TF(5000), 0) == -EBADF, "badfid/lopen_ebadf");
    tap_ok(th_clunk(c, TF(5000)) == -EBADF, "badfid/clunk_ebadf");
    t.u.tread.fid = TF(5000);
    t.u.tread.count = 10;
    err = th_rpc(c, &t, NULL);
    tap_ok(err == -EBADF, "badfid/read_ebadf (%d)", err);
    t.type = P9_TREMOVE;
    t.u.tremove.fid = TF(5000);
    err = th_rpc(c, &t, NULL);
    tap_ok(err == -EBADF, "badfid/remove_ebadf (%d)", err);
    t.type = P9_TMKDIR;
    t.u.tmkdir.dfid = TF(5000);
    t.u.tmkdir.name = th_str("x");
    err = th_rpc(c, &t, NULL);
    tap_ok(err == -EBADF, "badfid/mkdir_ebadf (%d)", err);
    /* read on an unopened fid; a fresh message: the Tmkdir name above
     * overlaps Tread's offset and left padding bytes in it */
    th_attach(c, TF(5002), "rw", NULL);
    t = (struct p9_fcall){.type = P9_TREAD};
    t.u.tread.fid = TF(5002);
    t.u.tread.count = 10;
    err = th_rpc(c, &t, NULL);
    tap_ok(err < 0, "badfid/read_unopened_refused (%d)", err);
    th_clunk(c, TF(5002));
    tap_ok(th_clunk(c, TF(5002)) == -EBADF, "badfid/double_clunk_ebadf");
}

int
main(int argc, char **argv)
{
    struct th_export ex[2];
    struct p9c_conn *c;
    struct p9c_fid *root;
    char p[PATH_MAX];
    char *single;
    int err;

    vfsd = th_mode(argc, argv);
    base = th_mkdtemp("session");
    snprintf(exdir, sizeof(exdir), "%s/rw", base);
    snprintf(rodir, sizeof(rodir), "%s/ro", base);
    mkdir(exdir, 0755);
    mkdir(rodir, 0755);
    hpath(p, rodir, "f");
    th_write_file(p, "ro-data", 7);
    setxattr(p, "user.ro", "1", 1, 0);
    hpath(p, rodir, "d");
    mkdir(p, 0755);
    hpath(p, rodir, "e");
    mkdir(p, 0755);
    hpath(p, rodir, "d/g");
    th_write_file(p, "g", 1);

    ex[0] = (struct th_export){"rw", exdir, false};
    ex[1] = (struct th_export){"ro", rodir, true};
    cur_srv = th_start(vfsd, ex, 2, NULL);

    test_backend_contract();
    test_version(cur_srv);
    test_auth_attach(cur_srv);
    single = th_mkdtemp("single");
    test_attach_single(single);
    th_rmtree(single);
    free(single);

    err = th_mount(cur_srv, "rw", &c, &root);
    tap_ok(err == 0, "mount/rw (%d)", err);
    if (err == 0) {
        test_walk(c);
        test_ops(root);
        test_readdir_big(root);
        test_rename_survival(root);
        test_open_unlinked(root);
        test_error_isolation(root);
        test_badfid(c);
        p9c_clunk(root);
        p9c_close(c);
    }
    test_readonly(cur_srv);
    tap_ok(th_alive(cur_srv, "rw"), "server/still_serving");
    err = th_stop(cur_srv);
    tap_ok(err == 0, "server/clean_stop (%d)", err);
    th_rmtree(base);
    free(base);
    return tap_done();
}
