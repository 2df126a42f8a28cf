/* SPDX-License-Identifier: MIT */
/*
 * libp9c: a 9P2000.L client library.
 *
 * One struct p9c_conn is one transport connection (unix socket, TCP, or an
 * fd the caller already has, e.g. one end of a socketpair).  A connection is
 * thread-safe and pipelined: any number of threads may issue RPCs on it at
 * the same time; each RPC gets its own tag, requests overlap on the wire and
 * replies are demultiplexed by tag ("whoever waits reads": the first waiter
 * that finds nobody reading reads frames and hands every reply to its owner,
 * so a lone synchronous caller pays no thread hop).
 *
 * Layers, from top to bottom:
 *   - POSIX-shaped operations on fid handles (struct p9c_fid): walk, open,
 *     pread, readdir, getattr, mkdir, ...  A fid handle must not be used by
 *     two threads at once when the operation changes it (open, create,
 *     clunk, remove, xattrcreate); read-only use (pread, getattr, walk from
 *     it) from many threads is fine.
 *   - Typed RPC: p9c_rpc() sends any struct p9_fcall and decodes the reply.
 *   - Raw RPC for tests: p9c_start_raw() / p9c_rpc_raw() send a pre-encoded
 *     frame and wait for the reply carrying its tag; p9c_send_bytes() writes
 *     arbitrary bytes; p9c_start() / p9c_wait() pipeline; p9c_flush()
 *     flushes an in-flight tag.
 *
 * Errors: every function returns 0 (or a byte count) on success and a
 * negative errno on failure.  An Rlerror reply becomes -ecode.  A reply
 * that violates the protocol (wrong type, bad size, count larger than asked,
 * nwqid > nwname, undecodable body) gives -EPROTO; a frame-level violation
 * (size out of bounds, unknown tag) also kills the connection, after which
 * every call fails with the same error.  The library never trusts the
 * server: all sizes and counts are checked before use.
 *
 * Fid numbers: the library allocates fid numbers below P9C_FID_USER_BASE;
 * numbers from P9C_FID_USER_BASE up are never used by the library, so tests
 * can pick them freely for raw messages (and wrap them with p9c_fid_wrap()).
 */
#ifndef VIRTFS_CLIENT_H
#define VIRTFS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "virtfs/p9.h"

#define P9C_FID_USER_BASE 0x40000000u
#define P9C_CLIENT_ID_MAX 256 /* bytes kept of a Rgetlock client_id (+NUL) */

struct p9c_conn;
struct p9c_req;

/*
 * A fid handle.  The fields are read-only for users; the library updates
 * them.  Freed by p9c_clunk(), p9c_remove() or p9c_fid_forget().
 */
struct p9c_fid {
    struct p9c_conn *conn; /* owning connection */
    uint32_t fid;          /* fid number on the wire */
    struct p9_qid qid;     /* from attach/walk (last element)/open/create */
    uint32_t iounit;       /* from Rlopen/Rlcreate; 0 if unopened or none */
    int32_t mode;          /* P9_DOTL_* flags once opened, -1 when unopened */
    bool owned;            /* fid number came from the library's allocator */
};

/* A decoded (or at least framed) reply; free with p9c_reply_free(). */
struct p9c_reply {
    uint8_t *frame;    /* the whole frame as received (size[4] type tag ...) */
    size_t len;        /* frame length */
    int decode_err;    /* 0 if 'f' is valid, else -EPROTO / -EOPNOTSUPP */
    struct p9_fcall f; /* decoded message; strings/data borrow from 'frame' */
    struct iovec seg;  /* private: 'frame' as the one segment data views use */
};

/* One directory entry from the readdir iterator. */
struct p9c_dirent {
    struct p9_qid qid;
    uint64_t offset;  /* server cookie for the entry after this one */
    uint8_t type;     /* DT_* value as sent by the server */
    const char *name; /* NUL-terminated; valid until the next p9c_dir_next() */
    uint16_t namelen;
};

/* Directory iterator (opaque). */
struct p9c_dir;

/* Byte-range lock description for p9c_lock() / p9c_getlock(). */
struct p9c_flock {
    uint8_t type;   /* P9_LOCK_TYPE_RDLCK / WRLCK / UNLCK */
    uint32_t flags; /* P9_LOCK_FLAGS_* (Tlock only) */
    uint64_t start;
    uint64_t length; /* 0 = to end of file */
    uint32_t proc_id;
    char client_id[P9C_CLIENT_ID_MAX]; /* NUL-terminated; truncated on input */
};

