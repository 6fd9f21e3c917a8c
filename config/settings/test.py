"""Test settings: pytest-django creates ``test_<name>`` from DATABASE_URL; queues get a per-run prefix."""

import os
import uuid

from .base import *  # noqa: F403
from .env import env

# Never the default queue names: every test run declares its own, removed at the end.
RABBITMQ_QUEUE_NAME = env.str(
    "TEST_RABBITMQ_QUEUE_NAME", default=f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}-ingest"
)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
INGEST_BATCH_MAX_WAIT_SECONDS = 0.05
# No read replica from a developer's .env: the tests of the replica give the processes
# they start one of their own (TEST_DATABASE_REPLICA_URL).
DATABASE_REPLICA_URL = env.str("TEST_DATABASE_REPLICA_URL", default="")
DATABASES.pop("replica", None)  # noqa: F405
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = replica_database(DATABASE_REPLICA_URL)  # noqa: F405

# No MQTT bridge from a developer's .env (setup turns MQTT on there): every worker a test
# starts would also consume from the machine's broker. The MQTT tests turn it on for the
# processes they start (TEST_MQTT_ENABLED).
MQTT_ENABLED = env.bool("TEST_MQTT_ENABLED", default=False)

SECRET_KEY = SECRET_KEY or "insecure-test-only-key-never-used-in-production"  # noqa: F405
WHITENOISE_AUTOREFRESH = True  # no collectstatic before tests
# Short retry delays so that a poison message reaches the dead letters within seconds.
INGEST_RETRY_DELAYS_SECONDS = [0.2, 0.4, 0.8]
INGEST_MAX_ATTEMPTS = 4
# Tests that check 429 lower it themselves (processes they start: TEST_INGEST_DEVICE_RATE).
INGEST_DEVICE_RATE = env.str("TEST_INGEST_DEVICE_RATE", default="100000/minute")

# Every probe fresh: tests change the broker's state and look at once (the tests of the
# probe cache set these themselves).
READINESS_CACHE_SECONDS = 0
# Keys looked up on every request: tests revoke keys and look at once (the key cache's own
# tests, and processes they start with TEST_DEVICE_KEY_CACHE_SECONDS, turn it on).
DEVICE_KEY_CACHE_SECONDS = env.float("TEST_DEVICE_KEY_CACHE_SECONDS", default=0)
BROKER_READ_CACHE_SECONDS = 0
CONSOLE_HEALTH_CACHE_SECONDS = 0

# Redis, as in production, under keys of this run only (other runs share the server).
# Processes a test starts (gunicorn) are given the same prefix through the environment.
CACHES = {
    "default": {
        **env.cache_url("TEST_CACHE_URL", default="redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": env.str("TEST_CACHE_KEY_PREFIX", default=f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"),
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}
COLLECTION_TIMEOUT_SECONDS = 1.0
COLLECTION_RETRY_DELAY_SECONDS = 0.05
SCHEDULER_STANDBY_POLL_SECONDS = 0.5
SCHEDULER_CONTROL_POLL_SECONDS = 0.2
# The partner servers of the tests listen on loopback, which production refuses by default;
# the tests that prove the refusal clear this list.
COLLECTION_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.1/32"]
