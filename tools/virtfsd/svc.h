/* SPDX-License-Identifier: MIT */
/*
 * systemd service protocols, written out (they are a few lines each):
 * socket activation (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES) and readiness
 * (NOTIFY_SOCKET, sd_notify(3)).
 */
#ifndef VIRTFSD_SVC_H
#define VIRTFSD_SVC_H

#define SVC_LISTEN_FDS_START 3

/*
 * Take the sockets systemd passed: at most 'max', numbered from 3, their
 * names (FileDescriptorName=, "" when none) in names[] (static strings,
 * valid until exit).  Clears the variables so nothing later inherits them.
 * Returns the count (0 when not socket-activated) or -errno.
 */
int svc_listen_fds(const char **names, int max);

/*
 * Connect to $NOTIFY_SOCKET now (a sandboxed daemon cannot reach its path
 * later) and clear the variable.  Returns 0 (also when not under systemd)
 * or -errno.
 */
int svc_notify_open(void);
/* Send one state ("READY=1", "STOPPING=1"); no-op without a socket. */
void svc_notify(const char *state);

#endif
