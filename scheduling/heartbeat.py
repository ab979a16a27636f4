"""The embedded beat's heartbeat, shared with the worker that supervises it.

A beat can be alive and stuck: blocked on a Redis call that never returns (a
black-holed connection), frozen, or wedged in a library. The worker's
BeatSupervisor cannot see that from `is_alive()`. The beat child stamps this
shared value (a monotonic time: one clock for every process on the machine)
on every tick and on every wait for the lock; the supervisor replaces a beat
whose stamp is older than the lock timeout.

Created at import, in the worker's main process (config/celery.py imports the
supervisor), before the beat child forks, so both see the same memory.
"""

from __future__ import annotations

import multiprocessing
import time

_stamp = multiprocessing.get_context("fork").Value("d", 0.0, lock=False)


def stamp() -> None:
    """Called by the beat process: it is alive and making progress."""
    _stamp.value = time.monotonic()


def age() -> float | None:
    """Seconds since the beat last stamped; None if it never has."""
    value = _stamp.value
    return time.monotonic() - value if value else None
