"""Webhook secrets become Standard Webhooks secrets (``whsec_<base64 of the key>``).

A secret stored before is rewritten as the base64 of its own bytes: the HMAC key stays
the same, so a partner keeps its key and changes only how it signs.
"""

import base64

from django.db import migrations

PREFIX = "whsec_"


def secrets_to_standard_webhooks(apps, schema_editor):
    WebhookSource = apps.get_model("ingest", "WebhookSource")
    for source in WebhookSource.objects.exclude(secret__startswith=PREFIX):
        source.secret = PREFIX + base64.b64encode(source.secret.encode()).decode()
        source.save(update_fields=["secret"])


def secrets_to_plain(apps, schema_editor):
    WebhookSource = apps.get_model("ingest", "WebhookSource")
    for source in WebhookSource.objects.filter(secret__startswith=PREFIX):
        try:
            source.secret = base64.b64decode(source.secret[len(PREFIX) :], validate=True).decode()
        except ValueError:
            continue  # not text: it was made for the new scheme and has no plain form
        source.save(update_fields=["secret"])


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0002_permissions"),
    ]

    operations = [
        migrations.RunPython(secrets_to_standard_webhooks, secrets_to_plain),
    ]
