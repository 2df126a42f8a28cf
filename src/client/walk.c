/* SPDX-License-Identifier: MIT */
/*
 * libp9c: walk.  A path "a/b/c" is split at '/' (empty components are
 * skipped) and sent in Twalk batches of at most P9_MAXWELEM names: the
 * first batch walks fid -> newfid, the later ones newfid -> newfid (allowed
 * because newfid is never opened).  Names are views into the caller's
 * string, nothing is copied.
 */
#include "client/p9c_impl.h"

#include <errno.h>
#include <string.h>

int
p9c_walk_names(struct p9c_fid *f, uint16_t nwname, const char *const *names,
               struct p9_qid *qids, uint16_t *nwqid, struct p9c_fid **out)
{
    struct p9_fcall t = {.type = P9_TWALK};
    struct p9c_reply *rep;
    struct p9c_fid *nf;
    uint16_t n;
    int err;

    *out = NULL;
    *nwqid = 0;
    if (nwname > P9_MAXWELEM) {
        return -EINVAL;
    }
    for (uint16_t i = 0; i < nwname; i++) {
        err = p9c_mkstr(&t.u.twalk.wname[i], names[i]);
        if (err != 0) {
            return err;
        }
    }
    nf = p9c_fid_new(f->conn);
    if (nf == NULL) {
        return -ENOMEM;
    }
    t.u.twalk.fid = f->fid;
    t.u.twalk.newfid = nf->fid;
    t.u.twalk.nwname = nwname;
    err = p9c_rpc(f->conn, &t, &rep);
    if (err != 0) {
        p9c_fid_release(nf);
        return err;
    }
    n = rep->f.u.rwalk.nwqid;
    if (n > nwname) {
        p9c_reply_free(rep);
        p9c_clunk(nf); /* whatever the server did with newfid, drop it */
        return -EPROTO;
    }
    if (qids != NULL) {
        memcpy(qids, rep->f.u.rwalk.wqid, n * sizeof(*qids));
    }
    *nwqid = n;
    if (n < nwname) {
        /* partial walk: newfid was not created */
        p9c_fid_release(nf);
    } else {
        nf->qid = n > 0 ? rep->f.u.rwalk.wqid[n - 1] : f->qid;
        *out = nf;
    }
    p9c_reply_free(rep);
    return 0;
}

/* Next non-empty component of *pp, or 0 at the end. */
static size_t
next_name(const char **pp, const char **name)
{
    const char *p = *pp;
    size_t len;

    while (*p == '/') {
        p++;
    }
    len = strcspn(p, "/");
    *name = p;
    *pp = p + len;
    return len;
}

int
p9c_walk(struct p9c_fid *f, const char *path, struct p9c_fid **out)
{
    struct p9_fcall t = {.type = P9_TWALK};
    struct p9c_reply *rep;
    struct p9c_fid *nf;
    const char *p = path != NULL ? path : "";
    const char *name;
    bool first = true;
    size_t len;
    uint16_t k;
    int err;

    *out = NULL;
    nf = p9c_fid_new(f->conn);
    if (nf == NULL) {
        return -ENOMEM;
    }
    nf->qid = f->qid;
    len = next_name(&p, &name);
    do {
        k = 0;
        while (len > 0 && k < P9_MAXWELEM) {
            if (len > UINT16_MAX) {
                err = -ENAMETOOLONG;
                goto out_fail;
            }
            t.u.twalk.wname[k].s = name;
            t.u.twalk.wname[k].len = (uint16_t)len;
            k++;
            len = next_name(&p, &name);
        }
        t.u.twalk.fid = first ? f->fid : nf->fid;
        t.u.twalk.newfid = nf->fid;
        t.u.twalk.nwname = k;
        err = p9c_rpc(f->conn, &t, &rep);
        if (err != 0) {
            goto out_fail;
        }
        if (rep->f.u.rwalk.nwqid != k) {
            /* a short walk: newfid exists only if a batch completed */
            err = rep->f.u.rwalk.nwqid > k ? -EPROTO : -ENOENT;
            if (rep->f.u.rwalk.nwqid > k) {
                first = false; /* unknown state: clunk it to be safe */
            }
            p9c_reply_free(rep);
            goto out_fail;
        }
        if (k > 0) {
            nf->qid = rep->f.u.rwalk.wqid[k - 1];
        }
        p9c_reply_free(rep);
        first = false;
    } while (len > 0);
    *out = nf;
    return 0;

out_fail:
    if (first) {
        p9c_fid_release(nf);
    } else {
        p9c_clunk(nf);
    }
    return err;
}