/* ---- connections ------------------------------------------------------- */

/**
 * p9c_connect() - open a connection to a server address.
 * @addr: "unix:PATH", "tcp:HOST:PORT" (HOST may be a name, IPv4 or
 *        [IPv6]), "fd:N" (an already connected fd, taken over), or a bare
 *        path containing '/' (unix socket).
 * @out: receives the new connection.
 *
 * No message is sent: call p9c_version() next.  Returns 0 or -errno
 * (-EINVAL for a malformed address).
 */
int p9c_connect(const char *addr, struct p9c_conn **out);

/**
 * p9c_connect_fd() - wrap an already connected stream fd.
 * @fd: socket (or any bidirectional stream); ownership passes to the
 *      connection, which closes it in p9c_close() (also on failure).
 * @out: receives the new connection.
 */
int p9c_connect_fd(int fd, struct p9c_conn **out);

/**
 * p9c_version() - negotiate "9P2000.L" and the message size.
 * @c: connection with no request in flight.
 * @msize: the msize to propose (0 = P9_DEFAULT_MSIZE); capped at
 *         P9_MAX_MSIZE.
 *
 * Sends Tversion (tag NOTAG).  Fails with -EPROTONOSUPPORT if the server
 * answers another version, -EPROTO if its msize is above ours or below
 * P9_MIN_MSIZE.  On success p9c_msize() returns the agreed msize.
 */
int p9c_version(struct p9c_conn *c, uint32_t msize);

/** p9c_msize() - the negotiated msize (or the proposal before Rversion). */
uint32_t p9c_msize(const struct p9c_conn *c);

/**
 * p9c_set_timeout() - bound every later wait on this connection.
 * @ms: milliseconds, 0 = wait forever (the default).
 *
 * A wait that times out returns -ETIMEDOUT; the request's tag stays
 * reserved until its reply (or the connection's end) so a late reply is
 * never mistaken for another request's.
 */
void p9c_set_timeout(struct p9c_conn *c, unsigned ms);

/**
 * p9c_fd() - the connection's fd, e.g. to shutdown(2) it in a test.
 * The connection keeps ownership.
 */
int p9c_fd(const struct p9c_conn *c);

/**
 * p9c_error() - 0 while the connection is usable, else the -errno that
 * ended it (-ECONNRESET at EOF, -EPROTO after a frame violation, ...).
 */
int p9c_error(const struct p9c_conn *c);

/**
 * p9c_close() - close the fd, fail every pending request with -ECONNRESET
 * and free the connection.  No other thread may use @c any more, and every
 * started request must have been waited for or abandoned.  Every fid
 * handle must have been clunked, removed or forgotten first (they point at
 * the connection).  The server drops its fids when the connection ends.
 * NULL is allowed.
 */
void p9c_close(struct p9c_conn *c);

/**
 * p9c_mount() - connect + version + attach in one call.
 * @addr: as for p9c_connect().
 * @msize: as for p9c_version().
 * @uname, @n_uname, @aname: as for p9c_attach().
 * @conn_out, @root_out: receive the connection and the attach fid.
 */
int p9c_mount(const char *addr, uint32_t msize, const char *uname,
              uint32_t n_uname, const char *aname, struct p9c_conn **conn_out,
              struct p9c_fid **root_out);

/* ---- fid handles ---------------------------------------------------------- */

/**
 * p9c_attach() - Tattach without authentication (afid = NOFID).
 * @uname: user name ("" allowed, NULL = "").
 * @n_uname: numeric uid, or P9_NONUNAME.
 * @aname: tree to attach ("" or NULL for the default).
 * @out: receives the new fid handle (its qid is the root's).
 */
int p9c_attach(struct p9c_conn *c, const char *uname, uint32_t n_uname,
               const char *aname, struct p9c_fid **out);

/**
 * p9c_fid_wrap() - make a handle for a fid number the caller created with
 * raw messages (normally >= P9C_FID_USER_BASE).  The library will not
 * recycle that number.  Returns NULL on allocation failure.
 */
struct p9c_fid *p9c_fid_wrap(struct p9c_conn *c, uint32_t fid,
                             const struct p9_qid *qid);

/**
 * p9c_fid_forget() - free a handle WITHOUT sending Tclunk (the server is
 * assumed to have dropped the fid already).  NULL is allowed.
 */
