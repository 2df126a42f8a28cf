/* SPDX-License-Identifier: MIT */
/*
 * Adversarial escape tests through the full server: '..' at the root,
 * '/' in names, symlinks that point outside (returned as symlinks; walking,
 * opening, creating, renaming, linking, truncating through them fails), a
 * directory swapped for a symlink between walk and use (deterministic and
 * in a tight race with a host thread).  After each group a sentinel
 * directory outside the export must be unchanged (names, modes, contents).
 *
 * Mutating requests are only ever aimed at the sentinel, never at /etc.
 */
#include "harness.h"

#include <sched.h>
#include <sys/xattr.h>

static const char *vfsd;
static struct th_srv *srv;
static char *base;
static char exdir[PATH_MAX];
static char outdir[PATH_MAX];
static uint64_t out_hash;

#define INSIDE "inside-data"
#define OUTSIDE "OUTSIDE-SECRET"

static void
hp(char *buf, const char *rel)
{
    snprintf(buf, PATH_MAX, "%s/%s", exdir, rel);
}

static char hp_tmp_buf[PATH_MAX];

static const char *
hp_tmp(const char *rel)
{
    hp(hp_tmp_buf, rel);
    return hp_tmp_buf;
}

static void
sentinel_check(const char *group)
{
    uint64_t h = th_tree_hash(outdir);

    tap_ok(h == out_hash && h != 0, "%s/sentinel_unchanged", group);
}

static void
test_dotdot_and_slash(struct p9c_conn *c)
{
    struct p9_qid root = {0};
    struct p9_qid q[P9_MAXWELEM];
    char p[PATH_MAX];
    int n;

    th_attach(c, TF(50), "", &root);
    {
        const char *names[] = {"..", "outside"};
        const char *names2[] = {"..", "..", "..", "..", "etc"};
        const char *names3[] = {"realdir", "..", "..", "outside"};

        n = th_walk(c, TF(50), TF(51), 2, names, q);
        tap_ok(n == 1 && q[0].path == root.path &&
                   th_getattr(c, TF(51), NULL) == -EBADF,
               "dotdot/parent_of_root_is_root (%d)", n);
        n = th_walk(c, TF(50), TF(51), 5, names2, q);
        tap_ok(n == 4 && q[3].path == root.path,
               "dotdot/many_dotdots_then_etc_fails (%d)", n);
        n = th_walk(c, TF(50), TF(51), 4, names3, q);
        tap_ok(n == 3 && q[2].path == root.path,
               "dotdot/down_up_up_stays_root (%d)", n);
    }
    {
        const char *bad[] = {"../outside", "/etc", "realdir/../../outside", "/",
                             "..//outside"};

        for (int i = 0; i < 5; i++) {
            n = th_walk(c, TF(50), TF(52), 1, &bad[i], q);
            tap_ok(n < 0 && th_getattr(c, TF(52), NULL) == -EBADF,
                   "slash/walk_'%s'_refused (%d)", bad[i], n);
        }
    }
    {
        struct p9_fcall t = {0};
        int err;

        th_walk1(c, TF(50), TF(53), NULL);
        err = th_lcreate(c, TF(53), "../outside/created", P9_DOTL_RDWR, 0644);
        tap_ok(err < 0, "slash/lcreate_dotdot_slash_refused (%d)", err);
        err = th_lcreate(c, TF(53), "..", P9_DOTL_RDWR, 0644);
        tap_ok(err < 0, "slash/lcreate_dotdot_refused (%d)", err);
        err = th_lcreate(c, TF(53), ".", P9_DOTL_RDWR, 0644);
        tap_ok(err < 0, "slash/lcreate_dot_refused (%d)", err);
        th_clunk(c, TF(53));

        t.type = P9_TMKDIR;
        t.u.tmkdir.dfid = TF(50);
        t.u.tmkdir.name = th_str("../outside/mk");
        t.u.tmkdir.mode = 0755;
        t.u.tmkdir.gid = (uint32_t)-1;
        err = th_rpc(c, &t, NULL);
        tap_ok(err < 0, "slash/mkdir_slash_refused (%d)", err);
        t.u.tmkdir.name = th_str("..");
        err = th_rpc(c, &t, NULL);
        tap_ok(err < 0, "slash/mkdir_dotdot_refused (%d)", err);

        t.type = P9_TSYMLINK;
        t.u.tsymlink.fid = TF(50);
        t.u.tsymlink.name = th_str("../outside/sl");
        t.u.tsymlink.symtgt = th_str("x");
        t.u.tsymlink.gid = (uint32_t)-1;
        err = th_rpc(c, &t, NULL);
        tap_ok(err < 0, "slash/symlink_name_slash_refused (%d)", err);

        t.type = P9_TRENAMEAT;
        t.u.trenameat.olddirfid = TF(50);
        t.u.trenameat.oldname = th_str("realdir/secret");
        t.u.trenameat.newdirfid = TF(50);
        t.u.trenameat.newname = th_str("x");
        err = th_rpc(c, &t, NULL);
        tap_ok(err < 0, "slash/renameat_oldname_slash_refused (%d)", err);
        t.u.trenameat.oldname = th_str("plain");
        t.u.trenameat.newname = th_str("../outside/stolen");
        err = th_rpc(c, &t, NULL);
        tap_ok(err < 0, "slash/renameat_newname_slash_refused (%d)", err);
        t.u.trenameat.newname = th_str("..");
        err = th_rpc(c, &t, NULL);
        tap_ok(err < 0, "slash/renameat_newname_dotdot_refused (%d)", err);

        t.type = P9_TUNLINKAT;
        t.u.tunlinkat.dirfd = TF(50);
        t.u.tunlinkat.name = th_str("../outside/secret");
        t.u.tunlinkat.flags = 0;
        err = th_rpc(c, &t, NULL);
        tap_ok(err < 0, "slash/unlinkat_slash_refused (%d)", err);
        t.u.tunlinkat.name = th_str("..");
        t.u.tunlinkat.flags = P9_DOTL_AT_REMOVEDIR;
        err = th_rpc(c, &t, NULL);
        tap_ok(err < 0, "slash/unlinkat_dotdot_refused (%d)", err);
    }
    hp(p, "plain");
    tap_ok(th_exists(p), "slash/plain_file_untouched");
    th_clunk(c, TF(50));
    sentinel_check("dotdot_slash");
}

