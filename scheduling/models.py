"""The run ledger: the database, not Redis, says what ran.

`JobRun` — one row per execution of any registered job (scheduling/registry.py),
plus one `skipped` row per refused delivery (a redelivery of a finished slot, a
duplicate of a live run, a manual press while a run is active, a slot of a
paused job, a redelivery of a run an operator stopped) with the reason.

    "this slot executed" = a JobRun row for (job, slot) whose status is not
    `skipped`; the partial unique constraint `jobrun_one_execution_per_slot`
    makes a second one impossible on SQLite and PostgreSQL alike.

The run states (one writer at a time: the holder of the row's `token`; the
claim rules are scheduling/claim.py's):

    queued/deferred -> running -> succeeded | partial | failed | interrupted
    running with a lapsed lease -> abandoned   (anyone who finds it may write this)
    interrupted | abandoned | deferred -> running   (a redelivery taking over: new token)
    skipped: written once, never changes

`JobLease` — one row per overlap group: who may run that group right now
(scheduling/lease.py).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from scheduling.visible import visible


class JobRun(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"
        COMMAND = "command", "Command"
        CATCH_UP = "catch_up", "Catch-up"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        DEFERRED = "deferred", "Deferred"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Partial"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"
        ABANDONED = "abandoned", "Abandoned"
        SKIPPED = "skipped", "Skipped"

    # Ended for good: a redelivery of such a slot is recorded `skipped`.
    FINAL = (Status.SUCCEEDED, Status.PARTIAL, Status.FAILED)
    # Not running and not final: a redelivery (same task id) takes it over and resumes it.
    RESUMABLE = (Status.QUEUED, Status.DEFERRED, Status.INTERRUPTED, Status.ABANDONED)

    job = models.CharField(max_length=100, db_index=True, help_text="The registry entry.")
    # The beat slot (its exact due time, UTC); None for manual and command runs.
    slot = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    task_id = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    # Fencing: a fresh uuid per execution (attempt); every write of the
    # execution is `UPDATE … WHERE token = <its token>`.
    token = models.CharField(max_length=64, blank=True, db_index=True)
    attempt = models.PositiveIntegerField(default=1)
    dyno = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_progress_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    detail = models.TextField(blank=True)
    # Job-specific checkpoints an execution records (e.g. {"sent": true} right
    # after the weekly report's mail left), read back by a resumed redelivery.
    state = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "slot"],
                condition=Q(slot__isnull=False) & ~Q(status="skipped"),
                name="jobrun_one_execution_per_slot",
            )
        ]
        indexes = [models.Index(fields=["job", "slot"], name="jobrun_job_slot")]

    def __str__(self) -> str:
        when = self.slot.isoformat() if self.slot else self.trigger
        return f"{self.job} {when} #{self.pk} ({self.status})"

    @property
    def when(self):
        """The moment this run stands for: its slot, else when it started or was recorded."""
        return self.slot or self.started_at or self.created_at

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class JobLease(models.Model):
    """Who runs an overlap group right now. `holder` is '' when free."""

    group = models.CharField(max_length=100, unique=True)
    holder = models.CharField(max_length=64, blank=True)
    run = models.ForeignKey(JobRun, null=True, blank=True, on_delete=models.SET_NULL)
    acquired_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lease {self.group}: {self.holder or 'free'}"


# --- The operator's hands (scheduling/controls.py) ----------------------------
class JobPause(models.Model):
    """A job's pause switch: a row per job that was ever paused. While `paused`,
    its scheduled and catch-up slots are recorded `skipped` ("paused: …")
    instead of run; `resumed_at` is the instant before which no missed slot is
    ever caught up."""

    job = models.CharField(max_length=100, unique=True)
    paused = models.BooleanField(default=False)
    changed_at = models.DateTimeField()
    changed_by = models.CharField(max_length=150)
    reason = models.TextField(blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.job}: {'paused' if self.paused else 'running'}"


class RunStop(models.Model):
    """An operator's order to stop one running execution. Its Execution reads
    it (at most once a second) and stops at the next safe point; the run ends
    `interrupted` and is never resumed by a redelivery or catch-up."""

    run = models.OneToOneField(JobRun, on_delete=models.CASCADE, related_name="stop_order")
    requested_at = models.DateTimeField()
    requested_by = models.CharField(max_length=150)
    reason = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"stop run #{self.run_id} by {self.requested_by}"

    def describe(self) -> str:
        return f"stopped by {self.requested_by}: {self.reason}; not resumed"


class JobAction(models.Model):
    """The audit trail: every pause, resume, stop and manual run, who and why.
    Written once, never changed or deleted from the admin."""

    class Action(models.TextChoices):
        PAUSE = "pause", "Pause"
        RESUME = "resume", "Resume"
        STOP = "stop", "Stop"
        RUN = "run", "Run now"

    job = models.CharField(max_length=100, db_index=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.CharField(max_length=150)
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The run it concerns (a stop), or the task id a Run now queued.
    run = models.ForeignKey(JobRun, null=True, blank=True, on_delete=models.SET_NULL)
    task_id = models.CharField(max_length=64, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        # Granted to no one but superusers until given (docs/operations.md).
        permissions = [
            ("run_job", "Can run a job now"),
            ("pause_job", "Can pause and resume a job"),
            ("stop_job", "Can stop a running job"),
        ]

    def __str__(self) -> str:
        return visible(f"{self.get_action_display()} {self.job} by {self.actor}")
