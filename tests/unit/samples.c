/* SPDX-License-Identifier: MIT */
/*
 * Sample messages: see samples.h.  Values are chosen so that every byte of
 * a field differs (a swapped or narrowed field shows up in a comparison).
 */
#include "samples.h"

#include <string.h>

/* clang-format off */
const uint8_t sample_types[] = {
    P9_RLERROR,
#define P9_MSG(NAME, name, ID, FLAGS, FID, RB) P9_T##NAME, P9_R##NAME,
#include "virtfs/p9_msgs.def"
#undef P9_MSG
};
/* clang-format on */
const size_t sample_ntypes = sizeof(sample_types);

static const char *const names[] = {
    "a",
    "bc",
    "def",
    "with space",
    "\x01\x7f\xff-bytes",
    ".",
    "..",
    "name-sixteen-ch",
    "x",
    "yy",
    "zzz",
    "0123456789",
    "q",
    "rr",
    "sss",
    "last",
};

static uint8_t data_small[] = "hello, 9P world";
static uint8_t data_big[3000];

static struct p9_str
S(const char *s) {
    struct p9_str r;

    r.s = s;
    r.len = (uint16_t)strlen(s);
    return r;
}

static struct p9_qid
Q(uint8_t type, uint32_t seed) {
    struct p9_qid q;

    q.type = type;
    q.version = 0x11223344u + seed;
    q.path = 0x0102030405060708ull * (seed + 1);
    return q;
}

static struct p9_data
DATA(int variant) {
    struct p9_data d;

    memset(&d, 0, sizeof(d));
    if (variant == 1) {
        d.ptr = data_small; /* empty payload */
        d.len = 0;
    } else if (variant == 2) {
        for (size_t i = 0; i < sizeof(data_big); i++) {
            data_big[i] = (uint8_t)(i * 7 + 3);
        }
        d.ptr = data_big;
        d.len = sizeof(data_big);
    } else {
        d.ptr = data_small;
        d.len = (uint32_t)(sizeof(data_small) - 1);
    }
    return d;
}

/* A string per variant: normal, empty, long. */
static struct p9_str
VS(const char *s, int variant) {
    static char longstr[300];

    if (variant == 1) {
        return S("");
    }
    if (variant == 2) {
        for (size_t i = 0; i < sizeof(longstr) - 1; i++) {
            longstr[i] = (char)('a' + (i % 26));
        }
        longstr[sizeof(longstr) - 1] = '\0';
        return S(longstr);
    }
    return S(s);
}

