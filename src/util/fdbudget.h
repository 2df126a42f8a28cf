/* SPDX-License-Identifier: MIT */
/*
 * Descriptor budget: what peers may make the process open, and what is
 * kept back so control paths still work when they have used the rest.
 *
 * Two mechanisms:
 *  - a reserve: the top 'reserve' descriptor numbers below RLIMIT_NOFILE
 *    are for control paths (the vhost-user socket and the descriptors a
 *    VMM sends on it, listeners, logging).  A descriptor opened on a
 *    peer's behalf (an accepted client connection, a backend open for a
 *    9P request) that lands there is closed again and the peer gets
 *    EMFILE.  The kernel hands out the lowest free number, so a number in
 *    the reserve means fewer than 'reserve' were free below it: an O(1)
 *    check (fdbudget_admit).
 *  - spares: a few descriptors held open (on /dev/null) and released just
 *    before a control path needs room it cannot do without: to accept a
 *    connection only to refuse it (so the peer sees EOF instead of hanging
 *    in the backlog), or to receive the descriptors of a vhost-user message
 *    (SCM_RIGHTS would otherwise truncate them).
 *
 * Without fdbudget_init() nothing is reserved and no spares are held
 * (fdbudget_admit always admits): library users and tests are unaffected.
 */
#ifndef VIRTFS_UTIL_FDBUDGET_H
#define VIRTFS_UTIL_FDBUDGET_H

#include <stdbool.h>

#define FDBUDGET_DEFAULT_RESERVE 64u
#define FDBUDGET_SPARES 12 /* >= the fds of one vhost-user message, + 4 */

/* Read RLIMIT_NOFILE (call after raising it), keep 'reserve' numbers back
 * (at most a quarter of the limit) and open the spares.  0 or -errno. */
int fdbudget_init(unsigned reserve);
/* The reserve in effect (0 before init). */
unsigned fdbudget_reserve(void);

/*
 * A descriptor was just opened on a peer's behalf: keep it (returns fd)
 * or, if it is in the reserve, close it and return -EMFILE.  fd < 0 is
 * passed through.
 */
int fdbudget_admit(int fd);

/* Close up to n spares so a control path can use their numbers; returns
 * how many were released.  Call fdbudget_refill() afterwards. */
int fdbudget_release(int n);
/* Reopen released spares (best effort: what cannot be reopened now is
 * retried on the next call). */
void fdbudget_refill(void);

#endif