void p9c_fid_forget(struct p9c_fid *f);

/**
 * p9c_clunk() - Tclunk and free the handle.  The handle is freed and its
 * number released even when the server answers an error (the fid is gone
 * either way, per the protocol); that error is returned.  NULL gives 0.
 */
int p9c_clunk(struct p9c_fid *f);

/** p9c_remove() - Tremove and free the handle (same rules as p9c_clunk). */
int p9c_remove(struct p9c_fid *f);

/**
 * p9c_walk() - walk a relative path "a/b/c" from @f to a new fid.
 * @path: components separated by '/'; empty components are skipped, so
 *        "", "/" and NULL clone @f.  Sent in Twalk batches of at most
 *        P9_MAXWELEM names; names longer than 65535 give -ENAMETOOLONG.
 * @out: receives the new fid; its qid is the last element's.
 *
 * A partial walk gives -ENOENT (and no fid: intermediate fids are
 * clunked).  A reply with nwqid > nwname gives -EPROTO.
 */
int p9c_walk(struct p9c_fid *f, const char *path, struct p9c_fid **out);

/**
 * p9c_walk_names() - one Twalk with explicit names (for tests).
 * @nwname: 0..P9_MAXWELEM names in @names.
 * @qids: receives up to @nwname qids (may be NULL).
 * @nwqid: receives the number of qids returned.
 * @out: receives the new fid if the walk was complete, else NULL.
 *
 * Returns 0 for a complete or partial walk (check *nwqid), -errno when
 * the server answers Rlerror.
 */
int p9c_walk_names(struct p9c_fid *f, uint16_t nwname, const char *const *names,
                   struct p9_qid *qids, uint16_t *nwqid, struct p9c_fid **out);

/**
 * p9c_open() - Tlopen @f with P9_DOTL_* @flags.  Updates f->qid,
 * f->iounit and f->mode.
 */
int p9c_open(struct p9c_fid *f, uint32_t flags);

/**
 * p9c_create() - Tlcreate: create file @name in directory @dir and open it.
 * Per the protocol, @dir itself becomes the open new file (clone it first
 * with p9c_walk(dir, "", ...) to keep the directory).
 * @gid: group for the new file, or (uint32_t)-1 to let the server pick
 *       (sent as-is).
 */
int p9c_create(struct p9c_fid *dir, const char *name, uint32_t flags,
               uint32_t mode, uint32_t gid);

/**
 * p9c_pread() - read up to @count bytes at @offset from an open fid.
 * Large reads are split into Tread chunks of at most iounit (or
 * msize - P9_IOHDRSZ).  Returns the bytes read (short at end of file,
 * 0 at EOF) or -errno.  Rread count > requested gives -EPROTO.
 */
ssize_t p9c_pread(struct p9c_fid *f, void *buf, size_t count, uint64_t offset);

/**
 * p9c_pwrite() - write @count bytes at @offset, split like p9c_pread().
 * Returns bytes written (short if the server wrote less) or -errno.
 * Rwrite count > sent gives -EPROTO.
 */
ssize_t p9c_pwrite(struct p9c_fid *f, const void *buf, size_t count,
                   uint64_t offset);

/**
 * p9c_iosize() - the largest payload one Tread/Twrite on @f carries:
 * iounit if the server gave one, capped at msize - P9_IOHDRSZ.
 */
uint32_t p9c_iosize(const struct p9c_fid *f);

/** p9c_fsync() - Tfsync; @datasync non-zero for fdatasync semantics. */
int p9c_fsync(struct p9c_fid *f, bool datasync);

/* ---- directories ------------------------------------------------------------ */

/**
 * p9c_readdir() - one Treaddir: raw dirent bytes into @buf.
 * @count: bytes to ask for (capped at msize - P9_READDIRHDRSZ).
 * Returns the number of bytes (0 at end) or -errno.  The bytes are
 * validated (every dirent parses, names non-empty without '/').
 */
ssize_t p9c_readdir(struct p9c_fid *f, uint64_t offset, void *buf,
                    uint32_t count);

/**
 * p9c_dir_open() - start iterating an opened directory fid.
 * @count: Treaddir count per request, 0 = msize - P9_READDIRHDRSZ.
 * The fid stays owned by the caller and must outlive the iterator.
 */
int p9c_dir_open(struct p9c_fid *f, uint32_t count, struct p9c_dir **out);