void
sample_fcall(uint8_t type, int variant, struct p9_fcall *f)
{
    memset(f, 0, sizeof(*f));
    f->type = type;
    f->tag = (uint16_t)(0x1234 + variant);
    switch (type) {
    case P9_RLERROR: f->u.rlerror.ecode = 2 + (uint32_t)variant; break;
    case P9_TSTATFS: f->u.tstatfs.fid = 0xa1a2a3a4; break;
    case P9_RSTATFS:
        f->u.rstatfs.type = 0x01021994;
        f->u.rstatfs.bsize = 4096;
        f->u.rstatfs.blocks = 0x1111111122222222ull;
        f->u.rstatfs.bfree = 0x3333333344444444ull;
        f->u.rstatfs.bavail = 0x5555555566666666ull;
        f->u.rstatfs.files = 0x7777777788888888ull;
        f->u.rstatfs.ffree = 0x99999999aaaaaaaaull;
        f->u.rstatfs.fsid = 0xbbbbbbbbccccccccull;
        f->u.rstatfs.namelen = 255;
        break;
    case P9_TLOPEN:
        f->u.tlopen.fid = 7;
        f->u.tlopen.flags = P9_DOTL_RDWR | P9_DOTL_TRUNC;
        break;
    case P9_RLOPEN:
        f->u.rlopen.qid = Q(P9_QTFILE, 1);
        f->u.rlopen.iounit = 0x10000;
        break;
    case P9_TLCREATE:
        f->u.tlcreate.fid = 9;
        f->u.tlcreate.name = VS("newfile.txt", variant);
        f->u.tlcreate.flags = P9_DOTL_CREATE | P9_DOTL_WRONLY;
        f->u.tlcreate.mode = 0100644;
        f->u.tlcreate.gid = 1000;
        break;
    case P9_RLCREATE:
        f->u.rlcreate.qid = Q(P9_QTFILE, 2);
        f->u.rlcreate.iounit = 8192;
        break;
    case P9_TSYMLINK:
        f->u.tsymlink.fid = 3;
        f->u.tsymlink.name = VS("link", variant);
        f->u.tsymlink.symtgt = S("../target/path");
        f->u.tsymlink.gid = 100;
        break;
    case P9_RSYMLINK: f->u.rsymlink.qid = Q(P9_QTSYMLINK, 3); break;
    case P9_TMKNOD:
        f->u.tmknod.dfid = 4;
        f->u.tmknod.name = VS("fifo", variant);
        f->u.tmknod.mode = 010644;
        f->u.tmknod.major = 0x0a0b0c0d;
        f->u.tmknod.minor = 0x01020304;
        f->u.tmknod.gid = 5;
        break;
    case P9_RMKNOD: f->u.rmknod.qid = Q(0, 4); break;
    case P9_TRENAME:
        f->u.trename.fid = 11;
        f->u.trename.dfid = 12;
        f->u.trename.name = VS("renamed", variant);
        break;
    case P9_TREADLINK: f->u.treadlink.fid = 13; break;
    case P9_RREADLINK:
        f->u.rreadlink.target = VS("/abs/target", variant);
        break;
    case P9_TGETATTR:
        f->u.tgetattr.fid = 14;
        f->u.tgetattr.request_mask = P9_GETATTR_ALL;
        break;
    case P9_RGETATTR: {
        struct p9_rgetattr *r = &f->u.rgetattr;

        r->valid = P9_GETATTR_BASIC;
        r->qid = Q(P9_QTDIR, 5);
        r->mode = 040755;
        r->uid = 1001;
        r->gid = 1002;
        r->nlink = 0x0102030405060701ull;
        r->rdev = 0x0102030405060702ull;
        r->size = 0x0102030405060703ull;
        r->blksize = 0x0102030405060704ull;
        r->blocks = 0x0102030405060705ull;
        r->atime_sec = 0x0102030405060706ull;
        r->atime_nsec = 0x0102030405060707ull;
        r->mtime_sec = 0x0102030405060708ull;
        r->mtime_nsec = 0x0102030405060709ull;
        r->ctime_sec = 0x010203040506070aull;
        r->ctime_nsec = 0x010203040506070bull;
        r->btime_sec = 0x010203040506070cull;
        r->btime_nsec = 0x010203040506070dull;
        r->gen = 0x010203040506070eull;
        r->data_version = 0x010203040506070full;
        break;
    }
    case P9_TSETATTR: {
        struct p9_tsetattr *t = &f->u.tsetattr;

        t->fid = 15;
        t->valid = P9_SETATTR_MODE | P9_SETATTR_SIZE | P9_SETATTR_MTIME_SET;
        t->mode = 0600;
        t->uid = 0x21222324;
        t->gid = 0x25262728;
        t->size = 0x3132333435363738ull;
        t->atime_sec = 0x4142434445464748ull;
        t->atime_nsec = 0x5152535455565758ull;
        t->mtime_sec = 0x6162636465666768ull;
        t->mtime_nsec = 0x7172737475767778ull;
        break;
    }
    case P9_TXATTRWALK:
        f->u.txattrwalk.fid = 16;
        f->u.txattrwalk.newfid = 17;
        f->u.txattrwalk.name = VS("user.comment", variant);
        break;
    case P9_RXATTRWALK: f->u.rxattrwalk.size = 0x0000000100000002ull; break;
    case P9_TXATTRCREATE:
        f->u.txattrcreate.fid = 18;
        f->u.txattrcreate.name = VS("security.selinux", variant);
        f->u.txattrcreate.attr_size = 42;
        f->u.txattrcreate.flags = P9_XATTR_CREATE;
        break;
    case P9_TREADDIR:
        f->u.treaddir.fid = 19;
        f->u.treaddir.offset = 0xfedcba9876543210ull;
        f->u.treaddir.count = 8168;
        break;
    case P9_RREADDIR: f->u.rreaddir.data = DATA(variant); break;
    case P9_TFSYNC:
        f->u.tfsync.fid = 20;
        f->u.tfsync.datasync = 1;
        break;
    case P9_TLOCK:
        f->u.tlock.fid = 21;
        f->u.tlock.type = P9_LOCK_TYPE_WRLCK;
        f->u.tlock.flags = P9_LOCK_FLAGS_BLOCK;
        f->u.tlock.start = 0x0807060504030201ull;
        f->u.tlock.length = 0x1817161514131211ull;
        f->u.tlock.proc_id = 0x31323334;
        f->u.tlock.client_id = VS("client-host", variant);
        break;
    case P9_RLOCK: f->u.rlock.status = P9_LOCK_BLOCKED; break;
    case P9_TGETLOCK:
        f->u.tgetlock.fid = 22;
        f->u.tgetlock.type = P9_LOCK_TYPE_RDLCK;
        f->u.tgetlock.start = 0x2827262524232221ull;
        f->u.tgetlock.length = 0x3837363534333231ull;
        f->u.tgetlock.proc_id = 0x41424344;
        f->u.tgetlock.client_id = VS("getlock-client", variant);
        break;
    case P9_RGETLOCK:
        f->u.rgetlock.type = P9_LOCK_TYPE_UNLCK;
        f->u.rgetlock.start = 0x4847464544434241ull;
        f->u.rgetlock.length = 0x5857565554535251ull;
        f->u.rgetlock.proc_id = 0x61626364;
        f->u.rgetlock.client_id = VS("holder", variant);
        break;
    case P9_TLINK:
        f->u.tlink.dfid = 23;
        f->u.tlink.fid = 24;
        f->u.tlink.name = VS("hardlink", variant);
        break;
    case P9_TMKDIR:
        f->u.tmkdir.dfid = 25;
        f->u.tmkdir.name = VS("subdir", variant);
        f->u.tmkdir.mode = 0755;
        f->u.tmkdir.gid = 26;
        break;
    case P9_RMKDIR: f->u.rmkdir.qid = Q(P9_QTDIR, 6); break;
    case P9_TRENAMEAT:
        f->u.trenameat.olddirfid = 27;
        f->u.trenameat.oldname = VS("old", variant);
        f->u.trenameat.newdirfid = 28;
        f->u.trenameat.newname = S("new-name");
        break;
    case P9_TUNLINKAT:
        f->u.tunlinkat.dirfd = 29;
        f->u.tunlinkat.name = VS("victim", variant);
        f->u.tunlinkat.flags = P9_DOTL_AT_REMOVEDIR;
        break;
    case P9_TVERSION:
        f->u.tversion.msize = 0x00080000;
        f->u.tversion.version = variant == 1 ? S("9P2000") : S(P9_VERSION_L);
        break;
    case P9_RVERSION:
        f->u.rversion.msize = 0x00040000;
        f->u.rversion.version = variant == 1 ? S("unknown") : S(P9_VERSION_L);
        break;
    case P9_TAUTH:
        f->u.tauth.afid = 30;
        f->u.tauth.uname = VS("user", variant);
        f->u.tauth.aname = S("/export");
        f->u.tauth.n_uname = 1000;
        break;
    case P9_RAUTH: f->u.rauth.aqid = Q(P9_QTAUTH, 7); break;
    case P9_TATTACH:
        f->u.tattach.fid = 31;
        f->u.tattach.afid = P9_NOFID;
        f->u.tattach.uname = VS("root", variant);
        f->u.tattach.aname = S("");
        f->u.tattach.n_uname = P9_NONUNAME;
        break;
    case P9_RATTACH: f->u.rattach.qid = Q(P9_QTDIR, 8); break;
    case P9_TFLUSH: f->u.tflush.oldtag = 0xbeef; break;
    case P9_TWALK: {
        uint16_t n = variant == 1 ? 0 : variant == 2 ? P9_MAXWELEM : 3;

        f->u.twalk.fid = 32;
        f->u.twalk.newfid = 33;
        f->u.twalk.nwname = n;
        for (uint16_t i = 0; i < n; i++) {
            f->u.twalk.wname[i] = S(names[(i + (variant == 0 ? 3 : 0)) %
                                          (sizeof(names) / sizeof(names[0]))]);
        }
        break;
    }
    case P9_RWALK: {
        uint16_t n = variant == 1 ? 0 : variant == 2 ? P9_MAXWELEM : 2;

        f->u.rwalk.nwqid = n;
        for (uint16_t i = 0; i < n; i++) {
            f->u.rwalk.wqid[i] = Q((uint8_t)(i == 0 ? P9_QTDIR : 0), 10u + i);
        }
        break;
    }
    case P9_TREAD:
        f->u.tread.fid = 34;
        f->u.tread.offset = 0x0000000123456789ull;
        f->u.tread.count = 0x00100000;
        break;
    case P9_RREAD: f->u.rread.data = DATA(variant); break;
    case P9_TWRITE:
        f->u.twrite.fid = 35;
        f->u.twrite.offset = 0x0a0b0c0d0e0f1011ull;
        f->u.twrite.data = DATA(variant);
        break;
    case P9_RWRITE: f->u.rwrite.count = 0x00012345; break;
    case P9_TCLUNK: f->u.tclunk.fid = 36; break;
    case P9_TREMOVE: f->u.tremove.fid = 37; break;
    default:
        /* Empty-body R-messages. */
        break;
    }
}
