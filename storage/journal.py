"""An append-only journal of small records: what the collector decoded since its last checkpoint.

Each record is appended with one ``write(2)`` and no ``fsync``: once the call returns, the bytes are in the
kernel's page cache and survive the process being killed (SIGKILL, a crash), though not a power cut. So it costs
about the bytes appended (no page rewritten per record, as a database commit would), and a killed collector
loses at most the notification it was handling. :meth:`FrameJournal.rewrite` starts it afresh with the given
records (after a checkpoint made the rest durable elsewhere) through a temporary file and a rename.

Format: per record ``u32 length, u32 CRC-32 of the body, body``; reading stops at the first record that is
short or fails its CRC (a torn tail). A write that fails (``ENOSPC``: the disk is full) is cut back, so the
journal never holds a torn record in the middle.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

_FRAME = struct.Struct("<II")


class FrameJournal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    @staticmethod
    def frame(body: bytes) -> bytes:
        return _FRAME.pack(len(body), zlib.crc32(body)) + body

    def append(self, body: bytes) -> None:
        """Append one record; raises OSError (e.g. ENOSPC) with the journal unchanged."""
        data = self.frame(body)
        fd = self._open()
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, f"short write to {self.path} ({written} of {len(data)} bytes)")
        except OSError:
            os.ftruncate(fd, self._size)  # no torn record: readers would stop there and miss what follows
            raise
        self._size += len(data)

    def rewrite(self, bodies: list[bytes]) -> None:
        """Replace the journal by ``bodies`` (atomically: a temporary file renamed over it); raises OSError."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = b"".join(self.frame(b) for b in bodies)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(28, f"short write to {tmp}")
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        self.close()
        self._size = len(data)

    @property
    def size_bytes(self) -> int:
        return self._size

    def read(self) -> list[bytes]:
        """Every whole record, in order (none when there is no journal)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out, off = [], 0
        while off + _FRAME.size <= len(data):
            n, crc = _FRAME.unpack_from(data, off)
            body = data[off + _FRAME.size : off + _FRAME.size + n]
            if len(body) < n or zlib.crc32(body) != crc:
                break
            out.append(body)
            off += _FRAME.size + n
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
