"""The audit trail in the admin: every pause, resume, stop and manual run.

Read-only and undeletable, like the cleanup's runs: the trail is written by
scheduling/controls.py only, and nobody edits or removes it by hand.
"""

from __future__ import annotations

from django.contrib import admin

from scheduling.models import JobAction
from scheduling.visible import visible


def visible_field(name: str, description: str, *, lines: bool = False):
    """A read-only display of a text field, hidden characters escaped (scheduling/visible.py).

    With `lines`, each line is escaped on its own and the line breaks stay (the
    admin shows them as line breaks)."""

    @admin.display(description=description, ordering=name)
    def show(self, obj) -> str:
        value = getattr(obj, name)
        if lines and value:
            return "\n".join(visible(line) for line in str(value).split("\n"))
        return visible(value)

    return show


class AuditRecordAdmin(admin.ModelAdmin):
    """Viewed, never added, edited or deleted in the admin (superusers included:
    no Save buttons, no delete page, no "delete selected")."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(JobAction)
class JobActionAdmin(AuditRecordAdmin):
    list_display = (
        "created_at",
        "shown_actor",
        "action",
        "job",
        "shown_reason",
        "run",
        "shown_detail",
    )
    list_filter = ("action", "job")
    search_fields = ("actor", "reason")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "shown_actor",
        "action",
        "job",
        "shown_reason",
        "run",
        "task_id",
        "shown_detail",
    )
    readonly_fields = fields
    # Typed by people (the reason at every press): shown escaped, as on the dashboard.
    shown_actor = visible_field("actor", "Actor")
    shown_reason = visible_field("reason", "Reason")
    shown_detail = visible_field("detail", "Detail")
