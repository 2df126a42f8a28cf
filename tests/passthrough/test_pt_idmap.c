/* SPDX-License-Identifier: MIT */
/*
 * uid/gid translation (--translate-uid/--translate-gid, --all-squash):
 * the rule parser, and the backend applying the rules to attaches,
 * creations, chown and getattr (a root daemon in multiuser mode, and a
 * mapped-xattr export).
 */
#include "pt_test.h"

#include <sys/xattr.h>

static char *exp_root;

static struct backend *
open_map(enum pt_security_model model, const struct pt_idmap *um,
         const struct pt_idmap *gm)
{
    struct pt_options o = {.root = exp_root,
                           .remap_devs = true,
                           .model = model,
                           .multiuser = geteuid() == 0,
                           .uidmap = um,
                           .gidmap = gm};
    struct backend *be = NULL;

    if (pt_backend_new(&o, &be) < 0) {
        exit(2);
    }
    return be;
}

static void
host_lstat(const char *rel, struct stat *st)
{
    char path[512];

    memset(st, 0, sizeof(*st));
    snprintf(path, sizeof(path), "%s/%s", exp_root, rel);
    lstat(path, st);
}

static int
gattr(struct backend *be, struct be_node *root, const char *rel,
      struct p9_rgetattr *ga)
{
    struct be_node *n = NULL;
    int err = walkp(be, root, rel, &n);

    memset(ga, 0, sizeof(*ga));
    if (err < 0) {
        return err;
    }
    err = OPS(be)->getattr(be, n, NULL, P9_GETATTR_BASIC, ga);
    OPS(be)->node_put(be, n);
    return err;
}

static int
chown_rel(struct backend *be, struct be_node *root, const char *rel,
          uint32_t uid, uint32_t gid)
{
    struct be_node *n = NULL;
    struct p9_tsetattr sa;
    int err = walkp(be, root, rel, &n);

    if (err < 0) {
        return err;
    }
    memset(&sa, 0, sizeof(sa));
    sa.valid = P9_SETATTR_UID | P9_SETATTR_GID;
    sa.uid = uid;
    sa.gid = gid;
    err = OPS(be)->setattr(be, n, NULL, &sa);
    OPS(be)->node_put(be, n);
    return err;
}

static void
test_parse(void)
{
    struct pt_idmap m = {0};

    tap_ok(pt_idmap_add(&m, "map:1000:5000:100") == 0 &&
               pt_idmap_add(&m, "guest:0:1:1") == 0 &&
               pt_idmap_add(&m, "host:0:7:1") == 0 &&
               pt_idmap_add(&m, "squash-guest:2000:65534:1000") == 0 &&
               pt_idmap_add(&m, "squash-host:200:3:10") == 0 &&
               pt_idmap_add(&m, "forbid-guest:3000:5") == 0 && m.n == 6,
           "parse: one rule of each kind");
    tap_ok(pt_idmap_add(&m, "map:1050:9000:1") == -EEXIST,
           "parse: guest range overlapping a map is refused");
    tap_ok(pt_idmap_add(&m, "host:5010:1:1") == -EEXIST,
           "parse: host range overlapping a map's host side is refused");
    tap_ok(pt_idmap_add(&m, "forbid-guest:0:1") == -EEXIST,
           "parse: forbid over a guest rule is refused");
    tap_ok(pt_idmap_add(&m, "map:1:2") == -EINVAL &&
               pt_idmap_add(&m, "forbid-guest:1:2:3") == -EINVAL &&
               pt_idmap_add(&m, "mapx:1:2:3") == -EINVAL &&
               pt_idmap_add(&m, "map:-1:2:3") == -EINVAL &&
               pt_idmap_add(&m, "map:1:2:0") == -ERANGE &&
               pt_idmap_add(&m, "map:4294967295:0:2") == -ERANGE &&
               pt_idmap_add(&m, "map:a:2:3") == -EINVAL,
           "parse: malformed rules refused");
    tap_ok(pt_idmap_add(&m, "squash-guest:5000:1:4294962295") == 0,
           "parse: a squash up to the top of the id space");
}

