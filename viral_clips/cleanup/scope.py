"""What the cleanup lists and may delete under, and how it lists it.

Only the clips' upload folder (derived from `Clip.file`: its storage location
plus the static part of `upload_to`, ``<cube>/public/clips/``) and the
cube-relative folders in CLEANUP_PREFIXES. A sibling cube ``<cube>2/`` never
is: every scope ends with a slash.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from viral_clips.models import Clip

S3_MAX_KEYS_PER_PAGE = 1000  # ListObjectsV2 returns at most this many keys a page

# One listed object: (key, size, last modified).
Listed = tuple[str, int, datetime]


def storage_prefix() -> str:
    """Key prefix of the clips' storage: a Clip's key is this + `Clip.file.name`."""
    location = Clip._meta.get_field("file").storage.location.strip("/")
    return f"{location}/" if location else ""


def upload_prefix() -> str:
    """The static leading folder of `Clip.file`'s upload_to ("clips/%Y/%m/" -> "clips/")."""
    upload_to = Clip._meta.get_field("file").upload_to
    if callable(upload_to):
        raise ImproperlyConfigured(
            "Clip.file's upload_to is a callable: the cleanup cannot derive the clips' folder"
        )
    static = str(upload_to).split("%", 1)[0]
    return static[: static.rfind("/") + 1]


def cleanup_scopes() -> list[str]:
    """Full key prefixes the cleanup lists and may delete under, sorted.

    The clips' upload folder plus CLEANUP_PREFIXES, each inside the cube; a
    prefix inside another one is dropped so that no key is listed twice.
    """
    cube_prefix = settings.CLOUDCUBE.prefix
    scopes = [storage_prefix() + upload_prefix()]
    scopes += [cube_prefix + p for p in getattr(settings, "CLEANUP_PREFIXES", ())]
    for scope in scopes:
        if not scope.startswith(cube_prefix) or scope == cube_prefix:
            raise ImproperlyConfigured(
                f"cleanup scope {scope!r} is not a folder inside the cube {cube_prefix!r}"
            )
    kept: list[str] = []
    for scope in sorted(set(scopes)):
        # Sorted, a containing prefix comes right before what it contains.
        if not (kept and scope.startswith(kept[-1])):
            kept.append(scope)
    return kept


def cleanup_scope_labels() -> list[str]:
    """The scopes relative to the cube ("public/clips/"), for people to read."""
    cube_prefix = settings.CLOUDCUBE.prefix
    return [scope[len(cube_prefix) :] for scope in cleanup_scopes()]


def list_pages(client, bucket: str, prefix: str) -> Iterator[list[Listed]]:
    """Yield one scope's objects a page at a time."""
    paginator = client.get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=bucket,
        Prefix=prefix,
        PaginationConfig={"PageSize": S3_MAX_KEYS_PER_PAGE},
    )
    for page in pages:
        yield [
            (obj["Key"], obj.get("Size", 0), obj["LastModified"])
            for obj in page.get("Contents", ())
            # The prefix already guarantees this; a server that ignores it
            # must not make us touch what is outside the scope.
            if obj["Key"].startswith(prefix)
        ]
