"""The app's jobs by short names, for tests (production code uses `<task>.job`)."""

from scheduling.tasks import canary
from viral_clips.tasks import refresh_cube_stats, scheduled_cloudcube_cleanup, send_weekly_report

CLEANUP = scheduled_cloudcube_cleanup.job
WEEKLY_REPORT = send_weekly_report.job
CUBE_STATS = refresh_cube_stats.job
CANARY = canary.job
