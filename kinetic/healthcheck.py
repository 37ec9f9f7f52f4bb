"""Container health checks (docker-compose.yml), with nothing but the standard library.

::

    python -m kinetic.healthcheck http http://127.0.0.1:8080/healthz     the URL answers 2xx within 3 s
    python -m kinetic.healthcheck connected 8883                         an ESTABLISHED TCP connection to a
                                                                         remote port 8883 exists in this container

``connected`` is the check for the processing service: its work is to hold a subscription on the
broker, and paho reconnects on its own, so a container with no established connection to the
broker's port for several checks in a row is not doing its job. It reads ``/proc/net/tcp`` and
``/proc/net/tcp6`` of the container's network namespace (no ``ss``/``netstat`` in the image).
Exit status 0 = healthy, 1 = not.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

ESTABLISHED = "01"


def established_remote_ports(proc_net: Path = Path("/proc/net")) -> set[int]:
    ports: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == ESTABLISHED:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def check_http(url: str, timeout_s: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:  # noqa: S310 (a fixed local URL)
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "http":
        ok = check_http(args[1])
    elif len(args) >= 2 and args[0] == "connected":
        ok = {int(p) for p in args[1:]} <= established_remote_ports()
    else:
        print(__doc__.split("::")[1].strip("\n").split("\n\n")[0], file=sys.stderr)
        return 2
    if not ok:
        print("unhealthy: " + " ".join(args), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
