"""Keep the embedded beat alive inside `celery worker --beat`.

Celery runs embedded beat as a child process and never looks at it again: if
the child dies (killed, out of memory, or it lost its Redis lock and exited),
the worker keeps consuming tasks but nothing is scheduled any more, and the
dyno still shows as up. This worker bootstep watches the child and starts a
new one, which waits for the lock like any other standby beat. A child that is
alive but has not ticked for longer than the lock timeout (stuck in a call, a
black-holed connection) is hung: it is SIGKILLed and replaced the same way.

It never starts a beat once the worker is stopping, and an error of its own is
logged and the watch goes on: a dead supervisor is the silent failure it exists
to prevent.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from celery import bootsteps
from celery.beat import EmbeddedService

from scheduling import heartbeat, shutdown

logger = logging.getLogger("celery.beat")

CHECK_EVERY = 1.0  # seconds between looks at the beat child
MAX_BACKOFF = 30.0  # a beat that keeps dying (Redis down) is retried at most this often


# Heroku sends SIGTERM to every process of the dyno at once: the beat child may
# exit before the worker stops this step. A shutting-down worker starts no beat.
_worker_shutting_down = threading.Event()


def note_worker_shutting_down(**kwargs) -> None:
    """`worker_shutting_down` receiver."""
    _worker_shutting_down.set()


def worker_stopping() -> bool:
    """True once the worker was asked to stop: Celery announced it, or the main
    process's signal handler raised the shared flag (scheduling/shutdown.py),
    which with REMAP_SIGTERM=SIGQUIT happens ~20 s before the announcement."""
    return _worker_shutting_down.is_set() or shutdown.requested()


class BeatSupervisor(bootsteps.StartStopStep):
    label = "BeatSupervisor"
    requires = ("celery.worker.components:Beat",)

    def __init__(self, worker, **kwargs) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0
        self._backoff = CHECK_EVERY

    def start(self, worker) -> None:
        if not worker.beat:  # worker started without --beat
            return
        # The first beat is already starting: give it a lock timeout to tick.
        heartbeat.stamp()
        self._thread = threading.Thread(
            target=self._watch, args=(worker,), name="BeatSupervisor", daemon=True
        )
        self._thread.start()

    def stop(self, worker) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(CHECK_EVERY * 3)

    def shutdown(self, worker) -> None:
        self.stop(worker)

    def _watch(self, worker) -> None:
        while not self._stopping.wait(CHECK_EVERY):
            if worker_stopping():
                return
            try:
                self._check(worker)
            except Exception:
                logger.exception("beat: the beat supervisor failed a check; watching on")

    def _check(self, worker) -> None:
        beat = worker.beat
        if beat is None:
            return
        if beat.is_alive():
            age = heartbeat.age()
            if age is None or age <= self.hung_after(worker):
                self._backoff = CHECK_EVERY
                return
            logger.warning(
                "beat: the embedded beat process (pid %s) has not ticked for %.0f s"
                " (lock timeout %s s): hung; killing it and starting a new one",
                beat.pid,
                age,
                self.hung_after(worker),
            )
            try:
                os.kill(beat.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            beat.join(5)
        elif beat.exitcode is None:
            return  # not started yet
        else:
            # A warning, not an error: the beat child reports its own death to
            # Sentry, and a beat that stays dead shows as a missed check-in.
            logger.warning(
                "beat: the embedded beat process (pid %s) exited with code %s; starting a new one",
                beat.pid,
                beat.exitcode,
            )
        if self._stopping.wait(self._backoff) or worker_stopping():
            return
        self._restart(worker)
        self._backoff = min(MAX_BACKOFF, self._backoff * 2)

    @staticmethod
    def hung_after(worker) -> float:
        conf = worker.app.conf
        loop = conf.get("beat_max_loop_interval") or 300
        return float(conf.get("redbeat_lock_timeout") or 5 * loop)

    def _restart(self, worker) -> None:
        new = EmbeddedService(
            worker.app, schedule_filename=worker.schedule_filename, scheduler_cls=worker.scheduler
        )
        heartbeat.stamp()  # the new beat gets a lock timeout to start ticking
        if worker_stopping():  # checked again: a stop may have arrived meanwhile
            return
        new.start()
        worker.beat = new
        # The worker's Beat step stops whatever it holds at shutdown: hand it
        # the new process so a shutdown still stops beat and releases the lock.
        for step in worker.blueprint.steps.values():
            if step.label == "Beat":
                step.obj = new
        self.restarts += 1
        logger.warning(
            "beat: started embedded beat again (pid %s, restart #%d)", new.pid, self.restarts
        )
