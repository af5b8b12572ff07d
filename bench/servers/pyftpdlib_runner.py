"""Runs pyftpdlib in the foreground for the benchmark.

Usage: pyftpdlib_runner.py PORT PASV_MIN PASV_MAX ROOT USER PASSWORD
"""

import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main() -> None:
    port, pasv_min, pasv_max = (int(x) for x in sys.argv[1:4])
    root, user, password = sys.argv[4:7]
    # INFO logs logins and transfers, as the other servers do.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, root, perm="elradfmwMT")

    class Handler(FTPHandler):
        pass

    Handler.authorizer = authorizer
    Handler.passive_ports = range(pasv_min, pasv_max + 1)
    Handler.banner = "pyftpdlib ready"
    server = FTPServer(("127.0.0.1", port), Handler)
    server.max_cons = 4000
    server.max_cons_per_ip = 0
    server.serve_forever(handle_exit=True)


if __name__ == "__main__":
    main()
