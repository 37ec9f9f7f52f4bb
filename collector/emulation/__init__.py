"""Test doubles that ship with the collector, like httpx's ``MockTransport``.

The only fake is the radio: :class:`BumbleLink` is an in-process Bluetooth LE
link built from Bumble's virtual controllers; :meth:`BumbleLink.scanner_backend`
and :meth:`BumbleLink.client_backend` are bleak backends (``BaseBleakScanner`` /
``BaseBleakClient``) running on a real Bumble host, and
:class:`EmulatedInsole` is a peripheral on Bumble's GATT server that sends the
exact bytes of a device profile and can misbehave on purpose.
"""

from __future__ import annotations

__all__ = ["BumbleBleakClient", "BumbleBleakScanner", "BumbleLink", "EmulatedInsole", "Faults"]


def __getattr__(name: str):  # import Bumble only when the Bumble parts are used
    if name in ("BumbleBleakClient", "BumbleBleakScanner", "BumbleLink"):
        from collector.emulation import bumble_backend  # noqa: PLC0415 - Bumble is optional (the emulation extra)

        return getattr(bumble_backend, name)
    if name in ("EmulatedInsole", "Faults"):
        from collector.emulation import emulated_insole  # noqa: PLC0415 - Bumble is optional (the emulation extra)

        return getattr(emulated_insole, name)
    raise AttributeError(name)
