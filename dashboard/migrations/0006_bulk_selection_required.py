"""Every bulk job now has its frozen selection; the stored query it replaced goes."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0005_bulk_plan")]

    operations = [
        migrations.AlterField(
            model_name="bulkjob",
            name="selection",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="jobs", to="dashboard.bulkselection"
            ),
        ),
        migrations.RemoveField(model_name="bulkjob", name="legacy_selection"),
    ]
