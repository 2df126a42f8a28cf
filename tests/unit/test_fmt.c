/* SPDX-License-Identifier: MIT */
/*
 * p9_format (exact lines, escaping, never past 'size'), type names, and
 * the open-flag / errno mappings.
 */
#include "proto/p9_codec.h"
#include "samples.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

static void
test_names(void)
{
    int named = 0;
    int tmsgs = 0;

    tap_ok(strcmp(p9_type_name(P9_TWALK), "Twalk") == 0 &&
               strcmp(p9_type_name(P9_RLERROR), "Rlerror") == 0 &&
               strcmp(p9_type_name(P9_RXATTRCREATE), "Rxattrcreate") == 0,
           "type names");
    tap_ok(p9_type_name(0) == NULL && p9_type_name(106) == NULL &&
               p9_type_name(255) == NULL,
           "unknown ids have no name");
    for (size_t i = 0; i < sample_ntypes; i++) {
        named += p9_type_name(sample_types[i]) != NULL;
        tmsgs += p9_is_tmsg(sample_types[i]);
    }
    tap_ok(named == (int)sample_ntypes, "every message has a name");
    tap_ok(tmsgs == ((int)sample_ntypes - 1) / 2 && p9_is_tmsg(P9_TVERSION) &&
               !p9_is_tmsg(P9_RVERSION) && !p9_is_tmsg(P9_TLERROR) &&
               !p9_is_tmsg(0),
           "p9_is_tmsg: %d T-messages", tmsgs);
}

static void
test_format_lines(void)
{
    struct p9_fcall f;
    char buf[256];

    memset(&f, 0, sizeof(f));
    f.type = P9_TWALK;
    f.tag = 3;
    f.u.twalk.fid = 1;
    f.u.twalk.newfid = 2;
    f.u.twalk.nwname = 2;
    f.u.twalk.wname[0].s = "a";
    f.u.twalk.wname[0].len = 1;
    f.u.twalk.wname[1].s = "bc";
    f.u.twalk.wname[1].len = 2;
    p9_format(&f, buf, sizeof(buf));
    tap_ok(strcmp(buf, "Twalk tag 3 fid 1 newfid 2 nwname 2 'a' 'bc'") == 0,
           "Twalk line: %s", buf);

    memset(&f, 0, sizeof(f));
    f.type = P9_TLCREATE;
    f.tag = 1;
    f.u.tlcreate.fid = 4;
    f.u.tlcreate.name.s = "q'\\\x01\xff";
    f.u.tlcreate.name.len = 5;
    f.u.tlcreate.flags = 0101;
    f.u.tlcreate.mode = 0644;
    p9_format(&f, buf, sizeof(buf));
    tap_ok(strcmp(buf, "Tlcreate tag 1 fid 4 name 'q\\'\\\\\\x01\\xff' "
                       "flags 0101 mode 0644 gid 0") == 0,
           "escaped string, octal flags: %s", buf);

    memset(&f, 0, sizeof(f));
    f.type = P9_RLOPEN;
    f.tag = 2;
    f.u.rlopen.qid.type = P9_QTDIR;
    f.u.rlopen.qid.version = 5;
    f.u.rlopen.qid.path = 0xabc;
    f.u.rlopen.iounit = 4096;
    p9_format(&f, buf, sizeof(buf));
    tap_ok(strcmp(buf, "Rlopen tag 2 qid (80 5 abc) iounit 4096") == 0,
           "qid rendering: %s", buf);

    memset(&f, 0, sizeof(f));
    f.type = P9_RREAD;
    f.tag = 2;
    f.u.rread.data.len = 77;
    p9_format(&f, buf, sizeof(buf));
    tap_ok(strcmp(buf, "Rread tag 2 count 77") == 0,
           "data shows its count only (in-place data not read): %s", buf);

    memset(&f, 0, sizeof(f));
    f.type = P9_RCLUNK;
    f.tag = 65535;
    p9_format(&f, buf, sizeof(buf));
    tap_ok(strcmp(buf, "Rclunk tag 65535") == 0, "empty body: %s", buf);

    memset(&f, 0, sizeof(f));
    f.type = 200;
    p9_format(&f, buf, sizeof(buf));
    tap_ok(strcmp(buf, "T?200 tag 0") == 0, "unknown type: %s", buf);

    /* A corrupt count in a caller-built struct never reads past wname[] */
    memset(&f, 0, sizeof(f));
    f.type = P9_TWALK;
    f.u.twalk.nwname = 60000;
    p9_format(&f, buf, sizeof(buf));
    tap_ok(strncmp(buf, "Twalk tag 0 fid 0 newfid 0 nwname 60000 ''", 42) == 0,
           "nwname > 16 is clamped when printing");
}

/* Every sample, every buffer size: NUL-terminated inside 'size', nothing
 * written after it, a cut line ends in "...". */
