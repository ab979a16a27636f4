from __future__ import annotations

from django.db import models

from scheduling.models import JobRun
from scheduling.visible import visible


class Clip(models.Model):
    title = models.CharField(max_length=200)
    # Key relative to <cube>/public/; the default storage is Cloudcube.
    file = models.FileField(upload_to="clips/%Y/%m/", max_length=500)
    size_bytes = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    pinned = models.BooleanField(
        default=False, help_text="Pinned clips are never deleted by the cleanup."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["file"])]

    def __str__(self) -> str:
        # What the admin shows in headings, messages and its history: hidden
        # and direction-changing characters escaped.
        return visible(self.title)

    def save(self, *args, **kwargs) -> None:
        if self.file and not self.size_bytes:
            try:
                self.size_bytes = self.file.size
            except (OSError, ValueError):
                self.size_bytes = 0
        super().save(*args, **kwargs)


class CleanupRun(models.Model):
    """One run of the Cloudcube cleanup: written at start, completed at the end."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"
        COMMAND = "command", "Command"

    # A cleanup run's status is a run status; only the ledger's row waits
    # (queued, deferred) before a CleanupRun exists.
    Status = JobRun.Status
    STATUS_CHOICES = [
        (s.value, s.label)
        for s in (
            Status.RUNNING,
            Status.SUCCEEDED,
            Status.PARTIAL,
            Status.FAILED,
            Status.SKIPPED,
            Status.INTERRUPTED,
            Status.ABANDONED,
        )
    ]

    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    retention_days = models.PositiveIntegerField()
    dry_run = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=STATUS_CHOICES, default=Status.RUNNING, db_index=True
    )
    cube = models.CharField(max_length=128, blank=True)
    objects_scanned = models.PositiveIntegerField(default=0)
    # Total size of the objects listed: the cube's size when the run started
    # (the dashboard's storage chart and the weekly report read it).
    bytes_scanned = models.BigIntegerField(default=0)
    files_deleted = models.PositiveIntegerField(default=0)
    bytes_freed = models.BigIntegerField(default=0)
    clips_retained = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    # Clip rows removed because their file was no longer in the cube (a run
    # that deleted files but could not delete their rows). db_default keeps
    # inserts by code that predates the column working during a deploy.
    rows_reconciled = models.PositiveIntegerField(default=0, db_default=0)
    # A few per-key errors or the exception, never the whole list.
    error_sample = models.JSONField(default=list, blank=True)
    # A dry run's first keys it would delete (at most WOULD_DELETE_SAMPLE_SIZE).
    # Nullable so that code still running during a deploy can insert rows.
    would_delete_sample = models.JSONField(default=list, blank=True, null=True)
    detail = models.TextField(blank=True, help_text="Why a run failed or was skipped.")
    task_id = models.CharField(max_length=64, blank=True, db_index=True)
    # The beat slot this run belongs to (None for manual runs).
    scheduled_for = models.DateTimeField(null=True, blank=True)
    host = models.CharField(max_length=128, blank=True, help_text="Dyno that ran it.")
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Linked, not merged: the ledger row (scheduling.JobRun) is what every job
    # has - slot, lease, attempts, status; this row keeps what only the cleanup
    # has - its counters, the cube, the error sample - and keeps the dashboard,
    # storage chart and weekly report reading the table they read. A resumed
    # execution finds its CleanupRun through this link. Nullable: rows written
    # before the ledger existed (and by old code during a deploy) have none.
    job_run = models.ForeignKey(
        "scheduling.JobRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="cleanup_runs",
    )

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Cleanup #{self.pk} ({self.trigger}, {self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def mb_freed(self) -> float:
        return self.bytes_freed / (1024 * 1024)


class CubeMeasurement(models.Model):
    """The cube's size and object count, measured by listing it (a scheduled job).

    The dashboard and the weekly report read the latest of these (or a later
    cleanup run's scan) instead of listing S3 inside a request.
    """

    measured_at = models.DateTimeField(db_index=True)
    object_count = models.BigIntegerField()
    total_bytes = models.BigIntegerField()
    cube = models.CharField(max_length=128, blank=True)
    seconds_to_measure = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=64, default="scheduled measurement")

    class Meta:
        ordering = ["-measured_at"]
        get_latest_by = "measured_at"

    def __str__(self) -> str:
        return f"{self.cube}: {self.object_count} objects, {self.total_bytes} bytes"
