/* SPDX-License-Identifier: MIT */
/*
 * 9P2000.L wire protocol: constants, limits and the decoded form of every
 * message.  Shared by the server, the client library and the tools.
 *
 * Field names follow the 9P2000.L specification (diod protocol.md), so
 * docs/protocol.md and the code read alike.  Strings inside a decoded
 * message are views (struct p9_str) that borrow from the message buffer;
 * bulk data (Twrite, Rread, Rreaddir) is a struct p9_data that points into
 * the buffer's scatter-gather list without copying.
 */
#ifndef VIRTFS_P9_H
#define VIRTFS_P9_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* ---- limits ---------------------------------------------------------- */

#define P9_HDRSZ 7         /* size[4] type[1] tag[2] */
#define P9_IOHDRSZ 24      /* Twrite header: room reserved in msize */
#define P9_READDIRHDRSZ 24 /* same reservation for Treaddir */
#define P9_MAXWELEM 16     /* names per Twalk */
#define P9_MIN_MSIZE 4096  /* smallest msize we agree to */
#define P9_DEFAULT_MSIZE (1024u * 1024u)   /* server cap unless configured */
#define P9_MAX_MSIZE (16u * 1024u * 1024u) /* hard cap for --msize */
#define P9_NOTAG ((uint16_t)0xFFFF)
#define P9_NOFID ((uint32_t)0xFFFFFFFF)
#define P9_NONUNAME ((uint32_t)0xFFFFFFFF)
#define P9_VERSION_L "9P2000.L"
#define P9_QIDSZ 13
#define P9_NTYPES 256 /* values of a message's type byte */

/* ---- message ids ------------------------------------------------------ */

enum p9_type {
    P9_TLERROR = 6,
    P9_RLERROR = 7,
#define P9_MSG(NAME, name, ID, FLAGS, FID, RB) \
    P9_T##NAME = (ID), P9_R##NAME = (ID) + 1,
#include "virtfs/p9_msgs.def"
#undef P9_MSG
};

/* dispatch flags used in p9_msgs.def */
#define P9F_RO 0x1u
#define P9F_INLINE 0x2u
#define P9F_MUSTRUN 0x4u
#define P9F_MAYBLOCK 0x8u

/* ---- qid ---------------------------------------------------------------- */

#define P9_QTDIR 0x80
#define P9_QTAPPEND 0x40
#define P9_QTEXCL 0x20
#define P9_QTMOUNT 0x10
#define P9_QTAUTH 0x08
#define P9_QTTMP 0x04
#define P9_QTSYMLINK 0x02
#define P9_QTLINK 0x01
#define P9_QTFILE 0x00

struct p9_qid {
    uint8_t type;
    uint32_t version;
    uint64_t path;
};

/* ---- Tgetattr request_mask / Rgetattr valid ---------------------------- */

#define P9_GETATTR_MODE 0x00000001ULL
#define P9_GETATTR_NLINK 0x00000002ULL
#define P9_GETATTR_UID 0x00000004ULL
#define P9_GETATTR_GID 0x00000008ULL
#define P9_GETATTR_RDEV 0x00000010ULL
#define P9_GETATTR_ATIME 0x00000020ULL
#define P9_GETATTR_MTIME 0x00000040ULL
#define P9_GETATTR_CTIME 0x00000080ULL
#define P9_GETATTR_INO 0x00000100ULL
#define P9_GETATTR_SIZE 0x00000200ULL
#define P9_GETATTR_BLOCKS 0x00000400ULL
#define P9_GETATTR_BTIME 0x00000800ULL
#define P9_GETATTR_GEN 0x00001000ULL
#define P9_GETATTR_DATA_VERSION 0x00002000ULL
#define P9_GETATTR_BASIC 0x000007ffULL
#define P9_GETATTR_ALL 0x00003fffULL

/* ---- Tsetattr valid ------------------------------------------------------ */

#define P9_SETATTR_MODE 0x00000001u
#define P9_SETATTR_UID 0x00000002u
#define P9_SETATTR_GID 0x00000004u
#define P9_SETATTR_SIZE 0x00000008u
#define P9_SETATTR_ATIME 0x00000010u
#define P9_SETATTR_MTIME 0x00000020u
#define P9_SETATTR_CTIME 0x00000040u
#define P9_SETATTR_ATIME_SET 0x00000080u
#define P9_SETATTR_MTIME_SET 0x00000100u

/* ---- Tlopen / Tlcreate flags (Linux values, as the wire carries them) -- */

#define P9_DOTL_RDONLY 00000000
#define P9_DOTL_WRONLY 00000001
#define P9_DOTL_RDWR 00000002
#define P9_DOTL_NOACCESS 00000003
#define P9_DOTL_CREATE 00000100
#define P9_DOTL_EXCL 00000200
#define P9_DOTL_NOCTTY 00000400
#define P9_DOTL_TRUNC 00001000
#define P9_DOTL_APPEND 00002000
#define P9_DOTL_NONBLOCK 00004000
#define P9_DOTL_DSYNC 00010000
#define P9_DOTL_FASYNC 00020000
#define P9_DOTL_DIRECT 00040000
#define P9_DOTL_LARGEFILE 00100000
#define P9_DOTL_DIRECTORY 00200000
#define P9_DOTL_NOFOLLOW 00400000
#define P9_DOTL_NOATIME 01000000
#define P9_DOTL_CLOEXEC 02000000
#define P9_DOTL_SYNC 04000000

