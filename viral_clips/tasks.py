"""Celery tasks: thin wrappers over services in this app."""
