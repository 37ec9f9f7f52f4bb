"""Errors raised by the collector. They all derive from :class:`insole_common.errors.InsoleError`.

The whole tree::

    InsoleError                          (insole_common.errors)
    └── CollectorError                   base of everything the collector raises on purpose
        ├── PacketError                  one BLE notification could not be decoded; the stream goes on
        │   └── PacketChecksumError      ... its CRC does not match its content
        ├── ProfileError                 an unknown device profile name, or a device that does not
        │                                implement the profile it was paired as
        ├── InsoleNotFoundError          a paired insole did not advertise within the scan timeout
        ├── InsoleConnectError           connecting failed after every retry (wraps the bleak error)
        └── ConfigError                  the collector configuration file or environment is unusable

Every error has a short ``reason`` label used as a counter key (``status.bad_packet_reasons``)
and a message in plain words, so it can be logged and counted while the good data goes on.
"""

from __future__ import annotations

from insole_common.errors import InsoleError


class CollectorError(InsoleError):
    """Base class of every error the collector raises on purpose."""

    reason = "collector"


class PacketError(CollectorError, ValueError):
    """A BLE notification is malformed. Raised by the profile decoders (``collector.profiles``).

    ``reason`` is one of ``truncated``, ``too_long``, ``bad_version``, ``bad_flags``,
    ``bad_length``, ``absurd_count``, ``bad_checksum``, ``unsupported_mode``, ``bad_header``.
    """

    reason = "malformed"


class PacketChecksumError(PacketError):
    """The CRC-16 trailer of an open-profile packet does not match its content."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(
            f"CRC-16 mismatch: trailer says 0x{expected:04x}, content gives 0x{actual:04x}", reason="bad_checksum"
        )
        self.expected = expected
        self.actual = actual


class ProfileError(CollectorError, ValueError):
    """An unknown profile name, or a device that does not offer the profile's GATT service."""

    reason = "bad_profile"


class InsoleNotFoundError(CollectorError):
    """A paired insole did not advertise within the scan timeout."""

    reason = "not_found"

    def __init__(self, address: str, timeout_s: float) -> None:
        super().__init__(f"insole {address} was not seen advertising within {timeout_s:.0f} s")
        self.address = address


class InsoleConnectError(CollectorError):
    """Connecting to an insole failed after every retry."""

    reason = "connect_failed"


class ConfigError(CollectorError, ValueError):
    """The collector configuration (file or environment) cannot be used."""

    reason = "bad_config"