static void
test_symlinks(struct p9c_fid *root)
{
    static const char *const links[] = {"link_etc", "link_up", "link_out",
                                        "rel_out", "link_secret"};
    char buf[PATH_MAX];
    int err;

    for (int i = 0; i < 5; i++) {
        struct p9c_fid *l = NULL;
        struct p9c_fid *t = NULL;
        struct p9_rgetattr a;
        char want[PATH_MAX];
        ssize_t n;

        hp(buf, links[i]);
        n = readlink(buf, want, sizeof(want) - 1);
        want[n > 0 ? n : 0] = '\0';
        err = p9c_walk(root, links[i], &l);
        tap_ok(err == 0 && (l->qid.type & P9_QTSYMLINK),
               "symlink/%s_walks_to_symlink (%d)", links[i], err);
        if (err < 0) {
            continue;
        }
        err = p9c_getattr(l, P9_GETATTR_BASIC, &a);
        tap_ok(err == 0 && S_ISLNK(a.mode), "symlink/%s_getattr_is_lnk",
               links[i]);
        n = p9c_readlink(l, buf, sizeof(buf));
        tap_ok(n > 0 && strcmp(buf, want) == 0,
               "symlink/%s_readlink_verbatim ('%s')", links[i], buf);
        err = p9c_walk(l, "passwd", &t);
        tap_ok(err < 0, "symlink/%s_walk_through_fails (%d)", links[i], err);
        p9c_clunk(t);
        t = NULL;
        err = p9c_walk(l, "secret", &t);
        tap_ok(err < 0, "symlink/%s_walk_to_secret_fails (%d)", links[i], err);
        p9c_clunk(t);
        t = NULL;
        p9c_walk(l, "", &t);
        err = p9c_open(t, P9_DOTL_RDONLY);
        tap_ok(err < 0, "symlink/%s_lopen_fails (%d)", links[i], err);
        p9c_clunk(t);
        if (strcmp(links[i], "link_etc") == 0) {
            p9c_clunk(l);
            continue; /* nothing mutating is aimed at /etc */
        }
        /* mutations through the symlink fid as if it were a directory */
        t = NULL;
        p9c_walk(l, "", &t);
        err = p9c_create(t, "created", P9_DOTL_RDWR, 0644, (uint32_t)-1);
        tap_ok(err < 0, "symlink/%s_lcreate_in_fails (%d)", links[i], err);
        p9c_clunk(t);
        err = p9c_mkdir(l, "made", 0755, (uint32_t)-1, NULL);
        tap_ok(err < 0, "symlink/%s_mkdir_in_fails (%d)", links[i], err);
        err = p9c_mknod(l, "nod", S_IFIFO | 0644, 0, 0, (uint32_t)-1, NULL);
        tap_ok(err < 0, "symlink/%s_mknod_in_fails (%d)", links[i], err);
        err = p9c_symlink(l, "sl", "x", (uint32_t)-1, NULL);
        tap_ok(err < 0, "symlink/%s_symlink_in_fails (%d)", links[i], err);
        err = p9c_unlinkat(l, "secret", 0);
        tap_ok(err < 0, "symlink/%s_unlinkat_in_fails (%d)", links[i], err);
        err = p9c_renameat(l, "secret", root, "stolen");
        tap_ok(err < 0, "symlink/%s_renameat_from_fails (%d)", links[i], err);
        err = p9c_renameat(root, "plain", l, "planted");
        tap_ok(err < 0, "symlink/%s_renameat_into_fails (%d)", links[i], err);
        {
            struct p9c_fid *pf = NULL;

            p9c_walk(root, "plain", &pf);
            err = p9c_rename(pf, l, "planted2");
            tap_ok(err < 0, "symlink/%s_rename_into_fails (%d)", links[i], err);
            err = p9c_link(l, pf, "hl");
            tap_ok(err < 0, "symlink/%s_link_into_fails (%d)", links[i], err);
            p9c_clunk(pf);
        }
        {
            struct p9_tsetattr sa = {0};

            sa.valid = P9_SETATTR_SIZE;
            sa.size = 0;
            p9c_setattr(l, &sa); /* may fail; must not truncate a target */
            sa.valid = P9_SETATTR_MODE;
            sa.mode = 0777;
            p9c_setattr(l, &sa);
            sa.valid = P9_SETATTR_MTIME | P9_SETATTR_MTIME_SET;
            sa.mtime_sec = 12345;
            p9c_setattr(l, &sa);
            p9c_xattr_set(l, "user.evil", "1", 1, 0);
        }
        /* hard link of the symlink itself is harmless; check what it is */
        err = p9c_link(root, l, "hl_of_link");
        hp(buf, "hl_of_link");
        {
            struct stat st;

            tap_ok(err < 0 || (lstat(buf, &st) == 0 && S_ISLNK(st.st_mode)),
                   "symlink/%s_tlink_links_the_symlink_itself (%d)", links[i],
                   err);
            unlink(buf);
        }
        p9c_clunk(l);
    }
    {
        char p[PATH_MAX];
        char v[8];

        snprintf(p, sizeof(p), "%s/secret", outdir);
        tap_ok(getxattr(p, "user.evil", v, sizeof(v)) < 0,
               "symlink/no_xattr_reached_target");
    }
    sentinel_check("symlinks");
}

