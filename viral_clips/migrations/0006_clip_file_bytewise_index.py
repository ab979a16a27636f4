"""An index on Clip.file in byte order, for the cleanup's reconcile (PostgreSQL only).

The reconcile compares file names byte-wise, as S3 orders keys
(`viral_clips.cleanup.books.bytewise`: COLLATE "C" on PostgreSQL), which the
default-collation index on `file` cannot serve. Built CONCURRENTLY, so a live
deploy's release phase never locks the table; SQLite's default collation is
already byte-wise and its existing index serves.
"""

from django.db import migrations

INDEX = "viral_clips_clip_file_bytewise"


def create_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX}"
            ' ON viral_clips_clip (file COLLATE "C")'
        )


def drop_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("viral_clips", "0005_cleanuprun_rows_reconciled"),
    ]

    operations = [migrations.RunPython(create_index, drop_index)]
