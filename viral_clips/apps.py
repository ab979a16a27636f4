from django.apps import AppConfig


class ViralClipsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "viral_clips"
    verbose_name = "Viral clips"

    def ready(self) -> None:
        # Connects the task_postrun handler that frees the Run now buttons.
        from viral_clips import run_now  # noqa: F401