/* lcreate/mknod/mkdir/symlink on a name that is an outside symlink */
static void
test_create_over_symlink(struct p9c_fid *root)
{
    struct p9c_fid *d = NULL;
    char p[PATH_MAX];
    int err;

    p9c_walk(root, "", &d);
    err = p9c_create(d, "link_secret",
                     P9_DOTL_RDWR | P9_DOTL_TRUNC | P9_DOTL_CREATE, 0644,
                     (uint32_t)-1);
    if (err == 0) {
        p9c_pwrite(d, "PWNED", 5, 0);
    }
    tap_ok(err < 0, "create_over/lcreate_trunc_on_symlink_to_file (%d)", err);
    p9c_clunk(d);
    d = NULL;
    p9c_walk(root, "", &d);
    err = p9c_create(d, "dangling", P9_DOTL_RDWR, 0644, (uint32_t)-1);
    snprintf(p, sizeof(p), "%s/newfile", outdir);
    tap_ok(err < 0 && !th_exists(p),
           "create_over/lcreate_on_dangling_symlink_creates_nothing (%d)", err);
    p9c_clunk(d);
    err = p9c_mkdir(root, "dangling", 0755, (uint32_t)-1, NULL);
    tap_ok(err == -EEXIST && !th_exists(p),
           "create_over/mkdir_on_dangling_symlink_eexist (%d)", err);
    err = p9c_mknod(root, "dangling", S_IFIFO | 0644, 0, 0, (uint32_t)-1, NULL);
    tap_ok(err == -EEXIST && !th_exists(p),
           "create_over/mknod_on_dangling_symlink_eexist (%d)", err);
    err = p9c_symlink(root, "dangling", "x", (uint32_t)-1, NULL);
    tap_ok(err == -EEXIST, "create_over/symlink_on_symlink_eexist (%d)", err);
    {
        struct p9c_fid *f = NULL;

        /* renaming over the symlink replaces the link, not the target */
        p9c_walk(root, "", &f);
        err = p9c_create(f, "victim", P9_DOTL_RDWR, 0644, (uint32_t)-1);
        p9c_pwrite(f, "v", 1, 0);
        p9c_clunk(f);
        err = err ? err : p9c_renameat(root, "victim", root, "link_secret");
        hp(p, "link_secret");
        {
            struct stat st;

            tap_ok(err == 0 && lstat(p, &st) == 0 && S_ISREG(st.st_mode),
                   "create_over/rename_over_symlink_replaces_link (%d)", err);
        }
        unlink(p);
        snprintf(p, sizeof(p), "%s/secret", outdir);
        if (symlink(p, hp_tmp("link_secret")) < 0) {
            tap_diag("cannot restore link_secret");
        }
    }
    sentinel_check("create_over_symlink");
}

