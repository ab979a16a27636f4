"""Each scheduled slot runs once, and cleanups never overlap.

RedBeat's lock already keeps a second scheduler from sending anything, but a
slot can still arrive twice (a redelivered message, a takeover that raced the
old holder, a manual press during a scheduled run). Two Redis keys, each set
atomically with SET NX and an expiry, make the task itself refuse:

* `<prefix>slot:<entry>:<slot>` — the scheduled slot was claimed (kept a week);
* `<prefix>running` — a cleanup is running. It expires CLEANUP_RUN_GUARD_TTL_SECONDS
  after the run last made progress, so a worker killed mid-run blocks others
  only that long (its message is redelivered later and resumes the run).

Both hold the claiming task's id, so a redelivery of the same task (after a
shutdown interrupted it) is let through, not skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from scheduling.app_redis import app_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "koolclips:cleanup:"
RUNNING_KEY = KEY_PREFIX + "running"

# Delete the key only if it still holds our token.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# Extend the key's expiry only if it still holds our token.
_REFRESH = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end
return 0
"""


def slot_key(entry: str, slot: datetime) -> str:
    return f"{KEY_PREFIX}slot:{entry}:{slot.isoformat()}"


@dataclass
class Admission:
    admitted: bool
    reason: str = ""
    token: str = ""

    def refresh(self) -> None:
        """Keep the overlap guard while the run makes progress (called every page)."""
        if self.admitted and self.token:
            with app_redis(timeout=5) as client:
                client.eval(_REFRESH, 1, RUNNING_KEY, self.token, settings.CLEANUP_LEASE_SECONDS)

    def release(self) -> None:
        """Free the overlap guard (the slot stays claimed)."""
        if self.admitted and self.token:
            with app_redis(timeout=5) as client:
                client.eval(_RELEASE, 1, RUNNING_KEY, self.token)


def admit(token: str, entry: str | None = None, slot: datetime | None = None) -> Admission:
    """Claim the slot (if any) and the overlap guard for the task `token`."""
    with app_redis(timeout=5) as client:
        if entry and slot:
            key = slot_key(entry, slot)
            if not client.set(key, token, nx=True, ex=7 * 24 * 3600):
                holder = _text(client.get(key))
                if holder != token:
                    return Admission(False, f"slot {slot.isoformat()} already ran (task {holder})")
        if not client.set(RUNNING_KEY, token, nx=True, ex=settings.CLEANUP_LEASE_SECONDS):
            running = _text(client.get(RUNNING_KEY))
            if running != token:
                return Admission(False, f"another cleanup is running (task {running})")
        return Admission(True, token=token)


def cleanup_in_progress() -> bool:
    """Whether a cleanup holds the overlap guard right now."""
    with app_redis(timeout=5) as client:
        return bool(client.exists(RUNNING_KEY))


def _text(value: bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
