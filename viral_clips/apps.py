from django.apps import AppConfig


class ViralClipsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "viral_clips"
    verbose_name = "Viral clips"

    def ready(self) -> None:
        # run_now connects the task_postrun handler that frees the Run now
        # buttons; cleanup the ledger's runs_abandoned receiver for CleanupRun.
        from viral_clips import cleanup, run_now  # noqa: F401
