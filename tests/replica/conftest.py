"""A real primary and streaming replica (deploy/cluster/postgres.sh) with gunicorn in front.

One pair per module, on free ports and a directory of this run's own, migrated like a
fresh database (bootstrap_db, migrate), with a staff user and a device key; stopped and
removed afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest
import requests

from ingest.broker.topology import Topology
from tests.web import free_port, gunicorn_server
from tests.workers import PROJECT_ROOT, wait_until

CLUSTER_SCRIPT = PROJECT_ROOT / "deploy" / "cluster" / "postgres.sh"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
OPERATOR = ("replica-operator", "replica-operator-password")
# The pin after a console action, short so that a test can wait it out.
PIN_SECONDS = 2


@dataclass
class ReplicaCluster:
    directory: Path
    environment: dict[str, str]
    primary_url: str
    replica_url: str
    primary_port: int
    replica_port: int

    def script(self, *args: str) -> str:
        done = subprocess.run(
            [str(CLUSTER_SCRIPT), *args], env=self.environment, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"postgres.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def superuser(self, port: int, dbname: str = "iot_care") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname=dbname, autocommit=True)

    def primary(self) -> psycopg.Connection:
        return self.superuser(self.primary_port)

    def replica(self) -> psycopg.Connection:
        return self.superuser(self.replica_port)

    def replay_pause(self) -> None:
        with self.replica() as replica:
            replica.execute("SELECT pg_wal_replay_pause()")
            assert wait_until(
                lambda: replica.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] == "paused"
            )

    def replay_resume(self) -> None:
        with self.replica() as replica:
            replica.execute("SELECT pg_wal_replay_resume()")

    def replica_stop(self) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "replica")]
            + ["-m", "fast", "-w", "stop"],
            check=True,
            capture_output=True,
        )

    def on_replica(self, sql: str, params=()) -> list[tuple]:
        with self.replica() as replica:
            return replica.execute(sql, params).fetchall()

    def wait_replicated(self) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        with self.primary() as primary:
            target = primary.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        assert wait_until(
            lambda: self.on_replica("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])[0][0]
        ), "the replica did not catch up"


def manage(environment: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# A fresh database as deploy/setup.sh makes one (bootstrap_db, migrate), then a staff user and
# a device key: one process, not three start-ups.
_PREPARE = f"""
from django.core.management import call_command
call_command("bootstrap_db")
call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth import get_user_model
from ingest.services.devices import device_create, device_key_issue
get_user_model().objects.create_superuser({OPERATOR[0]!r}, "operator@example.org", {OPERATOR[1]!r})
device = device_create(serial_no="REPLICA-001", device_type="vital")
print("DEVICE", device.pk, device_key_issue(device=device)[1])
"""


@pytest.fixture(scope="module")
def replica_cluster() -> Iterator[ReplicaCluster]:
    directory = Path(f"/tmp/iot-care-pg-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    primary_port, replica_port = free_port(), free_port()
    while replica_port == primary_port:
        replica_port = free_port()
    environment = {
        **os.environ,
        "IOT_CARE_PG_CLUSTER_DIR": str(directory),
        "IOT_CARE_PG_PRIMARY_PORT": str(primary_port),
        "IOT_CARE_PG_REPLICA_PORT": str(replica_port),
    }
    cluster = ReplicaCluster(directory, environment, "", "", primary_port, replica_port)
    try:
        urls = dict(line.split("=", 1) for line in cluster.script("start").split())
        cluster.primary_url, cluster.replica_url = urls["DATABASE_URL"], urls["DATABASE_REPLICA_URL"]
        yield cluster
    finally:
        cluster.script("stop", "--purge")
    assert not directory.exists()


@dataclass
class ReplicaSite:
    cluster: ReplicaCluster
    port: int
    device_id: int
    device_key: str
    topology: Topology
    web_environment: dict[str, str]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @contextmanager
    def other_web(self, **settings: str) -> Iterator[ReplicaSite]:
        """One more gunicorn (one worker) on the same databases, with some settings changed."""
        with gunicorn_server(self.topology, workers=1, **{**self.web_environment, **settings}) as port:
            yield replace(self, port=port)

    def login(self) -> requests.Session:
        """A browser logged in as the staff operator, past the pin of its login."""
        browser = requests.Session()
        browser.get(self.url("/console/login/"), timeout=10)
        response = browser.post(
            self.url("/console/login/"),
            data={
                "username": OPERATOR[0],
                "password": OPERATOR[1],
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, response.text[:500]
        assert "console_reads_primary" in browser.cookies  # the login was a write
        browser.cookies.clear("127.0.0.1", "/", "console_reads_primary")  # as if its pin had run out
        return browser


@pytest.fixture(scope="module")
def replica_site(replica_cluster, broker_topology) -> Iterator[ReplicaSite]:
    """gunicorn reading the console from the replica: the primary migrated and seeded first."""
    manage_environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": replica_cluster.primary_url,
        "TEST_RABBITMQ_QUEUE_NAME": broker_topology.queue,
    }
    manage_environment.pop("TEST_DATABASE_REPLICA_URL", None)
    seeded = manage(manage_environment, "shell", "-c", _PREPARE).split()
    device_id, device_key = int(seeded[seeded.index("DEVICE") + 1]), seeded[seeded.index("DEVICE") + 2]
    replica_cluster.wait_replicated()
    web_environment = {
        "DATABASE_URL": replica_cluster.primary_url,
        "TEST_DATABASE_REPLICA_URL": replica_cluster.replica_url,
        # Checked on every page (a test stops the replica and looks at once); a lag of
        # paused replay is still "usable", so that the page shows what the replica has.
        "DATABASE_REPLICA_CHECK_SECONDS": "0",
        "DATABASE_REPLICA_MAX_LAG_SECONDS": "3600",
        "DATABASE_REPLICA_PIN_SECONDS": str(PIN_SECONDS),
    }
    with gunicorn_server(broker_topology, workers=2, **web_environment) as port:
        yield ReplicaSite(replica_cluster, port, device_id, device_key, broker_topology, web_environment)
