"""Bulk jobs act on a frozen set of dead letter ids (planned first), not on a stored query."""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

ACTIVE = ("queued", "running")


def freeze_legacy_selections(apps, schema_editor):
    """Give every existing job a frozen selection built from the JSON it stored.

    Ids stay ids. A group still to run is frozen to its dead letters as they are now. A
    filter still to run is not guessed at (the filter vocabulary may have changed since):
    the job fails with a reason and the operator plans it again; nothing is touched.
    Finished jobs keep their words, with no ids left to act on.
    """
    BulkJob = apps.get_model("dashboard", "BulkJob")
    BulkSelection = apps.get_model("dashboard", "BulkSelection")
    AuditEntry = apps.get_model("dashboard", "AuditEntry")
    DeadLetter = apps.get_model("ingest", "DeadLetter")
    for job in BulkJob.objects.all().iterator():
        legacy = job.legacy_selection or {}
        active = job.status in ACTIVE
        ids: list[int] = []
        if "ids" in legacy:
            scope = "selected"
            ids = sorted({int(value) for value in legacy["ids"]})
            criteria = f"{len(ids)} selected"
        elif "fingerprint" in legacy:
            scope = "group"
            criteria = f"group {str(legacy['fingerprint'])[:12]}"
            if active:
                ids = list(
                    DeadLetter.objects.filter(fingerprint=legacy["fingerprint"], status="dead")
                    .order_by("pk")
                    .values_list("pk", flat=True)
                )
        else:
            scope = "filter"
            filters = legacy.get("filter", {})
            criteria = ("matching " + ", ".join(f"{name} {value}" for name, value in filters.items()))[:255]
            if active:
                job.status = "failed"
                job.error = (
                    "This job was queued before bulk actions froze their messages; nothing was done. "
                    "Plan it again from the failed messages list."
                )
        job.selection = BulkSelection.objects.create(scope=scope, criteria=criteria, dead_letter_ids=ids)
        job.save(update_fields=["selection", "status", "error"])
        AuditEntry.objects.filter(target=f"job {job.pk}", action__startswith="created bulk").update(bulk_job=job)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0004_bulkjob_heartbeat"),
        ("ingest", "0007_dead_letter_action_bulk_job"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="BulkSelection",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "scope",
                    models.CharField(
                        choices=[
                            ("selected", "selected messages"),
                            ("filter", "everything matching a filter"),
                            ("group", "a failure group"),
                        ],
                        max_length=16,
                    ),
                ),
                ("criteria", models.CharField(blank=True, default="", max_length=255)),
                (
                    "dead_letter_ids",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.BigIntegerField(), default=list, size=None
                    ),
                ),
                ("error_classes", models.JSONField(default=list)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.AddField(
            model_name="bulkjob",
            name="failed_again",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="bulkjob",
            name="paused_reason",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="bulkjob",
            name="resumed_at_done",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="bulkjob",
            name="resumed_at_failed_again",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="bulkjob",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("paused", "Paused"),
                    ("done", "Done"),
                    ("cancelled", "Cancelled"),
                    ("failed", "Failed"),
                ],
                db_index=True,
                default="queued",
                max_length=16,
            ),
        ),
        migrations.RenameField(model_name="bulkjob", old_name="selection", new_name="legacy_selection"),
        migrations.AlterField(
            model_name="bulkjob", name="legacy_selection", field=models.JSONField(null=True, blank=True)
        ),
        migrations.AddField(
            model_name="bulkjob",
            name="selection",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="jobs",
                to="dashboard.bulkselection",
            ),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="bulk_job",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="audit_entries",
                to="dashboard.bulkjob",
            ),
        ),
        migrations.CreateModel(
            name="BulkPlan",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("token", models.CharField(max_length=64, unique=True)),
                (
                    "action",
                    models.CharField(choices=[("requeue", "Requeue"), ("discard", "Discard")], max_length=16),
                ),
                ("total", models.PositiveIntegerField()),
                ("description", models.CharField(max_length=255)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("expires_at", models.DateTimeField()),
                (
                    "created_by",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "job",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="plan",
                        to="dashboard.bulkjob",
                    ),
                ),
                (
                    "selection",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="plans",
                        to="dashboard.bulkselection",
                    ),
                ),
            ],
        ),
        migrations.RunPython(freeze_legacy_selections, migrations.RunPython.noop),
    ]
