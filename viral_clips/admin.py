from datetime import UTC

from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from viral_clips.models import CleanupRun, Clip

admin.site.site_header = "koolclips admin"
admin.site.site_title = "koolclips"
admin.site.index_title = "Clips and cleanup runs"
# Two models: the sidebar repeats the index and costs the runs list its width.
admin.site.enable_nav_sidebar = False


def human_size(size: int) -> str:
    """ "13.8 MB (14,423,040 bytes)": readable, and exact for whoever needs it."""
    if size < 1024:
        return filesizeformat(size)
    return f"{filesizeformat(size)} ({size:,} bytes)"


class NarrowScreens:
    # Header and tables readable at 420 px (tables scroll inside their box).
    class Media:
        css = {"all": ("viral_clips/admin.css",)}


@admin.register(Clip)
class ClipAdmin(NarrowScreens, admin.ModelAdmin):
    list_display = ("title", "size", "age", "pinned", "created_at")
    list_filter = ("pinned", "created_at")
    list_editable = ("pinned",)
    search_fields = ("title", "file")
    date_hierarchy = "created_at"
    readonly_fields = ("size", "created_at")

    def get_fields(self, request, obj=None):
        # The size is measured from the file on save: nothing to show before.
        if obj is None:
            return ("title", "file", "pinned")
        return ("title", "file", "pinned", "size", "created_at")

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj: Clip) -> str:
        return filesizeformat(obj.size_bytes)

    @admin.display(description="Age", ordering="created_at")
    def age(self, obj: Clip) -> str:
        return timesince(obj.created_at)


@admin.register(CleanupRun)
class CleanupRunAdmin(NarrowScreens, admin.ModelAdmin):
    # Few columns, so the list fits 1280 px beside the filters; the rest is on the run's page.
    list_display = (
        "id",
        "started",
        "kind",
        "status",
        "deleted",
        "freed",
        "error_count",
        "duration",
    )
    list_display_links = ("id", "started")
    list_filter = ("status", "trigger", "dry_run")
    date_hierarchy = "started_at"
    fields = (
        ("status", "kind", "retention_days"),
        ("started_at", "finished_at", "duration"),
        ("objects_scanned", "scanned"),
        ("files_deleted", "freed"),
        ("objects_kept", "error_count"),
        "would_delete",
        "errors",
        "detail",
        ("cube", "host"),
        ("task_id", "scheduled_for"),
    )
    readonly_fields = (
        "status",
        "kind",
        "retention_days",
        "started_at",
        "finished_at",
        "duration",
        "objects_scanned",
        "scanned",
        "files_deleted",
        "freed",
        "objects_kept",
        "error_count",
        "would_delete",
        "errors",
        "detail",
        "cube",
        "host",
        "task_id",
        "scheduled_for",
    )

    # The record is written by the cleanup only: view, never edit (no Save buttons).
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Started (UTC)", ordering="started_at")
    def started(self, obj: CleanupRun) -> str:
        return f"{obj.started_at.astimezone(UTC):%Y-%m-%d %H:%M}"

    @admin.display(description="Run", ordering="trigger")
    def kind(self, obj: CleanupRun) -> str:
        # A dry run is a kind of run, not a flag to colour red or green.
        trigger = obj.get_trigger_display()
        return f"{trigger} · dry run" if obj.dry_run else trigger

    @admin.display(description="Scanned")
    def scanned(self, obj: CleanupRun) -> str:
        return human_size(obj.bytes_scanned)

    @admin.display(description="Files deleted", ordering="files_deleted")
    def deleted(self, obj: CleanupRun) -> str:
        return f"would delete {obj.files_deleted}" if obj.dry_run else str(obj.files_deleted)

    @admin.display(description="Objects kept")
    def objects_kept(self, obj: CleanupRun) -> int:
        # Stored as clips_retained: every object left, recent, pinned or failed.
        return obj.clips_retained

    @admin.display(description="Freed", ordering="bytes_freed")
    def freed(self, obj: CleanupRun) -> str:
        size = filesizeformat(obj.bytes_freed)
        return f"would free {size}" if obj.dry_run else size

    @admin.display(description="Duration")
    def duration(self, obj: CleanupRun) -> str:
        seconds = obj.duration_seconds
        return "—" if seconds is None else f"{seconds:.1f} s"

    @admin.display(description="Would delete (sample)")
    def would_delete(self, obj: CleanupRun) -> str:
        keys = obj.would_delete_sample or []
        if not obj.dry_run:
            return "—"
        if not keys:
            return "nothing" if obj.files_deleted == 0 else "no sample recorded"
        more = obj.files_deleted - len(keys)
        return format_html(
            '<ul class="would-delete">{}</ul>{}',
            format_html_join("", "<li><code>{}</code></li>", ((key,) for key in keys)),
            format_html("<p>… and {} more</p>", more) if more > 0 else "",
        )

    @admin.display(description="Errors (sample)")
    def errors(self, obj: CleanupRun) -> str:
        sample = obj.error_sample or []
        if not sample:
            return "—"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li><code>{}</code>: {} {}</li>",
                ((e.get("key"), e.get("code"), e.get("message")) for e in sample),
            ),
        )
