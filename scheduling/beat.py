"""The beat scheduler: RedBeat, plus what a worker dyno with embedded beat needs.

RedBeat's Redis lock makes one beat schedule however many `worker --beat`
processes run. On top of it this scheduler

* takes the lock inside its tick loop, one non-blocking attempt a loop
  interval, instead of RedBeat's blocking `beat_init` receiver: a standby keeps
  ticking (so its heartbeat shows it alive) and a Redis error while it waits is
  simply retried (RedBeat's receiver swallowed it and left the lock `None`:
  redbeat #285). The schedule is written to Redis by the beat that takes the
  lock, not by every standby;
* rides out a Redis blip: an error while the lock still has time left (tracked
  here: when it was last extended, and the lock timeout) is logged and retried
  a second later. It gives up - raises, and the worker's BeatSupervisor starts
  a fresh beat that waits for the lock - only when the lock may have lapsed or
  Redis says someone else holds it (RedBeat exits on any error: redbeat #230);
* stamps its heartbeat (scheduling/heartbeat.py) on every tick, so a beat
  stuck in a call is replaced;
* records who holds the lock and when it last ticked (`<prefix>:holder`), for
  `manage.py beat_status`, the dashboard and /health/;
* installs the registry's entries (`registry.beat_entries()`) when it takes
  the lock, and stamps every task it sends with the slot it belongs to
  (scheduling/headers.py), so the task can refuse to run one slot twice.

RedBeat's own lock receiver (`acquire_distributed_beat_lock` on beat_init) is
disconnected in scheduling/signals.py: the lock is taken in `tick`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from datetime import UTC, datetime

from celery.beat import ScheduleEntry
from celery.fixups.django import _maybe_close_fd
from django.db import close_old_connections, connections
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis
from redis.exceptions import LockError, RedisError

from scheduling import catchup, headers, heartbeat, registry, slots, status
from scheduling.db import db_retry
from scheduling.entries import KoolclipsEntry

logger = logging.getLogger("celery.beat")

# Seconds between attempts while Redis does not answer and the lock has time left.
RETRY_AFTER = 1.0
# Ticks on which a failing catch-up (database down) is tried before giving up on it.
CATCH_UP_ATTEMPTS = 5


def scheduled_slot(entry: ScheduleEntry, now: datetime | None = None) -> datetime:
    """The slot a due entry is being sent for: its exact due time (UTC), from the
    schedule itself (scheduling/slots.py) and the entry's last run as stored in
    Redis, so a takeover agrees with the holder it replaced."""
    return slots.slot_for(entry.schedule, entry.last_run_at, now or datetime.now(UTC))


def _with_headers(entry: ScheduleEntry, sending: dict) -> ScheduleEntry:
    """A copy of `entry` sending `sending` (the entry itself is left alone;
    copy.copy cannot rebuild a RedBeat entry from ScheduleEntry's __reduce__)."""
    sent = object.__new__(type(entry))
    sent.__dict__.update(entry.__dict__)
    sent.options = {**entry.options, "headers": sending}
    return sent


class KoolclipsScheduler(RedBeatScheduler):
    """RedBeatScheduler that survives Redis blips, reports its holder and stamps each slot."""

    # Stores a cron in a time zone as one (scheduling/entries.py).
    Entry = KoolclipsEntry

    def __init__(self, app, *args, **kwargs) -> None:
        self._installed = False  # the schedule written to Redis by this holder
        self._extended_at: float | None = None  # monotonic, sent before the last good extend
        self._waiting_logged = False
        self._pending_catch_up: set[str] | None = None  # entries just created, once holding
        self._catch_up_failures = 0
        heartbeat.stamp()
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        # Called from Scheduler.__init__: deferred until this beat holds the
        # lock (tick), so a standby neither needs Redis to start nor rewrites
        # the holder's entries.
        if self._installed:
            super().setup_schedule()

    # --- the tick loop ------------------------------------------------------
    def tick(self, min=min, **kwargs) -> float:
        heartbeat.stamp()
        try:
            if self.lock_key:
                if self.lock is None:
                    if not self._take_lock():
                        return self.max_interval  # a standby: try again next loop
                else:
                    self._extend_lock()
            if not self._installed:
                self._on_lock_taken()
            if self._pending_catch_up is not None:
                self._run_catch_up()
            interval = self._send_due(min)
            self._record_tick()
        except LockError as exc:
            # Redis says the lock is gone or someone else's: stop at once.
            self._give_up(f"{type(exc).__name__}: {exc or 'the lock is not ours'}")
            raise
        except RedisError as exc:
            if self.lock_key and self.lock is None:
                logger.warning(
                    "beat: Redis did not answer while waiting for the scheduler lock (%s: %s);"
                    " retrying in %s s",
                    type(exc).__name__,
                    exc,
                    RETRY_AFTER,
                )
                return RETRY_AFTER
            remaining = self.lock_remaining()
            if remaining is None or remaining > self.safety_margin():
                logger.warning(
                    "beat: Redis did not answer (%s: %s); the scheduler lock has %s s left,"
                    " retrying in %s s",
                    type(exc).__name__,
                    exc,
                    "?" if remaining is None else f"{remaining:.1f}",
                    RETRY_AFTER,
                )
                return min(RETRY_AFTER, self.max_interval)
            self._give_up(
                f"{type(exc).__name__}: {exc}; the lock may have lapsed ({remaining:.1f} s left)"
            )
            raise
        finally:
            heartbeat.stamp()
        return interval

    def _send_due(self, min) -> float:
        # RedBeat's tick without its lock extension (done above).
        remaining_times = []
        try:
            for entry in self.schedule.values():
                next_time_to_run = self.maybe_due(entry, **self._maybe_due_kwargs)
                if next_time_to_run:
                    remaining_times.append(next_time_to_run)
        except RuntimeError:
            logger.debug("beat: RuntimeError", exc_info=True)
        return min(remaining_times + [self.max_interval])

    # --- the lock -------------------------------------------------------------
    def _take_lock(self) -> bool:
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        # RedBeat's extend script: extend *to* the timeout, not by it.
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        sent_at = time.monotonic()
        if not lock.acquire(blocking=False):
            if not self._waiting_logged:
                logger.info("beat: another beat holds the scheduler lock; standing by")
                self._waiting_logged = True
            return False
        self._extended_at = sent_at
        self.lock = lock
        logger.info("beat: Acquired lock")
        return True

    def _extend_lock(self) -> None:
        sent_at = time.monotonic()
        self.lock.extend(int(self.lock_timeout))
        self._extended_at = sent_at

    def lock_remaining(self) -> float | None:
        """Seconds the lock is known to be ours for, at least (None: not held)."""
        if self._extended_at is None:
            return None
        return self.lock_timeout - (time.monotonic() - self._extended_at)

    def safety_margin(self) -> float:
        """Below this much lock time left, a failing Redis means the lock may lapse
        before the next attempt reaches it: one retry pause plus a call that
        times out (with redis-py's one retry), and never under a loop interval."""
        options = self.app.redbeat_conf.redbeat_redis_options or {}
        call = float(options.get("socket_timeout") or 0) * 2
        return max(float(self.max_interval), RETRY_AFTER + call)

    def _on_lock_taken(self) -> None:
        self._installed = True
        try:
            client = get_redis(self.app)
            # The entries as the registry declares them now (RedBeat reads them
            # from beat_schedule in setup_schedule).
            self.app.conf.beat_schedule = registry.beat_entries()
            names = list(self.app.redbeat_conf.schedule)
            keys = [self.Entry.generate_key(self.app, name) for name in names]
            fresh = {n for n, k in zip(names, keys, strict=True) if not client.exists(k)}
            self.setup_schedule()
            client.delete(status.holder_key(self.app))
            self._record_tick()
        except BaseException:
            self._installed = False  # try again on the next tick
            raise
        logger.info(
            "beat: holding the scheduler lock as %s pid %s",
            os.environ.get("DYNO") or socket.gethostname(),
            os.getpid(),
        )
        _log_schedule()
        self._pending_catch_up = fresh

    def _run_catch_up(self) -> None:
        try:
            self._catch_up(self._pending_catch_up)
        except RedisError:
            raise  # a blip: tick retries, catch-up with it
        except Exception:
            self._catch_up_failures += 1
            if self._catch_up_failures < CATCH_UP_ATTEMPTS:
                logger.warning("beat: catch-up from the ledger failed; retrying", exc_info=True)
                return
            # The database stays down: the entries schedule as RedBeat sees them.
            logger.exception("beat: catch-up from the ledger failed; scheduling without it")
        self._pending_catch_up = None

    def _give_up(self, why: str) -> None:
        # Without the lock another beat may already schedule: stop at once.
        # The worker's beat supervisor starts a fresh beat, which waits for
        # the lock (and re-creates the schedule if Redis came back empty).
        # The exception ends this beat process (Sentry's beat hook reports
        # it as fatal); the log line says what happens next.
        # The holder record is left alone: it may already be the new holder's,
        # and it expires with the lock.
        logger.warning("beat: lost the scheduler lock (%s); stopping this beat", why)
        self.lock = None  # never release a lock that is not known to be ours
        self._extended_at = None

    # --- sending --------------------------------------------------------------
    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        carried = dict(entry.options.get("headers") or {})
        slot = None
        if headers.SLOT not in carried:
            slot = scheduled_slot(entry)
            carried.update(headers.for_slot(slot))
        sent = _with_headers(entry, carried)
        # Sent first, advanced after (Celery advances first): a send that fails
        # (broker down) leaves the entry due, and the next tick sends the same
        # slot again instead of losing it. Advanced *to the slot*, so the next
        # slot is on the schedule's own grid.
        # Keyword arguments: sentry-sdk's Celery integration wraps apply_async
        # and unpacks exactly (scheduler, entry) from the positional ones.
        result = super().apply_async(sent, producer=producer, advance=False, **kwargs)
        if advance and slot is not None:
            entry._next_instance(last_run_at=slot)
        return result

    # --- catch-up -------------------------------------------------------------
    def _catch_up(self, fresh: set[str]) -> None:
        """Align entries RedBeat just created, then send what the ledger says
        is missing (scheduling/catchup.py)."""
        close_old_connections()
        now = datetime.now(UTC)
        for name in fresh:
            try:
                job = registry.get(name)
            except KeyError:
                continue
            last = db_retry(lambda job=job: catchup.aligned_last_run(job, now), what="catch-up")
            self._entry(name).reschedule(last_run_at=last)
        for item in db_retry(lambda: catchup.plan(now), what="catch-up"):
            entry = self._entry(item.job.entry)
            due, _ = entry.is_due()
            if due and scheduled_slot(entry, now) == item.slot:
                continue  # the entry sends this very slot itself, this tick
            logger.info(
                "beat: catching up %s slot %s (%s)",
                item.job.entry,
                item.slot.isoformat(),
                item.why,
            )
            sent = _with_headers(
                entry,
                {
                    **(entry.options.get("headers") or {}),
                    **headers.for_slot(item.slot, catch_up=True),
                },
            )
            self.apply_async(sent, producer=self.producer, advance=False)
            if entry.last_run_at is None or entry.last_run_at < item.slot:
                entry.reschedule(last_run_at=item.slot)

    def _entry(self, name: str):
        return self.Entry.from_key(self.Entry.generate_key(self.app, name), app=self.app)

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
        except RedisError as exc:
            # Redis gone: the lock expires by itself.
            logger.warning("beat: could not release the scheduler lock (%s)", exc)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    # --- holder bookkeeping -------------------------------------------------
    def _record_tick(self) -> None:
        if self.lock is None:
            return
        client = get_redis(self.app)
        key = status.holder_key(self.app)
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
            get_redis(self.app).delete(status.holder_key(self.app))
        except RedisError:
            pass


def drop_inherited_db_connections(**kwargs) -> None:
    """`beat_embedded_init` receiver. The embedded beat is forked from the
    worker: a database connection the worker had open is a socket shared with
    it. Drop it without a word on the wire (closing it would end the worker's
    session too), as Celery does for its pool children; catch-up opens its own."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _maybe_close_fd(conn.connection)
            conn.connection = None


def _log_schedule() -> None:
    """One line per registered job when a beat starts scheduling: what runs when."""
    now = datetime.now(UTC)
    for job in registry.jobs():
        try:
            line = status.job_status(job, now, with_ledger=False)
        except Exception as exc:  # noqa: BLE001 - a log line must never stop beat
            logger.info("beat: %s: schedule unknown (%s)", job.entry, type(exc).__name__)
            continue
        when = f"{line.next_run_at:%Y-%m-%d %H:%M:%S} UTC" if line.next_run_at else "unknown"
        logger.info("beat: %s runs %s; next run %s", job.entry, line.schedule_words, when)
