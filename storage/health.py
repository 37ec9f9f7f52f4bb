"""Operations: rate-limited warnings with per-reason counters, and a health endpoint in the Prometheus text format.

Both the processing service and the collector use them (they sit below both layers). The endpoint is the
standard library's threaded HTTP server serving ``GET /metrics`` (text exposition format 0.0.4) and
``GET /healthz``; the metrics are read from the service when scraped. No client library: a handful of counters
and gauges need no more than :func:`render_metrics`, and the collector's gateway installs nothing extra.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


class WarningLimiter:
    """Log at most ``burst_n`` warnings per reason per ``window_s``; count every one (``counts``). When a window
    ends with warnings held back, one line says how many: a flood of bad input costs a few lines a minute."""

    def __init__(self, logger: logging.Logger, *, burst_n: int = 5, window_s: float = 60.0) -> None:
        self.logger = logger
        self.burst_n, self.window_s = burst_n, window_s
        self.counts: Counter[str] = Counter()
        self.suppressed: Counter[str] = Counter()
        self._windows: dict[str, tuple[float, int]] = {}  # reason -> (window start, lines logged in it)
        self._lock = threading.Lock()

    def warn(self, reason: str, msg: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts[reason] += 1
            start, logged_n = self._windows.get(reason, (now, 0))
            held_n = 0
            if now - start >= self.window_s:
                held_n, start, logged_n = self.suppressed.pop(reason, 0), now, 0
            if held_n:
                self.logger.warning("%d more '%s' warnings in the last %.0f s were not logged (counted)", held_n,
                                    reason, self.window_s)
            if logged_n < self.burst_n:
                self._windows[reason] = (start, logged_n + 1)
                self.logger.warning(msg, *args, exc_info=exc_info)
            else:
                self._windows[reason] = (start, logged_n)
                self.suppressed[reason] += 1


@dataclass
class Metric:
    """One metric family: ``samples`` are (labels, value)."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(metrics: Iterable[Metric]) -> str:
    """The Prometheus text exposition format (0.0.4) of ``metrics``."""
    lines = []
    for m in metrics:
        lines.append(f"# HELP {m.name} {m.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
        lines.append(f"# TYPE {m.name} {m.kind}")
        for labels, value in m.samples or [({}, 0.0)]:
            text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
            lines.append(f"{m.name}{{{text}}} {float(value)!r}" if text else f"{m.name} {float(value)!r}")
    return "\n".join(lines) + "\n"


def counter(name: str, help_text: str, value: float) -> Metric:
    return Metric(name, "counter", help_text, [({}, value)])


def gauge(name: str, help_text: str, value: float) -> Metric:
    return Metric(name, "gauge", help_text, [({}, value)])


def by_reason(name: str, help_text: str, counts: dict[str, int]) -> Metric:
    return Metric(name, "counter", help_text, [({"reason": r}, n) for r, n in sorted(counts.items())])


class MetricsServer:
    """``GET /metrics`` (``collect()`` rendered) and ``GET /healthz`` on ``host:port`` in a daemon thread
    (port 0: any free port, see :attr:`port`)."""

    def __init__(self, collect: Callable[[], list[Metric]], *, port: int, host: str = "127.0.0.1") -> None:
        self.collect = collect
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    try:
                        body, status = render_metrics(outer.collect()).encode(), 200
                    except Exception as exc:  # noqa: BLE001 - a scrape must not take the service down
                        body, status = f"metrics unavailable: {exc}\n".encode(), 500
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                elif self.path == "/healthz":
                    body, status, ctype = b"ok\n", 200, "text/plain"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not logged
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
