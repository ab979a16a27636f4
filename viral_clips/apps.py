from django.apps import AppConfig


class ViralClipsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "viral_clips"
    verbose_name = "Viral clips"
