"""A developer's .env turns MQTT on (deploy/setup.sh writes MQTT_ENABLED=true there); the
processes the tests start still run no MQTT bridge unless a test asks for one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings


def mqtt_enabled_in_test_settings(**extra: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "TEST_MQTT_ENABLED"}
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-v",
            "0",
            "-c",
            "from django.conf import settings; print(settings.MQTT_ENABLED)",
        ],
        cwd=settings.BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings.test", **extra},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


@pytest.mark.parametrize("developer_value", ["true", "false"])
def test_the_developers_mqtt_enabled_does_not_reach_the_tests(developer_value):
    assert mqtt_enabled_in_test_settings(MQTT_ENABLED=developer_value) == "False"


def test_a_test_turns_the_bridge_on_for_its_processes():
    assert mqtt_enabled_in_test_settings(MQTT_ENABLED="false", TEST_MQTT_ENABLED="true") == "True"
