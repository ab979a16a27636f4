from django.apps import AppConfig


class ViralClipsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "viral_clips"
    verbose_name = "Viral clips"

    def ready(self) -> None:
        from celery.signals import task_postrun

        from scheduling import history
        from scheduling.ledger import runs_abandoned
        from viral_clips import run_now
        from viral_clips.cleanup.books import mark_cleanup_runs_abandoned

        # A finished cleanup task frees the Run now buttons.
        task_postrun.connect(run_now.cleanup_finished, dispatch_uid="koolclips-run-now-finished")
        # A cleanup whose worker died says so in its CleanupRun too.
        runs_abandoned.connect(
            mark_cleanup_runs_abandoned, dispatch_uid="koolclips-cleanup-abandoned"
        )
        # A cleanup run's counters go with its ledger row when history is pruned.
        history.follow_runs("viral_clips.CleanupRun", run_field="job_run", age_field="started_at")
        history.prune_by_age("viral_clips.CubeMeasurement", "measured_at")
