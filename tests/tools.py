"""Before the suite: check the services the tests were told to use answer, and say which.

A service that was configured (TEST_*_URL) but does not answer fails here, loudly, instead of
tests skipping later. With nothing configured the suite starts embedded servers itself.
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

SERVICES = {"TEST_DATABASE_URL": 5432, "TEST_REDIS_URL": 6379, "TEST_AMQP_URL": 5672}


def main() -> int:
    failed = False
    for name, default_port in SERVICES.items():
        url = os.environ.get(name)
        if not url:
            print(f"{name} not set: the suite starts an embedded server where one is needed")
            continue
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or default_port
        try:
            with socket.create_connection((host, port), timeout=3):
                print(f"{name}: {host}:{port} answers")
        except OSError as exc:
            print(f"{name}: {host}:{port} does not answer ({exc})", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
