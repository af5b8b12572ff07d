"""Runs a forking server as the child of a child subreaper.

vsftpd and other forking servers let session processes outlive their
parents; such orphans would go to PID 1 and their CPU time would be lost to
the benchmark. This launcher marks itself a child subreaper
(prctl PR_SET_CHILD_SUBREAPER), starts the server, and reaps every process
that ends below it, so the tree rooted here accounts for all of the
server's CPU time. SIGTERM and SIGINT are passed on to the server.

Usage: subreaper.py COMMAND [ARG...]
"""

import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: subreaper.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("subreaper: prctl failed", file=sys.stderr)
        return 1
    server = os.fork()
    if server == 0:
        try:
            os.execvp(sys.argv[1], sys.argv[1:])
        finally:
            os._exit(127)

    def forward(sig, _frame):
        try:
            os.kill(server, sig)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 1
    # Ends when no child is left: the server and every orphan it left behind.
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid == server:
            code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
