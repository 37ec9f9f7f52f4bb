"""The Kinetic Chain contract: wire format, topics, sensor layouts and errors.

This package does no I/O. The collector, the processing service, the dashboards
and the simulator all import it, so the frame format, the topic tree and the
sensor geometry are written exactly once.
"""

from insole_common.errors import CodecError, ControlMessageError, InsoleError, ValidationError

__all__ = ["CodecError", "ControlMessageError", "InsoleError", "ValidationError"]
