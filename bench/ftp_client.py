"""FTP client workloads for the benchmark, on Python's ftplib.

Each mode prints one JSON object on stdout. `seconds` is the measured phase,
which ends just before QUIT, so the harness can line it up with its own
samples of the server's CPU time. Every loop is bounded by its count and by
--deadline; every socket has a timeout.

Modes:
  small HOST PORT USER PASSWORD FILE COUNT        COUNT downloads, one session
  concurrent HOST PORT USER PASSWORD FILE SESSIONS ITERATIONS
                                                  sessions in threads, each
                                                  LIST + RETR per iteration
  logins HOST PORT USER PASSWORD COUNT            sequential login + QUIT
  idle HOST PORT USER PASSWORD COUNT PARALLEL     open COUNT logged-in sessions,
                                                  print, wait for a stdin line,
                                                  close them
"""

import argparse
import ftplib
import json
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 30.0


def connect(host, port, user, password):
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect(host, port)
    ftp.login(user, password)
    return ftp


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
    expected = ftp.size(a.file)
    files = failures = 0
    start = time.perf_counter()
    for _ in range(a.count):
        if time.monotonic() > deadline:
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
    failures = [0]
    ok = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(a.sessions, timeout=TIMEOUT * 4)

    def one_session(_):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        try:
            ftp = connect(a.host, a.port, a.user, a.password)
        except (OSError, ftplib.Error, EOFError):
            with lock:
                failures[0] += a.iterations
            return
        try:
            expected = ftp.size(a.file)
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

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=a.sessions) as pool:
        list(pool.map(one_session, range(a.sessions)))
    seconds = time.perf_counter() - start
    return {"ok": ok[0], "failures": failures[0], "seconds": seconds}


def mode_logins(a, deadline):
    ok = failures = 0
    start = time.perf_counter()
    for _ in range(a.count):
        if time.monotonic() > deadline:
            break
        try:
            ftp = connect(a.host, a.port, a.user, a.password)
            quit_quietly(ftp)
            ok += 1
        except (OSError, ftplib.Error, EOFError):
            failures += 1
    seconds = time.perf_counter() - start
    return {"ok": ok, "failures": failures, "seconds": seconds}


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
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("small", "concurrent", "logins", "idle"):
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
        "idle": mode_idle,
    }[a.mode](a, deadline)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
