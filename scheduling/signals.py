"""Where the scheduling layer hooks into Celery's lifecycle: every receiver, in
one list, connected once from `SchedulingConfig.ready()` (in a worker that is
its main process, before the pool and the embedded beat fork, so every child
inherits them)."""

from __future__ import annotations

from celery import signals
from redbeat.schedulers import acquire_distributed_beat_lock

from scheduling import beat, crons, shutdown, supervisor, tasks

RECEIVERS = [
    # The beat process.
    (signals.beat_init, crons.note_beat_process),
    (signals.beat_embedded_init, beat.drop_inherited_db_connections),
    (signals.before_task_publish, crons.start_scheduled_check_in),
    # The worker's main process.
    (signals.worker_ready, shutdown.flag_on_stop_signals),
    (signals.worker_ready, tasks.canary_at_start),
    (signals.worker_shutting_down, shutdown.on_worker_shutting_down),
    (signals.worker_shutting_down, supervisor.note_worker_shutting_down),
    # Each pool child.
    (signals.worker_process_init, shutdown.install_handler),
]


def connect() -> None:
    # The lock is taken in KoolclipsScheduler.tick, not by RedBeat's blocking
    # beat_init receiver (scheduling/beat.py says why).
    signals.beat_init.disconnect(acquire_distributed_beat_lock)
    for signal, receiver in RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"koolclips:{receiver.__qualname__}")
