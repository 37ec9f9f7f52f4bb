"""Exceptions shared by every Kinetic Chain package.

The whole tree::

    InsoleError                  base of everything we raise on purpose
    ├── CodecError               a binary batch payload is malformed (wire format)
    │   └── ChecksumError        ... and specifically its CRC-32 does not match
    ├── ControlMessageError      a JSON control/status message is malformed
    ├── TopicError               an MQTT topic is not part of the contract
    └── ValidationError          input data (a recording, a table, an argument) is unusable

Every error says what was wrong in plain words, so that services can log the
message, count it by class and carry on with the good data around it.
"""

from __future__ import annotations


class InsoleError(Exception):
    """Base class of every error raised on purpose by Kinetic Chain."""

    #: short machine-readable reason, used as a counter label; a subclass sets its default here
    reason: str = "error"

    def __init__(self, *args: object, reason: str | None = None) -> None:
        """``reason`` overrides the class's default label for this one error."""
        super().__init__(*args)
        if reason is not None:
            self.reason = reason


class CodecError(InsoleError, ValueError):
    """A binary batch payload could not be decoded or encoded.

    ``reason`` is a short label (``truncated``, ``bad_magic``, ``bad_version``,
    ``bad_length``, ``absurd_count``, ``non_finite``, ...) for counters.
    """

    reason = "malformed"


class ChecksumError(CodecError):
    """The CRC-32 trailer of a payload does not match its content."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(
            f"CRC-32 mismatch: trailer says 0x{expected:08x}, content gives 0x{actual:08x}",
            reason="bad_checksum",
        )
        self.expected = expected
        self.actual = actual


class ControlMessageError(InsoleError, ValueError):
    """A JSON control or status message is not valid for the contract."""

    reason = "bad_control"


class TopicError(InsoleError, ValueError):
    """An MQTT topic does not belong to the Kinetic Chain topic tree."""

    reason = "bad_topic"


class ValidationError(InsoleError, ValueError):
    """Input data (a recording, a table, an argument) cannot be used."""

    reason = "invalid"
