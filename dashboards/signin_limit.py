"""Rate limiting of failed sign-ins, per username and per client network, kept in the database.

Every failed sign-in is counted twice: against the username that was tried and against the
client's network (the IPv4 address, or the IPv6 /64). Below a free allowance nothing happens;
from then on each further failure doubles the wait before the next attempt is even checked::

    wait = min(base_s * 2 ** (failures - free), max_s)      after the failure that reached ``failures``

=====================  =====  ==========================================================
allowance              free   why
=====================  =====  ==========================================================
per username           5      a person mistyping; an online guesser gets ~4 tries an hour
per client network     20     a clinic's users share one NAT address
=====================  =====  ==========================================================

While a key waits, the sign-in is answered ``429 Too Many Requests`` with ``Retry-After`` and
the password is not checked at all (a right password then would tell a guesser it was right).
A success clears its username's count, not the network's (else one valid account would reset
a guesser's network). A count is forgotten ``forget_s`` after its last failure.

Why the database and not an in-memory limiter (e.g. the ``limits`` package): its storage
backends are memory, Redis, Memcached, MongoDB and etcd. In memory, each dashboard process
(uvicorn workers, replicas) would count on its own and a guesser would get N times the
allowance; the others would add a service to run. The store (SQLite or PostgreSQL) is shared
by every dashboard process already, and one upsert per failure is cheap. Keys are HMACs of
the username and network under the session secret, so the table holds neither typed usernames
(sometimes a password typed into the wrong field) nor client addresses.

Behind a reverse proxy every request comes from the proxy: list it in ``KINETIC_TRUSTED_PROXIES``
(comma-separated addresses or networks) and the last ``X-Forwarded-For`` hop it added is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import math
import os
from collections.abc import Callable, Iterable

from storage import signin as counts
from storage.store import Store


def _networks(spec: str | Iterable[str] | None) -> tuple:
    items = spec.split(",") if isinstance(spec, str) else list(spec or ())
    return tuple(ipaddress.ip_network(s.strip(), strict=False) for s in items if s.strip())


def client_network(peer: str | None, forwarded_for: str | None = None, trusted_proxies: tuple = ()) -> str:
    """The client's address as counted: IPv4 address, IPv6 /64, or the raw peer string.

    ``forwarded_for`` (the X-Forwarded-For header) is used only when ``peer`` is a trusted proxy,
    and then only its last hop (the one that proxy appended; earlier hops are the client's say).
    """
    host = peer or "unknown"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    if forwarded_for and any(addr in net for net in trusted_proxies):
        last = forwarded_for.split(",")[-1].strip()
        with contextlib.suppress(ValueError):
            addr = ipaddress.ip_address(last)
    if addr.version == 6 and addr.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr.ipv4_mapped or addr) if addr.version == 6 else str(addr)


class SigninLimiter:
    """Counts failed sign-ins in ``store`` (table ``signin_failures``, created by its migrations) and says how
    long a new attempt must wait.

    ``now_us`` is the clock (injectable for tests); all times in the table are microseconds.
    """

    def __init__(self, store: Store, *, secret: str, now_us: Callable[[], int], user_free: int = 5,
                 network_free: int = 20, base_s: float = 1.0, max_s: float = 900.0, forget_s: float = 3600.0,
                 trusted_proxies: str | Iterable[str] | None = None) -> None:
        self.store = store
        self._key = hashlib.sha256(b"kinetic-signin-limit\0" + secret.encode()).digest()
        self.now_us = now_us
        self.user_free, self.network_free = user_free, network_free
        self.base_s, self.max_s, self.forget_s = base_s, max_s, forget_s
        if trusted_proxies is None:
            trusted_proxies = os.environ.get("KINETIC_TRUSTED_PROXIES", "")
        self.trusted_proxies = _networks(trusted_proxies)

    def _keys(self, username: str, network: str) -> dict[str, tuple[str, int]]:
        def mac(kind: str, value: str) -> str:
            return kind + ":" + hmac.new(self._key, value.encode("utf-8", "surrogatepass"), "sha256").hexdigest()[:40]

        return {"user": (mac("u", username), self.user_free), "network": (mac("n", network), self.network_free)}

    def wait_s(self, failures: int, free: int) -> float:
        """Seconds to wait after the failure that brought the count to ``failures``."""
        if failures < free:
            return 0.0
        return min(self.base_s * 2.0 ** min(failures - free, 62), self.max_s)

    def retry_after_s(self, username: str, network: str) -> int:
        """0 when an attempt may be checked now, else whole seconds to wait (for Retry-After)."""
        keys = self._keys(username, network)
        now = self.now_us()
        free_of = dict(keys.values())
        wait_us = 0.0
        for key, failures, last_us in counts.failures(self.store, free_of):
            if now - last_us > self.forget_s * 1e6:
                continue
            wait_us = max(wait_us, last_us + self.wait_s(failures, free_of[key]) * 1e6 - now)
        return max(0, math.ceil(wait_us / 1e6))

    def failed(self, username: str, network: str) -> None:
        now = self.now_us()
        counts.count_failure(self.store, [key for key, _free in self._keys(username, network).values()], now,
                             now - int(self.forget_s * 1e6))

    def succeeded(self, username: str) -> None:
        counts.clear(self.store, self._keys(username, "")["user"][0])
