"""deploy/rabbitmq_mqtt.sh (what deploy/setup.sh runs for MQTT), on a RabbitMQ node of its own.

The node starts without the MQTT plugins, as a stock broker; the script is pointed at it
through the cluster script's ``run`` (RABBITMQ_CLI) and the node's own files. The machine's
broker and whatever holds 1883 (Mosquitto here) are never touched, which the module checks.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.broker.topology import Topology
from ingest.services.devices import device_key_issue
from tests.factories import DeviceFactory
from tests.mqtt.node import MQTT_SCRIPT, DeviceConnection
from tests.rabbitmq_cluster import RabbitCluster
from tests.web import free_port, gunicorn_server

pytestmark = [pytest.mark.usefixtures("committed_db"), pytest.mark.timeout(300)]

PLUGINS = ("rabbitmq_mqtt", "rabbitmq_auth_backend_http")
MACHINE_BROKER_FILES = (Path("/etc/rabbitmq/rabbitmq.conf"), Path("/etc/rabbitmq/enabled_plugins"))
# A restart of the node included (about 20 s on the development machine).
SCRIPT_TIMEOUT_SECONDS = 180


@dataclass
class ConfiguredNode:
    node: RabbitCluster
    env: dict[str, str]
    mqtt_port: int
    first_run: subprocess.CompletedProcess[str]
    pid_before_first_run: int

    @property
    def config_file(self) -> Path:
        return Path(self.env["RABBITMQ_CONFIG_FILE"])

    @property
    def plugins_file(self) -> Path:
        return Path(self.env["RABBITMQ_ENABLED_PLUGINS_FILE"])

    def configure(self, **overrides: str) -> subprocess.CompletedProcess[str]:
        return run_configure({**self.env, **overrides})

    def state(self) -> tuple[str, str, int]:
        """What a run may change: the node's rabbitmq.conf, its plugins, its VM."""
        return self.config_file.read_text(), self.plugins_file.read_text(), self.node.node_vm_pid(1)


def run_configure(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MQTT_SCRIPT), "configure"],
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
    )


def answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def machine_broker_state() -> tuple[list[str], str]:
    files = [
        hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""
        for path in MACHINE_BROKER_FILES
    ]
    holders = subprocess.run(
        ["ss", "-ltnpH", "( sport = :5672 or sport = :1883 )"], capture_output=True, text=True
    )
    return files, holders.stdout


@pytest.fixture(scope="module")
def configured_node(django_db_setup, django_db_blocker) -> Iterator[ConfiguredNode]:
    machine_before = machine_broker_state()
    secret = secrets.token_urlsafe(24)
    mqtt_port = free_port()
    node = RabbitCluster.for_this_run(size=1)  # the management plugin only, as installed
    with (
        django_db_blocker.unblock(),
        gunicorn_server(Topology.from_settings(), workers=1, BROKER_AUTH_SECRET=secret) as web_port,
    ):
        try:
            node.start()
            env = {
                **node.script_env,
                "RABBITMQ_CLI": node.cli(1),
                "RABBITMQ_CONFIG_FILE": str(node.node_dir(1) / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.node_dir(1) / "enabled_plugins"),
                "RABBITMQ_HOST": "127.0.0.1",
                "BROKER_AUTH_SECRET": secret,
                "BROKER_AUTH_WEB_URL": f"http://127.0.0.1:{web_port}",
                "MQTT_PORT": str(mqtt_port),
            }
            pid_before = node.node_vm_pid(1)
            first_run = run_configure(env)
            yield ConfiguredNode(node, env, mqtt_port, first_run, pid_before)
        finally:
            node.stop()
    assert machine_broker_state() == machine_before, "the machine's broker or 1883 changed"


def test_the_plugins_get_enabled_and_a_device_with_a_good_key_connects(configured_node):
    run = configured_node.first_run
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(configured_node.mqtt_port)
    enabled = configured_node.plugins_file.read_text()
    assert all(plugin in enabled for plugin in PLUGINS), enabled
    assert (
        f"mqtt.listeners.tcp.1 = 0.0.0.0:{configured_node.mqtt_port}"
        in configured_node.config_file.read_text()
    )
    assert "restarting the local RabbitMQ" in run.stderr
    assert configured_node.node.node_vm_pid(1) != configured_node.pid_before_first_run
    assert answers(configured_node.mqtt_port)

    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    good = DeviceConnection(port=configured_node.mqtt_port, serial_no=device.serial_no, key=key)
    wrong = DeviceConnection(port=configured_node.mqtt_port, serial_no=device.serial_no, key="not-its-key")
    try:
        assert good.connect(), f"login refused (CONNACK {good.connack})"
        assert not wrong.connect()
    finally:
        good.close()
        wrong.close()


def test_a_second_run_changes_nothing_and_does_not_restart_the_node(configured_node):
    before = configured_node.state()

    again = configured_node.configure()

    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(configured_node.mqtt_port)
    assert "restarting" not in again.stderr and "writing" not in again.stderr
    assert configured_node.state() == before


def test_a_remote_broker_gets_the_lines_printed_and_nothing_changes(configured_node):
    before = configured_node.state()
    env = {key: value for key, value in configured_node.env.items() if key != "BROKER_AUTH_WEB_URL"}
    other_port = str(free_port())

    remote = run_configure(
        {**env, "RABBITMQ_HOST": "mq.example.net", "WEB_PORT": "8123", "MQTT_PORT": other_port}
    )

    assert remote.returncode == 0, remote.stderr
    assert "rabbitmq_mqtt rabbitmq_auth_backend_http" in remote.stderr
    secret = configured_node.env["BROKER_AUTH_SECRET"]
    assert (
        f"auth_http.user_path = http://<this web host>:8123/internal/broker-auth/{secret}/user"
        in remote.stderr
    )
    assert f"mqtt.listeners.tcp.1 = 0.0.0.0:{other_port}" in remote.stderr
    assert configured_node.state() == before


def test_a_port_held_by_another_program_is_refused_before_the_broker_is_touched(configured_node):
    before = configured_node.state()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held_port = holder.getsockname()[1]

        refused = configured_node.configure(MQTT_PORT=str(held_port))

    assert refused.returncode != 0
    # Named with its pid: this very process holds it.
    assert f"port {held_port} is held by" in refused.stderr and f"(pid {os.getpid()})" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert configured_node.state() == before
    assert answers(configured_node.mqtt_port)


def test_without_mqtt_port_it_moves_off_1883_where_another_program_holds_it(configured_node):
    holder = None
    if not answers(1883):  # held by Mosquitto on the development machine; elsewhere by this test
        holder = socket.create_server(("127.0.0.1", 1883))
    try:
        env = {key: value for key, value in configured_node.env.items() if key != "MQTT_PORT"}
        moved = run_configure(env)
    finally:
        if holder is not None:
            holder.close()

    assert moved.returncode == 0, moved.stderr
    port = int(moved.stdout.strip())
    assert 1884 <= port <= 1889
    assert "port 1883 is held by" in moved.stderr and f"MQTT listens on {port} instead" in moved.stderr
    assert f"mqtt.listeners.tcp.1 = 0.0.0.0:{port}" in configured_node.config_file.read_text()
    assert answers(port)