/* Deterministic swap: the walked fid keeps naming the original object. */
static void
test_swap_after_walk(struct p9c_fid *root)
{
    struct p9c_fid *fsecret = NULL;
    struct p9c_fid *fdir = NULL;
    struct p9c_fid *t = NULL;
    char a[PATH_MAX];
    char b[PATH_MAX];
    char buf[64];
    ssize_t n;
    int err;

    err = p9c_walk(root, "sw/secret", &fsecret);
    err = err ? err : p9c_walk(root, "sw", &fdir);
    tap_ok(err == 0, "swap/walk_before_swap (%d)", err);
    hp(a, "sw");
    hp(b, "alt");
    err = renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
    tap_ok(err == 0, "swap/host_exchanged_dir_and_symlink");
    err = p9c_open(fsecret, P9_DOTL_RDWR);
    n = err ? err : p9c_pread(fsecret, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    tap_ok((n < 0 && n != -ENOENT) || strcmp(buf, INSIDE) == 0 || n == -ENOENT,
           "swap/open_walked_file_reads_original ('%s' %zd)", buf, n);
    tap_ok(strstr(buf, "OUTSIDE") == NULL, "swap/never_outside_content");
    err = p9c_walk(fdir, "secret", &t);
    if (err == 0 && p9c_open(t, 0) == 0) {
        n = p9c_pread(t, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
    } else {
        buf[0] = '\0';
    }
    tap_ok(strstr(buf, "OUTSIDE") == NULL,
           "swap/walk_from_held_dir_fid_stays_inside ('%s')", buf);
    p9c_clunk(t);
    t = NULL;
    p9c_walk(fdir, "", &t);
    err = p9c_create(t, "planted", P9_DOTL_RDWR, 0644, (uint32_t)-1);
    snprintf(a, sizeof(a), "%s/planted", outdir);
    hp(b, "alt/planted"); /* 'alt' is now the real directory */
    tap_ok(!th_exists(a) && (err < 0 || th_exists(b)),
           "swap/lcreate_in_held_dir_fid_lands_inside (%d)", err);
    p9c_clunk(t);
    err = p9c_mkdir(fdir, "mk", 0755, (uint32_t)-1, NULL);
    snprintf(a, sizeof(a), "%s/mk", outdir);
    tap_ok(!th_exists(a), "swap/mkdir_in_held_dir_fid_not_outside (%d)", err);
    err = p9c_renameat(fdir, "secret", root, "moved");
    hp(b, "moved");
    snprintf(a, sizeof(a), "%s/secret", outdir);
    tap_ok(th_exists(a), "swap/renameat_from_held_dir_fid_not_outside (%d)",
           err);
    if (err == 0) {
        hp(a, "alt/secret");
        rename(b, a);
    }
    p9c_clunk(fsecret);
    p9c_clunk(fdir);
    /* undo: sw is the directory again */
    hp(a, "sw");
    hp(b, "alt");
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
    hp(a, "sw/planted");
    unlink(a);
    hp(a, "sw/mk");
    rmdir(a);
    sentinel_check("swap_after_walk");
}

/* ---- the race ------------------------------------------------------------------ */

static atomic_bool race_stop;
static atomic_long race_swaps;

static void *
swapper(void *arg)
{
    char a[PATH_MAX];
    char b[PATH_MAX];

    (void)arg;
    hp(a, "sw");
    hp(b, "alt");
    while (!atomic_load(&race_stop)) {
        if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0) {
            atomic_fetch_add(&race_swaps, 1);
        }
        /* Let the client run: where threads take turns on one CPU (under
         * valgrind) this loop would otherwise starve it, and the test
         * would see only a handful of walks. */
        sched_yield();
    }
    return NULL;
}

static void
test_race(struct p9c_fid *root, int seconds)
{
    pthread_t th;
    uint64_t end;
    long reads_inside = 0;
    long reads_outside = 0;
    long creates = 0;
    long walk_fail = 0;
    long iter = 0;
    char buf[64];

    atomic_store(&race_stop, false);
    pthread_create(&th, NULL, swapper, NULL);
    end = th_now_ms() + (uint64_t)seconds * 1000;
    while (th_now_ms() < end) {
        struct p9c_fid *f = NULL;
        struct p9c_fid *d = NULL;
        char name[32];
        int err;

        iter++;
        err = p9c_walk(root, "sw/secret", &f);
        if (err == 0 && p9c_open(f, P9_DOTL_RDONLY) == 0) {
            ssize_t n = p9c_pread(f, buf, sizeof(buf) - 1, 0);

            buf[n > 0 ? n : 0] = '\0';
            if (strstr(buf, "OUTSIDE") != NULL) {
                reads_outside++;
            } else if (strcmp(buf, INSIDE) == 0) {
                reads_inside++;
            }
        } else if (err < 0) {
            walk_fail++;
        }
        p9c_clunk(f);
        snprintf(name, sizeof(name), "r%ld", iter % 4);
        if (p9c_walk(root, "sw", &d) == 0) {
            switch (iter % 4) {
            case 0:
                err = p9c_create(d, name, P9_DOTL_RDWR, 0644, (uint32_t)-1);
                if (err == 0) {
                    creates++;
                    p9c_pwrite(d, "r", 1, 0);
                }
                break;
            case 1: err = p9c_mkdir(d, name, 0755, (uint32_t)-1, NULL); break;
            case 2:
                err = p9c_mknod(d, name, S_IFIFO | 0644, 0, 0, (uint32_t)-1,
                                NULL);
                break;
            default:
                err = p9c_symlink(d, name, "/etc/passwd", (uint32_t)-1, NULL);
                break;
            }
            (void)err;
            p9c_clunk(d);
        }
        /* clean up what landed inside (either name of the pair) */
        if (iter % 64 == 0) {
            for (int k = 0; k < 4; k++) {
                char p[PATH_MAX];

                snprintf(p, sizeof(p), "%s/sw/r%d", exdir, k);
                if (remove(p) < 0) {
                    snprintf(p, sizeof(p), "%s/alt/r%d", exdir, k);
                    remove(p);
                }
            }
        }
    }
    atomic_store(&race_stop, true);
    pthread_join(th, NULL);
    tap_diag("race: %ld iterations, %ld swaps, %ld inside reads, %ld walk "
             "failures, %ld creates",
             iter, atomic_load(&race_swaps), reads_inside, walk_fail, creates);
    tap_ok(reads_outside == 0, "race/never_outside_content (%ld)",
           reads_outside);
    tap_ok(reads_inside > 0 && walk_fail > 0,
           "race/both_states_were_hit (inside %ld, failures %ld)", reads_inside,
           walk_fail);
    {
        char p[PATH_MAX];
        struct stat st;

        /* put 'sw' back to the directory for later runs */
        snprintf(p, sizeof(p), "%s/sw", exdir);
        if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode)) {
            char q[PATH_MAX];

            snprintf(q, sizeof(q), "%s/alt", exdir);
            renameat2(AT_FDCWD, p, AT_FDCWD, q, RENAME_EXCHANGE);
        }
    }
    sentinel_check("race");
}

