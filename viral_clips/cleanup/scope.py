"""What the cleanup lists and may delete under, and how it lists it.

Only the clips' upload folder (derived from `Clip.file`: its storage location
plus the static part of `upload_to`, ``<cube>/public/clips/``) and the
cube-relative folders in CLEANUP_PREFIXES. A sibling cube ``<cube>2/`` never
is: every scope ends with a slash.

Listing in parallel (`plan_listing`, `ParallelListing`): a scope's first page
is listed as always; a scope that fits in it costs that one request. A bigger
one whose first page ends inside a folder is split into its folders with one
``Delimiter='/'`` request per folder
split (the scope, then, for the clips, each year of ``clips/%Y/%m/``). That
request also returns the keys directly under the folder, so they are listed by
it and only by it; each leaf folder is then one ListObjectsV2 chain, their
pages fetched a few at once on a pool's threads. What the first
page covered (keys up to its last) is skipped everywhere. A folder with more
than one page of direct keys and sub-folders is not split: it is one chain.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from viral_clips.models import Clip
from viral_clips.s3 import listed_objects

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


@dataclass
class Level:
    """A folder split by one Delimiter request: its direct keys and its sub-folders."""

    prefix: str
    direct: list[Listed]
    folders: list[str]


@dataclass
class ListingPlan:
    """How a scope is listed: its first page, split levels (each listed once) and
    leaf chains (prefix, start after), all past the first page's last key."""

    scope: str
    first: list[Listed] = field(default_factory=list)
    complete: bool = False  # the first page held the whole scope
    levels: list[Level] = field(default_factory=list)
    chains: list[tuple[str, str | None]] = field(default_factory=list)
    requests: int = 0  # the Delimiter requests the split cost

    @property
    def after(self) -> str | None:
        return self.first[-1][0] if self.first else None


def folder_end(folder: str) -> str:
    """The smallest key after every key under `folder` (which ends with "/")."""
    return folder[:-1] + "0"  # "/" + 1


def _first_page(client, bucket: str, scope: str) -> tuple[list[Listed], bool]:
    page = client.list_objects_v2(Bucket=bucket, Prefix=scope, MaxKeys=S3_MAX_KEYS_PER_PAGE)
    keys = [item for item in listed_objects(page) if item[0].startswith(scope)]
    return keys, not page.get("IsTruncated")


def _split(client, bucket: str, prefix: str) -> Level | None:
    """One Delimiter='/' page, or None when it does not hold the whole level."""
    page = client.list_objects_v2(
        Bucket=bucket, Prefix=prefix, Delimiter="/", MaxKeys=S3_MAX_KEYS_PER_PAGE
    )
    if page.get("IsTruncated"):
        return None
    direct = [item for item in listed_objects(page) if item[0].startswith(prefix)]
    folders = sorted(
        p["Prefix"]
        for p in page.get("CommonPrefixes", ())
        # Only strictly deeper folders of this one: never outside the scope.
        if p["Prefix"].startswith(prefix) and p["Prefix"] != prefix and p["Prefix"].endswith("/")
    )
    return Level(prefix, direct, folders)


def split_depth(scope: str) -> int:
    """Folder levels worth splitting: the clips' %Y/%m/ folders, or one elsewhere."""
    if scope == storage_prefix() + upload_prefix():
        upload_to = str(Clip._meta.get_field("file").upload_to)
        dynamic = upload_to[len(upload_prefix()) :]
        return max(1, dynamic.count("/"))
    return 1


def plan_listing(
    client, bucket: str, scope: str, *, depth: int, pool: ThreadPoolExecutor
) -> ListingPlan:
    """The first page, then `scope` split into folders down to `depth` levels."""
    plan = ListingPlan(scope)
    plan.first, plan.complete = _first_page(client, bucket, scope)
    if plan.complete:
        return plan
    after = plan.after
    if depth < 1 or "/" not in after[len(scope) :]:
        # Not worth a split: the listing has not reached any folder yet (a flat
        # folder of files), or parallel listing is off. One chain, as always.
        plan.chains = [(scope, after)]
        return plan
    todo = [scope]
    leaves: list[str] = []
    for _ in range(depth):
        if not todo:
            break
        levels = list(pool.map(lambda p: _split(client, bucket, p), todo))
        plan.requests += len(todo)
        todo_next: list[str] = []
        for prefix, level in zip(todo, levels, strict=True):
            if level is None:
                leaves.append(prefix)  # too big to split in one page: one chain
            else:
                level.direct = [item for item in level.direct if item[0] > after]
                plan.levels.append(level)
                # Folders the first page already covered entirely are done.
                todo_next.extend(f for f in level.folders if folder_end(f) > after)
        todo = todo_next
    leaves.extend(todo)  # the deepest folders found: listed whole
    plan.chains = [(leaf, after if leaf <= after else None) for leaf in sorted(leaves)]
    return plan


