"""Small real media files for upload tests: the first bytes that make a file what it is."""

from __future__ import annotations

import struct
import zlib

# An ISO base media file (MP4) starts with its ftyp box.
MP4_FTYP = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def mp4_bytes(size: int = 2048) -> bytes:
    """An MP4 of `size` bytes: its ftyp box, then one mdat box filling the rest."""
    rest = size - len(MP4_FTYP)
    assert rest >= 8
    return MP4_FTYP + struct.pack(">I", rest) + b"mdat" + b"\x00" * (rest - 8)


def png_bytes() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
