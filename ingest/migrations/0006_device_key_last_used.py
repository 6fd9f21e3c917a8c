from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0005_dead_letter_indexes_the_console_uses"),
    ]

    operations = [
        migrations.AddField(
            model_name="deviceapikey",
            name="last_used_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
