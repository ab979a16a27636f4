"""`python manage.py jobs list | pause | resume | stop | run <entry> --reason …`.

The dashboard's controls for when the web dyno is down (`heroku run`): the
same services (scheduling/controls.py, viral_clips/run_now.py), the same audit
trail. The actor is `--actor`, else `cli:<$USER>` (`cli:heroku` on a dyno,
which has no USER).
"""

from __future__ import annotations

import os

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from scheduling import controls, registry
from viral_clips.cleanup import InvalidRetention
from viral_clips.run_now import CLEANUP, run_job_now


def default_actor() -> str:
    return f"cli:{os.environ.get('USER') or 'heroku'}"


class Command(BaseCommand):
    help = (
        "Pause, resume, stop or run a scheduled job now (audited), or list the jobs"
        " with their state."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="Every job: paused or scheduled, running or idle.")
        for name, words in (
            ("pause", "Skip the job's slots from the next one on (recorded skipped: paused)."),
            ("resume", "Run the next slot again; slots missed while paused are not caught up."),
            ("stop", "Stop the job's running run after its current batch; not resumed."),
            ("run", "Run the job now, through the guard and ledger (trigger manual)."),
        ):
            sub = actions.add_parser(name, help=words)
            sub.add_argument("entry", help="The job's entry (see `jobs list`).")
            sub.add_argument("--reason", required=True, help="Why (the audit trail keeps it).")
            sub.add_argument("--actor", default=None, help="Who (default: cli:$USER).")
            if name == "run":
                sub.add_argument(
                    "--retention-days",
                    default=None,
                    help="The cleanup only: days to keep (default CLEANUP_RETENTION_DAYS).",
                )
                sub.add_argument(
                    "--dry-run",
                    action="store_true",
                    help="The cleanup only: count, delete nothing.",
                )

    def handle(self, *args, action: str, **options) -> None:
        if action == "list":
            self._list()
            return
        try:
            job = registry.get(options["entry"])
        except KeyError as exc:
            raise CommandError(str(exc.args[0])) from exc
        actor = options["actor"] or default_actor()
        reason = options["reason"]
        try:
            if action == "pause":
                controls.pause(job, actor, reason)
                self.stdout.write(f"{job.entry} paused: its slots are skipped until resumed")
            elif action == "resume":
                controls.resume(job, actor, reason)
                self.stdout.write(
                    f"{job.entry} resumed: the next slot runs; slots missed while paused"
                    " are not caught up"
                )
            elif action == "stop":
                action_row = controls.stop(job, actor, reason)
                self.stdout.write(
                    f"{job.entry}: run #{action_row.run_id} told to stop; it ends interrupted"
                    " within seconds, after its current batch"
                )
            else:
                self._run(job, actor, reason, options)
        except (controls.ControlError, InvalidRetention) as exc:
            raise CommandError(f"{job.entry}: {exc}") from exc
        except redis.RedisError as exc:
            raise CommandError(f"{job.entry}: not queued, Redis unavailable ({exc})") from exc

    def _run(self, job, actor: str, reason: str, options: dict) -> None:
        if options["dry_run"] or options["retention_days"] is not None:
            if job != CLEANUP:
                raise CommandError(f"{job.entry}: --dry-run and --retention-days are the cleanup's")
        result = run_job_now(
            job.entry,
            actor=actor,
            reason=reason,
            dry_run=options["dry_run"],
            retention_days=options["retention_days"],
        )
        if not result.queued:
            raise CommandError(f"{job.entry}: not queued: {result.busy.describe()}")
        self.stdout.write(f"{job.entry} queued (task {result.task_id}); a worker runs it")

    def _list(self) -> None:
        paused = controls.paused_entries()
        now = timezone.now()
        for job in registry.jobs():
            if not controls.controllable(job):
                self.stdout.write(
                    f"{job.entry}: scheduled; no controls (it runs outside the run ledger)"
                )
                continue
            state = paused[job.entry].describe() if job.entry in paused else "scheduled"
            running = controls.running_run(job)
            if running is not None:
                seconds = int((now - (running.started_at or now)).total_seconds())
                state += f"; running run #{running.pk} ({running.trigger}, {seconds} s)"
            self.stdout.write(f"{job.entry}: {state}")