/**
 * p9c_dir_next() - next entry ("." and ".." included, as the server sends
 * them).  Returns 1 with *ent filled, 0 at the end, or -errno.
 */
int p9c_dir_next(struct p9c_dir *d, struct p9c_dirent *ent);

/** p9c_dir_close() - free the iterator (does not clunk the fid). */
void p9c_dir_close(struct p9c_dir *d);

/** p9c_mkdir() - Tmkdir @name in @dir; @qid (may be NULL) gets its qid. */
int p9c_mkdir(struct p9c_fid *dir, const char *name, uint32_t mode,
              uint32_t gid, struct p9_qid *qid);

/** p9c_symlink() - Tsymlink @name -> @target in @dir. */
int p9c_symlink(struct p9c_fid *dir, const char *name, const char *target,
                uint32_t gid, struct p9_qid *qid);

/** p9c_mknod() - Tmknod @name in @dir (mode includes the S_IF* type). */
int p9c_mknod(struct p9c_fid *dir, const char *name, uint32_t mode,
              uint32_t major, uint32_t minor, uint32_t gid, struct p9_qid *qid);

/** p9c_link() - Tlink: hard link @f as @name in @dir. */
int p9c_link(struct p9c_fid *dir, struct p9c_fid *f, const char *name);

/**
 * p9c_readlink() - Treadlink into @buf (NUL-terminated).
 * Returns the target length, or -ERANGE if @size cannot hold it + NUL.
 */
ssize_t p9c_readlink(struct p9c_fid *f, char *buf, size_t size);

/** p9c_rename() - Trename: move @f into @dir under @name. */
int p9c_rename(struct p9c_fid *f, struct p9c_fid *dir, const char *name);

/** p9c_renameat() - Trenameat. */
int p9c_renameat(struct p9c_fid *olddir, const char *oldname,
                 struct p9c_fid *newdir, const char *newname);

/** p9c_unlinkat() - Tunlinkat; @flags 0 or P9_DOTL_AT_REMOVEDIR. */
int p9c_unlinkat(struct p9c_fid *dir, const char *name, uint32_t flags);

/* ---- attributes ------------------------------------------------------------- */

/**
 * p9c_getattr() - Tgetattr with @mask (P9_GETATTR_*) into @out.
 * out->valid says which fields the server filled.
 */
int p9c_getattr(struct p9c_fid *f, uint64_t mask, struct p9_rgetattr *out);

/** p9c_setattr() - Tsetattr with @in (in->fid is ignored; @f is used). */
int p9c_setattr(struct p9c_fid *f, const struct p9_tsetattr *in);

/** p9c_statfs() - Tstatfs into @out. */
int p9c_statfs(struct p9c_fid *f, struct p9_rstatfs *out);

/* ---- extended attributes ------------------------------------------------------ */

/**
 * p9c_xattrwalk() - Txattrwalk: new fid @out for reading xattr @name
 * ("" = the name list); *size gets the value size.
 */
int p9c_xattrwalk(struct p9c_fid *f, const char *name, struct p9c_fid **out,
                  uint64_t *size);

/**
 * p9c_xattrcreate() - Txattrcreate: turn @f into an xattr-write fid for
 * @name of @size bytes; write the value with p9c_pwrite() and commit with
 * p9c_clunk().
 */
int p9c_xattrcreate(struct p9c_fid *f, const char *name, uint64_t size,
                    uint32_t flags);

/**
 * p9c_xattr_get() - read xattr @name of @f into @buf.  With @size 0 only
 * returns the value size.  Returns the value length, -ERANGE if @buf is
 * too small, or -errno (-ENODATA when missing, as the server says).
 */
ssize_t p9c_xattr_get(struct p9c_fid *f, const char *name, void *buf,
                      size_t size);

/**
 * p9c_xattr_list() - the NUL-separated name list, like listxattr(2);
 * same return rules as p9c_xattr_get().
 */
ssize_t p9c_xattr_list(struct p9c_fid *f, void *buf, size_t size);

/**
 * p9c_xattr_set() - set xattr @name of @f (@f is not changed: a clone is
 * used).  @flags: 0, P9_XATTR_CREATE or P9_XATTR_REPLACE.
 */
int p9c_xattr_set(struct p9c_fid *f, const char *name, const void *value,
                  size_t size, uint32_t flags);

/** p9c_xattr_remove() - remove xattr @name (Txattrcreate with size 0). */
int p9c_xattr_remove(struct p9c_fid *f, const char *name);

