"""Production refuses to run MQTT without the broker's shared secret."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.prod",
    "DJANGO_SECRET_KEY": "k" * 50,
    "DATABASE_URL": "postgres://x@db/x",
    "RABBITMQ_PASSWORD": "pw",
    "DJANGO_ALLOWED_HOSTS": "care.example.org",
    "CACHE_URL": "redis://cache.internal:6379/0",
}


def check(**extra: str) -> subprocess.CompletedProcess:
    env = {
        key: value for key, value in os.environ.items() if key not in ("MQTT_ENABLED", "BROKER_AUTH_SECRET")
    }
    env.pop("DJANGO_ENV_FILE", None)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env={**env, **PRODUCTION, **extra},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("secret", ["", None])
def test_mqtt_in_production_needs_the_broker_auth_secret(secret):
    extra = {"MQTT_ENABLED": "true"} | ({} if secret is None else {"BROKER_AUTH_SECRET": secret})
    result = check(**extra)
    assert result.returncode != 0
    assert "Set BROKER_AUTH_SECRET in the environment" in result.stderr


def test_mqtt_in_production_starts_with_the_secret_and_without_mqtt():
    assert check(MQTT_ENABLED="true", BROKER_AUTH_SECRET="s" * 32).returncode == 0
    assert check().returncode == 0
