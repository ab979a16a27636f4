"""The audit trail in the admin: every pause, resume, stop and manual run.

Read-only and undeletable, like the cleanup's runs: the trail is written by
scheduling/controls.py only, and nobody edits or removes it by hand.
"""

from __future__ import annotations

from django.contrib import admin

from scheduling.models import JobAction


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
    list_display = ("created_at", "actor", "action", "job", "reason", "run", "detail")
    list_filter = ("action", "job")
    search_fields = ("actor", "reason")
    date_hierarchy = "created_at"
    fields = ("created_at", "actor", "action", "job", "reason", "run", "task_id", "detail")
    readonly_fields = fields
