"""A throwaway 3-node RabbitMQ cluster for failover tests (or a lone node with plugins and
configuration of its own, for the MQTT tests), driven through ``deploy/cluster/rabbitmq.sh``
with a directory, node names and ports of this run's own."""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import pika

SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "cluster" / "rabbitmq.sh"
NODES = (1, 2, 3)
# The script derives every port from the base: AMQP base+0..2, management +10000, Erlang
# distribution +20000, CLI distribution +30000..+30009.
PORT_OFFSETS = (0, 1, 2, 10000, 10001, 10002, 20000, 20001, 20002, *range(30000, 30010))
# Bases are drawn from a range clear of the machine broker (5672, 15672, 25672, 35672..) and
# of the script's default (5701): a test run never meets a demo cluster or the real broker.
BASE_PORT_RANGE = range(5800, 9400, 10)
DEFAULT_PLUGINS = ("rabbitmq_management",)
# Boot of 3 nodes side by side on a small, shared machine: normally ~35 s.
SCRIPT_TIMEOUT_SECONDS = 240

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.2) -> T:
    """Poll ``predicate`` until it returns something truthy; return that, or fail after
    ``timeout`` seconds (an exception inside counts as "not yet": nodes come and go)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - a node being down is what is waited out
            last_error = error
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"not true within {timeout} s: {getattr(predicate, '__name__', predicate)}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval)


def _ports_free(base_port: int, offsets: tuple[int, ...] = PORT_OFFSETS) -> bool:
    for offset in offsets:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", base_port + offset))
            except OSError:
                return False
    return True


class ClusterScriptError(RuntimeError):
    """The cluster script exited non-zero; the message carries its output."""


class RabbitCluster:
    """Local RabbitMQ nodes, numbered from 1 (three by default), clustered by the script.

    ``plugins`` and ``extra_config`` (lines appended to every node's ``rabbitmq.conf``)
    give the nodes what a test needs beyond the management API.
    """

    def __init__(
        self,
        *,
        base_dir: Path,
        name: str,
        base_port: int,
        user: str = "guest",
        password: str = "guest",
        size: int = len(NODES),
        plugins: tuple[str, ...] = DEFAULT_PLUGINS,
        extra_config: str = "",
        script_settings: dict[str, str] | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.name = name
        self.base_port = base_port
        self.user = user
        self.password = password
        self.nodes = tuple(range(1, size + 1))
        self.plugins = plugins
        self.extra_config = extra_config
        self.script_settings = script_settings or {}  # more IOT_CARE_RMQ_* for the script

    @classmethod
    def for_this_run(cls, **options) -> RabbitCluster:
        """A cluster nobody else uses: a unique name and dir, and a block of free ports."""
        name = f"iotcare-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        candidates = list(BASE_PORT_RANGE)
        random.shuffle(candidates)
        base_port = next((port for port in candidates if _ports_free(port)), None)
        if base_port is None:
            raise RuntimeError("no free block of ports for a test RabbitMQ cluster")
        # Under /tmp, not pytest's tmp_path: the nodes run as the rabbitmq user, who cannot
        # enter root's private pytest directories.
        return cls(base_dir=Path("/tmp") / name, name=name, base_port=base_port, **options)

    @property
    def extra_config_path(self) -> Path:
        # Beside the cluster's dir, not in it: the script refuses a non-empty dir without a cluster.
        return self.base_dir.with_name(f"{self.base_dir.name}.extra.conf")

    # The script -----------------------------------------------------------------------

    @property
    def script_env(self) -> dict[str, str]:
        environment = {
            **os.environ,
            "IOT_CARE_RMQ_CLUSTER_DIR": str(self.base_dir),
            "IOT_CARE_RMQ_CLUSTER_NAME": self.name,
            "IOT_CARE_RMQ_CLUSTER_BASE_PORT": str(self.base_port),
            "IOT_CARE_RMQ_CLUSTER_SIZE": str(len(self.nodes)),
            "IOT_CARE_RMQ_PLUGINS": " ".join(self.plugins),
            **self.script_settings,
        }
        if self.extra_config:
            environment["IOT_CARE_RMQ_EXTRA_CONFIG"] = str(self.extra_config_path)
        return environment

    def run_script(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(SCRIPT), *args],
            env=self.script_env,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_SECONDS,
        )
        if check and result.returncode != 0:
            raise ClusterScriptError(
                f"rabbitmq.sh {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def start(self) -> None:
        if self.extra_config:
            self.extra_config_path.write_text(self.extra_config)
            self.extra_config_path.chmod(0o644)  # read by the script (root), never secret here
        try:
            self.run_script("start")
        except ClusterScriptError as error:
            # The logs go with the dir when the caller stops the cluster: their end goes
            # into the failure, where a node that crashed while booting says why.
            raise ClusterScriptError(f"{error}\n{self.log_tails()}") from None

    def log_tails(self, lines: int = 30) -> str:
        tails = []
        for log in sorted(self.base_dir.glob("node*/log/*.log")):
            try:
                tail = log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            tails.append(f"--- {log}\n" + "\n".join(tail))
        return "\n".join(tails)

    def stop(self) -> None:
        """Kill every node and remove the dir; fails if any VM of this cluster survives."""
        try:
            self.run_script("clean")
        finally:
            self.extra_config_path.unlink(missing_ok=True)
        survivors = self.leftover_processes()
        if survivors:
            raise AssertionError(f"nodes of {self.name} still run: pids {survivors}")

    def kill(self, node: int) -> None:
        self.run_script("kill", str(node))

    def restart(self, node: int) -> None:
        """Start a killed or stopped node; returns once it runs and is clustered again."""
        self.run_script("start", str(node))

    def stop_app(self, node: int) -> None:
        self.run_script("stop_app", str(node))

    def start_app(self, node: int) -> None:
        self.run_script("start_app", str(node))

    def status(self) -> str:
        return self.run_script("status").stdout

    def cli(self, node: int) -> str:
        """A command prefix that runs a RabbitMQ program with node N's environment (the
        script's ``run``), e.g. for deploy/rabbitmq_mqtt.sh's RABBITMQ_CLI."""
        return f"{SCRIPT} run {node}"

    def node_dir(self, node: int) -> Path:
        """Node N's rabbitmq.conf, enabled_plugins, pid file, data and logs."""
        return self.base_dir / f"node{node}"

    def node_vm_pid(self, node: int) -> int:
        """The pid of node N's Erlang VM, from its pid file (a restart changes it)."""
        return int((self.node_dir(node) / "rabbitmq.pid").read_text().strip())

    def leftover_processes(self) -> list[int]:
        """Pids of any Erlang VM whose command line names one of this cluster's nodes."""
        pids = []
        for cmdline_path in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                arguments = cmdline_path.read_bytes().split(b"\0")
            except OSError:  # the process ended while we looked
                continue
            if any(arg.startswith(f"{self.name}-".encode()) for arg in arguments) and any(
                arg.endswith(b"beam.smp") for arg in arguments
            ):
                pids.append(int(cmdline_path.parent.name))
        return pids

    # Addresses ------------------------------------------------------------------------

    def node_name(self, node: int) -> str:
        return f"{self.name}-{node}@localhost"

    def node_number(self, node_name: str) -> int:
        for node in self.nodes:
            if self.node_name(node) == node_name:
                return node
        raise ValueError(f"{node_name} is not a node of {self.name}")

    def amqp_port(self, node: int) -> int:
        return self.base_port + node - 1

    def management_port(self, node: int) -> int:
        return self.base_port + 10000 + node - 1

    @property
    def hosts(self) -> str:
        """The value of RABBITMQ_HOSTS that points a client at this cluster."""
        return ",".join(f"127.0.0.1:{self.amqp_port(node)}" for node in self.nodes)

    @property
    def management_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.management_port(node)}" for node in self.nodes]

    @property
    def management_url(self) -> str:
        """The value of RABBITMQ_MANAGEMENT_URL (comma-separated, one per node)."""
        return ",".join(self.management_urls)

    def connection(self, node: int) -> pika.BlockingConnection:
        return pika.BlockingConnection(
            pika.ConnectionParameters(
                host="127.0.0.1",
                port=self.amqp_port(node),
                credentials=pika.PlainCredentials(self.user, self.password),
                connection_attempts=1,
                socket_timeout=5,
                blocked_connection_timeout=10,
            )
        )

    # Management API reads -------------------------------------------------------------

    def management_get(self, path: str, avoid: tuple[int, ...] = ()):
        """GET a management API path from the first node that answers (a killed or stopped
        node does not), skipping the nodes in ``avoid``."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        errors = []
        for node in self.nodes:
            if node in avoid:
                continue
            request = urllib.request.Request(
                f"{self.management_urls[node - 1]}/api/{path}",
                headers={"Authorization": f"Basic {token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return json.load(response)
            except urllib.error.HTTPError:
                raise  # the node answered: a 404 means the same on every node
            except OSError as error:
                errors.append(f"node {node}: {error}")
        raise ConnectionError(f"no management API answers: {'; '.join(errors)}")

    def running_nodes(self) -> set[int]:
        """The nodes the cluster counts as running (rabbit app up)."""
        return {
            self.node_number(node["name"]) for node in self.management_get("nodes") if node.get("running")
        }

    def queue_info(self, queue: str, vhost: str = "/") -> dict:
        return self.management_get(f"queues/{quote(vhost, safe='')}/{quote(queue, safe='')}")

    def queue_leader(self, queue: str) -> int:
        """The node holding the quorum queue's leader."""
        return self.node_number(self.queue_info(queue)["leader"])

    def queue_members(self, queue: str) -> set[int]:
        """The nodes holding a replica of the quorum queue, reachable or not."""
        return {self.node_number(name) for name in self.queue_info(queue)["members"]}

    def queue_online_members(self, queue: str) -> set[int]:
        """The quorum queue's replicas that are up."""
        return {self.node_number(name) for name in self.queue_info(queue)["online"]}

    wait_until = staticmethod(wait_until)
