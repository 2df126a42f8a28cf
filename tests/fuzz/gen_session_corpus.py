#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seed programs for tests/fuzz/fuzz_session.c (see its header comment for
the format).  Usage: gen_session_corpus.py DIR  (writes DIR/seed-* and the
hand-written crash reproducers);
gen_session_corpus.py --dump FILE  (prints a program, roughly)."""
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
    # large reads of a passthrough file: the core lends the descriptor to
    # the transport's stage_fd (the stream transport splices); counts 65536
    # and UINT32_MAX, at offset 0 and beyond the end
    "pt-read-large": [PT] + walk(0, 1, "f") + [LOPEN, 1, 0, READ, 1, 0, 5,
                      READ, 1, 1, 6, READ, 1, 0, 6, READ, 1, 2, 5, CLUNK, 1],
    "pt-read-large-inline": [PT | INLINE] + walk(0, 1, "f") +
                            [LOPEN, 1, 0, READ, 1, 0, 5, READ, 1, 0, 6,
                             CLUNK, 1],
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
    "crash-flush-chain-2000": [0] + walk(0, 1, "fifo") + [LOPEN, 1, 0, SETTLE,
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
    # partial walks (the qids so far, newfid unbound): into a missing name,
    # through a file, up and down again
    "partial-walk": [0] + walk(0, 1, "d", "x") + walk(0, 2, "f", "e") +
                    walk(0, 3, "d", "..", "y") + [SYNC, GETATTR, 1, 1,
                                                  CLUNK, 2],
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


# argument layout of each op (b: byte, w: u16, d: u32, n: name,
# N: walk names, r: raw bytes, g: getattr mask, x: write)
ARGS = {VERSION: "bb", ATTACH: "bb", WALK: "bbN", LOPEN: "bb",
        LCREATE: "bnbbb", READ: "bbb", WRITE: "bbb", CLUNK: "b", REMOVE: "b",
        GETATTR: "bg", SETATTR: "bwbbbbbd", READDIR: "bbb", MKDIR: "bnb",
        SYMLINK: "bnn", MKNOD: "bnbbb", LINK: "bbn", RENAME: "bbn",
        RENAMEAT: "bnbn", UNLINKAT: "bnb", XATTRWALK: "bbb",
        XATTRCREATE: "bbbb", LOCK: "bbbbbb", GETLOCK: "bbbbb", FSYNC: "bb",
        STATFS: "b", READLINK: "b", FLUSH: "b", RAW: "r", MUTATE: "bb",
        REPEAT: "w", SYNC: "", RELEASE: "", CLOSE: "", SETTLE: ""}
OPNAMES = ("VERSION ATTACH WALK LOPEN LCREATE READ WRITE CLUNK REMOVE GETATTR "
           "SETATTR READDIR MKDIR SYMLINK MKNOD LINK RENAME RENAMEAT UNLINKAT "
           "XATTRWALK XATTRCREATE LOCK GETLOCK FSYNC STATFS READLINK FLUSH "
           "RAW MUTATE REPEAT SYNC RELEASE CLOSE SETTLE").split()


def dump(data):
    """Print a program one instruction a line (split-frame cut bytes and
    the exact tag of repeats are not shown)."""
    print("flags 0x%02x" % data[0])
    i = 1
    split = data[0] & SPLIT
    while i < len(data):
        op = data[i]
        i += 1
        code = (op & 0x7f) % len(ARGS)
        line = [OPNAMES[code]]
        if op & 0x80 and code not in (REPEAT, SYNC, RELEASE, CLOSE, SETTLE,
                                      RAW, MUTATE):
            line.append("tag=%d" % (data[i] if i < len(data) else -1))
            i += 1
        for a in ARGS[code]:
            if i >= len(data):
                break
            if a == "w":
                line.append(str(data[i] | (data[i + 1] << 8 if i + 1 < len(data) else 0)))
                i += 2
            elif a == "d":
                i += 4
            elif a == "g":
                line.append("mask=%d" % data[i])
                i += 1 if data[i] & 1 else 5
            elif a == "N":
                k = data[i] % 17
                i += 1
                line.append("names=%s" % list(data[i:i + k]))
                i += k
            elif a == "r":
                k = data[i]
                line.append("raw=%s" % data[i + 1:i + 1 + k].hex())
                i += 1 + k
            else:
                line.append(str(data[i]))
                i += 1
        if split and code not in (REPEAT, SYNC, RELEASE, CLOSE, SETTLE):
            i += 2
        print(" ".join(line))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--dump":
        with open(sys.argv[2], "rb") as f:
            dump(f.read())
        return
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    for name, prog in SEEDS.items():
        prefix = "" if name.startswith("crash-") else "seed-"
        with open(os.path.join(out, prefix + name), "wb") as f:
            f.write(bytes(b & 0xff for b in prog))


if __name__ == "__main__":
    main()