/* ---- locks ------------------------------------------------------------------ */

/**
 * p9c_lock() - Tlock with @l (type/flags/start/length/proc_id/client_id).
 * @status: receives P9_LOCK_SUCCESS / BLOCKED / ERROR / GRACE.
 */
int p9c_lock(struct p9c_fid *f, const struct p9c_flock *l, uint8_t *status);

/**
 * p9c_getlock() - Tgetlock with @l as the query; @l is overwritten with
 * the server's answer (type UNLCK when the range is free).
 */
int p9c_getlock(struct p9c_fid *f, struct p9c_flock *l);

/* ---- generic, raw and asynchronous RPC ------------------------------------------ */

/**
 * p9c_rpc() - send any T-message and wait for its reply.
 * @t: the message; t->tag is ignored (a free tag is allocated).
 * @out: receives the reply, which is the matching R-message type and
 *       decoded (free it with p9c_reply_free()).
 *
 * Returns 0, -ecode for Rlerror (no reply is returned), -EPROTO for a
 * malformed reply or a wrong type, or a connection error.
 */
int p9c_rpc(struct p9c_conn *c, const struct p9_fcall *t,
            struct p9c_reply **out);

/**
 * p9c_start() - send @t asynchronously (tag allocated here).  The request
 * must later be passed to p9c_wait() or p9c_req_abandon() exactly once.
 */
int p9c_start(struct p9c_conn *c, const struct p9_fcall *t,
              struct p9c_req **out);

/**
 * p9c_start_raw() - send a pre-encoded frame asynchronously.  The frame's
 * tag (bytes 5-6) is the tag waited for; it must not be in flight already
 * (-EBUSY).  Frames shorter than P9_HDRSZ give -EINVAL (use
 * p9c_send_bytes()).  A Tflush frame (type 108, 9 bytes) gets Tflush
 * semantics: when its Rflush arrives, the flushed request is completed
 * with -EINTR if it had no reply yet.
 */
int p9c_start_raw(struct p9c_conn *c, const void *frame, size_t len,
                  struct p9c_req **out);

/** p9c_req_tag() - the tag a started request travels with. */
uint16_t p9c_req_tag(const struct p9c_req *r);

/**
 * p9c_wait() - wait for a started request and free it.
 * @out: receives the reply of any type, Rlerror included (decode it
 *       yourself if out->decode_err != 0); may be NULL to discard it.
 *
 * Returns 0 with a reply, -EINTR if the request was flushed (Rflush came
 * and no reply preceded it), -ETIMEDOUT (see p9c_set_timeout()), or the
 * connection's error.  The request is freed in every case.
 */
int p9c_wait(struct p9c_req *r, struct p9c_reply **out);

/**
 * p9c_req_abandon() - give up on a started request without waiting; its
 * tag is released when the reply (or Rflush) arrives.
 */
void p9c_req_abandon(struct p9c_req *r);

/**
 * p9c_rpc_raw() - p9c_start_raw() + p9c_wait(): send a pre-encoded frame
 * and return the reply to its tag (of any type, possibly undecodable).
 */
int p9c_rpc_raw(struct p9c_conn *c, const void *frame, size_t len,
                struct p9c_reply **out);

/**
 * p9c_send_bytes() - write arbitrary bytes to the connection (nothing is
 * registered or waited for): for malformed-frame tests.
 */
int p9c_send_bytes(struct p9c_conn *c, const void *buf, size_t len);

/**
 * p9c_flush() - send Tflush(@oldtag) and wait for Rflush.  If the flushed
 * request had no reply yet, its waiter gets -EINTR.
 */
int p9c_flush(struct p9c_conn *c, uint16_t oldtag);

/**
 * p9c_encode() - encode @t (with its own t->tag) into a new buffer, e.g.
 * to build frames for p9c_start_raw() and then corrupt them.  *buf is
 * malloc'ed (free() it); *len gets the size.
 */
int p9c_encode(const struct p9_fcall *t, uint8_t **buf, size_t *len);

/**
 * p9c_check_reply() - check that @r is @rtype and decoded: 0, -ecode
 * for a well-formed Rlerror, else -EPROTO.
 */
int p9c_check_reply(const struct p9c_reply *r, uint8_t rtype);

/** p9c_reply_free() - free a reply.  NULL is allowed. */
void p9c_reply_free(struct p9c_reply *r);

#endif /* VIRTFS_CLIENT_H */
