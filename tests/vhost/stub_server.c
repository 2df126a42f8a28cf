/* SPDX-License-Identifier: MIT */
/*
 * A stand-in for the 9P server core, for transport tests: it implements
 * the transport contract of virtfs/server.h with one worker thread.
 *   Tversion (100)  -> Rversion with the client's msize and "9P2000.L"
 *   Tflush (108)    -> dropped (no reply: ops->drop)
 *   type 202        -> held until the session closes, then dropped (a
 *                      request that stays in flight)
 *   type 203        -> its buffers are read only when the next request is
 *                      submitted, then answered like any other (shows
 *                      whether the transport's buffers are stable)
 * Types 202 and 203 only when stub_test_types is set (test_vhost); the
 * fuzzer would otherwise spend its time in GET_VRING_BASE's drain.
 *   anything else   -> type + 1, same tag, the T body echoed back
 *                      (truncated to the reply space)
 * A message whose size field differs from its length is refused with
 * -EPROTO after drop(), as the real core does.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "virtfs/server.h"

bool stub_test_types;

struct stub_req {
    struct stub_req *next;
    void *cookie;
    size_t len;
    uint8_t msg[];
};

struct p9s_conn {
    const struct p9s_conn_ops *ops;
    void *tp;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct stub_req *head;
    struct stub_req **tail;
    struct stub_req *held;
    const struct iovec *late_iov; /* type 203, not read yet */
    int late_cnt;
    size_t late_len;
    void *late_cookie;
    bool closing;
};

static void
put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t
get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Copy 'len' bytes of 'src' into the iovecs; returns bytes copied. */
static size_t
to_iov(const struct iovec *iov, int cnt, const uint8_t *src, size_t len)
{
    size_t done = 0;

    for (int i = 0; i < cnt && done < len; i++) {
        size_t n = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;

        memcpy(iov[i].iov_base, src + done, n);
        done += n;
    }
    return done;
}

static void
answer(struct p9s_conn *c, struct stub_req *r)
{
    const struct iovec *iov;
    uint8_t *out;
    size_t olen;
    size_t space = 0;
    int cnt;

    if (c->ops->reply_buf(c, r->cookie, r->len + 16, &iov, &cnt) != 0) {
        c->ops->drop(c, r->cookie);
        return;
    }
    for (int i = 0; i < cnt; i++) {
        space += iov[i].iov_len;
    }
    out = malloc(r->len + 16);
    if (out == NULL) {
        c->ops->drop(c, r->cookie);
        return;
    }
    out[4] = (uint8_t)(r->msg[4] + 1);
    out[5] = r->msg[5];
    out[6] = r->msg[6];
    if (r->msg[4] == 100 && r->len >= 11) {
        memcpy(out + 7, r->msg + 7, 4); /* msize */
        out[11] = 8;
        out[12] = 0;
        memcpy(out + 13, "9P2000.L", 8);
        olen = 21;
    } else {
        memcpy(out + 7, r->msg + 7, r->len - 7);
        olen = r->len;
    }
    if (olen > space) {
        olen = space;
    }
    put_le32(out, (uint32_t)olen);
    to_iov(iov, cnt, out, olen);
    free(out);
    c->ops->send(c, r->cookie, olen);
}

static void *
worker(void *arg)
{
    struct p9s_conn *c = arg;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        struct stub_req *r = c->head;

        if (r == NULL) {
            if (c->closing) {
                break;
            }
            pthread_cond_wait(&c->cv, &c->lock);
            continue;
        }
        c->head = r->next;
        if (c->head == NULL) {
            c->tail = &c->head;
        }
        pthread_mutex_unlock(&c->lock);
        answer(c, r);
        free(r);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    while (c->held != NULL) {
        struct stub_req *r = c->held;

        c->held = r->next;
        c->ops->drop(c, r->cookie);
        free(r);
    }
    c->ops->release(c, c->tp);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cv);
    free(c);
    return NULL;
}

struct p9s_conn *
p9s_conn_new(struct p9s_server *srv, const struct p9s_conn_ops *ops, void *tp,
             const char *peer)
{
    struct p9s_conn *c = calloc(1, sizeof(*c));
    pthread_t t;

    (void)srv;
    (void)peer;
    if (c == NULL) {
        return NULL;
    }
    c->ops = ops;
    c->tp = tp;
    c->tail = &c->head;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&t, NULL, worker, c) != 0) {
        free(c);
        return NULL;
    }
    pthread_detach(t);
    return c;
}

static int submit_now(struct p9s_conn *c, const struct iovec *iov, int iovcnt,
                      size_t len, void *cookie);

int
p9s_conn_submit(struct p9s_conn *c, const struct iovec *iov, int iovcnt,
                size_t len, void *cookie)
{
    if (c->late_iov != NULL) {
        const struct iovec *l = c->late_iov;

        c->late_iov = NULL;
        submit_now(c, l, c->late_cnt, c->late_len, c->late_cookie);
    }
    if (stub_test_types && iovcnt > 0 && len >= 7 && iov[0].iov_len >= 5 &&
        ((const uint8_t *)iov[0].iov_base)[4] == 203) {
        c->late_iov = iov;
        c->late_cnt = iovcnt;
        c->late_len = len;
        c->late_cookie = cookie;
        return 0;
    }
    return submit_now(c, iov, iovcnt, len, cookie);
}

static int
submit_now(struct p9s_conn *c, const struct iovec *iov, int iovcnt, size_t len,
           void *cookie)
{
    struct stub_req *r;
    size_t done = 0;

    if (len < 7 || len > (1u << 24)) {
        c->ops->drop(c, cookie);
        return -EPROTO;
    }
    r = malloc(sizeof(*r) + len);
    if (r == NULL) {
        c->ops->drop(c, cookie);
        return -EPROTO;
    }
    for (int i = 0; i < iovcnt && done < len; i++) {
        size_t n = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;

        memcpy(r->msg + done, iov[i].iov_base, n);
        done += n;
    }
    if (done != len || get_le32(r->msg) != len) {
        free(r);
        c->ops->drop(c, cookie);
        return -EPROTO;
    }
    if (r->msg[4] == 108) {
        free(r);
        c->ops->drop(c, cookie);
        return 0;
    }
    r->cookie = cookie;
    r->len = len;
    r->next = NULL;
    pthread_mutex_lock(&c->lock);
    if (stub_test_types && r->msg[4] == 202) {
        r->next = c->held;
        c->held = r;
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    *c->tail = r;
    c->tail = &r->next;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

uint32_t
p9s_conn_msize(struct p9s_conn *c)
{
    (void)c;
    return 1u << 20;
}

void
p9s_conn_close(struct p9s_conn *c)
{
    if (c->late_iov != NULL) {
        c->late_iov = NULL;
        c->ops->drop(c, c->late_cookie);
    }
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->lock);
}

/* The stub always queues to its worker: inline hints are ignored. */
int
p9s_conn_submit_flags(struct p9s_conn *c, const struct iovec *iov, int iovcnt,
                      size_t len, void *cookie, unsigned flags)
{
    (void)flags;
    return p9s_conn_submit(c, iov, iovcnt, len, cookie);
}