/* ---- Tunlinkat flags ----------------------------------------------------- */

#define P9_DOTL_AT_REMOVEDIR 0x200

/* ---- Tlock / Tgetlock ----------------------------------------------------- */

#define P9_LOCK_TYPE_RDLCK 0
#define P9_LOCK_TYPE_WRLCK 1
#define P9_LOCK_TYPE_UNLCK 2

#define P9_LOCK_SUCCESS 0
#define P9_LOCK_BLOCKED 1
#define P9_LOCK_ERROR 2
#define P9_LOCK_GRACE 3

#define P9_LOCK_FLAGS_BLOCK 1
#define P9_LOCK_FLAGS_RECLAIM 2

/* ---- Txattrcreate flags --------------------------------------------------- */

#define P9_XATTR_CREATE 1
#define P9_XATTR_REPLACE 2

/* ---- building blocks ------------------------------------------------------ */

/* A string inside a message: not NUL-terminated, owns no memory. */
struct p9_str {
    const char *s;
    uint16_t len;
};

/*
 * Bulk data inside a message.
 *
 * Decoded: 'iov'/'iovcnt'/'off' describe where the 'len' bytes start in the
 * source scatter-gather list (iov[0] + off); use p9_data_iov() to get an
 * iovec array for preadv/pwritev.  'ptr' is set too when the bytes are
 * contiguous.
 *
 * Encoded: if 'ptr' is non-NULL the encoder copies 'len' bytes from it;
 * if 'ptr' is NULL the bytes are already in place in the output buffer
 * (written there by the caller through p9_wbuf_iov()) and the encoder only
 * skips over them.
 */
struct p9_data {
    uint32_t len;
    const void *ptr;
    const struct iovec *iov;
    int iovcnt;
    size_t off;
};

/* ---- message bodies --------------------------------------------------------- */

struct p9_rlerror {
    uint32_t ecode;
};
struct p9_tstatfs {
    uint32_t fid;
};
struct p9_rstatfs {
    uint32_t type;
    uint32_t bsize;
    uint64_t blocks;
    uint64_t bfree;
    uint64_t bavail;
    uint64_t files;
    uint64_t ffree;
    uint64_t fsid;
    uint32_t namelen;
};
struct p9_tlopen {
    uint32_t fid;
    uint32_t flags;
};
struct p9_rlopen {
    struct p9_qid qid;
    uint32_t iounit;
};
struct p9_tlcreate {
    uint32_t fid;
    struct p9_str name;
    uint32_t flags;
    uint32_t mode;
    uint32_t gid;
};
struct p9_rlcreate {
    struct p9_qid qid;
    uint32_t iounit;
};
struct p9_tsymlink {
    uint32_t fid;
    struct p9_str name;
    struct p9_str symtgt;
    uint32_t gid;
};
struct p9_rsymlink {
    struct p9_qid qid;
};
struct p9_tmknod {
    uint32_t dfid;
    struct p9_str name;
    uint32_t mode;
    uint32_t major;
    uint32_t minor;
    uint32_t gid;
};
struct p9_rmknod {
    struct p9_qid qid;
};
struct p9_trename {
    uint32_t fid;
    uint32_t dfid;
    struct p9_str name;
};
struct p9_treadlink {
    uint32_t fid;
};
struct p9_rreadlink {
    struct p9_str target;
};
struct p9_tgetattr {
    uint32_t fid;
    uint64_t request_mask;
};
struct p9_rgetattr {
    uint64_t valid;
    struct p9_qid qid;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint64_t nlink;
    uint64_t rdev;
    uint64_t size;
    uint64_t blksize;
    uint64_t blocks;
    uint64_t atime_sec;
    uint64_t atime_nsec;
    uint64_t mtime_sec;
    uint64_t mtime_nsec;
    uint64_t ctime_sec;
    uint64_t ctime_nsec;
    uint64_t btime_sec;
    uint64_t btime_nsec;
    uint64_t gen;
    uint64_t data_version;
};
struct p9_tsetattr {
    uint32_t fid;
    uint32_t valid;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint64_t size;
    uint64_t atime_sec;
    uint64_t atime_nsec;
    uint64_t mtime_sec;
    uint64_t mtime_nsec;
};
struct p9_txattrwalk {
    uint32_t fid;
    uint32_t newfid;
    struct p9_str name;
};
struct p9_rxattrwalk {
    uint64_t size;
};
struct p9_txattrcreate {
    uint32_t fid;
    struct p9_str name;
    uint64_t attr_size;
    uint32_t flags;
};
struct p9_treaddir {
    uint32_t fid;
    uint64_t offset;
    uint32_t count;
};
/* data holds dirents: qid[13] offset[8] type[1] name[s] (see p9_dirent) */
struct p9_rreaddir {
    struct p9_data data;
};
struct p9_tfsync {
    uint32_t fid;
    uint32_t datasync;
};
struct p9_tlock {
    uint32_t fid;
    uint8_t type;
    uint32_t flags;
    uint64_t start;
    uint64_t length;
    uint32_t proc_id;
    struct p9_str client_id;
};
struct p9_rlock {
    uint8_t status;
};
struct p9_tgetlock {
    uint32_t fid;
    uint8_t type;
    uint64_t start;
    uint64_t length;
    uint32_t proc_id;
    struct p9_str client_id;
};
struct p9_rgetlock {
    uint8_t type;
    uint64_t start;
    uint64_t length;
    uint32_t proc_id;
    struct p9_str client_id;
};
struct p9_tlink {
    uint32_t dfid;
    uint32_t fid;
    struct p9_str name;
};
struct p9_tmkdir {
    uint32_t dfid;
    struct p9_str name;
    uint32_t mode;
    uint32_t gid;
};
struct p9_rmkdir {
    struct p9_qid qid;
};
struct p9_trenameat {
    uint32_t olddirfid;
    struct p9_str oldname;
    uint32_t newdirfid;
    struct p9_str newname;
};
struct p9_tunlinkat {
    uint32_t dirfd;
    struct p9_str name;
    uint32_t flags;
};
struct p9_tversion {
    uint32_t msize;
    struct p9_str version;
};
struct p9_rversion {
    uint32_t msize;
    struct p9_str version;
};
struct p9_tauth {
    uint32_t afid;
    struct p9_str uname;
    struct p9_str aname;
    uint32_t n_uname;
};
struct p9_rauth {
    struct p9_qid aqid;
};
struct p9_tattach {
    uint32_t fid;
    uint32_t afid;
    struct p9_str uname;
    struct p9_str aname;
    uint32_t n_uname;
};
struct p9_rattach {
    struct p9_qid qid;
};
struct p9_tflush {
    uint16_t oldtag;
};
struct p9_twalk {
    uint32_t fid;
    uint32_t newfid;
    uint16_t nwname;
    struct p9_str wname[P9_MAXWELEM];
};
struct p9_rwalk {
    uint16_t nwqid;
    struct p9_qid wqid[P9_MAXWELEM];
};
struct p9_tread {
    uint32_t fid;
    uint64_t offset;
    uint32_t count;
};
struct p9_rread {
    struct p9_data data;
};
struct p9_twrite {
    uint32_t fid;
    uint64_t offset;
    struct p9_data data;
};
struct p9_rwrite {
    uint32_t count;
};
struct p9_tclunk {
    uint32_t fid;
};
struct p9_tremove {
    uint32_t fid;
};

