"""The replica alias exists only where it is asked for: never from a developer's .env in tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.workers import PROJECT_ROOT

REPLICA_URL = "postgres://iot_care:iot_care@127.0.0.1:5434/iot_care"
_SHOW = (
    "import json, django; from django.conf import settings; django.setup();"
    " print(json.dumps({'replica': settings.DATABASES.get('replica'), 'routers': settings.DATABASE_ROUTERS}))"
)


def _databases(settings_module: str, **variables: str) -> dict:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, **variables}
    environment.pop("TEST_DATABASE_REPLICA_URL", None)
    environment.update(variables)
    done = subprocess.run(
        [sys.executable, "-c", _SHOW],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_test_settings_ignore_the_developers_replica_url():
    shown = _databases("config.settings.test", DATABASE_REPLICA_URL=REPLICA_URL)
    assert shown["replica"] is None
    assert shown["routers"] == ["config.replica.ReplicaRouter"]


def test_a_replica_url_makes_the_alias_with_a_short_connect_timeout():
    shown = _databases("config.settings.test", TEST_DATABASE_REPLICA_URL=REPLICA_URL)
    assert shown["replica"]["PORT"] == 5434
    assert shown["replica"]["OPTIONS"]["connect_timeout"] == 2
    assert shown["replica"]["TEST"]["MIRROR"] == "default"
    assert (
        _databases("config.settings.dev", DATABASE_REPLICA_URL=REPLICA_URL)["replica"]["NAME"] == "iot_care"
    )
    assert _databases("config.settings.dev", DATABASE_REPLICA_URL="")["replica"] is None
