"""The app's jobs by short names, for tests (production code uses `<task>.job`)."""

from scheduling.tasks import canary
from viral_clips.tasks import refresh_cube_stats, scheduled_cloudcube_cleanup, send_weekly_report

CLEANUP = scheduled_cloudcube_cleanup.job
WEEKLY_REPORT = send_weekly_report.job
CUBE_STATS = refresh_cube_stats.job
CANARY = canary.job


def operators_group():
    """The group docs/operations.md tells an admin to make: the three job
    permissions and the audit trail's view permission (the admin's *Job actions*)."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name="Operators")
    group.permissions.set(
        Permission.objects.filter(
            content_type__app_label="scheduling",
            codename__in=["run_job", "pause_job", "stop_job", "view_jobaction"],
        )
    )
    return group