/*
 * A whole message.  'type' selects the union member; R-messages with an
 * empty body (Rrename, Rsetattr, Rxattrcreate, Rfsync, Rlink, Rrenameat,
 * Runlinkat, Rflush, Rclunk, Rremove) use no member.
 */
struct p9_fcall {
    uint8_t type;
    uint16_t tag;
    union {
        struct p9_rlerror rlerror;
        struct p9_tstatfs tstatfs;
        struct p9_rstatfs rstatfs;
        struct p9_tlopen tlopen;
        struct p9_rlopen rlopen;
        struct p9_tlcreate tlcreate;
        struct p9_rlcreate rlcreate;
        struct p9_tsymlink tsymlink;
        struct p9_rsymlink rsymlink;
        struct p9_tmknod tmknod;
        struct p9_rmknod rmknod;
        struct p9_trename trename;
        struct p9_treadlink treadlink;
        struct p9_rreadlink rreadlink;
        struct p9_tgetattr tgetattr;
        struct p9_rgetattr rgetattr;
        struct p9_tsetattr tsetattr;
        struct p9_txattrwalk txattrwalk;
        struct p9_rxattrwalk rxattrwalk;
        struct p9_txattrcreate txattrcreate;
        struct p9_treaddir treaddir;
        struct p9_rreaddir rreaddir;
        struct p9_tfsync tfsync;
        struct p9_tlock tlock;
        struct p9_rlock rlock;
        struct p9_tgetlock tgetlock;
        struct p9_rgetlock rgetlock;
        struct p9_tlink tlink;
        struct p9_tmkdir tmkdir;
        struct p9_rmkdir rmkdir;
        struct p9_trenameat trenameat;
        struct p9_tunlinkat tunlinkat;
        struct p9_tversion tversion;
        struct p9_rversion rversion;
        struct p9_tauth tauth;
        struct p9_rauth rauth;
        struct p9_tattach tattach;
        struct p9_rattach rattach;
        struct p9_tflush tflush;
        struct p9_twalk twalk;
        struct p9_rwalk rwalk;
        struct p9_tread tread;
        struct p9_rread rread;
        struct p9_twrite twrite;
        struct p9_rwrite rwrite;
        struct p9_tclunk tclunk;
        struct p9_tremove tremove;
    } u;
};

/* One directory entry inside Rreaddir data. */
struct p9_dirent {
    struct p9_qid qid;
    uint64_t offset;
    uint8_t type;
    struct p9_str name;
};

#endif /* VIRTFS_P9_H */
