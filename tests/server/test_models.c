/* SPDX-License-Identifier: MIT */
/*
 * Security models through a spawned virtfsd, from the command line:
 * `--export DIR,security_model=mapped-xattr` run by an unprivileged user
 * (the test drops to nobody first when started as root, so the daemon it
 * spawns is unprivileged too).  A guest root chowns to any uid, makes
 * device nodes and set-id files; the host holds only the daemon's regular
 * files without set-id bits.  Also: bad model options are refused.
 */
#include "harness.h"

#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

static int
attach_as(struct p9c_conn *c, uint32_t fid, const char *aname, uint32_t uid)
{
    struct p9_fcall t = {.type = P9_TATTACH};

    t.u.tattach.fid = fid;
    t.u.tattach.afid = P9_NOFID;
    t.u.tattach.uname = th_str("");
    t.u.tattach.aname = th_str(aname);
    t.u.tattach.n_uname = uid;
    return th_rpc(c, &t, NULL);
}

static int
mknod_at(struct p9c_conn *c, uint32_t dfid, const char *name, uint32_t mode,
         uint32_t major, uint32_t minor)
{
    struct p9_fcall t = {.type = P9_TMKNOD};

    t.u.tmknod.dfid = dfid;
    t.u.tmknod.name = th_str(name);
    t.u.tmknod.mode = mode;
    t.u.tmknod.major = major;
    t.u.tmknod.minor = minor;
    t.u.tmknod.gid = 0;
    return th_rpc(c, &t, NULL);
}

static int
mkdir_at(struct p9c_conn *c, uint32_t dfid, const char *name, uint32_t mode)
{
    struct p9_fcall t = {.type = P9_TMKDIR};

    t.u.tmkdir.dfid = dfid;
    t.u.tmkdir.name = th_str(name);
    t.u.tmkdir.mode = mode;
    t.u.tmkdir.gid = 0;
    return th_rpc(c, &t, NULL);
}

static int
symlink_at(struct p9c_conn *c, uint32_t dfid, const char *name,
           const char *target)
{
    struct p9_fcall t = {.type = P9_TSYMLINK};

    t.u.tsymlink.fid = dfid;
    t.u.tsymlink.name = th_str(name);
    t.u.tsymlink.symtgt = th_str(target);
    t.u.tsymlink.gid = 0;
    return th_rpc(c, &t, NULL);
}

static int
setattr_fid(struct p9c_conn *c, uint32_t fid, uint32_t valid, uint32_t mode,
            uint32_t uid, uint32_t gid)
{
    struct p9_fcall t = {.type = P9_TSETATTR};

    t.u.tsetattr.fid = fid;
    t.u.tsetattr.valid = valid;
    t.u.tsetattr.mode = mode;
    t.u.tsetattr.uid = uid;
    t.u.tsetattr.gid = gid;
    return th_rpc(c, &t, NULL);
}

/* getattr of 'name' below the root fid. */
static int
attr_of(struct p9c_conn *c, const char *name, struct p9_rgetattr *ga)
{
    int err = th_walk1(c, TF(0), TF(9), name);

    memset(ga, 0, sizeof(*ga));
    if (err < 0) {
        return err;
    }
    err = th_getattr(c, TF(9), ga);
    th_clunk(c, TF(9));
    return err;
}

