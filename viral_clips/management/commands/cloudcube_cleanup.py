"""`python manage.py cloudcube_cleanup [--retention-days N] [--dry-run]`.

The same guard as the scheduled task (scheduling/guard.py): refused while
another cleanup runs; Ctrl-C, SIGTERM or SIGHUP stop it between batches and
record the run `interrupted`, never leaving it `running`.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from scheduling import guard, shutdown
from scheduling.execution import Execution
from scheduling.models import JobRun
from viral_clips.cleanup import InvalidRetention, retention_or_default, run_cleanup
from viral_clips.models import CleanupRun
from viral_clips.tasks import scheduled_cloudcube_cleanup

EXIT_REFUSED = 3
EXIT_INTERRUPTED = 130


class _WithProgressBar:
    """The command's execution as the cleanup's RunContext, drawing the bar."""

    def __init__(self, execution: Execution, bar: tqdm, dry_run: bool):
        self.execution = execution
        self.run = execution.run
        self.task_id = execution.task_id
        self.bar = bar
        self.label = "would delete" if dry_run else "deleted"

    def progress(self, scanned: int, deleted: int) -> None:
        self.execution.progress()
        self.bar.update(scanned - self.bar.n)
        self.bar.set_postfix({self.label: deleted})

    def should_stop(self) -> bool:
        return self.execution.should_stop()

    def fence(self) -> None:
        self.execution.fence()

    def stop_detail(self) -> str | None:
        return self.execution.stop_detail()


class Command(BaseCommand):
    help = (
        "Delete Cloudcube clip files older than the retention period"
        " (the same service and guard the schedule runs)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--retention-days",
            type=int,
            default=None,
            help="Days to keep files (default: CLEANUP_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List and report what would be deleted; delete nothing.",
        )

    def handle(self, *args, retention_days: int | None, dry_run: bool, **options) -> None:
        try:
            retention = retention_or_default(retention_days)
        except InvalidRetention as exc:
            raise CommandError(str(exc)) from exc
        # A progress bar on a terminal only: logs and pipes get the summary.
        bar = tqdm(
            desc="Scanning cube",
            unit=" objects",
            disable=not sys.stderr.isatty(),
            file=sys.stderr,
        )
        try:
            with (
                shutdown.stop_on_signals(),
                guard.execution(scheduled_cloudcube_cleanup.job) as execution,
            ):
                report = run_cleanup(
                    retention,
                    dry_run=dry_run,
                    trigger=CleanupRun.Trigger.COMMAND,
                    context=_WithProgressBar(execution, bar, dry_run),
                )
                execution.finish(report.status)
        except guard.Refused as exc:
            raise CommandError(
                f"not started: {exc.refusal.reason}. Try again once it has finished"
                f" (ledger row #{exc.refusal.run.pk}).",
                returncode=EXIT_REFUSED,
            ) from exc
        except (shutdown.StopRequested, KeyboardInterrupt) as exc:
            raise CommandError(
                f"interrupted; the run is recorded as {JobRun.Status.INTERRUPTED}"
                " (files deleted so far stay deleted; run the command again to finish)",
                returncode=EXIT_INTERRUPTED,
            ) from exc
        except Exception as exc:
            # The run is already recorded as failed; say why without a traceback.
            raise CommandError(f"cleanup failed: {type(exc).__name__}: {exc}") from exc
        finally:
            bar.close()

        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{'Dry run: ' if dry_run else ''}{verb} {report.files_deleted} files "
            f"({report.mb_freed:.2f} MB), retained {report.recent_kept} recent clips "
            f"and {report.pinned_kept} expired files of pinned or recent clips, "
            f"scanned {report.objects_scanned} objects in cube {report.cube!r}. "
            f"Status: {report.status} (run #{report.run_id})."
        )
        for error in report.errors:
            self.stderr.write(
                f"  could not delete {error['key']!r}: {error['code']} {error['message']}"
            )
        if report.error_count > len(report.errors):
            self.stderr.write(f"  … and {report.error_count - len(report.errors)} more")
        if report.status == CleanupRun.Status.FAILED:
            raise CommandError(f"cleanup run {report.run_id} failed", returncode=1)
        if report.status == CleanupRun.Status.PARTIAL:
            raise CommandError(
                f"cleanup run {report.run_id} was partial: {report.error_count} key(s) failed",
                returncode=2,
            )
