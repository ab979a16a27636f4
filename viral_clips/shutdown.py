"""Let a running cleanup notice a shutdown and stop between batches.

Heroku sends SIGTERM to every process of a dyno, pool children included, and
SIGKILL 30 s later. In a pool child that is running a cleanup, SIGTERM only
raises a flag: the cleanup stops after its current batch and the task is
re-queued (viral_clips/tasks.py). An idle child exits on SIGTERM as before.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery.signals import worker_process_init

_requested = threading.Event()
_busy = threading.Event()


def requested() -> bool:
    """True once this process was asked to shut down."""
    return _requested.is_set()


@contextmanager
def stoppable() -> Iterator[None]:
    """Mark a cleanup as running in this process: SIGTERM then only asks it to stop."""
    _busy.set()
    try:
        yield
    finally:
        _busy.clear()


def _on_sigterm(signum, frame) -> None:
    _requested.set()
    if not _busy.is_set():
        # Nothing to finish: die the usual way.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


@worker_process_init.connect(weak=False)
def install_handler(**kwargs) -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
