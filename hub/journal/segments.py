"""On-disk pieces of the journal: record framing, segment files, checkpoints.

Everything here is synchronous file I/O; :mod:`hub.journal.journal` runs the
slow parts (write + fsync) in a worker thread.

Record frame (little-endian)::

    u32 length of payload
    u32 CRC32 of (the 4 length bytes + payload)
    payload

The CRC covers the length too, so a tail of zero bytes (what some file systems
show after a crash) is never mistaken for an empty record.

Offsets are logical byte positions in the whole log: segment files are named
after the offset of their first byte (``00000000000000000000.seg``), so the
byte at offset ``o`` lives in the segment with the greatest base ``<= o``, at
file position ``o - base``.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

HEADER = struct.Struct("<II")
HEADER_SIZE = HEADER.size
#: Largest record accepted. A length field above this is corruption, not data.
MAX_RECORD_BYTES = 16 * 1024 * 1024
SEGMENT_SUFFIX = ".seg"
CHECKPOINT_SUFFIX = ".offset"
FORMAT_FILE = "FORMAT"
FORMAT_VERSION = 1
#: Segments and checkpoints are readable by the hub's account only (hub.datadir).
FILE_MODE = 0o600

_crc32 = zlib.crc32
_pack = HEADER.pack
_unpack_from = HEADER.unpack_from
_LEN = struct.Struct("<I")


def frame(payload: bytes) -> bytes:
    """One record as written to disk: header + payload."""
    n = len(payload)
    return _pack(n, _crc32(payload, _crc32(_LEN.pack(n)))) + payload


def frame_all(payloads: list[bytes]) -> bytes:
    """Many records framed back to back (one write)."""
    out = bytearray()
    for payload in payloads:
        n = len(payload)
        out += _pack(n, _crc32(payload, _crc32(_LEN.pack(n))))
        out += payload
    return bytes(out)


def segment_path(directory: Path, base: int) -> Path:
    """File of the segment starting at logical offset ``base``."""
    return directory / f"{base:020d}{SEGMENT_SUFFIX}"


def parse(data: bytes | memoryview, max_records: int) -> tuple[list[bytes], int, bool]:
    """Complete, valid records at the start of ``data``.

    Returns ``(records, bytes consumed, corrupt)``: ``corrupt`` is True when
    parsing stopped at a frame that is not a valid record (bad length or CRC)
    rather than at the end of the data or of a partial frame.
    """
    out: list[bytes] = []
    pos = 0
    end = len(data)
    mv = memoryview(data)
    while len(out) < max_records and pos + HEADER_SIZE <= end:
        length, crc = _unpack_from(mv, pos)
        if length > MAX_RECORD_BYTES:
            return out, pos, True
        stop = pos + HEADER_SIZE + length
        if stop > end:
            break
        payload = bytes(mv[pos + HEADER_SIZE : stop])
        if _crc32(payload, _crc32(mv[pos : pos + 4])) != crc:
            return out, pos, True
        out.append(payload)
        pos = stop
    return out, pos, False


def valid_length(path: Path) -> int:
    """Bytes at the start of a segment file that are whole, valid records."""
    data = path.read_bytes()
    pos = 0
    end = len(data)
    mv = memoryview(data)
    while pos + HEADER_SIZE <= end:
        length, crc = _unpack_from(mv, pos)
        stop = pos + HEADER_SIZE + length
        if length > MAX_RECORD_BYTES or stop > end:
            break
        if _crc32(mv[pos + HEADER_SIZE : stop], _crc32(mv[pos : pos + 4])) != crc:
            break
        pos = stop
    return pos


def fsync_dir(directory: Path) -> None:
    """Make a file creation, rename or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class Segment:
    """One segment file: where it starts and how many durable bytes it holds."""

    base: int
    size: int
    path: Path

    @property
    def end(self) -> int:
        """Logical offset just past its last durable byte."""
        return self.base + self.size


def scan(directory: Path) -> list[Segment]:
    """The segment files in ``directory``, oldest first (sizes as found on disk)."""
    found: list[Segment] = []
    for path in directory.glob(f"*{SEGMENT_SUFFIX}"):
        stem = path.name[: -len(SEGMENT_SUFFIX)]
        if not stem.isdigit():
            continue
        found.append(Segment(int(stem), path.stat().st_size, path))
    found.sort(key=lambda s: s.base)
    return found


def write_checkpoint(directory: Path, consumer: str, offset: int) -> None:
    """Persist a consumer's offset atomically: temp file, fsync, rename, fsync dir."""
    final = directory / f"{consumer}{CHECKPOINT_SUFFIX}"
    tmp = directory / f".{consumer}{CHECKPOINT_SUFFIX}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with open(fd, "w", encoding="utf-8") as fh:
        json.dump({"consumer": consumer, "offset": offset}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(final)
    fsync_dir(directory)


def read_checkpoints(directory: Path) -> dict[str, int | None]:
    """Every registered consumer and its persisted offset (None if unreadable)."""
    out: dict[str, int | None] = {}
    for path in directory.glob(f"*{CHECKPOINT_SUFFIX}"):
        name = path.name[: -len(CHECKPOINT_SUFFIX)]
        offset: int | None = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            value = json.loads(path.read_text(encoding="utf-8"))["offset"]
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                offset = value
        out[name] = offset
    return out


class SegmentWriter:
    """Appends framed records to the active segment, rolling to a new one when full.

    Used from one thread at a time (the journal serialises commits). Returns,
    per write, the segments it touched with their new durable sizes.
    """

    def __init__(self, directory: Path, segment_bytes: int, active: Segment) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.base = active.base
        self.size = active.size
        self.fd = os.open(active.path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        self.fsyncs = 0

    def write(self, payloads: list[bytes]) -> list[tuple[int, int]]:
        """Write and fsync ``payloads``; return ``[(segment base, new size), …]``."""
        touched: list[tuple[int, int]] = []
        chunk: list[bytes] = []
        chunk_bytes = 0
        for payload in payloads:
            need = HEADER_SIZE + len(payload)
            if self.size + chunk_bytes + need > self.segment_bytes and self.size + chunk_bytes > 0:
                self._flush(chunk)
                touched.append((self.base, self.size))
                self._roll()
                chunk, chunk_bytes = [], 0
            chunk.append(payload)
            chunk_bytes += need
        if chunk:
            self._flush(chunk)
        touched.append((self.base, self.size))
        return touched

    def _flush(self, chunk: list[bytes]) -> None:
        if not chunk:
            return
        data = frame_all(chunk)
        try:
            written = 0
            while written < len(data):
                written += os.pwrite(self.fd, data[written:], self.size + written)
            os.fdatasync(self.fd)
            self.fsyncs += 1
        except OSError:
            # Leave no half-written tail behind: the next commit starts clean.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def _roll(self) -> None:
        """Close the active segment and start a new one at the current end."""
        new_base = self.base + self.size
        fd = os.open(segment_path(self.directory, new_base), os.O_WRONLY | os.O_CREAT, FILE_MODE)
        fsync_dir(self.directory)
        os.close(self.fd)
        self.fd, self.base, self.size = fd, new_base, 0

    def roll_if_nonempty(self) -> tuple[int, int] | None:
        """Start a new segment (so a fully consumed active one can be removed)."""
        if self.size == 0:
            return None
        old = (self.base, self.size)
        self._roll()
        return old

    def close(self) -> None:
        """Close the active segment's file."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