_WAKE = object()  # put in the queue to wake the calling thread (a delete finished)


class ListingError(RuntimeError):
    """A ListObjectsV2 answer that would end or loop a chain before its last page."""


class ParallelListing:
    """Lists chains a page at a time, `concurrency` pages at once; `pages()` yields
    (chain, page) on the calling thread, then (chain, None) once a chain is finished.

    The pool's threads fetch pages, not chains: every chain (month) moves, while
    at most `concurrency` pages are being fetched or waiting to be taken, so
    memory is those pages and those threads, whatever the number of folders.
    A chain's next page is asked for only once the calling thread has taken
    its previous one and, with `hold`, once `hold(chain)` is false (its
    folders' deletes have caught up): a busy folder holds back its own
    listing, never the others. While no page is waiting the calling thread
    runs `idle()` (it returns how long it may then wait, None: until `wake()`
    or a page). Closing the iterator (or an error) asks for nothing more.
    """

    def __init__(
        self,
        client,
        bucket: str,
        chains: list[tuple[str, str | None]],
        pool: ThreadPoolExecutor,
        concurrency: int,
    ):
        self.client = client
        self.bucket = bucket
        self.chains = chains
        self.pool = pool
        self.concurrency = max(1, concurrency)
        self.stop = threading.Event()
        self.out: queue.Queue = queue.Queue()

    def wake(self) -> None:
        """Wake the calling thread if it waits for a page (any thread may call it)."""
        self.out.put((_WAKE, None, None))

    def _fetch(self, chain: str, token: str | None, after: str | None) -> None:
        """One page of `chain` (pool thread): (chain, page, next token or None) to the queue."""
        try:
            if self.stop.is_set():
                return
            params = {"Bucket": self.bucket, "Prefix": chain, "MaxKeys": S3_MAX_KEYS_PER_PAGE}
            if token:
                params["ContinuationToken"] = token
            elif after:
                params["StartAfter"] = after
            response = self.client.list_objects_v2(**params)
            following = response.get("NextContinuationToken")
            if response.get("IsTruncated") and (not following or following == token):
                # What botocore's paginator refuses too: ending here would skip keys.
                raise ListingError(f"ListObjectsV2 of {chain!r}: truncated without a new token")
            # The prefix already guarantees this; a server that ignores it
            # must not make us touch what is outside the scope.
            page = [item for item in listed_objects(response) if item[0].startswith(chain)]
            self.out.put((chain, page, following if response.get("IsTruncated") else None))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            self.out.put((chain, exc, None))

    def pages(
        self,
        hold: Callable[[str], bool] | None = None,
        idle: Callable[[], float | None] | None = None,
    ) -> Iterator[tuple[str, list[Listed] | None]]:
        tokens: dict[str, str | None] = {}  # a chain's continuation token, once it has one
        starts = dict(self.chains)  # the key a chain starts after (its first page only)
        due: deque[str] = deque(chain for chain, _ in self.chains)  # may be asked for a page
        asked: set[Future] = set()
        outstanding = 0  # pages asked for and not yet handed out
        left = len(self.chains)

        def ask() -> None:
            nonlocal outstanding
            for chain in list(due):
                if outstanding >= self.concurrency:
                    return
                if hold is not None and hold(chain):
                    continue
                due.remove(chain)
                outstanding += 1
                token = tokens.get(chain)
                future = self.pool.submit(
                    self._fetch, chain, token, None if token else starts.get(chain)
                )
                asked.add(future)
                future.add_done_callback(asked.discard)

        try:
            while left:
                ask()
                try:
                    item = self.out.get_nowait()
                except queue.Empty:
                    timeout = idle() if idle is not None else None
                    ask()  # a batch may have ended meanwhile: a held chain may go
                    try:
                        item = self.out.get(timeout=timeout)
                    except queue.Empty:
                        continue
                chain, page, following = item
                if chain is _WAKE:
                    continue
                outstanding -= 1
                if isinstance(page, BaseException):
                    raise page
                yield chain, page
                if following is None:
                    left -= 1
                    yield chain, None
                else:
                    tokens[chain] = following
                    due.append(chain)
        finally:
            self.stop.set()
            for future in list(asked):
                future.cancel()
