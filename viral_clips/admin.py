from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.utils.timesince import timesince

from viral_clips.models import CleanupRun, Clip


@admin.register(Clip)
class ClipAdmin(admin.ModelAdmin):
    list_display = ("title", "size", "age", "pinned", "created_at")
    list_filter = ("pinned", "created_at")
    list_editable = ("pinned",)
    search_fields = ("title", "file")
    date_hierarchy = "created_at"
    readonly_fields = ("size_bytes", "created_at")
    fields = ("title", "file", "pinned", "size_bytes", "created_at")

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj: Clip) -> str:
        return filesizeformat(obj.size_bytes)

    @admin.display(description="Age", ordering="created_at")
    def age(self, obj: Clip) -> str:
        return timesince(obj.created_at)


@admin.register(CleanupRun)
class CleanupRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "started_at",
        "trigger",
        "status",
        "dry_run",
        "retention_days",
        "objects_scanned",
        "files_deleted",
        "freed",
        "clips_retained",
        "error_count",
        "duration",
    )
    list_filter = ("status", "trigger", "dry_run")
    date_hierarchy = "started_at"

    def get_readonly_fields(self, request, obj=None):
        # The record is written by the cleanup only.
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Freed", ordering="bytes_freed")
    def freed(self, obj: CleanupRun) -> str:
        return filesizeformat(obj.bytes_freed)

    @admin.display(description="Duration")
    def duration(self, obj: CleanupRun) -> str:
        seconds = obj.duration_seconds
        return "—" if seconds is None else f"{seconds:.1f} s"
