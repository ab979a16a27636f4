"""The beat scheduler: RedBeat, plus what a worker dyno with embedded beat needs.

RedBeat's Redis lock makes one beat schedule however many `worker --beat`
processes run. On top of it this scheduler

* records who holds the lock and when it last ticked (`<prefix>:holder`), for
  `manage.py beat_status`, the dashboard and /health/;
* stamps every task it sends with the slot it belongs to (header
  `scheduled_for`), so the task can refuse to run one slot twice;
* exits when it loses its lock (Redis restarted empty, failed over, the key
  expired), as RedBeat does: scheduling/supervisor.py then starts a new beat
  inside the same worker, which waits for the lock and re-creates the schedule.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from datetime import UTC, datetime

from celery.beat import ScheduleEntry
from celery.signals import beat_init
from redbeat.schedulers import RedBeatScheduler, get_redis
from redis.exceptions import LockError, RedisError

logger = logging.getLogger("celery.beat")

SLOT_HEADER = "scheduled_for"


def holder_key(app) -> str:
    return app.redbeat_conf.key_prefix + ":holder"


def scheduled_slot(entry: ScheduleEntry, now: datetime | None = None) -> datetime:
    """The slot a due entry is being sent for: when it fell due (UTC, whole seconds).

    Every scheduler computes it from the entry's last run as stored in Redis,
    so a takeover agrees with the holder it replaced.
    """
    schedule = entry.schedule
    now = now or schedule.now()
    due = now + schedule.remaining_estimate(entry.last_run_at)
    return due.astimezone(UTC).replace(microsecond=0)


class KoolclipsScheduler(RedBeatScheduler):
    """RedBeatScheduler that reports its holder and stamps each slot."""

    def tick(self, *args, **kwargs):
        if self.lock_key and self.lock is None:
            # RedBeat's beat_init receiver could not take the lock (Redis
            # unreachable): start again rather than schedule without it.
            raise RuntimeError("beat: no scheduler lock (was Redis unreachable at start?)")
        try:
            interval = super().tick(*args, **kwargs)
        except (LockError, RedisError) as exc:
            # Without the lock another beat may already schedule: stop at once.
            # The worker's beat supervisor starts a fresh beat, which waits for
            # the lock (and re-creates the schedule if Redis came back empty).
            # The exception ends this beat process (Sentry's beat hook reports
            # it as fatal); the log line says what happens next.
            logger.warning(
                "beat: lost the scheduler lock (%s: %s); stopping this beat",
                type(exc).__name__,
                exc,
            )
            self._forget_holder()
            raise
        self._record_tick()
        return interval

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        if SLOT_HEADER not in entry.options.get("headers", {}):
            headers = {
                **entry.options.get("headers", {}),
                SLOT_HEADER: scheduled_slot(entry).isoformat(),
            }
            entry.options = {**entry.options, "headers": headers}
        # Keyword arguments: sentry-sdk's Celery integration wraps apply_async
        # and unpacks exactly (scheduler, entry) from the positional ones.
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def close(self) -> None:
        # On Heroku's SIGTERM the beat child hears it twice: from the platform
        # (it starts closing) and from the worker stopping its Beat step. A
        # second SIGTERM in the middle of the release killed it once here before
        # the DEL reached Redis, and the standby waited 25 s for the lock to
        # expire. Hold SIGTERM back until the lock is released.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            if self.lock is not None and self.lock.owned():
                self._forget_holder()
            super().close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    # --- holder bookkeeping -------------------------------------------------
    def _record_tick(self) -> None:
        if self.lock is None:
            return
        client = get_redis(self.app)
        key = holder_key(self.app)
        now = time.time()
        with client.pipeline() as pipe:
            pipe.hsetnx(key, "acquired_at", now)
            pipe.hset(
                key,
                mapping={
                    "dyno": os.environ.get("DYNO") or socket.gethostname(),
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "last_tick_at": now,
                },
            )
            pipe.expire(key, int(self.lock_timeout))
            pipe.execute()

    def _forget_holder(self) -> None:
        try:
            get_redis(self.app).delete(holder_key(self.app))
        except RedisError:
            pass


@beat_init.connect(weak=False)
def _start_holder_record(sender=None, **kwargs) -> None:
    # RedBeat acquires the lock in its own beat_init receiver (registered at
    # import, so before this one): record the holder straight away instead of
    # waiting for the first tick.
    scheduler = getattr(sender, "scheduler", None)
    if isinstance(scheduler, KoolclipsScheduler) and scheduler.lock is not None:
        get_redis(scheduler.app).delete(holder_key(scheduler.app))
        scheduler._record_tick()
        logger.info(
            "beat: holding the scheduler lock as %s pid %s",
            os.environ.get("DYNO") or socket.gethostname(),
            os.getpid(),
        )
