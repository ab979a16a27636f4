"""Everything that makes a periodic Celery job safe on Heroku: the beat scheduler
and its supervisor, schedules, the execution guard, shutdown handling, Sentry
cron check-ins and the status that beat_status, the dashboard and /health/ read."""
