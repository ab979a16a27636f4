"""What a clip upload may be: a video or an image, by its name and by its content.

Clip files live under the cube's public folder: anything stored there is served
to anyone, by S3, with the Content-Type it was stored with. So an upload is
accepted only when its name ends in one of EXTENSIONS and its first bytes are
that kind of file (magic numbers, not the browser's claim), and it is stored
under a name made of safe characters with the extension's canonical type.
The storage (viral_clips/storage.py) applies the same table to every write,
whatever the code path: a name outside it is stored as a download
(application/octet-stream, attachment), never as a page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from django.core.exceptions import ValidationError


@dataclass(frozen=True)
class Kind:
    family: str  # what the magic bytes say: "mp4", "quicktime", "matroska", "jpeg", ...
    content_type: str


# Extension -> what it must contain and the type it is served with.
EXTENSIONS: dict[str, Kind] = {
    ".mp4": Kind("mp4", "video/mp4"),
    ".m4v": Kind("mp4", "video/x-m4v"),
    ".mov": Kind("mp4", "video/quicktime"),  # QuickTime and MP4 share the ISO box format
    ".webm": Kind("matroska", "video/webm"),
    ".mkv": Kind("matroska", "video/x-matroska"),
    ".jpg": Kind("jpeg", "image/jpeg"),
    ".jpeg": Kind("jpeg", "image/jpeg"),
    ".png": Kind("png", "image/png"),
    ".gif": Kind("gif", "image/gif"),
    ".webp": Kind("webp", "image/webp"),
}
ALLOWED_WORDS = ", ".join(EXTENSIONS)
# Served as a download, never rendered: for any name outside the table.
FALLBACK_TYPE = "application/octet-stream"
SNIFF_BYTES = 64
MAX_STEM = 80


def sniff(head: bytes) -> str | None:
    """The file family its first bytes belong to, or None (not a video or image we take)."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        # HEIF/AVIF images use the same box format: not a video.
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"):
            return None
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def extension_of(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def served_headers(name: str) -> dict[str, str]:
    """S3 object headers for a stored name: its canonical type, shown inline when
    it is a video or image, else a download."""
    kind = EXTENSIONS.get(extension_of(name))
    filename = PurePosixPath(name).name
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "file"
    if kind is None:
        return {
            "ContentType": FALLBACK_TYPE,
            "ContentDisposition": f'attachment; filename="{ascii_name}"',
        }
    return {
        "ContentType": kind.content_type,
        "ContentDisposition": f'inline; filename="{ascii_name}"',
    }


def safe_name(name: str) -> str:
    """A file name of letters, digits, '-' and '_' with a lower-case extension:
    no path, no markup, no invisible or direction-changing characters."""
    path = PurePosixPath(name.replace("\\", "/"))
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-_")[:MAX_STEM]
    return f"{stem or 'clip'}{extension_of(path.name)}"


@dataclass(frozen=True)
class CheckedUpload:
    name: str
    content_type: str


def check_upload(name: str, file: IO[bytes]) -> CheckedUpload:
    """Accept a video or image upload or raise ValidationError saying why not."""
    extension = extension_of(name)
    kind = EXTENSIONS.get(extension)
    if kind is None:
        shown = extension or "no extension"
        raise ValidationError(
            f"Only video and image files can be uploaded ({ALLOWED_WORDS}); this file has {shown}.",
            code="file_type",
        )
    position = file.tell()
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    file.seek(position)
    found = sniff(head)
    if found is None:
        raise ValidationError(
            f"The file is named {extension} but its content is not a video or image file.",
            code="file_content",
        )
    if found != kind.family:
        raise ValidationError(
            f"The file is named {extension} but its content is a {found} file: rename it"
            " to match its content.",
            code="file_mismatch",
        )
    return CheckedUpload(name=safe_name(name), content_type=kind.content_type)
