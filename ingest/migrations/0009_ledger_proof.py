from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0008_ingest_message_retry_due"),
    ]

    operations = [
        migrations.AddField(
            model_name="ingestmessage",
            name="failed_deliveries",
            field=models.PositiveIntegerField(default=0, db_default=0),
        ),
        migrations.AddField(
            model_name="ingestmessage",
            name="duplicate_deliveries",
            field=models.PositiveIntegerField(default=0, db_default=0),
        ),
        migrations.AddField(
            model_name="deadletteraction",
            name="body_diff",
            field=models.TextField(blank=True, default="", db_default=""),
        ),
    ]
