"""Keep the embedded beat alive inside `celery worker --beat`.

Celery runs embedded beat as a child process and never looks at it again: if
the child dies (killed, out of memory, or it lost its Redis lock and exited),
the worker keeps consuming tasks but nothing is scheduled any more, and the
dyno still shows as up. This worker bootstep watches the child and starts a
new one, which waits for the lock like any other standby beat.
"""

from __future__ import annotations

import logging
import threading

from celery import bootsteps
from celery.beat import EmbeddedService
from celery.signals import worker_shutting_down

logger = logging.getLogger("celery.beat")

CHECK_EVERY = 1.0  # seconds between looks at the beat child
MAX_BACKOFF = 30.0  # a beat that keeps dying (Redis down) is retried at most this often


# Heroku sends SIGTERM to every process of the dyno at once: the beat child may
# exit before the worker stops this step. A shutting-down worker starts no beat.
_worker_shutting_down = threading.Event()


@worker_shutting_down.connect(weak=False)
def _note_shutdown(**kwargs) -> None:
    _worker_shutting_down.set()


class BeatSupervisor(bootsteps.StartStopStep):
    label = "BeatSupervisor"
    requires = ("celery.worker.components:Beat",)

    def __init__(self, worker, **kwargs) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    def start(self, worker) -> None:
        if not worker.beat:  # worker started without --beat
            return
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
        backoff = CHECK_EVERY
        while not self._stopping.wait(CHECK_EVERY):
            if _worker_shutting_down.is_set():
                return
            beat = worker.beat
            if beat is None or beat.is_alive() or beat.exitcode is None:
                backoff = CHECK_EVERY
                continue
            # A warning, not an error: the beat child reports its own death to
            # Sentry, and a beat that stays dead shows as a missed check-in.
            logger.warning(
                "beat: the embedded beat process (pid %s) exited with code %s; starting a new one",
                beat.pid,
                beat.exitcode,
            )
            if self._stopping.wait(backoff) or _worker_shutting_down.is_set():
                return
            self._restart(worker)
            backoff = min(MAX_BACKOFF, backoff * 2)

    def _restart(self, worker) -> None:
        new = EmbeddedService(
            worker.app, schedule_filename=worker.schedule_filename, scheduler_cls=worker.scheduler
        )
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
