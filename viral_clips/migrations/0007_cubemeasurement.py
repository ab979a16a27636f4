# A new table only: safe while the old code still runs (release phase).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("viral_clips", "0006_clip_file_bytewise_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="CubeMeasurement",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("measured_at", models.DateTimeField(db_index=True)),
                ("object_count", models.BigIntegerField()),
                ("total_bytes", models.BigIntegerField()),
                ("cube", models.CharField(blank=True, max_length=128)),
                ("seconds_to_measure", models.FloatField(blank=True, null=True)),
                ("source", models.CharField(default="scheduled measurement", max_length=64)),
            ],
            options={
                "ordering": ["-measured_at"],
                "get_latest_by": "measured_at",
            },
        ),
    ]
