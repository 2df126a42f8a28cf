#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seed programs for tests/fuzz/fuzz_session.c (see its header comment for
the format).  Usage: gen_session_corpus.py DIR  (writes DIR/seed-*)."""
import os
import sys

(VERSION, ATTACH, WALK, LOPEN, LCREATE, READ, WRITE, CLUNK, REMOVE, GETATTR,
 SETATTR, READDIR, MKDIR, SYMLINK, MKNOD, LINK, RENAME, RENAMEAT, UNLINKAT,
 XATTRWALK, XATTRCREATE, LOCK, GETLOCK, FSYNC, STATFS, READLINK, FLUSH, RAW,
 MUTATE, REPEAT, SYNC, RELEASE, CLOSE, SETTLE) = range(34)

# indexes into the name dictionary of fuzz_session.c
N = {"d": 0, "f": 1, "l": 2, "fifo": 3, "new": 4, "x": 5, "y": 6, "..": 7,
     ".": 8, "": 9, "a/b": 10, "e": 11, "dev": 12, "d2": 13, "bin": 14,
     "long": 15}
PT, SHORT, SPLIT, INLINE, NOPRE, RBFAIL = 1, 2, 4, 8, 16, 32


def walk(fid, newfid, *names):
    return [WALK, fid, newfid, len(names)] + [N[n] for n in names]


def tagged(op, tag):
    """The same op with an explicit tag byte."""
    return [op | 0x80, tag]


SEEDS = {
    # a file's life: create, write, read, getattr, readdir, remove
    "file-io": [0] + walk(0, 1) + [LCREATE, 1, N["new"], 2, 0, 0,
               WRITE, 1, 0x90, 0, READ, 1, 0, 4, GETATTR, 1, 1,
               FSYNC, 1, 0, CLUNK, 1, SYNC] + walk(0, 2, "d") + [SYNC] +
               [LOPEN, 2, 5, READDIR, 2, 0, 4, READDIR, 2, 3, 3,
                CLUNK, 2] + walk(0, 3, "new") + [REMOVE, 3, SYNC],
    # namespace ops
    "namespace": [0, MKDIR, 0, N["d2"], 1, SYMLINK, 0, N["x"], N["f"],
                  MKNOD, 0, N["y"], 2, 1, 3] + walk(0, 1, "f") +
                 [LINK, 0, 1, N["e"], RENAMEAT, 0, N["x"], 0, N["new"],
                  RENAME, 1, 0, N["x"], UNLINKAT, 0, N["d2"], 1,
                  UNLINKAT, 0, N["y"], 0, STATFS, 0, SYNC] +
                 walk(0, 2, "l") + [READLINK, 2, GETATTR, 2, 1],
    # xattrs: list, get, set a new one, remove it
    "xattr": [0] + walk(0, 1, "f") + [XATTRWALK, 0, 1, 2, READ, 2, 0, 4,
              CLUNK, 2, XATTRCREATE, 2, 1, 1, 0, WRITE, 1, 5, 0,
              CLUNK, 1, SYNC] + walk(0, 3, "f") +
             [XATTRCREATE, 0, 3, 0, 0, CLUNK, 3],
    # locks on an open file
    "locks": [0] + walk(0, 1, "f") + [LOPEN, 1, 2, LOCK, 1, 1, 0, 0, 0, 9,
              GETLOCK, 1, 0, 0, 0, 9, LOCK, 1, 2, 0, 0, 0, 9],
    # flush a slow request (open of the FIFO waits until released)
    "flush-slow": [0] + walk(0, 1, "fifo") + [LOPEN, 1, 0, SETTLE, FLUSH, 0,
                   RELEASE, SYNC],
    # the known crash: 2000 Tflush, each flushing the one before, behind
    # one slow request (recursion p9s_respond -> conn_req_done)
    "flush-chain-2000": [0] + walk(0, 1, "fifo") + [LOPEN, 1, 0, SETTLE,
                         REPEAT, 0xcf, 0x07, FLUSH, 0, SYNC],
    # a short chain and a flush of a flush
    "flush-chain-8": [0] + walk(0, 1, "fifo") + [LOPEN, 1, 0, SETTLE,
                      REPEAT, 7, 0, FLUSH, 0, SYNC],
    # tag reuse: two requests with tag 3 while the first is slow
    "tag-reuse": [0] + walk(0, 1, "fifo") + tagged(LOPEN, 3) + [1, 0, SETTLE] +
                 tagged(GETATTR, 3) + [0, 1],
    # close the session with requests in flight
    "close-inflight": [0] + walk(0, 1, "fifo") + [LOPEN, 1, 0, SETTLE] +
                      walk(0, 2, "f") + [LOPEN, 2, 0, READ, 2, 0, 4, CLOSE],
    # raw frames: a Twalk body cut short, garbage type, a mutated Tgetattr
    "raw": [0, RAW, 9, 110, 1, 0, 0, 0, 0, 0, 1, 0,
            RAW, 3, 0xff, 5, 0, GETATTR, 0, 1, MUTATE, 7, 0x41],
    # a raw Tflush (tag 9) of the slow Tlopen (tag 19)
    "raw-flush": [0] + walk(0, 1, "fifo") + [LOPEN, 1, 0, SETTLE,
                  RAW, 5, 108, 9, 0, 19, 0, SYNC],
    # Tversion in the middle resets the session (fids go away)
    "reversion": [0] + walk(0, 1, "d") + [LOPEN, 1, 5, VERSION, 1, 0,
                  READDIR, 1, 0, 4, ATTACH, 0, 0, CLUNK, 0],
    # split frames, short reply space, inline submits
    "split-short": [SPLIT | SHORT | INLINE] + walk(0, 1, "f") +
                   [0, 0, LOPEN, 1, 0, 0, 0, READ, 1, 0, 5, 0, 0,
                    GETATTR, 1, 1, 0, 0],
    # no preamble: requests before Tversion / Tattach
    "no-preamble": [NOPRE, GETATTR, 0, 1, ATTACH, 0, 0, VERSION, 2, 1,
                    ATTACH, 0, 1, WALK, 1, 2, 1, N[".."]],
    # bad names and deep walks
    "names": [0] + walk(0, 1, "..", "..", "d", "..", "d", "e") +
             walk(0, 2, "a/b") + walk(0, 3, ".") + walk(0, 4, "") +
             walk(0, 5, "long") + [MKDIR, 0, N["bin"], 0, LCREATE, 0,
                                   N["long"], 2, 0, 0],
    # the same on the passthrough backend
    "pt-file-io": [PT] + walk(0, 1) + [LCREATE, 1, N["new"], 2, 0, 0,
                   WRITE, 1, 0x90, 0, READ, 1, 0, 4, CLUNK, 1] +
                  walk(0, 2, "fifo") + [LOPEN, 2, 0, SETTLE, FLUSH, 0, SYNC],
    # reply_buf refusing some requests
    "rbuf-fail": [RBFAIL] + [GETATTR, 0, 1] * 20,
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    for name, prog in SEEDS.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(bytes(b & 0xff for b in prog))


if __name__ == "__main__":
    main()