static void
test_format_sizes(void)
{
    int bad = 0;
    int lines = 0;

    for (size_t i = 0; i < sample_ntypes; i++) {
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            struct p9_fcall f;
            char full[4096];
            char buf[4096 + 16];
            size_t flen;

            sample_fcall(sample_types[i], v, &f);
            p9_format(&f, full, sizeof(full));
            flen = strlen(full);
            if (strncmp(full, p9_type_name(f.type),
                        strlen(p9_type_name(f.type))) != 0) {
                bad++;
            }
            for (size_t size = 0; size <= flen + 2; size++) {
                size_t l;

                memset(buf, 0x5a, sizeof(buf));
                p9_format(&f, buf, size);
                if (size == 0) {
                    bad += buf[0] != 0x5a;
                    continue;
                }
                for (size_t k = size; k < size + 16; k++) {
                    bad += buf[k] != 0x5a;
                }
                l = strnlen(buf, size);
                if (l >= size) {
                    bad++;
                    continue;
                }
                if (size > flen) {
                    bad += strcmp(buf, full) != 0;
                } else if (size >= 4) {
                    bad += l < 3 || strcmp(buf + l - 3, "...") != 0;
                    bad += strncmp(buf, full, l - 3) != 0;
                }
            }
            lines++;
        }
    }
    tap_ok(bad == 0, "p9_format at every size 0..len+2 for %d samples", lines);
}

static void
test_oflags(void)
{
    /* clang-format off */
    static const struct {
        uint32_t dotl;
        int o;
    } bits[] = {
        { P9_DOTL_CREATE, O_CREAT },       { P9_DOTL_EXCL, O_EXCL },
        { P9_DOTL_NOCTTY, O_NOCTTY },      { P9_DOTL_TRUNC, O_TRUNC },
        { P9_DOTL_APPEND, O_APPEND },      { P9_DOTL_NONBLOCK, O_NONBLOCK },
        { P9_DOTL_DSYNC, O_DSYNC },        { P9_DOTL_FASYNC, O_ASYNC },
        { P9_DOTL_DIRECT, O_DIRECT },      { P9_DOTL_DIRECTORY, O_DIRECTORY },
        { P9_DOTL_NOFOLLOW, O_NOFOLLOW },  { P9_DOTL_NOATIME, O_NOATIME },
        { P9_DOTL_CLOEXEC, O_CLOEXEC },    { P9_DOTL_SYNC, O_SYNC },
        { P9_DOTL_LARGEFILE, O_LARGEFILE },
    };
    /* clang-format on */
    int bad = 0;
    uint32_t all = 0;

    tap_ok(p9_dotl_to_oflags(P9_DOTL_RDONLY) == O_RDONLY &&
               p9_dotl_to_oflags(P9_DOTL_WRONLY) == O_WRONLY &&
               p9_dotl_to_oflags(P9_DOTL_RDWR) == O_RDWR &&
               p9_dotl_to_oflags(P9_DOTL_NOACCESS) == O_ACCMODE,
           "access modes");
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        bad += p9_dotl_to_oflags(bits[i].dotl | P9_DOTL_RDWR) !=
               (bits[i].o | O_RDWR);
        if (bits[i].o != 0 && bits[i].dotl != P9_DOTL_SYNC) {
            bad += p9_oflags_to_dotl(bits[i].o | O_WRONLY) !=
                   (bits[i].dotl | P9_DOTL_WRONLY);
            all |= bits[i].dotl;
        }
    }
    tap_ok(bad == 0, "each P9_DOTL_* bit maps to its O_* flag and back");
    tap_ok(p9_oflags_to_dotl(O_SYNC) == (P9_DOTL_SYNC | P9_DOTL_DSYNC) &&
               p9_oflags_to_dotl(O_DSYNC) == P9_DOTL_DSYNC,
           "O_SYNC implies DSYNC, as the Linux client sends it");
    tap_ok(p9_oflags_to_dotl(p9_dotl_to_oflags(all | P9_DOTL_RDWR)) ==
               (all | P9_DOTL_RDWR),
           "all bits round-trip");
    tap_ok(p9_dotl_to_oflags(0x80000000u) == O_RDONLY,
           "unknown bits are dropped");
}

static void
test_errno(void)
{
    tap_ok(p9_errno_to_dotl(ENOENT) == 2 && p9_errno_to_dotl(-EIO) == 5 &&
               p9_errno_to_dotl(EOPNOTSUPP) == EOPNOTSUPP &&
               p9_errno_to_dotl(-2147483647 - 1) == 0x80000000u,
           "errno is the identity on Linux (either sign)");
}

int
main(void)
{
    test_names();
    test_format_lines();
    test_format_sizes();
    test_oflags();
    test_errno();
    return tap_done();
}