static bool
host_plain(const char *dir, const char *name, uid_t owner)
{
    char path[PATH_MAX];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (lstat(path, &st) < 0) {
        return false;
    }
    return st.st_uid == owner && (st.st_mode & 07000) == 0 &&
           (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
}

/* virtfsd with bad translation rules must exit 2 without serving. */
static void
test_bad_rules(const char *virtfsd, const char *dir)
{
    static const char *const bad[][4] = {
        {"--translate-uid", "bogus:1:2:3", NULL, NULL},
        {"--translate-gid", "map:1:2", NULL, NULL},
        {"--translate-uid", "map:0:1:10", "--translate-uid", "guest:5:7:1"},
        {"--translate-gid", "forbid-guest:0:0", NULL, NULL},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int st = 0;
        pid_t pid = fork();

        if (pid == 0) {
            int nul = open("/dev/null", O_WRONLY);
            const char *argv[10] = {virtfsd};
            int n = 1;

            /* Rules first: nothing is allocated yet when they fail (the
             * ASan build's leak check would change the exit status). */
            for (int k = 0; k < 4 && bad[i][k] != NULL; k++) {
                argv[n++] = bad[i][k];
            }
            argv[n++] = "--export";
            argv[n++] = dir;
            argv[n++] = "--stdio";
            dup2(nul, 2);
            execv(virtfsd, (char *const *)argv);
            _exit(127);
        }
        waitpid(pid, &st, 0);
        tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 2,
               "%s %s%s%s refused (status %d)", bad[i][0], bad[i][1],
               bad[i][2] ? " ... " : "", bad[i][3] ? bad[i][3] : "",
               WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
}

/* virtfsd with bad model options must exit 2 without serving. */
static void
test_bad_options(const char *virtfsd, const char *dir)
{
    static const char *const bad[] = {"security_model=mapped-foo", "fmode=0999",
                                      "dmode=4755", "fmode="};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char exarg[PATH_MAX + 64];
        int st = 0;
        pid_t pid;

        snprintf(exarg, sizeof(exarg), "%s,%s", dir, bad[i]);
        pid = fork();
        if (pid == 0) {
            int nul = open("/dev/null", O_WRONLY);

            dup2(nul, 2);
            execl(virtfsd, virtfsd, "--export", exarg, "--stdio", (char *)NULL);
            _exit(127);
        }
        waitpid(pid, &st, 0);
        tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 2,
               "--export DIR,%s refused (status %d)", bad[i],
               WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
}

int
main(int argc, char **argv)
{
    const char *virtfsd = th_mode(argc, argv);
    struct th_export ex = {0};
    struct p9c_conn *c;
    struct p9_rgetattr ga = {0};
    struct th_srv *s;
    char exarg[PATH_MAX + 64];
    const char *extra[4] = {NULL};
    char *dir;
    uid_t me;
    bool ok;

    if (virtfsd == NULL) {
        /* The security model is a command-line option of the daemon. */
        fprintf(stderr, "usage: test_srv_models PATH-TO-VIRTFSD\n");
        return 99;
    }
    if (geteuid() == 0 && th_become_nobody() < 0) {
        tap_ok(false, "drop to nobody");
        return tap_done();
    }
    me = geteuid();
    tap_ok(me != 0, "running unprivileged (uid %u)", me);
    dir = th_mkdtemp("models");
    test_bad_options(virtfsd, dir);
    test_bad_rules(virtfsd, dir);

    /* The export: DIR,security_model=mapped-xattr given as an extra arg. */
    snprintf(exarg, sizeof(exarg), "%s,security_model=mapped-xattr", dir);
    extra[0] = "--export";
    extra[1] = exarg;
    extra[2] = "--translate-gid=map:5000:105000:10";
    ex.path = "/nonexistent-unused";
    ex.name = NULL;
    s = th_start(virtfsd, NULL, 0, extra);
    c = th_connect(s);
    tap_ok(c != NULL && p9c_version(c, TH_MSIZE) == 0, "connect");
    if (c == NULL) {
        th_stop(s);
        th_rmtree(dir);
        free(dir);
        return tap_done();
    }
    tap_ok(attach_as(c, TF(0), dir, 0) == 0, "attach as guest root");
    ok = mknod_at(c, TF(0), "kvm", S_IFCHR | 0666, 10, 232) == 0 &&
         attr_of(c, "kvm", &ga) == 0 && ga.mode == (S_IFCHR | 0666) &&
         ga.rdev == makedev(10, 232);
    tap_ok(ok, "mknod c 10 232: the guest sees a char device (%o)", ga.mode);
    tap_ok(host_plain(dir, "kvm", me), "host: kvm is a plain file of uid %u",
           me);
    tap_ok(mknod_at(c, TF(0), "su", S_IFREG | 04755, 0, 0) == 0 &&
               attr_of(c, "su", &ga) == 0 && ga.mode == (S_IFREG | 04755),
           "a set-uid file for the guest");
    ok = th_walk1(c, TF(0), TF(1), "su") == 0 &&
         setattr_fid(c, TF(1), P9_SETATTR_UID | P9_SETATTR_GID, 0, 0, 0) == 0 &&
         setattr_fid(c, TF(1), P9_SETATTR_MODE, S_IFREG | 06755, 0, 0) == 0 &&
         attr_of(c, "su", &ga) == 0 && ga.uid == 0 && ga.gid == 0 &&
         ga.mode == (S_IFREG | 06755);
    tap_ok(ok, "chown to root, chmod 6755 (%u:%u %o)", ga.uid, ga.gid, ga.mode);
    th_clunk(c, TF(1));
    tap_ok(host_plain(dir, "su", me), "host: su has no set-id bit");
    ok = mkdir_at(c, TF(0), "home", 0755) == 0 &&
         th_walk1(c, TF(0), TF(2), "home") == 0 &&
         setattr_fid(c, TF(2), P9_SETATTR_UID | P9_SETATTR_GID, 0, 1000,
                     1000) == 0 &&
         attr_of(c, "home", &ga) == 0 && ga.uid == 1000 &&
         ga.mode == (S_IFDIR | 0755);
    tap_ok(ok, "mkdir + chown to 1000 (%u %o)", ga.uid, ga.mode);
    th_clunk(c, TF(2));
    tap_ok(host_plain(dir, "home", me), "host: home is the daemon's");
    tap_ok(symlink_at(c, TF(0), "ln", "/etc/shadow") == 0 &&
               attr_of(c, "ln", &ga) == 0 && ga.mode == (S_IFLNK | 0777),
           "symlink for the guest");
    tap_ok(host_plain(dir, "ln", me), "host: the symlink is a regular file");
    /* --translate-gid map:5000:105000:10 from the command line. */
    ok = th_walk1(c, TF(0), TF(6), "ln") == 0 &&
         setattr_fid(c, TF(6), P9_SETATTR_GID, 0, 0, 5003) == 0 &&
         attr_of(c, "ln", &ga) == 0 && ga.gid == 5003;
    th_clunk(c, TF(6));
    {
        char path[PATH_MAX];
        uint32_t v = 0;

        snprintf(path, sizeof(path), "%s/ln", dir);
        getxattr(path, "user.virtfs.gid", &v, sizeof(v));
        tap_ok(ok && v == 105003,
               "--translate-gid: guest gid 5003 stored as host 105003 (%u), "
               "shown as 5003",
               v);
    }
    /* A guest user other than root: ownership rules hold. */
    tap_ok(attach_as(c, TF(3), dir, 1000) == 0 &&
               th_walk1(c, TF(3), TF(4), "su") == 0 &&
               setattr_fid(c, TF(4), P9_SETATTR_MODE, 0777, 0, 0) == -EPERM,
           "guest uid 1000 cannot chmod root's file");
    th_clunk(c, TF(4));
    tap_ok(th_walk1(c, TF(3), TF(5), "home") == 0 &&
               setattr_fid(c, TF(5), P9_SETATTR_UID, 0, 0, 0) == -EPERM,
           "guest uid 1000 cannot give its directory to root");
    th_clunk(c, TF(5));
    p9c_close(c);
    tap_ok(th_stop(s) == 0, "virtfsd exits cleanly");
    th_rmtree(dir);
    free(dir);
    (void)ex;
    return tap_done();
}