static void
test_backend(void)
{
    struct pt_idmap um = {0};
    struct pt_idmap gm = {0};
    struct backend *be;
    struct be_node *root;
    struct be_user *u = NULL;
    struct be_user *r = NULL;
    struct be_node *n = NULL;
    struct be_handle *h = NULL;
    struct p9_rgetattr ga;
    struct p9_qid q;
    struct stat st;
    uint32_t iou;
    int err;

    pt_idmap_add(&um, "map:1000:5000:100");
    pt_idmap_add(&um, "forbid-guest:3000:10");
    pt_idmap_add(&um, "squash-host:7000:99:10");
    pt_idmap_add(&gm, "map:1000:6000:100");
    pt_idmap_add(&gm, "forbid-guest:4000:10");
    be = open_map(PT_SM_PASSTHROUGH, &um, &gm);
    root = get_root(be, NULL);

    tap_ok(OPS(be)->user_get(be, "", 3005, &u) == -EPERM,
           "attach as a forbidden guest uid: EPERM");
    u = NULL;
    tap_ok(OPS(be)->user_get(be, "", 1001, &u) == 0 &&
               OPS(be)->user_enter(be, u) == 0,
           "attach as guest 1001");
    err = OPS(be)->create(be, root, "f", P9_DOTL_RDWR, 0644, 1002, &n, &h, &q,
                          &iou);
    if (err == 0) {
        OPS(be)->close(be, h);
        OPS(be)->node_put(be, n);
    }
    host_lstat("f", &st);
    tap_ok(err == 0 && st.st_uid == 5001 && st.st_gid == 6002,
           "create: host owner 5001:6002 (%u:%u)", st.st_uid, st.st_gid);
    err = gattr(be, root, "f", &ga);
    tap_ok(err == 0 && ga.uid == 1001 && ga.gid == 1002,
           "getattr: the guest sees 1001:1002 (%u:%u)", ga.uid, ga.gid);
    tap_ok(OPS(be)->mkdir(be, root, "d", 0755, 4003, &q) == -EPERM,
           "mkdir with a forbidden guest gid: EPERM");
    tap_ok(OPS(be)->user_get(be, "", 0, &r) == 0 &&
               OPS(be)->user_enter(be, r) == 0,
           "attach as guest root (not mapped: host root)");
    err = chown_rel(be, root, "f", 1050, 1060);
    host_lstat("f", &st);
    tap_ok(err == 0 && st.st_uid == 5050 && st.st_gid == 6060,
           "chown 1050:1060: host 5050:6060 (%u:%u)", st.st_uid, st.st_gid);
    tap_ok(chown_rel(be, root, "f", 3001, (uint32_t)-1) == -EPERM &&
               chown_rel(be, root, "f", (uint32_t)-1, 4009) == -EPERM,
           "chown to a forbidden uid or gid: EPERM");
    tap_ok(chown_rel(be, root, "f", 2003, 0) == 0,
           "chown to host-unmapped guest 2003 (identity)");
    {
        char path[512];

        snprintf(path, sizeof(path), "%s/h", exp_root);
        close(open(path, O_CREAT | O_WRONLY, 0600));
        if (chown(path, 7005, 0) < 0) {
            perror("chown");
        }
    }
    err = gattr(be, root, "h", &ga);
    tap_ok(err == 0 && ga.uid == 99,
           "squash-host: host uid 7005 shows as guest 99 (%u)", ga.uid);
    OPS(be)->user_put(be, u);
    OPS(be)->user_put(be, r);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/* --all-squash's rules on a root daemon: every object is nobody's. */
static void
test_all_squash(void)
{
    struct pt_idmap um = {0};
    struct pt_idmap gm = {0};
    struct backend *be;
    struct be_node *root;
    struct be_user *u = NULL;
    struct p9_rgetattr ga;
    struct p9_qid q;
    struct stat st;

    char path[512];
    int fd;

    /* A host file only root may read, in the export. */
    snprintf(path, sizeof(path), "%s/secret", exp_root);
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (fd >= 0) {
        close(fd);
    }
    pt_idmap_add(&um, "squash-guest:0:65534:4294967295");
    pt_idmap_add(&gm, "squash-guest:0:65534:4294967295");
    if (chown(exp_root, 65534, 65534) < 0) {
        tap_ok(false, "chown the export to nobody");
    }
    be = open_map(PT_SM_PASSTHROUGH, &um, &gm);
    root = get_root(be, NULL);
    tap_ok(OPS(be)->user_get(be, "", 0, &u) == 0 &&
               OPS(be)->user_enter(be, u) == 0,
           "all-squash: guest root attaches");
    tap_ok(OPS(be)->mkdir(be, root, "sq", 0755, 0, &q) == 0,
           "all-squash: mkdir");
    host_lstat("sq", &st);
    tap_ok(st.st_uid == 65534 && st.st_gid == 65534,
           "all-squash: host owner nobody:nogroup (%u:%u)", st.st_uid,
           st.st_gid);
    tap_ok(OPS(be)->mknod(be, root, "null", S_IFCHR | 0666, 1, 3, 0, &q) ==
               -EPERM,
           "all-squash: guest root holds no privilege (mknod c: EPERM)");
    tap_ok(chown_rel(be, root, "sq", 0, 0) == 0 &&
               gattr(be, root, "sq", &ga) == 0 && ga.uid == 65534,
           "all-squash: chown to root stays nobody");
    {
        struct be_node *n = NULL;
        struct be_handle *h = NULL;
        uint32_t iou;
        int err = walkp(be, root, "secret", &n);

        if (err == 0) {
            err = OPS(be)->open(be, n, P9_DOTL_RDONLY, &h, &q, &iou);
            if (err == 0) {
                OPS(be)->close(be, h);
            }
            OPS(be)->node_put(be, n);
        }
        /* Squashed to nobody, guest root gets nobody's access on the host:
         * no CAP_DAC_OVERRIDE past the 0600 of a root-owned file. */
        tap_ok(err == -EACCES,
               "all-squash: guest root cannot open the host's 0600 root file "
               "(%d, want -EACCES)",
               err);
    }
    OPS(be)->user_put(be, u);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

/* In a mapped model the stored owners are translated the same way. */
static void
test_mapped(void)
{
    struct pt_idmap um = {0};
    struct pt_idmap gm = {0};
    struct backend *be;
    struct be_node *root;
    struct be_user *u = NULL;
    struct p9_rgetattr ga;
    struct p9_qid q;
    char path[512];
    uint32_t v = 0;

    pt_idmap_add(&um, "map:0:100000:65536");
    pt_idmap_add(&gm, "map:0:100000:65536");
    be = open_map(PT_SM_MAPPED_XATTR, &um, &gm);
    root = get_root(be, NULL);
    tap_ok(OPS(be)->user_get(be, "", 0, &u) == 0 &&
               OPS(be)->user_enter(be, u) == 0 &&
               OPS(be)->mkdir(be, root, "m", 0700, 10, &q) == 0,
           "mapped: mkdir as guest root, gid 10");
    snprintf(path, sizeof(path), "%s/m", exp_root);
    getxattr(path, "user.virtfs.gid", &v, sizeof(v));
    tap_ok(v == 100010, "mapped: stored gid is the host id 100010 (%u)", v);
    v = (uint32_t)gattr(be, root, "m", &ga);
    tap_ok(v == 0 && ga.uid == 0 && ga.gid == 10,
           "mapped: the guest sees 0:10 (%u:%u)", ga.uid, ga.gid);
    OPS(be)->user_put(be, u);
    OPS(be)->node_put(be, root);
    OPS(be)->destroy(be);
}

int
main(void)
{
    test_parse();
    if (geteuid() != 0) {
        tap_ok(false, "the backend cases need root (owners on the host)");
        return tap_done();
    }
    exp_root = mktmp("idmap");
    test_backend();
    rmtree(exp_root);
    free(exp_root);
    exp_root = mktmp("squash");
    test_all_squash();
    rmtree(exp_root);
    free(exp_root);
    exp_root = mktmp("idmapx");
    test_mapped();
    rmtree(exp_root);
    free(exp_root);
    return tap_done();
}
