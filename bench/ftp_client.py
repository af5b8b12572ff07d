"""FTP client workloads for the benchmark, on Python's ftplib.

Each mode prints one JSON object on stdout. `seconds` is the measured phase,
which ends just before QUIT, so the harness can line it up with its own
samples of the server's CPU time. Every loop is bounded by its count and by
--deadline; every socket has a timeout.

Modes:
  small HOST PORT USER PASSWORD FILE COUNT        COUNT downloads, one session
                                                  (or --max-seconds)
  concurrent HOST PORT USER PASSWORD FILE SESSIONS ITERATIONS
                                                  sessions in threads log in,
                                                  then each does LIST + RETR
                                                  per iteration
  logins HOST PORT USER PASSWORD COUNT            sequential login + QUIT
                                                  (or --max-seconds)
  tls-logins HOST PORT USER PASSWORD COUNT        the same over FTPS: AUTH TLS
                                                  (a full handshake each time,
                                                  certificate not verified),
                                                  USER, PASS, QUIT
  idle HOST PORT USER PASSWORD COUNT PARALLEL     open COUNT logged-in sessions,
                                                  print, wait for a stdin line,
                                                  close them
"""

import argparse
import ftplib
import json
import resource
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 30.0


def unverified_context():
    """A client context that accepts the benchmark's self-signed certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(host, port, user, password, context=None):
    """Logs in; with an SSL `context`, over FTPS (AUTH TLS before USER)."""
    if context is None:
        ftp = ftplib.FTP(timeout=TIMEOUT)
    else:
        ftp = ftplib.FTP_TLS(context=context, timeout=TIMEOUT)
    ftp.connect(host, port)
    # FTP_TLS.login sends AUTH TLS first; no session is resumed across
    # connections, so every login pays a full handshake.
    ftp.login(user, password)
    return ftp


def size_of(ftp, name):
    """SIZE in binary mode: some servers refuse it in ASCII mode."""
    ftp.voidcmd("TYPE I")
    return ftp.size(name)


def quit_quietly(ftp):
    try:
        ftp.quit()
    except (OSError, ftplib.Error, EOFError):
        ftp.close()


def download(ftp, name):
    got = [0]

    def count(block):
        got[0] += len(block)

    ftp.retrbinary(f"RETR {name}", count, blocksize=256 * 1024)
    return got[0]


def mode_small(a, deadline):
    ftp = connect(a.host, a.port, a.user, a.password)
    expected = size_of(ftp, a.file)
    files = failures = 0
    # A pause after login, so the harness's CPU window (aligned to the end of
    # this run) cannot reach back into the password check.
    time.sleep(0.25)
    start = time.perf_counter()
    for _ in range(a.count):
        if time.monotonic() > deadline or time.perf_counter() - start > a.max_seconds:
            break
        try:
            good = download(ftp, a.file) == expected
        except ftplib.Error:
            good = False
        if good:
            files += 1
        else:
            failures += 1
    seconds = time.perf_counter() - start
    quit_quietly(ftp)
    return {"files": files, "failures": failures, "seconds": seconds}


def mode_concurrent(a, deadline):
    """All sessions log in, wait for each other, then list and download;
    `seconds` runs from that common start to the end of the last session."""
    failures = [0]
    ok = [0]
    started = [0.0]
    lock = threading.Lock()

    def mark_start():
        started[0] = time.perf_counter()

    barrier = threading.Barrier(a.sessions, action=mark_start, timeout=TIMEOUT * 4)

    def one_session(_):
        ftp = None
        try:
            ftp = connect(a.host, a.port, a.user, a.password)
            expected = size_of(ftp, a.file)
        except (OSError, ftplib.Error, EOFError):
            ftp = None
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        if ftp is None:
            with lock:
                failures[0] += a.iterations
            return
        try:
            for _ in range(a.iterations):
                if time.monotonic() > deadline:
                    with lock:
                        failures[0] += 1
                    continue
                try:
                    lines = []
                    ftp.retrlines("LIST", lines.append)
                    good = len(lines) > 0 and download(ftp, a.file) == expected
                except (OSError, ftplib.Error, EOFError):
                    good = False
                with lock:
                    if good:
                        ok[0] += 1
                    else:
                        failures[0] += 1
        finally:
            quit_quietly(ftp)

    with ThreadPoolExecutor(max_workers=a.sessions) as pool:
        list(pool.map(one_session, range(a.sessions)))
    seconds = time.perf_counter() - started[0] if started[0] else float("nan")
    return {"ok": ok[0], "failures": failures[0], "seconds": seconds}


def mode_logins(a, deadline, context=None):
    ok = failures = 0
    start = time.perf_counter()
    for _ in range(a.count):
        if time.monotonic() > deadline or time.perf_counter() - start > a.max_seconds:
            break
        try:
            ftp = connect(a.host, a.port, a.user, a.password, context)
            quit_quietly(ftp)
            ok += 1
        except (OSError, ftplib.Error, EOFError):
            failures += 1
    seconds = time.perf_counter() - start
    return {"ok": ok, "failures": failures, "seconds": seconds}


def mode_tls_logins(a, deadline):
    return mode_logins(a, deadline, unverified_context())


def mode_idle(a, deadline):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.count + 1024), hard))
    sessions = []
    failures = [0]
    lock = threading.Lock()

    def open_one(_):
        if time.monotonic() > deadline:
            with lock:
                failures[0] += 1
            return
        try:
            ftp = connect(a.host, a.port, a.user, a.password)
            with lock:
                sessions.append(ftp)
        except (OSError, ftplib.Error, EOFError):
            with lock:
                failures[0] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=a.parallel) as pool:
        list(pool.map(open_one, range(a.count)))
    seconds = time.perf_counter() - start
    print(json.dumps({"opened": len(sessions), "failures": failures[0], "seconds": seconds}),
          flush=True)
    sys.stdin.readline()  # the harness has measured; EOF also ends the wait
    for ftp in sessions:
        ftp.close()
    return {"closed": len(sessions)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--deadline", type=float, default=600.0, help="seconds for the whole run")
    p.add_argument("--max-seconds", type=float, default=float("inf"),
                   help="small, logins, tls-logins: stop the measured loop after this long")
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("small", "concurrent", "logins", "tls-logins", "idle"):
        s = sub.add_parser(name)
        s.add_argument("host")
        s.add_argument("port", type=int)
        s.add_argument("user")
        s.add_argument("password")
        if name in ("small", "concurrent"):
            s.add_argument("file")
        if name == "concurrent":
            s.add_argument("sessions", type=int)
            s.add_argument("iterations", type=int)
        else:
            s.add_argument("count", type=int)
        if name == "idle":
            s.add_argument("parallel", type=int)
    a = p.parse_args()
    deadline = time.monotonic() + a.deadline
    result = {
        "small": mode_small,
        "concurrent": mode_concurrent,
        "logins": mode_logins,
        "tls-logins": mode_tls_logins,
        "idle": mode_idle,
    }[a.mode](a, deadline)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
