"""Let a running cleanup notice a shutdown and stop between batches.

Heroku sends SIGTERM to every process of a dyno and SIGKILL 30 s later. With
REMAP_SIGTERM=SIGQUIT (Heroku's advice for Celery) the pool children ignore
SIGTERM and the worker's main process runs the shutdown: it sets a flag shared
with its children (an Event created before the pool forks). Without the remap,
a child running a cleanup catches SIGTERM itself and sets its own flag. Either
way the cleanup stops after its current batch and the task re-queues itself
(viral_clips/tasks.py); an idle child exits on SIGTERM as before.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery.exceptions import Reject

# Created at import, in the worker's main process, before the pool forks.
_worker_stopping = multiprocessing.get_context("fork").Event()
_requested = threading.Event()
_busy = threading.Event()


class StopRequested(Exception):
    """A run stopped at a safe point because its process is asked to stop.

    Raised by the job's own code (the cleanup between batches) or by the
    guard's progress callback; the guard records the run `interrupted`, frees
    its lease and, in a worker, re-queues the message (Reject(requeue=True)) so
    the redelivery resumes it.
    """


class ShutdownRequeue(Reject):
    """The guard's re-queue of a run stopped by a shutdown."""

    # Both arguments: a prefork child pickles it to the parent as (reason, requeue).
    def __init__(self, reason: str | None = None, requeue: bool = True) -> None:
        super().__init__(reason, requeue=requeue)


class ShutdownRequeueFilter(logging.Filter):
    """Celery logs every Reject at WARNING with its traceback. A re-queue on
    shutdown is routine on Heroku (every restart mid-run), and the guard has
    logged it in one line: drop the traceback, keep Celery's line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ShutdownRequeue):
            record.exc_info = None
            record.exc_text = None
        return True


def request_stop() -> None:
    """Ask runs in this process to stop at their next safe point (a command's
    SIGINT/SIGTERM/SIGHUP handler)."""
    _requested.set()


def requested() -> bool:
    """True once this worker (or this process) was asked to shut down."""
    return _requested.is_set() or _worker_stopping.is_set()


@contextmanager
def stoppable() -> Iterator[None]:
    """Mark a cleanup as running in this process: SIGTERM then only asks it to stop."""
    _busy.set()
    try:
        yield
    finally:
        _busy.clear()


@contextmanager
def stop_on_signals(signals=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """For a management command: the first Ctrl-C / SIGTERM / SIGHUP (`heroku
    run` losing its terminal) asks the run to stop at its next safe point, so
    its row ends `interrupted`; a second one raises KeyboardInterrupt at once."""

    def handler(signum, frame) -> None:
        if _requested.is_set():
            raise KeyboardInterrupt
        _requested.set()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _requested.clear()


def on_worker_shutting_down(**kwargs) -> None:
    """`worker_shutting_down` receiver."""
    _worker_stopping.set()


def flag_on_stop_signals(**kwargs) -> None:
    """`worker_ready` receiver, in the worker's main process: raise the shared
    flag as soon as a stop signal arrives. Celery's own handler first waits out
    the soft shutdown and only then sends worker_shutting_down: too late to stop
    a running cleanup."""
    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum, frame, previous=previous) -> None:
            _worker_stopping.set()
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(sig, handler)


def _on_sigterm(signum, frame) -> None:
    _requested.set()
    if not _busy.is_set():
        # Nothing to finish: die the usual way.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def install_handler(**kwargs) -> None:
    """`worker_process_init` receiver: a pool child's SIGTERM asks its run to stop."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _on_sigterm)
