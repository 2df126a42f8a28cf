#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""systemd's part played by hand (TAP): socket activation and readiness.

Creates what virtfsd@.socket would (a vhost-user socket and a 9P stream
socket, named through LISTEN_FDNAMES), passes them as fds 3 and 4 with
LISTEN_PID/LISTEN_FDS set for the exec'd process, listens on a
NOTIFY_SOCKET datagram socket like systemd, and checks READY=1 arrives
only once the daemon serves, that both sockets are served, and STOPPING=1
plus exit 0 on SIGTERM.

Usage: t-systemd.py VIRTFSD VIRTFS
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

virtfsd, virtfs = sys.argv[1], sys.argv[2]
n = 0
failed = 0


def ok(cond, desc, diag=""):
    global n, failed
    n += 1
    if cond:
        print(f"ok {n} - {desc}")
    else:
        failed += 1
        print(f"not ok {n} - {desc}")
        for line in str(diag).splitlines()[:20]:
            print(f"# {line}")
    sys.stdout.flush()


def recv_state(sock, timeout):
    sock.settimeout(timeout)
    try:
        msg, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    except socket.timeout:
        return None, None
    pid = None
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
            pid = int.from_bytes(data[0:4], sys.byteorder)
    return msg.decode(), pid


def main():
    tmp = tempfile.mkdtemp(prefix="vfst-sd-")
    export = os.path.join(tmp, "export")
    os.mkdir(export)
    with open(os.path.join(export, "a"), "w") as f:
        f.write("hello\n")

    vhost_path = os.path.join(tmp, "vm1.sock")
    p9_path = os.path.join(tmp, "vm1-9p.sock")
    vhost = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    vhost.bind(vhost_path)
    vhost.listen(8)
    p9 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    p9.bind(p9_path)
    p9.listen(8)
    notify_path = os.path.join(tmp, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def place_fds():
        # as systemd: the sockets become 3, 4, ... in LISTEN_FDNAMES order
        os.dup2(vhost.fileno(), 3)
        os.dup2(p9.fileno(), 4)

    env = dict(os.environ)
    env.update({"LISTEN_FDS": "2", "LISTEN_FDNAMES": "vhost-user:9p",
                "NOTIFY_SOCKET": notify_path})
    log = open(os.path.join(tmp, "daemon.log"), "w+")
    # LISTEN_PID must be the pid of the process that execs virtfsd
    proc = subprocess.Popen(
        ["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', virtfsd,
         "--export", export, "--tag", "share"],
        env=env, preexec_fn=place_fds, pass_fds=(3, 4), close_fds=True,
        stdin=subprocess.DEVNULL, stderr=log)
    state, pid = recv_state(notify, 10)
    log.seek(0)
    text = log.read()
    ok(state is not None and "READY=1" in state,
       "READY=1 received on NOTIFY_SOCKET", f"state={state!r}\n{text}")
    ok("sandbox: namespace" in text and "listening on fd:4" in text and
       "vhost-user virtio-9p device on fd" in text,
       "READY came after the sandbox and both activated sockets were set up",
       text)
    ok(pid is not None and pid > 0, f"sender pid seen by 'systemd' ({pid})")

    r = subprocess.run([virtfs, "-s", "unix:" + p9_path, "cat", "/a"],
                       capture_output=True, text=True, timeout=20)
    ok(r.returncode == 0 and r.stdout == "hello\n",
       "the socket named '9p' serves 9P (as --listen fd:4)",
       r.stdout + r.stderr)

    for _ in range(2):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(vhost_path)
        time.sleep(0.3)
        c.close()
        time.sleep(0.3)
    log.seek(0)
    text = log.read()
    ok(text.count("front-end connected") == 2,
       "the socket named 'vhost-user' serves vhost-user, reconnect included",
       text)

    proc.send_signal(signal.SIGTERM)
    state, _ = recv_state(notify, 10)
    ok(state is not None and "STOPPING=1" in state,
       "STOPPING=1 on SIGTERM", f"state={state!r}")
    try:
        rc = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = None
    ok(rc == 0, f"exit 0 after SIGTERM (got {rc})")

    # LISTEN_PID of another process: the sockets are not ours to take
    env["LISTEN_PID"] = "1"
    # main() returns on option errors without freeing its export strings
    # (not this test's subject): no leak report under ASan
    env["ASAN_OPTIONS"] = "detect_leaks=0"
    r = subprocess.run([virtfsd, "--export", export], env=env,
                       preexec_fn=place_fds, pass_fds=(3, 4),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=20)
    ok(r.returncode == 2 and "give --listen" in r.stderr,
       "LISTEN_PID of another process: not socket-activated",
       r.stderr)

    subprocess.run(["rm", "-rf", tmp])
    print(f"1..{n}")
    print(f"# {n - failed} passed, {failed} failed")
    return 1 if failed else 0


sys.exit(main())
