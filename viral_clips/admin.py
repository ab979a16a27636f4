from datetime import UTC

from axes.admin import AccessAttemptAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessLog
from django import forms
from django.contrib import admin
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from scheduling.admin import AuditRecordAdmin, visible_field
from scheduling.visible import describe_hidden, has_hidden, visible
from viral_clips.models import CleanupRun, Clip
from viral_clips.uploads import ALLOWED_WORDS, EXTENSIONS, check_upload

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


class VisibleValuesFilter(admin.AllValuesFieldListFilter):
    """A field's distinct values as filter choices, hidden characters escaped."""

    def choices(self, changelist):
        for choice in super().choices(changelist):
            yield {**choice, "display": visible(choice["display"])}


class _ShownFile:
    """The stored file as the upload widget shows it: its real URL, its name escaped."""

    def __init__(self, file):
        self.url = file.url
        self._name = visible(file.name)

    def __str__(self) -> str:
        return self._name


class ClipFileInput(forms.ClearableFileInput):
    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        if context["widget"]["is_initial"]:
            context["widget"]["value"] = _ShownFile(value)
        return context


class ClipForm(forms.ModelForm):
    """Uploads: video or image only, by name and content, stored under a safe name
    with the type of its content (viral_clips/uploads.py)."""

    class Meta:
        model = Clip
        fields = ("title", "file", "pinned")
        widgets = {"file": ClipFileInput(attrs={"accept": ",".join(EXTENSIONS)})}
        help_texts = {"file": f"A video or image: {ALLOWED_WORDS}."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        title = self.initial.get("title") or ""
        if title and has_hidden(title):
            # The text box shows the title as stored; say what it hides.
            self.fields["title"].help_text = (
                f"This title contains hidden characters ({describe_hidden(title)}): it is"
                f" {visible(title)}"
            )

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if isinstance(upload, UploadedFile):
            checked = check_upload(upload.name, upload)
            upload.name = checked.name
            upload.content_type = checked.content_type
        return upload


@admin.register(Clip)
class ClipAdmin(NarrowScreens, admin.ModelAdmin):
    form = ClipForm
    list_display = ("shown_title", "size", "age", "pinned", "created_at")
    list_filter = ("pinned", "created_at")
    list_editable = ("pinned",)
    search_fields = ("title", "file")
    date_hierarchy = "created_at"
    readonly_fields = ("size", "created_at")

    def get_fields(self, request, obj=None):
        # The size is measured from the file on save: nothing to show before.
        if obj is None:
            return ("title", "file", "pinned")
        if not self.has_change_permission(request, obj):
            # Shown as text, not in form fields: hidden characters escaped.
            return ("shown_title", "shown_file", "pinned", "size", "created_at")
        return ("title", "file", "pinned", "size", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "shown_title", "shown_file")

    @admin.display(description="Title", ordering="title")
    def shown_title(self, obj: Clip) -> str:
        return visible(obj.title)

    @admin.display(description="File")
    def shown_file(self, obj: Clip) -> str:
        if not obj.file:
            return "—"
        return format_html('<a href="{}">{}</a>', obj.file.url, visible(obj.file.name))

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj: Clip) -> str:
        return filesizeformat(obj.size_bytes)

    @admin.display(description="Age", ordering="created_at")
    def age(self, obj: Clip) -> str:
        return timesince(obj.created_at)


@admin.register(CleanupRun)
class CleanupRunAdmin(NarrowScreens, AuditRecordAdmin):
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
        "shown_detail",
        ("shown_cube", "shown_host"),
        ("shown_task_id", "scheduled_for"),
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
        "shown_detail",
        "shown_cube",
        "shown_host",
        "shown_task_id",
        "scheduled_for",
    )
    # Text from outside (exception messages, keys): hidden characters escaped.
    shown_detail = visible_field("detail", "Detail")
    shown_cube = visible_field("cube", "Cube")
    shown_host = visible_field("host", "Host")
    shown_task_id = visible_field("task_id", "Task id")

    # The record is written by the cleanup only; runs are the audit trail.

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
            format_html_join("", "<li><code>{}</code></li>", ((visible(key),) for key in keys)),
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
                (
                    (visible(e.get("key")), visible(e.get("code")), visible(e.get("message")))
                    for e in sample
                ),
            ),
        )


# --- Login lockouts (django-axes) ----------------------------------------------
# Every active staff member may see who is locked out and why (view only: the
# operator who cannot log in asks one who can). Lift a lockout with
# `manage.py axes_reset_username <name>` / `axes_reset_ip <ip>` / `axes_reset`,
# or a superuser deletes the attempt here.
admin.site.unregister(AccessAttempt)


# Typed by whoever tries to log in, or sent by their browser: shown escaped
# (axes' own admin shows them raw). The multi-line ones keep their line breaks.
_ATTEMPT_TEXT = ("username", "user_agent", "path_info", "http_accept")
_ATTEMPT_LINES = ("get_data", "post_data")


def _shown(name: str) -> str:
    return f"shown_{name}" if name in (*_ATTEMPT_TEXT, *_ATTEMPT_LINES) else name


def _escaped(base: type[admin.ModelAdmin], model) -> type[admin.ModelAdmin]:
    """axes' `base` admin with the browser-sent text fields shown escaped."""
    fields = {field.name for field in model._meta.get_fields()}
    attrs = {
        "list_display": [_shown(name) for name in base.list_display],
        "list_filter": [
            (name, VisibleValuesFilter) if name == "path_info" else name
            for name in base.list_filter
        ],
        "fieldsets": tuple(
            (title, {**options, "fields": tuple(_shown(name) for name in options["fields"])})
            for title, options in base.fieldsets
        ),
        "readonly_fields": [_shown(name) for name in base.readonly_fields],
    }
    for name in (*_ATTEMPT_TEXT, *_ATTEMPT_LINES):
        if name in fields:
            label = model._meta.get_field(name).verbose_name
            attrs[_shown(name)] = visible_field(name, label, lines=name in _ATTEMPT_LINES)
    return type(f"Escaped{base.__name__}", (base,), attrs)


@admin.register(AccessAttempt)
class LockoutAdmin(_escaped(AccessAttemptAdmin, AccessAttempt)):
    def has_module_permission(self, request) -> bool:
        return _active_staff(request) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return _active_staff(request) or super().has_view_permission(request, obj)


def _active_staff(request) -> bool:
    return bool(request.user.is_active and request.user.is_staff)


# Successful logins (superusers only, as axes has it): the same browser-sent text.
admin.site.unregister(AccessLog)


@admin.register(AccessLog)
class LoginLogAdmin(_escaped(AccessLogAdmin, AccessLog)):
    pass