int
main(int argc, char **argv)
{
    struct th_export ex;
    struct p9c_conn *c;
    struct p9c_fid *root;
    char p[PATH_MAX];
    char q[PATH_MAX];
    int err;

    vfsd = th_mode(argc, argv);
    base = th_mkdtemp("escape");
    snprintf(exdir, sizeof(exdir), "%s/ex", base);
    snprintf(outdir, sizeof(outdir), "%s/outside", base);
    mkdir(exdir, 0755);
    mkdir(outdir, 0755);
    snprintf(p, sizeof(p), "%s/secret", outdir);
    th_write_file(p, OUTSIDE, strlen(OUTSIDE));
    chmod(p, 0600);
    snprintf(p, sizeof(p), "%s/sub", outdir);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/sub/deep", outdir);
    th_write_file(p, OUTSIDE, strlen(OUTSIDE));

    hp(p, "plain");
    th_write_file(p, "plain", 5);
    hp(p, "realdir");
    mkdir(p, 0755);
    hp(p, "realdir/secret");
    th_write_file(p, INSIDE, strlen(INSIDE));
    hp(p, "sw");
    mkdir(p, 0755);
    hp(p, "sw/secret");
    th_write_file(p, INSIDE, strlen(INSIDE));
    hp(p, "alt");
    if (symlink(outdir, p) < 0 || symlink("/etc", hp_tmp("link_etc")) < 0 ||
        symlink("../..", hp_tmp("link_up")) < 0 ||
        symlink(outdir, hp_tmp("link_out")) < 0 ||
        symlink("../outside", hp_tmp("rel_out")) < 0) {
        perror("symlink");
        return 99;
    }
    /* a fixture that silently failed would make the escape checks vacuous */
    snprintf(q, sizeof(q), "%s/secret", outdir);
    if (symlink(q, hp_tmp("link_secret")) < 0) {
        perror("symlink link_secret");
        return 99;
    }
    snprintf(q, sizeof(q), "%s/newfile", outdir);
    if (symlink(q, hp_tmp("dangling")) < 0) {
        perror("symlink dangling");
        return 99;
    }
    out_hash = th_tree_hash(outdir);

    ex = (struct th_export){NULL, exdir, false};
    srv = th_start(vfsd, &ex, 1, NULL);
    err = th_mount(srv, "", &c, &root);
    tap_ok(err == 0, "mount (%d)", err);
    if (err == 0) {
        test_dotdot_and_slash(c);
        test_symlinks(root);
        test_create_over_symlink(root);
        test_swap_after_walk(root);
        test_race(root, vfsd ? 2 : 3);
        p9c_clunk(root);
        p9c_close(c);
    }
    err = th_stop(srv);
    tap_ok(err == 0, "server/clean_stop (%d)", err);
    sentinel_check("final");
    th_rmtree(base);
    free(base);
    return tap_done();
}
